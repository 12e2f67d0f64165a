//! The vCPU thread: an explicit Running/Paused/Finished state machine driven
//! by commands over a channel, the `KVM_RUN` loop, and exit dispatch to the
//! port I/O bus. It owns the device models.

use super::events::{EventSink, Fault, Finish, VcpuProfile, VcpuState, VmEvent};
use super::exits::{ExitCounters, ExitStats};
use super::floor::{self, FloorSchedule};
use super::in_kernel::InKernel;
use super::kick;
use crate::devices::bus::{BusAction, PioBus};
use crate::devices::pcnet::port::NicHandle;
use crate::devices::pic::{self, SharedPic};
use crate::optimizations::coalesced::Ring;
use crate::optimizations::Opt;
use crate::profiler::live::Every;
use crate::profiler::markers;
use crate::profiler::stitch::{self, StitchLog};
use kvm_bindings::KVM_MP_STATE_HALTED;
use kvm_ioctls::{VcpuExit, VcpuFd};
use profiles::inputs::PvDrain;
use profiles::taxonomy::Category;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, TryRecvError};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

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
    Optimize(crate::optimizations::Opts),
}

/// What the run loop does after an exit.
#[derive(Debug)]
pub(crate) enum Flow {
    Continue,
    Finish(Finish),
    Interrupted,
    /// The guest halted (only with the user-space 8259: with KVM's, HLT
    /// stays in the kernel).
    Halt,
    TripleFault,
    InternalError,
}

/// Everything an exit may touch except the vCPU fd itself.
pub(crate) struct Machine {
    pub(crate) bus: PioBus,
    pub(crate) counters: ExitCounters,
    pub(crate) memory: GuestMemoryMmap,
    pub(crate) floor: Option<FloorSchedule>,
    pub(crate) in_floor_phase: bool,
    /// The NIC's writes completed in KVM, once set up.
    pub(crate) in_kernel: Option<InKernel>,
    /// The user-space 8259, with `kernel-irqchip` off.
    pub(crate) pic: Option<SharedPic>,
    /// The NIC, which replays its coalesced writes.
    pub(crate) nic: Option<NicHandle>,
}

impl Machine {
    /// Dispatches one return from `KVM_RUN`.
    pub(crate) fn handle(&mut self, exit: Result<VcpuExit<'_>, kvm_ioctls::Error>) -> Flow {
        self.replay_coalesced();
        let flow = self.dispatch(exit);
        // A kick is polled by the run loop (the floor loop's kicks too).
        if !matches!(flow, Flow::Interrupted)
            && self
                .in_kernel
                .as_ref()
                .is_some_and(InKernel::polls_after_exits)
        {
            self.bus.poll();
        }
        flow
    }

    fn dispatch(&mut self, exit: Result<VcpuExit<'_>, kvm_ioctls::Error>) -> Flow {
        match exit {
            Ok(VcpuExit::IoOut(port, data)) => {
                let _m = markers::scope(Category::PioDispatch);
                self.counters.out(port);
                match self.bus.write(port, data) {
                    BusAction::None => Flow::Continue,
                    BusAction::Shutdown(status) => Flow::Finish(Finish::GuestExit(status)),
                    BusAction::PhaseBegin(index) => {
                        self.in_floor_phase = self.floor.is_some_and(|f| f.uses_floor(index));
                        Flow::Continue
                    }
                    BusAction::PhaseEnd(_) => {
                        self.in_floor_phase = false;
                        Flow::Continue
                    }
                }
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                let _m = markers::scope(Category::PioDispatch);
                self.counters.inp(port);
                self.bus.read(port, data);
                Flow::Continue
            }
            Ok(VcpuExit::MmioRead(_, data)) => {
                self.counters.count(|s| &mut s.mmio);
                data.fill(0xff);
                Flow::Continue
            }
            Ok(VcpuExit::MmioWrite(..)) => {
                self.counters.count(|s| &mut s.mmio);
                Flow::Continue
            }
            Ok(VcpuExit::Hlt) => {
                self.counters.count(|s| &mut s.halts);
                Flow::Halt
            }
            Ok(VcpuExit::IrqWindowOpen) => {
                self.counters.count(|s| &mut s.irq_windows);
                Flow::Continue
            }
            Ok(VcpuExit::Shutdown) => {
                self.counters.count(|s| &mut s.other);
                Flow::TripleFault
            }
            Ok(VcpuExit::InternalError) => {
                self.counters.count(|s| &mut s.other);
                Flow::InternalError
            }
            Ok(other) => {
                self.counters.count(|s| &mut s.other);
                Flow::Finish(Finish::UnexpectedExit(format!("{other:?}")))
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.counters.count(|s| &mut s.interrupted);
                Flow::Interrupted
            }
            Err(e) => {
                self.counters.count(|s| &mut s.other);
                Flow::Finish(Finish::KvmError(format!("KVM_RUN failed: {e}")))
            }
        }
    }
}

impl Machine {
    /// Applies the port writes KVM logged instead of exiting, in order:
    /// they all happened before the instruction that caused this exit.
    /// Only the NIC's ports are coalesced, and the NIC replays them itself
    /// (the I/O thread may get there first).
    fn replay_coalesced(&mut self) {
        if let Some(nic) = &self.nic {
            nic.replay();
        }
    }

    /// The toggles in effect: the NIC's, and the interrupt controller the
    /// VM was built with.
    fn opts_in_effect(&self) -> crate::optimizations::Opts {
        let mut opts = self
            .in_kernel
            .as_ref()
            .map_or(crate::optimizations::Preset::Naive.opts(), InKernel::opts);
        opts.set(Opt::KernelIrqchip, self.pic.is_none());
        opts
    }

