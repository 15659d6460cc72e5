//! The `/proc/net/{tcp,tcp6,udp,udp6}` socket tables.
//!
//! Parsed by hand: the format is a fixed kernel text layout (`tcp4_seq_show` and friends in
//! net/ipv4/tcp_ipv4.c) that no maintained crate reads into sockets of both families without
//! pulling in the rest of procfs. The text comes from a file, which in a test may be a fake
//! /proc, so the parser never panics and counts the lines it cannot read.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One of the four socket tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcNetTable {
    /// `/proc/net/tcp`
    Tcp,
    /// `/proc/net/tcp6`
    Tcp6,
    /// `/proc/net/udp`
    Udp,
    /// `/proc/net/udp6`
    Udp6,
}

impl ProcNetTable {
    /// All four tables.
    pub const ALL: [ProcNetTable; 4] = [
        ProcNetTable::Tcp,
        ProcNetTable::Tcp6,
        ProcNetTable::Udp,
        ProcNetTable::Udp6,
    ];

    /// The file name under /proc/net.
    pub fn file_name(self) -> &'static str {
        match self {
            ProcNetTable::Tcp => "tcp",
            ProcNetTable::Tcp6 => "tcp6",
            ProcNetTable::Udp => "udp",
            ProcNetTable::Udp6 => "udp6",
        }
    }

    /// True for the IPv6 tables.
    pub fn is_ipv6(self) -> bool {
        matches!(self, ProcNetTable::Tcp6 | ProcNetTable::Udp6)
    }

    /// True for the TCP tables.
    pub fn is_tcp(self) -> bool {
        matches!(self, ProcNetTable::Tcp | ProcNetTable::Tcp6)
    }

    /// The kernel state of the sockets that accept traffic: LISTEN for TCP; for UDP the
    /// unconnected sockets, which the kernel shows as TCP_CLOSE.
    pub fn listening_state(self) -> u8 {
        if self.is_tcp() { TCP_LISTEN } else { TCP_CLOSE }
    }

    /// The table as seen from the calling thread's network namespace
    /// (`/proc/thread-self/net`, which follows a thread's setns; `/proc/self/net` follows the
    /// thread group leader). NotFound for the IPv6 tables on a kernel without IPv6.
    pub fn read(self) -> io::Result<ProcNetTableText> {
        let path = self.path();
        Ok(ProcNetTableText {
            text: std::fs::read_to_string(&path)?,
            path,
            table: self,
        })
    }

    /// Where [`read`](Self::read) reads the table from.
    pub fn path(self) -> String {
        format!("/proc/thread-self/net/{}", self.file_name())
    }
}

/// The kernel's TCP state number for LISTEN (as in the `st` column).
pub const TCP_LISTEN: u8 = 0x0a;
/// The kernel's TCP state number for CLOSE (an unconnected UDP socket).
pub const TCP_CLOSE: u8 = 0x07;

/// A table's text as read, with where it came from.
#[derive(Debug, Clone)]
pub struct ProcNetTableText {
    /// The file it was read from.
    pub path: String,
    /// Which table it is.
    pub table: ProcNetTable,
    /// The text.
    pub text: String,
}

impl ProcNetTableText {
    /// Parses the text; see [`parse_proc_net`].
    pub fn parse(&self) -> ProcNetParse {
        parse_proc_net(&self.text, self.table.is_ipv6())
    }
}

/// One row of a socket table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcNetSocket {
    /// Local address.
    pub local_address: IpAddr,
    /// Local port.
    pub local_port: u16,
    /// Remote address (unspecified when not connected).
    pub remote_address: IpAddr,
    /// Remote port (0 when not connected).
    pub remote_port: u16,
    /// Kernel state number (`st`): [`TCP_LISTEN`], [`TCP_CLOSE`], ...
    pub state: u8,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode (0 for a socket in TIME_WAIT).
    pub inode: u64,
}

/// A parsed table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcNetParse {
    /// Every row that parsed.
    pub sockets: Vec<ProcNetSocket>,
    /// Rows that did not parse (blank lines are not counted).
    pub malformed: usize,
}

