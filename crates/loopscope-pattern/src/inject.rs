//! Error injection on the transmit side.

/// Flips bits in transmitted data: at a random rate, in bursts, or once on demand.
pub struct ErrorInjector {
    rate: f64,
    seed: u64,
    injected: u64,
}

impl ErrorInjector {
    /// `rate`: probability that each bit is flipped (0 disables random injection).
    pub fn new(rate: f64, seed: u64) -> Self {
        ErrorInjector {
            rate,
            seed,
            injected: 0,
        }
    }

    /// Flip one bit in the next call to `apply`.
    pub fn request_single(&mut self) {
        todo!()
    }

    /// Flip `bits` consecutive bits in the next call to `apply`.
    pub fn request_burst(&mut self, bits: u32) {
        let _ = bits;
        todo!()
    }

    /// Applies pending and random errors to `buf`; returns how many bits were flipped.
    pub fn apply(&mut self, buf: &mut [u8]) -> u64 {
        let _ = (buf, self.rate, self.seed);
        todo!()
    }

    pub fn injected_bits(&self) -> u64 {
        self.injected
    }
}
