//! Word-parallel pattern generation.
//!
//! Facts (polynomials, polarity, QRSS zero suppression) from ITU-T O.150.
//!
//! # Bit streams and words
//!
//! Internally every pattern is a *plain* bit stream `b[t]` (before inversion and before the
//! bit order of bytes is applied), packed 64 bits to a word with `b[64w + i]` in bit `i` of word
//! `w`. Word indices are global (`i64`, they may be negative for the history behind the start).
//! The emitted byte stream is the plain stream complemented when the spec is inverted, with each
//! byte carrying its 8 bits least-significant bit first (bit 0 = earlier bit) or, with
//! [`BitOrder::MsbFirst`], most-significant bit first.
//!
//! # Pseudo-random patterns
//!
//! A two-tap LFSR `x^n + x^k + 1` produces `b[t] = b[t-k] ^ b[t-n]`; the time-reversed sequence
//! satisfies `b[t] = b[t-(n-k)] ^ b[t-n]`. Either way we write the recurrence as
//! `b[t] = b[t-a] ^ b[t-n]` with `0 < a < n`. Squaring the characteristic polynomial over GF(2)
//! gives `b[t] = b[t-2a] ^ b[t-2n]`; after six squarings both taps are whole words
//! (`W[i] = W[i-a] ^ W[i-n]` on 64-bit words), and after a few more the near tap lies at least
//! `MIN_NEAR_WORDS` (32) words back, so a block of words is one XOR of two earlier stretches of
//! words (which the compiler vectorises), with no bit-serial loop.
//!
//! **Start phase.** O.150 fixes the start only for 2^9-1. We start every LFSR sequence (forward
//! or reversed) with its run of `n` ones, i.e. an all-ones register shifted out first — the
//! usual choice of test sets. A checker never depends on the phase.
//!
//! **QRSS** (O.150 5.5): the plain LFSR stream `s` of `x^20 + x^17 + 1`, with the output bit
//! forced to one whenever the *next* 14 bits of `s` are all zero, so the output never has more
//! than 14 zeros in a row. `reverse` emits the exact time reversal of that output: the reversed
//! LFSR (`x^20 + x^3 + 1` recurrence) with the suppression looking *back* 14 bits. `invert`
//! complements the output after suppression (so inverted QRSS never has more than 14 ones in a
//! row). Standard polarity is not inverted (as O.150 and Xilinx; SpanDSP inverts).
//!
//! # Fixed patterns
//!
//! A fixed pattern is one period written in time order (`1in8` = `01000000`, `2in8` =
//! `01000010`, `3in24` = `010001000000000000000100`, `alt` = `10`), repeated. `reverse` reverses
//! the period (for every named fixed pattern that is only a rotation of the original). A `hex:`
//! word is its bytes in order, each byte's bits taken in the configured bit order, so the
//! emitted buffer holds the user's bytes verbatim (complemented when inverted).

use crate::simd::Isa;
use crate::spec::{BitOrder, PatternKind, PatternSpec};

/// The polynomial is squared until the near tap lies at least this many *words* back (and at
/// least 6 times, so both taps are whole words): a block of that many words then depends only
/// on words already written, and each word is one XOR of two earlier words.
const MIN_NEAR_WORDS: u64 = 32;
/// Words generated per refill of the LFSR buffer (8 KiB: stays in L1 together with history).
const CHUNK_WORDS: usize = 1024;
/// Words a checker in sync checks by the recurrence alone before it looks at the result.
const FAST_CHECK_WORDS: usize = 2048;
/// Words kept behind the requested range, so a checker can look back after a slip.
pub(crate) const RETAIN_WORDS: usize = 64;

/// The plain m-sequence of `b[t] = b[t-a] ^ b[t-n]`, generated a block of words at a time.
#[derive(Debug, Clone)]
pub(crate) struct Lfsr {
    n: u32,
    /// Word distances of the squared recurrence `W[i] = W[i - near] ^ W[i - far]`.
    near: usize,
    far: usize,
    /// Words of history the squared recurrence reads behind the word being generated.
    history: usize,
    /// `buf` is allocated (and zeroed) once at its full size; `filled` words of it are valid.
    buf: Vec<u64>,
    filled: usize,
    /// Global index of `buf[0]`.
    base: i64,
    /// The instruction set of the word kernels.
    isa: Isa,
}

