//! Shell completions and the manual pages, generated from the clap definition.
//!
//! `loopscope man` prints loopscope(1); `loopscope man bert` (or `man pattern gen`) prints one
//! command's page, loopscope-bert(1). Each page has clap's synopsis and options, then what
//! `--help` cannot hold well: the exit status, the link syntax where the command takes a link,
//! and examples (every example here also appears in the README, whose examples a test runs).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap_complete::Shell;
use loopscope_report::{Outcome, Stdout};
use roff::{Roff, bold, italic, roman};

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell
    pub shell: Shell,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  loopscope man | man -l -\n  loopscope man bert | man -l -\n  \
loopscope man --output-dir /usr/local/share/man/man1"
)]
pub struct ManArgs {
    /// The command whose page to print: `bert`, `pattern gen` (or `pattern-gen`). None: the
    /// overview, loopscope(1).
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Write every page (loopscope.1, loopscope-bert.1, ...) into this directory instead.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub output_dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs, command: &mut clap::Command) -> anyhow::Result<Outcome> {
    // Generated into memory first: clap_complete panics when its writer fails (`| head -0`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, command, "loopscope", &mut script);
    Stdout::batch()
        .write_all(&script)
        .context("writing the completion script")?;
    Ok(Outcome::Passed)
}

pub fn man(args: &ManArgs, root: clap::Command) -> anyhow::Result<Outcome> {
    // Built whole, so each page's synopsis and title name the full command (`loopscope bert`);
    // the `help` subcommand is clap's, not a page.
    let mut root = root.disable_help_subcommand(true);
    root.build();
    let root = &root;
    if let Some(directory) = &args.output_dir {
        std::fs::create_dir_all(directory)
            .with_context(|| format!("cannot create {}", directory.display()))?;
        for (path, page) in all_pages(root) {
            let file = directory.join(format!("{}.1", page_name(&path)));
            std::fs::write(&file, render(root, &path, page)?)
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
        return Ok(Outcome::Passed);
    }
    let (path, page) = find_page(root, &args.command)?;
    let text = render(root, &path, page)?;
    Stdout::batch()
        .write_all(&text)
        .context("writing the manual page")?;
    Ok(Outcome::Passed)
}

/// The page named by `words`: `bert`, `pattern gen`, `pattern-gen`, `loopscope-audio-latency`.
/// Command names may contain hyphens themselves (`audio-latency`), so the words are joined with
/// hyphens and matched level by level against the longest command name that fits.
fn find_page<'c>(
    root: &'c clap::Command,
    words: &[String],
) -> anyhow::Result<(Vec<String>, &'c clap::Command)> {
    let joined = words.join("-");
    let mut rest = joined.strip_prefix("loopscope").unwrap_or(&joined);
    rest = rest.strip_prefix('-').unwrap_or(rest);
    let mut path = Vec::new();
    let mut page = root;
    while !rest.is_empty() {
        let found = page
            .get_subcommands()
            .filter(|sub| sub.get_name() != "help")
            .filter(|sub| {
                let name = sub.get_name();
                rest == name
                    || rest
                        .strip_prefix(name)
                        .is_some_and(|tail| tail.starts_with('-'))
            })
            .max_by_key(|sub| sub.get_name().len());
        let Some(sub) = found else {
            let known: Vec<&str> = page
                .get_subcommands()
                .map(|sub| sub.get_name())
                .filter(|name| *name != "help")
                .collect();
            let under = if path.is_empty() {
                String::new()
            } else {
                format!(" under '{}'", path.join(" "))
            };
            bail!(
                "no manual page for '{}'{under}: the commands are {}",
                words.join(" "),
                known.join(", ")
            );
        };
        path.push(sub.get_name().to_string());
        rest = &rest[sub.get_name().len()..];
        rest = rest.strip_prefix('-').unwrap_or(rest);
        page = sub;
    }
    Ok((path, page))
}

