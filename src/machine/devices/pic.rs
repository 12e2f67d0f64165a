//! The user-space interrupt controller used with `kernel-irqchip` off: two
//! cascaded 8259As (the slave on the master's IRQ 2) and the PIIX edge/level
//! control registers (ELCR, ports 0x4d0-0x4d1). Every mask change, EOI and
//! acknowledge then happens in worldswitch, as with the hosted VMM's virtual
//! PIC in user space; the vCPU thread injects what [`Pic::acknowledge`]
//! returns with `KVM_INTERRUPT`.

use super::bus::{BusAction, PioDevice};
use profiles::taxonomy::Category;
use std::sync::{Arc, Mutex, MutexGuard};

/// The master's command and data ports.
pub const MASTER: u16 = 0x20;
/// The slave's command and data ports.
pub const SLAVE: u16 = 0xa0;
/// The edge/level control registers (master, slave).
pub const ELCR: u16 = 0x4d0;
/// The master input the slave's output drives.
const CASCADE: u8 = 2;

/// One 8259A.
#[derive(Debug, Clone, Default)]
struct Chip {
    irr: u8,
    imr: u8,
    isr: u8,
    /// Input levels as last driven, to see rising edges.
    inputs: u8,
    /// Inputs that are level-triggered (ELCR).
    elcr: u8,
    /// ELCR bits this chip lets the guest set.
    elcr_mask: u8,
    /// Vector of IRQ 0 (ICW2).
    base: u8,
    /// The IRQ with the highest priority (rotation).
    top: u8,
    /// The next data-port write is this ICW (2, 3 or 4), or 0.
    expect_icw: u8,
    single: bool,
    icw4: bool,
    auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    read_isr: bool,
    poll: bool,
    special_mask: bool,
}

impl Chip {
    fn new(elcr_mask: u8) -> Self {
        Self {
            elcr_mask,
            ..Default::default()
        }
    }

