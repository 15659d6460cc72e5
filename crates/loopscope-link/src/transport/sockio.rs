//! Receiving with a timeout. SO_RCVTIMEO rounds up to whole jiffies (1-4 ms), too coarse for
//! ping pacing; short timeouts therefore first try without waiting and only when nothing is
//! there wait in ppoll(2), whose timeout has nanosecond resolution. Long timeouts (a BERT's
//! poll of its stop flag) use SO_RCVTIMEO and one blocking recv: one system call per read
//! where the ppoll path would take three on a link that is often momentarily empty.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Waits until `fd` is readable or `timeout` passes. `Ok(false)` on timeout.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let spec = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    loop {
        // SAFETY: one valid pollfd, a valid timespec, no signal mask.
        let ready = unsafe { libc::ppoll(&mut pollfd, 1, &spec, std::ptr::null()) };
        if ready >= 0 {
            return Ok(ready > 0);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Timeouts at least this long use SO_RCVTIMEO (jiffy granularity is fine for them).
pub const COARSE_TIMEOUT: Duration = Duration::from_millis(20);

/// A socket's receive timeout, applied the cheapest way for its length.
#[derive(Debug, Default)]
pub struct SocketTimeout {
    wanted: Option<Duration>,
    /// What SO_RCVTIMEO is set to now (`None` until first set; the kernel default is 0 = block).
    applied: Option<Option<Duration>>,
}

impl SocketTimeout {
    pub fn set(&mut self, timeout: Option<Duration>) {
        self.wanted = timeout;
    }

    pub fn get(&self) -> Option<Duration> {
        self.wanted
    }

    /// recv(2) honouring the timeout.
    pub fn recv(&mut self, fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
        match self.wanted {
            Some(short) if short < COARSE_TIMEOUT => recv_timeout(fd, buf, Some(short)),
            long => {
                if self.applied != Some(long) {
                    set_rcvtimeo(fd, long)?;
                    self.applied = Some(long);
                }
                match recv_flags(fd, buf, 0) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        Err(io::ErrorKind::TimedOut.into())
                    }
                    other => other,
                }
            }
        }
    }
}

fn set_rcvtimeo(fd: RawFd, timeout: Option<Duration>) -> io::Result<()> {
    let timeout = timeout.unwrap_or(Duration::ZERO);
    let tv = libc::timeval {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: tv is a valid timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// recv(2) on a socket, waiting at most `timeout` (`None`: block).
pub fn recv_timeout(fd: RawFd, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
    let Some(timeout) = timeout else {
        return recv_flags(fd, buf, 0);
    };
    match recv_flags(fd, buf, libc::MSG_DONTWAIT) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => return other,
    }
    if !wait_readable(fd, timeout)? {
        return Err(io::ErrorKind::TimedOut.into());
    }
    recv_flags(fd, buf, libc::MSG_DONTWAIT)
}

fn recv_flags(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// read(2) on any descriptor (serial, pty), waiting at most `timeout`.
pub fn read_timeout(fd: RawFd, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
    if let Some(timeout) = timeout
        && !wait_readable(fd, timeout)?
    {
        return Err(io::ErrorKind::TimedOut.into());
    }
    loop {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::Interrupted => continue,
            // A readable-then-empty descriptor (another reader won the race): report as timeout.
            io::ErrorKind::WouldBlock => return Err(io::ErrorKind::TimedOut.into()),
            _ => return Err(error),
        }
    }
}

/// write(2) of all of `data` on any descriptor, retrying short writes and EAGAIN.
pub fn write_all_fd(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: data is valid for reads of data.len() bytes.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                let mut pollfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pollfd, 1, 100) };
            }
            _ => return Err(error),
        }
    }
    Ok(())
}