/// Parses a table's text (the header line first, as the kernel prints it). `ipv6` says which
/// address width to expect.
pub fn parse_proc_net(text: &str, ipv6: bool) -> ProcNetParse {
    let mut parsed = ProcNetParse::default();
    for line in text.lines().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line, ipv6) {
            Some(socket) => parsed.sockets.push(socket),
            None => parsed.malformed += 1,
        }
    }
    parsed
}

/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`
fn parse_line(line: &str, ipv6: bool) -> Option<ProcNetSocket> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let (local_address, local_port) = parse_endpoint(fields.next()?, ipv6)?;
    let (remote_address, remote_port) = parse_endpoint(fields.next()?, ipv6)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let _queues = fields.next()?;
    let _timer = fields.next()?;
    let _retransmits = fields.next()?;
    let uid = fields.next()?.parse().ok()?;
    let _timeout = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    Some(ProcNetSocket {
        local_address,
        local_port,
        remote_address,
        remote_port,
        state,
        uid,
        inode,
    })
}

/// `ADDRESS:PORT`, both in hex.
fn parse_endpoint(text: &str, ipv6: bool) -> Option<(IpAddr, u16)> {
    let (address, port) = text.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    Some((
        parse_address(address, ipv6)?,
        u16::from_str_radix(port, 16).ok()?,
    ))
}

/// The kernel prints the (network-order) address as 32-bit words, each as a native-endian
/// integer in 8 hex digits.
fn parse_address(hex: &str, ipv6: bool) -> Option<IpAddr> {
    let words = if ipv6 { 4 } else { 1 };
    if hex.len() != words * 8 || !hex.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 16];
    for word in 0..words {
        let value = u32::from_str_radix(&hex[word * 8..word * 8 + 8], 16).ok()?;
        bytes[word * 4..word * 4 + 4].copy_from_slice(&value.to_ne_bytes());
    }
    Some(if ipv6 {
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Rows as a little-endian kernel prints them (hand-written from known sockets).
    const TCP4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0000000000000000 100 0 0 10 0
";

    #[test]
    #[cfg(target_endian = "little")]
    fn tcp4_rows_parse() {
        let parsed = parse_proc_net(TCP4, false);
        assert_eq!(parsed.malformed, 0);
        assert_eq!(parsed.sockets.len(), 3);
        let first = parsed.sockets[0];
        assert_eq!(first.local_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(first.local_port, 8080);
        assert_eq!(first.state, TCP_LISTEN);
        assert_eq!((first.uid, first.inode), (1000, 12345));
        assert_eq!(
            parsed.sockets[1].local_address,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(parsed.sockets[1].local_port, 22);
        let connected = parsed.sockets[2];
        assert_eq!((connected.local_port, connected.remote_port), (40000, 8080));
        assert_eq!(connected.state, 0x01);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn ipv6_words_are_host_order() {
        // ::1 and ::ffff:127.0.0.1 as /proc/net/tcp6 prints them on little-endian.
        assert_eq!(
            parse_address("00000000000000000000000001000000", true),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(
            parse_address("0000000000000000FFFF00000100007F", true),
            Some(IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()))
        );
        assert_eq!(parse_address("0100007", false), None);
        assert_eq!(parse_address("0100007G", false), None);
        assert_eq!(parse_address("0100007F", true), None);
    }

    #[test]
    fn malformed_rows_are_counted_and_blank_lines_skipped() {
        let text = "header\n\n garbage\n 1: 0100007F:ZZZZ 00000000:0000 0A a b c 0 0 1\n";
        let parsed = parse_proc_net(text, false);
        assert_eq!(parsed.malformed, 2);
        assert!(parsed.sockets.is_empty());
    }

    /// Against the reference tool: every listening socket `ss -tuln` shows in the network
    /// namespace is in our tables, and nothing else. As root the test runs in a namespace of
    /// its own (with listeners of every kind), where nothing else opens sockets; otherwise in
    /// the current one, where other processes open and close sockets meanwhile, so the
    /// comparison is taken between two `ss` runs that agree, and retried when they do not.
    #[test]
    fn listening_sockets_match_ss() {
        if std::process::Command::new("ss").arg("-V").output().is_err() {
            eprintln!("skipping: ss (iproute2) is not installed");
            return;
        }
        if !rustix::process::geteuid().is_root() {
            compare_with_ss();
            return;
        }
        std::thread::spawn(|| {
            crate::enter_new_network_namespace().expect("a namespace with lo up");
            compare_with_ss();
        })
        .join()
        .expect("namespace thread");
    }

    fn compare_with_ss() {
        // Sockets of our own, so the comparison is never between two empty sets: each table,
        // loopback and wildcard, and a connected pair that must not count.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let tcp_any = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let tcp6 = std::net::TcpListener::bind("[::1]:0").ok();
        let tcp6_any = std::net::TcpListener::bind("[::]:0").ok();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let udp6 = std::net::UdpSocket::bind("[::1]:0").ok();
        let _connected = std::net::TcpStream::connect(local_of(&tcp)).expect("connect");
        let mut mine = vec![(true, local_of(&tcp)), (true, local_of(&tcp_any))];
        mine.extend(tcp6.iter().chain(&tcp6_any).map(|l| (true, local_of(l))));
        mine.push((false, udp.local_addr().expect("addr")));
        mine.extend(udp6.iter().map(|u| (false, u.local_addr().expect("addr"))));
        let mut last = String::new();
        for _ in 0..20 {
            let before = ss_listening();
            let ours = our_listening();
            let after = ss_listening();
            if before != after {
                continue;
            }
            for socket in &mine {
                assert!(ours.contains(socket), "{socket:?} missing from {ours:?}");
            }
            if ours == before {
                return;
            }
            last = format!(
                "ours but not ss: {:?}\nss but not ours: {:?}",
                ours.difference(&before).collect::<Vec<_>>(),
                before.difference(&ours).collect::<Vec<_>>()
            );
        }
        panic!("/proc/net tables disagree with ss -tuln:\n{last}");
    }

    fn local_of(listener: &std::net::TcpListener) -> std::net::SocketAddr {
        listener.local_addr().expect("addr")
    }

    type Listening = std::collections::BTreeSet<(bool, std::net::SocketAddr)>;

    fn our_listening() -> Listening {
        let mut found = Listening::new();
        for table in ProcNetTable::ALL {
            let Ok(text) = table.read() else { continue };
            let parsed = text.parse();
            assert_eq!(parsed.malformed, 0, "{}", text.path);
            for socket in parsed.sockets {
                if socket.state == table.listening_state() {
                    let address =
                        std::net::SocketAddr::new(socket.local_address, socket.local_port);
                    found.insert((table.is_tcp(), address));
                }
            }
        }
        found
    }

    /// `ss -tulnH`: netid, state, queues, then `address:port` (IPv6 in brackets; a scope or
    /// bound interface after `%`, which our tables do not carry).
    fn ss_listening() -> Listening {
        let output = std::process::Command::new("ss")
            .args(["-tulnH"])
            .output()
            .expect("ss runs");
        assert!(output.status.success());
        let text = String::from_utf8(output.stdout).expect("utf-8");
        let mut found = Listening::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (netid, local) = (fields[0], fields[4]);
            let (host, port) = local.rsplit_once(':').expect("address:port");
            let host = host.split('%').next().expect("host");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let address: IpAddr = match host {
                // ss prints an IPv6 wildcard that also takes IPv4 (V6ONLY off) as `*`.
                "*" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                other => other.parse().expect("ss address"),
            };
            let port: u16 = port.parse().expect("ss port");
            found.insert((netid == "tcp", std::net::SocketAddr::new(address, port)));
        }
        found
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC*") {
            parse_proc_net(&text, true);
            parse_proc_net(&text, false);
        }

        #[test]
        fn never_panics_on_line_shaped_text(
            fields in proptest::collection::vec("[0-9A-Fa-f:\\u{e9}]{0,40}", 0..14)
        ) {
            let text = format!("header\n{}\n", fields.join(" "));
            parse_proc_net(&text, true);
            parse_proc_net(&text, false);
        }
    }
}
