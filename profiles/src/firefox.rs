//! A saved profile in the Firefox Profiler's processed format, through
//! fxprof-processed-profile: one process, one thread per worldswitch
//! thread, the paper's rows as categories in their world's colour (the
//! Flame screen's palette). A profile with a timeline (version 2) puts
//! each sample at its time, with markers for the run's marks and the
//! guest's phases on the vCPU thread and counter tracks for Mb/s and exits
//! per second. A version-1 profile keeps sample counts per stack only, so
//! each thread's stacks are laid out one after another, each as long as
//! its samples took at the recording's rate: the call tree and flame graph
//! are exact, the timeline's order is not.

use crate::profile::Profile;
use crate::taxonomy::Category;
use crate::timeline::Timeline;
use fxprof_processed_profile::{
    CategoryColor, CategoryHandle, CpuDelta, Frame, FrameFlags, FrameInfo, MarkerFieldFlags,
    MarkerFieldFormat, MarkerTiming, ProcessHandle, Profile as FxProfile, ReferenceTimestamp,
    SamplingInterval, StackHandle, StaticSchemaMarker, StaticSchemaMarkerField, StringHandle,
    ThreadHandle, Timestamp,
};
use std::collections::BTreeMap;

/// The Firefox Profiler's colour for a world (see [`crate::flame::PALETTE`]).
fn colour(world: &str) -> CategoryColor {
    match crate::flame::colour(world).map(|(name, _)| name) {
        Some("green") => CategoryColor::Green,
        Some("light red") => CategoryColor::LightRed,
        Some("light blue") => CategoryColor::LightBlue,
        Some("magenta") => CategoryColor::Magenta,
        _ => CategoryColor::Gray,
    }
}

fn at(ms: f64) -> Timestamp {
    Timestamp::from_millis_since_reference(ms)
}

/// The file being built: threads by name, categories by world and row.
struct Builder {
    fx: FxProfile,
    process: ProcessHandle,
    threads: BTreeMap<String, ThreadHandle>,
    categories: BTreeMap<(String, String), CategoryHandle>,
}

impl Builder {
    fn new(p: &Profile, interval_ms: f64) -> Self {
        let mut fx = FxProfile::new(
            &format!("worldswitch: {}", p.provenance.guest),
            ReferenceTimestamp::from_millis_since_unix_epoch(0.0),
            SamplingInterval::from_nanos((interval_ms * 1e6) as u64),
        );
        let process = fx.add_process("worldswitch", 1, at(0.0));
        Self {
            fx,
            process,
            threads: BTreeMap::new(),
            categories: BTreeMap::new(),
        }
    }

    fn thread(&mut self, name: &str) -> ThreadHandle {
        if let Some(&t) = self.threads.get(name) {
            return t;
        }
        let tid = self.threads.len() as u32 + 1;
        // A main thread would take the process's name.
        let t = self.fx.add_thread(self.process, tid, at(0.0), false);
        self.fx.set_thread_name(t, name);
        self.threads.insert(name.to_string(), t);
        t
    }

    /// The thread and interned stack of a folded stack
    /// (`thread;world;row;frames...`), or None if it has no world.
    fn stack(&mut self, folded: &str) -> Option<(ThreadHandle, StackHandle)> {
        let mut parts = folded.split(';');
        let (thread, world) = (parts.next()?, parts.next()?);
        let row = parts.next().unwrap_or(world);
        let label = Category::from_key(row).map_or(row.to_string(), |c| c.label().to_string());
        let fx = &mut self.fx;
        let category = *self
            .categories
            .entry((world.to_string(), row.to_string()))
            .or_insert_with(|| fx.add_category(&format!("{world}: {label}"), colour(world)));
        let handle = self.thread(thread);
        let frames: Vec<FrameInfo> = [world, row]
            .into_iter()
            .chain(parts)
            .map(|name| FrameInfo {
                frame: Frame::Label(self.fx.intern_string(name)),
                category_pair: category.into(),
                flags: FrameFlags::empty(),
            })
            .collect();
        Some((
            handle,
            self.fx.intern_stack_frames(handle, frames.into_iter())?,
        ))
    }
}

