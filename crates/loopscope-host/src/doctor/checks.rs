//! The checks, in the order they run. Adding one: write `fn(&mut Probe) -> Finding` and list
//! it in [`CHECKS`].

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use loopscope_pattern::{PatternKind, PatternSpec};
use loopscope_report::comma_list;
use loopscope_sys::{RouteKind, TABLE_LOCAL};
use serde_json::json;

use super::probe::{IcmpFailure, Probe, ProbeError, Snapshot, V4, V6};
use super::round_trips::{self, RoundTrip};
use super::{Check, Finding, Remedy, Repair, Stage};
use crate::firewall::{self, Protocol, Reach};
use crate::resolver::{self, Lookup, NameSource};
use crate::{environment, proc_net, sysctl};

/// Every check `doctor` runs, in the order it runs them: cheap facts first (namespace,
/// interfaces, addresses), then the round trips that depend on them, so a broken `lo` is
/// reported as such and not as a dozen unexplained timeouts.
pub static CHECKS: &[Check] = &[
    Check {
        name: "namespace",
        about: "which network namespace and container this runs in",
        run: namespace,
    },
    Check {
        name: "lo_exists",
        about: "the loopback interface exists (netlink)",
        run: lo_exists,
    },
    Check {
        name: "lo_up",
        about: "lo is administratively UP",
        run: lo_up,
    },
    Check {
        name: "lo_ipv4",
        about: "lo carries 127.0.0.1/8",
        run: lo_ipv4,
    },
    Check {
        name: "lo_ipv6",
        about: "lo carries ::1/128",
        run: lo_ipv6,
    },
    Check {
        name: "lo_mtu",
        about: "lo's MTU",
        run: lo_mtu,
    },
    Check {
        name: "route_local_v4",
        about: "local route for 127.0.0.0/8 in the local table",
        run: route_local_v4,
    },
    Check {
        name: "route_local_v6",
        about: "local route for ::1 in the local table",
        run: route_local_v6,
    },
    Check {
        name: "route_localnet",
        about: "net.ipv4.conf.*.route_localnet (127/8 routable from outside?)",
        run: route_localnet,
    },
    Check {
        name: "rp_filter",
        about: "net.ipv4.conf.{all,lo}.rp_filter, explained",
        run: rp_filter,
    },
    Check {
        name: "disable_ipv6",
        about: "net.ipv6.conf.lo.disable_ipv6",
        run: disable_ipv6,
    },
    Check {
        name: "ping_group_range",
        about: "net.ipv4.ping_group_range: who may ping without privilege",
        run: ping_group_range,
    },
    Check {
        name: "icmp_v4",
        about: "ICMP echo to 127.0.0.1 answered",
        run: icmp_v4,
    },
    Check {
        name: "icmp_v6",
        about: "ICMPv6 echo to ::1 answered",
        run: icmp_v6,
    },
    Check {
        name: "tcp_v4",
        about: "TCP round trip on 127.0.0.1 through an in-process reflector",
        run: tcp_v4,
    },
    Check {
        name: "tcp_v6",
        about: "TCP round trip on ::1 through an in-process reflector",
        run: tcp_v6,
    },
    Check {
        name: "udp_v4",
        about: "UDP round trip on 127.0.0.1 through an in-process reflector",
        run: udp_v4,
    },
    Check {
        name: "udp_v6",
        about: "UDP round trip on ::1 through an in-process reflector",
        run: udp_v6,
    },
    Check {
        name: "alias_127",
        about: "a random address in 127.0.0.0/8 answers (not only 127.0.0.1)",
        run: alias_127,
    },
    Check {
        name: "localhost",
        about: "`localhost` resolves to loopback only, both families",
        run: localhost,
    },
    Check {
        name: "localhost_order",
        about: "the first answer for `localhost` is a family that answers (Node 17 ECONNREFUSED ::1)",
        run: localhost_order,
    },
    Check {
        name: "localhost_subdomain",
        about: "`*.localhost` (RFC 6761) never leaves the host",
        run: localhost_subdomain,
    },
    Check {
        name: "firewall",
        about: "nftables/iptables rules that drop or reject loopback traffic",
        run: firewall_rules,
    },
    Check {
        name: "bert",
        about: "a short PRBS31 bit-error test through a TCP loop on 127.0.0.1",
        run: bert,
    },
    Check {
        name: "latency",
        about: "TCP round-trip latency on 127.0.0.1 (p50, p99)",
        run: latency,
    },
];

const NO_IPV6: &str = "this kernel has no IPv6 (booted with ipv6.disable=1 or built without it)";

fn namespace(_: &mut Probe) -> Finding {
    let found = environment::inspect();
    let netns = match (found.separate_netns, &found.netns_name) {
        (_, Some(name)) => format!("network namespace '{name}'"),
        (Some(true), None) => "a network namespace other than PID 1's".to_string(),
        (Some(false), None) => "the host's network namespace (PID 1's)".to_string(),
        (None, None) => "network namespace unknown (cannot read /proc/1/ns/net)".to_string(),
    };
    let container = if found.container_evidence.is_empty() {
        "no signs of a container".to_string()
    } else {
        format!("in a container ({})", found.container_evidence.join(", "))
    };
    Finding::pass(format!("{netns}; {container}"))
        .with("netns", found.netns_id.unwrap_or_default())
        .with(
            "netns_name",
            found
                .netns_name
                .map(serde_json::Value::from)
                .unwrap_or_default(),
        )
        .with(
            "separate_netns",
            found
                .separate_netns
                .map(serde_json::Value::from)
                .unwrap_or_default(),
        )
        .with("container", found.container_evidence)
}

/// Runs `body` on lo, or says why it cannot.
fn with_lo(
    probe: &mut Probe,
    body: impl FnOnce(&Snapshot, &loopscope_sys::Interface) -> Finding,
) -> Finding {
    match probe.netlink() {
        Err(error) => Finding::skip(format!("cannot ask the kernel over netlink: {error}")),
        Ok(snapshot) => match snapshot.lo() {
            None => Finding::fail(
                "no loopback interface at all",
                "the kernel creates lo in every namespace; check for a broken network setup (`ip link`)",
            ),
            Some(lo) => body(snapshot, lo),
        },
    }
}

/// IPv6 needs links of at least 1280 bytes (RFC 8200 section 5); below that Linux takes IPv6
/// off the interface, ::1 included, and does not put ::1 back when the MTU is raised.
const IPV6_MIN_MTU: u32 = 1280;

