//! The stream reflector gives back every descriptor its clients cost once they have gone
//! (issue 12 item 3: no descriptor leak). A test binary of its own, with one test: it counts
//! the descriptors of the whole process, which tests running beside it would change.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use loopscope_link::endpoint::Endpoint;
use loopscope_link::reflector::{ReflectConfig, ReflectEvent, Reflector};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Connects, sends `payload`, reads it back whole, closes.
fn echo(address: SocketAddr, payload: &[u8]) {
    let mut client = TcpStream::connect(address).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    client.write_all(payload).unwrap();
    let mut back = vec![0u8; payload.len()];
    client.read_exact(&mut back).unwrap();
    assert_eq!(back, payload);
}

/// 100 clients held open at once and echoed, then 100 that connect and reset: once the
/// reflector has said each of them closed, the process has exactly the descriptors it had
/// before they came. The reflector's own (listener, loops, spare) are there from the first
/// client on, so "before" is taken after one client has come and gone.
#[test]
fn every_descriptor_comes_back_when_the_clients_have_gone() {
    let endpoint = Endpoint::parse("tcp://127.0.0.1:0").unwrap();
    let reflector = Reflector::bind(&endpoint, false, ReflectConfig::default()).unwrap();
    let address: SocketAddr = reflector.endpoints()[0]
        .trim_start_matches("tcp://")
        .parse()
        .unwrap();
    let (closed_tx, closed) = mpsc::channel();
    let closed_tx = Mutex::new(closed_tx);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let reflecting = std::thread::spawn(move || {
        reflector.run(
            flag,
            Arc::new(move |event| {
                if let ReflectEvent::Closed { .. } = event {
                    let _ = closed_tx.lock().unwrap().send(());
                }
            }),
        )
    });
    let wait_closed = |count: usize| {
        for _ in 0..count {
            closed
                .recv_timeout(Duration::from_secs(60))
                .expect("a client's connection was never closed");
        }
    };
    echo(address, b"first");
    wait_closed(1);
    let before = open_descriptors();

    let held: Vec<TcpStream> = (0..100u32)
        .map(|client| {
            let mut stream = TcpStream::connect(address).unwrap();
            stream.write_all(&client.to_be_bytes()).unwrap();
            stream
        })
        .collect();
    for (client, mut stream) in (0..100u32).zip(held) {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(back, client.to_be_bytes());
    }
    for _ in 0..100 {
        let stream = TcpStream::connect(address).unwrap();
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    wait_closed(200);
    let after = open_descriptors();

    stop.store(true, Ordering::SeqCst);
    let summary = reflecting.join().unwrap();
    assert_eq!(
        after, before,
        "descriptors before the clients came and after they went"
    );
    assert_eq!(summary.connections, 201);
    assert_eq!(summary.connections_refused, 0);
}
