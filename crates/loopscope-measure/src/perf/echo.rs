//! Throughput of a loop: over a link that gives back what it is sent (`loop:`, `sim:`,
//! `exec:cat`, a pty or serial port with a loopback plug, or a socket to `loopscope reflect`),
//! one thread sends and another counts what comes back. What the figure measures is the
//! whole loop: out, through the far end, and back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loopscope_link::link::is_timeout;
use loopscope_link::{Link, LinkError};
use loopscope_sys::{CpuTime, thread_cpu_time};

use super::PerfError;
use super::client::assemble;
use super::report::{Interval, IntervalStream, PerfEvent, PerfSummary, StreamSummary};

/// How a throughput test of a loop runs (`perf loop:`, `perf exec:cat`...): what is sent
/// must come back.
#[derive(Debug, Clone)]
pub struct EchoOptions {
    /// The link's endpoint.
    pub link: String,
    /// Links opened at once, each with its own sender and receiver.
    pub parallel: u32,
    /// How long the test runs.
    pub duration: Duration,
    /// Bytes to send instead of a duration.
    pub bytes: Option<u64>,
    /// Bytes per send.
    pub length: usize,
    /// Interval reports (`None`: none).
    pub interval: Option<Duration>,
    /// After the last send, how long to wait for the rest to come back.
    pub drain_timeout: Duration,
}

struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    sender_done: AtomicBool,
    receiver_done: AtomicBool,
    last_received_ns: AtomicU64,
    error: std::sync::Mutex<Option<String>>,
    cpu: std::sync::Mutex<CpuTime>,
}

const POLL: Duration = Duration::from_millis(100);

