//! `loopscope bert` and `loopscope pattern` driven as a user would, through the real binary.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod support;
use support::{loopscope, run_json, summary, summary_of, wait_or_kill};

#[test]
fn clean_loop_passes_with_every_contract_field() {
    let (code, lines, stderr) = run_json(&["bert", "loop:", "--bytes", "8M"]);
    assert_eq!(code, 0, "{stderr}");
    let s = summary(&lines);
    for field in [
        "pattern",
        "inverted",
        "bits",
        "bit_errors",
        "ber",
        "ber_upper_bound",
        "confidence",
        "sync_losses",
        "slips",
        "errored_seconds",
        "severely_errored_seconds",
        "unavailable_seconds",
        "error_free_seconds",
        "elapsed_s",
        "throughput_bps",
        "passed",
    ] {
        assert!(s.get(field).is_some(), "summary lacks {field}: {s}");
    }
    assert_eq!(s["pattern"], "prbs31");
    assert_eq!(s["inverted"], true, "O.150 sends 2^31-1 inverted");
    assert_eq!(s["bit_errors"], 0);
    assert_eq!(s["passed"], true);
    // Only the first bits before synchronisation go unchecked.
    let bits = s["bits"].as_u64().unwrap();
    assert!(bits <= 64_000_000 && bits > 64_000_000 - 1024, "{bits}");
    // No errors in N bits: the 95% bound is -ln(0.05)/N = 2.996/N.
    let bound = s["ber_upper_bound"].as_f64().unwrap();
    assert!((bound * bits as f64 - 2.996).abs() < 0.01, "{bound}");
}

#[test]
fn random_line_errors_are_measured_at_the_rate_the_channel_made() {
    let (code, lines, _) = run_json(&[
        "bert",
        "sim:?ber=1e-4&seed=3",
        "--bytes",
        "4M",
        "--max-ber",
        "1e-3",
    ]);
    let s = summary(&lines);
    assert_eq!(code, 0, "{s}");
    let flipped = s["link_stats"]["impairment"]["flipped_bits"]
        .as_u64()
        .unwrap();
    let errors = s["bit_errors"].as_u64().unwrap();
    // Each flipped bit is one error (a free-running checker does not triple-count); a handful
    // may fall into the unchecked acquisition bits.
    assert!(
        errors <= flipped && flipped - errors <= 3,
        "checker {errors}, channel {flipped}"
    );
    // 32 Mbit at 1e-4: 3200 expected; the 99% interval is about +-2.576*sqrt(3200) = +-146.
    assert!((errors as f64 - 3200.0).abs() < 146.0, "{errors}");
    assert_eq!(s["slips"], 0);
}

#[test]
fn injected_errors_are_counted_once_each_and_fail_the_run() {
    let (code, lines, _) = run_json(&[
        "bert",
        "loop:",
        "--bytes",
        "2M",
        "--inject-ber",
        "1e-5",
        "--pattern",
        "prbs23",
    ]);
    let s = summary(&lines);
    assert_eq!(code, 1, "errors fail the run by default");
    assert_eq!(s["passed"], false);
    let injected = s["injected_bits"].as_u64().unwrap();
    assert!(injected > 50, "{injected}");
    let errors = s["bit_errors"].as_u64().unwrap();
    assert!(
        errors <= injected && injected - errors <= 3,
        "checker {errors}, injected {injected}"
    );
}

#[test]
fn a_dropped_byte_is_a_slip_not_a_flood_of_errors() {
    let (code, lines, _) = run_json(&[
        "bert",
        "sim:?drop=2e-7&seed=5",
        "--bytes",
        "16M",
        "--pattern",
        "prbs15",
    ]);
    let s = summary(&lines);
    assert_eq!(code, 1);
    let dropped = s["link_stats"]["impairment"]["dropped_bytes"]
        .as_u64()
        .unwrap();
    assert!(dropped >= 1, "the channel dropped something: {s}");
    assert_eq!(s["slips"].as_u64().unwrap(), dropped, "{s}");
    // Around each slip only a bounded number of bits can be miscounted.
    assert!(s["bit_errors"].as_u64().unwrap() <= dropped * 64, "{s}");
}

#[test]
fn the_receiver_detects_the_pattern() {
    let (code, lines, _) = run_json(&[
        "bert",
        "loop:",
        "--bytes",
        "1M",
        "--pattern",
        "prbs11",
        "--reverse",
        "--rx-pattern",
        "auto",
    ]);
    let s = summary(&lines);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["pattern"], "prbs11");
    assert_eq!(s["reversed"], true);
    assert_eq!(s["auto_detected"], true);
}

