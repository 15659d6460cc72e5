//! `loopscope stamp udp://HOST[:862]`: a STAMP Session-Sender (RFC 8762, unauthenticated);
//! `loopscope stamp --reflect udp://ADDR[:862]`: a stateless Session-Reflector.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context as _, bail};
use loopscope_measure::stamp::TimestampFormat;
use loopscope_measure::stamp::{self, ReflectorConfig, SenderConfig, SenderEvent, StampSummary};
use loopscope_report::{Outcome, Printer, Record};
use serde::Serialize;

use crate::Context;

/// The STAMP port (RFC 8762 §4.1).
const STAMP_PORT: u16 = 862;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FormatArg {
    /// NTP 64-bit (Z = 0).
    Ntp,
    /// PTPv2 truncated (Z = 1).
    Ptp,
}

/// An RFC 8972 TLV to ask for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TlvArg {
    /// Location (§4.2).
    Location,
    /// Timestamp Information (§4.3).
    TimestampInfo,
    /// Direct Measurement (§4.5).
    Direct,
    /// Access Report (§4.6).
    AccessReport,
    /// Follow-Up Telemetry (§4.7).
    FollowUp,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The reflector to test: udp://HOST[:PORT] (port 862 by default).
    #[arg(required_unless_present = "reflect")]
    pub endpoint: Option<String>,
    /// Be the Session-Reflector on udp://ADDR[:PORT] instead (port 0 picks a free one, printed).
    #[arg(long, value_name = "udp://ADDR[:PORT]", conflicts_with = "endpoint")]
    pub reflect: Option<String>,
    /// Stop after this many packets (default: until Ctrl-C).
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// Time between packets, e.g. 1s, 1ms, 100us.
    #[arg(short = 'i', long, default_value = "1s", value_parser = super::ping::parse_duration)]
    pub interval: Duration,
    /// Test packet length in octets (at least 44, or 112 with --auth; the rest is zero
    /// padding). Default: the minimum.
    #[arg(short = 's', long)]
    pub size: Option<usize>,
    /// Authenticated mode (RFC 8762 §4.2.2): HMAC-SHA-256 with the key in this file (its
    /// bytes, less one trailing newline). Sender and reflector must use the same key.
    #[arg(long, value_name = "KEYFILE")]
    pub auth: Option<std::path::PathBuf>,
    /// Append an RFC 8972 Extra Padding TLV of this many octets (instead of --size padding).
    #[arg(long, value_name = "OCTETS", conflicts_with = "size")]
    pub tlv_padding: Option<u16>,
    /// Append an RFC 8972 Class of Service TLV: the reflector reports the DSCP and ECN our
    /// packets arrived with (DSCP1, the DSCP asked for the reply, is --dscp or 0).
    #[arg(long, conflicts_with = "size")]
    pub cos: bool,
    /// Class of Service TLV asking the reflector to send its replies with this DSCP (DSCP1,
    /// RFC 8972 §4.4); the replies' DSCP is reported. Implies --cos.
    #[arg(long, value_name = "DSCP", value_parser = clap::value_parser!(u8).range(0..=63), conflicts_with = "size")]
    pub reply_dscp: Option<u8>,
    /// Ask for RFC 8972 TLVs (comma-separated): location (the addresses and ports the
    /// reflector saw), timestamp-info (how it takes T2 and T3), direct (packet counters of both
    /// ends: loss per direction), access-report, follow-up (the kernel's transmit timestamp of
    /// the previous reply).
    #[arg(long, value_enum, value_delimiter = ',', conflicts_with = "size")]
    pub tlv: Vec<TlvArg>,
    /// Append an RFC 8972 HMAC TLV (§4.8) protecting the TLVs; needs --auth.
    #[arg(long, requires = "auth", conflicts_with = "size")]
    pub tlv_hmac: bool,
    /// TWAMP-Light (RFC 5357 Appendix I): the same test packets, 41 octets at least, no TLVs.
    /// On the reflector: answer TWAMP-Light senders (requests of 41 octets and more).
    #[arg(long, conflicts_with_all = ["auth", "cos", "tlv_padding", "tlv", "reply_dscp"])]
    pub twamp_light: bool,
    /// Reflector: be stateful (RFC 8762 §4.3), numbering each session's replies from 0; a
    /// session silent this long starts again (e.g. 30s).
    #[arg(long, value_name = "TIMEOUT", value_parser = super::ping::parse_duration)]
    pub stateful: Option<Duration>,
    /// Sender: the reflector is stateful, so report loss per direction from its numbers.
    #[arg(long)]
    pub stateful_reflector: bool,
    /// Sender: you state that sender and reflector read one clock (e.g. two network
    /// namespaces of one host), so the summary gives the one-way delays even when the Error
    /// Estimates say the clocks are not synchronised. A one-way delay below zero still
    /// withholds them: that is evidence against the statement.
    #[arg(long, conflicts_with = "reflect")]
    pub same_clock: bool,
    /// How long to wait for replies after the last packet.
    #[arg(short = 'W', long, default_value = "2s", value_parser = super::ping::parse_duration)]
    pub timeout: Duration,
    /// Timestamp format.
    #[arg(long, value_enum, default_value = "ntp")]
    pub timestamp: FormatArg,
    /// DSCP of the test packets (0-63).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=63))]
    pub dscp: Option<u8>,
    /// TTL (IPv4) or hop limit (IPv6) of the test packets (1-255).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=255))]
    pub ttl: Option<u8>,
    /// Set don't-fragment (IPv4), do not fragment (IPv6): a packet larger than the path MTU
    /// fails to send instead.
    #[arg(long)]
    pub df: bool,
    /// Print only the summary.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Sender: also write an HTML report with plots (delay per direction, the round-trip
    /// histogram) to FILE.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<std::path::PathBuf>,
    /// Reflector: answer sources and bind addresses other than loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Reflector: packets answered per second per source address (0: no limit).
    #[arg(long, default_value_t = 200_000, value_name = "PPS")]
    pub rate_limit: u32,
    /// Reflector: drop every Nth packet instead of answering it (loss injection for tests).
    #[arg(long, value_name = "N")]
    pub drop_every: Option<u64>,
    /// Send (or reflect) under SCHED_FIFO (needs root or CAP_SYS_NICE), so other processes on
    /// a busy host do not stall the schedule or the replies for a scheduler tick at a time.
    #[arg(long)]
    pub realtime: bool,
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    if let Some(listen) = &args.reflect {
        return run_reflector(listen, &args, context);
    }
    let endpoint = args.endpoint.as_deref().unwrap_or_default();
    let target = parse_udp(endpoint, STAMP_PORT)?;
    let auth = read_key(&args)?;
    if args.realtime {
        stamp::enter_realtime()?;
    }
    let mut tlvs = stamp::RequestTlvs::new();
    if args.cos || args.reply_dscp.is_some() {
        tlvs.class_of_service(args.reply_dscp.or(args.dscp).unwrap_or(0));
    }
    for request in &args.tlv {
        tlvs.request(match request {
            TlvArg::Location => stamp::TlvRequest::Location,
            TlvArg::TimestampInfo => stamp::TlvRequest::TimestampInformation,
            TlvArg::Direct => stamp::TlvRequest::DirectMeasurement,
            TlvArg::AccessReport => stamp::TlvRequest::AccessReport,
            TlvArg::FollowUp => stamp::TlvRequest::FollowUpTelemetry,
        });
    }
    if let Some(len) = args.tlv_padding {
        tlvs.extra_padding(len);
    }
    if args.tlv_hmac {
        tlvs.hmac();
    }
    let size = args.size.unwrap_or(
        if auth.is_some() {
            stamp::MIN_AUTH_PACKET_LEN
        } else if args.twamp_light {
            stamp::MIN_TWAMP_LIGHT_LEN
        } else {
            stamp::MIN_PACKET_LEN
        } + tlvs.len(),
    );
    let config = SenderConfig {
        target,
        count: args.count,
        interval: args.interval,
        size,
        timeout: args.timeout,
        format: match args.timestamp {
            FormatArg::Ntp => TimestampFormat::Ntp,
            FormatArg::Ptp => TimestampFormat::Ptp,
        },
        send_options: stamp::SendOptions {
            ttl: args.ttl,
            dscp: args.dscp,
            dont_fragment: args.df,
        },
        auth,
        tlvs,
        twamp_light: args.twamp_light,
        stateful_reflector: args.stateful_reflector,
        same_clock: args.same_clock,
    };
    let mut printer = Printer::stdout(context.format);
    if !printer.is_json() && !args.quiet {
        loopscope_report::stdout_line!(
            "STAMP {target}: {} octets, {:?} timestamps{}",
            size,
            config.format,
            if config.auth.is_some() {
                ", authenticated"
            } else {
                ""
            }
        )?;
    }
    let quiet = args.quiet;
    let run = stamp::send(&config, &context.stop, |event| {
        let _ = match event {
            SenderEvent::Reply(reply) if !quiet => printer.emit(reply),
            SenderEvent::Reply(_) => Ok(()),
            SenderEvent::T3FollowUp(corrected) if !quiet => printer.emit(corrected),
            SenderEvent::T3FollowUp(_) => Ok(()),
            SenderEvent::SendFailed(failed) => printer.emit(failed),
        };
    })?;
    let summary = StampSummary::new(&target.to_string(), &run);
    printer.emit(&summary)?;
    if let Some(path) = &args.report {
        use loopscope_report::html;
        let numbered = |values: &[f64]| -> Vec<(f64, f64)> {
            values
                .iter()
                .enumerate()
                .map(|(index, value)| ((index + 1) as f64, *value))
                .collect()
        };
        let mut report = html::HtmlReport::new(format!("loopscope stamp {target}"));
        report
            .parameter("target", target)
            .parameter(
                "count",
                args.count.map_or("until stopped".into(), |c| c.to_string()),
            )
            .parameter("interval", format!("{:?}", args.interval))
            .parameter("size", format!("{size} octets"))
            .parameter("timestamps", format!("{:?}", config.format));
        let mut sorted = run.rtt_us.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            sorted
                .get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0.0)
        };
        report.plot(
            "Delay per direction (one-way figures need synchronised clocks; on loopback they are)",
            html::series_plot(
                "reply",
                "delay (µs)",
                &[
                    ("forward (sender to reflector)", numbered(&run.forward_us)),
                    ("backward (reflector to sender)", numbered(&run.backward_us)),
                    ("round trip", numbered(&run.rtt_us)),
                ],
                true,
            )?,
        );
        report.plot(
            "Round-trip histogram",
            html::latency_histogram(&run.rtt_us, &[("p50", at(0.5)), ("p99", at(0.99))])?,
        );
        report.summary(&summary)?;
        std::fs::write(path, report.render())
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    Ok(Outcome::from_passed(summary.passed))
}

