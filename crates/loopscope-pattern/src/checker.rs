//! The self-synchronising checker.
//!
//! # How it locks (thresholds)
//!
//! Received bytes are turned into 64-bit words of the bit stream (the configured bit order
//! undone). The checker is in one of four states:
//!
//! - **Hunting.** For a pseudo-random pattern with recurrence `b[t] = b[t-a] ^ b[t-n]` it predicts
//!   every bit from the *received* bits `n` and `a` back (word-parallel: `r ^ (r << a) ^ (r << n)`),
//!   like SpanDSP's bert.c. After [`hunt_bits`] consecutive correct predictions (at least 32,
//!   and `2n` for long registers: 62 for prbs31, against SpanDSP's 28..56) the last `n` bits seed
//!   a reference register. A fixed pattern of period `P` bits is hunted by `r[t] == r[t-P]` over
//!   `P + 64` bits, then its phase is found by matching the last 64 bits. Bits received while
//!   hunting count as `unsynced_bits`.
//! - **Confirming.** The seeded reference runs free (it no longer looks at received bits, so a
//!   line error counts once, not once per tap) over [`CONFIRM_BITS`] bits; at most
//!   [`CONFIRM_MAX_ERRORS`] errors (12.5%) confirm sync, and those bits and errors count. Otherwise
//!   the bits are unsynced and hunting resumes.
//! - **Synced.** Received bits are compared with the free-running reference. A segment of at
//!   least 4 bits with 25% or more errors (16 of a 64-bit word; osmocom's E1 tester declares loss
//!   at 25% per buffer) is *suspect*: the checker keeps comparing against the old reference
//!   provisionally and hunts again.
//! - **Recovering.** When the hunt locks again, the new phase is compared with the old
//!   reference: if the last received bits match the old reference shifted by `d` bits,
//!   `0 < |d| <=` [`MAX_INSERTED_BITS`] back or `<=` [`MAX_DELETED_BITS`] ahead, it was a
//!   **slip**: `slips += 1`, `deleted_bits += d` (or `inserted_bits += -d`), and the provisional
//!   bits since the suspect segment count as unsynced, not as errors (so a slip costs at most the
//!   errors of the segment before the suspect one: bounded, not thousands). If `d == 0` it was
//!   an error burst: the provisional bits and errors count normally. If no shift matches, or no
//!   lock comes within [`RECOVERY_LIMIT_BITS`], it is a **sync loss** (`sync_losses += 1`) and
//!   the provisional bits are unsynced. For short periods the shift is only known modulo the
//!   period (the smallest is taken); on `ones`/`zeros` a slip is invisible.
//!
//! While in sync a 64-bit word is judged only when complete, so how the stream is cut into
//! [`Checker::feed`] calls never changes the counts; up to 63 bits of a partial last word (and
//! bits of an unfinished confirmation or recovery) wait until [`Checker::finish`].
//!
//! A **burst** is a run of bit errors in which consecutive errors are at most
//! [`BURST_GAP_BITS`] bits apart; its length runs from its first to its last errored bit.
//!
//! # Auto-detection
//!
//! [`Expect::Auto`] hunts with every recurrence (each PRBS forward and reversed, both
//! polarities) and every fixed period (1, 2, 8, 24 bits) at once; the first to lock names the
//! pattern, polarity and direction, and [`Checker::pattern`] returns it after confirmation. Two
//! pairs share a recurrence: forward QRSS and reversed prbs20 (`x^20+x^17+1`), forward prbs20
//! and reversed QRSS (`x^20+x^3+1`); they differ only where QRSS forces ones into runs of 15+
//! zeros. The checker first assumes the forward one (prbs20 or QRSS) and compares, at every bit
//! where the two differ, which one the line follows; after [`AMBIGUITY_EVIDENCE_BITS`] such bits
//! (a few tens of thousands of bits into the stream) it settles, and errors at those bits are
//! counted against the settled choice. Fixed patterns are named when they match a named one;
//! reversed fixed patterns are rotations of the forward ones and are reported forward. User
//! (`hex:`) words are not auto-detected.

use serde::Serialize;

use crate::generator::{Lfsr, Periodic, Source, fixed_period, qrss_word, recurrence};
use crate::simd::Isa;
use crate::spec::{BitOrder, PatternKind, PatternSpec};

/// Bits compared while confirming a new lock.
pub const CONFIRM_BITS: u64 = 256;
/// Most errors allowed in [`CONFIRM_BITS`] for the lock to stand.
pub const CONFIRM_MAX_ERRORS: u64 = 32;
/// Errors at most this many bits apart belong to one burst.
pub const BURST_GAP_BITS: u64 = 32;
/// A recovery that finds no lock within this many bits is a sync loss.
pub const RECOVERY_LIMIT_BITS: u64 = 1 << 16;
/// Largest insertion recognised as a slip.
pub const MAX_INSERTED_BITS: i64 = 1024;
/// Largest deletion recognised as a slip (a lost 8 KiB read buffer still counts as a slip).
pub const MAX_DELETED_BITS: i64 = 1 << 16;
/// Discriminating bits seen before auto-detection settles QRSS against prbs20.
pub const AMBIGUITY_EVIDENCE_BITS: u64 = 8;

/// Consecutive correctly predicted bits that lock the hunt for a register of order `n`.
pub fn hunt_bits(n: u32) -> u32 {
    (2 * n).max(32)
}

/// Words of received history kept (fixed periods up to 512 bits look that far back).
const HISTORY_WORDS: usize = 16;

