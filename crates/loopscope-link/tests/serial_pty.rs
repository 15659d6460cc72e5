//! Serial links over real pseudo-terminals. Settings are read back from the device with TCGETS2
//! (rustix's tcgetattr, raw flag words) through a descriptor of the test's own, not through the
//! link.

use std::time::Duration;

use loopscope_link::{LinkReceiver, LinkSender, open};

mod support;
use support::{new_pty, stats_json, termios_of};

type Halves = (Box<dyn LinkSender>, Box<dyn LinkReceiver>);

fn split(endpoint: &str) -> Result<Halves, loopscope_link::LinkError> {
    open(endpoint)?.split()
}

fn device(rx: &dyn LinkReceiver) -> String {
    stats_json(rx)["device"]
        .as_str()
        .expect("device in stats")
        .to_string()
}

use support::round_trip;

#[test]
fn requested_line_settings_are_what_the_device_holds() {
    let (mut tx, mut rx) = split("pty:?baud=250000&data=8&parity=none&stop=2&flow=rtscts").unwrap();
    let t = termios_of(&device(rx.as_ref()));
    assert_eq!(t.control_modes.bits() & libc::CSIZE, libc::CS8);
    assert_eq!(t.control_modes.bits() & libc::PARENB, 0);
    assert_ne!(t.control_modes.bits() & libc::CSTOPB, 0);
    assert_ne!(t.control_modes.bits() & libc::CRTSCTS, 0);
    assert_eq!(t.control_modes.bits() & libc::CBAUD, libc::BOTHER);
    assert_eq!(t.output_speed(), 250_000);
    // Raw mode: no echo, no canonical input, no output processing.
    assert_eq!(
        t.local_modes.bits() & (libc::ECHO | libc::ICANON | libc::ISIG),
        0
    );
    assert_eq!(t.output_modes.bits() & libc::OPOST, 0);
    // And the built-in plug gives back what was sent.
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    assert_eq!(round_trip(tx.as_mut(), rx.as_mut(), &data), data);
}

#[test]
fn software_flow_control_with_one_stop_bit() {
    let (_tx, rx) = split("pty:?baud=9600&stop=1&flow=xonxoff").unwrap();
    let t = termios_of(&device(rx.as_ref()));
    assert_eq!(t.control_modes.bits() & libc::CSIZE, libc::CS8);
    assert_eq!(t.control_modes.bits() & libc::CSTOPB, 0);
    assert_eq!(t.control_modes.bits() & libc::CRTSCTS, 0);
    assert_eq!(
        t.input_modes.bits() & (libc::IXON | libc::IXOFF),
        libc::IXON | libc::IXOFF
    );
    assert_eq!(t.output_speed(), 9600);
}

/// Linux's pty driver forces CS8 and clears PARENB on every TCSETS: a `pty:` with fewer data
/// bits or a parity bit holds 8N on the device, and its plug carries the narrower character as
/// the wire would: the bits above the data bits are lost (a byte comes back with them clear),
/// and each character takes its parity bit's line time. A 7-bit line also sets ISTRIP on the
/// device, so the kernel's own input processing takes 7 bits of each byte.
#[test]
fn narrow_characters_are_carried_as_the_wire_would_carry_them() {
    for (options, mask, settings) in [
        ("data=7&parity=even&pace=0", 0x7fu8, "115200 7E1"),
        ("data=6&pace=0", 0x3f, "115200 6N1"),
        ("data=5&stop=2&pace=0", 0x1f, "115200 5N2"),
    ] {
        let (mut tx, mut rx) = split(&format!("pty:?{options}")).unwrap();
        let t = termios_of(&device(rx.as_ref()));
        let cflag = t.control_modes.bits();
        assert_eq!(cflag & libc::CSIZE, libc::CS8, "{options}: the driver's");
        assert_eq!(cflag & libc::PARENB, 0, "{options}");
        assert_eq!(t.output_speed(), 115_200, "{options}");
        if mask == 0x7f {
            assert_ne!(t.input_modes.bits() & libc::ISTRIP, 0, "{options}: ISTRIP");
        }
        assert_eq!(stats_json(rx.as_ref())["line_settings"], settings);
        let sent: Vec<u8> = (0..=255u8).collect();
        let back = round_trip(tx.as_mut(), rx.as_mut(), &sent);
        let expected: Vec<u8> = sent.iter().map(|b| b & mask).collect();
        assert_eq!(back, expected, "{options}");
    }
}

/// The plug paces at the configured rate, as a wire: 960 characters of 10 bits at 9600 baud
/// take at least one second, however fast the machine (a lower bound only: a busy machine
/// may be slower, never faster). `pace=0` does not pace.
#[test]
fn the_plug_paces_characters_at_the_baud_rate() {
    let (mut tx, mut rx) = split("pty:?baud=9600").unwrap();
    let data: Vec<u8> = (0..960u32).map(|i| i as u8).collect();
    let started = std::time::Instant::now();
    assert_eq!(round_trip(tx.as_mut(), rx.as_mut(), &data), data);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?} for 9600 bits at 9600 baud",
        started.elapsed()
    );
    let stats = stats_json(rx.as_ref());
    assert_eq!(stats["paced"], true);
    assert!(stats["baud_measured"].as_f64().unwrap() > 0.0, "{stats}");
    let (_tx, rx) = split("pty:?baud=9600&pace=0").unwrap();
    assert_eq!(stats_json(rx.as_ref())["paced"], false);
}

