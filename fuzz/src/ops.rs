//! How fuzz inputs drive the devices: the first byte picks the device, the
//! rest decode into operations on it. Each run starts from fresh devices
//! and zeroed guest memory, so a saved input replays exactly. The seeds are
//! written by the same encoder the decoder mirrors.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::mpsc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use worldswitch::machine::devices::bus::{BusAction, PioDevice};
use worldswitch::machine::devices::host::GuestSays;
use worldswitch::machine::devices::irq::EdgeIrq;
use worldswitch::machine::devices::mailbox::Mailbox;
use worldswitch::machine::devices::pci::PciConfigSpace;
use worldswitch::machine::devices::pcnet::Pcnet;
use worldswitch::machine::devices::pic::Pic;
use worldswitch::machine::devices::serial::{ConsoleSink, SerialDevice};
use worldswitch::machine::vmm::vm::nic_function;

/// Guest memory for DMA: 64 KiB, so most 16-bit addresses land in it and
/// the rest test the bounds.
const RAM: usize = 0x10000;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.i)?;
        self.i += 1;
        Some(v)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from(self.u16()?) | u32::from(self.u16()?) << 16)
    }
    fn width(&mut self) -> Option<usize> {
        Some([1, 2, 4][usize::from(self.u8()? % 3)])
    }
}

/// What stays between runs: guest memory and the event channel.
pub struct Targets {
    ram: GuestMemoryMmap,
    sink: mpsc::Sender<GuestSays>,
    stream: mpsc::Receiver<GuestSays>,
}

impl Targets {
    /// Memory and a channel.
    pub fn new() -> Self {
        let (sink, stream) = mpsc::channel();
        Targets {
            ram: GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).expect("64 KiB"),
            sink,
            stream,
        }
    }

    /// Runs one input; returns a signature of the state it reached.
    pub fn run(&mut self, input: &[u8]) -> u64 {
        let _ = self.ram.write_slice(&[0u8; RAM], GuestAddress(0));
        let Some((&which, rest)) = input.split_first() else {
            return 0;
        };
        let mut c = Cursor { b: rest, i: 0 };
        let mut h = DefaultHasher::new();
        (which % 5).hash(&mut h);
        match which % 5 {
            0 => self.pcnet(&mut c, &mut h),
            1 => pio(
                &mut PciConfigSpace::new(&[nic_function()]),
                8,
                &mut c,
                &mut h,
            ),
            2 => {
                let irq = EdgeIrq::Irqfd(EventFd::new(libc_nonblock()).expect("an eventfd"));
                let mut serial =
                    SerialDevice::new(irq, ConsoleSink::new(Box::new(self.sink.clone())));
                pio(&mut serial, 8, &mut c, &mut h);
            }
            3 => pio(&mut Controller::default(), 8, &mut c, &mut h),
            _ => {
                let mut mailbox = Mailbox::new(self.ram.clone(), Box::new(self.sink.clone()));
                self.mailbox(&mut mailbox, &mut c);
            }
        }
        // Which kinds of thing the devices said; the channel must not grow.
        let mut kinds = std::collections::BTreeSet::new();
        while let Ok(e) = self.stream.try_recv() {
            kinds.insert(match e {
                GuestSays::BadMessage(why) => format!("bad {}", shape(&why).len() / 16),
                other => format!("{:?}", std::mem::discriminant(&other)),
            });
        }
        kinds.hash(&mut h);
        h.finish()
    }

    fn poke(&self, c: &mut Cursor) -> Option<()> {
        let addr = c.u16()?;
        let n = usize::from(c.u8()? % 17);
        let bytes: Vec<u8> = (0..n).filter_map(|_| c.u8()).collect();
        let _ = self.ram.write_slice(&bytes, GuestAddress(u64::from(addr)));
        Some(())
    }

    fn pcnet(&self, c: &mut Cursor, h: &mut DefaultHasher) {
        let mut chip = Pcnet::new(MAC);
        let ram = &self.ram;
        let mut step = || -> Option<()> {
            match c.u8()? % 7 {
                0 => {
                    let (off, w, v) = (u16::from(c.u8()? % 0x20), c.width()?, c.u32()?);
                    chip.write_port(off, &v.to_le_bytes()[..w], ram);
                }
                1 => {
                    let (off, w) = (u16::from(c.u8()? % 0x20), c.width()?);
                    let mut d = [0u8; 4];
                    chip.read_port(off, &mut d[..w]);
                }
                2 => self.poke(c)?,
                3 => {
                    let accept = c.u8()? & 1 == 0;
                    if chip.tx_demanded() {
                        chip.transmit(ram, &mut |frame| {
                            assert!(frame.len() <= 0x10000, "a frame of {} bytes", frame.len());
                            accept
                        });
                    }
                }
                4 => {
                    let (len, fill) = (usize::from(c.u16()? % 2048), c.u8()?);
                    chip.receive(ram, &vec![fill; len]);
                }
                5 => chip.write_csr(usize::from(c.u8()? % 128), c.u16()?, ram),
                _ => chip.write_bcr(usize::from(c.u8()? % 64), c.u16()?),
            }
            chip.irq_level();
            Some(())
        };
        while step().is_some() {}
        shape(&format!("{:?}{:?}", chip.driver_errors(), chip.drops())).hash(h);
        (chip.csr(0) >> 8).hash(h);
        chip.irq_level().hash(h);
    }

    fn mailbox(&self, m: &mut Mailbox, c: &mut Cursor) {
        let mut step = || -> Option<()> {
            match c.u8()? % 3 {
                0 => self.poke(c)?,
                1 => {
                    let (off, w, v) = (u16::from(c.u8()? % 4), c.width()?, c.u32()?);
                    let _ = m.write(off, &v.to_le_bytes()[..w]);
                }
                _ => {
                    let (off, w) = (u16::from(c.u8()? % 4), c.width()?);
                    let mut d = [0u8; 4];
                    m.read(off, &mut d[..w]);
                }
            }
            Some(())
        };
        while step().is_some() {}
    }
}