impl Lfsr {
    /// Recurrence `b[t] = b[t-a] ^ b[t-n]` (0 < a < n <= 63).
    fn empty(n: u32, a: u32, isa: Isa) -> Self {
        // After 6 squarings b[t] = b[t - 64a] ^ b[t - 64n]: whole words, W[i] = W[i-a] ^ W[i-n]
        // (p(x)^64 = p(x^64) over GF(2)). Square further until the near tap is far enough.
        let mut near = u64::from(a);
        let mut far = u64::from(n);
        while near < MIN_NEAR_WORDS {
            near *= 2;
            far *= 2;
        }
        let history = far as usize;
        // Room for a request of CHUNK_WORDS + 2 words (QRSS reads one word either side) plus
        // the retained words behind it, or plus the history generation reads.
        let cap = CHUNK_WORDS + 8 + history + RETAIN_WORDS;
        Lfsr {
            n,
            near: near as usize,
            far: history,
            history,
            buf: vec![0; cap],
            filled: 0,
            base: 0,
            isa,
        }
    }

    /// The sequence whose bits at global positions `end - known.len() .. end` are `known`
    /// (oldest first). At least `n` bits are needed; only the last `n` are used (the recurrence
    /// determines the rest, backwards and forwards).
    pub(crate) fn from_known(n: u32, a: u32, end: i64, known: &[bool], isa: Isa) -> Self {
        let mut lfsr = Lfsr::empty(n, a, isa);
        let n_us = n as usize;
        let a_us = a as usize;
        let seed = &known[known.len().saturating_sub(n_us)..];
        // Words: history behind the word holding `end`, through that word.
        let current = end.div_euclid(64);
        let first_word = current - lfsr.history as i64 - 1;
        let start_bit = first_word * 64;
        let total = ((current + 1 - first_word) * 64) as usize;
        let mut bits = vec![false; total];
        let seed_at = (end - start_bit) as usize - seed.len();
        bits[seed_at..seed_at + seed.len()].copy_from_slice(seed);
        if seed.len() == n_us {
            // Backwards: b[j] = b[j+n] ^ b[j+n-a].
            for j in (0..seed_at).rev() {
                bits[j] = bits[j + n_us] ^ bits[j + n_us - a_us];
            }
            // Forwards: b[j] = b[j-a] ^ b[j-n].
            for j in seed_at + n_us..total {
                bits[j] = bits[j - a_us] ^ bits[j - n_us];
            }
        }
        lfsr.base = first_word;
        for (slot, chunk) in lfsr.buf.iter_mut().zip(bits.chunks(64)) {
            *slot = chunk
                .iter()
                .enumerate()
                .fold(0u64, |w, (i, &bit)| w | (u64::from(bit) << i));
        }
        lfsr.filled = total / 64;
        lfsr
    }

    pub(crate) fn order(&self) -> u32 {
        self.n
    }

    /// Global index one past the last generated word.
    fn end(&self) -> i64 {
        self.base + self.filled as i64
    }

    /// Makes words `from..to` available; `to - from <= CHUNK_WORDS + 2` and
    /// `base <= from <= end()`.
    fn ensure(&mut self, from: i64, to: i64) {
        while self.end() < to {
            if self.filled >= self.buf.len() {
                self.make_room(from);
            }
            let room = self.buf.len() - self.filled;
            let want = (to - self.end()) as usize;
            self.generate(room.min(want));
        }
    }

