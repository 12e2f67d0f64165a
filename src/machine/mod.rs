//! The machine a guest runs on: the hypervisor core on KVM (`vmm`), the
//! device models on its port I/O bus (`devices`), the optimizations'
//! mechanisms, and the host side of the NIC (`vmnet`, chosen and counted
//! by `netrun`). Nothing here draws or prints.

/// Device models and the port I/O bus.
pub mod devices;
/// Guest images: built-in or from a file, with symbols.
pub mod guest_image;
/// The network side of a run: backend choice and frame accounting.
pub mod netrun;
/// The optimizations' mechanisms (the toggles themselves are plain data
/// in `profiles::toggles`).
pub mod optimizations;
/// The hypervisor core on KVM.
pub mod vmm;
/// Where the NIC's frames go: TAP or an in-process sink.
pub mod vmnet;
