//! The timeline around a guest: the time series, chart marks, event log,
//! baseline, console lines and rolling history, which outlive the
//! [`Guest`] they follow. Switching the interrupt controller swaps the
//! guest for one on a new VM; the timeline goes on.

use super::forecast::Forecaster;
use super::guest::{Base, Guest, News};
use super::result::RunResult;
use crate::cli::RunArgs;
use crate::machine::optimizations::{Opt, Opts};
use crate::machine::vmm::exits::ExitStats;
use crate::machine::vmm::vcpu::Command;
use crate::profiler::threads::ThreadMeter;
use profiles::snapshot::{Info, LiveForecast, LogLine, Mark, NetFigures, Point, Snapshot, Toggle};
use profiles::table::{Direction, PerFrame, Table};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

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
/// Points kept for a recording's timeline (a day, two a second).
const TIMELINE_POINTS_KEEP: usize = 2 * 86_400;
/// How long a restart waits for the old guest to end.
const RESTART_WAIT: Duration = Duration::from_secs(10);

/// A guest and its timeline: booted by [`Workbench::start`], driven by
/// [`Workbench::pump`], pictured by [`Workbench::snapshot`] and ended by
/// [`Workbench::finish`]. The headless run and the TUI's engine thread are
/// both loops around it.
pub struct Workbench {
    guest: Guest,
    args: RunArgs,
    started: Instant,
    lines: VecDeque<String>,
    series: VecDeque<Point>,
    /// Every point, for the result's timeline (where asked for).
    points: Option<Vec<Point>>,
    last_point: (Instant, ExitStats, (u64, u64)),
    base: Base,
    baseline: Option<Table>,
    marks: Vec<Mark>,
    log: VecDeque<LogLine>,
    history: VecDeque<Base>,
    window: Option<Duration>,
    threads: ThreadMeter,
    /// The host's virtualization (read once: it does not change).
    host_kind: &'static str,
    /// The optimizations the vCPU last reported: None before its first
    /// report, which is noted rather than marked.
    reported: Option<Opts>,
    opt_changes: Vec<Mark>,
    warned: BTreeSet<String>,
    warnings: Vec<String>,
    /// The cost model, live (where someone looks at its predictions).
    forecaster: Option<Forecaster>,
    /// The prediction of the flip asked for, for its mark.
    predicted: Option<(Opts, String)>,
    /// The last predictions, and when they were made.
    forecast: Option<(Instant, LiveForecast)>,
}

impl Workbench {
    /// Boots the guest `args` names with its network and collectors, and
    /// starts it.
    pub fn start(args: &RunArgs) -> anyhow::Result<Self> {
        let guest = Guest::start(args)?;
        let now = Instant::now();
        let mut w = Workbench {
            guest,
            forecaster: None,
            predicted: None,
            forecast: None,
            args: args.clone(),
            started: now,
            lines: VecDeque::new(),
            series: VecDeque::new(),
            points: args.timeline.then(Vec::new),
            last_point: (now, ExitStats::default(), (0, 0)),
            base: Base::default(),
            baseline: None,
            marks: Vec::new(),
            log: VecDeque::new(),
            history: VecDeque::new(),
            window: None,
            threads: ThreadMeter::default(),
            host_kind: crate::machine::vmm::flavour::Flavour::detect().name(),
            reported: None,
            opt_changes: Vec::new(),
            warned: BTreeSet::new(),
            warnings: Vec::new(),
        };
        if let Some(notice) = w.guest.notice().map(str::to_string) {
            w.note(format!("notice: {notice}"));
        }
        Ok(w)
    }

    /// Predicts what each toggle will do from now on (the Optimizations
    /// screen): calibrates the cost model on a VM of its own, in the
    /// background, and models the configuration running.
    pub fn forecast(&mut self) {
        if self.forecaster.is_none() {
            self.forecaster = Some(Forecaster::start(&mut self.guest));
        }
    }

    /// The guest being followed now.
    pub fn guest(&self) -> &Guest {
        &self.guest
    }

