//! The command line: subcommands, their options and value parsers.

use crate::machine::optimizations::{parse_switch, Opt, Opts, Preset};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The guest `worldswitch` and `worldswitch run` boot when none is named.
pub const DEFAULT_GUEST: &str = "nettest";

/// worldswitch: see what virtualized I/O costs on KVM.
#[derive(Debug, Parser)]
#[command(
    name = "worldswitch",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; without one, `run`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `run`, for plain `worldswitch`.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest on KVM and watch it in the workbench (or, with
    /// --headless or without a terminal, report what it did).
    Run(RunArgs),
    /// Measure a KVM VMM we did not start (QEMU, ...) in the workbench, or
    /// with --headless report it: where its vCPU threads' time goes by the
    /// paper's rows, its exits, port accesses, interrupts and CPU, per
    /// frame its TAP carried. Strictly read-only.
    Attach(AttachArgs),
    /// List the built-in guests, or write their ELF files to a directory.
    Guests {
        /// Write each built-in guest to DIR/NAME.elf.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
    },
    /// Check what this host offers worldswitch, with a fix for each gap.
    Doctor {
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks that print figures measured on this machine; without a
    /// subcommand, the paper's results table: nettest under each preset.
    Bench(BenchArgs),
    /// Run a guest like `run` and save its profile to a file (on a
    /// terminal, in the workbench: its toggles, resets and baselines are
    /// marked on the saved timeline; --headless for none).
    Record(RecordArgs),
    /// Print a saved profile: the overhead tables like the paper's Table 1.
    Report {
        /// A profile written by `worldswitch record`.
        file: PathBuf,
        /// table, json, csv, folded, speedscope or firefox.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// Write it to this file instead of standard output.
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Write a saved profile's sampled stacks as a flamegraph SVG.
    Flamegraph {
        /// A profile written by `worldswitch record`.
        file: PathBuf,
        /// Where to write the SVG.
        #[arg(short, long, value_name = "OUT.svg")]
        output: PathBuf,
        /// Draw an icicle graph (roots at the top).
        #[arg(long)]
        inverted: bool,
        /// The graph's title (default: the guest and host).
        #[arg(long)]
        title: Option<String>,
    },
    /// Open a saved profile in the workbench's screens.
    View {
        /// A profile written by `worldswitch record`.
        file: PathBuf,
        /// Where the `e` key writes the flame graph and the tables.
        #[arg(long, default_value = ".", value_name = "DIR")]
        export_dir: PathBuf,
    },
    /// Compare two saved profiles: row by row, and as a differential
    /// flamegraph.
    Diff {
        /// The profile before.
        before: PathBuf,
        /// The profile after.
        after: PathBuf,
        /// Also write a differential flamegraph SVG here.
        #[arg(short, long, value_name = "OUT.svg")]
        output: Option<PathBuf>,
    },
}

/// Options of `record`.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// Where to save the profile (JSON).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// What to save: profile (worldswitch's own, for report, view, diff and
    /// flamegraph), or the same run straight as a speedscope or Firefox
    /// Profiler file.
    #[arg(long, value_enum, default_value = "profile")]
    pub format: RecordFormat,
    /// Options of `run`.
    #[command(flatten)]
    pub run: RunArgs,
}

/// What `record` saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordFormat {
    /// A worldswitch profile (format version 2, with the timeline).
    Profile,
    /// A speedscope file, as `report --format speedscope` would write.
    Speedscope,
    /// A Firefox Profiler file, as `report --format firefox` would write.
    Firefox,
}

/// Output formats of `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Tables for people.
    Table,
    /// The whole profile: `rows`, `unavailable`, provenance.
    Json,
    /// The rows as CSV.
    Csv,
    /// The sampled stacks, folded (`thread;world;row;frames... count` per
    /// line), for inferno, flamegraph.pl or speedscope.
    Folded,
    /// The sampled stacks as a speedscope file: one sampled profile per
    /// thread (open it at speedscope.app).
    Speedscope,
    /// The sampled stacks as a Firefox Profiler file: one thread per
    /// worldswitch thread, the paper's rows as categories (open it at
    /// profiler.firefox.com).
    Firefox,
}

