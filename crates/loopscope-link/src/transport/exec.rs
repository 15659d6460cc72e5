//! `exec:CMD` — a child process is the loop: what goes to its stdin must come back on its
//! stdout (`exec:cat`, `exec:ssh host cat`, `exec:socat - /dev/ttyUSB0,raw`).
//!
//! The command line is split like a shell would (shell-words) but run directly, without a
//! shell, so a missing program is reported as such instead of as a shell's exit status 127.

use loopscope_sys::{Readiness, wait_readable};
use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{Link, LinkError, LinkHalves, LinkReceiver, LinkSender};

pub struct ExecLink {
    argv: Vec<String>,
    original: String,
}

impl ExecLink {
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
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.stdin {
            Some(stdin) => stdin.write_all(data),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
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
}

impl LinkReceiver for ExecReceiver {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(timeout) = self.timeout {
            match wait_readable(&self.stdout, Some(timeout))? {
                Readiness::Ready => {}
                Readiness::TimedOut => return Err(loopscope_sys::timed_out()),
                Readiness::Interrupted => return Err(io::ErrorKind::Interrupted.into()),
            }
        }
        self.stdout.read(buf)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }

    fn stats(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        map.insert("program".into(), self.program.clone().into());
        if let Ok(mut guard) = self.child.lock()
            && let Ok(Some(status)) = guard.0.try_wait()
        {
            map.insert("exit_status".into(), status.to_string().into());
        }
        map
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
    fn cat_gives_back_what_it_gets() {
        let (mut tx, mut rx) = open("exec:cat").unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = std::thread::spawn(move || {
            tx.send(&data).unwrap();
            tx.finish().unwrap();
        });
        rx.set_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = rx.recv(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        writer.join().unwrap();
        assert!(got == expected, "cat changed the data");
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

    #[test]
    fn an_early_exit_is_end_of_stream() {
        let (_tx, mut rx) = open("exec:true").unwrap();
        rx.set_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(rx.recv(&mut [0u8; 16]).unwrap(), 0);
    }
}
