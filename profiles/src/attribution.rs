//! How measurements become the overhead table: each thread's marker rows
//! with its time off the CPU taken out, the CPU time inside `KVM_RUN` split
//! by kernel-stack samples, the emulation row split by the traced
//! instruction mix, the pv-nic drain thread split by its samples, and the
//! cross-check of marker rows against samples. Pure code over
//! [`crate::inputs`]: every share is of CPU time, so none leaves [0, 100],
//! and the time that is not CPU time (halted, preempted, blocked) is
//! reported beside the table.

use crate::inputs::{EmulationSummary, MarkedThread, MarkerClock, PvDrain, SampleSummary};
use crate::table::{CrossCheck, Measured, OffCpu, Source, Table, Unavailable};
use crate::taxonomy::{Category, Thread, World};
use std::collections::BTreeMap;

/// The rows inside `KVM_RUN` that only kernel-stack samples can tell apart.
const KVM_ROWS: [Category; 9] = [
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

/// Everything the table is built from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The TSC rate that converts marker cycles, in MHz.
    pub tsc_mhz: f64,
    /// Wall time of the interval, for rates.
    pub wall_seconds: f64,
    /// The vCPU thread. Its `kvm_run` marker, when there is one, times
    /// `KVM_RUN` by the clock; without it (a VMM we did not start) the
    /// samples say how much of its CPU time was inside `KVM_RUN`.
    pub vcpu: &'a MarkedThread,
    /// The I/O thread, where there is one.
    pub io: Option<&'a MarkedThread>,
    /// The pv-nic drain thread.
    pub pv: PvDrain,
    /// Stack samples, or why there are none.
    pub samples: Result<&'a SampleSummary, &'a str>,
    /// The emulated-instruction mix, where the windows ran.
    pub emulation: Option<&'a EmulationSummary>,
    /// Of the guest's port accesses, the share KVM completed itself.
    pub in_kernel_pio: f64,
}