/// The MTU Linux gives lo.
const LO_DEFAULT_MTU: u32 = 65536;

/// The repairs that give one family's loopback its interface, address and local route back,
/// in the order they must run; empty when all of that is in place (or netlink cannot tell).
///
/// Each repair is one the kernel does not make by itself after the ones before it: bringing lo
/// up adds 127.0.0.1/8 and ::1 (and their routes); clearing disable_ipv6 on a lo that is up
/// adds ::1; adding an address adds its local route. So a route repair appears only when its
/// address is already there, which is the only case where `ip route add` does not fail with
/// "File exists".
fn family_repairs(probe: &mut Probe, ipv6: bool) -> Vec<Repair> {
    if ipv6 && !sysctl::kernel_has_ipv6() {
        return Vec::new();
    }
    let disabled = ipv6 && sysctl::read_int("net.ipv6.conf.lo.disable_ipv6").ok() == Some(1);
    let Ok(snapshot) = probe.netlink() else {
        return Vec::new();
    };
    let Some(lo) = snapshot.lo() else {
        return Vec::new();
    };
    let name = &lo.name;
    let mut repairs = Vec::new();
    if !lo.up {
        repairs.push(Repair::new(
            Stage::Interface,
            format!("ip link set {name} up"),
        ));
    }
    let present = lo_addresses(snapshot, lo.index, ipv6);
    if ipv6 {
        let low_mtu = lo.mtu.is_some_and(|mtu| mtu < IPV6_MIN_MTU);
        if disabled {
            repairs.push(Repair::new(
                Stage::Ipv6,
                format!("sysctl -w net.ipv6.conf.{name}.disable_ipv6=0"),
            ));
        }
        if low_mtu {
            repairs.push(mtu_repair(name));
        }
        let has_address = present.iter().any(|address| address == "::1/128");
        let kernel_restores = (!lo.up || disabled) && !low_mtu;
        match lo_loopback_v6(snapshot, lo.index) {
            // The kernel adds the local route itself when detection ends: nothing to repair.
            Some(address) if address.tentative => return repairs,
            Some(address) if address.dad_failed => {
                repairs.push(Repair::new(
                    Stage::Address,
                    format!("ip -6 addr del ::1/128 dev {name}"),
                ));
                repairs.push(Repair::new(
                    Stage::Address,
                    format!("ip -6 addr add ::1/128 dev {name}"),
                ));
                return repairs;
            }
            _ => {}
        }
        if !has_address && !kernel_restores {
            repairs.push(Repair::new(
                Stage::Address,
                format!("ip -6 addr add ::1/128 dev {name}"),
            ));
        } else if has_address && repairs.is_empty() && !has_local_route(snapshot, V6, 128) {
            repairs.push(Repair::new(
                Stage::Route,
                format!("ip -6 route add local ::1/128 dev {name} table local"),
            ));
        }
        return repairs;
    }
    if !lo.up {
        // Bringing lo up adds 127.0.0.1/8 if it is missing.
        return repairs;
    }
    if present.iter().any(|address| address == "127.0.0.1/8") {
        if !has_local_route(snapshot, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8) {
            repairs.push(Repair::new(
                Stage::Route,
                format!("ip route add local 127.0.0.0/8 dev {name} table local"),
            ));
        }
    } else {
        // Also when 127.0.0.1 is there with another prefix (127.0.0.1/32, macOS-style): the
        // kernel takes 127.0.0.1/8 beside it, and the /8 brings the local route for all of
        // 127.0.0.0/8. Deleting the odd one first would be tidier, but it is not needed.
        repairs.push(Repair::new(
            Stage::Address,
            format!("ip addr add 127.0.0.1/8 dev {name}"),
        ));
    }
    repairs
}

fn mtu_repair(name: &str) -> Repair {
    Repair::new(
        Stage::Mtu,
        format!("ip link set {name} mtu {LO_DEFAULT_MTU}"),
    )
}

/// ::1/128 on lo as netlink lists it, with its duplicate address detection flags.
fn lo_loopback_v6(snapshot: &Snapshot, index: u32) -> Option<&loopscope_sys::InterfaceAddress> {
    snapshot.addresses.iter().find(|address| {
        address.index == index && address.address == V6 && address.prefix_len == 128
    })
}

/// An address added by hand (`ip -6 addr add ::1/128 dev lo`) starts tentative. On lo the
/// kernel ends duplicate address detection without a probe, but only when its address work
/// runs, after `ip` has returned; only then does it add the local route and let sockets bind
/// to ::1. A doctor run in that moment (beside a busy build, 1 in 30 right after such a fix)
/// saw no route and proposed adding one, which would fail with "File exists" a moment later.
const V6_TENTATIVE: &str = "::1 tentative: duplicate address detection in progress";
const V6_TENTATIVE_ADVICE: &str = "nothing to repair: the kernel ends detection on lo by itself and then adds the local route for ::1; run the doctor again in a moment";

fn has_local_route(snapshot: &Snapshot, destination: IpAddr, prefix_len: u8) -> bool {
    snapshot.routes.iter().any(|route| {
        route.table == TABLE_LOCAL
            && route.kind == RouteKind::Local
            && route.destination == Some(destination)
            && route.prefix_len == prefix_len
    })
}

/// The firewall rules that can have dropped a probe of `protocol` over one family: every plain
/// rule that matches it, or, when there is none, the narrower ones (ports, state) that might.
fn culprits(
    rules: &[firewall::BlockingRule],
    ipv6: bool,
    protocol: Protocol,
) -> Vec<&firewall::BlockingRule> {
    let matching: Vec<&firewall::BlockingRule> = rules
        .iter()
        .filter(|rule| rule.can_block(ipv6, protocol))
        .collect();
    let plain: Vec<&firewall::BlockingRule> = matching
        .iter()
        .copied()
        .filter(|rule| !rule.narrowed)
        .collect();
    if plain.is_empty() { matching } else { plain }
}

fn rule_repairs(rules: &[&firewall::BlockingRule]) -> Vec<Repair> {
    rules
        .iter()
        .filter_map(|rule| rule.fix.clone())
        .map(|command| Repair::new(Stage::Firewall, command))
        .collect()
}

