/* hello: prints from CPL0 and from CPL3, then exits. */
#include "kernel.h"

void hello_user(u64 arg);

void guest_main(void) {
    kprint("hello from the worldswitch guest (CPL0)\n");
    kprint(mailbox_present() ? "mailbox: present\n" : "mailbox: absent, using serial and isa-debug-exit\n");
    u64 status = run_user(hello_user, arg_u64("status", 0));
    kprint("back at CPL0, user status ");
    kprint_u64(status);
    kprint("\n");
    report_counter("user_status", status);
    guest_exit((u32)status);
}
