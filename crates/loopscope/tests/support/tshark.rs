//! Capturing with tcpdump, and reading a capture file back with tshark, the reference decoder:
//! one row per packet, one column per field asked for.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `tcpdump` (the command as the caller built it, writing a file) and returns once it
/// says it is listening, so that nothing sent afterwards is missed. Its stderr is drained from
/// then on so that it never blocks on a full pipe. Fails the test if it stops first.
pub fn start_tcpdump(mut command: Command) -> Child {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tcpdump");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("listening on") => break,
            Some(Ok(_)) => continue,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tcpdump stopped before it was listening");
            }
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// Captures on `interface` into `file` with nanosecond kernel timestamps (`command` is
/// `tcpdump`, built by the caller where it must run, e.g. in a namespace) and returns once it
/// listens. `-Z root`: tcpdump would otherwise open the file as its own user, who may not enter
/// a temporary directory; `-U` writes each packet as it comes. `options` go before the file
/// (`-c N`, `-Q out`, `--immediate-mode`).
pub fn capture(
    mut command: Command,
    interface: &str,
    options: &[&str],
    file: &Path,
    filter: &str,
) -> Child {
    command
        .args(["-Z", "root", "-U", "-nn", "-i", interface])
        .arg("--time-stamp-precision=nano")
        .args(options)
        .arg("-w")
        .arg(file)
        .arg(filter);
    start_tcpdump(command)
}

/// `tshark -n -r FILE OPTIONS -T fields -e FIELD...`: one row per packet, one string per field
/// (empty where the packet has no such field; several occurrences are joined by commas, as
/// tshark prints them). `options` go before the fields (`-d udp.port==N,PROTO`, `-Y FILTER`).
/// Times print in UTC. Fails the test, with tshark's complaint, when tshark cannot read it.
pub fn fields(file: &Path, options: &[&str], fields: &[&str]) -> Vec<Vec<String>> {
    let output = Command::new("tshark")
        .env("TZ", "UTC")
        .args(["-n", "-r"])
        .arg(file)
        .args(options)
        // Tab between fields: a field's own occurrences are separated by commas.
        .args(["-T", "fields", "-E", "separator=/t"])
        .args(fields.iter().flat_map(|field| ["-e", field]))
        .output()
        .expect("run tshark");
    assert!(
        output.status.success(),
        "tshark could not read {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

/// tshark's `frame.time_epoch` (`1796085473.967481576`) in nanoseconds; `None` when it is not
/// a number.
pub fn epoch_ns(text: &str) -> Option<u64> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let nanos: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    Some(seconds.parse::<u64>().ok()? * 1_000_000_000 + nanos.parse::<u64>().ok()?)
}
