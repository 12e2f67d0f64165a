/* hostile: a driver that does what no driver should, to show the host
 * survives it and counts it. mode=1 init block outside RAM; 2 a transmit
 * ring owned end to end with no ENP, kicked again and again; 3 zero and
 * oversized buffer counts; 4 buffers outside RAM; 5 an interrupt storm
 * (INEA toggled with TINT pending); 6 a scan of every port with every width;
 * 7 page tables overwritten (ends in a triple fault); 8 the PVH start info
 * page scribbled over, then frames sent as usual; 9 a CPL0 loop with
 * interrupts off that never halts and never exits (the host must still stop
 * it); 10 all of the guest's memory, its code included, overwritten (ends
 * however the CPU gives up); 11 the paravirtual NIC's ring abused; 12 the
 * interrupt controller and timer abused (the timer asked for 1.19 MHz, EOIs
 * for nothing in service, polls, read-backs, the ELCR all ones), then set
 * up again. Reports CSR0 and what it did, then exits 0 (except 7, 9 and
 * 10). */
#include "kernel.h"
#include "lance.h"

struct desc {
    u32 addr, flags, misc, user;
};

static struct desc rx[16] __attribute__((aligned(16)));
static struct desc tx[16] __attribute__((aligned(16)));
static u8 buf[4096] __attribute__((aligned(16)));
static struct {
    u16 mode;
    u8 rlen, tlen;
    u8 padr[6];
    u16 res;
    u32 ladrf[2];
    u32 rdra, tdra;
} __attribute__((packed, aligned(4))) ib;
static u16 io;

static void csr_w(u16 n, u16 v) {
    outw(io + LANCE_RAP, n);
    outw(io + LANCE_RDP, v);
}

static u16 csr_r(u16 n) {
    outw(io + LANCE_RAP, n);
    return inw(io + LANCE_RDP);
}

static void start(u32 iadr) {
    inw(io + LANCE_RESET);
    outw(io + LANCE_RAP, BCR_SWSTYLE);
    outw(io + LANCE_BDP, SWSTYLE_PCNET_PCI);
    ib.rlen = INIT_RING_LEN(4);
    ib.tlen = INIT_RING_LEN(4);
    ib.rdra = (u32)(u64)rx;
    ib.tdra = (u32)(u64)tx;
    csr_w(CSR_IADR_LO, (u16)iadr);
    csr_w(CSR_IADR_HI, (u16)(iadr >> 16));
    csr_w(CSR0, CSR0_INIT);
    csr_w(CSR0, CSR0_STRT);
}

static u32 bcnt(u32 len) { return DESC_ONES | DESC_BCNT(len); }

static void kick(void) { csr_w(CSR0, CSR0_TDMD); }

