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
//! Also here: the Test TLV's pattern types and CRC-32 (Y.1731 §9.3), the multicast class 1
//! destination addresses (IEEE 802.1ag Table 8-9), and the Ethernet framing around the PDU.
//! The sender is `loopscope_measure::eth_lb`, the reflector `loopscope_link::eth_lb`.

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
    /// A First TLV Offset other than the 4 of a loopback PDU (IEEE 802.1ag §21.7.2).
    #[error("First TLV Offset {0} is not 4, the loopback PDU's")]
    FirstTlvOffset(u8),
    /// A Test TLV with no Pattern Type, or too short for its CRC-32.
    #[error("a Test TLV of {0} octets is too short for its pattern type")]
    ShortTestTlv(usize),
    /// A Test TLV Pattern Type Y.1731 does not define (0-3 are).
    #[error("Test TLV pattern type {0} is not defined (0-3 are)")]
    UnknownPatternType(u8),
    /// A frame shorter than an Ethernet header, or not of EtherType 0x8902 (after at most one
    /// 802.1Q tag).
    #[error("not an Ethernet frame of EtherType 0x8902")]
    NotCfmFrame,
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
        // The TLVs are read from octet 8 on; another offset would put them elsewhere.
        if bytes[3] != 4 {
            return Err(CfmError::FirstTlvOffset(bytes[3]));
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

    /// Version (5 bits; 0 today).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] & 0x1F
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

/// The Test TLV's Pattern Types (Y.1731 §9.3, Test TLV): a null signal (all zeroes) or
/// PRBS 2^31-1 (ITU-T O.150 §5.8), each without or with a CRC-32 after the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestPattern {
    /// All-zero octets.
    Null,
    /// PRBS 2^31-1 (x^31 + x^28 + 1, inverted as O.150 says).
    Prbs31,
}

impl TestPattern {
    /// The Pattern Type octet: 0/1 null signal, 2/3 PRBS 2^31-1 (odd: with CRC-32).
    pub fn pattern_type(self, with_crc: bool) -> u8 {
        let base = match self {
            TestPattern::Null => 0,
            TestPattern::Prbs31 => 2,
        };
        base + u8::from(with_crc)
    }

    /// The pattern and whether a CRC-32 follows it, from a Pattern Type octet.
    pub fn from_pattern_type(octet: u8) -> Result<(Self, bool), CfmError> {
        match octet {
            0 => Ok((TestPattern::Null, false)),
            1 => Ok((TestPattern::Null, true)),
            2 => Ok((TestPattern::Prbs31, false)),
            3 => Ok((TestPattern::Prbs31, true)),
            other => Err(CfmError::UnknownPatternType(other)),
        }
    }
}

/// A Test TLV's value, read: `Pattern Type (1) | Test Pattern | CRC-32 (4, optional)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestTlv<'a> {
    /// The pattern the sender says it put in.
    pub pattern: TestPattern,
    /// The test pattern's octets.
    pub pattern_bytes: &'a [u8],
    /// The CRC-32 carried, for the pattern types with one.
    pub crc32: Option<u32>,
}

impl<'a> TestTlv<'a> {
    /// Reads a Test TLV's value (what follows its Type and Length).
    pub fn parse(value: &'a [u8]) -> Result<Self, CfmError> {
        let (&octet, rest) = value
            .split_first()
            .ok_or(CfmError::ShortTestTlv(value.len()))?;
        let (pattern, with_crc) = TestPattern::from_pattern_type(octet)?;
        if !with_crc {
            return Ok(TestTlv {
                pattern,
                pattern_bytes: rest,
                crc32: None,
            });
        }
        let split = rest
            .len()
            .checked_sub(4)
            .ok_or(CfmError::ShortTestTlv(value.len()))?;
        let (pattern_bytes, crc) = rest.split_at(split);
        Ok(TestTlv {
            pattern,
            pattern_bytes,
            crc32: Some(u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]])),
        })
    }

    /// Whether the CRC-32 carried is the one the TLV's octets give ([`test_tlv_crc32`]);
    /// `None` when the pattern type carries none.
    pub fn crc_matches(&self) -> Option<bool> {
        let carried = self.crc32?;
        let value_len = 1 + self.pattern_bytes.len() + 4;
        Some(
            carried
                == test_tlv_crc32(
                    value_len,
                    self.pattern.pattern_type(true),
                    self.pattern_bytes,
                ),
        )
    }
}

