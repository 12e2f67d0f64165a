//! Overview: what runs where, throughput over the last minute with marks,
//! exits by kind, the threads' CPU, the frame accounting and the guest's
//! own counters.

use crate::style;
use profiles::snapshot::Snapshot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

/// The chart's span, seconds.
const CHART_SECONDS: f64 = 60.0;

pub fn draw(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let [head, chart, bottom] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Percentage(50),
        Constraint::Min(6),
    ])
    .areas(area);
    let i = &s.info;
    let head_lines = vec![
        Line::from(vec![
            Span::styled(format!("{} ", i.guest), style::TITLE),
            Span::raw(format!("on {} via {} · ", i.host_kind, i.backend)),
            Span::styled(format!("optimizations: {} ", i.optimizations), style::KEY),
            Span::raw(format!("· sampling: {}", i.sampling)),
        ]),
        Line::from(Span::styled(
            format!(
                "profiler cost {:.1}% of the measured CPU · figures over the last {:.1} s ({}; w switches)",
                i.profiler_cost_pct,
                i.window_seconds,
                if i.rolling { "rolling" } else { "whole run" }
            ),
            style::DIM,
        )),
    ];
    frame.render_widget(Paragraph::new(head_lines), head);
    draw_chart(frame, chart, s);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    draw_figures(frame, left, s);
    draw_threads(frame, right, s);
}

fn draw_chart(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let end = s.series.last().map_or(0.0, |p| p.t).max(CHART_SECONDS);
    let start = end - CHART_SECONDS;
    let points: Vec<(f64, f64)> = s
        .series
        .iter()
        .filter(|p| p.t >= start)
        .map(|p| (p.t, p.mbps))
        .collect();
    let top = points.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.2;
    let marks: Vec<Vec<(f64, f64)>> = s
        .marks
        .iter()
        .filter(|m| m.t >= start)
        .map(|m| vec![(m.t, 0.0), (m.t, top)])
        .collect();
    let mut datasets = vec![Dataset::default()
        .name("Mb/s")
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(Color::Green))
        .data(&points)];
    for m in &marks {
        datasets.push(
            Dataset::default()
                .marker(Marker::Dot)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(Color::Yellow))
                .data(m),
        );
    }
    let title = match (s.series.last(), s.recent_throughput(5.0)) {
        (Some(now), Some((mb, fr, covered))) => format!(
            " throughput: {:.2} Mb/s now · {mb:.2} Mb/s, {fr:.0} frames/s over {covered:.0} s ",
            now.mbps
        ),
        _ => " throughput: no frames yet ".into(),
    };
    let chart = Chart::new(datasets)
        .legend_position(None)
        .block(
            Block::bordered()
                .title(Span::styled(title, style::HEADER))
                .title_bottom(Span::styled(
                    " yellow: toggles, resets, baselines ",
                    style::DIM,
                )),
        )
        .x_axis(
            Axis::default()
                .bounds([start, end])
                .labels([format!("{start:.0} s"), format!("{end:.0} s")]),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels(["0".to_string(), format!("{top:.0}")]),
        );
    frame.render_widget(chart, area);
}

fn draw_figures(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let mut lines = Vec::new();
    if let Some(p) = s.series.last() {
        lines.push(Line::from(format!(
            "exits/s: I/O {:.0}, MMIO {:.0}, kicks {:.0}, other {:.0}; port writes done in KVM {:.0}/s",
            p.pio_exits_per_sec,
            p.mmio_exits_per_sec,
            p.kick_exits_per_sec,
            p.other_exits_per_sec,
            p.in_kernel_writes_per_sec
        )));
    }
    let n = &s.net;
    lines.push(Line::from(format!(
        "frames: {} from the guest, {} delivered",
        n.frames_from_guest, n.delivered
    )));
    if let Some(e) = n.exits_per_frame {
        lines.push(Line::from(format!("exits to user space per frame: {e:.2}")));
    }
    if n.dropped.is_empty() {
        lines.push(Line::from(Span::styled("no drops", style::GOOD)));
    } else {
        let d: Vec<String> = n.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
        lines.push(Line::from(Span::styled(
            format!("dropped: {}", d.join(", ")),
            style::BAD,
        )));
    }
    if !s.guest_counters.is_empty() {
        let c: Vec<String> = s
            .guest_counters
            .iter()
            .filter(|(k, _)| !k.starts_with("path_"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        lines.push(Line::from(format!("guest: {}", c.join(" "))));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: true })
            .block(Block::bordered().title(Span::styled(" exits and frames ", style::HEADER))),
        area,
    );
}

fn draw_threads(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let cpu_of = |name: &str| {
        s.threads
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.last_cpu)
    };
    let mut lines: Vec<Line> = s
        .threads
        .iter()
        .filter(|t| t.cpu_pct >= 0.05 || t.name == "vcpu0" || t.name == "vmnet-io")
        .map(|t| {
            Line::from(format!(
                "{:<14} {:>6.1}%  cpu {}",
                t.name,
                t.cpu_pct,
                t.last_cpu.map_or("?".into(), |c| c.to_string())
            ))
        })
        .collect();
    if let (Some(a), Some(b)) = (cpu_of("vcpu0"), cpu_of("vmnet-io")) {
        if a == b {
            lines.insert(
                0,
                Line::from(Span::styled(
                    format!("vCPU and I/O threads share core {a}"),
                    style::WARN,
                )),
            );
        }
    }
    if lines.is_empty() {
        lines.push(Line::from(Span::styled("no readings yet", style::DIM)));
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered().title(Span::styled(" threads (% of one core) ", style::HEADER)),
        ),
        area,
    );
}
