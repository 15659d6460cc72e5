//! T1/E1 loopback commands: in-band loop codes, ESF bit-oriented messages, and their detectors.
//!
//! # In-band codes (ANSI T1.403 §9.3, and the smart-jack codes)
//!
//! A code is a short bit sequence repeated for seconds: loop-up `00001`, loop-down `001`,
//! smart-jack arm `11000` and disarm `11100`, or a user's own. It is sent framed (it takes the
//! place of the payload in every timeslot; the framing bits stay) or unframed (it takes the whole
//! line). The far end acts on a code only after it has persisted (5 s by default) so that a
//! payload that happens to contain the code briefly does not loop the line.
//!
//! # ESF bit-oriented messages (ANSI T1.403 §9.4.1)
//!
//! On the 4 kbit/s data link a bit-oriented message (BOM) is a 16-bit pattern repeated: eight
//! ones and an octet `0xxxxxx0`. **Bit order:** T1.403 prints each message as
//! `0xxxxxx0 11111111` *with the rightmost bit transmitted first* (so the eight ones go first,
//! then the code octet read from right to left). That is how equipment manuals that implement
//! the standard quote it too, e.g. "the payload loop-up, bit-oriented message is 00010100
//! 11111111, with the right most bit transmitted first". So the left-to-right reading is *not*
//! the order on the line. [`Bom::WRITTEN`] keeps the standard's notation, and [`Bom::line_bits`]
//! reverses it into transmission order; the framer and the detector use the latter. As a
//! repeated stream both readings have the same 8-ones run, but the six code bits run in opposite
//! directions, so only one of them decodes to the intended command.
//!
//! # Detection
//!
//! - [`InbandDetector`] compares the received bits with every rotation of each code over
//!   windows of [`WINDOW_BITS`] bits. A window matches when the best rotation differs in at
//!   most [`WINDOW_TOLERANCE`] bits (2%: a 10⁻³ line error rate gives about 1 wrong bit per
//!   window, random data about half of them). A code is detected when consecutive matching
//!   windows add up to the persistence; one window that does not match ends the run. The
//!   detection therefore comes between the persistence and the persistence plus two windows
//!   after the code starts, never before.
//! - [`BomDetector`] finds the 16-bit messages in the data-link bits (the 8-ones run fixes the
//!   phase: no other phase of a repeated message has eight ones in a row) and detects a message
//!   after [`BomDetector::new`]'s count of valid repetitions in consecutive 16-bit slots, up to
//!   [`BOM_MAX_MISSED_SLOTS`] corrupted slots between two of them tolerated. T1.403
//!   transmitters repeat a command at least 10 times; the default of 5 therefore acts on a
//!   command sent the minimum number of times even when a few repetitions are hit by errors.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Bits per detection window.
pub const WINDOW_BITS: u64 = 1024;
/// Wrong bits a window may have and still match a code.
pub const WINDOW_TOLERANCE: u32 = 20;
/// Corrupted message slots tolerated between two valid repetitions of a BOM.
pub const BOM_MAX_MISSED_SLOTS: u32 = 2;
/// Default persistence of in-band codes.
pub const DEFAULT_INBAND_PERSISTENCE_S: f64 = 5.0;
/// Default valid repetitions of a bit-oriented message before it is acted on.
pub const DEFAULT_BOM_REPETITIONS: u32 = 5;

/// What went wrong reading a loop code or FDL message name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoopCodeError {
    #[error(
        "unknown loop code '{0}' (expected loop-up, loop-down, arm, disarm, or the code's bits such as 00001)"
    )]
    /// Neither a known name nor bits.
    UnknownInband(String),
    #[error("bad loop code '{text}': {why}")]
    /// Bits that are not a loop code.
    BadBits {
        /// The code as given.
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
    #[error(
        "unknown FDL message '{0}' (expected line-loopback-activate, line-loopback-deactivate, payload-loopback-activate, payload-loopback-deactivate, rai or loopback-ack)"
    )]
    /// Not one of the bit-oriented messages.
    UnknownBom(String),
}

