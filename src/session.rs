//! A running guest with its network, collectors and live figures: booted
//! by [`Session::start`], driven by [`Session::pump`], pictured by
//! [`Session::snapshot`] and ended by [`Session::finish`]. The headless run
//! and the TUI's engine thread are both loops around it.

use crate::cli::RunArgs;
use crate::guest_image::GuestImage;
use crate::netrun::NetRun;
use crate::optimizations::{Opt, Opts};
use crate::profiler::emulation::EmulationWindows;
use crate::profiler::sampler::{self, SampleSummary, Sampler};
use crate::run::{self, PhaseTime, RunResult};
use crate::tracepoints::{PIO, USERSPACE_EXIT};
use crate::threads::ThreadMeter;
use crate::tracepoints::ThreadCounters;
use crate::vmm::events::{Finish, VcpuProfile, VcpuState, VmEvent};
use crate::vmm::exits::ExitStats;
use crate::vmm::vcpu::Command;
use crate::vmm::vm::{self, VmConfig, VmHandle};
use crate::vmnet::tap::IoProfile;
use profiles::path::TransmitPath;
use profiles::snapshot::{Info, LogLine, Mark, NetFigures, Point, RunState, Snapshot, Toggle};
use profiles::attribution::{self, Inputs};
use profiles::table::Table;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

/// Console text kept in a result; older text is dropped first.
const CONSOLE_KEEP: usize = 64 * 1024;
/// Console lines kept for the live view.
const CONSOLE_LINES: usize = 500;
/// Points of the time series kept (two a second: about two minutes).
const SERIES_KEEP: usize = 240;
/// Log lines kept.
const LOG_KEEP: usize = 200;
/// Pictures of the collectors kept for rolling windows (one a second).
const HISTORY_KEEP: usize = 61;
/// Chart marks kept.
const MARKS_KEEP: usize = 500;
/// Optimization changes kept for the result (the first ones).
const CHANGES_KEEP: usize = 1000;

/// What the collectors had accumulated at some moment (the last reset, or
/// a second of the rolling history); live figures are differences from it.
#[derive(Default, Clone)]
struct Base {
    at: Option<Instant>,
    stats: ExitStats,
    vcpu: VcpuProfile,
    io: Option<IoProfile>,
    samples: Option<SampleSummary>,
    delivered: (u64, u64),
}

/// A running guest and everything measured about it.
pub struct Session {
    args: RunArgs,
    image: GuestImage,
    cmdline: String,
    vm: VmHandle,
    net: NetRun,
    sampler: Result<Sampler, String>,
    windows: Result<EmulationWindows, String>,
    counters: Option<ThreadCounters>,
    counters_unavailable: Option<String>,
    tsc_mhz: f64,
    started: Instant,
    /// When this guest booted: the start, or the last restart.
    booted: Instant,
    state: RunState,
    stop_sent: bool,
    text: String,
    lines: VecDeque<String>,
    guest_counters: BTreeMap<String, u64>,
    phases: Vec<PhaseTime>,
    open_phases: BTreeMap<(String, u64), Instant>,
    bad_messages: Vec<String>,
    latest: (ExitStats, VcpuProfile),
    finished: Option<Finish>,
    series: VecDeque<Point>,
    last_point: Option<(Instant, ExitStats, (u64, u64))>,
    base: Base,
    baseline: Option<Table>,
    marks: Vec<Mark>,
    log: VecDeque<LogLine>,
    history: VecDeque<Base>,
    window: Option<Duration>,
    threads: ThreadMeter,
    whole_run: ThreadMeter,
    thread_cpu: Option<Vec<profiles::snapshot::ThreadCpu>>,
    opts: Opts,
    opts_known: bool,
    opt_changes: Vec<Mark>,
    warned: BTreeSet<String>,
    warnings: Vec<String>,
}

