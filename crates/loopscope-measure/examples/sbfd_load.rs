//! A load generator for the S-BFD reflector (`reflect --sbfd DISC`), for `bench/bfd.sh`; not a
//! test. Each thread (the shared `load_generator`) owns a socket and a discriminator, keeps up
//! to WINDOW S-BFD Control packets (RFC 7880) outstanding, and counts only answers that match
//! (discriminators swapped, state Up).
//!
//!   sbfd_load TARGET DISCRIMINATOR SECONDS [THREADS] [WINDOW]
//!
//! Prints one line of JSON: sent, answered, seconds, answered_per_s.

mod load_generator;

use std::time::Duration;

use load_generator::Probe;
use loopscope_measure::bfd::sbfd_probe;
use loopscope_wire::bfd::{ControlRepr, MAX_CONTROL_LEN, State};

fn probe(mine: u32, yours: u32) -> Vec<u8> {
    let repr = sbfd_probe(mine, yours, Duration::from_millis(1), 3);
    let mut out = [0u8; MAX_CONTROL_LEN];
    let len = repr.emit(&mut out).expect("a plain Control packet fits");
    out[..len].to_vec()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let load = load_generator::parse_or_exit(
        "sbfd_load",
        "TARGET DISCRIMINATOR SECONDS [THREADS] [WINDOW]",
        &args,
        1,
    );
    let yours = u32::try_from(load_generator::number_or_exit(
        "sbfd_load",
        "discriminator",
        &args[2],
    ))
    .unwrap_or(0);
    load_generator::run(&load, |index| {
        let mine = u32::try_from(index + 1).unwrap_or(1);
        Probe {
            requests: vec![probe(mine, yours)],
            is_answer: Box::new(move |answer| {
                ControlRepr::parse_bytes(answer).is_ok_and(|repr| {
                    repr.my_discriminator == yours
                        && repr.your_discriminator == mine
                        && repr.state == State::Up
                })
            }),
        }
    });
}
