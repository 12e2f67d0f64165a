/* pingpong: request/response latency. Sends rounds=N small datagrams to
 * the peer's echo port (9002), one at a time, waiting for each echo, and
 * reports round-trip times in guest TSC cycles. */
#include "net.h"

#define ECHO_PORT 9002

static volatile u64 pong_seq = ~0ul;

static void on_udp(u16 port, const u8 *p, u64 len) {
    if (port == ECHO_PORT && len >= 8)
        memcpy((void *)&pong_seq, p, 8);
}

void guest_main(void) {
    if (net_init() != 0)
        guest_exit(2);
    u64 rounds = arg_u64("rounds", 1000);
    udp_rx_hook = on_udp;
    u64 pongs = 0, timeouts = 0, sum = 0, min = ~0ul, max = 0;
    kprint("pingpong: running\n");
    for (u64 i = 0; i < rounds; i++) {
        u64 t0 = rdtsc();
        u64 msg[2] = {i, t0};
        net_send_to(ECHO_PORT, (const u8 *)msg, sizeof(msg));
        u64 deadline = timer_ticks + 100;
        while (pong_seq != i && timer_ticks < deadline)
            __asm__ volatile("sti; hlt");
        if (pong_seq != i) {
            timeouts++;
            continue;
        }
        u64 rtt = rdtsc() - t0;
        pongs++;
        sum += rtt;
        min = rtt < min ? rtt : min;
        max = rtt > max ? rtt : max;
    }
    static const char *const names[] = {"pings", "pongs", "timeouts", "rtt_cycles_min", "rtt_cycles_mean",
                                        "rtt_cycles_max"};
    u64 values[] = {rounds, pongs, timeouts, pongs ? min : 0, pongs ? sum / pongs : 0, max};
    report_counters(names, values, 6);
    net_report();
    kprint("pingpong: done\n");
    guest_exit(timeouts ? 1 : 0);
}
