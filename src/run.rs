//! Headless runs: boot a guest, follow its events, stop it on time or on a
//! signal, and report the result as text or JSON.

use crate::cli::RunArgs;
use crate::guest_image::GuestImage;
use crate::netrun::NetReport;
use crate::profiler::emulation::EmulationSummary;
use crate::profiler::sampler::{SampleSummary, IO};
use crate::session::Session;
use crate::vmm::events::Finish;
use crate::vmm::exits::ExitStats;
use profiles::table::{Measured, Table};
use profiles::taxonomy::{Category, Thread};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The tracepoint that counts every return from `KVM_RUN` to user space.
pub const USERSPACE_EXIT: &str = "kvm/kvm_userspace_exit";
/// The tracepoint that counts every guest port access, in-kernel or not.
pub const PIO: &str = "kvm/kvm_pio";

/// How a run ended, for people and scripts.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// guest_exit, host_stop, triple_fault, emulation_failure, dead_halt,
    /// unexpected_exit or kvm_error.
    pub kind: &'static str,
    /// The guest's exit status, for guest_exit.
    pub status: Option<u32>,
    /// The guest RIP, where one is known.
    pub rip: Option<u64>,
    /// The RIP as function+offset in the guest image.
    pub symbol: Option<String>,
    /// Instruction bytes at RIP, hex, for emulation failures.
    pub bytes: Option<String>,
    /// One plain sentence.
    pub message: String,
    /// Whether the run counts as a failure.
    pub failed: bool,
}

/// A guest phase the host timed (from its begin to its end message).
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    /// Phase name.
    pub name: String,
    /// Phase index.
    pub index: u64,
    /// Host wall time between the begin and end messages.
    pub seconds: f64,
}

pub use profiles::path::TransmitPath;

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The guest name or path.
    pub guest: String,
    /// Its GNU build ID.
    pub guest_build_id: Option<String>,
    /// Its command line.
    pub cmdline: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time from resume to finish.
    pub seconds: f64,
    /// Exits to user space as worldswitch counted them.
    pub exits: ExitStats,
    /// Tracepoint counts on the vCPU thread, by tracepoint.
    pub tracepoints: BTreeMap<String, u64>,
    /// Why tracepoints could not be counted, if they could not.
    pub tracepoints_unavailable: Option<String>,
    /// Counters the guest reported through the mailbox (last value wins).
    pub guest_counters: BTreeMap<String, u64>,
    /// Phases the guest reported, timed by the host.
    pub phases: Vec<PhaseTime>,
    /// Malformed mailbox messages, ignored.
    pub bad_messages: Vec<String>,
    /// Guest console output (the last 64 KiB).
    pub console: String,
    /// The NIC's frame accounting, at the top level of the JSON.
    #[serde(flatten)]
    pub net: NetReport,
    /// Where the vCPU thread's CPU time went, from its markers.
    pub profile: Table,
    /// The transmit path (Figure 5), when the guest measured it.
    pub transmit_path: Option<TransmitPath>,
    /// The emulated-instruction mix from `kvm:kvm_emulate_insn` windows.
    pub emulation: Option<EmulationSummary>,
    /// Sampled stacks, folded (saved by `record`, not printed by `run`).
    #[serde(skip)]
    pub folded: BTreeMap<String, u64>,
    /// CPU seconds of the vCPU thread.
    pub vcpu_cpu_seconds: f64,
    /// CPU seconds of the I/O thread (TAP only).
    pub io_cpu_seconds: Option<f64>,
    /// Every worldswitch thread's CPU over the run, percent of one core
    /// (threads that ended before the run did are missing).
    pub thread_cpu: Vec<profiles::snapshot::ThreadCpu>,
    /// The optimization toggles at the end of the run.
    pub optimizations: BTreeMap<String, bool>,
    /// When the toggles changed (seconds since the start) and to what; the
    /// first entry is the start.
    pub optimization_changes: Vec<profiles::snapshot::Mark>,
    /// The host TSC rate, measured at the end of the run, for turning the
    /// guest's TSC cycle counts into time (the guest's TSC ticks at the
    /// host's rate on PVM and on VT-x/AMD-V without TSC scaling).
    pub host_tsc_mhz: f64,
}

