//! Function names in a process we did not start, by blazesym: its ELF
//! symbol tables, `.dynsym` too, so a stripped binary that exports its
//! functions (Debian's QEMU exports about 9,500) is named where it can be.
//! Names are cached by address: a VMM's hot paths are a few hundred
//! addresses, and blazesym reads the process's mappings on every call.

use blazesym::symbolize::source::{Process, Source};
use blazesym::symbolize::{Input, Symbolizer};
use blazesym::Pid;
use std::collections::HashMap;
use std::sync::Arc;

/// Names of the target's code addresses.
pub struct TargetSymbols {
    pid: u32,
    symbolizer: Symbolizer,
    names: HashMap<u64, Option<Arc<str>>>,
}

impl TargetSymbols {
    /// A symbolizer for process `pid`.
    pub fn new(pid: i32) -> Self {
        Self {
            pid: pid as u32,
            symbolizer: Symbolizer::new(),
            names: HashMap::new(),
        }
    }

    /// Looks up every address of `addrs` not yet named, in one call.
    pub fn resolve(&mut self, addrs: &[u64]) {
        let mut new: Vec<u64> = addrs
            .iter()
            .copied()
            .filter(|a| !self.names.contains_key(a))
            .collect();
        if new.is_empty() {
            return;
        }
        new.sort_unstable();
        new.dedup();
        let mut process = Process::new(Pid::from(self.pid));
        // No debug info is read (the crate is built without DWARF), and
        // no perf map: a VMM has no JIT to name.
        process.perf_map = false;
        let found = self
            .symbolizer
            .symbolize(&Source::Process(process), Input::AbsAddr(&new));
        match found {
            Ok(found) => {
                for (addr, sym) in new.iter().zip(found) {
                    let name = sym.as_sym().map(|s| Arc::from(&*s.name));
                    self.names.insert(*addr, name);
                }
            }
            // The process is gone or its maps unreadable: the addresses
            // stay unnamed.
            Err(_) => {
                for a in new {
                    self.names.insert(a, None);
                }
            }
        }
    }

    /// The function at `addr`, once [`resolve`](Self::resolve)d.
    pub fn name(&self, addr: u64) -> Option<&Arc<str>> {
        self.names.get(&addr).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_to_find() -> u64 {
        a_function_to_find as *const () as u64
    }

    #[test]
    fn names_functions_of_a_process_by_pid() {
        let mut s = TargetSymbols::new(std::process::id() as i32);
        let here = a_function_to_find();
        s.resolve(&[here + 1, 8]);
        let name = s.name(here + 1).expect("our own function is named");
        assert!(name.contains("a_function_to_find"), "{name}");
        assert!(s.name(8).is_none(), "an unmapped address has no name");
    }
}
