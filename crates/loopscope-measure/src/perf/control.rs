//! iperf3's control protocol, as stock iperf3 3.12 speaks it.
//!
//! iperf3 publishes no specification of its protocol; what is here was learned by watching a
//! stock client and server talk (strace of both ends, and a scripted peer feeding the stock
//! client each error code), and is written down in `docs/design.md`. In short:
//!
//! - The client opens the control connection and sends a 37-byte *cookie* (36 characters
//!   from `a-z2-7` and a NUL). Every data connection of the test sends the same cookie first,
//!   which is how a server tells data connections from new tests.
//! - After that the server leads with one-byte *states*; the client answers some of them.
//!   Parameters and results travel as a 4-byte big-endian length and a JSON object.
//! - A server refusing a test sends `SERVER_ERROR` followed by two 4-byte big-endian integers:
//!   an iperf3 error number (the client prints its text) and an errno.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Map, Value, json};

use loopscope_sys::{Readiness, wait_readable};

/// Cookie length on the wire: 36 characters and a terminating NUL.
pub(super) const COOKIE_LEN: usize = 37;
/// The characters a cookie is drawn from (RFC 4648's base32 alphabet, lower case).
const COOKIE_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The bytes a UDP data stream's first datagram carries (client to server), and the server's
/// answer once it has connected a socket to that client.
pub(super) const UDP_HELLO: [u8; 4] = *b"9876";
pub(super) const UDP_HELLO_REPLY: [u8; 4] = *b"6789";

/// What one control message may weigh at most: parameters are a few hundred bytes; results
/// list every stream, and a stock server adds its whole output when asked.
pub const MAX_PARAMS_JSON: usize = 64 * 1024;
pub(super) const MAX_RESULTS_JSON: usize = 16 * 1024 * 1024;

pub(super) type Cookie = [u8; COOKIE_LEN];

/// A fresh random cookie.
pub(super) fn new_cookie() -> Cookie {
    let mut cookie = [0u8; COOKIE_LEN];
    let mut rng = rand::rng();
    for byte in &mut cookie[..COOKIE_LEN - 1] {
        *byte = COOKIE_ALPHABET[rng.random_range(0..COOKIE_ALPHABET.len())];
    }
    cookie
}

/// Whether 37 bytes look like a cookie: printable characters, then the NUL.
pub(super) fn is_cookie(bytes: &Cookie) -> bool {
    bytes[COOKIE_LEN - 1] == 0 && bytes[..COOKIE_LEN - 1].iter().all(u8::is_ascii_graphic)
}

/// The control states (one byte each on the wire; the negative ones as their two's
/// complement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `TEST_START` (1): the server is setting the test up.
    TestStart,
    /// `TEST_RUNNING` (2): every stream is connected; data flows.
    TestRunning,
    /// `TEST_END` (4): the client ends the test.
    TestEnd,
    /// `PARAM_EXCHANGE` (9): the client is to send its parameters.
    ParamExchange,
    /// `CREATE_STREAMS` (10): the client is to connect the data streams.
    CreateStreams,
    /// `SERVER_TERMINATE` (11): the server ends the test early.
    ServerTerminate,
    /// `CLIENT_TERMINATE` (12): the client ends the test early.
    ClientTerminate,
    /// `EXCHANGE_RESULTS` (13): both sides send their results.
    ExchangeResults,
    /// `DISPLAY_RESULTS` (14): the server is done; the client prints.
    DisplayResults,
    /// `IPERF_START` (15).
    IperfStart,
    /// `IPERF_DONE` (16): the client is done with the control connection.
    IperfDone,
    /// `ACCESS_DENIED` (-1): the server is busy with another test.
    AccessDenied,
    /// `SERVER_ERROR` (-2): the server refuses; an error number and an errno follow.
    ServerError,
    /// loopscope's own: the server tells a loopscope client (one that sent a `"loopscope"`
    /// block) what it grants, as length-prefixed JSON, before CREATE_STREAMS. Never sent to
    /// a stock client.
    Grant,
}

impl State {
    /// The state's byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            State::TestStart => 1,
            State::TestRunning => 2,
            State::TestEnd => 4,
            State::ParamExchange => 9,
            State::CreateStreams => 10,
            State::ServerTerminate => 11,
            State::ClientTerminate => 12,
            State::ExchangeResults => 13,
            State::DisplayResults => 14,
            State::IperfStart => 15,
            State::IperfDone => 16,
            State::AccessDenied => 0xff,
            State::ServerError => 0xfe,
            State::Grant => GRANT_BYTE,
        }
    }

    /// The state a byte stands for; `None` for a byte no state uses.
    pub fn from_byte(byte: u8) -> Option<State> {
        Some(match byte {
            1 => State::TestStart,
            2 => State::TestRunning,
            4 => State::TestEnd,
            9 => State::ParamExchange,
            10 => State::CreateStreams,
            11 => State::ServerTerminate,
            12 => State::ClientTerminate,
            13 => State::ExchangeResults,
            14 => State::DisplayResults,
            15 => State::IperfStart,
            16 => State::IperfDone,
            0xff => State::AccessDenied,
            0xfe => State::ServerError,
            GRANT_BYTE => State::Grant,
            _ => return None,
        })
    }
}

