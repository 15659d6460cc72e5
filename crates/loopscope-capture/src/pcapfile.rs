//! Reading pcap and pcapng from memory (a memory-mapped file): pcap-parser parses the headers and
//! blocks; this module walks them, keeps the interface table, turns timestamps into nanoseconds
//! and keeps going past damage. A pcapng block that fails to parse is skipped by its length and
//! counted; a file that ends mid-record is counted as truncated; nothing panics.

use std::fs::File;
use std::path::Path;

use loopscope_sys::MappedFile;
use pcap_parser::pcapng::{Block, parse_block_be, parse_block_le};
use pcap_parser::{Linktype, parse_pcap_header};

use crate::CaptureError;

/// One interface of a capture: pcapng IDB, or the single implicit interface of a pcap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub linktype: u32,
    /// `if_name` from the IDB when the file has one.
    pub name: Option<String>,
    /// Units per second of the timestamps (pcapng `if_tsresol`; 10^6 or 10^9 for pcap).
    resolution: u64,
    /// Seconds added to every timestamp (pcapng `if_tsoffset`).
    offset_seconds: i64,
}

impl Interface {
    pub fn new(linktype: u32, name: Option<String>) -> Self {
        Interface {
            linktype,
            name,
            resolution: 1_000_000,
            offset_seconds: 0,
        }
    }
}

/// What a packet's record says besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta {
    /// Nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Index into the file's interface table.
    pub interface: u32,
    /// Length on the wire (may exceed the captured bytes).
    pub original_len: u32,
    /// 0-based packet number in the file.
    pub number: u64,
}

/// Damage found while reading a file; processing goes on past it where the format allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadDamage {
    /// Blocks or records that failed to parse and were skipped.
    pub corrupt_records: u64,
    /// The file ended inside a record (the rest was ignored).
    pub truncated: bool,
    /// A corrupt record whose length could not be trusted ended the file early.
    pub unrecoverable: bool,
}

/// The visitor a reader drives: interfaces as they are described, then packets.
pub trait PacketVisitor {
    /// Return false to stop reading (Ctrl-C).
    fn packet(&mut self, interfaces: &[Interface], meta: RecordMeta, frame: &[u8]) -> bool;
}

/// A capture file mapped into memory.
pub struct CaptureFile {
    map: MappedFile,
}

impl CaptureFile {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|source| CaptureError::Open {
            path: path.display().to_string(),
            source,
        })?;
        // Mapped, not copied: a file another process truncates meanwhile faults (see
        // MappedFile), the accepted trade of every mmap reader (tcpdump's included).
        let map = MappedFile::map(&file).map_err(|source| CaptureError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(CaptureFile { map })
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }
}

const PCAPNG_SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Reads pcap or pcapng bytes (told apart by their magic), calling the visitor per packet.
/// Returns the interface table and the damage found; Err only when the bytes are not a capture.
pub fn read_capture(
    bytes: &[u8],
    visitor: &mut dyn PacketVisitor,
) -> Result<(Vec<Interface>, ReadDamage), CaptureError> {
    match bytes.get(0..4) {
        Some(magic) if magic == PCAPNG_SHB => Ok(read_pcapng(bytes, visitor)),
        Some(_) => read_pcap(bytes, visitor),
        None => Err(CaptureError::NotCapture(
            "shorter than any capture header".into(),
        )),
    }
}

fn read_pcap(
    bytes: &[u8],
    visitor: &mut dyn PacketVisitor,
) -> Result<(Vec<Interface>, ReadDamage), CaptureError> {
    let (mut rest, header) = parse_pcap_header(bytes).map_err(|_| {
        CaptureError::NotCapture("no pcap or pcapng magic number at the start".into())
    })?;
    if header.is_modified_format() {
        return Err(CaptureError::NotCapture(
            "the Kuznetzov 'modified' pcap format is not supported".into(),
        ));
    }
    let big_endian = header.is_bigendian();
    let nanoseconds = header.is_nanosecond_precision();
    let mut interface = Interface::new(header.network.0 as u32, None);
    if nanoseconds {
        interface.resolution = 1_000_000_000;
    }
    let interfaces = vec![interface];
    let mut damage = ReadDamage::default();
    // Records far longer than any snap length mean the file is corrupt: pcap has no framing to
    // resynchronise on, so reading ends there.
    let max_record = header.snaplen.max(262_144) as usize;
    let mut number = 0u64;
    while !rest.is_empty() {
        if rest.len() < 16 {
            damage.truncated = true;
            break;
        }
        let field = |offset: usize| {
            let raw = [
                rest[offset],
                rest[offset + 1],
                rest[offset + 2],
                rest[offset + 3],
            ];
            if big_endian {
                u32::from_be_bytes(raw)
            } else {
                u32::from_le_bytes(raw)
            }
        };
        // Reading the 16-byte record header here rather than through parse_pcap_frame keeps
        // the per-packet path to a few loads; pcap-parser validated the file header.
        let (seconds, fraction, captured, original) = (field(0), field(4), field(8), field(12));
        let captured = captured as usize;
        if captured > max_record {
            damage.corrupt_records += 1;
            damage.unrecoverable = true;
            break;
        }
        let Some(frame) = rest.get(16..16 + captured) else {
            damage.truncated = true;
            break;
        };
        let fraction_ns = if nanoseconds {
            u64::from(fraction)
        } else {
            u64::from(fraction) * 1000
        };
        let meta = RecordMeta {
            time_ns: u64::from(seconds) * 1_000_000_000 + fraction_ns,
            interface: 0,
            original_len: original,
            number,
        };
        number += 1;
        rest = &rest[16 + captured..];
        if !visitor.packet(&interfaces, meta, frame) {
            break;
        }
    }
    Ok((interfaces, damage))
}

