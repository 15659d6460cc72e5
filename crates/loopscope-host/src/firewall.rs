//! Firewall rules that can drop or reject loopback traffic, read from `nft -j list ruleset` and
//! from `iptables-save` / `ip6tables-save` in both of their backends: `-nft` (rules kept in
//! nf_tables, which `nft -j` shows only as opaque `xt` expressions) and `-legacy` (the old
//! x_tables, which `nft` cannot see at all).
//!
//! Each rule says which traffic it can hit (address family, protocol, whether it names lo), so
//! the doctor can tell which rule explains which failed probe.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How sure we are that a rule hits loopback traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Matches only other traffic (another interface, non-loopback addresses, forwarding).
    Elsewhere,
    /// Matches no interface or address at all, so loopback packets can hit it.
    Unrestricted,
    /// Names `lo` or a loopback address.
    Loopback,
}

/// The transport protocols the doctor's probes use, as a rule can be limited to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
    /// ICMP (IP protocol 1) or ICMPv6 (58): a probe's family says which.
    Icmp,
}

/// A set of IP protocols a rule can match, by protocol number (IANA "Assigned Internet
/// Protocol Numbers"): ICMP 1, TCP 6, UDP 17, ICMPv6 58.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Protocols {
    tcp: bool,
    udp: bool,
    icmp: bool,
    icmpv6: bool,
}

impl Protocols {
    const ANY: Protocols = Protocols {
        tcp: true,
        udp: true,
        icmp: true,
        icmpv6: true,
    };
    const NONE: Protocols = Protocols {
        tcp: false,
        udp: false,
        icmp: false,
        icmpv6: false,
    };

    /// The set a protocol name or number stands for; `None` for names we do not know (which
    /// then match none of ours: an `sctp` rule cannot hit a TCP probe).
    fn named(name: &str) -> Protocols {
        let mut set = Protocols::NONE;
        match name.to_ascii_lowercase().as_str() {
            "tcp" | "6" => set.tcp = true,
            "udp" | "17" => set.udp = true,
            "icmp" | "1" => set.icmp = true,
            "ipv6-icmp" | "icmpv6" | "icmp6" | "58" => set.icmpv6 = true,
            "all" | "0" => return Protocols::ANY,
            _ => {}
        }
        set
    }

    fn union(self, other: Protocols) -> Protocols {
        Protocols {
            tcp: self.tcp || other.tcp,
            udp: self.udp || other.udp,
            icmp: self.icmp || other.icmp,
            icmpv6: self.icmpv6 || other.icmpv6,
        }
    }

    fn intersect(self, other: Protocols) -> Protocols {
        Protocols {
            tcp: self.tcp && other.tcp,
            udp: self.udp && other.udp,
            icmp: self.icmp && other.icmp,
            icmpv6: self.icmpv6 && other.icmpv6,
        }
    }

    fn complement(self) -> Protocols {
        Protocols {
            tcp: !self.tcp,
            udp: !self.udp,
            icmp: !self.icmp,
            icmpv6: !self.icmpv6,
        }
    }

    fn contains(self, protocol: Protocol, ipv6: bool) -> bool {
        match protocol {
            Protocol::Tcp => self.tcp,
            Protocol::Udp => self.udp,
            Protocol::Icmp if ipv6 => self.icmpv6,
            Protocol::Icmp => self.icmp,
        }
    }
}

/// Which iptables backend a rule lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// iptables-nft: the rules are nf_tables rules written in iptables syntax.
    Nft,
    /// iptables-legacy: x_tables, invisible to `nft`.
    Legacy,
}

impl Backend {
    fn suffix(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }

    /// Reads `iptables --version` (`iptables v1.8.9 (nf_tables)` / `(legacy)`).
    fn from_version(text: &str) -> Option<Backend> {
        if text.contains("nf_tables") {
            Some(Backend::Nft)
        } else if text.contains("legacy") {
            Some(Backend::Legacy)
        } else {
            None
        }
    }
}

/// A rule (or chain policy) whose verdict is drop or reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingRule {
    /// Where it comes from: `nft`, `iptables` or `ip6tables`.
    pub tool: &'static str,
    /// For iptables rules, the backend they live in.
    pub backend: Option<Backend>,
    /// Human-readable, e.g. `inet filter input handle 3: iifname "lo" meta l4proto icmp drop`
    /// or `iptables -t filter -A INPUT -i lo -p tcp -j REJECT`.
    pub text: String,
    /// The command that deletes it (or opens the policy), when we can say.
    pub fix: Option<String>,
    /// How sure it is that the rule hits loopback traffic.
    pub reach: Reach,
    /// Address families it can match.
    pub ipv4: bool,
    /// It can match IPv6.
    pub ipv6: bool,
    protocols: Protocols,
    /// Limited by ports, connection state or matches we do not read: it may well miss the
    /// doctor's probes, so it explains a failure only when no plainer rule does.
    pub narrowed: bool,
    /// `family table chain` for nft rules (to recognise the same rule read twice).
    chain: Option<(String, String, String)>,
}

impl BlockingRule {
    /// Whether this rule can drop a probe of `protocol` over IPv6 (`ipv6`) or IPv4 on lo.
    pub fn can_block(&self, ipv6: bool, protocol: Protocol) -> bool {
        self.reach != Reach::Elsewhere
            && if ipv6 { self.ipv6 } else { self.ipv4 }
            && self.protocols.contains(protocol, ipv6)
    }

