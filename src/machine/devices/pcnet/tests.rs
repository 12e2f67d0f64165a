//! The PCnet register model driven the way real drivers drive it.

use super::*;
use crate::machine::devices::guest_ram::OutOfRange;
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
    assert_eq!(p.chip.driver_errors().init_block_out_of_range, 1);
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
    assert_eq!(chip.driver_errors().wrong_width, 1);
    chip.read_port(DWIO_RESET, &mut d);
    assert!(!chip.dwio());
}

/// A started chip in style 2 with RX ring at 0x2000 (16) and TX at 0x3000 (16).
fn started(ram: &Ram) -> Wio<'_> {
    init_block(ram, 0x1000);
    let mut p = Wio {
        chip: Pcnet::new(MAC),
        ram,
    };
    p.write_bcr(20, 2);
    p.write_csr(1, 0x1000);
    p.write_csr(2, 0);
    p.write_csr(0, CSR0_INIT);
    p.write_csr(0, CSR0_STRT | CSR0_INEA | CSR0_IDON);
    assert!(!p.chip.irq_level());
    p
}

fn tmd(ram: &Ram, i: usize, addr: u32, len: u16, flags: u16) {
    let at = 0x3000 + 16 * i;
    let bcnt = (0u16.wrapping_sub(len) & 0x0fff) | 0xf000;
    ram.put(at, &addr.to_le_bytes());
    ram.put(
        at + 4,
        &(u32::from(flags) << 16 | u32::from(bcnt)).to_le_bytes(),
    );
    ram.put(at + 8, &0u32.to_le_bytes());
}

fn rmd(ram: &Ram, i: usize, addr: u32, len: u16) {
    let at = 0x2000 + 16 * i;
    let bcnt = (0u16.wrapping_sub(len) & 0x0fff) | 0xf000;
    ram.put(at, &addr.to_le_bytes());
    ram.put(
        at + 4,
        &(u32::from(rings::OWN) << 16 | u32::from(bcnt)).to_le_bytes(),
    );
    ram.put(at + 8, &0u32.to_le_bytes());
}

fn dword(ram: &Ram, at: usize) -> u32 {
    let b = ram.bytes.borrow();
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn send_all(p: &mut Wio<'_>) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    p.chip.transmit(p.ram, &mut |f: &[u8]| {
        frames.push(f.to_vec());
        true
    });
    frames
}

#[test]
fn transmits_a_chained_frame_zero_copy_and_interrupts() {
    let ram = Ram::new(0x10000);
    let mut p = started(&ram);
    ram.put(0x4000, &[0xaa; 42]); // header buffer
    ram.put(0x5000, &[0xbb; 100]); // payload
    tmd(&ram, 1, 0x5000, 100, rings::OWN | rings::ENP);
    tmd(&ram, 0, 0x4000, 42, rings::OWN | rings::STP);
    p.write_csr(0, CSR0_TDMD | CSR0_INEA);
    assert!(p.chip.tx_demanded());
    let frames = send_all(&mut p);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].len(), 142);
    assert!(frames[0][..42].iter().all(|&b| b == 0xaa));
    assert!(frames[0][42..].iter().all(|&b| b == 0xbb));
    for i in 0..2 {
        assert_eq!(dword(&ram, 0x3004 + 16 * i) >> 31, 0, "OWN cleared on {i}");
    }
    assert_ne!(p.read_csr(0) & CSR0_TINT, 0);
    assert!(p.chip.irq_level());
    assert!(!p.chip.tx_demanded(), "TDMD clears itself");
    // Short frames are padded to 60 bytes.
    tmd(&ram, 2, 0x4000, 20, rings::OWN | rings::STP | rings::ENP);
    p.write_csr(0, CSR0_TDMD | CSR0_INEA);
    assert_eq!(send_all(&mut p)[0].len(), 60);
}

