//! Reading an address the way each kind of parser reads it.
//!
//! The same text means different hosts to different parsers, and that gap is where SSRF filters
//! are bypassed: a validator reads one host and the HTTP client contacts another. So every input
//! is read by each family of parser ([`Parser`]) and all readings are reported; the reading of
//! the client that would make the connection (WHATWG for URLs, `inet_aton`/`getaddrinfo` for bare
//! hosts) is the primary one.
//!
//! `inet_aton` and the decimal reading are written by hand: no crate reproduces glibc's
//! `inet_aton` (octal, hex, 1-4 parts, text after whitespace ignored) or the decimal-only readers
//! of Java and npm `netmask`, and those exact quirks are the point. WHATWG host parsing (IDNA,
//! fullwidth digits, percent-decoding, trailing dots) is the `url` crate's.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// A family of address parsers that read text the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Parser {
    /// Strict dotted-quad / RFC 4291 text: inet_pton, Rust std, Go netip, Python ipaddress.
    Strict,
    /// glibc/BSD inet_aton, also getaddrinfo, curl, ping: 1-4 parts, octal `0`, hex `0x`.
    InetAton,
    /// The WHATWG URL Standard host parser: browsers, Node's URL, Rust's `url`.
    Whatwg,
    /// 1-4 parts, every part decimal (leading zeros ignored): Java InetAddress, npm netmask < 2.0.1.
    Decimal,
    /// RFC 3986 authority split (host after the last `@`, `\` not a separator): Python urllib,
    /// many hand-written validators.
    Rfc3986,
}

impl Parser {
    /// The parser's code in output.
    pub fn code(&self) -> &'static str {
        match self {
            Parser::Strict => "strict",
            Parser::InetAton => "inet_aton",
            Parser::Whatwg => "whatwg",
            Parser::Decimal => "decimal",
            Parser::Rfc3986 => "rfc3986",
        }
    }

    /// Which software reads addresses this way.
    pub fn who(&self) -> &'static str {
        match self {
            Parser::Strict => "inet_pton, Rust std, Go netip, Python ipaddress",
            Parser::InetAton => "glibc inet_aton, getaddrinfo, curl, ping",
            Parser::Whatwg => "WHATWG URL: browsers, Node URL, Rust url",
            Parser::Decimal => "Java InetAddress, npm netmask < 2.0.1",
            Parser::Rfc3986 => "RFC 3986 split: Python urllib, naive validators",
        }
    }
}

/// What a host is: an address, or a name still to be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An address.
    Ip(IpAddr),
    /// A name, still to be resolved.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl Serialize for Host {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// How the input was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Notation {
    /// Strict dotted decimal `a.b.c.d`.
    Ipv4,
    /// An inet_aton form other than strict dotted decimal: `127.1`, `2130706433`, `0x7f000001`,
    /// `0177.0.0.1`, mixed.
    Ipv4InetAton,
    /// IPv6 text (RFC 4291 §2.2 / RFC 5952).
    Ipv6,
    /// `[v6]`, optionally with `:port`.
    Ipv6Bracketed,
    /// IPv6 with a zone id, `fe80::1%eth0` or `[fe80::1%25eth0]` (RFC 6874).
    Ipv6Zone,
    /// `host:port` with an IPv4 host.
    HostPort,
    /// A host only the WHATWG parser reads as an address or normalises (IDNA, fullwidth or
    /// enclosed digits, percent-encoding, trailing dot).
    UrlHost,
    /// A whole URL.
    Url,
    /// A domain name.
    Name,
}

impl Notation {
    /// The notation's code in output.
    pub fn code(&self) -> &'static str {
        match self {
            Notation::Ipv4 => "ipv4",
            Notation::Ipv4InetAton => "ipv4_inet_aton",
            Notation::Ipv6 => "ipv6",
            Notation::Ipv6Bracketed => "ipv6_bracketed",
            Notation::Ipv6Zone => "ipv6_zone",
            Notation::HostPort => "host_port",
            Notation::UrlHost => "url_host",
            Notation::Url => "url",
            Notation::Name => "name",
        }
    }
}

/// One parser's reading of the input: the host it would contact, or `None` if it rejects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reading {
    /// Which parser.
    pub parser: Parser,
    /// The host it would contact; `None` if it rejects the input.
    pub host: Option<Host>,
}

/// An input read every way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parsed {
    /// How the input is written.
    pub notation: Notation,
    /// The host that would be contacted (the primary reading).
    pub host: Host,
    /// The IPv6 zone (`%eth0`), when there is one.
    pub zone: Option<String>,
    /// The port, when there is one.
    pub port: Option<u16>,
    /// The URL scheme, when the input is a URL.
    pub scheme: Option<String>,
    /// Every parser's reading, including those that reject the input.
    pub readings: Vec<Reading>,
}

