//! Descriptor rings: reading and writing transmit and receive descriptors in
//! every software style, and the chip's transmit and receive algorithms.
//! Everything a guest puts in a ring is untrusted: addresses are checked,
//! lengths bounded, every walk limited to one pass over the ring, and every
//! refusal counted with its reason.

use super::registers::*;
use crate::machine::devices::guest_ram::GuestRam;

/// Descriptor flag bits, in the upper half of TMD1/RMD1 (style 2) or the
/// status byte of word 1 (style 0) shifted into the same place.
/// OWN: the chip owns the descriptor (the driver hands it over).
pub const OWN: u16 = 1 << 15;
/// ERR: some error bit of the descriptor is set.
pub const ERR: u16 = 1 << 14;
/// RX: framing error; TX: ADD_FCS.
pub const FRAM: u16 = 1 << 13;
/// RX: overflow.
pub const OFLO: u16 = 1 << 12;
/// RX: buffer error.
pub const BUFF_RX: u16 = 1 << 10;
/// STP: the first descriptor of a frame.
pub const STP: u16 = 1 << 9;
/// ENP: the last descriptor of a frame.
pub const ENP: u16 = 1 << 8;
/// TX: LTINT (with CSR5.LTINTEN, only such descriptors raise TINT).
pub const LTINT: u16 = 1 << 12;
/// TMD2 BUFF (style-2 layout): the frame ran out of descriptors.
pub const TMD2_BUFF: u32 = 1 << 31;
/// TMD2 UFLO: transmit underflow (the frame was cut).
pub const TMD2_UFLO: u32 = 1 << 30;

/// The largest frame the chip sends (no FCS, with a VLAN tag).
pub const MAX_TX_FRAME: usize = 1518;
/// The smallest frame on the wire without FCS; shorter ones are padded.
pub const MIN_FRAME: usize = 60;
/// Receive frames larger than this are cut (the receive FIFO).
pub const MAX_RX_FRAME: usize = 4092;

/// A descriptor, whatever the style.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    /// Buffer address.
    pub addr: u32,
    /// Flags (OWN, ERR, STP, ENP, ...).
    pub flags: u16,
    /// ONES nibble and the two's-complement buffer byte count.
    pub bcnt: u16,
    /// TMD2 or RMD2 in style-2 layout (errors; MCNT on receive).
    pub misc: u32,
}

impl Desc {
    /// Buffer length in bytes (BCNT is the negative length in 12 bits).
    pub fn buf_len(&self) -> usize {
        ((0x1000 - u32::from(self.bcnt & 0xfff)) & 0xfff) as usize
    }
}

/// The software style the rings use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// 16-bit LANCE layout (8-byte descriptors, 24-bit addresses).
    Lance,
    /// 32-bit PCnet-PCI layout (16-byte descriptors).
    Pci,
    /// As `Pci` with dwords 0 and 2 swapped.
    PciSwapped,
}

impl Style {
    /// The style BCR20 selects.
    pub fn from_swstyle(bcr20: u16) -> Self {
        match bcr20 & 0xff {
            2 => Style::Pci,
            3 => Style::PciSwapped,
            _ => Style::Lance,
        }
    }

    /// Bytes per descriptor.
    pub fn size(self) -> u64 {
        match self {
            Style::Lance => 8,
            _ => 16,
        }
    }

    /// Reads the descriptor at `at`; `high` supplies address bits 31:24 in
    /// the 16-bit style.
    pub fn load(self, ram: &dyn GuestRam, at: u64, high: u32) -> Option<Desc> {
        match self {
            Style::Lance => {
                let mut b = [0u8; 8];
                ram.read(at, &mut b).ok()?;
                let w = |i: usize| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
                Some(Desc {
                    addr: u32::from(w(0)) | u32::from(w(1) & 0xff) << 16 | high,
                    flags: w(1) & 0xff00,
                    bcnt: w(2),
                    misc: u32::from(w(3)) << 16 | u32::from(w(3) & 0x0fff),
                })
            }
            Style::Pci | Style::PciSwapped => {
                let mut b = [0u8; 16];
                ram.read(at, &mut b).ok()?;
                let d = |i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
                let (d0, d2) = if self == Style::Pci {
                    (d(0), d(2))
                } else {
                    (d(2), d(0))
                };
                Some(Desc {
                    addr: d0,
                    flags: (d(1) >> 16) as u16,
                    bcnt: d(1) as u16,
                    misc: d2,
                })
            }
        }
    }

