//! The one receive path for datagrams with control messages, single ([`recv_datagram`]) or
//! batched ([`recv_datagrams`], recvmmsg), serving STAMP (timestamps, TOS) and BFD (TTL for
//! the GTSM check, destination address) alike; its batched send ([`send_datagrams`]).
//! Kernel packet timestamps (SO_TIMESTAMPING, Linux `Documentation/networking/timestamping`),
//! the per-datagram facts a measurement reads from control messages (TTL or hop limit, TOS or
//! traffic class, destination address), the IP-level send options of a test stream (TTL,
//! DSCP, don't-fragment), and the kernel clock's synchronisation status (adjtimex).
//!
//! The socket options and control messages go through nix and rustix, which parse them
//! safely; only `adjtimex`, which neither wraps, is `unsafe` here.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, RecvMsg, SockaddrStorage,
    TimestampingFlag, recvmmsg, recvmsg, sendmmsg, setsockopt, sockopt,
};

/// `SO_EE_ORIGIN_TIMESTAMPING` (linux/errqueue.h): an error-queue message that carries a
/// transmit timestamp rather than an error.
const SO_EE_ORIGIN_TIMESTAMPING: u8 = 4;

/// What one received datagram came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampedDatagram {
    /// Octets of payload (the buffer holds them).
    pub len: usize,
    /// Whether the datagram was longer than the buffer (MSG_TRUNC).
    pub truncated: bool,
    /// Its source.
    pub from: Option<SocketAddr>,
    /// The address it was sent to (IP_PKTINFO / IPV6_PKTINFO).
    pub to: Option<IpAddr>,
    /// Its TTL (IPv4) or hop limit (IPv6) on arrival.
    pub ttl: Option<u8>,
    /// Its TOS octet (IPv4) or traffic class (IPv6): DSCP and ECN.
    pub tos: Option<u8>,
    /// The kernel's software receive timestamp (CLOCK_REALTIME, since the Unix epoch).
    pub kernel_rx: Option<Duration>,
}

/// Asks the kernel for what [`recv_datagram`] reports: software receive timestamps and, with
/// `transmit`, software transmit timestamps on the error queue (read with
/// [`recv_tx_timestamp`]), numbered from 0 by the kernel (SOF_TIMESTAMPING_OPT_ID) without the
/// packet attached (OPT_TSONLY); also the TTL, TOS and destination address of each datagram.
pub fn enable_datagram_metadata(socket: impl AsFd, ipv6: bool, transmit: bool) -> io::Result<()> {
    let socket = socket.as_fd();
    enable_timestamping(socket, transmit)?;
    if ipv6 {
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)?;
        setsockopt(&socket, sockopt::Ipv6RecvTClass, &true)?;
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        setsockopt(&socket, sockopt::Ipv4RecvTtl, &true)?;
        setsockopt(&socket, sockopt::IpRecvTos, &true)?;
        setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)?;
    }
    Ok(())
}

/// Asks the kernel for software receive timestamps (SCM_TIMESTAMPING, read by
/// [`recv_datagram`] and by `EthernetSocket`'s receive) and, with `transmit`, software transmit
/// timestamps on the error queue ([`recv_tx_timestamp`]), numbered from 0 by the kernel
/// (SOF_TIMESTAMPING_OPT_ID) without the packet attached (OPT_TSONLY). The one switch for UDP
/// and AF_PACKET sockets alike.
pub fn enable_timestamping(socket: impl AsFd, transmit: bool) -> io::Result<()> {
    let mut flags = TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
        | TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE;
    if transmit {
        flags |= TimestampingFlag::SOF_TIMESTAMPING_TX_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_OPT_ID
            | TimestampingFlag::SOF_TIMESTAMPING_OPT_TSONLY;
    }
    setsockopt(&socket.as_fd(), sockopt::Timestamping, &flags)?;
    Ok(())
}

/// The software timestamp of an SCM_TIMESTAMPING control message (CLOCK_REALTIME), if it
/// carries one: the one reading of it for every receive path.
pub(crate) fn software_timestamp(stamps: &nix::sys::socket::Timestamps) -> Option<Duration> {
    timespec_duration(stamps.system.tv_sec(), stamps.system.tv_nsec())
}

