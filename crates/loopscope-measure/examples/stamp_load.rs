//! A load generator for the STAMP reflector (`reflect --stamp`), for `bench/stamp.sh`; not a
//! test. sockperf offers some 300,000 datagrams a second from one thread, less than the
//! reflector's goal, so this generator works as `sbfd_load` does (the shared `load_generator`):
//! each thread keeps up to WINDOW Session-Sender packets (RFC 8762, 44 octets, unauthenticated)
//! outstanding and counts only replies that are Session-Reflector packets of its SSID.
//!
//!   stamp_load TARGET SECONDS [THREADS] [WINDOW]
//!
//! Prints one line of JSON: sent, answered, seconds, answered_per_s.

mod load_generator;

use std::time::Duration;

use load_generator::{BATCH, Probe};
use loopscope_wire::stamp::{
    ErrorEstimate, Mode, ReflectorPacket, SenderRepr, Timestamp, TimestampFormat,
};

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let load =
        load_generator::parse_or_exit("stamp_load", "TARGET SECONDS [THREADS] [WINDOW]", &args, 0);
    load_generator::run(&load, |index| {
        let ssid = u16::try_from(index + 1).unwrap_or(1);
        Probe {
            requests: (0..BATCH as u32).map(|i| request(ssid, i)).collect(),
            is_answer: Box::new(move |reply| {
                ReflectorPacket::new_checked(reply, Mode::Unauthenticated)
                    .is_ok_and(|reply| reply.ssid() == ssid)
            }),
        }
    });
}
