//! `loopscope bfd udp://PEER`: a BFD speaker (RFC 5880, single hop RFC 5881, multihop RFC
//! 5883); `bfd --sbfd DISC udp://PEER`: a Seamless BFD initiator (RFC 7880, RFC 7881).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use loopscope_measure::bfd::session::{AuthConfig, SessionConfig};
use loopscope_measure::bfd::{self, InitiatorConfig, Retime, SpeakerConfig};
use loopscope_report::units::parse_duration;
use loopscope_report::{Outcome, Printer};
use loopscope_wire::bfd::{AuthType, CONTROL_PORT, MULTIHOP_PORT, SBFD_PORT};

use crate::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The peer: udp://ADDR[:PORT] (3784, or 4784 with --multihop, 7784 with --sbfd). We
    /// receive on the same port of --local.
    pub endpoint: String,
    /// The address to send from and receive on (default: any).
    #[arg(long, value_name = "ADDR")]
    pub local: Option<IpAddr>,
    /// Desired Min TX Interval once Up.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub min_tx: Duration,
    /// Required Min RX Interval.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub min_rx: Duration,
    /// Detect Mult.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..))]
    pub multiplier: u8,
    /// Wait for the peer to speak first (the passive role).
    #[arg(long)]
    pub passive: bool,
    /// Ask for Demand mode: the peer stops its periodic packets once both are Up, and a Poll
    /// Sequence checks the path every --demand-poll (RFC 5880 §6.6).
    #[arg(long)]
    pub demand: bool,
    /// With --demand: how often a Poll Sequence checks the path (no Final within a Detection
    /// Time is a Down).
    #[arg(long, value_name = "INTERVAL", default_value = "1s", value_parser = parse_duration, requires = "demand")]
    pub demand_poll: Duration,
    /// Send under SCHED_FIFO (needs root or CAP_SYS_NICE), so a busy host does not delay
    /// our packets past their schedule.
    #[arg(long)]
    pub realtime: bool,
    /// Multihop (RFC 5883): port 4784, no TTL check on receive.
    #[arg(long)]
    pub multihop: bool,
    /// Authentication: TYPE:KEYID:SECRETFILE, TYPE one of simple, md5, meticulous-md5, sha1,
    /// meticulous-sha1; the file holds the password or key (a final newline is ignored).
    #[arg(long, value_name = "TYPE:KEYID:FILE")]
    pub auth: Option<String>,
    /// Stop after this many Control packets sent.
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// Stop after this long.
    #[arg(short = 'w', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Change the timers during the run with a Poll Sequence: AFTER:MIN_TX:MIN_RX:MULTIPLIER,
    /// e.g. 5s:100ms:100ms:3.
    #[arg(long, value_name = "AFTER:TX:RX:MULT")]
    pub retime: Option<String>,
    /// Also run the echo function once Up: send echo packets at this interval (or the peer's
    /// Required Min Echo RX Interval, when longer) and report their round trip. A session whose
    /// echoes stop coming back for Detect Mult intervals goes Down with diagnostic 2.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration)]
    pub echo: Option<Duration>,
    /// How echo packets come back: `forwarding` sends them to the peer's link-layer address
    /// with our own address as IP source and destination, so its forwarding plane routes them
    /// back (RFC 5881 §4; needs root or CAP_NET_RAW, and a peer that forwards); `port` sends
    /// them to the peer's UDP port 3785, where `reflect --bfd-echo` loops them; `auto` is
    /// `forwarding`, or `port` toward a peer reached over a loopback interface.
    #[arg(long, value_name = "HOW", default_value = "auto", requires = "echo", value_parser = parse_echo_via)]
    pub echo_via: bfd::EchoVia,
    /// Advertise this Required Min Echo RX Interval, so the peer may run its echo function
    /// through this host: its echo packets are looped by this host's forwarding plane
    /// (net.ipv4.ip_forward=1), not by loopscope.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration)]
    pub echo_rx: Option<Duration>,
    /// Be a Seamless BFD initiator toward this reflector discriminator (default port 7784).
    #[arg(long, value_name = "DISCRIMINATOR", conflicts_with_all = ["passive", "demand", "auth", "multihop", "echo", "echo_rx", "retime"])]
    pub sbfd: Option<u32>,
    /// Print only the summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--echo-via`: one line when wrong (clap's own list of values would take three).
