//! One BFD session's state machine (RFC 5880 §6.2, §6.8): pure, driven by the caller's clock,
//! so it is tested without sockets or sleeps. The caller feeds received packets
//! ([`Session::receive`]), asks when to wake ([`Session::next_deadline`]), fires the timers
//! ([`Session::on_timer`]) and sends what [`Session::transmit_due`] builds.

use std::time::{Duration, Instant};

use loopscope_wire::bfd::{
    self as wire, AuthRepr, AuthType, ControlRepr, Diagnostic, MAX_CONTROL_LEN, State,
};
use rand::Rng;

/// The slowest a session transmits while not Up: RFC 5880 §6.8.3 asks for at least one second.
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// Authentication of a session: the type, the Key ID and the secret (RFC 5880 §6.7).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Which of RFC 5880 §4.2-4.4's types.
    pub auth_type: AuthType,
    /// The Key ID sent and expected.
    pub key_id: u8,
    /// The password or key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for AuthConfig {
    // The secret stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("auth_type", &self.auth_type)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The parameters a session starts with.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// bfd.DesiredMinTxInterval once Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult.
    pub detect_mult: u8,
    /// Wait for the peer's first packet before sending (RFC 5880 §6.1, the passive role).
    pub passive: bool,
    /// bfd.DemandMode: ask the peer to stop its periodic packets once both are Up.
    pub demand: bool,
    /// The Required Min Echo RX Interval advertised (zero: no echo function here).
    pub required_min_echo_rx: Duration,
    /// Authentication, if any.
    pub auth: Option<AuthConfig>,
}

/// Why a received packet was dropped (RFC 5880 §6.8.6, plus GTSM of RFC 5881 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Single hop: the TTL or hop limit was not 255.
    Ttl,
    /// Version, Length, Detect Mult, Multipoint or an Authentication Section's layout.
    Malformed,
    /// My Discriminator zero, or Your Discriminator zero in Init or Up.
    ZeroDiscriminator,
    /// Your Discriminator names no session here.
    UnknownDiscriminator,
    /// Authentication present when none is configured, or absent when it is, or of another
    /// type or key.
    AuthMismatch,
    /// The password or digest is wrong.
    AuthFailed,
    /// The sequence number is outside the window of RFC 5880 §6.7.3.
    AuthSequence,
    /// The local session is AdminDown.
    AdminDown,
}

impl DropReason {
    /// The reason's name in JSON.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Ttl => "ttl",
            DropReason::Malformed => "malformed",
            DropReason::ZeroDiscriminator => "zero_discriminator",
            DropReason::UnknownDiscriminator => "unknown_discriminator",
            DropReason::AuthMismatch => "auth_mismatch",
            DropReason::AuthFailed => "auth_failed",
            DropReason::AuthSequence => "auth_sequence",
            DropReason::AdminDown => "admin_down",
        }
    }

    /// The reason a wire-level parse error counts as.
    pub fn of(error: &wire::BfdError) -> Self {
        match error {
            wire::BfdError::ZeroMyDiscriminator | wire::BfdError::ZeroYourDiscriminator(_) => {
                DropReason::ZeroDiscriminator
            }
            _ => DropReason::Malformed,
        }
    }
}

/// What happened inside the session, for the runner to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The local state changed.
    StateChange {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// The local diagnostic after the change.
        diagnostic: Diagnostic,
        /// The state and diagnostic of the packet that caused it (None for a timer or a
        /// local command).
        remote: Option<(State, Diagnostic)>,
        /// For a Control Detection Time expiry: the time since the last valid packet.
        since_last_rx: Option<Duration>,
    },
    /// A Poll Sequence ended with a Final; the new parameters are in force.
    PollCompleted {
        /// From the first Poll to the Final.
        took: Duration,
    },
    /// The peer changed what it advertises (Desired Min TX, Required Min RX, Detect Mult).
    RemoteParameters {
        /// Its Desired Min TX Interval.
        desired_min_tx_us: u32,
        /// Its Required Min RX Interval.
        required_min_rx_us: u32,
        /// Its Detect Mult.
        detect_mult: u8,
    },
}

