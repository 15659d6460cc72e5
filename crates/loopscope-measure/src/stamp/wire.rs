//! STAMP test packets, unauthenticated mode (RFC 8762 §4.2.1 and §4.3.1), parse and emit.
//!
//! Hand-written rather than taken from a crate: no maintained crate carries the STAMP layout,
//! and it is a fixed 44-octet structure. (This would belong in a wire crate; none existed on
//! main when it was written.)
//!
//! Session-Sender test packet (RFC 8762 Figure 2):
//!
//! ```text
//! 0-3   Sequence Number
//! 4-11  Timestamp
//! 12-13 Error Estimate
//! 14-43 MBZ (30 octets)
//! 44-   optional padding
//! ```
//!
//! Session-Reflector test packet (RFC 8762 Figure 4):
//!
//! ```text
//! 0-3   Sequence Number
//! 4-11  Timestamp (T3)
//! 12-13 Error Estimate
//! 14-15 MBZ
//! 16-23 Receive Timestamp (T2)
//! 24-27 Session-Sender Sequence Number
//! 28-35 Session-Sender Timestamp (T1)
//! 36-37 Session-Sender Error Estimate
//! 38-39 MBZ
//! 40    Session-Sender TTL
//! 41-43 MBZ
//! 44-   optional padding
//! ```

use std::time::Duration;

/// Both unauthenticated packets are at least this long (RFC 8762 §4.2.1, §4.3.1).
pub const MIN_PACKET_LEN: usize = 44;

/// Seconds from the NTP era 0 origin (1900-01-01) to the Unix epoch (RFC 5905 §6).
pub const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// The packet is shorter than the 44 octets RFC 8762 requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("STAMP packet of {len} octets is shorter than the {MIN_PACKET_LEN}-octet minimum")]
pub struct TooShort {
    pub len: usize,
}

/// Which timestamp format a packet carries, told by the Z bit of its error estimate
/// (RFC 8762 §4.2.1: Z = 0 NTP 64-bit, Z = 1 PTPv2 truncated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// 32-bit seconds since 1900 and a 32-bit binary fraction (RFC 5905 §6).
    Ntp,
    /// The low 32 bits of the PTPv2 seconds since 1970 and 32-bit nanoseconds (IEEE 1588).
    Ptp,
}

/// A 64-bit timestamp as carried on the wire; its meaning depends on the [`TimestampFormat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Encodes a time since the Unix epoch. NTP era 0 wraps in 2036 and PTPv2's truncated
    /// seconds in 2106: both keep the low 32 bits of the seconds, as the formats do.
    pub fn from_unix(since_epoch: Duration, format: TimestampFormat) -> Self {
        let nanos = u64::from(since_epoch.subsec_nanos());
        match format {
            TimestampFormat::Ntp => {
                let seconds = (since_epoch.as_secs() + NTP_UNIX_OFFSET_S) & 0xFFFF_FFFF;
                // Round to the nearest 2^-32 s so a round trip through nanoseconds is exact.
                let fraction = ((nanos << 32) + 500_000_000) / 1_000_000_000;
                Timestamp((seconds << 32) | fraction.min(0xFFFF_FFFF))
            }
            TimestampFormat::Ptp => {
                let seconds = since_epoch.as_secs() & 0xFFFF_FFFF;
                Timestamp((seconds << 32) | nanos)
            }
        }
    }

    pub fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The fraction (NTP) or nanoseconds (PTPv2) field.
    pub fn low(self) -> u32 {
        self.0 as u32
    }

    /// Nanoseconds since the Unix epoch, in the era the seconds field leaves open: for NTP,
    /// era 0 (1900-2036) except that values before 1970 are read in era 1 (2036-2172).
    pub fn to_unix_nanos(self, format: TimestampFormat) -> i128 {
        let seconds = i128::from(self.seconds());
        match format {
            TimestampFormat::Ntp => {
                let mut unix_seconds = seconds - i128::from(NTP_UNIX_OFFSET_S);
                if unix_seconds < 0 {
                    unix_seconds += 1 << 32;
                }
                let fraction_nanos = (i128::from(self.low()) * 1_000_000_000 + (1 << 31)) >> 32;
                unix_seconds * 1_000_000_000 + fraction_nanos
            }
            TimestampFormat::Ptp => seconds * 1_000_000_000 + i128::from(self.low()),
        }
    }
}

