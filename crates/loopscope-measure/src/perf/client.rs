//! The client: runs a test against a `loopscope perf --server` or a stock `iperf3 -s`.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use loopscope_link::adapter::impair::ImpairmentConfig;
use loopscope_link::transport::ip::{self, IpOptions};
use loopscope_sys::{CpuTime, thread_cpu_time};
use socket2::{SockRef, Socket, Type};

use super::control::{
    Control, ControlError, Cookie, Extension, Grant, MAX_PARAMS_JSON, MAX_RESULTS_JSON,
    RequestResponse, State, StreamResult, StreamSock, TestParams, TestResults, UDP_HELLO,
    UDP_HELLO_REPLY, new_cookie, stream_id,
};
use super::report::{
    Interval, IntervalStream, LoadFigures, PeerFigures, Percentiles, PerfEvent, PerfSummary,
    StreamSummary, UdpFigures, nanos_histogram,
};
use super::stream::{DataSocket, Role, RunControl, Stream, WorkerOptions, spawn_worker};
use super::{Direction, PerfError, SocketTuning};

/// Where the far end is and how to reach it.
#[derive(Debug, Clone)]
pub enum Transport {
    /// TCP control connection (and TCP or UDP data) to the first address that answers.
    Tcp {
        /// The addresses the endpoint resolved to, tried in order.
        peers: Vec<SocketAddr>,
        /// Source address and interface to send from.
        source: IpOptions,
    },
    /// Unix stream sockets for control and data.
    Unix(std::os::unix::net::SocketAddr),
}

/// How a `perf` client test runs, in iperf3's terms where it has them.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The endpoint as the user wrote it, for reports.
    pub link: String,
    /// Where the far end is and how to reach it.
    pub transport: Transport,
    /// UDP data streams (the control connection stays TCP).
    pub udp: bool,
    /// Speak to a stock iperf3 server: send nothing iperf3 does not know.
    pub stock: bool,
    /// How long the test runs (`-t`).
    pub duration: Duration,
    /// Bytes to move instead of a duration.
    pub bytes: Option<u64>,
    /// Data streams (`-P`), each on its own thread.
    pub parallel: u32,
    /// Which way the bytes go.
    pub direction: Direction,
    /// Bytes per write (per datagram for UDP).
    pub length: usize,
    /// Bit rate per stream (0: unlimited).
    pub bandwidth: u64,
    /// Socket settings of the data streams.
    pub tuning: SocketTuning,
    /// Interval reports (None: none).
    pub interval: Option<Duration>,
    /// Receive TCP with MSG_TRUNC: the kernel discards the bytes without copying them.
    pub skip_rx_copy: bool,
    /// Send TCP with MSG_ZEROCOPY.
    pub zerocopy: bool,
    /// Impairment applied to sent UDP datagrams.
    pub impair: Option<ImpairmentConfig>,
    /// 64-bit UDP sequence numbers (iperf3 `--udp-counters-64bit`).
    pub udp_counters_64bit: bool,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Request-response instead of throughput.
    pub request_response: Option<super::rr::RrOptions>,
}

/// How long each setup step and the results exchange may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the kernel's RTT estimate is sampled on sending TCP streams.
const RTT_SAMPLE: Duration = Duration::from_millis(100);

