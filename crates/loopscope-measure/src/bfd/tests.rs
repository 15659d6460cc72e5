//! The state machine driven in virtual time: two sessions hand packets to each other.

use std::time::{Duration, Instant};

use loopscope_wire::bfd::{AuthType, ControlRepr, Diagnostic, MAX_CONTROL_LEN, State};

use super::session::{AuthConfig, DropReason, Session, SessionConfig, SessionEvent};

fn config(tx_ms: u64, mult: u8, auth: Option<AuthConfig>) -> SessionConfig {
    SessionConfig {
        desired_min_tx: Duration::from_millis(tx_ms),
        required_min_rx: Duration::from_millis(tx_ms),
        detect_mult: mult,
        passive: false,
        demand: false,
        required_min_echo_rx: Duration::ZERO,
        auth,
    }
}

/// Delivers everything `from` has due at `now` to `to`; returns the packets.
fn deliver(from: &mut Session, to: &mut Session, now: Instant) -> Vec<ControlRepr> {
    let mut sent = Vec::new();
    let mut out = [0u8; MAX_CONTROL_LEN];
    while let Some(len) = from.transmit_due(now, &mut out) {
        let repr = ControlRepr::parse_bytes(&out[..len]).expect("we emit valid packets");
        to.receive(now, &out[..len], &repr).expect("accepted");
        sent.push(repr);
    }
    sent
}

/// Runs both sessions in 1 ms steps for `span`.
fn run(a: &mut Session, b: &mut Session, start: Instant, span: Duration) -> Instant {
    let mut now = start;
    while now < start + span {
        a.on_timer(now);
        b.on_timer(now);
        deliver(a, b, now);
        deliver(b, a, now);
        now += Duration::from_millis(1);
    }
    now
}

#[test]
fn two_sessions_come_up_and_reach_the_configured_rate_through_a_poll() {
    let t0 = Instant::now();
    let mut a = Session::new(config(50, 3, None), 1, t0);
    let mut b = Session::new(config(50, 3, None), 2, t0);
    let now = run(&mut a, &mut b, t0, Duration::from_millis(20));
    assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    let transitions = |events: &[SessionEvent]| -> Vec<(State, State)> {
        events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::StateChange { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect()
    };
    // RFC 5880 §6.2: a hears b's Init while Down and goes straight Up; b, which heard a's
    // Down first, passes through Init.
    let events = a.drain_events();
    assert_eq!(transitions(&events), [(State::Down, State::Up)]);
    assert_eq!(
        transitions(&b.drain_events()),
        [(State::Down, State::Init), (State::Init, State::Up)]
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::PollCompleted { .. }))
    );
    assert_eq!(a.tx_interval(), Duration::from_millis(50));
    assert_eq!(a.detection_time(), Duration::from_millis(150));
    // Then a sends every 37.5..=50 ms (75..=100 % jitter): 20 to 27 packets in a second.
    let mut out = [0u8; MAX_CONTROL_LEN];
    let mut count = 0;
    let mut t = now;
    while t < now + Duration::from_secs(1) {
        if a.transmit_due(t, &mut out).is_some() {
            count += 1;
        }
        t += Duration::from_millis(1);
    }
    assert!(
        (20..=27).contains(&count),
        "{count} packets in 1 s at 50 ms"
    );
}

#[test]
fn silence_for_a_detection_time_gives_down_with_diagnostic_1() {
    let t0 = Instant::now();
    let mut a = Session::new(config(50, 3, None), 1, t0);
    let mut b = Session::new(config(50, 3, None), 2, t0);
    let now = run(&mut a, &mut b, t0, Duration::from_millis(200));
    let last = a.last_rx().expect("received");
    a.drain_events();
    // b goes silent; a fires its timer every millisecond.
    let mut t = now;
    while a.state() == State::Up {
        t += Duration::from_millis(1);
        a.on_timer(t);
    }
    assert_eq!(a.diagnostic(), Diagnostic::ControlDetectionTimeExpired);
    let detected = t.duration_since(last);
    assert!(
        detected >= Duration::from_millis(150) && detected <= Duration::from_millis(151),
        "{detected:?}"
    );
    assert!(a.drain_events().iter().any(|e| matches!(
        e,
        SessionEvent::StateChange { since_last_rx: Some(d), .. } if *d == detected
    )));
}

