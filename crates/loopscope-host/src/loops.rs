//! Round trips through an in-process reflector: TCP and UDP echo on a loopback address, a short
//! BERT and a latency figure through a TCP loop. Every wait is bounded so that a firewall that
//! drops packets costs a timeout, never a hang.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use loopscope_pattern::checker::Expect;
use loopscope_pattern::{
    CheckCounters, Checker, CheckerConfig, Generator, PatternKind, PatternSpec,
};
use loopscope_report::rtt::RttRecorder;

/// A completed round trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundTrip {
    pub bytes: usize,
    pub rtt: Duration,
}

/// Accepts one connection within `accept_for` and echoes it until the peer closes. The
/// listener closes as soon as the connection is accepted, so later checks that look at
/// listening sockets do not see ours.
fn spawn_tcp_reflector(
    listener: TcpListener,
    accept_for: Duration,
) -> io::Result<thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    Ok(thread::spawn(move || {
        let deadline = Instant::now() + accept_for;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    drop(listener);
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = echo_until_closed(stream);
                    return;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
    }))
}

fn echo_until_closed(mut stream: TcpStream) -> io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let size = stream.read(&mut buffer)?;
        if size == 0 {
            return stream.shutdown(Shutdown::Write);
        }
        stream.write_all(&buffer[..size])?;
    }
}

/// A client connection to a fresh reflector; `finish` closes it and waits for the reflector.
struct Loop {
    stream: TcpStream,
    reflector: thread::JoinHandle<()>,
}

impl Loop {
    fn finish(self) {
        drop(self.stream);
        let _ = self.reflector.join();
    }
}

fn connect(address: IpAddr, timeout: Duration) -> io::Result<Loop> {
    let listener = TcpListener::bind((address, 0))?;
    let local = listener.local_addr()?;
    let handle = listener.try_clone()?;
    let reflector = spawn_tcp_reflector(listener, timeout + Duration::from_secs(1))?;
    let stream = TcpStream::connect_timeout(&local, timeout).inspect_err(|_| {
        // Stop listening now, not when the reflector gives up: a listener left behind would
        // show in /proc/net/tcp as a server of this host's (shutdown on a listening socket
        // closes it, and the reflector's accept then fails and it returns).
        let _ = socket2::SockRef::from(&handle).shutdown(Shutdown::Both);
    })?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(Loop { stream, reflector })
}

/// Connects to a reflector on `address`, sends 1 KiB, checks it comes back unchanged.
pub fn tcp_round_trip(address: IpAddr, timeout: Duration) -> io::Result<RoundTrip> {
    let mut connection = connect(address, timeout)?;
    let message: Vec<u8> = (0..1024u32).map(|index| (index * 7 + 3) as u8).collect();
    let start = Instant::now();
    connection.stream.write_all(&message)?;
    let mut back = vec![0u8; message.len()];
    connection.stream.read_exact(&mut back)?;
    let rtt = start.elapsed();
    connection.finish();
    if back != message {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the echo came back altered",
        ));
    }
    Ok(RoundTrip {
        bytes: message.len(),
        rtt,
    })
}

