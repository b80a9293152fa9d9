//! Q.128 fixed-point arithmetic over [`BigInt`].
//!
//! A Q.128 number is an integer `v` that stands for the real value `v / 2^128`.
//! Everything here is pure integer arithmetic, so every result is bit-for-bit
//! reproducible on every platform (no floating point anywhere).
//!
//! # Rounding
//!
//! All operations round **toward negative infinity** (floor), also for negative
//! operands: `q128_mul` is `floor(a·b / 2^128)` and `q128_from_ratio` is
//! `floor(num·2^128 / den)`. This is the convention of Filecoin's actors
//! (Go's `big.Int.Rsh` and Euclidean `Div`).
//!
//! # Exponential
//!
//! [`exp_neg_q128`] returns **exactly** `floor(e^(−x) · 2^128)` (correctly
//! rounded floor, not an approximation of it). It works at `128 + g` bits:
//!
//! 1. range reduction `x = k·ln2 + r`, `0 ≤ r < ln2`, so `e^(−x) = 2^(−k)·e^(−r)`;
//! 2. alternating Taylor series `e^(−r) = Σ (−r)^n / n!` with floor rounding;
//! 3. a rigorous bound `E` on the accumulated error (series rounding, series
//!    tail, error of `ln2`) gives an interval `[S − E, S + E]` that contains the
//!    true value; if both ends floor to the same Q.128 integer that integer is
//!    the exact answer, otherwise the computation is repeated with more guard
//!    bits (`g = 64, 128, 256, 512`; Ziv's strategy).
//!
//! With `g = 64` the retry happens with probability about `2^-55` except for
//! tiny arguments (`x < 2^-60`), which need up to `g = 256`. If even `g = 512`
//! cannot decide (never observed; it would need `e^(−x)` within `2^-630` of a
//! multiple of `2^-128`), the lower candidate is returned, which is still
//! deterministic. Because the result is the exact floor of a monotone function
//! it is itself monotone (non-increasing in `x`) and independent of the
//! algorithm used, so another implementation that rounds correctly agrees
//! bit for bit.
//!
//! `ln 2` is hard-coded as `floor(ln2 · 2^192)` (verified in the tests against
//! the series `ln2 = Σ_{j≥1} 1/(j·2^j)`); other precisions use that series.

use num_bigint::{BigInt, Sign};
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};

/// Number of fractional bits of the Q.128 format.
pub const PRECISION: u32 = 128;

/// `floor(ln2 · 2^128)`.
const LN2_Q128: u128 = 235_865_763_225_513_294_137_944_142_764_154_484_399;
/// Low 64 bits of `floor(ln2 · 2^192)`; its high 128 bits are [`LN2_Q128`].
const LN2_Q192_LOW: u64 = 0x40f3_4326_7298_b62d;
/// Guard bits of the first attempt of the exponential.
const FIRST_GUARD: u32 = 64;
/// Largest number of guard bits tried by the exponential.
const MAX_GUARD: u32 = 512;

/// The value `1.0` in Q.128, i.e. `2^128`.
pub fn q128_one() -> BigInt {
    BigInt::one() << PRECISION
}

/// `floor(num · 2^128 / den)`: the rational `num / den` as a Q.128 number,
/// rounded toward negative infinity.
///
/// A zero denominator returns `0` instead of panicking (a chain must not
/// crash on arithmetic); callers should not rely on that value.
pub fn q128_from_ratio(num: &BigInt, den: &BigInt) -> BigInt {
    if den.is_zero() {
        return BigInt::zero();
    }
    (num << PRECISION).div_floor(den)
}

/// Q.128 product `floor(a · b / 2^128)`, rounded toward negative infinity.
pub fn q128_mul(a: &BigInt, b: &BigInt) -> BigInt {
    (a * b) >> PRECISION
}

/// `floor(ln2 · 2^128)` (a hard-coded constant, checked against the series
/// `Σ 1/(j·2^j)` in the tests).
pub fn ln2_q128() -> BigInt {
    BigInt::from(LN2_Q128)
}

/// `floor(ln2 · 2^192)`, used where more than 128 bits of `ln 2` are needed.
pub(crate) fn ln2_q192() -> BigInt {
    (BigInt::from(LN2_Q128) << 64u32) + BigInt::from(LN2_Q192_LOW)
}

/// `ln2 · 2^w` with an absolute error below 2 (exact floor for `w = 192`).
fn ln2_fixed(w: u32) -> BigInt {
    if w == 192 {
        return ln2_q192();
    }
    // ln2 = Σ_{j≥1} 1/(j·2^j). Each of the `w + g` floored terms errs by < 1
    // and the tail is < 1, so the sum errs by < w + g + 1 units of 2^-(w+g);
    // after dropping the g guard bits the error is < 1 + (w+g+1)/2^g < 2.
    const G: u32 = 16;
    // Cannot overflow: callers pass w = 128 + guard bits ≤ 640.
    #[allow(clippy::arithmetic_side_effects)]
    let wg = w + G;
    let mut sum = BigInt::zero();
    // Term j (from 1) is 2^(wg − j) / j.
    for (j, shift) in (1..=wg).zip((0..wg).rev()) {
        sum += (BigInt::one() << shift) / BigInt::from(j);
    }
    sum >> G
}