impl Parsed {
    /// Readings whose host differs from the primary one (rejections excluded).
    pub fn disagreements(&self) -> impl Iterator<Item = &Reading> {
        self.readings
            .iter()
            .filter(|r| r.host.as_ref().is_some_and(|h| *h != self.host))
    }
}

/// Why an input is not an address, host or URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotationError {
    /// Nothing was given.
    #[error("empty input")]
    Empty,
    /// No parser accepts it.
    #[error("'{0}' is not an address, host name or URL that any parser accepts")]
    Unparsable(String),
    #[error("URL '{input}' does not parse: {reason}")]
    /// A URL the WHATWG parser rejects.
    Url {
        /// The input as given.
        input: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A URL without a host (`file:///x`).
    #[error("URL '{0}' has no host")]
    NoHost(String),
    #[error(
        "'{input}' is neither an address nor a host name: {why} (host names are letters, digits, '-' and '_' in dot-separated labels, RFC 1123 section 2.1)"
    )]
    /// Neither an address nor a host name (RFC 1123 section 2.1).
    NotHostName {
        /// The input as given.
        input: String,
        /// What breaks the host name rules.
        why: String,
    },
}

/// Why `name` (as the WHATWG host parser left it: lower case, IDNs as `xn--` labels) cannot be
/// a DNS host name: RFC 1123 §2.1 labels of letters, digits and hyphens, at most 63 octets
/// each and 253 in all; `_` is let through, as resolvers do for service labels. None if it
/// can be one. The WHATWG parser alone takes `not-an-address!!` as a domain, which no resolver
/// would; such input is reported as what it is rather than looked up.
pub fn host_name_problem(name: &str) -> Option<String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Some("it is empty".to_string());
    }
    if trimmed.len() > 253 {
        return Some(format!(
            "it is {} characters long (at most 253)",
            trimmed.len()
        ));
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Some("it has an empty label ('..')".to_string());
        }
        if label.len() > 63 {
            return Some(format!(
                "a label is {} characters long (at most 63)",
                label.len()
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Some(format!("{bad:?} is not allowed in a host name"));
        }
    }
    None
}

/// Strict dotted decimal (inet_pton): exactly what `std` accepts.
pub fn parse_strict(text: &str) -> Option<IpAddr> {
    text.parse().ok()
}

/// glibc `inet_aton`: 1-4 parts separated by `.`; each part decimal, octal (leading `0`) or hex
/// (`0x`); the last part fills the remaining bytes; text after ASCII whitespace is ignored.
pub fn parse_inet_aton(text: &str) -> Option<Ipv4Addr> {
    let text = match text.find(|c: char| c.is_ascii_whitespace()) {
        Some(0) => return None,
        Some(end) => &text[..end],
        None => text,
    };
    parse_parts(text, |part| {
        let bytes = part.as_bytes();
        if bytes.first().is_none_or(|b| !b.is_ascii_digit()) {
            return None;
        }
        if bytes.len() >= 2 && bytes[0] == b'0' && (bytes[1] | 0x20) == b'x' {
            // glibc accepts a bare "0x" as 0.
            let digits = &part[2..];
            return if digits.is_empty() {
                Some(0)
            } else {
                parse_radix(digits, 16)
            };
        }
        if bytes[0] == b'0' {
            return parse_radix(part, 8);
        }
        parse_radix(part, 10)
    })
}

/// Every part decimal, leading zeros ignored: how Java's `InetAddress` and npm `netmask` before
/// 2.0.1 read `0177.0.0.1` (as 177.0.0.1).
pub fn parse_decimal_parts(text: &str) -> Option<Ipv4Addr> {
    parse_parts(text, |part| parse_radix(part, 10))
}

