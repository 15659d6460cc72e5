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
//! Also here: the Test TLV's pattern types and CRC-32 (Y.1731 §9.3), the Sender ID TLV (IEEE
//! 802.1ag §21.5), the MEP/MIP identifier TLVs of G.8113.1 (types 33-35), the multicast class 1
//! destination addresses (IEEE 802.1ag Table 8-9), and the Ethernet framing around the PDU with
//! up to two VLAN tags (an IEEE 802.1ad S-tag over an 802.1Q C-tag).
//! The sender is `loopscope_measure::eth_lb`, the reflector `loopscope_link::eth_lb`.
//!
//! **Sources.** The text of ITU-T G.8013/Y.1731 and of IEEE 802.1Q (which took in 802.1ag) was
//! looked for in the stored documentation, web pages and public code this project can search,
//! and not found: neither Recommendation nor Standard is there. The layout below is therefore
//! checked against three independent decoders instead: Wireshark's CFM dissector
//! (epan/dissectors/packet-cfm.c: the common header, First TLV Offset, the Test TLV's pattern
//! types 0-3 with the CRC-32 as the last 4 octets of pattern types 1 and 3, the Sender ID TLV,
//! TLV types 33 Target MEP/MIP ID, 34 Replying MEP/MIP ID, 35 Requesting MEP ID), scapy's OAM
//! layer (contrib/oam.py: the Test TLV's CRC-32 span) and tcpdump's CFM printer. Clause
//! numbers: Y.1731 §7.2.2 (multicast ETH-LB), §7.2.2.2 (the MEL decides a multicast LBM's
//! validity) and 802.1Q §20.2.2 (an LBM's destination: the MP's MAC or the CCM group address)
//! are as a public dot1ag/Y.1731 implementation cites them; the 802.1ag clause 21 subclauses
//! (§21.4 common header, §21.5 TLVs, §21.7 LBM/LBR) and Y.1731 §9.3 follow the documents'
//! published structure and could not be checked against their text here. Every format here
//! is decoded by the installed tshark in the tests, with no malformed field.

