//! Exports where they cannot go: a read-only directory and a full disk
//! (small tmpfs mounts of our own). Each gets one plain message, leaves no
//! half-written file, and loses nothing that cannot be made again.

use crate::{kvm_or_skip, worldswitch};
use profiles::profile::{Profile, FORMAT, VERSION};
use profiles::snapshot::Snapshot;
use profiles::table::Table;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test, unmounted and removed when dropped.
struct Mount(PathBuf);

impl Mount {
    fn new(name: &str, options: &str) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("ws-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Mount(dir))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// A picture with a large flame graph.
fn snapshot() -> Snapshot {
    let mut folded = BTreeMap::new();
    for i in 0..3000 {
        folded.insert(
            format!("vcpu;vmm;world_switch;frame_{i};leaf_{}", i * 7),
            1 + i % 5,
        );
    }
    let p = Profile {
        format: FORMAT.into(),
        version: VERSION,
        provenance: Default::default(),
        seconds: 1.0,
        table: Table::from_measured(&[], 1000.0, (1.0, "t"), 1.0, &[]),
        folded,
        extra: serde_json::json!({}),
        timeline: None,
    };
    Snapshot::from_profile(&p, "test")
}

#[test]
fn a_read_only_export_directory_gets_one_plain_message() {
    let Some(m) = Mount::new("ro", "ro,size=1m") else {
        crate::skip("read-only export: cannot mount a tmpfs here (needs root)");
        return;
    };
    let e = worldswitch::frontends::tui::export(&snapshot(), &m.0).unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("cannot write") && text.contains("--export-dir"),
        "{text}"
    );
    assert!(files(&m.0).is_empty());
}

#[test]
fn a_full_disk_leaves_no_half_written_file() {
    let Some(m) = Mount::new("full", "size=64k") else {
        crate::skip("full-disk export: cannot mount a tmpfs here (needs root)");
        return;
    };
    let e = worldswitch::frontends::tui::export(&snapshot(), &m.0).unwrap_err();
    let text = format!("{e:#}");
    assert!(text.contains("free some space"), "{text}");
    // Whatever is left is whole: no SVG, and a JSON only if it parses.
    for f in files(&m.0) {
        assert_eq!(f.extension().unwrap(), "json", "{f:?}");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert!(v["table"].is_object());
    }
}

#[test]
fn a_recording_that_cannot_be_saved_is_kept_elsewhere() {
    if !kvm_or_skip("record to a full disk") {
        return;
    }
    let Some(m) = Mount::new("rec", "size=4k") else {
        crate::skip("record to a full disk: cannot mount a tmpfs here (needs root)");
        return;
    };
    // Fill it, so the early check can create the file but not fill it.
    let _ = std::fs::write(m.0.join("filler"), vec![0u8; 4096]);
    let out = m.0.join("p.json");
    let r = worldswitch(&[
        "record",
        "--guest",
        "nettest",
        "--net",
        "sink",
        "--duration",
        "1s",
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    if err.contains("cannot write") && !err.contains("kept in") {
        // The early check refused the path outright: nothing was run.
        assert_eq!(
            err.lines()
                .filter(|l| l.starts_with("worldswitch:"))
                .count(),
            1,
            "{err}"
        );
        return;
    }
    let kept = err
        .split("kept in ")
        .nth(1)
        .and_then(|s| s.split(" instead").next())
        .unwrap_or_else(|| panic!("{err}"));
    let p = Profile::load(Path::new(kept)).unwrap();
    assert_eq!(p.provenance.guest, "nettest");
    let _ = std::fs::remove_file(kept);
    assert!(!out.exists() || std::fs::metadata(&out).unwrap().len() > 0);
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("worldswitch:"))
        .collect();
    assert_eq!(said.len(), 1, "one sentence: {err}");
    assert!(!said[0].contains("p.json: "), "the path once: {}", said[0]);
}