/// What the checker expects to receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// This pattern, with its polarity, direction and bit order.
    Pattern(PatternSpec),
    /// Detect pattern, polarity and direction from the arriving bits (in this bit order).
    Auto(BitOrder),
}

/// How a [`Checker`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerConfig {
    /// What it expects to receive.
    pub expect: Expect,
}

/// Running totals; every field only grows (except `in_sync`). While auto-detection weighs QRSS
/// against prbs20, errors at the few bits where the two differ are counted once it settles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckCounters {
    /// Bits compared against the reference while in sync.
    pub bits: u64,
    /// Bits that differed from the reference while in sync.
    pub bit_errors: u64,
    /// Bits received while hunting for sync (not compared).
    pub unsynced_bits: u64,
    /// Times sync was lost and a new hunt began.
    pub sync_losses: u64,
    /// Slips: dropped or inserted bits/bytes after which the pattern resumed at another phase.
    pub slips: u64,
    /// Bits inserted at slips (the pattern resumed later than it should).
    pub inserted_bits: u64,
    /// Bits deleted at slips (the pattern resumed earlier than it should).
    pub deleted_bits: u64,
    /// The longest error burst seen, in bits.
    pub longest_burst_bits: u64,
    /// Whether it is in sync now.
    pub in_sync: bool,
}

/// What a hunt candidate tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    /// `r[t] ^ r[t-a] ^ r[t-n]` is 0 (plain) or 1 (inverted).
    Recurrence { n: u32, a: u32 },
    /// `r[t] == r[t-p]`.
    Period(u32),
}

#[derive(Debug, Clone)]
struct Candidate {
    test: Test,
    /// Which polarities to look for: (plain, inverted).
    polarities: (bool, bool),
    need: u32,
    run_plain: u32,
    run_inverted: u32,
}

impl Candidate {
    fn new(test: Test, polarities: (bool, bool)) -> Self {
        let need = match test {
            Test::Recurrence { n, .. } => hunt_bits(n),
            Test::Period(p) => p + 64,
        };
        Candidate {
            test,
            polarities,
            need,
            run_plain: 0,
            run_inverted: 0,
        }
    }

    fn reset(&mut self) {
        self.run_plain = 0;
        self.run_inverted = 0;
    }
}

/// Finds where a run of good bits reaches `need` in bits `from..to` of `bad` (1 = bad bit).
/// Returns the position just after the bit that completes the run.
fn scan_run(bad: u64, from: u32, to: u32, run: &mut u32, need: u32) -> Option<u32> {
    let segment = range_mask(from, to);
    let bad = bad & segment;
    let first_bad = if bad == 0 { to } else { bad.trailing_zeros() };
    if *run + (first_bad - from) >= need {
        return Some(from + (need - *run));
    }
    if bad == 0 {
        *run += to - from;
        return None;
    }
    // Random data (the usual case while hunting) has no long good stretch inside the word: then
    // the run restarts after the last bad bit, with no bit-by-bit walk.
    if !has_run(!bad & segment, need) {
        *run = to - 1 - (63 - bad.leading_zeros());
        return None;
    }
    let mut pos = first_bad + 1;
    *run = 0;
    while pos < to {
        let len = to - pos;
        let rest = bad >> pos;
        let clean = if rest == 0 {
            len
        } else {
            rest.trailing_zeros().min(len)
        };
        if *run + clean >= need {
            return Some(pos + (need - *run));
        }
        if clean == len {
            *run += clean;
            return None;
        }
        *run = 0;
        pos += clean + 1;
    }
    None
}

/// Whether `bits` holds `len` consecutive ones (never, if `len` > 64).
fn has_run(bits: u64, len: u32) -> bool {
    if len > 64 {
        return false;
    }
    let mut runs = bits;
    let mut covered = 1;
    while covered < len && runs != 0 {
        let shift = covered.min(len - covered);
        runs &= runs >> shift;
        covered += shift;
    }
    runs != 0
}

/// The expected stream, in the received word domain (polarity applied).
#[derive(Debug, Clone)]
struct Reference {
    spec: PatternSpec,
    source: Source,
    mask: u64,
    /// Auto-detection between QRSS and prbs20 still open (see the module documentation).
    ambiguity: Option<Ambiguity>,
}

#[derive(Debug, Clone, Default)]
struct Ambiguity {
    /// Discriminating bits that followed the assumed pattern / the alternative.
    for_assumed: u64,
    for_alternative: u64,
}

impl Reference {
    fn expected(&mut self, w: i64) -> u64 {
        self.source.word(w) ^ self.mask
    }

    /// Plain-domain bits `start..start + len` (len <= 64) of the reference.
    fn bits_at(&mut self, start: i64, len: u32) -> u64 {
        let w = start.div_euclid(64);
        let shift = start.rem_euclid(64) as u32;
        let lo = self.source.word(w);
        let hi = self.source.word(w + 1);
        let both = (u128::from(hi) << 64) | u128::from(lo);
        ((both >> shift) as u64) & low_mask(len)
    }

