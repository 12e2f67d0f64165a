//! The PCnet register model driven the way real drivers drive it.

use super::*;
use crate::devices::guest_ram::OutOfRange;
use std::cell::RefCell;

/// Guest RAM backed by a vector, recording every DMA access.
struct Ram {
    bytes: RefCell<Vec<u8>>,
    log: RefCell<Vec<(char, u64, usize)>>,
}

impl Ram {
    fn new(size: usize) -> Self {
        Self {
            bytes: RefCell::new(vec![0; size]),
            log: RefCell::default(),
        }
    }

    fn put(&self, addr: usize, data: &[u8]) {
        self.bytes.borrow_mut()[addr..addr + data.len()].copy_from_slice(data);
    }
}

impl GuestRam for Ram {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        self.log.borrow_mut().push(('r', addr, buf.len()));
        let bytes = self.bytes.borrow();
        let end = addr
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= bytes.len() as u64);
        let err = OutOfRange {
            addr,
            len: buf.len(),
        };
        end.ok_or(err)?;
        buf.copy_from_slice(&bytes[addr as usize..addr as usize + buf.len()]);
        Ok(())
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), OutOfRange> {
        self.log.borrow_mut().push(('w', addr, buf.len()));
        let mut bytes = self.bytes.borrow_mut();
        let err = OutOfRange {
            addr,
            len: buf.len(),
        };
        let end = addr
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= bytes.len() as u64)
            .ok_or(err)?;
        bytes[addr as usize..end as usize].copy_from_slice(buf);
        Ok(())
    }
}

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// Word-mode port helpers, as pcnet32's `pcnet32_wio_*` do them.
struct Wio<'a> {
    chip: Pcnet,
    ram: &'a Ram,
}

impl Wio<'_> {
    fn inw(&mut self, off: u16) -> u16 {
        let mut d = [0u8; 2];
        self.chip.read_port(off, &mut d);
        u16::from_le_bytes(d)
    }
    fn outw(&mut self, off: u16, v: u16) {
        self.chip.write_port(off, &v.to_le_bytes(), self.ram);
    }
    fn inb(&mut self, off: u16) -> u8 {
        let mut d = [0u8; 1];
        self.chip.read_port(off, &mut d);
        d[0]
    }
    fn read_csr(&mut self, n: u16) -> u16 {
        self.outw(WIO_RAP, n);
        self.inw(WIO_RDP)
    }
    fn write_csr(&mut self, n: u16, v: u16) {
        self.outw(WIO_RAP, n);
        self.outw(WIO_RDP, v);
    }
    fn read_bcr(&mut self, n: u16) -> u16 {
        self.outw(WIO_RAP, n);
        self.inw(WIO_BDP)
    }
    fn write_bcr(&mut self, n: u16, v: u16) {
        self.outw(WIO_RAP, n);
        self.outw(WIO_BDP, v);
    }
}

/// The style-2 init block pcnet32 builds: mode 0, 16 RX and 16 TX entries.
fn init_block(ram: &Ram, at: usize) {
    let mut b = Vec::new();
    b.extend_from_slice(&0u16.to_le_bytes()); // mode
    b.extend_from_slice(&((4u16 << 12) | (4 << 4)).to_le_bytes()); // tlen_rlen
    b.extend_from_slice(&MAC);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&[0xff; 8]); // LADRF
    b.extend_from_slice(&0x2000u32.to_le_bytes()); // RDRA
    b.extend_from_slice(&0x3000u32.to_le_bytes()); // TDRA
    ram.put(at, &b);
}

