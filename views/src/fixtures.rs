//! Fixture pictures for tests: a busy nettest run with every screen's data,
//! and a run that has just started.

use profiles::snapshot::{
    Check, Info, LiveForecast, LogLine, Mark, NetFigures, Point, RunState, Snapshot, ThreadCpu,
    Toggle, TogglePrediction,
};
use profiles::table::{Direction, Measured, PerFrame, Table};
use profiles::taxonomy::{Category, Thread};
use profiles::toggles::Opt;
use profiles::transmit_path::TransmitPath;
use std::collections::BTreeMap;

fn m(category: Category, count: u64, us: f64, samples: Option<u64>, thread: Thread) -> Measured {
    let cycles = (us * 2000.0) as u64; // a 2 GHz TSC
    Measured {
        category,
        count,
        cycles,
        p50_cycles: cycles as f64 / count.max(1) as f64 * 0.9,
        p99_cycles: cycles as f64 / count.max(1) as f64 * 2.5,
        samples,
        thread: Some(thread),
    }
}

fn table(scale: f64) -> Table {
    let v = Thread::Vcpu;
    let mut t = Table::from_measured(
        &[
            m(
                Category::EmulatedOrdinary,
                0,
                3_900_000.0 * scale,
                Some(780),
                v,
            ),
            m(Category::WorldSwitch, 0, 600_000.0, Some(120), v),
            m(Category::ExitToUser, 0, 250_000.0, Some(50), v),
            m(Category::GuestNative, 0, 60_000.0, Some(12), v),
            m(Category::VmnetTx, 10_000, 103_000.0, None, v),
            m(Category::UserIrq, 20_000, 16_000.0, None, v),
            m(Category::PioDispatch, 120_000, 4_000.0, None, v),
            m(Category::LanceTx, 10_000, 2_900.0, None, v),
            m(Category::LanceCsr0, 50_000, 2_000.0, None, v),
            m(Category::LanceRap, 70_000, 1_500.0, None, v),
            m(Category::VmnetRx, 3, 5.0, None, Thread::Io),
        ],
        2000.0,
        (
            5.0,
            "CPU time of the vCPU and I/O threads (CLOCK_THREAD_CPUTIME_ID)",
        ),
        5.0,
        &[
            (
                Category::Peer,
                "the peer's stack is not separated from the TAP write".into(),
            ),
            (Category::GuestIdle, "no samples fell in this row".into()),
        ],
    );
    // 10,000 frames, as the transmit rows count.
    t.per_frame(PerFrame {
        frames: 10_000,
        direction: Direction::Transmit,
        exits_to_user: Some(12.0 * scale),
        port_accesses_in_kernel: None,
        interrupts: None,
        emulated_instructions: None,
        tap_writes: None,
    });
    t.profiler_cost_seconds = 0.02;
    t.halted_seconds = 0.01;
    t.preempted_seconds = Some(0.002);
    t.samples_by_thread = [("vcpu", 976), ("peer", 20), ("io", 6), ("profiler", 10)]
        .into_iter()
        .map(|(name, n)| (name.to_string(), n))
        .collect();
    t
}

fn folded() -> BTreeMap<String, u64> {
    let mut f = BTreeMap::new();
    let mut add = |s: &str, n| {
        f.insert(s.to_string(), n);
    };
    add(
        "vcpu;vmm;emulated_ordinary;kvm_vcpu_ioctl;kvm_arch_vcpu_ioctl_run;x86_emulate_instruction",
        700,
    );
    add(
        "vcpu;vmm;emulated_ordinary;kvm_vcpu_ioctl;kvm_arch_vcpu_ioctl_run;x86_decode_insn",
        80,
    );
    add(
        "vcpu;vmm;world_switch;kvm_vcpu_ioctl;kvm_arch_vcpu_ioctl_run;vcpu_enter_guest",
        120,
    );
    add(
        "vcpu;vmm;exit_to_user;kvm_vcpu_ioctl;kvm_arch_vcpu_ioctl_run;complete_pio",
        50,
    );
    add("vcpu;guest;guest_native", 12);
    add(
        "vcpu;vmapp;vmnet_tx;worldswitch::vmnet::tap::send;write;tun_chr_write_iter",
        9,
    );
    add(
        "vcpu;vmapp;user_irq;worldswitch::devices::pcnet::port::irq;ioctl",
        2,
    );
    add(
        "vcpu;vmapp;lance_csr0;guest:trap;guest:pcnet_isr;worldswitch::devices::bus::PioBus::read",
        3,
    );
    add("peer;host;receiver;recv;__x64_sys_recvfrom;udp_recvmsg", 20);
    add("io;vmapp;host_events;poll;do_sys_poll;tun_chr_poll", 6);
    add(
        "profiler;workbench;profiler;perf_event::Sampler::next_record",
        10,
    );
    f
}

