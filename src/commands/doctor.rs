//! `worldswitch doctor`: what this host offers worldswitch, each check with a
//! one-line fix when something is missing.

use crate::frontends::printer::print_json;
use crate::machine::guest_image::GuestImage;
use crate::machine::vmm::events::VmEvent;
use crate::machine::vmm::flavour::Flavour;
use crate::machine::vmm::vm::{self, VmConfig};
use crate::profiler::tracepoints;
use kvm_ioctls::{Cap, Kvm};
use perf_event::events::{Software, Tracepoint};
use perf_event::Builder;
use serde::Serialize;
use std::io::Write;
use std::time::Duration;

/// The KVM tracepoints the profiler can use.
pub const KVM_TRACEPOINTS: &[&str] = &[
    "kvm/kvm_userspace_exit",
    "kvm/kvm_pio",
    "kvm/kvm_mmio",
    "kvm/kvm_emulate_insn",
    "kvm/kvm_set_irq",
    "kvm/kvm_pic_set_irq",
    "kvm/kvm_ioapic_set_irq",
    "kvm/kvm_msi_set_irq",
    "kvm/kvm_eoi",
    "kvm/kvm_exit",
    "kvm/kvm_entry",
    "kvm/kvm_inj_virq",
];

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present and usable.
    Ok,
    /// Usable with a limitation.
    Warn,
    /// Absent: something will not work.
    Missing,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, when not ok.
    pub fix: Option<String>,
}

fn check(name: &str, status: Status, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check {
        name: name.into(),
        status,
        detail: detail.into(),
        fix: fix.map(Into::into),
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Runs every check.
pub fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    let kvm = match vm::open_kvm() {
        Ok(kvm) => {
            out.push(check(
                "/dev/kvm",
                Status::Ok,
                "opened, API version 12",
                None,
            ));
            Some(kvm)
        }
        Err(e) => {
            out.push(check(
                "/dev/kvm",
                Status::Missing,
                e.to_string(),
                Some("see the detail"),
            ));
            None
        }
    };
    out.push(virtualization_kind());
    if let Some(kvm) = &kvm {
        out.extend(capabilities(kvm));
    }
    out.push(tap());
    out.push(netns());
    out.push(match std::process::Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => check(
            "iproute2",
            Status::Ok,
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            None,
        ),
        _ => check(
            "iproute2",
            Status::Missing,
            "no 'ip' command: the TAP backend cannot configure its namespace",
            Some("apt-get install iproute2"),
        ),
    });
    out.extend(perf());
    out.push(match tracepoints::tracefs() {
        Some(p) => check("tracefs", Status::Ok, p.display().to_string(), None),
        None => match tracepoints::missing() {
            tracepoints::TraceError::NotReadable(at) => check(
                "tracefs",
                Status::Missing,
                format!("mounted at {at}, not readable by this user"),
                Some("run worldswitch as root"),
            ),
            _ => check(
                "tracefs",
                Status::Missing,
                "not mounted (worldswitch run as root mounts it)",
                Some("mount -t tracefs nodev /sys/kernel/tracing"),
            ),
        },
    });
    if kvm.is_some() {
        out.extend(calibrate_tracepoints());
    }
    out.push(
        match read_trimmed("/sys/devices/system/clocksource/clocksource0/current_clocksource") {
            Some(cs) if cs == "tsc" => check("clocksource", Status::Ok, cs, None),
            Some(cs) => check(
                "clocksource",
                Status::Warn,
                format!("{cs} (timestamps cost more than with tsc)"),
                Some("timings stay valid; a tsc clocksource makes them cheaper"),
            ),
            None => check("clocksource", Status::Warn, "unknown", None),
        },
    );
    out.push(match read_trimmed("/sys/module/kvm/parameters/halt_poll_ns") {
        Some(ns) => check(
            "halt_poll_ns",
            Status::Ok,
            format!("host default {ns} ns; worldswitch sets its own per VM (--halt-poll-ns, default 0)"),
            None,
        ),
        None => check("halt_poll_ns", Status::Warn, "not readable", None),
    });
    out
}

