//! One attach measurement: perf counters and stack samples on the
//! target's threads, its CPU and TAP counters from `/proc`, the emulation
//! windows on its busiest vCPU once one is known, and what they add up to
//! at any moment ([`Measurement::result`]), for the workbench's live
//! screens or a headless run's one report.

use super::ports::PortNames;
use super::result::{
    AttachResult, ExitFigures, PortFigures, TapFigures, TargetInfo, ThreadFigures,
};
use super::target::{self, DevCounters, Target};
use crate::profiler::emulation::EmulationWindows;
use crate::profiler::foreign::{self, ForeignSampler};
use crate::profiler::tracepoints::{ThreadCounters, PIO, USERSPACE_EXIT};
use profiles::attribution::{self, Inputs};
use profiles::inputs::{EmulationSummary, MarkedThread, PvDrain, SampleSummary};
use profiles::table::{Direction, PerFrame, Table};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Interrupts raised: a line set high (`kvm_set_irq` with level 1; a
/// level-triggered line is lowered again after) and an MSI.
const IRQ_RAISED: (&str, &str) = ("kvm/kvm_set_irq", "level == 1");
const MSI: &str = "kvm/kvm_msi_set_irq";

/// How often the target's thread list is read again, for threads it
/// started since (QEMU's worker threads come and go).
const RESCAN: Duration = Duration::from_secs(1);

/// One of the target's threads: its perf counters and its CPU and run
/// delay (schedstat) when first seen and last read.
struct Counted {
    tid: i32,
    name: String,
    exits: Option<ThreadCounters>,
    irqs: Vec<ThreadCounters>,
    /// Exits to user space for port I/O and for MMIO.
    reasons: [Option<ThreadCounters>; 2],
    sched0: Option<(u64, u64)>,
    sched: Option<(u64, u64)>,
}

/// How to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Stack samples per second of each thread (0: none).
    pub sample_hz: u64,
    /// Percent of the time the emulation windows trace (None: none).
    pub duty: Option<u8>,
    /// What the ports are called.
    pub ports: PortNames,
}

pub use crate::profiler::foreign::{DEFAULT_DUTY_PCT, DEFAULT_HZ};

impl Default for Settings {
    /// The command line's defaults: [`DEFAULT_HZ`], windows
    /// [`DEFAULT_DUTY_PCT`] of the time, the fixed PC ports.
    fn default() -> Self {
        Self {
            sample_hz: DEFAULT_HZ,
            duty: Some(DEFAULT_DUTY_PCT),
            ports: PortNames::legacy(),
        }
    }
}

/// A measurement under way.
pub struct Measurement {
    target: Target,
    counted: Vec<Counted>,
    sampler: Option<ForeignSampler>,
    emulation: Option<EmulationWindows>,
    final_emulation: Option<EmulationSummary>,
    unavailable: Vec<String>,
    started: Instant,
    scanned: Instant,
    seconds: f64,
    /// The TAPs' counters at the start and last read (a TAP gone keeps
    /// its last).
    taps0: Vec<Option<DevCounters>>,
    taps: Vec<Option<DevCounters>>,
    ports: PortNames,
    duty: Option<u8>,
    exited: bool,
    tsc_mhz: f64,
}

