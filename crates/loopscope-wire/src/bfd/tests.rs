use proptest::prelude::*;

use super::*;

/// A packet written out field by field from RFC 5880 §4.1's figure, not by `emit`.
#[rustfmt::skip]
const UP_POLL: [u8; 24] = [
    0x20 | 3,           // version 1, diag 3
    (3 << 6) | 0x20,    // Up, Poll
    3, 24,              // Detect Mult, Length
    0, 0, 0, 1,         // My Discriminator
    0xde, 0xad, 0xbe, 0xef, // Your Discriminator
    0, 0, 0xc3, 0x50,   // 50,000 us
    0, 0x01, 0x86, 0xa0, // 100,000 us
    0, 0, 0, 0,
];

fn up_poll_repr() -> ControlRepr {
    ControlRepr {
        diagnostic: Diagnostic::NeighborSignaledSessionDown,
        state: State::Up,
        poll: true,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 1,
        your_discriminator: 0xdead_beef,
        desired_min_tx_us: 50_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
        auth: None,
    }
}

#[test]
fn a_packet_written_by_hand_parses_and_emits_back() {
    let repr = ControlRepr::parse_bytes(&UP_POLL).expect("valid");
    assert_eq!(repr, up_poll_repr());
    let mut out = [0u8; 64];
    let len = repr.emit(&mut out).expect("fits");
    assert_eq!(&out[..len], &UP_POLL);
}

fn with(mut bytes: [u8; 24], edit: impl FnOnce(&mut [u8; 24])) -> [u8; 24] {
    edit(&mut bytes);
    bytes
}

#[test]
fn the_packet_level_rules_of_6_8_6_refuse_in_order() {
    let cases: [([u8; 24], BfdError); 7] = [
        (with(UP_POLL, |b| b[0] = (2 << 5) | 3), BfdError::Version(2)),
        (with(UP_POLL, |b| b[3] = 23), BfdError::Length(23)),
        (
            with(UP_POLL, |b| {
                b[1] |= 0x04;
                b[3] = 24
            }),
            BfdError::Length(24),
        ),
        (with(UP_POLL, |b| b[2] = 0), BfdError::ZeroDetectMult),
        (with(UP_POLL, |b| b[1] |= 0x01), BfdError::Multipoint),
        (
            with(UP_POLL, |b| b[4..8].fill(0)),
            BfdError::ZeroMyDiscriminator,
        ),
        (
            with(UP_POLL, |b| b[8..12].fill(0)),
            BfdError::ZeroYourDiscriminator(State::Up),
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            ControlRepr::parse_bytes(&bytes),
            Err(expected),
            "{bytes:02x?}"
        );
    }
    // Your Discriminator may be zero while Down or AdminDown.
    for state in [State::Down, State::AdminDown] {
        let bytes = with(UP_POLL, |b| {
            b[8..12].fill(0);
            b[1] = (state.code() << 6) | 0x20;
        });
        assert!(ControlRepr::parse_bytes(&bytes).is_ok());
    }
}

#[test]
fn a_length_beyond_the_datagram_or_a_short_datagram_is_refused() {
    assert_eq!(
        ControlRepr::parse_bytes(&UP_POLL[..20]),
        Err(BfdError::Truncated { got: 20, need: 24 })
    );
    let long = with(UP_POLL, |b| b[3] = 48);
    assert_eq!(
        ControlRepr::parse_bytes(&long),
        Err(BfdError::Truncated { got: 24, need: 48 })
    );
}

/// Builds a packet and its digest with Python's struct and hashlib: an implementation that
/// shares nothing with ours.
fn python_packet(auth_type: u8, key_id: u8, sequence: u32, key: &[u8]) -> Option<Vec<u8>> {
    let script = r#"
import hashlib, struct, sys
auth_type, key_id, seq, key = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4])
if auth_type == 1:
    section = struct.pack("!BBB", 1, 3 + len(key), key_id) + key
else:
    field = 16 if auth_type in (2, 3) else 20
    section = struct.pack("!BBBBI", auth_type, 8 + field, key_id, 0, seq) + key.ljust(field, b"\0")
length = 24 + len(section)
header = struct.pack("!BBBBIIIII", (1 << 5) | 0, (1 << 6) | 0x04, 3, length, 0x11223344, 0, 1000000, 1000000, 0)
packet = header + section
if auth_type != 1:
    h = hashlib.md5(packet) if auth_type in (2, 3) else hashlib.sha1(packet)
    packet = packet[:32] + h.digest()
