//! `worldswitch bench`: the paper's results table for this machine. nettest
//! runs under each preset and each single optimization, interleaved (the
//! order rotates every round) and repeated, beside a native row: a host
//! thread writing the same datagrams to the same backend. Medians, with the
//! spread of the throughput.

use super::nettest::{nettest, COUNTS_ONLY};
use super::predict::Forecast;
use crate::cli::{Axis, ResultsArgs};
use crate::frontends::printer::print_json;
use crate::machine::netrun::NetRun;
use crate::machine::optimizations::{Opt, Opts, Preset};
use crate::machine::vmnet::frames;
use crate::run;
use crate::session::RunResult;
use profiles::model::{explain, Counts};
use profiles::stats::Summary;
use profiles::table::PerFrame;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// UDP payload per datagram: what nettest's guest kernel puts in a frame.
const MTU_PAYLOAD: u64 = 1472;

/// One configuration's figures (medians over the rounds).
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    /// The preset, the toggles, or `native`.
    pub config: String,
    /// nettest's write size.
    pub write_size: u64,
    /// Goodput, Mb/s (median).
    pub throughput_mbps: f64,
    /// Its spread over the rounds.
    pub throughput_spread: Summary,
    /// Datagrams per second.
    pub frames_per_sec: f64,
    /// Exits to user space per frame (kvm_userspace_exit).
    pub user_exits_per_frame: Option<f64>,
    /// Port accesses KVM completed itself per frame (kvm_pio less the
    /// accesses that exited to user space).
    pub kernel_exits_per_frame: Option<f64>,
    /// NIC interrupts per frame.
    pub irqs_per_frame: Option<f64>,
    /// Guest instructions KVM emulated per frame (estimated from the
    /// emulate_insn windows).
    pub emulated_insns_per_frame: Option<f64>,
    /// The vCPU thread's CPU, percent of one core.
    pub vcpu_cpu_pct: Option<f64>,
    /// The I/O thread's CPU, percent of one core.
    pub io_cpu_pct: Option<f64>,
    /// The flusher thread's CPU, percent of one core (when it polls).
    pub flusher_cpu_pct: Option<f64>,
    /// The pv-nic drain thread's CPU, percent of one core.
    pub pv_cpu_pct: Option<f64>,
    /// Median throughput over the baseline preset's.
    pub ratio_to_baseline: Option<f64>,
    /// Microseconds of CPU per frame of the largest rows (medians), by
    /// `thread/category` (the per-frame ledger).
    pub us_per_frame: BTreeMap<String, f64>,
    /// What `bench --predict` predicted (presets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_throughput_mbps: Option<f64>,
    /// Predicted less measured, percent of measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_error_pct: Option<f64>,
    /// The predicted ratio to baseline less the measured one, percent of
    /// the measured: the error without the host's drift between the
    /// forecast and the table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_error_pct: Option<f64>,
    /// Which term of the prediction was off most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_miss: Option<String>,
    /// The run of median throughput, for comparing with a prediction.
    #[serde(skip)]
    median_run: Option<Run>,
}

/// Rows of the ledger a result keeps.
const LEDGER_ROWS: usize = 5;

/// What runs: a name and the toggles, or the native writer.
#[derive(Debug, Clone)]
enum Config {
    Guest(String, Opts),
    Native,
    /// QEMU running the same nettest: measured by `attach` (true) or by its
    /// peer's socket alone.
    Qemu(bool),
}

fn configs(presets: &[Preset], with_qemu: bool) -> Vec<Config> {
    let mut list: Vec<(String, Opts)> = Vec::new();
    let mut add = |name: String, o: Opts| {
        if !list.iter().any(|(_, x)| *x == o) {
            list.push((name, o));
        }
    };
    for &p in presets {
        add(p.name().to_string(), p.opts());
    }
    // Each optimization alone, on the naive machine (with what it needs).
    for o in Opt::ALL {
        let mut opts = Opts::default();
        opts.set(o, true);
        let name = match opts.as_preset() {
            Some(p) => p.name().to_string(),
            None => format!("only {}", opts.describe()),
        };
        add(name, opts);
    }
    // kernel-irqchip is on in every preset: its row is baseline without it,
    // the paper's hosted VMM with its virtual PIC in user space.
    let mut user_pic = Preset::Baseline.opts();
    user_pic.set(Opt::KernelIrqchip, false);
    add(user_pic.describe(), user_pic);
    let mut c: Vec<Config> = list.into_iter().map(|(n, o)| Config::Guest(n, o)).collect();
    c.push(Config::Native);
    if with_qemu {
        c.extend([Config::Qemu(true), Config::Qemu(false)]);
    }
    c
}

