//! Ethernet loopback PDUs of ITU-T Y.1731 §7.2 / IEEE 802.1ag §21.7 (CFM, EtherType 0x8902):
//! the Loopback Message (LBM, OpCode 3) and Loopback Reply (LBR, OpCode 2), as a view
//! ([`LoopbackPdu`]) and a parsed form ([`LoopbackRepr`]), with their TLVs (Data TLV type 3,
//! Y.1731's Test TLV type 32, End TLV type 0).
//!
//! ```text
//! 0     MD/MEG Level (3 bits) | Version (5 bits, 0)
//! 1     OpCode (3 LBM, 2 LBR)
//! 2     Flags (0)
//! 3     First TLV Offset (4)
//! 4-7   Loopback Transaction Identifier
//! 8-    TLVs: Type (1), Length (2), Value; End TLV: a single 0 octet
//! ```
//!
//! Only the PDU: the `eth-lb` command that would send it over AF_PACKET is not written yet.

/// The CFM EtherType (IEEE 802.1ag).
pub const ETHERTYPE_CFM: u16 = 0x8902;
/// OpCode of a Loopback Reply.
pub const OPCODE_LBR: u8 = 2;
/// OpCode of a Loopback Message.
pub const OPCODE_LBM: u8 = 3;
/// The header and transaction identifier.
pub const HEADER_LEN: usize = 8;
/// TLV types used by loopback (IEEE 802.1ag Table 21-6, Y.1731 Table 9-1).
pub mod tlv_type {
    /// End TLV (one octet, no length).
    pub const END: u8 = 0;
    /// Data TLV.
    pub const DATA: u8 = 3;
    /// Test TLV (Y.1731 §9.3.3): Pattern Type, then the pattern, then an optional CRC-32.
    pub const TEST: u8 = 32;
}

/// Why bytes are not a loopback PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CfmError {
    /// Shorter than the 8-octet header.
    #[error("{0} octets is shorter than a CFM loopback PDU header")]
    Truncated(usize),
    /// Another CFM OpCode (CCM, LTM, ...).
    #[error("CFM OpCode {0} is not a Loopback Message or Reply")]
    NotLoopback(u8),
    /// A TLV that runs past the end, or no End TLV.
    #[error("CFM TLV at octet {0} runs past the end of the PDU")]
    BadTlv(usize),
}

/// Loopback Message or Reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopbackKind {
    /// LBM, OpCode 3.
    Message,
    /// LBR, OpCode 2.
    Reply,
}

/// A view of a loopback PDU (the Ethernet payload after the EtherType).
#[derive(Debug, Clone, Copy)]
pub struct LoopbackPdu<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> LoopbackPdu<T> {
    /// Wraps `buffer` after checking the header, the OpCode and that the TLVs end properly.
    pub fn new_checked(buffer: T) -> Result<Self, CfmError> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(CfmError::Truncated(bytes.len()));
        }
        if bytes[1] != OPCODE_LBM && bytes[1] != OPCODE_LBR {
            return Err(CfmError::NotLoopback(bytes[1]));
        }
        let pdu = LoopbackPdu { buffer };
        pdu.tlvs().try_for_each(|tlv| tlv.map(|_| ()))?;
        Ok(pdu)
    }

    /// MD (MEG) Level, 0-7.
    pub fn level(&self) -> u8 {
        self.buffer.as_ref()[0] >> 5
    }

    /// Message or Reply.
    pub fn kind(&self) -> LoopbackKind {
        if self.buffer.as_ref()[1] == OPCODE_LBM {
            LoopbackKind::Message
        } else {
            LoopbackKind::Reply
        }
    }

    /// Loopback Transaction Identifier.
    pub fn transaction_id(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }

    /// The TLVs up to the End TLV: (type, value) each.
    pub fn tlvs(&self) -> impl Iterator<Item = Result<(u8, &[u8]), CfmError>> {
        let bytes = &self.buffer.as_ref()[HEADER_LEN.min(self.buffer.as_ref().len())..];
        let mut at = 0usize;
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let Some(&kind) = bytes.get(at) else {
                done = true;
                return Some(Err(CfmError::BadTlv(HEADER_LEN + at)));
            };
            if kind == tlv_type::END {
                done = true;
                return None;
            }
            if at + 3 > bytes.len() {
                done = true;
                return Some(Err(CfmError::BadTlv(HEADER_LEN + at)));
            }
            let len = usize::from(u16::from_be_bytes([bytes[at + 1], bytes[at + 2]]));
            let end = at + 3 + len;
            if end > bytes.len() {
                done = true;
                return Some(Err(CfmError::BadTlv(HEADER_LEN + at)));
            }
            let value = &bytes[at + 3..end];
            at = end;
            Some(Ok((kind, value)))
        })
    }
}

