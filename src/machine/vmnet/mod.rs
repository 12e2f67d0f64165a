//! VMNet: where the virtual NIC's frames go. Backends behind one trait: a
//! TAP device in a network namespace of worldswitch's own with a receiving
//! peer (`tap`), or an in-process receiver (`sink`). Both count what
//! arrives and check the guest's sequence numbers.

pub mod frames;
pub mod pace;
pub mod peer;
pub mod sequence;
pub mod sink;
pub mod tap;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The host side of the link.
pub const HOST_IP: [u8; 4] = [192, 0, 2, 1];
/// The guest.
pub const GUEST_IP: [u8; 4] = [192, 0, 2, 2];
/// The guest NIC's station address (locally administered).
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x57, 0x53, 0x01];
/// The UDP port the peer receives nettest datagrams on.
pub const NETTEST_PORT: u16 = 9000;

/// Why a frame could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The host refused the write.
    #[error("the host refused the frame: {0}")]
    Io(#[from] std::io::Error),
}

/// Where transmitted frames go. Called on the vCPU thread, once per frame.
pub trait Backend: Send {
    /// Short name: `tap` or `sink`.
    fn name(&self) -> &'static str;
    /// Puts one Ethernet frame (no FCS) on the wire.
    fn send(&mut self, frame: &[u8]) -> Result<(), SendError>;
    /// Without blocking: whether frames from the host wait (one poll of
    /// the device, the WS 2.0 VMApp's select()), and if so, hands up to
    /// `max` of them to `take`. Returns how many. Backends that receive
    /// nothing have nothing to poll.
    fn receive_ready(&mut self, _max: usize, _take: &mut dyn FnMut(&[u8])) -> u64 {
        0
    }
}

/// A backend shared by the threads that transmit: the Lance's on the vCPU
/// thread and the paravirtual NIC's drain thread, each locking it per frame
/// (or per poll), so neither waits long behind the other.
pub type SharedBackend = Arc<Mutex<Box<dyn Backend>>>;

/// Sends `frame` through `backend` and counts it in `counters`: written
/// (and a nettest datagram, if it is one), or refused. Returns whether the
/// backend took it.
pub fn send_counted(backend: &mut dyn Backend, counters: &LinkCounters, frame: &[u8]) -> bool {
    match backend.send(frame) {
        Ok(()) => {
            counters.frames_written.fetch_add(1, Ordering::Relaxed);
            if frames::parse(frame).is_some() {
                counters.nettest_written.fetch_add(1, Ordering::Relaxed);
            }
            true
        }
        Err(_) => {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetKind {
    /// A TAP device in worldswitch's own network namespace.
    Tap,
    /// An in-process receiver.
    Sink,
}

/// The guest's receive path as the I/O thread sees it when it reads the
/// host itself (irq-notify on, or the pv-nic receiving): it hands frames
/// over, and answers the Lance interrupt's resample.
pub trait GuestRx: Send + Sync {
    /// Takes `frames` (emptying it), in order: each reaches the guest, is
    /// dropped with its reason counted, or waits for the guest's buffers
    /// ahead of any later frame. False while frames wait: read no more
    /// from the host until [`GuestRx::room_fd`] is readable.
    fn deliver(&self, frames: &mut Vec<Vec<u8>>) -> bool;
    /// The eventfd KVM signals when the guest's EOI lowered the NIC's
    /// line, if it has one.
    fn resample_fd(&self) -> Option<std::os::fd::RawFd>;
    /// Answers that signal: raises the line again if still wanted.
    fn resampled(&self);
    /// Readable when waiting frames may move on (the guest posted buffers,
    /// or moved its receive path), for paths where frames can wait.
    fn room_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// Answers that signal: delivers what waits; true once nothing does.
    fn room(&self) -> bool {
        true
    }
}

/// What the receiving side counted, shared with its owner.
pub type SharedPeer = Arc<Mutex<peer::PeerStats>>;

/// Counters the front end reads while the guest runs (relaxed atomics: one
/// increment per frame, no locks).
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Frames the backend accepted.
    pub frames_written: AtomicU64,
    /// Of those, nettest datagrams.
    pub nettest_written: AtomicU64,
    /// Frames the backend refused.
    pub send_errors: AtomicU64,
    /// Frames read from the host for the guest.
    pub rx_queued: AtomicU64,
    /// Frames from the host that reached the guest's receive ring.
    pub rx_delivered: AtomicU64,
    /// Interrupt line changes.
    pub irq_edges: AtomicU64,
    /// The TAP device went away under the I/O thread (it stopped reading).
    pub rx_device_gone: AtomicU64,
    /// The paravirtual NIC's own counts.
    pub pv: PvCounters,
}

/// The optimizations' run-time switches for the threads that move frames:
/// the vCPU thread sets them between two entries (`optimizations::
/// in_kernel`), the NIC models and the I/O thread act on them.
#[derive(Debug, Default)]
pub struct Switches {
    /// irq-notify off: the vCPU thread polls the TAP after every exit to
    /// user space and reads what waits; the I/O thread only ticks.
    pub poll_rx: AtomicBool,
    /// pv-nic on: the guest is asked to use the paravirtual rings.
    pub pv_want: AtomicBool,
    /// The guest receives on the paravirtual ring (it moved there): the
    /// I/O thread reads the host, whatever `poll_rx` says.
    pub pv_rx: AtomicBool,
}

impl Switches {
    /// Whether the vCPU thread reads the host after its exits (irq-notify
    /// off and the Lance receiving) rather than the I/O thread.
    pub fn vcpu_polls(&self) -> bool {
        self.poll_rx.load(Ordering::Relaxed) && !self.pv_rx.load(Ordering::Acquire)
    }
}

/// What the paravirtual NIC counted.
#[derive(Debug, Default)]
pub struct PvCounters {
    /// Doorbells that reached the drain thread (an eventfd read counts
    /// every ring since the last one).
    pub doorbells: AtomicU64,
    /// Doorbells that exited to user space (no ioeventfd on this host).
    pub doorbells_in_user: AtomicU64,
    /// Frames taken from the ring.
    pub frames: AtomicU64,
    /// Completion interrupts raised.
    pub irqs: AtomicU64,
    /// Frames refused: a chain with an entry outside RAM, longer than a
    /// frame or than [`crate::machine::devices::pvnet::MAX_CHAIN`] entries, or
    /// shorter than an Ethernet header.
    pub bad_entries: AtomicU64,
    /// Times the producer index ran more than a ring ahead (the host
    /// skipped to it).
    pub overruns: AtomicU64,
    /// Registrations refused (not page-aligned, or not inside RAM).
    pub bad_registrations: AtomicU64,
    /// Accesses of the wrong width or to no register.
    pub bad_accesses: AtomicU64,
    /// The drain thread's CPU time, in nanoseconds.
    pub cpu_ns: AtomicU64,
    /// Frames written into the guest's receive buffers.
    pub rx_frames: AtomicU64,
    /// Receive interrupts raised (only while the guest was not polling).
    pub rx_irqs: AtomicU64,
    /// Receive doorbells answered (buffers posted while frames waited).
    pub rx_doorbells: AtomicU64,
    /// Receive doorbells that exited to user space.
    pub rx_doorbells_in_user: AtomicU64,
    /// Frames dropped because the buffer was too small or not in RAM.
    pub rx_bad_buffers: AtomicU64,
    /// Frames waiting for a receive buffer now.
    pub rx_waiting: AtomicU64,
    /// Times the guest moved its receive path.
    pub rx_switches: AtomicU64,
}
