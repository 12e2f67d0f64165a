//! `record`, `report` and `flamegraph` end to end.

use crate::{kvm_or_skip, worldswitch, worldswitch_ok};

#[test]
fn record_then_report_and_draw() {
    if !kvm_or_skip("record") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ws-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.json");
    let file = file.to_str().unwrap();
    worldswitch_ok(&[
        "record",
        "--guest",
        "nettest",
        "--net",
        "sink",
        "--duration",
        "2s",
        "-o",
        file,
    ]);

    let out = worldswitch(&["report", file, "--format", "json"]);
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = r["rows"].as_array().unwrap();
    for row in rows {
        for key in [
            "world",
            "category",
            "thread",
            "share_pct",
            "count",
            "avg_us",
        ] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
    }
    let tx = rows.iter().find(|x| x["category"] == "vmnet_tx").unwrap();
    assert!(tx["count"].as_u64().unwrap() > 100, "{tx}");
    assert_eq!(tx["world"], "vmapp");
    assert!(r["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["reason"].is_string()));
    assert_eq!(r["provenance"]["guest"], "nettest");

    let out = worldswitch(&["report", file]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("transmitting via VMNet") && text.contains("8.7%"),
        "{text}"
    );
    let out = worldswitch(&["report", file, "--format", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with("world,category,thread,"), "{csv}");
    let out = worldswitch(&["report", file, "--format", "folded"]);
    assert!(out.status.success());
    let folded = String::from_utf8_lossy(&out.stdout);
    for line in folded.lines() {
        let (stack, n) = line.rsplit_once(' ').unwrap();
        assert!(n.parse::<u64>().unwrap() > 0, "{line}");
        assert!(stack.split(';').count() >= 3, "{line}");
    }

    let sampled = rows.iter().any(|x| x["source"] == "sampling");
    let svg = dir.join("p.svg");
    let out = worldswitch(&[
        "flamegraph",
        file,
        "-o",
        svg.to_str().unwrap(),
        "--title",
        "test graph",
    ]);
    if sampled {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<?xml") && text.trim_end().ends_with("</svg>"));
        assert!(text.contains("test graph"));
        for frame in ["vcpu", "vmm", "kvm_vcpu_ioctl"] {
            assert!(text.contains(frame), "{frame} missing from the SVG");
        }
    } else {
        eprintln!("note: no sampled stacks (perf sampling unavailable); flamegraph refused");
        assert!(!out.status.success());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn profiles_that_cannot_be_read_or_written_say_so() {
    let out = worldswitch(&["report", "/nonexistent/p.json"]);
    assert!(!out.status.success());
    let dir = std::env::temp_dir().join(format!("ws-badprofile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        "{\"format\": \"worldswitch-profile\", \"version\": 7}",
    )
    .unwrap();
    let out = worldswitch(&["report", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("version 7 profile"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    let out = worldswitch(&["record", "--guest", "hello", "-o", "/proc/nope/p.json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("choose a path you can write to"), "{err}");
}

#[test]
fn diff_compares_two_profiles() {
    if !kvm_or_skip("diff") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ws-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, svg) = (dir.join("a.json"), dir.join("b.json"), dir.join("d.svg"));
    for (path, size) in [(&a, "4096"), (&b, "512")] {
        let size = format!("write_size={size}");
        crate::record_ok(path, &["--duration", "1s", "--guest-arg", &size]);
    }
    let out = worldswitch_ok(&[
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("transmitting via VMNet") && text.contains("pp"),
        "{text}"
    );
    let sampled = std::fs::read_to_string(&svg).unwrap_or_default();
    assert!(sampled.is_empty() || sampled.starts_with("<?xml"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_profiler_compares_the_sources() {
    if !kvm_or_skip("bench profiler") {
        return;
    }
    let out = worldswitch_ok(&[
        "bench",
        "profiler",
        "--repeat",
        "1",
        "--duration",
        "1s",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let configs: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["config"].as_str().unwrap())
        .collect();
    assert_eq!(
        configs,
        ["off", "sampling", "sampling+windows", "windows always"]
    );
    assert_eq!(r["results"][0]["ratio_to_off"], 1.0);
    // The default's emulation split against one traced all the time.
    assert_eq!(r["results"][2]["emulation_duty_pct"], 2);
    assert_eq!(r["results"][3]["emulation_duty_pct"], 100);
    if crate::tracefs_ready() {
        let pct = |i: usize| r["results"][i]["emulation_split"]["ordinary_pct"].as_f64();
        let (default, always) = (pct(2).expect("a split"), pct(3).expect("a split"));
        assert!((0.0..=100.0).contains(&default) && (0.0..=100.0).contains(&always));
    }
    assert!(
        r["results"][1]["throughput_mbps"]["median"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn stitched_stacks_carry_real_guest_frames() {
    if !kvm_or_skip("stitched stacks") {
        return;
    }
    let file = std::env::temp_dir().join(format!("ws-stitch-{}.json", std::process::id()));
    crate::record_ok(
        &file,
        &["--stitch", "--sample-hz", "1000", "--duration", "4s"],
    );
    let p = profiles::profile::Profile::load(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    if p.folded.is_empty() {
        crate::skip("stitched stacks: no samples (perf events unavailable)");
        return;
    }
    // Every guest frame names a function of the guest's own ELF.
    use object::{Object, ObjectSymbol};
    let image = worldswitch::machine::guest_image::GuestImage::resolve("nettest").unwrap();
    let elf = object::File::parse(&*image.elf).unwrap();
    let names: std::collections::BTreeSet<&str> =
        elf.symbols().filter_map(|s| s.name().ok()).collect();
    let mut stitched = 0;
    for (stack, n) in &p.folded {
        let frames: Vec<&str> = stack.split(';').collect();
        let guest: Vec<&str> = frames
            .iter()
            .filter_map(|f| f.strip_prefix("guest:"))
            .collect();
        if guest.is_empty() {
            continue;
        }
        stitched += n;
        for g in &guest {
            assert!(
                names.contains(g),
                "guest:{g} is not a symbol of nettest: {stack}"
            );
        }
        // Stitched in front of the host frames, after thread;world;row.
        assert!(frames[3].starts_with("guest:"), "{stack}");
    }
    assert!(
        stitched > 0,
        "no stitched samples in {} stacks",
        p.folded.len()
    );
}

#[test]
fn every_worldswitch_thread_is_sampled() {
    if !kvm_or_skip("sampling every thread") || !crate::net::tap_or_skip("sampling every thread") {
        return;
    }
    let file = std::env::temp_dir().join(format!("ws-threads-{}.json", std::process::id()));
    worldswitch_ok(&[
        "record",
        "--guest",
        "nettest",
        "--net",
        "tap",
        "--sample-hz",
        "1000",
        "--duration",
        "3s",
        "-o",
        file.to_str().unwrap(),
    ]);
    let p = profiles::profile::Profile::load(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    if p.folded.is_empty() {
        crate::skip("sampling every thread: no samples (perf events unavailable)");
        return;
    }
    let t = &p.table;
    assert!(t.unsampled_threads.is_empty(), "{:?}", t.unsampled_threads);
    // Every folded stack starts with the thread it was sampled on, and the
    // per-thread counts are those stacks' sums.
    let mut from_stacks = std::collections::BTreeMap::<String, u64>::new();
    for (stack, n) in &p.folded {
        let thread = stack.split(';').next().unwrap().to_string();
        *from_stacks.entry(thread).or_insert(0) += n;
    }
    assert_eq!(from_stacks, t.samples_by_thread);
    // The vCPU runs the guest, the peer receives every datagram, the I/O
    // thread polls the TAP and kicks the vCPU at the host's tick.
    for thread in ["vcpu", "peer", "io"] {
        assert!(
            t.samples_by_thread.get(thread).copied().unwrap_or(0) > 0,
            "no samples of {thread}: {:?}",
            t.samples_by_thread
        );
    }
    assert!(
        p.folded
            .keys()
            .any(|s| s.starts_with("peer;host;receiver;") && s.contains("recvfrom")),
        "no stack of the peer receiving"
    );
    // The I/O thread's marker rows carry the cross-check from its samples.
    let io_events = t
        .row_of(
            profiles::taxonomy::Category::HostEvents,
            profiles::taxonomy::Thread::Io,
        )
        .expect("the I/O thread's host events row");
    let check = io_events.cross_check.as_ref().expect("a cross-check");
    assert!(check.samples > 0, "{check:?}");
}

#[test]
fn the_per_frame_ledger_adds_up_to_the_cpu_time_over_the_frames() {
    if !kvm_or_skip("per-frame ledger") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ws-ledger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.json");
    crate::record_ok(&file, &["--duration", "3s"]);
    let out = worldswitch_ok(&["report", file.to_str().unwrap(), "--format", "json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = profiles::profile::Profile::load(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let ledger = p.table.per_frame.as_ref().expect("frames flowed");
    assert!(ledger.frames > 1000, "{ledger:?}");
    let rows = r["rows"].as_array().unwrap();
    let sum: f64 = rows
        .iter()
        .map(|row| {
            row["us_per_frame"]
                .as_f64()
                .expect("every row has us_per_frame")
        })
        .sum();
    let want = p.table.denominator_seconds * 1e6 / ledger.frames as f64;
    assert!(
        (sum - want).abs() <= want * 0.01,
        "rows add up to {sum:.2} us per frame, the denominator over the frames is {want:.2}"
    );
    // The counts beside it: nettest at baseline exits about six times a
    // frame and takes one interrupt a frame.
    let exits = ledger.exits_to_user.unwrap();
    assert!((3.0..12.0).contains(&exits), "{ledger:?}");
    assert!(ledger.tap_writes.unwrap() >= 0.99, "{ledger:?}");
}

#[test]
fn bench_predict_only_prints_predictions_and_every_input() {
    if !kvm_or_skip("bench --predict-only") {
        return;
    }
    let out = worldswitch_ok(&[
        "bench",
        "--predict-only",
        "--json",
        "--presets",
        "baseline,paper,modern",
        "--duration",
        "1s",
        "--probe-duration",
        "1s",
        "--net",
        "sink",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = r["results"].as_array().unwrap();
    let configs: Vec<&str> = results
        .iter()
        .map(|c| c["config"].as_str().unwrap())
        .collect();
    assert_eq!(configs, ["baseline", "paper", "modern"]);
    let mbps = |i: usize| results[i]["predicted_throughput_mbps"].as_f64().unwrap();
    assert!(mbps(0) > 0.0, "{r:#}");
    // Fewer exits and a ring instead of the Lance's registers: faster.
    assert!(mbps(2) > mbps(0), "modern over baseline: {r:#}");
    // The calibration priced each event alone.
    let kinds: Vec<&str> = r["calibration"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["us"].as_f64().unwrap() > 0.0, "{c}");
            assert_eq!(c["source"], "calibration");
            c["kind"].as_str().unwrap()
        })
        .collect();
    for k in [
        "exit_to_user",
        "world_switch",
        "port_in_kvm",
        "doorbell",
        "emulated_instruction",
    ] {
        assert!(kinds.contains(&k), "{k} calibrated: {kinds:?}");
    }
    // Every cost says where it came from.
    for c in r["model"]["costs"].as_array().unwrap() {
        assert!(c["source"].is_string() && c["how"].is_string(), "{c}");
    }
    // The probes count what each mechanism changes.
    let probes = r["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 7, "the baseline and six toggles: {r:#}");
    assert!(probes[0]["toggle"].is_null());
    let probe = |name: &str| {
        probes
            .iter()
            .find(|p| p["toggle"] == name)
            .unwrap_or_else(|| panic!("no probe of {name}"))["counts"]
            .clone()
    };
    let base = &probes[0]["counts"];
    let exits = |c: &serde_json::Value| c["exits_to_user"].as_f64().unwrap();
    // The mechanism exactly: no data-port write exits any more (the
    // exits left are reads, and the flusher's kick a transmit costs, whose
    // count the host's signal latency moves).
    let data_writes = |c: &serde_json::Value| c["lance"]["data_writes_exiting"].as_f64().unwrap();
    let data_port = probe("data-port-in-kernel");
    assert!(
        data_writes(base) > 1.0 && data_writes(&data_port) < 0.05,
        "data-port writes stop exiting: {r:#}"
    );
    assert!(exits(&data_port) < exits(base), "{r:#}");
    let pv = probe("pv-nic");
    assert!(exits(&pv) < 0.5, "{pv}");
    assert!(pv["doorbells"].as_f64().unwrap() > 0.0, "{pv}");
    // (A few Lance frames before the guest's driver switches.)
    assert!(pv["interrupts"].as_f64().unwrap() < 0.05, "{pv}");
    assert!(
        exits(&probe("rap-in-kernel")) > exits(base) * 1.5,
        "naive: address-port writes exit too: {r:#}"
    );
}

/// A recording of `duration` exported by `report --format FORMAT -o`: the
/// export and the profile it came from.
fn exported(format: &str, duration: &str) -> (serde_json::Value, profiles::profile::Profile) {
    let dir = std::env::temp_dir().join(format!("ws-{format}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (file, out_file) = (dir.join("p.json"), dir.join(format!("{format}.json")));
    crate::record_ok(&file, &["--duration", duration]);
    worldswitch_ok(&[
        "report",
        file.to_str().unwrap(),
        "--format",
        format,
        "-o",
        out_file.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    let p = profiles::profile::Profile::load(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (v, p)
}

#[test]
fn a_profile_opens_in_speedscope_one_profile_per_thread() {
    if !kvm_or_skip("speedscope export") {
        return;
    }
    let (v, p) = exported("speedscope", "2s");
    // The schema's required fields.
    assert_eq!(v["$schema"], profiles::speedscope::SCHEMA);
    let frames = v["shared"]["frames"].as_array().unwrap();
    assert!(frames.iter().all(|f| f["name"].is_string()));
    let profiles = v["profiles"].as_array().unwrap();
    assert!(profiles.iter().any(|t| t["name"] == "vcpu"), "{profiles:?}");
    // Every sample of the profile is there, in its thread.
    let total: u64 = profiles
        .iter()
        .map(|t| {
            assert_eq!(t["type"], "sampled");
            let (samples, weights) = (
                t["samples"].as_array().unwrap(),
                t["weights"].as_array().unwrap(),
            );
            assert_eq!(samples.len(), weights.len());
            assert!(samples
                .iter()
                .flat_map(|s| s.as_array().unwrap())
                .all(|i| (i.as_u64().unwrap() as usize) < frames.len()));
            weights.iter().map(|w| w.as_u64().unwrap()).sum::<u64>()
        })
        .sum();
    assert_eq!(total, p.folded.values().sum::<u64>());
    assert!(total > 100, "{total} samples");
    // The samples came in time order: the timeline has every one.
    let t = p.timeline.as_ref().expect("a recording keeps its timeline");
    assert_eq!(t.samples.t_ms.len() as u64, total);
}

#[test]
fn record_writes_a_speedscope_file_straight() {
    if !kvm_or_skip("record --format speedscope") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ws-record-ss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("run.speedscope.json");
    crate::record_ok(&file, &["--duration", "1s", "--format", "speedscope"]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(v["$schema"], profiles::speedscope::SCHEMA);
    assert!(v["shared"]["frames"].as_array().unwrap().len() > 3, "{v}");
    assert!(v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "vcpu"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_profile_opens_in_the_firefox_profiler_one_thread_per_thread() {
    if !kvm_or_skip("Firefox Profiler export") {
        return;
    }
    let (v, p) = exported("firefox", "4s");
    // The processed format's frame: meta with the rows as categories, and
    // one thread per worldswitch thread holding all of its samples.
    assert!(v["meta"]["version"].is_number(), "{}", v["meta"]);
    let categories = v["meta"]["categories"].as_array().unwrap();
    assert!(
        categories
            .iter()
            .any(|c| c["name"].as_str().unwrap().starts_with("guest:") && c["color"] == "green"),
        "{categories:?}"
    );
    let threads = v["threads"].as_array().unwrap();
    assert!(threads.iter().any(|t| t["name"] == "vcpu"));
    let total: i64 = threads
        .iter()
        .flat_map(|t| t["samples"]["weight"].as_array().unwrap())
        .map(|w| w.as_i64().unwrap())
        .sum();
    assert_eq!(total as u64, p.folded.values().sum::<u64>());
    // A real timeline: the vCPU's samples of a 4 s recording span at least
    // 3 s, the run's first mark (its optimizations) is on its marker
    // chart, and the counters have a sample a second.
    let vcpu = threads.iter().find(|t| t["name"] == "vcpu").unwrap();
    let deltas: Vec<f64> = vcpu["samples"]["timeDeltas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    let span_ms: f64 = deltas[1..].iter().sum();
    assert!(span_ms >= 3000.0, "the samples span {span_ms} ms");
    assert!(deltas.iter().all(|&d| d >= 0.0), "time order");
    let markers = &vcpu["markers"];
    assert!(markers["length"].as_u64().unwrap() >= 1, "{markers}");
    let counters = v["counters"].as_array().unwrap();
    let names: Vec<&str> = counters
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Throughput", "Exits to user space"]);
    let seconds = counters[0]["samples"]["length"].as_u64().unwrap();
    assert!((3..=6).contains(&seconds), "{seconds} counter samples");
    let megabits: f64 = counters[0]["samples"]["count"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap())
        .sum();
    assert!(megabits > 1.0, "nettest sends: {megabits} Mb");
}
