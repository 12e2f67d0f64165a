//! Transmit-path timing (the paper's Figure 5): a guest registers a slot in
//! its memory through the path port; the host stamps its TSC there at the
//! exit of every transmit kick, around the TAP write, and just before
//! re-entering the guest, and the guest turns the stamps into segments.
//! A write to the port also stamps the exit at once, which is the guest's
//! ping for relating its TSC to the host's.

use super::bus::{le_value, BusAction, PioDevice};
use super::guest_ram::GuestRam;
use crate::profiler::markers;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vm_memory::GuestMemoryMmap;

/// The port (see `abi.h`).
pub const PATH_PORT: u16 = 0x300c;
/// Field offsets in `struct ws_path_slot`.
const HOST_EXIT: u64 = 8;
const TAP_START: u64 = 16;
const TAP_END: u64 = 24;
const REENTRY: u64 = 32;
const STAMPS: u64 = 40;
const SLOT_LEN: u64 = 48;

/// The registered slot's guest address (0: none), shared by the port and
/// the NIC.
pub type SlotAddress = Arc<AtomicU64>;

/// The path port.
pub struct PathPort {
    memory: GuestMemoryMmap,
    slot: SlotAddress,
}

impl PathPort {
    /// A port registering slots in `memory` into `slot`.
    pub fn new(memory: GuestMemoryMmap, slot: SlotAddress) -> Self {
        Self { memory, slot }
    }
}

fn put(memory: &GuestMemoryMmap, at: u64, value: u64) {
    // A slot the guest placed outside its memory is simply not stamped.
    let _ = GuestRam::write(memory, at, &value.to_le_bytes());
}

impl PioDevice for PathPort {
    fn name(&self) -> &'static str {
        "path-timing"
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> BusAction {
        let addr = u64::from(le_value(data));
        let mut probe = [0u8; SLOT_LEN as usize];
        if GuestRam::read(&self.memory, addr, &mut probe).is_ok() {
            self.slot.store(addr, Ordering::Relaxed);
            put(&self.memory, addr + HOST_EXIT, markers::last_exit());
        }
        BusAction::None
    }
}

/// Stamps the exit of a transmit kick and asks for the re-entry stamp.
pub fn stamp_kick(memory: &GuestMemoryMmap, slot: u64) {
    put(memory, slot + HOST_EXIT, markers::last_exit());
    markers::stamp_at_reentry(slot);
}

/// Stamps the TAP write of a kick.
pub fn stamp_tap(memory: &GuestMemoryMmap, slot: u64, start: u64, end: u64) {
    put(memory, slot + TAP_START, start);
    put(memory, slot + TAP_END, end);
}

/// Stamps the re-entry, then counts the kick (last, so a guest that sees
/// the count change sees every stamp).
pub fn stamp_reentry(memory: &GuestMemoryMmap, slot: u64) {
    put(memory, slot + REENTRY, markers::now());
    let mut count = [0u8; 8];
    if GuestRam::read(memory, slot + STAMPS, &mut count).is_ok() {
        put(
            memory,
            slot + STAMPS,
            u64::from_le_bytes(count).wrapping_add(1),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn registers_stamps_and_counts() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        let slot = SlotAddress::default();
        let mut port = PathPort::new(mem.clone(), slot.clone());
        port.write(0, &0x1ff0u32.to_le_bytes()); // runs past the end: refused
        assert_eq!(slot.load(Ordering::Relaxed), 0);
        port.write(0, &0x1000u32.to_le_bytes());
        assert_eq!(slot.load(Ordering::Relaxed), 0x1000);
        stamp_kick(&mem, 0x1000);
        stamp_tap(&mem, 0x1000, 5, 9);
        stamp_reentry(&mem, 0x1000);
        stamp_reentry(&mem, 0x1000);
        let read = |off: u64| mem.read_obj::<u64>(GuestAddress(0x1000 + off)).unwrap();
        assert_eq!((read(TAP_START), read(TAP_END), read(STAMPS)), (5, 9, 2));
        assert!(read(REENTRY) > 0);
    }
}
