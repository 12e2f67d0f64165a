//! The terminal workbench driven as a user would, in tmux: it starts, its
//! Mb/s agrees with what the kernel counted at the TAP and the peer's
//! socket, help opens, every tab shows its screen, `e` exports an SVG, `q`
//! quits, and the terminal is back to normal.

use crate::kvm_or_skip;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux session, killed when dropped.
pub(crate) struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(args).output().expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn keys(&self, keys: &str) {
        self.cmd(&["send-keys", "-t", &self.0, keys]);
    }

    pub(crate) fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", &self.0])
    }

    fn format(&self, f: &str) -> String {
        self.cmd(&["display-message", "-p", "-t", &self.0, f])
            .trim()
            .to_string()
    }

    /// Waits until the screen contains `text`; returns the screen.
    pub(crate) fn wait_for(&self, text: &str, secs: u64) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "'{text}' never appeared; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

/// (packets, bytes) received by the TAP device and UDP datagrams delivered
/// to sockets, from the kernel's counters in worldswitch's namespace.
fn kernel_counts(peer: &Path) -> (u64, u64, u64) {
    let dev = std::fs::read_to_string(peer.join("net/dev")).unwrap();
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with("ws0:"))
        .expect("ws0 in the namespace");
    let f: Vec<u64> = line
        .split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let snmp = std::fs::read_to_string(peer.join("net/snmp")).unwrap();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "InDatagrams")
        .unwrap();
    let datagrams = values.split_whitespace().nth(i).unwrap().parse().unwrap();
    (f[1], f[0], datagrams)
}

/// The "X Mb/s, Y frames/s over N s" figures of the Overview's chart title.
fn shown_rates(screen: &str) -> Option<(f64, f64)> {
    let line = screen.lines().find(|l| l.contains("frames/s over"))?;
    let after = line.split("Mb/s now · ").nth(1)?;
    let mut words = after.split_whitespace();
    let mbps = words.next()?.parse().ok()?;
    words.next(); // "Mb/s,"
    let fps = words.next()?.parse().ok()?;
    Some((mbps, fps))
}