/// Runs one test. `Err` only when nothing was measured (cannot connect, refused, garbage
/// before the test started); a test that breaks off returns its partial summary.
pub fn run_client(
    options: &ClientOptions,
    stop: &AtomicBool,
    events: &mut dyn FnMut(&PerfEvent),
) -> Result<PerfSummary, PerfError> {
    let cpu_before = thread_cpu_time().unwrap_or_default();
    let control_socket = connect_stream(options, None)?;
    let control = Control::new(control_socket);
    let cookie = new_cookie();
    control.write_cookie(&cookie)?;
    let params = test_params(options, &control)?;
    let deadline = || Some(Instant::now() + STEP_TIMEOUT);

    // Setup: the server leads; answer until it says the test runs.
    let mut streams: Vec<Arc<Stream>> = Vec::new();
    let mut grant = None;
    loop {
        match control.read_state(deadline(), Some(stop), "during setup")? {
            State::ParamExchange => control.write_json(&params.to_json())?,
            State::Grant => {
                let object =
                    control.read_json(MAX_PARAMS_JSON, deadline(), Some(stop), "with the grant")?;
                grant = Some(
                    Grant::from_json(&object).map_err(|e| ControlError::Garbage {
                        what: format!("an unusable grant ({e})"),
                    })?,
                );
            }
            State::CreateStreams => {
                if options.request_response.is_some() && grant.is_none() {
                    return Err(PerfError::Usage(
                        "the server does not offer request-response (is it a stock iperf3?): \
                         --rr and --crr need 'loopscope perf --server'"
                            .into(),
                    ));
                }
                streams = open_streams(options, &params, &control, &cookie)?;
            }
            State::TestStart => {}
            State::TestRunning => break,
            State::AccessDenied => return Err(ControlError::AccessDenied.into()),
            State::ServerError => return Err(read_server_error(&control)),
            State::ServerTerminate => return Err(ControlError::ServerTerminated.into()),
            other => {
                return Err(ControlError::Garbage {
                    what: format!("the state {other:?} during setup"),
                }
                .into());
            }
        }
    }
    if streams.is_empty() {
        return Err(ControlError::Garbage {
            what: "TEST_RUNNING before CREATE_STREAMS".into(),
        }
        .into());
    }
    // A loopscope server says what it allows; a test longer than that is cut to it.
    let mut limits = Vec::new();
    let mut cut = false;
    let mut capped = options.clone();
    if let Some(grant) = grant {
        let allowed = Duration::from_millis(grant.max_duration_ms);
        if options.bytes.is_none() && options.duration > allowed {
            capped.duration = allowed;
            cut = true;
            limits.push(format!(
                "the server allows tests of at most {} s; this one was cut to that",
                allowed.as_secs_f64()
            ));
        }
        let asked = options
            .bandwidth
            .saturating_mul(u64::from(options.parallel));
        if grant.max_rate_bps > 0 && asked > grant.max_rate_bps {
            limits.push(format!(
                "the server holds each direction to {}",
                super::report::format_rate(grant.max_rate_bps as f64)
            ));
        }
    }
    let server_limit = (!limits.is_empty()).then(|| (limits.join("; "), cut));
    let options = &capped;
    events(&PerfEvent::Connected {
        link: options.link.clone(),
        local: control.socket().local_name(),
        remote: control.socket().peer_name(),
        streams: streams.len(),
    });

    if let Some(rr) = &options.request_response {
        let mut summary =
            super::rr::run_rr_client(options, rr, control, streams, stop, cpu_before, cookie)?;
        note_server_limit(&mut summary, server_limit);
        return Ok(summary);
    }

    let send_budget = match (options.bytes, options.direction) {
        (Some(bytes), Direction::Send | Direction::Bidir) => Some(bytes),
        _ => None,
    };
    let run = Arc::new(RunControl::new(send_budget));
    let worker_options = WorkerOptions {
        // The length the test was announced with (UDP's default is only known once the
        // control connection is up).
        length: params.length as usize,
        rate_bps: options.bandwidth,
        counters_64bit: options.udp_counters_64bit,
        skip_rx_copy: options.skip_rx_copy,
        zerocopy: options.zerocopy,
        impair: options.impair.clone(),
    };
    let mut workers = Vec::new();
    for stream in &streams {
        workers.push((
            stream.role,
            spawn_worker(Arc::clone(stream), Arc::clone(&run), worker_options.clone())
                .map_err(|e| PerfError::io("cannot start a stream thread", e))?,
        ));
    }

    let mut sampler = Sampler::new(&streams, options.interval);
    let ending = watch_run(
        options,
        &control,
        &streams,
        &run,
        stop,
        &mut sampler,
        events,
    );
    let run_seconds = run.started.elapsed().as_secs_f64();

    // Stop sending; what the senders wrote is final.
    run.stop_senders.store(true, Ordering::Relaxed);
    let (senders, receivers): (Vec<_>, Vec<_>) = workers
        .into_iter()
        .partition(|(role, _)| *role == Role::Send);
    join_all(senders);
    let final_info: Vec<_> = streams.iter().map(|s| s.socket.tcp_info()).collect();
    let retransmits: Vec<Option<u64>> = streams.iter().map(|s| s.retransmits()).collect();
    for stream in streams.iter().filter(|s| s.role == Role::Send) {
        stream.socket.finish_sending();
    }

    let mut ended_early = ending.reason();
    let mut peer_results = None;
    let ended = if ending.exchange_results() {
        end_test(&control)
    } else {
        Err(PerfError::Control(ControlError::Stopped))
    };
    // The server has stopped sending (or is gone): receivers take what is queued and stop.
    run.drain_receivers.store(true, Ordering::Relaxed);
    if ended.is_err() {
        run.abort.store(true, Ordering::Relaxed);
    }
    join_all(receivers);
    match ended {
        Ok(()) => {
            let cpu =
                thread_cpu_time().unwrap_or_default().since(cpu_before) + worker_cpu(&streams);
            // The client speaks first: the server's count is not known yet.
            let ours = local_results(&streams, cpu, run_seconds, &retransmits, None);
            match exchange_results(&control, &ours) {
                Ok(results) => peer_results = Some(results),
                Err(error) => ended_early = Some(error.to_string()),
            }
        }
        Err(PerfError::Control(ControlError::Stopped)) => {}
        Err(error) => ended_early = Some(error.to_string()),
    }
    for stream in &streams {
        stream.socket.close_both();
    }

    let cpu = thread_cpu_time().unwrap_or_default().since(cpu_before) + worker_cpu(&streams);
    let mut summary = summarize(
        options,
        &streams,
        &final_info,
        &retransmits,
        run_seconds,
        cpu,
        peer_results.as_ref(),
        sampler,
        ended_early,
        &ending,
    );
    note_server_limit(&mut summary, server_limit);
    Ok(summary)
}

