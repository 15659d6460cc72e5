//! Quantities as users write them in flags and endpoint options: sizes, durations, bit rates,
//! probabilities. One parser per kind, one typed error, so every command reads `64k` or `1e-6`
//! the same way and says the same thing when it cannot.
//!
//! - **Sizes** (bytes) use SI prefixes as written on the box: `k`/`K` = 10^3, `M` = 10^6,
//!   `G` = 10^9, `T` = 10^12. The IEC binary prefixes are spelled with an `i`: `Ki` = 2^10,
//!   `Mi` = 2^20, `Gi` = 2^30, `Ti` = 2^40. A trailing `B` is allowed (`2MB`, `64KiB`).
//! - **Bit rates** (bit/s) are always SI, as line rates are quoted: `9600`, `64k`, `1.5M`, `10G`,
//!   optionally followed by `bit/s` or `bps`.
//! - **Durations**: `250us`, `200ms`, `1s`, `2m`, `1h`, `1d`, or bare seconds (`0.2`), at most
//!   [`MAX_DURATION`] so that `Instant + Duration` cannot overflow anywhere downstream.
//! - **Probabilities**: a number in `0..=1` (`1e-6`, `0.001`); confidence levels also take a
//!   percentage (`95`, `99%`).
//!
//! Hand-written rather than taken from a crate: the crates that parse sizes or durations
//! (humantime, bytesize, parse-size) each cover one kind with their own unit letters, and none
//! has the bit-rate or probability forms; one small module keeps every flag consistent.

use std::time::{Duration, Instant};

use thiserror::Error;

/// The longest duration any flag or option accepts: 100 years.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400 + 25 * 86_400);

/// Inputs are quoted back in errors; a 100 KB argument is cut to this many characters.
const QUOTE_LIMIT: usize = 40;

/// Why a quantity could not be read. The message quotes (a shortened copy of) the input and
/// shows the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnitError {
    /// No number where one was expected.
    #[error("'{input}' is not {kind} (try {examples})")]
    NotANumber {
        /// What was given (shortened).
        input: String,
        /// What was expected: "a size", "a duration"...
        kind: &'static str,
        /// Forms that work.
        examples: &'static str,
    },
    /// A number followed by letters that are no unit of this kind.
    #[error("'{input}': unknown unit '{unit}' (use {expected})")]
    UnknownUnit {
        /// What was given (shortened).
        input: String,
        /// The letters after the number.
        unit: String,
        /// The units this kind takes.
        expected: &'static str,
    },
    /// A negative quantity.
    #[error("'{input}' is negative")]
    Negative {
        /// What was given (shortened).
        input: String,
    },
    /// More than the kind allows (a duration over 100 years, a size over 2^64 bytes).
    #[error("'{input}' is too large (at most {max})")]
    TooLarge {
        /// What was given (shortened).
        input: String,
        /// The largest value, in words.
        max: &'static str,
    },
    /// Outside the range of the kind (a probability above 1, a rate of 0).
    #[error("'{input}' must be {range}")]
    OutOfRange {
        /// What was given (shortened).
        input: String,
        /// The range, in words.
        range: &'static str,
    },
}

/// Lets callers that carry a `String` reason (endpoint option errors) take a `UnitError` as is.
impl From<UnitError> for String {
    fn from(error: UnitError) -> String {
        error.to_string()
    }
}

fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE_LIMIT {
        text.to_string()
    } else {
        let head: String = text.chars().take(QUOTE_LIMIT).collect();
        format!("{head}…")
    }
}

/// Splits `12.5ms` into (`12.5`, `ms`). The number may carry an exponent (`1e6`, `2.5E-3`), so
/// an `e`/`E` followed by a digit or sign belongs to the number.
fn split_number(text: &str) -> (&str, &str) {
    let bytes = text.as_bytes();
    let mut end = 0;
    while end < bytes.len() {
        let c = bytes[end];
        let exponent = (c == b'e' || c == b'E')
            && end > 0
            && bytes
                .get(end + 1)
                .is_some_and(|next| next.is_ascii_digit() || *next == b'-' || *next == b'+');
        if c.is_ascii_digit() || c == b'.' || c == b'-' || c == b'+' || exponent {
            end += 1;
        } else {
            break;
        }
    }
    (text[..end].trim(), text[end..].trim())
}

fn number(text: &str, kind: &'static str, examples: &'static str) -> Result<f64, UnitError> {
    let value: f64 = text.parse().map_err(|_| UnitError::NotANumber {
        input: quote(text),
        kind,
        examples,
    })?;
    if value.is_nan() {
        return Err(UnitError::NotANumber {
            input: quote(text),
            kind,
            examples,
        });
    }
    Ok(value)
}

