//! Transmit path: the paper's Figure 5 for this machine, one stacked bar of
//! the segments from the guest's OUT to its next instruction, each with its
//! figure and, where it crosses the guest/host clock boundary, its error.

use crate::style;
use profiles::snapshot::Snapshot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

const COLORS: [Color; 5] = [
    Color::Green,
    Color::LightBlue,
    Color::LightRed,
    Color::Yellow,
    Color::Magenta,
];

/// The paper's figure, microseconds: the same five segments where it
/// measured them (its last segment is the return to the next instruction).
const PAPER: &str = "the paper (733 MHz, WS 2.0): 0.57 + 4.45 + 1.23 + 17.55 = 23.8 us to the write's return, 31.63 us to the guest's next instruction";

pub fn draw(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let block = Block::bordered().title(Span::styled(
        " transmit path: guest OUT to the guest's next instruction (Figure 5) ",
        style::HEADER,
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(p) = &s.transmit_path else {
        frame.render_widget(
            crate::note("The guest is not stamping its transmit path. Start it with --guest-arg path_timing=1 (nettest) to measure each segment: the guest stamps its kick and the host stamps the exit, the TAP write and the re-entry, with the guest/host clock offset calibrated by ping-pong."),
            inner,
        );
        return;
    };
    let [bar, gap, legend, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Length(p.segments_us.len() as u16 + 1),
        Constraint::Min(0),
    ])
    .areas(inner);
    let _ = gap;
    // The bar: each segment's width by its share (negative ones, possible
    // within the error bound, get none).
    let total: f64 = p.segments_us.iter().map(|(_, v)| v.max(0.0)).sum();
    let mut spans = Vec::new();
    let mut used = 0u16;
    for (i, (_, us)) in p.segments_us.iter().enumerate() {
        let w = if i + 1 == p.segments_us.len() {
            bar.width.saturating_sub(used)
        } else {
            ((us.max(0.0) / total.max(1e-9)) * bar.width as f64).round() as u16
        };
        used += w;
        spans.push(Span::styled(
            " ".repeat(w as usize),
            Style::new().bg(COLORS[i % COLORS.len()]),
        ));
    }
    let line = Line::from(spans);
    frame.render_widget(Paragraph::new(vec![line.clone(), line.clone(), line]), bar);
    let mut lines = vec![Line::from(Span::styled(
        format!("{} kicks measured; {:.2} us in all", p.kicks, p.total_us),
        style::TITLE,
    ))];
    for (i, (name, us)) in p.segments_us.iter().enumerate() {
        let err = if p.crosses_clocks(i) {
            format!(" +-{:.2}", p.error_us)
        } else {
            "  (host clock only: exact)".into()
        };
        lines.push(Line::from(vec![
            Span::styled("  ", Style::new().bg(COLORS[i % COLORS.len()])),
            Span::raw(format!(" {name:<24} {us:>8.2} us{err}")),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), legend);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(Span::styled(
                format!(
                    "The first and last segments cross the guest/host clock boundary (TSC offset {} cycles); their sum is offset-free.",
                    p.tsc_offset_cycles
                ),
                style::DIM,
            )),
            Line::from(Span::styled(PAPER, style::DIM)),
        ])
        .wrap(Wrap { trim: true }),
        foot,
    );
}
