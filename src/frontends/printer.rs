//! Printing results for people and scripts: a run's result and a saved
//! profile as text, JSON or CSV, into any `io::Write`. Every command that
//! prints a table prints it here.

use crate::cli::ReportFormat;
use crate::profiler::tracepoints::USERSPACE_EXIT;
use crate::session::RunResult;
use profiles::profile::Profile;
use profiles::table::{Source, Table};
use profiles::taxonomy::Thread;
use std::io::Write;

/// Writes `value` as pretty JSON and a newline: what every `--json` prints.
pub fn print_json(value: &impl serde::Serialize, out: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// Prints a run's result: JSON for scripts, else text for people.
pub fn print_run(r: &RunResult, json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if json {
        print_json(r, out)
    } else {
        print_text(r, out)
    }
}

/// The rate `p`'s stacks were sampled at: `--sample-hz` on the command
/// line that recorded it, else that command's default.
fn sample_hz(p: &Profile) -> f64 {
    let args = &p.provenance.command_line;
    let given = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--sample-hz") {
            Some("") => args.get(i + 1)?.parse().ok(),
            Some(v) => v.strip_prefix('=')?.parse().ok(),
            None => None,
        });
    given.unwrap_or(if args.iter().any(|a| a == "attach") {
        crate::profiler::foreign::DEFAULT_HZ
    } else {
        crate::profiler::sampler::DEFAULT_HZ
    }) as f64
}

/// Prints a saved profile.
pub fn print_profile(p: &Profile, format: ReportFormat, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        ReportFormat::Json => {
            print_json(
                &serde_json::json!({
                    "provenance": p.provenance,
                    "seconds": p.seconds,
                    "denominator": p.table.denominator,
                    "denominator_seconds": p.table.denominator_seconds,
                    "rows": p.table.rows,
                    "per_frame": p.table.per_frame,
                    "unavailable": p.table.unavailable,
                    "profiler_cost_seconds": p.table.profiler_cost_seconds,
                    "samples_by_thread": p.table.samples_by_thread,
                    "unsampled_threads": p.table.unsampled_threads,
                    "extra": p.extra,
                }),
                out,
            )?;
        }
        ReportFormat::Csv => print_csv(&p.table, out)?,
        ReportFormat::Folded => {
            for line in p.folded_lines() {
                writeln!(out, "{line}")?;
            }
        }
        ReportFormat::Speedscope => {
            if let Some(notice) = p.timeline_notice() {
                eprintln!("notice: {notice}");
            }
            let exporter = format!("worldswitch {}", env!("CARGO_PKG_VERSION"));
            print_json(&profiles::speedscope::file(p, &exporter), out)?;
        }
        ReportFormat::Firefox => {
            if let Some(notice) = p.timeline_notice() {
                eprintln!("notice: {notice}");
            }
            print_json(&profiles::firefox::file(p, sample_hz(p)), out)?;
        }
        ReportFormat::Table => {
            let v = &p.provenance;
            writeln!(
                out,
                "{} ({}) on {} {} ({}), {:.1} s, recorded by worldswitch {}",
                v.guest,
                v.guest_build_id
                    .as_deref()
                    .map_or("no build id", |b| &b[..b.len().min(12)]),
                v.kvm_flavour,
                v.kernel,
                v.cpu,
                p.seconds,
                v.worldswitch
            )?;
            print_table(&p.table, out)?;
            let silent: Vec<&str> = p.extra["tracepoint_calibration"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["status"] != "ok")
                .filter_map(|c| c["tracepoint"].as_str())
                .collect();
            if !silent.is_empty() {
                writeln!(
                    out,
                    "kernel tracepoints unavailable on this host (never fired in calibration, or could not be opened): {}",
                    silent.join(", ")
                )?;
            }
        }
    }
    Ok(())
}

