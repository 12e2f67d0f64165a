/* The worldswitch guest ABI: ports and message layout shared by every sample
 * guest and mirrored by the host in src/devices/mailbox.rs. Change both. */
#ifndef WS_ABI_H
#define WS_ABI_H

/* Mailbox: IN dword reads WS_MBOX_MAGIC when worldswitch is the host;
 * OUT dword hands the host the guest-physical address of a struct ws_msg. */
#define WS_MBOX_PORT 0x3000
#define WS_MBOX_MAGIC 0x424d5357u /* "WSMB" */
/* Shutdown: OUT dword ends the run with that status. */
#define WS_SHUTDOWN_PORT 0x3004
/* Benchmark port: OUT and IN exit to user space and are counted. */
#define WS_BENCH_PORT 0x3008
/* Transmit-path timing (the paper's Figure 5): OUT dword of the address of
 * a struct ws_path_slot registers it and stamps host_exit (a ping for TSC
 * calibration); from then on the host stamps it at every transmit kick. */
#define WS_PATH_PORT 0x300c

struct ws_path_slot {
    unsigned long guest_before;   /* guest: TSC just before the kick */
    unsigned long host_exit;      /* host: KVM_RUN returned with the OUT */
    unsigned long host_tap_start; /* host: the first TAP write begins */
    unsigned long host_tap_end;   /* host: it returned */
    unsigned long host_reentry;   /* host: about to re-enter KVM_RUN */
    unsigned long stamps;         /* host: kicks stamped so far */
};

/* QEMU's isa-debug-exit, the fallback where the mailbox is absent. */
#define QEMU_DEBUG_EXIT_PORT 0xf4

#define WS_MSG_MAGIC 0x4753534du /* "MSSG" */
#define WS_MSG_COUNTERS 1 /* records are counters the guest reports */
#define WS_MSG_PHASE_BEGIN 2 /* one record: a phase's name and index */
#define WS_MSG_PHASE_END 3
#define WS_MSG_MAX_RECORDS 64
#define WS_NAME_LEN 24

struct ws_record {
    char name[WS_NAME_LEN]; /* NUL-padded */
    unsigned long value;
};

struct ws_msg {
    unsigned int magic;
    unsigned short kind;
    unsigned short count;
    struct ws_record records[WS_MSG_MAX_RECORDS];
};

#endif