/// The Error Estimate field (RFC 4656 §4.1.2, the Z bit from RFC 8762 §4.2.1):
/// S (synchronised to UTC), Z (timestamp format), 6-bit Scale and 8-bit Multiplier; the error
/// is Multiplier × 2^(Scale − 32) seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorEstimate(pub u16);

impl ErrorEstimate {
    /// The smallest Scale and Multiplier whose error is at least `error` (never zero: RFC 4656
    /// says Multiplier MUST NOT be zero).
    pub fn new(synchronised: bool, format: TimestampFormat, error: Duration) -> Self {
        let units = (error.as_nanos().saturating_mul(1 << 32)).div_ceil(1_000_000_000);
        let mut scale = 0u32;
        while scale < 63 && units.div_ceil(1u128 << scale) > 255 {
            scale += 1;
        }
        let multiplier = units.div_ceil(1u128 << scale).clamp(1, 255) as u16;
        let s = if synchronised { 0x8000 } else { 0 };
        let z = if format == TimestampFormat::Ptp {
            0x4000
        } else {
            0
        };
        ErrorEstimate(s | z | ((scale as u16) << 8) | multiplier)
    }

    pub fn synchronised(self) -> bool {
        self.0 & 0x8000 != 0
    }

    pub fn format(self) -> TimestampFormat {
        if self.0 & 0x4000 != 0 {
            TimestampFormat::Ptp
        } else {
            TimestampFormat::Ntp
        }
    }

    pub fn scale(self) -> u8 {
        ((self.0 >> 8) & 0x3F) as u8
    }

    pub fn multiplier(self) -> u8 {
        self.0 as u8
    }

    /// The error in seconds (Multiplier × 2^(Scale − 32)).
    pub fn error_seconds(self) -> f64 {
        f64::from(self.multiplier()) * 2f64.powi(i32::from(self.scale()) - 32)
    }
}

/// A Session-Sender test packet, unauthenticated (RFC 8762 §4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderPacket {
    pub sequence: u32,
    pub timestamp: Timestamp,
    pub error_estimate: ErrorEstimate,
    /// Octets after the first 44 (sent as zeros; their content is not kept).
    pub padding_len: usize,
}

impl SenderPacket {
    /// Reads a packet; MBZ fields are ignored on receipt (RFC 8762 §4.2.1).
    pub fn parse(bytes: &[u8]) -> Result<Self, TooShort> {
        if bytes.len() < MIN_PACKET_LEN {
            return Err(TooShort { len: bytes.len() });
        }
        Ok(SenderPacket {
            sequence: be_u32(&bytes[0..4]),
            timestamp: Timestamp(be_u64(&bytes[4..12])),
            error_estimate: ErrorEstimate(be_u16(&bytes[12..14])),
            padding_len: bytes.len() - MIN_PACKET_LEN,
        })
    }

    pub fn len(&self) -> usize {
        MIN_PACKET_LEN + self.padding_len
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the packet; MBZ and padding are zeros.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        out[0..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..12].copy_from_slice(&self.timestamp.0.to_be_bytes());
        out[12..14].copy_from_slice(&self.error_estimate.0.to_be_bytes());
        out
    }
}

/// A Session-Reflector test packet, unauthenticated (RFC 8762 §4.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectorPacket {
    pub sequence: u32,
    /// T3: when the reflector sent this packet.
    pub timestamp: Timestamp,
    pub error_estimate: ErrorEstimate,
    /// T2: when the reflector received the sender's packet.
    pub receive_timestamp: Timestamp,
    pub sender_sequence: u32,
    /// T1, copied from the sender's packet.
    pub sender_timestamp: Timestamp,
    pub sender_error_estimate: ErrorEstimate,
    /// The TTL or hop limit of the sender's packet as the reflector received it.
    pub sender_ttl: u8,
    pub padding_len: usize,
}

