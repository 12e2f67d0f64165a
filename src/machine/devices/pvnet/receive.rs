//! The pv-nic's receive ring, and the guest's receive path as the I/O
//! thread sees it: [`RxPath`] takes frames from the host and hands them to
//! the Lance or writes them straight into the buffers the guest posted on
//! the ring, whichever path the guest is on. The guest moves it with a
//! port write handled under the lock every delivery takes, so a frame goes
//! to exactly one path and the guest, draining the old path after its
//! write, sees them in order. While the ring has no buffer, frames wait
//! here in order (and the I/O thread stops reading the TAP, whose queue
//! holds the rest) until the guest's doorbell says it posted more: a
//! frame is received, or waits, or is dropped with a reason, never lost.

use super::{Area, Header, CONS, NOTIFY, PROD, WANT_IRQ};
use crate::machine::devices::irq::EdgeIrq;
use crate::machine::vmnet::{GuestRx, LinkCounters, Switches};
use crate::profiler::markers;
use profiles::taxonomy::Category;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

/// A filled entry's flag: the frame did not fit the buffer, or the buffer
/// was not in RAM; the frame was dropped.
pub const ERR: u32 = 1;

/// The guest's receive path: the Lance or the ring.
#[derive(Clone)]
pub struct RxPath(Arc<Shared>);

struct Shared {
    ram: GuestMemoryMmap,
    area: Area,
    lance: Box<dyn GuestRx>,
    state: Mutex<State>,
    /// Signalled by the receive doorbell (KVM's ioeventfd, or the port
    /// from user space) and by a move of the path: the I/O thread looks
    /// at what waits.
    room: EventFd,
    irq: Arc<EdgeIrq>,
    link: Arc<LinkCounters>,
    switches: Arc<Switches>,
}

struct State {
    on_ring: bool,
    /// The header this path last filled (a new registration restarts).
    at: u64,
    /// Buffers filled, as the host counts them.
    cons: u32,
    /// Frames for the ring that found no buffer yet, oldest first.
    waiting: VecDeque<Vec<u8>>,
}

impl RxPath {
    /// Receive on `lance` until the guest moves to the ring it registers,
    /// filling buffers in `ram`, interrupting through `irq`, counting in
    /// `link`; `switches.pv_rx` tells the threads that poll the host which
    /// path is in use.
    pub fn new(
        ram: GuestMemoryMmap,
        lance: Box<dyn GuestRx>,
        irq: Arc<EdgeIrq>,
        link: Arc<LinkCounters>,
        switches: Arc<Switches>,
    ) -> std::io::Result<Self> {
        Ok(Self(Arc::new(Shared {
            ram,
            area: Area::default(),
            lance,
            state: Mutex::new(State {
                on_ring: false,
                at: 0,
                cons: 0,
                waiting: VecDeque::new(),
            }),
            room: EventFd::new(libc::EFD_NONBLOCK)?,
            irq,
            link,
            switches,
        })))
    }

    /// Where the guest registered its receive ring.
    pub fn area(&self) -> Area {
        self.0.area.clone()
    }

    /// The receive doorbell, for KVM to signal as an ioeventfd.
    pub fn doorbell(&self) -> &EventFd {
        &self.0.room
    }