/// A byte no iperf3 state uses.
const GRANT_BYTE: u8 = 100;

/// What a loopscope server grants a loopscope client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grant {
    /// The test ends by this much time at the latest.
    pub max_duration_ms: u64,
    /// The server holds each direction of the test to this many bits per second (0: none).
    pub max_rate_bps: u64,
}

impl Grant {
    /// The grant as the JSON object the server sends.
    pub fn to_json(&self) -> Value {
        json!({"max_duration_ms": self.max_duration_ms, "max_rate_bps": self.max_rate_bps})
    }

    /// The grant from the server's JSON object (a missing limit is no limit).
    pub fn from_json(object: &Map<String, Value>) -> Result<Grant, ParamError> {
        Ok(Grant {
            max_duration_ms: number(object, "max_duration_ms")?.unwrap_or(u64::MAX),
            max_rate_bps: number(object, "max_rate_bps")?.unwrap_or(0),
        })
    }
}

/// iperf3 error numbers a server sends with `SERVER_ERROR`, with the text the stock client
/// prints for each (observed by feeding each number to iperf3 3.12).
pub(super) mod error_code {
    pub(crate) const PARALLEL: i32 = 6;
    pub(crate) const BLOCK_SIZE: i32 = 7;
    pub(crate) const UDP_BLOCK_SIZE: i32 = 20;
    pub(crate) const BOTH_REVERSE_AND_BIDIR: i32 = 25;
    pub(crate) const TOTAL_RATE: i32 = 27;
    pub(crate) const RECEIVE_PARAMS: i32 = 114;
    pub(crate) const UNKNOWN_MESSAGE: i32 = 110;
    pub(crate) const SERVER_BUSY: i32 = 121;
    pub(crate) const CONGESTION: i32 = 134;
    pub(crate) const PROTOCOL: i32 = 131;
}

/// What an iperf3 error number means (the numbers a server is likely to send).
pub(super) fn error_text(code: i32) -> String {
    let text = match code {
        5 => "test duration too long for the server",
        6 => "number of parallel streams too large for the server",
        7 => "block size too large for the server",
        20 => "UDP block size invalid (16 to 65507 bytes)",
        21 => "bad TOS value",
        25 => "cannot be both reverse and bidirectional",
        27 => "total requested bit rate is larger than the server's limit",
        100..=109 => "the server failed to set up the test",
        110 => "the server received an unknown control message",
        113 | 114 => "the server could not read the test parameters",
        116 | 117 => "the server could not exchange results",
        119 => "the client has terminated",
        120 => "the server has terminated",
        121 => "the server is busy running a test; try again later",
        122..=130 => "the server could not set a socket option",
        131 => "protocol not supported by the server",
        134 => "congestion control algorithm not supported on the server",
        142 => "test authorization failed",
        _ => "",
    };
    if text.is_empty() {
        format!("iperf3 error {code}")
    } else {
        format!("{text} (iperf3 error {code})")
    }
}

/// What went wrong on the control connection.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A read or write failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The peer closed the connection.
    #[error("the peer closed the control connection {when}")]
    Closed {
        /// The step at which it closed.
        when: &'static str,
    },
    /// The peer said nothing for too long.
    #[error("no answer from the peer {when} within {seconds} s")]
    TimedOut {
        /// The step that waited.
        when: &'static str,
        /// How long it waited.
        seconds: u64,
    },
    /// The peer sent something iperf3's protocol does not have here.
    #[error("the peer sent {what} (is it an iperf3 or loopscope perf peer?)")]
    Garbage {
        /// What it sent, described.
        what: String,
    },
    /// The server refused the test (`SERVER_ERROR`).
    #[error("the server refused the test: {}", error_text(*code))]
    ServerError {
        /// The iperf3 error number (the client prints the text stock iperf3 gives it).
        code: i32,
        /// The errno the server gave with it (often 0).
        errno: i32,
    },
    /// The server is busy with another test (`ACCESS_DENIED`).
    #[error("the server is busy running a test; try again later")]
    AccessDenied,
    /// The server ended the test early.
    #[error("the server ended the test early (SERVER_TERMINATE)")]
    ServerTerminated,
    /// The client ended the test early.
    #[error("the client ended the test early")]
    ClientTerminated,
    /// Stopped by the user (Ctrl-C) or the caller.
    #[error("stopped")]
    Stopped,
}

