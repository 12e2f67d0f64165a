//! The phases a benchmark guest reports, timed by the host: from the exit
//! that began each to the exit that ended it.

use super::dispatch::FloorSchedule;
use super::events::{Finish, VmEvent};
use super::exits::ExitStats;
use super::vm::{self, VmConfig, VmHandle};
use crate::machine::devices::host::GuestSays;
use crate::machine::guest_image::GuestImage;
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::time::Duration;

/// A finished benchmark guest's phases, by (name, index), and its exits.
pub struct Phases {
    /// How long each phase took.
    pub times: HashMap<(String, u64), Duration>,
    /// The VM's exit counts.
    pub stats: ExitStats,
}

impl Phases {
    /// Phase (`name`, `index`), reported or not.
    pub fn get(&self, name: &str, index: u64) -> anyhow::Result<Duration> {
        self.times
            .get(&(name.to_string(), index))
            .copied()
            .with_context(|| format!("the guest did not report phase {name} {index}"))
    }
}

/// Boots `exitbench` with `cmdline` on a VM of its own (no NIC, KVM's
/// irqchip, phases on the floor loop where [`FloorSchedule`] says) and
/// times its phases.
pub fn exitbench(cmdline: String) -> anyhow::Result<Phases> {
    let image = GuestImage::resolve("exitbench")?;
    let vm = vm::start(VmConfig {
        opts: Default::default(),
        stitch: false,
        mem_mib: 64,
        image: image.elf,
        cmdline,
        halt_poll_ns: 0,
        floor: Some(FloorSchedule),
        start_paused: false,
        nic: None,
    })?;
    collect(&vm)
}

/// Waits for `vm`'s guest to finish, timing its phases; a guest that does
/// not exit with status 0 is an error.
pub fn collect(vm: &VmHandle) -> anyhow::Result<Phases> {
    let mut begun = HashMap::new();
    let mut times = HashMap::new();
    loop {
        match vm
            .events()
            .recv()
            .context("the vCPU thread ended without reporting why")?
        {
            VmEvent::Guest(GuestSays::Phase {
                begin,
                name,
                index,
                at,
            }) => {
                if begin {
                    begun.insert((name, index), at);
                } else if let Some(start) = begun.remove(&(name.clone(), index)) {
                    times.insert((name, index), at.duration_since(start));
                }
            }
            VmEvent::Finished { finish, stats, .. } => {
                if finish != Finish::GuestExit(0) {
                    bail!("the benchmark guest did not finish cleanly: {finish:?}");
                }
                return Ok(Phases { times, stats });
            }
            _ => {}
        }
    }
}
