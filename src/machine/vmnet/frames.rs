//! The nettest wire format: Ethernet, IPv4, UDP to [`NETTEST_PORT`], and a
//! payload that starts with the datagram's 64-bit sequence number.

use super::{GUEST_IP, GUEST_MAC, HOST_IP, NETTEST_PORT};

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const UDP_LEN: usize = 8;
/// Bytes in front of the UDP payload.
pub const HEADERS: usize = ETH_LEN + IP_LEN + UDP_LEN;

/// A nettest datagram seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Its sequence number.
    pub seq: u64,
    /// UDP payload bytes, sequence number included.
    pub payload: usize,
}

/// Parses a nettest datagram out of an Ethernet frame (padding allowed).
pub fn parse(frame: &[u8]) -> Option<Datagram> {
    if frame.len() < HEADERS + 8 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    if ip[0] != 0x45 || ip[9] != 17 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let udp = &ip[IP_LEN..];
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if dport != NETTEST_PORT || total != IP_LEN + udp_len || ETH_LEN + total > frame.len() {
        return None;
    }
    let payload = udp_len.checked_sub(UDP_LEN)?;
    if payload < 8 {
        return None;
    }
    let seq = u64::from_le_bytes(udp[8..16].try_into().ok()?);
    Some(Datagram { seq, payload })
}

/// The ones'-complement checksum of an IPv4 header.
pub fn ip_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds the datagram a guest would send: `payload` bytes of UDP payload
/// (at least 8) starting with `seq`, from the guest to the host peer.
pub fn build(seq: u64, payload: usize, dst_mac: [u8; 6]) -> Vec<u8> {
    let payload = payload.max(8);
    let mut f = Vec::with_capacity(HEADERS + payload);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (IP_LEN + UDP_LEN + payload) as u16;
    let mut ip = [0u8; IP_LEN];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&GUEST_IP);
    ip[16..20].copy_from_slice(&HOST_IP);
    let csum = ip_checksum(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&NETTEST_PORT.to_be_bytes());
    f.extend_from_slice(&NETTEST_PORT.to_be_bytes());
    f.extend_from_slice(&((UDP_LEN + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&seq.to_le_bytes());
    f.resize(HEADERS + payload, 0x5a);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_parse_round_trip() {
        let f = build(42, 1464, [0xff; 6]);
        assert_eq!(f.len(), HEADERS + 1464);
        assert_eq!(
            parse(&f),
            Some(Datagram {
                seq: 42,
                payload: 1464
            })
        );
        assert_eq!(ip_checksum(&f[14..34]), 0, "a valid header sums to 0");
        let mut padded = build(7, 8, [0xff; 6]);
        padded.resize(60, 0);
        assert_eq!(parse(&padded).map(|d| d.seq), Some(7));
    }

    #[test]
    fn other_traffic_is_not_nettest() {
        let mut arp = vec![0xff; 14];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        arp.resize(60, 0);
        assert_eq!(parse(&arp), None);
        let mut f = build(1, 100, [0xff; 6]);
        f[HEADERS - 6] = 0; // another destination port
        assert_eq!(parse(&f), None);
        let f = build(1, 100, [0xff; 6]);
        assert_eq!(parse(&f[..50]), None);
    }
}
