//! One conformance suite for every link: each transport and each adapter runs the same four
//! tests, against far ends written here with std sockets and pseudo-terminals.
//!
//! - `round_trip`: what is sent comes back unchanged, in order.
//! - `clean_close`: after the sender finishes, the receiver sees end of stream (or, on a line
//!   with no such signal, nothing more) and the far end sees the link go.
//! - `peer_vanishes`: a far end that goes away part way through ends the link, never hangs it;
//!   what came back before is intact, and `bert` over it ends with a partial summary.
//! - `partial_summary`: a `bert` stopped mid-run reports what it measured until then.
//!
//! A new link gets the whole suite by adding one line to the table at the bottom.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loopscope_link::adapter::AdapterStack;
use loopscope_link::{Cancel, Endpoint, Link};
use loopscope_measure::bert::{self, Amount, BertControl, BertOptions, BertSummary, EndReason};
use loopscope_pattern::{PatternKind, PatternSpec};

mod support;
use support::{Ending, Peer, receive, round_trip, send_then_finish, test_bytes};

/// How a link says that the sender finished.
#[derive(Clone, Copy, PartialEq)]
enum Close {
    /// The receiver reads end of stream once everything came back.
    EndOfStream,
    /// A line (pty, serial) has no end-of-stream signal: nothing more arrives.
    Quiet,
}

/// What the far end is, and what the link does when it goes away.
#[derive(Clone, Copy, PartialEq)]
enum FarEnd {
    /// Part of the link itself (a memory loop, the pty's built-in plug, a simulated channel).
    Builtin,
    /// A peer whose going is reported: end of stream or an error on one of the halves.
    Reports,
    /// A datagram peer: its going may be silence (its socket took the datagrams in flight and
    /// no ICMP error follows), which a link cannot tell from loss; the caller's stop ends it.
    MaySilence,
}

/// Adapters put around the link, through the one stack builder the commands use.
#[derive(Clone, Copy)]
enum Adapters {
    None,
    Impair(&'static str),
    Capture,
    Modem,
}

struct Case {
    /// The link's endpoint and far end; given `Some(n)`, a far end that goes after `n` bytes.
    peer: fn(Option<usize>) -> Peer,
    adapters: Adapters,
    far_end: FarEnd,
    close: Close,
    /// Bytes for the round trip (fewer on slow lines).
    bytes: usize,
}

/// How much a vanishing far end gives back before it goes.
const VANISH_AFTER: usize = 64 * 1024;

/// An opened link with what it needs kept alive (its far end, its capture directory).
struct Opened {
    link: Box<dyn Link>,
    peer: Peer,
    capture: Option<(tempfile::TempDir, PathBuf)>,
}

fn open(case: &Case, vanish_after: Option<usize>) -> Opened {
    let peer = (case.peer)(vanish_after);
    let mut capture = None;
    let stack = match case.adapters {
        Adapters::None => AdapterStack::default(),
        Adapters::Impair(options) => {
            AdapterStack::from_flags(false, Some(options), None).expect("impairment options")
        }
        Adapters::Capture => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let path = dir.path().join("run.pcapng");
            let stack = AdapterStack::from_flags(false, None, Some(&path)).expect("capture");
            capture = Some((dir, path));
            stack
        }
        Adapters::Modem => AdapterStack::from_flags(true, None, None).expect("modem"),
    };
    let endpoint = Endpoint::parse(&peer.endpoint).expect("the endpoint parses");
    let link = stack.open(&endpoint).expect("the link opens");
    Opened {
        link,
        peer,
        capture,
    }
}

fn check_round_trip(case: &Case) {
    let opened = open(case, None);
    let (mut tx, mut rx) = opened.link.split().expect("split");
    let data = test_bytes(case.bytes);
    let got = round_trip(tx.as_mut(), rx.as_mut(), &data);
    assert_eq!(got.len(), data.len(), "bytes back");
    assert!(got == data, "the bytes came back changed");
    if let Some((_dir, path)) = &opened.capture {
        let written = std::fs::metadata(path).expect("the capture file").len();
        assert!(written > data.len() as u64, "{written} bytes captured");
    }
}

fn check_clean_close(case: &Case) {
    let mut opened = open(case, None);
    let description = opened.link.describe();
    let (mut tx, mut rx) = opened.link.split().expect("split");
    let data = test_bytes(case.bytes.min(100_000));
    let got = round_trip(tx.as_mut(), rx.as_mut(), &data);
    assert!(got == data, "{description}: the bytes came back changed");
    match case.close {
        Close::EndOfStream => {
            let (extra, ending) = receive(rx.as_mut(), 1, Duration::from_secs(10));
            assert!(extra.is_empty(), "{description}: bytes after the last");
            assert!(
                matches!(ending, Ending::EndOfStream),
                "{description}: {ending:?} instead of end of stream"
            );
        }
        Close::Quiet => {
            // Nothing can arrive that was not sent; a short look proves no stray byte.
            let (extra, ending) = receive(rx.as_mut(), 1, Duration::from_millis(300));
            assert!(extra.is_empty(), "{description}: bytes after the last");
            assert!(
                matches!(ending, Ending::TimedOut),
                "{description}: {ending:?}"
            );
        }
    }
    drop((tx, rx));
    if let Some(closed) = opened.peer.closed.take() {
        closed
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{description}: the far end never saw the link close"));
    }
}