/// What mends a probe of `protocol` to 127.0.0.1 or ::1 that failed: the interface, address
/// or route when one is missing, else the rules that drop it, else a pointer to the firewall
/// check (which says that no rule explains it).
fn cause_remedy(probe: &mut Probe, ipv6: bool, protocol: Protocol) -> Remedy {
    let repairs = family_repairs(probe, ipv6);
    if !repairs.is_empty() {
        return Remedy::Run(repairs);
    }
    let rules = culprits(&probe.rulesets().blocking, ipv6, protocol);
    if rules.is_empty() {
        FIREWALL_HINT.into()
    } else {
        Remedy::Run(rule_repairs(&rules))
    }
}

fn lo_exists(probe: &mut Probe) -> Finding {
    with_lo(probe, |_, lo| {
        let finding = Finding::pass(format!(
            "{} is the loopback interface (index {})",
            lo.name, lo.index
        ));
        finding
            .with("ifindex", lo.index)
            .with("ifname", lo.name.clone())
    })
}

fn lo_up(probe: &mut Probe) -> Finding {
    with_lo(probe, |_, lo| {
        if lo.up {
            Finding::pass(format!(
                "{} is UP{}",
                lo.name,
                if lo.lower_up { ", LOWER_UP" } else { "" }
            ))
        } else {
            Finding::fail(
                format!("{} is DOWN: nothing reaches 127.0.0.1 or ::1 (new namespaces and containers start this way)", lo.name),
                Repair::new(Stage::Interface, format!("ip link set {} up", lo.name)),
            )
        }
        .with("up", lo.up)
    })
}

fn lo_addresses(snapshot: &Snapshot, index: u32, v6: bool) -> Vec<String> {
    snapshot
        .addresses
        .iter()
        .filter(|address| address.index == index && address.address.is_ipv6() == v6)
        .map(|address| format!("{}/{}", address.address, address.prefix_len))
        .collect()
}

/// `wanted` is missing from lo, which carries `present` (of `family`) instead.
fn not_on_lo(
    wanted: &str,
    family: &str,
    lo: &loopscope_sys::Interface,
    present: &[String],
    repairs: Vec<Repair>,
) -> Finding {
    let present = if present.is_empty() {
        "none".to_string()
    } else {
        present.join(", ")
    };
    Finding::fail(
        format!(
            "{wanted} is not on {} ({family} addresses: {present})",
            lo.name
        ),
        repairs,
    )
}

fn lo_ipv4(probe: &mut Probe) -> Finding {
    let repairs = family_repairs(probe, false);
    with_lo(probe, |snapshot, lo| {
        let present = lo_addresses(snapshot, lo.index, false);
        if present.iter().any(|address| address == "127.0.0.1/8") {
            Finding::pass(format!("{} carries 127.0.0.1/8", lo.name))
        } else if !lo.up && present.is_empty() {
            Finding::fail(
                format!(
                    "no IPv4 address on {}: it is down (bringing it up adds 127.0.0.1/8)",
                    lo.name
                ),
                repairs,
            )
        } else if let Some(other) = present
            .iter()
            .find(|address| address.starts_with("127.0.0.1/"))
        {
            Finding::warn(
                format!(
                    "{} carries {other}, not 127.0.0.1/8: the rest of 127/8 may not be local",
                    lo.name
                ),
                repairs,
            )
        } else {
            not_on_lo("127.0.0.1", "IPv4", lo, &present, repairs)
        }
        .with("addresses", present)
    })
}

fn lo_ipv6(probe: &mut Probe) -> Finding {
    if !sysctl::kernel_has_ipv6() {
        return Finding::skip(NO_IPV6);
    }
    let disabled = sysctl::read_int("net.ipv6.conf.lo.disable_ipv6").ok() == Some(1);
    let repairs = family_repairs(probe, true);
    with_lo(probe, |snapshot, lo| {
        let present = lo_addresses(snapshot, lo.index, true);
        let loopback = lo_loopback_v6(snapshot, lo.index);
        if loopback.is_some_and(|address| address.tentative) {
            Finding::warn(format!("{V6_TENTATIVE} on {}", lo.name), V6_TENTATIVE_ADVICE)
                .with("tentative", true)
        } else if loopback.is_some_and(|address| address.dad_failed) {
            Finding::fail(
                format!(
                    "::1 on {} failed duplicate address detection: the kernel will not use it",
                    lo.name
                ),
                repairs,
            )
            .with("dad_failed", true)
        } else if present.iter().any(|address| address == "::1/128") {
            Finding::pass(format!("{} carries ::1/128", lo.name))
        } else if disabled {
            Finding::fail(
                format!(
                    "::1 is not on {}: IPv6 is disabled on it (net.ipv6.conf.{}.disable_ipv6=1)",
                    lo.name, lo.name
                ),
                repairs,
            )
        } else if let Some(mtu) = lo.mtu.filter(|mtu| *mtu < IPV6_MIN_MTU) {
            Finding::fail(
                format!(
                    "::1 is not on {}: its MTU {mtu} is below IPv6's minimum of {IPV6_MIN_MTU}, so the kernel took IPv6 off it",
                    lo.name
                ),
                repairs,
            )
        } else if !lo.up && present.is_empty() {
            Finding::fail(
                format!(
                    "no ::1 on {}: it is down (bringing it up adds ::1/128)",
                    lo.name
                ),
                repairs,
            )
        } else {
            not_on_lo("::1", "IPv6", lo, &present, repairs)
        }
        .with("addresses", present)
    })
}

fn lo_mtu(probe: &mut Probe) -> Finding {
    with_lo(probe, |_, lo| match lo.mtu {
        None => Finding::skip("the kernel did not report lo's MTU"),
        Some(mtu) if mtu < IPV6_MIN_MTU => Finding::warn(
            format!("MTU {mtu} is below IPv6's minimum of {IPV6_MIN_MTU}: ::1 cannot work"),
            mtu_repair(&lo.name),
        )
        .with("mtu", mtu),
        Some(mtu) => Finding::pass(format!(
            "MTU {mtu}{}",
            if mtu == LO_DEFAULT_MTU {
                " (the kernel default)"
            } else {
                ""
            }
        ))
        .with("mtu", mtu),
    })
}