    /// For an open QRSS/prbs20 ambiguity: the bits of word `w` where the alternative differs.
    fn alternative_diff(&mut self, w: i64) -> u64 {
        if self.ambiguity.is_none() {
            return 0;
        }
        match &mut self.source {
            Source::Prbs(lfsr) => {
                // Assumed plain prbs20 forward; alternative: QRSS reversed (look-behind).
                let s = lfsr.words(w - 1, 3);
                let (prev, cur, next) =
                    (word_or_zero(s, 0), word_or_zero(s, 1), word_or_zero(s, 2));
                qrss_word(prev, cur, next, true) ^ cur
            }
            Source::Qrss { lfsr, reverse } => {
                // Assumed QRSS forward; alternative: the plain LFSR (prbs20 reversed).
                let s = lfsr.words(w - 1, 3);
                let (prev, cur, next) =
                    (word_or_zero(s, 0), word_or_zero(s, 1), word_or_zero(s, 2));
                qrss_word(prev, cur, next, *reverse) ^ cur
            }
            Source::Periodic(_) => 0,
        }
    }

    /// Settles the ambiguity for the alternative: swaps source and spec.
    fn switch_to_alternative(&mut self) {
        let source = std::mem::replace(
            &mut self.source,
            Source::Periodic(Periodic::new(&[false], 0)),
        );
        let (source, kind, reverse) = match source {
            Source::Prbs(lfsr) => (
                Source::Qrss {
                    lfsr,
                    reverse: true,
                },
                PatternKind::Qrss,
                true,
            ),
            Source::Qrss { lfsr, .. } => (Source::Prbs(lfsr), PatternKind::Prbs20, true),
            other => (other, self.spec.kind.clone(), self.spec.reverse),
        };
        self.source = source;
        let inverted = self.spec.inverted();
        self.spec.kind = kind;
        self.spec.reverse = reverse;
        self.spec.invert = (inverted != self.spec.kind.standard_inverted()).then_some(inverted);
        self.ambiguity = None;
    }
}

fn word_or_zero(words: &[u64], i: usize) -> u64 {
    words.get(i).copied().unwrap_or(0)
}

fn low_mask(len: u32) -> u64 {
    if len >= 64 {
        u64::MAX
    } else {
        (1u64 << len) - 1
    }
}

/// Bits `lo..hi` of a word.
fn range_mask(lo: u32, hi: u32) -> u64 {
    if lo >= hi { 0 } else { low_mask(hi - lo) << lo }
}

/// Compared bits whose fate is not yet known (confirming, recovering).
#[derive(Debug, Clone, Copy)]
struct Provisional {
    /// Global bit position of bit 0 of `errors`.
    at: u64,
    errors: u64,
    bits: u64,
}

#[derive(Debug, Clone)]
enum State {
    Hunting,
    Confirming {
        reference: Reference,
        bits: u64,
        errors: u64,
        held: Vec<Provisional>,
    },
    Synced {
        reference: Reference,
    },
    Recovering {
        reference: Reference,
        bits: u64,
        held: Vec<Provisional>,
    },
}

/// The self-synchronising pattern checker: hunts for the pattern, compares every bit once in
/// sync, and tells bit errors from slips and from a lost pattern.
pub struct Checker {
    config: CheckerConfig,
    counters: CheckCounters,
    order: BitOrder,
    state: State,
    /// Candidates for a fresh hunt (all of them in auto mode).
    candidates: Vec<Candidate>,
    /// The single candidate used to recover the current pattern.
    recovery: Option<Candidate>,
    detected: Option<PatternSpec>,
    /// Received words (bit order undone, polarity as received), by global index mod 16.
    history: [u64; HISTORY_WORDS],
    /// Index of the word being assembled, its bits so far and how many were processed.
    word_index: i64,
    word: u64,
    filled: u32,
    processed: u32,
    /// Set while `finish` processes a partial word.
    finishing: bool,
    burst_start: u64,
    last_error: Option<u64>,
    scratch: Vec<u64>,
    /// The instruction set of the PRBS word kernels.
    isa: Isa,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("config", &self.config)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// Undoes the bit order of a little-endian word of received bytes.
#[inline(always)]
fn unorder(word: u64, msb_first: bool) -> u64 {
    if msb_first {
        word.reverse_bits().swap_bytes()
    } else {
        word
    }
}

impl Checker {
    /// A checker that starts hunting with the first byte fed; its PRBS kernels use the best
    /// instruction set this CPU has.
    pub fn new(config: CheckerConfig) -> Self {
        Checker::with_isa(config, Isa::detect())
    }

    /// A checker whose PRBS kernels use `isa` (the portable set if this CPU lacks it); the
    /// counts are the same whichever is used.
    pub fn with_isa(config: CheckerConfig, isa: Isa) -> Self {
        let isa = if isa.available() { isa } else { Isa::Portable };
        let (order, candidates) = match &config.expect {
            Expect::Pattern(spec) => (spec.bit_order, vec![candidate_for(spec)]),
            Expect::Auto(order) => (*order, auto_candidates()),
        };
        Checker {
            config,
            counters: CheckCounters::default(),
            order,
            state: State::Hunting,
            candidates,
            recovery: None,
            detected: None,
            history: [0; HISTORY_WORDS],
            word_index: 0,
            word: 0,
            filled: 0,
            processed: 0,
            finishing: false,
            burst_start: 0,
            last_error: None,
            scratch: vec![0; 1024],
            isa,
        }
    }

    /// The totals so far.
    pub fn counters(&self) -> &CheckCounters {
        &self.counters
    }

    /// The pattern being checked: the configured one, or what auto-detection found.
    pub fn pattern(&self) -> Option<&PatternSpec> {
        match &self.config.expect {
            Expect::Pattern(spec) => Some(spec),
            Expect::Auto(_) => match &self.state {
                State::Synced { reference } | State::Recovering { reference, .. } => {
                    Some(&reference.spec)
                }
                _ => self.detected.as_ref(),
            },
        }
    }