/// A control or data connection's stream socket: TCP, or Unix for tests over Unix sockets.
#[derive(Debug)]
pub enum StreamSock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl StreamSock {
    pub fn try_clone(&self) -> io::Result<StreamSock> {
        Ok(match self {
            StreamSock::Tcp(stream) => StreamSock::Tcp(stream.try_clone()?),
            StreamSock::Unix(stream) => StreamSock::Unix(stream.try_clone()?),
        })
    }

    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        match self {
            StreamSock::Tcp(stream) => stream.shutdown(how),
            StreamSock::Unix(stream) => stream.shutdown(how),
        }
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            StreamSock::Tcp(stream) => stream.set_read_timeout(timeout),
            StreamSock::Unix(stream) => stream.set_read_timeout(timeout),
        }
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            StreamSock::Tcp(stream) => stream.set_write_timeout(timeout),
            StreamSock::Unix(stream) => stream.set_write_timeout(timeout),
        }
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            StreamSock::Tcp(stream) => stream.set_nonblocking(nonblocking),
            StreamSock::Unix(stream) => stream.set_nonblocking(nonblocking),
        }
    }

    /// `peer` as text, for reports (`unix` for Unix sockets without a name).
    pub fn peer_name(&self) -> String {
        match self {
            StreamSock::Tcp(stream) => stream
                .peer_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            StreamSock::Unix(_) => "unix".into(),
        }
    }

    pub fn local_name(&self) -> String {
        match self {
            StreamSock::Tcp(stream) => stream
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            StreamSock::Unix(_) => "unix".into(),
        }
    }

    pub fn is_tcp(&self) -> bool {
        matches!(self, StreamSock::Tcp(_))
    }
}

impl AsFd for StreamSock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            StreamSock::Tcp(stream) => stream.as_fd(),
            StreamSock::Unix(stream) => stream.as_fd(),
        }
    }
}

impl Read for &StreamSock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            StreamSock::Tcp(stream) => (&*stream).read(buf),
            StreamSock::Unix(stream) => (&*stream).read(buf),
        }
    }
}

impl Write for &StreamSock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamSock::Tcp(stream) => (&*stream).write(buf),
            StreamSock::Unix(stream) => (&*stream).write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How often a wait on the control connection looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The control connection: states and length-prefixed JSON, every read bounded in time and
/// size, every wait interruptible by the stop flag (Ctrl-C).
pub(super) struct Control {
    socket: StreamSock,
}

impl Control {
    pub(super) fn new(socket: StreamSock) -> Self {
        Control { socket }
    }

    pub(super) fn socket(&self) -> &StreamSock {
        &self.socket
    }

    pub(super) fn write_state(&self, state: State) -> Result<(), ControlError> {
        self.write_all(&[state.byte()], "cannot send a control state")
    }

    pub(super) fn write_cookie(&self, cookie: &Cookie) -> Result<(), ControlError> {
        self.write_all(cookie, "cannot send the cookie")
    }

    /// `SERVER_ERROR`, the iperf3 error number and an errno of 0.
    pub(super) fn write_server_error(&self, code: i32) -> Result<(), ControlError> {
        let mut message = vec![State::ServerError.byte()];
        message.extend_from_slice(&code.to_be_bytes());
        message.extend_from_slice(&0i32.to_be_bytes());
        self.write_all(&message, "cannot send the refusal")
    }

    pub(super) fn write_json(&self, value: &Value) -> Result<(), ControlError> {
        let text = serde_json::to_vec(value).map_err(|e| ControlError::Io {
            what: "cannot encode JSON",
            source: io::Error::other(e),
        })?;
        let length = u32::try_from(text.len()).map_err(|_| ControlError::Io {
            what: "cannot send JSON",
            source: io::Error::other("message longer than 4 GiB"),
        })?;
        let mut message = Vec::with_capacity(4 + text.len());
        message.extend_from_slice(&length.to_be_bytes());
        message.extend_from_slice(&text);
        self.write_all(&message, "cannot send JSON on the control connection")
    }

    fn write_all(&self, bytes: &[u8], what: &'static str) -> Result<(), ControlError> {
        (&self.socket)
            .write_all(bytes)
            .map_err(|source| ControlError::Io { what, source })
    }

    /// Reads one state byte. `when` says what was awaited, for errors.
    pub(super) fn read_state(
        &self,
        deadline: Option<Instant>,
        stop: Option<&AtomicBool>,
        when: &'static str,
    ) -> Result<State, ControlError> {
        let mut byte = [0u8; 1];
        self.read_exact(&mut byte, deadline, stop, when)?;
        State::from_byte(byte[0]).ok_or_else(|| ControlError::Garbage {
            what: format!("an unknown control byte 0x{:02x} {when}", byte[0]),
        })
    }

