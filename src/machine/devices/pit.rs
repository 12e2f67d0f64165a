//! The user-space 8254 timer used with `kernel-irqchip` off. Channel 0
//! raises IRQ 0 on the user-space 8259 at the rate the guest programs: a
//! POSIX timer sends the kick signal to the vCPU thread each period (a host
//! hrtimer, no thread of our own), and the vCPU's device poll that follows
//! pulses the line. Channels 1 and 2 count but interrupt nothing.

use super::bus::{BusAction, PioDevice};
use super::pic::{self, SharedPic};
use std::io;
use std::time::{Duration, Instant};

/// The timer's ports: three counters and the mode register.
pub const PORT: u16 = 0x40;
/// See [`PORT`].
pub const PORTS: u16 = 4;
/// Port B of the PC's 8255 (channel 2's gate and the speaker), which KVM's
/// in-kernel 8254 answers too.
pub const SPEAKER: u16 = 0x61;
/// The 8254's input clock.
const HZ: u128 = 1_193_182;
const IRQ: u32 = 0;
/// The shortest period channel 0 interrupts at, as KVM's own PIT clamps
/// it (its min_timer_period_us): a guest asking for 1.19 MHz would
/// otherwise have the vCPU thread signalled a million times a second.
const MIN_PERIOD: Duration = Duration::from_micros(200);

/// One counter.
#[derive(Debug, Clone, Copy)]
struct Channel {
    /// The count it reloads (1 to 65536).
    reload: u32,
    mode: u8,
    /// 1 low byte, 2 high byte, 3 low then high.
    access: u8,
    /// The low byte of a count being written.
    low: Option<u8>,
    /// A latched count, and whether its low byte has been read.
    latched: Option<(u16, bool)>,
    /// The next unlatched read of a 16-bit count returns the high byte.
    read_high: bool,
    /// When the count was loaded; None while it waits for one.
    loaded: Option<Instant>,
}

impl Default for Channel {
    fn default() -> Self {
        Self {
            reload: 0x1_0000,
            mode: 0,
            access: 3,
            low: None,
            latched: None,
            read_high: false,
            loaded: None,
        }
    }
}

impl Channel {
    fn period(&self) -> Duration {
        Duration::from_nanos((u128::from(self.reload) * 1_000_000_000 / HZ) as u64)
    }

    /// The count at `now`: modes 2 and 3 count down and reload, the others
    /// stop at zero.
    fn count(&self, now: Instant) -> u16 {
        let Some(loaded) = self.loaded else {
            return self.reload as u16;
        };
        let ticks = now.duration_since(loaded).as_nanos() * HZ / 1_000_000_000;
        let reload = u128::from(self.reload);
        let left = match self.mode {
            2 | 3 => reload - ticks % reload,
            _ => reload.saturating_sub(ticks),
        };
        left as u16 // 65536 reads as 0, as on the chip
    }

    fn read(&mut self, now: Instant) -> u8 {
        let (value, high) = match self.latched {
            Some((v, low_read)) => {
                let high = self.access == 2 || (self.access == 3 && low_read);
                if self.access == 3 && !low_read {
                    self.latched = Some((v, true));
                } else {
                    self.latched = None;
                }
                (v, high)
            }
            None => {
                let high = self.access == 2 || (self.access == 3 && self.read_high);
                if self.access == 3 {
                    self.read_high = !self.read_high;
                }
                (self.count(now), high)
            }
        };
        if high {
            (value >> 8) as u8
        } else {
            value as u8
        }
    }

    /// A data-port write; true when it completed a count.
    fn write(&mut self, v: u8) -> bool {
        let count = match (self.access, self.low.take()) {
            (1, _) => u32::from(v),
            (2, _) => u32::from(v) << 8,
            (_, None) => {
                self.low = Some(v);
                return false;
            }
            (_, Some(low)) => u32::from(low) | u32::from(v) << 8,
        };
        self.reload = if count == 0 { 0x1_0000 } else { count };
        true
    }
}

/// A POSIX timer that sends a signal to the thread that made it.
struct SignalTimer(libc::timer_t);

// SAFETY: a timer_t is a kernel timer ID, usable from any thread.
unsafe impl Send for SignalTimer {}

