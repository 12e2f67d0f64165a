//! Optimizations: every toggle this build has, with its state, key and
//! meaning, what the cost model predicts flipping it will do, and why it
//! cannot be flipped when it cannot; the last flip's prediction against
//! what it measured, and the selected toggle's meaning in full below.

use crate::state::UiState;
use crate::style;
use profiles::snapshot::Snapshot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, s: &Snapshot, ui: &mut UiState) {
    let block = Block::bordered().title(Span::styled(
        " optimizations (Enter flips the selected one; its key flips it from any screen) ",
        style::HEADER,
    ));
    if s.toggles.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            crate::note("A saved profile without optimization toggles, or a run that has not reported them yet."),
            inner,
        );
        return;
    }
    ui.toggle = ui.toggle.min(s.toggles.len() - 1);
    let predicted = |t: &profiles::snapshot::Toggle| {
        s.forecast
            .as_ref()
            .and_then(|f| f.toggles.iter().find(|p| p.opt == t.opt))
    };
    let rows: Vec<Row> = s
        .toggles
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let state = match (&t.blocked, t.on) {
                (Some(_), _) => Span::styled("n/a", style::DIM),
                (None, true) => Span::styled("on", style::GOOD),
                (None, false) => Span::styled("off", style::BAD),
            };
            let meaning = match &t.blocked {
                Some(why) => format!("{} ({why})", t.meaning),
                None => t.meaning.clone(),
            };
            let (mbps, us) = match predicted(t) {
                Some(p) => (
                    p.mbps.map_or("-".into(), |v| format!("{v:.1}")),
                    p.us_per_frame.map_or("-".into(), |v| format!("{v:.0}")),
                ),
                None => (String::new(), String::new()),
            };
            let row = Row::new(vec![
                Cell::from(t.key.to_string()).style(style::KEY),
                Cell::from(t.opt.name()),
                Cell::from(state),
                Cell::from(mbps),
                Cell::from(us),
                Cell::from(meaning),
            ]);
            if i == ui.toggle {
                row.style(style::SELECTED)
            } else {
                row
            }
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Length(22),
            Constraint::Length(4),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(["key", "toggle", "", "if Mb/s", "us/frame", "what it does"]).style(style::HEADER),
    )
    .block(block);
    let forecast = s
        .forecast
        .as_ref()
        .map(|f| forecast_lines(f, predicted(&s.toggles[ui.toggle])))
        .unwrap_or_default();
    // Each line wrapped to the width, as the paragraph will.
    let width = usize::from(area.width.max(1));
    let forecast_height: usize = forecast
        .iter()
        .map(|l| l.chars().count().div_ceil(width).max(1))
        .sum();
    let [top, model, below] = Layout::vertical([
        Constraint::Length(s.toggles.len() as u16 + 3),
        Constraint::Length(forecast_height as u16),
        Constraint::Min(0),
    ])
    .areas(area);
    frame.render_widget(table, top);
    frame.render_widget(
        Paragraph::new(forecast.join("\n")).wrap(Wrap { trim: true }),
        model,
    );
    let t = &s.toggles[ui.toggle];
    let mut text = match &t.blocked {
        Some(why) => format!("{} ({why})", t.meaning),
        None => t.meaning.clone(),
    };
    if !t.needs.is_empty() {
        text.push_str(&format!(
            "\n\nneeds {}: switching it on switches that on, switching that off switches it off.",
            t.needs
                .iter()
                .map(|o| o.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(
            Block::bordered().title(Span::styled(format!(" {} ", t.opt.name()), style::HEADER)),
        ),
        below,
    );
}

/// The model's footing, the last flip's prediction against its
/// measurement, and where the selected toggle's counts come from: the
/// lines under the table.
fn forecast_lines(
    f: &profiles::snapshot::LiveForecast,
    selected: Option<&profiles::snapshot::TogglePrediction>,
) -> Vec<String> {
    let mut lines = vec![format!("predicted (if flipped): {}", f.status)];
    if let Some(c) = &f.check {
        lines.push(match (c.measured_mbps, c.measured_us_per_frame, c.error_pct) {
            (Some(m), Some(us), Some(e)) => format!(
                "after the flip to {}: predicted {:.1} Mb/s ({:.0} us/frame), measured {:.1} Mb/s ({:.0} us/frame): {:+.1}%",
                c.config, c.predicted_mbps, c.predicted_us_per_frame, m, us, e
            ),
            _ => format!(
                "after the flip to {}: predicted {:.1} Mb/s ({:.0} us/frame), measuring...",
                c.config, c.predicted_mbps, c.predicted_us_per_frame
            ),
        });
        if let Some(miss) = &c.miss {
            lines.push(format!("  most off: {miss}"));
        }
    }
    if let Some(p) = selected {
        lines.push(format!("selected: counts from {}", p.basis));
    }
    lines
}
