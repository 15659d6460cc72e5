//! `loopscope eth-lb IFACE --to MAC`: flags to `loopscope_measure::eth_lb`, run by the ping
//! engine; the summary adds the bit errors found in the pattern TLVs.

use std::io::{self, Write as _};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use loopscope_link::eth_lb::{
    EthLbReflectConfig, EthLbReflectEvent, EthLbReflectSummary, EthLbReflector,
};
use loopscope_measure::eth_lb::{EthLbConfig, EthLbPinger, PayloadTlv};
use loopscope_measure::ping::{self, PingEvent, Pinger as _};
use loopscope_report::{Outcome, Printer, Record};
use loopscope_wire::cfm::{self, TestPattern};

use crate::Context;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Y.1731 / IEEE 802.1ag Ethernet loopback (ETH-LB): Loopback Messages (EtherType 0x8902) out of \
IFACE over a raw AF_PACKET socket (root or CAP_NET_RAW), Loopback Replies matched by \
transaction identifier. Round trip: from the kernel's transmit timestamp of the message to its \
receive timestamp of the reply (SO_TIMESTAMPING, software), each falling back to the clock read \
in user space where the kernel gave none (the summary says which). To the multicast class 1 \
address every MEP of the level answers, each after a random delay of up to 1 s (Y.1731): the \
run listens for -W after the last message and reports every responder's MAC. Every reply's \
pattern is compared bit by bit with what was sent: bit errors and CRC-32 errors make the run \
fail (exit 1), as lost replies do.")]
pub struct Args {
    /// The interface the messages leave by.
    pub interface: String,
    /// The MEP to loop through: its MAC (aa:bb:cc:dd:ee:ff), or the multicast class 1
    /// address 01:80:c2:00:00:3L (L = the MD level), or `multicast` for that address.
    #[arg(long, value_name = "MAC")]
    pub to: String,
    /// MD (MEG) level 0-7 (default: the level a class 1 address names, else 0).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=7))]
    pub level: Option<u8>,
    /// Send the messages with an 802.1Q tag: VLAN ID 1-4094, and priority (PCP) 0-7
    /// (default 0); only replies on that VLAN count. Two, joined by a dot (S.C, e.g.
    /// 100.200 or 100:3.200:5), send IEEE 802.1ad Q-in-Q: an S-tag (TPID 0x88A8) of the first
    /// over a C-tag (TPID 0x8100) of the second; replies must come back with both.
    #[arg(long, value_name = "ID[:PCP][.ID[:PCP]]", value_parser = parse_vlan_stack)]
    pub vlan: Option<cfm::TagStack>,
    /// Put a Sender ID TLV (IEEE 802.1ag; Chassis ID: the interface's MAC, subtype 4) in
    /// every message; a reply that does not bring it back unchanged counts as corrupt.
    #[arg(long)]
    pub sender_id: bool,
    /// Put a Target MEP/MIP ID TLV (G.8113.1, type 33) naming this MEP ID (1-8191) in every
    /// message.
    #[arg(long, value_name = "MEPID", value_parser = clap::value_parser!(u16).range(1..=8191))]
    pub target_mep: Option<u16>,
    /// The TLV that carries the pattern: test (Y.1731 Test TLV) or data (Data TLV).
    #[arg(long, default_value = "test", value_parser = ["test", "data"])]
    pub tlv: String,
    /// The pattern: prbs31 (PRBS 2^31-1) or null (all zeroes); with the Test TLV, append
    /// -crc for a CRC-32 (Y.1731 pattern types 0-3: null, null-crc, prbs31, prbs31-crc).
    #[arg(long, default_value = "prbs31", value_parser = ["null", "null-crc", "prbs31", "prbs31-crc"])]
    pub pattern: String,
    #[command(flatten)]
    pub schedule: super::ping::Schedule,
    /// Octets of pattern in each message.
    #[arg(short = 's', long, default_value_t = 64)]
    pub size: usize,
    /// Print only the summary.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `ID[:PCP]`, or two joined by a dot (an S-tag over a C-tag).
fn parse_vlan_stack(text: &str) -> Result<cfm::TagStack, String> {
    let parts: Vec<&str> = text.split('.').collect();
    match parts[..] {
        [one] => Ok(cfm::TagStack::single(parse_vlan(one)?)),
        [outer, inner] => Ok(cfm::TagStack::q_in_q(
            parse_vlan(outer)?,
            parse_vlan(inner)?,
        )),
        _ => Err(format!(
            "'{text}' has {} tags; at most 2 (S-VLAN.C-VLAN)",
            parts.len()
        )),
    }
}

/// `ID[:PCP]`: a VLAN ID 1-4094 and a priority 0-7.
fn parse_vlan(text: &str) -> Result<cfm::VlanTag, String> {
    let (id, pcp) = match text.split_once(':') {
        Some((id, pcp)) => (id, Some(pcp)),
        None => (text, None),
    };
    let id: u16 = id
        .parse()
        .ok()
        .filter(|id| (1..=4094).contains(id))
        .ok_or_else(|| format!("VLAN ID '{id}' is not a number 1-4094"))?;
    let pcp: u8 = match pcp {
        Some(pcp) => pcp
            .parse()
            .ok()
            .filter(|pcp| *pcp <= 7)
            .ok_or_else(|| format!("priority '{pcp}' is not a number 0-7"))?,
        None => 0,
    };
    Ok(cfm::VlanTag {
        id,
        pcp,
        dei: false,
    })
}

/// The destination and the level from `--to` and `--level`.
fn destination(to: &str, level: Option<u8>) -> anyhow::Result<(cfm::MacAddress, u8)> {
    if to.eq_ignore_ascii_case("multicast") {
        let level = level.unwrap_or(0);
        return Ok((cfm::class1_multicast(level), level));
    }
    let Some(mac) = cfm::parse_mac(to) else {
        bail!("--to {to}: not a MAC address (aa:bb:cc:dd:ee:ff) or `multicast`");
    };
    if let Some(named) = cfm::class1_level(&mac) {
        return match level {
            Some(level) if level != named => bail!(
                "--to {to} is the multicast class 1 address of MD level {named}, but --level is {level}"
            ),
            _ => Ok((mac, named)),
        };
    }
    if mac[0] & 1 == 1 {
        bail!(
            "--to {to} is a group address other than the multicast class 1 addresses (01:80:c2:00:00:30-37)"
        );
    }
    if mac == [0; 6] {
        bail!("--to {to}: the all-zero address is no station's");
    }
    Ok((mac, level.unwrap_or(0)))
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    let (destination, level) = destination(&args.to, args.level)?;
    let (pattern, with_crc) = match args.pattern.as_str() {
        "null" => (TestPattern::Null, false),
        "null-crc" => (TestPattern::Null, true),
        "prbs31-crc" => (TestPattern::Prbs31, true),
        _ => (TestPattern::Prbs31, false),
    };
    let tlv = if args.tlv == "data" {
        if with_crc {
            bail!(
                "--pattern {}: the Data TLV has no CRC-32; use --tlv test",
                args.pattern
            );
        }
        PayloadTlv::Data
    } else {
        PayloadTlv::Test { with_crc }
    };
    let config = args.schedule.ping_config(args.size)?;
    let mut pinger = EthLbPinger::open(EthLbConfig {
        interface: args.interface.clone(),
        destination,
        level,
        tlv,
        pattern,
        tags: args.vlan.unwrap_or_default(),
        sender_id: args.sender_id,
        target: args.target_mep.map(cfm::MepMipId::Mep),
    })
    .with_context(|| {
        format!(
            "cannot send Ethernet loopback messages on {}",
            args.interface
        )
    })?;
    let range = pinger.payload_range();
    if !range.contains(&args.size) {
        bail!(
            "--size {} is out of range: {}..={} octets of pattern fit one 1500-octet frame with this TLV",
            args.size,
            range.start(),
            range.end()
        );
    }
    let mut printer = Printer::stdout(context.format);
    if !printer.is_json() {
        loopscope_report::stdout_line!("{}", pinger.banner(args.size))?;
    }
    let quiet = args.quiet;
    let outcome = ping::run(
        &mut pinger,
        &config,
        &context.stop,
        &mut |event| match event {
            PingEvent::Reply(reply) => {
                if !quiet {
                    let _ = printer.emit(reply);
                }
            }
            PingEvent::SendFailed(failure) => {
                let _ = printer.emit(failure);
            }
        },
    );
    printer.emit(&outcome.summary)?;
    if !printer.is_json() {
        let extra = &outcome.summary.extra;
        let number = |key: &str| extra.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
        let mut line = format!(
            "pattern {} bit errors in {} bits compared (BER {:.3e})",
            number("bit_errors"),
            number("bits"),
            extra.get("ber").and_then(|v| v.as_f64()).unwrap_or(0.0)
        );
        if with_crc {
            line.push_str(&format!(", {} CRC-32 errors", number("crc_errors")));
        }
        let dropped = [
            ("malformed", "malformed"),
            ("wrong_tlv", "with the wrong TLV"),
            ("other_level", "of another MD level"),
        ];
        for (key, words) in dropped {
            if number(key) > 0 {
                line.push_str(&format!(", {} replies {words}", number(key)));
            }
        }
        if number("sender_id_mismatch") > 0 {
            line.push_str(&format!(
                ", {} replies without the Sender ID TLV sent",
                number("sender_id_mismatch")
            ));
        }
        if number("other_vlan") > 0 {
            line.push_str(&format!(
                ", {} replies on another VLAN",
                number("other_vlan")
            ));
        }
        let which = |key: &str| match extra.get(key).and_then(|v| v.as_str()) {
            Some("kernel") => "kernel (SO_TIMESTAMPING)",
            Some("user") => "user-space (the kernel gave none)",
            Some("mixed") => "kernel where given, else user-space",
            _ => "none (no replies)",
        };
        let mut out = Vec::new();
        writeln!(out, "{line}")?;
        writeln!(
            out,
            "timestamps: send {}, receive {}",
            which("tx_timestamps"),
            which("rx_timestamps")
        )?;
        if let Some(responders) = extra.get("responders").and_then(|v| v.as_array())
            && cfm::class1_level(&destination).is_some()
        {
            writeln!(out, "responders ({}):", responders.len())?;
            for responder in responders {
                let field = |key: &str| responder.get(key).and_then(|v| v.as_f64());
                write!(
                    out,
                    "  {} {} replies",
                    responder["mac"].as_str().unwrap_or("?"),
                    responder["replies"].as_u64().unwrap_or(0)
                )?;
                if let (Some(min), Some(avg), Some(max)) = (
                    field("rtt_min_us"),
                    field("rtt_avg_us"),
                    field("rtt_max_us"),
                ) {
                    write!(out, ", rtt min/avg/max {min:.1}/{avg:.1}/{max:.1} us")?;
                }
                writeln!(out)?;
            }
        }
        loopscope_report::stdout_line!("{}", String::from_utf8_lossy(&out).trim_end())?;
    }
    if let Some(failure) = &outcome.link_failure {
        loopscope_report::stderr_line!("loopscope: the interface failed mid-run: {failure}");
    }
    Ok(Outcome::from_passed(outcome.summary.passed))
}

/// `reflect --eth-lb IFACE`: the flags the Ethernet loopback responder adds to `reflect`.
#[derive(clap::Args, Debug)]
pub struct EthLbReflectArgs {
    /// Answer Y.1731 / 802.1ag Loopback Messages on the interface ENDPOINT names (addressed
    /// to its MAC or to the multicast class 1 address of --level) with Loopback Replies.
    #[arg(long)]
    pub eth_lb: bool,
    /// With --eth-lb: the MD (MEG) level answered, 0-7.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=7), requires = "eth_lb")]
    pub level: u8,
    /// With --eth-lb: answer LBMs on this VLAN (1-4094) only, on the same VLAN with the same
    /// priority; without it, untagged LBMs only. Two joined by a dot (S.C, e.g. 100.200):
    /// Q-in-Q LBMs (an 802.1ad S-tag over an 802.1Q C-tag) only, answered with the same two
    /// tags.
    #[arg(long, value_name = "ID[.ID]", value_parser = parse_vlan_ids, requires = "eth_lb")]
    pub vlan: Option<VlanIds>,
    /// With --eth-lb: the longest random delay before answering a multicast LBM (Y.1731:
    /// 1 s); 0 answers at once.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = super::ping::parse_duration, requires = "eth_lb")]
    pub multicast_delay: std::time::Duration,
}

/// The VLAN IDs a responder serves, outermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanIds(pub Vec<u16>);

/// `ID` or `ID.ID`: VLAN IDs 1-4094, at most two.
fn parse_vlan_ids(text: &str) -> Result<VlanIds, String> {
    let ids = text
        .split('.')
        .map(|id| {
            id.parse::<u16>()
                .ok()
                .filter(|id| (1..=4094).contains(id))
                .ok_or_else(|| format!("VLAN ID '{id}' is not a number 1-4094"))
        })
        .collect::<Result<Vec<u16>, String>>()?;
    if ids.len() > cfm::MAX_TAGS {
        return Err(format!(
            "'{text}' has {} VLANs; at most 2 (S-VLAN.C-VLAN)",
            ids.len()
        ));
    }
    Ok(VlanIds(ids))
}

#[derive(serde::Serialize)]
struct ReflectEventRecord(EthLbReflectEvent);

impl Record for ReflectEventRecord {
    fn kind(&self) -> &'static str {
        match self.0 {
            EthLbReflectEvent::Listening { .. } => "listening",
            EthLbReflectEvent::Error { .. } => "error",
        }
    }