/// A moment or span on the vCPU thread's marker chart.
struct Note {
    name: StringHandle,
    kind: StringHandle,
}

impl StaticSchemaMarker for Note {
    const UNIQUE_MARKER_TYPE_NAME: &'static str = "worldswitch";
    const CHART_LABEL: Option<&'static str> = Some("{marker.name}");
    const TABLE_LABEL: Option<&'static str> = Some("{marker.data.kind}: {marker.name}");
    const FIELDS: &'static [StaticSchemaMarkerField] = &[StaticSchemaMarkerField {
        key: "kind",
        label: "Kind",
        format: MarkerFieldFormat::String,
        flags: MarkerFieldFlags::SEARCHABLE,
    }];

    fn name(&self, _: &mut FxProfile) -> StringHandle {
        self.name
    }

    fn category(&self, _: &mut FxProfile) -> CategoryHandle {
        CategoryHandle::OTHER
    }

    fn string_field_value(&self, _: u32) -> StringHandle {
        self.kind
    }

    fn number_field_value(&self, _: u32) -> f64 {
        unreachable!("a note has no number fields")
    }
}

/// `p` as a Firefox Profiler file; `hz` is the rate it was sampled at
/// (each sample is that long on the timeline).
pub fn file(p: &Profile, hz: f64) -> serde_json::Value {
    let interval_ms = 1000.0 / hz.max(1.0);
    let mut b = Builder::new(p, interval_ms);
    match &p.timeline {
        Some(t) => timeline(&mut b, t),
        None => laid_out(&mut b, p, interval_ms),
    }
    serde_json::to_value(&b.fx).expect("the profile serializes")
}

/// Each thread's stacks one after another, each as long as its samples.
fn laid_out(b: &mut Builder, p: &Profile, interval_ms: f64) {
    // Where each thread's next stack starts, in milliseconds.
    let mut next: BTreeMap<ThreadHandle, f64> = BTreeMap::new();
    for (stack, &count) in &p.folded {
        let Some((thread, stack)) = b.stack(stack) else {
            continue;
        };
        let t = next.entry(thread).or_insert(0.0);
        let weight = i32::try_from(count).unwrap_or(i32::MAX);
        b.fx.add_sample(thread, at(*t), Some(stack), CpuDelta::ZERO, weight);
        *t += count as f64 * interval_ms;
    }
}