fn check_peer_vanishes(case: &Case) {
    let opened = open(case, Some(VANISH_AFTER));
    let description = opened.link.describe();
    let (tx, mut rx) = opened.link.split().expect("split");
    let data = test_bytes(16 << 20);
    let stop = Arc::new(AtomicBool::new(false));
    // A backstop only: reaching it fails the test below.
    let deadline = Instant::now() + Duration::from_secs(60);
    let cancel = Cancel::on(Arc::clone(&stop)).until(deadline);
    let sender = send_then_finish(tx, data.clone(), 65_536, cancel);
    let mut got = Vec::new();
    let ending = loop {
        let (more, ending) = receive(rx.as_mut(), data.len() - got.len(), Duration::from_secs(1));
        got.extend_from_slice(&more);
        match ending {
            // Silence: the link may still be waiting on a far end that is gone.
            Ending::TimedOut if case.far_end == FarEnd::MaySilence => break ending,
            Ending::TimedOut if !sender.is_finished() && Instant::now() < deadline => continue,
            ending => break ending,
        }
    };
    stop.store(true, Ordering::SeqCst);
    let (_tx, sent) = sender.join().expect("the sender ends once stopped");
    assert!(
        got.len() <= VANISH_AFTER,
        "{description}: {} bytes back from a far end that gave {VANISH_AFTER}",
        got.len()
    );
    assert!(
        got == data[..got.len()],
        "{description}: what came back before the far end went is not what was sent"
    );
    let reported = matches!(ending, Ending::EndOfStream | Ending::Failed(_))
        || sent.as_ref().is_err_and(|e| !e.is_cancelled());
    match case.far_end {
        FarEnd::Reports => assert!(
            reported,
            "{description}: the far end went unnoticed ({ending:?}, sender {sent:?})"
        ),
        FarEnd::MaySilence => assert!(Instant::now() < deadline, "{description}: hung"),
        FarEnd::Builtin => unreachable!("no far end to vanish"),
    }

    // The same through `bert`: the run ends by itself with what it measured.
    if case.far_end == FarEnd::Reports {
        let opened = open(case, Some(VANISH_AFTER));
        let summary = run_bert(opened.link, |_, _| false, Some(Duration::from_secs(60)));
        assert!(
            matches!(
                summary.end_reason,
                EndReason::LinkClosed | EndReason::LinkError
            ),
            "{description}: {:?}",
            summary.end_reason
        );
        assert!(!summary.passed, "{description}: a vanished far end passed");
        assert!(
            summary.bytes_received <= VANISH_AFTER as u64,
            "{description}: {} bytes received",
            summary.bytes_received
        );
        assert!(summary.bytes_sent >= summary.bytes_received);
        assert_eq!(summary.check.bit_errors, 0, "{description}");
    }
}

fn check_partial_summary(case: &Case) {
    let opened = open(case, None);
    let description = opened.link.describe();
    // Stopped as Ctrl-C would, once the checker has compared some bits: an event, not a time.
    let summary = run_bert(opened.link, |bits, _| bits > 0, None);
    assert_eq!(summary.end_reason, EndReason::Interrupted, "{description}");
    assert_eq!(summary.link, description);
    assert!(
        summary.check.bits > 0,
        "{description}: no bits in the summary"
    );
    assert_eq!(summary.check.bit_errors, 0, "{description}");
    assert!(summary.bytes_received > 0, "{description}");
    assert!(
        summary.bytes_sent >= summary.bytes_received,
        "{description}"
    );
    assert!(summary.elapsed_s > 0.0, "{description}");
}

/// Runs `bert` with PRBS31 until `stop_when(bits compared, bytes received)` or, with `limit`,
/// for at most that long (a backstop: the callers' runs end by themselves well before).
fn run_bert(
    link: Box<dyn Link>,
    stop_when: impl Fn(u64, u64) -> bool,
    limit: Option<Duration>,
) -> BertSummary {
    let options = BertOptions {
        amount: limit.map_or(Amount::Unlimited, Amount::Duration),
        chunk_bytes: 16 * 1024,
        ..BertOptions::new(PatternSpec::standard(PatternKind::Prbs31))
    };
    let control = BertControl::default();
    let stop = Arc::clone(&control.stop);
    bert::run(
        link,
        &options,
        &control,
        &mut |_| {},
        &mut |received, counters| {
            if stop_when(counters.bits, received) {
                stop.store(true, Ordering::SeqCst);
            }
        },
    )
    .expect("bert starts")
}

