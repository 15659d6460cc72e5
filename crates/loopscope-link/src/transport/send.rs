//! Writing that a peer cannot hold up: every write that waits for room comes back at least
//! every [`CANCEL_CHECK`] to look at the caller's [`Cancel`] (a stop flag, a deadline), so a
//! far end that stops reading cannot hang the writer.

use std::io;
use std::os::fd::BorrowedFd;

use crate::link::{CANCEL_CHECK, Cancel, SendError};

/// How a descriptor is written so that a wait for room ends in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    /// A socket whose send timeout is armed ([`arm_send_timeout`]): a blocking send(2), which
    /// returns what it moved, or EAGAIN, when the timeout passes. On a busy link that is one
    /// system call per chunk, where non-blocking sends would add a poll(2) per socket buffer.
    Socket,
    /// A pipe or terminal in non-blocking mode (O_NONBLOCK): write(2), and poll(2) for room.
    NonBlocking,
}

/// Arms a socket's send timeout (SO_SNDTIMEO) at [`CANCEL_CHECK`], for [`Writer::Socket`]. It
/// touches sending only; receives keep their own timeout.
pub(crate) fn arm_send_timeout(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::net::sockopt::set_socket_timeout(
        fd,
        rustix::net::sockopt::Timeout::Send,
        Some(CANCEL_CHECK),
    )
    .map_err(io::Error::from)
}

/// Writes all of `data`, waiting while the descriptor is full, but never past `cancel`: a peer
/// that stops reading cannot hang the writer. The error says how many bytes went in.
pub(crate) fn write_all_until(
    fd: BorrowedFd<'_>,
    data: &[u8],
    writer: Writer,
    cancel: &Cancel,
) -> Result<(), SendError> {
    let mut accepted = 0usize;
    while accepted < data.len() {
        let rest = &data[accepted..];
        let written = match writer {
            Writer::Socket => rustix::net::send(fd, rest, rustix::net::SendFlags::NOSIGNAL),
            Writer::NonBlocking => rustix::io::write(fd, rest),
        };
        match written {
            Ok(0) => return Err(SendError::failed(accepted, io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                accepted += n;
                if accepted < data.len() {
                    // Cut short: by the send timeout, or by a full pipe. Either way the
                    // deadline may have passed meanwhile; a full pipe is waited for at once
                    // rather than found full again by a write that fails.
                    let Some(wait) = cancel.next_wait() else {
                        return Err(SendError::cancelled(accepted));
                    };
                    if writer == Writer::NonBlocking {
                        loopscope_sys::wait_writable(fd, Some(wait))
                            .map_err(|e| SendError::failed(accepted, e))?;
                    }
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            // The send timeout passed with nothing moved: look at the cancel, send again.
            Err(rustix::io::Errno::AGAIN) if writer == Writer::Socket => {
                if cancel.is_cancelled() {
                    return Err(SendError::cancelled(accepted));
                }
            }
            Err(rustix::io::Errno::AGAIN) => {
                let Some(wait) = cancel.next_wait() else {
                    return Err(SendError::cancelled(accepted));
                };
                // Ready, timed out or interrupted: each leads to another look at the cancel
                // and another write.
                loopscope_sys::wait_writable(fd, Some(wait.min(CANCEL_CHECK)))
                    .map_err(|e| SendError::failed(accepted, e))?;
            }
            Err(e) => return Err(SendError::failed(accepted, e.into())),
        }
    }
    Ok(())
}
