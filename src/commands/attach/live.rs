//! `attach` in the workbench: a thread that measures the target and
//! publishes a picture every refresh, in the same screens a guest of our
//! own fills. The toggles are shown but not ours to switch.

use super::measure::{Measurement, Settings};
use super::result::AttachResult;
use super::target::Target;
use super::POLL;
use crate::frontends::engine::{Feed, Request};
use crate::machine::optimizations::Opt;
use crate::profiler::live::{Every, Published};
use profiles::snapshot::{
    Info, LogLine, Mark, NetFigures, Point, RunState, Snapshot, ThreadCpu, Toggle,
};
use profiles::table::Table;
use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Points kept for the charts: ten minutes at one a second.
const SERIES: usize = 600;

/// The measuring thread.
pub struct AttachEngine {
    requests: Sender<Request>,
    latest: Published<Arc<Snapshot>>,
    thread: JoinHandle<AttachResult>,
}

impl AttachEngine {
    /// Starts measuring `target` on a thread of its own (the measurement
    /// lives there: the symbolizer's caches are not `Send`), sampling at
    /// `sample_hz`, for `duration` if given.
    pub fn start(
        target: Target,
        settings: Settings,
        refresh: Duration,
        duration: Option<Duration>,
        sampling: String,
    ) -> anyhow::Result<Self> {
        let (requests, rx) = mpsc::channel();
        let latest = Published::default();
        let publish = latest.clone();
        let thread = std::thread::Builder::new()
            .name("attach".into())
            .spawn(move || {
                let m = Measurement::start(target, settings);
                drive(m, refresh, duration, sampling, &rx, &publish)
            })?;
        Ok(Self {
            requests,
            latest,
            thread,
        })
    }

    /// Stops measuring and returns what was measured.
    pub fn finish(self) -> anyhow::Result<AttachResult> {
        let _ = self.requests.send(Request::Stop);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the attach thread panicked"))
    }
}

impl Feed for AttachEngine {
    fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.latest()
    }

    fn send(&self, r: Request) -> Option<String> {
        match r {
            Request::Toggle(o) => Some(format!(
                "{}: not ours to switch (attach only watches the target)",
                o.name()
            )),
            Request::Pause(_) => Some("attach does not pause the target".into()),
            Request::Reset | Request::Window(_) => Some(
                "attach measures from the moment it attached; restart it for a fresh window".into(),
            ),
            r => {
                let _ = self.requests.send(r);
                None
            }
        }
    }
}

/// What the pictures are made of besides the measurement.
struct Picture {
    sampling: String,
    series: VecDeque<Point>,
    marks: Vec<Mark>,
    log: Vec<LogLine>,
    baseline: Option<Table>,
    /// Each thread's CPU seconds at the last point.
    cpu: BTreeMap<i32, f64>,
    /// Time, frames, bytes, exits, I/O exits and MMIO exits at the last
    /// point.
    last: (f64, u64, u64, u64, u64, u64),
}

fn drive(
    mut m: Measurement,
    refresh: Duration,
    duration: Option<Duration>,
    sampling: String,
    rx: &Receiver<Request>,
    publish: &Published<Arc<Snapshot>>,
) -> AttachResult {
    let started = Instant::now();
    let mut every = Every::new(refresh);
    let t = m.target().clone();
    let mut p = Picture {
        sampling,
        series: VecDeque::new(),
        marks: Vec::new(),
        log: vec![LogLine {
            t: 0.0,
            text: format!(
                "attached to {} (PID {}), read-only: {} vCPU descriptor(s), TAP {}",
                t.name,
                t.pid,
                t.vcpus.len(),
                if t.taps.is_empty() {
                    "none".into()
                } else {
                    t.taps.join(", ")
                }
            ),
        }],
        baseline: None,
        cpu: BTreeMap::new(),
        last: (0.0, 0, 0, 0, 0, 0),
    };
    let mut ended = false;
    loop {
        let mut stop = false;
        let mut changed = false;
        loop {
            match rx.try_recv() {
                Ok(Request::Stop) | Err(TryRecvError::Disconnected) => stop = true,
                Ok(Request::Baseline) => {
                    p.baseline = Some(m.result().profile);
                    p.note(started, "baseline marked".into(), true);
                    changed = true;
                }
                Ok(Request::Note(text)) => {
                    p.note(started, text, false);
                    changed = true;
                }
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
            }
        }
        if stop {
            return m.finish();
        }
        if !ended {
            let exited = m.poll();
            if exited {
                p.note(
                    started,
                    "the target exited; the figures are final".into(),
                    true,
                );
            }
            let over = duration.is_some_and(|d| started.elapsed() >= d);
            if exited || over {
                ended = true;
                if over {
                    p.note(
                        started,
                        "the duration is up; the figures are final".into(),
                        true,
                    );
                }
            }
            if ended || every.due() {
                let r = m.result();
                publish.publish(Arc::new(p.snapshot(&r, ended)));
                changed = false;
            }
        }
        if changed {
            let r = m.result();
            publish.publish(Arc::new(p.snapshot(&r, ended)));
        }
        std::thread::sleep(POLL);
    }
}

