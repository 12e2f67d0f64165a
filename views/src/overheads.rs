//! Overheads: the paper's Table 1 twice over (shares of the measured CPU
//! time, and the VMM rows as shares of VMM time), sortable, with the
//! paper's published shares beside ours, a delta against a baseline, the
//! denominator stated and the rows that could not be measured.

use crate::state::{SortBy, UiState};
use crate::style;
use profiles::snapshot::Snapshot;
use profiles::table::{Row, Source, Table};
use profiles::taxonomy::{PaperTable, Thread, World};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row as TableRow, Table as TableWidget, Wrap};
use ratatui::Frame;
use std::cmp::Ordering;

pub fn draw(frame: &mut Frame, area: Rect, s: &Snapshot, ui: &mut UiState) {
    let t = &s.table;
    let vmm_rows = t
        .rows
        .iter()
        .filter(|r| r.world == Some(World::Vmm))
        .count() as u16;
    let [head, main, detail, vmm, missing] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Length(1),
        Constraint::Length((vmm_rows + 3).min(area.height / 4).max(4)),
        Constraint::Length(
            (t.unavailable.len() as u16 + 3 + t.unsampled_threads.len() as u16)
                .min(area.height / 5)
                .max(3),
        ),
    ])
    .areas(area);
    // The ledger view needs frames; without them the shares stay.
    let per_frame = t.per_frame.as_ref().filter(|_| ui.per_frame);
    let unit = match per_frame {
        Some(p) => format!(
            "microseconds of CPU per frame over {} frames ({:.1} in all; u shows shares)",
            p.frames,
            t.denominator_seconds * 1e6 / p.frames.max(1) as f64
        ),
        None => format!(
            "100% = {:.3} s: {}{}",
            t.denominator_seconds,
            t.denominator,
            if t.per_frame.is_some() {
                " (u: per frame)"
            } else {
                ""
            }
        ),
    };
    frame.render_widget(
        Line::from(Span::styled(
            format!(
                "{unit} · sorted by {} (s) · {}",
                ui.sort.title(),
                match (s.baseline.is_some(), per_frame.is_some()) {
                    (true, false) => "delta: share points since the baseline (b)",
                    (true, true) => "delta: us per frame since the baseline (b)",
                    (false, _) => "b marks a baseline for the delta column",
                }
            ),
            style::DIM,
        )),
        head,
    );
    let rows = sorted(t, s.baseline.as_ref(), ui.sort, per_frame.is_some());
    ui.row = ui.row.min(rows.len().saturating_sub(1));
    draw_main(
        frame,
        main,
        &rows,
        s.baseline.as_ref(),
        ui,
        per_frame.is_some(),
    );
    if let Some(r) = rows.get(ui.row) {
        frame.render_widget(Line::from(Span::styled(detail_line(r), style::DIM)), detail);
    }
    draw_vmm(frame, vmm, t);
    let mut lines: Vec<Line> = t
        .unavailable
        .iter()
        .map(|u| {
            Line::from(vec![
                Span::styled(format!("{}: ", u.category), style::KEY),
                Span::raw(u.reason.clone()),
            ])
        })
        .collect();
    let shares = t.thread_shares();
    if !shares.is_empty() {
        let text: Vec<String> = shares
            .iter()
            .map(|(name, pct)| format!("{name} {pct:.1}%"))
            .collect();
        lines.push(Line::from(vec![
            Span::styled("samples by thread: ", style::KEY),
            Span::raw(text.join(" · ")),
        ]));
    }
    for (thread, why) in &t.unsampled_threads {
        lines.push(Line::from(vec![
            Span::styled(format!("thread {thread}: "), style::KEY),
            Span::raw(format!("not sampled: {why}")),
        ]));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(Span::styled(
                " not measured, and why; samples by thread ",
                style::HEADER,
            ))),
        missing,
    );
}

fn delta(r: &Row, baseline: Option<&Table>, per_frame: bool) -> Option<f64> {
    let b = baseline.and_then(|b| b.row_of(r.category, r.thread))?;
    match per_frame {
        true => Some(r.us_per_frame? - b.us_per_frame?),
        false => Some(r.share_pct - b.share_pct),
    }
}

fn sorted<'a>(t: &'a Table, baseline: Option<&Table>, by: SortBy, per_frame: bool) -> Vec<&'a Row> {
    let mut rows: Vec<&Row> = t.rows.iter().collect();
    let key = |r: &Row| -> f64 {
        match by {
            SortBy::Share | SortBy::Name => r.share_pct,
            SortBy::Count => r.count as f64,
            SortBy::Avg => r.avg_us,
            SortBy::P99 => r.p99_us,
            SortBy::Delta => delta(r, baseline, per_frame).map_or(0.0, f64::abs),
        }
    };
    rows.sort_by(|a, b| match by {
        SortBy::Name => a.label.cmp(&b.label),
        _ => key(b).partial_cmp(&key(a)).unwrap_or(Ordering::Equal),
    });
    rows
}

