//! ICMP (RFC 792) and ICMPv6 (RFC 4443 section 4) echo request and reply: [`EchoPacket`] is a
//! view over the message (header and payload), [`EchoRepr`] its parsed form. [`EchoStamp`] is
//! what loopscope puts at the start of every echo payload so that replies are matched to its own
//! requests whatever the kernel did to the identifier.
//!
//! Hand-written rather than taken from a crate: only echo is needed, and the view has to work
//! on the buffers both socket kinds hand over (the message alone, or after an IPv4 header).

use std::net::Ipv6Addr;

use crate::checksum::{NEXT_HEADER_ICMPV6, internet_checksum, pseudo_header_v6};

/// Length of the echo header: type, code, checksum, identifier, sequence number.
pub const HEADER_LEN: usize = 8;

/// ICMP for IPv4 (protocol 1) or ICMPv6 (protocol 58): they differ in type numbers and in what
/// the checksum covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// ICMP for IPv4 (RFC 792).
    V4,
    /// ICMPv6 (RFC 4443).
    V6,
}

/// The two echo messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoKind {
    /// Echo request (type 8, or 128 for ICMPv6).
    Request,
    /// Echo reply (type 0, or 129 for ICMPv6).
    Reply,
}

impl Version {
    /// The type number of `kind` (RFC 792: 8 and 0; RFC 4443: 128 and 129).
    pub fn type_of(self, kind: EchoKind) -> u8 {
        match (self, kind) {
            (Version::V4, EchoKind::Request) => 8,
            (Version::V4, EchoKind::Reply) => 0,
            (Version::V6, EchoKind::Request) => 128,
            (Version::V6, EchoKind::Reply) => 129,
        }
    }

    /// Which echo message a type number is, if any.
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
pub enum EchoError {
    #[error("{0} bytes is shorter than an ICMP echo header")]
    /// Fewer bytes than an echo header (the count given).
    Truncated(usize),
    #[error("ICMP type {0} code {1} is not an echo request or reply")]
    /// Another ICMP message (its type and code).
    NotEcho(u8, u8),
    #[error("ICMP checksum {found:#06x} is wrong (expected {expected:#06x})")]
    /// The checksum field holds `found`; the message sums to `expected`.
    BadChecksum {
        /// The checksum field.
        found: u16,
        /// What the message sums to.
        expected: u16,
    },
}

/// A view of an echo message in `buffer`.
#[derive(Debug, Clone, Copy)]
pub struct EchoPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EchoPacket<T> {
    /// Wraps `buffer` after checking it holds at least a header; the message is the whole
    /// buffer.
    pub fn new_checked(buffer: T) -> Result<Self, EchoError> {
        let length = buffer.as_ref().len();
        if length < HEADER_LEN {
            return Err(EchoError::Truncated(length));
        }
        Ok(EchoPacket { buffer })
    }

    /// The buffer the view was made over.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Type field (byte 0).
    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// Code field (byte 1).
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    /// Checksum field (bytes 2-3).
    pub fn checksum(&self) -> u16 {
        self.read_u16(2)
    }
    /// Identifier field (bytes 4-5).
    pub fn identifier(&self) -> u16 {
        self.read_u16(4)
    }
    /// Sequence number field (bytes 6-7).
    pub fn sequence(&self) -> u16 {
        self.read_u16(6)
    }
    /// Everything after the 8-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// ICMPv4: the checksum covers the message alone (RFC 792).
    pub fn verify_checksum_v4(&self) -> bool {
        internet_checksum(&[self.buffer.as_ref()]) == 0
    }

    /// ICMPv6: the checksum also covers the IPv6 pseudo-header (RFC 4443 section 2.3).
    pub fn verify_checksum_v6(&self, source: Ipv6Addr, destination: Ipv6Addr) -> bool {
        internet_checksum(&[
            &self.pseudo_header(source, destination),
            self.buffer.as_ref(),
        ]) == 0
    }

    fn pseudo_header(&self, source: Ipv6Addr, destination: Ipv6Addr) -> [u8; 40] {
        let length = u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX);
        pseudo_header_v6(source, destination, length, NEXT_HEADER_ICMPV6)
    }