/// `bench`: the results table, or one of the other benchmarks.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// Another benchmark.
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Options of the results table.
    #[command(flatten)]
    pub results: ResultsArgs,
}

/// Options of the results table (`bench` alone).
#[derive(Debug, Clone, Args)]
pub struct ResultsArgs {
    /// Presets to run, comma-separated; each single optimization and a
    /// native row (a host thread writing the same frames) are added.
    #[arg(long, value_delimiter = ',', default_value = "naive,baseline,paper,modern", value_parser = Preset::parse)]
    pub presets: Vec<Preset>,
    /// Length of each run.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "D")]
    pub duration: Duration,
    /// Interleaved rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub repeat: u64,
    /// nettest write sizes to sweep, comma-separated (the paper: 512 to
    /// 65536 bytes); default: nettest's 4096 only.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub write_sizes: Vec<u64>,
    /// Cap the wire at this many bits per second, as `run --link-rate`.
    #[arg(long, value_parser = crate::machine::vmnet::pace::parse_rate, value_name = "RATE")]
    pub link_rate: Option<u64>,
    /// Where frames go (default: tap where possible, else sink).
    #[arg(long, value_enum)]
    pub net: Option<crate::machine::vmnet::NetKind>,
    /// Instead of the table: run nettest this long with the optimizations
    /// flipped at random every second, and fail on unexplained frame loss,
    /// sequence errors, RSS growth over 1 MiB after a one-minute warm-up,
    /// or fd growth.
    #[arg(long, value_parser = parse_duration, value_name = "D")]
    pub soak: Option<Duration>,
    /// First predict every preset with the cost model (a calibration, a
    /// profiled baseline run and a short probe of each single toggle), print
    /// the predictions and every input, then run the table and put each
    /// preset's prediction error beside it.
    #[arg(long, conflicts_with = "soak")]
    pub predict: bool,
    /// Predict as --predict does and stop before any preset runs.
    #[arg(long, conflicts_with_all = ["soak", "predict"])]
    pub predict_only: bool,
    /// Add rows for QEMU (-accel kvm, -device pcnet, a TAP in a namespace
    /// of worldswitch's own) running the same nettest ELF: measured by
    /// `attach` at its default sampling, and not attached (what attaching
    /// costs it).
    #[arg(long, conflicts_with = "soak")]
    pub with_qemu: bool,
    /// What to measure, comma-separated: tx (the transmit table), rx (the
    /// highest loss-free receive rate) and rtt (pingpong's round trip); rx
    /// and rtt for the presets only.
    #[arg(long, value_delimiter = ',', default_value = "tx", value_enum)]
    pub axes: Vec<Axis>,
    /// How long each of the forecast's single-toggle probes runs.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "D")]
    pub probe_duration: Duration,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// An axis of the results table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Axis {
    /// Transmit: nettest's throughput and what each frame costs.
    Tx,
    /// Receive: the highest rate nettest-rx takes without loss.
    Rx,
    /// Round trip: pingpong's percentiles.
    Rtt,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Cost of one OUT that exits to user space: our dispatch against a
    /// bare floor loop, interleaved on the same guest.
    Exits(ExitsArgs),
    /// What the profiler costs: nettest throughput with no sampling, with
    /// stack sampling, and with sampling plus emulation windows, interleaved.
    Profiler(ProfilerBenchArgs),
    /// What the workbench costs to look at: the UI and engine threads' CPU
    /// at the default refresh while nettest runs, and each screen's render
    /// time.
    Ui(UiBenchArgs),
}

/// Options of `bench ui`.
#[derive(Debug, Clone, Args)]
pub struct UiBenchArgs {
    /// How long the UI loop runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "D")]
    pub duration: Duration,
    /// Terminal columns drawn.
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u16).range(40..=1000))]
    pub width: u16,
    /// Terminal rows drawn.
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u16).range(10..=1000))]
    pub height: u16,
    /// Where nettest's frames go.
    #[arg(long, value_enum, default_value = "sink")]
    pub net: crate::machine::vmnet::NetKind,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `bench profiler`.
