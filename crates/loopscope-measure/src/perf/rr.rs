//! Request-response: each stream keeps N requests in flight; every response that comes back
//! is one transaction, timed from its request. `crr` opens a new TCP connection for each
//! transaction (connect, cookie, request, response, close).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use loopscope_sys::{CpuTime, thread_cpu_time};

use super::PerfError;
use super::client::{
    ClientOptions, Ending, assemble, connect_stream, end_test, exchange_results, local_results,
    worker_cpu,
};
use super::control::{Control, ControlError, Cookie, StreamSock};
use super::report::{Percentiles, PerfSummary, StreamSummary, UdpFigures, nanos_histogram};
use super::stream::{DataSocket, Stream, monotonic_now};
use super::udp;
use loopscope_link::adapter::impair::{Impairer, ImpairmentConfig};

/// Request-response transactions (`--rr`, `--crr`), as netperf's TCP_RR and TCP_CRR
/// measure them.
#[derive(Debug, Clone)]
pub struct RrOptions {
    /// Requests each stream keeps outstanding.
    pub inflight: usize,
    /// Bytes of each response (the request's length is the client's `length`).
    pub response_length: usize,
    /// A new TCP connection for every transaction.
    pub connect_per_transaction: bool,
}

/// The largest request or response.
pub const MAX_MESSAGE: usize = 1 << 20;
/// What one stream may keep in flight, requests and responses together: beyond the socket
/// buffers a stream would deadlock (both sides blocked writing).
pub const MAX_INFLIGHT_BYTES: usize = 1 << 20;

const POLL: Duration = Duration::from_millis(100);

struct StreamOutcome {
    transactions: u64,
    /// UDP requests that got no response in time.
    lost: u64,
    latency: Histogram<u64>,
    error: Option<String>,
}

