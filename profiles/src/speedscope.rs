//! A saved profile in speedscope's file format
//! (<https://www.speedscope.app/file-format-schema.json>): one sampled
//! profile per thread, over one shared frame table. Version-1 profiles
//! keep sample counts per stack, not each sample's time, so each thread's
//! profile lists its stacks once with their counts as weights: speedscope's
//! left-heavy and sandwich views are exact, its time order is not.

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
    let mut frames: Vec<Frame> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut threads: BTreeMap<&str, Sampled> = BTreeMap::new();
    for (stack, &count) in &p.folded {
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
}
