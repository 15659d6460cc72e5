//! The SSRF guard: from user-supplied text to the socket addresses it is safe to connect to.
//!
//! Names are resolved once, through a [`Resolver`], and **every** answer is checked; if any
//! answer is denied the whole name is denied (a name that can point inside is not trusted
//! outside). The guard returns the vetted [`SocketAddr`]s, and the caller connects to exactly
//! those (for example with [`Vetted::connect`]), so there is no second lookup for DNS rebinding to
//! slip into between check and connect.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::notation::{self, Host, NotationError, Parsed};
use crate::verdict::{Decision, Policy, SsrfReason, classify};

/// Turns a host name into addresses.
pub trait Resolver {
    /// The addresses `name` resolves to, in the order a client would try them.
    fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError>;
}

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve '{name}': {message}")]
    /// The resolver failed.
    Failed {
        /// The name.
        name: String,
        /// What the resolver said.
        message: String,
    },
    /// The name resolved to nothing.
    #[error("'{0}' has no addresses")]
    NoAnswer(String),
}

/// The system resolver (`getaddrinfo` through `std`): /etc/hosts, DNS, nsswitch.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let answers = (name, 0u16)
            .to_socket_addrs()
            .map_err(|error| ResolveError::Failed {
                name: name.to_string(),
                message: error.to_string(),
            })?;
        let mut addresses: Vec<IpAddr> = Vec::new();
        for answer in answers {
            if !addresses.contains(&answer.ip()) {
                addresses.push(answer.ip());
            }
        }
        if addresses.is_empty() {
            return Err(ResolveError::NoAnswer(name.to_string()));
        }
        Ok(addresses)
    }
}

/// A fixed table of names, e.g. from a hosts file: for tests and for pinning names.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    names: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// A resolver that knows no name yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds addresses for `name` (case-insensitive, trailing dot ignored).
    pub fn insert(&mut self, name: &str, addresses: impl IntoIterator<Item = IpAddr>) {
        let entry = self.names.entry(normalise(name)).or_default();
        for address in addresses {
            if !entry.contains(&address) {
                entry.push(address);
            }
        }
    }

    /// Parses hosts(5) text: `ADDRESS NAME [ALIAS...]`, `#` comments. Lines that do not start
    /// with an address are skipped.
    pub fn parse_hosts(text: &str) -> Self {
        let mut resolver = StaticResolver::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(Ok(address)) = words.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            for name in words {
                resolver.insert(name, [address]);
            }
        }
        resolver
    }
}

fn normalise(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl Resolver for StaticResolver {
    fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        match self.names.get(&normalise(name)) {
            Some(addresses) if !addresses.is_empty() => Ok(addresses.clone()),
            _ => Err(ResolveError::NoAnswer(name.to_string())),
        }
    }
}

impl<R: Resolver + ?Sized> Resolver for &R {
    fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        (**self).resolve(name)
    }
}

/// The addresses `localhost` names by RFC 6761 §6.3, never asked of DNS.
pub const LOCALHOST_ADDRESSES: [IpAddr; 2] = [
    IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
];

/// Why the guard refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The input is no address, host name or URL.
    #[error(transparent)]
    Notation(#[from] NotationError),
    /// A name did not resolve.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("denied '{input}': {address} {reason}")]
    /// An address the policy refuses.
    Denied {
        /// The input as given.
        input: String,
        /// The refused address.
        address: IpAddr,
        /// Why.
        reason: String,
    },
    #[error("denied '{input}': parsers disagree on the host ({detail})")]
    /// Parsers read different hosts in the input: whichever the caller's HTTP library uses,
    /// the check would be of another host.
    Ambiguous {
        /// The input as given.
        input: String,
        /// Which parsers read what.
        detail: String,
    },
    /// No port given, and no scheme to take a default one from.
    #[error("'{0}' has no port: give one, or use a URL whose scheme has a default port")]
    NoPort(String),
}

/// Addresses that passed the policy, with the host and port they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vetted {
    /// The input as read.
    pub parsed: Parsed,
    /// Connect to these and nothing else.
    pub addrs: Vec<SocketAddr>,
    /// The decision for each address, in order.
    pub checks: Vec<(IpAddr, Decision, SsrfReason)>,
}

impl Vetted {
    /// Connects to the vetted addresses in order (never resolving again).
    pub fn connect(&self, timeout: Duration) -> io::Result<TcpStream> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no vetted addresses");
        for addr in &self.addrs {
            match TcpStream::connect_timeout(addr, timeout) {
                Ok(stream) => return Ok(stream),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// The host as it should appear in an HTTP `Host` header.
    pub fn host_header(&self) -> String {
        let host = match &self.parsed.host {
            Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            other => other.to_string(),
        };
        match self.parsed.port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }
}

/// Checks destinations against a [`Policy`], resolving names with `R`.
#[derive(Debug, Clone)]
pub struct Guard<R> {
    /// What to allow and deny.
    pub policy: Policy,
    /// How names become addresses.
    pub resolver: R,
}

impl<R: Resolver> Guard<R> {
    /// A guard applying `policy`, resolving with `resolver`.
    pub fn new(policy: Policy, resolver: R) -> Self {
        Guard { policy, resolver }
    }

    /// The addresses a host name stands for: RFC 6761 localhost names without asking anyone,
    /// literal addresses as they are, everything else from the resolver.
    pub fn addresses(&self, host: &Host) -> Result<Vec<IpAddr>, ResolveError> {
        match host {
            Host::Ip(ip) => Ok(vec![*ip]),
            Host::Name(name) if notation::is_localhost_name(name) => {
                Ok(LOCALHOST_ADDRESSES.to_vec())
            }
            Host::Name(name) => self.resolver.resolve(name),
        }
    }

    /// Vets any input `notation::parse` reads: an address, `host:port`, `[v6]:port` or a URL.
    /// `default_port` is used when the input carries none.
    pub fn vet(&self, input: &str, default_port: Option<u16>) -> Result<Vetted, GuardError> {
        let mut parsed = notation::parse(input)?;
        let disagreeing: Vec<String> = parsed
            .disagreements()
            .map(|r| format!("{} reads {}", r.parser.code(), host_text(&r.host)))
            .collect();
        if !disagreeing.is_empty() {
            return Err(GuardError::Ambiguous {
                input: input.to_string(),
                detail: disagreeing.join(", "),
            });
        }
        let port = parsed
            .port
            .or(default_port)
            .ok_or_else(|| GuardError::NoPort(input.to_string()))?;
        parsed.port = Some(port);
        let addresses = self.addresses(&parsed.host)?;
        let mut checks = Vec::with_capacity(addresses.len());
        for address in &addresses {
            let (decision, reason) = self.policy.check(&classify(*address));
            if decision == Decision::Deny {
                return Err(GuardError::Denied {
                    input: input.to_string(),
                    address: *address,
                    reason: reason.to_string(),
                });
            }
            checks.push((*address, decision, reason));
        }
        let addrs = addresses
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
        Ok(Vetted {
            parsed,
            addrs,
            checks,
        })
    }
}

fn host_text(host: &Option<Host>) -> String {
    host.as_ref().map_or("nothing".into(), Host::to_string)
}
