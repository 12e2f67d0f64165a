//! One guest: a VM with its network and collectors, booted by
//! [`Guest::start`], followed by [`Guest::pump`] and ended by
//! [`Guest::finish`] in a [`RunResult`]. It lives as long as its VM; the
//! [`super::Workbench`] around it keeps what outlives a restart.

use super::result::{ledger, outcome, Outcome, RunResult};
use crate::cli::RunArgs;
use crate::machine::devices::host::GuestSays;
use crate::machine::guest_image::GuestImage;
use crate::machine::netrun::NetRun;
use crate::machine::optimizations::Opts;
use crate::machine::vmm::events::{Finish, VcpuProfile, VcpuState, VmEvent};
use crate::machine::vmm::exits::ExitStats;
use crate::machine::vmm::vcpu::Command;
use crate::machine::vmm::vm::{self, VmConfig, VmHandle};
use crate::machine::vmnet::tap::IoProfile;
use crate::profiler::emulation::EmulationWindows;
use crate::profiler::sampler::{self, SampleSummary, Sampler, Timed};
use crate::profiler::threads::ThreadMeter;
use crate::profiler::tracepoints::{ThreadCounters, PIO, USERSPACE_EXIT};
use crate::profiler::TscClock;
use profiles::attribution::{self, Inputs};
use profiles::snapshot::{RunState, ThreadCpu};
use profiles::table::Table;
use profiles::timeline::{Phase, Timeline};
use profiles::transmit_path::TransmitPath;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Console text kept in a result; older text is dropped first.
const CONSOLE_KEEP: usize = 64 * 1024;

/// What the guest's events tell the timeline around it.
#[derive(Debug)]
pub enum News {
    /// Console output.
    Console(String),
    /// A line for the event log.
    Note(String),
    /// The optimizations the vCPU has in effect, as it reported them.
    Optimized(Opts),
    /// The vCPU's exit counts, published about ten times a second and at
    /// the end.
    Progress(ExitStats),
}

/// What the collectors had accumulated at some moment (the last reset, or
/// a second of the rolling history); live figures are differences from it.
#[derive(Default, Clone)]
pub struct Base {
    /// When; None is the guest's boot.
    pub at: Option<Instant>,
    stats: ExitStats,
    vcpu: VcpuProfile,
    io: Option<IoProfile>,
    samples: Option<SampleSummary>,
    /// What the peer had received then: (datagrams, payload bytes).
    pub delivered: (u64, u64),
}

impl Base {
    /// Exits to user space then.
    pub fn exits(&self) -> u64 {
        self.stats.kvm_run_returns
    }

    /// The exit counters then.
    pub fn stats(&self) -> &ExitStats {
        &self.stats
    }
}

/// A running guest and everything measured about it.
pub struct Guest {
    args: RunArgs,
    image: GuestImage,
    cmdline: String,
    vm: VmHandle,
    net: NetRun,
    sampler: Result<Sampler, String>,
    windows: Result<EmulationWindows, String>,
    counters: Option<ThreadCounters>,
    counters_unavailable: Option<String>,
    /// The host TSC's rate, measured over the run.
    tsc: TscClock,
    booted: Instant,
    /// The same moment on the sampler's clock (CLOCK_MONOTONIC ns).
    booted_ns: u64,
    state: RunState,
    stop_sent: bool,
    text: String,
    guest_counters: BTreeMap<String, u64>,
    phases: Vec<Phase>,
    open_phases: BTreeMap<(String, u64), Instant>,
    bad_messages: Vec<String>,
    latest: (ExitStats, VcpuProfile),
    finished: Option<Finish>,
    whole_run: ThreadMeter,
    thread_cpu: Option<Vec<ThreadCpu>>,
    opts: Opts,
}

