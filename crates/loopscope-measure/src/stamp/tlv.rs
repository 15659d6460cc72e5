//! RFC 8972 TLVs on both ends.
//!
//! Flags (RFC 8972 §4): the Session-Sender sends every TLV with U = 1, M = 0, I = 0; the
//! Session-Reflector clears U for each TLV it recognises and processes, leaves it set for
//! the others (so an RFC 8762 reflector that copies the tail back says "not processed"),
//! sets M on a malformed TLV and I on an HMAC TLV that does not verify.
//!
//! The reflector copies each TLV of the request into the reply (as long as the request) and:
//! - Extra Padding (type 1, §4.1): returned as it came;
//! - Location (2, §4.2): the destination and source ports the request arrived with, and the
//!   Destination / Source IP Address sub-TLVs answered with the IPv4 or IPv6 address seen
//!   (a Source MAC request is returned with the sub-TLV's U flag: a UDP socket never sees
//!   the frame);
//! - Timestamp Information (3, §4.3): the synchronisation source (NTP when adjtimex says the
//!   clock is synchronised, else the local free-running clock) and method (software) of T2
//!   and T3;
//! - Class of Service (4, §4.4): DSCP2 and ECN as received, RP 0; the reply leaves with DSCP1;
//! - Direct Measurement (5, §4.5): the session's receive and transmit counters (this packet
//!   and its reply included);
//! - Access Report (6, §4.6): recognised and returned as it came;
//! - Follow-Up Telemetry (7, §4.7): the sequence number of the session's previous reply and the
//!   kernel's transmit timestamp of it (zeros when there is none yet), method software;
//! - HMAC (8, §4.8), with a key: checked over the Sequence Number and the TLVs before it (I set
//!   when wrong, or when a TLV other than Extra Padding follows it), and recomputed over the
//!   reply's; without a key it is returned with U.
//!
//! A known TLV of the wrong length gets M; so does one that runs past the end, which ends the
//! walk. An all-zero tail is RFC 8762 padding, not a row of reserved type-0 TLVs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use loopscope_wire::stamp::{
    StampError, TLV_HEADER_LEN, Timestamp, TimestampFormat, TlvIter, location_sub_tlv, sync_source,
    timestamp_method, tlv_flags, tlv_len, tlv_type,
};

use super::StampKey;

/// What the reflector knows about a request and its session when it answers the TLVs.
#[derive(Debug, Clone, Copy)]
pub struct SessionFacts {
    /// The TOS octet (IPv4) or traffic class (IPv6) the request arrived with.
    pub received_tos: Option<u8>,
    /// The request's source.
    pub source: SocketAddr,
    /// The address and port the request was sent to.
    pub destination: Option<SocketAddr>,
    /// Test packets received in this session, this one included (R_RxC).
    pub received: u32,
    /// Replies sent in this session, this one included (R_TxC).
    pub transmitted: u32,
    /// The session's previous reply: its sequence number and kernel transmit timestamp.
    pub last_reply: Option<(u32, Option<Duration>)>,
    /// The reflector's clock is synchronised (adjtimex).
    pub synchronised: bool,
    /// T2 is the kernel's receive timestamp.
    pub t2_from_kernel: bool,
    /// The session's timestamp format.
    pub format: TimestampFormat,
}

/// What the reflector did with one request's TLVs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TlvOutcome {
    /// TLVs recognised and processed (U cleared).
    pub processed: u32,
    /// TLVs returned with the U flag.
    pub unrecognized: u32,
    /// TLVs returned with the M flag.
    pub malformed: u32,
    /// HMAC TLVs returned with the I flag.
    pub integrity_failed: u32,
    /// DSCP1 of a Class of Service TLV: the DSCP the reply must carry.
    pub requested_dscp: Option<u8>,
    /// Where a well-formed Follow-Up Telemetry TLV's value starts in the tail: the reflector
    /// writes it again when it sends the reply (see [`answer_follow_up`]).
    pub follow_up_at: Option<usize>,
    /// Where the HMAC TLV starts in the tail, when one was answered with a key.
    pub hmac_at: Option<usize>,
}