fn read_pcapng(bytes: &[u8], visitor: &mut dyn PacketVisitor) -> (Vec<Interface>, ReadDamage) {
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut damage = ReadDamage::default();
    let mut big_endian = false;
    let mut rest = bytes;
    let mut number = 0u64;
    while !rest.is_empty() {
        if rest.len() < 12 {
            damage.truncated = true;
            break;
        }
        let block_type = [rest[0], rest[1], rest[2], rest[3]];
        if block_type == PCAPNG_SHB {
            // A new section: its byte-order magic decides how the rest is read.
            match rest.get(8..12) {
                Some([0x1a, 0x2b, 0x3c, 0x4d]) => big_endian = true,
                Some([0x4d, 0x3c, 0x2b, 0x1a]) => big_endian = false,
                _ => {
                    damage.corrupt_records += 1;
                    damage.unrecoverable = true;
                    break;
                }
            }
            interfaces.clear();
        }
        let raw_len = [rest[4], rest[5], rest[6], rest[7]];
        let block_len = if big_endian {
            u32::from_be_bytes(raw_len)
        } else {
            u32::from_le_bytes(raw_len)
        } as usize;
        if block_len < 12 || !block_len.is_multiple_of(4) {
            damage.corrupt_records += 1;
            damage.unrecoverable = true;
            break;
        }
        let Some(block_bytes) = rest.get(..block_len) else {
            damage.truncated = true;
            break;
        };
        rest = &rest[block_len..];
        let parsed = if big_endian {
            parse_block_be(block_bytes)
        } else {
            parse_block_le(block_bytes)
        };
        let block = match parsed {
            Ok((_, block)) => block,
            Err(_) => {
                damage.corrupt_records += 1;
                continue;
            }
        };
        match block {
            Block::InterfaceDescription(idb) => {
                let name = idb
                    .if_name()
                    .and_then(|name| name.ok())
                    .map(|name| name.trim_end_matches('\0').to_string());
                interfaces.push(Interface {
                    linktype: linktype_value(idb.linktype),
                    name,
                    resolution: idb.ts_resolution().unwrap_or(1_000_000),
                    offset_seconds: idb.ts_offset(),
                });
            }
            Block::EnhancedPacket(epb) => {
                let Some(interface) = interfaces.get(epb.if_id as usize) else {
                    damage.corrupt_records += 1;
                    continue;
                };
                let captured = (epb.caplen as usize).min(epb.data.len());
                let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let meta = RecordMeta {
                    time_ns: ticks_to_ns(ticks, interface.resolution, interface.offset_seconds),
                    interface: epb.if_id,
                    original_len: epb.origlen,
                    number,
                };
                number += 1;
                if !visitor.packet(&interfaces, meta, &epb.data[..captured]) {
                    break;
                }
            }
            Block::SimplePacket(spb) => {
                let Some(interface) = interfaces.first() else {
                    damage.corrupt_records += 1;
                    continue;
                };
                let _ = interface;
                let meta = RecordMeta {
                    time_ns: 0,
                    interface: 0,
                    original_len: spb.origlen,
                    number,
                };
                number += 1;
                let captured = (spb.origlen as usize).min(spb.data.len());
                if !visitor.packet(&interfaces, meta, &spb.data[..captured]) {
                    break;
                }
            }
            _ => {}
        }
    }
    (interfaces, damage)
}

fn linktype_value(linktype: Linktype) -> u32 {
    linktype.0 as u32
}

fn ticks_to_ns(ticks: u64, resolution: u64, offset_seconds: i64) -> u64 {
    let ns = if resolution == 0 {
        0
    } else if resolution <= 1_000_000_000 && 1_000_000_000 % resolution == 0 {
        ticks.saturating_mul(1_000_000_000 / resolution)
    } else {
        ((u128::from(ticks) * 1_000_000_000) / u128::from(resolution)).min(u128::from(u64::MAX))
            as u64
    };
    ns.saturating_add_signed(offset_seconds.saturating_mul(1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions() {
        assert_eq!(ticks_to_ns(5, 1_000_000, 0), 5_000);
        assert_eq!(ticks_to_ns(5, 1_000_000_000, 1), 1_000_000_005);
        assert_eq!(ticks_to_ns(1, 1 << 10, 0), 976_562);
    }
}
