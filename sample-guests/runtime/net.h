/* The guest network stack: a PCnet driver written from the chip's
 * semantics, ARP, and UDP/IPv4 datagrams to the host peer. */
#ifndef WS_NET_H
#define WS_NET_H

#include "kernel.h"

#define NET_PORT 9000
/* UDP payload bytes per datagram: 1500 MTU - 20 IP - 8 UDP. The first 8
 * carry the sequence number. */
#define NET_MAX_PAYLOAD 1472

/* Finds the NIC, resets and starts it, resolves the peer. 0 on success. */
int net_init(void);
/* Sends len bytes from buf (zero copy) as datagrams; returns datagrams. */
u64 net_send(const u8 *buf, u64 len);
/* Sends a small datagram (at most 22 bytes of payload) to the peer's port. */
void net_send_to(u16 port, const u8 *payload, u64 len);
/* Called from the NIC interrupt for every UDP datagram to the guest. */
extern void (*udp_rx_hook)(u16 port, const u8 *payload, u64 len);
/* Busy polling, as Linux's busy_poll: while receive is on the pv-nic's
 * ring (which the host fills without the guest's help), look at it for up
 * to `us` microseconds with its interrupt off, instead of halting for the
 * interrupt. Returns 1 if frames came (handed to udp_rx_hook), 0 if none
 * came or receive is on the Lance (whose frames come through exits). */
int net_busy_poll(u64 us);
/* Reports the driver's counters through the mailbox. */
void net_report(void);

#endif