#[test]
fn admin_down_at_the_peer_gives_down_with_diagnostic_3() {
    let t0 = Instant::now();
    let mut a = Session::new(config(50, 3, None), 1, t0);
    let mut b = Session::new(config(50, 3, None), 2, t0);
    let now = run(&mut a, &mut b, t0, Duration::from_millis(50));
    b.admin_down(now);
    let sent = deliver(&mut b, &mut a, now);
    assert_eq!(sent[0].state, State::AdminDown);
    assert_eq!(sent[0].diagnostic, Diagnostic::AdministrativelyDown);
    assert_eq!(a.state(), State::Down);
    assert_eq!(a.diagnostic(), Diagnostic::NeighborSignaledSessionDown);
}

#[test]
fn a_parameter_change_is_announced_with_poll_and_takes_effect_at_the_final() {
    let t0 = Instant::now();
    let mut a = Session::new(config(50, 3, None), 1, t0);
    let mut b = Session::new(config(50, 3, None), 2, t0);
    let now = run(&mut a, &mut b, t0, Duration::from_millis(100));
    a.drain_events();
    b.drain_events();
    a.change_parameters(
        now,
        Duration::from_millis(200),
        Duration::from_millis(200),
        5,
    );
    // Slower sending waits for the Final (RFC 5880 §6.8.3).
    assert_eq!(a.tx_interval(), Duration::from_millis(50));
    let polls = deliver(&mut a, &mut b, now);
    assert!(polls.iter().all(|p| p.poll && !p.final_));
    let finals = deliver(&mut b, &mut a, now);
    assert!(finals.iter().any(|p| p.final_ && !p.poll));
    assert!(!a.poll_active());
    assert_eq!(a.tx_interval(), Duration::from_millis(200));
    assert_eq!(b.detection_time(), Duration::from_millis(1000));
    assert!(b.drain_events().iter().any(|e| matches!(
        e,
        SessionEvent::RemoteParameters {
            desired_min_tx_us: 200_000,
            detect_mult: 5,
            ..
        }
    )));
}

fn keyed(auth_type: AuthType, key: &[u8]) -> Option<AuthConfig> {
    Some(AuthConfig {
        auth_type,
        key_id: 3,
        key: key.to_vec(),
    })
}

#[test]
fn every_auth_type_comes_up_and_a_wrong_key_is_dropped_without_harm() {
    for auth_type in [
        AuthType::SimplePassword,
        AuthType::KeyedMd5,
        AuthType::MeticulousKeyedMd5,
        AuthType::KeyedSha1,
        AuthType::MeticulousKeyedSha1,
    ] {
        let t0 = Instant::now();
        let mut a = Session::new(config(50, 3, keyed(auth_type, b"secret")), 1, t0);
        let mut b = Session::new(config(50, 3, keyed(auth_type, b"secret")), 2, t0);
        let now = run(&mut a, &mut b, t0, Duration::from_millis(100));
        assert_eq!(
            (a.state(), b.state()),
            (State::Up, State::Up),
            "{auth_type}"
        );
        // A forger with the wrong key: same discriminators, state Down.
        let mut forger = Session::new(config(50, 3, keyed(auth_type, b"guess")), 2, now);
        let mut out = [0u8; MAX_CONTROL_LEN];
        let len = forger.transmit_due(now, &mut out).expect("first packet");
        let repr = ControlRepr::parse_bytes(&out[..len]).expect("valid layout");
        assert_eq!(
            a.receive(now, &out[..len], &repr),
            Err(DropReason::AuthFailed)
        );
        assert_eq!(a.state(), State::Up, "{auth_type}");
        // No authentication at all is a mismatch.
        let mut plain = Session::new(config(50, 3, None), 2, now);
        let len = plain.transmit_due(now, &mut out).expect("first packet");
        let repr = ControlRepr::parse_bytes(&out[..len]).expect("valid");
        assert_eq!(
            a.receive(now, &out[..len], &repr),
            Err(DropReason::AuthMismatch)
        );
        assert_eq!(a.state(), State::Up);
    }
}

#[test]
fn a_replayed_meticulous_packet_is_dropped() {
    let t0 = Instant::now();
    let auth = keyed(AuthType::MeticulousKeyedSha1, b"secret");
    let mut a = Session::new(config(50, 3, auth.clone()), 1, t0);
    let mut b = Session::new(config(50, 3, auth), 2, t0);
    let now = run(&mut a, &mut b, t0, Duration::from_millis(100));
    let mut out = [0u8; MAX_CONTROL_LEN];
    let mut t = now;
    let len = loop {
        if let Some(len) = b.transmit_due(t, &mut out) {
            break len;
        }
        t += Duration::from_millis(1);
    };
    let repr = ControlRepr::parse_bytes(&out[..len]).expect("valid");
    assert_eq!(a.receive(t, &out[..len], &repr), Ok(()));
    assert_eq!(
        a.receive(t, &out[..len], &repr),
        Err(DropReason::AuthSequence)
    );
    assert_eq!(a.state(), State::Up);
}