/// `x · 2^s` for a signed shift `s`, rounding toward negative infinity.
fn shift_signed(x: &BigInt, s: i64) -> BigInt {
    if s >= 0 {
        x << s.unsigned_abs()
    } else {
        x >> s.unsigned_abs()
    }
}

/// One attempt of the correctly rounded exponential at `128 + guard` bits.
///
/// `arg(w)` must return `(A, c)` with `|A − a·2^w| ≤ c` for the real argument
/// `a ≥ 0`. Returns `(candidate, decided)`: when `decided` is true the
/// candidate is exactly `floor(e^(±a)·2^128)` (`−` when `negative`).
fn exp_attempt(arg: &dyn Fn(u32) -> (BigInt, u64), negative: bool, guard: u32) -> (BigInt, bool) {
    // Cannot overflow: guard ≤ MAX_GUARD = 512.
    #[allow(clippy::arithmetic_side_effects)]
    let w = PRECISION + guard;
    let ln2 = ln2_fixed(w);
    let (x, arg_err) = arg(w);
    let x = if x.is_negative() { BigInt::zero() } else { x };
    let (k, r) = x.div_mod_floor(&ln2);
    // e^(−a) < 2^(−k)·(1 + tiny): for k ≥ 130 the Q.128 floor is 0.
    let k = match k.to_u64() {
        Some(k) if !(negative && k >= 130) => k,
        _ if negative => return (BigInt::zero(), true),
        // e^(+a) with an absurd argument: not used by this crate.
        _ => return (BigInt::zero(), false),
    };

    // Taylor series of e^(∓r/2^w) scaled by 2^w. Terms are floored twice
    // (error < 2 each) and shrink by at least r/n < 0.7, so every computed
    // term is within 3 of the exact one, the sum of n terms within 3n, and the
    // neglected tail (after the first zero term) below 10.
    let one = BigInt::one() << w;
    let mut sum = one.clone();
    let mut term = one;
    let mut n: u32 = 0;
    loop {
        // Cannot overflow: every term shrinks by at least 0.7 and the terms are below 2^(w+1), so
        // the series ends within a few hundred terms.
        #[allow(clippy::arithmetic_side_effects)]
        {
            n += 1;
        }
        term = (term * &r) >> w;
        term /= n;
        if term.is_zero() {
            break;
        }
        if negative && n % 2 == 1 {
            sum -= &term;
        } else {
            sum += &term;
        }
    }
    // r itself is off by at most arg_err + 2k units (error of the argument and
    // of k·ln2), which moves e^(∓r) ≤ 2·(1 + tiny) by at most 3·that.
    let err = BigInt::from(n) * 3 + 16 + (BigInt::from(arg_err) + BigInt::from(k) * 2) * 3;
    let k = i64::try_from(k).unwrap_or(i64::MAX / 2);
    // Cannot overflow: 0 ≤ k ≤ i64::MAX / 2 and guard ≤ 512.
    #[allow(clippy::arithmetic_side_effects)]
    let shift = if negative {
        -(i64::from(guard) + k)
    } else {
        k - i64::from(guard)
    };
    let lo = shift_signed(&(&sum - &err), shift);
    let hi = shift_signed(&(&sum + &err), shift);
    let decided = lo == hi;
    (lo, decided)
}

/// Correctly rounded `floor(e^(±a)·2^128)` by [`exp_attempt`] with growing
/// guard bits; see the module docs.
fn exp_exact(arg: &dyn Fn(u32) -> (BigInt, u64), negative: bool) -> BigInt {
    let mut guard = FIRST_GUARD;
    loop {
        let (candidate, decided) = exp_attempt(arg, negative, guard);
        if decided || guard >= MAX_GUARD {
            return candidate;
        }
        // Cannot overflow: guard < MAX_GUARD = 512 here.
        #[allow(clippy::arithmetic_side_effects)]
        {
            guard *= 2;
        }
    }
}

/// `floor(e^(−x) · 2^128)` for a Q.128 argument `x`, exactly (see the module
/// docs). Arguments `x ≤ 0` are clamped to `0`, i.e. return `2^128` (1.0).
///
/// Typical cost is about 5 µs (release); arguments above `≈ 90` return 0
/// right after the range reduction.
pub fn exp_neg_q128(x_q128: &BigInt) -> BigInt {
    if !x_q128.is_positive() {
        return q128_one();
    }
    // w = PRECISION + guard bits, so the subtraction never clamps.
    let arg = |w: u32| (x_q128 << w.saturating_sub(PRECISION), 0u64);
    exp_exact(&arg, true)
}

