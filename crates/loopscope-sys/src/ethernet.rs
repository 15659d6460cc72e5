//! A raw AF_PACKET socket for one EtherType on one interface: what the Ethernet loopback
//! (Y.1731 ETH-LB, EtherType 0x8902) sends and receives whole frames through.
//!
//! rustix has no `sockaddr_ll` and nix builds none safely, so `bind`, `PACKET_ADD_MEMBERSHIP`
//! and `PACKET_AUXDATA` are `unsafe` here; receiving (recvmsg with the kernel's receive
//! timestamp, the frame's VLAN tag and the `sockaddr_ll`), sending and reading the interface's
//! own address (getsockname) go through nix and rustix safely. Timestamps are switched on and
//! read by `timestamping` (SO_TIMESTAMPING), the one path the UDP measurements use too.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, LinkAddr, MsgFlags, recvmsg};
use rustix::net::{AddressFamily, Protocol, SocketFlags, SocketType};

use crate::fdio::{Readiness, wait_readable};
use crate::timestamping::{
    TxTimestamp, enable_timestamping, recv_tx_timestamp, software_timestamp,
};

/// `TP_STATUS_VLAN_TPID_VALID` (linux/if_packet.h), which the libc crate does not name.
const TP_STATUS_VLAN_TPID_VALID: u32 = 0x40;

/// `PACKET_OUTGOING` (linux/if_packet.h): a copy of a frame this host sent.
pub const PACKET_OUTGOING: u8 = 4;

/// One frame as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// Octets of the frame in the buffer (from the destination MAC on).
    pub len: usize,
    /// The frame was longer than the buffer.
    pub truncated: bool,
    /// PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST, [`PACKET_OUTGOING`], ...
    pub packet_type: u8,
    /// The kernel's software receive timestamp (SO_TIMESTAMPING, CLOCK_REALTIME nanoseconds
    /// since the Unix epoch), when it gave one.
    pub kernel_rx_realtime_ns: Option<u64>,
    /// The 802.1Q tag the frame came with (its TCI: PCP, DEI, VLAN ID). The kernel takes the
    /// tag out of the frame before a packet socket reads it (skb_vlan_untag, or the NIC) and
    /// hands it over beside it (PACKET_AUXDATA); `None` for an untagged frame.
    pub vlan_tci: Option<u16>,
    /// The TPID of that tag (0x8100 for 802.1Q, 0x88A8 for an 802.1ad S-tag), when the kernel
    /// says (TP_STATUS_VLAN_TPID_VALID); a Q-in-Q frame keeps its inner tag in the frame.
    pub vlan_tpid: Option<u16>,
}

/// A raw (SOCK_RAW) AF_PACKET socket bound to one interface and one EtherType: it receives
/// whole frames of that EtherType (Ethernet header included) and sends whole frames out of
/// that interface.
#[derive(Debug)]
pub struct EthernetSocket {
    fd: OwnedFd,
    if_index: u32,
}

