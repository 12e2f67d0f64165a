//! How a worldswitch profile looks: the ratatui screens that render profile
//! snapshots. The terminal workbench fills this crate; until then it holds
//! nothing, and the app runs headless.
#![forbid(unsafe_code)]
