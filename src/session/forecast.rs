//! The cost model, live: from the figures since the configuration running
//! began (its epoch), a prediction for every toggle before it is flipped;
//! after a flip, that prediction against the figures since, with the term
//! that was off most. The calibration runs once, on a VM of its own, in a
//! thread of its own; the counts of every configuration measured are
//! remembered, so a configuration seen before is predicted from its own.

use super::calibration;
use super::guest::{Base, Guest};
use super::result::{counts_of, per_frame, LedgerCounts};
use crate::machine::optimizations::{Opt, Opts};
use profiles::inputs::EmulationSummary;
use profiles::model::{explain, Cost, Counts, Model, Prediction};
use profiles::snapshot::{Check, LiveForecast, TogglePrediction};
use profiles::table::{Direction, Table};
use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver};

/// Frames an epoch needs before its figures model anything.
const MIN_FRAMES: u64 = 1000;

/// The cumulative counters when an epoch began.
struct Epoch {
    opts: Opts,
    base: Base,
    tracepoints: BTreeMap<String, u64>,
    irq_edges: u64,
    doorbells: u64,
    emulation: Option<EmulationSummary>,
}

/// What an epoch measured: its table (with a ledger), counts and
/// throughput.
struct Measured {
    table: Table,
    counts: Counts,
    mbps: f64,
    seconds: f64,
}

/// A flip's prediction, waiting for its measurement.
struct Pending {
    prediction: Prediction,
    check: Option<Check>,
}

/// The live model's state.
pub struct Forecaster {
    calibration: Result<Vec<Cost>, String>,
    calibrating: Option<Receiver<Result<Vec<Cost>, String>>>,
    epoch: Epoch,
    learned: Vec<(Opts, Counts)>,
    model: Option<Model>,
    pending: Option<Pending>,
}

impl Forecaster {
    /// Starts the calibration and the first epoch.
    pub fn start(guest: &mut Guest) -> Self {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("calibration".into())
            .spawn(move || {
                let r = calibration::calibrate(calibration::ROUNDS, calibration::ITERATIONS)
                    .map_err(|e| format!("{e:#}"));
                let _ = tx.send(r);
            });
        let (calibration, calibrating) = match spawned {
            Ok(_) => (Err("calibrating".into()), Some(rx)),
            Err(e) => (Err(format!("could not start the calibration: {e}")), None),
        };
        Forecaster {
            calibration,
            calibrating,
            epoch: epoch(guest),
            learned: Vec::new(),
            model: None,
            pending: None,
        }
    }

    /// The guest was replaced (a new interrupt controller): a new epoch,
    /// and no prediction to check.
    pub fn restarted(&mut self, guest: &mut Guest) {
        self.epoch = epoch(guest);
        self.model = None;
        self.pending = None;
    }

    /// Before asking for `opts`: what the model predicts of them, kept to
    /// check against the measurement after the flip; the label for the
    /// chart's mark.
    pub fn flipping(&mut self, opts: Opts) -> Option<String> {
        let model = self.model.as_ref()?;
        let p = model.predict_opts(opts, &self.learned).ok()?;
        let label = format!("predicted {:.1} Mb/s", p.mbps);
        self.pending = Some(Pending {
            prediction: p,
            check: None,
        });
        Some(label)
    }

