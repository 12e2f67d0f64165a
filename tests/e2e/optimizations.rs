//! Optimizations flipped while nettest runs, each proved from outside
//! worldswitch: the kernel's kvm_userspace_exit and kvm_pio tracepoints on
//! the vCPU thread say how many port accesses KVM completed itself and how
//! many came out to user space, per frame, in each phase; the guest's own
//! counters say it kept making the same accesses; and the frame accounting
//! and sequence numbers stay exact across every flip.

use crate::{kvm_or_skip, tracefs_ready};
use std::time::{Duration, Instant};
use worldswitch::cli::RunArgs;
use worldswitch::machine::optimizations::{Opt, Preset};
use worldswitch::profiler::tracepoints::ThreadCounters;
use worldswitch::session::Workbench;

const EXITS: &str = "kvm/kvm_userspace_exit";
const PIO: &str = "kvm/kvm_pio";
/// The vCPU thread's poll() calls: with irq-notify off it polls the TAP
/// after every exit to user space.
const POLL: &str = "syscalls/sys_enter_poll";

/// The vCPU thread's ioctls: besides `KVM_RUN` (one per return, which
/// kvm_userspace_exit counts), its `KVM_IRQ_LINE`s. With irq-notify on the
/// NIC's line is a resampled irqfd instead, raised without an ioctl. (Not
/// kvm_set_irq: KVM lowers an irqfd's line at the EOI on this thread too.)
const IOCTL: &str = "syscalls/sys_enter_ioctl";

fn counts(c: &mut ThreadCounters) -> (u64, u64, u64, u64) {
    let v = c.read().unwrap();
    let get = |n: &str| v.iter().find(|(k, _)| k == n).map_or(0, |(_, c)| *c);
    (get(EXITS), get(PIO), get(POLL), get(IOCTL))
}

/// Pumps the session for `d`.
fn pump(s: &mut Workbench, d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        assert!(
            !s.pump(Duration::from_millis(20), &mut std::io::sink())
                .unwrap(),
            "the guest ended early"
        );
    }
}

/// nettest under `preset` without the profiler, booted and sending, with
/// the vCPU thread's tracepoints counted; None (said why) where KVM or the
/// tracepoints are missing.
fn start_traced(test: &str, preset: Preset) -> Option<(Workbench, ThreadCounters)> {
    if !kvm_or_skip(test) {
        return None;
    }
    if !tracefs_ready() {
        crate::skip(&format!("{test}: tracefs is not available"));
        return None;
    }
    let args = RunArgs {
        preset,
        sample_hz: 0,
        emulation_windows: false,
        ..RunArgs::for_guest("nettest")
    };
    let mut s = Workbench::start(&args).unwrap();
    let trace = match ThreadCounters::open(s.guest().vcpu_tid(), &[EXITS, PIO, POLL, IOCTL]) {
        Ok(t) => t,
        Err(e) => {
            crate::skip(&format!("{test}: {e}"));
            return None;
        }
    };
    pump(&mut s, Duration::from_secs(1));
    Some((s, trace))
}