/// Every page: the overview and each command and subcommand, depth first.
fn all_pages(root: &clap::Command) -> Vec<(Vec<String>, &clap::Command)> {
    fn walk<'c>(
        command: &'c clap::Command,
        path: Vec<String>,
        pages: &mut Vec<(Vec<String>, &'c clap::Command)>,
    ) {
        pages.push((path.clone(), command));
        for sub in command
            .get_subcommands()
            .filter(|sub| sub.get_name() != "help")
        {
            let mut sub_path = path.clone();
            sub_path.push(sub.get_name().to_string());
            walk(sub, sub_path, pages);
        }
    }
    let mut pages = Vec::new();
    walk(root, Vec::new(), &mut pages);
    pages
}

/// `loopscope`, `loopscope-bert`, `loopscope-pattern-gen`.
fn page_name(path: &[String]) -> String {
    std::iter::once("loopscope")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-")
}

/// One page: clap_mangen's sections, then ours.
fn render(root: &clap::Command, path: &[String], page: &clap::Command) -> anyhow::Result<Vec<u8>> {
    let key = path.join(" ");
    let man = clap_mangen::Man::new(page.clone())
        .title(page_name(path))
        .source(format!("loopscope {}", env!("CARGO_PKG_VERSION")))
        .manual("loopscope manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if page.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if page.has_subcommands() {
        man.render_subcommands_section(&mut out)?;
    }

    let mut roff = Roff::new();
    if let Some(notes) = notes(page) {
        roff.control("SH", ["NOTES"]);
        for paragraph in notes.split("\n\n") {
            roff.control("PP", []);
            for line in paragraph.lines() {
                roff.text([roman(line.trim())]);
            }
        }
    }
    if LINK_COMMANDS.contains(&key.as_str()) || path.is_empty() {
        roff.control("SH", ["LINKS"]);
        roff.text([roman(
            "A link is anything that gives back what is sent to it, named by an endpoint string:",
        )]);
        for (syntax, meaning) in LINKS {
            roff.control("TP", []);
            roff.text([bold(*syntax)]);
            roff.text([roman(*meaning)]);
        }
    }
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(exit_status(&key))]);
    let examples = examples(&key);
    if !examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for example in examples {
            roff.control("PP", []);
            roff.text([roman(*example)]);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut see_also: Vec<String> = all_pages(root)
        .into_iter()
        .filter(|(other, _)| other != path && other.len() <= 1)
        .map(|(other, _)| format!("{}(1)", page_name(&other)))
        .collect();
    see_also.extend(
        page.get_subcommands()
            .filter(|sub| sub.get_name() != "help")
            .map(|sub| {
                let mut sub_path = path.to_vec();
                sub_path.push(sub.get_name().to_string());
                format!("{}(1)", page_name(&sub_path))
            }),
    );
    roff.text([roman(see_also.join(", "))]);
    roff.control("PP", []);
    roff.text([
        roman("The README of the source tree explains each command at more length; "),
        italic("docs/design.md"),
        roman(" explains how the code is laid out."),
    ]);
    roff.to_writer(&mut out)?;
    Ok(out)
}

/// A command's `after_help`, without the exit status and examples that have sections of their
/// own here.
fn notes(page: &clap::Command) -> Option<String> {
    let text = page
        .get_after_long_help()
        .or_else(|| page.get_after_help())?
        .to_string();
    let mut kept = Vec::new();
    let mut in_examples = false;
    for line in text.lines() {
        if line.starts_with("Examples:") {
            in_examples = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_examples = false;
        }
        if !in_examples && !line.trim().is_empty() && !line.starts_with("Exit status:") {
            kept.push(line);
        }
    }
    (!kept.is_empty()).then(|| kept.join("\n\n"))
}

/// Commands that take a link.
const LINK_COMMANDS: [&str; 3] = ["bert", "ping", "reflect"];