    /// Checks the next received bytes (any length; a run may be fed in pieces of any size).
    pub fn feed(&mut self, mut data: &[u8]) {
        let msb_first = self.order == BitOrder::MsbFirst;
        while !data.is_empty() {
            if self.filled == 0 && data.len() >= 16 && matches!(self.state, State::Synced { .. }) {
                let used = self.bulk(data);
                data = &data[used..];
                if used > 0 {
                    continue;
                }
            }
            // One byte at a time into the current word, then process what is new.
            let free = ((64 - self.filled) / 8) as usize;
            let take = free.min(data.len());
            for (i, &byte) in data[..take].iter().enumerate() {
                let byte = if msb_first { byte.reverse_bits() } else { byte };
                self.word |= u64::from(byte) << (self.filled + 8 * i as u32);
            }
            data = &data[take..];
            self.filled += 8 * take as u32;
            self.history[self.word_index.rem_euclid(HISTORY_WORDS as i64) as usize] = self.word;
            let (lo, hi) = (self.processed, self.filled);
            self.processed = self.segment(self.word_index, self.word, lo, hi);
            if self.filled == 64 {
                self.word_index += 1;
                self.word = 0;
                self.filled = 0;
                self.processed = 0;
            }
        }
        self.counters.in_sync = matches!(self.state, State::Synced { .. });
    }

    /// Settles bits whose fate is still open at the end of a run, so that afterwards
    /// `bits + unsynced_bits` equals every bit fed. Bits of an unfinished confirmation are
    /// unsynced. Bits held after a suspect segment are counted as compared (with their errors
    /// against the old phase) if under 25% of them were wrong (an error burst at the end), else
    /// they are unsynced and the episode counts as a sync loss. Feeding more afterwards is
    /// allowed (the checker then hunts afresh).
    pub fn finish(&mut self) {
        if self.filled > self.processed {
            self.finishing = true;
            let (lo, hi) = (self.processed, self.filled);
            self.processed = self.segment(self.word_index, self.word, lo, hi);
            self.finishing = false;
        }
        match std::mem::replace(&mut self.state, State::Hunting) {
            State::Confirming { bits, .. } => self.counters.unsynced_bits += bits,
            State::Recovering { bits, held, .. } => {
                let errors: u64 = held.iter().map(|h| u64::from(h.errors.count_ones())).sum();
                if errors * 4 < bits {
                    self.commit(&held);
                } else {
                    self.counters.sync_losses += 1;
                    self.counters.unsynced_bits += bits;
                }
            }
            other => self.state = other,
        }
        for candidate in &mut self.candidates {
            candidate.reset();
        }
        self.counters.in_sync = matches!(self.state, State::Synced { .. });
    }

    /// Synced fast path over whole words; returns the bytes consumed. Stops before a suspect
    /// word so the general path handles it.
    fn bulk(&mut self, data: &[u8]) -> usize {
        let msb_first = self.order == BitOrder::MsbFirst;
        let State::Synced { reference } = &mut self.state else {
            return 0;
        };
        if reference.ambiguity.is_some() {
            return 0;
        }
        let mask = reference.mask;
        let total_words = data.len() / 8;
        let mut done = 0usize;
        let mut suspect = false;
        if let Source::Prbs(lfsr) = &mut reference.source {
            // Fused generate-and-compare over the whole run of words.
            let counters = &mut self.counters;
            let burst_start = &mut self.burst_start;
            let last_error = &mut self.last_error;
            let first = self.word_index;
            let (received, _) = data[..total_words * 8].as_chunks::<8>();
            let on_error = |offset: usize, errors: u64| {
                if errors.count_ones() >= 16 {
                    return false;
                }
                let at = ((first + offset as i64) as u64) * 64;
                account_errors(counters, burst_start, last_error, at, errors);
                true
            };
            done = if msb_first {
                lfsr.compare::<true>(first, received, mask, on_error)
            } else {
                lfsr.compare::<false>(first, received, mask, on_error)
            };
            counters.bits += done as u64 * 64;
            // The fused pass went as far as it could (up to a suspect word): skip the
            // general loop below.
            suspect = true;
        }
        while done < total_words && !suspect {
            let count = (total_words - done).min(self.scratch.len());
            let first = self.word_index + done as i64;
            let expected = reference.source.words(first, &mut self.scratch[..count]);
            let (bytes, _) = data[done * 8..(done + count) * 8].as_chunks::<8>();
            let mut checked = 0usize;
            // Groups of 8 words: one OR-reduction says whether any bit is wrong (the usual
            // case is not), so the common path is branch-free and vectorisable.
            let (want_groups, want_rest) = expected.as_chunks::<8>();
            let (raw_groups, raw_rest) = bytes.as_chunks::<8>();
            let groups = want_groups
                .iter()
                .map(|g| g.as_slice())
                .zip(raw_groups.iter().map(|g| g.as_slice()))
                .chain(std::iter::once((want_rest, raw_rest)));
            for (wants, raws) in groups {
                let clean = if let (Ok(wants8), Ok(raws8)) = (
                    <&[u64; 8]>::try_from(wants),
                    <&[[u8; 8]; 8]>::try_from(raws),
                ) {
                    if msb_first {
                        group_errors::<true>(wants8, raws8, mask) == 0
                    } else {
                        group_errors::<false>(wants8, raws8, mask) == 0
                    }
                } else {
                    false
                };
                if clean {
                    checked += wants.len();
                    continue;
                }
                for (&want, &raw) in wants.iter().zip(raws) {
                    let got = unorder(u64::from_le_bytes(raw), msb_first);
                    let errors = got ^ want ^ mask;
                    if errors != 0 {
                        if errors.count_ones() >= 16 {
                            suspect = true;
                            break;
                        }
                        let at = ((first + checked as i64) as u64) * 64;
                        account_errors(
                            &mut self.counters,
                            &mut self.burst_start,
                            &mut self.last_error,
                            at,
                            errors,
                        );
                    }
                    checked += 1;
                }
                if suspect {
                    break;
                }
            }
            self.counters.bits += checked as u64 * 64;
            done += checked;
            if checked < count {
                break;
            }
        }
        // Keep the received history of the last words for a later hunt.
        let keep_from = done.saturating_sub(HISTORY_WORDS);
        for i in keep_from..done {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&data[i * 8..i * 8 + 8]);
            let w = self.word_index + i as i64;
            self.history[w.rem_euclid(HISTORY_WORDS as i64) as usize] =
                unorder(u64::from_le_bytes(raw), msb_first);
        }
        self.word_index += done as i64;
        done * 8
    }