    /// Whether a byte is waiting, without reading it (`Ok(false)` after `wait`).
    pub(super) fn readable_within(&self, wait: Duration) -> Result<bool, ControlError> {
        match wait_readable(self.socket.as_fd(), Some(wait)) {
            Ok(Readiness::Ready) => Ok(true),
            Ok(_) => Ok(false),
            Err(source) => Err(ControlError::Io {
                what: "cannot wait on the control connection",
                source,
            }),
        }
    }

    /// Reads a length-prefixed JSON object of at most `max` bytes.
    pub(super) fn read_json(
        &self,
        max: usize,
        deadline: Option<Instant>,
        stop: Option<&AtomicBool>,
        when: &'static str,
    ) -> Result<Map<String, Value>, ControlError> {
        let mut length = [0u8; 4];
        self.read_exact(&mut length, deadline, stop, when)?;
        let length = u32::from_be_bytes(length) as usize;
        if length > max {
            return Err(ControlError::Garbage {
                what: format!("a {length}-byte JSON message {when} (at most {max} accepted)"),
            });
        }
        let mut text = vec![0u8; length];
        self.read_exact(&mut text, deadline, stop, when)?;
        match serde_json::from_slice::<Value>(&text) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(_) => Err(ControlError::Garbage {
                what: format!("JSON that is not an object {when}"),
            }),
            Err(e) => Err(ControlError::Garbage {
                what: format!("malformed JSON {when} ({e})"),
            }),
        }
    }

    /// Reads exactly `buf.len()` bytes by `deadline`, looking at `stop` while waiting.
    pub(super) fn read_exact(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
        stop: Option<&AtomicBool>,
        when: &'static str,
    ) -> Result<(), ControlError> {
        read_exact_by(&self.socket, buf, deadline, stop, when)
    }
}

/// Reads exactly `buf.len()` bytes from a stream by `deadline`; the stop flag ends the wait.
pub(super) fn read_exact_by(
    socket: &StreamSock,
    buf: &mut [u8],
    deadline: Option<Instant>,
    stop: Option<&AtomicBool>,
    when: &'static str,
) -> Result<(), ControlError> {
    let started = Instant::now();
    let mut filled = 0;
    while filled < buf.len() {
        if stop.is_some_and(|stop| stop.load(Ordering::Relaxed)) {
            return Err(ControlError::Stopped);
        }
        let wait = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ControlError::TimedOut {
                        when,
                        seconds: deadline.saturating_duration_since(started).as_secs().max(1),
                    });
                }
                left.min(STOP_POLL)
            }
            None => STOP_POLL,
        };
        match wait_readable(socket.as_fd(), Some(wait)) {
            Ok(Readiness::Ready) => {}
            Ok(_) => continue,
            Err(source) => {
                return Err(ControlError::Io {
                    what: "cannot wait on the control connection",
                    source,
                });
            }
        }
        match (&*socket).read(&mut buf[filled..]) {
            Ok(0) => return Err(ControlError::Closed { when }),
            Ok(count) => filled += count,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(ControlError::Closed { when });
            }
            Err(source) => {
                return Err(ControlError::Io {
                    what: "cannot read the control connection",
                    source,
                });
            }
        }
    }
    Ok(())
}

/// The test parameters a client sends, in iperf3's JSON vocabulary (what stock 3.12 sends is
/// noted on each field), plus loopscope's own block that a stock server ignores.
#[derive(Debug, Clone, PartialEq)]
pub struct TestParams {
    /// `"udp": true` (else TCP, `"tcp": true`).
    pub udp: bool,
    /// Seconds at the start left out of the results (`omit`).
    pub omit_seconds: u64,
    /// Test length in whole seconds (`time`; 0 when `num` or `blockcount` ends the test).
    pub time_seconds: u64,
    /// Bytes to move in all (`num`), split over the streams.
    pub bytes: u64,
    /// Blocks to move in all (`blockcount`).
    pub blocks: u64,
    /// Parallel streams (`parallel`).
    pub parallel: u32,
    /// The server sends (`reverse`).
    pub reverse: bool,
    /// Both sides send, on separate streams (`bidirectional`).
    pub bidirectional: bool,
    /// Bytes per write (`len`).
    pub length: u64,
    /// Target bit rate *per stream* (`bandwidth`; 0 is unlimited).
    pub bandwidth: u64,
    /// Socket buffer size asked for (`window`).
    pub window: Option<u64>,
    /// TCP maximum segment size asked for (`MSS`).
    pub mss: Option<u32>,
    /// TCP_NODELAY on the data streams (`nodelay`).
    pub nodelay: bool,
    /// TCP congestion control asked for (`congestion`).
    pub congestion: Option<String>,
    /// UDP sequence numbers on 64 bits (`udp_counters_64bit`).
    pub udp_counters_64bit: bool,
    /// The client wants the server's output back (`get_server_output`).
    pub get_server_output: bool,
    /// The client's version string (`client_version`).
    pub client_version: Option<String>,
    /// loopscope's own parameters, under `"loopscope"`.
    pub extension: Option<Extension>,
}

