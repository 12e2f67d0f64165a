//! The results table's other axes, for the presets: receive (the highest
//! rate of 1472-byte datagrams nettest-rx takes for 2 s without losing or
//! reordering one, found by a short search and confirmed once) and round
//! trip (pingpong's median, 99th percentile and worst).

use super::nettest::COUNTS_ONLY;
use crate::cli::{Axis, ResultsArgs};
use crate::machine::optimizations::Preset;
use crate::run;
use crate::session::RunResult;
use serde::Serialize;
use std::io::Write;
use std::time::Duration;

/// Bytes of UDP payload per datagram of the receive stream.
const RX_SIZE: u64 = 1472;
/// Seconds each receive stream lasts.
const RX_SECONDS: u64 = 2;
/// The first rate tried, datagrams per second.
const RX_START: u64 = 1000;
/// The search's bounds.
const RX_MIN: u64 = 125;
const RX_MAX: u64 = 64_000;
/// Bisection steps between the highest clean rate and the lowest lossy one.
const RX_STEPS: usize = 3;
/// pingpong's rounds.
const RTT_ROUNDS: u64 = 1000;

/// One preset's receive and round trip.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AxesRow {
    /// The preset.
    pub config: String,
    /// The highest loss-free receive rate, Mb/s of UDP payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_loss_free_mbps: Option<f64>,
    /// The same in datagrams per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_frames_per_sec: Option<f64>,
    /// Receive buffers the guest's driver posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_buffers: Option<u64>,
    /// Round trip, median, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_p50_us: Option<f64>,
    /// Its 99th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_p99_us: Option<f64>,
    /// Its worst.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_max_us: Option<f64>,
}

/// A guest run under a preset, headless and counting only, whatever its
/// outcome (a receive stream that lost frames fails the guest).
fn guest(
    args: &ResultsArgs,
    preset: Preset,
    name: &str,
    guest_args: &[(&str, String)],
    cap: Duration,
) -> anyhow::Result<RunResult> {
    run::ensure_not_interrupted("the results table")?;
    super::nettest::guest(args, preset.opts(), name, guest_args, cap, COUNTS_ONLY)
}

/// Whether a stream at `rate` arrived whole and in order; the guest's
/// receive buffers.
fn clean(args: &ResultsArgs, preset: Preset, rate: u64) -> anyhow::Result<(bool, Option<u64>)> {
    let want = rate * RX_SECONDS;
    let r = guest(
        args,
        preset,
        "nettest-rx",
        &[
            ("datagrams", want.to_string()),
            ("size", RX_SIZE.to_string()),
            ("rate", rate.to_string()),
        ],
        Duration::from_secs(RX_SECONDS + 8),
    )?;
    let c = |k: &str| r.guest_counters.get(k).copied();
    let ok =
        c("rx_datagrams") == Some(want) && c("rx_missing") == Some(0) && c("rx_late") == Some(0);
    Ok((ok, c("rx_buffers")))
}

