//! The PCnet on the port I/O bus: the chip, guest RAM for its DMA, the VMNet
//! backend its frames go to and the level-triggered interrupt line,
//! re-evaluated after every access. The state sits behind one lock shared
//! by the bus (the vCPU thread) and a [`NicHandle`]: with irq-notify on,
//! the I/O thread delivers received frames itself and raises the line
//! through a resampled irqfd, without bringing the vCPU out of the guest.
//! An exit to the NIC takes the lock once (replaying the coalesced writes,
//! choosing its profile row, the access, and with irq-notify off the look
//! at the TAP); any other exit takes it only when coalesced writes wait.

use super::registers::{DWIO_RAP, IO_SIZE, WIO_RAP};
use super::rings::Drops;
use super::DriverErrors;
use super::Pcnet;
use crate::machine::devices::bus::{BusAction, PioDevice};
use crate::machine::devices::host::WriteLog;
use crate::machine::devices::irq::IrqLine;
use crate::machine::devices::transmit_stamps::{self, SlotAddress};
use crate::machine::vmnet::{self, GuestRx, LinkCounters, SharedBackend, Switches};
use crate::profiler::markers;
use profiles::taxonomy::Category;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use vm_memory::GuestMemoryMmap;

/// Frames read from the host per poll, at most, with irq-notify off.
const RX_POLL_MAX: usize = 32;

/// What the NIC needs from the VM builder's caller (shared handles: the
/// pv-nic beside it takes a copy).
#[derive(Clone)]
pub struct NicConfig {
    /// Where frames go.
    pub backend: SharedBackend,
    /// Shared counters.
    pub counters: Arc<LinkCounters>,
    /// The optimizations' switches.
    pub switches: Arc<Switches>,
    /// The chip's drop reasons, filled in when the VM ends.
    pub final_drops: Arc<Mutex<Option<(Drops, DriverErrors)>>>,
}

/// The NIC's state, behind the lock.
struct Core {
    chip: Pcnet,
    ram: GuestMemoryMmap,
    nic: NicConfig,
    irq: IrqLine,
    path: SlotAddress,
}

/// What the bus and the handles share: the state behind its lock, and
/// what may be looked at without it.
struct Shared {
    core: Mutex<Core>,
    /// The coalesced ring KVM logs the NIC's port writes to (they are the
    /// only ones it logs), and the NIC's base port, once mapped.
    ring: OnceLock<(Arc<dyn WriteLog>, u16)>,
    /// Coalesced writes replayed so far, by any thread.
    replayed: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the port writes KVM logged instead of exiting, in order;
    /// the caller holds the lock (so no entry is replayed twice).
    fn replay(&self, core: &mut Core) {
        let Some((ring, base)) = self.ring.get() else {
            return;
        };
        if ring.is_empty() {
            return;
        }
        // Register writes: Lance emulation, whichever thread replays them
        // (the samples' rules put these frames in the same row).
        let _m = markers::scope(Category::LanceCsr0);
        let n = ring.drain_into(&mut |port, bytes| {
            if let Some(offset) = port.checked_sub(*base) {
                core.chip.write_port(offset, bytes, &core.ram);
                core.service();
            }
        });
        self.replayed.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The PCnet as a bus device.
pub struct PcnetPort {
    shared: Arc<Shared>,
    /// The last access already looked at the TAP, so the poll after its
    /// exit need not (irq-notify off).
    polled: bool,
}

/// Another thread's hold on the NIC: replaying coalesced writes,
/// delivering received frames, answering the interrupt's resample.
#[derive(Clone)]
pub struct NicHandle(Arc<Shared>);

impl PcnetPort {
    /// A NIC with address `mac` doing DMA in `ram`, interrupting on `irq`.
    /// Transmit kicks are stamped into the guest's path-timing slot, when
    /// `path` holds one.
    pub fn new(
        mac: [u8; 6],
        ram: GuestMemoryMmap,
        nic: NicConfig,
        irq: IrqLine,
        path: SlotAddress,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                core: Mutex::new(Core {
                    chip: Pcnet::new(mac),
                    ram,
                    nic,
                    irq,
                    path,
                }),
                ring: OnceLock::new(),
                replayed: AtomicU64::new(0),
            }),
            polled: false,
        }
    }

    /// A handle for other threads (and the vCPU's replay of the ring).
    pub fn handle(&self) -> NicHandle {
        NicHandle(self.shared.clone())
    }

    /// One access, under one hold of the lock: the writes KVM logged before
    /// it, then the access itself timed under its row, then (irq-notify
    /// off) the look at the TAP the poll after this exit would make.
    fn access<R>(&mut self, offset: u16, f: impl FnOnce(&mut Core) -> R) -> R {
        let shared = &*self.shared;
        let mut core = shared.lock();
        let core = &mut *core;
        shared.replay(core);
        let r = {
            let _m = markers::scope(core.row(offset));
            let r = f(core);
            core.service();
            r
        };
        self.polled = core.nic.switches.vcpu_polls();
        if self.polled {
            // The look the poll after this exit makes (and counts), done
            // now under the same hold of the lock.
            let _m = markers::scope_uncounted(Category::HostEvents);
            core.poll_rx();
        }
        r
    }
}

impl NicHandle {
    /// From now on, coalesced writes are replayed from `ring`; the NIC's
    /// ports start at `base`.
    /// The ring is mapped once per VM; a second one is ignored.
    pub fn attach_ring(&self, ring: Arc<dyn WriteLog>, base: u16) {
        let _ = self.0.ring.set((ring, base));
    }