impl Default for TestParams {
    fn default() -> Self {
        TestParams {
            udp: false,
            omit_seconds: 0,
            time_seconds: 10,
            bytes: 0,
            blocks: 0,
            parallel: 1,
            reverse: false,
            bidirectional: false,
            length: 128 * 1024,
            bandwidth: 0,
            window: None,
            mss: None,
            nodelay: false,
            congestion: None,
            udp_counters_64bit: false,
            get_server_output: false,
            client_version: None,
            extension: None,
        }
    }
}

/// What a loopscope client asks beyond iperf3's parameters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extension {
    /// Test length in milliseconds (iperf3's `time` is whole seconds).
    pub time_ms: Option<u64>,
    /// `rr` or `crr`: the server answers each request of `length` bytes with `response_length`.
    pub request_response: Option<RequestResponse>,
}

/// The request-response test a loopscope client asks for (`--rr`, `--crr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestResponse {
    /// Bytes the server answers each request with.
    pub response_length: u64,
    /// A new connection per transaction (`--crr`).
    pub connect_per_transaction: bool,
}

impl TestParams {
    /// The parameters as the JSON object a client sends (stock iperf3's keys, plus
    /// `"loopscope"` when there is an extension).
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        if self.udp {
            object.insert("udp".into(), json!(true));
        } else {
            object.insert("tcp".into(), json!(true));
        }
        object.insert("omit".into(), json!(self.omit_seconds));
        object.insert("time".into(), json!(self.time_seconds));
        object.insert("num".into(), json!(self.bytes));
        object.insert("blockcount".into(), json!(self.blocks));
        if let Some(mss) = self.mss {
            object.insert("MSS".into(), json!(mss));
        }
        if self.nodelay {
            object.insert("nodelay".into(), json!(true));
        }
        object.insert("parallel".into(), json!(self.parallel));
        if self.reverse {
            object.insert("reverse".into(), json!(true));
        }
        if self.bidirectional {
            object.insert("bidirectional".into(), json!(true));
        }
        if let Some(window) = self.window {
            object.insert("window".into(), json!(window));
        }
        object.insert("len".into(), json!(self.length));
        if self.bandwidth > 0 {
            object.insert("bandwidth".into(), json!(self.bandwidth));
        }
        object.insert("pacing_timer".into(), json!(1000));
        if let Some(congestion) = &self.congestion {
            object.insert("congestion".into(), json!(congestion));
        }
        if self.get_server_output {
            object.insert("get_server_output".into(), json!(1));
        }
        if self.udp_counters_64bit {
            object.insert("udp_counters_64bit".into(), json!(1));
        }
        object.insert(
            "client_version".into(),
            json!(self.client_version.as_deref().unwrap_or("3.12")),
        );
        if let Some(extension) = &self.extension {
            let mut ours = Map::new();
            ours.insert("version".into(), json!(1));
            if let Some(time_ms) = extension.time_ms {
                ours.insert("time_ms".into(), json!(time_ms));
            }
            if let Some(rr) = extension.request_response {
                ours.insert(
                    "mode".into(),
                    json!(if rr.connect_per_transaction {
                        "crr"
                    } else {
                        "rr"
                    }),
                );
                ours.insert("response_len".into(), json!(rr.response_length));
            }
            object.insert("loopscope".into(), Value::Object(ours));
        }
        Value::Object(object)
    }

    /// Reads what a client sent. Unknown keys are ignored (newer iperf3 versions add some);
    /// known keys of the wrong type are an error.
    pub fn from_json(object: &Map<String, Value>) -> Result<TestParams, ParamError> {
        let defaults = TestParams::default();
        let udp = flag(object, "udp")?;
        let tcp = flag(object, "tcp")?;
        if object.contains_key("sctp") && flag(object, "sctp")? {
            return Err(ParamError::Unsupported("SCTP".into()));
        }
        if udp && tcp {
            return Err(ParamError::Bad("both tcp and udp".into()));
        }
        let extension = match object.get("loopscope") {
            None | Some(Value::Null) => None,
            Some(Value::Object(ours)) => Some(Extension {
                time_ms: number(ours, "time_ms")?,
                request_response: match ours.get("mode").and_then(Value::as_str) {
                    None | Some("throughput") => None,
                    Some(mode @ ("rr" | "crr")) => Some(RequestResponse {
                        response_length: number(ours, "response_len")?.unwrap_or(1),
                        connect_per_transaction: mode == "crr",
                    }),
                    Some(other) => {
                        return Err(ParamError::Unsupported(format!("mode {other}")));
                    }
                },
            }),
            Some(_) => return Err(ParamError::Bad("'loopscope' is not an object".into())),
        };
        Ok(TestParams {
            udp,
            omit_seconds: number(object, "omit")?.unwrap_or(0),
            time_seconds: number(object, "time")?.unwrap_or(defaults.time_seconds),
            bytes: number(object, "num")?.unwrap_or(0),
            blocks: number(object, "blockcount")?.unwrap_or(0),
            parallel: number(object, "parallel")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
                .unwrap_or(1),
            reverse: flag(object, "reverse")?,
            bidirectional: flag(object, "bidirectional")?,
            length: number(object, "len")?.unwrap_or(0),
            bandwidth: number(object, "bandwidth")?.unwrap_or(0),
            window: number(object, "window")?,
            mss: number(object, "MSS")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            nodelay: flag(object, "nodelay")?,
            congestion: object
                .get("congestion")
                .and_then(Value::as_str)
                .map(str::to_string),
            udp_counters_64bit: flag(object, "udp_counters_64bit")?,
            get_server_output: flag(object, "get_server_output")?,
            client_version: object
                .get("client_version")
                .and_then(Value::as_str)
                .map(str::to_string),
            extension,
        })
    }

    /// The test's length, to the millisecond when a loopscope client said so.
    pub fn duration(&self) -> Option<Duration> {
        if let Some(ms) = self.extension.as_ref().and_then(|e| e.time_ms) {
            return Some(Duration::from_millis(ms));
        }
        (self.time_seconds > 0).then(|| Duration::from_secs(self.time_seconds))
    }
}

