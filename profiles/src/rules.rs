//! Kernel frames to VMM rows: one table of symbol rules, built from real
//! vCPU-thread stacks on a PVM host (`fixtures/pvm-kvm-stacks`, recorded on
//! this machine kind)
//! and from the kernel's function names for VT-x and AMD-V
//! (`fixtures/vtx-svm-kvm-stacks.folded`, constructed, not recorded).
//!
//! A stack is classified by the most specific rule any of its frames
//! matches: rules are listed from most to least specific, and the first
//! rule (in table order) that some frame matches wins.

use crate::taxonomy::Category;

/// How a rule matches a frame name.
#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// The frame name, less any `.isra.0`-style suffix, equals this.
    Exact(&'static str),
    /// The frame name starts with this.
    Prefix(&'static str),
}

impl Pattern {
    fn matches(self, frame: &str) -> bool {
        let base = frame.split('.').next().unwrap_or(frame);
        match self {
            Pattern::Exact(name) => base == name,
            Pattern::Prefix(p) => frame.starts_with(p),
        }
    }
}

use Category::*;
use Pattern::{Exact, Prefix};

/// The rules, most specific first.
const RULES: &[(Pattern, Category)] = &[
    // A halted vCPU: halt polling or blocked in KVM.
    (Exact("kvm_vcpu_halt"), GuestIdle),
    (Exact("kvm_vcpu_block"), GuestIdle),
    (Exact("kvm_vcpu_check_block"), GuestIdle),
    // IRET and interrupt windows.
    (Exact("pvm_em_iretq"), Iret),
    (Exact("em_iret"), Iret),
    (Exact("handle_interrupt_window"), Iret),
    (Exact("interrupt_window_interception"), Iret),
    // Injecting interrupts.
    (Prefix("kvm_set_irq"), IrqDelivery),
    (Prefix("kvm_pic_set_irq"), IrqDelivery),
    (Prefix("kvm_ioapic_set_irq"), IrqDelivery),
    (Prefix("kvm_irq_delivery"), IrqDelivery),
    (Prefix("irqfd_"), IrqDelivery),
    (Prefix("kvm_vm_ioctl_irq_line"), IrqDelivery),
    (Exact("kvm_check_and_inject_events"), IrqDelivery),
    (Exact("inject_pending_event"), IrqDelivery),
    (Prefix("kvm_cpu_get_interrupt"), IrqDelivery),
    (Prefix("kvm_pic_read_irq"), IrqDelivery),
    (Prefix("kvm_apic_accept"), IrqDelivery),
    (Prefix("__apic_accept_irq"), IrqDelivery),
    (Prefix("pvm_inject"), IrqDelivery),
    (Prefix("vmx_inject_irq"), IrqDelivery),
    (Prefix("svm_inject_irq"), IrqDelivery),
    // Port I/O completed by a device inside the kernel.
    (Exact("ioeventfd_write"), PioInKernel),
    (Prefix("coalesced_mmio_write"), PioInKernel),
    (Prefix("picdev_"), PioInKernel),
    (Prefix("pit_ioport"), PioInKernel),
    (Prefix("elcr_ioport"), PioInKernel),
    (Prefix("speaker_ioport"), PioInKernel),
    // Privileged and sensitive instructions, page-table work.
    (Prefix("kvm_emulate_cpuid"), Privileged),
    (Prefix("kvm_set_cr"), Privileged),
    (Prefix("kvm_set_msr"), Privileged),
    (Prefix("kvm_get_msr"), Privileged),
    (Prefix("kvm_emulate_wrmsr"), Privileged),
    (Prefix("kvm_emulate_rdmsr"), Privileged),
    (Prefix("em_cr_write"), Privileged),
    (Prefix("em_wrmsr"), Privileged),
    (Prefix("em_rdmsr"), Privileged),
    (Prefix("em_cli"), Privileged),
    (Prefix("em_sti"), Privileged),
    (Prefix("em_lgdt"), Privileged),
    (Prefix("em_lidt"), Privileged),
    (Prefix("handle_cr"), Privileged),
    (Prefix("kvm_mmu_page_fault"), Privileged),
    (Prefix("handle_ept_violation"), Privileged),
    (Prefix("npf_interception"), Privileged),
    (Prefix("kvm_mmu_load"), Privileged),
    // Instruction emulation (on PVM, all guest CPL0 code); the
    // emulate_insn tracepoint splits it by instruction later.
    (Prefix("pvm_emulate_insn"), EmulatedOrdinary),
    (Exact("pvm_emulate_one"), EmulatedOrdinary),
    (Exact("pvm_emulate_trap"), EmulatedOrdinary),
    (Exact("x86_emulate_instruction"), EmulatedOrdinary),
    (Exact("x86_emulate_insn"), EmulatedOrdinary),
    (Exact("x86_decode_insn"), EmulatedOrdinary),
    (Exact("x86_decode_emulated_instruction"), EmulatedOrdinary),
    (Exact("kvm_emulate_instruction"), EmulatedOrdinary),
    (Prefix("handle_io"), EmulatedOrdinary),
    (Prefix("io_interception"), EmulatedOrdinary),
    // Entering and leaving guest mode.
    (Exact("vcpu_load"), WorldSwitch),
    (Exact("vcpu_put"), WorldSwitch),
    (Prefix("kvm_arch_vcpu_load"), WorldSwitch),
    (Prefix("kvm_arch_vcpu_put"), WorldSwitch),
    (Prefix("kvm_load_guest_fpu"), WorldSwitch),
    (Prefix("kvm_put_guest_fpu"), WorldSwitch),
    (Prefix("pvm_vcpu_run"), WorldSwitch),
    (Prefix("pvm_vcpu_load"), WorldSwitch),
    (Prefix("pvm_vcpu_put"), WorldSwitch),
    (Prefix("switcher_"), WorldSwitch),
    (Prefix("vmx_vcpu_run"), WorldSwitch),
    (Prefix("__vmx_vcpu_run"), WorldSwitch),
    (Prefix("vmx_vcpu_enter_exit"), WorldSwitch),
    (Prefix("vmx_prepare_switch_to_guest"), WorldSwitch),
    (Prefix("svm_vcpu_run"), WorldSwitch),
    (Prefix("__svm_vcpu_run"), WorldSwitch),
    (Prefix("svm_vcpu_enter_exit"), WorldSwitch),
    (Prefix("svm_prepare_switch_to_guest"), WorldSwitch),
    (Prefix("kvm_load_host_xsave_state"), WorldSwitch),
    (Prefix("kvm_load_guest_xsave_state"), WorldSwitch),
    // What is left of KVM_RUN and the ioctl path: leaving for user space
    // and coming back.
    (Prefix("pvm_handle_exit"), ExitToUser),
    (Prefix("__pvm_handle_exit"), ExitToUser),
    (Prefix("vmx_handle_exit"), ExitToUser),
    (Prefix("svm_handle_exit"), ExitToUser),
    (Prefix("complete_emulated_pio"), ExitToUser),
    (Prefix("complete_fast_pio"), ExitToUser),
    (Exact("kvm_arch_vcpu_ioctl_run"), ExitToUser),
    (Exact("kvm_vcpu_ioctl"), ExitToUser),
];

/// Where a vCPU-thread sample with no kernel frame belongs: on PVM, guest
/// CPL3 runs as host user mode, so the profiler marks such samples
/// explicitly with this pseudo-frame.
pub const GUEST_PSEUDO_FRAME: &str = "[user space or guest]";

/// The VMM row of a kernel stack (root first) sampled on the vCPU thread
/// inside `KVM_RUN`, or None when no rule applies (the sample is then not a
/// VMM sample: user space, or kernel work outside KVM).
pub fn classify<'a>(frames: impl IntoIterator<Item = &'a str>) -> Option<Category> {
    let mut best: Option<usize> = None;
    for frame in frames {
        if frame == GUEST_PSEUDO_FRAME {
            return Some(GuestNative);
        }
        if let Some(i) = RULES.iter().position(|(p, _)| p.matches(frame)) {
            best = Some(best.map_or(i, |b| b.min(i)));
        }
    }
    best.map(|i| RULES[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// Shares (percent of samples) by category of a folded file; None for
    /// samples no rule claims.
    fn shares(text: &str) -> BTreeMap<Option<Category>, f64> {
        let mut counts = BTreeMap::new();
        let mut total = 0u64;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (stack, n) = line.rsplit_once(' ').unwrap();
            let n: u64 = n.parse().unwrap();
            *counts.entry(classify(stack.split(';'))).or_insert(0) += n;
            total += n;
        }
        counts
            .into_iter()
            .map(|(k, v)| (k, v as f64 * 100.0 / total as f64))
            .collect()
    }

    fn pvm(name: &str) -> BTreeMap<Option<Category>, f64> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/pvm-kvm-stacks")
            .join(format!("{name}.folded"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        shares(&text)
    }

    fn get(s: &BTreeMap<Option<Category>, f64>, c: Category) -> f64 {
        s.get(&Some(c)).copied().unwrap_or(0.0)
    }

    #[test]
    fn pvm_exit_to_user_from_cpl0_is_mostly_the_world_switch() {
        let s = pvm("pio-exit-to-user-cpl0");
        // The MSR reads in vcpu_load (which exit to the outer host on a
        // nested hypervisor) dominate; emulating the OUT is the next row.
        assert!(get(&s, WorldSwitch) > 50.0, "{s:?}");
        assert!(get(&s, EmulatedOrdinary) > 10.0, "{s:?}");
        assert!(get(&s, ExitToUser) > 1.0, "{s:?}");
        assert_eq!(get(&s, Iret), 0.0);
        assert_eq!(
            get(&s, PioInKernel),
            0.0,
            "nothing in-kernel claims this port"
        );
        assert!(s.get(&None).copied().unwrap_or(0.0) < 5.0, "{s:?}");
    }

    #[test]
    fn pvm_exit_to_user_from_cpl3_shows_guest_time() {
        let s = pvm("pio-exit-to-user-cpl3");
        assert!(get(&s, GuestNative) > 5.0, "{s:?}");
        assert!(get(&s, WorldSwitch) > 40.0, "{s:?}");
    }

    #[test]
    fn pvm_ioeventfd_is_handled_in_the_kernel() {
        for name in ["pio-ioeventfd-cpl0", "pio-ioeventfd-cpl3"] {
            let s = pvm(name);
            assert!(get(&s, PioInKernel) > 0.0, "{name}: {s:?}");
            assert!(get(&s, EmulatedOrdinary) > 50.0, "{name}: {s:?}");
        }
    }

    #[test]
    fn pvm_iret_loop_is_iret_and_emulation() {
        let s = pvm("iret-emulated-cpl0");
        assert!(get(&s, Iret) > 2.0, "{s:?}");
        assert!(get(&s, EmulatedOrdinary) > 50.0, "{s:?}");
    }

    #[test]
    fn vtx_and_svm_stacks_from_kernel_names() {
        let text = include_str!("../fixtures/vtx-svm-kvm-stacks.folded");
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (stack, want) = line.rsplit_once(' ').unwrap();
            let want = Category::from_key(want).unwrap_or_else(|| panic!("bad key in {line}"));
            assert_eq!(classify(stack.split(';')), Some(want), "{stack}");
        }
    }

    #[test]
    fn rules_prefer_the_specific_frame_wherever_it_is() {
        let stack = [
            "kvm_vcpu_ioctl",
            "kvm_arch_vcpu_ioctl_run",
            "vcpu_enter_guest",
            "kvm_check_and_inject_events",
        ];
        assert_eq!(classify(stack), Some(IrqDelivery));
        assert_eq!(classify(["do_syscall_64", "__x64_sys_read"]), None);
        assert_eq!(classify(["vcpu", GUEST_PSEUDO_FRAME]), Some(GuestNative));
        assert_eq!(classify(["__pvm_handle_exit.isra.0"]), Some(ExitToUser));
    }
}
