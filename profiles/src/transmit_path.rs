//! The transmit path, segment by segment (the paper's Figure 5), from the
//! guest's TSC stamps and the host's, with the error bound of the segments
//! that cross the guest/host clock boundary.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Segments, their guest counter keys (sums of signed cycles) and labels.
const SEGMENTS: [(&str, &str); 5] = [
    ("guest to exit", "path_guest_to_exit"),
    ("exit to TAP write", "path_exit_to_tap"),
    ("TAP write", "path_tap_write"),
    ("TAP write to re-entry", "path_tap_to_reentry"),
    ("re-entry to guest", "path_reentry_to_guest"),
];

/// The transmit path from the guest's stamps with
/// `--guest-arg path_timing=1`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TransmitPath {
    /// Kicks measured.
    pub kicks: u64,
    /// Mean microseconds per segment: guest to exit, exit to TAP write,
    /// TAP write, TAP write to re-entry, re-entry to the guest's next
    /// instruction.
    pub segments_us: Vec<(String, f64)>,
    /// All segments.
    pub total_us: f64,
    /// Host TSC minus guest TSC, from the tightest of 16 pings.
    pub tsc_offset_cycles: i64,
    /// The error bound of the first and last segments (half the tightest
    /// ping); the segments between are host-only and exact.
    pub error_us: f64,
}

impl TransmitPath {
    /// The path from the guest's counters, if it measured one; `tsc_mhz`
    /// converts cycles.
    pub fn from_counters(g: &BTreeMap<String, u64>, tsc_mhz: f64) -> Option<Self> {
        let kicks = *g.get("path_kicks").filter(|&&k| k > 0)?;
        let us = |cycles: f64| cycles / tsc_mhz.max(1e-9);
        let segments_us: Vec<(String, f64)> = SEGMENTS
            .iter()
            .map(|(label, key)| {
                // The guest sums signed differences in a u64.
                let sum = g.get(*key).copied().unwrap_or(0) as i64;
                (label.to_string(), us(sum as f64 / kicks as f64))
            })
            .collect();
        Some(Self {
            kicks,
            total_us: segments_us.iter().map(|(_, v)| v).sum(),
            segments_us,
            tsc_offset_cycles: g.get("path_tsc_offset").copied().unwrap_or(0) as i64,
            error_us: us(g.get("path_tsc_offset_err").copied().unwrap_or(0) as f64),
        })
    }

    /// Whether segment `i` crosses the clock boundary (carries the error
    /// bound).
    pub fn crosses_clocks(&self, i: usize) -> bool {
        i == 0 || i + 1 == self.segments_us.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_from_signed_sums() {
        let mut g = BTreeMap::new();
        g.insert("path_kicks".to_string(), 10);
        g.insert("path_guest_to_exit".to_string(), 20_000);
        g.insert("path_tap_write".to_string(), 100_000);
        // A negative sum (clock offset slightly off) stays negative.
        g.insert("path_reentry_to_guest".to_string(), (-1000i64) as u64);
        g.insert("path_tsc_offset_err".to_string(), 3000);
        let p = TransmitPath::from_counters(&g, 1000.0).unwrap();
        assert_eq!(p.kicks, 10);
        assert_eq!(p.segments_us[0], ("guest to exit".to_string(), 2.0));
        assert_eq!(p.segments_us[2].1, 10.0);
        assert_eq!(p.segments_us[4].1, -0.1);
        assert!((p.total_us - 11.9).abs() < 1e-9);
        assert_eq!(p.error_us, 3.0);
        assert!(p.crosses_clocks(0) && p.crosses_clocks(4) && !p.crosses_clocks(2));
        g.insert("path_kicks".to_string(), 0);
        assert!(TransmitPath::from_counters(&g, 1000.0).is_none());
    }
}
