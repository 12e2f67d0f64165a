//! What a worldswitch profile is: the data model and its statistics, with no
//! KVM. Everything here is plain data and pure functions.
#![forbid(unsafe_code)]

pub mod attribution;
pub mod firefox;
pub mod flame;
pub mod flametree;
pub mod inputs;
pub mod model;
pub mod profile;
pub mod rules;
pub mod snapshot;
pub mod speedscope;
pub mod stats;
pub mod table;
pub mod taxonomy;
pub mod timeline;
pub mod toggles;
pub mod transmit_path;
pub mod vmm_rules;
