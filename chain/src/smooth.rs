//! Alpha-beta filter for smoothed on-chain estimates (e.g. network power and
//! per-epoch reward), in Q.128 fixed point.
//!
//! State: `position` (the estimate) and `velocity` (its change per epoch), both
//! Q.128 [`BigInt`]s. One update with `delta` epochs since the previous one:
//!
//! ```text
//! position  = position + velocity · delta                    (exact)
//! residual  = observation · 2^128 − position                  (exact)
//! position  = position + floor(alpha · residual / 2^128)
//! velocity  = velocity + floor(beta · residual / (delta · 2^128))
//! ```
//!
//! All divisions round toward negative infinity, exactly like Filecoin's
//! `smoothing.AlphaBetaFilter.NextEstimate`, so the result is deterministic.
//! `delta = 0` is treated as `delta = 1`.
//!
//! The chain's gains are the policy's ([`Policy::smoothing_alpha`] and
//! [`Policy::smoothing_beta`]): Filecoin's `alpha = 9.25·10^-4 = 925/10^6` and
//! `beta = 2.84·10^-7 = 284/10^9`, converted to Q.128 with floor rounding
//! (Filecoin hard-codes slightly different decimal approximations of the same
//! values, so results are close to, but not bit-identical with, Filecoin's).

use crate::fixed::{PRECISION, q128_from_ratio, q128_mul};
use crate::policy::Policy;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{Signed, Zero};
use serde::{Deserialize, Serialize};

/// A smoothed estimate: position and velocity (per epoch), both Q.128.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterEstimate {
    /// Estimated value, Q.128.
    pub position: BigInt,
    /// Estimated change of the value per epoch, Q.128.
    pub velocity: BigInt,
}

impl FilterEstimate {
    /// An estimate from whole (integer) units: both values are shifted into
    /// Q.128 (`x · 2^128`), exactly.
    pub fn new(position: BigInt, velocity: BigInt) -> Self {
        FilterEstimate {
            position: position << PRECISION,
            velocity: velocity << PRECISION,
        }
    }

    /// An estimate from raw Q.128 values (no conversion).
    pub fn from_q128(position_q128: BigInt, velocity_q128: BigInt) -> Self {
        FilterEstimate {
            position: position_q128,
            velocity: velocity_q128,
        }
    }

    /// The estimate in whole units: `floor(position / 2^128)`, clamped at 0
    /// (a negative position returns 0).
    pub fn estimate(&self) -> BigInt {
        let e = &self.position >> PRECISION;
        if e.is_negative() { BigInt::zero() } else { e }
    }
}

/// Gains of an alpha-beta filter, both Q.128.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlphaBeta {
    alpha: BigInt,
    beta: BigInt,
}

impl Default for AlphaBeta {
    /// Same as [`AlphaBeta::default_filecoin`].
    fn default() -> Self {
        Self::default_filecoin()
    }
}

impl AlphaBeta {
    /// Filecoin's default gains, [`Policy::mainnet`]'s: `alpha = floor(925/10^6 · 2^128)` and
    /// `beta = floor(284/10^9 · 2^128)`.
    pub fn default_filecoin() -> Self {
        Self::from_policy(&Policy::mainnet())
    }

    /// The gains of a policy, `floor(n/d · 2^128)` of each ratio (a zero denominator gives a zero
    /// gain).
    pub fn from_policy(policy: &Policy) -> Self {
        let q128 = |(n, d): (u128, u128)| q128_from_ratio(&BigInt::from(n), &BigInt::from(d));
        AlphaBeta {
            alpha: q128(policy.smoothing_alpha),
            beta: q128(policy.smoothing_beta),
        }
    }

    /// Gains from raw Q.128 values, used as given (the filter is stable for
    /// `0 < alpha < 2` and `0 < beta < 4 − 2·alpha`; this is not checked).
    pub fn from_q128(alpha_q128: BigInt, beta_q128: BigInt) -> Self {
        AlphaBeta {
            alpha: alpha_q128,
            beta: beta_q128,
        }
    }

    /// The position gain, Q.128.
    pub fn alpha_q128(&self) -> &BigInt {
        &self.alpha
    }

    /// The velocity gain, Q.128.
    pub fn beta_q128(&self) -> &BigInt {
        &self.beta
    }

