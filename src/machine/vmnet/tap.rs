//! The `tap` backend: a TAP device in a network namespace of worldswitch's
//! own, and the peer that plays the paper's receiving PC: it counts the
//! guest's nettest stream (UDP 9000), streams datagrams to the guest on
//! request (UDP 9001, for nettest-rx) and echoes (UDP 9002, for pingpong). A setup thread
//! unshares a new network namespace (only that thread moves), creates the
//! TAP device, its address, a static neighbour entry and the peer's socket
//! there, and stays to run the peer. The fds keep the namespace alive; it
//! vanishes with them. No traffic leaves it.

use super::{
    Backend, GuestRx, LinkCounters, SendError, SharedPeer, Switches, GUEST_IP, GUEST_MAC, HOST_IP,
    NETTEST_PORT,
};
use crate::profiler::live::{self, Every, Published};
use crate::profiler::markers;
use profiles::taxonomy::Category;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tun_rs::{DeviceBuilder, Layer, SyncDevice};

/// What the I/O thread measured about itself: its CPU time, run delay and
/// markers (handling host events, reading frames from the TAP).
pub type IoProfile = profiles::inputs::MarkedThread;

/// The TAP device's name inside the namespace.
pub const TAP_NAME: &str = "ws0";
const PEER_RCVBUF: libc::c_int = 8 << 20;
/// Where nettest-rx asks for a stream, and where the stream goes.
pub const STREAM_PORT: u16 = 9001;
/// Where pingpong's requests are echoed.
pub const ECHO_PORT: u16 = 9002;
const POLL_MS: libc::c_int = 50;
/// Frames read from the TAP before they are handed to the guest at once.
const RX_BATCH: usize = 32;
/// With irq-notify off, how often the I/O thread kicks the vCPU back to
/// user space (a 250 Hz host tick), in ms.
const HOST_TICK_MS: libc::c_int = 4;

/// Why the TAP link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// unshare(CLONE_NEWNET) failed.
    #[error("cannot create a network namespace ({0}); run as root, or use --net sink")]
    Namespace(io::Error),
    /// The TAP device could not be created.
    #[error("cannot create a TAP device ({0}); run as root with /dev/net/tun, or use --net sink")]
    Device(io::Error),
    /// Configuring the namespace failed.
    #[error("cannot configure the TAP device: {0}")]
    Configure(String),
    /// The peer socket could not be opened.
    #[error("cannot open the peer's socket: {0}")]
    Socket(io::Error),
    /// The setup thread died.
    #[error("the network setup thread failed to start: {0}")]
    Thread(String),
}

/// A TAP link: the device, the peer thread and, once started, the I/O
/// thread that reads frames coming back from the host.
pub struct TapLink {
    dev: Arc<SyncDevice>,
    stop: Arc<AtomicBool>,
    peer: Option<JoinHandle<()>>,
    io: Option<JoinHandle<IoProfile>>,
    io_profile: Published<IoProfile>,
}

/// Writes frames to the TAP device (on the vCPU thread).
pub struct TapBackend {
    dev: Arc<SyncDevice>,
}

impl Backend for TapBackend {
    fn name(&self) -> &'static str {
        "tap"
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.dev.send(frame)?;
        Ok(())
    }

    fn receive_ready(&mut self, max: usize, take: &mut dyn FnMut(&[u8])) -> u64 {
        let mut pfd = libc::pollfd {
            fd: self.dev.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 || pfd.revents & libc::POLLIN == 0 {
            return 0;
        }
        let mut n = 0;
        let mut buf = [0u8; 65536];
        while (n as usize) < max {
            let got = {
                let _m = markers::scope(Category::VmnetRx);
                self.dev.recv(&mut buf)
            };
            let Ok(len) = got else { break };
            take(&buf[..len]);
            n += 1;
        }
        n
    }
}

/// Runs `ip ARGS` (iproute2), its error output in the error.
pub(crate) fn ip(args: &[&str]) -> Result<(), TapError> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        TapError::Configure(format!(
            "running ip {}: {e} (install iproute2)",
            args.join(" ")
        ))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TapError::Configure(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The peer's sockets, all inside the namespace.
struct PeerSockets {
    nettest: UdpSocket,
    stream: UdpSocket,
    echo: UdpSocket,
}

fn peer_socket(port: u16) -> Result<UdpSocket, TapError> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::from(HOST_IP), port))
        .map_err(TapError::Socket)?;
    socket.set_nonblocking(true).map_err(TapError::Socket)?;
    Ok(socket)
}

