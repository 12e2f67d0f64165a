//! The paravirtual NIC (`pv-nic`): rings in guest memory that host threads
//! serve beside the Lance. Transmit ([`transmit`]): a ring a host thread of
//! its own drains, a doorbell port KVM completes as an ioeventfd (no exit
//! to user space), doorbells suppressed while the host thread is draining,
//! and a completion interrupt only when the guest asks for one.
//! Receive ([`receive`]): buffers the guest posts, which the I/O thread
//! fills straight from the TAP, an interrupt only while the guest is not
//! already polling, and frames kept waiting (not dropped) while the guest
//! has no buffer. The guest finds it by a magic number, registers its
//! rings, and moves each path between the Lance and its ring when the
//! host's `want` word in the ring's header says so. The guest's side of
//! this ABI is `sample-guests/runtime/abi.h`: change both.
//!
//! Ports (32-bit accesses only): `PORT` reads [`MAGIC`]; `PORT + 4` takes
//! the guest-physical address of the transmit ring's header (page-aligned,
//! 0 to unregister); `PORT + 8` is the transmit doorbell; `PORT + 12`
//! registers the receive ring the same way; `PORT + 16` moves receive (1:
//! to the ring, 0: to the Lance; frames already on the old path are there
//! before the OUT completes); `PORT + 20` is the receive doorbell (buffers
//! posted while the host waited for them). A transmit registration takes
//! effect at the drain thread's next look (within 10 ms): until then it
//! may still serve the old ring, so a guest must not reuse that memory
//! sooner.
//!
//! Ring header, little-endian u32 words at the registered address:
//! 0 version (1), 1 `want` (host: 1 = use this ring, 0 = the Lance), 2
//! `prod` (guest: entries posted), 3 `cons` (host: entries consumed or
//! filled), 4 `notify` (transmit: 0 while the host drains and needs no
//! doorbell; receive: 1 while the host waits for buffers), 5 `want_irq`
//! (guest: 1 = interrupt me when `cons` moves), 6 `size` (entries, a
//! power of two up to [`MAX_ENTRIES`]); entries of 16 bytes from byte 64:
//! u64 buffer address, u32 length, u32 flags. Transmit: [`MORE`] means the
//! frame continues in the next entry, as the guest's header buffer and its
//! caller's bytes do, with no copy. Receive: the guest posts a buffer's
//! size as its length; the host writes the frame's length, or
//! [`receive::ERR`] in flags when the frame did not fit.

pub mod receive;
pub mod transmit;

use super::bus::{BusAction, PioDevice};
use crate::machine::vmnet::LinkCounters;
use receive::RxPath;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// The first of the device's ports.
pub const PORT: u16 = 0x3010;
/// Ports it claims.
pub const PORTS: u16 = 24;
/// The transmit doorbell port.
pub const DOORBELL: u16 = PORT + 8;
/// The receive doorbell port.
pub const RX_DOORBELL: u16 = PORT + 20;
/// What `PORT` reads: "WSPV".
pub const MAGIC: u32 = 0x5650_5357;
/// The interrupt of both rings (ISA IRQ 10, edge, pulsed with
/// `KVM_IRQ_LINE` by the thread that raises it).
pub const IRQ: u32 = 10;
/// The largest ring.
pub const MAX_ENTRIES: u32 = 256;
/// A transmit entry's flag: the frame continues in the next entry.
pub const MORE: u32 = 1;
/// Entries one transmitted frame may span.
pub const MAX_CHAIN: u32 = 16;
const HEADER: u64 = 64;
const ENTRY: u64 = 16;
const WANT: u64 = 4;
const PROD: u64 = 8;
const CONS: u64 = 12;
const NOTIFY: u64 = 16;
const WANT_IRQ: u64 = 20;
const SIZE: u64 = 24;

/// A registered ring header's address (0: none), shared by the port and
/// the thread that serves the ring.
pub type Area = Arc<AtomicU64>;

/// A ring header in guest memory, at a registered address.
#[derive(Clone, Copy)]
struct Header<'a> {
    ram: &'a GuestMemoryMmap,
    at: u64,
}

/// One ring entry as the guest wrote it.
struct Entry {
    addr: u64,
    len: u32,
    flags: u32,
}

impl Header<'_> {
    fn load(self, off: u64) -> Option<u32> {
        self.ram
            .load::<u32>(GuestAddress(self.at + off), Ordering::Acquire)
            .ok()
    }

    fn store(self, off: u64, v: u32) {
        let _ = self
            .ram
            .store(v, GuestAddress(self.at + off), Ordering::Release);
    }

    /// Entries in the ring, if the guest set a size it may have.
    fn size(self) -> Option<u32> {
        self.load(SIZE)
            .filter(|s| s.is_power_of_two() && *s <= MAX_ENTRIES)
    }

    fn entry_at(self, slot: u32) -> u64 {
        self.at + HEADER + u64::from(slot) * ENTRY
    }

    fn entry(self, slot: u32) -> Option<Entry> {
        let mut raw = [0u8; 16];
        self.ram
            .read_slice(&mut raw, GuestAddress(self.entry_at(slot)))
            .ok()?;
        Some(Entry {
            addr: u64::from_le_bytes(raw[..8].try_into().unwrap()),
            len: u32::from_le_bytes(raw[8..12].try_into().unwrap()),
            flags: u32::from_le_bytes(raw[12..16].try_into().unwrap()),
        })
    }
}