#[test]
fn hostile_transmit_rings_are_bounded_and_counted() {
    let ram = Ram::new(0x10000);
    let mut p = started(&ram);
    // Every descriptor owned, none with ENP: one pass, underflow, TX stops.
    for i in 0..16 {
        tmd(
            &ram,
            i,
            0x4000,
            10,
            rings::OWN | if i == 0 { rings::STP } else { 0 },
        );
    }
    p.write_csr(0, CSR0_TDMD | CSR0_INEA);
    assert!(send_all(&mut p).is_empty());
    assert_eq!(p.chip.drops().tx_underflow, 1);
    assert_eq!(p.read_csr(0) & CSR0_TXON, 0, "no DXSUFLO: transmitter off");
    assert_ne!(dword(&ram, 0x3000 + 15 * 16 + 8) & rings::TMD2_UFLO, 0);

    let ram = Ram::new(0x10000);
    let mut p = started(&ram);
    // A buffer outside RAM, then a frame longer than the wire allows, then
    // a descriptor without STP, then a zero-length buffer in a good frame.
    tmd(
        &ram,
        0,
        0xffff_0000,
        100,
        rings::OWN | rings::STP | rings::ENP,
    );
    tmd(&ram, 1, 0x4000, 1000, rings::OWN | rings::STP);
    tmd(&ram, 2, 0x4000, 1000, rings::OWN | rings::ENP);
    tmd(&ram, 3, 0x4000, 100, rings::OWN | rings::ENP);
    tmd(&ram, 4, 0x4000, 0, rings::OWN | rings::STP);
    tmd(&ram, 5, 0x4000, 64, rings::OWN | rings::ENP);
    p.write_csr(0, CSR0_TDMD | CSR0_INEA);
    let frames = send_all(&mut p);
    assert_eq!(frames.len(), 1);
    let d = p.chip.drops();
    assert_eq!(
        (d.tx_dma_error, d.tx_babble, d.tx_no_stp, d.tx_zero_bcnt),
        (1, 1, 1, 1)
    );
    let csr0 = p.read_csr(0);
    assert_ne!(csr0 & CSR0_MERR, 0);
    assert_ne!(csr0 & CSR0_BABL, 0);
    assert_ne!(csr0 & CSR0_ERR, 0);
    // A transmit ring outside RAM.
    let ram = Ram::new(0x10000);
    let mut p = started(&ram);
    p.chip.tx.base = 0xffff_fff0;
    p.write_csr(0, CSR0_TDMD);
    assert!(send_all(&mut p).is_empty());
    assert_eq!(p.chip.drops().tx_dma_error, 1);
}

#[test]
fn receives_padded_with_fcs_and_counts_missed_frames() {
    let ram = Ram::new(0x10000);
    let mut p = started(&ram);
    rmd(&ram, 0, 0x6000, 1544);
    let mut frame = MAC.to_vec();
    frame.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0x08, 0x00]);
    frame.extend_from_slice(&[0x11; 20]);
    assert!(p.chip.receive(&ram, &frame));
    let rmd1 = dword(&ram, 0x2004);
    assert_eq!(rmd1 >> 31, 0, "OWN cleared");
    assert_eq!((rmd1 >> 24) & 0x3, 0x3, "STP|ENP");
    assert_eq!(dword(&ram, 0x2008) & 0xfff, 64, "MCNT = 60 + FCS");
    assert_eq!(ram.bytes.borrow()[0x6000..0x6000 + 34], frame[..]);
    assert_ne!(p.read_csr(0) & CSR0_RINT, 0);
    assert!(p.chip.irq_level());
    // Not for us: filtered. No descriptor owned: MISS and CSR112.
    let mut other = frame.clone();
    other[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    assert!(!p.chip.receive(&ram, &other));
    assert_eq!(p.chip.drops().rx_filtered, 1);
    let mut bcast = frame.clone();
    bcast[..6].copy_from_slice(&[0xff; 6]);
    assert!(!p.chip.receive(&ram, &bcast));
    assert_eq!(p.chip.drops().rx_missed, 1);
    assert_eq!(p.read_csr(112), 1);
    assert_ne!(p.read_csr(0) & CSR0_MISS, 0);
}

#[test]
fn long_frames_span_descriptors_or_overflow() {
    let ram = Ram::new(0x10000);
    let mut p = started(&ram);
    rmd(&ram, 0, 0x6000, 512);
    rmd(&ram, 1, 0x7000, 512);
    rmd(&ram, 2, 0x8000, 512);
    let mut frame = MAC.to_vec();
    frame.resize(1000, 0x5a);
    assert!(p.chip.receive(&ram, &frame));
    assert_eq!((dword(&ram, 0x2004) >> 24) & 0x3, 0x2, "STP on the first");
    assert_eq!((dword(&ram, 0x2014) >> 24) & 0x3, 0x1, "ENP on the second");
    assert_eq!(dword(&ram, 0x2018) & 0xfff, 1004);
    // 1400 bytes into the one 512-byte buffer left: overflow, counted.
    frame.resize(1400, 0x5a);
    assert!(!p.chip.receive(&ram, &frame));
    assert_eq!(p.chip.drops().rx_overflow, 1);
    let rmd1 = dword(&ram, 0x2024);
    assert_ne!(rmd1 & (u32::from(rings::OFLO | rings::ERR) << 16), 0);
}

