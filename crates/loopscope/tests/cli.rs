//! Behaviour every command shares, through the real binary: a closed or full stdout, usage
//! errors, unit limits, exit codes, help, completions and manual pages.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

#[path = "martians_support/mod.rs"]
mod martians_support;

fn binary() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("loopscope")
}

fn loopscope() -> Command {
    Command::cargo_bin("loopscope").expect("the binary is built")
}

/// Waits for the child, or kills it and fails after `limit`: a safety net so that a regression
/// that hangs (the defects below did) fails the test instead of stalling the suite. Not a
/// timing assertion: these runs take milliseconds.
fn finish_within(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match receiver.recv_timeout(limit) {
        Ok(output) => output.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("pid {pid} still running after {limit:?}");
        }
    }
}

const SAFETY_NET: Duration = Duration::from_secs(120);

/// Runs `loopscope ARGS | CONSUMER` (stderr as given) in bash, returns loopscope's exit code
/// and what bash's stderr got (loopscope's, unless redirected into the pipe).
fn piped(args: &str, stderr_into_pipe: bool, consumer: &str) -> (i32, String) {
    let redirect = if stderr_into_pipe { "2>&1" } else { "" };
    let script =
        format!("\"$0\" {args} {redirect} | {consumer} >/dev/null; exit \"${{PIPESTATUS[0]}}\"");
    let output = Command::new("bash")
        .args(["-c", &script])
        .arg(binary())
        .output()
        .expect("bash");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Issue 11 item 10, issue 12 item 8: `--json doctor | head -1` said "Broken pipe" and exited 2;
/// with `2>&1` it panicked (101).
#[test]
fn a_closed_stdout_ends_quietly_with_the_runs_own_exit_code() {
    let full = loopscope().args(["--json", "doctor"]).output().unwrap();
    let expected = full.status.code().unwrap();
    assert!(expected == 0 || expected == 1, "doctor exited {expected}");

    let (code, stderr) = piped("--json doctor", false, "head -1");
    assert_eq!((code, stderr.as_str()), (expected, ""));
    let (code, stderr) = piped("--json doctor", true, "head -1");
    assert_eq!((code, stderr.as_str()), (expected, ""));
    // The human table and its fix list, closed before the first byte.
    let (code, stderr) = piped("doctor", true, "head -c 0");
    assert_eq!((code, stderr.as_str()), (expected, ""));
    let (code, stderr) = piped("doctor --list", true, "head -c 0");
    assert_eq!((code, stderr.as_str()), (0, ""));
}

#[test]
fn a_stdout_closed_before_the_first_line_neither_panics_nor_fails() {
    for (args, expected) in [
        // Runs with an end of their own go on to it: their code is the one they would have had.
        ("ping loop: -c 5 -i 0.001", 0),
        ("completions bash", 0),
        ("man", 0),
        ("man bert", 0),
        ("--json listeners", 0),
        ("--json addr --fail-on-deny 127.0.0.1 8.8.8.8", 1),
        ("addr 127.0.0.1 10.0.0.1", 0),
        ("pattern gen prbs9 --bytes 10M", 0),
    ] {
        for into_pipe in [false, true] {
            let (code, stderr) = piped(args, into_pipe, "head -c 0");
            assert_eq!(
                (code, stderr.as_str()),
                (expected, ""),
                "{args} (2>&1: {into_pipe})"
            );
        }
    }
}

/// A run that only a signal would end (no count) ends when its reader goes away, instead of
/// pinging into the void forever.
#[test]
fn an_endless_run_ends_when_its_reader_goes_away() {
    let mut child = loopscope()
        .args(["ping", "loop:", "-i", "0.001"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("PING loop:"), "{first}");
    drop(lines);
    let output = finish_within(child, SAFETY_NET);
    // The run's own verdict (a request in flight when the reader left may count as lost), never
    // a usage error, a panic or death by SIGPIPE.
    let code = output.status.code();
    assert!(code == Some(0) || code == Some(1), "{:?}", output.status);
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

/// Issue 12 item 12: `martians > /dev/full` exited 1 without a word.
#[test]
fn a_full_stdout_is_an_error_with_exit_2() {
    if !std::path::Path::new("/dev/full").exists() {
        return eprintln!("skip: no /dev/full here");
    }
    use martians_support::{MAC_A, MAC_B, ethernet, ipv4_udp, pcap};
    let directory = tempfile::tempdir().unwrap();
    let capture = directory.path().join("martian.pcap");
    // A packet from 127.0.0.1 on an Ethernet wire: a martian (exit 1 when stdout works).
    let frame = ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4_udp([127, 0, 0, 1], [192, 0, 2, 1], 4000, 53),
    );
    std::fs::write(&capture, pcap(1, &[(1, 0, frame)])).unwrap();
    let works = loopscope().arg("martians").arg(&capture).output().unwrap();
    assert_eq!(works.status.code(), Some(1));

    for args in [
        vec!["martians".to_string(), capture.display().to_string()],
        vec!["listeners".into()],
        vec!["--json".into(), "addr".into(), "127.0.0.1".into()],
        vec!["man".into()],
    ] {
        let output = loopscope()
            .args(&args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("loopscope: error:") && stderr.contains("No space left on device"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

/// Issue 11 item 12: clap's multi-line `error: unexpected argument …` broke the promised
/// `loopscope: error:` first line.
#[test]
fn usage_errors_lead_with_the_promised_line_and_exit_2() {
    for (args, first_line_has) in [
        (
            vec!["listeners", "--bogus"],
            "unexpected argument '--bogus' found",
        ),
        (
            vec!["bert", "loop:", "--bytes", "1X"],
            "invalid value '1X' for '--bytes <BYTES>'",
        ),
        (vec!["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (vec![], "a command is required"),
        (vec!["pattern"], "a command is required"),
        (vec!["port", "70000"], "invalid value '70000'"),
    ] {
        let output = loopscope().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("loopscope: error: ") && first.contains(first_line_has),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    // clap's suggestion is kept, on the lines that follow.
    let output = loopscope()
        .args(["listeners", "--expose"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--exposed"), "{stderr}");
}

#[test]
fn help_and_version_go_to_stdout_with_exit_0() {
    for args in [vec!["--help"], vec!["--version"], vec!["bert", "--help"]] {
        let output = loopscope().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(
            !output.stdout.is_empty() && output.stderr.is_empty(),
            "{args:?}"
        );
    }
}

/// Issue 12 item 8: `10000000000000000000s` parsed, then `Instant + Duration` panicked; and
/// `-w 5124095h` wrapped around to "0 packets transmitted".
#[test]
fn durations_beyond_a_century_are_refused_at_parse_time() {
    for args in [
        vec!["ping", "loop:", "-W", "10000000000000000000s"],
        vec!["ping", "loop:", "-i", "10000000000000000000s"],
        vec!["ping", "loop:", "-w", "5124095h"],
        vec!["bert", "loop:", "--inject-burst-every", "1e300"],
        vec!["martians", "--duration", "10000000000000000000s", "x.pcap"],
        vec!["bert", "sim:?delay=10000000000000000000s"],
    ] {
        let child = loopscope()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = finish_within(child, SAFETY_NET);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("loopscope: error:") && stderr.contains("too large"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn sizes_rates_and_probabilities_share_one_parser() {
    // 1 MB (SI) of PRBS9 is 10^6 bytes; 1 MiB is 2^20.
    for (size, bytes) in [("1M", 1_000_000usize), ("1Mi", 1 << 20), ("64k", 64_000)] {
        let output = loopscope()
            .args(["pattern", "gen", "prbs9", "--bytes", size])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(output.stdout.len(), bytes, "{size}");
    }
    // --bit-rate is a rate: SI only, `1.5M` works, `64Ki` is refused.
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("p.bin");
    let status = loopscope()
        .args(["pattern", "gen", "prbs9", "--bytes", "1k", "-o"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    let ok = loopscope()
        .args([
            "pattern",
            "check",
            "--pattern",
            "prbs9",
            "--bit-rate",
            "1.5M",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let bad = loopscope()
        .args([
            "pattern",
            "check",
            "--pattern",
            "prbs9",
            "--bit-rate",
            "64Ki",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let bad = loopscope()
        .args(["bert", "loop:", "--max-ber", "2"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    // --impair rate= reads the same letters as before (m and M are mega) through the same parser.
    let output = loopscope()
        .args([
            "bert", "loop:", "--bytes", "1k", "--impair", "rate=1m", "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let bad = loopscope()
        .args(["bert", "loop:", "--bytes", "1k", "--impair", "rate=fast"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr.contains("rate") && stderr.contains("1.5M"),
        "{stderr}"
    );
}

/// Issue 11 item 14: `--json` was offered on `man` and `completions`.
#[test]
fn json_is_neither_offered_nor_taken_by_man_and_completions() {
    for command in ["man", "completions"] {
        let help = loopscope().args([command, "--help"]).output().unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        assert!(
            !help.contains("--json"),
            "{command} --help offers --json:\n{help}"
        );
        let output = loopscope()
            .args(["--json", command, "bash"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "--json {command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("loopscope: error: --json"), "{stderr}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = loopscope().args(["completions", shell]).output().unwrap();
        let script = String::from_utf8(script.stdout).unwrap();
        assert!(
            script.contains("--json") || script.contains("json"),
            "{shell}"
        );
        if shell == "bash" {
            // The option list of `loopscope man` has no --json; `doctor`'s keeps it.
            let man_options = script
                .lines()
                .skip_while(|line| line.trim() != "loopscope__subcmd__man)")
                .find(|line| line.contains("opts="))
                .unwrap();
            assert!(!man_options.contains("--json"), "{man_options}");
            let doctor_options = script
                .lines()
                .skip_while(|line| line.trim() != "loopscope__subcmd__doctor)")
                .find(|line| line.contains("opts="))
                .unwrap();
            assert!(doctor_options.contains("--json"), "{doctor_options}");
        }
    }
}

/// Issue 11 item 16: the man page was a stub naming pages that did not exist.
#[test]
fn every_command_has_a_man_page_with_links_exit_status_and_examples() {
    let page = |args: &[&str]| {
        let output = loopscope().arg("man").args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "man {args:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let overview = page(&[]);
    assert!(overview.contains(".TH loopscope 1"), "{overview}");
    for section in ["SYNOPSIS", "EXIT STATUS", "LINKS", "EXAMPLES", "SEE ALSO"] {
        assert!(
            overview.contains(&format!(".SH \"{section}\""))
                || overview.contains(&format!(".SH {section}")),
            "{section}"
        );
    }
    let bert = page(&["bert"]);
    assert!(bert.contains(".TH loopscope-bert 1"), "{bert}");
    assert!(bert.contains("\\-\\-max\\-ber"), "the options are there");
    assert!(bert.contains("tcp://HOST:PORT"), "the link syntax is there");
    assert!(bert.contains("EXIT STATUS") && bert.contains("EXAMPLES"));
    assert_eq!(page(&["pattern", "gen"]), page(&["pattern-gen"]));
    // Every page the overview names exists.
    for name in overview
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|word| word.strip_prefix("loopscope\\-"))
        .filter_map(|word| word.strip_suffix("(1)"))
    {
        let path: Vec<&str> = name.split("\\-").collect();
        page(&path);
    }
    let missing = loopscope().args(["man", "nope"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    // Every page at once, for packagers.
    let directory = tempfile::tempdir().unwrap();
    let status = loopscope()
        .args(["man", "--output-dir"])
        .arg(directory.path())
        .status()
        .unwrap();
    assert!(status.success());
    for file in [
        "loopscope.1",
        "loopscope-bert.1",
        "loopscope-pattern-gen.1",
        "loopscope-port.1",
    ] {
        assert!(directory.path().join(file).exists(), "{file}");
    }
    // man(1) itself renders a page without complaint, where it is installed.
    if Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let file = directory.path().join("loopscope-bert.1");
        let output = Command::new("man")
            .arg("-l")
            .arg(&file)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_STDERR", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("EXIT STATUS"), "{text}");
        assert!(!String::from_utf8_lossy(&output.stderr).contains("warning"));
    }
}

/// Issue 11 item 17: blank option descriptions and unexplained words in --help.
#[test]
fn help_texts_describe_every_option_and_the_exit_status() {
    let help = |args: &[&str]| {
        let output = loopscope().args(args).arg("--help").output().unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    let gen_help = help(&["pattern", "gen"]);
    for flag in ["--invert", "--no-invert", "--reverse", "--msb-first"] {
        let line = gen_help
            .lines()
            .find(|line| line.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing:\n{gen_help}"));
        assert!(
            line.trim_start().len() > flag.len() + 2,
            "{flag} has no description:\n{gen_help}"
        );
    }
    let check_help = help(&["pattern", "check"]);
    assert!(!check_help.contains("Send the"), "{check_help}");
    for command in ["listeners", "port"] {
        let text = help(&[command]);
        assert!(text.contains("Exit status:"), "{command}:\n{text}");
    }
    let port = help(&["port"]);
    for trap in [
        "localhost_order",
        "localhost_unreachable",
        "other_user",
        "ephemeral",
    ] {
        assert!(port.contains(trap), "{trap} not explained:\n{port}");
    }
    let reflect = help(&["reflect"]);
    let echo = reflect
        .lines()
        .find(|line| line.trim_start().starts_with("--echo"))
        .unwrap_or_else(|| panic!("no --echo:\n{reflect}"));
    assert_eq!(echo.trim(), "--echo", "--echo takes no value");
}

/// Issue 11 item 14: `pattern gen` ignored --json.
#[test]
fn pattern_gen_honours_json() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("p.bin");
    let output = loopscope()
        .args(["--json", "pattern", "gen", "prbs9", "--bytes", "1Ki", "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let summary: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["bytes"], 1024);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 1024);
    // With the pattern on stdout there is no room for JSON: refused, not mixed in.
    let output = loopscope()
        .args(["--json", "pattern", "gen", "prbs9", "--bytes", "1Ki"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}

/// Issue 12 item 12: error lines echoed 100 KB inputs.
#[test]
fn error_lines_stay_short_whatever_the_input() {
    let huge = "x".repeat(100_000);
    for args in [
        vec!["ping".to_string(), huge.clone()],
        vec!["bert".into(), format!("tcp://{huge}:1")],
        vec![
            "bert".into(),
            "loop:".into(),
            "--bytes".into(),
            huge.clone(),
        ],
    ] {
        let output = loopscope().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2));
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("loopscope: error:"), "{first}");
        assert!(stderr.len() < 2_000, "{} bytes of error", stderr.len());
    }
}

/// Issue 12 item 10: an error line quotes the input it refuses, and the input may carry
/// control characters (an escape sequence, a backspace, a carriage return that rewrites the
/// line). They reach the terminal as visible escapes, never raw.
#[test]
fn error_lines_show_control_characters_as_escapes() {
    for endpoint in ["sim:?ber=\x1b[2J\x08", "tcp://host\rfake verdict: PASS:1"] {
        let output = loopscope().args(["ping", endpoint]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{endpoint:?}");
        let stderr = String::from_utf8(output.stderr).expect("utf-8");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("loopscope: error:"), "{first:?}");
        assert!(
            !first.chars().any(char::is_control),
            "a raw control character in {first:?}"
        );
    }
}

/// Issue 11 item 18 (doubled causes): a library error that quotes its source and also marks it
/// as the source printed `Connection refused (os error 111) (…): Connection refused (os error
/// 111)`. The cause appears once.
#[test]
fn a_refused_connection_names_its_cause_once() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let output = loopscope()
        .args(["perf", &format!("tcp://127.0.0.1:{port}"), "-t", "1"])
        .output()
        .expect("run loopscope");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("loopscope: error: "), "{stderr}");
    assert_eq!(stderr.matches("os error 111").count(), 1, "{stderr}");
}