    /// `[nft]`, `[iptables]`, `[iptables-legacy]`...: where the user will find it.
    pub fn source(&self) -> String {
        match self.backend {
            Some(backend) => format!("{}-{}", self.tool, backend.suffix()),
            None => self.tool.to_string(),
        }
    }
}

/// What reading the rulesets gave.
#[derive(Debug, Clone, Default)]
pub struct Rulesets {
    /// The tools that were read (`nft`, `iptables-nft-save`, ...).
    pub read: Vec<String>,
    /// Why a tool could not be read (missing binary, permission).
    pub unreadable: Vec<String>,
    /// The rules that drop or reject what the doctor sends over loopback.
    pub blocking: Vec<BlockingRule>,
}

/// Finds an executable in PATH or the sbin directories (which a non-root PATH may lack).
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|dir| !dir.is_empty())
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs a tool with a time limit; returns stdout, or why not.
fn run_tool(program: &PathBuf, args: &[&str], limit: Duration) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| error.to_string())?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {} ms", limit.as_millis()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(error) => return Err(error.to_string()),
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|error| error.to_string())?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(stderr.lines().next().unwrap_or("failed").trim().to_string());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Reads every ruleset this host has tools for.
pub(crate) fn read_rulesets() -> Rulesets {
    let mut rulesets = Rulesets::default();
    let limit = Duration::from_secs(2);
    let mut nft_rules = Vec::new();
    match find_tool("nft") {
        Some(program) => match run_tool(&program, &["-j", "list", "ruleset"], limit) {
            Ok(json) => match parse_nft_json(&json) {
                Ok(rules) => {
                    rulesets.read.push("nft".into());
                    nft_rules = rules;
                }
                Err(error) => rulesets.unreadable.push(format!("nft: {error}")),
            },
            Err(error) => rulesets.unreadable.push(format!("nft: {error}")),
        },
        None => rulesets.unreadable.push("nft: not installed".into()),
    }

    // The plain `iptables` command is one backend or the other (Debian's alternatives); a fix
    // uses it when it reaches the rule, and names the backend's own command otherwise.
    let default_backend = find_tool("iptables")
        .and_then(|program| run_tool(&program, &["--version"], limit).ok())
        .and_then(|text| Backend::from_version(&text));
    let mut iptables_rules = Vec::new();
    let mut nft_chains_seen = Vec::new();
    for (tool, family) in [("iptables", "ip"), ("ip6tables", "ip6")] {
        // What one save dump adds: its rules and, from the nft backend, the chains it has.
        let mut take = |parsed: IptablesSave, backend: Option<Backend>| {
            if backend == Some(Backend::Nft) {
                nft_chains_seen.extend(
                    (parsed.chains.into_iter()).map(|(table, chain)| (family, table, chain)),
                );
            }
            iptables_rules.extend(parsed.rules);
        };
        let mut found_variant = false;
        for backend in [Backend::Nft, Backend::Legacy] {
            let save = format!("{tool}-{}-save", backend.suffix());
            let Some(program) = find_tool(&save) else {
                continue;
            };
            found_variant = true;
            match run_tool(&program, &[], limit) {
                Ok(text) => {
                    rulesets.read.push(save);
                    let command = if default_backend == Some(backend) {
                        tool.to_string()
                    } else {
                        format!("{tool}-{}", backend.suffix())
                    };
                    take(
                        parse_iptables_save(&text, tool, Some(backend), &command),
                        Some(backend),
                    );
                }
                Err(error) => rulesets.unreadable.push(format!("{save}: {error}")),
            }
        }
        if found_variant {
            continue;
        }
        // An iptables without the -nft/-legacy commands: its save header names the backend.
        let save = format!("{tool}-save");
        let Some(program) = find_tool(&save) else {
            continue;
        };
        match run_tool(&program, &[], limit) {
            Ok(text) => {
                rulesets.read.push(save);
                let backend = text
                    .lines()
                    .find(|line| line.starts_with("# Generated by"))
                    .and_then(Backend::from_version);
                take(parse_iptables_save(&text, tool, backend, tool), backend);
            }
            Err(error) => rulesets.unreadable.push(format!("{save}: {error}")),
        }
    }
    rulesets.blocking = merge(nft_rules, iptables_rules, &nft_chains_seen);
    rulesets
}

