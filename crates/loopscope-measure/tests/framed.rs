//! The framed T1/E1 procedure against the emulated NIU, in process (`sim:?niu=...`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use loopscope_link::link::{Link, LinkError, LinkHalves, LinkReceiver, LinkSender};
use loopscope_measure::framed::{self, FramedEvent, FramedOptions, FramedSummary, LoopCommand};
use loopscope_pattern::framing::{Framing, Timeslots};
use loopscope_pattern::loopcode::InbandCode;
use loopscope_pattern::{PatternKind, PatternSpec};
use serde_json::Value;

fn options(framing: Framing, slots: &str, command: LoopCommand) -> FramedOptions {
    let mut options = FramedOptions::new(framing, PatternSpec::standard(PatternKind::Qrss));
    options.timeslots = Timeslots::parse(slots, framing).unwrap();
    options.command = command;
    options
}

fn inband() -> LoopCommand {
    LoopCommand::Inband {
        up: InbandCode::loop_up(),
        down: InbandCode::loop_down(),
        framed: true,
    }
}

fn run(endpoint: &str, options: &FramedOptions) -> (FramedSummary, Vec<FramedEvent>) {
    let link = loopscope_link::open(endpoint).expect("opens");
    let stop = Arc::new(AtomicBool::new(false));
    let mut events = Vec::new();
    let summary = framed::run(link, options, &stop, &mut |e| events.push(e)).expect("runs");
    (summary, events)
}

/// The NIU's log entries (`link_stats.niu.log`) as (event, by).
fn niu_log(summary: &FramedSummary) -> Vec<(String, String, f64)> {
    let stats = serde_json::to_value(&summary.link_stats).expect("serialises");
    let log = &stats["niu"]["log"];
    log.as_array()
        .expect("the NIU log")
        .iter()
        .filter(|e| e["event"] != "frame_aligned" && e["event"] != "frame_lost")
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default().to_string(),
                e["by"].as_str().unwrap_or_default().to_string(),
                e["t_s"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect()
}

fn names(events: &[FramedEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match serde_json::to_value(e).ok()?["event"].clone() {
            Value::String(name) if name != "second" => Some(name),
            _ => None,
        })
        .collect()
}

#[test]
fn inband_loop_up_framed_qrss_on_half_the_timeslots_loop_down() {
    let (s, events) = run("sim:?niu=esf", &options(Framing::Esf, "1-12", inband()));
    assert!(s.passed, "{:?} {:?}", s.failure_reasons(), names(&events));
    assert!(s.loop_closed);
    assert_eq!(s.loop_opened, Some(true));
    let up = s.loop_up_s.expect("loop-up time");
    assert!(
        (5.0..6.0).contains(&up),
        "the NIU needs 5 s of the code: {up}"
    );
    // 10 s of BERT on 12 timeslots: 7.68 Mbit of payload.
    // Whole 64-bit words are judged: the count is exact to within one word.
    assert!(
        (s.check.bits + s.check.unsynced_bits).abs_diff(7_680_000) < 64,
        "{}",
        s.check.bits
    );
    assert_eq!(s.check.unsynced_bits, 0);
    assert_eq!(
        (s.check.bit_errors, s.crc_errors, s.frame_bit_errors),
        (0, 0, 0)
    );
    assert!((3333..=3334).contains(&s.crc_blocks), "10 s of ESF blocks");
    let g826 = s.g826.as_ref().expect("ESF has G.826");
    assert_eq!((g826.es, g826.ses, g826.uas, g826.seconds), (0, 0, 0, 10));
    let log = niu_log(&s);
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].0, "loop_closed");
    assert_eq!(log[0].1, "in-band loop-up 00001");
    assert!(log[0].2 >= 5.0);
    assert_eq!(log[1].0, "loop_opened");
    assert_eq!(log[1].1, "in-band loop-down 001");
    let order: Vec<String> = names(&events)
        .into_iter()
        .filter(|n| n.starts_with("loop") || n.starts_with("bert"))
        .collect();
    assert_eq!(
        order,
        [
            "loop_up_sent",
            "loop_up_returned",
            "loop_closed",
            "bert_started",
            "bert_finished",
            "loop_down_sent",
            "loop_opened"
        ]
    );
}

