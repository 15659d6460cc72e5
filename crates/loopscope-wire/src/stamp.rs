//! STAMP test packets (RFC 8762, with the SSID and TLVs of RFC 8972): the Session-Sender and
//! Session-Reflector packets in unauthenticated and authenticated mode, as views
//! ([`SenderPacket`], [`ReflectorPacket`]) and parsed forms ([`SenderRepr`], [`ReflectorRepr`]),
//! the timestamp formats and the Error Estimate, and the TLVs that may follow the base packet
//! ([`Tlv`], [`TlvIter`]).
//!
//! Hand-written rather than taken from a crate: no maintained crate carries the STAMP layout.
//! TWAMP-Light test packets (RFC 5357 §4.1.2, §4.2.1) share these layouts.
//!
//! Unauthenticated Session-Sender packet (RFC 8762 Figure 2, RFC 8972 Figure 1):
//!
//! ```text
//! 0-3   Sequence Number
//! 4-11  Timestamp
//! 12-13 Error Estimate
//! 14-15 SSID (RFC 8972; MBZ in RFC 8762)
//! 16-43 MBZ
//! 44-   TLVs or padding
//! ```
//!
//! Unauthenticated Session-Reflector packet (RFC 8762 Figure 4, RFC 8972 Figure 3):
//!
//! ```text
//! 0-3   Sequence Number          24-27 Session-Sender Sequence Number
//! 4-11  Timestamp (T3)           28-35 Session-Sender Timestamp (T1)
//! 12-13 Error Estimate           36-37 Session-Sender Error Estimate
//! 14-15 SSID                     38-39 MBZ
//! 16-23 Receive Timestamp (T2)   40    Session-Sender TTL, 41-43 MBZ
//! ```
//!
//! Authenticated mode (RFC 8762 Figures 3 and 5) spreads the same fields over 96 octets with
//! MBZ blocks between them and appends a 16-octet HMAC: 112 octets before any TLV.

use std::time::Duration;

/// The unauthenticated packets are at least this long (RFC 8762 §4.2.1, §4.3.1).
pub const MIN_PACKET_LEN: usize = 44;
/// A TWAMP-Light Session-Reflector packet, unauthenticated, is at least this long (RFC 5357
/// §4.2.1: the Sender TTL is its 41st octet); a sender packet must be too, or the reply would
/// be larger than the request.
pub const MIN_TWAMP_LIGHT_LEN: usize = 41;
/// The authenticated packets are at least this long (RFC 8762 §4.2.2, §4.3.2).
pub const MIN_AUTH_PACKET_LEN: usize = 112;
/// The HMAC of an authenticated packet: HMAC-SHA-256 truncated to 128 bits (RFC 8762 §4.4).
pub const HMAC_LEN: usize = 16;
/// Octets of an authenticated packet the HMAC covers (RFC 8762 §4.2.2: everything before it).
pub const AUTH_HMAC_COVERS: usize = 96;
/// Seconds from the NTP era 0 origin (1900-01-01) to the Unix epoch (RFC 5905 §6).
pub const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// Why bytes are not a STAMP packet or TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// Shorter than the base packet of its mode.
    #[error("STAMP packet of {len} octets is shorter than the {min}-octet minimum")]
    Truncated {
        /// Octets given.
        len: usize,
        /// The mode's minimum.
        min: usize,
    },
    /// A TLV whose header or value runs past the end of the packet.
    #[error("STAMP TLV at octet {offset} runs past the end of the packet")]
    TruncatedTlv {
        /// Where the TLV starts, counted from the first TLV.
        offset: usize,
    },
}

/// Unauthenticated or authenticated mode (RFC 8762 §4.2.1, §4.2.2): they lay the fields out
/// differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// 44-octet base packets.
    #[default]
    Unauthenticated,
    /// 112-octet base packets ending with an HMAC.
    Authenticated,
    /// TWAMP-Light test packets (RFC 5357 Appendix I, unauthenticated): STAMP's
    /// unauthenticated layout, 41-octet base packets, no TLVs (what follows is padding).
    TwampLight,
}

impl Mode {
    /// Length of the base packet, before TLVs.
    pub fn base_len(self) -> usize {
        match self {
            Mode::Unauthenticated => MIN_PACKET_LEN,
            Mode::Authenticated => MIN_AUTH_PACKET_LEN,
            Mode::TwampLight => MIN_TWAMP_LIGHT_LEN,
        }
    }
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

    /// The seconds field.
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

    /// The S bit: the clock is synchronised to UTC by an external source.
    pub fn synchronised(self) -> bool {
        self.0 & 0x8000 != 0
    }

    /// The format the Z bit names.
    pub fn format(self) -> TimestampFormat {
        if self.0 & 0x4000 != 0 {
            TimestampFormat::Ptp
        } else {
            TimestampFormat::Ntp
        }
    }

    /// The 6-bit Scale.
    pub fn scale(self) -> u8 {
        ((self.0 >> 8) & 0x3F) as u8
    }