/// Measures the host TSC rate against CLOCK_MONOTONIC over 20 ms.
pub fn host_tsc_mhz() -> f64 {
    let tsc = || {
        // SAFETY: RDTSC has no preconditions on x86-64.
        unsafe { core::arch::x86_64::_rdtsc() }
    };
    let (t0, c0) = (Instant::now(), tsc());
    std::thread::sleep(Duration::from_millis(20));
    let (t1, c1) = (Instant::now(), tsc());
    (c1 - c0) as f64 / t1.duration_since(t0).as_secs_f64() / 1e6
}

/// Describes how a run finished.
pub fn outcome(finish: &Finish, image: &GuestImage) -> Outcome {
    let sym = |rip: u64| image.symbolize(rip);
    let at = |rip: u64| match sym(rip) {
        Some(s) => format!("{rip:#x} ({s})"),
        None => format!("{rip:#x}"),
    };
    let base = |kind, message: String, failed| Outcome {
        kind,
        status: None,
        rip: None,
        symbol: None,
        bytes: None,
        message,
        failed,
    };
    match finish {
        Finish::GuestExit(status) => Outcome {
            status: Some(*status),
            ..base(
                "guest_exit",
                format!("The guest exited with status {status}."),
                *status != 0,
            )
        },
        Finish::HostStop => base("host_stop", "Stopped by the host.".into(), false),
        Finish::TripleFault { rip } => Outcome {
            rip: Some(*rip),
            symbol: sym(*rip),
            ..base(
                "triple_fault",
                format!("The guest triple-faulted near {}; it cannot continue.", at(*rip)),
                true,
            )
        },
        Finish::EmulationFailure(f) => {
            let bytes: Vec<String> = f.bytes.iter().map(|b| format!("{b:02x}")).collect();
            Outcome {
                rip: Some(f.rip),
                symbol: sym(f.rip),
                bytes: Some(bytes.join(" ")),
                ..base(
                    "emulation_failure",
                    format!(
                        "KVM could not emulate the guest instruction at {} (CPL{}, bytes {}); on hosts that emulate guest kernel code, CPL0 code must not use SSE or AVX.",
                        at(f.rip),
                        f.cpl,
                        bytes.join(" ")
                    ),
                    true,
                )
            }
        }
        Finish::DeadHalt { rip } => Outcome {
            rip: Some(*rip),
            symbol: sym(*rip),
            ..base(
                "dead_halt",
                format!(
                    "The guest halted with interrupts disabled at {} and can never wake; it was stopped.",
                    at(*rip)
                ),
                true,
            )
        },
        Finish::UnexpectedExit(what) => base(
            "unexpected_exit",
            format!("The guest caused an exit worldswitch does not handle ({what})."),
            true,
        ),
        Finish::KvmError(what) => base("kvm_error", format!("KVM failed: {what}."), true),
    }
}

/// Boots the guest `args` names and follows it to the end; console lines
/// go to `console` as they arrive, and a status line about the link goes to
/// `status` every second while frames flow. SIGINT and SIGTERM stop the
/// guest and end the run normally.
pub fn run(
    args: &RunArgs,
    console: &mut dyn Write,
    status: &mut dyn Write,
) -> anyhow::Result<RunResult> {
    run_noting(args, console, status, None)
}

/// [`run`], printing `notice` to stderr once the guest has booted (so a
/// failure to boot is the only thing said).
pub fn run_noting(
    args: &RunArgs,
    console: &mut dyn Write,
    status: &mut dyn Write,
    notice: Option<&str>,
) -> anyhow::Result<RunResult> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted.clone())?;
    }
    let mut session = Session::start(args)?;
    for notice in notice.into_iter().chain(session.notices()) {
        eprintln!("worldswitch: {notice}");
    }
    let mut last_status = (Instant::now(), (0u64, 0u64));
    while !session.pump(Duration::from_millis(50), console)? {
        if last_status.0.elapsed() >= Duration::from_secs(1) {
            let now = (Instant::now(), session.delivered());
            let dt = now.0.duration_since(last_status.0).as_secs_f64();
            let (frames, bytes) = (now.1 .0 - last_status.1 .0, now.1 .1 - last_status.1 .1);
            if frames > 0 {
                let _ = writeln!(
                    status,
                    "{:7.1} s  {:8.2} Mb/s  {:8.0} frames/s",
                    session.elapsed(),
                    bytes as f64 * 8.0 / dt / 1e6,
                    frames as f64 / dt
                );
            }
            last_status = now;
        }
        for w in session.take_warnings() {
            eprintln!("worldswitch: warning: {w}");
        }
        if session.elapsed() >= 0.5 {
            crate::fault::panic_if_asked("the headless run");
        }
        let timed_out = args
            .duration
            .is_some_and(|d| session.elapsed() >= d.as_secs_f64());
        if timed_out || interrupted.load(Ordering::Relaxed) {
            session.stop();
        }
    }
    session.finish(console)
}