    /// Switches the interrupt controller, which only a new VM can do: ends
    /// this guest (its figures go to the log in one line), boots the same
    /// guest with `opts` on a new VM and network, and keeps the timeline.
    /// If the new VM cannot start, the run ends and the log says why.
    fn restart(&mut self, opts: Opts) {
        let irqchip = if opts.get(Opt::KernelIrqchip) {
            "KVM's irqchip"
        } else {
            "the user-space 8259 and 8254"
        };
        self.mark(&format!("restarting the guest on a new VM with {irqchip}"));
        // The old guest's threads end before the new collectors look for
        // threads, so none of them lands in the new profile.
        self.guest.wind_down(RESTART_WAIT);
        let mut args = self.args.clone();
        args.set_optimizations(opts);
        let next = match Guest::start(&args) {
            Ok(g) => g,
            Err(e) => {
                self.warn(format!("the guest could not restart with {irqchip}: {e:#}"));
                return;
            }
        };
        let old = std::mem::replace(&mut self.guest, next);
        if let Some(f) = &mut self.forecaster {
            f.restarted(&mut self.guest);
        }
        // Live figures start afresh with the new guest.
        self.base = Base::default();
        self.history.clear();
        self.last_point = (Instant::now(), ExitStats::default(), (0, 0));
        self.lines
            .push_back(format!("--- the guest restarts with {irqchip} ---\n"));
        match old.finish(&mut std::io::sink()) {
            Ok(r) => self.note(format!(
                "the previous guest ran {:.1} s: {:.2} Mb/s, {} frames delivered, {} exits to user space",
                r.seconds, r.net.throughput_mbps, r.net.frames_delivered, r.exits.kvm_run_returns
            )),
            Err(e) => self.note(format!("the previous guest's figures are lost: {e:#}")),
        }
        if let Some(notice) = self.guest.notice().map(str::to_string) {
            self.note(format!("notice: {notice}"));
        }
    }

    /// Notices worth telling a user (the network's, at start).
    pub fn notices(&self) -> impl Iterator<Item = &str> {
        self.log.iter().map(|l| l.text.as_str())
    }

    /// Follows the guest's events for up to `wait`, writing console output
    /// to `console` as it arrives. Returns true once the guest has finished.
    pub fn pump(&mut self, wait: Duration, console: &mut dyn Write) -> anyhow::Result<bool> {
        let mut news = Vec::new();
        let finished = self.guest.pump(wait, console, &mut news)?;
        for n in news {
            self.hear(n);
        }
        Ok(finished)
    }

    fn hear(&mut self, news: News) {
        match news {
            News::Console(line) => {
                match self.lines.back_mut() {
                    Some(last) if !last.ends_with('\n') => last.push_str(&line),
                    _ => self.lines.push_back(line),
                }
                while self.lines.len() > CONSOLE_LINES {
                    self.lines.pop_front();
                }
            }
            News::Note(text) => self.note(text),
            News::Optimized(opts) => {
                if self.reported != Some(opts) {
                    let mut label = format!("optimizations: {}", opts.describe());
                    if let Some((_, predicted)) = self.predicted.take().filter(|(o, _)| *o == opts)
                    {
                        label = format!("{label} ({predicted})");
                    }
                    if self.opt_changes.len() < CHANGES_KEEP {
                        self.opt_changes.push(Mark {
                            t: self.elapsed(),
                            label: label.clone(),
                        });
                    }
                    match self.reported {
                        Some(_) => self.mark(&label),
                        None => self.note(label),
                    }
                }
                self.reported = Some(opts);
            }
            News::Progress(stats) => {
                self.warn_of_refusals();
                self.point(&stats);
                // A picture of the collectors a second, for rolling windows.
                if self
                    .history
                    .back()
                    .and_then(|b| b.at)
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                {
                    self.history.push_back(self.guest.capture());
                    while self.history.len() > HISTORY_KEEP {
                        self.history.pop_front();
                    }
                }
            }
        }
    }