sys.stdout.write(packet.hex())
"#;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &auth_type.to_string(),
            &key_id.to_string(),
            &sequence.to_string(),
            &hex,
        ])
        .output()
        .ok()?;
    assert!(output.status.success(), "python failed: {output:?}");
    let text = String::from_utf8(output.stdout).expect("hex");
    Some(
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
            .collect(),
    )
}

fn down_repr(auth: AuthRepr) -> ControlRepr {
    ControlRepr {
        diagnostic: Diagnostic::None,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 0x1122_3344,
        your_discriminator: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 1_000_000,
        required_min_echo_rx_us: 0,
        auth: Some(auth),
    }
}

#[test]
fn digests_match_python_hashlib_for_every_type() {
    let cases: [(AuthType, &[u8]); 5] = [
        (AuthType::SimplePassword, b"hunter2"),
        (AuthType::KeyedMd5, b"md5-secret"),
        (AuthType::MeticulousKeyedMd5, b"0123456789abcdef"),
        (AuthType::KeyedSha1, b"sha"),
        (AuthType::MeticulousKeyedSha1, b"01234567890123456789"),
    ];
    for (auth_type, key) in cases {
        let Some(expected) = python_packet(auth_type.code(), 7, 0x0102_0304, key) else {
            eprintln!("skipping: python3 is not installed");
            return;
        };
        let auth = if auth_type.is_keyed() {
            AuthRepr::keyed(auth_type, 7, 0x0102_0304)
        } else {
            AuthRepr::password(7, key).expect("password length")
        };
        let repr = down_repr(auth);
        let mut out = [0u8; MAX_CONTROL_LEN];
        let len = repr.emit(&mut out).expect("fits");
        sign(&mut out[..len], key).expect("sign");
        assert_eq!(&out[..len], &expected[..], "{auth_type}");
        let parsed = ControlRepr::parse_bytes(&expected).expect("python's packet parses");
        assert!(
            verify(&expected, &parsed, key),
            "{auth_type}: right key refused"
        );
        assert!(
            !verify(&expected, &parsed, b"wrong"),
            "{auth_type}: wrong key accepted"
        );
        let mut tampered = expected.clone();
        tampered[13] ^= 1; // Desired Min TX changed after signing
        let parsed = ControlRepr::parse_bytes(&tampered).expect("still parses");
        assert_eq!(
            verify(&tampered, &parsed, key),
            !auth_type.is_keyed(),
            "{auth_type}: a digest must cover the header"
        );
    }
}

#[test]
fn auth_sections_of_the_wrong_length_or_type_are_refused() {
    let auth = AuthRepr::keyed(AuthType::KeyedMd5, 1, 5);
    let mut out = [0u8; MAX_CONTROL_LEN];
    let len = down_repr(auth).emit(&mut out).expect("fits");
    assert_eq!(len, 48);
    let mut wrong_len = out;
    wrong_len[HEADER_LEN + 1] = 28;
    assert_eq!(
        ControlRepr::parse_bytes(&wrong_len[..len]),
        Err(BfdError::AuthLength(28))
    );
    let mut wrong_type = out;
    wrong_type[HEADER_LEN] = 9;
    assert_eq!(
        ControlRepr::parse_bytes(&wrong_type[..len]),
        Err(BfdError::AuthType(9))
    );
    assert!(AuthRepr::password(1, &[b'x'; 17]).is_err());
    assert!(AuthRepr::password(1, b"").is_err());
}

/// Found by the fuzz target: a keyed section's Reserved octet is ignored on receipt and sent
/// as zero (RFC 5880 §4.3), so a packet with it set parses and is re-emitted with it clear.
#[test]
fn a_nonzero_reserved_octet_is_ignored_and_sent_as_zero() {
    let crash: [u8; 52] = [
        32, 68, 3, 52, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 195, 80, 0, 0, 195, 80, 0, 0, 0, 0, 4, 28, 0,
        1, 0, 0, 0, 0, 231, 60, 69, 240, 227, 91, 225, 146, 194, 191, 255, 225, 197, 196, 179, 176,
        106, 98, 9, 170,
    ];
    let repr = ControlRepr::parse_bytes(&crash).expect("Reserved is ignored on receipt");
    let mut out = [0u8; MAX_CONTROL_LEN];
    let len = repr.emit(&mut out).expect("fits");
    assert_eq!(out[HEADER_LEN + 3], 0);
    let mut expected = crash;
    expected[HEADER_LEN + 3] = 0;
    assert_eq!(&out[..len], &expected[..]);
}

