//! The stream reflector's connections (TCP and Unix stream): a few event loops echo every
//! client, instead of a thread per client.
//!
//! Why not a thread per client: each thread costs a stack, and glibc keeps the stacks of ended
//! threads in a cache (bounded, but tens of MiB of address space and a few KiB resident each),
//! so after 2,000 clients had come and gone the reflector's RSS stayed 1.5 MB above where it
//! started (issue 12, docs/reliability.md). The loops here are made once, before the first
//! client, and a connection holds only what it needs while it is open: a pipe of kernel memory,
//! or, when splice is refused, the bytes its client has not yet read back.
//!
//! Each loop waits on its connections with epoll (rustix), level-triggered. A connection is
//! either reading (EPOLLIN) or, while it holds bytes its client has not taken back, writing
//! (EPOLLOUT) and not reading: a client that stops reading stops being read, as with the
//! blocking copy before. Bytes go socket → pipe → socket with splice(2) and never enter user
//! space; where splice is refused (or no descriptors are left for a pipe) they go through the
//! loop's one buffer, and only the part the socket would not take is kept per connection.
//! Hand-written over a crate such as mio: rustix already gives safe epoll, eventfd and
//! splice calls, and the loop is one readiness rule per connection.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::epoll;
use rustix::event::{EventfdFlags, eventfd};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, Shutdown};
use rustix::pipe::{PipeFlags, SpliceFlags};

use super::{COPY_BUFFER, Counters, EventSink, PIPE_SIZE, POLL, ReflectEvent};

/// Stack of a loop thread: the loop keeps its buffer on the heap and calls nothing deep.
const LOOP_STACK: usize = 256 * 1024;
/// At most this many reads and writes for one connection per wake-up, so that one fast client
/// cannot starve the others on its loop (level-triggered: it is woken again at once).
const ROUNDS_PER_WAKE: usize = 16;
/// The key of each loop's eventfd, which says "new connections are queued", "reap" or "quit".
const WAKE_KEY: u64 = u64::MAX;
/// How long [`EchoLoops::reap`] waits for a loop at most: a loop off the CPU that long (or one
/// that ended) is not waited for further.
const REAP_WAIT: Duration = Duration::from_secs(2);

/// The loops, and which one takes the next connection.
pub(super) struct EchoLoops {
    loops: Vec<LoopHandle>,
    next: usize,
    quit: Arc<AtomicBool>,
}

struct LoopHandle {
    queue: Arc<Mutex<Vec<(OwnedFd, String)>>>,
    wake: Arc<OwnedFd>,
    reaps: Arc<Reaps>,
    thread: Option<JoinHandle<()>>,
}

/// Requests to a loop to close its gone clients now, and its answers.
#[derive(Default)]
struct Reaps {
    /// The last request's number; a loop that sees it above `done` reaps.
    requested: AtomicU64,
    /// The last request the loop has finished (`u64::MAX` once the loop has ended).
    done: Mutex<u64>,
    finished: Condvar,
}

impl Reaps {
    fn answer(&self, request: u64) {
        if let Ok(mut done) = self.done.lock() {
            *done = (*done).max(request);
        }
        self.finished.notify_all();
    }
}

