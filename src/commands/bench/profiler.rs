//! `worldswitch bench profiler`: nettest throughput with the profiler's
//! sources off, with stack sampling (the always-on default), and with the
//! emulation windows too, interleaved and repeated; medians, ratios to
//! "off", and the CPU each source cost.

use crate::cli::{ProfilerBenchArgs, RunArgs};
use crate::run;
use profiles::stats::Summary;
use serde::Serialize;
use std::io::Write;

/// One configuration's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigResult {
    /// off, sampling, sampling+windows.
    pub config: &'static str,
    /// Goodput over the runs, Mb/s.
    pub throughput_mbps: Summary,
    /// Median throughput relative to `off`.
    pub ratio_to_off: f64,
    /// Median CPU seconds the profiler's threads used per run.
    pub profiler_cpu_seconds: f64,
}

/// Runs the benchmark.
pub fn measure(
    args: &ProfilerBenchArgs,
    status: &mut dyn Write,
) -> anyhow::Result<Vec<ConfigResult>> {
    let configs: [(&'static str, u64, bool); 3] = [
        ("off", 0, false),
        ("sampling", crate::profiler::sampler::DEFAULT_HZ, false),
        (
            "sampling+windows",
            crate::profiler::sampler::DEFAULT_HZ,
            true,
        ),
    ];
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); configs.len()];
    for round in 0..args.repeat {
        for (i, &(name, hz, windows)) in configs.iter().enumerate() {
            run::ensure_not_interrupted("the profiler's cost")?;
            let run_args = RunArgs {
                duration: Some(args.duration),
                headless: true,
                json: true,
                net: Some(args.net),
                sample_hz: hz,
                emulation_windows: windows,
                ..RunArgs::for_guest("nettest")
            };
            let r = run::run(&run_args, &mut std::io::sink(), &mut std::io::sink())?;
            writeln!(
                status,
                "round {} {name}: {:.2} Mb/s",
                round + 1,
                r.net.throughput_mbps
            )?;
            results[i].0.push(r.net.throughput_mbps);
            results[i].1.push(r.profile.profiler_cost_seconds);
        }
    }
    let off = Summary::of(&results[0].0).map_or(0.0, |s| s.median);
    Ok(configs
        .iter()
        .zip(results)
        .filter_map(|(&(name, _, _), (tput, cost))| {
            let t = Summary::of(&tput)?;
            Some(ConfigResult {
                config: name,
                ratio_to_off: t.median / off.max(1e-9),
                throughput_mbps: t,
                profiler_cpu_seconds: Summary::of(&cost)?.median,
            })
        })
        .collect())
}

/// Runs the benchmark and prints it.
pub fn command(args: &ProfilerBenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let results = measure(args, &mut std::io::stderr())?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "results": results }))?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "nettest on {:?}, {} interleaved rounds of {:?} each",
        args.net, args.repeat, args.duration
    )?;
    writeln!(
        out,
        "{:<18} {:>10} {:>8} {:>8} {:>9} {:>12}",
        "profiler", "Mb/s", "p25", "p75", "vs off", "its CPU s"
    )?;
    for r in &results {
        writeln!(
            out,
            "{:<18} {:>10.2} {:>8.2} {:>8.2} {:>+8.1}% {:>12.3}",
            r.config,
            r.throughput_mbps.median,
            r.throughput_mbps.p25,
            r.throughput_mbps.p75,
            (r.ratio_to_off - 1.0) * 100.0,
            r.profiler_cpu_seconds
        )?;
    }
    Ok(())
}
