//! Reading pcap and pcapng as a stream: pcap-parser parses the headers and blocks; this module
//! feeds them from any reader (a file, a pipe, `/dev/stdin`) through one bounded buffer, keeps
//! the interface table, turns timestamps into nanoseconds and keeps going past damage. A pcapng
//! block that fails to parse is skipped by its length and counted; a file that ends mid-record
//! is counted as truncated; nothing panics.
//!
//! Why read rather than map the file: a mapped capture that another process truncates while it
//! is scanned kills the reader with SIGBUS (a capture still being written by tcpdump, a log
//! rotation), and pipes cannot be mapped at all. Reading costs one copy of the bytes, which is
//! small beside decoding them, and a file cut short while it is read simply ends early and is
//! reported as truncated.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use pcap_parser::pcapng::{Block, parse_block_be, parse_block_le};
use pcap_parser::{Linktype, parse_pcap_header};

use crate::CaptureError;

/// One interface of a capture: pcapng IDB, or the single implicit interface of a pcap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its link-layer header type (tcpdump.org LINKTYPE_*).
    pub linktype: u32,
    /// `if_name` from the IDB when the file has one.
    pub name: Option<String>,
    /// Units per second of the timestamps (pcapng `if_tsresol`; 10^6 or 10^9 for pcap).
    resolution: u64,
    /// Seconds added to every timestamp (pcapng `if_tsoffset`).
    offset_seconds: i64,
}

impl Interface {
    /// An interface of `linktype` with microsecond timestamps (pcap's default).
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
    /// Reading failed part way (an I/O error); what was read before counts.
    pub read_error: Option<String>,
}

impl ReadDamage {
    /// Anything was wrong with the input.
    pub fn any(&self) -> bool {
        self.corrupt_records > 0
            || self.truncated
            || self.unrecoverable
            || self.read_error.is_some()
    }
}

/// The visitor a reader drives: interfaces as they are described, then packets.
pub trait PacketVisitor {
    /// Return false to stop reading (Ctrl-C).
    fn packet(&mut self, interfaces: &[Interface], meta: RecordMeta, frame: &[u8]) -> bool;
}

/// Opens a capture for reading: a path, or `-` for standard input.
pub fn open_capture(path: &Path) -> Result<Box<dyn Read>, CaptureError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(io::stdin().lock()));
    }
    let file = File::open(path).map_err(|source| CaptureError::Open {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Box::new(file))
}

/// How much is read at a time, at most: reads start at [`FIRST_READ`] and double while they
/// fill the space given, so a small capture costs a small buffer and a large one few reads.
const CHUNK: usize = 1 << 20;
const FIRST_READ: usize = 64 << 10;
/// The longest pcapng block kept in memory. Longer ones (no real packet is) are skipped by
/// their length without being buffered, so a forged length cannot make the reader allocate it.
const MAX_BLOCK: usize = 16 << 20;

/// A reader with a window of buffered bytes: `ensure(n)` makes n bytes visible, `consume(n)`
/// drops them. The window never grows past the largest record asked for (or [`CHUNK`]).
struct Window<R> {
    reader: R,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    read_size: usize,
    eof: bool,
    error: Option<io::Error>,
}

