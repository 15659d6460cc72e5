//! A load generator for the S-BFD reflector (`reflect --sbfd DISC`), for `bench/bfd.sh`; not a
//! test. Each thread owns a socket and a discriminator, keeps up to `--window` S-BFD Control
//! packets (RFC 7880) outstanding, sends them in batches with sendmmsg and reads the answers
//! with recvmmsg, and counts only answers that match (discriminators swapped, state Up).
//!
//!   sbfd_load TARGET DISCRIMINATOR SECONDS [THREADS] [WINDOW]
//!
//! Prints one line of JSON: sent, answered, seconds, answered_per_s.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loopscope_measure::bfd::sbfd_probe;
use loopscope_sys::{Readiness, recv_datagrams, send_datagrams, wait_readable};
use loopscope_wire::bfd::{ControlRepr, MAX_CONTROL_LEN, State};

const BATCH: usize = 64;

fn probe(mine: u32, yours: u32) -> Vec<u8> {
    let repr = sbfd_probe(mine, yours, Duration::from_millis(1), 3);
    let mut out = [0u8; MAX_CONTROL_LEN];
    let len = repr.emit(&mut out).expect("a plain Control packet fits");
    out[..len].to_vec()
}

fn blast(target: SocketAddr, mine: u32, yours: u32, window: u64, stop: &AtomicBool) -> (u64, u64) {
    let socket = UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .expect("bind a source socket");
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, 4 << 20);
    let packet = probe(mine, yours);
    let batch: Vec<(&[u8], SocketAddr)> = (0..BATCH).map(|_| (&packet[..], target)).collect();
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
                if let Ok(repr) = ControlRepr::parse_bytes(&buffer[..datagram.len])
                    && repr.my_discriminator == yours
                    && repr.your_discriminator == mine
                    && repr.state == State::Up
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
    if args.len() < 4 {
        eprintln!("usage: sbfd_load TARGET DISCRIMINATOR SECONDS [THREADS] [WINDOW]");
        std::process::exit(2);
    }
    let parse_or_exit = |what: &str, text: &str| -> u64 {
        text.parse().unwrap_or_else(|_| {
            eprintln!("sbfd_load: {what} '{text}' is not a number");
            std::process::exit(2)
        })
    };
    let target: SocketAddr = args[1].parse().unwrap_or_else(|_| {
        eprintln!("sbfd_load: '{}' is not ADDR:PORT", args[1]);
        std::process::exit(2)
    });
    let yours = u32::try_from(parse_or_exit("discriminator", &args[2])).unwrap_or(0);
    let seconds = parse_or_exit("seconds", &args[3]);
    let threads = args.get(4).map_or(1, |t| parse_or_exit("threads", t));
    let window = args.get(5).map_or(1024, |w| parse_or_exit("window", w));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|index| {
            let stop = Arc::clone(&stop);
            let mine = u32::try_from(index + 1).unwrap_or(1);
            std::thread::spawn(move || blast(target, mine, yours, window, &stop))
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