/// The IP-level options of a test stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// TTL (IPv4) or unicast hop limit (IPv6).
    pub ttl: Option<u8>,
    /// DSCP (6 bits) for the TOS octet or traffic class; ECN left 0.
    pub dscp: Option<u8>,
    /// Set don't-fragment (IPv4) / do not fragment locally (IPv6): IP_PMTUDISC_DO.
    pub dont_fragment: bool,
}

/// Applies `options` to a UDP socket of the given family.
pub fn set_send_options(socket: impl AsFd, ipv6: bool, options: SendOptions) -> io::Result<()> {
    use rustix::net::sockopt as so;
    let socket = socket.as_fd();
    if let Some(ttl) = options.ttl {
        if ipv6 {
            so::set_ipv6_unicast_hops(socket, Some(ttl))?;
        } else {
            so::set_ip_ttl(socket, u32::from(ttl))?;
        }
    }
    if let Some(dscp) = options.dscp {
        let tos = dscp << 2;
        if ipv6 {
            so::set_ipv6_tclass(socket, u32::from(tos))?;
        } else {
            so::set_ip_tos(socket, tos)?;
        }
    }
    if options.dont_fragment {
        if ipv6 {
            so::set_ipv6_mtu_discover(socket, so::Ipv6PathMtuDiscovery::DO)?;
        } else {
            so::set_ip_mtu_discover(socket, so::Ipv4PathMtuDiscovery::DO)?;
        }
    }
    Ok(())
}

fn timespec_duration(seconds: i64, nanos: i64) -> Option<Duration> {
    (seconds > 0 || nanos > 0).then(|| {
        Duration::new(
            u64::try_from(seconds).unwrap_or(0),
            u32::try_from(nanos).unwrap_or(0),
        )
    })
}

/// Room for every control message [`enable_datagram_metadata`] can ask for: TTL, TOS,
/// PKTINFO and the three timestamps.
fn control_space() -> Vec<u8> {
    nix::cmsg_space!(
        libc::c_int,
        libc::c_int,
        libc::in6_pktinfo,
        [libc::timespec; 3]
    )
}

/// The one reading of a received message's address and control messages, for the single and
/// the batch receive alike.
fn describe(message: &RecvMsg<'_, '_, SockaddrStorage>) -> io::Result<TimestampedDatagram> {
    let mut received = TimestampedDatagram {
        len: message.bytes,
        truncated: message.flags.contains(MsgFlags::MSG_TRUNC),
        from: message.address.and_then(|address| socket_addr(&address)),
        to: None,
        ttl: None,
        tos: None,
        kernel_rx: None,
    };
    for control in message.cmsgs().map_err(io::Error::from)? {
        match control {
            ControlMessageOwned::Ipv4Ttl(value) | ControlMessageOwned::Ipv6HopLimit(value) => {
                received.ttl = u8::try_from(value).ok();
            }
            ControlMessageOwned::Ipv4Tos(value) => received.tos = Some(value),
            ControlMessageOwned::Ipv6TClass(value) => received.tos = u8::try_from(value).ok(),
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                received.to = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                received.to = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            ControlMessageOwned::ScmTimestampsns(stamps) => {
                received.kernel_rx = software_timestamp(&stamps);
            }
            _ => {}
        }
    }
    Ok(received)
}

/// Reads one datagram without waiting (MSG_DONTWAIT) and the facts its control messages
/// carry (those asked for with [`enable_datagram_metadata`], or with
/// [`crate::enable_hops_reception`] and [`crate::enable_destination_reception`] alone).
/// `WouldBlock` when none is queued.
pub fn recv_datagram(socket: impl AsFd, buffer: &mut [u8]) -> io::Result<TimestampedDatagram> {
    let socket = socket.as_fd();
    let mut cmsg = control_space();
    let mut iov = [IoSliceMut::new(buffer)];
    let message = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    describe(&message)
}