impl ReflectorPacket {
    pub fn parse(bytes: &[u8]) -> Result<Self, TooShort> {
        if bytes.len() < MIN_PACKET_LEN {
            return Err(TooShort { len: bytes.len() });
        }
        Ok(ReflectorPacket {
            sequence: be_u32(&bytes[0..4]),
            timestamp: Timestamp(be_u64(&bytes[4..12])),
            error_estimate: ErrorEstimate(be_u16(&bytes[12..14])),
            receive_timestamp: Timestamp(be_u64(&bytes[16..24])),
            sender_sequence: be_u32(&bytes[24..28]),
            sender_timestamp: Timestamp(be_u64(&bytes[28..36])),
            sender_error_estimate: ErrorEstimate(be_u16(&bytes[36..38])),
            sender_ttl: bytes[40],
            padding_len: bytes.len() - MIN_PACKET_LEN,
        })
    }

    pub fn len(&self) -> usize {
        MIN_PACKET_LEN + self.padding_len
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn emit(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        out[0..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..12].copy_from_slice(&self.timestamp.0.to_be_bytes());
        out[12..14].copy_from_slice(&self.error_estimate.0.to_be_bytes());
        out[16..24].copy_from_slice(&self.receive_timestamp.0.to_be_bytes());
        out[24..28].copy_from_slice(&self.sender_sequence.to_be_bytes());
        out[28..36].copy_from_slice(&self.sender_timestamp.0.to_be_bytes());
        out[36..38].copy_from_slice(&self.sender_error_estimate.0.to_be_bytes());
        out[40] = self.sender_ttl;
        out
    }
}

fn be_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A sender packet written octet by octet from RFC 8762 Figure 2: sequence 0x01020304,
    /// NTP timestamp seconds 0xE4B5_2A80 fraction 0x8000_0000, error estimate S=1 Z=0 scale 2
    /// multiplier 5, then 30 zero octets.
    fn rfc_sender_bytes() -> Vec<u8> {
        let mut bytes = vec![
            0x01,
            0x02,
            0x03,
            0x04, // sequence number
            0xE4,
            0xB5,
            0x2A,
            0x80,
            0x80,
            0x00,
            0x00,
            0x00, // timestamp
            0b1000_0010,
            0x05, // S=1 Z=0 scale=2, multiplier=5
        ];
        bytes.extend_from_slice(&[0u8; 30]);
        bytes
    }

    #[test]
    fn sender_known_answer() {
        let bytes = rfc_sender_bytes();
        assert_eq!(bytes.len(), 44);
        let packet = SenderPacket::parse(&bytes).unwrap();
        assert_eq!(packet.sequence, 0x0102_0304);
        assert_eq!(packet.timestamp.seconds(), 0xE4B5_2A80);
        assert_eq!(packet.timestamp.low(), 0x8000_0000);
        assert!(packet.error_estimate.synchronised());
        assert_eq!(packet.error_estimate.format(), TimestampFormat::Ntp);
        assert_eq!(packet.error_estimate.scale(), 2);
        assert_eq!(packet.error_estimate.multiplier(), 5);
        assert_eq!(packet.padding_len, 0);
        assert_eq!(packet.emit(), bytes);
    }

