/* The guest network stack: a PCnet-PCI II driver in software style 2 and
 * word I/O, written from the chip's semantics; ARP; and UDP/IPv4 datagrams
 * whose payload starts with a sequence number. Transmit descriptor chains
 * are a header buffer plus the caller's bytes (zero copy). The interrupt
 * handler acknowledges CSR0 the way pcnet32 of the paper's era did (RAP
 * saved and restored, about a dozen port accesses per packet with the
 * kick). Where worldswitch offers its paravirtual NIC (pv-nic), datagrams
 * go on its transmit ring, and frames arrive on its receive ring, whenever
 * the host's ring headers ask for it (the ABI is in abi.h, mirrored by the
 * host in src/machine/devices/pvnet/). The chip's registers and bits are
 * named in lance.h. */
#include "net.h"
#include "lance.h"
#include "user.h"

#define RX_LOG2 4
#define TX_LOG2 5
#define RX_N (1 << RX_LOG2)
#define TX_N (1 << TX_LOG2)
#define RX_BUF 1544
#define HDR 50 /* Ethernet 14 + IP 20 + UDP 8 + sequence 8 */

struct desc {
    u32 addr, flags, misc, user;
};

struct init_block {
    u16 mode;
    u8 rlen, tlen;
    u8 padr[6];
    u16 reserved;
    u32 ladrf[2];
    u32 rdra, tdra;
} __attribute__((packed, aligned(4)));

static struct desc rx_ring[RX_N] __attribute__((aligned(16)));
static struct desc tx_ring[TX_N] __attribute__((aligned(16)));
static u8 rx_buf[RX_N][RX_BUF];
static u8 tx_hdr[TX_N][64] __attribute__((aligned(16)));
static struct init_block ib;
static u16 io;
static int irq_line;
static u8 mac[6], peer_mac[6];
static volatile int peer_known;
static int rx_cur, tx_next, tx_done;
static u16 ip_id;
static u64 seq;
static u8 hdr_template[42] __attribute__((aligned(8)));
static int template_valid;
static u32 template_sum;

static const u8 my_ip[4] = {192, 0, 2, 2};
static const u8 peer_ip[4] = {192, 0, 2, 1};

/* Counters the host sees through the mailbox. */
enum {
    C_FRAMES, C_BYTES, C_SENDS, C_IRQS, C_RAP_OUT, C_RAP_IN, C_RDP_OUT, C_RDP_IN,
    C_BDP_OUT, C_BDP_IN, C_RESET_IN, C_RX_FRAMES, C_RING_FULL, C_ARP_TIMEOUT,
    C_PV_FRAMES, C_PV_DOORBELLS, C_PV_FULL, C_PV_IRQS, C_NIC_SWITCHES,
    C_PV_RX_FRAMES, C_PV_RX_DOORBELLS, C_PV_RX_POLLS, C_RX_SWITCHES, C_N
};
static const char *const counter_names[C_N] = {
    "frames_sent", "bytes_sent", "sends", "nic_irqs", "port_rap_out", "port_rap_in",
    "port_rdp_out", "port_rdp_in", "port_bdp_out", "port_bdp_in", "port_reset_in",
    "frames_received", "tx_ring_full_waits", "arp_timeouts",
    "pv_frames", "pv_doorbells", "pv_ring_full_waits", "pv_irqs", "nic_switches",
    "pv_rx_frames", "pv_rx_doorbells", "pv_rx_polls", "rx_switches",
};
static u64 counters[C_N];

/* The paravirtual NIC's ring header and entries. A datagram is two
 * entries, its header buffer then the caller's bytes (no copy: copying at
 * CPL0 is emulated string moves on some hosts), and send() returns once
 * the host has sent them. */
#define PV_N 64
static struct {
    volatile struct ws_pv_header h;
    struct ws_pv_entry e[PV_N];
} pv __attribute__((aligned(4096)));
static u8 pv_hdr[PV_N][64] __attribute__((aligned(64)));
static int pv_present, pv_on;
static u32 pv_prod;
static void pv_init(void);