    fn read_u16(&self, at: usize) -> u16 {
        let bytes = self.buffer.as_ref();
        u16::from_be_bytes([bytes[at], bytes[at + 1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EchoPacket<T> {
    /// Sets the type field.
    pub fn set_message_type(&mut self, value: u8) {
        self.buffer.as_mut()[0] = value;
    }
    /// Sets the code field.
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[1] = value;
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(2, value);
    }
    /// Sets the identifier field.
    pub fn set_identifier(&mut self, value: u16) {
        self.write_u16(4, value);
    }
    /// Sets the sequence number field.
    pub fn set_sequence(&mut self, value: u16) {
        self.write_u16(6, value);
    }
    /// The payload, to write into.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Computes and sets the ICMPv4 checksum (over the message alone).
    pub fn fill_checksum_v4(&mut self) {
        self.set_checksum(0);
        let sum = internet_checksum(&[self.buffer.as_ref()]);
        self.set_checksum(sum);
    }

    /// Computes and sets the ICMPv6 checksum (over the pseudo-header and the message).
    pub fn fill_checksum_v6(&mut self, source: Ipv6Addr, destination: Ipv6Addr) {
        self.set_checksum(0);
        let pseudo = self.pseudo_header(source, destination);
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
    /// ICMP or ICMPv6.
    pub version: Version,
    /// Request or reply.
    pub kind: EchoKind,
    /// Identifier field.
    pub identifier: u16,
    /// Sequence number field (16 bits on the wire).
    pub sequence: u16,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl<'a> EchoRepr<'a> {
    /// Parses an echo message. An ICMPv4 checksum is verified (a raw socket hands messages over
    /// before the kernel looks at it). An ICMPv6 checksum is not: it covers addresses the
    /// caller may not have, and every socket that delivers ICMPv6 has verified it (RFC 3542
    /// section 3.1); use [`EchoRepr::parse_v6_checked`] where the addresses are known.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &EchoPacket<&'a T>,
        version: Version,
    ) -> Result<Self, EchoError> {
        let repr = Self::parse_fields(packet, version)?;
        if version == Version::V4 && !packet.verify_checksum_v4() {
            return Err(EchoError::BadChecksum {
                found: packet.checksum(),
                expected: Self::expected_checksum(packet, |p| p.fill_checksum_v4()),
            });
        }
        Ok(repr)
    }

    /// Parses an ICMPv6 echo message and verifies its checksum over the pseudo-header.
    pub fn parse_v6_checked<T: AsRef<[u8]> + ?Sized>(
        packet: &EchoPacket<&'a T>,
        source: Ipv6Addr,
        destination: Ipv6Addr,
    ) -> Result<Self, EchoError> {
        let repr = Self::parse_fields(packet, Version::V6)?;
        if !packet.verify_checksum_v6(source, destination) {
            return Err(EchoError::BadChecksum {
                found: packet.checksum(),
                expected: Self::expected_checksum(packet, |p| {
                    p.fill_checksum_v6(source, destination)
                }),
            });
        }
        Ok(repr)
    }

    fn parse_fields<T: AsRef<[u8]> + ?Sized>(
        packet: &EchoPacket<&'a T>,
        version: Version,
    ) -> Result<Self, EchoError> {
        let kind = version
            .kind_of(packet.message_type())
            .filter(|_| packet.code() == 0)
            .ok_or(EchoError::NotEcho(packet.message_type(), packet.code()))?;
        let buffer: &'a [u8] = packet.buffer.as_ref();
        Ok(EchoRepr {
            version,
            kind,
            identifier: packet.identifier(),
            sequence: packet.sequence(),
            payload: &buffer[HEADER_LEN..],
        })
    }

    /// The checksum the message should carry (only computed to report a mismatch).
    fn expected_checksum<T: AsRef<[u8]> + ?Sized>(
        packet: &EchoPacket<&T>,
        fill: impl Fn(&mut EchoPacket<&mut [u8]>),
    ) -> u16 {
        let mut copy = packet.buffer.as_ref().to_vec();
        let mut view = EchoPacket {
            buffer: &mut copy[..],
        };
        fill(&mut view);
        view.checksum()
    }

    /// Bytes needed to emit this message.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes header and payload into `packet`, which must be exactly [`Self::buffer_len`]
    /// long. The ICMPv4 checksum is filled in; an ICMPv6 one is left zero for the socket to
    /// compute (RFC 3542 section 3.1): use [`EchoRepr::emit_v6_checked`] for a complete
    /// ICMPv6 message.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut EchoPacket<T>) {
        self.emit_fields(packet);
        match self.version {
            Version::V4 => packet.fill_checksum_v4(),
            Version::V6 => packet.set_checksum(0),
        }
    }

    /// Writes an ICMPv6 message with its checksum over the pseudo-header.
    pub fn emit_v6_checked<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut EchoPacket<T>,
        source: Ipv6Addr,
        destination: Ipv6Addr,
    ) {
        self.emit_fields(packet);
        packet.fill_checksum_v6(source, destination);
    }

    fn emit_fields<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut EchoPacket<T>) {
        packet.set_message_type(self.version.type_of(self.kind));
        packet.set_code(0);
        packet.set_identifier(self.identifier);
        packet.set_sequence(self.sequence);
        packet.payload_mut()[..self.payload.len()].copy_from_slice(self.payload);
    }
}

/// The first bytes of every echo payload loopscope sends: a magic, a token drawn per socket,
/// and the full 64-bit sequence number (the ICMP field holds only its low 16 bits). A reply is
/// ours when magic and token match; the token tells two pingers on one host apart where the
/// kernel rewrites the identifier (datagram "ping" sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoStamp {
    /// Drawn per socket: tells this pinger's replies from another's.
    pub token: u32,
    /// The full sequence number (the ICMP field holds its low 16 bits).
    pub sequence: u64,
}

/// Magic, token, sequence.
pub const STAMP_LEN: usize = 16;
/// The magic that starts the stamp: "LSCP".
pub const STAMP_MAGIC: [u8; 4] = *b"LSCP";

/// Why an echo payload does not start with a stamp of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("{0} payload bytes is shorter than the 16-byte stamp")]
    /// Fewer payload bytes than a stamp (the count given).
    Truncated(usize),
    #[error("the payload does not start with loopscope's stamp")]
    /// The payload does not start with the stamp magic.
    BadMagic,
}

