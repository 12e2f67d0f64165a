//! Host-side faults: the backend failing writes, the TAP device deleted
//! underneath. The run goes on, and frame accounting stays exact with the
//! drops counted by reason.

use crate::{kvm_or_skip, tracefs_ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use worldswitch::machine::devices::host::GuestSays;
use worldswitch::machine::devices::pcnet::port::NicConfig;
use worldswitch::machine::vmm::events::{Finish, VmEvent};
use worldswitch::machine::vmm::vm::{start, VmConfig};
use worldswitch::machine::vmnet::{Backend, LinkCounters, SendError};

/// Fails every third write, alternately with ENOBUFS and EIO.
struct Flaky {
    writes: Arc<AtomicU64>,
}

impl Backend for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn send(&mut self, _frame: &[u8]) -> Result<(), SendError> {
        let n = self.writes.fetch_add(1, Ordering::Relaxed);
        match n % 6 {
            2 => Err(std::io::Error::from_raw_os_error(libc::ENOBUFS).into()),
            5 => Err(std::io::Error::from_raw_os_error(libc::EIO).into()),
            _ => Ok(()),
        }
    }
}

#[test]
fn failing_backend_writes_are_counted_and_the_guest_goes_on() {
    if !kvm_or_skip("flaky backend") {
        return;
    }
    let writes = Arc::new(AtomicU64::new(0));
    let counters = Arc::new(LinkCounters::default());
    let vm = start(VmConfig {
        opts: Default::default(),
        stitch: false,
        mem_mib: 64,
        image: sample_guests::find("nettest").unwrap().elf.to_vec(),
        cmdline: "megabytes=1".into(),
        halt_poll_ns: 0,
        floor: None,
        start_paused: false,
        nic: Some(NicConfig {
            backend: Arc::new(Mutex::new(Box::new(Flaky {
                writes: writes.clone(),
            }))),
            counters: counters.clone(),
            switches: Default::default(),
            final_drops: Arc::new(Mutex::new(None)),
        }),
    })
    .unwrap();
    let mut sent_by_guest = None;
    let finish = loop {
        match vm.events().recv_timeout(Duration::from_secs(60)).unwrap() {
            VmEvent::Guest(GuestSays::Counter { name, value }) if name == "frames_sent" => {
                sent_by_guest = Some(value)
            }
            VmEvent::Finished { finish, .. } => break finish,
            _ => {}
        }
    };
    assert_eq!(finish, Finish::GuestExit(0));
    let (ok, failed) = (
        counters.frames_written.load(Ordering::Relaxed),
        counters.send_errors.load(Ordering::Relaxed),
    );
    // Every frame the guest handed over was either written or counted as
    // failed: 768 datagrams and the ARP request.
    assert_eq!(ok + failed, writes.load(Ordering::Relaxed));
    assert_eq!(sent_by_guest, Some(768));
    assert_eq!(ok + failed, 769);
    assert_eq!(failed, 769 / 3);
}

/// Starts `worldswitch ARGS` (which must use TAP) for a test named `what`
/// that changes its namespace with nsenter; None, having said why, where
/// that cannot be done.
fn spawn_for_nsenter(what: &str, args: &[&str]) -> Option<std::process::Child> {
    // SAFETY: geteuid has no preconditions.
    if !kvm_or_skip(what) || unsafe { libc::geteuid() } != 0 {
        crate::skip(&format!("{what}: needs root and /dev/kvm"));
        return None;
    }
    if std::process::Command::new("nsenter")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::skip(&format!("{what}: nsenter is not installed"));
        return None;
    }
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_worldswitch"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    Some(child)
}

#[test]
fn deleting_the_tap_underneath_is_survived_and_counted() {
    let args = [
        "run",
        "--json",
        "--guest",
        "nettest",
        "--net",
        "tap",
        "--duration",
        "4s",
    ];
    let Some(child) = spawn_for_nsenter("tap deleted", &args) else {
        return;
    };
    // The peer thread lives in worldswitch's namespace.
    let ns = peer_thread(child.id())
        .expect("the peer thread appears")
        .join("ns/net");
    std::thread::sleep(Duration::from_millis(1000));
    let del = std::process::Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "link", "del", "ws0"])
        .status()
        .unwrap();
    assert!(del.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["outcome"]["kind"], "host_stop");
    let failed = r["frames_dropped"]["backend write failed"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        failed > 0,
        "writes after the deletion fail and are counted: {}",
        r["frames_dropped"]
    );
    assert_eq!(r["frames_in_flight"], 0, "{r}");
    assert_eq!(r["tap_device_gone"], true);
}

/// The /proc directory of worldswitch's peer thread in `pid`, once it
/// exists (it lives in worldswitch's network namespace).
pub fn peer_thread(pid: u32) -> Option<std::path::PathBuf> {
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let found = std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
            .find_map(|t| {
                let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
                (comm.trim() == "vmnet-peer").then(|| t.path())
            });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The network namespace of worldswitch's peer thread in `pid`.
fn peer_namespace(pid: u32) -> Option<String> {
    let link = std::fs::read_link(peer_thread(pid)?.join("ns/net")).ok()?;
    Some(link.display().to_string())
}

/// Whether any thread of any process is still in namespace `ns`.
fn namespace_alive(ns: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read_dir(p.path().join("task")).is_ok_and(|tasks| {
            tasks.flatten().any(|t| {
                std::fs::read_link(t.path().join("ns/net"))
                    .is_ok_and(|l| l.display().to_string() == ns)
            })
        })
    })
}

