//! Names of the ports a guest touches: those every PC fixes (the
//! interrupt controllers, timer, serial port, PCI configuration), and,
//! where QEMU is asked over QMP (`--qmp`), its PCI devices' I/O BARs. A
//! NIC's ports are in a BAR the guest's firmware chose: without asking the
//! VMM they are only numbers.

use super::qmp;
use crate::profiler::emulation::PortMap;
use std::path::Path;

/// The fixed PC ports: (first, how many, owner).
const LEGACY: &[(u16, u16, &str)] = &[
    (0x20, 2, "8259 PIC (master)"),
    (0xa0, 2, "8259 PIC (slave)"),
    (0x4d0, 2, "8259 ELCR"),
    (0x40, 4, "8254 PIT"),
    (0x61, 1, "PC speaker / port B"),
    (0x60, 1, "i8042 keyboard"),
    (0x64, 1, "i8042 keyboard"),
    (0x70, 2, "RTC / CMOS"),
    (0x80, 1, "POST diagnostics"),
    (0x92, 1, "port 92 (A20)"),
    (0x3f8, 8, "serial COM1"),
    (0x2f8, 8, "serial COM2"),
    (0x3c0, 32, "VGA"),
    (0x510, 2, "fw_cfg"),
    (0x600, 128, "ACPI PM"),
    (0xcf8, 8, "PCI configuration"),
];

/// Port owners by name.
#[derive(Debug, Clone)]
pub struct PortNames(PortMap);

impl PortNames {
    /// The fixed PC ports.
    pub fn legacy() -> Self {
        let mut map = PortMap::default();
        for &(base, len, owner) in LEGACY {
            map.add(base, len, owner);
        }
        Self(map)
    }

    /// The fixed ports and the PCI I/O BARs QEMU's QMP socket at `path`
    /// reports (first: a BAR overrides nothing fixed).
    pub fn with_qmp(path: &Path) -> Result<Self, String> {
        let mut map = PortMap::default();
        for bar in qmp::io_bars(path)? {
            map.add(bar.base, bar.len, bar.device);
        }
        for &(base, len, owner) in LEGACY {
            map.add(base, len, owner);
        }
        Ok(Self(map))
    }

    /// The owner of `port`, where known.
    pub fn name(&self, port: u16) -> Option<&str> {
        Some(self.0.group(port)).filter(|g| *g != "other")
    }

    /// As the emulation windows group port accesses.
    pub fn map(&self) -> PortMap {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_ports_are_named_and_others_are_not() {
        let n = PortNames::legacy();
        assert_eq!(n.name(0x21), Some("8259 PIC (master)"));
        assert_eq!(n.name(0xcfc), Some("PCI configuration"));
        assert_eq!(n.name(0x3fd), Some("serial COM1"));
        assert_eq!(n.name(0xc010), None, "a BAR the firmware chose");
        let e = PortNames::with_qmp(Path::new("/nonexistent/qmp.sock")).unwrap_err();
        assert!(e.starts_with("QMP at /nonexistent/qmp.sock"), "{e}");
    }
}
