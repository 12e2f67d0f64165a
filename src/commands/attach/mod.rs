//! `worldswitch attach PID`: the paper's tables for a KVM VMM we did not
//! start (QEMU first): its vCPU threads' time split by the same kernel
//! rules as ours inside `KVM_RUN` and by its own symbols outside, its
//! exits, port accesses and interrupts by thread, and all of it per frame
//! its TAP carried. Strictly read-only: `/proc`, perf counters and stack
//! samples of its threads; nothing is written to the target, its memory or
//! its descriptors.

pub mod live;
pub mod measure;
pub mod ports;
pub mod qmp;
pub mod result;
pub mod target;

use crate::cli::AttachArgs;
use crate::commands::record::{check_writable, save_or_keep};
use crate::frontends::printer::{print_json, print_table};
use measure::{Measurement, Settings};
use ports::PortNames;
use result::AttachResult;
use std::io::Write;
use std::time::{Duration, Instant};

/// How often `/proc` is read and the rings drained.
pub const POLL: Duration = Duration::from_millis(100);
/// The headless report's length when none is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Measures `m` for `duration`, or until the target exits or Ctrl-C.
pub fn measure_for(mut m: Measurement, duration: Duration) -> AttachResult {
    let start = Instant::now();
    while start.elapsed() < duration && !crate::run::interrupted() {
        std::thread::sleep(POLL.min(duration.saturating_sub(start.elapsed())));
        if m.poll() {
            break;
        }
    }
    m.finish()
}

/// Says what attaching found, on standard error.
fn announce(t: &target::Target, how_long: &str) {
    eprintln!(
        "attached to {} ({}): {} vCPU descriptor(s), TAP {}; measuring {how_long} (read-only)",
        t.name,
        t.pid,
        t.vcpus.len(),
        if t.taps.is_empty() {
            "none".to_string()
        } else {
            t.taps.join(", ")
        },
    );
}

/// How often the workbench's picture is refreshed.
const REFRESH: Duration = Duration::from_secs(1);

/// `worldswitch attach`: the workbench where there is a terminal, else
/// (or with `--headless` or `--json`) one report at the end.
pub fn command(args: &AttachArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let interactive = !args.headless && !args.json && crate::frontends::tui::have_terminal();
    if !interactive {
        let notice = (!args.headless && !args.json).then_some(
            "notice: not a terminal, so reporting headless (--headless says so explicitly)",
        );
        return headless(args, notice, out);
    }
    let target = find(args)?;
    let sampling = match args.sample_hz {
        0 => "off (--sample-hz 0)".to_string(),
        hz => format!("cpu-clock {hz} Hz; user stacks unwound by .eh_frame"),
    };
    let engine =
        live::AttachEngine::start(target, settings(args)?, REFRESH, args.duration, sampling)?;
    let shown = crate::frontends::tui::watch(&engine, REFRESH, &args.export_dir);
    // Stop measuring whatever happened to the UI.
    let r = engine.finish()?;
    shown?;
    save(&r, args)?;
    print_text(&r, out)?;
    Ok(())
}

/// `worldswitch attach --headless` (or `--json`): measures, then reports;
/// `notice` is said once the target is found.
pub fn headless(
    args: &AttachArgs,
    notice: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let target = find(args)?;
    if let Some(n) = notice {
        eprintln!("{n}");
    }
    let duration = args.duration.unwrap_or(DEFAULT_DURATION);
    announce(&target, &format!("for {duration:?}"));
    let r = measure_for(Measurement::start(target, settings(args)?), duration);
    save(&r, args)?;
    if args.json {
        print_json(&r, out)?;
    } else {
        print_text(&r, out)?;
    }
    Ok(())
}

/// The target, once `-o`'s file is known to be writable: both fail
/// before anything is measured.
fn find(args: &AttachArgs) -> anyhow::Result<target::Target> {
    let target = target::find(args.pid)?;
    if let Some(o) = &args.output {
        check_writable(o)?;
    }
    Ok(target)
}

/// How to measure, from the options.
fn settings(args: &AttachArgs) -> anyhow::Result<Settings> {
    Ok(Settings {
        sample_hz: args.sample_hz,
        duty: args.emulation_windows.then_some(args.emulation_duty),
        ports: port_names(args)?,
    })
}

/// The port names: the fixed PC ones, and with `--qmp` the PCI BARs QEMU
/// reports.
fn port_names(args: &AttachArgs) -> anyhow::Result<PortNames> {
    match &args.qmp {
        None => Ok(PortNames::legacy()),
        Some(path) => PortNames::with_qmp(path).map_err(|e| {
            anyhow::anyhow!(
                "{e}; give --qmp the socket of QEMU's -qmp unix:PATH,server=on,wait=off"
            )
        }),
    }
}

/// Saves the profile where `-o` says.
pub fn save(r: &AttachResult, args: &AttachArgs) -> anyhow::Result<()> {
    if let Some(o) = &args.output {
        save_or_keep(&r.profile(), o, &format!("attach-{}", r.target.pid))?;
        eprintln!("profile saved to {}", o.display());
    }
    Ok(())
}

/// The text report.
pub fn print_text(r: &AttachResult, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{} ({}, {}) over {:.1} s{}",
        r.target.command,
        r.target.vmm,
        r.target.pid,
        r.seconds,
        if r.target_exited {
            ": the target exited"
        } else {
            ""
        }
    )?;
    let s = r.seconds.max(1e-9);
    let opt = |v: Option<u64>| v.map_or("-".into(), |n| format!("{:.0}", n as f64 / s));
    writeln!(
        out,
        "{:<8} {:<20} {:>5} {:>7} {:>10} {:>10} {:>8}",
        "tid", "thread", "vCPU", "CPU%", "exits/s", "pio/s", "irqs/s"
    )?;
    for t in r.vcpu_threads.iter().chain(&r.threads) {
        writeln!(
            out,
            "{:<8} {:<20} {:>5} {:>7.1} {:>10} {:>10} {:>8}",
            t.tid,
            t.name,
            if t.vcpu { "yes" } else { "" },
            t.cpu_pct,
            opt(t.exits_to_user),
            opt(t.port_accesses),
            opt(t.interrupts)
        )?;
    }
    for t in &r.taps {
        writeln!(
            out,
            "TAP {}: {:.0} frames/s from the guest ({:.2} Mb/s), {:.0} frames/s to it",
            t.name,
            t.frames_from_guest as f64 / s,
            t.bytes_from_guest as f64 * 8.0 / s / 1e6,
            t.frames_to_guest as f64 / s
        )?;
    }
    if let Some(why) = &r.per_frame_unavailable {
        writeln!(out, "no per-frame figures: {why}")?;
    }
    if !r.exits.ports.is_empty() {
        let cells: Vec<String> = r
            .exits
            .ports
            .iter()
            .take(8)
            .map(|p| {
                format!(
                    "{:#x}{} {}/{}",
                    p.port,
                    p.name
                        .as_deref()
                        .map_or(String::new(), |n| format!(" ({n})")),
                    p.outs,
                    p.ins
                )
            })
            .collect();
        writeln!(
            out,
            "ports, OUTs/INs (from {} traced accesses): {}",
            r.exits.ports_traced,
            cells.join(" · ")
        )?;
    }
    print_table(&r.profile, out)?;
    if let Some(pct) = r.unsymbolized_pct() {
        writeln!(
            out,
            "of the vCPU threads' VMM user-space time, {pct:.0}% is unsymbolized"
        )?;
    }
    for u in &r.unavailable {
        writeln!(out, "not measured: {u}")?;
    }
    Ok(())
}