/// iptables-nft rules are nf_tables rules too, so `nft -j` lists them a second time, less
/// readably (`xt` targets). Where iptables-nft-save read a chain and found as many blocking
/// rules in it as nft did, its reading replaces nft's. Where the two disagree, nft's stays
/// (it sees every nf_tables rule) and iptables-nft's goes, so no rule is listed, and no fix
/// printed, twice.
fn merge(
    nft_rules: Vec<BlockingRule>,
    iptables_rules: Vec<BlockingRule>,
    iptables_nft_chains: &[(&str, String, String)],
) -> Vec<BlockingRule> {
    let mut per_chain: BTreeMap<(String, String, String), (usize, usize)> = BTreeMap::new();
    for rule in &nft_rules {
        if let Some(chain) = &rule.chain {
            per_chain.entry(chain.clone()).or_default().0 += 1;
        }
    }
    for rule in &iptables_rules {
        if let (Some(Backend::Nft), Some(chain)) = (rule.backend, &rule.chain) {
            per_chain.entry(chain.clone()).or_default().1 += 1;
        }
    }
    let read_by_iptables = |chain: &(String, String, String)| {
        iptables_nft_chains
            .iter()
            .any(|(family, table, name)| (*family, table, name) == (&chain.0, &chain.1, &chain.2))
    };
    let counts =
        |chain: &(String, String, String)| per_chain.get(chain).copied().unwrap_or_default();
    let mut merged: Vec<BlockingRule> = nft_rules
        .into_iter()
        .filter(|rule| {
            !rule.chain.as_ref().is_some_and(|chain| {
                let (nft, iptables) = counts(chain);
                read_by_iptables(chain) && nft == iptables
            })
        })
        .collect();
    merged.extend(iptables_rules.into_iter().filter(|rule| {
        let Some(chain) = rule
            .chain
            .as_ref()
            .filter(|_| rule.backend == Some(Backend::Nft))
        else {
            return true;
        };
        let (nft, iptables) = counts(chain);
        nft == iptables || nft == 0
    }));
    merged
}

/// What a table's family lets its rules see.
fn family_reach(family: &str) -> Option<(bool, bool)> {
    match family {
        "ip" => Some((true, false)),
        "ip6" => Some((false, true)),
        "inet" | "netdev" => Some((true, true)),
        // Bridged and ARP frames never cross lo.
        _ => None,
    }
}

/// Drop/reject rules and drop policies in `nft -j list ruleset` output.
pub(crate) fn parse_nft_json(json: &str) -> Result<Vec<BlockingRule>, io::Error> {
    let root: Value = serde_json::from_str(json).map_err(io::Error::other)?;
    let items = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| io::Error::other("no \"nftables\" array"))?;
    // Base chains and their hooks: a rule in a forward chain never sees loopback traffic.
    let mut hooks: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for item in items {
        if let Some(chain) = item.get("chain")
            && let Some(hook) = chain.get("hook").and_then(Value::as_str)
        {
            hooks.insert(
                (
                    text_of(chain, "family").to_string(),
                    text_of(chain, "table").to_string(),
                    text_of(chain, "name").to_string(),
                ),
                hook.to_string(),
            );
        }
    }
    let mut found = Vec::new();
    for item in items {
        if let Some(chain) = item.get("chain") {
            let policy = chain.get("policy").and_then(Value::as_str);
            let hook = chain.get("hook").and_then(Value::as_str);
            let family = text_of(chain, "family");
            if let (Some(policy @ "drop"), Some(hook), Some((ipv4, ipv6))) =
                (policy, hook, family_reach(family))
                && matches!(hook, "input" | "output" | "prerouting" | "postrouting")
            {
                let table = text_of(chain, "table");
                let name = text_of(chain, "name");
                found.push(BlockingRule {
                    tool: "nft",
                    backend: None,
                    text: format!("chain {family} {table} {name} (hook {hook}) policy {policy}"),
                    fix: Some(format!(
                        "nft insert rule {family} {table} {name} {} lo accept",
                        if matches!(hook, "output" | "postrouting") {
                            "oif"
                        } else {
                            "iif"
                        }
                    )),
                    reach: Reach::Unrestricted,
                    ipv4,
                    ipv6,
                    protocols: Protocols::ANY,
                    narrowed: false,
                    chain: Some((family.into(), table.into(), name.into())),
                });
            }
        }
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let Some(expressions) = rule.get("expr").and_then(Value::as_array) else {
            continue;
        };
        if !expressions.iter().any(is_blocking_verdict) {
            continue;
        }
        let family = text_of(rule, "family");
        let table = text_of(rule, "table");
        let chain = text_of(rule, "chain");
        let key = (family.to_string(), table.to_string(), chain.to_string());
        let (mut ipv4, mut ipv6) = family_reach(family).unwrap_or((false, false));
        let mut reach = if family_reach(family).is_none()
            || hooks.get(&key).is_some_and(|hook| hook == "forward")
        {
            Reach::Elsewhere
        } else {
            Reach::Unrestricted
        };
        let mut protocols = Protocols::ANY;
        let mut narrowed = false;
        for expression in expressions {
            if let Some(matched) = expression.get("match") {
                reach = combine(reach, match_reach(matched));
                match match_restriction(matched) {
                    Restriction::None => {}
                    Restriction::Family { v4, v6 } => {
                        ipv4 &= v4;
                        ipv6 &= v6;
                    }
                    Restriction::Protocols(set) => protocols = protocols.intersect(set),
                    Restriction::Narrowing(set) => {
                        protocols = protocols.intersect(set);
                        narrowed = true;
                    }
                }
            } else if expression
                .get("xt")
                .and_then(|xt| xt.get("type"))
                .and_then(Value::as_str)
                == Some("match")
            {
                // An iptables match extension nft cannot show (`-m conntrack`, `-m owner`...).
                narrowed = true;
            }
        }
        let handle = rule.get("handle").and_then(Value::as_u64).unwrap_or(0);
        let body: Vec<String> = expressions.iter().map(render_expression).collect();
        found.push(BlockingRule {
            tool: "nft",
            backend: None,
            text: format!(
                "{family} {table} {chain} handle {handle}: {}",
                body.join(" ")
            ),
            fix: Some(format!(
                "nft delete rule {family} {table} {chain} handle {handle}"
            )),
            reach,
            ipv4,
            ipv6,
            protocols,
            narrowed,
            chain: Some(key),
        });
    }
    Ok(found)
}