/// A Debug rendering with every number reduced to zero or not: which
/// counters moved, not by how much.
fn shape(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut digits = String::new();
    for ch in debug.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        if !digits.is_empty() {
            out.push(if digits.bytes().all(|b| b == b'0') {
                '0'
            } else {
                'N'
            });
            digits.clear();
        }
        out.push(ch);
    }
    out.pop(); // the sentinel
    out
}

/// Reads and writes at offsets below `len`; the state it ends in (every
/// register read once, side effects and all) goes into `h`.
fn pio(dev: &mut dyn PioDevice, len: u8, c: &mut Cursor, h: &mut DefaultHasher) {
    let mut step = || -> Option<()> {
        let (write, off, w) = (c.u8()? & 1 == 0, u16::from(c.u8()? % len), c.width()?);
        if write {
            let v = c.u32()?;
            let _ = dev.write(off, &v.to_le_bytes()[..w]);
        } else {
            let mut d = [0u8; 4];
            dev.read(off, &mut d[..w]);
        }
        Some(())
    };
    while step().is_some() {}
    for off in 0..u16::from(len) {
        let mut d = [0u8; 1];
        dev.read(off, &mut d);
        // Which registers are set, not to what: values would make every
        // input a new state.
        (d[0] != 0).hash(h);
    }
}

/// The user-space 8259 pair as one device: offsets 0-5 are its ports
/// (0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1), a write at 6 drives a line (low
/// 4 bits the line, bit 4 the level), a read at 7 is the CPU's acknowledge.
#[derive(Default)]
struct Controller(Pic);

const PIC_PORTS: [u16; 6] = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1];

impl PioDevice for Controller {
    fn name(&self) -> &'static str {
        "pic"
    }
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data[0] = match PIC_PORTS.get(usize::from(offset)) {
            Some(&port) => self.0.read(port),
            None if self.0.pending() => self.0.acknowledge(),
            None => 0,
        };
    }
    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        match PIC_PORTS.get(usize::from(offset)) {
            Some(&port) => self.0.write(port, data[0]),
            None => self.0.set_irq(u32::from(data[0] & 15), data[0] & 16 != 0),
        }
        BusAction::None
    }
}

fn libc_nonblock() -> i32 {
    // EFD_NONBLOCK: the serial device must never block the fuzzer.
    0o4000
}

/// Builds inputs op by op, mirroring the decoder.
struct Enc(Vec<u8>);

