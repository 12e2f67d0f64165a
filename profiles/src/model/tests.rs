use super::*;
use crate::table::{Direction, Measured, PerFrame};
use crate::toggles::Preset;

const FRAMES: u64 = 1000;

/// A table of `rows` (category, microseconds per frame, samples) on the
/// vCPU thread over FRAMES frames, at a 1 MHz "TSC" so cycles are
/// microseconds.
fn table(rows: &[(Category, f64, u64)]) -> Table {
    let measured: Vec<Measured> = rows
        .iter()
        .map(|&(category, us, samples)| Measured {
            category,
            count: FRAMES,
            cycles: (us * FRAMES as f64) as u64,
            p50_cycles: 0.0,
            p99_cycles: 0.0,
            samples: Some(samples),
            thread: Some(Thread::Vcpu),
        })
        .collect();
    let total: f64 = rows.iter().map(|r| r.1).sum::<f64>() * FRAMES as f64 / 1e6;
    let mut t = Table::from_measured(&measured, 1.0, (total, "test"), total, &[]);
    // Inside KVM_RUN the rows are sampled; the VMApp's are timed.
    for r in &mut t.rows {
        let vmapp = r.world == Some(crate::taxonomy::World::Vmapp) || r.category == Category::Peer;
        r.source = if vmapp {
            crate::table::Source::Markers
        } else {
            crate::table::Source::Sampling
        };
    }
    t.per_frame(PerFrame {
        frames: FRAMES,
        direction: Direction::Transmit,
        exits_to_user: None,
        port_accesses_in_kernel: None,
        interrupts: None,
        emulated_instructions: None,
        tap_writes: None,
    });
    t
}

/// Roughly this host's baseline: 256 emulated instructions, 6 exits, 8
/// port accesses in KVM, one interrupt and one TAP write per frame.
fn baseline() -> (Table, Counts) {
    let t = table(&[
        (Category::EmulatedOrdinary, 270.0, 600),
        (Category::WorldSwitch, 72.0, 160),
        (Category::GuestNative, 20.0, 44),
        (Category::Peer, 19.0, 0),
        (Category::ExitToUser, 14.0, 22),
        (Category::PioInKernel, 6.0, 10),
        (Category::HostEvents, 4.0, 0),
        (Category::IrqDelivery, 3.0, 4),
        (Category::VmnetTx, 2.0, 0),
    ]);
    let counts = Counts {
        doorbells: 0.0,
        exits_to_user: 6.0,
        port_accesses_in_kernel: 8.0,
        interrupts: 1.0,
        emulated_instructions: 256.0,
        vcpu_tap_writes: 1.0,
        tap_polls: 6.0,
        lance: LanceAccesses {
            address_writes_exiting: 0.0,
            data_writes_exiting: 4.0,
            other_exiting: 2.0,
            writes_in_kernel: 6.0,
        },
        timed: Timed::of_table(&t),
    };
    (t, counts)
}

fn calibrated(kind: Kind, us: f64) -> Cost {
    Cost {
        kind,
        us,
        spread_us: (us * 0.9, us * 1.1),
        source: CostSource::Calibration,
        how: "test".into(),
    }
}

fn model(cal: &[Cost]) -> Model {
    let (t, counts) = baseline();
    Model::new(Preset::Baseline.opts(), &t, 28.0, counts, cal).expect("a model")
}

#[test]
fn the_measured_configuration_predicts_itself() {
    let m = model(&[calibrated(Kind::PortInKvm, 8.0)]);
    assert!((m.vcpu_us_per_frame - 410.0).abs() < 0.01);
    let p = m.predict_opts(m.opts, &[]).unwrap();
    assert!((p.us_per_frame - 410.0).abs() < 1e-6, "{p:?}");
    assert!((p.mbps - 28.0).abs() < 1e-6);
    assert_eq!(p.basis, "measured under this configuration");
}

