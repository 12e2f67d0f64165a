//! Benchmarks that print figures measured on this machine.

pub mod axes;
pub mod exits;
pub mod nettest;
pub mod predict;
pub mod profiler;
pub mod qemu;
pub mod results;
pub mod soak;
pub mod ui;