impl Measurement {
    /// Starts measuring `target` as `settings` say.
    pub fn start(target: Target, settings: Settings) -> Self {
        let Settings {
            sample_hz,
            duty,
            ports,
        } = settings;
        let pid = target.pid;
        let mut unavailable = Vec::new();
        let counted: Vec<Counted> = target::threads(pid)
            .into_iter()
            .map(|(tid, name)| count(pid, tid, name, true, &mut unavailable))
            .collect();
        let tids: Vec<i32> = counted.iter().map(|c| c.tid).collect();
        let sampler = match sample_hz {
            0 => {
                note(
                    &mut unavailable,
                    "stack samples: off (--sample-hz 0)".into(),
                );
                None
            }
            hz => ForeignSampler::start(pid, &tids, hz)
                .map_err(|e| note(&mut unavailable, format!("stack samples: {e}")))
                .ok(),
        };
        let tsc_mhz = crate::profiler::host_tsc_mhz();
        let mut m = Self {
            target,
            counted,
            sampler,
            emulation: None,
            final_emulation: None,
            unavailable,
            started: Instant::now(),
            scanned: Instant::now(),
            seconds: 0.0,
            taps0: Vec::new(),
            taps: Vec::new(),
            ports,
            duty,
            exited: false,
            tsc_mhz,
        };
        m.taps0 = m.read_taps();
        m.taps = m.taps0.clone();
        m
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    fn read_taps(&self) -> Vec<Option<DevCounters>> {
        let pid = self.target.pid;
        self.target
            .taps
            .iter()
            .map(|t| target::tap_counters(pid, t))
            .collect()
    }

    /// Starts counting and sampling threads the target started since the
    /// last look.
    fn rescan(&mut self) {
        let pid = self.target.pid;
        for (tid, name) in target::threads(pid) {
            if self.counted.iter().any(|c| c.tid == tid) {
                continue;
            }
            self.counted
                .push(count(pid, tid, name, false, &mut self.unavailable));
            if let Some(s) = &mut self.sampler {
                s.add(tid);
            }
        }
        self.scanned = Instant::now();
    }

    /// Takes a reading and drains the sample rings; starts the emulation
    /// windows once a vCPU is known. Returns whether the target exited.
    pub fn poll(&mut self) -> bool {
        if self.exited {
            return true;
        }
        if !std::path::Path::new(&format!("/proc/{}/stat", self.target.pid)).exists() {
            self.exited = true;
            return true;
        }
        self.seconds = self.started.elapsed().as_secs_f64();
        let pid = self.target.pid;
        for c in &mut self.counted {
            c.sched = target::schedstat(pid, c.tid).or(c.sched);
        }
        let now = self.read_taps();
        for (slot, v) in self.taps.iter_mut().zip(now) {
            *slot = v.or(*slot);
        }
        if self.scanned.elapsed() >= RESCAN {
            self.rescan();
        }
        if let Some(s) = &mut self.sampler {
            s.drain();
        }
        if self.emulation.is_none() && self.final_emulation.is_none() {
            self.start_windows();
        }
        false
    }

    /// Starts the emulation windows on the vCPU with the most exits.
    fn start_windows(&mut self) {
        let Some(duty) = self.duty else {
            self.unavailable
                .push("emulation windows: off (--emulation-windows off)".into());
            self.final_emulation = Some(EmulationSummary::default());
            return;
        };
        let busiest = self
            .counted
            .iter_mut()
            .filter_map(|c| {
                let n: u64 = counts(c.exits.as_mut()?)?.iter().sum();
                (n > 0).then_some((n, c.tid))
            })
            .max();
        let Some((_, tid)) = busiest else { return };
        let (pid, taps) = (self.target.pid, self.target.taps.clone());
        let frames = Box::new(move || {
            taps.iter()
                .filter_map(|t| target::tap_counters(pid, t))
                .map(|c| c.rx_packets)
                .sum()
        });
        match EmulationWindows::start(tid, self.ports.map(), duty, frames) {
            Ok(w) => self.emulation = Some(w),
            Err(e) => {
                self.unavailable.push(format!("emulation windows: {e}"));
                self.final_emulation = Some(EmulationSummary::default());
            }
        }
    }

    /// Stops measuring and says what was measured.
    pub fn finish(mut self) -> AttachResult {
        self.poll();
        if let Some(w) = self.emulation.take() {
            self.final_emulation = Some(w.finish());
        }
        self.result()
    }

    /// What was measured so far.
    pub fn result(&mut self) -> AttachResult {
        let seconds = self.seconds.max(1e-9);
        let mut threads: Vec<ThreadFigures> = Vec::new();
        for t in self.counted.iter_mut() {
            let exits = t.exits.as_mut().and_then(counts);
            let irqs = (!t.irqs.is_empty()).then(|| {
                t.irqs
                    .iter_mut()
                    .filter_map(counts)
                    .map(|v| v.iter().sum::<u64>())
                    .sum()
            });
            let (cpu_ns, delay_ns) = match (t.sched0, t.sched) {
                (Some(a), Some(b)) => (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1)),
                _ => (0, 0),
            };
            let (user, pio) = match exits.as_deref() {
                Some([u, p]) => (Some(*u), Some(*p)),
                _ => (None, None),
            };
            let [io_exits, mmio_exits] = t
                .reasons
                .each_mut()
                .map(|c| c.as_mut().and_then(counts).map(|v| v.iter().sum::<u64>()));
            threads.push(ThreadFigures {
                tid: t.tid,
                name: t.name.clone(),
                vcpu: user.unwrap_or(0) + pio.unwrap_or(0) > 0,
                cpu_pct: cpu_ns as f64 / 1e9 / seconds * 100.0,
                cpu_seconds: cpu_ns as f64 / 1e9,
                run_delay_seconds: delay_ns as f64 / 1e9,
                exits_to_user: user,
                io_exits,
                mmio_exits,
                port_accesses: pio,
                interrupts: irqs,
                samples: 0,
                last_cpu: target::last_cpu(self.target.pid, t.tid),
            });
        }
        let samples = self.sampler.as_ref().map(|s| {
            let vcpus: BTreeSet<i32> = threads.iter().filter(|t| t.vcpu).map(|t| t.tid).collect();
            let names = threads.iter().map(|t| (t.tid, t.name.clone())).collect();
            let io = Some(self.target.pid).filter(|p| !vcpus.contains(p));
            (
                foreign::summary(s.threads(), &vcpus, io, &names, s.lost()),
                s,
            )
        });
        if let Some((_, s)) = &samples {
            for t in &mut threads {
                t.samples = s.threads().get(&t.tid).map_or(0, |x| x.total);
            }
        }
        let summary = samples.map(|(summary, _)| summary);
        threads.sort_by(|a, b| b.vcpu.cmp(&a.vcpu).then(b.cpu_pct.total_cmp(&a.cpu_pct)));
        let taps: Vec<TapFigures> = self
            .target
            .taps
            .iter()
            .zip(self.taps0.iter().zip(&self.taps))
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
        let emulation = self
            .final_emulation
            .clone()
            .or_else(|| self.emulation.as_ref().and_then(EmulationWindows::latest));
        let exits = exit_figures(&threads, emulation.as_ref(), &self.ports);
        let frames: u64 = taps.iter().map(|t| t.frames_from_guest).sum();
        let bytes: u64 = taps.iter().map(|t| t.bytes_from_guest).sum();
        let per_frame_unavailable = if self.target.taps.is_empty() {
            Some("the target holds no TAP device (its network, if any, is not a TAP: user-mode networking or none)".to_string())
        } else if frames == 0 {
            Some("the guest sent no frame through its TAP in this time".to_string())
        } else {
            None
        };
        // Interrupts from any thread: the vCPU's after a transmit, the
        // main loop's after a receive.
        let interrupts = threads
            .iter()
            .map(|t| t.interrupts)
            .try_fold(0u64, |acc, v| v.map(|v| acc + v));
        let per = |v: Option<u64>| v.filter(|_| frames > 0).map(|n| n as f64 / frames as f64);
        let per_frame = PerFrame {
            frames,
            direction: Direction::Transmit,
            exits_to_user: per(exits.kvm_run_returns),
            port_accesses_in_kernel: per(exits.port_accesses_in_kernel),
            interrupts: per(interrupts),
            emulated_instructions: emulation.as_ref().and_then(EmulationSummary::per_frame),
            tap_writes: None,
        };
        let mut profile = self.table(&threads, summary.as_ref(), emulation.as_ref(), &exits);
        profile.per_frame(per_frame.clone());
        let mut unavailable = self.unavailable.clone();
        if let Some(s) = &summary {
            if s.lost > 0 {
                unavailable.push(format!("{} stack samples lost by the rings", s.lost));
            }
        }
        let vcpus = threads.iter().filter(|t| t.vcpu).count();
        if vcpus > 1 && self.emulation.is_some() {
            unavailable.push(format!(
                "emulated instructions: traced on the busiest of {vcpus} vCPU threads only"
            ));
        }
        let (vcpu_threads, threads): (Vec<_>, Vec<_>) = threads.into_iter().partition(|t| t.vcpu);
        AttachResult {
            target: TargetInfo {
                pid: self.target.pid,
                command: self.target.name.clone(),
                vmm: target::vmm_of(&self.target.exe),
                exe: self.target.exe.clone(),
                vcpu_descriptors: self.target.vcpus.len(),
            },
            seconds: self.seconds,
            target_exited: self.exited,
            vcpu_threads,
            threads,
            taps,
            exits,
            throughput_mbps: (!self.target.taps.is_empty())
                .then(|| bytes as f64 * 8.0 / seconds / 1e6),
            frames_per_sec: (!self.target.taps.is_empty()).then(|| frames as f64 / seconds),
            exits_per_frame: per_frame.exits_to_user,
            per_frame: per_frame_unavailable.is_none().then_some(per_frame),
            per_frame_unavailable,
            profile,
            folded: summary
                .map(|s| crate::profiler::sampler::owned(&s.folded))
                .unwrap_or_default(),
            unavailable,
        }
    }

