/* The sample guests' CPL0 runtime: boot from PVH start info, console, mailbox,
 * IDT/TSS, 8259 and PIT, system calls, and the trip to CPL3 and back. */
#include "kernel.h"
#include "user.h"

#define KCODE 0x08
#define TSS_SEL 0x28
#define COM1 0x3f8
#define PVH_MAGIC 0x336ec578u

struct hvm_start_info {
    u32 magic, version, flags, nr_modules;
    u64 modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    u32 memmap_entries, reserved;
};

struct tss {
    u32 reserved0;
    u64 rsp[3];
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3;
    u16 iomap_base;
    u8 iomap[8192 + 1];
} __attribute__((packed));

struct idt_entry {
    u64 low, high;
};

extern u64 gdt[];
void enter_user(void (*fn)(u64), u64 stack, u64 arg);
u64 ctx_save(u64 *ctx);
void ctx_restore(u64 *ctx, u64 value) __attribute__((noreturn));

/* Every port is closed to CPL3 until io_permit() opens it; the loader
 * writes this bitmap, so CPL0 never fills it. */
static struct tss tss = {
    .iomap_base = __builtin_offsetof(struct tss, iomap),
    .iomap = {[0 ... 8192] = 0xff},
};
static struct idt_entry idt[256];
static irq_handler irq_handlers[16];
static const char *cmdline = "";
static int have_mailbox;
static u64 user_return_ctx[8];
static u8 trap_stack[16384] __attribute__((aligned(16)));
static u8 user_stack[65536] __attribute__((aligned(16)));
static struct ws_msg msg;
volatile u64 timer_ticks;

/* ---- freestanding C ---- */
void *memset(void *d, int c, u64 n) {
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return d;
}

void *memcpy(void *d, const void *s, u64 n) {
    void *ret = d;
    u64 q = n / 8;
    __asm__ volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(q)::"memory");
    n %= 8;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n)::"memory");
    return ret;
}

u64 strlen(const char *s) {
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}

int memcmp(const void *a, const void *b, u64 n) {
    const u8 *x = a, *y = b;
    for (u64 i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] - y[i];
    return 0;
}

int strncmp(const char *a, const char *b, u64 n) {
    for (u64 i = 0; i < n; i++) {
        if (a[i] != b[i] || !a[i])
            return (u8)a[i] - (u8)b[i];
    }
    return 0;
}

/* ---- console ---- */
static void serial_init(void) {
    outb(COM1 + 1, 0x00); /* no UART interrupts */
    outb(COM1 + 3, 0x80); /* DLAB */
    outb(COM1 + 0, 0x01); /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1 */
    outb(COM1 + 2, 0xc7); /* FIFO on, cleared */
    outb(COM1 + 4, 0x03); /* DTR | RTS */
}

void console_write(const char *s, u64 len) {
    for (u64 i = 0; i < len; i++) {
        while (!(inb(COM1 + 5) & 0x20))
            ;
        outb(COM1, (u8)s[i]);
    }
}

void kprint(const char *s) { console_write(s, strlen(s)); }

static void kprint_base(u64 v, unsigned base) {
    char buf[24];
    int i = sizeof(buf);
    do {
        unsigned d = v % base;
        buf[--i] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    console_write(buf + i, sizeof(buf) - i);
}

void kprint_u64(u64 v) { kprint_base(v, 10); }

/* ---- host reporting ---- */
int mailbox_present(void) { return have_mailbox; }

/* The one message buffer is shared with interrupt handlers: fill and send
 * it with interrupts off. */
static void msg_send(u16 kind, const char *name, u64 value) {
    u64 flags = irq_save();
    msg.magic = WS_MSG_MAGIC;
    msg.kind = kind;
    msg.count = 1;
    u64 n = strlen(name);
    if (n > WS_NAME_LEN)
        n = WS_NAME_LEN;
    memset(msg.records[0].name, 0, WS_NAME_LEN);
    memcpy(msg.records[0].name, name, n);
    msg.records[0].value = value;
    outl(WS_MBOX_PORT, (u32)(u64)&msg);
    irq_restore(flags);
}

void report_counters(const char *const *names, const u64 *values, int n) {
    if (!have_mailbox) {
        for (int i = 0; i < n; i++)
            report_counter(names[i], values[i]);
        return;
    }
    if (n > WS_MSG_MAX_RECORDS)
        n = WS_MSG_MAX_RECORDS;
    u64 flags = irq_save();
    msg.magic = WS_MSG_MAGIC;
    msg.kind = WS_MSG_COUNTERS;
    msg.count = (u16)n;
    for (int i = 0; i < n; i++) {
        u64 len = strlen(names[i]);
        if (len > WS_NAME_LEN)
            len = WS_NAME_LEN;
        memset(msg.records[i].name, 0, WS_NAME_LEN);
        memcpy(msg.records[i].name, names[i], len);
        msg.records[i].value = values[i];
    }
    outl(WS_MBOX_PORT, (u32)(u64)&msg);
    irq_restore(flags);
}

void report_counter(const char *name, u64 value) {
    if (have_mailbox) {
        msg_send(WS_MSG_COUNTERS, name, value);
        return;
    }
    kprint("counter ");
    kprint(name);
    kprint("=");
    kprint_u64(value);
    kprint("\n");
}

void report_phase(int begin, const char *name, u64 index) {
    if (have_mailbox)
        msg_send(begin ? WS_MSG_PHASE_BEGIN : WS_MSG_PHASE_END, name, index);
}

void guest_exit(u32 status) {
    if (have_mailbox)
        outl(WS_SHUTDOWN_PORT, status);
    else
        outb(QEMU_DEBUG_EXIT_PORT, (u8)status);
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* ---- command line ---- */
u64 arg_u64(const char *key, u64 fallback) {
    u64 klen = strlen(key);
    const char *p = cmdline;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!strncmp(p, key, klen) && p[klen] == '=') {
            p += klen + 1;
            u64 v = 0;
            int digits = 0;
            while (*p >= '0' && *p <= '9') {
                v = v * 10 + (u64)(*p++ - '0');
                digits++;
            }
            return digits ? v : fallback;
        }
        while (*p && *p != ' ')
            p++;
    }
    return fallback;
}