/* Its receive ring: as many buffers as the Lance's ring has, so the two
 * paths differ in mechanism, not in room. */
#define PV_RX_N RX_N
static struct {
    volatile struct ws_pv_header h;
    struct ws_pv_entry e[PV_RX_N];
} pv_rx __attribute__((aligned(4096)));
static u8 pv_rx_buf[PV_RX_N][RX_BUF];
static u32 pv_rx_cons; /* buffers the guest has taken back */
static int pv_rx_on;
static void rx_follow(void);

/* A full barrier without SSE (mfence cannot be emulated at CPL0 here): an
 * index must be visible before the other side's flag is read. */
static inline void full_fence(void) { __asm__ volatile("lock; addl $0, (%%rsp)" ::: "memory", "cc"); }

/* Counted accesses to the port at `off` in the NIC's I/O space, which
 * starts at `base`: a port access clobbers memory, so the hot paths read
 * io once and pass it rather than have it reloaded after every access. */
static void nic_out(u16 base, u16 off, u16 v) {
    counters[off == LANCE_RAP ? C_RAP_OUT : off == LANCE_RDP ? C_RDP_OUT : C_BDP_OUT]++;
    outw(base + off, v);
}

static u16 nic_in(u16 base, u16 off) {
    counters[off == LANCE_RAP   ? C_RAP_IN
             : off == LANCE_RDP ? C_RDP_IN
             : off == LANCE_BDP ? C_BDP_IN
                                : C_RESET_IN]++;
    return inw(base + off);
}

static u16 csr_read(u16 n) {
    nic_out(io, LANCE_RAP, n);
    return nic_in(io, LANCE_RDP);
}

static void csr_write(u16 n, u16 v) {
    nic_out(io, LANCE_RAP, n);
    nic_out(io, LANCE_RDP, v);
}

static void bcr_write(u16 n, u16 v) {
    nic_out(io, LANCE_RAP, n);
    nic_out(io, LANCE_BDP, v);
}

static u16 bswap16(u16 v) { return (u16)((v >> 8) | (v << 8)); }

static void rx_arm(int i) {
    rx_ring[i].addr = (u32)(u64)rx_buf[i];
    /* The buffer's address is written before the chip owns the descriptor;
     * RMD2 is the chip's to write, so clearing it may go with OWN. */
    wmb();
    rx_ring[i].misc = 0;
    rx_ring[i].flags = DESC_OWN | DESC_ONES | DESC_BCNT(RX_BUF);
}

/* Gives back transmit descriptors the chip has finished with. */
static void tx_reclaim(void) {
    while (tx_done != tx_next && !(tx_ring[tx_done].flags & DESC_OWN))
        tx_done = (tx_done + 1) % TX_N;
}

static int tx_free(void) { return TX_N - 1 - ((tx_next - tx_done + TX_N) % TX_N); }

/* Transmit-path timing (guest arg path_timing=1): the host stamps a slot
 * at each kick, and the kick turns the stamps into the paper's Figure 5
 * segments, relating guest and host TSCs by the tightest of 16 pings. */
static volatile struct ws_path_slot path_slot __attribute__((aligned(8))); /* the host writes it */
static int path_on;
static long path_offset; /* host TSC - guest TSC */
static u64 path_offset_err, path_seen, path_kicks;
static long path_seg[5];

static void path_init(void) {
    u64 best = ~0ul;
    for (int i = 0; i < 16; i++) {
        u64 g1 = rdtsc();
        outl(WS_PATH_PORT, (u32)(u64)&path_slot);
        u64 g2 = rdtsc();
        if (g2 - g1 < best) {
            best = g2 - g1;
            path_offset = (long)(path_slot.host_exit - (g1 + (g2 - g1) / 2));
        }
    }
    path_offset_err = best / 2;
    path_seen = path_slot.stamps;
    path_on = 1;
}

