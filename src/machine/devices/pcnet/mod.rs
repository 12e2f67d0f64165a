//! The AMD PCnet-PCI II (Am79C970A) as a pure state machine over guest
//! memory: APROM, RAP/RDP/BDP/RESET in word (WIO) and double-word (DWIO)
//! modes, CSR0 semantics, the interrupt line, software styles, the init
//! block, and the transmit and receive rings (`rings`).

pub mod port;
pub mod registers;
pub mod rings;

use super::guest_ram::GuestRam;
use registers::*;
use rings::{Drops, Layout, RingState, RxOutcome, Style};

/// Why the chip could not do what the driver asked, counted by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriverErrors {
    /// INIT with an init block outside guest RAM (MERR set).
    pub init_block_out_of_range: u64,
    /// Accesses of the wrong width for the I/O mode, ignored.
    pub wrong_width: u64,
}

/// Ring geometry loaded by INIT.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rings {
    /// Receive descriptor ring base.
    pub rx_base: u32,
    /// Receive ring entries.
    pub rx_len: u16,
    /// Transmit descriptor ring base.
    pub tx_base: u32,
    /// Transmit ring entries.
    pub tx_len: u16,
}

/// The chip's registers, what INIT loaded and where the rings stand.
#[derive(Debug, Clone)]
pub struct Pcnet {
    aprom: [u8; 16],
    rap: u16,
    csr: [u16; 128],
    bcr: [u16; 32],
    rings: Rings,
    tx: RingState,
    rx: RingState,
    tx_buf: Vec<u8>,
    link_up: bool,
    driver_errors: DriverErrors,
    drops: Drops,
}

impl Pcnet {
    /// A chip with station address `mac`, after a hardware reset.
    pub fn new(mac: [u8; 6]) -> Self {
        let mut aprom = [0u8; 16];
        aprom[..6].copy_from_slice(&mac);
        aprom[9] = 0x11;
        let sum: u16 = aprom[..12].iter().map(|&b| u16::from(b)).sum::<u16>() + 0x57 + 0x57;
        aprom[12..14].copy_from_slice(&sum.to_le_bytes());
        aprom[14] = 0x57;
        aprom[15] = 0x57;
        let mut chip = Self {
            aprom,
            rap: 0,
            csr: [0; 128],
            bcr: [0; 32],
            rings: Rings::default(),
            tx: RingState::default(),
            rx: RingState::default(),
            tx_buf: Vec::with_capacity(rings::MAX_TX_FRAME),
            link_up: true,
            driver_errors: DriverErrors::default(),
            drops: Drops::default(),
        };
        for (n, v) in BCR_RESET {
            chip.bcr[n] = v;
        }
        chip.software_reset();
        chip
    }

    /// S_RESET: what a read of the RESET port does. BCRs keep their values
    /// except that DWIO is cleared and the style returns to 0.
    pub fn software_reset(&mut self) {
        self.rap = 0;
        self.csr[0] = CSR0_STOP;
        self.csr[CSR_IMASK] = 0;
        self.csr[CSR_FEATURES] = CSR4_RESET;
        self.csr[CSR_EXT] = 0;
        self.csr[CSR_MODE] &= !(CSR15_DRX | CSR15_DTX);
        self.csr[CSR_MISSED] = 0;
        self.bcr[BCR_BSBC] &= !BCR18_DWIO;
        self.set_style(0);
        for i in 0..3 {
            self.csr[CSR_PADR + i] = u16::from_le_bytes([self.aprom[2 * i], self.aprom[2 * i + 1]]);
        }
        self.rings = Rings::default();
        self.tx = RingState::default();
        self.rx = RingState::default();
    }

    /// The register address port's value.
    pub fn rap(&self) -> u16 {
        self.rap
    }

    /// Whether the chip is in double-word I/O mode.
    pub fn dwio(&self) -> bool {
        self.bcr[BCR_BSBC] & BCR18_DWIO != 0
    }

    /// Ring geometry from the last INIT.
    pub fn rings(&self) -> Rings {
        self.rings
    }

    /// Register-level faults counted so far.
    pub fn driver_errors(&self) -> &DriverErrors {
        &self.driver_errors
    }

    /// Frames refused or damaged so far, by reason.
    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    fn style(&self) -> Style {
        Style::from_swstyle(self.bcr[BCR_SWSTYLE])
    }

    /// The descriptor layout: style, and address bits 31:24 from
    /// CSR2[15:8] in the 16-bit style.
    fn layout(&self) -> Layout {
        let style = self.style();
        let high = if style == Style::Lance {
            u32::from(self.csr[CSR_IADR_HI] & 0xff00) << 16
        } else {
            0
        };
        Layout { style, high }
    }