    /// Switches the optimizations, at a KVM_RUN boundary. The interrupt
    /// controller stays as the VM was built: changing it means a new VM.
    fn optimize(&mut self, mut opts: crate::optimizations::Opts) -> Option<String> {
        self.replay_coalesced();
        let k = self.in_kernel.as_mut()?;
        let kernel_irqchip = self.pic.is_none();
        let mut error = None;
        if opts.get(Opt::KernelIrqchip) != kernel_irqchip {
            error = Some(format!(
                "kernel-irqchip stays {} in this VM: switching it restarts the guest",
                if kernel_irqchip { "on" } else { "off" }
            ));
            opts.set(Opt::KernelIrqchip, kernel_irqchip);
        }
        let notify = opts.get(Opt::IrqNotify);
        let applied = k.apply(opts).err();
        if let Some(nic) = &self.nic {
            if !nic.use_irqfd(notify) && notify {
                error = error.or(Some(
                    "KVM offers no resampled irqfd here: the I/O thread raises the NIC's line with KVM_IRQ_LINE".into(),
                ));
            }
        }
        applied.or(error)
    }
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
    pub(crate) nic: Option<(u16, std::sync::Arc<crate::vmnet::LinkCounters>)>,
    /// The optimizations to start with.
    pub(crate) opts: crate::optimizations::Opts,
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
        let finish = match self.start_paused.then(|| self.paused()).flatten() {
            Some(stopped) => stopped,
            None => {
                if !self.start_paused {
                    self.events.send(VmEvent::State(VcpuState::Running));
                }
                self.run_loop()
            }
        };
        kick::detach();
        let (stats, profile) = self.measured();
        // Dropping the bus flushes the console, and dropping the last hold
        // on the NIC writes its final counts, before the last event.
        drop(self.machine.nic.take());
        drop(self.machine.bus);
        self.events.send(VmEvent::State(VcpuState::Finished));
        self.events.send(VmEvent::Finished {
            finish,
            stats,
            profile,
        });
    }

    fn run_loop(&mut self) -> Finish {
        loop {
            let flow = if self.machine.in_floor_phase {
                floor::run(&mut self.fd, &mut self.machine)
            } else {
                if let Some(gpa) = markers::take_reentry_stamp() {
                    crate::devices::path::stamp_reentry(&self.machine.memory, gpa);
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
                Flow::Finish(f) => return f,
                Flow::Interrupted => {
                    self.fd.set_kvm_immediate_exit(0);
                    self.machine.bus.poll();
                    if let Some(f) = self.on_kick() {
                        return f;
                    }
                }
                Flow::Halt => {
                    if let Some(f) = self.halt() {
                        return f;
                    }
                }
                Flow::TripleFault => {
                    let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or(0);
                    return Finish::TripleFault { rip };
                }
                Flow::InternalError => return Finish::EmulationFailure(self.fault()),
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
        let made = Ring::map(self.fd.as_raw_fd())
            .and_then(|ring| InKernel::new(self.vm.clone(), ring, kicker, nic));
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
                .map_or_else(Default::default, |(_, link)| {
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
    /// often enough) and checks for a halt that can never end.
    fn on_kick(&mut self) -> Option<Finish> {
        if self.progress.due() {
            let (stats, profile) = self.measured();
            self.events.send(VmEvent::Progress { stats, profile });
        }
        loop {
            match self.commands.try_recv() {
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => {
                    return Some(Finish::HostStop)
                }
                Ok(Command::Pause) => {
                    if let Some(f) = self.paused() {
                        return Some(f);
                    }
                }
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
                    return Some(Finish::DeadHalt { rip: regs.rip });
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
    /// the devices after each, until an interrupt is pending (None) or the
    /// run ends. A halt with interrupts off can never end.
    fn halt(&mut self) -> Option<Finish> {
        let pic = self.machine.pic.clone()?;
        if self.fd.get_kvm_run().if_flag == 0 {
            let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or(0);
            return Some(Finish::DeadHalt { rip });
        }
        loop {
            self.machine.bus.poll();
            if pic::lock(&pic).pending() {
                return None;
            }
            if let Some(f) = self.on_kick() {
                return Some(f);
            }
            kick::wait(self.fd.get_kvm_run(), HALT_WAIT);
            self.fd.set_kvm_immediate_exit(0);
        }
    }

    /// Blocks until resumed (None) or stopped.
    fn paused(&mut self) -> Option<Finish> {
        self.events.send(VmEvent::State(VcpuState::Paused));
        loop {
            match self.commands.recv() {
                Ok(Command::Resume) => {
                    self.events.send(VmEvent::State(VcpuState::Running));
                    return None;
                }
                Ok(Command::Pause) => {}
                Ok(Command::Optimize(opts)) => self.optimize(opts),
                Ok(Command::Stop) | Err(_) => return Some(Finish::HostStop),
            }
        }
    }

    /// Switches the optimizations and reports what is in effect.
    fn optimize(&mut self, opts: crate::optimizations::Opts) {
        let error = match self.machine.in_kernel {
            Some(_) => self.machine.optimize(opts),
            None => Some("this VM has no NIC".into()),
        };
        let opts = self.machine.opts_in_effect();
        self.events.send(VmEvent::Optimized { opts, error });
    }

    /// Where the guest was when emulation failed, with its instruction bytes.
    fn fault(&mut self) -> Fault {
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
        Fault {
            suberror,
            rip: regs.rip,
            cpl,
            bytes,
        }
    }
}