/// `floor(2^(1/n) · 2^128)` exactly, for `n ≥ 1` (`n = 0` is treated as 1).
///
/// Computed as `e^(ln2/n)` with the correctly rounded positive-argument
/// exponential; `n = 1` (the only exactly representable case) is special-cased.
pub(crate) fn exp2_recip_q128(n: u64) -> BigInt {
    if n <= 1 {
        return BigInt::from(2u8) << PRECISION;
    }
    // A = floor(ln2_w / n) errs by < 2/n + 1 ≤ 2 units.
    let arg = |w: u32| (ln2_fixed(w) / n, 2u64);
    exp_exact(&arg, false)
}

/// `base^n` in Q.128 by binary exponentiation (square and multiply); each
/// product is floored by [`q128_mul`], so for `base ≥ 1.0` the result is at
/// most the exact power and within roughly `3·n` units of its last place
/// relative to it. `n = 0` returns `1.0`.
///
/// The result has about `n·log2(base)` integer bits: the caller must bound
/// `n` for bases above 1.0.
pub fn pow_q128(base_q128: &BigInt, n: u64) -> BigInt {
    let mut result = q128_one();
    let mut square = base_q128.clone();
    let mut n = n;
    while n > 0 {
        if n & 1 == 1 {
            result = q128_mul(&result, &square);
        }
        n >>= 1;
        if n > 0 {
            square = q128_mul(&square, &square);
        }
    }
    result
}