    /// Applies the port writes KVM logged instead of exiting, in order,
    /// before an exit to `port` is handled: under the lock when any wait,
    /// without touching it when none do. An exit to the NIC's own ports
    /// replays under the lock its access takes.
    pub fn replay_before(&self, port: Option<u16>) {
        let Some((ring, base)) = self.0.ring.get() else {
            return;
        };
        let ours = port.is_some_and(|p| p.wrapping_sub(*base) < IO_SIZE);
        if !ours && !ring.is_empty() {
            let mut core = self.0.lock();
            self.0.replay(&mut core);
        }
    }

    /// Coalesced writes replayed so far, by any thread.
    pub fn replayed(&self) -> u64 {
        self.0.replayed.load(Ordering::Relaxed)
    }

    /// Raises the interrupt through the resampled irqfd (irq-notify on) or
    /// `KVM_IRQ_LINE`; false when the line has no irqfd.
    pub fn use_irqfd(&self, on: bool) -> bool {
        let mut core = self.0.lock();
        let level = core.chip.irq_level();
        core.irq.use_irqfd(on, level)
    }
}

impl GuestRx for NicHandle {
    fn deliver(&self, frames: &mut Vec<Vec<u8>>) -> bool {
        // The batch's own work (the lock, the line) is the frames' time.
        let _m = markers::scope_uncounted(Category::LanceRx);
        let mut core = self.0.lock();
        let core = &mut *core;
        // Writes the guest made before these frames arrived come first.
        self.0.replay(core);
        for frame in frames.drain(..) {
            let _m = markers::scope(Category::LanceRx);
            if core.chip.receive(&core.ram, &frame) {
                core.nic
                    .counters
                    .rx_delivered
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        core.update_irq();
        // The chip takes every frame: what finds no descriptor is its drop.
        true
    }

    fn resample_fd(&self) -> Option<RawFd> {
        self.0.lock().irq.resample_fd().map(AsRawFd::as_raw_fd)
    }

    fn resampled(&self) {
        let mut core = self.0.lock();
        self.0.replay(&mut core);
        let level = core.chip.irq_level();
        if core.irq.resampled(level) {
            core.nic.counters.irq_edges.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Core {
    /// The profile row of an access at `offset`.
    fn row(&self, offset: u16) -> Category {
        let rap = if self.chip.dwio() { DWIO_RAP } else { WIO_RAP };
        match offset {
            o if o == rap => Category::LanceRap,
            0x10..=0x1f if self.chip.rap() == 0 => Category::LanceCsr0,
            _ => Category::OtherDevices,
        }
    }

    /// irq-notify off: looks at the TAP on the vCPU thread, as WS 2.0's
    /// VMApp called select() whenever it ran.
    fn poll_rx(&mut self) {
        let (chip, ram, counters) = (&mut self.chip, &self.ram, &self.nic.counters);
        let mut backend = self.nic.backend.lock().unwrap_or_else(|e| e.into_inner());
        let n = backend.receive_ready(RX_POLL_MAX, &mut |frame| {
            let _m = markers::scope(Category::LanceRx);
            if chip.receive(ram, frame) {
                counters.rx_delivered.fetch_add(1, Ordering::Relaxed);
            }
        });
        drop(backend);
        counters.rx_queued.fetch_add(n, Ordering::Relaxed);
        self.service();
    }

    fn update_irq(&mut self) {
        if self.irq.set(self.chip.irq_level()) {
            self.nic.counters.irq_edges.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Transmits what the driver asked for, takes in frames from the host,
    /// and updates the interrupt line.
    fn service(&mut self) {
        if self.chip.tx_demanded() {
            let _m = markers::scope(Category::LanceTx);
            let slot = self.path.load(Ordering::Relaxed);
            if slot != 0 {
                transmit_stamps::stamp_kick(&self.ram, slot);
            }
            let mut tap = None;
            let mut backend = self.nic.backend.lock().unwrap_or_else(|e| e.into_inner());
            let counters = &self.nic.counters;
            self.chip.transmit(&self.ram, &mut |frame: &[u8]| {
                let start = markers::now();
                let sent = {
                    let _m = markers::scope(Category::VmnetTx);
                    vmnet::send_counted(&mut **backend, counters, frame)
                };
                tap.get_or_insert((start, markers::now()));
                sent
            });
            if let (Some((start, end)), true) = (tap, slot != 0) {
                transmit_stamps::stamp_tap(&self.ram, slot, start, end);
            }
        }
        self.update_irq();
    }
}

impl PioDevice for PcnetPort {
    fn name(&self) -> &'static str {
        "pcnet"
    }

    fn group(&self) -> &'static str {
        "nic"
    }

    fn read(&mut self, offset: u16, data: &mut [u8]) {
        self.timed_read(offset, data)
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        self.timed_write(offset, data)
    }

    fn timed_read(&mut self, offset: u16, data: &mut [u8]) {
        self.access(offset, |core| core.chip.read_port(offset, data))
    }

    fn timed_write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        self.access(offset, |core| core.chip.write_port(offset, data, &core.ram));
        BusAction::None
    }

    fn catch_up(&mut self) {
        // Right after an access that looked already, the poll of its exit
        // has nothing new to find.
        if std::mem::take(&mut self.polled) {
            return;
        }
        let shared = &*self.shared;
        let mut core = shared.lock();
        let core = &mut *core;
        shared.replay(core);
        if core.nic.switches.vcpu_polls() {
            core.poll_rx();
        } else {
            core.service();
        }
    }

    fn category(&self, offset: u16, _write: bool) -> Category {
        self.shared.lock().row(offset)
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        *self
            .nic
            .final_drops
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            Some((self.chip.drops().clone(), self.chip.driver_errors().clone()));
    }
}
