//! Endpoint strings: `scheme:rest?key=value&key=value`.
//!
//! Written by hand rather than with the `url` crate because most of our endpoints are not URLs
//! (`loop:`, `exec:ssh host cat`, `serial:/dev/ttyUSB0?baud=115200`) and WHATWG parsing would
//! percent-encode and normalise the command lines and device paths we must keep verbatim.

use std::str::FromStr;

/// An endpoint string taken apart: `scheme:target?key=value&...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Lower-case scheme without the colon: `loop`, `tcp`, `serial`.
    pub scheme: String,
    /// What follows `scheme:` (and `//` when present), up to the query.
    pub target: String,
    /// `key=value` options after `?`, in the order given.
    pub options: Vec<(String, String)>,
    /// The string as the user wrote it.
    pub original: String,
}

/// What is wrong with an endpoint string; each says what would be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "malformed endpoint '{0}': expected SCHEME:TARGET[?key=value&...] such as loop:, sim:?ber=1e-6, exec:cat, tcp://127.0.0.1:7007"
    )]
    /// Not `SCHEME:TARGET[?OPTIONS]`.
    Malformed(String),
    /// A bare address or host name, as typed to ping(8): no link says that alone.
    #[error(
        "'{text}' names a host, not a link: say which, such as icmp://{url_host} or tcp://{url_host}:PORT"
    )]
    BareHost {
        /// The text as given.
        text: String,
        /// The host as it goes into a URL (`[::1]` for IPv6).
        url_host: String,
    },
    /// An option the scheme does not take (a typo must not pass silently).
    #[error("endpoint '{endpoint}': unknown option '{key}' (known: {known})")]
    UnknownOption {
        /// The endpoint as given.
        endpoint: String,
        /// The option.
        key: String,
        /// The options the scheme takes.
        known: String,
    },
    /// An option whose value does not fit.
    #[error("endpoint '{endpoint}': option {key}={value}: {why}")]
    BadValue {
        /// The endpoint as given.
        endpoint: String,
        /// The option.
        key: String,
        /// Its value.
        value: String,
        /// Why it does not fit.
        why: String,
    },
    #[error("endpoint '{endpoint}': {why}")]
    /// The endpoint as a whole does not fit the scheme.
    Invalid {
        /// The endpoint as given.
        endpoint: String,
        /// Why.
        why: String,
    },
}

impl Endpoint {
    /// Takes `text` apart; what the scheme does with the parts is the scheme's business.
    pub fn parse(text: &str) -> Result<Self, EndpointError> {
        if let Some(url_host) = bare_host(text) {
            return Err(EndpointError::BareHost {
                text: text.to_string(),
                url_host,
            });
        }
        let original = text.to_string();
        let (scheme, rest) = text
            .split_once(':')
            .ok_or_else(|| EndpointError::Malformed(original.clone()))?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
        {
            return Err(EndpointError::Malformed(original));
        }
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let scheme = scheme.to_ascii_lowercase();
        // exec: takes a command line, which may itself contain '?': no options there.
        let (target, query) = if scheme == "exec" {
            (rest, None)
        } else {
            match rest.rsplit_once('?') {
                Some((target, query)) => (target, Some(query)),
                None => (rest, None),
            }
        };
        let mut options = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key.is_empty() {
                return Err(EndpointError::Malformed(original));
            }
            options.push((key.to_ascii_lowercase(), value.to_string()));
        }
        Ok(Endpoint {
            scheme,
            target: target.to_string(),
            options,
            original,
        })
    }

    /// The last value given for `key`.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Parses option `key` when present.
    pub fn parsed_option<T: FromStr>(&self, key: &str) -> Result<Option<T>, EndpointError>
    where
        T::Err: std::fmt::Display,
    {
        match self.option(key) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|e: T::Err| self.bad_value(key, value, e.to_string())),
        }
    }

    /// Fails on any option not in `known`, so typos do not pass silently.
    pub fn reject_unknown_options(&self, known: &[&str]) -> Result<(), EndpointError> {
        match self
            .options
            .iter()
            .find(|(key, _)| !known.contains(&key.as_str()))
        {
            None => Ok(()),
            Some((key, _)) => Err(EndpointError::UnknownOption {
                endpoint: self.original.clone(),
                key: key.clone(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            }),
        }
    }

    /// An error saying `key=value` does not fit, and why.
    pub fn bad_value(&self, key: &str, value: &str, why: impl Into<String>) -> EndpointError {
        EndpointError::BadValue {
            endpoint: self.original.clone(),
            key: key.to_string(),
            value: value.to_string(),
            why: why.into(),
        }
    }

    /// An error saying the endpoint as a whole does not fit, and why.
    pub fn invalid(&self, why: impl Into<String>) -> EndpointError {
        EndpointError::Invalid {
            endpoint: self.original.clone(),
            why: why.into(),
        }
    }
}

