//! The paper's optimizations and their KVM descendants: the mechanisms
//! that live with the vCPU (coalesced port I/O zones, the flusher). What
//! the toggles are (names, keys, meanings, presets, what depends on what,
//! parsing `--preset` and `--opt NAME=on|off`) is plain data in
//! `profiles::toggles`, re-exported here.

pub mod coalesced;
pub mod flusher;

pub use profiles::toggles::{parse_switch, Opt, Opts, Preset};
