//! Independent bit-serial references for the tests: a textbook Fibonacci LFSR (one bit per
//! step, register in a u64), the QRSS suppression applied by its definition, and fixed patterns
//! from their written form. Nothing here uses the production generator.

#![allow(dead_code)]

use loopscope_pattern::{BitOrder, PatternKind, PatternSpec};

/// `(n, k)` of x^n + x^k + 1 as ITU-T O.150 lists them (written out again here on purpose).
pub(crate) fn taps(kind: &PatternKind) -> Option<(u32, u32)> {
    Some(match kind {
        PatternKind::Prbs7 => (7, 6),
        PatternKind::Prbs9 => (9, 5),
        PatternKind::Prbs11 => (11, 9),
        PatternKind::Prbs15 => (15, 14),
        PatternKind::Prbs20 => (20, 3),
        PatternKind::Qrss => (20, 17),
        PatternKind::Prbs23 => (23, 18),
        PatternKind::Prbs29 => (29, 27),
        PatternKind::Prbs31 => (31, 28),
        _ => return None,
    })
}

/// O.150 polarity: inverted for 2^15-1, 2^23-1, 2^29-1, 2^31-1.
pub(crate) fn o150_inverted(kind: &PatternKind) -> bool {
    matches!(
        kind,
        PatternKind::Prbs15 | PatternKind::Prbs23 | PatternKind::Prbs29 | PatternKind::Prbs31
    )
}

/// `len` bits of the plain forward LFSR sequence: the register starts all ones and is
/// shifted out first, then each new bit is b[t-k] ^ b[t-n].
pub(crate) fn lfsr_bits(n: u32, k: u32, len: usize) -> Vec<bool> {
    // reg bit j holds b[t-1-j].
    let mut reg: u64 = (1u64 << n) - 1;
    let mut out = Vec::with_capacity(len);
    // The first n bits are the register content, oldest first.
    for j in (0..n).rev() {
        if out.len() == len {
            return out;
        }
        out.push(reg >> j & 1 == 1);
    }
    while out.len() < len {
        let bit = (reg >> (k - 1) ^ reg >> (n - 1)) & 1;
        reg = (reg << 1 | bit) & ((1u64 << n) - 1);
        out.push(bit == 1);
    }
    out
}

/// One full period of forward QRSS: output forced to one when the next 14 LFSR bits
/// (cyclically) are all zero.
pub(crate) fn qrss_period() -> Vec<bool> {
    let period = (1usize << 20) - 1;
    let s = lfsr_bits(20, 17, period);
    (0..period)
        .map(|t| s[t] || (1..=14).all(|i| !s[(t + i) % period]))
        .collect()
}

/// The plain (un-inverted) forward sequence of a pseudo-random pattern, `len` bits (cyclic
/// repetition of one period for QRSS).
pub(crate) fn plain_forward(kind: &PatternKind, len: usize) -> Vec<bool> {
    if *kind == PatternKind::Qrss {
        let period = qrss_period();
        return (0..len).map(|t| period[t % period.len()]).collect();
    }
    let (n, k) = taps(kind).expect("pseudo-random");
    lfsr_bits(n, k, len)
}

/// One period of a fixed pattern in time order, as written.
pub(crate) fn fixed_bits(kind: &PatternKind, order: BitOrder) -> Vec<bool> {
    let text = match kind {
        PatternKind::Ones => "1",
        PatternKind::Zeros => "0",
        PatternKind::Alt => "10",
        PatternKind::OneIn8 => "01000000",
        PatternKind::TwoIn8 => "01000010",
        PatternKind::ThreeIn24 => "010001000000000000000100",
        PatternKind::Hex(bytes) => {
            return bytes
                .iter()
                .flat_map(|b| {
                    (0..8).map(move |i| match order {
                        BitOrder::LsbFirst => b >> i & 1 == 1,
                        BitOrder::MsbFirst => b >> (7 - i) & 1 == 1,
                    })
                })
                .collect();
        }
        _ => panic!("not fixed"),
    };
    text.bytes().map(|c| c == b'1').collect()
}

