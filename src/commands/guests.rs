//! `worldswitch guests`: list the built-in guests or export their ELF files.

use crate::machine::guest_image::GuestImage;
use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// Lists the built-in guests, or writes them to `export` as NAME.elf.
pub fn command(export: Option<&Path>, out: &mut dyn Write) -> anyhow::Result<()> {
    if let Some(dir) = export {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create {}: choose a directory you can write to",
                dir.display()
            )
        })?;
        for g in sample_guests::GUESTS {
            let path = dir.join(format!("{}.elf", g.name));
            std::fs::write(&path, g.elf).with_context(|| {
                format!(
                    "cannot write {}: choose a directory you can write to",
                    path.display()
                )
            })?;
            writeln!(out, "{}", path.display())?;
        }
        return Ok(());
    }
    for g in sample_guests::GUESTS {
        let image = GuestImage::from_bytes(g.name.to_string(), g.elf.to_vec());
        writeln!(
            out,
            "{:<12} {:>7} bytes  build {}  {}",
            g.name,
            g.elf.len(),
            image.build_id.as_deref().map_or("-", |b| &b[..12]),
            g.summary
        )?;
    }
    Ok(())
}