#[derive(Debug, Clone, Args)]
pub struct ProfilerBenchArgs {
    /// Runs of each configuration, interleaved.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub repeat: u64,
    /// Length of each run.
    #[arg(long, default_value = "4s", value_parser = parse_duration, value_name = "D")]
    pub duration: Duration,
    /// Where frames go (default: the sink, which needs no privileges and
    /// adds no host network noise).
    #[arg(long, value_enum, default_value = "sink")]
    pub net: crate::machine::vmnet::NetKind,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `bench exits`.
#[derive(Debug, Clone, Args)]
pub struct ExitsArgs {
    /// Interleaved pairs of phases (dispatch, floor).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub pairs: u64,
    /// OUTs per phase.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub iterations: u64,
    /// Privilege level of the OUT loop: 0 (kernel) or 3 (user).
    #[arg(long, default_value_t = 0, value_parser = parse_cpl)]
    pub cpl: u8,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// A built-in guest (see `worldswitch guests`) or the path of a PVH ELF64 file.
    #[arg(long, default_value = DEFAULT_GUEST, value_name = "NAME|PATH")]
    pub guest: String,
    /// Stop after this long (10s, 2m, 500ms or plain seconds); default: until the guest exits.
    #[arg(long, value_parser = parse_duration, value_name = "D")]
    pub duration: Option<Duration>,
    /// Run without the terminal UI, printing the console and a result (the
    /// default when standard output is not a terminal).
    #[arg(long)]
    pub headless: bool,
    /// Headless, one line a second on standard output, vmstat style: Mb/s,
    /// frames/s, exits/s by kind, writes completed in KVM/s and the
    /// largest rows; the guest console goes to standard error.
    #[arg(long, conflicts_with_all = ["json", "json_lines"])]
    pub log: bool,
    /// Headless, one JSON object a second on standard output (units in the
    /// key names: t_s, throughput_mbps, frames_per_sec, pio_exits_per_sec,
    /// ..., top_rows), and the result as the last line.
    #[arg(long, conflicts_with = "json")]
    pub json_lines: bool,
    /// How often the terminal UI refreshes its figures (100ms to 10s).
    #[arg(long, default_value = "500ms", value_parser = parse_refresh, value_name = "D")]
    pub refresh: Duration,
    /// Where the UI's `e` key writes the flame graph and the tables.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub export_dir: std::path::PathBuf,
    /// Print the result as JSON (the guest console goes into it).
    #[arg(long)]
    pub json: bool,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub mem: u64,
    /// A KEY=VALUE for the guest's command line; repeatable.
    #[arg(long = "guest-arg", value_parser = parse_guest_arg, value_name = "KEY=VALUE")]
    pub guest_args: Vec<(String, String)>,
    /// Where the NIC's frames go: tap (a TAP device in worldswitch's own
    /// network namespace) or sink (in-process). Default: tap where
    /// possible, else sink with a notice.
    #[arg(long, value_enum)]
    pub net: Option<crate::machine::vmnet::NetKind>,
    /// Cap the wire at this many bits per second (100M, 1G, 512k), like the
    /// paper's 100 Mb/s Ethernet; default: as fast as the host goes.
    #[arg(long, value_parser = crate::machine::vmnet::pace::parse_rate, value_name = "RATE")]
    pub link_rate: Option<u64>,
    /// Samples per second of the vCPU thread's stacks (0: no sampling; the
    /// rows inside KVM_RUN then stay one undivided row).
    #[arg(long, default_value_t = crate::profiler::sampler::DEFAULT_HZ, value_name = "HZ")]
    pub sample_hz: u64,
    /// Trace kvm:kvm_emulate_insn in short windows to split instruction
    /// emulation by kind (costs guest kernel speed while on).
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set, value_name = "on|off")]
    pub emulation_windows: bool,
    /// Percent of the time the emulation windows trace: PCT x 10 ms each
    /// second (up to 50 ms windows; 100 traces all the time).
    #[arg(long, default_value_t = crate::profiler::emulation::DEFAULT_DUTY_PCT, value_parser = clap::value_parser!(u8).range(1..=100), value_name = "PCT")]
    pub emulation_duty: u8,
    /// Walk the guest's frame pointers at every exit to user space and put
    /// that guest stack in front of the host stacks sampled while the exit
    /// was handled (marked `guest:`); costs about a microsecond an exit.
    #[arg(long)]
    pub stitch: bool,
    /// Optimizations to start with: naive (every Lance access exits),
    /// baseline (the paper's WS 2.0: rap-in-kernel), paper (plus
    /// data-port-in-kernel, send-combining and irq-notify) or modern
    /// (everything this build can switch).
    #[arg(long, default_value = "baseline", value_parser = Preset::parse, value_name = "NAME")]
    pub preset: Preset,
    /// Switch one optimization after the preset: NAME=on|off; repeatable.
    #[arg(long = "opt", value_parser = parse_switch, value_name = "NAME=on|off")]
    pub opts: Vec<(Opt, bool)>,
    /// KVM halt polling in nanoseconds (0 keeps an idle guest from burning a core).
    #[arg(long, default_value_t = 0, value_name = "NS")]
    pub halt_poll_ns: u64,
    /// Keep each sample's time and stack, the one-second series and the
    /// marks for the result's timeline (what `record` saves).
    #[arg(skip)]
    pub timeline: bool,
}

