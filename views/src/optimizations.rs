//! Optimizations: every toggle this build has, with its state, key and
//! meaning, and why it cannot be flipped when it cannot; the selected one's
//! meaning in full below.

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
            let row = Row::new(vec![
                Cell::from(t.key.to_string()).style(style::KEY),
                Cell::from(t.opt.name()),
                Cell::from(state),
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
            Constraint::Min(10),
        ],
    )
    .header(Row::new(["key", "toggle", "", "what it does"]).style(style::HEADER))
    .block(block);
    let [top, below] = Layout::vertical([
        Constraint::Length(s.toggles.len() as u16 + 3),
        Constraint::Min(0),
    ])
    .areas(area);
    frame.render_widget(table, top);
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