/// The CFM EtherType (IEEE 802.1ag).
pub const ETHERTYPE_CFM: u16 = 0x8902;
/// OpCode of a Loopback Reply.
pub const OPCODE_LBR: u8 = 2;
/// OpCode of a Loopback Message.
pub const OPCODE_LBM: u8 = 3;
/// The header and transaction identifier.
pub const HEADER_LEN: usize = 8;
/// TLV types used by loopback (IEEE 802.1ag Table 21-6, Y.1731 Table 9-1; 33-35 from
/// G.8113.1, as Wireshark's dissector numbers them).
pub mod tlv_type {
    /// End TLV (one octet, no length).
    pub const END: u8 = 0;
    /// Sender ID TLV (IEEE 802.1ag §21.5): chassis ID and management address.
    pub const SENDER_ID: u8 = 1;
    /// Data TLV.
    pub const DATA: u8 = 3;
    /// Organization-Specific TLV (IEEE 802.1ag §21.5).
    pub const ORGANIZATION_SPECIFIC: u8 = 31;
    /// Test TLV (Y.1731 §9.3): Pattern Type, then the pattern, then an optional CRC-32.
    pub const TEST: u8 = 32;
    /// Target MEP/MIP ID TLV (G.8113.1, on an LBM): which MEP or MIP is to answer.
    pub const TARGET_MEP_MIP_ID: u8 = 33;
    /// Replying MEP/MIP ID TLV (G.8113.1, on an LBR): which MEP or MIP answered.
    pub const REPLYING_MEP_MIP_ID: u8 = 34;
    /// Requesting MEP ID TLV (G.8113.1): the MEP that asked, with its MEG ID.
    pub const REQUESTING_MEP_ID: u8 = 35;
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
    /// A First TLV Offset below the 4 octets of the transaction identifier (IEEE 802.1ag
    /// §21.7); a larger one is a later version's longer header, whose TLVs start further on.
    #[error("First TLV Offset {0} is below 4, the loopback PDU's")]
    FirstTlvOffset(u8),
    /// A Sender ID TLV whose inner lengths run past its own Length (IEEE 802.1ag §21.5).
    #[error("a Sender ID TLV of {0} octets has lengths that run past its end")]
    BadSenderId(usize),
    /// A MEP/MIP identifier TLV too short for its subtype (G.8113.1).
    #[error("a MEP/MIP ID TLV of {0} octets is too short for its subtype")]
    ShortMepMipId(usize),
    /// A Test TLV with no Pattern Type, or too short for its CRC-32.
    #[error("a Test TLV of {0} octets is too short for its pattern type")]
    ShortTestTlv(usize),
    /// A Test TLV Pattern Type Y.1731 does not define (0-3 are).
    #[error("Test TLV pattern type {0} is not defined (0-3 are)")]
    UnknownPatternType(u8),
    /// A frame shorter than an Ethernet header, or not of EtherType 0x8902 (after at most two
    /// VLAN tags).
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
        // The First TLV Offset counts from the octet after it (IEEE 802.1ag §21.4): 4 covers
        // the transaction identifier. Less is invalid; more is a later version's header, whose
        // added fields a receiver skips (forward compatibility, as Wireshark reads it), so the
        // TLVs start at 4 + offset.
        if bytes[3] < 4 {
            return Err(CfmError::FirstTlvOffset(bytes[3]));
        }
        if bytes.len() < 4 + usize::from(bytes[3]) {
            return Err(CfmError::Truncated(bytes.len()));
        }
        let pdu = LoopbackPdu { buffer };
        pdu.tlvs().try_for_each(|tlv| tlv.map(|_| ()))?;
        Ok(pdu)
    }

    /// Where the first TLV starts: 4 + the First TLV Offset (8 for today's version).
    pub fn first_tlv_at(&self) -> usize {
        4 + usize::from(self.buffer.as_ref()[3])
    }

    /// Octets of the PDU up to and including its End TLV (what follows is padding).
    pub fn pdu_len(&self) -> usize {
        let mut at = self.first_tlv_at();
        for tlv in self.tlvs() {
            match tlv {
                Ok((_, value)) => at += 3 + value.len(),
                Err(_) => return self.buffer.as_ref().len(),
            }
        }
        at + 1
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
        let start = self.first_tlv_at().min(self.buffer.as_ref().len());
        let bytes = &self.buffer.as_ref()[start..];
        let mut at = 0usize;
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let Some(&kind) = bytes.get(at) else {
                done = true;
                return Some(Err(CfmError::BadTlv(start + at)));
            };
            if kind == tlv_type::END {
                done = true;
                return None;
            }
            if at + 3 > bytes.len() {
                done = true;
                return Some(Err(CfmError::BadTlv(start + at)));
            }
            let len = usize::from(u16::from_be_bytes([bytes[at + 1], bytes[at + 2]]));
            let end = at + 3 + len;
            if end > bytes.len() {
                done = true;
                return Some(Err(CfmError::BadTlv(start + at)));
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
/// computes (contrib/oam.py: `crc32` of the TLV's octets from Type through the pattern, the
/// result written big-endian as the value's last 4 octets); the text of ITU-T G.8013/Y.1731
/// §9.3 (Test TLV) was looked for again (documentation, web pages and public source code) and
/// not found: no copy of the Recommendation, and the other implementations that turned up
/// (Wireshark's CFM dissector, tcpdump's CFM printer, vendor manuals that call it "a CRC-32
/// with 32-bit polynomial") place the CRC-32 as the last 4 octets of pattern types 1 and 3
/// without checking it. So this span is scapy's reading, not the standard's. A peer that
/// covers another span (the pattern alone, say) shows as a CRC-32 error on every reply while
/// `bit_errors` stays 0: that signature tells a span mismatch from line errors.
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

/// The Chassis ID Subtype of a MAC address (IEEE 802.1AB's chassis ID subtypes, which the
/// Sender ID TLV takes over).
pub const CHASSIS_ID_MAC_ADDRESS: u8 = 4;

/// A Sender ID TLV's value, read (IEEE 802.1ag §21.5): `Chassis ID Length (1) | Chassis ID
/// Subtype (1) | Chassis ID | Management Address Domain Length (1) | Management Address Domain |
/// Management Address Length (1) | Management Address`. A Chassis ID Length of 0 leaves out the
/// subtype and the ID; the management fields are there only if octets remain, and a Domain
/// Length of 0 leaves out the address. (tshark reads it so: the Chassis ID Length counts the ID
/// alone, not its subtype.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderId<'a> {
    /// Chassis ID Subtype and Chassis ID, when the Chassis ID Length is not 0.
    pub chassis_id: Option<(u8, &'a [u8])>,
    /// Management Address Domain (a BER-encoded OID, RFC 2579 TDomain), when its length is
    /// there (`Some(&[])`: a Domain Length of 0, which leaves the address out).
    pub management_domain: Option<&'a [u8]>,
    /// Management Address (a TAddress of that domain), when present.
    pub management_address: Option<&'a [u8]>,
}

impl<'a> SenderId<'a> {
    /// Reads a Sender ID TLV's value.
    pub fn parse(value: &'a [u8]) -> Result<Self, CfmError> {
        let bad = || CfmError::BadSenderId(value.len());
        let (&chassis_len, mut rest) = value.split_first().ok_or_else(bad)?;
        let chassis_id = if chassis_len == 0 {
            None
        } else {
            let (&subtype, after) = rest.split_first().ok_or_else(bad)?;
            let id = after.get(..usize::from(chassis_len)).ok_or_else(bad)?;
            rest = &after[id.len()..];
            Some((subtype, id))
        };
        let mut sender = SenderId {
            chassis_id,
            management_domain: None,
            management_address: None,
        };
        let Some((&domain_len, after)) = rest.split_first() else {
            return Ok(sender);
        };
        if domain_len == 0 {
            sender.management_domain = Some(&after[..0]);
            return if after.is_empty() {
                Ok(sender)
            } else {
                Err(bad())
            };
        }
        let domain = after.get(..usize::from(domain_len)).ok_or_else(bad)?;
        sender.management_domain = Some(domain);
        let rest = &after[domain.len()..];
        let (&address_len, after) = rest.split_first().ok_or_else(bad)?;
        let address = after.get(..usize::from(address_len)).ok_or_else(bad)?;
        if after.len() != address.len() {
            return Err(bad());
        }
        sender.management_address = Some(address);
        Ok(sender)
    }

    /// The value octets: what [`parse`](Self::parse) reads back. Fields longer than 255
    /// octets are cut at 255.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let cut = |field: &[u8]| field.len().min(255);
        match self.chassis_id {
            Some((subtype, id)) => {
                out.push(cut(id) as u8);
                out.push(subtype);
                out.extend_from_slice(&id[..cut(id)]);
            }
            None => out.push(0),
        }
        if let Some(domain) = self.management_domain {
            out.push(cut(domain) as u8);
            out.extend_from_slice(&domain[..cut(domain)]);
            if !domain.is_empty() {
                let address = self.management_address.unwrap_or(&[]);
                out.push(cut(address) as u8);
                out.extend_from_slice(&address[..cut(address)]);
            }
        }
        out
    }
}

/// The value length of a Target or Replying MEP/MIP ID TLV (G.8113.1): a subtype and 24
/// octets, whatever the subtype (Wireshark reads it so; test equipment sends Length 25).
pub const MEP_MIP_ID_LEN: usize = 25;

/// What a Target (type 33) or Replying (type 34) MEP/MIP ID TLV names (G.8113.1, subtypes as
/// Wireshark decodes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MepMipId {
    /// Subtype 0: any MEP or MIP at the ingress (discovery).
    DiscoveryIngress,
    /// Subtype 1: any MEP or MIP at the egress (discovery).
    DiscoveryEgress,
    /// Subtype 2: the MEP of this MEP ID (13 bits).
    Mep(u16),
    /// Subtype 3: a MIP by ICC (6), Node ID (4), IF_Num (4) and CC (2).
    Mip([u8; 16]),
    /// A subtype G.8113.1 does not define.
    Other(u8),
}

