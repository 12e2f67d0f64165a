/* nettest-rx: receives a stream from the host peer. It asks the peer (UDP
 * port 9001) for datagrams=N of size=B bytes at rate=R per second, counts
 * what arrives and checks the sequence numbers, and ends when all came or
 * none came for two seconds. */
#include "net.h"

#define STREAM_PORT 9001

static volatile u64 rx_count, rx_bytes, rx_next, rx_missing, rx_late;

static void on_udp(u16 port, const u8 *p, u64 len) {
    if (port != STREAM_PORT || len < 8)
        return;
    u64 s;
    memcpy(&s, p, 8);
    rx_count++;
    rx_bytes += len;
    if (s >= rx_next) {
        rx_missing += s - rx_next;
        rx_next = s + 1;
    } else {
        rx_late++;
        if (rx_missing)
            rx_missing--;
    }
}

void guest_main(void) {
    if (net_init() != 0)
        guest_exit(2);
    u64 want = arg_u64("datagrams", 10000);
    u64 size = arg_u64("size", 1024);
    u64 rate = arg_u64("rate", 2000);
    struct {
        u64 count;
        u32 size, rate;
    } req = {want, (u32)size, (u32)rate};
    udp_rx_hook = on_udp;
    net_send_to(STREAM_PORT, (const u8 *)&req, sizeof(req));
    kprint("nettest-rx: receiving\n");
    u64 last = 0, idle_since = timer_ticks;
    while (rx_count < want && timer_ticks - idle_since < 200) {
        __asm__ volatile("sti; hlt");
        if (rx_count != last) {
            last = rx_count;
            idle_since = timer_ticks;
        }
    }
    if (rx_next < want)
        rx_missing += want - rx_next; /* the tail that never came */
    static const char *const names[] = {"rx_datagrams", "rx_bytes", "rx_missing", "rx_late", "rx_wanted"};
    u64 values[] = {rx_count, rx_bytes, rx_missing, rx_late, want};
    report_counters(names, values, 5);
    net_report();
    kprint(rx_count == want ? "nettest-rx: done\n" : "nettest-rx: the stream stopped early\n");
    guest_exit(rx_count == want ? 0 : 1);
}