/// The vCPU thread's overhead table from its markers. The rows inside
/// KVM_RUN and the other threads' rows need the sampling collectors.
pub(crate) fn vcpu_table(
    p: &crate::vmm::events::VcpuProfile,
    io: Option<&crate::vmnet::tap::IoProfile>,
    samples: Result<&SampleSummary, &str>,
    tsc_mhz: f64,
    wall: f64,
) -> Table {
    let rows = |markers: &[crate::profiler::markers::MarkerRow], thread| {
        markers
            .iter()
            .map(|m| Measured {
                key: m.key.to_string(),
                count: m.count,
                cycles: m.cycles,
                p50_cycles: m.p50_cycles,
                p99_cycles: m.p99_cycles,
                samples: None,
                thread: Some(thread),
            })
            .collect::<Vec<_>>()
    };
    let mut measured = rows(&p.markers, Thread::Vcpu);
    let marker_cycles: u64 = p.markers.iter().map(|m| m.cycles).sum();
    if let Some(io) = io {
        measured.extend(rows(&io.markers, Thread::Io));
    }
    let kvm_rows = [
        Category::GuestNative,
        Category::GuestIdle,
        Category::WorldSwitch,
        Category::EmulatedOrdinary,
        Category::Privileged,
        Category::Iret,
        Category::PioInKernel,
        Category::IrqDelivery,
        Category::ExitToUser,
    ];
    let mut missing: Vec<(Category, String)> = Vec::new();
    let mut halted_seconds = 0.0;
    match samples {
        Ok(s) if s.by_category.values().sum::<u64>() > 0 => {
            // Split the CPU time spent inside KVM_RUN by the sampled shares.
            // Markers time KVM_RUN by the clock, which also runs while the
            // vCPU sleeps halted; cpu-clock samples only see it running. So
            // the CPU part is the thread's CPU time less its other rows, and
            // the rest of the KVM_RUN time is reported as halted.
            let in_run: u64 = s.by_category.values().sum();
            if let Some(i) = measured.iter().position(|m| m.key == "kvm_run") {
                let run = measured.remove(i);
                let outside: u64 = measured
                    .iter()
                    .filter(|m| m.thread == Some(Thread::Vcpu))
                    .map(|m| m.cycles)
                    .sum();
                let cpu_cycles = (p.cpu_seconds * 1e6 * tsc_mhz) as u64;
                let run_cpu = cpu_cycles.saturating_sub(outside).min(run.cycles);
                // Time inside KVM_RUN off the CPU is halted or preempted.
                halted_seconds = ((run.cycles - run_cpu) as f64 / (tsc_mhz * 1e6)
                    - s.preempted_seconds)
                    .max(0.0);
                for (cat, &n) in &s.by_category {
                    measured.push(Measured {
                        key: cat.key().to_string(),
                        count: 0,
                        cycles: (run_cpu as f64 * n as f64 / in_run as f64) as u64,
                        p50_cycles: 0.0,
                        p99_cycles: 0.0,
                        samples: Some(n),
                        thread: Some(Thread::Vcpu),
                    });
                }
            }
            for c in kvm_rows {
                if !s.by_category.contains_key(&c) {
                    missing.push((c, "no samples fell in this row".into()));
                }
            }
        }
        Ok(_) => missing
            .extend(kvm_rows.map(|c| (c, "no samples were taken inside KVM_RUN".to_string()))),
        Err(why) => missing.extend(kvm_rows.map(|c| (c, why.to_string()))),
    }
    if samples.is_err() {
        missing.push((
            Category::Preempted,
            "needs the sampler's context-switch records".into(),
        ));
    }
    let peer_samples = samples.ok().map_or(0, |s| {
        [&s.vmapp_by_category, &s.pv_by_category]
            .iter()
            .filter_map(|m| m.get(&Category::Peer))
            .sum::<u64>()
    });
    if peer_samples == 0 {
        missing.push((
            Category::Peer,
            "no samples caught the host delivering to the peer inside the TAP write (it needs sampling and the TAP backend)".into(),
        ));
    }
    if io.is_none() {
        missing.push((
            Category::VmnetRx,
            "no I/O thread: the sink backend receives nothing".into(),
        ));
    }
    // 100% is the CPU time of the threads whose rows are in the table.
    let mut cpu = p.cpu_seconds;
    let mut threads = vec!["vCPU"];
    if let Some(io) = io {
        cpu += io.cpu_seconds;
        threads.push("I/O");
    }
    let pv_rows = pv_rows(p, samples.ok(), tsc_mhz);
    if !pv_rows.is_empty() {
        cpu += p.pv_cpu_seconds;
        threads.push("pv-nic");
    }
    measured.extend(pv_rows);
    let denominator = match threads.split_last() {
        Some((last, [])) => format!("CPU time of the {last} thread (CLOCK_THREAD_CPUTIME_ID)"),
        Some((last, rest)) => format!(
            "CPU time of the {} and {last} threads (CLOCK_THREAD_CPUTIME_ID)",
            rest.join(", ")
        ),
        None => unreachable!("the vCPU thread is always there"),
    };
    let mut table = Table::from_markers(&measured, tsc_mhz, (cpu, &denominator), wall, &missing);
    if let Ok(s) = samples {
        table.profiler_cost_seconds = s.cost_seconds;
        table.preempted_seconds = Some(s.preempted_seconds);
        table.samples_by_thread = s.threads.clone();
        table.unsampled_threads = s.unwatched.clone();
        // The cross-check: each marker row of the vCPU and I/O threads
        // beside its share of that thread's samples.
        let io_samples = s.threads.get(IO).copied().unwrap_or(0);
        for row in table.rows.iter_mut() {
            let Some(cat) = Category::from_key(&row.category) else {
                continue;
            };
            if row.source != "markers" || cat.world() != profiles::taxonomy::World::Vmapp {
                continue;
            }
            let (cpu_us, by_row, total) = match (row.thread, io) {
                (Thread::Vcpu, _) => (p.cpu_seconds * 1e6, &s.vmapp_by_category, s.total),
                (Thread::Io, Some(io)) => (io.cpu_seconds * 1e6, &s.io_by_category, io_samples),
                _ => continue,
            };
            if total == 0 || cpu_us <= 0.0 {
                continue;
            }
            let mut n = by_row.get(&cat).copied().unwrap_or(0);
            if cat == Category::VmnetTx {
                // The marker times the whole write, the peer's part too.
                n += by_row.get(&Category::Peer).copied().unwrap_or(0);
            }
            row.cross_check = Some(profiles::table::CrossCheck {
                marker_share_pct: row.total_us / cpu_us * 100.0,
                sampled_share_pct: n as f64 / total as f64 * 100.0,
                samples: n,
            });
        }
    }
    if let Ok(s) = samples {
        split_peer(&mut table, s);
    }
    table.halted_seconds = halted_seconds;
    table.vcpu_marker_seconds = marker_cycles as f64 / (tsc_mhz.max(1e-9) * 1e6);
    table
}