/// Builds the overhead table.
pub fn table(i: &Inputs) -> Table {
    let tsc = i.tsc_mhz.max(1e-9);
    let samples = i.samples.ok();
    let mut missing: Vec<(Category, String)> = Vec::new();
    let mut off_cpu = BTreeMap::new();

    // The vCPU thread: the run delay from the kernel where it reports it,
    // else what the sampler's context-switch records saw.
    let vcpu_delay = i
        .vcpu
        .run_delay_seconds
        .or(samples.map(|s| s.preempted_seconds));
    let vcpu = on_cpu(i.vcpu, Thread::Vcpu, vcpu_delay, tsc);
    let mut measured = vcpu.rows;
    let rest_cpu = (i.vcpu.cpu_seconds - vcpu.cpu_seconds).max(0.0);
    let run = i
        .vcpu
        .markers
        .iter()
        .find(|m| m.category == Category::KvmRun);
    let in_run: u64 = samples.map_or(0, |s| s.by_category.values().sum());
    let mut halted_seconds = 0.0;
    let run_cpu = match run {
        Some(run) => {
            // KVM_RUN by the clock also runs while the vCPU sleeps halted or
            // waits preempted; its CPU part is what the thread's CPU time
            // leaves once its other rows are out.
            let clock = run.cycles as f64 / (tsc * 1e6);
            let cpu = rest_cpu.min(clock);
            let preempted =
                (vcpu_delay.unwrap_or(0.0) - vcpu.off.preempted_seconds).clamp(0.0, clock - cpu);
            halted_seconds = clock - cpu - preempted;
            cpu
        }
        // No marker timed KVM_RUN: its share of the samples says.
        None => samples.filter(|s| s.total > 0).map_or(0.0, |s| {
            (i.vcpu.cpu_seconds * in_run as f64 / s.total as f64).min(rest_cpu)
        }),
    };
    off_cpu.insert(Thread::Vcpu, vcpu.off);
    // A VMM we did not start has no markers: its time outside KVM_RUN is
    // split by the samples there, as the time inside is.
    if let (None, Some(s)) = (run, samples) {
        let outside = s.total.saturating_sub(in_run);
        if outside > 0 {
            let cpu = i.vcpu.cpu_seconds * outside as f64 / s.total as f64;
            measured.extend(sampled_rows(cpu, &s.vmapp_by_category, Thread::Vcpu, tsc));
        }
    }
    match samples {
        Some(s) if in_run > 0 => {
            for (&cat, &n) in &s.by_category {
                measured.push(Measured {
                    category: cat,
                    count: 0,
                    cycles: (run_cpu * tsc * 1e6 * n as f64 / in_run as f64) as u64,
                    p50_cycles: 0.0,
                    p99_cycles: 0.0,
                    samples: Some(n),
                    thread: Some(Thread::Vcpu),
                });
            }
            missing.extend(
                KVM_ROWS
                    .iter()
                    .filter(|c| !s.by_category.contains_key(c))
                    .map(|&c| (c, "no samples fell in this row".to_string())),
            );
        }
        _ => {
            if let Some(run) = run {
                measured.push(Measured {
                    category: Category::KvmRun,
                    count: run.count,
                    cycles: (run_cpu * tsc * 1e6) as u64,
                    p50_cycles: run.p50_cycles,
                    p99_cycles: run.p99_cycles,
                    samples: None,
                    thread: Some(Thread::Vcpu),
                });
            }
            let why = match i.samples {
                Ok(_) => "no samples were taken inside KVM_RUN",
                Err(why) => why,
            };
            missing.extend(KVM_ROWS.map(|c| (c, why.to_string())));
        }
    }
    if vcpu_delay.is_none() {
        missing.push((
            Category::Preempted,
            "needs the kernel's run delay or the sampler's context-switch records".into(),
        ));
    }

    // 100% is the CPU time of the threads whose rows are in the table.
    let mut cpu = i.vcpu.cpu_seconds;
    let mut threads = vec!["vCPU"];
    if let Some(io) = i.io {
        let io_rows = on_cpu(io, Thread::Io, io.run_delay_seconds, tsc);
        measured.extend(io_rows.rows);
        if let (true, Some(s)) = (io.markers.is_empty(), samples) {
            // No markers (a VMM we did not start): its samples split it.
            measured.extend(sampled_rows(
                io.cpu_seconds,
                &s.io_by_category,
                Thread::Io,
                tsc,
            ));
        }
        off_cpu.insert(Thread::Io, io_rows.off);
        cpu += io.cpu_seconds;
        threads.push("I/O");
    } else {
        missing.push((
            Category::VmnetRx,
            "no I/O thread: the sink backend receives nothing".into(),
        ));
    }
    let pv = pv_rows(i.pv, samples, tsc);
    if !pv.is_empty() {
        cpu += i.pv.cpu_seconds;
        threads.push("pv-nic");
    }
    measured.extend(pv);
    let peer_samples: u64 = samples.map_or(0, |s| {
        [&s.vmapp_by_category, &s.pv_by_category]
            .iter()
            .filter_map(|m| m.get(&Category::Peer))
            .sum()
    });
    if peer_samples == 0 {
        missing.push((
            Category::Peer,
            "no samples caught the host delivering to the peer inside the TAP write (it needs sampling and the TAP backend)".into(),
        ));
    }
    let denominator = match threads.split_last() {
        Some((last, [])) => format!("CPU time of the {last} thread (CLOCK_THREAD_CPUTIME_ID)"),
        Some((last, rest)) => format!(
            "CPU time of the {} and {last} threads (CLOCK_THREAD_CPUTIME_ID)",
            rest.join(", ")
        ),
        None => unreachable!("the vCPU thread is always there"),
    };
    let mut table = Table::from_measured(
        &measured,
        tsc,
        (cpu, &denominator),
        i.wall_seconds,
        &missing,
    );
    table.preempted_seconds = vcpu_delay;
    table.halted_seconds = halted_seconds;
    table.off_cpu = off_cpu;
    table.vcpu_marker_seconds =
        i.vcpu.markers.iter().map(|m| m.cycles).sum::<u64>() as f64 / (tsc * 1e6);
    if let Some(s) = samples {
        table.profiler_cost_seconds = s.cost_seconds;
        table.samples_by_thread = s.threads.clone();
        table.unsampled_threads = s.unwatched.clone();
        cross_check(&mut table, i, s);
        split_peer(&mut table, s);
    }
    if let Some(e) = i.emulation {
        split_emulation(&mut table, e, i.in_kernel_pio);
    }
    table
}

