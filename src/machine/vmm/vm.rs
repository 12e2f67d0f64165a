//! Building a VM on KVM: guest memory, the in-kernel irqchip and PIT, halt
//! polling, the devices, the boot vCPU; then its thread, a watchdog that
//! kicks it, and the handle its owner drives it with.

use super::boot::{self, BootError};
use super::dispatch::FloorSchedule;
use super::dispatch::Machine;
use super::events::{self, EventStream};
use super::exits::ExitCounters;
use super::kick::{self, Kicker};
use super::vcpu::{Command, Vcpu};
use crate::machine::devices::bus::{BusError, PioBus};
use crate::machine::devices::irq::{EdgeIrq, IrqChip, IrqLine, Resampled};
use crate::machine::devices::mailbox::{
    BenchPort, Mailbox, ShutdownPort, BENCH_DOORBELL, BENCH_PORT, MAILBOX_PORT,
    QEMU_DEBUG_EXIT_PORT, SHUTDOWN_PORT,
};
use crate::machine::devices::pci::{
    Bar, BarKind, FunctionSpec, PciConfigSpace, CONFIG_BASE, CONFIG_LEN,
};
use crate::machine::devices::pcnet::port::{NicConfig, NicHandle, PcnetPort};
use crate::machine::devices::pcnet::registers::IO_SIZE as PCNET_IO_SIZE;
use crate::machine::devices::pic::{self, Pic, PicPorts, SharedPic};
use crate::machine::devices::pit::{self, Pit};
use crate::machine::devices::pvnet::receive::RxPath;
use crate::machine::devices::pvnet::transmit::Drain;
use crate::machine::devices::pvnet::{self, PvnetPort};
use crate::machine::devices::serial::{ConsoleSink, SerialDevice, COM1_BASE, COM1_IRQ};
use crate::machine::devices::transmit_stamps::{PathPort, SlotAddress, PATH_PORT};
use crate::machine::optimizations::Opt;
use crate::machine::vmnet::GuestRx;
use crate::profiler::emulation::PortMap;
use crate::profiler::live::{self, Every};
use crate::profiler::stitch::StitchLog;
use kvm_bindings::{
    kvm_enable_cap, kvm_fpu, kvm_lapic_state, kvm_pit_config, kvm_userspace_memory_region,
    KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{IoEventAddress, Kvm, NoDatamatch, VcpuFd, VmFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// Guest memory limits: enough for the boot area and an image, and below the
/// 32-bit PCI hole.
pub const MEM_MIB_MIN: u64 = 8;
/// See [`MEM_MIB_MIN`].
pub const MEM_MIB_MAX: u64 = 3072;
/// How often the watchdog kicks the vCPU to look for a halt that can never
/// end (with the in-kernel irqchip, HLT never returns to user space).
const WATCHDOG_PERIOD: Duration = Duration::from_millis(250);
const KVM_CAP_HALT_POLL: u32 = 182;
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x400;
const APIC_MODE_EXTINT: u32 = 0x700;
/// Where the firmware (us) puts the NIC: PCI device 3, I/O BAR, ISA IRQ.
pub const NIC_PCI_DEVICE: u8 = 3;
/// The NIC's I/O BAR.
pub const NIC_IO_BASE: u16 = 0xc000;
/// The NIC's interrupt line (level-triggered; the guest sets the ELCR).
pub const NIC_IRQ: u8 = 11;
const IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;
const TSS_ADDR: usize = 0xfffb_d000;

/// What to boot and how.
pub struct VmConfig {
    /// Guest memory in MiB.
    pub mem_mib: u64,
    /// The guest's ELF64 image.
    pub image: Vec<u8>,
    /// The guest command line.
    pub cmdline: String,
    /// KVM halt polling, in nanoseconds (0 = none).
    pub halt_poll_ns: u64,
    /// Run benchmark phases on the floor loop per this schedule.
    pub floor: Option<FloorSchedule>,
    /// Wait for [`Command::Resume`] before entering the guest, so the owner
    /// can attach to the vCPU thread (perf counters) first.
    pub start_paused: bool,
    /// The optimizations to start with.
    pub opts: crate::machine::optimizations::Opts,
    /// Walk the guest's stack at every exit to user space, for stitched
    /// stacks.
    pub stitch: bool,
    /// The PCnet NIC and where its frames go, if the VM has one.
    pub nic: Option<NicConfig>,
}

/// Why a VM could not be started.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// No /dev/kvm.
    #[error("/dev/kvm does not exist: this host offers no KVM; load a KVM module (kvm_intel, kvm_amd or kvm_pvm) or use a host with virtualization")]
    NoKvm,
    /// /dev/kvm is not ours to open.
    #[error("no permission to open /dev/kvm: run as root or add your user to the kvm group")]
    KvmPermission,
    /// Any other failure opening /dev/kvm.
    #[error("could not open /dev/kvm: {0}")]
    KvmOpen(kvm_ioctls::Error),
    /// An API version other than 12.
    #[error("/dev/kvm speaks KVM API version {0}; worldswitch needs version 12")]
    ApiVersion(i32),
    /// Memory size out of range.
    #[error("--mem {0} MiB is out of range: use {MEM_MIB_MIN} to {MEM_MIB_MAX} MiB")]
    MemorySize(u64),
    /// mmap of guest memory failed.
    #[error("could not allocate {0} MiB of guest memory: {1}")]
    Memory(u64, String),
    /// A KVM ioctl failed.
    #[error("{what} failed: {err}")]
    Kvm {
        /// The step that failed.
        what: &'static str,
        /// KVM's error.
        err: kvm_ioctls::Error,
    },
    /// The guest image could not be booted.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The device layout is inconsistent (a bug).
    #[error("device layout: {0}")]
    Bus(#[from] BusError),
    /// A thread or signal handler could not be set up.
    #[error("could not start the vCPU thread: {0}")]
    Thread(std::io::Error),
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |err| VmError::Kvm { what, err }
}

/// Opens /dev/kvm and checks its API version.
pub fn open_kvm() -> Result<Kvm, VmError> {
    open_kvm_at("/dev/kvm")
}

/// Opens the KVM device at `path` and checks its API version.
pub fn open_kvm_at(path: &str) -> Result<Kvm, VmError> {
    let path = std::ffi::CString::new(path).map_err(|_| VmError::NoKvm)?;
    let kvm = Kvm::new_with_path(&path).map_err(|e| match e.errno() {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => VmError::NoKvm,
        libc::EACCES | libc::EPERM => VmError::KvmPermission,
        _ => VmError::KvmOpen(e),
    })?;
    match kvm.get_api_version() {
        12 => Ok(kvm),
        v => Err(VmError::ApiVersion(v)),
    }
}

/// A running VM: commands go in, events come out.
pub struct VmHandle {
    commands: Sender<Command>,
    tid: libc::pid_t,
    events: EventStream,
    kicker: Kicker,
    stitch: Option<Arc<StitchLog>>,
    vcpu: Option<JoinHandle<()>>,
    watchdog: Option<JoinHandle<()>>,
    /// The paravirtual NIC's drain thread, stopped after the vCPU.
    pv_drain: Option<Drain>,
    /// The guest's receive path, for the I/O thread.
    rx_path: Option<Box<dyn GuestRx>>,
    ports: PortMap,
    /// Signalled by the calibration's doorbell; nobody reads it.
    _bench_doorbell: EventFd,
}

impl VmHandle {
    /// Which device family owns each port, in the bus and in the kernel.
    pub fn port_map(&self) -> PortMap {
        self.ports.clone()
    }

    /// The guest stacks walked at exits, with `stitch` on.
    pub fn stitch_log(&self) -> Option<Arc<StitchLog>> {
        self.stitch.clone()
    }

    /// Events from the vCPU thread; the last is `VmEvent::Finished`.
    pub fn events(&self) -> &EventStream {
        &self.events
    }

    /// The vCPU thread's kernel thread ID, for per-thread perf events.
    pub fn vcpu_tid(&self) -> libc::pid_t {
        self.tid
    }

    /// Sends a command and kicks the vCPU so it sees it at once.
    pub fn command(&self, command: Command) {
        // A finished vCPU no longer listens; that is not an error.
        let _ = self.commands.send(command);
        self.kicker.kick();
    }

    /// The guest's receive path (the Lance, and the pv-nic's ring where
    /// there is one), for the I/O thread that delivers frames to it (once:
    /// the chip's final counts are written when its last holder lets go).
    pub fn take_rx_path(&mut self) -> Option<Box<dyn GuestRx>> {
        self.rx_path.take()
    }

    /// A kicker other threads can use to wake the vCPU (it goes quiet once
    /// the VM is gone).
    pub fn kicker(&self) -> Kicker {
        self.kicker.clone()
    }
}

impl Drop for VmHandle {
    fn drop(&mut self) {
        self.command(Command::Stop);
        if let Some(w) = self.watchdog.take() {
            let _ = w.join();
        }
        if let Some(v) = self.vcpu.take() {
            let _ = v.join();
        }
        drop(self.pv_drain.take());
        self.kicker.retire();
    }
}

/// The PCnet's PCI function as the VMM-as-firmware configures it.
pub fn nic_function() -> FunctionSpec {
    FunctionSpec {
        device: NIC_PCI_DEVICE,
        vendor: 0x1022,
        device_id: 0x2000,
        revision: 0x10,
        class: 0x02_00_00,
        min_gnt_max_lat: (0x06, 0xff),
        bars: vec![Bar {
            kind: BarKind::Io,
            size: u32::from(PCNET_IO_SIZE),
            address: u32::from(NIC_IO_BASE),
        }],
        interrupt: Some((1, NIC_IRQ)),
    }
}

/// Builds the VM described by `config` and starts its vCPU thread.
pub fn start(mut config: VmConfig) -> Result<VmHandle, VmError> {
    if !(MEM_MIB_MIN..=MEM_MIB_MAX).contains(&config.mem_mib) {
        return Err(VmError::MemorySize(config.mem_mib));
    }
    let kvm = open_kvm()?;
    let vm = Arc::new(kvm.create_vm().map_err(kvm_err("creating the VM"))?);
    let memory = guest_memory(&vm, config.mem_mib)?;
    // TSS and identity-map pages are needed by VT-x; hosts that do not use
    // them (PVM, AMD-V) may refuse, which is harmless.
    let _ = vm.set_tss_address(TSS_ADDR);
    let _ = vm.set_identity_map_address(IDENTITY_MAP_ADDR);
    let kernel_irqchip = config.opts.get(Opt::KernelIrqchip);
    let user_pic: Option<SharedPic> = if kernel_irqchip {
        vm.create_irq_chip()
            .map_err(kvm_err("creating the in-kernel irqchip"))?;
        vm.create_pit2(kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        })
        .map_err(kvm_err("creating the in-kernel PIT"))?;
        None
    } else {
        Some(Arc::new(Mutex::new(Pic::default())))
    };
    set_halt_polling(&vm, config.halt_poll_ns)?;

    let boot = boot::load(&memory, &config.image, &config.cmdline)?;
    let fd = vm.create_vcpu(0).map_err(kvm_err("creating the vCPU"))?;
    setup_vcpu(&kvm, &fd, &boot, kernel_irqchip)?;

    let (sink, events) = events::channel();
    let mut bus = PioBus::new();
    let (chip, serial_irq) = match &user_pic {
        None => {
            let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(VmError::Thread)?;
            vm.register_irqfd(&fd, COM1_IRQ)
                .map_err(kvm_err("registering the serial irqfd"))?;
            (IrqChip::Kernel(vm.clone()), EdgeIrq::Irqfd(fd))
        }
        Some(pic) => {
            for base in [pic::MASTER, pic::SLAVE, pic::ELCR] {
                bus.insert(Box::new(PicPorts::new(pic.clone(), base)), &[(base, 2)])?;
            }
            bus.insert(
                Box::new(Pit::new(pic.clone(), Some(kick::signal()))),
                &[(pit::PORT, pit::PORTS)],
            )?;
            (
                IrqChip::User(pic.clone()),
                EdgeIrq::User(pic.clone(), COM1_IRQ),
            )
        }
    };
    bus.insert(
        Box::new(SerialDevice::new(
            serial_irq,
            ConsoleSink::new(Box::new(sink.clone())),
        )),
        &[(COM1_BASE, 8)],
    )?;
    let path_slot = SlotAddress::default();
    bus.insert(
        Box::new(PathPort::new(memory.clone(), path_slot.clone())),
        &[(PATH_PORT, 4)],
    )?;
    let mut functions = Vec::new();
    let link = config
        .nic
        .as_ref()
        .map(|n| (n.counters.clone(), n.switches.clone()));
    let mut pv_drain = None;
    let mut nic_handle = None;
    let mut rx_path: Option<Box<dyn GuestRx>> = None;
    if let Some(nic) = config.nic.take() {
        functions.push(nic_function());
        let pv_link = nic.clone();
        let irqfd = match &chip {
            IrqChip::Kernel(vm) => resampled_irqfd(vm, u32::from(NIC_IRQ)),
            IrqChip::User(_) => None,
        };
        let irq = IrqLine::new(chip, u32::from(NIC_IRQ), irqfd);
        let port = PcnetPort::new(
            crate::machine::vmnet::GUEST_MAC,
            memory.clone(),
            nic,
            irq,
            path_slot.clone(),
        );
        let handle = port.handle();
        nic_handle = Some(handle.clone());
        bus.insert(Box::new(port), &[(NIC_IO_BASE, PCNET_IO_SIZE)])?;
        // The pv-nic's interrupt is a KVM_IRQ_LINE: KVM's irqchip only.
        rx_path = Some(if kernel_irqchip {
            let (drain, path) = add_pv_nic(&vm, &mut bus, &memory, pv_link, handle)?;
            pv_drain = Some(drain);
            Box::new(path)
        } else {
            Box::new(handle)
        });
    }
    bus.insert(
        Box::new(PciConfigSpace::new(&functions)),
        &[(CONFIG_BASE, CONFIG_LEN)],
    )?;
    bus.insert(
        Box::new(Mailbox::new(memory.clone(), Box::new(sink.clone()))),
        &[(MAILBOX_PORT, 4)],
    )?;
    bus.insert(
        Box::new(ShutdownPort),
        &[(SHUTDOWN_PORT, 4), (QEMU_DEBUG_EXIT_PORT, 1)],
    )?;
    bus.insert(Box::<BenchPort>::default(), &[(BENCH_PORT, 4)])?;
    // The benchmark port's last byte is a doorbell KVM completes, for the
    // cost model's calibration; without ioeventfd it exits like the rest.
    let bench_doorbell = EventFd::new(libc::EFD_NONBLOCK).map_err(VmError::Thread)?;
    let _ = vm.register_ioevent(
        &bench_doorbell,
        &IoEventAddress::Pio(u64::from(BENCH_DOORBELL)),
        NoDatamatch,
    );

    kick::install().map_err(VmError::Thread)?;
    let stitch = config.stitch.then(|| Arc::new(StitchLog::default()));
    let (commands, command_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut ports = bus.port_map();
    if kernel_irqchip {
        // KVM's 8259s and 8254 answer these without the bus.
        for base in [pic::MASTER, pic::SLAVE, pic::ELCR] {
            ports.add(base, 2, "pic");
        }
        ports.add(pit::PORT, pit::PORTS, "pit");
        ports.add(pit::SPEAKER, 1, "pit");
    }
    let vcpu = Vcpu {
        fd,
        machine: Machine {
            bus,
            counters: ExitCounters::default(),
            memory,
            floor: config.floor,
            in_floor_phase: false,
            in_kernel: None,
            pic: user_pic,
            nic: nic_handle.clone(),
        },
        commands: command_rx,
        events: sink,
        start_paused: config.start_paused,
        progress: Every::new(live::PERIOD),
        vm: vm.clone(),
        nic: link.map(|(counters, switches)| (NIC_IO_BASE, counters, switches)),
        opts: config.opts,
        halt_checked: None,
        stitch: stitch.clone(),
    };
    let (tid_tx, tid_rx) = mpsc::sync_channel(1);
    let vcpu_thread = std::thread::Builder::new()
        .name("vcpu0".into())
        .spawn(move || {
            let _vm: Arc<VmFd> = vm; // the VM lives as long as its vCPU runs
            let _done = done_tx; // dropped when the vCPU ends: stops the watchdog
                                 // SAFETY: gettid has no preconditions.
            let _ = tid_tx.send(unsafe { libc::gettid() });
            vcpu.run();
        })
        .map_err(VmError::Thread)?;
    let kicker = Kicker::new(vcpu_thread.as_pthread_t());
    let tid = tid_rx
        .recv()
        .map_err(|_| VmError::Thread(std::io::Error::other("the vCPU thread died at start")))?;
    let watchdog_kicker = kicker.clone();
    let watchdog = std::thread::Builder::new()
        .name("vcpu-watchdog".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = done_rx.recv_timeout(WATCHDOG_PERIOD) {
                watchdog_kicker.kick();
            }
        })
        .map_err(VmError::Thread)?;
    Ok(VmHandle {
        commands,
        tid,
        events,
        kicker,
        stitch,
        vcpu: Some(vcpu_thread),
        watchdog: Some(watchdog),
        pv_drain,
        rx_path,
        ports,
        _bench_doorbell: bench_doorbell,
    })
}

/// An irqfd with a resample eventfd for level-triggered `gsi`, where KVM
/// registers one (irq-notify then raises the Lance's line through it);
/// None leaves the line to `KVM_IRQ_LINE` alone.
fn resampled_irqfd(vm: &VmFd, gsi: u32) -> Option<Resampled> {
    let irqfd = EventFd::new(libc::EFD_NONBLOCK).ok()?;
    let resample = EventFd::new(libc::EFD_NONBLOCK).ok()?;
    vm.register_irqfd_with_resample(&irqfd, &resample, gsi)
        .ok()?;
    Some(Resampled::new(irqfd, resample))
}

/// The paravirtual NIC beside the Lance (`lance`), sharing its backend,
/// counters and switches (`link`): the doorbells as ioeventfds where KVM
/// offers them (else the port signals the same eventfds from user space),
/// the interrupt pulsed with `KVM_IRQ_LINE`, the thread that drains the
/// transmit ring, and the receive path that chooses between the Lance and
/// the receive ring.
fn add_pv_nic(
    vm: &Arc<VmFd>,
    bus: &mut PioBus,
    memory: &GuestMemoryMmap,
    link: NicConfig,
    lance: NicHandle,
) -> Result<(Drain, RxPath), VmError> {
    let doorbell = Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(VmError::Thread)?);
    // Pulsed with KVM_IRQ_LINE by the raising thread: an ISA line's irqfd
    // is injected from a kernel worker, one thread hop more, and measured
    // no faster here (pingpong p50 575 µs through an irqfd, 556 µs so).
    let irq = Arc::new(EdgeIrq::Line(vm.clone(), pvnet::IRQ));
    let rx = RxPath::new(
        memory.clone(),
        Box::new(lance),
        irq.clone(),
        link.counters.clone(),
        link.switches.clone(),
    )
    .map_err(VmError::Thread)?;
    // Without an ioeventfd every doorbell exits to user space; counted.
    for (fd, port) in [
        (&*doorbell, pvnet::DOORBELL),
        (rx.doorbell(), pvnet::RX_DOORBELL),
    ] {
        let _ = vm.register_ioevent(fd, &IoEventAddress::Pio(u64::from(port)), NoDatamatch);
    }
    let area = pvnet::Area::default();
    bus.insert(
        Box::new(PvnetPort::new(
            memory.clone(),
            area.clone(),
            rx.clone(),
            link.counters.clone(),
            doorbell.clone(),
        )),
        &[(pvnet::PORT, pvnet::PORTS)],
    )?;
    let drain = Drain::start(
        memory.clone(),
        (area, rx.area()),
        link.backend,
        link.counters,
        link.switches,
        doorbell,
        irq,
    )
    .map_err(VmError::Thread)?;
    Ok((drain, rx))
}