    /// Processes bits `lo..hi` of received word `w` (bits at and above `hi` are zero); returns
    /// how far it got. In sync, a word is judged only once complete (or at `finish`), so that
    /// how the stream is cut into `feed` calls never changes the counts.
    fn segment(&mut self, w: i64, word: u64, lo: u32, hi: u32) -> u32 {
        let mut at = lo;
        // Each step consumes at least one bit or changes state; bound the loop anyway.
        let mut guard = 0;
        while at < hi && guard < 256 {
            if hi < 64 && !self.finishing && matches!(self.state, State::Synced { .. }) {
                return at;
            }
            guard += 1;
            at = match std::mem::replace(&mut self.state, State::Hunting) {
                State::Hunting => self.hunt(w, word, at, hi),
                State::Confirming {
                    reference,
                    bits,
                    errors,
                    held,
                } => self.confirm(w, word, at, hi, reference, bits, errors, held),
                State::Synced { reference } => self.synced(w, word, at, hi, reference),
                State::Recovering {
                    reference,
                    bits,
                    held,
                } => self.recover(w, word, at, hi, reference, bits, held),
            };
        }
        if at < hi {
            self.counters.unsynced_bits += u64::from(hi - at);
        }
        hi
    }

    /// Bad-bit words of a candidate for word `w`: (for plain, for inverted).
    fn candidate_errors(&self, test: Test, w: i64, word: u64) -> u64 {
        let window = |distance: u32| -> u64 {
            // The 64 received bits starting `distance` bits before word `w`.
            let back = i64::from(distance.div_ceil(64));
            let shift = distance % 64;
            let older = self.history[(w - back).rem_euclid(HISTORY_WORDS as i64) as usize];
            let newer = if back == 1 {
                word
            } else {
                self.history[(w - back + 1).rem_euclid(HISTORY_WORDS as i64) as usize]
            };
            if shift == 0 {
                older
            } else {
                let both = (u128::from(newer) << 64) | u128::from(older);
                (both >> (64 - shift)) as u64
            }
        };
        match test {
            Test::Recurrence { n, a } => word ^ window(a) ^ window(n),
            Test::Period(p) => word ^ window(p),
        }
    }

    /// Received bits `end - len .. end` (len <= 64, global positions) from the history.
    fn received_bits(&self, end: i64, len: u32) -> u64 {
        let start = end - i64::from(len);
        let w = start.div_euclid(64);
        let shift = start.rem_euclid(64) as u32;
        let lo = self.history[w.rem_euclid(HISTORY_WORDS as i64) as usize];
        let hi = if end > (w + 1) * 64 {
            self.history[(w + 1).rem_euclid(HISTORY_WORDS as i64) as usize]
        } else {
            0
        };
        let both = (u128::from(hi) << 64) | u128::from(lo);
        ((both >> shift) as u64) & low_mask(len)
    }

    /// Runs the candidates over bits `lo..hi`; on a lock returns its position and reference.
    fn run_candidates(
        &mut self,
        recovering: bool,
        w: i64,
        word: u64,
        lo: u32,
        hi: u32,
    ) -> Option<(u32, Option<Reference>)> {
        let mut candidates = if recovering {
            self.recovery.take().into_iter().collect()
        } else {
            std::mem::take(&mut self.candidates)
        };
        let mut found = None;
        let mut best = hi + 1;
        for (index, candidate) in candidates.iter_mut().enumerate() {
            let bad = self.candidate_errors(candidate.test, w, word);
            if candidate.polarities.0 {
                let mut run = candidate.run_plain;
                if let Some(p) = scan_run(bad, lo, hi, &mut run, candidate.need)
                    && p < best
                {
                    best = p;
                    found = Some((index, false));
                }
                candidate.run_plain = run;
            }
            if candidate.polarities.1 {
                let mut run = candidate.run_inverted;
                if let Some(p) = scan_run(!bad, lo, hi, &mut run, candidate.need)
                    && p < best
                {
                    best = p;
                    found = Some((index, true));
                }
                candidate.run_inverted = run;
            }
        }
        let mut result = None;
        if let Some((index, inverted)) = found {
            let end = w * 64 + i64::from(best);
            let test = candidates[index].test;
            let reference = self.make_reference(test, inverted, end);
            if reference.is_some() {
                for candidate in &mut candidates {
                    candidate.reset();
                }
            } else if inverted {
                // Degenerate (an all-zero register) or unnamed: only this one starts over,
                // the others keep their runs (all zeros satisfies every recurrence).
                candidates[index].run_inverted = 0;
            } else {
                candidates[index].run_plain = 0;
            }
            result = Some((best, reference));
        }
        if recovering {
            self.recovery = candidates.into_iter().next();
        } else {
            self.candidates = candidates;
        }
        result
    }