    /// The overhead table: the vCPU threads as one vCPU, the main loop
    /// as the I/O thread, split by their samples and the windows' mix.
    fn table(
        &self,
        threads: &[ThreadFigures],
        samples: Option<&SampleSummary>,
        emulation: Option<&EmulationSummary>,
        exits: &ExitFigures,
    ) -> Table {
        let marked = |ts: &mut dyn Iterator<Item = &ThreadFigures>| {
            let mut m = MarkedThread {
                run_delay_seconds: Some(0.0),
                ..Default::default()
            };
            for t in ts {
                m.cpu_seconds += t.cpu_seconds;
                *m.run_delay_seconds.as_mut().unwrap() += t.run_delay_seconds;
            }
            m
        };
        let vcpu = marked(&mut threads.iter().filter(|t| t.vcpu));
        let main = threads
            .iter()
            .find(|t| t.tid == self.target.pid && !t.vcpu)
            .map(|t| marked(&mut std::iter::once(t)));
        let in_kernel_pio = match (exits.port_accesses, exits.port_accesses_in_kernel) {
            (Some(all), Some(k)) if all > 0 => k as f64 / all as f64,
            _ => 0.0,
        };
        attribution::table(&Inputs {
            tsc_mhz: self.tsc_mhz,
            wall_seconds: self.seconds,
            vcpu: &vcpu,
            io: main.as_ref(),
            pv: PvDrain::default(),
            samples: samples.ok_or("no stack samples (see unavailable)"),
            emulation,
            in_kernel_pio,
        })
    }
}