impl EchoLoops {
    /// Starts `count` loops (at least one). They end when `stop` is set or the loops are
    /// dropped.
    pub(super) fn start(
        count: usize,
        zero_copy: bool,
        stop: &Arc<AtomicBool>,
        counters: &Arc<Counters>,
        events: &EventSink,
    ) -> io::Result<EchoLoops> {
        let quit = Arc::new(AtomicBool::new(false));
        let mut loops = Vec::new();
        for index in 0..count.max(1) {
            let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
            let wake = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
            epoll::add(
                &epoll,
                &*wake,
                epoll::EventData::new_u64(WAKE_KEY),
                epoll::EventFlags::IN,
            )?;
            let queue = Arc::new(Mutex::new(Vec::new()));
            let reaps = Arc::new(Reaps::default());
            let mut state = EchoLoop {
                epoll,
                wake: Arc::clone(&wake),
                queue: Arc::clone(&queue),
                reaps: Arc::clone(&reaps),
                connections: HashMap::new(),
                next_key: 0,
                buffer: vec![0u8; COPY_BUFFER],
                zero_copy,
                stop: Arc::clone(stop),
                quit: Arc::clone(&quit),
                counters: Arc::clone(counters),
                events: Arc::clone(events),
            };
            let thread = std::thread::Builder::new()
                .name(format!("reflect echo {index}"))
                .stack_size(LOOP_STACK)
                .spawn(move || {
                    state.run();
                    // Nobody waits for an ended loop.
                    state.reaps.answer(u64::MAX);
                })?;
            loops.push(LoopHandle {
                queue,
                wake,
                reaps,
                thread: Some(thread),
            });
        }
        Ok(EchoLoops {
            loops,
            next: 0,
            quit,
        })
    }

    /// Hands a connection to the next loop, round robin.
    pub(super) fn add(&mut self, socket: OwnedFd, peer: String) {
        let handle = &self.loops[self.next % self.loops.len()];
        self.next = self.next.wrapping_add(1);
        if let Ok(mut queue) = handle.queue.lock() {
            queue.push((socket, peer));
        }
        let _ = rustix::io::write(&*handle.wake, &1u64.to_ne_bytes());
    }
}

impl EchoLoops {
    /// Has every loop close the connections whose clients have gone (a reset, a hang-up) and
    /// take the ones queued to it, and waits until they have. A client that aborted still
    /// counts as a connection until its loop sees it go; under a flood of connect-and-abort
    /// cycles the accept thread runs ahead of the loops, so at the connection or descriptor
    /// limit this comes before any live client is refused for clients already gone (issue
    /// 12: 406 of 10,000 aborting clients were refused that way).
    pub(super) fn reap(&self) {
        let requests: Vec<u64> = self
            .loops
            .iter()
            .map(|handle| {
                let request = handle.reaps.requested.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = rustix::io::write(&*handle.wake, &1u64.to_ne_bytes());
                request
            })
            .collect();
        let deadline = Instant::now() + REAP_WAIT;
        for (handle, request) in self.loops.iter().zip(requests) {
            let Ok(mut done) = handle.reaps.done.lock() else {
                continue;
            };
            while *done < request {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match handle.reaps.finished.wait_timeout(done, left) {
                    Ok((guard, _)) => done = guard,
                    Err(_) => break,
                }
            }
        }
    }
}