fn guest_memory(vm: &VmFd, mib: u64) -> Result<GuestMemoryMmap, VmError> {
    let size = (mib << 20) as usize;
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)])
        .map_err(|e| VmError::Memory(mib, e.to_string()))?;
    for (slot, region) in memory.iter().enumerate() {
        let host = memory
            .get_host_address(region.start_addr())
            .map_err(|e| VmError::Memory(mib, e.to_string()))?;
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `memory`, which the
        // vCPU thread keeps until the VM is gone.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(kvm_err("registering guest memory"))?;
    }
    Ok(memory)
}

fn set_halt_polling(vm: &VmFd, ns: u64) -> Result<(), VmError> {
    if vm.check_extension_raw(u64::from(KVM_CAP_HALT_POLL) as libc::c_ulong) <= 0 {
        return Ok(()); // the host cannot set it; doctor reports this
    }
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_HALT_POLL,
        ..Default::default()
    };
    cap.args[0] = ns;
    vm.enable_cap(&cap).map_err(kvm_err("setting halt polling"))
}

fn setup_vcpu(
    kvm: &Kvm,
    fd: &VcpuFd,
    boot: &boot::BootInfo,
    kernel_irqchip: bool,
) -> Result<(), VmError> {
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("reading the supported CPUID"))?;
    fd.set_cpuid2(&cpuid).map_err(kvm_err("setting CPUID"))?;
    // Without KVM's irqchip there is no LAPIC; KVM_INTERRUPT injects.
    if kernel_irqchip {
        let mut lapic = fd.get_lapic().map_err(kvm_err("reading the LAPIC"))?;
        set_lvt_mode(&mut lapic, APIC_LVT_LINT0, APIC_MODE_EXTINT);
        set_lvt_mode(&mut lapic, APIC_LVT_LINT1, APIC_MODE_NMI);
        fd.set_lapic(&lapic)
            .map_err(kvm_err("routing 8259 interrupts through LAPIC LINT0"))?;
    }
    let sregs = fd.get_sregs().map_err(kvm_err("reading sregs"))?;
    fd.set_sregs(&boot::pvh_sregs(sregs))
        .map_err(kvm_err("setting the PVH entry sregs"))?;
    fd.set_regs(&boot::pvh_regs(boot))
        .map_err(kvm_err("setting the PVH entry registers"))?;
    fd.set_fpu(&kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    })
    .map_err(kvm_err("setting the FPU state"))
}