/// Prints the table's rows as CSV.
fn print_csv(t: &Table, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "world,category,thread,source,share_pct,count,rate_per_sec,total_us,avg_us,p50_us,p99_us,samples,paper_share_pct,us_per_frame")?;
    for r in &t.rows {
        let world = r
            .world
            .and_then(|w| serde_json::to_value(w).ok())
            .and_then(|w| w.as_str().map(str::to_string))
            .unwrap_or_default();
        writeln!(
            out,
            "{world},{},{},{},{:.4},{},{:.2},{:.2},{:.4},{:.4},{:.4},{},{},{}",
            r.category,
            r.thread.sampled_name(),
            r.source,
            r.share_pct,
            r.count,
            r.rate_per_sec,
            r.total_us,
            r.avg_us,
            r.p50_us,
            r.p99_us,
            r.samples.map_or(String::new(), |s| s.to_string()),
            r.paper_share_pct.map_or(String::new(), |p| p.to_string()),
            r.us_per_frame.map_or(String::new(), |u| format!("{u:.4}"))
        )?;
    }
    Ok(())
}

/// Prints an overhead table like the paper's Table 1 ("Total time"), then
/// its VMM rows as shares of VMM time.
pub fn print_table(t: &Table, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "\nwhere the time went (100% = {:.3} s: {}):",
        t.denominator_seconds, t.denominator
    )?;
    // The ledger's column, where frames flowed.
    let ledger = t.per_frame.is_some();
    let frame_cell = |v: Option<f64>| match (ledger, v) {
        (false, _) => String::new(),
        (true, Some(us)) => format!(" {us:>9.2}"),
        (true, None) => format!(" {:>9}", "-"),
    };
    writeln!(
        out,
        "{:<55} {:>7}{} {:>10} {:>11} {:>9} {:>9} {:>7}",
        "row",
        "share",
        if ledger {
            format!(" {:>9}", "us/frame")
        } else {
            String::new()
        },
        "count",
        "per second",
        "avg us",
        "p99 us",
        "paper"
    )?;
    for row in &t.rows {
        let paper = match (row.paper_table, row.paper_share_pct) {
            (Some(profiles::taxonomy::PaperTable::Total), Some(p)) => format!("{p:.1}%"),
            _ => String::new(),
        };
        // Rows of other threads say so; the rest are the vCPU thread's.
        let label = format!("{}{}", thread_tag(row.thread), row.label);
        let label: String = label.chars().take(55).collect();
        let dash = || "-".to_string();
        // Sampled rows have no counts; split rows no percentiles.
        let (count, rate, avg, p99) = match row.source {
            Source::Markers => (
                row.count.to_string(),
                format!("{:.0}", row.rate_per_sec),
                format!("{:.2}", row.avg_us),
                format!("{:.2}", row.p99_us),
            ),
            Source::SplitBySamples => (
                row.count.to_string(),
                format!("{:.0}", row.rate_per_sec),
                format!("{:.2}", row.avg_us),
                dash(),
            ),
            Source::Sampling | Source::EmulationWindows => (
                row.samples
                    .map_or("est.".to_string(), |n| format!("~{n} smp")),
                dash(),
                dash(),
                dash(),
            ),
        };
        writeln!(
            out,
            "{label:<55} {:>6.1}%{} {count:>10} {rate:>11} {avg:>9} {p99:>9} {paper:>7}",
            row.share_pct,
            frame_cell(row.us_per_frame),
        )?;
    }
    if let Some(p) = &t.per_frame {
        let opt =
            |name: &str, v: Option<f64>, digits: usize| v.map(|v| format!("{name} {v:.digits$}"));
        let counts: Vec<String> = [
            opt("exits to user space", p.exits_to_user, 2),
            opt(
                "port accesses completed in KVM",
                p.port_accesses_in_kernel,
                2,
            ),
            opt("interrupts", p.interrupts, 2),
            opt("emulated guest instructions", p.emulated_instructions, 0),
            opt("TAP writes", p.tap_writes, 2),
        ]
        .into_iter()
        .flatten()
        .collect();
        let what = match p.direction {
            profiles::table::Direction::Transmit => "datagrams delivered",
            profiles::table::Direction::Receive => "datagrams received",
        };
        writeln!(
            out,
            "per frame ({} {what}; us/frame is CPU time per frame): {}",
            p.frames,
            counts.join(", ")
        )?;
    }
    if t.rows.iter().any(|r| r.source != Source::Markers) {
        writeln!(
            out,
            "(rows inside KVM_RUN are estimates: the CPU time inside KVM_RUN split by sampled kernel stacks, and instruction emulation by the emulate_insn mix; the profiler itself used {:.3} s of CPU)",
            t.profiler_cost_seconds
        )?;
    }
    let checks: Vec<String> = t
        .rows
        .iter()
        .filter_map(|r| {
            let c = r.cross_check.as_ref()?;
            (c.samples > 0 || c.marker_share_pct >= 0.5).then(|| {
                format!(
                    "{}{} {:.1}% vs {:.1}% sampled",
                    thread_tag(r.thread),
                    r.category,
                    c.marker_share_pct,
                    c.sampled_share_pct
                )
            })
        })
        .collect();
    if !checks.is_empty() {
        writeln!(
            out,
            "cross-check of the VMApp rows, markers vs samples of the same thread: {}",
            checks.join("; ")
        )?;
    }
    let sampled: u64 = t.samples_by_thread.values().sum();
    if sampled > 0 {
        let shares: Vec<String> = t
            .thread_shares()
            .iter()
            .map(|(name, pct)| format!("{name} {pct:.1}%"))
            .collect();
        writeln!(
            out,
            "samples of every sampled thread ({sampled}, by thread): {}",
            shares.join(", ")
        )?;
    }
    for (thread, why) in &t.unsampled_threads {
        writeln!(out, "thread {thread} could not be sampled: {why}")?;
    }
    if let Some(p) = t.preempted_seconds {
        writeln!(
            out,
            "the vCPU thread was runnable but preempted by the host for {:.3} s",
            p
        )?;
    }
    for (thread, off) in &t.off_cpu {
        if off.preempted_seconds + off.blocked_seconds < 0.0005 {
            continue;
        }
        writeln!(
            out,
            "off the CPU inside the {} thread's timed rows (taken out of them): {:.3} s preempted, {:.3} s blocked",
            thread.sampled_name(),
            off.preempted_seconds,
            off.blocked_seconds
        )?;
    }
    if t.halted_seconds > 0.0005 {
        writeln!(
            out,
            "the vCPU also spent {:.3} s halted inside KVM_RUN (waiting, not CPU time)",
            t.halted_seconds
        )?;
    }
    if !t.unavailable.is_empty() {
        let keys: Vec<&str> = t.unavailable.iter().map(|u| u.category.key()).collect();
        writeln!(
            out,
            "not measured yet: {} (see the JSON for why)",
            keys.join(", ")
        )?;
    }
    let vmm: Vec<_> = t
        .rows
        .iter()
        .filter(|r| r.world == Some(profiles::taxonomy::World::Vmm))
        .collect();
    let vmm_total: f64 = vmm.iter().map(|r| r.total_us).sum();
    if vmm_total > 0.0 {
        writeln!(
            out,
            "\nVMM time (100% = {:.3} s in the KVM module; paper column: its VMM-time shares):",
            vmm_total / 1e6
        )?;
        for r in vmm {
            let paper = match (r.paper_table, r.paper_share_pct) {
                (Some(profiles::taxonomy::PaperTable::Vmm), Some(p)) => format!("{p:.1}%"),
                _ => String::new(),
            };
            let label: String = r.label.chars().take(55).collect();
            writeln!(
                out,
                "{label:<55} {:>6.1}% {paper:>52}",
                r.total_us / vmm_total * 100.0
            )?;
        }
    }
    Ok(())
}