impl Drop for EchoLoops {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        for handle in &self.loops {
            let _ = rustix::io::write(&*handle.wake, &1u64.to_ne_bytes());
        }
        for handle in &mut self.loops {
            if let Some(thread) = handle.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

struct EchoLoop {
    epoll: OwnedFd,
    wake: Arc<OwnedFd>,
    queue: Arc<Mutex<Vec<(OwnedFd, String)>>>,
    reaps: Arc<Reaps>,
    connections: HashMap<u64, Connection>,
    next_key: u64,
    /// The copy path's one buffer, shared by the loop's connections.
    buffer: Vec<u8>,
    zero_copy: bool,
    stop: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    counters: Arc<Counters>,
    events: EventSink,
}

impl EchoLoop {
    fn run(&mut self) {
        let timeout = rustix::time::Timespec {
            tv_sec: i64::try_from(POLL.as_secs()).unwrap_or(0),
            tv_nsec: i64::from(POLL.subsec_nanos()),
        };
        let mut ready = Vec::with_capacity(256);
        while !self.stop.load(Ordering::Relaxed) && !self.quit.load(Ordering::Relaxed) {
            ready.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut ready),
                Some(&timeout),
            ) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(error) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    (self.events)(ReflectEvent::Error {
                        what: format!("stream echo loop: {error}"),
                    });
                    return;
                }
            }
            for event in &ready {
                let key = event.data.u64();
                if key == WAKE_KEY {
                    self.take_new_connections();
                    self.reap_if_asked();
                } else {
                    self.serve(key);
                }
            }
        }
    }

    /// When a reap was asked for: serves every connection that is ready now, which closes
    /// each one whose client has gone (its reset or hang-up makes it ready), then answers.
    /// Connections just taken are among them: epoll reports a socket that is ready when it
    /// is added.
    fn reap_if_asked(&mut self) {
        let request = self.reaps.requested.load(Ordering::SeqCst);
        if self.reaps.done.lock().map_or(true, |done| *done >= request) {
            return;
        }
        let mut ready = Vec::with_capacity(256);
        loop {
            ready.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut ready),
                Some(&rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                }),
            ) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(_) => break,
            }
            for event in &ready {
                let key = event.data.u64();
                if key == WAKE_KEY {
                    self.take_new_connections();
                } else {
                    self.serve(key);
                }
            }
            // A full batch: more may be ready behind it.
            if ready.len() < ready.capacity() {
                break;
            }
        }
        self.reaps.answer(request);
    }

    fn take_new_connections(&mut self) {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&*self.wake, &mut count);
        let new = match self.queue.lock() {
            Ok(mut queue) => std::mem::take(&mut *queue),
            Err(_) => Vec::new(),
        };
        for (socket, peer) in new {
            let key = self.next_key;
            self.next_key += 1;
            let mut connection = Connection::new(socket, peer, self.zero_copy);
            let registered = rustix::io::ioctl_fionbio(&connection.socket, true).and_then(|()| {
                epoll::add(
                    &self.epoll,
                    &connection.socket,
                    epoll::EventData::new_u64(key),
                    epoll::EventFlags::IN,
                )
            });
            match registered {
                Ok(()) => {
                    self.connections.insert(key, connection);
                }
                Err(error) => {
                    connection.error = Some(io::Error::from(error).to_string());
                    self.close(connection);
                }
            }
        }
    }

    /// Moves what can move on connection `key` now, and waits for what it needs next.
    fn serve(&mut self, key: u64) {
        let Some(connection) = self.connections.get_mut(&key) else {
            return;
        };
        let wanted = connection.pump(&mut self.buffer, &self.counters);
        match wanted {
            Ok(Some(interest)) => {
                if interest != connection.interest {
                    connection.interest = interest;
                    if let Err(error) = epoll::modify(
                        &self.epoll,
                        &connection.socket,
                        epoll::EventData::new_u64(key),
                        interest,
                    ) {
                        connection.error = Some(io::Error::from(error).to_string());
                        self.end(key);
                    }
                }
            }
            Ok(None) => self.end(key),
            Err(error) => {
                connection.error = Some(error.to_string());
                self.end(key);
            }
        }
    }

    fn end(&mut self, key: u64) {
        if let Some(connection) = self.connections.remove(&key) {
            let _ = epoll::delete(&self.epoll, &connection.socket);
            self.close(connection);
        }
        if self.connections.is_empty() {
            // A map keeps the room its most connections needed (2,000 clients: ~230 KiB per
            // loop); once they have all left, that goes back too.
            self.connections = HashMap::new();
        }
    }

    fn close(&self, connection: Connection) {
        let Connection {
            socket,
            held,
            peer,
            moved,
            error,
            ..
        } = connection;
        // Its descriptors first: once it is said closed, nothing of it is held.
        drop((socket, held));
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
        (self.events)(ReflectEvent::Closed {
            peer,
            bytes: moved,
            error,
        });
    }
}