const LINKS: &[(&str, &str)] = &[
    ("loop:", "An in-memory loop."),
    (
        "sim:?ber=1e-6&drop=…&slip=…&loss=…&delay=…&rate=…&seed=…",
        "An impaired in-memory loop. The same options, given to --impair, put the impairment \
         in front of any other link.",
    ),
    (
        "exec:CMD",
        "A child process: what is sent goes to its stdin, its stdout comes back.",
    ),
    (
        "tcp://HOST:PORT, udp://HOST:PORT",
        "A socket to a reflector (loopscope reflect, or any echo service). IPv6 goes in \
         brackets: udp://[::1]:7008. Options: bind=ADDR (source address), iface=NAME \
         (SO_BINDTODEVICE).",
    ),
    (
        "unix:PATH, unixgram:PATH",
        "A Unix stream or datagram socket.",
    ),
    (
        "serial:/dev/ttyUSB0?baud=115200&data=8&parity=none&stop=1&flow=none",
        "A serial port with a loopback plug. internal=1 uses the UART's own loopback, rs485=1 \
         enables RS-485, lines=1 tests the control lines.",
    ),
    (
        "pty:?baud=115200",
        "A pseudo-terminal whose far side is a built-in loopback plug.",
    ),
    (
        "icmp://ADDR",
        "ICMP echo (ping only): icmp://127.0.0.1, icmp://[::1].",
    ),
];

fn exit_status(key: &str) -> &'static str {
    match key {
        "" => {
            "0: the test passed. 1: it ran and failed (errors over threshold, loss, a FAIL \
             check, an exposed port, a trap, martians found). 2: a usage or environment error \
             (bad flags, a bad endpoint, a device that cannot open), printed as one line \
             starting 'loopscope: error:'. A closed stdout (a reader such as head(1) that \
             stopped reading) ends the run quietly with the code it earned. A run ended by \
             SIGINT, SIGTERM or SIGHUP still prints its summary; a second signal more than a \
             second after the first exits at once with 128 + the signal number."
        }
        "bert" | "pattern check" => {
            "0: the bit error ratio is within --max-ber (without it: no bit error, slip or \
             loss of sync), and every byte came back. 1: the test ran and failed. 2: bad flags, \
             a bad link, or a link that cannot open."
        }
        "pattern" | "pattern gen" => {
            "0: the pattern was written. 2: bad flags, or the output cannot be written."
        }
        "ping" => {
            "0: every request was answered. 1: a request was lost or a reply was wrong. 2: bad \
             flags, or a link that cannot open."
        }
        "bfd" => {
            "0: the session came up and never left Up until the run ended (S-BFD: the \
             reflector answered). 1: it never came up, or it flapped. 2: bad flags, a bad \
             endpoint, an unreadable secret file, or a port that cannot be bound."
        }
        "eth-lb" => {
            "0: every Loopback Message was answered with its pattern intact. 1: a reply was \
             lost, or came back with bit errors, a CRC-32 error or a malformed PDU. 2: bad \
             flags, no such interface, or no permission for a raw packet socket (root or \
             CAP_NET_RAW)."
        }
        "reflect" => {
            "0: it reflected until stopped. 1: it failed on every connection and reflected \
             nothing. 2: bad flags, or the endpoint cannot be bound."
        }
        "doctor" => {
            "0: no check FAILs (WARN and SKIP do not fail). 1: a check FAILs. 2: bad flags."
        }
        "addr" => {
            "0 normally. 1 with --fail-on-deny when an input is denied by the SSRF policy (in \
             bulk mode also when a line does not parse). 2: an argument does not parse, or a \
             flag is wrong."
        }
        "martians" => {
            "0: no martians. 1: martians found (or packets that uRPF would drop). 2: an input \
             cannot be read, or stdout cannot be written."
        }
        "acl" => "0: the filter was written. 2: bad flags, or a bogon list that does not parse.",
        "listeners" => {
            "0: no listed socket is reachable from outside. 1: at least one is exposed \
             (wildcard, a specific non-loopback address, or bound to a non-loopback \
             interface); with --expect-loopback-only PORT..., only those ports count. 2: bad \
             flags, or a namespace that cannot be entered."
        }
        "port" => {
            "0: the port is free, or held on loopback only with no trap. 1: it is exposed \
             beyond loopback, or a trap was found. 2: bad flags."
        }
        "completions" | "man" => "0: the text was written. 2: bad flags.",
        _ => "0: success. 1: the test ran and failed. 2: a usage or environment error.",
    }
}

