//! What the link tests share: driving a link's two halves, and far ends written with std
//! sockets and pseudo-terminals (independent of loopscope's reflector), each able to vanish
//! part way through.
// Each test file includes this module and uses only part of it; `pub` here means shared between
// the test crate's modules (a test crate has no public API for unreachable_pub to guard).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use loopscope_link::link::{Cancel, is_timeout};
use loopscope_link::{LinkReceiver, LinkSender, SendError};
use rustix::pty::OpenptFlags;

/// How a receive loop ended.
#[derive(Debug)]
pub enum Ending {
    /// As many bytes as were asked for arrived.
    Full,
    /// The link said end of stream (`Ok(0)`).
    EndOfStream,
    /// Nothing arrived within the receive timeout.
    TimedOut,
    /// The receive failed.
    Failed(std::io::Error),
}

/// Receives until `want` bytes arrived, the link ends, or one receive waits past `timeout`.
pub fn receive(rx: &mut dyn LinkReceiver, want: usize, timeout: Duration) -> (Vec<u8>, Ending) {
    rx.set_timeout(Some(timeout))
        .expect("set the receive timeout");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while got.len() < want {
        let room = (want - got.len()).min(buf.len());
        match rx.recv(&mut buf[..room]) {
            Ok(0) => return (got, Ending::EndOfStream),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) => return (got, Ending::TimedOut),
            Err(e) => return (got, Ending::Failed(e)),
        }
    }
    (got, Ending::Full)
}

/// Sends `data` in pieces of `piece` bytes from a thread of its own (so a link that holds less
/// than `data` cannot deadlock against a receiver that has not started), then finishes.
pub fn send_then_finish(
    mut tx: Box<dyn LinkSender>,
    data: Vec<u8>,
    piece: usize,
    cancel: Cancel,
) -> JoinHandle<(Box<dyn LinkSender>, Result<(), SendError>)> {
    std::thread::spawn(move || {
        for chunk in data.chunks(piece) {
            if let Err(error) = tx.send(chunk, &cancel) {
                return (tx, Err(error));
            }
        }
        let finished = tx
            .finish(&cancel)
            .map_err(|e| SendError::failed(data.len(), e));
        (tx, finished)
    })
}

/// Sends `data` (from a thread of its own, so a link that holds less than `data` cannot
/// deadlock against the receiver), finishes, and receives what comes back: up to `data.len()`
/// bytes, each receive waiting at most 10 s. The round trip every link test starts with.
pub fn round_trip(tx: &mut dyn LinkSender, rx: &mut dyn LinkReceiver, data: &[u8]) -> Vec<u8> {
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            for chunk in data.chunks(70_001) {
                tx.send(chunk, &Cancel::never())?;
            }
            tx.finish(&Cancel::never())
                .map_err(|e| SendError::failed(data.len(), e))
        });
        let (got, _) = receive(rx, data.len(), Duration::from_secs(10));
        sender
            .join()
            .expect("the sender thread")
            .expect("send and finish");
        got
    })
}

/// Bytes no link changes by accident: every value, in an order that is not a counter.
pub fn test_bytes(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The link's figures as the JSON summaries carry them.
pub fn stats_json(rx: &dyn LinkReceiver) -> serde_json::Value {
    serde_json::to_value(rx.stats()).expect("stats serialise")
}

/// A far end the test wrote: its endpoint, and what keeps it alive. `closed` fires when the
/// peer saw the link close (end of stream on a stream, the peer's end of its echo loop).
pub struct Peer {
    pub endpoint: String,
    pub closed: Option<mpsc::Receiver<()>>,
    stop: Option<Arc<AtomicBool>>,
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

impl Peer {
    /// A peer that is part of the link itself (`loop:`, `pty:`): nothing to keep alive.
    pub fn none(endpoint: impl Into<String>) -> Peer {
        Peer {
            endpoint: endpoint.into(),
            closed: None,
            stop: None,
            _keep: Vec::new(),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.store(true, Ordering::SeqCst);
        }
    }
}

/// Echoes a byte stream; closes it after `vanish_after` bytes when asked to.
pub fn echo_stream(
    mut stream: impl Read + Write,
    vanish_after: Option<usize>,
    closed: mpsc::Sender<()>,
) {
    let mut buf = [0u8; 4096];
    let mut echoed = 0usize;
    loop {
        let room = vanish_after.map_or(buf.len(), |limit| (limit - echoed).min(buf.len()));
        if room == 0 {
            break;
        }
        let n = match stream.read(&mut buf[..room]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).is_err() {
            break;
        }
        echoed += n;
    }
    drop(stream);
    let _ = closed.send(());
}

/// `tcp://` to a std listener that echoes one connection.
pub fn tcp_peer(vanish_after: Option<usize>) -> Peer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a TCP listener");
    let port = listener.local_addr().expect("its address").port();
    let (closed_tx, closed) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            echo_stream(stream, vanish_after, closed_tx);
        }
    });
    Peer {
        endpoint: format!("tcp://127.0.0.1:{port}"),
        closed: Some(closed),
        stop: None,
        _keep: Vec::new(),
    }
}