#[test]
fn each_toggle_flipped_mid_run_moves_port_accesses_into_kvm() {
    let Some((mut s, mut trace)) = start_traced("optimizations flipped mid-run", Preset::Naive)
    else {
        return;
    };
    let phases = [
        Preset::Naive,
        Preset::Baseline,
        Preset::Paper,
        Preset::Baseline,
        Preset::Naive,
        Preset::Paper,
    ];
    let mut per_frame = Vec::new();
    for preset in phases {
        let (name, want) = (preset.name(), preset.opts());
        s.set_optimizations(want);
        let t = Instant::now();
        while s.optimizations() != want {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{name} never took effect"
            );
            pump(&mut s, Duration::from_millis(20));
        }
        pump(&mut s, Duration::from_millis(300)); // settle
        let (e0, p0, q0, i0) = counts(&mut trace);
        let f0 = s.delivered().0;
        pump(&mut s, Duration::from_millis(1500));
        let (e1, p1, q1, i1) = counts(&mut trace);
        let frames = (s.delivered().0 - f0).max(1) as f64;
        let exits = (e1 - e0) as f64 / frames;
        // Port accesses KVM completed without coming out to user space
        // (all of them, the 8259's included, less those that exited).
        let in_kernel = (p1 - p0).saturating_sub(e1 - e0) as f64 / frames;
        let polls = (q1 - q0) as f64 / (e1 - e0).max(1) as f64;
        let irq_lines = (i1 - i0).saturating_sub(e1 - e0) as f64 / frames;
        eprintln!("{name}: {exits:.2} exits to user space and {in_kernel:.2} port accesses completed in KVM per frame, {polls:.2} polls of the TAP per exit, {irq_lines:.2} KVM_IRQ_LINEs per frame ({frames} frames)");
        per_frame.push((name, exits, in_kernel, polls, irq_lines));
    }
    let r = s.finish(&mut std::io::sink()).unwrap();
    for &(name, exits, in_kernel, polls, irq_lines) in &per_frame {
        // irq-notify: off in naive and baseline (a poll after every exit,
        // as WS 2.0's select(), and the line driven by KVM_IRQ_LINE from
        // this thread), on in paper (the I/O thread reads, the line is a
        // resampled irqfd).
        if name == "paper" {
            assert!(polls < 0.05, "{name}: {polls} polls per exit");
            assert!(
                irq_lines < 0.01,
                "{name}: {irq_lines} KVM_IRQ_LINEs per frame"
            );
        } else {
            assert!(polls > 0.9, "{name}: {polls} polls per exit");
            assert!(
                irq_lines > 0.1,
                "{name}: {irq_lines} KVM_IRQ_LINEs per frame"
            );
        }
        match name {
            // Every one of the ~12 Lance accesses per frame exits.
            "naive" => assert!(exits > 10.0 && in_kernel < 4.0, "{per_frame:?}"),
            // The 6 RAP writes per frame no longer exit.
            "baseline" => assert!(
                (4.5..8.0).contains(&exits) && in_kernel > 5.0,
                "{per_frame:?}"
            ),
            // Data-port writes too; what exits is reads and flushes. The
            // guest also makes fewer accesses per frame: one interrupt
            // now covers several frames.
            "paper" => assert!(
                exits < 3.0 && in_kernel / (in_kernel + exits) > 0.6,
                "{per_frame:?}"
            ),
            _ => unreachable!(),
        }
    }
    // Nothing was lost or reordered: the guest's count, the host's and the
    // peer's agree, and the driver never saw a register misbehave.
    let n = &r.net;
    // The guest reports its count now and then; stopped mid-run, its last
    // report is behind what the NIC took.
    assert!(n
        .frames_sent_by_guest
        .is_some_and(|g| g > 0 && g <= n.frames_received_by_host));
    let dropped: u64 = n.frames_dropped.values().sum();
    assert_eq!(n.frames_received_by_host, n.frames_delivered + dropped);
    assert_eq!(n.frames_in_flight, 0);
    assert_eq!(n.sequence_errors.total(), 0, "{:?}", n.sequence_errors);
    assert!(
        n.nic_faults.is_empty(),
        "no write lost or reordered: {:?}",
        n.nic_faults
    );
    assert!(r.exits.coalesced_writes > 0 && r.exits.flushes > 0);
    // Every change is on record: the start and five flips.
    assert_eq!(
        r.optimization_changes.len(),
        phases.len(),
        "{:?}",
        r.optimization_changes
    );
}

#[test]
fn pv_nic_flipped_mid_run_moves_transmit_to_the_ring() {
    let Some((mut s, mut trace)) = start_traced("pv-nic flipped mid-run", Preset::Baseline) else {
        return;
    };
    let mut per_frame = Vec::new();
    for pv in [false, true, false, true] {
        let mut want = Preset::Baseline.opts();
        want.set(Opt::PvNic, pv);
        s.set_optimizations(want);
        let t = Instant::now();
        while s.optimizations() != want {
            assert!(t.elapsed() < Duration::from_secs(5), "never took effect");
            pump(&mut s, Duration::from_millis(20));
        }
        pump(&mut s, Duration::from_millis(300)); // the guest moves over
        let (e0, p0, _, _) = counts(&mut trace);
        let f0 = s.delivered().0;
        pump(&mut s, Duration::from_millis(1500));
        let (e1, p1, _, _) = counts(&mut trace);
        let frames = (s.delivered().0 - f0).max(1) as f64;
        let exits = (e1 - e0) as f64 / frames;
        let pio = (p1 - p0) as f64 / frames;
        eprintln!("pv-nic {pv}: {exits:.2} exits to user space and {pio:.2} port accesses per frame ({frames} frames)");
        per_frame.push((pv, exits, pio, frames));
    }
    let r = s.finish(&mut std::io::sink()).unwrap();
    for &(pv, exits, pio, frames) in &per_frame {
        assert!(frames > 100.0, "{per_frame:?}");
        if pv {
            // At most a doorbell per frame (completed in KVM), no Lance
            // access but the timer's interrupt handling.
            assert!(exits < 0.5 && pio < 2.0, "{per_frame:?}");
        } else {
            assert!(exits > 4.5 && pio > 10.0, "{per_frame:?}");
        }
    }
    let n = &r.net;
    let dropped: u64 = n.frames_dropped.values().sum();
    assert_eq!(n.frames_received_by_host, n.frames_delivered + dropped);
    assert_eq!(n.frames_in_flight, 0);
    assert_eq!(n.sequence_errors.total(), 0, "{:?}", n.sequence_errors);
    assert!(n.pv_nic.frames > 1000, "{:?}", n.pv_nic);
    assert_eq!(n.pv_nic.bad_entries + n.pv_nic.overruns, 0);
    // The guest says it moved three times and sent on the ring what the
    // host took from it (its last report may trail by a second's frames).
    assert_eq!(r.guest_counters.get("nic_switches"), Some(&3));
    let guest_pv = r.guest_counters["pv_frames"];
    assert!(guest_pv <= n.pv_nic.frames && guest_pv > n.pv_nic.frames / 2);
}