impl Picture {
    fn note(&mut self, started: Instant, text: String, mark: bool) {
        let t = started.elapsed().as_secs_f64();
        if mark {
            self.marks.push(Mark {
                t,
                label: text.clone(),
            });
        }
        self.log.push(LogLine { t, text });
    }

    /// The picture of `r`, adding a point to the charts.
    fn snapshot(&mut self, r: &AttachResult, ended: bool) -> Snapshot {
        let frames: u64 = r.taps.iter().map(|t| t.frames_from_guest).sum();
        let bytes: u64 = r.taps.iter().map(|t| t.bytes_from_guest).sum();
        let exits = r.exits.kvm_run_returns.unwrap_or(0);
        let io = r.exits.io_exits.unwrap_or(0);
        let mmio = r.exits.mmio_exits.unwrap_or(0);
        let (t0, f0, b0, e0, io0, mmio0) = self.last;
        let dt = r.seconds - t0;
        // A picture asked for between two points (a baseline, a note)
        // adds none, and measures CPU since the last point.
        let point = dt > 0.05;
        if point {
            self.series.push_back(Point {
                t: r.seconds,
                mbps: bytes.saturating_sub(b0) as f64 * 8.0 / dt / 1e6,
                frames_per_sec: frames.saturating_sub(f0) as f64 / dt,
                pio_exits_per_sec: io.saturating_sub(io0) as f64 / dt,
                mmio_exits_per_sec: mmio.saturating_sub(mmio0) as f64 / dt,
                // What is neither (interrupted runs: signals, kicks).
                other_exits_per_sec: exits
                    .saturating_sub(e0)
                    .saturating_sub(io.saturating_sub(io0))
                    .saturating_sub(mmio.saturating_sub(mmio0))
                    as f64
                    / dt,
                ..Default::default()
            });
            if self.series.len() > SERIES {
                self.series.pop_front();
            }
            self.last = (r.seconds, frames, bytes, exits, io, mmio);
        }
        let threads = r
            .vcpu_threads
            .iter()
            .chain(&r.threads)
            .map(|t| {
                let before = self.cpu.get(&t.tid).copied().unwrap_or(0.0);
                if point {
                    self.cpu.insert(t.tid, t.cpu_seconds);
                }
                ThreadCpu {
                    name: if t.vcpu {
                        format!("vcpu {}", t.tid)
                    } else {
                        format!("{} {}", t.name, t.tid)
                    },
                    cpu_pct: (t.cpu_seconds - before) / dt.max(1e-9) * 100.0,
                    last_cpu: t.last_cpu,
                }
            })
            .collect();
        let table = &r.profile;
        Snapshot {
            state: if ended {
                RunState::Finished
            } else {
                RunState::Running
            },
            info: Info {
                guest: format!(
                    "{} PID {} ({})",
                    r.target.vmm, r.target.pid, r.target.command
                ),
                backend: if r.taps.is_empty() {
                    "no TAP".into()
                } else {
                    format!(
                        "TAP {}",
                        r.taps
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                host_kind: crate::machine::vmm::flavour::Flavour::detect()
                    .name()
                    .into(),
                sampling: self.sampling.clone(),
                profiler_cost_pct: table.profiler_cost_seconds
                    / table.denominator_seconds.max(1e-9)
                    * 100.0,
                elapsed_seconds: r.seconds,
                window_seconds: r.seconds,
                outcome: ended.then(|| {
                    if r.target_exited {
                        "the target exited".to_string()
                    } else {
                        "the duration is up".to_string()
                    }
                }),
                optimizations: "not ours (attached)".into(),
                rolling: false,
            },
            series: self.series.iter().copied().collect(),
            marks: self.marks.clone(),
            threads,
            guest_counters: BTreeMap::new(),
            net: NetFigures {
                frames_from_guest: frames,
                delivered: frames,
                dropped: BTreeMap::new(),
                exits_per_frame: r.exits_per_frame,
            },
            table: table.clone(),
            baseline: self.baseline.clone(),
            transmit_path: None,
            folded: r.folded.clone(),
            console: Vec::new(),
            log: self.log.clone(),
            toggles: Opt::ALL
                .iter()
                .map(|&o| Toggle {
                    opt: o,
                    key: o.key(),
                    on: false,
                    meaning: o.meaning().into(),
                    blocked: Some(format!(
                        "not ours to switch: attached to {} PID {}",
                        r.target.vmm, r.target.pid
                    )),
                    needs: o.needs().into_iter().collect(),
                })
                .collect(),
            forecast: None,
        }
    }
}
