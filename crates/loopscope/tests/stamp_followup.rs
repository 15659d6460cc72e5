//! The STAMP reflector's Follow-Up Telemetry (RFC 8972 §4.7) against tcpdump's capture, the
//! independent referee: each reply's Follow-Up TLV must carry the sequence number and the
//! kernel transmit timestamp of the previous reply of its session, also when the reflector
//! answers several requests of one session in one batch (as it does on a loaded host, where
//! requests queue while it waits for the CPU).

mod support;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::running::Running;

/// RFC 8762 §4.2.1: the unauthenticated base packet, sender's and reflector's alike.
const BASE_LEN: usize = 44;
/// RFC 8972 §4.7: Follow-Up Telemetry is type 7 with a 16-octet value (sequence number 4,
/// timestamp 8, timestamp mode 1, reserved 3).
const FOLLOW_UP_TYPE: u8 = 7;
const FOLLOW_UP_LEN: usize = 16;
/// RFC 8972 §4.7 (IANA "STAMP TLV Timestamp Mode"): 2 is software.
const SOFTWARE_MODE: u8 = 2;
/// RFC 8762 §4.2.1 Error Estimate: S = 0, Z = 1 (PTPv2 timestamps: 32-bit seconds since the
/// Unix epoch, then 32-bit nanoseconds), scale 0, multiplier 1.
const ERROR_ESTIMATE_PTP: u16 = 0x4001;
/// Requests per burst: two sessions (SSID 1 and 2) interleaved, eight each.
const BURST: usize = 16;
const ROUNDS: usize = 3;

/// A Session-Sender packet (RFC 8762 §4.2.1 with RFC 8972's SSID) with one Follow-Up
/// Telemetry TLV (U flag set, as a sender sends it), built octet by octet.
fn request(sequence: u32, ssid: u16) -> Vec<u8> {
    let mut packet = vec![0u8; BASE_LEN + 4 + FOLLOW_UP_LEN];
    packet[0..4].copy_from_slice(&sequence.to_be_bytes());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    packet[4..8].copy_from_slice(&(now.as_secs() as u32).to_be_bytes());
    packet[8..12].copy_from_slice(&now.subsec_nanos().to_be_bytes());
    packet[12..14].copy_from_slice(&ERROR_ESTIMATE_PTP.to_be_bytes());
    packet[14..16].copy_from_slice(&ssid.to_be_bytes());
    packet[BASE_LEN] = 0x80;
    packet[BASE_LEN + 1] = FOLLOW_UP_TYPE;
    packet[BASE_LEN + 2..BASE_LEN + 4].copy_from_slice(&(FOLLOW_UP_LEN as u16).to_be_bytes());
    packet
}

/// One reflector reply as captured: when tcpdump saw it leave, and its fields (RFC 8762
/// §4.3.1: the reflector's sequence number at 0, the SSID at 14; RFC 8972 §4.7: the
/// Follow-Up value after the 4-octet TLV header at 44).
#[derive(Debug, Clone, Copy)]
struct Reply {
    captured_ns: u64,
    sequence: u32,
    ssid: u16,
    follow_up_sequence: u32,
    follow_up_ns: u64,
    follow_up_mode: u8,
}

