//! worldswitch's own symbols, for naming the user-space frames of samples
//! taken on its threads, and the rules that put those frames in the VMApp
//! rows. The rows' marker shares stand beside the sampled ones as a
//! cross-check; neither is used to make the other.

use object::{Object, ObjectSymbol, SymbolKind};
use profiles::taxonomy::Category;

/// Text symbols of the running executable, at run-time addresses.
pub struct UserSymbols {
    symbols: Vec<(u64, u64, String)>,
}

impl UserSymbols {
    /// Reads the executable's symbols and where it is mapped.
    pub fn load() -> Result<Self, String> {
        let exe = std::fs::read_link("/proc/self/exe").map_err(|e| e.to_string())?;
        let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| e.to_string())?;
        let exe_name = exe.to_string_lossy();
        let base = super::foreign::unwind::parse_maps(&maps)
            .into_iter()
            .find(|m| m.offset == 0 && m.path.as_deref() == Some(&*exe_name))
            .map(|m| m.range.start)
            .ok_or("the executable's mapping was not found")?;
        let data = std::fs::read(&exe).map_err(|e| e.to_string())?;
        let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
        // A position-independent executable's addresses start at 0.
        let bias = if file.kind() == object::ObjectKind::Dynamic {
            base
        } else {
            0
        };
        let mut symbols: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .filter_map(|s| {
                let name = format!("{:#}", rustc_demangle::demangle(s.name().ok()?));
                Some((s.address() + bias, s.size(), name))
            })
            .collect();
        symbols.sort_by_key(|s| s.0);
        if symbols.is_empty() {
            return Err("the executable has no symbols".into());
        }
        Ok(Self { symbols })
    }

    /// The function containing `addr`.
    pub fn name(&self, addr: u64) -> Option<&str> {
        let i = self.symbols.partition_point(|s| s.0 <= addr);
        let (start, size, name) = self.symbols.get(i.checked_sub(1)?)?;
        (addr < start + size).then_some(name.as_str())
    }
}

