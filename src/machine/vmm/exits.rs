//! Exit accounting on the vCPU thread: plain counters bumped once per return
//! from `KVM_RUN`, no allocation or locking on the way.

use serde::Serialize;

/// Accesses to one port that reached user space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortCount {
    /// The port.
    pub port: u16,
    /// OUTs.
    pub outs: u64,
    /// INs.
    pub ins: u64,
}

/// What the vCPU's exits to user space were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExitStats {
    /// Every return from `KVM_RUN`, whatever the reason: the number
    /// `kvm:kvm_userspace_exit` counts.
    pub kvm_run_returns: u64,
    /// Port writes.
    pub io_out: u64,
    /// Port reads.
    pub io_in: u64,
    /// MMIO reads and writes.
    pub mmio: u64,
    /// Returns with EINTR: kicks for commands and the halt watchdog.
    pub interrupted: u64,
    /// Anything else (shutdown, internal error, ...).
    pub other: u64,
    /// HLTs (they exit only with the user-space 8259).
    pub halts: u64,
    /// Interrupt-window exits: the user-space 8259 had an interrupt the
    /// guest could not take at entry.
    pub irq_windows: u64,
    /// Interrupts injected with `KVM_INTERRUPT` (user-space 8259).
    pub interrupts_injected: u64,
    /// Of the port writes, those the exit benchmark's floor loop took.
    pub floor_outs: u64,
    /// Port accesses by port, for ports that saw any, in port order.
    pub ports: Vec<PortCount>,
    /// Accesses to ports no device owns (read as all ones, writes ignored).
    pub unclaimed_port_accesses: u64,
    /// Port writes KVM completed into the coalesced ring (no exit),
    /// replayed in order before the next exit was handled.
    pub coalesced_writes: u64,
    /// Kicks the flusher sent so coalesced transmit kicks go out.
    pub flushes: u64,
    /// Times the adaptive trigger switched send-combining on or off.
    pub combine_switches: u64,
}

/// The live counters; [`ExitCounters::snapshot`] turns them into
/// [`ExitStats`].
pub struct ExitCounters {
    pub(crate) stats: ExitStats,
    outs: Box<[u64]>,
    ins: Box<[u64]>,
}

impl Default for ExitCounters {
    fn default() -> Self {
        Self {
            stats: ExitStats::default(),
            outs: vec![0; 1 << 16].into_boxed_slice(),
            ins: vec![0; 1 << 16].into_boxed_slice(),
        }
    }
}

impl ExitCounters {
    /// One port write reached user space.
    #[inline]
    pub fn out(&mut self, port: u16) {
        self.stats.kvm_run_returns += 1;
        self.stats.io_out += 1;
        self.outs[usize::from(port)] += 1;
    }

    /// One port read reached user space.
    #[inline]
    pub fn inp(&mut self, port: u16) {
        self.stats.kvm_run_returns += 1;
        self.stats.io_in += 1;
        self.ins[usize::from(port)] += 1;
    }

    /// `n` port writes to `port` taken by the floor loop.
    pub fn floor(&mut self, port: u16, n: u64) {
        self.stats.kvm_run_returns += n;
        self.stats.io_out += n;
        self.stats.floor_outs += n;
        self.outs[usize::from(port)] += n;
    }

    /// Any other return from `KVM_RUN`.
    #[inline]
    pub fn count(&mut self, kind: fn(&mut ExitStats) -> &mut u64) {
        self.stats.kvm_run_returns += 1;
        *kind(&mut self.stats) += 1;
    }

    /// The counters so far.
    pub fn snapshot(&self) -> ExitStats {
        let mut s = self.stats.clone();
        s.ports = (0..=u16::MAX)
            .filter_map(|p| {
                let (outs, ins) = (self.outs[usize::from(p)], self.ins[usize::from(p)]);
                (outs + ins > 0).then_some(PortCount { port: p, outs, ins })
            })
            .collect();
        s
    }
}

impl ExitStats {
    /// OUTs and INs to `port`.
    pub fn port(&self, port: u16) -> PortCount {
        self.ports
            .iter()
            .copied()
            .find(|p| p.port == port)
            .unwrap_or(PortCount {
                port,
                outs: 0,
                ins: 0,
            })
    }

    /// The exits between `base` (an earlier snapshot) and these.
    pub fn since(&self, base: &ExitStats) -> ExitStats {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        ExitStats {
            kvm_run_returns: d(self.kvm_run_returns, base.kvm_run_returns),
            io_out: d(self.io_out, base.io_out),
            io_in: d(self.io_in, base.io_in),
            mmio: d(self.mmio, base.mmio),
            interrupted: d(self.interrupted, base.interrupted),
            other: d(self.other, base.other),
            halts: d(self.halts, base.halts),
            irq_windows: d(self.irq_windows, base.irq_windows),
            interrupts_injected: d(self.interrupts_injected, base.interrupts_injected),
            floor_outs: d(self.floor_outs, base.floor_outs),
            ports: self
                .ports
                .iter()
                .map(|p| {
                    let b = base.port(p.port);
                    PortCount {
                        port: p.port,
                        outs: d(p.outs, b.outs),
                        ins: d(p.ins, b.ins),
                    }
                })
                .collect(),
            unclaimed_port_accesses: d(self.unclaimed_port_accesses, base.unclaimed_port_accesses),
            coalesced_writes: d(self.coalesced_writes, base.coalesced_writes),
            flushes: d(self.flushes, base.flushes),
            combine_switches: d(self.combine_switches, base.combine_switches),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_a_kvm_run_return() {
        let mut c = ExitCounters::default();
        c.out(0x3f8);
        c.out(0x3f8);
        c.inp(0x3fd);
        c.floor(0x3008, 10);
        c.count(|s| &mut s.interrupted);
        c.count(|s| &mut s.other);
        let s = c.snapshot();
        assert_eq!(s.kvm_run_returns, 15);
        assert_eq!((s.io_out, s.io_in, s.floor_outs), (12, 1, 10));
        assert_eq!(s.port(0x3f8).outs, 2);
        assert_eq!(s.port(0x3fd).ins, 1);
        assert_eq!(s.port(0x3008).outs, 10);
        assert_eq!(s.port(0x80).outs, 0);
        assert_eq!(s.ports.len(), 3);
    }
}