/// A test the server cut short did not run as asked: it fails, saying why.
fn note_server_limit(summary: &mut PerfSummary, limit: Option<(String, bool)>) {
    if let Some((limit, cut)) = limit {
        if cut {
            summary.passed = false;
        }
        summary.server_limit = Some(limit);
    }
}

fn join_all(workers: Vec<(Role, JoinHandle<()>)>) {
    for (_, worker) in workers {
        let _ = worker.join();
    }
}

pub(super) fn worker_cpu(streams: &[Arc<Stream>]) -> CpuTime {
    streams
        .iter()
        .filter_map(|s| s.cpu.lock().ok().map(|c| *c))
        .fold(CpuTime::default(), |a, b| a + b)
}

fn test_params(options: &ClientOptions, control: &Control) -> Result<TestParams, PerfError> {
    let whole_seconds = options.duration.as_secs_f64().ceil() as u64;
    let length = if options.udp && options.length == 0 {
        udp_default_length(control)
    } else {
        options.length
    };
    let extension = (!options.stock).then(|| Extension {
        time_ms: options
            .bytes
            .is_none()
            .then_some(options.duration.as_millis() as u64),
        request_response: options.request_response.as_ref().map(|rr| RequestResponse {
            response_length: rr.response_length as u64,
            connect_per_transaction: rr.connect_per_transaction,
        }),
    });
    Ok(TestParams {
        udp: options.udp,
        omit_seconds: 0,
        time_seconds: if options.bytes.is_some() {
            0
        } else {
            whole_seconds.max(1)
        },
        bytes: options.bytes.unwrap_or(0),
        blocks: 0,
        parallel: options.parallel,
        reverse: options.direction == Direction::Receive,
        bidirectional: options.direction == Direction::Bidir,
        length: length as u64,
        bandwidth: options.bandwidth,
        window: options.tuning.window.map(|w| w as u64),
        mss: options.tuning.mss,
        nodelay: options.tuning.nodelay,
        congestion: options.tuning.congestion.clone(),
        udp_counters_64bit: options.udp_counters_64bit,
        get_server_output: false,
        client_version: None,
        extension,
    })
}

/// iperf3 sizes UDP datagrams by the control connection's MSS; so do we, when not told.
fn udp_default_length(control: &Control) -> usize {
    match control.socket() {
        StreamSock::Tcp(stream) => SockRef::from(stream)
            .tcp_mss()
            .map_or(1460, |mss| mss as usize)
            .clamp(64, 65_507),
        StreamSock::Unix(_) => 1460,
    }
}

fn read_server_error(control: &Control) -> PerfError {
    let mut codes = [0u8; 8];
    match control.read_exact(
        &mut codes,
        Some(Instant::now() + STEP_TIMEOUT),
        None,
        "after SERVER_ERROR",
    ) {
        Ok(()) => ControlError::ServerError {
            code: i32::from_be_bytes([codes[0], codes[1], codes[2], codes[3]]),
            errno: i32::from_be_bytes([codes[4], codes[5], codes[6], codes[7]]),
        }
        .into(),
        Err(error) => error.into(),
    }
}

/// Connects a control or data stream socket, tuned when it carries data.
pub(super) fn connect_stream(
    options: &ClientOptions,
    tuning: Option<&SocketTuning>,
) -> Result<StreamSock, PerfError> {
    match &options.transport {
        Transport::Unix(address) => UnixStream::connect_addr(address)
            .map(StreamSock::Unix)
            .map_err(|e| PerfError::Connect {
                link: options.link.clone(),
                source: e,
            }),
        Transport::Tcp { peers, source } => {
            let mut last = None;
            for peer in peers {
                let attempt = (|| {
                    let socket = ip::new_socket(peer, Type::STREAM)?;
                    source.apply(&socket, peer)?;
                    if let Some(tuning) = tuning {
                        tuning.apply_before_connect(&socket)?;
                    }
                    socket.connect_timeout(&(*peer).into(), options.connect_timeout)?;
                    // The control connection carries single bytes that must not wait.
                    socket.set_tcp_nodelay(tuning.is_none_or(|t| t.nodelay))?;
                    Ok::<_, std::io::Error>(TcpStream::from(socket))
                })();
                match attempt {
                    Ok(stream) => return Ok(StreamSock::Tcp(stream)),
                    Err(e) => last = Some(e),
                }
            }
            Err(PerfError::Connect {
                link: options.link.clone(),
                source: last.unwrap_or_else(|| std::io::Error::other("no address")),
            })
        }
    }
}