    /// Drops old words, keeping those from `from - RETAIN_WORDS` on and the history.
    fn make_room(&mut self, from: i64) {
        let end = self.end();
        let keep_from = (from - RETAIN_WORDS as i64)
            .min(end - self.history as i64 - 1)
            .max(self.base);
        let mut drop = (keep_from - self.base) as usize;
        if drop == 0 {
            // Caller asked for more than fits: keep only what generation needs.
            drop = self.filled - self.history - 1;
        }
        self.buf.copy_within(drop..self.filled, 0);
        self.filled -= drop;
        self.base += drop as i64;
    }

    /// Compares received words (little-endian bytes in wire order) with the sequence from word
    /// `first` on, generating the reference in the same pass. `mask` is the complement mask.
    /// Calls `on_error(offset, error_word)` for every word with a wrong bit; stops when it
    /// returns false. Returns how many words were compared (the one refused is not counted).
    pub(crate) fn compare<const MSB_FIRST: bool>(
        &mut self,
        first: i64,
        received: &[[u8; 8]],
        mask: u64,
        mut on_error: impl FnMut(usize, u64) -> bool,
    ) -> usize {
        let wire = |bytes: [u8; 8]| {
            let word = u64::from_le_bytes(bytes);
            if MSB_FIRST {
                word.reverse_bits().swap_bytes()
            } else {
                word
            }
        };
        let (near, far) = (self.near, self.far);
        let mut done = 0usize;
        // Received words just before `done` that equalled the reference, and whether the
        // LFSR's buffer lags behind `done` (after the received words were checked by the
        // recurrence alone).
        let mut clean_run = 0usize;
        let mut lagging = false;
        while done < received.len() {
            let from = first + done as i64;
            if clean_run >= far {
                // The last `far` received words equal the reference, so a received word equals
                // it exactly when it obeys the recurrence over the received words themselves:
                // W[i] = W[i-near] ^ W[i-far] ^ mask (in wire form, see `fill_in_place`). That
                // reads the buffer once and writes nothing, cheaper than memcpy; the reference
                // is generated only around errors.
                let step = (received.len() - done).min(FAST_CHECK_WORDS);
                let any = self.isa.xor3_any(
                    &received[done..done + step],
                    &received[done - near..done - near + step],
                    &received[done - far..done - far + step],
                    mask,
                );
                if any == 0 {
                    done += step;
                    clean_run += step;
                    lagging = true;
                    continue;
                }
                // An error in this stretch: compare it word by word against the reference.
                clean_run = 0;
            }
            if lagging {
                self.resync::<MSB_FIRST>(from, &received[..done], mask);
                lagging = false;
            }
            if from < self.base {
                // Not held any more (never the case in sequential use): nothing to compare.
                return done;
            }
            if from < self.end() {
                // Already generated (by single-word look-ups): compare from the buffer.
                let at = (from - self.base) as usize;
                let count = (self.filled - at).min(received.len() - done);
                let got = &received[done..done + count];
                let reference = &self.buf[at..at + count];
                if let Err(refused) = report_errors(
                    got,
                    reference,
                    mask,
                    done,
                    wire,
                    &mut clean_run,
                    &mut on_error,
                ) {
                    return refused;
                }
                done += count;
                continue;
            }
            while self.end() < from {
                let to = from.min(self.end() + CHUNK_WORDS as i64);
                self.ensure(self.end(), to);
            }
            if self.buf.len() - self.filled < near {
                self.make_room(from);
            }
            // One block: generate and compare in the same pass.
            let start = self.filled;
            let step = near.min(received.len() - done).min(self.buf.len() - start);
            let (history, fresh) = self.buf.split_at_mut(start);
            let near_src = &history[start - near..start - near + step];
            let far_src = &history[start - far..start - far + step];
            let got = &received[done..done + step];
            let any =
                self.isa
                    .xor2_compare(&mut fresh[..step], near_src, far_src, got, mask, MSB_FIRST);
            self.filled += step;
            if any != 0 {
                if let Err(refused) = report_errors(
                    got,
                    &fresh[..step],
                    mask,
                    done,
                    wire,
                    &mut clean_run,
                    &mut on_error,
                ) {
                    return refused;
                }
            } else {
                clean_run += step;
            }
            done += step;
        }
        if lagging {
            self.resync::<MSB_FIRST>(first + done as i64, &received[..done], mask);
        }
        done
    }