impl RunArgs {
    /// The defaults of every option, for `guest` (as if typed as
    /// `run --guest GUEST`).
    pub fn for_guest(guest: &str) -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            run: RunArgs,
        }
        Only::parse_from(["worldswitch", "--guest", guest]).run
    }

    /// Asks for exactly `opts` (as `--preset naive` and an `--opt` for
    /// every toggle).
    pub fn set_optimizations(&mut self, opts: Opts) {
        self.preset = Preset::Naive;
        self.opts = Opt::ALL.iter().map(|&o| (o, opts.get(o))).collect();
    }

    /// The optimizations `--preset` and `--opt` ask for.
    pub fn optimizations(&self) -> Opts {
        let mut o = self.preset.opts();
        for &(opt, on) in &self.opts {
            // Dependencies resolve in order.
            o.set(opt, on);
        }
        o
    }

    /// Whether the options ask for no terminal UI (`--headless`, or an
    /// output for scripts).
    pub fn is_headless(&self) -> bool {
        self.headless || self.json || self.log || self.json_lines
    }

    /// The guest command line the arguments make.
    pub fn cmdline(&self) -> String {
        self.guest_args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A refresh interval: a duration from 100 ms to 10 s.
fn parse_refresh(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(10) {
        return Err(format!("'{text}' is outside 100ms..10s"));
    }
    Ok(d)
}

/// Parses `10s`, `2m`, `1h`, `500ms` or plain (possibly fractional) seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: use 10s, 2m, 500ms or seconds"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit '{unit}': use ms, s, m or h"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("'{text}' must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `on` or `off`.
pub fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{text}' is neither on nor off")),
    }
}

/// Parses a privilege level the exit benchmark can run at: 0 or 3.
pub fn parse_cpl(text: &str) -> Result<u8, String> {
    match text {
        "0" => Ok(0),
        "3" => Ok(3),
        _ => Err(format!(
            "'{text}' is not a privilege level the benchmark runs at: use 0 or 3"
        )),
    }
}

