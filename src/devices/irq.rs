//! Interrupt lines from the device models to whichever controller the VM
//! has: KVM's in-kernel 8259/IOAPIC (`KVM_IRQ_LINE`, or an irqfd) with
//! `kernel-irqchip` on, worldswitch's own 8259 pair ([`super::pic`]) with it
//! off. The only place a device model reaches KVM.

use super::pic::{self, SharedPic};
use crate::profiler::markers;
use kvm_ioctls::VmFd;
use profiles::taxonomy::Category;
use std::io;
use std::sync::Arc;
use vmm_sys_util::eventfd::EventFd;

/// The VM's interrupt controller, as the devices see it.
#[derive(Clone)]
pub enum IrqChip {
    /// KVM's, driven with `KVM_IRQ_LINE`.
    Kernel(Arc<VmFd>),
    /// worldswitch's 8259 pair, injected by the vCPU thread.
    User(SharedPic),
}

impl IrqChip {
    /// Drives ISA line `irq` to `high`.
    pub fn set_level(&self, irq: u32, high: bool) -> io::Result<()> {
        let _m = markers::scope(Category::UserIrq);
        match self {
            IrqChip::Kernel(vm) => vm
                .set_irq_line(irq, high)
                .map_err(|e| io::Error::from_raw_os_error(e.errno())),
            IrqChip::User(p) => {
                pic::lock(p).set_irq(irq, high);
                Ok(())
            }
        }
    }
}

/// An edge-triggered line (the UART's): an irqfd KVM pulses, or a pulse
/// on the user-space controller.
pub enum EdgeIrq {
    /// An eventfd registered as an irqfd.
    Irqfd(EventFd),
    /// A line of the user-space controller, pulsed.
    User(SharedPic, u32),
}

impl vm_superio::Trigger for EdgeIrq {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        match self {
            EdgeIrq::Irqfd(fd) => fd.write(1),
            EdgeIrq::User(p, irq) => {
                pic::lock(p).pulse(*irq);
                Ok(())
            }
        }
    }
}

/// The level of one level-triggered line, changed on the controller only
/// when it changes (a `KVM_IRQ_LINE` per Lance access would cost an ioctl
/// each).
pub struct IrqLine {
    chip: IrqChip,
    irq: u32,
    level: bool,
}

impl IrqLine {
    /// Line `irq` of `chip`, low.
    pub fn new(chip: IrqChip, irq: u32) -> Self {
        Self {
            chip,
            irq,
            level: false,
        }
    }

    /// Drives the line; true when it changed.
    pub fn set(&mut self, level: bool) -> bool {
        if level == self.level {
            return false;
        }
        // A failure leaves the line where it was; the next access retries.
        if self.chip.set_level(self.irq, level).is_ok() {
            self.level = level;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use vm_superio::Trigger;

    #[test]
    fn user_lines_reach_the_user_controller() {
        let p: SharedPic = Arc::new(Mutex::new(pic::Pic::default()));
        for (port, v) in [(0x20, 0x13), (0x21, 32), (0x21, 1), (0x21, 0)] {
            pic::lock(&p).write(port, v);
        }
        let mut line = IrqLine::new(IrqChip::User(p.clone()), 5);
        assert!(line.set(true));
        assert!(!line.set(true), "an unchanged level is not driven again");
        assert!(pic::lock(&p).pending());
        assert_eq!(pic::lock(&p).acknowledge(), 37);
        EdgeIrq::User(p.clone(), 4).trigger().unwrap();
        assert_eq!(pic::lock(&p).acknowledge(), 36);
    }
}
