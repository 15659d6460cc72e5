//! SIGINT, SIGTERM and SIGHUP end a run cleanly: the run stops and prints its summary.
//!
//! One signal can arrive twice, or as two kinds at once: `timeout` sends its signal to the
//! child and then to its whole process group, systemd signals the whole cgroup, and a terminal
//! delivers Ctrl-C to every process of the foreground group. All of that is one request to stop.
//! Only a signal that comes at least [`GRACE`] after the first one, when the run has had its
//! chance to stop and has not, ends the process at once (exit 128 + the signal number), for
//! the rare run that is stuck.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long after the first stop signal further ones count as the same request.
pub const GRACE: Duration = Duration::from_secs(1);

/// Starts the thread that turns stop signals into `stop`. With `hangup_stops` false, SIGHUP is
/// left to the command (the exporter reloads its configuration on it).
pub fn install(stop: &Arc<AtomicBool>, hangup_stops: bool) -> io::Result<()> {
    let mut signals = if hangup_stops {
        Signals::new([SIGINT, SIGTERM, SIGHUP])?
    } else {
        Signals::new([SIGINT, SIGTERM])?
    };
    let stop = Arc::clone(stop);
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let mut first: Option<Instant> = None;
            // The iterator coalesces deliveries that arrive before it wakes, so a burst from a
            // process group is usually one item; the grace covers the rest.
            for signal in signals.forever() {
                let now = Instant::now();
                match first {
                    None => {
                        first = Some(now);
                        stop.store(true, Ordering::SeqCst);
                    }
                    Some(at) if now.duration_since(at) >= GRACE => {
                        std::process::exit(128 + signal);
                    }
                    Some(_) => {}
                }
            }
        })?;
    Ok(())
}
