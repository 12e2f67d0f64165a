//! The sample guests worldswitch boots: bare-metal ELF64 images with a PVH
//! entry note, built from `runtime/` and `guests/` by this crate's build
//! script and embedded here.

/// One built-in guest.
#[derive(Debug)]
pub struct Guest {
    /// The name `--guest` takes.
    pub name: &'static str,
    /// What the guest does, in one line.
    pub summary: &'static str,
    /// The ELF64 image.
    pub elf: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The built-in guest called `name`.
pub fn find(name: &str) -> Option<&'static Guest> {
    GUESTS.iter().find(|g| g.name == name)
}
