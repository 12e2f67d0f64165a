//! `record`, `report` and `flamegraph`: saving a run's profile with its
//! provenance, and reading it back as tables, JSON, CSV or an SVG.

use crate::cli::{RecordArgs, RecordFormat, ReportFormat};
use crate::run;
use crate::session::RunResult;
use anyhow::Context;
use profiles::profile::{Profile, Provenance};
use profiles::taxonomy::{Category, Thread};
use std::io::Write;
use std::path::Path;

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

/// Where and how this run happened.
pub fn provenance(r: &RunResult, halt_poll_ns: u64) -> Provenance {
    Provenance {
        halt_poll_ns,
        toggles: r.optimizations.clone(),
        guest: r.guest.clone(),
        guest_build_id: r.guest_build_id.clone(),
        ..host_provenance()
    }
}

/// The host's part of a profile's provenance: kernel, KVM flavour, CPU,
/// clocksource, worldswitch and the command line.
pub fn host_provenance() -> Provenance {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    Provenance {
        kernel: first_line("/proc/sys/kernel/osrelease"),
        kvm_flavour: crate::machine::vmm::flavour::Flavour::detect()
            .name()
            .to_string(),
        cpu,
        clocksource: first_line("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        worldswitch: env!("CARGO_PKG_VERSION").to_string(),
        command_line: std::env::args().collect(),
        ..Default::default()
    }
}

/// Fails, before a run, when `output` cannot be written.
pub fn check_writable(output: &Path) -> anyhow::Result<()> {
    std::fs::File::create(output).with_context(|| {
        format!(
            "cannot write {}: choose a path you can write to",
            output.display()
        )
    })?;
    Ok(())
}

/// Saves `profile` to `output`; if that fails, keeps it in the temporary
/// directory (a run cannot be repeated exactly) and says where. `what`
/// names the fallback file.
pub fn save_or_keep(profile: &Profile, output: &Path, what: &str) -> anyhow::Result<()> {
    let Err(e) = profile.save(output) else {
        return Ok(());
    };
    let e = match e {
        profiles::profile::ProfileError::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    };
    keep(profile, output, what, &e)
}

/// Writes `profile` to `output` in an export `format`; if that fails,
/// keeps the profile itself in the temporary directory and says where.
fn export_or_keep(
    profile: &Profile,
    format: ReportFormat,
    output: &Path,
    what: &str,
) -> anyhow::Result<()> {
    let mut text = Vec::new();
    crate::frontends::printer::print_profile(profile, format, &mut text)?;
    match std::fs::write(output, text) {
        Ok(()) => Ok(()),
        Err(e) => keep(profile, output, what, &e.to_string()),
    }
}

/// Keeps `profile`, which could not be written to `output` (`e`), in the
/// temporary directory, and fails saying where.
fn keep(profile: &Profile, output: &Path, what: &str, e: &str) -> anyhow::Result<()> {
    if std::fs::metadata(output).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(output);
    }
    let fallback = std::env::temp_dir().join(format!(
        "worldswitch-record-{}-{}.json",
        what.replace(['/', ' '], "_"),
        std::process::id()
    ));
    match profile.save(&fallback) {
        Ok(()) => anyhow::bail!(
            "cannot write {} ({e}); the profile was kept in {} instead",
            output.display(),
            fallback.display()
        ),
        Err(_) => anyhow::bail!(
            "cannot write {} ({e}) nor a copy in {}; free some space and record again",
            output.display(),
            std::env::temp_dir().display()
        ),
    }
}

/// Writes a saved profile in `format` to `output`.
pub fn export(profile: &Profile, format: ReportFormat, output: &Path) -> anyhow::Result<()> {
    check_writable(output)?;
    let mut text = Vec::new();
    crate::frontends::printer::print_profile(profile, format, &mut text)?;
    std::fs::write(output, text)
        .with_context(|| format!("cannot write {}: choose another -o path", output.display()))
}

