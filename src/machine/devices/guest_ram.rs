//! Guest memory as device models see it for DMA: bounds-checked reads and
//! writes at guest-physical addresses, behind a trait so tests can use a
//! recording stand-in.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// A DMA access that falls outside guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DMA of {len} bytes at {addr:#x} falls outside guest memory")]
pub struct OutOfRange {
    /// Start of the access.
    pub addr: u64,
    /// Its length.
    pub len: usize,
}

/// Guest-physical memory for device DMA.
pub trait GuestRam {
    /// Fills `buf` from guest memory at `addr`, or touches nothing.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), OutOfRange>;
    /// Writes `buf` to guest memory at `addr`, or touches nothing.
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), OutOfRange>;
}

impl GuestRam for GuestMemoryMmap {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let err = OutOfRange {
            addr,
            len: buf.len(),
        };
        // Check the whole range first: a failed access must touch nothing.
        if !self.check_range(GuestAddress(addr), buf.len()) {
            return Err(err);
        }
        self.read_slice(buf, GuestAddress(addr)).map_err(|_| err)
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), OutOfRange> {
        let err = OutOfRange {
            addr,
            len: buf.len(),
        };
        // Check the whole range first: a failed access must touch nothing.
        if !self.check_range(GuestAddress(addr), buf.len()) {
            return Err(err);
        }
        self.write_slice(buf, GuestAddress(addr)).map_err(|_| err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_past_the_end_touch_nothing() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        GuestRam::write(&mem, 0xff0, &[1; 16]).unwrap();
        assert!(GuestRam::write(&mem, 0xff8, &[2; 16]).is_err());
        let mut buf = [0u8; 16];
        GuestRam::read(&mem, 0xff0, &mut buf).unwrap();
        assert_eq!(buf, [1; 16], "a failed write must not write a prefix");
        assert!(GuestRam::read(&mem, u64::MAX - 4, &mut buf).is_err());
    }
}