#[test]
fn a_passive_session_waits_for_the_peer() {
    let t0 = Instant::now();
    let mut passive = config(50, 3, None);
    passive.passive = true;
    let mut a = Session::new(passive, 1, t0);
    let mut out = [0u8; MAX_CONTROL_LEN];
    for ms in 0..3000 {
        assert!(
            a.transmit_due(t0 + Duration::from_millis(ms), &mut out)
                .is_none()
        );
    }
    let mut b = Session::new(config(50, 3, None), 2, t0);
    run(
        &mut b,
        &mut a,
        t0 + Duration::from_secs(3),
        Duration::from_millis(20),
    );
    assert_eq!(a.state(), State::Up);
}

#[test]
fn a_packet_for_another_discriminator_is_dropped() {
    let t0 = Instant::now();
    let mut a = Session::new(config(50, 3, None), 1, t0);
    let mut b = Session::new(config(50, 3, None), 2, t0);
    let now = run(&mut a, &mut b, t0, Duration::from_millis(50));
    let mut stranger = Session::new(config(50, 3, None), 9, now);
    let mut out = [0u8; MAX_CONTROL_LEN];
    let len = stranger.transmit_due(now, &mut out).expect("packet");
    out[8..12].copy_from_slice(&77u32.to_be_bytes());
    let repr = ControlRepr::parse_bytes(&out[..len]).expect("valid");
    assert_eq!(
        a.receive(now, &out[..len], &repr),
        Err(DropReason::UnknownDiscriminator)
    );
    assert_eq!(a.state(), State::Up);
}

/// A peer that, like FRR's bfdd, advertises slow timers (1 s) until Up and then lowers its
/// Required Min RX: our next packet must follow the new interval, not the 1 s one scheduled
/// before, or the peer's Detection Time (3 × 50 ms) expires. Found against bfdd 8.4: the
/// session flapped every 150 ms.
#[test]
fn a_peer_that_lowers_its_required_min_rx_gets_packets_at_the_new_interval() {
    let t0 = Instant::now();
    let mut a = Session::new(config(50, 3, None), 1, t0);
    let mut out = [0u8; MAX_CONTROL_LEN];
    assert!(a.transmit_due(t0, &mut out).is_some());
    let peer = |state: State, rx_us: u32, final_: bool| ControlRepr {
        diagnostic: Diagnostic::None,
        state,
        poll: false,
        final_,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 2,
        your_discriminator: 1,
        desired_min_tx_us: rx_us,
        required_min_rx_us: rx_us,
        required_min_echo_rx_us: 0,
        auth: None,
    };
    let bytes = [0u8; 24]; // the digest input; no authentication here
    let t1 = t0 + Duration::from_millis(5);
    a.receive(t1, &bytes, &peer(State::Init, 1_000_000, false))
        .expect("accepted");
    assert_eq!(a.state(), State::Up);
    while a.transmit_due(t1, &mut out).is_some() {}
    let t2 = t1 + Duration::from_millis(5);
    a.receive(t2, &bytes, &peer(State::Up, 50_000, true))
        .expect("accepted");
    let mut t = t2;
    while a.transmit_due(t, &mut out).is_none() {
        t += Duration::from_millis(1);
        assert!(
            t <= t2 + Duration::from_millis(50),
            "nothing sent 50 ms after the change"
        );
    }
}

