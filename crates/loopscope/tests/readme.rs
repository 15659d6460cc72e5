//! Every example in the README runs here, as written, with the built binary first on `PATH`, so
//! the README cannot drift from the tool (issue 11 item 19).
//!
//! Each ```sh block is one bash script, run in a temporary directory; as root, in a network
//! namespace of its own (with `lo` up), so fixed ports such as 7007 never meet another test's and
//! `listeners`, `port` and `doctor` see a known host. A line ending in `&` starts a background
//! job; the script waits for it to say where it listens before the next line runs. Examples
//! that cannot run here are listed in [`policy`] with the reason, and still checked where
//! possible (a hardware example must at least parse).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod support;
use support::is_root;

/// One example: a command line of a ```sh block.
#[derive(Debug, Clone)]
struct Example {
    section: String,
    block: usize,
    line: String,
}

/// The README's examples, block by block, in order.
fn examples() -> Vec<Vec<Example>> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md");
    let mut blocks = Vec::new();
    let mut section = String::new();
    let mut current: Option<Vec<Example>> = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.to_string();
        }
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), command) if !command.trim().is_empty() => block.push(Example {
                section: section.clone(),
                block: blocks.len(),
                line: command.to_string(),
            }),
            _ => {}
        }
        assert!(
            current.is_some() || !line.starts_with("```") || line == "```" || line == "```sh",
            "README code block of another language, which this test does not run: {line}"
        );
    }
    assert!(current.is_none(), "unterminated code block in the README");
    blocks
}

