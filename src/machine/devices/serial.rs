//! The 16550 serial console at COM1: vm-superio's UART, an edge-triggered
//! interrupt line (an irqfd, or a pulse on the user-space 8259), and a
//! console sink that hands whole lines to the VMM.

use super::bus::{BusAction, PioDevice};
use super::host::{GuestSays, Listener};
use super::irq::EdgeIrq;
use std::io;
use vm_superio::Serial;

/// COM1's ports.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1's ISA interrupt line.
pub const COM1_IRQ: u32 = 4;
/// A console line longer than this is handed over in pieces.
const MAX_LINE: usize = 512;

/// Collects console bytes and sends them on as lines.
pub struct ConsoleSink {
    line: Vec<u8>,
    listener: Box<dyn Listener>,
}

impl ConsoleSink {
    /// A sink that sends lines to `listener` as [`GuestSays::Console`].
    pub fn new(listener: Box<dyn Listener>) -> Self {
        Self {
            line: Vec::with_capacity(MAX_LINE),
            listener,
        }
    }

    fn flush_line(&mut self) {
        if !self.line.is_empty() {
            let text = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            self.listener.hear(GuestSays::Console(text));
        }
    }
}

impl io::Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for &b in buf {
            self.line.push(b);
            if b == b'\n' || self.line.len() >= MAX_LINE {
                self.flush_line();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleSink {
    fn drop(&mut self) {
        self.flush_line();
    }
}

/// The UART on the bus.
pub struct SerialDevice {
    uart: Serial<EdgeIrq, vm_superio::serial::NoEvents, ConsoleSink>,
}

impl SerialDevice {
    /// A UART whose interrupt is `irq` and whose output goes to `console`.
    pub fn new(irq: EdgeIrq, console: ConsoleSink) -> Self {
        Self {
            uart: Serial::new(irq, console),
        }
    }
}

impl PioDevice for SerialDevice {
    fn name(&self) -> &'static str {
        "serial"
    }

    fn read(&mut self, offset: u16, data: &mut [u8]) {
        // Registers are bytes; wider reads see the byte at the offset.
        data.fill(0);
        data[0] = self.uart.read(offset as u8);
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        // A console write cannot fail (the sink buffers); an interrupt that
        // cannot be raised leaves the UART working in polled mode.
        let _ = self.uart.write(offset as u8, data[0]);
        BusAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use vmm_sys_util::eventfd::EventFd;

    fn serial() -> (SerialDevice, mpsc::Receiver<GuestSays>, EventFd) {
        let (sink, stream) = mpsc::channel();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let dev = SerialDevice::new(
            EdgeIrq::Irqfd(irq.try_clone().unwrap()),
            ConsoleSink::new(Box::new(sink)),
        );
        (dev, stream, irq)
    }

    fn lines(stream: &mpsc::Receiver<GuestSays>) -> Vec<String> {
        stream
            .try_iter()
            .filter_map(|e| match e {
                GuestSays::Console(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn transmits_lines_and_reports_an_empty_transmitter() {
        let (mut dev, stream, _irq) = serial();
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "THR empty");
        for b in b"hi\nthere" {
            dev.write(0, &[*b]);
        }
        assert_eq!(lines(&stream), vec!["hi\n".to_string()]);
        drop(dev);
        assert_eq!(lines(&stream), vec!["there".to_string()]);
    }

    #[test]
    fn divisor_latch_does_not_transmit() {
        let (mut dev, stream, _irq) = serial();
        dev.write(3, &[0x80]);
        dev.write(0, &[1]);
        dev.write(3, &[0x03]);
        drop(dev);
        assert!(lines(&stream).is_empty());
    }

    #[test]
    fn transmit_interrupt_reaches_the_irqfd_when_enabled() {
        let (mut dev, _stream, irq) = serial();
        dev.write(1, &[0x02]); // IER: THR empty interrupt
        dev.write(0, b"x");
        assert!(irq.read().unwrap() >= 1);
    }

    #[test]
    fn long_lines_are_split() {
        let (mut dev, stream, _irq) = serial();
        for _ in 0..(MAX_LINE + 10) {
            dev.write(0, b"a");
        }
        drop(dev);
        let got = lines(&stream);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_LINE);
    }
}