/// The periodic schedule is absolute: a runner that wakes 3 ms late every time sends each
/// packet 3 ms after its deadline, and the deadlines themselves stay 75-100 % of the interval
/// apart (RFC 5880 §6.8.7). Before, each deadline was counted from the late send, so every
/// gap grew by the lateness (37.5-50 ms became 40.5-53 ms).
#[test]
fn lateness_delays_one_packet_and_never_the_schedule() {
    let t0 = Instant::now();
    let mut a = Session::new(config(50, 3, None), 1, t0);
    let mut b = Session::new(config(50, 3, None), 2, t0);
    let mut now = run(&mut a, &mut b, t0, Duration::from_millis(400));
    assert_eq!(a.state(), State::Up);
    assert!(!a.poll_active(), "the poll to 50 ms has ended");
    let mut out = [0u8; MAX_CONTROL_LEN];
    let mut deadlines = Vec::new();
    while deadlines.len() < 200 {
        let due = a.next_deadline().expect("a periodic packet is scheduled");
        // `run` steps whole milliseconds, so the deadline pending when it ended can already be
        // past (by up to 1 ms, as the jitter falls): that one packet is later than 3 ms. Each
        // deadline after it comes while the runner sleeps, and is met exactly 3 ms late.
        let already_past = due < now;
        // Keep the peer's Detection Time from expiring: it answers every time we wake.
        now = due.max(now) + Duration::from_millis(3);
        a.on_timer(now);
        if let Some(len) = a.transmit_due(now, &mut out) {
            let repr = ControlRepr::parse_bytes(&out[..len]).expect("valid");
            b.receive(now, &out[..len], &repr).expect("accepted");
            if let Some(scheduled) = a.last_scheduled() {
                if already_past {
                    assert!(deadlines.is_empty(), "only the first deadline can be past");
                } else {
                    assert_eq!(now - scheduled, Duration::from_millis(3));
                }
                deadlines.push(scheduled);
            }
        }
        b.on_timer(now);
        deliver(&mut b, &mut a, now);
    }
    for pair in deadlines.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_micros(37_500) && gap <= Duration::from_millis(50),
            "deadline gap {gap:?}"
        );
    }
}

/// RFC 5880 §6.8.7: the gap between two periodic packets is never under 75 % of the interval.
/// A packet sent 13 ms late at 50 ms would otherwise be followed by one on the absolute
/// schedule 24.5-37 ms later (a capture against bfdd showed such early gaps after late sends).
#[test]
fn a_late_packet_is_never_followed_by_an_early_one() {
    let t0 = Instant::now();
    let mut a = Session::new(config(50, 3, None), 1, t0);
    let mut b = Session::new(config(50, 3, None), 2, t0);
    let mut now = run(&mut a, &mut b, t0, Duration::from_millis(400));
    assert_eq!(a.state(), State::Up);
    let mut out = [0u8; MAX_CONTROL_LEN];
    let mut sent_at = Vec::new();
    while sent_at.len() < 100 {
        let due = a.next_deadline().expect("a periodic packet is scheduled");
        // Every third wake-up is 13 ms late, the others on time.
        let late = if sent_at.len() % 3 == 0 { 13 } else { 0 };
        now = due.max(now) + Duration::from_millis(late);
        a.on_timer(now);
        if let Some(len) = a.transmit_due(now, &mut out) {
            let repr = ControlRepr::parse_bytes(&out[..len]).expect("valid");
            b.receive(now, &out[..len], &repr).expect("accepted");
            if a.last_scheduled().is_some() {
                sent_at.push(now);
            }
        }
        b.on_timer(now);
        deliver(&mut b, &mut a, now);
    }
    for pair in sent_at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_micros(37_500),
            "gap {gap:?} under 75 % of 50 ms"
        );
    }
}