/// Opens the data streams CREATE_STREAMS asks for: sending ones first, then receiving ones
/// (iperf3's order for `--bidir`).
fn open_streams(
    options: &ClientOptions,
    params: &TestParams,
    control: &Control,
    cookie: &Cookie,
) -> Result<Vec<Arc<Stream>>, PerfError> {
    let parallel = params.parallel as usize;
    let roles: Vec<Role> = match options.direction {
        Direction::Send => vec![Role::Send; parallel],
        Direction::Receive => vec![Role::Receive; parallel],
        Direction::Bidir => [vec![Role::Send; parallel], vec![Role::Receive; parallel]].concat(),
    };
    let mut streams = Vec::with_capacity(roles.len());
    for (index, role) in roles.into_iter().enumerate() {
        let socket = if options.udp {
            DataSocket::Udp(open_udp_stream(options, control)?)
        } else {
            let stream = connect_stream(options, Some(&options.tuning))?;
            (&stream)
                .write_all_checked(cookie)
                .map_err(|e| PerfError::io("cannot send the cookie on a data connection", e))?;
            DataSocket::Stream(stream)
        };
        streams.push(Arc::new(Stream::new(stream_id(index), role, socket)));
    }
    Ok(streams)
}

trait WriteAllChecked {
    fn write_all_checked(self, bytes: &[u8]) -> std::io::Result<()>;
}

impl WriteAllChecked for &StreamSock {
    fn write_all_checked(mut self, bytes: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self, bytes)
    }
}

/// A UDP data stream: connect to the server's port and say hello until it answers.
fn open_udp_stream(options: &ClientOptions, control: &Control) -> Result<UdpSocket, PerfError> {
    let StreamSock::Tcp(control_stream) = control.socket() else {
        return Err(PerfError::Usage(
            "UDP data needs a TCP control connection (use udp:// or iperf3://)".into(),
        ));
    };
    let server = control_stream
        .peer_addr()
        .map_err(|e| PerfError::io("cannot read the server's address", e))?;
    let Transport::Tcp { source, .. } = &options.transport else {
        unreachable!("a TCP control connection comes from a TCP transport")
    };
    let socket: Socket = ip::new_socket(&server, Type::DGRAM)
        .map_err(|e| PerfError::io("cannot open a UDP socket", e))?;
    source
        .apply(&socket, &server)
        .map_err(|e| PerfError::io("cannot bind the UDP socket", e))?;
    if let Some(window) = options.tuning.window {
        let _ = socket.set_recv_buffer_size(window);
        let _ = socket.set_send_buffer_size(window);
    }
    socket
        .connect(&server.into())
        .map_err(|e| PerfError::io("cannot connect the UDP socket", e))?;
    let socket = UdpSocket::from(socket);
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| PerfError::io("cannot set a UDP timeout", e))?;
    // A datagram can be lost even on loopback: say hello a few times.
    let mut reply = [0u8; 64];
    for _ in 0..6 {
        socket
            .send(&UDP_HELLO)
            .map_err(|e| PerfError::io("cannot send the UDP hello", e))?;
        match socket.recv(&mut reply) {
            Ok(4) if reply[..4] == UDP_HELLO_REPLY => return Ok(socket),
            Ok(count) => {
                return Err(ControlError::Garbage {
                    what: format!("a {count}-byte answer to the UDP hello"),
                }
                .into());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(PerfError::io("no answer to the UDP hello", e)),
        }
    }
    Err(PerfError::io(
        "no answer to the UDP hello",
        std::io::Error::from(std::io::ErrorKind::TimedOut),
    ))
}

/// How the running phase ended.
pub(super) enum Ending {
    /// Time or bytes reached.
    Finished,
    /// Ctrl-C: end the test now and exchange results as usual.
    Interrupted,
    /// The server said SERVER_TERMINATE (its limit, or it was stopped).
    ServerTerminated,
    /// The server refused to go on, closed the control connection or sent garbage.
    Failed(String),
}

impl Ending {
    pub(super) fn exchange_results(&self) -> bool {
        matches!(self, Ending::Finished | Ending::Interrupted)
    }

    pub(super) fn reason(&self) -> Option<String> {
        match self {
            Ending::Finished => None,
            Ending::Interrupted => Some("interrupted".into()),
            Ending::ServerTerminated => Some(
                "the server ended the test (SERVER_TERMINATE: its duration limit, or it was stopped)"
                    .into(),
            ),
            Ending::Failed(why) => Some(why.clone()),
        }
    }

    pub(super) fn passed(&self) -> bool {
        matches!(self, Ending::Finished | Ending::Interrupted)
    }
}

