//! What the device models need from the VMM, as small traits the VMM
//! implements: where what the guest says goes (console lines, mailbox
//! messages) and the writes KVM completed in the kernel for a device to
//! apply. No device model imports the VMM.

use std::time::Instant;

/// What the guest says through a device.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestSays {
    /// A console line (or a piece of a long one).
    Console(String),
    /// A counter the guest reports through the mailbox (last value wins).
    Counter {
        /// Its name.
        name: String,
        /// Its value.
        value: u64,
    },
    /// A phase the guest begins or ends, stamped when the host saw it.
    Phase {
        /// Begins (true) or ends.
        begin: bool,
        /// The phase's name.
        name: String,
        /// The phase's index.
        index: u64,
        /// When the host saw the message.
        at: Instant,
    },
    /// A malformed mailbox message, ignored, and why.
    BadMessage(String),
}

/// Where a device sends what the guest says; sending never fails the
/// device, since a listener that has gone away must not stop the guest.
pub trait Listener: Send {
    /// Takes one message.
    fn hear(&self, what: GuestSays);
}

/// A plain channel listens too (the device models' tests use one).
impl Listener for std::sync::mpsc::Sender<GuestSays> {
    fn hear(&self, what: GuestSays) {
        let _ = self.send(what);
    }
}

/// Port writes KVM completed in the kernel and logged instead of exiting,
/// for the device that owns the ports to apply in order (the coalesced
/// ring). Only one thread drains at a time: the device's lock holder.
pub trait WriteLog: Send + Sync {
    /// Whether no write waits (any thread may look).
    fn is_empty(&self) -> bool;
    /// Hands every logged write, oldest first, to `apply` as (port,
    /// bytes); returns how many there were.
    fn drain_into(&self, apply: &mut dyn FnMut(u16, &[u8])) -> usize;
}