    /// The Multiplier.
    pub fn multiplier(self) -> u8 {
        self.0 as u8
    }

    /// The error in seconds (Multiplier × 2^(Scale − 32)).
    pub fn error_seconds(self) -> f64 {
        f64::from(self.multiplier()) * 2f64.powi(i32::from(self.scale()) - 32)
    }
}

/// Where a packet's fields sit in one mode.
struct SenderLayout {
    timestamp: usize,
    error_estimate: usize,
}

const fn sender_layout(mode: Mode) -> SenderLayout {
    match mode {
        Mode::Unauthenticated | Mode::TwampLight => SenderLayout {
            timestamp: 4,
            error_estimate: 12,
        },
        Mode::Authenticated => SenderLayout {
            timestamp: 16,
            error_estimate: 24,
        },
    }
}

struct ReflectorLayout {
    timestamp: usize,
    error_estimate: usize,
    receive_timestamp: usize,
    sender_sequence: usize,
    sender_timestamp: usize,
    sender_error_estimate: usize,
    sender_ttl: usize,
}

const fn reflector_layout(mode: Mode) -> ReflectorLayout {
    match mode {
        Mode::Unauthenticated | Mode::TwampLight => ReflectorLayout {
            timestamp: 4,
            error_estimate: 12,
            receive_timestamp: 16,
            sender_sequence: 24,
            sender_timestamp: 28,
            sender_error_estimate: 36,
            sender_ttl: 40,
        },
        Mode::Authenticated => ReflectorLayout {
            timestamp: 16,
            error_estimate: 24,
            receive_timestamp: 32,
            sender_sequence: 48,
            sender_timestamp: 64,
            sender_error_estimate: 72,
            sender_ttl: 80,
        },
    }
}

fn check_len(bytes: &[u8], mode: Mode) -> Result<(), StampError> {
    let min = mode.base_len();
    if bytes.len() < min {
        return Err(StampError::Truncated {
            len: bytes.len(),
            min,
        });
    }
    Ok(())
}

fn get_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn get_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}

/// The SSID follows the Error Estimate in every layout (RFC 8972 §3).
fn ssid_at(error_estimate: usize) -> usize {
    error_estimate + 2
}

/// Which end wrote a packet: the two lay the same base fields (sequence, timestamp, error
/// estimate, SSID, HMAC, tail) at offsets of their own.
pub trait Role: Copy {
    /// Where the Timestamp and the Error Estimate sit in `mode`.
    #[doc(hidden)]
    fn timestamp_and_error_estimate(mode: Mode) -> (usize, usize);
}

/// A Session-Sender packet (RFC 8762 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender;

/// A Session-Reflector packet (RFC 8762 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reflector;

impl Role for Sender {
    fn timestamp_and_error_estimate(mode: Mode) -> (usize, usize) {
        let layout = sender_layout(mode);
        (layout.timestamp, layout.error_estimate)
    }
}

impl Role for Reflector {
    fn timestamp_and_error_estimate(mode: Mode) -> (usize, usize) {
        let layout = reflector_layout(mode);
        (layout.timestamp, layout.error_estimate)
    }
}

/// A view of a STAMP test packet of either end ([`SenderPacket`], [`ReflectorPacket`]).
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>, R: Role> {
    buffer: T,
    mode: Mode,
    role: std::marker::PhantomData<R>,
}

/// A view of a Session-Sender test packet.
pub type SenderPacket<T> = Packet<T, Sender>;
/// A view of a Session-Reflector test packet.
pub type ReflectorPacket<T> = Packet<T, Reflector>;

impl<T: AsRef<[u8]>, R: Role> Packet<T, R> {
    /// Wraps `buffer` after checking it holds the base packet of `mode`.
    pub fn new_checked(buffer: T, mode: Mode) -> Result<Self, StampError> {
        check_len(buffer.as_ref(), mode)?;
        Ok(Packet {
            buffer,
            mode,
            role: std::marker::PhantomData,
        })
    }