/// Sends datagrams to a reflector on `address` until one comes back (at most 3 tries, each
/// waiting a third of `timeout`).
pub fn udp_round_trip(address: IpAddr, timeout: Duration) -> io::Result<RoundTrip> {
    let server = UdpSocket::bind((address, 0))?;
    let server_address = server.local_addr()?;
    server.set_read_timeout(Some(timeout * 3 + Duration::from_millis(200)))?;
    thread::spawn(move || {
        let mut buffer = [0u8; 2048];
        for _ in 0..3 {
            match server.recv_from(&mut buffer) {
                Ok((size, from)) => {
                    let _ = server.send_to(&buffer[..size], from);
                }
                Err(_) => return,
            }
        }
    });
    let client = UdpSocket::bind((address, 0))?;
    client.connect(server_address)?;
    let per_try = (timeout / 3).max(Duration::from_millis(50));
    client.set_read_timeout(Some(per_try))?;
    let message: Vec<u8> = (0..512u32).map(|index| (index * 13 + 1) as u8).collect();
    let mut last_error = io::Error::new(io::ErrorKind::TimedOut, "no datagram came back");
    for _ in 0..3 {
        let start = Instant::now();
        if let Err(error) = client.send(&message) {
            last_error = error;
            continue;
        }
        let mut back = [0u8; 2048];
        match client.recv(&mut back) {
            Ok(size) if back[..size] == message[..] => {
                return Ok(RoundTrip {
                    bytes: size,
                    rtt: start.elapsed(),
                });
            }
            Ok(_) => {
                last_error =
                    io::Error::new(io::ErrorKind::InvalidData, "the echo came back altered")
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                last_error = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no datagram came back within {} ms", per_try.as_millis()),
                );
            }
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// What a BERT through the TCP loop measured.
#[derive(Debug, Clone)]
pub struct LoopBert {
    pub pattern: String,
    pub bytes: u64,
    pub counters: CheckCounters,
    pub elapsed: Duration,
}

/// Sends `bytes` of PRBS31 through a TCP reflector on `address` and checks what comes back.
pub fn tcp_bert(address: IpAddr, bytes: u64, timeout: Duration) -> io::Result<LoopBert> {
    let connection = connect(address, timeout)?;
    let mut writer = connection.stream.try_clone()?;
    let mut reader = connection.stream.try_clone()?;
    let spec = PatternSpec::standard(PatternKind::Prbs31);
    let mut generator = Generator::new(&spec);
    let start = Instant::now();
    let sender = thread::spawn(move || -> io::Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let size = left.min(chunk.len() as u64) as usize;
            generator.fill(&mut chunk[..size]);
            writer.write_all(&chunk[..size])?;
            left -= size as u64;
        }
        writer.shutdown(Shutdown::Write)
    });
    let mut checker = Checker::new(CheckerConfig {
        expect: Expect::Pattern(spec.clone()),
    });
    let mut buffer = vec![0u8; 64 * 1024];
    let mut received: u64 = 0;
    loop {
        let size = reader.read(&mut buffer)?;
        if size == 0 {
            break;
        }
        checker.feed(&buffer[..size]);
        received += size as u64;
    }
    checker.finish();
    let elapsed = start.elapsed();
    drop(reader);
    connection.finish();
    sender
        .join()
        .map_err(|_| io::Error::other("the BERT sender thread failed"))??;
    Ok(LoopBert {
        pattern: spec.describe(),
        bytes: received,
        counters: checker.counters().clone(),
        elapsed,
    })
}

/// `count` ping-pongs of `size` bytes through a TCP reflector on `address`.
pub fn tcp_latency(
    address: IpAddr,
    count: u32,
    size: usize,
    timeout: Duration,
) -> io::Result<RttRecorder> {
    let mut connection = connect(address, timeout)?;
    let message = vec![0x5au8; size.max(1)];
    let mut back = vec![0u8; message.len()];
    let mut recorder = RttRecorder::new();
    for _ in 0..count {
        recorder.sent();
        let start = Instant::now();
        connection.stream.write_all(&message)?;
        connection.stream.read_exact(&mut back)?;
        recorder.reply(start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64);
    }
    connection.finish();
    Ok(recorder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn tcp_and_udp_round_trips_on_127_0_0_1() {
        let timeout = Duration::from_secs(2);
        let tcp = tcp_round_trip(Ipv4Addr::LOCALHOST.into(), timeout).unwrap();
        assert_eq!(tcp.bytes, 1024);
        let udp = udp_round_trip(Ipv4Addr::LOCALHOST.into(), timeout).unwrap();
        assert_eq!(udp.bytes, 512);
    }
}
