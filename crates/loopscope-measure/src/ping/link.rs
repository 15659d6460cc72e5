//! Pings over any link: stamped frames (`loopscope_wire::ping_frame`) sent through it, found
//! again in what comes back, however the link merged or split them.

use std::io;
use std::time::Duration;

use loopscope_link::link::{Cancel, Link, LinkError, LinkReceiver, LinkSender, is_timeout};
use loopscope_wire::ping_frame::{self, Decoded, StreamDecoder};
use serde_json::{Map, Value};

use super::{LinkFailure, Pinger, Received, SendError, now_ns};

/// Frames over a link.
pub struct LinkPinger {
    target: String,
    tx: Box<dyn LinkSender>,
    rx: Box<dyn LinkReceiver>,
    decoder: Option<StreamDecoder>,
    frame: Vec<u8>,
    buffer: Vec<u8>,
    /// The receive timeout the link has now: re-arming it costs a system call on some links.
    current_timeout: Option<Duration>,
}

impl LinkPinger {
    /// Opens `link` (connects, opens the device) and gets ready to ping through it.
    pub fn new(link: Box<dyn Link>) -> Result<Self, LinkError> {
        let target = link.describe();
        let (tx, rx) = link.split()?;
        Ok(LinkPinger {
            target,
            tx,
            rx,
            decoder: None,
            frame: Vec::new(),
            buffer: vec![0u8; 65_536],
            current_timeout: None,
        })
    }
}

impl Pinger for LinkPinger {
    fn target(&self) -> String {
        self.target.clone()
    }

    fn payload_range(&self) -> std::ops::RangeInclusive<usize> {
        0..=ping_frame::MAX_PAYLOAD
    }

    fn banner(&self, payload: usize) -> String {
        format!(
            "PING {} {}({}) bytes of data.",
            self.target,
            payload,
            payload + ping_frame::HEADER_LEN + ping_frame::TRAILER_LEN
        )
    }

    fn send(&mut self, sequence: u64, payload: usize) -> Result<u64, SendError> {
        // Every frame of a run has the same length; the decoder refuses others at once.
        self.decoder
            .get_or_insert_with(|| StreamDecoder::expecting(payload.min(ping_frame::MAX_PAYLOAD)));
        let sent_ns = now_ns();
        ping_frame::build(&mut self.frame, sequence, sent_ns, payload);
        self.tx
            .send(&self.frame, &Cancel::never())
            .map_err(|e| SendError::Fatal(e.into_io()))?;
        Ok(sent_ns)
    }

    fn receive(&mut self, wait: Duration, out: &mut Vec<Received>) -> Result<(), LinkFailure> {
        // Keep the current timeout when it overshoots the wanted wake-up by little.
        let keep = self.current_timeout.is_some_and(|current| {
            current >= wait && current - wait <= Duration::from_millis(1).max(wait / 8)
        });
        if !keep {
            self.rx
                .set_timeout(Some(wait))
                .map_err(LinkFailure::Receive)?;
            self.current_timeout = Some(wait);
        }
        let size = match self.rx.recv(&mut self.buffer) {
            Ok(0) => return Err(LinkFailure::Closed),
            Ok(size) => size,
            Err(error) if is_timeout(&error) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(error) => return Err(LinkFailure::Receive(error)),
        };
        let arrived_ns = now_ns();
        let decoder = self.decoder.get_or_insert_with(StreamDecoder::default);
        decoder.push(&self.buffer[..size]);
        while let Some(decoded) = decoder.next_frame() {
            out.push(match decoded {
                Decoded::Corrupt => Received::Garbage,
                Decoded::Frame { sequence, len, .. } => Received::Reply {
                    sequence,
                    bytes: len,
                    arrived_ns,
                    ttl: None,
                    corrupt: false,
                },
            });
        }
        Ok(())
    }

    fn summary_fields(&self, fields: &mut Map<String, Value>) {
        let stats = self.rx.stats();
        if !stats.is_empty()
            && let Ok(value) = serde_json::to_value(&stats)
        {
            fields.insert("link".into(), value);
        }
    }

    fn finish(&mut self) {
        let _ = self.tx.finish(&Cancel::never());
    }
}