#[test]
fn linux_probe_sequence() {
    let ram = Ram::new(0x10000);
    let mut p = Wio {
        chip: Pcnet::new(MAC),
        ram: &ram,
    };
    // pcnet32_probe1: reset, CSR0 must read exactly 4, RAP reads back.
    assert_eq!(p.inw(WIO_RESET), 0);
    assert_eq!(p.read_csr(0), 0x0004);
    p.outw(WIO_RAP, 88);
    assert_eq!(p.inw(WIO_RAP), 88);
    // The chip ID: low 12 bits 0x003, part 0x2621 (79C970A).
    let id = u32::from(p.read_csr(88)) | u32::from(p.read_csr(89)) << 16;
    assert_eq!(id & 0xfff, 0x003);
    assert_eq!((id >> 12) & 0xffff, 0x2621);
    // PADR in CSR12-14 matches the APROM.
    let mut csr_mac = Vec::new();
    for n in 12..15 {
        csr_mac.extend_from_slice(&p.read_csr(n).to_le_bytes());
    }
    let prom: Vec<u8> = (0..6).map(|i| p.inb(i)).collect();
    assert_eq!(csr_mac, MAC);
    assert_eq!(prom, MAC);
    assert_eq!((p.inb(14), p.inb(15)), (0x57, 0x57));
    // SWSTYLE 2 is accepted while stopped; SSIZE32 and CSRPCNET follow.
    p.write_bcr(20, 2);
    assert_eq!(p.read_bcr(20), 0x0302);
    assert_eq!(p.read_csr(58), 0x0302);
    // LEDPE read-modify-write of BCR2; link up shows in BCR4.
    let bcr2 = p.read_bcr(2);
    p.write_bcr(2, bcr2 | 0x1000);
    assert_eq!(p.read_bcr(2), 0x1002);
    assert_ne!(p.read_bcr(4), 0x00c0, "link up: LEDOUT set");
    // Unknown BCRs read 0 and take writes (BCR32 on ASEL drivers).
    assert_eq!(p.read_bcr(32), 0);
    p.write_bcr(32, 0x1234);
    assert_eq!(p.read_bcr(32), 0);
}

#[test]
fn linux_open_sequence_initialises_at_once_and_interrupts() {
    let ram = Ram::new(0x10000);
    init_block(&ram, 0x1000);
    let mut p = Wio {
        chip: Pcnet::new(MAC),
        ram: &ram,
    };
    p.inw(WIO_RESET);
    p.write_bcr(20, 2);
    for n in 8..12 {
        p.write_csr(n, 0);
    }
    p.write_csr(1, 0x1000);
    p.write_csr(2, 0);
    p.write_csr(4, 0x0915);
    p.write_csr(0, CSR0_INIT);
    // pcnet32 polls CSR0 for IDON at most 100 times: it must be there now.
    let csr0 = p.read_csr(0);
    assert_ne!(csr0 & CSR0_IDON, 0, "IDON at once: {csr0:#06x}");
    assert!(!p.chip.irq_level(), "no interrupt before INEA");
    assert_eq!(
        p.chip.rings(),
        Rings {
            rx_base: 0x2000,
            rx_len: 16,
            tx_base: 0x3000,
            tx_len: 16
        }
    );
    assert_eq!((p.read_csr(76), p.read_csr(78)), (16, 16));
    assert_eq!(p.read_csr(8), 0xffff, "LADRF from the init block");
    // STRT | INEA with IDON still set raises the line.
    p.write_csr(0, CSR0_STRT | CSR0_INEA);
    let csr0 = p.read_csr(0);
    assert_eq!(
        csr0,
        CSR0_IDON | CSR0_INTR | CSR0_INEA | CSR0_RXON | CSR0_TXON | CSR0_STRT | CSR0_INIT
    );
    assert!(p.chip.irq_level());
    // The ISR acks IDON by writing it back (W1C); the line drops.
    p.write_csr(0, csr0 & !0x004f | CSR0_INEA);
    assert!(!p.chip.irq_level());
    assert_eq!(p.read_csr(0) & CSR0_IDON, 0);
    // Style 2 cannot change while running; SPND reads back as written.
    p.write_bcr(20, 0);
    assert_eq!(p.read_bcr(20), 0x0302);
    p.write_csr(5, CSR5_SPND);
    assert_eq!(p.read_csr(5) & CSR5_SPND, CSR5_SPND);
}