const FLAG_BITS: u8 = tlv_flags::U | tlv_flags::M | tlv_flags::I;

fn put_address(value: &mut [u8], address: IpAddr) -> u8 {
    value.fill(0);
    match address {
        IpAddr::V4(v4) => {
            value[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            value.copy_from_slice(&v6.octets());
            6
        }
    }
}

/// Answers a Location TLV's value (ports and sub-TLVs) in place; false when malformed.
fn answer_location(value: &mut [u8], facts: &SessionFacts) -> bool {
    if value.len() < tlv_len::LOCATION_PORTS {
        return false;
    }
    let destination_port = facts.destination.map_or(0, |d| d.port());
    value[0..2].copy_from_slice(&destination_port.to_be_bytes());
    value[2..4].copy_from_slice(&facts.source.port().to_be_bytes());
    let mut at = tlv_len::LOCATION_PORTS;
    while at < value.len() {
        if value.len() - at < TLV_HEADER_LEN {
            return false;
        }
        let kind = value[at + 1];
        let length = usize::from(u16::from_be_bytes([value[at + 2], value[at + 3]]));
        let end = at + TLV_HEADER_LEN + length;
        if end > value.len() {
            return false;
        }
        let (flags, rest) = value[at..end].split_at_mut(1);
        let sub_value = &mut rest[3..];
        flags[0] &= !FLAG_BITS;
        let expected = match kind {
            location_sub_tlv::SOURCE_MAC
            | location_sub_tlv::SOURCE_EUI48
            | location_sub_tlv::SOURCE_EUI64 => location_sub_tlv::MAC_LEN,
            location_sub_tlv::DESTINATION_IP..=location_sub_tlv::SOURCE_IPV6 => {
                location_sub_tlv::ADDRESS_LEN
            }
            _ => {
                flags[0] |= tlv_flags::U;
                at = end;
                continue;
            }
        };
        if length != expected {
            flags[0] |= tlv_flags::M;
            return false;
        }
        match kind {
            location_sub_tlv::DESTINATION_IP => match facts.destination {
                Some(destination) => {
                    let family = put_address(sub_value, destination.ip());
                    rest[0] = if family == 4 {
                        location_sub_tlv::DESTINATION_IPV4
                    } else {
                        location_sub_tlv::DESTINATION_IPV6
                    };
                }
                None => flags[0] |= tlv_flags::U,
            },
            location_sub_tlv::SOURCE_IP => {
                let family = put_address(sub_value, facts.source.ip());
                rest[0] = if family == 4 {
                    location_sub_tlv::SOURCE_IPV4
                } else {
                    location_sub_tlv::SOURCE_IPV6
                };
            }
            // A UDP socket never sees the frame's source MAC; the answer types are the
            // reflector's to write, not the sender's to ask.
            _ => flags[0] |= tlv_flags::U,
        }
        at = end;
    }
    true
}

/// Writes the reply's tail from the request's: `reply` must be as long as `request`.
/// `sequences` are the request's and the reply's Sequence Numbers (an HMAC TLV covers its
/// packet's).
pub fn reflect_tlvs(
    request: &[u8],
    reply: &mut [u8],
    facts: &SessionFacts,
    key: Option<&StampKey>,
    sequences: (u32, u32),
) -> TlvOutcome {
    let (request_sequence, reply_sequence) = sequences;
    let mut outcome = TlvOutcome::default();
    let len = request.len().min(reply.len());
    reply[..len].copy_from_slice(&request[..len]);
    if request[..len].iter().all(|&octet| octet == 0) {
        return outcome;
    }
    // The HMAC TLV's offset and whether the request's HMAC verified; a non-padding TLV
    // after it breaks it (RFC 8972 §4.8: the HMAC TLV follows every TLV it protects).
    let mut hmac_at: Option<(usize, bool)> = None;
    for item in TlvIter::new(&request[..len]) {
        let (offset, tlv) = match item {
            Ok(found) => found,
            Err(StampError::TruncatedTlv { offset }) => {
                // A header that fits gets the M flag; a stub of fewer than 4 octets cannot.
                if len - offset >= TLV_HEADER_LEN {
                    reply[offset] = (reply[offset] & !FLAG_BITS) | tlv_flags::M;
                }
                outcome.malformed += 1;
                break;
            }
            Err(_) => {
                outcome.malformed += 1;
                break;
            }
        };
        let kind = tlv.tlv_type();
        let length = usize::from(tlv.length());
        if let Some((_, verified)) = hmac_at.as_mut()
            && kind != tlv_type::EXTRA_PADDING
        {
            *verified = false;
        }
        let value_at = offset + TLV_HEADER_LEN;
        let value = &mut reply[value_at..value_at + length];
        let fixed = |wanted: usize| length == wanted;
        let well_formed = match kind {
            tlv_type::EXTRA_PADDING => Some(true),
            tlv_type::LOCATION => Some(answer_location(value, facts)),
            tlv_type::TIMESTAMP_INFORMATION => {
                let ok = length >= tlv_len::TIMESTAMP_INFORMATION;
                if ok {
                    let source = if facts.synchronised {
                        sync_source::NTP
                    } else {
                        sync_source::FREE_RUNNING
                    };
                    value[..4].copy_from_slice(&[
                        source,
                        timestamp_method::SOFTWARE,
                        source,
                        timestamp_method::SOFTWARE,
                    ]);
                }
                Some(ok)
            }
            tlv_type::CLASS_OF_SERVICE => {
                let ok = fixed(tlv_len::CLASS_OF_SERVICE);
                if ok {
                    let tos = facts.received_tos.unwrap_or(0);
                    let dscp2 = tos >> 2;
                    let ecn = tos & 0b11;
                    outcome.requested_dscp = Some(value[0] >> 2);
                    value[0] = (value[0] & 0b1111_1100) | (dscp2 >> 4);
                    // DSCP2's low 4 bits, ECN, and RP = 0: DSCP1 is used on the reply.
                    value[1] = ((dscp2 & 0x0F) << 4) | (ecn << 2);
                }
                Some(ok)
            }
            tlv_type::DIRECT_MEASUREMENT => {
                let ok = fixed(tlv_len::DIRECT_MEASUREMENT);
                if ok {
                    value[4..8].copy_from_slice(&facts.received.to_be_bytes());
                    value[8..12].copy_from_slice(&facts.transmitted.to_be_bytes());
                }
                Some(ok)
            }
            tlv_type::ACCESS_REPORT => Some(fixed(tlv_len::ACCESS_REPORT)),
            tlv_type::FOLLOW_UP_TELEMETRY => {
                let ok = fixed(tlv_len::FOLLOW_UP_TELEMETRY);
                if ok {
                    write_follow_up(value, facts.last_reply, facts.format);
                    outcome.follow_up_at = Some(value_at);
                }
                Some(ok)
            }
            tlv_type::HMAC if key.is_some() => {
                let ok = fixed(tlv_len::HMAC) && hmac_at.is_none();
                if ok {
                    let verified = key.is_some_and(|key| {
                        let tag = tlv_hmac(key, request_sequence, request, offset);
                        tag == request[value_at..value_at + tlv_len::HMAC]
                    });
                    hmac_at = Some((offset, verified));
                }
                Some(ok)
            }
            _ => None,
        };
        let flags = &mut reply[offset];
        *flags &= !FLAG_BITS;
        match well_formed {
            Some(true) => outcome.processed += 1,
            Some(false) => {
                *flags |= tlv_flags::M;
                outcome.malformed += 1;
            }
            None => {
                *flags |= tlv_flags::U;
                outcome.unrecognized += 1;
            }
        }
    }
    if let (Some((offset, verified)), Some(key)) = (hmac_at, key) {
        let value_at = offset + TLV_HEADER_LEN;
        if !verified {
            reply[offset] |= tlv_flags::I;
            outcome.integrity_failed += 1;
        }
        let tag = tlv_hmac(key, reply_sequence, reply, offset);
        reply[value_at..value_at + tlv_len::HMAC].copy_from_slice(&tag);
        outcome.hmac_at = Some(offset);
    }
    outcome
}

/// A Follow-Up Telemetry value (RFC 8972 §4.7): the sequence number of the session's previous
/// reply and the kernel's transmit timestamp of it, method software; all zeros when there is no
/// previous reply or its timestamp is not known (the RFC's "unavailable").
fn write_follow_up(
    value: &mut [u8],
    last_reply: Option<(u32, Option<Duration>)>,
    format: TimestampFormat,
) {
    value.fill(0);
    if let Some((sequence, Some(sent))) = last_reply {
        value[0..4].copy_from_slice(&sequence.to_be_bytes());
        let stamp = Timestamp::from_unix(sent, format);
        value[4..12].copy_from_slice(&stamp.0.to_be_bytes());
        value[12] = timestamp_method::SOFTWARE;
    }
}

/// Writes a reply's Follow-Up Telemetry value again, at `follow_up_at` in its `tail` (from
/// [`TlvOutcome::follow_up_at`]), with what is known when the reply is about to leave, and
/// the HMAC TLV after it (`hmac_at`, [`TlvOutcome::hmac_at`]) again over the new value.
pub fn answer_follow_up(
    tail: &mut [u8],
    follow_up_at: usize,
    last_reply: Option<(u32, Option<Duration>)>,
    format: TimestampFormat,
    hmac: Option<(&StampKey, usize, u32)>,
) {
    if let Some(value) = tail.get_mut(follow_up_at..follow_up_at + tlv_len::FOLLOW_UP_TELEMETRY) {
        write_follow_up(value, last_reply, format);
    }
    if let Some((key, hmac_at, reply_sequence)) = hmac {
        let value_at = hmac_at + TLV_HEADER_LEN;
        if value_at + tlv_len::HMAC <= tail.len() {
            let tag = tlv_hmac(key, reply_sequence, tail, hmac_at);
            tail[value_at..value_at + tlv_len::HMAC].copy_from_slice(&tag);
        }
    }
}

/// The HMAC TLV's value (RFC 8972 §4.8): HMAC-SHA-256, first 128 bits, over the base
/// packet's Sequence Number and the TLVs before the HMAC TLV (`tail[..hmac_offset]`).
fn tlv_hmac(key: &StampKey, sequence: u32, tail: &[u8], hmac_offset: usize) -> [u8; 16] {
    key.tag_parts(&[&sequence.to_be_bytes(), &tail[..hmac_offset]])
}

/// The TLVs a sender asks for, as they go on the wire, with where the per-packet fields sit.
#[derive(Debug, Clone, Default)]
pub struct RequestTlvs {
    bytes: Vec<u8>,
    direct_measurement_at: Option<usize>,
    hmac_at: Option<usize>,
    follow_up: bool,
}

/// The TLVs a sender can ask for (RFC 8972 §4), besides Extra Padding and Class of Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlvRequest {
    /// Location: the ports and addresses the reflector saw.
    Location,
    /// Timestamp Information: how the reflector takes T2 and T3.
    TimestampInformation,
    /// Direct Measurement: the packet counters of both ends.
    DirectMeasurement,
    /// Access Report: Access ID 1 (3GPP) with Return Code 1 (RFC 8972 §4.6 examples).
    AccessReport,
    /// Follow-Up Telemetry: the kernel's transmit timestamp of the previous reply.
    FollowUpTelemetry,
}

