//! The coalesced I/O ring: the page KVM appends port writes to instead of
//! exiting, for the zones registered with KVM_REGISTER_COALESCED_MMIO. The
//! NIC drains it, in order, under its lock: the vCPU thread before it
//! handles an exit, the I/O thread before it delivers frames. The flusher
//! thread peeks at it to decide when to kick.
//!
//! Mapped here rather than through kvm-ioctls' `coalesced_mmio_read`: that
//! ties the ring to `&mut VcpuFd`, which an exit's data still borrows when
//! the ring must be drained, and another thread must be able to look at it
//! while the vCPU runs.

use crate::machine::devices::host::WriteLog;
use kvm_bindings::{kvm_coalesced_mmio, KVM_COALESCED_MMIO_PAGE_OFFSET};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

/// Bytes of the ring header (`first`, `last`).
const HEADER: usize = 8;
const ENTRY: usize = std::mem::size_of::<kvm_coalesced_mmio>();

/// One logged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    /// The port (or address) written.
    pub port: u16,
    /// Bytes written (1 to 8).
    pub len: usize,
    /// The bytes.
    pub data: [u8; 8],
}

impl Write {
    /// The bytes written.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// The mapped ring of one vCPU.
pub struct Ring {
    base: *mut u8,
    size: usize,
    entries: u32,
}

// SAFETY: the ring is shared memory the kernel writes to concurrently by
// design; `first` and `last` are accessed atomically. Only a holder of the
// NIC's lock advances `first` (`drain`: the vCPU thread or the I/O thread,
// never both at once); `peek` and `is_empty` only read.
unsafe impl Send for Ring {}
// SAFETY: as for Send: shared access goes through the atomic indices, and
// draining is serialized by the NIC's lock.
unsafe impl Sync for Ring {}

impl Ring {
    /// Maps the ring page of the vCPU `fd`.
    pub fn map(fd: RawFd) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a fresh shared mapping of the vCPU fd at the page KVM
        // documents for the coalesced ring; checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                (KVM_COALESCED_MMIO_PAGE_OFFSET as usize * size) as libc::off_t,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Ring {
            base: base.cast(),
            size,
            entries: ((size - HEADER) / ENTRY) as u32,
        })
    }

    fn index(&self, at: usize) -> &AtomicU32 {
        // SAFETY: `first` (0) and `last` (4) are aligned u32s in the page.
        unsafe { &*(self.base.add(at) as *const AtomicU32) }
    }

    fn entry(&self, i: u32) -> Write {
        // SAFETY: `i < entries`, so the entry lies inside the page; the
        // kernel wrote it before publishing `last` (read with Acquire).
        let e: kvm_coalesced_mmio = unsafe {
            std::ptr::read_volatile(self.base.add(HEADER + i as usize * ENTRY) as *const _)
        };
        Write {
            port: e.phys_addr as u16,
            len: (e.len as usize).min(8),
            data: e.data,
        }
    }

    /// Whether no write waits (any thread; a write KVM logs a moment later
    /// is the next drain's).
    pub fn is_empty(&self) -> bool {
        self.index(0).load(Ordering::Acquire) == self.index(4).load(Ordering::Acquire)
    }

    /// Takes every logged write, oldest first, and hands it to `apply`.
    /// Only one thread may drain at a time (the NIC's lock holder).
    /// Returns how many there were.
    pub fn drain(&self, mut apply: impl FnMut(Write)) -> usize {
        let mut n = 0;
        loop {
            let first = self.index(0).load(Ordering::Relaxed);
            let last = self.index(4).load(Ordering::Acquire);
            if first == last || first >= self.entries || last >= self.entries {
                return n;
            }
            let w = self.entry(first);
            self.index(0)
                .store((first + 1) % self.entries, Ordering::Release);
            apply(w);
            n += 1;
        }
    }

    /// Looks at the logged writes without taking them (any thread).
    pub fn peek(&self, mut see: impl FnMut(Write)) -> usize {
        let first = self.index(0).load(Ordering::Acquire);
        let last = self.index(4).load(Ordering::Acquire);
        if first >= self.entries || last >= self.entries {
            return 0;
        }
        let mut i = first;
        let mut n = 0;
        while i != last {
            see(self.entry(i));
            i = (i + 1) % self.entries;
            n += 1;
        }
        n
    }

    /// How many writes the ring holds at most.
    pub fn capacity(&self) -> u32 {
        self.entries - 1
    }
}

impl WriteLog for Ring {
    fn is_empty(&self) -> bool {
        Ring::is_empty(self)
    }

    fn drain_into(&self, apply: &mut dyn FnMut(u16, &[u8])) -> usize {
        self.drain(|w| apply(w.port, w.bytes()))
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.base.cast(), self.size) };
    }
}
