//! `worldswitch bench profiler`: nettest throughput with the profiler's
//! sources off, with stack sampling, with the emulation windows at their
//! default duty cycle too (the default profiler), and with the windows
//! tracing all the time, interleaved and repeated; medians, ratios to
//! "off", the CPU each source cost, and how far the default's emulation
//! split is from the one traced all the time.

use crate::cli::{ProfilerBenchArgs, RunArgs};
use crate::frontends::printer::print_json;
use crate::run;
use profiles::stats::Summary;
use serde::Serialize;
use std::io::Write;

/// The emulated instructions by kind, percent of those traced.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Split {
    /// Would run natively if the guest kernel were not emulated.
    pub ordinary_pct: f64,
    /// Privileged or sensitive.
    pub privileged_pct: f64,
    /// Port I/O.
    pub pio_pct: f64,
    /// IRET.
    pub iret_pct: f64,
}

impl Split {
    fn of(e: &crate::profiler::emulation::EmulationSummary) -> Option<Split> {
        let total = e.total();
        (total > 0).then(|| {
            let pct = |n: u64| n as f64 / total as f64 * 100.0;
            Split {
                ordinary_pct: pct(e.ordinary),
                privileged_pct: pct(e.privileged),
                pio_pct: pct(e.pio),
                iret_pct: pct(e.iret),
            }
        })
    }

    fn parts(&self) -> [f64; 4] {
        [
            self.ordinary_pct,
            self.privileged_pct,
            self.pio_pct,
            self.iret_pct,
        ]
    }

    /// The largest difference of a kind, in percentage points.
    fn distance(&self, other: &Split) -> f64 {
        self.parts()
            .iter()
            .zip(other.parts())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }
}

/// One configuration's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigResult {
    /// off, sampling, sampling+windows (the default), windows always.
    pub config: &'static str,
    /// The emulation windows' duty cycle, percent (0: none).
    pub emulation_duty_pct: u8,
    /// The emulated-instruction split over all rounds' traced
    /// instructions, where windows ran.
    pub emulation_split: Option<Split>,
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
    use crate::profiler::emulation::{EmulationSummary, DEFAULT_DUTY_PCT};
    let hz = crate::profiler::sampler::DEFAULT_HZ;
    let configs: [(&'static str, u64, u8); 4] = [
        ("off", 0, 0),
        ("sampling", hz, 0),
        ("sampling+windows", hz, DEFAULT_DUTY_PCT),
        ("windows always", hz, 100),
    ];
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); configs.len()];
    let mut traced = vec![EmulationSummary::default(); configs.len()];
    for round in 0..args.repeat {
        for (i, &(name, hz, duty)) in configs.iter().enumerate() {
            run::ensure_not_interrupted("the profiler's cost")?;
            let run_args = RunArgs {
                duration: Some(args.duration),
                headless: true,
                json: true,
                net: Some(args.net),
                sample_hz: hz,
                emulation_windows: duty > 0,
                emulation_duty: duty.max(1),
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
            if let Some(e) = &r.emulation {
                let t = &mut traced[i];
                t.ordinary += e.ordinary;
                t.privileged += e.privileged;
                t.pio += e.pio;
                t.iret += e.iret;
            }
        }
    }
    let off = Summary::of(&results[0].0).map_or(0.0, |s| s.median);
    Ok(configs
        .iter()
        .zip(results)
        .zip(&traced)
        .filter_map(|((&(name, _, duty), (tput, cost)), e)| {
            let t = Summary::of(&tput)?;
            Some(ConfigResult {
                config: name,
                emulation_duty_pct: duty,
                emulation_split: Split::of(e),
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
        print_json(&serde_json::json!({ "results": results }), out)?;
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
    let split = |name| {
        results
            .iter()
            .find(|r| r.config == name)
            .and_then(|r| r.emulation_split.map(|s| (r.emulation_duty_pct, s)))
    };
    if let (Some((duty, d)), Some((_, a))) = (split("sampling+windows"), split("windows always")) {
        writeln!(
            out,
            "emulation split at {duty}% duty (ordinary/privileged/pio/iret %): {:.1}/{:.1}/{:.1}/{:.1}; traced all the time: {:.1}/{:.1}/{:.1}/{:.1}; at most {:.1} points apart",
            d.ordinary_pct,
            d.privileged_pct,
            d.pio_pct,
            d.iret_pct,
            a.ordinary_pct,
            a.privileged_pct,
            a.pio_pct,
            a.iret_pct,
            d.distance(&a)
        )?;
    }
    Ok(())
}
