//! worldswitch: a terminal workbench that shows what virtualized I/O costs.
//! This crate is how a profile is made; the folders follow the data: the
//! command line and its commands, the front ends that show a run, the
//! session in the middle, the machine (KVM, its devices, the NIC's host
//! side) and the profiler that watches it.

/// Command-line options and their parsers.
pub mod cli;
/// The subcommands besides `run`: bench, doctor, guests, record and report.
pub mod commands;
/// What shows a run: the terminal workbench, its engine thread, and the
/// text, JSON and CSV printers.
pub mod frontends;
/// Faults injected on purpose for tests.
pub mod injected;
/// The machine: the hypervisor core on KVM, the device models, the
/// optimizations' mechanisms and where the NIC's frames go.
pub mod machine;
/// The profiler's collectors: markers, stack samples, emulation windows,
/// tracepoint counters and thread CPU.
pub mod profiler;
/// A small PRNG for soak flips and fuzz mutations.
pub mod rng;
/// Headless runs and their results.
pub mod run;
/// A running guest (one VM and its collectors) and its timeline.
pub mod session;
