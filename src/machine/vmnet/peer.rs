//! What the receiving side of the link counted: frames, bytes, sequence
//! anomalies and its own drops, with their reasons.

use super::frames::{self, HEADERS};
use super::sequence::{SequenceChecker, SequenceCounts};
use serde::Serialize;
use std::collections::BTreeMap;

/// The receiving peer's counts: the report's figures, kept up to date, and
/// the sequence checker behind its `sequence` field.
#[derive(Debug, Default, Clone)]
pub struct PeerStats {
    counts: PeerReport,
    sequence: SequenceChecker,
}

/// What the receiving side counted, for reports.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PeerReport {
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
    /// Sequence anomalies.
    pub sequence: SequenceCounts,
}

impl PeerStats {
    /// Counts a nettest datagram by its UDP payload: `seq` and `payload`
    /// bytes (sequence number included).
    pub fn datagram(&mut self, seq: u64, payload: usize) {
        let c = &mut self.counts;
        c.frames += 1;
        c.payload_bytes += payload as u64;
        c.wire_bytes += (payload + HEADERS) as u64;
        self.sequence.observe(seq);
    }

    /// Counts a whole Ethernet frame as the wire carried it.
    pub fn frame(&mut self, frame: &[u8]) {
        match frames::parse(frame) {
            Some(d) => self.datagram(d.seq, d.payload),
            None => self.counts.other_frames += 1,
        }
    }

    /// Sets the drop count the host reports for `reason`, on the way from
    /// the guest (or, with `to_guest`, on the way to it).
    pub fn set_drops(&mut self, reason: &str, count: u64, to_guest: bool) {
        let map = if to_guest {
            &mut self.counts.to_guest_drops
        } else {
            &mut self.counts.drops
        };
        map.insert(reason.to_string(), count);
    }

    /// Datagrams and payload bytes received so far.
    pub fn delivered(&self) -> (u64, u64) {
        (self.counts.frames, self.counts.payload_bytes)
    }

    /// A copy for reports.
    pub fn report(&self) -> PeerReport {
        PeerReport {
            sequence: self.sequence.counts().clone(),
            ..self.counts.clone()
        }
    }
}
