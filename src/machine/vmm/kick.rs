//! Kicking the vCPU out of `KVM_RUN`: a real-time signal whose handler sets
//! `kvm_run.immediate_exit`, so a kick that lands outside `KVM_RUN` is not
//! lost: the next entry returns EINTR at once.

use kvm_bindings::kvm_run;
use std::cell::Cell;
use std::ptr;
use std::sync::{Arc, Once, RwLock};

thread_local! {
    /// This thread's `kvm_run` mapping, when it runs a vCPU.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(ptr::null_mut()) };
}

/// The kick signal: the first real-time signal.
pub fn signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: the pointer is this thread's kvm_run mapping, registered by
        // `attach` and valid until `detach`; a volatile byte store is
        // async-signal-safe.
        unsafe { ptr::write_volatile(ptr::addr_of_mut!((*run).immediate_exit), 1) };
    }
}

/// Installs the kick handler for the process (once).
pub fn install() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = vmm_sys_util::signal::register_signal_handler(signal(), on_kick)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()));
    });
    result
}

/// Makes kicks to the calling thread set `run.immediate_exit`.
pub fn attach(run: &mut kvm_run) {
    KVM_RUN.with(|c| c.set(run));
}

/// Stops kicks from touching the mapping (before it is unmapped).
pub fn detach() {
    KVM_RUN.with(|c| c.set(ptr::null_mut()));
}

/// Sleeps until a kick arrives or `timeout` passes, for a vCPU halted in
/// user space. A kick landing just before the sleep is not lost: the signal
/// stays blocked while `immediate_exit` is looked at, and ppoll unblocks it
/// atomically.
pub fn wait(run: &kvm_run, timeout: std::time::Duration) {
    // SAFETY: sigset_t is plain data, initialized by sigemptyset and
    // pthread_sigmask before use; the pointers are valid for each call;
    // ppoll with no descriptors only sleeps.
    unsafe {
        let mut kick_only: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut kick_only);
        libc::sigaddset(&mut kick_only, signal());
        libc::pthread_sigmask(libc::SIG_BLOCK, &kick_only, &mut before);
        if ptr::read_volatile(&run.immediate_exit) == 0 {
            let mut during = before;
            libc::sigdelset(&mut during, signal());
            let ts = libc::timespec {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            };
            libc::ppoll(ptr::null_mut(), 0, &ts, &during);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &before, ptr::null_mut());
    }
}

/// Sends the kick signal to `thread`.
pub fn kick(thread: libc::pthread_t) {
    // SAFETY: pthread_kill with a valid signal number on a thread handle
    // that its owner has not joined yet; failure (thread gone) is harmless.
    unsafe {
        libc::pthread_kill(thread, signal());
    }
}

/// A handle other threads use to kick one vCPU thread; safe to keep after
/// the vCPU is gone (kicks then do nothing). Kickers share a read lock, so
/// a thread kicking often cannot starve another that must kick (a mutex
/// here once let the I/O thread lock out a stop command).
#[derive(Clone)]
pub struct Kicker(Arc<RwLock<Option<libc::pthread_t>>>);

impl Kicker {
    /// A kicker for `thread`.
    pub fn new(thread: libc::pthread_t) -> Self {
        Self(Arc::new(RwLock::new(Some(thread))))
    }

    /// Kicks the vCPU if it is still there.
    pub fn kick(&self) {
        if let Some(t) = *self.0.read().unwrap_or_else(|e| e.into_inner()) {
            kick(t);
        }
    }

    /// Called before the vCPU thread is joined: later kicks do nothing.
    pub fn retire(&self) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