#[test]
fn kernel_irqchip_off_restarts_the_guest_on_the_user_space_8259() {
    let test = "kernel-irqchip flipped mid-run";
    let Some((mut s, _)) = start_traced(test, Preset::Baseline) else {
        return;
    };
    // KVM's 8259 is set through kvm_set_irq/kvm_pic_set_irq (the Lance's
    // KVM_IRQ_LINE, on the vCPU thread); the user-space one never is.
    const PIC: [&str; 3] = [EXITS, "kvm/kvm_set_irq", "kvm/kvm_pic_set_irq"];
    let mut phases = Vec::new();
    for kernel in [true, false] {
        let mut want = Preset::Baseline.opts();
        want.set(Opt::KernelIrqchip, kernel);
        let tid = s.guest().vcpu_tid();
        s.set_optimizations(want);
        let t = Instant::now();
        while s.optimizations() != want {
            assert!(t.elapsed() < Duration::from_secs(10), "never took effect");
            pump(&mut s, Duration::from_millis(20));
        }
        assert_eq!(
            s.guest().vcpu_tid() == tid,
            kernel,
            "a new vCPU exactly when the controller changed"
        );
        let mut trace = match ThreadCounters::open(s.guest().vcpu_tid(), &PIC) {
            Ok(t) => t,
            Err(e) => {
                crate::skip(&format!("{test}: {e}"));
                return;
            }
        };
        pump(&mut s, Duration::from_millis(1000)); // boot and ARP
        let read = |t: &mut ThreadCounters| -> Vec<u64> {
            let v = t.read().unwrap();
            PIC.iter()
                .map(|n| v.iter().find(|(k, _)| k == n).map_or(0, |(_, c)| *c))
                .collect()
        };
        let c0 = read(&mut trace);
        let f0 = s.delivered().0;
        pump(&mut s, Duration::from_millis(1500));
        let c1 = read(&mut trace);
        let frames = (s.delivered().0 - f0).max(1) as f64;
        let per: Vec<f64> = c0
            .iter()
            .zip(&c1)
            .map(|(a, b)| (b - a) as f64 / frames)
            .collect();
        eprintln!("kernel-irqchip {kernel}: per frame {per:.2?} ({EXITS}, kvm_set_irq, kvm_pic_set_irq; {frames} frames)");
        phases.push((kernel, per, frames));
    }
    let r = s.finish(&mut std::io::sink()).unwrap();
    let (_, kvm, _) = &phases[0];
    let (_, user, frames) = &phases[1];
    assert!(*frames > 100.0, "{phases:?}");
    assert!(
        kvm[1] > 0.3 && kvm[2] > 0.3,
        "KVM's 8259 in use: {phases:?}"
    );
    assert_eq!(user[1] + user[2], 0.0, "KVM's 8259 unused: {phases:?}");
    // Each interrupt's EOIs (slave and master) now exit, and an injection
    // may need an interrupt window: more exits per frame.
    assert!(user[0] > kvm[0] + 0.5, "{phases:?}");
    // The restarted guest took its NIC interrupts through our 8259, and
    // its frames were all accounted for.
    assert!(!r.optimizations["kernel-irqchip"]);
    assert!(r.guest_counters["nic_irqs"] > 100, "{:?}", r.guest_counters);
    assert!(r.exits.interrupts_injected >= r.guest_counters["nic_irqs"]);
    let n = &r.net;
    let dropped: u64 = n.frames_dropped.values().sum();
    assert_eq!(n.frames_received_by_host, n.frames_delivered + dropped);
    assert_eq!(n.frames_in_flight, 0);
    assert_eq!(n.sequence_errors.total(), 0, "{:?}", n.sequence_errors);
    assert!(n.nic_faults.is_empty(), "{:?}", n.nic_faults);
}