/// A size in bytes: `4096`, `64k` (64,000), `64Ki` (65,536), `1G`, `1e6`, `2MB`.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    const EXAMPLES: &str = "4096, 64k, 64Ki, 1G";
    let text = text.trim();
    let (digits, unit) = split_number(text);
    let value = number(digits, "a size", EXAMPLES).map_err(|_| UnitError::NotANumber {
        input: quote(text),
        kind: "a size",
        examples: EXAMPLES,
    })?;
    let unit_without_bytes = unit.strip_suffix('B').unwrap_or(unit);
    let scale = match unit_without_bytes {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        _ => {
            return Err(UnitError::UnknownUnit {
                input: quote(text),
                unit: quote(unit),
                expected: "k, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti (powers of 1024)",
            });
        }
    };
    if value < 0.0 {
        return Err(UnitError::Negative { input: quote(text) });
    }
    let size = value * scale;
    // u64::MAX as f64 rounds up to 2^64, which does not fit: compare with `>=`.
    if !size.is_finite() || size >= u64::MAX as f64 {
        return Err(UnitError::TooLarge {
            input: quote(text),
            max: "16 EiB",
        });
    }
    Ok(size.round() as u64)
}

/// A duration: `1s`, `200ms`, `250us`, `2m`, `1h`, `1d`, or bare seconds (`0.2`); at most
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    const EXAMPLES: &str = "1s, 200ms, 2m";
    let text = text.trim();
    let (digits, unit) = split_number(text);
    let value = number(digits, "a duration", EXAMPLES).map_err(|_| UnitError::NotANumber {
        input: quote(text),
        kind: "a duration",
        examples: EXAMPLES,
    })?;
    let seconds_per_unit = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => {
            return Err(UnitError::UnknownUnit {
                input: quote(text),
                unit: quote(unit),
                expected: "ns, us, ms, s, m, h, d",
            });
        }
    };
    if value < 0.0 {
        return Err(UnitError::Negative { input: quote(text) });
    }
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || seconds > MAX_DURATION.as_secs_f64() {
        return Err(UnitError::TooLarge {
            input: quote(text),
            max: "100 years",
        });
    }
    Ok(Duration::from_secs_f64(seconds).min(MAX_DURATION))
}

/// A bit rate in bit/s, SI prefixes only: `9600`, `64k`, `1.5M`, `10G`, optionally followed by
/// `bit/s` or `bps`. Zero is refused (a rate of nothing paces forever).
pub fn parse_rate(text: &str) -> Result<u64, UnitError> {
    const EXAMPLES: &str = "9600, 64k, 1.5M, 10G";
    let text = text.trim();
    let (digits, unit) = split_number(text);
    let value = number(digits, "a bit rate", EXAMPLES).map_err(|_| UnitError::NotANumber {
        input: quote(text),
        kind: "a bit rate",
        examples: EXAMPLES,
    })?;
    let prefix = unit
        .strip_suffix("bit/s")
        .or_else(|| unit.strip_suffix("bps"))
        .unwrap_or(unit)
        .trim();
    // `m` is accepted as mega: a rate in millibits per second is never what was meant.
    let scale = match prefix {
        "" => 1.0,
        "k" | "K" => 1e3,
        "m" | "M" => 1e6,
        "g" | "G" => 1e9,
        "t" | "T" => 1e12,
        _ => {
            return Err(UnitError::UnknownUnit {
                input: quote(text),
                unit: quote(unit),
                expected: "k, M, G, T (bit/s, powers of 1000)",
            });
        }
    };
    if value < 0.0 {
        return Err(UnitError::Negative { input: quote(text) });
    }
    let rate = value * scale;
    if !rate.is_finite() || rate >= u64::MAX as f64 {
        return Err(UnitError::TooLarge {
            input: quote(text),
            max: "18 Ebit/s",
        });
    }
    let rate = rate.round() as u64;
    if rate == 0 {
        return Err(UnitError::OutOfRange {
            input: quote(text),
            range: "at least 1 bit/s",
        });
    }
    Ok(rate)
}

/// A probability such as a BER: `1e-6`, `0.001`, `0`, `1`.
pub fn parse_probability(text: &str) -> Result<f64, UnitError> {
    let value = number(text.trim(), "a number", "1e-6, 0.001")?;
    if !(0.0..=1.0).contains(&value) {
        return Err(UnitError::OutOfRange {
            input: quote(text.trim()),
            range: "between 0 and 1",
        });
    }
    Ok(value)
}

/// A confidence level, as a fraction (`0.95`) or a percentage (`95`, `99%`), strictly between
/// 0 and 1.
pub fn parse_confidence(text: &str) -> Result<f64, UnitError> {
    let trimmed = text.trim();
    let value = number(trimmed.trim_end_matches('%'), "a number", "0.95, 95, 99%")?;
    let value = if value > 1.0 || trimmed.ends_with('%') {
        value / 100.0
    } else {
        value
    };
    if !(value > 0.0 && value < 1.0) {
        return Err(UnitError::OutOfRange {
            input: quote(trimmed),
            range: "between 0 and 1 (or 0% and 100%), exclusive",
        });
    }
    Ok(value)
}