/// Per-run figures.
#[derive(Debug, Default, Clone)]
struct Run {
    mbps: f64,
    fps: f64,
    user: Option<f64>,
    kernel: Option<f64>,
    irqs: Option<f64>,
    insns: Option<f64>,
    vcpu: Option<f64>,
    io: Option<f64>,
    flusher: Option<f64>,
    pv: Option<f64>,
    /// Microseconds of CPU per frame, by `thread/category`.
    ledger: BTreeMap<String, f64>,
    /// The cost model's counts per frame.
    counts: Option<Counts>,
    /// The vCPU thread's CPU per frame, microseconds.
    vcpu_us_per_frame: Option<f64>,
}

fn from_result(r: &RunResult) -> Run {
    let n = &r.net;
    // The run's per-frame ledger has the counts.
    let (kernel, irqs, insns) = ledger_counts(r.profile.per_frame.as_ref());
    Run {
        mbps: n.throughput_mbps,
        fps: n.frames_per_sec,
        user: n.exits_per_frame,
        kernel,
        irqs,
        insns,
        vcpu: Some(r.vcpu_cpu_seconds / r.seconds * 100.0),
        io: r.io_cpu_seconds.map(|s| s / r.seconds * 100.0),
        flusher: thread_pct(r, "flusher"),
        pv: thread_pct(r, "pvnet"),
        ledger: ledger(&r.profile),
        counts: crate::session::counts(r),
        vcpu_us_per_frame: (n.frames_delivered > 0)
            .then(|| r.vcpu_cpu_seconds * 1e6 / n.frames_delivered as f64),
    }
}

/// The per-frame ledger's port accesses completed in KVM, interrupts and
/// emulated instructions.
fn ledger_counts(p: Option<&PerFrame>) -> (Option<f64>, Option<f64>, Option<f64>) {
    p.map_or((None, None, None), |p| {
        (
            p.port_accesses_in_kernel,
            p.interrupts,
            p.emulated_instructions,
        )
    })
}

/// Microseconds of CPU per frame by `thread/category`.
fn ledger(t: &profiles::table::Table) -> BTreeMap<String, f64> {
    t.rows
        .iter()
        .filter_map(|row| {
            let key = format!("{}/{}", row.thread.sampled_name(), row.category);
            Some((key, row.us_per_frame?))
        })
        .collect()
}

/// Thread `name`'s CPU over the run, percent of one core.
fn thread_pct(r: &RunResult, name: &str) -> Option<f64> {
    r.thread_cpu
        .iter()
        .find(|t| t.name == name)
        .map(|t| t.cpu_pct)
}

