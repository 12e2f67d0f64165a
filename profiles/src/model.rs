//! The per-frame cost model: what one event of each kind costs the vCPU on
//! this host, how many of each a frame takes, and from those the vCPU's
//! time per frame and the throughput under other optimizations. Each
//! optimization is described by what it changes in the counts (the
//! mechanism), never by a guess at its result.

use crate::table::Table;
use crate::taxonomy::{Category, Thread};
use crate::toggles::{Opt, Opts};
use serde::{Deserialize, Serialize};

/// The kinds of event a frame is priced in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An exit to user space from guest CPL0, handled there (the world
    /// switch, the dispatch and the device model's work).
    ExitToUser,
    /// An exit to user space from guest CPL3 (calibration only).
    ExitFromCpl3,
    /// The bare world switch: `KVM_RUN` returning and re-entering with no
    /// dispatch (calibration only).
    WorldSwitch,
    /// A port access KVM completes itself (an in-kernel device or a
    /// coalesced write).
    PortInKvm,
    /// An ioeventfd doorbell.
    Doorbell,
    /// A NIC interrupt delivered (its handler's instructions are counted
    /// with the emulated instructions).
    Interrupt,
    /// One guest instruction KVM emulated.
    EmulatedInstruction,
    /// A frame written to the TAP by the vCPU thread (the device's transmit
    /// work, the write and the peer's stack under it).
    TapWrite,
    /// The look at the TAP after an exit (irq-notify off).
    TapPoll,
}

impl Kind {
    /// The kinds a prediction prices, in the order they print.
    pub const PRICED: [Kind; 7] = [
        Kind::EmulatedInstruction,
        Kind::ExitToUser,
        Kind::PortInKvm,
        Kind::Doorbell,
        Kind::Interrupt,
        Kind::TapWrite,
        Kind::TapPoll,
    ];

    /// What one of them is, in words.
    pub fn label(self) -> &'static str {
        match self {
            Kind::ExitToUser => "exit to user space from CPL0",
            Kind::ExitFromCpl3 => "exit to user space from CPL3",
            Kind::WorldSwitch => "world switch (bare KVM_RUN round trip)",
            Kind::PortInKvm => "port access completed in KVM",
            Kind::Doorbell => "ioeventfd doorbell",
            Kind::Interrupt => "NIC interrupt delivered",
            Kind::EmulatedInstruction => "emulated guest instruction",
            Kind::TapWrite => "TAP write of a frame (vCPU thread)",
            Kind::TapPoll => "TAP poll after an exit",
        }
    }

    /// A short name for tables.
    pub fn short(self) -> &'static str {
        match self {
            Kind::ExitToUser => "exits",
            Kind::ExitFromCpl3 => "cpl3 exits",
            Kind::WorldSwitch => "switches",
            Kind::PortInKvm => "in-KVM ports",
            Kind::Doorbell => "doorbells",
            Kind::Interrupt => "interrupts",
            Kind::EmulatedInstruction => "emulated insns",
            Kind::TapWrite => "TAP writes",
            Kind::TapPoll => "TAP polls",
        }
    }

    /// The kind a vCPU-thread row of `category` is time of; None for the
    /// rows no count drives (guest code, idle, the rest).
    fn of_row(category: Category) -> Option<Kind> {
        use Category as C;
        Some(match category {
            C::EmulatedOrdinary | C::Privileged | C::Iret => Kind::EmulatedInstruction,
            C::PioInKernel => Kind::PortInKvm,
            C::WorldSwitch
            | C::ExitToUser
            | C::PioDispatch
            | C::LanceRap
            | C::LanceCsr0
            | C::UserPic
            | C::OtherDevices => Kind::ExitToUser,
            C::IrqDelivery | C::UserIrq => Kind::Interrupt,
            C::LanceTx | C::VmnetTx | C::Peer => Kind::TapWrite,
            C::HostEvents => Kind::TapPoll,
            _ => return None,
        })
    }
}

