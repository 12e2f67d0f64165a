//! Names of the ports a PC guest touches whose owner every PC machine
//! fixes (the interrupt controllers, timer, serial port, PCI
//! configuration). A NIC's ports are in a PCI BAR the guest's firmware
//! chose: without asking the VMM they are only numbers.

use crate::profiler::emulation::PortMap;

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

/// The fixed ports as a [`PortMap`], every other port `other`.
pub fn legacy() -> PortMap {
    let mut map = PortMap::default();
    for &(base, len, owner) in LEGACY {
        map.add(base, len, owner);
    }
    map
}

/// The owner of `port`, where a PC fixes it.
pub fn name(port: u16) -> Option<&'static str> {
    Some(legacy().group(port)).filter(|g| *g != "other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_ports_are_named_and_others_are_not() {
        assert_eq!(name(0x21), Some("8259 PIC (master)"));
        assert_eq!(name(0xcfc), Some("PCI configuration"));
        assert_eq!(name(0x3fd), Some("serial COM1"));
        assert_eq!(name(0xc010), None, "a BAR the firmware chose");
    }
}
