//! T1 and E1 framing: the framer that maps a payload into timeslots, and the deframer that hunts
//! for and keeps frame alignment and counts what went wrong. Pure: bytes in, bytes out.
//!
//! # The line as bytes
//!
//! A T1 or E1 line is a serial bit stream. On a loopscope link it travels as bytes, the
//! **first-transmitted bit in the most significant bit** of each byte, and frames run on without
//! regard to byte boundaries (a T1 frame is 193 bits). Within a timeslot, bit 1 of the octet
//! (the MSB) is sent first, as in ANSI T1.107 and ITU-T G.704, so a payload pattern is
//! generated most-significant-bit first and its bits keep their time order on the line.
//!
//! # Frame formats
//!
//! - **SF (D4)**, ANSI T1.107 §8.1.1 / T1.403: 12 frames of 193 bits; the F-bit alternates the
//!   terminal framing bits Ft (odd frames: 1 0 1 0 1 0) and the signalling framing bits Fs
//!   (even frames: 0 0 1 1 1 0). See [`t1::SF_FRAMING_BITS`].
//! - **ESF**, ANSI T1.107 §8.1.2 / T1.403 §8.1: 24 frames; F-bits of frames 4, 8, … 24 carry the
//!   framing pattern 0 0 1 0 1 1, frames 2, 6, … 22 the CRC-6 of the previous ESF, the odd frames
//!   the 4 kbit/s facility data link (FDL).
//! - **E1**, ITU-T G.704 §2.3: 32 timeslots of 8 bits; timeslot 0 alternates the frame
//!   alignment signal `Si 0011011` and the non-frame-alignment word `Si 1 A Sa4..Sa8`.
//! - **E1 with CRC-4**, G.704 §2.3.3 (Table 5B): 16-frame multiframe of two 8-frame
//!   sub-multiframes; the Si bits carry C1..C4, the multiframe alignment signal 001011 and the
//!   E-bits.
//!
//! The tables themselves are in [`t1`] and [`e1`]; the CRCs in [`crc`].

mod bits;
pub mod crc;
mod deframer;
pub mod e1;
mod framer;
pub mod t1;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub use deframer::{Deframer, DeframerCounters, DeframerEvent};
pub use framer::{FdlTx, Framer, PayloadSource, RepeatingBits};

/// Which frame format a line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// T1 superframe (D4), 12 frames.
    Sf,
    /// T1 extended superframe, 24 frames, CRC-6 and FDL.
    Esf,
    /// E1 (G.704) without CRC-4.
    E1,
    /// E1 (G.704) with the CRC-4 multiframe and E-bits.
    E1Crc4,
}

impl Framing {
    /// Every framing, in the order help text lists them.
    pub const ALL: [Framing; 4] = [Framing::Sf, Framing::Esf, Framing::E1, Framing::E1Crc4];

    /// The CLI name (`sf`, `esf`, `e1`, `e1-crc4`).
    pub fn name(self) -> &'static str {
        match self {
            Framing::Sf => "sf",
            Framing::Esf => "esf",
            Framing::E1 => "e1",
            Framing::E1Crc4 => "e1-crc4",
        }
    }

    /// Whether it is a T1 (1.544 Mbit/s, 24 timeslots) framing rather than E1.
    pub fn is_t1(self) -> bool {
        matches!(self, Framing::Sf | Framing::Esf)
    }

    /// Bits per frame: 193 for T1, 256 for E1.
    pub fn frame_bits(self) -> usize {
        if self.is_t1() {
            t1::FRAME_BITS
        } else {
            e1::FRAME_BITS
        }
    }

    /// Overhead bits at the start of each frame: the F-bit (T1) or timeslot 0 (E1).
    pub fn overhead_bits(self) -> usize {
        if self.is_t1() { 1 } else { 8 }
    }

    /// Payload timeslots in a frame (T1: 1..=24; E1: 1..=31, timeslot 0 is overhead).
    pub fn channels(self) -> u8 {
        if self.is_t1() { 24 } else { 31 }
    }

    /// Frames in one multiframe (the period of the overhead).
    pub fn multiframe_frames(self) -> usize {
        match self {
            Framing::Sf => 12,
            Framing::Esf => 24,
            Framing::E1 => 2,
            Framing::E1Crc4 => 16,
        }
    }

    /// Frames covered by one CRC block, when the format has one (ESF: 24, E1 CRC-4: 8).
    pub fn crc_block_frames(self) -> Option<usize> {
        match self {
            Framing::Esf => Some(24),
            Framing::E1Crc4 => Some(8),
            _ => None,
        }
    }

    /// Line rate: 1.544 Mbit/s (T1, 8000 frames of 193 bits) or 2.048 Mbit/s (E1).
    pub fn line_rate_bps(self) -> u64 {
        self.frame_bits() as u64 * 8000
    }

    /// Bytes of line signal in one second (a whole number for both rates).
    pub fn bytes_per_second(self) -> usize {
        (self.line_rate_bps() / 8) as usize
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong reading a framing option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Not one of the framings.
    #[error("unknown framing '{0}' (expected esf, sf, e1-crc4 or e1)")]
    UnknownFraming(String),
    #[error("bad timeslots '{text}': {why}")]
    /// A timeslot list that does not parse or selects nothing.
    BadTimeslots {
        /// The list as given.
        text: String,
        /// What is wrong with it.
        why: String,
    },
}