/// Why an address with a zone (`fe80::1%veth0`) does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    /// Not an IP address.
    #[error("'{0}' is not an IP address")]
    NotAnAddress(String),
    /// A zone on an IPv4 address, which has none.
    #[error("'{0}': only IPv6 addresses take a %zone")]
    ZoneOnIpv4(String),
    /// The zone names no interface of this host.
    #[error(
        "'{text}': no interface '{zone}' here (give its name, as in fe80::1%eth0, or its index)"
    )]
    UnknownZone {
        /// The address as given.
        text: String,
        /// The zone.
        zone: String,
    },
}

/// An IP address with an optional zone (RFC 4007 §11: `fe80::1%veth0`, or the interface
/// index, `fe80::1%3`), and the zone's interface index (0 without one). RFC 6874's `%25`
/// is not taken: `%25` would also be interface 25.
pub fn parse_zoned_ip(text: &str) -> Result<(std::net::IpAddr, u32), ZoneError> {
    let (address, zone) = match text.split_once('%') {
        Some((address, zone)) => (address, Some(zone)),
        None => (text, None),
    };
    let ip: std::net::IpAddr = address
        .parse()
        .map_err(|_| ZoneError::NotAnAddress(text.to_string()))?;
    let Some(zone) = zone else {
        return Ok((ip, 0));
    };
    if ip.is_ipv4() {
        return Err(ZoneError::ZoneOnIpv4(text.to_string()));
    }
    let unknown = || ZoneError::UnknownZone {
        text: text.to_string(),
        zone: zone.to_string(),
    };
    let index = match zone.parse::<u32>() {
        Ok(index) if index > 0 => index,
        Ok(_) => return Err(unknown()),
        Err(_) => loopscope_sys::interface_index(zone).map_err(|_| unknown())?,
    };
    Ok((ip, index))
}

