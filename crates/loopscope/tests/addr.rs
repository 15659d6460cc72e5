//! `loopscope addr` through the real binary: JSON fields, bulk mode, exit codes. Names are
//! resolved from a hosts file written by the test or not at all, never from the internet.

use assert_cmd::Command;
use serde_json::Value;

fn loopscope() -> Command {
    Command::cargo_bin("loopscope").unwrap()
}

fn json_lines(output: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Runs `command`, which must succeed, and returns its JSON lines.
fn succeeded_json(command: &mut Command) -> Vec<Value> {
    json_lines(&command.assert().success().get_output().stdout)
}

/// The message of an `error` record.
fn error_text(record: &Value) -> &str {
    record["error"]
        .as_str()
        .expect("an error record has a message")
}

#[test]
fn json_fields_for_octal_loopback() {
    let records = succeeded_json(loopscope().args(["--json", "addr", "0177.0.0.1"]));
    assert_eq!(records.len(), 2);
    let a = &records[0];
    assert_eq!(a["type"], "address");
    assert_eq!(a["input"], "0177.0.0.1");
    assert_eq!(a["address"], "127.0.0.1");
    assert_eq!(a["notation"], "ipv4_inet_aton");
    assert_eq!(a["registry"]["name"], "Loopback");
    assert_eq!(a["registry"]["rfc"], "[RFC1122], Section 3.2.1.3");
    assert_eq!(a["registry"]["block"], "127.0.0.0/8");
    assert_eq!(a["registry"]["snapshot"], "2026-07-18");
    assert_eq!(a["registry"]["reserved_by_protocol"], true);
    assert_eq!(a["loopback"], true);
    assert_eq!(a["globally_reachable"], false);
    assert_eq!(a["martian_source"], "loopback_source");
    assert_eq!(a["martian_destination"], "loopback_destination");
    assert_eq!(a["ssrf"], "deny");
    assert!(a["reason"].as_str().unwrap().contains("loopback"));
    let decimal = a["readings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["parser"] == "decimal")
        .unwrap();
    assert_eq!(decimal["host"], "177.0.0.1");
    assert_eq!(decimal["agrees"], false);
    assert_eq!(records[1]["type"], "summary");
    assert_eq!(records[1]["denied"], 1);
}

#[test]
fn json_for_public_mapped_and_embedded() {
    let r = succeeded_json(loopscope().args([
        "--json",
        "addr",
        "8.8.8.8",
        "::ffff:127.0.0.1",
        "2002:7f00:1::1",
        "3fff::1",
    ]));
    assert_eq!(r[0]["ssrf"], "allow");
    assert_eq!(r[0]["registry"], Value::Null);
    assert_eq!(r[0]["globally_reachable"], true);
    assert_eq!(r[0]["martian_source"], Value::Null);
    assert_eq!(r[1]["loopback"], true);
    assert_eq!(r[1]["registry"]["name"], "IPv4-mapped Address");
    assert_eq!(r[1]["embedded"][0]["kind"], "ipv4_mapped");
    assert_eq!(r[1]["embedded"][0]["ipv4"], "127.0.0.1");
    assert_eq!(r[2]["registry"]["name"], "6to4");
    assert_eq!(r[2]["registry"]["globally_reachable"], Value::Null);
    assert_eq!(r[2]["embedded"][0]["kind"], "6to4");
    assert_eq!(r[2]["embedded"][0]["loopback"], true);
    assert_eq!(r[2]["ssrf"], "deny");
    assert_eq!(r[3]["registry"]["rfc"], "[RFC9637]");
    assert_eq!(r[3]["martian_source"], "documentation_source");
}

#[test]
fn exit_codes() {
    // Denied but no --fail-on-deny: 0.
    loopscope().args(["addr", "127.1"]).assert().code(0);
    loopscope()
        .args(["addr", "--fail-on-deny", "127.1"])
        .assert()
        .code(1);
    loopscope()
        .args(["addr", "--fail-on-deny", "8.8.8.8"])
        .assert()
        .code(0);
    loopscope()
        .args([
            "addr",
            "--fail-on-deny",
            "--allow",
            "127.0.0.0/8",
            "http://127.0.0.1:8080/",
        ])
        .assert()
        .code(0);
    // Unparsable argument: 2 with one line on stderr.
    let assert = loopscope().args(["addr", "http://[::1/"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.starts_with("loopscope: error:"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1);
    loopscope()
        .args(["addr", "--allow", "10.0.0.0/99", "1.2.3.4"])
        .assert()
        .code(2);
}

#[test]
fn bulk_stdin_streams_ndjson() {
    let input =
        "127.1\n\n# comment\n0x7f000001\nnot an address\nhttp://[::ffff:10.0.0.1]/\n8.8.8.8\n";
    let r = succeeded_json(
        loopscope()
            .args(["--json", "addr", "-", "--no-resolve"])
            .write_stdin(input),
    );
    let kinds: Vec<_> = r.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "address", "address", "error", "address", "address", "summary"
        ]
    );
    assert_eq!(r[0]["address"], "127.0.0.1");
    assert_eq!(r[1]["address"], "127.0.0.1");
    assert_eq!(r[2]["input"], "not an address");
    assert_eq!(r[3]["address"], "::ffff:10.0.0.1");
    assert_eq!(r[3]["ssrf"], "deny");
    assert_eq!(r[4]["ssrf"], "allow");
    assert_eq!(r[5]["inputs"], 5);
    assert_eq!(r[5]["unparsable"], 1);
    assert_eq!(r[5]["allowed"], 1);
    // Without arguments, stdin that is not a terminal is read the same way.
    loopscope()
        .args(["addr", "--fail-on-deny"])
        .write_stdin("8.8.8.8\n127.0.0.1\n")
        .assert()
        .code(1);
}

#[test]
fn bulk_file_and_hosts_file() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "intranet.test\nhttps://public.test/\nlocalhost\n").unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "10.1.2.3 intranet.test\n93.184.215.14 public.test\n",
    )
    .unwrap();
    let r = succeeded_json(
        loopscope()
            .arg("--json")
            .arg("addr")
            .arg("--file")
            .arg(&list)
            .arg("--hosts-file")
            .arg(&hosts),
    );
    assert_eq!(r[0]["address"], "10.1.2.3");
    assert_eq!(r[0]["registry"]["name"], "Private-Use");
    assert_eq!(r[0]["ssrf"], "deny");
    assert_eq!(r[0]["answers"][0]["address"], "10.1.2.3");
    assert_eq!(r[1]["address"], "93.184.215.14");
    assert_eq!(r[1]["ssrf"], "allow");
    assert_eq!(r[1]["port"], 443);
    assert_eq!(r[2]["loopback_by_name"], true);
    assert_eq!(r[2]["ssrf"], "deny");
    // --allow-private opens the RFC 1918 answer.
    let records = succeeded_json(
        loopscope()
            .arg("--json")
            .arg("addr")
            .arg("--allow-private")
            .arg("--hosts-file")
            .arg(&hosts)
            .arg("intranet.test"),
    );
    assert_eq!(records[0]["ssrf"], "allow");
}

