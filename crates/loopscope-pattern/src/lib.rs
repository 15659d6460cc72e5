//! Test patterns for bit-error-rate testing, their checker, and error-performance accounting.
//!
//! Pure: no I/O, no clocks. The BERT engine in `loopscope-measure` feeds bytes and per-second
//! tallies in; this crate says what the bits mean.
//!
//! Facts transcribed from ITU-T O.150 (pattern polynomials and polarity) and ITU-T G.821
//! (error-performance events).
//!
//! - [`Generator`]: every pattern as bytes, word-parallel (one XOR per 64-bit word for PRBS).
//! - [`Checker`]: self-synchronising checker with slip, burst and sync-loss handling and
//!   auto-detection; call [`Checker::finish`] at the end of a run so every bit is accounted.
//! - [`ErrorInjector`]: reproducible random, burst and single errors for the transmit side.
//! - [`chars`]: the pattern laid out in characters of 5, 6 or 7 data bits, and back.
//! - [`g821`]: errored / severely errored / unavailable seconds; [`confidence`]: the Poisson
//!   upper bound on a measured BER.
//! - [`framing`]: T1 (SF, ESF with CRC-6 and the FDL) and E1 (G.704, CRC-4 multiframe)
//!   framer and deframer; [`loopcode`]: in-band loop codes and ESF bit-oriented messages with
//!   their detectors; [`g826`]: block-based errored / severely errored seconds and BBE.

#![forbid(unsafe_code)]

mod availability;
pub mod chars;
pub mod checker;
pub mod confidence;
pub mod framing;
pub mod g821;
pub mod g826;
mod generator;
mod inject;
pub mod loopcode;
mod simd;
pub mod spec;

pub use checker::{CheckCounters, Checker, CheckerConfig, Expect};
pub use generator::Generator;
pub use inject::ErrorInjector;
pub use simd::Isa;
pub use spec::{BitOrder, PatternKind, PatternSpec, SpecError};