fn parse_echo_via(text: &str) -> Result<bfd::EchoVia, String> {
    match text {
        "auto" => Ok(bfd::EchoVia::Auto),
        "forwarding" => Ok(bfd::EchoVia::Forwarding),
        "port" => Ok(bfd::EchoVia::Port),
        _ => Err("not one of auto, forwarding, port".to_string()),
    }
}

/// Reads `TYPE:KEYID:SECRETFILE`.
pub fn parse_auth(text: &str) -> anyhow::Result<AuthConfig> {
    let mut parts = text.splitn(3, ':');
    let (Some(kind), Some(key_id), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("--auth '{text}' is not TYPE:KEYID:SECRETFILE (e.g. sha1:1:/etc/bfd.key)");
    };
    let auth_type = match kind.to_ascii_lowercase().as_str() {
        "simple" | "password" => AuthType::SimplePassword,
        "md5" | "keyed-md5" => AuthType::KeyedMd5,
        "meticulous-md5" => AuthType::MeticulousKeyedMd5,
        "sha1" | "keyed-sha1" => AuthType::KeyedSha1,
        "meticulous-sha1" => AuthType::MeticulousKeyedSha1,
        other => bail!(
            "--auth type '{other}' is not one of simple, md5, meticulous-md5, sha1, meticulous-sha1"
        ),
    };
    let key_id: u8 = key_id
        .parse()
        .with_context(|| format!("--auth key ID '{key_id}' is not 0..=255"))?;
    let mut key = loopscope_report::input::read_bounded(std::path::Path::new(file), 4096)
        .with_context(|| format!("--auth secret file '{file}'"))?;
    if key.last() == Some(&b'\n') {
        key.pop();
    }
    auth_type
        .check_key(&key)
        .with_context(|| format!("--auth secret in '{file}'"))?;
    Ok(AuthConfig {
        auth_type,
        key_id,
        key,
    })
}

fn parse_retime(text: &str) -> anyhow::Result<Retime> {
    let parts: Vec<&str> = text.split(':').collect();
    let [after, tx, rx, mult] = parts[..] else {
        bail!("--retime '{text}' is not AFTER:MIN_TX:MIN_RX:MULTIPLIER (e.g. 5s:100ms:100ms:3)");
    };
    let duration =
        |part: &str| parse_duration(part).with_context(|| format!("--retime '{text}': '{part}'"));
    let detect_mult: u8 = mult
        .parse()
        .ok()
        .filter(|&m| m > 0)
        .with_context(|| format!("--retime '{text}': multiplier '{mult}' is not 1..=255"))?;
    Ok(Retime {
        after: duration(after)?,
        desired_min_tx: duration(tx)?,
        required_min_rx: duration(rx)?,
        detect_mult,
    })
}

/// Intervals are carried in microseconds in 32 bits (RFC 5880 §4.1).
fn check_interval(name: &str, value: Duration) -> anyhow::Result<()> {
    if value.is_zero() || value.as_micros() > u128::from(u32::MAX) {
        bail!("{name} must be between 1us and 4294s (a 32-bit count of microseconds)");
    }
    Ok(())
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    let default_port = if args.sbfd.is_some() {
        SBFD_PORT
    } else if args.multihop {
        MULTIHOP_PORT
    } else {
        CONTROL_PORT
    };
    let peer = super::stamp::parse_udp(&args.endpoint, default_port)?;
    check_interval("--min-tx", args.min_tx)?;
    check_interval("--min-rx", args.min_rx)?;
    check_interval("--demand-poll", args.demand_poll)?;
    if let Some(echo) = args.echo {
        check_interval("--echo", echo)?;
    }
    if let Some(echo_rx) = args.echo_rx {
        check_interval("--echo-rx", echo_rx)?;
    }
    let mut printer = Printer::stdout(context.format);
    let quiet = args.quiet;
    if let Some(discriminator) = args.sbfd {
        if discriminator == 0 {
            bail!("--sbfd 0: a discriminator is never zero (RFC 5880 §6.8.1)");
        }
        let config = InitiatorConfig {
            peer,
            local: args.local,
            remote_discriminator: discriminator,
            interval: args.min_tx,
            detect_mult: args.multiplier,
            count: args.count,
            duration: args.duration,
        };
        let summary = bfd::sbfd_initiate(&config, &context.stop, |event| {
            if !quiet {
                let _ = printer.emit(&event);
            }
        })?;
        printer.emit(&summary)?;
        return Ok(Outcome::from_passed(summary.passed));
    }
    let auth = args.auth.as_deref().map(parse_auth).transpose()?;
    let retime = args.retime.as_deref().map(parse_retime).transpose()?;
    if let Some(retime) = &retime {
        check_interval("--retime MIN_TX", retime.desired_min_tx)?;
        check_interval("--retime MIN_RX", retime.required_min_rx)?;
    }
    let config = SpeakerConfig {
        peer,
        local: args.local,
        multihop: args.multihop,
        session: SessionConfig {
            desired_min_tx: args.min_tx,
            required_min_rx: args.min_rx,
            detect_mult: args.multiplier,
            passive: args.passive,
            demand: args.demand,
            required_min_echo_rx: args.echo_rx.unwrap_or(Duration::ZERO),
            auth,
        },
        count: args.count,
        duration: args.duration,
        retime,
        echo: args.echo,
        echo_via: args.echo_via,
        demand_poll: args.demand.then_some(args.demand_poll),
        realtime: args.realtime,
    };
    let summary = bfd::speak(&config, &context.stop, |event| {
        if !quiet {
            let _ = printer.emit(&event);
        }
    })
    .with_context(|| format!("bfd {}", args.endpoint))?;
    printer.emit(&summary)?;
    Ok(Outcome::from_passed(summary.passed))
}

