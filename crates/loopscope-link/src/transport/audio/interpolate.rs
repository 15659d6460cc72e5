//! Band-limited interpolation: the value of a sampled signal between its samples.
//!
//! A Kaiser-windowed sinc of 64 taps, tabulated at 1/1024 sample and linearly interpolated
//! between table rows (the polyphase method of J. O. Smith's "Digital Audio Resampling"). Its
//! passband runs flat to 0.42 of the sample rate; at the frequencies the latency test and the
//! modem use (below 0.15 of the rate) the delay it adds is exact to about 1e-6 sample, far below
//! the 0.001 sample the latency test resolves.
//!
//! Written here because the resampling crates resample whole buffers by a fixed ratio; the
//! simulated channel needs one value at an arbitrary, slowly moving position per output sample.

/// Taps on each side of the interpolation point.
pub const HALF_TAPS: usize = 32;
const TAPS: usize = 2 * HALF_TAPS;
/// Table rows per sample.
const PHASES: usize = 1024;
/// Kaiser window shape: about 90 dB of stop-band rejection.
const KAISER_BETA: f64 = 9.0;
/// Cut-off as a fraction of the sample rate, a little below Nyquist so the window's transition
/// band ends before it.
const CUTOFF: f64 = 0.46;

/// The tabulated kernel: row `p` holds the taps for a fractional position `p / PHASES`.
pub struct SincInterpolator {
    table: Vec<f32>,
}

impl Default for SincInterpolator {
    fn default() -> Self {
        Self::new()
    }
}

impl SincInterpolator {
    /// Builds the windowed-sinc table once (Kaiser window): every fractional delay then costs one
    /// row lookup.
    pub fn new() -> Self {
        let mut table = vec![0f32; (PHASES + 1) * TAPS];
        let norm = bessel_i0(KAISER_BETA);
        for phase in 0..=PHASES {
            let frac = phase as f64 / PHASES as f64;
            let row = &mut table[phase * TAPS..(phase + 1) * TAPS];
            for (tap, coefficient) in row.iter_mut().enumerate() {
                // Tap `tap` weighs sample `floor(t) + tap - (HALF_TAPS - 1)`, at distance `u`.
                let u = frac + (HALF_TAPS - 1) as f64 - tap as f64;
                let x = u / HALF_TAPS as f64;
                let window = if x.abs() >= 1.0 {
                    0.0
                } else {
                    bessel_i0(KAISER_BETA * (1.0 - x * x).sqrt()) / norm
                };
                *coefficient = (2.0 * CUTOFF * sinc(2.0 * CUTOFF * u) * window) as f32;
            }
        }
        SincInterpolator { table }
    }

    /// The signal's value at time `t` (in samples), where `sample(i)` gives sample `i` (zero
    /// outside the signal). Reads samples `floor(t) - 31 ..= floor(t) + 32`.
    pub fn at(&self, t: f64, sample: impl Fn(i64) -> f32) -> f32 {
        let whole = t.floor();
        let frac = t - whole;
        let position = frac * PHASES as f64;
        let phase = (position as usize).min(PHASES - 1);
        let blend = (position - phase as f64) as f32;
        let row0 = &self.table[phase * TAPS..(phase + 1) * TAPS];
        let row1 = &self.table[(phase + 1) * TAPS..(phase + 2) * TAPS];
        let first = whole as i64 - (HALF_TAPS as i64 - 1);
        let mut sum = 0f32;
        for tap in 0..TAPS {
            let coefficient = row0[tap] + blend * (row1[tap] - row0[tap]);
            sum += coefficient * sample(first + tap as i64);
        }
        sum
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// The modified Bessel function of the first kind, order 0, by its power series (it converges
/// fast for the arguments a Kaiser window uses).
fn bessel_i0(x: f64) -> f64 {
    let quarter_x2 = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..64 {
        term *= quarter_x2 / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    #[test]
    fn bessel_matches_known_values() {
        // Abramowitz & Stegun table 9.8: I0(1) = 1.266065878, I0(5) = 27.23987182.
        assert!((bessel_i0(1.0) - 1.266_065_878).abs() < 1e-8);
        assert!((bessel_i0(5.0) - 27.239_871_82).abs() < 1e-6);
    }

    /// A sampled sine, interpolated between its samples, against the sine itself.
    #[test]
    fn reconstructs_a_sine_between_its_samples() {
        let interpolator = SincInterpolator::new();
        for &cycles_per_sample in &[0.0123, 0.0625, 0.105, 0.3] {
            let signal = |i: i64| ((TAU * cycles_per_sample * i as f64) + 0.3).sin() as f32;
            let mut worst = 0f64;
            for step in 0..2000 {
                let t = 500.0 + step as f64 * 0.137_1;
                let exact = (TAU * cycles_per_sample * t + 0.3).sin();
                let got = interpolator.at(t, signal) as f64;
                worst = worst.max((got - exact).abs());
            }
            // f32 samples and taps limit this to ~1e-6; 0.3 of the rate is in the passband.
            assert!(
                worst < 2e-5,
                "{cycles_per_sample} cycles/sample: error {worst}"
            );
        }
    }
}