    /// Drives input `irq` (0-7).
    fn set_input(&mut self, irq: u8, high: bool) {
        let bit = 1 << irq;
        if self.elcr & bit != 0 {
            // Level-triggered: requested exactly while the line is high.
            if high {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if high && self.inputs & bit == 0 {
            self.irr |= bit;
        }
        if high {
            self.inputs |= bit;
        } else {
            self.inputs &= !bit;
        }
    }

    /// Priority of `irq`: 0 is the highest.
    fn priority(&self, irq: u8) -> u8 {
        irq.wrapping_sub(self.top) & 7
    }

    /// The highest-priority IRQ among `bits`.
    fn highest(&self, bits: u8) -> Option<u8> {
        (0..8)
            .map(|p| (p + self.top) & 7)
            .find(|&irq| bits & (1 << irq) != 0)
    }

    /// The IRQ this chip presents to the CPU (or the master), if any: the
    /// highest unmasked request above everything in service.
    fn output(&self) -> Option<u8> {
        let irq = self.highest(self.irr & !self.imr)?;
        let isr = if self.special_mask {
            self.isr & !self.imr
        } else {
            self.isr
        };
        match self.highest(isr) {
            Some(s) if self.priority(s) <= self.priority(irq) => None,
            _ => Some(irq),
        }
    }

    /// The CPU's acknowledge of `irq`.
    fn ack(&mut self, irq: u8) {
        let bit = 1 << irq;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.top = (irq + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        if self.elcr & bit == 0 {
            self.irr &= !bit;
        }
    }

    fn write_command(&mut self, v: u8) {
        if v & 0x10 != 0 {
            // ICW1: start initialization; level-held requests survive.
            self.irr &= self.elcr & self.inputs;
            self.isr = 0;
            self.imr = 0;
            self.top = 0;
            self.auto_eoi = false;
            self.rotate_on_auto_eoi = false;
            self.read_isr = false;
            self.poll = false;
            self.special_mask = false;
            self.single = v & 0x02 != 0;
            self.icw4 = v & 0x01 != 0;
            self.expect_icw = 2;
        } else if v & 0x08 != 0 {
            // OCW3.
            if v & 0x02 != 0 {
                self.read_isr = v & 0x01 != 0;
            }
            self.poll = v & 0x04 != 0;
            if v & 0x40 != 0 {
                self.special_mask = v & 0x20 != 0;
            }
        } else {
            // OCW2: EOIs and rotation.
            let level = v & 7;
            match v >> 5 {
                0 => self.rotate_on_auto_eoi = false,
                4 => self.rotate_on_auto_eoi = true,
                eoi @ (1 | 5) => {
                    if let Some(irq) = self.highest(self.isr) {
                        self.isr &= !(1 << irq);
                        if eoi == 5 {
                            self.top = (irq + 1) & 7;
                        }
                    }
                }
                eoi @ (3 | 7) => {
                    self.isr &= !(1 << level);
                    if eoi == 7 {
                        self.top = (level + 1) & 7;
                    }
                }
                6 => self.top = (level + 1) & 7,
                _ => {}
            }
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.expect_icw {
            2 => {
                self.base = v & 0xf8;
                self.expect_icw = match (self.single, self.icw4) {
                    (false, _) => 3,
                    (true, true) => 4,
                    (true, false) => 0,
                };
            }
            3 => self.expect_icw = if self.icw4 { 4 } else { 0 },
            4 => {
                self.auto_eoi = v & 0x02 != 0;
                self.expect_icw = 0;
            }
            _ => self.imr = v,
        }
    }

    fn read_command(&mut self) -> u8 {
        if self.poll {
            // The poll command acknowledges what it reports.
            self.poll = false;
            return match self.output() {
                Some(irq) => {
                    self.ack(irq);
                    0x80 | irq
                }
                None => 0,
            };
        }
        if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }
}

/// Counts of what the controller did, for the run's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PicStats {
    /// Interrupts acknowledged (injected into the guest).
    pub acknowledged: u64,
    /// Acknowledges that found nothing to deliver (spurious IRQ 7).
    pub spurious: u64,
}

/// The master and slave 8259A and their ELCR.
#[derive(Debug, Clone)]
pub struct Pic {
    master: Chip,
    slave: Chip,
    stats: PicStats,
}

impl Default for Pic {
    fn default() -> Self {
        // The PIIX ELCR: IRQ 0-2, 8 and 13 are always edge-triggered.
        Self {
            master: Chip::new(0xf8),
            slave: Chip::new(0xde),
            stats: PicStats::default(),
        }
    }
}

impl Pic {
    /// Drives ISA interrupt line `irq` (0-15); other lines are ignored.
    pub fn set_irq(&mut self, irq: u32, high: bool) {
        match irq {
            0..=7 => self.master.set_input(irq as u8, high),
            8..=15 => self.slave.set_input(irq as u8 - 8, high),
            _ => return,
        }
        self.cascade();
    }

    /// A rising then falling edge on `irq`, as an edge-triggered device
    /// (the UART, the timer) signals.
    pub fn pulse(&mut self, irq: u32) {
        self.set_irq(irq, true);
        self.set_irq(irq, false);
    }

    /// The slave's output is the master's IRQ 2, requested while it is
    /// high (so a second slave request is not lost behind the first).
    fn cascade(&mut self) {
        let bit = 1 << CASCADE;
        if self.slave.output().is_some() {
            self.master.irr |= bit;
        } else {
            self.master.irr &= !bit;
        }
    }

    /// Whether the CPU's interrupt input is asserted.
    pub fn pending(&self) -> bool {
        self.master.output().is_some()
    }

    /// The CPU's interrupt acknowledge: the vector to deliver, with the
    /// request moved in service. Nothing pending gives IRQ 7's vector
    /// (a spurious interrupt), as the hardware does.
    pub fn acknowledge(&mut self) -> u8 {
        let vector = match self.master.output() {
            None => {
                self.stats.spurious += 1;
                return self.master.base | 7;
            }
            Some(CASCADE) => {
                self.master.ack(CASCADE);
                match self.slave.output() {
                    Some(irq) => {
                        self.slave.ack(irq);
                        self.slave.base | irq
                    }
                    None => {
                        self.stats.spurious += 1;
                        self.slave.base | 7
                    }
                }
            }
            Some(irq) => {
                self.master.ack(irq);
                self.master.base | irq
            }
        };
        self.stats.acknowledged += 1;
        self.cascade();
        vector
    }

    /// What the controller has done so far.
    pub fn stats(&self) -> PicStats {
        self.stats
    }

    fn chip(&mut self, slave: bool) -> &mut Chip {
        if slave {
            &mut self.slave
        } else {
            &mut self.master
        }
    }

    /// A guest read of `port` (a PIC or ELCR port).
    pub fn read(&mut self, port: u16) -> u8 {
        let v = match port {
            MASTER | SLAVE => self.chip(port == SLAVE).read_command(),
            0x21 | 0xa1 => self.chip(port == 0xa1).imr,
            0x4d0 | 0x4d1 => self.chip(port == 0x4d1).elcr,
            _ => 0xff,
        };
        self.cascade();
        v
    }

    /// A guest write of `v` to `port` (a PIC or ELCR port).
    pub fn write(&mut self, port: u16, v: u8) {
        match port {
            MASTER | SLAVE => self.chip(port == SLAVE).write_command(v),
            0x21 | 0xa1 => self.chip(port == 0xa1).write_data(v),
            0x4d0 | 0x4d1 => {
                let chip = self.chip(port == 0x4d1);
                chip.elcr = v & chip.elcr_mask;
            }
            _ => {}
        }
        self.cascade();
    }
}

/// The controller shared by the bus, the devices that interrupt and the
/// vCPU that injects (all on the vCPU thread but the I/O paths that may
/// raise a line; the lock is uncontended).
pub type SharedPic = Arc<Mutex<Pic>>;

/// Locks `pic`, whatever a panicking holder left.
pub fn lock(pic: &SharedPic) -> MutexGuard<'_, Pic> {
    pic.lock().unwrap_or_else(|e| e.into_inner())
}

/// One of the controller's port pairs on the bus.
pub struct PicPorts {
    pic: SharedPic,
    base: u16,
}

impl PicPorts {
    /// The pair at `base` ([`MASTER`], [`SLAVE`] or [`ELCR`]).
    pub fn new(pic: SharedPic, base: u16) -> Self {
        Self { pic, base }
    }
}

impl PioDevice for PicPorts {
    fn name(&self) -> &'static str {
        "pic"
    }

    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let v = lock(&self.pic).read(self.base + offset);
        data.fill(0);
        data[0] = v;
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        // Byte registers: a wider write sets the byte at the offset.
        lock(&self.pic).write(self.base + offset, data[0]);
        BusAction::None
    }

