//! Finding what to measure in a process we did not start, from `/proc`
//! alone: whether it is a KVM process (it holds `anon_inode:kvm-vcpu:N`
//! descriptors), its threads and their CPU time, and its TAP devices (the
//! `iff:` line of a tun descriptor's fdinfo) with their counters, which
//! `/proc/PID/net/dev` reads in the target's own network namespace.
//! Nothing is written anywhere.

use std::path::PathBuf;

/// Why a process cannot be attached to.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No such process.
    #[error("there is no process {0}: check the PID (ps -e lists them)")]
    NoProcess(i32),
    /// Its descriptors are not ours to read.
    #[error("cannot read /proc/{0}/fd ({1}): run as root or as the target's user")]
    NoAccess(i32, std::io::Error),
    /// Not a KVM process.
    #[error("process {0} ({1}) holds no KVM vCPU (no anon_inode:kvm-vcpu descriptor in /proc/{0}/fd): attach needs a KVM VMM, such as QEMU with -accel kvm")]
    NotKvm(i32, String),
}

/// A KVM process, as `/proc` shows it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its PID.
    pub pid: i32,
    /// Its command name.
    pub name: String,
    /// The vCPU indices its descriptors name.
    pub vcpus: Vec<u32>,
    /// The TAP devices it holds open.
    pub taps: Vec<String>,
    /// Its executable.
    pub exe: String,
}

fn proc(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// Looks `pid` up.
pub fn find(pid: i32) -> Result<Target, AttachError> {
    let name = comm(&proc(pid).join("comm")).ok_or(AttachError::NoProcess(pid))?;
    let fds = std::fs::read_dir(proc(pid).join("fd")).map_err(|e| AttachError::NoAccess(pid, e))?;
    let (mut vcpus, mut taps) = (Vec::new(), Vec::new());
    for fd in fds.flatten() {
        let Ok(link) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        if let Some(n) = vcpu_index(&link) {
            vcpus.push(n);
        } else if link == "/dev/net/tun" {
            let info = proc(pid).join("fdinfo").join(fd.file_name());
            if let Some(tap) = std::fs::read_to_string(info)
                .ok()
                .as_deref()
                .and_then(tap_name)
            {
                taps.push(tap);
            }
        }
    }
    if vcpus.is_empty() {
        return Err(AttachError::NotKvm(pid, name));
    }
    vcpus.sort_unstable();
    taps.sort();
    taps.dedup();
    let exe = std::fs::read_link(proc(pid).join("exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Target {
        pid,
        name,
        vcpus,
        taps,
        exe,
    })
}

fn comm(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// The vCPU index of a descriptor link `anon_inode:kvm-vcpu:N`.
pub fn vcpu_index(link: &str) -> Option<u32> {
    link.strip_prefix("anon_inode:kvm-vcpu:")?.parse().ok()
}

/// The interface a tun descriptor's fdinfo names (`iff:\tNAME`).
pub fn tap_name(fdinfo: &str) -> Option<String> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("iff:"))
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
}

/// The target's threads now: (TID, name).
pub fn threads(pid: i32) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir(proc(pid).join("task")) else {
        return Vec::new();
    };
    let mut t: Vec<(i32, String)> = dir
        .flatten()
        .filter_map(|e| {
            let tid: i32 = e.file_name().to_str()?.parse().ok()?;
            Some((tid, comm(&e.path().join("comm")).unwrap_or_default()))
        })
        .collect();
    t.sort_unstable();
    t
}

/// A thread's CPU time and the time it waited runnable so far, in
/// nanoseconds (`schedstat`'s first two fields).
pub fn schedstat(pid: i32, tid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(proc(pid).join(format!("task/{tid}/schedstat"))).ok()?;
    let mut f = text.split_whitespace().map(|v| v.parse().ok());
    Some((f.next()??, f.next()??))
}

/// The CPU a thread last ran on.
pub fn last_cpu(pid: i32, tid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(proc(pid).join(format!("task/{tid}/stat"))).ok()?;
    crate::profiler::threads::last_cpu(&stat)
}

/// Which VMM an executable is, by its file name: `qemu`, `firecracker`,
/// `cloud-hypervisor`, `crosvm`, else the name itself.
pub fn vmm_of(exe: &str) -> String {
    let file = exe.rsplit('/').next().unwrap_or(exe);
    [
        "qemu",
        "firecracker",
        "cloud-hypervisor",
        "crosvm",
        "worldswitch",
    ]
    .into_iter()
    .find(|v| file.starts_with(v))
    .unwrap_or(file)
    .to_string()
}

/// An interface's counters, as the host sees them: what it received (the
/// guest's frames, on a TAP) and what it sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevCounters {
    /// Bytes received by the interface (sent by the guest).
    pub rx_bytes: u64,
    /// Frames received by the interface.
    pub rx_packets: u64,
    /// Bytes the interface sent (to the guest).
    pub tx_bytes: u64,
    /// Frames it sent.
    pub tx_packets: u64,
}

/// `iface`'s line of a `/proc/net/dev` text.
pub fn dev_counters(text: &str, iface: &str) -> Option<DevCounters> {
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{iface}:")))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Some(DevCounters {
        rx_bytes: *v.first()?,
        rx_packets: *v.get(1)?,
        tx_bytes: *v.get(8)?,
        tx_packets: *v.get(9)?,
    })
}

/// `iface`'s counters in the target's network namespace.
pub fn tap_counters(pid: i32, iface: &str) -> Option<DevCounters> {
    let text = std::fs::read_to_string(proc(pid).join("net/dev")).ok()?;
    dev_counters(&text, iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_proc_shows() {
        assert_eq!(vcpu_index("anon_inode:kvm-vcpu:3"), Some(3));
        assert_eq!(vcpu_index("anon_inode:kvm-vm"), None);
        assert_eq!(vcpu_index("/dev/kvm"), None);
        let fdinfo = "pos:\t0\nflags:\t0104002\nmnt_id:\t25\nino:\t1052\niff:\ttap7\n";
        assert_eq!(tap_name(fdinfo).as_deref(), Some("tap7"));
        assert_eq!(tap_name("pos:\t0\n"), None);
        let dev = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n  tap7: 1514000    1000    0    2    0     0          0         0      840      10    0    0    0     0       0          0\n";
        assert_eq!(
            dev_counters(dev, "tap7"),
            Some(DevCounters {
                rx_bytes: 1_514_000,
                rx_packets: 1000,
                tx_bytes: 840,
                tx_packets: 10
            })
        );
        assert_eq!(dev_counters(dev, "tap"), None, "a prefix is not a name");
        assert_eq!(vmm_of("/usr/bin/qemu-system-x86_64"), "qemu");
        let me = std::process::id() as i32;
        assert!(last_cpu(me, me).is_some());
        assert_eq!(last_cpu(me, i32::MAX), None);
        assert_eq!(vmm_of("/opt/fc/firecracker-v1.7"), "firecracker");
        assert_eq!(vmm_of("/usr/local/bin/myvmm"), "myvmm");
    }

    #[test]
    fn a_process_without_vcpus_is_refused_in_one_sentence() {
        let me = std::process::id() as i32;
        let e = find(me).unwrap_err();
        assert!(matches!(e, AttachError::NotKvm(..)), "{e}");
        assert!(e.to_string().contains("holds no KVM vCPU"));
        let e = find(i32::MAX).unwrap_err();
        assert!(matches!(e, AttachError::NoProcess(_)), "{e}");
    }
}
