//! ICMP and ICMPv6 echo messages on the wire, smoltcp-style: [`EchoPacket`] is a zero-copy view
//! over a byte buffer with field accessors, [`EchoRepr`] a parsed form that can emit itself.
//!
//! Written here rather than taken from a crate because only echo is needed and the view has to
//! work on the buffers both socket kinds hand us (with and without the IPv4 header).

use std::net::Ipv6Addr;

/// Length of the echo header: type, code, checksum, identifier, sequence.
pub const HEADER_LEN: usize = 8;

/// Which ICMP: v4 (protocol 1) or v6 (protocol 58). They differ in type numbers and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V4,
    V6,
}

/// The two echo messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoKind {
    Request,
    Reply,
}

impl Version {
    pub fn type_of(self, kind: EchoKind) -> u8 {
        match (self, kind) {
            (Version::V4, EchoKind::Request) => 8,
            (Version::V4, EchoKind::Reply) => 0,
            (Version::V6, EchoKind::Request) => 128,
            (Version::V6, EchoKind::Reply) => 129,
        }
    }

    pub fn kind_of(self, message_type: u8) -> Option<EchoKind> {
        match (self, message_type) {
            (Version::V4, 8) | (Version::V6, 128) => Some(EchoKind::Request),
            (Version::V4, 0) | (Version::V6, 129) => Some(EchoKind::Reply),
            _ => None,
        }
    }
}

/// Why bytes are not an echo message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0} bytes is shorter than an ICMP echo header")]
    Truncated(usize),
    #[error("ICMP type {0} code {1} is not an echo request or reply")]
    NotEcho(u8, u8),
    #[error("bad IPv4 header")]
    BadIpv4Header,
}