/// Reads up to `buffers.len()` queued datagrams in one system call (recvmmsg) without waiting,
/// each into its own buffer, and appends what each came with to `received` (cleared first), in
/// the order of the buffers: the same facts as [`recv_datagram`]. Returns how many were read;
/// `WouldBlock` when none is queued. One call of a few allocations serves the whole batch, so a
/// reflector pays no system call nor allocation per datagram.
pub fn recv_datagrams<B: AsMut<[u8]>>(
    socket: impl AsFd,
    buffers: &mut [B],
    received: &mut Vec<TimestampedDatagram>,
) -> io::Result<usize> {
    received.clear();
    if buffers.is_empty() {
        return Ok(0);
    }
    // nix's headers keep the lengths the kernel wrote back (name and control), so a fresh set
    // per call: one reused would hand the next call shorter buffers than it has.
    let mut headers =
        MultiHeaders::<SockaddrStorage>::preallocate(buffers.len(), Some(control_space()));
    let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
        .iter_mut()
        .map(|buffer| [IoSliceMut::new(buffer.as_mut())])
        .collect();
    let results = recvmmsg(
        socket.as_fd().as_raw_fd(),
        &mut headers,
        slices.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(io::Error::from)?;
    for message in results {
        received.push(describe(&message)?);
    }
    Ok(received.len())
}

/// Sends each `(payload, destination)` in one system call (sendmmsg); returns how many the
/// kernel took (a full send buffer can stop it short; the caller sends the rest or drops them).
pub fn send_datagrams(socket: impl AsFd, datagrams: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
    if datagrams.is_empty() {
        return Ok(0);
    }
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(datagrams.len(), None);
    let slices: Vec<[IoSlice<'_>; 1]> = datagrams
        .iter()
        .map(|(payload, _)| [IoSlice::new(payload)])
        .collect();
    let addresses: Vec<Option<SockaddrStorage>> = datagrams
        .iter()
        .map(|(_, to)| Some(SockaddrStorage::from(*to)))
        .collect();
    let results = sendmmsg(
        socket.as_fd().as_raw_fd(),
        &mut headers,
        slices.iter(),
        &addresses,
        [] as [ControlMessage<'_>; 0],
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    Ok(results.count())
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        Some(SocketAddr::V4((*v4).into()))
    } else {
        address
            .as_sockaddr_in6()
            .map(|v6| SocketAddr::V6((*v6).into()))
    }
}

/// A transmit timestamp from the error queue: the kernel's number for the packet (0 for the
/// first sent after [`enable_datagram_metadata`]) and when it left (CLOCK_REALTIME).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxTimestamp {
    /// SOF_TIMESTAMPING_OPT_ID's counter (ee_data).
    pub id: u32,
    /// The software transmit timestamp, since the Unix epoch.
    pub at: Duration,
}

/// Reads one transmit timestamp from the socket's error queue without waiting; `Ok(None)` when
/// the queue holds none (or holds a message that is not a timestamp, which is consumed).
pub fn recv_tx_timestamp(socket: impl AsFd) -> io::Result<Option<TxTimestamp>> {
    let socket = socket.as_fd();
    let mut cmsg = tx_control_space();
    let mut payload = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut payload)];
    let message = match recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(message) => message,
        Err(nix::Error::EAGAIN) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    tx_timestamp_of(&message)
}

/// Room for one error-queue message: the timestamps, the extended error and its offender.
fn tx_control_space() -> Vec<u8> {
    nix::cmsg_space!(
        [libc::timespec; 3],
        libc::sock_extended_err,
        libc::sockaddr_in6
    )
}

/// Transmit timestamps read per [`recv_tx_timestamps`] call at most.
pub const TX_TIMESTAMP_BATCH: usize = 64;

