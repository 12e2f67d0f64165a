/* nettest, CPL3 half: send() in a loop, like the paper's user program. */
#include "user.h"

extern unsigned long nettest_write_size;
extern unsigned long nettest_total_bytes;

static unsigned char buf[65536];

void nettest_user(unsigned long unused) {
    (void)unused;
    for (unsigned long i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)i;
    unsigned long sent = 0;
    while (!nettest_total_bytes || sent < nettest_total_bytes) {
        unsigned long n = nettest_write_size;
        if (nettest_total_bytes && nettest_total_bytes - sent < n)
            n = nettest_total_bytes - sent;
        sys_send(buf, n);
        sent += n;
    }
    sys_exit(0);
}