    /// Whether the driver asked for a transmit that has not happened yet.
    pub fn tx_demanded(&self) -> bool {
        self.csr[0] & (CSR0_TDMD | CSR0_TXON) == (CSR0_TDMD | CSR0_TXON)
    }

    /// Transmits every complete frame the driver owns, handing each to
    /// `send` (false: the wire refused it). Returns the frames sent.
    pub fn transmit(&mut self, ram: &dyn GuestRam, send: &mut dyn FnMut(&[u8]) -> bool) -> u64 {
        self.csr[0] &= !CSR0_TDMD;
        if self.csr[0] & CSR0_TXON == 0 {
            return 0;
        }
        let csr5 = self.csr[CSR_EXT];
        let tint_for = move |d: &rings::Desc| {
            csr5 & (1 << 15) == 0 && (csr5 & (1 << 14) == 0 || d.flags & rings::LTINT != 0)
        };
        let out = rings::transmit(
            ram,
            self.layout(),
            &mut self.tx,
            &mut self.drops,
            &mut self.tx_buf,
            &tint_for,
            send,
        );
        self.csr[0] |= out.csr0;
        if out.frames > 0 {
            self.csr[CSR_FEATURES] |= 1 << 3; // TXSTRT
        }
        if out.stop_tx && self.csr[CSR_IMASK] & (1 << 6) == 0 {
            self.csr[0] &= !CSR0_TXON; // no DXSUFLO: the transmitter stops
        }
        out.frames
    }

    /// Whether the address filter accepts a frame for `dest`.
    fn accepts(&self, dest: &[u8]) -> bool {
        let mode = self.csr[CSR_MODE];
        if mode & (1 << 15) != 0 {
            return true; // PROM
        }
        if dest == [0xff; 6] {
            return mode & (1 << 14) == 0; // DRCVBC
        }
        if dest[0] & 1 != 0 {
            // Multicast: the top 6 bits of the CRC select a LADRF bit.
            let hash = (!crc32fast::hash(dest) >> 26) as usize;
            return self.csr[CSR_LADRF + hash / 16] & (1 << (hash % 16)) != 0;
        }
        let mut padr = [0u8; 6];
        for i in 0..3 {
            padr[2 * i..2 * i + 2].copy_from_slice(&self.csr[CSR_PADR + i].to_le_bytes());
        }
        mode & (1 << 13) == 0 && dest == padr
    }

    /// A frame from the wire (without FCS). Returns whether it reached the
    /// receive ring; every other outcome is counted in [`Pcnet::drops`].
    pub fn receive(&mut self, ram: &dyn GuestRam, frame: &[u8]) -> bool {
        let on = self.csr[0] & (CSR0_RXON | CSR0_STOP) == CSR0_RXON
            && self.csr[CSR_EXT] & CSR5_SPND == 0;
        if !on {
            self.drops.rx_off += 1;
            return false;
        }
        if frame.len() < 14 || !self.accepts(&frame[..6]) {
            self.drops.rx_filtered += 1;
            return false;
        }
        match rings::receive(ram, self.layout(), &mut self.rx, &mut self.drops, frame) {
            RxOutcome::Delivered => {
                self.csr[0] |= CSR0_RINT;
                true
            }
            RxOutcome::Dropped { miss, merr } => {
                if miss {
                    self.csr[0] |= CSR0_MISS;
                    self.csr[CSR_MISSED] = self.csr[CSR_MISSED].wrapping_add(1);
                }
                if merr {
                    self.csr[0] |= CSR0_MERR;
                }
                // An overflowed frame still completes a receive.
                if !miss && !merr {
                    self.csr[0] |= CSR0_RINT;
                }
                false
            }
        }
    }

    /// The level of the interrupt pin (INTA#).
    pub fn irq_level(&self) -> bool {
        self.intr() && self.csr[0] & CSR0_INEA != 0
    }

    fn intr(&self) -> bool {
        let csr0 = self.csr[0] & CSR0_INTERRUPTS & !self.csr[CSR_IMASK];
        let csr4 = CSR4_PAIRS.iter().any(|&(int, mask)| {
            self.csr[CSR_FEATURES] & int != 0 && self.csr[CSR_FEATURES] & mask == 0
        });
        let csr5 = CSR5_PAIRS
            .iter()
            .any(|&(int, en)| self.csr[CSR_EXT] & int != 0 && self.csr[CSR_EXT] & en != 0);
        csr0 != 0 || csr4 || csr5
    }

    fn set_style(&mut self, style: u16) {
        // SSIZE32 (bit 8) and CSRPCNET (bit 9) follow the style.
        let style = style & 0xff;
        let value = match style {
            0 => 0x0200,
            1 => 0x0101,
            2 | 3 => 0x0300 | style,
            _ => 0x0200,
        };
        self.bcr[BCR_SWSTYLE] = value;
        self.csr[CSR_SWSTYLE] = value;
    }