/// Converts an integer-valued `BigInt` to `u128`, **clamping**: negative values
/// give `0` and values above `u128::MAX` give `u128::MAX`.
pub fn clamp_to_u128(x: &BigInt) -> u128 {
    if x.sign() == Sign::Minus {
        0
    } else {
        x.to_u128().unwrap_or(u128::MAX)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn to_f64(x: &BigInt) -> f64 {
        x.to_f64().unwrap()
    }

    /// Independent reference: floor(e^(-x)·2^128) by the plain (not range
    /// reduced) Taylor series at 640 bits, for 0 ≤ x < 4.
    fn exp_neg_reference(x: &BigInt) -> BigInt {
        let w = 640u32;
        let xw = x << (w - PRECISION);
        let one = BigInt::one() << w;
        let mut sum = one.clone();
        let mut term = one;
        for n in 1u32..400 {
            term = (term * &xw) >> w;
            term /= n;
            if n % 2 == 1 {
                sum -= &term;
            } else {
                sum += &term;
            }
        }
        sum >> (w - PRECISION)
    }

    #[test]
    fn ln2_constants_match_series() {
        // The series errs by < 2 units at 320 bits, far below the last place
        // of the 128/192-bit constants.
        let s = ln2_fixed(320);
        assert_eq!(&s >> 192u32, ln2_q128());
        assert_eq!(&s >> 128u32, ln2_q192());
        assert_eq!(ln2_fixed(192), ln2_q192());
        assert!((to_f64(&ln2_q128()) / 2f64.powi(128) - std::f64::consts::LN_2).abs() < 1e-16);
    }

    #[test]
    fn mul_and_ratio_floor_toward_negative_infinity() {
        let one = q128_one();
        let half = q128_from_ratio(&BigInt::from(1), &BigInt::from(2));
        assert_eq!(half, BigInt::one() << 127u32);
        // -1/3 floors to the next more negative unit.
        let m = q128_from_ratio(&BigInt::from(-1), &BigInt::from(3));
        let p = q128_from_ratio(&BigInt::from(1), &BigInt::from(3));
        assert_eq!(m, -p - 1);
        // (-1 ulp) · 0.5 = -0.5 ulp floors to -1 ulp.
        assert_eq!(q128_mul(&BigInt::from(-1), &half), BigInt::from(-1));
        assert_eq!(q128_mul(&one, &half), half);
        assert_eq!(
            q128_from_ratio(&BigInt::from(1), &BigInt::zero()),
            BigInt::zero()
        );
    }

    #[test]
    fn exp_neg_special_values() {
        assert_eq!(exp_neg_q128(&BigInt::zero()), q128_one());
        assert_eq!(exp_neg_q128(&BigInt::from(-5)), q128_one());
        // x = floor(ln2·2^128)/2^128 is just below ln2: e^-x is just above 1/2.
        assert_eq!(exp_neg_q128(&ln2_q128()), BigInt::one() << 127u32);
        assert_eq!(exp_neg_q128(&(ln2_q128() * 2)), BigInt::one() << 126u32);
        // 1 ulp: e^-x·2^128 = 2^128 - 1 + 2^-129.
        assert_eq!(exp_neg_q128(&BigInt::one()), q128_one() - 1);
        assert_eq!(
            exp_neg_q128(&(BigInt::from(1000) << PRECISION)),
            BigInt::zero()
        );
        assert_eq!(exp_neg_q128(&(BigInt::one() << 4000u32)), BigInt::zero());
    }

    #[test]
    fn exp2_recip_matches_filecoin_constant() {
        assert_eq!(
            exp2_recip_q128(1_051_200),
            "340282591298641078465964189926313473653"
                .parse::<BigInt>()
                .unwrap()
        );
        assert_eq!(exp2_recip_q128(1), BigInt::from(2) << PRECISION);
        let sqrt2 = exp2_recip_q128(2);
        let sq = &sqrt2 * &sqrt2;
        // floor(√2·2^128)^2 < 2·2^256 ≤ (floor(√2·2^128)+1)^2
        assert!(sq < (BigInt::from(2) << 256u32));
        assert!((&sqrt2 + 1) * (&sqrt2 + 1) >= (BigInt::from(2) << 256u32));
    }

    #[test]
    fn pow_examples() {
        let one_half = q128_from_ratio(&BigInt::from(3), &BigInt::from(2));
        assert_eq!(pow_q128(&one_half, 0), q128_one());
        assert_eq!(pow_q128(&one_half, 1), one_half);
        assert_eq!(
            pow_q128(&one_half, 3),
            q128_from_ratio(&BigInt::from(27), &BigInt::from(8))
        );
        let two = BigInt::from(2) << PRECISION;
        assert_eq!(pow_q128(&two, 10), BigInt::from(1024) << PRECISION);
    }

    proptest! {
        #[test]
        fn exp_neg_matches_f64((m, e) in (0u32..60).prop_flat_map(|e| {
            // m < 2^52 and m / 2^e < 40, drawn directly (filtering a wider draw rejected most
            // cases and aborted the test now and then).
            let hi = (40u128 << e).min(1u128 << 52) as u64;
            (0u64..hi).prop_map(move |m| (m, e))
        })) {
            // x = m / 2^e, exactly representable in f64; x < 40 so that the Q.128 result still
            // has > 60 significant bits.
            let x = m as f64 / 2f64.powi(e as i32);
            let xq = BigInt::from(m) << (PRECISION - e);
            let got = to_f64(&exp_neg_q128(&xq)) / 2f64.powi(128);
            let want = (-x).exp();
            prop_assert!(((got - want) / want).abs() < 1e-15, "x={x} got={got} want={want}");
        }

        #[test]
        fn exp_neg_is_exact_floor(hi in 0u64..4, lo in any::<u128>()) {
            let x = (BigInt::from(hi) << 128u32) + BigInt::from(lo);
            prop_assert_eq!(exp_neg_q128(&x), exp_neg_reference(&x));
        }

        #[test]
        fn exp_neg_small_args_exact(lo in any::<u64>()) {
            let x = BigInt::from(lo);
            prop_assert_eq!(exp_neg_q128(&x), exp_neg_reference(&x));
        }

        #[test]
        fn exp_neg_monotone(a in any::<u128>(), d in any::<u64>(), s in 0u32..7) {
            // x up to 2^134 (≈ 64.0), y = x + d.
            let x = BigInt::from(a) << s;
            let y = &x + BigInt::from(d);
            let ex = exp_neg_q128(&x);
            let ey = exp_neg_q128(&y);
            prop_assert!(ex >= ey);
            prop_assert!(ex <= q128_one());
            prop_assert!(!ey.is_negative());
        }

        #[test]
        fn exp_neg_additive(a in 0u128..(1u128 << 127), b in 0u128..(1u128 << 127)) {
            // e^-(a+b) ≈ e^-a · e^-b within a few ulps.
            let (a, b) = (BigInt::from(a), BigInt::from(b));
            let lhs = exp_neg_q128(&(&a + &b));
            let rhs = q128_mul(&exp_neg_q128(&a), &exp_neg_q128(&b));
            prop_assert!((lhs - rhs).abs() <= BigInt::from(3));
        }

        #[test]
        fn pow_matches_f64_and_is_monotone(num in 1u64..4000, n in 0u64..200) {
            let base = q128_from_ratio(&BigInt::from(num), &BigInt::from(1000u32));
            let p = pow_q128(&base, n);
            let want = (num as f64 / 1000.0).powi(n as i32);
            let got = to_f64(&p) / 2f64.powi(128);
            if want > 1e-20 {
                prop_assert!(((got - want) / want).abs() < 1e-12);
            }
            if num >= 1000 {
                prop_assert!(pow_q128(&base, n + 1) >= p);
            } else {
                prop_assert!(pow_q128(&base, n + 1) <= p);
            }
        }
    }
}
