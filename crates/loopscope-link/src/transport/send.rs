//! Writing that a peer cannot hold up: every write waits for room in poll(2), where it can see
//! the caller's [`Cancel`] (a stop flag, a deadline), never in a blocking write(2).

use std::io;
use std::os::fd::BorrowedFd;

use crate::link::{CANCEL_CHECK, Cancel, SendError};

/// How a descriptor is written without blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// A socket: send(2) with MSG_DONTWAIT, whatever the descriptor's mode (its other half
    /// may be reading it in blocking mode).
    Socket,
    /// A pipe or terminal already in non-blocking mode (O_NONBLOCK): write(2).
    NonBlocking,
}

/// Writes all of `data`, waiting while the descriptor is full, but never past `cancel`: a peer
/// that stops reading cannot hang the writer. The error says how many bytes went in.
pub fn write_all_until(
    fd: BorrowedFd<'_>,
    data: &[u8],
    writer: Writer,
    cancel: &Cancel,
) -> Result<(), SendError> {
    let mut accepted = 0usize;
    while accepted < data.len() {
        let rest = &data[accepted..];
        let written = match writer {
            Writer::Socket => rustix::net::send(
                fd,
                rest,
                rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
            ),
            Writer::NonBlocking => rustix::io::write(fd, rest),
        };
        match written {
            Ok(0) => return Err(SendError::failed(accepted, io::ErrorKind::WriteZero.into())),
            Ok(n) => accepted += n,
            Err(rustix::io::Errno::INTR) => {}
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
