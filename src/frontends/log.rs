//! A headless run's per-second lines for scripts: `run --log` prints one
//! line a second in vmstat's manner (a header, then columns), `run
//! --json-lines` one JSON object a second whose keys carry their units.
//! Both read the workbench's picture, so they show what its screens show.

use profiles::snapshot::Point;
use profiles::table::Table;
use serde::Serialize;
use std::io::{self, Write};

/// The rows a line names, largest share first.
const TOP_ROWS: usize = 3;

/// How the lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Columns under a header.
    Text,
    /// One JSON object per line.
    JsonLines,
}

/// One second as a JSON line.
#[derive(Debug, Serialize)]
struct Second<'a> {
    t_s: f64,
    throughput_mbps: f64,
    frames_per_sec: f64,
    pio_exits_per_sec: f64,
    mmio_exits_per_sec: f64,
    kick_exits_per_sec: f64,
    other_exits_per_sec: f64,
    in_kernel_writes_per_sec: f64,
    top_rows: &'a [TopRow<'a>],
}

/// A row of the overhead table in a line.
#[derive(Debug, Serialize)]
struct TopRow<'a> {
    row: &'a str,
    share_pct: f64,
}

/// The table's largest rows by share (key, percent to a tenth).
pub fn top_rows(table: &Table) -> Vec<(&'static str, f64)> {
    let mut rows: Vec<_> = table.rows.iter().filter(|r| r.share_pct > 0.0).collect();
    rows.sort_by(|a, b| b.share_pct.total_cmp(&a.share_pct));
    rows.iter()
        .take(TOP_ROWS)
        .map(|r| (r.category.key(), (r.share_pct * 10.0).round() / 10.0))
        .collect()
}

/// Writes each new second of a run once: the workbench's points (every
/// half second) averaged over the second they fall in.
pub struct SecondLog {
    style: Style,
    /// The time of the last point taken.
    last_t: f64,
    /// Points of the second not written yet.
    pending: Vec<Point>,
    header: bool,
}

impl SecondLog {
    /// A log in `style`.
    pub fn new(style: Style) -> Self {
        Self {
            style,
            last_t: f64::NEG_INFINITY,
            pending: Vec::new(),
            header: false,
        }
    }

    /// Writes the points of `series` not written yet, each with `top`
    /// (see [`top_rows`]).
    pub fn write(
        &mut self,
        series: &[Point],
        top: &[(&'static str, f64)],
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let since = self.last_t;
        for p in series.iter().filter(|p| p.t > since) {
            self.last_t = p.t;
            let second = self.pending.first().map(|f| f.t.floor());
            if second.is_some_and(|s| p.t.floor() > s) {
                self.emit(top, out)?;
            }
            self.pending.push(*p);
        }
        out.flush()
    }

    /// Writes the last, partial second, if points of it wait.
    pub fn finish(&mut self, top: &[(&'static str, f64)], out: &mut dyn Write) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.emit(top, out)?;
        }
        out.flush()
    }

    /// Writes the second the pending points make, and forgets them.
    fn emit(&mut self, top: &[(&'static str, f64)], out: &mut dyn Write) -> io::Result<()> {
        let m = Point::mean(&std::mem::take(&mut self.pending));
        let top: Vec<TopRow> = top
            .iter()
            .map(|&(row, share_pct)| TopRow { row, share_pct })
            .collect();
        match self.style {
            Style::Text => self.text(&m, &top, out),
            Style::JsonLines => json_line(&m, &top, out),
        }
    }

    fn text(&mut self, p: &Point, top: &[TopRow], out: &mut dyn Write) -> io::Result<()> {
        if !std::mem::replace(&mut self.header, true) {
            writeln!(
                out,
                "{:>7} {:>8} {:>9} {:>8} {:>7} {:>7} {:>7} {:>9}  top rows (share of the window)",
                "t s", "Mb/s", "frames/s", "pio/s", "mmio/s", "kick/s", "other/s", "in-KVM/s"
            )?;
        }
        let rows: Vec<String> = top
            .iter()
            .map(|r| format!("{} {:.0}%", r.row, r.share_pct))
            .collect();
        writeln!(
            out,
            "{:>7.1} {:>8.2} {:>9.0} {:>8.0} {:>7.0} {:>7.0} {:>7.0} {:>9.0}  {}",
            p.t,
            p.mbps,
            p.frames_per_sec,
            p.pio_exits_per_sec,
            p.mmio_exits_per_sec,
            p.kick_exits_per_sec,
            p.other_exits_per_sec,
            p.in_kernel_writes_per_sec,
            rows.join(", ")
        )
    }
}

fn json_line(p: &Point, top: &[TopRow], out: &mut dyn Write) -> io::Result<()> {
    let line = Second {
        t_s: p.t,
        throughput_mbps: p.mbps,
        frames_per_sec: p.frames_per_sec,
        pio_exits_per_sec: p.pio_exits_per_sec,
        mmio_exits_per_sec: p.mmio_exits_per_sec,
        kick_exits_per_sec: p.kick_exits_per_sec,
        other_exits_per_sec: p.other_exits_per_sec,
        in_kernel_writes_per_sec: p.in_kernel_writes_per_sec,
        top_rows: top,
    };
    serde_json::to_writer(&mut *out, &line)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[f64]) -> Vec<Point> {
        points
            .iter()
            .map(|&t| Point {
                t,
                mbps: 12.5,
                frames_per_sec: 1000.0,
                pio_exits_per_sec: 6000.0,
                ..Default::default()
            })
            .collect()
    }

    const TOP: [(&str, f64); 2] = [("guest_native", 41.5), ("world_switch", 12.0)];

    #[test]
    fn each_second_is_written_once_with_a_header_first() {
        let mut log = SecondLog::new(Style::Text);
        let mut out = Vec::new();
        // Points every half second: a line once a second is complete.
        log.write(&series(&[0.5, 1.0, 1.5]), &TOP, &mut out)
            .unwrap();
        log.write(&series(&[0.5, 1.0, 1.5, 2.0, 2.5, 3.0]), &TOP, &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "header and 0.5, 1.5, 2.5: {text}");
        assert!(lines[0].contains("Mb/s") && lines[0].contains("pio/s"));
        assert!(lines[2].trim_start().starts_with("1.5") && lines[2].contains("12.50"));
        assert!(
            lines[3].ends_with("guest_native 42%, world_switch 12%"),
            "{text}"
        );
    }

    #[test]
    fn json_lines_carry_units_in_their_keys() {
        let mut log = SecondLog::new(Style::JsonLines);
        let mut out = Vec::new();
        log.write(&series(&[1.0, 2.0, 3.0]), &TOP, &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["t_s"], 2.0);
        assert_eq!(lines[1]["throughput_mbps"], 12.5);
        assert_eq!(lines[1]["pio_exits_per_sec"], 6000.0);
        assert_eq!(lines[1]["top_rows"][0]["row"], "guest_native");
        assert_eq!(lines[1]["top_rows"][0]["share_pct"], 41.5);
    }
}