impl<R: Read> Window<R> {
    fn new(reader: R) -> Self {
        Window {
            reader,
            buffer: Vec::new(),
            start: 0,
            end: 0,
            read_size: FIRST_READ,
            eof: false,
            error: None,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }

    /// Whether `n` bytes are visible after reading as needed; false at the end of the input
    /// (or on a read error, kept in `error`).
    fn ensure(&mut self, n: usize) -> bool {
        while self.end - self.start < n {
            if self.eof {
                return false;
            }
            // Grow towards `n` at most a chunk beyond what is buffered: a short file whose
            // record claims 16 MiB then costs what it holds, not a zeroed 16 MiB buffer.
            let want = n.min(self.end - self.start + CHUNK).max(self.read_size);
            if self.buffer.len() - self.start < want {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buffer.len() < want {
                    self.buffer.resize(want, 0);
                }
            }
            let space = self.buffer.len() - self.end;
            match self.reader.read(&mut self.buffer[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(read) => {
                    self.end += read;
                    if read == space && self.read_size < CHUNK {
                        self.read_size *= 2;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    self.error = Some(error);
                    self.eof = true;
                }
            }
        }
        true
    }

    fn consume(&mut self, n: usize) {
        self.start += n.min(self.end - self.start);
    }

    /// Drops `n` bytes, reading through those not yet buffered; false if the input ends first.
    fn skip(&mut self, mut n: usize) -> bool {
        loop {
            let visible = (self.end - self.start).min(n);
            self.consume(visible);
            n -= visible;
            if n == 0 {
                return true;
            }
            if !self.ensure(1) {
                return false;
            }
        }
    }
}

const PCAPNG_SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Reads a pcap or pcapng stream (told apart by their magic), calling the visitor per packet.
/// Returns the interface table and the damage found; Err only when the bytes are not a capture.
pub fn read_capture<R: Read>(
    reader: R,
    visitor: &mut dyn PacketVisitor,
) -> Result<(Vec<Interface>, ReadDamage), CaptureError> {
    let mut window = Window::new(reader);
    if !window.ensure(4) {
        if let Some(error) = window.error {
            return Err(CaptureError::Io {
                context: "reading the capture".into(),
                source: error,
            });
        }
        return Err(CaptureError::NotCapture(
            "shorter than any capture header".into(),
        ));
    }
    let (interfaces, mut damage) = if window.available()[..4] == PCAPNG_SHB {
        read_pcapng(&mut window, visitor)
    } else {
        read_pcap(&mut window, visitor)?
    };
    if let Some(error) = window.error.take() {
        damage.read_error = Some(error.to_string());
    }
    Ok((interfaces, damage))
}

fn read_pcap<R: Read>(
    window: &mut Window<R>,
    visitor: &mut dyn PacketVisitor,
) -> Result<(Vec<Interface>, ReadDamage), CaptureError> {
    window.ensure(24);
    let (big_endian, nanoseconds, network, snaplen) = {
        let (_, header) = parse_pcap_header(window.available()).map_err(|_| {
            CaptureError::NotCapture("no pcap or pcapng magic number at the start".into())
        })?;
        if header.is_modified_format() {
            return Err(CaptureError::NotCapture(
                "the Kuznetzov 'modified' pcap format is not supported".into(),
            ));
        }
        (
            header.is_bigendian(),
            header.is_nanosecond_precision(),
            header.network.0 as u32,
            header.snaplen,
        )
    };
    window.consume(24);
    let mut interface = Interface::new(network, None);
    if nanoseconds {
        interface.resolution = 1_000_000_000;
    }
    let interfaces = vec![interface];
    let mut damage = ReadDamage::default();
    // Records far longer than any snap length mean the file is corrupt: pcap has no framing to
    // resynchronise on, so reading ends there. The snap length is the file's own claim, so it
    // is held to the pcapng block bound too: a 138-byte file claiming a 2.7 GB snap length and
    // record made the reader allocate (and zero) 2.7 GB (found by the capture_file fuzz target).
    let max_record = (snaplen as usize).clamp(262_144, MAX_BLOCK);
    let mut number = 0u64;
    // Records are walked in the buffered bytes without going back to the window for each one
    // (a few loads per packet, as over a mapped file); the window is refilled only when the
    // next record is not all there.
    let mut needed = 16;
    'read: loop {
        if !window.ensure(needed) {
            damage.truncated = !window.available().is_empty();
            break;
        }
        let buffered = window.available();
        let mut offset = 0;
        let mut stop = false;
        needed = 16;
        while let Some(rest) = buffered.get(offset..).filter(|rest| rest.len() >= 16) {
            let field = |at: usize| {
                let raw = [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]];
                if big_endian {
                    u32::from_be_bytes(raw)
                } else {
                    u32::from_le_bytes(raw)
                }
            };
            // Reading the 16-byte record header here rather than through parse_pcap_frame
            // keeps the per-packet path to a few loads; pcap-parser validated the file header.
            let (seconds, fraction, captured, original) = (field(0), field(4), field(8), field(12));
            let captured = captured as usize;
            if captured > max_record {
                damage.corrupt_records += 1;
                damage.unrecoverable = true;
                stop = true;
                break;
            }
            let Some(frame) = rest.get(16..16 + captured) else {
                needed = 16 + captured;
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
            offset += 16 + captured;
            if !visitor.packet(&interfaces, meta, frame) {
                stop = true;
                break;
            }
        }
        window.consume(offset);
        if stop {
            break 'read;
        }
    }
    Ok((interfaces, damage))
}

fn read_pcapng<R: Read>(
    window: &mut Window<R>,
    visitor: &mut dyn PacketVisitor,
) -> (Vec<Interface>, ReadDamage) {
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut damage = ReadDamage::default();
    let mut big_endian = false;
    let mut number = 0u64;
    loop {
        if !window.ensure(12) {
            damage.truncated = !window.available().is_empty();
            break;
        }
        let rest = window.available();
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
        if block_len > MAX_BLOCK {
            damage.corrupt_records += 1;
            if !window.skip(block_len) {
                damage.truncated = true;
                break;
            }
            continue;
        }
        if !window.ensure(block_len) {
            damage.truncated = true;
            break;
        }
        let block_bytes = &window.available()[..block_len];
        let parsed = if big_endian {
            parse_block_be(block_bytes)
        } else {
            parse_block_le(block_bytes)
        };
        let mut go_on = true;
        match parsed {
            Err(_) => damage.corrupt_records += 1,
            Ok((_, Block::InterfaceDescription(idb))) => {
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
            Ok((_, Block::EnhancedPacket(epb))) => match interfaces.get(epb.if_id as usize) {
                None => damage.corrupt_records += 1,
                Some(interface) => {
                    let captured = (epb.caplen as usize).min(epb.data.len());
                    let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                    let meta = RecordMeta {
                        time_ns: ticks_to_ns(ticks, interface.resolution, interface.offset_seconds),
                        interface: epb.if_id,
                        original_len: epb.origlen,
                        number,
                    };
                    number += 1;
                    go_on = visitor.packet(&interfaces, meta, &epb.data[..captured]);
                }
            },
            Ok((_, Block::SimplePacket(spb))) => {
                if interfaces.is_empty() {
                    damage.corrupt_records += 1;
                } else {
                    let meta = RecordMeta {
                        time_ns: 0,
                        interface: 0,
                        original_len: spb.origlen,
                        number,
                    };
                    number += 1;
                    let captured = (spb.origlen as usize).min(spb.data.len());
                    go_on = visitor.packet(&interfaces, meta, &spb.data[..captured]);
                }
            }
            Ok(_) => {}
        }
        window.consume(block_len);
        if !go_on {
            break;
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

    struct Frames(Vec<Vec<u8>>);

    impl PacketVisitor for Frames {
        fn packet(&mut self, _: &[Interface], _: RecordMeta, frame: &[u8]) -> bool {
            self.0.push(frame.to_vec());
            true
        }
    }

    /// A reader that hands out at most 7 bytes per call, like a slow pipe: records span reads.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(7).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn pcap(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        for frame in frames {
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(frame);
        }
        out
    }

    #[test]
    fn records_spanning_reads_come_out_whole() {
        let bytes = pcap(&[&[1; 30], &[2; 3], &[3; 100]]);
        let mut frames = Frames(Vec::new());
        let (_, damage) = read_capture(Trickle(&bytes), &mut frames).unwrap();
        assert_eq!(damage, ReadDamage::default());
        assert_eq!(frames.0, vec![vec![1; 30], vec![2; 3], vec![3; 100]]);
        let mut frames = Frames(Vec::new());
        let (_, damage) = read_capture(Trickle(&bytes[..bytes.len() - 1]), &mut frames).unwrap();
        assert!(damage.truncated);
        assert_eq!(frames.0.len(), 2);
    }

    /// A pcapng block claiming 256 MiB is skipped by its length, never buffered.
    #[test]
    fn a_huge_block_is_skipped_not_buffered() {
        let mut bytes = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a];
        bytes.extend_from_slice(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        bytes.extend_from_slice(&28u32.to_le_bytes());
        bytes.extend_from_slice(&[0xbb, 0, 0, 0]);
        bytes.extend_from_slice(&(256u32 << 20).to_le_bytes());
        bytes.extend_from_slice(&[0; 64]);
        let mut frames = Frames(Vec::new());
        let (_, damage) = read_capture(bytes.as_slice(), &mut frames).unwrap();
        assert_eq!(damage.corrupt_records, 1);
        assert!(damage.truncated);
    }

    /// Hands out the input like `&[u8]` does and remembers the largest buffer it was given to
    /// fill: the reader's window never needs one bigger than the largest record it will keep.
    struct LargestRead<'a> {
        input: &'a [u8],
        largest: usize,
    }

    impl Read for LargestRead<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.largest = self.largest.max(out.len());
            self.input.read(out)
        }
    }

