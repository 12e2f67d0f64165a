//! The in-process sink: the receiving peer without a TAP device, for hosts
//! where worldswitch may not create one.

use super::{Backend, SendError, SharedPeer};

/// Counts frames as they are sent.
pub struct Sink {
    peer: SharedPeer,
}

impl Sink {
    /// A sink reporting into `peer`.
    pub fn new(peer: SharedPeer) -> Self {
        Self { peer }
    }
}

impl Backend for Sink {
    fn name(&self) -> &'static str {
        "sink"
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        // A poisoned lock only means a reader panicked; the counts are fine.
        let mut peer = self.peer.lock().unwrap_or_else(|e| e.into_inner());
        peer.frame(frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::vmnet::frames;

    #[test]
    fn counts_and_checks_what_it_is_sent() {
        let peer = SharedPeer::default();
        let mut sink = Sink::new(peer.clone());
        for seq in [0, 1, 2, 4] {
            sink.send(&frames::build(seq, 1000, [0xff; 6])).unwrap();
        }
        sink.send(&[0u8; 60]).unwrap();
        let r = peer.lock().unwrap().report();
        assert_eq!((r.frames, r.payload_bytes, r.other_frames), (4, 4000, 1));
        assert_eq!(r.sequence.missing, 1);
    }
}
