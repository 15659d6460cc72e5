//! Names and options of every pattern: what `--pattern`, `--invert`, `--reverse` and
//! `--msb-first` select.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Which pattern. PRBS rows follow ITU-T O.150 (polynomial and standard polarity).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PatternKind {
    /// x^7 + x^6 + 1 (not in O.150; SERDES practice), not inverted.
    Prbs7,
    /// O.150 5.1: x^9 + x^5 + 1, not inverted.
    Prbs9,
    /// O.150 5.2: x^11 + x^9 + 1, not inverted.
    Prbs11,
    /// O.150 5.3: x^15 + x^14 + 1, inverted.
    Prbs15,
    /// O.150 5.4: x^20 + x^3 + 1, not inverted.
    Prbs20,
    /// O.150 5.5: x^20 + x^17 + 1 with the output forced to 1 when the next 14 bits would be 0.
    Qrss,
    /// O.150 5.6: x^23 + x^18 + 1, inverted.
    Prbs23,
    /// O.150 5.7: x^29 + x^27 + 1, inverted.
    Prbs29,
    /// O.150 5.8: x^31 + x^28 + 1, inverted.
    Prbs31,
    /// All ones.
    Ones,
    /// All zeros.
    Zeros,
    /// 1010...
    Alt,
    /// 01000000 repeating.
    OneIn8,
    /// 2 ones in 8 bits, at most 4 zeros in a row.
    TwoIn8,
    /// 0100 0100 0000 0000 0000 0100.
    ThreeIn24,
    /// A user word, 1..=64 bytes, sent in byte order (each byte in the configured bit order).
    Hex(Vec<u8>),
}

/// Order in which a byte carries the pattern's bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BitOrder {
    /// The first bit of the sequence is bit 0 of the first byte, as a UART sends it.
    #[default]
    LsbFirst,
    /// The first bit of the sequence is bit 7 of the first byte, as T1/E1 framers carry it.
    MsbFirst,
}

/// A pattern with its options: what a generator emits and what a checker expects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PatternSpec {
    /// Which pattern.
    pub kind: PatternKind,
    /// `None`: the standard's polarity. `Some(true)`: complemented relative to the *plain LFSR
    /// output* (so `Some(false)` on prbs15 emits the non-inverted stream O.150 does not use).
    pub invert: Option<bool>,
    /// Emit the time-reversed sequence (recurrence `b[t] = b[t-(n-k)] ^ b[t-n]`).
    pub reverse: bool,
    /// How bytes carry the bits.
    pub bit_order: BitOrder,
}

/// What went wrong reading a pattern name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "unknown pattern '{0}' (expected prbs7, prbs9, prbs11, prbs15, prbs20, qrss, prbs23, prbs29, prbs31, ones, zeros, alt, 1in8, 2in8, 3in24 or hex:HEX)"
    )]
    /// Not a known pattern name.
    UnknownPattern(String),
    /// A `hex:` word that is not 1 to 64 bytes of hex digits; the text says what is wrong.
    #[error("bad hex pattern '{0}': {1}")]
    BadHex(String, &'static str),
}

impl PatternKind {
    /// Every named pattern (not `Hex`), in the order help text lists them.
    pub const NAMED: [PatternKind; 15] = [
        PatternKind::Prbs7,
        PatternKind::Prbs9,
        PatternKind::Prbs11,
        PatternKind::Prbs15,
        PatternKind::Prbs20,
        PatternKind::Qrss,
        PatternKind::Prbs23,
        PatternKind::Prbs29,
        PatternKind::Prbs31,
        PatternKind::Ones,
        PatternKind::Zeros,
        PatternKind::Alt,
        PatternKind::OneIn8,
        PatternKind::TwoIn8,
        PatternKind::ThreeIn24,
    ];

    /// The CLI name (`prbs31`, `1in8`, `hex:DEADBEEF`).
    pub fn name(&self) -> String {
        match self {
            PatternKind::Prbs7 => "prbs7".into(),
            PatternKind::Prbs9 => "prbs9".into(),
            PatternKind::Prbs11 => "prbs11".into(),
            PatternKind::Prbs15 => "prbs15".into(),
            PatternKind::Prbs20 => "prbs20".into(),
            PatternKind::Qrss => "qrss".into(),
            PatternKind::Prbs23 => "prbs23".into(),
            PatternKind::Prbs29 => "prbs29".into(),
            PatternKind::Prbs31 => "prbs31".into(),
            PatternKind::Ones => "ones".into(),
            PatternKind::Zeros => "zeros".into(),
            PatternKind::Alt => "alt".into(),
            PatternKind::OneIn8 => "1in8".into(),
            PatternKind::TwoIn8 => "2in8".into(),
            PatternKind::ThreeIn24 => "3in24".into(),
            PatternKind::Hex(bytes) => {
                let mut name = String::from("hex:");
                for byte in bytes {
                    name.push_str(&format!("{byte:02X}"));
                }
                name
            }
        }
    }