/// Reads up to `at_most` (at most [`TX_TIMESTAMP_BATCH`]) transmit timestamps from the
/// socket's error queue in one system call (recvmmsg with MSG_ERRQUEUE) without waiting,
/// appending them to `stamps` in the kernel's order; returns how many messages were read
/// (messages that are not timestamps are consumed and not appended). `Ok(0)` when the queue is
/// empty or `at_most` is 0. A sender or reflector under load has a timestamp queued per packet:
/// one call per batch instead of one per packet. The caller says how many it expects (packets
/// sent and not yet stamped): the call sets up room for that many, and for one it is a plain
/// recvmsg, so a caller that looks after every packet pays no more than before.
pub fn recv_tx_timestamps(
    socket: impl AsFd,
    stamps: &mut Vec<TxTimestamp>,
    at_most: usize,
) -> io::Result<usize> {
    let room = at_most.min(TX_TIMESTAMP_BATCH);
    if room == 0 {
        return Ok(0);
    }
    if room == 1 {
        return Ok(match recv_tx_timestamp(socket)? {
            Some(stamp) => {
                stamps.push(stamp);
                1
            }
            None => 0,
        });
    }
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(room, Some(tx_control_space()));
    // TSONLY messages carry no payload; a buffer each all the same, as the single read has.
    let mut payloads = vec![[0u8; 64]; room];
    let mut slices: Vec<[IoSliceMut<'_>; 1]> = payloads
        .iter_mut()
        .map(|payload| [IoSliceMut::new(payload)])
        .collect();
    let results = match recvmmsg(
        socket.as_fd().as_raw_fd(),
        &mut headers,
        slices.iter_mut(),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        None,
    ) {
        Ok(results) => results,
        Err(nix::Error::EAGAIN) => return Ok(0),
        Err(error) => return Err(error.into()),
    };
    let mut read = 0;
    for message in results {
        read += 1;
        if let Some(stamp) = tx_timestamp_of(&message)? {
            stamps.push(stamp);
        }
    }
    Ok(read)
}

/// The one reading of an error-queue message: its OPT_ID number and software transmit time,
/// or None for a message that is not a transmit timestamp.
fn tx_timestamp_of(message: &RecvMsg<'_, '_, SockaddrStorage>) -> io::Result<Option<TxTimestamp>> {
    let mut at = None;
    let mut id = None;
    for control in message.cmsgs().map_err(io::Error::from)? {
        match control {
            ControlMessageOwned::ScmTimestampsns(stamps) => {
                at = timespec_duration(stamps.system.tv_sec(), stamps.system.tv_nsec());
            }
            ControlMessageOwned::Ipv4RecvErr(error, _)
                if error.ee_origin == SO_EE_ORIGIN_TIMESTAMPING =>
            {
                id = Some(error.ee_data);
            }
            ControlMessageOwned::Ipv6RecvErr(error, _)
                if error.ee_origin == SO_EE_ORIGIN_TIMESTAMPING =>
            {
                id = Some(error.ee_data);
            }
            // An AF_PACKET socket's (net/packet/af_packet.c, packet_recv_error): the same
            // sock_extended_err under SOL_PACKET / PACKET_TX_TIMESTAMP, which nix leaves
            // unparsed; its fields are read from the octets (linux/errqueue.h: ee_errno u32,
            // ee_origin u8, ee_type u8, ee_code u8, ee_pad u8, ee_info u32, ee_data u32).
            ControlMessageOwned::Unknown(unknown)
                if unknown.cmsg_header.cmsg_level == libc::SOL_PACKET
                    && unknown.cmsg_header.cmsg_type == libc::PACKET_TX_TIMESTAMP =>
            {
                let bytes = &unknown.data_bytes;
                if bytes.len() >= 16 && bytes[4] == SO_EE_ORIGIN_TIMESTAMPING {
                    id = Some(u32::from_ne_bytes([
                        bytes[12], bytes[13], bytes[14], bytes[15],
                    ]));
                }
            }
            _ => {}
        }
    }
    Ok(match (id, at) {
        (Some(id), Some(at)) => Some(TxTimestamp { id, at }),
        _ => None,
    })
}

/// CLOCK_MONOTONIC and CLOCK_REALTIME read at one instant: what moves the kernel's packet
/// timestamps, which are always CLOCK_REALTIME (`SO_TIMESTAMP*`), onto the monotonic clock a
/// measurement times its sends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPair {
    /// CLOCK_MONOTONIC, nanoseconds.
    pub monotonic_ns: u64,
    /// CLOCK_REALTIME at the same instant, nanoseconds since the Unix epoch.
    pub realtime_ns: u64,
}

impl ClockPair {
    /// Reads both clocks now.
    pub fn now() -> ClockPair {
        ClockPair::read_with(
            || clock_ns(rustix::time::ClockId::Monotonic),
            || clock_ns(rustix::time::ClockId::Realtime),
        )
    }

