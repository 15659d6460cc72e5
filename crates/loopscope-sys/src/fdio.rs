//! Waiting on and moving bytes through descriptors: the one `wait_readable`, and the
//! receive/read/write helpers every link and the ICMP socket use.
//!
//! # The EINTR rule
//!
//! A call that *waits* (`wait_readable`, [`recv_timeout`], [`read_timeout`],
//! [`SocketTimeout::recv`]) never retries after a signal handler ran: it returns
//! [`Readiness::Interrupted`] (or an error of kind [`io::ErrorKind::Interrupted`]) so that the
//! caller can look at its stop flag (Ctrl-C sets one) and call again with whatever time it has
//! left. Retrying inside would both hide the signal and restart the full timeout, stretching
//! the wait past the caller's deadline.
//!
//! A call that has already *moved data* ([`write_all`]) retries EINTR itself, as
//! `std::io::Write::write_all` does: returning would lose the count of what was written.
//!
//! # The timeout meaning
//!
//! `None` waits without limit, `Some(Duration::ZERO)` looks without waiting, anything else is
//! an upper bound with nanosecond resolution (ppoll(2)). A timeout is an explicit result:
//! [`Readiness::TimedOut`], or an error of kind [`io::ErrorKind::TimedOut`] from the calls that
//! return bytes (never `WouldBlock`, never a message to parse).

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::RecvFlags;

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// A read will not block: data is there, the peer closed, or an error is pending.
    Ready,
    /// The timeout passed and nothing arrived.
    TimedOut,
    /// A signal handler ran (EINTR). Nothing is wrong: check the stop flag, then wait again.
    Interrupted,
}

/// Waits until `fd` is readable, the timeout passes, or a signal handler runs.
///
/// See the module documentation for the meaning of `timeout` and of EINTR.
pub fn wait_readable(fd: impl AsFd, timeout: Option<Duration>) -> io::Result<Readiness> {
    wait(fd.as_fd(), PollFlags::IN, timeout)
}

/// Waits until `fd` can take more bytes; the same rules as [`wait_readable`].
pub fn wait_writable(fd: impl AsFd, timeout: Option<Duration>) -> io::Result<Readiness> {
    wait(fd.as_fd(), PollFlags::OUT, timeout)
}

fn wait(
    fd: std::os::fd::BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
) -> io::Result<Readiness> {
    let mut fds = [PollFd::from_borrowed_fd(fd, events)];
    let limit = timeout.map(timespec);
    match rustix::event::poll(&mut fds, limit.as_ref()) {
        Ok(0) => Ok(Readiness::TimedOut),
        Ok(_) => Ok(Readiness::Ready),
        Err(rustix::io::Errno::INTR) => Ok(Readiness::Interrupted),
        Err(error) => Err(error.into()),
    }
}

fn timespec(timeout: Duration) -> Timespec {
    Timespec {
        // Beyond i64::MAX seconds is "forever" for any caller.
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    }
}

/// The error a timed-out receive returns.
pub fn timed_out() -> io::Error {
    io::ErrorKind::TimedOut.into()
}

fn interrupted() -> io::Error {
    io::ErrorKind::Interrupted.into()
}

/// recv(2) on a socket, waiting at most `timeout` (`None`: block).
///
/// Data already queued is taken without a poll (one system call on a busy link).
pub fn recv_timeout(fd: impl AsFd, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
    let fd = fd.as_fd();
    let Some(timeout) = timeout else {
        return recv(fd, buf, RecvFlags::empty());
    };
    match recv(fd, buf, RecvFlags::DONTWAIT) {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
        other => return other,
    }
    match wait_readable(fd, Some(timeout))? {
        Readiness::Ready => {}
        Readiness::TimedOut => return Err(timed_out()),
        Readiness::Interrupted => return Err(interrupted()),
    }
    match recv(fd, buf, RecvFlags::DONTWAIT) {
        // Readable, then empty: another reader took it, or the kernel dropped a datagram with
        // a bad checksum. Nothing arrived for us within the timeout.
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Err(timed_out()),
        other => other,
    }
}

fn recv(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
    rustix::net::recv(fd, buf, flags)
        .map(|(received, _)| received)
        .map_err(io::Error::from)
}

/// read(2) on any descriptor (serial, pty, pipe), waiting at most `timeout` (`None`: block).
pub fn read_timeout(fd: impl AsFd, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
    let fd = fd.as_fd();
    if let Some(timeout) = timeout {
        match wait_readable(fd, Some(timeout))? {
            Readiness::Ready => {}
            Readiness::TimedOut => return Err(timed_out()),
            Readiness::Interrupted => return Err(interrupted()),
        }
    }
    match rustix::io::read(fd, &mut *buf) {
        Ok(n) => Ok(n),
        // Readable, then empty (another reader won the race on a non-blocking descriptor).
        Err(rustix::io::Errno::AGAIN) => Err(timed_out()),
        Err(error) => Err(error.into()),
    }
}