static void path_account(u64 before, u64 after) {
    const volatile struct ws_path_slot *p = &path_slot;
    if (p->stamps == path_seen)
        return;
    path_seen = p->stamps;
    if (p->host_tap_start < p->host_exit || p->host_reentry < p->host_tap_end)
        return; /* no frame went out on this kick */
    path_seg[0] += (long)(p->host_exit - before) - path_offset;
    path_seg[1] += (long)(p->host_tap_start - p->host_exit);
    path_seg[2] += (long)(p->host_tap_end - p->host_tap_start);
    path_seg[3] += (long)(p->host_reentry - p->host_tap_end);
    path_seg[4] += (long)(after - p->host_reentry) + path_offset;
    path_kicks++;
}

/* Tells the chip to look at the transmit ring now. */
static void tx_kick(void) {
    u16 base = io;
    wmb(); /* descriptors and buffers are written before the chip is told */
    nic_out(base, LANCE_RAP, CSR0);
    if (!path_on) {
        nic_out(base, LANCE_RDP, CSR0_TDMD | CSR0_INEA);
        return;
    }
    /* Interrupts off around the timed OUT, so the transmit interrupt the
     * kick raises is taken after the measurement, not inside it. */
    u64 flags = irq_save();
    path_slot.guest_before = rdtsc();
    nic_out(base, LANCE_RDP, CSR0_TDMD | CSR0_INEA);
    u64 after = rdtsc();
    path_account(path_slot.guest_before, after);
    irq_restore(flags);
}

/* Queues a frame of a header buffer and an optional body. */
static void tx_frame(int slot_hdr_len, const u8 *body, u64 body_len) {
    int first = tx_next;
    int second = (first + 1) % TX_N;
    u32 first_flags = DESC_OWN | DESC_STP | DESC_ONES | DESC_BCNT(slot_hdr_len);
    tx_ring[first].addr = (u32)(u64)tx_hdr[first];
    tx_ring[first].misc = 0;
    if (body_len) {
        tx_ring[second].addr = (u32)(u64)body;
        tx_ring[second].misc = 0;
        tx_ring[second].flags = DESC_OWN | DESC_ENP | DESC_ONES | DESC_BCNT(body_len);
        tx_next = (second + 1) % TX_N;
    } else {
        first_flags |= DESC_ENP;
        tx_next = second;
    }
    /* The chip may take the chain once STP is owned: everything else,
     * the header buffer included, is written before, and STP's OWN last. */
    wmb();
    tx_ring[first].flags = first_flags;
}

/* Waits until `need` descriptors are free: called with interrupts off,
 * it turns them on while it halts (the interrupt handler reclaims). */
static void tx_wait(int need) {
    tx_reclaim();
    while (tx_free() < need) {
        counters[C_RING_FULL]++;
        u32 seen = (u32)tx_done;
        __asm__ volatile("sti" ::: "memory");
        halt_while32((const volatile u32 *)&tx_done, seen);
        __asm__ volatile("cli" ::: "memory");
        tx_reclaim();
    }
}

static void arp_send(u16 op, const u8 *target_mac, const u8 *target_ip) {
    tx_wait(1);
    u8 *f = tx_hdr[tx_next];
    memset(f, 0, 60);
    memcpy(f, op == 1 ? (const u8 *)"\xff\xff\xff\xff\xff\xff" : target_mac, 6);
    memcpy(f + 6, mac, 6);
    f[12] = 0x08, f[13] = 0x06;
    f[14] = 0, f[15] = 1, f[16] = 0x08, f[17] = 0, f[18] = 6, f[19] = 4;
    f[20] = 0, f[21] = (u8)op;
    memcpy(f + 22, mac, 6);
    memcpy(f + 28, my_ip, 4);
    memcpy(f + 32, target_mac, 6);
    memcpy(f + 38, target_ip, 4);
    tx_frame(60, 0, 0);
    tx_kick();
}

void (*udp_rx_hook)(u16 port, const u8 *payload, u64 len);

