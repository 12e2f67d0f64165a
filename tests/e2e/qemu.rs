//! Our guests are honest PVH guests and our driver fits an independent
//! PCnet model: the exported ELF files boot under QEMU (`-accel kvm
//! -kernel`), without worldswitch's mailbox.

use crate::{kvm_or_skip, worldswitch, worldswitch_ok};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

const QEMU: &str = "qemu-system-x86_64";

/// The machine every test boots our guests on: KVM, 64 MiB, no display or
/// monitor, and the exit device our guests end the run with.
const MACHINE: [&str; 11] = [
    "-accel",
    "kvm",
    "-m",
    "64",
    "-display",
    "none",
    "-monitor",
    "none",
    "-no-reboot",
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=0x04",
];

fn qemu_or_skip(test: &str) -> bool {
    if !kvm_or_skip(test) {
        return false;
    }
    if Command::new(QEMU).arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{QEMU} is missing in CI: .ci/run installs qemu-system-x86"
        );
        crate::skip(&format!(
            "{test}: {QEMU} is not installed (apt-get install qemu-system-x86)"
        ));
        return false;
    }
    true
}

/// Exports the built-in guests into a fresh directory.
fn export(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ws-qemu-{tag}-{}", std::process::id()));
    let out = worldswitch(&["guests", "--export", dir.to_str().unwrap()]);
    assert!(out.status.success());
    dir
}

/// Boots `elf` under QEMU with `extra` arguments; returns its status and
/// what the guest printed on the serial port.
fn boot(dir: &Path, elf: &str, extra: &[&str]) -> (ExitStatus, String) {
    let serial = dir.join(format!("{elf}.serial"));
    let mut child = Command::new(QEMU)
        .args(MACHINE)
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(extra)
        .arg("-kernel")
        .arg(dir.join(elf))
        .spawn()
        .expect("starting qemu");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("qemu did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(&serial).unwrap_or_default())
}

#[test]
fn hello_elf_boots_under_qemu() {
    if !qemu_or_skip("qemu hello") {
        return;
    }
    let dir = export("hello");
    let (status, text) = boot(&dir, "hello.elf", &["-net", "none"]);
    std::fs::remove_dir_all(&dir).unwrap();
    // isa-debug-exit makes QEMU exit with (status << 1) | 1.
    assert_eq!(status.code(), Some(1), "qemu status; serial: {text}");
    assert!(
        text.contains("hello from the worldswitch guest (CPL0)"),
        "{text}"
    );
    assert!(text.contains("mailbox: absent"), "{text}");
    assert!(text.contains("hello from CPL3"), "{text}");
    assert!(text.contains("counter user_status=0"), "{text}");
}

/// Frames in a pcap file (little-endian, microsecond timestamps).
fn pcap_frames(bytes: &[u8]) -> Vec<&[u8]> {
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "pcap magic");
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let start = at + 16;
        frames.push(&bytes[start..(start + len).min(bytes.len())]);
        at = start + len;
    }
    frames
}

#[test]
fn nettest_drives_qemus_pcnet_and_its_frames_come_out() {
    if !qemu_or_skip("qemu pcnet") {
        return;
    }
    let dir = export("pcnet");
    let dump = dir.join("dump.pcap");
    let filter = format!("filter-dump,id=f0,netdev=n0,file={}", dump.display());
    let (status, text) = boot(
        &dir,
        "nettest.elf",
        &[
            "-netdev",
            "user,id=n0,restrict=on",
            "-device",
            "pcnet,netdev=n0",
            "-object",
            &filter,
            "-append",
            "megabytes=1",
        ],
    );
    let bytes = std::fs::read(&dump).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(status.code(), Some(1), "nettest under qemu; serial: {text}");
    assert!(text.contains("nettest: done"), "{text}");
    let seqs: Vec<u64> = pcap_frames(&bytes)
        .into_iter()
        .filter_map(worldswitch::machine::vmnet::frames::parse)
        .map(|d| d.seq)
        .collect();
    // 1 MiB in 4096-byte sends, three datagrams each, in order.
    assert_eq!(seqs, (0..768).collect::<Vec<u64>>());
    assert!(text.contains("counter frames_sent=768"), "{text}");
}

/// A network namespace of the test's own with a TAP in it, removed on drop.
struct Netns(String);