#[test]
fn the_workbench_in_a_real_terminal() {
    if !kvm_or_skip("the_workbench_in_a_real_terminal") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        crate::skip("the_workbench_in_a_real_terminal: tmux is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ws-tui-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (t, pid) = start(
        "main",
        &format!("run --export-dir {} --refresh 200ms", dir.display()),
        "Mb/s now",
        &[],
    );
    assert_eq!(
        t.format("#{alternate_on}"),
        "1",
        "the UI uses the alternate screen"
    );

    // Throughput on screen against the kernel's counts over the same 5 s.
    let pid = pid.expect("worldswitch under the shell");
    let peer = super::faults::peer_thread(pid).expect("the peer thread");
    // Let the 5-second window fill with steady traffic first.
    std::thread::sleep(Duration::from_secs(5));
    let (p0, b0, d0) = kernel_counts(&peer);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let (p1, b1, d1) = kernel_counts(&peer);
    let dt = t0.elapsed().as_secs_f64();
    let screen = t.screen();
    let (mbps, fps) = shown_rates(&screen).expect("rates on the Overview");
    // Goodput: frame bytes less Ethernet, IPv4 and UDP headers.
    let kernel_mbps = ((b1 - b0) - 42 * (p1 - p0)) as f64 * 8.0 / dt / 1e6;
    let kernel_fps = (d1 - d0) as f64 / dt;
    assert!(
        (mbps / kernel_mbps - 1.0).abs() < 0.05,
        "screen {mbps} Mb/s vs kernel {kernel_mbps:.2} Mb/s\n{screen}"
    );
    assert!(
        (fps / kernel_fps - 1.0).abs() < 0.05,
        "screen {fps} frames/s vs the peer socket's {kernel_fps:.0}\n{screen}"
    );
    eprintln!("screen {mbps} Mb/s, {fps} frames/s; kernel {kernel_mbps:.2} Mb/s, {kernel_fps:.0} datagrams/s");

    // Help, then every screen.
    t.keys("?");
    t.wait_for("pause or resume the guest", 5);
    t.keys("Escape");
    for (key, text) in [
        ("2", "Total time (the paper's Table 1"),
        ("3", "transmit path: guest OUT"),
        ("4", "samples · zoom: all"),
        ("5", "guest console"),
        ("6", "optimizations"),
        ("1", "throughput:"),
    ] {
        t.keys(key);
        t.wait_for(text, 5);
    }
    t.keys("Tab");
    t.wait_for("Total time (the paper's Table 1", 5);
    // The ledger: u switches the table to microseconds of CPU per frame.
    t.keys("u");
    t.wait_for("microseconds of CPU per frame over", 5);
    t.keys("u");
    t.wait_for("(u: per frame)", 5);

    // The cost model: each toggle's prediction before it is flipped, then
    // the flip's prediction against what it measured, marked on the chart.
    t.keys("6");
    let screen = t.wait_for("predicted (if flipped): model of baseline", 30);
    let row = screen
        .lines()
        .find(|l| l.contains("data-port-in-kernel") && l.contains(" off "))
        .unwrap_or_else(|| panic!("no data-port-in-kernel row\n{screen}"));
    let predicted: f64 = row
        .split_whitespace()
        .nth(4)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no predicted Mb/s in {row:?}\n{screen}"));
    assert!(predicted > 0.0, "{row}");
    t.keys("d");
    let screen = t.wait_for("most off:", 30);
    assert!(
        screen.contains("after the flip to rap-in-kernel+data-port-in-kernel: predicted")
            && screen.contains("measured"),
        "{screen}"
    );
    // The flip and its measurement are marks, in the log.
    t.keys("5");
    t.wait_for("data-port-in-kernel (predicted", 5);
    t.wait_for("measured rap-in-kernel+data-port-in-kernel: predicted", 5);
    t.keys("d");

    // Export: the SVG exists and is an SVG.
    t.keys("e");
    let screen = t.wait_for("exported", 10);
    let svg = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "svg"))
        .unwrap_or_else(|| panic!("no SVG in {}\n{screen}", dir.display()));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<?xml") && text.contains("<svg"),
        "{svg:?}"
    );
    assert!(text.contains("kvm_vcpu_ioctl"), "kernel frames in {svg:?}");

    // Quit: the process ends well and the terminal is itself again.
    t.keys("q");
    let screen = t.wait_for("worldswitch exited with", 30);
    assert!(screen.contains("worldswitch exited with 0"), "{screen}");
    assert_eq!(t.format("#{alternate_on}"), "0", "alternate screen left");
    assert_eq!(t.format("#{mouse_any_flag}"), "0", "mouse reporting off");
    assert_eq!(t.format("#{cursor_flag}"), "1", "cursor shown");
    let history = t.cmd(&["capture-pane", "-p", "-S", "-500", "-t", &t.0]);
    assert!(
        history.contains("where the time went"),
        "the summary is printed after the UI: {history}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `args` (with `env` set) under a shell in a new tmux session;
/// returns the session and the worldswitch PID once `ready` is on screen.
/// The shell stays in the pane after worldswitch exits, so the terminal's
/// state can be read afterwards (tmux reports little of a dead pane).
pub(crate) fn start(
    name: &str,
    args: &str,
    ready: &str,
    env: &[(&str, &str)],
) -> (Tmux, Option<u32>) {
    let t = Tmux(format!("ws-e2e-{name}-{}", std::process::id()));
    let env: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    let command = format!(
        "{env}{} {args}; echo \"worldswitch exited with $?\"; sleep 120",
        env!("CARGO_BIN_EXE_worldswitch")
    );
    let ok = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &t.0,
            "-x",
            "100",
            "-y",
            "30",
            &command,
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let shell: u32 = t.format("#{pane_pid}").parse().unwrap();
    t.wait_for(ready, 30);
    // None once worldswitch has exited (the shell may exec its last
    // command and have no children).
    let pid = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok());
    (t, pid)
}

