//! AF_PACKET sockets: the cooked receive socket of live capture (with a classic BPF filter) and
//! the raw send socket that injects link-layer frames. Neither rustix nor nix offers
//! `sockaddr_ll` binding, sending or SO_ATTACH_FILTER safely, so those calls are here.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// ETH_P_ALL: every protocol (linux/if_ether.h).
const ETH_P_ALL: u16 = 0x0003;

/// One classic BPF instruction (`struct sock_filter`, linux/filter.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInstruction {
    /// Opcode.
    pub code: u16,
    /// Jump offset when true.
    pub jt: u8,
    /// Jump offset when false.
    pub jf: u8,
    /// Constant argument.
    pub k: u32,
}

/// What the kernel says about a received packet (`struct sockaddr_ll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// The packet's protocol (EtherType), host byte order.
    pub protocol: u16,
    /// The interface it crossed.
    pub if_index: u32,
    /// ARPHRD_* hardware type of that interface.
    pub hardware_type: u16,
    /// PACKET_HOST, PACKET_OUTGOING, ... (linux/if_packet.h).
    pub packet_type: u8,
    /// Link-layer source address length (at most 8 bytes are kept).
    pub address_len: u8,
    /// Link-layer source address, zero-padded.
    pub address: [u8; 8],
}

/// A cooked (SOCK_DGRAM) AF_PACKET socket: the kernel hands over the network-layer packet and
/// its `sockaddr_ll`, with VLAN tags already removed.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

fn packet_socket(kind: SocketType) -> io::Result<OwnedFd> {
    // Protocol 0: nothing is queued until bind names one, so the filter is in place first.
    rustix::net::socket_with(AddressFamily::PACKET, kind, SocketFlags::CLOEXEC, None)
        .map_err(io::Error::from)
}

fn link_address(if_index: u32, protocol: u16) -> io::Result<libc::sockaddr_ll> {
    // SAFETY: sockaddr_ll is plain integers and arrays; all zeroes is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol.to_be();
    address.sll_ifindex = i32::try_from(if_index)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    Ok(address)
}

const SOCKADDR_LL_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;

impl PacketSocket {
    /// Opens the socket, attaches `filter`, sets the receive timeout (so a stop flag is looked
    /// at), then binds to `if_index` (0: every interface). In that order, so that nothing the
    /// filter refuses is ever queued.
    pub fn open_cooked(
        if_index: u32,
        filter: &[BpfInstruction],
        receive_timeout: Duration,
    ) -> io::Result<Self> {
        let fd = packet_socket(SocketType::DGRAM)?;
        crate::socket_filter::attach_filter(&fd, filter)?;
        crate::fdio::set_receive_timeout(&fd, Some(receive_timeout))?;
        let address = link_address(if_index, ETH_P_ALL)?;
        // SAFETY: `address` is a valid sockaddr_ll of the length passed; `fd` is open.
        let result = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                SOCKADDR_LL_LEN,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd })
    }

    /// Receives one packet into `buffer`. Returns the packet's full length (more than
    /// `buffer.len()` when it was truncated) and what the kernel says about it.
    ///
    /// The fdio rules: the receive timeout passing is an error of kind `TimedOut`; a signal
    /// is one of kind `Interrupted`.
    pub fn recv(&self, buffer: &mut [u8]) -> io::Result<(usize, PacketInfo)> {
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut address_len = SOCKADDR_LL_LEN;
        // SAFETY: `buffer` is valid for writes of its length and `address` for `address_len`
        // bytes; the kernel writes no more than those lengths; `fd` is open.
        let received = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_TRUNC,
                (&mut address as *mut libc::sockaddr_ll).cast(),
                &mut address_len,
            )
        };
        if received < 0 {
            let error = io::Error::last_os_error();
            return Err(match error.kind() {
                io::ErrorKind::WouldBlock => crate::fdio::timed_out(),
                _ => error,
            });
        }
        let address_len = address.sll_halen.min(8);
        Ok((
            received as usize,
            PacketInfo {
                protocol: u16::from_be(address.sll_protocol),
                if_index: address.sll_ifindex as u32,
                hardware_type: address.sll_hatype,
                packet_type: address.sll_pkttype,
                address_len,
                address: address.sll_addr,
            },
        ))
    }
}

