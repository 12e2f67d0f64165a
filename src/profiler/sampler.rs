//! Sampling every worldswitch thread with perf events (cpu-clock, kernel
//! and user callchains, CLOCK_MONOTONIC timestamps) from a profiler thread
//! of its own. Kernel stacks of the vCPU thread under `KVM_RUN` go into
//! the VMM rows by the rules in `profiles`; samples the CPU took in guest
//! mode (or, on PVM, in host user mode at the guest's RIP while inside
//! `KVM_RUN`) are guest time. Samples of the other threads (the I/O thread,
//! the peer, the flusher, the profiler and the workbench) are named by
//! their own frames and folded under the thread's name.

use super::kallsyms::Kallsyms;
use super::live::{self, Every, Published};
use super::stitch::{StitchLog, Walk};
use super::user_symbols::{self, UserSymbols};
use crate::machine::guest_image::GuestImage;
use perf_event::data::Record;
use perf_event::events::Software;
use perf_event::{Builder, Clock, SampleFlag, Sampler as Ring};
use profiles::rules;
use profiles::taxonomy::{Category, Thread, World};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Samples per second by default: at 1000 Hz sampling cost 4% of nettest
/// throughput on a nested PVM host, at 250 Hz it is within the noise.
pub const DEFAULT_HZ: u64 = 250;
/// The vCPU thread's name in folded stacks and sample counts.
pub const VCPU: &str = Thread::Vcpu.sampled_name();
/// The I/O thread's name in folded stacks and sample counts.
pub const IO: &str = Thread::Io.sampled_name();
/// The pv-nic drain thread's name in folded stacks and sample counts.
pub const PVNET: &str = Thread::Pvnet.sampled_name();
const CONTEXT_MAX: u64 = -4095i64 as u64;
const CONTEXT_KERNEL: u64 = -128i64 as u64;
const CONTEXT_USER: u64 = -512i64 as u64;
const MISC_CPUMODE_MASK: u16 = 7;
const MISC_GUEST_KERNEL: u16 = 4;
const MISC_GUEST_USER: u16 = 5;
const RECORD_SWITCH: u32 = 14;
const MISC_SWITCH_OUT: u16 = 0x2000;
const MISC_SWITCH_OUT_PREEMPT: u16 = 0x4000;
/// Ring buffer per thread: the vCPU thread samples all the time; the
/// others are mostly asleep (a few samples per poll at most).
const VCPU_RING: usize = 1 << 20;
const OTHER_RING: usize = 1 << 16;

pub use profiles::inputs::SampleSummary;

/// What a thread does, for naming its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Runs the guest: rows from the KVM rules and the VMApp rules.
    Vcpu,
    /// Reads the TAP and kicks the vCPU: rows from the VMApp rules.
    Io,
    /// Drains the paravirtual NIC's ring into the TAP: rows from the
    /// VMApp rules.
    Pvnet,
    /// Any other thread: one world and row for all its samples.
    Other {
        world: &'static str,
        row: &'static str,
    },
}

/// The name and role of thread `comm` in folded stacks.
fn role_of(comm: &str) -> (String, Role) {
    let other = |world, row| Role::Other { world, row };
    match comm {
        "vmnet-io" => (IO.into(), Role::Io),
        "vmnet-peer" => ("peer".into(), other("host", "receiver")),
        "flusher" => ("flusher".into(), other("vmapp", "coalesced_ring")),
        "pvnet" => (PVNET.into(), Role::Pvnet),
        "vcpu-watchdog" => ("watchdog".into(), other("vmapp", "watchdog")),
        "profiler" | "profiler-emul" => (comm.into(), other("workbench", "profiler")),
        // KVM's own worker for the VM (NX huge page recovery) joins the
        // process's threads.
        "kvm-nx-lpage-re" => ("kvm-worker".into(), other("vmm", "kvm_worker")),
        // The vCPU being measured is watched by its ID; another one is the
        // cost model's calibration VM, which the workbench runs beside it.
        "vcpu0" => ("calibration-vcpu".into(), other("workbench", "cost_model")),
        _ => (comm.into(), other("workbench", "workbench")),
    }
}

/// One thread being sampled.
struct Watched {
    tid: libc::pid_t,
    name: String,
    role: Role,
    ring: Ring,
    preempted_at: Option<u64>,
}