    /// A CSR as the driver reads it.
    pub fn csr(&self, n: usize) -> u16 {
        match n {
            0 => {
                let mut v = self.csr[0] & !(CSR0_ERR | CSR0_INTR);
                if v & CSR0_ERRORS != 0 {
                    v |= CSR0_ERR;
                }
                if self.intr() {
                    v |= CSR0_INTR;
                }
                v
            }
            CSR_CHIP_ID_LO => CHIP_ID as u16,
            CSR_CHIP_ID_HI => (CHIP_ID >> 16) as u16,
            n if n < 128 => self.csr[n],
            _ => 0,
        }
    }

    /// A BCR as the driver reads it.
    pub fn bcr(&self, n: usize) -> u16 {
        match n {
            4..=7 if self.link_up => self.bcr[n] | BCR_LEDOUT,
            n if n < 32 => self.bcr[n],
            _ => 0,
        }
    }

    /// A CSR write by the driver; `ram` serves INIT.
    pub fn write_csr(&mut self, n: usize, value: u16, ram: &dyn GuestRam) {
        match n {
            0 => self.write_csr0(value, ram),
            CSR_IMASK => self.csr[n] = value & 0x5f7c,
            CSR_FEATURES => {
                let w1c = value & CSR4_W1C;
                self.csr[n] = (self.csr[n] & CSR4_W1C & !w1c) | (value & !CSR4_W1C);
            }
            CSR_EXT => {
                let w1c = value & CSR5_W1C;
                self.csr[n] = (self.csr[n] & CSR5_W1C & !w1c) | (value & !CSR5_W1C);
            }
            // CSR58 is an alias of BCR20.
            CSR_SWSTYLE => self.write_bcr(BCR_SWSTYLE, value),
            CSR_CHIP_ID_LO | CSR_CHIP_ID_HI => {}
            n if n < 128 => self.csr[n] = value,
            _ => {}
        }
    }

    /// A BCR write by the driver.
    pub fn write_bcr(&mut self, n: usize, value: u16) {
        match n {
            // The style can change only while stopped or suspended.
            BCR_SWSTYLE if self.csr[0] & CSR0_STOP != 0 || self.csr[CSR_EXT] & CSR5_SPND != 0 => {
                self.set_style(value)
            }
            BCR_SWSTYLE => {}
            BCR_BSBC => self.bcr[n] = (self.bcr[n] & BCR18_DWIO) | (value & !BCR18_DWIO),
            n if n < 32 => self.bcr[n] = value,
            _ => {}
        }
    }

    fn write_csr0(&mut self, value: u16, ram: &dyn GuestRam) {
        let mut csr0 = self.csr[0];
        csr0 &= !(value & CSR0_W1C);
        csr0 = (csr0 & !CSR0_INEA) | (value & CSR0_INEA);
        if value & CSR0_TDMD != 0 {
            csr0 |= CSR0_TDMD;
        }
        self.csr[0] = csr0;
        if value & CSR0_STOP != 0 {
            // STOP wins over INIT and STRT and clears everything else.
            self.csr[0] = CSR0_STOP;
            return;
        }
        if value & CSR0_INIT != 0 {
            self.init(ram);
        }
        if value & CSR0_STRT != 0 {
            self.start();
        }
    }