impl Guest {
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
        if let Some(rx) = vm.take_rx_path() {
            net.start(vm.kicker(), rx)?;
        }
        let sampler = match args.sample_hz {
            0 => Err("sampling is off (--sample-hz 0)".to_string()),
            hz => Sampler::start(
                vm.vcpu_tid(),
                hz,
                vm.stitch_log()
                    .map(|log| (log, std::sync::Arc::new(image.clone()))),
                args.timeline,
            ),
        };
        let windows = if args.emulation_windows {
            EmulationWindows::start(
                vm.vcpu_tid(),
                vm.port_map(),
                args.emulation_duty,
                net.frame_counter(),
            )
        } else {
            Err("emulation windows are off".to_string())
        };
        let (counters, counters_unavailable) =
            match ThreadCounters::open(vm.vcpu_tid(), &[USERSPACE_EXIT, PIO]) {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e.to_string())),
            };
        let tsc = TscClock::start();
        let mut whole_run = ThreadMeter::default();
        whole_run.sample();
        vm.command(Command::Resume);
        Ok(Guest {
            args: args.clone(),
            image,
            cmdline,
            vm,
            net,
            sampler,
            windows,
            counters,
            counters_unavailable,
            tsc,
            booted: Instant::now(),
            booted_ns: crate::profiler::stitch::monotonic_ns(),
            state: RunState::Starting,
            stop_sent: false,
            text: String::new(),
            guest_counters: BTreeMap::new(),
            phases: Vec::new(),
            open_phases: BTreeMap::new(),
            bad_messages: Vec::new(),
            latest: Default::default(),
            finished: None,
            whole_run,
            thread_cpu: None,
            opts: args.optimizations(),
        })
    }

    /// The network's notice at start, if it has one.
    pub fn notice(&self) -> Option<&str> {
        self.net.notice.as_deref()
    }

    /// Follows the guest's events for up to `wait`, writing console output
    /// to `console` as it arrives and what the timeline needs to `news`.
    /// Returns true once the guest has finished.
    pub fn pump(
        &mut self,
        wait: Duration,
        console: &mut dyn Write,
        news: &mut Vec<News>,
    ) -> anyhow::Result<bool> {
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
            if self.handle(event, console, news) {
                return Ok(true);
            }
            match self.vm.events().try_recv() {
                Ok(e) => event = e,
                Err(_) => return Ok(false),
            }
        }
    }

    fn handle(&mut self, event: VmEvent, console: &mut dyn Write, news: &mut Vec<News>) -> bool {
        match event {
            VmEvent::Guest(GuestSays::Console(line)) => {
                // The console is best effort: a closed pipe must not stop the run.
                let _ = console.write_all(line.as_bytes());
                self.text.push_str(&line);
                // Trim in batches, not per line.
                if self.text.len() > 2 * CONSOLE_KEEP {
                    keep_tail(&mut self.text, CONSOLE_KEEP);
                }
                news.push(News::Console(line));
            }
            VmEvent::Guest(GuestSays::Counter { name, value }) => {
                self.guest_counters.insert(name, value);
            }
            VmEvent::Guest(GuestSays::Phase {
                begin: true,
                name,
                index,
                at,
            }) => {
                self.open_phases.insert((name, index), at);
            }
            VmEvent::Guest(GuestSays::Phase {
                begin: false,
                name,
                index,
                at,
            }) => {
                if let Some(start) = self.open_phases.remove(&(name.clone(), index)) {
                    self.phases.push(Phase {
                        name,
                        index,
                        start_s: start.saturating_duration_since(self.booted).as_secs_f64(),
                        seconds: at.duration_since(start).as_secs_f64(),
                    });
                }
            }
            VmEvent::Guest(GuestSays::BadMessage(why)) => {
                news.push(News::Note(format!("ignored mailbox message: {why}")));
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
                    news.push(News::Note(format!("warning: {e}")));
                }
                self.opts = opts;
                news.push(News::Optimized(opts));
            }
            VmEvent::Progress { stats, profile } => {
                news.push(News::Progress(stats.clone()));
                self.latest = (stats, profile);
            }
            VmEvent::Finished {
                finish,
                stats,
                profile,
            } => {
                news.push(News::Progress(stats.clone()));
                self.latest = (stats, profile);
                self.state = RunState::Finished;
                news.push(News::Note(self.describe(&finish).message));
                self.finished = Some(finish);
                return true;
            }
        }
        false
    }

    /// How a finish reads for people and scripts.
    fn describe(&self, finish: &Finish) -> Outcome {
        outcome(finish, &self.image)
    }

    /// Asks the vCPU to do something at its next KVM_RUN boundary; nothing
    /// once the guest has finished.
    pub fn command(&self, c: Command) {
        if self.finished.is_none() {
            self.vm.command(c);
        }
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

    /// Stops the guest, follows it to its end (for at most `limit`) and
    /// quiesces its network, so none of its threads is left running.
    pub fn wind_down(&mut self, limit: Duration) {
        self.stop();
        let deadline = Instant::now() + limit;
        let mut news = Vec::new();
        while !matches!(
            self.pump(Duration::from_millis(100), &mut std::io::sink(), &mut news),
            Ok(true) | Err(_)
        ) && Instant::now() < deadline
        {
            news.clear();
        }
        self.net.quiesce();
    }

    /// What the collectors have accumulated now.
    pub fn capture(&self) -> Base {
        Base {
            at: Some(Instant::now()),
            stats: self.latest.0.clone(),
            vcpu: self.latest.1.clone(),
            io: self.net.io_profile(),
            samples: self.samples(),
            delivered: self.net.delivered(),
        }
    }

    /// The overhead table since `base`.
    pub fn table(&mut self, base: &Base) -> Table {
        let wall = base.at.unwrap_or(self.booted).elapsed().as_secs_f64();
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
        let emulation = self
            .windows
            .as_ref()
            .ok()
            .and_then(EmulationWindows::latest);
        attribution::table(&Inputs {
            tsc_mhz: self.tsc.mhz(),
            wall_seconds: wall,
            vcpu: &profile.vcpu,
            io: io.as_ref(),
            pv: profile.pv,
            samples: samples.as_ref().map_err(|e| *e),
            emulation: emulation.as_ref(),
            in_kernel_pio: in_kernel_share(&tracepoints, &self.latest.0).unwrap_or(0.0),
        })
    }

    /// The sampled stacks since `base`, folded.
    pub fn folded_since(&self, base: &Base) -> BTreeMap<String, u64> {
        let Some(s) = self.samples() else {
            return BTreeMap::new();
        };
        match &base.samples {
            Some(b) => sampler::owned(&s.since(b).folded),
            None => sampler::owned(&s.folded),
        }
    }

    /// The kernel tracepoints' counts so far (empty where they are
    /// unavailable).
    pub fn tracepoints(&mut self) -> BTreeMap<String, u64> {
        self.tracepoint_counts()
    }

    /// NIC interrupt line edges and pv-nic doorbells so far.
    pub fn net_events(&self) -> (u64, u64) {
        self.net.event_counts()
    }

    /// The emulation windows' mix so far.
    pub fn emulation(&self) -> Option<profiles::inputs::EmulationSummary> {
        self.windows
            .as_ref()
            .ok()
            .and_then(EmulationWindows::latest)
    }

    fn tracepoint_counts(&mut self) -> BTreeMap<String, u64> {
        match self.counters.as_mut().map(ThreadCounters::read) {
            Some(Ok(counts)) => counts.into_iter().collect(),
            _ => BTreeMap::new(),
        }
    }

    /// What the sampler saw so far, where it runs.
    pub fn samples(&self) -> Option<SampleSummary> {
        self.sampler.as_ref().ok().and_then(Sampler::latest)
    }

    /// Why the kernel stopped the emulation windows, if it did.
    pub fn windows_refused(&self) -> Option<String> {
        self.windows
            .as_ref()
            .ok()
            .and_then(EmulationWindows::latest)
            .and_then(|e| e.refused)
    }

    /// How the sampler runs, or why it does not.
    pub fn sampling(&self) -> String {
        match &self.sampler {
            Ok(_) => format!(
                "cpu-clock {} Hz, kernel and user stacks",
                self.args.sample_hz
            ),
            Err(e) => format!("off: {e}"),
        }
    }

    /// When the guest booted.
    pub fn booted(&self) -> Instant {
        self.booted
    }

    /// The vCPU thread's ID, for tracing it from outside.
    pub fn vcpu_tid(&self) -> libc::pid_t {
        self.vm.vcpu_tid()
    }

    /// What the peer has received: (datagrams, payload bytes).
    pub fn delivered(&self) -> (u64, u64) {
        self.net.delivered()
    }

    /// Frames taken from the guest, and frames dropped by reason.
    pub fn accounting(&self) -> (u64, BTreeMap<String, u64>) {
        self.net.accounting()
    }

    /// The network backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.net.backend_name()
    }

    /// The guest image's name.
    pub fn name(&self) -> &str {
        &self.image.name
    }

    /// What the vCPU is doing.
    pub fn state(&self) -> RunState {
        self.state
    }

    /// How the guest ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        self.finished.as_ref().map(|f| self.describe(f))
    }

    /// Whether the guest has ended.
    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }

    /// The optimizations in effect (as the vCPU last reported them).
    pub fn optimizations(&self) -> Opts {
        self.opts
    }

    /// The exit counts the vCPU last published.
    pub fn stats(&self) -> &ExitStats {
        &self.latest.0
    }

    /// The counters the guest reported through the mailbox.
    pub fn guest_counters(&self) -> &BTreeMap<String, u64> {
        &self.guest_counters
    }

    /// The transmit path (Figure 5), once the guest has measured it.
    pub fn transmit_path(&self) -> Option<TransmitPath> {
        TransmitPath::from_counters(&self.guest_counters, self.tsc.mhz())
    }

    /// Waits for the guest to finish (stopping it), quiesces the network
    /// and collectors, and reports everything measured. The optimization
    /// changes are the timeline's to fill in.
    pub fn finish(mut self, console: &mut dyn Write) -> anyhow::Result<RunResult> {
        self.stop();
        let thread_cpu = self
            .thread_cpu
            .take()
            .unwrap_or_else(|| self.whole_run.sample());
        let mut news = Vec::new();
        while !self.pump(Duration::from_millis(100), console, &mut news)? {}
        let seconds = self.booted.elapsed().as_secs_f64();
        let tsc_mhz = self.tsc.mhz();
        let transmit_path = self.transmit_path();
        let tracepoints = self.tracepoint_counts();
        // What ends with the run ends side by side. Closing each kernel
        // tracepoint's last perf event waits for a grace period (about
        // 40 ms here, one tracepoint at a time: the emulation windows',
        // then the counters'), closing the VM takes 15 ms, and the sampler
        // waits for its symbol tables to name the last samples. One after
        // another they took 200 ms at the end of a 12 ms guest.
        let (vm, counters, windows, sampler) =
            (self.vm, self.counters.take(), self.windows, self.sampler);
        let (sampled, emulation) = std::thread::scope(|s| {
            let windows = s.spawn(move || windows.map(EmulationWindows::finish));
            if let Some(c) = counters {
                s.spawn(move || c.close());
            }
            // The network stops before the VM it kicks is closed.
            self.net.quiesce();
            s.spawn(move || drop(vm));
            let sampled = sampler.map(Sampler::finish);
            let emulation = windows
                .join()
                .unwrap_or_else(|_| Err("the emulation windows failed".to_string()));
            (sampled, emulation)
        });
        let (samples, timed) = match sampled {
            Ok((s, timed)) => (Ok(s), timed),
            Err(e) => (Err(e), None),
        };
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
            tsc_mhz,
            wall_seconds: seconds,
            vcpu: &profile.vcpu,
            io: io.as_ref(),
            pv: profile.pv,
            samples: samples.as_ref().map_err(String::as_str),
            emulation: emulation.as_ref().ok(),
            in_kernel_pio: in_kernel_share(&tracepoints, &stats).unwrap_or(0.0),
        });
        let finish = self.finished.expect("pumped to the end");
        let mut result = RunResult {
            guest: self.image.name.clone(),
            guest_build_id: self.image.build_id.clone(),
            cmdline: self.cmdline,
            outcome: outcome(&finish, &self.image),
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
            timeline: None,
            emulation: emulation.ok(),
            transmit_path,
            host_tsc_mhz: tsc_mhz,
            vcpu_cpu_seconds: profile.vcpu.cpu_seconds,
            thread_cpu,
            io_cpu_seconds: io.map(|io| io.cpu_seconds),
            optimizations: self.opts.states(),
            optimization_changes: Vec::new(),
        };
        result.timeline = timed.map(|t| timeline(t, self.booted_ns, &result.phases));
        if let Some(counts) = ledger(&result) {
            result.profile.per_frame(counts);
        }
        Ok(result)
    }
}

/// The run's samples and phases over time, in milliseconds and seconds
/// since the guest booted (`booted_ns` on the sampler's clock); the
/// workbench adds its series and marks.
fn timeline(timed: Timed, booted_ns: u64, phases: &[Phase]) -> Timeline {
    let mut samples = timed.samples;
    // Each thread's samples come in order; the threads interleave.
    samples.sort_by_key(|&(t, _)| t);
    let mut index: HashMap<Arc<str>, u32> = HashMap::new();
    let mut t = Timeline {
        samples_left_out: timed.left_out,
        phases: phases.to_vec(),
        ..Timeline::default()
    };
    for (ns, stack) in samples {
        let next = index.len() as u32;
        let i = *index.entry(stack.clone()).or_insert_with(|| {
            t.stacks.push(stack.to_string());
            next
        });
        // Samples taken before the boot (the sampler starts first) are
        // put at its moment.
        t.samples
            .t_ms
            .push(ns.saturating_sub(booted_ns) as f64 / 1e6);
        t.samples.stack.push(i);
    }
    t
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