/// The plain stream of a pseudo-random kind, forward or reversed, `len` bits.
///
/// Reversed is the forward stream read backwards, positioned so the run of n ones comes first:
/// rev[t] = fwd[(n - 1 - t) mod period]. Up to order 23 (and QRSS) that is done literally on a
/// whole period; for 29 and 31 the forward register is stepped backwards from its start
/// (b[j] = b[j+n] ^ b[j+n-k], solving the forward recurrence for its oldest bit).
pub(crate) fn plain_stream(kind: &PatternKind, reverse: bool, len: usize) -> Vec<bool> {
    let (n, k) = taps(kind).expect("pseudo-random");
    if !reverse {
        return plain_forward(kind, len);
    }
    if n <= 23 {
        let period = (1usize << n) - 1;
        let fwd = plain_forward(kind, period);
        return (0..len)
            .map(|t| fwd[((n as i64 - 1 - t as i64).rem_euclid(period as i64)) as usize])
            .collect();
    }
    let (n, k) = (n as usize, k as usize);
    // r[t] = b[n - 1 - t]; b[j] = b[j + n] ^ b[j + n - k] becomes r[t] = r[t - n] ^ r[t - n + k].
    let mut r = vec![true; n.min(len)];
    while r.len() < len {
        let t = r.len();
        r.push(r[t - n] ^ r[t - n + k]);
    }
    r
}

/// The first `len` bits a spec emits (time order), by the reference. `plain` optionally gives
/// the precomputed plain stream of a pseudo-random spec (at least `len` bits).
pub(crate) fn reference_bits_from(
    spec: &PatternSpec,
    len: usize,
    plain: Option<&[bool]>,
) -> Vec<bool> {
    let inverted = spec.invert.unwrap_or_else(|| o150_inverted(&spec.kind));
    let plain: Vec<bool> = if taps(&spec.kind).is_some() {
        match plain {
            Some(bits) => bits[..len].to_vec(),
            None => plain_stream(&spec.kind, spec.reverse, len),
        }
    } else {
        let mut period = fixed_bits(&spec.kind, spec.bit_order);
        if spec.reverse {
            period.reverse();
        }
        (0..len).map(|t| period[t % period.len()]).collect()
    };
    plain.into_iter().map(|b| b ^ inverted).collect()
}

pub(crate) fn reference_bits(spec: &PatternSpec, len: usize) -> Vec<bool> {
    reference_bits_from(spec, len, None)
}

/// Packs time-order bits into bytes in a bit order (len must be a multiple of 8).
pub(crate) fn pack(bits: &[bool], order: BitOrder) -> Vec<u8> {
    bits.chunks(8)
        .map(|chunk| {
            chunk.iter().enumerate().fold(0u8, |byte, (i, &bit)| {
                let at = match order {
                    BitOrder::LsbFirst => i,
                    BitOrder::MsbFirst => 7 - i,
                };
                byte | (u8::from(bit) << at)
            })
        })
        .collect()
}

pub(crate) fn spec(
    kind: PatternKind,
    invert: Option<bool>,
    reverse: bool,
    order: BitOrder,
) -> PatternSpec {
    PatternSpec {
        kind,
        invert,
        reverse,
        bit_order: order,
    }
}

/// Every pseudo-random kind.
pub(crate) fn prbs_kinds() -> Vec<PatternKind> {
    PatternKind::NAMED
        .iter()
        .filter(|k| k.is_pseudo_random())
        .cloned()
        .collect()
}

/// Every fixed kind, plus two user words.
pub(crate) fn fixed_kinds() -> Vec<PatternKind> {
    let mut kinds: Vec<PatternKind> = PatternKind::NAMED
        .iter()
        .filter(|k| !k.is_pseudo_random())
        .cloned()
        .collect();
    kinds.push(PatternKind::Hex(vec![0xDE, 0xAD, 0xBE, 0xEF]));
    kinds.push(PatternKind::Hex(
        (0u8..64).map(|i| i.wrapping_mul(37)).collect(),
    ));
    kinds
}