/// A host thread writing nettest's datagrams (`write_size` bytes split
/// like the guest kernel splits them) to the backend for `duration`.
fn native(args: &ResultsArgs, write_size: u64) -> anyhow::Result<Run> {
    let (mut net, nic) = NetRun::new(args.net, args.link_rate)?;
    let backend = nic.backend;
    let mut backend = backend.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let cpu0 = crate::profiler::thread_cpu_seconds();
    let mut seq = 0u64;
    'outer: while start.elapsed() < args.duration {
        let mut left = write_size;
        while left > 0 {
            let payload = left.min(MTU_PAYLOAD);
            left -= payload;
            let frame = frames::build(seq, payload as usize, [0xff; 6]);
            if backend.send(&frame).is_err() {
                break 'outer;
            }
            seq += 1;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = crate::profiler::thread_cpu_seconds() - cpu0;
    // Let the peer take what is in flight before counting.
    std::thread::sleep(Duration::from_millis(200));
    let (frames, bytes) = net.delivered();
    net.quiesce();
    Ok(Run {
        mbps: bytes as f64 * 8.0 / seconds / 1e6,
        fps: frames as f64 / seconds,
        vcpu: Some(cpu / seconds * 100.0),
        ..Run::default()
    })
}

/// QEMU running nettest, measured by `attach` at its default sampling (or
/// not attached): the same columns, per frame its TAP carried.
fn peer(args: &ResultsArgs, write_size: u64, attached: bool) -> anyhow::Result<Run> {
    let q = super::qemu::run(write_size, args.duration, attached)?;
    let Some(a) = q.attach else {
        return Ok(Run {
            mbps: q.mbps,
            fps: q.fps,
            ..Run::default()
        });
    };
    let vcpu_cpu: f64 = a.vcpu_threads.iter().map(|t| t.cpu_seconds).sum();
    let frames = a.per_frame.as_ref().map_or(0, |p| p.frames);
    let (kernel, irqs, insns) = ledger_counts(a.per_frame.as_ref());
    Ok(Run {
        mbps: q.mbps,
        fps: q.fps,
        user: a.exits_per_frame,
        kernel,
        irqs,
        insns,
        vcpu: Some(vcpu_cpu / a.seconds.max(1e-9) * 100.0),
        io: a
            .threads
            .iter()
            .find(|t| t.tid == a.target.pid)
            .map(|t| t.cpu_pct),
        ledger: ledger(&a.profile),
        vcpu_us_per_frame: (frames > 0).then(|| vcpu_cpu * 1e6 / frames as f64),
        ..Run::default()
    })
}

fn guest(args: &ResultsArgs, opts: Opts, write_size: u64) -> anyhow::Result<Run> {
    let r = nettest(args, opts, write_size, args.duration, COUNTS_ONLY)?;
    Ok(from_result(&r))
}

fn median(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = v.flatten().collect();
    Summary::of(&v).map(|s| s.median)
}

/// Runs the table.
pub fn measure(args: &ResultsArgs, status: &mut dyn Write) -> anyhow::Result<Vec<ResultRow>> {
    let configs = configs(&args.presets, args.with_qemu);
    let sizes = if args.write_sizes.is_empty() {
        vec![4096]
    } else {
        args.write_sizes.clone()
    };
    let mut rows = Vec::new();
    for &size in &sizes {
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); configs.len()];
        for round in 0..args.repeat as usize {
            for k in 0..configs.len() {
                // Rotate the order every round so drift spreads evenly.
                let i = (k + round) % configs.len();
                run::ensure_not_interrupted("the results table")?;
                let run = match &configs[i] {
                    Config::Guest(_, o) => guest(args, *o, size)?,
                    Config::Native => native(args, size)?,
                    Config::Qemu(attached) => peer(args, size, *attached)?,
                };
                let _ = writeln!(
                    status,
                    "round {} write {size}: {:<36} {:8.2} Mb/s",
                    round + 1,
                    name(&configs[i]),
                    run.mbps
                );
                runs[i].push(run);
            }
        }
        let mut table: Vec<ResultRow> = configs
            .iter()
            .zip(&runs)
            .filter_map(|(c, rs)| {
                let tput: Vec<f64> = rs.iter().map(|r| r.mbps).collect();
                let spread = Summary::of(&tput)?;
                Some(ResultRow {
                    config: name(c),
                    write_size: size,
                    throughput_mbps: spread.median,
                    throughput_spread: spread,
                    frames_per_sec: median(rs.iter().map(|r| Some(r.fps)))?,
                    user_exits_per_frame: median(rs.iter().map(|r| r.user)),
                    kernel_exits_per_frame: median(rs.iter().map(|r| r.kernel)),
                    irqs_per_frame: median(rs.iter().map(|r| r.irqs)),
                    emulated_insns_per_frame: median(rs.iter().map(|r| r.insns)),
                    vcpu_cpu_pct: median(rs.iter().map(|r| r.vcpu)),
                    io_cpu_pct: median(rs.iter().map(|r| r.io)),
                    flusher_cpu_pct: median(rs.iter().map(|r| r.flusher)),
                    pv_cpu_pct: median(rs.iter().map(|r| r.pv)),
                    ratio_to_baseline: None,
                    us_per_frame: largest_rows(rs),
                    predicted_throughput_mbps: None,
                    prediction_error_pct: None,
                    ratio_error_pct: None,
                    prediction_miss: None,
                    median_run: rs
                        .iter()
                        .min_by(|a, b| {
                            (a.mbps - spread.median)
                                .abs()
                                .total_cmp(&(b.mbps - spread.median).abs())
                        })
                        .cloned(),
                })
            })
            .collect();
        let base = table
            .iter()
            .find(|r| r.config == "baseline")
            .map(|r| r.throughput_mbps);
        for r in &mut table {
            r.ratio_to_baseline = base.map(|b| r.throughput_mbps / b.max(1e-9));
        }
        rows.extend(table);
    }
    Ok(rows)
}

