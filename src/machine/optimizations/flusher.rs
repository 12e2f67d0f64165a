//! The flusher: while data-port writes complete in KVM, a transmit kick
//! (TDMD) sits in the coalesced ring until something makes the vCPU exit.
//! This thread kicks the vCPU when a kick should go out: at once without
//! send-combining, and with it when [`Policy::limit`] kicks wait or the
//! oldest has waited [`Policy::delay`]. The kick is the one exit such a
//! transmit costs; the writes are replayed in order on the vCPU thread
//! before the kick is handled.
//!
//! Writes with effects but no kick (an acknowledgement, INEA back on after
//! an interrupt handler) need no exit: the flusher replays them itself,
//! under the NIC's lock, as the I/O thread does at an EOI.
//!
//! KVM says nothing when it logs a write, so the flusher learns of one from
//! the kernel's `kvm_pio` tracepoint on the vCPU thread, filtered to
//! data-port writes with TDMD or INEA set (a kick, or the write that ends
//! an interrupt handler and that a halting guest waits behind): while no
//! write with effects waits it sleeps until one comes, and costs no CPU;
//! while one waits it looks every [`POLL`]. Where the tracepoint cannot be
//! watched (no tracefs, perf refused) it looks every [`POLL`] throughout.

use super::coalesced::Ring;
use crate::machine::devices::pcnet::registers::{CSR0_INEA, CSR0_TDMD, DWIO_RAP, WIO_RAP, WIO_RDP};
use crate::machine::vmnet::LinkCounters;
use crate::profiler::tracepoints::{self, Watch};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// How often the ring is looked at while data-port writes are coalesced,
/// where no tracepoint tells of kicks.
pub const POLL: Duration = Duration::from_micros(100);
/// How often it looks with nothing to wake it: data-port writes exit
/// (without a tracepoint), or nothing waits in the ring (with one).
const IDLE: Duration = Duration::from_millis(50);
/// The tracepoint fires as KVM starts the write, before it is logged: a
/// wake-up that finds nothing looks again this much later, [`SETTLES`]
/// times at most.
const SETTLE: Duration = Duration::from_micros(20);
const SETTLES: u32 = 5;
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
    /// Wakes the thread for a new policy or the stop.
    wake: Arc<EventFd>,
    kicks: Arc<AtomicU64>,
    switches: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// What the flusher acts through.
pub struct Reach {
    /// Brings the vCPU out of the guest: it replays the ring, then handles
    /// the kick (the one exit a transmit costs).
    pub kick: Box<dyn Fn() + Send>,
    /// Replays the ring on the calling thread, under the NIC's lock.
    pub replay: Box<dyn Fn() + Send>,
    /// The vCPU thread, whose port writes are watched.
    pub vcpu: libc::pid_t,
}

/// The filter that keeps the writes the flusher wakes for, of the NIC at
/// `nic_base`: word writes to its data port with TDMD or INEA set
/// (whatever CSR RAP selects; another CSR's write with those bits only
/// wakes the flusher to find nothing due).
fn wake_filter(nic_base: u16) -> String {
    format!(
        "rw == 1 && port == {} && (val & {})",
        nic_base + WIO_RDP,
        CSR0_TDMD | CSR0_INEA
    )
}

/// What wakes the thread: the kick tracepoint (enabled only while writes
/// are coalesced, so exiting kicks cost nothing) and the wake eventfd.
struct Sleep {
    watch: Option<Watch>,
    watching: bool,
    wake: Arc<EventFd>,
}

impl Sleep {
    /// Watches for kicks only while `on`.
    fn watch(&mut self, on: bool) {
        if on == self.watching {
            return;
        }
        if let Some(w) = self.watch.as_mut() {
            if w.enable(on).is_ok() {
                self.watching = on;
            }
        }
    }