/// Where a cost came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// A calibration loop on this host (a guest doing only that event).
    Calibration,
    /// The profile of the running configuration: the rows of that kind
    /// over their count.
    Profile,
    /// Neither saw it: priced at zero, and said so.
    Missing,
}

/// The cost of one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Which event.
    pub kind: Kind,
    /// Microseconds of vCPU time per event.
    pub us: f64,
    /// Its spread: (low, high) microseconds (calibration: the quartiles of
    /// the rounds; profile: the sampling error of the rows).
    pub spread_us: (f64, f64),
    /// Where it came from.
    pub source: CostSource,
    /// How it was found, in words.
    pub how: String,
}

/// Events per frame, the model's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Exits to user space.
    pub exits_to_user: f64,
    /// Port accesses KVM completed itself (doorbells included).
    pub port_accesses_in_kernel: f64,
    /// ioeventfd doorbells (pv-nic).
    pub doorbells: f64,
    /// NIC interrupts.
    pub interrupts: f64,
    /// Guest instructions KVM emulated.
    pub emulated_instructions: f64,
    /// Frames the vCPU thread wrote to the TAP itself.
    pub vcpu_tap_writes: f64,
    /// Looks at the TAP after exits.
    pub tap_polls: f64,
    /// The Lance's part of the exits and in-KVM accesses, which the
    /// mechanisms move.
    pub lance: LanceAccesses,
    /// Microseconds per frame the vCPU thread spent in the marker-timed
    /// rows of each kind: exact, with no sampling, so a probe measures
    /// these costs of its mechanism along with the counts.
    pub timed: Timed,
}

/// Microseconds per frame of the vCPU thread's marker-timed rows, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    /// The dispatch and the device models' work after exits.
    pub exit_to_user: f64,
    /// Interrupt delivery from user space.
    pub interrupt: f64,
    /// The Lance's transmit, the TAP write and the peer's stack under it.
    pub tap_write: f64,
    /// The looks at the TAP after exits.
    pub tap_poll: f64,
}

impl Timed {
    /// The vCPU thread's marker-timed rows of `table` (with a ledger).
    pub fn of_table(table: &Table) -> Timed {
        let mut t = Timed::default();
        for r in table
            .rows
            .iter()
            .filter(|r| r.thread == Thread::Vcpu && timed(r))
        {
            if let (Some(k), Some(us)) = (Kind::of_row(r.category), r.us_per_frame) {
                t.add(k, us);
            }
        }
        t
    }

    /// The marker-timed microseconds per frame of `kind`.
    pub fn of(&self, kind: Kind) -> f64 {
        match kind {
            Kind::ExitToUser => self.exit_to_user,
            Kind::Interrupt => self.interrupt,
            Kind::TapWrite => self.tap_write,
            Kind::TapPoll => self.tap_poll,
            _ => 0.0,
        }
    }

    /// Adds `us` to `kind`'s (kinds with no marker rows take none).
    pub fn add(&mut self, kind: Kind, us: f64) {
        match kind {
            Kind::ExitToUser => self.exit_to_user += us,
            Kind::Interrupt => self.interrupt += us,
            Kind::TapWrite => self.tap_write += us,
            Kind::TapPoll => self.tap_poll += us,
            _ => {}
        }
    }

    /// Scales each kind's time by how its count changed from `from` to
    /// `to`: the same work per event.
    fn rescaled(self, from: &Counts, to: &Counts) -> Timed {
        let scale = |k: Kind, us: f64| {
            let (a, b) = (from.of(k), to.of(k));
            if a > 0.0 {
                us * b / a
            } else {
                us
            }
        };
        Timed {
            exit_to_user: scale(Kind::ExitToUser, self.exit_to_user),
            interrupt: scale(Kind::Interrupt, self.interrupt),
            tap_write: scale(Kind::TapWrite, self.tap_write),
            tap_poll: scale(Kind::TapPoll, self.tap_poll),
        }
    }
}

