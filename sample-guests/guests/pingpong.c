/* pingpong: request/response latency. Sends rounds=N small datagrams to
 * the peer's echo port (9002), one at a time, waiting for each echo, and
 * reports round-trip times in guest TSC cycles; with seconds=N, as many
 * rounds as fit in N seconds instead. While it waits it busy-polls
 * the receive ring for up to busy_poll_us=N microseconds (default 1000;
 * only where receive is on the pv-nic's ring, as Linux's busy_poll), then
 * halts for the interrupt. */
#include "net.h"

#define ECHO_PORT 9002

static volatile u64 pong_seq = ~0ul;

/* Round trips kept for the percentiles (the first MAX_KEPT). */
#define MAX_KEPT 4096
static u64 kept[MAX_KEPT];

/* Heapsort: this runs at CPL0, which some hosts emulate instruction by
 * instruction, so n log n with no recursion. */
static void sift(u64 *a, u64 root, u64 n) {
    while (2 * root + 1 < n) {
        u64 child = 2 * root + 1;
        if (child + 1 < n && a[child] < a[child + 1])
            child++;
        if (a[root] >= a[child])
            return;
        u64 t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

static void sort(u64 *a, u64 n) {
    for (u64 i = n / 2; i-- > 0;)
        sift(a, i, n);
    for (u64 end = n; end-- > 1;) {
        u64 t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift(a, 0, end);
    }
}

/* The p-th percentile (nearest rank) of n sorted values. */
static u64 percentile(const u64 *a, u64 n, u64 p) {
    if (n == 0)
        return 0;
    u64 rank = (p * n + 99) / 100;
    return a[rank ? rank - 1 : 0];
}

static void on_udp(u16 port, const u8 *p, u64 len) {
    if (port == ECHO_PORT && len >= 8)
        memcpy((void *)&pong_seq, p, 8);
}

void guest_main(void) {
    if (net_init() != 0)
        guest_exit(2);
    u64 rounds = arg_u64("rounds", 1000);
    u64 busy_poll_us = arg_u64("busy_poll_us", 1000);
    u64 seconds = arg_u64("seconds", 0);
    u64 end = timer_ticks + seconds * 100;
    udp_rx_hook = on_udp;
    u64 pongs = 0, timeouts = 0, sum = 0, min = ~0ul, max = 0;
    kprint("pingpong: running\n");
    u64 i;
    for (i = 0; seconds ? timer_ticks < end : i < rounds; i++) {
        u64 t0 = rdtsc();
        u64 msg[2] = {i, t0};
        net_send_to(ECHO_PORT, (const u8 *)msg, sizeof(msg));
        u64 deadline = timer_ticks + 100;
        for (u64 seen; (seen = pong_seq) != i && timer_ticks < deadline;)
            if (!net_busy_poll(busy_poll_us))
                halt_while64(&pong_seq, seen);
        if (pong_seq != i) {
            timeouts++;
            continue;
        }
        u64 rtt = rdtsc() - t0;
        if (pongs < MAX_KEPT)
            kept[pongs] = rtt;
        pongs++;
        sum += rtt;
        min = rtt < min ? rtt : min;
        max = rtt > max ? rtt : max;
    }
    u64 n = pongs < MAX_KEPT ? pongs : MAX_KEPT;
    sort(kept, n);
    static const char *const names[] = {"pings",           "pongs",          "timeouts",
                                        "rtt_cycles_min",  "rtt_cycles_mean", "rtt_cycles_max",
                                        "rtt_cycles_p50",  "rtt_cycles_p99"};
    u64 values[] = {i, pongs, timeouts, pongs ? min : 0, pongs ? sum / pongs : 0, max,
                    percentile(kept, n, 50), percentile(kept, n, 99)};
    report_counters(names, values, 8);
    net_report();
    kprint("pingpong: done\n");
    guest_exit(timeouts ? 1 : 0);
}
