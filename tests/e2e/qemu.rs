//! Our guests are honest PVH guests: the exported hello.elf boots under QEMU
//! (`-accel kvm -kernel`), without worldswitch's mailbox.

use crate::{kvm_or_skip, worldswitch};
use std::process::Command;
use std::time::Duration;

#[test]
fn hello_elf_boots_under_qemu() {
    if !kvm_or_skip("qemu") {
        return;
    }
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{qemu} is missing in CI: .ci/run installs qemu-system-x86"
        );
        eprintln!("SKIP qemu: {qemu} is not installed (apt-get install qemu-system-x86)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ws-qemu-{}", std::process::id()));
    let out = worldswitch(&["guests", "--export", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let serial = dir.join("serial.txt");
    let mut child = Command::new(qemu)
        .args([
            "-accel", "kvm", "-m", "64", "-display", "none", "-monitor", "none",
        ])
        .args(["-net", "none", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(dir.join("hello.elf"))
        .spawn()
        .expect("starting qemu");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("qemu did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&serial).unwrap_or_default();
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
