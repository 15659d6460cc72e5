//! Helpers shared by the integration tests that build network namespaces.
// Each test file includes this module and uses only part of it; `pub` here means shared between
// the test crate's modules (a test crate has no public API for unreachable_pub to guard).
#![allow(dead_code, unreachable_pub)]

use std::process::Command;

/// Whether this process runs as root (namespaces, raw sockets and nft need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// A network namespace that is deleted when the test ends, however it ends. Its name carries
/// the test process's pid so parallel test processes never collide.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `None` (with the reason printed) when namespaces cannot be made here.
    pub fn create(prefix: &str, tag: &str) -> Option<Netns> {
        if !is_root() {
            eprintln!("skipping: creating network namespaces needs root");
            return None;
        }
        let name = format!("{prefix}-{tag}-{}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status();
        if !status.is_ok_and(|status| status.success()) {
            eprintln!("skipping: `ip netns add` failed (no iproute2 or no namespace support)");
            return None;
        }
        Some(Netns { name })
    }

    /// `ip netns exec NAME PROGRAM`, to add arguments to and run.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs a command inside the namespace and insists it worked.
    pub fn exec(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .output()
            .expect("run ip netns exec");
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
