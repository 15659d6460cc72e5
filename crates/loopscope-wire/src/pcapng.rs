//! The pcapng blocks loopscope writes (draft-ietf-opsawg-pcapng; tshark, Wireshark and tcpdump
//! read them): one Section Header, Interface Descriptions with nanosecond timestamps, and
//! Enhanced Packet Blocks. pcap-parser serialises the blocks; this module fixes the choices
//! both writers make (byte order mark, timestamp resolution, option codes), which the capture
//! adapter of `loopscope-link` and `martians --write-matches` each spelled out before.
//!
//! Emitting a block allocates its bytes (pcap-parser builds a `Vec`); nothing is parsed here.

use std::borrow::Cow;

use pcap_parser::pcapng::{
    EnhancedPacketBlock, InterfaceDescriptionBlock, OptionCode, PcapNGOption, SectionHeaderBlock,
};
use pcap_parser::{Linktype, ToVec};

const SHB_MAGIC: u32 = 0x0a0d_0d0a;
const IDB_MAGIC: u32 = 0x0000_0001;
const EPB_MAGIC: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Option codes: `shb_userappl`, `if_name`, `epb_flags`.
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const EPB_FLAGS: u16 = 2;
/// An option value is at most this long here (names longer than any interface's are cut).
const MAX_OPTION: usize = 255;

/// The `epb_flags` direction of a packet: inbound 1, outbound 2 (bits 0-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketDirection {
    /// Received.
    Inbound,
    /// Sent.
    Outbound,
}

/// A block pcap-parser could not serialise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a pcapng {0} block could not be serialised")]
pub struct PcapngError(&'static str);

fn option(code: u16, value: &[u8]) -> PcapNGOption<'_> {
    let value = &value[..value.len().min(MAX_OPTION)];
    PcapNGOption {
        code: OptionCode(code),
        len: value.len() as u16,
        value: Cow::Borrowed(value),
    }
}

/// The Section Header Block that starts a file (version 1.0, section length unknown), naming
/// the writing `application`.
pub fn section_header(application: &str) -> Result<Vec<u8>, PcapngError> {
    SectionHeaderBlock {
        block_type: SHB_MAGIC,
        block_len1: 0,
        bom: BYTE_ORDER_MAGIC,
        major_version: 1,
        minor_version: 0,
        section_len: -1,
        options: vec![option(SHB_USERAPPL, application.as_bytes())],
        block_len2: 0,
    }
    .to_vec()
    .map_err(|_| PcapngError("section header"))
}

/// An Interface Description Block of `linktype` (tcpdump.org LINKTYPE_*), with nanosecond
/// timestamps and, when given, its name.
pub fn interface_description(linktype: u32, name: Option<&str>) -> Result<Vec<u8>, PcapngError> {
    InterfaceDescriptionBlock {
        block_type: IDB_MAGIC,
        block_len1: 0,
        linktype: Linktype(linktype as i32),
        reserved: 0,
        snaplen: 0,
        options: name
            .map(|name| option(IF_NAME, name.as_bytes()))
            .into_iter()
            .collect(),
        block_len2: 0,
        // pcap-parser writes if_tsresol from this field (and if_tsoffset from the next).
        if_tsresol: 9,
        if_tsoffset: 0,
    }
    .to_vec()
    .map_err(|_| PcapngError("interface description"))
}

/// An Enhanced Packet Block: `data` as captured on interface `interface_id` at `time_ns`
/// (nanoseconds since the Unix epoch), `original_len` bytes long on the wire (never less than
/// what was captured), with its direction when known.
pub fn enhanced_packet(
    interface_id: u32,
    time_ns: u64,
    original_len: u32,
    data: &[u8],
    direction: Option<PacketDirection>,
) -> Result<Vec<u8>, PcapngError> {
    let flags = direction.map(|direction| {
        match direction {
            PacketDirection::Inbound => 1u32,
            PacketDirection::Outbound => 2,
        }
        .to_le_bytes()
    });
    EnhancedPacketBlock {
        block_type: EPB_MAGIC,
        block_len1: 0,
        if_id: interface_id,
        ts_high: (time_ns >> 32) as u32,
        ts_low: time_ns as u32,
        caplen: data.len() as u32,
        origlen: original_len.max(data.len() as u32),
        data,
        options: flags
            .as_ref()
            .map(|flags| option(EPB_FLAGS, flags))
            .into_iter()
            .collect(),
        block_len2: 0,
    }
    .to_vec()
    .map_err(|_| PcapngError("enhanced packet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout checked against the pcapng draft by hand, independent of pcap-parser's
    /// writer: block type, total length repeated at the end, and the fields in order.
    #[test]
    fn an_enhanced_packet_block_is_laid_out_as_the_draft_says() {
        let block = enhanced_packet(3, 0x0000_0001_0000_0002, 10, b"abcd", None).unwrap();
        let word = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().unwrap());
        assert_eq!(word(0), 6, "block type");
        assert_eq!(word(4) as usize, block.len(), "total length");
        assert_eq!(word(8), 3, "interface id");
        assert_eq!((word(12), word(16)), (1, 2), "timestamp high, low");
        assert_eq!((word(20), word(24)), (4, 10), "captured, original length");
        assert_eq!(&block[28..32], b"abcd");
        assert_eq!(
            word(block.len() - 4) as usize,
            block.len(),
            "trailing length"
        );
    }

    #[test]
    fn the_direction_goes_into_epb_flags() {
        let block = enhanced_packet(0, 0, 0, b"", Some(PacketDirection::Outbound)).unwrap();
        let word = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().unwrap());
        // After the 28-byte fixed part (no data): option code 2, length 4, value 2.
        assert_eq!(word(28) & 0xffff, 2, "epb_flags");
        assert_eq!(word(28) >> 16, 4);
        assert_eq!(word(32), 2, "outbound");
    }

    #[test]
    fn a_section_header_starts_with_the_byte_order_magic() {
        let block = section_header("loopscope").unwrap();
        let word = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().unwrap());
        assert_eq!((word(0), word(8)), (SHB_MAGIC, BYTE_ORDER_MAGIC));
        assert_eq!(word(4) as usize, block.len());
    }
}
