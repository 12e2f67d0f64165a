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

/// An edge-triggered line (the UART's, the pv-nic's): an irqfd KVM
/// pulses, a pulse through `KVM_IRQ_LINE` from the raising thread, or a
/// pulse on the user-space controller.
pub enum EdgeIrq {
    /// An eventfd registered as an irqfd. KVM injects an ISA line's irqfd
    /// from a kernel worker: one more thread hop.
    Irqfd(EventFd),
    /// A line of KVM's irqchip, pulsed with two `KVM_IRQ_LINE` ioctls in
    /// the raising thread, which also wakes the vCPU.
    Line(Arc<VmFd>, u32),
    /// A line of the user-space controller, pulsed.
    User(SharedPic, u32),
}

impl vm_superio::Trigger for EdgeIrq {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        match self {
            EdgeIrq::Irqfd(fd) => fd.write(1),
            EdgeIrq::Line(vm, irq) => {
                let _m = markers::scope(Category::UserIrq);
                let errno = |e: kvm_ioctls::Error| io::Error::from_raw_os_error(e.errno());
                vm.set_irq_line(*irq, true).map_err(errno)?;
                vm.set_irq_line(*irq, false).map_err(errno)
            }
            EdgeIrq::User(p, irq) => {
                pic::lock(p).pulse(*irq);
                Ok(())
            }
        }
    }
}

/// A level-triggered line raised through an irqfd with a resample eventfd
/// (KVM's irqchip only): KVM holds it asserted until the guest's EOI, then
/// signals `resample`, and whoever watches that asks the device whether to
/// raise it again. Any thread can raise it, none needs an ioctl.
pub struct Resampled {
    /// Written to assert the line.
    pub irqfd: EventFd,
    /// Readable once KVM deasserted the line at an EOI.
    pub resample: EventFd,
    asserted: bool,
}

impl Resampled {
    /// An irqfd pair, already registered with KVM by the caller.
    pub fn new(irqfd: EventFd, resample: EventFd) -> Self {
        Self {
            irqfd,
            resample,
            asserted: false,
        }
    }
}

/// The level of one level-triggered line, changed on the controller only
/// when it changes (a `KVM_IRQ_LINE` per Lance access would cost an ioctl
/// each); or, while [`IrqLine::use_irqfd`] is on, raised through its
/// resampled irqfd.
pub struct IrqLine {
    chip: IrqChip,
    irq: u32,
    level: bool,
    irqfd: Option<Resampled>,
    use_irqfd: bool,
}

impl IrqLine {
    /// Line `irq` of `chip`, low; `irqfd` is its resampled irqfd, where
    /// the controller takes one.
    pub fn new(chip: IrqChip, irq: u32, irqfd: Option<Resampled>) -> Self {
        Self {
            chip,
            irq,
            level: false,
            irqfd,
            use_irqfd: false,
        }
    }

    /// Drives the line; true when it changed. Through the irqfd a low
    /// level waits for the EOI: KVM lowers the line then.
    pub fn set(&mut self, level: bool) -> bool {
        if let Some(r) = self.irqfd.as_mut().filter(|_| self.use_irqfd) {
            if !level || r.asserted {
                return false;
            }
            let _m = markers::scope(Category::UserIrq);
            r.asserted = r.irqfd.write(1).is_ok();
            return r.asserted;
        }
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

    /// KVM lowered the irqfd's line at an EOI; `level` is what the device
    /// wants now. True when the line was raised again.
    pub fn resampled(&mut self, level: bool) -> bool {
        if let Some(r) = self.irqfd.as_mut() {
            let _ = r.resample.read();
            r.asserted = false;
        }
        self.set(level)
    }

    /// The resample eventfd to watch, if the line has an irqfd.
    pub fn resample_fd(&self) -> Option<&EventFd> {
        self.irqfd.as_ref().map(|r| &r.resample)
    }

    /// Raises the line through the irqfd (`on`) or `KVM_IRQ_LINE`, handing
    /// over the current `level`; false when there is no irqfd to use.
    pub fn use_irqfd(&mut self, on: bool, level: bool) -> bool {
        if on && self.irqfd.is_none() {
            return false;
        }
        if on {
            // The ioctl's source goes low; the irqfd's takes over.
            self.set(false);
            self.use_irqfd = true;
        } else {
            // An asserted irqfd source stays until its EOI; the ioctl's
            // source follows the device from here.
            self.use_irqfd = false;
        }
        self.set(level);
        true
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
        let mut line = IrqLine::new(IrqChip::User(p.clone()), 5, None);
        assert!(line.set(true));
        assert!(!line.set(true), "an unchanged level is not driven again");
        assert!(pic::lock(&p).pending());
        assert_eq!(pic::lock(&p).acknowledge(), 37);
        EdgeIrq::User(p.clone(), 4).trigger().unwrap();
        assert_eq!(pic::lock(&p).acknowledge(), 36);
    }
}
