//! The far end of the Ethernet loopback (Y.1731 §7.2, IEEE 802.1ag §20.2): a MEP's loopback
//! responder on one interface. It answers each valid Loopback Message (LBM) addressed to the
//! interface's MAC, or to the multicast class 1 address of its MD level, with a Loopback Reply
//! (LBR): the addresses swapped (the reply's source is the interface's MAC), OpCode 3 made 2,
//! the transaction identifier and every TLV kept octet for octet.
//!
//! What it never answers, counting each: frames it cannot parse or whose PDU is malformed
//! (TLVs past the end, no End TLV, a First TLV Offset other than 4), LBRs and other OpCodes, a
//! message of another MD level, frames addressed elsewhere, frames from its own MAC or from a
//! group address. As `reflect` does, it keeps a reply no larger than the request (the reply is
//! the request's own octets up to its End TLV) and answers each source MAC at most a set number
//! of messages per second.
//!
//! A multicast LBM is answered at once; Y.1731 lets a MEP wait a random time up to a second
//! before a multicast reply, which this responder does not.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loopscope_sys::{EthernetSocket, PACKET_OUTGOING};
use loopscope_wire::cfm::{
    self, CfmError, CfmFrame, LoopbackKind, LoopbackPdu, LoopbackRepr, MacAddress, OPCODE_LBR,
};
use serde::Serialize;

/// How often the loop looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Sources whose rate is tracked at most; beyond, idle ones are forgotten first.
const MAX_TRACKED_SOURCES: usize = 4096;

/// How the responder runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthLbReflectConfig {
    /// The interface it answers on.
    pub interface: String,
    /// Its MD level, 0-7.
    pub level: u8,
    /// Messages answered per second per source MAC (0: no limit).
    pub rate_limit_pps: u32,
    /// Messages a source may send at once before the rate applies.
    pub rate_burst: u32,
}

/// Why the responder cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EthLbReflectError {
    /// No such interface.
    #[error("no interface '{0}' here (see `ip link`)")]
    NoInterface(String),
    /// The level is out of range.
    #[error("MD level {0} is out of range 0-7")]
    Level(u8),
    /// The socket could not be opened (CAP_NET_RAW is needed).
    #[error("cannot open an AF_PACKET socket on {interface}: {source}{hint}")]
    Socket {
        /// The interface.
        interface: String,
        /// What the kernel said.
        source: io::Error,
        /// How to fix it, when known.
        hint: &'static str,
    },
}

/// Something that happened while answering.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EthLbReflectEvent {
    /// Ready: the socket is bound and the multicast address joined.
    Listening {
        /// The interface.
        interface: String,
        /// Its MAC (the replies' source).
        mac: String,
        /// The MD level answered.
        md_level: u8,
        /// The multicast class 1 address answered too.
        multicast_mac: String,
    },
    /// Receiving or sending failed.
    Error {
        /// What failed.
        what: String,
    },
}

/// What the responder did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EthLbReflectSummary {
    /// The interface.
    pub interface: String,
    /// Its MAC.
    pub mac: String,
    /// The MD level answered.
    pub md_level: u8,
    /// Loopback Messages answered.
    pub lbr_sent: u64,
    /// Octets of the replies sent (frames from the destination MAC on).
    pub bytes_sent: u64,
    /// Frames that are not a well-formed loopback PDU (truncated, TLVs past the end, no End
    /// TLV, a bad First TLV Offset, a group source address).
    pub dropped_malformed: u64,
    /// Loopback Replies received (never answered).
    pub dropped_lbr: u64,
    /// CFM PDUs of other OpCodes (CCM, LTM, ...).
    pub dropped_other_opcode: u64,
    /// Messages of another MD level.
    pub dropped_wrong_level: u64,
    /// Frames addressed to neither the interface nor its class 1 address.
    pub dropped_not_addressed: u64,
    /// Frames from the interface's own MAC, or this host's own outgoing frames.
    pub dropped_own: u64,
    /// Messages over the per-source rate limit.
    pub dropped_rate_limit: u64,
    /// Send or receive errors.
    pub errors: u64,
    /// Wall time.
    pub elapsed_s: f64,
}

