//! What `sbfd_load` and `stamp_load` share: threads that each own a socket, keep up to a window
//! of requests outstanding, send them in batches with sendmmsg, read the answers with recvmmsg
//! and count only the answers their protocol recognises; the command line and the one line of
//! JSON they print. Each example says what it sends and what counts as an answer.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loopscope_sys::{Readiness, recv_datagrams, send_datagrams, wait_readable};

/// Requests per sendmmsg/recvmmsg call.
pub(crate) const BATCH: usize = 64;

/// Whether a datagram that came back is an answer to this thread's requests.
pub(crate) type AnswerCheck = Box<dyn Fn(&[u8]) -> bool + Send>;

/// What one load thread sends (a batch's worth, sent again and again) and which answers count.
pub(crate) struct Probe {
    pub(crate) requests: Vec<Vec<u8>>,
    pub(crate) is_answer: AnswerCheck,
}

/// The arguments after the protocol's own: SECONDS [THREADS] [WINDOW].
pub(crate) struct LoadArgs {
    pub(crate) target: SocketAddr,
    pub(crate) seconds: u64,
    pub(crate) threads: u64,
    pub(crate) window: u64,
}

/// A number from the command line, or exit 2 with a one-line error.
pub(crate) fn number_or_exit(program: &str, what: &str, text: &str) -> u64 {
    text.parse().unwrap_or_else(|_| {
        eprintln!("{program}: {what} '{text}' is not a number");
        std::process::exit(2)
    })
}

/// TARGET, then (after `protocol_args` arguments the caller reads) SECONDS [THREADS] [WINDOW].
pub(crate) fn parse_or_exit(
    program: &str,
    usage: &str,
    args: &[String],
    protocol_args: usize,
) -> LoadArgs {
    if args.len() < 3 + protocol_args {
        eprintln!("usage: {program} {usage}");
        std::process::exit(2);
    }
    let target: SocketAddr = args[1].parse().unwrap_or_else(|_| {
        eprintln!("{program}: '{}' is not ADDR:PORT", args[1]);
        std::process::exit(2)
    });
    let rest = &args[2 + protocol_args..];
    LoadArgs {
        target,
        seconds: number_or_exit(program, "seconds", &rest[0]),
        threads: rest
            .get(1)
            .map_or(1, |t| number_or_exit(program, "threads", t)),
        window: rest
            .get(2)
            .map_or(1024, |w| number_or_exit(program, "window", w)),
    }
}

/// Runs `threads` load threads for `seconds`, thread `index` with `probe(index)`, and prints the
/// totals as one line of JSON: sent, answered, seconds, answered_per_s.
pub(crate) fn run(args: &LoadArgs, probe: impl Fn(u64) -> Probe) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..args.threads)
        .map(|index| {
            let stop = Arc::clone(&stop);
            let (target, window, probe) = (args.target, args.window, probe(index));
            std::thread::spawn(move || blast(target, &probe, window, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut answered) = (0, 0);
    for worker in workers {
        let (s, a) = worker.join().expect("a load thread");
        sent += s;
        answered += a;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{{\"sent\":{sent},\"answered\":{answered},\"seconds\":{elapsed:.3},\"answered_per_s\":{:.0}}}",
        answered as f64 / elapsed
    );
}

fn blast(target: SocketAddr, probe: &Probe, window: u64, stop: &AtomicBool) -> (u64, u64) {
    let socket = UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .expect("bind a source socket");
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, 4 << 20);
    let batch: Vec<(&[u8], SocketAddr)> = probe
        .requests
        .iter()
        .cycle()
        .take(BATCH)
        .map(|request| (&request[..], target))
        .collect();
    let mut buffers = vec![[0u8; 128]; BATCH];
    let mut got = Vec::with_capacity(BATCH);
    let (mut sent, mut answered, mut written_off) = (0u64, 0u64, 0u64);
    let mut last_answer = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let outstanding = sent - answered - written_off;
        if outstanding + BATCH as u64 <= window {
            if let Ok(count) = send_datagrams(&socket, &batch) {
                sent += count as u64;
            }
        } else if wait_readable(&socket, Some(Duration::from_millis(50))).ok()
            != Some(Readiness::Ready)
            && last_answer.elapsed() > Duration::from_millis(200)
        {
            // What is still out after 200 ms of silence was dropped: stop waiting for it.
            written_off += outstanding;
        }
        while let Ok(count) = recv_datagrams(&socket, &mut buffers, &mut got) {
            for (datagram, buffer) in got.iter().zip(&buffers).take(count) {
                if (probe.is_answer)(&buffer[..datagram.len]) {
                    answered += 1;
                }
            }
            last_answer = Instant::now();
        }
    }
    (sent, answered)
}