impl MepMipId {
    /// Reads a Target or Replying MEP/MIP ID TLV's value.
    pub fn parse(value: &[u8]) -> Result<Self, CfmError> {
        let short = || CfmError::ShortMepMipId(value.len());
        let (&subtype, rest) = value.split_first().ok_or_else(short)?;
        Ok(match subtype {
            0 => MepMipId::DiscoveryIngress,
            1 => MepMipId::DiscoveryEgress,
            2 => {
                let id = rest.get(..2).ok_or_else(short)?;
                MepMipId::Mep(u16::from_be_bytes([id[0], id[1]]) & 0x1FFF)
            }
            3 => {
                let mut mip = [0u8; 16];
                mip.copy_from_slice(rest.get(..16).ok_or_else(short)?);
                MepMipId::Mip(mip)
            }
            other => MepMipId::Other(other),
        })
    }

    /// The 25-octet value: the subtype, the identifier, zeroes after it.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = vec![0u8; MEP_MIP_ID_LEN];
        match *self {
            MepMipId::DiscoveryIngress => out[0] = 0,
            MepMipId::DiscoveryEgress => out[0] = 1,
            MepMipId::Mep(id) => {
                out[0] = 2;
                out[1..3].copy_from_slice(&(id & 0x1FFF).to_be_bytes());
            }
            MepMipId::Mip(mip) => {
                out[0] = 3;
                out[1..17].copy_from_slice(&mip);
            }
            MepMipId::Other(subtype) => out[0] = subtype,
        }
        out
    }
}

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
/// The length of a VLAN tag (TPID, TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// The TPID of an IEEE 802.1Q customer VLAN tag (C-tag).
pub const TPID_8021Q: u16 = 0x8100;
/// The TPID of an IEEE 802.1ad service VLAN tag (S-tag), the outer tag of Q-in-Q.
pub const TPID_8021AD: u16 = 0x88A8;
/// The most VLAN tags a frame carries here: an S-tag over a C-tag.
pub const MAX_TAGS: usize = 2;