/// The pv-nic drain thread's rows, once its samples show it transmitting:
/// its CPU time split by them (the TAP write and the ring, the peer's stack
/// inside the write, the doorbell's eventfd). Without samples there are no
/// rows, and its CPU stays out of the denominator.
fn pv_rows(
    p: &crate::vmm::events::VcpuProfile,
    samples: Option<&SampleSummary>,
    tsc_mhz: f64,
) -> Vec<Measured> {
    // A drain thread that only woke to follow the toggle has not sent.
    let Some(s) = samples else {
        return Vec::new();
    };
    let sampled: u64 = s.pv_by_category.values().sum();
    if p.pv_cpu_seconds <= 0.0 || p.pv_frames == 0 || sampled == 0 {
        return Vec::new();
    }
    let cycles = p.pv_cpu_seconds * tsc_mhz * 1e6;
    s.pv_by_category
        .iter()
        .map(|(cat, &n)| Measured {
            key: cat.key().to_string(),
            count: 0,
            cycles: (cycles * n as f64 / sampled as f64) as u64,
            p50_cycles: 0.0,
            p99_cycles: 0.0,
            samples: Some(n),
            thread: Some(Thread::Pvnet),
        })
        .collect()
}

/// How the text report marks a row of a thread other than the vCPU's.
fn thread_tag(thread: Thread) -> &'static str {
    match thread {
        Thread::Io => "[io] ",
        Thread::Pvnet => "[pv] ",
        Thread::Vcpu | Thread::Workbench => "",
    }
}

