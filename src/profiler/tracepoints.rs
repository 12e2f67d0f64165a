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
    #[error("tracefs is not mounted: as root, mount it with 'mount -t tracefs nodev /sys/kernel/tracing' (worldswitch run as root mounts it itself)")]
    NoTracefs,
    /// tracefs is mounted, but this user may not read it.
    #[error("tracefs at {0} is mounted but this user may not read it: run worldswitch as root (or let this user read it: 'chmod -R o+rX {0}' as root)")]
    NotReadable(String),
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

/// `TRACEFS_MAGIC` from `linux/magic.h`: what statfs says of a tracefs.
const TRACEFS_MAGIC: i64 = 0x7472_6163;

/// Whether a tracefs is mounted at `path`, readable or not.
fn mounted_at(path: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else {
        return false;
    };
    // SAFETY: a zeroed statfs is a valid out-parameter, and the path is
    // NUL-terminated; both live for the duration of the call.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == TRACEFS_MAGIC
    }
}

/// Why tracefs cannot be read here: not mounted, or not readable by this
/// user (each with its fix).
pub fn missing() -> TraceError {
    match TRACEFS.iter().find(|p| mounted_at(p)) {
        Some(p) => TraceError::NotReadable((*p).to_string()),
        None => TraceError::NoTracefs,
    }
}

/// Mounts tracefs where the kernel expects it when it is missing and we
/// are root, so the first run on a fresh machine has the tracepoint
/// cross-checks. Returns a line to tell the user when it tried: mounted,
/// or why not. Anyone else hears why at the first tracepoint (see
/// [`missing`]).
pub fn mount_if_missing() -> Option<String> {
    if tracefs().is_some() {
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let at = TRACEFS[0];
    if root && !mounted_at(at) {
        let (src, dir, kind) = (c"nodev", std::ffi::CString::new(at).ok()?, c"tracefs");
        // SAFETY: NUL-terminated strings alive for the call, no data.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                dir.as_ptr(),
                kind.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r == 0 && tracefs().is_some() {
            return Some(format!(
                "notice: mounted tracefs at {at} for the kernel tracepoint cross-checks"
            ));
        }
        let e = io::Error::last_os_error();
        return Some(format!(
            "notice: tracefs could not be mounted at {at} ({e}); the kernel tracepoint cross-checks are off"
        ));
    }
    None
}

/// The ID of tracepoint `name` ("kvm/kvm_userspace_exit").
pub fn id(name: &str) -> Result<u64, TraceError> {
    let base = tracefs().ok_or_else(missing)?;
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
    /// Closes the counters side by side (see
    /// [`super::drop_side_by_side`]): closing a tracepoint's last perf
    /// event waits for a kernel grace period.
    pub fn close(self) {
        super::drop_side_by_side(self.counters);
    }

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
