//! Booting a PVH guest: load the ELF64 image, write `hvm_start_info`, the
//! memory map and the command line, and set up the vCPU as PVH prescribes
//! (32-bit flat protected mode, paging off, `rbx` = start info).

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_start_info};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use std::io::Cursor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Guest images load at or above 1 MiB.
pub const HIMEM_START: u64 = 0x10_0000;
const BOOT_GDT: u64 = 0x500;
const START_INFO: u64 = 0x6000;
const MEMMAP: u64 = 0x7000;
const CMDLINE: u64 = 0x2_0000;
/// The longest command line a guest gets, with its NUL.
pub const CMDLINE_MAX: usize = 4096;
const EBDA_START: u64 = 0x9_fc00;
const PVH_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// Why a guest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// linux-loader rejected the image.
    #[error(
        "the guest is not a loadable ELF64 image ({0}); build it as a static ELF64 linked at 1 MiB"
    )]
    NotElf(linux_loader::loader::Error),
    /// No XEN_ELFNOTE_PHYS32_ENTRY note.
    #[error("the guest ELF has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); add one pointing at its 32-bit entry")]
    NoPvhNote,
    /// The command line does not fit.
    #[error("the guest command line is {0} bytes; the limit is {max}", max = CMDLINE_MAX - 1)]
    CmdlineTooLong(usize),
    /// Writing boot data failed.
    #[error("could not write the boot parameters into guest memory: {0}")]
    BootParams(String),
}

/// Where the guest starts.
#[derive(Debug, Clone, Copy)]
pub struct BootInfo {
    /// The PVH 32-bit entry point.
    pub entry: u64,
    /// The guest-physical address of `hvm_start_info`.
    pub start_info: u64,
    /// The end of the loaded image.
    pub image_end: u64,
}

/// Loads `image` into `mem` and writes the PVH boot data with `cmdline`.
pub fn load(mem: &GuestMemoryMmap, image: &[u8], cmdline: &str) -> Result<BootInfo, BootError> {
    if cmdline.len() >= CMDLINE_MAX {
        return Err(BootError::CmdlineTooLong(cmdline.len()));
    }
    let loaded = Elf::load(
        mem,
        None,
        &mut Cursor::new(image),
        Some(GuestAddress(HIMEM_START)),
    )
    .map_err(BootError::NotElf)?;
    let entry = match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) => addr.raw_value(),
        _ => return Err(BootError::NoPvhNote),
    };

    let mut line = cmdline.as_bytes().to_vec();
    line.push(0);
    mem.write_slice(&line, GuestAddress(CMDLINE))
        .map_err(|e| BootError::BootParams(e.to_string()))?;

    let end = mem.last_addr().raw_value() + 1;
    let memmap = [
        entry_of(0, EBDA_START, E820_RAM),
        entry_of(EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
        entry_of(HIMEM_START, end - HIMEM_START, E820_RAM),
    ];
    let start_info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE,
        memmap_paddr: MEMMAP,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let mut params = BootParams::new(&start_info, GuestAddress(START_INFO));
    params.set_sections(&memmap, GuestAddress(MEMMAP));
    PvhBootConfigurator::write_bootparams(&params, mem)
        .map_err(|e| BootError::BootParams(e.to_string()))?;

    // A boot GDT matching the segments set below, for a guest that reloads
    // a segment before loading its own GDT.
    let gdt: [u64; 4] = [
        0,
        0x00cf_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x0000_8b00_0000_0067,
    ];
    for (i, d) in gdt.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(BOOT_GDT + 8 * i as u64))
            .map_err(|e| BootError::BootParams(e.to_string()))?;
    }

    Ok(BootInfo {
        entry,
        start_info: START_INFO,
        image_end: loaded.kernel_end,
    })
}

fn entry_of(addr: u64, size: u64, type_: u32) -> hvm_memmap_table_entry {
    hvm_memmap_table_entry {
        addr,
        size,
        type_,
        reserved: 0,
    }
}

fn segment(selector: u16, type_: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// The PVH entry state of the special registers, based on `sregs`.
pub fn pvh_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    sregs.cs = segment(0x08, 0xb);
    let data = segment(0x10, 0x3);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment {
        selector: 0x18,
        limit: 0x67,
        type_: 0xb,
        s: 0,
        db: 0,
        g: 0,
        ..segment(0x18, 0xb)
    };
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = 0x11; // PE | ET
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    sregs
}

/// The PVH entry state of the general registers.
pub fn pvh_regs(boot: &BootInfo) -> kvm_regs {
    kvm_regs {
        rip: boot.entry,
        rbx: boot.start_info,
        rflags: 0x2,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap()
    }

    #[test]
    fn loads_a_sample_guest_and_writes_start_info() {
        let mem = memory();
        let hello = sample_guests::find("hello").unwrap();
        let boot = load(&mem, hello.elf, "status=3 x=y").unwrap();
        assert_eq!(boot.entry, HIMEM_START);
        let si: hvm_start_info = mem.read_obj(GuestAddress(START_INFO)).unwrap();
        assert_eq!(si.magic, PVH_MAGIC);
        assert_eq!(si.memmap_entries, 3);
        let mut line = [0u8; 13];
        mem.read_slice(&mut line, GuestAddress(si.cmdline_paddr))
            .unwrap();
        assert_eq!(&line, b"status=3 x=y\0");
        let last: hvm_memmap_table_entry = mem.read_obj(GuestAddress(MEMMAP + 2 * 24)).unwrap();
        assert_eq!(last.addr + last.size, 16 << 20);
        let regs = pvh_regs(&boot);
        assert_eq!((regs.rip, regs.rbx), (HIMEM_START, START_INFO));
    }

    #[test]
    fn rejects_what_is_not_a_pvh_elf64() {
        let mem = memory();
        assert!(matches!(
            load(&mem, b"#!/bin/sh\necho not a guest\n", ""),
            Err(BootError::NotElf(_))
        ));
        // A real ELF64 without the note: strip it from a sample guest.
        let mut elf = sample_guests::find("hello").unwrap().elf.to_vec();
        let pos = elf.windows(4).position(|w| w == b"Xen\0").unwrap();
        elf[pos..pos + 4].copy_from_slice(b"Nox\0");
        assert!(matches!(load(&mem, &elf, ""), Err(BootError::NoPvhNote)));
        let long = "x".repeat(CMDLINE_MAX);
        let hello = sample_guests::find("hello").unwrap();
        assert!(matches!(
            load(&mem, hello.elf, &long),
            Err(BootError::CmdlineTooLong(_))
        ));
    }
}