impl EchoStamp {
    /// Reads the stamp at the start of an echo payload.
    pub fn parse(payload: &[u8]) -> Result<Self, StampError> {
        let stamp = payload
            .get(..STAMP_LEN)
            .ok_or(StampError::Truncated(payload.len()))?;
        if stamp[..4] != STAMP_MAGIC {
            return Err(StampError::BadMagic);
        }
        let mut token = [0u8; 4];
        token.copy_from_slice(&stamp[4..8]);
        let mut sequence = [0u8; 8];
        sequence.copy_from_slice(&stamp[8..16]);
        Ok(EchoStamp {
            token: u32::from_be_bytes(token),
            sequence: u64::from_be_bytes(sequence),
        })
    }

    /// Writes the stamp into the first [`STAMP_LEN`] bytes of `payload`.
    pub fn emit(&self, payload: &mut [u8]) {
        payload[..4].copy_from_slice(&STAMP_MAGIC);
        payload[4..8].copy_from_slice(&self.token.to_be_bytes());
        payload[8..16].copy_from_slice(&self.sequence.to_be_bytes());
    }
}

/// A whole echo payload of `length` bytes: the stamp, then a counting fill (byte i is i mod
/// 256) that the reply must carry back unchanged. Shorter than a stamp: the fill alone.
pub fn fill_payload(stamp: &EchoStamp, payload: &mut [u8]) {
    for (index, byte) in payload.iter_mut().enumerate() {
        *byte = index as u8;
    }
    if payload.len() >= STAMP_LEN {
        stamp.emit(payload);
    }
}