static void rx_udp(const u8 *f, u64 len) {
    const u8 *ip = f + 14;
    if (len < 42 || ip[0] != 0x45 || ip[9] != 17 || memcmp(ip + 16, my_ip, 4))
        return;
    u64 total = (u64)(ip[2] << 8 | ip[3]);
    const u8 *udp = ip + 20;
    u64 udp_len = (u64)(udp[4] << 8 | udp[5]);
    if (total + 14 > len || udp_len < 8 || udp_len + 20 > total)
        return;
    if (udp_rx_hook)
        udp_rx_hook((u16)(udp[2] << 8 | udp[3]), udp + 8, udp_len - 8);
}

static void rx_frame(const u8 *f, u64 len) {
    counters[C_RX_FRAMES]++;
    if (len >= 42 && f[12] == 0x08 && f[13] == 0x00) {
        rx_udp(f, len);
        return;
    }
    if (len < 42 || f[12] != 0x08 || f[13] != 0x06)
        return;
    u16 op = (u16)(f[20] << 8 | f[21]);
    if (op == 2 && !memcmp(f + 28, peer_ip, 4)) {
        memcpy(peer_mac, f + 22, 6);
        template_valid = 0;
        peer_known = 1;
    } else if (op == 1 && !memcmp(f + 38, my_ip, 4)) {
        arp_send(2, f + 22, f + 28);
    }
}

static void rx_poll(void) {
    for (int n = 0; n < RX_N && !(rx_ring[rx_cur].flags & DESC_OWN); n++) {
        int i = rx_cur;
        struct desc *d = &rx_ring[i];
        if ((d->flags & (DESC_STP | DESC_ENP)) == (DESC_STP | DESC_ENP) && !(d->flags & DESC_ERR)) {
            u64 len = d->misc & RMD2_MCNT_MASK;
            if (len >= 64)
                rx_frame(rx_buf[i], len - 4);
        }
        rx_arm(i);
        rx_cur = (i + 1) % RX_N;
    }
}

static void pcnet_isr(void) {
    u16 base = io;
    counters[C_IRQS]++;
    u16 saved = nic_in(base, LANCE_RAP);
    nic_out(base, LANCE_RAP, CSR0);
    u16 csr0 = nic_in(base, LANCE_RDP);
    for (int loops = 0; (csr0 & (CSR0_ERR | CSR0_RINT | CSR0_TINT | CSR0_IDON)) && loops < 5; loops++) {
        nic_out(base, LANCE_RAP, CSR0);
        nic_out(base, LANCE_RDP, csr0 & ~CSR0_COMMANDS); /* ack what we saw; INEA off meanwhile */
        if (csr0 & CSR0_RINT)
            rx_poll();
        if (csr0 & CSR0_TINT)
            tx_reclaim();
        nic_out(base, LANCE_RAP, CSR0);
        csr0 = nic_in(base, LANCE_RDP);
    }
    nic_out(base, LANCE_RAP, CSR0);
    nic_out(base, LANCE_RDP, CSR0_ERRORS | CSR0_IDON | CSR0_INEA); /* clear errors and IDON, INEA back on */
    nic_out(base, LANCE_RAP, saved);
    rx_follow();
}

static u64 net_syscall(u64 n, u64 a, u64 b, u64 c);

