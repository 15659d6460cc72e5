//! Three namespaces on one kernel, joined by two veth pairs: a sender in `a` (10.77.1.1 on
//! `sa`), a router in `r` (`ra` 10.77.1.2 towards `a`, `rb` 10.77.2.2 towards `b`) and a
//! reflector in `b` (10.77.2.1 on `sb`). What impairs the path (netem, an nftables rule, a
//! delay line) sits in the router, after the sender's transmit timestamp, as a network would.
//! One kernel, so one clock.

use std::process::Command;

use super::Netns;

pub struct RoutedPath {
    pub a: Netns,
    pub r: Netns,
    pub b: Netns,
}

impl RoutedPath {
    /// `None`, with the reason printed, without root or iproute2.
    pub fn create(tag: &str) -> Option<RoutedPath> {
        let a = Netns::create("stampa", tag)?;
        let r = Netns::create("stampr", tag)?;
        let b = Netns::create("stampb", tag)?;
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().expect("ip");
            assert!(status.success(), "ip {args:?}");
        };
        ip(&[
            "link", "add", "sa", "netns", &a.name, "type", "veth", "peer", "name", "ra", "netns",
            &r.name,
        ]);
        ip(&[
            "link", "add", "sb", "netns", &b.name, "type", "veth", "peer", "name", "rb", "netns",
            &r.name,
        ]);
        for (ns, dev, address) in [
            (&a, "sa", "10.77.1.1/24"),
            (&r, "ra", "10.77.1.2/24"),
            (&r, "rb", "10.77.2.2/24"),
            (&b, "sb", "10.77.2.1/24"),
        ] {
            ns.exec("ip", &["addr", "add", address, "dev", dev]);
            ns.exec("ip", &["link", "set", dev, "up"]);
            ns.exec("ip", &["link", "set", "lo", "up"]);
        }
        a.exec("ip", &["route", "add", "default", "via", "10.77.1.2"]);
        b.exec("ip", &["route", "add", "default", "via", "10.77.2.2"]);
        r.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        Some(RoutedPath { a, r, b })
    }
}
