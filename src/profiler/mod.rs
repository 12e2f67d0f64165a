//! The profiler's collectors in the app: markers on the threads that do the
//! work (exact counts and durations per category), stack samples of every
//! thread, the emulated-instruction windows, kernel tracepoint counters and
//! each thread's CPU. What they measure becomes a table in `profiles`.

pub mod emulation;
pub mod foreign;
pub mod kallsyms;
pub mod live;
pub mod markers;
pub mod sampler;
pub mod stitch;
/// The CPU use of worldswitch's threads.
pub mod threads;
/// Kernel tracepoint counters through perf events.
pub mod tracepoints;
pub mod user_symbols;

/// The calling thread's CPU time, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// How long the calling thread has waited runnable but not running, in
/// seconds: the run delay in `/proc/thread-self/schedstat`, which needs no
/// privilege; None where the kernel does not report it.
pub fn run_delay_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

/// CPU time the hypervisor under this machine took from all its CPUs so
/// far (the `steal` column of `/proc/stat`), in seconds; None where the
/// kernel does not report it.
pub fn steal_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = text.lines().next()?.strip_prefix("cpu ")?;
    let ticks: u64 = cpu.split_whitespace().nth(7)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Some(ticks as f64 / hz as f64)
}

/// Percent of this machine's CPU time the hypervisor under it took since
/// `since` (a [`steal_seconds`] reading `seconds` ago).
pub fn steal_pct(since: Option<f64>, seconds: f64) -> Option<f64> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Some((steal_seconds()? - since?) / (seconds * cpus).max(1e-9) * 100.0)
}

/// The host TSC's frequency, from two readings of it and of the monotonic
/// clock: taken when started and when asked, at least 20 ms apart (asked
/// sooner, it sleeps the rest). A run starts one as it boots and asks as
/// it reports, measuring over its own length rather than waiting at start.
#[derive(Debug, Clone, Copy)]
pub struct TscClock {
    at: std::time::Instant,
    tsc: u64,
}

impl TscClock {
    /// The shortest measurement.
    const MIN: std::time::Duration = std::time::Duration::from_millis(20);

    /// Starts measuring.
    pub fn start() -> Self {
        Self {
            at: std::time::Instant::now(),
            tsc: tsc(),
        }
    }

    /// MHz from the start to now.
    pub fn mhz(&self) -> f64 {
        if let Some(rest) = Self::MIN.checked_sub(self.at.elapsed()) {
            std::thread::sleep(rest);
        }
        let (now, c) = (std::time::Instant::now(), tsc());
        c.wrapping_sub(self.tsc) as f64 / now.duration_since(self.at).as_secs_f64() / 1e6
    }
}

fn tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures the host TSC rate against CLOCK_MONOTONIC over 20 ms.
pub fn host_tsc_mhz() -> f64 {
    TscClock::start().mhz()
}

/// Drops each of `items` on a thread of its own and waits for them all:
/// unmapping a perf event's ring, or closing a tracepoint's last event,
/// waits for a kernel RCU grace period (35-90 ms each on a nested host),
/// and side by side the waits overlap.
pub fn drop_side_by_side<T: Send>(items: impl IntoIterator<Item = T>) {
    std::thread::scope(|s| {
        for item in items {
            s.spawn(move || drop(item));
        }
    });
}

/// Lowers the calling thread's priority (nice 10), so a collector that
/// falls behind waits for a free core rather than taking the measured
/// threads' (its ring buffers hold the backlog).
pub fn yield_to_measured_threads() {
    // SAFETY: setpriority on the calling thread (who 0) has no memory
    // effects; failure leaves the priority as it was.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
}
