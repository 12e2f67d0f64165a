//! Guest kernel time on hosts that emulate it (PVM): `kvm:kvm_emulate_insn`
//! fires once per emulated instruction with its bytes, which say what kind
//! of instruction it was. Tracing every one slows guest CPL0 code a lot, so
//! the collector traces the vCPU thread in short windows (50 ms a second)
//! and reports the mix, which the table uses to split the emulation row.
//! In the same windows it traces `kvm:kvm_pio` to see which ports the guest
//! touches (the paper counted accesses to the PIC). Its figures are
//! estimates and say so. The first window opens half a period after the
//! start, past the guest's boot, and only then are the tracepoints'
//! perf events opened: a run over before it (a guest that only says
//! hello) leaves no tracepoint to unregister, which costs a kernel grace
//! period at the end (about 45 ms here).

use super::live::Published;
use crate::profiler::tracepoints;
use perf_event::data::Record;
use perf_event::events::Tracepoint;
use perf_event::{Builder, SampleFlag};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Percent of the time traced by default: 20 ms a second. At 5% (50 ms a
/// second) the windows cost about 4% of nettest's throughput here.
pub const DEFAULT_DUTY_PCT: u8 = 2;
/// The longest window: its records must fit the ring between two drains.
const LONGEST_WINDOW: Duration = Duration::from_millis(50);

/// A window's length and how often one starts, for `duty_pct` percent of
/// the time traced: windows of `duty_pct` x 10 ms each second, up to 50 ms
/// long; beyond 5%, 50 ms windows more often (at 100%, back to back). The
/// first starts half a period in.
pub fn windows(duty_pct: u8) -> (Duration, Duration) {
    let pct = u32::from(duty_pct.clamp(1, 100));
    let window = (Duration::from_millis(10) * pct).min(LONGEST_WINDOW);
    (window, window * 100 / pct)
}
const TRACEPOINT: &str = "kvm/kvm_emulate_insn";
const PIO_TRACEPOINT: &str = "kvm/kvm_pio";

/// Which device family owns each port, for counting port accesses: the
/// VM builder fills it from its bus and the devices KVM emulates itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMap(Vec<(u16, u16, String)>);

impl PortMap {
    /// Adds ports `base..base + len` owned by `group`.
    pub fn add(&mut self, base: u16, len: u16, group: impl Into<String>) {
        self.0.push((base, len, group.into()));
    }

    /// The family that owns `port`, or `other`.
    pub fn group(&self, port: u16) -> &str {
        self.0
            .iter()
            .find(|(base, len, _)| port.wrapping_sub(*base) < *len)
            .map_or("other", |(_, _, g)| g.as_str())
    }
}

/// What an emulated instruction is, for the overhead table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsnClass {
    /// Would run natively if the guest kernel were not emulated.
    Ordinary,
    /// Privileged or sensitive (CR, MSR, descriptor tables, CLI/STI, HLT, CPUID).
    Privileged,
    /// Port I/O.
    Pio,
    /// IRET.
    Iret,
}

/// Classifies x86-64 instruction bytes.
pub fn classify(bytes: &[u8]) -> InsnClass {
    let mut i = 0;
    while i < bytes.len()
        && matches!(
            bytes[i],
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x40
                ..=0x4f
        )
    {
        i += 1;
    }
    match (bytes.get(i), bytes.get(i + 1)) {
        (Some(0xcf), _) => InsnClass::Iret,
        (Some(0xe4..=0xe7 | 0xec..=0xef | 0x6c..=0x6f), _) => InsnClass::Pio,
        (Some(0xfa | 0xfb | 0xf4), _) => InsnClass::Privileged,
        (Some(0x0f), Some(0x00 | 0x01 | 0x05..=0x09 | 0x20..=0x23 | 0x30 | 0x32 | 0xa2)) => {
            InsnClass::Privileged
        }
        _ => InsnClass::Ordinary,
    }
}

pub use profiles::inputs::EmulationSummary;

/// Brings the derived figures up to date (on the collector thread).
fn settle(s: &mut EmulationSummary) {
    if s.traced_seconds > 0.0 {
        s.estimated_per_second = (s.total() + s.lost) as f64 / s.traced_seconds;
    }
    s.cost_seconds = super::thread_cpu_seconds();
}

/// Offsets of `len` and `insn` in the tracepoint's raw record, from its
/// format file (the raw data starts with a 4-byte size the parser strips).
fn field_offsets() -> (usize, usize) {
    let offset = field_offset(TRACEPOINT);
    (
        offset("__u8 len;").unwrap_or(20),
        offset("insn[15]").unwrap_or(21),
    )
}