/// The toggle settings a receive or round-trip run goes through, every
/// toggle but kernel-irqchip (which restarts the guest) flipped on and
/// off at least once: the presets up and down, and the single flips that
/// move receive between the Lance's two paths (the vCPU polling the TAP,
/// the I/O thread delivering) and the pv-nic's ring.
fn flips() -> Vec<worldswitch::machine::optimizations::Opts> {
    let with = |p: Preset, o: Opt, on: bool| {
        let mut opts = p.opts();
        opts.set(o, on);
        opts
    };
    vec![
        Preset::Baseline.opts(),
        Preset::Paper.opts(),
        Preset::Modern.opts(),
        with(Preset::Modern, Opt::PvNic, false),
        Preset::Modern.opts(),
        with(Preset::Modern, Opt::IrqNotify, false),
        Preset::Modern.opts(),
        with(Preset::Modern, Opt::AdaptiveCombining, false),
        Preset::Naive.opts(),
        Preset::Modern.opts(),
        Preset::Baseline.opts(),
    ]
}

/// Runs `guest` (with `args`) from naive through [`flips`], each held for
/// `hold`, and returns what it reported; None (said why) without KVM or a
/// TAP device.
fn through_every_flip(
    test: &str,
    guest: &str,
    args: &[(&str, &str)],
    hold: Duration,
) -> Option<worldswitch::session::RunResult> {
    if !kvm_or_skip(test) || !crate::net::tap_or_skip(test) {
        return None;
    }
    let args = RunArgs {
        preset: Preset::Naive,
        sample_hz: 0,
        emulation_windows: false,
        guest_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..RunArgs::for_guest(guest)
    };
    let mut s = Workbench::start(&args).unwrap();
    let mut ended = false;
    let mut run = |s: &mut Workbench, d: Duration| {
        let t = Instant::now();
        while !ended && t.elapsed() < d {
            ended = s
                .pump(Duration::from_millis(20), &mut std::io::sink())
                .unwrap();
        }
        ended
    };
    run(&mut s, Duration::from_millis(500)); // boot, ARP, start the stream
    for want in flips() {
        s.set_optimizations(want);
        let t = Instant::now();
        while s.optimizations() != want {
            assert!(t.elapsed() < Duration::from_secs(5), "never took effect");
            assert!(!run(&mut s, Duration::from_millis(20)), "ended mid-flips");
        }
        assert!(!run(&mut s, hold), "the guest ended before every flip");
    }
    // Let the guest finish on the last setting.
    let t = Instant::now();
    while !run(&mut s, Duration::from_millis(100)) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the guest never ended"
        );
    }
    Some(s.finish(&mut std::io::sink()).unwrap())
}

#[test]
fn receive_stays_exact_and_in_order_while_every_toggle_flips() {
    // 1000 datagrams a second, for longer than the flips take (about 6 s).
    let Some(r) = through_every_flip(
        "receive while every toggle flips",
        "nettest-rx",
        &[("datagrams", "8000"), ("rate", "1000"), ("size", "1024")],
        Duration::from_millis(500),
    ) else {
        return;
    };
    let g = &r.guest_counters;
    eprintln!(
        "receive through every flip: {g:?}, dropped {:?}",
        r.net.rx_dropped
    );
    let (got, missing) = (g["rx_datagrams"], g["rx_missing"]);
    assert_eq!(got + missing, 8000, "{g:?}");
    assert_eq!(g["rx_late"], 0, "no datagram overtook another: {g:?}");
    // Every datagram the guest missed was dropped somewhere with a reason
    // (the reasons also count other frames: ARP, the TAP's own IPv6).
    let reasons: u64 = r.net.rx_dropped.values().sum();
    assert!(
        missing <= reasons,
        "lost without a reason: {g:?} {:?}",
        r.net.rx_dropped
    );
    // Both receive paths carried the stream, and the guest moved between
    // them every time the pv-nic went on or off (6 times).
    assert_eq!(g["rx_switches"], 6, "{g:?}");
    assert!(
        g["pv_rx_frames"] > 1000 && got - g["pv_rx_frames"] > 1000,
        "{g:?}"
    );
    assert_eq!(
        r.net.pv_nic.rx_frames, g["pv_rx_frames"],
        "{:?}",
        r.net.pv_nic
    );
    assert_eq!(r.net.rx_delivered, g["frames_received"], "{:?}", r.net);
}

#[test]
fn round_trips_all_come_back_while_every_toggle_flips() {
    let Some(r) = through_every_flip(
        "round trips while every toggle flips",
        "pingpong",
        &[("seconds", "8")],
        Duration::from_millis(400),
    ) else {
        return;
    };
    let g = &r.guest_counters;
    eprintln!("round trips through every flip: {g:?}");
    assert!(g["pings"] > 1000, "{g:?}");
    assert_eq!(g["pongs"], g["pings"], "every echo came back: {g:?}");
    assert_eq!(g["timeouts"], 0, "{g:?}");
    assert_eq!(g["rx_switches"], 6, "{g:?}");
    assert!(g["pv_rx_frames"] > 100 && g["pv_frames"] > 100, "{g:?}");
}