/// Splits the TAP write's marker time: the part where the host stack
/// delivers the frame to the peer's socket and wakes the peer (it runs in
/// the writer's context) becomes the peer's row, by the share of the
/// write's samples that fell there.
fn split_peer(t: &mut Table, s: &SampleSummary) {
    let peer = s
        .vmapp_by_category
        .get(&Category::Peer)
        .copied()
        .unwrap_or(0);
    let tx = s
        .vmapp_by_category
        .get(&Category::VmnetTx)
        .copied()
        .unwrap_or(0);
    let Some(i) = t
        .rows
        .iter()
        .position(|r| r.category == "vmnet_tx" && r.thread == Thread::Vcpu)
    else {
        return;
    };
    if peer == 0 {
        return;
    }
    let f = peer as f64 / (peer + tx) as f64;
    let base = t.rows[i].clone();
    let mut r = base.derived(Category::Peer, profiles::table::SPLIT_BY_SAMPLES);
    r.label = format!("{} (inside the TAP write)", r.label);
    r.share_pct = base.share_pct * f;
    r.total_us = base.total_us * f;
    r.avg_us = base.avg_us * f;
    r.samples = Some(peer);
    let w = &mut t.rows[i];
    w.share_pct *= 1.0 - f;
    w.total_us *= 1.0 - f;
    w.avg_us *= 1.0 - f;
    w.source = profiles::table::SPLIT_BY_SAMPLES.into();
    // Percentiles are of whole writes; split rows have none of their own.
    for row in [&mut *w, &mut r] {
        row.p50_us = 0.0;
        row.p99_us = 0.0;
    }
    t.rows.push(r);
    t.sort_rows();
}

/// Splits the sampled instruction-emulation row by the instruction mix the
/// tracepoint windows saw: privileged ones and IRETs to their rows, port
/// I/O between in-kernel and exit-to-user by `in_kernel_pio`.
pub(crate) fn split_emulation(t: &mut Table, e: &EmulationSummary, in_kernel_pio: f64) {
    let total = e.total();
    if let (0, Some(why)) = (total, &e.refused) {
        for c in [Category::Privileged, Category::Iret] {
            t.unavailable.retain(|u| u.category != c.key());
            t.unavailable.push(profiles::table::Unavailable {
                category: c.key().into(),
                reason: format!("{why}; emulated instructions stay in one row"),
            });
        }
        return;
    }
    let Some(i) = t
        .rows
        .iter()
        .position(|r| r.category == "emulated_ordinary" && r.samples.is_some())
    else {
        return;
    };
    if total == 0 {
        return;
    }
    let base = t.rows[i].clone();
    let parts = [
        (Category::Privileged, e.privileged as f64 / total as f64),
        (Category::Iret, e.iret as f64 / total as f64),
        (
            Category::PioInKernel,
            e.pio as f64 / total as f64 * in_kernel_pio,
        ),
        (
            Category::ExitToUser,
            e.pio as f64 / total as f64 * (1.0 - in_kernel_pio),
        ),
    ];
    let mut kept = 1.0;
    for (cat, f) in parts {
        if f <= 0.0 {
            continue;
        }
        kept -= f;
        let share = base.share_pct * f;
        let us = base.total_us * f;
        match t.rows.iter_mut().find(|r| r.category == cat.key()) {
            Some(r) => {
                r.share_pct += share;
                r.total_us += us;
            }
            None => {
                let mut r = base.derived(cat, "emulate_insn windows");
                r.share_pct = share;
                r.total_us = us;
                r.samples = None;
                t.rows.push(r);
                t.unavailable.retain(|u| u.category != cat.key());
            }
        }
    }
    let r = &mut t.rows[i];
    r.share_pct *= kept;
    r.total_us *= kept;
    t.sort_rows();
    t.profiler_cost_seconds += e.cost_seconds;
}