/// Runs the test over `parallel` links, each made by `open`.
pub fn run_echo(
    open: &dyn Fn() -> Result<Box<dyn Link>, LinkError>,
    options: &EchoOptions,
    stop: &AtomicBool,
    events: &mut dyn FnMut(&PerfEvent),
) -> Result<PerfSummary, PerfError> {
    let cpu_before = thread_cpu_time().unwrap_or_default();
    let mut halves = Vec::new();
    for _ in 0..options.parallel {
        let link = open().map_err(PerfError::Link)?;
        halves.push(link.split().map_err(PerfError::Link)?);
    }
    events(&PerfEvent::Connected {
        link: options.link.clone(),
        local: "this host".into(),
        remote: options.link.clone(),
        streams: halves.len(),
    });
    let started = Instant::now();
    let deadline = options.bytes.is_none().then(|| started + options.duration);
    let budget = Arc::new(options.bytes.map(AtomicU64::new));
    let finish = Arc::new(AtomicBool::new(false));
    let abort = Arc::new(AtomicBool::new(false));
    let mut counters = Vec::new();
    let mut threads = Vec::new();
    for (index, (mut sender, mut receiver)) in halves.into_iter().enumerate() {
        let shared = Arc::new(Counters {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sender_done: AtomicBool::new(false),
            receiver_done: AtomicBool::new(false),
            last_received_ns: AtomicU64::new(0),
            error: std::sync::Mutex::new(None),
            cpu: std::sync::Mutex::new(CpuTime::default()),
        });
        counters.push(Arc::clone(&shared));
        let fail = |shared: &Counters, error: String| {
            if let Ok(mut slot) = shared.error.lock() {
                slot.get_or_insert(error);
            }
        };
        let add_cpu = |shared: &Counters, before: CpuTime| {
            let used = thread_cpu_time().unwrap_or_default().since(before);
            if let Ok(mut cpu) = shared.cpu.lock() {
                *cpu = *cpu + used;
            }
        };
        {
            let (shared, finish, abort, budget) = (
                Arc::clone(&shared),
                Arc::clone(&finish),
                Arc::clone(&abort),
                Arc::clone(&budget),
            );
            let length = options.length;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("perf-echo-tx-{index}"))
                    .spawn(move || {
                        let before = thread_cpu_time().unwrap_or_default();
                        let chunk: Vec<u8> = (0..length).map(|i| (i * 131 + 7) as u8).collect();
                        // A send held up by a full link gives up when the run finishes.
                        let cancel = loopscope_link::Cancel::on(Arc::clone(&finish))
                            .or_on(Arc::clone(&abort));
                        while !finish.load(Ordering::Relaxed) && !abort.load(Ordering::Relaxed) {
                            let take = match budget.as_ref() {
                                None => length,
                                Some(left) => {
                                    let mut granted = 0;
                                    let _ = left.fetch_update(
                                        Ordering::Relaxed,
                                        Ordering::Relaxed,
                                        |l| {
                                            granted = l.min(length as u64);
                                            Some(l - granted)
                                        },
                                    );
                                    granted as usize
                                }
                            };
                            if take == 0 {
                                break;
                            }
                            if let Err(error) = sender.send(&chunk[..take], &cancel) {
                                shared
                                    .sent
                                    .fetch_add(error.accepted as u64, Ordering::Relaxed);
                                if !error.is_cancelled() {
                                    fail(&shared, format!("send: {error}"));
                                }
                                break;
                            }
                            shared.sent.fetch_add(take as u64, Ordering::Relaxed);
                        }
                        let _ = sender.finish(&loopscope_link::Cancel::on(Arc::clone(&abort)));
                        add_cpu(&shared, before);
                        shared.sender_done.store(true, Ordering::Release);
                    })
                    .map_err(|e| PerfError::io("cannot start a thread", e))?,
            );
        }
        {
            let (shared, abort) = (Arc::clone(&shared), Arc::clone(&abort));
            let drain = options.drain_timeout;
            let length = options.length.max(65_536);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("perf-echo-rx-{index}"))
                    .spawn(move || {
                        let before = thread_cpu_time().unwrap_or_default();
                        let mut buffer = vec![0u8; length];
                        let _ = receiver.set_timeout(Some(POLL));
                        let mut idle_since: Option<Instant> = None;
                        while !abort.load(Ordering::Relaxed) {
                            let sender_done = shared.sender_done.load(Ordering::Acquire);
                            let sent = shared.sent.load(Ordering::Relaxed);
                            let received = shared.received.load(Ordering::Relaxed);
                            if sender_done && received >= sent {
                                break;
                            }
                            match receiver.recv(&mut buffer) {
                                Ok(0) => break,
                                Ok(count) => {
                                    idle_since = None;
                                    shared.received.fetch_add(count as u64, Ordering::Relaxed);
                                    shared.last_received_ns.store(
                                        started.elapsed().as_nanos() as u64,
                                        Ordering::Relaxed,
                                    );
                                }
                                Err(e)
                                    if is_timeout(&e)
                                        || e.kind() == std::io::ErrorKind::Interrupted =>
                                {
                                    if sender_done {
                                        let since = *idle_since.get_or_insert_with(Instant::now);
                                        if since.elapsed() >= drain {
                                            break;
                                        }
                                    }
                                }
                                Err(error) => {
                                    fail(&shared, format!("receive: {error}"));
                                    break;
                                }
                            }
                        }
                        add_cpu(&shared, before);
                        shared.receiver_done.store(true, Ordering::Release);
                    })
                    .map_err(|e| PerfError::io("cannot start a thread", e))?,
            );
        }
    }
    let mut intervals = Vec::new();
    let mut last = vec![0u64; counters.len()];
    let mut last_s = 0.0;
    let mut next_report = options.interval.map(|i| started + i);
    let mut report = |intervals: &mut Vec<Interval>, events: &mut dyn FnMut(&PerfEvent)| {
        let end_s = started.elapsed().as_secs_f64();
        let seconds = end_s - last_s;
        if seconds < 0.001 {
            return;
        }
        let streams: Vec<IntervalStream> = counters
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let now = c.received.load(Ordering::Relaxed);
                let bytes = now.saturating_sub(last[index]);
                last[index] = now;
                IntervalStream {
                    id: index as i64 + 1,
                    direction: "echo",
                    bytes,
                    bits_per_second: bytes as f64 * 8.0 / seconds,
                    retransmits: None,
                    rtt_us: None,
                    snd_cwnd_bytes: None,
                    packets: None,
                }
            })
            .collect();
        let bytes = streams.iter().map(|s| s.bytes).sum::<u64>();
        let interval = Interval {
            start_s: last_s,
            end_s,
            bytes,
            bits_per_second: bytes as f64 * 8.0 / seconds,
            streams,
        };
        last_s = end_s;
        events(&PerfEvent::Interval(interval.clone()));
        intervals.push(interval);
    };
    let mut interrupted = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if counters
            .iter()
            .all(|c| c.receiver_done.load(Ordering::Acquire))
        {
            break;
        }
        if next_report.is_some_and(|due| now >= due) {
            report(&mut intervals, events);
            next_report = options.interval.map(|i| now + i);
        }
        let mut wait = POLL.min(Duration::from_millis(20));
        if let Some(due) = next_report {
            wait = wait.min(due.saturating_duration_since(now));
        }
        std::thread::sleep(wait);
    }
    let send_seconds = started.elapsed().as_secs_f64();
    finish.store(true, Ordering::Relaxed);
    if interrupted {
        abort.store(true, Ordering::Relaxed);
    }
    // Receivers end when everything came back, the drain time passed, or the link closed.
    while !counters
        .iter()
        .all(|c| c.receiver_done.load(Ordering::Acquire))
    {
        if stop.load(Ordering::Relaxed) && !interrupted {
            abort.store(true, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    report(&mut intervals, events);
    for thread in threads {
        let _ = thread.join();
    }
    let cpu = counters
        .iter()
        .filter_map(|c| c.cpu.lock().ok().map(|c| *c))
        .fold(
            thread_cpu_time().unwrap_or_default().since(cpu_before),
            |a, b| a + b,
        );
    let streams: Vec<StreamSummary> = counters
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let received = c.received.load(Ordering::Relaxed);
            let sent = c.sent.load(Ordering::Relaxed);
            let seconds = (c.last_received_ns.load(Ordering::Relaxed) as f64 / 1e9)
                .max(send_seconds.min(1e-3));
            let mut error = c.error.lock().ok().and_then(|e| e.clone());
            if received < sent && error.is_none() {
                error = Some(format!(
                    "{} of {sent} bytes sent did not come back",
                    sent - received
                ));
            }
            StreamSummary {
                id: index as i64 + 1,
                direction: "receive",
                bytes: received,
                seconds,
                bits_per_second: received as f64 * 8.0 / seconds.max(1e-9),
                peer_bytes: None,
                retransmits: None,
                rtt_us: None,
                rttvar_us: None,
                snd_cwnd_bytes: None,
                udp: None,
                zerocopy: None,
                error,
            }
        })
        .collect();
    let sent: u64 = counters
        .iter()
        .map(|c| c.sent.load(Ordering::Relaxed))
        .sum();
    let failed = streams.iter().any(|s| s.error.is_some());
    let scheme = options.link.split(':').next().unwrap_or("link").to_string();
    let mut summary = assemble(
        &options.link,
        &scheme,
        "echo",
        "echo",
        send_seconds,
        streams,
        intervals,
        cpu,
        None,
        interrupted.then(|| "interrupted".to_string()),
        !failed,
    );
    summary.sent_bytes = sent;
    summary.bytes = summary.received_bytes;
    summary.bits_per_second = summary.receive_bits_per_second;
    Ok(summary)
}
