//! The fallback source: `/proc/net/{tcp,tcp6,udp,udp6}` text tables, parsed by `loopscope-sys`.
//! They carry neither IPV6_V6ONLY nor the bound interface, which the verdicts then have to
//! guess (and say so).

use loopscope_sys::{TCP_CLOSE, TCP_LISTEN, parse_proc_net};

use crate::model::{Family, Protocol, RawSocket};

/// Adds the table's listening TCP (LISTEN) or unconnected UDP (CLOSE) sockets to `out`; returns
/// how many lines did not parse.
pub fn parse_table(
    text: &str,
    protocol: Protocol,
    family: Family,
    out: &mut Vec<RawSocket>,
) -> usize {
    let wanted_state = match protocol {
        Protocol::Tcp => TCP_LISTEN,
        Protocol::Udp => TCP_CLOSE,
    };
    let parsed = parse_proc_net(text, family == Family::Ipv6);
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

    use super::*;

    // Lines as a little-endian kernel prints them (hand-written from known sockets).
    const TCP4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_tcp4_lines_parse_and_others_are_skipped() {
        if cfg!(target_endian = "big") {
            return; // the fixture is little-endian
        }
        let mut out = Vec::new();
        assert_eq!(parse_table(TCP4, Protocol::Tcp, Family::Ipv4, &mut out), 0);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].address, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(out[0].port, 8080);
        assert_eq!(out[0].uid, 1000);
        assert_eq!(out[0].inode, 12345);
        assert_eq!(out[1].address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(out[1].port, 22);
        assert_eq!(out[1].v6only, None);
        assert_eq!(out[1].bound_ifindex, None);
    }

    #[test]
    fn udp_keeps_unconnected_sockets_only() {
        let text = "header\n   5: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0\n   6: 00000000:0036 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 778 2 0000000000000000 0\n";
        let mut out = Vec::new();
        assert_eq!(parse_table(text, Protocol::Udp, Family::Ipv4, &mut out), 0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].port, 53);
        assert_eq!(out[0].inode, 777);
    }

    #[test]
    fn malformed_lines_are_counted() {
        let mut out = Vec::new();
        let text = "header\n garbage\n 1: 0100007F:ZZZZ 00000000:0000 0A a b c 0 0 1\n";
        assert_eq!(parse_table(text, Protocol::Tcp, Family::Ipv4, &mut out), 2);
        assert!(out.is_empty());
    }
}
