//! The port I/O bus: a range map from I/O ports to the devices that own them.

use crate::profiler::emulation::PortMap;
use crate::profiler::markers;
use profiles::taxonomy::Category;
use std::fmt;

/// What a device asks of the VMM after an access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAction {
    /// Nothing: resume the guest.
    None,
    /// The guest asked to stop with this status.
    Shutdown(u32),
    /// The guest began the phase with this index (mailbox).
    PhaseBegin(u64),
    /// The guest ended the phase with this index (mailbox).
    PhaseEnd(u64),
}

/// A device on the port I/O bus. Offsets are relative to the base of the
/// range the device was inserted at; `data` is 1, 2 or 4 bytes, little endian.
pub trait PioDevice: Send {
    /// A short name for errors and statistics.
    fn name(&self) -> &'static str;
    /// The guest reads `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u16, data: &mut [u8]);
    /// The guest writes `data` at `offset`.
    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction;
    /// Work that waits for the vCPU thread (frames from the host, timer
    /// deadlines), done after exits and when the vCPU is kicked.
    fn catch_up(&mut self) {}
    /// The family its port accesses are counted under (the profiler's
    /// port groups): its name, unless it is part of a larger device.
    fn group(&self) -> &'static str {
        self.name()
    }
    /// The profile row an access at `offset` is charged to.
    fn category(&self, _offset: u16, _write: bool) -> Category {
        Category::OtherDevices
    }
    /// A guest IN, timed under its row. A device whose row depends on its
    /// state overrides this to look at the state once per access.
    fn timed_read(&mut self, offset: u16, data: &mut [u8]) {
        let _m = markers::scope(self.category(offset, false));
        self.read(offset, data)
    }
    /// A guest OUT, timed under its row (see [`PioDevice::timed_read`]).
    fn timed_write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        let _m = markers::scope(self.category(offset, true));
        self.write(offset, data)
    }
}

/// Errors building a bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// A range that is empty or runs past port 0xFFFF.
    #[error("port range {base:#x}+{len} is empty or runs past port 0xffff")]
    BadRange {
        /// The first port.
        base: u16,
        /// How many.
        len: u16,
    },
    /// Two devices claim the same port.
    #[error("ports {base:#x}+{len} of {new} overlap {existing}")]
    Overlap {
        /// The first port of the new range.
        base: u16,
        /// How many.
        len: u16,
        /// The device being inserted.
        new: &'static str,
        /// The device that has the ports.
        existing: &'static str,
    },
}

struct Range {
    base: u16,
    len: u16,
    device: usize,
}

/// Ports to devices. Lookups are a binary search over sorted, disjoint
/// ranges; a port no device owns reads as all ones and ignores writes, as an
/// unclaimed ISA port does.
#[derive(Default)]
pub struct PioBus {
    ranges: Vec<Range>,
    devices: Vec<Box<dyn PioDevice>>,
    unclaimed: u64,
}

impl fmt::Debug for PioBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for r in &self.ranges {
            list.entry(&format_args!(
                "{:#06x}+{} {}",
                r.base,
                r.len,
                self.devices[r.device].name()
            ));
        }
        list.finish()
    }
}

impl PioBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bus's ports by device family.
    pub fn port_map(&self) -> PortMap {
        let mut map = PortMap::default();
        for r in &self.ranges {
            map.add(r.base, r.len, self.devices[r.device].group());
        }
        map
    }

    /// Gives `device` the ports `ranges` (base, length); offsets seen by the
    /// device are relative to each range's base.
    pub fn insert(
        &mut self,
        device: Box<dyn PioDevice>,
        ranges: &[(u16, u16)],
    ) -> Result<(), BusError> {
        let index = self.devices.len();
        let name = device.name();
        for &(base, len) in ranges {
            if len == 0 || base.checked_add(len - 1).is_none() {
                return Err(BusError::BadRange { base, len });
            }
            let end = u32::from(base) + u32::from(len);
            if let Some(r) = self.ranges.iter().find(|r| {
                u32::from(r.base) < end && u32::from(base) < u32::from(r.base) + u32::from(r.len)
            }) {
                let existing = if r.device == index {
                    name
                } else {
                    self.devices[r.device].name()
                };
                return Err(BusError::Overlap {
                    base,
                    len,
                    new: name,
                    existing,
                });
            }
            self.ranges.push(Range {
                base,
                len,
                device: index,
            });
        }
        self.ranges.sort_by_key(|r| r.base);
        self.devices.push(device);
        Ok(())
    }

    fn find(&self, port: u16) -> Option<(usize, u16)> {
        let i = self.ranges.partition_point(|r| r.base <= port);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        let offset = port - r.base;
        (offset < r.len).then_some((r.device, offset))
    }

    /// A guest IN.
    pub fn read(&mut self, port: u16, data: &mut [u8]) {
        match self.find(port) {
            Some((dev, offset)) => self.devices[dev].timed_read(offset, data),
            None => {
                self.unclaimed += 1;
                data.fill(0xff);
            }
        }
    }

    /// A guest OUT.
    pub fn write(&mut self, port: u16, data: &[u8]) -> BusAction {
        match self.find(port) {
            Some((dev, offset)) => self.devices[dev].timed_write(offset, data),
            None => {
                self.unclaimed += 1;
                BusAction::None
            }
        }
    }

    /// Lets every device do the work that waits for the vCPU thread.
    pub fn catch_up(&mut self) {
        let _m = markers::scope(Category::HostEvents);
        for d in &mut self.devices {
            d.catch_up();
        }
    }

    /// Accesses to ports no device owns.
    pub fn unclaimed(&self) -> u64 {
        self.unclaimed
    }
}