/// One STAMP reflector to run, from flags or a configuration file.
pub struct ReflectorSpec {
    /// `udp://ADDR[:PORT]`.
    pub listen: String,
    /// How it answers.
    pub config: ReflectorConfig,
}

/// A STAMP reflector's summary while several run: an event, the total is the summary.
#[derive(Serialize)]
struct OneReflector<'a>(&'a stamp::ReflectorSummary);

impl Record for OneReflector<'_> {
    fn kind(&self) -> &'static str {
        "stamp_reflector"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        self.0.write_human(out)
    }
}

/// Runs STAMP Session-Reflectors on the one reflector (`loopscope-link::reflector`): its
/// loop keeps the rules of every datagram service (reserved source ports, echo loops, the
/// per-source rate limit, no reply longer than the request) and STAMP answers.
pub fn run_reflectors(
    specs: Vec<ReflectorSpec>,
    rate_limit_pps: u32,
    quiet: bool,
    realtime: bool,
    context: &Context,
) -> anyhow::Result<Outcome> {
    use loopscope_link::reflector::{DEFAULT_RATE_BURST, ReflectConfig, ReflectEvent, Reflector};
    use std::sync::{Arc, Mutex};
    if realtime {
        // Before the reflector's threads start: they inherit the policy.
        stamp::enter_realtime()?;
    }
    let mut reflector = Reflector::new(ReflectConfig {
        rate_limit_pps,
        rate_burst: (rate_limit_pps / 5).max(DEFAULT_RATE_BURST),
        ..ReflectConfig::default()
    });
    let mut served = Vec::new();
    for spec in specs {
        let address = parse_udp(&spec.listen, STAMP_PORT)?;
        if !spec.config.allow_remote && !address.ip().is_loopback() {
            bail!(
                "refusing to reflect on {address}: not a loopback address (pass --allow-remote to answer other hosts)"
            );
        }
        let responder = stamp::StampResponder::new(spec.config);
        let counters = responder.counters();
        let (endpoint, loop_counts) = reflector
            .add_responder(address, Box::new(responder))
            .with_context(|| format!("binding the STAMP reflector on {address}"))?;
        served.push((endpoint, loop_counts, counters));
    }
    let printer = Arc::new(Mutex::new(Printer::stdout(context.format)));
    let sink_printer = Arc::clone(&printer);
    let events = Arc::new(move |event: ReflectEvent| {
        if quiet && matches!(event, ReflectEvent::Refused { .. }) {
            return;
        }
        if let Ok(mut printer) = sink_printer.lock() {
            let _ = printer.emit(&super::reflect::EventRecord(event));
        }
    });
    reflector.run(Arc::clone(&context.stop), events);
    let summaries: Vec<stamp::ReflectorSummary> = served
        .iter()
        .map(|(endpoint, loop_counts, counters)| {
            stamp::ReflectorSummary::new(endpoint, loop_counts.read(), counters)
        })
        .collect();
    let mut printer = printer
        .lock()
        .map_err(|_| anyhow::anyhow!("the output is poisoned"))?;
    if let [one] = summaries.as_slice() {
        printer.emit(one)?;
    } else {
        for summary in &summaries {
            printer.emit(&OneReflector(summary))?;
        }
        printer.emit(&stamp::ReflectorSummary::total(&summaries))?;
    }
    Ok(Outcome::Passed)
}