#[test]
fn receiver_off_drops_and_counts() {
    let ram = Ram::new(0x10000);
    let mut p = Wio {
        chip: Pcnet::new(MAC),
        ram: &ram,
    };
    assert!(!p.chip.receive(&ram, &[0xff; 60]));
    assert_eq!(p.chip.drops().rx_off, 1);
}

#[test]
fn sixteen_bit_descriptors_round_trip() {
    let ram = Ram::new(0x10000);
    let style = Style::Lance;
    // LADR 0x4000, HADR 0x01, OWN|STP|ENP, BCNT -100.
    ram.put(0x900, &0x4000u16.to_le_bytes());
    ram.put(0x902, &(0x8300u16 | 0x01).to_le_bytes());
    ram.put(
        0x904,
        &((0u16.wrapping_sub(100) & 0xfff) | 0xf000).to_le_bytes(),
    );
    ram.put(0x906, &0u16.to_le_bytes());
    let mut d = style.load(&ram, 0x900, 0).unwrap();
    assert_eq!((d.addr, d.flags, d.buf_len()), (0x0001_4000, 0x8300, 100));
    d.flags &= !rings::OWN;
    d.misc = rings::TMD2_BUFF | rings::TMD2_UFLO;
    assert!(style.store(&ram, 0x900, &d));
    let b = ram.bytes.borrow();
    assert_eq!(
        u16::from_le_bytes([b[0x902], b[0x903]]),
        0x0301,
        "HADR kept"
    );
    assert_eq!(u16::from_le_bytes([b[0x906], b[0x907]]) & 0xc000, 0xc000);
}

/// One port access of a recorded driver sequence: an OUT of a value, or an
/// IN whose value must match (None: any).
enum Io {
    Out(u16, u16),
    In(u16, Option<u16>),
}

fn replay(p: &mut Wio<'_>, script: &[Io]) {
    for (i, step) in script.iter().enumerate() {
        match *step {
            Io::Out(off, v) => p.outw(off, v),
            Io::In(off, want) => {
                let got = p.inw(off);
                if let Some(want) = want {
                    assert_eq!(got, want, "access {i} (IN {off:#x})");
                }
            }
        }
    }
}

/// CSR0 after a transmit completes on a started chip: TINT, INTR, INEA,
/// RXON, TXON, STRT, and INIT (which stays set after initialisation).
const CSR0_AFTER_TX: u16 = 0x02f3;
const CSR0_RUNNING: u16 = 0x0073;

fn xmit_one(ram: &Ram, p: &mut Wio<'_>, slot: usize) {
    tmd(ram, slot, 0x4000, 100, rings::OWN | rings::STP | rings::ENP);
    // start_xmit: RAP=0, CSR0 = TDMD | INEA (2 accesses).
    replay(p, &[Io::Out(WIO_RAP, 0), Io::Out(WIO_RDP, 0x0048)]);
    assert_eq!(send_all(p).len(), 1);
    assert!(p.chip.irq_level(), "TINT raises the line");
}

#[test]
fn linux_2_4_transmit_and_interrupt_handler() {
    let ram = Ram::new(0x10000);
    let mut p = started(&ram);
    for slot in 0..3 {
        xmit_one(&ram, &mut p, slot);
        // pcnet32_interrupt of the 2.4 era: RAP saved and restored, the
        // loop re-checks CSR0, the final write re-enables INEA (10 accesses).
        replay(
            &mut p,
            &[
                Io::In(WIO_RAP, Some(0)),
                Io::Out(WIO_RAP, 0),
                Io::In(WIO_RDP, Some(CSR0_AFTER_TX)),
                Io::Out(WIO_RAP, 0),
                Io::Out(WIO_RDP, CSR0_AFTER_TX & !0x004f),
                Io::Out(WIO_RAP, 0),
                Io::In(WIO_RDP, Some(CSR0_RUNNING & !CSR0_INEA)),
                Io::Out(WIO_RAP, 0),
                Io::Out(WIO_RDP, 0x7940),
                Io::Out(WIO_RAP, 0),
            ],
        );
        assert!(!p.chip.irq_level(), "acknowledged");
        assert_eq!(p.read_csr(0), CSR0_RUNNING);
    }
}

