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
//! A multicast LBM is answered after a random delay, uniform between 0 and a set maximum (one
//! second by default): Y.1731 §7.2.2 (multicast ETH-LB) has every MEP that receives a
//! multicast LBM answer with a unicast LBR after a random delay of up to one second, so that
//! the replies of many MEPs do not arrive at the initiator at once.
//!
//! VLANs: a responder serves one VLAN, or one Q-in-Q pair (an IEEE 802.1ad S-tag over an
//! 802.1Q C-tag), or untagged frames (the default), and answers with the very tag stack an LBM
//! came with: the same TPIDs, VLANs and priorities (PCP, DEI). LBMs of other VLANs are counted
//! and dropped.
//!
//! Levels: a MEP processes the OAM frames of its own MEG level, discards those of a lower
//! level and lets those of a higher level pass (Y.1731 §7.2.2.2: an LBM is valid with the
//! MEP's own MEL); a responder that relays nothing answers neither, and counts each
//! apart (`dropped_lower_level`, `dropped_higher_level`; `dropped_wrong_level` is their sum),
//! including LBMs sent to another level's multicast class 1 address.
//!
//! TLVs: the reply carries every TLV of the message octet for octet (IEEE 802.1ag §20.2.2:
//! the LBR copies the LBM after its OpCode), so a Sender ID TLV, a Test TLV with its CRC-32,
//! G.8113.1's MEP/MIP ID TLVs and TLVs of types nobody defines all go back as they came; an
//! unknown TLV is skipped by its Length, never a reason to drop the message. Only a PDU whose
//! TLVs do not add up (one that runs past the end, or no End TLV) is dropped. The summary counts
//! the answered messages that carried a Sender ID TLV, a MEP/MIP ID TLV and a TLV of a type
//! this code does not know.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loopscope_sys::{EthernetSocket, PACKET_OUTGOING};
use loopscope_wire::cfm::{
    self, CfmError, CfmFrame, LoopbackKind, LoopbackPdu, MacAddress, OPCODE_LBR, TPID_8021Q,
    TagStack, VlanTag, tlv_type,
};
use rand::Rng as _;
use serde::Serialize;

/// How often the loop looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Sources whose rate is tracked at most; beyond, idle ones are forgotten first.
const MAX_TRACKED_SOURCES: usize = 4096;
/// Replies to multicast LBMs waiting out their random delay, at most; beyond, LBMs are dropped.
const MAX_DELAYED: usize = 65_536;
/// The longest random delay before a reply to a multicast LBM (Y.1731 §7.2.2.2).
pub const MULTICAST_DELAY_MAX: Duration = Duration::from_secs(1);

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
    /// The VLANs served, outermost first: empty for untagged (and priority-tagged) frames, one
    /// for an 802.1Q VLAN, two for Q-in-Q (S-VLAN, C-VLAN).
    pub vlans: Vec<u16>,
    /// The longest random delay before answering a multicast LBM (zero: at once).
    pub multicast_delay_max: Duration,
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
    /// The VLAN ID is out of range.
    #[error("VLAN ID {0} is out of range 1-4094")]
    Vlan(u16),
    /// More tags than an S-tag over a C-tag.
    #[error("{0} VLAN tags asked for; at most 2 (an 802.1ad S-tag over an 802.1Q C-tag)")]
    TooManyTags(usize),
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
        /// The VLAN served (the outermost, with Q-in-Q), if not untagged frames.
        #[serde(skip_serializing_if = "Option::is_none")]
        vlan_id: Option<u16>,
        /// Every VLAN of the stack served, outermost first (S-VLAN, C-VLAN with Q-in-Q).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        vlan_ids: Vec<u16>,
        /// The longest random delay before a reply to a multicast LBM.
        multicast_delay_max_ms: f64,
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
    /// The VLAN served (the outermost, with Q-in-Q), if not untagged frames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u16>,
    /// Every VLAN of the stack served, outermost first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlan_ids: Vec<u16>,
    /// Loopback Messages answered.
    pub lbr_sent: u64,
    /// Of them, multicast LBMs answered after a random delay.
    pub lbr_delayed: u64,
    /// Octets of the replies sent (frames from the destination MAC on).
    pub bytes_sent: u64,
    /// Frames that are not a well-formed loopback PDU (truncated, TLVs past the end, no End
    /// TLV, a bad First TLV Offset, a group source address).
    pub dropped_malformed: u64,
    /// Loopback Replies received (never answered).
    pub dropped_lbr: u64,
    /// CFM PDUs of other OpCodes (CCM, LTM, ...).
    pub dropped_other_opcode: u64,
    /// Messages of another MD level (to this MAC, or to another level's class 1 address):
    /// `dropped_lower_level` + `dropped_higher_level`.
    pub dropped_wrong_level: u64,
    /// Of them, messages of a lower level than this MEP's (a MEP discards them).
    pub dropped_lower_level: u64,
    /// Of them, messages of a higher level (a MEP lets them pass; nothing here relays them).
    pub dropped_higher_level: u64,
    /// Messages on another VLAN (or tagged when untagged are served, or the reverse).
    pub dropped_other_vlan: u64,
    /// Multicast LBMs that found the queue of delayed replies full.
    pub dropped_queue_full: u64,
    /// Frames addressed to neither the interface nor its class 1 address.
    pub dropped_not_addressed: u64,
    /// Frames from the interface's own MAC, or this host's own outgoing frames.
    pub dropped_own: u64,
    /// Messages over the per-source rate limit.
    pub dropped_rate_limit: u64,
    /// Messages answered that carried a Sender ID TLV (IEEE 802.1ag).
    pub lbm_with_sender_id: u64,
    /// Messages answered that carried a Target, Replying or Requesting MEP/MIP ID TLV
    /// (G.8113.1).
    pub lbm_with_mep_mip_id: u64,
    /// Messages answered that carried a TLV of a type this code does not know (skipped by its
    /// Length and sent back as it came).
    pub lbm_with_unknown_tlv: u64,
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

