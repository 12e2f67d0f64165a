//! Console: the guest's serial output (scrollable) above the event log of
//! toggles, resets, warnings and exports.

use crate::state::UiState;
use crate::style;
use profiles::snapshot::Snapshot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, s: &Snapshot, ui: &mut UiState) {
    let log_h = (s.log.len() as u16 + 2).clamp(3, area.height / 3);
    let [top, bottom] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(log_h)]).areas(area);
    let rows = top.height.saturating_sub(2) as usize;
    ui.console_scroll = ui.console_scroll.min(s.console.len().saturating_sub(rows));
    let end = s.console.len() - ui.console_scroll;
    let lines: Vec<Line> = s.console[end.saturating_sub(rows)..end]
        .iter()
        .map(|l| Line::from(l.trim_end_matches(['\r', '\n']).to_string()))
        .collect();
    let title = if ui.console_scroll > 0 {
        format!(
            " guest console ({} lines up; j/k scroll) ",
            ui.console_scroll
        )
    } else {
        " guest console ".to_string()
    };
    let body = if lines.is_empty() {
        Paragraph::new(Span::styled(
            "the guest has printed nothing yet",
            style::DIM,
        ))
    } else {
        Paragraph::new(lines)
    };
    frame.render_widget(
        body.block(Block::bordered().title(Span::styled(title, style::HEADER))),
        top,
    );
    let n = bottom.height.saturating_sub(2) as usize;
    let log: Vec<Line> = s.log[s.log.len().saturating_sub(n)..]
        .iter()
        .map(|l| {
            Line::from(vec![
                Span::styled(format!("{:>7.1} s  ", l.t), style::DIM),
                Span::raw(l.text.clone()),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(log)
            .block(Block::bordered().title(Span::styled(" event log ", style::HEADER))),
        bottom,
    );
}