/// An in-band loop code: a bit sequence repeated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InbandCode {
    name: String,
    /// One period, first-transmitted bit first, 0 or 1 per element.
    bits: Vec<u8>,
}

impl InbandCode {
    /// Loop-up (line loopback activate), `00001` (T1.403 §9.3.1).
    pub fn loop_up() -> Self {
        Self::named("loop-up", "00001")
    }

    /// Loop-down (line loopback deactivate), `001`.
    pub fn loop_down() -> Self {
        Self::named("loop-down", "001")
    }

    /// Smart-jack (NIU) arm, `11000`.
    pub fn arm() -> Self {
        Self::named("arm", "11000")
    }

    /// Smart-jack (NIU) disarm, `11100`.
    pub fn disarm() -> Self {
        Self::named("disarm", "11100")
    }

    fn named(name: &str, bits: &str) -> Self {
        InbandCode {
            name: name.into(),
            bits: bits.bytes().map(|b| b - b'0').collect(),
        }
    }

    /// A user's code from its bits (`0` and `1`, 3 to 32 of them, not itself a repetition of
    /// a shorter code, and not all equal: those are AIS or silence, not a command).
    pub fn from_bits(text: &str) -> Result<Self, LoopCodeError> {
        let bad = |why| LoopCodeError::BadBits {
            text: text.to_string(),
            why,
        };
        if !text.bytes().all(|b| b == b'0' || b == b'1') {
            return Err(bad("only 0 and 1 are allowed"));
        }
        if !(3..=32).contains(&text.len()) {
            return Err(bad("a code has 3 to 32 bits"));
        }
        let bits: Vec<u8> = text.bytes().map(|b| b - b'0').collect();
        if bits.iter().all(|&b| b == bits[0]) {
            return Err(bad("all-equal bits are not a code"));
        }
        let period = (1..bits.len())
            .find(|&p| {
                bits.len().is_multiple_of(p) && (p..bits.len()).all(|i| bits[i] == bits[i - p])
            })
            .unwrap_or(bits.len());
        if period < 3 {
            return Err(bad("its period is shorter than 3 bits"));
        }
        Ok(InbandCode {
            name: text.to_string(),
            bits: bits[..period].to_vec(),
        })
    }

    /// The name it was given by (`loop-up`, or its bits).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One period, first-transmitted first.
    pub fn bits(&self) -> &[u8] {
        &self.bits
    }

    /// The bits as text (`00001`).
    pub fn bit_string(&self) -> String {
        self.bits.iter().map(|b| char::from(b'0' + b)).collect()
    }
}

impl FromStr for InbandCode {
    type Err = LoopCodeError;

    fn from_str(text: &str) -> Result<Self, LoopCodeError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "loop-up" | "up" | "loopup" => Ok(Self::loop_up()),
            "loop-down" | "down" | "loopdown" => Ok(Self::loop_down()),
            "arm" => Ok(Self::arm()),
            "disarm" => Ok(Self::disarm()),
            other if !other.is_empty() && other.bytes().all(|b| b == b'0' || b == b'1') => {
                Self::from_bits(other)
            }
            _ => Err(LoopCodeError::UnknownInband(text.to_string())),
        }
    }
}

impl fmt::Display for InbandCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == self.bit_string() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{} ({})", self.name, self.bit_string())
        }
    }
}

/// An ESF bit-oriented message (T1.403 §9.4.1, Table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bom {
    /// Line loopback activate: loop the whole line at the far end.
    LineLoopbackActivate,
    /// Line loopback deactivate.
    LineLoopbackDeactivate,
    /// Payload loopback activate: loop the payload, regenerating framing and CRC.
    PayloadLoopbackActivate,
    /// Payload loopback deactivate.
    PayloadLoopbackDeactivate,
    /// Remote alarm indication (yellow alarm).
    Rai,
    /// Loopback retention and acknowledge.
    LoopbackAck,
}