/// Examples per page. Each line also appears in the README, whose examples are run by
/// `tests/readme.rs`; `tests/cli.rs` checks that they do.
fn examples(key: &str) -> &'static [&'static str] {
    match key {
        "" => &[
            "loopscope doctor",
            "loopscope bert loop: --bytes 1G",
            "loopscope ping icmp://127.0.0.1 -c 5",
            "loopscope listeners",
        ],
        "bert" => &[
            "loopscope bert loop: --bytes 1G",
            "loopscope bert 'sim:?ber=1e-6&seed=7' --bytes 100M --max-ber 1e-5",
            "loopscope bert exec:cat --pattern prbs15 --duration 5s",
            "loopscope bert tcp://127.0.0.1:7007 --duration 10s",
            "loopscope bert 'pty:?baud=115200' --duration 5s",
        ],
        "pattern" | "pattern gen" | "pattern check" => &[
            "loopscope pattern gen prbs9 --bytes 1M -o prbs9.bin",
            "loopscope pattern check prbs9.bin --pattern auto --bit-rate 64k",
        ],
        "ping" => &[
            "loopscope ping -c 10 -i 0.2 'udp://[::1]:7008'",
            "loopscope ping icmp://127.0.0.1 -c 5",
            "loopscope ping 'icmp://[::1]' -c 3 -i 0.2",
        ],
        "bfd" => &[
            "loopscope bfd udp://127.0.0.1 --local 127.0.0.2 --duration 3s --echo 100ms",
            "loopscope bfd --sbfd 42 udp://127.0.0.1 --count 5 --min-tx 50ms",
        ],
        "eth-lb" => &[
            "loopscope eth-lb lb0 --to multicast --level 3 -c 5 -i 10ms",
            "loopscope --json eth-lb lb0 --to 01:80:c2:00:00:33 -c 3 -i 10ms --pattern prbs31-crc -q",
        ],
        "reflect" => &[
            "loopscope reflect tcp://127.0.0.1:7007 &",
            "loopscope reflect 'udp://[::1]:7008' &",
            "loopscope reflect --eth-lb lb1 --level 3 &",
        ],
        "doctor" => &[
            "loopscope doctor",
            "loopscope --json doctor --check localhost --check localhost_order",
        ],
        "addr" => &[
            "loopscope addr 0177.0.0.1 '[::ffff:127.0.0.1]:80' 'http://evil.com\\@127.0.0.1/'",
            "loopscope --json addr 2130706433 64:ff9b::7f00:1 3fff::1",
        ],
        "martians" => &[
            "loopscope martians sample.pcap --write-matches martians.pcapng",
            "loopscope martians --interface any --duration 10s --urpf-routes kernel",
        ],
        "acl" => &["loopscope acl --format nftables > antispoof.nft && nft -c -f antispoof.nft"],
        "listeners" => &[
            "loopscope listeners",
            "loopscope listeners --exposed --json",
        ],
        "port" => &["loopscope port 22"],
        "stamp" => &[
            "loopscope stamp --reflect udp://127.0.0.1:8620 &",
            "loopscope stamp udp://127.0.0.1:8620 -c 100 -i 1ms",
            "loopscope stamp udp://127.0.0.1:8620 -c 5 -i 10ms --timestamp ptp --dscp 46 --ttl 9 --df --size 128",
            "loopscope stamp udp://127.0.0.1:8621 -c 5 -i 10ms --auth stamp.key",
        ],
        _ => &[],
    }
}

/// Every example line of every page, for the test that holds them to the README.
#[cfg(test)]
pub fn every_example() -> Vec<&'static str> {
    [
        "",
        "bert",
        "pattern",
        "ping",
        "bfd",
        "eth-lb",
        "reflect",
        "doctor",
        "addr",
        "martians",
        "acl",
        "listeners",
        "port",
        "stamp",
    ]
    .into_iter()
    .flat_map(|key| examples(key).iter().copied())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The man pages' examples are the README's, which tests/readme.rs runs.
    #[test]
    fn every_man_page_example_is_in_the_readme() {
        let readme = include_str!("../../../../README.md");
        for example in every_example() {
            assert!(
                readme.lines().any(|line| line.trim() == example),
                "man page example not in the README: {example}"
            );
        }
    }
}