    /// Writes back the flags and misc word of `desc` at `at` (the chip
    /// never rewrites the buffer address or count).
    pub fn store(self, ram: &dyn GuestRam, at: u64, desc: &Desc) -> bool {
        match self {
            Style::Lance => {
                let mut w1 = [0u8; 2];
                if ram.read(at + 2, &mut w1).is_err() {
                    return false;
                }
                let hadr = u16::from_le_bytes(w1) & 0x00ff;
                let w3 = ((desc.misc >> 16) as u16 & 0xf000) | (desc.misc as u16 & 0x0fff);
                // Word 3 first: OWN in word 1 hands the descriptor back last.
                ram.write(at + 6, &w3.to_le_bytes()).is_ok()
                    && ram
                        .write(at + 2, &(desc.flags | hadr).to_le_bytes())
                        .is_ok()
            }
            Style::Pci | Style::PciSwapped => {
                let misc_at = if self == Style::Pci { at + 8 } else { at };
                let d1 = u32::from(desc.flags) << 16 | u32::from(desc.bcnt);
                ram.write(misc_at, &desc.misc.to_le_bytes()).is_ok()
                    && ram.write(at + 4, &d1.to_le_bytes()).is_ok()
            }
        }
    }
}

/// Frames refused or damaged, by reason; never silent.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drops {
    /// A descriptor or buffer outside guest RAM (MERR).
    pub tx_dma_error: u64,
    /// A frame whose chain ran out before ENP (UFLO).
    pub tx_underflow: u64,
    /// A frame longer than the wire allows (BABL).
    pub tx_babble: u64,
    /// A descriptor in the middle of nowhere: no STP where a frame starts.
    pub tx_no_stp: u64,
    /// Zero-length buffers seen (legal, counted).
    pub tx_zero_bcnt: u64,
    /// Frames the backend refused or failed to send.
    pub tx_backend: u64,
    /// Received while the receiver was off (STOP, DRX, not started).
    pub rx_off: u64,
    /// Not for our address.
    pub rx_filtered: u64,
    /// No receive descriptor owned by the chip (MISS).
    pub rx_missed: u64,
    /// Did not fit the owned buffers (OFLO).
    pub rx_overflow: u64,
    /// A receive descriptor or buffer outside guest RAM (MERR).
    pub rx_dma_error: u64,
}

/// How descriptors are laid out: the style, and address bits 31:24 for the
/// 16-bit style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Software style.
    pub style: Style,
    /// CSR2[15:8] << 24 in the 16-bit style, else 0.
    pub high: u32,
}

/// Where a ring walk stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RingState {
    /// Ring base address.
    pub base: u32,
    /// Entries.
    pub len: u16,
    /// The current entry.
    pub index: u16,
}

impl RingState {
    fn addr(&self, style: Style, i: u16) -> u64 {
        u64::from(self.base) + u64::from(i % self.len.max(1)) * style.size()
    }

    fn advance(&mut self) {
        self.index = (self.index + 1) % self.len.max(1);
    }
}

/// What one transmit pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxOutcome {
    /// Frames handed to the wire.
    pub frames: u64,
    /// Descriptors given back to the driver.
    pub descriptors: u64,
    /// CSR0 bits to set (TINT, BABL, MERR).
    pub csr0: u16,
    /// The transmitter must stop (underflow without DXSUFLO).
    pub stop_tx: bool,
}

/// Transmits every complete frame the driver owns, in one pass over the
/// ring at most, handing each to `send` (which returns false when the wire
/// refused it). `tint_for` tells whether a finished descriptor raises TINT.
pub fn transmit(
    ram: &dyn GuestRam,
    Layout { style, high }: Layout,
    ring: &mut RingState,
    drops: &mut Drops,
    buf: &mut Vec<u8>,
    tint_for: &dyn Fn(&Desc) -> bool,
    send: &mut dyn FnMut(&[u8]) -> bool,
) -> TxOutcome {
    let mut out = TxOutcome::default();
    if ring.len == 0 {
        return out;
    }
    buf.clear();
    let mut in_frame = false;
    let mut frame_ok = true;
    let mut budget = ring.len;
    while budget > 0 {
        let at = ring.addr(style, ring.index);
        let Some(mut d) = style.load(ram, at, high) else {
            drops.tx_dma_error += 1;
            out.csr0 |= CSR0_MERR;
            break;
        };
        if d.flags & OWN == 0 {
            if in_frame {
                // The chain ran out before ENP: underflow, marked on the
                // last descriptor taken.
                drops.tx_underflow += 1;
                out.stop_tx = true;
                out.csr0 |= CSR0_TINT;
                let prev = ring.addr(style, ring.index + ring.len - 1);
                if let Some(mut p) = style.load(ram, prev, high) {
                    p.flags |= ERR;
                    p.misc |= TMD2_BUFF | TMD2_UFLO;
                    style.store(ram, prev, &p);
                }
            }
            break;
        }
        budget -= 1;
        if !in_frame {
            if d.flags & STP == 0 {
                drops.tx_no_stp += 1;
                d.flags = (d.flags & !OWN) | ERR;
                style.store(ram, at, &d);
                ring.advance();
                out.descriptors += 1;
                continue;
            }
            in_frame = true;
            frame_ok = true;
            buf.clear();
        }
        let len = d.buf_len();
        if len == 0 {
            drops.tx_zero_bcnt += 1;
        }
        if frame_ok {
            if buf.len() + len > MAX_TX_FRAME {
                frame_ok = false;
                drops.tx_babble += 1;
                out.csr0 |= CSR0_BABL;
            } else {
                let start = buf.len();
                buf.resize(start + len, 0);
                if ram.read(u64::from(d.addr), &mut buf[start..]).is_err() {
                    frame_ok = false;
                    drops.tx_dma_error += 1;
                    out.csr0 |= CSR0_MERR;
                }
            }
        }
        let end = d.flags & ENP != 0;
        let last_of_ring = budget == 0 && !end;
        d.flags &= !OWN;
        if !frame_ok {
            d.flags |= ERR;
        }
        if last_of_ring {
            // A chain as long as the ring without ENP.
            drops.tx_underflow += 1;
            d.flags |= ERR;
            d.misc |= TMD2_BUFF | TMD2_UFLO;
            out.stop_tx = true;
        }
        if end && frame_ok {
            if buf.len() < MIN_FRAME {
                buf.resize(MIN_FRAME, 0);
            }
            if send(buf) {
                out.frames += 1;
            } else {
                drops.tx_backend += 1;
            }
        }
        if !style.store(ram, at, &d) {
            drops.tx_dma_error += 1;
            out.csr0 |= CSR0_MERR;
        }
        if tint_for(&d) || !frame_ok || last_of_ring {
            out.csr0 |= CSR0_TINT;
        }
        out.descriptors += 1;
        ring.advance();
        if end || last_of_ring {
            in_frame = false;
        }
    }
    out
}