#[test]
fn csr0_w1c_inea_and_stop_semantics() {
    let ram = Ram::new(0x10000);
    init_block(&ram, 0x100);
    let mut p = Wio {
        chip: Pcnet::new(MAC),
        ram: &ram,
    };
    p.write_bcr(20, 2);
    p.write_csr(1, 0x100);
    p.write_csr(0, CSR0_INIT | CSR0_INEA);
    assert!(p.chip.irq_level());
    // Masking IDON in CSR3 drops INTR; unmasking brings it back.
    p.write_csr(3, 1 << 8);
    assert!(!p.chip.irq_level());
    p.write_csr(3, 0);
    assert!(p.chip.irq_level());
    // A write without INEA disables the line but leaves IDON.
    p.write_csr(0, 0);
    assert!(!p.chip.irq_level());
    assert_ne!(p.read_csr(0) & (CSR0_IDON | CSR0_INTR), 0);
    // TDMD is set by writing 1; STOP wins over INIT and STRT.
    p.write_csr(0, CSR0_TDMD);
    assert_ne!(p.read_csr(0) & CSR0_TDMD, 0);
    p.write_csr(0, CSR0_STOP | CSR0_STRT | CSR0_INIT);
    assert_eq!(p.read_csr(0), CSR0_STOP);
}

#[test]
fn sixteen_bit_style_init_block_uses_24_bit_addresses() {
    let ram = Ram::new(0x10000);
    let mut b = vec![0u8; 24];
    b[2..8].copy_from_slice(&MAC);
    b[16..20].copy_from_slice(&(0x0000_4000u32 | (3 << 29)).to_le_bytes());
    b[20..24].copy_from_slice(&(0x0000_5000u32 | (2 << 29)).to_le_bytes());
    ram.put(0x800, &b);
    let mut p = Wio {
        chip: Pcnet::new(MAC),
        ram: &ram,
    };
    p.write_csr(1, 0x800);
    p.write_csr(2, 0);
    p.write_csr(0, CSR0_INIT);
    assert_eq!(
        p.chip.rings(),
        Rings {
            rx_base: 0x4000,
            rx_len: 8,
            tx_base: 0x5000,
            tx_len: 4
        }
    );
}

#[test]
fn init_block_outside_ram_is_a_memory_error_not_a_crash() {
    let ram = Ram::new(0x1000);
    let mut p = Wio {
        chip: Pcnet::new(MAC),
        ram: &ram,
    };
    p.write_bcr(20, 2);
    p.write_csr(1, 0xfff0);
    p.write_csr(2, 0xffff);
    p.write_csr(0, CSR0_INIT | CSR0_INEA);
    let csr0 = p.read_csr(0);
    assert_ne!(csr0 & CSR0_MERR, 0);
    assert_ne!(csr0 & CSR0_ERR, 0);
    assert!(p.chip.irq_level());
    assert_eq!(p.chip.faults().init_block_out_of_range, 1);
    assert_eq!(*ram.log.borrow(), vec![('r', 0xffff_fff0, 28)]);
}

#[test]
fn dword_mode_is_entered_by_a_dword_write_and_left_by_reset() {
    let ram = Ram::new(0x1000);
    let mut chip = Pcnet::new(MAC);
    chip.write_port(DWIO_RDP, &0u32.to_le_bytes(), &ram);
    assert!(chip.dwio());
    chip.write_port(DWIO_RAP, &88u32.to_le_bytes(), &ram);
    let mut d = [0u8; 4];
    chip.read_port(DWIO_RDP, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x1003);
    // Word accesses are ignored in DWIO mode and read all ones.
    let mut w = [0u8; 2];
    chip.read_port(WIO_RAP, &mut w);
    assert_eq!(w, [0xff, 0xff]);
    assert_eq!(chip.faults().wrong_width, 1);
    chip.read_port(DWIO_RESET, &mut d);
    assert!(!chip.dwio());
}
