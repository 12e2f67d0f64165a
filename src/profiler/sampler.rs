//! Sampling the vCPU thread with perf events (cpu-clock, kernel callchains,
//! CLOCK_MONOTONIC timestamps) on a profiler thread of its own. Kernel
//! stacks under `KVM_RUN` go into the VMM rows by the rules in `profiles`;
//! samples the CPU took in guest mode (or, on PVM, in host user mode at the
//! guest's RIP while inside `KVM_RUN`) are guest time.

use super::kallsyms::Kallsyms;
use super::live::{self, Every, Published};
use super::stitch::{StitchLog, Walk};
use super::user_symbols::{self, UserSymbols};
use crate::guest_image::GuestImage;
use perf_event::data::Record;
use perf_event::events::Software;
use perf_event::{Builder, Clock, SampleFlag};
use profiles::rules;
use profiles::taxonomy::{Category, World};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Samples per second by default: at 1000 Hz sampling cost 4% of nettest
/// throughput on a nested PVM host, at 250 Hz it is within the noise.
pub const DEFAULT_HZ: u64 = 250;
const CONTEXT_MAX: u64 = -4095i64 as u64;
const CONTEXT_KERNEL: u64 = -128i64 as u64;
const CONTEXT_USER: u64 = -512i64 as u64;
const MISC_CPUMODE_MASK: u16 = 7;
const MISC_GUEST_KERNEL: u16 = 4;
const MISC_GUEST_USER: u16 = 5;
const RECORD_SWITCH: u32 = 14;
const MISC_SWITCH_OUT: u16 = 0x2000;
const MISC_SWITCH_OUT_PREEMPT: u16 = 0x4000;

/// What the sampler saw.
#[derive(Debug, Default, Clone)]
pub struct SampleSummary {
    /// Samples read.
    pub total: u64,
    /// Samples in a VMM or guest row, by category.
    pub by_category: BTreeMap<Category, u64>,
    /// Samples in worldswitch's own code or kernel work outside KVM_RUN.
    pub outside_kvm_run: u64,
    /// Records lost in the ring buffer.
    pub lost: u64,
    /// Seconds the thread was runnable but preempted (switched out with
    /// PERF_RECORD_MISC_SWITCH_OUT_PREEMPT until switched back in).
    pub preempted_seconds: f64,
    /// Times it was preempted.
    pub preemptions: u64,
    /// Samples outside KVM_RUN that rules put in a VMApp row, by row (the
    /// cross-check of the marker shares).
    pub vmapp_by_category: BTreeMap<Category, u64>,
    /// Folded stacks, `vcpu;world;category;frames...`, with sample counts.
    pub folded: BTreeMap<String, u64>,
    /// The sampler thread's own CPU time, in seconds.
    pub cost_seconds: f64,
}

/// A running sampler.
pub struct VcpuSampler {
    stop: Arc<AtomicBool>,
    live: Published<SampleSummary>,
    thread: JoinHandle<SampleSummary>,
}

