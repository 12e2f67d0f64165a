//! What scripts and a fresh machine see: `run --json-lines` and `run
//! --log` a line a second, and tracefs mounted when it is missing.

use crate::{kvm_or_skip, worldswitch_ok};
use serde_json::Value;
use std::process::Command;

#[test]
fn json_lines_give_a_second_per_line_and_the_result_last() {
    if !kvm_or_skip("run --json-lines") {
        return;
    }
    let out = worldswitch_ok(&[
        "run",
        "--guest",
        "nettest",
        "--net",
        "sink",
        "--duration",
        "3s",
        "--json-lines",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (result, seconds) = lines.split_last().unwrap();
    assert!(seconds.len() >= 3, "{text}");
    for (i, s) in seconds.iter().enumerate() {
        for key in [
            "t_s",
            "throughput_mbps",
            "frames_per_sec",
            "pio_exits_per_sec",
            "in_kernel_writes_per_sec",
        ] {
            assert!(s[key].is_number(), "{key} in {s}");
        }
        assert!(s["top_rows"][0]["row"].is_string(), "{s}");
        if i > 0 {
            assert!(s["t_s"].as_f64() > seconds[i - 1]["t_s"].as_f64(), "{text}");
        }
    }
    // Frames flowed, and the last line is the run's result.
    assert!(
        seconds
            .iter()
            .any(|s| s["throughput_mbps"].as_f64().unwrap() > 1.0),
        "{text}"
    );
    assert_eq!(result["guest"], "nettest", "{result}");
    assert!(result["frames_delivered"].as_u64().unwrap() > 0);
    let log = worldswitch_ok(&[
        "run",
        "--guest",
        "nettest",
        "--net",
        "sink",
        "--duration",
        "2s",
        "--log",
    ]);
    let text = String::from_utf8(log.stdout).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().contains("Mb/s"), "{text}");
    assert!(lines
        .next()
        .unwrap()
        .trim_start()
        .starts_with(|c: char| c.is_ascii_digit()));
}

#[test]
fn a_run_as_root_mounts_tracefs_when_it_is_missing() {
    if !kvm_or_skip("tracefs mounted on demand") {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        crate::skip("tracefs mounted on demand: needs root");
        return;
    }
    // In a mount namespace of its own, so the other tests keep theirs.
    let script = format!(
        "umount /sys/kernel/tracing 2>/dev/null; \
         test -d /sys/kernel/tracing/events && exit 3; \
         exec {} run --headless --json --guest hello --net sink",
        env!("CARGO_BIN_EXE_worldswitch")
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("running unshare");
    if out.status.code() == Some(3) {
        panic!("tracefs could not be unmounted in a private namespace");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notice: mounted tracefs at /sys/kernel/tracing"),
        "{stderr}"
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["tracepoints_unavailable"].is_null(),
        "{}",
        r["tracepoints_unavailable"]
    );
    assert!(
        r["tracepoints"]["kvm/kvm_userspace_exit"].as_u64().unwrap() > 0,
        "{}",
        r["tracepoints"]
    );
}