/// An IEEE 802.1Q tag's TCI: the VLAN and the priority (PCP) a frame travels with. Y.1731 runs
/// OAM per VLAN, so a MEP's loopback goes out on its VLAN and the reply comes back on the same
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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

/// Whether `ethertype` is the TPID of a VLAN tag this code reads (802.1Q C-tag, 802.1ad S-tag).
pub fn is_vlan_tpid(ethertype: u16) -> bool {
    ethertype == TPID_8021Q || ethertype == TPID_8021AD
}

/// The VLAN tags of a frame, outermost first: none, one (an 802.1Q C-tag), or two (IEEE 802.1ad
/// Q-in-Q: an S-tag, TPID 0x88A8, over a C-tag, TPID 0x8100). Each tag keeps the TPID it
/// came with, so a reply goes back with the very stack its message came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TagStack {
    tags: [(u16, VlanTag); MAX_TAGS],
    len: u8,
}

impl TagStack {
    /// No tags: an untagged frame.
    pub fn untagged() -> Self {
        TagStack::default()
    }

    /// One 802.1Q C-tag.
    pub fn single(tag: VlanTag) -> Self {
        let mut stack = TagStack::default();
        stack.push(TPID_8021Q, tag);
        stack
    }

    /// Q-in-Q: the S-tag `outer` (TPID 0x88A8) over the C-tag `inner` (TPID 0x8100).
    pub fn q_in_q(outer: VlanTag, inner: VlanTag) -> Self {
        let mut stack = TagStack::default();
        stack.push(TPID_8021AD, outer);
        stack.push(TPID_8021Q, inner);
        stack
    }

    /// Adds `tag` with `tpid` inside the tags already there; `false` (and nothing added) when
    /// the stack is full.
    pub fn push(&mut self, tpid: u16, tag: VlanTag) -> bool {
        let len = usize::from(self.len);
        if len >= MAX_TAGS {
            return false;
        }
        self.tags[len] = (tpid, tag);
        self.len += 1;
        true
    }

