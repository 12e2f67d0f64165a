//! `--link-rate`: a wire of limited speed in front of any backend, like the
//! paper's 100 Mb/s Ethernet. Each frame occupies the wire for its bits
//! (with preamble, FCS and inter-frame gap); the wire may run behind by a
//! backlog of `BACKLOG_FRAMES` full frames (the NIC's FIFO and ring), and a
//! sender that gets further ahead waits in the transmit path, as a guest
//! waits for a full transmit ring.

use super::{Backend, SendError};
use std::time::{Duration, Instant};

/// Full-size frames the wire may run behind before the sender waits.
pub const BACKLOG_FRAMES: u32 = 16;
/// Bytes a full frame occupies on the wire: 1514 + FCS 4 + preamble 8 +
/// gap 12.
const FULL_FRAME_WIRE_BYTES: u32 = 1538;

/// Parses a link rate: bits per second with an optional k, M or G suffix
/// (powers of ten), e.g. `100M`, `1G`, `512k`, `100Mbit`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("bit/s")
        .or_else(|| t.strip_suffix("bit"))
        .or_else(|| t.strip_suffix("bps"))
        .unwrap_or(t);
    let (number, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        Some((i, 'g' | 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let value: f64 = number.parse().map_err(|_| {
        format!("'{text}' is not a link rate: use bits per second like 100M, 1G or 512k")
    })?;
    let bits = value * scale;
    if !(1e3..=1e12).contains(&bits) {
        return Err(format!("'{text}' is out of range: use 1k to 1000G"));
    }
    Ok(bits as u64)
}

/// A backend behind a wire of `rate` bits per second.
pub struct Paced {
    inner: Box<dyn Backend>,
    rate: f64,
    wire_free: Instant,
    backlog: Duration,
}

impl Paced {
    /// Puts `inner` behind a wire of `rate_bps`.
    pub fn new(inner: Box<dyn Backend>, rate_bps: u64) -> Self {
        let rate = rate_bps as f64;
        let backlog =
            Duration::from_secs_f64(f64::from(BACKLOG_FRAMES * FULL_FRAME_WIRE_BYTES * 8) / rate);
        Self {
            inner,
            rate,
            wire_free: Instant::now(),
            backlog,
        }
    }

    /// How long `frame` occupies the wire.
    fn wire_time(&self, frame: &[u8]) -> Duration {
        let bytes = frame.len().max(60) + 4 + 8 + 12;
        Duration::from_secs_f64(bytes as f64 * 8.0 / self.rate)
    }
}

impl Backend for Paced {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn receive_ready(&mut self, max: usize, take: &mut dyn FnMut(&[u8])) -> u64 {
        self.inner.receive_ready(max, take)
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let now = Instant::now();
        let start = self.wire_free.max(now);
        self.wire_free = start + self.wire_time(frame);
        if let Some(ahead) = self.wire_free.checked_duration_since(now) {
            if ahead > self.backlog {
                std::thread::sleep(ahead - self.backlog);
            }
        }
        self.inner.send(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(u64);
    impl Backend for Count {
        fn name(&self) -> &'static str {
            "count"
        }
        fn send(&mut self, _: &[u8]) -> Result<(), SendError> {
            self.0 += 1;
            Ok(())
        }
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("100M"), Ok(100_000_000));
        assert_eq!(parse_rate("1G"), Ok(1_000_000_000));
        assert_eq!(parse_rate("512k"), Ok(512_000));
        assert_eq!(parse_rate("100Mbit"), Ok(100_000_000));
        assert_eq!(parse_rate("2.5G"), Ok(2_500_000_000));
        assert_eq!(parse_rate("64000"), Ok(64_000));
        assert!(parse_rate("fast").unwrap_err().contains("not a link rate"));
        assert!(parse_rate("1").unwrap_err().contains("out of range"));
    }

    #[test]
    fn a_full_wire_holds_the_sender_to_its_rate() {
        // 10 Mb/s: 200 full frames take 246 ms of wire time, of which the
        // first 16 may be backlog.
        let mut paced = Paced::new(Box::new(Count(0)), 10_000_000);
        let frame = vec![0u8; 1514];
        let t0 = Instant::now();
        for _ in 0..200 {
            paced.send(&frame).unwrap();
        }
        let took = t0.elapsed().as_secs_f64();
        let wire = 200.0 * 1538.0 * 8.0 / 10e6;
        let backlog = 16.0 * 1538.0 * 8.0 / 10e6;
        assert!(took >= wire - backlog - 0.002, "took {took}, wire {wire}");
    }
}
