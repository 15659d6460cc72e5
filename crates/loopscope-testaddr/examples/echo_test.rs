//! How a test suite uses loopscope-testaddr: each test claims an address of its own and gets
//! bound sockets from it, so tests can run in parallel (threads or nextest processes) without
//! ever racing for a port.
//!
//! Run: `cargo run -p loopscope-testaddr --example echo_test`

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;

use loopscope_testaddr::TestAddr;

/// The code under test: a line echo server on a listener it is given (not one it binds itself;
/// taking a bound listener is what makes a server easy to test without port races).
fn serve_one_client(listener: TcpListener) -> std::io::Result<()> {
    let (stream, _) = listener.accept()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    writer.write_all(line.as_bytes())
}

/// What one test does.
fn one_test(name: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = TestAddr::new()?;
    let listener = addr.tcp_listener()?;
    let server = listener.local_addr()?;
    let handle = thread::spawn(move || serve_one_client(listener));

    let mut client = addr.tcp_connect(server)?;
    writeln!(client, "hello from {name}")?;
    let mut reply = String::new();
    BufReader::new(client).read_line(&mut reply)?;
    assert_eq!(reply, format!("hello from {name}\n"));
    handle.join().map_err(|_| "server thread panicked")??;

    // A UDP socket on the same address and the same port number as the listener: safe because
    // the address is this test's alone (in the 127.0.0.1 fallback it could collide).
    if addr.is_exclusive() {
        let udp = addr.udp_socket_on(server.port())?;
        println!("{name}: {} (tcp and udp on {})", addr, udp.local_addr()?);
    } else {
        println!("{name}: shared {} (port {})", addr, server.port());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Eight "tests" at once, as a parallel test runner would run them.
    let tests: Vec<_> = (0..8)
        .map(|i| thread::spawn(move || one_test(&format!("test{i}"))))
        .collect();
    for test in tests {
        test.join().map_err(|_| "test thread panicked")??;
    }
    Ok(())
}
