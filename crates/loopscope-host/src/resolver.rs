//! How `localhost` and `*.localhost` resolve: through the system resolver (getaddrinfo), or
//! from a hosts(5) file given on the command line, ordered the way glibc orders answers.

use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Where names are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSource {
    /// getaddrinfo(3): nsswitch, /etc/hosts, DNS, whatever the system does.
    System,
    /// Only this hosts(5) file.
    HostsFile(PathBuf),
}

impl NameSource {
    /// The hosts(5) file these names come from: the one given, or the system's.
    pub fn hosts_file(&self) -> &Path {
        match self {
            NameSource::System => Path::new("/etc/hosts"),
            NameSource::HostsFile(path) => path,
        }
    }

    /// In words, for findings: `system resolver` or the hosts file's path.
    pub fn describe(&self) -> String {
        match self {
            NameSource::System => "system resolver".to_string(),
            NameSource::HostsFile(path) => path.display().to_string(),
        }
    }
}

/// The answers for one name, in the order a client would try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The addresses, in the order a client would try them.
    Answers(Vec<IpAddr>),
    /// No such name; the text says what the resolver answered.
    NotFound(String),
    /// The resolver did not answer in time.
    TimedOut,
}

/// Resolves `name` from `source`; the system resolver gets `timeout` (it may go to DNS).
pub(crate) fn lookup(source: &NameSource, name: &str, timeout: Duration) -> Lookup {
    match source {
        NameSource::System => system_lookup(name, timeout),
        NameSource::HostsFile(path) => match std::fs::read_to_string(path) {
            Ok(text) => {
                let answers = order_like_getaddrinfo(hosts_file_lookup(&text, name));
                if answers.is_empty() {
                    Lookup::NotFound(format!("no entry for {name} in {}", path.display()))
                } else {
                    Lookup::Answers(answers)
                }
            }
            Err(error) => Lookup::NotFound(format!("cannot read {}: {error}", path.display())),
        },
    }
}

fn system_lookup(name: &str, timeout: Duration) -> Lookup {
    let (sender, receiver) = mpsc::channel();
    let owned = name.to_string();
    // getaddrinfo cannot be cancelled; a thread lets us stop waiting for a slow DNS.
    std::thread::spawn(move || {
        let result = (owned.as_str(), 0u16).to_socket_addrs().map(|addresses| {
            let mut seen = Vec::new();
            for address in addresses {
                if !seen.contains(&address.ip()) {
                    seen.push(address.ip());
                }
            }
            seen
        });
        let _ = sender.send(result);
    });
    match receiver.recv_timeout(timeout) {
        Ok(Ok(answers)) if !answers.is_empty() => Lookup::Answers(answers),
        Ok(Ok(_)) => Lookup::NotFound("no addresses".into()),
        Ok(Err(error)) => Lookup::NotFound(error.to_string()),
        Err(_) => Lookup::TimedOut,
    }
}

/// Addresses for `name` in a hosts(5) file, in file order, without repeats. Names compare
/// without case; `#` starts a comment; zone suffixes (`fe80::1%eth0`) are dropped.
pub(crate) fn hosts_file_lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(address) = fields.next() else {
            continue;
        };
        let address = address.split('%').next().unwrap_or(address);
        let Ok(address) = address.parse::<IpAddr>() else {
            continue;
        };
        if fields.any(|alias| alias.eq_ignore_ascii_case(name)) && !found.contains(&address) {
            found.push(address);
        }
    }
    found
}

/// glibc sorts getaddrinfo's answers by RFC 6724. For the addresses a hosts file gives
/// `localhost`, two rules decide: rule 1 (unusable destinations last: no route or source
/// address, tested with a UDP connect as glibc does) and rule 6 (higher precedence first in
/// the default policy table: ::1 50, other IPv6 40, IPv4 35). The sort is stable.
pub(crate) fn order_like_getaddrinfo(mut addresses: Vec<IpAddr>) -> Vec<IpAddr> {
    addresses.sort_by_key(|address| (!usable(*address), std::cmp::Reverse(precedence(*address))));
    addresses
}

fn usable(address: IpAddr) -> bool {
    let bind: IpAddr = match address {
        IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    UdpSocket::bind((bind, 0))
        .and_then(|socket| socket.connect((address, 9)))
        .is_ok()
}

/// RFC 6724 section 2.1 default policy table precedence.
pub(crate) fn precedence(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 35,
        IpAddr::V6(ip) => {
            let segments = ip.segments();
            if ip.is_loopback() {
                50
            } else if ip.to_ipv4_mapped().is_some() {
                35
            } else if segments[0] == 0x2002 {
                30
            } else if segments[0] == 0x2001 && segments[1] == 0 {
                5
            } else if segments[0] & 0xfe00 == 0xfc00 {
                3
            } else if segments[..6] == [0; 6]
                || segments[0] == 0x3ffe
                || segments[0] & 0xffc0 == 0xfec0
            {
                1
            } else {
                40
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const DEBIAN: &str = "127.0.0.1\tlocalhost\n127.0.1.1\tbox.example\tbox\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\n";

    #[test]
    fn hosts_file_entries_in_file_order() {
        let v4: IpAddr = Ipv4Addr::LOCALHOST.into();
        let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
        assert_eq!(hosts_file_lookup(DEBIAN, "localhost"), vec![v4, v6]);
        assert_eq!(hosts_file_lookup(DEBIAN, "LOCALHOST"), vec![v4, v6]);
        assert_eq!(hosts_file_lookup(DEBIAN, "ip6-loopback"), vec![v6]);
        assert_eq!(
            hosts_file_lookup(DEBIAN, "box"),
            vec![IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1))]
        );
        assert!(hosts_file_lookup(DEBIAN, "allnodes").is_empty());
        assert!(hosts_file_lookup("# localhost\n127.0.0.1 # localhost\n", "localhost").is_empty());
        assert_eq!(
            hosts_file_lookup("fe80::1%lo0 localhost\nnot-an-ip localhost\n", "localhost"),
            vec!["fe80::1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn precedence_follows_the_rfc_6724_table() {
        let p = |text: &str| precedence(text.parse().unwrap());
        assert_eq!(p("::1"), 50);
        assert_eq!(p("2001:db8::1"), 40);
        assert_eq!(p("127.0.0.1"), 35);
        assert_eq!(p("::ffff:127.0.0.1"), 35);
        assert_eq!(p("2002::1"), 30);
        assert_eq!(p("2001::1"), 5);
        assert_eq!(p("fd00::1"), 3);
        assert_eq!(p("fec0::1"), 1);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_hosts_files_never_panic(text in "(?s).{0,400}", name in "[a-zA-Z.]{0,12}") {
            let found = hosts_file_lookup(&text, &name);
            let ordered = order_like_getaddrinfo(found.clone());
            proptest::prop_assert_eq!(found.len(), ordered.len());
        }
    }
}
