//! The echo loop: paced requests, replies matched to requests, losses, duplicates.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loopscope_report::rtt::RttRecorder;

use super::socket::{EchoReply, EchoSocket, IcmpError, SocketKind};

/// What to send.
#[derive(Debug, Clone)]
pub struct PingConfig {
    pub target: IpAddr,
    /// Stop after this many requests (`None`: until stopped or the deadline).
    pub count: Option<u64>,
    /// Time between requests; zero sends the next one as soon as the last is answered.
    pub interval: Duration,
    /// ICMP payload bytes (at least the 16-byte stamp).
    pub payload_len: usize,
    /// How long each request waits for its reply.
    pub timeout: Duration,
    /// Stop after this long in all.
    pub deadline: Option<Duration>,
}

/// Something that happened while pinging.
#[derive(Debug, Clone)]
pub enum PingEvent {
    Reply {
        reply: EchoReply,
        rtt: Duration,
        duplicate: bool,
    },
    /// A request could not be sent (e.g. a firewall rejected it on output).
    SendFailed { sequence: u64, error: String },
}

/// The outcome of a run.
pub struct PingRun {
    pub recorder: RttRecorder,
    pub elapsed: Duration,
    pub kind: SocketKind,
    /// The last send error, if any request could not be sent.
    pub send_error: Option<String>,
}

/// Runs the echo loop on `socket` (opened to `config.target`) until `count` requests were answered or timed out, the deadline passes,
/// or `stop` is set. `on_event` sees every reply (duplicates included) and send failure.
pub fn ping(
    socket: &mut EchoSocket,
    config: &PingConfig,
    stop: &AtomicBool,
    mut on_event: impl FnMut(&PingEvent),
) -> Result<PingRun, IcmpError> {
    let mut recorder = RttRecorder::new();
    let start = Instant::now();
    let deadline = config.deadline.map(|limit| start + limit);
    let mut pending: BTreeMap<u64, Instant> = BTreeMap::new();
    // Answered requests by sequence, with their send time (to time duplicates too).
    let mut answered: HashMap<u64, Instant> = HashMap::new();
    let mut sent: u64 = 0;
    let mut next_send = start;
    let mut send_error = None;
    // Poll the stop flag at least this often while waiting.
    const POLL: Duration = Duration::from_millis(100);

    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            break;
        }
        // Requests unanswered within the timeout are lost (a later reply is not counted).
        pending.retain(|_, sent_at| now.duration_since(*sent_at) < config.timeout);

        let more_to_send = config.count.is_none_or(|count| sent < count);
        let due = if config.interval.is_zero() {
            pending.is_empty()
        } else {
            now >= next_send
        };
        if more_to_send && due {
            let sequence = sent + 1;
            sent += 1;
            recorder.sent();
            match socket.send(sequence, config.payload_len) {
                Ok(()) => {
                    pending.insert(sequence, Instant::now());
                }
                Err(error) => {
                    let error = error.to_string();
                    on_event(&PingEvent::SendFailed {
                        sequence,
                        error: error.clone(),
                    });
                    send_error = Some(error);
                }
            }
            next_send += config.interval;
            if next_send < now {
                // Fell behind (a slow terminal, a suspended process): do not burst to catch up.
                next_send = now + config.interval;
            }
            continue;
        }
        if !more_to_send && pending.is_empty() {
            break;
        }

        let mut wake = now + POLL;
        if more_to_send && !config.interval.is_zero() {
            wake = wake.min(next_send);
        }
        if let Some(oldest) = pending.values().min() {
            wake = wake.min(*oldest + config.timeout);
        }
        if let Some(deadline) = deadline {
            wake = wake.min(deadline);
        }
        let wait = wake.saturating_duration_since(now);
        let Some(reply) = socket.receive(wait.max(Duration::from_micros(1)))? else {
            continue;
        };
        let received_at = Instant::now();
        if let Some(sent_at) = pending.remove(&reply.sequence) {
            let rtt = received_at.duration_since(sent_at);
            if reply.corrupt {
                recorder.error();
            } else {
                recorder.reply(rtt.as_nanos().min(u128::from(u64::MAX)) as u64);
            }
            answered.insert(reply.sequence, sent_at);
            on_event(&PingEvent::Reply {
                reply,
                rtt,
                duplicate: false,
            });
        } else if let Some(sent_at) = answered.get(&reply.sequence) {
            recorder.duplicate();
            on_event(&PingEvent::Reply {
                rtt: received_at.duration_since(*sent_at),
                reply,
                duplicate: true,
            });
        }
        // Otherwise: a reply that came after its timeout; it stays lost.
    }
    Ok(PingRun {
        recorder,
        elapsed: start.elapsed(),
        kind: socket.kind(),
        send_error,
    })
}