/// What to do with one example.
#[derive(Debug, Clone, PartialEq)]
enum Policy {
    /// Run it; its exit code must be one of these.
    Run(&'static [i32]),
    /// Run it only as root (where CI runs); otherwise skip, saying why.
    AsRoot(&'static [i32], &'static str),
    /// Cannot run here: check that it parses (`LINE --help` must exit 0).
    ParseOnly(&'static str),
    /// Not run by this test, for the reason given.
    Skip(&'static str),
}

/// The exit codes a verdict command may end with on a healthy or unhealthy host.
const VERDICT: &[i32] = &[0, 1];

fn policy(line: &str) -> Policy {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["cargo", "run", ..] => {
            Policy::Skip("the set-up build; its job, `loopscope doctor`, is run below")
        }
        ["./scripts/test"] => Policy::Skip("it runs this very suite"),
        _ if line.contains("/dev/tty") => {
            Policy::ParseOnly("needs a serial port wired to a loopback plug or a T1/E1 line")
        }
        _ if line.contains("jack:") => Policy::ParseOnly(
            "needs a running JACK server (and a sound card for a cable loop), and a build with \
             the jack feature",
        ),
        _ if line.contains("alsa:") => Policy::ParseOnly(
            "needs an ALSA sound card wired in a loop, and a build with the alsa feature",
        ),
        _ if line.contains("wav:,") => {
            Policy::ParseOnly("analyses a recording made elsewhere through a real audio path")
        }
        // A noisy channel: the errors it shows are the point of the example.
        ["loopscope", "bert", link, ..] if link.contains("noise_db=-6") => Policy::Run(VERDICT),
        ["timeout", _, "tcpdump", ..] => Policy::AsRoot(&[124], "capturing needs root"),
        ["loopscope", "martians", "sample.pcap", ..] => {
            Policy::AsRoot(VERDICT, "reads the capture the tcpdump line (root) writes")
        }
        ["loopscope", "martians", "--interface", ..] => {
            Policy::AsRoot(VERDICT, "live capture needs root")
        }
        ["loopscope", "acl", ..] if line.contains("nft -c") => {
            Policy::AsRoot(&[0], "nft -c needs root to talk to the kernel")
        }
        ["loopscope", "ping", endpoint, ..] if endpoint.contains("icmp://") => Policy::AsRoot(
            &[0],
            "ICMP sockets need root (or a ping_group_range with this user)",
        ),
        ["ip", "link", ..] => Policy::AsRoot(&[0], "making a veth needs root"),
        ["loopscope", "reflect", "--eth-lb", ..]
        | ["loopscope", "eth-lb", ..]
        | ["loopscope", "--json", "eth-lb", ..] => {
            Policy::AsRoot(&[0], "raw packet sockets need root (or CAP_NET_RAW)")
        }
        ["loopscope", "doctor", ..] | ["loopscope", "--json", "doctor", ..] => Policy::Run(VERDICT),
        ["loopscope", "port", ..] => Policy::Run(VERDICT),
        _ => Policy::Run(&[0]),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The command without a trailing shell comment (`cmd   # what it does`); quotes respected.
fn without_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut previous = ' ';
    for (index, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => {
                return line[..index].trim_end();
            }
            _ => {}
        }
        previous = c;
    }
    line
}

/// What happened to each example of a block: its exit code, or why it did not run.
#[derive(Debug)]
enum Ran {
    Exited(i32),
    Skipped(String),
}

/// The bash script for one block; each example appends `INDEX CODE` to `.exits`.
fn script(block: &[Example], netns: bool, skips: &mut BTreeMap<usize, String>) -> String {
    let mut script = String::from(
        r#"set -u
exits="$PWD/.exits"
: > "$exits"
await_listening() {
  # A background reflector prints "reflecting on ..." once it listens (a perf server
  # "listening on ..."); wait for that line
  # (bounded, so a reflector that never starts fails the test instead of hanging it).
  local log=$1 tries=0
  until grep -qE 'reflecting on|listening on' "$log" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 12000 ]; then echo "never listened: $(cat "$log")" >&2; return 1; fi
    sleep 0.01
  done
}
"#,
    );
    if netns {
        script.push_str("ip link set lo up || exit 97\n");
    }
    let mut background = Vec::new();
    for (index, example) in block.iter().enumerate() {
        let line = example.line.trim();
        let runnable = match policy(line) {
            Policy::Run(_) => true,
            Policy::AsRoot(_, why) if !is_root() => {
                skips.insert(index, why.to_string());
                false
            }
            Policy::AsRoot(..) => match line.split_whitespace().nth(2) {
                Some("tcpdump") if !on_path("tcpdump") => {
                    skips.insert(index, "tcpdump is not installed".into());
                    false
                }
                _ if line.contains("nft -c") && !on_path("nft") => {
                    skips.insert(index, "nft is not installed".into());
                    false
                }
                _ => true,
            },
            Policy::ParseOnly(_) => {
                let command = without_comment(line);
                script.push_str(&format!(
                    "{command} --help > /dev/null; echo \"{index} $?\" >> \"$exits\"\n"
                ));
                continue;
            }
            Policy::Skip(why) => {
                skips.insert(index, why.to_string());
                false
            }
        };
        if !runnable {
            continue;
        }
        if let Some(command) = without_comment(line).strip_suffix('&') {
            let log = format!(".background-{index}.log");
            script.push_str(&format!(
                "{command} > {log} 2>&1 &\npid_{index}=$!\nawait_listening {log} || exit 98\n"
            ));
            background.push(index);
        } else {
            script.push_str(&format!("{line}\necho \"{index} $?\" >> \"$exits\"\n"));
        }
    }
    // Background jobs: their own exit code once they end (a reflector ends on the README's
    // `kill`, with its summary); one the block left running is stopped here.
    for index in background {
        script.push_str(&format!(
            "kill -0 $pid_{index} 2>/dev/null && kill $pid_{index}\nwait $pid_{index}\necho \"{index} $?\" >> \"$exits\"\ncat .background-{index}.log\n"
        ));
    }
    script
}

/// Runs one block; returns what happened to each example, and the script's output.
fn run_block(block: &[Example], binary_dir: &Path) -> (BTreeMap<usize, Ran>, String) {
    let netns = is_root() && on_path("unshare") && on_path("ip");
    let mut skips = BTreeMap::new();
    let text = script(block, netns, &mut skips);
    let work = tempfile::tempdir().expect("temporary directory");
    let path_var = std::env::join_paths(std::iter::once(binary_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut command = if netns {
        let mut command = Command::new("unshare");
        command.args(["--net", "--", "bash", "-c", &text]);
        command
    } else {
        let mut command = Command::new("bash");
        command.args(["-c", &text]);
        command
    };
    let output = command
        .current_dir(work.path())
        .env("PATH", path_var)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let transcript = format!(
        "--- script ---\n{text}\n--- exit {:?} ---\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let exits = std::fs::read_to_string(work.path().join(".exits")).unwrap_or_default();
    let mut ran: BTreeMap<usize, Ran> = skips
        .into_iter()
        .map(|(index, why)| (index, Ran::Skipped(why)))
        .collect();
    for line in exits.lines() {
        let mut fields = line.split_whitespace();
        let index: usize = fields.next().unwrap().parse().unwrap();
        let code: i32 = fields.next().unwrap().parse().unwrap();
        ran.insert(index, Ran::Exited(code));
    }
    (ran, transcript)
}

fn binary_dir() -> PathBuf {
    assert_cmd::cargo::cargo_bin("loopscope")
        .parent()
        .expect("target directory")
        .to_path_buf()
}

#[test]
fn every_readme_example_runs_as_written() {
    let blocks = examples();
    assert!(blocks.len() >= 8, "found only {} blocks", blocks.len());
    let binary_dir = binary_dir();
    // Blocks run side by side (each in its own namespace as root): the slow ones (a 10 s
    // BERT, a 10 s live capture) overlap.
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = blocks
            .iter()
            .map(|block| scope.spawn(|| run_block(block, &binary_dir)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    for (block, (ran, transcript)) in blocks.iter().zip(&results) {
        for (index, example) in block.iter().enumerate() {
            let expected: &[i32] = match policy(example.line.trim()) {
                Policy::Run(codes) | Policy::AsRoot(codes, _) => codes,
                Policy::ParseOnly(_) => &[0],
                Policy::Skip(_) => &[],
            };
            match ran.get(&index) {
                Some(Ran::Skipped(why)) => {
                    eprintln!("skipped ({}): {}: {why}", example.section, example.line);
                }
                Some(Ran::Exited(code)) if expected.contains(code) => {}
                Some(Ran::Exited(code)) => failures.push(format!(
                    "[{}] `{}` exited {code}, expected {expected:?}\n{transcript}",
                    example.section, example.line
                )),
                None => failures.push(format!(
                    "[{}] `{}` did not run (block {})\n{transcript}",
                    example.section, example.line, example.block
                )),
            }
        }
        assert!(
            !transcript.contains("panicked"),
            "a panic in the README examples:\n{transcript}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The README promises exactly two set-up commands: the build that runs the main job and the
/// whole test suite.
#[test]
fn the_readme_has_exactly_two_set_up_commands() {
    let setup: Vec<String> = examples()
        .into_iter()
        .flatten()
        .filter(|example| example.section == "Set up")
        .map(|example| example.line)
        .collect();
    assert_eq!(
        setup,
        [
            "cargo run --release -p loopscope -- doctor",
            "./scripts/test"
        ]
    );
}

/// The crates table names every crate in the workspace.
#[test]
fn the_readme_crates_table_names_every_crate() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for entry in std::fs::read_dir(&crates_dir).unwrap() {
        let entry = entry.unwrap();
        if !entry.path().join("Cargo.toml").exists() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "crate {name} is missing from the README's crates table"
        );
    }
}

#[test]
fn shell_comments_are_cut_outside_quotes_only() {
    assert_eq!(without_comment("loopscope x   # note"), "loopscope x");
    assert_eq!(
        without_comment("loopscope 'a # b' # note"),
        "loopscope 'a # b'"
    );
    assert_eq!(
        without_comment("loopscope 'sim:?x=1#2'"),
        "loopscope 'sim:?x=1#2'"
    );
    assert_eq!(
        without_comment("loopscope reflect tcp://127.0.0.1:7007 &"),
        "loopscope reflect tcp://127.0.0.1:7007 &"
    );
}
