//! What the receiving side of the link counted: frames, bytes, sequence
//! anomalies and its own drops, with their reasons.

use super::frames::{self, HEADERS};
use super::sequence::{SequenceChecker, SequenceCounts};
use serde::Serialize;
use std::collections::BTreeMap;

/// The receiving peer's counts.
#[derive(Debug, Default, Clone)]
pub struct PeerStats {
    /// Nettest datagrams received.
    pub frames: u64,
    /// Their UDP payload bytes (what the guest's send() calls carried, plus
    /// the 8-byte sequence numbers).
    pub payload_bytes: u64,
    /// Their Ethernet frame bytes (without padding or FCS).
    pub wire_bytes: u64,
    /// Frames that were not nettest datagrams (ARP, ...).
    pub other_frames: u64,
    /// Drops the receiving side reports, by reason.
    pub drops: BTreeMap<String, u64>,
    /// Drops on the way from the host to the guest, by reason.
    pub to_guest_drops: BTreeMap<String, u64>,
    sequence: SequenceChecker,
}

/// A copy of the counts for reports.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PeerReport {
    /// Nettest datagrams received.
    pub frames: u64,
    /// UDP payload bytes.
    pub payload_bytes: u64,
    /// Ethernet frame bytes.
    pub wire_bytes: u64,
    /// Other frames.
    pub other_frames: u64,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
    /// Drops on the way to the guest, by reason.
    pub to_guest_drops: BTreeMap<String, u64>,
    /// Sequence anomalies.
    pub sequence: SequenceCounts,
}

impl PeerStats {
    /// Counts a nettest datagram by its UDP payload: `seq` and `payload`
    /// bytes (sequence number included).
    pub fn datagram(&mut self, seq: u64, payload: usize) {
        self.frames += 1;
        self.payload_bytes += payload as u64;
        self.wire_bytes += (payload + HEADERS) as u64;
        self.sequence.observe(seq);
    }

    /// Counts a whole Ethernet frame as the wire carried it.
    pub fn frame(&mut self, frame: &[u8]) {
        match frames::parse(frame) {
            Some(d) => self.datagram(d.seq, d.payload),
            None => self.other_frames += 1,
        }
    }

    /// Sets the drop count the host reports for `reason`, on the way from
    /// the guest (or, with `to_guest`, on the way to it).
    pub fn set_drops(&mut self, reason: &str, count: u64, to_guest: bool) {
        let map = if to_guest {
            &mut self.to_guest_drops
        } else {
            &mut self.drops
        };
        map.insert(reason.to_string(), count);
    }

    /// A copy for reports.
    pub fn report(&self) -> PeerReport {
        PeerReport {
            frames: self.frames,
            payload_bytes: self.payload_bytes,
            wire_bytes: self.wire_bytes,
            other_frames: self.other_frames,
            drops: self.drops.clone(),
            to_guest_drops: self.to_guest_drops.clone(),
            sequence: self.sequence.counts().clone(),
        }
    }
}
