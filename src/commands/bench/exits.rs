//! `worldswitch bench exits`: the cost of one OUT that exits to user space
//! through worldswitch's dispatch (bus, device, counters) against the floor
//! loop that does nothing but re-enter, interleaved on one guest.

use crate::cli::ExitsArgs;
use crate::frontends::printer::print_json;
use crate::machine::devices::mailbox::BENCH_PORT;
use crate::machine::vmm::dispatch::FloorSchedule;
use crate::machine::vmm::phases;
use anyhow::Context;
use profiles::stats::Summary;
use serde::Serialize;
use std::io::Write;

/// The figures `bench exits` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ExitsResult {
    /// Privilege level of the OUT loop.
    pub cpl: u8,
    /// Interleaved pairs.
    pub pairs: u64,
    /// OUTs per phase.
    pub iterations: u64,
    /// Microseconds per OUT through worldswitch's dispatch, over phases.
    pub dispatch_us: Summary,
    /// Microseconds per OUT on the floor loop, over phases.
    pub floor_us: Summary,
    /// Per-pair ratio dispatch / floor.
    pub ratio: Summary,
    /// Exits to the benchmark port worldswitch counted; equals
    /// 2 x pairs x iterations.
    pub bench_port_exits: u64,
}

/// Runs the benchmark and returns its figures.
pub fn measure(args: &ExitsArgs) -> anyhow::Result<ExitsResult> {
    let rounds = 2 * args.pairs;
    let phases = phases::exitbench(format!(
        "iterations={} rounds={rounds} cpl={}",
        args.iterations, args.cpl
    ))?;
    let schedule = FloorSchedule;
    let (mut dispatch, mut floor) = (Vec::new(), Vec::new());
    let mut ratios = Vec::new();
    let name = if args.cpl == 3 {
        "cpl3_out"
    } else {
        "cpl0_out"
    };
    let per_out = |index| -> anyhow::Result<f64> {
        Ok(phases.get(name, index)?.as_secs_f64() * 1e6 / args.iterations as f64)
    };
    for pair in 0..args.pairs {
        let (a, b) = (2 * pair, 2 * pair + 1);
        let (ta, tb) = (per_out(a)?, per_out(b)?);
        let (d, f) = if schedule.uses_floor(a) {
            (tb, ta)
        } else {
            (ta, tb)
        };
        dispatch.push(d);
        floor.push(f);
        ratios.push(d / f);
    }
    let summary = |v: &[f64]| Summary::of(v).context("no phases were measured");
    Ok(ExitsResult {
        cpl: args.cpl,
        pairs: args.pairs,
        iterations: args.iterations,
        dispatch_us: summary(&dispatch)?,
        floor_us: summary(&floor)?,
        ratio: summary(&ratios)?,
        bench_port_exits: phases.stats.port(BENCH_PORT).outs,
    })
}

/// Runs the benchmark and prints its figures.
pub fn command(args: &ExitsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let r = measure(args)?;
    if args.json {
        print_json(&r, out)?;
        return Ok(());
    }
    writeln!(
        out,
        "OUT to port {BENCH_PORT:#x} from CPL{}: {} interleaved pairs (ABBA) of {} OUTs, every OUT an exit to user space",
        r.cpl, r.pairs, r.iterations
    )?;
    writeln!(
        out,
        "{:<10} {:>12} {:>10} {:>10}",
        "loop", "median us", "p25", "p75"
    )?;
    for (name, s) in [("dispatch", &r.dispatch_us), ("floor", &r.floor_us)] {
        writeln!(
            out,
            "{name:<10} {:>12.3} {:>10.3} {:>10.3}",
            s.median, s.p25, s.p75
        )?;
    }
    writeln!(
        out,
        "dispatch/floor per pair: median {:.4} (p25 {:.4}, p75 {:.4}, min {:.4}, max {:.4}); dispatch costs {:+.2}% over the floor",
        r.ratio.median,
        r.ratio.p25,
        r.ratio.p75,
        r.ratio.min,
        r.ratio.max,
        (r.ratio.median - 1.0) * 100.0
    )?;
    writeln!(out, "benchmark-port exits counted: {}", r.bench_port_exits)?;
    Ok(())
}
