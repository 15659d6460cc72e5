//! Confidence bounds for a measured BER (Poisson model).
//!
//! The number of errors in `N` bits at a true BER `p` is taken as Poisson with mean
//! `lambda = N p`. The upper bound at confidence `CL` after `E` errors is the `lambda` for which
//! `P(X <= E) = 1 - CL`, i.e. `lambda = chi2_{CL, 2(E+1)} / 2` (the chi-square relation of the
//! Poisson distribution; the tests check a table of it). We find it by bisection on
//! the Poisson CDF, summed in log space from the `k = E` term downwards so that millions of
//! errors cost only a few thousand terms; no statistics crate is needed for one quantile.

/// Upper bound on the true BER after `errors` errors in `bits` bits at confidence `level`
/// (0 < level < 1): lambda / bits with lambda = chi2_{level, 2(errors+1)} / 2.
///
/// With no bits measured nothing is known and the bound is 1. The result never exceeds 1.
/// A `level` outside (0, 1) is clamped into it.
pub fn ber_upper_bound(bits: u64, errors: u64, level: f64) -> f64 {
    if bits == 0 {
        return 1.0;
    }
    (poisson_upper_mean(errors, level) / bits as f64).min(1.0)
}

/// The Poisson mean `lambda` with `P(X <= errors) = 1 - level`.
pub fn poisson_upper_mean(errors: u64, level: f64) -> f64 {
    let level = if level.is_nan() { 0.95 } else { level };
    let tail = (1.0 - level).clamp(1e-15, 1.0 - 1e-12);
    let e = errors as f64;
    let mut low = 0.0f64;
    let mut high = e + 40.0 * (e + 1.0).sqrt() + 60.0;
    // The CDF falls as lambda grows.
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if poisson_cdf(errors, mid) > tail {
            low = mid;
        } else {
            high = mid;
        }
        if high - low <= 1e-12 * high.max(1.0) {
            break;
        }
    }
    0.5 * (low + high)
}

/// `P(X <= k)` for `X ~ Poisson(lambda)`.
pub fn poisson_cdf(k: u64, lambda: f64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 1.0;
    }
    let kf = k as f64;
    if kf > lambda + 30.0 * lambda.sqrt() + 30.0 {
        // More than 30 standard deviations above the mean (and tiny means): all the mass.
        return 1.0;
    }
    // ln P(X = k) = -lambda + k ln(lambda) - ln(k!); then P(X = j-1) = P(X = j) * j / lambda.
    let mut log_scale = -lambda + kf * lambda.ln() - ln_factorial(k);
    let mut sum = 0.0f64;
    let mut term = 1.0f64;
    let mut j = k;
    loop {
        sum += term;
        if j == 0 {
            break;
        }
        term *= j as f64 / lambda;
        j -= 1;
        if term > 1e200 {
            // Terms still growing towards the mode: rescale to stay finite.
            term *= 1e-200;
            sum *= 1e-200;
            log_scale += 200.0 * std::f64::consts::LN_10;
        }
        if (j as f64) < lambda && term < sum * 1e-17 {
            break;
        }
    }
    (log_scale + sum.ln()).exp().min(1.0)
}

/// ln(k!): exact sum for small k, Stirling's series beyond.
fn ln_factorial(k: u64) -> f64 {
    if k < 64 {
        return (2..=k).map(|i| (i as f64).ln()).sum();
    }
    let x = k as f64 + 1.0;
    // ln Gamma(x) by Stirling with three correction terms (error < 1e-12 for x > 64).
    (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / (12.0 * x)
        - 1.0 / (360.0 * x.powi(3))
        + 1.0 / (1260.0 * x.powi(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of chi2_{CL, 2(E+1)} / 2 as statistics tables give them (three decimals).
    #[test]
    fn matches_the_chi_square_table() {
        let table: [(f64, [f64; 6]); 3] = [
            (0.90, [2.303, 3.890, 5.322, 6.681, 7.994, 9.275]),
            (0.95, [2.996, 4.744, 6.296, 7.754, 9.154, 10.513]),
            (0.99, [4.605, 6.638, 8.406, 10.045, 11.605, 13.108]),
        ];
        for (level, row) in table {
            for (errors, want) in row.iter().enumerate() {
                let got = poisson_upper_mean(errors as u64, level);
                assert!(
                    (got - want).abs() < 1.5e-3,
                    "CL {level} E {errors}: {got} vs {want}"
                );
                let bound = ber_upper_bound(1_000_000, errors as u64, level);
                assert!((bound - want / 1e6).abs() < 1.5e-9);
            }
        }
        // E = 0 closed form: -ln(1 - CL).
        assert!((poisson_upper_mean(0, 0.95) - (20.0f64).ln()).abs() < 1e-9);
    }

    #[test]
    fn large_counts_approach_the_normal_bound() {
        // For large E the bound is about E + z sqrt(E) (+ small corrections); z(95%) = 1.645.
        let e = 1_000_000u64;
        let got = poisson_upper_mean(e, 0.95);
        let approx = e as f64 + 1.645 * (e as f64).sqrt();
        assert!((got - approx).abs() < 5.0, "{got} vs {approx}");
        assert_eq!(ber_upper_bound(0, 0, 0.95), 1.0);
        assert!(ber_upper_bound(10, 10, 0.99) <= 1.0);
        assert!(ber_upper_bound(1000, 1, f64::NAN).is_finite());
    }
}