impl SignalTimer {
    fn for_this_thread(signal: libc::c_int) -> io::Result<Self> {
        // SAFETY: an all-zero sigevent is valid; the fields that matter are
        // set below.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal;
        // SAFETY: gettid has no preconditions.
        event.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to a sigevent and a timer_t for the call.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(id))
    }

    /// Fires after `first` and then every `every` (never again, if zero).
    fn set(&self, first: Duration, every: Duration) -> io::Result<()> {
        let ts = |d: Duration| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_value: ts(first.max(Duration::from_nanos(1))),
            it_interval: ts(every),
        };
        // SAFETY: the timer exists until Drop; a valid itimerspec.
        match unsafe { libc::timer_settime(self.0, 0, &spec, std::ptr::null_mut()) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

impl Drop for SignalTimer {
    fn drop(&mut self) {
        // SAFETY: the timer was created by timer_create and is deleted once.
        unsafe { libc::timer_delete(self.0) };
    }
}

/// What the timer has done, for the run's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PitStats {
    /// IRQ 0 edges raised.
    pub ticks: u64,
    /// Periods that passed with no poll to raise them (coalesced).
    pub missed: u64,
}

/// The 8254 on the bus.
pub struct Pit {
    channels: [Channel; 3],
    pic: SharedPic,
    /// The next IRQ 0 edge, and the period after it (zero: one-shot).
    next: Option<(Instant, Duration)>,
    /// The signal that kicks the vCPU thread at each deadline (none in unit
    /// tests, where no thread handles it).
    signal: Option<libc::c_int>,
    timer: Option<SignalTimer>,
    stats: PitStats,
}

impl Pit {
    /// A timer interrupting on `pic`'s IRQ 0; with `signal`, the thread
    /// that programs it (the vCPU's) is sent it at every deadline.
    pub fn new(pic: SharedPic, signal: Option<libc::c_int>) -> Self {
        Self {
            channels: [Channel::default(); 3],
            pic,
            next: None,
            signal,
            timer: None,
            stats: PitStats::default(),
        }
    }

    /// What it has done so far.
    pub fn stats(&self) -> PitStats {
        self.stats
    }

    /// Channel 0 got a count (or a mode): interrupts from now on.
    fn arm(&mut self, now: Instant) {
        let c = &self.channels[0];
        let period = c.period().max(MIN_PERIOD);
        let every = match c.mode {
            2 | 3 => period,
            _ => Duration::ZERO,
        };
        self.next = c.loaded.map(|t| (t + period, every));
        let Some(signal) = self.signal else {
            return;
        };
        if self.timer.is_none() {
            // Without the timer the guest still gets ticks at its exits
            // and at the watchdog's kicks, only late.
            self.timer = SignalTimer::for_this_thread(signal).ok();
        }
        if let Some(t) = &self.timer {
            let first = self.next.map_or(Duration::ZERO, |(at, _)| at - now);
            let _ = t.set(first, every);
        }
    }

    fn disarm(&mut self) {
        self.next = None;
        self.timer = None; // deleting the timer stops its signals
    }

    /// Raises IRQ 0 if a deadline has passed by `now`.
    pub fn tick(&mut self, now: Instant) {
        let Some((at, every)) = self.next else {
            return;
        };
        if now < at {
            return;
        }
        pic::lock(&self.pic).pulse(IRQ);
        self.stats.ticks += 1;
        if every.is_zero() {
            self.next = None;
            return;
        }
        let behind = (now.duration_since(at).as_nanos() / every.as_nanos()) as u32;
        self.stats.missed += u64::from(behind);
        self.next = Some((at + every * (behind + 1), every));
    }

    fn write_mode(&mut self, v: u8, now: Instant) {
        let ch = usize::from(v >> 6);
        if ch == 3 {
            // Read-back: latch the counts of the channels selected.
            if v & 0x20 == 0 {
                for (i, c) in self.channels.iter_mut().enumerate() {
                    if v & (2 << i) != 0 && c.latched.is_none() {
                        c.latched = Some((c.count(now), false));
                    }
                }
            }
            return;
        }
        let c = &mut self.channels[ch];
        match (v >> 4) & 3 {
            0 => {
                if c.latched.is_none() {
                    c.latched = Some((c.count(now), false));
                }
            }
            access => {
                c.access = access;
                c.mode = match (v >> 1) & 7 {
                    m @ 6..=7 => m - 4,
                    m => m,
                };
                c.low = None;
                c.latched = None;
                c.read_high = false;
                c.loaded = None;
                if ch == 0 {
                    self.disarm();
                }
            }
        }
    }
}

