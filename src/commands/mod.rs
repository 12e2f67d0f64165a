//! The subcommands besides `run` (which is `crate::run` headless and the
//! workbench otherwise): each owns what it prints.

/// `worldswitch attach`: a VMM we did not start.
pub mod attach;
/// Benchmarks with printed figures.
pub mod bench;
/// `worldswitch doctor`: what this host offers.
pub mod doctor;
/// `worldswitch guests`.
pub mod guests;
/// Saving and reading profiles: record, report, flamegraph, diff.
pub mod record;