/// Interval reports and RTT samples, taken while the test runs.
pub(super) struct Sampler {
    interval: Option<Duration>,
    next_report: Option<Instant>,
    last_bytes: Vec<u64>,
    last_retransmits: Vec<Option<u64>>,
    last_report_s: f64,
    next_rtt: Instant,
    pub(super) rtt: Histogram<u64>,
    pub(super) intervals: Vec<Interval>,
}

impl Sampler {
    pub(super) fn new(streams: &[Arc<Stream>], interval: Option<Duration>) -> Sampler {
        let now = Instant::now();
        Sampler {
            interval,
            next_report: interval.map(|i| now + i),
            last_bytes: vec![0; streams.len()],
            last_retransmits: vec![Some(0); streams.len()],
            last_report_s: 0.0,
            next_rtt: now + RTT_SAMPLE,
            rtt: nanos_histogram(),
            intervals: Vec::new(),
        }
    }

    /// The next moment something is due.
    pub(super) fn next_due(&self) -> Instant {
        match self.next_report {
            Some(report) => report.min(self.next_rtt),
            None => self.next_rtt,
        }
    }

    pub(super) fn tick(
        &mut self,
        streams: &[Arc<Stream>],
        run: &RunControl,
        events: &mut dyn FnMut(&PerfEvent),
    ) {
        let now = Instant::now();
        if now >= self.next_rtt {
            for stream in streams.iter().filter(|s| s.role == Role::Send) {
                if let Some(info) = stream.socket.tcp_info() {
                    let _ = self.rtt.record(u64::from(info.rtt_us.max(1)) * 1000);
                }
            }
            self.next_rtt = now + RTT_SAMPLE;
        }
        if self.next_report.is_some_and(|due| now >= due) {
            self.report(streams, run, events);
            self.next_report = self.interval.map(|i| now + i);
        }
    }

    /// Emits the interval since the last report (also the last, partial one).
    pub(super) fn report(
        &mut self,
        streams: &[Arc<Stream>],
        run: &RunControl,
        events: &mut dyn FnMut(&PerfEvent),
    ) {
        let end_s = run.started.elapsed().as_secs_f64();
        let seconds = end_s - self.last_report_s;
        if seconds < 0.001 {
            return;
        }
        let rate = |bytes: u64| bytes as f64 * 8.0 / seconds;
        let mut interval_streams = Vec::with_capacity(streams.len());
        for (index, stream) in streams.iter().enumerate() {
            let bytes = stream.bytes();
            let delta = bytes.saturating_sub(self.last_bytes[index]);
            self.last_bytes[index] = bytes;
            let retransmits = stream.retransmits();
            let retransmits_delta = match (retransmits, self.last_retransmits[index]) {
                (Some(now), Some(before)) => Some(now.saturating_sub(before)),
                _ => None,
            };
            self.last_retransmits[index] = retransmits;
            let info = (stream.role == Role::Send)
                .then(|| stream.socket.tcp_info())
                .flatten();
            interval_streams.push(IntervalStream {
                id: stream.id,
                direction: stream.role.as_str(),
                bytes: delta,
                bits_per_second: rate(delta),
                retransmits: retransmits_delta,
                rtt_us: info.map(|i| i.rtt_us),
                snd_cwnd_bytes: info.map(|i| i.snd_cwnd_bytes()),
                packets: stream
                    .socket
                    .is_datagram()
                    .then(|| stream.packets.load(Ordering::Relaxed)),
            });
        }
        let bytes = interval_streams.iter().map(|s| s.bytes).sum();
        let interval = Interval {
            start_s: self.last_report_s,
            end_s,
            bytes,
            bits_per_second: rate(bytes),
            streams: interval_streams,
        };
        self.last_report_s = end_s;
        events(&PerfEvent::Interval(interval.clone()));
        self.intervals.push(interval);
    }
}

