//! A load generator for the STAMP reflector (`reflect --stamp`), for `bench/stamp.sh`; not a
//! test. sockperf offers some 300,000 datagrams a second from one thread, less than the
//! reflector's goal, so this generator works as `sbfd_load` does: each thread owns a socket,
//! keeps up to WINDOW Session-Sender packets (RFC 8762, 44 octets, unauthenticated)
//! outstanding, sends them in batches with sendmmsg, reads the replies with recvmmsg and
//! counts only replies that are Session-Reflector packets of its SSID.
//!
//!   stamp_load TARGET SECONDS [THREADS] [WINDOW]
//!
//! Prints one line of JSON: sent, answered, seconds, answered_per_s.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loopscope_sys::{Readiness, recv_datagrams, send_datagrams, wait_readable};
use loopscope_wire::stamp::{
    ErrorEstimate, Mode, ReflectorPacket, SenderRepr, Timestamp, TimestampFormat,
};

const BATCH: usize = 64;

fn request(ssid: u16, sequence: u32) -> Vec<u8> {
    let mut packet = vec![0u8; 44];
    SenderRepr {
        sequence,
        timestamp: Timestamp::default(),
        error_estimate: ErrorEstimate::new(false, TimestampFormat::Ntp, Duration::from_secs(1)),
        ssid,
    }
    .emit(&mut packet, Mode::Unauthenticated)
    .expect("44 octets hold the base packet");
    packet
}

fn blast(target: SocketAddr, ssid: u16, window: u64, stop: &AtomicBool) -> (u64, u64) {
    let socket = UdpSocket::bind(if target.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    })
    .expect("bind a source socket");
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, 4 << 20);
    let packets: Vec<Vec<u8>> = (0..BATCH as u32).map(|i| request(ssid, i)).collect();
    let batch: Vec<(&[u8], SocketAddr)> = packets.iter().map(|p| (&p[..], target)).collect();
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
                if ReflectorPacket::new_checked(&buffer[..datagram.len], Mode::Unauthenticated)
                    .is_ok_and(|reply| reply.ssid() == ssid)
                {
                    answered += 1;
                }
            }
            last_answer = Instant::now();
        }
    }
    (sent, answered)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: stamp_load TARGET SECONDS [THREADS] [WINDOW]");
        std::process::exit(2);
    }
    let parse_or_exit = |what: &str, text: &str| -> u64 {
        text.parse().unwrap_or_else(|_| {
            eprintln!("stamp_load: {what} '{text}' is not a number");
            std::process::exit(2)
        })
    };
    let target: SocketAddr = args[1].parse().unwrap_or_else(|_| {
        eprintln!("stamp_load: '{}' is not ADDR:PORT", args[1]);
        std::process::exit(2)
    });
    let seconds = parse_or_exit("seconds", &args[2]);
    let threads = args.get(3).map_or(1, |t| parse_or_exit("threads", t));
    let window = args.get(4).map_or(1024, |w| parse_or_exit("window", w));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|index| {
            let stop = Arc::clone(&stop);
            let ssid = u16::try_from(index + 1).unwrap_or(1);
            std::thread::spawn(move || blast(target, ssid, window, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
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