/// A counter set's counts, or None if unreadable.
fn counts(c: &mut ThreadCounters) -> Option<Vec<u64>> {
    c.read()
        .ok()
        .map(|v| v.into_iter().map(|(_, n)| n).collect())
}

/// The vCPU threads' exits, and the ports their windows saw, scaled to
/// every port access.
fn exit_figures(
    threads: &[ThreadFigures],
    emulation: Option<&EmulationSummary>,
    names: &PortNames,
) -> ExitFigures {
    let sum = |f: fn(&ThreadFigures) -> Option<u64>| {
        threads
            .iter()
            .filter(|t| t.vcpu)
            .map(f)
            .try_fold(0u64, |acc, v| v.map(|v| acc + v))
    };
    let user = sum(|t| t.exits_to_user);
    let io = sum(|t| t.io_exits);
    let pio = sum(|t| t.port_accesses);
    let traced: u64 = emulation.map_or(0, |e| e.pio_by_port.values().map(|(o, i)| o + i).sum());
    let scale = match pio {
        Some(all) if traced > 0 => all as f64 / traced as f64,
        _ => 0.0,
    };
    let ports = emulation
        .map(|e| {
            e.pio_by_port
                .iter()
                .map(|(&port, &(outs, ins))| PortFigures {
                    port,
                    name: names.name(port).map(str::to_string),
                    outs: (outs as f64 * scale).round() as u64,
                    ins: (ins as f64 * scale).round() as u64,
                    traced: outs + ins,
                })
                .collect()
        })
        .unwrap_or_default();
    ExitFigures {
        kvm_run_returns: user,
        io_exits: io,
        mmio_exits: sum(|t| t.mmio_exits),
        port_accesses: pio,
        // Port accesses that exited are counted by both tracepoints.
        port_accesses_in_kernel: pio.zip(io).map(|(p, u)| p.saturating_sub(u)),
        ports,
        ports_traced: traced,
    }
}

/// Adds `why` to what could not be measured, once.
fn note(unavailable: &mut Vec<String>, why: String) {
    if !unavailable.contains(&why) {
        unavailable.push(why);
    }
}

/// Starts counting thread `tid`'s exits and interrupts; its CPU counts
/// from now if it was there at the start (`present`), else from its birth.
fn count(
    pid: i32,
    tid: i32,
    name: String,
    present: bool,
    unavailable: &mut Vec<String>,
) -> Counted {
    let mut note = |why: String| note(unavailable, why);
    let exits = ThreadCounters::open(tid, &[USERSPACE_EXIT, PIO])
        .map_err(|e| note(format!("exit counts: {e}")))
        .ok();
    let raised = ThreadCounters::open_filtered(tid, &[IRQ_RAISED.0], Some(IRQ_RAISED.1));
    let msi = ThreadCounters::open(tid, &[MSI]);
    let irqs = [raised, msi]
        .into_iter()
        .filter_map(|c| c.map_err(|e| note(format!("interrupt counts: {e}"))).ok())
        .collect();
    // KVM_EXIT_IO is 2, KVM_EXIT_MMIO 6 (linux/kvm.h).
    let reasons = ["reason == 2", "reason == 6"].map(|f| {
        ThreadCounters::open_filtered(tid, &[USERSPACE_EXIT], Some(f))
            .map_err(|e| note(format!("exit reasons: {e}")))
            .ok()
    });
    let now = target::schedstat(pid, tid);
    Counted {
        tid,
        name,
        exits,
        irqs,
        reasons,
        sched0: if present { now } else { Some((0, 0)) },
        sched: now,
    }
}
