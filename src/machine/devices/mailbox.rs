//! The guest-to-host ports of the worldswitch guest ABI
//! (`sample-guests/runtime/abi.h`): the mailbox, the shutdown port and the
//! benchmark port.

use super::bus::{le_value, put_le, BusAction, PioDevice};
use super::host::{GuestSays, Listener};
use std::time::Instant;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// IN reads [`MAILBOX_MAGIC`]; OUT hands over a message's guest address.
pub const MAILBOX_PORT: u16 = 0x3000;
/// What a mailbox read returns, so a guest knows worldswitch is its host.
pub const MAILBOX_MAGIC: u32 = 0x424d_5357;
/// OUT ends the run with the value as the guest's status.
pub const SHUTDOWN_PORT: u16 = 0x3004;
/// QEMU's isa-debug-exit port, honoured as a shutdown too.
pub const QEMU_DEBUG_EXIT_PORT: u16 = 0xf4;
/// OUT and IN here are counted; the exit benchmark's target.
pub const BENCH_PORT: u16 = 0x3008;
/// Its last byte, an ioeventfd doorbell (completed in KVM, no exit).
pub const BENCH_DOORBELL: u16 = BENCH_PORT + 3;

const MSG_MAGIC: u32 = 0x4753_534d;
const MSG_COUNTERS: u16 = 1;
const MSG_PHASE_BEGIN: u16 = 2;
const MSG_PHASE_END: u16 = 3;
const MAX_RECORDS: u16 = 64;
const NAME_LEN: usize = 24;
const RECORD_LEN: usize = NAME_LEN + 8;
const HEADER_LEN: usize = 8;

/// The mailbox: reads messages from guest memory and reports them.
pub struct Mailbox {
    memory: GuestMemoryMmap,
    listener: Box<dyn Listener>,
}

impl Mailbox {
    /// A mailbox reading messages from `memory`, telling `listener`.
    pub fn new(memory: GuestMemoryMmap, listener: Box<dyn Listener>) -> Self {
        Self { memory, listener }
    }

    fn receive(&mut self, addr: u64) -> Result<BusAction, String> {
        let mut header = [0u8; HEADER_LEN];
        self.memory
            .read_slice(&mut header, GuestAddress(addr))
            .map_err(|_| format!("message at {addr:#x} is outside guest memory"))?;
        let magic = le_value(&header[0..4]);
        let kind = u16::from_le_bytes([header[4], header[5]]);
        let count = u16::from_le_bytes([header[6], header[7]]);
        if magic != MSG_MAGIC {
            return Err(format!("message at {addr:#x} has bad magic {magic:#x}"));
        }
        if count > MAX_RECORDS {
            return Err(format!("message at {addr:#x} claims {count} records"));
        }
        let mut records = vec![0u8; usize::from(count) * RECORD_LEN];
        self.memory
            .read_slice(&mut records, GuestAddress(addr + HEADER_LEN as u64))
            .map_err(|_| format!("records of message at {addr:#x} run outside guest memory"))?;
        let at = Instant::now();
        let mut action = BusAction::None;
        for rec in records.chunks_exact(RECORD_LEN) {
            let name = record_name(&rec[..NAME_LEN]);
            let value = u64::from_le_bytes(rec[NAME_LEN..].try_into().unwrap());
            match kind {
                MSG_COUNTERS => self.listener.hear(GuestSays::Counter { name, value }),
                MSG_PHASE_BEGIN | MSG_PHASE_END => {
                    let begin = kind == MSG_PHASE_BEGIN;
                    action = if begin {
                        BusAction::PhaseBegin(value)
                    } else {
                        BusAction::PhaseEnd(value)
                    };
                    self.listener.hear(GuestSays::Phase {
                        begin,
                        name,
                        index: value,
                        at,
                    });
                }
                _ => return Err(format!("message at {addr:#x} has unknown kind {kind}")),
            }
        }
        Ok(action)
    }
}

fn record_name(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

impl PioDevice for Mailbox {
    fn name(&self) -> &'static str {
        "mailbox"
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        put_le(data, MAILBOX_MAGIC);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> BusAction {
        match self.receive(u64::from(le_value(data))) {
            Ok(action) => action,
            Err(why) => {
                self.listener.hear(GuestSays::BadMessage(why));
                BusAction::None
            }
        }
    }
}

/// The shutdown port and QEMU's isa-debug-exit: a write ends the run.
pub struct ShutdownPort;

impl PioDevice for ShutdownPort {
    fn name(&self) -> &'static str {
        "shutdown"
    }

    fn group(&self) -> &'static str {
        "mailbox"
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> BusAction {
        BusAction::Shutdown(le_value(data))
    }
}