/// The highest loss-free rate: doubling from [`RX_START`] (halving if that
/// loses), then bisecting, then confirmed once (a step down if the
/// confirmation loses).
fn receive(
    args: &ResultsArgs,
    preset: Preset,
    status: &mut dyn Write,
) -> anyhow::Result<(Option<u64>, Option<u64>)> {
    let mut buffers = None;
    let mut probe = |rate: u64, status: &mut dyn Write| -> anyhow::Result<bool> {
        let (ok, b) = clean(args, preset, rate)?;
        buffers = buffers.or(b);
        let _ = writeln!(
            status,
            "receive {:<8} {rate:>6} datagrams/s: {}",
            preset.name(),
            if ok { "no loss" } else { "lost or reordered" }
        );
        Ok(ok)
    };
    let (mut good, mut bad) = (0u64, 0u64);
    let mut rate = RX_START;
    loop {
        if probe(rate, status)? {
            good = rate;
            if bad != 0 || rate >= RX_MAX {
                break;
            }
            rate *= 2;
        } else {
            bad = rate;
            if good != 0 || rate <= RX_MIN {
                break;
            }
            rate /= 2;
        }
    }
    if good == 0 {
        return Ok((None, buffers));
    }
    for _ in 0..RX_STEPS {
        if bad == 0 || bad - good <= good / 16 {
            break;
        }
        let mid = (good + bad) / 2;
        if probe(mid, status)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    // Once more at the rate found: a lucky stream does not make a rate.
    while !probe(good, status)? {
        good = good * 7 / 8;
        if good < RX_MIN {
            return Ok((None, buffers));
        }
    }
    Ok((Some(good), buffers))
}

/// pingpong's round trips, microseconds: (p50, p99, max).
fn round_trip(
    args: &ResultsArgs,
    preset: Preset,
) -> anyhow::Result<(Option<f64>, Option<f64>, Option<f64>)> {
    let r = guest(
        args,
        preset,
        "pingpong",
        &[("rounds", RTT_ROUNDS.to_string())],
        Duration::from_secs(60),
    )?;
    let us = |k: &str| {
        r.guest_counters
            .get(k)
            .filter(|_| r.host_tsc_mhz > 0.0)
            .map(|&c| c as f64 / r.host_tsc_mhz)
    };
    Ok((
        us("rtt_cycles_p50"),
        us("rtt_cycles_p99"),
        us("rtt_cycles_max"),
    ))
}

/// Measures the asked axes but transmit for each preset.
pub fn measure(args: &ResultsArgs, status: &mut dyn Write) -> anyhow::Result<Vec<AxesRow>> {
    let (rx, rtt) = (
        args.axes.contains(&Axis::Rx),
        args.axes.contains(&Axis::Rtt),
    );
    let mut rows = Vec::new();
    for &preset in &args.presets {
        let mut row = AxesRow {
            config: preset.name().to_string(),
            ..Default::default()
        };
        if rx {
            let (rate, buffers) = receive(args, preset, status)?;
            row.rx_frames_per_sec = rate.map(|r| r as f64);
            row.rx_loss_free_mbps = rate.map(|r| (r * RX_SIZE * 8) as f64 / 1e6);
            row.rx_buffers = buffers;
        }
        if rtt {
            (row.rtt_p50_us, row.rtt_p99_us, row.rtt_max_us) = round_trip(args, preset)?;
            let _ = writeln!(
                status,
                "round trip {:<8} p50 {} us",
                preset.name(),
                row.rtt_p50_us.map_or("-".into(), |v| format!("{v:.0}"))
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Adds each row's axes to the transmit row of the same configuration in
/// `results` (a JSON list), or a row of its own if transmit was not asked.
pub fn merge(results: &mut Vec<serde_json::Value>, rows: &[AxesRow]) -> serde_json::Result<()> {
    for row in rows {
        let fields = serde_json::to_value(row)?;
        let Some(fields) = fields.as_object() else {
            continue;
        };
        match results
            .iter_mut()
            .find(|r| r["config"] == row.config.as_str())
            .and_then(serde_json::Value::as_object_mut)
        {
            Some(r) => r.extend(fields.clone()),
            None => results.push(serde_json::Value::Object(fields.clone())),
        }
    }
    Ok(())
}

/// The axes as text.
pub fn print(rows: &[AxesRow], out: &mut dyn Write) -> std::io::Result<()> {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    writeln!(
        out,
        "\nreceive (the highest rate of {RX_SIZE}-byte datagrams taken for {RX_SECONDS} s with no loss or reordering) and round trip (pingpong, {RTT_ROUNDS} rounds):"
    )?;
    writeln!(
        out,
        "{:<12} {:>12} {:>12} {:>8} {:>10} {:>10} {:>10}",
        "config", "rx Mb/s", "rx frames/s", "rx bufs", "rtt p50 us", "rtt p99 us", "rtt max us"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<12} {:>12} {:>12} {:>8} {:>10} {:>10} {:>10}",
            r.config,
            opt(r.rx_loss_free_mbps),
            r.rx_frames_per_sec
                .map_or("-".into(), |v| format!("{v:.0}")),
            r.rx_buffers.map_or("-".into(), |v| v.to_string()),
            opt(r.rtt_p50_us),
            opt(r.rtt_p99_us),
            opt(r.rtt_max_us)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_join_the_transmit_row_of_their_preset_or_stand_alone() {
        let mut results = vec![serde_json::json!({"config": "baseline", "throughput_mbps": 20.0})];
        let rows = [
            AxesRow {
                config: "baseline".into(),
                rtt_p50_us: Some(600.0),
                ..Default::default()
            },
            AxesRow {
                config: "modern".into(),
                rx_loss_free_mbps: Some(47.1),
                ..Default::default()
            },
        ];
        merge(&mut results, &rows).unwrap();
        assert_eq!(results[0]["throughput_mbps"], 20.0);
        assert_eq!(results[0]["rtt_p50_us"], 600.0);
        assert!(results[0].get("rx_loss_free_mbps").is_none());
        assert_eq!(results[1]["config"], "modern");
        assert_eq!(results[1]["rx_loss_free_mbps"], 47.1);
    }
}
