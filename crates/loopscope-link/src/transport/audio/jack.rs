//! `jack:` — a client of a running JACK server (jackd, or PipeWire's JACK interface).
//!
//! `jack:?connect=loop` wires the client's own output to its own input inside the server: the
//! software loopback JACK users measure with `jack_delay`. `jack:?out=system:playback_1&in=
//! system:capture_1` wires the output to a playback port and a capture port to the input, for a
//! cable loop on a sound card. Without either option nothing is wired and the ports
//! (`NAME:out`, `NAME:in`, NAME from `name=`, default `loopscope`) wait for `jack_connect`.
//!
//! The processor runs inside JACK's process callback, so every frame it renders is played in
//! the same cycle, and frame `n` of the output and frame `n` of the input belong to the same
//! cycle position: what a loop through the server gives back a period later shows as a delay
//! of one period. Built with the `jack` feature (which needs libjack's pkg-config file); libjack
//! itself is loaded when the link opens, so a host without it gets a one-line error.
//!
//! The server is the one libjack picks: `JACK_DEFAULT_SERVER` names it, else `default`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::{
    AudioError, AudioLink, AudioProcessor, Clocking, Flow, ReportedLatency, RunEnd, RunReport,
    StreamInfo,
};
use crate::endpoint::Endpoint;

const OPTIONS: [&str; 5] = ["connect", "out", "in", "name", "rate"];
/// How long the process callback may stay silent before the server is taken to be gone.
const SERVER_SILENCE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Wiring {
    None,
    /// Own output to own input.
    Loop,
    /// Output to a playback port, a capture port to the input (either may be absent).
    Ports {
        playback: Option<String>,
        capture: Option<String>,
    },
}

/// `jack:`: ports of a JACK server, looped by a connection or by hardware.
pub struct JackLink {
    client: jack::Client,
    wiring: Wiring,
    description: String,
}

fn jack_error(what: &str, error: impl std::fmt::Display) -> AudioError {
    AudioError::Jack(format!("{what}: {error}"))
}

impl JackLink {
    /// Reads the port names and options.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, AudioError> {
        endpoint.reject_unknown_options(&OPTIONS)?;
        if !endpoint.target.is_empty() {
            return Err(endpoint
                .invalid("jack: takes no target (write jack:?connect=loop or jack:?out=...&in=...)")
                .into());
        }
        let wiring = match (
            endpoint.option("connect"),
            endpoint.option("out"),
            endpoint.option("in"),
        ) {
            (Some("loop"), None, None) => Wiring::Loop,
            (Some(other), None, None) => {
                return Err(endpoint
                    .bad_value("connect", other, "the one wiring is connect=loop")
                    .into());
            }
            (Some(_), _, _) => {
                return Err(endpoint
                    .invalid("connect=loop and out=/in= exclude each other")
                    .into());
            }
            (None, None, None) => Wiring::None,
            (None, playback, capture) => Wiring::Ports {
                playback: playback.map(str::to_string),
                capture: capture.map(str::to_string),
            },
        };
        let name = endpoint.option("name").unwrap_or("loopscope");
        if name.is_empty() || name.contains([':', '\0']) {
            return Err(endpoint
                .bad_value("name", name, "a client name, without ':'")
                .into());
        }
        // libjack prints its own complaints (server not running...) on stderr; our error says
        // it in one line. Only set the logger once the library has loaded: the call goes to it.
        if jack::jack_sys::library().is_ok() {
            jack::set_logger(jack::LoggerType::None);
        }
        let (client, _status) = jack::Client::new(name, jack::ClientOptions::NO_START_SERVER)
            .map_err(|e| match e {
                jack::Error::LibraryError(why) => AudioError::Jack(format!(
                    "cannot load libjack ({why}); install the JACK library (Debian: libjack-jackd2-0)"
                )),
                other => jack_error(
                    "cannot connect to the JACK server (is jackd running?)",
                    other,
                ),
            })?;
        if let Some(rate) = endpoint.parsed_option::<u32>("rate")?
            && rate != client.sample_rate()
        {
            return Err(endpoint
                .bad_value(
                    "rate",
                    &rate.to_string(),
                    format!("the JACK server runs at {} Hz", client.sample_rate()),
                )
                .into());
        }
        Ok(JackLink {
            client,
            wiring,
            description: endpoint.original.clone(),
        })
    }
}

/// Counts xruns; the server reports them on its notification thread.
struct Notifications {
    xruns: Arc<AtomicU64>,
}

impl jack::NotificationHandler for Notifications {
    fn xrun(&mut self, _: &jack::Client) -> jack::Control {
        self.xruns.fetch_add(1, Ordering::Relaxed);
        jack::Control::Continue
    }
}

