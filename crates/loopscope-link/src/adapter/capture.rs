//! The capture adapter: wraps any link and writes what crosses it to a pcapng file that
//! tshark, Wireshark and tcpdump read (compare smoltcp's `phy::PcapWriter`).
//!
//! A link carries bytes, not packets, so each `send` and each `recv` that returned data becomes
//! one packet (split into several above 65,507 bytes), wrapped in a made-up IPv4/UDP header so
//! that the tools decode it and show the two directions apart: the near end is
//! `127.0.0.1:49152`, the far end `127.0.0.2:7` (the echo port of RFC 862, which is what the
//! far end of a loopback test is). The link type is LINKTYPE_RAW (101, raw IP). Every packet's
//! direction is also in its Enhanced Packet Block flags (`epb_flags`: 2 outbound, 1 inbound),
//! and its time is the wall clock in nanoseconds.
//!
//! Writing never fails the link: the first write error is kept and reported in the link's
//! statistics (`capture.error`), and nothing more is written.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use loopscope_wire::pcapng::{self, PacketDirection};

use crate::link::{
    Cancel, Link, LinkError, LinkHalves, LinkReceiver, LinkSender, LinkStats, SendError,
};
use crate::stats::CaptureStats;

/// Link type of raw IPv4/IPv6 packets (tcpdump.org link-layer header types).
pub const LINKTYPE_RAW: i32 = 101;
/// The near end's made-up address and port.
pub const NEAR: ([u8; 4], u16) = ([127, 0, 0, 1], 49152);
/// The far end's made-up address and port (echo, RFC 862).
pub const FAR: ([u8; 4], u16) = ([127, 0, 0, 2], 7);
/// Most payload bytes one IPv4/UDP packet carries (65535 - 20 - 8).
pub const MAX_PACKET_PAYLOAD: usize = 65_507;

/// Which way a packet crossed the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent into the link.
    Outbound,
    /// Came back out of it.
    Inbound,
}

impl From<Direction> for PacketDirection {
    fn from(direction: Direction) -> Self {
        match direction {
            Direction::Inbound => PacketDirection::Inbound,
            Direction::Outbound => PacketDirection::Outbound,
        }
    }
}

/// Writes packets to one pcapng file; shared by the two halves of a link.
struct Sink {
    out: Option<BufWriter<File>>,
    path: PathBuf,
    packets: u64,
    bytes: u64,
    error: Option<String>,
    ip_id: u16,
    packet: Vec<u8>,
}

impl Sink {
    fn create(path: &Path, description: &str) -> io::Result<Self> {
        let file = File::create(path)?;
        let mut sink = Sink {
            out: Some(BufWriter::with_capacity(1 << 16, file)),
            path: path.to_path_buf(),
            packets: 0,
            bytes: 0,
            error: None,
            ip_id: 0,
            packet: Vec::with_capacity(2048),
        };
        let application = format!("loopscope {}", env!("CARGO_PKG_VERSION"));
        sink.write_block(pcapng::section_header(&application))?;
        sink.write_block(pcapng::interface_description(
            LINKTYPE_RAW as u32,
            Some(description),
        ))?;
        Ok(sink)
    }

    fn write_block(&mut self, block: Result<Vec<u8>, pcapng::PcapngError>) -> io::Result<()> {
        let bytes = block.map_err(io::Error::other)?;
        match &mut self.out {
            Some(out) => out.write_all(&bytes),
            None => Ok(()),
        }
    }

    /// Records `data` as it crossed the link in `direction` at `time`.
    fn record(&mut self, direction: Direction, time: SystemTime, data: &[u8]) {
        if self.out.is_none() {
            return;
        }
        let time_ns = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        let time_ns = u64::try_from(time_ns).unwrap_or(u64::MAX);
        for piece in data.chunks(MAX_PACKET_PAYLOAD) {
            if let Err(error) = self.record_packet(direction, time_ns, piece) {
                self.error = Some(format!("writing {}: {error}", self.path.display()));
                self.out = None;
                return;
            }
        }
    }