/// The BFD far ends `reflect` offers: `--bfd` (the passive responder), `--sbfd DISC` (the
/// S-BFD reflector) and `--bfd-echo` (the echo function's loop).
#[derive(clap::Args, Debug, Default)]
pub struct ReflectArgs {
    /// Be a passive BFD responder on udp://ADDR[:3784] (4784 with --bfd-multihop): answer every
    /// peer that opens a session. With --bfd-echo it also loops echo packets back on port
    /// 3785 of the same address and advertises a Required Min Echo RX Interval.
    #[arg(long, conflicts_with = "sbfd")]
    pub bfd: bool,
    /// Be a Seamless BFD reflector for this discriminator on udp://ADDR[:7784] (repeat for more).
    #[arg(long, value_name = "DISCRIMINATOR", conflicts_with = "bfd_echo")]
    pub sbfd: Vec<u32>,
    /// Loop BFD echo packets back to their sender on udp://ADDR[:3785].
    #[arg(long)]
    pub bfd_echo: bool,
    /// --bfd: also answer on this local address (repeatable); sessions are told apart by
    /// local address, peer address and discriminator. The endpoint `udp://0.0.0.0` (or
    /// `udp://[::]`) answers on every local address. A link-local address names its
    /// interface: fe80::1%eth0.
    #[arg(long, value_name = "ADDR", requires = "bfd")]
    pub bfd_listen: Vec<String>,
    /// --bfd: advertise this Required Min Echo RX Interval without looping echo packets here:
    /// peers run their echo function through this host's forwarding plane
    /// (net.ipv4.ip_forward=1), as RFC 5881 §4 means it. (--bfd-echo advertises --bfd-min-rx
    /// and loops them on port 3785.)
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration, requires = "bfd", conflicts_with = "bfd_echo")]
    pub bfd_echo_rx: Option<Duration>,
    /// --bfd: run under SCHED_FIFO (needs root or CAP_SYS_NICE), so a busy host does not
    /// delay the sessions' packets past their Detection Time.
    #[arg(long, requires = "bfd")]
    pub bfd_realtime: bool,
    /// --bfd: multihop (RFC 5883), no TTL check.
    #[arg(long)]
    pub bfd_multihop: bool,
    /// --bfd: Desired Min TX Interval once Up.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub bfd_min_tx: Duration,
    /// --bfd: Required Min RX Interval (also what --sbfd advertises).
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub bfd_min_rx: Duration,
    /// --bfd: Detect Mult.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..))]
    pub bfd_multiplier: u8,
    /// --bfd: authentication, TYPE:KEYID:SECRETFILE as for `bfd --auth`.
    #[arg(long, value_name = "TYPE:KEYID:FILE")]
    pub bfd_auth: Option<String>,
}

impl ReflectArgs {
    pub fn any(&self) -> bool {
        self.bfd || !self.sbfd.is_empty() || self.bfd_echo
    }
}

