//! `loopscope eth-lb` and `loopscope reflect --eth-lb` (Y.1731 / 802.1ag Ethernet loopback)
//! between network namespaces joined by veths (and a bridge, for several responders), with
//! independent peers: a Python AF_PACKET responder that flips chosen bits and checks the CRC-32
//! with zlib, Python senders of bad and of VLAN-tagged frames, and tshark's CFM and 802.1Q
//! dissectors. Every wait is on a line a program prints, never
//! on a sleep; a reply is given 30 s (-W), so a busy machine makes a run slower, never wrong.
//! Root only (namespaces, raw packet sockets); CI runs as root.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod support;
use support::running::Running;
use support::{Netns, summary};

/// Two namespaces joined by a veth: `vA` in the first, `vB` in the second, both up.
fn two_sides(tag: &str) -> Option<(Netns, Netns)> {
    let (a, b) = support::veth_pair("lselb", &format!("{tag}a"), &format!("{tag}b"))?;
    a.exec("ip", &["link", "set", "vA", "up"]);
    b.exec("ip", &["link", "set", "vB", "up"]);
    Some((a, b))
}

/// [`two_sides`], when each of `programs` (the independent peers the test compares with) is
/// installed; else it says why the test skips.
fn two_sides_with(tag: &str, programs: &[&str]) -> Option<(Netns, Netns)> {
    if let Some(missing) = programs.iter().find(|program| !support::installed(program)) {
        eprintln!("skipping: {missing} is not installed");
        return None;
    }
    two_sides(tag)
}

/// `reflect --eth-lb vB --level LEVEL` in `b`, once it says it is ready; and its MAC.
fn responder(b: &Netns, level: &str) -> (Running, String) {
    let (running, ready) = start_responder(b, "vB", level, &[]);
    assert_eq!(ready["interface"], "vB");
    let mac = ready["mac"].as_str().expect("mac").to_string();
    assert_eq!(
        ready["multicast_mac"],
        format!("01:80:c2:00:00:3{level}"),
        "the class 1 address of the level"
    );
    (running, mac)
}

fn eth_lb(a: &Netns, args: &[&str]) -> (i32, Vec<Value>) {
    let output = a
        .command(assert_cmd::cargo::cargo_bin("loopscope"))
        .arg("--json")
        .arg("eth-lb")
        .args(args)
        .output()
        .expect("run eth-lb");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    (output.status.code().unwrap_or(-1), lines)
}

/// `eth-lb vA --to MAC -c COUNT -i 10ms -W 30s EXTRA...` in `a`: COUNT messages 10 ms apart,
/// each given 30 s to be answered (a busy machine makes the run slower, never wrong).
fn exchange(a: &Netns, mac: &str, count: &str, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["vA", "--to", mac, "-c", count, "-i", "10ms", "-W", "30s"];
    args.extend_from_slice(extra);
    eth_lb(a, &args)
}

