/* faults: ends in the failure its argument names, to test how the host
 * reports it: mode=1 triple fault (no IDT, then #UD), mode=2 SSE arithmetic
 * at CPL0, mode=3 HLT with interrupts off, anything else #UD reported by the
 * guest's own handler (status 0x106). The deliberate
 * SSE instruction lives in .hostile so the CPL0 instruction check can tell
 * it from accidental SSE. */
#include "kernel.h"

__attribute__((section(".hostile"), noinline)) static void sse_at_cpl0(void) {
    __asm__ volatile(".byte 0x0f, 0x58, 0xc1"); /* addps %xmm1, %xmm0 */
}

static void triple_fault(void) {
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) empty = {0, 0};
    __asm__ volatile("lidt %0; ud2" ::"m"(empty));
}

void guest_main(void) {
    u64 mode = arg_u64("mode", 0);
    kprint("faults: about to fail\n");
    switch (mode) {
    case 1:
        triple_fault();
        break;
    case 2:
        sse_at_cpl0();
        break;
    case 3:
        __asm__ volatile("cli; hlt");
        break;
    default:
        __asm__ volatile("ud2");
    }
    kprint("faults: still running\n");
}
