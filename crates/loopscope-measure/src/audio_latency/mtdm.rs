//! Multi-tone delay measurement: the round trip of an audio path from the phases of 13 tones.
//!
//! The method is the satellite-ranging one F. Adriaensen describes for `jack_delay`: a delay
//! `D` turns the phase of a tone of frequency `f` by `D·f` cycles, which one tone only tells
//! modulo its period. A fine tone fixes `D` precisely modulo its period; each further tone is
//! chosen so that an integer combination of its phase and the fine tone's is the phase of a
//! *virtual* tone of half the frequency of the previous one, which doubles the range that is
//! resolved. Twelve such steps from a fine period of 16 frames reach 65,536 frames.
//!
//! The tone set here is our own. All tones are whole multiples `k` of `rate/65536`, so a window
//! of 65,536 frames holds whole cycles of each. The fine tone is `k0 = 4096` (`rate/16`); tone
//! `k` with `b·k − a·k0 = ±v` gives the virtual tone `v` as `±(b·Pk − a·P0)` (phases in cycles,
//! modulo 1). For `v = 1, 2, 4 … 2048` the pairs were searched so that the tones lie between
//! `rate/63` and `rate/9.5` (762 Hz to 5.1 kHz at 48 kHz), at least 268 bins apart, and no
//! second or third harmonic nor second-order or `2f1−f2` intermodulation product of any two
//! tones falls within 2 bins of a third: a mildly non-linear path bends no tone's phase.
//!
//! Each window of 65,536 frames is weighed by a Hann window, computed from three plain DFT bins
//! per tone (`0.5·X[k] − 0.25·X[k−1] − 0.25·X[k+1]`, each shifted to the window's start), so a
//! tone that a drifting clock moves off its bin does not leak into the others. The bins are
//! summed per hop of 8192 frames and a reading is the sum of the last eight hops: one reading
//! every 8192 frames, each over the last 65,536.
//!
//! After the coarse steps, the delay is refined by a weighted least-squares fit of all 13
//! phases, and the fit's worst residual says whether the phases agree (a path that is not
//! linear-phase, or noise too strong, leaves them disagreeing). Polarity is found by fitting
//! both hypotheses: an inverted signal turns every tone by half a cycle, which no delay can
//! imitate because the set has an odd `k` (3277).

use std::f64::consts::TAU;

/// Frames per analysis window, and the range of delays told apart.
pub const WINDOW: usize = 65_536;
/// Frames between readings.
pub const HOP: usize = 8_192;
const HOPS: usize = WINDOW / HOP;

/// One test tone: its bin `k` (frequency `k·rate/WINDOW`) and how it resolves range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tone {
    /// The tone's DFT bin over a [`WINDOW`]: its frequency is `bin·rate/WINDOW`.
    pub bin: u32,
    /// `(v, a, b, sign)`: `b·bin − a·FINE = sign·v`; `None` for the fine tone.
    pub beat: Option<(u32, i32, i32, i32)>,
}

/// The fine tone's bin.
pub const FINE: u32 = 4096;

/// The tones, fine tone first, then the virtual tones from 2048 down to 1.
pub const TONES: [Tone; 13] = [
    Tone {
        bin: FINE,
        beat: None,
    },
    Tone {
        bin: 3584,
        beat: Some((2048, 3, 4, 1)),
    },
    Tone {
        bin: 6912,
        beat: Some((1024, 7, 4, -1)),
    },
    Tone {
        bin: 6400,
        beat: Some((512, 3, 2, 1)),
    },
    Tone {
        bin: 5184,
        beat: Some((256, 5, 4, 1)),
    },
    Tone {
        bin: 2688,
        beat: Some((128, 2, 3, -1)),
    },
    Tone {
        bin: 1040,
        beat: Some((64, 1, 4, 1)),
    },
    Tone {
        bin: 1632,
        beat: Some((32, 2, 5, -1)),
    },
    Tone {
        bin: 5456,
        beat: Some((16, 4, 3, -1)),
    },
    Tone {
        bin: 2044,
        beat: Some((8, 1, 2, -1)),
    },
    Tone {
        bin: 1364,
        beat: Some((4, 1, 3, -1)),
    },
    Tone {
        bin: 5734,
        beat: Some((2, 7, 5, -1)),
    },
    Tone {
        bin: 3277,
        beat: Some((1, 4, 5, 1)),
    },
];
const NTONES: usize = TONES.len();
/// Three DFT bins per tone (k−1, k, k+1), padded to a multiple of 4 for vectorising.
const NBINS: usize = 40;

