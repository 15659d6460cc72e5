//! The word kernels of the PRBS generator and checker, compiled once per instruction set and
//! chosen at run time.
//!
//! Every pseudo-random pattern here is a two-tap recurrence on 64-bit words,
//! `W[i] = W[i - near] ^ W[i - far]` (see [`crate::generator`]), so generating is one XOR of two
//! earlier stretches of words. Checking in sync is cheaper still: once the last `far` received
//! words are known to equal the reference, a received word equals the reference exactly when it
//! obeys the recurrence over the *received* words, so the checker reads the buffer once and
//! writes nothing (`Isa::xor3_any`); the reference is generated only around errors.
//!
//! Those loops are the whole cost of a BERT at speed. Written once as plain Rust, they are
//! compiled by `multiversion` for AVX2 (4 words per instruction), for SSE4.1 (2 words, and
//! SSSE3's byte shuffle for the MSB-first bit order), and for the target's baseline (the
//! portable path; on x86-64 that is SSE2). [`Isa::detect`] picks the best the CPU has;
//! [`Isa::ALL`] lets the property tests run every path the machine can, each against the
//! bit-serial reference. No `unsafe` is written: `multiversion` checks the CPU before it calls
//! a clone compiled for more than the baseline. An AVX-512 set was tried on the development
//! machine (AMD Zen 4, which runs 512-bit operations as two 256-bit halves) and was no faster
//! than AVX2, so it is not offered.

use multiversion::multiversion;

/// An instruction set the word kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX2 (x86-64): 256-bit vectors.
    Avx2,
    /// SSE4.1 (x86-64): 128-bit vectors with SSSE3's byte shuffle.
    Sse41,
    /// The target's baseline instruction set, no run-time feature needed.
    Portable,
}

impl Isa {
    /// Every kernel set, best first.
    pub const ALL: [Isa; 3] = [Isa::Avx2, Isa::Sse41, Isa::Portable];

    /// Whether this CPU can run the kernels of `self`.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Sse41 => std::arch::is_x86_feature_detected!("sse4.1"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Sse41 => false,
            Isa::Portable => true,
        }
    }

    /// The best kernel set this CPU runs (std caches the CPU's features, so this is cheap).
    pub fn detect() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.available())
            .unwrap_or(Isa::Portable)
    }

    /// The kernel sets this CPU runs, best first.
    pub fn available_all() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.available()).collect()
    }

    /// A short name for reports and benches (`avx2`, `sse4.1`, `portable`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx2 => "avx2",
            Isa::Sse41 => "sse4.1",
            Isa::Portable => "portable",
        }
    }

    /// `out[i] = near[i] ^ far[i]`; the three slices have the same length.
    #[inline]
    pub(crate) fn xor2(self, out: &mut [u64], near: &[u64], far: &[u64]) {
        match self {
            Isa::Avx2 => xor2_avx2(out, near, far),
            Isa::Sse41 => xor2_sse41(out, near, far),
            Isa::Portable => xor2_body(out, near, far),
        }
    }

    /// `out[i] = near[i] ^ far[i] ^ mask` on little-endian words held as bytes (the in-place
    /// generator, which runs the recurrence on the wire words themselves).
    #[inline]
    pub(crate) fn xor2_bytes(
        self,
        out: &mut [[u8; 8]],
        near: &[[u8; 8]],
        far: &[[u8; 8]],
        mask: u64,
    ) {
        match self {
            Isa::Avx2 => xor2_bytes_avx2(out, near, far, mask),
            Isa::Sse41 => xor2_bytes_sse41(out, near, far, mask),
            Isa::Portable => xor2_bytes_body(out, near, far, mask),
        }
    }

    /// The OR over `i` of `cur[i] ^ near[i] ^ far[i] ^ mask` on little-endian words held as
    /// bytes: zero when every received word obeys the recurrence. Reads only.
    #[inline]
    pub(crate) fn xor3_any(
        self,
        cur: &[[u8; 8]],
        near: &[[u8; 8]],
        far: &[[u8; 8]],
        mask: u64,
    ) -> u64 {
        match self {
            Isa::Avx2 => xor3_any_avx2(cur, near, far, mask),
            Isa::Sse41 => xor3_any_sse41(cur, near, far, mask),
            Isa::Portable => xor3_any_body(cur, near, far, mask),
        }
    }

    /// Generates `out[i] = near[i] ^ far[i]` and compares it with the received words
    /// (`received[i]` as wire bytes, bit order undone when `msb_first`, complement `mask`).
    /// Returns the OR of all error words: zero when every bit matched.
    #[inline]
    pub(crate) fn xor2_compare(
        self,
        out: &mut [u64],
        near: &[u64],
        far: &[u64],
        received: &[[u8; 8]],
        mask: u64,
        msb_first: bool,
    ) -> u64 {
        match (self, msb_first) {
            (Isa::Avx2, false) => xor2_compare_lsb_avx2(out, near, far, received, mask),
            (Isa::Avx2, true) => xor2_compare_msb_avx2(out, near, far, received, mask),
            (Isa::Sse41, false) => xor2_compare_lsb_sse41(out, near, far, received, mask),
            (Isa::Sse41, true) => xor2_compare_msb_sse41(out, near, far, received, mask),
            (Isa::Portable, false) => xor2_compare_body::<false>(out, near, far, received, mask),
            (Isa::Portable, true) => xor2_compare_body::<true>(out, near, far, received, mask),
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// The bodies: plain loops over equal-length slices that LLVM vectorises for whatever the
// enclosing clone enables. `inline(always)` puts each into the clones below, so it is compiled
// with their target features.

#[inline(always)]
fn xor2_body(out: &mut [u64], near: &[u64], far: &[u64]) {
    let len = out.len().min(near.len()).min(far.len());
    for ((slot, x), y) in out[..len].iter_mut().zip(&near[..len]).zip(&far[..len]) {
        *slot = x ^ y;
    }
}

#[inline(always)]
fn xor2_bytes_body(out: &mut [[u8; 8]], near: &[[u8; 8]], far: &[[u8; 8]], mask: u64) {
    let len = out.len().min(near.len()).min(far.len());
    for ((slot, x), y) in out[..len].iter_mut().zip(&near[..len]).zip(&far[..len]) {
        *slot = (u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y) ^ mask).to_le_bytes();
    }
}

#[inline(always)]
fn xor3_any_body(cur: &[[u8; 8]], near: &[[u8; 8]], far: &[[u8; 8]], mask: u64) -> u64 {
    let len = cur.len().min(near.len()).min(far.len());
    let mut any = 0u64;
    for ((c, x), y) in cur[..len].iter().zip(&near[..len]).zip(&far[..len]) {
        any |= u64::from_le_bytes(*c) ^ u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y) ^ mask;
    }
    any
}

