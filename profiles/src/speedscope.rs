//! A saved profile in speedscope's file format
//! (<https://www.speedscope.app/file-format-schema.json>): one sampled
//! profile per thread, over one shared frame table. With a timeline
//! (version 2) each thread's samples come in the order they were taken
//! (a run of one stack as one weighted sample), so speedscope's time order
//! view is the run's. Version-1 profiles keep sample counts per stack
//! only, so each thread's profile lists its stacks once with their counts
//! as weights: the left-heavy and sandwich views are exact, the time order
//! is not.

use crate::profile::Profile;
use serde::Serialize;
use std::collections::BTreeMap;

/// The schema every speedscope file names.
pub const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

#[derive(Serialize)]
struct File {
    #[serde(rename = "$schema")]
    schema: &'static str,
    name: String,
    exporter: String,
    #[serde(rename = "activeProfileIndex")]
    active_profile_index: usize,
    shared: Shared,
    profiles: Vec<Sampled>,
}

#[derive(Serialize)]
struct Shared {
    frames: Vec<Frame>,
}

#[derive(Serialize)]
struct Frame {
    name: String,
}

#[derive(Serialize)]
struct Sampled {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    unit: &'static str,
    #[serde(rename = "startValue")]
    start_value: u64,
    #[serde(rename = "endValue")]
    end_value: u64,
    samples: Vec<Vec<usize>>,
    weights: Vec<u64>,
}

/// `p` as a speedscope file: stacks are `thread;world;row;frames...`, so
/// each thread becomes a profile whose stacks start at the world.
pub fn file(p: &Profile, exporter: &str) -> serde_json::Value {
    // Stacks with their sample counts, in the order speedscope gets them.
    let stacks: Vec<(&str, u64)> = match &p.timeline {
        Some(t) => {
            let mut runs: Vec<(u32, u64)> = Vec::new();
            let mut by_time: Vec<(f64, u32)> = t
                .samples
                .t_ms
                .iter()
                .copied()
                .zip(t.samples.stack.iter().copied())
                .collect();
            by_time.sort_by(|a, b| a.0.total_cmp(&b.0));
            // Per thread, consecutive samples of one stack make one run.
            let mut last: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, i) in by_time {
                let stack = t.stacks[i as usize].as_str();
                let thread = stack.split(';').next().unwrap_or(stack);
                match last.get(thread) {
                    Some(&r) if runs[r].0 == i => runs[r].1 += 1,
                    _ => {
                        last.insert(thread, runs.len());
                        runs.push((i, 1));
                    }
                }
            }
            runs.into_iter()
                .map(|(i, n)| (t.stacks[i as usize].as_str(), n))
                .collect()
        }
        None => p.folded.iter().map(|(s, &n)| (s.as_str(), n)).collect(),
    };
    let mut frames: Vec<Frame> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut threads: BTreeMap<&str, Sampled> = BTreeMap::new();
    for (stack, count) in stacks {
        let mut parts = stack.split(';');
        let Some(thread) = parts.next() else { continue };
        let sample: Vec<usize> = parts
            .map(|f| {
                *index.entry(f.to_string()).or_insert_with(|| {
                    frames.push(Frame {
                        name: f.to_string(),
                    });
                    frames.len() - 1
                })
            })
            .collect();
        let t = threads.entry(thread).or_insert_with(|| Sampled {
            kind: "sampled",
            name: thread.to_string(),
            unit: "none",
            start_value: 0,
            end_value: 0,
            samples: Vec::new(),
            weights: Vec::new(),
        });
        t.samples.push(sample);
        t.weights.push(count);
        t.end_value += count;
    }
    let v = &p.provenance;
    let f = File {
        schema: SCHEMA,
        name: format!("{} on {} ({:.1} s)", v.guest, v.kvm_flavour, p.seconds),
        exporter: exporter.to_string(),
        active_profile_index: 0,
        shared: Shared { frames },
        profiles: threads.into_values().collect(),
    };
    serde_json::to_value(f).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::fixture;

    #[test]
    fn one_sampled_profile_per_thread_over_shared_frames() {
        let p = fixture(&[
            ("vcpu;vmm;world_switch;vcpu_load", 30),
            ("vcpu;guest;guest_native", 10),
            ("io;vmapp;vmnet_rx;tun_recv", 5),
        ]);
        let v = file(&p, "worldswitch test");
        assert_eq!(v["$schema"], SCHEMA);
        let frames = v["shared"]["frames"].as_array().unwrap();
        let profiles = v["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 2);
        let vcpu = profiles.iter().find(|p| p["name"] == "vcpu").unwrap();
        assert_eq!(vcpu["type"], "sampled");
        assert_eq!(vcpu["endValue"], 40);
        assert_eq!(vcpu["weights"].as_array().unwrap().len(), 2);
        // Each sample is frame indices, root first, naming the stack.
        let names: Vec<Vec<&str>> = vcpu["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s.as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        frames[i.as_u64().unwrap() as usize]["name"]
                            .as_str()
                            .unwrap()
                    })
                    .collect()
            })
            .collect();
        assert!(
            names.contains(&vec!["vmm", "world_switch", "vcpu_load"]),
            "{names:?}"
        );
    }

    #[test]
    fn a_timeline_gives_each_threads_samples_in_time_order() {
        let stacks = [
            "vcpu;guest;guest_native",
            "vcpu;vmm;world_switch",
            "io;vmapp;io_wait",
        ];
        let p = fixture(&[(stacks[0], 3), (stacks[1], 1), (stacks[2], 1)]).with_timeline(Some(
            crate::timeline::Timeline {
                stacks: stacks.map(String::from).to_vec(),
                samples: crate::timeline::Samples {
                    // Out of order on purpose; the io sample between the
                    // vCPU's first two does not split their run.
                    t_ms: vec![12.0, 0.0, 4.0, 2.0, 8.0],
                    stack: vec![0, 0, 1, 2, 0],
                },
                ..Default::default()
            },
        ));
        let v = file(&p, "worldswitch test");
        let vcpu = v["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "vcpu")
            .unwrap()
            .clone();
        // guest (0 ms), world_switch (4 ms), guest twice (8, 12 ms).
        assert_eq!(vcpu["weights"], serde_json::json!([1, 1, 2]));
        assert_eq!(vcpu["samples"][0], vcpu["samples"][2]);
        assert_eq!(vcpu["endValue"], 4);
    }
}