/// The test signal: 13 tones of equal amplitude, one period of `WINDOW` frames.
#[derive(Debug, Clone)]
pub struct TestSignal {
    /// Amplitude of each tone (full scale 1.0).
    pub amplitude: f64,
    /// Start phase of each tone, radians.
    pub phases: [f64; NTONES],
    /// One period of the signal.
    period: Vec<f32>,
}

impl TestSignal {
    /// A signal whose peak is `peak_dbfs` (0 dBFS: full scale).
    pub fn new(peak_dbfs: f64) -> Self {
        // Schroeder's phases spread the tones' peaks; the peak is then measured, not assumed.
        let phases: [f64; NTONES] =
            std::array::from_fn(|i| std::f64::consts::PI * (i * i) as f64 / NTONES as f64);
        let unit: Vec<f64> = (0..WINDOW)
            .map(|n| {
                TONES
                    .iter()
                    .zip(&phases)
                    .map(|(tone, phase)| {
                        let cycles = ((tone.bin as usize * n) % WINDOW) as f64 / WINDOW as f64;
                        (TAU * cycles + phase).cos()
                    })
                    .sum()
            })
            .collect();
        let peak = unit.iter().fold(0f64, |m, v| m.max(v.abs()));
        let amplitude = 10f64.powf(peak_dbfs / 20.0) / peak;
        let period = unit.iter().map(|v| (v * amplitude) as f32).collect();
        TestSignal {
            amplitude,
            phases,
            period,
        }
    }

    /// Frame `n` of the signal.
    pub fn frame(&self, n: u64) -> f32 {
        self.period[(n % WINDOW as u64) as usize]
    }

    /// Writes frames `first..first + out.len()`.
    pub fn render(&self, first: u64, out: &mut [f32]) {
        let mut index = (first % WINDOW as u64) as usize;
        for slot in out {
            *slot = self.period[index];
            index = (index + 1) % WINDOW;
        }
    }

    /// RMS level in dBFS (AES17: a full-scale sine is 0 dBFS).
    pub fn rms_dbfs(&self) -> f64 {
        10.0 * (NTONES as f64 * self.amplitude * self.amplitude).log10()
    }
}

/// Why a window gave no delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoReading {
    /// Silence, or the tones are not above the noise.
    NoSignal,
    /// The level changed within the window (the signal is arriving or leaving).
    Settling,
    /// The tones' phases do not agree on one delay (too much noise, or a path that is not
    /// linear-phase).
    Inconsistent,
}

/// What one window measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Round trip in frames, −1 to `WINDOW − 1`.
    pub delay_frames: f64,
    /// The signal came back inverted (every tone turned by half a cycle).
    pub inverted: bool,
    /// Received tone amplitude over sent, dB.
    pub gain_db: f64,
    /// RMS of the received test signal, dBFS (AES17).
    pub level_dbfs: f64,
    /// Test signal over everything else in the window, dB.
    pub snr_db: f64,
    /// Worst disagreement of a tone's phase with the fitted delay, in cycles.
    pub residual_cycles: f64,
}

/// One reading: a window's result and where the window lies in the received stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Received frame index of the window's centre.
    pub centre_frame: u64,
    /// The window's delay, or why it has none.
    pub result: Result<Measurement, NoReading>,
}

/// Below this RMS (about −140 dBFS) a window is silence.
const SILENCE_POWER: f64 = 1e-14;
/// Each tone must stand this far above the noise in its (Hann-windowed) bin: 20 dB.
const MIN_BIN_SNR: f64 = 100.0;
/// The hops of a steady signal differ in power by far less than this (0.5 dB; noise alone
/// varies by about 0.07 dB per hop of 8192 frames).
const MAX_HOP_SPREAD: f64 = 1.122_018_5;
/// Tones whose phases disagree by more than this with the fit make the reading inconsistent.
const MAX_RESIDUAL_CYCLES: f64 = 0.05;