pub(super) fn run_rr_client(
    options: &ClientOptions,
    rr: &RrOptions,
    control: Control,
    streams: Vec<Arc<Stream>>,
    stop: &AtomicBool,
    cpu_before: CpuTime,
    cookie: Cookie,
) -> Result<PerfSummary, PerfError> {
    let started = Instant::now();
    let deadline = started + options.duration;
    let finish = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for stream in &streams {
        let stream = Arc::clone(stream);
        let finish = Arc::clone(&finish);
        let rr = rr.clone();
        let length = options.length;
        let crr_options = rr.connect_per_transaction.then(|| options.clone());
        let impair = options.impair.clone();
        let worker = std::thread::Builder::new()
            .name(format!("perf-rr-{}", stream.id))
            .spawn(move || {
                let cpu = thread_cpu_time().unwrap_or_default();
                let outcome = match (&crr_options, &stream.socket) {
                    (Some(options), _) => {
                        crr_stream(options, &cookie, &stream, &rr, length, &finish)
                    }
                    (None, DataSocket::Udp(socket)) => {
                        rr_datagrams(socket, &stream, &rr, length, impair, &finish)
                    }
                    (None, DataSocket::Stream(_)) => rr_stream(&stream, &rr, length, &finish),
                };
                if let Ok(mut slot) = stream.cpu.lock() {
                    *slot = thread_cpu_time().unwrap_or_default().since(cpu);
                }
                stream.finished.store(true, Ordering::Release);
                outcome
            })
            .map_err(|e| PerfError::io("cannot start a stream thread", e))?;
        workers.push(worker);
    }
    let mut ending = Ending::Finished;
    loop {
        if stop.load(Ordering::Relaxed) {
            ending = Ending::Interrupted;
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if streams.iter().all(|s| s.finished.load(Ordering::Acquire)) {
            ending = Ending::Failed("every stream ended early".into());
            break;
        }
        match control.readable_within(deadline.saturating_duration_since(now).min(POLL)) {
            Ok(true) => {
                ending = Ending::Failed("the server spoke during the test (it ended it)".into());
                break;
            }
            Ok(false) => {}
            Err(error) => {
                ending = Ending::Failed(error.to_string());
                break;
            }
        }
    }
    finish.store(true, Ordering::Relaxed);
    let mut latency = nanos_histogram();
    let mut per_stream = Vec::new();
    for worker in workers {
        let outcome = worker.join().unwrap_or_else(|_| StreamOutcome {
            transactions: 0,
            lost: 0,
            latency: nanos_histogram(),
            error: Some("the stream thread panicked".into()),
        });
        let _ = latency.add(&outcome.latency);
        per_stream.push(outcome);
    }
    let run_seconds = started.elapsed().as_secs_f64();
    for stream in &streams {
        stream.socket.finish_sending();
    }
    let mut ended_early = ending.reason();
    let mut peer = None;
    if ending.exchange_results() {
        let retransmits: Vec<Option<u64>> = streams.iter().map(|s| s.retransmits()).collect();
        let result = end_test(&control).and_then(|()| {
            let cpu =
                thread_cpu_time().unwrap_or_default().since(cpu_before) + worker_cpu(&streams);
            exchange_results(
                &control,
                &local_results(&streams, cpu, run_seconds, &retransmits, None),
            )
        });
        match result {
            Ok(results) => peer = Some(results),
            Err(error) => ended_early = Some(error.to_string()),
        }
    }
    for stream in &streams {
        stream.socket.close_both();
    }
    let cpu = thread_cpu_time().unwrap_or_default().since(cpu_before) + worker_cpu(&streams);
    let summaries = streams
        .iter()
        .zip(&per_stream)
        .map(|(stream, outcome)| {
            let bytes = stream.bytes();
            StreamSummary {
                id: stream.id,
                direction: "send",
                bytes,
                seconds: run_seconds,
                bits_per_second: bytes as f64 * 8.0 / run_seconds.max(1e-9),
                peer_bytes: peer
                    .as_ref()
                    .and_then(|p| p.streams.iter().find(|s| s.id == stream.id))
                    .map(|s| s.bytes),
                retransmits: stream.retransmits(),
                rtt_us: stream.socket.tcp_info().map(|i| i.rtt_us),
                rttvar_us: stream.socket.tcp_info().map(|i| i.rttvar_us),
                snd_cwnd_bytes: None,
                // Over UDP a transaction whose request or response was lost times out.
                udp: stream
                    .socket
                    .is_datagram()
                    .then(|| UdpFigures::new(outcome.transactions, outcome.lost as i64, None, 0.0)),
                zerocopy: None,
                error: outcome.error.clone().or_else(|| stream.error()),
            }
        })
        .collect();
    let transactions: u64 = per_stream.iter().map(|o| o.transactions).sum();
    let passed = ending.passed() && transactions > 0;
    let mut summary = assemble(
        &options.link,
        if options.udp {
            "udp"
        } else if matches!(options.transport, super::client::Transport::Unix(_)) {
            "unix"
        } else {
            "tcp"
        },
        "send",
        if rr.connect_per_transaction {
            "crr"
        } else {
            "rr"
        },
        run_seconds,
        summaries,
        Vec::new(),
        cpu,
        peer.as_ref(),
        ended_early,
        passed,
    );
    let percentiles = Percentiles::from_nanos(&latency);
    summary.transactions = Some(transactions);
    summary.transactions_per_second = Some(transactions as f64 / run_seconds.max(1e-9));
    summary.rtt_p50_us = percentiles.map(|p| p.p50_us);
    summary.rtt_p99_us = percentiles.map(|p| p.p99_us);
    summary.latency = percentiles;
    Ok(summary)
}

/// Writes all of `data`, watching `finish` between timeouts.
fn write_all(socket: &StreamSock, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match (&*socket).write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => data = &data[count..],
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn is_retry(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Reads exactly `buffer.len()` bytes; `Ok(false)` on end of stream or when `give_up` says so.
fn read_exact(
    socket: &StreamSock,
    buffer: &mut [u8],
    give_up: &dyn Fn() -> bool,
) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match (&*socket).read(&mut buffer[filled..]) {
            Ok(0) => return Ok(false),
            Ok(count) => filled += count,
            Err(e) if is_retry(&e) => {
                if give_up() {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn rr_stream(stream: &Stream, rr: &RrOptions, length: usize, finish: &AtomicBool) -> StreamOutcome {
    let mut outcome = StreamOutcome {
        transactions: 0,
        lost: 0,
        latency: nanos_histogram(),
        error: None,
    };
    let DataSocket::Stream(socket) = &stream.socket else {
        outcome.error = Some("request-response runs over stream sockets".into());
        return outcome;
    };
    let _ = socket.set_read_timeout(Some(POLL));
    let _ = socket.set_write_timeout(Some(POLL));
    let request = vec![0x52u8; length];
    let mut response = vec![0u8; rr.response_length];
    let mut outstanding: VecDeque<Instant> = VecDeque::with_capacity(rr.inflight);
    // Responses still owed after `finish` may take this long; then the stream gives up.
    let drain_limit = Duration::from_secs(2);
    let finished_at = std::cell::Cell::new(None::<Instant>);
    let result = (|| -> io::Result<()> {
        for _ in 0..rr.inflight {
            outstanding.push_back(Instant::now());
            write_all(socket, &request)?;
            stream.bytes.fetch_add(length as u64, Ordering::Relaxed);
        }
        while !outstanding.is_empty() {
            let give_up = || {
                if !finish.load(Ordering::Relaxed) {
                    return false;
                }
                let at = finished_at.get().unwrap_or_else(Instant::now);
                finished_at.set(Some(at));
                at.elapsed() > drain_limit
            };
            if !read_exact(socket, &mut response, &give_up)? {
                return Ok(());
            }
            let now = Instant::now();
            if let Some(sent) = outstanding.pop_front() {
                let nanos = u64::try_from(now.duration_since(sent).as_nanos()).unwrap_or(u64::MAX);
                let _ = outcome.latency.record(nanos.max(1));
                outcome.transactions += 1;
            }
            if !finish.load(Ordering::Relaxed) {
                outstanding.push_back(Instant::now());
                write_all(socket, &request)?;
                stream.bytes.fetch_add(length as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    })();
    if let Err(error) = result {
        outcome.error = Some(error.to_string());
    }
    outcome
}

fn crr_stream(
    options: &ClientOptions,
    cookie: &Cookie,
    stream: &Stream,
    rr: &RrOptions,
    length: usize,
    finish: &AtomicBool,
) -> StreamOutcome {
    let mut outcome = StreamOutcome {
        transactions: 0,
        lost: 0,
        latency: nanos_histogram(),
        error: None,
    };
    let mut message = cookie.to_vec();
    message.extend(std::iter::repeat_n(0x52u8, length));
    let mut response = vec![0u8; rr.response_length];
    let never = || false;
    while !finish.load(Ordering::Relaxed) {
        let started = Instant::now();
        let result = (|| -> Result<bool, PerfError> {
            let socket = connect_stream(options, Some(&options.tuning))?;
            write_all(&socket, &message).map_err(|e| PerfError::io("cannot send a request", e))?;
            let complete = read_exact(&socket, &mut response, &never)
                .map_err(|e| PerfError::io("cannot read a response", e))?;
            Ok(complete)
        })();
        match result {
            Ok(true) => {
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let _ = outcome.latency.record(nanos.max(1));
                outcome.transactions += 1;
                stream.bytes.fetch_add(length as u64, Ordering::Relaxed);
            }
            Ok(false) => {
                outcome.error = Some(
                    ControlError::Closed {
                        when: "mid-transaction",
                    }
                    .to_string(),
                );
                break;
            }
            Err(error) => {
                outcome.error = Some(error.to_string());
                break;
            }
        }
    }
    outcome
}

/// The server's half of one stream: answer every whole request with a response.
pub(super) fn respond(
    socket: &StreamSock,
    request_length: usize,
    response_length: usize,
    counted: &AtomicU64,
    transactions: &AtomicU64,
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    let _ = socket.set_read_timeout(Some(POLL));
    let _ = socket.set_write_timeout(Some(POLL));
    let mut buffer = vec![0u8; request_length.clamp(1, MAX_MESSAGE) * 4];
    let response = vec![0x41u8; response_length];
    let mut pending = 0usize;
    loop {
        if stop() {
            return Ok(());
        }
        match (&*socket).read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(count) => {
                counted.fetch_add(count as u64, Ordering::Relaxed);
                pending += count;
                while pending >= request_length.max(1) {
                    pending -= request_length.max(1);
                    write_all(socket, &response)?;
                    transactions.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) if is_retry(&e) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The server's half of one CRR transaction, on a connection whose cookie was just read.
pub(super) fn respond_once(
    socket: &StreamSock,
    request_length: usize,
    response_length: usize,
) -> io::Result<bool> {
    let _ = socket.set_read_timeout(Some(POLL));
    let _ = socket.set_write_timeout(Some(POLL));
    let mut request = vec![0u8; request_length];
    let started = Instant::now();
    let give_up = || started.elapsed() > Duration::from_secs(5);
    if !read_exact(socket, &mut request, &give_up)? {
        return Ok(false);
    }
    write_all(socket, &vec![0x41u8; response_length])?;
    Ok(true)
}

/// How long a UDP request waits for its response before it counts as lost and another takes
/// its place.
pub const UDP_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// UDP requests and responses carry iperf3's datagram header with a 64-bit number, which the
/// server copies into its response: the smallest message is that header.
pub const UDP_MIN_MESSAGE: usize = 16;

/// Request-response over a connected UDP socket: requests are numbered, the server answers
/// each with a datagram that starts with the same number.
fn rr_datagrams(
    socket: &UdpSocket,
    stream: &Stream,
    rr: &RrOptions,
    length: usize,
    impair: Option<ImpairmentConfig>,
    finish: &AtomicBool,
) -> StreamOutcome {
    // The impairer stands for the network on the way out: a request it loses was sent.
    let mut impairer = impair.map(|mut config| {
        config.seed = config.seed.wrapping_add(stream.id as u64);
        Impairer::new(config)
    });
    let mut outcome = StreamOutcome {
        transactions: 0,
        lost: 0,
        latency: nanos_histogram(),
        error: None,
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(20)));
    let mut request = vec![0x52u8; length.max(UDP_MIN_MESSAGE)];
    let mut response = vec![0u8; 65_536];
    let mut outstanding: HashMap<u64, Instant> = HashMap::with_capacity(rr.inflight);
    let mut sequence = 0u64;
    let mut send = |outstanding: &mut HashMap<u64, Instant>, request: &mut Vec<u8>| {
        sequence += 1;
        udp::write_header(request, monotonic_now(), sequence, true);
        outstanding.insert(sequence, Instant::now());
        stream
            .bytes
            .fetch_add(request.len() as u64, Ordering::Relaxed);
        match &mut impairer {
            Some(impairer) => impairer.process(request, &mut |m| socket.send(m).map(drop)),
            None => socket.send(request).map(drop),
        }
    };
    let result = (|| -> io::Result<()> {
        for _ in 0..rr.inflight {
            send(&mut outstanding, &mut request)?;
        }
        let mut finished_at: Option<Instant> = None;
        while !outstanding.is_empty() {
            if finish.load(Ordering::Relaxed) {
                let at = *finished_at.get_or_insert_with(Instant::now);
                if at.elapsed() > UDP_RESPONSE_TIMEOUT {
                    outcome.lost += outstanding.len() as u64;
                    return Ok(());
                }
            }
            match socket.recv(&mut response) {
                Ok(count) => {
                    let Some((_, number)) = udp::read_header(&response[..count], true) else {
                        continue;
                    };
                    let Some(sent) = outstanding.remove(&number) else {
                        continue; // a response to a request already given up
                    };
                    let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    let _ = outcome.latency.record(nanos.max(1));
                    outcome.transactions += 1;
                    if !finish.load(Ordering::Relaxed) {
                        send(&mut outstanding, &mut request)?;
                    }
                }
                Err(e) if is_retry(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
            // Requests whose response is overdue are lost; others replace them.
            let overdue: Vec<u64> = outstanding
                .iter()
                .filter(|(_, sent)| sent.elapsed() > UDP_RESPONSE_TIMEOUT)
                .map(|(number, _)| *number)
                .collect();
            for number in overdue {
                outstanding.remove(&number);
                outcome.lost += 1;
                if !finish.load(Ordering::Relaxed) {
                    send(&mut outstanding, &mut request)?;
                }
            }
        }
        Ok(())
    })();
    if let Err(error) = result {
        outcome.error = Some(error.to_string());
    }
    outcome
}

/// The server's half of a UDP request-response stream: answer each request with a datagram
/// of `response_length` that starts with the request's header.
pub(super) fn respond_datagrams(
    socket: &UdpSocket,
    response_length: usize,
    counted: &AtomicU64,
    transactions: &AtomicU64,
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    let _ = socket.set_read_timeout(Some(POLL));
    let mut request = vec![0u8; 65_536];
    let mut response = vec![0x41u8; response_length.max(UDP_MIN_MESSAGE)];
    while !stop() {
        match socket.recv(&mut request) {
            Ok(count) if count >= UDP_MIN_MESSAGE => {
                counted.fetch_add(count as u64, Ordering::Relaxed);
                response[..UDP_MIN_MESSAGE].copy_from_slice(&request[..UDP_MIN_MESSAGE]);
                match socket.send(&response) {
                    Ok(_) => {
                        transactions.fetch_add(1, Ordering::Relaxed);
                    }
                    // A full buffer: the response is lost, as on a network.
                    Err(e) if is_retry(&e) || e.raw_os_error() == Some(libc::ENOBUFS) => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(_) => {} // a stray hello
            Err(e) if is_retry(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
