/* What CPL3 code may use: system calls through int $0x80 and port I/O on the
 * ports the kernel opened in the TSS I/O bitmap. */
#ifndef WS_USER_H
#define WS_USER_H

#include "abi.h"

#define SYS_EXIT 0
#define SYS_WRITE 1
#define SYS_REPORT 2
#define SYS_PHASE 3
#define SYS_TICKS 4
#define SYS_SEND 16 /* (buf, len): send len bytes to the peer as UDP datagrams */

static inline unsigned long syscall3(unsigned long n, unsigned long a, unsigned long b, unsigned long c) {
    unsigned long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "memory");
    return ret;
}

static inline void sys_exit(unsigned long status) { syscall3(SYS_EXIT, status, 0, 0); }
static inline void sys_write(const char *s) {
    unsigned long n = 0;
    while (s[n]) n++;
    syscall3(SYS_WRITE, (unsigned long)s, n, 0);
}
static inline void sys_report(const char *name, unsigned long value) { syscall3(SYS_REPORT, (unsigned long)name, value, 0); }
static inline void sys_phase(int begin, const char *name, unsigned long index) {
    syscall3(SYS_PHASE, (unsigned long)begin, (unsigned long)name, index);
}
static inline unsigned long sys_send(const void *buf, unsigned long len) {
    return syscall3(SYS_SEND, (unsigned long)buf, len, 0);
}
static inline unsigned long sys_ticks(void) { return syscall3(SYS_TICKS, 0, 0, 0); }
static inline unsigned long u_rdtsc(void) {
    unsigned int lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((unsigned long)hi << 32) | lo;
}

#endif
