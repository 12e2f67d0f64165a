//! Stack samples of the threads of a process we did not start, for
//! `attach`: kernel frames from the kernel's callchain, which say where a
//! vCPU's time inside `KVM_RUN` went by the same rules as ours; user
//! frames unwound from a copy of the user stack by `.eh_frame`
//! ([`unwind`]) and named by the target's own symbols ([`symbols`]),
//! which put its time outside `KVM_RUN` in the VMApp rows
//! ([`profiles::vmm_rules`]).

pub mod symbols;
pub mod unwind;

/// Stack samples per second by default. Lower than for our own guest:
/// paired runs on QEMU (8 rounds of 5 s, 13% steal) cost it 5.6% of its
/// frames at 250 Hz with no windows; a sampling timer interrupt is dear on
/// a nested host, and attach samples every busy thread.
pub const DEFAULT_HZ: u64 = 100;
/// Percent of the time `attach`'s emulation windows trace by default: 2%
/// cost QEMU another 4% in the same runs.
pub const DEFAULT_DUTY_PCT: u8 = 1;

use super::kallsyms::Kallsyms;
use super::sampler::{add_stack, fold_frames, kernel_frames, kvm_run_row, open_ring, world_key};
use perf_event::data::Record;
use perf_event::Sampler as Ring;
use profiles::inputs::SampleSummary;
use profiles::taxonomy::{Category, Thread};
use profiles::vmm_rules;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use symbols::TargetSymbols;
use unwind::StackUnwinder;

/// Bytes of user stack each sample copies: deep enough for QEMU's vCPU
/// thread from its start routine to the TAP write.
const USER_STACK: u32 = 16 << 10;
/// Ring bytes per thread: about 120 samples with their stacks, five times
/// what a busy thread makes at 250 Hz between two drains 100 ms apart.
const RING: usize = 2 << 20;
/// What a frame no symbol names is called.
const UNKNOWN: &str = "[unknown]";

/// One thread's samples.
#[derive(Debug, Default, Clone)]
pub struct ThreadSamples {
    /// All of them.
    pub total: u64,
    /// Inside `KVM_RUN` (or the guest running), by row.
    pub in_kvm_run: BTreeMap<Category, u64>,
    /// Outside it, by VMApp row.
    pub outside: BTreeMap<Category, u64>,
    /// Folded stacks less the thread: `world;row;frames...`, root first.
    pub folded: BTreeMap<Arc<str>, u64>,
}

/// The sampler.
pub struct ForeignSampler {
    rings: Vec<(libc::pid_t, Ring)>,
    kallsyms: Kallsyms,
    unwinder: StackUnwinder,
    symbols: TargetSymbols,
    threads: BTreeMap<libc::pid_t, ThreadSamples>,
    lost: u64,
    hz: u64,
}

impl ForeignSampler {
    /// Starts sampling each of `tids` of process `pid` at `hz` (a thread
    /// the kernel refuses is left out; the error says why only if none
    /// starts).
    pub fn start(pid: libc::pid_t, tids: &[libc::pid_t], hz: u64) -> Result<Self, String> {
        let kallsyms = Kallsyms::load().map_err(|e| format!("cannot read kernel symbols: {e}"))?;
        let mut rings = Vec::new();
        let mut refused = None;
        for &tid in tids {
            match open(tid, hz) {
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
            unwinder: StackUnwinder::new(pid),
            symbols: TargetSymbols::new(pid),
            threads: BTreeMap::new(),
            lost: 0,
            hz,
        })
    }

    /// Starts sampling thread `tid` too (one the target started since);
    /// a thread the kernel refuses, or gone already, stays unsampled.
    pub fn add(&mut self, tid: libc::pid_t) {
        if let Ok(r) = open(tid, self.hz) {
            self.rings.push((tid, r));
        }
    }

