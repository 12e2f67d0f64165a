//! User stacks of a process we did not start, unwound from the copy of its
//! stack each sample carries (`PERF_SAMPLE_STACK_USER`) and its registers,
//! by the DWARF call-frame information in each mapped file's `.eh_frame`
//! (framehop does the unwinding). Debian's QEMU is built without frame
//! pointers, so the kernel's frame-pointer walk of its stacks is junk past
//! the leaf; `.eh_frame` is there in every x86-64 binary because C++
//! exceptions and `pthread_cancel` need it.

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, Module, Unwinder};
use object::{Object, ObjectSection, ObjectSegment};
use std::ops::Range;
use std::time::{Duration, Instant};

/// The deepest stack kept: deeper frames are dropped from the root side.
const MAX_FRAMES: usize = 128;
/// The least time between two readings of the mappings on account of an
/// address they do not hold: on PVM every guest user sample has one.
const REFRESH: Duration = Duration::from_secs(1);

/// A mapping of the target's address space, from `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Its addresses.
    pub range: Range<u64>,
    /// Executable.
    pub exec: bool,
    /// Offset in the file.
    pub offset: u64,
    /// The file, where the mapping is of one (`[vdso]` and the like are
    /// kept with their bracketed names).
    pub path: Option<String>,
}

/// Parses `/proc/PID/maps` text.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (start, end) = f.next()?.split_once('-')?;
            let perms = f.next()?;
            let offset = u64::from_str_radix(f.next()?, 16).ok()?;
            let _dev = f.next()?;
            let _inode = f.next()?;
            let path: Vec<&str> = f.collect();
            Some(Mapping {
                range: u64::from_str_radix(start, 16).ok()?..u64::from_str_radix(end, 16).ok()?,
                exec: perms.as_bytes().get(2) == Some(&b'x'),
                offset,
                path: (!path.is_empty()).then(|| path.join(" ")),
            })
        })
        .collect()
}

/// The unwinder for one process: its executable mappings' unwind tables.
pub struct StackUnwinder {
    pid: i32,
    unwinder: UnwinderX86_64<Vec<u8>>,
    cache: CacheX86_64,
    /// Every mapping, sorted by address, to tell the target's code from
    /// addresses it does not map (on PVM, guest user code).
    mappings: Vec<Mapping>,
    /// Executable mappings looked at, with unwind tables or not.
    tried: Vec<Range<u64>>,
    /// Those whose unwind tables the unwinder has.
    unwound: Vec<Range<u64>>,
    /// When the mappings were last read.
    refreshed: Instant,
}

/// One unwound stack.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UserStack {
    /// Addresses to look up, leaf first: the sampled IP, then each return
    /// address less one (so it falls inside the calling instruction).
    pub lookup: Vec<u64>,
    /// The sampled IP lies in none of the target's mappings.
    pub ip_unmapped: bool,
}

impl StackUnwinder {
    /// Reads the target's mappings and unwind tables.
    pub fn new(pid: i32) -> Self {
        let mut u = Self {
            pid,
            unwinder: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
            mappings: Vec::new(),
            tried: Vec::new(),
            unwound: Vec::new(),
            refreshed: Instant::now(),
        };
        u.refresh();
        u
    }