/// Sets the delivery mode of a LAPIC LVT entry (bits 8-10).
fn set_lvt_mode(lapic: &mut kvm_lapic_state, reg: usize, mode: u32) {
    let bytes: Vec<u8> = lapic.regs[reg..reg + 4].iter().map(|&b| b as u8).collect();
    let value = (u32::from_le_bytes(bytes.try_into().unwrap()) & !0x700) | mode;
    for (dst, src) in lapic.regs[reg..reg + 4].iter_mut().zip(value.to_le_bytes()) {
        *dst = src as libc::c_char;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_says_what_to_do() {
        let e = open_kvm_at("/nonexistent/kvm").unwrap_err();
        assert!(matches!(e, VmError::NoKvm));
        assert!(e.to_string().contains("load a KVM module"));
    }

    #[test]
    fn memory_sizes_out_of_range_are_refused_before_kvm() {
        let config = |mem_mib| VmConfig {
            mem_mib,
            image: Vec::new(),
            cmdline: String::new(),
            halt_poll_ns: 0,
            floor: None,
            start_paused: false,
            opts: Default::default(),
            stitch: false,
            nic: None,
        };
        for mib in [0, MEM_MIB_MIN - 1, MEM_MIB_MAX + 1] {
            let e = start(config(mib)).err().unwrap();
            assert!(matches!(e, VmError::MemorySize(m) if m == mib));
        }
    }

    #[test]
    fn lvt_mode_changes_only_the_delivery_mode() {
        let mut lapic = kvm_lapic_state::default();
        lapic.regs[APIC_LVT_LINT0] = 0x30; // vector bits stay
        lapic.regs[APIC_LVT_LINT0 + 2] = 0x01; // mask bit (16) stays
        set_lvt_mode(&mut lapic, APIC_LVT_LINT0, APIC_MODE_EXTINT);
        let v: Vec<u8> = lapic.regs[APIC_LVT_LINT0..APIC_LVT_LINT0 + 4]
            .iter()
            .map(|&b| b as u8)
            .collect();
        assert_eq!(u32::from_le_bytes(v.try_into().unwrap()), 0x0001_0730);
    }
}