/// A loopback PDU, parsed: the header and the Data TLV's value, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackRepr {
    /// Message or Reply.
    pub kind: LoopbackKind,
    /// MD (MEG) Level, 0-7.
    pub level: u8,
    /// Loopback Transaction Identifier.
    pub transaction_id: u32,
    /// TLVs before the End TLV, in order: (type, value).
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

impl LoopbackRepr {
    /// Reads a checked view.
    pub fn parse<T: AsRef<[u8]>>(pdu: &LoopbackPdu<T>) -> Result<Self, CfmError> {
        Ok(LoopbackRepr {
            kind: pdu.kind(),
            level: pdu.level(),
            transaction_id: pdu.transaction_id(),
            tlvs: pdu
                .tlvs()
                .map(|tlv| tlv.map(|(kind, value)| (kind, value.to_vec())))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Octets [`emit`](Self::emit) writes.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.tlvs.iter().map(|(_, v)| 3 + v.len()).sum::<usize>() + 1
    }

    /// Never empty: the header alone is 8 octets.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the PDU, TLVs and End TLV into a new buffer.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.push((self.level & 0x07) << 5);
        out.push(match self.kind {
            LoopbackKind::Message => OPCODE_LBM,
            LoopbackKind::Reply => OPCODE_LBR,
        });
        out.push(0);
        out.push(4);
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        for (kind, value) in &self.tlvs {
            out.push(*kind);
            out.extend_from_slice(&(value.len().min(0xFFFF) as u16).to_be_bytes());
            out.extend_from_slice(&value[..value.len().min(0xFFFF)]);
        }
        out.push(tlv_type::END);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An LBM at MD level 5 with transaction 0x01020304 and a Data TLV of 3 octets, written
    /// octet by octet from IEEE 802.1ag §21.7.
    #[test]
    fn lbm_known_answer() {
        let bytes = [
            0xA0, 0x03, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04, 0x03, 0x00, 0x03, 0xAA, 0xBB, 0xCC,
            0x00,
        ];
        let pdu = LoopbackPdu::new_checked(&bytes[..]).unwrap();
        let repr = LoopbackRepr::parse(&pdu).unwrap();
        assert_eq!(
            repr,
            LoopbackRepr {
                kind: LoopbackKind::Message,
                level: 5,
                transaction_id: 0x0102_0304,
                tlvs: vec![(tlv_type::DATA, vec![0xAA, 0xBB, 0xCC])],
            }
        );
        assert_eq!(repr.emit(), bytes);
        assert_eq!(repr.len(), bytes.len());
    }

    #[test]
    fn typed_errors() {
        assert_eq!(
            LoopbackPdu::new_checked(&[0u8; 7][..]).unwrap_err(),
            CfmError::Truncated(7)
        );
        assert_eq!(
            LoopbackPdu::new_checked(&[0, 1, 0, 70, 0, 0, 0, 0, 0][..]).unwrap_err(),
            CfmError::NotLoopback(1)
        );
        assert_eq!(
            LoopbackPdu::new_checked(&[0, 3, 0, 4, 0, 0, 0, 0, 3, 0, 9, 1][..]).unwrap_err(),
            CfmError::BadTlv(8)
        );
        assert_eq!(
            LoopbackPdu::new_checked(&[0, 3, 0, 4, 0, 0, 0, 0][..]).unwrap_err(),
            CfmError::BadTlv(8),
            "no End TLV"
        );
    }

    proptest! {
        #[test]
        fn round_trip(level in 0u8..8, reply in any::<bool>(), id in any::<u32>(),
                      tlvs in proptest::collection::vec((1u8..=255, proptest::collection::vec(any::<u8>(), 0..50)), 0..5)) {
            let repr = LoopbackRepr {
                kind: if reply { LoopbackKind::Reply } else { LoopbackKind::Message },
                level,
                transaction_id: id,
                tlvs,
            };
            let bytes = repr.emit();
            let parsed = LoopbackRepr::parse(&LoopbackPdu::new_checked(&bytes[..]).unwrap()).unwrap();
            prop_assert_eq!(parsed, repr);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(pdu) = LoopbackPdu::new_checked(&bytes[..]) {
                let _ = LoopbackRepr::parse(&pdu);
            }
        }
    }
}
