//! Guest images: a built-in sample guest or an ELF file, with its build ID
//! and symbols for naming guest addresses.

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use std::path::Path;

/// Why `--guest` could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// Neither a built-in name nor a file.
    #[error("there is no built-in guest called '{0}' and no file at that path; 'worldswitch guests' lists the built-in ones")]
    NotFound(String),
    /// The file exists but cannot be read.
    #[error("cannot read the guest file {0}: {1}")]
    Unreadable(String, std::io::Error),
}

/// A named guest function, for symbolizing addresses.
#[derive(Debug, Clone)]
struct Symbol {
    address: u64,
    size: u64,
    name: String,
}

/// A guest image ready to boot.
#[derive(Debug, Clone)]
pub struct GuestImage {
    /// The built-in name, or the path it came from.
    pub name: String,
    /// The ELF bytes.
    pub elf: Vec<u8>,
    /// The GNU build ID, hex, when the image has one.
    pub build_id: Option<String>,
    symbols: Vec<Symbol>,
}

impl GuestImage {
    /// The built-in guest `spec`, or else the file at path `spec`.
    pub fn resolve(spec: &str) -> Result<Self, GuestError> {
        if let Some(g) = sample_guests::find(spec) {
            return Ok(Self::from_bytes(g.name.to_string(), g.elf.to_vec()));
        }
        let path = Path::new(spec);
        if !path.exists() {
            return Err(GuestError::NotFound(spec.to_string()));
        }
        let elf = std::fs::read(path).map_err(|e| GuestError::Unreadable(spec.to_string(), e))?;
        Ok(Self::from_bytes(spec.to_string(), elf))
    }

    /// An image from bytes; a file that is not ELF gets no symbols (booting
    /// it reports why).
    pub fn from_bytes(name: String, elf: Vec<u8>) -> Self {
        let (build_id, symbols) = match object::File::parse(&*elf) {
            Ok(file) => {
                let build_id = file
                    .build_id()
                    .ok()
                    .flatten()
                    .map(|id| id.iter().map(|b| format!("{b:02x}")).collect());
                let mut symbols: Vec<Symbol> = file
                    .symbols()
                    // Functions, and untyped assembly labels, in code sections.
                    .filter(|s| {
                        matches!(
                            s.kind(),
                            SymbolKind::Text | SymbolKind::Label | SymbolKind::Unknown
                        )
                    })
                    .filter(|s| {
                        s.section_index()
                            .and_then(|i| file.section_by_index(i).ok())
                            .is_some_and(|sec| sec.kind() == object::SectionKind::Text)
                    })
                    .filter_map(|s| {
                        Some(Symbol {
                            address: s.address(),
                            size: s.size(),
                            name: s.name().ok()?.to_string(),
                        })
                    })
                    .filter(|s| !s.name.is_empty())
                    .collect();
                symbols.sort_by_key(|s| s.address);
                (build_id, symbols)
            }
            Err(_) => (None, Vec::new()),
        };
        Self {
            name,
            elf,
            build_id,
            symbols,
        }
    }

    /// `function+0xoffset` for a guest address, when a symbol covers it.
    pub fn symbolize(&self, addr: u64) -> Option<String> {
        let i = self.symbols.partition_point(|s| s.address <= addr);
        let s = self.symbols.get(i.checked_sub(1)?)?;
        let off = addr - s.address;
        // Sized symbols must contain the address; labels get 4 KiB of reach.
        let reach = if s.size > 0 { s.size } else { 0x1000 };
        (off < reach).then(|| format!("{}+{off:#x}", s.name))
    }

    /// Sections of code that runs at CPL0: every executable section but
    /// `.utext` (CPL3 code), as (name, address, bytes).
    pub fn cpl0_code(&self) -> Vec<(String, u64, Vec<u8>)> {
        let Ok(file) = object::File::parse(&*self.elf) else {
            return Vec::new();
        };
        file.sections()
            .filter(|s| s.kind() == object::SectionKind::Text)
            .filter(|s| s.name().is_ok_and(|n| n != ".utext"))
            .filter_map(|s| {
                Some((
                    s.name().ok()?.to_string(),
                    s.address(),
                    s.data().ok()?.to_vec(),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_resolve_with_build_id_and_symbols() {
        let g = GuestImage::resolve("hello").unwrap();
        assert_eq!(g.build_id.as_deref().map(str::len), Some(40));
        let sym = g.symbolize(0x100000).unwrap();
        assert!(sym.starts_with("_start32+0x0"), "{sym}");
        assert!(g.symbolize(0x10).is_none());
        let sections: Vec<String> = g.cpl0_code().into_iter().map(|s| s.0).collect();
        assert_eq!(sections, vec![".boot32".to_string(), ".text".to_string()]);
        let trap = g.symbolize(g.symbols.iter().find(|s| s.name == "trap").unwrap().address + 5);
        assert_eq!(trap.as_deref(), Some("trap+0x5"));
    }

    #[test]
    fn unknown_names_and_unreadable_files_say_what_to_do() {
        let e = GuestImage::resolve("no-such-guest").unwrap_err();
        assert!(e.to_string().contains("worldswitch guests"));
        let e = GuestImage::resolve("/proc/self/mem").unwrap_err();
        assert!(matches!(e, GuestError::Unreadable(..)));
    }
}