/// The benchmark port: counts every access; IN returns the OUT count.
#[derive(Debug, Default)]
pub struct BenchPort {
    /// OUTs seen.
    pub outs: u64,
    /// INs seen.
    pub ins: u64,
}

impl PioDevice for BenchPort {
    fn name(&self) -> &'static str {
        "bench"
    }

    fn group(&self) -> &'static str {
        "mailbox"
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        self.ins += 1;
        put_le(data, self.outs as u32);
    }

    fn write(&mut self, _offset: u16, _data: &[u8]) -> BusAction {
        self.outs += 1;
        BusAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    fn message(mem: &GuestMemoryMmap, addr: u64, kind: u16, recs: &[(&str, u64)]) {
        let mut buf = Vec::new();
        buf.extend_from_slice(&MSG_MAGIC.to_le_bytes());
        buf.extend_from_slice(&kind.to_le_bytes());
        buf.extend_from_slice(&(recs.len() as u16).to_le_bytes());
        for (name, value) in recs {
            let mut n = [0u8; NAME_LEN];
            n[..name.len()].copy_from_slice(name.as_bytes());
            buf.extend_from_slice(&n);
            buf.extend_from_slice(&value.to_le_bytes());
        }
        mem.write_slice(&buf, GuestAddress(addr)).unwrap();
    }

    #[test]
    fn magic_and_counters() {
        let mem = memory();
        let (sink, stream) = mpsc::channel();
        let mut mb = Mailbox::new(mem.clone(), Box::new(sink));
        let mut d = [0u8; 4];
        mb.read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), MAILBOX_MAGIC);
        message(
            &mem,
            0x1000,
            MSG_COUNTERS,
            &[("frames", 7), ("bytes", 9000)],
        );
        assert_eq!(mb.write(0, &0x1000u32.to_le_bytes()), BusAction::None);
        let got: Vec<_> = stream.try_iter().collect();
        assert!(matches!(&got[0], GuestSays::Counter { name, value: 7 } if name == "frames"));
        assert!(matches!(&got[1], GuestSays::Counter { name, value: 9000 } if name == "bytes"));
    }

    #[test]
    fn phases_become_bus_actions() {
        let mem = memory();
        let (sink, stream) = mpsc::channel();
        let mut mb = Mailbox::new(mem.clone(), Box::new(sink));
        message(&mem, 0x2000, MSG_PHASE_BEGIN, &[("cpl0_out", 3)]);
        assert_eq!(
            mb.write(0, &0x2000u32.to_le_bytes()),
            BusAction::PhaseBegin(3)
        );
        message(&mem, 0x2000, MSG_PHASE_END, &[("cpl0_out", 3)]);
        assert_eq!(
            mb.write(0, &0x2000u32.to_le_bytes()),
            BusAction::PhaseEnd(3)
        );
        assert_eq!(stream.try_iter().count(), 2);
    }

    #[test]
    fn malformed_messages_are_reported_not_trusted() {
        let mem = memory();
        let (sink, stream) = mpsc::channel();
        let mut mb = Mailbox::new(mem.clone(), Box::new(sink));
        // Outside guest memory, bad magic, too many records, records past the end.
        mb.write(0, &0xffff_fff0u32.to_le_bytes());
        mem.write_slice(&[0u8; 8], GuestAddress(0x100)).unwrap();
        mb.write(0, &0x100u32.to_le_bytes());
        let mut hdr = MSG_MAGIC.to_le_bytes().to_vec();
        hdr.extend_from_slice(&1u16.to_le_bytes());
        hdr.extend_from_slice(&65u16.to_le_bytes());
        mem.write_slice(&hdr, GuestAddress(0x200)).unwrap();
        mb.write(0, &0x200u32.to_le_bytes());
        hdr.truncate(6);
        hdr.extend_from_slice(&2u16.to_le_bytes());
        mem.write_slice(&hdr, GuestAddress(0xfff8)).unwrap();
        mb.write(0, &0xfff8u32.to_le_bytes());
        let bad: Vec<_> = stream
            .try_iter()
            .map(|e| match e {
                GuestSays::BadMessage(why) => why,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(bad[0].contains("outside guest memory"));
        assert!(bad[1].contains("bad magic"));
        assert!(bad[2].contains("65 records"));
        assert!(bad[3].contains("run outside"));
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(record_name(b"ok\0junk"), "ok");
        assert_eq!(record_name(b"a\x01b c"), "a?b?c");
    }

    #[test]
    fn shutdown_and_bench() {
        assert_eq!(
            ShutdownPort.write(0, &7u32.to_le_bytes()),
            BusAction::Shutdown(7)
        );
        let mut b = BenchPort::default();
        b.write(0, &[0]);
        b.write(0, &[0]);
        let mut d = [0u8; 1];
        b.read(0, &mut d);
        assert_eq!((b.outs, b.ins, d[0]), (2, 1, 2));
    }
}
