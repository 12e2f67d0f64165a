//! Tables built from constructed inputs: every combination of collectors a
//! run can have, and the off-CPU cases that once pushed shares past 100%.

use super::*;
use crate::inputs::{MarkerClock, MarkerRow};

/// A 1000 MHz TSC: a microsecond is 1000 cycles.
const TSC: f64 = 1000.0;

fn marker(category: Category, count: u64, seconds: f64) -> MarkerRow {
    MarkerRow {
        category,
        count,
        cycles: (seconds * TSC * 1e6) as u64,
        p50_cycles: 100.0,
        p99_cycles: 200.0,
    }
}

fn thread(cpu: f64, delay: Option<f64>, markers: Vec<MarkerRow>) -> MarkedThread {
    MarkedThread {
        cpu_seconds: cpu,
        run_delay_seconds: delay,
        markers,
        clock: MarkerClock::Tsc,
    }
}

fn inputs<'a>(vcpu: &'a MarkedThread, samples: Result<&'a SampleSummary, &'a str>) -> Inputs<'a> {
    Inputs {
        tsc_mhz: TSC,
        wall_seconds: 3.0,
        vcpu,
        io: None,
        pv: PvDrain::default(),
        samples,
        emulation: None,
        in_kernel_pio: 0.0,
    }
}

/// Every share in [0, 100] and all of them adding up to 100%.
fn assert_sane(t: &Table) {
    for r in &t.rows {
        assert!(
            (0.0..=100.0 + 1e-9).contains(&r.share_pct),
            "{} {} {:.3}%",
            r.category,
            r.thread.sampled_name(),
            r.share_pct
        );
    }
    let sum: f64 = t.rows.iter().map(|r| r.share_pct).sum();
    assert!((sum - 100.0).abs() < 1e-6, "rows add up to {sum}%");
    assert!(t.halted_seconds >= 0.0);
    for off in t.off_cpu.values() {
        assert!(off.preempted_seconds >= 0.0 && off.blocked_seconds >= 0.0);
    }
}

fn share(t: &Table, c: Category) -> f64 {
    t.row(c).map_or(0.0, |r| r.share_pct)
}

#[test]
fn without_sampling_kvm_run_is_cpu_time_and_the_wait_is_beside_the_table() {
    // The measured case: two CPU hogs beside a 3 s nettest. KVM_RUN ran
    // 2.8 s by the clock but the thread had 1.0 s of CPU and waited 1.5 s
    // runnable; its Lance rows took 0.2 s by the clock.
    let vcpu = thread(
        1.0,
        Some(1.5),
        vec![
            marker(Category::KvmRun, 10_000, 2.8),
            marker(Category::LanceTx, 2_000, 0.2),
        ],
    );
    let t = table(&inputs(&vcpu, Err("sampling is off (--sample-hz 0)")));
    assert_sane(&t);
    // The Lance row keeps the CPU part of its clock time: 1.0 / (1.0 + 1.5).
    let tx = t.row(Category::LanceTx).unwrap();
    assert!((tx.total_us - 0.2e6 * 0.4).abs() < 1.0, "{}", tx.total_us);
    assert_eq!(tx.count, 2_000);
    // KVM_RUN is the rest of the CPU time, all of it.
    let run = t.row(Category::KvmRun).unwrap();
    assert!((run.total_us - 0.92e6).abs() < 1.0, "{}", run.total_us);
    assert_eq!(run.source, Source::Markers);
    assert!(share(&t, Category::Unattributed) < 1e-6);
    // 1.5 s preempted: 0.12 s of it inside the Lance row, the rest inside
    // KVM_RUN; KVM_RUN's other 0.5 s off the CPU was halted.
    assert_eq!(t.preempted_seconds, Some(1.5));
    let off = t.off_cpu[&Thread::Vcpu];
    assert!((off.preempted_seconds - 0.12).abs() < 1e-6, "{off:?}");
    assert!((t.halted_seconds - (2.8 - 0.92 - 1.38)).abs() < 1e-6);
    // The KVM rows say why they are missing.
    let why = t
        .unavailable
        .iter()
        .find(|u| u.category == Category::ExitToUser)
        .unwrap();
    assert!(why.reason.contains("--sample-hz 0"), "{}", why.reason);
}