/// A view of an echo message (header and payload) in `buffer`.
#[derive(Debug, Clone, Copy)]
pub struct EchoPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EchoPacket<T> {
    /// Wraps `buffer` after checking it holds at least a header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let length = buffer.as_ref().len();
        if length < HEADER_LEN {
            return Err(WireError::Truncated(length));
        }
        Ok(EchoPacket { buffer })
    }

    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    pub fn checksum(&self) -> u16 {
        self.read_u16(2)
    }
    pub fn identifier(&self) -> u16 {
        self.read_u16(4)
    }
    pub fn sequence(&self) -> u16 {
        self.read_u16(6)
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// ICMPv4: the checksum covers the message alone.
    pub fn verify_checksum_v4(&self) -> bool {
        internet_checksum(&[self.buffer.as_ref()]) == 0
    }

    /// ICMPv6: the checksum also covers a pseudo-header (RFC 8200 section 8.1).
    pub fn verify_checksum_v6(&self, source: Ipv6Addr, destination: Ipv6Addr) -> bool {
        let pseudo = pseudo_header_v6(source, destination, self.buffer.as_ref().len());
        internet_checksum(&[&pseudo, self.buffer.as_ref()]) == 0
    }

    fn read_u16(&self, at: usize) -> u16 {
        let bytes = self.buffer.as_ref();
        u16::from_be_bytes([bytes[at], bytes[at + 1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EchoPacket<T> {
    pub fn set_message_type(&mut self, value: u8) {
        self.buffer.as_mut()[0] = value;
    }
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[1] = value;
    }
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(2, value);
    }
    pub fn set_identifier(&mut self, value: u16) {
        self.write_u16(4, value);
    }
    pub fn set_sequence(&mut self, value: u16) {
        self.write_u16(6, value);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    pub fn fill_checksum_v4(&mut self) {
        self.set_checksum(0);
        let sum = internet_checksum(&[self.buffer.as_ref()]);
        self.set_checksum(sum);
    }

    pub fn fill_checksum_v6(&mut self, source: Ipv6Addr, destination: Ipv6Addr) {
        self.set_checksum(0);
        let pseudo = pseudo_header_v6(source, destination, self.buffer.as_ref().len());
        let sum = internet_checksum(&[&pseudo, self.buffer.as_ref()]);
        self.set_checksum(sum);
    }

    fn write_u16(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }
}

/// An echo request or reply, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoRepr<'a> {
    pub version: Version,
    pub kind: EchoKind,
    pub identifier: u16,
    pub sequence: u16,
    pub payload: &'a [u8],
}

impl<'a> EchoRepr<'a> {
    /// Parses an echo message. The checksum is not verified here: the kernel already did for
    /// what a socket delivers, and ICMPv6's needs addresses the caller may not have.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &'a EchoPacket<&'a T>,
        version: Version,
    ) -> Result<Self, WireError> {
        let kind = version
            .kind_of(packet.message_type())
            .filter(|_| packet.code() == 0)
            .ok_or(WireError::NotEcho(packet.message_type(), packet.code()))?;
        Ok(EchoRepr {
            version,
            kind,
            identifier: packet.identifier(),
            sequence: packet.sequence(),
            payload: &packet.buffer.as_ref()[HEADER_LEN..],
        })
    }

    /// Bytes needed to emit this message.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes header and payload into `packet` (which must be `buffer_len()` long). The
    /// checksum field is filled for ICMPv4 and left zero for ICMPv6, whose sockets compute it
    /// (RFC 3542 section 3.1); call `fill_checksum_v6` to emit a complete ICMPv6 message.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut EchoPacket<T>) {
        packet.set_message_type(self.version.type_of(self.kind));
        packet.set_code(0);
        packet.set_identifier(self.identifier);
        packet.set_sequence(self.sequence);
        packet.payload_mut()[..self.payload.len()].copy_from_slice(self.payload);
        match self.version {
            Version::V4 => packet.fill_checksum_v4(),
            Version::V6 => packet.set_checksum(0),
        }
    }
}

/// Strips the IPv4 header a raw ICMPv4 socket delivers; returns (TTL, ICMP message).
pub fn split_ipv4(datagram: &[u8]) -> Result<(u8, &[u8]), WireError> {
    let first = *datagram.first().ok_or(WireError::BadIpv4Header)?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 || datagram.len() < header_len {
        return Err(WireError::BadIpv4Header);
    }
    Ok((datagram[8], &datagram[header_len..]))
}

/// RFC 1071 one's-complement sum over the concatenation of `chunks`, complemented.
/// Chunks other than the last must have even length (true of the pseudo-header).
pub fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in chunks {
        let mut pairs = chunk.chunks_exact(2);
        for pair in &mut pairs {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = pairs.remainder() {
            sum += u32::from(*last) << 8;
        }
        // Fold early so that very long inputs cannot overflow.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header_v6(source: Ipv6Addr, destination: Ipv6Addr, length: usize) -> [u8; 40] {
    let mut pseudo = [0u8; 40];
    pseudo[..16].copy_from_slice(&source.octets());
    pseudo[16..32].copy_from_slice(&destination.octets());
    pseudo[32..36].copy_from_slice(&(length as u32).to_be_bytes());
    pseudo[39] = 58; // next header: ICMPv6
    pseudo
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Captured with tcpdump from iputils `ping -c1 -s 8 -p 4c6f6f70 127.0.0.1` (IPv4 header
    // included) and `... ::1` (ICMPv6 message only), so the checksums are the kernel's.
    const V4_REQUEST: [u8; 36] = [
        0x45, 0x00, 0x00, 0x24, 0x53, 0x2b, 0x40, 0x00, 0x40, 0x01, 0xe9, 0xab, 0x7f, 0x00, 0x00,
        0x01, 0x7f, 0x00, 0x00, 0x01, 0x08, 0x00, 0xf2, 0xbf, 0x49, 0x5f, 0x00, 0x01, 0x4c, 0x6f,
        0x6f, 0x70, 0x00, 0x00, 0x00, 0x00,
    ];
    const V4_REPLY_ICMP: [u8; 16] = [
        0x00, 0x00, 0xfa, 0xbf, 0x49, 0x5f, 0x00, 0x01, 0x4c, 0x6f, 0x6f, 0x70, 0x00, 0x00, 0x00,
        0x00,
    ];
    const V6_REQUEST: [u8; 16] = [
        0x80, 0x00, 0x7a, 0x70, 0x49, 0x62, 0x00, 0x01, 0x4c, 0x6f, 0x6f, 0x70, 0x00, 0x00, 0x00,
        0x00,
    ];
    const V6_REPLY: [u8; 16] = [
        0x81, 0x00, 0x79, 0x70, 0x49, 0x62, 0x00, 0x01, 0x4c, 0x6f, 0x6f, 0x70, 0x00, 0x00, 0x00,
        0x00,
    ];
    const PAYLOAD: [u8; 8] = [0x4c, 0x6f, 0x6f, 0x70, 0, 0, 0, 0];

    #[test]
    fn parses_a_captured_ipv4_request_through_the_ip_header() {
        let (ttl, icmp) = split_ipv4(&V4_REQUEST).unwrap();
        assert_eq!(ttl, 64);
        let packet = EchoPacket::new_checked(icmp).unwrap();
        assert!(packet.verify_checksum_v4());
        assert_eq!(packet.checksum(), 0xf2bf);
        let repr = EchoRepr::parse(&packet, Version::V4).unwrap();
        assert_eq!(repr.kind, EchoKind::Request);
        assert_eq!((repr.identifier, repr.sequence), (18783, 1));
        assert_eq!(repr.payload, &PAYLOAD);
    }

    #[test]
    fn emits_the_captured_ipv4_reply_byte_for_byte() {
        let repr = EchoRepr {
            version: Version::V4,
            kind: EchoKind::Reply,
            identifier: 18783,
            sequence: 1,
            payload: &PAYLOAD,
        };
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut EchoPacket::new_checked(&mut buffer[..]).unwrap());
        assert_eq!(buffer, V4_REPLY_ICMP);
    }

    #[test]
    fn ipv6_checksums_match_the_kernel() {
        let loopback = Ipv6Addr::LOCALHOST;
        for (captured, kind) in [(V6_REQUEST, EchoKind::Request), (V6_REPLY, EchoKind::Reply)] {
            let packet = EchoPacket::new_checked(&captured[..]).unwrap();
            assert!(packet.verify_checksum_v6(loopback, loopback));
            let repr = EchoRepr::parse(&packet, Version::V6).unwrap();
            assert_eq!(repr.kind, kind);
            assert_eq!((repr.identifier, repr.sequence), (18786, 1));

            let mut buffer = vec![0u8; repr.buffer_len()];
            let mut out = EchoPacket::new_checked(&mut buffer[..]).unwrap();
            repr.emit(&mut out);
            assert_eq!(out.checksum(), 0, "left for the socket to fill");
            out.fill_checksum_v6(loopback, loopback);
            assert_eq!(buffer, captured);
        }
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut bytes = V4_REPLY_ICMP;
        bytes[10] ^= 0x01;
        assert!(
            !EchoPacket::new_checked(&bytes[..])
                .unwrap()
                .verify_checksum_v4()
        );
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (complement 220d).
        assert_eq!(
            internet_checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            0x220d
        );
        // An odd trailing byte is padded with zero on the right.
        assert_eq!(internet_checksum(&[&[0x01]]), !0x0100);
    }

    #[test]
    fn rejects_what_is_not_echo() {
        assert_eq!(
            EchoPacket::new_checked(&[0u8; 7][..]).unwrap_err(),
            WireError::Truncated(7)
        );
        let unreachable = [3u8, 3, 0, 0, 0, 0, 0, 0];
        let packet = EchoPacket::new_checked(&unreachable[..]).unwrap();
        assert_eq!(
            EchoRepr::parse(&packet, Version::V4).unwrap_err(),
            WireError::NotEcho(3, 3)
        );
        assert!(split_ipv4(&[0x45, 0, 0]).is_err());
        assert!(split_ipv4(&[0x60; 40]).is_err());
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Some(packet) = split_ipv4(&bytes).ok().and_then(|(_, icmp)| EchoPacket::new_checked(icmp).ok()) {
                let _ = EchoRepr::parse(&packet, Version::V4);
                let _ = packet.verify_checksum_v4();
            }
            if let Ok(packet) = EchoPacket::new_checked(&bytes[..]) {
                let _ = EchoRepr::parse(&packet, Version::V6);
                let _ = packet.verify_checksum_v6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
            }
        }

        #[test]
        fn emitted_ipv4_messages_verify_and_parse_back(
            identifier: u16, sequence: u16, payload in proptest::collection::vec(any::<u8>(), 0..64)
        ) {
            let repr = EchoRepr { version: Version::V4, kind: EchoKind::Request, identifier, sequence, payload: &payload };
            let mut buffer = vec![0u8; repr.buffer_len()];
            repr.emit(&mut EchoPacket::new_checked(&mut buffer[..]).unwrap());
            let packet = EchoPacket::new_checked(&buffer[..]).unwrap();
            prop_assert!(packet.verify_checksum_v4());
            prop_assert_eq!(EchoRepr::parse(&packet, Version::V4).unwrap(), repr);
        }
    }
}
