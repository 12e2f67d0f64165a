//! The optimization toggles as plain data: each [`Opt`] with its name, key,
//! meaning and what it needs, a set of them ([`Opts`]) that stays
//! consistent, the [`Preset`]s, and parsing `--preset NAME` and
//! `--opt NAME=on|off`. What the toggles do lives with the vCPU in the
//! worldswitch crate; this module only says which are wanted.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One toggle. Serialized by its name (`rap-in-kernel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Opt {
    /// Lance RAP writes complete in KVM (coalesced port I/O), no exit.
    RapInKernel,
    /// RDP and BDP writes complete in KVM too; reads still exit and drain.
    DataPortInKernel,
    /// Transmit kicks wait for a flush: 3 at most, or the delay bound.
    SendCombining,
    /// Event-driven receive on the I/O thread, a resampled irqfd for the
    /// line, instead of polling after each exit.
    IrqNotify,
    /// The in-kernel 8259/IOAPIC/PIT instead of user-space ones.
    KernelIrqchip,
    /// A paravirtual NIC with shared rings.
    PvNic,
    /// Send-combining only while the guest transmits fast.
    AdaptiveCombining,
}

impl Opt {
    /// Every toggle, in the order the paper introduces them.
    pub const ALL: [Opt; 7] = [
        Opt::RapInKernel,
        Opt::DataPortInKernel,
        Opt::SendCombining,
        Opt::AdaptiveCombining,
        Opt::IrqNotify,
        Opt::KernelIrqchip,
        Opt::PvNic,
    ];

    /// Its name on the command line and in profiles.
    pub fn name(self) -> &'static str {
        match self {
            Opt::RapInKernel => "rap-in-kernel",
            Opt::DataPortInKernel => "data-port-in-kernel",
            Opt::SendCombining => "send-combining",
            Opt::IrqNotify => "irq-notify",
            Opt::KernelIrqchip => "kernel-irqchip",
            Opt::PvNic => "pv-nic",
            Opt::AdaptiveCombining => "adaptive-combining",
        }
    }

    /// The workbench key that flips it.
    pub fn key(self) -> char {
        match self {
            Opt::RapInKernel => 'a',
            Opt::DataPortInKernel => 'd',
            Opt::SendCombining => 'c',
            Opt::IrqNotify => 'n',
            Opt::KernelIrqchip => 'i',
            Opt::PvNic => 'v',
            Opt::AdaptiveCombining => 't',
        }
    }

    /// One line on what it does.
    pub fn meaning(self) -> &'static str {
        match self {
            Opt::RapInKernel => "Lance address-port writes complete in KVM (coalesced PIO), replayed in order before the next exit is handled (WS 2.0 had this)",
            Opt::DataPortInKernel => "data-port writes complete in KVM as well; every read still exits and first replays the writes (the paper's optimization 1)",
            Opt::SendCombining => "transmit kicks wait for a flush: at most 3 frames or the delay bound, whichever first (the paper's optimization 2)",
            Opt::IrqNotify => "receive is event-driven: an I/O thread writes arriving frames into the guest's ring and raises the NIC's line through a resampled irqfd, instead of the vCPU polling the TAP after every exit to user space (the paper's optimization 3)",
            Opt::KernelIrqchip => "the 8259, IOAPIC and PIT in KVM; off, worldswitch's own 8259 and 8254 take every EOI, mask change and tick in user space and inject with KVM_INTERRUPT (switching it restarts the guest)",
            Opt::PvNic => "the guest transmits on a paravirtual ring a host thread drains (a doorbell KVM completes, ioeventfd, only when the host is not already draining; an interrupt only when the guest waits for room) and receives on one the I/O thread fills (an interrupt only while the guest is not polling; frames wait for buffers instead of being dropped) (the paper's section 4)",
            Opt::AdaptiveCombining => "send-combining only while the guest transmits fast (a decaying transmit-rate estimate with hysteresis, at most 10 switches a second), so a lone packet goes at once (the paper's adaptive trigger)",
        }
    }

    /// The toggle this one needs, if any: the compatibility matrix.
    /// Combining waits on the data port's coalesced writes, the adaptive
    /// trigger switches combining, and irq-notify's resampled irqfd and
    /// pv-nic's `KVM_IRQ_LINE` need the in-kernel interrupt controller.
    pub fn needs(self) -> Option<Opt> {
        NEEDS.iter().find(|(a, _)| *a == self).map(|&(_, b)| b)
    }

    /// The toggle named `name`.
    pub fn from_name(name: &str) -> Option<Opt> {
        Opt::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// (toggle, what it needs).
const NEEDS: [(Opt, Opt); 4] = [
    (Opt::SendCombining, Opt::DataPortInKernel),
    (Opt::AdaptiveCombining, Opt::SendCombining),
    (Opt::IrqNotify, Opt::KernelIrqchip),
    (Opt::PvNic, Opt::KernelIrqchip),
];

/// Parses `NAME=on|off` (also `1|0`, `true|false`) into the toggle and the
/// state asked for.
pub fn parse_switch(text: &str) -> Result<(Opt, bool), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=on|off"))?;
    let o = Opt::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Opt::ALL.iter().map(|o| o.name()).collect();
        format!("no optimization '{name}': use one of {}", names.join(", "))
    })?;
    let on = match value {
        "on" | "1" | "true" => true,
        "off" | "0" | "false" => false,
        _ => return Err(format!("'{value}' is not on or off")),
    };
    Ok((o, on))
}