/// A finder of field offsets in a tracepoint's format file.
fn field_offset(tracepoint: &str) -> impl Fn(&str) -> Option<usize> {
    let path = tracepoints::tracefs().map(|t| t.join("events").join(tracepoint).join("format"));
    let text = path
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    move |field: &str| {
        text.lines()
            .find(|l| l.contains(field))
            .and_then(|l| l.split("offset:").nth(1))
            .and_then(|o| o.split(';').next())
            .and_then(|o| o.trim().parse().ok())
    }
}

/// A disabled sampler recording every hit of tracepoint `id` on thread
/// `tid` with its raw payload, into a ring of `ring` bytes.
fn raw_tracer(id: u64, tid: libc::pid_t, ring: usize) -> std::io::Result<perf_event::Sampler> {
    Builder::new(Tracepoint::with_id(id))
        .observe_pid(tid)
        .any_cpu()
        .include_kernel()
        .sample_period(1)
        .sample(SampleFlag::RAW)
        .enabled(false)
        .build()?
        .sampled(ring)
}

/// The window collector.
pub struct EmulationWindows {
    /// Dropped to stop the thread.
    stop: mpsc::Sender<()>,
    live: Published<EmulationSummary>,
    thread: JoinHandle<EmulationSummary>,
}

impl EmulationWindows {
    /// Starts tracing thread `tid` in windows, `duty_pct` percent of the
    /// time (see [`windows`]), reading `frames` (the frames the guest has
    /// sent so far) at each window's ends: a window slows the guest, so its
    /// instructions are counted against the frames sent in it.
    pub fn start(
        tid: libc::pid_t,
        ports: PortMap,
        duty_pct: u8,
        frames: Box<dyn Fn() -> u64 + Send>,
    ) -> Result<Self, String> {
        let (window, period) = windows(duty_pct);
        let id = tracepoints::id(TRACEPOINT).map_err(|e| e.to_string())?;
        let (len_at, insn_at) = field_offsets();
        // Port accesses in the same windows, where the tracepoint exists.
        let pio_field = field_offset(PIO_TRACEPOINT);
        let port_at = pio_field("int port;").unwrap_or(12);
        let rw_at = pio_field("int rw;").unwrap_or(8);
        let pio_id = tracepoints::id(PIO_TRACEPOINT).ok();
        // Dropped to stop: the thread's sleeps end at once.
        let (stop, stopped) = mpsc::channel::<()>();
        let live = Published::default();
        let publish = live.clone();
        let thread = std::thread::Builder::new()
            .name("profiler-emul".into())
            .spawn(move || {
                super::yield_to_measured_threads();
                let mut s = EmulationSummary::default();
                // Sleeps up to `d`; true once asked to stop.
                let rest = |d: Duration| {
                    !matches!(stopped.recv_timeout(d), Err(RecvTimeoutError::Timeout))
                };
                // The tracers, opened at the first window.
                let mut tracers = None;
                let mut stopping = rest(period / 2);
                while !stopping {
                    let t0 = Instant::now();
                    if tracers.is_none() {
                        match raw_tracer(id, tid, 4 << 20) {
                            Ok(t) => {
                                let pio = pio_id.and_then(|id| raw_tracer(id, tid, 1 << 20).ok());
                                tracers = Some((t, pio));
                            }
                            Err(e) => {
                                s.refused = Some(format!("perf events refused {TRACEPOINT}: {e}"));
                                settle(&mut s);
                                publish.publish(s.clone());
                                break;
                            }
                        }
                    }
                    let Some((sampler, pio)) = tracers.as_mut() else {
                        break;
                    };
                    let enabled = match crate::injected::perf_refused() {
                        Some(e) => Err(e),
                        None => sampler.enable(),
                    };
                    if let Err(e) = enabled {
                        s.refused = Some(format!(
                            "perf refused to enable the {TRACEPOINT} window after {} windows ({e})",
                            s.windows
                        ));
                        settle(&mut s);
                        publish.publish(s.clone());
                        break;
                    }
                    if let Some(p) = pio.as_mut() {
                        let _ = p.enable();
                    }
                    let frames0 = frames();
                    stopping = rest(window);
                    let _ = sampler.disable();
                    s.frames_in_windows += frames().saturating_sub(frames0);
                    if let Some(p) = pio.as_mut() {
                        let _ = p.disable();
                        while let Some(record) = p.next_record() {
                            if let Ok(Record::Sample(sample)) = record.parse_record() {
                                let field = |at: usize| {
                                    sample
                                        .raw()
                                        .and_then(|r| r.get(at..at + 4))
                                        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                                };
                                if let (Some(port), Some(rw)) = (field(port_at), field(rw_at)) {
                                    let port = port as u16;
                                    *s.pio_by_device
                                        .entry(ports.group(port).to_string())
                                        .or_insert(0) += 1;
                                    let (outs, ins) = s.pio_by_port.entry(port).or_default();
                                    // rw is 1 for a write (OUT).
                                    *if rw == 1 { outs } else { ins } += 1;
                                }
                            }
                        }
                    }
                    s.traced_seconds += t0.elapsed().as_secs_f64();
                    s.windows += 1;
                    while let Some(record) = sampler.next_record() {
                        match record.parse_record() {
                            Ok(Record::Sample(sample)) => {
                                let Some(raw) = sample.raw() else { continue };
                                let len = raw.get(len_at).copied().unwrap_or(0).min(15) as usize;
                                let bytes = raw.get(insn_at..insn_at + len).unwrap_or(&[]);
                                match classify(bytes) {
                                    InsnClass::Ordinary => s.ordinary += 1,
                                    InsnClass::Privileged => s.privileged += 1,
                                    InsnClass::Pio => s.pio += 1,
                                    InsnClass::Iret => s.iret += 1,
                                }
                            }
                            Ok(Record::Lost(l)) => s.lost += l.lost,
                            _ => {}
                        }
                    }
                    settle(&mut s);
                    publish.publish(s.clone());
                    // Sleep out the period, waking at once to stop.
                    stopping = stopping || rest(period.saturating_sub(t0.elapsed()));
                }
                settle(&mut s);
                if let Some((sampler, pio)) = tracers {
                    super::drop_side_by_side([Some(sampler), pio]);
                }
                s
            })
            .map_err(|e| format!("cannot start the emulation tracer: {e}"))?;
        Ok(Self { stop, live, thread })
    }

