//! Golden files for what `report` and `flamegraph` print from a fixed
//! profile: the folded stacks, the text table (with its per-frame ledger),
//! the Firefox Profiler and speedscope files (from its timeline) and the
//! SVG. A change to any
//! of them shows as a diff of the file under `tests/golden`; after checking
//! it, `WORLDSWITCH_BLESS=1 cargo test --test e2e golden` writes the new
//! output as the expected one.

use crate::worldswitch_ok;
use profiles::attribution::{self, Inputs};
use profiles::inputs::{MarkedThread, MarkerRow, PvDrain, SampleSummary};
use profiles::profile::{Profile, Provenance, FORMAT, VERSION};
use profiles::table::{Direction, PerFrame};
use profiles::taxonomy::Category;
use profiles::timeline::{Mark, Phase, Point, Samples, Timeline};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A profile with nothing measured on this machine in it: two threads'
/// markers, samples inside and outside KVM_RUN, and folded stacks.
fn profile() -> Profile {
    let tsc = 1000.0;
    let marker = |category, count, ms: f64| MarkerRow {
        category,
        count,
        cycles: (ms * tsc * 1e3) as u64,
        p50_cycles: 900.0,
        p99_cycles: 4000.0,
    };
    let vcpu = MarkedThread {
        cpu_seconds: 2.0,
        run_delay_seconds: Some(0.1),
        markers: vec![
            marker(Category::KvmRun, 20_000, 1800.0),
            marker(Category::PioDispatch, 20_000, 40.0),
            marker(Category::LanceCsr0, 8_000, 30.0),
            marker(Category::LanceTx, 2_000, 20.0),
            marker(Category::VmnetTx, 2_000, 100.0),
        ],
        clock: Default::default(),
    };
    let io = MarkedThread {
        cpu_seconds: 0.2,
        run_delay_seconds: Some(0.02),
        markers: vec![marker(Category::HostEvents, 500, 50.0)],
        clock: Default::default(),
    };
    let mut s = SampleSummary {
        total: 500,
        ..Default::default()
    };
    for (c, n) in [
        (Category::GuestNative, 100),
        (Category::EmulatedOrdinary, 250),
        (Category::ExitToUser, 60),
        (Category::WorldSwitch, 40),
    ] {
        s.by_category.insert(c, n);
    }
    s.vmapp_by_category.insert(Category::VmnetTx, 20);
    s.vmapp_by_category.insert(Category::Peer, 10);
    s.io_by_category.insert(Category::HostEvents, 12);
    s.threads = [("vcpu", 500), ("io", 40), ("peer", 30)]
        .into_iter()
        .map(|(t, n)| (t.to_string(), n))
        .collect();
    let mut table = attribution::table(&Inputs {
        tsc_mhz: tsc,
        wall_seconds: 2.5,
        vcpu: &vcpu,
        io: Some(&io),
        pv: PvDrain::default(),
        samples: Ok(&s),
        emulation: None,
        in_kernel_pio: 0.0,
    });
    table.per_frame(PerFrame {
        frames: 5000,
        direction: Direction::Transmit,
        exits_to_user: Some(6.01),
        port_accesses_in_kernel: Some(7.91),
        interrupts: Some(0.98),
        emulated_instructions: Some(231.0),
        tap_writes: Some(1.0),
    });
    let folded: BTreeMap<String, u64> = [
        ("vcpu;guest;guest_native", 100),
        ("vcpu;vmm;emulated_ordinary;vcpu_run;x86_emulate_insn", 250),
        (
            "vcpu;vmm;exit_to_user;vcpu_run;complete_emulator_pio_in",
            60,
        ),
        ("vcpu;vmm;world_switch;vcpu_load;native_read_msr", 40),
        (
            "vcpu;vmapp;vmnet_tx;run;Pcnet::transmit;tun_chr_write_iter",
            20,
        ),
        (
            "vcpu;vmapp;peer;run;tun_chr_write_iter;netif_receive_skb",
            10,
        ),
        ("io;vmapp;host_events;do_sys_poll", 12),
        ("peer;host;receiver;recvfrom", 30),
    ]
    .into_iter()
    .map(|(s, n)| (s.to_string(), n))
    .collect();
    let timeline = timeline(&folded);
    Profile {
        format: FORMAT.into(),
        version: VERSION,
        provenance: Provenance {
            kernel: "6.18.0-golden".into(),
            kvm_flavour: "PVM".into(),
            cpu: "a constructed CPU".into(),
            guest: "nettest".into(),
            guest_build_id: Some("0123456789abcdef0123".into()),
            worldswitch: "0.1.0".into(),
            ..Default::default()
        },
        seconds: 2.5,
        table,
        folded,
        extra: serde_json::json!({}),
        timeline: Some(timeline),
    }
}