/// The Test TLV's CRC-32: the IEEE 802.3 CRC-32 (as Ethernet's FCS and zlib compute it) over
/// the TLV from its Type octet through the end of the test pattern, i.e. Type, Length,
/// Pattern Type and pattern.
///
/// The span is not confirmed against the Recommendation. It is the one scapy's OAM layer
/// computes; the text of ITU-T G.8013/Y.1731 §9.3 (Test TLV) was looked for (documentation,
/// web pages and public source code) and not found: no copy of the Recommendation, and the
/// implementations that turned up (Wireshark's CFM dissector, tcpdump's CFM printer) show the
/// CRC-32 field without checking it. So this span is scapy's reading, not the standard's. A
/// peer that covers another span (the pattern alone, say) shows as a CRC-32 error on every
/// reply while `bit_errors` stays 0: that signature tells a span mismatch from line errors.
pub fn test_tlv_crc32(value_len: usize, pattern_type: u8, pattern_bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[tlv_type::TEST]);
    hasher.update(&(value_len.min(0xFFFF) as u16).to_be_bytes());
    hasher.update(&[pattern_type]);
    hasher.update(pattern_bytes);
    hasher.finalize()
}

/// A Test TLV's value: the Pattern Type, `pattern_bytes`, and with `with_crc` the CRC-32.
pub fn test_tlv_value(pattern: TestPattern, with_crc: bool, pattern_bytes: &[u8]) -> Vec<u8> {
    let pattern_type = pattern.pattern_type(with_crc);
    let value_len = 1 + pattern_bytes.len() + if with_crc { 4 } else { 0 };
    let mut value = Vec::with_capacity(value_len);
    value.push(pattern_type);
    value.extend_from_slice(pattern_bytes);
    if with_crc {
        value.extend_from_slice(
            &test_tlv_crc32(value_len, pattern_type, pattern_bytes).to_be_bytes(),
        );
    }
    value
}

/// An Ethernet MAC address.
pub type MacAddress = [u8; 6];

/// The multicast class 1 destination address of MD level `level` (IEEE 802.1ag Table 8-9,
/// Y.1731 §10.1): 01-80-C2-00-00-3y, y = level. Multicast LBMs go to it.
pub fn class1_multicast(level: u8) -> MacAddress {
    [0x01, 0x80, 0xC2, 0x00, 0x00, 0x30 | (level & 0x07)]
}

/// The MD level a multicast class 1 address names, if `mac` is one.
pub fn class1_level(mac: &MacAddress) -> Option<u8> {
    (mac[..5] == [0x01, 0x80, 0xC2, 0x00, 0x00] && mac[5] & 0xF8 == 0x30).then_some(mac[5] & 0x07)
}

/// The Ethernet header length (destination, source, EtherType).
pub const ETHERNET_HEADER_LEN: usize = 14;
/// The length of an IEEE 802.1Q tag (TPID 0x8100, TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// The TPID of an IEEE 802.1Q customer VLAN tag.
pub const TPID_8021Q: u16 = 0x8100;

/// An IEEE 802.1Q tag: the VLAN and the priority (PCP) a frame travels with. Y.1731 runs OAM
/// per VLAN, so a MEP's loopback goes out on its VLAN and the reply comes back on the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// VLAN ID, 0-4094 (0: priority-tagged, no VLAN).
    pub id: u16,
    /// Priority Code Point, 0-7.
    pub pcp: u8,
    /// Drop Eligible Indicator.
    pub dei: bool,
}

impl VlanTag {
    /// The Tag Control Information: PCP (3 bits), DEI (1 bit), VLAN ID (12 bits).
    pub fn tci(self) -> u16 {
        (u16::from(self.pcp & 0x07) << 13) | (u16::from(self.dei) << 12) | (self.id & 0x0FFF)
    }

    /// The tag a TCI describes.
    pub fn from_tci(tci: u16) -> Self {
        VlanTag {
            id: tci & 0x0FFF,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
        }
    }
}

/// An Ethernet frame of EtherType 0x8902, untagged or with one 802.1Q tag, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CfmFrame<'a> {
    /// Destination MAC.
    pub destination: MacAddress,
    /// Source MAC.
    pub source: MacAddress,
    /// The 802.1Q tag in the frame, if it has one. (Linux takes the tag out before a packet
    /// socket reads a frame and hands it over beside it, so received frames are untagged.)
    pub vlan: Option<VlanTag>,
    /// What follows the EtherType (a CFM PDU, and any padding after its End TLV).
    pub payload: &'a [u8],
}