/// The analyser: feed it the recorded stream, it gives a reading every [`HOP`] frames once a
/// whole window has been seen.
pub struct Analyzer {
    sent_phases: [f64; NTONES],
    sent_amplitude: f64,
    /// Each bin's rotation per frame, `e^{-j2πk/N}`.
    step_re: [f64; NBINS],
    step_im: [f64; NBINS],
    bins: [u32; NBINS],
    /// The running phasor `e^{-j2πk·n/N}` and the current hop's sums.
    z_re: [f64; NBINS],
    z_im: [f64; NBINS],
    acc_re: [f64; NBINS],
    acc_im: [f64; NBINS],
    acc_power: f64,
    /// The last `HOPS` hops' sums.
    ring_re: [[f64; NBINS]; HOPS],
    ring_im: [[f64; NBINS]; HOPS],
    ring_power: [f64; HOPS],
    hops_done: u64,
    /// Whole hops taken since the last break in the stream (see [`Analyzer::discontinuity`]).
    hops_since_gap: u64,
    /// The hop in progress holds frames from before a break.
    gap_in_hop: bool,
    /// Frames taken so far (the index of the next frame).
    frame: u64,
    in_hop: usize,
}

fn wrap_half(cycles: f64) -> f64 {
    cycles - cycles.round()
}

fn wrap_unit(cycles: f64) -> f64 {
    cycles - cycles.floor()
}

impl Analyzer {
    /// An analyser for the recording of `signal` (the tones' sent phases and amplitude).
    pub fn new(signal: &TestSignal) -> Self {
        let mut bins = [0u32; NBINS];
        for (i, tone) in TONES.iter().enumerate() {
            bins[3 * i] = tone.bin - 1;
            bins[3 * i + 1] = tone.bin;
            bins[3 * i + 2] = tone.bin + 1;
        }
        // The padding bin repeats a real one; its sums are never read.
        bins[NBINS - 1] = FINE;
        let step = |k: u32| -TAU * k as f64 / WINDOW as f64;
        let mut analyzer = Analyzer {
            sent_phases: signal.phases,
            sent_amplitude: signal.amplitude,
            step_re: bins.map(|k| step(k).cos()),
            step_im: bins.map(|k| step(k).sin()),
            bins,
            z_re: [0.0; NBINS],
            z_im: [0.0; NBINS],
            acc_re: [0.0; NBINS],
            acc_im: [0.0; NBINS],
            acc_power: 0.0,
            ring_re: [[0.0; NBINS]; HOPS],
            ring_im: [[0.0; NBINS]; HOPS],
            ring_power: [0.0; HOPS],
            hops_done: 0,
            hops_since_gap: HOPS as u64,
            gap_in_hop: false,
            frame: 0,
            in_hop: 0,
        };
        analyzer.reset_phasors();
        analyzer
    }

    /// Sets each phasor exactly from the frame index, so rounding never accumulates past a hop.
    fn reset_phasors(&mut self) {
        let n = self.frame % WINDOW as u64;
        for b in 0..NBINS {
            let turns = (self.bins[b] as u64 * n) % WINDOW as u64;
            let angle = -TAU * turns as f64 / WINDOW as f64;
            self.z_re[b] = angle.cos();
            self.z_im[b] = angle.sin();
        }
    }

    /// The stream broke (an xrun restarted the device): frames before and after may not keep
    /// the same delay, and a window holding both would read a blend of the two. No reading is
    /// made until a whole window has been taken after the break.
    pub fn discontinuity(&mut self) {
        self.hops_since_gap = 0;
        self.gap_in_hop = self.in_hop > 0;
    }

