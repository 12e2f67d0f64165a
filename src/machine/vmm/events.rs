//! What the vCPU thread tells its owner: console lines, guest reports, state
//! changes and how the run finished, over one channel.

use super::exits::ExitStats;
use crate::machine::devices::host::{GuestSays, Listener};
use profiles::inputs::{MarkedThread, PvDrain};
use std::sync::mpsc;

/// Why the guest stopped running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The guest wrote its status to the shutdown port.
    GuestExit(u32),
    /// The guest triple-faulted (KVM_EXIT_SHUTDOWN).
    TripleFault {
        /// Where.
        rip: u64,
    },
    /// KVM could not emulate a guest instruction.
    EmulationFailure(EmulationFault),
    /// The vCPU is halted with interrupts disabled: it can never wake.
    DeadHalt {
        /// Where.
        rip: u64,
    },
    /// The host asked the guest to stop.
    HostStop,
    /// An exit worldswitch does not handle.
    UnexpectedExit(String),
    /// A KVM call failed.
    KvmError(String),
}

/// Where an emulation failure happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulationFault {
    /// KVM's internal-error suberror (1 = emulation failure).
    pub suberror: u32,
    /// Guest RIP.
    pub rip: u64,
    /// Guest privilege level (CS.RPL) at the fault.
    pub cpl: u8,
    /// Up to 15 instruction bytes at RIP, when they could be read.
    pub bytes: Vec<u8>,
}

/// The vCPU's run state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuState {
    /// Entering the guest.
    Running,
    /// Waiting for a resume or stop command.
    Paused,
    /// Gone; the thread has ended or is ending.
    Finished,
}

/// One message from the vCPU thread.
#[derive(Debug, Clone)]
pub enum VmEvent {
    /// What the guest said through a device: console output, a counter,
    /// a phase, a malformed message.
    Guest(GuestSays),
    /// The run state changed.
    State(VcpuState),
    /// The optimization toggles now in effect, after a change (or at
    /// start); `error` says why a change could not be made.
    Optimized {
        /// The toggles in effect.
        opts: crate::machine::optimizations::Opts,
        /// Why the asked-for change was not made in full.
        error: Option<String>,
    },
    /// What the vCPU thread has measured so far, sent every
    /// [`crate::profiler::live::PERIOD`] while it runs.
    Progress {
        /// Exits so far.
        stats: ExitStats,
        /// Markers and CPU time so far.
        profile: VcpuProfile,
    },
    /// The run is over; the last event.
    Finished {
        /// How it ended.
        finish: Finish,
        /// Exits in all.
        stats: ExitStats,
        /// Markers and CPU time in all.
        profile: VcpuProfile,
    },
}

/// What the vCPU thread measured about itself.
#[derive(Debug, Clone, Default)]
pub struct VcpuProfile {
    /// The vCPU thread: its CPU time, run delay and markers (time inside
    /// `KVM_RUN` and the VMApp rows).
    pub vcpu: MarkedThread,
    /// The paravirtual NIC's drain thread (read from the link's counters;
    /// zero without a NIC).
    pub pv: PvDrain,
}

impl VcpuProfile {
    /// These figures less those of `base`.
    pub fn since(&self, base: &VcpuProfile) -> VcpuProfile {
        VcpuProfile {
            vcpu: self.vcpu.since(&base.vcpu),
            pv: PvDrain {
                cpu_seconds: (self.pv.cpu_seconds - base.pv.cpu_seconds).max(0.0),
                frames: self.pv.frames.saturating_sub(base.pv.frames),
            },
        }
    }
}

/// The sending side; sending never fails the sender, since a front end that
/// has gone away must not stop the guest.
#[derive(Debug, Clone)]
pub struct EventSink(mpsc::Sender<VmEvent>);

/// The receiving side.
pub type EventStream = mpsc::Receiver<VmEvent>;

impl EventSink {
    /// Sends `event` if anyone is still listening.
    pub fn send(&self, event: VmEvent) {
        let _ = self.0.send(event);
    }
}

/// The devices' messages become the run's events.
impl Listener for EventSink {
    fn hear(&self, what: GuestSays) {
        self.send(VmEvent::Guest(what));
    }
}

/// A connected sink and stream.
pub fn channel() -> (EventSink, EventStream) {
    let (tx, rx) = mpsc::channel();
    (EventSink(tx), rx)
}
