//! `bench --predict`: the cost model's forecast of every preset, made
//! before any preset runs from three inputs, all measured here: the
//! calibration's cost of each event, a profiled baseline run (its ledger
//! prices the rest), and one short probe of each single toggle, which
//! counts the events per frame that toggle's mechanism makes (its
//! throughput is never used).

use super::nettest::{nettest, Profiling};
use crate::cli::ResultsArgs;
use crate::machine::optimizations::{Opt, Opts, Preset};
use crate::session::calibration;
use anyhow::Context;
use profiles::model::{Cost, Counts, Kind, Model, Prediction, Timed};
use serde::Serialize;
use std::io::Write;

/// Steal above this makes a forecast say it is less sure.
pub const STEAL_WARN_PCT: f64 = 3.0;

/// The probes trace instruction emulation all the time: a window slows the
/// guest, so only a run traced throughout counts emulated instructions per
/// frame without bias, and a probe's throughput does not matter.
const PROBE_DUTY_PCT: u8 = 100;

/// A probe: one toggle flipped on the baseline, counted.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// Which configuration.
    pub config: String,
    /// The toggle it flipped (None: the baseline itself).
    pub toggle: Option<Opt>,
    /// Its events per frame.
    pub counts: Counts,
    /// Its frames.
    pub frames: u64,
    #[serde(skip)]
    opts: Opts,
}

/// A preset's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Predicted {
    /// The preset.
    pub config: String,
    /// Throughput, Mb/s (None: not modelled, see `why`).
    pub predicted_throughput_mbps: Option<f64>,
    /// The vCPU's microseconds per frame.
    pub predicted_us_per_frame: Option<f64>,
    /// Where its counts came from, or why there is no prediction.
    pub basis: String,
    /// The priced prediction.
    #[serde(skip)]
    prediction: Option<Prediction>,
}

/// Everything the forecast used and said.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    /// The calibration's costs.
    pub calibration: Vec<Cost>,
    /// The model of the baseline run.
    pub model: Model,
    /// The single-toggle probes.
    pub probes: Vec<Probe>,
    /// The presets' predictions.
    pub results: Vec<Predicted>,
    /// The nettest write size they are for.
    pub write_size: u64,
    /// Percent of this machine's CPU the hypervisor under it took while the
    /// forecast measured (steal): timed rows stretch, counts do not.
    pub host_steal_pct: Option<f64>,
}

impl Forecast {
    /// The prediction of preset `config`, if it was predicted.
    pub fn prediction(&self, config: &str) -> Option<&Prediction> {
        self.results
            .iter()
            .find(|p| p.config == config)
            .and_then(|p| p.prediction.as_ref())
    }
}

/// The configuration a probe of `o` runs: `o` flipped on `base` (with
/// what it needs, as [`Opts::set`] keeps it).
fn probe_opts(base: Opts, o: Opt) -> Opts {
    let mut opts = base;
    opts.set(o, !base.get(o));
    opts
}