    fn write_human(&self, out: &mut dyn io::Write) -> io::Result<()> {
        match &self.0 {
            EthLbReflectEvent::Listening {
                interface,
                mac,
                md_level,
                multicast_mac,
                vlan_ids,
                multicast_delay_max_ms,
                ..
            } => writeln!(
                out,
                "reflecting on {interface}: Ethernet loopback to {mac} and {multicast_mac} (answered within {multicast_delay_max_ms} ms), MD level {md_level}, {}",
                match vlan_ids[..] {
                    [] => "untagged".to_string(),
                    [id] => format!("VLAN {id}"),
                    [outer, inner] => format!("S-VLAN {outer} C-VLAN {inner}"),
                    _ => format!("VLANs {vlan_ids:?}"),
                }
            ),
            EthLbReflectEvent::Error { what } => writeln!(out, "error: {what}"),
        }
    }
}

#[derive(serde::Serialize)]
struct ReflectSummaryRecord(EthLbReflectSummary);

impl Record for ReflectSummaryRecord {
    fn kind(&self) -> &'static str {
        "summary"
    }

    fn write_human(&self, out: &mut dyn io::Write) -> io::Result<()> {
        let s = &self.0;
        writeln!(
            out,
            "\n--- reflect --eth-lb {} ({}, MD level {}) ---",
            s.interface, s.mac, s.md_level
        )?;
        writeln!(
            out,
            "{} loopback replies sent ({} to multicast LBMs after a random delay, {} octets) in {:.1} s",
            s.lbr_sent, s.lbr_delayed, s.bytes_sent, s.elapsed_s
        )?;
        writeln!(
            out,
            "dropped: {} malformed, {} LBR, {} other OpCodes, {} of another MD level ({} lower, {} higher), {} on another VLAN, {} not addressed here, {} our own, {} over the rate limit, {} with the delay queue full",
            s.dropped_malformed,
            s.dropped_lbr,
            s.dropped_other_opcode,
            s.dropped_wrong_level,
            s.dropped_lower_level,
            s.dropped_higher_level,
            s.dropped_other_vlan,
            s.dropped_not_addressed,
            s.dropped_own,
            s.dropped_rate_limit,
            s.dropped_queue_full
        )?;
        writeln!(
            out,
            "messages answered with a Sender ID TLV: {}, a MEP/MIP ID TLV: {}, a TLV of unknown type: {}",
            s.lbm_with_sender_id, s.lbm_with_mep_mip_id, s.lbm_with_unknown_tlv
        )?;
        if s.errors > 0 {
            writeln!(out, "errors: {}", s.errors)?;
        }
        Ok(())
    }
}

