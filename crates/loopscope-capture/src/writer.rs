//! Writes flagged packets to a pcapng file (tshark, Wireshark and tcpdump read it): one section,
//! one interface description per (input, interface) pair with its name and link type, and
//! nanosecond timestamps. Blocks are serialised by pcap-parser.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use pcap_parser::pcapng::{
    EnhancedPacketBlock, InterfaceDescriptionBlock, OptionCode, PcapNGOption, SectionHeaderBlock,
};
use pcap_parser::{Linktype, ToVec};

use crate::CaptureError;

const SHB_MAGIC: u32 = 0x0a0d_0d0a;
const IDB_MAGIC: u32 = 0x0000_0001;
const EPB_MAGIC: u32 = 0x0000_0006;
const BOM_MAGIC: u32 = 0x1a2b_3c4d;
const USER_APPLICATION: &[u8] = b"loopscope martians";

/// Where a packet came from: packets of different inputs or interfaces get their own
/// interface descriptions.
pub struct PacketOrigin<'a> {
    pub input: u32,
    pub interface: u32,
    pub linktype: u32,
    pub interface_name: Option<&'a str>,
}

pub struct PcapngWriter {
    out: BufWriter<File>,
    path: String,
    /// (input key, interface id in the input) -> interface id in the output.
    interfaces: HashMap<(u32, u32), u32>,
    packets: u64,
}

impl PcapngWriter {
    pub fn create(path: &Path) -> Result<Self, CaptureError> {
        let display = path.display().to_string();
        let file = File::create(path).map_err(|source| CaptureError::Write {
            path: display.clone(),
            source,
        })?;
        let mut writer = PcapngWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            path: display,
            interfaces: HashMap::new(),
            packets: 0,
        };
        let mut section = SectionHeaderBlock {
            block_type: SHB_MAGIC,
            block_len1: 0,
            bom: BOM_MAGIC,
            major_version: 1,
            minor_version: 0,
            section_len: -1,
            options: vec![PcapNGOption {
                code: OptionCode(4), // shb_userappl
                len: USER_APPLICATION.len() as u16,
                value: std::borrow::Cow::Borrowed(USER_APPLICATION),
            }],
            block_len2: 0,
        };
        let bytes = section.to_vec().map_err(|_| writer.serialise_error())?;
        writer.write(&bytes)?;
        Ok(writer)
    }

    /// Writes one packet.
    pub fn write_packet(
        &mut self,
        origin: &PacketOrigin<'_>,
        time_ns: u64,
        original_len: u32,
        frame: &[u8],
    ) -> Result<(), CaptureError> {
        let next_id = self.interfaces.len() as u32;
        let if_id = match self.interfaces.get(&(origin.input, origin.interface)) {
            Some(id) => *id,
            None => {
                // pcap-parser adds if_tsresol (from the field below) and if_tsoffset itself.
                let mut options = Vec::new();
                if let Some(name) = origin.interface_name {
                    options.push(PcapNGOption {
                        code: OptionCode(2), // if_name
                        len: name.len().min(255) as u16,
                        value: std::borrow::Cow::Owned(
                            name.as_bytes()[..name.len().min(255)].to_vec(),
                        ),
                    });
                }
                let mut description = InterfaceDescriptionBlock {
                    block_type: IDB_MAGIC,
                    block_len1: 0,
                    linktype: Linktype(origin.linktype as i32),
                    reserved: 0,
                    snaplen: 0,
                    options,
                    block_len2: 0,
                    if_tsresol: 9,
                    if_tsoffset: 0,
                };
                let bytes = description.to_vec().map_err(|_| self.serialise_error())?;
                self.write(&bytes)?;
                self.interfaces
                    .insert((origin.input, origin.interface), next_id);
                next_id
            }
        };
        let mut block = EnhancedPacketBlock {
            block_type: EPB_MAGIC,
            block_len1: 0,
            if_id,
            ts_high: (time_ns >> 32) as u32,
            ts_low: time_ns as u32,
            caplen: frame.len() as u32,
            origlen: original_len.max(frame.len() as u32),
            data: frame,
            options: Vec::new(),
            block_len2: 0,
        };
        let bytes = block.to_vec().map_err(|_| self.serialise_error())?;
        self.write(&bytes)?;
        self.packets += 1;
        Ok(())
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn finish(mut self) -> Result<u64, CaptureError> {
        let result = self.out.flush();
        result.map_err(|source| CaptureError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.packets)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), CaptureError> {
        self.out
            .write_all(bytes)
            .map_err(|source| CaptureError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn serialise_error(&self) -> CaptureError {
        CaptureError::Write {
            path: self.path.clone(),
            source: std::io::Error::other("pcapng block could not be serialised"),
        }
    }
}