    /// Restarts the LFSR from the last received words, which equal the reference (`end` is
    /// the global index one past the last of them; at least `history + 1` are given).
    fn resync<const MSB_FIRST: bool>(&mut self, end: i64, received: &[[u8; 8]], mask: u64) {
        let keep = (self.history + 1)
            .max(RETAIN_WORDS)
            .min(received.len())
            .min(self.buf.len());
        let tail = &received[received.len() - keep..];
        for (slot, bytes) in self.buf.iter_mut().zip(tail) {
            let word = u64::from_le_bytes(*bytes);
            let plain = if MSB_FIRST {
                word.reverse_bits().swap_bytes()
            } else {
                word
            };
            *slot = plain ^ mask;
        }
        self.filled = keep;
        self.base = end - keep as i64;
    }

    /// Appends `count` words (there is room).
    fn generate(&mut self, count: usize) {
        let (near, far) = (self.near, self.far);
        let mut start = self.filled;
        let end = start + count;
        while start < end {
            // A block no longer than the near tap reads only words before it.
            let step = (end - start).min(near);
            let (done, rest) = self.buf.split_at_mut(start);
            let near_src = &done[start - near..start - near + step];
            let far_src = &done[start - far..start - far + step];
            self.isa.xor2(&mut rest[..step], near_src, far_src);
            start += step;
        }
        self.filled = end;
    }

    /// Restarts from known words: `words` are the plain words `first..first + words.len()`
    /// (at least `history + 1` of them, at most the buffer size; only the last `history + 1`
    /// are kept).
    fn restart_from(&mut self, first: i64, words: impl ExactSizeIterator<Item = u64>) {
        let total = words.len();
        let keep = (self.history + 1).min(total);
        let skip = total - keep;
        for (slot, word) in self.buf.iter_mut().zip(words.skip(skip)) {
            *slot = word;
        }
        self.filled = keep;
        self.base = first + skip as i64;
    }

    /// Words `from..from + count` (`count <= CHUNK_WORDS`).
    pub(crate) fn words(&mut self, from: i64, count: usize) -> &[u64] {
        let to = from + count as i64;
        self.ensure(from, to);
        let at = (from - self.base).max(0) as usize;
        let stop = (at + count).min(self.filled);
        &self.buf[at.min(stop)..stop]
    }
}

/// One period of a fixed pattern, as 64-bit words starting at every phase.
#[derive(Debug, Clone)]
pub(crate) struct Periodic {
    period: usize,
    /// `at_phase[q]` = the 64 bits starting at phase `q`.
    at_phase: Vec<u64>,
    /// Phase of bit 0 of word 0.
    phase0: usize,
}

impl Periodic {
    pub(crate) fn new(bits: &[bool], phase0: usize) -> Self {
        let period = bits.len().max(1);
        let at_phase = (0..period)
            .map(|q| {
                (0..64).fold(0u64, |w, i| {
                    w | (u64::from(bits.get((q + i) % period).copied().unwrap_or(false)) << i)
                })
            })
            .collect();
        Periodic {
            period,
            at_phase,
            phase0: phase0 % period,
        }
    }

    pub(crate) fn period(&self) -> usize {
        self.period
    }

    /// The 64 bits starting at phase `q`.
    pub(crate) fn at_phase(&self, q: usize) -> u64 {
        self.at_phase[q % self.period]
    }

    pub(crate) fn phase_of_word(&self, w: i64) -> usize {
        let p = self.period as i64;
        ((w.rem_euclid(p) * 64 + self.phase0 as i64).rem_euclid(p)) as usize
    }

    fn fill(&self, from: i64, out: &mut [u64]) {
        let mut q = self.phase_of_word(from);
        let step = 64 % self.period;
        for slot in out {
            *slot = self.at_phase[q];
            q += step;
            if q >= self.period {
                q -= self.period;
            }
        }
    }
}