/// What one received frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxOutcome {
    /// Written to the ring; RINT.
    Delivered,
    /// Dropped; the reason is counted. `miss` tells whether CSR0.MISS and
    /// the missed-frame counter move.
    Dropped {
        /// CSR0.MISS and the missed-frame counter move.
        miss: bool,
        /// CSR0.MERR moves (a DMA error).
        merr: bool,
    },
}

/// Writes `frame` (without FCS) into the receive ring, padding it to the
/// minimum size and appending the FCS, across as many owned descriptors as
/// it needs (at most one pass over the ring).
pub fn receive(
    ram: &dyn GuestRam,
    Layout { style, high }: Layout,
    ring: &mut RingState,
    drops: &mut Drops,
    frame: &[u8],
) -> RxOutcome {
    if ring.len == 0 {
        drops.rx_missed += 1;
        return RxOutcome::Dropped {
            miss: true,
            merr: false,
        };
    }
    let mut data = frame[..frame.len().min(MAX_RX_FRAME - 4)].to_vec();
    if data.len() < MIN_FRAME {
        data.resize(MIN_FRAME, 0);
    }
    let fcs = crc32fast::hash(&data);
    data.extend_from_slice(&fcs.to_le_bytes());
    let first_at = ring.addr(style, ring.index);
    match style.load(ram, first_at, high) {
        Some(d) if d.flags & OWN != 0 => {}
        Some(_) => {
            drops.rx_missed += 1;
            return RxOutcome::Dropped {
                miss: true,
                merr: false,
            };
        }
        None => {
            drops.rx_dma_error += 1;
            return RxOutcome::Dropped {
                miss: false,
                merr: true,
            };
        }
    }
    let mut written = 0usize;
    let mut taken = 0u16;
    loop {
        let at = ring.addr(style, ring.index);
        let Some(mut d) = style.load(ram, at, high) else {
            drops.rx_dma_error += 1;
            return RxOutcome::Dropped {
                miss: false,
                merr: true,
            };
        };
        let len = d.buf_len().min(data.len() - written);
        if ram
            .write(u64::from(d.addr), &data[written..written + len])
            .is_err()
        {
            drops.rx_dma_error += 1;
            d.flags = (d.flags & !OWN) | ERR | BUFF_RX;
            style.store(ram, at, &d);
            ring.advance();
            return RxOutcome::Dropped {
                miss: false,
                merr: true,
            };
        }
        written += len;
        taken += 1;
        d.flags &= !(OWN | ERR | STP | ENP | OFLO | BUFF_RX);
        if taken == 1 {
            d.flags |= STP;
        }
        let next_owned = || {
            let next = ring.addr(style, ring.index + 1);
            style
                .load(ram, next, high)
                .is_some_and(|n| n.flags & OWN != 0)
        };
        let done = written == data.len();
        let can_continue = !done && taken < ring.len && next_owned();
        if done {
            d.flags |= ENP;
            d.misc = (d.misc & !0x0fff) | data.len() as u32;
        } else if !can_continue {
            d.flags |= ERR | OFLO;
        }
        style.store(ram, at, &d);
        ring.advance();
        if done {
            return RxOutcome::Delivered;
        }
        if !can_continue {
            drops.rx_overflow += 1;
            return RxOutcome::Dropped {
                miss: false,
                merr: false,
            };
        }
    }
}