/// RFC 5880 §6.6: in Demand mode the peer stops its periodic packets; a Poll Sequence checks
/// the path. Answered, the session stays Up however long the silence before it; unanswered,
/// it goes Down with diagnostic 1 one Detection Time after the Poll started.
#[test]
fn a_demand_poll_is_answered_and_an_unanswered_one_is_a_detection() {
    let t0 = Instant::now();
    let mut demand = config(50, 3, None);
    demand.demand = true;
    let mut a = Session::new(demand, 1, t0);
    let mut b = Session::new(config(50, 3, None), 2, t0);
    let now = run(&mut a, &mut b, t0, Duration::from_millis(400));
    assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    assert!(a.local_demand_active());
    let mut out = [0u8; MAX_CONTROL_LEN];
    // The peer now stays silent: a whole second passes without a packet from it.
    let mut t = now;
    while t < now + Duration::from_secs(1) {
        assert!(
            b.transmit_due(t, &mut out).is_none(),
            "b sent in Demand mode"
        );
        a.on_timer(t);
        while a.transmit_due(t, &mut out).is_some() {}
        t += Duration::from_millis(1);
    }
    assert_eq!(
        a.state(),
        State::Up,
        "silence in Demand mode is no detection"
    );
    a.drain_events();
    // A Poll, answered.
    a.start_poll(t);
    let sent = deliver(&mut a, &mut b, t);
    assert!(sent.iter().any(|repr| repr.poll));
    let answers = deliver(&mut b, &mut a, t + Duration::from_millis(1));
    assert!(answers.iter().any(|repr| repr.final_));
    assert!(!a.poll_active());
    assert!(
        a.drain_events()
            .iter()
            .any(|e| matches!(e, SessionEvent::PollCompleted { .. }))
    );
    // A Poll into silence: Down, diagnostic 1, one Detection Time (3 x 50 ms) after it began.
    let t = t + Duration::from_secs(2);
    a.start_poll(t);
    let mut now = t;
    while a.state() == State::Up {
        now += Duration::from_millis(1);
        a.on_timer(now);
        while a.transmit_due(now, &mut out).is_some() {}
        assert!(now < t + Duration::from_secs(1), "never detected");
    }
    assert_eq!(a.state(), State::Down);
    assert_eq!(a.diagnostic(), Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(now - t, Duration::from_millis(150));
}

/// The S-BFD reflector on the shared datagram loop: a probe for our discriminator is answered
/// (RFC 7880 §7.2.2: discriminators swapped, Up, Final for Poll, its Detect Mult and Desired
/// Min TX copied), one for another discriminator and a garbage datagram are dropped by reason,
/// and the loop's per-source rate limit applies: with 1 packet a second (a burst of 200) a
/// burst of 250 probes gets 200 answers and the rest are counted as refused.
#[test]
fn the_sbfd_reflector_answers_drops_and_keeps_the_rate_limit() {
    use std::net::{SocketAddr, UdpSocket};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let probe = |yours: u32, poll: bool| {
        let mut repr = super::sbfd_probe(9, yours, Duration::from_millis(20), 4);
        repr.poll = poll;
        let mut packet = [0u8; MAX_CONTROL_LEN];
        let len = repr.emit(&mut packet).unwrap();
        packet[..len].to_vec()
    };
    // Find a free port, then serve on it.
    let listen = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = super::ReflectorConfig {
        listen,
        discriminators: vec![42],
        min_rx: Duration::from_millis(7),
        rate_limit_pps: 1,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let (told, listening) = std::sync::mpsc::channel();
    let reflector = std::thread::spawn(move || {
        super::sbfd_reflect(&config, &flag, |event| {
            let _ = told.send(format!("{event:?}"));
        })
    });
    listening.recv_timeout(Duration::from_secs(10)).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to: SocketAddr = listen;
    client.send_to(&probe(42, true), to).unwrap();
    let mut buffer = [0u8; 128];
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (len, _) = client.recv_from(&mut buffer).unwrap();
    let answer = ControlRepr::parse_bytes(&buffer[..len]).unwrap();
    assert_eq!(answer.state, State::Up);
    assert_eq!(
        (answer.my_discriminator, answer.your_discriminator),
        (42, 9)
    );
    assert!(answer.final_ && !answer.poll && !answer.demand);
    assert_eq!(answer.detect_mult, 4);
    assert_eq!(answer.desired_min_tx_us, 20_000);
    assert_eq!(answer.required_min_rx_us, 7_000);
    client.send_to(&probe(43, false), to).unwrap();
    client.send_to(b"not bfd", to).unwrap();
    let good = probe(42, false);
    let burst: Vec<(&[u8], SocketAddr)> = (0..250).map(|_| (good.as_slice(), to)).collect();
    let mut sent = 0;
    while sent < burst.len() {
        sent += loopscope_sys::send_datagrams(&client, &burst[sent..]).unwrap();
    }
    // Wait for the answers the limit lets through (the burst's 200 tokens, less the three the
    // first probe, the wrong discriminator and the garbage took), then a little quiet.
    let mut answers = 0;
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while client.recv_from(&mut buffer).is_ok() {
        answers += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let summary = reflector.join().unwrap().unwrap();
    assert_eq!(summary.received, 253);
    assert_eq!(summary.answered, 1 + answers);
    assert_eq!(summary.dropped.get("unknown_discriminator"), Some(&1));
    assert_eq!(summary.dropped.get("malformed"), Some(&1));
    let refused = summary
        .dropped
        .get("refused_rate_limit")
        .copied()
        .unwrap_or(0);
    // 200 tokens at the start, one more a second.
    assert!((197..=199).contains(&answers), "{answers} answers");
    assert_eq!(summary.answered + refused + 2, 253, "{summary:?}");
}
