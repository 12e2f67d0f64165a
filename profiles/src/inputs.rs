//! What the collectors hand the overhead table: marker rows, sampled rows,
//! the emulated-instruction mix and each thread's CPU and off-CPU time, as
//! plain data with no KVM, so the table can be built and tested from
//! constructed inputs.

use crate::taxonomy::{Category, Thread};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One row of a thread's markers, in TSC cycles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarkerRow {
    /// The row: a VMApp leaf, or `kvm_run` for the time inside `KVM_RUN`.
    pub category: Category,
    /// Events.
    pub count: u64,
    /// Total cycles, by the clock (the TSC runs while the thread is off the
    /// CPU too).
    pub cycles: u64,
    /// Median cycles per event (from a power-of-two histogram).
    pub p50_cycles: f64,
    /// 99th percentile cycles per event.
    pub p99_cycles: f64,
}

impl MarkerRow {
    /// The rows of `now` less those of `base`, dropping rows with no events
    /// since (the quantiles stay those of the whole run: histograms are not
    /// subtracted).
    pub fn since(now: &[MarkerRow], base: &[MarkerRow]) -> Vec<MarkerRow> {
        now.iter()
            .map(|m| {
                let b = base.iter().find(|b| b.category == m.category);
                MarkerRow {
                    count: m.count - b.map_or(0, |b| b.count.min(m.count)),
                    cycles: m.cycles - b.map_or(0, |b| b.cycles.min(m.cycles)),
                    ..m.clone()
                }
            })
            .filter(|m| m.count > 0)
            .collect()
    }
}

/// What a thread's markers time by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MarkerClock {
    /// The TSC: cheap, for threads that never sleep inside a scope (the
    /// vCPU); its time off the CPU must be taken out of its rows.
    #[default]
    Tsc,
    /// The thread's CPU clock, in nanoseconds: a system call per scope
    /// edge, for threads with few scopes that sleep between them (the I/O
    /// thread), whose rows are then CPU time exactly.
    ThreadCpuNs,
}

/// A thread whose work markers time: its CPU time, the time it waited
/// runnable, and its marker rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarkedThread {
    /// CPU time (CLOCK_THREAD_CPUTIME_ID), in seconds.
    pub cpu_seconds: f64,
    /// Time runnable but not running (the run delay in
    /// `/proc/thread-self/schedstat`), where the kernel reports it.
    pub run_delay_seconds: Option<f64>,
    /// Its markers.
    pub markers: Vec<MarkerRow>,
    /// What they time by (their `cycles` are nanoseconds of CPU with
    /// [`MarkerClock::ThreadCpuNs`]).
    pub clock: MarkerClock,
}

impl MarkedThread {
    /// This thread's figures less those of `base`.
    pub fn since(&self, base: &MarkedThread) -> MarkedThread {
        MarkedThread {
            cpu_seconds: (self.cpu_seconds - base.cpu_seconds).max(0.0),
            run_delay_seconds: self
                .run_delay_seconds
                .map(|d| (d - base.run_delay_seconds.unwrap_or(0.0)).max(0.0)),
            markers: MarkerRow::since(&self.markers, &base.markers),
            clock: self.clock,
        }
    }
}

/// What the stack sampler saw.
#[derive(Debug, Default, Clone)]
pub struct SampleSummary {
    /// Samples of the vCPU thread.
    pub total: u64,
    /// vCPU samples in a VMM or guest row, by category.
    pub by_category: BTreeMap<Category, u64>,
    /// vCPU samples in worldswitch's own code or kernel work outside
    /// KVM_RUN.
    pub outside_kvm_run: u64,
    /// Records lost in the ring buffers.
    pub lost: u64,
    /// Seconds the vCPU thread was runnable but preempted (switched out
    /// with PERF_RECORD_MISC_SWITCH_OUT_PREEMPT until switched back in).
    pub preempted_seconds: f64,
    /// Times it was preempted.
    pub preemptions: u64,
    /// vCPU samples outside KVM_RUN that rules put in a VMApp row, by row
    /// (the cross-check of the marker shares).
    pub vmapp_by_category: BTreeMap<Category, u64>,
    /// I/O thread samples that rules put in a row, by row (the cross-check
    /// of its markers).
    pub io_by_category: BTreeMap<Category, u64>,
    /// The pv-nic drain thread's samples that rules put in a row, by row
    /// (they split its CPU time).
    pub pv_by_category: BTreeMap<Category, u64>,
    /// Samples of every thread, by its name in the folded stacks.
    pub threads: BTreeMap<String, u64>,
    /// Threads that could not be sampled, and why.
    pub unwatched: BTreeMap<String, String>,
    /// Folded stacks, `thread;world;row;frames...`, with sample counts.
    /// Shared strings: the session keeps a copy of this a second for its
    /// rolling windows, and a stack is long (a kilobyte with Rust frames).
    pub folded: BTreeMap<Arc<str>, u64>,
    /// The sampler thread's own CPU time, in seconds.
    pub cost_seconds: f64,
}

impl SampleSummary {
    /// Samples of `thread`, by its name in the folded stacks.
    pub fn of_thread(&self, thread: Thread) -> u64 {
        self.threads
            .get(thread.sampled_name())
            .copied()
            .unwrap_or(0)
    }

