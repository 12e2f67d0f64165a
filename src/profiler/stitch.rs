//! Stacks stitched across worlds (`--stitch`): at each exit to user space
//! the vCPU thread walks the guest's frame pointers from the registers KVM
//! syncs into `kvm_run` (no ioctl) and logs the return addresses with the
//! CLOCK_MONOTONIC interval until the next entry. The sampler puts that
//! guest stack, symbolized against the guest's own ELF and marked
//! `guest:`, in front of the host stacks it sampled during the same
//! interval. Nothing is guessed: a frame that cannot be read ends the walk,
//! and samples outside a logged interval stay unstitched.
//!
//! The walk reads guest memory at the guest-virtual addresses, so it
//! assumes the guest identity-maps its stack and code (our guests map their
//! first GiB so); an address outside guest RAM ends the walk.

use std::sync::Mutex;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Frames walked at most.
pub const MAX_FRAMES: usize = 16;
/// Walks kept (about a third of a second of exits at nettest's rate; the
/// sampler reads every 20 ms).
const KEEP: usize = 8192;

/// One walked exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    /// When KVM_RUN returned (CLOCK_MONOTONIC ns).
    pub from: u64,
    /// When the vCPU entered the guest again (u64::MAX until then).
    pub to: u64,
    /// Frames read.
    pub n: usize,
    /// Guest addresses, leaf (the exit's RIP) first.
    pub addrs: [u64; MAX_FRAMES],
}

/// The log the vCPU writes and the sampler reads.
#[derive(Debug)]
pub struct StitchLog(Mutex<Ring>);

#[derive(Debug)]
struct Ring {
    walks: Vec<Walk>,
    next: usize,
}

/// CLOCK_MONOTONIC now, in ns (the sampler's clock).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Walks the frame-pointer chain from `rip` and `rbp` in `memory`.
pub fn walk(memory: &GuestMemoryMmap, rip: u64, mut rbp: u64, from: u64) -> Walk {
    let mut w = Walk {
        from,
        to: u64::MAX,
        n: 1,
        addrs: [0; MAX_FRAMES],
    };
    w.addrs[0] = rip;
    while w.n < MAX_FRAMES && rbp != 0 && rbp.is_multiple_of(8) {
        let mut pair = [0u8; 16];
        if memory.read_slice(&mut pair, GuestAddress(rbp)).is_err() {
            break;
        }
        let next = u64::from_le_bytes(pair[..8].try_into().unwrap());
        let ret = u64::from_le_bytes(pair[8..].try_into().unwrap());
        if ret == 0 {
            break;
        }
        w.addrs[w.n] = ret;
        w.n += 1;
        // Frames grow down, so callers' frames lie above.
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    w
}

impl Default for StitchLog {
    fn default() -> Self {
        StitchLog(Mutex::new(Ring {
            walks: Vec::with_capacity(KEEP),
            next: 0,
        }))
    }
}

impl StitchLog {
    /// Logs a walk (vCPU thread).
    pub fn push(&self, w: Walk) {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if r.walks.len() < KEEP {
            r.walks.push(w);
        } else {
            let i = r.next;
            r.walks[i] = w;
        }
        r.next = (r.next + 1) % KEEP;
    }

    /// Closes the newest walk's interval at `to` (vCPU thread, at entry).
    pub fn close(&self, to: u64) {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let last = (r.next + KEEP - 1) % KEEP;
        if let Some(w) = r.walks.get_mut(last).filter(|w| w.to == u64::MAX) {
            w.to = to;
        }
    }

    /// The walk whose interval holds `t`, if one was logged.
    pub fn find(&self, t: u64) -> Option<Walk> {
        let r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        r.walks.iter().find(|w| w.from <= t && t <= w.to).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_follow_frame_pointers_and_stop_cleanly() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        // Three frames: 0x8000 -> 0x8100 -> 0x8200 -> 0 (end).
        let frame = |at: u64, next: u64, ret: u64| {
            mem.write_obj(next, GuestAddress(at)).unwrap();
            mem.write_obj(ret, GuestAddress(at + 8)).unwrap();
        };
        frame(0x8000, 0x8100, 0x1111);
        frame(0x8100, 0x8200, 0x2222);
        frame(0x8200, 0, 0x3333);
        let w = walk(&mem, 0x1000, 0x8000, 5);
        assert_eq!(&w.addrs[..w.n], &[0x1000, 0x1111, 0x2222, 0x3333]);
        // A chain that loops or leaves RAM ends the walk.
        frame(0x9000, 0x9000, 0x4444);
        assert_eq!(walk(&mem, 1, 0x9000, 0).n, 2);
        assert_eq!(walk(&mem, 1, 0xfff0_0000, 0).n, 1);
        let log = StitchLog::default();
        log.push(w);
        assert_eq!(log.find(6).map(|w| w.n), Some(4), "open until closed");
        log.close(10);
        assert!(log.find(11).is_none() && log.find(4).is_none());
        assert_eq!(log.find(10).map(|w| w.from), Some(5));
    }
}