#[test]
fn fdl_line_and_payload_loopbacks_and_other_framings() {
    for (endpoint, framing, slots, command, mode) in [
        (
            "sim:?niu=esf",
            Framing::Esf,
            "1-24",
            LoopCommand::FdlLine,
            "line",
        ),
        (
            "sim:?niu=esf",
            Framing::Esf,
            "1-12",
            LoopCommand::FdlPayload,
            "payload",
        ),
        ("sim:?niu=sf", Framing::Sf, "6x56k", inband(), "line"),
        (
            "sim:?niu=e1-crc4",
            Framing::E1Crc4,
            "1-15,17-31",
            inband(),
            "line",
        ),
        ("sim:?niu=e1", Framing::E1, "1-31", inband(), "line"),
        (
            "sim:?niu=esf",
            Framing::Esf,
            "1-24",
            LoopCommand::Inband {
                up: InbandCode::loop_up(),
                down: InbandCode::loop_down(),
                framed: false,
            },
            "line",
        ),
    ] {
        let mut opts = options(framing, slots, command.clone());
        opts.amount = framed::FramedAmount::Duration(Duration::from_secs(3));
        let (s, events) = run(endpoint, &opts);
        assert!(
            s.passed,
            "{framing} {command:?}: {:?} {:?}",
            s.failure_reasons(),
            names(&events)
        );
        assert_eq!(s.loop_opened, Some(true), "{framing} {command:?}");
        let payload_rate = Timeslots::parse(slots, framing).unwrap().payload_rate_bps();
        // The checker judges whole 64-bit words: up to 63 bits fed before the start are
        // judged after it.
        let counted = s.check.bits + s.check.unsynced_bits;
        assert!(
            counted.abs_diff(3 * payload_rate) < 64,
            "{framing}: {counted}"
        );
        let log = niu_log(&s);
        assert_eq!(log.len(), 2, "{framing} {command:?}: {log:?}");
        let stats = serde_json::to_value(&s.link_stats).unwrap();
        let closed = &stats["niu"]["log"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"] == "loop_closed")
            .unwrap()["mode"];
        assert_eq!(closed, mode, "{framing} {command:?}");
        if command.clone() == LoopCommand::FdlLine || command == LoopCommand::FdlPayload {
            assert!(s.loop_up_s.unwrap() < 0.2, "an FDL command acts in ms");
        }
    }
}

#[test]
fn the_loop_opens_on_its_timeout_during_the_test() {
    let mut opts = options(Framing::Esf, "1-12", inband());
    opts.amount = framed::FramedAmount::Duration(Duration::from_secs(8));
    let (s, events) = run("sim:?niu=esf&loop_timeout=3s", &opts);
    assert!(!s.passed);
    let log = niu_log(&s);
    assert_eq!(log[1].0, "loop_opened", "{log:?}");
    assert_eq!(log[1].1, "timeout");
    let closed_at = log[0].2;
    assert!(
        (log[1].2 - closed_at - 3.0).abs() < 0.02,
        "3 s of line after it closed: {log:?}"
    );
    // The pattern stops coming back part-way: sync is lost and the seconds after it are
    // severely errored.
    assert!(
        s.check.sync_losses >= 1 || s.check.unsynced_bits > 0,
        "{s:?}"
    );
    assert!(
        s.g821.severely_errored_seconds >= 4,
        "{}",
        s.g821.severely_errored_seconds
    );
    assert!(names(&events).contains(&"sync_lost".to_string()) || s.check.unsynced_bits > 0);
    // The loop-down finds the loop already open.
    assert_eq!(s.loop_opened, Some(true));
}

#[test]
fn a_far_end_that_ignores_the_code_leaves_the_loop_open() {
    let command = LoopCommand::Inband {
        up: InbandCode::from_bits("0011").unwrap(),
        down: InbandCode::loop_down(),
        framed: true,
    };
    let (s, events) = run("sim:?niu=esf", &options(Framing::Esf, "1-24", command));
    assert!(!s.passed);
    assert!(!s.loop_closed);
    assert!(names(&events).contains(&"loop_not_closed".to_string()));
    assert!(
        s.findings.iter().any(|f| f.contains("did not close")),
        "{:?}",
        s.findings
    );
    assert!(niu_log(&s).is_empty(), "the NIU never looped");
}

/// A far end that sends back noise: no framing at all.
struct Noise;

struct NoiseSender;

struct NoiseReceiver(u64);

impl Link for Noise {
    fn describe(&self) -> String {
        "noise".into()
    }

    fn split(self: Box<Self>) -> Result<LinkHalves, LinkError> {
        Ok((
            Box::new(NoiseSender),
            Box::new(NoiseReceiver(0x9E37_79B9_7F4A_7C15)),
        ))
    }
}

impl LinkSender for NoiseSender {
    fn send(
        &mut self,
        _data: &[u8],
        _cancel: &loopscope_link::Cancel,
    ) -> Result<(), loopscope_link::SendError> {
        Ok(())
    }
}

impl LinkReceiver for NoiseReceiver {
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for byte in buf.iter_mut() {
            // xorshift64: noise, not a framing.
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *byte = self.0 as u8;
        }
        Ok(buf.len())
    }

    fn set_timeout(&mut self, _timeout: Option<Duration>) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_unframed_signal_is_reported_as_loss_of_frame() {
    let stop = Arc::new(AtomicBool::new(false));
    let opts = options(Framing::Esf, "1-24", LoopCommand::None);
    let s = framed::run(Box::new(Noise), &opts, &stop, &mut |_| {}).expect("runs");
    assert!(!s.passed);
    assert!(!s.in_frame);
    assert!(
        s.findings
            .iter()
            .any(|f| f.starts_with("loss of frame: no esf frame alignment")),
        "{:?}",
        s.findings
    );
}

#[test]
fn a_hard_loop_needs_no_command() {
    let (s, _) = run(
        "loop:",
        &options(Framing::E1Crc4, "1-31", LoopCommand::None),
    );
    assert!(s.passed, "{:?}", s.failure_reasons());
    assert_eq!(s.loop_opened, None);
    assert_eq!(s.crc_blocks, 10_000, "10 s of CRC-4 sub-multiframes");
}

/// `mean ± 5 sigma` of a binomial count.
fn within(count: u64, trials: u64, p: f64) -> bool {
    let mean = trials as f64 * p;
    let sigma = (trials as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - mean).abs() <= 5.0 * sigma + 1.0
}

#[test]
fn payload_errors_framing_bit_errors_and_crc_errors_are_counted_apart() {
    // Errors injected into the payload before framing: the pattern checker counts them; the
    // CRC is computed over the payload as sent, so neither it nor the framing sees them.
    let mut opts = options(Framing::Esf, "1-12", inband());
    opts.inject_ber = 1e-4;
    let (s, _) = run("sim:?niu=esf", &opts);
    assert!(
        within(s.check.bit_errors, s.check.bits, 1e-4),
        "{}",
        s.check.bit_errors
    );
    assert!(s.check.bit_errors > 0 && s.injected_bits >= s.check.bit_errors);
    assert_eq!((s.crc_errors, s.frame_bit_errors), (0, 0));

    // Errors on the line (forward path through the line loopback): each kind at its own rate.
    let ber = 1e-4;
    let mut opts = options(Framing::Esf, "1-12", inband());
    opts.amount = framed::FramedAmount::Duration(Duration::from_secs(60));
    let (s, _) = run("sim:?niu=esf&ber=1e-4&seed=5", &opts);
    assert!(s.loop_closed && s.loop_opened == Some(true));
    assert!(
        within(s.check.bit_errors, s.check.bits, ber),
        "payload {}",
        s.check.bit_errors
    );
    // 6 FPS bits per ESF, 2000 a second.
    assert!(
        within(s.frame_bit_errors, 120_000, ber),
        "framing bits {}",
        s.frame_bit_errors
    );
    assert!(s.frame_bit_errors > 0);
    // A block is errored when any of its 4632 bits is.
    let block_error = 1.0 - (1.0 - ber).powi(4632);
    assert!(
        within(s.crc_errors, s.crc_blocks, block_error),
        "CRC {} of {}",
        s.crc_errors,
        s.crc_blocks
    );
    // 37% errored blocks: every second is severely errored by G.826, none by G.821.
    let g826 = s.g826.as_ref().unwrap();
    assert_eq!(g826.seconds, 60);
    assert_eq!(g826.uas + g826.ses, 60, "{g826:?}");
    assert_eq!(
        s.g821.severely_errored_seconds + s.g821.unavailable_seconds,
        0
    );
}

#[test]
fn a_payload_loopback_regenerates_crc_so_only_the_pattern_sees_line_errors() {
    let mut opts = options(Framing::Esf, "1-24", LoopCommand::FdlPayload);
    opts.amount = framed::FramedAmount::Duration(Duration::from_secs(5));
    let (s, _) = run("sim:?niu=esf&ber=1e-5&seed=9", &opts);
    assert!(s.loop_closed, "{:?}", s.findings);
    assert!(
        s.check.bit_errors > 0,
        "payload errors pass through the loop"
    );
    assert_eq!(
        (s.crc_errors, s.frame_bit_errors),
        (0, 0),
        "the NIU framed the payload afresh"
    );
}

#[test]
fn the_niu_obeys_each_code_after_its_persistence_at_1e_minus_3() {
    for (seed, up, down) in [
        (1, InbandCode::loop_up(), InbandCode::loop_down()),
        (2, InbandCode::arm(), InbandCode::disarm()),
    ] {
        let command = LoopCommand::Inband {
            up: up.clone(),
            down: down.clone(),
            framed: true,
        };
        let mut opts = options(Framing::Esf, "1-24", command);
        opts.amount = framed::FramedAmount::Duration(Duration::from_secs(2));
        opts.max_ber = Some(0.01);
        let (s, _) = run(&format!("sim:?niu=esf&ber=1e-3&seed={seed}"), &opts);
        assert!(
            s.loop_closed && s.loop_opened == Some(true),
            "{:?}",
            s.findings
        );
        let log = niu_log(&s);
        assert_eq!(log.len(), 2, "{log:?}");
        let (closed, opened) = (&log[0], &log[1]);
        assert_eq!(closed.1, format!("in-band loop-up {}", up.bit_string()));
        assert!(
            (5.0..5.02).contains(&closed.2),
            "after 5 s of the code, not before: {closed:?}"
        );
        assert_eq!(opened.1, format!("in-band loop-down {}", down.bit_string()));
        assert!(s.check.bit_errors > 0, "the line really is errored");
    }
}

#[test]
fn a_loop_up_code_sent_for_less_than_the_persistence_does_not_loop() {
    let mut opts = options(Framing::Esf, "1-24", inband());
    opts.loop_wait = Duration::from_secs(4);
    let (s, _) = run("sim:?niu=esf&ber=1e-3&seed=3", &opts);
    assert!(!s.loop_closed);
    assert!(!s.passed);
    assert!(niu_log(&s).is_empty(), "4 s of 00001 is not 5");
}