/// Prints a result for people.
fn print_text(r: &RunResult, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "\n{}", r.outcome.message)?;
    writeln!(
        out,
        "guest {} (build {}) ran {:.3} s{}",
        r.guest,
        r.guest_build_id.as_deref().unwrap_or("unknown"),
        r.seconds,
        if r.cmdline.is_empty() {
            String::new()
        } else {
            format!(" with '{}'", r.cmdline)
        }
    )?;
    let e = &r.exits;
    // HLT and interrupt-window exits happen only with the user-space 8259.
    let user_pic = if e.halts + e.irq_windows + e.interrupts_injected > 0 {
        format!(
            ", HLT {}, interrupt windows {}; {} interrupts injected by the user-space 8259",
            e.halts, e.irq_windows, e.interrupts_injected
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "exits to user space: {} (OUT {}, IN {}, MMIO {}, kicks {}, other {}{user_pic})",
        e.kvm_run_returns, e.io_out, e.io_in, e.mmio, e.interrupted, e.other
    )?;
    match (
        r.tracepoints.get(USERSPACE_EXIT),
        &r.tracepoints_unavailable,
    ) {
        (Some(n), _) => writeln!(out, "kernel tracepoint {USERSPACE_EXIT}: {n}")?,
        (None, Some(why)) => writeln!(out, "kernel tracepoints unavailable: {why}")?,
        (None, None) => {}
    }
    if !r.guest_counters.is_empty() {
        let list: Vec<String> = r
            .guest_counters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(out, "guest counters: {}", list.join(" "))?;
    }
    for p in &r.phases {
        write!(out, "phase {}#{}: {:.6} s", p.name, p.index, p.seconds)?;
        // Guests report a phase's operation count under the phase's name.
        match r.guest_counters.get(&p.name) {
            Some(&n) if n > 0 => writeln!(
                out,
                ", {:.2} us each over {n} operations",
                p.seconds * 1e6 / n as f64
            )?,
            _ => writeln!(out)?,
        }
    }
    let n = &r.net;
    if n.frames_received_by_host + n.frames_delivered > 0 || n.frames_sent_by_guest.is_some() {
        let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.2}"));
        writeln!(
            out,
            "net ({:?}): {:.2} Mb/s goodput, {:.2} Mb/s on the wire, {:.0} frames/s; exits per frame {} ({}); port accesses per frame {} (guest) {} (kvm_pio)",
            n.backend,
            n.throughput_mbps,
            n.wire_mbps,
            n.frames_per_sec,
            opt(n.exits_per_frame),
            n.exits_source,
            opt(n.port_accesses_per_frame_guest),
            opt(n.port_accesses_per_frame_tracepoint),
        )?;
        writeln!(
            out,
            "frames: sent by guest {}, received by host {}, delivered {}, dropped {:?}, in flight {}; sequence errors {:?}",
            n.frames_sent_by_guest.map_or("n/a".into(), |v| v.to_string()),
            n.frames_received_by_host,
            n.frames_delivered,
            n.frames_dropped,
            n.frames_in_flight,
            n.sequence_errors
        )?;
    }
    print_table(&r.profile, out)?;
    if let (Some(e), Some(pio)) = (&r.emulation, r.net.port_accesses_per_frame_tracepoint) {
        let total: u64 = e.pio_by_device.values().sum();
        if let (Some(&pic), true) = (e.pio_by_device.get("pic"), total > 0) {
            writeln!(
                out,
                "PIC accesses per frame: {:.2} of {:.2} port accesses (kvm_pio, traced in windows; the paper counted 5 per interrupt)",
                pio * pic as f64 / total as f64,
                pio
            )?;
        }
    }
    if let Some(p) = &r.transmit_path {
        let parts: Vec<String> = p
            .segments_us
            .iter()
            .map(|(name, us)| format!("{name} {us:.2}"))
            .collect();
        writeln!(
            out,
            "transmit path over {} kicks (us): {}; {:.2} in all; first and last segments +-{:.2} (TSC offset {} cycles). The paper: 0.57 + 4.45 + 1.23 + 17.55 = 23.8 to the write's return, 31.63 to the next guest instruction.",
            p.kicks,
            parts.join(", "),
            p.total_us,
            p.error_us,
            p.tsc_offset_cycles
        )?;
    }
    let g = &r.guest_counters;
    if let (Some(min), Some(mean), Some(max)) = (
        g.get("rtt_cycles_min"),
        g.get("rtt_cycles_mean"),
        g.get("rtt_cycles_max"),
    ) {
        let us = |c: &u64| *c as f64 / r.host_tsc_mhz;
        writeln!(
            out,
            "pingpong round trip: min {:.1} us, mean {:.1} us, max {:.1} us (TSC {:.0} MHz)",
            us(min),
            us(mean),
            us(max),
            r.host_tsc_mhz
        )?;
    }
    for b in &r.bad_messages {
        writeln!(out, "ignored mailbox message: {b}")?;
    }
    Ok(())
}

/// How the text report marks a row of a thread other than the vCPU's.
pub fn thread_tag(thread: Thread) -> &'static str {
    match thread {
        Thread::Io => "[io] ",
        Thread::Pvnet => "[pv] ",
        Thread::Vcpu | Thread::Workbench => "",
    }
}