impl<'a> CfmFrame<'a> {
    /// Reads the Ethernet header (etherparse), an 802.1Q tag if one follows, and checks the
    /// EtherType.
    pub fn parse(frame: &'a [u8]) -> Result<Self, CfmError> {
        let header = etherparse::Ethernet2HeaderSlice::from_slice(frame)
            .map_err(|_| CfmError::NotCfmFrame)?;
        let (vlan, payload) = if header.ether_type() == etherparse::EtherType(TPID_8021Q) {
            let tag = etherparse::SingleVlanHeaderSlice::from_slice(&frame[ETHERNET_HEADER_LEN..])
                .map_err(|_| CfmError::NotCfmFrame)?;
            if tag.ether_type() != etherparse::EtherType(ETHERTYPE_CFM) {
                return Err(CfmError::NotCfmFrame);
            }
            let tci = u16::from_be_bytes([frame[14], frame[15]]);
            (
                Some(VlanTag::from_tci(tci)),
                &frame[ETHERNET_HEADER_LEN + VLAN_TAG_LEN..],
            )
        } else if header.ether_type() == etherparse::EtherType(ETHERTYPE_CFM) {
            (None, &frame[ETHERNET_HEADER_LEN..])
        } else {
            return Err(CfmError::NotCfmFrame);
        };
        Ok(CfmFrame {
            destination: header.destination(),
            source: header.source(),
            vlan,
            payload,
        })
    }
}