/// A named set of toggles to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Preset {
    /// Every Lance access exits.
    Naive,
    /// WS 2.0: rap-in-kernel.
    Baseline,
    /// Plus the paper's three optimizations.
    Paper,
    /// Plus the adaptive trigger and pv-nic: everything this build can
    /// switch on.
    Modern,
}

impl Preset {
    /// Every preset, from nothing in KVM to everything.
    pub const ALL: [Preset; 4] = [
        Preset::Naive,
        Preset::Baseline,
        Preset::Paper,
        Preset::Modern,
    ];

    /// Its name on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Naive => "naive",
            Preset::Baseline => "baseline",
            Preset::Paper => "paper",
            Preset::Modern => "modern",
        }
    }

    /// The toggles it switches on (with what they need); kernel-irqchip is
    /// on in every preset.
    pub fn opts(self) -> Opts {
        let on: &[Opt] = match self {
            Preset::Naive => &[],
            Preset::Baseline => &[Opt::RapInKernel],
            Preset::Paper => &[
                Opt::RapInKernel,
                Opt::DataPortInKernel,
                Opt::SendCombining,
                Opt::IrqNotify,
            ],
            Preset::Modern => &[
                Opt::RapInKernel,
                Opt::DataPortInKernel,
                Opt::SendCombining,
                Opt::AdaptiveCombining,
                Opt::IrqNotify,
                Opt::PvNic,
            ],
        };
        let mut o = Opts::default();
        for &t in on {
            o.set(t, true);
        }
        o
    }

    /// The preset named `name`.
    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The preset named `text`, or an error that lists the names.
    pub fn parse(text: &str) -> Result<Preset, String> {
        Preset::from_name(text)
            .ok_or_else(|| format!("no preset '{text}': use naive, baseline, paper or modern"))
    }
}

/// Which toggles are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opts {
    on: [bool; 7],
}

/// Written as its description (`paper`, `baseline + pv-nic`).
impl Serialize for Opts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.describe())
    }
}

impl Default for Opts {
    /// `naive`: nothing completes in KVM.
    fn default() -> Self {
        let mut on = [false; 7];
        on[Opt::KernelIrqchip as usize] = true;
        Opts { on }
    }
}

impl Opts {
    /// Whether `o` is on.
    pub fn get(&self, o: Opt) -> bool {
        self.on[o as usize]
    }

    /// Sets `o`, keeping the set consistent: switching a toggle on switches
    /// on what it needs, switching it off switches off what needs it.
    pub fn set(&mut self, o: Opt, on: bool) {
        self.on[o as usize] = on;
        // What a toggle needs comes on with it; what needs it goes with it
        // (repeated, for the chain adaptive -> combining -> data port).
        for _ in 0..NEEDS.len() {
            for (a, b) in NEEDS {
                if on && self.on[a as usize] {
                    self.on[b as usize] = true;
                }
                if !on && !self.on[b as usize] {
                    self.on[a as usize] = false;
                }
            }
        }
    }

    /// Applies `NAME=on|off` (see [`parse_switch`]).
    pub fn apply(&mut self, text: &str) -> Result<(), String> {
        let (o, on) = parse_switch(text)?;
        self.set(o, on);
        Ok(())
    }

    /// Name -> state, for profiles and JSON.
    pub fn states(&self) -> BTreeMap<String, bool> {
        Opt::ALL
            .iter()
            .map(|&o| (o.name().to_string(), self.get(o)))
            .collect()
    }