#[test]
fn without_a_run_delay_the_kvm_run_row_still_stays_within_the_cpu_time() {
    // A kernel without schedstat and no sampler: nothing says how long the
    // thread waited, yet no row may exceed the CPU time.
    let vcpu = thread(
        1.0,
        None,
        vec![
            marker(Category::KvmRun, 10, 2.5),
            marker(Category::PioDispatch, 10, 1.5),
        ],
    );
    let t = table(&inputs(&vcpu, Err("sampling is off")));
    assert_sane(&t);
    // The dispatch row slept inside its scope: cut to the CPU time, the
    // rest blocked.
    assert!((share(&t, Category::PioDispatch) - 100.0).abs() < 1e-6);
    assert!((t.off_cpu[&Thread::Vcpu].blocked_seconds - 0.5).abs() < 1e-6);
    assert_eq!(share(&t, Category::KvmRun), 0.0);
    assert!(t
        .unavailable
        .iter()
        .any(|u| u.category == Category::Preempted));
}

#[test]
fn with_sampling_kvm_run_is_split_by_the_kernel_stacks() {
    let vcpu = thread(
        2.0,
        Some(0.1),
        vec![
            marker(Category::KvmRun, 1000, 1.9),
            marker(Category::VmnetTx, 100, 0.4),
        ],
    );
    let mut s = SampleSummary {
        total: 100,
        ..Default::default()
    };
    s.by_category.insert(Category::GuestNative, 60);
    s.by_category.insert(Category::ExitToUser, 20);
    s.vmapp_by_category.insert(Category::VmnetTx, 20);
    s.threads.insert("vcpu".into(), 100);
    let t = table(&inputs(&vcpu, Ok(&s)));
    assert_sane(&t);
    assert!(t.row(Category::KvmRun).is_none(), "split, not undivided");
    let native = t.row(Category::GuestNative).unwrap();
    let exit = t.row(Category::ExitToUser).unwrap();
    assert_eq!(native.source, Source::Sampling);
    assert_eq!(native.samples, Some(60));
    assert!((native.total_us / exit.total_us - 3.0).abs() < 1e-3);
    // The TAP write's marker share beside its sampled share.
    let c = t
        .row(Category::VmnetTx)
        .unwrap()
        .cross_check
        .clone()
        .unwrap();
    assert!((c.sampled_share_pct - 20.0).abs() < 1e-9);
    assert!((c.marker_share_pct - 0.4 * (2.0 / 2.1) / 2.0 * 100.0).abs() < 1e-3);
    let missing: Vec<Category> = t.unavailable.iter().map(|u| u.category).collect();
    assert!(missing.contains(&Category::Iret) && !missing.contains(&Category::GuestNative));
}

#[test]
fn emulation_windows_split_the_emulation_row_or_say_why_not() {
    let vcpu = thread(1.0, Some(0.0), vec![marker(Category::KvmRun, 10, 1.0)]);
    let mut s = SampleSummary {
        total: 100,
        ..Default::default()
    };
    s.by_category.insert(Category::EmulatedOrdinary, 50);
    s.by_category.insert(Category::GuestNative, 50);
    let e = EmulationSummary {
        ordinary: 50,
        privileged: 20,
        iret: 10,
        pio: 20,
        ..Default::default()
    };
    let mut i = inputs(&vcpu, Ok(&s));
    let without = table(&i);
    assert!((share(&without, Category::EmulatedOrdinary) - 50.0).abs() < 1e-6);
    i.emulation = Some(&e);
    i.in_kernel_pio = 0.5;
    let t = table(&i);
    assert_sane(&t);
    assert!((share(&t, Category::EmulatedOrdinary) - 25.0).abs() < 1e-6);
    assert!((share(&t, Category::Privileged) - 10.0).abs() < 1e-6);
    assert!((share(&t, Category::Iret) - 5.0).abs() < 1e-6);
    assert!((share(&t, Category::PioInKernel) - 5.0).abs() < 1e-6);
    assert!((share(&t, Category::ExitToUser) - 5.0).abs() < 1e-6);
    assert_eq!(
        t.row(Category::Iret).unwrap().source,
        Source::EmulationWindows
    );
    // Windows the kernel refused leave the emulation row whole, and say so.
    let refused = EmulationSummary {
        refused: Some("the kernel refused the tracepoint".into()),
        ..Default::default()
    };
    i.emulation = Some(&refused);
    let t = table(&i);
    assert!((share(&t, Category::EmulatedOrdinary) - 50.0).abs() < 1e-6);
    let why = t
        .unavailable
        .iter()
        .find(|u| u.category == Category::Iret)
        .unwrap();
    assert!(
        why.reason.starts_with("the kernel refused"),
        "{}",
        why.reason
    );
    // A run over before the first window (half a period in) says that.
    let none = EmulationSummary::default();
    i.emulation = Some(&none);
    let t = table(&i);
    assert!((share(&t, Category::EmulatedOrdinary) - 50.0).abs() < 1e-6);
    let why = t
        .unavailable
        .iter()
        .find(|u| u.category == Category::Privileged)
        .unwrap();
    assert!(
        why.reason.contains("before the first emulation window"),
        "{}",
        why.reason
    );
}

