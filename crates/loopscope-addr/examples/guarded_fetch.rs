//! An HTTP request through the SSRF guard.
//!
//! Starts a tiny HTTP server on 127.0.0.1 (an "internal service"), then fetches it twice:
//! with the default policy (denied: loopback is not globally reachable) and with a policy that
//! names 127.0.0.0/8 (allowed). The request goes to the socket address the guard vetted, never
//! to a second lookup, so a DNS answer cannot change between check and connect.
//!
//! ```text
//! cargo run -p loopscope-addr --example guarded_fetch
//! cargo run -p loopscope-addr --example guarded_fetch -- 'http://0177.0.0.1/'   # vet more URLs
//! ```

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use loopscope_addr::Policy;
use loopscope_addr::guard::{Guard, GuardError, SystemResolver, Vetted};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\ninternal secret\n");
        }
    });
    let url = format!("http://127.0.0.1:{port}/admin");

    println!("internal service listening on 127.0.0.1:{port}");
    let default_guard = Guard::new(Policy::default(), SystemResolver);
    match default_guard.vet(&url, None) {
        Ok(vetted) => println!("default policy: allowed {:?} (unexpected)", vetted.addrs),
        Err(GuardError::Denied {
            address, reason, ..
        }) => {
            println!("default policy: GET {url} denied: {address} {reason}")
        }
        Err(other) => println!("default policy: GET {url} refused: {other}"),
    }

    let local_guard = Guard::new(
        Policy {
            allow: vec!["127.0.0.0/8".parse()?],
            ..Policy::default()
        },
        SystemResolver,
    );
    let vetted = local_guard.vet(&url, None)?;
    println!(
        "policy allowing 127.0.0.0/8: connecting to {:?}",
        vetted.addrs
    );
    let body = get(&vetted, "/admin")?;
    println!("response: {}", body.trim_end());

    for extra in std::env::args().skip(1) {
        match default_guard.vet(&extra, None) {
            Ok(vetted) => println!("{extra}: allowed, would connect to {:?}", vetted.addrs),
            Err(error) => println!("{extra}: {error}"),
        }
    }
    Ok(())
}

/// A minimal HTTP/1.0 GET over the vetted connection.
fn get(vetted: &Vetted, path: &str) -> std::io::Result<String> {
    let mut stream = vetted.connect(Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
        vetted.host_header()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.clone(), |(_, body)| body.to_string()))
}