fn push_tlv(bytes: &mut Vec<u8>, kind: u8, value: &[u8]) -> usize {
    let at = bytes.len();
    bytes.push(tlv_flags::U);
    bytes.push(kind);
    bytes.extend_from_slice(&(value.len() as u16).to_be_bytes());
    bytes.extend_from_slice(value);
    at
}

impl RequestTlvs {
    /// No TLVs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a Class of Service TLV asking for `dscp1` on the reply (RFC 8972 §4.4).
    pub fn class_of_service(&mut self, dscp1: u8) -> &mut Self {
        push_tlv(
            &mut self.bytes,
            tlv_type::CLASS_OF_SERVICE,
            &[(dscp1 & 0x3F) << 2, 0, 0, 0],
        );
        self
    }

    /// Appends an Extra Padding TLV of `len` zero octets (RFC 8972 §4.1).
    pub fn extra_padding(&mut self, len: u16) -> &mut Self {
        push_tlv(
            &mut self.bytes,
            tlv_type::EXTRA_PADDING,
            &vec![0u8; usize::from(len)],
        );
        self
    }

    /// Appends the TLV `request` names, with the value the sender sends.
    pub fn request(&mut self, request: TlvRequest) -> &mut Self {
        let mut location = vec![0u8; tlv_len::LOCATION_PORTS];
        for kind in [
            location_sub_tlv::DESTINATION_IP,
            location_sub_tlv::SOURCE_IP,
        ] {
            push_tlv(&mut location, kind, &[0u8; location_sub_tlv::ADDRESS_LEN]);
            // Sub-TLVs go out with clear flags; only the TLV's own U flag asks.
            let at = location.len() - TLV_HEADER_LEN - location_sub_tlv::ADDRESS_LEN;
            location[at] = 0;
        }
        match request {
            TlvRequest::Location => {
                push_tlv(&mut self.bytes, tlv_type::LOCATION, &location);
            }
            TlvRequest::TimestampInformation => {
                push_tlv(&mut self.bytes, tlv_type::TIMESTAMP_INFORMATION, &[0; 4]);
            }
            TlvRequest::DirectMeasurement => {
                let at = push_tlv(&mut self.bytes, tlv_type::DIRECT_MEASUREMENT, &[0; 12]);
                self.direct_measurement_at = Some(at);
            }
            TlvRequest::AccessReport => {
                push_tlv(&mut self.bytes, tlv_type::ACCESS_REPORT, &[0x10, 1, 0, 0]);
            }
            TlvRequest::FollowUpTelemetry => {
                self.follow_up = true;
                push_tlv(&mut self.bytes, tlv_type::FOLLOW_UP_TELEMETRY, &[0; 16]);
            }
        }
        self
    }

