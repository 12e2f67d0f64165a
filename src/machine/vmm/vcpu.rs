//! The vCPU thread: an explicit state machine (running, halted, paused,
//! finished, each a value) driven by commands over a channel, with the
//! `KVM_RUN` loop in its running state. Exits go to [`super::dispatch`].

use super::dispatch::{Flow, Machine};
use super::events::{EmulationFault, EventSink, Finish, VcpuProfile, VcpuState, VmEvent};
use super::exits::ExitStats;
use super::floor;
use super::kick;
use crate::machine::devices::pcnet::port::NicHandle;
use crate::machine::devices::pic;
use crate::machine::optimizations::coalesced::Ring;
use crate::machine::optimizations::flusher::Reach;
use crate::machine::optimizations::in_kernel::InKernel;
use crate::profiler::live::Every;
use crate::profiler::markers;
use crate::profiler::stitch::{self, StitchLog};
use kvm_bindings::KVM_MP_STATE_HALTED;
use kvm_ioctls::VcpuFd;
use profiles::inputs::PvDrain;
use profiles::taxonomy::Category;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, TryRecvError};
use vm_memory::{Bytes, GuestAddress};

/// The longest a halted vCPU sleeps without a kick (the timer kicks it at
/// every tick; this only bounds a lost one).
const HALT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// `KVM_INTERRUPT`: `_IOW(KVMIO, 0x86, struct kvm_interrupt)`; kvm-ioctls
/// has no wrapper for it (it only works without the in-kernel irqchip).
const KVM_INTERRUPT: libc::c_ulong = 0x4004_ae86;