    fn category(&self, _offset: u16, _write: bool) -> Category {
        Category::UserPic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guest runtime's initialization: vectors 32 and 40, cascade on
    /// IRQ 2, 8086 mode, everything masked but the cascade.
    fn initialized() -> Pic {
        let mut p = Pic::default();
        for (port, v) in [
            (0x20, 0x11),
            (0xa0, 0x11),
            (0x21, 32),
            (0xa1, 40),
            (0x21, 4),
            (0xa1, 2),
            (0x21, 1),
            (0xa1, 1),
            (0x21, 0xfb),
            (0xa1, 0xff),
        ] {
            p.write(port, v);
        }
        p
    }

    #[test]
    fn masked_requests_wait_and_unmasking_delivers_them() {
        let mut p = initialized();
        p.pulse(0);
        assert!(!p.pending(), "IRQ 0 is masked");
        assert_eq!(p.read(0x20) & 1, 1, "but requested (IRR)");
        p.write(0x21, 0xfa);
        assert!(p.pending());
        assert_eq!(p.acknowledge(), 32);
        assert!(!p.pending());
        p.write(0x20, 0x0b); // OCW3: read ISR
        assert_eq!(p.read(0x20), 1);
        p.write(0x20, 0x20); // non-specific EOI
        assert_eq!(p.read(0x20), 0);
        assert_eq!(p.stats().acknowledged, 1);
    }

    #[test]
    fn in_service_blocks_equal_and_lower_priority_until_eoi() {
        let mut p = initialized();
        p.write(0x21, 0xe2); // unmask 0, 2, 3, 4
        p.pulse(4);
        assert_eq!(p.acknowledge(), 36);
        p.pulse(4);
        p.pulse(3);
        assert_eq!(p.acknowledge(), 35, "IRQ 3 outranks IRQ 4 in service");
        assert!(!p.pending(), "IRQ 4 waits behind both");
        p.write(0x20, 0x20); // ends IRQ 3
        assert!(!p.pending(), "IRQ 4 is still in service");
        p.write(0x20, 0x20);
        assert_eq!(p.acknowledge(), 36);
    }

    #[test]
    fn slave_interrupts_come_through_the_cascade_and_need_two_eois() {
        let mut p = initialized();
        p.write(0xa1, 0xf7); // unmask IRQ 11
        p.write(0x4d1, 0x08); // IRQ 11 level-triggered
        p.set_irq(11, true);
        assert!(p.pending());
        assert_eq!(p.acknowledge(), 43);
        assert!(!p.pending(), "in service on both chips");
        p.write(0xa0, 0x20);
        p.write(0x20, 0x20);
        assert!(p.pending(), "a level still high asks again after the EOI");
        p.set_irq(11, false);
        assert!(!p.pending(), "and stops asking when it drops");
    }

    #[test]
    fn edges_are_remembered_but_levels_only_while_high() {
        let mut p = initialized();
        p.write(0x21, 0xe3); // unmask 2, 3, 4
        p.set_irq(3, true);
        p.set_irq(3, false);
        assert!(p.pending(), "an edge stays requested after the line drops");
        assert_eq!(p.acknowledge(), 35);
        p.write(0x20, 0x20);
        p.set_irq(4, true);
        assert_eq!(p.acknowledge(), 36);
        p.write(0x20, 0x20);
        assert!(!p.pending(), "a line held high is one edge, one request");
        p.set_irq(4, false);
        p.write(0x4d0, 0x18 | 0x07); // IRQ 3 and 4 level; 0-2 cannot be
        assert_eq!(p.read(0x4d0), 0x18);
        p.set_irq(3, true);
        p.set_irq(3, false);
        assert!(!p.pending(), "a level that dropped is no longer requested");
    }

    #[test]
    fn nothing_pending_acknowledges_as_spurious_irq7() {
        let mut p = initialized();
        assert_eq!(p.acknowledge(), 39);
        assert_eq!(p.stats().spurious, 1);
        p.write(0x20, 0x0b);
        assert_eq!(p.read(0x20), 0, "a spurious IRQ is not put in service");
    }

    #[test]
    fn auto_eoi_specific_eoi_rotation_and_poll() {
        let mut p = Pic::default();
        for (port, v) in [(0x20, 0x13), (0x21, 64), (0x21, 0x03), (0x21, 0)] {
            p.write(port, v); // single chip, ICW4 with auto-EOI
        }
        p.pulse(5);
        assert_eq!(p.acknowledge(), 69);
        p.write(0x20, 0x0b);
        assert_eq!(p.read(0x20), 0, "auto-EOI leaves nothing in service");
        let mut p = initialized();
        p.write(0x21, 0x00);
        p.pulse(1);
        p.pulse(6);
        p.write(0x20, 0xc5); // set priority: IRQ 5 lowest, 6 highest
        assert_eq!(p.acknowledge(), 38);
        p.write(0x20, 0x66); // specific EOI of IRQ 6
        p.write(0x20, 0x0c); // poll
        assert_eq!(p.read(0x20), 0x81, "the poll reports and acknowledges");
        assert!(!p.pending());
    }

    #[test]
    fn any_access_sequence_leaves_a_controller_that_initializes() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let ports = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1];
        let mut p = Pic::default();
        for _ in 0..100_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let port = ports[(rng % 6) as usize];
            match (rng >> 8) % 4 {
                0 => {
                    p.read(port);
                }
                1 => p.set_irq((rng >> 16) as u32 % 17, rng & 1 << 40 != 0),
                2 => {
                    p.acknowledge();
                }
                _ => p.write(port, (rng >> 24) as u8),
            }
        }
        for (port, v) in [(0x20, 0x11), (0x21, 32), (0x21, 4), (0x21, 1)] {
            p.write(port, v);
        }
        p.write(0x21, 0xfe);
        p.set_irq(0, false); // a line left high has no edge to give
        p.pulse(0);
        assert_eq!(p.acknowledge(), 32);
        assert!(!p.pending());
    }
}
