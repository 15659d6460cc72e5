//! `loop:` — an in-process memory loop: what is sent is received, unchanged.
//!
//! Buffers travel through a bounded channel and come back through a second one for reuse, so
//! a run allocates a fixed amount of memory however long it lasts.

use std::io;
use std::time::Duration;

use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
};

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{Cancel, Link, LinkError, LinkHalves, LinkReceiver, LinkSender, SendError};

/// Chunks in flight; with 256 KiB chunks the loop holds at most 2 MiB.
const DEPTH: usize = 8;
const CHUNK: usize = 256 * 1024;

/// `loop:`: an in-process memory loop.
pub struct MemoryLoop {
    depth: usize,
}

impl MemoryLoop {
    /// A loop of the default depth.
    pub fn new() -> Self {
        MemoryLoop { depth: DEPTH }
    }

    /// Reads the `depth` option.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        endpoint.reject_unknown_options(&["depth"])?;
        let depth = endpoint.parsed_option::<usize>("depth")?.unwrap_or(DEPTH);
        if depth == 0 {
            return Err(endpoint.bad_value("depth", "0", "must be at least 1"));
        }
        if !endpoint.target.is_empty() {
            return Err(endpoint.invalid("loop: takes no target (write just 'loop:')"));
        }
        Ok(MemoryLoop { depth })
    }

    /// The two halves without boxing, for in-process users.
    pub fn pair(depth: usize) -> (MemorySender, MemoryReceiver) {
        let (full_tx, full_rx) = crossbeam_channel::bounded(depth);
        let (empty_tx, empty_rx) = crossbeam_channel::bounded(depth + 2);
        (
            MemorySender {
                full: Some(full_tx),
                empty: empty_rx,
            },
            MemoryReceiver {
                full: full_rx,
                empty: empty_tx,
                current: Vec::new(),
                offset: 0,
                timeout: None,
            },
        )
    }
}

impl Default for MemoryLoop {
    fn default() -> Self {
        Self::new()
    }
}

impl Link for MemoryLoop {
    fn describe(&self) -> String {
        "loop:".into()
    }

    fn split(self: Box<Self>) -> Result<LinkHalves, LinkError> {
        let (tx, rx) = MemoryLoop::pair(self.depth);
        Ok((Box::new(tx), Box::new(rx)))
    }
}

/// The sending half of a memory loop.
pub struct MemorySender {
    full: Option<Sender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
}

impl LinkSender for MemorySender {
    fn send(&mut self, data: &[u8], cancel: &Cancel) -> Result<(), SendError> {
        let closed = || io::Error::from(io::ErrorKind::BrokenPipe);
        let Some(full) = self.full.as_ref() else {
            return Err(SendError::failed(0, closed()));
        };
        let mut accepted = 0;
        while accepted < data.len() {
            let take = (data.len() - accepted).min(CHUNK);
            let mut chunk = match self.empty.try_recv() {
                Ok(chunk) => chunk,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => Vec::with_capacity(CHUNK),
            };
            chunk.clear();
            chunk.extend_from_slice(&data[accepted..accepted + take]);
            // The usual case, a loop with room, costs no timeout bookkeeping.
            let mut pending = match full.try_send(chunk) {
                Ok(()) => None,
                Err(TrySendError::Full(chunk)) => Some(chunk),
                Err(TrySendError::Disconnected(_)) => {
                    return Err(SendError::failed(accepted, closed()));
                }
            };
            while let Some(chunk) = pending.take() {
                let Some(wait) = cancel.next_wait() else {
                    return Err(SendError::cancelled(accepted));
                };
                match full.send_timeout(chunk, wait) {
                    Ok(()) => {}
                    Err(SendTimeoutError::Timeout(chunk)) => pending = Some(chunk),
                    Err(SendTimeoutError::Disconnected(_)) => {
                        return Err(SendError::failed(accepted, closed()));
                    }
                }
            }
            accepted += take;
        }
        Ok(())
    }

    fn finish(&mut self, _cancel: &Cancel) -> io::Result<()> {
        self.full = None;
        Ok(())
    }
}

/// The receiving half of a memory loop.
pub struct MemoryReceiver {
    full: Receiver<Vec<u8>>,
    empty: Sender<Vec<u8>>,
    current: Vec<u8>,
    offset: usize,
    timeout: Option<Duration>,
}

impl LinkReceiver for MemoryReceiver {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.offset >= self.current.len() {
            let next = match self.timeout {
                None => self.full.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(timeout) => self.full.recv_timeout(timeout),
            };
            match next {
                Ok(chunk) => {
                    let spent = std::mem::replace(&mut self.current, chunk);
                    // The sender may have gone; then the buffer is simply dropped.
                    let _ = self.empty.try_send(spent);
                    self.offset = 0;
                }
                Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::TimedOut.into()),
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let available = &self.current[self.offset..];
        let take = available.len().min(buf.len());
        buf[..take].copy_from_slice(&available[..take]);
        self.offset += take;
        Ok(take)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender into a full loop nobody reads gives up when cancelled, saying what it sent.
    #[test]
    fn a_full_loop_does_not_hold_a_cancelled_sender() {
        let (mut tx, _rx) = MemoryLoop::pair(1);
        let cancel = Cancel::never().until(std::time::Instant::now() + Duration::from_millis(50));
        let error = tx.send(&vec![0u8; 4 * CHUNK], &cancel).unwrap_err();
        assert!(error.is_cancelled());
        assert_eq!(error.accepted, CHUNK, "one chunk fits a loop of depth 1");
    }

    #[test]
    fn times_out_when_nothing_arrives() {
        let (_tx, mut rx) = MemoryLoop::pair(1);
        rx.set_timeout(Some(Duration::from_millis(20))).unwrap();
        let err = rx.recv(&mut [0u8; 8]).unwrap_err();
        assert!(crate::link::is_timeout(&err));
    }
}
