//! What a guest's run measured, as one model for people and scripts: how
//! it ended, the exits, the network's accounting, the overhead table and
//! the rest. A [`super::Guest`] ends in one; the printers print it.

use crate::machine::devices::pcnet::registers::{
    DWIO_BDP, DWIO_RAP, IO_SIZE as PCNET_IO_SIZE, WIO_BDP, WIO_RAP, WIO_RDP,
};
use crate::machine::guest_image::GuestImage;
use crate::machine::netrun::NetReport;
use crate::machine::vmm::events::Finish;
use crate::machine::vmm::exits::ExitStats;
use crate::machine::vmm::vm::NIC_IO_BASE;
use crate::profiler::emulation::EmulationSummary;
use crate::profiler::tracepoints::{PIO, USERSPACE_EXIT};
use profiles::model::{Counts, LanceAccesses, Timed};
use profiles::table::{Direction, PerFrame, Table};
use profiles::taxonomy::{Category, Thread};
use profiles::transmit_path::TransmitPath;
use serde::Serialize;
use std::collections::BTreeMap;

/// How a run ended, for people and scripts.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// guest_exit, host_stop, triple_fault, emulation_failure, dead_halt,
    /// unexpected_exit or kvm_error.
    pub kind: &'static str,
    /// The guest's exit status, for guest_exit.
    pub status: Option<u32>,
    /// The guest RIP, where one is known.
    pub rip: Option<u64>,
    /// The RIP as function+offset in the guest image.
    pub symbol: Option<String>,
    /// Instruction bytes at RIP, hex, for emulation failures.
    pub bytes: Option<String>,
    /// One plain sentence.
    pub message: String,
    /// Whether the run counts as a failure.
    pub failed: bool,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The guest name or path.
    pub guest: String,
    /// Its GNU build ID.
    pub guest_build_id: Option<String>,
    /// Its command line.
    pub cmdline: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time from resume to finish.
    pub seconds: f64,
    /// Exits to user space as worldswitch counted them.
    pub exits: ExitStats,
    /// Tracepoint counts on the vCPU thread, by tracepoint.
    pub tracepoints: BTreeMap<String, u64>,
    /// Why tracepoints could not be counted, if they could not.
    pub tracepoints_unavailable: Option<String>,
    /// Counters the guest reported through the mailbox (last value wins).
    pub guest_counters: BTreeMap<String, u64>,
    /// Phases the guest reported, timed by the host.
    pub phases: Vec<profiles::timeline::Phase>,
    /// Malformed mailbox messages, ignored.
    pub bad_messages: Vec<String>,
    /// Guest console output (the last 64 KiB).
    pub console: String,
    /// The NIC's frame accounting, at the top level of the JSON.
    #[serde(flatten)]
    pub net: NetReport,
    /// Where the vCPU thread's CPU time went, from its markers.
    pub profile: Table,
    /// The transmit path (Figure 5), when the guest measured it.
    pub transmit_path: Option<TransmitPath>,
    /// The emulated-instruction mix from `kvm:kvm_emulate_insn` windows.
    pub emulation: Option<EmulationSummary>,
    /// Sampled stacks, folded (saved by `record`, not printed by `run`).
    #[serde(skip)]
    pub folded: BTreeMap<String, u64>,
    /// The run over time, where `RunArgs::timeline` asked for it (saved
    /// by `record`, not printed by `run`).
    #[serde(skip)]
    pub timeline: Option<profiles::timeline::Timeline>,
    /// CPU seconds of the vCPU thread.
    pub vcpu_cpu_seconds: f64,
    /// CPU seconds of the I/O thread (TAP only).
    pub io_cpu_seconds: Option<f64>,
    /// Every worldswitch thread's CPU over the run, percent of one core
    /// (threads that ended before the run did are missing).
    pub thread_cpu: Vec<profiles::snapshot::ThreadCpu>,
    /// The optimization toggles at the end of the run.
    pub optimizations: BTreeMap<String, bool>,
    /// When the toggles changed (seconds since the start) and to what; the
    /// first entry is the start.
    pub optimization_changes: Vec<profiles::snapshot::Mark>,
    /// The host TSC rate, measured at the end of the run, for turning the
    /// guest's TSC cycle counts into time (the guest's TSC ticks at the
    /// host's rate on PVM and on VT-x/AMD-V without TSC scaling).
    pub host_tsc_mhz: f64,
}