impl Bom {
    /// Every message, in the order of T1.403's table.
    pub const ALL: [Bom; 6] = [
        Bom::LineLoopbackActivate,
        Bom::LineLoopbackDeactivate,
        Bom::PayloadLoopbackActivate,
        Bom::PayloadLoopbackDeactivate,
        Bom::Rai,
        Bom::LoopbackAck,
    ];

    /// The message as T1.403 prints it: the rightmost bit is transmitted first.
    pub const fn written(self) -> &'static str {
        match self {
            Bom::LineLoopbackActivate => "00001110 11111111",
            Bom::LineLoopbackDeactivate => "00111000 11111111",
            Bom::PayloadLoopbackActivate => "00010100 11111111",
            Bom::PayloadLoopbackDeactivate => "00110010 11111111",
            Bom::Rai => "00000000 11111111",
            Bom::LoopbackAck => "00101010 11111111",
        }
    }

    /// Every message's printed form, in [`Bom::ALL`] order.
    pub const WRITTEN: [&'static str; 6] = [
        Bom::LineLoopbackActivate.written(),
        Bom::LineLoopbackDeactivate.written(),
        Bom::PayloadLoopbackActivate.written(),
        Bom::PayloadLoopbackDeactivate.written(),
        Bom::Rai.written(),
        Bom::LoopbackAck.written(),
    ];

    /// The CLI name (`line-loopback-activate`...).
    pub fn name(self) -> &'static str {
        match self {
            Bom::LineLoopbackActivate => "line-loopback-activate",
            Bom::LineLoopbackDeactivate => "line-loopback-deactivate",
            Bom::PayloadLoopbackActivate => "payload-loopback-activate",
            Bom::PayloadLoopbackDeactivate => "payload-loopback-deactivate",
            Bom::Rai => "rai",
            Bom::LoopbackAck => "loopback-ack",
        }
    }

    /// The 16 bits in transmission order (the written form reversed): `11111111 0xxxxxx0`.
    pub fn line_bits(self) -> Vec<u8> {
        self.written()
            .bytes()
            .rev()
            .filter(|b| *b != b' ')
            .map(|b| b - b'0')
            .collect()
    }

    /// The second octet of the message in transmission order, first bit in the MSB.
    fn line_octet(self) -> u8 {
        self.line_bits()[8..]
            .iter()
            .fold(0u8, |acc, &bit| (acc << 1) | bit)
    }

    fn from_line_octet(octet: u8) -> Option<Bom> {
        Bom::ALL.into_iter().find(|bom| bom.line_octet() == octet)
    }
}

impl FromStr for Bom {
    type Err = LoopCodeError;

    fn from_str(text: &str) -> Result<Self, LoopCodeError> {
        let lower = text.trim().to_ascii_lowercase();
        Bom::ALL
            .into_iter()
            .find(|bom| bom.name() == lower)
            .ok_or_else(|| LoopCodeError::UnknownBom(text.to_string()))
    }
}

impl fmt::Display for Bom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A detection: which code, and the bit (counted from the first bit fed) at which it was
/// declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// An in-band code persisted.
    Inband {
        /// Which code.
        code: InbandCode,
        /// Where.
        at_bit: u64,
    },
    /// A code that had been detected stopped.
    InbandCleared {
        /// Which code.
        code: InbandCode,
        /// Where.
        at_bit: u64,
    },
    /// A bit-oriented message was received the configured number of times (`at_bit` counts
    /// data-link bits).
    Bom {
        /// Which message.
        message: Bom,
        /// Where.
        at_bit: u64,
    },
    /// A 16-bit message shape with a code this module does not know.
    UnknownBom {
        /// The message's code octet.
        octet: u8,
        /// Where.
        at_bit: u64,
    },
}

struct Watched {
    code: InbandCode,
    /// `phase_words[q]`: the 64 bits of the repeated code from phase `q`, first bit in the MSB.
    phase_words: Vec<u64>,
    /// Wrong bits so far in this window, per rotation.
    mismatches: Vec<u32>,
    run_bits: u64,
    active: bool,
}