/// The Lance's port accesses per frame, by what happened to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LanceAccesses {
    /// Address-port (RAP) writes that exited.
    pub address_writes_exiting: f64,
    /// Data-port (RDP, BDP) writes that exited.
    pub data_writes_exiting: f64,
    /// Other accesses that exited (reads, resets).
    pub other_exiting: f64,
    /// Writes KVM logged to the coalesced ring.
    pub writes_in_kernel: f64,
}

impl Counts {
    /// The count of a priced kind (doorbells are the in-KVM accesses'
    /// own row: the rest of them are priced as port accesses).
    pub fn of(&self, kind: Kind) -> f64 {
        match kind {
            Kind::ExitToUser => self.exits_to_user,
            Kind::PortInKvm => (self.port_accesses_in_kernel - self.doorbells).max(0.0),
            Kind::Doorbell => self.doorbells,
            Kind::Interrupt => self.interrupts,
            Kind::EmulatedInstruction => self.emulated_instructions,
            Kind::TapWrite => self.vcpu_tap_writes,
            Kind::TapPoll => self.tap_polls,
            Kind::ExitFromCpl3 | Kind::WorldSwitch => 0.0,
        }
    }

    fn fields(&mut self) -> [&mut f64; 15] {
        [
            &mut self.exits_to_user,
            &mut self.port_accesses_in_kernel,
            &mut self.doorbells,
            &mut self.interrupts,
            &mut self.emulated_instructions,
            &mut self.vcpu_tap_writes,
            &mut self.tap_polls,
            &mut self.lance.address_writes_exiting,
            &mut self.lance.data_writes_exiting,
            &mut self.lance.other_exiting,
            &mut self.lance.writes_in_kernel,
            &mut self.timed.exit_to_user,
            &mut self.timed.interrupt,
            &mut self.timed.tap_write,
            &mut self.timed.tap_poll,
        ]
    }

    /// What `to` changed against `from`, applied here: the counts moved by
    /// the difference (none below zero), the timed microseconds scaled by
    /// the ratio (the same change of work per event; a base measured on a
    /// host that stretched its timed rows keeps its proportions, and a
    /// part `to` moved off the vCPU goes to zero).
    pub fn shifted(mut self, mut from: Counts, mut to: Counts) -> Counts {
        const TIMED: usize = 4;
        let fields = self.fields().len();
        for (i, ((x, f), t)) in self
            .fields()
            .into_iter()
            .zip(from.fields())
            .zip(to.fields())
            .enumerate()
        {
            *x = if i >= fields - TIMED && *f > 0.0 {
                *x * *t / *f
            } else {
                (*x + *t - *f).max(0.0)
            };
        }
        self
    }
}

/// The model of one measured configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    /// The configuration measured.
    pub opts: Opts,
    /// Its throughput, Mb/s.
    pub mbps: f64,
    /// The vCPU thread's CPU per frame, microseconds.
    pub vcpu_us_per_frame: f64,
    /// Its counts per frame.
    pub counts: Counts,
    /// The cost of each kind: all of its time per event, as measured.
    pub costs: Vec<Cost>,
    /// The part of each kind's cost per event the marker-timed rows do not
    /// measure (sampled or calibrated): what a prediction prices, the
    /// counts' own timed part added.
    pub priced_us: Vec<(Kind, f64)>,
    /// The vCPU time per frame no count drives (guest code, the
    /// unattributed rest): the same under every configuration.
    pub residual_us: f64,
}

/// One priced term of a prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    /// The event.
    pub kind: Kind,
    /// Per frame.
    pub count: f64,
    /// Microseconds each.
    pub cost_us: f64,
    /// Their product.
    pub us: f64,
}

/// What the model says a configuration will do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The configuration.
    pub opts: Opts,
    /// The vCPU's microseconds per frame.
    pub us_per_frame: f64,
    /// Throughput, Mb/s.
    pub mbps: f64,
    /// The counts it used.
    pub counts: Counts,
    /// Where the counts came from.
    pub basis: String,
    /// The priced terms.
    pub terms: Vec<Term>,
}

/// Whether `row` is timed by markers (exact, no sampling).
fn timed(row: &crate::table::Row) -> bool {
    matches!(
        row.source,
        crate::table::Source::Markers | crate::table::Source::SplitBySamples
    )
}