    /// The reference a lock at global bit `end` implies, or `None` if degenerate.
    fn make_reference(&self, test: Test, inverted: bool, end: i64) -> Option<Reference> {
        let mask = if inverted { u64::MAX } else { 0 };
        match test {
            Test::Recurrence { n, a } => {
                let seed = self.received_bits(end, n) ^ low_mask(n) & mask;
                if seed == 0 {
                    return None;
                }
                let known: Vec<bool> = (0..n).map(|i| seed >> i & 1 == 1).collect();
                let lfsr = Lfsr::from_known(n, a, end, &known, self.isa);
                let (spec, ambiguous) = match &self.config.expect {
                    Expect::Pattern(spec) => (spec.clone(), false),
                    Expect::Auto(order) => {
                        let (kind, reverse) = kind_of_recurrence(n, a)?;
                        let ambiguous = n == 20;
                        let invert = (inverted != kind.standard_inverted()).then_some(inverted);
                        (
                            PatternSpec {
                                kind,
                                invert,
                                reverse,
                                bit_order: *order,
                            },
                            ambiguous,
                        )
                    }
                };
                let source = if spec.kind == PatternKind::Qrss {
                    Source::Qrss {
                        lfsr,
                        reverse: spec.reverse,
                    }
                } else {
                    Source::Prbs(lfsr)
                };
                Some(Reference {
                    spec,
                    source,
                    mask,
                    ambiguity: ambiguous.then(Ambiguity::default),
                })
            }
            Test::Period(p) => {
                let last = self.received_bits(end, 64);
                let start = end - 64;
                let specs: Vec<PatternSpec> = match &self.config.expect {
                    Expect::Pattern(spec) => vec![spec.clone()],
                    // Each named pattern as written first, then complemented.
                    Expect::Auto(order) => [false, true]
                        .iter()
                        .flat_map(|&inv| {
                            PatternKind::NAMED
                                .iter()
                                .filter(|k| !k.is_pseudo_random())
                                .map(move |k| PatternSpec {
                                    kind: k.clone(),
                                    invert: inv.then_some(true),
                                    reverse: false,
                                    bit_order: *order,
                                })
                        })
                        .collect(),
                };
                for spec in specs {
                    let Some(mut bits) = fixed_period(&spec.kind, spec.bit_order) else {
                        continue;
                    };
                    if spec.reverse {
                        bits.reverse();
                    }
                    if matches!(self.config.expect, Expect::Auto(_)) && bits.len() as u32 != p {
                        continue;
                    }
                    let mask = if spec.inverted() { u64::MAX } else { 0 };
                    let periodic = Periodic::new(&bits, 0);
                    let period = periodic.period();
                    for q in 0..period {
                        if periodic.at_phase(q) ^ mask == last {
                            let phase0 = (q as i64 - start).rem_euclid(period as i64) as usize;
                            return Some(Reference {
                                spec,
                                source: Source::Periodic(Periodic::new(&bits, phase0)),
                                mask,
                                ambiguity: None,
                            });
                        }
                    }
                }
                None
            }
        }
    }

