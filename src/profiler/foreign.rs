//! Stack samples of the threads of a process we did not start, for
//! `attach`: kernel frames only, which say where a vCPU's time inside
//! `KVM_RUN` went by the same rules as ours. Its user stacks are not
//! walked: a frame-pointer walk of code built without frame pointers (as
//! Debian's QEMU is) is junk past the leaf, so user-mode samples stay one
//! row, "VMM user space, unsymbolized".

use super::kallsyms::Kallsyms;
use super::sampler::{in_kernel, kvm_run_row, open_ring};
use perf_event::data::Record;
use perf_event::Sampler as Ring;
use std::collections::BTreeMap;

/// Samples of user space outside `KVM_RUN` (the VMM's own code).
pub const VMM_USER: &str = "vmm_user";
/// Samples in the kernel outside `KVM_RUN` (the VMM's system calls: its
/// TAP writes, polls, ioctls).
pub const HOST_KERNEL: &str = "host_kernel";

/// Ring bytes per thread: a few hundred samples between two drains.
const RING: usize = 1 << 18;

/// The sampler.
pub struct ForeignSampler {
    rings: Vec<(libc::pid_t, Ring)>,
    kallsyms: Kallsyms,
    counts: BTreeMap<libc::pid_t, BTreeMap<String, u64>>,
    lost: u64,
}

impl ForeignSampler {
    /// Starts sampling each of `tids` at `hz` (a thread the kernel refuses
    /// is left out, with the reason, in the error only if none starts).
    pub fn start(tids: &[libc::pid_t], hz: u64) -> Result<Self, String> {
        let kallsyms = Kallsyms::load().map_err(|e| format!("cannot read kernel symbols: {e}"))?;
        let mut rings = Vec::new();
        let mut refused = None;
        for &tid in tids {
            match open_ring(tid, hz, RING, false) {
                Ok(r) => rings.push((tid, r)),
                Err(e) => refused = Some(e),
            }
        }
        if rings.is_empty() {
            return Err(format!(
                "perf refused cpu-clock sampling of the target's threads{}",
                refused.map_or(String::new(), |e| format!(" ({e})"))
            ));
        }
        Ok(Self {
            rings,
            kallsyms,
            counts: BTreeMap::new(),
            lost: 0,
        })
    }

    /// Reads what waits in the rings.
    pub fn drain(&mut self) {
        for (tid, ring) in &mut self.rings {
            let counts = self.counts.entry(*tid).or_default();
            while let Some(record) = ring.next_record() {
                let misc = record.misc();
                match record.parse_record() {
                    Ok(Record::Sample(s)) => {
                        let chain = s.callchain().unwrap_or(&[]);
                        let row = match kvm_run_row(misc, chain, &self.kallsyms) {
                            Some(c) => c.key(),
                            None if in_kernel(chain) => HOST_KERNEL,
                            None => VMM_USER,
                        };
                        *counts.entry(row.to_string()).or_insert(0) += 1;
                    }
                    Ok(Record::Lost(l)) => self.lost += l.lost,
                    _ => {}
                }
            }
        }
    }

    /// Samples by thread and row, and the samples the rings lost.
    pub fn finish(mut self) -> (BTreeMap<libc::pid_t, BTreeMap<String, u64>>, u64) {
        self.drain();
        (self.counts, self.lost)
    }
}