    /// Rereads the mappings, adding the unwind tables of new executable
    /// mappings (a library loaded since).
    pub fn refresh(&mut self) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)) else {
            return;
        };
        let mut mappings = parse_maps(&text);
        mappings.sort_by_key(|m| m.range.start);
        for m in mappings.iter().filter(|m| m.exec) {
            if self.tried.contains(&m.range) {
                continue;
            }
            if let Some(module) = self.module(m) {
                self.unwinder.add_module(module);
                self.unwound.push(m.range.clone());
            }
            // Tried once: a file without unwind tables stays without.
            self.tried.push(m.range.clone());
        }
        self.mappings = mappings;
        self.refreshed = Instant::now();
    }

    /// The framehop module of an executable file mapping.
    fn module(&self, m: &Mapping) -> Option<Module<Vec<u8>>> {
        let path = m.path.as_deref().filter(|p| p.starts_with('/'))?;
        // The mapped file itself, even if deleted or in another mount
        // namespace (needs CAP_SYS_ADMIN), else its path.
        let data = std::fs::read(format!(
            "/proc/{}/map_files/{:x}-{:x}",
            self.pid, m.range.start, m.range.end
        ))
        .or_else(|_| std::fs::read(format!("/proc/{}/root{path}", self.pid)))
        .ok()?;
        let file = object::File::parse(&*data).ok()?;
        // The load bias: the segment holding this mapping's file offset
        // says which addresses the mapping starts at.
        let seg = file.segments().find(|s| {
            let (off, size) = s.file_range();
            off <= m.offset && m.offset < off + size.max(1)
        })?;
        let (seg_off, _) = seg.file_range();
        let bias = m
            .range
            .start
            .wrapping_sub(seg.address() + (m.offset - seg_off));
        let section = |name: &str| {
            let s = file.section_by_name(name)?;
            Some((s.address()..s.address() + s.size(), s.data().ok()?.to_vec()))
        };
        let (eh_frame_svma, eh_frame) = section(".eh_frame")?;
        let hdr = section(".eh_frame_hdr");
        let text = file
            .section_by_name(".text")
            .map(|s| s.address()..s.address() + s.size());
        let got = file
            .section_by_name(".got")
            .map(|s| s.address()..s.address() + s.size());
        Some(Module::new(
            path.to_string(),
            m.range.clone(),
            bias,
            ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: text,
                got_svma: got,
                eh_frame_svma: Some(eh_frame_svma),
                eh_frame: Some(eh_frame),
                eh_frame_hdr_svma: hdr.as_ref().map(|h| h.0.clone()),
                eh_frame_hdr: hdr.map(|h| h.1),
                ..Default::default()
            },
        ))
    }

    /// Whether `addr` lies in one of the target's mappings.
    pub fn mapped(&self, addr: u64) -> bool {
        let i = self.mappings.partition_point(|m| m.range.start <= addr);
        i > 0 && self.mappings[i - 1].range.contains(&addr)
    }

    /// The name of a mapping that is not a file (`[vdso]`) holding
    /// `addr`: its code has no symbols we read, but its name says what it
    /// is.
    pub fn special(&self, addr: u64) -> Option<&str> {
        let i = self.mappings.partition_point(|m| m.range.start <= addr);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        m.range
            .contains(&addr)
            .then_some(m.path.as_deref()?)
            .filter(|p| p.starts_with('['))
    }

    /// Unwinds a stack from the user registers (`ip`, `sp`, `bp`) and the
    /// copy of the stack from `sp` up. The walk stops at the first address
    /// in code whose unwind tables it lacks: past it framehop could only
    /// guess by frame pointers, which this code may not keep.
    pub fn unwind(&mut self, ip: u64, sp: u64, bp: u64, stack: &[u8]) -> UserStack {
        if !self.mapped(ip) && self.refreshed.elapsed() >= REFRESH {
            // Perhaps code mapped since the last look (a library loaded).
            self.refresh();
        }
        let mut out = UserStack {
            ip_unmapped: !self.mapped(ip),
            ..Default::default()
        };
        if out.ip_unmapped {
            out.lookup.push(ip);
            return out;
        }
        let mut read = |addr: u64| -> Result<u64, ()> {
            let at = addr.checked_sub(sp).ok_or(())? as usize;
            let bytes = stack.get(at..at + 8).ok_or(())?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
        };
        let unwound = &self.unwound;
        let mut frames = self.unwinder.iter_frames(
            ip,
            UnwindRegsX86_64::new(ip, sp, bp),
            &mut self.cache,
            &mut read,
        );
        while let Ok(Some(frame)) = frames.next() {
            let addr = frame.address_for_lookup();
            let known = unwound.iter().any(|r| r.contains(&addr));
            out.lookup.push(addr);
            if !known || out.lookup.len() >= MAX_FRAMES {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse() {
        let text = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 08:01 1234 /usr/bin/qemu-system-x86_64
55d0c0b00000-55d0c1000000 r-xp 00100000 08:01 1234 /usr/bin/qemu-system-x86_64
7ffd1e000000-7ffd1e021000 rw-p 00000000 00:00 0 [stack]
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
";
        let m = parse_maps(text);
        assert_eq!(m.len(), 4);
        assert!(m[1].exec && !m[0].exec);
        assert_eq!(m[1].offset, 0x100000);
        assert_eq!(m[1].range.start, 0x55d0c0b00000);
        assert_eq!(m[2].path.as_deref(), Some("[stack]"));
        assert_eq!(m[3].path, None);
    }

    #[test]
    fn our_own_stack_unwinds_through_eh_frame() {
        // Unwind this very thread from a copy of its stack, as a sample of
        // another process would be: the walk must reach this test's caller
        // frames, not stop at the leaf.
        let mut u = StackUnwinder::new(std::process::id() as i32);
        let (ip, sp, bp, stack) = capture();
        let s = u.unwind(ip, sp, bp, &stack);
        assert!(!s.ip_unmapped);
        assert!(s.lookup.len() >= 4, "{:x?}", s.lookup);
        let syms = crate::profiler::user_symbols::UserSymbols::load().unwrap();
        let names: Vec<&str> = s.lookup.iter().filter_map(|&a| syms.name(a)).collect();
        assert!(
            names
                .iter()
                .any(|n| n.contains("our_own_stack_unwinds_through_eh_frame")),
            "{names:?}"
        );
    }

    /// This function's IP, SP and BP and a copy of 16 KiB of stack above SP.
    #[inline(never)]
    fn capture() -> (u64, u64, u64, Vec<u8>) {
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers into locals; no memory is touched.
        unsafe {
            std::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
            );
        }
        let mut stack = vec![0u8; 16 << 10];
        // The copy stops at the top of the thread's stack mapping.
        let maps = parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let top = maps
            .iter()
            .find(|m| m.range.contains(&sp))
            .map_or(sp, |m| m.range.end);
        let n = ((top - sp) as usize).min(stack.len());
        // SAFETY: [sp, sp + n) lies inside this thread's live stack
        // mapping, which outlives the copy.
        unsafe { std::ptr::copy_nonoverlapping(sp as *const u8, stack.as_mut_ptr(), n) };
        stack.truncate(n);
        (ip, sp, bp, stack)
    }
}
