//! Data streams: the sockets a test moves bytes over, and the loops that send and receive on
//! them, one thread per stream.

use std::io::{self, Read, Write};
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loopscope_link::adapter::impair::{Impairer, ImpairmentConfig};
use loopscope_sys::{
    CpuTime, Readiness, TcpInfo, ZerocopyCompletions, enable_zerocopy, reap_zerocopy, recv_discard,
    send_zerocopy, tcp_info, thread_cpu_time, wait_readable,
};
use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::control::StreamSock;
use super::udp::{self, Pacer, UdpReceiveStats};

/// How long one blocking send or receive may wait before the loop looks at its flags again.
const FLAG_POLL: Duration = Duration::from_millis(100);
/// A draining receiver stops once nothing more has arrived for this long.
const DRAIN_QUIET: Duration = Duration::from_millis(25);

/// A data connection.
#[derive(Debug)]
pub(super) enum DataSocket {
    Stream(StreamSock),
    Udp(UdpSocket),
}

impl DataSocket {
    pub(super) fn is_datagram(&self) -> bool {
        matches!(self, DataSocket::Udp(_))
    }

    /// TCP_INFO of a TCP stream (`None` for other sockets).
    pub(super) fn tcp_info(&self) -> Option<TcpInfo> {
        match self {
            DataSocket::Stream(stream) if stream.is_tcp() => tcp_info(stream).ok(),
            _ => None,
        }
    }

    fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            DataSocket::Stream(stream) => {
                stream.set_read_timeout(timeout)?;
                stream.set_write_timeout(timeout)
            }
            DataSocket::Udp(socket) => {
                socket.set_read_timeout(timeout)?;
                socket.set_write_timeout(timeout)
            }
        }
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            DataSocket::Stream(stream) => stream.set_nonblocking(nonblocking),
            DataSocket::Udp(socket) => socket.set_nonblocking(nonblocking),
        }
    }

    fn send(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            DataSocket::Stream(stream) => (&*stream).write(data),
            DataSocket::Udp(socket) => socket.send(data),
        }
    }

    fn recv(&self, buffer: &mut [u8], discard: bool) -> io::Result<usize> {
        match self {
            DataSocket::Stream(stream) if discard && stream.is_tcp() => {
                recv_discard(stream, buffer)
            }
            DataSocket::Stream(stream) => (&*stream).read(buffer),
            DataSocket::Udp(socket) => socket.recv(buffer),
        }
    }

    /// Ends the sending direction, so a receiver reading to end-of-stream stops exactly
    /// after the last byte (datagram sockets have no such end).
    pub(super) fn finish_sending(&self) {
        if let DataSocket::Stream(stream) = self {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
    }

    pub(super) fn close_both(&self) {
        if let DataSocket::Stream(stream) = self {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl AsFd for DataSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DataSocket::Stream(stream) => stream.as_fd(),
            DataSocket::Udp(socket) => socket.as_fd(),
        }
    }
}

/// Which way bytes go on a stream, from this side's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Role {
    Send,
    Receive,
}

impl Role {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Role::Send => "send",
            Role::Receive => "receive",
        }
    }
}

/// One stream's socket and its counters, shared by its worker thread and the thread that
/// samples intervals and builds the results.
pub(super) struct Stream {
    /// iperf3's stream number.
    pub id: i64,
    pub role: Role,
    pub socket: DataSocket,
    /// Bytes moved (sent, or received).
    pub bytes: AtomicU64,
    /// Datagrams moved (UDP).
    pub packets: AtomicU64,
    /// Nanoseconds from the test's start to the last byte moved.
    pub last_active_ns: AtomicU64,
    pub udp: Mutex<UdpReceiveStats>,
    /// TCP_INFO when the stream was made (retransmits are reported from then on).
    pub tcp_info_at_start: Option<TcpInfo>,
    pub finished: AtomicBool,
    /// The first error that ended the worker, if one did.
    pub error: Mutex<Option<String>>,
    /// CPU time the worker thread used.
    pub cpu: Mutex<CpuTime>,
    /// `--zerocopy`: sends made with MSG_ZEROCOPY and what the kernel reported of them.
    pub zerocopy: Mutex<Option<ZerocopyFigures>>,
}

/// What a sender with MSG_ZEROCOPY learnt from the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ZerocopyFigures {
    /// Sends made with MSG_ZEROCOPY.
    pub sends: u64,
    /// Sends the kernel reported complete by the end of the stream.
    pub completed: u64,
    /// Of those, sends where the kernel copied after all (always, on loopback: a pinned page
    /// cannot be handed to a local receiver).
    pub copied: u64,
}

