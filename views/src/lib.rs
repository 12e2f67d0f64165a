//! How a worldswitch profile looks: the workbench's screens drawn with
//! ratatui from a [`Snapshot`], and the user's view state. No KVM and no
//! terminal here; the app owns both.
#![forbid(unsafe_code)]

mod console;
#[cfg(test)]
mod fixtures;
mod flame;
mod optimizations;
mod overheads;
mod overview;
pub mod state;
mod style;
mod transmit_path;

use profiles::snapshot::{RunState, Snapshot};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;
use state::{Tab, UiState};

/// Draws the whole workbench: tabs, the chosen screen, the status line and,
/// when open, the help overlay.
pub fn draw(frame: &mut Frame, live: &Snapshot, ui: &mut UiState) {
    let snap = ui.shown(live).clone();
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_tabs(frame, tabs, ui);
    ui.rows_area = None;
    match ui.tab {
        Tab::Overview => overview::draw(frame, body, &snap),
        Tab::Overheads => overheads::draw(frame, body, &snap, ui),
        Tab::Path => transmit_path::draw(frame, body, &snap),
        Tab::Flame => flame::draw(frame, body, &snap, ui),
        Tab::Console => console::draw(frame, body, &snap, ui),
        Tab::Optimizations => optimizations::draw(frame, body, &snap, ui),
    }
    draw_status(frame, status, &snap, ui);
    if ui.help {
        draw_help(frame, frame.area());
    }
}

fn draw_tabs(frame: &mut Frame, area: Rect, ui: &mut UiState) {
    ui.tab_areas.clear();
    // Narrow terminals get short titles and no name, so every tab fits.
    let narrow = area.width < 100;
    let mut spans = Vec::new();
    if !narrow {
        spans.push(Span::styled(" worldswitch ", style::TITLE));
    }
    let mut x = area.x + spans.first().map_or(0, |s| s.width() as u16);
    for (i, &tab) in Tab::ALL.iter().enumerate() {
        let title = if narrow {
            tab.short_title()
        } else {
            tab.title()
        };
        let text = format!(" {} {} ", i + 1, title);
        let w = text.chars().count() as u16;
        let st = if tab == ui.tab {
            style::TAB_ON
        } else {
            style::TAB_OFF
        };
        if x + w <= area.x + area.width {
            ui.tab_areas.push((Rect::new(x, area.y, w, 1), tab));
        }
        x += w;
        spans.push(Span::styled(text, st));
    }
    frame.render_widget(Line::from(spans), area);
}

fn draw_status(frame: &mut Frame, area: Rect, s: &Snapshot, ui: &UiState) {
    let state = match s.state {
        RunState::Starting => "starting",
        RunState::Running => "running",
        RunState::Paused => "PAUSED",
        RunState::Finished => "finished",
        RunState::Saved => "saved profile",
    };
    let mut spans = vec![
        Span::styled(format!(" {state} "), style::state(s.state)),
        Span::raw(format!(" {:.0} s ", s.info.elapsed_seconds)),
    ];
    if ui.frozen.is_some() {
        spans.push(Span::styled(" FROZEN ", style::WARN));
    }
    let text = match (&ui.message, &s.info.outcome) {
        (Some(m), _) => m.clone(),
        (None, Some(o)) => o.clone(),
        (None, None) => "? help  Tab screens  p pause  f freeze  e export  q quit".into(),
    };
    spans.push(Span::styled(format!(" {text}"), style::DIM));
    frame.render_widget(Line::from(spans), area);
}

const HELP: &[(&str, &str)] = &[
    ("?", "this help (any key closes it)"),
    ("Tab S-Tab 1-6", "switch screens (or click a tab)"),
    ("arrows hjkl", "move; PgUp/PgDn scroll"),
    ("s", "Overheads: sort by the next column"),
    ("u", "Overheads: shares, or microseconds per frame"),
    ("b", "mark a baseline for the delta column"),
    ("r", "reset counters: figures start from now"),
    ("w", "last 10 s (rolling) or the whole run"),
    ("/", "Flame: search and highlight; Enter keeps it"),
    ("Enter Esc", "Flame: zoom in to the selection, out"),
    ("f", "freeze the picture (collection goes on)"),
    ("e", "export flame graph (SVG) and tables (JSON)"),
    ("p", "pause or resume the guest"),
    ("a d c t n", "flip an optimization (screen 6 lists them)"),
    ("q Ctrl-C", "quit"),
];

