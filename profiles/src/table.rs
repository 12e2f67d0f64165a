//! The overhead table: rows of the taxonomy with share, count, rate and
//! time per event, over a stated denominator, with the unattributed rest as
//! a row of its own and the rows that could not be measured listed apart.

use crate::taxonomy::{Category, PaperTable, Thread, World};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a row was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// Exact: counts and times from markers on the thread doing the work.
    #[serde(rename = "markers")]
    Markers,
    /// An estimate: a thread's CPU time split by its stack samples; counts
    /// and times per event are not known.
    #[serde(rename = "sampling")]
    Sampling,
    /// A share of the sampled emulation time, by the instruction mix the
    /// `kvm_emulate_insn` windows saw.
    #[serde(rename = "emulate_insn windows")]
    EmulationWindows,
    /// A marker row split between categories by samples: its counts are
    /// exact, its times scaled, and it has no percentiles.
    #[serde(rename = "markers split by samples")]
    SplitBySamples,
}

impl Source {
    /// What files and the text report call it.
    pub fn name(self) -> &'static str {
        match self {
            Source::Markers => "markers",
            Source::Sampling => "sampling",
            Source::EmulationWindows => "emulate_insn windows",
            Source::SplitBySamples => "markers split by samples",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A measured interval class, in TSC cycles, as a collector reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The row.
    pub category: Category,
    /// Events.
    pub count: u64,
    /// Total cycles.
    pub cycles: u64,
    /// Median cycles per event.
    pub p50_cycles: f64,
    /// 99th percentile cycles per event.
    pub p99_cycles: f64,
    /// For a row estimated by sampling: its samples (count and times per
    /// event are then not known).
    pub samples: Option<u64>,
    /// The thread measured, when not the category's usual one.
    pub thread: Option<Thread>,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// The world.
    pub world: Option<World>,
    /// The row (`kvm_run` for the undivided KVM_RUN time).
    pub category: Category,
    /// The label.
    pub label: String,
    /// The thread charged.
    pub thread: Thread,
    /// Percent of the denominator.
    pub share_pct: f64,
    /// Events.
    pub count: u64,
    /// Events per second of the run.
    pub rate_per_sec: f64,
    /// Total microseconds.
    pub total_us: f64,
    /// Mean microseconds per event.
    pub avg_us: f64,
    /// Median microseconds per event.
    pub p50_us: f64,
    /// 99th percentile microseconds per event.
    pub p99_us: f64,
    /// The paper's share for the matching row...
    pub paper_share_pct: Option<f64>,
    /// ...and which half of its Table 1 it is a share of.
    pub paper_table: Option<PaperTable>,
    /// How it was measured.
    pub source: Source,
    /// Samples behind a sampled row.
    pub samples: Option<u64>,
    /// For a marker row: what sampling says of it.
    #[serde(default)]
    pub cross_check: Option<CrossCheck>,
    /// Microseconds of CPU per frame, where frames flowed (see
    /// [`Table::per_frame`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub us_per_frame: Option<f64>,
}

/// A marker row's share beside what stack samples of the same thread say.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CrossCheck {
    /// The row's marker time as a share of its thread's CPU time.
    pub marker_share_pct: f64,
    /// The share of that thread's samples the user-space rules put here.
    pub sampled_share_pct: f64,
    /// Those samples.
    pub samples: u64,
}

impl Row {
    /// A row for `cat` carved out of this one (its thread, counts and
    /// rate), measured by `source`; the caller sets the share and times.
    pub fn derived(&self, cat: Category, source: Source) -> Row {
        Row {
            world: cat.world(),
            category: cat,
            label: cat.label().into(),
            paper_share_pct: cat.paper_share().map(|(_, s)| s),
            paper_table: cat.paper_share().map(|(t, _)| t),
            source,
            cross_check: None,
            ..self.clone()
        }
    }
}

/// Which way the frames a ledger divides by went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Datagrams the guest sent that the peer received.
    Transmit,
    /// Datagrams from the host that reached the guest's ring.
    Receive,
}

/// What one frame costs in events, beside the rows' microseconds per
/// frame: the per-frame ledger's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerFrame {
    /// The frames divided by.
    pub frames: u64,
    /// Which way they went.
    pub direction: Direction,
    /// Exits to user space.
    pub exits_to_user: Option<f64>,
    /// Port accesses KVM completed itself.
    pub port_accesses_in_kernel: Option<f64>,
    /// NIC interrupts raised.
    pub interrupts: Option<f64>,
    /// Guest instructions KVM emulated (estimated from the windows).
    pub emulated_instructions: Option<f64>,
    /// Frames written to the backend (the TAP, or the sink).
    pub tap_writes: Option<f64>,
}

/// A row that could not be measured, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unavailable {
    /// The row.
    pub category: Category,
    /// Why.
    pub reason: String,
}