/// One session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    remote_state: State,
    local_discr: u32,
    remote_discr: u32,
    local_diag: Diagnostic,
    /// bfd.DesiredMinTxInterval as advertised now (slow while not Up).
    desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval as advertised now.
    required_min_rx: Duration,
    /// The values in force for our transmit interval and the peer's detection time: they
    /// follow the advertised ones only when a Poll Sequence ends (RFC 5880 §6.8.3).
    tx_in_force: Duration,
    rx_in_force: Duration,
    remote_min_rx: Duration,
    remote_desired_min_tx: Duration,
    remote_detect_mult: u8,
    remote_demand: bool,
    remote_min_echo_rx: Duration,
    poll: Option<Instant>,
    xmit_auth_seq: u32,
    rcv_auth_seq: u32,
    auth_seq_known: bool,
    last_rx: Option<Instant>,
    /// When the next periodic packet is due: an absolute schedule, each deadline following
    /// the previous deadline (not the moment the previous packet left), so a late wake-up
    /// delays one packet and never the ones after it.
    next_tx: Option<Instant>,
    /// The deadline of the periodic packet [`Session::transmit_due`] built last (None when
    /// that packet was sent out of schedule: a Final, or after a state change).
    last_scheduled: Option<Instant>,
    send_now: bool,
    send_final: bool,
    /// The caller's clock at its last call: the session never reads the clock itself.
    now: Instant,
    events: Vec<SessionEvent>,
}

impl Session {
    /// A session in Down with our discriminator `local_discr`, sending at once unless passive.
    pub fn new(config: SessionConfig, local_discr: u32, now: Instant) -> Self {
        let mut rng = rand::rng();
        Session {
            state: State::Down,
            remote_state: State::Down,
            local_discr,
            remote_discr: 0,
            local_diag: Diagnostic::None,
            desired_min_tx: config.desired_min_tx.max(SLOW_TX),
            required_min_rx: config.required_min_rx,
            tx_in_force: config.desired_min_tx.max(SLOW_TX),
            rx_in_force: config.required_min_rx,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_min_tx: Duration::ZERO,
            remote_detect_mult: 0,
            remote_demand: false,
            remote_min_echo_rx: Duration::ZERO,
            poll: None,
            xmit_auth_seq: rng.random(),
            rcv_auth_seq: 0,
            auth_seq_known: false,
            last_rx: None,
            next_tx: if config.passive { None } else { Some(now) },
            last_scheduled: None,
            send_now: false,
            send_final: false,
            now,
            events: Vec::new(),
            config,
        }
    }

