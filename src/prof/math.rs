//! The two functions of the C math library the profiler needs, `ln` for
//! its exponential intervals and `1 - exp(-x)` for its sample weights,
//! computed here so that libobmem.so does not link libm: every program
//! run under `LD_PRELOAD` would otherwise load one more library at start
//! (about 0.1 ms per process, which a build or a shell script starting
//! thousands of processes pays thousands of times). Both are accurate to
//! about 1e-15 relative, far below what sampling needs.

const LN2: f64 = core::f64::consts::LN_2;

/// The natural logarithm of a positive, finite, normal `x`.
pub(super) fn ln(x: f64) -> f64 {
    debug_assert!(x.is_normal() && x > 0.0);
    // x = m * 2^e with m in [sqrt(1/2), sqrt(2)).
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln(m) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), |s| <= 0.172.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut sum = 0.0;
    let mut k = 21.0;
    while k > 1.0 {
        sum = s2 * (1.0 / k + sum);
        k -= 2.0;
    }
    2.0 * s * (1.0 + sum) + e as f64 * LN2
}

/// `1 - exp(-x)` for `x >= 0` (the probability that a Poisson process of
/// mean interval 1 has a point in an interval of length `x`). For small
/// `x` the caller uses the series instead: here the subtraction loses
/// about `1 / x` ulps, a factor of 64 at most where the profiler calls it.
pub(super) fn one_minus_exp_neg(x: f64) -> f64 {
    debug_assert!(x >= 0.0);
    if x > 745.0 {
        return 1.0; // exp(-x) is below the smallest f64
    }
    // -x = k ln 2 + r, |r| <= ln 2 / 2. (Rounded with `as`, which truncates:
    // `f64::round` is not in core, and 0 <= x / ln 2 < 1075 here.)
    let k = -(((x / LN2 + 0.5) as i64) as f64);
    let r = -x - k * LN2;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut i = 1.0;
    while i < 18.0 {
        term *= r / i;
        sum += term;
        i += 1.0;
    }
    // 2^k, k in [-1075, 0]: through a subnormal-safe two-step scale.
    let half = ((k / 2.0) as i64) as f64; // truncated
    1.0 - sum * pow2(half) * pow2(k - half)
}

/// 2^k for an integral `k` in [-1022, 0].
fn pow2(k: f64) -> f64 {
    f64::from_bits(((k as i64 + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_matches_the_c_library() {
        let mut x = 1.0 / (1u64 << 53) as f64;
        while x <= 1.0 {
            for f in [1.0, 1.1, 1.37, 1.5, 1.9, 1.999] {
                let v = (x * f).min(1.0);
                let (mine, libm) = (ln(v), v.ln());
                assert!(
                    (mine - libm).abs() <= 4e-16 * libm.abs().max(1.0),
                    "ln({v}): {mine} against {libm}"
                );
            }
            x *= 2.0;
        }
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn one_minus_exp_neg_matches_the_c_library() {
        let mut x = 1.0 / 64.0;
        while x < 800.0 {
            for f in [1.0, 1.3, 1.77] {
                let v = x * f;
                let (mine, libm) = (one_minus_exp_neg(v), -(-v).exp_m1());
                assert!(
                    (mine - libm).abs() <= 1e-14 * libm,
                    "1 - exp(-{v}): {mine} against {libm}"
                );
            }
            x *= 1.5;
        }
    }
}