/// Test parameters or results that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    /// A field of the wrong type or out of range.
    #[error("parameter {0}")]
    Bad(String),
    /// Something this side does not do (SCTP, for one).
    #[error("{0} is not supported")]
    Unsupported(String),
}

/// iperf3 sends booleans as `true` and some flags as `1`.
fn flag(object: &Map<String, Value>, key: &str) -> Result<bool, ParamError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(Value::Number(number)) => Ok(number.as_f64().is_some_and(|n| n != 0.0)),
        Some(_) => Err(ParamError::Bad(format!("'{key}' is not a flag"))),
    }
}

/// A non-negative integer; iperf3 may send whole numbers as floats.
fn number(object: &Map<String, Value>, key: &str) -> Result<Option<u64>, ParamError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => {
            if let Some(n) = number.as_u64() {
                return Ok(Some(n));
            }
            match number.as_f64() {
                Some(f) if f >= 0.0 && f.is_finite() && f <= u64::MAX as f64 => Ok(Some(f as u64)),
                _ => Err(ParamError::Bad(format!(
                    "'{key}' = {number} is out of range"
                ))),
            }
        }
        Some(_) => Err(ParamError::Bad(format!("'{key}' is not a number"))),
    }
}

/// One side's results, as exchanged at the end of a test.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestResults {
    /// CPU the side used over the test, percent of one core (`cpu_util_total`).
    pub cpu_util_total: f64,
    /// Of it, in user mode (`cpu_util_user`).
    pub cpu_util_user: f64,
    /// Of it, in the kernel (`cpu_util_system`).
    pub cpu_util_system: f64,
    /// Whether this side's sending streams report retransmits (`None`: it sent nothing).
    pub sender_has_retransmits: Option<bool>,
    /// The TCP congestion control the side used (`congestion_used`).
    pub congestion_used: Option<String>,
    /// Each stream's counts.
    pub streams: Vec<StreamResult>,
    /// A stock server's output, when the client asked for it.
    pub server_output_text: Option<String>,
}

/// One stream's counts in the results (`streams[]`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamResult {
    /// The stream's number (`id`).
    pub id: i64,
    /// Bytes this side moved on it (`bytes`).
    pub bytes: u64,
    /// `None` where this side did not send on the stream (iperf3 writes -1, as an unsigned
    /// 64-bit number).
    pub retransmits: Option<u64>,
    /// RFC 3550 interarrival jitter, seconds (UDP receivers).
    pub jitter_s: f64,
    /// UDP datagrams lost (`errors`).
    pub errors: i64,
    /// UDP datagrams (`packets`).
    pub packets: i64,
    /// When the stream started, seconds into the test (`start_time`).
    pub start_time: f64,
    /// When it ended (`end_time`).
    pub end_time: f64,
    /// loopscope's addition: UDP datagrams that arrived out of order.
    pub out_of_order: Option<u64>,
}

