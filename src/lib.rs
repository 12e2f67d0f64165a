//! worldswitch: a terminal workbench that shows what virtualized I/O costs.
//! This crate is how a profile is made: the hypervisor core on KVM, the
//! device models, the host-side tools and the command line.

/// Benchmarks with printed figures.
pub mod bench;
/// Command-line options and their parsers.
pub mod cli;
/// Device models and the port I/O bus.
pub mod devices;
/// `worldswitch doctor`: what this host offers.
pub mod doctor;
/// The engine thread behind the terminal UI.
pub mod engine;
/// Guest images: built-in or from a file, with symbols.
pub mod guest_image;
/// `worldswitch guests`.
pub mod guests;
/// DriverErrors injected on purpose for tests.
pub mod injected;
/// The network side of a run: backend choice and frame accounting.
pub mod netrun;
/// The optimization toggles and their mechanisms.
pub mod optimizations;
/// Results and profiles as text, JSON or CSV.
pub mod printer;
/// The profiler's collectors.
pub mod profiler;
/// Saving and reading profiles: record, report, flamegraph.
pub mod record;
/// A small PRNG for soak flips and fuzz mutations.
pub mod rng;
/// Headless runs and their results.
pub mod run;
/// A running guest (one VM and its collectors) and its timeline.
pub mod session;
/// The CPU use of worldswitch's threads.
pub mod threads;
/// Kernel tracepoint counters through perf events.
pub mod tracepoints;
/// The terminal workbench.
pub mod tui;
/// The hypervisor core on KVM.
pub mod vmm;
/// Where the NIC's frames go: TAP or an in-process sink.
pub mod vmnet;