/// See the module documentation. Feed it line bits (or payload bits) as MSB-first bytes.
pub struct InbandDetector {
    watched: Vec<Watched>,
    persistence_bits: u64,
    /// Bits fed so far (whole 64-bit words are processed; the rest waits in `partial`).
    words_done: u64,
    partial: u64,
    partial_bits: u32,
    detections: Vec<Detection>,
}

impl std::fmt::Debug for InbandDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InbandDetector")
            .field("persistence_bits", &self.persistence_bits)
            .finish_non_exhaustive()
    }
}

impl InbandDetector {
    /// Watches `codes`; each is detected after `persistence_bits` bits of it (at a line rate R,
    /// a persistence of S seconds is `S * R` bits).
    pub fn new(codes: &[InbandCode], persistence_bits: u64) -> Self {
        let watched = codes
            .iter()
            .map(|code| {
                let period = code.bits.len();
                let phase_words = (0..period)
                    .map(|q| {
                        (0..64).fold(0u64, |word, i| {
                            (word << 1) | u64::from(code.bits[(q + i) % period])
                        })
                    })
                    .collect();
                Watched {
                    code: code.clone(),
                    phase_words,
                    mismatches: vec![0; period],
                    run_bits: 0,
                    active: false,
                }
            })
            .collect();
        InbandDetector {
            watched,
            persistence_bits: persistence_bits.max(WINDOW_BITS),
            words_done: 0,
            partial: 0,
            partial_bits: 0,
            detections: Vec::new(),
        }
    }

    /// Bits fed so far.
    pub fn bits_fed(&self) -> u64 {
        self.words_done * 64 + u64::from(self.partial_bits)
    }

    /// Whether `code` is present now (detected and not cleared).
    pub fn is_active(&self, code: &InbandCode) -> bool {
        self.watched
            .iter()
            .any(|w| w.active && w.code.bits == code.bits)
    }

    /// Detections since the last call.
    pub fn take_detections(&mut self) -> Vec<Detection> {
        std::mem::take(&mut self.detections)
    }

    /// Looks for the codes in the next received bytes (bits in time order, MSB first).
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.partial_bits == 0 && rest.len() >= 8 {
                let (word, tail) = rest.split_at(8);
                let mut array = [0u8; 8];
                array.copy_from_slice(word);
                self.word(u64::from_be_bytes(array));
                rest = tail;
                continue;
            }
            self.partial = (self.partial << 8) | u64::from(rest[0]);
            self.partial_bits += 8;
            rest = &rest[1..];
            if self.partial_bits == 64 {
                let word = self.partial;
                self.partial = 0;
                self.partial_bits = 0;
                self.word(word);
            }
        }
    }

    fn word(&mut self, word: u64) {
        let t = self.words_done * 64;
        for watched in &mut self.watched {
            let period = watched.phase_words.len() as u64;
            for (rotation, count) in watched.mismatches.iter_mut().enumerate() {
                let phase = ((t + rotation as u64) % period) as usize;
                *count += (word ^ watched.phase_words[phase]).count_ones();
            }
        }
        self.words_done += 1;
        if (self.words_done * 64).is_multiple_of(WINDOW_BITS) {
            self.close_window();
        }
    }

    fn close_window(&mut self) {
        let at_bit = self.words_done * 64;
        for watched in &mut self.watched {
            let best = watched.mismatches.iter().copied().min().unwrap_or(u32::MAX);
            watched.mismatches.iter_mut().for_each(|m| *m = 0);
            if best <= WINDOW_TOLERANCE {
                watched.run_bits += WINDOW_BITS;
                if !watched.active && watched.run_bits >= self.persistence_bits {
                    watched.active = true;
                    self.detections.push(Detection::Inband {
                        code: watched.code.clone(),
                        at_bit,
                    });
                }
            } else {
                watched.run_bits = 0;
                if watched.active {
                    watched.active = false;
                    self.detections.push(Detection::InbandCleared {
                        code: watched.code.clone(),
                        at_bit,
                    });
                }
            }
        }
    }
}