/// Where a connection's bytes wait between arriving and going back.
enum Held {
    /// Splice wanted, but no pipe yet: it is made when the first bytes arrive, so that a client
    /// that goes without sending (a scanner, a connect-and-abort) costs one descriptor, not
    /// three, and no pipe is made and torn down for it.
    PipeWhenNeeded,
    /// In a pipe (splice): `bytes` of it filled.
    Pipe {
        read_end: OwnedFd,
        write_end: OwnedFd,
        capacity: usize,
        bytes: usize,
    },
    /// In user space (copy): what the socket would not take yet, from `offset`.
    Copy { pending: Vec<u8>, offset: usize },
}

struct Connection {
    socket: OwnedFd,
    peer: String,
    held: Held,
    /// The client closed its sending side: once everything is back, close ours.
    eof: bool,
    /// Bytes echoed back.
    moved: u64,
    interest: epoll::EventFlags,
    error: Option<String>,
}

impl Connection {
    fn new(socket: OwnedFd, peer: String, zero_copy: bool) -> Connection {
        let held = if zero_copy {
            Held::PipeWhenNeeded
        } else {
            Held::copy()
        };
        Connection {
            socket,
            peer,
            held,
            eof: false,
            moved: 0,
            interest: epoll::EventFlags::IN,
            error: None,
        }
    }

    /// Echoes what it can without blocking. `Some(interest)`: what to wait for next; `None`:
    /// the connection is finished (the client closed and has everything back).
    fn pump(
        &mut self,
        buffer: &mut [u8],
        counters: &Counters,
    ) -> io::Result<Option<epoll::EventFlags>> {
        let before = self.moved;
        let wanted = self.pump_rounds(buffer);
        counters
            .bytes
            .fetch_add(self.moved - before, Ordering::Relaxed);
        wanted
    }

