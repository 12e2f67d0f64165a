//! Saved profiles: a versioned, documented JSON format with the run's
//! provenance, the overhead table and the folded stacks, and its exports.
//!
//! Format (`format` = "worldswitch-profile", `version` = 2): `provenance`
//! (kernel, KVM flavour, CPU, clocksource, halt polling, toggles, guest and
//! its build ID, worldswitch version, command line), `seconds` (wall time),
//! `table` (see [`Table`]), `folded` (stack -> samples; stacks are
//! `thread;world;category;frames...`, root first), `extra` (free-form run
//! figures: exits, link accounting) and, new in version 2, `timeline`
//! (see [`Timeline`]: each sample's time and stack, the one-second series,
//! marks and phases). Version-1 files load with no timeline.

use crate::table::Table;
use crate::timeline::Timeline;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The `format` field of every profile.
pub const FORMAT: &str = "worldswitch-profile";
/// The version this build writes.
pub const VERSION: u32 = 2;
/// The oldest version this build reads.
pub const OLDEST: u32 = 1;

/// Where and how a profile was recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// `uname -r`.
    pub kernel: String,
    /// VT-x, AMD-V or PVM.
    pub kvm_flavour: String,
    /// The CPU model.
    pub cpu: String,
    /// The host clocksource.
    pub clocksource: String,
    /// Halt polling set for the VM, in ns.
    pub halt_poll_ns: u64,
    /// Optimization toggles and their states.
    pub toggles: BTreeMap<String, bool>,
    /// The guest's name or path.
    pub guest: String,
    /// Its GNU build ID.
    pub guest_build_id: Option<String>,
    /// worldswitch's version.
    pub worldswitch: String,
    /// The command line that recorded it.
    pub command_line: Vec<String>,
}

/// A saved profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] when written by this build.
    pub version: u32,
    /// Where it came from.
    pub provenance: Provenance,
    /// Wall seconds recorded.
    pub seconds: f64,
    /// The overhead table.
    pub table: Table,
    /// Folded stacks with their sample counts.
    pub folded: BTreeMap<String, u64>,
    /// Other figures of the run.
    pub extra: serde_json::Value,
    /// The run over time (version 2; None when loaded from version 1, or
    /// not recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
}

/// Why a profile could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// Not JSON, or JSON of another shape.
    #[error(
        "{path} is not a worldswitch profile ({why}); record one with 'worldswitch record -o FILE'"
    )]
    NotAProfile {
        /// The file.
        path: String,
        /// What was wrong.
        why: String,
    },
    /// Another version of the format.
    #[error("{path} is a version {found} profile; this worldswitch reads versions {OLDEST} to {VERSION}")]
    Version {
        /// The file.
        path: String,
        /// Its version.
        found: u64,
    },
}

