//! The network side of a run: choosing and building the VMNet backend for
//! the NIC, starting its I/O thread once the VM exists, and the frame
//! accounting at the end.

use crate::machine::devices::pcnet::port::NicConfig;
use crate::machine::devices::pcnet::rings::Drops;
use crate::machine::devices::pcnet::DriverErrors;
use crate::machine::vmm::kick::Kicker;
use crate::machine::vmnet::pace::Paced;
use crate::machine::vmnet::peer::PeerReport;
use crate::machine::vmnet::sequence::SequenceCounts;
use crate::machine::vmnet::sink::Sink;
use crate::machine::vmnet::tap::TapLink;
use crate::machine::vmnet::{Backend, GuestRx, LinkCounters, NetKind, SharedPeer, Switches};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// A run's link: the backend's other half, and what it counts.
pub struct NetRun {
    kind: NetKind,
    tap: Option<TapLink>,
    peer: SharedPeer,
    counters: Arc<LinkCounters>,
    switches: Arc<Switches>,
    final_drops: Arc<Mutex<Option<(Drops, DriverErrors)>>>,
    /// Why the run fell back to the sink, when it did.
    pub notice: Option<String>,
}

/// What the paravirtual NIC (pv-nic) did in a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PvReport {
    /// Frames the host took from its ring.
    pub frames: u64,
    /// Doorbells the drain thread saw (coalesced eventfd counts).
    pub doorbells: u64,
    /// Doorbells that exited to user space (no ioeventfd on this host).
    pub doorbells_in_user: u64,
    /// Completion interrupts raised (only when the guest waited: for room
    /// on the ring, or for its bytes to be sent).
    pub irqs: u64,
    /// Frames refused (see [`crate::machine::vmnet::PvCounters::bad_entries`]).
    pub bad_entries: u64,
    /// Times the guest's producer ran more than a ring ahead.
    pub overruns: u64,
    /// Ring registrations refused, and accesses of the wrong width.
    pub bad_registrations: u64,
    /// See `bad_registrations`.
    pub bad_accesses: u64,
    /// Frames written into the guest's receive buffers.
    pub rx_frames: u64,
    /// Receive interrupts raised (only while the guest was not polling).
    pub rx_irqs: u64,
    /// Receive doorbells answered: buffers posted while frames waited.
    pub rx_doorbells: u64,
    /// Times the guest moved its receive path.
    pub rx_switches: u64,
}

/// The frame accounting of a run.
#[derive(Debug, Clone, Serialize)]
pub struct NetReport {
    /// `tap` or `sink`.
    pub backend: NetKind,
    /// Goodput: UDP payload bits the peer received per second, in Mb/s.
    pub throughput_mbps: f64,
    /// Ethernet frame bits the peer received per second, in Mb/s.
    pub wire_mbps: f64,
    /// Datagrams the peer received per second.
    pub frames_per_sec: f64,
    /// Exits to user space per delivered frame (from kvm:kvm_userspace_exit
    /// where it can be read, else worldswitch's own count).
    pub exits_per_frame: Option<f64>,
    /// Where `exits_per_frame` came from.
    pub exits_source: &'static str,
    /// Port accesses per frame the guest counted.
    pub port_accesses_per_frame_guest: Option<f64>,
    /// Port accesses per frame from kvm:kvm_pio (in-kernel ones included).
    pub port_accesses_per_frame_tracepoint: Option<f64>,
    /// Datagrams the guest says it handed to the NIC (its last report).
    pub frames_sent_by_guest: Option<u64>,
    /// Datagrams the NIC handed to the host (written to the backend).
    pub frames_received_by_host: u64,
    /// Every frame the NIC handed to the backend, nettest's or not (ARP, a
    /// hostile guest's garbage).
    pub frames_from_nic: u64,
    /// Datagrams the peer received.
    pub frames_delivered: u64,
    /// Frames from the guest dropped, by reason (NIC, backend, and the
    /// peer's own).
    pub frames_dropped: BTreeMap<String, u64>,
    /// Frames to the guest dropped, by reason (the TAP's queue, our queue to
    /// the vCPU, the NIC's receive side).
    pub rx_dropped: BTreeMap<String, u64>,
    /// Received by the host, neither delivered nor dropped. 0 after a
    /// quiesce unless something was lost without a reason.
    pub frames_in_flight: i64,
    /// Sequence anomalies at the peer.
    pub sequence_errors: SequenceCounts,
    /// Frames from the host to the guest: read from the host, and
    /// delivered to the receive ring.
    pub rx_queued: u64,
    /// See `rx_queued`.
    pub rx_delivered: u64,
    /// Interrupt line changes.
    pub irq_edges: u64,
    /// Register-level driver errors the NIC refused, by reason.
    pub nic_faults: BTreeMap<String, u64>,
    /// The paravirtual NIC's figures (all 0 when the guest never used it).
    pub pv_nic: PvReport,
    /// The TAP device went away during the run (frames to it then fail and
    /// are counted as "backend write failed").
    pub tap_device_gone: bool,
}

