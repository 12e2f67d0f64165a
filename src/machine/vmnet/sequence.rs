//! Sequence-number checking for the guest's stream: missing, duplicate and
//! reordered datagrams, over a sliding window of recent numbers.

use serde::Serialize;

const WINDOW: u64 = 4096;

/// Counts of sequence anomalies.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SequenceCounts {
    /// Numbers skipped and not (yet) seen.
    pub missing: u64,
    /// Numbers seen twice.
    pub duplicate: u64,
    /// Numbers that arrived after a higher one (and filled a gap).
    pub reordered: u64,
}

impl SequenceCounts {
    /// All anomalies together.
    pub fn total(&self) -> u64 {
        self.missing + self.duplicate + self.reordered
    }
}

/// Tracks a stream that starts at 0.
#[derive(Debug, Clone)]
pub struct SequenceChecker {
    next: u64,
    seen: Vec<u64>, // bitmap over [next - WINDOW, next)
    counts: SequenceCounts,
}

impl Default for SequenceChecker {
    fn default() -> Self {
        Self {
            next: 0,
            seen: vec![0; (WINDOW / 64) as usize],
            counts: SequenceCounts::default(),
        }
    }
}

impl SequenceChecker {
    fn bit(&mut self, seq: u64) -> (&mut u64, u64) {
        let i = (seq % WINDOW) as usize;
        (&mut self.seen[i / 64], 1 << (i % 64))
    }

    /// Records one datagram's number.
    pub fn observe(&mut self, seq: u64) {
        if seq >= self.next {
            // Clear the bits of the numbers now leaving the window behind.
            let gap = seq - self.next;
            self.counts.missing += gap;
            for s in self.next..=seq.min(self.next + WINDOW) {
                let (word, mask) = self.bit(s);
                *word &= !mask;
            }
            let (word, mask) = self.bit(seq);
            *word |= mask;
            self.next = seq + 1;
            return;
        }
        if self.next - seq > WINDOW {
            self.counts.duplicate += 1; // too old to tell: count it as a repeat
            return;
        }
        let (word, mask) = self.bit(seq);
        if *word & mask != 0 {
            self.counts.duplicate += 1;
        } else {
            *word |= mask;
            self.counts.reordered += 1;
            self.counts.missing = self.counts.missing.saturating_sub(1);
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> &SequenceCounts {
        &self.counts
    }

    /// The next number expected in order.
    pub fn next(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u64]) -> SequenceCounts {
        let mut c = SequenceChecker::default();
        for &s in seqs {
            c.observe(s);
        }
        c.counts().clone()
    }

    #[test]
    fn in_order_is_clean() {
        assert_eq!(run(&(0..10_000).collect::<Vec<_>>()).total(), 0);
    }

    #[test]
    fn gaps_repeats_and_late_arrivals() {
        let c = run(&[0, 1, 3, 4]);
        assert_eq!((c.missing, c.duplicate, c.reordered), (1, 0, 0));
        let c = run(&[0, 1, 3, 2, 4]);
        assert_eq!((c.missing, c.duplicate, c.reordered), (0, 0, 1));
        let c = run(&[0, 1, 1, 2, 0]);
        assert_eq!((c.missing, c.duplicate, c.reordered), (0, 2, 0));
        let c = run(&[5]);
        assert_eq!(c.missing, 5);
    }

    #[test]
    fn the_window_slides() {
        let mut c = SequenceChecker::default();
        c.observe(0);
        c.observe(10_000);
        c.observe(10_000 - 5); // inside the window: late arrival
        c.observe(1); // far behind: counted as a repeat
        let k = c.counts();
        assert_eq!((k.missing, k.reordered, k.duplicate), (9_998, 1, 1));
    }
}