/// Counts per frame below this are too few to price a kind from the rows.
const MIN_COUNT: f64 = 0.02;

impl Model {
    /// The model of the configuration `opts` whose profile is `table`
    /// (with a ledger and the sampled split of `KVM_RUN`) and throughput
    /// `mbps`, with `counts` measured in it. `calibrated` costs price what
    /// the profile cannot: the port accesses KVM completes (PVM's
    /// instruction emulator runs them, so the samples see emulator frames:
    /// their time beyond the in-kernel-I/O row comes out of the emulated
    /// rows) and any kind the run had none of.
    pub fn new(
        opts: Opts,
        table: &Table,
        mbps: f64,
        counts: Counts,
        calibrated: &[Cost],
    ) -> Result<Model, String> {
        if table.per_frame.is_none() {
            return Err("the profile has no frames to price".into());
        }
        if table
            .rows
            .iter()
            .any(|r| r.category == Category::KvmRun && r.share_pct > 1.0)
        {
            return Err("the profile's KVM_RUN time is not split (sampling was off)".into());
        }
        // Each kind's untimed rows (sampled, or split by the emulation
        // mix): their time per frame and samples. The marker-timed rows
        // are in the counts.
        let mut by_kind: std::collections::BTreeMap<Kind, (f64, u64)> = Default::default();
        let mut total = 0.0;
        for r in table.rows.iter().filter(|r| r.thread == Thread::Vcpu) {
            let Some(us) = r.us_per_frame else { continue };
            total += us;
            if let Some(k) = Kind::of_row(r.category) {
                if !timed(r) {
                    let e = by_kind.entry(k).or_default();
                    e.0 += us;
                    e.1 += r.samples.unwrap_or(0);
                }
            }
        }
        let calibration = |k: Kind| calibrated.iter().find(|c| c.kind == k).cloned();
        // Move the in-KVM accesses' emulation out of the emulated rows.
        if let Some(port) = calibration(Kind::PortInKvm) {
            let want = counts.of(Kind::PortInKvm) * port.us;
            let have = by_kind.get(&Kind::PortInKvm).map_or(0.0, |e| e.0);
            let emulated = by_kind.entry(Kind::EmulatedInstruction).or_default();
            let moved = (want - have).clamp(0.0, emulated.0);
            emulated.0 -= moved;
            by_kind.entry(Kind::PortInKvm).or_default().0 += moved;
        }
        let mut costs = Vec::new();
        let mut priced_us = Vec::new();
        for kind in Kind::PRICED {
            let n = counts.of(kind);
            let (us, samples) = by_kind.get(&kind).copied().unwrap_or((0.0, 0));
            let marked = counts.timed.of(kind);
            let (priced, cost) = match calibration(kind) {
                Some(c) if kind == Kind::PortInKvm || kind == Kind::Doorbell || n < MIN_COUNT => {
                    (c.us, c)
                }
                _ if n >= MIN_COUNT => {
                    let untimed = us / n;
                    let each = (us + marked) / n;
                    // Sampled rows: the counting error of their samples.
                    let err = if samples > 0 {
                        untimed / (samples as f64).sqrt()
                    } else {
                        0.0
                    };
                    let cost = Cost {
                        kind,
                        us: each,
                        spread_us: (each - err, each + err),
                        source: CostSource::Profile,
                        how: format!(
                            "{:.2} us per frame of its rows over {n:.2} per frame{}{}",
                            us + marked,
                            if marked > 0.0 {
                                format!(" ({marked:.2} timed by markers)")
                            } else {
                                String::new()
                            },
                            if samples > 0 {
                                format!(" ({samples} samples)")
                            } else {
                                String::new()
                            }
                        ),
                    };
                    (untimed, cost)
                }
                _ => (
                    0.0,
                    Cost {
                        kind,
                        us: 0.0,
                        spread_us: (0.0, 0.0),
                        source: CostSource::Missing,
                        how: "none in this run and no calibration: priced at zero".into(),
                    },
                ),
            };
            costs.push(cost);
            priced_us.push((kind, priced));
        }
        // Kinds shown for reference.
        for kind in [Kind::ExitFromCpl3, Kind::WorldSwitch] {
            costs.extend(calibration(kind));
        }
        let mut model = Model {
            opts,
            mbps,
            vcpu_us_per_frame: total,
            counts,
            costs,
            priced_us,
            residual_us: 0.0,
        };
        model.residual_us = total - model.modelled_us(&counts);
        Ok(model)
    }

