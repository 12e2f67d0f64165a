//! The exit benchmark's floor: the least a VMM can do per OUT. It matches
//! only the benchmark port and touches no bus, device, counter or channel
//! until some other exit arrives, which it hands to the normal dispatch.

use super::dispatch::{Flow, Machine};
use crate::machine::devices::mailbox::BENCH_PORT;
use kvm_ioctls::{VcpuExit, VcpuFd};

/// Which phases of `exitbench rounds=N` run on the floor loop: phases come
/// in pairs, and the order inside a pair alternates (ABBA) so drift cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloorSchedule;

impl FloorSchedule {
    /// Whether phase `index` runs on the floor loop.
    pub fn uses_floor(self, index: u64) -> bool {
        let (pair, first) = (index / 2, index.is_multiple_of(2));
        first == pair.is_multiple_of(2)
    }
}

/// Runs the vCPU until an exit other than an OUT to the benchmark port.
pub(crate) fn run(fd: &mut VcpuFd, machine: &mut Machine) -> Flow {
    let mut outs = 0u64;
    let flow = loop {
        match fd.run() {
            Ok(VcpuExit::IoOut(BENCH_PORT, _)) => outs += 1,
            other => break machine.handle(other),
        }
    };
    machine.counters.floor(BENCH_PORT, outs);
    flow
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abba_order_with_one_floor_phase_per_pair() {
        let s = FloorSchedule;
        let order: Vec<bool> = (0..8).map(|i| s.uses_floor(i)).collect();
        assert_eq!(order, [true, false, false, true, true, false, false, true]);
    }
}
