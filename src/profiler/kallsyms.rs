//! Kernel symbols from /proc/kallsyms, for naming the kernel frames of
//! sampled callchains.

use std::io;

/// Text symbols of the running kernel, sorted by address (none: every
/// kernel frame unnamed). The names stay in the text they were read from:
/// a String each would be 120,000 allocations at every start.
#[derive(Default)]
pub struct Kallsyms {
    text: String,
    /// (address, where the name starts and ends in `text`).
    symbols: Vec<(u64, u32, u32)>,
}

impl Kallsyms {
    /// Reads /proc/kallsyms. Addresses read as zero (kptr_restrict) give
    /// an error saying so.
    pub fn load() -> io::Result<Self> {
        Self::parse(std::fs::read_to_string("/proc/kallsyms")?)
    }

    /// Whether [`Kallsyms::load`] will name frames, from the file's first
    /// line only (a whole load takes tens of milliseconds): readable, with
    /// addresses not hidden.
    pub fn check() -> io::Result<()> {
        use std::io::BufRead;
        let mut first = String::new();
        io::BufReader::new(std::fs::File::open("/proc/kallsyms")?).read_line(&mut first)?;
        Self::parse(first).map(drop)
    }

    /// Parses kallsyms text.
    pub fn parse(text: String) -> io::Result<Self> {
        let base = text.as_ptr() as usize;
        let mut symbols: Vec<(u64, u32, u32)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_ascii_whitespace();
                let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                let at = (name.as_ptr() as usize - base) as u32;
                matches!(kind, "t" | "T").then_some((addr, at, at + name.len() as u32))
            })
            .collect();
        if symbols.iter().all(|(a, _, _)| *a == 0) {
            return Err(io::Error::other(
                "kernel symbol addresses are hidden (kptr_restrict): run as root or set kernel.kptr_restrict=0",
            ));
        }
        symbols.sort_unstable_by_key(|s| s.0);
        Ok(Self { text, symbols })
    }

    /// The function containing `addr`.
    pub fn name(&self, addr: u64) -> Option<&str> {
        let i = self.symbols.partition_point(|(a, _, _)| *a <= addr);
        let &(_, from, to) = self.symbols.get(i.checked_sub(1)?)?;
        self.text.get(from as usize..to as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_by_the_preceding_text_symbol() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffff81000100 t vcpu_load\nffffffff81000200 D some_data\nffffffff81000300 T kvm_vcpu_ioctl [kvm]\n".into(),
        )
        .unwrap();
        assert_eq!(k.name(0xffffffff81000150), Some("vcpu_load"));
        assert_eq!(
            k.name(0xffffffff81000250),
            Some("vcpu_load"),
            "data symbols do not count"
        );
        assert_eq!(k.name(0xffffffff81000300), Some("kvm_vcpu_ioctl"));
        assert_eq!(k.name(0x1000), None);
        assert!(Kallsyms::parse("0000000000000000 T _stext\n".into()).is_err());
    }
}