impl NetRun {
    /// Builds the backend `kind` asks for; without one, TAP where possible
    /// and the sink otherwise (with a notice).
    pub fn new(kind: Option<NetKind>, link_rate: Option<u64>) -> anyhow::Result<(Self, NicConfig)> {
        let peer = SharedPeer::default();
        let (tap, backend, kind, notice): (
            Option<TapLink>,
            Box<dyn Backend>,
            NetKind,
            Option<String>,
        ) = match kind {
            Some(NetKind::Sink) => (None, Box::new(Sink::new(peer.clone())), NetKind::Sink, None),
            Some(NetKind::Tap) => {
                let (link, backend) = TapLink::create(peer.clone())?;
                (Some(link), Box::new(backend), NetKind::Tap, None)
            }
            None => match TapLink::create(peer.clone()) {
                Ok((link, backend)) => (Some(link), Box::new(backend), NetKind::Tap, None),
                Err(e) => (
                    None,
                    Box::new(Sink::new(peer.clone())),
                    NetKind::Sink,
                    Some(format!("{e}; frames go to the in-process sink instead")),
                ),
            },
        };
        let backend: Box<dyn Backend> = match link_rate {
            Some(rate) => Box::new(Paced::new(backend, rate)),
            None => backend,
        };
        let counters = Arc::new(LinkCounters::default());
        let switches = Arc::new(Switches::default());
        let final_drops = Arc::new(Mutex::new(None));
        let nic = NicConfig {
            backend: Arc::new(Mutex::new(backend)),
            counters: counters.clone(),
            switches: switches.clone(),
            final_drops: final_drops.clone(),
        };
        Ok((
            Self {
                kind,
                tap,
                peer,
                counters,
                switches,
                final_drops,
                notice,
            },
            nic,
        ))
    }

    /// Starts the I/O thread that brings frames from the host to `guest`
    /// (with irq-notify off it only kicks the vCPU at the host's tick).
    pub fn start(&mut self, kicker: Kicker, guest: Box<dyn GuestRx>) -> anyhow::Result<()> {
        if let Some(tap) = self.tap.as_mut() {
            tap.start_receiver(
                guest,
                Box::new(move || kicker.kick()),
                self.counters.clone(),
                self.switches.clone(),
            )?;
        }
        Ok(())
    }

    /// What the I/O thread has measured (TAP only): so far while it runs,
    /// all of it after [`NetRun::quiesce`].
    pub fn io_profile(&self) -> Option<crate::machine::vmnet::tap::IoProfile> {
        self.tap.as_ref().and_then(TapLink::io_profile)
    }

    /// What the peer has received so far: (datagrams, payload bytes).
    pub fn delivered(&self) -> (u64, u64) {
        self.peer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .delivered()
    }

    /// Stops the link and lets the peer drain; call after the VM finished.
    pub fn quiesce(&mut self) {
        if let Some(tap) = self.tap.as_mut() {
            tap.quiesce();
        }
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        match self.kind {
            NetKind::Tap => "tap",
            NetKind::Sink => "sink",
        }
    }

    /// While the guest runs: nettest frames the backend took, and the drops
    /// counted so far by the backend and the peer (the NIC's own drops are
    /// read when it stops).
    pub fn accounting(&self) -> (u64, BTreeMap<String, u64>) {
        let c = &self.counters;
        let mut dropped = BTreeMap::new();
        let send_errors = c.send_errors.load(Ordering::Relaxed);
        if send_errors > 0 {
            dropped.insert("backend write failed".to_string(), send_errors);
        }
        let peer = self.peer.lock().unwrap_or_else(|e| e.into_inner()).report();
        for (reason, n) in peer.drops {
            if n > 0 {
                dropped.insert(reason, n);
            }
        }
        (c.nettest_written.load(Ordering::Relaxed), dropped)
    }

    /// Reads the nettest frames the guest has sent so far (by any NIC).
    pub fn frame_counter(&self) -> Box<dyn Fn() -> u64 + Send> {
        let c = self.counters.clone();
        Box::new(move || c.nettest_written.load(Ordering::Relaxed))
    }

    /// NIC interrupt line edges and pv-nic doorbells so far (cheap: two
    /// atomics).
    pub fn event_counts(&self) -> (u64, u64) {
        let c = &self.counters;
        (
            c.irq_edges.load(Ordering::Relaxed),
            c.pv.doorbells.load(Ordering::Relaxed),
        )
    }