    /// The mode the view reads.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Sequence Number (the reflector's own, in a reflector packet).
    pub fn sequence(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 0)
    }

    /// Timestamp (T1 from the sender, T3 from the reflector).
    pub fn timestamp(&self) -> Timestamp {
        let (at, _) = R::timestamp_and_error_estimate(self.mode);
        Timestamp(get_u64(self.buffer.as_ref(), at))
    }

    /// Error Estimate of the end that wrote the packet.
    pub fn error_estimate(&self) -> ErrorEstimate {
        let (_, at) = R::timestamp_and_error_estimate(self.mode);
        ErrorEstimate(get_u16(self.buffer.as_ref(), at))
    }

    /// STAMP Session Identifier (RFC 8972 §3; zero from an RFC 8762 sender).
    pub fn ssid(&self) -> u16 {
        let (_, at) = R::timestamp_and_error_estimate(self.mode);
        get_u16(self.buffer.as_ref(), ssid_at(at))
    }

    /// The HMAC of an authenticated packet.
    pub fn hmac(&self) -> Option<&[u8]> {
        (self.mode == Mode::Authenticated)
            .then(|| &self.buffer.as_ref()[AUTH_HMAC_COVERS..MIN_AUTH_PACKET_LEN])
    }

    /// The octets the HMAC covers (authenticated mode).
    pub fn hmac_covered(&self) -> &[u8] {
        &self.buffer.as_ref()[..AUTH_HMAC_COVERS.min(self.mode.base_len())]
    }

    /// What follows the base packet: RFC 8972 TLVs, or RFC 8762 padding.
    pub fn tail(&self) -> &[u8] {
        &self.buffer.as_ref()[self.mode.base_len()..]
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>, R: Role> Packet<T, R> {
    /// Sets the Sequence Number.
    pub fn set_sequence(&mut self, value: u32) {
        self.buffer.as_mut()[0..4].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the Timestamp (for a reflector, T3: the last field written before a reply leaves).
    pub fn set_timestamp(&mut self, value: Timestamp) {
        let (at, _) = R::timestamp_and_error_estimate(self.mode);
        self.buffer.as_mut()[at..at + 8].copy_from_slice(&value.0.to_be_bytes());
    }

    /// Sets the Error Estimate.
    pub fn set_error_estimate(&mut self, value: ErrorEstimate) {
        let (_, at) = R::timestamp_and_error_estimate(self.mode);
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.0.to_be_bytes());
    }

    /// The HMAC field of an authenticated packet, to be filled in.
    pub fn hmac_mut(&mut self) -> Option<&mut [u8]> {
        (self.mode == Mode::Authenticated)
            .then(|| &mut self.buffer.as_mut()[AUTH_HMAC_COVERS..MIN_AUTH_PACKET_LEN])
    }

    /// What follows the base packet, to be filled in.
    pub fn tail_mut(&mut self) -> &mut [u8] {
        let base = self.mode.base_len();
        &mut self.buffer.as_mut()[base..]
    }
}

/// A Session-Sender test packet, parsed (the base packet; TLVs are read with [`TlvIter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderRepr {
    /// Sequence Number.
    pub sequence: u32,
    /// Timestamp (T1).
    pub timestamp: Timestamp,
    /// Error Estimate.
    pub error_estimate: ErrorEstimate,
    /// SSID (RFC 8972 §3).
    pub ssid: u16,
}

impl SenderRepr {
    /// Reads a checked view; MBZ fields are ignored on receipt (RFC 8762 §4.2.1).
    pub fn parse<T: AsRef<[u8]>>(packet: &SenderPacket<T>) -> Self {
        SenderRepr {
            sequence: packet.sequence(),
            timestamp: packet.timestamp(),
            error_estimate: packet.error_estimate(),
            ssid: packet.ssid(),
        }
    }

    /// Writes the base packet of `mode` into the start of `buffer`, MBZ octets and any HMAC
    /// zeroed; what follows the base packet is left as it is.
    ///
    /// # Errors
    /// [`StampError::Truncated`] when `buffer` is shorter than the base packet.
    pub fn emit(&self, buffer: &mut [u8], mode: Mode) -> Result<(), StampError> {
        check_len(buffer, mode)?;
        let layout = sender_layout(mode);
        buffer[..mode.base_len()].fill(0);
        buffer[0..4].copy_from_slice(&self.sequence.to_be_bytes());
        buffer[layout.timestamp..layout.timestamp + 8]
            .copy_from_slice(&self.timestamp.0.to_be_bytes());
        let ee = layout.error_estimate;
        buffer[ee..ee + 2].copy_from_slice(&self.error_estimate.0.to_be_bytes());
        buffer[ee + 2..ee + 4].copy_from_slice(&self.ssid.to_be_bytes());
        Ok(())
    }
}

impl<T: AsRef<[u8]>> Packet<T, Reflector> {
    /// Receive Timestamp (T2).
    pub fn receive_timestamp(&self) -> Timestamp {
        let at = reflector_layout(self.mode).receive_timestamp;
        Timestamp(get_u64(self.buffer.as_ref(), at))
    }

    /// Session-Sender Sequence Number.
    pub fn sender_sequence(&self) -> u32 {
        get_u32(
            self.buffer.as_ref(),
            reflector_layout(self.mode).sender_sequence,
        )
    }

    /// Session-Sender Timestamp (T1).
    pub fn sender_timestamp(&self) -> Timestamp {
        let at = reflector_layout(self.mode).sender_timestamp;
        Timestamp(get_u64(self.buffer.as_ref(), at))
    }

    /// Session-Sender Error Estimate.
    pub fn sender_error_estimate(&self) -> ErrorEstimate {
        let at = reflector_layout(self.mode).sender_error_estimate;
        ErrorEstimate(get_u16(self.buffer.as_ref(), at))
    }

    /// Session-Sender TTL (or Hop Limit) as the reflector received it.
    pub fn sender_ttl(&self) -> u8 {
        self.buffer.as_ref()[reflector_layout(self.mode).sender_ttl]
    }
}