/// Each sample at its time; marks, phases and the one-second series.
fn timeline(b: &mut Builder, t: &Timeline) {
    let stacks: Vec<Option<(ThreadHandle, StackHandle)>> =
        t.stacks.iter().map(|s| b.stack(s)).collect();
    for (&ms, &i) in t.samples.t_ms.iter().zip(&t.samples.stack) {
        if let Some((thread, stack)) = stacks[i as usize] {
            b.fx.add_sample(thread, at(ms), Some(stack), CpuDelta::ZERO, 1);
        }
    }
    let vcpu = b.thread(crate::taxonomy::Thread::Vcpu.sampled_name());
    let note = |fx: &mut FxProfile, timing, name: &str, kind: &str| {
        let marker = Note {
            name: fx.intern_string(name),
            kind: fx.intern_string(kind),
        };
        fx.add_marker(vcpu, timing, marker);
    };
    for m in &t.marks {
        note(
            &mut b.fx,
            MarkerTiming::Instant(at(m.t * 1e3)),
            &m.label,
            "mark",
        );
    }
    for ph in &t.phases {
        let (start, end) = (ph.start_s * 1e3, (ph.start_s + ph.seconds) * 1e3);
        let timing = MarkerTiming::Interval(at(start), at(end));
        note(
            &mut b.fx,
            timing,
            &format!("{} {}", ph.name, ph.index),
            "guest phase",
        );
    }
    // Counters hold each second's amount; the profiler draws their rate.
    let mbits = b.fx.add_counter(
        b.process,
        "Throughput",
        "Network",
        "Megabits the peer received from the guest",
    );
    let exits = b.fx.add_counter(
        b.process,
        "Exits to user space",
        "KVM",
        "KVM_RUN returns to worldswitch, of every kind",
    );
    let mut last = 0.0;
    for s in &t.seconds {
        let dt = (s.t - last).max(0.0);
        last = s.t;
        let frames = (s.frames_per_sec * dt).round() as u32;
        let exits_n = (s.exits_per_sec() * dt).round() as u32;
        b.fx.add_counter_sample(mbits, at(s.t * 1e3), s.mbps * dt, frames);
        b.fx.add_counter_sample(exits, at(s.t * 1e3), f64::from(exits_n), exits_n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::fixture;
    use crate::timeline::{Mark, Phase, Point, Samples};

    /// A JSON array of numbers.
    fn floats(v: &serde_json::Value) -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect()
    }

    #[test]
    fn threads_rows_and_every_sample_reach_the_firefox_profiler_format() {
        let p = fixture(&[
            ("vcpu;vmm;world_switch;vcpu_load", 30),
            ("vcpu;guest;guest_native", 10),
            ("io;vmapp;vmnet_rx;tun_recv", 5),
        ]);
        let v = file(&p, 1000.0);
        let categories = v["meta"]["categories"].as_array().unwrap();
        let world_switch = categories
            .iter()
            .find(|c| {
                c["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("vmm: transitioning")
            })
            .unwrap();
        assert_eq!(world_switch["color"], "lightred");
        let threads = v["threads"].as_array().unwrap();
        assert_eq!(threads.len(), 2);
        let vcpu = threads.iter().find(|t| t["name"] == "vcpu").unwrap();
        let samples = &vcpu["samples"];
        let weights: i64 = samples["weight"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_i64().unwrap())
            .sum();
        assert_eq!(weights, 40);
        // The stacks follow one another: the second (world_switch) starts
        // where the first one's 10 samples at 1 kHz end.
        assert_eq!(floats(&samples["timeDeltas"]), vec![0.0, 10.0]);
    }

    #[test]
    fn a_timeline_gives_sample_times_markers_and_counters() {
        let stacks = ["vcpu;guest;guest_native", "io;vmapp;io_wait;poll"];
        let p = fixture(&[(stacks[0], 3), (stacks[1], 1)]).with_timeline(Some(Timeline {
            stacks: stacks.map(String::from).to_vec(),
            samples: Samples {
                t_ms: vec![5.0, 6.0, 1005.0, 2505.0],
                stack: vec![0, 1, 0, 0],
            },
            seconds: vec![
                Point {
                    t: 1.0,
                    mbps: 8.0,
                    frames_per_sec: 1000.0,
                    pio_exits_per_sec: 3000.0,
                    ..Point::default()
                },
                Point {
                    t: 2.0,
                    mbps: 16.0,
                    ..Point::default()
                },
            ],
            marks: vec![Mark {
                t: 1.5,
                label: "counters reset".into(),
            }],
            phases: vec![Phase {
                name: "send".into(),
                index: 0,
                start_s: 0.25,
                seconds: 2.0,
            }],
            ..Timeline::default()
        }));
        let v = file(&p, 250.0);
        let threads = v["threads"].as_array().unwrap();
        let vcpu = threads.iter().find(|t| t["name"] == "vcpu").unwrap();
        assert_eq!(
            floats(&vcpu["samples"]["timeDeltas"]),
            vec![5.0, 1000.0, 1500.0]
        );
        let markers = &vcpu["markers"];
        assert_eq!(markers["length"], 2, "{markers}");
        // The phase is an interval from 250 ms to 2250 ms.
        let starts = floats(&markers["startTime"]);
        assert!(
            starts.contains(&1500.0) && starts.contains(&250.0),
            "{markers}"
        );
        assert!(markers["endTime"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(2250.0)));
        let counters = v["counters"].as_array().unwrap();
        let names: Vec<&str> = counters
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Throughput", "Exits to user space"]);
        // Each second's amount: 8 Mb in the first, 16 in the second.
        assert_eq!(
            counters[0]["samples"]["count"],
            serde_json::json!([8.0, 16.0])
        );
        assert_eq!(
            counters[1]["samples"]["count"],
            serde_json::json!([3000.0, 0.0])
        );
    }
}