fn parse_reply(captured: &str, payload_hex: &str) -> Reply {
    let bytes: Vec<u8> = (0..payload_hex.len() / 2)
        .map(|i| u8::from_str_radix(&payload_hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    assert_eq!(bytes.len(), BASE_LEN + 4 + FOLLOW_UP_LEN, "{payload_hex}");
    assert_eq!(bytes[BASE_LEN + 1], FOLLOW_UP_TYPE, "{payload_hex}");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 octets"));
    let value = BASE_LEN + 4;
    Reply {
        captured_ns: support::tshark::epoch_ns(captured).expect("a capture time"),
        sequence: word(0),
        ssid: u16::from_be_bytes([bytes[14], bytes[15]]),
        follow_up_sequence: word(value),
        follow_up_ns: u64::from(word(value + 4)) * 1_000_000_000 + u64::from(word(value + 8)),
        follow_up_mode: bytes[value + 12],
    }
}

/// The reflector in `netns`, listening on `address`, and its port. `ip netns exec` enters the
/// namespace and then executes the program, so the child's pid is the reflector's.
fn spawn_reflector(netns: &support::Netns, address: &str) -> (Running, u16) {
    let listen = format!("udp://{address}:0");
    let reflector = Running::start_in(
        netns,
        &[
            "reflect",
            "--stamp",
            &listen,
            "--stateful",
            "--allow-remote",
        ],
    );
    let listening = reflector.wait_for("the listening event", |v| v["type"] == "listening");
    let port = listening["endpoint"]
        .as_str()
        .and_then(|endpoint| endpoint.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .expect("a port");
    (reflector, port)
}

/// `ip ARGS` in the test's own namespace; fails the test if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn signal(child: &Child, signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(child), signal)
        .expect("signal the reflector");
}

/// Waits until every thread of `child` is stopped (state T in /proc), so that what is sent
/// now queues on its socket and reaches it in one batch when it continues.
fn wait_stopped(child: &Child) {
    let tasks = format!("/proc/{}/task", child.id());
    let all_stopped = || {
        std::fs::read_dir(&tasks)
            .expect("the reflector's threads")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
            .all(|stat| {
                // The state follows the command name, which is in parentheses.
                let state = stat[stat.rfind(')').expect("stat has (comm)") + 2..]
                    .chars()
                    .next();
                matches!(state, Some('T' | 't'))
            })
    };
    let started = std::time::Instant::now();
    while !all_stopped() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the reflector did not stop"
        );
        std::thread::yield_now();
    }
}