/// A busy run: five seconds of nettest over TAP with every figure present.
pub fn busy() -> Snapshot {
    let series = (0..=20)
        .map(|i| {
            let t = i as f64 * 0.5;
            let mbps = if i == 0 {
                0.0
            } else {
                21.0 + (i % 3) as f64 * 0.4
            };
            Point {
                t,
                mbps,
                frames_per_sec: mbps * 1e6 / 8.0 / 1316.0,
                pio_exits_per_sec: 24_000.0,
                mmio_exits_per_sec: 0.0,
                kick_exits_per_sec: 4.0,
                other_exits_per_sec: 0.0,
                in_kernel_writes_per_sec: 12_000.0,
            }
        })
        .collect();
    let mut guest_counters = BTreeMap::new();
    for (k, v) in [
        ("sent", 10_032u64),
        ("port_accesses", 120_384),
        ("irqs", 10_030),
    ] {
        guest_counters.insert(k.to_string(), v);
    }
    let mut dropped = BTreeMap::new();
    dropped.insert("backend write failed".to_string(), 2);
    Snapshot {
        state: RunState::Running,
        info: Info {
            guest: "nettest".into(),
            backend: "tap".into(),
            host_kind: "PVM".into(),
            sampling: "cpu-clock 250 Hz, kernel and user stacks".into(),
            profiler_cost_pct: 0.4,
            elapsed_seconds: 10.0,
            window_seconds: 5.0,
            outcome: None,
            optimizations: "baseline".into(),
            rolling: true,
        },
        series,
        marks: vec![Mark {
            t: 5.0,
            label: "counters reset".into(),
        }],
        threads: vec![
            ThreadCpu {
                name: "vcpu0".into(),
                cpu_pct: 99.2,
                last_cpu: Some(1),
            },
            ThreadCpu {
                name: "vmnet-peer".into(),
                cpu_pct: 3.1,
                last_cpu: Some(0),
            },
            ThreadCpu {
                name: "vmnet-io".into(),
                cpu_pct: 0.2,
                last_cpu: Some(1),
            },
            ThreadCpu {
                name: "ui".into(),
                cpu_pct: 1.0,
                last_cpu: Some(0),
            },
        ],
        guest_counters,
        net: NetFigures {
            frames_from_guest: 10_030,
            delivered: 10_028,
            dropped,
            exits_per_frame: Some(12.01),
        },
        table: table(1.0),
        baseline: Some(table(1.2)),
        transmit_path: Some(TransmitPath {
            kicks: 3448,
            segments_us: vec![
                ("guest to exit".into(), 7.72),
                ("exit to TAP write".into(), 0.28),
                ("TAP write".into(), 9.59),
                ("TAP write to re-entry".into(), 1.09),
                ("re-entry to guest".into(), 7.67),
            ],
            total_us: 26.35,
            tsc_offset_cycles: -1234,
            error_us: 8.08,
        }),
        folded: folded(),
        console: (1..=30)
            .map(|i| format!("nettest: {} datagrams sent\n", i * 400))
            .collect(),
        log: vec![
            LogLine {
                t: 5.0,
                text: "counters reset".into(),
            },
            LogLine {
                t: 7.5,
                text: "exported /tmp/worldswitch-7.svg and /tmp/worldswitch-7.json".into(),
            },
        ],
        toggles: vec![
            Toggle {
                opt: Opt::RapInKernel,
                key: 'a',
                on: true,
                meaning: "Lance address-port writes complete in KVM".into(),
                blocked: None,
                needs: Vec::new(),
            },
            Toggle {
                opt: Opt::SendCombining,
                key: 'c',
                on: false,
                meaning: "transmit kicks wait for a flush".into(),
                blocked: None,
                needs: vec![Opt::DataPortInKernel],
            },
            Toggle {
                opt: Opt::KernelIrqchip,
                key: 'i',
                on: true,
                meaning: "the 8259, IOAPIC and PIT in KVM (switching it restarts the guest)".into(),
                blocked: None,
                needs: Vec::new(),
            },
        ],
        forecast: Some(LiveForecast {
            status: "model of baseline over 12.0 s: 28.40 Mb/s, 410.0 us of vCPU per frame; costs: 2 calibrated, 5 from the profile".into(),
            toggles: vec![
                TogglePrediction {
                    opt: Opt::RapInKernel,
                    mbps: Some(27.10),
                    us_per_frame: Some(429.7),
                    basis: "rap-in-kernel by its mechanism".into(),
                },
                TogglePrediction {
                    opt: Opt::SendCombining,
                    mbps: Some(51.25),
                    us_per_frame: Some(227.2),
                    basis: "data-port-in-kernel by its mechanism, send-combining by its mechanism".into(),
                },
                TogglePrediction {
                    opt: Opt::KernelIrqchip,
                    mbps: None,
                    us_per_frame: None,
                    basis: "kernel-irqchip restarts the guest on another interrupt controller: not modelled".into(),
                },
            ],
            check: Some(Check {
                config: "baseline".into(),
                predicted_mbps: 30.0,
                predicted_us_per_frame: 388.0,
                measured_mbps: Some(28.4),
                measured_us_per_frame: Some(410.0),
                error_pct: Some(5.6),
                miss: Some("TAP polls per frame: model 0.00 (0.0 us), measured 6.00 (4.4 us): +4.4 us/frame".into()),
            }),
        }),
    }
}

/// A run that has just started: no figures yet.
pub fn starting() -> Snapshot {
    Snapshot {
        state: RunState::Starting,
        info: Info {
            guest: "nettest".into(),
            backend: "sink".into(),
            host_kind: "VT-x".into(),
            sampling: "off: sampling is off (--sample-hz 0)".into(),
            ..Info::default()
        },
        series: Vec::new(),
        marks: Vec::new(),
        threads: Vec::new(),
        guest_counters: BTreeMap::new(),
        net: NetFigures::default(),
        table: Table::from_measured(&[], 2000.0, (0.0, "CPU time of the vCPU thread"), 0.0, &[]),
        baseline: None,
        transmit_path: None,
        folded: BTreeMap::new(),
        console: Vec::new(),
        log: Vec::new(),
        toggles: Vec::new(),
        forecast: None,
    }
}
