//! Sending on a schedule: an absolute-deadline timer (timerfd on CLOCK_MONOTONIC with
//! TFD_TIMER_ABSTIME) that a caller polls beside its sockets, and an opt-in realtime priority
//! (SCHED_FIFO) for a sender that must keep its schedule on a busy host.
//!
//! An absolute deadline does not drift: the kernel wakes the caller at the instant asked for,
//! however late the previous wake-up was, where a relative sleep computed from "now" adds each
//! wake-up's lateness to the next.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, clock_gettime,
    timerfd_create, timerfd_settime,
};

/// A timer that becomes readable at an absolute instant. `std::time::Instant` reads
/// CLOCK_MONOTONIC on Linux, the clock the timer runs on.
#[derive(Debug)]
pub struct DeadlineTimer {
    fd: OwnedFd,
}

fn timespec(duration: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(duration.subsec_nanos()),
    }
}

fn monotonic_now() -> Duration {
    let now = clock_gettime(ClockId::Monotonic);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

impl DeadlineTimer {
    /// A disarmed, non-blocking timer.
    pub fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(DeadlineTimer { fd })
    }

    /// Fires once at `at` (at once if `at` has passed), replacing any earlier setting.
    pub fn arm(&self, at: Instant) -> io::Result<()> {
        // The instant as a CLOCK_MONOTONIC reading: the two clocks are one, read a few
        // nanoseconds apart here.
        let (instant_now, clock_now) = (Instant::now(), monotonic_now());
        let target = clock_now + at.saturating_duration_since(instant_now);
        // A zero it_value disarms; one nanosecond past the epoch is long past: fires at once.
        let target = target.max(Duration::from_nanos(1));
        timerfd_settime(
            &self.fd,
            TimerfdTimerFlags::ABSTIME,
            &Itimerspec {
                it_interval: timespec(Duration::ZERO),
                it_value: timespec(target),
            },
        )?;
        Ok(())
    }

    /// Stops the timer.
    pub fn disarm(&self) -> io::Result<()> {
        timerfd_settime(
            &self.fd,
            TimerfdTimerFlags::empty(),
            &Itimerspec {
                it_interval: timespec(Duration::ZERO),
                it_value: timespec(Duration::ZERO),
            },
        )?;
        Ok(())
    }

    /// Consumes an expiry, so the timer polls unreadable again; returns whether it had fired.
    pub fn acknowledge(&self) -> io::Result<bool> {
        let mut count = [0u8; 8];
        match rustix::io::read(&self.fd, &mut count) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::AGAIN) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}

impl AsFd for DeadlineTimer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Runs the calling thread under SCHED_FIFO at `priority` (1..=99), so ordinary processes
/// cannot delay its wake-ups, and with a timer slack of 1 ns. Needs CAP_SYS_NICE (or an
/// RLIMIT_RTPRIO allowance): `PermissionDenied` otherwise.
pub fn set_realtime_priority(priority: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority.clamp(1, 99)),
    };
    // SAFETY: `param` is a valid, initialised sched_param that lives across the call; pid 0 is
    // the calling thread; the call reads the struct and changes only the scheduling policy.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Readiness, wait_readable};

    /// The timer fires no earlier than its deadline, and an acknowledged timer polls quiet.
    #[test]
    fn the_timer_fires_at_its_deadline_and_not_before() {
        let timer = DeadlineTimer::new().unwrap();
        assert!(!timer.acknowledge().unwrap());
        let at = Instant::now() + Duration::from_millis(20);
        timer.arm(at).unwrap();
        let ready = wait_readable(&timer, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(ready, Readiness::Ready);
        assert!(Instant::now() >= at);
        assert!(timer.acknowledge().unwrap());
        assert_eq!(
            wait_readable(&timer, Some(Duration::ZERO)).unwrap(),
            Readiness::TimedOut
        );
        // A deadline in the past fires at once.
        timer
            .arm(Instant::now() - Duration::from_millis(5))
            .unwrap();
        assert_eq!(
            wait_readable(&timer, Some(Duration::from_secs(30))).unwrap(),
            Readiness::Ready
        );
        timer.disarm().unwrap();
        timer.acknowledge().unwrap();
        assert_eq!(
            wait_readable(&timer, Some(Duration::ZERO)).unwrap(),
            Readiness::TimedOut
        );
    }
}