/// `start + after`, or the latest representable instant up to [`MAX_DURATION`] later: a
/// deadline never overflows, whatever duration reached it.
pub fn saturating_add(start: Instant, after: Duration) -> Instant {
    start
        .checked_add(after)
        .or_else(|| start.checked_add(MAX_DURATION))
        .unwrap_or(start)
}

/// The deadline `after` from now (see [`saturating_add`]).
pub fn deadline_after(after: Duration) -> Instant {
    saturating_add(Instant::now(), after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_si_and_binary() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(64_000));
        assert_eq!(parse_size("64K"), Ok(64_000));
        assert_eq!(parse_size("100M"), Ok(100_000_000));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("64Ki"), Ok(65_536));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("1e6"), Ok(1_000_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("1.5k"), Ok(1500));
        assert!(matches!(
            parse_size("lots"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_size("1X"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(parse_size("-5"), Err(UnitError::Negative { .. })));
        assert!(matches!(
            parse_size("1e30"),
            Err(UnitError::TooLarge { .. })
        ));
        assert!(parse_size("18446744073709551616").is_err());
    }

    #[test]
    fn durations_with_a_ceiling() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1e-3s"), Ok(Duration::from_millis(1)));
        assert_eq!(
            parse_duration("36500d"),
            Ok(Duration::from_secs(36_500 * 86_400))
        );
        assert!(matches!(
            parse_duration("-1s"),
            Err(UnitError::Negative { .. })
        ));
        assert!(matches!(
            parse_duration("fast"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_duration("3 parsecs"),
            Err(UnitError::UnknownUnit { .. })
        ));
        // The adversarial campaign's overflow: accepted before, then `Instant + d` panicked.
        for huge in [
            "10000000000000000000s",
            "5124095h",
            "101y",
            "36600d",
            "1e300",
            "inf",
        ] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
        assert!(matches!(
            parse_duration("10000000000000000000s"),
            Err(UnitError::TooLarge { .. })
        ));
    }

    #[test]
    fn rates_are_si_bits_per_second() {
        assert_eq!(parse_rate("9600"), Ok(9600));
        assert_eq!(parse_rate("64k"), Ok(64_000));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000));
        assert_eq!(parse_rate("1.5m"), Ok(1_500_000));
        assert_eq!(parse_rate("10G"), Ok(10_000_000_000));
        assert_eq!(parse_rate("2Mbit/s"), Ok(2_000_000));
        assert_eq!(parse_rate("2Mbps"), Ok(2_000_000));
        assert!(matches!(parse_rate("0"), Err(UnitError::OutOfRange { .. })));
        assert!(parse_rate("64Ki").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-1k").is_err());
    }

    #[test]
    fn probabilities_and_confidences() {
        assert_eq!(parse_probability("1e-6"), Ok(1e-6));
        assert_eq!(parse_probability("0"), Ok(0.0));
        assert_eq!(parse_probability("1"), Ok(1.0));
        assert!(matches!(
            parse_probability("1.5"),
            Err(UnitError::OutOfRange { .. })
        ));
        assert!(parse_probability("NaN").is_err());
        assert!(parse_probability("often").is_err());
        assert_eq!(parse_confidence("95"), Ok(0.95));
        assert_eq!(parse_confidence("0.99"), Ok(0.99));
        assert_eq!(parse_confidence("99%"), Ok(0.99));
        assert!(parse_confidence("100").is_err());
        assert!(parse_confidence("0").is_err());
    }

    #[test]
    fn errors_quote_long_inputs_shortened() {
        let long = "9".repeat(100_000) + "x";
        let message = parse_size(&long).unwrap_err().to_string();
        assert!(message.len() < 200, "{}", message.len());
    }

    #[test]
    fn deadlines_saturate() {
        let now = Instant::now();
        assert_eq!(
            saturating_add(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        let far = saturating_add(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(365 * 86_400));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC{0,24}") {
            let _ = parse_size(&text);
            let _ = parse_duration(&text);
            let _ = parse_rate(&text);
            let _ = parse_probability(&text);
            let _ = parse_confidence(&text);
        }

        #[test]
        fn whole_seconds_read_back(seconds in 0u64..(100 * 365 * 86_400)) {
            prop_assert_eq!(parse_duration(&format!("{seconds}s")), Ok(Duration::from_secs(seconds)));
        }

        #[test]
        fn binary_sizes_are_exact(value in 0u64..1_000_000, shift in 0usize..3) {
            let (suffix, factor) = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)][shift];
            prop_assert_eq!(parse_size(&format!("{value}{suffix}")), Ok(value * factor));
        }
    }
}