/// Writes an Ethernet frame of EtherType 0x8902 carrying `pdu`, with the 802.1Q tag `vlan`
/// if given, into `out` (cleared first).
pub fn build_frame(
    destination: MacAddress,
    source: MacAddress,
    vlan: Option<VlanTag>,
    pdu: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&destination);
    out.extend_from_slice(&source);
    if let Some(tag) = vlan {
        out.extend_from_slice(&TPID_8021Q.to_be_bytes());
        out.extend_from_slice(&tag.tci().to_be_bytes());
    }
    out.extend_from_slice(&ETHERTYPE_CFM.to_be_bytes());
    out.extend_from_slice(pdu);
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`) into a MAC address.
pub fn parse_mac(text: &str) -> Option<MacAddress> {
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for octet in &mut mac {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *octet = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Writes a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &MacAddress) -> String {
    mac.iter()
        .map(|octet| format!("{octet:02x}"))
        .collect::<Vec<_>>()
        .join(":")
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

    /// A PRBS Test TLV with CRC-32 around the pattern 12 34: the CRC is zlib's CRC-32 of
    /// `20 00 07 03 12 34` (Type, Length 7, Pattern Type 3, pattern), computed with Python's
    /// zlib.crc32: 0x70bfa613.
    #[test]
    fn test_tlv_crc_known_answer() {
        let value = test_tlv_value(TestPattern::Prbs31, true, &[0x12, 0x34]);
        assert_eq!(value, [0x03, 0x12, 0x34, 0x70, 0xbf, 0xa6, 0x13]);
        let tlv = TestTlv::parse(&value).unwrap();
        assert_eq!(tlv.pattern, TestPattern::Prbs31);
        assert_eq!(tlv.pattern_bytes, [0x12, 0x34]);
        assert_eq!(tlv.crc_matches(), Some(true));
        let mut flipped = value.clone();
        flipped[1] ^= 0x01;
        assert_eq!(TestTlv::parse(&flipped).unwrap().crc_matches(), Some(false));
        let plain = test_tlv_value(TestPattern::Null, false, &[0, 0, 0]);
        assert_eq!(plain, [0, 0, 0, 0]);
        assert_eq!(TestTlv::parse(&plain).unwrap().crc_matches(), None);
        assert_eq!(TestTlv::parse(&[]).unwrap_err(), CfmError::ShortTestTlv(0));
        assert_eq!(
            TestTlv::parse(&[3, 1, 2, 3]).unwrap_err(),
            CfmError::ShortTestTlv(4)
        );
        assert_eq!(
            TestTlv::parse(&[4, 1]).unwrap_err(),
            CfmError::UnknownPatternType(4)
        );
    }

    #[test]
    fn first_tlv_offset_other_than_4_is_refused() {
        assert_eq!(
            LoopbackPdu::new_checked(&[0, 3, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]).unwrap_err(),
            CfmError::FirstTlvOffset(8)
        );
    }

    #[test]
    fn multicast_class1_addresses() {
        assert_eq!(class1_multicast(5), [0x01, 0x80, 0xC2, 0x00, 0x00, 0x35]);
        assert_eq!(class1_level(&[0x01, 0x80, 0xC2, 0x00, 0x00, 0x37]), Some(7));
        // Class 2 (0x38-0x3F) and other addresses are not class 1.
        assert_eq!(class1_level(&[0x01, 0x80, 0xC2, 0x00, 0x00, 0x38]), None);
        assert_eq!(class1_level(&[0x02, 0x80, 0xC2, 0x00, 0x00, 0x30]), None);
        assert_eq!(
            parse_mac("02:00:5E:10:00:ff"),
            Some([2, 0, 0x5e, 0x10, 0, 0xff])
        );
        assert_eq!(
            parse_mac("02-00-5e-10-00-01"),
            Some([2, 0, 0x5e, 0x10, 0, 1])
        );
        for bad in [
            "",
            "02:00:5e:10:00",
            "02:00:5e:10:00:01:02",
            "02:00:5e:10:00:0g",
            "020:0:5e:10:00:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(
            format_mac(&[2, 0, 0x5e, 0x10, 0, 0xff]),
            "02:00:5e:10:00:ff"
        );
    }

    /// The frame around the PDU, octet by octet: destination, source, 89 02, PDU.
    #[test]
    fn frame_known_answer() {
        let mut frame = Vec::new();
        build_frame(
            [1, 2, 3, 4, 5, 6],
            [7, 8, 9, 10, 11, 12],
            None,
            &[0xAA, 0xBB],
            &mut frame,
        );
        assert_eq!(
            frame,
            [
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x89, 0x02, 0xAA, 0xBB
            ]
        );
        let parsed = CfmFrame::parse(&frame).unwrap();
        assert_eq!(parsed.destination, [1, 2, 3, 4, 5, 6]);
        assert_eq!(parsed.source, [7, 8, 9, 10, 11, 12]);
        assert_eq!(parsed.payload, [0xAA, 0xBB]);
        assert_eq!(parsed.vlan, None);
        frame[12] = 0x81;
        frame[13] = 0x00;
        assert_eq!(CfmFrame::parse(&frame).unwrap_err(), CfmError::NotCfmFrame);
        assert_eq!(
            CfmFrame::parse(&frame[..13]).unwrap_err(),
            CfmError::NotCfmFrame
        );
    }

    /// An 802.1Q tag between the source and the EtherType, octet by octet (IEEE 802.1Q §9.6):
    /// TPID 81 00, TCI A0 64 (PCP 5, DEI 0, VLAN 100).
    #[test]
    fn tagged_frame_known_answer() {
        let mut frame = Vec::new();
        let tag = VlanTag {
            id: 100,
            pcp: 5,
            dei: false,
        };
        build_frame(
            [1, 2, 3, 4, 5, 6],
            [7, 8, 9, 10, 11, 12],
            Some(tag),
            &[0xAA, 0xBB],
            &mut frame,
        );
        assert_eq!(
            frame,
            [
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x81, 0x00, 0xA0, 0x64, 0x89, 0x02, 0xAA,
                0xBB
            ]
        );
        let parsed = CfmFrame::parse(&frame).unwrap();
        assert_eq!(parsed.vlan, Some(tag));
        assert_eq!(parsed.payload, [0xAA, 0xBB]);
        assert_eq!(VlanTag::from_tci(0xF123).tci(), 0xF123);
        assert_eq!(
            VlanTag::from_tci(0xF123),
            VlanTag {
                id: 0x123,
                pcp: 7,
                dei: true
            }
        );
        // A tag over another EtherType, or cut short, is not a CFM frame.
        frame[16] = 0x08;
        frame[17] = 0x00;
        assert_eq!(CfmFrame::parse(&frame).unwrap_err(), CfmError::NotCfmFrame);
        assert_eq!(
            CfmFrame::parse(&frame[..17]).unwrap_err(),
            CfmError::NotCfmFrame
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
        fn test_tlv_round_trip(prbs in any::<bool>(), with_crc in any::<bool>(),
                               pattern in proptest::collection::vec(any::<u8>(), 0..200)) {
            let kind = if prbs { TestPattern::Prbs31 } else { TestPattern::Null };
            let value = test_tlv_value(kind, with_crc, &pattern);
            let tlv = TestTlv::parse(&value).unwrap();
            prop_assert_eq!(tlv.pattern, kind);
            prop_assert_eq!(tlv.pattern_bytes, &pattern[..]);
            prop_assert_eq!(tlv.crc_matches(), with_crc.then_some(true));
            // Inside a whole PDU, through the TLV iterator.
            let repr = LoopbackRepr {
                kind: LoopbackKind::Message,
                level: 3,
                transaction_id: 7,
                tlvs: vec![(tlv_type::TEST, value.clone())],
            };
            let bytes = repr.emit();
            let parsed = LoopbackRepr::parse(&LoopbackPdu::new_checked(&bytes[..]).unwrap()).unwrap();
            prop_assert_eq!(&parsed.tlvs[0].1, &value);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(pdu) = LoopbackPdu::new_checked(&bytes[..]) {
                let _ = LoopbackRepr::parse(&pdu);
            }
            if let Ok(tlv) = TestTlv::parse(&bytes) {
                let _ = tlv.crc_matches();
            }
            let _ = CfmFrame::parse(&bytes);
        }
    }
}
