//! worldswitch: a terminal workbench that shows what virtualized I/O costs.
//! This crate is how a profile is made: the hypervisor core on KVM, the
//! device models, the host-side tools and the command line.

pub mod devices;
pub mod vmm;