    #[test]
    fn reflector_known_answer() {
        let mut bytes = vec![0u8; 60];
        bytes[0..4].copy_from_slice(&[0, 0, 0, 7]); // reflector sequence
        bytes[4..12].copy_from_slice(&[0x65, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0xF4]); // T3
        bytes[12..14].copy_from_slice(&[0x40, 0x01]); // Z=1 (PTPv2), multiplier 1
        bytes[16..24].copy_from_slice(&[0x65, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x64]); // T2
        bytes[24..28].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFE]); // sender sequence
        bytes[28..36].copy_from_slice(&[0x65, 0x00, 0x00, 0x01, 0x3B, 0x9A, 0xC9, 0xFF]); // T1
        bytes[36..38].copy_from_slice(&[0x41, 0x10]); // Z=1 scale=1 multiplier=16
        bytes[40] = 64; // sender TTL
        let packet = ReflectorPacket::parse(&bytes).unwrap();
        assert_eq!(packet.sequence, 7);
        assert_eq!(packet.error_estimate.format(), TimestampFormat::Ptp);
        assert!(!packet.error_estimate.synchronised());
        assert_eq!(
            packet.timestamp.to_unix_nanos(TimestampFormat::Ptp),
            0x6500_0002_i128 * 1_000_000_000 + 500
        );
        assert_eq!(
            packet.receive_timestamp.to_unix_nanos(TimestampFormat::Ptp),
            0x6500_0002_i128 * 1_000_000_000 + 100
        );
        assert_eq!(packet.sender_sequence, 0xFFFF_FFFE);
        assert_eq!(
            packet.sender_timestamp.to_unix_nanos(TimestampFormat::Ptp),
            0x6500_0001_i128 * 1_000_000_000 + 999_999_999
        );
        assert_eq!(packet.sender_error_estimate.scale(), 1);
        assert_eq!(packet.sender_error_estimate.multiplier(), 16);
        assert_eq!(packet.sender_ttl, 64);
        assert_eq!(packet.padding_len, 16);
        assert_eq!(packet.emit(), bytes);
    }

    #[test]
    fn short_packets_are_refused() {
        assert_eq!(SenderPacket::parse(&[0u8; 43]), Err(TooShort { len: 43 }));
        assert_eq!(ReflectorPacket::parse(&[]), Err(TooShort { len: 0 }));
    }

    #[test]
    fn ntp_timestamps_known_answers() {
        // 1970-01-01T00:00:00.5 is NTP seconds 2208988800 (0x83AA7E80), fraction 2^31.
        let half = Timestamp::from_unix(Duration::from_millis(500), TimestampFormat::Ntp);
        assert_eq!(half.0, 0x83AA_7E80_8000_0000);
        assert_eq!(half.to_unix_nanos(TimestampFormat::Ntp), 500_000_000);
        // 2036-02-07T06:28:16 is the start of NTP era 1: seconds field 0.
        let era1 = Timestamp::from_unix(Duration::from_secs(2_085_978_496), TimestampFormat::Ntp);
        assert_eq!(era1.0, 0);
        assert_eq!(
            era1.to_unix_nanos(TimestampFormat::Ntp),
            2_085_978_496_000_000_000
        );
        let ptp = Timestamp::from_unix(Duration::new(1_700_000_000, 123), TimestampFormat::Ptp);
        assert_eq!(ptp.0, (1_700_000_000u64 << 32) | 123);
    }

    #[test]
    fn error_estimate_encoding() {
        // 1 µs = 4294.97 units of 2^-32 s: scale 5 (32 units) gives multiplier ceil(134.2) = 135.
        let estimate = ErrorEstimate::new(false, TimestampFormat::Ntp, Duration::from_micros(1));
        assert_eq!(estimate.scale(), 5);
        assert_eq!(estimate.multiplier(), 135);
        assert_eq!(estimate.0, 0x0587);
        assert!(estimate.error_seconds() >= 1e-6 && estimate.error_seconds() < 1.01e-6);
        let ptp = ErrorEstimate::new(true, TimestampFormat::Ptp, Duration::ZERO);
        assert_eq!(ptp.0, 0xC001);
    }

    fn valid_packet(padding: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 44..=44).prop_map(move |mut bytes| {
            for mbz in [14..16, 38..40, 41..44] {
                bytes[mbz].fill(0);
            }
            bytes.resize(44 + padding, 0);
            bytes
        })
    }

    proptest! {
        #[test]
        fn reflector_round_trip(bytes in (0usize..64).prop_flat_map(valid_packet)) {
            let packet = ReflectorPacket::parse(&bytes).unwrap();
            prop_assert_eq!(packet.emit(), bytes);
        }

        #[test]
        fn sender_round_trip(mut bytes in (0usize..64).prop_flat_map(valid_packet)) {
            bytes[14..44].fill(0);
            let packet = SenderPacket::parse(&bytes).unwrap();
            prop_assert_eq!(packet.emit(), bytes);
        }

        #[test]
        fn timestamps_round_trip(seconds in 0u64..2_085_978_496, nanos in 0u32..1_000_000_000) {
            let time = Duration::new(seconds, nanos);
            for format in [TimestampFormat::Ntp, TimestampFormat::Ptp] {
                let stamp = Timestamp::from_unix(time, format);
                prop_assert_eq!(stamp.to_unix_nanos(format), time.as_nanos() as i128);
            }
        }
    }
}
