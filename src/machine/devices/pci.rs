//! PCI configuration space through ports 0xCF8/0xCFC (configuration
//! mechanism #1), with the VMM acting as firmware: BARs and the interrupt
//! line are assigned before the guest starts.

use super::bus::{le_value, put_le, BusAction, PioDevice};

/// The configuration address port; the data window follows at 0xCFC.
pub const CONFIG_BASE: u16 = 0xcf8;
/// Ports the configuration mechanism occupies.
pub const CONFIG_LEN: u16 = 8;

const COMMAND: usize = 0x04;
const BAR0: usize = 0x10;
const INTERRUPT_LINE: usize = 0x3c;
const INTERRUPT_PIN: usize = 0x3d;
/// Command register bits the guest may change: I/O, memory, bus master,
/// parity and SERR responses, interrupt disable.
const COMMAND_WRITABLE: u16 = 0x0547;

/// What a base address register decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O space.
    Io,
    /// 32-bit memory space.
    Memory32,
}

/// A base address register: its kind, size (a power of two) and the address
/// the firmware gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// I/O or memory.
    pub kind: BarKind,
    /// Size in bytes, a power of two.
    pub size: u32,
    /// Assigned address.
    pub address: u32,
}

/// One PCI function's identity and resources.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Device number on bus 0.
    pub device: u8,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device_id: u16,
    /// Revision.
    pub revision: u8,
    /// Class code, subclass and programming interface.
    pub class: u32,
    /// Header fields at 0x3E/0x3F: MIN_GNT and MAX_LAT.
    pub min_gnt_max_lat: (u8, u8),
    /// BARs, in order from BAR0.
    pub bars: Vec<Bar>,
    /// Interrupt pin (1 = INTA#) and line, or None for no interrupt.
    pub interrupt: Option<(u8, u8)>,
}

struct Function {
    device: u8,
    config: [u8; 256],
    bars: Vec<Bar>,
}

impl Function {
    fn new(spec: &FunctionSpec) -> Self {
        let mut c = [0u8; 256];
        c[0..2].copy_from_slice(&spec.vendor.to_le_bytes());
        c[2..4].copy_from_slice(&spec.device_id.to_le_bytes());
        // Status: medium DEVSEL timing, fast back-to-back capable.
        c[6..8].copy_from_slice(&0x0280u16.to_le_bytes());
        c[8] = spec.revision;
        c[9..12].copy_from_slice(&spec.class.to_le_bytes()[..3]);
        if let Some((pin, line)) = spec.interrupt {
            c[INTERRUPT_LINE] = line;
            c[INTERRUPT_PIN] = pin;
        }
        c[0x3e] = spec.min_gnt_max_lat.0;
        c[0x3f] = spec.min_gnt_max_lat.1;
        let mut f = Self {
            device: spec.device,
            config: c,
            bars: spec.bars.clone(),
        };
        for i in 0..f.bars.len() {
            let value = f.bar_value(i, f.bars[i].address);
            f.set_dword(BAR0 + 4 * i, value);
        }
        f
    }

    fn bar_value(&self, i: usize, address: u32) -> u32 {
        let bar = self.bars[i];
        let mask = !(bar.size - 1);
        match bar.kind {
            BarKind::Io => (address & mask) | 1,
            BarKind::Memory32 => address & mask,
        }
    }

    fn dword(&self, reg: usize) -> u32 {
        le_value(&self.config[reg..reg + 4])
    }

