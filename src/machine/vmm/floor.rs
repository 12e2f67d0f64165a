//! The exit benchmark's floor: the least a VMM can do per OUT. It matches
//! only the benchmark port and touches no bus, device, counter or channel
//! until some other exit arrives, which it hands to the normal dispatch.

use super::dispatch::{Flow, Machine};
use crate::machine::devices::mailbox::BENCH_PORT;
use kvm_ioctls::{VcpuExit, VcpuFd};

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