/// True when `payload` is exactly what [`fill_payload`] writes for `stamp`.
pub fn payload_is_intact(stamp: &EchoStamp, payload: &[u8]) -> bool {
    EchoStamp::parse(payload).is_ok_and(|found| found == *stamp)
        && payload
            .iter()
            .enumerate()
            .skip(STAMP_LEN)
            .all(|(index, &byte)| byte == index as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IcmpEchoHeader, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type};
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
        let ip = crate::ipv4::Ipv4Packet::new_checked(&V4_REQUEST[..]).unwrap();
        assert_eq!(ip.ttl(), 64);
        let packet = EchoPacket::new_checked(ip.payload()).unwrap();
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
            let repr = EchoRepr::parse_v6_checked(&packet, loopback, loopback).unwrap();
            assert_eq!(repr.kind, kind);
            assert_eq!((repr.identifier, repr.sequence), (18786, 1));

            let mut buffer = vec![0u8; repr.buffer_len()];
            let mut out = EchoPacket::new_checked(&mut buffer[..]).unwrap();
            repr.emit(&mut out);
            assert_eq!(out.checksum(), 0, "left for the socket to fill");
            repr.emit_v6_checked(&mut out, loopback, loopback);
            assert_eq!(buffer, captured);
        }
    }

    /// Builds an ICMPv4 echo message with etherparse (an independent implementation).
    fn etherparse_v4(kind: EchoKind, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
        let echo = IcmpEchoHeader { id, seq };
        let icmp_type = match kind {
            EchoKind::Request => Icmpv4Type::EchoRequest(echo),
            EchoKind::Reply => Icmpv4Type::EchoReply(echo),
        };
        let header = Icmpv4Header::with_checksum(icmp_type, payload);
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Builds an ICMPv6 echo message with etherparse, checksum over the pseudo-header.
    fn etherparse_v6(
        kind: EchoKind,
        id: u16,
        seq: u16,
        payload: &[u8],
        source: Ipv6Addr,
        destination: Ipv6Addr,
    ) -> Vec<u8> {
        let echo = IcmpEchoHeader { id, seq };
        let icmp_type = match kind {
            EchoKind::Request => Icmpv6Type::EchoRequest(echo),
            EchoKind::Reply => Icmpv6Type::EchoReply(echo),
        };
        let header =
            Icmpv6Header::with_checksum(icmp_type, source.octets(), destination.octets(), payload)
                .expect("payload fits");
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn etherparse_agrees_with_the_captured_packets() {
        // The reference builder itself reproduces the kernel's bytes, so agreeing with it below
        // means agreeing with the kernel.
        assert_eq!(
            etherparse_v4(EchoKind::Reply, 18783, 1, &PAYLOAD),
            V4_REPLY_ICMP
        );
        let lo = Ipv6Addr::LOCALHOST;
        assert_eq!(
            etherparse_v6(EchoKind::Request, 18786, 1, &PAYLOAD, lo, lo),
            V6_REQUEST
        );
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut bytes = V4_REPLY_ICMP;
        bytes[10] ^= 0x01; // the high byte of word 6f70: the sum drops by 0x100
        let packet = EchoPacket::new_checked(&bytes[..]).unwrap();
        assert!(!packet.verify_checksum_v4());
        assert_eq!(
            EchoRepr::parse(&packet, Version::V4).unwrap_err(),
            EchoError::BadChecksum {
                found: 0xfabf,
                expected: 0xfbbf
            }
        );
    }

    #[test]
    fn rejects_what_is_not_echo() {
        assert_eq!(
            EchoPacket::new_checked(&[0u8; 7][..]).unwrap_err(),
            EchoError::Truncated(7)
        );
        let unreachable = [3u8, 3, 0, 0, 0, 0, 0, 0];
        let packet = EchoPacket::new_checked(&unreachable[..]).unwrap();
        assert_eq!(
            EchoRepr::parse(&packet, Version::V4).unwrap_err(),
            EchoError::NotEcho(3, 3)
        );
        // An echo type with a non-zero code is not echo either (RFC 792: code 0).
        let odd_code = etherparse_v4(EchoKind::Reply, 1, 1, b"");
        let mut odd_code = odd_code.clone();
        odd_code[1] = 1;
        let packet = EchoPacket::new_checked(&odd_code[..]).unwrap();
        assert_eq!(
            EchoRepr::parse(&packet, Version::V4).unwrap_err(),
            EchoError::NotEcho(0, 1)
        );
    }

    #[test]
    fn stamp_layout_and_payload_fill() {
        let stamp = EchoStamp {
            token: 0x0102_0304,
            sequence: 0x1112_1314_1516_1718,
        };
        let mut payload = [0u8; 20];
        fill_payload(&stamp, &mut payload);
        assert_eq!(
            payload,
            [
                b'L', b'S', b'C', b'P', 1, 2, 3, 4, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
                16, 17, 18, 19
            ]
        );
        assert_eq!(EchoStamp::parse(&payload), Ok(stamp));
        assert!(payload_is_intact(&stamp, &payload));
        payload[19] ^= 1;
        assert!(!payload_is_intact(&stamp, &payload));
        assert_eq!(
            EchoStamp::parse(&payload[..15]),
            Err(StampError::Truncated(15))
        );
        assert_eq!(EchoStamp::parse(&[0u8; 16]), Err(StampError::BadMagic));
    }

    fn kind() -> impl Strategy<Value = EchoKind> {
        prop_oneof![Just(EchoKind::Request), Just(EchoKind::Reply)]
    }

    fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
        any::<u128>().prop_map(Ipv6Addr::from)
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(ip) = crate::ipv4::Ipv4Packet::new_checked(&bytes[..])
                && let Ok(packet) = EchoPacket::new_checked(ip.payload())
            {
                let _ = EchoRepr::parse(&packet, Version::V4);
            }
            if let Ok(packet) = EchoPacket::new_checked(&bytes[..]) {
                let _ = EchoRepr::parse(&packet, Version::V6);
                let _ = EchoRepr::parse_v6_checked(&packet, Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
            }
            let _ = EchoStamp::parse(&bytes);
        }

        /// Every valid ICMPv4 echo message (built by etherparse) parses, and emits back to the
        /// same bytes.
        #[test]
        fn ipv4_round_trip(kind in kind(), id: u16, seq: u16, payload in proptest::collection::vec(any::<u8>(), 0..96)) {
            let bytes = etherparse_v4(kind, id, seq, &payload);
            let packet = EchoPacket::new_checked(&bytes[..]).unwrap();
            let repr = EchoRepr::parse(&packet, Version::V4).unwrap();
            prop_assert_eq!((repr.kind, repr.identifier, repr.sequence), (kind, id, seq));
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut EchoPacket::new_checked(&mut out[..]).unwrap());
            prop_assert_eq!(out, bytes);
        }

        /// The same for ICMPv6, checksum over random addresses.
        #[test]
        fn ipv6_round_trip(kind in kind(), id: u16, seq: u16, payload in proptest::collection::vec(any::<u8>(), 0..96), source in ipv6(), destination in ipv6()) {
            let bytes = etherparse_v6(kind, id, seq, &payload, source, destination);
            let packet = EchoPacket::new_checked(&bytes[..]).unwrap();
            let repr = EchoRepr::parse_v6_checked(&packet, source, destination).unwrap();
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit_v6_checked(&mut EchoPacket::new_checked(&mut out[..]).unwrap(), source, destination);
            prop_assert_eq!(out, bytes);
        }

        /// What parse accepts, emit could have produced: any accepted ICMPv4 message emits back
        /// to itself (so parse accepts no bad checksum, no odd code, no other type).
        #[test]
        fn ipv4_parse_accepts_only_what_emit_produces(
            message_type in prop_oneof![Just(0u8), Just(8), Just(3), Just(128), any::<u8>()],
            code in prop_oneof![Just(0u8), any::<u8>()],
            mut bytes in proptest::collection::vec(any::<u8>(), 8..40),
        ) {
            bytes[0] = message_type;
            bytes[1] = code;
            if code & 1 == 0 {
                // Half the cases carry a correct checksum, so the type and code filters are
                // what is tested; the other half a random one.
                EchoPacket::new_checked(&mut bytes[..]).unwrap().fill_checksum_v4();
            }
            let packet = EchoPacket::new_checked(&bytes[..]).unwrap();
            if let Ok(repr) = EchoRepr::parse(&packet, Version::V4) {
                let mut out = vec![0u8; repr.buffer_len()];
                repr.emit(&mut EchoPacket::new_checked(&mut out[..]).unwrap());
                prop_assert_eq!(out, bytes);
            }
        }

        #[test]
        fn stamp_round_trip(token: u32, sequence: u64, extra in 0usize..64) {
            let stamp = EchoStamp { token, sequence };
            let mut payload = vec![0u8; STAMP_LEN + extra];
            fill_payload(&stamp, &mut payload);
            prop_assert_eq!(EchoStamp::parse(&payload), Ok(stamp));
            prop_assert!(payload_is_intact(&stamp, &payload));
        }
    }
}