#[test]
fn exec_cat_is_a_loop() {
    let (code, lines, stderr) = run_json(&["bert", "exec:cat", "--bytes", "4M"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary(&lines)["bit_errors"], 0);
}

#[test]
fn a_link_that_ends_early_still_reports_what_it_measured() {
    // head passes the first 1 MB back and exits: the run must end with a partial summary.
    let (code, lines, _) = run_json(&["bert", "exec:head -c 1000000", "--bytes", "8M"]);
    assert_eq!(code, 1);
    let s = summary(&lines);
    assert_eq!(s["end_reason"], "link_closed");
    assert_eq!(s["bytes_received"], 1_000_000);
    assert!(s["bits"].as_u64().unwrap() > 7_000_000);
    assert_eq!(s["passed"], false);
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    for args in [
        &["bert", "loop:", "--pattern", "prbs8"][..],
        &["bert", "nonsense", "--bytes", "1k"],
        &["bert", "warp://x", "--bytes", "1k"],
        &["bert", "sim:?ber=2", "--bytes", "1k"],
        &["bert", "exec:/no/such/program", "--bytes", "1k"],
        &["bert", "loop:", "--pattern", "hex:ABC"],
        &["pattern", "check", "/no/such/file"],
    ] {
        let output = loopscope().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("loopscope: error: "),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `pattern gen prbs9 --bytes 4096` into a file of a temporary directory (gone with it).
fn generated_prbs9() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prbs9.bin");
    let status = loopscope()
        .args(["pattern", "gen", "prbs9", "--bytes", "4096", "-o"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    (dir, path)
}

/// The bit stream of a generated file, least significant bit of each byte first.
fn bits_lsb_first(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .flat_map(|b| (0..8).map(move |k| (b >> k) & 1))
        .collect()
}

/// `loopscope --json pattern check PATH ARGS`: exit code and JSON lines.
fn pattern_check(path: &std::path::Path, args: &[&str]) -> (i32, Vec<Value>) {
    let mut all = vec!["pattern", "check", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let (code, lines, _) = run_json(&all);
    (code, lines)
}

#[test]
fn generated_files_follow_the_o150_recurrence_and_check_clean() {
    let (_dir, path) = generated_prbs9();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 4096);
    // 2^9-1 is sent non-inverted: b[t] = b[t-5] ^ b[t-9], whatever the start phase.
    let bits = bits_lsb_first(&bytes);
    assert!((9..bits.len()).all(|t| bits[t] == bits[t - 5] ^ bits[t - 9]));
    assert!(bits.contains(&1));

    let (code, lines) = pattern_check(&path, &["--pattern", "auto", "--bit-rate", "8k"]);
    assert_eq!(code, 0);
    let s = summary(&lines);
    assert_eq!(s["pattern"], "prbs9");
    assert_eq!(s["inverted"], false);
    assert_eq!(s["bit_errors"], 0);
    // 32768 bits at 8000 bit/s: four whole seconds, all error-free, and 768 bits (0.096 s)
    // of a fifth, which G.821 does not count (issue 11: a partial second counted as whole).
    assert_eq!(s["error_free_seconds"], 4);
    assert_eq!(s["available_seconds"], 4);
    assert_eq!(s["partial_second_s"], 0.096);
    assert_eq!(s["partial_second_bits"], 768);

    // One flipped bit in the file is one error.
    let mut damaged = bytes.clone();
    damaged[2000] ^= 0x10;
    std::fs::write(&path, &damaged).unwrap();
    let (code, lines) = pattern_check(&path, &["--pattern", "prbs9"]);
    assert_eq!(code, 1);
    let s = summary(&lines);
    assert_eq!(s["bit_errors"], 1);
    assert_eq!(
        s["errored_seconds"],
        Value::Null,
        "no --bit-rate, no seconds"
    );
}

#[test]
fn msb_first_reverses_the_bits_of_each_byte() {
    let generate = |extra: &[&str]| {
        let output = loopscope()
            .args(["pattern", "gen", "prbs15", "--bytes", "256"])
            .args(extra)
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(output.status.success());
        output.stdout
    };
    let lsb = generate(&[]);
    let msb = generate(&["--msb-first"]);
    assert_eq!(
        msb,
        lsb.iter().map(|b| b.reverse_bits()).collect::<Vec<_>>()
    );
    // --no-invert complements the O.150 (inverted) 2^15-1 stream.
    let plain = generate(&["--no-invert"]);
    assert_eq!(plain, lsb.iter().map(|b| !b).collect::<Vec<_>>());
}

/// Each SIGUSR1 injects one bit error, and Ctrl-C ends the run with its summary. Each signal
/// waits for what the previous one caused (sync, then the per-second line that counted the
/// error): fixed sleeps let a starved run see SIGUSR1 before its handler was installed (the
/// default action ends the process) or merge two pending SIGUSR1 into one.
#[cfg(unix)]
#[test]
fn ctrl_c_and_sigusr1_during_a_run() {
    let run = support::running::Running::start(&["bert", "sim:?rate=20M", "--forever"]);
    run.wait_for("sync", |v| v["event"] == "sync_acquired");
    let pid = rustix::process::Pid::from_child(&run.child);
    for _ in 0..2 {
        rustix::process::kill_process(pid, rustix::process::Signal::USR1).expect("SIGUSR1");
        run.wait_for("a second with the injected error", |v| {
            v["event"] == "second" && v["bit_errors"].as_u64() > Some(0)
        });
    }
    let (last, code) = run.interrupt();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["end_reason"], "interrupted");
    assert_eq!(last["injected_bits"], 2);
    assert_eq!(last["bit_errors"], 2, "{last}");
    assert_eq!(code, 1, "errors were injected, so the run fails");
}

#[test]
fn completions_and_man_page() {
    let output = loopscope().args(["completions", "bash"]).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("loopscope"));
    let output = loopscope().arg("man").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(".TH loopscope"));
}

/// G.821 over whole seconds, by hand (issue 11: a partial final second was counted whole,
/// `%ES 25.000` where 1 of 3 available seconds should give 33.3). A 4096-byte prbs9 capture
/// checked at 8000 bit/s is 4 whole seconds of 8000 bits and a partial one of 768 bits
/// (0.096 s). One bit flipped in second 2 (bit 12004) and one in the partial second (bit
/// 32724): ES 1 and EFS 3 of 4 available seconds, %ES 25.000, SES 0 (1 error in 8000 bits is
/// under 1e-3); the partial second holds the other error and is in no G.821 figure; the
/// totals have both.
#[test]
fn g821_counts_whole_seconds_and_reports_the_partial_one_apart() {
    let (_dir, path) = generated_prbs9();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1500] ^= 0x10; // bit 1500 * 8 + 4 = 12004
    bytes[4090] ^= 0x10; // bit 32724
    std::fs::write(&path, &bytes).unwrap();
    let (code, lines) = pattern_check(&path, &["--pattern", "prbs9", "--bit-rate", "8000"]);
    assert_eq!(code, 1);
    let s = summary(&lines);
    assert_eq!(s["bit_errors"], 2, "{s}");
    assert_eq!(s["available_seconds"], 4, "{s}");
    assert_eq!(s["unavailable_seconds"], 0, "{s}");
    assert_eq!(s["errored_seconds"], 1, "{s}");
    assert_eq!(s["severely_errored_seconds"], 0, "{s}");
    assert_eq!(s["error_free_seconds"], 3, "{s}");
    assert_eq!(s["es_percent"], 25.0, "{s}");
    assert_eq!(s["ses_percent"], 0.0, "{s}");
    assert_eq!(s["partial_second_s"], 0.096, "{s}");
    assert_eq!(s["partial_second_bits"], 768, "{s}");
    assert_eq!(s["partial_second_bit_errors"], 1, "{s}");
}