#[test]
fn signals_end_the_run_and_leave_nothing_behind() {
    // SAFETY: geteuid has no preconditions.
    if !kvm_or_skip("signals") || unsafe { libc::geteuid() } != 0 {
        crate::skip("signals: needs root and /dev/kvm");
        return;
    }
    // None: no signal; the main thread panics (WORLDSWITCH_FAULT=panic).
    for (signal, clean) in [
        (Some(libc::SIGINT), true),
        (Some(libc::SIGTERM), true),
        (Some(libc::SIGKILL), false),
        (None, false),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_worldswitch"));
        cmd.args(["run", "--json", "--guest", "nettest", "--net", "tap"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if signal.is_none() {
            cmd.env("WORLDSWITCH_FAULT", "panic");
        }
        let child = cmd.spawn().unwrap();
        let ns = peer_namespace(child.id()).expect("the peer thread appears");
        std::thread::sleep(Duration::from_millis(500));
        if let Some(signal) = signal {
            // SAFETY: signalling our own child by its PID.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if clean {
            assert!(out.status.success(), "signal {signal:?}: {stderr}");
            let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(r["outcome"]["kind"], "host_stop");
            assert_eq!(r["frames_in_flight"], 0);
        }
        if signal.is_none() {
            assert_eq!(out.status.code(), Some(101), "{stderr}");
            assert!(stderr.contains("injected on purpose"), "{stderr}");
        }
        // The namespace (and the TAP in it) vanish with the process; the
        // kernel tears a killed VM down asynchronously, so allow it a moment.
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            !namespace_alive(&ns)
        });
        assert!(gone, "signal {signal:?}: {ns} is still alive after 5 s");
    }
}

#[test]
fn a_peer_gone_unreachable_is_counted_with_a_reason() {
    let args = ["run", "--json", "--net", "tap", "--duration", "4s"];
    let Some(child) = spawn_for_nsenter("peer gone", &args) else {
        return;
    };
    let ns = peer_thread(child.id())
        .expect("the peer thread appears")
        .join("ns/net");
    std::thread::sleep(Duration::from_millis(1500));
    // The host's address goes: the peer can no longer be reached, while
    // writes to the TAP still succeed.
    let del = std::process::Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "addr", "del", "192.0.2.1/24", "dev", "ws0"])
        .status()
        .unwrap();
    assert!(del.success());
    let out = child.wait_with_output().unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{}", r["outcome"]);
    let lost = r["frames_dropped"]["not addressed to the host"]
        .as_u64()
        .unwrap_or(0);
    assert!(lost > 0, "{}", r["frames_dropped"]);
    assert!(r["frames_delivered"].as_u64().unwrap() > 0);
    assert_eq!(r["frames_in_flight"], 0, "every frame accounted: {r}");
}

#[test]
fn perf_refused_mid_run_is_said_once_and_the_run_goes_on() {
    if !kvm_or_skip("perf refused") {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_worldswitch"))
        .args(["run", "--json", "--net", "sink", "--duration", "3s"])
        .env("WORLDSWITCH_FAULT", "perf-refused")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &r["profile"];
    if p["samples_by_thread"]["vcpu"].as_u64().unwrap_or(0) == 0 {
        crate::skip("perf refused: the vCPU could not be sampled at all here");
        return;
    }
    // The threads opened after the vCPU's sampler are refused, each named
    // once, and only the vCPU's samples are in the profile.
    let refused = stderr
        .lines()
        .filter(|l| l.contains("the kernel refused to sample"))
        .collect::<Vec<_>>();
    assert!(!refused.is_empty(), "{stderr}");
    assert!(
        refused
            .iter()
            .any(|l| l.contains("io") || l.contains("flusher")),
        "{stderr}"
    );
    let unsampled = p["unsampled_threads"].as_object().unwrap();
    assert!(unsampled.contains_key("profiler"), "{unsampled:?}");
    assert_eq!(
        p["samples_by_thread"].as_object().unwrap().len(),
        1,
        "{}",
        p["samples_by_thread"]
    );
    // The emulation windows stopped, and the rows they split say why.
    if tracefs_ready() {
        assert_eq!(
            stderr.matches("perf refused to enable").count(),
            1,
            "{stderr}"
        );
        let iret = p["unavailable"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["category"] == "iret")
            .expect("iret unavailable");
        assert!(
            iret["reason"].as_str().unwrap().contains("perf refused"),
            "{iret}"
        );
    }
    // The run itself is whole.
    assert_eq!(r["outcome"]["kind"], "host_stop");
    assert_eq!(r["frames_in_flight"], 0);
    assert!(r["frames_delivered"].as_u64().unwrap() > 100);
}

#[test]
fn sigterm_ends_a_bench_not_only_its_current_run() {
    if !kvm_or_skip("bench sigterm") {
        return;
    }
    let start = std::time::Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_worldswitch"))
        .args([
            "bench",
            "--presets",
            "baseline",
            "--repeat",
            "3",
            "--duration",
            "2s",
            "--net",
            "sink",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: signalling our own child by its PID.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an interrupted bench reports no table"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    // Some 25 runs of 2 s were asked for; it stops after the current one.
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "the bench went on for {:?} after SIGTERM",
        start.elapsed()
    );
}
