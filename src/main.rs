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
        Some(Command::Report { file, format }) => {
            let profile = profiles::profile::Profile::load(&file)?;
            worldswitch::frontends::printer::print_profile(
                &profile,
                format,
                &mut std::io::stdout(),
            )?;
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
    let mut stdout = std::io::stdout();
    let (mut sink, mut sink2, mut stderr) = (std::io::sink(), std::io::sink(), std::io::stderr());
    let console: &mut dyn Write = if args.json { &mut sink } else { &mut stdout };
    let status: &mut dyn Write = if args.json { &mut sink2 } else { &mut stderr };
    let interactive = !args.headless && !args.json && worldswitch::frontends::tui::have_terminal();
    let notice = (!args.headless && !args.json && !interactive)
        .then_some("notice: not a terminal, so running headless (--headless says so explicitly)");
    let result = if interactive {
        worldswitch::frontends::tui::run(args)?
    } else {
        run::run_noting(args, console, status, notice)?
    };
    worldswitch::frontends::printer::print_run(&result, args.json, &mut stdout)?;
    if result.outcome.failed {
        if args.json {
            eprintln!("worldswitch: {}", result.outcome.message);
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