fn run_reflector(listen: &str, args: &Args, context: &Context) -> anyhow::Result<Outcome> {
    let config = ReflectorConfig {
        allow_remote: args.allow_remote,
        drop_every: args.drop_every,
        twamp_light: args.twamp_light,
        stateful_timeout: args.stateful,
        max_request_len: None,
        auth: read_key(args)?,
    };
    run_reflectors(
        vec![ReflectorSpec {
            listen: listen.to_owned(),
            config,
        }],
        args.rate_limit,
        false,
        args.realtime,
        context,
    )
}

fn read_key(args: &Args) -> anyhow::Result<Option<stamp::StampKey>> {
    args.auth
        .as_deref()
        .map(stamp::StampKey::from_file)
        .transpose()
        .map_err(Into::into)
}

/// `udp://HOST[:PORT]`, `udp://[v6][:PORT]`, `udp://[fe80::1%IFACE][:PORT]`, `udp:HOST`.
pub fn parse_udp(text: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    let rest = text
        .get(..4)
        .filter(|scheme| scheme.eq_ignore_ascii_case("udp:"))
        .map(|_| &text[4..])
        .with_context(|| format!("'{text}' is not a udp:// endpoint (try udp://127.0.0.1:862)"))?;
    let rest = rest
        .strip_prefix("//")
        .unwrap_or(rest)
        .trim_end_matches('/');
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .with_context(|| format!("'{text}': unclosed '['"))?;
        (host, after.strip_prefix(':'))
    } else if rest.matches(':').count() > 1 {
        (rest, None)
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .with_context(|| format!("'{port}' in '{text}' is not a port"))?,
        None => default_port,
    };
    if host.is_empty() {
        bail!("'{text}' names no host (try udp://127.0.0.1:{default_port})");
    }
    // An IPv6 address with a zone, or a link-local one that needs it: the interface is part
    // of the address (RFC 4007 §11).
    if host.contains('%') || host.parse::<std::net::IpAddr>().is_ok() {
        let (ip, zone) = loopscope_link::parse_zoned_ip(host)
            .map_err(|error| anyhow::anyhow!("'{text}': {error}"))?;
        return match ip {
            std::net::IpAddr::V6(v6) if zone == 0 && v6.is_unicast_link_local() => {
                bail!("'{text}': {v6} is link-local: say on which interface, as udp://[{v6}%eth0]")
            }
            std::net::IpAddr::V6(v6) => Ok(SocketAddr::V6(std::net::SocketAddrV6::new(
                v6, port, 0, zone,
            ))),
            std::net::IpAddr::V4(_) => Ok(SocketAddr::new(ip, port)),
        };
    }
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .with_context(|| {
            format!("'{host}' in '{text}' is neither an address nor a name that resolves")
        })
}