#[test]
fn linux_napi_transmit_interrupt_and_poll() {
    let ram = Ram::new(0x10000);
    let mut p = started(&ram);
    xmit_one(&ram, &mut p, 0);
    // pcnet32_interrupt (NAPI): read and ack CSR0 (INEA off), mask every
    // source in CSR3.
    replay(
        &mut p,
        &[
            Io::Out(WIO_RAP, 0),
            Io::In(WIO_RDP, Some(CSR0_AFTER_TX)),
            Io::Out(WIO_RAP, 0),
            Io::Out(WIO_RDP, CSR0_AFTER_TX & !0x004f),
            Io::Out(WIO_RAP, 3),
            Io::In(WIO_RDP, Some(0)),
            Io::Out(WIO_RAP, 3),
            Io::Out(WIO_RDP, 0x5f00),
        ],
    );
    assert!(!p.chip.irq_level());
    // A transmit while masked sets TINT but raises nothing.
    xmit_one_masked(&ram, &mut p, 1);
    // pcnet32_poll done: unmask CSR3, CSR0 = INEA; the pending TINT now
    // raises the line again, as the driver expects.
    replay(
        &mut p,
        &[
            Io::Out(WIO_RAP, 3),
            Io::In(WIO_RDP, Some(0x5f00)),
            Io::Out(WIO_RAP, 3),
            Io::Out(WIO_RDP, 0),
            Io::Out(WIO_RAP, 0),
            Io::Out(WIO_RDP, 0x0040),
        ],
    );
    assert!(p.chip.irq_level());
}

fn xmit_one_masked(ram: &Ram, p: &mut Wio<'_>, slot: usize) {
    tmd(ram, slot, 0x4000, 100, rings::OWN | rings::STP | rings::ENP);
    replay(p, &[Io::Out(WIO_RAP, 0), Io::Out(WIO_RDP, 0x0008)]);
    assert_eq!(send_all(p).len(), 1);
    assert!(!p.chip.irq_level(), "masked, INEA off");
    assert_ne!(p.read_csr(0) & CSR0_TINT, 0);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Read(u16, usize),
        Write(u16, usize, u32),
        Csr(u16, u16),
        Transmit,
        Receive(Vec<u8>),
    }

    fn op() -> impl Strategy<Value = Op> {
        let width = prop_oneof![Just(1usize), Just(2), Just(4)];
        prop_oneof![
            (0u16..32, width.clone()).prop_map(|(o, w)| Op::Read(o, w)),
            (0u16..32, width, any::<u32>()).prop_map(|(o, w, v)| Op::Write(o, w, v)),
            (0u16..128, any::<u16>()).prop_map(|(n, v)| Op::Csr(n, v)),
            Just(Op::Transmit),
            proptest::collection::vec(any::<u8>(), 0..2000).prop_map(Op::Receive),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random register traffic over random guest memory never panics,
        /// never sends more frames than the ring holds in one pass, and
        /// never sends a frame longer than the wire allows.
        #[test]
        fn random_drivers_cannot_hurt_the_host(
            memory in proptest::collection::vec(any::<u8>(), 0x8000),
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let ram = Ram::new(0x8000);
            ram.put(0, &memory);
            let mut chip = Pcnet::new(MAC);
            for op in ops {
                match op {
                    Op::Read(o, w) => chip.read_port(o, &mut vec![0u8; w]),
                    Op::Write(o, w, v) => chip.write_port(o, &v.to_le_bytes()[..w], &ram),
                    Op::Csr(n, v) => chip.write_csr(usize::from(n), v, &ram),
                    Op::Transmit => {
                        let ring = usize::from(chip.rings().tx_len);
                        let mut sizes = Vec::new();
                        let n = chip.transmit(&ram, &mut |f: &[u8]| { sizes.push(f.len()); true });
                        prop_assert!(n as usize <= ring.max(1));
                        prop_assert!(sizes.iter().all(|&s| (rings::MIN_FRAME..=rings::MAX_TX_FRAME).contains(&s)));
                    }
                    Op::Receive(frame) => { chip.receive(&ram, &frame); }
                }
                let _ = chip.irq_level();
            }
        }
    }
}
