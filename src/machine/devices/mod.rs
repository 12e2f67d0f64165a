//! Device models and the port I/O bus they sit on. Devices are register state
//! machines; they reach KVM only through their interrupt lines (`irq`), the
//! VMM only through the traits in `host`, and never touch the terminal.

pub mod bus;
pub mod guest_ram;
pub mod host;
pub mod irq;
pub mod mailbox;
pub mod pci;
pub mod pcnet;
pub mod pic;
pub mod pit;
pub mod pvnet;
pub mod serial;
pub mod transmit_stamps;
