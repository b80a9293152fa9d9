//! Integer helpers for the economics: products and quotients wider than `u128`.

use num_bigint::BigUint;
use num_traits::{ToPrimitive, Zero};

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
    let n = num
        .iter()
        .fold(BigUint::from(1u32), |acc, &x| acc * BigUint::from(x));
    let d = den
        .iter()
        .fold(BigUint::from(1u32), |acc, &x| acc * BigUint::from(x));
    if d.is_zero() {
        return None;
    }
    (n / d).to_u128()
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
    }
}