/* ---- descriptors ---- */
static void tss_init(void) {
    u64 base = (u64)&tss;
    u64 limit = sizeof(tss) - 1;
    tss.rsp[0] = (u64)(trap_stack + sizeof(trap_stack));
    gdt[5] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ul << 40) | (((limit >> 16) & 0xf) << 48) |
             (((base >> 24) & 0xff) << 56);
    gdt[6] = base >> 32;
    __asm__ volatile("ltr %w0" ::"r"(TSS_SEL));
}

static void idt_set(int vector, void *handler, int dpl) {
    u64 off = (u64)handler;
    idt[vector].low = (off & 0xffff) | ((u64)KCODE << 16) | ((u64)(0x8e | (dpl << 5)) << 40) |
                      (((off >> 16) & 0xffff) << 48);
    idt[vector].high = off >> 32;
}

extern char vec0[], vec1[], vec2[], vec3[], vec4[], vec5[], vec6[], vec7[], vec8[], vec9[], vec10[], vec11[],
    vec12[], vec13[], vec14[], vec15[], vec16[], vec17[], vec18[], vec19[], vec20[], vec21[], vec32[], vec33[],
    vec34[], vec35[], vec36[], vec37[], vec38[], vec39[], vec40[], vec41[], vec42[], vec43[], vec44[], vec45[],
    vec46[], vec47[], vec128[], vec255[];

static void idt_init(void) {
    static void *const exceptions[22] = {vec0,  vec1,  vec2,  vec3,  vec4,  vec5,  vec6,  vec7,
                                         vec8,  vec9,  vec10, vec11, vec12, vec13, vec14, vec15,
                                         vec16, vec17, vec18, vec19, vec20, vec21};
    static void *const irqs[16] = {vec32, vec33, vec34, vec35, vec36, vec37, vec38, vec39,
                                   vec40, vec41, vec42, vec43, vec44, vec45, vec46, vec47};
    for (int v = 0; v < 256; v++)
        idt_set(v, vec255, 0);
    for (int v = 0; v < 22; v++)
        idt_set(v, exceptions[v], 0);
    for (int i = 0; i < 16; i++)
        idt_set(32 + i, irqs[i], 0);
    idt_set(0x80, vec128, 3);
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) idtr = {sizeof(idt) - 1, (u64)idt};
    __asm__ volatile("lidt %0" ::"m"(idtr));
}

/* ---- 8259 and PIT ---- */
static void pic_init(void) {
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, 32); /* master vectors 32..39 */
    outb(0xa1, 40); /* slave vectors 40..47 */
    outb(0x21, 4);
    outb(0xa1, 2);
    outb(0x21, 1);
    outb(0xa1, 1);
    outb(0x21, 0xfb); /* everything masked but the cascade */
    outb(0xa1, 0xff);
}

void irq_set_handler(int irq, irq_handler h) { irq_handlers[irq] = h; }

void irq_unmask(int irq) {
    u16 port = irq < 8 ? 0x21 : 0xa1;
    outb(port, inb(port) & ~(1 << (irq & 7)));
}

void irq_set_level(int irq) {
    u16 port = irq < 8 ? 0x4d0 : 0x4d1;
    outb(port, inb(port) | (1 << (irq & 7)));
}

void (*tick_hook)(void);

static void timer_tick(void) {
    timer_ticks++;
    if (tick_hook)
        tick_hook();
}

/* The halt windows: an interrupt whose return address lies in a window
 * [NAME_start, NAME_end) skips the rest of it, HLT included. One function
 * per width, each with its own labels. */
#define HALT_WHILE(name, type, cmp)                                                        \
    extern const char name##_start[], name##_end[];                                        \
    __attribute__((noinline)) void name(const volatile type *p, type seen) {               \
        __asm__ volatile(".globl " #name "_start, " #name "_end\n" #name "_start: " cmp      \
                         " %1, (%0)\njne " #name "_end\nhlt\n" #name "_end:" ::"r"(p),       \
                         "r"(seen)                                                         \
                         : "memory", "cc");                                                \
    }