    /// Appends an HMAC TLV (RFC 8972 §4.8), filled in for each packet by [`RequestTlvs::sign`];
    /// it must come last.
    pub fn hmac(&mut self) -> &mut Self {
        let at = push_tlv(&mut self.bytes, tlv_type::HMAC, &[0; tlv_len::HMAC]);
        self.hmac_at = Some(at);
        self
    }

    /// The TLVs' octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Octets on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// No TLV asked for.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether a Follow-Up Telemetry TLV is among them.
    pub fn wants_follow_up(&self) -> bool {
        self.follow_up
    }

    /// Whether an HMAC TLV is among them.
    pub fn has_hmac(&self) -> bool {
        self.hmac_at.is_some()
    }

    /// Fills the per-packet fields of `tail` (a copy of these TLVs after the base packet):
    /// the Direct Measurement's S_TxC (packets sent so far, this one included) and the HMAC
    /// TLV over `sequence` and the TLVs before it.
    pub fn sign(&self, tail: &mut [u8], sequence: u32, transmitted: u32, key: Option<&StampKey>) {
        if let Some(at) = self.direct_measurement_at {
            let value = at + TLV_HEADER_LEN;
            tail[value..value + 4].copy_from_slice(&transmitted.to_be_bytes());
        }
        if let (Some(at), Some(key)) = (self.hmac_at, key) {
            let tag = tlv_hmac(key, sequence, tail, at);
            let value = at + TLV_HEADER_LEN;
            tail[value..value + tlv_len::HMAC].copy_from_slice(&tag);
        }
    }
}