/// The ledger rows of the largest median microseconds per frame (at least
/// 0.05, the precision printed).
fn largest_rows(rs: &[Run]) -> BTreeMap<String, f64> {
    let keys: std::collections::BTreeSet<&String> =
        rs.iter().flat_map(|r| r.ledger.keys()).collect();
    let mut rows: Vec<(String, f64)> = keys
        .into_iter()
        .filter_map(|k| {
            Some((
                k.clone(),
                median(rs.iter().map(|r| r.ledger.get(k).copied()))?,
            ))
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    // Rows that round to nothing say nothing.
    rows.into_iter()
        .filter(|(_, us)| *us >= 0.05)
        .take(LEDGER_ROWS)
        .collect()
}

fn name(c: &Config) -> String {
    match c {
        Config::Guest(n, _) => n.clone(),
        Config::Native => "native (host thread)".into(),
        Config::Qemu(true) => "qemu pcnet (attach)".into(),
        Config::Qemu(false) => "qemu pcnet (not attached)".into(),
    }
}

/// Puts each preset's prediction beside its measured row, with the error
/// and the term that was off most.
fn compare(f: &Forecast, rows: &mut [ResultRow]) {
    // The forecast's baseline is the model's; the table's, minutes later,
    // is the same configuration on a host that may have drifted.
    let measured_base = rows
        .iter()
        .find(|r| r.config == "baseline" && r.write_size == f.write_size)
        .map(|r| r.throughput_mbps);
    for row in rows.iter_mut().filter(|r| r.write_size == f.write_size) {
        let Some(pred) = f.prediction(&row.config) else {
            continue;
        };
        row.predicted_throughput_mbps = Some(pred.mbps);
        row.prediction_error_pct =
            Some((pred.mbps - row.throughput_mbps) / row.throughput_mbps.max(1e-9) * 100.0);
        row.ratio_error_pct = measured_base.map(|b| {
            let predicted = pred.mbps / f.model.mbps.max(1e-9);
            let measured = row.throughput_mbps / b.max(1e-9);
            (predicted - measured) / measured.max(1e-9) * 100.0
        });
        if let Some(Run {
            counts: Some(counts),
            vcpu_us_per_frame: Some(us),
            ..
        }) = &row.median_run
        {
            let e = explain(&f.model, pred, counts, *us, row.throughput_mbps);
            row.prediction_miss = Some(e.summary());
        }
    }
}

/// `worldswitch bench`.
pub fn command(args: &ResultsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let forecast = if args.predict || args.predict_only {
        let f = super::predict::forecast(args, &mut std::io::stderr())?;
        if !args.json {
            super::predict::print(&f, out)?;
            out.flush()?;
        }
        Some(f)
    } else {
        None
    };
    if args.predict_only {
        if args.json {
            print_json(&forecast, out)?;
        }
        return Ok(());
    }
    let (steal0, t0) = (crate::profiler::steal_seconds(), Instant::now());
    let mut rows = if args.axes.contains(&Axis::Tx) {
        measure(args, &mut std::io::stderr())?
    } else {
        Vec::new()
    };
    let others = if args.axes.iter().any(|a| *a != Axis::Tx) {
        super::axes::measure(args, &mut std::io::stderr())?
    } else {
        Vec::new()
    };
    let steal = crate::profiler::steal_pct(steal0, t0.elapsed().as_secs_f64());
    if let Some(f) = &forecast {
        compare(f, &mut rows);
    }
    if args.json {
        let mut results: Vec<serde_json::Value> = rows
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        super::axes::merge(&mut results, &others)?;
        let mut doc = serde_json::json!({ "results": results, "host_steal_pct": steal });
        if let Some(f) = &forecast {
            doc["calibration"] = serde_json::to_value(&f.calibration)?;
            doc["model"] = serde_json::to_value(&f.model)?;
            doc["probes"] = serde_json::to_value(&f.probes)?;
        }
        print_json(&doc, out)?;
        return Ok(());
    }
    if rows.is_empty() {
        super::axes::print(&others, out)?;
        return Ok(());
    }
    let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
    writeln!(
        out,
        "nettest, {} interleaved rounds of {:?}{}; medians (Mb/s with min..max)",
        args.repeat,
        args.duration,
        args.link_rate
            .map_or(String::new(), |r| format!(", link {} Mb/s", r / 1_000_000))
    )?;
    writeln!(
        out,
        "{:<40} {:>5} {:>18} {:>8} {:>7} {:>7} {:>6} {:>8} {:>6} {:>5} {:>6} {:>5} {:>6}",
        "config",
        "write",
        "Mb/s",
        "frames/s",
        "user/f",
        "KVM/f",
        "irq/f",
        "emul/f",
        "vCPU%",
        "I/O%",
        "flush%",
        "pv%",
        "ratio"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<40} {:>5} {:>7.2} ({:>4.1}..{:<4.1}) {:>8.0} {:>7} {:>7} {:>6} {:>8} {:>6} {:>5} {:>6} {:>5} {:>6}",
            r.config,
            r.write_size,
            r.throughput_mbps,
            r.throughput_spread.min,
            r.throughput_spread.max,
            r.frames_per_sec,
            opt(r.user_exits_per_frame, 2),
            opt(r.kernel_exits_per_frame, 2),
            opt(r.irqs_per_frame, 2),
            opt(r.emulated_insns_per_frame, 0),
            opt(r.vcpu_cpu_pct, 0),
            opt(r.io_cpu_pct, 1),
            opt(r.flusher_cpu_pct, 1),
            opt(r.pv_cpu_pct, 1),
            opt(r.ratio_to_baseline, 2),
        )?;
    }
    writeln!(
        out,
        "\nmicroseconds of CPU per frame, the largest rows of each configuration's ledger (medians):"
    )?;
    for r in rows.iter().filter(|r| !r.us_per_frame.is_empty()) {
        let mut largest: Vec<(&String, &f64)> = r.us_per_frame.iter().collect();
        largest.sort_by(|a, b| b.1.total_cmp(a.1));
        let cells: Vec<String> = largest
            .iter()
            .map(|(k, us)| format!("{} {us:.1}", k.trim_start_matches("vcpu/")))
            .collect();
        writeln!(out, "{:<40} {}", r.config, cells.join(" · "))?;
    }
    if !others.is_empty() {
        super::axes::print(&others, out)?;
    }
    if let Some(steal) = steal {
        writeln!(
            out,
            "\nthe hypervisor under this machine took {steal:.1}% of its CPU while the table ran (steal){}",
            if steal > super::predict::STEAL_WARN_PCT {
                ": the figures are less sure"
            } else {
                ""
            }
        )?;
    }
    if forecast.is_some() {
        writeln!(out, "\npredicted (before any preset ran) against measured:")?;
        for r in rows
            .iter()
            .filter(|r| r.predicted_throughput_mbps.is_some())
        {
            writeln!(
                out,
                "{:<12} predicted {:>7.2} Mb/s, measured {:>7.2} ({:+.1}%; as a ratio to baseline {:+.1}%); most off: {}",
                r.config,
                r.predicted_throughput_mbps.unwrap_or_default(),
                r.throughput_mbps,
                r.prediction_error_pct.unwrap_or_default(),
                r.ratio_error_pct.unwrap_or_default(),
                r.prediction_miss.as_deref().unwrap_or("-")
            )?;
        }
    }
    writeln!(
        out,
        "user/f: exits to user space per frame; KVM/f: port accesses KVM completed itself; emul/f: guest instructions KVM emulated (estimated); flush%: the flusher thread polling the coalesced ring; pv%: the pv-nic drain thread.\n\
         The paper (733 MHz PIII, VMware Workstation 2.0, 100 Mb/s link): 64 Mb/s CPU-bound at baseline; with its three optimizations the link's speed at lower CPU."
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_keeps_the_largest_median_rows() {
        let run = |pairs: &[(&str, f64)]| Run {
            ledger: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Run::default()
        };
        let rows = largest_rows(&[
            run(&[
                ("vcpu/kvm_run", 300.0),
                ("vcpu/lance_tx", 1.0),
                ("io/host_events", 0.01),
            ]),
            run(&[
                ("vcpu/kvm_run", 340.0),
                ("vcpu/lance_tx", 3.0),
                ("vcpu/user_irq", 0.5),
            ]),
        ]);
        assert_eq!(rows.len(), 3, "a row that rounds to nothing goes: {rows:?}");
        assert_eq!(rows["vcpu/kvm_run"], 320.0);
        assert_eq!(rows["vcpu/lance_tx"], 2.0);
        assert_eq!(
            rows["vcpu/user_irq"], 0.5,
            "a row one round lacks keeps the other's"
        );
    }

    #[test]
    fn configs_add_singles_without_duplicates_and_a_native_row() {
        let c = configs(&[Preset::Naive, Preset::Baseline, Preset::Paper], false);
        let names: Vec<String> = c.iter().map(name).collect();
        assert_eq!(
            names,
            [
                "naive",
                "baseline",
                "paper",
                "only data-port-in-kernel",
                "only data-port-in-kernel+send-combining",
                "only data-port-in-kernel+send-combining+adaptive-combining",
                "only irq-notify",
                "only pv-nic",
                "baseline, kernel-irqchip off",
                "native (host thread)"
            ]
        );
    }
}
