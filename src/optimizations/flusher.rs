//! The flusher: while data-port writes complete in KVM, a transmit kick
//! (TDMD) sits in the coalesced ring until something makes the vCPU exit.
//! This thread looks at the ring every [`POLL`] and kicks the vCPU when a
//! kick should go out: at once without send-combining, and with it when
//! [`Policy::limit`] kicks wait or the oldest has waited [`Policy::delay`].
//! The kick is the one exit such a transmit costs; the writes are replayed
//! in order on the vCPU thread before the kick is handled.

use super::coalesced::Ring;
use crate::devices::pcnet::registers::{CSR0_TDMD, DWIO_RAP, WIO_RAP, WIO_RDP};
use crate::vmm::kick::Kicker;
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
    /// Send-combining: flush at `limit` waiting kicks or after `delay`.
    Combine { limit: u32, delay: Duration },
}

/// The running flusher.
pub struct Flusher {
    policy: Arc<Mutex<Policy>>,
    stop: Arc<AtomicBool>,
    kicks: Arc<AtomicU64>,
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
    /// Starts looking at `ring` (of the NIC at `nic_base`), kicking through
    /// `kicker`.
    pub fn start(ring: Arc<Ring>, kicker: Kicker, nic_base: u16) -> std::io::Result<Self> {
        let policy = Arc::new(Mutex::new(Policy::Idle));
        let stop = Arc::new(AtomicBool::new(false));
        let kicks = Arc::new(AtomicU64::new(0));
        let (p, s, k) = (policy.clone(), stop.clone(), kicks.clone());
        let thread = std::thread::Builder::new()
            .name("flusher".into())
            .spawn(move || {
                let mut oldest: Option<Instant> = None;
                let mut kicked: Option<Instant> = None;
                while !s.load(Ordering::Acquire) {
                    let policy = *p.lock().unwrap_or_else(|e| e.into_inner());
                    if policy == Policy::Idle {
                        oldest = None;
                        std::thread::sleep(IDLE);
                        continue;
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
                            Policy::Combine { limit, delay } => {
                                w.kicks >= limit || since.elapsed() >= delay
                            }
                            _ => w.kicks > 0 || late,
                        } || late
                            || w.logged as u32 > ring.capacity() / 2;
                        // One kick per batch: the vCPU drains it soon.
                        let settled = kicked.is_none_or(|t| t.elapsed() >= RETRY);
                        if due && settled {
                            kicker.kick();
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
            thread: Some(thread),
        })
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
