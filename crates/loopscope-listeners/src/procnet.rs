//! The fallback source: `/proc/net/{tcp,tcp6,udp,udp6}`, read and parsed by `loopscope-sys`
//! (the one /proc parser). The tables carry neither IPV6_V6ONLY nor the bound interface, which
//! the verdicts then have to guess (and say so).

use loopscope_sys::{ProcNetParse, ProcNetTable};

use crate::model::{Family, Protocol, RawSocket};

/// The table that lists the sockets of `protocol` and `family`.
pub(crate) fn table_of(protocol: Protocol, family: Family) -> ProcNetTable {
    match (protocol, family) {
        (Protocol::Tcp, Family::Ipv4) => ProcNetTable::Tcp,
        (Protocol::Tcp, Family::Ipv6) => ProcNetTable::Tcp6,
        (Protocol::Udp, Family::Ipv4) => ProcNetTable::Udp,
        (Protocol::Udp, Family::Ipv6) => ProcNetTable::Udp6,
    }
}

/// Adds the parsed table's listening TCP (LISTEN) or unconnected UDP (CLOSE) sockets to `out`;
/// returns how many lines did not parse.
pub(crate) fn add_listening(
    parsed: ProcNetParse,
    protocol: Protocol,
    family: Family,
    out: &mut Vec<RawSocket>,
) -> usize {
    let wanted_state = table_of(protocol, family).listening_state();
    out.extend(
        parsed
            .sockets
            .into_iter()
            .filter(|socket| socket.state == wanted_state)
            .map(|socket| RawSocket {
                protocol,
                family,
                address: socket.local_address,
                port: socket.local_port,
                v6only: None,
                bound_ifindex: None,
                uid: socket.uid,
                inode: socket.inode,
            }),
    );
    parsed.malformed
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use loopscope_sys::{ProcNetSocket, TCP_CLOSE, TCP_LISTEN};

    use super::*;

    /// A row as `loopscope-sys` parses it (the text format is tested there).
    fn row(port: u16, state: u8, inode: u64) -> ProcNetSocket {
        ProcNetSocket {
            local_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            local_port: port,
            remote_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            remote_port: 0,
            state,
            uid: 1000,
            inode,
        }
    }

    #[test]
    fn tcp_keeps_listening_sockets_only() {
        let parsed = ProcNetParse {
            sockets: vec![row(8080, TCP_LISTEN, 1), row(40000, 0x01, 2)],
            malformed: 3,
        };
        let mut out = Vec::new();
        assert_eq!(
            add_listening(parsed, Protocol::Tcp, Family::Ipv4, &mut out),
            3
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((out[0].port, out[0].uid, out[0].inode), (8080, 1000, 1));
        assert_eq!((out[0].v6only, out[0].bound_ifindex), (None, None));
    }

    #[test]
    fn udp_keeps_unconnected_sockets_only() {
        let parsed = ProcNetParse {
            sockets: vec![row(53, TCP_CLOSE, 777), row(54, 0x01, 778)],
            malformed: 0,
        };
        let mut out = Vec::new();
        assert_eq!(
            add_listening(parsed, Protocol::Udp, Family::Ipv4, &mut out),
            0
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].port, out[0].inode), (53, 777));
    }

    #[test]
    fn each_protocol_and_family_has_its_table() {
        assert_eq!(table_of(Protocol::Udp, Family::Ipv6).file_name(), "udp6");
        assert_eq!(table_of(Protocol::Tcp, Family::Ipv4).file_name(), "tcp");
    }
}