/// Where a responder is: its MAC, its level's class 1 address, its level and VLANs.
#[derive(Debug, Clone)]
struct Station {
    own: MacAddress,
    multicast: MacAddress,
    level: u8,
    vlans: Vec<u16>,
}

/// Which TLVs an answered message carried, for the summary's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct TlvsSeen {
    sender_id: bool,
    mep_mip_id: bool,
    unknown: bool,
}

/// The TLV types a loopback PDU is defined to carry (IEEE 802.1ag Table 21-6, Y.1731, and
/// G.8113.1's MEP/MIP ID TLVs).
fn known_loopback_tlv(kind: u8) -> bool {
    matches!(
        kind,
        tlv_type::SENDER_ID
            | tlv_type::DATA
            | tlv_type::ORGANIZATION_SPECIFIC
            | tlv_type::TEST
            | tlv_type::TARGET_MEP_MIP_ID
            | tlv_type::REPLYING_MEP_MIP_ID
            | tlv_type::REQUESTING_MEP_ID
    )
}

/// What the responder `station` does with `frame`, which came with `outer` beside it: the
/// outermost VLAN tag (TPID, TCI) the kernel took out of it, if any.
fn judge(frame: &[u8], outer: Option<(u16, u16)>, station: &Station) -> Verdict {
    let Ok(parsed) = CfmFrame::parse(frame) else {
        return Verdict::Malformed;
    };
    if parsed.source == station.own {
        return Verdict::Own;
    }
    let group = cfm::class1_level(&parsed.destination);
    if parsed.destination != station.own && group.is_none() {
        return Verdict::NotAddressed;
    }
    let tags = match outer {
        Some((tpid, tci)) => match parsed.tags.with_outer(tpid, VlanTag::from_tci(tci)) {
            Some(tags) => tags,
            None => return Verdict::OtherVlan,
        },
        None => parsed.tags,
    };
    if tags.vlan_ids() != station.vlans {
        return Verdict::OtherVlan;
    }
    let pdu = match LoopbackPdu::new_checked(parsed.payload) {
        Ok(pdu) => pdu,
        Err(CfmError::NotLoopback(_)) => return Verdict::OtherOpcode,
        Err(_) => return Verdict::Malformed,
    };
    // A group address is no station's: an LBM from one is invalid (IEEE 802.1ag §20.2.2; the
    // LBR goes to the LBM's source, Y.1731 §7.2.2.2).
    if parsed.source[0] & 1 == 1 {
        return Verdict::Malformed;
    }
    if pdu.kind() == LoopbackKind::Reply {
        return Verdict::Lbr;
    }
    // The level a message is for: the one its class 1 address names, else its MEL.
    let level = group.unwrap_or_else(|| pdu.level());
    if level != station.level || pdu.level() != station.level {
        let level = if level != station.level {
            level
        } else {
            pdu.level()
        };
        return Verdict::WrongLevel {
            higher: level > station.level,
        };
    }
    let mut seen = TlvsSeen::default();
    for (kind, _) in pdu.tlvs().filter_map(Result::ok) {
        match kind {
            tlv_type::SENDER_ID => seen.sender_id = true,
            tlv_type::TARGET_MEP_MIP_ID
            | tlv_type::REPLYING_MEP_MIP_ID
            | tlv_type::REQUESTING_MEP_ID => seen.mep_mip_id = true,
            other if !known_loopback_tlv(other) => seen.unknown = true,
            _ => {}
        }
    }
    Verdict::Answer {
        pdu_offset: frame.len() - parsed.payload.len(),
        pdu_len: pdu.pdu_len(),
        tags,
        multicast: parsed.destination == station.multicast,
        seen,
    }
}

