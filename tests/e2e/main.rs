//! End-to-end tests of the worldswitch binary and its hypervisor core. Tests
//! that need /dev/kvm, tracefs or QEMU skip only where those are absent, and
//! say why; under `WORLDSWITCH_REQUIRE_ALL=1` (set by `.ci/run`, on a
//! machine that has them all) a skip fails instead.

mod boot;
mod cli_errors;
mod exports;
mod faults;
mod golden;
mod guest_code;
mod hostile;
mod net;
mod optimizations;
mod profile;
mod qemu;
mod scripts;
mod tui;
mod vcpu_states;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Says why a test cannot run here and lets it return early; fails the test
/// instead where `WORLDSWITCH_REQUIRE_ALL` says every prerequisite exists, so
/// a skip never reads as a pass in CI.
pub fn skip(why: &str) {
    if std::env::var_os("WORLDSWITCH_REQUIRE_ALL").is_some_and(|v| v != "0") {
        panic!("would skip, but WORLDSWITCH_REQUIRE_ALL says this machine has every prerequisite: {why}");
    }
    eprintln!("SKIP {why}");
}

/// True when /dev/kvm can be used; otherwise prints why the test skips.
pub fn kvm_or_skip(test: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            crate::skip(&format!("{test}: /dev/kvm is not usable here ({e})"));
            false
        }
    }
}

/// Mounts tracefs when it is missing and we are root, so tracepoint checks
/// run; returns whether kernel tracepoints can be read.
pub fn tracefs_ready() -> bool {
    let base = Path::new("/sys/kernel/tracing");
    if base.join("events").is_dir() {
        return true;
    }
    let _ = Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .status();
    base.join("events").is_dir()
}

/// Runs the worldswitch binary with `args`.
pub fn worldswitch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_worldswitch"))
        .args(args)
        .output()
        .expect("running the worldswitch binary")
}

/// Runs the worldswitch binary with `args` and asserts that it succeeded,
/// saying what it printed on standard error if not.
pub fn worldswitch_ok(args: &[&str]) -> Output {
    let out = worldswitch(args);
    assert!(
        out.status.success(),
        "worldswitch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Records nettest over the sink to `file` with `args` added (duration and
/// the rest), and asserts that it worked.
pub fn record_ok(file: &Path, args: &[&str]) {
    let mut all = vec!["record", "--guest", "nettest", "--net", "sink", "-o"];
    all.push(file.to_str().unwrap());
    all.extend_from_slice(args);
    worldswitch_ok(&all);
}

/// Runs `worldswitch run --json` with `args` and parses the result.
pub fn run_json(args: &[&str]) -> (Output, Value) {
    let mut all = vec!["run", "--headless", "--json"];
    all.extend_from_slice(args);
    let out = worldswitch(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "run {args:?} printed no JSON ({e}); stdout: {stdout}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, value)
}
