//! The cost model's calibration: a guest that does one kind of event at a
//! time (exitbench's costs mode), each phase timed by the host, a few
//! rounds of each, on a VM of its own.

use crate::machine::vmm::dispatch::FloorSchedule;
use crate::machine::vmm::phases;
use profiles::model::{Cost, CostSource, Kind};
use profiles::stats::Summary;

/// Rounds of every loop.
pub const ROUNDS: u64 = 5;
/// Events per loop.
pub const ITERATIONS: u64 = 1000;
/// The instructions one turn of the guest's instruction loop runs.
const INSNS_PER_ITERATION: u64 = 10;

/// Times each kind of event on this host: `rounds` rounds of `iterations`
/// each; the median, with the quartiles as the spread.
pub fn calibrate(rounds: u64, iterations: u64) -> anyhow::Result<Vec<Cost>> {
    let phases = phases::exitbench(format!("iterations={iterations} rounds={rounds} costs=1"))?;
    let schedule = FloorSchedule;
    let mut per: Vec<(Kind, Vec<f64>)> = [
        Kind::ExitToUser,
        Kind::WorldSwitch,
        Kind::ExitFromCpl3,
        Kind::PortInKvm,
        Kind::Doorbell,
        Kind::EmulatedInstruction,
    ]
    .into_iter()
    .map(|k| (k, Vec::new()))
    .collect();
    let mut push = |kind: Kind, us: f64| {
        if let Some((_, v)) = per.iter_mut().find(|(k, _)| *k == kind) {
            v.push(us);
        }
    };
    let each = |name: &str, index: u64, per_iteration: u64| -> anyhow::Result<f64> {
        let d = phases.get(name, index)?;
        Ok(d.as_secs_f64() * 1e6 / (iterations * per_iteration) as f64)
    };
    for r in 0..rounds {
        for index in [2 * r, 2 * r + 1] {
            let kind = if schedule.uses_floor(index) {
                Kind::WorldSwitch
            } else {
                Kind::ExitToUser
            };
            push(kind, each("cpl0_out", index, 1)?);
        }
        let i = 4 * r + 1;
        push(Kind::PortInKvm, each("kvm_port", i, 1)?);
        push(Kind::Doorbell, each("doorbell", i, 1)?);
        push(
            Kind::EmulatedInstruction,
            each("insn", i, INSNS_PER_ITERATION)?,
        );
        push(Kind::ExitFromCpl3, each("cpl3_out", i, 1)?);
    }
    let doorbell_exits = phases
        .stats
        .port(crate::machine::devices::mailbox::BENCH_DOORBELL)
        .outs;
    Ok(per
        .into_iter()
        .filter_map(|(kind, v)| {
            let s = Summary::of(&v)?;
            let how = match kind {
                Kind::ExitToUser => "an OUT from CPL0 that exits to worldswitch's dispatch",
                Kind::WorldSwitch => {
                    "an OUT from CPL0 on the floor loop (KVM_RUN and back, no dispatch)"
                }
                Kind::ExitFromCpl3 => "an OUT from CPL3 that exits to worldswitch's dispatch",
                Kind::PortInKvm => "an IN from KVM's 8259 mask register at CPL0",
                Kind::Doorbell if doorbell_exits > 0 => {
                    "an OUT to an ioeventfd port at CPL0 (no ioeventfd here: it exited)"
                }
                Kind::Doorbell => "an OUT to an ioeventfd port at CPL0",
                _ => "a loop of ordinary instructions at CPL0 (loads, stores, arithmetic)",
            };
            Some(Cost {
                kind,
                us: s.median,
                spread_us: (s.p25, s.p75),
                source: CostSource::Calibration,
                how: format!("{how}: median of {} rounds of {iterations}", s.n),
            })
        })
        .collect())
}