/// The time-order bits of one period of a fixed pattern (plain, before inversion), or `None`
/// for pseudo-random kinds.
pub(crate) fn fixed_period(kind: &PatternKind, order: BitOrder) -> Option<Vec<bool>> {
    let from_text = |text: &str| -> Vec<bool> {
        text.bytes()
            .filter(|c| *c == b'0' || *c == b'1')
            .map(|c| c == b'1')
            .collect()
    };
    Some(match kind {
        PatternKind::Ones => vec![true],
        PatternKind::Zeros => vec![false],
        PatternKind::Alt => from_text("10"),
        PatternKind::OneIn8 => from_text("01000000"),
        PatternKind::TwoIn8 => from_text("01000010"),
        PatternKind::ThreeIn24 => from_text("0100 0100 0000 0000 0000 0100"),
        PatternKind::Hex(bytes) => {
            let mut bits = Vec::with_capacity(bytes.len() * 8);
            for byte in bytes {
                for i in 0..8 {
                    let bit = match order {
                        BitOrder::LsbFirst => i,
                        BitOrder::MsbFirst => 7 - i,
                    };
                    bits.push(byte >> bit & 1 == 1);
                }
            }
            if bits.is_empty() {
                bits.push(false);
            }
            bits
        }
        _ => return None,
    })
}

/// `(n, a)` of the plain recurrence `b[t] = b[t-a] ^ b[t-n]` a spec's LFSR follows.
pub(crate) fn recurrence(kind: &PatternKind, reverse: bool) -> Option<(u32, u32)> {
    let (n, k) = kind.polynomial()?;
    Some(if reverse { (n, n - k) } else { (n, k) })
}

/// QRSS zero suppression: force a one where the next (forward) or previous (reversed) 14 bits
/// of the LFSR stream are all zero. Words `prev`, `cur`, `next` are consecutive LFSR words.
#[inline]
pub(crate) fn qrss_word(prev: u64, cur: u64, next: u64, reverse: bool) -> u64 {
    if reverse {
        let x = !((u128::from(cur) << 64) | u128::from(prev));
        let b1 = x << 1;
        let b2 = b1 & (b1 << 1);
        let b4 = b2 & (b2 << 2);
        let b8 = b4 & (b4 << 4);
        let zeros_behind = b8 & (b4 << 8) & (b2 << 12);
        cur | (zeros_behind >> 64) as u64
    } else {
        let x = !((u128::from(next) << 64) | u128::from(cur));
        let a1 = x >> 1;
        let a2 = a1 & (a1 >> 1);
        let a4 = a2 & (a2 >> 2);
        let a8 = a4 & (a4 >> 4);
        let zeros_ahead = a8 & (a4 >> 8) & (a2 >> 12);
        cur | zeros_ahead as u64
    }
}

/// Produces the plain words of any pattern at a chosen alignment: the generator's source and
/// the checker's reference.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Prbs(Lfsr),
    Qrss { lfsr: Lfsr, reverse: bool },
    Periodic(Periodic),
}

impl Source {
    /// The source of `spec` in its documented start phase (stream bit 0 = global bit 0).
    pub(crate) fn start(spec: &PatternSpec, isa: Isa) -> Self {
        if let Some((n, a)) = recurrence(&spec.kind, spec.reverse) {
            let ones = vec![true; n as usize];
            let lfsr = Lfsr::from_known(n, a, n as i64, &ones, isa);
            if spec.kind == PatternKind::Qrss {
                Source::Qrss {
                    lfsr,
                    reverse: spec.reverse,
                }
            } else {
                Source::Prbs(lfsr)
            }
        } else {
            let mut bits = fixed_period(&spec.kind, spec.bit_order).unwrap_or_else(|| vec![false]);
            if spec.reverse {
                bits.reverse();
            }
            Source::Periodic(Periodic::new(&bits, 0))
        }
    }

