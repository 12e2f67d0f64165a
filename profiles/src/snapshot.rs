//! What the workbench shows at one moment: an immutable picture of a
//! running (or saved) profile that front ends render and never change.
//! The engine builds one every refresh; `view FILE` builds one from a
//! saved profile.

use crate::profile::Profile;
use crate::table::Table;
pub use crate::timeline::{Mark, Point};
use crate::toggles::Opt;
use crate::transmit_path::TransmitPath;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Booting, not yet running.
    Starting,
    /// The guest runs.
    Running,
    /// The guest is paused by the user.
    Paused,
    /// The guest has finished; the figures are final.
    Finished,
    /// A saved profile, not a run.
    Saved,
}

/// The run's identity and the profiler's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Info {
    /// The guest's name.
    pub guest: String,
    /// The network backend (tap, sink or none).
    pub backend: String,
    /// VT-x, AMD-V or PVM.
    pub host_kind: String,
    /// What the sampler does, or why it does not ("cpu-clock 250 Hz").
    pub sampling: String,
    /// The profiler's CPU time as a share of the measured threads' CPU.
    pub profiler_cost_pct: f64,
    /// Seconds since the run started (or the profile's length).
    pub elapsed_seconds: f64,
    /// Seconds since counters were last reset.
    pub window_seconds: f64,
    /// How the run ended, once it has.
    pub outcome: Option<String>,
    /// The optimizations in effect: a preset's name or the toggles on.
    #[serde(default)]
    pub optimizations: String,
    /// Whether the figures cover a rolling window (else since the start or
    /// the last reset).
    #[serde(default)]
    pub rolling: bool,
}

/// A worldswitch thread's CPU use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThreadCpu {
    /// Its name (vcpu0, vmnet-io, profiler, ui).
    pub name: String,
    /// Percent of one core over the last interval.
    pub cpu_pct: f64,
    /// The CPU it last ran on.
    pub last_cpu: Option<u32>,
}

/// An optimization toggle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Toggle {
    /// Which toggle (serialized as its name, `rap-in-kernel`).
    #[serde(rename = "name")]
    pub opt: Opt,
    /// The key that flips it.
    pub key: char,
    /// Whether it is on.
    pub on: bool,
    /// One line on what it does.
    pub meaning: String,
    /// Why it cannot be flipped now, if it cannot.
    pub blocked: Option<String>,
    /// The toggles it needs: they come on with it, and it goes off with
    /// any of them.
    #[serde(default)]
    pub needs: Vec<Opt>,
}

/// Frame accounting, so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetFigures {
    /// Frames the NIC took from the guest's ring.
    pub frames_from_guest: u64,
    /// Datagrams the peer received.
    pub delivered: u64,
    /// Frames dropped, with the reason.
    pub dropped: BTreeMap<String, u64>,
    /// Exits to user space per frame delivered, since the last reset.
    pub exits_per_frame: Option<f64>,
}

/// A line of the event log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    /// Seconds since the run started.
    pub t: f64,
    /// What happened, one sentence.
    pub text: String,
}

/// The picture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// Running, paused, finished or saved.
    pub state: RunState,
    /// Identity and profiler state.
    pub info: Info,
    /// Throughput and exit rates, oldest first (the last minute or so).
    pub series: Vec<Point>,
    /// Moments marked on the charts.
    pub marks: Vec<Mark>,
    /// The threads' CPU.
    pub threads: Vec<ThreadCpu>,
    /// Counters the guest reported.
    pub guest_counters: BTreeMap<String, u64>,
    /// Frame accounting.
    pub net: NetFigures,
    /// The overhead table since the last reset.
    pub table: Table,
    /// The table when the baseline was marked, for the delta column.
    pub baseline: Option<Table>,
    /// The transmit path, when the guest measures it.
    pub transmit_path: Option<TransmitPath>,
    /// Folded stacks since the last reset.
    pub folded: BTreeMap<String, u64>,
    /// The guest's console, last lines.
    pub console: Vec<String>,
    /// Toggles, warnings, exports.
    pub log: Vec<LogLine>,
    /// Optimization toggles that exist.
    pub toggles: Vec<Toggle>,
    /// What the cost model predicts each toggle will do, and how its last
    /// prediction fared (a live run only).
    #[serde(default)]
    pub forecast: Option<LiveForecast>,
}