/// A raw (SOCK_RAW) AF_PACKET socket that sends complete link-layer frames, bypassing routing.
#[derive(Debug)]
pub struct FrameSender {
    fd: OwnedFd,
}

impl FrameSender {
    /// Opens the socket (needs CAP_NET_RAW). Protocol 0: it only sends.
    pub fn open() -> io::Result<Self> {
        Ok(FrameSender {
            fd: packet_socket(SocketType::RAW)?,
        })
    }

    /// Sends one Ethernet frame out of `if_index`, as written (the first 6 bytes are the
    /// destination MAC).
    pub fn send(&self, if_index: u32, frame: &[u8]) -> io::Result<()> {
        let mut address = link_address(if_index, 0)?;
        address.sll_halen = 6;
        if let Some(destination) = frame.get(0..6) {
            address.sll_addr[..6].copy_from_slice(destination);
        }
        // SAFETY: `frame` is valid for reads of its length, `address` is a valid sockaddr_ll of
        // the length passed; `fd` is open.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                SOCKADDR_LL_LEN,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The index of interface `name` (if_nametoindex); NotFound when there is none.
pub fn interface_index(name: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(|errno| match errno {
        nix::errno::Errno::ENODEV => io::Error::new(io::ErrorKind::NotFound, "no such interface"),
        other => io::Error::from(other),
    })
}

/// The name of interface `index` (if_indextoname), if it exists.
pub fn interface_name(index: u32) -> Option<String> {
    let name = nix::net::if_::if_indextoname(index).ok()?;
    // nix 0.30 checks if_indextoname's NULL return against the wrong sentinel and hands back
    // an empty name for a missing index; no interface has an empty name.
    name.into_string().ok().filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lo_is_index_1_both_ways() {
        // lo is created first in every network namespace.
        assert_eq!(interface_index("lo").expect("lo"), 1);
        assert_eq!(interface_name(1).as_deref(), Some("lo"));
        assert_eq!(
            interface_index("loopscope-none")
                .expect_err("no such")
                .kind(),
            io::ErrorKind::NotFound
        );
        assert!(interface_name(u32::MAX).is_none());
        assert!(interface_index("with\0nul").is_err());
    }

    /// A frame sent with the raw socket out of lo arrives at a cooked socket bound to lo with
    /// the right protocol, interface and hardware type, and the filter keeps other protocols
    /// out. Needs CAP_NET_RAW.
    #[test]
    fn a_frame_sent_on_lo_is_received_cooked() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: AF_PACKET needs root");
            return;
        }
        // Accept only EtherType 0x88b5 (IEEE 802 local experimental), whose frames nothing
        // else on this host sends.
        let filter = [
            BpfInstruction {
                code: 0x28,
                jt: 0,
                jf: 0,
                k: 0xffff_f000,
            },
            BpfInstruction {
                code: 0x15,
                jt: 0,
                jf: 1,
                k: 0x88b5,
            },
            BpfInstruction {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 65_535,
            },
            BpfInstruction {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0,
            },
        ];
        let receiver =
            PacketSocket::open_cooked(1, &filter, Duration::from_secs(10)).expect("cooked socket");
        let sender = FrameSender::open().expect("raw socket");
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        frame.extend_from_slice(b"loopscope-sys packet test");
        let other = {
            let mut other = frame.clone();
            other[12..14].copy_from_slice(&0x88b6u16.to_be_bytes());
            other
        };
        sender.send(1, &other).expect("send the filtered-out frame");
        sender.send(1, &frame).expect("send");
        let mut buffer = vec![0u8; 2048];
        let mut seen = Vec::new();
        // lo delivers each sent frame twice (outgoing, then incoming); wait for the payload.
        while seen.len() < 2 {
            match receiver.recv(&mut buffer) {
                Ok((length, info)) => {
                    assert_eq!(info.protocol, 0x88b5, "the filter let another protocol in");
                    assert_eq!(info.if_index, 1);
                    assert_eq!(info.hardware_type, 772, "ARPHRD_LOOPBACK");
                    assert_eq!(&buffer[..length], b"loopscope-sys packet test");
                    seen.push(info.packet_type);
                }
                Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                    panic!("the frame did not arrive")
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => panic!("{error}"),
            }
        }
        seen.sort_unstable();
        // PACKET_HOST (0) and PACKET_OUTGOING (4).
        assert_eq!(seen, vec![0, 4]);
    }
}