    /// One filter step: predicts `prev` forward by `delta` epochs and corrects
    /// it with `observation` (whole units). `delta = 0` is treated as 1.
    /// See the module docs for the exact formulas and rounding.
    pub fn next(&self, prev: &FilterEstimate, observation: &BigInt, delta: u64) -> FilterEstimate {
        let delta = BigInt::from(delta.max(1));
        let mut position = &prev.position + &prev.velocity * &delta;
        let residual = (observation << PRECISION) - &position;
        position += q128_mul(&self.alpha, &residual);
        let revision_v = (&self.beta * &residual).div_floor(&(delta << PRECISION));
        let velocity = &prev.velocity + revision_v;
        FilterEstimate { position, velocity }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use num_traits::ToPrimitive;

    fn q(x: &BigInt) -> f64 {
        x.to_f64().unwrap() / 2f64.powi(128)
    }

    #[test]
    fn constructors_and_estimate() {
        let e = FilterEstimate::new(BigInt::from(7), BigInt::from(-2));
        assert_eq!(e.position, BigInt::from(7) << PRECISION);
        assert_eq!(e.velocity, BigInt::from(-2) << PRECISION);
        assert_eq!(e.estimate(), BigInt::from(7));
        let raw = FilterEstimate::from_q128(e.position.clone() + 5, e.velocity.clone());
        assert_eq!(raw.estimate(), BigInt::from(7));
        assert_eq!(
            FilterEstimate::new(BigInt::from(-3), BigInt::zero()).estimate(),
            BigInt::zero()
        );
        // floor: 2.9999 -> 2
        let almost3 = FilterEstimate::from_q128((BigInt::from(3) << PRECISION) - 1, BigInt::zero());
        assert_eq!(almost3.estimate(), BigInt::from(2));
    }

    #[test]
    fn default_gains() {
        let ab = AlphaBeta::default_filecoin();
        assert!((q(ab.alpha_q128()) - 9.25e-4).abs() < 1e-18);
        assert!((q(ab.beta_q128()) - 2.84e-7).abs() < 1e-21);
        assert_eq!(ab, AlphaBeta::default());
    }

    #[test]
    fn converges_to_constant() {
        let ab = AlphaBeta::default_filecoin();
        let obs = BigInt::from(1_000_000_000_000_000_000u64);
        let mut est = FilterEstimate::new(BigInt::zero(), BigInt::zero());
        for _ in 0..60_000 {
            est = ab.next(&est, &obs, 1);
        }
        let rel = (q(&est.position) - 1e18).abs() / 1e18;
        assert!(rel < 1e-6, "rel {rel}");
        assert!(
            q(&est.velocity).abs() < 1e9,
            "velocity {}",
            q(&est.velocity)
        );
        // Fast gains converge tightly.
        let fast = AlphaBeta::from_q128(
            q128_from_ratio(&BigInt::from(1), &BigInt::from(2)),
            q128_from_ratio(&BigInt::from(1), &BigInt::from(10)),
        );
        let mut est = FilterEstimate::new(BigInt::from(5), BigInt::zero());
        for _ in 0..1_000 {
            est = fast.next(&est, &BigInt::from(12_345), 1);
        }
        let e = est.estimate();
        assert!(e == BigInt::from(12_344) || e == BigInt::from(12_345));
        assert!((q(&est.position) - 12_345.0).abs() < 1e-9);
    }

    #[test]
    fn tracks_linear_ramp() {
        let ab = AlphaBeta::default_filecoin();
        let slope = 7_000_000_000i64; // units per epoch
        for delta in [1u64, 3] {
            let mut est = FilterEstimate::new(BigInt::from(1_000_000_000_000i64), BigInt::zero());
            let mut t = 0i64;
            for _ in 0..(90_000 / delta) {
                t += delta as i64;
                let obs = BigInt::from(1_000_000_000_000i64 + slope * t);
                est = ab.next(&est, &obs, delta);
            }
            let v = q(&est.velocity);
            assert!(
                (v - slope as f64).abs() / (slope as f64) < 1e-4,
                "delta {delta} v {v}"
            );
            let want = 1e12 + slope as f64 * t as f64;
            assert!((q(&est.position) - want).abs() / want < 1e-6);
        }
    }

    #[test]
    fn deterministic_and_delta_zero_is_one() {
        let ab = AlphaBeta::default_filecoin();
        let run = || {
            let mut est = FilterEstimate::new(BigInt::from(100), BigInt::from(3));
            for i in 0..500u64 {
                est = ab.next(&est, &BigInt::from(i * i % 977), 1 + i % 4);
            }
            est
        };
        assert_eq!(run(), run());
        let prev = FilterEstimate::new(BigInt::from(10), BigInt::from(-1));
        assert_eq!(
            ab.next(&prev, &BigInt::from(42), 0),
            ab.next(&prev, &BigInt::from(42), 1)
        );
    }

    #[test]
    fn matches_hand_computed_step() {
        // alpha = 1/2, beta = 1/4, prev = (10, 2), obs = 20, delta = 2:
        // predicted 14, residual 6, position 17, velocity 2 + 6/4/2 = 2.75
        let ab = AlphaBeta::from_q128(
            q128_from_ratio(&BigInt::from(1), &BigInt::from(2)),
            q128_from_ratio(&BigInt::from(1), &BigInt::from(4)),
        );
        let prev = FilterEstimate::new(BigInt::from(10), BigInt::from(2));
        let next = ab.next(&prev, &BigInt::from(20), 2);
        assert_eq!(next.position, BigInt::from(17) << PRECISION);
        assert_eq!(next.velocity, BigInt::from(11) << (PRECISION - 2));
    }
}