#[test]
fn the_pv_drain_thread_is_split_by_its_samples() {
    let vcpu = thread(4.0, Some(0.0), vec![marker(Category::KvmRun, 10, 4.0)]);
    let none = SampleSummary::default();
    let mut i = inputs(&vcpu, Ok(&none));
    i.pv = PvDrain {
        cpu_seconds: 1.0,
        frames: 1000,
    };
    assert_eq!(table(&i).denominator_seconds, 4.0, "no samples, no rows");
    let mut s = SampleSummary::default();
    s.pv_by_category.insert(Category::HostEvents, 10);
    s.pv_by_category.insert(Category::VmnetTx, 60);
    s.pv_by_category.insert(Category::Peer, 30);
    i.samples = Ok(&s);
    i.pv.frames = 0;
    assert_eq!(
        table(&i).denominator_seconds,
        4.0,
        "a drain that sent nothing has no rows"
    );
    i.pv.frames = 1000;
    let t = table(&i);
    assert_sane(&t);
    assert_eq!(t.denominator_seconds, 5.0);
    assert!(t.denominator.contains("vCPU and pv-nic threads"));
    let pv = |c| t.row_of(c, Thread::Pvnet).unwrap().total_us;
    assert!((pv(Category::VmnetTx) - 0.6e6).abs() < 1.0);
    assert!((pv(Category::Peer) - 0.3e6).abs() < 1.0);
    assert!((pv(Category::HostEvents) - 0.1e6).abs() < 1.0);
    assert!(t.unavailable.iter().all(|u| u.category != Category::Peer));
}

#[test]
fn the_peers_part_of_the_tap_write_is_split_out_by_samples() {
    let vcpu = thread(
        1.0,
        Some(0.0),
        vec![
            marker(Category::KvmRun, 10, 0.6),
            marker(Category::VmnetTx, 100, 0.4),
        ],
    );
    let mut s = SampleSummary {
        total: 100,
        ..Default::default()
    };
    s.by_category.insert(Category::GuestNative, 60);
    s.vmapp_by_category.insert(Category::VmnetTx, 10);
    s.vmapp_by_category.insert(Category::Peer, 30);
    let t = table(&inputs(&vcpu, Ok(&s)));
    assert_sane(&t);
    let (tx, peer) = (
        t.row(Category::VmnetTx).unwrap(),
        t.row(Category::Peer).unwrap(),
    );
    assert!((tx.share_pct - 10.0).abs() < 1e-6);
    assert!((peer.share_pct - 30.0).abs() < 1e-6);
    assert_eq!(tx.source, Source::SplitBySamples);
    assert_eq!(peer.source, Source::SplitBySamples);
    assert_eq!((tx.p99_us, peer.p99_us), (0.0, 0.0));
    // The cross-check counts the whole write, the peer's part too.
    let c = tx.cross_check.as_ref().unwrap();
    assert!((c.sampled_share_pct - 40.0).abs() < 1e-9);
}

