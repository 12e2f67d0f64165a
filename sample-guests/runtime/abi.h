/* The worldswitch guest ABI: ports and message layout shared by every sample
 * guest and mirrored by the host in src/devices/mailbox.rs (the path port in
 * src/devices/path.rs, the pv-nic in src/machine/devices/pvnet/). Change
 * both. */
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

/* The paravirtual NIC (pv-nic), mirrored by the host in
 * src/machine/devices/pvnet/. Change both. 32-bit accesses only: IN dword of
 * WS_PV_PORT reads WS_PV_MAGIC; OUT dword to WS_PV_RING_PORT registers the
 * ring (its guest-physical address, page-aligned; 0 unregisters, and the
 * host may serve the old ring for up to 10 ms more); any OUT to
 * WS_PV_DOORBELL_PORT says entries were posted. The host raises WS_PV_IRQ
 * (edge) when it consumes entries while want_irq is set. */
#define WS_PV_PORT 0x3010
#define WS_PV_MAGIC 0x56505357u /* "WSPV" */
#define WS_PV_RING_PORT (WS_PV_PORT + 4)
#define WS_PV_DOORBELL_PORT (WS_PV_PORT + 8)
#define WS_PV_IRQ 10
#define WS_PV_MAX_ENTRIES 256 /* the largest ring */
#define WS_PV_MORE 1u         /* entry flag: the frame continues in the next entry */

/* Receive: a second ring of the same layout, registered at
 * WS_PV_RX_RING_PORT. The guest posts empty buffers (len = their size) by
 * moving prod; the host fills them in order, writes each one's len (the
 * frame's bytes) and flags, and moves cons. want (host) says where the
 * guest should receive; OUT dword 1 to WS_PV_RX_PATH_PORT moves receive to
 * the ring, 0 back to the Lance: frames already on the old path were
 * delivered there before the OUT completes, so draining the old path
 * after it keeps every frame, in order. When the host runs out of buffers
 * it sets notify and keeps frames waiting: any OUT to
 * WS_PV_RX_DOORBELL_PORT after posting more brings them. The host raises
 * WS_PV_IRQ when it fills buffers while want_irq is set. */
#define WS_PV_RX_RING_PORT (WS_PV_PORT + 12)
#define WS_PV_RX_PATH_PORT (WS_PV_PORT + 16)
#define WS_PV_RX_DOORBELL_PORT (WS_PV_PORT + 20)
#define WS_PV_RX_ERR 1u /* rx entry flag: the frame did not fit the buffer (dropped) */

/* The ring header at the registered address; the entries follow it, from
 * byte 64. */
struct ws_pv_header {
    unsigned int version;  /* guest: 1 */
    unsigned int want;     /* host: 1 = transmit on this ring, 0 = on the Lance */
    unsigned int prod;     /* guest: entries posted */
    unsigned int cons;     /* host: entries consumed */
    unsigned int notify;   /* host: 0 while it drains and needs no doorbell */
    unsigned int want_irq; /* guest: 1 = interrupt me when cons moves */
    unsigned int size;     /* guest: entries, a power of two up to WS_PV_MAX_ENTRIES */
    unsigned int reserved[9];
};
_Static_assert(sizeof(struct ws_pv_header) == 64, "pv-nic entries start at byte 64");

struct ws_pv_entry {
    unsigned long addr; /* guest-physical address of the bytes */
    unsigned int len;
    unsigned int flags; /* WS_PV_MORE */
};

#endif
