/* hello, CPL3 half: one system call to the console, exit with the argument. */
#include "user.h"

void hello_user(unsigned long status) {
    sys_write("hello from CPL3\n");
    sys_exit(status);
}