#[test]
fn a_preempted_tsc_timed_thread_keeps_its_rows_to_its_cpu_time() {
    // A thread whose markers time by the TSC, preempted inside its scopes:
    // its host_events would read 32% of its CPU by the clock.
    let vcpu = thread(1.0, Some(0.0), vec![marker(Category::KvmRun, 10, 1.0)]);
    let io = thread(
        1.0,
        Some(0.6),
        vec![
            marker(Category::HostEvents, 1000, 0.32),
            marker(Category::VmnetRx, 1000, 0.16),
        ],
    );
    let mut s = SampleSummary {
        total: 100,
        ..Default::default()
    };
    s.by_category.insert(Category::GuestNative, 100);
    s.io_by_category.insert(Category::HostEvents, 20);
    s.io_by_category.insert(Category::VmnetRx, 10);
    s.threads.insert("io".into(), 100);
    let mut i = inputs(&vcpu, Ok(&s));
    i.io = Some(&io);
    let t = table(&i);
    assert_sane(&t);
    assert_eq!(t.denominator_seconds, 2.0);
    let host = t.row_of(Category::HostEvents, Thread::Io).unwrap();
    let c = host.cross_check.as_ref().unwrap();
    // 0.32 s by the clock, of which 1.0 / 1.6 on the CPU: 20% of its CPU.
    assert!((c.marker_share_pct - 20.0).abs() < 1e-6, "{c:?}");
    assert!((c.marker_share_pct - c.sampled_share_pct).abs() < 3.0);
    let off = t.off_cpu[&Thread::Io];
    assert!(
        (off.preempted_seconds - 0.48 * 0.6 / 1.6).abs() < 1e-6,
        "{off:?}"
    );
}

#[test]
fn a_vmm_we_did_not_start_has_no_markers_only_samples() {
    let vcpu = thread(2.0, Some(0.5), Vec::new());
    let mut s = SampleSummary {
        total: 200,
        outside_kvm_run: 50,
        ..Default::default()
    };
    s.by_category.insert(Category::GuestNative, 100);
    s.by_category.insert(Category::ExitToUser, 50);
    let t = table(&inputs(&vcpu, Ok(&s)));
    assert_sane(&t);
    // 150 of 200 samples inside KVM_RUN: 1.5 s of the 2 s.
    let native = t.row(Category::GuestNative).unwrap();
    assert!((native.total_us - 1.0e6).abs() < 1.0);
    assert!((share(&t, Category::ExitToUser) - 25.0).abs() < 1e-6);
    assert!((share(&t, Category::Unattributed) - 25.0).abs() < 1e-6);
    assert_eq!(t.halted_seconds, 0.0);
    assert_eq!(t.preempted_seconds, Some(0.5));
    assert_eq!(t.vcpu_marker_seconds, 0.0);
    // No markers and no samples: all of it unattributed, nothing invented.
    let t = table(&inputs(&vcpu, Err("perf events are not allowed")));
    assert_sane(&t);
    assert!((share(&t, Category::Unattributed) - 100.0).abs() < 1e-6);
}

#[test]
fn markers_that_time_cpu_keep_their_rows_whatever_the_run_delay() {
    // The I/O thread sleeps in poll between its scopes, so its run delay
    // is mostly waiting to wake, outside them: its markers time its CPU.
    let vcpu = thread(1.0, Some(0.0), vec![marker(Category::KvmRun, 10, 1.0)]);
    let ns = |ms: f64| (ms * 1e6) as u64;
    let io = MarkedThread {
        cpu_seconds: 0.5,
        run_delay_seconds: Some(0.4),
        markers: vec![MarkerRow {
            category: Category::HostEvents,
            count: 100,
            cycles: ns(200.0),
            p50_cycles: 1000.0,
            p99_cycles: 2000.0,
        }],
        clock: MarkerClock::ThreadCpuNs,
    };
    let mut i = inputs(&vcpu, Err("sampling is off"));
    i.io = Some(&io);
    let t = table(&i);
    assert_sane(&t);
    let host = t.row_of(Category::HostEvents, Thread::Io).unwrap();
    assert!((host.total_us - 200_000.0).abs() < 1.0, "{}", host.total_us);
    assert!(
        (host.p50_us - 1.0).abs() < 1e-9,
        "ns, not cycles: {}",
        host.p50_us
    );
    assert_eq!(t.off_cpu[&Thread::Io].preempted_seconds, 0.0);
}