fn parse_radix(digits: &str, radix: u32) -> Option<u64> {
    if digits.is_empty() || digits.len() > 40 {
        return None;
    }
    let mut value: u64 = 0;
    for c in digits.chars() {
        let digit = c.to_digit(radix)?;
        value = value.checked_mul(radix.into())?.checked_add(digit.into())?;
        if value > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(value)
}

fn parse_parts(text: &str, part: impl Fn(&str) -> Option<u64>) -> Option<Ipv4Addr> {
    let mut values = [0u64; 4];
    let mut count = 0;
    for piece in text.split('.') {
        if count == 4 {
            return None;
        }
        values[count] = part(piece)?;
        count += 1;
    }
    let (head, last) = values[..count].split_at(count - 1);
    if head.iter().any(|&v| v > 0xff) {
        return None;
    }
    let last = last[0];
    let room = 8 * (5 - count as u32); // bits the last part may fill
    if room < 32 && last >= (1u64 << room) {
        return None;
    }
    let mut bits: u64 = 0;
    for (index, &v) in head.iter().enumerate() {
        bits |= v << (24 - 8 * index);
    }
    Some(Ipv4Addr::from_bits((bits | last) as u32))
}

/// The WHATWG URL Standard's reading of a bare host (special scheme), via the `url` crate.
pub fn parse_whatwg_host(text: &str) -> Option<Host> {
    match url::Host::parse(text).ok()? {
        url::Host::Ipv4(v4) => Some(Host::Ip(IpAddr::V4(v4))),
        url::Host::Ipv6(v6) => Some(Host::Ip(IpAddr::V6(v6))),
        url::Host::Domain(name) => Some(Host::Name(name)),
    }
}

fn looks_like_url(text: &str) -> bool {
    let Some(colon) = text.find(':') else {
        return false;
    };
    let (scheme, rest) = text.split_at(colon);
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && (rest[1..].starts_with('/') || rest[1..].starts_with('\\'))
}

/// Reads `input` every way and picks the host that would be contacted.
pub fn parse(input: &str) -> Result<Parsed, NotationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(NotationError::Empty);
    }
    if looks_like_url(text) {
        return parse_url(text);
    }
    if let Some(parsed) = parse_bracketed(text) {
        return Ok(parsed);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        let notation = if ip.is_ipv4() {
            Notation::Ipv4
        } else {
            Notation::Ipv6
        };
        return Ok(Parsed {
            notation,
            host: Host::Ip(ip),
            zone: None,
            port: None,
            scheme: None,
            readings: host_readings(text),
        });
    }
    if let Some((address, zone)) = text.split_once('%')
        && let Ok(v6) = address.parse::<Ipv6Addr>()
        && !zone.is_empty()
    {
        return Ok(Parsed {
            notation: Notation::Ipv6Zone,
            host: Host::Ip(IpAddr::V6(v6)),
            zone: Some(zone.to_string()),
            port: None,
            scheme: None,
            readings: vec![
                reading(Parser::Strict, Some(Host::Ip(IpAddr::V6(v6)))),
                reading(Parser::Whatwg, None),
            ],
        });
    }
    if let Some((host, port)) = text.rsplit_once(':')
        && !host.contains(':')
        && let Ok(port) = port.parse::<u16>()
        && let Ok(mut parsed) = parse(host)
        && parsed.port.is_none()
    {
        parsed.notation = Notation::HostPort;
        parsed.port = Some(port);
        return Ok(parsed);
    }
    let readings = host_readings(text);
    let primary = [Parser::InetAton, Parser::Whatwg]
        .iter()
        .find_map(|p| readings.iter().find(|r| r.parser == *p)?.host.clone());
    let Some(host) = primary else {
        return Err(NotationError::Unparsable(text.to_string()));
    };
    if let Host::Name(name) = &host
        && let Some(why) = host_name_problem(name)
    {
        return Err(NotationError::NotHostName {
            input: text.to_string(),
            why,
        });
    }
    let notation = match (&host, readings_for(&readings, Parser::InetAton)) {
        (Host::Ip(_), Some(_)) => Notation::Ipv4InetAton,
        (Host::Ip(_), None) => Notation::UrlHost,
        (Host::Name(name), _) if name == text => Notation::Name,
        (Host::Name(_), _) => Notation::UrlHost,
    };
    Ok(Parsed {
        notation,
        host,
        zone: None,
        port: None,
        scheme: None,
        readings,
    })
}

fn reading(parser: Parser, host: Option<Host>) -> Reading {
    Reading { parser, host }
}

fn readings_for(readings: &[Reading], parser: Parser) -> Option<&Host> {
    readings.iter().find(|r| r.parser == parser)?.host.as_ref()
}

/// The readings of a bare host by every host parser.
fn host_readings(text: &str) -> Vec<Reading> {
    let v4 = |ip: Option<Ipv4Addr>| ip.map(|ip| Host::Ip(IpAddr::V4(ip)));
    let strict = parse_strict(text).map(Host::Ip);
    let inet_aton = v4(parse_inet_aton(text)).or_else(|| {
        // getaddrinfo also takes IPv6 text; inet_aton alone would not.
        text.parse::<Ipv6Addr>()
            .ok()
            .map(|v6| Host::Ip(IpAddr::V6(v6)))
    });
    let whatwg = match text.parse::<Ipv6Addr>() {
        // A URL carries IPv6 in brackets; read it the way it would appear there.
        Ok(_) => parse_whatwg_host(&format!("[{text}]")),
        Err(_) => parse_whatwg_host(text),
    };
    let decimal = v4(parse_decimal_parts(text)).or_else(|| strict.clone());
    vec![
        reading(Parser::Strict, strict),
        reading(Parser::InetAton, inet_aton),
        reading(Parser::Whatwg, whatwg),
        reading(Parser::Decimal, decimal),
    ]
}

