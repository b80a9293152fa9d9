//! Integer helpers for the economics: products and quotients wider than `u128`.

use num_bigint::BigUint;
use num_traits::{ToPrimitive, Zero};

/// `a × b`, exactly: the product of two `u64`s always fits in a `u128`.
pub fn wide_mul(a: u64, b: u64) -> u128 {
    // Never saturates: (2^64 − 1)^2 < 2^128.
    u128::from(a).saturating_mul(u128::from(b))
}

/// `a × b / c`, floored, with a 256-bit intermediate; `None` if `c` is 0 or the result exceeds
/// `u128`.
pub fn mul_div(a: u128, b: u128, c: u128) -> Option<u128> {
    if c == 0 {
        return None;
    }
    let r = BigUint::from(a) * BigUint::from(b) / BigUint::from(c);
    r.to_u128()
}

/// The product of `num` divided by the product of `den`, floored; `None` on a zero divisor or a
/// result beyond `u128`.
pub fn big_ratio(num: &[u128], den: &[u128]) -> Option<u128> {
    let n = product(num);
    let d = product(den);
    if d.is_zero() {
        return None;
    }
    (n / d).to_u128()
}

/// The sum of the products in `terms` divided by the product of `den`, floored; `None` on a zero
/// divisor or a result beyond `u128`.
pub fn big_sum_ratio(terms: &[&[u128]], den: &[u128]) -> Option<u128> {
    let n = terms
        .iter()
        .fold(BigUint::zero(), |acc, t| acc + product(t));
    let d = product(den);
    if d.is_zero() {
        return None;
    }
    (n / d).to_u128()
}

fn product(factors: &[u128]) -> BigUint {
    factors
        .iter()
        .fold(BigUint::from(1u32), |acc, &x| acc * BigUint::from(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_products() {
        assert_eq!(mul_div(u128::MAX, u128::MAX, u128::MAX), Some(u128::MAX));
        assert_eq!(mul_div(u128::MAX, 2, 1), None);
        assert_eq!(big_ratio(&[u128::MAX, 3, 5], &[15, u128::MAX]), Some(1));
        assert_eq!(big_ratio(&[1], &[0]), None);
        assert_eq!(
            big_sum_ratio(&[&[u128::MAX, 2], &[u128::MAX]], &[3, u128::MAX]),
            Some(1)
        );
        assert_eq!(big_sum_ratio(&[&[1]], &[0]), None);
    }
}