impl AsFd for EthernetSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl EthernetSocket {
    /// Opens the socket for `ethertype` on interface `if_index` (needs CAP_NET_RAW) and asks
    /// the kernel for a receive timestamp on every frame.
    pub fn open(if_index: u32, ethertype: u16) -> io::Result<Self> {
        let index = i32::try_from(if_index).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index too large")
        })?;
        // The protocol at socket() time would queue frames from every interface until bind;
        // 0 queues nothing; the filter goes on before bind names the interface.
        let fd = rustix::net::socket_with(
            AddressFamily::PACKET,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None::<Protocol>,
        )
        .map_err(io::Error::from)?;
        // SAFETY: sockaddr_ll is plain integers and arrays; all zeroes is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        // Bound to every protocol (ETH_P_ALL), with a filter that keeps `ethertype`: the kernel
        // hands a VLAN tag (PACKET_AUXDATA) only to such sockets. It strips the tag first and
        // then clears it (net/core/dev.c, __netif_receive_skb_core: a VLAN ID no VLAN device
        // claims) before frames reach sockets bound to one EtherType, so those would take a
        // tagged frame for an untagged one.
        crate::attach_filter(&fd, &ethertype_filter(ethertype))?;
        address.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        address.sll_ifindex = index;
        // SAFETY: `address` is a valid sockaddr_ll of the length passed; `fd` is open and owned
        // here.
        let result = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        enable_timestamping(&fd, false)?;
        let on: libc::c_int = 1;
        // SAFETY: `on` is a c_int that lives across the call and the length passed is its size;
        // `fd` is open.
        let result = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EthernetSocket { fd, if_index })
    }

    /// The interface's own hardware address: a bound packet socket's name carries it. (nix's
    /// getsockname refuses the name, which the kernel shortens to the address's length.)
    pub fn hardware_address(&self) -> io::Result<[u8; 6]> {
        // SAFETY: sockaddr_ll is plain integers and arrays; all zeroes is a valid value.
        let mut name: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut length = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `name` is valid for writes of `length` bytes, which the kernel does not
        // exceed and updates; `fd` is open.
        let result = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut name as *mut libc::sockaddr_ll).cast(),
                &mut length,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        if name.sll_halen != 6 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the interface has a {}-octet hardware address, not an Ethernet MAC",
                    name.sll_halen
                ),
            ));
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&name.sll_addr[..6]);
        Ok(mac)
    }

    /// Receives frames sent to the multicast `group` on this interface too
    /// (PACKET_ADD_MEMBERSHIP, PACKET_MR_MULTICAST); the membership ends with the socket.
    pub fn join_multicast(&self, group: [u8; 6]) -> io::Result<()> {
        let index = i32::try_from(self.if_index).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index too large")
        })?;
        let mut request = libc::packet_mreq {
            mr_ifindex: index,
            mr_type: libc::PACKET_MR_MULTICAST as u16,
            mr_alen: 6,
            mr_address: [0; 8],
        };
        request.mr_address[..6].copy_from_slice(&group);
        // SAFETY: `request` is a valid packet_mreq that lives across the call and the length
        // passed is its size; `fd` is open.
        let result = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&request as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Asks for a software transmit timestamp of every frame sent from now on, numbered from 0
    /// in the order sent ([`Self::recv_tx_timestamp`]).
    pub fn enable_tx_timestamps(&self) -> io::Result<()> {
        enable_timestamping(&self.fd, true)
    }

    /// One transmit timestamp from the error queue, without waiting; `Ok(None)` when none is
    /// queued.
    pub fn recv_tx_timestamp(&self) -> io::Result<Option<TxTimestamp>> {
        recv_tx_timestamp(&self.fd)
    }

    /// Sends one whole frame (destination MAC first) out of the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            match rustix::net::send(&self.fd, frame, rustix::net::SendFlags::empty()) {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Waits up to `wait` for a frame and receives it into `buffer`. `Ok(None)` when the wait
    /// passed or a signal interrupted it (the fdio rule: the caller looks at its stop flag).
    pub fn recv(&self, buffer: &mut [u8], wait: Duration) -> io::Result<Option<ReceivedFrame>> {
        match wait_readable(&self.fd, Some(wait))? {
            Readiness::Ready => {}
            Readiness::TimedOut | Readiness::Interrupted => return Ok(None),
        }
        self.try_recv(buffer)
    }

    /// Receives one queued frame without waiting; `Ok(None)` when none is queued.
    pub fn try_recv(&self, buffer: &mut [u8]) -> io::Result<Option<ReceivedFrame>> {
        let mut cmsg = nix::cmsg_space!([libc::timespec; 3], libc::tpacket_auxdata);
        let mut iov = [IoSliceMut::new(buffer)];
        let message = match recvmsg::<LinkAddr>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
        ) {
            Ok(message) => message,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let mut frame = ReceivedFrame {
            len: message.bytes,
            truncated: message.flags.contains(MsgFlags::MSG_TRUNC),
            packet_type: message.address.map_or(0, |address| address.pkttype()),
            kernel_rx_realtime_ns: None,
            vlan_tci: None,
            vlan_tpid: None,
        };
        for control in message.cmsgs().map_err(io::Error::from)? {
            match control {
                ControlMessageOwned::ScmTimestampsns(stamps) => {
                    frame.kernel_rx_realtime_ns = software_timestamp(&stamps)
                        .map(|at| u64::try_from(at.as_nanos()).unwrap_or(u64::MAX));
                }
                // nix leaves PACKET_AUXDATA unparsed: struct tpacket_auxdata
                // (linux/if_packet.h) is read from its octets: tp_status u32 at 0, tp_vlan_tci
                // u16 at 16, tp_vlan_tpid u16 at 18.
                ControlMessageOwned::Unknown(unknown)
                    if unknown.cmsg_header.cmsg_level == libc::SOL_PACKET
                        && unknown.cmsg_header.cmsg_type == libc::PACKET_AUXDATA =>
                {
                    let bytes = &unknown.data_bytes;
                    if bytes.len() >= 18 {
                        let status = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                        if status & libc::TP_STATUS_VLAN_VALID != 0 {
                            frame.vlan_tci = Some(u16::from_ne_bytes([bytes[16], bytes[17]]));
                        }
                        if status & TP_STATUS_VLAN_TPID_VALID != 0 && bytes.len() >= 20 {
                            frame.vlan_tpid = Some(u16::from_ne_bytes([bytes[18], bytes[19]]));
                        }
                    }
                }
                _ => {}
            }
        }
        // With MSG_TRUNC the kernel returns the frame's real length: keep `len` within what the
        // buffer holds.
        frame.len = frame.len.min(buffer_len(&iov));
        Ok(Some(frame))
    }
}