/// Calibrates, runs the baseline and the probes, and predicts every preset
/// of `args`; progress goes to `status`.
pub fn forecast(args: &ResultsArgs, status: &mut dyn Write) -> anyhow::Result<Forecast> {
    let size = args.write_sizes.first().copied().unwrap_or(4096);
    let (steal0, t0) = (crate::profiler::steal_seconds(), std::time::Instant::now());
    let _ = writeln!(status, "calibrating the cost of each event...");
    let calibration = calibration::calibrate(calibration::ROUNDS, calibration::ITERATIONS)?;
    crate::run::ensure_not_interrupted("the forecast")?;
    let base_opts = Preset::Baseline.opts();
    let _ = writeln!(status, "profiling baseline for {:?}...", args.duration);
    let r = nettest(
        args,
        base_opts,
        size,
        args.duration,
        Profiling {
            sample_hz: 250,
            emulation_duty: crate::profiler::emulation::DEFAULT_DUTY_PCT,
        },
    )?;
    let mut probes = Vec::new();
    // The baseline first: the others' changes are counted against it.
    let toggles = Opt::ALL
        .into_iter()
        // A new interrupt controller restarts the guest: not modelled.
        .filter(|&o| o != Opt::KernelIrqchip)
        .map(Some);
    for o in std::iter::once(None).chain(toggles) {
        crate::run::ensure_not_interrupted("the forecast")?;
        let opts = o.map_or(base_opts, |o| probe_opts(base_opts, o));
        let _ = writeln!(status, "probing {}...", opts.describe());
        let r = nettest(
            args,
            opts,
            size,
            args.probe_duration,
            Profiling {
                sample_hz: 0,
                emulation_duty: PROBE_DUTY_PCT,
            },
        )?;
        let counts = crate::session::counts(&r)
            .with_context(|| format!("the probe of {} delivered no frames", opts.describe()))?;
        probes.push(Probe {
            config: opts.describe(),
            toggle: o,
            counts,
            frames: r.net.frames_delivered,
            opts,
        });
    }
    // The profiled run's rows priced at the traced probe's counts (its
    // own marker-timed rows: the probes' differ by noise).
    let counts = Counts {
        timed: Timed::of_table(&r.profile),
        ..probes[0].counts
    };
    let model = Model::new(
        base_opts,
        &r.profile,
        r.net.throughput_mbps,
        counts,
        &calibration,
    )
    .map_err(|e| anyhow::anyhow!("the baseline run cannot be modelled: {e}"))?;
    let known: Vec<(Opts, Counts)> = probes.iter().map(|p| (p.opts, p.counts)).collect();
    let results = args
        .presets
        .iter()
        .map(|p| {
            let (basis, prediction) = match model.predict_opts(p.opts(), &known) {
                Ok(pred) => (pred.basis.clone(), Some(pred)),
                Err(why) => (why, None),
            };
            Predicted {
                config: p.name().to_string(),
                predicted_throughput_mbps: prediction.as_ref().map(|p| p.mbps),
                predicted_us_per_frame: prediction.as_ref().map(|p| p.us_per_frame),
                basis,
                prediction,
            }
        })
        .collect();
    Ok(Forecast {
        calibration,
        model,
        probes,
        results,
        write_size: size,
        host_steal_pct: crate::profiler::steal_pct(steal0, t0.elapsed().as_secs_f64()),
    })
}

/// Prints the forecast's inputs and predictions.
pub fn print(f: &Forecast, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "the cost model: microseconds of vCPU time per event, measured on this host"
    )?;
    writeln!(
        out,
        "{:<42} {:>8} {:>16}  {:<12} how",
        "event", "us", "spread", "source"
    )?;
    for c in &f.model.costs {
        writeln!(
            out,
            "{:<42} {:>8.3} {:>7.3}..{:<7.3}  {:<12} {}",
            c.kind.label(),
            c.us,
            c.spread_us.0,
            c.spread_us.1,
            format!("{:?}", c.source).to_lowercase(),
            c.how
        )?;
    }
    writeln!(
        out,
        "the calibration's own figures (each event alone, in a loop): {}",
        f.calibration
            .iter()
            .map(|c| format!("{} {:.3} us", c.kind.short(), c.us))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        out,
        "baseline: {:.2} Mb/s, {:.1} us of vCPU per frame, of which {:.1} no count drives (guest code, the rest)",
        f.model.mbps, f.model.vcpu_us_per_frame, f.model.residual_us
    )?;
    writeln!(out, "\nevents per frame, the baseline run and each probe:")?;
    write!(out, "{:<52}", "configuration")?;
    for k in Kind::PRICED {
        write!(out, " {:>14}", k.short())?;
    }
    writeln!(out)?;
    let line = |out: &mut dyn Write, name: &str, c: &Counts| -> std::io::Result<()> {
        write!(out, "{name:<52}")?;
        for k in Kind::PRICED {
            write!(out, " {:>14.2}", c.of(k))?;
        }
        writeln!(out)
    };
    for p in &f.probes {
        line(
            out,
            &format!("probe: {} ({} frames)", p.config, p.frames),
            &p.counts,
        )?;
    }
    if let Some(steal) = f.host_steal_pct {
        writeln!(
            out,
            "the hypervisor under this machine took {steal:.1}% of its CPU while the forecast measured{}",
            if steal > STEAL_WARN_PCT {
                ": timed rows stretch under steal, so the predictions are less sure; run again when the host is quieter"
            } else {
                ""
            }
        )?;
    }
    writeln!(out, "\npredicted, before any preset runs:")?;
    for p in &f.results {
        match (p.predicted_throughput_mbps, p.predicted_us_per_frame) {
            (Some(mbps), Some(us)) => writeln!(
                out,
                "{:<12} {:>8.2} Mb/s {:>8.1} us/frame   counts: {}",
                p.config, mbps, us, p.basis
            )?,
            _ => writeln!(out, "{:<12} not predicted: {}", p.config, p.basis)?,
        }
    }
    writeln!(out)
}