    /// What was sampled since `base`.
    pub fn since(&self, base: &SampleSummary) -> SampleSummary {
        SampleSummary {
            total: self.total.saturating_sub(base.total),
            by_category: counts_since(&self.by_category, &base.by_category),
            outside_kvm_run: self.outside_kvm_run.saturating_sub(base.outside_kvm_run),
            lost: self.lost.saturating_sub(base.lost),
            preempted_seconds: (self.preempted_seconds - base.preempted_seconds).max(0.0),
            preemptions: self.preemptions.saturating_sub(base.preemptions),
            vmapp_by_category: counts_since(&self.vmapp_by_category, &base.vmapp_by_category),
            io_by_category: counts_since(&self.io_by_category, &base.io_by_category),
            pv_by_category: counts_since(&self.pv_by_category, &base.pv_by_category),
            threads: counts_since(&self.threads, &base.threads),
            unwatched: self.unwatched.clone(),
            folded: counts_since(&self.folded, &base.folded),
            cost_seconds: (self.cost_seconds - base.cost_seconds).max(0.0),
        }
    }
}

fn counts_since<K: Ord + Clone>(
    now: &BTreeMap<K, u64>,
    base: &BTreeMap<K, u64>,
) -> BTreeMap<K, u64> {
    now.iter()
        .map(|(k, &v)| {
            (
                k.clone(),
                v.saturating_sub(base.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// The instruction mix the `kvm_emulate_insn` windows saw.
#[derive(Debug, Default, Clone, Serialize)]
pub struct EmulationSummary {
    /// Instructions traced, by class.
    pub ordinary: u64,
    /// See `ordinary`.
    pub privileged: u64,
    /// See `ordinary`.
    pub pio: u64,
    /// See `ordinary`.
    pub iret: u64,
    /// Records the ring buffer lost.
    pub lost: u64,
    /// Windows traced.
    pub windows: u64,
    /// Frames the guest sent inside the windows.
    pub frames_in_windows: u64,
    /// Seconds traced in all.
    pub traced_seconds: f64,
    /// Emulated instructions per second, estimated from the windows.
    pub estimated_per_second: f64,
    /// The collector thread's own CPU time.
    pub cost_seconds: f64,
    /// Port accesses traced (kvm_pio, in-kernel and not), by device.
    pub pio_by_device: BTreeMap<String, u64>,
    /// The same by port: (OUTs, INs).
    pub pio_by_port: BTreeMap<u16, (u64, u64)>,
    /// Why the windows stopped early: the kernel refused to enable one.
    pub refused: Option<String>,
}

impl EmulationSummary {
    /// Instructions traced.
    pub fn total(&self) -> u64 {
        self.ordinary + self.privileged + self.pio + self.iret
    }

    /// Instructions emulated per frame the guest sent, both counted in the
    /// windows (which slow the guest alike); None before a frame went.
    pub fn per_frame(&self) -> Option<f64> {
        (self.frames_in_windows > 0)
            .then(|| (self.total() + self.lost) as f64 / self.frames_in_windows as f64)
    }

    /// The same between `earlier` and this summary.
    pub fn per_frame_since(&self, earlier: &EmulationSummary) -> Option<f64> {
        let frames = self
            .frames_in_windows
            .saturating_sub(earlier.frames_in_windows);
        let insns = (self.total() + self.lost).saturating_sub(earlier.total() + earlier.lost);
        (frames > 0).then(|| insns as f64 / frames as f64)
    }
}

/// The paravirtual NIC's drain thread: its CPU time and the frames it took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PvDrain {
    /// CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Frames it took from the ring.
    pub frames: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(category: Category, count: u64, cycles: u64) -> MarkerRow {
        MarkerRow {
            category,
            count,
            cycles,
            p50_cycles: 1.0,
            p99_cycles: 2.0,
        }
    }

    #[test]
    fn figures_since_a_reset_subtract_the_base() {
        let now = [
            row(Category::KvmRun, 10, 1000),
            row(Category::LanceTx, 4, 40),
        ];
        let base = [row(Category::KvmRun, 3, 100), row(Category::LanceTx, 4, 40)];
        let d = MarkerRow::since(&now, &base);
        assert_eq!(
            d,
            vec![row(Category::KvmRun, 7, 900)],
            "rows with no events go"
        );
        let mut a = SampleSummary::default();
        a.folded.insert("vcpu;x".into(), 5);
        a.folded.insert("vcpu;y".into(), 2);
        a.total = 7;
        let mut b = a.clone();
        b.folded.insert("vcpu;x".into(), 1);
        b.folded.insert("vcpu;y".into(), 2);
        b.total = 3;
        let d = a.since(&b);
        assert_eq!(d.total, 4);
        assert_eq!(d.folded.len(), 1);
        assert_eq!(d.folded["vcpu;x"], 4);
        let t = MarkedThread {
            cpu_seconds: 2.0,
            run_delay_seconds: Some(0.5),
            markers: now.to_vec(),
            clock: MarkerClock::Tsc,
        };
        let since = t.since(&MarkedThread {
            cpu_seconds: 1.5,
            run_delay_seconds: Some(0.25),
            markers: base.to_vec(),
            clock: MarkerClock::Tsc,
        });
        assert_eq!(since.cpu_seconds, 0.5);
        assert_eq!(since.run_delay_seconds, Some(0.25));
    }
}