    /// This stack with `tag` (TPID `tpid`) outside it: the tag the kernel took out of a
    /// received frame (PACKET_AUXDATA) was its outermost. `None` when that makes too many.
    pub fn with_outer(self, tpid: u16, tag: VlanTag) -> Option<Self> {
        let mut stack = TagStack::default();
        stack.push(tpid, tag);
        for (tpid, tag) in self.tags() {
            if !stack.push(*tpid, *tag) {
                return None;
            }
        }
        Some(stack)
    }

    /// The tags, outermost first: (TPID, tag).
    pub fn tags(&self) -> &[(u16, VlanTag)] {
        &self.tags[..usize::from(self.len)]
    }

    /// No tags.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// The VLANs the frame belongs to, outermost first: a tag of VLAN ID 0 is a priority tag
    /// (IEEE 802.1Q), no VLAN, and is left out.
    pub fn vlan_ids(&self) -> Vec<u16> {
        self.tags()
            .iter()
            .map(|(_, tag)| tag.id)
            .filter(|id| *id != 0)
            .collect()
    }

    /// Octets the tags take on the wire.
    pub fn wire_len(&self) -> usize {
        self.len() * VLAN_TAG_LEN
    }

    /// `ID[:PCP]` per tag, outermost first, joined by `.` (the `--vlan` notation).
    pub fn notation(&self) -> String {
        self.tags()
            .iter()
            .map(|(_, tag)| format!("{}:{}", tag.id, tag.pcp))
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// An Ethernet frame of EtherType 0x8902, untagged or with up to two VLAN tags, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CfmFrame<'a> {
    /// Destination MAC.
    pub destination: MacAddress,
    /// Source MAC.
    pub source: MacAddress,
    /// The VLAN tags still in the frame, outermost first. (Linux takes the outermost tag out
    /// before a packet socket reads a frame and hands it over beside it, so a received frame
    /// holds one tag fewer than crossed the wire.)
    pub tags: TagStack,
    /// What follows the EtherType (a CFM PDU, and any padding after its End TLV).
    pub payload: &'a [u8],
}

impl<'a> CfmFrame<'a> {
    /// Reads the Ethernet header (etherparse), up to two VLAN tags (802.1Q or 802.1ad TPIDs, in
    /// any order) and checks the EtherType.
    pub fn parse(frame: &'a [u8]) -> Result<Self, CfmError> {
        let header = etherparse::Ethernet2HeaderSlice::from_slice(frame)
            .map_err(|_| CfmError::NotCfmFrame)?;
        let mut ethertype = header.ether_type().0;
        let mut at = ETHERNET_HEADER_LEN;
        let mut tags = TagStack::untagged();
        while is_vlan_tpid(ethertype) {
            let tag = etherparse::SingleVlanHeaderSlice::from_slice(&frame[at..])
                .map_err(|_| CfmError::NotCfmFrame)?;
            if !tags.push(
                ethertype,
                VlanTag::from_tci(u16::from_be_bytes([frame[at], frame[at + 1]])),
            ) {
                return Err(CfmError::NotCfmFrame);
            }
            ethertype = tag.ether_type().0;
            at += VLAN_TAG_LEN;
        }
        if ethertype != ETHERTYPE_CFM {
            return Err(CfmError::NotCfmFrame);
        }
        Ok(CfmFrame {
            destination: header.destination(),
            source: header.source(),
            tags,
            payload: &frame[at..],
        })
    }
}

/// Writes an Ethernet frame of EtherType 0x8902 carrying `pdu`, with the VLAN tags `tags`
/// (outermost first), into `out` (cleared first).
pub fn build_frame(
    destination: MacAddress,
    source: MacAddress,
    tags: &TagStack,
    pdu: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&destination);
    out.extend_from_slice(&source);
    for (tpid, tag) in tags.tags() {
        out.extend_from_slice(&tpid.to_be_bytes());
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

    /// A regression test: a First TLV Offset above 4 was refused, but IEEE 802.1ag §21.4 makes
    /// it the length of a later version's header, whose added octets a receiver skips to find
    /// the TLVs (Wireshark's dissector reads them so). Below 4 is still invalid.
    #[test]
    fn a_longer_header_is_skipped_and_a_shorter_one_refused() {
        // Offset 8: the transaction identifier and 4 octets a later version added, then a
        // Data TLV of 2 octets and the End TLV, then padding.
        let bytes = [
            0x60, 0x03, 0x00, 0x08, 0, 0, 0, 9, 0xDE, 0xAD, 0xBE, 0xEF, 0x03, 0x00, 0x02, 0xAB,
            0xCD, 0x00, 0x55, 0x55,
        ];
        let pdu = LoopbackPdu::new_checked(&bytes[..]).unwrap();
        assert_eq!(pdu.first_tlv_at(), 12);
        assert_eq!(pdu.pdu_len(), 18);
        assert_eq!(pdu.transaction_id(), 9);
        let repr = LoopbackRepr::parse(&pdu).unwrap();
        assert_eq!(repr.tlvs, vec![(tlv_type::DATA, vec![0xAB, 0xCD])]);
        assert_eq!(
            LoopbackPdu::new_checked(&[0, 3, 0, 3, 0, 0, 0, 0, 0][..]).unwrap_err(),
            CfmError::FirstTlvOffset(3)
        );
        assert_eq!(
            LoopbackPdu::new_checked(&bytes[..10]).unwrap_err(),
            CfmError::Truncated(10),
            "cut inside the longer header"
        );
        // Today's offset: the PDU ends at its End TLV, padding aside.
        let today = [0x60, 0x02, 0, 4, 0, 0, 0, 1, 0x00, 0x00, 0x00];
        assert_eq!(LoopbackPdu::new_checked(&today[..]).unwrap().pdu_len(), 9);
    }

    /// A Sender ID TLV with a MAC address as Chassis ID, octet by octet (the value tshark
    /// decodes as Chassis ID Length 6, Sub-type 4, Chassis ID 02:00:00:00:00:01), with and
    /// without the management fields; lengths that run past the end are refused.
    #[test]
    fn sender_id_known_answers() {
        let mac = [2, 0, 0, 0, 0, 1];
        let value = [6, 4, 2, 0, 0, 0, 0, 1];
        let sender = SenderId::parse(&value).unwrap();
        assert_eq!(sender.chassis_id, Some((CHASSIS_ID_MAC_ADDRESS, &mac[..])));
        assert_eq!(sender.management_domain, None);
        assert_eq!(sender.emit(), value);
        // transportDomainUdpIpv4 (1.3.6.1.2.1.100.1.1, BER) and 192.0.2.1 port 161.
        let domain = [0x2B, 6, 1, 2, 1, 0x64, 1, 1];
        let address = [192, 0, 2, 1, 0, 161];
        let mut full = value.to_vec();
        full.push(8);
        full.extend_from_slice(&domain);
        full.push(6);
        full.extend_from_slice(&address);
        let sender = SenderId::parse(&full).unwrap();
        assert_eq!(sender.management_domain, Some(&domain[..]));
        assert_eq!(sender.management_address, Some(&address[..]));
        assert_eq!(sender.emit(), full);
        // No chassis ID, a zero domain length: read and written back as they came.
        let empty_domain = SenderId::parse(&[0, 0]).unwrap();
        assert_eq!(
            empty_domain,
            SenderId {
                chassis_id: None,
                management_domain: Some(&[]),
                management_address: None
            }
        );
        assert_eq!(empty_domain.emit(), [0, 0]);
        assert_eq!(SenderId::parse(&[0]).unwrap().emit(), [0]);
        for bad in [
            &[][..],
            &[6, 4, 2, 0][..],
            &[0, 8, 1][..],
            &[0, 1, 9, 5, 1][..],
        ] {
            assert!(SenderId::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// Target MEP/MIP ID values: subtype 2 with MEP ID 12 is `02 00 0C` and 22 zeroes (the
    /// value tshark decodes as TLV type 33, Length 25); the discovery subtypes carry no ID.
    #[test]
    fn mep_mip_id_known_answers() {
        let mut value = vec![2, 0, 12];
        value.resize(MEP_MIP_ID_LEN, 0);
        assert_eq!(MepMipId::Mep(12).emit(), value);
        assert_eq!(MepMipId::parse(&value).unwrap(), MepMipId::Mep(12));
        assert_eq!(MepMipId::parse(&[0]).unwrap(), MepMipId::DiscoveryIngress);
        assert_eq!(
            MepMipId::parse(&[1; 25]).unwrap(),
            MepMipId::DiscoveryEgress
        );
        assert_eq!(MepMipId::parse(&[9]).unwrap(), MepMipId::Other(9));
        assert_eq!(
            MepMipId::parse(&[2, 0]).unwrap_err(),
            CfmError::ShortMepMipId(2)
        );
        assert_eq!(
            MepMipId::parse(&[3; 10]).unwrap_err(),
            CfmError::ShortMepMipId(10)
        );
        assert_eq!(
            MepMipId::parse(&[]).unwrap_err(),
            CfmError::ShortMepMipId(0)
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
            &TagStack::untagged(),
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
        assert!(parsed.tags.is_empty());
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
            &TagStack::single(tag),
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
        assert_eq!(parsed.tags.tags(), [(TPID_8021Q, tag)]);
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

    /// Q-in-Q (IEEE 802.1ad): an S-tag (TPID 88 A8, VLAN 100, priority 0) over a C-tag (TPID
    /// 81 00, VLAN 200, priority 5), octet by octet; the very frame the Python builder in the
    /// namespace tests sends and tshark reads as ieee8021ad.id 100 over vlan.id 200.
    #[test]
    fn q_in_q_frame_known_answer() {
        let stack = TagStack::q_in_q(
            VlanTag {
                id: 100,
                pcp: 0,
                dei: false,
            },
            VlanTag {
                id: 200,
                pcp: 5,
                dei: false,
            },
        );
        let mut frame = Vec::new();
        build_frame([1; 6], [2; 6], &stack, &[0xAA], &mut frame);
        assert_eq!(
            frame[12..],
            [
                0x88, 0xA8, 0x00, 0x64, 0x81, 0x00, 0xA0, 0xC8, 0x89, 0x02, 0xAA
            ]
        );
        let parsed = CfmFrame::parse(&frame).unwrap();
        assert_eq!(parsed.tags, stack);
        assert_eq!(parsed.tags.vlan_ids(), [100, 200]);
        assert_eq!(parsed.payload, [0xAA]);
        assert_eq!(stack.notation(), "100:0.200:5");
        assert_eq!(stack.wire_len(), 8);
        // The kernel took the S-tag out: put back outside the C-tag still in the frame.
        let inner_only = TagStack::single(stack.tags()[1].1);
        assert_eq!(
            inner_only.with_outer(TPID_8021AD, stack.tags()[0].1),
            Some(stack)
        );
        assert_eq!(
            stack.with_outer(TPID_8021Q, VlanTag::default()),
            None,
            "three tags"
        );
        // A third tag in the frame is more than this code reads.
        let mut three = frame[..12].to_vec();
        three.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
        three.extend_from_slice(&frame[12..]);
        assert_eq!(CfmFrame::parse(&three).unwrap_err(), CfmError::NotCfmFrame);
        // A priority tag (VLAN 0) names no VLAN.
        assert_eq!(
            TagStack::single(VlanTag {
                id: 0,
                pcp: 3,
                dei: false
            })
            .vlan_ids(),
            Vec::<u16>::new()
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
            if let Ok(sender) = SenderId::parse(&bytes) {
                prop_assert_eq!(sender.emit(), bytes.clone());
            }
            let _ = MepMipId::parse(&bytes);
            let _ = CfmFrame::parse(&bytes);
        }
    }
}
