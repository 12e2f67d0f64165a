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
        let base = maps
            .lines()
            .filter(|l| l.ends_with(&*exe_name))
            .find_map(|l| {
                let mut f = l.split_whitespace();
                let range = f.next()?;
                let _perms = f.next()?;
                let offset = u64::from_str_radix(f.next()?, 16).ok()?;
                let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
                (offset == 0).then_some(start)
            })
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
    const RULES: &[(&str, Category)] = &[
        // Inside the TAP write, the host stack delivering the frame to the
        // peer's socket (and waking the peer) runs in the writer's context.
        ("netif_receive_skb", Category::Peer),
        ("net_rx_action", Category::Peer),
        ("process_backlog", Category::Peer),
        ("ip_rcv", Category::Peer),
        ("ip_local_deliver", Category::Peer),
        ("udp_", Category::Peer),
        ("__udp", Category::Peer),
        // irq-notify off: the poll of the TAP after every exit, and the
        // reads it finds work for.
        ("tun_chr_read_iter", Category::VmnetRx),
        ("SyncDevice>::recv", Category::VmnetRx),
        ("do_sys_poll", Category::HostEvents),
        ("PioDevice>::catch_up", Category::HostEvents),
        // The trait's empty default, sampled before its prologue has
        // pushed a frame (the caller, PioBus::catch_up, is then skipped).
        ("bus::PioDevice::catch_up", Category::HostEvents),
        ("bus::PioBus::catch_up", Category::HostEvents),
        // The same look at the TAP, made early inside a Lance access.
        ("port::Core::poll_rx", Category::HostEvents),
        // The I/O thread bringing the vCPU back to user space.
        ("vmm::kick::", Category::HostEvents),
        ("__x64_sys_tgkill", Category::HostEvents),
        ("tun_chr_write_iter", Category::VmnetTx),
        ("tun_rs::", Category::VmnetTx),
        ("vmnet::", Category::VmnetTx),
        ("kvm_vm_ioctl_irq_line", Category::UserIrq),
        ("irq::IrqLine", Category::UserIrq),
        ("irq::IrqChip", Category::UserIrq),
        // kernel-irqchip off: our 8259, and KVM_INTERRUPT from the vCPU.
        ("kvm_vcpu_ioctl_interrupt", Category::UserIrq),
        ("vcpu::interrupt", Category::UserIrq),
        ("Vcpu::inject", Category::UserIrq),
        ("devices::pic", Category::UserPic),
        ("devices::pit", Category::OtherDevices),
        ("pcnet::rings::transmit", Category::LanceTx),
        ("Pcnet>::transmit", Category::LanceTx),
        ("Pcnet::transmit", Category::LanceTx),
        ("pcnet::rings::receive", Category::LanceRx),
        ("Pcnet::receive", Category::LanceRx),
        ("pcnet::", Category::LanceCsr0),
        ("devices::serial", Category::OtherDevices),
        ("devices::pci", Category::OtherDevices),
        ("devices::mailbox", Category::OtherDevices),
        ("devices::transmit_stamps", Category::OtherDevices),
        ("bus::PioBus", Category::PioDispatch),
        ("dispatch::Machine", Category::PioDispatch),
    ];
    leaf_first.iter().find_map(|frame| {
        RULES
            .iter()
            .find(|(pattern, _)| frame.contains(pattern))
            .map(|(_, c)| *c)
    })
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
        assert_eq!(classify(&peer[7..]), Some(Category::VmnetTx));
    }
}
