//! Error injection on the transmit side.
//!
//! Bits are numbered in buffer order: bit `j` (value `1 << j`) of byte `i` is bit `8 i + j` of
//! the stream the injector sees, across calls. Random errors are independent per bit with the
//! given probability; instead of a coin per bit we draw the geometric gap to the next error, so a
//! rate of 1e-9 costs nothing per byte. The generator is xoshiro256++ seeded from `seed`, so a
//! run is reproducible.

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};

/// Flips bits in transmitted data: at a random rate, in bursts, or once on demand.
pub struct ErrorInjector {
    rate: f64,
    seed: u64,
    injected: u64,
    rng: Xoshiro256PlusPlus,
    /// ln(1 - rate), cached for the geometric draw; `None` when random injection is off.
    log_keep: Option<f64>,
    /// Error-free bits left before the next random error.
    gap: u64,
    /// Single errors requested and not yet applied.
    singles: u64,
    /// Consecutive bits still to flip for requested bursts.
    burst_left: u64,
}

impl std::fmt::Debug for ErrorInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorInjector")
            .field("rate", &self.rate)
            .field("seed", &self.seed)
            .field("injected", &self.injected)
            .finish_non_exhaustive()
    }
}

impl ErrorInjector {
    /// `rate`: probability that each bit is flipped (0, negative or NaN disables random
    /// injection; 1 or more flips every bit).
    pub fn new(rate: f64, seed: u64) -> Self {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        let log_keep = (rate > 0.0).then(|| (-rate).ln_1p());
        let mut injector = ErrorInjector {
            rate,
            seed,
            injected: 0,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            log_keep,
            gap: 0,
            singles: 0,
            burst_left: 0,
        };
        injector.gap = injector.draw_gap();
        injector
    }

    /// The random error probability per bit it was made with.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Geometric number of error-free bits before the next error.
    fn draw_gap(&mut self) -> u64 {
        let Some(log_keep) = self.log_keep else {
            return u64::MAX;
        };
        if log_keep == f64::NEG_INFINITY {
            return 0;
        }
        // Uniform in (0, 1]: 53 random bits, never zero.
        let uniform = ((self.rng.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
        let gap = (uniform.ln() / log_keep).floor();
        if gap >= u64::MAX as f64 {
            u64::MAX
        } else {
            gap as u64
        }
    }

    /// Flip one bit in the next call to `apply` (at a random position in that buffer).
    pub fn request_single(&mut self) {
        self.singles = self.singles.saturating_add(1);
    }

    /// Flip `bits` consecutive bits, starting at the first bit of the next call to `apply`
    /// (continuing into later calls if that buffer is shorter).
    pub fn request_burst(&mut self, bits: u32) {
        self.burst_left = self.burst_left.saturating_add(u64::from(bits));
    }

    /// Applies pending and random errors to `buf`; returns how many bits now differ from what
    /// was passed in (requested errors never cancel each other; a random error that lands on
    /// one does, and is not counted).
    pub fn apply(&mut self, buf: &mut [u8]) -> u64 {
        let total_bits = buf.len() as u64 * 8;
        if total_bits == 0 {
            return 0;
        }
        let mut flipped = 0u64;
        // Bursts first, from the start of the buffer.
        let burst = self.burst_left.min(total_bits);
        for bit in 0..burst {
            flip(buf, bit);
        }
        self.burst_left -= burst;
        flipped += burst;
        // Requested single errors, at random positions distinct from each other and from the
        // burst (so none cancels another).
        let mut singles_at: Vec<u64> = Vec::new();
        let free_bits = total_bits - burst;
        while self.singles > 0 && (singles_at.len() as u64) < free_bits {
            let bit = burst + self.rng.next_u64() % free_bits;
            if singles_at.contains(&bit) {
                continue;
            }
            flip(buf, bit);
            singles_at.push(bit);
            flipped += 1;
            self.singles -= 1;
        }
        // Random errors by geometric skipping. One landing on a bit already flipped above
        // flips it back: the returned count is what actually differs.
        let mut at = 0u64;
        while self.log_keep.is_some() {
            let left = total_bits - at;
            if self.gap >= left {
                self.gap -= left;
                break;
            }
            at += self.gap;
            flip(buf, at);
            if at < burst || singles_at.contains(&at) {
                flipped -= 1;
            } else {
                flipped += 1;
            }
            at += 1;
            self.gap = self.draw_gap();
        }
        self.injected += flipped;
        flipped
    }

    /// Bits flipped so far (random, single and burst errors together).
    pub fn injected_bits(&self) -> u64 {
        self.injected
    }
}

fn flip(buf: &mut [u8], bit: u64) {
    if let Some(byte) = buf.get_mut((bit / 8) as usize) {
        *byte ^= 1 << (bit % 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_errors_flip_exactly_that_many_bits() {
        let mut injector = ErrorInjector::new(0.0, 7);
        let mut buf = vec![0u8; 100];
        assert_eq!(injector.apply(&mut buf), 0);
        injector.request_single();
        assert_eq!(injector.apply(&mut buf), 1);
        assert_eq!(buf.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
        // Many singles in a tiny buffer never cancel: 8 requested in 8 bits flip all 8, and
        // more than fit wait for the next buffer.
        let mut tiny = [0u8; 1];
        for _ in 0..9 {
            injector.request_single();
        }
        assert_eq!(injector.apply(&mut tiny), 8);
        assert_eq!(tiny, [0xFF]);
        let mut tiny = [0u8; 1];
        assert_eq!(injector.apply(&mut tiny), 1);
        assert_eq!(tiny[0].count_ones(), 1);
        let mut buf = vec![0u8; 2];
        injector.request_burst(20);
        assert_eq!(injector.apply(&mut buf), 16);
        assert_eq!(buf, [0xFF, 0xFF]);
        let mut buf = vec![0u8; 2];
        assert_eq!(injector.apply(&mut buf), 4);
        assert_eq!(buf, [0x0F, 0x00]);
        assert_eq!(injector.injected_bits(), 30);
    }

    #[test]
    fn random_rate_is_deterministic_and_near_the_rate() {
        let run = |seed| {
            let mut injector = ErrorInjector::new(1e-3, seed);
            let mut buf = vec![0u8; 1 << 20];
            let n = injector.apply(&mut buf);
            (n, buf)
        };
        let (a, buf_a) = run(1);
        let (b, buf_b) = run(1);
        assert_eq!((a, &buf_a), (b, &buf_b));
        let ones: u64 = buf_a.iter().map(|b| u64::from(b.count_ones())).sum();
        assert_eq!(ones, a);
        // 8 Mibit at 1e-3: mean 8389, sd 92; allow 5 sd.
        assert!((a as f64 - 8388.6).abs() < 460.0, "{a}");
        let mut all = ErrorInjector::new(1.0, 3);
        let mut buf = vec![0u8; 3];
        assert_eq!(all.apply(&mut buf), 24);
        let mut none = ErrorInjector::new(f64::NAN, 3);
        assert_eq!(none.apply(&mut buf), 0);
    }
}
