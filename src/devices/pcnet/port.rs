//! The PCnet on the port I/O bus: the chip, guest RAM for its DMA, the VMNet
//! backend its frames go to, frames queued by the I/O thread, and the
//! level-triggered interrupt line, re-evaluated after every access.

use super::registers::{DWIO_RAP, WIO_RAP};
use super::rings::Drops;
use super::Faults;
use super::Pcnet;
use crate::devices::bus::{BusAction, PioDevice};
use crate::devices::irq::IrqLine;
use crate::devices::path::{self, SlotAddress};
use crate::profiler::markers;
use crate::vmnet::{self, LinkCounters, SharedBackend};
use profiles::taxonomy::Category;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use vm_memory::GuestMemoryMmap;

/// Frames read from the host per poll, at most, with irq-notify off.
const RX_POLL_MAX: usize = 32;

/// What the NIC needs from the VM builder's caller.
pub struct NicConfig {
    /// Where frames go.
    pub backend: SharedBackend,
    /// Frames from the host.
    pub rx: Receiver<Vec<u8>>,
    /// Shared counters.
    pub counters: Arc<LinkCounters>,
    /// The chip's drop reasons, filled in when the VM ends.
    pub final_drops: Arc<Mutex<Option<(Drops, Faults)>>>,
}

/// The PCnet as a bus device.
pub struct PcnetPort {
    chip: Pcnet,
    ram: GuestMemoryMmap,
    nic: NicConfig,
    irq: IrqLine,
    path: SlotAddress,
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
        Self {
            chip: Pcnet::new(mac),
            ram,
            nic,
            irq,
            path,
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
        while let Ok(frame) = self.nic.rx.try_recv() {
            let _m = markers::scope(Category::LanceRx);
            if self.chip.receive(&self.ram, &frame) {
                self.nic
                    .counters
                    .rx_delivered
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.irq.set(self.chip.irq_level()) {
            self.nic.counters.irq_edges.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl PioDevice for PcnetPort {
    fn name(&self) -> &'static str {
        "pcnet"
    }

    fn read(&mut self, offset: u16, data: &mut [u8]) {
        self.chip.read_port(offset, data);
        self.service();
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        self.chip.write_port(offset, data, &self.ram);
        self.service();
        BusAction::None
    }

    fn poll(&mut self) {
        if self.nic.counters.poll_rx.load(Ordering::Relaxed) {
            // irq-notify off: look at the TAP ourselves, as WS 2.0's VMApp
            // called select() whenever it ran.
            let (chip, ram, counters) = (&mut self.chip, &self.ram, &self.nic.counters);
            let mut backend = self.nic.backend.lock().unwrap_or_else(|e| e.into_inner());
            let n = backend.receive_ready(RX_POLL_MAX, &mut |frame| {
                let _m = markers::scope(Category::LanceRx);
                if chip.receive(ram, frame) {
                    counters.rx_delivered.fetch_add(1, Ordering::Relaxed);
                }
            });
            counters.rx_queued.fetch_add(n, Ordering::Relaxed);
        }
        self.service();
    }

    fn category(&self, offset: u16, _write: bool) -> Category {
        let rap = if self.chip.dwio() { DWIO_RAP } else { WIO_RAP };
        match offset {
            o if o == rap => Category::LanceRap,
            0x10..=0x1f if self.chip.rap() == 0 => Category::LanceCsr0,
            _ => Category::OtherDevices,
        }
    }
}

impl Drop for PcnetPort {
    fn drop(&mut self) {
        *self
            .nic
            .final_drops
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            Some((self.chip.drops().clone(), self.chip.faults().clone()));
    }
}
