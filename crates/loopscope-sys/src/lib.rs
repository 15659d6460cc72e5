//! Every syscall wrapper and every `unsafe` block of loopscope live here, so that every other
//! crate can say `#![forbid(unsafe_code)]`. Each module wraps one kernel interface and offers a
//! safe API; each `unsafe` block carries a SAFETY comment.
//!
//! Prefer rustix or nix where they already offer the call safely; what is here is what they do
//! not cover (or cover in a way the callers cannot use).

pub mod icmp6;