/// `[v6]`, `[v6]:port`, `[v6%zone]`, `[v6%25zone]:port`.
fn parse_bracketed(text: &str) -> Option<Parsed> {
    let inner_end = text.find(']')?;
    let inner = text.strip_prefix('[')?.get(..inner_end - 1)?;
    let rest = &text[inner_end + 1..];
    let port = match rest {
        "" => None,
        _ => Some(rest.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    let (address, zone) = match inner.split_once('%') {
        Some((address, zone)) => {
            let zone = zone.strip_prefix("25").unwrap_or(zone);
            (address, (!zone.is_empty()).then(|| zone.to_string()))
        }
        None => (inner, None),
    };
    let v6: Ipv6Addr = address.parse().ok()?;
    let host = Host::Ip(IpAddr::V6(v6));
    let whatwg = if zone.is_some() {
        None // the WHATWG URL Standard rejects zone ids
    } else {
        parse_whatwg_host(&format!("[{inner}]"))
    };
    Some(Parsed {
        notation: if zone.is_some() {
            Notation::Ipv6Zone
        } else {
            Notation::Ipv6Bracketed
        },
        host: host.clone(),
        zone,
        port,
        scheme: None,
        readings: vec![
            reading(Parser::Strict, Some(host)),
            reading(Parser::Whatwg, whatwg),
        ],
    })
}

/// A whole URL: WHATWG's host is primary (it is what browsers and the `url` crate contact); the
/// RFC 3986 split is reported beside it because validators built on it read another host when
/// userinfo, fragments or backslashes are crafted.
fn parse_url(text: &str) -> Result<Parsed, NotationError> {
    let rfc3986 = rfc3986_host(text);
    let rfc3986_reading = rfc3986.as_ref().and_then(|(host, _)| {
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let address = inner.split('%').next().unwrap_or(inner);
            return address
                .parse::<Ipv6Addr>()
                .ok()
                .map(|v6| Host::Ip(v6.into()));
        }
        // The split host goes to getaddrinfo (inet_aton forms) or, as a name, through IDNA.
        Some(match parse_inet_aton(host) {
            Some(v4) => Host::Ip(v4.into()),
            None => match url::Host::parse(host) {
                Ok(url::Host::Domain(name)) => Host::Name(name),
                _ => Host::Name(host.to_ascii_lowercase()),
            },
        })
    });
    let scheme = text
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match url::Url::parse(text) {
        Ok(url) => {
            let host = match url.host() {
                Some(url::Host::Ipv4(v4)) => Host::Ip(v4.into()),
                Some(url::Host::Ipv6(v6)) => Host::Ip(v6.into()),
                Some(url::Host::Domain(name)) => {
                    // Non-special schemes keep the host opaque; read it as a host would be.
                    match parse_whatwg_host(name) {
                        Some(host) => host,
                        None => Host::Name(name.to_string()),
                    }
                }
                None => return Err(NotationError::NoHost(text.to_string())),
            };
            Ok(Parsed {
                notation: Notation::Url,
                host: host.clone(),
                zone: None,
                port: url.port_or_known_default(),
                scheme,
                readings: vec![
                    reading(Parser::Whatwg, Some(host)),
                    reading(Parser::Rfc3986, rfc3986_reading),
                ],
            })
        }
        Err(error) => {
            // WHATWG rejects zone ids; RFC 6874 allows `[fe80::1%25eth0]`. Read those ourselves.
            if let Some((host, port)) = &rfc3986
                && let Some(mut parsed) = parse_bracketed(host)
                && parsed.zone.is_some()
            {
                parsed.notation = Notation::Url;
                parsed.port = *port;
                parsed.scheme = scheme;
                parsed
                    .readings
                    .push(reading(Parser::Rfc3986, rfc3986_reading));
                return Ok(parsed);
            }
            Err(NotationError::Url {
                input: text.to_string(),
                reason: error.to_string(),
            })
        }
    }
}

/// The host (and port) an RFC 3986 parser finds: after `scheme://`, up to `/`, `?` or `#`, after
/// the last `@`. Backslashes are ordinary characters here (unlike WHATWG).
fn rfc3986_host(text: &str) -> Option<(String, Option<u16>)> {
    let (_, rest) = text.split_once(':')?;
    let rest = rest.strip_prefix("//")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if host_port.starts_with('[') {
        match host_port.find(']') {
            Some(end) => (&host_port[..=end], host_port[end + 1..].strip_prefix(':')),
            None => (host_port, None),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port = port.and_then(|p| p.parse().ok());
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// `localhost`, `localhost.` and `*.localhost` (RFC 6761 §6.3): loopback by name, never sent to
/// DNS. Case-insensitive.
pub fn is_localhost_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let lower_ends = |suffix: &str| {
        name.len() >= suffix.len()
            && name.is_char_boundary(name.len() - suffix.len())
            && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    name.eq_ignore_ascii_case("localhost") || lower_ends(".localhost")
}