    /// Takes recorded frames; calls `on_reading` for each reading they complete.
    pub fn push(&mut self, mut input: &[f32], on_reading: &mut dyn FnMut(Reading)) {
        while !input.is_empty() {
            let take = (HOP - self.in_hop).min(input.len());
            self.accumulate(&input[..take]);
            input = &input[take..];
            self.in_hop += take;
            self.frame += take as u64;
            if self.in_hop == HOP {
                self.in_hop = 0;
                if let Some(reading) = self.end_hop() {
                    on_reading(reading);
                }
            }
        }
    }

    /// The inner loop: one complex multiply-add and one phasor rotation per bin and frame, over
    /// fixed-size arrays the compiler vectorises.
    fn accumulate(&mut self, input: &[f32]) {
        let (mut z_re, mut z_im) = (self.z_re, self.z_im);
        let (mut acc_re, mut acc_im) = (self.acc_re, self.acc_im);
        let (step_re, step_im) = (&self.step_re, &self.step_im);
        let mut power = 0.0;
        for &sample in input {
            let x = sample as f64;
            power += x * x;
            for b in 0..NBINS {
                acc_re[b] += x * z_re[b];
                acc_im[b] += x * z_im[b];
                let re = z_re[b] * step_re[b] - z_im[b] * step_im[b];
                let im = z_re[b] * step_im[b] + z_im[b] * step_re[b];
                z_re[b] = re;
                z_im[b] = im;
            }
        }
        self.z_re = z_re;
        self.z_im = z_im;
        self.acc_re = acc_re;
        self.acc_im = acc_im;
        self.acc_power += power;
    }

    fn end_hop(&mut self) -> Option<Reading> {
        let slot = (self.hops_done % HOPS as u64) as usize;
        self.ring_re[slot] = self.acc_re;
        self.ring_im[slot] = self.acc_im;
        self.ring_power[slot] = self.acc_power;
        self.acc_re = [0.0; NBINS];
        self.acc_im = [0.0; NBINS];
        self.acc_power = 0.0;
        self.hops_done += 1;
        if self.gap_in_hop {
            self.gap_in_hop = false;
        } else {
            self.hops_since_gap += 1;
        }
        self.reset_phasors();
        if self.hops_done < HOPS as u64 || self.hops_since_gap < HOPS as u64 {
            return None;
        }
        Some(Reading {
            centre_frame: self.frame - WINDOW as u64 / 2,
            result: self.measure(),
        })
    }