impl Stream {
    pub(super) fn new(id: i64, role: Role, socket: DataSocket) -> Stream {
        let tcp_info_at_start = socket.tcp_info();
        Stream {
            id,
            role,
            socket,
            bytes: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            last_active_ns: AtomicU64::new(0),
            udp: Mutex::new(UdpReceiveStats::default()),
            tcp_info_at_start,
            finished: AtomicBool::new(false),
            error: Mutex::new(None),
            cpu: Mutex::new(CpuTime::default()),
            zerocopy: Mutex::new(None),
        }
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Segments retransmitted since the stream was made (sending TCP streams).
    pub(super) fn retransmits(&self) -> Option<u64> {
        if self.role != Role::Send {
            return None;
        }
        let now = self.socket.tcp_info()?;
        let before = self.tcp_info_at_start.map_or(0, |i| i.total_retransmits);
        Some(u64::from(now.total_retransmits.saturating_sub(before)))
    }

    /// Ends the omitted start of a test (iperf3's `-O`): bytes, datagrams and UDP statistics
    /// count from now on.
    pub(super) fn omit_so_far(&self) {
        self.bytes.store(0, Ordering::Relaxed);
        self.packets.store(0, Ordering::Relaxed);
        if let Ok(mut stats) = self.udp.lock() {
            stats.omit_so_far();
        }
    }

    pub(super) fn udp_stats(&self) -> UdpReceiveStats {
        self.udp.lock().map(|s| *s).unwrap_or_default()
    }

    pub(super) fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    fn fail(&self, error: String) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(error);
        }
    }
}

/// What every worker of one side of a test looks at.
pub(super) struct RunControl {
    pub started: Instant,
    /// Senders stop at their next write.
    pub stop_senders: AtomicBool,
    /// Receivers take what is already queued, then stop.
    pub drain_receivers: AtomicBool,
    /// Everybody stops now.
    pub abort: AtomicBool,
    /// Bytes still to send across all sending streams (`None`: no byte limit).
    pub send_budget: Option<AtomicU64>,
}

impl RunControl {
    pub(super) fn new(send_budget: Option<u64>) -> Self {
        RunControl {
            started: Instant::now(),
            stop_senders: AtomicBool::new(false),
            drain_receivers: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            send_budget: send_budget.map(AtomicU64::new),
        }
    }

    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes up to `want` bytes from the budget; 0 when it is spent.
    fn claim(&self, want: usize) -> usize {
        let Some(budget) = &self.send_budget else {
            return want;
        };
        let mut granted = 0;
        let _ = budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            granted = left.min(want as u64);
            Some(left - granted)
        });
        granted as usize
    }
}

/// How a worker moves bytes.
#[derive(Debug, Clone)]
pub(super) struct WorkerOptions {
    /// Bytes per write (and per datagram).
    pub length: usize,
    /// Bits per second for this stream (0: as fast as it goes).
    pub rate_bps: u64,
    /// UDP sequence numbers on 64 bits.
    pub counters_64bit: bool,
    /// Receive TCP with MSG_TRUNC (no copy to user space).
    pub skip_rx_copy: bool,
    /// Send TCP with MSG_ZEROCOPY.
    pub zerocopy: bool,
    /// Impairment of sent datagrams (loss, reordering), per stream with its own seed.
    pub impair: Option<ImpairmentConfig>,
}

/// The monotonic clock as UDP timestamps carry it.
pub(super) fn monotonic_now() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Starts the worker thread of `stream`.
pub(super) fn spawn_worker(
    stream: Arc<Stream>,
    control: Arc<RunControl>,
    options: WorkerOptions,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("perf-{}-{}", stream.role.as_str(), stream.id))
        .spawn(move || {
            let cpu_before = thread_cpu_time().unwrap_or_default();
            if options.rate_bps > 0 {
                // A paced thread sleeps between sends; the default 50 us of timer slack would
                // stretch every sleep and turn the pace into catch-up bursts.
                let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
            }
            if let Err(error) = stream.socket.set_timeouts(Some(FLAG_POLL)) {
                stream.fail(format!("cannot set socket timeouts: {error}"));
            } else {
                let result = match (stream.role, stream.socket.is_datagram()) {
                    (Role::Send, false) => send_stream(&stream, &control, &options),
                    (Role::Send, true) => send_datagrams(&stream, &control, &options),
                    (Role::Receive, datagram) => receive(&stream, &control, &options, datagram),
                };
                if let Err(error) = result {
                    stream.fail(error.to_string());
                }
            }
            let used = thread_cpu_time().unwrap_or_default().since(cpu_before);
            if let Ok(mut cpu) = stream.cpu.lock() {
                *cpu = used;
            }
            stream.finished.store(true, Ordering::Release);
        })
}