    /// Plain words `from..from + out.len()` (at most `CHUNK_WORDS`), returned either from the
    /// LFSR's own buffer or written into `scratch`.
    pub(crate) fn words<'a>(&'a mut self, from: i64, scratch: &'a mut [u64]) -> &'a [u64] {
        let count = scratch.len().min(CHUNK_WORDS);
        match self {
            Source::Prbs(lfsr) => lfsr.words(from, count),
            Source::Qrss { lfsr, reverse } => {
                let s = lfsr.words(from - 1, count + 2);
                for (i, slot) in scratch[..count].iter_mut().enumerate() {
                    let (prev, cur, next) = (
                        s.get(i).copied().unwrap_or(0),
                        s.get(i + 1).copied().unwrap_or(0),
                        s.get(i + 2).copied().unwrap_or(0),
                    );
                    *slot = qrss_word(prev, cur, next, *reverse);
                }
                &scratch[..count]
            }
            Source::Periodic(periodic) => {
                periodic.fill(from, &mut scratch[..count]);
                &scratch[..count]
            }
        }
    }

    pub(crate) fn word(&mut self, w: i64) -> u64 {
        let mut one = [0u64; 1];
        self.words(w, &mut one).first().copied().unwrap_or(0)
    }
}

/// Per-word output transform: complement, then bit order within each byte.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wire {
    pub(crate) invert_mask: u64,
    pub(crate) msb_first: bool,
}

impl Wire {
    pub(crate) fn new(inverted: bool, order: BitOrder) -> Self {
        Wire {
            invert_mask: if inverted { u64::MAX } else { 0 },
            msb_first: order == BitOrder::MsbFirst,
        }
    }

    /// Plain word to the little-endian word of wire bytes, and back (the transform is its own
    /// inverse).
    #[inline(always)]
    pub(crate) fn apply(self, word: u64) -> u64 {
        let word = word ^ self.invert_mask;
        if self.msb_first {
            word.reverse_bits().swap_bytes()
        } else {
            word
        }
    }
}

/// Continues a PRBS in the output buffer itself. The wire words `Q = R(P ^ m)` (complement
/// mask `m`, bit order `R`, both linear and `R(m) = m`) obey `Q[i] = Q[i-near] ^ Q[i-far] ^ m`
/// whenever the plain words obey `P[i] = P[i-near] ^ P[i-far]`, so after `far` primed words the
/// rest needs no transform. Afterwards the LFSR restarts from the last words written.
fn fill_in_place(all: &mut [[u8; 8]], primed: usize, first: i64, lfsr: &mut Lfsr, wire: Wire) {
    let (near, far) = (lfsr.near, lfsr.far);
    let mask = wire.invert_mask;
    let total = all.len();
    let mut start = primed;
    while start < total {
        let step = (total - start).min(near);
        let (done, fresh) = all.split_at_mut(start);
        let near_src = &done[start - near..start - near + step];
        let far_src = &done[start - far..start - far + step];
        lfsr.isa
            .xor2_bytes(&mut fresh[..step], near_src, far_src, mask);
        start += step;
    }
    // The transform is its own inverse: recover the plain words for the LFSR's history.
    let keep = (lfsr.history + 1).min(total);
    let tail = &all[total - keep..];
    lfsr.restart_from(
        first + (total - keep) as i64,
        tail.iter()
            .map(|bytes| wire.apply(u64::from_le_bytes(*bytes))),
    );
}

/// Emits a pattern as bytes, continuing where the last call stopped.
pub struct Generator {
    spec: PatternSpec,
    source: Source,
    wire: Wire,
    /// Global index of the next word to produce.
    next_word: i64,
    /// Bytes of the last produced word not yet handed out (`pending[8 - pending_len..]`).
    pending: [u8; 8],
    pending_len: usize,
    scratch: Vec<u64>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("spec", &self.spec)
            .field("next_word", &self.next_word)
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// A generator at the start of the pattern `spec` names; its PRBS kernels use the best
    /// instruction set this CPU has.
    pub fn new(spec: &PatternSpec) -> Self {
        Generator::with_isa(spec, Isa::detect())
    }