    /// Brings the model up to date with `guest` and says what it predicts;
    /// a finished check comes back once, for the log.
    pub fn update(&mut self, guest: &mut Guest) -> (LiveForecast, Option<String>) {
        if let Some(rx) = &self.calibrating {
            if let Ok(r) = rx.try_recv() {
                self.calibration = r;
                self.calibrating = None;
            }
        }
        let mut finished = None;
        if guest.optimizations() != self.epoch.opts {
            self.epoch = epoch(guest);
            self.model = None;
        }
        let measured = self.measure(guest);
        let opts = self.epoch.opts;
        let status = match &measured {
            None => format!(
                "waiting for {MIN_FRAMES} frames under {} (and stack sampling)",
                opts.describe()
            ),
            Some(m) => {
                self.learn(opts, m.counts);
                let calibrated = self.calibration.as_deref().unwrap_or(&[]);
                match Model::new(opts, &m.table, m.mbps, m.counts, calibrated) {
                    Ok(model) => {
                        let s = format!(
                            "model of {} over {:.0} s: {:.1} Mb/s, {:.0} us of vCPU per frame; costs from the profile{}",
                            opts.describe(),
                            m.seconds,
                            model.mbps,
                            model.vcpu_us_per_frame,
                            match &self.calibration {
                                Ok(_) => " and a calibration".to_string(),
                                Err(why) => format!(" ({why}: no calibration yet)"),
                            }
                        );
                        self.model = Some(model);
                        s
                    }
                    Err(why) => {
                        self.model = None;
                        format!("no model: {why}")
                    }
                }
            }
        };
        // The flip's check, once the new configuration has run long enough.
        if let Some(p) = &mut self.pending {
            if p.prediction.opts == opts {
                let check = p.check.get_or_insert_with(|| Check {
                    config: opts.describe(),
                    predicted_mbps: p.prediction.mbps,
                    predicted_us_per_frame: p.prediction.us_per_frame,
                    measured_mbps: None,
                    measured_us_per_frame: None,
                    error_pct: None,
                    miss: None,
                });
                if let (Some(m), Some(model)) = (&measured, &self.model) {
                    let first = check.error_pct.is_none();
                    let e = explain(
                        model,
                        &p.prediction,
                        &m.counts,
                        model.vcpu_us_per_frame,
                        m.mbps,
                    );
                    check.measured_mbps = Some(m.mbps);
                    check.measured_us_per_frame = Some(model.vcpu_us_per_frame);
                    check.error_pct = Some(e.error_pct);
                    check.miss = Some(e.summary());
                    if first {
                        finished = Some(format!(
                            "{}: predicted {:.1} Mb/s, measured {:.1} ({:+.1}%); most off: {}",
                            check.config,
                            check.predicted_mbps,
                            m.mbps,
                            e.error_pct,
                            e.summary()
                        ));
                    }
                }
            }
        }
        let toggles = Opt::ALL
            .iter()
            .map(|&o| {
                let mut next = opts;
                next.set(o, !opts.get(o));
                let predicted = match &self.model {
                    Some(m) => m.predict_opts(next, &self.learned),
                    None => Err("no model yet".into()),
                };
                match predicted {
                    Ok(p) => TogglePrediction {
                        opt: o,
                        mbps: Some(p.mbps),
                        us_per_frame: Some(p.us_per_frame),
                        basis: p.basis,
                    },
                    Err(why) => TogglePrediction {
                        opt: o,
                        mbps: None,
                        us_per_frame: None,
                        basis: why,
                    },
                }
            })
            .collect();
        let check = self.pending.as_ref().and_then(|p| p.check.clone());
        (
            LiveForecast {
                status,
                toggles,
                check,
            },
            finished,
        )
    }

    fn learn(&mut self, opts: Opts, counts: Counts) {
        match self.learned.iter_mut().find(|(o, _)| *o == opts) {
            Some(slot) => slot.1 = counts,
            None => self.learned.push((opts, counts)),
        }
    }

    /// The figures since the epoch began, once it has enough frames.
    fn measure(&self, guest: &mut Guest) -> Option<Measured> {
        let e = &self.epoch;
        let (frames, bytes) = guest.delivered();
        let frames = frames.saturating_sub(e.base.delivered.0);
        if frames < MIN_FRAMES {
            return None;
        }
        let seconds = e.base.at?.elapsed().as_secs_f64();
        let bytes = bytes.saturating_sub(e.base.delivered.1);
        let exits = guest.stats().since(e.base.stats());
        let tracepoints: BTreeMap<String, u64> = guest
            .tracepoints()
            .into_iter()
            .map(|(k, n)| {
                let then = e.tracepoints.get(&k).copied().unwrap_or(0);
                (k, n.saturating_sub(then))
            })
            .collect();
        let (irq_edges, doorbells) = guest.net_events();
        let emulated = guest.emulation().and_then(|now| match &e.emulation {
            Some(then) => now.per_frame_since(then),
            None => now.per_frame(),
        });
        let mut table = guest.table(&e.base);
        table.per_frame(per_frame(
            frames,
            Direction::Transmit,
            &LedgerCounts {
                tracepoints: &tracepoints,
                exits: &exits,
                irq_edges: irq_edges.saturating_sub(e.irq_edges),
                emulated_per_frame: emulated,
                tap_writes: None,
            },
        ));
        let counts = counts_of(&table, &exits, doorbells.saturating_sub(e.doorbells))?;
        Some(Measured {
            table,
            counts,
            mbps: bytes as f64 * 8.0 / seconds.max(1e-9) / 1e6,
            seconds,
        })
    }
}

fn epoch(guest: &mut Guest) -> Epoch {
    let (irq_edges, doorbells) = guest.net_events();
    Epoch {
        opts: guest.optimizations(),
        base: guest.capture(),
        tracepoints: guest.tracepoints(),
        irq_edges,
        doorbells,
        emulation: guest.emulation(),
    }
}
