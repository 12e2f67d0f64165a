//! PCnet-PCI II (Am79C970A) register map: port offsets, CSR and BCR numbers,
//! bits and reset values, as the datasheet gives them (PCNET.md section 1).

/// I/O BAR size.
pub const IO_SIZE: u16 = 32;
// Word I/O (WIO) offsets; APROM is 0x00-0x0F in both modes.
/// Word I/O: the register data port (the CSR RAP selects).
pub const WIO_RDP: u16 = 0x10;
/// Word I/O: the register address port.
pub const WIO_RAP: u16 = 0x12;
/// Word I/O: a read resets the chip.
pub const WIO_RESET: u16 = 0x14;
/// Word I/O: the bus configuration data port (the BCR RAP selects).
pub const WIO_BDP: u16 = 0x16;
// Double-word I/O (DWIO) offsets.
/// Double-word I/O: the register data port.
pub const DWIO_RDP: u16 = 0x10;
/// Double-word I/O: the register address port.
pub const DWIO_RAP: u16 = 0x14;
/// Double-word I/O: a read resets the chip.
pub const DWIO_RESET: u16 = 0x18;
/// Double-word I/O: the bus configuration data port.
pub const DWIO_BDP: u16 = 0x1c;

// CSR0 bits.
/// CSR0 ERR: BABL, CERR, MISS or MERR is set.
pub const CSR0_ERR: u16 = 1 << 15;
/// CSR0 BABL: a transmit babble.
pub const CSR0_BABL: u16 = 1 << 14;
/// CSR0 CERR: collision error (no heartbeat).
pub const CSR0_CERR: u16 = 1 << 13;
/// CSR0 MISS: a frame was missed (no receive buffer).
pub const CSR0_MISS: u16 = 1 << 12;
/// CSR0 MERR: a memory (DMA) error.
pub const CSR0_MERR: u16 = 1 << 11;
/// CSR0 RINT: a frame was received.
pub const CSR0_RINT: u16 = 1 << 10;
/// CSR0 TINT: a frame was transmitted.
pub const CSR0_TINT: u16 = 1 << 9;
/// CSR0 IDON: initialization is done.
pub const CSR0_IDON: u16 = 1 << 8;
/// CSR0 INTR: some unmasked interrupt flag is set.
pub const CSR0_INTR: u16 = 1 << 7;
/// CSR0 INEA: the interrupt line is enabled.
pub const CSR0_INEA: u16 = 1 << 6;
/// CSR0 RXON: the receiver is on.
pub const CSR0_RXON: u16 = 1 << 5;
/// CSR0 TXON: the transmitter is on.
pub const CSR0_TXON: u16 = 1 << 4;
/// CSR0 TDMD: transmit demand (look at the ring now).
pub const CSR0_TDMD: u16 = 1 << 3;
/// CSR0 STOP: stop the chip.
pub const CSR0_STOP: u16 = 1 << 2;
/// CSR0 STRT: start the chip.
pub const CSR0_STRT: u16 = 1 << 1;
/// CSR0 INIT: read the initialization block.
pub const CSR0_INIT: u16 = 1 << 0;
/// CSR0 bits a write of 1 clears.
pub const CSR0_W1C: u16 =
    CSR0_BABL | CSR0_CERR | CSR0_MISS | CSR0_MERR | CSR0_RINT | CSR0_TINT | CSR0_IDON;
/// CSR0 bits whose OR is ERR.
pub const CSR0_ERRORS: u16 = CSR0_BABL | CSR0_CERR | CSR0_MISS | CSR0_MERR;
/// CSR0 status bits that raise INTR unless masked in CSR3 (CERR never does).
pub const CSR0_INTERRUPTS: u16 =
    CSR0_BABL | CSR0_MISS | CSR0_MERR | CSR0_RINT | CSR0_TINT | CSR0_IDON;

/// CSR4: write-1-to-clear bits, and the interrupt/mask pairs.
pub const CSR4_W1C: u16 = 0x026a;
/// CSR4 interrupt flags and their masks (flag, mask).
pub const CSR4_PAIRS: [(u16, u16); 4] = [
    (1 << 9, 1 << 8),
    (1 << 5, 1 << 4),
    (1 << 3, 1 << 2),
    (1 << 1, 1),
];
/// CSR4 after reset.
pub const CSR4_RESET: u16 = 0x0115;
/// CSR5: write-1-to-clear bits, SPND.
pub const CSR5_W1C: u16 = 0x0a90;
/// CSR5 SPND: suspend.
pub const CSR5_SPND: u16 = 1;
/// CSR5 interrupt/enable pairs that assert INTR: EXDINT/EXDINTE, MPINT/MPINTE.
pub const CSR5_PAIRS: [(u16, u16); 2] = [(1 << 7, 1 << 6), (1 << 4, 1 << 3)];
// CSR15 bits: disable receive and transmit.
/// CSR15 DRX: the receiver is disabled.
pub const CSR15_DRX: u16 = 1;
/// CSR15 DTX: the transmitter is disabled.
pub const CSR15_DTX: u16 = 1 << 1;

// CSR numbers.
/// CSR1: the initialization block address, low half.
pub const CSR_IADR_LO: usize = 1;
/// CSR2: the initialization block address, high half.
pub const CSR_IADR_HI: usize = 2;
/// CSR3: interrupt masks and bus control.
pub const CSR_IMASK: usize = 3;
/// CSR4: test and features control.
pub const CSR_FEATURES: usize = 4;
/// CSR5: extended control and interrupt 1.
pub const CSR_EXT: usize = 5;
/// CSR8-11: the logical address filter.
pub const CSR_LADRF: usize = 8;
/// CSR12-14: the physical address.
pub const CSR_PADR: usize = 12;
/// CSR15: mode.
pub const CSR_MODE: usize = 15;
/// CSR58: software style (the alias of BCR20).
pub const CSR_SWSTYLE: usize = 58;
/// CSR76: receive ring length.
pub const CSR_RCVRL: usize = 76;
/// CSR78: transmit ring length.
pub const CSR_XMTRL: usize = 78;
/// CSR88: chip ID, low half.
pub const CSR_CHIP_ID_LO: usize = 88;
/// CSR89: chip ID, high half.
pub const CSR_CHIP_ID_HI: usize = 89;
/// CSR112: missed frame count.
pub const CSR_MISSED: usize = 112;
/// Am79C970A: part 0x2621, version 1, AMD's manufacturer ID 0x003.
pub const CHIP_ID: u32 = 0x0262_1003;

// BCR numbers and reset values.
/// BCR2: miscellaneous configuration.
pub const BCR_MC: usize = 2;
/// BCR18: burst and bus control.
pub const BCR_BSBC: usize = 18;
/// BCR20: software style.
pub const BCR_SWSTYLE: usize = 20;
/// BCR18 DWIO: double-word I/O mode.
pub const BCR18_DWIO: u16 = 1 << 7;
/// BCR2 APROMWE: the address PROM is writable.
pub const BCR2_APROMWE: u16 = 1 << 8;
/// Reset values of the BCRs that have one (number, value).
pub const BCR_RESET: [(usize, u16); 11] = [
    (0, 5),
    (1, 5),
    (2, 0x0002),
    (4, 0x00c0),
    (5, 0x0084),
    (6, 0x0088),
    (7, 0x0090),
    (18, 0x9001),
    (19, 0x0002),
    (20, 0x0200),
    (22, 0xff06),
];
/// BCR4-7 (LED status) read with LEDOUT (bit 15) set while the link is up.
pub const BCR_LEDOUT: u16 = 1 << 15;
