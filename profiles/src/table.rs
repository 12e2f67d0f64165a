//! The overhead table: rows of the taxonomy with share, count, rate and
//! time per event, over a stated denominator, with the unattributed rest as
//! a row of its own and the rows that could not be measured listed apart.

use crate::taxonomy::{Category, PaperTable, Thread, World};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The source of a marker row split between categories by samples: its
/// counts are exact, its times scaled, and it has no percentiles.
pub const SPLIT_BY_SAMPLES: &str = "markers split by samples";

/// A measured interval class, in TSC cycles, as a collector reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// A category key, or `kvm_run` for the undivided time inside KVM_RUN.
    pub key: String,
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
    /// The category key (`kvm_run` for the undivided KVM_RUN time).
    pub category: String,
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
    /// `markers` (exact), `sampling` (an estimate from stack samples) or
    /// `emulate_insn windows` (a share of the sampled emulation time).
    pub source: String,
    /// Samples behind a sampled row.
    pub samples: Option<u64>,
    /// For a marker row: what sampling says of it.
    #[serde(default)]
    pub cross_check: Option<CrossCheck>,
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
    pub fn derived(&self, cat: Category, source: &str) -> Row {
        Row {
            world: Some(cat.world()),
            category: cat.key().into(),
            label: cat.label().into(),
            paper_share_pct: cat.paper_share().map(|(_, s)| s),
            paper_table: cat.paper_share().map(|(t, _)| t),
            source: source.into(),
            cross_check: None,
            ..self.clone()
        }
    }
}

/// A row that could not be measured, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unavailable {
    /// The category key.
    pub category: String,
    /// Why.
    pub reason: String,
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
}

impl Table {
    /// Builds a table from measurements: `tsc_mhz` converts cycles,
    /// `cpu_seconds` (the CPU time of the threads measured, described by
    /// `denominator`) is 100%, `wall_seconds` gives rates. `missing` names
    /// the rows no collector measured, with the reason.
    pub fn from_markers(
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
                let cat = Category::from_key(&m.key);
                let total = us(m.cycles as f64);
                Row {
                    world: cat.map(Category::world),
                    category: m.key.clone(),
                    label: cat
                        .map_or("inside KVM_RUN: guest and VMM, undivided", Category::label)
                        .to_string(),
                    thread: m
                        .thread
                        .unwrap_or(cat.map_or(Thread::Vcpu, Category::thread)),
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
                    paper_share_pct: cat.and_then(Category::paper_share).map(|(_, s)| s),
                    paper_table: cat.and_then(Category::paper_share).map(|(t, _)| t),
                    source: if m.samples.is_some() {
                        "sampling"
                    } else {
                        "markers"
                    }
                    .into(),
                    samples: m.samples,
                    cross_check: None,
                }
            })
            .collect();
        rows.sort_by(|a, b| b.share_pct.total_cmp(&a.share_pct));
        let attributed: f64 = rows.iter().map(|r| r.total_us).sum();
        let rest = cpu_seconds * 1e6 - attributed;
        rows.push(Row {
            world: Some(World::Host),
            category: Category::Unattributed.key().into(),
            label: "CPU time not attributed to any row (negative: time inside KVM_RUN the thread did not spend on a CPU, such as a halted vCPU)".into(),
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
            source: "markers".into(),
            samples: None,
            cross_check: None,
        });
        Table {
            denominator: denominator.into(),
            denominator_seconds: cpu_seconds,
            rows,
            unavailable: missing
                .iter()
                .map(|(c, why)| Unavailable {
                    category: c.key().into(),
                    reason: why.clone(),
                })
                .collect(),
            profiler_cost_seconds: 0.0,
            halted_seconds: 0.0,
            preempted_seconds: None,
            vcpu_marker_seconds: 0.0,
            samples_by_thread: BTreeMap::new(),
            unsampled_threads: BTreeMap::new(),
        }
    }

    /// Puts the rows back in table order after a row was split: largest
    /// share first, the unattributed rest last.
    pub fn sort_rows(&mut self) {
        let rest = Category::Unattributed.key();
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

    /// The row with key `key`.
    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.category == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(key: &str, count: u64, cycles: u64) -> Measured {
        Measured {
            key: key.into(),
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
        let t = Table::from_markers(
            &[
                m("kvm_run", 1000, 600_000_000),
                m("lance_tx", 500, 100_000_000),
            ],
            1000.0,
            (1.0, "test"),
            2.0,
            &[(Category::Iret, "needs sampling".into())],
        );
        let run = t.row("kvm_run").unwrap();
        assert!((run.share_pct - 60.0).abs() < 1e-9);
        assert_eq!(run.world, None);
        let tx = t.row("lance_tx").unwrap();
        assert!((tx.avg_us - 200.0).abs() < 1e-9);
        assert!((tx.rate_per_sec - 250.0).abs() < 1e-9);
        assert_eq!(tx.paper_share_pct, Some(3.3));
        assert_eq!(tx.world, Some(World::Vmapp));
        let rest = t.rows.last().unwrap();
        assert_eq!(rest.category, "unattributed");
        assert!((rest.share_pct - 30.0).abs() < 1e-9);
        assert_eq!(t.unavailable[0].category, "iret");
        assert_eq!(t.rows[0].category, "kvm_run", "largest first");
    }
}
