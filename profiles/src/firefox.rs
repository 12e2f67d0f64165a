//! A saved profile in the Firefox Profiler's processed format, through
//! fxprof-processed-profile: one process, one thread per worldswitch
//! thread, the paper's rows as categories in their world's colour (the
//! Flame screen's palette). Version-1 profiles keep sample counts per
//! stack, not each sample's time, so each thread's stacks are laid out one
//! after another, each as long as its samples took at the recording's
//! rate: the call tree and flame graph are exact, the timeline's order is
//! not.

use crate::profile::Profile;
use crate::taxonomy::Category;
use fxprof_processed_profile::{
    CategoryColor, CategoryHandle, CpuDelta, Frame, FrameFlags, FrameInfo, Profile as FxProfile,
    ReferenceTimestamp, SamplingInterval, Timestamp,
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

/// `p` as a Firefox Profiler file; `hz` is the rate it was sampled at
/// (each sample is that long on the timeline).
pub fn file(p: &Profile, hz: f64) -> serde_json::Value {
    let interval_ms = 1000.0 / hz.max(1.0);
    let mut fx = FxProfile::new(
        &format!("worldswitch: {}", p.provenance.guest),
        ReferenceTimestamp::from_millis_since_unix_epoch(0.0),
        SamplingInterval::from_nanos((interval_ms * 1e6) as u64),
    );
    let process = fx.add_process(
        "worldswitch",
        1,
        Timestamp::from_millis_since_reference(0.0),
    );
    let mut categories: BTreeMap<(String, String), CategoryHandle> = BTreeMap::new();
    let mut threads = BTreeMap::new();
    // Where each thread's next stack starts, in milliseconds.
    let mut at: BTreeMap<String, f64> = BTreeMap::new();
    for (stack, &count) in &p.folded {
        let mut parts = stack.split(';');
        let (Some(thread), Some(world)) = (parts.next(), parts.next()) else {
            continue;
        };
        let row = parts.next().unwrap_or(world);
        let label = Category::from_key(row).map_or(row.to_string(), |c| c.label().to_string());
        let category = *categories
            .entry((world.to_string(), row.to_string()))
            .or_insert_with(|| fx.add_category(&format!("{world}: {label}"), colour(world)));
        let tid = threads.len() as u32 + 1;
        let handle = *threads.entry(thread.to_string()).or_insert_with(|| {
            let t = fx.add_thread(
                process,
                tid,
                Timestamp::from_millis_since_reference(0.0),
                false, // a main thread would take the process's name
            );
            fx.set_thread_name(t, thread);
            t
        });
        let frames: Vec<FrameInfo> = [world, row]
            .into_iter()
            .chain(parts)
            .map(|name| FrameInfo {
                frame: Frame::Label(fx.intern_string(name)),
                category_pair: category.into(),
                flags: FrameFlags::empty(),
            })
            .collect();
        let stack = fx.intern_stack_frames(handle, frames.into_iter());
        let t = at.entry(thread.to_string()).or_insert(0.0);
        fx.add_sample(
            handle,
            Timestamp::from_millis_since_reference(*t),
            stack,
            CpuDelta::ZERO,
            i32::try_from(count).unwrap_or(i32::MAX),
        );
        *t += count as f64 * interval_ms;
    }
    serde_json::to_value(&fx).expect("the profile serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::fixture;

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
        let deltas: Vec<f64> = samples["timeDeltas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect();
        assert_eq!(deltas, vec![0.0, 10.0]);
    }
}
