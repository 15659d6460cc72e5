//! What every fuzz target links: the allocation bound of the campaign's goal.
//!
//! libFuzzer's `-malloc_limit_mb` sees allocations only through a sanitizer's malloc hooks, so a
//! build without a sanitizer (`bench/fuzz.sh` with `FUZZ_SANITIZER=none`) would miss an
//! allocation over 256 MiB that is never touched (its pages never count in RSS, which
//! `-rss_limit_mb` watches). The Rust heap is therefore capped here at 256 MiB: a larger
//! request fails, Rust aborts with "memory allocation of N bytes failed", and libFuzzer keeps the
//! input as a crash. With the address sanitizer both bounds apply.
//!
//! Each target says `use loopscope_fuzz as _;` so that this crate, and its allocator, is linked.

use std::alloc::System;

/// The goal's bound: no input may make the code under test hold more than this.
pub const HEAP_LIMIT_BYTES: usize = 256 * 1024 * 1024;

#[global_allocator]
static ALLOCATOR: cap::Cap<System> = cap::Cap::new(System, HEAP_LIMIT_BYTES);