#[test]
fn human_table() {
    let assert = loopscope()
        .args(["addr", "http://127.0.0.1\\@evil.test/", "--no-resolve"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(text.starts_with("http://127.0.0.1\\@evil.test/"), "{text}");
    for needle in [
        "Loopback 127.0.0.0/8",
        "2026-07-18",
        "reading rfc3986",
        "evil.test",
        "martian source",
        "ssrf",
        "deny",
    ] {
        assert!(text.contains(needle), "missing {needle}: {text}");
    }
}

/// Issue 11 item 18: what a name that did not resolve reaches is unknown, not "no"; the JSON
/// says so with `resolved: false` and a null `globally_reachable`.
#[test]
fn an_unresolved_name_is_unknown_not_unreachable() {
    let assert = loopscope()
        .args(["addr", "intranet.test", "--no-resolve"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    let row = |label: &str| {
        text.lines()
            .find(|line| line.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} row: {text}"))
            .to_string()
    };
    assert!(
        row("globally reachable").ends_with("unknown (not resolved)"),
        "{text}"
    );
    assert!(row("reaches this host").ends_with("unknown (not resolved)"));
    let output = loopscope()
        .args(["--json", "addr", "intranet.test", "--no-resolve"])
        .output()
        .unwrap();
    let records = json_lines(&output.stdout);
    assert_eq!(records[0]["resolved"], false);
    assert_eq!(records[0]["globally_reachable"], Value::Null);
    // A literal address is always resolved.
    let output = loopscope()
        .args(["--json", "addr", "8.8.8.8"])
        .output()
        .unwrap();
    let records = json_lines(&output.stdout);
    assert_eq!(records[0]["resolved"], true);
    assert_eq!(records[0]["globally_reachable"], true);
}

/// Issue 11 item 18: `not-an-address!!` is not a host name: a clear error (exit 2 as an
/// argument, an error record in bulk mode), never a name lookup.
#[test]
fn not_an_address_is_not_a_host_name() {
    let output = loopscope()
        .args(["addr", "not-an-address!!"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "loopscope: error: 'not-an-address!!' is neither an address nor a host name"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
    let output = loopscope()
        .args(["--json", "addr", "-"])
        .write_stdin("not-an-address!!\n8.8.8.8\n")
        .output()
        .unwrap();
    let records = json_lines(&output.stdout);
    assert_eq!(records[0]["type"], "error");
    assert_eq!(records[0]["line"], 1);
    assert!(error_text(&records[0]).contains("'!' is not allowed in a host name"));
    assert_eq!(records[1]["address"], "8.8.8.8");
}

/// Issue 12 item 11: one line that is not UTF-8 (or far too long) is an error record and the
/// stream goes on.
#[test]
fn bulk_goes_on_past_a_line_that_is_not_utf8() {
    let mut input = b"127.0.0.1\n\xff\xfe bad\n".to_vec();
    input.extend(vec![b'a'; 100_000]);
    input.extend(b"\n8.8.8.8\n");
    let output = loopscope()
        .args(["--json", "addr", "-", "--no-resolve"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let records = json_lines(&output.stdout);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["address", "error", "error", "address", "summary"]);
    assert_eq!(records[1]["line"], 2);
    assert!(error_text(&records[1]).contains("not UTF-8"));
    assert_eq!(records[2]["line"], 3);
    assert!(error_text(&records[2]).contains("longer than"));
    assert_eq!(records[3]["address"], "8.8.8.8");
    assert_eq!(records[4]["unparsable"], 2);
}

/// Issue 12 item 11: an endless input (`/dev/zero`) ends with a clear error, exit 2, after
/// reading a bounded amount, for --file and for --hosts-file alike.
#[test]
fn endless_inputs_are_refused() {
    let output = loopscope()
        .args(["--json", "addr", "--file", "/dev/zero"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no line end within"), "{stderr}");
    assert_eq!(
        json_lines(&output.stdout).last().unwrap()["type"],
        "summary"
    );
    let output = loopscope()
        .args(["addr", "--hosts-file", "/dev/zero", "example.test"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is larger than"), "{stderr}");
}

/// Issue 12 item 10: control characters in the input never reach the terminal raw.
#[test]
fn human_output_escapes_control_characters() {
    for args in [
        vec!["addr", "--no-resolve", "http://evil.test\u{1b}[2J/"],
        vec!["addr", "--no-resolve", "-"],
    ] {
        let output = loopscope()
            .args(&args)
            .write_stdin("http://a.test/\u{1b}]0;pwned\u{7}\nexample.test\u{9b}31m\n")
            .output()
            .unwrap();
        // Both streams: an input that does not parse is echoed in the error on stderr.
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{9b}'),
            "{args:?}: {text:?}"
        );
        assert!(text.contains("\\x1b"), "{args:?}: {text}");
    }
}

/// Issue 12 item 11: a deny rule matches every form that reaches the same IPv4 host, written
/// either way round.
#[test]
fn deny_rules_cover_every_form_of_the_host() {
    let teredo = "http://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/";
    for (rule, input) in [
        ("8.8.8.8/32", "http://[64:ff9b::8.8.8.8]/"),
        ("8.8.8.8/32", "http://[2002:808:808::1]/"),
        ("8.8.8.8/32", teredo),
        ("8.8.8.8/32", "http://[::ffff:8.8.8.8]/"),
        ("::ffff:8.8.8.8/128", "http://8.8.8.8/"),
        ("2002:808:808::/48", "8.8.8.8"),
    ] {
        let output = loopscope()
            .args(["--json", "addr", "--deny", rule, input])
            .output()
            .unwrap();
        let records = json_lines(&output.stdout);
        assert_eq!(records[0]["ssrf"], "deny", "{rule} {input}: {records:?}");
        assert!(
            records[0]["reason"]
                .as_str()
                .unwrap()
                .contains("in denied prefix"),
            "{rule} {input}: {records:?}"
        );
    }
}