/// `drop`, `reject`, or an iptables-nft `xt` target `DROP`/`REJECT` (nft has no native form
/// for every iptables target and prints those as opaque `xt` expressions).
fn is_blocking_verdict(expression: &Value) -> bool {
    if expression.get("drop").is_some() || expression.get("reject").is_some() {
        return true;
    }
    expression.get("xt").is_some_and(|xt| {
        xt.get("type").and_then(Value::as_str) == Some("target")
            && matches!(
                xt.get("name").and_then(Value::as_str),
                Some("DROP" | "REJECT")
            )
    })
}

fn text_of<'a>(object: &'a Value, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or("?")
}

/// A rule is as specific as its most specific match: one `Elsewhere` match excludes loopback.
fn combine(so_far: Reach, next: Option<Reach>) -> Reach {
    match (so_far, next) {
        (Reach::Elsewhere, _) | (_, Some(Reach::Elsewhere)) => Reach::Elsewhere,
        (_, Some(Reach::Loopback)) | (Reach::Loopback, _) => Reach::Loopback,
        _ => Reach::Unrestricted,
    }
}

/// What one `match` says about loopback: `None` when it is about something else (ports...).
fn match_reach(matched: &Value) -> Option<Reach> {
    let op = matched.get("op").and_then(Value::as_str).unwrap_or("==");
    let left = matched.get("left")?;
    let right = matched.get("right")?;
    let key = left
        .get("meta")
        .and_then(|meta| meta.get("key"))
        .and_then(Value::as_str);
    let field = left
        .get("payload")
        .and_then(|payload| payload.get("field"))
        .and_then(Value::as_str);
    let is_loopback = if matches!(key, Some("iifname" | "oifname" | "iif" | "oif")) {
        values_of(right)
            .iter()
            .map(|value| value == "lo")
            .collect::<Vec<_>>()
    } else if matches!(field, Some("saddr" | "daddr")) {
        values_of(right)
            .iter()
            .map(|value| is_loopback_text(value))
            .collect::<Vec<_>>()
    } else {
        return None;
    };
    let any_loopback = is_loopback.iter().any(|b| *b);
    Some(match (op, any_loopback) {
        ("==" | "in", true) => Reach::Loopback,
        ("==" | "in", false) => Reach::Elsewhere,
        // `!= "eth0"` still lets lo through; `!= "lo"` excludes it.
        ("!=", true) => Reach::Elsewhere,
        _ => Reach::Unrestricted,
    })
}

/// What one `match` limits besides loopback.
enum Restriction {
    None,
    Family {
        v4: bool,
        v6: bool,
    },
    Protocols(Protocols),
    /// Ports, flags, connection state...: a narrower rule, and which protocols it implies.
    Narrowing(Protocols),
}

fn match_restriction(matched: &Value) -> Restriction {
    let op = matched.get("op").and_then(Value::as_str).unwrap_or("==");
    let (Some(left), Some(right)) = (matched.get("left"), matched.get("right")) else {
        return Restriction::Narrowing(Protocols::ANY);
    };
    let named = || {
        values_of(right)
            .iter()
            .map(|name| Protocols::named(name))
            .fold(Protocols::NONE, Protocols::union)
    };
    if let Some(key) = left
        .get("meta")
        .and_then(|meta| meta.get("key"))
        .and_then(Value::as_str)
    {
        return match key {
            "iifname" | "oifname" | "iif" | "oif" => Restriction::None,
            "l4proto" => match op {
                "==" | "in" => Restriction::Protocols(named()),
                "!=" => Restriction::Protocols(named().complement()),
                _ => Restriction::Narrowing(Protocols::ANY),
            },
            "nfproto" if matches!(op, "==" | "in") => {
                let values = values_of(right);
                Restriction::Family {
                    v4: values.iter().any(|value| value == "ipv4"),
                    v6: values.iter().any(|value| value == "ipv6"),
                }
            }
            _ => Restriction::Narrowing(Protocols::ANY),
        };
    }
    if let Some(payload) = left.get("payload") {
        let protocol = payload
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("");
        let field = payload.get("field").and_then(Value::as_str).unwrap_or("");
        return match (protocol, field) {
            ("ip", "saddr" | "daddr") => Restriction::Family {
                v4: true,
                v6: false,
            },
            ("ip6", "saddr" | "daddr") => Restriction::Family {
                v4: false,
                v6: true,
            },
            ("ip", "protocol") | ("ip6", "nexthdr") => {
                let set = match op {
                    "==" | "in" => named(),
                    "!=" => named().complement(),
                    _ => return Restriction::Narrowing(Protocols::ANY),
                };
                let mut set = set;
                if protocol == "ip" {
                    set.icmpv6 = false;
                } else {
                    set.icmp = false;
                }
                Restriction::Protocols(set)
            }
            // `th dport`: any transport header with ports.
            ("th", _) => Restriction::Narrowing(Protocols {
                tcp: true,
                udp: true,
                icmp: false,
                icmpv6: false,
            }),
            (name @ ("tcp" | "udp" | "icmp" | "icmpv6"), _) => {
                Restriction::Narrowing(Protocols::named(name))
            }
            _ => Restriction::Narrowing(Protocols::ANY),
        };
    }
    Restriction::Narrowing(Protocols::ANY)
}