/// The responder, bound and ready.
pub struct EthLbReflector {
    config: EthLbReflectConfig,
    socket: EthernetSocket,
    own: MacAddress,
    multicast: MacAddress,
}

/// A reply to a multicast LBM, waiting out its random delay.
struct Delayed {
    due: Instant,
    frame: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.due.cmp(&other.due)
    }
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
    /// Answer: the PDU is `pdu_len` octets from `pdu_offset`; the reply goes with `tags`.
    Answer {
        pdu_offset: usize,
        pdu_len: usize,
        tags: TagStack,
        multicast: bool,
        seen: TlvsSeen,
    },
    Malformed,
    Lbr,
    OtherOpcode,
    /// A message for the MEPs of another level, higher or lower than this one.
    WrongLevel {
        higher: bool,
    },
    OtherVlan,
    NotAddressed,
    Own,
}

impl EthLbReflector {
    /// Opens the socket on the interface and joins the class 1 address of `level`.
    pub fn bind(config: EthLbReflectConfig) -> Result<Self, EthLbReflectError> {
        if config.level > 7 {
            return Err(EthLbReflectError::Level(config.level));
        }
        if config.vlans.len() > cfm::MAX_TAGS {
            return Err(EthLbReflectError::TooManyTags(config.vlans.len()));
        }
        if let Some(vlan) = config.vlans.iter().find(|id| !(1..=4094).contains(*id)) {
            return Err(EthLbReflectError::Vlan(*vlan));
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
            vlan_id: self.config.vlans.first().copied(),
            vlan_ids: self.config.vlans.clone(),
            ..EthLbReflectSummary::default()
        };
        let station = Station {
            own: self.own,
            multicast: self.multicast,
            level: self.config.level,
            vlans: self.config.vlans.clone(),
        };
        let mut delayed: BinaryHeap<Reverse<Delayed>> = BinaryHeap::new();
        let mut random = rand::rng();
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
            vlan_id: self.config.vlans.first().copied(),
            vlan_ids: self.config.vlans.clone(),
            multicast_delay_max_ms: self.config.multicast_delay_max.as_secs_f64() * 1000.0,
        });
        let mut buffer = vec![0u8; 65_536];
        let mut reply = Vec::with_capacity(2048);
        let mut pdu = Vec::with_capacity(2048);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while delayed.peek().is_some_and(|Reverse(next)| next.due <= now) {
                if let Some(Reverse(due)) = delayed.pop() {
                    self.send_reply(&due.frame, &mut summary, on_event);
                    summary.lbr_delayed += 1;
                }
            }
            let wait = delayed.peek().map_or(POLL, |Reverse(next)| {
                next.due.saturating_duration_since(now).min(POLL)
            });
            let frame = match self.socket.recv(&mut buffer, wait) {
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
                let outer = frame
                    .vlan_tci
                    .map(|tci| (frame.vlan_tpid.unwrap_or(TPID_8021Q), tci));
                judge(bytes, outer, &station)
            };
            let (pdu_offset, pdu_len, tags, multicast, seen) = match verdict {
                Verdict::Answer {
                    pdu_offset,
                    pdu_len,
                    tags,
                    multicast,
                    seen,
                } => (pdu_offset, pdu_len, tags, multicast, seen),
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
                Verdict::WrongLevel { higher } => {
                    summary.dropped_wrong_level += 1;
                    if higher {
                        summary.dropped_higher_level += 1;
                    } else {
                        summary.dropped_lower_level += 1;
                    }
                    continue;
                }
                Verdict::OtherVlan => {
                    summary.dropped_other_vlan += 1;
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
            // The request's own PDU up to its End TLV (any padding after it is left off),
            // with the tag stack and priorities it came with: never larger than what came in
            // (the tag the kernel took out of it is counted back in).
            pdu.clear();
            pdu.extend_from_slice(&bytes[pdu_offset..pdu_offset + pdu_len]);
            pdu[1] = OPCODE_LBR;
            cfm::build_frame(source, self.own, &tags, &pdu, &mut reply);
            let delay = multicast && !self.config.multicast_delay_max.is_zero();
            if delay && delayed.len() >= MAX_DELAYED {
                summary.dropped_queue_full += 1;
                continue;
            }
            summary.lbm_with_sender_id += u64::from(seen.sender_id);
            summary.lbm_with_mep_mip_id += u64::from(seen.mep_mip_id);
            summary.lbm_with_unknown_tlv += u64::from(seen.unknown);
            if delay {
                let delay = random.random_range(Duration::ZERO..=self.config.multicast_delay_max);
                delayed.push(Reverse(Delayed {
                    due: Instant::now() + delay,
                    frame: reply.clone(),
                }));
            } else {
                self.send_reply(&reply, &mut summary, on_event);
            }
        }
        summary.elapsed_s = started.elapsed().as_secs_f64();
        summary
    }

    fn send_reply(
        &self,
        reply: &[u8],
        summary: &mut EthLbReflectSummary,
        on_event: &mut dyn FnMut(EthLbReflectEvent),
    ) {
        match self.socket.send(reply) {
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

    fn answer(pdu_offset: usize, pdu_len: usize, tags: TagStack, multicast: bool) -> Verdict {
        Verdict::Answer {
            pdu_offset,
            pdu_len,
            tags,
            multicast,
            seen: TlvsSeen::default(),
        }
    }

    #[test]
    fn judged_as_y1731_says() {
        let multicast = cfm::class1_multicast(4);
        let station = Station {
            own: OWN,
            multicast,
            level: 4,
            vlans: Vec::new(),
        };
        let judge = |frame: &[u8]| judge(frame, None, &station);
        let untagged = TagStack::untagged();
        let data = [3, 0, 2, 0xAA, 0xBB, 0];
        // 8 octets of header, a 5-octet Data TLV, the End TLV.
        assert_eq!(
            judge(&frame(OWN, PEER, 4, 3, 4, &data)),
            answer(14, 14, untagged, false)
        );
        assert_eq!(
            judge(&frame(multicast, PEER, 4, 3, 4, &data)),
            answer(14, 14, untagged, true)
        );
        // Padding after the End TLV is not part of the PDU.
        let mut padded = frame(OWN, PEER, 4, 3, 4, &data);
        padded.extend_from_slice(&[0; 20]);
        assert_eq!(judge(&padded), answer(14, 14, untagged, false));
        // A lower level is discarded, a higher one passes; neither is answered.
        assert_eq!(
            judge(&frame(OWN, PEER, 3, 3, 4, &data)),
            Verdict::WrongLevel { higher: false }
        );
        assert_eq!(
            judge(&frame(OWN, PEER, 6, 3, 4, &data)),
            Verdict::WrongLevel { higher: true }
        );
        assert_eq!(judge(&frame(OWN, PEER, 4, 2, 4, &data)), Verdict::Lbr);
        assert_eq!(
            judge(&frame(OWN, PEER, 4, 1, 70, &[0; 75])),
            Verdict::OtherOpcode
        );
        // Level 3's class 1 address: a message for the MEPs of level 3, whatever its PDU says.
        assert_eq!(
            judge(&frame(cfm::class1_multicast(3), PEER, 4, 3, 4, &data)),
            Verdict::WrongLevel { higher: false }
        );
        assert_eq!(
            judge(&frame(cfm::class1_multicast(5), PEER, 5, 3, 4, &data)),
            Verdict::WrongLevel { higher: true }
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
            judge(&frame(OWN, PEER, 4, 3, 3, &data)),
            Verdict::Malformed,
            "First TLV Offset 3"
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

    /// A regression test: an LBM with a First TLV Offset of 8 (a later version's longer
    /// header, IEEE 802.1ag §21.4) was dropped as malformed; it is answered, its whole PDU
    /// (the extra header octets included) copied up to the End TLV.
    #[test]
    fn a_longer_header_is_answered_whole() {
        let station = Station {
            own: OWN,
            multicast: cfm::class1_multicast(4),
            level: 4,
            vlans: Vec::new(),
        };
        let mut tlvs = vec![0xDE, 0xAD, 0xBE, 0xEF];
        tlvs.extend_from_slice(&[3, 0, 2, 0xAA, 0xBB, 0, 0x55]);
        assert_eq!(
            judge(&frame(OWN, PEER, 4, 3, 8, &tlvs), None, &station),
            answer(14, 18, TagStack::untagged(), false)
        );
    }

    /// Sender ID, G.8113.1's MEP/MIP ID TLVs and a TLV of a type nobody defines are skipped by
    /// their Length: the message is answered, and the TLVs it carried are noted.
    #[test]
    fn id_and_unknown_tlvs_are_answered() {
        let station = Station {
            own: OWN,
            multicast: cfm::class1_multicast(4),
            level: 4,
            vlans: Vec::new(),
        };
        let mut tlvs = vec![1, 0, 8, 6, 4, 2, 0, 0, 0, 0, 0xA];
        tlvs.extend_from_slice(&[33, 0, 25, 2, 0, 12]);
        tlvs.extend_from_slice(&[0; 22]);
        tlvs.extend_from_slice(&[99, 0, 3, b'x', b'y', b'z', 0]);
        let Verdict::Answer { pdu_len, seen, .. } =
            judge(&frame(OWN, PEER, 4, 3, 4, &tlvs), None, &station)
        else {
            panic!("not answered");
        };
        assert_eq!(pdu_len, 8 + tlvs.len());
        assert_eq!(
            seen,
            TlvsSeen {
                sender_id: true,
                mep_mip_id: true,
                unknown: true
            }
        );
    }

    /// A responder of VLAN 100 answers LBMs on VLAN 100 (tag handed over by the kernel, or
    /// still in the frame) with their tag, priority included; untagged and other VLANs are not
    /// its; VLAN 0 (a priority tag) counts as untagged. A Q-in-Q responder (S-VLAN 100, C-VLAN
    /// 200) answers the S-tag the kernel took out plus the C-tag in the frame, with both.
    #[test]
    fn vlans_are_judged_by_their_ids() {
        let on_100 = Station {
            own: OWN,
            multicast: cfm::class1_multicast(4),
            level: 4,
            vlans: vec![100],
        };
        let untagged = Station {
            vlans: Vec::new(),
            ..on_100.clone()
        };
        let q_in_q = Station {
            vlans: vec![100, 200],
            ..on_100.clone()
        };
        let data = [3, 0, 2, 0xAA, 0xBB, 0];
        let plain = frame(OWN, PEER, 4, 3, 4, &data);
        let tag = VlanTag {
            id: 100,
            pcp: 6,
            dei: false,
        };
        let kernel = Some((TPID_8021Q, tag.tci()));
        assert_eq!(
            judge(&plain, kernel, &on_100),
            answer(14, 14, TagStack::single(tag), false)
        );
        let mut in_frame = Vec::new();
        cfm::build_frame(
            OWN,
            PEER,
            &TagStack::single(tag),
            &plain[14..],
            &mut in_frame,
        );
        assert_eq!(
            judge(&in_frame, None, &on_100),
            answer(18, 14, TagStack::single(tag), false)
        );
        assert_eq!(judge(&plain, None, &on_100), Verdict::OtherVlan);
        assert_eq!(
            judge(&plain, Some((TPID_8021Q, 101)), &on_100),
            Verdict::OtherVlan
        );
        assert_eq!(judge(&plain, kernel, &untagged), Verdict::OtherVlan);
        let priority_only = VlanTag { id: 0, ..tag };
        assert_eq!(
            judge(&plain, Some((TPID_8021Q, priority_only.tci())), &untagged),
            answer(14, 14, TagStack::single(priority_only), false)
        );
        // Q-in-Q: the S-tag beside the frame, the C-tag in it.
        let c_tag = VlanTag {
            id: 200,
            pcp: 3,
            dei: false,
        };
        let s_tag = Some((cfm::TPID_8021AD, tag.tci()));
        let mut inner = Vec::new();
        cfm::build_frame(
            OWN,
            PEER,
            &TagStack::single(c_tag),
            &plain[14..],
            &mut inner,
        );
        let both = TagStack::q_in_q(tag, c_tag);
        assert_eq!(judge(&inner, s_tag, &q_in_q), answer(18, 14, both, false));
        // Both still in the frame (a NIC that untags nothing).
        let mut whole = Vec::new();
        cfm::build_frame(OWN, PEER, &both, &plain[14..], &mut whole);
        assert_eq!(judge(&whole, None, &q_in_q), answer(22, 14, both, false));
        // The S-VLAN alone, or the C-VLAN alone, is not the stack served.
        assert_eq!(judge(&plain, s_tag, &q_in_q), Verdict::OtherVlan);
        assert_eq!(judge(&inner, None, &q_in_q), Verdict::OtherVlan);
        assert_eq!(judge(&inner, s_tag, &on_100), Verdict::OtherVlan);
        // A third tag is more than any station here serves.
        assert_eq!(
            judge(&whole, Some((cfm::TPID_8021AD, 7)), &q_in_q),
            Verdict::OtherVlan
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