/// Opens cpu-clock sampling of thread `tid` at `hz`; context-switch records
/// (when it was preempted) only for the vCPU thread.
fn open(tid: libc::pid_t, hz: u64, vcpu: bool) -> std::io::Result<Ring> {
    if let (false, Some(e)) = (vcpu, crate::injected::perf_refused()) {
        return Err(e);
    }
    open_ring(
        tid,
        hz,
        if vcpu { VCPU_RING } else { OTHER_RING },
        vcpu,
        None,
    )
}

/// The user registers a sample carries for unwinding its copy of the
/// user stack: BP, SP and IP (perf's x86 register numbers 6, 7 and 8), in
/// that order.
pub(crate) const UNWIND_REGS: u64 = (1 << 6) | (1 << 7) | (1 << 8);

/// Opens and enables cpu-clock sampling of thread `tid` (of any process)
/// at `hz` with kernel and user callchains, into a ring of `ring` bytes,
/// with context-switch records if `switches`. With `user_stack` bytes,
/// samples carry the user registers and that much of the user stack
/// instead of a frame-pointer walk of it.
pub(crate) fn open_ring(
    tid: libc::pid_t,
    hz: u64,
    ring: usize,
    switches: bool,
    user_stack: Option<u32>,
) -> std::io::Result<Ring> {
    let mut builder = Builder::new(Software::CPU_CLOCK);
    let flags = SampleFlag::IP | SampleFlag::TID | SampleFlag::TIME | SampleFlag::CALLCHAIN;
    builder
        .observe_pid(tid)
        .any_cpu()
        .include_kernel()
        .sample_frequency(hz)
        .sample(flags)
        .clockid(Clock::MONOTONIC)
        .context_switch(switches)
        .sample_id_all(true);
    if let Some(bytes) = user_stack {
        builder
            .sample(flags | SampleFlag::REGS_USER | SampleFlag::STACK_USER)
            .sample_regs_user(UNWIND_REGS)
            .sample_stack_user(bytes)
            .exclude_callchain_user(true);
    }
    let mut ring = builder.build()?.sampled(ring)?;
    ring.enable()?;
    Ok(ring)
}

/// The IDs of this process's threads.
fn threads() -> BTreeSet<libc::pid_t> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn comm(tid: libc::pid_t) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("thread-{tid}"))
}

/// Samples a timeline keeps: about an hour of the vCPU thread at the
/// default rate, 24 bytes each; later samples are counted, not kept.
const TIMED_KEEP: usize = 1 << 20;

/// Each sample's time (CLOCK_MONOTONIC ns) and stack, in the order they
/// were read (each thread's in time order), for a recording's timeline.
#[derive(Debug, Clone, Default)]
pub struct Timed {
    /// (time, folded stack) of each sample kept.
    pub samples: Vec<(u64, Arc<str>)>,
    /// Samples past [`TIMED_KEEP`], counted in the folded stacks only.
    pub left_out: u64,
}

impl Timed {
    fn push(&mut self, t: u64, stack: Arc<str>) {
        if self.samples.len() < TIMED_KEEP {
            self.samples.push((t, stack));
        } else {
            self.left_out += 1;
        }
    }
}

/// A running sampler.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    live: Published<SampleSummary>,
    thread: JoinHandle<(SampleSummary, Option<Timed>)>,
}