/// Prints an overhead table like the paper's Table 1 ("Total time"), then
/// its VMM rows as shares of VMM time.
pub fn print_table(t: &Table, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "\nwhere the time went (100% = {:.3} s: {}):",
        t.denominator_seconds, t.denominator
    )?;
    writeln!(
        out,
        "{:<55} {:>7} {:>10} {:>11} {:>9} {:>9} {:>7}",
        "row", "share", "count", "per second", "avg us", "p99 us", "paper"
    )?;
    for row in &t.rows {
        let paper = match (row.paper_table, row.paper_share_pct) {
            (Some(profiles::taxonomy::PaperTable::Total), Some(p)) => format!("{p:.1}%"),
            _ => String::new(),
        };
        // Rows of other threads say so; the rest are the vCPU thread's.
        let label = format!("{}{}", thread_tag(row.thread), row.label);
        let label: String = label.chars().take(55).collect();
        let split = row.source == profiles::table::SPLIT_BY_SAMPLES;
        if split {
            writeln!(
                out,
                "{label:<55} {:>6.1}% {:>10} {:>11.0} {:>9.2} {:>9} {paper:>7}",
                row.share_pct, row.count, row.rate_per_sec, row.avg_us, "-"
            )?;
            continue;
        }
        if row.source != "markers" {
            let samples = row
                .samples
                .map_or("est.".to_string(), |n| format!("~{n} smp"));
            writeln!(
                out,
                "{label:<55} {:>6.1}% {samples:>10} {:>11} {:>9} {:>9} {paper:>7}",
                row.share_pct, "-", "-", "-"
            )?;
            continue;
        }
        writeln!(
            out,
            "{label:<55} {:>6.1}% {:>10} {:>11.0} {:>9.2} {:>9.2} {:>7}",
            row.share_pct, row.count, row.rate_per_sec, row.avg_us, row.p99_us, paper
        )?;
    }
    writeln!(
        out,
        "(rows inside KVM_RUN are estimates: the exact KVM_RUN time split by sampled kernel stacks, and instruction emulation by the emulate_insn mix; the profiler itself used {:.3} s of CPU)",
        t.profiler_cost_seconds
    )?;
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
            "samples of all worldswitch threads ({sampled}, by thread): {}",
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
    if t.halted_seconds > 0.0005 {
        writeln!(
            out,
            "the vCPU also spent {:.3} s halted inside KVM_RUN (waiting, not CPU time)",
            t.halted_seconds
        )?;
    }
    if !t.unavailable.is_empty() {
        let keys: Vec<&str> = t.unavailable.iter().map(|u| u.category.as_str()).collect();
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
pub fn print_text(r: &RunResult, out: &mut dyn Write) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pv_drain_thread_is_split_by_its_samples() {
        let mut p = crate::vmm::events::VcpuProfile {
            cpu_seconds: 4.0,
            markers: Vec::new(),
            pv_cpu_seconds: 1.0,
            pv_frames: 1000,
        };
        let mut s = SampleSummary::default();
        assert!(
            pv_rows(&p, Some(&s), 1000.0).is_empty(),
            "no samples, no rows"
        );
        s.pv_by_category.insert(Category::HostEvents, 10);
        s.pv_by_category.insert(Category::VmnetTx, 60);
        p.pv_frames = 0;
        assert!(
            pv_rows(&p, Some(&s), 1000.0).is_empty(),
            "a drain that sent nothing has no rows"
        );
        p.pv_frames = 1000;
        s.pv_by_category.insert(Category::Peer, 30);
        let rows = pv_rows(&p, Some(&s), 1000.0);
        let cycles = |k: &str| rows.iter().find(|m| m.key == k).unwrap().cycles;
        // 1 s at 1000 MHz, split 10:60:30.
        assert_eq!(cycles("vmnet_tx"), 600_000_000);
        assert_eq!(cycles("peer"), 300_000_000);
        assert_eq!(cycles("host_events"), 100_000_000);
        assert!(rows.iter().all(|m| m.thread == Some(Thread::Pvnet)));
    }

    #[test]
    fn outcomes_are_plain_sentences_with_symbols() {
        let image = GuestImage::resolve("hello").unwrap();
        let o = outcome(&Finish::TripleFault { rip: 0x100000 }, &image);
        assert!(o.failed);
        assert_eq!(o.symbol.as_deref(), Some("_start32+0x0"));
        assert!(
            o.message.contains("0x100000 (_start32+0x0)"),
            "{}",
            o.message
        );
        let o = outcome(&Finish::GuestExit(0), &image);
        assert!(!o.failed && o.message.ends_with('.'));
        assert!(outcome(&Finish::GuestExit(2), &image).failed);
        assert!(!outcome(&Finish::HostStop, &image).failed);
    }
}