/// See the module documentation. Feed it the data-link bits (one 0/1 per element).
#[derive(Debug, Clone)]
pub struct BomDetector {
    repetitions: u32,
    register: u16,
    filled: u32,
    bits_fed: u64,
    /// Bits since the last valid message shape (None: none seen yet).
    since_valid: Option<u32>,
    current: Option<u8>,
    count: u32,
    reported: Option<u8>,
    detections: Vec<Detection>,
}

impl BomDetector {
    /// Detects a message after `repetitions` valid receptions (at least 1).
    pub fn new(repetitions: u32) -> Self {
        BomDetector {
            repetitions: repetitions.max(1),
            register: 0,
            filled: 0,
            bits_fed: 0,
            since_valid: None,
            current: None,
            count: 0,
            reported: None,
            detections: Vec::new(),
        }
    }

    /// Detections since the last call.
    pub fn take_detections(&mut self) -> Vec<Detection> {
        std::mem::take(&mut self.detections)
    }

    /// Looks for messages in the next data-link bits (one bit per byte, 0 or 1).
    pub fn feed(&mut self, bits: &[u8]) {
        for &bit in bits {
            self.register = (self.register << 1) | u16::from(bit & 1);
            self.filled = (self.filled + 1).min(16);
            self.bits_fed += 1;
            if let Some(since) = self.since_valid.as_mut() {
                *since += 1;
            }
            // Eight ones, then an octet that starts and ends with 0 (transmission order).
            if self.filled == 16 && self.register & 0xFF81 == 0xFF00 {
                self.valid_shape(self.register as u8);
            } else if let Some(since) = self.since_valid
                && since > 16 * (BOM_MAX_MISSED_SLOTS + 1)
            {
                // The messages stopped.
                self.since_valid = None;
                self.current = None;
                self.count = 0;
                self.reported = None;
            }
        }
    }

    fn valid_shape(&mut self, octet: u8) {
        let in_step = self
            .since_valid
            .is_some_and(|since| since % 16 == 0 && since <= 16 * (BOM_MAX_MISSED_SLOTS + 1));
        if in_step && self.current == Some(octet) {
            self.count += 1;
        } else {
            self.current = Some(octet);
            self.count = 1;
            self.reported = None;
        }
        self.since_valid = Some(0);
        if self.count >= self.repetitions && self.reported != Some(octet) {
            self.reported = Some(octet);
            let at_bit = self.bits_fed;
            self.detections.push(match Bom::from_line_octet(octet) {
                Some(message) => Detection::Bom { message, at_bit },
                None => Detection::UnknownBom { octet, at_bit },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_order_is_the_written_form_reversed() {
        // "00001110 11111111" with the rightmost bit first: eight ones, then 0,1,1,1,0,0,0,0.
        assert_eq!(
            Bom::LineLoopbackActivate.line_bits(),
            [1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0]
        );
        for bom in Bom::ALL {
            let bits = bom.line_bits();
            assert_eq!(bits.len(), 16);
            assert!(bits[..8].iter().all(|&b| b == 1), "{bom}");
            assert_eq!((bits[8], bits[15]), (0, 0), "{bom}");
        }
    }

    #[test]
    fn user_codes_are_checked() {
        assert_eq!(InbandCode::from_bits("0011").unwrap().bit_string(), "0011");
        // A repetition reduces to its period.
        assert_eq!(
            InbandCode::from_bits("0000100001").unwrap().bits(),
            InbandCode::loop_up().bits()
        );
        assert!(InbandCode::from_bits("0101").is_err(), "period 2");
        assert!(InbandCode::from_bits("1111").is_err());
        assert!(InbandCode::from_bits("01").is_err());
        assert!(InbandCode::from_bits("012").is_err());
        let error = "bogus".parse::<InbandCode>().unwrap_err().to_string();
        assert!(error.starts_with("unknown loop code 'bogus'"), "{error}");
        assert!(!error.contains('\n'));
        assert_eq!(
            "Loop-Up".parse::<InbandCode>().unwrap(),
            InbandCode::loop_up()
        );
        assert!("line".parse::<Bom>().is_err());
    }
}