    /// The realtime read is bracketed by two monotonic ones and paired with their midpoint, so
    /// the pair is off by at most half the bracket. Reading each clock once instead would put
    /// a preemption between the reads wholly into the pair (an arrival moved earlier by it, a
    /// round trip read short by it), so a wide bracket is read again: the narrowest of a few
    /// tries serves. Both reads are vDSO calls of a few tens of nanoseconds.
    fn read_with(
        mut monotonic: impl FnMut() -> u64,
        mut realtime: impl FnMut() -> u64,
    ) -> ClockPair {
        const TRIES: usize = 4;
        const NARROW_NS: u64 = 1_000;
        let mut read = || {
            let before = monotonic();
            let realtime_ns = realtime();
            let width = monotonic().saturating_sub(before);
            let pair = ClockPair {
                monotonic_ns: before.saturating_add(width / 2),
                realtime_ns,
            };
            (width, pair)
        };
        let mut best = read();
        for _ in 1..TRIES {
            if best.0 <= NARROW_NS {
                break;
            }
            let next = read();
            if next.0 < best.0 {
                best = next;
            }
        }
        best.1
    }

    /// Moves a CLOCK_REALTIME timestamp taken before this pair was read onto CLOCK_MONOTONIC.
    /// `None` when it is not plausible: later than the pair, or more than a second older (a
    /// timestamp read at once after the packet came cannot be; the wall clock was stepped).
    pub fn monotonic_of(&self, realtime_ns: u64) -> Option<u64> {
        let age = self.realtime_ns.checked_sub(realtime_ns)?;
        (age < 1_000_000_000).then(|| self.monotonic_ns.saturating_sub(age))
    }
}

fn clock_ns(clock: rustix::time::ClockId) -> u64 {
    let now = rustix::time::clock_gettime(clock);
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
}

/// The kernel clock's synchronisation as NTP (or PTP through phc2sys) left it in adjtimex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSync {
    /// STA_UNSYNC is clear and the maximum error is below 16 s: a time source disciplines the
    /// clock (adjtimex(2) returns TIME_ERROR otherwise).
    pub synchronised: bool,
    /// The estimated error (`esterror`).
    pub estimated_error: Duration,
    /// The maximum error (`maxerror`).
    pub maximum_error: Duration,
    /// CLOCK_REALTIME's resolution.
    pub resolution: Duration,
}