/// A token bucket per source MAC.
struct RateLimit {
    rate: f64,
    burst: f64,
    sources: HashMap<MacAddress, (f64, Instant)>,
}

impl RateLimit {
    fn allow(&mut self, source: MacAddress, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if self.sources.len() >= MAX_TRACKED_SOURCES && !self.sources.contains_key(&source) {
            // Forget the sources whose bucket has refilled: they lose nothing by it.
            let (rate, burst) = (self.rate, self.burst);
            self.sources.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if self.sources.len() >= MAX_TRACKED_SOURCES {
                return false;
            }
        }
        let (tokens, at) = self.sources.entry(source).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a responder of MD level `level` on the interface `own` does with `frame`.
fn judge(frame: &[u8], own: MacAddress, multicast: MacAddress, level: u8) -> Verdict {
    let Ok(parsed) = CfmFrame::parse(frame) else {
        return Verdict::Malformed;
    };
    if parsed.source == own {
        return Verdict::Own;
    }
    if parsed.destination != own && parsed.destination != multicast {
        return Verdict::NotAddressed;
    }
    let pdu = match LoopbackPdu::new_checked(parsed.payload) {
        Ok(pdu) => pdu,
        Err(CfmError::NotLoopback(_)) => return Verdict::OtherOpcode,
        Err(_) => return Verdict::Malformed,
    };
    // A group address is no station's: an LBM from one is invalid (IEEE 802.1ag §20.2.1).
    if parsed.source[0] & 1 == 1 {
        return Verdict::Malformed;
    }
    if pdu.kind() == LoopbackKind::Reply {
        return Verdict::Lbr;
    }
    if pdu.level() != level {
        return Verdict::WrongLevel;
    }
    match LoopbackRepr::parse(&pdu) {
        Ok(repr) => Verdict::Answer {
            pdu_len: repr.len(),
        },
        Err(_) => Verdict::Malformed,
    }
}

/// The responder, bound and ready.
pub struct EthLbReflector {
    config: EthLbReflectConfig,
    socket: EthernetSocket,
    own: MacAddress,
    multicast: MacAddress,
}

fn socket_error(interface: &str, source: io::Error) -> EthLbReflectError {
    let hint = if source.kind() == io::ErrorKind::PermissionDenied {
        " (raw packet sockets need root or CAP_NET_RAW)"
    } else {
        ""
    };
    EthLbReflectError::Socket {
        interface: interface.to_string(),
        source,
        hint,
    }
}

/// What to do with one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Answer { pdu_len: usize },
    Malformed,
    Lbr,
    OtherOpcode,
    WrongLevel,
    NotAddressed,
    Own,
}

impl EthLbReflector {
    /// Opens the socket on the interface and joins the class 1 address of `level`.
    pub fn bind(config: EthLbReflectConfig) -> Result<Self, EthLbReflectError> {
        if config.level > 7 {
            return Err(EthLbReflectError::Level(config.level));
        }
        let if_index = loopscope_sys::interface_index(&config.interface)
            .map_err(|_| EthLbReflectError::NoInterface(config.interface.clone()))?;
        let socket = EthernetSocket::open(if_index, cfm::ETHERTYPE_CFM)
            .map_err(|error| socket_error(&config.interface, error))?;
        let own = socket
            .hardware_address()
            .map_err(|error| socket_error(&config.interface, error))?;
        let multicast = cfm::class1_multicast(config.level);
        socket
            .join_multicast(multicast)
            .map_err(|error| socket_error(&config.interface, error))?;
        Ok(EthLbReflector {
            config,
            socket,
            own,
            multicast,
        })
    }