/// Runs the guest and saves its profile to `args.output`.
pub fn record(
    args: &RecordArgs,
    out: &mut dyn Write,
    status: &mut dyn Write,
) -> anyhow::Result<RunResult> {
    // Fail before the run, not after it, when the file cannot be written.
    check_writable(&args.output)?;
    // Which kernel tracepoints fire on this host at all, so a count of 0 in
    // the profile can be told from a tracepoint that cannot count.
    let calibration: Vec<serde_json::Value> = crate::commands::doctor::calibrate_tracepoints()
        .into_iter()
        .map(|c| serde_json::json!({"tracepoint": c.name, "status": c.status, "detail": c.detail}))
        .collect();
    let run_args = crate::cli::RunArgs {
        timeline: true,
        ..args.run.clone()
    };
    // On a terminal the workbench records: its toggles, resets and
    // baselines become the timeline's marks.
    let result = if !run_args.is_headless() && crate::frontends::tui::have_terminal() {
        crate::frontends::tui::run(&run_args)?
    } else {
        run::run(&run_args, &mut std::io::sink(), status)?
    };
    let extra = serde_json::json!({
        "outcome": result.outcome,
        "exits": result.exits,
        "tracepoints": result.tracepoints,
        "guest_counters": result.guest_counters,
        "net": result.net,
        "host_tsc_mhz": result.host_tsc_mhz,
        "optimization_changes": result.optimization_changes,
        "frames_received_by_host": result.net.frames_received_by_host,
        "frames_delivered": result.net.frames_delivered,
        "exits_per_frame": result.net.exits_per_frame,
        "backend": result.net.backend,
        "transmit_path": result.transmit_path,
        "tracepoint_calibration": calibration,
    });
    let profile = Profile::new(
        provenance(&result, args.run.halt_poll_ns),
        result.seconds,
        result.profile.clone(),
        result.folded.clone(),
        extra,
    )
    .with_timeline(result.timeline.clone());
    let what = match args.format {
        RecordFormat::Profile => {
            save_or_keep(&profile, &args.output, &result.guest)?;
            "Profile"
        }
        RecordFormat::Speedscope => {
            export_or_keep(
                &profile,
                ReportFormat::Speedscope,
                &args.output,
                &result.guest,
            )?;
            "speedscope profile"
        }
        RecordFormat::Firefox => {
            export_or_keep(&profile, ReportFormat::Firefox, &args.output, &result.guest)?;
            "Firefox Profiler profile"
        }
    };
    writeln!(
        out,
        "{} {what} of {} ({:.1} s, {} sampled stacks) saved to {}.",
        result.outcome.message,
        result.guest,
        result.seconds,
        result.folded.values().sum::<u64>(),
        args.output.display()
    )?;
    Ok(result)
}

/// Writes a saved profile's stacks as a flamegraph SVG.
pub fn flamegraph(
    file: &Path,
    output: &Path,
    inverted: bool,
    title: Option<&str>,
) -> anyhow::Result<()> {
    let p = Profile::load(file)?;
    let lines = p.folded_lines();
    anyhow::ensure!(
        !lines.is_empty(),
        "{} holds no sampled stacks (was perf sampling available when it was recorded?)",
        file.display()
    );
    let default_title = format!(
        "{} on {} ({})",
        p.provenance.guest, p.provenance.kvm_flavour, p.provenance.kernel
    );
    let svg = profiles::flame::svg(&lines, title.unwrap_or(&default_title), inverted)?;
    std::fs::write(output, svg).with_context(|| {
        format!(
            "cannot write {}: choose a path you can write to",
            output.display()
        )
    })?;
    Ok(())
}