    /// A generator whose PRBS kernels use `isa` (the portable set if this CPU lacks it); the
    /// output is the same bytes whichever is used.
    pub fn with_isa(spec: &PatternSpec, isa: Isa) -> Self {
        let isa = if isa.available() { isa } else { Isa::Portable };
        Generator {
            spec: spec.clone(),
            source: Source::start(spec, isa),
            wire: Wire::new(spec.inverted(), spec.bit_order),
            next_word: 0,
            pending: [0; 8],
            pending_len: 0,
            scratch: vec![0; CHUNK_WORDS],
        }
    }

    /// The pattern it emits.
    pub fn spec(&self) -> &PatternSpec {
        &self.spec
    }

    /// Fills `buf` with the next `buf.len()` bytes of the pattern.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut out = buf;
        if self.pending_len > 0 {
            let take = self.pending_len.min(out.len());
            let from = 8 - self.pending_len;
            out[..take].copy_from_slice(&self.pending[from..from + take]);
            self.pending_len -= take;
            out = &mut out[take..];
        }
        let whole = out.len() / 8;
        let (body, tail) = out.split_at_mut(whole * 8);
        let wire = self.wire;
        let (body_words, _) = body.as_chunks_mut::<8>();
        // Large PRBS fills run the recurrence in the output itself (see `fill_in_place`): the
        // words are primed from the LFSR, the rest is one XOR per word.
        let in_place = match &self.source {
            Source::Prbs(lfsr) => whole >= 4 * lfsr.far,
            _ => false,
        };
        let prime = if in_place {
            match &self.source {
                Source::Prbs(lfsr) => lfsr.far,
                _ => whole,
            }
        } else {
            whole
        };
        let first = self.next_word;
        let mut body_chunks = body_words[..prime].iter_mut();
        let mut left = prime;
        while left > 0 {
            let count = left.min(CHUNK_WORDS);
            let words = self
                .source
                .words(self.next_word, &mut self.scratch[..count]);
            // `words` first: zip must not pull (and lose) a chunk once `words` is exhausted.
            let mask = wire.invert_mask;
            if wire.msb_first {
                for (&word, bytes) in words.iter().zip(&mut body_chunks) {
                    *bytes = (word ^ mask).reverse_bits().swap_bytes().to_le_bytes();
                }
            } else {
                for (&word, bytes) in words.iter().zip(&mut body_chunks) {
                    *bytes = (word ^ mask).to_le_bytes();
                }
            }
            self.next_word += count as i64;
            left -= count;
        }
        if in_place && let Source::Prbs(lfsr) = &mut self.source {
            fill_in_place(body_words, prime, first, lfsr, wire);
            self.next_word += (whole - prime) as i64;
        }
        if !tail.is_empty() {
            let word = self.source.word(self.next_word);
            self.next_word += 1;
            self.pending = wire.apply(word).to_le_bytes();
            tail.copy_from_slice(&self.pending[..tail.len()]);
            self.pending_len = 8 - tail.len();
        }
    }
}

/// Compares received words (`got`, as `wire` reads them) with the `reference` word by word,
/// hands each difference to `on_error` at its index (`offset` + position) and keeps
/// `clean_run`, the count of equal words just before the next one. `Err(index)`: `on_error`
/// refused the word at `index`.
#[inline(always)]
fn report_errors(
    got: &[[u8; 8]],
    reference: &[u64],
    mask: u64,
    offset: usize,
    wire: impl Fn([u8; 8]) -> u64,
    clean_run: &mut usize,
    on_error: &mut impl FnMut(usize, u64) -> bool,
) -> Result<(), usize> {
    for (k, (word, expected)) in got.iter().zip(reference).enumerate() {
        let errors = wire(*word) ^ expected ^ mask;
        if errors != 0 {
            if !on_error(offset + k, errors) {
                return Err(offset + k);
            }
            *clean_run = 0;
        } else {
            *clean_run += 1;
        }
    }
    Ok(())
}