#[test]
fn echo_packets_round_trip_and_refuse_foreign_bytes() {
    let echo = EchoRepr {
        discriminator: 9,
        sequence: u64::MAX - 1,
        sent_ns: 123_456_789,
    };
    let mut out = [0u8; ECHO_LEN];
    echo.emit(&mut out);
    assert_eq!(&out[..4], b"LSBE");
    assert_eq!(EchoRepr::parse(&out), Ok(echo));
    assert_eq!(
        EchoRepr::parse(&out[..10]),
        Err(EchoPacketError::Truncated(10))
    );
    out[0] = b'X';
    assert_eq!(EchoRepr::parse(&out), Err(EchoPacketError::NotOurs));
}

fn any_auth() -> impl Strategy<Value = Option<AuthRepr>> {
    prop_oneof![
        Just(None),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 1..=16))
            .prop_map(|(id, pw)| AuthRepr::password(id, &pw).ok()),
        (1u8..=4, any::<u8>(), any::<u32>()).prop_map(|(t, id, seq)| {
            let auth_type = AuthType::from_code(t + 1).expect("2..=5");
            Some(AuthRepr::keyed(auth_type, id, seq))
        }),
    ]
}

fn any_valid_repr() -> impl Strategy<Value = ControlRepr> {
    (
        (0u8..32, 0u8..4, any::<[bool; 4]>(), 1u8..=255),
        (1u32.., 1u32.., any::<u32>(), any::<u32>(), any::<u32>()),
        any_auth(),
    )
        .prop_map(
            |((diag, state, flags, mult), (mine, yours, tx, rx, echo), auth)| ControlRepr {
                diagnostic: Diagnostic::from_code(diag),
                state: State::from_code(state),
                poll: flags[0],
                final_: flags[1],
                control_plane_independent: flags[2],
                demand: flags[3],
                detect_mult: mult,
                my_discriminator: mine,
                your_discriminator: yours,
                desired_min_tx_us: tx,
                required_min_rx_us: rx,
                required_min_echo_rx_us: echo,
                auth,
            },
        )
}

proptest! {
    #[test]
    fn emit_then_parse_gives_the_repr_back(repr in any_valid_repr()) {
        let mut out = [0u8; MAX_CONTROL_LEN];
        let len = repr.emit(&mut out).expect("fits");
        prop_assert_eq!(ControlRepr::parse_bytes(&out[..len]), Ok(repr));
    }

    #[test]
    fn what_parse_accepts_emit_reproduces(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(repr) = ControlRepr::parse_bytes(&bytes) {
            let mut out = [0u8; MAX_CONTROL_LEN];
            let len = repr.emit(&mut out).expect("fits");
            let mut expected = bytes[..len].to_vec();
            if repr.auth.is_some_and(|auth| auth.auth_type.is_keyed()) {
                expected[HEADER_LEN + 3] = 0; // Reserved: ignored on receipt, sent as zero
            }
            prop_assert_eq!(&out[..len], &expected[..]);
        }
    }

    #[test]
    fn a_signed_packet_verifies_and_any_flipped_bit_does_not(
        repr in any_valid_repr(),
        key in proptest::collection::vec(any::<u8>(), 1..=16),
        flip in 0usize..(MAX_CONTROL_LEN * 8),
    ) {
        let Some(auth) = repr.auth else { return Ok(()) };
        if !auth.auth_type.is_keyed() { return Ok(()) }
        let mut out = [0u8; MAX_CONTROL_LEN];
        let len = repr.emit(&mut out).expect("fits");
        sign(&mut out[..len], &key).expect("sign");
        let parsed = ControlRepr::parse_bytes(&out[..len]).expect("parses");
        prop_assert!(verify(&out[..len], &parsed, &key));
        let bit = flip % (len * 8);
        out[bit / 8] ^= 1 << (bit % 8);
        if let Ok(parsed) = ControlRepr::parse_bytes(&out[..len]) {
            prop_assert!(!verify(&out[..len], &parsed, &key));
        }
    }
}
