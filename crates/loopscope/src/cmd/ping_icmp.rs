//! `loopscope ping icmp://ADDR`: ICMP echo through a datagram ("ping") socket where
//! `net.ipv4.ping_group_range` allows it, a raw socket otherwise. `LOOPSCOPE_ICMP_SOCKET=raw|dgram`
//! forces one kind.

use std::io::{self, Write};
use std::net::{IpAddr, ToSocketAddrs};

use anyhow::{Context as _, bail};
use loopscope_host::icmp::{self, EchoSocket, PingConfig, PingEvent, SocketChoice};
use loopscope_report::rtt::PingReply;
use loopscope_report::{Outcome, Printer, Record};
use serde::Serialize;

use crate::Context;

/// Largest ICMP payload in one IPv4 datagram (65535 - 20 - 8).
const MAX_PAYLOAD: usize = 65_507;

pub fn run(args: &super::ping::Args, context: &Context) -> anyhow::Result<Outcome> {
    let target = parse_target(&args.endpoint)?;
    if args.size < icmp::socket::STAMP_LEN || args.size > MAX_PAYLOAD {
        bail!(
            "--size {} is out of range: ICMP payloads here are {}..={} bytes (the first {} carry the stamp that matches replies)",
            args.size,
            icmp::socket::STAMP_LEN,
            MAX_PAYLOAD,
            icmp::socket::STAMP_LEN
        );
    }
    let choice = match &args.socket {
        Some(kind) => kind.parse::<SocketChoice>().context("--socket")?,
        None => SocketChoice::from_env().context("LOOPSCOPE_ICMP_SOCKET")?,
    };
    let config = PingConfig {
        target,
        count: args.count,
        interval: args.interval,
        payload_len: args.size,
        timeout: args.timeout,
        deadline: args.deadline,
    };
    let mut socket = EchoSocket::open(target, choice)?;
    let mut printer = Printer::stdout(context.format);
    let target_text = target.to_string();
    if !printer.is_json() {
        loopscope_report::stdout_line!(
            "PING {target_text}: {} data bytes, {} ICMP socket",
            args.size,
            socket.kind().name()
        )?;
    }
    let quiet = args.quiet;
    let run = icmp::ping(&mut socket, &config, &context.stop, |event| match event {
        PingEvent::Reply {
            reply,
            rtt,
            duplicate,
        } => {
            if !quiet {
                let _ = printer.emit(&PingReply {
                    from: reply.from.to_string(),
                    seq: reply.sequence,
                    bytes: reply.bytes,
                    rtt_us: rtt.as_secs_f64() * 1e6,
                    ttl: reply.ttl,
                    duplicate: *duplicate,
                });
            }
        }
        PingEvent::SendFailed { sequence, error } => {
            let _ = printer.emit(&SendFailed {
                seq: *sequence,
                error: error.clone(),
            });
        }
    })?;
    let mut summary = run
        .recorder
        .summary(&target_text, run.elapsed.as_secs_f64());
    summary
        .extra
        .insert("socket_kind".into(), run.kind.name().into());
    if let Some(error) = &run.send_error {
        summary
            .extra
            .insert("send_error".into(), error.clone().into());
    }
    let passed = summary.passed;
    printer.emit(&summary)?;
    Ok(Outcome::from_passed(passed))
}

/// `icmp://127.0.0.1`, `icmp://[::1]`, `icmp:localhost`, `icmp://[fe80::1%lo]` is not supported.
fn parse_target(endpoint: &str) -> anyhow::Result<IpAddr> {
    let rest = endpoint
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("icmp:"))
        .map(|_| &endpoint[5..])
        .with_context(|| format!("'{endpoint}' is not an icmp: endpoint"))?;
    let host = rest
        .strip_prefix("//")
        .unwrap_or(rest)
        .trim_end_matches('/');
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        bail!("'{endpoint}' names no address (try icmp://127.0.0.1 or icmp://[::1])");
    }
    if let Ok(address) = host.parse::<IpAddr>() {
        return Ok(address);
    }
    (host, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .map(|address| address.ip())
        .with_context(|| {
            format!("'{host}' in '{endpoint}' is neither an address nor a name that resolves")
        })
}

/// A request that could not be sent (firewall, no route).
#[derive(Serialize)]
struct SendFailed {
    seq: u64,
    error: String,
}

impl Record for SendFailed {
    fn kind(&self) -> &'static str {
        "send_error"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "seq={}: send failed: {}", self.seq, self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_target;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_target("icmp://127.0.0.1").unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            parse_target("ICMP://[::1]").unwrap(),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            parse_target("icmp:127.0.0.2").unwrap(),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert!(parse_target("icmp://").is_err());
        assert!(parse_target("tcp://127.0.0.1").is_err());
        assert!(parse_target("icmp://no-such-host.invalid").is_err());
    }
}
