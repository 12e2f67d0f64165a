//! Exit dispatch: what one return from `KVM_RUN` does to the machine (the
//! port I/O bus, the exit counters, the coalesced writes), and switching
//! the optimizations between two entries. The run loop in [`super::vcpu`]
//! and the benchmark floor in [`super::floor`] both hand their exits here.

use super::events::Finish;
use super::exits::ExitCounters;
use crate::machine::devices::bus::{BusAction, PioBus};
use crate::machine::devices::pcnet::port::NicHandle;
use crate::machine::devices::pic::SharedPic;
use crate::machine::optimizations::in_kernel::InKernel;
use crate::machine::optimizations::{Opt, Opts, Preset};
use crate::profiler::markers;
use kvm_ioctls::VcpuExit;
use profiles::taxonomy::Category;
use vm_memory::GuestMemoryMmap;

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

/// What the run loop does after an exit.
#[derive(Debug)]
pub(crate) enum Flow {
    Continue,
    Finish(Finish),
    Interrupted,
    /// The guest halted (only with the user-space 8259: with KVM's, HLT
    /// stays in the kernel).
    Halt,
    TripleFault,
    InternalError,
}

/// Everything an exit may touch except the vCPU fd itself.
pub(crate) struct Machine {
    pub(crate) bus: PioBus,
    pub(crate) counters: ExitCounters,
    pub(crate) memory: GuestMemoryMmap,
    pub(crate) floor: Option<FloorSchedule>,
    pub(crate) in_floor_phase: bool,
    /// The NIC's writes completed in KVM, once set up.
    pub(crate) in_kernel: Option<InKernel>,
    /// The user-space 8259, with `kernel-irqchip` off.
    pub(crate) pic: Option<SharedPic>,
    /// The NIC, which replays its coalesced writes.
    pub(crate) nic: Option<NicHandle>,
}

impl Machine {
    /// Dispatches one return from `KVM_RUN`.
    pub(crate) fn handle(&mut self, exit: Result<VcpuExit<'_>, kvm_ioctls::Error>) -> Flow {
        let port = match &exit {
            Ok(VcpuExit::IoOut(port, _) | VcpuExit::IoIn(port, _)) => Some(*port),
            _ => None,
        };
        self.replay_coalesced(port);
        let flow = self.dispatch(exit);
        // A kick is polled by the run loop (the floor loop's kicks too).
        if !matches!(flow, Flow::Interrupted)
            && self
                .in_kernel
                .as_ref()
                .is_some_and(InKernel::polls_after_exits)
        {
            self.bus.catch_up();
        }
        flow
    }

    fn dispatch(&mut self, exit: Result<VcpuExit<'_>, kvm_ioctls::Error>) -> Flow {
        match exit {
            Ok(VcpuExit::IoOut(port, data)) => {
                let _m = markers::scope(Category::PioDispatch);
                self.counters.out(port);
                match self.bus.write(port, data) {
                    BusAction::None => Flow::Continue,
                    BusAction::Shutdown(status) => Flow::Finish(Finish::GuestExit(status)),
                    BusAction::PhaseBegin(index) => {
                        self.in_floor_phase = self.floor.is_some_and(|f| f.uses_floor(index));
                        Flow::Continue
                    }
                    BusAction::PhaseEnd(_) => {
                        self.in_floor_phase = false;
                        Flow::Continue
                    }
                }
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                let _m = markers::scope(Category::PioDispatch);
                self.counters.inp(port);
                self.bus.read(port, data);
                Flow::Continue
            }
            Ok(VcpuExit::MmioRead(_, data)) => {
                self.counters.count(|s| &mut s.mmio);
                data.fill(0xff);
                Flow::Continue
            }
            Ok(VcpuExit::MmioWrite(..)) => {
                self.counters.count(|s| &mut s.mmio);
                Flow::Continue
            }
            Ok(VcpuExit::Hlt) => {
                self.counters.count(|s| &mut s.halts);
                Flow::Halt
            }
            Ok(VcpuExit::IrqWindowOpen) => {
                self.counters.count(|s| &mut s.irq_windows);
                Flow::Continue
            }
            Ok(VcpuExit::Shutdown) => {
                self.counters.count(|s| &mut s.other);
                Flow::TripleFault
            }
            Ok(VcpuExit::InternalError) => {
                self.counters.count(|s| &mut s.other);
                Flow::InternalError
            }
            Ok(other) => {
                self.counters.count(|s| &mut s.other);
                Flow::Finish(Finish::UnexpectedExit(format!("{other:?}")))
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.counters.count(|s| &mut s.interrupted);
                Flow::Interrupted
            }
            Err(e) => {
                self.counters.count(|s| &mut s.other);
                Flow::Finish(Finish::KvmError(format!("KVM_RUN failed: {e}")))
            }
        }
    }
}

impl Machine {
    /// Applies the port writes KVM logged instead of exiting, in order:
    /// they all happened before the instruction that caused this exit.
    /// Only the NIC's ports are coalesced, and the NIC replays them itself
    /// (the I/O thread may get there first; an exit to the NIC's own
    /// ports replays them under the lock its access takes).
    fn replay_coalesced(&mut self, port: Option<u16>) {
        if let Some(nic) = &self.nic {
            nic.replay_before(port);
        }
    }

    /// The toggles in effect: the NIC's, and the interrupt controller the
    /// VM was built with.
    pub(crate) fn opts_in_effect(&self) -> Opts {
        let mut opts = self
            .in_kernel
            .as_ref()
            .map_or(Preset::Naive.opts(), InKernel::opts);
        opts.set(Opt::KernelIrqchip, self.pic.is_none());
        opts
    }

    /// Switches the optimizations, at a KVM_RUN boundary. The interrupt
    /// controller stays as the VM was built: changing it means a new VM.
    pub(crate) fn optimize(&mut self, mut opts: Opts) -> Option<String> {
        self.replay_coalesced(None);
        let k = self.in_kernel.as_mut()?;
        let kernel_irqchip = self.pic.is_none();
        let mut error = None;
        if opts.get(Opt::KernelIrqchip) != kernel_irqchip {
            error = Some(format!(
                "kernel-irqchip stays {} in this VM: switching it restarts the guest",
                if kernel_irqchip { "on" } else { "off" }
            ));
            opts.set(Opt::KernelIrqchip, kernel_irqchip);
        }
        let notify = opts.get(Opt::IrqNotify);
        let applied = k.apply(opts).err();
        if let Some(nic) = &self.nic {
            if !nic.use_irqfd(notify) && notify {
                error = error.or(Some(
                    "KVM offers no resampled irqfd here: the I/O thread raises the NIC's line with KVM_IRQ_LINE".into(),
                ));
            }
        }
        applied.or(error)
    }
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
