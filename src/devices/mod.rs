//! Device models and the port I/O bus they sit on. Devices are register state
//! machines; they never touch KVM or the terminal.

pub mod bus;
pub mod guest_ram;
pub mod mailbox;
pub mod path;
pub mod pci;
pub mod pcnet;
pub mod pvnet;
pub mod serial;
