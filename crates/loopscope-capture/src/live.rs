//! Live capture on Linux AF_PACKET sockets.
//!
//! The socket is `SOCK_DGRAM` (cooked): the kernel hands over the network-layer packet and a
//! `sockaddr_ll` with the arrival interface index, hardware type and link-layer source, which is
//! exactly what a martian report needs (VLAN tags are already stripped by the kernel). A classic
//! BPF filter on the packet's protocol keeps everything but IPv4 and IPv6 in the kernel. Each
//! packet is given to the scanner as a Linux SLL2 frame (the header rebuilt from `sockaddr_ll`),
//! so `--write-matches` files keep interface index and MAC and open in tshark as "Linux cooked
//! v2".
//!
//! The socket calls (`sockaddr_ll`, `SO_ATTACH_FILTER`) are `loopscope-sys`'s.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use loopscope_sys::{BpfInstruction, FrameSender, PacketInfo};

use crate::CaptureError;
use crate::decode::{ARPHRD_LOOPBACK, LinkAddr, linktype};
use crate::martians::{Observation, Scanner};

const PACKET_OUTGOING: u8 = 4;
const SLL2_HEADER: usize = 20;
const SNAPLEN: usize = 65_535;
/// How often a quiet capture looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Where to listen.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// An interface name, or `any` for every interface.
    pub interface: String,
    /// How long to listen (`None`: until stopped).
    pub duration: Option<Duration>,
    /// Also look at packets this host sends (skipped by default: martians are about arrivals).
    pub include_outgoing: bool,
}

/// An AF_PACKET socket bound to one interface (or all).
pub struct PacketSocket {
    socket: loopscope_sys::PacketSocket,
}

/// The classic BPF program: accept IPv4 (0x0800) and IPv6 (0x86dd) by the skb protocol, drop the
/// rest in the kernel.
fn ip_only_filter() -> [BpfInstruction; 5] {
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SKF_AD_PROTOCOL: u32 = 0xffff_f000; // SKF_AD_OFF + SKF_AD_PROTOCOL (0)
    let op = |code, jt, jf, k| BpfInstruction { code, jt, jf, k };
    [
        op(LD_H_ABS, 0, 0, SKF_AD_PROTOCOL),
        op(JEQ_K, 2, 0, 0x0800),
        op(JEQ_K, 1, 0, 0x86dd),
        op(RET_K, 0, 0, 0),
        op(RET_K, 0, 0, SNAPLEN as u32),
    ]
}

/// The interface index of `name`.
pub fn interface_index(name: &str) -> Result<u32, CaptureError> {
    if name.contains('\0') {
        return Err(CaptureError::Usage(format!(
            "interface name '{name}' contains NUL"
        )));
    }
    loopscope_sys::interface_index(name)
        .map_err(|_| CaptureError::Usage(format!("no interface named '{name}' (see `ip link`)")))
}

/// The name of interface `index`, if it exists.
pub fn interface_name(index: u32) -> Option<String> {
    loopscope_sys::interface_name(index)
}

impl PacketSocket {
    /// Opens the socket, attaches the filter, then binds (in that order, so that nothing but
    /// IPv4/IPv6 is ever queued).
    pub fn open(interface: &str) -> Result<Self, CaptureError> {
        let if_index = if interface == "any" {
            0
        } else {
            interface_index(interface)?
        };
        let socket =
            loopscope_sys::PacketSocket::open_cooked(if_index, &ip_only_filter(), STOP_POLL)
                .map_err(|error| {
                    let hint = if error.raw_os_error() == Some(libc::EPERM) {
                        " (live capture needs root or CAP_NET_RAW)"
                    } else {
                        ""
                    };
                    CaptureError::Io {
                        context: format!("AF_PACKET socket on '{interface}'{hint}"),
                        source: error,
                    }
                })?;
        Ok(PacketSocket { socket })
    }