    fn measure(&self) -> Result<Measurement, NoReading> {
        let n = WINDOW as f64;
        let power: f64 = self.ring_power.iter().sum::<f64>() / n;
        if power < SILENCE_POWER {
            return Err(NoReading::NoSignal);
        }
        let mut x_re = [0.0; NBINS];
        let mut x_im = [0.0; NBINS];
        for hop in 0..HOPS {
            for b in 0..NBINS {
                x_re[b] += self.ring_re[hop][b];
                x_im[b] += self.ring_im[hop][b];
            }
        }
        // The Hann window's cosine is anchored at the window's first frame.
        let start = (self.frame - WINDOW as u64) % WINDOW as u64;
        let anchor = TAU * start as f64 / n;
        let (anchor_sin, anchor_cos) = anchor.sin_cos();
        let mut amplitude = [0.0; NTONES];
        let mut phase_cycles = [0.0; NTONES];
        for i in 0..NTONES {
            let (lo, mid, hi) = (3 * i, 3 * i + 1, 3 * i + 2);
            // e^{-jθ}·X[k−1] and e^{+jθ}·X[k+1]
            let lo_re = anchor_cos * x_re[lo] + anchor_sin * x_im[lo];
            let lo_im = anchor_cos * x_im[lo] - anchor_sin * x_re[lo];
            let hi_re = anchor_cos * x_re[hi] - anchor_sin * x_im[hi];
            let hi_im = anchor_cos * x_im[hi] + anchor_sin * x_re[hi];
            let y_re = 0.5 * x_re[mid] - 0.25 * (lo_re + hi_re);
            let y_im = 0.5 * x_im[mid] - 0.25 * (lo_im + hi_im);
            // A tone A·cos(2πkn/N + θ) gives Y = A·N/4·e^{jθ}.
            amplitude[i] = 4.0 * y_re.hypot(y_im) / n;
            let received = y_im.atan2(y_re);
            phase_cycles[i] = wrap_unit((self.sent_phases[i] - received) / TAU);
        }
        let tone_power: f64 = amplitude.iter().map(|a| a * a / 2.0).sum();
        // The noise is what the window holds outside the tones' three bins each (Parseval over
        // the plain DFT: a bin's share of the mean square is 2·|X|²/N²). Subtracting the
        // Hann estimate instead would leave the signal-noise cross terms in, which at 40 dB
        // are as large as the noise itself. A drifting clock spreads a tone past its three
        // bins, so then the noise (and the SNR) is an upper (lower) bound.
        let in_tone_bins: f64 = (0..3 * NTONES)
            .map(|b| 2.0 * (x_re[b] * x_re[b] + x_im[b] * x_im[b]) / (n * n))
            .sum();
        let noise_power = (power - in_tone_bins).max(power * 1e-15);
        // A Hann-windowed bin holds 3N/8 times the noise's per-frame power.
        let bin_noise = noise_power * 3.0 * n / 8.0;
        let weakest = amplitude
            .iter()
            .map(|a| (a * n / 4.0).powi(2) / bin_noise)
            .fold(f64::INFINITY, f64::min);
        if weakest < MIN_BIN_SNR {
            return Err(NoReading::NoSignal);
        }
        let (least, most) = self
            .ring_power
            .iter()
            .fold((f64::INFINITY, 0f64), |(lo, hi), p| {
                (lo.min(*p), hi.max(*p))
            });
        if least <= 0.0 || most / least > MAX_HOP_SPREAD {
            return Err(NoReading::Settling);
        }
        let weights: [f64; NTONES] =
            std::array::from_fn(|i| (TONES[i].bin as f64 * amplitude[i]).powi(2));
        let normal = decode(&phase_cycles, &weights);
        let flipped_phases = phase_cycles.map(|p| wrap_unit(p - 0.5));
        let inverted = decode(&flipped_phases, &weights);
        let (fit, is_inverted) = if inverted.1 < normal.1 {
            (inverted, true)
        } else {
            (normal, false)
        };
        if fit.1 > MAX_RESIDUAL_CYCLES {
            return Err(NoReading::Inconsistent);
        }
        let mean_square_gain = amplitude.iter().map(|a| a * a).sum::<f64>()
            / NTONES as f64
            / self.sent_amplitude.powi(2);
        Ok(Measurement {
            delay_frames: fit.0,
            inverted: is_inverted,
            gain_db: 10.0 * mean_square_gain.log10(),
            level_dbfs: 10.0 * (2.0 * tone_power).log10(),
            snr_db: 10.0 * (tone_power / noise_power).log10(),
            residual_cycles: fit.1,
        })
    }
}

