//! Reading a capture file back with tshark, the reference decoder: one row per packet, one
//! column per field asked for.

use std::path::Path;
use std::process::Command;

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