/// A thread's marker rows with its time off the CPU taken out.
struct OnCpu {
    rows: Vec<Measured>,
    /// CPU seconds the rows hold.
    cpu_seconds: f64,
    off: OffCpu,
}

/// Takes a thread's time off the CPU out of its marker rows (but
/// `kvm_run`, which the caller splits). Markers that time by the TSC
/// charge a preempted scope the wait: the run delay is shared out over the
/// time the thread was runnable (its CPU time and the delay), so the rows
/// keep the CPU part of their clock time (the vCPU thread sleeps only
/// inside `KVM_RUN`, so its delay falls where it runs). Markers that time
/// by the thread's CPU clock need no such share. What still exceeds the
/// thread's CPU time slept inside a scope, and is blocked time.
fn on_cpu(t: &MarkedThread, thread: Thread, run_delay: Option<f64>, tsc: f64) -> OnCpu {
    // Marker units to TSC cycles.
    let (unit, run_delay) = match t.clock {
        MarkerClock::Tsc => (1.0, run_delay),
        MarkerClock::ThreadCpuNs => (tsc / 1e3, None),
    };
    let marked = t.markers.iter().filter(|m| m.category != Category::KvmRun);
    let clock = marked.clone().map(|m| m.cycles).sum::<u64>() as f64 * unit / (tsc * 1e6);
    let (cpu, delay) = (t.cpu_seconds.max(0.0), run_delay.unwrap_or(0.0).max(0.0));
    let running = if cpu + delay > 0.0 {
        cpu / (cpu + delay)
    } else {
        1.0
    };
    let unpreempted = clock * running;
    let awake = if unpreempted > cpu {
        cpu / unpreempted
    } else {
        1.0
    };
    let factor = running * awake;
    OnCpu {
        rows: marked
            .map(|m| Measured {
                category: m.category,
                count: m.count,
                cycles: (m.cycles as f64 * unit * factor) as u64,
                p50_cycles: m.p50_cycles * unit,
                p99_cycles: m.p99_cycles * unit,
                samples: None,
                thread: Some(thread),
            })
            .collect(),
        cpu_seconds: clock * factor,
        off: OffCpu {
            preempted_seconds: clock - unpreempted,
            blocked_seconds: unpreempted * (1.0 - awake),
        },
    }
}

/// The pv-nic drain thread's rows, once its samples show it transmitting:
/// its CPU time split by them (the TAP write and the ring, the peer's stack
/// inside the write, the doorbell's eventfd). Without samples there are no
/// rows, and its CPU stays out of the denominator.
fn pv_rows(pv: PvDrain, samples: Option<&SampleSummary>, tsc: f64) -> Vec<Measured> {
    let Some(s) = samples else {
        return Vec::new();
    };
    let sampled: u64 = s.pv_by_category.values().sum();
    // A drain thread that only woke to follow the toggle has not sent.
    if pv.cpu_seconds <= 0.0 || pv.frames == 0 || sampled == 0 {
        return Vec::new();
    }
    sampled_rows(pv.cpu_seconds, &s.pv_by_category, Thread::Pvnet, tsc)
}

/// `cpu_seconds` of `thread` split over rows by its samples in each.
fn sampled_rows(
    cpu_seconds: f64,
    by_category: &BTreeMap<Category, u64>,
    thread: Thread,
    tsc: f64,
) -> Vec<Measured> {
    let sampled: u64 = by_category.values().sum();
    if sampled == 0 || cpu_seconds <= 0.0 {
        return Vec::new();
    }
    let cycles = cpu_seconds * tsc * 1e6;
    by_category
        .iter()
        .map(|(&cat, &n)| Measured {
            category: cat,
            count: 0,
            cycles: (cycles * n as f64 / sampled as f64) as u64,
            p50_cycles: 0.0,
            p99_cycles: 0.0,
            samples: Some(n),
            thread: Some(thread),
        })
        .collect()
}