/// Queues `vector` for delivery at the next entry.
fn interrupt(fd: &VcpuFd, vector: u8) -> std::io::Result<()> {
    let irq = kvm_bindings::kvm_interrupt {
        irq: u32::from(vector),
    };
    // SAFETY: KVM_INTERRUPT reads one kvm_interrupt, which outlives the call.
    let r = unsafe { vmm_sys_util::ioctl::ioctl_with_ref(fd, KVM_INTERRUPT, &irq) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What the owner of a VM may ask of its vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop entering the guest until resumed.
    Pause,
    /// Enter the guest again.
    Resume,
    /// End the run.
    Stop,
    /// Switch the optimizations to these states.
    Optimize(crate::machine::optimizations::Opts),
}

/// What the vCPU thread is doing, as a value: each state's function runs
/// until the next state is known.
enum State {
    /// Entering the guest and handling its exits.
    Running,
    /// The guest executed HLT with the user-space 8259 and waits for an
    /// interrupt (with KVM's irqchip a halt stays in the kernel).
    Halted,
    /// Not entering the guest until resumed; `halted` says where to go
    /// back to.
    Paused {
        /// Paused while halted.
        halted: bool,
    },
    /// Done, and why.
    Finished(Finish),
}

/// One vCPU and the machine it drives.
pub(crate) struct Vcpu {
    pub(crate) fd: VcpuFd,
    pub(crate) machine: Machine,
    pub(crate) commands: Receiver<Command>,
    pub(crate) events: EventSink,
    pub(crate) start_paused: bool,
    pub(crate) progress: Every,
    /// The VM, for registering coalesced zones.
    pub(crate) vm: std::sync::Arc<kvm_ioctls::VmFd>,
    /// The NIC's I/O base, when there is a NIC.
    pub(crate) nic: Option<(
        u16,
        std::sync::Arc<crate::machine::vmnet::LinkCounters>,
        std::sync::Arc<crate::machine::vmnet::Switches>,
    )>,
    /// The optimizations to start with.
    pub(crate) opts: crate::machine::optimizations::Opts,
    /// When the halt watchdog last looked.
    pub(crate) halt_checked: Option<std::time::Instant>,
    /// Where guest stacks walked at exits go, with stitching on.
    pub(crate) stitch: Option<std::sync::Arc<StitchLog>>,
}

impl Vcpu {
    /// Runs the guest until it finishes or is stopped, then reports how.
    pub(crate) fn run(mut self) {
        kick::attach(self.fd.get_kvm_run());
        if self.stitch.is_some() {
            self.fd.set_sync_valid_reg(kvm_ioctls::SyncReg::Register);
        }
        self.set_up_in_kernel();
        let mut state = if self.start_paused {
            State::Paused { halted: false }
        } else {
            State::Running
        };
        let mut told = None;
        let finish = loop {
            let public = match state {
                State::Finished(f) => break f,
                State::Running | State::Halted => VcpuState::Running,
                State::Paused { .. } => VcpuState::Paused,
            };
            if told != Some(public) {
                self.events.send(VmEvent::State(public));
                told = Some(public);
            }
            state = match state {
                State::Running => self.running(),
                State::Halted => self.halted(),
                State::Paused { halted } => self.paused(halted),
                State::Finished(_) => unreachable!("left the loop above"),
            };
        };
        kick::detach();
        let (stats, profile) = self.measured();
        // Dropping the bus flushes the console, and dropping the last hold
        // on the NIC (the flusher's is one) writes its final counts, before
        // the last event.
        drop(self.machine.in_kernel.take());
        drop(self.machine.nic.take());
        drop(self.machine.bus);
        self.events.send(VmEvent::State(VcpuState::Finished));
        self.events.send(VmEvent::Finished {
            finish,
            stats,
            profile,
        });
    }

    /// Enters the guest again and again, handing each exit to the machine,
    /// until the guest halts (user-space 8259), a command pauses it or the
    /// run ends.
    fn running(&mut self) -> State {
        loop {
            let flow = if self.machine.in_floor_phase {
                floor::run(&mut self.fd, &mut self.machine)
            } else {
                if let Some(gpa) = markers::take_reentry_stamp() {
                    crate::machine::devices::transmit_stamps::stamp_reentry(
                        &self.machine.memory,
                        gpa,
                    );
                }
                if let Some(log) = &self.stitch {
                    log.close(stitch::monotonic_ns());
                }
                self.inject();
                let entered = markers::now();
                let exit = self.fd.run();
                markers::kvm_run(entered, markers::now());
                let returned = self.stitch.as_ref().map(|_| stitch::monotonic_ns());
                let flow = self.machine.handle(exit);
                if let (Some(log), Some(from)) = (&self.stitch, returned) {
                    // KVM synced the registers into kvm_run at the exit.
                    let r = self.fd.sync_regs().regs;
                    log.push(stitch::walk(&self.machine.memory, r.rip, r.rbp, from));
                }
                flow
            };
            match flow {
                Flow::Continue => {}
                Flow::Finish(f) => return State::Finished(f),
                Flow::Interrupted => {
                    self.fd.set_kvm_immediate_exit(0);
                    self.machine.bus.catch_up();
                    if let Some(next) = self.on_kick(false) {
                        return next;
                    }
                }
                Flow::Halt => {
                    if self.machine.pic.is_some() {
                        return State::Halted;
                    }
                }
                Flow::TripleFault => {
                    let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or(0);
                    return State::Finished(Finish::TripleFault { rip });
                }
                Flow::InternalError => {
                    return State::Finished(Finish::EmulationFailure(self.emulation_fault()))
                }
            }
        }
    }

    /// Maps the coalesced ring and applies the first optimizations; says
    /// what is in effect either way.
    fn set_up_in_kernel(&mut self) {
        let Some(nic) = self.nic.clone() else {
            return;
        };
        let base = nic.0;
        // SAFETY: pthread_self has no preconditions. The flusher that
        // holds this kicker is joined before this thread ends.
        let kicker = kick::Kicker::new(unsafe { libc::pthread_self() });
        let handle = self.machine.nic.clone();
        let reach = Reach {
            kick: Box::new(move || kicker.kick()),
            replay: Box::new(move || {
                if let Some(h) = &handle {
                    h.replay_before(None);
                }
            }),
            // SAFETY: gettid has no preconditions.
            vcpu: unsafe { libc::gettid() },
        };
        let made = Ring::map(self.fd.as_raw_fd())
            .and_then(|ring| InKernel::new(self.vm.clone(), ring, reach, nic));
        let error = match made {
            Ok(k) => {
                if let Some(h) = &self.machine.nic {
                    h.attach_ring(k.ring(), base);
                }
                self.machine.in_kernel = Some(k);
                self.machine.optimize(self.opts)
            }
            Err(e) => Some(format!(
                "the coalesced I/O ring cannot be mapped ({e}); every Lance access exits"
            )),
        };
        let opts = self.machine.opts_in_effect();
        self.events.send(VmEvent::Optimized { opts, error });
    }

    /// Exit counts and markers so far.
    fn measured(&self) -> (ExitStats, VcpuProfile) {
        let mut stats: ExitStats = self.machine.counters.snapshot();
        stats.unclaimed_port_accesses = self.machine.bus.unclaimed();
        stats.coalesced_writes = self.machine.nic.as_ref().map_or(0, NicHandle::replayed);
        stats.flushes = self.machine.in_kernel.as_ref().map_or(0, InKernel::flushes);
        stats.combine_switches = self
            .machine
            .in_kernel
            .as_ref()
            .map_or(0, InKernel::combine_switches);
        let profile = VcpuProfile {
            vcpu: markers::this_thread(),
            pv: self
                .nic
                .as_ref()
                .map_or_else(Default::default, |(_, link, _)| {
                    let load = |n: &std::sync::atomic::AtomicU64| {
                        n.load(std::sync::atomic::Ordering::Relaxed)
                    };
                    PvDrain {
                        cpu_seconds: load(&link.pv.cpu_ns) as f64 * 1e-9,
                        frames: load(&link.pv.frames),
                    }
                }),
        };
        (stats, profile)
    }

    /// Handles commands, publishes progress when due (the watchdog kicks
    /// often enough) and checks for a halt that can never end; says which
    /// state comes next when it is not the current one (`halted` says
    /// which that is).
    fn on_kick(&mut self, halted: bool) -> Option<State> {
        if self.progress.due() {
            let (stats, profile) = self.measured();
            self.events.send(VmEvent::Progress { stats, profile });
        }
        loop {
            match self.commands.try_recv() {
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => {
                    return Some(State::Finished(Finish::HostStop))
                }
                Ok(Command::Pause) => return Some(State::Paused { halted }),
                Ok(Command::Resume) => {}
                Ok(Command::Optimize(opts)) => self.optimize(opts),
                Err(TryRecvError::Empty) => break,
            }
        }
        // Kicks come often (the I/O thread, the flusher); the halt check
        // costs ioctls, so it runs at the watchdog's pace. With the
        // user-space 8259 a halt exits, and is judged there.
        if self.machine.pic.is_some() {
            return None;
        }
        if self
            .halt_checked
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(200))
        {
            return None;
        }
        self.halt_checked = Some(std::time::Instant::now());
        let halted = self
            .fd
            .get_mp_state()
            .is_ok_and(|s| s.mp_state == KVM_MP_STATE_HALTED);
        if halted {
            if let Ok(regs) = self.fd.get_regs() {
                if regs.rflags & (1 << 9) == 0 {
                    return Some(State::Finished(Finish::DeadHalt { rip: regs.rip }));
                }
            }
        }
        None
    }

    /// With the user-space 8259: delivers its interrupt when the guest can
    /// take one, else asks KVM to exit as soon as it can (an
    /// interrupt-window exit).
    fn inject(&mut self) {
        let Some(pic) = &self.machine.pic else {
            return;
        };
        let mut pic = pic::lock(pic);
        let mut pending = pic.pending();
        let run = self.fd.get_kvm_run();
        if pending && run.ready_for_interrupt_injection != 0 && run.if_flag != 0 {
            let _m = markers::scope(Category::UserIrq);
            let vector = pic.acknowledge();
            // KVM takes an interrupt whenever it said it is ready for one.
            if interrupt(&self.fd, vector).is_ok() {
                self.machine.counters.stats.interrupts_injected += 1;
            }
            pending = pic.pending();
        }
        self.fd.get_kvm_run().request_interrupt_window = u8::from(pending);
    }

    /// The guest executed HLT with the user-space 8259: sleeps until a
    /// kick (the timer's signal, the I/O thread's, a command's), looking at
    /// the devices after each, until an interrupt is pending (running
    /// again) or a command says otherwise. A halt with interrupts off can
    /// never end.
    fn halted(&mut self) -> State {
        let Some(pic) = self.machine.pic.clone() else {
            return State::Running;
        };
        if self.fd.get_kvm_run().if_flag == 0 {
            let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or(0);
            return State::Finished(Finish::DeadHalt { rip });
        }
        loop {
            self.machine.bus.catch_up();
            if pic::lock(&pic).pending() {
                return State::Running;
            }
            if let Some(next) = self.on_kick(true) {
                return next;
            }
            kick::wait(self.fd.get_kvm_run(), HALT_WAIT);
            self.fd.set_kvm_immediate_exit(0);
        }
    }

    /// Waits for a command: resumed, the guest goes back to where it was
    /// (running, or halted).
    fn paused(&mut self, halted: bool) -> State {
        loop {
            match self.commands.recv() {
                Ok(Command::Resume) if halted => return State::Halted,
                Ok(Command::Resume) => return State::Running,
                Ok(Command::Pause) => {}
                Ok(Command::Optimize(opts)) => self.optimize(opts),
                Ok(Command::Stop) | Err(_) => return State::Finished(Finish::HostStop),
            }
        }
    }

    /// Switches the optimizations and reports what is in effect.
    fn optimize(&mut self, opts: crate::machine::optimizations::Opts) {
        let error = match self.machine.in_kernel {
            Some(_) => self.machine.optimize(opts),
            None => Some("this VM has no NIC".into()),
        };
        let opts = self.machine.opts_in_effect();
        self.events.send(VmEvent::Optimized { opts, error });
    }

    /// Where the guest was when emulation failed, with its instruction bytes.
    fn emulation_fault(&mut self) -> EmulationFault {
        // SAFETY: the exit reason was KVM_EXIT_INTERNAL_ERROR, so the
        // `internal` member of the union is the one the kernel filled.
        let suberror = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
        let regs = self.fd.get_regs().unwrap_or_default();
        let cpl = self
            .fd
            .get_sregs()
            .map(|s| (s.cs.selector & 3) as u8)
            .unwrap_or(0);
        let gpa = self
            .fd
            .translate_gva(regs.rip)
            .ok()
            .filter(|t| t.valid != 0)
            .map_or(regs.rip, |t| t.physical_address);
        let mut bytes = vec![0u8; 15];
        let n = (0..bytes.len())
            .take_while(|&i| {
                self.machine
                    .memory
                    .read_slice(&mut bytes[i..=i], GuestAddress(gpa + i as u64))
                    .is_ok()
            })
            .count();
        bytes.truncate(n);
        EmulationFault {
            suberror,
            rip: regs.rip,
            cpl,
            bytes,
        }
    }
}