/// Little-endian value of an access of 1, 2 or 4 bytes (longer data keeps
/// its low 4 bytes).
pub fn le_value(data: &[u8]) -> u32 {
    let mut bytes = [0u8; 4];
    let n = data.len().min(4);
    bytes[..n].copy_from_slice(&data[..n]);
    u32::from_le_bytes(bytes)
}

/// Fills `data` with the low bytes of `value`, little endian.
pub fn put_le(data: &mut [u8], value: u32) {
    let bytes = value.to_le_bytes();
    for (i, b) in data.iter_mut().enumerate() {
        *b = bytes.get(i).copied().unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<(char, u16, u32)>>>;

    struct Recorder(Log, &'static str);

    impl PioDevice for Recorder {
        fn name(&self) -> &'static str {
            self.1
        }
        fn read(&mut self, offset: u16, data: &mut [u8]) {
            self.0
                .lock()
                .unwrap()
                .push(('r', offset, data.len() as u32));
            put_le(data, 0x1234_5678);
        }
        fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
            self.0.lock().unwrap().push(('w', offset, le_value(data)));
            BusAction::None
        }
    }

    fn bus_with(ranges: &[(u16, u16)]) -> (PioBus, Log) {
        let log = Log::default();
        let mut bus = PioBus::new();
        bus.insert(Box::new(Recorder(log.clone(), "rec")), ranges)
            .unwrap();
        (bus, log)
    }

    #[test]
    fn routes_by_range_with_offsets() {
        let (mut bus, log) = bus_with(&[(0x3f8, 8), (0x100, 2)]);
        bus.write(0x3fb, &[0x80]);
        bus.write(0x101, &[1, 2]);
        let mut d = [0u8; 2];
        bus.read(0x3f8, &mut d);
        assert_eq!(d, [0x78, 0x56]);
        assert_eq!(
            *log.lock().unwrap(),
            vec![('w', 3, 0x80), ('w', 1, 0x0201), ('r', 0, 2)]
        );
    }

    #[test]
    fn unclaimed_ports_read_all_ones_and_are_counted() {
        let (mut bus, log) = bus_with(&[(0x3f8, 8)]);
        let mut d = [0u8; 4];
        bus.read(0x3f7, &mut d);
        assert_eq!(d, [0xff; 4]);
        bus.read(0x400, &mut d);
        assert_eq!(bus.write(0xffff, &[1]), BusAction::None);
        assert_eq!(bus.unclaimed(), 3);
        assert!(log.lock().unwrap().is_empty());
    }

    #[test]
    fn rejects_overlaps_and_bad_ranges() {
        let (mut bus, _) = bus_with(&[(0x3f8, 8)]);
        let log = Log::default();
        let err = bus
            .insert(Box::new(Recorder(log.clone(), "other")), &[(0x3ff, 2)])
            .unwrap_err();
        assert!(matches!(
            err,
            BusError::Overlap {
                existing: "rec",
                ..
            }
        ));
        assert_eq!(
            bus.insert(Box::new(Recorder(log.clone(), "x")), &[(0xffff, 2)]),
            Err(BusError::BadRange {
                base: 0xffff,
                len: 2
            })
        );
        assert!(bus
            .insert(Box::new(Recorder(log, "x")), &[(0xffff, 1)])
            .is_ok());
    }

    #[test]
    fn le_helpers_handle_every_width() {
        assert_eq!(le_value(&[0x12]), 0x12);
        assert_eq!(le_value(&[0x34, 0x12]), 0x1234);
        assert_eq!(le_value(&[1, 2, 3, 4, 5, 6]), 0x0403_0201);
        let mut d = [0u8; 3];
        put_le(&mut d, 0xaabb_ccdd);
        assert_eq!(d, [0xdd, 0xcc, 0xbb]);
    }
}