void guest_main(void) {
    u64 mode = arg_u64("mode", 0);
    int dev;
    for (dev = 0; dev < 32 && pci_read(dev, PCI_ID) != PCNET_PCI_ID; dev++)
        ;
    if (dev == 32)
        guest_exit(2);
    io = (u16)(pci_read(dev, PCI_BAR0) & PCI_BAR_IO_MASK);
    pci_write(dev, PCI_COMMAND, pci_read(dev, PCI_COMMAND) | PCI_COMMAND_IO | PCI_COMMAND_MASTER);
    u64 rounds = 0;
    switch (mode) {
    case 1:
        start(0xfffff000u);
        break;
    case 2:
        start((u32)(u64)&ib);
        for (rounds = 0; rounds < 100; rounds++) {
            for (int i = 15; i >= 0; i--) {
                tx[i].addr = (u32)(u64)buf;
                tx[i].misc = 0;
                tx[i].flags = DESC_OWN | (i == 0 ? DESC_STP : 0) | bcnt(64);
            }
            csr_w(CSR0, CSR0_STRT); /* the underflow stopped the transmitter */
            kick();
        }
        break;
    case 3:
        start((u32)(u64)&ib);
        tx[0] = (struct desc){(u32)(u64)buf, DESC_OWN | DESC_STP | DESC_ENP | DESC_ONES, 0, 0}; /* BCNT 0 */
        tx[1] = (struct desc){(u32)(u64)buf, DESC_OWN | DESC_STP | bcnt(4095), 0, 0};           /* huge */
        tx[2] = (struct desc){(u32)(u64)buf, DESC_OWN | DESC_ENP | bcnt(4095), 0, 0};
        tx[3] = (struct desc){(u32)(u64)buf, DESC_OWN | DESC_STP | DESC_ENP | 5, 0, 0}; /* no ONES */
        kick();
        rounds = 4;
        break;
    case 4:
        start((u32)(u64)&ib);
        for (int i = 0; i < 8; i++)
            tx[i] = (struct desc){0xfffff000u - (u32)i * 64, DESC_OWN | DESC_STP | DESC_ENP | bcnt(1500), 0, 0};
        kick();
        rx[0] = (struct desc){0xfffff000u, DESC_OWN | bcnt(1544), 0, 0};
        rounds = 8;
        break;
    case 5:
        start((u32)(u64)&ib);
        tx[0] = (struct desc){(u32)(u64)buf, DESC_OWN | DESC_STP | DESC_ENP | bcnt(64), 0, 0};
        kick(); /* TINT now pending */
        for (rounds = 0; rounds < 20000; rounds++)
            csr_w(CSR0, rounds & 1 ? CSR0_INEA : 0);
        csr_w(CSR0, CSR0_TINT); /* ack TINT */
        break;
    case 6: {
        static const u16 skip[][2] = {{0x20, 0x21}, {0x40, 0x43}, {0x61, 0x61}, {0xa0, 0xa1}, {0xf4, 0xf4},
                                      {0x3f8, 0x3ff}, {0x4d0, 0x4d1}, {0xcf8, 0xcff}, {0x3000, 0x300f}};
        for (u32 p = 0; p < 0x10000; p += 7) {
            inb((u16)p);
            inw((u16)p);
            inl((u16)p);
            int skipped = 0;
            for (u64 k = 0; k < sizeof(skip) / sizeof(skip[0]); k++)
                skipped |= p >= skip[k][0] && p <= skip[k][1];
            if (!skipped)
                outb((u16)p, 0);
            rounds++;
        }
        break;
    }
    case 7: {
        /* Clear the top-level page table: the next fetch cannot be mapped. */
        u64 cr3;
        __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
        memset((void *)cr3, 0, 4096);
        __asm__ volatile("mov %0, %%cr3" ::"r"(cr3) : "memory");
        break;
    }
    case 8: {
        /* The host wrote the start info before boot and never reads it
         * again: scribbling over it must change nothing. */
        volatile u8 *si = (volatile u8 *)start_info_paddr;
        for (u32 i = 0; i < 4096; i++)
            si[i] = (u8)(0xa5 ^ i);
        start((u32)(u64)&ib);
        for (rounds = 0; rounds < 8; rounds++) {
            tx[rounds] = (struct desc){(u32)(u64)buf, DESC_OWN | DESC_STP | DESC_ENP | bcnt(64), 0, 0};
            kick();
        }
        break;
    }
    case 9:
        kprint("hostile: spinning with interrupts off\n");
        __asm__ volatile("cli\n1: jmp 1b" ::: "memory");
        break;
    case 10: {
        /* 0xff 0xff is no instruction: whatever runs next faults, and the
         * IDT, page tables and stacks are gone too. */
        kprint("hostile: overwriting all memory\n");
        extern char __image_end[];
        for (volatile u8 *p = (volatile u8 *)0x1000; p < (volatile u8 *)__image_end + 0x10000; p++)
            *p = 0xff;
        break;
    }
    case 11: {
        /* The paravirtual NIC abused: registrations outside RAM and
         * misaligned, accesses of the wrong width, entries outside RAM,
         * absurdly long and empty, a producer far ahead of the ring, and a
         * chain that never ends. */
        static struct {
            volatile struct ws_pv_header h;
            struct ws_pv_entry e[64];
        } r __attribute__((aligned(4096)));
        if (inl(WS_PV_PORT) != WS_PV_MAGIC) {
            kprint("hostile: no pv-nic\n");
            guest_exit(4);
        }
        outl(WS_PV_RING_PORT, 0xfffff000u);
        outl(WS_PV_RING_PORT, (u32)(u64)&r + 8);
        outw(WS_PV_RING_PORT, 1);
        inb(WS_PV_PORT);
        r.h.size = 64;
        outl(WS_PV_RING_PORT, (u32)(u64)&r);
        while (!r.h.notify) /* the host takes the ring: doorbells on */
            __asm__ volatile("pause");
        r.e[0].addr = 0xfffff000u, r.e[0].len = 60;
        r.e[1].addr = (u64)buf, r.e[1].len = 1u << 30;
        r.e[2].addr = (u64)buf, r.e[2].len = 0;
        r.h.prod = 3;
        outl(WS_PV_DOORBELL_PORT, 1);
        u64 deadline = timer_ticks + 100;
        while (r.h.cons != 3 && timer_ticks < deadline)
            __asm__ volatile("pause");
        r.h.prod = 3 + 100000;
        outl(WS_PV_DOORBELL_PORT, 1);
        deadline = timer_ticks + 100;
        while (r.h.cons != r.h.prod && timer_ticks < deadline)
            __asm__ volatile("pause");
        for (int i = 0; i < 64; i++)
            r.e[i].addr = (u64)buf, r.e[i].len = 10, r.e[i].flags = WS_PV_MORE;
        r.h.prod += 64;
        outl(WS_PV_DOORBELL_PORT, 1);
        deadline = timer_ticks + 20;
        while (timer_ticks < deadline)
            __asm__ volatile("pause");
        rounds = r.h.prod - r.h.cons; /* 64: the endless chain is left alone */
        outl(WS_PV_RING_PORT, 0);
        break;
    }
    case 12: {
        u8 elcr0 = inb(0x4d0), elcr1 = inb(0x4d1);
        u64 t0 = timer_ticks;
        outb(0x43, 0x34); /* channel 0, rate generator, a count of 1 */
        outb(0x40, 1);
        outb(0x40, 0);
        for (u32 i = 0; i < 2000; i++) {
            outb(0x20, 0x20);                 /* EOIs for nothing in service */
            outb(0xa0, (u8)(0x60 | (i & 7)));
            outb(0x20, 0x0c);                 /* poll: acknowledges what it finds */
            inb(0x20);
            outb(0x20, 0x20);
            outb(0x43, 0xc2);                 /* read-back of channel 0 */
            inb(0x40);
            inb(0x40);
            outb(0x4d0, 0xff);
            outb(0x4d1, 0xff);
            outb(0x4d0, elcr0);
            outb(0x4d1, elcr1);
        }
        rounds = timer_ticks - t0; /* ticks taken during the storm */
        outb(0x43, 0x34);
        outb(0x40, 11931 & 0xff);
        outb(0x40, 11931 >> 8);
        break;
    }
    default:
        kprint("hostile: pick a mode 1..12\n");
        guest_exit(3);
    }
    static const char *const names[] = {"hostile_mode", "hostile_rounds", "csr0_after"};
    u64 values[] = {mode, rounds, csr_r(0)};
    report_counters(names, values, 3);
    kprint("hostile: survived\n");
    guest_exit(0);
}