impl FromStr for Framing {
    type Err = FramingError;

    fn from_str(text: &str) -> Result<Self, FramingError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "sf" | "d4" => Ok(Framing::Sf),
            "esf" => Ok(Framing::Esf),
            "e1" => Ok(Framing::E1),
            "e1-crc4" | "e1crc4" | "crc4" => Ok(Framing::E1Crc4),
            _ => Err(FramingError::UnknownFraming(text.to_string())),
        }
    }
}

/// The rate of each selected timeslot: all 8 bits (Nx64k) or bits 1-7 with bit 8 forced to 1
/// (Nx56k, the clear-channel rate of robbed-bit-signalling T1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
pub enum ChannelRate {
    /// All 8 bits of each timeslot (Nx64 kbit/s).
    #[default]
    #[serde(rename = "64k")]
    K64,
    /// Bits 1-7 of each timeslot, bit 8 forced to 1 (Nx56 kbit/s).
    #[serde(rename = "56k")]
    K56,
}

impl ChannelRate {
    /// Payload bits each selected timeslot carries per frame.
    pub fn bits(self) -> usize {
        match self {
            ChannelRate::K64 => 8,
            ChannelRate::K56 => 7,
        }
    }
}

/// The timeslots a payload occupies, and at which rate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Timeslots {
    /// Selected timeslot numbers, ascending (T1: 1..=24, E1: 1..=31).
    slots: Vec<u8>,
    rate: ChannelRate,
}

impl Timeslots {
    /// Every payload timeslot of `framing` at 64 kbit/s.
    pub fn all(framing: Framing) -> Self {
        Timeslots {
            slots: (1..=framing.channels()).collect(),
            rate: ChannelRate::K64,
        }
    }

    /// Parses `1-24`, `1-12`, `1,3,5-7`, `all`, `6x64k`, `6x56k` or a list with a rate suffix
    /// (`1-12:56k`). `NxR` means timeslots 1..=N.
    pub fn parse(text: &str, framing: Framing) -> Result<Self, FramingError> {
        let bad = |why: String| FramingError::BadTimeslots {
            text: text.to_string(),
            why,
        };
        let lower = text.trim().to_ascii_lowercase();
        let max = framing.channels();
        let rate_of = |suffix: &str| match suffix {
            "64k" | "64" => Ok(ChannelRate::K64),
            "56k" | "56" => Ok(ChannelRate::K56),
            other => Err(bad(format!("unknown channel rate '{other}' (64k or 56k)"))),
        };
        if let Some((count, rate)) = lower.split_once('x') {
            let count: u8 = count
                .parse()
                .map_err(|_| bad("expected N before 'x', as in 6x64k".into()))?;
            if count == 0 || count > max {
                return Err(bad(format!(
                    "{framing} has {max} payload timeslots, not {count}"
                )));
            }
            return Ok(Timeslots {
                slots: (1..=count).collect(),
                rate: rate_of(rate)?,
            });
        }
        let (list, rate) = match lower.split_once(':') {
            Some((list, rate)) => (list, rate_of(rate)?),
            None => (lower.as_str(), ChannelRate::K64),
        };
        if list == "all" {
            return Ok(Timeslots {
                rate,
                ..Timeslots::all(framing)
            });
        }
        let mut selected = vec![false; usize::from(max) + 1];
        for part in list.split(',').map(str::trim) {
            let (from, to) = match part.split_once('-') {
                Some((from, to)) => (from.trim(), to.trim()),
                None => (part, part),
            };
            let number = |s: &str| -> Result<u8, FramingError> {
                let n: u8 = s
                    .parse()
                    .map_err(|_| bad(format!("'{s}' is not a timeslot number")))?;
                if n == 0 || n > max {
                    return Err(bad(format!(
                        "timeslot {n} is outside 1-{max} for {framing}"
                    )));
                }
                Ok(n)
            };
            let (from, to) = (number(from)?, number(to)?);
            if from > to {
                return Err(bad(format!("range {from}-{to} runs backwards")));
            }
            for slot in from..=to {
                selected[usize::from(slot)] = true;
            }
        }
        let slots: Vec<u8> = (1..=max).filter(|&s| selected[usize::from(s)]).collect();
        if slots.is_empty() {
            return Err(bad("no timeslot selected".into()));
        }
        Ok(Timeslots { slots, rate })
    }