/// String forms of a match's right-hand side (a value, a prefix, a set).
fn values_of(right: &Value) -> Vec<String> {
    match right {
        Value::String(text) => vec![text.clone()],
        Value::Number(number) => vec![number.to_string()],
        Value::Array(items) => items.iter().flat_map(values_of).collect(),
        Value::Object(object) => {
            if let Some(prefix) = object.get("prefix") {
                vec![format!(
                    "{}/{}",
                    prefix.get("addr").and_then(Value::as_str).unwrap_or("?"),
                    prefix.get("len").and_then(Value::as_u64).unwrap_or(0)
                )]
            } else if let Some(set) = object.get("set") {
                values_of(set)
            } else if let Some(range) = object.get("range") {
                values_of(range)
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

fn is_loopback_text(text: &str) -> bool {
    let address = text.split('/').next().unwrap_or(text);
    address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// nft-like text for one expression of a rule, enough to recognise it.
fn render_expression(expression: &Value) -> String {
    if let Some(matched) = expression.get("match") {
        let op = matched.get("op").and_then(Value::as_str).unwrap_or("==");
        let left = matched.get("left").map(render_operand).unwrap_or_default();
        let quote = matched
            .get("left")
            .and_then(|left| left.get("meta"))
            .and_then(|meta| meta.get("key"))
            .and_then(Value::as_str)
            .is_some_and(|key| key.ends_with("name"));
        let right = matched
            .get("right")
            .map(|right| render_value(right, quote))
            .unwrap_or_default();
        return if op == "==" || op == "in" {
            format!("{left} {right}")
        } else {
            format!("{left} {op} {right}")
        };
    }
    if let Some(xt) = expression.get("xt") {
        // `xt target REJECT`: what `nft list` prints for an iptables-nft target.
        return format!(
            "xt {} {}",
            xt.get("type").and_then(Value::as_str).unwrap_or("?"),
            xt.get("name").and_then(Value::as_str).unwrap_or("?")
        );
    }
    match expression
        .as_object()
        .and_then(|object| object.iter().next())
    {
        Some((key, Value::Object(inner))) if key == "reject" => match inner.get("type") {
            Some(Value::String(kind)) => format!("reject with {kind}"),
            _ => "reject".into(),
        },
        Some((key, _)) => key.clone(),
        None => expression.to_string(),
    }
}

fn render_operand(operand: &Value) -> String {
    if let Some(key) = operand
        .get("meta")
        .and_then(|meta| meta.get("key"))
        .and_then(Value::as_str)
    {
        return if matches!(key, "iifname" | "oifname" | "iif" | "oif") {
            key.to_string()
        } else {
            format!("meta {key}")
        };
    }
    if let Some(payload) = operand.get("payload") {
        return format!(
            "{} {}",
            payload
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            payload.get("field").and_then(Value::as_str).unwrap_or("?")
        );
    }
    operand.to_string()
}

/// Interface names are quoted as nft prints them; other strings (icmp, ::1) are not.
fn render_value(value: &Value, quote: bool) -> String {
    match value {
        Value::String(text) if quote => format!("\"{text}\""),
        Value::Object(object) if object.contains_key("set") => {
            format!("{{ {} }}", values_of(value).join(", "))
        }
        _ => values_of(value).join(" "),
    }
}

/// What one `iptables-save` dump held.
#[derive(Debug, Clone, Default)]
pub(crate) struct IptablesSave {
    /// The rules of the dump that drop or reject.
    pub rules: Vec<BlockingRule>,
    /// `(table, chain)` for every chain the dump declares.
    pub chains: Vec<(String, String)>,
}

/// Drop/reject rules and drop policies in `iptables-save` output. `tool` is `iptables` or
/// `ip6tables`; `command` is what the fixes call (`iptables`, `iptables-legacy`...).
pub(crate) fn parse_iptables_save(
    text: &str,
    tool: &'static str,
    backend: Option<Backend>,
    command: &str,
) -> IptablesSave {
    let mut dump = IptablesSave::default();
    let mut table = "filter".to_string();
    let family = if tool == "ip6tables" { "ip6" } else { "ip" };
    let (ipv4, ipv6) = (tool != "ip6tables", tool == "ip6tables");
    // iptables-nft keeps each table in nf_tables under the same names (`ip filter INPUT`).
    let chain_key = |table: &str, chain: &str| {
        (backend == Some(Backend::Nft))
            .then(|| (family.to_string(), table.to_string(), chain.to_string()))
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('*') {
            table = name.to_string();
        } else if let Some(policy) = line.strip_prefix(':') {
            let mut fields = policy.split_whitespace();
            let (Some(chain), Some(verdict)) = (fields.next(), fields.next()) else {
                continue;
            };
            dump.chains.push((table.clone(), chain.to_string()));
            if verdict == "DROP" && matches!(chain, "INPUT" | "OUTPUT") {
                let flag = if chain == "INPUT" { "-i" } else { "-o" };
                dump.rules.push(BlockingRule {
                    tool,
                    backend,
                    text: format!("{tool} -t {table} chain {chain} policy DROP"),
                    fix: Some(format!(
                        "{command} -t {table} -I {chain} {flag} lo -j ACCEPT"
                    )),
                    reach: Reach::Unrestricted,
                    ipv4,
                    ipv6,
                    protocols: Protocols::ANY,
                    narrowed: false,
                    chain: chain_key(&table, chain),
                });
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            // iptables-save quotes what has spaces (`--comment "allow lo"`) the way a shell
            // would, so a shell's word splitting reads it back.
            let Ok(words) = shell_words::split(rule) else {
                continue;
            };
            let target = words
                .windows(2)
                .find(|pair| pair[0] == "-j")
                .map(|pair| pair[1].as_str());
            if !matches!(target, Some("DROP" | "REJECT")) {
                continue;
            }
            let chain = words.first().cloned().unwrap_or_default();
            let mut reach = if chain == "FORWARD" {
                Reach::Elsewhere
            } else {
                Reach::Unrestricted
            };
            let mut protocols = Protocols::ANY;
            let mut narrowed = false;
            let mut index = 1;
            let mut after_target = false;
            while index < words.len() {
                let negated = words[index - 1] == "!";
                let option = words[index].as_str();
                let value = words.get(index + 1).map(String::as_str).unwrap_or("");
                match option {
                    "-i" | "-o" | "--in-interface" | "--out-interface" => {
                        reach = combine(reach, Some(negatable(negated, value == "lo")));
                    }
                    "-s" | "-d" | "--source" | "--destination" => {
                        let loopback = value.split(',').any(is_loopback_text);
                        reach = combine(reach, Some(negatable(negated, loopback)));
                    }
                    "-p" | "--protocol" => {
                        let set = Protocols::named(value);
                        protocols =
                            protocols.intersect(if negated { set.complement() } else { set });
                    }
                    "-j" => after_target = true,
                    // The protocol's own module (`-m tcp`), comments and counters narrow nothing.
                    "-m" | "--match"
                        if matches!(value, "tcp" | "udp" | "icmp" | "icmp6" | "comment") => {}
                    "-c" | "--set-counters" | "--comment" => {}
                    _ if option.starts_with('-') && !after_target && option != "!" => {
                        narrowed = true;
                    }
                    _ => {}
                }
                index += 1;
            }
            let (chain_table, chain_name) = (table.clone(), chain.clone());
            dump.rules.push(BlockingRule {
                tool,
                backend,
                text: format!("{tool} -t {table} -A {rule}"),
                fix: Some(format!("{command} -t {table} -D {rule}")),
                reach,
                ipv4,
                ipv6,
                protocols,
                narrowed,
                chain: chain_key(&chain_table, &chain_name),
            });
        }
    }
    dump
}

/// A match on lo (or a loopback address), possibly negated with `!`.
fn negatable(negated: bool, loopback: bool) -> Reach {
    match (negated, loopback) {
        (false, true) => Reach::Loopback,
        (false, false) | (true, true) => Reach::Elsewhere,
        (true, false) => Reach::Unrestricted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Output of `nft -j list ruleset` (nftables 1.0.6) for a table written by hand:
    //   chain input { type filter hook input priority 0; policy accept;
    //     iifname "lo" meta l4proto icmp drop
    //     iif lo tcp dport 22 reject with tcp reset
    //     ip saddr 127.0.0.0/8 counter drop
    //     ip6 daddr ::1 udp dport { 53, 5353 } drop }
    //   chain output { type filter hook output priority 0; policy drop; }
    const NFT: &str = r#"{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}},{"table":{"family":"inet","name":"lsdoc","handle":1}},{"chain":{"family":"inet","table":"lsdoc","name":"input","handle":1,"type":"filter","hook":"input","prio":0,"policy":"accept"}},{"chain":{"family":"inet","table":"lsdoc","name":"output","handle":2,"type":"filter","hook":"output","prio":0,"policy":"drop"}},{"rule":{"family":"inet","table":"lsdoc","chain":"input","handle":3,"expr":[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"lo"}},{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"icmp"}},{"drop":null}]}},{"rule":{"family":"inet","table":"lsdoc","chain":"input","handle":4,"expr":[{"match":{"op":"==","left":{"meta":{"key":"iif"}},"right":"lo"}},{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":22}},{"reject":{"type":"tcp reset"}}]}},{"rule":{"family":"inet","table":"lsdoc","chain":"input","handle":5,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"127.0.0.0","len":8}}}},{"counter":{"packets":0,"bytes":0}},{"drop":null}]}},{"rule":{"family":"inet","table":"lsdoc","chain":"input","handle":7,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip6","field":"daddr"}},"right":"::1"}},{"match":{"op":"==","left":{"payload":{"protocol":"udp","field":"dport"}},"right":{"set":[53,5353]}}},{"drop":null}]}}]}"#;

    #[test]
    fn names_nft_rules_that_block_loopback() {
        let rules = parse_nft_json(NFT).unwrap();
        let texts: Vec<&str> = rules.iter().map(|rule| rule.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "chain inet lsdoc output (hook output) policy drop",
                "inet lsdoc input handle 3: iifname \"lo\" meta l4proto icmp drop",
                "inet lsdoc input handle 4: iif lo tcp dport 22 reject with tcp reset",
                "inet lsdoc input handle 5: ip saddr 127.0.0.0/8 counter drop",
                "inet lsdoc input handle 7: ip6 daddr ::1 udp dport { 53, 5353 } drop",
            ]
        );
        assert_eq!(rules[0].reach, Reach::Unrestricted);
        assert!(rules[1..].iter().all(|rule| rule.reach == Reach::Loopback));
        assert_eq!(
            rules[1].fix.as_deref(),
            Some("nft delete rule inet lsdoc input handle 3")
        );
        assert_eq!(
            rules[0].fix.as_deref(),
            Some("nft insert rule inet lsdoc output oif lo accept")
        );
    }

    #[test]
    fn nft_rules_know_which_probes_they_can_hit() {
        let rules = parse_nft_json(NFT).unwrap();
        let hits = |rule: &BlockingRule| {
            [
                (false, Protocol::Tcp),
                (false, Protocol::Udp),
                (false, Protocol::Icmp),
                (true, Protocol::Tcp),
                (true, Protocol::Udp),
                (true, Protocol::Icmp),
            ]
            .map(|(ipv6, protocol)| rule.can_block(ipv6, protocol))
        };
        // The output policy: everything. `meta l4proto icmp` in an inet table: ICMP over IPv4
        // only (ICMPv6 is protocol 58, `ipv6-icmp`).
        assert_eq!(hits(&rules[0]), [true; 6]);
        assert!(!rules[0].narrowed);
        assert_eq!(hits(&rules[1]), [false, false, true, false, false, false]);
        // `tcp dport 22`: TCP of both families, narrowed to one port.
        assert_eq!(hits(&rules[2]), [true, false, false, true, false, false]);
        assert!(rules[2].narrowed);
        // `ip saddr 127.0.0.0/8`: IPv4 only; `ip6 daddr ::1 udp dport {...}`: UDP over IPv6.
        assert_eq!(hits(&rules[3]), [true, true, true, false, false, false]);
        assert!(!rules[3].narrowed);
        assert_eq!(hits(&rules[4]), [false, false, false, false, true, false]);
    }

    // `nft -j list ruleset` (nftables 1.0.6) after `iptables -A INPUT -i lo -p tcp -j REJECT`
    // with iptables 1.8.9 (nf_tables): the target is an opaque `xt` expression.
    const IPTABLES_NFT_JSON: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "filter", "handle": 1}}, {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}, {"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 2, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}, {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"counter": {"packets": 0, "bytes": 0}}, {"xt": {"type": "target", "name": "REJECT"}}]}}]}"#;
    // `iptables-nft-save` of the same ruleset.
    const IPTABLES_NFT_SAVE: &str = "# Generated by iptables-nft-save v1.8.9 (nf_tables) on Mon Nov 30 15:44:20 2026\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -p tcp -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n# Completed on Mon Nov 30 15:44:20 2026\n";

    #[test]
    fn iptables_nft_reject_is_a_blocking_rule_in_nft_json() {
        let rules = parse_nft_json(IPTABLES_NFT_JSON).unwrap();
        assert_eq!(rules.len(), 1, "{rules:?}");
        let rule = &rules[0];
        assert_eq!(
            rule.text,
            "ip filter INPUT handle 2: iifname \"lo\" meta l4proto tcp counter xt target REJECT"
        );
        assert_eq!(rule.reach, Reach::Loopback);
        assert!(rule.can_block(false, Protocol::Tcp));
        assert!(!rule.can_block(false, Protocol::Udp));
        assert!(
            !rule.can_block(true, Protocol::Tcp),
            "an ip table sees no IPv6"
        );
    }

    #[test]
    fn iptables_nft_save_replaces_nfts_reading_of_the_same_rule() {
        let nft = parse_nft_json(IPTABLES_NFT_JSON).unwrap();
        let saved = parse_iptables_save(
            IPTABLES_NFT_SAVE,
            "iptables",
            Some(Backend::Nft),
            "iptables",
        );
        let seen: Vec<(&str, String, String)> = saved
            .chains
            .iter()
            .map(|(table, chain)| ("ip", table.clone(), chain.clone()))
            .collect();
        let merged = merge(nft, saved.rules, &seen);
        assert_eq!(merged.len(), 1, "{merged:?}");
        assert_eq!(
            merged[0].text,
            "iptables -t filter -A INPUT -i lo -p tcp -j REJECT --reject-with icmp-port-unreachable"
        );
        assert_eq!(merged[0].source(), "iptables-nft");
        assert_eq!(
            merged[0].fix.as_deref(),
            Some(
                "iptables -t filter -D INPUT -i lo -p tcp -j REJECT --reject-with icmp-port-unreachable"
            )
        );
        // Without iptables-nft-save (not installed), nft's own reading stays.
        let nft = parse_nft_json(IPTABLES_NFT_JSON).unwrap();
        let merged = merge(nft, Vec::new(), &[]);
        assert_eq!(merged.len(), 1);
        assert_eq!(
            merged[0].fix.as_deref(),
            Some("nft delete rule ip filter INPUT handle 2")
        );
    }

    #[test]
    fn legacy_rules_are_kept_beside_nft_ones() {
        let nft = parse_nft_json(NFT).unwrap();
        let count = nft.len();
        let legacy = parse_iptables_save(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -p tcp -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n",
            "iptables",
            Some(Backend::Legacy),
            "iptables-legacy",
        );
        let merged = merge(nft, legacy.rules, &[]);
        assert_eq!(merged.len(), count + 1);
        let last = merged.last().unwrap();
        assert_eq!(last.source(), "iptables-legacy");
        assert_eq!(
            last.fix.as_deref(),
            Some(
                "iptables-legacy -t filter -D INPUT -i lo -p tcp -j REJECT --reject-with icmp-port-unreachable"
            )
        );
    }

    #[test]
    fn rules_for_other_interfaces_do_not_count_as_loopback() {
        let json = r#"{"nftables":[{"rule":{"family":"ip","table":"f","chain":"in","handle":9,"expr":[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"eth0"}},{"drop":null}]}},{"rule":{"family":"ip","table":"f","chain":"in","handle":10,"expr":[{"match":{"op":"!=","left":{"meta":{"key":"iifname"}},"right":"lo"}},{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"127.0.0.0","len":8}}}},{"drop":null}]}},{"rule":{"family":"ip","table":"f","chain":"in","handle":11,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":23}},{"drop":null}]}}]}"#;
        let reaches: Vec<Reach> = parse_nft_json(json)
            .unwrap()
            .iter()
            .map(|rule| rule.reach)
            .collect();
        // eth0 only; the anti-spoofing rule "not from lo but to 127/8" (RFC 1122); any interface.
        assert_eq!(
            reaches,
            [Reach::Elsewhere, Reach::Elsewhere, Reach::Unrestricted]
        );
        assert!(parse_nft_json("{}").is_err());
        assert!(parse_nft_json("not json").is_err());
    }

    #[test]
    fn forward_chains_and_bridge_tables_never_see_loopback() {
        let json = r#"{"nftables":[{"chain":{"family":"inet","table":"t","name":"fwd","handle":1,"type":"filter","hook":"forward","prio":0,"policy":"drop"}},{"rule":{"family":"inet","table":"t","chain":"fwd","handle":2,"expr":[{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"tcp"}},{"drop":null}]}},{"rule":{"family":"bridge","table":"b","chain":"in","handle":3,"expr":[{"drop":null}]}}]}"#;
        let rules = parse_nft_json(json).unwrap();
        assert_eq!(rules.len(), 2, "a forward policy is not listed");
        assert!(rules.iter().all(|rule| rule.reach == Reach::Elsewhere));
    }

    #[test]
    fn iptables_save_rules_and_policies() {
        let text = "# Generated by iptables-save v1.8.9 (legacy)\n*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -p tcp -j DROP\n-A INPUT -i eth0 -j REJECT --reject-with icmp-port-unreachable\n-A INPUT ! -i lo -d 127.0.0.0/8 -j DROP\n-A INPUT -p udp --dport 53 -j DROP\n-A INPUT -i lo -j ACCEPT\n-A INPUT -i lo -m comment --comment \"no icmp on lo\" -p icmp -j DROP\n-A FORWARD -i lo -j DROP\nCOMMIT\n";
        let rules = parse_iptables_save(text, "iptables", Some(Backend::Legacy), "iptables").rules;
        let summary: Vec<(&str, Reach)> = rules
            .iter()
            .map(|rule| (rule.text.as_str(), rule.reach))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "iptables -t filter chain INPUT policy DROP",
                    Reach::Unrestricted
                ),
                (
                    "iptables -t filter -A INPUT -i lo -p tcp -j DROP",
                    Reach::Loopback
                ),
                (
                    "iptables -t filter -A INPUT -i eth0 -j REJECT --reject-with icmp-port-unreachable",
                    Reach::Elsewhere
                ),
                (
                    "iptables -t filter -A INPUT ! -i lo -d 127.0.0.0/8 -j DROP",
                    Reach::Elsewhere
                ),
                (
                    "iptables -t filter -A INPUT -p udp --dport 53 -j DROP",
                    Reach::Unrestricted
                ),
                (
                    "iptables -t filter -A INPUT -i lo -m comment --comment \"no icmp on lo\" -p icmp -j DROP",
                    Reach::Loopback
                ),
                (
                    "iptables -t filter -A FORWARD -i lo -j DROP",
                    Reach::Elsewhere
                ),
            ]
        );
        assert_eq!(
            rules[1].fix.as_deref(),
            Some("iptables -t filter -D INPUT -i lo -p tcp -j DROP")
        );
        assert!(rules[1].can_block(false, Protocol::Tcp) && !rules[1].narrowed);
        assert!(!rules[1].can_block(false, Protocol::Udp));
        assert!(
            !rules[1].can_block(true, Protocol::Tcp),
            "iptables is IPv4 only"
        );
        assert!(rules[4].narrowed, "a port match narrows");
        assert!(rules[4].can_block(false, Protocol::Udp));
        assert!(!rules[5].narrowed, "a comment does not narrow");
        assert!(rules[5].can_block(false, Protocol::Icmp));
        assert!(!rules[5].can_block(false, Protocol::Tcp));
    }

    #[test]
    fn ip6tables_icmpv6_is_protocol_58() {
        let rules = parse_iptables_save(
            "*filter\n-A INPUT -i lo -p ipv6-icmp -j DROP\n",
            "ip6tables",
            Some(Backend::Nft),
            "ip6tables",
        )
        .rules;
        assert!(rules[0].can_block(true, Protocol::Icmp));
        assert!(!rules[0].can_block(false, Protocol::Icmp));
        assert_eq!(
            rules[0].fix.as_deref(),
            Some("ip6tables -t filter -D INPUT -i lo -p ipv6-icmp -j DROP")
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_rulesets_never_panic(text in ".{0,300}") {
            let _ = parse_iptables_save(&text, "iptables", None, "iptables");
            let _ = parse_nft_json(&text);
        }
    }
}
