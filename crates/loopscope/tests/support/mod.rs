//! Helpers shared by the binary's integration tests: running it, and network namespaces.
// Each test file includes this module and uses only part of it; `pub` here means shared between
// the test crate's modules (a test crate has no public API for unreachable_pub to guard).
#![allow(dead_code, unreachable_pub)]

pub mod jack;
pub mod routed;
pub mod running;
pub mod tshark;

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

/// The binary under test.
pub fn loopscope() -> Command {
    Command::cargo_bin("loopscope").expect("the binary is built")
}

/// Runs with `--json`: (exit code, JSON lines, stderr).
pub fn run_json(args: &[&str]) -> (i32, Vec<Value>, String) {
    let output = loopscope().args(args).arg("--json").output().expect("runs");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    (
        output.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The last JSON line, which must be the summary.
pub fn summary(lines: &[Value]) -> &Value {
    let last = lines.last().expect("some output");
    assert_eq!(last["type"], "summary", "the last line is the summary");
    last
}

/// The JSON lines of a run's stdout (lines that are not JSON are left out).
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The summary record of a finished `--json` run; without one the test fails with what the run
/// printed.
pub fn summary_of(output: &Output) -> Value {
    json_lines(&output.stdout)
        .into_iter()
        .find(|record| record["type"] == "summary")
        .unwrap_or_else(|| {
            panic!(
                "no summary; stdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// Fails the test unless the run exited with `code`, showing its stderr.
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits for a child, but not forever: a run that hangs fails the test instead of the suite.
pub fn wait_or_kill(mut child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("child status").is_some() {
            return child.wait_with_output().expect("child output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().expect("child output");
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port on 127.0.0.1 that nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind port 0")
        .port()
}

/// Whether `program` is on PATH (tests that compare with a reference tool skip without it).
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether a system tool (nft, iptables...) is installed, looking in the sbin directories too,
/// which a non-root PATH leaves out; says why the test skips when it is not.
pub fn system_tool(name: &str) -> bool {
    let found = installed(name)
        || ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|dir| std::path::Path::new(dir).join(name).exists());
    if !found {
        eprintln!("skipping: {name} is not installed");
    }
    found
}

/// The median as the summaries report it (`*_p50_us`): nearest rank, the ⌈n/2⌉-th smallest
/// (the 100th of 200), not the mean of the two middle values.
pub fn nearest_rank_median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty(), "the median of nothing");
    values.sort_by(f64::total_cmp);
    values[values.len().div_ceil(2) - 1]
}

/// Whether nft (nftables) is installed; says why the test skips when it is not.
pub fn nft_available() -> bool {
    system_tool("nft")
}

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

/// Two new namespaces (`PREFIX-A_TAG-pid`, `PREFIX-B_TAG-pid`) joined by a veth: `vA` in the
/// first, `vB` in the second, both down. `None` (with the reason printed) when namespaces cannot
/// be made here.
pub fn veth_pair(prefix: &str, a_tag: &str, b_tag: &str) -> Option<(Netns, Netns)> {
    let a = Netns::create(prefix, a_tag)?;
    let b = Netns::create(prefix, b_tag)?;
    let veth = Command::new("ip")
        .args(["link", "add", "vA", "netns", &a.name, "type", "veth"])
        .args(["peer", "name", "vB", "netns", &b.name])
        .status()
        .expect("ip link add");
    assert!(veth.success(), "veth");
    Some((a, b))
}

/// A copy of an executable that any user may run, for tests that drop privileges: the build
/// directory may sit inside a checkout only its owner can enter (a clone under /root, or in a
/// `mktemp -d`), where user nobody cannot execute the original. The copy lives in a fresh
/// directory of mode 0755 under the system's temporary directory and goes away on drop.
pub struct SharedExecutable {
    _directory: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

/// Why a path cannot be reached by other users, if it cannot: a directory on the way without
/// search permission for others.
pub fn closed_to_others(path: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors()
        .skip(1)
        .filter(|dir| !dir.as_os_str().is_empty())
        .find(|dir| std::fs::metadata(dir).is_ok_and(|meta| meta.permissions().mode() & 0o001 == 0))
        .map(std::path::Path::to_path_buf)
}

/// Copies `program` to `to` (mode 0755) for a test to run. The copy is made by another
/// process (coreutils' install), never by this one: a file this multi-threaded test process
/// held open for writing would be inherited by any child another test thread forks meanwhile,
/// and exec of the copy fails with ETXTBSY ("Text file busy") until that child has exec'd in
/// turn (seen once in CI).
pub fn copy_executable(program: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    let copied = Command::new("install")
        .args(["-m", "0755"])
        .arg(program)
        .arg(to)
        .status()
        .map_err(|e| format!("install (coreutils): {e}"))?;
    if copied.success() {
        Ok(())
    } else {
        Err(format!(
            "install {} {}: {copied}",
            program.display(),
            to.display()
        ))
    }
}

impl SharedExecutable {
    /// `Err` (with the reason, for the skip message) when no such place exists here.
    pub fn copy(program: &std::path::Path) -> Result<SharedExecutable, String> {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::Builder::new()
            .prefix("loopscope-shared-exe-")
            .tempdir()
            .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
        std::fs::set_permissions(directory.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", directory.path().display()))?;
        if let Some(closed) = closed_to_others(directory.path()) {
            return Err(format!(
                "the temporary directory is inside {}, which other users cannot enter",
                closed.display()
            ));
        }
        let name = program.file_name().ok_or("no file name")?;
        let path = directory.path().join(name);
        copy_executable(program, &path)?;
        Ok(SharedExecutable {
            _directory: directory,
            path,
        })
    }
}