/// A timeline over `folded`: each thread's samples 4 ms apart (250 Hz),
/// its stacks in turn; a series point a second, three marks and a phase.
fn timeline(folded: &BTreeMap<String, u64>) -> Timeline {
    let stacks: Vec<String> = folded.keys().cloned().collect();
    let mut by_thread: BTreeMap<&str, Vec<(u32, u64)>> = BTreeMap::new();
    for (i, (stack, &n)) in folded.iter().enumerate() {
        let thread = stack.split(';').next().unwrap();
        by_thread.entry(thread).or_default().push((i as u32, n));
    }
    let mut samples = Samples::default();
    for mut left in by_thread.into_values() {
        let mut t = 0.0;
        while left.iter().any(|&(_, n)| n > 0) {
            for (i, n) in left.iter_mut().filter(|(_, n)| *n > 0) {
                *n -= 1;
                samples.t_ms.push(t);
                samples.stack.push(*i);
                t += 4.0;
            }
        }
    }
    let point = |t: f64, mbps: f64| Point {
        t,
        mbps,
        frames_per_sec: mbps * 1e6 / 8.0 / 4096.0,
        pio_exits_per_sec: mbps * 500.0,
        kick_exits_per_sec: 100.0,
        ..Point::default()
    };
    let mark = |t: f64, label: &str| Mark {
        t,
        label: label.into(),
    };
    Timeline {
        stacks,
        samples,
        samples_left_out: 0,
        seconds: vec![point(1.0, 15.0), point(2.0, 17.5), point(2.5, 16.0)],
        marks: vec![
            mark(0.0, "optimizations: baseline"),
            mark(1.2, "counters reset"),
            mark(1.8, "baseline marked"),
        ],
        phases: vec![Phase {
            name: "send".into(),
            index: 0,
            start_s: 0.1,
            seconds: 2.3,
        }],
    }
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ws-golden-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compares `got` with the golden file `name`, or rewrites it when
/// `WORLDSWITCH_BLESS` is set.
fn golden(name: &str, got: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("WORLDSWITCH_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (WORLDSWITCH_BLESS=1 cargo test --test e2e golden writes it)",
            path.display()
        )
    });
    assert!(
        want == got,
        "{name} differs from {}; if the change is meant, bless it \
         (WORLDSWITCH_BLESS=1 cargo test --test e2e golden). Got:\n{}",
        path.display(),
        String::from_utf8_lossy(got)
    );
}

fn report(file: &Path, format: &str) -> Vec<u8> {
    worldswitch_ok(&["report", file.to_str().unwrap(), "--format", format]).stdout
}

#[test]
fn golden_report_folded_table_and_svg() {
    let dir = scratch("report");
    let file = dir.join("p.json");
    profile().save(&file).unwrap();
    golden("report.folded", &report(&file, "folded"));
    golden("report.txt", &report(&file, "table"));
    golden("report.firefox.json", &report(&file, "firefox"));
    golden("report.speedscope.json", &report(&file, "speedscope"));
    let svg = dir.join("p.svg");
    worldswitch_ok(&[
        "flamegraph",
        file.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
        "--title",
        "golden",
    ]);
    golden("flamegraph.svg", &std::fs::read(&svg).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}
