//! `worldswitch bench --soak D`: nettest for a long time with the
//! optimizations flipped at random every second and a snapshot built every
//! second as the workbench would, reporting frames accounted, sequence
//! errors, RSS and open fds over time. It fails on any loss without a
//! reason, on RSS growth over 1 MiB after a one-minute warm-up, or on fd
//! growth.

use crate::cli::{ResultsArgs, RunArgs};
use crate::frontends::printer::print_json;
use crate::machine::optimizations::Opt;
use crate::rng::Rng;
use crate::session::Workbench;
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, Instant};

/// RSS and fds are compared with their values at this point.
const WARM_UP: Duration = Duration::from_secs(60);
/// RSS growth allowed after the warm-up, bytes.
const RSS_SLACK: u64 = 1 << 20;

/// One reading.
#[derive(Debug, Clone, Serialize)]
pub struct Reading {
    /// Seconds since the start.
    pub t: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Datagrams the peer has received.
    pub delivered: u64,
    /// The optimizations in effect.
    pub optimizations: String,
}

/// The verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    /// Seconds run.
    pub seconds: f64,
    /// Toggle changes requested.
    pub flips: u64,
    /// Readings every 10 s.
    pub readings: Vec<Reading>,
    /// Frames the NIC took from the guest.
    pub frames_received_by_host: u64,
    /// Frames the peer received.
    pub frames_delivered: u64,
    /// Frames dropped, by reason.
    pub frames_dropped: std::collections::BTreeMap<String, u64>,
    /// Neither delivered nor dropped (0 unless something was lost).
    pub frames_in_flight: i64,
    /// Sequence errors at the peer.
    pub sequence_errors: u64,
    /// RSS growth after the warm-up, bytes.
    pub rss_growth_bytes: i64,
    /// fd growth after the warm-up.
    pub fd_growth: i64,
    /// Why it failed, if it did.
    pub failures: Vec<String>,
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

fn fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Runs the soak for `duration`.
pub fn measure(
    args: &ResultsArgs,
    duration: Duration,
    status: &mut dyn Write,
) -> anyhow::Result<Soak> {
    let run = RunArgs {
        net: args.net,
        link_rate: args.link_rate,
        ..RunArgs::for_guest("nettest")
    };
    let seed = Rng::clock_seed();
    let _ = writeln!(
        status,
        "soak: {duration:?}, toggles flipped at random every second (seed {seed})"
    );
    let mut rng = Rng::new(seed);
    // Not kernel-irqchip: switching it restarts the guest, and the soak
    // follows one guest's frames.
    let switchable: Vec<Opt> = Opt::ALL
        .into_iter()
        .filter(|&o| o != Opt::KernelIrqchip)
        .collect();
    let mut s = Workbench::start(&run)?;
    let start = Instant::now();
    let mut next_flip = start + Duration::from_secs(1);
    let mut next_reading = start;
    let mut readings: Vec<Reading> = Vec::new();
    let mut warm: Option<(u64, u64)> = None;
    let mut flips = 0u64;
    let mut sink = std::io::sink();
    while start.elapsed() < duration {
        if s.pump(Duration::from_millis(50), &mut sink)? {
            anyhow::bail!("the guest ended during the soak");
        }
        let now = Instant::now();
        if now >= next_flip {
            next_flip += Duration::from_secs(1);
            let o = switchable[(rng.next_u64() % switchable.len() as u64) as usize];
            s.toggle(o);
            flips += 1;
            // What the workbench's engine does every refresh.
            drop(s.snapshot());
        }
        if now >= next_reading {
            next_reading += Duration::from_secs(10);
            let r = Reading {
                t: start.elapsed().as_secs_f64(),
                rss_bytes: rss_bytes(),
                fds: fds(),
                delivered: s.delivered().0,
                optimizations: s.optimizations().describe(),
            };
            let _ = writeln!(
                status,
                "{:7.0} s  rss {:7.2} MiB  fds {:3}  delivered {:9}  {}",
                r.t,
                r.rss_bytes as f64 / (1 << 20) as f64,
                r.fds,
                r.delivered,
                r.optimizations
            );
            if warm.is_none() && start.elapsed() >= WARM_UP {
                warm = Some((r.rss_bytes, r.fds));
            }
            readings.push(r);
        }
    }
    // Judged while everything still runs: tearing down frees memory and
    // closes fds, which would hide growth.
    let (rss_end, fds_end) = (rss_bytes(), fds());
    let result = s.finish(&mut sink)?;
    let n = &result.net;
    let (rss_growth, fd_growth) = match warm {
        Some((rss, f)) => (rss_end as i64 - rss as i64, fds_end as i64 - f as i64),
        None => (0, 0),
    };
    let mut failures = Vec::new();
    let dropped: u64 = n.frames_dropped.values().sum();
    if n.frames_received_by_host != n.frames_delivered + dropped || n.frames_in_flight != 0 {
        failures.push(format!(
            "frames lost without a reason: {} taken from the guest, {} delivered, {dropped} dropped, {} in flight",
            n.frames_received_by_host, n.frames_delivered, n.frames_in_flight
        ));
    }
    if n.sequence_errors.total() > 0 {
        failures.push(format!(
            "sequence errors at the peer: {:?}",
            n.sequence_errors
        ));
    }
    if warm.is_some() && rss_growth > RSS_SLACK as i64 {
        failures.push(format!("RSS grew by {rss_growth} bytes after the warm-up"));
    }
    if fd_growth > 0 {
        failures.push(format!("{fd_growth} more open fds than after the warm-up"));
    }
    if warm.is_none() {
        let _ = writeln!(
            status,
            "soak: shorter than the one-minute warm-up, so RSS and fds were not judged"
        );
    }
    Ok(Soak {
        seconds: start.elapsed().as_secs_f64(),
        flips,
        readings,
        frames_received_by_host: n.frames_received_by_host,
        frames_delivered: n.frames_delivered,
        frames_dropped: n.frames_dropped.clone(),
        frames_in_flight: n.frames_in_flight,
        sequence_errors: n.sequence_errors.total(),
        rss_growth_bytes: rss_growth,
        fd_growth,
        failures,
    })
}

/// `worldswitch bench --soak D`; an error when the soak failed.
pub fn command(args: &ResultsArgs, duration: Duration, out: &mut dyn Write) -> anyhow::Result<()> {
    let r = measure(args, duration, &mut std::io::stderr())?;
    if args.json {
        print_json(&r, out)?;
    } else {
        writeln!(
            out,
            "soak {:.0} s, {} flips: {} frames from the guest, {} delivered, dropped {:?}, {} in flight, {} sequence errors; after the warm-up RSS {:+} bytes, fds {:+}",
            r.seconds,
            r.flips,
            r.frames_received_by_host,
            r.frames_delivered,
            r.frames_dropped,
            r.frames_in_flight,
            r.sequence_errors,
            r.rss_growth_bytes,
            r.fd_growth
        )?;
    }
    if !r.failures.is_empty() {
        anyhow::bail!("the soak failed: {}", r.failures.join("; "));
    }
    Ok(())
}
