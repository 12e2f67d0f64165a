/* The PCnet-PCI II (Am79C970A, a Lance) as the guests' drivers use it: word
 * I/O port offsets, register numbers, CSR0 and CSR4 bits, and the bits of a
 * descriptor in software style 2, named as in the data sheet. The host's
 * model of the chip is src/devices/pcnet/ (registers.rs, rings.rs). */
#ifndef WS_LANCE_H
#define WS_LANCE_H

#include "kernel.h"

/* PCI configuration dword 0: device 0x2000, vendor 0x1022 (AMD). */
#define PCNET_PCI_ID 0x20001022u

/* Offsets in the I/O BAR, word I/O (WIO) mode. The address PROM (the MAC
 * address in bytes 0-5) is at 0. */
#define LANCE_APROM 0x00
#define LANCE_RDP 0x10   /* register data port: the CSR that RAP selects */
#define LANCE_RAP 0x12   /* register address port */
#define LANCE_RESET 0x14 /* a read resets the chip */
#define LANCE_BDP 0x16   /* bus configuration register data port */

/* Register numbers, written to RAP. */
#define CSR0 0         /* status and control */
#define CSR_IADR_LO 1  /* initialization block address, bits 15-0 */
#define CSR_IADR_HI 2  /* and bits 31-16 */
#define CSR_FEATURES 4 /* test and features control */
#define BCR_SWSTYLE 20 /* software style */

/* CSR0 bits. INEA is the Lance's name for the interrupt enable (IENA in
 * the PCnet data sheets). Writing 1 clears BABL..IDON; writing 0 to a
 * command bit (INIT, STRT, STOP, TDMD) does nothing. */
#define CSR0_ERR 0x8000  /* BABL | CERR | MISS | MERR */
#define CSR0_BABL 0x4000 /* transmitter timeout */
#define CSR0_CERR 0x2000 /* collision error */
#define CSR0_MISS 0x1000 /* missed frame */
#define CSR0_MERR 0x0800 /* memory error */
#define CSR0_RINT 0x0400 /* receive interrupt */
#define CSR0_TINT 0x0200 /* transmit interrupt */
#define CSR0_IDON 0x0100 /* initialization done */
#define CSR0_INTR 0x0080 /* an interrupt is asserted */
#define CSR0_INEA 0x0040 /* interrupt enable */
#define CSR0_RXON 0x0020 /* receiver on */
#define CSR0_TXON 0x0010 /* transmitter on */
#define CSR0_TDMD 0x0008 /* transmit demand: poll the transmit ring now */
#define CSR0_STOP 0x0004
#define CSR0_STRT 0x0002 /* start */
#define CSR0_INIT 0x0001 /* read the initialization block */
/* The error bits, cleared by writing 1. */
#define CSR0_ERRORS (CSR0_BABL | CSR0_CERR | CSR0_MISS | CSR0_MERR)
/* The bits that are commands or INEA: what an acknowledging write leaves 0. */
#define CSR0_COMMANDS (CSR0_INEA | CSR0_TDMD | CSR0_STOP | CSR0_STRT | CSR0_INIT)

/* CSR4 bits. */
#define CSR4_APAD_XMT 0x0800 /* pad short transmit frames */
#define CSR4_MFCOM 0x0100    /* mask the missed frame counter overflow interrupt */
#define CSR4_RCVCCOM 0x0010  /* mask the receive collision counter overflow interrupt */
#define CSR4_TXSTRTM 0x0004  /* mask the transmit start interrupt */
#define CSR4_JABM 0x0001     /* mask the jabber interrupt */

/* BCR20: software style 2, 32-bit descriptors and initialization block. */
#define SWSTYLE_PCNET_PCI 2

/* The initialization block's RLEN and TLEN: log2 of the ring's length in
 * the upper four bits of their byte. */
#define INIT_RING_LEN(log2) ((log2) << 4)

/* A descriptor's second word (RMD1 and TMD1 in style 2). */
#define DESC_OWN 0x80000000u /* the chip owns it */
#define DESC_ERR 0x40000000u /* an error is recorded in it */
#define DESC_STP 0x02000000u /* start of packet */
#define DESC_ENP 0x01000000u /* end of packet */
#define DESC_ONES 0xf000u    /* bits 15-12 must be ones */
#define DESC_BCNT_MASK 0xfffu
/* The buffer's length, as the two's complement BCNT field holds it. */
#define DESC_BCNT(len) ((u32)(-(int)(len)) & DESC_BCNT_MASK)
/* A receive descriptor's third word (RMD2): the frame's length, FCS
 * included. */
#define RMD2_MCNT_MASK 0xfffu

#endif
