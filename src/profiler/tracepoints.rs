//! Kernel tracepoint counters: tracepoint IDs from tracefs, and perf events
//! that count them on one thread. They prove what KVM did from the kernel's
//! side, independently of worldswitch's own counters. A [`Watch`] is the
//! same event as a wake-up: its descriptor is readable after each hit.

use perf_event::events::Tracepoint;
use perf_event::{Builder, Counter, Sampler};
use std::io;
use std::path::PathBuf;

/// The tracepoint that counts every return from `KVM_RUN` to user space.
pub const USERSPACE_EXIT: &str = "kvm/kvm_userspace_exit";
/// The tracepoint that counts every guest port access, in-kernel or not.
pub const PIO: &str = "kvm/kvm_pio";

/// Where tracefs may be mounted, in order of preference.
const TRACEFS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Why a tracepoint could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// No tracefs mount.
    #[error("tracefs is not mounted: mount it with 'mount -t tracefs nodev /sys/kernel/tracing'")]
    NoTracefs,
    /// The tracepoint does not exist on this kernel.
    #[error("this kernel has no tracepoint {0}")]
    Unknown(String),
    /// tracefs exists but its event IDs are not readable.
    #[error("cannot read the ID of tracepoint {0}: {1}; run as root")]
    Unreadable(String, io::Error),
    /// perf_event_open refused.
    #[error("perf events refused to count {0}: {1}; run as root or lower /proc/sys/kernel/perf_event_paranoid")]
    Open(String, io::Error),
}

/// The tracefs mount point, if any.
pub fn tracefs() -> Option<PathBuf> {
    TRACEFS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// The ID of tracepoint `name` ("kvm/kvm_userspace_exit").
pub fn id(name: &str) -> Result<u64, TraceError> {
    let base = tracefs().ok_or(TraceError::NoTracefs)?;
    let path = base.join("events").join(name).join("id");
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => TraceError::Unknown(name.to_string()),
        _ => TraceError::Unreadable(name.to_string(), e),
    })?;
    text.trim()
        .parse()
        .map_err(|_| TraceError::Unknown(name.to_string()))
}

/// Counters for a set of tracepoints on one thread.
pub struct ThreadCounters {
    counters: Vec<(String, Counter)>,
}

impl ThreadCounters {
    /// Starts counting each of `names` on thread `tid`.
    pub fn open(tid: libc::pid_t, names: &[&str]) -> Result<Self, TraceError> {
        Self::open_filtered(tid, names, None)
    }

    /// Starts counting each of `names` on thread `tid`, only the hits that
    /// pass `filter` (an ftrace filter over the tracepoint's fields, such
    /// as "level == 1"), if given.
    pub fn open_filtered(
        tid: libc::pid_t,
        names: &[&str],
        filter: Option<&str>,
    ) -> Result<Self, TraceError> {
        let mut counters = Vec::with_capacity(names.len());
        for &name in names {
            let mut counter = Builder::new(Tracepoint::with_id(id(name)?))
                .observe_pid(tid)
                .any_cpu()
                .include_kernel()
                .build()
                .map_err(|e| TraceError::Open(name.to_string(), e))?;
            if let Some(f) = filter {
                set_filter(&counter, f).map_err(|e| TraceError::Open(name.to_string(), e))?;
            }
            counter
                .enable()
                .map_err(|e| TraceError::Open(name.to_string(), e))?;
            counters.push((name.to_string(), counter));
        }
        Ok(Self { counters })
    }

    /// The counts so far, by tracepoint name, in the order opened.
    pub fn read(&mut self) -> io::Result<Vec<(String, u64)>> {
        self.counters
            .iter_mut()
            .map(|(name, c)| Ok((name.clone(), c.read()?)))
            .collect()
    }
}

/// One tracepoint on one thread, filtered, as something to wait for: every
/// hit makes [`Watch::fd`] readable (a one-sample ring, woken per sample)
/// until [`Watch::clear`].
pub struct Watch {
    ring: Sampler,
}

impl Watch {
    /// Watches tracepoint `name` on thread `tid`, only the hits that pass
    /// `filter` (as for [`ThreadCounters::open_filtered`]).
    pub fn open(tid: libc::pid_t, name: &str, filter: &str) -> Result<Self, TraceError> {
        let refused = |e| TraceError::Open(name.to_string(), e);
        let counter = Builder::new(Tracepoint::with_id(id(name)?))
            .observe_pid(tid)
            .any_cpu()
            .include_kernel()
            .sample_period(1)
            .wakeup_events(1)
            .build()
            .map_err(refused)?;
        set_filter(&counter, filter).map_err(refused)?;
        // The smallest ring: the samples are only wake-ups.
        let mut ring = counter.sampled(4096).map_err(refused)?;
        ring.enable().map_err(refused)?;
        Ok(Self { ring })
    }

    /// Readable (POLLIN) once the tracepoint was hit since the last clear.
    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.ring)
    }

    /// Starts (`on`) or stops watching.
    pub fn enable(&mut self, on: bool) -> io::Result<()> {
        if on {
            self.ring.enable()
        } else {
            self.ring.disable()
        }
    }

    /// Consumes the hits so far; returns how many records there were.
    pub fn clear(&mut self) -> u64 {
        let mut n = 0;
        while self.ring.next_record().is_some() {
            n += 1;
        }
        n
    }
}

/// `PERF_EVENT_IOC_SET_FILTER`: `_IOW('$', 6, char *)`.
const SET_FILTER: libc::c_ulong = 0x4008_2406;

/// Sets an ftrace filter on a tracepoint counter.
fn set_filter(counter: &Counter, filter: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let text = std::ffi::CString::new(filter).map_err(io::Error::other)?;
    // SAFETY: the descriptor is a live perf event this counter owns, and
    // the kernel reads the NUL-terminated string only during the call.
    let r = unsafe { libc::ioctl(counter.as_raw_fd(), SET_FILTER, text.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