int net_init(void) {
    int dev;
    for (dev = 0; dev < 32; dev++)
        if (pci_read(dev, PCI_ID) == PCNET_PCI_ID)
            break;
    if (dev == 32) {
        kprint("net: no PCnet on PCI bus 0\n");
        return -1;
    }
    io = (u16)(pci_read(dev, PCI_BAR0) & PCI_BAR_IO_MASK);
    irq_line = (int)(pci_read(dev, PCI_INTERRUPT_LINE) & 0xff);
    pci_write(dev, PCI_COMMAND, pci_read(dev, PCI_COMMAND) | PCI_COMMAND_IO | PCI_COMMAND_MASTER);

    nic_in(io, LANCE_RESET);
    bcr_write(BCR_SWSTYLE, SWSTYLE_PCNET_PCI);
    for (int i = 0; i < 6; i++)
        mac[i] = inb(io + LANCE_APROM + i);
    for (int i = 0; i < RX_N; i++)
        rx_arm(i);
    ib.mode = 0;
    ib.rlen = INIT_RING_LEN(RX_LOG2);
    ib.tlen = INIT_RING_LEN(TX_LOG2);
    memcpy(ib.padr, mac, 6);
    ib.rdra = (u32)(u64)rx_ring;
    ib.tdra = (u32)(u64)tx_ring;
    csr_write(CSR_IADR_LO, (u16)((u64)&ib & 0xffff));
    csr_write(CSR_IADR_HI, (u16)((u64)&ib >> 16));
    /* The reset value (every counter and start interrupt masked), and short
     * frames padded. */
    csr_write(CSR_FEATURES, CSR4_APAD_XMT | CSR4_MFCOM | CSR4_RCVCCOM | CSR4_TXSTRTM | CSR4_JABM);
    csr_write(CSR0, CSR0_INIT);
    int tries = 0;
    while (!(csr_read(CSR0) & CSR0_IDON) && ++tries < 100)
        ;
    if (tries == 100) {
        kprint("net: the NIC did not initialise\n");
        return -1;
    }
    irq_set_handler(irq_line, pcnet_isr);
    irq_set_level(irq_line);
    irq_unmask(irq_line);
    if (irq_line >= 8)
        irq_unmask(2);
    csr_write(CSR0, CSR0_STRT | CSR0_INEA); /* IDON raises the first interrupt */
    if (arg_u64("path_timing", 0) && mailbox_present())
        path_init();

    /* Resolve the peer; without an answer (no host stack) use broadcast. */
    arp_send(1, (const u8 *)"\0\0\0\0\0\0", peer_ip);
    u64 deadline = timer_ticks + 50;
    while (!peer_known && timer_ticks < deadline)
        __asm__ volatile("sti; hlt");
    if (!peer_known) {
        counters[C_ARP_TIMEOUT]++;
        memset(peer_mac, 0xff, 6);
        template_valid = 0;
        kprint("net: no ARP reply from 192.0.2.1; sending to broadcast\n");
    }
    pv_init();
    syscall_hook = net_syscall;
    return 0;
}

/* The headers every datagram shares, and their IPv4 checksum sum without
 * the words that change (total length, ID): built once the peer's address
 * is known, so a datagram's headers are a copy and three words, not a
 * checksum loop (every guest kernel instruction is emulated on some hosts). */

static void template_build(void) {
    u8 *h = hdr_template;
    memset(h, 0, sizeof(hdr_template));
    memcpy(h, peer_mac, 6);
    memcpy(h + 6, mac, 6);
    h[12] = 0x08;
    u8 *ip = h + 14;
    ip[0] = 0x45, ip[6] = 0x40, ip[8] = 64, ip[9] = 17;
    memcpy(ip + 12, my_ip, 4);
    memcpy(ip + 16, peer_ip, 4);
    template_sum = 0;
    for (int i = 0; i < 20; i += 2)
        template_sum += (u32)(ip[i] << 8 | ip[i + 1]);
    template_valid = 1;
}

/* Builds Ethernet, IPv4 and UDP headers for `payload` bytes (sequence
 * number included) to the peer's `port` at `h`. */
static void udp_header(u8 *h, u16 port, u64 payload) {
    if (!template_valid)
        template_build();
    memcpy(h, hdr_template, 42);
    u16 total = (u16)(20 + 8 + payload), id = ip_id++;
    u32 sum = template_sum + total + id;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    u8 *ip = h + 14;
    *(u16 *)(ip + 2) = bswap16(total);
    *(u16 *)(ip + 4) = bswap16(id);
    *(u16 *)(ip + 10) = bswap16((u16)~sum);
    u8 *udp = ip + 20;
    *(u16 *)(udp + 0) = bswap16(port);
    *(u16 *)(udp + 2) = bswap16(port);
    *(u16 *)(udp + 4) = bswap16((u16)(8 + payload));
}