/// Parses `KEY=VALUE` for the guest command line (no spaces: the guest
/// splits its command line at spaces).
pub fn parse_guest_arg(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE"))?;
    if k.is_empty() || k.contains(char::is_whitespace) || v.contains(char::is_whitespace) {
        return Err(format!(
            "'{text}' must be KEY=VALUE with a non-empty key and no spaces"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("ten")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn presets_and_switches_parse_to_typed_values() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("worldswitch").chain(args.iter().copied()))
        };
        let cli = parse(&[
            "--preset",
            "paper",
            "--opt",
            "pv-nic=on",
            "--opt",
            "send-combining=off",
        ])
        .unwrap();
        assert_eq!(cli.run.preset, Preset::Paper);
        assert_eq!(
            cli.run.opts,
            [(Opt::PvNic, true), (Opt::SendCombining, false)]
        );
        let mut want = Preset::Paper.opts();
        want.set(Opt::PvNic, true);
        want.set(Opt::SendCombining, false);
        assert_eq!(cli.run.optimizations(), want);
        assert_eq!(parse(&[]).unwrap().run.preset, Preset::Baseline);
        let e = parse(&["--preset", "fast"]).unwrap_err().to_string();
        assert!(
            e.contains("no preset 'fast': use naive, baseline, paper or modern"),
            "{e}"
        );
        let e = parse(&["--opt", "warp=on"]).unwrap_err().to_string();
        assert!(e.contains("no optimization 'warp': use one of"), "{e}");
        let cli = parse(&["bench"]).unwrap();
        let Some(Command::Bench(b)) = cli.command else {
            panic!("not bench");
        };
        assert_eq!(b.results.presets, Preset::ALL);
        // Asking for exactly a set of toggles gets exactly that set.
        let mut run = RunArgs::for_guest("nettest");
        for o in Opt::ALL {
            let mut want = Preset::Naive.opts();
            want.set(o, true);
            run.set_optimizations(want);
            assert_eq!(run.optimizations(), want);
            want.set(Opt::KernelIrqchip, false);
            run.set_optimizations(want);
            assert_eq!(run.optimizations(), want);
        }
    }

    #[test]
    fn guest_args() {
        assert_eq!(
            parse_guest_arg("write_size=512"),
            Ok(("write_size".into(), "512".into()))
        );
        assert_eq!(parse_guest_arg("flag="), Ok(("flag".into(), String::new())));
        assert!(parse_guest_arg("noequals").is_err());
        assert!(parse_guest_arg("=1").is_err());
        assert!(parse_guest_arg("a=b c").is_err());
    }

    #[test]
    fn plain_invocation_is_run_and_subcommands_parse() {
        let cli = Cli::try_parse_from(["worldswitch", "--guest", "hello"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.guest, "hello");
        let cli = Cli::try_parse_from([
            "worldswitch",
            "run",
            "--headless",
            "--guest",
            "x",
            "--duration",
            "2m",
            "--guest-arg",
            "a=1",
            "--guest-arg",
            "b=2",
        ])
        .unwrap();
        let Some(Command::Run(run)) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.cmdline(), "a=1 b=2");
        assert_eq!(run.duration, Some(Duration::from_secs(120)));
        assert!(Cli::try_parse_from(["worldswitch", "bench", "exits", "--cpl", "2"]).is_err());
        assert!(Cli::try_parse_from(["worldswitch", "bench", "exits", "--pairs", "0"]).is_err());
    }
}

/// `worldswitch attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The VMM's process ID.
    pub pid: i32,
    /// How long to measure: the headless report's length (default 10s);
    /// in the workbench, until you quit unless given. Ends early if the
    /// target exits, or on Ctrl-C, with what was measured.
    #[arg(long, value_parser = parse_duration, value_name = "D")]
    pub duration: Option<Duration>,
    /// Report once at the end instead of showing the workbench (also when
    /// there is no terminal, or with --json).
    #[arg(long)]
    pub headless: bool,
    /// Samples per second of each of the target's threads' stacks (0: none).
    #[arg(long, default_value_t = crate::profiler::foreign::DEFAULT_HZ, value_parser = clap::value_parser!(u64).range(0..=10000))]
    pub sample_hz: u64,
    /// Trace kvm:kvm_emulate_insn on the busiest vCPU in short windows, to
    /// split instruction emulation by kind and count emulated instructions
    /// per frame (slows the target's emulated code while on).
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set, value_name = "on|off")]
    pub emulation_windows: bool,
    /// Percent of the time the emulation windows trace.
    #[arg(long, default_value_t = crate::profiler::foreign::DEFAULT_DUTY_PCT, value_parser = clap::value_parser!(u8).range(1..=100), value_name = "PCT")]
    pub emulation_duty: u8,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Save the measurement as a profile ('report', 'flamegraph', 'diff'
    /// and 'view' read it).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// QEMU's QMP socket (-qmp unix:PATH,server=on,wait=off): asked only
    /// `query-pci`, to name the ports of its PCI devices' BARs.
    #[arg(long, value_name = "SOCKET")]
    pub qmp: Option<PathBuf>,
    /// Where the workbench writes flame graph SVGs.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub export_dir: PathBuf,
}
