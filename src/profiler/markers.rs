//! Markers: exact counts and durations per category on the thread that does
//! the work, for the VMApp rows and the time inside `KVM_RUN`. Each thread
//! keeps its own accumulators in a thread-local: no allocation, no lock and
//! no system call per marker, only two TSC reads (a thread that sleeps
//! between few scopes may time its CPU clock instead). Scopes nest, and a
//! category is charged only its exclusive time (a transmit's TAP write is
//! "transmitting via VMNet", not "Lance transmit path").

pub use profiles::inputs::MarkerRow;
use profiles::inputs::{MarkedThread, MarkerClock};
use profiles::taxonomy::Category;
use std::cell::RefCell;

const CATEGORIES: usize = Category::ALL.len();
/// Histogram buckets: powers of two of TSC cycles.
const BUCKETS: usize = 48;
const MAX_DEPTH: usize = 8;

#[derive(Clone, Copy)]
struct Accumulator {
    count: u64,
    cycles: u64,
    hist: [u64; BUCKETS],
}

impl Accumulator {
    const EMPTY: Self = Self {
        count: 0,
        cycles: 0,
        hist: [0; BUCKETS],
    };

    #[inline]
    fn add(&mut self, cycles: u64) {
        self.count += 1;
        self.cycles += cycles;
        let b = (64 - cycles.leading_zeros() as usize).min(BUCKETS - 1);
        self.hist[b] += 1;
    }

    /// Time that belongs to an event counted elsewhere.
    #[inline]
    fn add_time(&mut self, cycles: u64) {
        self.cycles += cycles;
    }

    /// The `q` quantile in cycles, as the geometric middle of its bucket.
    fn quantile(&self, q: f64) -> f64 {
        let target = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, &n) in self.hist.iter().enumerate() {
            seen += n;
            if seen >= target {
                return match b {
                    0 => 0.0,
                    b => 2f64.powf(b as f64 - 0.5),
                };
            }
        }
        0.0
    }
}

struct Frame {
    category: usize,
    start: u64,
    children: u64,
    /// Whether the scope is an event of its row, or time of one counted
    /// by another scope.
    counted: bool,
}

struct Markers {
    rows: [Accumulator; CATEGORIES],
    kvm_run: Accumulator,
    stack: [Frame; MAX_DEPTH],
    depth: usize,
    /// Scopes time the thread's CPU clock (ns), not the TSC.
    cpu_clock: bool,
}

thread_local! {
    /// TSC when KVM_RUN last returned on this thread.
    static LAST_EXIT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// A guest address to stamp with the TSC just before the next entry.
    static REENTRY_STAMP: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    static MARKERS: RefCell<Markers> = const {
        RefCell::new(Markers {
            rows: [Accumulator::EMPTY; CATEGORIES],
            kvm_run: Accumulator::EMPTY,
            stack: [const {
                Frame {
                    category: 0,
                    start: 0,
                    children: 0,
                    counted: true,
                }
            }; MAX_DEPTH],
            depth: 0,
            cpu_clock: false,
        })
    };
}

/// The TSC: the markers' clock.
#[inline]
pub fn now() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The calling thread's CPU clock, in nanoseconds.
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// From now on this thread's scopes time its CPU, not the TSC: for a
/// thread with few scopes a second that sleeps between them (the I/O
/// thread), whose run delay is then mostly waiting to wake, outside any
/// scope, where the table could not tell it from a preempted scope. Two
/// system calls a scope; the vCPU thread's scopes keep the TSC.
pub fn time_cpu_on_this_thread() {
    MARKERS.with(|m| m.borrow_mut().cpu_clock = true);
}

/// The row of `c`: `Category::ALL` lists the variants in declaration
/// order, so the discriminant is the index (no search on the hot path).
#[inline]
fn index(c: Category) -> usize {
    c as usize
}

/// Starts charging `category`; the returned guard stops it.
#[inline]
pub fn scope(category: Category) -> Scope {
    open(category, true)
}

/// Starts charging `category` time that belongs to an event another scope
/// counts (work done early for it); the returned guard stops it.
#[inline]
pub fn scope_uncounted(category: Category) -> Scope {
    open(category, false)
}

#[inline]
fn open(category: Category, counted: bool) -> Scope {
    MARKERS.with(|m| {
        let mut m = m.borrow_mut();
        let start = if m.cpu_clock { cpu_ns() } else { now() };
        let d = m.depth;
        if d < MAX_DEPTH {
            m.stack[d] = Frame {
                category: index(category),
                start,
                children: 0,
                counted,
            };
        }
        m.depth = d + 1;
    });
    Scope(())
}

/// Charges an open scope its exclusive time when dropped.
pub struct Scope(());