/// The cost model, live: a prediction for each toggle before it is
/// flipped, and the last flip's prediction against what it measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LiveForecast {
    /// What the model stands on, or what it waits for.
    pub status: String,
    /// Each toggle's prediction, flipped from the configuration running.
    pub toggles: Vec<TogglePrediction>,
    /// The last flip's prediction against the measurement since.
    pub check: Option<Check>,
}

/// What flipping one toggle will do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TogglePrediction {
    /// The toggle.
    pub opt: Opt,
    /// Predicted throughput, Mb/s.
    pub mbps: Option<f64>,
    /// Predicted vCPU microseconds per frame.
    pub us_per_frame: Option<f64>,
    /// Where the counts come from, or why there is no prediction.
    pub basis: String,
}

/// A flip's prediction against its measurement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    /// The configuration flipped to.
    pub config: String,
    /// Predicted throughput, Mb/s.
    pub predicted_mbps: f64,
    /// Predicted vCPU microseconds per frame.
    pub predicted_us_per_frame: f64,
    /// Measured since the flip (None: not enough frames yet).
    pub measured_mbps: Option<f64>,
    /// Measured vCPU microseconds per frame.
    pub measured_us_per_frame: Option<f64>,
    /// Predicted less measured throughput, percent of measured.
    pub error_pct: Option<f64>,
    /// The term that was off most.
    pub miss: Option<String>,
}

impl Snapshot {
    /// The picture of a saved profile: its table and stacks; what only a
    /// live run has (time series, console) is empty.
    pub fn from_profile(p: &Profile, source: &str) -> Self {
        let extra = |key: &str| p.extra.get(key).and_then(serde_json::Value::as_u64);
        Snapshot {
            state: RunState::Saved,
            info: Info {
                guest: p.provenance.guest.clone(),
                backend: p
                    .extra
                    .get("backend")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
                    .to_string(),
                host_kind: p.provenance.kvm_flavour.clone(),
                sampling: format!("saved profile {source}"),
                profiler_cost_pct: p.table.profiler_cost_seconds
                    / p.table.denominator_seconds.max(1e-9)
                    * 100.0,
                elapsed_seconds: p.seconds,
                window_seconds: p.seconds,
                outcome: None,
                optimizations: p
                    .provenance
                    .toggles
                    .iter()
                    .filter(|(_, &on)| on)
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join("+"),
                rolling: false,
            },
            // A recording's timeline draws the charts it was recorded with.
            series: p
                .timeline
                .as_ref()
                .map_or_else(Vec::new, |t| t.seconds.clone()),
            marks: p
                .timeline
                .as_ref()
                .map_or_else(Vec::new, |t| t.marks.clone()),
            threads: Vec::new(),
            guest_counters: BTreeMap::new(),
            net: NetFigures {
                frames_from_guest: extra("frames_received_by_host").unwrap_or(0),
                delivered: extra("frames_delivered").unwrap_or(0),
                dropped: BTreeMap::new(),
                exits_per_frame: p.extra.get("exits_per_frame").and_then(|v| v.as_f64()),
            },
            table: p.table.clone(),
            baseline: None,
            transmit_path: p
                .extra
                .get("transmit_path")
                .and_then(|v| serde_json::from_value(v.clone()).ok()),
            folded: p.folded.clone(),
            console: Vec::new(),
            log: Vec::new(),
            toggles: p
                .provenance
                .toggles
                .iter()
                // A name this build does not know has no toggle to show.
                .filter_map(|(name, &on)| {
                    Some(Toggle {
                        opt: Opt::from_name(name)?,
                        key: ' ',
                        on,
                        meaning: String::new(),
                        blocked: Some("a saved profile".into()),
                        needs: Vec::new(),
                    })
                })
                .collect(),
            forecast: None,
        }
    }