#[cfg(test)]
mod tests {
    use super::parse_udp;

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_udp("udp://127.0.0.1", 862).unwrap(),
            "127.0.0.1:862".parse().unwrap()
        );
        assert_eq!(
            parse_udp("udp://[::1]:8620", 862).unwrap(),
            "[::1]:8620".parse().unwrap()
        );
        assert_eq!(
            parse_udp("UDP:127.0.0.2:9", 862).unwrap(),
            "127.0.0.2:9".parse().unwrap()
        );
        assert!(parse_udp("tcp://127.0.0.1", 862).is_err());
        assert!(parse_udp("udp://", 862).is_err());
        assert!(parse_udp("udp://127.0.0.1:99999", 862).is_err());
    }

    #[test]
    fn link_local_addresses_carry_their_interface() {
        let scoped = parse_udp("udp://[fe80::1%lo]", 3784).unwrap();
        let std::net::SocketAddr::V6(v6) = scoped else {
            panic!("{scoped}")
        };
        assert_eq!(v6.ip().to_string(), "fe80::1");
        assert_eq!((v6.port(), v6.scope_id()), (3784, 1), "lo is interface 1");
        let error = parse_udp("udp://[fe80::1]:3784", 3784)
            .unwrap_err()
            .to_string();
        assert!(error.contains("say on which interface"), "{error}");
        let error = parse_udp("udp://[fe80::1%nosuchif9]", 3784)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no interface 'nosuchif9'"), "{error}");
        let error = parse_udp("udp://10.0.0.1%lo", 3784)
            .unwrap_err()
            .to_string();
        assert!(error.contains("only IPv6"), "{error}");
    }
}