fn draw_help(frame: &mut Frame, area: Rect) {
    let w = area.width.min(64);
    let h = (HELP.len() as u16 + 4).min(area.height);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:>14}  "), style::KEY),
                Span::raw(*v),
            ])
        })
        .collect();
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" keys ").title_style(style::TITLE)),
        r,
    );
}

/// A line of text, or a dimmed note when there is nothing to show.
fn note(text: impl Into<String>) -> Paragraph<'static> {
    Paragraph::new(Span::styled(
        text.into(),
        Style::new().add_modifier(Modifier::DIM),
    ))
    .wrap(Wrap { trim: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Action, Key};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    /// The screen as text, one line per row.
    pub(crate) fn render(snap: &Snapshot, ui: &mut UiState, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, snap, ui)).unwrap();
        let buf = t.backend().buffer();
        (0..h)
            .map(|y| {
                let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
                line.trim_end().to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn screens(name: &str, snap: &Snapshot) {
        for (w, h) in [(80, 24), (160, 48)] {
            for tab in Tab::ALL {
                let mut ui = UiState {
                    tab,
                    ..UiState::default()
                };
                let text = render(snap, &mut ui, w, h);
                insta::assert_snapshot!(
                    format!("{name}_{}_{w}x{h}", tab.title().replace(' ', "_")),
                    text
                );
            }
        }
    }

    #[test]
    fn the_selected_toggle_says_what_it_needs() {
        let mut ui = UiState {
            tab: Tab::Optimizations,
            toggle: 1,
            ..UiState::default()
        };
        let text = render(&fixtures::busy(), &mut ui, 100, 30);
        assert!(text.contains("send-combining"), "{text}");
        assert!(text.contains("needs data-port-in-kernel"), "{text}");
    }

    #[test]
    fn every_screen_of_a_busy_run() {
        screens("busy", &fixtures::busy());
    }

    #[test]
    fn every_screen_of_a_run_just_started() {
        screens("starting", &fixtures::starting());
    }

    #[test]
    fn the_ledger_view_shows_microseconds_per_frame() {
        let s = fixtures::busy();
        let mut ui = UiState {
            tab: Tab::Overheads,
            ..UiState::default()
        };
        assert_eq!(ui.on_key(Key::Char('u'), &s), Action::None);
        assert!(ui.per_frame);
        let text = render(&s, &mut ui, 160, 48);
        assert!(
            text.contains("microseconds of CPU per frame over 10000 frames"),
            "{text}"
        );
        insta::assert_snapshot!("busy_Overheads_per_frame_160x48", text);
        // Without frames there is nothing to divide by: the shares stay.
        let mut ui = UiState {
            tab: Tab::Overheads,
            ..UiState::default()
        };
        ui.on_key(Key::Char('u'), &fixtures::starting());
        assert!(!ui.per_frame && ui.message.is_some());
    }

    #[test]
    fn help_overlay_and_frozen_status() {
        let s = fixtures::busy();
        let mut ui = UiState::default();
        ui.on_key(state::Key::Char('f'), &s);
        ui.message = None;
        ui.on_key(state::Key::Char('?'), &s);
        let text = render(&s, &mut ui, 80, 24);
        assert!(text.contains("FROZEN"), "{text}");
        assert!(text.contains("pause or resume the guest"), "{text}");
        insta::assert_snapshot!("help_80x24", text);
    }

    #[test]
    fn tabs_are_clickable_where_drawn() {
        let s = fixtures::busy();
        let mut ui = UiState::default();
        render(&s, &mut ui, 160, 48);
        let (r, _) = ui
            .tab_areas
            .iter()
            .find(|(_, t)| *t == Tab::Flame)
            .copied()
            .unwrap();
        ui.on_click(r.x + 1, r.y);
        assert_eq!(ui.tab, Tab::Flame);
        // At 80 columns every tab still fits.
        render(&s, &mut ui, 80, 24);
        assert_eq!(ui.tab_areas.len(), Tab::ALL.len());
    }
}