HALT_WHILE(halt_while32, u32, "cmpl")
HALT_WHILE(halt_while64, u64, "cmpq")

static void leave_halt_window(struct trap_frame *f) {
    if (f->rip >= (u64)halt_while32_start && f->rip < (u64)halt_while32_end)
        f->rip = (u64)halt_while32_end;
    else if (f->rip >= (u64)halt_while64_start && f->rip < (u64)halt_while64_end)
        f->rip = (u64)halt_while64_end;
}

/* ---- PCI ---- */
u32 pci_read(int dev, int reg) {
    outl(0xcf8, 0x80000000u | ((u32)dev << 11) | ((u32)reg & 0xfc));
    return inl(0xcfc);
}

void pci_write(int dev, int reg, u32 value) {
    outl(0xcf8, 0x80000000u | ((u32)dev << 11) | ((u32)reg & 0xfc));
    outl(0xcfc, value);
}

static void pit_init_100hz(void) {
    const u32 divisor = 1193182 / 100;
    outb(0x43, 0x34); /* channel 0, lobyte/hibyte, rate generator */
    outb(0x40, divisor & 0xff);
    outb(0x40, divisor >> 8);
    irq_set_handler(0, timer_tick);
    irq_unmask(0);
}

/* ---- CPL3 ---- */
void io_permit(u16 port, u16 count) {
    for (u32 p = port; p < (u32)port + count; p++)
        tss.iomap[p / 8] &= (u8) ~(1 << (p % 8));
}

u64 run_user(void (*fn)(u64), u64 arg) {
    u64 status = ctx_save(user_return_ctx);
    if (status)
        return status - 1;
    enter_user(fn, (u64)(user_stack + sizeof(user_stack)), arg);
    return 0; /* not reached */
}

static u64 no_syscall(u64 n, u64 a, u64 b, u64 c) {
    (void)n, (void)a, (void)b, (void)c;
    return (u64)-1;
}

/* Never null, so a system call costs no test for it. */
u64 (*syscall_hook)(u64 n, u64 a, u64 b, u64 c) = no_syscall;

static u64 syscall(struct trap_frame *f) {
    switch (f->rax) {
    case SYS_EXIT:
        /* Back to run_user() on the kernel stack, interrupts on again. */
        __asm__ volatile("sti");
        ctx_restore(user_return_ctx, f->rdi + 1);
    case SYS_WRITE:
        console_write((const char *)f->rdi, f->rsi > 4096 ? 4096 : f->rsi);
        return 0;
    case SYS_REPORT:
        report_counter((const char *)f->rdi, f->rsi);
        return 0;
    case SYS_PHASE:
        report_phase((int)f->rdi, (const char *)f->rsi, f->rdx);
        return 0;
    case SYS_TICKS:
        return timer_ticks;
    default:
        return f->rax >= 16 ? syscall_hook(f->rax, f->rdi, f->rsi, f->rdx) : (u64)-1;
    }
}

/* ---- traps ---- */
void trap(struct trap_frame *f) {
    if (f->vector >= 32 && f->vector < 48) {
        int irq = (int)f->vector - 32;
        leave_halt_window(f);
        if (irq_handlers[irq])
            irq_handlers[irq]();
        if (irq >= 8)
            outb(0xa0, 0x20);
        outb(0x20, 0x20);
        return;
    }
    if (f->vector == 0x80) {
        f->rax = syscall(f);
        return;
    }
    /* PVM raises #UD for `int $0x80` from CPL3 instead of using the DPL3
     * gate; treat that #UD as the system call it was meant to be. */
    if (f->vector == 6 && (f->cs & 3) == 3 && *(const u16 *)f->rip == 0x80cd) {
        f->rip += 2;
        f->rax = syscall(f);
        return;
    }
    kprint("guest: exception ");
    kprint_u64(f->vector);
    kprint(" at rip 0x");
    kprint_base(f->rip, 16);
    kprint(" error 0x");
    kprint_base(f->error, 16);
    kprint(f->cs & 3 ? " (CPL3)\n" : " (CPL0)\n");
    report_counter("exception_vector", f->vector);
    report_counter("exception_rip", f->rip);
    guest_exit(0x100 | (u32)f->vector);
}

u64 start_info_paddr;

void kmain(u32 start_info) {
    const struct hvm_start_info *si = (const struct hvm_start_info *)(u64)start_info;
    start_info_paddr = start_info;
    serial_init();
    if (si && si->magic == PVH_MAGIC && si->cmdline_paddr)
        cmdline = (const char *)si->cmdline_paddr;
    have_mailbox = inl(WS_MBOX_PORT) == WS_MBOX_MAGIC;
    tss_init();
    idt_init();
    pic_init();
    pit_init_100hz();
    __asm__ volatile("sti");
    guest_main();
    guest_exit(0);
}