    /// Adds a point to the time series: the interval since the last one.
    fn point(&mut self, stats: &ExitStats) {
        let now = Instant::now();
        let delivered = self.guest.delivered();
        let (t0, s0, d0) = std::mem::replace(&mut self.last_point, (now, stats.clone(), delivered));
        let dt = now.duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        let point = Point {
            t: now.duration_since(self.started).as_secs_f64(),
            mbps: rate(delivered.1, d0.1) * 8.0 / 1e6,
            frames_per_sec: rate(delivered.0, d0.0),
            pio_exits_per_sec: rate(stats.io_in + stats.io_out, s0.io_in + s0.io_out),
            mmio_exits_per_sec: rate(stats.mmio, s0.mmio),
            kick_exits_per_sec: rate(stats.interrupted, s0.interrupted),
            other_exits_per_sec: rate(stats.other, s0.other),
            in_kernel_writes_per_sec: rate(stats.coalesced_writes, s0.coalesced_writes),
        };
        if let Some(points) = self
            .points
            .as_mut()
            .filter(|p| p.len() < TIMELINE_POINTS_KEEP)
        {
            points.push(point);
        }
        self.series.push_back(point);
        while self.series.len() > SERIES_KEEP {
            self.series.pop_front();
        }
    }

    /// Seconds since the first guest started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// What the peer has received from this guest: (datagrams, payload
    /// bytes).
    pub fn delivered(&self) -> (u64, u64) {
        self.guest.delivered()
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

    /// Says once, in the log and to [`Workbench::take_warnings`], when the
    /// kernel refused a collector mid-run.
    fn warn_of_refusals(&mut self) {
        if let Some(why) = self.guest.windows_refused() {
            if self.warned.insert("windows".into()) {
                self.warn(format!("{why}; the emulation rows are not split further"));
            }
        }
        let Some(s) = self.guest.samples() else {
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
            let (noun, its) = match threads.len() {
                1 => ("thread", "its"),
                _ => ("threads", "their"),
            };
            self.warn(format!(
                "the kernel refused to sample {noun} {} ({why}); {its} samples are missing",
                threads.join(", "),
            ));
        }
    }

    fn warn(&mut self, text: String) {
        self.note(format!("warning: {text}"));
        self.warnings.push(text);
    }

    /// Pauses or resumes the guest.
    pub fn set_paused(&mut self, paused: bool) {
        if self.guest.is_finished() {
            return;
        }
        self.guest.command(if paused {
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
        self.guest.optimizations()
    }

    /// Asks the vCPU to switch to `opts` (at its next KVM_RUN boundary);
    /// a change of interrupt controller restarts the guest on a new VM.
    pub fn set_optimizations(&mut self, opts: Opts) {
        if self.guest.is_finished() {
            return;
        }
        let now = self.guest.optimizations();
        if opts.get(Opt::KernelIrqchip) != now.get(Opt::KernelIrqchip) {
            self.restart(opts);
        } else {
            self.predicted = self
                .forecaster
                .as_mut()
                .and_then(|f| f.flipping(opts))
                .map(|l| (opts, l));
            self.guest.command(Command::Optimize(opts));
        }
    }

    /// Flips the toggle `o`, with what it needs or what needs it.
    pub fn toggle(&mut self, o: Opt) {
        let mut next = self.guest.optimizations();
        next.set(o, !next.get(o));
        self.set_optimizations(next);
    }

    /// Asks the guest to stop (once).
    pub fn stop(&mut self) {
        self.guest.stop();
    }

    /// Starts the figures afresh from now (the time series keeps going,
    /// with a mark).
    pub fn reset(&mut self) {
        self.base = self.guest.capture();
        self.mark("counters reset");
    }

    /// Figures over the last `window` (rolling, at most a minute), or, with
    /// None, since the start or the last reset.
    pub fn set_window(&mut self, window: Option<Duration>) {
        self.window = window.map(|w| w.min(Duration::from_secs(HISTORY_KEEP as u64 - 1)));
    }

    /// The base live figures are taken from: the newest picture at least a
    /// window old, but never one from before the last reset.
    fn view_base(&self) -> Base {
        let Some(w) = self.window else {
            return self.base.clone();
        };
        self.history
            .iter()
            .rev()
            .find(|b| b.at.is_some_and(|t| t.elapsed() >= w))
            .filter(|b| match (b.at, self.base.at) {
                (Some(t), Some(reset)) => t >= reset,
                _ => true,
            })
            .cloned()
            .unwrap_or_else(|| self.base.clone())
    }

    /// Keeps the current table as the baseline of the delta column.
    pub fn mark_baseline(&mut self) {
        let base = self.view_base();
        self.baseline = Some(self.live_table(&base));
        self.mark("baseline marked");
    }

    /// The overhead table since `base`, with the frames delivered since
    /// then as its ledger (live, only the exits per frame are counted).
    fn live_table(&mut self, base: &Base) -> Table {
        let mut table = self.guest.table(base);
        let frames = self.guest.delivered().0.saturating_sub(base.delivered.0);
        let exits = self
            .guest
            .stats()
            .kvm_run_returns
            .saturating_sub(base.exits());
        table.per_frame(PerFrame {
            frames,
            direction: Direction::Transmit,
            exits_to_user: Some(exits as f64 / frames.max(1) as f64),
            port_accesses_in_kernel: None,
            interrupts: None,
            emulated_instructions: None,
            tap_writes: None,
        });
        table
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

    /// The cost model's predictions, at most once a second (each builds a
    /// table); a flip's finished check goes on the chart and in the log.
    fn update_forecast(&mut self) {
        if self
            .forecast
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let Some(forecaster) = &mut self.forecaster else {
            return;
        };
        let (f, finished) = forecaster.update(&mut self.guest);
        if let Some(text) = finished {
            self.mark(&format!("measured {text}"));
        }
        self.forecast = Some((Instant::now(), f));
    }

    /// The picture of the run now.
    pub fn snapshot(&mut self) -> Snapshot {
        self.update_forecast();
        let base = self.view_base();
        let table = self.live_table(&base);
        let g = &self.guest;
        let window = base.at.unwrap_or(g.booted()).elapsed().as_secs_f64();
        let accounting = g.accounting();
        let delivered = g.delivered().0;
        let opts = g.optimizations();
        Snapshot {
            state: g.state(),
            info: Info {
                guest: g.name().to_string(),
                backend: g.backend_name().into(),
                host_kind: self.host_kind.into(),
                sampling: g.sampling(),
                profiler_cost_pct: table.profiler_cost_seconds
                    / table.denominator_seconds.max(1e-9)
                    * 100.0,
                elapsed_seconds: self.elapsed(),
                window_seconds: window,
                outcome: g.outcome().map(|o| o.message),
                optimizations: opts.describe(),
                rolling: self.window.is_some(),
            },
            series: self.series.iter().copied().collect(),
            marks: self.marks.clone(),
            threads: self.threads.sample(),
            guest_counters: g.guest_counters().clone(),
            net: NetFigures {
                frames_from_guest: accounting.0,
                delivered,
                dropped: accounting.1,
                // The live ledger has it, where frames flowed.
                exits_per_frame: table.per_frame.as_ref().and_then(|p| p.exits_to_user),
            },
            table,
            baseline: self.baseline.clone(),
            transmit_path: g.transmit_path(),
            folded: g.folded_since(&base),
            console: self.lines.iter().cloned().collect(),
            log: self.log.iter().cloned().collect(),
            toggles: Opt::ALL
                .iter()
                .map(|&o| Toggle {
                    opt: o,
                    key: o.key(),
                    on: opts.get(o),
                    meaning: o.meaning().into(),
                    blocked: g.is_finished().then(|| "the run has ended".to_string()),
                    needs: o.needs().into_iter().collect(),
                })
                .collect(),
            forecast: self.forecast.as_ref().map(|(_, f)| f.clone()),
        }
    }

    /// Waits for the guest to finish (stopping it), quiesces the network
    /// and collectors, and reports everything measured.
    pub fn finish(self, console: &mut dyn Write) -> anyhow::Result<RunResult> {
        // The guest's times count from its boot; the timeline's from the
        // first guest's (a restart boots a later one).
        let offset = self.guest.booted().duration_since(self.started);
        let mut r = self.guest.finish(console)?;
        if let Some(t) = r.timeline.as_mut() {
            let ms = offset.as_micros() as f64 / 1e3;
            t.samples.t_ms.iter_mut().for_each(|x| *x += ms);
            t.phases.iter_mut().for_each(|p| p.start_s += ms / 1e3);
            t.seconds = profiles::timeline::per_second(&self.points.unwrap_or_default());
            // The optimizations at the start, then the chart's marks
            // (which have every later change).
            t.marks = self.opt_changes.iter().take(1).cloned().collect();
            t.marks.extend(self.marks);
        }
        r.optimization_changes = self.opt_changes;
        Ok(r)
    }
}
