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

#define RAP 0x12
#define RDP 0x10
#define OWN 0x80000000u
#define STP 0x02000000u
#define ENP 0x01000000u

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
    outw(io + RAP, n);
    outw(io + RDP, v);
}

static u16 csr_r(u16 n) {
    outw(io + RAP, n);
    return inw(io + RDP);
}

static void start(u32 iadr) {
    inw(io + 0x14);
    outw(io + RAP, 20);
    outw(io + 0x16, 2);
    ib.rlen = 4 << 4;
    ib.tlen = 4 << 4;
    ib.rdra = (u32)(u64)rx;
    ib.tdra = (u32)(u64)tx;
    csr_w(1, (u16)iadr);
    csr_w(2, (u16)(iadr >> 16));
    csr_w(0, 0x0001);
    csr_w(0, 0x0002);
}

static u32 bcnt(u32 len) { return 0xf000 | ((u32)(-(int)len) & 0xfff); }

static void kick(void) { csr_w(0, 0x0008); }

void guest_main(void) {
    u64 mode = arg_u64("mode", 0);
    int dev;
    for (dev = 0; dev < 32 && pci_read(dev, 0) != 0x20001022u; dev++)
        ;
    if (dev == 32)
        guest_exit(2);
    io = (u16)(pci_read(dev, 0x10) & ~3u);
    pci_write(dev, 4, pci_read(dev, 4) | 5);
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
                tx[i].flags = OWN | (i == 0 ? STP : 0) | bcnt(64);
            }
            csr_w(0, 0x0002); /* the underflow stopped the transmitter */
            kick();
        }
        break;
    case 3:
        start((u32)(u64)&ib);
        tx[0] = (struct desc){(u32)(u64)buf, OWN | STP | ENP | 0xf000, 0, 0};          /* BCNT 0 */
        tx[1] = (struct desc){(u32)(u64)buf, OWN | STP | bcnt(4095), 0, 0};            /* huge */
        tx[2] = (struct desc){(u32)(u64)buf, OWN | ENP | bcnt(4095), 0, 0};
        tx[3] = (struct desc){(u32)(u64)buf, OWN | STP | ENP | (0x0000 | 5), 0, 0};    /* no ONES */
        kick();
        rounds = 4;
        break;
    case 4:
        start((u32)(u64)&ib);
        for (int i = 0; i < 8; i++)
            tx[i] = (struct desc){0xfffff000u - (u32)i * 64, OWN | STP | ENP | bcnt(1500), 0, 0};
        kick();
        rx[0] = (struct desc){0xfffff000u, OWN | bcnt(1544), 0, 0};
        rounds = 8;
        break;
    case 5:
        start((u32)(u64)&ib);
        tx[0] = (struct desc){(u32)(u64)buf, OWN | STP | ENP | bcnt(64), 0, 0};
        kick(); /* TINT now pending */
        for (rounds = 0; rounds < 20000; rounds++)
            csr_w(0, rounds & 1 ? 0x0040 : 0x0000);
        csr_w(0, 0x0200); /* ack TINT */
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
            tx[rounds] = (struct desc){(u32)(u64)buf, OWN | STP | ENP | bcnt(64), 0, 0};
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
            volatile u32 w[16]; /* version want prod cons notify want_irq size */
            struct {
                u64 addr;
                u32 len, flags;
            } e[64];
        } r __attribute__((aligned(4096)));
        if (inl(0x3010) != 0x56505357u) {
            kprint("hostile: no pv-nic\n");
            guest_exit(4);
        }
        outl(0x3014, 0xfffff000u);
        outl(0x3014, (u32)(u64)&r + 8);
        outw(0x3014, 1);
        inb(0x3010);
        r.w[6] = 64;
        outl(0x3014, (u32)(u64)&r);
        while (!r.w[4]) /* the host takes the ring: doorbells on */
            __asm__ volatile("pause");
        r.e[0].addr = 0xfffff000u, r.e[0].len = 60;
        r.e[1].addr = (u64)buf, r.e[1].len = 1u << 30;
        r.e[2].addr = (u64)buf, r.e[2].len = 0;
        r.w[2] = 3;
        outl(0x3018, 1);
        u64 deadline = timer_ticks + 100;
        while (r.w[3] != 3 && timer_ticks < deadline)
            __asm__ volatile("pause");
        r.w[2] = 3 + 100000;
        outl(0x3018, 1);
        deadline = timer_ticks + 100;
        while (r.w[3] != r.w[2] && timer_ticks < deadline)
            __asm__ volatile("pause");
        for (int i = 0; i < 64; i++)
            r.e[i].addr = (u64)buf, r.e[i].len = 10, r.e[i].flags = 1;
        r.w[2] += 64;
        outl(0x3018, 1);
        deadline = timer_ticks + 20;
        while (timer_ticks < deadline)
            __asm__ volatile("pause");
        rounds = r.w[2] - r.w[3]; /* 64: the endless chain is left alone */
        outl(0x3014, 0);
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