/// A thread's time off the CPU inside the scopes its markers timed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct OffCpu {
    /// Runnable but not running (the thread's run delay, shared out over
    /// the time it was runnable).
    pub preempted_seconds: f64,
    /// Asleep inside a timed scope (a lock, a full queue): the marker time
    /// left over once preemption is out and the rows fill the CPU time.
    pub blocked_seconds: f64,
}

/// The table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Table {
    /// What 100% is.
    pub denominator: String,
    /// CPU seconds of the denominator.
    pub denominator_seconds: f64,
    /// The rows, largest share first; the unattributed rest last.
    pub rows: Vec<Row>,
    /// Rows that could not be measured.
    pub unavailable: Vec<Unavailable>,
    /// CPU seconds the profiler itself spent, shown apart (not part of the
    /// denominator).
    pub profiler_cost_seconds: f64,
    /// Seconds the vCPU spent halted inside KVM_RUN, asleep: time, not CPU
    /// time, so outside the denominator.
    #[serde(default)]
    pub halted_seconds: f64,
    /// Seconds the vCPU thread was runnable but preempted by the host:
    /// time, not its CPU time, so outside the denominator.
    #[serde(default)]
    pub preempted_seconds: Option<f64>,
    /// Time each marker-timed thread spent off the CPU inside its timed
    /// scopes, taken out of its rows (markers time by the clock).
    #[serde(default)]
    pub off_cpu: BTreeMap<Thread, OffCpu>,
    /// Seconds the vCPU thread's markers timed by the TSC, KVM_RUN
    /// included: with the halted and preempted time taken out, an
    /// independent measure of the CPU time the kernel reports.
    #[serde(default)]
    pub vcpu_marker_seconds: f64,
    /// Samples of every worldswitch thread, by its name in the folded
    /// stacks (`vcpu`, `io`, `peer`, `flusher`, `profiler`...): where the
    /// process's CPU went beyond the denominator's threads.
    #[serde(default)]
    pub samples_by_thread: BTreeMap<String, u64>,
    /// Threads the sampler could not watch, and why.
    #[serde(default)]
    pub unsampled_threads: BTreeMap<String, String>,
    /// The per-frame ledger's counts, where frames flowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_frame: Option<PerFrame>,
}

impl Table {
    /// Builds a table from measurements: `tsc_mhz` converts cycles,
    /// `cpu_seconds` (the CPU time of the threads measured, described by
    /// `denominator`) is 100%, `wall_seconds` gives rates. `missing` names
    /// the rows no collector measured, with the reason. The rest of the
    /// CPU time is the unattributed row; the caller keeps the measured
    /// rows within `cpu_seconds` (see [`crate::attribution`]).
    pub fn from_measured(
        measured: &[Measured],
        tsc_mhz: f64,
        (cpu_seconds, denominator): (f64, &str),
        wall_seconds: f64,
        missing: &[(Category, String)],
    ) -> Self {
        let us = |cycles: f64| cycles / tsc_mhz.max(1e-9);
        let share = |t_us: f64| t_us / (cpu_seconds.max(1e-12) * 1e6) * 100.0;
        let mut rows: Vec<Row> = measured
            .iter()
            .map(|m| {
                let cat = m.category;
                let total = us(m.cycles as f64);
                Row {
                    world: cat.world(),
                    category: cat,
                    label: cat.label().to_string(),
                    thread: m.thread.unwrap_or(cat.thread()),
                    share_pct: share(total),
                    count: m.count,
                    rate_per_sec: m.count as f64 / wall_seconds.max(1e-9),
                    total_us: total,
                    avg_us: if m.count > 0 {
                        total / m.count as f64
                    } else {
                        0.0
                    },
                    p50_us: us(m.p50_cycles),
                    p99_us: us(m.p99_cycles),
                    paper_share_pct: cat.paper_share().map(|(_, s)| s),
                    paper_table: cat.paper_share().map(|(t, _)| t),
                    source: if m.samples.is_some() {
                        Source::Sampling
                    } else {
                        Source::Markers
                    },
                    samples: m.samples,
                    cross_check: None,
                    us_per_frame: None,
                }
            })
            .collect();
        let attributed: f64 = rows.iter().map(|r| r.total_us).sum();
        let rest = cpu_seconds * 1e6 - attributed;
        let unattributed = Category::Unattributed;
        rows.push(Row {
            world: unattributed.world(),
            category: unattributed,
            label: "CPU time not attributed to any row".into(),
            thread: Thread::Vcpu,
            share_pct: share(rest),
            count: 0,
            rate_per_sec: 0.0,
            total_us: rest,
            avg_us: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            paper_share_pct: None,
            paper_table: None,
            source: Source::Markers,
            samples: None,
            cross_check: None,
            us_per_frame: None,
        });
        let mut table = Table {
            denominator: denominator.into(),
            denominator_seconds: cpu_seconds,
            rows,
            unavailable: missing
                .iter()
                .map(|(c, why)| Unavailable {
                    category: *c,
                    reason: why.clone(),
                })
                .collect(),
            profiler_cost_seconds: 0.0,
            halted_seconds: 0.0,
            preempted_seconds: None,
            off_cpu: BTreeMap::new(),
            vcpu_marker_seconds: 0.0,
            samples_by_thread: BTreeMap::new(),
            unsampled_threads: BTreeMap::new(),
            per_frame: None,
        };
        table.sort_rows();
        table
    }