#[test]
fn replies_are_matched_and_round_trips_reported() {
    let Some((a, b)) = two_sides("rtt") else {
        return;
    };
    let (reflector, mac) = responder(&b, "3");
    for (tlv, pattern) in [("test", "prbs31"), ("test", "null-crc"), ("data", "prbs31")] {
        let (code, lines) = exchange(
            &a,
            &mac,
            "5",
            &["--level", "3", "--tlv", tlv, "--pattern", pattern],
        );
        let s = summary(&lines);
        assert_eq!(code, 0, "{tlv} {pattern}: {s}");
        let replies: Vec<&Value> = lines.iter().filter(|l| l["type"] == "reply").collect();
        let sequences: Vec<u64> = replies.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        assert_eq!(sequences, [0, 1, 2, 3, 4], "{tlv} {pattern}");
        assert!(replies.iter().all(|r| r["rtt_us"].as_f64().unwrap() > 0.0));
        assert_eq!(s["transmitted"], 5);
        assert_eq!(s["received"], 5);
        assert_eq!(s["errors"], 0);
        assert!(s["rtt_min_us"].as_f64().unwrap() > 0.0);
        assert!(s["rtt_max_us"].as_f64().unwrap() >= s["rtt_min_us"].as_f64().unwrap());
        assert_eq!(s["bits"], 5 * 64 * 8, "every pattern bit compared");
        assert_eq!(s["bit_errors"], 0);
        assert_eq!(s["crc_errors"], 0);
        assert_eq!(s["rx_timestamps"], "kernel");
        assert_eq!(
            s["tx_timestamps"], "kernel",
            "SO_TIMESTAMPING on the packet socket"
        );
        assert_eq!(s["destination_mac"], mac.as_str());
        assert_eq!(s["responders"][0]["mac"], mac.as_str());
        assert_eq!(s["responders"][0]["replies"], 5);
    }
    // The multicast class 1 address of level 3 reaches it too; level 2's does not.
    let (code, lines) = eth_lb(
        &a,
        &[
            "vA",
            "--to",
            "multicast",
            "--level",
            "3",
            "-c",
            "3",
            "-i",
            "10ms",
            // A multicast run listens for the whole -W after its last message (other MEPs
            // may answer later); the responder answers within its 1 s random delay.
            "-W",
            "5s",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(summary(&lines)["received"], 3);
    let (code, lines) = eth_lb(
        &a,
        &[
            "vA",
            "--to",
            "01:80:c2:00:00:32",
            "-c",
            "2",
            "-i",
            "10ms",
            "-W",
            "300ms",
        ],
    );
    assert_eq!(code, 1, "no MEP of level 2 answers");
    assert_eq!(summary(&lines)["received"], 0);
    let (reflected, code) = reflector.interrupt();
    assert_eq!(code, 0);
    assert_eq!(reflected["lbr_sent"], 18);
    assert_eq!(reflected["lbr_delayed"], 3, "the multicast ones");
    // Level 2's class 1 address: messages for the MEPs of level 2, counted and never answered.
    assert_eq!(reflected["dropped_wrong_level"], 2);
}

/// tshark on `vA` in `a`, printing `fields` (`|`-separated) of the frames `selection` keeps
/// (`-f` capture filter or `-Y` display filter), returned once it is seen to capture:
/// `marker`, eth-lb arguments for a message nobody answers, is sent until tshark shows one,
/// since the first may leave before the capture has started.
fn live_fields(a: &Netns, selection: &[&str], fields: &[&str], marker: &[&str]) -> Running {
    let mut command = a.command("tshark");
    command
        .args(["-i", "vA", "-l"])
        .args(selection)
        .args(["-T", "fields", "-E", "separator=|"])
        .args(fields.iter().flat_map(|field| ["-e", field]));
    let capture = Running::spawn_with_stderr(command, Stdio::null());
    loop {
        let (code, _) = eth_lb(a, marker);
        assert_eq!(code, 1, "nobody answers the marker {marker:?}");
        if capture
            .next_line_within(Duration::from_millis(500))
            .is_some()
        {
            return capture;
        }
    }
}

/// `reflect --eth-lb IFACE --level LEVEL EXTRA...` in `netns`, once it says it is ready; and
/// its MAC.
fn responder_on(netns: &Netns, interface: &str, level: &str, extra: &[&str]) -> (Running, String) {
    let (running, ready) = start_responder(netns, interface, level, extra);
    let mac = ready["mac"].as_str().expect("mac").to_string();
    (running, mac)
}

/// `reflect --eth-lb IFACE --level LEVEL EXTRA...` in `netns`, and its `listening` event.
fn start_responder(
    netns: &Netns,
    interface: &str,
    level: &str,
    extra: &[&str],
) -> (Running, Value) {
    let mut args = vec!["reflect", "--eth-lb", interface, "--level", level];
    args.extend_from_slice(extra);
    let running = Running::start_in(netns, &args);
    let ready = running.wait_for("listening", |v| v["type"] == "listening");
    (running, ready)
}

/// The size on the wire of each reply of a run, in order.
fn reply_sizes(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l["type"] == "reply")
        .map(|l| l["bytes"].as_u64().unwrap())
        .collect()
}

/// Two messages to `mac` at level 2 with each tag stack of `vlans` (`None`: untagged): none is
/// answered, since none is the responder's.
fn assert_unanswered_with(a: &Netns, mac: &str, vlans: &[Option<&str>]) {
    for vlan in vlans {
        let mut args = vec![
            "vA", "--to", mac, "--level", "2", "-c", "2", "-i", "10ms", "-W", "500ms",
        ];
        if let Some(vlan) = vlan {
            args.extend_from_slice(&["--vlan", vlan]);
        }
        let (code, lines) = eth_lb(a, &args);
        assert_eq!(code, 1, "{vlan:?}");
        assert_eq!(summary(&lines)["received"], 0);
    }
}

/// Whether a CFM frame tshark decoded is one of our messages (OpCode 3) rather than a reply
/// (OpCode 2), once its addresses (`[source]` or `[source, destination]`) are seen to be ours
/// (`own`) and the responder's (`mac`) the right way round.
fn is_message(opcode: &str, addresses: &[&str], own: &str, mac: &str) -> bool {
    let (message, expected) = match opcode {
        "3" => (true, [own, mac]),
        "2" => (false, [mac, own]),
        other => panic!("OpCode {other}"),
    };
    assert_eq!(addresses, &expected[..addresses.len()], "OpCode {opcode}");
    message
}

/// An initiator and three responders on one bridge (in a namespace of its own): two MEPs of
/// level 3 and one of level 4. A multicast LBM of level 3 is answered by both MEPs of level 3,
/// each with a unicast LBR after its own random delay, and each is reported by its MAC; the
/// MEP of level 4 counts every message of level 3 it saw (multicast or to its MAC) and answers
/// none.
#[test]
fn multicast_lbms_are_answered_by_every_mep_of_the_level() {
    let Some(hub) = Netns::create("lselb", "mchub") else {
        return;
    };
    hub.exec("ip", &["link", "add", "br0", "type", "bridge"]);
    hub.exec("ip", &["link", "set", "br0", "up"]);
    let mut sides = Vec::new();
    for (tag, port) in [("mca", "pA"), ("mc1", "p1"), ("mc2", "p2"), ("mc4", "p4")] {
        let Some(side) = Netns::create("lselb", tag) else {
            return;
        };
        let link = Command::new("ip")
            .args([
                "link", "add", "v", "netns", &side.name, "type", "veth", "peer",
            ])
            .args(["name", port, "netns", &hub.name])
            .status()
            .expect("ip link add");
        assert!(link.success(), "veth");
        side.exec("ip", &["link", "set", "v", "up"]);
        hub.exec("ip", &["link", "set", port, "master", "br0"]);
        hub.exec("ip", &["link", "set", port, "up"]);
        sides.push(side);
    }
    let (a, b1, b2, b4) = (&sides[0], &sides[1], &sides[2], &sides[3]);
    let (first, first_mac) = responder_on(b1, "v", "3", &[]);
    let (second, second_mac) = responder_on(b2, "v", "3", &[]);
    let (other, other_mac) = responder_on(b4, "v", "4", &[]);
    let (code, lines) = eth_lb(
        a,
        &[
            "v",
            "--to",
            "multicast",
            "--level",
            "3",
            "-c",
            "4",
            "-i",
            "20ms",
            "-W",
            "5s",
        ],
    );
    let s = summary(&lines);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["destination_mac"], "01:80:c2:00:00:33");
    assert_eq!(s["transmitted"], 4);
    assert_eq!(s["received"], 4, "{s}");
    assert_eq!(s["duplicates"], 4, "the second MEP's replies: {s}");
    assert_eq!(s["bit_errors"], 0);
    let responders = s["responders"].as_array().expect("responders");
    let mut macs: Vec<&str> = responders
        .iter()
        .map(|r| r["mac"].as_str().unwrap())
        .collect();
    macs.sort_unstable();
    let mut wanted = vec![first_mac.as_str(), second_mac.as_str()];
    wanted.sort_unstable();
    assert_eq!(macs, wanted, "each MEP of level 3, and only those: {s}");
    assert!(responders.iter().all(|r| r["replies"] == 4), "{s}");
    // The random delay (uniform up to 1 s) is there: eight replies all within 20 ms of their
    // message would have a chance of 0.02^8. (A bound from below: a busy machine only adds.)
    let slowest = responders
        .iter()
        .map(|r| r["rtt_max_us"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(slowest > 20_000.0, "no random delay seen: {s}");
    // A unicast LBM of level 3 to the MEP of level 4: dropped, counted.
    let (code, lines) = eth_lb(
        a,
        &[
            "v", "--to", &other_mac, "--level", "3", "-c", "2", "-i", "10ms", "-W", "500ms",
        ],
    );
    assert_eq!(code, 1, "a MEP of level 4 does not answer level 3");
    assert_eq!(summary(&lines)["received"], 0);
    for (responder, multicast_answered) in [(first, 4), (second, 4)] {
        let (s, code) = responder.interrupt();
        assert_eq!(code, 0);
        assert_eq!(s["lbr_sent"], multicast_answered, "{s}");
        assert_eq!(s["lbr_delayed"], multicast_answered, "{s}");
        assert_eq!(s["dropped_wrong_level"], 0, "{s}");
    }
    let (s, code) = other.interrupt();
    assert_eq!(code, 0);
    assert_eq!(s["lbr_sent"], 0, "{s}");
    assert_eq!(
        s["dropped_wrong_level"],
        4 + 2,
        "multicast and unicast: {s}"
    );
}

/// What every Python sender here starts with: its arguments (the interface, the responder's
/// MAC, the EtherType its packet socket takes), the socket (tagged frames come with the tag the
/// kernel took out: PACKET_AUXDATA), its own MAC, and how it reads a reply.
const PYTHON_SENDER_START: &str = r#"
import socket, struct, sys
iface, target = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
protocol = int(sys.argv[3], 16)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
s.bind((iface, protocol))
mac = s.getsockname()[4]
def reply():
    """The next frame sent to us and its outer tag as the kernel hands it over: (frame, TPID
    (None unless TP_STATUS_VLAN_TPID_VALID), TCI), TCI None when it came untagged."""
    while True:
        frame, ancillary, flags, address = s.recvmsg(65536, socket.CMSG_SPACE(20))
        if address[2] != socket.PACKET_OUTGOING and frame[0:6] == mac:
            break
    for level, kind, data in ancillary:
        if level == 263 and kind == 8:
            status, _, _, _, _, tci, tpid = struct.unpack("IIIHHHH", data[:20])
            if status & 0x10:
                return frame, tpid if status & 0x40 else None, tci
    return frame, None, None
"#;

/// The EtherType of a Python sender's socket that takes every frame (ETH_P_ALL), the tagged
/// ones too.
const EVERY_ETHERTYPE: &str = "0003";
/// The EtherType of a Python sender's socket that takes untagged CFM frames only.
const CFM_ETHERTYPE: &str = "8902";

/// Runs the Python sender `body` (after [`PYTHON_SENDER_START`]) on `vA` in `a`, aimed at
/// `mac`, its socket taking `ethertype` (hex).
fn python_sender(a: &Netns, body: &str, mac: &str, ethertype: &str) -> Running {
    let mut command = a.command("python3");
    let script = format!("{PYTHON_SENDER_START}{body}");
    command.args(["-c", &script, "vA", mac, ethertype]);
    Running::spawn(command)
}

/// The Python sender of a tagged LBM built with struct: VLAN 100, priority 3, to the
/// responder's MAC; it prints the reply's tag as the kernel hands it over with the reply's
/// OpCode and transaction identifier.
const TAGGED_SENDER: &str = r#"
pdu = bytes([2 << 5, 3, 0, 4]) + struct.pack("!I", 77) + b"\x03\x00\x04WXYZ\x00"
s.send(target + mac + struct.pack("!HH", 0x8100, (3 << 13) | 100) + b"\x89\x02" + pdu)
frame, _, tci = reply()
print("reply opcode=%d tid=%d vlan=%s pcp=%s" % (frame[15], struct.unpack("!I", frame[18:22])[0],
      tci & 0xFFF if tci is not None else None, tci >> 13 if tci is not None else None), flush=True)
"#;

/// `--vlan` on both ends: the LBMs carry the 802.1Q tag asked for, the responder answers on
/// the same VLAN with the same priority, and tshark's 802.1Q and CFM dissectors read both;
/// a tagged LBM built with Python's struct gets its reply on its VLAN with its priority;
/// untagged messages and other VLANs are not answered and are counted.
#[test]
fn vlan_tagged_loopback_keeps_its_vlan_and_priority() {
    let Some((a, b)) = two_sides_with("vlan", &["tshark", "python3"]) else {
        return;
    };
    let (reflector, mac) = responder_on(&b, "vB", "2", &["--vlan", "100"]);
    // Tagged messages of VLAN 4000 (which nobody serves) mark the capture as running.
    let capture = live_fields(
        &a,
        &["-f", "vlan and ether proto 0x8902"],
        &[
            "eth.src",
            "eth.dst",
            "vlan.id",
            "vlan.priority",
            "vlan.etype",
            "cfm.md.level",
            "cfm.opcode",
            "cfm.lb.transaction.id",
            "_ws.malformed",
            "_ws.expert.severity",
        ],
        &[
            "vA", "--to", &mac, "--level", "2", "--vlan", "4000", "-c", "1", "-W", "100ms",
        ],
    );
    let (code, lines) = exchange(&a, &mac, "3", &["--level", "2", "--vlan", "100:5"]);
    let s = summary(&lines);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["received"], 3);
    assert_eq!(s["vlan_id"], 100);
    assert_eq!(s["vlan_pcp"], 5);
    // 14 + 4 (the tag) + 8 (CFM header) + 4 (Test TLV Type, Length, Pattern Type) + 64 + 1
    // (End TLV): the reply as it crossed the wire, the tag the kernel took out counted.
    assert_eq!(reply_sizes(&lines), [95, 95, 95]);
    assert_eq!(s["tx_timestamps"], "kernel");
    let own = s["source_mac"].as_str().unwrap().to_string();
    let mut rows = Vec::new();
    while rows.len() < 6 {
        let line = capture.line_where("a decoded frame of VLAN 100", |line| {
            line.split('|').nth(2) == Some("100")
        });
        rows.push(line.split('|').map(str::to_string).collect::<Vec<_>>());
    }
    let (mut messages, mut replies) = (0, 0);
    for row in &rows {
        assert_eq!(row.len(), 10, "{row:?}");
        assert_eq!(row[3], "5", "the priority, both ways: {row:?}");
        assert_eq!(row[4], "0x8902", "CFM inside the tag: {row:?}");
        assert_eq!(row[5], "2", "MD level: {row:?}");
        assert_eq!((row[8].as_str(), row[9].as_str()), ("", ""), "{row:?}");
        let addresses = [row[0].as_str(), row[1].as_str()];
        if is_message(&row[6], &addresses, &own, &mac) {
            messages += 1;
        } else {
            replies += 1;
        }
    }
    assert_eq!((messages, replies), (3, 3));
    // An independent tagged LBM: VLAN 100, priority 3.
    let sender = python_sender(&a, TAGGED_SENDER, &mac, EVERY_ETHERTYPE);
    let reply = sender.line_where("the reply", |line| line.starts_with("reply "));
    assert_eq!(reply, "reply opcode=2 tid=77 vlan=100 pcp=3");
    // Untagged, and VLAN 200: not this responder's.
    assert_unanswered_with(&a, &mac, &[None, Some("200")]);
    let (s, code) = reflector.interrupt();
    assert_eq!(code, 0);
    assert_eq!(s["vlan_id"], 100);
    assert_eq!(s["lbr_sent"], 3 + 1, "{s}");
    // VLAN 4000 markers (at least one), 2 untagged, 2 on VLAN 200.
    let other_vlan = s["dropped_other_vlan"].as_u64().unwrap();
    assert!(other_vlan >= 1 + 2 + 2, "{s}");
}

/// The Python responder: answers each LBM to its MAC with an LBR whose pattern has the next
/// count of bits flipped (bit 9k of the pattern for the k-th flip), and prints for each LBM
/// its Pattern Type and whether the CRC-32 it carries is zlib's over Type..pattern.
const FLIPPING_RESPONDER: &str = r#"
import socket, struct, sys, zlib
iface, flips = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x8902))
s.bind((iface, 0x8902))
mac = s.getsockname()[4]
print("ready " + mac.hex(":"), flush=True)
for count in flips:
    while True:
        frame, address = s.recvfrom(65536)
        if address[2] != socket.PACKET_OUTGOING and frame[0:6] == mac and frame[15] == 3:
            break
    pdu = bytearray(frame[14:])
    length = struct.unpack("!H", pdu[9:11])[0]
    value = pdu[11:11 + length]
    crc = "none"
    if pdu[8] == 32 and value[0] in (1, 3):
        carried = struct.unpack("!I", bytes(value[-4:]))[0]
        crc = "ok" if zlib.crc32(bytes(pdu[8:11 + length - 4])) == carried else "bad"
    print("lbm tlv=%d pattern_type=%d crc=%s" % (pdu[8], value[0], crc), flush=True)
    for k in range(count):
        bit = 9 * k
        pdu[12 + bit // 8] ^= 0x80 >> (bit % 8)
    pdu[1] = 2
    s.send(frame[6:12] + mac + frame[12:14] + bytes(pdu))
print("done", flush=True)
"#;

#[test]
fn a_peer_that_flips_pattern_bits_is_counted_as_exactly_those_bit_errors() {
    let Some((a, b)) = two_sides_with("ber", &["python3"]) else {
        return;
    };
    for (pattern, pattern_type, crc) in [("prbs31", 2, "none"), ("prbs31-crc", 3, "ok")] {
        let mut command = b.command("python3");
        command.args(["-c", FLIPPING_RESPONDER, "vB", "3,0,5,1"]);
        let peer = Running::spawn(command);
        let ready = peer.line_where("ready", |line| line.starts_with("ready "));
        let mac = ready.trim_start_matches("ready ").to_string();
        let (code, lines) = exchange(&a, &mac, "4", &["--pattern", pattern]);
        let s = summary(&lines);
        assert_eq!(code, 1, "bit errors fail the run: {s}");
        assert_eq!(s["bit_errors"], 3 + 5 + 1, "{pattern}: {s}");
        assert_eq!(s["bits"], 4 * 64 * 8);
        assert_eq!(s["transmitted"], 4);
        // The intact reply is a round trip; the three altered ones are errors.
        assert_eq!(s["received"], 1);
        assert_eq!(s["errors"], 3);
        assert_eq!(
            s["crc_errors"],
            if crc == "ok" { 3 } else { 0 },
            "the flipped replies fail the CRC-32"
        );
        let corrupt: Vec<u64> = lines
            .iter()
            .filter(|l| l["type"] == "reply" && l["corrupt"] == true)
            .map(|l| l["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(corrupt, [0, 2, 3]);
        for _ in 0..4 {
            let seen = peer.line_where("an LBM", |line| line.starts_with("lbm "));
            assert_eq!(
                seen,
                format!("lbm tlv=32 pattern_type={pattern_type} crc={crc}"),
                "what the independent peer read"
            );
        }
        peer.line_where("done", |line| line == "done");
    }
}

/// tshark's CFM dissector reads what crossed the veth: LBMs and LBRs with the level, OpCode,
/// Test TLV pattern type and matching transaction identifiers, nothing malformed.
#[test]
fn tshark_decodes_lbm_and_lbr_on_the_wire() {
    let Some((a, b)) = two_sides_with("tsh", &["tshark"]) else {
        return;
    };
    let (_reflector, mac) = responder(&b, "5");
    // A message of MD level 6 (which nobody answers) marks the capture as running: sent until
    // tshark shows one, since the first may leave before the capture has started.
    let capture = live_fields(
        &a,
        &["-f", "ether proto 0x8902"],
        &[
            "eth.src",
            "eth.dst",
            "cfm.md.level",
            "cfm.opcode",
            "cfm.lb.transaction.id",
            "cfm.tlv.type",
            "cfm.tlv.tst.test.pattern.type",
            "_ws.malformed",
            "_ws.expert.severity",
            "frame.time_epoch",
        ],
        &["vA", "--to", &mac, "--level", "6", "-c", "1", "-W", "100ms"],
    );
    let (code, lines) = exchange(&a, &mac, "3", &["--level", "5", "--pattern", "prbs31-crc"]);
    assert_eq!(code, 0, "{}", summary(&lines));
    let mut decoded = Vec::new();
    while decoded.len() < 6 {
        // Level 6 lines are the markers (late copies included).
        decoded.push(capture.line_where("a decoded frame of level 5", |line| {
            line.split('|').nth(2) == Some("5")
        }));
    }
    let rows: Vec<Vec<&str>> = decoded
        .iter()
        .map(|line| line.split('|').collect())
        .collect();
    let own = summary(&lines)["source_mac"].as_str().unwrap().to_string();
    let mut messages = Vec::new();
    let mut replies = Vec::new();
    // When tshark saw each frame cross vA (its own kernel timestamp), by transaction and OpCode.
    let mut seen_at: std::collections::HashMap<(u32, &str), i128> = Default::default();
    for row in &rows {
        assert_eq!(row.len(), 10, "{row:?}");
        assert_eq!(row[2], "5", "MD level: {row:?}");
        assert_eq!(row[5], "32,0", "the Test TLV, then the End TLV: {row:?}");
        assert_eq!(row[6], "3", "PRBS with CRC-32: {row:?}");
        assert_eq!(row[7], "", "malformed: {row:?}");
        assert_eq!(row[8], "", "expert info: {row:?}");
        let id = u32::from_str_radix(row[4].trim_start_matches("0x"), 16)
            .or_else(|_| row[4].parse())
            .unwrap_or_else(|_| panic!("transaction id {row:?}"));
        // Seconds and nanoseconds apart: an f64 of the epoch keeps only microseconds.
        let at =
            support::tshark::epoch_ns(row[9]).unwrap_or_else(|| panic!("frame.time_epoch {row:?}"));
        seen_at.insert((id, row[3]), i128::from(at));
        if is_message(row[3], &row[0..2], &own, &mac) {
            messages.push(id);
        } else {
            replies.push(id);
        }
    }
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages,
        [
            messages[0],
            messages[0].wrapping_add(1),
            messages[0].wrapping_add(2)
        ],
        "transaction identifiers increment"
    );
    assert_eq!(
        replies, messages,
        "each reply keeps its message's identifier"
    );
    // Our round trips are the kernel's transmit and receive stamps of the same frames tshark
    // saw: each agrees with tshark's message-to-reply time far within the 10 ms between
    // messages, so no reply was timed from another message's transmit stamp (a slip in the
    // kernel's numbering of transmit stamps shows as 10 ms). The bound is wide because both
    // clock pairs are read in user space; a busy machine does not move kernel stamps.
    for reply in lines.iter().filter(|l| l["type"] == "reply") {
        let sequence = reply["seq"].as_u64().unwrap() as u32;
        let id = messages[0].wrapping_add(sequence);
        let on_the_wire_us = (seen_at[&(id, "2")] - seen_at[&(id, "3")]) as f64 / 1000.0;
        let ours_us = reply["rtt_us"].as_f64().unwrap();
        assert!(
            (ours_us - on_the_wire_us).abs() < 1000.0,
            "seq {sequence}: ours {ours_us} us, tshark {on_the_wire_us} us"
        );
    }
}

/// The Python sender of bad frames: each is sent once, then a valid LBM whose reply proves the
/// responder has read everything before it (the veth keeps order).
const BAD_SENDER: &str = r#"
def frame(destination, level, opcode, tid, tlvs, offset=4):
    return destination + mac + b"\x89\x02" + bytes([level << 5, opcode, 0, offset]) + struct.pack("!I", tid) + tlvs
data = b"\x03\x00\x04ABCD"
s.send(frame(target, 4, 3, 1, data))                    # no End TLV: malformed
s.send(frame(target, 4, 3, 2, b"\x03\x00\x40AB\x00"))   # a TLV past the end: malformed
s.send(frame(target, 4, 3, 3, b"\xde\xad\xbe\xef" + data + b"\x00", 8))  # offset 8: valid
s.send(frame(target, 4, 3, 3, data + b"\x00", 3))       # First TLV Offset 3: malformed
s.send(target + mac + b"\x89\x02\x80\x03")              # truncated header: malformed
s.send(frame(target, 2, 3, 4, data + b"\x00"))          # a lower level
s.send(frame(target, 6, 3, 4, data + b"\x00"))          # a higher level
s.send(frame(target, 4, 2, 5, data + b"\x00"))          # an LBR
s.send(frame(bytes.fromhex("020000000099"), 4, 3, 6, data + b"\x00"))  # another MAC
s.send(frame(target, 4, 1, 7, b"\x00" * 70))            # a CCM: another OpCode
s.send(frame(target, 4, 3, 8, data + b"\x00"))          # valid
while True:
    answer = reply()[0]
    print("reply opcode=%d tid=%d len=%d pdu=%s" % (answer[15], struct.unpack("!I", answer[18:22])[0], len(answer), answer[14:].hex()), flush=True)
    if struct.unpack("!I", answer[18:22])[0] == 8:
        break
"#;

#[test]
fn bad_frames_are_counted_and_dropped() {
    let Some((a, b)) = two_sides_with("bad", &["python3"]) else {
        return;
    };
    let (reflector, mac) = responder(&b, "4");
    let sender = python_sender(&a, BAD_SENDER, &mac, CFM_ETHERTYPE);
    // A First TLV Offset of 8 is a later version's longer header (IEEE 802.1ag §21.4): the
    // message is answered, its 4 extra header octets and its TLVs copied as they came.
    let longer = sender.line_where("the longer header's reply", |line| {
        line.starts_with("reply ")
    });
    assert_eq!(
        longer,
        "reply opcode=2 tid=3 len=34 pdu=80020008\
         00000003deadbeef03000441424344\
         00"
    );
    let reply = sender.line_where("the valid LBM's reply", |line| line.starts_with("reply "));
    // 14 + 8 + 7 (Data TLV) + 1 (End TLV): the reply is no larger than the message.
    assert_eq!(
        reply,
        "reply opcode=2 tid=8 len=30 pdu=800200040000000803000441424344\
         00"
    );
    let (s, code) = reflector.interrupt();
    assert_eq!(code, 0);
    assert_eq!(s["lbr_sent"], 2, "{s}");
    assert_eq!(s["dropped_malformed"], 4, "{s}");
    assert_eq!(s["dropped_wrong_level"], 2, "{s}");
    assert_eq!(s["dropped_lower_level"], 1, "{s}");
    assert_eq!(s["dropped_higher_level"], 1, "{s}");
    assert_eq!(s["dropped_lbr"], 1, "{s}");
    assert_eq!(s["dropped_not_addressed"], 1, "{s}");
    assert_eq!(s["dropped_other_opcode"], 1, "{s}");
}

#[test]
fn bad_arguments_are_one_line_and_exit_2() {
    for args in [
        &["eth-lb", "lo", "--to", "nonsense"][..],
        &["eth-lb", "lo", "--to", "01:80:c2:00:00:33", "--level", "4"],
        &["eth-lb", "lo", "--to", "02:00:00:00:00:01", "--level", "8"],
        &[
            "eth-lb",
            "lo",
            "--to",
            "02:00:00:00:00:01",
            "--tlv",
            "data",
            "--pattern",
            "null-crc",
        ],
        &[
            "eth-lb",
            "no-such-interface0",
            "--to",
            "02:00:00:00:00:01",
            "-c",
            "1",
        ],
        &["reflect", "--eth-lb", "no-such-interface0"],
        &["reflect", "--eth-lb", "lo", "--impair", "drop=0.5"],
        &["reflect", "--eth-lb", "lo", "--level", "9"],
        &["reflect", "--eth-lb", "lo", "--vlan", "4095"],
        &["reflect", "--eth-lb", "lo", "--vlan", "100.200.300"],
        &["reflect", "--eth-lb", "lo", "--vlan", "100."],
        &[
            "eth-lb",
            "lo",
            "--to",
            "02:00:00:00:00:01",
            "--vlan",
            "1.2.3",
        ],
        &[
            "eth-lb",
            "lo",
            "--to",
            "02:00:00:00:00:01",
            "--target-mep",
            "8192",
        ],
        &["reflect", "--eth-lb", "lo", "--multicast-delay", "2h"],
        &["eth-lb", "lo", "--to", "02:00:00:00:00:01", "--vlan", "0"],
        &[
            "eth-lb",
            "lo",
            "--to",
            "02:00:00:00:00:01",
            "--vlan",
            "100:8",
        ],
    ] {
        let output = support::loopscope().args(args).output().expect("runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The one line first (clap adds its usage hint below it); no panic.
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("loopscope: error:"),
            "{args:?}: {stderr}"
        );
    }
}

/// The Python sender of a Q-in-Q LBM built with struct: an 802.1ad S-tag (TPID 0x88A8, VLAN
/// 100, priority 3) over an 802.1Q C-tag (VLAN 200, priority 5), to the responder's MAC. It
/// reads the reply's outer tag as the kernel hands it over (PACKET_AUXDATA: TCI and, with
/// TP_STATUS_VLAN_TPID_VALID, the TPID) and its inner tag from the frame.
const Q_IN_Q_SENDER: &str = r#"
pdu = bytes([2 << 5, 3, 0, 4]) + struct.pack("!I", 78) + b"\x03\x00\x04WXYZ\x00"
tags = struct.pack("!HHHH", 0x88A8, (3 << 13) | 100, 0x8100, (5 << 13) | 200)
s.send(target + mac + tags + b"\x89\x02" + pdu)
frame, tpid, tci = reply()
outer = (tpid, tci & 0xFFF, tci >> 13) if tci is not None else None
inner_tpid, inner_tci = struct.unpack("!HH", frame[12:16])
print("reply outer=%s inner=0x%04x/%d/%d ethertype=0x%04x opcode=%d tid=%d" % (
    "0x%04x/%d/%d" % outer if outer else None, inner_tpid, inner_tci & 0xFFF, inner_tci >> 13,
    struct.unpack("!H", frame[16:18])[0], frame[19], struct.unpack("!I", frame[22:26])[0]), flush=True)
"#;

/// Q-in-Q (IEEE 802.1ad) on both ends: `eth-lb --vlan 100:3.200:5` sends an S-tag (TPID
/// 0x88A8) over a C-tag (0x8100); `reflect --eth-lb --vlan 100.200` answers with the same two
/// tags, TPIDs and priorities; tshark's 802.1ad, 802.1Q and CFM dissectors read both ways with
/// no malformed field. A Q-in-Q LBM built with Python's struct is answered with its stack; the
/// S-VLAN alone, the C-VLAN alone, or no tag are not this responder's and are counted.
#[test]
fn q_in_q_loopback_keeps_both_tags() {
    let Some((a, b)) = two_sides_with("qinq", &["tshark", "python3"]) else {
        return;
    };
    let (reflector, mac) = responder_on(&b, "vB", "2", &["--vlan", "100.200"]);
    // Messages of S-VLAN 4000 (which nobody serves) mark the capture as running.
    let capture = live_fields(
        &a,
        &["-Y", "cfm"],
        &[
            "eth.src",
            "eth.dst",
            "ieee8021ad.id",
            "ieee8021ad.priority",
            "vlan.id",
            "vlan.priority",
            "vlan.etype",
            "cfm.md.level",
            "cfm.opcode",
            "_ws.malformed",
            "_ws.expert.severity",
        ],
        &[
            "vA", "--to", &mac, "--level", "2", "--vlan", "4000.1", "-c", "1", "-W", "100ms",
        ],
    );
    let (code, lines) = exchange(&a, &mac, "3", &["--level", "2", "--vlan", "100:3.200:5"]);
    let s = summary(&lines);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["received"], 3);
    assert_eq!((&s["vlan_id"], &s["vlan_pcp"]), (&100.into(), &3.into()));
    assert_eq!(
        s["vlan_stack"],
        serde_json::json!([
            {"tpid": "0x88a8", "vlan_id": 100, "vlan_pcp": 3},
            {"tpid": "0x8100", "vlan_id": 200, "vlan_pcp": 5},
        ])
    );
    // 14 + 8 (two tags) + 8 (CFM header) + 4 (Test TLV Type, Length, Pattern Type) + 64 + 1
    // (End TLV): the reply as it crossed the wire, the tag the kernel took out counted.
    assert_eq!(reply_sizes(&lines), [99, 99, 99]);
    let own = s["source_mac"].as_str().unwrap().to_string();
    let (mut messages, mut replies) = (0, 0);
    while messages + replies < 6 {
        let line = capture.line_where("a decoded frame of S-VLAN 100", |line| {
            line.split('|').nth(2) == Some("100")
        });
        let row: Vec<&str> = line.split('|').collect();
        assert_eq!(row.len(), 11, "{row:?}");
        assert_eq!(
            &row[2..8],
            ["100", "3", "200", "5", "0x8902", "2"],
            "S-VLAN 100 priority 3 over C-VLAN 200 priority 5, CFM of level 2: {row:?}"
        );
        assert_eq!((row[9], row[10]), ("", ""), "{row:?}");
        if is_message(row[8], &row[0..2], &own, &mac) {
            messages += 1;
        } else {
            replies += 1;
        }
    }
    assert_eq!((messages, replies), (3, 3));
    // An independent Q-in-Q LBM.
    let sender = python_sender(&a, Q_IN_Q_SENDER, &mac, EVERY_ETHERTYPE);
    let reply = sender.line_where("the reply", |line| line.starts_with("reply "));
    assert_eq!(
        reply,
        "reply outer=0x88a8/100/3 inner=0x8100/200/5 ethertype=0x8902 opcode=2 tid=78"
    );
    // The largest PDU with two tags: 1492 octets (8 + the Test TLV's 4 + 1479 + the End
    // TLV), a 1514-octet frame; Linux lets a packet socket exceed the MTU by one 802.1Q tag
    // only, not by an 802.1ad S-tag. A regression test: the size range allowed 1483 octets of
    // pattern, and the send failed (EMSGSIZE) mid-run.
    let (code, lines) = eth_lb(
        &a,
        &[
            "vA", "--to", &mac, "--level", "2", "--vlan", "100.200", "-s", "1479", "-c", "1", "-W",
            "30s",
        ],
    );
    let s = summary(&lines);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["received"], 1, "{s}");
    let reply = lines.iter().find(|l| l["type"] == "reply").expect("reply");
    assert_eq!(reply["bytes"], 1514);
    let output = a
        .command(assert_cmd::cargo::cargo_bin("loopscope"))
        .args([
            "eth-lb", "vA", "--to", &mac, "--level", "2", "--vlan", "100.200",
        ])
        .args(["-s", "1480", "-c", "1"])
        .output()
        .expect("run eth-lb");
    assert_eq!(output.status.code(), Some(2), "one octet too many");
    // The S-VLAN alone, the C-VLAN alone, untagged: not this responder's.
    assert_unanswered_with(&a, &mac, &[Some("100"), Some("200"), None]);
    let (s, code) = reflector.interrupt();
    assert_eq!(code, 0);
    assert_eq!(s["vlan_ids"], serde_json::json!([100, 200]));
    assert_eq!(s["lbr_sent"], 3 + 1 + 1, "{s}");
    // S-VLAN 4000 markers (at least one), then 2 each on VLAN 100, VLAN 200 and untagged.
    let other_vlan = s["dropped_other_vlan"].as_u64().unwrap();
    let (markers, wrong_stacks) = (1, 3 * 2);
    assert!(other_vlan >= markers + wrong_stacks, "{s}");
}