/// Bursts of requests of two interleaved sessions reach a stopped reflector's socket, so that
/// it answers each burst in one batch when it continues (a loaded host does this to it). Every
/// reply but each session's first must carry, in its Follow-Up Telemetry TLV, the previous
/// reply of its session: that reply's sequence number, and a transmit timestamp that is not
/// zero and lies between the capture time of that reply and the capture time of this one.
///
/// The reflector runs in a namespace behind a veth, where tcpdump captures its replies on the
/// way out (`-Q out`): the kernel hands a leaving packet to the capture just before the veth
/// driver, which takes the software transmit timestamp of it, both from CLOCK_REALTIME in
/// nanoseconds. (On lo tcpdump sees packets on the way in, after the transmit timestamp, as
/// late as the receiving softirq runs on a loaded host: no bound there.) And a reply can only
/// carry its predecessor's transmit timestamp once that was taken, so before it is itself
/// sent. So a right stamp always lies in [capture of the previous reply, capture of this one],
/// however loaded the host, and the window needs no tolerance; zero, the stamp of an older
/// reply (taken before the previous reply was captured) or of this one (after its capture)
/// never does.
#[test]
fn follow_up_carries_the_previous_replys_transmit_stamp_within_a_batch() {
    if !support::is_root() {
        eprintln!("skipping: a namespace, a veth and tcpdump need root (CI runs as root)");
        return;
    }
    if !support::installed("tcpdump") || !support::installed("tshark") {
        eprintln!(
            "skipping: tcpdump and tshark are the reference (apt-get install tcpdump tshark)"
        );
        return;
    }
    let Some(netns) = support::Netns::create("lsfu", "reflector") else {
        return;
    };
    // Our end of the veth stays here (the client is this test); it goes away with the
    // namespace, which takes the pair with it. A /30 of its own per test process.
    let tag = std::process::id() % 100_000;
    let (ours, theirs) = (format!("lsfuh{tag}"), format!("lsfun{tag}"));
    let subnet = std::process::id() % 250;
    let (client_address, reflector_address) =
        (format!("10.214.{subnet}.1"), format!("10.214.{subnet}.2"));
    ip(&[
        "link",
        "add",
        &ours,
        "type",
        "veth",
        "peer",
        "name",
        &theirs,
        "netns",
        &netns.name,
    ]);
    ip(&["addr", "add", &format!("{client_address}/30"), "dev", &ours]);
    ip(&["link", "set", &ours, "up"]);
    netns.exec(
        "ip",
        &[
            "addr",
            "add",
            &format!("{reflector_address}/30"),
            "dev",
            &theirs,
        ],
    );
    netns.exec("ip", &["link", "set", &theirs, "up"]);

    let (reflector, port) = spawn_reflector(&netns, &reflector_address);
    let client = UdpSocket::bind((client_address.as_str(), 0)).expect("client socket");
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let directory = tempfile::tempdir().expect("temporary directory");
    let file = directory.path().join("stamp.pcap");
    // -Q out: the replies as they leave (see above).
    let tcpdump = support::tshark::capture(
        netns.command("tcpdump"),
        &theirs,
        &["-Q", "out", "-c", &(BURST * ROUNDS).to_string()],
        &file,
        &format!("udp and src port {port}"),
    );

    let mut sequence = 0u32;
    for _round in 0..ROUNDS {
        signal(&reflector.child, rustix::process::Signal::STOP);
        wait_stopped(&reflector.child);
        for i in 0..BURST {
            let ssid = 1 + (i % 2) as u16;
            client
                .send_to(&request(sequence, ssid), (reflector_address.as_str(), port))
                .expect("send a request");
            sequence += 1;
        }
        signal(&reflector.child, rustix::process::Signal::CONT);
        let mut buffer = [0u8; 256];
        for _ in 0..BURST {
            client.recv(&mut buffer).expect("a reply within a minute");
        }
    }
    let output = support::wait_or_kill(tcpdump, Duration::from_secs(120));
    assert!(output.status.success(), "tcpdump failed");
    let (summary, code) = reflector.interrupt();
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["reflected"], BURST * ROUNDS, "{summary}");
    assert_eq!(summary["send_errors"], 0, "{summary}");
    // Its own account agrees: no follow-up went out zeroed for want of a stamp.
    assert_eq!(summary["follow_up_unavailable"], 0, "{summary}");

    let rows = support::tshark::fields(&file, &[], &["frame.time_epoch", "udp.payload"]);
    assert_eq!(rows.len(), BURST * ROUNDS, "{rows:?}");
    let mut sessions: BTreeMap<u16, Vec<Reply>> = BTreeMap::new();
    for row in &rows {
        let reply = parse_reply(&row[0], &row[1].replace(':', ""));
        sessions.entry(reply.ssid).or_default().push(reply);
    }
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let mut failures = Vec::new();
    for (ssid, replies) in &sessions {
        assert_eq!(replies.len(), BURST * ROUNDS / 2, "SSID {ssid}");
        for pair in replies.windows(2) {
            let (previous, reply) = (pair[0], pair[1]);
            // Stateful: the reflector numbers each session's replies from 0, one by one.
            assert_eq!(reply.sequence, previous.sequence + 1, "SSID {ssid}");
            let right = reply.follow_up_sequence == previous.sequence
                && reply.follow_up_mode == SOFTWARE_MODE
                && reply.follow_up_ns != 0
                && (previous.captured_ns..=reply.captured_ns).contains(&reply.follow_up_ns);
            if !right {
                failures.push(format!(
                    "SSID {ssid} reply {}: follow-up names reply {} sent at {} ns (mode {}); \
                     the previous reply {} was captured at {} ns, this one at {} ns",
                    reply.sequence,
                    reply.follow_up_sequence,
                    reply.follow_up_ns,
                    reply.follow_up_mode,
                    previous.sequence,
                    previous.captured_ns,
                    reply.captured_ns
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} follow-ups wrong or missing:\n{}",
        failures.len(),
        BURST * ROUNDS - 2,
        failures.join("\n")
    );
}