/// A live run of `--duration 2` measures 2 whole seconds (issue 11: a 2 s TCP run reported
/// `available_seconds: 3`, `--duration 5` reported EFS 6): transmission stops at 2 s, and what
/// is still on its way then makes a partial third second at most, counted apart.
#[test]
fn a_two_second_run_has_two_whole_g821_seconds() {
    let (code, lines, stderr) = run_json(&["bert", "loop:", "--duration", "2s"]);
    assert_eq!(code, 0, "{stderr}");
    let s = summary(&lines);
    assert_eq!(s["available_seconds"], 2, "{s}");
    assert_eq!(s["error_free_seconds"], 2, "{s}");
    assert_eq!(s["unavailable_seconds"], 0, "{s}");
    let partial = s["partial_second_s"].as_f64().unwrap();
    assert!(partial > 0.0 && partial < 1.0, "{s}");
    let seconds = lines.iter().filter(|l| l["event"] == "second").count();
    assert_eq!(seconds, 2, "one event per whole second");
}

/// `bert` never hangs on a far end that stops reading or never answers (issue 12: it blocked
/// in sendto and recvfrom, ignoring --duration, SIGINT and SIGTERM): a child that never reads
/// its stdin, a delay line of an hour, a TCP peer that accepts and sleeps. Each run ends after
/// its duration with the summary and exit 1. (The limit only keeps a hang from stalling the
/// suite; no figure depends on time.)
#[test]
fn bert_ends_at_its_deadline_whatever_the_far_end_does() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sleeper = format!("tcp://{}", listener.local_addr().unwrap());
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let accepter = std::thread::spawn(move || {
        let held = listener.accept().unwrap();
        let _ = wait.recv();
        drop(held);
    });
    for link in ["exec:sleep 34", "sim:?delay=1h", sleeper.as_str()] {
        let child = loopscope()
            .args(["--json", "bert", link, "--duration", "1s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = wait_or_kill(child, Duration::from_secs(60));
        let s = summary_of(&output);
        assert_eq!(output.status.code(), Some(1), "{link}: {s}");
        assert_eq!(s["passed"], false, "{link}: {s}");
        assert_eq!(s["bytes_received"], 0, "{link}: {s}");
        assert!(s["bytes_sent"].as_u64().unwrap() > 0, "{link}: {s}");
        assert_eq!(s["end_reason"], "drain_timeout", "{link}: {s}");
    }
    drop(done);
    accepter.join().unwrap();
}

/// True once `pid` runs a thread named `name` (the BERT has started, its signal handlers are
/// in place).
fn has_thread(pid: u32, name: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|task| {
        std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
    })
}