    /// The accounting, after [`NetRun::quiesce`].
    pub fn report(
        &self,
        seconds: f64,
        guest: &BTreeMap<String, u64>,
        exits: Option<(u64, &'static str)>,
        kvm_pio: Option<u64>,
    ) -> NetReport {
        let peer: PeerReport = self.peer.lock().unwrap_or_else(|e| e.into_inner()).report();
        let c = &self.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let (mut dropped, mut rx_dropped) = (BTreeMap::new(), BTreeMap::new());
        let mut nic_faults = BTreeMap::new();
        if let Some((d, faults)) = self
            .final_drops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(faults) {
                for (k, v) in map {
                    if let Some(n) = v.as_u64().filter(|&n| n > 0) {
                        nic_faults.insert(k, n);
                    }
                }
            }
            if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(d) {
                for (k, v) in map {
                    if let Some(n) = v.as_u64().filter(|&n| n > 0) {
                        let map = if k.starts_with("rx_") {
                            &mut rx_dropped
                        } else {
                            &mut dropped
                        };
                        map.insert(format!("nic {k}"), n);
                    }
                }
            }
        }
        let send_errors = load(&c.send_errors);
        if send_errors > 0 {
            dropped.insert("backend write failed".into(), send_errors);
        }
        let mut peer_drops = 0;
        for (reason, n) in &peer.drops {
            if *n > 0 {
                dropped.insert(reason.clone(), *n);
                peer_drops += n;
            }
        }
        for (reason, n) in &peer.to_guest_drops {
            if *n > 0 {
                rx_dropped.insert(reason.clone(), *n);
            }
        }
        let pv = PvReport {
            frames: load(&c.pv.frames),
            doorbells: load(&c.pv.doorbells),
            doorbells_in_user: load(&c.pv.doorbells_in_user),
            irqs: load(&c.pv.irqs),
            bad_entries: load(&c.pv.bad_entries),
            overruns: load(&c.pv.overruns),
            bad_registrations: load(&c.pv.bad_registrations),
            bad_accesses: load(&c.pv.bad_accesses),
            rx_frames: load(&c.pv.rx_frames),
            rx_irqs: load(&c.pv.rx_irqs),
            rx_doorbells: load(&c.pv.rx_doorbells),
            rx_switches: load(&c.pv.rx_switches),
        };
        for (reason, n) in [
            ("pv rx buffer unusable", load(&c.pv.rx_bad_buffers)),
            ("pv rx no buffer by the end", load(&c.pv.rx_waiting)),
        ] {
            if n > 0 {
                rx_dropped.insert(reason.into(), n);
            }
        }
        if pv.bad_entries > 0 {
            dropped.insert("pv bad entry".into(), pv.bad_entries);
        }
        let received = load(&c.nettest_written);
        let delivered = peer.frames;
        let per_frame = |n: u64| (delivered > 0).then(|| n as f64 / delivered as f64);
        let guest_ports: Option<u64> = {
            let sum: u64 = guest
                .iter()
                .filter(|(k, _)| k.starts_with("port_"))
                .map(|(_, v)| v)
                .sum();
            (sum > 0).then_some(sum)
        };
        let frames_sent_by_guest = guest.get("frames_sent").copied();
        NetReport {
            backend: self.kind,
            throughput_mbps: peer.payload_bytes as f64 * 8.0 / seconds.max(1e-9) / 1e6,
            wire_mbps: peer.wire_bytes as f64 * 8.0 / seconds.max(1e-9) / 1e6,
            frames_per_sec: delivered as f64 / seconds.max(1e-9),
            exits_per_frame: exits.and_then(|(n, _)| per_frame(n)),
            exits_source: exits.map_or("unavailable", |(_, s)| s),
            port_accesses_per_frame_guest: match (guest_ports, frames_sent_by_guest) {
                (Some(p), Some(f)) if f > 0 => Some(p as f64 / f as f64),
                _ => None,
            },
            port_accesses_per_frame_tracepoint: kvm_pio.and_then(per_frame),
            frames_sent_by_guest,
            frames_received_by_host: received,
            frames_from_nic: load(&c.frames_written),
            frames_delivered: delivered,
            frames_dropped: dropped,
            rx_dropped,
            frames_in_flight: received as i64 - delivered as i64 - peer_drops as i64,
            sequence_errors: peer.sequence,
            rx_queued: load(&c.rx_queued),
            rx_delivered: load(&c.rx_delivered),
            irq_edges: load(&c.irq_edges),
            nic_faults,
            pv_nic: pv,
            tap_device_gone: load(&c.rx_device_gone) > 0,
        }
    }
}
