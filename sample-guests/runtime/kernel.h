/* The sample guests' CPL0 runtime: port I/O and barriers, console, mailbox,
 * interrupts, timer, PCI, CPL3 entry and the system calls CPL3 code may
 * make. */
#ifndef WS_KERNEL_H
#define WS_KERNEL_H

#include "abi.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

/* Port I/O. The "memory" clobbers keep the compiler from moving memory
 * accesses across a port access: a device may read what was written before
 * the OUT (a descriptor, a message) and write what is read after the IN. */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port) : "memory"); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port) : "memory"); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port) : "memory"); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory"); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port) : "memory"); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory"); return v; }

/* Write barrier: stores before it reach memory before stores after it, as
 * a device that reads them (a descriptor handed over, then a kick) needs.
 * x86 does not reorder stores with other stores, so only the compiler must
 * be stopped: no instruction (sfence is SSE, which CPL0 code here must not
 * use, and is only needed for non-temporal stores). */
#define wmb() __asm__ volatile("" ::: "memory")

static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

/* Interrupts off around a critical section; restore what was there. */
static inline u64 irq_save(void) {
    u64 flags;
    __asm__ volatile("pushfq; popq %0; cli" : "=r"(flags)::"memory");
    return flags;
}
static inline void irq_restore(u64 flags) {
    if (flags & (1 << 9))
        __asm__ volatile("sti" ::: "memory");
}

struct trap_frame {
    u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, error, rip, cs, rflags, rsp, ss;
};

/* Console: the 16550 at 0x3F8. */
void console_write(const char *s, u64 len);
void kprint(const char *s);
void kprint_u64(u64 v);

/* Host reporting: the mailbox when present, else serial and isa-debug-exit. */
int mailbox_present(void);
void report_counter(const char *name, u64 value);
/* Several counters in one mailbox message (at most WS_MSG_MAX_RECORDS). */
void report_counters(const char *const *names, const u64 *values, int n);
void report_phase(int begin, const char *name, u64 index);
void guest_exit(u32 status) __attribute__((noreturn));

/* The command line: "key=value key=value". */
u64 arg_u64(const char *key, u64 fallback);

/* Interrupts: the 8259 pair, remapped to vectors 32..47. */
typedef void (*irq_handler)(void);
void irq_set_handler(int irq, irq_handler h);
void irq_unmask(int irq);
void irq_set_level(int irq);
extern volatile u64 timer_ticks;
/* Where the host put the PVH start info (hvm_start_info). */
extern u64 start_info_paddr;
/* Called from the timer interrupt on every tick, when set. */
extern void (*tick_hook)(void);

/* Halt until an interrupt unless *p no longer holds `seen`. Call with
 * interrupts on: they stay on throughout, and no wake-up is lost between
 * the look at *p and the HLT, because an interrupt taken there returns
 * past the HLT (trap() moves it). The usual "cli; look; sti; hlt" relies
 * on STI's one-instruction shadow reaching into an emulated HLT, which not
 * every host honours. A wake-up is an interrupt or a change of *p: the
 * caller looks again either way. */
void halt_while32(const volatile u32 *p, u32 seen);
void halt_while64(const volatile u64 *p, u64 seen);

/* CPL3: open a port range in the TSS I/O bitmap, then run fn(arg) at CPL3 on
 * its own stack; returns the status fn passed to sys_exit. */
void io_permit(u16 port, u16 count);
u64 run_user(void (*fn)(u64), u64 arg);

/* PCI configuration space (bus 0, function 0). */
u32 pci_read(int dev, int reg);
void pci_write(int dev, int reg, u32 value);
#define PCI_ID 0x00 /* device << 16 | vendor */
#define PCI_COMMAND 0x04
#define PCI_COMMAND_IO 0x1     /* respond to I/O space accesses */
#define PCI_COMMAND_MASTER 0x4 /* bus master: the device may DMA */
#define PCI_BAR0 0x10
#define PCI_BAR_IO_MASK (~3u) /* an I/O BAR's address; bits 1-0 are flags */
#define PCI_INTERRUPT_LINE 0x3c /* the low byte */

/* System calls numbered 16 and up go to this hook, which a runtime module
 * sets (net.c, once its NIC is up); until then they return -1. */
extern u64 (*syscall_hook)(u64 n, u64 a, u64 b, u64 c);

/* What each guest provides. */
void guest_main(void);

/* Freestanding C. */
void *memset(void *d, int c, u64 n);
void *memcpy(void *d, const void *s, u64 n);
u64 strlen(const char *s);
int strncmp(const char *a, const char *b, u64 n);
int memcmp(const void *a, const void *b, u64 n);

#endif
