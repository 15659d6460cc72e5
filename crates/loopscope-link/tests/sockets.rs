//! IP and Unix links against peers written in the test with std sockets (independent of the
//! reflector): what the peer sees (source address, bytes) is checked from the peer's side.

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use loopscope_link::link::{Cancel, error_chain, is_timeout};
use loopscope_link::open;
use loopscope_link::transport::datagram::{HEADER, parse_header};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

mod support;
use support::{round_trip, stats_json, tcp_echo_once};

fn exchange(endpoint: &str, data: &[u8]) -> (Vec<u8>, serde_json::Value) {
    let (mut tx, mut rx) = open(endpoint).unwrap().split().unwrap();
    let got = round_trip(tx.as_mut(), rx.as_mut(), data);
    (got, stats_json(rx.as_ref()))
}

#[test]
fn tcp_binds_the_requested_source_alias_over_ipv4_and_ipv6() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tcp_echo_once(listener);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (got, _) = exchange(&format!("tcp://127.0.0.1:{port}?bind=127.0.0.2"), &data);
    assert_eq!(got, data);
    assert_eq!(server.join().unwrap().ip().to_string(), "127.0.0.2");

    let listener = TcpListener::bind("[::1]:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tcp_echo_once(listener);
    let (got, stats) = exchange(&format!("tcp://[::1]:{port}?bind=::1"), b"over ipv6");
    assert_eq!(got, b"over ipv6");
    assert_eq!(server.join().unwrap().ip().to_string(), "::1");
    assert_eq!(stats["transport"], "tcp");
}

#[test]
fn udp_sends_numbered_datagrams_from_the_bound_source() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = peer.local_addr().unwrap().port();
    let (mut tx, mut rx) = open(&format!("udp://127.0.0.1:{port}?bind=127.0.0.4&size=100"))
        .unwrap()
        .split()
        .unwrap();
    tx.send(&[7u8; 250], &Cancel::never()).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 2048];
    let mut lengths = Vec::new();
    for expected_seq in 0..3u64 {
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(from.ip().to_string(), "127.0.0.4");
        assert_eq!(parse_header(&buf[..n]), Some(expected_seq));
        lengths.push(n - HEADER);
        // Echo back by hand, the second one twice (a duplicate).
        peer.send_to(&buf[..n], from).unwrap();
        if expected_seq == 1 {
            peer.send_to(&buf[..n], from).unwrap();
        }
    }
    assert_eq!(lengths, [100, 100, 50]);
    rx.set_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut total = 0;
    loop {
        match rx.recv(&mut buf) {
            Ok(n) => total += n,
            Err(e) if is_timeout(&e) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(total, 250);
    let stats = stats_json(rx.as_ref());
    assert_eq!(stats["datagrams_sent"], 3);
    assert_eq!(stats["datagrams_received"], 3);
    assert_eq!(stats["datagrams_duplicated"], 1);
    assert_eq!(stats["datagrams_lost"], 0);
}

#[test]
fn iface_binds_to_the_loopback_device_or_says_why_not() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let missing = open(&format!("tcp://127.0.0.1:{port}?iface=nosuchif0"))
        .unwrap()
        .split()
        .err()
        .expect("no such interface");
    let missing = error_chain(&missing);
    assert!(missing.contains("nosuchif0"), "{missing}");
    if !is_root() {
        eprintln!("skipped iface=lo: SO_BINDTODEVICE may need CAP_NET_RAW");
        return;
    }
    let server = tcp_echo_once(listener);
    let (got, _) = exchange(&format!("tcp://127.0.0.1:{port}?iface=lo"), b"via lo");
    assert_eq!(got, b"via lo");
    server.join().unwrap();
}

#[test]
fn unix_stream_to_a_plain_listener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        support::echo_stream(stream, None, std::sync::mpsc::channel().0);
    });
    let (got, stats) = exchange(&format!("unix:{}", path.display()), b"unix bytes");
    assert_eq!(got, b"unix bytes");
    assert_eq!(stats["transport"], "unix");
    server.join().unwrap();
}

#[test]
fn malformed_ip_targets_are_refused() {
    for (endpoint, needle) in [
        ("tcp://127.0.0.1", "HOST:PORT"),
        ("tcp://::1:7", "HOST:PORT"),
        ("udp://:7", "missing host"),
        ("udp://127.0.0.1:7?size=0", "size"),
        ("tcp://127.0.0.1:7?bind=::1", ""),
        ("unix:", "PATH"),
    ] {
        let result = open(endpoint).and_then(|l| l.split().map(|_| ()));
        let message = error_chain(
            &result
                .err()
                .unwrap_or_else(|| panic!("{endpoint} accepted")),
        );
        assert!(message.contains(needle), "{endpoint}: {message}");
    }
}

/// A peer that accepts and never reads (issue 12: `bert` hung in sendto): once the socket
/// buffers are full the sender waits, and gives up at its deadline, saying how much went in.
#[test]
fn a_tcp_peer_that_never_reads_does_not_hold_the_sender_past_its_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let sleeper = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        // Hold the connection open, reading nothing, until the test is done with it.
        let _ = wait.recv();
        drop(stream);
    });
    let (mut tx, _rx) = open(&format!("tcp://127.0.0.1:{port}"))
        .unwrap()
        .split()
        .unwrap();
    let started = std::time::Instant::now();
    let cancel = Cancel::never().until(started + Duration::from_millis(300));
    let data = vec![0x5au8; 256 << 20];
    let error = tx.send(&data, &cancel).unwrap_err();
    assert!(error.is_cancelled(), "{error}");
    assert!(
        error.accepted > 0 && error.accepted < data.len(),
        "{}",
        error.accepted
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    drop(done);
    sleeper.join().unwrap();
}

/// The same over a Unix datagram socket whose peer's queue is full.
#[test]
fn a_unixgram_peer_that_never_reads_does_not_hold_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sink.sock");
    let _sink = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let (mut tx, _rx) = open(&format!("unixgram:{}?window=0", path.display()))
        .unwrap()
        .split()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cancel = Cancel::on(std::sync::Arc::clone(&stop));
    let stopper = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let error = tx.send(&vec![1u8; 64 << 20], &cancel).unwrap_err();
    stopper.join().unwrap();
    assert!(error.is_cancelled(), "{error}");
    // Whole datagrams only: the default payload is 1400 bytes.
    assert_eq!(error.accepted % 1400, 0, "{}", error.accepted);
    assert!(error.accepted > 0);
}
