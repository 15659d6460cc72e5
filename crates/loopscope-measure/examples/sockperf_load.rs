//! The same load as `stamp_load`, for sockperf's server (`sockperf server`), the plain UDP
//! echo `bench/stamp.sh` runs beside the STAMP reflector to show what this host allows: one
//! generator (the shared `load_generator`: a window of requests outstanding, sendmmsg and
//! recvmmsg) for both, so the two rates differ only by the server. Not a test.
//!
//! Each request is a 44-octet sockperf message, as long as a STAMP Session-Sender packet: the
//! header sockperf's server reads (network byte order: a 64-bit sequence number, 16 bits of
//! flags, the 32-bit message length), with the client and pong-request flags, so the server
//! answers it; an answer is a 44-octet message whose flags say it is a server's (client flag
//! clear) and whose sequence number this thread sent.
//!
//!   sockperf_load TARGET SECONDS [THREADS] [WINDOW]
//!
//! Prints one line of JSON: sent, answered, seconds, answered_per_s.

mod load_generator;

use load_generator::{BATCH, Probe};

/// The length of every request: a STAMP Session-Sender packet's (RFC 8762 §4.2.1).
const LENGTH: usize = 44;
/// sockperf's message flags: sent by a client, asking for an answer.
const CLIENT: u16 = 1;
const PONG_REQUEST: u16 = 2;

/// Sequence numbers of thread `thread` live in their own range, so a thread counts only the
/// answers to its own requests.
fn sequence(thread: u64, index: u64) -> u64 {
    (thread << 32) | index
}

fn request(sequence: u64) -> Vec<u8> {
    let mut packet = vec![0u8; LENGTH];
    packet[..8].copy_from_slice(&sequence.to_be_bytes());
    packet[8..10].copy_from_slice(&(CLIENT | PONG_REQUEST).to_be_bytes());
    packet[10..14].copy_from_slice(&(LENGTH as u32).to_be_bytes());
    packet
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let load = load_generator::parse_or_exit(
        "sockperf_load",
        "TARGET SECONDS [THREADS] [WINDOW]",
        &args,
        0,
    );
    load_generator::run(&load, |thread| Probe {
        requests: (0..BATCH as u64)
            .map(|index| request(sequence(thread, index)))
            .collect(),
        is_answer: Box::new(move |reply| {
            reply.len() == LENGTH
                && u16::from_be_bytes([reply[8], reply[9]]) & CLIENT == 0
                && u64::from_be_bytes(reply[..8].try_into().unwrap_or_default()) >> 32 == thread
        }),
    });
}