/// The VMApp row of a sample outside KVM_RUN, from its frames (user and
/// kernel, leaf first): the first frame a rule claims wins.
pub fn classify(leaf_first: &[&str]) -> Option<Category> {
    use Category::*;
    // None: a frame of the I/O thread's own loop, which its markers leave
    // unattributed too.
    const RULES: &[(&str, Option<Category>)] = &[
        // Inside the TAP write, the host stack delivering the frame to the
        // peer's socket (and waking the peer) runs in the writer's context.
        ("netif_receive_skb", Some(Peer)),
        ("net_rx_action", Some(Peer)),
        ("process_backlog", Some(Peer)),
        ("ip_rcv", Some(Peer)),
        ("ip_local_deliver", Some(Peer)),
        ("udp_", Some(Peer)),
        ("__udp", Some(Peer)),
        // irq-notify off: the poll of the TAP after every exit, and the
        // reads it finds work for.
        ("tun_chr_read_iter", Some(VmnetRx)),
        ("SyncDevice>::recv", Some(VmnetRx)),
        ("do_sys_poll", Some(HostEvents)),
        ("PioDevice>::catch_up", Some(HostEvents)),
        // The trait's empty default, sampled before its prologue has
        // pushed a frame (the caller, PioBus::catch_up, is then skipped).
        ("bus::PioDevice::catch_up", Some(HostEvents)),
        ("bus::PioBus::catch_up", Some(HostEvents)),
        // The same look at the TAP, made early inside a Lance access.
        ("port::Core::poll_rx", Some(HostEvents)),
        // The I/O thread bringing the vCPU back to user space.
        ("vmm::kick::", Some(HostEvents)),
        // The I/O thread with irq-notify on: the resample's eventfd is a
        // host event (re-raising the line is IRQ delivery, in IrqLine::set);
        // delivering a batch is the Lance's receive path; the loop itself
        // has no row. Before the `vmnet::` rule, which their names match.
        ("IrqLine::resampled", Some(HostEvents)),
        ("GuestRx>::resampled", Some(HostEvents)),
        ("GuestRx>::deliver", Some(LanceRx)),
        ("TapLink::start_receiver", None),
        ("__x64_sys_tgkill", Some(HostEvents)),
        ("tun_chr_write_iter", Some(VmnetTx)),
        ("tun_rs::", Some(VmnetTx)),
        ("vmnet::", Some(VmnetTx)),
        ("kvm_vm_ioctl_irq_line", Some(UserIrq)),
        ("irq::IrqLine", Some(UserIrq)),
        ("irq::IrqChip", Some(UserIrq)),
        // kernel-irqchip off: our 8259, and KVM_INTERRUPT from the vCPU.
        ("kvm_vcpu_ioctl_interrupt", Some(UserIrq)),
        ("vcpu::interrupt", Some(UserIrq)),
        ("Vcpu::inject", Some(UserIrq)),
        ("devices::pic", Some(UserPic)),
        ("devices::pit", Some(OtherDevices)),
        ("pcnet::rings::transmit", Some(LanceTx)),
        ("Pcnet>::transmit", Some(LanceTx)),
        ("Pcnet::transmit", Some(LanceTx)),
        ("pcnet::rings::receive", Some(LanceRx)),
        ("Pcnet::receive", Some(LanceRx)),
        ("pcnet::", Some(LanceCsr0)),
        ("devices::serial", Some(OtherDevices)),
        ("devices::pci", Some(OtherDevices)),
        ("devices::mailbox", Some(OtherDevices)),
        ("devices::transmit_stamps", Some(OtherDevices)),
        ("bus::PioBus", Some(PioDispatch)),
        ("dispatch::Machine", Some(PioDispatch)),
    ];
    leaf_first
        .iter()
        .find_map(|frame| {
            RULES
                .iter()
                .find(|(pattern, _)| frame.contains(pattern))
                .map(|(_, c)| *c)
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_symbols_resolve() {
        let s = UserSymbols::load().unwrap();
        let here = own_symbols_resolve as *const () as u64;
        assert!(s.name(here).unwrap().contains("own_symbols_resolve"));
    }

    #[test]
    fn the_leaf_most_claimed_frame_wins() {
        let tx = [
            "<tun_rs::SyncDevice>::send",
            "worldswitch::machine::devices::pcnet::rings::transmit",
            "worldswitch::machine::vmm::dispatch::Machine::handle",
        ];
        assert_eq!(classify(&tx), Some(Category::VmnetTx));
        let csr = [
            "worldswitch::machine::devices::pcnet::Pcnet::write_csr",
            "worldswitch::machine::devices::bus::PioBus::write",
        ];
        assert_eq!(classify(&csr), Some(Category::LanceCsr0));
        assert_eq!(classify(&["main"]), None);
        // A TAP write stack as sampled here: the host delivering to the
        // peer's socket is the peer's, the rest of the write is VMNet's.
        let peer = [
            "_raw_spin_unlock_irqrestore",
            "sock_def_readable",
            "__udp_enqueue_schedule_skb",
            "udp_queue_rcv_one_skb",
            "ip_local_deliver_finish",
            "__netif_receive_skb_one_core",
            "netif_receive_skb",
            "tun_get_user",
            "tun_chr_write_iter",
            "<tun_rs::SyncDevice>::send",
        ];
        assert_eq!(classify(&peer), Some(Category::Peer));
        let poll = [
            "do_sys_poll",
            "__x64_sys_poll",
            "poll",
            "<worldswitch::machine::vmnet::tap::TapBackend as worldswitch::machine::vmnet::Backend>::receive_ready",
            "<worldswitch::machine::devices::pcnet::port::PcnetPort as worldswitch::machine::devices::bus::PioDevice>::catch_up",
            "worldswitch::machine::devices::bus::PioBus::catch_up",
            "worldswitch::machine::vmm::dispatch::Machine::handle",
        ];
        assert_eq!(classify(&poll), Some(Category::HostEvents));
        assert_eq!(classify(&poll[4..]), Some(Category::HostEvents));
        // The same look made early, inside a Lance access's hold of the lock.
        let early = [
            "worldswitch::machine::devices::pcnet::port::Core::poll_rx",
            "<worldswitch::machine::devices::pcnet::port::PcnetPort as worldswitch::machine::devices::bus::PioDevice>::timed_read",
            "worldswitch::machine::devices::bus::PioBus::read",
        ];
        assert_eq!(classify(&early), Some(Category::HostEvents));
        assert_eq!(classify(&early[1..]), Some(Category::LanceCsr0));
        // The I/O thread with irq-notify on: the resample, a delivery, and
        // its own loop, whose names all hold `vmnet::`.
        let resample = [
            "<vmm_sys_util::eventfd::EventFd>::read",
            "worldswitch::machine::devices::irq::IrqLine::resampled",
            "<worldswitch::machine::devices::pcnet::port::NicHandle as worldswitch::machine::vmnet::GuestRx>::resampled",
            "worldswitch::machine::vmnet::tap::TapLink::start_receiver::{{closure}}",
        ];
        assert_eq!(classify(&resample), Some(Category::HostEvents));
        assert_eq!(classify(&resample[2..]), Some(Category::HostEvents));
        assert_eq!(classify(&resample[3..]), None, "the loop has no row");
        let raise = [
            "<vmm_sys_util::eventfd::EventFd>::write",
            "worldswitch::machine::devices::irq::IrqLine::set",
            "worldswitch::machine::devices::irq::IrqLine::resampled",
        ];
        assert_eq!(classify(&raise), Some(Category::UserIrq));
        let deliver = [
            "<worldswitch::machine::devices::pcnet::port::NicHandle as worldswitch::machine::vmnet::GuestRx>::deliver",
            "worldswitch::machine::vmnet::tap::TapLink::start_receiver::{{closure}}",
        ];
        assert_eq!(classify(&deliver), Some(Category::LanceRx));
        assert_eq!(classify(&peer[7..]), Some(Category::VmnetTx));
    }
}
