//! Every error a user can cause ends in one plain sentence and a non-zero
//! exit: no panic, no backtrace.

use crate::{kvm_or_skip, run_json, worldswitch};

fn assert_plain_error(args: &[&str], needle: &str) {
    let out = worldswitch(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{args:?}: {stderr}");
}

#[test]
fn bad_arguments() {
    assert_plain_error(&["run", "--duration", "soon"], "not a duration");
    assert_plain_error(&["run", "--guest-arg", "novalue"], "KEY=VALUE");
    assert_plain_error(&["bench", "exits", "--cpl", "1"], "use 0 or 3");
    assert_plain_error(&["nonsense"], "error");
}

#[test]
fn guests_that_cannot_boot() {
    assert_plain_error(&["run", "--guest", "no-such-guest"], "worldswitch guests");
    let dir = std::env::temp_dir().join(format!("ws-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("not-elf");
    std::fs::write(&text, "plain text").unwrap();
    if !kvm_or_skip("guest file errors") {
        return;
    }
    assert_plain_error(
        &["run", "--guest", text.to_str().unwrap()],
        "not a loadable ELF64",
    );
    let out = worldswitch(&["guests", "--export", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let mut elf = std::fs::read(dir.join("hello.elf")).unwrap();
    let at = elf.windows(4).position(|w| w == b"Xen\0").unwrap();
    elf[at..at + 4].copy_from_slice(b"Nox\0");
    let nonote = dir.join("no-note.elf");
    std::fs::write(&nonote, elf).unwrap();
    assert_plain_error(
        &["run", "--guest", nonote.to_str().unwrap()],
        "no PVH entry note",
    );
    assert_plain_error(&["run", "--guest", "hello", "--mem", "1"], "out of range");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_to_an_unwritable_place_says_so() {
    assert_plain_error(
        &["guests", "--export", "/proc/worldswitch"],
        "choose a directory",
    );
}

#[test]
fn guest_faults_are_named() {
    if !kvm_or_skip("guest faults") {
        return;
    }
    let (out, r) = run_json(&["--guest", "faults", "--guest-arg", "mode=1"]);
    assert!(!out.status.success());
    assert_eq!(r["outcome"]["kind"], "triple_fault", "{r}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("triple-faulted"), "{stderr}");

    let (out, r) = run_json(&["--guest", "faults", "--guest-arg", "mode=3"]);
    assert!(!out.status.success());
    assert_eq!(r["outcome"]["kind"], "dead_halt", "{r}");
    assert!(r["outcome"]["symbol"]
        .as_str()
        .unwrap()
        .starts_with("guest_main+"));

    let (out, r) = run_json(&["--guest", "faults"]);
    assert!(!out.status.success());
    assert_eq!(
        r["outcome"]["status"], 0x106,
        "#UD reported by the guest: {r}"
    );

    let (out, r) = run_json(&["--guest", "faults", "--guest-arg", "mode=2"]);
    assert!(!out.status.success());
    if r["outcome"]["kind"] == "emulation_failure" {
        assert!(r["outcome"]["symbol"]
            .as_str()
            .unwrap()
            .starts_with("sse_at_cpl0+0x0"));
        assert!(r["outcome"]["bytes"]
            .as_str()
            .unwrap()
            .starts_with("0f 58 c1"));
    } else {
        // Hardware virtualization runs SSE at CPL0; then the guest goes on.
        eprintln!(
            "note: this host executed SSE at CPL0 natively: {}",
            r["outcome"]
        );
    }
}

#[test]
fn without_permission_for_dev_kvm() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/dev/kvm").exists() {
        crate::skip("permission: needs root (to drop to nobody) and /dev/kvm");
        return;
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_worldswitch"))
        .args(["run", "--guest", "hello"])
        .output();
    let Ok(out) = out else {
        crate::skip("permission: setpriv is not installed");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Permission denied") && !stderr.contains("worldswitch") {
        crate::skip(&format!(
            "permission: nobody cannot execute the test binary here: {stderr}"
        ));
        return;
    }
    assert!(!out.status.success());
    assert!(
        stderr.contains("no permission to open /dev/kvm"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn doctor_reports_this_host() {
    if !kvm_or_skip("doctor") {
        return;
    }
    let out = worldswitch(&["doctor", "--json"]);
    assert!(out.status.success());
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let find = |name: &str| checks.iter().find(|c| c["name"] == name).cloned();
    assert_eq!(find("/dev/kvm").unwrap()["status"], "ok");
    assert_eq!(find("irqchip").unwrap()["status"], "ok");
    if crate::tracefs_ready() {
        let c = find("kvm/kvm_userspace_exit").unwrap();
        assert_eq!(c["status"], "ok", "{c}");
        assert!(c["detail"].as_str().unwrap().starts_with("fires"));
    }
    for c in &checks {
        if c["status"] != "ok" {
            assert!(c["detail"].as_str().is_some_and(|d| !d.is_empty()), "{c}");
        }
    }
}