/// `text` as a URL host when it is an IP address (`127.0.0.1`, `::1`, `[::1]`) or a host name
/// (`localhost`, `example.org`) rather than an endpoint; `None` otherwise. A single word
/// without a dot is left alone: `loop` is more likely a scheme missing its colon.
fn bare_host(text: &str) -> Option<String> {
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(text);
    match unbracketed.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => return Some(format!("[{ip}]")),
        Ok(std::net::IpAddr::V4(ip)) => return Some(ip.to_string()),
        Err(_) => {}
    }
    let name_like = !text.is_empty()
        && !text.starts_with(['-', '.'])
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    (name_like && (text.contains('.') || text.eq_ignore_ascii_case("localhost")))
        .then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_scheme_target_and_options() {
        let e = Endpoint::parse("serial:/dev/ttyUSB0?baud=115200&parity=even").unwrap();
        assert_eq!(e.scheme, "serial");
        assert_eq!(e.target, "/dev/ttyUSB0");
        assert_eq!(e.option("baud"), Some("115200"));
        assert_eq!(e.option("parity"), Some("even"));
        let e = Endpoint::parse("tcp://[::1]:7?bind=::1").unwrap();
        assert_eq!((e.scheme.as_str(), e.target.as_str()), ("tcp", "[::1]:7"));
        assert_eq!(e.option("bind"), Some("::1"));
        let e = Endpoint::parse("sim:?ber=1e-6&seed=3").unwrap();
        assert_eq!(e.target, "");
        assert_eq!(e.parsed_option::<f64>("ber").unwrap(), Some(1e-6));
    }

    #[test]
    fn exec_keeps_its_command_line_verbatim() {
        let e = Endpoint::parse("exec:ssh host 'cat ?x'").unwrap();
        assert_eq!(e.target, "ssh host 'cat ?x'");
        assert!(e.options.is_empty());
    }

    #[test]
    fn a_bare_host_is_named_as_such() {
        for (text, url_host) in [
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "[::1]"),
            ("[::1]", "[::1]"),
            ("fe80::1", "[fe80::1]"),
            ("localhost", "localhost"),
            ("host.example", "host.example"),
        ] {
            let error = Endpoint::parse(text).unwrap_err();
            assert_eq!(
                error,
                EndpointError::BareHost {
                    text: text.into(),
                    url_host: url_host.into()
                }
            );
            assert!(
                error
                    .to_string()
                    .contains(&format!("icmp://{url_host} or tcp://{url_host}:PORT")),
                "{error}"
            );
        }
        // A scheme without its colon is not taken for a host.
        assert!(matches!(
            Endpoint::parse("loop"),
            Err(EndpointError::Malformed(_))
        ));
        assert!(Endpoint::parse("tcp://127.0.0.1:7").is_ok());
    }

    #[test]
    fn a_zone_names_an_interface_by_name_or_index() {
        let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(parse_zoned_ip("fe80::1"), Ok((ip("fe80::1"), 0)));
        assert_eq!(parse_zoned_ip("192.0.2.1"), Ok((ip("192.0.2.1"), 0)));
        // `lo` is interface 1 in every network namespace.
        assert_eq!(parse_zoned_ip("fe80::1%lo"), Ok((ip("fe80::1"), 1)));
        assert_eq!(parse_zoned_ip("fe80::1%7"), Ok((ip("fe80::1"), 7)));
        assert_eq!(
            parse_zoned_ip("fe80::1%no-such-if0"),
            Err(ZoneError::UnknownZone {
                text: "fe80::1%no-such-if0".into(),
                zone: "no-such-if0".into()
            })
        );
        assert_eq!(
            parse_zoned_ip("fe80::1%0"),
            Err(ZoneError::UnknownZone {
                text: "fe80::1%0".into(),
                zone: "0".into()
            })
        );
        assert_eq!(
            parse_zoned_ip("10.0.0.1%lo"),
            Err(ZoneError::ZoneOnIpv4("10.0.0.1%lo".into()))
        );
        assert_eq!(
            parse_zoned_ip("fe80::x%lo"),
            Err(ZoneError::NotAnAddress("fe80::x%lo".into()))
        );
        // The endpoint itself keeps the zone in its target.
        let e = Endpoint::parse("udp://[fe80::1%veth0]:3784").unwrap();
        assert_eq!(e.target, "[fe80::1%veth0]:3784");
    }

    #[test]
    fn rejects_malformed_and_unknown() {
        assert!(Endpoint::parse("nocolon").is_err());
        assert!(Endpoint::parse(":x").is_err());
        assert!(Endpoint::parse("1abc:x").is_err());
        let e = Endpoint::parse("loop:?bogus=1").unwrap();
        let err = e.reject_unknown_options(&[]).unwrap_err().to_string();
        assert!(err.contains("unknown option 'bogus'"), "{err}");
        let e = Endpoint::parse("sim:?ber=abc").unwrap();
        assert!(e.parsed_option::<f64>("ber").is_err());
    }
}