    fn set_dword(&mut self, reg: usize, v: u32) {
        self.config[reg..reg + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Writes `data` at byte `offset`, honouring what is writable.
    fn write(&mut self, offset: usize, data: &[u8]) {
        let reg = offset & !3;
        let shift = (offset & 3) * 8;
        let width_mask = match data.len() {
            1 => 0xff,
            2 => 0xffff,
            _ => 0xffff_ffff,
        } << shift;
        let value = le_value(data) << shift;
        let old = self.dword(reg);
        let merged = (old & !width_mask) | (value & width_mask);
        match reg {
            COMMAND => {
                // Status bits are write-1-to-clear; none are set here.
                let cmd = (old as u16 & !COMMAND_WRITABLE) | (merged as u16 & COMMAND_WRITABLE);
                self.set_dword(reg, (old & 0xffff_0000) | u32::from(cmd));
            }
            0x0c => {
                // Cache line size and latency timer are plain storage.
                let keep = old & 0xffff_0000;
                self.set_dword(reg, keep | (merged & 0xffff));
            }
            r if (BAR0..BAR0 + 24).contains(&r) => {
                let i = (r - BAR0) / 4;
                if i < self.bars.len() {
                    // Writing all ones and reading back gives the size mask.
                    let v = self.bar_value(i, merged);
                    self.set_dword(reg, v);
                }
            }
            INTERRUPT_LINE => {
                let keep = old & 0xffff_ff00;
                self.set_dword(reg, keep | (merged & 0xff));
            }
            _ => {}
        }
    }
}

/// The configuration mechanism and the functions behind it, all on bus 0.
pub struct PciConfigSpace {
    address: u32,
    functions: Vec<Function>,
}

impl PciConfigSpace {
    /// A bus with a host bridge at 00:00.0 and the given functions.
    pub fn new(functions: &[FunctionSpec]) -> Self {
        let bridge = FunctionSpec {
            device: 0,
            vendor: 0x8086,
            device_id: 0x1237, // i440FX, as QEMU's default machine has
            revision: 2,
            class: 0x06_00_00,
            min_gnt_max_lat: (0, 0),
            bars: Vec::new(),
            interrupt: None,
        };
        let functions = std::iter::once(&bridge)
            .chain(functions)
            .map(Function::new)
            .collect();
        Self {
            address: 0,
            functions,
        }
    }

    /// The function the address register selects, if any, and the register.
    fn selected(&mut self) -> Option<(&mut Function, usize)> {
        let a = self.address;
        let enabled = a & 0x8000_0000 != 0;
        let bus = (a >> 16) & 0xff;
        let device = ((a >> 11) & 0x1f) as u8;
        let function = (a >> 8) & 0x7;
        if !enabled || bus != 0 || function != 0 {
            return None;
        }
        let reg = (a & 0xfc) as usize;
        self.functions
            .iter_mut()
            .find(|f| f.device == device)
            .map(|f| (f, reg))
    }
}

impl PioDevice for PciConfigSpace {
    fn name(&self) -> &'static str {
        "pci-config"
    }

    fn group(&self) -> &'static str {
        "pci"
    }

    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let offset = offset as usize;
        if offset < 4 {
            if offset == 0 && data.len() == 4 {
                put_le(data, self.address);
            } else {
                data.fill(0xff);
            }
            return;
        }
        let byte = offset - 4;
        match self.selected() {
            Some((f, reg)) if byte + data.len() <= 4 => {
                let start = reg + byte;
                data.copy_from_slice(&f.config[start..start + data.len()]);
            }
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        let offset = offset as usize;
        if offset < 4 {
            // Only a dword write to 0xCF8 sets the address (as on a PC).
            if offset == 0 && data.len() == 4 {
                self.address = le_value(data) & 0x80ff_fffc;
            }
            return BusAction::None;
        }
        let byte = offset - 4;
        if let Some((f, reg)) = self.selected() {
            if byte + data.len() <= 4 {
                f.write(reg + byte, data);
            }
        }
        BusAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic() -> FunctionSpec {
        FunctionSpec {
            device: 3,
            vendor: 0x1022,
            device_id: 0x2000,
            revision: 0x10,
            class: 0x02_00_00,
            min_gnt_max_lat: (6, 0xff),
            bars: vec![
                Bar {
                    kind: BarKind::Io,
                    size: 32,
                    address: 0xc000,
                },
                Bar {
                    kind: BarKind::Memory32,
                    size: 32,
                    address: 0xfebf_0000,
                },
            ],
            interrupt: Some((1, 11)),
        }
    }

    fn cfg_read(pci: &mut PciConfigSpace, dev: u8, reg: u8, width: usize) -> u32 {
        let addr = 0x8000_0000u32 | (u32::from(dev) << 11) | u32::from(reg & 0xfc);
        pci.write(0, &addr.to_le_bytes());
        let mut data = vec![0u8; width];
        pci.read(4 + u16::from(reg & 3), &mut data);
        le_value(&data)
    }

    fn cfg_write(pci: &mut PciConfigSpace, dev: u8, reg: u8, value: u32, width: usize) {
        let addr = 0x8000_0000u32 | (u32::from(dev) << 11) | u32::from(reg & 0xfc);
        pci.write(0, &addr.to_le_bytes());
        pci.write(4 + u16::from(reg & 3), &value.to_le_bytes()[..width]);
    }

    #[test]
    fn identity_and_firmware_assignments() {
        let mut pci = PciConfigSpace::new(&[nic()]);
        assert_eq!(cfg_read(&mut pci, 0, 0, 4), 0x1237_8086);
        assert_eq!(cfg_read(&mut pci, 3, 0, 4), 0x2000_1022);
        assert_eq!(cfg_read(&mut pci, 3, 0x08, 4), 0x0200_0010);
        assert_eq!(cfg_read(&mut pci, 3, 0x10, 4), 0xc001);
        assert_eq!(cfg_read(&mut pci, 3, 0x14, 4), 0xfebf_0000);
        assert_eq!(cfg_read(&mut pci, 3, 0x3c, 1), 11);
        assert_eq!(cfg_read(&mut pci, 3, 0x3d, 1), 1);
        assert_eq!(cfg_read(&mut pci, 3, 0x3e, 2), 0xff06);
    }

    #[test]
    fn absent_devices_and_functions_read_all_ones() {
        let mut pci = PciConfigSpace::new(&[nic()]);
        assert_eq!(cfg_read(&mut pci, 5, 0, 4), 0xffff_ffff);
        pci.write(0, &0x8000_0100u32.to_le_bytes()); // function 1 of device 0
        let mut d = [0u8; 2];
        pci.read(4, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        pci.write(0, &0x0000_0000u32.to_le_bytes()); // enable bit clear
        let mut d = [0u8; 4];
        pci.read(4, &mut d);
        assert_eq!(d, [0xff; 4]);
    }

    #[test]
    fn bar_sizing_and_reassignment() {
        let mut pci = PciConfigSpace::new(&[nic()]);
        cfg_write(&mut pci, 3, 0x10, 0xffff_ffff, 4);
        assert_eq!(cfg_read(&mut pci, 3, 0x10, 4), 0xffff_ffe1);
        cfg_write(&mut pci, 3, 0x10, 0xd000, 4);
        assert_eq!(cfg_read(&mut pci, 3, 0x10, 4), 0xd001);
        cfg_write(&mut pci, 3, 0x14, 0xffff_ffff, 4);
        assert_eq!(cfg_read(&mut pci, 3, 0x14, 4), 0xffff_ffe0);
        // BARs the function does not have stay zero.
        cfg_write(&mut pci, 3, 0x18, 0xffff_ffff, 4);
        assert_eq!(cfg_read(&mut pci, 3, 0x18, 4), 0);
    }

    #[test]
    fn read_only_fields_stay_and_writable_ones_change() {
        let mut pci = PciConfigSpace::new(&[nic()]);
        cfg_write(&mut pci, 3, 0x00, 0xdead_beef, 4);
        assert_eq!(cfg_read(&mut pci, 3, 0, 4), 0x2000_1022);
        cfg_write(&mut pci, 3, 0x04, 0xffff, 2);
        assert_eq!(cfg_read(&mut pci, 3, 0x04, 2), u32::from(COMMAND_WRITABLE));
        assert_eq!(cfg_read(&mut pci, 3, 0x06, 2), 0x0280);
        cfg_write(&mut pci, 3, 0x3c, 5, 1);
        assert_eq!(cfg_read(&mut pci, 3, 0x3c, 2), 0x0105);
        cfg_write(&mut pci, 3, 0x0d, 0x40, 1);
        assert_eq!(cfg_read(&mut pci, 3, 0x0d, 1), 0x40);
    }

    #[test]
    fn address_register_reads_back_and_ignores_narrow_writes() {
        let mut pci = PciConfigSpace::new(&[]);
        pci.write(0, &0x8000_1804u32.to_le_bytes());
        pci.write(0, &[0x12]);
        let mut d = [0u8; 4];
        pci.read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x8000_1804);
    }
}