/// The per-frame ledger's counts of a run: per datagram delivered when the
/// guest transmitted, else per datagram it received; None when no frame
/// flowed.
pub fn ledger(r: &RunResult) -> Option<PerFrame> {
    let n = &r.net;
    let (frames, direction) = match (n.frames_delivered, n.rx_delivered) {
        (0, 0) => return None,
        (0, rx) => (rx, Direction::Receive),
        (tx, _) => (tx, Direction::Transmit),
    };
    let seconds_traced = r.emulation.as_ref().filter(|e| e.traced_seconds > 0.0);
    Some(per_frame(
        frames,
        direction,
        &LedgerCounts {
            tracepoints: &r.tracepoints,
            exits: &r.exits,
            irq_edges: n.irq_edges,
            // Counted against the frames sent in the windows where there
            // were any: a window slows the guest, so the rate it saw times
            // the whole run's seconds undercounts.
            emulated_per_frame: seconds_traced.map(|e| {
                e.per_frame()
                    .unwrap_or(e.estimated_per_second * r.seconds / frames as f64)
            }),
            tap_writes: Some(n.frames_received_by_host),
        },
    ))
}

/// What a ledger counts, over the same time as its frames: the kernel's
/// tracepoint counts, our exits, the NIC line's edges, the emulated
/// instructions per frame and the TAP writes.
pub struct LedgerCounts<'a> {
    /// Tracepoint counts by name.
    pub tracepoints: &'a BTreeMap<String, u64>,
    /// Exits to user space.
    pub exits: &'a ExitStats,
    /// The NIC's interrupt line going up or down.
    pub irq_edges: u64,
    /// Guest instructions emulated per frame, where the windows ran.
    pub emulated_per_frame: Option<f64>,
    /// Frames written to the backend, where known.
    pub tap_writes: Option<u64>,
}

/// The events per frame of `frames` frames going `direction`.
pub fn per_frame(frames: u64, direction: Direction, c: &LedgerCounts) -> PerFrame {
    let per = |count: u64| count as f64 / frames.max(1) as f64;
    let user_pio = c.exits.io_in + c.exits.io_out;
    PerFrame {
        frames,
        direction,
        exits_to_user: Some(per(c
            .tracepoints
            .get(USERSPACE_EXIT)
            .copied()
            .unwrap_or(c.exits.kvm_run_returns))),
        port_accesses_in_kernel: c
            .tracepoints
            .get(PIO)
            .map(|&p| per(p.saturating_sub(user_pio))),
        // The line goes up and down once per interrupt.
        interrupts: Some(per(c.irq_edges) / 2.0),
        emulated_instructions: c.emulated_per_frame,
        tap_writes: c.tap_writes.map(per),
    }
}

/// The cost model's counts per frame of a run with a ledger: the ledger's,
/// the pv-nic's doorbells, the vCPU thread's own TAP writes and polls (its
/// rows' counts), and the Lance's accesses by what happened to them.
pub fn counts(r: &RunResult) -> Option<Counts> {
    counts_of(&r.profile, &r.exits, r.net.pv_nic.doorbells)
}