impl Enc {
    fn new(target: u8) -> Self {
        Enc(vec![target])
    }
    fn out(&mut self, off: u8, w: u8, v: u32) -> &mut Self {
        self.0.extend([0, off, w]);
        self.0.extend(v.to_le_bytes());
        self
    }
    fn inp(&mut self, off: u8, w: u8) -> &mut Self {
        self.0.extend([1, off, w]);
        self
    }
    fn poke(&mut self, addr: u16, bytes: &[u8]) -> &mut Self {
        for (i, chunk) in bytes.chunks(16).enumerate() {
            self.0.push(2);
            self.0.extend((addr + 16 * i as u16).to_le_bytes());
            self.0.push(chunk.len() as u8);
            self.0.extend(chunk);
        }
        self
    }
    fn csr(&mut self, n: u8, v: u16) -> &mut Self {
        self.0.extend([5, n]);
        self.0.extend(v.to_le_bytes());
        self
    }
    fn bcr(&mut self, n: u8, v: u16) -> &mut Self {
        self.0.extend([6, n]);
        self.0.extend(v.to_le_bytes());
        self
    }
}

/// A driver's bring-up and one transmit and receive, in 32-bit (style 2)
/// or 16-bit descriptors.
fn pcnet_seed(style2: bool) -> Vec<u8> {
    let mut e = Enc::new(0);
    e.inp(0x14, 1).out(0x12, 1, 0).inp(0x10, 1); // reset, CSR0
    if style2 {
        e.bcr(20, 2);
    }
    let mut ib = vec![0u8, 0, 0x40, 0x40];
    ib.extend(MAC);
    ib.extend([0, 0]);
    ib.extend([0xff; 8]);
    ib.extend(0x2000u32.to_le_bytes());
    ib.extend(0x3000u32.to_le_bytes());
    e.poke(0x1000, &ib).csr(1, 0x1000).csr(2, 0).csr(0, 0x41);
    // A receive descriptor owned by the chip, a transmit one with a frame.
    let rx: Vec<u8> = [0x5000u32, 0x8000_f000 | (0x1000 - 1536) as u32, 0, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let tx: Vec<u8> = [0x4000u32, 0x8300_f000 | (0x1000 - 60), 0, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    e.poke(0x2000, &rx)
        .poke(0x3000, &tx)
        .poke(0x4000, &[0xff; 60]);
    e.csr(0, 0x42).csr(0, 0x48);
    e.0.extend([3, 0]); // transmit, accepted
    e.0.extend([4, 64, 0, 0xab]); // receive 64 bytes
    e.out(0x12, 1, 0).inp(0x10, 1).out(0x10, 1, 0x7f00);
    e.0
}

/// Writes the seed corpus to `dir`; returns how many.
pub fn write_seeds(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut pci = Enc::new(1);
    pci.out(0, 2, 0x8000_1810).out(4, 2, 0xffff_ffff).inp(4, 2);
    pci.out(0, 2, 0x8000_1800).inp(4, 2).inp(6, 1);
    let mut serial = Enc::new(2);
    serial
        .out(3, 0, 0x80)
        .out(0, 0, 1)
        .out(3, 0, 3)
        .out(1, 0, 1);
    serial
        .out(0, 0, u32::from(b'h'))
        .out(0, 0, u32::from(b'\n'))
        .inp(5, 0)
        .inp(2, 0);
    let mut mailbox = Enc::new(4);
    mailbox
        .inp(0, 2)
        .poke(0x800, b"WSMB\x01\x00\x00\x00sent\x00\x00\x00\x00\x07");
    mailbox.out(0, 2, 0x800);
    let mut pic = Enc::new(3);
    for (port, v) in [(0, 0x11), (1, 32), (1, 4), (1, 1), (1, 0xfa), (6, 0x10)] {
        pic.out(port, 0, v);
    }
    pic.inp(7, 0).out(0, 0, 0x20);
    let seeds = [
        ("pcnet-style2", pcnet_seed(true)),
        ("pcnet-style0", pcnet_seed(false)),
        ("pci-bar-sizing", pci.0),
        ("serial-hello", serial.0),
        ("mailbox-message", mailbox.0),
        ("pic-timer-tick", pic.0),
    ];
    for (name, bytes) in &seeds {
        std::fs::write(dir.join(format!("{name}.bin")), bytes)?;
    }
    Ok(seeds.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pcnet_seed_reaches_a_transmit() {
        let mut t = Targets::new();
        let a = t.run(&pcnet_seed(true));
        assert_eq!(a, t.run(&pcnet_seed(true)), "runs replay exactly");
        assert_ne!(a, t.run(&pcnet_seed(false)));
        assert_ne!(t.run(&[]), a);
    }

    #[test]
    fn shapes_keep_which_counters_moved() {
        assert_eq!(
            shape("DriverErrors { a: 0, b: 12 }"),
            "DriverErrors { a: 0, b: N }"
        );
    }
}
