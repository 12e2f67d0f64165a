/* exitbench: tight OUT and IN loops on the benchmark port from CPL0 and CPL3,
 * each inside a reported phase, with counts and guest-measured TSC cycles.
 * Arguments: iterations=N per loop (default 10000); rounds=R repeats only the
 * CPL0 OUT loop R times (for `worldswitch bench exits`); cpl=3 makes those
 * rounds run at CPL3. */
#include "kernel.h"

void exitbench_user(u64 packed);

/* Packed into exitbench_user's argument: rounds mode runs only the OUT loop. */
#define ROUNDS_MODE (1ul << 62)

static void out_loop(u64 n) {
    __asm__ volatile("1: outb %%al, %%dx\n\tdec %%rcx\n\tjnz 1b" : "+c"(n) : "a"(0), "d"(WS_BENCH_PORT));
}

static void in_loop(u64 n) {
    __asm__ volatile("1: inb %%dx, %%al\n\tdec %%rcx\n\tjnz 1b" : "+c"(n) : "d"(WS_BENCH_PORT) : "rax");
}

static void timed(const char *name, const char *cycles_name, void (*loop)(u64), u64 n, u64 index) {
    report_phase(1, name, index);
    u64 t0 = rdtsc();
    loop(n);
    u64 t1 = rdtsc();
    report_phase(0, name, index);
    report_counter(name, n);
    report_counter(cycles_name, t1 - t0);
}

void guest_main(void) {
    u64 n = arg_u64("iterations", 10000);
    u64 rounds = arg_u64("rounds", 0);
    u64 cpl = arg_u64("cpl", 0);
    if (n == 0)
        n = 1;
    io_permit(WS_BENCH_PORT, 4);
    if (rounds) {
        for (u64 r = 0; r < rounds; r++) {
            if (cpl == 3)
                run_user(exitbench_user, ROUNDS_MODE | (r << 32) | n);
            else
                timed("cpl0_out", "cpl0_out_cycles", out_loop, n, r);
        }
        guest_exit(0);
    }
    timed("cpl0_out", "cpl0_out_cycles", out_loop, n, 0);
    timed("cpl0_in", "cpl0_in_cycles", in_loop, n, 0);
    run_user(exitbench_user, n);
    kprint("exitbench: done\n");
    guest_exit(0);
}