/// A Session-Reflector test packet, parsed (the base packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReflectorRepr {
    /// The reflector's Sequence Number (the sender's, from a stateless reflector).
    pub sequence: u32,
    /// T3: when the reflector sent this packet.
    pub timestamp: Timestamp,
    /// The reflector's Error Estimate.
    pub error_estimate: ErrorEstimate,
    /// SSID (RFC 8972 §3), copied from the sender's packet.
    pub ssid: u16,
    /// T2: when the reflector received the sender's packet.
    pub receive_timestamp: Timestamp,
    /// Session-Sender Sequence Number.
    pub sender_sequence: u32,
    /// T1, copied from the sender's packet.
    pub sender_timestamp: Timestamp,
    /// The sender's Error Estimate, copied.
    pub sender_error_estimate: ErrorEstimate,
    /// The TTL or hop limit of the sender's packet as the reflector received it.
    pub sender_ttl: u8,
}

impl ReflectorRepr {
    /// Reads a checked view; MBZ fields are ignored.
    pub fn parse<T: AsRef<[u8]>>(packet: &ReflectorPacket<T>) -> Self {
        ReflectorRepr {
            sequence: packet.sequence(),
            timestamp: packet.timestamp(),
            error_estimate: packet.error_estimate(),
            ssid: packet.ssid(),
            receive_timestamp: packet.receive_timestamp(),
            sender_sequence: packet.sender_sequence(),
            sender_timestamp: packet.sender_timestamp(),
            sender_error_estimate: packet.sender_error_estimate(),
            sender_ttl: packet.sender_ttl(),
        }
    }

