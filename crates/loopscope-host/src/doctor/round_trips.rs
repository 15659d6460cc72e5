//! The doctor's round trips through loopback: TCP and UDP echo, a BERT and a latency figure.
//! Each runs the engines users run with `ping` and `bert` (`loopscope-measure`) over the same
//! links, against the same reflector as `loopscope reflect` (`loopscope_link::reflector`),
//! started in this process on a free port of the address under test. Every wait is bounded, so
//! a firewall that drops packets costs a timeout, never a hang.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use loopscope_link::reflector::{ReflectConfig, Reflector};
use loopscope_link::{Endpoint, LinkError};
use loopscope_measure::bert::{self, Amount, BertControl, BertOptions, BertSummary};
use loopscope_measure::ping::{self, LinkPinger, PingConfig, PingOutcome};
use loopscope_pattern::{PatternKind, PatternSpec};
use loopscope_report::rtt::PingSummary;

/// A completed round trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundTrip {
    /// Bytes of the frame that went round.
    pub bytes: usize,
    /// How long it took.
    pub rtt: Duration,
}

/// A reflector serving one endpoint on its own thread until dropped.
struct RunningReflector {
    endpoint: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RunningReflector {
    /// Reflects `scheme` (`tcp` or `udp`) on a free port of `address`.
    fn start(scheme: &str, address: IpAddr) -> Result<Self, LinkError> {
        let endpoint = Endpoint::parse(&format!("{scheme}://{}", SocketAddr::new(address, 0)))?;
        let reflector = Reflector::bind(&endpoint, false, ReflectConfig::default())?;
        let endpoint = reflector
            .endpoints()
            .into_iter()
            .next()
            .ok_or_else(|| LinkError::Unsupported("the reflector bound nothing".into()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("doctor reflect {scheme}"))
            .spawn(move || {
                reflector.run(thread_stop, Arc::new(|_| {}));
            })
            .map_err(|error| LinkError::io("cannot start the reflector thread", error))?;
        Ok(RunningReflector {
            endpoint,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for RunningReflector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The operating system's error inside a link error, so that callers can tell a timeout from
/// an unassigned address by kind.
fn into_io(error: LinkError) -> io::Error {
    match error {
        LinkError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

/// Pings through a fresh reflector on `address`; `connect_options` go on the client endpoint.
fn ping_through(
    scheme: &str,
    address: IpAddr,
    connect_options: &str,
    config: &PingConfig,
) -> io::Result<PingOutcome> {
    let reflector = RunningReflector::start(scheme, address).map_err(into_io)?;
    let endpoint = format!("{}{connect_options}", reflector.endpoint);
    let link = loopscope_link::open(&endpoint).map_err(into_io)?;
    let mut pinger = LinkPinger::new(link).map_err(into_io)?;
    let never = AtomicBool::new(false);
    let outcome = ping::run(&mut pinger, config, &never, &mut |_| {});
    drop(pinger);
    drop(reflector);
    Ok(outcome)
}

/// The fastest round trip in `outcome`, or why there was none.
fn first_round_trip(
    outcome: &PingOutcome,
    no_reply: impl FnOnce() -> String,
) -> io::Result<RoundTrip> {
    if let Some(failure) = &outcome.link_failure {
        return Err(match failure.io_error() {
            Some(error) => io::Error::new(error.kind(), error.to_string()),
            None => io::Error::new(io::ErrorKind::UnexpectedEof, failure.to_string()),
        });
    }
    let summary = &outcome.summary;
    if summary.received == 0 {
        return Err(io::Error::new(io::ErrorKind::TimedOut, no_reply()));
    }
    if summary.errors > 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the echo came back altered",
        ));
    }
    Ok(RoundTrip {
        bytes: summary.extra["payload_bytes"]
            .as_u64()
            .map_or(0, |payload| payload as usize + FRAME_OVERHEAD),
        rtt: Duration::from_secs_f64(summary.rtt_min_us.max(0.0) / 1e6),
    })
}

/// Bytes a ping frame adds to its payload (header and CRC).
const FRAME_OVERHEAD: usize =
    loopscope_wire::ping_frame::HEADER_LEN + loopscope_wire::ping_frame::TRAILER_LEN;

/// Connects to a reflector on `address` and sends two 1 KiB frames through it, one after the
/// other; the faster round trip is reported (the first also pays for the reflector accepting
/// the connection and starting its thread).
pub(super) fn tcp_round_trip(address: IpAddr, timeout: Duration) -> io::Result<RoundTrip> {
    let config = PingConfig {
        count: Some(2),
        interval: Duration::ZERO,
        payload: 1024 - FRAME_OVERHEAD,
        timeout,
        deadline: None,
        stop_after_replies: None,
    };
    let connect = format!("?connect_timeout={}", timeout.as_secs_f64());
    let outcome = ping_through("tcp", address, &connect, &config)?;
    first_round_trip(&outcome, || "timed out".into())
}

/// Sends 512-byte frames in datagrams to a reflector on `address`, each as soon as the last
/// came back or was given up after a third of `timeout`, until two came back (at most 3
/// tries); the faster round trip is reported.
pub(super) fn udp_round_trip(address: IpAddr, timeout: Duration) -> io::Result<RoundTrip> {
    let per_try = (timeout / 3).max(Duration::from_millis(50));
    let config = PingConfig {
        count: Some(3),
        interval: Duration::ZERO,
        payload: 512 - FRAME_OVERHEAD,
        timeout: per_try,
        deadline: None,
        stop_after_replies: Some(2),
    };
    let outcome = ping_through("udp", address, "", &config)?;
    first_round_trip(&outcome, || {
        format!("no datagram came back within {} ms", per_try.as_millis())
    })
}

/// Sends `bytes` of PRBS31 through a TCP reflector on `address` with the `bert` engine.
pub(super) fn tcp_bert(address: IpAddr, bytes: u64, timeout: Duration) -> io::Result<BertSummary> {
    let reflector = RunningReflector::start("tcp", address).map_err(into_io)?;
    let endpoint = format!(
        "{}?connect_timeout={}",
        reflector.endpoint,
        timeout.as_secs_f64()
    );
    let link = loopscope_link::open(&endpoint).map_err(into_io)?;
    let options = BertOptions {
        amount: Amount::Bits(bytes.saturating_mul(8)),
        drain_timeout: timeout,
        ..BertOptions::new(PatternSpec::standard(PatternKind::Prbs31))
    };
    let summary = bert::run(
        link,
        &options,
        &BertControl::default(),
        &mut |_| {},
        &mut |_, _| {},
    )
    .map_err(into_io)?;
    drop(reflector);
    Ok(summary)
}

/// `count` ping-pongs of `size`-byte frames through a TCP reflector on `address`, with the
/// `ping` engine (one outstanding at a time).
pub(super) fn tcp_latency(
    address: IpAddr,
    count: u32,
    size: usize,
    timeout: Duration,
) -> io::Result<PingSummary> {
    let config = PingConfig {
        count: Some(u64::from(count)),
        interval: Duration::ZERO,
        payload: size.saturating_sub(FRAME_OVERHEAD),
        timeout,
        deadline: None,
        stop_after_replies: None,
    };
    let connect = format!("?connect_timeout={}", timeout.as_secs_f64());
    let outcome = ping_through("tcp", address, &connect, &config)?;
    if let Some(failure) = &outcome.link_failure {
        return Err(io::Error::other(failure.to_string()));
    }
    if outcome.summary.received < u64::from(count) {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{} of {count} round trips got no answer within {} ms",
                u64::from(count) - outcome.summary.received,
                timeout.as_millis()
            ),
        ));
    }
    Ok(outcome.summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn tcp_and_udp_round_trips_on_127_0_0_1() {
        let timeout = Duration::from_secs(2);
        let tcp = tcp_round_trip(Ipv4Addr::LOCALHOST.into(), timeout).unwrap();
        assert_eq!(tcp.bytes, 1024);
        assert!(tcp.rtt > Duration::ZERO);
        let udp = udp_round_trip(Ipv4Addr::LOCALHOST.into(), timeout).unwrap();
        assert_eq!(udp.bytes, 512);
    }

    #[test]
    fn bert_and_latency_through_the_reflector() {
        let timeout = Duration::from_secs(5);
        let summary = tcp_bert(Ipv4Addr::LOCALHOST.into(), 1 << 20, timeout).unwrap();
        assert_eq!(summary.bytes_received, 1 << 20);
        assert_eq!(summary.check.bit_errors, 0);
        let latency = tcp_latency(Ipv4Addr::LOCALHOST.into(), 20, 64, timeout).unwrap();
        assert_eq!((latency.transmitted, latency.received), (20, 20));
    }

    #[test]
    fn an_address_that_is_not_ours_fails_by_kind() {
        // 192.0.2.1 (TEST-NET-1, RFC 5737) is not assigned here: binding the reflector fails.
        let error =
            tcp_round_trip("192.0.2.1".parse().unwrap(), Duration::from_millis(200)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrNotAvailable, "{error}");
    }
}