/// What a reply's TLVs said, read by the sender.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTlvs {
    /// TLVs with the U flag (the reflector did not process them).
    pub unrecognized: u32,
    /// TLVs with the M flag, or cut short.
    pub malformed: u32,
    /// TLVs with the I flag (the reflector found our HMAC TLV wrong).
    pub integrity_failed: u32,
    /// The reply's own HMAC TLV did not verify with our key.
    pub reply_hmac_wrong: bool,
    /// DSCP2 and ECN of a Class of Service TLV: what our packet arrived with.
    pub seen_dscp: Option<u8>,
    /// ECN the reflector saw.
    pub seen_ecn: Option<u8>,
    /// The Location TLV: the source address and port the reflector saw us at, and the
    /// address and port it was reached on.
    pub seen_source: Option<SocketAddr>,
    /// The address and port the reflector says it was reached on.
    pub seen_destination: Option<SocketAddr>,
    /// Timestamp Information: T2's and T3's synchronisation source and method.
    pub timestamp_information: Option<[u8; 4]>,
    /// Direct Measurement: S_TxC, R_RxC, R_TxC.
    pub direct_measurement: Option<[u32; 3]>,
    /// Follow-Up Telemetry: the previous reply's sequence number and kernel transmit
    /// timestamp.
    pub follow_up: Option<(u32, Timestamp)>,
}