    /// Receives one packet into `buffer[SLL2_HEADER..]`. Ok(None) when the stop flag is due a
    /// look (the receive timeout passed, or a signal came).
    fn receive(&self, buffer: &mut [u8]) -> io::Result<Option<(usize, PacketInfo)>> {
        match self.socket.recv(&mut buffer[SLL2_HEADER..]) {
            Ok(received) => Ok(Some(received)),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}

/// Captures until `stop` is set or the duration passes, feeding the scanner.
pub fn run_live<W: std::io::Write>(
    scanner: &mut Scanner<W>,
    options: &LiveOptions,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(), CaptureError> {
    run_live_watched(scanner, options, stop, &mut |_| {})
}

/// [`run_live`], calling `watch` after every packet and at least every 100 ms while none
/// comes, so a watcher can publish the scanner's counts while the capture runs.
pub fn run_live_watched<W: std::io::Write>(
    scanner: &mut Scanner<W>,
    options: &LiveOptions,
    stop: &std::sync::atomic::AtomicBool,
    watch: &mut dyn FnMut(&Scanner<W>),
) -> Result<(), CaptureError> {
    let socket = PacketSocket::open(&options.interface)?;
    scanner.add_input();
    let deadline = options.duration.map(|duration| Instant::now() + duration);
    let mut buffer = vec![0u8; SLL2_HEADER + SNAPLEN];
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut number = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && scanner.healthy() {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            break;
        }
        let Some((length, address)) =
            socket
                .receive(&mut buffer)
                .map_err(|source| CaptureError::Io {
                    context: format!("receiving on '{}'", options.interface),
                    source,
                })?
        else {
            watch(scanner);
            continue;
        };
        if address.packet_type == PACKET_OUTGOING && !options.include_outgoing {
            continue;
        }
        let time_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(0);
        let captured = length.min(SNAPLEN);
        let if_index = address.if_index;
        // SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address.
        buffer[0..2].copy_from_slice(&address.protocol.to_be_bytes());
        buffer[2..4].fill(0);
        buffer[4..8].copy_from_slice(&if_index.to_be_bytes());
        buffer[8..10].copy_from_slice(&address.hardware_type.to_be_bytes());
        buffer[10] = address.packet_type;
        buffer[11] = address.address_len;
        buffer[12..20].copy_from_slice(&address.address);
        let name = names.entry(if_index).or_insert_with(|| {
            interface_name(if_index).unwrap_or_else(|| format!("ifindex {if_index}"))
        });
        let halen = usize::from(address.address_len);
        let observation = Observation {
            time_ns,
            linktype: linktype::LINUX_SLL2,
            frame: &buffer[..SLL2_HEADER + captured],
            original_len: (length + SLL2_HEADER) as u32,
            input: &options.interface,
            number,
            interface_name: Some(name.as_str()),
            if_index: Some(if_index),
            interface_is_loopback: address.hardware_type == ARPHRD_LOOPBACK,
            link_source: Some(LinkAddr::new(&address.address[..halen])),
            interface_key: (0, if_index),
        };
        number += 1;
        scanner.observe(&observation);
        watch(scanner);
    }
    Ok(())
}

/// Sends complete link-layer frames out of `interface` through an AF_PACKET raw socket,
/// bypassing routing (so spoofed sources leave as written). Used by the namespace tests to
/// produce martian traffic, and usable to replay a flagged packet at a test rig.
pub fn inject_frames(interface: &str, frames: &[Vec<u8>]) -> Result<(), CaptureError> {
    let if_index = interface_index(interface)?;
    let sender = FrameSender::open().map_err(|source| CaptureError::Io {
        context: "AF_PACKET raw socket".into(),
        source,
    })?;
    for frame in frames {
        sender
            .send(if_index, frame)
            .map_err(|source| CaptureError::Io {
                context: format!("sending on '{interface}'"),
                source,
            })?;
    }
    Ok(())
}
