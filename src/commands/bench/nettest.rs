//! One nettest run for the benchmarks: headless, under given
//! optimizations, profiled as asked, failing when nettest fails.

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

/// One nettest run under `opts` for `duration`.
pub fn nettest(
    args: &ResultsArgs,
    opts: Opts,
    write_size: u64,
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
        ..RunArgs::for_guest("nettest")
    };
    run_args.set_optimizations(opts);
    run_args
        .guest_args
        .push(("write_size".into(), write_size.to_string()));
    let r = run::run(&run_args, &mut std::io::sink(), &mut std::io::sink())?;
    if r.outcome.failed {
        anyhow::bail!("nettest failed: {}", r.outcome.message);
    }
    Ok(r)
}