/// Each VMApp marker row of the vCPU and I/O threads beside its share of
/// that thread's samples.
fn cross_check(t: &mut Table, i: &Inputs, s: &SampleSummary) {
    for row in t.rows.iter_mut() {
        if row.source != Source::Markers || row.category.world() != Some(World::Vmapp) {
            continue;
        }
        let (cpu_us, by_row, total) = match (row.thread, i.io) {
            (Thread::Vcpu, _) => (i.vcpu.cpu_seconds * 1e6, &s.vmapp_by_category, s.total),
            (Thread::Io, Some(io)) => (
                io.cpu_seconds * 1e6,
                &s.io_by_category,
                s.of_thread(Thread::Io),
            ),
            _ => continue,
        };
        if total == 0 || cpu_us <= 0.0 {
            continue;
        }
        let mut n = by_row.get(&row.category).copied().unwrap_or(0);
        if row.category == Category::VmnetTx {
            // The marker times the whole write, the peer's part too.
            n += by_row.get(&Category::Peer).copied().unwrap_or(0);
        }
        row.cross_check = Some(CrossCheck {
            marker_share_pct: row.total_us / cpu_us * 100.0,
            sampled_share_pct: n as f64 / total as f64 * 100.0,
            samples: n,
        });
    }
}

/// Splits the TAP write's marker time: the part where the host stack
/// delivers the frame to the peer's socket and wakes the peer (it runs in
/// the writer's context) becomes the peer's row, by the share of the
/// write's samples that fell there.
fn split_peer(t: &mut Table, s: &SampleSummary) {
    let count = |c| s.vmapp_by_category.get(&c).copied().unwrap_or(0);
    let (peer, tx) = (count(Category::Peer), count(Category::VmnetTx));
    let Some(i) = t
        .rows
        .iter()
        .position(|r| r.category == Category::VmnetTx && r.thread == Thread::Vcpu)
    else {
        return;
    };
    if peer == 0 {
        return;
    }
    let f = peer as f64 / (peer + tx) as f64;
    let base = t.rows[i].clone();
    let mut r = base.derived(Category::Peer, Source::SplitBySamples);
    r.label = format!("{} (inside the TAP write)", r.label);
    r.share_pct = base.share_pct * f;
    r.total_us = base.total_us * f;
    r.avg_us = base.avg_us * f;
    r.samples = Some(peer);
    let w = &mut t.rows[i];
    w.share_pct *= 1.0 - f;
    w.total_us *= 1.0 - f;
    w.avg_us *= 1.0 - f;
    w.source = Source::SplitBySamples;
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
fn split_emulation(t: &mut Table, e: &EmulationSummary, in_kernel_pio: f64) {
    let total = e.total();
    let why = match (&e.refused, e.windows) {
        (Some(why), _) => Some(why.as_str()),
        (None, 0) => Some(
            "the run ended before the first emulation window (half a period in, past the guest's boot)",
        ),
        _ => None,
    };
    if let (0, Some(why)) = (total, why) {
        for c in [Category::Privileged, Category::Iret] {
            t.unavailable.retain(|u| u.category != c);
            t.unavailable.push(Unavailable {
                category: c,
                reason: format!("{why}; emulated instructions stay in one row"),
            });
        }
        return;
    }
    let Some(i) = t
        .rows
        .iter()
        .position(|r| r.category == Category::EmulatedOrdinary && r.samples.is_some())
    else {
        return;
    };
    if total == 0 {
        return;
    }
    let base = t.rows[i].clone();
    let of = |n: u64| n as f64 / total as f64;
    let parts = [
        (Category::Privileged, of(e.privileged)),
        (Category::Iret, of(e.iret)),
        (Category::PioInKernel, of(e.pio) * in_kernel_pio),
        (Category::ExitToUser, of(e.pio) * (1.0 - in_kernel_pio)),
    ];
    let mut kept = 1.0;
    for (cat, f) in parts {
        if f <= 0.0 {
            continue;
        }
        kept -= f;
        let share = base.share_pct * f;
        let us = base.total_us * f;
        match t.rows.iter_mut().find(|r| r.category == cat) {
            Some(r) => {
                r.share_pct += share;
                r.total_us += us;
            }
            None => {
                let mut r = base.derived(cat, Source::EmulationWindows);
                r.share_pct = share;
                r.total_us = us;
                r.samples = None;
                t.rows.push(r);
                t.unavailable.retain(|u| u.category != cat);
            }
        }
    }
    let r = &mut t.rows[i];
    r.share_pct *= kept;
    r.total_us *= kept;
    t.sort_rows();
    t.profiler_cost_seconds += e.cost_seconds;
}

#[cfg(test)]
mod tests;