fn detail_line(r: &Row) -> String {
    let mut s = format!("{} [{}] source: {}", r.label, r.category, r.source);
    if let Some(n) = r.samples {
        s.push_str(&format!(", {n} samples"));
    }
    if r.count > 0 {
        s.push_str(&format!(", p50 {:.2} us", r.p50_us));
    }
    if let Some(c) = &r.cross_check {
        s.push_str(&format!(
            "; cross-check {:.1}% by markers vs {:.1}% by {} samples",
            c.marker_share_pct, c.sampled_share_pct, c.samples
        ));
    }
    s
}

fn draw_main(
    frame: &mut Frame,
    area: Rect,
    rows: &[&Row],
    baseline: Option<&Table>,
    ui: &mut UiState,
    per_frame: bool,
) {
    let wide = area.width >= 100;
    let head = [
        "row",
        "thr",
        "count",
        "/s",
        if per_frame { "us/fr" } else { "share" },
        "avg us",
        "p99 us",
        "delta",
        "paper",
    ];
    let visible = area.height.saturating_sub(3) as usize;
    let first = ui.row.saturating_sub(visible.saturating_sub(1));
    let body: Vec<TableRow> = rows
        .iter()
        .enumerate()
        .skip(first)
        .take(visible)
        .map(|(i, r)| {
            let split = r.source == Source::SplitBySamples;
            let sampled = r.source != Source::Markers && !split;
            let dash = || "-".to_string();
            let label = if wide {
                r.label.clone()
            } else {
                r.category.to_string()
            };
            let world = r.world.map_or("", |w| match w {
                World::Guest => "guest",
                World::Vmm => "vmm",
                World::Vmapp => "vmapp",
                World::Host => "host",
                World::Workbench => "workbench",
            });
            let cells = vec![
                Cell::from(label).style(ratatui::style::Style::new().fg(style::world(world))),
                Cell::from(match r.thread {
                    Thread::Vcpu => "vcpu",
                    Thread::Io => "io",
                    Thread::Pvnet => "pv",
                    Thread::Workbench => "wb",
                }),
                Cell::from(if sampled {
                    r.samples.map_or("est.".into(), |n| format!("~{n}s"))
                } else {
                    r.count.to_string()
                }),
                Cell::from(if sampled {
                    dash()
                } else {
                    format!("{:.0}", r.rate_per_sec)
                }),
                Cell::from(match (per_frame, r.us_per_frame) {
                    (true, Some(us)) => format!("{us:.2}"),
                    (true, None) => dash(),
                    (false, _) => format!("{:.1}%", r.share_pct),
                }),
                Cell::from(if sampled {
                    dash()
                } else {
                    format!("{:.2}", r.avg_us)
                }),
                Cell::from(if sampled || split {
                    dash()
                } else {
                    format!("{:.2}", r.p99_us)
                }),
                Cell::from(delta(r, baseline, per_frame).map_or(String::new(), |d| {
                    if per_frame {
                        format!("{d:+.2}")
                    } else {
                        format!("{d:+.1}")
                    }
                })),
                Cell::from(match (r.paper_table, r.paper_share_pct) {
                    (Some(PaperTable::Total), Some(p)) => format!("{p:.1}%"),
                    _ => String::new(),
                }),
            ];
            let row = TableRow::new(cells);
            if i == ui.row {
                row.style(style::SELECTED)
            } else {
                row
            }
        })
        .collect();
    let widths = [
        Constraint::Min(14),
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(6),
    ];
    let table = TableWidget::new(body, widths)
        .header(TableRow::new(head.map(Cell::from)).style(style::HEADER))
        .column_spacing(1)
        .block(Block::bordered().title(Span::styled(
            " Total time (the paper's Table 1, left half) ",
            style::HEADER,
        )));
    frame.render_widget(table, area);
    let inner = Rect::new(
        area.x + 1,
        area.y + 2,
        area.width.saturating_sub(2),
        visible as u16,
    );
    ui.rows_area = Some((inner, first));
}

fn draw_vmm(frame: &mut Frame, area: Rect, t: &Table) {
    let vmm: Vec<&Row> = t
        .rows
        .iter()
        .filter(|r| r.world == Some(World::Vmm))
        .collect();
    let total: f64 = vmm.iter().map(|r| r.total_us).sum();
    let title = format!(
        " VMM time (100% = {:.3} s in the KVM module; right half of Table 1) ",
        total / 1e6
    );
    let body: Vec<TableRow> = vmm
        .iter()
        .map(|r| {
            TableRow::new(vec![
                Cell::from(r.label.clone()),
                Cell::from(format!("{:.1}%", r.total_us / total.max(1e-9) * 100.0)),
                Cell::from(match (r.paper_table, r.paper_share_pct) {
                    (Some(PaperTable::Vmm), Some(p)) => format!("{p:.1}%"),
                    _ => String::new(),
                }),
            ])
        })
        .collect();
    let table = TableWidget::new(
        body,
        [
            Constraint::Min(20),
            Constraint::Length(7),
            Constraint::Length(7),
        ],
    )
    .header(TableRow::new(["row", "share", "paper"].map(Cell::from)).style(style::HEADER))
    .block(Block::bordered().title(Span::styled(title, style::HEADER)));
    frame.render_widget(table, area);
}