    /// Writes the base packet of `mode` into the start of `buffer`, MBZ octets and any HMAC
    /// zeroed; what follows the base packet is left as it is.
    ///
    /// # Errors
    /// [`StampError::Truncated`] when `buffer` is shorter than the base packet.
    pub fn emit(&self, buffer: &mut [u8], mode: Mode) -> Result<(), StampError> {
        check_len(buffer, mode)?;
        let layout = reflector_layout(mode);
        buffer[..mode.base_len()].fill(0);
        let mut put = |at: usize, bytes: &[u8]| buffer[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, &self.sequence.to_be_bytes());
        put(layout.timestamp, &self.timestamp.0.to_be_bytes());
        put(layout.error_estimate, &self.error_estimate.0.to_be_bytes());
        put(ssid_at(layout.error_estimate), &self.ssid.to_be_bytes());
        put(
            layout.receive_timestamp,
            &self.receive_timestamp.0.to_be_bytes(),
        );
        put(layout.sender_sequence, &self.sender_sequence.to_be_bytes());
        put(
            layout.sender_timestamp,
            &self.sender_timestamp.0.to_be_bytes(),
        );
        put(
            layout.sender_error_estimate,
            &self.sender_error_estimate.0.to_be_bytes(),
        );
        put(layout.sender_ttl, &[self.sender_ttl]);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 8972 TLVs

/// Length of a TLV header: flags, type, 16-bit length (RFC 8972 §4).
pub const TLV_HEADER_LEN: usize = 4;

/// The TLV flags (RFC 8972 §4): U, the reflector did not recognise the type; M, the TLV was
/// malformed; I, its integrity check failed.
pub mod tlv_flags {
    /// Unrecognised.
    pub const U: u8 = 0x80;
    /// Malformed.
    pub const M: u8 = 0x40;
    /// Integrity check failed.
    pub const I: u8 = 0x20;
}

/// The STAMP TLV types (RFC 8972 §6, IANA "STAMP TLV Types").
pub mod tlv_type {
    /// Extra Padding (§4.1).
    pub const EXTRA_PADDING: u8 = 1;
    /// Location (§4.2).
    pub const LOCATION: u8 = 2;
    /// Timestamp Information (§4.3).
    pub const TIMESTAMP_INFORMATION: u8 = 3;
    /// Class of Service (§4.4).
    pub const CLASS_OF_SERVICE: u8 = 4;
    /// Direct Measurement (§4.5).
    pub const DIRECT_MEASUREMENT: u8 = 5;
    /// Access Report (§4.6).
    pub const ACCESS_REPORT: u8 = 6;
    /// Follow-Up Telemetry (§4.7).
    pub const FOLLOW_UP_TELEMETRY: u8 = 7;
    /// HMAC (§4.8).
    pub const HMAC: u8 = 8;
}

/// The length of each fixed-size TLV's value (RFC 8972 §4.3-§4.8).
pub mod tlv_len {
    /// Timestamp Information: four one-octet fields (sub-TLVs may follow).
    pub const TIMESTAMP_INFORMATION: usize = 4;
    /// Class of Service: DSCP1, DSCP2, ECN, RP and 16 reserved bits.
    pub const CLASS_OF_SERVICE: usize = 4;
    /// Direct Measurement: S_TxC, R_RxC, R_TxC.
    pub const DIRECT_MEASUREMENT: usize = 12;
    /// Access Report: Access ID, Return Code, reserved.
    pub const ACCESS_REPORT: usize = 4;
    /// Follow-Up Telemetry: sequence number, timestamp, mode, reserved.
    pub const FOLLOW_UP_TELEMETRY: usize = 16;
    /// HMAC: HMAC-SHA-256 truncated to 128 bits.
    pub const HMAC: usize = 16;
    /// Location: destination and source port before the sub-TLVs.
    pub const LOCATION_PORTS: usize = 4;
}

/// The Location TLV's sub-TLV types (RFC 8972 §4.2.1, IANA "STAMP Sub-TLV Types"): a sender
/// asks with a generic type (1, 4, 7) and the reflector answers with the specific one.
pub mod location_sub_tlv {
    /// Source MAC Address (generic request, 8 octets).
    pub const SOURCE_MAC: u8 = 1;
    /// Source EUI-48 Address (6 octets and 2 MBZ).
    pub const SOURCE_EUI48: u8 = 2;
    /// Source EUI-64 Address.
    pub const SOURCE_EUI64: u8 = 3;
    /// Destination IP Address (generic request, 16 octets).
    pub const DESTINATION_IP: u8 = 4;
    /// Destination IPv4 Address (4 octets and 12 MBZ).
    pub const DESTINATION_IPV4: u8 = 5;
    /// Destination IPv6 Address.
    pub const DESTINATION_IPV6: u8 = 6;
    /// Source IP Address (generic request, 16 octets).
    pub const SOURCE_IP: u8 = 7;
    /// Source IPv4 Address (4 octets and 12 MBZ).
    pub const SOURCE_IPV4: u8 = 8;
    /// Source IPv6 Address.
    pub const SOURCE_IPV6: u8 = 9;
    /// The value length of the MAC types (1-3).
    pub const MAC_LEN: usize = 8;
    /// The value length of the address types (4-9).
    pub const ADDRESS_LEN: usize = 16;
}

/// Synchronisation sources of the Timestamp Information TLV (RFC 8972 §4.3, IANA "STAMP
/// Synchronization Source").
pub mod sync_source {
    /// NTP.
    pub const NTP: u8 = 1;
    /// PTP.
    pub const PTP: u8 = 2;
    /// SSU/BITS.
    pub const SSU_BITS: u8 = 3;
    /// GPS, GLONASS, LORAN-C, BDS or Galileo.
    pub const GNSS: u8 = 4;
    /// Local free-running clock.
    pub const FREE_RUNNING: u8 = 5;
}

/// Timestamping methods of the Timestamp Information and Follow-Up Telemetry TLVs
/// (RFC 8972 §4.3, §4.7, IANA "STAMP Timestamping Method").
pub mod timestamp_method {
    /// Hardware-assisted.
    pub const HARDWARE: u8 = 1;
    /// Software local.
    pub const SOFTWARE: u8 = 2;
    /// Control plane.
    pub const CONTROL_PLANE: u8 = 3;
}

/// A view of one TLV (or Location sub-TLV, which has the same header).
#[derive(Debug, Clone, Copy)]
pub struct Tlv<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Tlv<T> {
    /// Wraps `buffer`, which must hold the header and exactly the value its length names.
    pub fn new_checked(buffer: T) -> Result<Self, StampError> {
        let bytes = buffer.as_ref();
        if bytes.len() < TLV_HEADER_LEN
            || bytes.len() != TLV_HEADER_LEN + usize::from(get_u16(bytes, 2))
        {
            return Err(StampError::TruncatedTlv { offset: 0 });
        }
        Ok(Tlv { buffer })
    }

    /// Flags (see [`tlv_flags`]).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Type (see [`tlv_type`]).
    pub fn tlv_type(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Length of the value.
    pub fn length(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2)
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        &self.buffer.as_ref()[TLV_HEADER_LEN..]
    }

    /// Header and value.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Tlv<T> {
    /// Sets the flags.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[0] = flags;
    }

    /// The value, to be filled in.
    pub fn value_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[TLV_HEADER_LEN..]
    }
}

/// Writes a TLV header and `value` into the start of `buffer`; returns the octets written.
///
/// # Errors
/// [`StampError::TruncatedTlv`] when `buffer` has no room or `value` exceeds 65,535 octets.
pub fn emit_tlv(
    buffer: &mut [u8],
    flags: u8,
    tlv_type: u8,
    value: &[u8],
) -> Result<usize, StampError> {
    let total = TLV_HEADER_LEN + value.len();
    let length = u16::try_from(value.len()).map_err(|_| StampError::TruncatedTlv { offset: 0 })?;
    if buffer.len() < total {
        return Err(StampError::TruncatedTlv { offset: 0 });
    }
    buffer[0] = flags;
    buffer[1] = tlv_type;
    buffer[2..4].copy_from_slice(&length.to_be_bytes());
    buffer[TLV_HEADER_LEN..total].copy_from_slice(value);
    Ok(total)
}

