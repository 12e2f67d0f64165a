//! `worldswitch attach PID`: the exits, interrupts, CPU and frames of a KVM
//! VMM we did not start (QEMU first), by thread, and per frame its TAP
//! carried. Strictly read-only: `/proc` and perf counters on its threads;
//! nothing is written to the target, its memory or its descriptors. This
//! first slice is headless: the vCPU threads' time is split by their
//! kernel stacks; the workbench's screens, user-stack unwinding and
//! symbols of the target are still to come.

pub mod target;

use crate::frontends::printer::print_json;
use crate::profiler::foreign::{ForeignSampler, HOST_KERNEL, VMM_USER};
use crate::profiler::tracepoints::{ThreadCounters, PIO, USERSPACE_EXIT};
use profiles::taxonomy::Category;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};
use target::{DevCounters, Target};

/// The interrupt tracepoints counted on the target's threads: a line set
/// through any route, and an MSI (`kvm_pic_set_irq` and
/// `kvm_ioapic_set_irq` would count a line's change again).
const IRQ_TRACEPOINTS: [&str; 2] = ["kvm/kvm_set_irq", "kvm/kvm_msi_set_irq"];
/// How often `/proc` is read (the last reading stands if the target exits).
const POLL: Duration = Duration::from_millis(100);

/// One of the target's threads over the run.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadFigures {
    /// Its TID.
    pub tid: i32,
    /// Its name (QEMU names vCPU threads only with `-name debug-threads=on`).
    pub name: String,
    /// A vCPU: KVM reported exits or port accesses on it.
    pub vcpu: bool,
    /// CPU, percent of one core.
    pub cpu_pct: f64,
    /// Exits to user space (`kvm:kvm_userspace_exit`).
    pub exits_to_user: Option<u64>,
    /// Port accesses KVM saw (`kvm:kvm_pio`).
    pub port_accesses: Option<u64>,
    /// Its stack samples by row: the paper's rows inside `KVM_RUN`
    /// (kernel stacks, the same rules as for our own vCPU), `vmm_user`
    /// (the VMM's user space, unsymbolized) and `host_kernel` (its system
    /// calls outside `KVM_RUN`).
    pub samples: BTreeMap<String, u64>,
    /// Interrupt events the thread caused: line changes (`kvm_set_irq`: a
    /// level-triggered interrupt counts when raised and when lowered) and
    /// MSIs (`kvm_msi_set_irq`).
    pub irq_events: Option<u64>,
}

/// A TAP device's traffic over the run.
#[derive(Debug, Clone, Serialize)]
pub struct TapFigures {
    /// The interface.
    pub name: String,
    /// Frames the guest sent (the TAP received).
    pub frames_from_guest: u64,
    /// Their bytes.
    pub bytes_from_guest: u64,
    /// Frames the TAP sent to the guest.
    pub frames_to_guest: u64,
}

/// Per frame the guest sent, over all the target's threads.
#[derive(Debug, Clone, Serialize)]
pub struct PerFrame {
    /// Frames the guest sent through its TAPs.
    pub frames: u64,
    /// Exits to user space per frame.
    pub exits_to_user: Option<f64>,
    /// Port accesses KVM completed itself per frame.
    pub port_accesses_in_kernel: Option<f64>,
    /// Interrupt events per frame (see [`ThreadFigures::irq_events`]).
    pub irq_events: Option<f64>,
    /// Microseconds of CPU per frame: `vcpu` for the vCPU threads, the
    /// others by name.
    pub cpu_us_by_thread: BTreeMap<String, f64>,
}

/// What `attach` measured.
#[derive(Debug, Clone, Serialize)]
pub struct AttachResult {
    /// The target.
    pub pid: i32,
    /// Its command name.
    pub name: String,
    /// vCPU descriptors it holds.
    pub vcpu_descriptors: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// The target exited before the duration was up.
    pub target_exited: bool,
    /// Its threads, vCPUs first.
    pub threads: Vec<ThreadFigures>,
    /// Its TAP devices.
    pub taps: Vec<TapFigures>,
    /// Per frame the guest sent (None: no TAP, or no frame; see
    /// `per_frame_unavailable`).
    pub per_frame: Option<PerFrame>,
    /// Why there is no per-frame figure.
    pub per_frame_unavailable: Option<String>,
    /// Where the vCPU threads' time went, by row, largest first.
    pub vcpu_rows: Vec<RowFigures>,
    /// What could not be measured, and why.
    pub unavailable: Vec<String>,
}