/* Posts receive buffer `slot` again. */
static void pv_rx_post(u32 slot) {
    pv_rx.e[slot].addr = (u64)pv_rx_buf[slot];
    pv_rx.e[slot].len = RX_BUF;
    pv_rx.e[slot].flags = 0;
}

/* Takes every frame the host has filled, as NAPI does: no interrupts
 * while polling, each buffer posted again as soon as it is read, the
 * doorbell only when the host waits for buffers, and interrupts back on
 * once empty, with a last look for a frame that came meanwhile. */
static void pv_rx_poll(void) {
    counters[C_PV_RX_POLLS]++;
    pv_rx.h.want_irq = 0;
    for (;;) {
        while (pv_rx_cons != pv_rx.h.cons) {
            u32 slot = pv_rx_cons % PV_RX_N;
            if (!(pv_rx.e[slot].flags & WS_PV_RX_ERR)) {
                counters[C_PV_RX_FRAMES]++;
                rx_frame(pv_rx_buf[slot], pv_rx.e[slot].len);
            }
            pv_rx_post(slot);
            pv_rx_cons++;
            wmb(); /* the entry is posted before the host may fill it */
            pv_rx.h.prod = pv_rx_cons + PV_RX_N;
        }
        full_fence();
        if (pv_rx.h.notify) {
            counters[C_PV_RX_DOORBELLS]++;
            outl(WS_PV_RX_DOORBELL_PORT, 1);
        }
        pv_rx.h.want_irq = 1;
        full_fence();
        if (pv_rx_cons == pv_rx.h.cons)
            return;
        pv_rx.h.want_irq = 0;
    }
}

/* Moves receive to where the host wants it. The OUT returns once no frame
 * goes to the old path any more; what it already holds is taken first,
 * so frames stay in order. Runs in interrupt handlers (a frame on either
 * path brings one). */
static void rx_follow(void) {
    if (!pv_present || (pv_rx.h.want != 0) == pv_rx_on)
        return;
    pv_rx_on = !pv_rx_on;
    outl(WS_PV_RX_PATH_PORT, (u32)pv_rx_on);
    counters[C_RX_SWITCHES]++;
    if (pv_rx_on)
        rx_poll();
    pv_rx_poll();
}

/* TSC cycles per microsecond, measured against the timer at start. */
static u64 tsc_per_us;

/* From one timer tick to the next (interrupts are on here). */
static void tsc_calibrate(void) {
    u64 t = timer_ticks;
    while (timer_ticks == t)
        halt_while64(&timer_ticks, t);
    u64 start = rdtsc();
    t = timer_ticks;
    while (timer_ticks == t)
        halt_while64(&timer_ticks, t);
    tsc_per_us = (rdtsc() - start) / 10000; /* one tick is 10 ms */
}

/* See net.h. The interrupt goes off while the guest looks itself (the
 * host then fills without raising it), and back on before giving up. */
int net_busy_poll(u64 us) {
    if (!pv_rx_on || !tsc_per_us)
        return 0;
    u64 end = rdtsc() + us * tsc_per_us;
    pv_rx.h.want_irq = 0; /* no interrupts while we look ourselves */
    full_fence();
    while (pv_rx.h.cons == pv_rx_cons) {
        if (rdtsc() > end) {
            pv_rx.h.want_irq = 1;
            full_fence();
            if (pv_rx.h.cons == pv_rx_cons)
                return 0;
            break;
        }
        __asm__ volatile("pause");
    }
    u64 flags = irq_save();
    pv_rx_poll();
    irq_restore(flags);
    return 1;
}

static void pv_isr(void) {
    counters[C_PV_IRQS]++;
    if (pv_rx_on)
        pv_rx_poll();
    rx_follow();
}

