//! A run over time: each sample's moment and stack, the one-second series
//! of throughput and exits, and the moments worth marking (toggles,
//! resets, baselines, guest phases). `record` keeps it in a saved profile
//! (format version 2) so exports can show a real timeline.

use serde::{Deserialize, Serialize};

/// One point of the time series, over the interval that ends at `t`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Point {
    /// Seconds since the run started.
    pub t: f64,
    /// Goodput the peer received, Mb/s.
    pub mbps: f64,
    /// Datagrams the peer received per second.
    pub frames_per_sec: f64,
    /// Exits to user space per second for port I/O.
    pub pio_exits_per_sec: f64,
    /// Exits to user space per second for MMIO.
    pub mmio_exits_per_sec: f64,
    /// Exits to user space per second for kicks (host events, pauses).
    pub kick_exits_per_sec: f64,
    /// Other exits to user space per second.
    pub other_exits_per_sec: f64,
    /// Port writes KVM completed without an exit, per second.
    #[serde(default)]
    pub in_kernel_writes_per_sec: f64,
}

impl Point {
    /// Exits to user space per second, of every kind.
    pub fn exits_per_sec(&self) -> f64 {
        self.pio_exits_per_sec
            + self.mmio_exits_per_sec
            + self.kick_exits_per_sec
            + self.other_exits_per_sec
    }

    /// The mean of `points` (intervals of equal length), at the last one's
    /// time.
    pub fn mean(points: &[Point]) -> Point {
        let n = points.len().max(1) as f64;
        let sum = |f: fn(&Point) -> f64| points.iter().map(f).sum::<f64>() / n;
        Point {
            t: points.last().map_or(0.0, |p| p.t),
            mbps: sum(|p| p.mbps),
            frames_per_sec: sum(|p| p.frames_per_sec),
            pio_exits_per_sec: sum(|p| p.pio_exits_per_sec),
            mmio_exits_per_sec: sum(|p| p.mmio_exits_per_sec),
            kick_exits_per_sec: sum(|p| p.kick_exits_per_sec),
            other_exits_per_sec: sum(|p| p.other_exits_per_sec),
            in_kernel_writes_per_sec: sum(|p| p.in_kernel_writes_per_sec),
        }
    }
}

/// `points` (in time order) averaged over the whole seconds they fall in:
/// one point a second, at the time of its last point.
pub fn per_second(points: &[Point]) -> Vec<Point> {
    points
        .chunk_by(|a, b| a.t.floor() == b.t.floor())
        .map(Point::mean)
        .collect()
}

/// A moment worth marking on the charts (an optimization toggled, a
/// baseline marked, counters reset).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mark {
    /// Seconds since the run started.
    pub t: f64,
    /// What happened.
    pub label: String,
}

/// A guest phase, from its begin message to its end message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    /// Its name.
    pub name: String,
    /// Its index.
    pub index: u64,
    /// When it began, seconds since the run started.
    pub start_s: f64,
    /// How long it took, seconds.
    pub seconds: f64,
}

/// Each sample's moment and stack, as two columns of equal length.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Samples {
    /// Milliseconds since the run started.
    pub t_ms: Vec<f64>,
    /// An index into [`Timeline::stacks`].
    pub stack: Vec<u32>,
}

/// A run over time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    /// The stacks samples name, `thread;world;row;frames...` as in the
    /// profile's `folded`.
    pub stacks: Vec<String>,
    /// Every sample, in time order.
    pub samples: Samples,
    /// Samples past the timeline's limit: counted in `folded`, not here.
    pub samples_left_out: u64,
    /// Throughput and exits, one point a second.
    pub seconds: Vec<Point>,
    /// Optimizations set and changed, resets, baselines, restarts.
    pub marks: Vec<Mark>,
    /// The guest's timed phases.
    pub phases: Vec<Phase>,
}

impl Timeline {
    /// Why the timeline is not one this build can read, if it is not.
    pub fn check(&self) -> Result<(), String> {
        let s = &self.samples;
        if s.t_ms.len() != s.stack.len() {
            return Err(format!(
                "its timeline has {} sample times but {} sample stacks",
                s.t_ms.len(),
                s.stack.len()
            ));
        }
        if let Some(i) = s.stack.iter().find(|&&i| i as usize >= self.stacks.len()) {
            return Err(format!(
                "a sample names stack {i} of {} in its timeline",
                self.stacks.len()
            ));
        }
        if s.t_ms.iter().any(|t| !t.is_finite()) {
            return Err("its timeline has a sample time that is not a number".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: f64, mbps: f64) -> Point {
        Point {
            t,
            mbps,
            pio_exits_per_sec: 2.0 * mbps,
            ..Point::default()
        }
    }

    #[test]
    fn points_average_over_the_seconds_they_fall_in() {
        let s = per_second(&[at(0.5, 10.0), at(0.9, 20.0), at(1.4, 30.0), at(3.0, 5.0)]);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].t, s[0].mbps, s[0].exits_per_sec()), (0.9, 15.0, 30.0));
        assert_eq!((s[1].t, s[1].mbps), (1.4, 30.0));
        assert_eq!((s[2].t, s[2].mbps), (3.0, 5.0));
        assert!(per_second(&[]).is_empty());
    }

    #[test]
    fn bad_indices_and_uneven_columns_are_refused() {
        let mut t = Timeline {
            stacks: vec![
                "vcpu;guest;guest_native".into(),
                "io;vmapp;io_wait;poll".into(),
            ],
            samples: Samples {
                t_ms: vec![0.0, 4.0, 8.0, 1000.0],
                stack: vec![0, 1, 0, 0],
            },
            ..Timeline::default()
        };
        assert_eq!(t.check(), Ok(()));
        t.samples.stack[3] = 2;
        assert!(t.check().unwrap_err().contains("stack 2 of 2"));
        t.samples.stack.pop();
        assert!(t.check().unwrap_err().contains("4 sample times but 3"));
    }
}
