//! A child program whose stdout lines are read as they come: the test waits for the line it
//! needs (a `listening` event, a peer's `ready`), never on a sleep, and the child is killed and
//! reaped when the test ends, however it ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use serde_json::Value;

use super::Netns;

/// Longest wait for an expected line: generous, since CI runs beside stress-ng.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Running {
    pub child: Child,
    pub lines: Receiver<String>,
}

impl Running {
    /// `loopscope --json ARGS`.
    pub fn start(args: &[&str]) -> Running {
        Running::loopscope(
            Command::new(assert_cmd::cargo::cargo_bin("loopscope")),
            args,
        )
    }

    /// `loopscope --json ARGS` inside a network namespace.
    pub fn start_in(netns: &Netns, args: &[&str]) -> Running {
        Running::loopscope(
            netns.command(assert_cmd::cargo::cargo_bin("loopscope")),
            args,
        )
    }

    fn loopscope(mut command: Command, args: &[&str]) -> Running {
        command.arg("--json").args(args);
        Running::spawn(command)
    }

    /// Any program; its stderr goes to the test's.
    pub fn spawn(command: Command) -> Running {
        Running::spawn_with_stderr(command, Stdio::inherit())
    }

    /// Any program, with its stderr where the caller says (tshark's chatter: `Stdio::null()`).
    pub fn spawn_with_stderr(mut command: Command, stderr: Stdio) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The next line, or `None` when none came within `limit`; panics when the program has
    /// closed its stdout (it ended).
    pub fn next_line_within(&self, limit: Duration) -> Option<String> {
        match self.lines.recv_timeout(limit) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the program ended"),
        }
    }

    /// The first line for which `wanted` holds (earlier lines are passed over).
    pub fn line_where(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {what} within {PATIENCE:?}"),
            }
        }
    }

    /// The first JSON line for which `wanted` holds; a line that is not JSON fails the test.
    pub fn wait_for(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self.line_where(what, |_| true);
            let value: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if wanted(&value) {
                return value;
            }
        }
    }

    /// Ctrl-C (loopscope then prints its summary), then the summary and the exit code.
    pub fn interrupt(self) -> (Value, i32) {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::INT,
        )
        .expect("SIGINT");
        self.finish()
    }

    /// Waits for the end of a run that ends by itself: its summary and exit code.
    pub fn finish(mut self) -> (Value, i32) {
        let summary = self.wait_for("the summary", |v| v["type"] == "summary");
        let status = self.child.wait().expect("wait");
        (summary, status.code().unwrap_or(-1))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