/// Runs on the setup thread, inside the new namespace.
fn setup() -> Result<(SyncDevice, PeerSockets), TapError> {
    // SAFETY: unshare affects only the calling thread, which is ours.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(TapError::Namespace(io::Error::last_os_error()));
    }
    let dev = DeviceBuilder::new()
        .name(TAP_NAME)
        .layer(Layer::L2)
        .mtu(1500)
        .build_sync()
        .map_err(TapError::Device)?;
    // No IPv6 on the TAP: a fresh one would send ND/MLD frames.
    let v6 = format!("/proc/sys/net/ipv6/conf/{TAP_NAME}/disable_ipv6");
    if std::path::Path::new(&v6).exists() {
        std::fs::write(&v6, "1").map_err(|e| TapError::Configure(format!("{v6}: {e}")))?;
    }
    let host = Ipv4Addr::from(HOST_IP).to_string();
    let guest = Ipv4Addr::from(GUEST_IP).to_string();
    let mac: Vec<String> = GUEST_MAC.iter().map(|b| format!("{b:02x}")).collect();
    ip(&["addr", "add", &format!("{host}/24"), "dev", TAP_NAME])?;
    ip(&["link", "set", TAP_NAME, "up"])?;
    ip(&[
        "neigh",
        "replace",
        &guest,
        "lladdr",
        &mac.join(":"),
        "dev",
        TAP_NAME,
        "nud",
        "permanent",
    ])?;
    let socket = peer_socket(NETTEST_PORT)?;
    // SAFETY: setsockopt on a socket we own with a pointer to a c_int.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&PEER_RCVBUF as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let sockets = PeerSockets {
        nettest: socket,
        stream: peer_socket(STREAM_PORT)?,
        echo: peer_socket(ECHO_PORT)?,
    };
    Ok((dev, sockets))
}

/// Drop counters the namespace's kernel keeps, read from the calling
/// thread's own view of /proc (it must be the thread inside the namespace):
/// (reason, count, whether on the way to the guest).
fn namespace_drops() -> Vec<(&'static str, u64, bool)> {
    let mut out = Vec::new();
    let snmp = ["snmp", "netstat"]
        .map(|f| std::fs::read_to_string(format!("/proc/thread-self/net/{f}")).unwrap_or_default())
        .join("\n");
    {
        let lines: Vec<&str> = snmp.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            let (Some((proto, names)), Some((_, values))) =
                (names.split_once(':'), values.split_once(':'))
            else {
                continue;
            };
            for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
                let reason = match (proto, name) {
                    ("Udp", "RcvbufErrors") => "peer socket overflow",
                    ("Udp", "InErrors") => "peer UDP errors",
                    ("Udp", "NoPorts") => "no peer socket",
                    ("Ip", "InHdrErrors") => "host IP header errors",
                    ("Ip", "InDiscards") => "host IP discards",
                    // The host's address gone (the peer unreachable).
                    ("Ip", "InAddrErrors") => "not addressed to the host",
                    ("IpExt", "InNoRoutes") => "no route on the host",
                    _ => continue,
                };
                out.push((reason, value.parse().unwrap_or(0), false));
            }
        }
    }
    if let Ok(dev) = std::fs::read_to_string("/proc/thread-self/net/dev") {
        for line in dev.lines() {
            if let Some(rest) = line.trim_start().strip_prefix(&format!("{TAP_NAME}:")) {
                // 8 receive columns (bytes packets errs drop ...), then 8
                // transmit columns; the TAP transmits toward our reader.
                let col = |i: usize| rest.split_whitespace().nth(i).and_then(|v| v.parse().ok());
                out.push(("TAP rx_dropped", col(3).unwrap_or(0), false));
                out.push(("TAP tx_dropped", col(11).unwrap_or(0), true));
            }
        }
    }
    out
}