/// iperf3's "unknown" integer as stock 3.12 writes it: -1 printed as an unsigned 64-bit value.
const IPERF3_UNKNOWN: u64 = u64::MAX;

impl TestResults {
    /// The results as the JSON object iperf3 exchanges.
    pub fn to_json(&self) -> Value {
        let streams: Vec<Value> = self
            .streams
            .iter()
            .map(|stream| {
                let mut object = Map::new();
                object.insert("id".into(), json!(stream.id));
                object.insert("bytes".into(), json!(stream.bytes));
                object.insert(
                    "retransmits".into(),
                    json!(stream.retransmits.unwrap_or(IPERF3_UNKNOWN)),
                );
                object.insert("jitter".into(), json!(stream.jitter_s));
                object.insert("errors".into(), json!(stream.errors));
                object.insert("packets".into(), json!(stream.packets));
                object.insert("start_time".into(), json!(stream.start_time));
                object.insert("end_time".into(), json!(stream.end_time));
                if let Some(out_of_order) = stream.out_of_order {
                    object.insert("out_of_order".into(), json!(out_of_order));
                }
                Value::Object(object)
            })
            .collect();
        let mut object = Map::new();
        object.insert("cpu_util_total".into(), json!(self.cpu_util_total));
        object.insert("cpu_util_user".into(), json!(self.cpu_util_user));
        object.insert("cpu_util_system".into(), json!(self.cpu_util_system));
        object.insert(
            "sender_has_retransmits".into(),
            match self.sender_has_retransmits {
                Some(has) => json!(u8::from(has)),
                None => json!(IPERF3_UNKNOWN),
            },
        );
        if let Some(congestion) = &self.congestion_used {
            object.insert("congestion_used".into(), json!(congestion));
        }
        object.insert("streams".into(), Value::Array(streams));
        if let Some(text) = &self.server_output_text {
            object.insert("server_output_text".into(), json!(text));
        }
        Value::Object(object)
    }