impl PioDevice for Pit {
    fn name(&self) -> &'static str {
        "pit"
    }

    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0);
        if let Some(c) = self.channels.get_mut(usize::from(offset)) {
            data[0] = c.read(Instant::now());
        } else {
            data[0] = 0xff; // the mode register cannot be read
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        let now = Instant::now();
        match usize::from(offset) {
            3 => self.write_mode(data[0], now),
            ch => {
                let c = &mut self.channels[ch];
                if c.write(data[0]) {
                    c.loaded = Some(now);
                    if ch == 0 {
                        self.arm(now);
                    }
                }
            }
        }
        BusAction::None
    }

    fn catch_up(&mut self) {
        self.tick(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn with_pic() -> (Pit, SharedPic) {
        let p: SharedPic = Arc::new(Mutex::new(pic::Pic::default()));
        for (port, v) in [(0x20, 0x13), (0x21, 32), (0x21, 1), (0x21, 0)] {
            pic::lock(&p).write(port, v);
        }
        (Pit::new(p.clone(), None), p)
    }

    /// The guest runtime's programming: channel 0, low/high, rate
    /// generator, 100 Hz.
    fn program_100hz(pit: &mut Pit) -> Instant {
        pit.write(3, &[0x34]);
        let divisor: u16 = 11931;
        pit.write(0, &[divisor as u8]);
        let before = Instant::now();
        pit.write(0, &[(divisor >> 8) as u8]);
        before
    }

    #[test]
    fn channel0_ticks_at_the_programmed_rate() {
        let (mut pit, p) = with_pic();
        let t0 = program_100hz(&mut pit);
        pit.tick(t0);
        assert!(!pic::lock(&p).pending(), "no tick before the first period");
        pit.tick(t0 + Duration::from_millis(11));
        assert_eq!(pic::lock(&p).acknowledge(), 32);
        pic::lock(&p).write(0x20, 0x20);
        pit.tick(t0 + Duration::from_millis(15));
        assert!(!pic::lock(&p).pending(), "one tick per period");
        pit.tick(t0 + Duration::from_millis(55));
        assert_eq!(
            pit.stats(),
            PitStats {
                ticks: 2,
                missed: 3
            }
        );
    }

    #[test]
    fn a_count_of_one_interrupts_no_faster_than_kvms_own_pit() {
        let (mut pit, _) = with_pic();
        pit.write(3, &[0x34]);
        pit.write(0, &[1]);
        let t0 = Instant::now();
        pit.write(0, &[0]);
        for us in 0..=100_000 {
            pit.tick(t0 + Duration::from_micros(us));
        }
        assert!(pit.stats().ticks <= 501, "{:?}", pit.stats());
    }

    #[test]
    fn counts_read_back_through_the_latch_low_byte_first() {
        let (mut pit, _) = with_pic();
        program_100hz(&mut pit);
        pit.write(3, &[0x00]); // latch channel 0
        let mut b = [0u8; 1];
        pit.read(0, &mut b);
        let low = b[0];
        pit.read(0, &mut b);
        let count = u16::from(low) | u16::from(b[0]) << 8;
        assert!((1..=11931).contains(&count), "count {count}");
    }

    #[test]
    fn a_new_mode_stops_channel0_until_a_count_is_written() {
        let (mut pit, p) = with_pic();
        let t0 = program_100hz(&mut pit);
        pit.write(3, &[0x30]); // mode 0, waiting for a count
        pit.tick(t0 + Duration::from_secs(1));
        assert!(!pic::lock(&p).pending());
        pit.write(0, &[0x10]);
        pit.write(0, &[0x00]); // one-shot, 16 ticks
        let t1 = Instant::now();
        pit.tick(t1 + Duration::from_millis(1));
        pit.tick(t1 + Duration::from_millis(2));
        assert_eq!(pit.stats().ticks, 1, "mode 0 fires once");
    }
}