    /// The selected timeslots, numbered from 1, in order.
    pub fn slots(&self) -> &[u8] {
        &self.slots
    }

    /// The rate of each selected timeslot.
    pub fn rate(&self) -> ChannelRate {
        self.rate
    }

    /// Payload bits carried per frame.
    pub fn bits_per_frame(&self) -> usize {
        self.slots.len() * self.rate.bits()
    }

    /// Payload bit rate (8000 frames per second).
    pub fn payload_rate_bps(&self) -> u64 {
        self.bits_per_frame() as u64 * 8000
    }

    /// `1-12`, `1,3,5-7` (with `:56k` when at 56 kbit/s).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut at = 0;
        while at < self.slots.len() {
            let start = self.slots[at];
            let mut end = start;
            while at + 1 < self.slots.len() && self.slots[at + 1] == end + 1 {
                at += 1;
                end += 1;
            }
            parts.push(if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            });
            at += 1;
        }
        let list = parts.join(",");
        match self.rate {
            ChannelRate::K64 => list,
            ChannelRate::K56 => format!("{list}:56k"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeslot_forms() {
        let t = Timeslots::parse("1-12", Framing::Esf).unwrap();
        assert_eq!(t.slots(), (1..=12).collect::<Vec<u8>>().as_slice());
        assert_eq!(t.bits_per_frame(), 96);
        assert_eq!(t.payload_rate_bps(), 768_000);
        let t = Timeslots::parse("6x56k", Framing::Sf).unwrap();
        assert_eq!(t.slots(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(t.rate(), ChannelRate::K56);
        assert_eq!(t.payload_rate_bps(), 6 * 56_000);
        let t = Timeslots::parse("1,3,5-7:56k", Framing::E1).unwrap();
        assert_eq!(t.slots(), &[1, 3, 5, 6, 7]);
        assert_eq!(t.describe(), "1,3,5-7:56k");
        assert_eq!(
            Timeslots::parse("all", Framing::E1Crc4)
                .unwrap()
                .slots()
                .len(),
            31
        );
        assert_eq!(Timeslots::all(Framing::Sf).payload_rate_bps(), 1_536_000);
    }

    #[test]
    fn timeslot_errors_say_why() {
        for (text, framing, want) in [
            ("0-3", Framing::Esf, "outside 1-24"),
            ("25", Framing::Esf, "outside 1-24"),
            ("32", Framing::E1, "outside 1-31"),
            ("5-2", Framing::Esf, "backwards"),
            ("25x64k", Framing::Esf, "24 payload timeslots"),
            ("4x48k", Framing::Esf, "channel rate"),
            ("a-b", Framing::Esf, "not a timeslot"),
        ] {
            let error = Timeslots::parse(text, framing).unwrap_err().to_string();
            assert!(error.contains(want), "{text}: {error}");
        }
    }

    #[test]
    fn framing_names_round_trip() {
        for framing in Framing::ALL {
            assert_eq!(framing.name().parse::<Framing>().unwrap(), framing);
        }
        assert!("t3".parse::<Framing>().is_err());
        assert_eq!(Framing::Esf.bytes_per_second(), 193_000);
        assert_eq!(Framing::E1Crc4.bytes_per_second(), 256_000);
    }
}
