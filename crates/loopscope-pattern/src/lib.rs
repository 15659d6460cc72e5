//! Test patterns for bit-error-rate testing, their checker, and error-performance accounting.
//!
//! Pure: no I/O, no clocks. The BERT runner in `loopscope-link` feeds bytes and per-second
//! tallies in; this crate says what the bits mean.
//!
//! Facts transcribed from ITU-T O.150 (pattern polynomials and polarity), ITU-T G.821
//! (error-performance events) via `shared/reference/prbs-patterns.md`.

pub mod checker;
pub mod confidence;
pub mod g821;
pub mod generator;
pub mod inject;
pub mod spec;

pub use checker::{CheckCounters, Checker, CheckerConfig, Expect};
pub use generator::Generator;
pub use inject::ErrorInjector;
pub use spec::{BitOrder, PatternKind, PatternSpec, SpecError};