    fn record_packet(
        &mut self,
        direction: Direction,
        time_ns: u64,
        payload: &[u8],
    ) -> io::Result<()> {
        let ((source, source_port), (destination, destination_port)) = match direction {
            Direction::Outbound => (NEAR, FAR),
            Direction::Inbound => (FAR, NEAR),
        };
        self.ip_id = self.ip_id.wrapping_add(1);
        let mut ip =
            etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, source, destination)
                .map_err(|error| io::Error::other(error.to_string()))?;
        ip.identification = self.ip_id;
        let builder =
            etherparse::PacketBuilder::ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
                .udp(source_port, destination_port);
        self.packet.clear();
        builder
            .write(&mut self.packet, payload)
            .map_err(|error| io::Error::other(error.to_string()))?;
        let packet = std::mem::take(&mut self.packet);
        let block = pcapng::enhanced_packet(
            0,
            time_ns,
            packet.len() as u32,
            &packet,
            Some(direction.into()),
        );
        let result = self.write_block(block);
        self.packet = packet;
        result?;
        self.packets += 1;
        self.bytes += payload.len() as u64;
        Ok(())
    }

    fn flush(&mut self) {
        if let Some(out) = &mut self.out
            && let Err(error) = out.flush()
        {
            self.error = Some(format!("writing {}: {error}", self.path.display()));
            self.out = None;
        }
    }

    fn stats(&self) -> CaptureStats {
        CaptureStats {
            file: self.path.display().to_string(),
            packets: self.packets,
            bytes: self.bytes,
            error: self.error.clone(),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A link whose traffic is written to a pcapng file.
pub struct CaptureLink {
    inner: Box<dyn Link>,
    path: PathBuf,
}

impl CaptureLink {
    /// Wraps `inner`; the file is created when the link is split (opened).
    pub fn wrap(inner: Box<dyn Link>, path: &Path) -> Self {
        CaptureLink {
            inner,
            path: path.to_path_buf(),
        }
    }
}

impl Link for CaptureLink {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn split(self: Box<Self>) -> Result<LinkHalves, LinkError> {
        let description = self.inner.describe();
        let sink = Sink::create(&self.path, &description).map_err(|error| {
            LinkError::io(
                format!("cannot write the capture {}", self.path.display()),
                error,
            )
        })?;
        let (tx, rx) = self.inner.split()?;
        let sink = Arc::new(Mutex::new(sink));
        Ok((
            Box::new(CaptureSender {
                inner: tx,
                sink: Arc::clone(&sink),
            }),
            Box::new(CaptureReceiver { inner: rx, sink }),
        ))
    }
}

fn lock(sink: &Mutex<Sink>) -> std::sync::MutexGuard<'_, Sink> {
    match sink.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

struct CaptureSender {
    inner: Box<dyn LinkSender>,
    sink: Arc<Mutex<Sink>>,
}

impl LinkSender for CaptureSender {
    fn send(&mut self, data: &[u8], cancel: &Cancel) -> Result<(), SendError> {
        let time = SystemTime::now();
        let result = self.inner.send(data, cancel);
        // What the link took is what crossed it.
        let taken = match &result {
            Ok(()) => data.len(),
            Err(e) => e.accepted.min(data.len()),
        };
        if taken > 0 {
            lock(&self.sink).record(Direction::Outbound, time, &data[..taken]);
        }
        result
    }

    fn finish(&mut self, cancel: &Cancel) -> io::Result<()> {
        lock(&self.sink).flush();
        self.inner.finish(cancel)
    }
}

struct CaptureReceiver {
    inner: Box<dyn LinkReceiver>,
    sink: Arc<Mutex<Sink>>,
}

impl LinkReceiver for CaptureReceiver {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.inner.recv(buf)?;
        if size > 0 {
            lock(&self.sink).record(Direction::Inbound, SystemTime::now(), &buf[..size]);
        }
        Ok(size)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_timeout(timeout)
    }

    fn is_lossy(&self) -> bool {
        self.inner.is_lossy()
    }

    fn stats(&self) -> LinkStats {
        let mut sink = lock(&self.sink);
        sink.flush();
        LinkStats {
            capture: Some(sink.stats()),
            ..self.inner.stats()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::memory::MemoryLoop;
    use pcap_parser::pcapng::OptionCode;
    use pcap_parser::traits::PcapReaderIterator;
    use pcap_parser::{Block, PcapBlockOwned, PcapError, PcapNGReader};

    /// `epb_flags` (draft-ietf-opsawg-pcapng), read back independently of the writer.
    const EPB_FLAGS: u16 = 2;

    /// What a pcapng file holds: (link type, [(epb flags, packet)]).
    fn read_back(path: &Path) -> (i32, Vec<(u32, Vec<u8>)>) {
        let mut reader = PcapNGReader::new(1 << 20, File::open(path).unwrap()).unwrap();
        let mut linktype = 0;
        let mut packets = Vec::new();
        loop {
            match reader.next() {
                Ok((offset, block)) => {
                    match block {
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            linktype = idb.linktype.0;
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let flags = epb
                                .options
                                .iter()
                                .find(|o| o.code == OptionCode(EPB_FLAGS))
                                .map(|o| u32::from_le_bytes(o.value[..4].try_into().unwrap()))
                                .unwrap();
                            packets.push((flags, epb.data[..epb.caplen as usize].to_vec()));
                        }
                        _ => {}
                    }
                    reader.consume(offset);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => reader.refill().unwrap(),
                Err(error) => panic!("{error:?}"),
            }
        }
        (linktype, packets)
    }

    #[test]
    fn every_send_and_receive_is_one_udp_packet_with_its_direction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loop.pcapng");
        let link = Box::new(CaptureLink::wrap(Box::new(MemoryLoop::new()), &path));
        let (mut tx, mut rx) = link.split().unwrap();
        tx.send(b"hello", &Cancel::never()).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(rx.recv(&mut buf).unwrap(), 5);
        // More than one UDP packet can carry: split.
        let big = vec![0xA5u8; MAX_PACKET_PAYLOAD + 10];
        tx.send(&big, &Cancel::never()).unwrap();
        let stats = serde_json::to_value(rx.stats()).unwrap();
        assert_eq!(stats["capture"]["packets"], 4);
        assert_eq!(stats["capture"]["bytes"], 5 + 5 + big.len());
        drop((tx, rx));

        let (linktype, packets) = read_back(&path);
        assert_eq!(linktype, LINKTYPE_RAW);
        assert_eq!(packets.len(), 4);
        let decoded: Vec<_> = packets
            .iter()
            .map(|(flags, packet)| {
                let sliced = etherparse::SlicedPacket::from_ip(packet).unwrap();
                let Some(etherparse::NetSlice::Ipv4(ip)) = &sliced.net else {
                    panic!("not IPv4")
                };
                let Some(etherparse::TransportSlice::Udp(udp)) = &sliced.transport else {
                    panic!("not UDP")
                };
                (
                    *flags,
                    ip.header().source(),
                    udp.destination_port(),
                    udp.payload().len(),
                )
            })
            .collect();
        assert_eq!(
            decoded,
            vec![
                (2, [127, 0, 0, 1], 7, 5),
                (1, [127, 0, 0, 2], 49152, 5),
                (2, [127, 0, 0, 1], 7, MAX_PACKET_PAYLOAD),
                (2, [127, 0, 0, 1], 7, 10),
            ]
        );
    }

    #[test]
    fn an_unwritable_file_is_an_error_when_the_link_opens() {
        let link = Box::new(CaptureLink::wrap(
            Box::new(MemoryLoop::new()),
            Path::new("/nonexistent-dir/x.pcapng"),
        ));
        let error = link.split().err().unwrap().to_string();
        assert!(error.contains("cannot write the capture"), "{error}");
    }
}
