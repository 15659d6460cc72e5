//! Firewall rules that can drop or reject loopback traffic, read from `nft -j list ruleset`
//! and (for iptables-legacy) `iptables-save` / `ip6tables-save`.

use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How sure we are that a rule hits loopback traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Matches only other traffic (another interface, non-loopback addresses).
    Elsewhere,
    /// Matches no interface or address at all, so loopback packets can hit it.
    Unrestricted,
    /// Names `lo` or a loopback address.
    Loopback,
}

/// A rule (or chain policy) whose verdict is drop or reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingRule {
    /// Where it comes from: `nft` or `iptables`/`ip6tables`.
    pub tool: &'static str,
    /// Human-readable, e.g. `inet filter input handle 3: iifname "lo" meta l4proto icmp drop`.
    pub text: String,
    /// The command that deletes it (or opens the policy), when we can say.
    pub fix: Option<String>,
    pub reach: Reach,
}

/// What reading the rulesets gave.
#[derive(Debug, Clone, Default)]
pub struct Rulesets {
    /// The tools that were read (`nft`, `iptables-save`, ...).
    pub read: Vec<String>,
    /// Why a tool could not be read (missing binary, permission).
    pub unreadable: Vec<String>,
    pub blocking: Vec<BlockingRule>,
}

/// Finds an executable in PATH or the sbin directories (which a non-root PATH may lack).
pub fn find_tool(name: &str) -> Option<PathBuf> {
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
pub fn read_rulesets() -> Rulesets {
    let mut rulesets = Rulesets::default();
    let limit = Duration::from_secs(2);
    let nft = find_tool("nft");
    match &nft {
        Some(program) => match run_tool(program, &["-j", "list", "ruleset"], limit) {
            Ok(json) => match parse_nft_json(&json) {
                Ok(rules) => {
                    rulesets.read.push("nft".into());
                    rulesets.blocking.extend(rules);
                }
                Err(error) => rulesets.unreadable.push(format!("nft: {error}")),
            },
            Err(error) => rulesets.unreadable.push(format!("nft: {error}")),
        },
        None => rulesets.unreadable.push("nft: not installed".into()),
    }
    for (tool, label) in [
        ("iptables-save", "iptables"),
        ("ip6tables-save", "ip6tables"),
    ] {
        let Some(program) = find_tool(tool) else {
            continue;
        };
        match run_tool(&program, &[], limit) {
            Ok(text) => {
                // iptables-nft rules are nftables rules too: nft already showed them.
                if text.contains("nf_tables") && rulesets.read.iter().any(|r| r == "nft") {
                    continue;
                }
                rulesets.read.push(tool.into());
                rulesets.blocking.extend(parse_iptables_save(&text, label));
            }
            Err(error) => rulesets.unreadable.push(format!("{tool}: {error}")),
        }
    }
    rulesets
}

/// Drop/reject rules and drop policies in `nft -j list ruleset` output.
pub fn parse_nft_json(json: &str) -> Result<Vec<BlockingRule>, io::Error> {
    let root: Value = serde_json::from_str(json).map_err(io::Error::other)?;
    let items = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| io::Error::other("no \"nftables\" array"))?;
    let mut found = Vec::new();
    for item in items {
        if let Some(chain) = item.get("chain") {
            let policy = chain.get("policy").and_then(Value::as_str);
            let hook = chain.get("hook").and_then(Value::as_str);
            if let (Some(policy @ "drop"), Some(hook)) = (policy, hook)
                && matches!(hook, "input" | "output" | "prerouting" | "postrouting")
            {
                let family = text_of(chain, "family");
                let table = text_of(chain, "table");
                let name = text_of(chain, "name");
                found.push(BlockingRule {
                    tool: "nft",
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
                });
            }
        }
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let Some(expressions) = rule.get("expr").and_then(Value::as_array) else {
            continue;
        };
        let blocks = expressions.iter().any(|expression| {
            expression.get("drop").is_some() || expression.get("reject").is_some()
        });
        if !blocks {
            continue;
        }
        let mut reach = Reach::Unrestricted;
        for expression in expressions {
            if let Some(matched) = expression.get("match") {
                reach = combine(reach, match_reach(matched));
            }
        }
        let family = text_of(rule, "family");
        let table = text_of(rule, "table");
        let chain = text_of(rule, "chain");
        let handle = rule.get("handle").and_then(Value::as_u64).unwrap_or(0);
        let body: Vec<String> = expressions.iter().map(render_expression).collect();
        found.push(BlockingRule {
            tool: "nft",
            text: format!(
                "{family} {table} {chain} handle {handle}: {}",
                body.join(" ")
            ),
            fix: Some(format!(
                "nft delete rule {family} {table} {chain} handle {handle}"
            )),
            reach,
        });
    }
    Ok(found)
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

/// Drop/reject rules and drop policies in `iptables-save` output.
pub fn parse_iptables_save(text: &str, tool: &'static str) -> Vec<BlockingRule> {
    let mut found = Vec::new();
    let mut table = "filter".to_string();
    let command = if tool == "ip6tables" {
        "ip6tables"
    } else {
        "iptables"
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
            if verdict == "DROP" && matches!(chain, "INPUT" | "OUTPUT") {
                let flag = if chain == "INPUT" { "-i" } else { "-o" };
                found.push(BlockingRule {
                    tool,
                    text: format!("{tool} -t {table} chain {chain} policy DROP"),
                    fix: Some(format!(
                        "{command} -t {table} -I {chain} {flag} lo -j ACCEPT"
                    )),
                    reach: Reach::Unrestricted,
                });
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let words: Vec<&str> = rule.split_whitespace().collect();
            let target = words
                .windows(2)
                .find(|pair| pair[0] == "-j")
                .map(|pair| pair[1]);
            if !matches!(target, Some("DROP" | "REJECT")) {
                continue;
            }
            let mut reach = Reach::Unrestricted;
            let mut index = 0;
            while index + 1 < words.len() {
                let negated = index > 0 && words[index - 1] == "!";
                let value = words[index + 1];
                let verdict = match words[index] {
                    "-i" | "-o" => Some(value == "lo"),
                    "-s" | "-d" => Some(value.split(',').any(is_loopback_text)),
                    _ => None,
                };
                if let Some(loopback) = verdict {
                    let this = match (negated, loopback) {
                        (false, true) => Reach::Loopback,
                        (false, false) | (true, true) => Reach::Elsewhere,
                        (true, false) => Reach::Unrestricted,
                    };
                    reach = combine(reach, Some(this));
                }
                index += 1;
            }
            found.push(BlockingRule {
                tool,
                text: format!("{tool} -t {table} -A {rule}"),
                fix: Some(format!("{command} -t {table} -D {rule}")),
                reach,
            });
        }
    }
    found
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
    fn iptables_save_rules_and_policies() {
        let text = "# Generated by iptables-save v1.8.9 (legacy)\n*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -p tcp -j DROP\n-A INPUT -i eth0 -j REJECT --reject-with icmp-port-unreachable\n-A INPUT ! -i lo -d 127.0.0.0/8 -j DROP\n-A INPUT -p udp --dport 53 -j DROP\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n";
        let rules = parse_iptables_save(text, "iptables");
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
            ]
        );
        assert_eq!(
            rules[1].fix.as_deref(),
            Some("iptables -t filter -D INPUT -i lo -p tcp -j DROP")
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_rulesets_never_panic(text in ".{0,300}") {
            let _ = parse_iptables_save(&text, "iptables");
            let _ = parse_nft_json(&text);
        }
    }
}
