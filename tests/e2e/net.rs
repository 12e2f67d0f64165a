//! The NIC end to end: nettest's frames through the PCnet model to a TAP
//! device in worldswitch's own namespace (or the sink), with exact frame
//! accounting and sequence checks.

use crate::{kvm_or_skip, run_json};
use serde_json::Value;

pub fn tap_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !std::path::Path::new("/dev/net/tun").exists() {
        crate::skip(&format!(
            "{test}: needs root and /dev/net/tun for a TAP device"
        ));
        return false;
    }
    true
}

/// The sum of a JSON object's counts (drops by reason).
fn total(counts: &Value) -> u64 {
    counts
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

fn assert_accounting_exact(r: &Value) {
    let n = &r;
    let sent = n["frames_sent_by_guest"].as_u64().unwrap();
    let received = n["frames_received_by_host"].as_u64().unwrap();
    let delivered = n["frames_delivered"].as_u64().unwrap();
    let dropped = total(&n["frames_dropped"]);
    assert!(sent > 0, "{n}");
    assert_eq!(sent, received, "guest vs host: {n}");
    assert_eq!(received, delivered + dropped, "host vs peer: {n}");
    assert_eq!(n["frames_in_flight"], 0, "{n}");
    let seq = &n["sequence_errors"];
    assert_eq!(
        (
            seq["missing"].as_u64(),
            seq["duplicate"].as_u64(),
            seq["reordered"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
}

fn nettest(net: &str, megabytes: u64) -> Value {
    let (out, r) = run_json(&[
        "--guest",
        "nettest",
        "--net",
        net,
        "--guest-arg",
        &format!("megabytes={megabytes}"),
    ]);
    assert!(out.status.success(), "{}", r["outcome"]);
    assert_eq!(r["backend"], net);
    r
}

#[test]
fn nettest_over_tap_accounts_for_every_frame() {
    if !kvm_or_skip("nettest tap") || !tap_or_skip("nettest tap") {
        return;
    }
    let r = nettest("tap", 2);
    assert_accounting_exact(&r);
    let n = &r;
    // 2 MiB in 4096-byte sends of three datagrams each.
    assert_eq!(n["frames_delivered"], 3 * 512);
    assert_eq!(r["guest_counters"]["bytes_sent"], 2 << 20);
    assert_eq!(
        r["guest_counters"]["arp_timeouts"], 0,
        "the namespace answered ARP"
    );
    assert!(n["throughput_mbps"].as_f64().unwrap() > 0.0);
    assert!(n["exits_per_frame"].as_f64().unwrap() > 1.0);
    let guest_ports = n["port_accesses_per_frame_guest"].as_f64().unwrap();
    assert!((2.0..20.0).contains(&guest_ports), "{guest_ports}");
}

#[test]
fn nettest_over_the_sink_accounts_for_every_frame() {
    if !kvm_or_skip("nettest sink") {
        return;
    }
    let r = nettest("sink", 1);
    assert_accounting_exact(&r);
    assert_eq!(
        r["guest_counters"]["arp_timeouts"], 1,
        "nobody answers ARP on the sink"
    );
}

#[test]
fn a_stopped_nettest_quiesces_to_zero_in_flight() {
    if !kvm_or_skip("nettest duration") || !tap_or_skip("nettest duration") {
        return;
    }
    let (out, r) = run_json(&["--guest", "nettest", "--duration", "2s"]);
    assert!(out.status.success(), "{}", r["outcome"]);
    assert_eq!(r["outcome"]["kind"], "host_stop");
    let n = &r;
    let received = n["frames_received_by_host"].as_u64().unwrap();
    assert!(received > 100, "{n}");
    assert_eq!(n["frames_in_flight"], 0, "{n}");
    assert_eq!(n["sequence_errors"]["missing"], 0, "{n}");
}

#[test]
fn wide_and_narrow_writes() {
    if !kvm_or_skip("write sizes") {
        return;
    }
    for (size, per_send) in [(512u64, 1u64), (8192, 6)] {
        let (out, r) = run_json(&[
            "--guest",
            "nettest",
            "--net",
            "sink",
            "--guest-arg",
            &format!("write_size={size}"),
            "--guest-arg",
            "megabytes=1",
        ]);
        assert!(out.status.success(), "{}", r["outcome"]);
        assert_accounting_exact(&r);
        let sends = (1u64 << 20) / size;
        assert_eq!(r["frames_delivered"], sends * per_send, "write_size={size}");
    }
}

#[test]
fn nettest_rx_accounts_for_the_peers_stream() {
    if !kvm_or_skip("nettest-rx") || !tap_or_skip("nettest-rx") {
        return;
    }
    // Receive polled by the vCPU (baseline), delivered by the I/O thread
    // through a resampled irqfd (paper) or into the pv-nic's ring (modern),
    // and through the user-space 8259.
    for config in CONFIGS {
        let mut args = vec![
            "--guest",
            "nettest-rx",
            "--net",
            "tap",
            "--guest-arg",
            "datagrams=1000",
            "--guest-arg",
            "rate=1000",
        ];
        args.extend(config);
        let (out, r) = run_json(&args);
        // A loaded host may lose some of the stream (the guest then exits
        // 1); every loss must then show up with a reason.
        assert_eq!(
            r["outcome"]["kind"], "guest_exit",
            "{config:?}: {}",
            r["outcome"]
        );
        let g = &r["guest_counters"];
        let (got, missing) = (
            g["rx_datagrams"].as_u64().unwrap(),
            g["rx_missing"].as_u64().unwrap(),
        );
        assert_eq!(g["rx_late"], 0, "{config:?}: {g}");
        assert_eq!(got + missing, 1000, "{config:?}: {g}");
        assert_eq!(out.status.success(), missing == 0);
        let reasons = total(&r["rx_dropped"]);
        assert!(
            missing == 0 || reasons > 0,
            "{config:?}: lost {missing} without a reason: {}",
            r["rx_dropped"]
        );
        assert_eq!(
            r["rx_delivered"].as_u64().unwrap(),
            g["frames_received"].as_u64().unwrap(),
            "{config:?}"
        );
    }
}

/// How the receive path is set up: the vCPU polls the TAP (baseline), the
/// I/O thread delivers and raises a resampled irqfd (paper), the I/O thread
/// fills the pv-nic's ring (modern), the vCPU polls and injects through the
/// user-space 8259.
const CONFIGS: [[&str; 2]; 4] = [
    ["--preset", "baseline"],
    ["--preset", "paper"],
    ["--preset", "modern"],
    ["--opt", "kernel-irqchip=off"],
];

#[test]
fn pingpong_gets_every_echo() {
    if !kvm_or_skip("pingpong") || !tap_or_skip("pingpong") {
        return;
    }
    for config in CONFIGS {
        let mut args = vec![
            "--guest",
            "pingpong",
            "--net",
            "tap",
            "--guest-arg",
            "rounds=100",
        ];
        args.extend(config);
        let (out, r) = run_json(&args);
        assert!(out.status.success(), "{config:?}: {}", r["outcome"]);
        let g = &r["guest_counters"];
        assert_eq!(
            (g["pings"].as_u64(), g["pongs"].as_u64()),
            (Some(100), Some(100)),
            "{config:?}: {g}"
        );
        let (min, mean, max) = (
            g["rtt_cycles_min"].as_u64().unwrap(),
            g["rtt_cycles_mean"].as_u64().unwrap(),
            g["rtt_cycles_max"].as_u64().unwrap(),
        );
        assert!(0 < min && min <= mean && mean <= max, "{config:?}: {g}");
        // Nearest-rank percentiles of the kept round trips.
        let (p50, p99) = (
            g["rtt_cycles_p50"].as_u64().unwrap(),
            g["rtt_cycles_p99"].as_u64().unwrap(),
        );
        assert!(min <= p50 && p50 <= p99 && p99 <= max, "{config:?}: {g}");
        assert_eq!(g["rx_buffers"], 16, "{g}");
        eprintln!("pingpong {config:?}: mean RTT {mean} cycles");
    }
}

#[test]
fn transmit_path_timing_follows_every_kick() {
    if !kvm_or_skip("transmit path") {
        return;
    }
    let (out, r) = run_json(&[
        "--guest",
        "nettest",
        "--net",
        "sink",
        "--guest-arg",
        "megabytes=1",
        "--guest-arg",
        "path_timing=1",
    ]);
    assert!(out.status.success(), "{}", r["outcome"]);
    let p = &r["transmit_path"];
    // One kick per datagram (and one for the ARP request), each stamped.
    let (kicks, frames) = (
        p["kicks"].as_u64().unwrap(),
        r["frames_delivered"].as_u64().unwrap(),
    );
    assert!(
        (frames..=frames + 1).contains(&kicks),
        "{kicks} kicks for {frames} frames"
    );
    let segments = p["segments_us"].as_array().unwrap();
    assert_eq!(segments.len(), 5);
    let us = |i: usize| segments[i][1].as_f64().unwrap();
    // The host-only segments are exact and cannot be negative.
    for i in 1..4 {
        assert!(us(i) >= 0.0, "{p}");
    }
    assert!(us(2) > 0.0, "the backend write takes time: {p}");
    // Exit and entry together do not depend on the TSC offset.
    assert!(us(0) + us(4) > 0.0, "{p}");
    assert!(p["error_us"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_measures_receive_and_round_trip_for_the_presets() {
    if !kvm_or_skip("bench --axes") || !tap_or_skip("bench --axes") {
        return;
    }
    let out = crate::worldswitch(&[
        "bench",
        "--axes",
        "rx,rtt",
        "--presets",
        "baseline",
        "--net",
        "tap",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = r["results"].as_array().unwrap();
    // No transmit table was asked: one row, the preset's, with its axes.
    assert_eq!(rows.len(), 1, "{r:#}");
    let row = &rows[0];
    assert_eq!(row["config"], "baseline");
    assert!(row.get("throughput_mbps").is_none(), "{row}");
    assert_eq!(row["rx_buffers"], 16, "{row}");
    let fps = row["rx_frames_per_sec"].as_f64().expect("a loss-free rate");
    let mbps = row["rx_loss_free_mbps"].as_f64().unwrap();
    assert!((mbps - fps * 1472.0 * 8.0 / 1e6).abs() < 1e-6, "{row}");
    let (p50, p99, max) = (
        row["rtt_p50_us"].as_f64().unwrap(),
        row["rtt_p99_us"].as_f64().unwrap(),
        row["rtt_max_us"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{row}");
}
