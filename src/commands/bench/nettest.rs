//! Guest runs for the benchmarks: headless, under given optimizations,
//! profiled as asked; a nettest run fails when nettest fails.

use crate::cli::{ResultsArgs, RunArgs};
use crate::machine::optimizations::Opts;
use crate::run;
use crate::session::RunResult;
use std::time::Duration;

/// How a nettest run is profiled.
pub struct Profiling {
    /// Stack samples per second (0: none).
    pub sample_hz: u64,
    /// Percent of the time the emulation windows trace.
    pub emulation_duty: u8,
}

/// The table's runs: counts only (no stack samples), the default windows.
pub const COUNTS_ONLY: Profiling = Profiling {
    sample_hz: 0,
    emulation_duty: crate::profiler::emulation::DEFAULT_DUTY_PCT,
};

/// One nettest run under `opts` for `duration`.
pub fn nettest(
    args: &ResultsArgs,
    opts: Opts,
    write_size: u64,
    duration: Duration,
    profiling: Profiling,
) -> anyhow::Result<RunResult> {
    let r = guest(
        args,
        opts,
        "nettest",
        &[("write_size", write_size.to_string())],
        duration,
        profiling,
    )?;
    if r.outcome.failed {
        anyhow::bail!("nettest failed: {}", r.outcome.message);
    }
    Ok(r)
}

/// One headless run of guest `name` with `guest_args` under `opts`, on
/// the table's network, for at most `duration`, whatever its outcome.
pub fn guest(
    args: &ResultsArgs,
    opts: Opts,
    name: &str,
    guest_args: &[(&str, String)],
    duration: Duration,
    profiling: Profiling,
) -> anyhow::Result<RunResult> {
    let mut run_args = RunArgs {
        duration: Some(duration),
        headless: true,
        json: true,
        net: args.net,
        link_rate: args.link_rate,
        sample_hz: profiling.sample_hz,
        emulation_duty: profiling.emulation_duty,
        ..RunArgs::for_guest(name)
    };
    run_args.set_optimizations(opts);
    run_args
        .guest_args
        .extend(guest_args.iter().map(|(k, v)| (k.to_string(), v.clone())));
    run::run(&run_args, &mut std::io::sink(), &mut std::io::sink())
}
