//! What shows a run to people and scripts: the terminal workbench and the
//! engine thread behind it, and the printers of results and profiles.

/// The engine thread behind the terminal UI.
pub mod engine;
/// Results and profiles as text, JSON or CSV.
pub mod printer;
/// The terminal workbench.
pub mod tui;
