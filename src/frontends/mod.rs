//! What shows a run to people and scripts: the terminal workbench and the
//! engine thread behind it, and the printers of results and profiles.

/// The engine thread behind the terminal UI.
pub mod engine;
/// A headless run's per-second lines (`run --log`, `--json-lines`).
pub mod log;
/// Results and profiles as text, JSON or CSV.
pub mod printer;
/// The terminal workbench.
pub mod tui;