    /// The capture_file fuzz target's out-of-memory input, byte for byte: a pcap header whose
    /// snap length (like every other field) is 0xa0a0a0a0, then a record claiming as many
    /// captured bytes. The reader took the file's snap length as the record bound and grew its
    /// window to 2,694,881,456 bytes.
    #[test]
    fn a_forged_snap_length_does_not_size_the_buffer() {
        let hex = concat!(
            "d4c3b2a1020004a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0",
            "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a00000ad00",
            "000000000000ffff00000100000000000000000000002c0000002c0000000200",
            "0000000202000000000108004500001e00010000401100007f0000010a000002",
            "0fa00035000a00006869",
        );
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
            .collect();
        assert_eq!(bytes.len(), 138);
        let mut reader = LargestRead {
            input: &bytes,
            largest: 0,
        };
        let mut frames = Frames(Vec::new());
        let (_, damage) = read_capture(&mut reader, &mut frames).unwrap();
        assert_eq!(damage.corrupt_records, 1, "{damage:?}");
        assert!(damage.unrecoverable, "{damage:?}");
        assert!(frames.0.is_empty());
        assert!(
            reader.largest <= MAX_BLOCK + 16,
            "a {}-byte buffer",
            reader.largest
        );
    }

    /// A 95-byte file whose one record claims 16,000,000 bytes (under the 16 MiB bound) is
    /// truncated, and reading it never asks for a buffer much beyond a chunk: it used to zero
    /// a 16 MB window first (found by the capture_file fuzz target as a slow input).
    #[test]
    fn a_record_longer_than_the_file_is_not_buffered_ahead() {
        let mut bytes = pcap(&[]);
        // A snap length of 16 MiB, so that the record is within bounds.
        bytes[16..20].copy_from_slice(&(16u32 << 20).to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&16_000_000u32.to_le_bytes());
        bytes.extend_from_slice(&16_000_000u32.to_le_bytes());
        bytes.extend_from_slice(&[0x45; 55]);
        assert_eq!(bytes.len(), 95);
        let mut reader = LargestRead {
            input: &bytes,
            largest: 0,
        };
        let mut frames = Frames(Vec::new());
        let (_, damage) = read_capture(&mut reader, &mut frames).unwrap();
        assert!(damage.truncated, "{damage:?}");
        assert!(frames.0.is_empty());
        assert!(
            reader.largest <= CHUNK + 16,
            "a {}-byte buffer",
            reader.largest
        );
    }

    #[test]
    fn resolutions() {
        assert_eq!(ticks_to_ns(5, 1_000_000, 0), 5_000);
        assert_eq!(ticks_to_ns(5, 1_000_000_000, 1), 1_000_000_005);
        assert_eq!(ticks_to_ns(1, 1 << 10, 0), 976_562);
    }
}