/// The device's ports on the vCPU thread.
pub struct PvnetPort {
    ram: GuestMemoryMmap,
    tx: Area,
    rx: RxPath,
    link: Arc<LinkCounters>,
    doorbell: Arc<EventFd>,
}

impl PvnetPort {
    /// Ports over `ram`, counting in `link`, registering the transmit ring
    /// at `tx` and the receive ring with `rx`; a transmit doorbell that
    /// reaches user space signals `doorbell` as KVM would.
    pub fn new(
        ram: GuestMemoryMmap,
        tx: Area,
        rx: RxPath,
        link: Arc<LinkCounters>,
        doorbell: Arc<EventFd>,
    ) -> Self {
        Self {
            ram,
            tx,
            rx,
            link,
            doorbell,
        }
    }

    /// Stores `gpa` in `area` if a ring of the largest size fits there.
    fn register(&self, area: &Area, gpa: u64) {
        let fits = |size: u64| {
            gpa.checked_add(size)
                .is_some_and(|end| self.ram.address_in_range(GuestAddress(end - 1)))
        };
        let ok =
            gpa == 0 || (gpa.is_multiple_of(4096) && fits(HEADER + u64::from(MAX_ENTRIES) * ENTRY));
        if ok {
            area.store(gpa, Ordering::Release);
        } else {
            self.link
                .pv
                .bad_registrations
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl PioDevice for PvnetPort {
    fn name(&self) -> &'static str {
        "pvnet"
    }

    fn read(&mut self, offset: u16, data: &mut [u8]) {
        match (offset, data.len()) {
            (0, 4) => data.copy_from_slice(&MAGIC.to_le_bytes()),
            _ => {
                self.link.pv.bad_accesses.fetch_add(1, Ordering::Relaxed);
                data.fill(0xff);
            }
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        let value = match <[u8; 4]>::try_from(data) {
            Ok(b) => u32::from_le_bytes(b),
            Err(_) => {
                self.link.pv.bad_accesses.fetch_add(1, Ordering::Relaxed);
                return BusAction::None;
            }
        };
        let pv = &self.link.pv;
        match offset {
            4 => self.register(&self.tx.clone(), u64::from(value)),
            8 => {
                pv.doorbells_in_user.fetch_add(1, Ordering::Relaxed);
                let _ = self.doorbell.write(1);
            }
            12 => self.register(&self.rx.area(), u64::from(value)),
            16 => self.rx.set_path(value == 1),
            20 => {
                pv.rx_doorbells_in_user.fetch_add(1, Ordering::Relaxed);
                self.rx.ring_doorbell();
            }
            _ => {
                pv.bad_accesses.fetch_add(1, Ordering::Relaxed);
            }
        }
        BusAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::vmnet::{GuestRx, Switches};

    struct NoLance;

    impl GuestRx for NoLance {
        fn deliver(&self, frames: &mut Vec<Vec<u8>>) -> bool {
            frames.clear();
            true
        }
        fn resample_fd(&self) -> Option<std::os::fd::RawFd> {
            None
        }
        fn resampled(&self) {}
    }

    #[test]
    fn registrations_must_fit_in_ram() {
        let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let link = Arc::new(LinkCounters::default());
        let rx = RxPath::new(
            ram.clone(),
            Box::new(NoLance),
            Arc::new(crate::machine::devices::irq::EdgeIrq::Irqfd(
                EventFd::new(0).unwrap(),
            )),
            link.clone(),
            Arc::new(Switches::default()),
        )
        .unwrap();
        let tx = Area::default();
        let mut port = PvnetPort::new(
            ram,
            tx.clone(),
            rx.clone(),
            link.clone(),
            Arc::new(EventFd::new(0).unwrap()),
        );
        for bad in [0x10001u32, (1 << 20) - 4096, !0xfffu32] {
            port.write(4, &bad.to_le_bytes());
            port.write(12, &bad.to_le_bytes());
        }
        port.write(4, &[1]);
        assert_eq!(link.pv.bad_registrations.load(Ordering::Relaxed), 6);
        assert_eq!(link.pv.bad_accesses.load(Ordering::Relaxed), 1);
        assert_eq!(tx.load(Ordering::Relaxed), 0);
        assert_eq!(rx.area().load(Ordering::Relaxed), 0);
        port.write(12, &0x10000u32.to_le_bytes());
        assert_eq!(rx.area().load(Ordering::Relaxed), 0x10000);
        let mut magic = [0u8; 4];
        port.read(0, &mut magic);
        assert_eq!(u32::from_le_bytes(magic), MAGIC);
    }
}