    /// The cost of `kind`.
    pub fn cost(&self, kind: Kind) -> Option<&Cost> {
        self.costs.iter().find(|c| c.kind == kind)
    }

    /// Each kind's time per frame under `counts`: the count at the
    /// untimed cost, plus its marker-timed time.
    fn terms(&self, counts: &Counts) -> Vec<Term> {
        Kind::PRICED
            .iter()
            .map(|&kind| {
                let count = counts.of(kind);
                let untimed = self
                    .priced_us
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or(0.0, |(_, us)| *us);
                let us = count * untimed + counts.timed.of(kind);
                Term {
                    kind,
                    count,
                    cost_us: if count > 0.0 { us / count } else { untimed },
                    us,
                }
            })
            .collect()
    }

    fn modelled_us(&self, counts: &Counts) -> f64 {
        self.terms(counts).iter().map(|t| t.us).sum()
    }

    /// The vCPU time per frame and throughput `counts` make, the vCPU
    /// staying as busy as in the measured run.
    pub fn predict(&self, opts: Opts, counts: Counts, basis: String) -> Prediction {
        let terms = self.terms(&counts);
        let us = (self.residual_us + terms.iter().map(|t| t.us).sum::<f64>()).max(1e-3);
        Prediction {
            opts,
            us_per_frame: us,
            mbps: self.mbps * self.vcpu_us_per_frame / us,
            counts,
            basis,
            terms,
        }
    }

    /// Predicts `target` from this model's counts and the counts measured
    /// under other configurations (`known`, such as single-toggle probes
    /// or configurations run earlier); see [`counts_for`].
    pub fn predict_opts(
        &self,
        target: Opts,
        known: &[(Opts, Counts)],
    ) -> Result<Prediction, String> {
        let (counts, basis) = counts_for(target, (self.opts, self.counts), known)?;
        Ok(self.predict(target, counts, basis))
    }
}

/// A term the model got wrong: its count, or the time the markers
/// measured, against the ones measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Miss {
    /// The event.
    pub kind: Kind,
    /// Per frame, predicted.
    pub predicted_count: f64,
    /// Per frame, measured.
    pub measured_count: f64,
    /// Microseconds per frame, predicted.
    pub predicted_us: f64,
    /// Microseconds per frame at the measured count (and measured timed
    /// part).
    pub measured_us: f64,
}

impl Miss {
    /// Measured less predicted microseconds per frame.
    pub fn off_us(&self) -> f64 {
        self.measured_us - self.predicted_us
    }
}

/// Where a prediction missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Predicted less measured throughput, percent of measured.
    pub error_pct: f64,
    /// The terms' errors, largest first.
    pub terms: Vec<Miss>,
    /// What the right counts at the model's costs still miss: the
    /// untimed costs and the residual (measured less modelled microseconds
    /// per frame).
    pub costs_us: f64,
}

impl Explanation {
    /// One line: the largest term off.
    pub fn summary(&self) -> String {
        let term = self
            .terms
            .first()
            .filter(|m| m.off_us().abs() >= self.costs_us.abs());
        match term {
            Some(m) => format!(
                "{} per frame: model {:.2} ({:.1} us), measured {:.2} ({:.1} us): {:+.1} us/frame",
                m.kind.short(),
                m.predicted_count,
                m.predicted_us,
                m.measured_count,
                m.measured_us,
                m.off_us()
            ),
            None => format!(
                "the untimed costs: the measured counts at the model's costs miss by {:+.1} us/frame",
                self.costs_us
            ),
        }
    }
}

