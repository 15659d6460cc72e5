use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::*;
use loopscope_link::transport::memory::MemoryLoop;

fn config(count: u64) -> PingConfig {
    PingConfig {
        count: Some(count),
        interval: Duration::ZERO,
        payload: 56,
        timeout: Duration::from_secs(2),
        deadline: None,
        stop_after_replies: None,
    }
}

fn loop_pinger(endpoint: &str) -> Box<dyn Pinger> {
    let endpoint = Endpoint::parse(endpoint).unwrap();
    open(&endpoint, SocketChoice::Auto, &AdapterStack::default()).unwrap()
}

fn collect(pinger: &mut dyn Pinger, config: &PingConfig) -> (PingOutcome, Vec<PingReply>) {
    let mut replies = Vec::new();
    let outcome = run(pinger, config, &AtomicBool::new(false), &mut |event| {
        if let PingEvent::Reply(reply) = event {
            replies.push(reply.clone());
        }
    });
    (outcome, replies)
}

#[test]
fn pings_over_the_memory_loop() {
    let mut pinger = LinkPinger::new(Box::new(MemoryLoop::new())).unwrap();
    let (outcome, replies) = collect(&mut pinger, &config(20));
    let sequences: Vec<u64> = replies.iter().map(|r| r.seq).collect();
    assert_eq!(sequences, (0..20).collect::<Vec<_>>());
    assert!(replies.iter().all(|r| r.bytes == 56 + 26 && !r.duplicate));
    assert_eq!(outcome.summary.transmitted, 20);
    assert_eq!(outcome.summary.received, 20);
    assert!(outcome.summary.passed);
    assert!(outcome.link_failure.is_none());
}

/// Issue 11 item 4: the summary's extremes are round trips that a reply line showed.
#[test]
fn summary_min_and_max_equal_a_reply_exactly() {
    let mut pinger = loop_pinger("loop:");
    let (outcome, replies) = collect(pinger.as_mut(), &config(50));
    let min = replies
        .iter()
        .map(|r| r.rtt_us)
        .fold(f64::INFINITY, f64::min);
    let max = replies.iter().map(|r| r.rtt_us).fold(0.0, f64::max);
    assert_eq!(outcome.summary.rtt_min_us, min);
    assert_eq!(outcome.summary.rtt_max_us, max);
}

/// A pinger that answers from a script: for each request, the replies (sequence offset from
/// the request, delay in ns) it produces.
struct Scripted {
    script: Vec<Vec<(i64, u64)>>,
    pending: Vec<Received>,
    sent: u64,
}

impl Pinger for Scripted {
    fn target(&self) -> String {
        "scripted".into()
    }
    fn payload_range(&self) -> std::ops::RangeInclusive<usize> {
        0..=100
    }
    fn banner(&self, _: usize) -> String {
        String::new()
    }
    fn send(&mut self, sequence: u64, _: usize) -> Result<u64, SendError> {
        let sent_ns = now_ns();
        let index = self.sent as usize;
        self.sent += 1;
        for &(offset, delay) in self.script.get(index).into_iter().flatten() {
            self.pending.push(Received::Reply {
                sequence: sequence.wrapping_add_signed(offset),
                bytes: 10,
                arrived_ns: sent_ns + delay,
                ttl: None,
                corrupt: false,
            });
        }
        Ok(sent_ns)
    }
    fn receive(&mut self, wait: Duration, out: &mut Vec<Received>) -> Result<(), LinkFailure> {
        if self.pending.is_empty() {
            std::thread::sleep(wait.min(Duration::from_millis(5)));
        }
        out.append(&mut self.pending);
        Ok(())
    }
    fn summary_fields(&self, _: &mut Map<String, Value>) {}
}

#[test]
fn duplicates_late_replies_and_strangers_are_told_apart() {
    let mut pinger = Scripted {
        script: vec![
            vec![(0, 1_000), (0, 2_000)],    // answered, then duplicated
            vec![(0, 5_000_000_000)],        // "arrives" after the 2 s timeout: late
            vec![(1000, 1_000), (0, 3_000)], // a sequence never sent, then the answer
        ],
        pending: Vec::new(),
        sent: 0,
    };
    let (outcome, replies) = collect(&mut pinger, &config(3));
    let s = &outcome.summary;
    assert_eq!((s.transmitted, s.received, s.duplicates), (3, 2, 1));
    assert_eq!(s.extra["late"], 1);
    assert_eq!(s.extra["unexpected"], 1);
    assert!(!s.passed, "a lost request fails the run");
    let shown: Vec<(u64, bool, f64)> = replies
        .iter()
        .map(|r| (r.seq, r.duplicate, r.rtt_us))
        .collect();
    assert_eq!(
        shown,
        vec![(0, false, 1.0), (0, true, 2.0), (2, false, 3.0)]
    );
    assert_eq!((s.rtt_min_us, s.rtt_max_us), (1.0, 3.0));
}

#[test]
fn stops_after_enough_replies() {
    let mut pinger = loop_pinger("loop:");
    let config = PingConfig {
        count: Some(3),
        stop_after_replies: Some(1),
        ..config(3)
    };
    let (outcome, replies) = collect(pinger.as_mut(), &config);
    assert_eq!(replies.len(), 1);
    assert_eq!(outcome.summary.transmitted, 1);
}