    /// `(n, k)` of x^n + x^k + 1 for the pseudo-random patterns, `None` for fixed ones.
    pub fn polynomial(&self) -> Option<(u32, u32)> {
        match self {
            PatternKind::Prbs7 => Some((7, 6)),
            PatternKind::Prbs9 => Some((9, 5)),
            PatternKind::Prbs11 => Some((11, 9)),
            PatternKind::Prbs15 => Some((15, 14)),
            PatternKind::Prbs20 => Some((20, 3)),
            PatternKind::Qrss => Some((20, 17)),
            PatternKind::Prbs23 => Some((23, 18)),
            PatternKind::Prbs29 => Some((29, 27)),
            PatternKind::Prbs31 => Some((31, 28)),
            _ => None,
        }
    }

    /// Whether O.150 transmits this pattern inverted.
    pub fn standard_inverted(&self) -> bool {
        matches!(
            self,
            PatternKind::Prbs15 | PatternKind::Prbs23 | PatternKind::Prbs29 | PatternKind::Prbs31
        )
    }

    /// A PRBS (an LFSR polynomial), as opposed to a fixed word.
    pub fn is_pseudo_random(&self) -> bool {
        self.polynomial().is_some()
    }
}

impl fmt::Display for PatternKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for PatternKind {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let lower = text.trim().to_ascii_lowercase();
        if let Some(hex) = lower.strip_prefix("hex:") {
            return parse_hex(text, hex).map(PatternKind::Hex);
        }
        let aliases: &[(&str, PatternKind)] = &[
            ("2^7-1", PatternKind::Prbs7),
            ("2^9-1", PatternKind::Prbs9),
            ("2^11-1", PatternKind::Prbs11),
            ("2^15-1", PatternKind::Prbs15),
            ("2^20-1", PatternKind::Prbs20),
            ("2^23-1", PatternKind::Prbs23),
            ("2^29-1", PatternKind::Prbs29),
            ("2^31-1", PatternKind::Prbs31),
            ("1010", PatternKind::Alt),
            ("1:7", PatternKind::OneIn8),
        ];
        PatternKind::NAMED
            .iter()
            .find(|kind| kind.name() == lower)
            .cloned()
            .or_else(|| {
                aliases
                    .iter()
                    .find(|(alias, _)| *alias == lower)
                    .map(|(_, k)| k.clone())
            })
            .ok_or_else(|| SpecError::UnknownPattern(text.to_string()))
    }
}

fn parse_hex(original: &str, hex: &str) -> Result<Vec<u8>, SpecError> {
    let digits: String = hex.chars().filter(|c| *c != '_').collect();
    let digits = digits.strip_prefix("0x").unwrap_or(&digits);
    if digits.is_empty() {
        return Err(SpecError::BadHex(original.into(), "no hex digits"));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(SpecError::BadHex(
            original.into(),
            "odd number of hex digits",
        ));
    }
    if digits.len() > 128 {
        return Err(SpecError::BadHex(original.into(), "longer than 64 bytes"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|at| {
            u8::from_str_radix(&digits[at..at + 2], 16)
                .map_err(|_| SpecError::BadHex(original.into(), "not a hex digit"))
        })
        .collect()
}

impl PatternSpec {
    /// The pattern in the standard's polarity, forward, LSB first.
    pub fn standard(kind: PatternKind) -> Self {
        PatternSpec {
            kind,
            invert: None,
            reverse: false,
            bit_order: BitOrder::LsbFirst,
        }
    }

    /// Whether the emitted stream is the complement of the plain LFSR output (or of the fixed
    /// pattern as written).
    pub fn inverted(&self) -> bool {
        self.invert.unwrap_or_else(|| self.kind.standard_inverted())
    }

    /// A one-line description, e.g. `prbs31 (inverted, reversed, msb-first)`.
    pub fn describe(&self) -> String {
        let mut options = Vec::new();
        if self.inverted() {
            options.push("inverted");
        }
        if self.reverse {
            options.push("reversed");
        }
        if self.bit_order == BitOrder::MsbFirst {
            options.push("msb-first");
        }
        if options.is_empty() {
            self.kind.name()
        } else {
            format!("{} ({})", self.kind.name(), options.join(", "))
        }
    }
}