impl VcpuSampler {
    /// Starts sampling thread `tid` at `hz`; with `stitch`, samples taken
    /// while an exit was handled get the guest stack walked at that exit,
    /// symbolized against the guest image.
    pub fn start(
        tid: libc::pid_t,
        hz: u64,
        stitch: Option<(Arc<StitchLog>, Arc<GuestImage>)>,
    ) -> Result<Self, String> {
        let kallsyms = Kallsyms::load().map_err(|e| format!("cannot read kernel symbols: {e}"))?;
        // Without our own symbols, user frames stay unnamed and VMApp
        // samples unclassified; the markers still measure those rows.
        let user_syms = UserSymbols::load().ok();
        let mut builder = Builder::new(Software::CPU_CLOCK);
        builder
            .observe_pid(tid)
            .any_cpu()
            .include_kernel()
            .sample_frequency(hz)
            .sample(SampleFlag::IP | SampleFlag::TID | SampleFlag::TIME | SampleFlag::CALLCHAIN)
            .clockid(Clock::MONOTONIC)
            // Context-switch records say when the thread was preempted.
            .context_switch(true)
            .sample_id_all(true);
        let counter = builder
            .build()
            .map_err(|e| format!("perf_event_open refused cpu-clock sampling: {e}; run as root or lower kernel.perf_event_paranoid"))?;
        let mut sampler = counter
            .sampled(1 << 20)
            .map_err(|e| format!("cannot map the perf ring buffer: {e}"))?;
        sampler
            .enable()
            .map_err(|e| format!("cannot enable sampling: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = stop.clone();
        let live = Published::default();
        let publish = live.clone();
        let thread = std::thread::Builder::new()
            .name("profiler".into())
            .spawn(move || {
                let mut every = Every::new(live::PERIOD);
                let mut summary = SampleSummary::default();
                let mut frames: Vec<&str> = Vec::with_capacity(64);
                let mut preempted_at: Option<u64> = None;
                let mut preempted_ns = 0u64;
                loop {
                    let stopping = stop_thread.load(Ordering::Acquire);
                    while let Some(record) = sampler.next_record() {
                        if record.ty() == RECORD_SWITCH {
                            // Body: the sample_id trailer, pid/tid then time.
                            let bytes = record.to_contiguous();
                            let Some(time) = bytes
                                .get(8..16)
                                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                            else {
                                continue;
                            };
                            let misc = record.misc();
                            if misc & MISC_SWITCH_OUT != 0 {
                                if misc & MISC_SWITCH_OUT_PREEMPT != 0 {
                                    preempted_at = Some(time);
                                    summary.preemptions += 1;
                                }
                            } else if let Some(out) = preempted_at.take() {
                                preempted_ns += time.saturating_sub(out);
                            }
                            continue;
                        }
                        let Ok(parsed) = record.parse_record() else {
                            continue;
                        };
                        match parsed {
                            Record::Sample(s) => {
                                summary.total += 1;
                                let mode = record.misc() & MISC_CPUMODE_MASK;
                                let category =
                                    if matches!(mode, MISC_GUEST_KERNEL | MISC_GUEST_USER) {
                                        Some(Category::GuestNative)
                                    } else {
                                        frames.clear();
                                        kernel_frames(
                                            s.callchain().unwrap_or(&[]),
                                            &kallsyms,
                                            &mut frames,
                                        );
                                        classify(&frames)
                                    };
                                let chain = s.callchain().unwrap_or(&[]);
                                match category {
                                    Some(c) => {
                                        *summary.by_category.entry(c).or_insert(0) += 1;
                                        add_stack(&mut summary.folded, fold(category, &frames));
                                    }
                                    None => {
                                        summary.outside_kvm_run += 1;
                                        // Our own code: name its frames and
                                        // find its VMApp row.
                                        let mut user = Vec::new();
                                        if let Some(syms) = &user_syms {
                                            user_frames(chain, syms, &mut user);
                                        }
                                        let leaf_first: Vec<&str> = frames
                                            .iter()
                                            .rev()
                                            .chain(user.iter().rev())
                                            .copied()
                                            .collect();
                                        let row = user_symbols::classify(&leaf_first);
                                        if let Some(row) = row {
                                            *summary.vmapp_by_category.entry(row).or_insert(0) += 1;
                                        }
                                        // The guest stack at the exit being
                                        // handled goes in front, marked.
                                        let guest: Vec<String> = match (&stitch, s.time()) {
                                            (Some((log, image)), Some(t)) => log
                                                .find(t)
                                                .map(|w| guest_frames(&w, image))
                                                .unwrap_or_default(),
                                            _ => Vec::new(),
                                        };
                                        let root_first: Vec<&str> = guest
                                            .iter()
                                            .map(String::as_str)
                                            .chain(user.iter().copied())
                                            .chain(frames.iter().copied())
                                            .collect();
                                        add_stack(
                                            &mut summary.folded,
                                            fold_outside(row, &root_first),
                                        );
                                    }
                                }
                            }
                            Record::Lost(l) => summary.lost += l.lost,
                            _ => {}
                        }
                    }
                    summary.preempted_seconds = preempted_ns as f64 * 1e-9;
                    if stopping {
                        break;
                    }
                    if every.due() {
                        summary.cost_seconds = super::thread_cpu_seconds();
                        publish.publish(summary.clone());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                summary.cost_seconds = super::thread_cpu_seconds();
                summary
            })
            .map_err(|e| format!("cannot start the profiler thread: {e}"))?;
        Ok(Self { stop, live, thread })
    }

    /// What it has seen so far (published every [`live::PERIOD`]).
    pub fn latest(&self) -> Option<SampleSummary> {
        self.live.latest()
    }

    /// Stops sampling and returns what was seen.
    pub fn finish(self) -> SampleSummary {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

/// A walked guest stack as folded frames, root first: `guest:` and the
/// function of each address in the guest image. The walk is cut at the
/// first address no guest symbol holds (an interrupt frame's saved values,
/// say), so no frame is made up.
fn guest_frames(w: &Walk, image: &GuestImage) -> Vec<String> {
    let mut frames: Vec<String> = w.addrs[..w.n]
        .iter()
        .map_while(|&a| image.symbolize(a))
        .map(|s| format!("guest:{}", s.split('+').next().unwrap_or(&s)))
        .collect();
    frames.reverse();
    frames
}

/// Distinct stacks kept (nettest makes about 100 in 2 s and 570 in a
/// minute, then a slow tail); past this, a new stack is counted under its
/// first three frames (thread, world, row) so a long run's memory stays
/// bounded and its rows stay right.
pub const MAX_STACKS: usize = 512;

/// Counts one sample of `stack`.
fn add_stack(folded: &mut BTreeMap<String, u64>, stack: String) {
    if let Some(n) = folded.get_mut(&stack) {
        *n += 1;
        return;
    }
    let key = if folded.len() < MAX_STACKS {
        stack
    } else {
        let head: Vec<&str> = stack.split(';').take(3).collect();
        format!("{};[other stacks]", head.join(";"))
    };
    *folded.entry(key).or_insert(0) += 1;
}

/// The folded stack of a sample outside KVM_RUN: its VMApp row, if a rule
/// claims it, then user and kernel frames, root first.
fn fold_outside(row: Option<Category>, frames: &[&str]) -> String {
    let mut s = format!("vcpu;vmapp;{}", row.map_or("vmapp_other", Category::key));
    if frames.is_empty() {
        s.push_str(";[unknown]");
    }
    for f in frames {
        s.push(';');
        s.push_str(f);
    }
    s
}

/// The user frames of a leaf-first callchain, root first.
fn user_frames<'u>(chain: &[u64], syms: &'u UserSymbols, out: &mut Vec<&'u str>) {
    let mut in_user = false;
    for &ip in chain {
        if ip >= CONTEXT_MAX {
            in_user = ip == CONTEXT_USER;
            continue;
        }
        if in_user {
            out.push(syms.name(ip).unwrap_or("[unknown]"));
        }
    }
    out.reverse();
}

/// The folded stack of a sample: thread, world, row, then its frames.
fn fold(category: Option<Category>, frames: &[&str]) -> String {
    let (world, row) = match category {
        Some(c) => (world_key(c.world()), c.key()),
        None => ("vmapp", "outside_kvm_run"),
    };
    let mut s = format!("vcpu;{world};{row}");
    if frames.is_empty() && category != Some(Category::GuestNative) {
        s.push_str(";[user space]");
    }
    for f in frames {
        s.push(';');
        s.push_str(f);
    }
    s
}

fn world_key(w: World) -> &'static str {
    match w {
        World::Guest => "guest",
        World::Vmm => "vmm",
        World::Vmapp => "vmapp",
        World::Host => "host",
        World::Workbench => "workbench",
    }
}

/// The kernel frames of a leaf-first callchain, root first.
fn kernel_frames<'k>(chain: &[u64], kallsyms: &'k Kallsyms, out: &mut Vec<&'k str>) {
    let mut in_kernel = false;
    for &ip in chain {
        if ip >= CONTEXT_MAX {
            in_kernel = ip == CONTEXT_KERNEL;
            continue;
        }
        if in_kernel {
            if let Some(name) = kallsyms.name(ip) {
                out.push(name);
            }
        }
    }
    out.reverse();
}

/// The row of a sample with these kernel frames: a VMM row under KVM_RUN;
/// on PVM, a sample with no kernel frame while the thread is inside
/// KVM_RUN is the guest running at CPL3, which callchains cannot tell from
/// worldswitch's own user code, so it counts as outside.
fn classify(frames: &[&str]) -> Option<Category> {
    if frames.is_empty() {
        return None;
    }
    let under_run = frames
        .iter()
        .any(|f| *f == "kvm_arch_vcpu_ioctl_run" || f.starts_with("kvm_vcpu_ioctl"));
    if !under_run {
        return None;
    }
    rules::classify(frames.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stacks_under_kvm_run_are_vmm_samples() {
        assert_eq!(
            classify(&[
                "do_syscall_64",
                "__x64_sys_ioctl",
                "kvm_vcpu_ioctl",
                "kvm_arch_vcpu_ioctl_run",
                "vcpu_load"
            ]),
            Some(Category::WorldSwitch)
        );
        assert_eq!(
            classify(&["do_syscall_64", "ksys_write", "tun_chr_write_iter"]),
            None
        );
        assert_eq!(classify(&[]), None);
    }

    #[test]
    fn distinct_stacks_are_bounded() {
        let mut f = BTreeMap::new();
        for i in 0..MAX_STACKS + 10 {
            add_stack(&mut f, format!("vcpu;vmm;world_switch;f{i}"));
        }
        add_stack(&mut f, "vcpu;vmm;world_switch;f0".into());
        assert!(f.len() <= MAX_STACKS + 1);
        assert_eq!(f["vcpu;vmm;world_switch;[other stacks]"], 10);
        assert_eq!(f["vcpu;vmm;world_switch;f0"], 2);
        assert_eq!(f.values().sum::<u64>(), MAX_STACKS as u64 + 11);
    }

    #[test]
    fn folded_stacks_name_thread_world_and_row() {
        assert_eq!(
            fold(
                Some(Category::WorldSwitch),
                &["kvm_vcpu_ioctl", "vcpu_load"]
            ),
            "vcpu;vmm;world_switch;kvm_vcpu_ioctl;vcpu_load"
        );
        assert_eq!(
            fold(Some(Category::GuestNative), &[]),
            "vcpu;guest;guest_native"
        );
        assert_eq!(fold(None, &[]), "vcpu;vmapp;outside_kvm_run;[user space]");
    }

    #[test]
    fn callchains_keep_only_kernel_frames_root_first() {
        let k = Kallsyms::parse("ffffffff81000000 T leaf\nffffffff81001000 T root\n").unwrap();
        let chain = [
            CONTEXT_KERNEL,
            0xffffffff81000010,
            0xffffffff81001010,
            -512i64 as u64,
            0x401000,
        ];
        let mut out = Vec::new();
        kernel_frames(&chain, &k, &mut out);
        assert_eq!(out, ["root", "leaf"]);
    }
}