/// The counts per frame of `table`'s ledger, with the exits `exits` and
/// `doorbells` of the same time.
pub fn counts_of(table: &Table, exits: &ExitStats, doorbells: u64) -> Option<Counts> {
    let p = table.per_frame.as_ref()?;
    let per = |n: u64| n as f64 / p.frames as f64;
    let vcpu_row = |c: Category| {
        table
            .row_of(c, Thread::Vcpu)
            .map_or(0.0, |row| per(row.count))
    };
    let nic = |offset: u16| exits.port(NIC_IO_BASE + offset);
    let lance_exits: u64 = exits
        .ports
        .iter()
        .filter(|c| c.port.wrapping_sub(NIC_IO_BASE) < PCNET_IO_SIZE)
        .map(|c| c.outs + c.ins)
        .sum();
    let address = nic(WIO_RAP).outs + nic(DWIO_RAP).outs;
    let data = nic(WIO_RDP).outs + nic(WIO_BDP).outs + nic(DWIO_BDP).outs;
    Some(Counts {
        exits_to_user: p.exits_to_user?,
        port_accesses_in_kernel: p.port_accesses_in_kernel.unwrap_or(0.0),
        doorbells: per(doorbells),
        interrupts: p.interrupts.unwrap_or(0.0),
        emulated_instructions: p.emulated_instructions.unwrap_or(0.0),
        vcpu_tap_writes: vcpu_row(Category::VmnetTx),
        tap_polls: vcpu_row(Category::HostEvents),
        lance: LanceAccesses {
            address_writes_exiting: per(address),
            data_writes_exiting: per(data),
            other_exiting: per(lance_exits.saturating_sub(address + data)),
            writes_in_kernel: per(exits.coalesced_writes),
        },
        timed: Timed::of_table(table),
    })
}

/// Describes how a run finished.
pub fn outcome(finish: &Finish, image: &GuestImage) -> Outcome {
    let sym = |rip: u64| image.symbolize(rip);
    let at = |rip: u64| match sym(rip) {
        Some(s) => format!("{rip:#x} ({s})"),
        None => format!("{rip:#x}"),
    };
    let base = |kind, message: String, failed| Outcome {
        kind,
        status: None,
        rip: None,
        symbol: None,
        bytes: None,
        message,
        failed,
    };
    match finish {
        Finish::GuestExit(status) => Outcome {
            status: Some(*status),
            ..base(
                "guest_exit",
                format!("The guest exited with status {status}."),
                *status != 0,
            )
        },
        Finish::HostStop => base("host_stop", "Stopped by the host.".into(), false),
        Finish::TripleFault { rip } => Outcome {
            rip: Some(*rip),
            symbol: sym(*rip),
            ..base(
                "triple_fault",
                format!("The guest triple-faulted near {}; it cannot continue.", at(*rip)),
                true,
            )
        },
        Finish::EmulationFailure(f) => {
            let bytes: Vec<String> = f.bytes.iter().map(|b| format!("{b:02x}")).collect();
            Outcome {
                rip: Some(f.rip),
                symbol: sym(f.rip),
                bytes: Some(bytes.join(" ")),
                ..base(
                    "emulation_failure",
                    format!(
                        "KVM could not emulate the guest instruction at {} (CPL{}, bytes {}); on hosts that emulate guest kernel code, CPL0 code must not use SSE or AVX.",
                        at(f.rip),
                        f.cpl,
                        bytes.join(" ")
                    ),
                    true,
                )
            }
        }
        Finish::DeadHalt { rip } => Outcome {
            rip: Some(*rip),
            symbol: sym(*rip),
            ..base(
                "dead_halt",
                format!(
                    "The guest halted with interrupts disabled at {} and can never wake; it was stopped.",
                    at(*rip)
                ),
                true,
            )
        },
        Finish::UnexpectedExit(what) => base(
            "unexpected_exit",
            format!("The guest caused an exit worldswitch does not handle ({what})."),
            true,
        ),
        Finish::KvmError(what) => base("kvm_error", format!("KVM failed: {what}."), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_plain_sentences_with_symbols() {
        let image = GuestImage::resolve("hello").unwrap();
        let o = outcome(&Finish::TripleFault { rip: 0x100000 }, &image);
        assert!(o.failed);
        assert_eq!(o.symbol.as_deref(), Some("_start32+0x0"));
        assert!(
            o.message.contains("0x100000 (_start32+0x0)"),
            "{}",
            o.message
        );
        let o = outcome(&Finish::GuestExit(0), &image);
        assert!(!o.failed && o.message.ends_with('.'));
        assert!(outcome(&Finish::GuestExit(2), &image).failed);
        assert!(!outcome(&Finish::HostStop, &image).failed);
    }
}