static void pv_init(void) {
    if (inl(WS_PV_PORT) != WS_PV_MAGIC)
        return;
    pv.h.version = 1;
    pv.h.size = PV_N;
    pv.h.notify = 1;
    for (u32 i = 0; i < PV_RX_N; i++)
        pv_rx_post(i);
    pv_rx.h.version = 1;
    pv_rx.h.size = PV_RX_N;
    pv_rx.h.want_irq = 1;
    pv_rx.h.prod = PV_RX_N;
    tsc_calibrate();
    irq_set_handler(WS_PV_IRQ, pv_isr);
    irq_unmask(WS_PV_IRQ);
    irq_unmask(2);
    outl(WS_PV_RING_PORT, (u32)(u64)&pv);
    outl(WS_PV_RX_RING_PORT, (u32)(u64)&pv_rx);
    pv_present = 1;
}

/* Waits, with interrupts on, while `busy()` holds: asks the host for an
 * interrupt when it consumes, and halts unless it consumed meanwhile.
 * cons is read before want_irq is set, and the host sets cons before it
 * reads want_irq: either the host interrupts, or the halt sees cons move. */
static void pv_wait(int (*busy)(void)) {
    while (busy()) {
        counters[C_PV_FULL]++;
        u32 seen = pv.h.cons;
        pv.h.want_irq = 1;
        full_fence();
        if (pv.h.notify) /* frames posted without a doorbell wait behind us */
            outl(WS_PV_DOORBELL_PORT, 1);
        halt_while32(&pv.h.cons, seen);
        pv.h.want_irq = 0;
    }
}

static int pv_full(void) { return pv_prod - pv.h.cons > PV_N - 2; }
static int pv_pending(void) { return pv.h.cons != pv_prod; }
static int lance_pending(void) {
    tx_reclaim();
    return tx_free() < TX_N - 1;
}

/* Whether to transmit on the paravirtual ring. The host's `want` word
 * moves the transmit path: first everything queued on the other NIC
 * leaves, so datagrams stay in order. */
static int pv_use(void) {
    if (!pv_present || (pv.h.want != 0) == pv_on)
        return pv_on;
    if (pv_on) {
        pv_wait(pv_pending);
    } else {
        for (;;) {
            u32 seen = (u32)tx_done;
            if (!lance_pending())
                break;
            counters[C_RING_FULL]++;
            halt_while32((const volatile u32 *)&tx_done, seen);
        }
    }
    pv_on = !pv_on;
    counters[C_NIC_SWITCHES]++;
    return pv_on;
}

/* Publishes the `n` entries just filled; with `doorbell`, rings it if the
 * host is not already draining. */
static void pv_post(u32 n, int doorbell) {
    pv_prod += n;
    wmb(); /* the entries are filled before the host may consume them */
    pv.h.prod = pv_prod;
    full_fence();
    if (doorbell && pv.h.notify) {
        outl(WS_PV_DOORBELL_PORT, 1);
        counters[C_PV_DOORBELLS]++;
    }
    counters[C_PV_FRAMES]++;
}

/* One datagram on the paravirtual ring; the doorbell after the last of a
 * send() (one per batch), and only if the host is not already draining. */
static void pv_send(const u8 *body, u64 chunk, int last) {
    pv_wait(pv_full);
    u32 a = pv_prod % PV_N, b = (pv_prod + 1) % PV_N;
    u8 *h = pv_hdr[a];
    udp_header(h, NET_PORT, 8 + chunk);
    memcpy(h + 42, &seq, 8);
    seq++;
    pv.e[a].addr = (u64)h;
    pv.e[a].len = HDR;
    pv.e[a].flags = WS_PV_MORE;
    pv.e[b].addr = (u64)body;
    pv.e[b].len = (u32)chunk;
    pv.e[b].flags = 0;
    pv_post(2, last);
    counters[C_FRAMES]++;
    counters[C_BYTES] += chunk;
}

/* A small datagram on the paravirtual ring: its header buffer holds the
 * payload too (copied, as on the Lance), so the caller need not wait. */
