//! The category taxonomy: every sample and every traced interval lands in
//! exactly one leaf, each leaf belongs to one world and is charged to one
//! thread, and the leaves the paper measured carry its published share.

use serde::{Deserialize, Serialize};

/// The worlds of the hosted architecture, mapped onto KVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum World {
    /// The guest: guest mode inside `KVM_RUN`.
    Guest,
    /// The KVM module in the host kernel (the paper's VMM).
    Vmm,
    /// The worldswitch process (the paper's VMApp).
    Vmapp,
    /// The rest of the host: scheduler, the receiving peer.
    Host,
    /// The profiler and UI, shown apart.
    Workbench,
}

/// Which worldswitch thread a row is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Thread {
    /// The vCPU thread (guest, VMM and most VMApp work).
    Vcpu,
    /// The I/O thread (TAP reads, timers, the peer on TAP runs).
    Io,
    /// The paravirtual NIC's drain thread (its TAP writes).
    Pvnet,
    /// Profiler and UI threads.
    Workbench,
}

macro_rules! categories {
    ($($variant:ident => ($world:ident, $thread:ident, $key:literal, $label:literal, $paper:expr)),* $(,)?) => {
        /// A leaf of the taxonomy.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Category {
            $(
                #[doc = $label]
                $variant,
            )*
        }

        impl Category {
            /// Every leaf, in table order.
            pub const ALL: &'static [Category] = &[$(Category::$variant),*];

            /// The world the leaf belongs to.
            pub fn world(self) -> World {
                match self { $(Category::$variant => World::$world),* }
            }

            /// The thread the leaf is charged to.
            pub fn thread(self) -> Thread {
                match self { $(Category::$variant => Thread::$thread),* }
            }

            /// A stable key for files and scripts.
            pub fn key(self) -> &'static str {
                match self { $(Category::$variant => $key),* }
            }

            /// The row's label.
            pub fn label(self) -> &'static str {
                match self { $(Category::$variant => $label),* }
            }

            /// The paper's published share for the row it maps to, where it
            /// has one: (table, percent). Table 1 "Total time" is `total`,
            /// its "VMM time" part is `vmm`.
            pub fn paper_share(self) -> Option<(PaperTable, f64)> {
                match self { $(Category::$variant => $paper),* }
            }
        }
    };
}

/// Which half of the paper's Table 1 a reference share comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaperTable {
    /// "Total time".
    Total,
    /// "VMM time".
    Vmm,
}

use PaperTable::{Total, Vmm as VmmTable};

categories! {
    GuestNative => (Guest, Vcpu, "guest_native", "guest instructions executing directly", None),
    GuestIdle => (Guest, Vcpu, "guest_idle", "guest idle (vCPU halted, halt polling included)", None),
    WorldSwitch => (Vmm, Vcpu, "world_switch", "transitioning to/from virtualization code", Some((VmmTable, 4.8))),
    EmulatedOrdinary => (Vmm, Vcpu, "emulated_ordinary", "instructions not requiring virtualization, emulated", Some((VmmTable, 22.0))),
    Privileged => (Vmm, Vcpu, "privileged", "instructions requiring virtualization", Some((VmmTable, 11.6))),
    Iret => (Vmm, Vcpu, "iret", "virtualizing the IRET instruction", Some((VmmTable, 4.8))),
    PioInKernel => (Vmm, Vcpu, "pio_in_kernel", "IN/OUTs handled in the VMM", Some((VmmTable, 8.3))),
    IrqDelivery => (Vmm, Vcpu, "irq_delivery", "delivering virtual IRQs", Some((VmmTable, 4.6))),
    ExitToUser => (Vmm, Vcpu, "exit_to_user", "IN/OUTs requiring a switch to the VMApp (kernel side)", Some((VmmTable, 26.8))),
    PioDispatch => (Vmapp, Vcpu, "pio_dispatch", "IN/OUT dispatch in the VMApp", None),
    LanceRap => (Vmapp, Vcpu, "lance_rap", "IN/OUTs to the Lance address port", Some((VmmTable, 8.1))),
    LanceCsr0 => (Vmapp, Vcpu, "lance_csr0", "emulating the Lance status register", Some((Total, 4.0))),
    LanceTx => (Vmapp, Vcpu, "lance_tx", "emulating the Lance transmit path", Some((Total, 3.3))),
    LanceRx => (Vmapp, Vcpu, "lance_rx", "emulating the Lance receive path", None),
    UserPic => (Vmapp, Vcpu, "user_pic", "user-space interrupt controller", None),
    OtherDevices => (Vmapp, Vcpu, "other_devices", "other device emulation (PCI config, serial, mailbox)", None),
    VmnetTx => (Vmapp, Vcpu, "vmnet_tx", "transmitting via VMNet", Some((Total, 8.7))),
    VmnetRx => (Vmapp, Io, "vmnet_rx", "receiving via VMNet", Some((Total, 0.8))),
    HostEvents => (Vmapp, Io, "host_events", "handling host events (poll, eventfd, timers)", Some((Total, 3.4))),
    UserIrq => (Vmapp, Vcpu, "user_irq", "virtual IRQ delivery from user space", None),
    Preempted => (Host, Vcpu, "preempted", "runnable but not running", None),
    Peer => (Host, Io, "peer", "the receiving peer's network stack", None),
    Unattributed => (Host, Vcpu, "unattributed", "not attributed to any row", None),
    Profiler => (Workbench, Workbench, "profiler", "the profiler's own cost", None),
}

impl Category {
    /// The leaf with `key`.
    pub fn from_key(key: &str) -> Option<Category> {
        Category::ALL.iter().copied().find(|c| c.key() == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_round_trip() {
        for (i, c) in Category::ALL.iter().enumerate() {
            assert_eq!(Category::from_key(c.key()), Some(*c));
            assert!(Category::ALL[i + 1..].iter().all(|d| d.key() != c.key()));
        }
    }

    #[test]
    fn paper_shares_are_the_published_ones() {
        // Table 1, "VMM time": the eight rows sum to 91.0%.
        let vmm: f64 = Category::ALL
            .iter()
            .filter_map(|c| c.paper_share())
            .filter(|(t, _)| *t == PaperTable::Vmm)
            .map(|(_, s)| s)
            .sum();
        assert!((vmm - 91.0).abs() < 1e-9, "{vmm}");
        assert_eq!(
            Category::VmnetTx.paper_share(),
            Some((PaperTable::Total, 8.7))
        );
        assert_eq!(Category::ExitToUser.world(), World::Vmm);
        assert_eq!(Category::VmnetRx.thread(), Thread::Io);
    }
}
