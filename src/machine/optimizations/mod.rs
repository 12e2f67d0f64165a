//! The paper's optimizations and their KVM descendants: the mechanisms,
//! together (the coalesced ring KVM logs the Lance's port writes to, the
//! flusher that keeps a logged transmit kick from waiting, and the
//! in-kernel zones the vCPU registers between two entries). What the
//! toggles are (names, keys, meanings, presets, what depends on what,
//! parsing `--preset` and `--opt NAME=on|off`) is plain data in
//! `profiles::toggles`, re-exported here.

pub mod coalesced;
pub mod flusher;
pub mod in_kernel;

pub use profiles::toggles::{parse_switch, Opt, Opts, Preset};