impl Netns {
    fn with_tap(name: &str, tap: &str) -> Netns {
        let ns = Netns(name.to_string());
        let ip = |args: &[&str]| {
            let ok = Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip {args:?}");
        };
        ip(&["netns", "add", name]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        ip(&["-n", name, "tuntap", "add", "dev", tap, "mode", "tap"]);
        ip(&["-n", name, "link", "set", tap, "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Kills the QEMU we started (by its PID) when the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Frames the TAP `tap` in namespace `ns` has received (from the guest).
fn tap_rx_frames(ns: &str, tap: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/dev"])
        .output()
        .expect("reading the namespace's counters");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{tap}:")))
        .expect("the TAP's counters");
    line.split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// QEMU running nettest through its PCnet and a TAP in a namespace of the
/// test's own; everything goes when dropped.
struct NettestUnderQemu {
    dir: PathBuf,
    // Dropped in order: QEMU before its namespace.
    qemu: Child,
    ns: Netns,
}

impl NettestUnderQemu {
    fn start(tag: &str) -> Self {
        let dir = export(tag);
        let ns = Netns::with_tap(&format!("ws{tag}{}", std::process::id()), "wsq0");
        let qemu = Child(
            Command::new("ip")
                .args(["netns", "exec", &ns.0, QEMU])
                .args(MACHINE)
                .args(["-serial", "null"])
                .args(["-netdev", "tap,id=n0,ifname=wsq0,script=no,downscript=no"])
                .args(["-device", "pcnet,netdev=n0", "-append", "megabytes=1000"])
                .arg("-qmp")
                .arg(format!(
                    "unix:{},server=on,wait=off",
                    dir.join("qmp.sock").display()
                ))
                .arg("-kernel")
                .arg(dir.join("nettest.elf"))
                .spawn()
                .expect("starting qemu"),
        );
        // Booted and sending.
        std::thread::sleep(Duration::from_secs(2));
        Self { dir, qemu, ns }
    }

    /// QEMU's PID (`ip netns exec` execs QEMU in place).
    fn pid(&self) -> String {
        self.qemu.0.id().to_string()
    }
}

impl Drop for NettestUnderQemu {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn attach_measures_qemu_running_nettest_on_a_tap() {
    if !qemu_or_skip("attach to qemu") {
        return;
    }
    let q = NettestUnderQemu::start("att");
    let (dir, ns, pid) = (&q.dir, &q.ns, q.pid());
    let profile = dir.join("attach.json");
    let (frames0, t0) = (tap_rx_frames(&ns.0, "wsq0"), Instant::now());
    let out = worldswitch(&[
        "attach",
        &pid,
        "--duration",
        "5s",
        "--json",
        "-o",
        profile.to_str().unwrap(),
        "--qmp",
        dir.join("qmp.sock").to_str().unwrap(),
        // Enough samples that a row of 1-2% has some on a loaded machine
        // (the default's 100 Hz gives device emulation about 7).
        "--sample-hz",
        "500",
    ]);
    let (frames1, t1) = (tap_rx_frames(&ns.0, "wsq0"), Instant::now());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["target"]["vmm"], "qemu", "{r:#}");
    assert_eq!(r["target"]["pid"].to_string(), pid);
    let vcpus = r["vcpu_threads"].as_array().unwrap();
    assert_eq!(vcpus.len(), 1, "one vCPU thread found by its exits: {r:#}");
    assert!(vcpus[0]["exits_to_user"].as_u64().unwrap() > 100, "{r:#}");
    assert_eq!(r["taps"][0]["name"], "wsq0");
    // Frames per second as the TAP's own counters saw them around the
    // run (which starts a little after and ends a little before).
    let theirs = (frames1 - frames0) as f64 / (t1 - t0).as_secs_f64();
    let ours = r["frames_per_sec"].as_f64().unwrap();
    assert!(
        (ours / theirs - 1.0).abs() < 0.10,
        "{ours} vs {theirs}: {r:#}"
    );
    assert!(r["throughput_mbps"].as_f64().unwrap() > 0.0);
    // QEMU's PCnet exits for every register access.
    let per_frame = r["exits_per_frame"].as_f64().unwrap();
    assert!((8.0..20.0).contains(&per_frame), "{r:#}");
    assert!(r["exits"]["kvm_run_returns"].as_u64().unwrap() > 100);
    let ports = r["exits"]["ports"].as_array().unwrap();
    assert!(
        ports.iter().any(|p| p["outs"].as_u64().unwrap() > 0),
        "{r:#}"
    );
    // QMP's query-pci named the PCnet's BAR; the 8259 is named anyway.
    let named = |text: &str| {
        ports
            .iter()
            .any(|p| p["name"].as_str().is_some_and(|n| n.contains(text)))
    };
    assert!(named("Ethernet controller 1022:2000"), "{r:#}");
    assert!(named("8259"), "{r:#}");
    // The vCPU's time in the paper's rows, by the same keys as ours.
    let rows = r["profile"]["rows"].as_array().unwrap();
    let share = |key: &str| {
        rows.iter()
            .filter(|x| x["category"] == key)
            .map(|x| x["share_pct"].as_f64().unwrap())
            .sum::<f64>()
    };
    for key in [
        "world_switch",
        "exit_to_user",
        "emulated_ordinary",
        "device_emulation",
    ] {
        assert!(share(key) > 0.0, "no {key} row: {r:#}");
    }
    // Of the vCPU's user-space time, little is unsymbolized: its user
    // stacks were unwound by .eh_frame and named by QEMU's own symbols.
    let vmapp: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|x| x["world"] == "vmapp" && x["thread"] == "vcpu")
        .collect();
    let all: f64 = vmapp.iter().map(|x| x["share_pct"].as_f64().unwrap()).sum();
    let unnamed: f64 = vmapp
        .iter()
        .filter(|x| x["category"].as_str().unwrap().contains("unsymbolized"))
        .map(|x| x["share_pct"].as_f64().unwrap())
        .sum();
    assert!(
        all > 0.0 && unnamed / all <= 0.30,
        "{unnamed} of {all}: {r:#}"
    );
    // The saved profile reads back as any other.
    let report = worldswitch(&["report", profile.to_str().unwrap()]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        text.contains("transitioning to/from virtualization code"),
        "{text}"
    );
    let svg = dir.join("attach.svg");
    let flame = worldswitch(&[
        "flamegraph",
        profile.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(
        flame.status.success(),
        "{}",
        String::from_utf8_lossy(&flame.stderr)
    );
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(
        svg.contains("kvm_cpu_exec"),
        "QEMU's own frames are in the flame graph"
    );
}

#[test]
fn attach_shows_qemu_in_the_workbench() {
    if !qemu_or_skip("attach in the workbench") {
        return;
    }
    let q = NettestUnderQemu::start("attui");
    let (t, _) = crate::tui::start(
        "attach",
        &format!("attach {}", q.pid()),
        "not ours (attached)",
        &[],
    );
    t.keys("2");
    t.wait_for("Total time (the paper's Table 1", 10);
    // The rows come as samples arrive (a picture a second).
    for row in [
        "transitioning to/from virtualization",
        "instructions not requiring virtualiz",
        "IN/OUTs requiring a switch to the VMApp",
    ] {
        t.wait_for(row, 20);
    }
    t.keys("6");
    t.keys("d");
    t.wait_for("not ours to switch", 10);
    t.keys("q");
    let s = t.wait_for("worldswitch exited with", 20);
    assert!(s.contains("worldswitch exited with 0"), "{s}");
}

#[test]
fn attach_refuses_what_is_not_a_kvm_process_in_one_sentence() {
    let out = worldswitch(&[
        "attach",
        &std::process::id().to_string(),
        "--duration",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no KVM vCPU"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = worldswitch(&["attach", "2147483646", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no process 2147483646"));
}

#[test]
fn bench_puts_qemu_beside_our_presets() {
    if !qemu_or_skip("bench --with-qemu") {
        return;
    }
    let out = worldswitch_ok(&[
        "bench",
        "--presets",
        "baseline",
        "--duration",
        "1s",
        "--repeat",
        "1",
        "--with-qemu",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = r["results"].as_array().expect("results");
    let row = |name: &str| {
        rows.iter()
            .find(|x| x["config"] == name)
            .unwrap_or_else(|| panic!("no {name} row: {r:#}"))
    };
    let attached = row("qemu pcnet (attach)");
    assert!(attached["throughput_mbps"].as_f64().unwrap() > 0.0);
    // Every Lance access exits in QEMU's model: many exits a frame (a 1 s
    // run on a loaded machine sends few frames, so the timer's exits
    // weigh more than in attach's own test).
    let exits = attached["user_exits_per_frame"].as_f64().unwrap();
    assert!((8.0..40.0).contains(&exits), "{attached:#}");
    assert!(attached["irqs_per_frame"].as_f64().unwrap() > 0.0);
    assert!(attached["vcpu_cpu_pct"].as_f64().unwrap() > 0.0);
    let alone = row("qemu pcnet (not attached)");
    assert!(alone["throughput_mbps"].as_f64().unwrap() > 0.0);
    assert!(row("baseline")["ratio_to_baseline"] == 1.0);
}