fn payload(length: usize, seed: u64) -> Vec<u8> {
    // Random bytes, as iperf3 sends, so nothing along the way can compress them.
    let mut buffer = vec![0u8; length];
    Xoshiro256PlusPlus::seed_from_u64(seed).fill_bytes(&mut buffer);
    buffer
}

fn is_retry(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Waits (in slices, watching `stop`) until the pacer lets the next bytes go. False when
/// stopped while waiting.
/// A sender that fell further behind than this (the thread was not scheduled, the socket was
/// full) forgives the rest instead of sending it in one burst, which a receiver's socket buffer
/// would drop.
const MAX_LAG: Duration = Duration::from_millis(5);

fn pace(pacer: Option<Pacer>, sent: u64, started: &mut Instant, stop: &dyn Fn() -> bool) -> bool {
    let Some(pacer) = pacer else {
        return true;
    };
    let lag = pacer.lag(sent, started.elapsed());
    if lag > MAX_LAG {
        *started += lag - MAX_LAG;
    }
    loop {
        if stop() {
            return false;
        }
        let wait = pacer.wait(sent, started.elapsed());
        if wait.is_zero() {
            return true;
        }
        std::thread::sleep(wait.min(FLAG_POLL));
    }
}

/// Sends made with MSG_ZEROCOPY between two looks at the error queue.
const ZEROCOPY_REAP_EVERY: u64 = 32;
/// How long a zerocopy sender waits at the end for the kernel's last completions.
const ZEROCOPY_DRAIN: Duration = Duration::from_secs(1);

fn send_stream(stream: &Stream, control: &RunControl, options: &WorkerOptions) -> io::Result<()> {
    // The payload is never written after this, so MSG_ZEROCOPY's rule (leave the pages alone
    // until the kernel says it is done) holds for every send.
    let buffer = payload(options.length, stream.id as u64);
    let zerocopy =
        options.zerocopy && matches!(&stream.socket, DataSocket::Stream(s) if s.is_tcp());
    if zerocopy {
        enable_zerocopy(stream.socket.as_fd()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("--zerocopy: the kernel refuses SO_ZEROCOPY: {e}"),
            )
        })?;
    }
    let mut figures = ZerocopyFigures::default();
    let result = send_stream_loop(
        stream,
        control,
        options,
        &buffer,
        zerocopy.then_some(&mut figures),
    );
    if zerocopy {
        let deadline = Instant::now() + ZEROCOPY_DRAIN;
        while figures.completed < figures.sends && Instant::now() < deadline {
            let _ = wait_readable(stream.socket.as_fd(), Some(Duration::from_millis(20)));
            reap(stream, &mut figures);
        }
        if let Ok(mut slot) = stream.zerocopy.lock() {
            *slot = Some(figures);
        }
    }
    result
}

fn reap(stream: &Stream, figures: &mut ZerocopyFigures) {
    let done: ZerocopyCompletions = reap_zerocopy(stream.socket.as_fd()).unwrap_or_default();
    figures.completed += done.completed;
    figures.copied += done.copied;
}