impl Session {
    /// Boots the guest `args` names with its network and collectors, and
    /// starts it.
    pub fn start(args: &RunArgs) -> anyhow::Result<Self> {
        let image = GuestImage::resolve(&args.guest)?;
        let cmdline = args.cmdline();
        // Fail on KVM before building the network, so the error is the one
        // that matters.
        drop(vm::open_kvm()?);
        let (mut net, nic) = NetRun::new(args.net, args.link_rate)?;
        let mut vm = vm::start(VmConfig {
            mem_mib: args.mem,
            image: image.elf.clone(),
            cmdline: cmdline.clone(),
            halt_poll_ns: args.halt_poll_ns,
            floor: None,
            start_paused: true,
            opts: args.optimizations(),
            stitch: args.stitch,
            nic: Some(nic),
        })?;
        if let Some(nic) = vm.take_nic() {
            net.start(vm.kicker(), Box::new(nic))?;
        }
        let sampler = match args.sample_hz {
            0 => Err("sampling is off (--sample-hz 0)".to_string()),
            hz => Sampler::start(
                vm.vcpu_tid(),
                hz,
                vm.stitch_log()
                    .map(|log| (log, std::sync::Arc::new(image.clone()))),
            ),
        };
        let windows = if args.emulation_windows {
            EmulationWindows::start(vm.vcpu_tid())
        } else {
            Err("emulation windows are off".to_string())
        };
        let (counters, counters_unavailable) =
            match ThreadCounters::open(vm.vcpu_tid(), &[USERSPACE_EXIT, PIO]) {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e.to_string())),
            };
        let tsc_mhz = run::host_tsc_mhz();
        let mut s = Session {
            args: args.clone(),
            image,
            cmdline,
            vm,
            net,
            sampler,
            windows,
            counters,
            counters_unavailable,
            tsc_mhz,
            started: Instant::now(),
            booted: Instant::now(),
            state: RunState::Starting,
            stop_sent: false,
            text: String::new(),
            lines: VecDeque::new(),
            guest_counters: BTreeMap::new(),
            phases: Vec::new(),
            open_phases: BTreeMap::new(),
            bad_messages: Vec::new(),
            latest: Default::default(),
            finished: None,
            series: VecDeque::new(),
            last_point: None,
            base: Base::default(),
            baseline: None,
            marks: Vec::new(),
            log: VecDeque::new(),
            history: VecDeque::new(),
            window: None,
            threads: ThreadMeter::default(),
            whole_run: ThreadMeter::default(),
            thread_cpu: None,
            opts: args.optimizations(),
            opts_known: false,
            opt_changes: Vec::new(),
            warned: BTreeSet::new(),
            warnings: Vec::new(),
        };
        if let Some(notice) = s.net.notice.clone() {
            s.note(format!("notice: {notice}"));
        }
        s.whole_run.sample();
        s.vm.command(Command::Resume);
        s.started = Instant::now();
        s.booted = s.started;
        s.last_point = Some((s.started, ExitStats::default(), (0, 0)));
        Ok(s)
    }

    /// Switches the interrupt controller, which only a new VM can do: ends
    /// this guest (its figures go to the log in one line), boots the same
    /// guest with `opts` on a new VM and network, and keeps the timeline,
    /// log, marks and baseline. If the new VM cannot start, the run ends
    /// and the log says why.
    fn restart(&mut self, opts: Opts) {
        let irqchip = if opts.get(Opt::KernelIrqchip) {
            "KVM's irqchip"
        } else {
            "the user-space 8259 and 8254"
        };
        self.mark(&format!("restarting the guest on a new VM with {irqchip}"));
        // The old guest's threads end before the new collectors look for
        // threads, so none of them lands in the new profile.
        let mut sink = std::io::sink();
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(
            self.pump(Duration::from_millis(100), &mut sink),
            Ok(true) | Err(_)
        ) && Instant::now() < deadline
        {}
        self.net.quiesce();
        let mut args = self.args.clone();
        args.set_optimizations(opts);
        let next = match Session::start(&args) {
            Ok(s) => s,
            Err(e) => {
                self.warn(format!("the guest could not restart with {irqchip}: {e:#}"));
                return;
            }
        };
        let old = std::mem::replace(self, next);
        self.started = old.started;
        let restarted = Instant::now();
        self.base.at = Some(restarted);
        self.last_point = Some((restarted, ExitStats::default(), (0, 0)));
        let fresh_log = std::mem::replace(&mut self.log, old.log.clone());
        self.series = old.series.clone();
        self.marks = old.marks.clone();
        self.opt_changes = old.opt_changes.clone();
        self.baseline = old.baseline.clone();
        self.window = old.window;
        self.warned = old.warned.clone();
        self.lines = old.lines.clone();
        self.lines
            .push_back(format!("--- the guest restarts with {irqchip} ---\n"));
        // The new guest's first report is a change, marked on the chart.
        self.opts = old.opts;
        self.opts_known = true;
        match old.finish(&mut sink) {
            Ok(r) => self.note(format!(
                "the previous guest ran {:.1} s: {:.2} Mb/s, {} frames delivered, {} exits to user space",
                r.seconds, r.net.throughput_mbps, r.net.frames_delivered, r.exits.kvm_run_returns
            )),
            Err(e) => self.note(format!("the previous guest's figures are lost: {e:#}")),
        }
        for line in fresh_log {
            self.note(line.text);
        }
    }

    /// Notices worth telling a user (the network's, at start).
    pub fn notices(&self) -> impl Iterator<Item = &str> {
        self.log.iter().map(|l| l.text.as_str())
    }

    /// Follows the guest's events for up to `wait`, writing console output
    /// to `console` as it arrives. Returns true once the run has finished.
    pub fn pump(&mut self, wait: Duration, console: &mut dyn Write) -> anyhow::Result<bool> {
        if self.finished.is_some() {
            return Ok(true);
        }
        let mut event = match self.vm.events().recv_timeout(wait) {
            Ok(e) => e,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(false),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the vCPU thread ended without reporting why")
            }
        };
        loop {
            if self.handle(event, console) {
                return Ok(true);
            }
            match self.vm.events().try_recv() {
                Ok(e) => event = e,
                Err(_) => return Ok(false),
            }
        }
    }

    fn handle(&mut self, event: VmEvent, console: &mut dyn Write) -> bool {
        match event {
            VmEvent::Console(line) => {
                // The console is best effort: a closed pipe must not stop the run.
                let _ = console.write_all(line.as_bytes());
                self.text.push_str(&line);
                // Trim in batches, not per line.
                if self.text.len() > 2 * CONSOLE_KEEP {
                    keep_tail(&mut self.text, CONSOLE_KEEP);
                }
                match self.lines.back_mut() {
                    Some(last) if !last.ends_with('\n') => last.push_str(&line),
                    _ => self.lines.push_back(line),
                }
                while self.lines.len() > CONSOLE_LINES {
                    self.lines.pop_front();
                }
            }
            VmEvent::Counter { name, value } => {
                self.guest_counters.insert(name, value);
            }
            VmEvent::Phase {
                begin: true,
                name,
                index,
                at,
            } => {
                self.open_phases.insert((name, index), at);
            }
            VmEvent::Phase {
                begin: false,
                name,
                index,
                at,
            } => {
                if let Some(start) = self.open_phases.remove(&(name.clone(), index)) {
                    self.phases.push(PhaseTime {
                        name,
                        index,
                        seconds: at.duration_since(start).as_secs_f64(),
                    });
                }
            }
            VmEvent::BadMessage(why) => {
                self.note(format!("ignored mailbox message: {why}"));
                self.bad_messages.push(why);
            }
            VmEvent::State(s) => {
                self.state = match s {
                    VcpuState::Running => RunState::Running,
                    VcpuState::Paused => RunState::Paused,
                    VcpuState::Finished => RunState::Finished,
                };
            }
            VmEvent::Optimized { opts, error } => {
                if let Some(e) = error {
                    self.note(format!("warning: {e}"));
                }
                if !self.opts_known || opts != self.opts {
                    let label = format!("optimizations: {}", opts.describe());
                    if self.opt_changes.len() < CHANGES_KEEP {
                        self.opt_changes.push(Mark {
                            t: self.elapsed(),
                            label: label.clone(),
                        });
                    }
                    if self.opts_known {
                        self.mark(&label);
                    } else {
                        self.note(label);
                    }
                }
                self.opts = opts;
                self.opts_known = true;
            }
            VmEvent::Progress { stats, profile } => {
                self.warn_of_refusals();
                self.point(&stats);
                self.latest = (stats, profile);
                // A picture of the collectors a second, for rolling windows.
                if self
                    .history
                    .back()
                    .and_then(|b| b.at)
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                {
                    let b = self.capture();
                    self.history.push_back(b);
                    while self.history.len() > HISTORY_KEEP {
                        self.history.pop_front();
                    }
                }
            }
            VmEvent::Finished {
                finish,
                stats,
                profile,
            } => {
                self.point(&stats);
                self.latest = (stats, profile);
                self.state = RunState::Finished;
                let o = run::outcome(&finish, &self.image);
                self.note(o.message);
                self.finished = Some(finish);
                return true;
            }
        }
        false
    }

    /// Adds a point to the time series: the interval since the last one.
    fn point(&mut self, stats: &ExitStats) {
        let now = Instant::now();
        let delivered = self.net.delivered();
        let Some((t0, s0, d0)) = self.last_point.replace((now, stats.clone(), delivered)) else {
            return;
        };
        let dt = now.duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        self.series.push_back(Point {
            t: now.duration_since(self.started).as_secs_f64(),
            mbps: rate(delivered.1, d0.1) * 8.0 / 1e6,
            frames_per_sec: rate(delivered.0, d0.0),
            pio_exits_per_sec: rate(stats.io_in + stats.io_out, s0.io_in + s0.io_out),
            mmio_exits_per_sec: rate(stats.mmio, s0.mmio),
            kick_exits_per_sec: rate(stats.interrupted, s0.interrupted),
            other_exits_per_sec: rate(stats.other, s0.other),
            in_kernel_writes_per_sec: rate(stats.coalesced_writes, s0.coalesced_writes),
        });
        while self.series.len() > SERIES_KEEP {
            self.series.pop_front();
        }
    }

    /// The vCPU thread's ID, for tracing it from outside.
    pub fn vcpu_tid(&self) -> libc::pid_t {
        self.vm.vcpu_tid()
    }

    /// Seconds since the guest started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// What the peer has received: (datagrams, payload bytes).
    pub fn delivered(&self) -> (u64, u64) {
        self.net.delivered()
    }

    /// Adds a line to the event log.
    pub fn note(&mut self, text: String) {
        self.log.push_back(LogLine {
            t: self.elapsed(),
            text,
        });
        while self.log.len() > LOG_KEEP {
            self.log.pop_front();
        }
    }

    /// Warnings since the last call (the collectors' refusals), for a
    /// headless run to print; the log has them too.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Says once, in the log and to [`Session::take_warnings`], when the
    /// kernel refused a collector mid-run.
    fn warn_of_refusals(&mut self) {
        if let Some(e) = self
            .windows
            .as_ref()
            .ok()
            .and_then(EmulationWindows::latest)
        {
            if let Some(why) = e.refused {
                self.warn_once(
                    "windows".into(),
                    format!("{why}; the emulation rows are not split further"),
                );
            }
        }
        let Some(s) = self.sampler.as_ref().ok().and_then(Sampler::latest) else {
            return;
        };
        // Threads refused at one look, in one sentence per reason.
        let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (thread, why) in &s.unwatched {
            if !self.warned.contains(&format!("thread {thread}")) {
                by_reason.entry(why).or_default().push(thread);
            }
        }
        for (why, threads) in by_reason {
            for t in &threads {
                self.warned.insert(format!("thread {t}"));
            }
            let w = format!(
                "the kernel refused to sample {} {} ({why}); {} samples are missing",
                if threads.len() > 1 {
                    "threads"
                } else {
                    "thread"
                },
                threads.join(", "),
                if threads.len() > 1 { "their" } else { "its" },
            );
            self.warn(w);
        }
    }

    fn warn_once(&mut self, key: String, text: String) {
        if self.warned.insert(key) {
            self.warn(text);
        }
    }

    fn warn(&mut self, text: String) {
        self.note(format!("warning: {text}"));
        self.warnings.push(text);
    }

    /// Pauses or resumes the guest.
    pub fn set_paused(&mut self, paused: bool) {
        if self.finished.is_some() {
            return;
        }
        self.vm.command(if paused {
            Command::Pause
        } else {
            Command::Resume
        });
        self.note(
            if paused {
                "guest paused"
            } else {
                "guest resumed"
            }
            .into(),
        );
    }

    /// The optimizations in effect.
    pub fn optimizations(&self) -> Opts {
        self.opts
    }

    /// Asks the vCPU to switch to `opts` (at its next KVM_RUN boundary);
    /// a change of interrupt controller restarts the guest on a new VM.
    pub fn set_optimizations(&mut self, opts: Opts) {
        if self.finished.is_some() {
            return;
        }
        if opts.get(Opt::KernelIrqchip) != self.opts.get(Opt::KernelIrqchip) {
            self.restart(opts);
        } else {
            self.vm.command(Command::Optimize(opts));
        }
    }

    /// Flips the toggle `name`, with what it needs or what needs it.
    pub fn toggle(&mut self, name: &str) {
        let Some(o) = Opt::from_name(name) else {
            self.note(format!("no optimization '{name}'"));
            return;
        };
        let mut next = self.opts;
        next.set(o, !self.opts.get(o));
        self.set_optimizations(next);
    }

    /// Asks the guest to stop (once).
    pub fn stop(&mut self) {
        if !self.stop_sent && self.finished.is_none() {
            // While every thread still runs (stopping ends the flusher).
            self.thread_cpu = Some(self.whole_run.sample());
            self.vm.command(Command::Stop);
            self.stop_sent = true;
        }
    }

    /// Starts the figures afresh from now (the time series keeps going,
    /// with a mark).
    pub fn reset(&mut self) {
        self.base = self.capture();
        self.mark("counters reset");
    }

    /// Figures over the last `window` (rolling, at most a minute), or, with
    /// None, since the start or the last reset.
    pub fn set_window(&mut self, window: Option<Duration>) {
        self.window = window.map(|w| w.min(Duration::from_secs(HISTORY_KEEP as u64 - 1)));
    }

    /// What the collectors have accumulated now.
    fn capture(&self) -> Base {
        Base {
            at: Some(Instant::now()),
            stats: self.latest.0.clone(),
            vcpu: self.latest.1.clone(),
            io: self.net.io_profile(),
            samples: self.sampler.as_ref().ok().and_then(Sampler::latest),
            delivered: self.net.delivered(),
        }
    }

    /// The base live figures are taken from: the newest picture at least a
    /// window old, but never one from before the last reset.
    fn view_base(&self) -> Base {
        let Some(w) = self.window else {
            return self.base.clone();
        };
        let reset_at = self.base.at.unwrap_or(self.started);
        self.history
            .iter()
            .rev()
            .find(|b| b.at.is_some_and(|t| t.elapsed() >= w))
            .filter(|b| b.at.is_some_and(|t| t >= reset_at))
            .cloned()
            .unwrap_or_else(|| self.base.clone())
    }

    /// Keeps the current table as the baseline of the delta column.
    pub fn mark_baseline(&mut self) {
        let base = self.view_base();
        self.baseline = Some(self.table(&base));
        self.mark("baseline marked");
    }

    fn mark(&mut self, label: &str) {
        let t = self.elapsed();
        self.marks.push(Mark {
            t,
            label: label.into(),
        });
        // The chart shows a minute or two; keep a bounded history.
        if self.marks.len() > MARKS_KEEP {
            self.marks.drain(..self.marks.len() - MARKS_KEEP);
        }
        self.note(label.into());
    }

    /// The overhead table since the last reset.
    fn table(&mut self, base: &Base) -> Table {
        let wall = base.at.unwrap_or(self.started).elapsed().as_secs_f64();
        let profile = self.latest.1.since(&base.vcpu);
        let io = self.net.io_profile().map(|io| match &base.io {
            Some(b) => io.since(b),
            None => io,
        });
        let tracepoints = self.tracepoint_counts();
        let samples = match &self.sampler {
            Ok(s) => Ok(s
                .latest()
                .map(|s| match &base.samples {
                    Some(b) => s.since(b),
                    None => s,
                })
                .unwrap_or_default()),
            Err(e) => Err(e.as_str()),
        };
        let emulation = self.windows.as_ref().ok().and_then(EmulationWindows::latest);
        attribution::table(&Inputs {
            tsc_mhz: self.tsc_mhz,
            wall_seconds: wall,
            vcpu: &profile.vcpu,
            io: io.as_ref(),
            pv: profile.pv,
            samples: samples.as_ref().map_err(|e| *e),
            emulation: emulation.as_ref(),
            in_kernel_pio: in_kernel_share(&tracepoints, &self.latest.0).unwrap_or(0.0),
        })
    }

    fn tracepoint_counts(&mut self) -> BTreeMap<String, u64> {
        match self.counters.as_mut().map(ThreadCounters::read) {
            Some(Ok(counts)) => counts.into_iter().collect(),
            _ => BTreeMap::new(),
        }
    }

    /// The picture of the run now.
    pub fn snapshot(&mut self) -> Snapshot {
        let base = self.view_base();
        let table = self.table(&base);
        let folded = match &self.sampler {
            Ok(s) => s
                .latest()
                .map(|s| match &base.samples {
                    Some(b) => sampler::owned(&s.since(b).folded),
                    None => sampler::owned(&s.folded),
                })
                .unwrap_or_default(),
            Err(_) => BTreeMap::new(),
        };
        let window = base.at.unwrap_or(self.started).elapsed().as_secs_f64();
        let accounting = self.net.accounting();
        let delivered = self.net.delivered().0;
        let exits = self
            .latest
            .0
            .kvm_run_returns
            .saturating_sub(base.stats.kvm_run_returns);
        let frames = delivered.saturating_sub(base.delivered.0);
        let sampling = match &self.sampler {
            Ok(_) => format!(
                "cpu-clock {} Hz, kernel and user stacks",
                self.args.sample_hz
            ),
            Err(e) => format!("off: {e}"),
        };
        Snapshot {
            state: self.state,
            info: Info {
                guest: self.image.name.clone(),
                backend: self.net.backend_name().into(),
                host_kind: crate::doctor::virtualization_name(),
                sampling,
                profiler_cost_pct: table.profiler_cost_seconds
                    / table.denominator_seconds.max(1e-9)
                    * 100.0,
                elapsed_seconds: self.elapsed(),
                window_seconds: window,
                outcome: self
                    .finished
                    .as_ref()
                    .map(|f| run::outcome(f, &self.image).message),
                optimizations: self.opts.describe(),
                rolling: self.window.is_some(),
            },
            series: self.series.iter().copied().collect(),
            marks: self.marks.clone(),
            threads: self.threads.sample(),
            guest_counters: self.guest_counters.clone(),
            net: NetFigures {
                frames_from_guest: accounting.0,
                delivered,
                dropped: accounting.1,
                exits_per_frame: (frames > 0).then(|| exits as f64 / frames as f64),
            },
            table,
            baseline: self.baseline.clone(),
            transmit_path: TransmitPath::from_counters(&self.guest_counters, self.tsc_mhz),
            folded,
            console: self.lines.iter().cloned().collect(),
            log: self.log.iter().cloned().collect(),
            toggles: Opt::ALL
                .iter()
                .map(|&o| Toggle {
                    name: o.name().into(),
                    key: o.key(),
                    on: self.opts.get(o),
                    meaning: o.meaning().into(),
                    blocked: self
                        .finished
                        .is_some()
                        .then(|| "the run has ended".to_string()),
                    needs: o
                        .needs()
                        .map(|n| n.name().to_string())
                        .into_iter()
                        .collect(),
                })
                .collect(),
        }
    }

    /// Waits for the guest to finish (stopping it if `stop`), quiesces the
    /// network and collectors, and reports everything measured.
    pub fn finish(mut self, console: &mut dyn Write) -> anyhow::Result<RunResult> {
        self.stop();
        let thread_cpu = self
            .thread_cpu
            .take()
            .unwrap_or_else(|| self.whole_run.sample());
        while !self.pump(Duration::from_millis(100), console)? {}
        let seconds = self.booted.elapsed().as_secs_f64();
        let tracepoints = self.tracepoint_counts();
        self.net.quiesce();
        let samples = self.sampler.map(Sampler::finish);
        let emulation = self.windows.map(EmulationWindows::finish);
        let (stats, profile) = self.latest;
        let exits = match tracepoints.get(USERSPACE_EXIT) {
            Some(&n) => Some((n, "kvm:kvm_userspace_exit")),
            None => Some((stats.kvm_run_returns, "worldswitch's own count")),
        };
        let net_report = self.net.report(
            seconds,
            &self.guest_counters,
            exits,
            tracepoints.get(PIO).copied(),
        );
        keep_tail(&mut self.text, CONSOLE_KEEP);
        let io = self.net.io_profile();
        let table = attribution::table(&Inputs {
            tsc_mhz: self.tsc_mhz,
            wall_seconds: seconds,
            vcpu: &profile.vcpu,
            io: io.as_ref(),
            pv: profile.pv,
            samples: samples.as_ref().map_err(String::as_str),
            emulation: emulation.as_ref().ok(),
            in_kernel_pio: in_kernel_share(&tracepoints, &stats).unwrap_or(0.0),
        });
        let transmit_path = TransmitPath::from_counters(&self.guest_counters, self.tsc_mhz);
        let finish = self.finished.expect("pumped to the end");
        let io_cpu_seconds = io.map(|io| io.cpu_seconds);
        Ok(RunResult {
            guest: self.image.name.clone(),
            guest_build_id: self.image.build_id.clone(),
            cmdline: self.cmdline,
            outcome: run::outcome(&finish, &self.image),
            seconds,
            exits: stats,
            tracepoints,
            tracepoints_unavailable: self.counters_unavailable,
            guest_counters: self.guest_counters,
            phases: self.phases,
            bad_messages: self.bad_messages,
            console: self.text,
            net: net_report,
            profile: table,
            folded: samples
                .map(|s| sampler::owned(&s.folded))
                .unwrap_or_default(),
            emulation: emulation.ok(),
            transmit_path,
            host_tsc_mhz: self.tsc_mhz,
            vcpu_cpu_seconds: profile.vcpu.cpu_seconds,
            thread_cpu,
            io_cpu_seconds,
            optimizations: self.opts.states(),
            optimization_changes: self.opt_changes,
        })
    }
}

/// Of the port accesses the guest made, the share KVM completed itself.
fn in_kernel_share(tracepoints: &BTreeMap<String, u64>, stats: &ExitStats) -> Option<f64> {
    let user_pio = stats.io_in + stats.io_out;
    tracepoints
        .get(PIO)
        .filter(|&&n| n > 0)
        .map(|&n| n.saturating_sub(user_pio) as f64 / n as f64)
}

/// Drops the front of `text` so at most `keep` bytes remain, at a character
/// boundary.
fn keep_tail(text: &mut String, keep: usize) {
    if text.len() > keep {
        let cut = (text.len() - keep..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text.drain(..cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_tail_respects_char_boundaries() {
        let mut t = "aé€x".to_string(); // 1 + 2 + 3 + 1 bytes
        keep_tail(&mut t, 4);
        assert_eq!(t, "€x");
        let mut short = "abc".to_string();
        keep_tail(&mut short, 10);
        assert_eq!(short, "abc");
    }
}