/// Which term of `p` was off, against a measurement of its configuration:
/// `counts` and the vCPU's `us_per_frame` and `mbps`.
pub fn explain(
    model: &Model,
    p: &Prediction,
    counts: &Counts,
    us_per_frame: f64,
    mbps: f64,
) -> Explanation {
    let right = model.predict(p.opts, *counts, String::new());
    let mut terms: Vec<Miss> = p
        .terms
        .iter()
        .zip(&right.terms)
        .map(|(a, b)| Miss {
            kind: a.kind,
            predicted_count: a.count,
            measured_count: b.count,
            predicted_us: a.us,
            measured_us: b.us,
        })
        .filter(|m| m.off_us().abs() >= 0.05)
        .collect();
    terms.sort_by(|a, b| b.off_us().abs().total_cmp(&a.off_us().abs()));
    Explanation {
        error_pct: (p.mbps - mbps) / mbps.max(1e-9) * 100.0,
        terms,
        costs_us: us_per_frame - right.us_per_frame,
    }
}

/// Why `kernel-irqchip` has no prediction.
const IRQCHIP_NOT_MODELLED: &str =
    "kernel-irqchip restarts the guest on another interrupt controller: not modelled";

/// Toggles that act on the Lance's path, which the pv-nic's path replaces.
const LANCE_PATH: [Opt; 4] = [
    Opt::RapInKernel,
    Opt::DataPortInKernel,
    Opt::SendCombining,
    Opt::AdaptiveCombining,
];

/// The counts `target` will have, from the counts `base` measured and
/// those `known` for other configurations:
/// - `target` itself measured: `base` shifted by what `target` measured
///   against `base`'s own measurement in `known` (if any);
/// - else each toggle flipped, in dependency order, shifts the counts by
///   what it changed when measured alone on `base` (with what it needs):
///   `known[base + t + needs] - known[base + needs]`; the pv-nic's path
///   replaces the Lance's, whose toggles then change nothing;
/// - a toggle measured nowhere shifts them by its mechanism
///   ([`mechanism`]).
pub fn counts_for(
    target: Opts,
    base: (Opts, Counts),
    known: &[(Opts, Counts)],
) -> Result<(Counts, String), String> {
    let find = |o: Opts| known.iter().find(|(k, _)| *k == o).map(|(_, c)| *c);
    if target == base.0 {
        return Ok((base.1, "measured under this configuration".into()));
    }
    // A change is counted against the same kind of measurement: the
    // base's own probe, when there is one.
    let reference = find(base.0);
    let find = |o: Opts| find(o).or((o == base.0).then_some(base.1));
    if let Some(c) = find(target) {
        let c = match reference {
            Some(r) => base.1.shifted(r, c),
            None => c,
        };
        return Ok((c, "measured under this configuration".into()));
    }
    if target.get(Opt::KernelIrqchip) != base.0.get(Opt::KernelIrqchip) {
        return Err(IRQCHIP_NOT_MODELLED.into());
    }
    let mut flips: Vec<Opt> = Opt::ALL
        .into_iter()
        .filter(|&o| target.get(o) != base.0.get(o))
        .collect();
    // The pv-nic first: it decides whether the Lance toggles matter.
    flips.sort_by_key(|&o| o != Opt::PvNic);
    let pv = target.get(Opt::PvNic);
    let mut counts = base.1;
    let mut bases = Vec::new();
    for o in flips {
        if pv && LANCE_PATH.contains(&o) {
            continue;
        }
        let on = target.get(o);
        // With it (and what it needs, as `set` keeps it), and without it
        // but with what it needs.
        let mut with = base.0;
        with.set(o, on);
        let without = if on {
            let mut w = with;
            w.set(o, false);
            w
        } else {
            base.0
        };
        match (find(without), find(with)) {
            (Some(from), Some(to)) => {
                counts = counts.shifted(from, to);
                bases.push(format!("{} measured", o.name()));
            }
            _ => {
                counts = mechanism(o, on, counts, target)?;
                bases.push(format!("{} by its mechanism", o.name()));
            }
        }
    }
    if bases.is_empty() {
        return Ok((
            counts,
            "no change: the pv-nic's path replaces the Lance's".into(),
        ));
    }
    Ok((counts, bases.join(", ")))
}

