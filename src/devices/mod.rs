//! Device models and the port I/O bus they sit on. Devices are register state
//! machines; they never touch KVM or the terminal.

pub mod bus;
pub mod mailbox;
pub mod pci;
pub mod serial;