impl AudioLink for JackLink {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn rate(&self) -> u32 {
        self.client.sample_rate()
    }

    fn run(
        self: Box<Self>,
        mut processor: Box<dyn AudioProcessor>,
        stop: Arc<AtomicBool>,
    ) -> Result<RunReport, AudioError> {
        let JackLink {
            client,
            wiring,
            description: _,
        } = *self;
        let mut out_port = client
            .register_port("out", jack::AudioOut::default())
            .map_err(|e| jack_error("cannot register the output port", e))?;
        let in_port = client
            .register_port("in", jack::AudioIn::default())
            .map_err(|e| jack_error("cannot register the input port", e))?;
        let out_name = out_port
            .name()
            .map_err(|e| jack_error("output port name", e))?;
        let in_name = in_port
            .name()
            .map_err(|e| jack_error("input port name", e))?;
        let in_unowned = in_port.clone_unowned();
        let out_unowned = out_port.clone_unowned();
        processor.start(&StreamInfo {
            rate: client.sample_rate(),
            period: client.buffer_size(),
            clocking: Clocking::RealTime,
        });

        let cycles = Arc::new(AtomicU64::new(0));
        let frames = Arc::new(AtomicU64::new(0));
        let (done_tx, done_rx) = mpsc::sync_channel::<()>(1);
        let (cycles_in_callback, frames_in_callback) = (Arc::clone(&cycles), Arc::clone(&frames));
        let mut finished = false;
        let callback = move |_: &jack::Client, scope: &jack::ProcessScope| -> jack::Control {
            // Input first, as a duplex device does: the cycle's recording exists before its
            // playback is computed. (A port wired to its own client's input may share the
            // output's buffer; reading first sees last cycle's output, as `jack_delay` does.)
            if !finished && processor.capture(in_port.as_slice(scope)) == Flow::Stop {
                finished = true;
                let _ = done_tx.try_send(());
            }
            let output = out_port.as_mut_slice(scope);
            if finished {
                output.fill(0.0);
            } else {
                processor.render(output);
            }
            frames_in_callback.fetch_add(scope.n_frames() as u64, Ordering::Relaxed);
            cycles_in_callback.fetch_add(1, Ordering::Relaxed);
            jack::Control::Continue
        };
        let xruns = Arc::new(AtomicU64::new(0));
        let active = client
            .activate_async(
                Notifications {
                    xruns: Arc::clone(&xruns),
                },
                jack::contrib::ClosureProcessHandler::new(callback),
            )
            .map_err(|e| jack_error("cannot activate the client", e))?;
        let connect = |from: &str, to: &str| {
            active
                .as_client()
                .connect_ports_by_name(from, to)
                .map_err(|e| jack_error(&format!("cannot connect {from} to {to}"), e))
        };
        match &wiring {
            Wiring::None => {}
            Wiring::Loop => connect(&out_name, &in_name)?,
            Wiring::Ports { playback, capture } => {
                if let Some(playback) = playback {
                    connect(&out_name, playback)?;
                }
                if let Some(capture) = capture {
                    connect(capture, &in_name)?;
                }
            }
        }

        let mut last_cycles = 0;
        let mut last_progress = std::time::Instant::now();
        let end = loop {
            match done_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => break RunEnd::Done,
                Err(mpsc::RecvTimeoutError::Disconnected) => break RunEnd::ServerGone,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if stop.load(Ordering::Relaxed) {
                break RunEnd::Stopped;
            }
            let now_cycles = cycles.load(Ordering::Relaxed);
            if now_cycles != last_cycles {
                last_cycles = now_cycles;
                last_progress = std::time::Instant::now();
            } else if last_progress.elapsed() > SERVER_SILENCE {
                break RunEnd::ServerGone;
            }
        };
        // What the server says the wiring adds, read while the connections still stand.
        let playback = out_unowned.get_latency_range(jack::LatencyType::Playback).1;
        let capture = in_unowned.get_latency_range(jack::LatencyType::Capture).1;
        let reported_latency = match wiring {
            Wiring::None => None,
            _ => Some(ReportedLatency {
                playback_frames: playback,
                capture_frames: capture,
            }),
        };
        let frames = frames.load(Ordering::Relaxed);
        // A server that went away cannot be deactivated cleanly; dropping the client is all.
        drop(active.deactivate());
        Ok(RunReport {
            end,
            frames_played: frames,
            frames_captured: frames,
            xruns: xruns.load(Ordering::Relaxed),
            reported_latency,
        })
    }
}
