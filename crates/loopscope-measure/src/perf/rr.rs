//! Request-response: each stream keeps N requests in flight; every response that comes back
//! is one transaction, timed from its request. `crr` opens a new TCP connection for each
//! transaction (connect, cookie, request, response, close).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
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
use super::report::{Percentiles, PerfSummary, StreamSummary, nanos_histogram};
use super::stream::{DataSocket, Stream};

#[derive(Debug, Clone)]
pub struct RrOptions {
    /// Requests each stream keeps outstanding.
    pub inflight: usize,
    pub response_length: usize,
    /// A new TCP connection for every transaction.
    pub connect_per_transaction: bool,
}

/// The largest request or response, and what one stream may keep in flight: beyond the
/// socket buffers a stream would deadlock (both sides blocked writing).
pub const MAX_MESSAGE: usize = 1 << 20;
pub const MAX_INFLIGHT_BYTES: usize = 1 << 20;

const POLL: Duration = Duration::from_millis(100);

struct StreamOutcome {
    transactions: u64,
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
        let worker = std::thread::Builder::new()
            .name(format!("perf-rr-{}", stream.id))
            .spawn(move || {
                let cpu = thread_cpu_time().unwrap_or_default();
                let outcome = match &crr_options {
                    Some(options) => crr_stream(options, &cookie, &stream, &rr, length, &finish),
                    None => rr_stream(&stream, &rr, length, &finish),
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
                &local_results(&streams, cpu, run_seconds, &retransmits),
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
                udp: None,
                error: outcome.error.clone().or_else(|| stream.error()),
            }
        })
        .collect();
    let transactions: u64 = per_stream.iter().map(|o| o.transactions).sum();
    let passed = ending.passed() && transactions > 0;
    let mut summary = assemble(
        &options.link,
        if matches!(options.transport, super::client::Transport::Unix(_)) {
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