/// The delay (frames, `-1..WINDOW-1`) from the tones' phase lags in cycles (`{k·D/N}`), and the
/// worst residual of the fit in cycles.
pub fn decode(phases: &[f64; NTONES], weights: &[f64; NTONES]) -> (f64, f64) {
    let n = WINDOW as f64;
    let fine = phases[0];
    // The fine tone: D modulo its period (16 frames).
    let mut period = n / FINE as f64;
    let mut delay = fine * period;
    for (tone, phase) in TONES.iter().zip(phases).skip(1) {
        let Some((v, a, b, sign)) = tone.beat else {
            continue;
        };
        let measured = wrap_unit(sign as f64 * (b as f64 * phase - a as f64 * fine));
        let candidates = [delay, delay + period];
        delay = candidates
            .into_iter()
            .min_by(|x, y| {
                let miss = |c: &f64| wrap_half(measured - c * v as f64 / n).abs();
                miss(x).total_cmp(&miss(y))
            })
            .unwrap_or(delay);
        period = n / v as f64;
    }
    // Refine with every tone, each unwrapped around the coarse delay.
    let mut sum = 0.0;
    let mut total = 0.0;
    for ((tone, phase), weight) in TONES.iter().zip(phases).zip(weights) {
        let k = tone.bin as f64;
        let offset = wrap_half(phase - k * delay / n) * n / k;
        sum += weight * offset;
        total += weight;
    }
    if total > 0.0 {
        delay += sum / total;
    }
    // Reported within −1 ..< N−1 frames, so a delay of zero reads as about zero, not N.
    let delay = (delay + 1.0).rem_euclid(n) - 1.0;
    let residual = TONES
        .iter()
        .zip(phases)
        .map(|(tone, phase)| wrap_half(phase - tone.bin as f64 * delay / n).abs())
        .fold(0f64, f64::max);
    (delay, residual)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop whose delay jumps from 512 to 256 frames at an xrun: without the break marked,
    /// most windows that hold both are refused as inconsistent, but those with a little of one
    /// delay read the other off by up to 0.05 frame; marked, no reading is made until a whole
    /// window after it, and every reading is one delay or the other to within 0.001 frame.
    #[test]
    fn a_marked_break_keeps_windows_from_blending_two_delays() {
        let signal = TestSignal::new(-6.0);
        let record = |analyzer: &mut Analyzer, mark: bool| -> Vec<f64> {
            let mut readings = Vec::new();
            let mut keep = |r: Reading| {
                if let Ok(m) = r.result {
                    readings.push(m.delay_frames);
                }
            };
            let period = 256usize;
            let mut frame = 0u64;
            for cycle in 0..(4 * WINDOW / period) {
                if cycle == 2 * WINDOW / period && mark {
                    analyzer.discontinuity();
                }
                let delay = if cycle < 2 * WINDOW / period {
                    512
                } else {
                    256
                };
                let mut input = vec![0.0f32; period];
                if frame >= delay {
                    signal.render(frame - delay, &mut input);
                }
                analyzer.push(&input, &mut keep);
                frame += period as u64;
            }
            readings
        };
        let blended = record(&mut Analyzer::new(&signal), false);
        assert!(
            blended
                .iter()
                .any(|d| (d - 512.0).abs() > 0.005 && (d - 256.0).abs() > 0.005),
            "no blend without the mark: {blended:?}"
        );
        let marked = record(&mut Analyzer::new(&signal), true);
        assert!(
            marked.iter().any(|d| (d - 256.0).abs() < 0.01),
            "{marked:?}"
        );
        for delay in &marked {
            assert!(
                (delay - 512.0).abs() < 0.01 || (delay - 256.0).abs() < 0.01,
                "a blended reading after the mark: {marked:?}"
            );
        }
    }

    #[test]
    fn the_tone_set_resolves_the_range_it_claims() {
        for tone in &TONES[1..] {
            let (v, a, b, sign) = tone.beat.unwrap();
            assert_eq!(
                b as i64 * tone.bin as i64 - a as i64 * FINE as i64,
                sign as i64 * v as i64,
                "tone {}",
                tone.bin
            );
        }
        let mut virtuals: Vec<u32> = TONES[1..].iter().map(|t| t.beat.unwrap().0).collect();
        virtuals.sort_unstable();
        assert_eq!(virtuals, (0..12).map(|j| 1 << j).collect::<Vec<_>>());
        // The beats are walked from the highest virtual tone down.
        assert!(
            TONES[1..]
                .windows(2)
                .all(|w| w[0].beat.unwrap().0 > w[1].beat.unwrap().0)
        );
    }

    /// No delay other than the true one (nor an inverted signal at any delay) gives phases
    /// close to the true ones: the worst tone misses by at least 0.1 cycle. Checked over the
    /// whole range by brute force, independently of the decoder.
    #[test]
    fn no_other_delay_or_polarity_imitates_a_delay() {
        let mut closest_other = f64::INFINITY;
        let mut closest_inverted = f64::INFINITY;
        let steps = WINDOW * 8;
        for step in 0..steps {
            let shift = step as f64 / 8.0;
            let miss = |extra: f64| {
                TONES
                    .iter()
                    .map(|t| wrap_half(t.bin as f64 * shift / WINDOW as f64 + extra).abs())
                    .fold(0f64, f64::max)
            };
            // Within 2 frames of the truth the miss grows smoothly from 0: that is the
            // measurement's own neighbourhood, not another delay.
            if (2.0..=WINDOW as f64 - 2.0).contains(&shift) {
                closest_other = closest_other.min(miss(0.0));
            }
            closest_inverted = closest_inverted.min(miss(0.5));
        }
        assert!(closest_other > 0.1, "{closest_other}");
        assert!(closest_inverted > 0.1, "{closest_inverted}");
    }

    #[test]
    fn decodes_exact_phases_over_the_whole_range() {
        let weights = [1.0; NTONES];
        for &delay in &[0.0, 0.5, 15.999, 16.0, 123.456, 4097.3, 40_000.25, 65_534.5] {
            let phases = TONES.map(|t| wrap_unit(t.bin as f64 * delay / WINDOW as f64));
            let (got, residual) = decode(&phases, &weights);
            assert!((got - delay).abs() < 1e-6, "{delay}: {got}");
            assert!(residual < 1e-9);
        }
    }

    #[test]
    fn decodes_through_phase_noise_of_a_hundredth_of_a_cycle() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let weights = TONES.map(|t| (t.bin as f64).powi(2));
        for _ in 0..10_000 {
            let delay = rng.random_range(0.0..WINDOW as f64);
            let phases = TONES.map(|t| {
                wrap_unit(t.bin as f64 * delay / WINDOW as f64 + rng.random_range(-0.01..0.01))
            });
            let (got, _) = decode(&phases, &weights);
            // A wrong coarse step would miss by 16 frames or more.
            let error = wrap_half((got - delay) / WINDOW as f64) * WINDOW as f64;
            assert!(error.abs() < 0.2, "{delay}: {got}");
        }
    }

    #[test]
    fn the_signal_peaks_where_asked_and_its_level_is_known() {
        let signal = TestSignal::new(-6.0);
        let peak = (0..WINDOW as u64)
            .map(|n| signal.frame(n).abs())
            .fold(0f32, f32::max);
        assert!((20.0 * (peak as f64).log10() + 6.0).abs() < 0.01);
        let mean_square = (0..WINDOW as u64)
            .map(|n| (signal.frame(n) as f64).powi(2))
            .sum::<f64>()
            / WINDOW as f64;
        let rms_dbfs = 10.0 * (2.0 * mean_square).log10();
        assert!((rms_dbfs - signal.rms_dbfs()).abs() < 0.01);
    }

    /// The signal itself, delayed by whole frames (no interpolation involved), analysed.
    #[test]
    fn measures_an_integer_delay_of_its_own_signal() {
        let signal = TestSignal::new(-6.0);
        for &delay in &[0u64, 1, 256, 40_000] {
            let mut analyzer = Analyzer::new(&signal);
            let input: Vec<f32> = (0..WINDOW as u64 * 2 + HOP as u64)
                .map(|n| {
                    if n < delay {
                        0.0
                    } else {
                        signal.frame(n - delay)
                    }
                })
                .collect();
            let mut readings = Vec::new();
            analyzer.push(&input, &mut |r| readings.push(r));
            let last = readings.last().unwrap().result.unwrap();
            assert!(
                (last.delay_frames - delay as f64).abs() < 1e-4,
                "{delay}: {last:?}"
            );
            assert!(!last.inverted);
            assert!(last.gain_db.abs() < 0.01, "{last:?}");
        }
    }

    #[test]
    fn silence_and_noise_are_no_signal() {
        let signal = TestSignal::new(-6.0);
        let mut analyzer = Analyzer::new(&signal);
        let mut readings = Vec::new();
        analyzer.push(&vec![0.0; WINDOW * 2], &mut |r| readings.push(r));
        assert!(!readings.is_empty());
        assert!(
            readings
                .iter()
                .all(|r| r.result == Err(NoReading::NoSignal))
        );

        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
        let noise: Vec<f32> = (0..WINDOW * 2)
            .map(|_| rng.random_range(-0.5f32..0.5))
            .collect();
        let mut analyzer = Analyzer::new(&signal);
        let mut readings = Vec::new();
        analyzer.push(&noise, &mut |r| readings.push(r));
        assert!(
            readings
                .iter()
                .all(|r| r.result == Err(NoReading::NoSignal))
        );
    }
}