/// Reads the clock's synchronisation status (adjtimex with no modes: a read, changes nothing).
pub fn clock_sync() -> io::Result<ClockSync> {
    // SAFETY: `timex` is plain integers; all-zero is a valid value.
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `modes` 0 asks the kernel only to fill the struct in (a read, no change); the
    // pointer is to a live, exclusively borrowed struct for the duration of the call.
    let state = unsafe { libc::adjtimex(&mut timex) };
    if state < 0 {
        return Err(io::Error::last_os_error());
    }
    let resolution = rustix::time::clock_getres(rustix::time::ClockId::Realtime);
    let micros = |value: libc::c_long| Duration::from_micros(u64::try_from(value).unwrap_or(0));
    Ok(ClockSync {
        synchronised: state != libc::TIME_ERROR
            && timex.status & libc::STA_UNSYNC == 0
            && timex.maxerror < 16_000_000,
        estimated_error: micros(timex.esterror),
        maximum_error: micros(timex.maxerror),
        resolution: Duration::new(
            u64::try_from(resolution.tv_sec).unwrap_or(0),
            u32::try_from(resolution.tv_nsec).unwrap_or(0),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::SystemTime;

    fn now() -> Duration {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
    }

    fn wait(socket: &UdpSocket) {
        crate::wait_readable(socket, Some(Duration::from_secs(5))).unwrap();
    }

    /// On loopback the kernel stamps the packet between our two clock reads, gives the TTL we
    /// set, the DSCP we set, the address we sent to, and numbers transmit timestamps from 0.
    #[test]
    fn loopback_datagram_carries_kernel_timestamps_and_metadata() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_datagram_metadata(&receiver, false, false).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_datagram_metadata(&sender, false, true).unwrap();
        set_send_options(
            &sender,
            false,
            SendOptions {
                ttl: Some(17),
                dscp: Some(46),
                dont_fragment: true,
            },
        )
        .unwrap();
        let before = now();
        for _ in 0..2 {
            sender
                .send_to(b"hello", receiver.local_addr().unwrap())
                .unwrap();
        }
        let mut buffer = [0u8; 16];
        wait(&receiver);
        let got = recv_datagram(&receiver, &mut buffer).unwrap();
        let after = now();
        assert_eq!(&buffer[..got.len], b"hello");
        assert_eq!(got.ttl, Some(17));
        assert_eq!(got.tos, Some(46 << 2));
        assert_eq!(got.to, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(got.from, Some(sender.local_addr().unwrap()));
        // Receive timestamps may be missing on the first datagrams (see the IPv6 test).
        if let Some(rx) = got.kernel_rx {
            assert!(before <= rx && rx <= after, "{before:?} {rx:?} {after:?}");
        }
        let mut ids = Vec::new();
        while ids.len() < 2 {
            match recv_tx_timestamp(&sender).unwrap() {
                Some(stamp) => {
                    assert!(before <= stamp.at && stamp.at <= after);
                    ids.push(stamp.id);
                }
                None => {
                    let mut fds = [rustix::event::PollFd::new(
                        &sender,
                        rustix::event::PollFlags::ERR,
                    )];
                    rustix::event::poll(&mut fds, None).unwrap();
                }
            }
        }
        assert_eq!(ids, [0, 1]);
        assert_eq!(recv_tx_timestamp(&sender).unwrap(), None);
    }

    /// One batched read returns what one-at-a-time reads would: the kernel's OPT_ID numbers
    /// 0..N in order, each time between the clock read before the sends and after them.
    #[test]
    fn transmit_timestamps_read_in_batches() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_datagram_metadata(&sender, false, true).unwrap();
        let datagrams = TX_TIMESTAMP_BATCH + 10;
        let before = now();
        let to = receiver.local_addr().unwrap();
        for _ in 0..datagrams {
            sender.send_to(b"stamp me", to).unwrap();
        }
        let after = now();
        let mut stamps = Vec::new();
        let mut calls = 0;
        while stamps.len() < datagrams {
            calls += 1;
            assert!(calls < 10_000, "only {} timestamps came", stamps.len());
            // The first call asks for one (a plain recvmsg), the rest for a batch.
            let at_most = if calls == 1 { 1 } else { TX_TIMESTAMP_BATCH };
            let read = recv_tx_timestamps(&sender, &mut stamps, at_most).unwrap();
            assert!(read <= at_most);
            if read == 0 {
                let mut fds = [rustix::event::PollFd::new(
                    &sender,
                    rustix::event::PollFlags::ERR,
                )];
                rustix::event::poll(&mut fds, None).unwrap();
            }
        }
        let ids: Vec<u32> = stamps.iter().map(|stamp| stamp.id).collect();
        assert_eq!(ids, (0..datagrams as u32).collect::<Vec<_>>());
        assert!(stamps.iter().all(|s| before <= s.at && s.at <= after));
        // The loopback sends are stamped synchronously: the first call took a full batch.
        assert!(
            calls < datagrams,
            "{calls} calls for {datagrams} timestamps"
        );
        assert_eq!(
            recv_tx_timestamps(&sender, &mut stamps, TX_TIMESTAMP_BATCH).unwrap(),
            0
        );
        assert_eq!(recv_tx_timestamp(&sender).unwrap(), None);
    }

    #[test]
    fn ipv6_hop_limit_and_traffic_class() {
        let Ok(receiver) = UdpSocket::bind("[::1]:0") else {
            eprintln!("skipping: no ::1 on this host");
            return;
        };
        enable_datagram_metadata(&receiver, true, false).unwrap();
        let sender = UdpSocket::bind("[::1]:0").unwrap();
        set_send_options(
            &sender,
            true,
            SendOptions {
                ttl: Some(3),
                dscp: Some(10),
                dont_fragment: true,
            },
        )
        .unwrap();
        // The kernel turns receive timestamping on for the machine in deferred work when the
        // first socket asks (net_enable_timestamp), so the first datagrams may come without one:
        // send until one has it (the event), and it lies between our clock reads.
        for attempt in 0.. {
            assert!(
                attempt < 1000,
                "no kernel receive timestamp after 1000 datagrams"
            );
            let before = now();
            sender
                .send_to(b"x", receiver.local_addr().unwrap())
                .unwrap();
            wait(&receiver);
            let got = recv_datagram(&receiver, &mut [0u8; 4]).unwrap();
            let after = now();
            assert_eq!(got.ttl, Some(3));
            assert_eq!(got.tos, Some(10 << 2));
            assert_eq!(got.to, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
            if let Some(rx) = got.kernel_rx {
                assert!(before <= rx && rx <= after);
                break;
            }
        }
    }

    /// A batch sent with sendmmsg arrives whole through recvmmsg, in order, each datagram with
    /// its own source, TTL, TOS and destination, twice in a row (the headers are not reused
    /// with the kernel's shortened lengths).
    #[test]
    fn batches_carry_each_datagrams_own_facts() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_datagram_metadata(&receiver, false, false).unwrap();
        let to = receiver.local_addr().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_send_options(
            &sender,
            false,
            SendOptions {
                ttl: Some(255),
                dscp: Some(48),
                dont_fragment: false,
            },
        )
        .unwrap();
        let mut buffers = vec![[0u8; 64]; 8];
        let mut got = Vec::new();
        for round in 0..2u8 {
            let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![round, i, i, i]).collect();
            let batch: Vec<(&[u8], SocketAddr)> =
                payloads.iter().map(|p| (p.as_slice(), to)).collect();
            assert_eq!(send_datagrams(&sender, &batch).unwrap(), 5);
            let mut seen = Vec::new();
            while seen.len() < 5 {
                wait(&receiver);
                let count = recv_datagrams(&receiver, &mut buffers, &mut got).unwrap();
                for (datagram, buffer) in got.iter().zip(&buffers).take(count) {
                    assert_eq!(datagram.ttl, Some(255));
                    assert_eq!(datagram.tos, Some(48 << 2));
                    assert_eq!(datagram.to, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                    assert_eq!(datagram.from, Some(sender.local_addr().unwrap()));
                    seen.push(buffer[..datagram.len].to_vec());
                }
            }
            assert_eq!(seen, payloads);
        }
        let error = recv_datagrams(&receiver, &mut buffers, &mut got).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    }

    /// Simulated clocks: one true time that every read advances by 30 ns; CLOCK_REALTIME runs
    /// `OFFSET` ahead of CLOCK_MONOTONIC. The thread loses the CPU for 5 ms once, just before
    /// its first CLOCK_REALTIME read.
    #[test]
    fn a_preemption_between_the_clock_reads_does_not_skew_the_pair() {
        const OFFSET: u64 = 1_700_000_000_000_000_000;
        let now = std::cell::Cell::new(1_000_000_000u64);
        let preempted = std::cell::Cell::new(false);
        let tick = || {
            now.set(now.get() + 30);
            now.get()
        };
        let pair = ClockPair::read_with(tick, || {
            if !preempted.replace(true) {
                now.set(now.get() + 5_000_000);
            }
            tick() + OFFSET
        });
        let skew = pair.realtime_ns.abs_diff(pair.monotonic_ns + OFFSET);
        assert!(skew <= 100, "the pair is {skew} ns apart");
    }

    #[test]
    fn realtime_stamps_move_onto_the_monotonic_clock() {
        let pair = ClockPair::now();
        assert_eq!(
            pair.monotonic_of(pair.realtime_ns - 20_000),
            Some(pair.monotonic_ns - 20_000)
        );
        assert_eq!(pair.monotonic_of(pair.realtime_ns + 1), None);
        assert_eq!(pair.monotonic_of(pair.realtime_ns - 5_000_000_000), None);
        // Read together: the two clocks' offset now and a moment later agree within the reads.
        let later = ClockPair::now();
        let drift =
            (later.realtime_ns - pair.realtime_ns).abs_diff(later.monotonic_ns - pair.monotonic_ns);
        assert!(drift < 5_000_000, "{drift} ns");
    }

    #[test]
    fn clock_sync_reads() {
        let sync = clock_sync().unwrap();
        assert!(sync.resolution > Duration::ZERO && sync.resolution <= Duration::from_millis(10));
        if sync.synchronised {
            assert!(sync.maximum_error < Duration::from_secs(16));
        }
    }
}