#[inline(always)]
fn xor2_compare_body<const MSB_FIRST: bool>(
    out: &mut [u64],
    near: &[u64],
    far: &[u64],
    received: &[[u8; 8]],
    mask: u64,
) -> u64 {
    let len = out.len().min(near.len()).min(far.len()).min(received.len());
    let mut any = 0u64;
    for (((slot, x), y), bytes) in out[..len]
        .iter_mut()
        .zip(&near[..len])
        .zip(&far[..len])
        .zip(&received[..len])
    {
        let want = x ^ y;
        *slot = want;
        let word = u64::from_le_bytes(*bytes);
        let got = if MSB_FIRST {
            word.reverse_bits().swap_bytes()
        } else {
            word
        };
        any |= got ^ want ^ mask;
    }
    any
}

// The clones. Each `multiversion` function has one target beside the baseline fallback, so
// `Isa` (not the macro) decides which instruction set runs and the tests can run each one.

#[multiversion(targets("x86_64+avx+avx2"))]
fn xor2_avx2(out: &mut [u64], near: &[u64], far: &[u64]) {
    xor2_body(out, near, far)
}

#[multiversion(targets("x86_64+sse2+sse3+ssse3+sse4.1"))]
fn xor2_sse41(out: &mut [u64], near: &[u64], far: &[u64]) {
    xor2_body(out, near, far)
}

#[multiversion(targets("x86_64+avx+avx2"))]
fn xor2_bytes_avx2(out: &mut [[u8; 8]], near: &[[u8; 8]], far: &[[u8; 8]], mask: u64) {
    xor2_bytes_body(out, near, far, mask)
}

#[multiversion(targets("x86_64+sse2+sse3+ssse3+sse4.1"))]
fn xor2_bytes_sse41(out: &mut [[u8; 8]], near: &[[u8; 8]], far: &[[u8; 8]], mask: u64) {
    xor2_bytes_body(out, near, far, mask)
}

#[multiversion(targets("x86_64+avx+avx2"))]
fn xor3_any_avx2(cur: &[[u8; 8]], near: &[[u8; 8]], far: &[[u8; 8]], mask: u64) -> u64 {
    xor3_any_body(cur, near, far, mask)
}

