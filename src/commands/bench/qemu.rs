//! The peer row of the results table: QEMU (`-accel kvm`, `-device
//! pcnet`) running the same nettest ELF, its TAP in a network namespace of
//! worldswitch's own set up as our TAP backend's (the same addresses, a
//! socket on nettest's port that a thread drains), measured by `attach`
//! with the table's columns, and again without attaching, for what
//! attaching costs it.

use crate::commands::attach::measure::{Measurement, Settings};
use crate::commands::attach::{measure_for, target};
use crate::machine::vmnet::tap::ip;
use crate::machine::vmnet::{GUEST_IP, GUEST_MAC, HOST_IP, NETTEST_PORT};
use anyhow::Context;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// The TAP inside the namespace.
const TAP: &str = "wsq0";
/// How long QEMU may take to boot and send its first datagram.
const FIRST_FRAME: Duration = Duration::from_secs(15);

/// What a QEMU run measured.
#[derive(Debug, Clone, Default)]
pub struct QemuRun {
    /// Goodput the socket received, Mb/s.
    pub mbps: f64,
    /// Datagrams per second it received.
    pub fps: f64,
    /// What attach measured, when attached.
    pub attach: Option<crate::commands::attach::result::AttachResult>,
}

/// QEMU running nettest, and its namespace; all removed when dropped.
struct Peer {
    ns: String,
    dir: PathBuf,
    qemu: Option<Child>,
    stop: Arc<AtomicBool>,
    received: Arc<(AtomicU64, AtomicU64)>,
    reader: Option<JoinHandle<()>>,
}

impl Peer {
    fn start(write_size: u64) -> anyhow::Result<Self> {
        let tag = format!("wsbq{}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir)?;
        let elf = dir.join("nettest.elf");
        let nettest = sample_guests::GUESTS
            .iter()
            .find(|g| g.name == "nettest")
            .context("no built-in nettest guest")?;
        std::fs::write(&elf, nettest.elf)?;
        ip(&["netns", "add", &tag])?;
        let mut peer = Peer {
            ns: tag.clone(),
            dir,
            qemu: None,
            stop: Arc::new(AtomicBool::new(false)),
            received: Arc::new((AtomicU64::new(0), AtomicU64::new(0))),
            reader: None,
        };
        let mac: Vec<String> = GUEST_MAC.iter().map(|b| format!("{b:02x}")).collect();
        let mac = mac.join(":");
        let host = format!("{}/24", Ipv4Addr::from(HOST_IP));
        let guest = Ipv4Addr::from(GUEST_IP).to_string();
        for args in [
            &["-n", &tag, "link", "set", "lo", "up"][..],
            &["-n", &tag, "tuntap", "add", "dev", TAP, "mode", "tap"],
            &["-n", &tag, "addr", "add", &host, "dev", TAP],
            &["-n", &tag, "link", "set", TAP, "up"],
            &[
                "-n",
                &tag,
                "neigh",
                "replace",
                &guest,
                "lladdr",
                &mac,
                "dev",
                TAP,
                "nud",
                "permanent",
            ],
        ] {
            ip(args)?;
        }
        peer.reader = Some(drain(&tag, peer.stop.clone(), peer.received.clone())?);
        let qemu = Command::new("ip")
            .args(["netns", "exec", &tag, QEMU])
            .args([
                "-accel", "kvm", "-m", "64", "-display", "none", "-monitor", "none",
            ])
            .args(["-no-reboot", "-serial", "null"])
            .args([
                "-netdev",
                &format!("tap,id=n0,ifname={TAP},script=no,downscript=no"),
            ])
            .args(["-device", &format!("pcnet,netdev=n0,mac={mac}")])
            .args([
                "-append",
                &format!("megabytes=1000000 write_size={write_size}"),
            ])
            .arg("-kernel")
            .arg(&elf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {QEMU}: install qemu-system-x86"))?;
        peer.qemu = Some(qemu);
        let t = Instant::now();
        while peer.received().0 == 0 {
            anyhow::ensure!(
                t.elapsed() < FIRST_FRAME,
                "QEMU's nettest sent nothing in {FIRST_FRAME:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(peer)
    }

    /// (datagrams, payload bytes) the socket has received.
    fn received(&self) -> (u64, u64) {
        (
            self.received.0.load(Ordering::Relaxed),
            self.received.1.load(Ordering::Relaxed),
        )
    }

    /// QEMU's PID: `ip netns exec` execs it in place.
    fn pid(&self) -> i32 {
        self.qemu.as_ref().map_or(0, |c| c.id() as i32)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut c) = self.qemu.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A thread in namespace `ns` draining a socket on nettest's port, as our
/// TAP backend's peer does, counting what it takes.
fn drain(
    ns: &str,
    stop: Arc<AtomicBool>,
    received: Arc<(AtomicU64, AtomicU64)>,
) -> anyhow::Result<JoinHandle<()>> {
    let path = format!("/run/netns/{ns}");
    let netns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("qemu-peer".into())
        .spawn(move || {
            // SAFETY: setns moves only this thread, which is ours, into
            // the namespace the descriptor names.
            let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } == 0;
            let socket = entered
                .then(|| UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::from(HOST_IP), NETTEST_PORT)))
                .and_then(Result::ok);
            let Some(socket) = socket else {
                let _ = ready_tx.send(false);
                return;
            };
            let _ = socket.set_read_timeout(Some(Duration::from_millis(50)));
            let _ = ready_tx.send(true);
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    received.0.fetch_add(1, Ordering::Relaxed);
                    received.1.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        })?;
    anyhow::ensure!(
        ready_rx.recv().unwrap_or(false),
        "cannot open a socket in namespace {ns}"
    );
    Ok(thread)
}

/// One run of QEMU's nettest for `duration`: measured by `attach` at its
/// defaults if `attached`, else by its socket alone.
pub fn run(write_size: u64, duration: Duration, attached: bool) -> anyhow::Result<QemuRun> {
    let peer = Peer::start(write_size)?;
    let measurement = if attached {
        let t = target::find(peer.pid())?;
        Some(Measurement::start(t, Settings::default()))
    } else {
        None
    };
    let (f0, b0, t0) = {
        let (f, b) = peer.received();
        (f, b, Instant::now())
    };
    let attach = match measurement {
        Some(m) => Some(measure_for(m, duration)),
        None => {
            std::thread::sleep(duration);
            None
        }
    };
    let (f1, b1) = peer.received();
    let seconds = t0.elapsed().as_secs_f64();
    Ok(QemuRun {
        mbps: (b1 - b0) as f64 * 8.0 / seconds / 1e6,
        fps: (f1 - f0) as f64 / seconds,
        attach,
    })
}
