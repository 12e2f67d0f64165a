//! Frames of a VMM we did not start (QEMU first) to the VMApp rows: what
//! its vCPU and main-loop threads do outside `KVM_RUN`, from the names of
//! its functions (exported ones: a stripped QEMU keeps its `.dynsym`) and
//! the kernel frames of its system calls. Device models are one row,
//! since a register access is not visible in a frame name; what has
//! symbols but no rule, and what has none, are rows of their own.
//!
//! A sample is classified by the most specific rule any of its frames
//! matches.

use crate::taxonomy::Category;

use Category::*;

/// Rules by prefix of a frame name, most specific first: a sample takes
/// the row of the first rule any of its frames matches, wherever that
/// frame is (a device model reading guest memory calls the same dispatch
/// functions an exit does; it is still the device model's time).
const RULES: &[(&str, Category)] = &[
    // The host stack delivering a frame to the peer's socket runs inside
    // the TAP write, in the writer's context.
    ("netif_receive_skb", Peer),
    ("__netif_receive_skb", Peer),
    ("net_rx_action", Peer),
    ("process_backlog", Peer),
    ("ip_rcv", Peer),
    ("ip_local_deliver", Peer),
    ("udp_", Peer),
    ("__udp", Peer),
    // The TAP itself, seen from the kernel side of the system call.
    ("tun_chr_write_iter", VmnetTx),
    ("tun_get_user", VmnetTx),
    ("tun_chr_read_iter", VmnetRx),
    ("tun_do_read", VmnetRx),
    // Waking the main loop (QEMU's bottom halves and event notifiers), and
    // the main loop reading the wake-up.
    ("qemu_bh_schedule", HostEvents),
    ("event_notifier_", HostEvents),
    ("aio_notify", HostEvents),
    ("eventfd_", HostEvents),
    // The Lance's receive path, before the network layer that calls it.
    ("pcnet_receive", LanceRx),
    ("pcnet_can_receive", LanceRx),
    // The network layer between the NIC model and the TAP.
    ("tap_write_packet", VmnetTx),
    ("tap_receive", VmnetTx),
    ("tap_send", VmnetRx),
    ("tap_read_packet", VmnetRx),
    ("qemu_send_packet", VmnetTx),
    ("qemu_sendv_packet", VmnetTx),
    ("qemu_net_queue_", VmnetTx),
    ("qemu_deliver_packet", VmnetTx),
    ("qemu_flush_queued_packets", VmnetTx),
    ("net_hub_", VmnetTx),
    // Every other Lance register access.
    ("pcnet_", DeviceEmulation),
    ("lance_", DeviceEmulation),
    // Interrupts raised from user space.
    ("kvm_vm_ioctl_irq_line", UserIrq),
    ("kvm_set_irq", UserIrq),
    ("kvm_irqchip_", UserIrq),
    ("qemu_set_irq", UserIrq),
    ("pci_set_irq", UserIrq),
    ("pci_irq_handler", UserIrq),
    ("gsi_handler", UserIrq),
    ("kvm_pic_set_irq", UserIrq),
    ("kvm_ioapic_set_irq", UserIrq),
    // Other device models.
    ("pci_", OtherDevices),
    ("serial_", OtherDevices),
    ("i8259", OtherDevices),
    ("pic_", OtherDevices),
    ("pit_", OtherDevices),
    ("rtc_", OtherDevices),
    ("fw_cfg_", OtherDevices),
    ("port92_", OtherDevices),
    ("ioport80_", OtherDevices),
    ("isa_", OtherDevices),
    ("vga_", OtherDevices),
    ("i8042_", OtherDevices),
    // Polling and the main loop's waits and timers.
    ("do_sys_poll", HostEvents),
    ("do_sys_ppoll", HostEvents),
    ("__x64_sys_ppoll", HostEvents),
    ("do_epoll_wait", HostEvents),
    ("main_loop_wait", HostEvents),
    ("os_host_main_loop_wait", HostEvents),
    ("qemu_poll_ns", HostEvents),
    ("aio_", HostEvents),
    ("timerlist_", HostEvents),
    ("qemu_clock_", HostEvents),
    ("glib_pollfds_", HostEvents),
    ("g_main_context_", HostEvents),
    // Finding the device for an exit, and the big lock around it.
    ("kvm_handle_io", PioDispatch),
    ("address_space_", PioDispatch),
    ("flatview_", PioDispatch),
    ("memory_region_", PioDispatch),
    ("access_with_adjusted_size", PioDispatch),
    ("prepare_mmio_access", PioDispatch),
    ("qemu_mutex_lock_iothread", PioDispatch),
    ("qemu_mutex_unlock_iothread", PioDispatch),
    ("bql_", PioDispatch),
    ("kvm_cpu_exec", PioDispatch),
    ("kvm_arch_pre_run", PioDispatch),
    ("kvm_arch_post_run", PioDispatch),
];