    fn pump_rounds(&mut self, buffer: &mut [u8]) -> io::Result<Option<epoll::EventFlags>> {
        for _ in 0..ROUNDS_PER_WAKE {
            // What is held goes back first.
            self.flush()?;
            if self.held.bytes() > 0 {
                return Ok(Some(epoll::EventFlags::OUT));
            }
            if self.eof {
                let _ = rustix::net::shutdown(&self.socket, Shutdown::Write);
                return Ok(None);
            }
            match self.fill(buffer) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Some(epoll::EventFlags::IN));
                }
                Err(error) => return Err(error),
            }
        }
        // More may be waiting: the level-triggered wait says so at once, after the others.
        Ok(Some(if self.held.bytes() > 0 {
            epoll::EventFlags::OUT
        } else {
            epoll::EventFlags::IN
        }))
    }

    /// Takes in what the client sent (as much as the pipe or the buffer holds); 0 at its end.
    fn fill(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let result = match &mut self.held {
                // Whether anything came, without taking it: only then is a pipe worth making.
                Held::PipeWhenNeeded => {
                    match rustix::net::recv(&self.socket, &mut buffer[..1], RecvFlags::PEEK) {
                        Ok((0, _)) => Ok(0),
                        Ok(_) => {
                            self.held = Held::pipe();
                            continue;
                        }
                        Err(error) => Err(error),
                    }
                }
                Held::Pipe {
                    write_end,
                    capacity,
                    bytes,
                    ..
                } => rustix::pipe::splice(
                    &self.socket,
                    None,
                    &*write_end,
                    None,
                    *capacity - *bytes,
                    SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                )
                .inspect(|n| *bytes += n),
                Held::Copy { pending, offset } => {
                    match rustix::net::recv(&self.socket, &mut *buffer, RecvFlags::empty()) {
                        Ok((0, _)) => Ok(0),
                        Ok((n, _)) => {
                            // Straight back; only what the socket will not take is kept.
                            let sent = send_some(&self.socket, &buffer[..n])?;
                            self.moved += sent as u64;
                            if sent < n {
                                pending.extend_from_slice(&buffer[sent..n]);
                                *offset = 0;
                            }
                            Ok(n)
                        }
                        Err(error) => Err(error),
                    }
                }
            };
            match result {
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
                // splice refused on this kind of socket before anything moved: copy instead.
                Err(Errno::INVAL) if self.moved == 0 && matches!(self.held, Held::Pipe { .. }) => {
                    self.held = Held::copy();
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Sends back what is held, as much as the socket takes now.
    fn flush(&mut self) -> io::Result<()> {
        loop {
            let result = match &mut self.held {
                Held::PipeWhenNeeded => return Ok(()),
                Held::Pipe {
                    read_end, bytes, ..
                } => {
                    if *bytes == 0 {
                        return Ok(());
                    }
                    rustix::pipe::splice(
                        &*read_end,
                        None,
                        &self.socket,
                        None,
                        *bytes,
                        SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                    )
                    .inspect(|n| *bytes -= n)
                }
                Held::Copy { pending, offset } => {
                    if *offset >= pending.len() {
                        // Nothing held: give the memory back.
                        *pending = Vec::new();
                        *offset = 0;
                        return Ok(());
                    }
                    match rustix::net::send(&self.socket, &pending[*offset..], SendFlags::NOSIGNAL)
                    {
                        Ok(n) => {
                            *offset += n;
                            Ok(n)
                        }
                        Err(error) => Err(error),
                    }
                }
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.moved += n as u64,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(()),
                Err(error) => return Err(error.into()),
            }
        }
    }
}

impl Held {
    /// A pipe for splice; when no descriptors are left for one, the copy path instead.
    fn pipe() -> Held {
        match rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK) {
            Ok((read_end, write_end)) => {
                // Best effort (unprivileged users have a quota); the default is 64 KiB.
                let capacity =
                    rustix::pipe::fcntl_setpipe_size(&write_end, PIPE_SIZE).unwrap_or(65_536);
                Held::Pipe {
                    read_end,
                    write_end,
                    capacity,
                    bytes: 0,
                }
            }
            Err(_) => Held::copy(),
        }
    }

    fn copy() -> Held {
        Held::Copy {
            pending: Vec::new(),
            offset: 0,
        }
    }

    /// Bytes waiting to go back.
    fn bytes(&self) -> usize {
        match self {
            Held::PipeWhenNeeded => 0,
            Held::Pipe { bytes, .. } => *bytes,
            Held::Copy { pending, offset } => pending.len().saturating_sub(*offset),
        }
    }
}

/// Sends what the socket takes now, without waiting: the bytes sent.
fn send_some(socket: &OwnedFd, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match rustix::net::send(socket.as_fd(), &data[sent..], SendFlags::NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => break,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;

    /// A connected TCP pair on loopback: (client, the reflector's side).
    fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (client, server)
    }

    /// Bytes no two positions of which repeat in a short cycle, different per client.
    fn pattern(client: u32, length: usize) -> Vec<u8> {
        (0..length as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(client * 97) >> 13) as u8)
            .collect()
    }

    /// Every client gets its own bytes back, whole and in order, through the pipe (splice) and
    /// through the copy path; each client first writes all of its 4 MiB before reading any of
    /// it back, far more than the socket buffers hold, so the reflector must stop reading a
    /// client that does not read and take up again when it does. The counters and each
    /// connection's closing event say the same.
    #[test]
    fn clients_that_write_before_they_read_get_every_byte_back() {
        const CLIENTS: u32 = 3;
        const BYTES: usize = 4 << 20;
        for zero_copy in [true, false] {
            let stop = Arc::new(AtomicBool::new(false));
            let counters = Arc::new(Counters::default());
            let closed = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&closed);
            let events: EventSink = Arc::new(move |event| {
                if let ReflectEvent::Closed { bytes, error, .. } = event {
                    seen.lock().unwrap().push((bytes, error));
                }
            });
            let mut loops = EchoLoops::start(2, zero_copy, &stop, &counters, &events).unwrap();
            let clients: Vec<_> = (0..CLIENTS)
                .map(|client| {
                    let (stream, reflector_side) = tcp_pair();
                    counters.active.fetch_add(1, Ordering::Relaxed);
                    loops.add(reflector_side.into(), format!("client {client}"));
                    std::thread::spawn(move || {
                        let data = pattern(client, BYTES);
                        let mut writer = stream.try_clone().unwrap();
                        let expected = data.clone();
                        let sender = std::thread::spawn(move || {
                            writer.write_all(&data).unwrap();
                            writer.shutdown(std::net::Shutdown::Write).unwrap();
                        });
                        let mut reader = stream;
                        reader
                            .set_read_timeout(Some(Duration::from_secs(60)))
                            .unwrap();
                        let mut back = Vec::new();
                        reader.read_to_end(&mut back).unwrap();
                        sender.join().unwrap();
                        back == expected
                    })
                })
                .collect();
            for client in clients {
                assert!(client.join().unwrap(), "zero_copy {zero_copy}");
            }
            // The client has read to the end: the reflector had shut its side, and the closing
            // event follows at once; dropping the loops waits for them.
            drop(loops);
            let total = u64::from(CLIENTS) * BYTES as u64;
            assert_eq!(counters.bytes.load(Ordering::Relaxed), total);
            assert_eq!(counters.active.load(Ordering::Relaxed), 0);
            let closed = closed.lock().unwrap();
            assert_eq!(closed.len(), CLIENTS as usize, "{closed:?}");
            assert!(
                closed
                    .iter()
                    .all(|(bytes, error)| *bytes == BYTES as u64 && error.is_none())
            );
        }
    }

    /// Clients that reset before their loop has looked at them: once `reap` returns, the loop
    /// has closed every one (the count of open connections is back to the live ones), and the
    /// live client is still echoed.
    #[test]
    fn a_reap_closes_every_gone_client_before_it_returns() {
        const GONE: usize = 300;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let events: EventSink = Arc::new(|_| {});
        let mut loops = EchoLoops::start(2, true, &stop, &counters, &events).unwrap();
        let (mut live, side) = tcp_pair();
        counters.active.fetch_add(1, Ordering::Relaxed);
        loops.add(side.into(), "live".into());
        let mut gone = Vec::new();
        for client in 0..GONE {
            let (reset, side) = tcp_pair();
            socket2::SockRef::from(&reset)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            gone.push(reset);
            counters.active.fetch_add(1, Ordering::Relaxed);
            loops.add(side.into(), format!("gone {client}"));
        }
        drop(gone); // every one sends its reset
        loops.reap();
        assert_eq!(counters.active.load(Ordering::Relaxed), 1);
        live.write_all(b"echo").unwrap();
        let mut back = [0u8; 4];
        live.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"echo");
        drop(loops);
    }

    /// A client that resets its connection ends it with the error said, and no other client
    /// is disturbed.
    #[test]
    fn a_reset_client_is_closed_with_its_error() {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let done_tx = Mutex::new(done_tx);
        let events: EventSink = Arc::new(move |event| {
            if let ReflectEvent::Closed { peer, error, .. } = event {
                let _ = done_tx.lock().unwrap().send((peer, error));
            }
        });
        let mut loops = EchoLoops::start(1, true, &stop, &counters, &events).unwrap();
        let (reset, side) = tcp_pair();
        counters.active.fetch_add(1, Ordering::Relaxed);
        loops.add(side.into(), "reset".into());
        let (mut good, side) = tcp_pair();
        counters.active.fetch_add(1, Ordering::Relaxed);
        loops.add(side.into(), "good".into());
        // SO_LINGER 0: close sends a reset.
        socket2::SockRef::from(&reset)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        (&reset).write_all(b"hello").unwrap();
        drop(reset);
        let (peer, _error) = done_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(peer, "reset");
        // The reset may come before or after "hello" went back: either it ended in an error,
        // or it had seen the end of the stream first.
        good.write_all(b"still here").unwrap();
        let mut back = [0u8; 10];
        good.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"still here");
        drop(loops);
    }
}