/// `rate_limit_pps` is `reflect --rate-limit`: the S-BFD reflector and the echo loop are
/// datagram services of the one reflector and keep its per-source limit.
pub fn run_reflect(
    endpoint: &str,
    args: &ReflectArgs,
    rate_limit_pps: u32,
    context: &Context,
) -> anyhow::Result<Outcome> {
    let mut printer = Printer::stdout(context.format);
    let mut print = |event: bfd::BfdEvent| {
        let _ = printer.emit(&event);
    };
    if !args.sbfd.is_empty() {
        if args.sbfd.contains(&0) {
            bail!("--sbfd 0: a discriminator is never zero (RFC 5880 §6.8.1)");
        }
        check_interval("--bfd-min-rx", args.bfd_min_rx)?;
        let config = bfd::ReflectorConfig {
            listen: super::stamp::parse_udp(endpoint, SBFD_PORT)?,
            discriminators: args.sbfd.clone(),
            min_rx: args.bfd_min_rx,
            rate_limit_pps,
        };
        let summary = bfd::sbfd_reflect(&config, &context.stop, &mut print)
            .with_context(|| format!("S-BFD reflector on {endpoint}"))?;
        Printer::stdout(context.format).emit(&summary)?;
        return Ok(Outcome::Passed);
    }
    if args.bfd_echo && !args.bfd {
        let listen = super::stamp::parse_udp(endpoint, loopscope_wire::bfd::ECHO_PORT)?;
        let summary = bfd::echo_reflect(listen, rate_limit_pps, &context.stop, &mut print)
            .with_context(|| format!("BFD echo on {endpoint}"))?;
        Printer::stdout(context.format).emit(&summary)?;
        return Ok(Outcome::Passed);
    }
    check_interval("--bfd-min-tx", args.bfd_min_tx)?;
    check_interval("--bfd-min-rx", args.bfd_min_rx)?;
    if let Some(echo_rx) = args.bfd_echo_rx {
        check_interval("--bfd-echo-rx", echo_rx)?;
    }
    let auth = args.bfd_auth.as_deref().map(parse_auth).transpose()?;
    let port = if args.bfd_multihop {
        MULTIHOP_PORT
    } else {
        CONTROL_PORT
    };
    let listen = super::stamp::parse_udp(endpoint, port)?;
    // The echo loop runs beside the responder on its own thread; it ends with the same flag.
    let echo = if args.bfd_echo {
        let mut echo_listen = listen;
        echo_listen.set_port(loopscope_wire::bfd::ECHO_PORT);
        let stop = std::sync::Arc::clone(&context.stop);
        Some(std::thread::spawn(move || {
            bfd::echo_reflect(echo_listen, rate_limit_pps, &stop, |_| {})
        }))
    } else {
        None
    };
    let mut addresses = vec![listen];
    for text in &args.bfd_listen {
        let (ip, zone) =
            loopscope_link::parse_zoned_ip(text).with_context(|| format!("--bfd-listen {text}"))?;
        if matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()) && zone == 0 {
            bail!("--bfd-listen {text}: a link-local address needs its interface, as {ip}%eth0");
        }
        addresses.push(bfd::scoped(ip, listen.port(), zone));
    }
    let config = bfd::ResponderConfig {
        listen: addresses,
        multihop: args.bfd_multihop,
        session: SessionConfig {
            desired_min_tx: args.bfd_min_tx,
            required_min_rx: args.bfd_min_rx,
            detect_mult: args.bfd_multiplier,
            passive: true,
            demand: false,
            required_min_echo_rx: if args.bfd_echo {
                args.bfd_min_rx
            } else {
                args.bfd_echo_rx.unwrap_or(Duration::ZERO)
            },
            auth,
        },
        realtime: args.bfd_realtime,
    };
    let result = bfd::respond(&config, &context.stop, &mut print);
    if let Some(echo) = echo {
        context
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        match echo.join() {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => bail!("BFD echo on {endpoint}: {error}"),
            Err(_) => bail!("BFD echo on {endpoint}: the echo thread panicked"),
        }
    }
    let summary = result.with_context(|| format!("BFD responder on {endpoint}"))?;
    Printer::stdout(context.format).emit(&summary)?;
    Ok(Outcome::Passed)
}