fn local_route(probe: &mut Probe, destination: IpAddr, prefix_len: u8) -> Finding {
    let text = format!("{destination}/{prefix_len}");
    let repairs = family_repairs(probe, destination.is_ipv6());
    with_lo(probe, |snapshot, lo| {
        if has_local_route(snapshot, destination, prefix_len) {
            Finding::pass(format!("local {text} dev {} in table local", lo.name))
        } else if destination == V6
            && lo_loopback_v6(snapshot, lo.index).is_some_and(|address| address.tentative)
        {
            Finding::warn(
                format!("{V6_TENTATIVE}: the kernel adds the local route for {text} when it ends"),
                V6_TENTATIVE_ADVICE,
            )
            .with("tentative", true)
        } else if !lo.up {
            Finding::fail(
                format!("no local route for {text}: {} is down", lo.name),
                repairs,
            )
        } else {
            Finding::fail(
                format!(
                    "no local route for {text} in table local: the kernel will not deliver it to this host"
                ),
                repairs,
            )
        }
    })
}

fn route_local_v4(probe: &mut Probe) -> Finding {
    local_route(probe, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8)
}

fn route_local_v6(probe: &mut Probe) -> Finding {
    if !sysctl::kernel_has_ipv6() {
        return Finding::skip(NO_IPV6);
    }
    local_route(probe, V6, 128)
}

fn route_localnet(_: &mut Probe) -> Finding {
    let Ok(entries) = std::fs::read_dir("/proc/sys/net/ipv4/conf") else {
        return Finding::skip("cannot read /proc/sys/net/ipv4/conf");
    };
    let mut enabled: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let value = sysctl::read_int(&format!("net.ipv4.conf.{name}.route_localnet")).ok()?;
            (value == 1).then_some(name)
        })
        .collect();
    enabled.sort();
    if enabled.is_empty() {
        Finding::pass("route_localnet=0 everywhere: 127/8 packets from other interfaces are dropped as martians")
            .with("route_localnet_on", Vec::<String>::new())
    } else {
        let fixes: Vec<Repair> = enabled
            .iter()
            .map(|name| {
                Repair::new(
                    Stage::Sysctl,
                    format!("sysctl -w net.ipv4.conf.{name}.route_localnet=0"),
                )
            })
            .collect();
        Finding::warn(
            format!(
                "route_localnet=1 on {}: packets to 127/8 arriving from other interfaces are routed, exposing loopback-only services (CVE-2020-8558)",
                enabled.join(", ")
            ),
            fixes,
        )
        .with("route_localnet_on", enabled)
    }
}

fn rp_filter(_: &mut Probe) -> Finding {
    let (Ok(all), Ok(lo)) = (
        sysctl::read_int("net.ipv4.conf.all.rp_filter"),
        sysctl::read_int("net.ipv4.conf.lo.rp_filter"),
    ) else {
        return Finding::skip("cannot read net.ipv4.conf.{all,lo}.rp_filter");
    };
    let mode = |value: i64| match value {
        0 => "off",
        1 => "strict",
        2 => "loose",
        _ => "unknown",
    };
    let effective = all.max(lo);
    Finding::pass(format!(
        "all={all} lo={lo}: {} on lo (the higher wins); loopback packets keep the route they were sent with and skip the check",
        mode(effective)
    ))
    .with("rp_filter_all", all)
    .with("rp_filter_lo", lo)
}

fn disable_ipv6(_: &mut Probe) -> Finding {
    if !sysctl::kernel_has_ipv6() {
        return Finding::skip(NO_IPV6);
    }
    let lo = sysctl::read_int("net.ipv6.conf.lo.disable_ipv6");
    let all = sysctl::read_int("net.ipv6.conf.all.disable_ipv6");
    match lo {
        Err(error) => Finding::skip(format!(
            "cannot read net.ipv6.conf.lo.disable_ipv6: {error}"
        )),
        Ok(1) => Finding::fail(
            "disable_ipv6=1 on lo: ::1 is gone, and so is every IPv6 loopback service",
            Repair::new(Stage::Ipv6, "sysctl -w net.ipv6.conf.lo.disable_ipv6=0"),
        )
        .with("disable_ipv6_lo", 1),
        Ok(value) => Finding::pass(format!(
            "disable_ipv6=0 on lo{}",
            if all.as_ref().is_ok_and(|all| *all == 1) {
                " (all=1 affects other interfaces only)"
            } else {
                ""
            }
        ))
        .with("disable_ipv6_lo", value),
    }
}

fn raw_sockets_allowed() -> bool {
    socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::ICMPV4),
    )
    .is_ok()
}

fn ping_group_range(_: &mut Probe) -> Finding {
    let range = match sysctl::PingGroupRange::read() {
        Ok(range) => range,
        Err(error) => {
            return Finding::skip(format!("cannot read net.ipv4.ping_group_range: {error}"));
        }
    };
    let groups = sysctl::own_groups();
    let allowed_group = groups.iter().copied().find(|gid| range.contains(*gid));
    let raw = raw_sockets_allowed();
    let text = format!("{} {}", range.low, range.high);
    let finding = match (allowed_group, raw) {
        (Some(gid), _) => Finding::pass(format!(
            "'{text}' includes gid {gid}: unprivileged ICMP datagram sockets work{}",
            if raw { " (raw sockets too)" } else { "" }
        )),
        (None, true) if range.is_empty() => Finding::pass(format!(
            "'{text}': no group may open ICMP datagram sockets; this process has CAP_NET_RAW, so echo uses raw sockets"
        )),
        (None, true) => Finding::pass(format!(
            "'{text}' excludes this process's groups; it has CAP_NET_RAW, so echo uses raw sockets"
        )),
        (None, false) => Finding::warn(
            format!(
                "'{text}' excludes this process's groups and raw sockets need CAP_NET_RAW: ICMP echo cannot run"
            ),
            Repair::new(
                Stage::Sysctl,
                "sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"",
            ),
        ),
    };
    finding
        .with("ping_group_range", text)
        .with("datagram_allowed", allowed_group.is_some())
        .with("raw_allowed", raw)
}