    /// The doorbell rang in user space (no ioeventfd on this host).
    pub fn ring_doorbell(&self) {
        let _ = self.0.room.write(1);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The guest moves receive to the ring (`on_ring`) or to the Lance.
    /// Frames waiting for the ring go to the Lance first when it leaves
    /// the ring, so none is stranded and none overtakes them.
    pub fn set_path(&self, on_ring: bool) {
        let s = &*self.0;
        let mut st = self.lock();
        if st.on_ring == on_ring {
            return;
        }
        if !on_ring && !st.waiting.is_empty() {
            let mut frames: Vec<Vec<u8>> = st.waiting.drain(..).collect();
            s.lance.deliver(&mut frames);
            s.link.pv.rx_waiting.store(0, Ordering::Relaxed);
        }
        st.on_ring = on_ring;
        s.switches.pv_rx.store(on_ring, Ordering::Release);
        s.link.pv.rx_switches.fetch_add(1, Ordering::Relaxed);
        drop(st);
        // The I/O thread may be waiting for room, or ticking while the
        // vCPU polled: it looks again.
        let _ = s.room.write(1);
    }

    /// Fills posted buffers with the frames that wait, in order; true
    /// when none waits any more.
    fn fill(&self, st: &mut State) -> bool {
        let s = &*self.0;
        let at = s.area.load(Ordering::Acquire);
        if at != st.at {
            st.at = at;
            if at != 0 {
                // A new ring starts where the guest says it is.
                st.cons = Header { ram: &s.ram, at }.load(CONS).unwrap_or(0);
            }
        }
        let h = Header { ram: &s.ram, at };
        let size = match h.size() {
            Some(size) if at != 0 => size,
            _ => return st.waiting.is_empty(), // no ring yet: frames wait
        };
        let _m = markers::scope_uncounted(Category::VmnetRx);
        let before = st.cons;
        while !st.waiting.is_empty() {
            let Some(prod) = h.load(PROD) else { break };
            let posted = prod.wrapping_sub(st.cons);
            if posted > size {
                // More posted than the ring holds: a broken or hostile
                // guest. Take nothing until it makes sense again.
                s.link.pv.overruns.fetch_add(1, Ordering::Relaxed);
                break;
            }
            if posted == 0 {
                // No buffer: ask for the doorbell, then look once more
                // (the guest posts, then reads notify).
                h.store(NOTIFY, 1);
                std::sync::atomic::fence(Ordering::SeqCst);
                if h.load(PROD) == Some(prod) {
                    break;
                }
                continue;
            }
            h.store(NOTIFY, 0);
            let slot = st.cons & (size - 1);
            let frame = st.waiting.pop_front().expect("not empty");
            let entry = h.entry(slot);
            let written = entry.as_ref().is_some_and(|e| {
                frame.len() <= e.len as usize
                    && s.ram.write_slice(&frame, GuestAddress(e.addr)).is_ok()
            });
            let e = h.entry_at(slot);
            let (len, flags) = if written {
                s.link.pv.rx_frames.fetch_add(1, Ordering::Relaxed);
                s.link.rx_delivered.fetch_add(1, Ordering::Relaxed);
                (frame.len() as u32, 0)
            } else {
                s.link.pv.rx_bad_buffers.fetch_add(1, Ordering::Relaxed);
                (0, ERR)
            };
            let _ = s.ram.write_obj(len, GuestAddress(e + 8));
            let _ = s.ram.write_obj(flags, GuestAddress(e + 12));
            st.cons = st.cons.wrapping_add(1);
            h.store(CONS, st.cons);
        }
        s.link
            .pv
            .rx_waiting
            .store(st.waiting.len() as u64, Ordering::Relaxed);
        // cons is stored before want_irq is read; the guest sets want_irq
        // before it reads cons: one of us sees the other.
        std::sync::atomic::fence(Ordering::SeqCst);
        if st.cons != before && h.load(WANT_IRQ) == Some(1) {
            s.link.pv.rx_irqs.fetch_add(1, Ordering::Relaxed);
            let _ = s.irq.trigger();
        }
        st.waiting.is_empty()
    }
}

impl GuestRx for RxPath {
    fn deliver(&self, frames: &mut Vec<Vec<u8>>) -> bool {
        let mut st = self.lock();
        if !st.on_ring {
            return self.0.lance.deliver(frames);
        }
        st.waiting.extend(frames.drain(..));
        self.fill(&mut st)
    }

    fn resample_fd(&self) -> Option<RawFd> {
        self.0.lance.resample_fd()
    }

    fn resampled(&self) {
        self.0.lance.resampled();
    }

    fn room_fd(&self) -> Option<RawFd> {
        Some(self.0.room.as_raw_fd())
    }