#[multiversion(targets("x86_64+sse2+sse3+ssse3+sse4.1"))]
fn xor3_any_sse41(cur: &[[u8; 8]], near: &[[u8; 8]], far: &[[u8; 8]], mask: u64) -> u64 {
    xor3_any_body(cur, near, far, mask)
}

#[multiversion(targets("x86_64+avx+avx2"))]
fn xor2_compare_lsb_avx2(
    out: &mut [u64],
    near: &[u64],
    far: &[u64],
    received: &[[u8; 8]],
    mask: u64,
) -> u64 {
    xor2_compare_body::<false>(out, near, far, received, mask)
}

#[multiversion(targets("x86_64+avx+avx2"))]
fn xor2_compare_msb_avx2(
    out: &mut [u64],
    near: &[u64],
    far: &[u64],
    received: &[[u8; 8]],
    mask: u64,
) -> u64 {
    xor2_compare_body::<true>(out, near, far, received, mask)
}

#[multiversion(targets("x86_64+sse2+sse3+ssse3+sse4.1"))]
fn xor2_compare_lsb_sse41(
    out: &mut [u64],
    near: &[u64],
    far: &[u64],
    received: &[[u8; 8]],
    mask: u64,
) -> u64 {
    xor2_compare_body::<false>(out, near, far, received, mask)
}

#[multiversion(targets("x86_64+sse2+sse3+ssse3+sse4.1"))]
fn xor2_compare_msb_sse41(
    out: &mut [u64],
    near: &[u64],
    far: &[u64],
    received: &[[u8; 8]],
    mask: u64,
) -> u64 {
    xor2_compare_body::<true>(out, near, far, received, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(seed: u64, len: usize) -> Vec<u64> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                // xorshift64: any spread of bits will do for these identities.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect()
    }

    #[test]
    fn the_portable_path_is_always_available_and_detect_picks_an_available_one() {
        assert!(Isa::Portable.available());
        assert!(Isa::detect().available());
        assert!(Isa::available_all().contains(&Isa::Portable));
    }

    #[test]
    fn every_available_kernel_set_computes_the_word_formulas() {
        for len in [0usize, 1, 3, 4, 7, 31, 56, 64, 257] {
            let near = words(1, len);
            let far = words(2, len);
            let want: Vec<u64> = near.iter().zip(&far).map(|(x, y)| x ^ y).collect();
            for isa in Isa::available_all() {
                let mut out = vec![0; len];
                isa.xor2(&mut out, &near, &far);
                assert_eq!(out, want, "{isa} xor2, {len} words");

                let as_bytes = |w: &[u64]| w.iter().map(|w| w.to_le_bytes()).collect::<Vec<_>>();
                let mut damaged = as_bytes(&want);
                assert_eq!(
                    isa.xor3_any(&damaged, &as_bytes(&near), &as_bytes(&far), 0),
                    0,
                    "{isa} xor3_any clean"
                );
                if len > 0 {
                    damaged[len - 1][7] ^= 0x81;
                    let any = isa.xor3_any(&damaged, &as_bytes(&near), &as_bytes(&far), 0);
                    assert_eq!(any, 0x81 << 56, "{isa} xor3_any damaged");
                }

                let mut out_bytes = vec![[0u8; 8]; len];
                isa.xor2_bytes(&mut out_bytes, &as_bytes(&near), &as_bytes(&far), u64::MAX);
                let inverted: Vec<u64> = want.iter().map(|w| !w).collect();
                assert_eq!(
                    out_bytes,
                    as_bytes(&inverted),
                    "{isa} xor2_bytes, {len} words"
                );

                for msb_first in [false, true] {
                    let wire: Vec<[u8; 8]> = want
                        .iter()
                        .map(|w| {
                            let w = if msb_first {
                                w.reverse_bits().swap_bytes()
                            } else {
                                *w
                            };
                            w.to_le_bytes()
                        })
                        .collect();
                    let mut out = vec![0; len];
                    let any = isa.xor2_compare(&mut out, &near, &far, &wire, 0, msb_first);
                    assert_eq!((any, &out), (0, &want), "{isa} clean, msb {msb_first}");
                    if len > 0 {
                        let mut damaged = wire.clone();
                        damaged[len / 2][3] ^= 0x10;
                        let any = isa.xor2_compare(&mut out, &near, &far, &damaged, 0, msb_first);
                        let bit = if msb_first { 24 + 3 } else { 24 + 4 };
                        assert_eq!(any, 1 << bit, "{isa} one error, msb {msb_first}");
                    }
                }
            }
        }
    }
}