    /// Sleeps until a watched write, a wake, or `timeout`; true when a
    /// watched write woke it.
    fn until(&mut self, timeout: Duration) -> bool {
        let watch = self
            .watch
            .as_ref()
            .filter(|_| self.watching)
            .map_or(-1, Watch::fd);
        let mut pfds = [watch, self.wake.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: two valid pollfds (poll ignores a negative fd) and a
        // timespec, all alive for the duration of the call.
        unsafe { libc::ppoll(pfds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
        if pfds[1].revents & libc::POLLIN != 0 {
            let _ = self.wake.read();
        }
        if let Some(w) = self.watch.as_mut() {
            w.clear();
        }
        pfds[0].revents & libc::POLLIN != 0
    }

    /// Whether kicks wake it (else it must poll).
    fn told(&self) -> bool {
        self.watch.is_some()
    }
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

/// When what waits must go out, at the latest: at once for a kick without
/// combining, at the combining limit or bound with it, and any write with
/// effects within [`EFFECT_DELAY`] of the oldest (`since`), or at once
/// when the ring (of `capacity` entries) is half full. An interrupt enabled
/// by a logged write must not wait for the next exit, which a halted guest
/// may never make.
fn due(policy: Policy, w: Waiting, since: Instant, now: Instant, capacity: u32) -> Instant {
    let late = since + EFFECT_DELAY;
    if w.logged as u32 > capacity / 2 {
        return now;
    }
    let wanted = match policy {
        Policy::Combine { limit, delay, .. } if w.kicks < limit => since + delay,
        Policy::Combine { .. } => now,
        _ if w.kicks > 0 => now,
        _ => late,
    };
    wanted.min(late)
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
    /// Starts looking at `ring` (of the NIC at `nic_base`), acting
    /// through `reach`.
    pub fn start(
        ring: Arc<Ring>,
        reach: Reach,
        nic_base: u16,
        link: Arc<LinkCounters>,
    ) -> std::io::Result<Self> {
        let policy = Arc::new(Mutex::new(Policy::Idle));
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
        let kicks = Arc::new(AtomicU64::new(0));
        let switches = Arc::new(AtomicU64::new(0));
        let mut sleep = Sleep {
            watch: Watch::open(reach.vcpu, tracepoints::PIO, &wake_filter(nic_base)).ok(),
            watching: true,
            wake: wake.clone(),
        };
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
                // Looks left for a watched write not yet found in the ring.
                let mut unseen = 0;
                while !s.load(Ordering::Acquire) {
                    let mut policy = *p.lock().unwrap_or_else(|e| e.into_inner());
                    sleep.watch(policy != Policy::Idle);
                    if policy == Policy::Idle {
                        oldest = None;
                        unseen = 0;
                        sleep.until(IDLE);
                        continue;
                    }
                    if let Policy::Combine { adaptive: true, .. } = policy {
                        let combine = trigger.update(frames());
                        sw.store(trigger.switches, Ordering::Relaxed);
                        if !combine {
                            policy = Policy::Immediate;
                        }
                    }
                    let mut w = waiting(&ring, nic_base);
                    let found = w.logged > 0;
                    if w.kicks == 0 && w.effects > 0 {
                        // Effects without a kick need no exit.
                        (reach.replay)();
                        w = waiting(&ring, nic_base);
                    }
                    let now = Instant::now();
                    // The next thing to do, if anything waits.
                    let mut next = None;
                    if found {
                        unseen = 0;
                    }
                    if w.effects == 0 {
                        oldest = None;
                        kicked = None;
                        if unseen > 0 {
                            unseen -= 1;
                            next = Some(now + SETTLE);
                        }
                    } else {
                        let since = *oldest.get_or_insert(now);
                        let due = due(policy, w, since, now, ring.capacity());
                        // One kick per batch: the vCPU drains it soon.
                        let at = due.max(kicked.map_or(now, |t| t + RETRY));
                        if at <= now {
                            (reach.kick)();
                            k.fetch_add(1, Ordering::Relaxed);
                            kicked = Some(now);
                            next = Some(now + RETRY);
                        } else {
                            next = Some(at);
                        }
                    }
                    // While writes with effects wait, look every POLL: the
                    // tracepoint fires before KVM logs the write, and a
                    // write logged late must not wait for the next wake-up
                    // (without this, pingpong under paper saw 20-50 ms
                    // stalls). Address writes alone need nothing.
                    let look = if sleep.told() && w.effects == 0 {
                        IDLE
                    } else {
                        POLL
                    };
                    let until = next.map_or(look, |t| t.saturating_duration_since(Instant::now()));
                    if sleep.until(until.min(look)) {
                        unseen = SETTLES;
                    }
                }
            })?;
        Ok(Self {
            policy,
            stop,
            wake,
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
        let _ = self.wake.write(1);
    }

    /// Kicks it has sent.
    pub fn kicks(&self) -> u64 {
        self.kicks.load(Ordering::Relaxed)
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.write(1);
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