    /// bfd.SessionState.
    pub fn state(&self) -> State {
        self.state
    }
    /// bfd.RemoteSessionState.
    pub fn remote_state(&self) -> State {
        self.remote_state
    }
    /// bfd.LocalDiscr.
    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }
    /// bfd.RemoteDiscr.
    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }
    /// bfd.LocalDiag.
    pub fn diagnostic(&self) -> Diagnostic {
        self.local_diag
    }
    /// The peer's Detect Mult (zero before it spoke).
    pub fn remote_detect_mult(&self) -> u8 {
        self.remote_detect_mult
    }
    /// The peer's Desired Min TX Interval.
    pub fn remote_desired_min_tx(&self) -> Duration {
        self.remote_desired_min_tx
    }
    /// The peer's Required Min RX Interval.
    pub fn remote_min_rx(&self) -> Duration {
        self.remote_min_rx
    }
    /// The peer's Required Min Echo RX Interval.
    pub fn remote_min_echo_rx(&self) -> Duration {
        self.remote_min_echo_rx
    }
    /// The parameters in use.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
    /// Whether a Poll Sequence is under way.
    pub fn poll_active(&self) -> bool {
        self.poll.is_some()
    }
    /// When the last valid packet arrived.
    pub fn last_rx(&self) -> Option<Instant> {
        self.last_rx
    }
    /// The deadline of the periodic packet built by the last [`Session::transmit_due`], so a
    /// runner can measure how late it really left; None for a packet out of schedule.
    pub fn last_scheduled(&self) -> Option<Instant> {
        self.last_scheduled
    }

    /// Takes the events since the last call.
    pub fn drain_events(&mut self) -> Vec<SessionEvent> {
        std::mem::take(&mut self.events)
    }

    /// The interval between our periodic packets before jitter: the larger of our Desired Min
    /// TX in force and the peer's Required Min RX (RFC 5880 §6.8.7).
    pub fn tx_interval(&self) -> Duration {
        self.tx_in_force.max(self.remote_min_rx)
    }

    /// The interval the peer should send at: the larger of its Desired Min TX and our Required
    /// Min RX in force (RFC 5880 §6.8.4).
    pub fn rx_interval(&self) -> Duration {
        self.rx_in_force.max(self.remote_desired_min_tx)
    }

    /// The Detection Time in asynchronous mode: the peer's Detect Mult times the agreed
    /// receive interval (RFC 5880 §6.8.4).
    pub fn detection_time(&self) -> Duration {
        self.rx_interval() * u32::from(self.remote_detect_mult)
    }

    /// Whether the peer has asked us to stop periodic packets (RFC 5880 §6.6).
    fn remote_demand_active(&self) -> bool {
        self.remote_demand && self.state == State::Up && self.remote_state == State::Up
    }

    /// Whether our own Demand mode is active, so the Detection Time applies only during a Poll
    /// Sequence (RFC 5880 §6.8.4).
    pub fn local_demand_active(&self) -> bool {
        self.config.demand && self.state == State::Up && self.remote_state == State::Up
    }

    fn detection_deadline(&self) -> Option<Instant> {
        let last = self.last_rx?;
        if self.remote_detect_mult == 0 {
            return None;
        }
        if self.local_demand_active() {
            // RFC 5880 §6.6: in Demand mode the peer is silent and only a Poll Sequence checks
            // it; the Detection Time runs from the Poll's start (the silence before it is
            // expected), and no Final within it is a Down.
            let started = self.poll?;
            return Some(last.max(started) + self.detection_time());
        }
        Some(last + self.detection_time())
    }

    /// When the caller must next call [`Session::on_timer`] or [`Session::transmit_due`].
    pub fn next_deadline(&self) -> Option<Instant> {
        let send = if self.send_now || self.send_final {
            Some(self.now)
        } else {
            self.next_tx
        };
        match (send, self.detection_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set_state(&mut self, to: State, diagnostic: Diagnostic, cause: Option<&ControlRepr>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.local_diag = diagnostic;
        let since_last_rx = match (cause, self.last_rx) {
            (None, Some(last)) if diagnostic == Diagnostic::ControlDetectionTimeExpired => {
                Some(self.now.saturating_duration_since(last))
            }
            _ => None,
        };
        self.events.push(SessionEvent::StateChange {
            from,
            to,
            diagnostic,
            remote: cause.map(|repr| (repr.state, repr.diagnostic)),
            since_last_rx,
        });
        // RFC 5880 §6.8.3: not Up, transmit no faster than once a second; Up, go to the
        // configured rate through a Poll Sequence, since the advertised value changes.
        if to == State::Up {
            self.desired_min_tx = self.config.desired_min_tx;
            if self.desired_min_tx != self.tx_in_force {
                if self.desired_min_tx < self.tx_in_force {
                    // A faster rate may start at once; only an increase waits for the Final.
                    self.tx_in_force = self.desired_min_tx;
                }
                self.start_poll(self.now);
            }
        } else if from == State::Up {
            self.desired_min_tx = self.config.desired_min_tx.max(SLOW_TX);
            self.tx_in_force = self.desired_min_tx;
            self.poll = None;
        }
        // Tell the peer at once rather than a slow interval later, as common implementations
        // do; the periodic schedule restarts from here.
        if self.next_tx.is_some() || to != State::Down {
            self.send_now = true;
        }
    }

    /// The echo function saw no packet back within its Detection Time (RFC 5880 §6.8.5): an
    /// Up session goes Down with diagnostic 2, Echo Function Failed.
    pub fn echo_failed(&mut self, now: Instant) {
        self.now = now;
        if self.state == State::Up {
            self.set_state(State::Down, Diagnostic::EchoFunctionFailed, None);
        }
    }

    /// Starts a Poll Sequence (RFC 5880 §6.5): packets carry P until one with F arrives.
    pub fn start_poll(&mut self, now: Instant) {
        if self.poll.is_none() {
            self.poll = Some(now);
        }
        if self.next_tx.is_some() {
            self.send_now = true;
        }
    }

    /// Changes the timers of a running session; a Poll Sequence tells the peer (RFC 5880
    /// §6.8.3). Values that slow our sending or speed the peer's take effect at the Final.
    pub fn change_parameters(
        &mut self,
        now: Instant,
        desired_min_tx: Duration,
        required_min_rx: Duration,
        detect_mult: u8,
    ) {
        self.now = now;
        self.config.desired_min_tx = desired_min_tx;
        self.config.required_min_rx = required_min_rx;
        self.config.detect_mult = detect_mult.max(1);
        if self.state == State::Up {
            self.desired_min_tx = desired_min_tx;
            if desired_min_tx < self.tx_in_force {
                self.tx_in_force = desired_min_tx;
            }
        }
        self.required_min_rx = required_min_rx;
        if required_min_rx > self.rx_in_force {
            self.rx_in_force = required_min_rx;
        }
        self.reschedule_if_sooner(now);
        self.start_poll(now);
    }

    /// Takes the session administratively down (RFC 5880 §6.8.16): it keeps sending, in
    /// state AdminDown with diagnostic 7.
    pub fn admin_down(&mut self, now: Instant) {
        self.now = now;
        self.set_state(State::AdminDown, Diagnostic::AdministrativelyDown, None);
        self.send_now = true;
        if self.next_tx.is_none() {
            self.next_tx = Some(now);
        }
    }

    /// Leaves AdminDown for Down.
    pub fn admin_up(&mut self) {
        if self.state == State::AdminDown {
            self.set_state(State::Down, Diagnostic::None, None);
        }
    }

    fn check_auth(&mut self, bytes: &[u8], repr: &ControlRepr) -> Result<(), DropReason> {
        match (&self.config.auth, &repr.auth) {
            (None, None) => Ok(()),
            (None, Some(_)) | (Some(_), None) => Err(DropReason::AuthMismatch),
            (Some(config), Some(auth)) => {
                if config.auth_type != auth.auth_type || config.key_id != auth.key_id {
                    return Err(DropReason::AuthMismatch);
                }
                if !wire::verify(bytes, repr, &config.key) {
                    return Err(DropReason::AuthFailed);
                }
                if config.auth_type.is_keyed() {
                    // RFC 5880 §6.7.3/§6.7.4: within 3 × Detect Mult of the last one seen,
                    // strictly after it when meticulous.
                    if self.auth_seq_known {
                        let window = 3 * u32::from(self.config.detect_mult.max(repr.detect_mult));
                        let ahead = auth.sequence.wrapping_sub(self.rcv_auth_seq);
                        let low = u32::from(config.auth_type.is_meticulous());
                        if ahead < low || ahead > window {
                            return Err(DropReason::AuthSequence);
                        }
                    }
                    self.rcv_auth_seq = auth.sequence;
                    self.auth_seq_known = true;
                }
                Ok(())
            }
        }
    }

    /// Handles one received packet (already parsed; `bytes` are its octets, for the digest).
    /// RFC 5880 §6.8.6 from the authentication check on.
    pub fn receive(
        &mut self,
        now: Instant,
        bytes: &[u8],
        repr: &ControlRepr,
    ) -> Result<(), DropReason> {
        self.now = now;
        if repr.your_discriminator != 0 && repr.your_discriminator != self.local_discr {
            return Err(DropReason::UnknownDiscriminator);
        }
        self.check_auth(bytes, repr)?;
        let remote_min_rx = Duration::from_micros(u64::from(repr.required_min_rx_us));
        let remote_desired = Duration::from_micros(u64::from(repr.desired_min_tx_us));
        if self.remote_detect_mult != 0
            && (remote_min_rx != self.remote_min_rx
                || remote_desired != self.remote_desired_min_tx
                || repr.detect_mult != self.remote_detect_mult)
        {
            self.events.push(SessionEvent::RemoteParameters {
                desired_min_tx_us: repr.desired_min_tx_us,
                required_min_rx_us: repr.required_min_rx_us,
                detect_mult: repr.detect_mult,
            });
        }
        self.remote_discr = repr.my_discriminator;
        self.remote_state = repr.state;
        self.remote_demand = repr.demand;
        self.remote_min_rx = remote_min_rx;
        self.remote_desired_min_tx = remote_desired;
        self.remote_detect_mult = repr.detect_mult;
        self.remote_min_echo_rx = Duration::from_micros(u64::from(repr.required_min_echo_rx_us));
        if self.next_tx.is_none() {
            // The passive role starts sending once the peer has spoken (RFC 5880 §6.1).
            self.next_tx = Some(now);
        }
        if repr.poll {
            self.send_final = true;
        }
        if repr.final_
            && let Some(started) = self.poll.take()
        {
            self.tx_in_force = self.desired_min_tx;
            self.rx_in_force = self.required_min_rx;
            self.events.push(SessionEvent::PollCompleted {
                took: now.saturating_duration_since(started),
            });
        }
        self.reschedule_if_sooner(now);
        if self.state == State::AdminDown {
            return Err(DropReason::AdminDown);
        }
        self.last_rx = Some(now);
        if repr.state == State::AdminDown {
            if self.state != State::Down {
                self.set_state(
                    State::Down,
                    Diagnostic::NeighborSignaledSessionDown,
                    Some(repr),
                );
            }
        } else {
            match (self.state, repr.state) {
                (State::Down, State::Down) => {
                    self.set_state(State::Init, self.local_diag, Some(repr))
                }
                (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                    self.set_state(State::Up, Diagnostic::None, Some(repr))
                }
                (State::Up, State::Down) => self.set_state(
                    State::Down,
                    Diagnostic::NeighborSignaledSessionDown,
                    Some(repr),
                ),
                _ => {}
            }
        }
        Ok(())
    }

    /// Fires the detection timer if it has expired (RFC 5880 §6.8.4).
    pub fn on_timer(&mut self, now: Instant) {
        self.now = now;
        let Some(deadline) = self.detection_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        if matches!(self.state, State::Init | State::Up) {
            self.set_state(State::Down, Diagnostic::ControlDetectionTimeExpired, None);
        }
        // RFC 5880 §6.8.1: a Detection Time without a packet forgets the peer.
        self.remote_discr = 0;
        self.remote_state = State::Down;
        self.remote_detect_mult = 0;
        self.remote_demand = false;
        self.auth_seq_known = false;
        self.last_rx = None;
        self.poll = None;
    }

    /// The next periodic interval with RFC 5880 §6.8.7's jitter: 75..=100 % of the interval,
    /// or 75..=90 % with a Detect Mult of 1.
    fn jittered(&self) -> Duration {
        let top = if self.config.detect_mult == 1 {
            90
        } else {
            100
        };
        let percent = rand::rng().random_range(75..=top);
        self.tx_interval() * percent / 100
    }

    /// When the transmit interval has just shrunk (the peer lowered its Required Min RX, or a
    /// Poll Sequence ended), a packet scheduled at the old, longer interval would arrive after
    /// the peer's new Detection Time: the next one goes at the new interval instead.
    fn reschedule_if_sooner(&mut self, now: Instant) {
        if let Some(at) = self.next_tx
            && at > now + self.tx_interval()
        {
            self.next_tx = Some(now + self.jittered());
        }
    }

    /// Whether periodic transmission is on: the passive role waits for the peer, a peer in
    /// Demand mode stops it, and a Required Min RX of zero from the peer asks for silence.
    fn periodic_allowed(&self) -> bool {
        !self.remote_demand_active() && !self.remote_min_rx.is_zero()
    }

    /// Builds the packet due at `now`, if one is: a Final answering a Poll, a packet after a
    /// state change, or the periodic one. Writes it into `buffer` and returns its length.
    pub fn transmit_due(
        &mut self,
        now: Instant,
        buffer: &mut [u8; MAX_CONTROL_LEN],
    ) -> Option<usize> {
        self.now = now;
        let final_ = std::mem::take(&mut self.send_final);
        let periodic = self.next_tx.is_some_and(|at| now >= at);
        let immediate = std::mem::take(&mut self.send_now);
        if !final_ && !periodic && !immediate {
            return None;
        }
        self.last_scheduled = None;
        if let Some(due) = self.next_tx
            && (periodic || immediate)
        {
            let after = self.jittered();
            // RFC 5880 §6.8.7 makes every gap between two packets 75-100 % of the interval:
            // after a late send, the next deadline may move later, never closer than that.
            let earliest = now + self.tx_interval() * 3 / 4;
            self.next_tx = Some(if periodic && !immediate && due + after > now {
                // On schedule (or late by less than an interval): the next deadline follows
                // this one's, so lateness does not accumulate.
                self.last_scheduled = Some(due);
                (due + after).max(earliest)
            } else {
                // Sent out of schedule, or later than a whole interval (a stalled host): the
                // schedule restarts from now rather than bursting to catch up.
                if periodic && !immediate {
                    self.last_scheduled = Some(due);
                }
                now + after
            });
        }
        if !final_ && !immediate && !self.periodic_allowed() && self.poll.is_none() {
            return None;
        }
        if self.next_tx.is_none() && !final_ {
            return None;
        }
        Some(self.emit(buffer, final_))
    }

    fn emit(&mut self, buffer: &mut [u8; MAX_CONTROL_LEN], final_: bool) -> usize {
        let auth = self.config.auth.as_ref().map(|config| {
            if config.auth_type.is_keyed() {
                self.xmit_auth_seq = self.xmit_auth_seq.wrapping_add(1);
                AuthRepr::keyed(config.auth_type, config.key_id, self.xmit_auth_seq)
            } else {
                // Checked when the configuration was made.
                AuthRepr::password(config.key_id, &config.key)
                    .unwrap_or_else(|_| AuthRepr::keyed(config.auth_type, config.key_id, 0))
            }
        });
        let repr = ControlRepr {
            diagnostic: self.local_diag,
            state: self.state,
            // P and F are never both set (RFC 5880 §6.5).
            poll: self.poll.is_some() && !final_,
            final_,
            control_plane_independent: false,
            demand: self.config.demand && self.state == State::Up,
            detect_mult: self.config.detect_mult,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx_us: micros(self.desired_min_tx),
            required_min_rx_us: micros(self.required_min_rx),
            required_min_echo_rx_us: micros(self.config.required_min_echo_rx),
            auth,
        };
        let len = repr.emit(buffer).unwrap_or(0);
        if let Some(config) = &self.config.auth {
            // The key length was checked when the configuration was made.
            let _ = wire::sign(&mut buffer[..len], &config.key);
        }
        len
    }
}

/// A duration in whole microseconds, as BFD's interval fields carry it (saturating).
pub fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}