fn icmp_check(probe: &mut Probe, target: IpAddr) -> Finding {
    if target.is_ipv6() && !sysctl::kernel_has_ipv6() {
        return Finding::skip(NO_IPV6);
    }
    match probe.icmp(target) {
        Err(IcmpFailure::NoSocket(error)) => Finding::skip(error),
        Err(IcmpFailure::Unreachable(error)) => Finding::fail(
            format!("echo to {target} cannot be sent: {error}"),
            cause_remedy(probe, target.is_ipv6(), Protocol::Icmp),
        ),
        Ok(outcome) => {
            let kind = outcome.kind.name();
            let figures = |finding: Finding| {
                finding
                    .with("socket_kind", kind)
                    .with("sent", outcome.sent)
                    .with("received", outcome.received)
                    .with("rtt_avg_us", round(outcome.rtt_us))
            };
            if outcome.received == outcome.sent && outcome.sent > 0 {
                figures(Finding::pass(format!(
                    "{}/{} echo replies from {target} through a {kind} socket, avg {:.0} µs",
                    outcome.received, outcome.sent, outcome.rtt_us
                )))
            } else {
                let why = outcome
                    .send_error
                    .as_deref()
                    .map(|error| format!(" (send failed: {error})"))
                    .unwrap_or_default();
                let status = if outcome.received == 0 {
                    Finding::fail
                } else {
                    Finding::warn
                };
                figures(status(
                    format!(
                        "{}/{} echo replies from {target} through a {kind} socket{why}",
                        outcome.received, outcome.sent
                    ),
                    cause_remedy(probe, target.is_ipv6(), Protocol::Icmp),
                ))
            }
        }
    }
}

fn icmp_v4(probe: &mut Probe) -> Finding {
    icmp_check(probe, V4)
}