#[test]
fn costs_come_from_the_rows_and_say_so() {
    let m = model(&[]);
    let exit = m.cost(Kind::ExitToUser).unwrap();
    assert_eq!(exit.source, CostSource::Profile);
    assert!((exit.us - (72.0 + 14.0) / 6.0).abs() < 1e-9, "{exit:?}");
    assert!(exit.spread_us.0 < exit.us && exit.us < exit.spread_us.1);
    let emul = m.cost(Kind::EmulatedInstruction).unwrap();
    assert!((emul.us - 270.0 / 256.0).abs() < 1e-9);
    let door = m.cost(Kind::Doorbell).unwrap();
    assert_eq!(
        door.source,
        CostSource::Missing,
        "no doorbells, no calibration"
    );
    assert_eq!(door.us, 0.0);
}

#[test]
fn calibrated_in_kvm_accesses_come_out_of_the_emulated_rows() {
    let m = model(&[calibrated(Kind::PortInKvm, 8.0)]);
    let port = m.cost(Kind::PortInKvm).unwrap();
    assert_eq!(port.source, CostSource::Calibration);
    assert_eq!(port.us, 8.0);
    // 8 x 8 us wanted, 6 in the row: 58 more come out of the 270.
    let emul = m.cost(Kind::EmulatedInstruction).unwrap();
    assert!((emul.us - (270.0 - 58.0) / 256.0).abs() < 1e-9, "{emul:?}");
    // The residual is what no count drives: guest code.
    assert!((m.residual_us - 20.0).abs() < 1e-6, "{}", m.residual_us);
}

#[test]
fn a_mechanism_moves_counts_and_the_prediction_follows() {
    let m = model(&[calibrated(Kind::PortInKvm, 8.0)]);
    let mut dp = m.opts;
    dp.set(Opt::DataPortInKernel, true);
    let p = m.predict_opts(dp, &[]).unwrap();
    assert_eq!(p.basis, "data-port-in-kernel by its mechanism");
    assert_eq!(p.counts.exits_to_user, 2.0);
    assert_eq!(p.counts.port_accesses_in_kernel, 12.0);
    let exit = m.cost(Kind::ExitToUser).unwrap().us;
    let expect = 410.0 - 4.0 * exit + 4.0 * 8.0;
    assert!((p.us_per_frame - expect).abs() < 1e-6, "{p:?}");
    assert!(p.mbps > 28.0, "fewer exits, more throughput: {p:?}");
}

#[test]
fn probes_compose_along_what_each_toggle_needs() {
    let m = model(&[calibrated(Kind::PortInKvm, 8.0)]);
    let base = m.counts;
    let with = |opts: &[Opt]| {
        let mut o = m.opts;
        for &x in opts {
            o.set(x, true);
        }
        o
    };
    let dp = Counts {
        exits_to_user: 2.0,
        emulated_instructions: 150.0,
        interrupts: 0.2,
        ..base
    };
    let sc = Counts {
        interrupts: 0.1,
        ..dp
    };
    let irq = Counts {
        tap_polls: 0.0,
        ..base
    };
    let known = [
        (with(&[Opt::DataPortInKernel]), dp),
        (with(&[Opt::DataPortInKernel, Opt::SendCombining]), sc),
        (with(&[Opt::IrqNotify]), irq),
    ];
    let (c, basis) = counts_for(Preset::Paper.opts(), (m.opts, base), &known).unwrap();
    assert_eq!(
        basis,
        "data-port-in-kernel measured, send-combining measured, irq-notify measured"
    );
    assert_eq!(c.exits_to_user, 2.0);
    assert_eq!(c.emulated_instructions, 150.0);
    assert!((c.interrupts - 0.1).abs() < 1e-9);
    assert_eq!(c.tap_polls, 0.0);
}

