//! Kernel symbols from /proc/kallsyms, for naming the kernel frames of
//! sampled callchains.

use std::io;

/// Text symbols of the running kernel, sorted by address.
pub struct Kallsyms {
    symbols: Vec<(u64, String)>,
}

impl Kallsyms {
    /// Reads /proc/kallsyms. Addresses read as zero (kptr_restrict) give
    /// an error saying so.
    pub fn load() -> io::Result<Self> {
        Self::parse(&std::fs::read_to_string("/proc/kallsyms")?)
    }

    /// Parses kallsyms text.
    pub fn parse(text: &str) -> io::Result<Self> {
        let mut symbols: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                matches!(kind, "t" | "T").then(|| (addr, name.to_string()))
            })
            .collect();
        if symbols.iter().all(|(a, _)| *a == 0) {
            return Err(io::Error::other(
                "kernel symbol addresses are hidden (kptr_restrict): run as root or set kernel.kptr_restrict=0",
            ));
        }
        symbols.sort_by_key(|s| s.0);
        Ok(Self { symbols })
    }

    /// The function containing `addr`.
    pub fn name(&self, addr: u64) -> Option<&str> {
        let i = self.symbols.partition_point(|(a, _)| *a <= addr);
        self.symbols.get(i.checked_sub(1)?).map(|(_, n)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_by_the_preceding_text_symbol() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffff81000100 t vcpu_load\nffffffff81000200 D some_data\nffffffff81000300 T kvm_vcpu_ioctl [kvm]\n",
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
        assert!(Kallsyms::parse("0000000000000000 T _stext\n").is_err());
    }
}