/// Runs the responder on `interface` until stopped.
pub fn run_reflect(
    interface: &str,
    args: &EthLbReflectArgs,
    rate_limit_pps: u32,
    rate_burst: u32,
    context: &Context,
) -> anyhow::Result<Outcome> {
    if args.multicast_delay > std::time::Duration::from_secs(60) {
        anyhow::bail!(
            "--multicast-delay {:?} is longer than a minute (Y.1731 asks for at most 1 s)",
            args.multicast_delay
        );
    }
    let reflector = EthLbReflector::bind(EthLbReflectConfig {
        interface: interface.to_string(),
        level: args.level,
        rate_limit_pps,
        rate_burst,
        vlans: args.vlan.clone().map(|ids| ids.0).unwrap_or_default(),
        multicast_delay_max: args.multicast_delay,
    })
    .with_context(|| format!("cannot answer Ethernet loopback on {interface}"))?;
    let mut printer = Printer::stdout(context.format);
    let summary = reflector.run(Arc::clone(&context.stop), &mut |event| {
        let _ = printer.emit(&ReflectEventRecord(event));
    });
    let failed = summary.errors > 0 && summary.lbr_sent == 0;
    printer.emit(&ReflectSummaryRecord(summary))?;
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Passed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_flags() {
        assert_eq!(
            parse_vlan("100:5"),
            Ok(cfm::VlanTag {
                id: 100,
                pcp: 5,
                dei: false
            })
        );
        assert_eq!(
            parse_vlan("4094").map(|tag| (tag.id, tag.pcp)),
            Ok((4094, 0))
        );
        for bad in ["0", "4095", "x", "100:8", "100:", ":3", "100:5:1"] {
            assert!(parse_vlan(bad).is_err(), "{bad}");
        }
        let stack = parse_vlan_stack("100:3.200:5").unwrap();
        assert_eq!(
            stack.tags(),
            [
                (
                    cfm::TPID_8021AD,
                    cfm::VlanTag {
                        id: 100,
                        pcp: 3,
                        dei: false
                    }
                ),
                (
                    cfm::TPID_8021Q,
                    cfm::VlanTag {
                        id: 200,
                        pcp: 5,
                        dei: false
                    }
                )
            ]
        );
        assert_eq!(
            parse_vlan_stack("7").unwrap().tags(),
            [(
                cfm::TPID_8021Q,
                cfm::VlanTag {
                    id: 7,
                    pcp: 0,
                    dei: false
                }
            )]
        );
        for bad in ["1.2.3", "100.", ".100", "100.4095", "100..200"] {
            assert!(parse_vlan_stack(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_vlan_ids("100.200"), Ok(VlanIds(vec![100, 200])));
        assert_eq!(parse_vlan_ids("4094"), Ok(VlanIds(vec![4094])));
        for bad in ["0", "1.2.3", "100.", "x", "100.5000"] {
            assert!(parse_vlan_ids(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations_and_levels() {
        assert_eq!(
            destination("multicast", Some(5)).unwrap(),
            ([0x01, 0x80, 0xC2, 0, 0, 0x35], 5)
        );
        assert_eq!(
            destination("01:80:c2:00:00:33", None).unwrap(),
            ([0x01, 0x80, 0xC2, 0, 0, 0x33], 3)
        );
        assert!(destination("01:80:c2:00:00:33", Some(4)).is_err());
        assert!(destination("01:80:c2:00:00:3f", None).is_err());
        assert!(destination("ff:ff:ff:ff:ff:ff", None).is_err());
        assert!(destination("00:00:00:00:00:00", None).is_err());
        assert!(destination("nonsense", None).is_err());
        assert_eq!(
            destination("02:00:00:00:00:01", Some(2)).unwrap(),
            ([2, 0, 0, 0, 0, 1], 2)
        );
    }
}