/// A classic BPF program that passes frames of EtherType `ethertype`, whole, and drops every
/// other: untagged, or behind one or two VLAN tags (TPID 0x8100 or 0x88A8) still in the frame.
/// The kernel takes the outermost tag out before the filter runs, so a Q-in-Q frame shows its
/// inner tag here; a frame that reaches the socket with both tags (no untagging) shows two.
fn ethertype_filter(ethertype: u16) -> [crate::BpfInstruction; 12] {
    use crate::BpfInstruction as Op;
    const LDH_ABS: u16 = 0x28;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| Op { code, jt, jf, k };
    let wanted = u32::from(ethertype);
    let c_tag = 0x8100;
    let s_tag = 0x88A8;
    [
        // 0: the EtherType after the addresses.
        op(LDH_ABS, 0, 0, 12),
        // 1: ours -> 10 (pass); 2, 3: a tag -> 4, else -> 11 (drop).
        op(JEQ_K, 8, 0, wanted),
        op(JEQ_K, 1, 0, c_tag),
        op(JEQ_K, 0, 7, s_tag),
        // 4: the EtherType after one tag.
        op(LDH_ABS, 0, 0, 16),
        op(JEQ_K, 4, 0, wanted),
        op(JEQ_K, 1, 0, c_tag),
        op(JEQ_K, 0, 3, s_tag),
        // 8: the EtherType after two tags.
        op(LDH_ABS, 0, 0, 20),
        op(JEQ_K, 0, 1, wanted),
        // 10: the whole frame; 11: dropped.
        op(RET_K, 0, 0, 0x40000),
        op(RET_K, 0, 0, 0),
    ]
}

