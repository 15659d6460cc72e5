//! CPU time used, from getrusage(2): what `perf` reports as each side's CPU use.

use std::io;
use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};

/// User and system CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Time spent running in user space.
    pub user: Duration,
    /// Time the kernel spent working for the caller.
    pub system: Duration,
}

impl CpuTime {
    /// Time used since `earlier` (saturating: never negative).
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

impl std::ops::Add for CpuTime {
    type Output = CpuTime;

    fn add(self, other: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

/// CPU time of the calling thread (`RUSAGE_THREAD`): a server that runs many tests at once
/// sums the threads of one test, so each test's figure is its own.
pub fn thread_cpu_time() -> io::Result<CpuTime> {
    usage(UsageWho::RUSAGE_THREAD)
}

/// CPU time of the whole process (`RUSAGE_SELF`).
pub fn process_cpu_time() -> io::Result<CpuTime> {
    usage(UsageWho::RUSAGE_SELF)
}

fn usage(who: UsageWho) -> io::Result<CpuTime> {
    let usage = getrusage(who).map_err(io::Error::from)?;
    let duration = |time: nix::sys::time::TimeVal| {
        Duration::new(
            u64::try_from(time.tv_sec()).unwrap_or(0),
            u32::try_from(time.tv_usec())
                .unwrap_or(0)
                .saturating_mul(1000),
        )
    };
    Ok(CpuTime {
        user: duration(usage.user_time()),
        system: duration(usage.system_time()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_shows_its_own_time_and_the_process_at_least_as_much() {
        let before = thread_cpu_time().unwrap();
        let process_before = process_cpu_time().unwrap();
        // Burn measurable CPU in user space (getrusage ticks are coarse on some kernels).
        let started = std::time::Instant::now();
        let mut x = 1u64;
        while started.elapsed() < Duration::from_millis(50) {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        let used = thread_cpu_time().unwrap().since(before);
        let process_used = process_cpu_time().unwrap().since(process_before);
        assert!(used.user + used.system > Duration::ZERO, "{used:?}");
        assert!(process_used.user + process_used.system >= used.user + used.system);
        // Time used cannot exceed the wall time that passed on one thread (plus a tick).
        assert!(used.user + used.system <= started.elapsed() + Duration::from_millis(20));
    }
}