    /// The mix so far (published after every window).
    pub fn latest(&self) -> Option<EmulationSummary> {
        self.live.latest()
    }

    /// Stops and returns the mix.
    pub fn finish(self) -> EmulationSummary {
        drop(self.stop);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duty_cycles() {
        let ms = Duration::from_millis;
        assert_eq!(windows(2), (ms(20), ms(1000)));
        assert_eq!(windows(5), (ms(50), ms(1000)));
        assert_eq!(windows(10), (ms(50), ms(500)));
        assert_eq!(windows(100), (ms(50), ms(50)), "back to back");
        assert_eq!(windows(0), (ms(10), ms(1000)), "at least 1%");
    }

    #[test]
    fn port_groups() {
        let mut map = PortMap::default();
        map.add(0x20, 2, "pic");
        map.add(0xc000, 32, "nic");
        assert_eq!(map.group(0x21), "pic");
        assert_eq!(map.group(0xc01f), "nic");
        assert_eq!(map.group(0xc020), "other");
        assert_eq!(map.group(0x1f), "other");
    }

    #[test]
    fn instruction_classes() {
        assert_eq!(classify(&[0x48, 0xcf]), InsnClass::Iret, "iretq");
        assert_eq!(classify(&[0xee]), InsnClass::Pio, "out dx, al");
        assert_eq!(classify(&[0x66, 0xef]), InsnClass::Pio, "out dx, ax");
        assert_eq!(classify(&[0xe6, 0x80]), InsnClass::Pio, "out 0x80, al");
        assert_eq!(classify(&[0xfa]), InsnClass::Privileged, "cli");
        assert_eq!(classify(&[0x0f, 0x30]), InsnClass::Privileged, "wrmsr");
        assert_eq!(classify(&[0x0f, 0x01, 0x10]), InsnClass::Privileged, "lgdt");
        assert_eq!(
            classify(&[0x0f, 0x22, 0xd8]),
            InsnClass::Privileged,
            "mov cr3"
        );
        assert_eq!(classify(&[0x48, 0x89, 0xc8]), InsnClass::Ordinary, "mov");
        assert_eq!(classify(&[0x0f, 0x31]), InsnClass::Ordinary, "rdtsc");
        assert_eq!(classify(&[]), InsnClass::Ordinary);
    }
}