fn buffer_len(iov: &[IoSliceMut<'_>]) -> usize {
    iov.iter().map(|slice| slice.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On lo (index 1 in every namespace, hardware address all zeroes), a frame of the bound
    /// EtherType sent by one socket is received by another with a kernel timestamp; a frame
    /// of another EtherType is not. Needs CAP_NET_RAW.
    #[test]
    fn frames_of_the_bound_ethertype_arrive_with_a_timestamp() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: AF_PACKET needs root");
            return;
        }
        // IEEE 802 local experimental EtherTypes, which nothing else on this host sends.
        let receiver = EthernetSocket::open(1, 0x88b5).expect("open");
        let sender = EthernetSocket::open(1, 0x88b6).expect("open");
        assert_eq!(receiver.hardware_address().expect("lo's address"), [0; 6]);
        receiver
            .join_multicast([0x01, 0x80, 0xC2, 0x00, 0x00, 0x30])
            .expect("membership");
        let mut other = vec![0u8; 14];
        other[12..14].copy_from_slice(&0x88b6u16.to_be_bytes());
        other.extend_from_slice(b"not this one");
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        frame.extend_from_slice(b"loopscope-sys ethernet test");
        let mut buffer = [0u8; 2048];
        // The kernel turns receive timestamping on for the machine in deferred work when the
        // first socket asks (net_enable_timestamp), and SO_TIMESTAMPING, unlike SO_TIMESTAMPNS,
        // stamps nothing late: the first frames may come without one. Sent until one has it.
        for attempt in 0.. {
            assert!(
                attempt < 1000,
                "no kernel receive timestamp after 1000 frames"
            );
            sender.send(&other).expect("send");
            sender.send(&frame).expect("send");
            let received = loop {
                match receiver.recv(&mut buffer, Duration::from_secs(10)) {
                    Ok(Some(received)) if received.packet_type != PACKET_OUTGOING => {
                        break received;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("the frame did not arrive"),
                    Err(error) => panic!("{error}"),
                }
            };
            assert_eq!(
                &buffer[..received.len],
                &frame[..],
                "only the bound EtherType"
            );
            assert!(!received.truncated);
            if received.kernel_rx_realtime_ns.is_some() {
                break;
            }
        }
        let mut small = [0u8; 16];
        sender.send(&frame).expect("send");
        let received = loop {
            match receiver.recv(&mut small, Duration::from_secs(10)) {
                Ok(Some(received)) if received.packet_type != PACKET_OUTGOING => break received,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the frame did not arrive"),
                Err(error) => panic!("{error}"),
            }
        };
        assert!(received.truncated);
        assert_eq!(received.len, 16);
    }

    /// A frame sent with an 802.1Q tag (TPID 0x8100, TCI: PCP 5, VLAN 100) arrives with the
    /// tag taken out and handed over beside it; an untagged one has none. Every frame sent after
    /// `enable_tx_timestamps` gets a transmit timestamp numbered in order, between the clock
    /// readings around the send. Needs CAP_NET_RAW.
    #[test]
    fn vlan_tags_and_transmit_timestamps() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: AF_PACKET needs root");
            return;
        }
        let receiver = EthernetSocket::open(1, 0x88b7).expect("open");
        let sender = EthernetSocket::open(1, 0x88b8).expect("open");
        sender.enable_tx_timestamps().expect("SO_TIMESTAMPING");
        let tci: u16 = (5 << 13) | 100;
        let mut tagged = vec![0u8; 12];
        tagged.extend_from_slice(&0x8100u16.to_be_bytes());
        tagged.extend_from_slice(&tci.to_be_bytes());
        tagged.extend_from_slice(&0x88b7u16.to_be_bytes());
        tagged.extend_from_slice(b"tagged");
        let mut untagged = vec![0u8; 12];
        untagged.extend_from_slice(&0x88b7u16.to_be_bytes());
        untagged.extend_from_slice(b"untagged");
        let realtime = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
        };
        let before = realtime();
        sender.send(&tagged).expect("send");
        sender.send(&untagged).expect("send");
        let after = realtime();
        let mut buffer = [0u8; 256];
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match receiver.recv(&mut buffer, Duration::from_secs(10)) {
                Ok(Some(received)) if received.packet_type != PACKET_OUTGOING => {
                    seen.push((buffer[..received.len].to_vec(), received.vlan_tci));
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("the frames did not arrive"),
                Err(error) => panic!("{error}"),
            }
        }
        let mut stripped = vec![0u8; 12];
        stripped.extend_from_slice(&0x88b7u16.to_be_bytes());
        stripped.extend_from_slice(b"tagged");
        assert_eq!(seen[0], (stripped, Some(tci)));
        assert_eq!(seen[1], (untagged.clone(), None));
        let mut stamps = Vec::new();
        while stamps.len() < 2 {
            match sender.recv_tx_timestamp().expect("error queue") {
                Some(stamp) => stamps.push(stamp),
                None => {
                    let mut fds = [rustix::event::PollFd::new(
                        &sender,
                        rustix::event::PollFlags::ERR,
                    )];
                    rustix::event::poll(&mut fds, None).expect("poll");
                }
            }
        }
        assert_eq!(stamps.iter().map(|s| s.id).collect::<Vec<_>>(), [0, 1]);
        assert!(
            stamps.iter().all(|s| before <= s.at && s.at <= after),
            "{stamps:?}"
        );
    }

    /// Q-in-Q: a frame with an 802.1ad S-tag (TPID 0x88A8, VLAN 100) over an 802.1Q C-tag
    /// (VLAN 200, PCP 5) passes the filter; the kernel hands the S-tag over beside the frame
    /// with its TPID, and the C-tag stays in the frame. A double-tagged frame of another
    /// EtherType does not pass. Needs CAP_NET_RAW.
    #[test]
    fn q_in_q_frames_pass_with_the_outer_tag_beside_them() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: AF_PACKET needs root");
            return;
        }
        let receiver = EthernetSocket::open(1, 0x88b9).expect("open");
        let sender = EthernetSocket::open(1, 0x88ba).expect("open");
        let frame_of = |ethertype: u16| {
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(&[0x88, 0xA8, 0x00, 100]);
            frame.extend_from_slice(&0x8100u16.to_be_bytes());
            frame.extend_from_slice(&((5u16 << 13) | 200).to_be_bytes());
            frame.extend_from_slice(&ethertype.to_be_bytes());
            frame.extend_from_slice(b"q-in-q");
            frame
        };
        sender.send(&frame_of(0x88ba)).expect("send");
        sender.send(&frame_of(0x88b9)).expect("send");
        let mut buffer = [0u8; 256];
        let received = loop {
            match receiver.recv(&mut buffer, Duration::from_secs(10)) {
                Ok(Some(received)) if received.packet_type != PACKET_OUTGOING => break received,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the frame did not arrive"),
                Err(error) => panic!("{error}"),
            }
        };
        let mut inner_only = vec![0u8; 12];
        inner_only.extend_from_slice(&0x8100u16.to_be_bytes());
        inner_only.extend_from_slice(&((5u16 << 13) | 200).to_be_bytes());
        inner_only.extend_from_slice(&0x88b9u16.to_be_bytes());
        inner_only.extend_from_slice(b"q-in-q");
        assert_eq!(
            &buffer[..received.len],
            &inner_only[..],
            "the other EtherType dropped"
        );
        assert_eq!(received.vlan_tci, Some(100));
        assert_eq!(received.vlan_tpid, Some(0x88A8));
    }
}
