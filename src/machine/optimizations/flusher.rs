//! The flusher: while data-port writes complete in KVM, a transmit kick
//! (TDMD) sits in the coalesced ring until something makes the vCPU exit.
//! This thread looks at the ring every [`POLL`] and kicks the vCPU when a
//! kick should go out: at once without send-combining, and with it when
//! [`Policy::limit`] kicks wait or the oldest has waited [`Policy::delay`].
//! The kick is the one exit such a transmit costs; the writes are replayed
//! in order on the vCPU thread before the kick is handled.

use super::coalesced::Ring;
use crate::machine::devices::pcnet::registers::{CSR0_TDMD, DWIO_RAP, WIO_RAP, WIO_RDP};
use crate::machine::vmnet::LinkCounters;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the ring is looked at while data-port writes are coalesced.
pub const POLL: Duration = Duration::from_micros(100);
/// How often it checks whether there is anything to do otherwise.
const IDLE: Duration = Duration::from_millis(20);
/// The longest a kick waits for the vCPU to drain before kicking again.
const RETRY: Duration = Duration::from_millis(1);
/// The longest any write with effects waits in the ring.
const EFFECT_DELAY: Duration = Duration::from_millis(1);

/// When to flush.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// Data-port writes exit: nothing to do.
    Idle,
    /// Flush as soon as a transmit kick is seen.
    Immediate,
    /// Send-combining: flush at `limit` waiting kicks or after `delay`;
    /// with `adaptive`, only while the guest exits often anyway (otherwise
    /// as `Immediate`).
    Combine {
        /// Kicks that may wait.
        limit: u32,
        /// How long the first may wait.
        delay: Duration,
        /// Only while the guest exits often anyway.
        adaptive: bool,
    },
}

/// The adaptive trigger: a decaying estimate of the guest's transmit rate;
/// combining pays off above `ON` frames a second (the 3-frame batch fills
/// well inside the delay bound) and costs latency below `OFF` (a lone
/// frame waits out the bound). It switches at most every `MIN_GAP`. The
/// paper estimated the exit rate; here that defeats itself, since
/// combining removes the very exits it would count.
struct Trigger {
    rate: f64,
    combining: bool,
    at: Instant,
    last_frames: u64,
    last_switch: Instant,
    switches: u64,
}

impl Trigger {
    const ON: f64 = 1500.0;
    const OFF: f64 = 750.0;
    const EVERY: Duration = Duration::from_millis(10);
    const MIN_GAP: Duration = Duration::from_millis(100);
    /// Weight of the newest 10 ms: the estimate forgets in about 50 ms.
    const ALPHA: f64 = 0.2;

    fn new(frames: u64) -> Self {
        let now = Instant::now();
        Trigger {
            rate: 0.0,
            combining: false,
            at: now,
            last_frames: frames,
            last_switch: now - Self::MIN_GAP,
            switches: 0,
        }
    }

    /// Folds in the frames transmitted so far and says whether to combine
    /// now.
    fn update(&mut self, frames: u64) -> bool {
        let dt = self.at.elapsed();
        if dt >= Self::EVERY {
            let sent = frames.saturating_sub(self.last_frames);
            let sample = sent as f64 / dt.as_secs_f64();
            self.rate = self.rate * (1.0 - Self::ALPHA) + sample * Self::ALPHA;
            self.at = Instant::now();
            self.last_frames = frames;
            let want = if self.combining {
                self.rate >= Self::OFF
            } else {
                self.rate > Self::ON
            };
            if want != self.combining && self.last_switch.elapsed() >= Self::MIN_GAP {
                self.combining = want;
                self.last_switch = Instant::now();
                self.switches += 1;
            }
        }
        self.combining
    }
}

/// The running flusher.
pub struct Flusher {
    policy: Arc<Mutex<Policy>>,
    stop: Arc<AtomicBool>,
    kicks: Arc<AtomicU64>,
    switches: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// What waits in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// Transmit kicks: RDP writes with TDMD set while RAP selects CSR0.
    pub kicks: u32,
    /// Writes with effects (every one but RAP writes): an interrupt
    /// enabled, an acknowledgement, a mask changed.
    pub effects: u32,
    /// Every logged write.
    pub logged: usize,
}