/// write(2) of all of `data`, retrying short writes, EINTR and EAGAIN (a non-blocking
/// descriptor waits in poll until it can take more).
pub fn write_all(fd: impl AsFd, mut data: &[u8]) -> io::Result<()> {
    let fd = fd.as_fd();
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                // Any outcome (ready, timed out, interrupted) leads to another write attempt;
                // the bound only keeps a wedged descriptor from blocking a stop flag forever.
                wait_writable(fd, Some(Duration::from_millis(100)))?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Sets SO_RCVTIMEO (`None`: block without limit). The kernel rounds it up to whole jiffies.
pub fn set_receive_timeout(fd: impl AsFd, timeout: Option<Duration>) -> io::Result<()> {
    // The kernel takes a zero timeval as "no limit"; a zero request means the same here.
    let timeout = timeout.filter(|timeout| !timeout.is_zero());
    rustix::net::sockopt::set_socket_timeout(fd, rustix::net::sockopt::Timeout::Recv, timeout)
        .map_err(io::Error::from)
}

/// Timeouts at least this long use SO_RCVTIMEO: its jiffy granularity (1-4 ms) is fine for them.
pub const COARSE_TIMEOUT: Duration = Duration::from_millis(20);

/// A socket's receive timeout, applied the cheapest way for its length.
///
/// SO_RCVTIMEO rounds up to whole jiffies, too coarse for ping pacing; short timeouts therefore
/// first try without waiting and only when nothing is there wait in ppoll(2), whose timeout has
/// nanosecond resolution. Long timeouts (a BERT's poll of its stop flag) use SO_RCVTIMEO and one
/// blocking recv: one system call per read where the ppoll path would take three on a link that
/// is often momentarily empty.
#[derive(Debug, Default)]
pub struct SocketTimeout {
    wanted: Option<Duration>,
    /// What SO_RCVTIMEO is set to now (`None` until first set; the kernel default is 0 = block).
    applied: Option<Option<Duration>>,
}

impl SocketTimeout {
    /// Sets the timeout the next receives honour (`None`: block).
    pub fn set(&mut self, timeout: Option<Duration>) {
        self.wanted = timeout;
    }

    /// The timeout receives honour.
    pub fn get(&self) -> Option<Duration> {
        self.wanted
    }

    /// recv(2) honouring the timeout; the EINTR and timeout rules of this module.
    pub fn recv(&mut self, fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
        let fd = fd.as_fd();
        match self.wanted {
            Some(short) if short < COARSE_TIMEOUT => recv_timeout(fd, buf, Some(short)),
            long => {
                if self.applied != Some(long) {
                    set_receive_timeout(fd, long)?;
                    self.applied = Some(long);
                }
                match recv(fd, buf, RecvFlags::empty()) {
                    // SO_RCVTIMEO expiry reads as EAGAIN.
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => Err(timed_out()),
                    other => other,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::{UnixDatagram, UnixStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use super::*;

    #[test]
    fn wakes_when_data_arrives() {
        let (mut writer, reader) = UnixStream::pair().expect("socketpair");
        let waiter = std::thread::spawn(move || {
            let readiness = wait_readable(&reader, None).expect("wait");
            (readiness, reader)
        });
        writer.write_all(b"x").expect("write");
        let (readiness, reader) = waiter.join().expect("waiter");
        assert_eq!(readiness, Readiness::Ready);
        let mut buf = [0u8; 4];
        assert_eq!(
            read_timeout(&reader, &mut buf, Some(Duration::ZERO)).expect("read"),
            1
        );
    }

    #[test]
    fn a_closed_peer_is_ready_and_reads_as_end_of_stream() {
        let (writer, reader) = UnixStream::pair().expect("socketpair");
        drop(writer);
        assert_eq!(
            wait_readable(&reader, None).expect("wait"),
            Readiness::Ready
        );
        assert_eq!(read_timeout(&reader, &mut [0u8; 4], None).expect("read"), 0);
    }

    /// ppoll never returns early on its own: a timeout is never shorter than asked, and it is
    /// reported as TimedOut (for the byte calls, as an error of kind TimedOut).
    #[test]
    fn times_out_no_earlier_than_asked_and_says_so() {
        let (_writer, reader) = UnixDatagram::pair().expect("socketpair");
        for wanted in [
            Duration::ZERO,
            Duration::from_micros(300),
            Duration::from_millis(30),
        ] {
            let started = Instant::now();
            assert_eq!(
                wait_readable(&reader, Some(wanted)).expect("wait"),
                Readiness::TimedOut
            );
            assert!(started.elapsed() >= wanted, "{wanted:?}");
        }
        let mut buf = [0u8; 8];
        let started = Instant::now();
        let error = recv_timeout(&reader, &mut buf, Some(Duration::from_millis(5))).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(5));
        let error = read_timeout(&reader, &mut buf, Some(Duration::from_millis(1))).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    /// SO_RCVTIMEO expiry (the coarse path) is a TimedOut too, never WouldBlock. (No lower
    /// bound on the time here: the kernel counts SO_RCVTIMEO in whole jiffies from the current
    /// tick, so it may end up to one tick early.)
    #[test]
    fn the_coarse_path_times_out_as_timed_out() {
        let (_writer, reader) = UnixDatagram::pair().expect("socketpair");
        let mut timeout = SocketTimeout::default();
        timeout.set(Some(COARSE_TIMEOUT));
        let error = timeout.recv(&reader, &mut [0u8; 8]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(timeout.get(), Some(COARSE_TIMEOUT));
    }

    #[test]
    fn queued_data_is_taken_on_both_paths() {
        let (writer, reader) = UnixDatagram::pair().expect("socketpair");
        let mut timeout = SocketTimeout::default();
        let mut buf = [0u8; 8];
        for wanted in [
            Some(Duration::from_millis(1)),
            Some(Duration::from_secs(5)),
            None,
        ] {
            timeout.set(wanted);
            writer.send(b"abc").expect("send");
            assert_eq!(timeout.recv(&reader, &mut buf).expect("recv"), 3);
            assert_eq!(&buf[..3], b"abc");
        }
    }

    /// A signal handler running while a thread waits ends the wait with Interrupted (ppoll is
    /// never restarted, whatever SA_RESTART says), and the byte calls return an Interrupted
    /// error rather than retrying.
    #[test]
    fn a_signal_ends_the_wait_as_interrupted() {
        // The handler only sets a flag; SIGUSR1 is otherwise unused by this test binary.
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&flag))
            .expect("register SIGUSR1");
        let (_writer, reader) = UnixDatagram::pair().expect("socketpair");
        let reader = Arc::new(reader);
        for call in 0..3 {
            let done = Arc::new(AtomicBool::new(false));
            let (thread_id_tx, thread_id_rx) = std::sync::mpsc::channel();
            let waiter = {
                let (done, reader) = (Arc::clone(&done), Arc::clone(&reader));
                std::thread::spawn(move || {
                    thread_id_tx
                        .send(nix::sys::pthread::pthread_self())
                        .expect("send id");
                    let mut buf = [0u8; 8];
                    let outcome = match call {
                        0 => wait_readable(&*reader, None).map(|r| format!("{r:?}")),
                        1 => recv_timeout(&*reader, &mut buf, Some(Duration::from_secs(3600)))
                            .map(|n| n.to_string()),
                        _ => read_timeout(&*reader, &mut buf, Some(Duration::from_secs(3600)))
                            .map(|n| n.to_string()),
                    };
                    done.store(true, Ordering::SeqCst);
                    outcome
                })
            };
            let thread = thread_id_rx.recv().expect("thread id");
            // The signal may land before the thread is inside ppoll (then the handler runs and
            // the wait goes on): keep signalling until the wait ends.
            while !done.load(Ordering::SeqCst) {
                nix::sys::pthread::pthread_kill(thread, nix::sys::signal::Signal::SIGUSR1)
                    .expect("pthread_kill");
                std::thread::sleep(Duration::from_millis(2));
            }
            match waiter.join().expect("waiter") {
                Ok(readiness) => assert_eq!(readiness, "Interrupted", "call {call}"),
                Err(error) => assert_eq!(error.kind(), io::ErrorKind::Interrupted, "call {call}"),
            }
        }
        assert!(flag.load(Ordering::SeqCst));
    }

    #[test]
    fn write_all_moves_everything_through_a_full_nonblocking_socket() {
        let (writer, mut reader) = UnixStream::pair().expect("socketpair");
        writer.set_nonblocking(true).expect("nonblocking");
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
        let expected = data.clone();
        let sender = std::thread::spawn(move || write_all(&writer, &data));
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut got).expect("read");
        sender.join().expect("sender").expect("write_all");
        assert!(got == expected);
    }
}
