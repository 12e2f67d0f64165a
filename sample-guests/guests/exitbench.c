/* exitbench: tight OUT and IN loops on the benchmark port from CPL0 and CPL3,
 * each inside a reported phase, with counts and guest-measured TSC cycles.
 * Arguments: iterations=N per loop (default 10000); rounds=R repeats only the
 * CPL0 OUT loop R times (for `worldswitch bench exits`); cpl=3 makes those
 * rounds run at CPL3; costs=1 makes each of the R rounds time one of every
 * event the cost model prices (for worldswitch's calibration). */
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

/* A port access KVM completes itself: the master 8259's mask register, read
 * (no side effect) from KVM's in-kernel PIC. */
static void kvm_port_loop(u64 n) {
    __asm__ volatile("1: inb $0x21, %%al\n\tdec %%rcx\n\tjnz 1b" : "+c"(n) : : "rax");
}

/* A doorbell: the host registers an ioeventfd on the benchmark port's last
 * byte, so the OUT completes in KVM by signalling an eventfd. */
static void doorbell_loop(u64 n) {
    __asm__ volatile("1: outb %%al, %%dx\n\tdec %%rcx\n\tjnz 1b" : "+c"(n) : "a"(0), "d"(WS_BENCH_PORT + 3));
}

/* Ordinary instructions (no port, no privileged one): INSNS_PER_ITERATION a
 * turn, loads and stores included, as a driver path has them. */
#define INSNS_PER_ITERATION 10
static void insn_loop(u64 n) {
    u64 scratch = 0;
    __asm__ volatile("1: add $1, %%rax\n\t"
                     "xor %%rdx, %%rax\n\t"
                     "mov %%rax, %%rdx\n\t"
                     "shl $1, %%rdx\n\t"
                     "mov %%rdx, %1\n\t"
                     "mov %1, %%rdx\n\t"
                     "add %%rdx, %%rax\n\t"
                     "lea 8(%%rax), %%rax\n\t"
                     "dec %%rcx\n\t"
                     "jnz 1b"
                     : "+c"(n), "+m"(scratch)
                     :
                     : "rax", "rdx", "cc");
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
    if (rounds && arg_u64("costs", 0)) {
        /* Phase indices 2r and 2r+1 of the exits make an ABBA pair on the
         * host's floor schedule; 4r+1 is never a floor phase. */
        report_counter("insns_per_iteration", INSNS_PER_ITERATION);
        for (u64 r = 0; r < rounds; r++) {
            timed("cpl0_out", "cpl0_out_cycles", out_loop, n, 2 * r);
            timed("cpl0_out", "cpl0_out_cycles", out_loop, n, 2 * r + 1);
            timed("kvm_port", "kvm_port_cycles", kvm_port_loop, n, 4 * r + 1);
            timed("doorbell", "doorbell_cycles", doorbell_loop, n, 4 * r + 1);
            timed("insn", "insn_cycles", insn_loop, n, 4 * r + 1);
            run_user(exitbench_user, ROUNDS_MODE | ((4 * r + 1) << 32) | n);
        }
        guest_exit(0);
    }
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