impl Sampler {
    /// Starts sampling every thread of this process at `hz`, the vCPU
    /// thread `vcpu_tid` from now and the others from the profiler thread's
    /// first look (and threads started later within [`live::PERIOD`] of
    /// starting). With `stitch`, vCPU samples taken while an exit was
    /// handled get the guest stack walked at that exit, symbolized against
    /// the guest image. With `timeline`, each sample's time and stack is
    /// kept too ([`Sampler::finish`] returns them).
    pub fn start(
        vcpu_tid: libc::pid_t,
        hz: u64,
        stitch: Option<(Arc<StitchLog>, Arc<GuestImage>)>,
        timeline: bool,
    ) -> Result<Self, String> {
        Kallsyms::check().map_err(|e| format!("cannot read kernel symbols: {e}"))?;
        // The symbol tables load beside the run, off its start's critical
        // path (tens of milliseconds each); the rings hold the samples
        // meanwhile. Without our own symbols, user frames stay unnamed and
        // VMApp samples unclassified; the markers still measure those rows.
        // Both at once, each on a thread of its own.
        let load = |name: &str| std::thread::Builder::new().name(name.into());
        let not_started = |e| format!("cannot start the profiler: {e}");
        let kernel_syms = load("profiler-ksyms")
            .spawn(|| {
                super::yield_to_measured_threads();
                Kallsyms::load().unwrap_or_default()
            })
            .map_err(not_started)?;
        let user_syms = load("profiler-usyms")
            .spawn(|| {
                super::yield_to_measured_threads();
                UserSymbols::load().ok()
            })
            .map_err(not_started)?;
        let ring = open(vcpu_tid, hz, true)
            .map_err(|e| format!("perf_event_open refused cpu-clock sampling: {e}; run as root or lower kernel.perf_event_paranoid"))?;
        let mut watched = vec![Watched {
            tid: vcpu_tid,
            name: VCPU.into(),
            role: Role::Vcpu,
            ring,
            preempted_at: None,
        }];

        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = stop.clone();
        let live = Published::default();
        let publish = live.clone();
        let thread = std::thread::Builder::new()
            .name("profiler".into())
            .spawn(move || {
                super::yield_to_measured_threads();
                let mut summary = SampleSummary::default();
                let mut timed = timeline.then(Timed::default);
                // The other threads are watched from now, symbols or not.
                watch_new(&mut watched, &threads(), hz, &mut summary);
                let namer = Namer {
                    kallsyms: kernel_syms.join().unwrap_or_default(),
                    user_syms: user_syms.join().ok().flatten(),
                    stitch,
                };
                let mut every = Every::new(live::PERIOD);
                let mut preempted_ns = 0u64;
                let mut look = true;
                loop {
                    let stopping = stop_thread.load(Ordering::Acquire);
                    // Threads missing from this list ended before the
                    // drain below, so all their records are read by it.
                    let alive = look.then(threads);
                    for w in &mut watched {
                        drain(w, &namer, &mut summary, &mut preempted_ns, &mut timed);
                    }
                    if let Some(alive) = alive {
                        watched.retain(|w| w.role == Role::Vcpu || alive.contains(&w.tid));
                        watch_new(&mut watched, &alive, hz, &mut summary);
                    }
                    summary.preempted_seconds = preempted_ns as f64 * 1e-9;
                    if stopping {
                        break;
                    }
                    look = every.due();
                    if look {
                        summary.cost_seconds = super::thread_cpu_seconds();
                        publish.publish(summary.clone());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                summary.cost_seconds = super::thread_cpu_seconds();
                super::drop_side_by_side(watched.into_iter().map(|w| w.ring));
                (summary, timed)
            })
            .map_err(|e| format!("cannot start the profiler thread: {e}"))?;
        Ok(Self { stop, live, thread })
    }

    /// What it has seen so far (published every [`live::PERIOD`]).
    pub fn latest(&self) -> Option<SampleSummary> {
        self.live.latest()
    }

    /// Stops sampling and returns what was seen, with each sample's time
    /// and stack if they were kept.
    pub fn finish(self) -> (SampleSummary, Option<Timed>) {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

/// Starts sampling the threads in `alive` not yet watched. A thread that
/// ended meanwhile is skipped; one the kernel refuses is named in
/// `unwatched` with the reason.
fn watch_new(
    watched: &mut Vec<Watched>,
    alive: &BTreeSet<libc::pid_t>,
    hz: u64,
    summary: &mut SampleSummary,
) {
    for &tid in alive {
        if watched.iter().any(|w| w.tid == tid) {
            continue;
        }
        let (name, role) = role_of(&comm(tid));
        match open(tid, hz, false) {
            Ok(ring) => {
                summary.unwatched.remove(&name);
                watched.push(Watched {
                    tid,
                    name,
                    role,
                    ring,
                    preempted_at: None,
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => {
                summary.unwatched.insert(name, e.to_string());
            }
        }
    }
}

/// Reads every record waiting in `w`'s ring into `summary`, and each
/// sample's time and stack into `timed` where it is kept.
fn drain(
    w: &mut Watched,
    namer: &Namer,
    summary: &mut SampleSummary,
    preempted_ns: &mut u64,
    timed: &mut Option<Timed>,
) {
    while let Some(record) = w.ring.next_record() {
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
                    w.preempted_at = Some(time);
                    summary.preemptions += 1;
                }
            } else if let Some(out) = w.preempted_at.take() {
                *preempted_ns += time.saturating_sub(out);
            }
            continue;
        }
        let misc = record.misc();
        match record.parse_record() {
            Ok(Record::Sample(s)) => {
                let chain = s.callchain().unwrap_or(&[]);
                let stack = match w.role {
                    Role::Vcpu => namer.vcpu_sample(misc, chain, s.time(), summary),
                    role => namer.other_sample(&w.name, role, chain, summary),
                };
                if let (Some(timed), Some(t)) = (timed.as_mut(), s.time()) {
                    timed.push(t, stack);
                }
            }
            Ok(Record::Lost(l)) => summary.lost += l.lost,
            _ => {}
        }
    }
}

/// What names a sample's frames and finds its row.
struct Namer {
    kallsyms: Kallsyms,
    user_syms: Option<UserSymbols>,
    stitch: Option<(Arc<StitchLog>, Arc<GuestImage>)>,
}

impl Namer {
    /// A sample of the vCPU thread: a KVM row under KVM_RUN, else a VMApp
    /// row by its own frames, with the guest stack of the exit being
    /// handled in front when stitching.
    fn vcpu_sample(
        &self,
        misc: u16,
        chain: &[u64],
        time: Option<u64>,
        summary: &mut SampleSummary,
    ) -> Arc<str> {
        summary.total += 1;
        *summary.threads.entry(VCPU.into()).or_insert(0) += 1;
        let mut frames = Vec::with_capacity(64);
        let mode = misc & MISC_CPUMODE_MASK;
        let category = if matches!(mode, MISC_GUEST_KERNEL | MISC_GUEST_USER) {
            Some(Category::GuestNative)
        } else {
            kernel_frames(chain, &self.kallsyms, &mut frames);
            classify(&frames)
        };
        if let Some(c) = category {
            *summary.by_category.entry(c).or_insert(0) += 1;
            return add_stack(&mut summary.folded, fold(category, &frames));
        }
        summary.outside_kvm_run += 1;
        let user = self.user_frames(chain);
        let row = own_row(&frames, &user);
        if let Some(row) = row {
            *summary.vmapp_by_category.entry(row).or_insert(0) += 1;
        }
        let guest: Vec<String> = match (&self.stitch, time) {
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
        let row = row.map_or("vmapp_other", Category::key);
        add_stack(
            &mut summary.folded,
            fold_frames(VCPU, "vmapp", row, &root_first),
        )
    }

    /// A sample of another thread: the I/O thread's rows by the VMApp
    /// rules, any other thread's by what the thread is.
    fn other_sample(
        &self,
        name: &str,
        role: Role,
        chain: &[u64],
        summary: &mut SampleSummary,
    ) -> Arc<str> {
        match summary.threads.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                summary.threads.insert(name.into(), 1);
            }
        }
        let mut kernel = Vec::with_capacity(64);
        kernel_frames(chain, &self.kallsyms, &mut kernel);
        let user = self.user_frames(chain);
        let (world, row) = match role {
            Role::Other { world, row } => (world, row),
            // The I/O thread's poll() is its wait for the TAP, which its
            // markers leave out (they time work, and it sleeps there); on
            // the vCPU thread the same call is the per-exit host event.
            Role::Pvnet => {
                // Its poll() is the doorbell's eventfd (a host event); what
                // is neither that, the TAP write nor the peer's stack in it
                // is the drain's own work on the ring: transmitting too.
                let row = match own_row(&kernel, &user) {
                    Some(row) => row,
                    None => Category::VmnetTx,
                };
                *summary.pv_by_category.entry(row).or_insert(0) += 1;
                ("vmapp", row.key())
            }
            _ if kernel.contains(&"do_sys_poll") => ("vmapp", "io_wait"),
            _ => {
                let row = own_row(&kernel, &user);
                if let Some(row) = row {
                    *summary.io_by_category.entry(row).or_insert(0) += 1;
                }
                ("vmapp", row.map_or("io_other", Category::key))
            }
        };
        let root_first: Vec<&str> = user.iter().chain(kernel.iter()).copied().collect();
        add_stack(
            &mut summary.folded,
            fold_frames(name, world, row, &root_first),
        )
    }

    /// The user frames of a leaf-first callchain, root first.
    fn user_frames(&self, chain: &[u64]) -> Vec<&str> {
        let mut out = Vec::new();
        if let Some(syms) = &self.user_syms {
            user_frames(chain, syms, &mut out);
        }
        out
    }
}

/// The VMApp row worldswitch's own rules give a sample with these kernel
/// and user frames (each root first): the leaf-most claimed frame wins.
fn own_row(kernel: &[&str], user: &[&str]) -> Option<Category> {
    let leaf_first: Vec<&str> = kernel
        .iter()
        .rev()
        .chain(user.iter().rev())
        .copied()
        .collect();
    user_symbols::classify(&leaf_first)
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

/// Counts one sample of `stack`; returns the key it was counted under.
pub(crate) fn add_stack(folded: &mut BTreeMap<Arc<str>, u64>, stack: String) -> Arc<str> {
    let key = if folded.len() < MAX_STACKS || folded.contains_key(stack.as_str()) {
        stack
    } else {
        let head: Vec<&str> = stack.split(';').take(3).collect();
        format!("{};[other stacks]", head.join(";"))
    };
    if let Some((k, _)) = folded.get_key_value(key.as_str()) {
        let k = k.clone();
        *folded.get_mut(&k).expect("just found") += 1;
        return k;
    }
    let k: Arc<str> = key.into();
    folded.insert(k.clone(), 1);
    k
}

/// Folded stacks as plain strings, for profiles and snapshots.
pub fn owned(folded: &BTreeMap<Arc<str>, u64>) -> BTreeMap<String, u64> {
    folded.iter().map(|(k, &v)| (k.to_string(), v)).collect()
}

/// The folded stack of a sample outside KVM_RUN: thread, world and row,
/// then its frames, root first.
pub(crate) fn fold_frames(thread: &str, world: &str, row: &str, frames: &[&str]) -> String {
    let mut s = format!("{thread};{world};{row}");
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
        Some(c) => (c.world().map_or("kvm", world_key), c.key()),
        None => ("vmapp", "outside_kvm_run"),
    };
    let mut s = format!("{VCPU};{world};{row}");
    if frames.is_empty() && category != Some(Category::GuestNative) {
        s.push_str(";[user space]");
    }
    for f in frames {
        s.push(';');
        s.push_str(f);
    }
    s
}

pub(crate) fn world_key(w: World) -> &'static str {
    match w {
        World::Guest => "guest",
        World::Vmm => "vmm",
        World::Vmapp => "vmapp",
        World::Host => "host",
        World::Workbench => "workbench",
    }
}

/// The row of a sample of a vCPU thread by its cpumode and kernel frames
/// (root first): the guest running, or a VMM row under KVM_RUN; None
/// outside KVM_RUN.
pub(crate) fn kvm_run_row(misc: u16, kernel: &[&str]) -> Option<Category> {
    if matches!(
        misc & MISC_CPUMODE_MASK,
        MISC_GUEST_KERNEL | MISC_GUEST_USER
    ) {
        return Some(Category::GuestNative);
    }
    classify(kernel)
}

/// The kernel frames of a leaf-first callchain, root first.
pub(crate) fn kernel_frames<'k>(chain: &[u64], kallsyms: &'k Kallsyms, out: &mut Vec<&'k str>) {
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
        assert_eq!(owned(&f).len(), f.len());
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
        assert_eq!(
            fold_frames("peer", "host", "receiver", &["recv", "udp_recvmsg"]),
            "peer;host;receiver;recv;udp_recvmsg"
        );
        assert_eq!(
            fold_frames(IO, "vmapp", "io_other", &[]),
            "io;vmapp;io_other;[unknown]"
        );
    }

    #[test]
    fn threads_are_named_for_what_they_do() {
        assert_eq!(role_of("vmnet-io"), (IO.to_string(), Role::Io));
        let (name, role) = role_of("vmnet-peer");
        assert_eq!(name, "peer");
        assert_eq!(
            role,
            Role::Other {
                world: "host",
                row: "receiver"
            }
        );
        assert_eq!(role_of("profiler-emul").0, "profiler-emul");
        assert_eq!(role_of("vcpu0").0, "calibration-vcpu");
        assert!(matches!(
            role_of("engine").1,
            Role::Other {
                world: "workbench",
                ..
            }
        ));
    }

    #[test]
    fn every_thread_of_the_process_is_found() {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        let t = std::thread::Builder::new()
            .name("sampled-test".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                let other = unsafe { libc::gettid() };
                let all = threads();
                assert!(all.contains(&me) && all.contains(&other));
                assert_eq!(comm(other), "sampled-test");
            })
            .unwrap();
        t.join().unwrap();
    }

    #[test]
    fn callchains_keep_only_kernel_frames_root_first() {
        let k =
            Kallsyms::parse("ffffffff81000000 T leaf\nffffffff81001000 T root\n".into()).unwrap();
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