/// Looks at the ring of the NIC at `nic_base`. RAP is followed through the
/// ring; before the first RAP write it is taken to be 0 (drivers set RAP
/// before every RDP access).
pub fn waiting(ring: &Ring, nic_base: u16) -> Waiting {
    let mut rap = 0u16;
    let (mut kicks, mut effects) = (0, 0);
    let logged = ring.peek(|w| {
        let off = w.port.wrapping_sub(nic_base);
        let value = u16::from_le_bytes([w.data[0], w.data[1]]);
        if off == WIO_RAP || off == DWIO_RAP {
            rap = value & 0x7f;
            return;
        }
        effects += 1;
        if off == WIO_RDP && rap == 0 && value & CSR0_TDMD != 0 {
            kicks += 1;
        }
    });
    Waiting {
        kicks,
        effects,
        logged,
    }
}

impl Flusher {
    /// Starts looking at `ring` (of the NIC at `nic_base`), kicking the
    /// vCPU out of the guest with `kick`.
    pub fn start(
        ring: Arc<Ring>,
        kick: Box<dyn Fn() + Send>,
        nic_base: u16,
        link: Arc<LinkCounters>,
    ) -> std::io::Result<Self> {
        let policy = Arc::new(Mutex::new(Policy::Idle));
        let stop = Arc::new(AtomicBool::new(false));
        let kicks = Arc::new(AtomicU64::new(0));
        let switches = Arc::new(AtomicU64::new(0));
        let (p, s, k, sw) = (
            policy.clone(),
            stop.clone(),
            kicks.clone(),
            switches.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("flusher".into())
            .spawn(move || {
                let mut oldest: Option<Instant> = None;
                let mut kicked: Option<Instant> = None;
                let frames = || link.frames_written.load(Ordering::Relaxed);
                let mut trigger = Trigger::new(frames());
                while !s.load(Ordering::Acquire) {
                    let mut policy = *p.lock().unwrap_or_else(|e| e.into_inner());
                    if policy == Policy::Idle {
                        oldest = None;
                        std::thread::sleep(IDLE);
                        continue;
                    }
                    if let Policy::Combine { adaptive: true, .. } = policy {
                        let combine = trigger.update(frames());
                        sw.store(trigger.switches, Ordering::Relaxed);
                        if !combine {
                            policy = Policy::Immediate;
                        }
                    }
                    let w = waiting(&ring, nic_base);
                    if w.effects == 0 {
                        oldest = None;
                        kicked = None;
                    } else {
                        // Any write with effects goes out within the delay
                        // bound: an interrupt enabled by a logged write
                        // must not wait for the next exit, which a halted
                        // guest may never make.
                        let since = *oldest.get_or_insert_with(Instant::now);
                        let late = since.elapsed() >= EFFECT_DELAY;
                        let due = match policy {
                            Policy::Combine { limit, delay, .. } => {
                                w.kicks >= limit || since.elapsed() >= delay
                            }
                            _ => w.kicks > 0 || late,
                        } || late
                            || w.logged as u32 > ring.capacity() / 2;
                        // One kick per batch: the vCPU drains it soon.
                        let settled = kicked.is_none_or(|t| t.elapsed() >= RETRY);
                        if due && settled {
                            kick();
                            k.fetch_add(1, Ordering::Relaxed);
                            kicked = Some(Instant::now());
                        }
                    }
                    std::thread::sleep(POLL);
                }
            })?;
        Ok(Self {
            policy,
            stop,
            kicks,
            switches,
            thread: Some(thread),
        })
    }

    /// Times the adaptive trigger switched combining on or off.
    pub fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    /// Changes when it flushes.
    pub fn set(&self, policy: Policy) {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// Kicks it has sent.
    pub fn kicks(&self) -> u64 {
        self.kicks.load(Ordering::Relaxed)
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trigger_follows_the_transmit_rate_with_hysteresis() {
        let mut t = Trigger::new(0);
        let mut frames = 0u64;
        let mut run = |t: &mut Trigger, per_10ms: u64, ms: u64| {
            let mut on = false;
            for _ in 0..ms / 10 {
                std::thread::sleep(Duration::from_millis(10));
                frames += per_10ms;
                on = t.update(frames);
            }
            on
        };
        assert!(run(&mut t, 40, 300), "4000 frames/s: combine");
        assert!(run(&mut t, 10, 300), "1000/s is inside the band: stay on");
        assert!(!run(&mut t, 1, 300), "100/s: send at once");
        assert_eq!(t.switches, 2);
    }
}