    /// The preset these states are, if any.
    pub fn as_preset(&self) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.opts() == *self)
    }

    /// A short description: the preset's name, or the toggles that are on.
    pub fn describe(&self) -> String {
        if let Some(p) = self.as_preset() {
            return p.name().to_string();
        }
        let user_pic = !self.get(Opt::KernelIrqchip);
        let mut with_kernel_irqchip = *self;
        with_kernel_irqchip.set(Opt::KernelIrqchip, true);
        let on = match with_kernel_irqchip.as_preset() {
            Some(p) => p.name().to_string(),
            None => {
                let on: Vec<&str> = Opt::ALL
                    .iter()
                    .filter(|&&o| self.get(o) && o != Opt::KernelIrqchip)
                    .map(|o| o.name())
                    .collect();
                if on.is_empty() {
                    Preset::Naive.name().into()
                } else {
                    on.join("+")
                }
            }
        };
        if user_pic {
            format!("{on}, kernel-irqchip off")
        } else {
            on
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_dependencies() {
        let base = Preset::Baseline.opts();
        assert!(base.get(Opt::RapInKernel) && !base.get(Opt::DataPortInKernel));
        assert!(base.get(Opt::KernelIrqchip));
        let paper = Preset::Paper.opts();
        assert!(paper.get(Opt::SendCombining) && paper.get(Opt::DataPortInKernel));
        assert_eq!(
            Preset::parse("fast").unwrap_err(),
            "no preset 'fast': use naive, baseline, paper or modern"
        );
        assert_eq!(Preset::parse("paper"), Ok(Preset::Paper));
        let mut o = Preset::Naive.opts();
        assert_eq!(o, Opts::default());
        o.apply("send-combining=on").unwrap();
        assert!(
            o.get(Opt::DataPortInKernel),
            "combining needs the data port"
        );
        o.apply("data-port-in-kernel=off").unwrap();
        assert!(!o.get(Opt::SendCombining), "and goes with it");
        assert_eq!(o.describe(), "naive");
        o.apply("rap-in-kernel=on").unwrap();
        assert_eq!(o.as_preset(), Some(Preset::Baseline));
    }

    #[test]
    fn names_round_trip() {
        for o in Opt::ALL {
            assert_eq!(Opt::from_name(o.name()), Some(o));
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::Value::String(o.name().into()),
                "serialized by its name"
            );
            assert_eq!(serde_json::from_value::<Opt>(o.name().into()).unwrap(), o);
        }
        for p in Preset::ALL {
            assert_eq!(Preset::from_name(p.name()), Some(p));
            assert_eq!(p.opts().as_preset(), Some(p));
            assert_eq!(p.opts().describe(), p.name());
        }
        let keys: std::collections::BTreeSet<char> = Opt::ALL.iter().map(|o| o.key()).collect();
        assert_eq!(keys.len(), Opt::ALL.len(), "one key each");
    }

    #[test]
    fn bad_toggles_are_plain_errors() {
        let mut o = Preset::Baseline.opts();
        assert_eq!(
            o.apply("rap-in-kernel").unwrap_err(),
            "'rap-in-kernel' is not NAME=on|off"
        );
        assert_eq!(
            o.apply("warp=on").unwrap_err(),
            "no optimization 'warp': use one of rap-in-kernel, data-port-in-kernel, \
             send-combining, adaptive-combining, irq-notify, kernel-irqchip, pv-nic"
        );
        assert_eq!(
            o.apply("rap-in-kernel=maybe").unwrap_err(),
            "'maybe' is not on or off"
        );
        assert_eq!(parse_switch("pv-nic=1"), Ok((Opt::PvNic, true)));
        assert_eq!(parse_switch("pv-nic=false"), Ok((Opt::PvNic, false)));
        o.apply("pv-nic=on").unwrap();
        o.apply("irq-notify=on").unwrap();
        o.apply("irq-notify=off").unwrap();
        o.apply("kernel-irqchip=off").unwrap();
        assert!(!o.get(Opt::PvNic), "pv-nic's interrupt needs KVM's irqchip");
        assert_eq!(o.describe(), "baseline, kernel-irqchip off");
        o.apply("pv-nic=on").unwrap();
        assert!(o.get(Opt::KernelIrqchip), "and brings it back");
        o.apply("pv-nic=off").unwrap();
        assert_eq!(o, Preset::Baseline.opts());
        assert_eq!(o.states().len(), 7);
        o.apply("adaptive-combining=on").unwrap();
        assert!(o.get(Opt::SendCombining) && o.get(Opt::DataPortInKernel));
        o.apply("data-port-in-kernel=off").unwrap();
        assert!(!o.get(Opt::SendCombining) && !o.get(Opt::AdaptiveCombining));
    }
}