/// Waits out the test: time, bytes, Ctrl-C, or the server speaking up.
fn watch_run(
    options: &ClientOptions,
    control: &Control,
    streams: &[Arc<Stream>],
    run: &RunControl,
    stop: &AtomicBool,
    sampler: &mut Sampler,
    events: &mut dyn FnMut(&PerfEvent),
) -> Ending {
    let deadline = options
        .bytes
        .is_none()
        .then(|| run.started + options.duration);
    let receive_target = match options.direction {
        Direction::Receive | Direction::Bidir => options.bytes,
        Direction::Send => None,
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            sampler.report(streams, run, events);
            return Ending::Interrupted;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            sampler.report(streams, run, events);
            return Ending::Finished;
        }
        if options.bytes.is_some() {
            let senders_done = streams
                .iter()
                .filter(|s| s.role == Role::Send)
                .all(|s| s.finished.load(Ordering::Acquire));
            let received: u64 = streams
                .iter()
                .filter(|s| s.role == Role::Receive)
                .map(|s| s.bytes())
                .sum();
            let receivers_done = receive_target.is_none_or(|target| received >= target);
            if senders_done && receivers_done {
                sampler.report(streams, run, events);
                return Ending::Finished;
            }
        }
        // Every stream has ended on its own: the far end went away.
        if streams.iter().all(|s| s.finished.load(Ordering::Acquire))
            && let Some(error) = streams.iter().find_map(|s| s.error())
        {
            sampler.report(streams, run, events);
            return Ending::Failed(format!("every stream failed ({error})"));
        }
        let mut wait = sampler
            .next_due()
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        if let Some(deadline) = deadline {
            wait = wait.min(deadline.saturating_duration_since(now));
        }
        // The server may speak during the test only to end it.
        match control.readable_within(wait) {
            Ok(true) => {
                sampler.report(streams, run, events);
                return match control.read_state(
                    Some(Instant::now() + STEP_TIMEOUT),
                    None,
                    "during the test",
                ) {
                    Ok(State::ServerTerminate) => Ending::ServerTerminated,
                    Ok(State::ServerError) => {
                        Ending::Failed(read_server_error(control).to_string())
                    }
                    Ok(other) => Ending::Failed(format!(
                        "the server sent {other:?} during the test (is it an iperf3 or loopscope perf server?)"
                    )),
                    Err(error) => Ending::Failed(error.to_string()),
                };
            }
            Ok(false) => {}
            Err(error) => return Ending::Failed(error.to_string()),
        }
        sampler.tick(streams, run, events);
    }
}

/// Says TEST_END and waits for the server to ask for results.
pub(super) fn end_test(control: &Control) -> Result<(), PerfError> {
    control.write_state(State::TestEnd)?;
    match control.read_state(Some(Instant::now() + STEP_TIMEOUT), None, "after TEST_END")? {
        State::ExchangeResults => Ok(()),
        State::ServerTerminate => Err(ControlError::ServerTerminated.into()),
        State::ServerError => Err(read_server_error(control)),
        other => Err(ControlError::Garbage {
            what: format!("{other:?} instead of EXCHANGE_RESULTS"),
        }
        .into()),
    }
}

/// Sends our results, reads the server's, and closes the test (DISPLAY_RESULTS, IPERF_DONE).
pub(super) fn exchange_results(
    control: &Control,
    ours: &TestResults,
) -> Result<TestResults, PerfError> {
    let deadline = Some(Instant::now() + STEP_TIMEOUT);
    control.write_json(&ours.to_json())?;
    let theirs = control.read_json(
        MAX_RESULTS_JSON,
        deadline,
        None,
        "with the server's results",
    )?;
    let theirs = TestResults::from_json(&theirs).map_err(|e| ControlError::Garbage {
        what: format!("unusable results ({e})"),
    })?;
    match control.read_state(deadline, None, "after the results")? {
        State::DisplayResults => {}
        other => {
            return Err(ControlError::Garbage {
                what: format!("{other:?} instead of DISPLAY_RESULTS"),
            }
            .into());
        }
    }
    control.write_state(State::IperfDone)?;
    Ok(theirs)
}

/// This side's results in iperf3's form. `peer` is the other side's results when they came
/// first (a server gets the client's before it sends its own): a UDP receiver then counts as
/// lost every datagram the sender says it sent and that did not arrive.
pub(super) fn local_results(
    streams: &[Arc<Stream>],
    cpu: CpuTime,
    seconds: f64,
    retransmits: &[Option<u64>],
    peer: Option<&TestResults>,
) -> TestResults {
    let percent = |time: Duration| time.as_secs_f64() * 100.0 / seconds.max(1e-9);
    let senders: Vec<&Arc<Stream>> = streams.iter().filter(|s| s.role == Role::Send).collect();
    TestResults {
        cpu_util_total: percent(cpu.user + cpu.system),
        cpu_util_user: percent(cpu.user),
        cpu_util_system: percent(cpu.system),
        sender_has_retransmits: (!senders.is_empty())
            .then(|| senders.iter().any(|s| s.socket.tcp_info().is_some())),
        congestion_used: streams.iter().find_map(|s| congestion_of(&s.socket)),
        streams: streams
            .iter()
            .zip(retransmits)
            .map(|(stream, retransmits)| {
                let udp = stream.udp_stats();
                let receiving_udp = stream.socket.is_datagram() && stream.role == Role::Receive;
                let sent_by_peer = senders_count(peer, stream.id);
                StreamResult {
                    id: stream.id,
                    bytes: stream.bytes(),
                    retransmits: *retransmits,
                    jitter_s: if receiving_udp { udp.jitter_s } else { 0.0 },
                    errors: if receiving_udp {
                        udp.lost(sent_by_peer).max(0)
                    } else {
                        0
                    },
                    // A receiver's `packets` is what it expected, as iperf3's is (the highest
                    // sequence number): arrived is `packets - errors` on both.
                    packets: if receiving_udp {
                        udp.expected(sent_by_peer) as i64
                    } else {
                        stream.packets.load(Ordering::Relaxed) as i64
                    },
                    start_time: 0.0,
                    end_time: seconds,
                    out_of_order: receiving_udp.then_some(udp.out_of_order),
                }
            })
            .collect(),
        server_output_text: None,
    }
}