/// The Python sender of an LBM with identifier TLVs the responder does not act on and one of a
/// type nobody defines: a Requesting MEP ID TLV (type 35: Loopback Indication 0, MEP ID 12, a
/// MEG ID of the ICC format, 2 reserved octets), a TLV of type 99, then a Data TLV. It prints
/// whether the reply's PDU is the message's with only the OpCode changed.
const ID_TLV_SENDER: &str = r#"
tlv = lambda kind, value: bytes([kind]) + struct.pack("!H", len(value)) + value
meg_id = bytes([1, 32, 13]) + b"ABCDEF1234567" + bytes(48 - 16)
tlvs = tlv(35, b"\x00" + struct.pack("!H", 12) + meg_id + b"\x00\x00") + tlv(99, b"xyz") + tlv(3, b"data")
pdu = bytes([5 << 5, 3, 0, 4]) + struct.pack("!I", 79) + tlvs + b"\x00"
s.send(target + mac + b"\x89\x02" + pdu)
frame = reply()[0]
echoed = frame[14:14 + len(pdu)]
print("reply opcode=%d same_tlvs=%s len=%d" % (echoed[1], echoed[:1] + echoed[2:] == pdu[:1] + pdu[2:], len(frame)), flush=True)
"#;

/// Identifier TLVs: `eth-lb --sender-id --target-mep 12` puts a Sender ID TLV (Chassis ID
/// subtype 4: the sender's MAC) and a Target MEP/MIP ID TLV (type 33, Length 25) before the
/// Test TLV; tshark decodes the Sender ID's fields and every TLV type in order, with no
/// malformed field, both ways; the responder sends them back unchanged (the run counts no
/// mismatch) and notes them. An LBM built with Python's struct carrying a Requesting MEP ID
/// TLV (type 35) and a TLV of type 99 is answered with every TLV as it came.
#[test]
fn identifier_and_unknown_tlvs_go_out_and_come_back() {
    let Some((a, b)) = two_sides_with("ids", &["tshark", "python3"]) else {
        return;
    };
    let (reflector, mac) = responder_on(&b, "vB", "5", &[]);
    // Messages of level 6 (which nobody answers) mark the capture as running.
    let capture = live_fields(
        &a,
        &["-Y", "cfm"],
        &[
            "eth.src",
            "cfm.md.level",
            "cfm.opcode",
            "cfm.tlv.type",
            "cfm.tlv.length",
            "cfm.tlv.chassis.id.length",
            "cfm.tlv.chassis.id.subtype",
            "cfm.tlv.chassis.id",
            "cfm.tlv.tst.test.pattern.type",
            "_ws.malformed",
            "_ws.expert.severity",
        ],
        &["vA", "--to", &mac, "--level", "6", "-c", "1", "-W", "100ms"],
    );
    let (code, lines) = exchange(
        &a,
        &mac,
        "3",
        &[
            "--level",
            "5",
            "--sender-id",
            "--target-mep",
            "12",
            "--pattern",
            "prbs31-crc",
        ],
    );
    let s = summary(&lines);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["received"], 3);
    assert_eq!(s["sender_id_tlv"], true);
    assert_eq!(s["target_mep_id"], 12);
    assert_eq!(s["sender_id_mismatch"], 0);
    assert_eq!(s["crc_errors"], 0);
    // 14 + 8 + 11 (Sender ID TLV) + 28 (Target MEP/MIP ID TLV) + 8 (Test TLV with CRC-32,
    // around the pattern) + 64 + 1 (End TLV).
    assert_eq!(reply_sizes(&lines), [134, 134, 134]);
    let own = s["source_mac"].as_str().unwrap().to_string();
    let own_hex = own.replace(':', "");
    let (mut messages, mut replies) = (0, 0);
    while messages + replies < 6 {
        let line = capture.line_where("a decoded frame of level 5", |line| {
            line.split('|').nth(1) == Some("5")
        });
        let row: Vec<&str> = line.split('|').collect();
        assert_eq!(row.len(), 11, "{row:?}");
        assert_eq!(
            row[3], "1,33,32,0",
            "Sender ID, Target MEP/MIP ID, Test, End: {row:?}"
        );
        assert_eq!(row[4], "8,25,69", "{row:?}");
        assert_eq!(
            (row[5], row[6]),
            ("6", "4"),
            "a 6-octet Chassis ID of subtype 4 (MAC address): {row:?}"
        );
        assert_eq!(
            row[7].replace(':', ""),
            own_hex,
            "the sender's MAC, both ways: {row:?}"
        );
        assert_eq!(row[8], "3", "{row:?}");
        assert_eq!((row[9], row[10]), ("", ""), "{row:?}");
        if is_message(row[2], &row[0..1], &own, &mac) {
            messages += 1;
        } else {
            replies += 1;
        }
    }
    assert_eq!((messages, replies), (3, 3));
    let sender = python_sender(&a, ID_TLV_SENDER, &mac, CFM_ETHERTYPE);
    let reply = sender.line_where("the reply", |line| line.starts_with("reply "));
    // 14 + 8 + 56 (Requesting MEP ID TLV) + 6 (type 99) + 7 (Data TLV) + 1.
    assert_eq!(reply, "reply opcode=2 same_tlvs=True len=92");
    // tshark read that exchange too, TLV by TLV, with nothing malformed.
    let mut rows = Vec::new();
    while rows.len() < 2 {
        let line = capture.line_where("the Python exchange", |line| {
            line.split('|').nth(3) == Some("35,99,3,0")
        });
        rows.push(line);
    }
    for row in &rows {
        let row: Vec<&str> = row.split('|').collect();
        assert_eq!(row[4], "53,3,4", "{row:?}");
        assert_eq!((row[9], row[10]), ("", ""), "{row:?}");
    }
    let (s, code) = reflector.interrupt();
    assert_eq!(code, 0);
    assert_eq!(s["lbr_sent"], 3 + 1, "{s}");
    assert_eq!(s["lbm_with_sender_id"], 3, "{s}");
    assert_eq!(s["lbm_with_mep_mip_id"], 3 + 1, "{s}");
    assert_eq!(s["lbm_with_unknown_tlv"], 1, "{s}");
}
