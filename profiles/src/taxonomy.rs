//! The category taxonomy: every sample and every traced interval lands in
//! exactly one leaf, each leaf belongs to one world and is charged to one
//! thread, and the leaves the paper measured carry its published share.
//! One row is not a leaf: `kvm_run`, the time inside `KVM_RUN` left
//! undivided where no stack samples split it into guest and VMM leaves.

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

impl Thread {
    /// The thread's name in folded stacks and sample counts.
    pub const fn sampled_name(self) -> &'static str {
        match self {
            Thread::Vcpu => "vcpu",
            Thread::Io => "io",
            Thread::Pvnet => "pvnet",
            Thread::Workbench => "workbench",
        }
    }
}

macro_rules! categories {
    ($($variant:ident => ($world:expr, $thread:ident, $key:literal, $label:literal, $paper:expr)),* $(,)?) => {
        /// A leaf of the taxonomy (or the undivided `kvm_run`).
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

            /// The world the leaf belongs to (none for the undivided
            /// KVM_RUN time, which is the guest's and the VMM's).
            pub fn world(self) -> Option<World> {
                match self { $(Category::$variant => $world),* }
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
    KvmRun => (None, Vcpu, "kvm_run", "inside KVM_RUN: guest and VMM, undivided", None),
    GuestNative => (Some(World::Guest), Vcpu, "guest_native", "guest instructions executing directly", None),
    GuestIdle => (Some(World::Guest), Vcpu, "guest_idle", "guest idle (vCPU halted, halt polling included)", None),
    WorldSwitch => (Some(World::Vmm), Vcpu, "world_switch", "transitioning to/from virtualization code", Some((VmmTable, 4.8))),
    EmulatedOrdinary => (Some(World::Vmm), Vcpu, "emulated_ordinary", "instructions not requiring virtualization, emulated", Some((VmmTable, 22.0))),
    Privileged => (Some(World::Vmm), Vcpu, "privileged", "instructions requiring virtualization", Some((VmmTable, 11.6))),
    Iret => (Some(World::Vmm), Vcpu, "iret", "virtualizing the IRET instruction", Some((VmmTable, 4.8))),
    PioInKernel => (Some(World::Vmm), Vcpu, "pio_in_kernel", "IN/OUTs handled in the VMM", Some((VmmTable, 8.3))),
    IrqDelivery => (Some(World::Vmm), Vcpu, "irq_delivery", "delivering virtual IRQs", Some((VmmTable, 4.6))),
    ExitToUser => (Some(World::Vmm), Vcpu, "exit_to_user", "IN/OUTs requiring a switch to the VMApp (kernel side)", Some((VmmTable, 26.8))),
    PioDispatch => (Some(World::Vmapp), Vcpu, "pio_dispatch", "IN/OUT dispatch in the VMApp", None),
    LanceRap => (Some(World::Vmapp), Vcpu, "lance_rap", "IN/OUTs to the Lance address port", Some((VmmTable, 8.1))),
    LanceCsr0 => (Some(World::Vmapp), Vcpu, "lance_csr0", "emulating the Lance status register", Some((Total, 4.0))),
    LanceTx => (Some(World::Vmapp), Vcpu, "lance_tx", "emulating the Lance transmit path", Some((Total, 3.3))),
    LanceRx => (Some(World::Vmapp), Vcpu, "lance_rx", "emulating the Lance receive path", None),
    UserPic => (Some(World::Vmapp), Vcpu, "user_pic", "user-space interrupt controller", None),
    OtherDevices => (Some(World::Vmapp), Vcpu, "other_devices", "other device emulation (PCI config, serial, mailbox)", None),
    VmnetTx => (Some(World::Vmapp), Vcpu, "vmnet_tx", "transmitting via VMNet", Some((Total, 8.7))),
    VmnetRx => (Some(World::Vmapp), Io, "vmnet_rx", "receiving via VMNet", Some((Total, 0.8))),
    HostEvents => (Some(World::Vmapp), Io, "host_events", "handling host events (poll, eventfd, timers)", Some((Total, 3.4))),
    UserIrq => (Some(World::Vmapp), Vcpu, "user_irq", "virtual IRQ delivery from user space", None),
    DeviceEmulation => (Some(World::Vmapp), Vcpu, "device_emulation", "device emulation in a VMM we did not start (not split by register)", None),
    VmmOther => (Some(World::Vmapp), Vcpu, "vmm_other", "the VMM's other user-space work (named, no rule)", None),
    VmmUnsymbolized => (Some(World::Vmapp), Vcpu, "vmm_unsymbolized", "VMM user space, unsymbolized", None),
    Preempted => (Some(World::Host), Vcpu, "preempted", "runnable but not running", None),
    Peer => (Some(World::Host), Io, "peer", "the receiving peer's network stack", None),
    Unattributed => (Some(World::Host), Vcpu, "unattributed", "not attributed to any row", None),
    Profiler => (Some(World::Workbench), Workbench, "profiler", "the profiler's own cost", None),
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
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
            // Files and scripts see the same key.
            assert_eq!(serde_json::to_value(c).unwrap(), c.key());
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
        assert_eq!(Category::ExitToUser.world(), Some(World::Vmm));
        assert_eq!(Category::KvmRun.world(), None);
        assert_eq!(Category::VmnetRx.thread(), Thread::Io);
    }
}