/// SIGTERM (as `timeout` and systemd send it) ends a run stuck on a link that gives nothing
/// back, with the summary, and an interrupted run fails (issue 12: interrupted runs exited 0
/// with PASS).
#[test]
fn sigterm_ends_a_stuck_run_with_its_summary_and_exit_1() {
    let child = loopscope()
        .args(["--json", "bert", "sim:?delay=1h", "--forever"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = std::time::Instant::now();
    while !has_thread(pid, "bert-tx") {
        assert!(started.elapsed() < Duration::from_secs(60), "never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = wait_or_kill(child, Duration::from_secs(60));
    let s = summary_of(&output);
    assert_eq!(s["end_reason"], "interrupted", "{s}");
    assert_eq!(s["passed"], false, "{s}");
    assert_eq!(output.status.code(), Some(1), "{s}");
}

/// An interrupted run says so in human output, and fails: it has not passed (issue 12, 11.18).
#[test]
fn an_interrupted_run_says_so_and_fails() {
    use std::io::BufRead;
    let mut child = loopscope()
        .args(["bert", "loop:", "--forever"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("sync acquired"), "{first}");
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("\nended        interrupted\n"), "{text}");
    assert!(text.contains("FAIL: interrupted before the end"), "{text}");
    assert!(!text.contains("PASS"), "{text}");
}

fn human(args: &[&str]) -> (Option<i32>, String, String) {
    let output = loopscope().args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Human output reads as prose (issue 11.18): no raw JSON (`link {"transport":…}`), no Rust
/// enum names (`ended LinkClosed: …`), plurals that agree ("1 slip"), the slip after the sync
/// it needs, a stream check that says what it read, and a cause said once.
#[test]
fn human_output_reads_as_prose() {
    // One dropped byte with this seed (the impairment is reproducible byte for byte).
    let (code, text, _) = human(&[
        "bert",
        "sim:?drop=2e-7&seed=6",
        "--bytes",
        "8M",
        "--pattern",
        "prbs15",
    ]);
    assert_eq!(code, Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let sync = lines.iter().position(|l| l.contains("sync acquired"));
    let slip = lines.iter().position(|l| l.contains("slip #1 "));
    assert!(sync.is_some() && sync < slip, "{text}");
    assert!(
        text.contains(", 1 slip (0 bits inserted, 8 bits deleted)"),
        "{text}"
    );
    assert!(text.contains("\nimpairment   1 byte dropped\n"), "{text}");
    assert!(
        text.contains("; 1 slip; 1 byte did not come back"),
        "{text}"
    );
    for raw in ['{', '}', '"'] {
        assert!(!text.contains(raw), "{raw} in: {text}");
    }

    let (code, text, _) = human(&["bert", "exec:head -c 1000000", "--bytes", "8M"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("\nended        the link closed early: "),
        "{text}"
    );
    assert!(
        text.contains("\nprogram      head exited with status 0\n"),
        "{text}"
    );
    for rust in ["LinkClosed", "DrainTimeout", "Some(", "exit status:"] {
        assert!(!text.contains(rust), "{rust} in: {text}");
    }

    let dir = tempfile::tempdir().unwrap();
    let noise = dir.path().join("noise.bin");
    let bytes: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&noise, bytes).unwrap();
    let (code, text, _) = human(&["pattern", "check", noise.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("\nbits         0 checked in "), "{text}");
    assert!(text.contains(", 100000 bytes read\n"), "{text}");
    assert!(!text.contains("sent"), "{text}");
    assert!(!text.contains("bit/s"), "no rate for zero bits: {text}");

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let (code, _, stderr) = human(&["bert", &format!("tcp://127.0.0.1:{port}")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
}