/// Sends `count` datagrams of `size` bytes (sequence number first) to
/// `to`, `rate` per second, until done or stopped.
fn stream(
    socket: UdpSocket,
    to: std::net::SocketAddr,
    (count, size, rate): (u64, usize, u32),
    peer: SharedPeer,
    stop: Arc<AtomicBool>,
) {
    let mut failed = 0u64;
    let size = size.clamp(8, 1472);
    let mut buf = vec![0x5au8; size];
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = std::time::Instant::now();
    for seq in 0..count {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let due = start + interval * seq as u32;
        if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        // A send the host refuses is a drop with a reason; the guest counts
        // the datagram missing.
        if socket.send_to(&buf, to).is_err() {
            failed += 1;
            peer.lock().unwrap_or_else(|e| e.into_inner()).set_drops(
                "peer send failed",
                failed,
                true,
            );
        }
    }
}

fn peer_loop(sockets: PeerSockets, peer: SharedPeer, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65536];
    let mut quiet_after_stop = false;
    let mut streams = Vec::new();
    loop {
        let mut fds = [&sockets.nettest, &sockets.stream, &sockets.echo].map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: three valid pollfds for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_MS) };
        if ready <= 0 {
            let drops = namespace_drops();
            let mut p = peer.lock().unwrap_or_else(|e| e.into_inner());
            for (reason, n, to_guest) in drops {
                p.set_drops(reason, n, to_guest);
            }
            // After a stop, one quiet interval means drained.
            if quiet_after_stop {
                break;
            }
            quiet_after_stop = stop.load(Ordering::Acquire);
            continue;
        }
        while let Ok(n) = sockets.nettest.recv(&mut buf) {
            if n >= 8 {
                let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                peer.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .datagram(seq, n);
            }
        }
        while let Ok((n, from)) = sockets.echo.recv_from(&mut buf) {
            let _ = sockets.echo.send_to(&buf[..n], from);
        }
        while let Ok((n, from)) = sockets.stream.recv_from(&mut buf) {
            if n < 16 {
                continue;
            }
            let count = u64::from_le_bytes(buf[..8].try_into().unwrap());
            let size = u32::from_le_bytes(buf[8..12].try_into().unwrap()) as usize;
            let rate = u32::from_le_bytes(buf[12..16].try_into().unwrap());
            if let Ok(socket) = sockets.stream.try_clone() {
                let (stop, peer) = (stop.clone(), peer.clone());
                streams.push(std::thread::spawn(move || {
                    stream(socket, from, (count, size, rate), peer, stop)
                }));
            }
        }
    }
    for s in streams {
        let _ = s.join();
    }
}

