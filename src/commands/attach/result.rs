//! What `attach` measured, as `--json` writes it and the text report and
//! the workbench show it, and the profile `-o` saves.

use crate::commands::record::host_provenance;
use profiles::profile::Profile;
use profiles::table::{PerFrame, Table};
use profiles::taxonomy::World;
use serde::Serialize;
use std::collections::BTreeMap;

/// The process attached to.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// Its PID.
    pub pid: i32,
    /// Its command name.
    pub command: String,
    /// Which VMM it is (`qemu`, `firecracker`, ... or its file name).
    pub vmm: String,
    /// Its executable.
    pub exe: String,
    /// vCPU descriptors it holds.
    pub vcpu_descriptors: usize,
}

/// One of the target's threads over the run.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadFigures {
    /// Its TID.
    pub tid: i32,
    /// Its name (QEMU names vCPU threads only with `-name debug-threads=on`).
    pub name: String,
    /// A vCPU: KVM reported exits or port accesses on it.
    pub vcpu: bool,
    /// CPU, percent of one core.
    pub cpu_pct: f64,
    /// CPU seconds.
    pub cpu_seconds: f64,
    /// Seconds it waited runnable (schedstat's run delay).
    pub run_delay_seconds: f64,
    /// Exits to user space (`kvm:kvm_userspace_exit`).
    pub exits_to_user: Option<u64>,
    /// Of those, for port I/O (reason `KVM_EXIT_IO`).
    pub io_exits: Option<u64>,
    /// Of those, for MMIO (reason `KVM_EXIT_MMIO`).
    pub mmio_exits: Option<u64>,
    /// Port accesses KVM saw (`kvm:kvm_pio`).
    pub port_accesses: Option<u64>,
    /// Interrupts the thread raised: a line set high (`kvm_set_irq`,
    /// level 1) or an MSI (`kvm_msi_set_irq`).
    pub interrupts: Option<u64>,
    /// Its stack samples.
    pub samples: u64,
    /// The CPU it last ran on.
    pub last_cpu: Option<u32>,
}

/// A TAP device's traffic over the run.
#[derive(Debug, Clone, Serialize)]
pub struct TapFigures {
    /// The interface.
    pub name: String,
    /// Frames the guest sent (the TAP received).
    pub frames_from_guest: u64,
    /// Their bytes.
    pub bytes_from_guest: u64,
    /// Frames the TAP sent to the guest.
    pub frames_to_guest: u64,
}

/// One port's accesses.
#[derive(Debug, Clone, Serialize)]
pub struct PortFigures {
    /// The port.
    pub port: u16,
    /// Its owner, where a PC fixes it.
    pub name: Option<String>,
    /// OUTs (estimated: see [`ExitFigures::ports_traced`]).
    pub outs: u64,
    /// INs (estimated).
    pub ins: u64,
    /// Accesses the windows traced.
    pub traced: u64,
}

/// The vCPU threads' exits.
#[derive(Debug, Clone, Serialize)]
pub struct ExitFigures {
    /// Returns from `KVM_RUN` to user space (`kvm:kvm_userspace_exit`).
    pub kvm_run_returns: Option<u64>,
    /// Of those, for port I/O.
    pub io_exits: Option<u64>,
    /// Of those, for MMIO.
    pub mmio_exits: Option<u64>,
    /// Port accesses, in KVM or not (`kvm:kvm_pio`).
    pub port_accesses: Option<u64>,
    /// Of those, the ones KVM completed without an exit.
    pub port_accesses_in_kernel: Option<u64>,
    /// Port accesses by port: the emulation windows' `kvm_pio` records
    /// scaled to every access, largest first.
    pub ports: Vec<PortFigures>,
    /// Port accesses the windows traced.
    pub ports_traced: u64,
}

/// What `attach` measured.
#[derive(Debug, Clone, Serialize)]
pub struct AttachResult {
    /// The target.
    pub target: TargetInfo,
    /// Seconds measured.
    pub seconds: f64,
    /// The target exited before the end.
    pub target_exited: bool,
    /// Its vCPU threads.
    pub vcpu_threads: Vec<ThreadFigures>,
    /// Its other threads.
    pub threads: Vec<ThreadFigures>,
    /// Its TAP devices.
    pub taps: Vec<TapFigures>,
    /// The vCPU threads' exits.
    pub exits: ExitFigures,
    /// Bytes per second the guest sent through its TAPs, in Mb/s (None:
    /// no TAP).
    pub throughput_mbps: Option<f64>,
    /// Frames per second it sent.
    pub frames_per_sec: Option<f64>,
    /// Exits to user space per frame.
    pub exits_per_frame: Option<f64>,
    /// Events per frame (None: no TAP or no frame, see
    /// `per_frame_unavailable`).
    pub per_frame: Option<PerFrame>,
    /// Why there are no per-frame figures.
    pub per_frame_unavailable: Option<String>,
    /// The overhead table, as `run --json` has it.
    pub profile: Table,
    /// Folded stacks (in `-o` profiles, not in `--json`).
    #[serde(skip)]
    pub folded: BTreeMap<String, u64>,
    /// What could not be measured, and why.
    pub unavailable: Vec<String>,
}

impl AttachResult {
    /// Of the vCPU threads' user-space time (the VMApp world's rows), the
    /// percent no symbol named.
    pub fn unsymbolized_pct(&self) -> Option<f64> {
        let vmapp = self.profile.rows.iter().filter(|r| {
            r.world == Some(World::Vmapp) && r.thread == profiles::taxonomy::Thread::Vcpu
        });
        let (mut all, mut unnamed) = (0.0, 0.0);
        for r in vmapp {
            all += r.share_pct;
            if r.category.key().contains("unsymbolized") {
                unnamed += r.share_pct;
            }
        }
        (all > 0.0).then(|| unnamed / all * 100.0)
    }

    /// The measurement as a profile `report`, `flamegraph`, `diff` and
    /// `view` read.
    pub fn profile(&self) -> Profile {
        let mut provenance = host_provenance();
        provenance.halt_poll_ns =
            std::fs::read_to_string("/sys/module/kvm/parameters/halt_poll_ns")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
        provenance.guest = format!(
            "attached: {} {} (PID {}, {})",
            self.target.vmm, self.target.command, self.target.pid, self.target.exe
        );
        let mut extra = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = extra.as_object_mut() {
            // The table is the profile's own.
            o.remove("profile");
        }
        Profile::new(
            provenance,
            self.seconds,
            self.profile.clone(),
            self.folded.clone(),
            serde_json::json!({ "attach": extra }),
        )
    }
}