static void pv_send_small(u16 port, const u8 *payload, u64 len) {
    pv_wait(pv_full);
    u32 a = pv_prod % PV_N;
    u8 *h = pv_hdr[a];
    udp_header(h, port, len);
    memcpy(h + 42, payload, len);
    pv.e[a].addr = (u64)h;
    pv.e[a].len = (u32)(42 + len);
    pv.e[a].flags = 0;
    pv_post(1, 1);
}

/* The caller's bytes are theirs again once the host has sent them: spin a
 * little (the host thread is usually a TAP write behind), then wait for
 * its interrupt. */
static void pv_complete(void) {
    for (int i = 0; i < 64 && pv_pending(); i++)
        __asm__ volatile("pause");
    pv_wait(pv_pending);
}

/* Like a real kernel's transmit path, this runs with interrupts enabled
 * between datagrams, so each one's transmit interrupt is taken as it comes;
 * building and queueing a datagram is a critical section, the kick is not. */
u64 net_send(const u8 *buf, u64 len) {
    u64 datagrams = 0;
    counters[C_SENDS]++;
    while (len > 0) {
        u64 chunk = len > NET_MAX_PAYLOAD - 8 ? NET_MAX_PAYLOAD - 8 : len;
        if (pv_use()) {
            pv_send(buf, chunk, len == chunk);
            buf += chunk;
            len -= chunk;
            datagrams++;
            if (!len)
                pv_complete();
            continue;
        }
        u64 flags = irq_save();
        tx_wait(2);
        udp_header(tx_hdr[tx_next], NET_PORT, 8 + chunk);
        memcpy(tx_hdr[tx_next] + 42, &seq, 8);
        seq++;
        tx_frame(HDR, buf, chunk);
        counters[C_FRAMES]++;
        counters[C_BYTES] += chunk;
        irq_restore(flags);
        /* Kick with interrupts on, so the transmit interrupt is taken as
         * soon as the guest re-enters (on PVM, a pending interrupt is
         * injected only at an entry with IF set). */
        tx_kick();
        buf += chunk;
        len -= chunk;
        datagrams++;
    }
    return datagrams;
}

void net_send_to(u16 port, const u8 *payload, u64 len) {
    if (len > 64 - HDR + 8)
        len = 64 - HDR + 8; /* small control datagrams: header buffer only */
    if (pv_use()) {
        pv_send_small(port, payload, len);
        return;
    }
    u64 flags = irq_save();
    tx_wait(1);
    udp_header(tx_hdr[tx_next], port, len);
    memcpy(tx_hdr[tx_next] + 42, payload, len);
    tx_frame((int)(42 + len), 0, 0);
    irq_restore(flags);
    tx_kick();
}

void net_report(void) {
    report_counters(counter_names, counters, C_N);
    static const char *const ring[] = {"rx_buffers"};
    u64 rx_buffers = RX_N;
    report_counters(ring, &rx_buffers, 1);
    if (path_on) {
        static const char *const names[] = {"path_kicks", "path_guest_to_exit", "path_exit_to_tap",
                                            "path_tap_write", "path_tap_to_reentry", "path_reentry_to_guest",
                                            "path_tsc_offset", "path_tsc_offset_err"};
        u64 v[] = {path_kicks, (u64)path_seg[0], (u64)path_seg[1], (u64)path_seg[2], (u64)path_seg[3],
                   (u64)path_seg[4], (u64)path_offset, path_offset_err};
        report_counters(names, v, 8);
    }
}

/* The network's system calls; net_init() hooks them in once the NIC is up. */
static u64 net_syscall(u64 n, u64 a, u64 b, u64 c) {
    (void)c;
    if (n == SYS_SEND) {
        /* System calls arrive with interrupts off; a kernel sends with them on. */
        __asm__ volatile("sti" ::: "memory");
        u64 r = net_send((const u8 *)a, b);
        __asm__ volatile("cli" ::: "memory");
        return r;
    }
    return (u64)-1;
}
