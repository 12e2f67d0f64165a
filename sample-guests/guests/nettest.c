/* nettest: the paper's workload. A CPL3 loop of send() calls (write_size
 * bytes each, default 4096) to the host peer over UDP; the guest kernel
 * splits each into datagrams built as zero-copy descriptor chains, every
 * one carrying a sequence number. Runs forever, or until megabytes=N MiB
 * are sent. Reports its counters every second and at the end. */
#include "net.h"

void nettest_user(u64 arg);

/* Read by the CPL3 loop (all guest pages are user-accessible). */
u64 nettest_write_size;
u64 nettest_total_bytes; /* 0: forever */

static void tick(void) {
    if (timer_ticks % 100 == 0)
        net_report();
}

void guest_main(void) {
    if (net_init() != 0)
        guest_exit(2);
    u64 write_size = arg_u64("write_size", 4096);
    u64 megabytes = arg_u64("megabytes", 0);
    if (write_size == 0 || write_size > 65536) {
        kprint("nettest: write_size must be 1..65536\n");
        guest_exit(3);
    }
    kprint("nettest: sending\n");
    tick_hook = tick;
    nettest_write_size = write_size;
    nettest_total_bytes = megabytes << 20;
    run_user(nettest_user, 0);
    tick_hook = 0;
    net_report();
    kprint("nettest: done\n");
    guest_exit(0);
}