fn virtualization_kind() -> Check {
    match Flavour::detect() {
        Flavour::VtX => check("virtualization", Status::Ok, "Intel VT-x", None),
        Flavour::AmdV => check("virtualization", Status::Ok, "AMD-V", None),
        Flavour::Pvm => check(
            "virtualization",
            Status::Ok,
            "PVM (paravirtual nested KVM): guest CPL0 code is emulated, CPL3 runs natively",
            None,
        ),
        Flavour::Unknown => check(
            "virtualization",
            Status::Warn,
            "no vmx/svm flag and no kvm_pvm module",
            Some("enable VT-x/AMD-V in firmware or load a KVM module for this host"),
        ),
    }
}

fn capabilities(kvm: &Kvm) -> Vec<Check> {
    let caps: &[(&str, Cap, &str)] = &[
        (
            "irqchip",
            Cap::Irqchip,
            "needed for the in-kernel 8259, IOAPIC and LAPIC",
        ),
        ("split irqchip", Cap::SplitIrqchip, "optional"),
        ("PIT2", Cap::Pit2, "needed for the in-kernel timer"),
        (
            "ioeventfd",
            Cap::Ioeventfd,
            "needed by in-kernel I/O optimizations",
        ),
        (
            "irqfd",
            Cap::Irqfd,
            "needed for event-driven interrupt injection",
        ),
        (
            "irqfd resample",
            Cap::IrqfdResample,
            "needed for level-triggered irqfd",
        ),
        (
            "coalesced PIO",
            Cap::CoalescedPio,
            "needed by rap-in-kernel and data-port-in-kernel",
        ),
        (
            "sync regs",
            Cap::SyncRegs,
            "needed for cheap cross-world stack walks",
        ),
        (
            "immediate exit",
            Cap::ImmediateExit,
            "needed for race-free kicks",
        ),
    ];
    let mut out: Vec<Check> = caps
        .iter()
        .map(|(name, cap, why)| {
            if kvm.check_extension(*cap) {
                check(name, Status::Ok, "supported", None)
            } else {
                check(
                    name,
                    Status::Missing,
                    format!("not supported; {why}"),
                    Some("use a newer host kernel"),
                )
            }
        })
        .collect();
    // KVM_CAP_HALT_POLL (182) has no enum variant in kvm-ioctls.
    out.push(if kvm.check_extension_raw(182) > 0 {
        check(
            "halt polling control",
            Status::Ok,
            "per-VM KVM_CAP_HALT_POLL",
            None,
        )
    } else {
        check(
            "halt polling control",
            Status::Warn,
            "KVM_CAP_HALT_POLL absent: the host default applies",
            Some("set /sys/module/kvm/parameters/halt_poll_ns by hand"),
        )
    });
    out
}

fn tap() -> Check {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun") {
        Ok(_) => check("TAP", Status::Ok, "/dev/net/tun opens", None),
        Err(e) => check(
            "TAP",
            Status::Missing,
            format!("/dev/net/tun: {e}"),
            Some("run as root (CAP_NET_ADMIN) or load the tun module; the sink backend works without it"),
        ),
    }
}