    /// INIT: load the init block at IADR, then IDON at once (drivers poll
    /// for it a bounded number of times).
    fn init(&mut self, ram: &dyn GuestRam) {
        let style32 = self.bcr[BCR_SWSTYLE] & 0x0100 != 0;
        let mut iadr = u32::from(self.csr[CSR_IADR_LO]) | u32::from(self.csr[CSR_IADR_HI]) << 16;
        if !style32 {
            iadr &= 0x00ff_ffff;
        }
        let mut block = [0u8; 28];
        let len = if style32 { 28 } else { 24 };
        if ram.read(u64::from(iadr), &mut block[..len]).is_err() {
            self.driver_errors.init_block_out_of_range += 1;
            self.csr[0] = (self.csr[0] & !CSR0_STOP) | CSR0_MERR | CSR0_IDON;
            return;
        }
        let w = |i: usize| u16::from_le_bytes([block[i], block[i + 1]]);
        let d = |i: usize| u32::from_le_bytes([block[i], block[i + 1], block[i + 2], block[i + 3]]);
        self.csr[CSR_MODE] = w(0);
        if style32 {
            let (rlen, tlen) = (block[2] >> 4, block[3] >> 4);
            for i in 0..3 {
                self.csr[CSR_PADR + i] = w(4 + 2 * i);
            }
            for i in 0..4 {
                self.csr[CSR_LADRF + i] = w(12 + 2 * i);
            }
            self.rings = Rings {
                rx_base: d(20),
                rx_len: 1 << rlen.min(9),
                tx_base: d(24),
                tx_len: 1 << tlen.min(9),
            };
        } else {
            for i in 0..3 {
                self.csr[CSR_PADR + i] = w(2 + 2 * i);
            }
            for i in 0..4 {
                self.csr[CSR_LADRF + i] = w(8 + 2 * i);
            }
            let (rdra, tdra) = (d(16), d(20));
            // 16-bit style: 24-bit addresses, CSR2[15:8] supplies bits 31:24.
            let high = u32::from(self.csr[CSR_IADR_HI] & 0xff00) << 16;
            self.rings = Rings {
                rx_base: (rdra & 0x00ff_ffff) | high,
                rx_len: 1 << (rdra >> 29),
                tx_base: (tdra & 0x00ff_ffff) | high,
                tx_len: 1 << (tdra >> 29),
            };
        }
        self.csr[CSR_RCVRL] = self.rings.rx_len;
        self.csr[CSR_XMTRL] = self.rings.tx_len;
        self.rx = RingState {
            base: self.rings.rx_base,
            len: self.rings.rx_len,
            index: 0,
        };
        self.tx = RingState {
            base: self.rings.tx_base,
            len: self.rings.tx_len,
            index: 0,
        };
        self.csr[0] = (self.csr[0] & !CSR0_STOP) | CSR0_IDON | CSR0_INIT;
    }

    fn start(&mut self) {
        let mode = self.csr[CSR_MODE];
        let mut csr0 = (self.csr[0] & !CSR0_STOP) | CSR0_STRT;
        if mode & CSR15_DRX == 0 {
            csr0 |= CSR0_RXON;
        }
        if mode & CSR15_DTX == 0 {
            csr0 |= CSR0_TXON;
        }
        self.csr[0] = csr0;
    }

    /// A port read of `data.len()` bytes at BAR offset `offset`.
    pub fn read_port(&mut self, offset: u16, data: &mut [u8]) {
        let width = data.len();
        let value: u32 = match (offset, width, self.dwio()) {
            (0..=15, 1, _) => u32::from(self.aprom[usize::from(offset)]),
            (0..=15, 2, false) if offset.is_multiple_of(2) => u32::from(u16::from_le_bytes([
                self.aprom[usize::from(offset)],
                self.aprom[usize::from(offset) + 1],
            ])),
            (0..=15, 4, true) if offset.is_multiple_of(4) => {
                let o = usize::from(offset);
                u32::from_le_bytes(self.aprom[o..o + 4].try_into().unwrap())
            }
            (WIO_RDP, 2, false) | (DWIO_RDP, 4, true) => u32::from(self.csr(usize::from(self.rap))),
            (WIO_RAP, 2, false) | (DWIO_RAP, 4, true) => u32::from(self.rap),
            (WIO_RESET, 2, false) | (DWIO_RESET, 4, true) => {
                self.software_reset();
                0
            }
            (WIO_BDP, 2, false) | (DWIO_BDP, 4, true) => u32::from(self.bcr(usize::from(self.rap))),
            _ => {
                self.driver_errors.wrong_width += 1;
                u32::MAX
            }
        };
        let bytes = value.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(0xff);
        }
    }

    /// A port write of `data` at BAR offset `offset`; `ram` serves INIT.
    pub fn write_port(&mut self, offset: u16, data: &[u8], ram: &dyn GuestRam) {
        let mut bytes = [0u8; 4];
        let n = data.len().min(4);
        bytes[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(bytes);
        // A dword write to RDP in word mode switches to DWIO and does
        // nothing else.
        if !self.dwio() && offset == WIO_RDP && data.len() == 4 {
            self.bcr[BCR_BSBC] |= BCR18_DWIO;
            return;
        }
        match (offset, data.len(), self.dwio()) {
            (0..=15, 1, _) if self.bcr[BCR_MC] & BCR2_APROMWE != 0 => {
                self.aprom[usize::from(offset)] = data[0];
            }
            (WIO_RDP, 2, false) | (DWIO_RDP, 4, true) => {
                self.write_csr(usize::from(self.rap), value as u16, ram)
            }
            (WIO_RAP, 2, false) | (DWIO_RAP, 4, true) => self.rap = (value & 0x7f) as u16,
            (WIO_BDP, 2, false) | (DWIO_BDP, 4, true) => {
                self.write_bcr(usize::from(self.rap), value as u16)
            }
            (WIO_RESET, 2, false) | (DWIO_RESET, 4, true) => {}
            (0..=15, _, _) => {}
            _ => self.driver_errors.wrong_width += 1,
        }
    }
}

#[cfg(test)]
mod tests;
