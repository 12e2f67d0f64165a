//! PCnet-PCI II (Am79C970A) register map: port offsets, CSR and BCR numbers,
//! bits and reset values, as the datasheet gives them (PCNET.md section 1).

/// I/O BAR size.
pub const IO_SIZE: u16 = 32;
/// Word I/O (WIO) offsets; APROM is 0x00-0x0F in both modes.
pub const WIO_RDP: u16 = 0x10;
pub const WIO_RAP: u16 = 0x12;
pub const WIO_RESET: u16 = 0x14;
pub const WIO_BDP: u16 = 0x16;
/// Double-word I/O (DWIO) offsets.
pub const DWIO_RDP: u16 = 0x10;
pub const DWIO_RAP: u16 = 0x14;
pub const DWIO_RESET: u16 = 0x18;
pub const DWIO_BDP: u16 = 0x1c;

/// CSR0 bits.
pub const CSR0_ERR: u16 = 1 << 15;
pub const CSR0_BABL: u16 = 1 << 14;
pub const CSR0_CERR: u16 = 1 << 13;
pub const CSR0_MISS: u16 = 1 << 12;
pub const CSR0_MERR: u16 = 1 << 11;
pub const CSR0_RINT: u16 = 1 << 10;
pub const CSR0_TINT: u16 = 1 << 9;
pub const CSR0_IDON: u16 = 1 << 8;
pub const CSR0_INTR: u16 = 1 << 7;
pub const CSR0_INEA: u16 = 1 << 6;
pub const CSR0_RXON: u16 = 1 << 5;
pub const CSR0_TXON: u16 = 1 << 4;
pub const CSR0_TDMD: u16 = 1 << 3;
pub const CSR0_STOP: u16 = 1 << 2;
pub const CSR0_STRT: u16 = 1 << 1;
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
pub const CSR5_SPND: u16 = 1;
/// CSR5 interrupt/enable pairs that assert INTR: EXDINT/EXDINTE, MPINT/MPINTE.
pub const CSR5_PAIRS: [(u16, u16); 2] = [(1 << 7, 1 << 6), (1 << 4, 1 << 3)];
/// CSR15 bits: disable receive and transmit.
pub const CSR15_DRX: u16 = 1;
pub const CSR15_DTX: u16 = 1 << 1;

/// CSR numbers.
pub const CSR_IADR_LO: usize = 1;
pub const CSR_IADR_HI: usize = 2;
pub const CSR_IMASK: usize = 3;
pub const CSR_FEATURES: usize = 4;
pub const CSR_EXT: usize = 5;
pub const CSR_LADRF: usize = 8;
pub const CSR_PADR: usize = 12;
pub const CSR_MODE: usize = 15;
pub const CSR_SWSTYLE: usize = 58;
pub const CSR_RCVRL: usize = 76;
pub const CSR_XMTRL: usize = 78;
pub const CSR_CHIP_ID_LO: usize = 88;
pub const CSR_CHIP_ID_HI: usize = 89;
pub const CSR_MISSED: usize = 112;
/// Am79C970A: part 0x2621, version 1, AMD's manufacturer ID 0x003.
pub const CHIP_ID: u32 = 0x0262_1003;

/// BCR numbers and reset values.
pub const BCR_MC: usize = 2;
pub const BCR_BSBC: usize = 18;
pub const BCR_SWSTYLE: usize = 20;
pub const BCR18_DWIO: u16 = 1 << 7;
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
