/* exitbench, CPL3 half: the same OUT and IN loops from user mode. The
 * argument packs the iteration count (bits 0-31), a round index (bits 32-61)
 * and rounds mode (bit 62), which runs only the OUT loop. */
#include "user.h"

static void out_loop(unsigned long n) {
    __asm__ volatile("1: outb %%al, %%dx\n\tdec %%rcx\n\tjnz 1b" : "+c"(n) : "a"(0), "d"(WS_BENCH_PORT));
}

static void in_loop(unsigned long n) {
    __asm__ volatile("1: inb %%dx, %%al\n\tdec %%rcx\n\tjnz 1b" : "+c"(n) : "d"(WS_BENCH_PORT) : "rax");
}

static void timed(const char *name, const char *cycles_name, void (*loop)(unsigned long), unsigned long n,
                  unsigned long index) {
    sys_phase(1, name, index);
    unsigned long t0 = u_rdtsc();
    loop(n);
    unsigned long t1 = u_rdtsc();
    sys_phase(0, name, index);
    sys_report(name, n);
    sys_report(cycles_name, t1 - t0);
}

void exitbench_user(unsigned long packed) {
    unsigned long n = packed & 0xffffffffu;
    unsigned long round = (packed >> 32) & 0x3fffffffu;
    int rounds_mode = (packed >> 62) & 1;
    timed("cpl3_out", "cpl3_out_cycles", out_loop, n, round);
    if (!rounds_mode)
        timed("cpl3_in", "cpl3_in_cycles", in_loop, n, 0);
    sys_exit(0);
}
