//! Which Lance port writes complete inside KVM: the coalesced zones that
//! match the optimization toggles, the ring they log to and the flusher
//! that keeps transmit kicks from waiting. Changed only on the vCPU thread,
//! between two `KVM_RUN`s, after the ring has been drained, so no write is
//! lost or reordered across a flip.

use super::coalesced::Ring;
use super::flusher::{Flusher, Policy, Reach};
use super::{Opt, Opts, Preset};
use crate::machine::devices::pcnet::registers::{DWIO_BDP, DWIO_RAP, WIO_BDP, WIO_RAP, WIO_RDP};
use crate::machine::vmnet::{LinkCounters, Switches};
use kvm_ioctls::{IoEventAddress, VmFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Transmit kicks send-combining lets wait, at most (the paper's 3).
pub const COMBINE_LIMIT: u32 = 3;
/// How long the first of them may wait.
pub const COMBINE_DELAY: Duration = Duration::from_millis(1);

/// The zones (port offset, length) each toggle wants. Word-mode RDP and
/// both modes' RAP and BDP; a dword RDP write spans the word-mode RAP zone
/// and always exits.
fn zones(opts: Opts) -> Vec<(u16, u32)> {
    let mut z = Vec::new();
    let rap = opts.get(Opt::RapInKernel);
    let data = opts.get(Opt::DataPortInKernel);
    if data && rap {
        // RDP, RAP, RESET (writes ignored) and BDP in one zone.
        z.push((WIO_RDP, 16));
    } else {
        if rap {
            z.push((WIO_RAP, 2));
            z.push((DWIO_RAP, 4));
        }
        if data {
            z.push((WIO_RDP, 2));
            z.push((WIO_BDP, 2));
            z.push((DWIO_BDP, 4));
        }
    }
    z
}

/// The NIC's in-kernel completion.
pub struct InKernel {
    vm: Arc<VmFd>,
    base: u16,
    ring: Arc<Ring>,
    flusher: Flusher,
    registered: Vec<(u16, u32)>,
    switches: Arc<Switches>,
    opts: Opts,
}

impl InKernel {
    /// Prepares in-kernel completion for the NIC at `base` of the vCPU
    /// whose ring is `ring`, its flusher acting through `reach`; nothing is
    /// registered until [`Self::apply`].
    pub fn new(
        vm: Arc<VmFd>,
        ring: Ring,
        reach: Reach,
        (base, link, switches): (u16, Arc<LinkCounters>, Arc<Switches>),
    ) -> std::io::Result<Self> {
        let ring = Arc::new(ring);
        let flusher = Flusher::start(ring.clone(), reach, base, link)?;
        Ok(Self {
            vm,
            base,
            ring,
            flusher,
            registered: Vec::new(),
            switches,
            opts: Preset::Naive.opts(),
        })
    }

    /// The ring to drain before each exit.
    pub fn ring(&self) -> Arc<Ring> {
        self.ring.clone()
    }

    /// The toggles in effect.
    pub fn opts(&self) -> Opts {
        self.opts
    }

    /// Kicks the flusher has sent.
    pub fn flushes(&self) -> u64 {
        self.flusher.kicks()
    }

    /// Times the adaptive trigger switched combining.
    pub fn combine_switches(&self) -> u64 {
        self.flusher.switches()
    }

    /// Registers the zones `opts` wants and drops the others. The caller
    /// has drained the ring. On failure the previous zones stay.
    pub fn apply(&mut self, opts: Opts) -> Result<(), String> {
        let want = zones(opts);
        let addr = |off: u16| IoEventAddress::Pio(u64::from(self.base + off));
        for &(off, len) in self.registered.iter().filter(|z| !want.contains(z)) {
            let _ = self.vm.unregister_coalesced_mmio(addr(off), len);
        }
        self.registered.retain(|z| want.contains(z));
        for &(off, len) in &want {
            if self.registered.contains(&(off, len)) {
                continue;
            }
            if let Err(e) = self.vm.register_coalesced_mmio(addr(off), len) {
                // Leave a consistent state: what was registered before.
                for &(o, l) in &self.registered {
                    let _ = self.vm.unregister_coalesced_mmio(addr(o), l);
                }
                self.registered.clear();
                let previous = self.opts;
                self.opts = Preset::Naive.opts();
                let _ = self.apply(previous);
                return Err(format!(
                    "KVM refused a coalesced port I/O zone at {:#x} ({e}); the Lance ports keep exiting",
                    self.base + off
                ));
            }
            self.registered.push((off, len));
        }
        self.flusher.set(
            match (
                opts.get(Opt::DataPortInKernel),
                opts.get(Opt::SendCombining),
            ) {
                (false, _) => Policy::Idle,
                (true, false) => Policy::Immediate,
                (true, true) => Policy::Combine {
                    limit: COMBINE_LIMIT,
                    delay: COMBINE_DELAY,
                    adaptive: opts.get(Opt::AdaptiveCombining),
                },
            },
        );
        self.switches
            .poll_rx
            .store(!opts.get(Opt::IrqNotify), Ordering::Relaxed);
        // The drain thread writes it into the guest's ring header; the
        // guest moves its transmit path when it next sends.
        self.switches
            .pv_want
            .store(opts.get(Opt::PvNic), Ordering::Relaxed);
        self.opts = opts;
        Ok(())
    }

    /// Whether the NIC must look at the host after every exit (irq-notify
    /// off).
    pub fn polls_after_exits(&self) -> bool {
        !self.opts.get(Opt::IrqNotify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_follow_the_toggles() {
        assert!(zones(Preset::Naive.opts()).is_empty());
        assert_eq!(zones(Preset::Baseline.opts()), [(0x12, 2), (0x14, 4)]);
        assert_eq!(zones(Preset::Paper.opts()), [(0x10, 16)]);
        let mut data_only = Preset::Naive.opts();
        data_only.set(Opt::DataPortInKernel, true);
        assert_eq!(zones(data_only), [(0x10, 2), (0x16, 2), (0x1c, 4)]);
    }
}