impl Profile {
    /// A profile of this version.
    pub fn new(
        provenance: Provenance,
        seconds: f64,
        table: Table,
        folded: BTreeMap<String, u64>,
        extra: serde_json::Value,
    ) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            provenance,
            seconds,
            table,
            folded,
            extra,
            timeline: None,
        }
    }

    /// The profile with its timeline.
    pub fn with_timeline(self, timeline: Option<Timeline>) -> Self {
        Self { timeline, ..self }
    }

    /// Writes the profile as JSON to `path`.
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        let io = |source| ProfileError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| io(e.into()))?;
        // A whole file or none: write beside it, sync, then rename over it.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".partial-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }

    /// Reads a profile, checking its format and version first.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let name = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| ProfileError::Io {
            path: name.clone(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| ProfileError::NotAProfile {
                path: name.clone(),
                why: e.to_string(),
            })?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(ProfileError::NotAProfile {
                path: name,
                why: format!("its format is not \"{FORMAT}\""),
            });
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if (u64::from(OLDEST)..=u64::from(VERSION)).contains(&v) => {}
            found => {
                return Err(ProfileError::Version {
                    path: name,
                    found: found.unwrap_or(0),
                })
            }
        }
        let p: Profile = serde_json::from_value(value).map_err(|e| ProfileError::NotAProfile {
            path: name.clone(),
            why: e.to_string(),
        })?;
        if let Some(why) = p.timeline.as_ref().and_then(|t| t.check().err()) {
            return Err(ProfileError::NotAProfile { path: name, why });
        }
        Ok(p)
    }

    /// What an export says of a version-1 profile, which has no timeline:
    /// its times are made up from the sample counts.
    pub fn timeline_notice(&self) -> Option<&'static str> {
        self.timeline.is_none().then_some(
            "this profile has no timeline (a version-1 profile, or one saved \
             by attach, keeps no sample times): each thread's stacks are \
             exported with their sample counts, so the call tree is exact \
             and the time order is not",
        )
    }

    /// The folded stacks, one `stack count` line each, sorted.
    pub fn folded_lines(&self) -> Vec<String> {
        self.folded
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::table::Measured;

    fn sample() -> Profile {
        fixture(&[("vcpu;vmm;world_switch;vcpu_load", 7)])
    }

    /// A profile of `folded` (stack, samples) with a one-row table: what
    /// the exporters' tests read.
    pub(crate) fn fixture(folded: &[(&str, u64)]) -> Profile {
        let table = Table::from_measured(
            &[Measured {
                category: crate::taxonomy::Category::LanceTx,
                count: 10,
                cycles: 1000,
                p50_cycles: 100.0,
                p99_cycles: 100.0,
                samples: None,
                thread: None,
            }],
            1000.0,
            (1.0, "test"),
            1.0,
            &[],
        );
        let folded = folded.iter().map(|&(s, n)| (s.to_string(), n)).collect();
        Profile::new(
            Provenance::default(),
            1.0,
            table,
            folded,
            serde_json::json!({"x": 1}),
        )
    }

    #[test]
    fn round_trips_and_exports() {
        let dir = std::env::temp_dir().join(format!("ws-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.json");
        let p = sample();
        p.save(&path).unwrap();
        let q = Profile::load(&path).unwrap();
        assert_eq!(q.table.rows.len(), p.table.rows.len());
        assert_eq!(
            q.folded_lines(),
            vec!["vcpu;vmm;world_switch;vcpu_load 7".to_string()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn version_1_loads_without_a_timeline_and_a_bad_timeline_is_refused() {
        let dir = std::env::temp_dir().join(format!("ws-profile-v1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.json");
        let mut v = serde_json::to_value(sample()).unwrap();
        v["version"] = 1.into();
        assert!(
            v.get("timeline").is_none(),
            "none is written when none was kept"
        );
        std::fs::write(&path, v.to_string()).unwrap();
        let old = Profile::load(&path).unwrap();
        assert!(old.timeline.is_none());
        assert!(old.timeline_notice().unwrap().contains("version-1"));
        v["version"] = VERSION.into();
        v["timeline"] = serde_json::json!({
            "stacks": ["vcpu;guest;guest_native"],
            "samples": {"t_ms": [0.0, 4.0], "stack": [0, 1]},
            "samples_left_out": 0, "seconds": [], "marks": [], "phases": [],
        });
        std::fs::write(&path, v.to_string()).unwrap();
        let e = Profile::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("not a worldswitch profile") && e.contains("stack 1 of 1"),
            "{e}"
        );
        v["timeline"]["samples"]["stack"] = serde_json::json!([0, 0]);
        std::fs::write(&path, v.to_string()).unwrap();
        let new = Profile::load(&path).unwrap();
        assert_eq!(new.timeline.unwrap().samples.t_ms, [0.0, 4.0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_versions_and_garbage_are_refused_plainly() {
        let dir = std::env::temp_dir().join(format!("ws-profile-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.json");
        let mut v = serde_json::to_value(sample()).unwrap();
        v["version"] = 99.into();
        std::fs::write(&path, v.to_string()).unwrap();
        let e = Profile::load(&path).unwrap_err().to_string();
        assert!(e.contains("version 99 profile"), "{e}");
        std::fs::write(
            &path,
            b"{\"format\": \"worldswitch-profile\", \"version\": 1}",
        )
        .unwrap();
        assert!(Profile::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not a worldswitch profile"));
        std::fs::write(&path, b"\x00garbage").unwrap();
        assert!(matches!(
            Profile::load(&path),
            Err(ProfileError::NotAProfile { .. })
        ));
        assert!(matches!(
            Profile::load(&dir.join("none")),
            Err(ProfileError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