impl Drop for Scope {
    #[inline]
    fn drop(&mut self) {
        MARKERS.with(|m| {
            let mut m = m.borrow_mut();
            let end = if m.cpu_clock { cpu_ns() } else { now() };
            let Some(d) = m.depth.checked_sub(1) else {
                return;
            };
            m.depth = d;
            if d >= MAX_DEPTH {
                return;
            }
            let f = &m.stack[d];
            let (cat, elapsed, children) = (f.category, end.saturating_sub(f.start), f.children);
            let own = elapsed.saturating_sub(children);
            if f.counted {
                m.rows[cat].add(own);
            } else {
                m.rows[cat].add_time(own);
            }
            if let Some(parent) = d.checked_sub(1) {
                m.stack[parent].children += elapsed;
            }
        });
    }
}

/// Records one stay inside `KVM_RUN` that ended at `exit`.
#[inline]
pub fn kvm_run(entered: u64, exit: u64) {
    LAST_EXIT.with(|c| c.set(exit));
    MARKERS.with(|m| m.borrow_mut().kvm_run.add(exit.saturating_sub(entered)));
}

/// When `KVM_RUN` last returned on this thread.
#[inline]
pub fn last_exit() -> u64 {
    LAST_EXIT.with(|c| c.get())
}

/// Asks the vCPU loop to stamp guest address `gpa` with the TSC just
/// before it re-enters the guest (transmit-path timing).
pub fn stamp_at_reentry(gpa: u64) {
    REENTRY_STAMP.with(|c| c.set(Some(gpa)));
}

/// The pending re-entry stamp, if any (taken).
#[inline]
pub fn take_reentry_stamp() -> Option<u64> {
    REENTRY_STAMP.with(|c| c.take())
}

/// What this thread's markers have accumulated: the rows with events.
pub fn snapshot() -> Vec<MarkerRow> {
    MARKERS.with(|m| {
        let m = m.borrow();
        let row = |category, a: &Accumulator| MarkerRow {
            category,
            count: a.count,
            cycles: a.cycles,
            p50_cycles: a.quantile(0.5),
            p99_cycles: a.quantile(0.99),
        };
        Category::ALL
            .iter()
            .zip(m.rows.iter())
            .map(|(&c, a)| match c {
                Category::KvmRun => row(c, &m.kvm_run),
                _ => row(c, a),
            })
            .filter(|r| r.count > 0)
            .collect()
    })
}

/// The calling thread as the table sees it: its CPU time, its run delay
/// and its markers.
pub fn this_thread() -> MarkedThread {
    MarkedThread {
        cpu_seconds: super::thread_cpu_seconds(),
        run_delay_seconds: super::run_delay_seconds(),
        markers: snapshot(),
        clock: MARKERS.with(|m| match m.borrow().cpu_clock {
            true => MarkerClock::ThreadCpuNs,
            false => MarkerClock::Tsc,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(cycles: u64) {
        let t = now();
        while now() - t < cycles {}
    }

    fn row(rows: &[MarkerRow], category: Category) -> MarkerRow {
        rows.iter()
            .find(|r| r.category == category)
            .cloned()
            .unwrap()
    }

    #[test]
    fn nested_scopes_charge_exclusive_time() {
        std::thread::spawn(|| {
            for _ in 0..10 {
                let _tx = scope(Category::LanceTx);
                spin(100_000);
                let _write = scope(Category::VmnetTx);
                spin(300_000);
            }
            kvm_run(1000, 2234);
            assert_eq!(last_exit(), 2234);
            let rows = snapshot();
            let (tx, net) = (row(&rows, Category::LanceTx), row(&rows, Category::VmnetTx));
            assert_eq!((tx.count, net.count), (10, 10));
            assert!(net.cycles >= 3_000_000, "{net:?}");
            // The transmit path got its own spin, not the TAP write's.
            assert!(tx.cycles >= 1_000_000 && tx.cycles < 2_500_000, "{tx:?}");
            assert!(
                tx.p50_cycles > 50_000.0 && tx.p50_cycles < 400_000.0,
                "{tx:?}"
            );
            assert_eq!(row(&rows, Category::KvmRun).cycles, 1234);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn category_discriminants_index_all() {
        for (i, &c) in Category::ALL.iter().enumerate() {
            assert_eq!(index(c), i, "{c:?}");
        }
    }

    #[test]
    fn threads_keep_their_own_markers() {
        std::thread::spawn(|| {
            drop(scope(Category::OtherDevices));
            assert_eq!(row(&snapshot(), Category::OtherDevices).count, 1);
        })
        .join()
        .unwrap();
        std::thread::spawn(|| assert!(snapshot().is_empty()))
            .join()
            .unwrap();
    }

    #[test]
    fn deep_nesting_is_bounded_not_fatal() {
        std::thread::spawn(|| {
            let guards: Vec<Scope> = (0..MAX_DEPTH + 4)
                .map(|_| scope(Category::LanceRx))
                .collect();
            drop(guards);
            assert_eq!(row(&snapshot(), Category::LanceRx).count, MAX_DEPTH as u64);
        })
        .join()
        .unwrap();
    }
}
