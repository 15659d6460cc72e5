//! Many BFD sessions from one process, for `bench/bfd_sessions.sh`; not a test. Opens
//! SESSIONS asynchronous sessions (RFC 5880, single hop: TTL 255) from one local address to
//! one responder, each with its own discriminator (the responder tells them apart by address
//! and discriminator), runs them for SECONDS with the RFC 5880 state machine of
//! `loopscope_measure::bfd::session`, and prints one JSON line: how many came Up, how many
//! were Up at the end, and every fall from Up (a false Down when the responder is alive).
//!
//!   bfd_sessions PEER_ADDR LOCAL_ADDR SESSIONS INTERVAL_MS SECONDS

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use loopscope_measure::bfd::session::{Session, SessionConfig, SessionEvent};
use loopscope_sys::{enable_hops_reception, recv_datagrams, set_send_hops, wait_readable};
use loopscope_wire::bfd::{CONTROL_PORT, ControlRepr, MAX_CONTROL_LEN, SINGLE_HOP_TTL, State};

fn number(what: &str, text: &str) -> u64 {
    text.parse().unwrap_or_else(|_| {
        eprintln!("bfd_sessions: {what} '{text}' is not a number");
        std::process::exit(2)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: bfd_sessions PEER_ADDR LOCAL_ADDR SESSIONS INTERVAL_MS SECONDS");
        std::process::exit(2);
    }
    let address = |text: &str| -> IpAddr {
        text.parse().unwrap_or_else(|_| {
            eprintln!("bfd_sessions: '{text}' is not an address");
            std::process::exit(2)
        })
    };
    let peer = SocketAddr::new(address(&args[1]), CONTROL_PORT);
    let local = address(&args[2]);
    let count = u32::try_from(number("sessions", &args[3]))
        .unwrap_or(1)
        .max(1);
    let interval = Duration::from_millis(number("interval", &args[4]));
    let seconds = Duration::from_secs(number("seconds", &args[5]));

    let receiver = UdpSocket::bind(SocketAddr::new(local, CONTROL_PORT)).expect("bind 3784");
    enable_hops_reception(&receiver).expect("IP_RECVTTL");
    receiver.set_nonblocking(true).expect("non-blocking");
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&receiver, 8 << 20);
    let sender = UdpSocket::bind(SocketAddr::new(local, 49152)).expect("bind 49152");
    set_send_hops(&sender, SINGLE_HOP_TTL).expect("TTL 255");
    let config = SessionConfig {
        desired_min_tx: interval,
        required_min_rx: interval,
        detect_mult: 3,
        passive: false,
        demand: false,
        required_min_echo_rx: Duration::ZERO,
        auth: None,
    };
    let start = Instant::now();
    // Session i has discriminator i + 1.
    let mut sessions: Vec<Session> = (0..count)
        .map(|i| Session::new(config.clone(), i + 1, start))
        .collect();
    let mut scheduled: Vec<Option<Instant>> = vec![None; sessions.len()];
    let mut timers: BinaryHeap<Reverse<(Instant, u32)>> = BinaryHeap::new();
    let (mut ups, mut falls, mut sent, mut received, mut dropped) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut ever_up = vec![false; sessions.len()];
    let mut fall_log: Vec<String> = Vec::new();
    let mut out = [0u8; MAX_CONTROL_LEN];
    let mut buffers = vec![[0u8; 256]; 64];
    let mut got = Vec::with_capacity(64);
    let mut service = |index: usize,
                       now: Instant,
                       sessions: &mut Vec<Session>,
                       scheduled: &mut Vec<Option<Instant>>,
                       timers: &mut BinaryHeap<Reverse<(Instant, u32)>>| {
        let session = &mut sessions[index];
        session.on_timer(now);
        while let Some(len) = session.transmit_due(now, &mut out) {
            if sender.send_to(&out[..len], peer).is_ok() {
                sent += 1;
            }
        }
        for event in session.drain_events() {
            if let SessionEvent::StateChange {
                from,
                to,
                diagnostic,
                ..
            } = event
            {
                if to == State::Up {
                    ups += 1;
                    ever_up[index] = true;
                }
                if from == State::Up {
                    falls += 1;
                    if fall_log.len() < 20 {
                        fall_log.push(format!(
                            "{:.3}s session {} {diagnostic:?}",
                            now.duration_since(start).as_secs_f64(),
                            index + 1
                        ));
                    }
                }
            }
        }
        let next = session.next_deadline();
        if next != scheduled[index] {
            scheduled[index] = next;
            if let Some(at) = next {
                timers.push(Reverse((at, u32::try_from(index).unwrap_or(0))));
            }
        }
    };
    for index in 0..sessions.len() {
        service(index, start, &mut sessions, &mut scheduled, &mut timers);
    }
    while start.elapsed() < seconds {
        let now = Instant::now();
        while let Some(&Reverse((at, index))) = timers.peek() {
            if at > now {
                break;
            }
            timers.pop();
            let index = index as usize;
            if scheduled[index] == Some(at) {
                scheduled[index] = None;
                service(index, now, &mut sessions, &mut scheduled, &mut timers);
            }
        }
        let wait = timers
            .peek()
            .map_or(Duration::from_millis(10), |Reverse((at, _))| {
                at.saturating_duration_since(Instant::now())
            });
        let _ = wait_readable(&receiver, Some(wait));
        while let Ok(n) = recv_datagrams(&receiver, &mut buffers, &mut got) {
            let now = Instant::now();
            for (datagram, buffer) in got.iter().zip(&buffers).take(n) {
                received += 1;
                let bytes = &buffer[..datagram.len];
                let Ok(repr) = ControlRepr::parse_bytes(bytes) else {
                    dropped += 1;
                    continue;
                };
                let index = repr.your_discriminator.wrapping_sub(1) as usize;
                if datagram.ttl != Some(SINGLE_HOP_TTL) || index >= sessions.len() {
                    dropped += 1;
                    continue;
                }
                if sessions[index].receive(now, bytes, &repr).is_err() {
                    dropped += 1;
                }
                service(index, now, &mut sessions, &mut scheduled, &mut timers);
            }
        }
    }
    let up_at_end = sessions.iter().filter(|s| s.state() == State::Up).count();
    let came_up = ever_up.iter().filter(|&&up| up).count();
    println!(
        "{{\"sessions\":{count},\"came_up\":{came_up},\"up_at_end\":{up_at_end},\"ups\":{ups},\"falls_from_up\":{falls},\"sent\":{sent},\"received\":{received},\"dropped\":{dropped},\"seconds\":{:.1},\"first_falls\":{:?}}}",
        start.elapsed().as_secs_f64(),
        fall_log
    );
}