    /// The interface's MAC.
    pub fn own_address(&self) -> MacAddress {
        self.own
    }

    /// Answers until `stop` is set; `on_event` sees the ready line and errors.
    pub fn run(
        &self,
        stop: Arc<AtomicBool>,
        on_event: &mut dyn FnMut(EthLbReflectEvent),
    ) -> EthLbReflectSummary {
        let started = Instant::now();
        let mut summary = EthLbReflectSummary {
            interface: self.config.interface.clone(),
            mac: cfm::format_mac(&self.own),
            md_level: self.config.level,
            ..EthLbReflectSummary::default()
        };
        let mut limit = RateLimit {
            rate: f64::from(self.config.rate_limit_pps),
            burst: f64::from(self.config.rate_burst.max(1)),
            sources: HashMap::new(),
        };
        on_event(EthLbReflectEvent::Listening {
            interface: self.config.interface.clone(),
            mac: cfm::format_mac(&self.own),
            md_level: self.config.level,
            multicast_mac: cfm::format_mac(&self.multicast),
        });
        let mut buffer = vec![0u8; 65_536];
        let mut reply = Vec::with_capacity(2048);
        while !stop.load(Ordering::Relaxed) {
            let frame = match self.socket.recv(&mut buffer, POLL) {
                Ok(None) => continue,
                Ok(Some(frame)) => frame,
                Err(error) => {
                    summary.errors += 1;
                    on_event(EthLbReflectEvent::Error {
                        what: format!("receive: {error}"),
                    });
                    if summary.errors > 1000 {
                        break;
                    }
                    continue;
                }
            };
            if frame.packet_type == PACKET_OUTGOING {
                summary.dropped_own += 1;
                continue;
            }
            let bytes = &buffer[..frame.len];
            let verdict = if frame.truncated {
                Verdict::Malformed
            } else {
                judge(bytes, self.own, self.multicast, self.config.level)
            };
            let pdu_len = match verdict {
                Verdict::Answer { pdu_len } => pdu_len,
                Verdict::Malformed => {
                    summary.dropped_malformed += 1;
                    continue;
                }
                Verdict::Lbr => {
                    summary.dropped_lbr += 1;
                    continue;
                }
                Verdict::OtherOpcode => {
                    summary.dropped_other_opcode += 1;
                    continue;
                }
                Verdict::WrongLevel => {
                    summary.dropped_wrong_level += 1;
                    continue;
                }
                Verdict::NotAddressed => {
                    summary.dropped_not_addressed += 1;
                    continue;
                }
                Verdict::Own => {
                    summary.dropped_own += 1;
                    continue;
                }
            };
            let mut source = [0u8; 6];
            source.copy_from_slice(&bytes[6..12]);
            if !limit.allow(source, Instant::now()) {
                summary.dropped_rate_limit += 1;
                continue;
            }
            // The request's own octets up to its End TLV (any padding after it is left off):
            // never larger than what came in.
            let end = cfm::ETHERNET_HEADER_LEN + pdu_len;
            reply.clear();
            reply.extend_from_slice(&bytes[..end]);
            reply[..6].copy_from_slice(&source);
            reply[6..12].copy_from_slice(&self.own);
            reply[cfm::ETHERNET_HEADER_LEN + 1] = OPCODE_LBR;
            match self.socket.send(&reply) {
                Ok(()) => {
                    summary.lbr_sent += 1;
                    summary.bytes_sent += reply.len() as u64;
                }
                Err(error) => {
                    summary.errors += 1;
                    on_event(EthLbReflectEvent::Error {
                        what: format!("send: {error}"),
                    });
                }
            }
        }
        summary.elapsed_s = started.elapsed().as_secs_f64();
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: MacAddress = [2, 0, 0, 0, 0, 0xB];
    const PEER: MacAddress = [2, 0, 0, 0, 0, 0xA];

    /// A frame written octet by octet: Ethernet header, CFM header (level, OpCode, Flags 0,
    /// First TLV Offset), transaction 7, then `tlvs`.
    fn frame(
        destination: MacAddress,
        source: MacAddress,
        level: u8,
        opcode: u8,
        offset: u8,
        tlvs: &[u8],
    ) -> Vec<u8> {
        let mut frame = destination.to_vec();
        frame.extend_from_slice(&source);
        frame.extend_from_slice(&[0x89, 0x02, level << 5, opcode, 0, offset, 0, 0, 0, 7]);
        frame.extend_from_slice(tlvs);
        frame
    }

    #[test]
    fn judged_as_y1731_says() {
        let multicast = cfm::class1_multicast(4);
        let judge = |frame: &[u8]| judge(frame, OWN, multicast, 4);
        let data = [3, 0, 2, 0xAA, 0xBB, 0];
        // 8 octets of header, a 5-octet Data TLV, the End TLV.
        assert_eq!(
            judge(&frame(OWN, PEER, 4, 3, 4, &data)),
            Verdict::Answer { pdu_len: 14 }
        );
        assert_eq!(
            judge(&frame(multicast, PEER, 4, 3, 4, &data)),
            Verdict::Answer { pdu_len: 14 }
        );
        // Padding after the End TLV is not part of the PDU.
        let mut padded = frame(OWN, PEER, 4, 3, 4, &data);
        padded.extend_from_slice(&[0; 20]);
        assert_eq!(judge(&padded), Verdict::Answer { pdu_len: 14 });
        assert_eq!(
            judge(&frame(OWN, PEER, 3, 3, 4, &data)),
            Verdict::WrongLevel
        );
        assert_eq!(judge(&frame(OWN, PEER, 4, 2, 4, &data)), Verdict::Lbr);
        assert_eq!(
            judge(&frame(OWN, PEER, 4, 1, 70, &[0; 75])),
            Verdict::OtherOpcode
        );
        assert_eq!(
            judge(&frame(cfm::class1_multicast(3), PEER, 4, 3, 4, &data)),
            Verdict::NotAddressed
        );
        assert_eq!(
            judge(&frame([2, 0, 0, 0, 0, 0xC], PEER, 4, 3, 4, &data)),
            Verdict::NotAddressed
        );
        assert_eq!(judge(&frame(OWN, OWN, 4, 3, 4, &data)), Verdict::Own);
        assert_eq!(
            judge(&frame(OWN, multicast, 4, 3, 4, &data)),
            Verdict::Malformed
        );
        assert_eq!(
            judge(&frame(OWN, PEER, 4, 3, 4, &data[..5])),
            Verdict::Malformed,
            "no End TLV"
        );
        assert_eq!(
            judge(&frame(OWN, PEER, 4, 3, 8, &data)),
            Verdict::Malformed,
            "First TLV Offset 8"
        );
        assert_eq!(
            judge(&frame(OWN, PEER, 4, 3, 4, &data)[..20]),
            Verdict::Malformed,
            "cut in the header"
        );
        assert_eq!(
            judge(&frame(OWN, PEER, 4, 3, 4, &data)[..13]),
            Verdict::Malformed,
            "no EtherType"
        );
    }

    #[test]
    fn the_rate_limit_refills_at_its_rate() {
        let mut limit = RateLimit {
            rate: 10.0,
            burst: 3.0,
            sources: HashMap::new(),
        };
        let start = Instant::now();
        let a = [2, 0, 0, 0, 0, 1];
        let b = [2, 0, 0, 0, 0, 2];
        let allowed = (0..5).filter(|_| limit.allow(a, start)).count();
        assert_eq!(allowed, 3, "the burst");
        assert!(
            limit.allow(b, start),
            "another source has a bucket of its own"
        );
        assert!(!limit.allow(a, start + Duration::from_millis(50)));
        assert!(limit.allow(a, start + Duration::from_millis(160)));
    }
}
