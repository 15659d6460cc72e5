//! Confidence bounds for a measured BER (Poisson model).

/// Upper bound on the true BER after `errors` errors in `bits` bits at confidence `level`
/// (0 < level < 1): lambda / bits with lambda = chi2_{level, 2(errors+1)} / 2.
pub fn ber_upper_bound(bits: u64, errors: u64, level: f64) -> f64 {
    let _ = (bits, errors, level);
    todo!()
}