    /// Reads what waits in the rings.
    pub fn drain(&mut self) {
        let mut kernel = Vec::with_capacity(64);
        for (tid, ring) in &mut self.rings {
            let t = self.threads.entry(*tid).or_default();
            while let Some(record) = ring.next_record() {
                let misc = record.misc();
                let sample = match record.parse_record() {
                    Ok(Record::Sample(s)) => s,
                    Ok(Record::Lost(l)) => {
                        self.lost += l.lost;
                        continue;
                    }
                    _ => continue,
                };
                kernel.clear();
                kernel_frames(
                    sample.callchain().unwrap_or(&[]),
                    &self.kallsyms,
                    &mut kernel,
                );
                let user = match (sample.regs_user(), sample.stack_user()) {
                    (Some(r), Some(stack)) if r.regs.len() == 3 => {
                        self.unwinder.unwind(r.regs[2], r.regs[1], r.regs[0], stack)
                    }
                    _ => Default::default(),
                };
                if !user.ip_unmapped {
                    self.symbols.resolve(&user.lookup);
                }
                let names: Vec<&str> = user
                    .lookup
                    .iter()
                    .map(|&a| {
                        self.symbols
                            .name(a)
                            .map(|n| &**n)
                            .or_else(|| self.unwinder.special(a))
                            .unwrap_or(UNKNOWN)
                    })
                    .collect();
                t.total += 1;
                // On PVM the guest's user code runs in host user mode: a
                // sample with no kernel frame at an address the VMM does
                // not map is the guest running.
                let guest = kernel.is_empty() && user.ip_unmapped;
                let in_run = kvm_run_row(misc, &kernel).or(guest.then_some(Category::GuestNative));
                let (world, row) = match in_run {
                    Some(c) => {
                        *t.in_kvm_run.entry(c).or_insert(0) += 1;
                        (c.world().map_or("kvm", world_key), c)
                    }
                    None => {
                        let leaf_first: Vec<&str> =
                            kernel.iter().rev().chain(names.iter()).copied().collect();
                        let named = names.iter().any(|n| *n != UNKNOWN);
                        let c = vmm_rules::classify(&leaf_first, named);
                        *t.outside.entry(c).or_insert(0) += 1;
                        ("vmapp", c)
                    }
                };
                let root_first: Vec<&str> = if guest {
                    vec!["[guest]"]
                } else {
                    names.iter().rev().chain(kernel.iter()).copied().collect()
                };
                let stack = fold_frames("", world, row.key(), &root_first);
                // Less the empty thread name and its separator.
                add_stack(&mut t.folded, stack[1..].to_string());
            }
        }
    }

    /// The samples so far, by thread.
    pub fn threads(&self) -> &BTreeMap<libc::pid_t, ThreadSamples> {
        &self.threads
    }

    /// Records the rings lost.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

/// Opens sampling of `tid` at `hz` with its user registers and stack.
fn open(tid: libc::pid_t, hz: u64) -> std::io::Result<Ring> {
    open_ring(tid, hz, RING, false, Some(USER_STACK))
}

/// The samples as the table takes them: the vCPU threads' (`vcpus`) as
/// the vCPU's, the main loop's (`io`) as the I/O thread's, every other
/// thread by its name (`names`) in the folded stacks only.
pub fn summary(
    threads: &BTreeMap<libc::pid_t, ThreadSamples>,
    vcpus: &BTreeSet<libc::pid_t>,
    io: Option<libc::pid_t>,
    names: &BTreeMap<libc::pid_t, String>,
    lost: u64,
) -> SampleSummary {
    let mut s = SampleSummary {
        lost,
        ..Default::default()
    };
    for (tid, t) in threads {
        let name = if vcpus.contains(tid) {
            s.total += t.total;
            s.outside_kvm_run += t.outside.values().sum::<u64>();
            merge(&mut s.by_category, &t.in_kvm_run);
            merge(&mut s.vmapp_by_category, &t.outside);
            Thread::Vcpu.sampled_name().to_string()
        } else if Some(*tid) == io {
            merge(&mut s.io_by_category, &t.outside);
            Thread::Io.sampled_name().to_string()
        } else {
            names.get(tid).cloned().unwrap_or_else(|| tid.to_string())
        };
        *s.threads.entry(name.clone()).or_insert(0) += t.total;
        for (stack, n) in &t.folded {
            let key: Arc<str> = format!("{name};{stack}").into();
            *s.folded.entry(key).or_insert(0) += n;
        }
    }
    s
}

fn merge(into: &mut BTreeMap<Category, u64>, from: &BTreeMap<Category, u64>) {
    for (c, n) in from {
        *into.entry(*c).or_insert(0) += n;
    }
}