    /// Adds the per-frame ledger: each row's microseconds of CPU per frame
    /// (they add up to the denominator over the frames) and the events per
    /// frame. No frames, no ledger.
    pub fn per_frame(&mut self, counts: PerFrame) {
        if counts.frames == 0 {
            return;
        }
        let frames = counts.frames as f64;
        for r in &mut self.rows {
            r.us_per_frame = Some(r.total_us / frames);
        }
        self.per_frame = Some(counts);
    }

    /// Puts the rows back in table order after a row was split: largest
    /// share first, the unattributed rest last.
    pub fn sort_rows(&mut self) {
        let rest = Category::Unattributed;
        self.rows.sort_by(|a, b| {
            (a.category == rest)
                .cmp(&(b.category == rest))
                .then(b.share_pct.total_cmp(&a.share_pct))
        });
    }

    /// Each sampled thread's share of all samples, largest first.
    pub fn thread_shares(&self) -> Vec<(&str, f64)> {
        let total: u64 = self.samples_by_thread.values().sum();
        let mut shares: Vec<(&str, f64)> = self
            .samples_by_thread
            .iter()
            .map(|(name, &n)| (name.as_str(), n as f64 / total.max(1) as f64 * 100.0))
            .collect();
        shares.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        shares
    }

    /// The first (largest) row of `category`.
    pub fn row(&self, category: Category) -> Option<&Row> {
        self.rows.iter().find(|r| r.category == category)
    }

    /// The row of `category` charged to `thread`.
    pub fn row_of(&self, category: Category, thread: Thread) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.category == category && r.thread == thread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(category: Category, count: u64, cycles: u64) -> Measured {
        Measured {
            category,
            count,
            cycles,
            p50_cycles: cycles as f64 / count.max(1) as f64,
            p99_cycles: cycles as f64 / count.max(1) as f64,
            samples: None,
            thread: None,
        }
    }

    #[test]
    fn shares_times_and_the_rest() {
        // 1 GHz TSC, 1 s of CPU over 2 s of wall time.
        let t = Table::from_measured(
            &[
                m(Category::KvmRun, 1000, 600_000_000),
                m(Category::LanceTx, 500, 100_000_000),
            ],
            1000.0,
            (1.0, "test"),
            2.0,
            &[(Category::Iret, "needs sampling".into())],
        );
        let run = t.row(Category::KvmRun).unwrap();
        assert!((run.share_pct - 60.0).abs() < 1e-9);
        assert_eq!(run.world, None);
        let tx = t.row(Category::LanceTx).unwrap();
        assert!((tx.avg_us - 200.0).abs() < 1e-9);
        assert!((tx.rate_per_sec - 250.0).abs() < 1e-9);
        assert_eq!(tx.paper_share_pct, Some(3.3));
        assert_eq!(tx.world, Some(World::Vmapp));
        let rest = t.rows.last().unwrap();
        assert_eq!(rest.category, Category::Unattributed);
        assert!((rest.share_pct - 30.0).abs() < 1e-9);
        assert_eq!(t.unavailable[0].category, Category::Iret);
        assert_eq!(t.rows[0].category, Category::KvmRun, "largest first");
    }

    #[test]
    fn the_ledger_adds_up_to_the_denominator_over_the_frames() {
        let mut t = Table::from_measured(
            &[
                m(Category::KvmRun, 1000, 600_000_000),
                m(Category::LanceTx, 500, 100_000_000),
            ],
            1000.0,
            (1.0, "test"),
            2.0,
            &[],
        );
        let counts = |frames| PerFrame {
            frames,
            direction: Direction::Transmit,
            exits_to_user: Some(6.0),
            port_accesses_in_kernel: None,
            interrupts: Some(1.0),
            emulated_instructions: None,
            tap_writes: Some(1.0),
        };
        t.per_frame(counts(0));
        assert!(t.per_frame.is_none() && t.rows[0].us_per_frame.is_none());
        t.per_frame(counts(4000));
        let sum: f64 = t.rows.iter().filter_map(|r| r.us_per_frame).sum();
        assert!((sum - 1e6 / 4000.0).abs() < 1e-6, "{sum}");
        assert_eq!(t.row(Category::LanceTx).unwrap().us_per_frame, Some(25.0));
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["per_frame"]["direction"], "transmit");
        assert_eq!(json["rows"][0]["us_per_frame"], 150.0);
    }
}
