//! The hypervisor core on KVM: VM construction, PVH boot, the vCPU thread and
//! its state machine, exit accounting and the events it reports.

pub mod boot;
pub mod dispatch;
pub mod events;
pub mod exits;
pub mod flavour;
pub mod floor;
pub mod kick;
pub mod phases;
pub mod vcpu;
pub mod vm;