fn read_address(kind: u8, value: &[u8]) -> Option<IpAddr> {
    match kind {
        location_sub_tlv::DESTINATION_IPV4 | location_sub_tlv::SOURCE_IPV4 => {
            let octets: [u8; 4] = value.get(..4)?.try_into().ok()?;
            Some(IpAddr::from(octets))
        }
        location_sub_tlv::DESTINATION_IPV6 | location_sub_tlv::SOURCE_IPV6 => {
            let octets: [u8; 16] = value.get(..16)?.try_into().ok()?;
            Some(IpAddr::from(octets))
        }
        _ => None,
    }
}

fn read_location(value: &[u8], read: &mut ReplyTlvs) {
    if value.len() < tlv_len::LOCATION_PORTS {
        return;
    }
    let destination_port = u16::from_be_bytes([value[0], value[1]]);
    let source_port = u16::from_be_bytes([value[2], value[3]]);
    for (_, sub) in TlvIter::new(&value[tlv_len::LOCATION_PORTS..]).flatten() {
        if sub.flags() & FLAG_BITS != 0 {
            continue;
        }
        match (sub.tlv_type(), read_address(sub.tlv_type(), sub.value())) {
            (location_sub_tlv::SOURCE_IPV4 | location_sub_tlv::SOURCE_IPV6, Some(address)) => {
                read.seen_source = Some(SocketAddr::new(address, source_port))
            }
            (
                location_sub_tlv::DESTINATION_IPV4 | location_sub_tlv::DESTINATION_IPV6,
                Some(address),
            ) => read.seen_destination = Some(SocketAddr::new(address, destination_port)),
            _ => {}
        }
    }
}

