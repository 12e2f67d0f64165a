//! The worldswitch binary: parse the command line, run, and turn every error
//! into one plain sentence and a non-zero exit.

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use worldswitch::cli::{BenchArgs, BenchCommand, Cli, Command};
use worldswitch::run;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // A reader that went away (`| head`) is not an error to report.
            let broken_pipe = e
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe);
            if !broken_pipe {
                eprintln!("worldswitch: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // The commands that count kernel tracepoints mount tracefs when it is
    // missing and they can (root): a fresh machine has it unmounted.
    if matches!(
        cli.command,
        None | Some(Command::Run(_) | Command::Record(_) | Command::Bench(_) | Command::Attach(_))
    ) {
        if let Some(notice) = worldswitch::profiler::tracepoints::mount_if_missing() {
            eprintln!("{notice}");
        }
    }
    match cli.command {
        None => run_command(&cli.run),
        Some(Command::Run(args)) => run_command(&args),
        Some(Command::Attach(args)) => {
            // Started before measuring, so Ctrl-C ends with the figures.
            worldswitch::run::interrupted();
            worldswitch::commands::attach::command(&args, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Guests { export }) => {
            worldswitch::commands::guests::command(export.as_deref(), &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Doctor { json }) => {
            worldswitch::commands::doctor::command(json, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Record(args)) => {
            let mut stderr = std::io::stderr();
            let r =
                worldswitch::commands::record::record(&args, &mut std::io::stdout(), &mut stderr)?;
            Ok(if r.outcome.failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Some(Command::Report {
            file,
            format,
            output,
        }) => {
            let profile = profiles::profile::Profile::load(&file)?;
            match output {
                Some(path) => {
                    worldswitch::commands::record::export(&profile, format, &path)?;
                    eprintln!("wrote {}", path.display());
                }
                None => worldswitch::frontends::printer::print_profile(
                    &profile,
                    format,
                    &mut std::io::stdout(),
                )?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Flamegraph {
            file,
            output,
            inverted,
            title,
        }) => {
            worldswitch::commands::record::flamegraph(&file, &output, inverted, title.as_deref())?;
            println!("{}", output.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchArgs {
            command: None,
            results,
        })) => {
            match results.soak {
                Some(d) => worldswitch::commands::bench::soak::command(
                    &results,
                    d,
                    &mut std::io::stdout(),
                )?,
                None => worldswitch::commands::bench::results::command(
                    &results,
                    &mut std::io::stdout(),
                )?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::View { file, export_dir }) => {
            let profile = profiles::profile::Profile::load(&file)?;
            if !worldswitch::frontends::tui::have_terminal() {
                anyhow::bail!(
                    "'view' needs a terminal; use 'worldswitch report {}' for text",
                    file.display()
                );
            }
            let snap =
                profiles::snapshot::Snapshot::from_profile(&profile, &file.display().to_string());
            worldswitch::frontends::tui::view(snap, &export_dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Diff {
            before,
            after,
            output,
        }) => {
            worldswitch::commands::record::diff(
                &before,
                &after,
                output.as_deref(),
                &mut std::io::stdout(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchArgs {
            command: Some(BenchCommand::Profiler(args)),
            ..
        })) => {
            worldswitch::commands::bench::profiler::command(&args, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchArgs {
            command: Some(BenchCommand::Ui(args)),
            ..
        })) => {
            worldswitch::commands::bench::ui::command(&args, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchArgs {
            command: Some(BenchCommand::Exits(args)),
            ..
        })) => {
            worldswitch::commands::bench::exits::command(&args, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_command(args: &worldswitch::cli::RunArgs) -> anyhow::Result<ExitCode> {
    // --json: the console goes into the result; --log and --json-lines
    // own standard output, a line a second, so the console goes to
    // standard error (--log) or into the result (--json-lines).
    let mut console: Box<dyn Write> = match (args.json || args.json_lines, args.log) {
        (true, _) => Box::new(std::io::sink()),
        (_, true) => Box::new(std::io::stderr()),
        _ => Box::new(std::io::stdout()),
    };
    let mut status: Box<dyn Write> = match (args.json, args.log || args.json_lines) {
        (_, true) => Box::new(std::io::stdout()),
        (true, _) => Box::new(std::io::sink()),
        _ => Box::new(std::io::stderr()),
    };
    let headless = args.is_headless();
    let interactive = !headless && worldswitch::frontends::tui::have_terminal();
    let notice = (!headless && !interactive)
        .then_some("notice: not a terminal, so running headless (--headless says so explicitly)");
    let result = if interactive {
        worldswitch::frontends::tui::run(args)?
    } else {
        run::run_noting(args, &mut *console, &mut *status, notice)?
    };
    let mut stdout = std::io::stdout();
    if args.json_lines {
        // The result as the last line, compact.
        serde_json::to_writer(&mut stdout, &result)?;
        writeln!(stdout)?;
    } else {
        worldswitch::frontends::printer::print_run(&result, args.json, &mut stdout)?;
    }
    if result.outcome.failed {
        if args.json {
            eprintln!("worldswitch: {}", result.outcome.message);
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
