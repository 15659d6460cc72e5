//! `exec:CMD` — a child process is the loop: what goes to its stdin must come back on its
//! stdout (`exec:cat`, `exec:ssh host cat`, `exec:socat - /dev/ttyUSB0,raw`).
//!
//! The command line is split like a shell would (shell-words) but run directly, without a
//! shell, so a missing program is reported as such instead of as a shell's exit status 127.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{Cancel, Link, LinkError, LinkHalves, LinkReceiver, LinkSender, SendError};
use crate::stats::{LinkStats, ProcessStats};
use crate::transport::send::{Writer, write_all_until};
use loopscope_sys::{Readiness, wait_readable};

/// `exec:COMMAND`: a child process whose stdout gives back what its stdin got.
pub struct ExecLink {
    argv: Vec<String>,
    original: String,
}

impl ExecLink {
    /// Reads the command line (split as a shell would, without running a shell).
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        let argv = shell_words::split(&endpoint.target)
            .map_err(|e| endpoint.invalid(format!("cannot split the command line: {e}")))?;
        if argv.is_empty() {
            return Err(endpoint.invalid("exec: needs a command, e.g. exec:cat"));
        }
        Ok(ExecLink {
            argv,
            original: endpoint.original.clone(),
        })
    }
}

impl Link for ExecLink {
    fn describe(&self) -> String {
        self.original.clone()
    }

    fn split(self: Box<Self>) -> Result<LinkHalves, LinkError> {
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| LinkError::io(format!("cannot start '{}'", self.argv[0]), e))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(LinkError::Unsupported(
                "the child's pipes were not created".into(),
            ));
        };
        // Our end of the pipe only: a child that stops reading fills it, and the sender must
        // then wait in poll(2), where it can see its deadline, not in write(2).
        rustix::io::ioctl_fionbio(&stdin, true)
            .map_err(|e| LinkError::io("cannot make the child's stdin non-blocking", e.into()))?;
        // The pipes keep their default size: a larger one would hold more in flight, and a
        // line-timed test (the framed BERT against an NIU) would wait seconds of line time
        // for it to drain.
        let child = Arc::new(Mutex::new(ChildGuard(child)));
        Ok((
            Box::new(ExecSender {
                stdin: Some(stdin),
                _child: Arc::clone(&child),
            }),
            Box::new(ExecReceiver {
                stdout,
                timeout: None,
                child,
                program: self.argv[0].clone(),
                ended: false,
            }),
        ))
    }
}

/// Ends the child when both halves are gone, so an aborted run leaves no process behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

struct ExecSender {
    stdin: Option<ChildStdin>,
    _child: Arc<Mutex<ChildGuard>>,
}

impl LinkSender for ExecSender {
    fn send(&mut self, data: &[u8], cancel: &Cancel) -> Result<(), SendError> {
        match &self.stdin {
            Some(stdin) => write_all_until(stdin.as_fd(), data, Writer::NonBlocking, cancel),
            None => Err(SendError::failed(0, io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn finish(&mut self, _cancel: &Cancel) -> io::Result<()> {
        // Closing stdin is how a filter like `cat` learns the input is over.
        self.stdin = None;
        Ok(())
    }
}

struct ExecReceiver {
    stdout: ChildStdout,
    timeout: Option<Duration>,
    child: Arc<Mutex<ChildGuard>>,
    program: String,
    /// The child closed its stdout (usually: it is exiting).
    ended: bool,
}

/// How long the summary waits for a child that closed its stdout to be reaped.
const EXIT_WAIT: Duration = Duration::from_secs(1);

impl LinkReceiver for ExecReceiver {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(timeout) = self.timeout {
            match wait_readable(&self.stdout, Some(timeout))? {
                Readiness::Ready => {}
                Readiness::TimedOut => return Err(loopscope_sys::timed_out()),
                Readiness::Interrupted => return Err(io::ErrorKind::Interrupted.into()),
            }
        }
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ended = true;
        }
        Ok(n)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }

    fn stats(&self) -> LinkStats {
        let mut process = ProcessStats {
            program: self.program.clone(),
            ..Default::default()
        };
        // A child that closed its stdout is exiting: wait for that (briefly), so the summary
        // says how it ended rather than that it was still running a moment before.
        let give_up = std::time::Instant::now() + EXIT_WAIT;
        let status = loop {
            let status = self
                .child
                .lock()
                .ok()
                .and_then(|mut guard| guard.0.try_wait().ok().flatten());
            if status.is_some() || !self.ended || std::time::Instant::now() >= give_up {
                break status;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if let Some(status) = status {
            process.exit_status = Some(status.to_string());
            process.exit_code = status.code();
            process.exit_signal = status.signal();
        }
        LinkStats {
            process: Some(process),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(text: &str) -> Result<LinkHalves, LinkError> {
        let endpoint = Endpoint::parse(text).unwrap();
        Box::new(ExecLink::from_endpoint(&endpoint).unwrap()).split()
    }

    #[test]
    fn a_missing_program_is_named() {
        let error = open("exec:no-such-program-loopscope --flag")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("cannot start 'no-such-program-loopscope'"),
            "{error}"
        );
    }

    /// `sleep` never reads its stdin: once the pipe is full the sender waits, and gives up at
    /// its deadline with the bytes the pipe took (issue 12: `bert exec:'sleep 34'` hung).
    #[test]
    fn a_child_that_never_reads_does_not_hold_the_sender_past_its_deadline() {
        let (mut tx, _rx) = open("exec:sleep 30").unwrap();
        let started = std::time::Instant::now();
        let cancel = Cancel::never().until(started + Duration::from_millis(300));
        let error = tx.send(&vec![0u8; 8 << 20], &cancel).unwrap_err();
        assert!(error.is_cancelled(), "{error}");
        assert!(
            error.accepted > 0 && error.accepted < 8 << 20,
            "{}",
            error.accepted
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn an_early_exit_is_end_of_stream() {
        let (_tx, mut rx) = open("exec:true").unwrap();
        rx.set_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(rx.recv(&mut [0u8; 16]).unwrap(), 0);
    }
}