/// Reads the TLVs of a reply's tail; `key` and `reply_sequence` check its HMAC TLV.
pub fn read_reply_tlvs(tail: &[u8], key: Option<&StampKey>, reply_sequence: u32) -> ReplyTlvs {
    let mut read = ReplyTlvs::default();
    if tail.iter().all(|&octet| octet == 0) {
        return read;
    }
    for item in TlvIter::new(tail) {
        let Ok((offset, tlv)) = item else {
            read.malformed += 1;
            break;
        };
        let flags = tlv.flags();
        if flags & tlv_flags::U != 0 {
            read.unrecognized += 1;
        }
        if flags & tlv_flags::M != 0 {
            read.malformed += 1;
        }
        if flags & tlv_flags::I != 0 {
            read.integrity_failed += 1;
        }
        if flags & FLAG_BITS != 0 {
            continue;
        }
        let value = tlv.value();
        match tlv.tlv_type() {
            tlv_type::CLASS_OF_SERVICE if value.len() == tlv_len::CLASS_OF_SERVICE => {
                read.seen_dscp = Some(((value[0] & 0b11) << 4) | (value[1] >> 4));
                read.seen_ecn = Some((value[1] >> 2) & 0b11);
            }
            tlv_type::LOCATION => read_location(value, &mut read),
            tlv_type::TIMESTAMP_INFORMATION if value.len() >= 4 => {
                read.timestamp_information = Some([value[0], value[1], value[2], value[3]]);
            }
            tlv_type::DIRECT_MEASUREMENT if value.len() == tlv_len::DIRECT_MEASUREMENT => {
                let word = |at: usize| {
                    u32::from_be_bytes([value[at], value[at + 1], value[at + 2], value[at + 3]])
                };
                read.direct_measurement = Some([word(0), word(4), word(8)]);
            }
            tlv_type::FOLLOW_UP_TELEMETRY if value.len() == tlv_len::FOLLOW_UP_TELEMETRY => {
                let sequence = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                let mut stamp = [0u8; 8];
                stamp.copy_from_slice(&value[4..12]);
                let stamp = Timestamp(u64::from_be_bytes(stamp));
                if stamp.0 != 0 {
                    read.follow_up = Some((sequence, stamp));
                }
            }
            tlv_type::HMAC if value.len() == tlv_len::HMAC => {
                if let Some(key) = key {
                    let tag = tlv_hmac(key, reply_sequence, tail, offset);
                    read.reply_hmac_wrong = tag != value;
                }
            }
            _ => {}
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8972 §4: the sender's TLVs carry U = 1; the Class of Service value is DSCP1 in the
    /// top six bits (46 << 2 = 0xB8); Direct Measurement carries S_TxC; the HMAC TLV is
    /// HMAC-SHA-256 (first 16 octets) over the Sequence Number and the TLVs before it.
    #[test]
    fn request_tlvs_known_answer() {
        let mut tlvs = RequestTlvs::new();
        tlvs.class_of_service(46)
            .request(TlvRequest::DirectMeasurement)
            .hmac();
        let mut tail = tlvs.as_bytes().to_vec();
        let key = StampKey::new(b"Jefe");
        tlvs.sign(&mut tail, 7, 8, Some(&key));
        assert_eq!(&tail[..8], &[0x80, 4, 0, 4, 0xB8, 0, 0, 0]);
        assert_eq!(&tail[8..12], &[0x80, 5, 0, 12]);
        assert_eq!(&tail[12..16], &8u32.to_be_bytes());
        assert_eq!(&tail[16..24], &[0; 8]);
        assert_eq!(&tail[24..28], &[0x80, 8, 0, 16]);
        let mut covered = 7u32.to_be_bytes().to_vec();
        covered.extend_from_slice(&tail[..24]);
        assert_eq!(&tail[28..], &key.tag(&covered));
    }

    fn facts() -> SessionFacts {
        SessionFacts {
            received_tos: Some(0x29),
            source: "192.0.2.1:4000".parse().unwrap(),
            destination: Some("198.51.100.7:862".parse().unwrap()),
            received: 3,
            transmitted: 3,
            last_reply: Some((2, Some(Duration::from_secs(1_700_000_000)))),
            synchronised: false,
            t2_from_kernel: true,
            format: TimestampFormat::Ptp,
        }
    }

    /// A request built octet by octet: Location asking both addresses, Follow-Up, then a
    /// truncated TLV header; the reply's octets written out from RFC 8972 §4.2 and §4.7.
    #[test]
    fn reflector_answers_location_and_follow_up() {
        let mut request = vec![0x80, 2, 0, 44, 0, 0, 0, 0];
        request.extend_from_slice(&[0, 4, 0, 16]);
        request.extend_from_slice(&[0; 16]);
        request.extend_from_slice(&[0, 7, 0, 16]);
        request.extend_from_slice(&[0; 16]);
        request.extend_from_slice(&[0x80, 7, 0, 16]);
        request.extend_from_slice(&[0; 16]);
        request.extend_from_slice(&[0x80, 1, 0, 9, 0]);
        let mut reply = vec![0u8; request.len()];
        let outcome = reflect_tlvs(&request, &mut reply, &facts(), None, (1, 1));
        assert_eq!(
            (outcome.processed, outcome.unrecognized, outcome.malformed),
            (2, 0, 1)
        );
        // Location: flags cleared, destination port 862, source port 4000.
        assert_eq!(&reply[..8], &[0, 2, 0, 44, 0x03, 0x5E, 0x0F, 0xA0]);
        assert_eq!(&reply[8..12], &[0, 5, 0, 16]);
        assert_eq!(&reply[12..16], &[198, 51, 100, 7]);
        assert_eq!(&reply[16..28], &[0; 12]);
        assert_eq!(&reply[28..32], &[0, 8, 0, 16]);
        assert_eq!(&reply[32..36], &[192, 0, 2, 1]);
        // Follow-Up: sequence 2, PTPv2 seconds 1700000000 (0x6553F100), 0 ns, software.
        assert_eq!(&reply[48..52], &[0, 7, 0, 16]);
        assert_eq!(&reply[52..56], &[0, 0, 0, 2]);
        assert_eq!(&reply[56..64], &[0x65, 0x53, 0xF1, 0x00, 0, 0, 0, 0]);
        assert_eq!(&reply[64..68], &[2, 0, 0, 0]);
        assert_eq!(reply[68], 0x40, "the truncated TLV gets M");
        let read = read_reply_tlvs(&reply, None, 1);
        assert_eq!(read.seen_source, Some("192.0.2.1:4000".parse().unwrap()));
        assert_eq!(
            read.seen_destination,
            Some("198.51.100.7:862".parse().unwrap())
        );
        assert_eq!(read.follow_up.map(|(seq, _)| seq), Some(2));
        assert_eq!(read.malformed, 1);
    }

    /// The follow-up written again as the reply leaves (RFC 8972 §4.7), octet by octet, and
    /// the HMAC TLV after it signed again over the new value: HMAC-SHA-256 computed here with
    /// the `hmac` crate over the reply's Sequence Number and the TLVs before the HMAC TLV
    /// (§4.8), first 16 octets.
    #[test]
    fn follow_up_written_at_send_and_hmac_signed_again() {
        use hmac::{Hmac, Mac};
        let key = StampKey::new(b"follow-up key");
        let (request_sequence, reply_sequence) = (40u32, 9u32);
        let mut request = vec![0x80, 7, 0, 16];
        request.extend_from_slice(&[0; 16]);
        request.extend_from_slice(&[0x80, 8, 0, 16]);
        let tag = tlv_hmac(&key, request_sequence, &request, 20);
        request.extend_from_slice(&tag);
        let mut reply = vec![0u8; request.len()];
        let facts = SessionFacts {
            last_reply: Some((8, None)),
            ..facts()
        };
        let outcome = reflect_tlvs(
            &request,
            &mut reply,
            &facts,
            Some(&key),
            (request_sequence, reply_sequence),
        );
        assert_eq!((outcome.processed, outcome.integrity_failed), (2, 0));
        assert_eq!((outcome.follow_up_at, outcome.hmac_at), (Some(4), Some(20)));
        // The previous reply's stamp not read yet: zeros ("unavailable").
        assert_eq!(&reply[4..20], &[0; 16]);
        let sent = Duration::from_secs(1_700_000_000) + Duration::from_nanos(123);
        answer_follow_up(
            &mut reply,
            4,
            Some((8, Some(sent))),
            TimestampFormat::Ptp,
            Some((&key, 20, reply_sequence)),
        );
        assert_eq!(&reply[..4], &[0, 7, 0, 16]);
        assert_eq!(&reply[4..8], &[0, 0, 0, 8]);
        assert_eq!(&reply[8..16], &[0x65, 0x53, 0xF1, 0x00, 0, 0, 0, 0x7B]);
        assert_eq!(&reply[16..20], &[2, 0, 0, 0]);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"follow-up key").unwrap();
        mac.update(&reply_sequence.to_be_bytes());
        mac.update(&reply[..20]);
        assert_eq!(&reply[24..40], &mac.finalize().into_bytes()[..16]);
    }

    /// Without a key the HMAC TLV cannot be checked: returned with U, never I.
    #[test]
    fn hmac_tlv_without_a_key_is_unrecognised() {
        let request = [
            0x80, 8, 0, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ];
        let mut reply = [0u8; 20];
        let outcome = reflect_tlvs(&request, &mut reply, &facts(), None, (1, 1));
        assert_eq!(outcome.unrecognized, 1);
        assert_eq!(reply[0], 0x80);
        assert_eq!(&reply[4..], &request[4..]);
    }
}
