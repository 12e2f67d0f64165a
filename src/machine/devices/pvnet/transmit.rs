//! The pv-nic's transmit side: the thread that drains the transmit ring
//! into the backend, woken by the doorbell, and the completion interrupt
//! when the guest waits. It also publishes the host's `want` word in both
//! ring headers, so the guest's paths follow the toggle.

use super::{Area, Header, CONS, MAX_CHAIN, MORE, NOTIFY, PROD, WANT, WANT_IRQ};
use crate::machine::devices::irq::EdgeIrq;
use crate::machine::vmnet::{self, LinkCounters, SharedBackend, Switches};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

/// Frames shorter than an Ethernet header or longer than a full frame
/// without FCS are refused.
const MIN_FRAME: u32 = 14;
const MAX_FRAME: u32 = 1514;
/// Passes over the ring one wake-up makes at most.
const PASSES: u32 = 4;

/// The thread that drains the ring into the backend.
pub struct Drain {
    stop: Arc<AtomicBool>,
    /// The doorbell, rung once more to wake the thread for its stop.
    doorbell: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl Drain {
    /// Starts draining the ring registered at `area` into `backend`,
    /// counting frames in `link`, woken by `doorbell`, interrupting through
    /// `irq`. `switches.pv_want` says which NIC the guest should use; it
    /// is written into both rings' headers (the receive ring's is
    /// registered at `rx_area`).
    pub fn start(
        ram: GuestMemoryMmap,
        (area, rx_area): (Area, Area),
        backend: SharedBackend,
        link: Arc<LinkCounters>,
        switches: Arc<Switches>,
        doorbell: Arc<EventFd>,
        irq: Arc<EdgeIrq>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let bell = doorbell.clone();
        let thread = std::thread::Builder::new()
            .name("pvnet".into())
            .spawn(move || {
                let mut ring = Ring {
                    ram,
                    registered: area,
                    rx_area,
                    backend,
                    link,
                    switches,
                    irq,
                    cons: 0,
                    area: 0,
                    frame: Vec::with_capacity(MAX_FRAME as usize),
                };
                let mut more = false;
                while !stopping.load(Ordering::Acquire) {
                    // The want word follows the toggle within a wait. A
                    // serve cut short with work left goes on at once.
                    if !more {
                        let rang = wait(&doorbell, Duration::from_millis(10));
                        if rang > 0 {
                            ring.link.pv.doorbells.fetch_add(rang, Ordering::Relaxed);
                        }
                    }
                    more = ring.serve();
                    let ns = (crate::profiler::thread_cpu_seconds() * 1e9) as u64;
                    ring.link.pv.cpu_ns.store(ns, Ordering::Relaxed);
                }
            })?;
        Ok(Self {
            stop,
            doorbell: bell,
            thread: Some(thread),
        })
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.doorbell.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits up to `timeout` for the doorbell; returns how many times it rang.
fn wait(doorbell: &EventFd, timeout: Duration) -> u64 {
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(doorbell),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    if ready > 0 {
        doorbell.read().unwrap_or(0)
    } else {
        0
    }
}

/// The drain thread's view of the ring.
struct Ring {
    ram: GuestMemoryMmap,
    registered: Area,
    /// The receive ring's header, whose `want` this thread also writes.
    rx_area: Area,
    backend: SharedBackend,
    link: Arc<LinkCounters>,
    switches: Arc<Switches>,
    irq: Arc<EdgeIrq>,
    /// Entries consumed, as the host counts them.
    cons: u32,
    /// The header this thread last served (a new registration restarts).
    area: u64,
    frame: Vec<u8>,
}

impl Ring {
    fn header(&self) -> Header<'_> {
        Header {
            ram: &self.ram,
            at: self.area,
        }
    }

    fn load(&self, off: u64) -> Option<u32> {
        self.header().load(off)
    }

    fn store(&self, off: u64, v: u32) {
        self.header().store(off, v);
    }

    /// Publishes `want`, then drains everything posted: doorbells off while
    /// draining, back on once empty, and a last look so a frame posted
    /// just before they came back on is not left waiting. At most
    /// [`PASSES`] passes, so the thread still looks at its stop flag and
    /// the toggle while a guest keeps posting; returns whether work is
    /// left.
    fn serve(&mut self) -> bool {
        let want = u32::from(self.switches.pv_want.load(Ordering::Relaxed));
        let rx = self.rx_area.load(Ordering::Acquire);
        if rx != 0 {
            Header {
                ram: &self.ram,
                at: rx,
            }
            .store(WANT, want);
        }
        let area = self.registered.load(Ordering::Acquire);
        if area != self.area {
            self.area = area;
            if area != 0 {
                // A new ring starts where the guest says it is.
                self.cons = self.load(PROD).unwrap_or(0);
                self.store(CONS, self.cons);
                self.store(NOTIFY, 1);
            }
        }
        if self.area == 0 {
            return false;
        }
        self.store(WANT, want);
        let Some(size) = self.header().size() else {
            return false; // not set up yet, or nonsense: nothing to drain
        };
        let before = self.cons;
        let mut more = false;
        for pass in 1..=PASSES {
            self.store(NOTIFY, 0);
            let progressed = self.drain(size);
            self.store(NOTIFY, 1);
            std::sync::atomic::fence(Ordering::SeqCst);
            // Stop once empty, or when what is posted is not a whole frame
            // (a chain the guest has not finished, or never will), or an
            // overrun was skipped.
            if !progressed || self.load(PROD) == Some(self.cons) {
                break;
            }
            more = pass == PASSES;
        }
        if self.cons != before && self.load(WANT_IRQ) == Some(1) {
            self.link.pv.irqs.fetch_add(1, Ordering::Relaxed);
            let _ = self.irq.trigger();
        }
        more
    }

    /// Sends every whole frame between `cons` and the guest's `prod`, one
    /// ring at most per pass; returns whether it consumed anything.
    fn drain(&mut self, size: u32) -> bool {
        let Some(prod) = self.load(PROD) else {
            return false;
        };
        let mut pending = prod.wrapping_sub(self.cons);
        if pending > size {
            // More posted than the ring holds: a broken or hostile guest.
            // Skip to its producer rather than read entries twice.
            self.link.pv.overruns.fetch_add(1, Ordering::Relaxed);
            self.cons = prod;
            self.store(CONS, self.cons);
            return false;
        }
        let start = self.cons;
        while pending > 0 {
            let Some((n, whole)) = self.gather(size, pending) else {
                break; // the rest of the chain is not posted yet
            };
            if whole {
                self.link.pv.frames.fetch_add(1, Ordering::Relaxed);
                // Locked per frame: the vCPU thread polls and transmits
                // through the same backend, and a paced one sleeps.
                let mut backend = self.backend.lock().unwrap_or_else(|e| e.into_inner());
                vmnet::send_counted(&mut **backend, &self.link, &self.frame);
            } else {
                self.link.pv.bad_entries.fetch_add(1, Ordering::Relaxed);
            }
            self.cons = self.cons.wrapping_add(n);
            // Entries go back at once, so the guest can reuse them early.
            self.store(CONS, self.cons);
            pending -= n;
        }
        self.cons != start
    }

    /// Gathers the frame whose chain starts at `cons` into `frame`: its
    /// entries (each but the last flagged [`MORE`]) and whether they made
    /// a frame (inside RAM, [`MAX_CHAIN`] entries at most, a length a frame
    /// can have). None while the chain's last entry is not among the
    /// `pending` posted.
    fn gather(&mut self, size: u32, pending: u32) -> Option<(u32, bool)> {
        self.frame.clear();
        let mut good = true;
        for n in 1..=pending {
            let slot = self.cons.wrapping_add(n - 1) & (size - 1);
            let read = self.header().entry(slot);
            let (addr, len, flags) = read
                .as_ref()
                .map_or((0, 0, 0), |e| (e.addr, e.len as usize, e.flags));
            let at = self.frame.len();
            good = good && read.is_some() && n <= MAX_CHAIN && at + len <= MAX_FRAME as usize;
            if good {
                self.frame.resize(at + len, 0);
                good = self
                    .ram
                    .read_slice(&mut self.frame[at..], GuestAddress(addr))
                    .is_ok();
            }
            if flags & MORE == 0 {
                return Some((n, good && self.frame.len() >= MIN_FRAME as usize));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ENTRY, HEADER, SIZE};
    use super::*;
    use crate::machine::vmnet::{Backend, SendError};
    use std::sync::Mutex;

    struct Collect(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Backend for Collect {
        fn name(&self) -> &'static str {
            "collect"
        }
        fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
            self.0.lock().unwrap().push(frame.to_vec());
            Ok(())
        }
    }

    fn setup() -> (GuestMemoryMmap, Ring, Arc<Mutex<Vec<Vec<u8>>>>) {
        let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let backend: SharedBackend = Arc::new(Mutex::new(Box::new(Collect(sent.clone()))));
        let area = Area::default();
        let link = Arc::new(LinkCounters::default());
        area.store(0x10000, Ordering::Relaxed);
        ram.write_obj(8u32, GuestAddress(0x10000 + SIZE)).unwrap();
        let ring = Ring {
            ram: ram.clone(),
            registered: area,
            rx_area: Area::default(),
            backend,
            link,
            switches: Arc::new(Switches::default()),
            irq: Arc::new(EdgeIrq::Irqfd(EventFd::new(0).unwrap())),
            cons: 0,
            area: 0,
            frame: Vec::new(),
        };
        (ram, ring, sent)
    }

    fn post(ram: &GuestMemoryMmap, prod: u32, addr: u64, len: u32) {
        post_flagged(ram, prod, addr, len, 0);
    }

    fn post_flagged(ram: &GuestMemoryMmap, prod: u32, addr: u64, len: u32, flags: u32) {
        let e = 0x10000 + HEADER + u64::from(prod % 8) * ENTRY;
        ram.write_obj(addr, GuestAddress(e)).unwrap();
        ram.write_obj(len, GuestAddress(e + 8)).unwrap();
        ram.write_obj(flags, GuestAddress(e + 12)).unwrap();
        ram.write_obj(prod + 1, GuestAddress(0x10000 + PROD))
            .unwrap();
    }

    #[test]
    fn chains_are_gathered_and_unfinished_ones_wait() {
        let (ram, mut ring, sent) = setup();
        ring.serve();
        ram.write_slice(&[1; 50], GuestAddress(0x20000)).unwrap();
        ram.write_slice(&[2; 100], GuestAddress(0x30000)).unwrap();
        post_flagged(&ram, 0, 0x20000, 50, MORE);
        ring.serve();
        assert!(sent.lock().unwrap().is_empty(), "half a chain is not sent");
        assert_eq!(ring.cons, 0);
        post(&ram, 1, 0x30000, 100);
        ring.serve();
        let frame = sent.lock().unwrap()[0].clone();
        assert_eq!(frame.len(), 150);
        assert!(frame[..50].iter().all(|&b| b == 1) && frame[50..].iter().all(|&b| b == 2));
        // A chain over a full frame is refused whole; a ring of MORE
        // entries never ends and is left alone.
        for i in 2..5 {
            post_flagged(&ram, i, 0x20000, 1000, MORE);
        }
        post(&ram, 5, 0x20000, 1000);
        ring.serve();
        assert_eq!(ring.link.pv.bad_entries.load(Ordering::Relaxed), 1);
        assert_eq!(ring.cons, 6);
        for i in 6..14 {
            post_flagged(&ram, i, 0x20000, 10, MORE);
        }
        ring.serve();
        assert_eq!(ring.cons, 6, "a chain without an end is not consumed");
    }

    #[test]
    fn frames_posted_are_sent_in_order_and_returned() {
        let (ram, mut ring, sent) = setup();
        ring.serve();
        for i in 0..5u32 {
            ram.write_slice(&[i as u8; 60], GuestAddress(0x20000 + u64::from(i) * 0x800))
                .unwrap();
            post(&ram, i, 0x20000 + u64::from(i) * 0x800, 60);
        }
        ring.serve();
        let sent = sent.lock().unwrap();
        assert_eq!(sent.len(), 5);
        assert!(sent
            .iter()
            .enumerate()
            .all(|(i, f)| f == &vec![i as u8; 60]));
        let cons: u32 = ram.read_obj(GuestAddress(0x10000 + CONS)).unwrap();
        assert_eq!(cons, 5);
        let notify: u32 = ram.read_obj(GuestAddress(0x10000 + NOTIFY)).unwrap();
        assert_eq!(notify, 1, "doorbells back on once drained");
        assert_eq!(ring.link.frames_written.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn wild_entries_and_runaway_producers_are_counted_not_followed() {
        let (ram, mut ring, sent) = setup();
        ring.serve();
        post(&ram, 0, 1 << 40, 60); // outside RAM
        post(&ram, 1, 0x20000, 0); // no frame
        post(&ram, 2, 0x20000, 1 << 30); // absurd length
        post(&ram, 3, (1 << 20) - 10, 60); // runs off the end of RAM
        ring.serve();
        assert!(sent.lock().unwrap().is_empty());
        assert_eq!(ring.link.pv.bad_entries.load(Ordering::Relaxed), 4);
        // A producer a million entries ahead is skipped to, not walked.
        ram.write_obj(1_000_000u32, GuestAddress(0x10000 + PROD))
            .unwrap();
        ring.serve();
        assert_eq!(ring.link.pv.overruns.load(Ordering::Relaxed), 1);
        assert_eq!(ring.cons, 1_000_000);
    }
}