fn send_stream_loop(
    stream: &Stream,
    control: &RunControl,
    options: &WorkerOptions,
    buffer: &[u8],
    mut zerocopy: Option<&mut ZerocopyFigures>,
) -> io::Result<()> {
    let pacer = Pacer::new(options.rate_bps);
    let stopped =
        || control.stop_senders.load(Ordering::Relaxed) || control.abort.load(Ordering::Relaxed);
    let mut sent = 0u64;
    // Paced from when this thread starts: a thread that starts late (a busy machine) must not
    // burst to make up for time it never had.
    let mut started = Instant::now();
    loop {
        if !pace(pacer, sent, &mut started, &stopped) {
            return Ok(());
        }
        let chunk = control.claim(buffer.len());
        if chunk == 0 {
            return Ok(());
        }
        let mut offset = 0;
        while offset < chunk {
            if stopped() {
                return Ok(());
            }
            let result = match zerocopy.as_deref_mut() {
                Some(figures) => {
                    if figures.sends % ZEROCOPY_REAP_EVERY == 0 {
                        reap(stream, figures);
                    }
                    match send_zerocopy(stream.socket.as_fd(), &buffer[offset..chunk]) {
                        Ok(count) => {
                            figures.sends += 1;
                            Ok(count)
                        }
                        // Too many sends wait for completion: collect them, then go on.
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            let _ = wait_readable(stream.socket.as_fd(), Some(FLAG_POLL));
                            reap(stream, figures);
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                None => stream.socket.send(&buffer[offset..chunk]),
            };
            match result {
                Ok(count) => {
                    offset += count;
                    sent += count as u64;
                    stream.bytes.fetch_add(count as u64, Ordering::Relaxed);
                    stream
                        .last_active_ns
                        .store(control.elapsed_ns(), Ordering::Relaxed);
                }
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn send_datagrams(
    stream: &Stream,
    control: &RunControl,
    options: &WorkerOptions,
) -> io::Result<()> {
    let mut datagram = payload(options.length, stream.id as u64);
    let pacer = Pacer::new(options.rate_bps);
    let mut impairer = options.impair.clone().map(|mut config| {
        config.seed = config.seed.wrapping_add(stream.id as u64);
        Impairer::new(config)
    });
    let stopped =
        || control.stop_senders.load(Ordering::Relaxed) || control.abort.load(Ordering::Relaxed);
    let mut sequence = 0u64;
    let mut sent = 0u64;
    let mut started = Instant::now();
    loop {
        if !pace(pacer, sent, &mut started, &stopped) {
            break;
        }
        if control.claim(datagram.len()) == 0 {
            break;
        }
        sequence += 1;
        udp::write_header(
            &mut datagram,
            monotonic_now(),
            sequence,
            options.counters_64bit,
        );
        loop {
            let result = match &mut impairer {
                // The impairer stands for the network: a datagram it loses was still sent.
                Some(impairer) => impairer.process(&datagram, &mut |message| {
                    stream.socket.send(message).map(drop)
                }),
                None => stream.socket.send(&datagram).map(drop),
            };
            match result {
                Ok(()) => break,
                // A full socket buffer: wait for room, as a paced sender would.
                Err(e) if is_retry(&e) || e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if stopped() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        sent += datagram.len() as u64;
        stream
            .bytes
            .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        stream.packets.fetch_add(1, Ordering::Relaxed);
        stream
            .last_active_ns
            .store(control.elapsed_ns(), Ordering::Relaxed);
    }
    if let Some(impairer) = &mut impairer {
        let _ = impairer.flush(&mut |message| stream.socket.send(message).map(drop));
    }
    Ok(())
}

fn receive(
    stream: &Stream,
    control: &RunControl,
    options: &WorkerOptions,
    datagram: bool,
) -> io::Result<()> {
    // A datagram of any size must fit whole, or its tail would be cut off unseen.
    let size = if datagram {
        65_536
    } else {
        options.length.max(1)
    };
    let mut buffer = vec![0u8; size];
    let pacer = Pacer::new(options.rate_bps);
    let discard = options.skip_rx_copy && !datagram;
    let mut received = 0u64;
    let mut draining = false;
    let mut started = Instant::now();
    loop {
        if control.abort.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !draining && control.drain_receivers.load(Ordering::Relaxed) {
            // From here on only what is already queued: read until the socket is empty.
            draining = true;
            stream.socket.set_nonblocking(true)?;
        }
        if !draining {
            let stop = || {
                control.abort.load(Ordering::Relaxed)
                    || control.drain_receivers.load(Ordering::Relaxed)
            };
            // A rate limit on receiving holds a TCP sender back through flow control.
            if !pace(pacer, received, &mut started, &stop) {
                continue;
            }
        }
        match stream.socket.recv(&mut buffer, discard) {
            Ok(0) if !datagram => return Ok(()),
            Ok(count) => {
                if datagram {
                    match udp::read_header(&buffer[..count], options.counters_64bit) {
                        Some((sent, sequence)) => {
                            let arrived = monotonic_now();
                            if let Ok(mut stats) = stream.udp.lock() {
                                stats.record(sequence, sent, arrived);
                            }
                            stream.packets.fetch_add(1, Ordering::Relaxed);
                        }
                        // A repeated hello or a stray: not test data.
                        None => continue,
                    }
                }
                received += count as u64;
                stream.bytes.fetch_add(count as u64, Ordering::Relaxed);
                stream
                    .last_active_ns
                    .store(control.elapsed_ns(), Ordering::Relaxed);
            }
            Err(e) if draining && e.kind() == io::ErrorKind::WouldBlock => {
                // Empty for now; bytes the sender's kernel still holds arrive as this side's
                // reads open the window, usually at once, sometimes a softirq later.
                match wait_readable(stream.socket.as_fd(), Some(DRAIN_QUIET)) {
                    Ok(Readiness::Ready) => {}
                    _ => return Ok(()),
                }
            }
            Err(e) if is_retry(&e) => {}
            // The sender went away: the stream ends with what arrived.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) if datagram && e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
    }
}