/// The row of a VMM thread's sample outside `KVM_RUN`, from its frames,
/// leaf first (kernel frames, then user ones): the row of the first rule
/// a frame matches; else [`VmmOther`] if any user frame is named, else
/// [`VmmUnsymbolized`]. `user_named` says whether any user frame had a
/// symbol.
pub fn classify(leaf_first: &[&str], user_named: bool) -> Category {
    let claimed = leaf_first
        .iter()
        .filter_map(|frame| RULES.iter().position(|(p, _)| frame.starts_with(p)))
        .min()
        .map(|i| RULES[i].1);
    match claimed {
        // The receive path shares the network layer's functions with the
        // transmit path: below `tap_send` (the main loop reading the TAP),
        // they carry a frame to the guest.
        Some(VmnetTx) if leaf_first.iter().any(|f| f.starts_with("tap_send")) => VmnetRx,
        Some(c) => c,
        None if user_named => VmmOther,
        None => VmmUnsymbolized,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_stacks_land_in_their_rows() {
        // The vCPU's TAP write: the kernel frames of writev win, and the
        // peer's stack inside it is the peer's.
        let write = [
            "tun_get_user",
            "tun_chr_write_iter",
            "do_iter_readv_writev",
            "__x64_sys_writev",
            "writev",
            "tap_write_packet",
            "qemu_deliver_packet_iov",
            "qemu_net_queue_send",
            "qemu_send_packet",
            "pcnet_ioport_writew",
            "memory_region_dispatch_write",
            "kvm_cpu_exec",
        ];
        assert_eq!(classify(&write, true), VmnetTx);
        let peer = [
            "sock_def_readable",
            "udp_queue_rcv_one_skb",
            "netif_receive_skb",
        ];
        let peer: Vec<&str> = peer.iter().chain(write.iter()).copied().collect();
        assert_eq!(classify(&peer, true), Peer);
        // A Lance register access, before any transmit.
        assert_eq!(
            classify(
                &[
                    "pcnet_ioport_writew",
                    "memory_region_dispatch_write",
                    "kvm_cpu_exec"
                ],
                true
            ),
            DeviceEmulation
        );
        // An unnamed static function under the device model is the
        // device model's.
        assert_eq!(
            classify(&["[unknown]", "pcnet_ioport_readw", "kvm_cpu_exec"], true),
            DeviceEmulation
        );
        assert_eq!(
            classify(&["kvm_cpu_exec", "kvm_vcpu_thread_fn"], true),
            PioDispatch
        );
        // The device model reading a descriptor from guest memory goes
        // through the dispatch functions: still the device model's time.
        let dma = [
            "address_space_rw",
            "[unknown]",
            "pcnet_ioport_writew",
            "memory_region_dispatch_write",
            "address_space_rw",
            "kvm_cpu_exec",
        ];
        assert_eq!(classify(&dma, true), DeviceEmulation);
        // Waking the main loop from inside a register access.
        let kick = [
            "eventfd_write",
            "vfs_write",
            "__write",
            "event_notifier_set",
            "qemu_bh_schedule",
            "pcnet_ioport_writew",
            "kvm_cpu_exec",
        ];
        assert_eq!(classify(&kick, true), HostEvents);
        // The main loop reading the TAP and handing the frame to the NIC.
        let rx = [
            "qemu_net_queue_send",
            "qemu_send_packet_async",
            "tap_send",
            "main_loop_wait",
        ];
        assert_eq!(classify(&rx, true), VmnetRx);
        let rx_nic = ["pcnet_receive", "qemu_deliver_packet_iov", "tap_send"];
        assert_eq!(classify(&rx_nic, true), LanceRx);
        assert_eq!(
            classify(&["do_sys_poll", "ppoll", "main_loop_wait"], true),
            HostEvents
        );
        // Named but no rule; nothing named.
        assert_eq!(
            classify(&["g_hash_table_lookup", "start_thread"], true),
            VmmOther
        );
        assert_eq!(classify(&["[unknown]"], false), VmmUnsymbolized);
    }
}