    fn hunt(&mut self, w: i64, word: u64, lo: u32, hi: u32) -> u32 {
        match self.run_candidates(false, w, word, lo, hi) {
            Some((p, reference)) => {
                self.counters.unsynced_bits += u64::from(p - lo);
                if let Some(reference) = reference {
                    self.state = State::Confirming {
                        reference,
                        bits: 0,
                        errors: 0,
                        held: Vec::new(),
                    };
                }
                p
            }
            None => {
                self.counters.unsynced_bits += u64::from(hi - lo);
                hi
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn confirm(
        &mut self,
        w: i64,
        word: u64,
        lo: u32,
        hi: u32,
        mut reference: Reference,
        mut bits: u64,
        mut errors: u64,
        mut held: Vec<Provisional>,
    ) -> u32 {
        let stop = hi.min(lo + (CONFIRM_BITS - bits).min(64) as u32);
        let wrong = (word ^ reference.expected(w)) & range_mask(lo, stop);
        bits += u64::from(stop - lo);
        errors += u64::from(wrong.count_ones());
        held.push(Provisional {
            at: (w as u64).wrapping_mul(64),
            errors: wrong,
            bits: u64::from(stop - lo),
        });
        if bits < CONFIRM_BITS {
            self.state = State::Confirming {
                reference,
                bits,
                errors,
                held,
            };
        } else if errors <= CONFIRM_MAX_ERRORS {
            self.commit(&held);
            self.recovery = Some(candidate_for(&reference.spec));
            self.detected = Some(reference.spec.clone());
            self.state = State::Synced { reference };
        } else {
            self.counters.unsynced_bits += bits;
            for candidate in &mut self.candidates {
                candidate.reset();
            }
            self.state = State::Hunting;
        }
        stop
    }

    fn commit(&mut self, held: &[Provisional]) {
        for entry in held {
            self.counters.bits += entry.bits;
            if entry.errors != 0 {
                account_errors(
                    &mut self.counters,
                    &mut self.burst_start,
                    &mut self.last_error,
                    entry.at,
                    entry.errors,
                );
            }
        }
    }

    fn synced(&mut self, w: i64, word: u64, lo: u32, hi: u32, mut reference: Reference) -> u32 {
        let mask = range_mask(lo, hi);
        let mut wrong = (word ^ reference.expected(w)) & mask;
        if reference.ambiguity.is_some() {
            let differ = reference.alternative_diff(w) & mask;
            if differ != 0 {
                wrong = self.weigh_ambiguity(&mut reference, differ, wrong);
            }
        }
        let count = wrong.count_ones();
        let len = hi - lo;
        if count >= 4 && count * 4 >= len {
            // Suspect: hunt again, holding these bits provisionally.
            if let Some(candidate) = &mut self.recovery {
                candidate.reset();
            }
            self.state = State::Recovering {
                reference,
                bits: 0,
                held: Vec::new(),
            };
            return lo;
        }
        self.counters.bits += u64::from(len);
        if wrong != 0 {
            account_errors(
                &mut self.counters,
                &mut self.burst_start,
                &mut self.last_error,
                (w as u64).wrapping_mul(64),
                wrong,
            );
        }
        self.state = State::Synced { reference };
        hi
    }

    /// Counts, at bits where QRSS and prbs20 differ, which the line follows; settles when
    /// enough evidence is in. Returns the error word to count.
    fn weigh_ambiguity(&mut self, reference: &mut Reference, differ: u64, wrong: u64) -> u64 {
        let Some(ambiguity) = &mut reference.ambiguity else {
            return wrong;
        };
        let follows_assumed = u64::from((differ & !wrong).count_ones());
        let follows_alternative = u64::from((differ & wrong).count_ones());
        ambiguity.for_assumed += follows_assumed;
        ambiguity.for_alternative += follows_alternative;
        let (assumed, alternative) = (ambiguity.for_assumed, ambiguity.for_alternative);
        if assumed + alternative < AMBIGUITY_EVIDENCE_BITS {
            // Undecided: do not count the discriminating bits either way yet.
            return wrong & !differ;
        }
        if alternative > assumed {
            // Earlier discriminating bits were not counted; now those that followed the
            // assumption are errors of the alternative.
            reference.switch_to_alternative();
            self.counters.bit_errors += assumed - follows_assumed;
            return wrong ^ differ;
        }
        reference.ambiguity = None;
        self.counters.bit_errors += alternative - follows_alternative;
        wrong
    }

    #[allow(clippy::too_many_arguments)]
    fn recover(
        &mut self,
        w: i64,
        word: u64,
        lo: u32,
        hi: u32,
        mut reference: Reference,
        mut bits: u64,
        mut held: Vec<Provisional>,
    ) -> u32 {
        // Stop exactly at the recovery limit, wherever the feed boundaries fall.
        let budget = (RECOVERY_LIMIT_BITS.saturating_sub(bits)).clamp(1, u64::from(hi - lo)) as u32;
        let hi = lo + budget;
        let lock = self.run_candidates(true, w, word, lo, hi);
        let stop = lock.as_ref().map_or(hi, |(p, _)| *p);
        let wrong = (word ^ reference.expected(w)) & range_mask(lo, stop);
        bits += u64::from(stop - lo);
        if stop > lo {
            held.push(Provisional {
                at: (w as u64).wrapping_mul(64),
                errors: wrong,
                bits: u64::from(stop - lo),
            });
        }
        match lock {
            Some((p, Some(new_reference))) => {
                let end = w * 64 + i64::from(p);
                match self.slip_distance(&mut reference, &new_reference, end) {
                    Some(0) => {
                        // An error burst: the old phase holds; count what was held.
                        self.commit(&held);
                        self.state = State::Synced { reference };
                    }
                    Some(d) => {
                        self.counters.slips += 1;
                        if d > 0 {
                            self.counters.deleted_bits += d as u64;
                        } else {
                            self.counters.inserted_bits += d.unsigned_abs();
                        }
                        self.counters.unsynced_bits += bits;
                        let mut new_reference = new_reference;
                        new_reference.spec = reference.spec.clone();
                        new_reference.ambiguity = reference.ambiguity.take();
                        self.state = State::Synced {
                            reference: new_reference,
                        };
                    }
                    None => {
                        self.counters.sync_losses += 1;
                        self.counters.unsynced_bits += bits;
                        self.state = State::Confirming {
                            reference: new_reference,
                            bits: 0,
                            errors: 0,
                            held: Vec::new(),
                        };
                    }
                }
                p
            }
            _ => {
                if bits >= RECOVERY_LIMIT_BITS {
                    self.counters.sync_losses += 1;
                    self.counters.unsynced_bits += bits;
                    for candidate in &mut self.candidates {
                        candidate.reset();
                    }
                    self.state = State::Hunting;
                } else {
                    self.state = State::Recovering {
                        reference,
                        bits,
                        held,
                    };
                }
                stop
            }
        }
    }

    /// How far the stream slipped: `d` such that the received bits before `end` equal the old
    /// reference `d` bits later (positive: bits were deleted). `None` if no shift in range fits.
    fn slip_distance(&mut self, old: &mut Reference, new: &Reference, end: i64) -> Option<i64> {
        if old.mask != new.mask {
            return None;
        }
        if let (Source::Periodic(before), Source::Periodic(after)) = (&old.source, &new.source) {
            let period = before.period() as i64;
            if period != after.period() as i64 {
                return None;
            }
            let d =
                (after.phase_of_word(0) as i64 - before.phase_of_word(0) as i64).rem_euclid(period);
            return Some(if d > period / 2 { d - period } else { d });
        }
        let len = match &old.source {
            Source::Prbs(lfsr) | Source::Qrss { lfsr, .. } => {
                (lfsr.order() + hunt_bits(lfsr.order())).min(64)
            }
            Source::Periodic(_) => 64,
        };
        let seen = self.received_bits(end, len) ^ (old.mask & low_mask(len));
        let start = end - i64::from(len);
        // Nearest shifts first, both ways.
        for distance in 0..=MAX_INSERTED_BITS {
            if old.bits_at(start + distance, len) == seen {
                return Some(distance);
            }
            if distance > 0 && old.bits_at(start - distance, len) == seen {
                return Some(-distance);
            }
        }
        (MAX_INSERTED_BITS + 1..=MAX_DELETED_BITS)
            .find(|&distance| old.bits_at(start + distance, len) == seen)
    }
}

/// OR of the error words of a group (0: no bit wrong).
#[inline(always)]
fn group_errors<const MSB_FIRST: bool>(wants: &[u64; 8], raws: &[[u8; 8]; 8], mask: u64) -> u64 {
    let mut any = 0u64;
    for i in 0..8 {
        any |= unorder(u64::from_le_bytes(raws[i]), MSB_FIRST) ^ wants[i] ^ mask;
    }
    any
}

/// Counts the errors of one word and tracks bursts. `at` is the global position of bit 0.
fn account_errors(
    counters: &mut CheckCounters,
    burst_start: &mut u64,
    last_error: &mut Option<u64>,
    at: u64,
    errors: u64,
) {
    counters.bit_errors += u64::from(errors.count_ones());
    let mut rest = errors;
    while rest != 0 {
        let position = at.wrapping_add(u64::from(rest.trailing_zeros()));
        rest &= rest - 1;
        match *last_error {
            Some(last) if position.wrapping_sub(last) <= BURST_GAP_BITS => {}
            _ => *burst_start = position,
        }
        *last_error = Some(position);
        let length = position.wrapping_sub(*burst_start) + 1;
        counters.longest_burst_bits = counters.longest_burst_bits.max(length);
    }
}

/// The hunt candidate of a configured pattern.
fn candidate_for(spec: &PatternSpec) -> Candidate {
    let polarities = if spec.inverted() {
        (false, true)
    } else {
        (true, false)
    };
    match recurrence(&spec.kind, spec.reverse) {
        Some((n, a)) => Candidate::new(Test::Recurrence { n, a }, polarities),
        None => {
            let period = fixed_period(&spec.kind, spec.bit_order).map_or(1, |bits| bits.len());
            // Polarity is checked when the phase is matched; periodicity does not see it.
            Candidate::new(Test::Period(period as u32), (true, false))
        }
    }
}

/// Every recurrence and fixed period, both polarities.
fn auto_candidates() -> Vec<Candidate> {
    let mut seen = Vec::new();
    let mut candidates = Vec::new();
    for reverse in [false, true] {
        for kind in PatternKind::NAMED.iter().filter(|k| k.is_pseudo_random()) {
            if let Some((n, a)) = recurrence(kind, reverse)
                && !seen.contains(&(n, a))
            {
                seen.push((n, a));
                candidates.push(Candidate::new(Test::Recurrence { n, a }, (true, true)));
            }
        }
    }
    for period in [1, 2, 8, 24] {
        candidates.push(Candidate::new(Test::Period(period), (true, false)));
    }
    candidates
}

/// The pattern a recurrence names, forward patterns first (so `x^20+x^17+1` is QRSS forward
/// and `x^20+x^3+1` prbs20 forward until evidence says otherwise).
fn kind_of_recurrence(n: u32, a: u32) -> Option<(PatternKind, bool)> {
    for reverse in [false, true] {
        for kind in PatternKind::NAMED.iter() {
            if recurrence(kind, reverse) == Some((n, a)) {
                return Some((kind.clone(), reverse));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-by-bit reference for `scan_run`.
    fn scan_slowly(bad: u64, from: u32, to: u32, run: &mut u32, need: u32) -> Option<u32> {
        for pos in from..to {
            if bad >> pos & 1 == 1 {
                *run = 0;
            } else {
                *run += 1;
                if *run == need {
                    return Some(pos + 1);
                }
            }
        }
        None
    }

    #[test]
    fn scan_run_matches_a_bit_by_bit_walk() {
        let mut state = 0x1234_5678_9ABC_DEF1u64;
        for case in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Sparse and dense bad bits, various segments, needs and carried runs.
            let bad = match case % 3 {
                0 => state,
                1 => state & (state >> 7) & (state >> 19),
                _ => state & (state >> 3) & (state >> 11) & (state >> 29) & (state >> 41),
            };
            let from = (state >> 50) as u32 % 64;
            let to = from + 1 + ((state >> 56) as u32 % (64 - from));
            let need = 1 + (case % 100);
            let carried = (state >> 40) as u32 % need;
            let (mut fast, mut slow) = (carried, carried);
            let got = scan_run(bad, from, to, &mut fast, need);
            let want = scan_slowly(bad, from, to, &mut slow, need);
            assert_eq!(
                got, want,
                "bad {bad:016x} {from}..{to} need {need} run {carried}"
            );
            if want.is_none() {
                assert_eq!(fast, slow, "run after {bad:016x} {from}..{to}");
            }
        }
    }
}
