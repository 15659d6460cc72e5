//! The Session-Reflector's handling of RFC 8972 TLVs: each TLV of the request is copied into
//! the reply (which is as long as the request), and
//! - Extra Padding (type 1, §4.1) is returned as it came;
//! - Class of Service (type 4, §4.4, four octets: DSCP1 6 bits, DSCP2 6 bits, ECN 2 bits, RP 2
//!   bits, 16 reserved) gets DSCP2 and ECN of the request as received;
//! - every other type is returned with the U flag set: not processed here (the Location,
//!   Timestamp Information, Direct Measurement, Access Report, Follow-Up Telemetry and HMAC
//!   TLVs are not implemented yet, and the sender must not read their values as answered);
//! - a known TLV of the wrong length, or a TLV that runs past the end, gets the M flag.

use loopscope_wire::stamp::{TLV_HEADER_LEN, TlvIter, tlv_flags, tlv_type};

/// What the reflector did with one request's TLVs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TlvOutcome {
    /// TLVs processed (padding returned, Class of Service filled in).
    pub processed: u32,
    /// TLVs returned with the U flag.
    pub unrecognized: u32,
    /// TLVs returned with the M flag.
    pub malformed: u32,
    /// DSCP1 of a Class of Service TLV: the DSCP the sender asks the reply to carry.
    pub requested_dscp: Option<u8>,
}

/// Writes the reply's tail from the request's: `reply` must be as long as `request`.
/// `received_tos` is the TOS octet (IPv4) or traffic class (IPv6) the request arrived with.
pub fn reflect_tlvs(request: &[u8], reply: &mut [u8], received_tos: Option<u8>) -> TlvOutcome {
    let mut outcome = TlvOutcome::default();
    let len = request.len().min(reply.len());
    reply[..len].copy_from_slice(&request[..len]);
    // An all-zero tail is RFC 8762 padding, not a row of reserved type-0 TLVs.
    if request[..len].iter().all(|&octet| octet == 0) {
        return outcome;
    }
    for item in TlvIter::new(&request[..len]) {
        match item {
            Ok((offset, tlv)) => {
                let value_at = offset + TLV_HEADER_LEN;
                match tlv.tlv_type() {
                    tlv_type::EXTRA_PADDING => outcome.processed += 1,
                    tlv_type::CLASS_OF_SERVICE if tlv.length() == 4 => {
                        let value = &mut reply[value_at..value_at + 4];
                        let tos = received_tos.unwrap_or(0);
                        let dscp2 = tos >> 2;
                        let ecn = tos & 0b11;
                        outcome.requested_dscp = Some(value[0] >> 2);
                        value[0] = (value[0] & 0b1111_1100) | (dscp2 >> 4);
                        value[1] = ((dscp2 & 0x0F) << 4) | (ecn << 2) | (value[1] & 0b11);
                        outcome.processed += 1;
                    }
                    tlv_type::CLASS_OF_SERVICE => {
                        reply[offset] |= tlv_flags::M;
                        outcome.malformed += 1;
                    }
                    _ => {
                        reply[offset] |= tlv_flags::U;
                        outcome.unrecognized += 1;
                    }
                }
            }
            Err(loopscope_wire::stamp::StampError::TruncatedTlv { offset }) => {
                // A header that fits gets the M flag; a stub of fewer than 4 octets cannot.
                if len - offset >= TLV_HEADER_LEN {
                    reply[offset] |= tlv_flags::M;
                }
                outcome.malformed += 1;
            }
            Err(_) => outcome.malformed += 1,
        }
    }
    outcome
}

/// Reads a reply's TLVs as the sender: flags counted, and DSCP2/ECN of a Class of Service TLV
/// (what the reflector saw our packet carry).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTlvs {
    /// TLVs with the U flag.
    pub unrecognized: u32,
    /// TLVs with the M flag, or cut short.
    pub malformed: u32,
    /// DSCP2 and ECN of a Class of Service TLV.
    pub seen_dscp: Option<u8>,
    /// ECN the reflector saw.
    pub seen_ecn: Option<u8>,
}

/// Reads the TLVs of a reply's tail.
pub fn read_reply_tlvs(tail: &[u8]) -> ReplyTlvs {
    let mut read = ReplyTlvs::default();
    for item in TlvIter::new(tail) {
        match item {
            Ok((_, tlv)) => {
                if tlv.flags() & tlv_flags::U != 0 {
                    read.unrecognized += 1;
                }
                if tlv.flags() & tlv_flags::M != 0 {
                    read.malformed += 1;
                }
                if tlv.tlv_type() == tlv_type::CLASS_OF_SERVICE
                    && tlv.length() == 4
                    && tlv.flags() & (tlv_flags::U | tlv_flags::M) == 0
                {
                    let value = tlv.value();
                    read.seen_dscp = Some(((value[0] & 0b11) << 4) | (value[1] >> 4));
                    read.seen_ecn = Some((value[1] >> 2) & 0b11);
                }
            }
            Err(_) => read.malformed += 1,
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tail written octet by octet: Extra Padding of 2, Class of Service asking DSCP1 = 46
    /// (0xB8 = 46 << 2), an unknown type 200 of 1 octet, then a TLV header claiming 9 octets
    /// with only 1 there.
    #[test]
    fn zero_padding_is_padding() {
        let mut reply = [1u8; 20];
        assert_eq!(
            reflect_tlvs(&[0u8; 20], &mut reply, None),
            TlvOutcome::default()
        );
        assert_eq!(reply, [0u8; 20]);
    }

    #[test]
    fn reflector_fills_cos_flags_unknown_and_truncated() {
        let request = [
            0x00, 0x01, 0x00, 0x02, 0xAA, 0xBB, // padding
            0x00, 0x04, 0x00, 0x04, 0xB8, 0x00, 0x00, 0x00, // CoS, DSCP1 = 46
            0x00, 0xC8, 0x00, 0x01, 0x55, // unknown type 200
            0x00, 0x01, 0x00, 0x09, 0x00, // truncated
        ];
        let mut reply = [0u8; 24];
        // Received with DSCP 10 (AF11) and ECN 01: TOS octet 0b001010_01 = 0x29.
        let outcome = reflect_tlvs(&request, &mut reply, Some(0x29));
        assert_eq!(
            outcome,
            TlvOutcome {
                processed: 2,
                unrecognized: 1,
                malformed: 1,
                requested_dscp: Some(46)
            }
        );
        let expected = [
            0x00,
            0x01,
            0x00,
            0x02,
            0xAA,
            0xBB, //
            // DSCP1 46 = 101110, DSCP2 10 = 001010, ECN 01, RP 00:
            // 101110_00 | 1010_01_00
            0x00,
            0x04,
            0x00,
            0x04,
            0b1011_1000,
            0b1010_0100,
            0x00,
            0x00, //
            0x80,
            0xC8,
            0x00,
            0x01,
            0x55, //
            0x40,
            0x01,
            0x00,
            0x09,
            0x00,
        ];
        assert_eq!(reply, expected);
        let read = read_reply_tlvs(&reply);
        assert_eq!(read.seen_dscp, Some(10));
        assert_eq!(read.seen_ecn, Some(1));
        assert_eq!(read.unrecognized, 1);
        assert_eq!(
            read.malformed, 1,
            "the M-flagged TLV is also cut short: counted once"
        );
    }
}