    /// Mean of the series over its last `seconds`: (Mb/s, frames/s, the
    /// seconds actually covered). Each point covers the time since the
    /// point before it.
    pub fn recent_throughput(&self, seconds: f64) -> Option<(f64, f64, f64)> {
        let end = self.series.last()?.t;
        let (mut mb, mut fr, mut covered) = (0.0, 0.0, 0.0);
        for w in self.series.windows(2).rev() {
            if end - w[0].t > seconds + 1e-9 {
                break;
            }
            let dt = w[1].t - w[0].t;
            mb += w[1].mbps * dt;
            fr += w[1].frames_per_sec * dt;
            covered += dt;
        }
        (covered > 0.0).then(|| (mb / covered, fr / covered, covered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, mbps: f64) -> Point {
        Point {
            t,
            mbps,
            frames_per_sec: mbps * 100.0,
            ..Point::default()
        }
    }

    #[test]
    fn recent_throughput_weights_by_interval() {
        let table = Table::from_measured(&[], 1000.0, (1.0, "t"), 1.0, &[]);
        let mut s = Snapshot::from_profile(
            &Profile {
                format: crate::profile::FORMAT.into(),
                version: crate::profile::VERSION,
                provenance: Default::default(),
                seconds: 1.0,
                table,
                folded: BTreeMap::new(),
                extra: serde_json::json!({"frames_delivered": 7}),
                timeline: None,
            },
            "x.json",
        );
        assert_eq!(s.net.delivered, 7);
        assert_eq!(s.state, RunState::Saved);
        assert!(s.recent_throughput(5.0).is_none());
        s.series = vec![
            point(0.0, 0.0),
            point(1.0, 10.0),
            point(2.0, 20.0),
            point(4.0, 40.0),
        ];
        // The last 3 s: 20 for 1 s and 40 for 2 s.
        let (mb, fr, covered) = s.recent_throughput(3.0).unwrap();
        assert!((mb - 100.0 / 3.0).abs() < 1e-9, "{mb}");
        assert!((fr - 10000.0 / 3.0).abs() < 1e-6);
        assert_eq!(covered, 3.0);
        assert_eq!(s.recent_throughput(100.0).unwrap().2, 4.0);
    }

    #[test]
    fn toggles_serialize_by_name() {
        let t = Toggle {
            opt: Opt::SendCombining,
            key: 'c',
            on: false,
            meaning: "m".into(),
            blocked: None,
            needs: vec![Opt::DataPortInKernel],
        };
        let json = serde_json::json!({
            "name": "send-combining",
            "key": "c",
            "on": false,
            "meaning": "m",
            "blocked": null,
            "needs": ["data-port-in-kernel"],
        });
        assert_eq!(serde_json::to_value(&t).unwrap(), json);
        assert_eq!(serde_json::from_value::<Toggle>(json).unwrap(), t);
    }

    #[test]
    fn a_saved_profile_shows_the_toggles_it_names() {
        let provenance = crate::profile::Provenance {
            toggles: [("pv-nic", true), ("rap-in-kernel", false), ("warp", true)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..Default::default()
        };
        let s = Snapshot::from_profile(
            &Profile {
                format: crate::profile::FORMAT.into(),
                version: crate::profile::VERSION,
                provenance,
                seconds: 1.0,
                table: Table::from_measured(&[], 1000.0, (1.0, "t"), 1.0, &[]),
                folded: BTreeMap::new(),
                extra: serde_json::json!({}),
                timeline: None,
            },
            "x.json",
        );
        let shown: Vec<(Opt, bool)> = s.toggles.iter().map(|t| (t.opt, t.on)).collect();
        assert_eq!(shown, [(Opt::PvNic, true), (Opt::RapInKernel, false)]);
        assert!(s.toggles.iter().all(|t| t.blocked.is_some()));
        assert_eq!(s.info.optimizations, "pv-nic+warp", "as saved");
    }
}
