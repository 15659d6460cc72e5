//! How a test over a link ends, the same for `bert` and the framed BERT: the receive side
//! drains what a blocked transmitter still pushes, the transmit thread is joined without
//! hanging on a link that never lets it go, and a send that failed says whether the far end
//! went away.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use loopscope_link::link::is_timeout;
use loopscope_link::{LinkReceiver, LinkStats, SendError};
use loopscope_pattern::CheckCounters;
use loopscope_pattern::g821::SecondTally;
use loopscope_report::{format_ratio, plural};

use crate::bert::EndReason;

/// The transmitter's send failed: what the link took of it counts as sent and is published.
/// A cancelled send is how a stop or a deadline ends the transmitter, not a failure: `None`.
/// Otherwise the run failed (`failed` is set) with the returned error.
pub(crate) fn send_failed(
    failure: SendError,
    sent: &mut u64,
    published: &AtomicU64,
    failed: &AtomicBool,
) -> Option<io::Error> {
    *sent += failure.accepted as u64;
    published.store(*sent, Ordering::Release);
    if failure.is_cancelled() {
        return None;
    }
    failed.store(true, Ordering::Release);
    Some(failure.into_io())
}

/// After the run ended, keeps reading for up to `limit` until the transmitter says it is
/// `done`, so a sender stuck behind a full link can move and see the end. Returns the bytes
/// read meanwhile (they came back, but the run is over: nobody checks them).
pub(crate) fn drain_until_done(
    receiver: &mut dyn LinkReceiver,
    done: &AtomicBool,
    buf: &mut [u8],
    limit: Duration,
) -> u64 {
    let give_up = Instant::now() + limit;
    let mut read = 0u64;
    while !done.load(Ordering::Acquire) && Instant::now() < give_up {
        match receiver.recv(buf) {
            Ok(0) => break,
            Ok(n) => read += n as u64,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    read
}

/// Ends the receive side of a run: drains as [`drain_until_done`] does (up to 2 s), then reads
/// the link's figures, after the transmitter is done so that what it published (impairment
/// counts) is final, and closes the receiver. Returns the bytes drained and the figures.
pub(crate) fn close_receiver(
    mut receiver: Box<dyn LinkReceiver>,
    done: &AtomicBool,
    buf: &mut [u8],
) -> (u64, LinkStats) {
    let drained = drain_until_done(receiver.as_mut(), done, buf, Duration::from_secs(2));
    (drained, receiver.stats())
}

/// Joins the transmit thread, but does not hang the run on a sender stuck in a blocked link:
/// after `limit` (or if the thread panicked) `failed` makes its result from the reason.
pub(crate) fn join_within<T>(
    handle: thread::JoinHandle<T>,
    limit: Duration,
    failed: impl Fn(io::Error) -> T,
) -> T {
    let give_up = Instant::now() + limit;
    while !handle.is_finished() && Instant::now() < give_up {
        thread::sleep(Duration::from_millis(5));
    }
    if !handle.is_finished() {
        return failed(io::Error::other(
            "the transmitter was still blocked in the link at the end",
        ));
    }
    handle
        .join()
        .unwrap_or_else(|_| failed(io::Error::other("the transmit thread panicked")))
}

impl EndReason {
    /// The end of a run whose send failed with `error`. A peer that went away shows up on the
    /// sending side first (EPIPE, reset, refused): that is the link closing, not a fault of
    /// the link.
    pub fn after_send_failure(error: &io::Error) -> EndReason {
        let closed = matches!(
            error.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::UnexpectedEof
        );
        if closed {
            EndReason::LinkClosed
        } else {
            EndReason::LinkError
        }
    }
}

/// The measured BER and its upper bound at `confidence` (ITU-T O.150 counts bits; the bound
/// is the Poisson one of [`loopscope_pattern::confidence`]): 0 and 1 before any bit was
/// compared.
pub(crate) fn ber_with_bound(bits: u64, bit_errors: u64, confidence: f64) -> (f64, f64) {
    if bits == 0 {
        return (0.0, 1.0);
    }
    (
        bit_errors as f64 / bits as f64,
        loopscope_pattern::confidence::ber_upper_bound(bits, bit_errors, confidence),
    )
}

/// The BER verdict both BERTs give: above `max_ber` when a threshold is set, else any bit
/// error fails. `None` when the BER passes.
pub(crate) fn ber_failure(ber: f64, bit_errors: u64, max_ber: Option<f64>) -> Option<String> {
    match max_ber {
        Some(max) if ber > max => Some(format!(
            "BER {} above --max-ber {}",
            format_ratio(ber),
            format_ratio(max)
        )),
        None if bit_errors > 0 => Some(plural(bit_errors, "bit error", "bit errors")),
        _ => None,
    }
}

/// One second of G.821 accounting (ITU-T G.821) from the checker's counters at its start
/// (`last`) and end (`now`): the bits and errors in it, and a loss of sync when the checker
/// lost the pattern or, where `hunting_counts`, hunted for it. The caller adds its own reasons
/// for a second without signal.
pub(crate) fn second_tally(
    last: &CheckCounters,
    now: &CheckCounters,
    hunting_counts: bool,
) -> SecondTally {
    let hunting = hunting_counts && now.unsynced_bits > last.unsynced_bits;
    SecondTally {
        bits: now.bits - last.bits,
        bit_errors: now.bit_errors - last.bit_errors,
        sync_loss: now.sync_losses > last.sync_losses || hunting,
    }
}

/// The last line of a BERT summary: PASS, or FAIL with the reasons.
pub(crate) fn write_result(
    out: &mut dyn io::Write,
    passed: bool,
    reasons: &[String],
) -> io::Result<()> {
    if passed {
        writeln!(out, "result       PASS")
    } else {
        writeln!(out, "result       FAIL: {}", reasons.join("; "))
    }
}