fn netns() -> Check {
    // Unsharing moves only the calling thread, so try it on a thread of its
    // own; the namespace vanishes with the thread.
    let result = std::thread::spawn(|| {
        // SAFETY: unshare affects only this short-lived thread.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    })
    .join();
    match result {
        Ok(Ok(())) => check(
            "network namespaces",
            Status::Ok,
            "a thread can unshare its own",
            None,
        ),
        Ok(Err(e)) => check(
            "network namespaces",
            Status::Missing,
            format!("unshare(CLONE_NEWNET): {e}"),
            Some("run as root (CAP_SYS_ADMIN)"),
        ),
        Err(_) => check(
            "network namespaces",
            Status::Missing,
            "the check panicked",
            None,
        ),
    }
}

fn perf() -> Vec<Check> {
    let mut out = Vec::new();
    let sw = Builder::new(Software::TASK_CLOCK).build();
    out.push(match sw {
        Ok(_) => check("perf events", Status::Ok, "software events open", None),
        Err(e) => check(
            "perf events",
            Status::Missing,
            format!("perf_event_open: {e}"),
            Some("run as root or lower /proc/sys/kernel/perf_event_paranoid"),
        ),
    });
    let hw = Builder::new(perf_event::events::Hardware::CPU_CYCLES).build();
    out.push(match hw {
        Ok(_) => check(
            "hardware counters",
            Status::Ok,
            "cycles counter opens",
            None,
        ),
        Err(_) => check(
            "hardware counters",
            Status::Warn,
            "not available (normal in VMs); the profiler samples with cpu-clock",
            None,
        ),
    });
    out.push(
        match read_trimmed("/proc/sys/kernel/perf_event_paranoid")
            .and_then(|v| v.parse::<i32>().ok())
        {
            Some(v) if v <= 1 => check("perf_event_paranoid", Status::Ok, v.to_string(), None),
            // SAFETY: geteuid has no preconditions.
            Some(v) if unsafe { libc::geteuid() } == 0 => check(
                "perf_event_paranoid",
                Status::Ok,
                format!("{v} (root is exempt)"),
                None,
            ),
            Some(v) => check(
                "perf_event_paranoid",
                Status::Warn,
                format!("{v}: kernel samples and tracepoints need root"),
                Some("sysctl kernel.perf_event_paranoid=1, or run as root"),
            ),
            None => check("perf_event_paranoid", Status::Warn, "not readable", None),
        },
    );
    out.push(
        match read_trimmed("/proc/sys/kernel/kptr_restrict").and_then(|v| v.parse::<i32>().ok()) {
            Some(0) => check(
                "kptr_restrict",
                Status::Ok,
                "0: kernel symbols readable",
                None,
            ),
            // SAFETY: geteuid has no preconditions.
            Some(1) if unsafe { libc::geteuid() } == 0 => check(
                "kptr_restrict",
                Status::Ok,
                "1 (root can read kernel symbols)",
                None,
            ),
            Some(v) => check(
                "kptr_restrict",
                Status::Warn,
                format!("{v}: kernel frames cannot be named"),
                Some("sysctl kernel.kptr_restrict=0, or run as root"),
            ),
            None => check("kptr_restrict", Status::Warn, "not readable", None),
        },
    );
    out
}

/// Counts each KVM tracepoint on every CPU during a short exitbench run, so
/// the report says which ones fire on this host rather than which exist.
pub fn calibrate_tracepoints() -> Vec<Check> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut counters = Vec::new();
    let mut out = Vec::new();
    for &name in KVM_TRACEPOINTS {
        let opened: Result<Vec<_>, String> = tracepoints::id(name)
            .map_err(|e| e.to_string())
            .and_then(|id| {
                (0..cpus)
                    .map(|cpu| {
                        Builder::new(Tracepoint::with_id(id))
                            .any_pid()
                            .one_cpu(cpu)
                            .include_kernel()
                            .build()
                            .map_err(|e| format!("perf_event_open: {e}"))
                    })
                    .collect()
            });
        match opened {
            Ok(c) => counters.push((name, c)),
            Err(why) => out.push(check(name, Status::Missing, why, Some("run as root"))),
        }
    }
    for (_, cs) in &mut counters {
        for c in cs.iter_mut() {
            let _ = c.enable();
        }
    }
    let ran = calibration_run();
    for (name, cs) in &mut counters {
        let total: u64 = cs.iter_mut().map(|c| c.read().unwrap_or(0)).sum();
        out.push(match (&ran, total) {
            (Err(e), _) => check(name, Status::Warn, format!("not calibrated: {e}"), None),
            (Ok(()), 0) => check(
                name,
                Status::Warn,
                "exists but never fired in a calibration run (PIO, timer interrupts, emulation); treated as unavailable",
                None,
            ),
            (Ok(()), n) => check(name, Status::Ok, format!("fires ({n} in calibration)"), None),
        });
    }
    out
}

fn calibration_run() -> Result<(), String> {
    let image = GuestImage::resolve("exitbench").map_err(|e| e.to_string())?;
    let vm = vm::start(VmConfig {
        opts: Default::default(),
        stitch: false,
        mem_mib: 16,
        image: image.elf,
        cmdline: "iterations=300".into(),
        halt_poll_ns: 0,
        floor: None,
        start_paused: false,
        nic: None,
    })
    .map_err(|e| e.to_string())?;
    loop {
        match vm.events().recv_timeout(Duration::from_secs(30)) {
            Ok(VmEvent::Finished { .. }) => return Ok(()),
            Ok(_) => {}
            Err(_) => return Err("the calibration guest did not finish".into()),
        }
    }
}

/// Prints the report.
pub fn command(json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let checks = checks();
    if json {
        print_json(&checks, out)?;
        return Ok(());
    }
    for c in &checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Missing => "MISS",
        };
        writeln!(out, "{mark} {:<26} {}", c.name, c.detail)?;
        if let Some(fix) = &c.fix {
            writeln!(out, "     {:<26} fix: {fix}", "")?;
        }
    }
    Ok(())
}
