//! A running guest and its timeline: the [`Guest`] lives as long as its VM,
//! the [`Workbench`] as long as the run, across restarts of the guest.

pub mod calibration;
mod forecast;
mod guest;
mod result;
mod workbench;

pub use guest::{Base, Guest, News};
pub use result::{counts, ledger, outcome, Outcome, RunResult};
pub use workbench::Workbench;
