//! What every IP link shares: `HOST:PORT` targets (IPv6 in brackets), and the `bind=ADDR` and
//! `iface=NAME` options applied to a socket before it connects or listens.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

use crate::endpoint::{Endpoint, EndpointError};

/// The options every IP link understands.
pub const IP_OPTIONS: &[&str] = &["bind", "iface"];

/// Source-side settings from `bind=` and `iface=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpOptions {
    /// Source address (and optionally port) the socket binds to before connecting.
    pub bind: Option<SocketAddr>,
    /// Interface for SO_BINDTODEVICE.
    pub iface: Option<String>,
}

impl IpOptions {
    /// Reads `bind`, `iface` and the other socket options.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        let bind = match endpoint.option("bind") {
            None => None,
            Some(text) => Some(parse_bind(text).ok_or_else(|| {
                endpoint.bad_value(
                    "bind",
                    text,
                    "expected an IP address (127.0.0.2, ::1) or ADDR:PORT ([::1]:5000)",
                )
            })?),
        };
        let iface = match endpoint.option("iface") {
            None => None,
            Some(name) if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') => {
                return Err(endpoint.bad_value(
                    "iface",
                    name,
                    "expected an interface name such as lo or eth0",
                ));
            }
            Some(name) => Some(name.to_string()),
        };
        Ok(IpOptions { bind, iface })
    }

    /// Applies SO_BINDTODEVICE and the source bind to a fresh socket for `peer`.
    pub fn apply(&self, socket: &Socket, peer: &SocketAddr) -> io::Result<()> {
        if let Some(iface) = &self.iface {
            socket.bind_device(Some(iface.as_bytes())).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot bind to interface {iface} (SO_BINDTODEVICE): {e}"),
                )
            })?;
        }
        if let Some(bind) = self.bind {
            if bind.is_ipv4() != peer.is_ipv4() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "bind={} and the peer {peer} are of different IP families",
                        bind.ip()
                    ),
                ));
            }
            socket
                .bind(&bind.into())
                .map_err(|e| io::Error::new(e.kind(), format!("cannot bind to {bind}: {e}")))?;
        }
        Ok(())
    }
}

fn parse_bind(text: &str) -> Option<SocketAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    let trimmed = text.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    text.parse::<SocketAddr>().ok()
}

/// Splits `HOST:PORT` (`[v6]:PORT` for IPv6). An empty host gives `None`.
pub fn split_host_port(target: &str) -> Option<(Option<&str>, u16)> {
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = target.rsplit_once(':')?;
        if host.contains(':') {
            return None; // a bare IPv6 address needs brackets
        }
        (host, port)
    };
    let port = port.parse().ok()?;
    Some(((!host.is_empty()).then_some(host), port))
}

/// Resolves the target of an IP endpoint. `default_host` stands in for an empty host (the
/// reflector binds to loopback unless told otherwise); clients require a host.
pub fn resolve(
    endpoint: &Endpoint,
    default_host: Option<IpAddr>,
) -> Result<Vec<SocketAddr>, EndpointError> {
    let (host, port) = split_host_port(&endpoint.target).ok_or_else(|| {
        endpoint.invalid(format!(
            "expected {}://HOST:PORT (IPv6 as [::1]:PORT)",
            endpoint.scheme
        ))
    })?;
    let host = match (host, default_host) {
        (Some(host), _) => host,
        (None, Some(ip)) => return Ok(vec![SocketAddr::new(ip, port)]),
        (None, None) => return Err(endpoint.invalid("missing host (e.g. 127.0.0.1 or [::1])")),
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| endpoint.invalid(format!("cannot resolve '{host}': {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(endpoint.invalid(format!("'{host}' resolves to no address")));
    }
    Ok(addrs)
}

/// The loopback address the reflector uses when no host is given.
pub const DEFAULT_LISTEN: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A socket of the right family for `peer`.
pub fn new_socket(peer: &SocketAddr, kind: Type) -> io::Result<Socket> {
    let protocol = if kind == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    Socket::new(Domain::for_address(*peer), kind, Some(protocol))
}

/// Formats an address the way endpoints write it (`[::1]:7`).
pub fn format_addr(addr: &SocketAddr) -> String {
    addr.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("127.0.0.1:7"), Some((Some("127.0.0.1"), 7)));
        assert_eq!(split_host_port("[::1]:7007"), Some((Some("::1"), 7007)));
        assert_eq!(split_host_port(":80"), Some((None, 80)));
        assert_eq!(
            split_host_port("localhost:65535"),
            Some((Some("localhost"), 65535))
        );
        assert_eq!(split_host_port("::1:7"), None);
        assert_eq!(split_host_port("host:99999"), None);
        assert_eq!(split_host_port("host"), None);
        assert_eq!(split_host_port("[::1]7"), None);
    }

    #[test]
    fn options() {
        let e = Endpoint::parse("tcp://[::1]:7?bind=::1&iface=lo").unwrap();
        let o = IpOptions::from_endpoint(&e).unwrap();
        assert_eq!(o.bind, Some("[::1]:0".parse().unwrap()));
        assert_eq!(o.iface.as_deref(), Some("lo"));
        let e = Endpoint::parse("tcp://127.0.0.1:7?bind=127.0.0.2:4000").unwrap();
        let o = IpOptions::from_endpoint(&e).unwrap();
        assert_eq!(o.bind, Some("127.0.0.2:4000".parse().unwrap()));
        let e = Endpoint::parse("tcp://127.0.0.1:7?bind=nowhere").unwrap();
        assert!(IpOptions::from_endpoint(&e).is_err());
        let e = Endpoint::parse("tcp://127.0.0.1:7?iface=averyveryverylongname").unwrap();
        assert!(IpOptions::from_endpoint(&e).is_err());
    }

    #[test]
    fn resolves_literals_and_defaults() {
        let e = Endpoint::parse("tcp://[::1]:9").unwrap();
        assert_eq!(resolve(&e, None).unwrap(), vec!["[::1]:9".parse().unwrap()]);
        let e = Endpoint::parse("tcp://:9").unwrap();
        assert!(resolve(&e, None).is_err());
        assert_eq!(
            resolve(&e, Some(DEFAULT_LISTEN)).unwrap(),
            vec!["127.0.0.1:9".parse().unwrap()]
        );
    }
}