fn icmp_v6(probe: &mut Probe) -> Finding {
    icmp_check(probe, V6)
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

const FIREWALL_HINT: &str = "no rule or missing address explains it: see the firewall check (`loopscope doctor --check firewall`)";

fn round_trip_finding(
    probe: &mut Probe,
    protocol: Protocol,
    target: IpAddr,
    result: Result<RoundTrip, ProbeError>,
) -> Finding {
    let name = if protocol == Protocol::Tcp {
        "TCP"
    } else {
        "UDP"
    };
    match result {
        Ok(trip) => Finding::pass(format!(
            "{} bytes echoed over {name} on {} in {:.0} µs",
            trip.bytes,
            target,
            trip.rtt.as_secs_f64() * 1e6
        ))
        .with("rtt_us", round(trip.rtt.as_secs_f64() * 1e6))
        .with("bytes", trip.bytes),
        Err(error) => Finding::fail(
            format!("{name} round trip on {target} failed: {error}"),
            cause_remedy(probe, target.is_ipv6(), protocol),
        ),
    }
}

fn tcp_v4(probe: &mut Probe) -> Finding {
    let result = probe.tcp(V4);
    round_trip_finding(probe, Protocol::Tcp, V4, result)
}

fn tcp_v6(probe: &mut Probe) -> Finding {
    if !sysctl::kernel_has_ipv6() {
        return Finding::skip(NO_IPV6);
    }
    let result = probe.tcp(V6);
    round_trip_finding(probe, Protocol::Tcp, V6, result)
}

fn udp_v4(probe: &mut Probe) -> Finding {
    let result = probe.udp(V4);
    round_trip_finding(probe, Protocol::Udp, V4, result)
}

fn udp_v6(probe: &mut Probe) -> Finding {
    if !sysctl::kernel_has_ipv6() {
        return Finding::skip(NO_IPV6);
    }
    let result = probe.udp(V6);
    round_trip_finding(probe, Protocol::Udp, V6, result)
}

fn alias_127(probe: &mut Probe) -> Finding {
    let (alias, result) = probe.alias();
    match result {
        Ok(_) => Finding::pass(format!(
            "{alias} (a random address in 127.0.0.0/8) answers: the whole /8 is local"
        )),
        Err(why) => {
            let remedy = cause_remedy(probe, false, Protocol::Tcp);
            if probe.tcp(V4).is_ok() {
                Finding::fail(
                    format!("{alias} does not answer ({why}) though 127.0.0.1 does: only part of 127.0.0.0/8 is local (macOS-style)"),
                    remedy,
                )
            } else {
                Finding::fail(
                    format!("{alias} does not answer ({why}), nor does 127.0.0.1"),
                    remedy,
                )
            }
        }
    }
    .with("alias", alias.to_string())
}

/// The lookup of `localhost`, shared by the two checks that read it.
fn lookup_localhost(probe: &Probe) -> (NameSource, Lookup) {
    let source = probe.resolver_source();
    let lookup = resolver::lookup(&source, "localhost", Duration::from_secs(2));
    (source, lookup)
}

/// The hosts file named as a shell word, for fixes that write to it.
fn hosts_path(source: &NameSource) -> String {
    shell_words::quote(&source.hosts_file().display().to_string()).into_owned()
}

/// Appends the loopback entries for `localhost` (one per family this kernel has) to the hosts
/// file in use.
fn hosts_repair(source: &NameSource, ipv4: bool, ipv6: bool) -> Repair {
    let mut lines = Vec::new();
    if ipv4 {
        lines.push("127.0.0.1 localhost");
    }
    if ipv6 {
        lines.push("::1 localhost ip6-localhost ip6-loopback");
    }
    let command = if lines.len() == 1 {
        format!("echo '{}' >> {}", lines[0], hosts_path(source))
    } else {
        format!(
            "printf '{}\\n' >> {}",
            lines.join("\\n"),
            hosts_path(source)
        )
    };
    Repair::new(Stage::Resolver, command)
}

fn localhost(probe: &mut Probe) -> Finding {
    let (source, lookup) = lookup_localhost(probe);
    let from = source.describe();
    let answers = match lookup {
        Lookup::Answers(answers) => answers,
        Lookup::NotFound(why) => {
            return Finding::fail(
                format!("localhost does not resolve ({from}: {why})"),
                hosts_repair(&source, true, sysctl::kernel_has_ipv6()),
            )
            .with("source", from);
        }
        Lookup::TimedOut => {
            return Finding::fail(
                format!("resolving localhost timed out ({from}): it went to DNS"),
                hosts_repair(&source, true, sysctl::kernel_has_ipv6()),
            )
            .with("source", from);
        }
    };
    let figures = |finding: Finding| {
        finding.with("source", from.clone()).with(
            "addresses",
            answers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        )
    };
    let foreign: Vec<IpAddr> = answers
        .iter()
        .copied()
        .filter(|ip| !ip.is_loopback())
        .collect();
    if !foreign.is_empty() {
        return figures(Finding::fail(
            format!(
                "localhost resolves to non-loopback {} ({from}): traffic meant for this host leaves it",
                comma_list(&foreign)
            ),
            format!(
                "remove those entries for localhost from {} (or the DNS answering for it)",
                source.hosts_file().display()
            ),
        ));
    }
    let has_v4 = answers.iter().any(IpAddr::is_ipv4);
    let has_v6 = answers.iter().any(IpAddr::is_ipv6);
    if !has_v6 && sysctl::kernel_has_ipv6() && probe.tcp(V6).is_ok() {
        return figures(Finding::warn(
            format!(
                "localhost -> {} only ({from}): ::1 works but is not returned, so IPv6-only servers on ::1 are unreachable by name",
                comma_list(&answers)
            ),
            hosts_repair(&source, false, true),
        ));
    }
    if !has_v4 {
        return figures(Finding::warn(
            format!(
                "localhost -> {} only ({from}): IPv4 clients and servers bound to 127.0.0.1 miss it",
                comma_list(&answers)
            ),
            hosts_repair(&source, true, false),
        ));
    }
    figures(Finding::pass(format!(
        "localhost -> {} ({from})",
        comma_list(&answers)
    )))
}

fn localhost_order(probe: &mut Probe) -> Finding {
    let (source, lookup) = lookup_localhost(probe);
    let Lookup::Answers(answers) = lookup else {
        return Finding::skip("localhost does not resolve (see the localhost check)");
    };
    let Some(first) = answers.first().copied() else {
        return Finding::skip("localhost has no answers");
    };
    let family = if first.is_ipv6() { "IPv6" } else { "IPv4" };
    let figures = |finding: Finding| {
        finding
            .with("first", first.to_string())
            .with("source", source.describe())
    };
    if first.is_loopback() {
        let loop_target = if first.is_ipv6() { V6 } else { V4 };
        if let Err(error) = probe.tcp(loop_target) {
            // Say what such a client sees: a timeout (dropped packets) is not a refusal.
            let symptom = if error.timed_out() {
                format!("hang until they time out connecting to {first}")
            } else if error.refused() {
                format!("fail with ECONNREFUSED {first}")
            } else {
                format!("cannot connect to {first}")
            };
            let remedy = match cause_remedy(probe, first.is_ipv6(), Protocol::Tcp) {
                Remedy::Run(repairs) => Remedy::Run(repairs),
                Remedy::Advice(_) => unexplained_first_answer_advice(first, &source).into(),
            };
            return figures(Finding::fail(
                format!(
                    "localhost resolves to {first} first but {family} loopback does not work ({error}): clients that try only the first answer (Node.js 17+) {symptom}"
                ),
                remedy,
            ));
        }
    }
    let listeners = proc_net::loopback_listeners();
    let (first_family, other_family) = if first.is_ipv6() {
        (&listeners.ipv6, &listeners.ipv4)
    } else {
        (&listeners.ipv4, &listeners.ipv6)
    };
    let stranded: Vec<u16> = other_family.difference(first_family).copied().collect();
    if !stranded.is_empty() {
        // Name what each port is bound to: 0.0.0.0 is not "only 127.0.0.1", but it is IPv4
        // only all the same.
        let shown: Vec<String> = stranded
            .iter()
            .take(6)
            .map(|port| {
                let bound: Vec<String> = listeners
                    .bound
                    .get(port)
                    .into_iter()
                    .flatten()
                    .map(ToString::to_string)
                    .collect();
                if bound.is_empty() {
                    port.to_string()
                } else {
                    format!("{port} (bound to {})", bound.join(", "))
                }
            })
            .collect();
        let (other, other_family_name) = if first.is_ipv6() {
            ("127.0.0.1", "IPv4")
        } else {
            ("::1", "IPv6")
        };
        return figures(Finding::warn(
            format!(
                "localhost resolves to {first} first, but port{} {} accept{} only {other_family_name} connections: clients that try only the first answer (Node.js 17+) get ECONNREFUSED {first}",
                if stranded.len() == 1 { "" } else { "s" },
                shown.join(", "),
                if stranded.len() == 1 { "s" } else { "" },
            ),
            format!("bind those servers to both families (or to {first}), or connect to {other} explicitly"),
        ))
        .with("ports_other_family_only", stranded);
    }
    figures(Finding::pass(format!(
        "first answer {first} ({family}); {} loopback listener port{} reachable on it",
        first_family.len(),
        if first_family.len() == 1 { "" } else { "s" }
    )))
}

/// When nothing found explains why the first answer for localhost does not work, the way out
/// that always works is to stop handing it out, in the hosts file actually read.
fn unexplained_first_answer_advice(first: IpAddr, source: &NameSource) -> String {
    let check = if first.is_ipv6() { "tcp_v6" } else { "tcp_v4" };
    format!(
        "find what stops TCP on {first} (see {check} and firewall), or take {first} off the localhost line in {}",
        source.hosts_file().display()
    )
}

fn localhost_subdomain(probe: &mut Probe) -> Finding {
    let source = probe.resolver_source();
    let name = "loopscope-doctor.localhost";
    match resolver::lookup(&source, name, Duration::from_millis(1500)) {
        Lookup::Answers(answers) if answers.iter().all(IpAddr::is_loopback) => Finding::pass(
            format!("{name} -> {} (RFC 6761 loopback)", comma_list(&answers)),
        ),
        Lookup::Answers(answers) => Finding::fail(
            format!(
                "{name} -> {}: a .localhost name resolves off-host (RFC 6761 forbids it)",
                comma_list(&answers)
            ),
            "find who answers for .localhost (DNS search domain? wildcard record?) and stop it",
        ),
        Lookup::NotFound(_) => Finding::pass(format!(
            "{name} does not resolve: safe (nothing off-host answers); glibc leaves *.localhost to nss-myhostname or systemd-resolved"
        )),
        Lookup::TimedOut => Finding::warn(
            format!("looking up {name} timed out: .localhost names are sent to DNS"),
            "install nss-myhostname (libnss-myhostname) or use systemd-resolved so *.localhost stays local",
        ),
    }
}

fn firewall_rules(probe: &mut Probe) -> Finding {
    // Behaviour decides: a rule that matches loopback but breaks nothing we probe is a warning.
    // A probe that failed because lo is down or an address or route is missing is explained
    // by those checks, and is no evidence against the firewall.
    let v6 = sysctl::kernel_has_ipv6();
    let families: &[bool] = if v6 { &[false, true] } else { &[false] };
    let mut broken: Vec<(String, bool, Protocol)> = Vec::new();
    let mut explained_elsewhere = false;
    for &ipv6 in families {
        let (target, icmp_name) = if ipv6 { (V6, "ICMPv6") } else { (V4, "ICMP") };
        let mut failed = Vec::new();
        if probe
            .icmp(target)
            .is_ok_and(|outcome| outcome.received < outcome.sent)
        {
            failed.push((format!("{icmp_name} to {target}"), ipv6, Protocol::Icmp));
        }
        if probe.tcp(target).is_err() {
            failed.push((format!("TCP on {target}"), ipv6, Protocol::Tcp));
        }
        if probe.udp(target).is_err() {
            failed.push((format!("UDP on {target}"), ipv6, Protocol::Udp));
        }
        if failed.is_empty() {
            continue;
        }
        if family_repairs(probe, ipv6).is_empty() {
            broken.extend(failed);
        } else {
            explained_elsewhere = true;
        }
    }
    let rulesets = probe.rulesets().clone();
    let suspects: Vec<&firewall::BlockingRule> = rulesets
        .blocking
        .iter()
        .filter(|rule| rule.reach != Reach::Elsewhere)
        .collect();
    let explicit: Vec<&firewall::BlockingRule> = suspects
        .iter()
        .copied()
        .filter(|rule| rule.reach == Reach::Loopback)
        .collect();
    let read = if rulesets.read.is_empty() {
        "none".to_string()
    } else {
        rulesets.read.join(", ")
    };
    let broken_names: Vec<&str> = broken.iter().map(|(name, _, _)| name.as_str()).collect();
    let figures = |finding: Finding| {
        finding
            .with("rulesets_read", rulesets.read.clone())
            .with("unreadable", rulesets.unreadable.clone())
            .with(
                "rules",
                suspects
                    .iter()
                    .map(|rule| json!({"tool": rule.tool, "source": rule.source(), "rule": rule.text, "loopback_explicit": rule.reach == Reach::Loopback}))
                    .collect::<Vec<_>>(),
            )
            .with("broken", broken_names.clone())
    };
    if rulesets.read.is_empty() {
        let tools: Vec<&str> = rulesets
            .unreadable
            .iter()
            .map(|reason| reason.split(':').next().unwrap_or(reason))
            .collect();
        // Reading netfilter's rules takes CAP_NET_ADMIN: without root, that is the reason,
        // whatever words each tool chose to say it in.
        let why = if !rustix::process::geteuid().is_root() {
            format!("{} need root", tools.join(", "))
        } else {
            rulesets.unreadable.join("; ")
        };
        return figures(if broken.is_empty() {
            Finding::skip(format!("no ruleset readable ({why})"))
        } else {
            Finding::warn(
                format!(
                    "{} failed and no ruleset is readable to say why ({why})",
                    broken_names.join(", ")
                ),
                "run as root, or install nftables to read the rules",
            )
        });
    }
    let name_rules = |rules: &[&firewall::BlockingRule]| {
        rules
            .iter()
            .map(|rule| format!("[{}] {}", rule.source(), rule.text))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if !broken.is_empty() {
        // Every rule that can have dropped a failed probe, once, in ruleset order.
        let mut culprits_found: Vec<&firewall::BlockingRule> = Vec::new();
        for (_, ipv6, protocol) in &broken {
            for rule in culprits(&rulesets.blocking, *ipv6, *protocol) {
                if !culprits_found
                    .iter()
                    .any(|known| std::ptr::eq(*known, rule))
                {
                    culprits_found.push(rule);
                }
            }
        }
        culprits_found.sort_by_key(|rule| {
            rulesets
                .blocking
                .iter()
                .position(|known| std::ptr::eq(known, *rule))
        });
        return figures(if culprits_found.is_empty() {
            Finding::warn(
                format!(
                    "{} failed but no drop/reject rule in {read} explains it",
                    broken_names.join(", ")
                ),
                "look for eBPF/cgroup filters or LSM policies (`bpftool cgroup tree`)",
            )
        } else {
            Finding::fail(
                format!(
                    "{} blocked; rule{}: {}",
                    broken_names.join(", "),
                    if culprits_found.len() == 1 { "" } else { "s" },
                    name_rules(&culprits_found)
                ),
                rule_repairs(&culprits_found),
            )
        });
    }
    if !explicit.is_empty() {
        return figures(Finding::warn(
            format!(
                "rule{} matching loopback ({read}) did not stop our probes{}: {}",
                if explicit.len() == 1 { "" } else { "s" },
                if explained_elsewhere {
                    " (those that failed have a missing address or route to blame)"
                } else {
                    ""
                },
                name_rules(&explicit)
            ),
            rule_repairs(&explicit),
        ));
    }
    figures(Finding::pass(format!(
        "no rule in {read} blocks loopback{}{}",
        if explained_elsewhere {
            " (the probes that failed have a missing address or route to blame)"
        } else {
            ""
        },
        if suspects.is_empty() {
            String::new()
        } else {
            format!(
                " ({} interface-agnostic drop rule(s) did not hit our probes)",
                suspects.len()
            )
        }
    )))
}

/// The BERT and latency checks need the plain TCP loop; when it is broken, say so at once
/// instead of waiting for another timeout.
fn tcp_loop_broken(probe: &mut Probe) -> Option<Finding> {
    let error = probe.tcp(V4).err()?;
    Some(Finding::fail(
        format!("no TCP loop on 127.0.0.1 to measure through ({error})"),
        cause_remedy(probe, false, Protocol::Tcp),
    ))
}

fn bert(probe: &mut Probe) -> Finding {
    if let Some(broken) = tcp_loop_broken(probe) {
        return broken;
    }
    let bytes = probe.options.bert_bytes;
    let pattern = PatternSpec::standard(PatternKind::Prbs31).describe();
    match round_trips::tcp_bert(V4, bytes, Duration::from_secs(5)) {
        Err(error) => Finding::fail(
            format!(
                "BERT through a TCP loop on 127.0.0.1 could not run: {}",
                super::probe::describe_io(&error)
            ),
            cause_remedy(probe, false, Protocol::Tcp),
        ),
        Ok(run) => {
            let rate = run.throughput_bps;
            let received = run.bytes_received;
            let finding = if received < bytes {
                Finding::fail(
                    format!(
                        "only {} of {} bytes came back through the TCP loop",
                        received, bytes
                    ),
                    "see the tcp_v4 and firewall checks",
                )
            } else if run.check.bit_errors > 0 || run.check.bits == 0 {
                Finding::fail(
                    format!(
                        "{} bit errors in {} bits ({} through TCP on 127.0.0.1): memory or CPU corruption?",
                        run.check.bit_errors, run.check.bits, pattern
                    ),
                    "run a memory test (memtester) and check dmesg for machine-check errors",
                )
            } else {
                Finding::pass(format!(
                    "{} MiB of {} through TCP on 127.0.0.1: 0 errors in {} bits, {}",
                    received >> 20,
                    pattern,
                    run.check.bits,
                    loopscope_report::format_bit_rate(rate)
                ))
            };
            finding
                .with("pattern", pattern.clone())
                .with("bytes", received)
                .with("bits", run.check.bits)
                .with("bit_errors", run.check.bit_errors)
                .with("ber", run.check.ber)
                .with("bits_per_second", rate.round())
        }
    }
}

fn latency(probe: &mut Probe) -> Finding {
    if let Some(broken) = tcp_loop_broken(probe) {
        return broken;
    }
    let count = probe.options.latency_round_trips;
    match round_trips::tcp_latency(V4, count, 64, Duration::from_secs(2)) {
        Err(error) => Finding::fail(
            format!(
                "TCP ping-pong on 127.0.0.1 failed: {}",
                super::probe::describe_io(&error)
            ),
            cause_remedy(probe, false, Protocol::Tcp),
        ),
        Ok(summary) => {
            let text = format!(
                "TCP round trip on 127.0.0.1 ({count} x 64 B): p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
                summary.rtt_p50_us, summary.rtt_p99_us, summary.rtt_max_us
            );
            // Loopback TCP answers in tens of microseconds; milliseconds mean a starved CPU.
            let finding = if summary.rtt_p50_us > 5000.0 {
                Finding::warn(
                    format!("{text}: slow"),
                    "look for CPU contention (top) or a throttled cgroup",
                )
            } else {
                Finding::pass(text)
            };
            finding
                .with("round_trips", count)
                .with("rtt_min_us", round(summary.rtt_min_us))
                .with("rtt_p50_us", round(summary.rtt_p50_us))
                .with("rtt_p90_us", round(summary.rtt_p90_us))
                .with("rtt_p99_us", round(summary.rtt_p99_us))
                .with("rtt_max_us", round(summary.rtt_max_us))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use super::super::Status;
    use super::super::probe::Options;
    use loopscope_sys::{Interface, InterfaceAddress, Route};

    /// lo up with 127.0.0.1/8 and its route, and ::1/128 flagged as given, without its route:
    /// the kernel's state between `ip -6 addr add ::1/128 dev lo` and the end of detection.
    fn lo_with_v6(tentative: bool, dad_failed: bool) -> Probe {
        let address = |address: IpAddr, prefix_len, tentative, dad_failed| InterfaceAddress {
            index: 1,
            address,
            prefix_len,
            tentative,
            dad_failed,
        };
        Probe::with_snapshot(
            Options::default(),
            Snapshot {
                interfaces: vec![Interface {
                    index: 1,
                    name: "lo".into(),
                    up: true,
                    lower_up: true,
                    loopback: true,
                    mtu: Some(LO_DEFAULT_MTU),
                }],
                addresses: vec![
                    address(V4, 8, false, false),
                    address(V6, 128, tentative, dad_failed),
                ],
                routes: vec![Route {
                    table: TABLE_LOCAL,
                    kind: RouteKind::Local,
                    destination: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0))),
                    prefix_len: 8,
                    output_interfaces: vec![1],
                    gateway: None,
                    ipv6: false,
                }],
            },
        )
    }

    /// A tentative ::1 is its own state, a warning without a repair: not a missing route to
    /// add (which `ip` would refuse with "File exists" once detection ends). Before, the
    /// route check failed and proposed `ip -6 route add local ::1/128 dev lo table local`.
    #[test]
    fn a_tentative_loopback_address_is_not_a_missing_route() {
        if !sysctl::kernel_has_ipv6() {
            eprintln!("skipping: {NO_IPV6}");
            return;
        }
        let mut probe = lo_with_v6(true, false);
        let route = route_local_v6(&mut probe);
        assert_eq!(route.status, Status::Warn, "{}", route.finding);
        assert!(route.finding.starts_with(V6_TENTATIVE), "{}", route.finding);
        assert!(route.repairs.is_empty(), "{:?}", route.repairs);
        if sysctl::read_int("net.ipv6.conf.lo.disable_ipv6").ok() != Some(1) {
            let address = lo_ipv6(&mut probe);
            assert_eq!(address.status, Status::Warn, "{}", address.finding);
            assert!(
                address.finding.starts_with(V6_TENTATIVE),
                "{}",
                address.finding
            );
        }
        // Settled, the same state without the route is a missing route again.
        let route = route_local_v6(&mut lo_with_v6(false, false));
        assert_eq!(route.status, Status::Fail, "{}", route.finding);
        assert_eq!(
            route
                .repairs
                .iter()
                .map(|r| r.command.as_str())
                .collect::<Vec<_>>(),
            ["ip -6 route add local ::1/128 dev lo table local"]
        );
        // Failed detection: the address is re-added, not a route.
        let address = lo_ipv6(&mut lo_with_v6(false, true));
        if sysctl::read_int("net.ipv6.conf.lo.disable_ipv6").ok() != Some(1) {
            assert_eq!(address.status, Status::Fail, "{}", address.finding);
            assert_eq!(
                address
                    .repairs
                    .iter()
                    .map(|r| r.command.as_str())
                    .collect::<Vec<_>>(),
                [
                    "ip -6 addr del ::1/128 dev lo",
                    "ip -6 addr add ::1/128 dev lo"
                ]
            );
        }
    }

    #[test]
    fn hosts_fixes_name_the_hosts_file_in_use() {
        let given = NameSource::HostsFile(PathBuf::from("/srv/test hosts"));
        assert_eq!(
            hosts_repair(&given, false, true).command,
            "echo '::1 localhost ip6-localhost ip6-loopback' >> '/srv/test hosts'"
        );
        assert_eq!(
            hosts_repair(&NameSource::System, true, true).command,
            "printf '127.0.0.1 localhost\\n::1 localhost ip6-localhost ip6-loopback\\n' >> /etc/hosts"
        );
        let advice = unexplained_first_answer_advice(V6, &given);
        assert!(
            advice.ends_with("take ::1 off the localhost line in /srv/test hosts"),
            "{advice}"
        );
        assert!(!advice.contains("/etc/hosts"));
    }
}
