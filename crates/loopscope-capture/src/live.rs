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
//! socket2 does not model `sockaddr_ll` or `SO_ATTACH_FILTER`, so those few calls go through
//! libc directly.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::CaptureError;
use crate::decode::{ARPHRD_LOOPBACK, LinkAddr, linktype};
use crate::martians::{Observation, Scanner};

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;
const SLL2_HEADER: usize = 20;
const SNAPLEN: usize = 65_535;

/// Where to listen.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// An interface name, or `any` for every interface.
    pub interface: String,
    pub duration: Option<Duration>,
    /// Also look at packets this host sends (skipped by default: martians are about arrivals).
    pub include_outgoing: bool,
}

/// An AF_PACKET socket bound to one interface (or all).
pub struct PacketSocket {
    fd: OwnedFd,
}

/// The classic BPF program: accept IPv4 (0x0800) and IPv6 (0x86dd) by the skb protocol, drop the
/// rest in the kernel.
fn ip_only_filter() -> [libc::sock_filter; 5] {
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SKF_AD_PROTOCOL: u32 = 0xffff_f000; // SKF_AD_OFF + SKF_AD_PROTOCOL (0)
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        op(LD_H_ABS, 0, 0, SKF_AD_PROTOCOL),
        op(JEQ_K, 2, 0, 0x0800),
        op(JEQ_K, 1, 0, 0x86dd),
        op(RET_K, 0, 0, 0),
        op(RET_K, 0, 0, SNAPLEN as u32),
    ]
}

fn os_error(context: impl Into<String>) -> CaptureError {
    CaptureError::Io {
        context: context.into(),
        source: io::Error::last_os_error(),
    }
}

/// The interface index of `name`.
pub fn interface_index(name: &str) -> Result<u32, CaptureError> {
    let c_name = CString::new(name)
        .map_err(|_| CaptureError::Usage(format!("interface name '{name}' contains NUL")))?;
    // SAFETY: c_name is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(CaptureError::Usage(format!(
            "no interface named '{name}' (see `ip link`)"
        )));
    }
    Ok(index)
}

/// The name of interface `index`, if it exists.
pub fn interface_name(index: u32) -> Option<String> {
    let mut buffer = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buffer has IF_NAMESIZE bytes as if_indextoname requires.
    let result = unsafe { libc::if_indextoname(index, buffer.as_mut_ptr()) };
    if result.is_null() {
        return None;
    }
    let bytes: Vec<u8> = buffer
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8(bytes).ok()
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
        // SAFETY: plain socket(2); protocol 0 receives nothing until bind names one.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let error = io::Error::last_os_error();
            let hint = if error.raw_os_error() == Some(libc::EPERM) {
                " (live capture needs root or CAP_NET_RAW)"
            } else {
                ""
            };
            return Err(CaptureError::Io {
                context: format!("AF_PACKET socket{hint}"),
                source: error,
            });
        }
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut filter = ip_only_filter();
        let program = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_mut_ptr(),
        };
        // SAFETY: program points at `filter`, alive for the call; the kernel copies it.
        let result = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&program as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if result < 0 {
            return Err(os_error("attaching the BPF filter"));
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: timeout is a valid timeval for the call.
        let result = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if result < 0 {
            return Err(os_error("setting the receive timeout"));
        }
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = ETH_P_ALL.to_be();
        address.sll_ifindex = if_index as i32;
        // SAFETY: address is a valid sockaddr_ll of the size given.
        let result = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if result < 0 {
            return Err(os_error(format!("binding to interface '{interface}'")));
        }
        Ok(PacketSocket { fd })
    }

    /// Receives one packet into `buffer[SLL2_HEADER..]`. Ok(None) on timeout.
    fn receive(&self, buffer: &mut [u8]) -> io::Result<Option<(usize, libc::sockaddr_ll)>> {
        // SAFETY: sockaddr_ll is plain data.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut address_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let payload = &mut buffer[SLL2_HEADER..];
        // SAFETY: payload and address are valid for the lengths passed.
        let received = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                payload.as_mut_ptr().cast(),
                payload.len(),
                libc::MSG_TRUNC,
                (&mut address as *mut libc::sockaddr_ll).cast(),
                &mut address_len,
            )
        };
        if received < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(error),
            };
        }
        Ok(Some((received as usize, address)))
    }
}

/// Captures until `stop` is set or the duration passes, feeding the scanner.
pub fn run_live<W: std::io::Write>(
    scanner: &mut Scanner<W>,
    options: &LiveOptions,
    stop: &std::sync::atomic::AtomicBool,
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
            continue;
        };
        if address.sll_pkttype == PACKET_OUTGOING && !options.include_outgoing {
            continue;
        }
        let time_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(0);
        let captured = length.min(SNAPLEN);
        let if_index = address.sll_ifindex as u32;
        // SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address.
        buffer[0..2].copy_from_slice(&address.sll_protocol.to_ne_bytes());
        buffer[2..4].fill(0);
        buffer[4..8].copy_from_slice(&if_index.to_be_bytes());
        buffer[8..10].copy_from_slice(&address.sll_hatype.to_be_bytes());
        buffer[10] = address.sll_pkttype;
        buffer[11] = address.sll_halen.min(8);
        buffer[12..20].copy_from_slice(&address.sll_addr);
        let name = names.entry(if_index).or_insert_with(|| {
            interface_name(if_index).unwrap_or_else(|| format!("ifindex {if_index}"))
        });
        let halen = usize::from(address.sll_halen.min(8));
        let observation = Observation {
            time_ns,
            linktype: linktype::LINUX_SLL2,
            frame: &buffer[..SLL2_HEADER + captured],
            original_len: (length + SLL2_HEADER) as u32,
            input: &options.interface,
            number,
            interface_name: Some(name.as_str()),
            if_index: Some(if_index),
            interface_is_loopback: address.sll_hatype == ARPHRD_LOOPBACK,
            link_source: Some(LinkAddr::new(&address.sll_addr[..halen])),
            interface_key: (0, if_index),
        };
        number += 1;
        scanner.observe(&observation);
    }
    Ok(())
}

/// Sends complete link-layer frames out of `interface` through an AF_PACKET raw socket,
/// bypassing routing (so spoofed sources leave as written). Used by the namespace tests to
/// produce martian traffic, and usable to replay a flagged packet at a test rig.
pub fn inject_frames(interface: &str, frames: &[Vec<u8>]) -> Result<(), CaptureError> {
    let if_index = interface_index(interface)?;
    // SAFETY: plain socket(2); protocol 0: this socket only sends.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(os_error("AF_PACKET raw socket"));
    }
    // SAFETY: raw is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    for frame in frames {
        // SAFETY: sockaddr_ll is plain data.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = if_index as i32;
        address.sll_halen = 6;
        if let Some(destination) = frame.get(0..6) {
            address.sll_addr[..6].copy_from_slice(destination);
        }
        // SAFETY: frame and address are valid for the lengths passed.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(os_error(format!("sending on '{interface}'")));
        }
    }
    Ok(())
}