    fn room(&self) -> bool {
        let _ = self.0.room.read();
        let mut st = self.lock();
        if st.on_ring {
            self.0.link.pv.rx_doorbells.fetch_add(1, Ordering::Relaxed);
            self.fill(&mut st)
        } else {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ENTRY, HEADER, SIZE};
    use super::*;

    /// A Lance that keeps what it is given.
    #[derive(Default, Clone)]
    struct Kept(Arc<Mutex<Vec<Vec<u8>>>>);

    impl GuestRx for Kept {
        fn deliver(&self, frames: &mut Vec<Vec<u8>>) -> bool {
            self.0.lock().unwrap().append(frames);
            true
        }
        fn resample_fd(&self) -> Option<RawFd> {
            None
        }
        fn resampled(&self) {}
    }

    const RING: u64 = 0x10000;
    const BUFS: u64 = 0x20000;

    /// A path over 1 MiB of RAM with a 4-entry ring at RING whose buffers
    /// (`cap` bytes each) are at BUFS, none posted yet.
    fn setup(cap: u32) -> (GuestMemoryMmap, RxPath, Kept) {
        let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let lance = Kept::default();
        let path = RxPath::new(
            ram.clone(),
            Box::new(lance.clone()),
            Arc::new(EdgeIrq::Irqfd(EventFd::new(libc::EFD_NONBLOCK).unwrap())),
            Arc::new(LinkCounters::default()),
            Arc::new(Switches::default()),
        )
        .unwrap();
        ram.write_obj(4u32, GuestAddress(RING + SIZE)).unwrap();
        for i in 0..4 {
            let e = RING + HEADER + i * ENTRY;
            ram.write_obj(BUFS + i * 0x800, GuestAddress(e)).unwrap();
            ram.write_obj(cap, GuestAddress(e + 8)).unwrap();
        }
        path.area().store(RING, Ordering::Relaxed);
        (ram, path, lance)
    }

    fn post(ram: &GuestMemoryMmap, prod: u32) {
        ram.write_obj(prod, GuestAddress(RING + PROD)).unwrap();
    }

    fn word(ram: &GuestMemoryMmap, off: u64) -> u32 {
        ram.read_obj(GuestAddress(RING + off)).unwrap()
    }

    /// How many times the path interrupted since the last look.
    fn raised(path: &RxPath) -> Option<u64> {
        match &*path.0.irq {
            EdgeIrq::Irqfd(fd) => fd.read().ok(),
            _ => None,
        }
    }

    fn frames(range: std::ops::Range<u8>) -> Vec<Vec<u8>> {
        range.map(|i| vec![i; 60 + usize::from(i)]).collect()
    }

    /// The frame in buffer `slot` as the host left it.
    fn filled(ram: &GuestMemoryMmap, slot: u64) -> Vec<u8> {
        let len: u32 = ram
            .read_obj(GuestAddress(RING + HEADER + slot * ENTRY + 8))
            .unwrap();
        let mut f = vec![0; len as usize];
        ram.read_slice(&mut f, GuestAddress(BUFS + slot * 0x800))
            .unwrap();
        f
    }

    #[test]
    fn frames_wait_in_order_for_buffers_and_the_doorbell_brings_them() {
        let (ram, path, lance) = setup(1514);
        path.set_path(true);
        post(&ram, 2);
        assert!(
            !path.deliver(&mut frames(0..3)),
            "two buffers, three frames"
        );
        assert_eq!(word(&ram, CONS), 2);
        assert_eq!(word(&ram, NOTIFY), 1, "the host waits for the doorbell");
        assert_eq!(filled(&ram, 0), frames(0..1)[0]);
        assert_eq!(filled(&ram, 1), frames(1..2)[0]);
        // The guest takes both and posts them again.
        post(&ram, 6);
        path.ring_doorbell();
        assert!(path.room());
        assert_eq!(word(&ram, CONS), 3);
        assert_eq!(word(&ram, NOTIFY), 0);
        assert_eq!(filled(&ram, 2), frames(2..3)[0]);
        assert!(lance.0.lock().unwrap().is_empty());
        let pv = &path.0.link.pv;
        assert_eq!(pv.rx_frames.load(Ordering::Relaxed), 3);
        assert_eq!(pv.rx_waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn moving_back_to_the_lance_hands_it_what_waited_first() {
        let (ram, path, lance) = setup(1514);
        path.set_path(true);
        post(&ram, 1);
        assert!(!path.deliver(&mut frames(0..3)));
        path.set_path(false);
        assert!(path.deliver(&mut frames(3..5)));
        assert_eq!(
            *lance.0.lock().unwrap(),
            frames(1..5),
            "in order, none lost"
        );
        assert_eq!(filled(&ram, 0), frames(0..1)[0]);
        assert_eq!(path.0.link.pv.rx_switches.load(Ordering::Relaxed), 2);
        assert!(!path.0.switches.pv_rx.load(Ordering::Relaxed));
    }

    #[test]
    fn interrupts_only_when_asked_and_bad_buffers_drop_with_a_reason() {
        let (ram, path, _) = setup(100);
        path.set_path(true);
        post(&ram, 4);
        assert!(path.deliver(&mut frames(0..1)));
        assert_eq!(raised(&path), None, "the guest polls: no interrupt");
        ram.write_obj(1u32, GuestAddress(RING + WANT_IRQ)).unwrap();
        // 160 bytes do not fit a 100-byte buffer; a buffer outside RAM
        // takes nothing.
        ram.write_obj(1u64 << 40, GuestAddress(RING + HEADER + 2 * ENTRY))
            .unwrap();
        assert!(path.deliver(&mut vec![vec![7; 160], vec![8; 60], vec![9; 60]]));
        assert_eq!(raised(&path), Some(1));
        let flags = |slot: u64| -> u32 {
            ram.read_obj(GuestAddress(RING + HEADER + slot * ENTRY + 12))
                .unwrap()
        };
        assert_eq!((flags(1), flags(2), flags(3)), (ERR, ERR, 0));
        assert_eq!(filled(&ram, 3), vec![9; 60]);
        let pv = &path.0.link.pv;
        assert_eq!(pv.rx_bad_buffers.load(Ordering::Relaxed), 2);
        assert_eq!(pv.rx_frames.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_runaway_producer_or_no_ring_keeps_frames_waiting() {
        let (ram, path, _) = setup(1514);
        path.area().store(0, Ordering::Relaxed);
        path.set_path(true);
        assert!(!path.deliver(&mut frames(0..2)), "no ring: they wait");
        path.area().store(RING, Ordering::Relaxed);
        post(&ram, 1_000_000);
        assert!(!path.room());
        assert_eq!(path.0.link.pv.overruns.load(Ordering::Relaxed), 1);
        assert_eq!(word(&ram, CONS), 0, "nothing written for a broken ring");
        post(&ram, 2);
        assert!(path.room());
        assert_eq!(filled(&ram, 1), frames(1..2)[0]);
    }
}