/// One row of the vCPU threads' time, from their samples.
#[derive(Debug, Clone, Serialize)]
pub struct RowFigures {
    /// The row's key.
    pub row: String,
    /// What it is.
    pub label: String,
    /// Share of the vCPU threads' samples, percent.
    pub share_pct: f64,
    /// Microseconds of CPU per frame (the share of the vCPU threads' CPU
    /// per frame), where frames flowed.
    pub us_per_frame: Option<f64>,
}

/// What a row key is, in words.
fn row_label(row: &str) -> String {
    match row {
        VMM_USER => "VMM user space, unsymbolized".into(),
        HOST_KERNEL => "the VMM's system calls outside KVM_RUN (TAP writes, polls, ioctls)".into(),
        // Without the emulation windows every emulated instruction stays
        // in this row.
        "emulated_ordinary" => {
            "guest instructions emulated (all kinds: no emulation windows on a target yet)".into()
        }
        key => Category::from_key(key).map_or(key.to_string(), |c| c.label().to_string()),
    }
}

/// The perf counters on one thread.
struct Counted {
    tid: i32,
    name: String,
    exits: Option<ThreadCounters>,
    irqs: Vec<ThreadCounters>,
}

fn total(c: &mut ThreadCounters) -> Option<Vec<u64>> {
    c.read()
        .ok()
        .map(|v| v.into_iter().map(|(_, n)| n).collect())
}