#[test]
fn sigterm_restores_the_terminal_and_reports() {
    if !kvm_or_skip("sigterm in the workbench") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        crate::skip("sigterm in the workbench: tmux is not installed");
        return;
    }
    let (t, pid) = start("term", "run --net sink", "Mb/s now", &[]);
    assert_eq!(t.format("#{alternate_on}"), "1");
    // SAFETY: kill sends a signal to the worldswitch we started.
    unsafe {
        libc::kill(
            pid.expect("worldswitch under the shell") as i32,
            libc::SIGTERM,
        )
    };
    let screen = t.wait_for("worldswitch exited with", 30);
    assert!(screen.contains("worldswitch exited with 0"), "{screen}");
    let history = t.cmd(&["capture-pane", "-p", "-S", "-500", "-t", &t.0]);
    assert!(history.contains("Stopped by the host."), "{history}");
    assert_eq!(t.format("#{alternate_on}"), "0");
    assert_eq!(t.format("#{mouse_any_flag}"), "0");
    assert_eq!(t.format("#{cursor_flag}"), "1");
}

#[test]
fn a_panic_restores_the_terminal() {
    if !kvm_or_skip("a panic in the workbench") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        crate::skip("a panic in the workbench: tmux is not installed");
        return;
    }
    let (t, _) = start(
        "panic",
        "run --net sink",
        "worldswitch exited with",
        &[("WORLDSWITCH_FAULT", "panic")],
    );
    let history = t.cmd(&["capture-pane", "-p", "-S", "-500", "-t", &t.0]);
    assert!(history.contains("worldswitch exited with 101"), "{history}");
    assert!(history.contains("injected on purpose"), "{history}");
    assert_eq!(t.format("#{alternate_on}"), "0");
    assert_eq!(t.format("#{mouse_any_flag}"), "0");
    assert_eq!(t.format("#{cursor_flag}"), "1");
}

#[test]
fn a_saved_profile_opens_in_the_same_screens() {
    if !kvm_or_skip("view a saved profile") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        crate::skip("view a saved profile: tmux is not installed");
        return;
    }
    let file = std::env::temp_dir().join(format!("ws-view-{}.json", std::process::id()));
    crate::record_ok(&file, &["--duration", "2s"]);
    let (t, _) = start(
        "view",
        &format!("view {}", file.display()),
        "saved profile",
        &[],
    );
    t.keys("2");
    t.wait_for("Total time (the paper's Table 1", 5);
    t.keys("4");
    t.wait_for("samples · zoom: all", 5);
    t.keys("p");
    t.wait_for("a saved profile cannot be changed", 5);
    t.keys("q");
    let screen = t.wait_for("worldswitch exited with", 10);
    assert!(screen.contains("worldswitch exited with 0"), "{screen}");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_recording_in_the_workbench_marks_its_toggles_resets_and_baselines() {
    if !kvm_or_skip("record in the workbench") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        crate::skip("record in the workbench: tmux is not installed");
        return;
    }
    let file = std::env::temp_dir().join(format!("ws-record-tui-{}.json", std::process::id()));
    let (t, _) = start(
        "record",
        &format!(
            "record --net sink --duration 5s --refresh 200ms -o {}",
            file.display()
        ),
        "Mb/s now",
        &[],
    );
    // Flip send-combining (with what it needs), reset, mark a baseline.
    for key in ["c", "r", "b"] {
        t.keys(key);
        std::thread::sleep(Duration::from_millis(700));
    }
    t.wait_for(" finished ", 20);
    t.keys("q");
    let screen = t.wait_for("worldswitch exited with", 20);
    assert!(screen.contains("worldswitch exited with 0"), "{screen}");
    assert!(screen.contains("saved to"), "{screen}");
    let p = profiles::profile::Profile::load(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    let timeline = p.timeline.as_ref().expect("a recording keeps its timeline");
    let labels: Vec<&str> = timeline.marks.iter().map(|m| m.label.as_str()).collect();
    assert!(labels[0].starts_with("optimizations: "), "{labels:?}");
    for mark in [
        "optimizations: rap-in-kernel+data-port-in-kernel+send-combining",
        "counters reset",
        "baseline marked",
    ] {
        assert!(
            labels.iter().any(|l| l.starts_with(mark)),
            "{mark}: {labels:?}"
        );
    }
    assert!(
        timeline.marks.windows(2).all(|w| w[0].t <= w[1].t),
        "{labels:?}"
    );
    // Each is a marker on the vCPU thread of the Firefox Profiler file.
    let v = profiles::firefox::file(&p, 250.0);
    let vcpu = v["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "vcpu")
        .unwrap();
    assert!(
        vcpu["markers"]["length"].as_u64().unwrap() >= 4,
        "{}",
        vcpu["markers"]
    );
}