/// The TLVs in the tail of a packet, in order, each with its offset in the tail. A TLV that
/// runs past the end is returned once as an error, and the iteration ends.
#[derive(Debug, Clone)]
pub struct TlvIter<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> TlvIter<'a> {
    /// Iterates over the TLVs of `tail` (a packet's [`SenderPacket::tail`]).
    pub fn new(tail: &'a [u8]) -> Self {
        TlvIter {
            bytes: tail,
            offset: 0,
        }
    }
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<(usize, Tlv<&'a [u8]>), StampError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.bytes[self.offset..];
        if rest.is_empty() {
            return None;
        }
        let offset = self.offset;
        if rest.len() < TLV_HEADER_LEN {
            self.offset = self.bytes.len();
            return Some(Err(StampError::TruncatedTlv { offset }));
        }
        let total = TLV_HEADER_LEN + usize::from(get_u16(rest, 2));
        if rest.len() < total {
            self.offset = self.bytes.len();
            return Some(Err(StampError::TruncatedTlv { offset }));
        }
        self.offset += total;
        Some(Ok((
            offset,
            Tlv {
                buffer: &rest[..total],
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A sender packet written octet by octet from RFC 8762 Figure 2: sequence 0x01020304,
    /// NTP timestamp seconds 0xE4B5_2A80 fraction 0x8000_0000, error estimate S=1 Z=0 scale 2
    /// multiplier 5, SSID 0xBEEF (RFC 8972 Figure 1), then 28 zero octets.
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
            0xBE,
            0xEF, // SSID
        ];
        bytes.extend_from_slice(&[0u8; 28]);
        bytes
    }

    #[test]
    fn sender_known_answer() {
        let bytes = rfc_sender_bytes();
        assert_eq!(bytes.len(), 44);
        let view = SenderPacket::new_checked(&bytes[..], Mode::Unauthenticated).unwrap();
        let packet = SenderRepr::parse(&view);
        assert_eq!(packet.sequence, 0x0102_0304);
        assert_eq!(packet.timestamp.seconds(), 0xE4B5_2A80);
        assert_eq!(packet.timestamp.low(), 0x8000_0000);
        assert!(packet.error_estimate.synchronised());
        assert_eq!(packet.error_estimate.format(), TimestampFormat::Ntp);
        assert_eq!(packet.error_estimate.scale(), 2);
        assert_eq!(packet.error_estimate.multiplier(), 5);
        assert_eq!(packet.ssid, 0xBEEF);
        assert!(view.tail().is_empty());
        assert_eq!(view.hmac(), None);
        let mut out = vec![0xAAu8; 44];
        packet.emit(&mut out, Mode::Unauthenticated).unwrap();
        assert_eq!(out, bytes);
    }

    /// RFC 8762 Figure 3: sequence, 12 MBZ, timestamp, error estimate, (SSID,) 68 MBZ, HMAC.
    #[test]
    fn authenticated_sender_known_answer() {
        let mut bytes = [0u8; 112];
        bytes[0..4].copy_from_slice(&[0, 0, 1, 0]);
        bytes[16..24].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        bytes[24..26].copy_from_slice(&[0x40, 0x01]);
        bytes[26..28].copy_from_slice(&[0x12, 0x34]);
        bytes[96..112].copy_from_slice(&[0xCC; 16]);
        let view = SenderPacket::new_checked(&bytes[..], Mode::Authenticated).unwrap();
        let packet = SenderRepr::parse(&view);
        assert_eq!(packet.sequence, 256);
        assert_eq!(packet.timestamp.0, 0x0102_0304_0506_0708);
        assert_eq!(packet.error_estimate.format(), TimestampFormat::Ptp);
        assert_eq!(packet.ssid, 0x1234);
        assert_eq!(view.hmac(), Some(&[0xCC; 16][..]));
        assert_eq!(view.hmac_covered(), &bytes[..96]);
        let mut out = vec![0xAAu8; 112];
        packet.emit(&mut out, Mode::Authenticated).unwrap();
        assert_eq!(out[..96], bytes[..96]);
        assert_eq!(
            out[96..],
            [0u8; 16],
            "emit leaves the HMAC zeroed for the signer"
        );
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
        let view = ReflectorPacket::new_checked(&bytes[..], Mode::Unauthenticated).unwrap();
        let packet = ReflectorRepr::parse(&view);
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
        assert_eq!(view.tail().len(), 16);
        let mut out = vec![0u8; 60];
        packet.emit(&mut out, Mode::Unauthenticated).unwrap();
        assert_eq!(out, bytes);
    }

    /// RFC 8762 Figure 5 (TWAMP's RFC 5357 §4.2.1 authenticated reflector layout).
    #[test]
    fn authenticated_reflector_offsets() {
        let mut bytes = vec![0u8; 112];
        bytes[0..4].copy_from_slice(&9u32.to_be_bytes());
        bytes[16..24].copy_from_slice(&3u64.to_be_bytes());
        bytes[24..26].copy_from_slice(&[0x80, 0x01]);
        bytes[32..40].copy_from_slice(&2u64.to_be_bytes());
        bytes[48..52].copy_from_slice(&8u32.to_be_bytes());
        bytes[64..72].copy_from_slice(&1u64.to_be_bytes());
        bytes[72..74].copy_from_slice(&[0x00, 0x02]);
        bytes[80] = 255;
        let view = ReflectorPacket::new_checked(&bytes[..], Mode::Authenticated).unwrap();
        let packet = ReflectorRepr::parse(&view);
        assert_eq!(
            (packet.sequence, packet.sender_sequence, packet.sender_ttl),
            (9, 8, 255)
        );
        assert_eq!(
            (
                packet.timestamp.0,
                packet.receive_timestamp.0,
                packet.sender_timestamp.0
            ),
            (3, 2, 1)
        );
        assert!(packet.error_estimate.synchronised());
        assert_eq!(packet.sender_error_estimate.multiplier(), 2);
        let mut out = vec![0u8; 112];
        packet.emit(&mut out, Mode::Authenticated).unwrap();
        assert_eq!(out, bytes);
    }

    /// RFC 5357 §4.2.1's 41-octet reflector packet: the Sender TTL is the last octet.
    #[test]
    fn twamp_light_reflector_packet() {
        let mut bytes = [0u8; 41];
        bytes[0..4].copy_from_slice(&3u32.to_be_bytes());
        bytes[24..28].copy_from_slice(&3u32.to_be_bytes());
        bytes[40] = 255;
        let view = ReflectorPacket::new_checked(&bytes[..], Mode::TwampLight).unwrap();
        let repr = ReflectorRepr::parse(&view);
        assert_eq!(
            (repr.sequence, repr.sender_sequence, repr.sender_ttl),
            (3, 3, 255)
        );
        assert!(view.tail().is_empty());
        assert!(ReflectorPacket::new_checked(&bytes[..40], Mode::TwampLight).is_err());
        let mut out = [0u8; 41];
        repr.emit(&mut out, Mode::TwampLight).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn short_packets_are_refused() {
        assert_eq!(
            SenderPacket::new_checked(&[0u8; 43][..], Mode::Unauthenticated).unwrap_err(),
            StampError::Truncated { len: 43, min: 44 }
        );
        assert_eq!(
            ReflectorPacket::new_checked(&[0u8; 111][..], Mode::Authenticated).unwrap_err(),
            StampError::Truncated { len: 111, min: 112 }
        );
        assert!(
            SenderRepr::parse(
                &SenderPacket::new_checked(&[0u8; 44][..], Mode::Unauthenticated).unwrap()
            )
            .emit(&mut [0u8; 43], Mode::Unauthenticated)
            .is_err()
        );
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

    /// A tail with an Extra Padding TLV (flags 0, type 1, length 3) and a Class of Service TLV
    /// with the U flag set, written octet by octet from RFC 8972 §4.
    #[test]
    fn tlvs_known_answer() {
        let tail = [
            0x00, 0x01, 0x00, 0x03, 0xAA, 0xBB, 0xCC, //
            0x80, 0x04, 0x00, 0x04, 0xB8, 0x00, 0x00, 0x00,
        ];
        let tlvs: Vec<_> = TlvIter::new(&tail).collect::<Result<_, _>>().unwrap();
        assert_eq!(tlvs.len(), 2);
        assert_eq!(tlvs[0].0, 0);
        assert_eq!(tlvs[0].1.tlv_type(), tlv_type::EXTRA_PADDING);
        assert_eq!(tlvs[0].1.value(), &[0xAA, 0xBB, 0xCC]);
        assert_eq!(tlvs[1].0, 7);
        assert_eq!(tlvs[1].1.flags(), tlv_flags::U);
        assert_eq!(tlvs[1].1.tlv_type(), tlv_type::CLASS_OF_SERVICE);
        assert_eq!(tlvs[1].1.length(), 4);
        let mut out = [0u8; 15];
        let n = emit_tlv(&mut out, 0, 1, &[0xAA, 0xBB, 0xCC]).unwrap();
        let m = emit_tlv(&mut out[n..], tlv_flags::U, 4, &[0xB8, 0, 0, 0]).unwrap();
        assert_eq!(n + m, 15);
        assert_eq!(out, tail);
    }

    #[test]
    fn truncated_tlvs_are_reported_once() {
        let tail = [0x00, 0x01, 0x00, 0x09, 0xAA];
        let items: Vec<_> = TlvIter::new(&tail).collect();
        assert_eq!(items.len(), 1);
        assert_eq!(
            items[0].as_ref().unwrap_err(),
            &StampError::TruncatedTlv { offset: 0 }
        );
        let items: Vec<_> = TlvIter::new(&[0x00, 0x01, 0x00, 0x00, 0x00]).collect();
        assert!(items[0].is_ok());
        assert_eq!(
            items[1].as_ref().unwrap_err(),
            &StampError::TruncatedTlv { offset: 4 }
        );
        assert!(Tlv::new_checked(&[0u8, 1, 0, 2, 9][..]).is_err());
    }

    /// Valid base packets of a mode: random fields, zeros in every MBZ octet.
    fn valid_reflector(mode: Mode) -> impl Strategy<Value = Vec<u8>> {
        (
            any::<[u32; 2]>(),
            any::<[u64; 3]>(),
            any::<[u16; 3]>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(move |(seqs, stamps, shorts, ttl, tail)| {
                let repr = ReflectorRepr {
                    sequence: seqs[0],
                    sender_sequence: seqs[1],
                    timestamp: Timestamp(stamps[0]),
                    receive_timestamp: Timestamp(stamps[1]),
                    sender_timestamp: Timestamp(stamps[2]),
                    error_estimate: ErrorEstimate(shorts[0]),
                    sender_error_estimate: ErrorEstimate(shorts[1]),
                    ssid: shorts[2],
                    sender_ttl: ttl,
                };
                let mut bytes = vec![0u8; mode.base_len()];
                repr.emit(&mut bytes, mode).unwrap();
                bytes.extend_from_slice(&tail);
                bytes
            })
    }

    fn any_mode() -> impl Strategy<Value = Mode> {
        prop_oneof![
            Just(Mode::Unauthenticated),
            Just(Mode::Authenticated),
            Just(Mode::TwampLight)
        ]
    }

    proptest! {
        /// emit(parse(x)) == x for every valid reflector packet, tail untouched.
        #[test]
        fn reflector_round_trip((mode, bytes) in any_mode().prop_flat_map(|m| (Just(m), valid_reflector(m)))) {
            let view = ReflectorPacket::new_checked(&bytes[..], mode).unwrap();
            let repr = ReflectorRepr::parse(&view);
            let mut out = bytes.clone();
            out[..mode.base_len()].fill(0xFF);
            repr.emit(&mut out, mode).unwrap();
            prop_assert_eq!(out, bytes);
        }

        /// What parse accepts (any bytes, MBZ octets and all), emit reproduces in every field
        /// that is not MBZ.
        #[test]
        fn sender_parse_emit_parse(mode in any_mode(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            match SenderPacket::new_checked(&bytes[..], mode) {
                Err(error) => prop_assert_eq!(error, StampError::Truncated { len: bytes.len(), min: mode.base_len() }),
                Ok(view) => {
                    let repr = SenderRepr::parse(&view);
                    let mut out = vec![0u8; bytes.len()];
                    repr.emit(&mut out, mode).unwrap();
                    let again = SenderRepr::parse(&SenderPacket::new_checked(&out[..], mode).unwrap());
                    prop_assert_eq!(again, repr);
                }
            }
        }

        /// TLVs emitted one after another are read back in order, whole.
        #[test]
        fn tlvs_round_trip(tlvs in proptest::collection::vec((any::<u8>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..8)) {
            let mut tail = vec![0u8; tlvs.iter().map(|t| 4 + t.2.len()).sum()];
            let mut at = 0;
            for (flags, kind, value) in &tlvs {
                at += emit_tlv(&mut tail[at..], *flags, *kind, value).unwrap();
            }
            let read: Vec<_> = TlvIter::new(&tail).map(|t| {
                let (_, tlv) = t.unwrap();
                (tlv.flags(), tlv.tlv_type(), tlv.value().to_vec())
            }).collect();
            prop_assert_eq!(read, tlvs);
        }

        /// Any tail is cut into TLVs that cover it exactly, or ends in one error.
        #[test]
        fn tlv_iteration_never_overruns(tail in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut covered = 0;
            for item in TlvIter::new(&tail) {
                match item {
                    Ok((offset, tlv)) => {
                        prop_assert_eq!(offset, covered);
                        covered += tlv.as_bytes().len();
                    }
                    Err(StampError::TruncatedTlv { offset }) => {
                        prop_assert_eq!(offset, covered);
                        covered = tail.len();
                    }
                    Err(other) => prop_assert!(false, "{other}"),
                }
            }
            prop_assert_eq!(covered, tail.len());
        }

        #[test]
        fn timestamps_round_trip(seconds in 0u64..2_085_978_496, nanos in 0u32..1_000_000_000) {
            let time = Duration::new(seconds, nanos);
            for format in [TimestampFormat::Ntp, TimestampFormat::Ptp] {
                let stamp = Timestamp::from_unix(time, format);
                prop_assert_eq!(stamp.to_unix_nanos(format), time.as_nanos() as i128);
            }
        }

        /// The encoded error is never below the one asked for, and within one multiplier step.
        #[test]
        fn error_estimate_bounds(nanos in 1u64..10_000_000_000) {
            let wanted = Duration::from_nanos(nanos);
            let estimate = ErrorEstimate::new(false, TimestampFormat::Ntp, wanted);
            let got = estimate.error_seconds();
            let step = 2f64.powi(i32::from(estimate.scale()) - 32);
            prop_assert!(got >= wanted.as_secs_f64() - 1e-15);
            prop_assert!(got - wanted.as_secs_f64() <= step + 1e-15);
        }
    }
}