/// Measures `target` for `duration`, or until it exits, sampling its
/// threads' stacks at `sample_hz` (0: none).
pub fn measure(target: &Target, duration: Duration, sample_hz: u64) -> AttachResult {
    let pid = target.pid;
    let mut unavailable = Vec::new();
    let mut counted: Vec<Counted> = target::threads(pid)
        .into_iter()
        .map(|(tid, name)| {
            let exits = match ThreadCounters::open(tid, &[USERSPACE_EXIT, PIO]) {
                Ok(c) => Some(c),
                Err(e) => {
                    let why = format!("exit counts: {e}");
                    if !unavailable.contains(&why) {
                        unavailable.push(why);
                    }
                    None
                }
            };
            let irqs = IRQ_TRACEPOINTS
                .iter()
                .filter_map(|&t| ThreadCounters::open(tid, &[t]).ok())
                .collect();
            Counted {
                tid,
                name,
                exits,
                irqs,
            }
        })
        .collect();
    let read_runtime = |c: &[Counted]| -> Vec<Option<u64>> {
        c.iter().map(|t| target::runtime_ns(pid, t.tid)).collect()
    };
    let read_taps = || -> Vec<Option<DevCounters>> {
        target
            .taps
            .iter()
            .map(|t| target::tap_counters(pid, t))
            .collect()
    };
    let tids: Vec<i32> = counted.iter().map(|c| c.tid).collect();
    let mut sampler = match sample_hz {
        0 => {
            unavailable.push("stack samples: off (--sample-hz 0)".to_string());
            None
        }
        hz => match ForeignSampler::start(&tids, hz) {
            Ok(s) => Some(s),
            Err(e) => {
                unavailable.push(format!("stack samples: {e}"));
                None
            }
        },
    };
    let start = Instant::now();
    let runtime0 = read_runtime(&counted);
    let taps0 = read_taps();
    let (mut runtime1, mut taps1) = (runtime0.clone(), taps0.clone());
    let mut exited = false;
    while start.elapsed() < duration {
        if crate::run::interrupted() {
            break;
        }
        std::thread::sleep(POLL.min(duration.saturating_sub(start.elapsed())));
        if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
            exited = true;
            break;
        }
        // The last good reading stands for a thread or TAP that is gone.
        for (slot, now) in runtime1.iter_mut().zip(read_runtime(&counted)) {
            *slot = now.or(*slot);
        }
        for (slot, now) in taps1.iter_mut().zip(read_taps()) {
            *slot = now.or(*slot);
        }
        if let Some(s) = &mut sampler {
            s.drain();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (mut samples, lost) = sampler.map(ForeignSampler::finish).unwrap_or_default();
    if lost > 0 {
        unavailable.push(format!("{lost} stack samples lost by the rings"));
    }
    let mut threads: Vec<ThreadFigures> = counted
        .iter_mut()
        .zip(runtime0.iter().zip(&runtime1))
        .map(|(t, (r0, r1))| {
            let exits = t.exits.as_mut().and_then(total);
            let irqs = if t.irqs.is_empty() {
                None
            } else {
                Some(
                    t.irqs
                        .iter_mut()
                        .filter_map(total)
                        .map(|v| v.iter().sum::<u64>())
                        .sum(),
                )
            };
            let cpu = match (r0, r1) {
                (Some(a), Some(b)) => b.saturating_sub(*a) as f64 / 1e9,
                _ => 0.0,
            };
            let (user, pio) = match exits.as_deref() {
                Some([u, p]) => (Some(*u), Some(*p)),
                _ => (None, None),
            };
            ThreadFigures {
                tid: t.tid,
                name: t.name.clone(),
                vcpu: user.unwrap_or(0) + pio.unwrap_or(0) > 0,
                cpu_pct: cpu / seconds.max(1e-9) * 100.0,
                exits_to_user: user,
                port_accesses: pio,
                irq_events: irqs,
                samples: samples.remove(&t.tid).unwrap_or_default(),
            }
        })
        .collect();
    threads.sort_by(|a, b| b.vcpu.cmp(&a.vcpu).then(b.cpu_pct.total_cmp(&a.cpu_pct)));
    let taps: Vec<TapFigures> = target
        .taps
        .iter()
        .zip(taps0.iter().zip(&taps1))
        .filter_map(|(name, (a, b))| {
            let (a, b) = ((*a)?, (*b)?);
            Some(TapFigures {
                name: name.clone(),
                frames_from_guest: b.rx_packets.saturating_sub(a.rx_packets),
                bytes_from_guest: b.rx_bytes.saturating_sub(a.rx_bytes),
                frames_to_guest: b.tx_packets.saturating_sub(a.tx_packets),
            })
        })
        .collect();
    let frames: u64 = taps.iter().map(|t| t.frames_from_guest).sum();
    let (per_frame, per_frame_unavailable) = if target.taps.is_empty() {
        (
            None,
            Some("the target holds no TAP device (its network, if any, is not a TAP: user-mode networking or none)".to_string()),
        )
    } else if frames == 0 {
        (
            None,
            Some("the guest sent no frame through its TAP in this time".to_string()),
        )
    } else {
        let per = |v: Option<u64>| v.map(|n| n as f64 / frames as f64);
        let sum = |f: fn(&ThreadFigures) -> Option<u64>| {
            threads
                .iter()
                .map(f)
                .try_fold(0u64, |acc, v| v.map(|v| acc + v))
        };
        let user = sum(|t| t.exits_to_user);
        let pio = sum(|t| t.port_accesses);
        // Port accesses that exited are counted by both tracepoints.
        let in_kernel = match (pio, user) {
            (Some(p), Some(u)) => Some(p.saturating_sub(u)),
            _ => None,
        };
        let mut cpu_us_by_thread = BTreeMap::new();
        for t in &threads {
            let key = if t.vcpu {
                "vcpu".to_string()
            } else {
                t.name.clone()
            };
            *cpu_us_by_thread.entry(key).or_insert(0.0) +=
                t.cpu_pct / 100.0 * seconds * 1e6 / frames as f64;
        }
        (
            Some(PerFrame {
                frames,
                exits_to_user: per(user),
                port_accesses_in_kernel: per(in_kernel),
                irq_events: per(sum(|t| t.irq_events)),
                cpu_us_by_thread,
            }),
            None,
        )
    };
    // The vCPU threads' samples by row, at their CPU per frame.
    let mut by_row: BTreeMap<&str, u64> = BTreeMap::new();
    let mut vcpu_cpu_us = 0.0;
    for t in threads.iter().filter(|t| t.vcpu) {
        for (row, n) in &t.samples {
            *by_row.entry(row.as_str()).or_insert(0) += n;
        }
        vcpu_cpu_us += t.cpu_pct / 100.0 * seconds * 1e6;
    }
    let sampled: u64 = by_row.values().sum();
    let mut vcpu_rows: Vec<RowFigures> = by_row
        .into_iter()
        .map(|(row, n)| {
            let share = n as f64 / sampled.max(1) as f64;
            RowFigures {
                row: row.to_string(),
                label: row_label(row),
                share_pct: share * 100.0,
                us_per_frame: (frames > 0).then(|| share * vcpu_cpu_us / frames as f64),
            }
        })
        .collect();
    vcpu_rows.sort_by(|a, b| b.share_pct.total_cmp(&a.share_pct));
    AttachResult {
        pid,
        name: target.name.clone(),
        vcpu_descriptors: target.vcpus.len(),
        seconds,
        target_exited: exited,
        threads,
        taps,
        per_frame,
        per_frame_unavailable,
        vcpu_rows,
        unavailable,
    }
}

/// `worldswitch attach`.
pub fn command(
    pid: i32,
    duration: Duration,
    sample_hz: u64,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let target = target::find(pid)?;
    eprintln!(
        "attached to {} ({}): {} vCPU descriptor(s), TAP {}; measuring for {:?} (read-only)",
        target.name,
        pid,
        target.vcpus.len(),
        if target.taps.is_empty() {
            "none".to_string()
        } else {
            target.taps.join(", ")
        },
        duration
    );
    let r = measure(&target, duration, sample_hz);
    if json {
        print_json(&r, out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} ({}) over {:.1} s{}",
        r.name,
        r.pid,
        r.seconds,
        if r.target_exited {
            ": the target exited"
        } else {
            ""
        }
    )?;
    let opt = |v: Option<u64>, s: f64| v.map_or("-".into(), |n| format!("{:.0}", n as f64 / s));
    writeln!(
        out,
        "{:<8} {:<20} {:>5} {:>7} {:>10} {:>10} {:>8}",
        "tid", "thread", "vCPU", "CPU%", "exits/s", "pio/s", "irq ev/s"
    )?;
    for t in &r.threads {
        writeln!(
            out,
            "{:<8} {:<20} {:>5} {:>7.1} {:>10} {:>10} {:>8}",
            t.tid,
            t.name,
            if t.vcpu { "yes" } else { "" },
            t.cpu_pct,
            opt(t.exits_to_user, r.seconds),
            opt(t.port_accesses, r.seconds),
            opt(t.irq_events, r.seconds)
        )?;
    }
    for t in &r.taps {
        writeln!(
            out,
            "TAP {}: {:.0} frames/s from the guest ({:.2} Mb/s), {:.0} frames/s to it",
            t.name,
            t.frames_from_guest as f64 / r.seconds,
            t.bytes_from_guest as f64 * 8.0 / r.seconds / 1e6,
            t.frames_to_guest as f64 / r.seconds
        )?;
    }
    match (&r.per_frame, &r.per_frame_unavailable) {
        (Some(p), _) => {
            let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
            writeln!(
                out,
                "per frame the guest sent ({}): exits to user space {}, port accesses completed in KVM {}, interrupt events {} (a level interrupt counts raised and lowered)",
                p.frames,
                f(p.exits_to_user),
                f(p.port_accesses_in_kernel),
                f(p.irq_events)
            )?;
            let mut cpu: Vec<(&String, &f64)> = p.cpu_us_by_thread.iter().collect();
            cpu.sort_by(|a, b| b.1.total_cmp(a.1));
            let cells: Vec<String> = cpu
                .iter()
                .filter(|(_, us)| **us >= 0.05)
                .map(|(n, us)| format!("{n} {us:.1}"))
                .collect();
            writeln!(
                out,
                "microseconds of CPU per frame by thread: {}",
                cells.join(" · ")
            )?;
        }
        (None, Some(why)) => writeln!(out, "no per-frame figures: {why}")?,
        (None, None) => {}
    }
    if !r.vcpu_rows.is_empty() {
        writeln!(
            out,
            "where the vCPU threads' time went (their stack samples; kernel stacks only):"
        )?;
        for row in &r.vcpu_rows {
            writeln!(
                out,
                "{:<72} {:>6.1}% {:>9}",
                row.label,
                row.share_pct,
                row.us_per_frame
                    .map_or(String::new(), |us| format!("{us:.1} us/frame"))
            )?;
        }
    }
    for u in &r.unavailable {
        writeln!(out, "not measured: {u}")?;
    }
    Ok(())
}