/// Issue 12 item 8: a deadline past what the clock arithmetic holds once wrapped around to a
/// run of zero requests. It is refused up front, and the engine saturates regardless.
#[test]
fn huge_durations_are_refused_and_never_wrap() {
    let huge = Duration::from_secs(5_124_095 * 3600);
    for config in [
        PingConfig {
            deadline: Some(huge),
            ..config(1)
        },
        PingConfig {
            interval: huge,
            ..config(1)
        },
        PingConfig {
            timeout: huge,
            ..config(1)
        },
    ] {
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("is too long: at most"), "{error}");
    }
    assert!(config(1).validate().is_ok());
    let mut pinger = loop_pinger("loop:");
    let unchecked = PingConfig {
        deadline: Some(Duration::MAX),
        timeout: Duration::MAX,
        ..config(3)
    };
    let (outcome, _) = collect(pinger.as_mut(), &unchecked);
    assert_eq!(
        (outcome.summary.transmitted, outcome.summary.received),
        (3, 3)
    );
}

/// Issue 12 item 2: `ping 'sim:?delay=5s' -c 1 -W 100ms` reported a 5000 ms reply. The reply
/// is lost after 100 ms.
#[test]
fn a_reply_slower_than_the_timeout_is_a_loss_reported_in_time() {
    let mut pinger = loop_pinger("sim:?delay=5s");
    let config = PingConfig {
        timeout: Duration::from_millis(100),
        ..config(1)
    };
    let started = Instant::now();
    let (outcome, replies) = collect(pinger.as_mut(), &config);
    let elapsed = started.elapsed();
    assert!(replies.is_empty(), "{replies:?}");
    assert_eq!(
        (outcome.summary.transmitted, outcome.summary.received),
        (1, 0)
    );
    assert!(!outcome.summary.passed);
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
}

#[test]
fn a_closed_link_ends_the_run_with_what_was_measured() {
    let mut pinger = loop_pinger("exec:dd bs=82 count=2 status=none");
    let (outcome, replies) = collect(pinger.as_mut(), &config(5));
    assert_eq!(replies.len(), 2, "two 82-byte frames came back");
    // The child exits after two 82-byte blocks: the next send meets a closed pipe, or the next
    // receive the end of its output, whichever comes first.
    let failure = outcome.link_failure.expect("the link failed");
    assert!(
        matches!(failure, LinkFailure::Closed | LinkFailure::Send(_)),
        "{failure}"
    );
    assert_eq!(outcome.summary.extra["link_error"], failure.to_string());
    assert!(!outcome.summary.passed);
}

#[test]
fn icmp_endpoints_refuse_link_adapters() {
    let endpoint = Endpoint::parse("icmp://127.0.0.1").unwrap();
    let stack = AdapterStack::from_flags(false, Some("seed=1"), None).unwrap();
    let error = open(&endpoint, SocketChoice::Auto, &stack).err().unwrap();
    assert!(error.to_string().contains("not one"), "{error}");
}

/// Answers each request twice, as two MEPs answer a multicast LBM: at once, and again once
/// `second_after` of real time has passed since the request.
struct TwoResponders {
    awaits_every_reply: bool,
    second_after: Duration,
    later: Vec<(u64, u64)>,
    pending: Vec<Received>,
}

impl Pinger for TwoResponders {
    fn target(&self) -> String {
        "group".into()
    }
    fn awaits_every_reply(&self) -> bool {
        self.awaits_every_reply
    }
    fn payload_range(&self) -> std::ops::RangeInclusive<usize> {
        0..=100
    }
    fn banner(&self, _: usize) -> String {
        String::new()
    }
    fn send(&mut self, sequence: u64, _: usize) -> Result<u64, SendError> {
        let sent_ns = now_ns();
        self.pending.push(Received::Reply {
            sequence,
            bytes: 10,
            arrived_ns: sent_ns + 1_000,
            ttl: None,
            corrupt: false,
        });
        self.later
            .push((sequence, sent_ns + self.second_after.as_nanos() as u64));
        Ok(sent_ns)
    }
    fn receive(&mut self, wait: Duration, out: &mut Vec<Received>) -> Result<(), LinkFailure> {
        if self.pending.is_empty() {
            std::thread::sleep(wait.min(Duration::from_millis(5)));
        }
        let now = now_ns();
        for (sequence, due) in std::mem::take(&mut self.later) {
            if now >= due {
                self.pending.push(Received::Reply {
                    sequence,
                    bytes: 10,
                    arrived_ns: due,
                    ttl: None,
                    corrupt: false,
                });
            } else {
                self.later.push((sequence, due));
            }
        }
        out.append(&mut self.pending);
        Ok(())
    }
    fn summary_fields(&self, _: &mut Map<String, Value>) {}
}

/// A pinger that expects several replies per request keeps the run listening until the last
/// request's timeout, so the later replies are heard (as duplicates, with their round trips);
/// without it the run ends with the first replies, as ping always has.
#[test]
fn a_pinger_that_awaits_every_reply_hears_the_later_repliers() {
    for awaits_every_reply in [true, false] {
        let mut pinger = TwoResponders {
            awaits_every_reply,
            // Long enough that a run without listening on is over before (it ends with the
            // first replies); well within the 2 s timeout.
            second_after: Duration::from_secs(1),
            later: Vec::new(),
            pending: Vec::new(),
        };
        let (outcome, replies) = collect(&mut pinger, &config(2));
        let s = &outcome.summary;
        assert_eq!((s.transmitted, s.received), (2, 2));
        if awaits_every_reply {
            assert_eq!(s.duplicates, 2);
            let late: Vec<(u64, bool, f64)> = replies
                .iter()
                .filter(|r| r.duplicate)
                .map(|r| (r.seq, r.duplicate, r.rtt_us))
                .collect();
            assert_eq!(late, [(0, true, 1_000_000.0), (1, true, 1_000_000.0)]);
            assert!(s.passed, "duplicates do not fail the run");
        } else {
            assert_eq!(s.duplicates, 0);
        }
    }
}