/// A toggle's mechanism, applied to counts measured without it: what it
/// changes per frame, by the description of what it does.
pub fn mechanism(o: Opt, on: bool, c: Counts, target: Opts) -> Result<Counts, String> {
    let mut n = moved(o, on, c, target)?;
    // The same work per event: the timed rows follow their counts.
    n.timed = c.timed.rescaled(&c, &n);
    Ok(n)
}

/// The counts a mechanism moves.
fn moved(o: Opt, on: bool, c: Counts, target: Opts) -> Result<Counts, String> {
    let mut n = c;
    let l = &mut n.lance;
    // Writes that move between exits and the coalesced ring.
    let to_kernel = |l: &mut LanceAccesses, exits: &mut f64, kernel: &mut f64, moved: f64| {
        *exits = (*exits - moved).max(0.0);
        *kernel += moved;
        l.writes_in_kernel += moved;
    };
    match (o, on) {
        (Opt::RapInKernel, true) => {
            let m = std::mem::take(&mut l.address_writes_exiting);
            to_kernel(l, &mut n.exits_to_user, &mut n.port_accesses_in_kernel, m);
        }
        (Opt::DataPortInKernel, true) => {
            let m = std::mem::take(&mut l.data_writes_exiting);
            to_kernel(l, &mut n.exits_to_user, &mut n.port_accesses_in_kernel, m);
        }
        (Opt::RapInKernel | Opt::DataPortInKernel, false) => {
            // The ring holds both ports' writes when both are on: the
            // driver writes the address before each data access, so half.
            let both = target.get(Opt::RapInKernel) || target.get(Opt::DataPortInKernel);
            let m = if both {
                l.writes_in_kernel / 2.0
            } else {
                l.writes_in_kernel
            };
            l.writes_in_kernel -= m;
            if o == Opt::RapInKernel {
                l.address_writes_exiting += m;
            } else {
                l.data_writes_exiting += m;
            }
            n.exits_to_user += m;
            n.port_accesses_in_kernel = (n.port_accesses_in_kernel - m).max(0.0);
        }
        // One completion interrupt covers up to three frames.
        (Opt::SendCombining, true) => n.interrupts /= 3.0,
        (Opt::SendCombining, false) => n.interrupts = (n.interrupts * 3.0).min(1.0),
        // Under a sender this fast the adaptive trigger keeps combining on.
        (Opt::AdaptiveCombining, _) => {}
        (Opt::IrqNotify, true) => n.tap_polls = 0.0,
        // The vCPU looks at the TAP after its exits, unless receive is on
        // the pv-nic's ring, which the I/O thread fills either way.
        (Opt::IrqNotify, false) if target.get(Opt::PvNic) => n.tap_polls = 0.0,
        (Opt::IrqNotify, false) => n.tap_polls = n.exits_to_user,
        (Opt::PvNic, true) => {
            let lance = l.address_writes_exiting + l.data_writes_exiting + l.other_exiting;
            n.exits_to_user = (n.exits_to_user - lance).max(0.0);
            n.port_accesses_in_kernel =
                (n.port_accesses_in_kernel - l.writes_in_kernel).max(0.0) + 1.0;
            *l = LanceAccesses::default();
            // At most one doorbell per send(), no completion interrupt
            // while the ring has room, the TAP write on the drain thread;
            // receive on the ring the I/O thread fills, so the vCPU never
            // looks at the TAP. The pv driver's own instructions are
            // unknown until measured: the Lance driver's stay.
            n.doorbells = 1.0;
            n.interrupts = 0.0;
            n.vcpu_tap_writes = 0.0;
            n.tap_polls = 0.0;
        }
        (Opt::PvNic, false) => {
            return Err("the Lance's path has not been measured in this session".into())
        }
        (Opt::KernelIrqchip, _) => return Err(IRQCHIP_NOT_MODELLED.into()),
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