/// One line a link: its name, then its case. Links under `with_far_end` also run
/// `peer_vanishes`; a `builtin` link's far end is part of the link and cannot go alone.
macro_rules! conformance {
    (
        with_far_end { $( $far:ident: $far_case:expr; )* }
        builtin { $( $own:ident: $own_case:expr; )* }
    ) => {
        $( conformance!(@common $far, $far_case, {
            #[test]
            fn peer_vanishes() {
                check_peer_vanishes(&case());
            }
        }); )*
        $( conformance!(@common $own, $own_case, {}); )*
    };
    (@common $name:ident, $case:expr, { $($extra:tt)* }) => {
        mod $name {
            use super::*;

            fn case() -> Case {
                $case
            }

            #[test]
            fn round_trip() {
                check_round_trip(&case());
            }

            #[test]
            fn clean_close() {
                check_clean_close(&case());
            }

            #[test]
            fn partial_summary() {
                check_partial_summary(&case());
            }

            $($extra)*
        }
    };
}

/// A link whose far end the test provides (`Reports` or `MaySilence`).
fn far(peer: fn(Option<usize>) -> Peer, far_end: FarEnd, adapters: Adapters) -> Case {
    Case {
        peer,
        adapters,
        far_end,
        close: Close::EndOfStream,
        bytes: 1_000_000,
    }
}

/// A link that is its own far end.
fn builtin(
    peer: fn(Option<usize>) -> Peer,
    close: Close,
    bytes: usize,
    adapters: Adapters,
) -> Case {
    Case {
        peer,
        adapters,
        far_end: FarEnd::Builtin,
        close,
        bytes,
    }
}

fn exec_peer(vanish_after: Option<usize>) -> Peer {
    match vanish_after {
        None => Peer::none("exec:cat"),
        // head(1) gives back its first bytes and exits, closing both pipes.
        Some(bytes) => Peer::none(format!("exec:head -c {bytes}")),
    }
}

fn serial_case() -> Case {
    // 20 kB: the pty under the plug is not paced, but the link keeps only a moment of line
    // time in flight.
    Case {
        bytes: 20_000,
        close: Close::Quiet,
        ..far(support::serial_peer, FarEnd::Reports, Adapters::None)
    }
}

conformance! {
    with_far_end {
        exec: far(exec_peer, FarEnd::Reports, Adapters::None);
        tcp: far(support::tcp_peer, FarEnd::Reports, Adapters::None);
        unix_stream: far(support::unix_peer, FarEnd::Reports, Adapters::None);
        udp: far(support::udp_peer, FarEnd::MaySilence, Adapters::None);
        unix_datagram: far(support::unixgram_peer, FarEnd::MaySilence, Adapters::None);
        serial_on_pty: serial_case();
        impair_over_tcp: far(support::tcp_peer, FarEnd::Reports, Adapters::Impair("seed=1"));
        impair_over_udp: far(support::udp_peer, FarEnd::MaySilence, Adapters::Impair("delay=1ms"));
        capture_over_tcp: far(support::tcp_peer, FarEnd::Reports, Adapters::Capture);
        capture_over_udp: far(support::udp_peer, FarEnd::MaySilence, Adapters::Capture);
    }
    builtin {
        memory_loop: builtin(|_| Peer::none("loop:?depth=2"), Close::EndOfStream, 1_000_000, Adapters::None);
        sim: builtin(|_| Peer::none("sim:?delay=1ms&seed=1"), Close::EndOfStream, 1_000_000, Adapters::None);
        pty_plug: builtin(|_| Peer::none("pty:"), Close::Quiet, 20_000, Adapters::None);
        impair_over_loop: builtin(|_| Peer::none("loop:"), Close::EndOfStream, 1_000_000, Adapters::Impair("seed=7"));
        modem_over_audiosim: builtin(|_| Peer::none("audiosim:?delay=100.3&gain_db=-10"), Close::EndOfStream, 600, Adapters::Modem);
    }
}

// Checks particular to one link, on the same helpers.

/// The simulated channel delays by what it was asked and counts exactly the bits it flipped
/// (counted here against the all-zero bytes sent).
#[test]
fn sim_delays_and_counts_the_bits_it_flipped() {
    let (mut tx, mut rx) = loopscope_link::open("sim:?delay=30ms&ber=0.01&seed=2")
        .and_then(|link| link.split())
        .expect("sim: opens");
    let started = Instant::now();
    let got = round_trip(tx.as_mut(), rx.as_mut(), &[0u8; 1000]);
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(got.len(), 1000);
    let flipped: u64 = got.iter().map(|b| u64::from(b.count_ones())).sum();
    assert!(flipped > 0, "a BER of 1e-2 over 8000 bits flipped none");
    let stats = rx.stats();
    assert_eq!(
        stats.impairment.expect("impairment figures").flipped_bits,
        flipped
    );
}

/// Over a clean simulated audio channel the modem frames every character and says its rate.
#[test]
fn the_modem_frames_every_character_at_1200_bit_s() {
    let link = loopscope_link::adapter::modem::open("audiosim:?delay=100.3&gain_db=-10")
        .expect("the modem opens");
    let (mut tx, mut rx) = link.split().expect("split");
    let data = test_bytes(3000);
    assert!(round_trip(tx.as_mut(), rx.as_mut(), &data) == data);
    let stats = support::stats_json(rx.as_ref());
    assert_eq!(stats["framing_errors"], 0);
    assert_eq!(stats["line_rate_bps"], 1200);
}