/// Prints the row deltas between two profiles, and optionally writes a
/// differential flamegraph.
pub fn diff(
    before: &Path,
    after: &Path,
    svg: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (a, b) = (Profile::load(before)?, Profile::load(after)?);
    // Rows by category and thread: a category on two threads is two rows.
    let mut keys: Vec<(Category, Thread, String)> = Vec::new();
    for r in a.table.rows.iter().chain(&b.table.rows) {
        if !keys
            .iter()
            .any(|(c, t, _)| (*c, *t) == (r.category, r.thread))
        {
            keys.push((r.category, r.thread, r.label.clone()));
        }
    }
    let share = |r: Option<&profiles::table::Row>| r.map_or(0.0, |r| r.share_pct);
    let label = |t: Thread, l: &str| -> String {
        format!("{}{l}", crate::frontends::printer::thread_tag(t))
            .chars()
            .take(55)
            .collect()
    };
    if let (Some(pa), Some(pb)) = (&a.table.per_frame, &b.table.per_frame) {
        // Both have a ledger: what each frame costs, most saved first.
        // Shares move together when throughput moves; microseconds of CPU
        // per frame say what a change saved.
        writeln!(
            out,
            "microseconds of CPU per frame ({} then {} frames):",
            pa.frames, pb.frames
        )?;
        writeln!(
            out,
            "{:<55} {:>10} {:>10} {:>10} {:>8} {:>8}",
            "row", "before", "after", "delta", "share", "share"
        )?;
        let us = |r: Option<&profiles::table::Row>| r.and_then(|r| r.us_per_frame).unwrap_or(0.0);
        let mut lines: Vec<_> = keys
            .iter()
            .map(|(c, t, l)| (a.table.row_of(*c, *t), b.table.row_of(*c, *t), label(*t, l)))
            .collect();
        lines.sort_by(|x, y| (us(x.1) - us(x.0)).total_cmp(&(us(y.1) - us(y.0))));
        for &(ra, rb, ref l) in &lines {
            writeln!(
                out,
                "{l:<55} {:>10.2} {:>10.2} {:>+10.2} {:>7.1}% {:>7.1}%",
                us(ra),
                us(rb),
                us(rb) - us(ra),
                share(ra),
                share(rb)
            )?;
        }
        let total = |p: &Profile, f: u64| p.table.denominator_seconds * 1e6 / f.max(1) as f64;
        writeln!(
            out,
            "{:<55} {:>10.2} {:>10.2} {:>+10.2}",
            "all rows",
            total(&a, pa.frames),
            total(&b, pb.frames),
            total(&b, pb.frames) - total(&a, pa.frames)
        )?;
    } else {
        writeln!(
            out,
            "{:<55} {:>8} {:>8} {:>8} {:>10} {:>10}",
            "row", "before", "after", "delta", "avg us", "avg us"
        )?;
        for (c, t, l) in &keys {
            let (ra, rb) = (a.table.row_of(*c, *t), b.table.row_of(*c, *t));
            let avg = |r: Option<&profiles::table::Row>| {
                r.filter(|r| r.count > 0)
                    .map_or("-".to_string(), |r| format!("{:.2}", r.avg_us))
            };
            writeln!(
                out,
                "{:<55} {:>7.1}% {:>7.1}% {:>+7.1}pp {:>10} {:>10}",
                label(*t, l),
                share(ra),
                share(rb),
                share(rb) - share(ra),
                avg(ra),
                avg(rb)
            )?;
        }
    }
    if let Some(path) = svg {
        if a.folded.is_empty() || b.folded.is_empty() {
            writeln!(
                out,
                "no differential flamegraph: a profile holds no sampled stacks"
            )?;
            return Ok(());
        }
        let title = format!("{} -> {}", before.display(), after.display());
        let bytes = profiles::flame::diff_svg(&a.folded_lines(), &b.folded_lines(), &title)?;
        std::fs::write(path, bytes).with_context(|| {
            format!(
                "cannot write {}: choose a path you can write to",
                path.display()
            )
        })?;
        writeln!(out, "differential flamegraph: {}", path.display())?;
    }
    Ok(())
}