/// One TCP connection echoed by a plain std server; returns the client address it saw.
pub fn tcp_echo_once(listener: TcpListener) -> JoinHandle<std::net::SocketAddr> {
    std::thread::spawn(move || {
        let (stream, peer) = listener.accept().expect("accept");
        echo_stream(stream, None, mpsc::channel().0);
        peer
    })
}

/// `unix:` to a std listener in a temporary directory that echoes one connection.
pub fn unix_peer(vanish_after: Option<usize>) -> Peer {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("echo.sock");
    let listener = UnixListener::bind(&path).expect("bind a Unix listener");
    let (closed_tx, closed) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            echo_stream(stream, vanish_after, closed_tx);
        }
    });
    Peer {
        endpoint: format!("unix:{}", path.display()),
        closed: Some(closed),
        stop: None,
        _keep: vec![Box::new(dir)],
    }
}

/// Echoes the datagrams `socket` receives, on a thread of its own, until the returned flag is
/// set, or closes the socket after `vanish_after` bytes; the channel then says it closed (no
/// channel without `vanish_after`).
fn spawn_datagram_echo<S: Send + 'static, A>(
    socket: S,
    recv_from: impl Fn(&S, &mut [u8]) -> std::io::Result<(usize, A)> + Send + 'static,
    send_to: impl Fn(&S, &[u8], &A) -> std::io::Result<usize> + Send + 'static,
    vanish_after: Option<usize>,
) -> (Arc<AtomicBool>, Option<mpsc::Receiver<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (closed_tx, closed) = mpsc::channel();
    let thread_stop = Arc::clone(&stop);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut echoed = 0usize;
        while !thread_stop.load(Ordering::SeqCst) && vanish_after.is_none_or(|limit| echoed < limit)
        {
            // The socket's read timeout lets the loop look at `stop`.
            let Ok((n, from)) = recv_from(&socket, &mut buf) else {
                continue;
            };
            let _ = send_to(&socket, &buf[..n], &from);
            echoed += n;
        }
        drop(socket);
        let _ = closed_tx.send(());
    });
    (stop, vanish_after.map(|_| closed))
}

/// `udp://` to a std socket that echoes every datagram to where it came from. The link keeps at
/// most 32 datagrams in flight: the peer's socket has the default receive buffer (about 90
/// datagrams of 1400 bytes), and a busy machine may leave the echo thread unscheduled while
/// the link's default window of 128 arrives.
pub fn udp_peer(vanish_after: Option<usize>) -> Peer {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    let port = socket.local_addr().expect("its address").port();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let (stop, closed) = spawn_datagram_echo(
        socket,
        UdpSocket::recv_from,
        |socket, data, to| socket.send_to(data, to),
        vanish_after,
    );
    Peer {
        endpoint: format!("udp://127.0.0.1:{port}?window=32"),
        closed,
        stop: Some(stop),
        _keep: Vec::new(),
    }
}

/// `unixgram:` to a std socket in a temporary directory that echoes every datagram to the
/// (abstract) address it came from.
pub fn unixgram_peer(vanish_after: Option<usize>) -> Peer {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("echo.sock");
    let socket = UnixDatagram::bind(&path).expect("bind a Unix datagram socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let (stop, closed) = spawn_datagram_echo(
        socket,
        UnixDatagram::recv_from,
        UnixDatagram::send_to_addr,
        vanish_after,
    );
    Peer {
        endpoint: format!("unixgram:{}", path.display()),
        closed,
        stop: Some(stop),
        _keep: vec![Box::new(dir)],
    }
}

/// A new pseudo-terminal pair: the master, and the slave's path.
pub fn new_pty() -> (OwnedFd, String) {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    rustix::pty::grantpt(&master).expect("grantpt");
    rustix::pty::unlockpt(&master).expect("unlockpt");
    let path = rustix::pty::ptsname(&master, Vec::new())
        .expect("ptsname")
        .into_string()
        .expect("utf-8 path");
    (master, path)
}

/// Opens a pty slave without making it the controlling terminal.
fn open_slave(path: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .expect("open the pty slave")
}

/// A pseudo-terminal made by the test (not by loopscope) with an echo thread on its master:
/// `serial:/dev/pts/N` is then a serial port with a loopback plug. The test holds a slave
/// descriptor of its own (it never reads it) so the master never reads EIO for want of an open
/// slave; dropping the pair closes it, and the echo thread ends on the EIO that follows.
pub fn serial_peer(vanish_after: Option<usize>) -> Peer {
    let (master, path) = new_pty();
    let held_slave = open_slave(&path);
    let (closed_tx, closed) = mpsc::channel();
    // Closing the master (when the echo ends) hangs up the line: the serial link's end of
    // stream.
    std::thread::spawn(move || echo_stream(std::fs::File::from(master), vanish_after, closed_tx));
    Peer {
        endpoint: format!("serial:{path}"),
        closed: vanish_after.map(|_| closed),
        stop: None,
        _keep: vec![Box::new(held_slave)],
    }
}

/// TCGETS2 on a fresh descriptor of `path`.
pub fn termios_of(path: &str) -> rustix::termios::Termios {
    let file = open_slave(path);
    rustix::termios::tcgetattr(&file).unwrap_or_else(|e| panic!("TCGETS2 on {path}: {e}"))
}
