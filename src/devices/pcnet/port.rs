//! The PCnet on the port I/O bus: the chip, guest RAM for its DMA, the VMNet
//! backend its frames go to and the level-triggered interrupt line,
//! re-evaluated after every access. The state sits behind one lock shared
//! by the bus (the vCPU thread) and a [`NicHandle`]: with irq-notify on,
//! the I/O thread delivers received frames itself and raises the line
//! through a resampled irqfd, without bringing the vCPU out of the guest.

use super::registers::{DWIO_RAP, WIO_RAP};
use super::rings::Drops;
use super::Faults;
use super::Pcnet;
use crate::devices::bus::{BusAction, PioDevice};
use crate::devices::irq::IrqLine;
use crate::devices::path::{self, SlotAddress};
use crate::optimizations::coalesced::Ring;
use crate::profiler::markers;
use crate::vmnet::{self, GuestRx, LinkCounters, SharedBackend};
use profiles::taxonomy::Category;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use vm_memory::GuestMemoryMmap;

/// Frames read from the host per poll, at most, with irq-notify off.
const RX_POLL_MAX: usize = 32;

/// What the NIC needs from the VM builder's caller.
pub struct NicConfig {
    /// Where frames go.
    pub backend: SharedBackend,
    /// Shared counters.
    pub counters: Arc<LinkCounters>,
    /// The chip's drop reasons, filled in when the VM ends.
    pub final_drops: Arc<Mutex<Option<(Drops, Faults)>>>,
}

/// The NIC's state, behind the lock.
struct Core {
    chip: Pcnet,
    ram: GuestMemoryMmap,
    nic: NicConfig,
    irq: IrqLine,
    path: SlotAddress,
    /// The coalesced ring KVM logs the NIC's port writes to (they are the
    /// only ones it logs), and the NIC's base port, once mapped.
    ring: Option<(Arc<Ring>, u16)>,
    replayed: u64,
}

/// The PCnet as a bus device.
pub struct PcnetPort(Arc<Mutex<Core>>);

/// Another thread's hold on the NIC: replaying coalesced writes,
/// delivering received frames, answering the interrupt's resample.
#[derive(Clone)]
pub struct NicHandle(Arc<Mutex<Core>>);

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

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
        Self(Arc::new(Mutex::new(Core {
            chip: Pcnet::new(mac),
            ram,
            nic,
            irq,
            path,
            ring: None,
            replayed: 0,
        })))
    }

    /// A handle for other threads (and the vCPU's replay of the ring).
    pub fn handle(&self) -> NicHandle {
        NicHandle(self.0.clone())
    }
}

impl NicHandle {
    /// From now on, coalesced writes are replayed from `ring`; the NIC's
    /// ports start at `base`.
    pub fn attach_ring(&self, ring: Arc<Ring>, base: u16) {
        lock(&self.0).ring = Some((ring, base));
    }

    /// Applies the port writes KVM logged instead of exiting, in order,
    /// under the lock (so the vCPU and the I/O thread never replay the same
    /// entry twice).
    pub fn replay(&self) {
        lock(&self.0).replay();
    }

    /// Coalesced writes replayed so far, by any thread.
    pub fn replayed(&self) -> u64 {
        lock(&self.0).replayed
    }

    /// Raises the interrupt through the resampled irqfd (irq-notify on) or
    /// `KVM_IRQ_LINE`; false when the line has no irqfd.
    pub fn use_irqfd(&self, on: bool) -> bool {
        let mut core = lock(&self.0);
        let level = core.chip.irq_level();
        core.irq.use_irqfd(on, level)
    }
}

impl GuestRx for NicHandle {
    fn deliver(&self, frames: &[Vec<u8>]) {
        let mut core = lock(&self.0);
        let core = &mut *core;
        // Writes the guest made before these frames arrived come first.
        core.replay();
        for frame in frames {
            let _m = markers::scope(Category::LanceRx);
            if core.chip.receive(&core.ram, frame) {
                core.nic
                    .counters
                    .rx_delivered
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        core.update_irq();
    }

    fn resample_fd(&self) -> Option<RawFd> {
        lock(&self.0).irq.resample_fd().map(AsRawFd::as_raw_fd)
    }

    fn resampled(&self) {
        let mut core = lock(&self.0);
        core.replay();
        let level = core.chip.irq_level();
        if core.irq.resampled(level) {
            core.nic.counters.irq_edges.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Core {
    fn replay(&mut self) {
        let Some((ring, base)) = self.ring.clone() else {
            return;
        };
        let n = ring.drain(|w| {
            if let Some(offset) = w.port.checked_sub(base) {
                self.chip.write_port(offset, w.bytes(), &self.ram);
                self.service();
            }
        });
        self.replayed += n as u64;
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
                path::stamp_kick(&self.ram, slot);
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
                path::stamp_tap(&self.ram, slot, start, end);
            }
        }
        self.update_irq();
    }
}

impl PioDevice for PcnetPort {
    fn name(&self) -> &'static str {
        "pcnet"
    }

    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let mut core = lock(&self.0);
        core.chip.read_port(offset, data);
        core.service();
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        let mut core = lock(&self.0);
        let core = &mut *core;
        core.chip.write_port(offset, data, &core.ram);
        core.service();
        BusAction::None
    }

    fn poll(&mut self) {
        let mut core = lock(&self.0);
        let core = &mut *core;
        if core.nic.counters.poll_rx.load(Ordering::Relaxed) {
            // irq-notify off: look at the TAP ourselves, as WS 2.0's VMApp
            // called select() whenever it ran.
            let (chip, ram, counters) = (&mut core.chip, &core.ram, &core.nic.counters);
            let mut backend = core.nic.backend.lock().unwrap_or_else(|e| e.into_inner());
            let n = backend.receive_ready(RX_POLL_MAX, &mut |frame| {
                let _m = markers::scope(Category::LanceRx);
                if chip.receive(ram, frame) {
                    counters.rx_delivered.fetch_add(1, Ordering::Relaxed);
                }
            });
            counters.rx_queued.fetch_add(n, Ordering::Relaxed);
        }
        core.service();
    }

    fn category(&self, offset: u16, _write: bool) -> Category {
        let core = lock(&self.0);
        let rap = if core.chip.dwio() { DWIO_RAP } else { WIO_RAP };
        match offset {
            o if o == rap => Category::LanceRap,
            0x10..=0x1f if core.chip.rap() == 0 => Category::LanceCsr0,
            _ => Category::OtherDevices,
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        *self
            .nic
            .final_drops
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            Some((self.chip.drops().clone(), self.chip.faults().clone()));
    }
}