impl TapLink {
    /// Creates the namespace, the TAP device and the peer.
    pub fn create(peer: SharedPeer) -> Result<(TapLink, TapBackend), TapError> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_peer = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vmnet-peer".into())
            .spawn(move || match setup() {
                Ok((dev, sockets)) => {
                    let dev = Arc::new(dev);
                    if tx.send(Ok(dev)).is_ok() {
                        peer_loop(sockets, peer, stop_peer);
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| TapError::Thread(e.to_string()))?;
        let dev = match rx.recv() {
            Ok(Ok(dev)) => dev,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(TapError::Thread("it ended without a word".into()));
            }
        };
        Ok((
            TapLink {
                dev: dev.clone(),
                stop,
                peer: Some(thread),
                io: None,
                io_profile: Published::default(),
            },
            TapBackend { dev },
        ))
    }

    /// Starts the I/O thread. With irq-notify on, or the guest receiving
    /// on the pv-nic, it hands frames the host sends straight to `guest`
    /// (which raises its interrupt through an irqfd), answers the Lance
    /// interrupt's resample, and stops reading while frames wait for the
    /// guest's buffers; otherwise `kick` brings the vCPU back to user space
    /// at the host's tick, to read the TAP itself. `counters` count the
    /// frames read.
    pub fn start_receiver(
        &mut self,
        guest: Box<dyn GuestRx>,
        kick: Box<dyn Fn() + Send>,
        counters: Arc<LinkCounters>,
        switches: Arc<Switches>,
    ) -> io::Result<()> {
        let dev = self.dev.clone();
        let stop = self.stop.clone();
        let live = self.io_profile.clone();
        dev.set_nonblocking(true)?;
        let handle = std::thread::Builder::new()
            .name("vmnet-io".into())
            .spawn(move || {
                // Few scopes, long sleeps between them: time its CPU.
                markers::time_cpu_on_this_thread();
                let mut buf = vec![0u8; 65536];
                let mut batch: Vec<Vec<u8>> = Vec::new();
                let fd = dev.as_raw_fd();
                // poll() ignores a negative fd: no resample without an
                // irqfd, no room to wait for where frames never wait.
                let resample = guest.resample_fd().unwrap_or(-1);
                let room = guest.room_fd().unwrap_or(-1);
                // Frames wait for the guest's buffers: read no more.
                let mut full = false;
                let mut every = Every::new(live::PERIOD);
                let profile = markers::this_thread;
                let gone = |revents: libc::c_short| {
                    revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
                };
                while !stop.load(Ordering::Acquire) {
                    if every.due() {
                        live.publish(profile());
                    }
                    if switches.vcpu_polls() {
                        // irq-notify off and the Lance receiving: the vCPU
                        // reads the TAP itself after its exits; this thread
                        // only brings it back to user space at the host's
                        // tick, as a hosted VMM's timer interrupts did, and
                        // watches for the device going away (no events
                        // asked: errors only) and for the guest moving its
                        // receive path.
                        let mut pfds =
                            [(fd, 0), (room, libc::POLLIN)].map(|(fd, events)| libc::pollfd {
                                fd,
                                events,
                                revents: 0,
                            });
                        // SAFETY: two valid pollfds for the duration of the call.
                        let ready = unsafe { libc::poll(pfds.as_mut_ptr(), 2, HOST_TICK_MS) };
                        if ready > 0 && gone(pfds[0].revents) {
                            counters.rx_device_gone.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        if pfds[1].revents & libc::POLLIN != 0 {
                            full = !guest.room();
                            continue;
                        }
                        let _m = markers::scope(Category::HostEvents);
                        kick();
                        continue;
                    }
                    let tap_events = if full { 0 } else { libc::POLLIN };
                    let mut pfds = [
                        (fd, tap_events),
                        (resample, libc::POLLIN),
                        (room, libc::POLLIN),
                    ]
                    .map(|(fd, events)| libc::pollfd {
                        fd,
                        events,
                        revents: 0,
                    });
                    // Not a marker scope: the thread sleeps in poll, and
                    // markers count time, not CPU time.
                    // SAFETY: three valid pollfds for the duration of the call.
                    let ready = unsafe { libc::poll(pfds.as_mut_ptr(), 3, POLL_MS) };
                    if ready <= 0 {
                        continue;
                    }
                    if gone(pfds[0].revents) {
                        // The device is gone (deleted underneath us): stop
                        // reading rather than spin; writes will fail and be
                        // counted by the NIC's backend.
                        counters.rx_device_gone.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    if pfds[1].revents & libc::POLLIN != 0 {
                        let _m = markers::scope(Category::HostEvents);
                        guest.resampled();
                    }
                    if pfds[2].revents & libc::POLLIN != 0 {
                        let _m = markers::scope(Category::HostEvents);
                        full = !guest.room();
                    }
                    if full || pfds[0].revents & libc::POLLIN == 0 {
                        continue;
                    }
                    while batch.len() < RX_BATCH {
                        let got = {
                            let _m = markers::scope(Category::VmnetRx);
                            dev.recv(&mut buf)
                        };
                        let Ok(n) = got else { break };
                        batch.push(buf[..n].to_vec());
                    }
                    counters
                        .rx_queued
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    full = !guest.deliver(&mut batch);
                }
                profile()
            })?;
        self.io = Some(handle);
        Ok(())
    }

    /// Stops the I/O thread, lets the peer drain what is in flight, and
    /// waits for both.
    pub fn quiesce(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(io) = self.io.take() {
            if let Ok(last) = io.join() {
                self.io_profile.publish(last);
            }
        }
        if let Some(peer) = self.peer.take() {
            let _ = peer.join();
        }
    }

    /// What the I/O thread has measured about itself: so far while it
    /// runs, all of it after a quiesce.
    pub fn io_profile(&self) -> Option<IoProfile> {
        self.io_profile.latest()
    }
}

impl Drop for TapLink {
    fn drop(&mut self) {
        self.quiesce();
    }
}
