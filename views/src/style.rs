//! The workbench's colours and text styles, in one place. Colours carry
//! meaning only together with text, so the screens read in monochrome too.

use profiles::snapshot::RunState;
use ratatui::style::{Color, Modifier, Style};

pub const TITLE: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
pub const TAB_ON: Style = Style::new()
    .fg(Color::Black)
    .bg(Color::Cyan)
    .add_modifier(Modifier::BOLD);
pub const TAB_OFF: Style = Style::new().fg(Color::Gray);
pub const DIM: Style = Style::new().fg(Color::DarkGray);
pub const WARN: Style = Style::new()
    .fg(Color::Black)
    .bg(Color::Yellow)
    .add_modifier(Modifier::BOLD);
pub const KEY: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
pub const HEADER: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
pub const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
pub const GOOD: Style = Style::new().fg(Color::Green);
pub const BAD: Style = Style::new().fg(Color::Red);

/// The run state's badge.
pub fn state(s: RunState) -> Style {
    match s {
        RunState::Running => Style::new().fg(Color::Black).bg(Color::Green),
        RunState::Paused => WARN,
        RunState::Finished | RunState::Saved => Style::new().fg(Color::Black).bg(Color::Gray),
        RunState::Starting => Style::new().fg(Color::Black).bg(Color::Blue),
    }
}

/// A world's colour (flame frames, table rows), by its key in folded
/// stacks: `guest`, `vmm`, `vmapp`, `host`, or a thread name (`io` cyan).
/// The names come from `profiles::flame::PALETTE`, which SVG flame graphs
/// fill with too.
pub fn world(key: &str) -> Color {
    match profiles::flame::colour(key).map(|(name, _)| name) {
        Some("green") => Color::Green,
        Some("light red") => Color::LightRed,
        Some("light blue") => Color::LightBlue,
        Some("magenta") => Color::Magenta,
        _ if key == "io" => Color::Cyan,
        _ => Color::Gray,
    }
}