#[test]
fn custom_baud_rates_are_set_exactly() {
    for baud in [1_234_567u32, 31_250, 74_880] {
        let (_tx, rx) = split(&format!("pty:?baud={baud}")).unwrap();
        let t = termios_of(&device(rx.as_ref()));
        assert_eq!(t.output_speed(), baud);
        assert_eq!(t.input_speed(), baud);
    }
}

/// On a `serial:` device the parity is the driver's to keep: a pty's driver drops mark and
/// space parity (CMSPAR), and the link says so rather than run with another setting. (On
/// `pty:` the plug emulates parity instead.)
#[test]
fn mark_and_space_parity_are_set_or_refused_clearly() {
    let pair = plug_pair();
    for (parity, odd) in [("mark", true), ("space", false)] {
        match split(&format!("{}?parity={parity}&exclusive=0", pair.endpoint)) {
            Ok((_tx, rx)) => {
                let t = termios_of(&device(rx.as_ref()));
                assert_ne!(t.control_modes.bits() & libc::CMSPAR, 0, "{parity}");
                assert_ne!(t.control_modes.bits() & libc::PARENB, 0, "{parity}");
                assert_eq!(t.control_modes.bits() & libc::PARODD != 0, odd, "{parity}");
            }
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains(&format!("{parity} parity asked")) || text.contains("CMSPAR"),
                    "{text}"
                );
            }
        }
    }
}

/// A pseudo-terminal made by the test (not by loopscope) with an echo thread on its master:
/// `serial:/dev/pts/N` is then a serial port with a loopback plug.
fn plug_pair() -> support::Peer {
    support::serial_peer(None)
}

#[test]
fn a_serial_port_with_a_loopback_plug_round_trips_and_is_opened_exclusively() {
    let pair = plug_pair();
    let endpoint = format!("{}?baud=57600", pair.endpoint);
    let (mut tx, mut rx) = split(&endpoint).unwrap();
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(round_trip(tx.as_mut(), rx.as_mut(), &data), data);
    let stats = stats_json(rx.as_ref());
    assert_eq!(stats["line_settings"], "57600 8N1");
    assert_eq!(stats["baud_configured"], 57600);
    // Exclusive open: a second opener is turned away while the first holds the port.
    let second = split(&endpoint)
        .err()
        .expect("second open must fail")
        .to_string();
    assert!(second.contains("cannot open"), "{second}");
    drop((tx, rx));
    // Shared open on request.
    let shared = format!("{}?exclusive=0", pair.endpoint);
    let (_a_tx, _a_rx) = split(&shared).unwrap();
    let (_b_tx, _b_rx) = split(&shared).unwrap();
}

#[test]
fn hardware_only_features_fail_clearly_on_a_pty() {
    let pair = plug_pair();
    let internal = split(&format!("{}?internal=1", pair.endpoint))
        .err()
        .expect("ptys have no UART loopback")
        .to_string();
    assert!(
        internal.contains("internal loopback (TIOCM_LOOP)"),
        "{internal}"
    );
    let rs485 = split(&format!("{}?rs485=1", pair.endpoint))
        .err()
        .expect("ptys have no RS-485")
        .to_string();
    assert!(rs485.contains("TIOCSRS485"), "{rs485}");
    // The control-line test reports what it could not do rather than failing the link.
    let (_tx, rx) = split(&format!("{}?lines=1", pair.endpoint)).unwrap();
    let lines = stats_json(rx.as_ref())["control_lines"].clone();
    for key in ["rts_cts", "dtr_dsr", "dtr_dcd"] {
        assert!(lines[key].is_string(), "{lines}");
    }
    // And pty: does not accept them at all.
    let refused = split("pty:?internal=1")
        .err()
        .expect("unknown option")
        .to_string();
    assert!(refused.contains("unknown option 'internal'"), "{refused}");
}

#[test]
fn a_pty_closed_under_a_serial_link_is_an_error_not_a_hang() {
    // A pair with no echo thread: the test holds the only master descriptor.
    let (master, path) = new_pty();
    let (_tx, mut rx) = split(&format!("serial:{path}")).unwrap();
    rx.set_timeout(Some(Duration::from_secs(5))).unwrap();
    drop(master);
    let started = std::time::Instant::now();
    // A hung-up terminal reads as end of stream (or EIO on some kernels): either ends the run.
    match rx.recv(&mut [0u8; 16]) {
        Ok(n) => assert_eq!(n, 0),
        Err(err) => {
            assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
            assert!(err.to_string().contains("went away"), "{err}");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "it waited for the timeout"
    );
}