/// What the sending side of stream `id` says it sent (its `packets` in the results exchange),
/// if it said.
fn senders_count(peer: Option<&TestResults>, id: i64) -> Option<u64> {
    peer?
        .streams
        .iter()
        .find(|s| s.id == id)
        .and_then(|s| u64::try_from(s.packets).ok())
        .filter(|packets| *packets > 0)
}

fn congestion_of(socket: &DataSocket) -> Option<String> {
    match socket {
        DataSocket::Stream(StreamSock::Tcp(stream)) => {
            SockRef::from(stream).tcp_congestion().ok().map(|name| {
                String::from_utf8_lossy(&name)
                    .trim_end_matches('\0')
                    .to_string()
            })
        }
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    options: &ClientOptions,
    streams: &[Arc<Stream>],
    final_info: &[Option<loopscope_sys::TcpInfo>],
    retransmits: &[Option<u64>],
    run_seconds: f64,
    cpu: CpuTime,
    peer: Option<&TestResults>,
    sampler: Sampler,
    ended_early: Option<String>,
    ending: &Ending,
) -> PerfSummary {
    let mut stream_summaries = Vec::with_capacity(streams.len());
    for (index, stream) in streams.iter().enumerate() {
        let peer_stream = peer.and_then(|p| p.streams.iter().find(|s| s.id == stream.id));
        let bytes = stream.bytes();
        // A receiver's time ends with its last byte; a sender's with the end of sending.
        let seconds = match stream.role {
            Role::Send => run_seconds,
            Role::Receive => {
                let last = stream.last_active_ns.load(Ordering::Relaxed) as f64 / 1e9;
                if last > 0.0 {
                    last.max(run_seconds)
                } else {
                    run_seconds
                }
            }
        };
        let info = final_info[index];
        let udp = if stream.socket.is_datagram() {
            match stream.role {
                Role::Receive => {
                    let stats = stream.udp_stats();
                    Some(UdpFigures::new(
                        stats.packets,
                        stats.lost(senders_count(peer, stream.id)),
                        Some(stats.out_of_order),
                        stats.jitter_s,
                    ))
                }
                // The receiver's `packets` is what it expected and `errors` what of that it
                // lost (iperf3's meaning, and ours): the difference arrived. What did not
                // arrive of what we sent is lost, the datagrams after the last to arrive too
                // (which a stock receiver, counting gaps, does not count).
                Role::Send => peer_stream.map(|p| {
                    let arrived = (p.packets - p.errors).max(0);
                    let sent = stream.packets.load(Ordering::Relaxed) as i64;
                    UdpFigures::new(arrived as u64, sent - arrived, p.out_of_order, p.jitter_s)
                }),
            }
        } else {
            None
        };
        stream_summaries.push(StreamSummary {
            id: stream.id,
            direction: stream.role.as_str(),
            bytes,
            seconds,
            bits_per_second: bytes as f64 * 8.0 / seconds.max(1e-9),
            peer_bytes: peer_stream.map(|p| p.bytes),
            retransmits: match stream.role {
                Role::Send => retransmits[index],
                Role::Receive => peer_stream.and_then(|p| p.retransmits),
            },
            rtt_us: info.filter(|_| stream.role == Role::Send).map(|i| i.rtt_us),
            rttvar_us: info
                .filter(|_| stream.role == Role::Send)
                .map(|i| i.rttvar_us),
            snd_cwnd_bytes: info
                .filter(|_| stream.role == Role::Send)
                .map(|i| i.snd_cwnd_bytes()),
            udp,
            zerocopy: stream.zerocopy.lock().ok().and_then(|z| *z),
            error: stream.error(),
        });
    }
    let rtt = Percentiles::from_nanos(&sampler.rtt);
    let mut summary = assemble(
        &options.link,
        if options.udp {
            "udp"
        } else if matches!(options.transport, Transport::Unix(_)) {
            "unix"
        } else {
            "tcp"
        },
        options.direction.as_str(),
        "throughput",
        run_seconds,
        stream_summaries,
        sampler.intervals,
        cpu,
        peer,
        ended_early,
        ending.passed(),
    );
    summary.rtt_p50_us = rtt.map(|r| r.p50_us);
    summary.rtt_p99_us = rtt.map(|r| r.p99_us);
    summary
}

/// Sums streams into a summary (shared by every mode).
#[allow(clippy::too_many_arguments)]
pub(super) fn assemble(
    link: &str,
    protocol: &str,
    direction: &'static str,
    mode: &'static str,
    run_seconds: f64,
    streams: Vec<StreamSummary>,
    intervals: Vec<Interval>,
    cpu: CpuTime,
    peer: Option<&TestResults>,
    ended_early: Option<String>,
    passed: bool,
) -> PerfSummary {
    let sum = |direction: &str| -> (u64, f64) {
        let chosen: Vec<&StreamSummary> = streams
            .iter()
            .filter(|s| s.direction == direction)
            .collect();
        let bytes = chosen.iter().map(|s| s.bytes).sum::<u64>();
        let seconds = chosen.iter().map(|s| s.seconds).fold(0.0, f64::max);
        (
            bytes,
            if seconds > 0.0 {
                bytes as f64 * 8.0 / seconds
            } else {
                0.0
            },
        )
    };
    let (sent_bytes, send_rate) = sum("send");
    let (received_bytes, receive_rate) = sum("receive");
    let seconds = streams
        .iter()
        .map(|s| s.seconds)
        .fold(run_seconds, f64::max);
    let retransmits = streams
        .iter()
        .filter_map(|s| s.retransmits)
        .reduce(|a, b| a + b);
    let udp_streams: Vec<&UdpFigures> = streams.iter().filter_map(|s| s.udp.as_ref()).collect();
    let udp = (!udp_streams.is_empty()).then(|| {
        let packets = udp_streams.iter().map(|u| u.packets).sum();
        let lost = udp_streams.iter().map(|u| u.lost_packets).sum();
        let out_of_order = udp_streams
            .iter()
            .map(|u| u.out_of_order)
            .sum::<Option<u64>>();
        let jitter = udp_streams.iter().map(|u| u.jitter_ms).fold(0.0, f64::max);
        UdpFigures::new(packets, lost, out_of_order, jitter / 1e3)
    });
    let percent = |time: Duration| time.as_secs_f64() * 100.0 / run_seconds.max(1e-9);
    let bytes = sent_bytes + received_bytes;
    PerfSummary {
        link: link.to_string(),
        mode,
        protocol: protocol.to_string(),
        direction,
        seconds,
        bytes,
        bits_per_second: send_rate + receive_rate,
        sent_bytes,
        received_bytes,
        send_bits_per_second: send_rate,
        receive_bits_per_second: receive_rate,
        retransmits,
        rtt_p50_us: None,
        rtt_p99_us: None,
        transactions: None,
        transactions_per_second: None,
        latency: None,
        cpu_user_percent: percent(cpu.user),
        cpu_system_percent: percent(cpu.system),
        peer: peer.map(|p| PeerFigures {
            cpu_user_percent: p.cpu_util_user,
            cpu_system_percent: p.cpu_util_system,
            bytes: p.streams.iter().map(|s| s.bytes).sum(),
            congestion: p.congestion_used.clone(),
        }),
        udp,
        complete: peer.is_some(),
        server_limit: None,
        load: None,
        streams,
        intervals,
        ended_early,
        passed,
    }
}

/// `--under-load`: runs `load` (a throughput test) and, once its streams are up, `options`
/// (a request-response test) over the same link at the same time; the latency summary carries
/// the load's figures. Loaded latency is what neither test shows alone.
pub fn run_under_load(
    options: &ClientOptions,
    load: &ClientOptions,
    stop: &AtomicBool,
    events: &mut dyn FnMut(&PerfEvent),
) -> Result<PerfSummary, PerfError> {
    let stop_load = Arc::new(AtomicBool::new(false));
    let (ready, started) = std::sync::mpsc::channel();
    let load_thread = {
        let (load, stop_load) = (load.clone(), Arc::clone(&stop_load));
        std::thread::Builder::new()
            .name("perf-load".into())
            .spawn(move || {
                run_client(&load, &stop_load, &mut |event| {
                    if matches!(event, PerfEvent::Connected { .. }) {
                        let _ = ready.send(());
                    }
                })
            })
            .map_err(|e| PerfError::io("cannot start the load thread", e))?
    };
    // The latency test starts once the load runs (or the load failed: its error is the
    // answer).
    if started.recv_timeout(STEP_TIMEOUT * 2).is_err() {
        stop_load.store(true, Ordering::Relaxed);
        return match load_thread.join() {
            Ok(Err(error)) => Err(error),
            _ => Err(PerfError::io(
                "the load did not start",
                std::io::ErrorKind::TimedOut.into(),
            )),
        };
    }
    let result = run_client(options, stop, events);
    stop_load.store(true, Ordering::Relaxed);
    let load_result = load_thread
        .join()
        .map_err(|_| PerfError::Usage("the load thread panicked".into()))?;
    let mut summary = result?;
    match load_result {
        Ok(load) => {
            summary.load = Some(LoadFigures {
                streams: load.streams.len(),
                bytes: load.bytes,
                bits_per_second: load.bits_per_second,
                retransmits: load.retransmits,
            });
        }
        Err(error) => {
            summary.passed = false;
            summary.ended_early = Some(format!("the load failed: {error}"));
        }
    }
    Ok(summary)
}