    /// The results from the peer's JSON object.
    pub fn from_json(object: &Map<String, Value>) -> Result<TestResults, ParamError> {
        let float = |object: &Map<String, Value>, key: &str| -> Result<f64, ParamError> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(0.0),
                Some(Value::Number(n)) => Ok(n.as_f64().unwrap_or(0.0)),
                Some(_) => Err(ParamError::Bad(format!("'{key}' is not a number"))),
            }
        };
        let signed = |object: &Map<String, Value>, key: &str| -> Result<Option<i64>, ParamError> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => Ok(if let Some(value) = n.as_i64() {
                    // -1 (or any negative) is iperf3's "unknown"
                    (value >= 0).then_some(value)
                } else if let Some(value) = n.as_u64() {
                    // -1 written unsigned, as stock 3.12 does
                    (value != IPERF3_UNKNOWN).then(|| i64::try_from(value).unwrap_or(i64::MAX))
                } else {
                    n.as_f64()
                        .filter(|f| *f >= 0.0 && f.is_finite())
                        .map(|f| f as i64)
                }),
                Some(_) => Err(ParamError::Bad(format!("'{key}' is not a number"))),
            }
        };
        let streams = match object.get("streams") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    let Value::Object(stream) = item else {
                        return Err(ParamError::Bad("a stream result is not an object".into()));
                    };
                    Ok(StreamResult {
                        id: signed(stream, "id")?.unwrap_or(-1),
                        bytes: number(stream, "bytes")?.unwrap_or(0),
                        retransmits: signed(stream, "retransmits")?.map(|v| v as u64),
                        jitter_s: float(stream, "jitter")?,
                        errors: signed(stream, "errors")?.unwrap_or(0),
                        packets: signed(stream, "packets")?.unwrap_or(0),
                        start_time: float(stream, "start_time")?,
                        end_time: float(stream, "end_time")?,
                        out_of_order: number(stream, "out_of_order")?,
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ParamError::Bad("'streams' is not a list".into())),
        };
        Ok(TestResults {
            cpu_util_total: float(object, "cpu_util_total")?,
            cpu_util_user: float(object, "cpu_util_user")?,
            cpu_util_system: float(object, "cpu_util_system")?,
            sender_has_retransmits: signed(object, "sender_has_retransmits")?.map(|v| v != 0),
            congestion_used: object
                .get("congestion_used")
                .and_then(Value::as_str)
                .map(str::to_string),
            streams,
            server_output_text: object
                .get("server_output_text")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

/// iperf3's stream numbering, seen on the wire: the first stream is 1, the next ones 3, 4, 5...
pub(super) fn stream_id(index: usize) -> i64 {
    if index == 0 { 1 } else { index as i64 + 2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte for byte what stock iperf3 3.12 sent for `iperf3 -c ... -t 1 -P 2` (strace).
    const STOCK_PARAMS: &str = r#"{"tcp":true,"omit":0,"time":1,"num":0,"blockcount":0,"parallel":2,"len":131072,"pacing_timer":1000,"client_version":"3.12"}"#;
    /// What a stock 3.12 receiver sent back at the end of that test.
    const STOCK_RECEIVER_RESULTS: &str = r#"{"cpu_util_total":11.838569497038911,"cpu_util_user":1.4312014488632112,"cpu_util_system":10.407268264207991,"sender_has_retransmits":18446744073709551615,"congestion_used":"bbr","streams":[{"id":1,"bytes":512491520,"retransmits":18446744073709551615,"jitter":0,"errors":0,"packets":0,"start_time":0,"end_time":1.002158},{"id":3,"bytes":490209280,"retransmits":18446744073709551615,"jitter":0,"errors":0,"packets":0,"start_time":0,"end_time":1.002159}]}"#;

    fn object(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text).unwrap() {
            Value::Object(object) => object,
            _ => unreachable!(),
        }
    }

    #[test]
    fn stock_parameters_read_and_write_back_the_same() {
        let params = TestParams::from_json(&object(STOCK_PARAMS)).unwrap();
        assert!(!params.udp);
        assert_eq!(params.time_seconds, 1);
        assert_eq!(params.parallel, 2);
        assert_eq!(params.length, 131_072);
        assert_eq!(
            serde_json::to_string(&params.to_json()).unwrap(),
            STOCK_PARAMS
        );
    }

    #[test]
    fn stock_udp_reverse_parameters() {
        let text = r#"{"udp":true,"omit":0,"time":1,"num":0,"blockcount":0,"parallel":1,"reverse":true,"len":32768,"bandwidth":5000000,"pacing_timer":1000,"client_version":"3.12"}"#;
        let params = TestParams::from_json(&object(text)).unwrap();
        assert!(params.udp && params.reverse);
        assert_eq!(params.bandwidth, 5_000_000);
        assert_eq!(serde_json::to_string(&params.to_json()).unwrap(), text);
    }

    #[test]
    fn stock_results_with_unsigned_minus_one() {
        let results = TestResults::from_json(&object(STOCK_RECEIVER_RESULTS)).unwrap();
        assert_eq!(results.sender_has_retransmits, None);
        assert_eq!(results.streams.len(), 2);
        assert_eq!(results.streams[0].id, 1);
        assert_eq!(results.streams[1].id, 3);
        assert_eq!(results.streams[0].bytes, 512_491_520);
        assert_eq!(results.streams[0].retransmits, None);
        let again =
            TestResults::from_json(&object(&serde_json::to_string(&results.to_json()).unwrap()))
                .unwrap();
        assert_eq!(again, results);
        assert!(
            serde_json::to_string(&results.to_json())
                .unwrap()
                .contains(r#""sender_has_retransmits":18446744073709551615"#)
        );
    }

    #[test]
    fn wrong_types_are_errors_not_panics() {
        assert!(TestParams::from_json(&object(r#"{"time":"long"}"#)).is_err());
        assert!(TestParams::from_json(&object(r#"{"time":-5}"#)).is_err());
        assert!(TestParams::from_json(&object(r#"{"tcp":true,"udp":true}"#)).is_err());
        assert!(TestResults::from_json(&object(r#"{"streams":7}"#)).is_err());
        assert!(TestResults::from_json(&object(r#"{"streams":[1]}"#)).is_err());
    }

    #[test]
    fn state_bytes_round_trip_and_unknown_bytes_are_refused() {
        for byte in 0..=255u8 {
            if let Some(state) = State::from_byte(byte) {
                assert_eq!(state.byte(), byte);
            }
        }
        assert_eq!(State::from_byte(9), Some(State::ParamExchange));
        assert_eq!(State::from_byte(0xfe), Some(State::ServerError));
        assert_eq!(State::from_byte(0x63), None);
    }

    #[test]
    fn cookies_look_like_stock_ones() {
        let cookie = new_cookie();
        assert!(is_cookie(&cookie));
        assert!(cookie[..36].iter().all(|b| COOKIE_ALPHABET.contains(b)));
        let stock: Cookie = *b"o4kz3z2c7lred5d6e5zqfwkjvmavldjh2zng\0";
        assert!(is_cookie(&stock));
        let mut garbage = stock;
        garbage[36] = b'x';
        assert!(!is_cookie(&garbage));
    }

    #[test]
    fn stream_ids_follow_stock_numbering() {
        assert_eq!((0..4).map(stream_id).collect::<Vec<_>>(), vec![1, 3, 4, 5]);
    }
}