#[test]
fn the_pv_nic_shifts_by_its_whole_probe_and_ignores_the_lance_toggles() {
    let m = model(&[
        calibrated(Kind::PortInKvm, 8.0),
        calibrated(Kind::Doorbell, 2.5),
    ]);
    let mut pv_opts = m.opts;
    pv_opts.set(Opt::PvNic, true);
    let pv = Counts {
        exits_to_user: 0.0,
        port_accesses_in_kernel: 0.4,
        doorbells: 0.35,
        interrupts: 0.0,
        emulated_instructions: 140.0,
        vcpu_tap_writes: 0.0,
        tap_polls: 0.0,
        lance: LanceAccesses::default(),
        timed: Timed::default(),
    };
    let (c, basis) =
        counts_for(Preset::Modern.opts(), (m.opts, m.counts), &[(pv_opts, pv)]).unwrap();
    assert!(basis.starts_with("pv-nic measured"), "{basis}");
    // Against the base itself (no probe of it): the probe's counts, and
    // irq-notify finds nothing left to change.
    for k in Kind::PRICED {
        assert!((c.of(k) - pv.of(k)).abs() < 1e-9, "{k:?}: {c:?}");
    }
    let p = m.predict(Preset::Modern.opts(), c, basis);
    let doorbell = p.terms.iter().find(|t| t.kind == Kind::Doorbell).unwrap();
    assert!((doorbell.us - 0.35 * 2.5).abs() < 1e-9);
    assert!(p.mbps > 2.0 * 28.0, "{p:?}");
}

#[test]
fn what_cannot_be_modelled_says_why() {
    let m = model(&[]);
    let mut user_pic = m.opts;
    user_pic.set(Opt::KernelIrqchip, false);
    let err = m.predict_opts(user_pic, &[]).unwrap_err();
    assert!(err.contains("restarts the guest"), "{err}");
    let mut unsplit = baseline().0;
    unsplit.rows[0].category = Category::KvmRun;
    let err = Model::new(m.opts, &unsplit, 28.0, m.counts, &[]).unwrap_err();
    assert!(err.contains("not split"), "{err}");
}

#[test]
fn a_miss_names_the_term_that_was_off() {
    let m = model(&[calibrated(Kind::PortInKvm, 8.0)]);
    let mut pv = m.opts;
    pv.set(Opt::PvNic, true);
    let p = m.predict_opts(pv, &[]).unwrap();
    // The mechanism keeps the Lance driver's instructions; the pv driver
    // runs far fewer.
    assert_eq!(p.counts.emulated_instructions, 256.0);
    let measured = Counts {
        emulated_instructions: 140.0,
        ..p.counts
    };
    let truth = m.predict(pv, measured, String::new());
    let e = explain(&m, &p, &measured, truth.us_per_frame, truth.mbps);
    assert_eq!(e.terms[0].kind, Kind::EmulatedInstruction);
    assert!(e.costs_us.abs() < 1e-6, "the costs were right: {e:?}");
    assert!(e.error_pct < -20.0, "{e:?}");
    assert!(
        e.summary()
            .starts_with("emulated insns per frame: model 256.00 (")
            && e.summary().contains("measured 140.00 ("),
        "{}",
        e.summary()
    );
}

#[test]
fn a_probe_brings_its_own_timed_costs_and_is_counted_against_the_base_probe() {
    let m = model(&[calibrated(Kind::PortInKvm, 8.0)]);
    let mut dp = m.opts;
    dp.set(Opt::DataPortInKernel, true);
    // The base's probe ran a little differently from the profiled run...
    let base_probe = Counts {
        emulated_instructions: 250.0,
        ..m.counts
    };
    // ...and the probe of data-port-in-kernel wrote to the TAP for less
    // (a thread of its own took part of it).
    let dp_probe = Counts {
        exits_to_user: 2.0,
        emulated_instructions: 150.0,
        timed: Timed {
            tap_write: 8.0,
            ..m.counts.timed
        },
        ..base_probe
    };
    let p = m
        .predict_opts(dp, &[(m.opts, base_probe), (dp, dp_probe)])
        .unwrap();
    assert_eq!(p.basis, "measured under this configuration");
    assert!(
        (p.counts.emulated_instructions - 156.0).abs() < 1e-9,
        "{p:?}"
    );
    let base_tap = m.counts.timed.tap_write;
    assert!(
        (base_tap - 21.0).abs() < 1e-9,
        "peer and VMNet rows: {base_tap}"
    );
    assert!((p.counts.timed.tap_write - (21.0 + 8.0 - base_tap)).abs() < 1e-9);
    let tap = p.terms.iter().find(|t| t.kind == Kind::TapWrite).unwrap();
    assert!((tap.us - 8.0).abs() < 1e-9, "{tap:?}");
}
