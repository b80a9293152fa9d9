//! The economic formulas of SPEC §8: projected rewards, deposits, pledge, QA power, fees.
//!
//! Every formula is integer arithmetic on atto units and bytes with 256-bit intermediates, floored
//! at each division in the order written. The inputs that change over time (smoothed reward and
//! power, baseline, circulating supply) come in an [`Economics`] snapshot.

use crate::math::{big_ratio, big_sum_ratio, mul_div, wide_mul};
use crate::policy::Policy;
use crate::types::{StoragePower, TokenAmount};

/// Fixed-point precision of sector quality (bits): a property of the number format, like Q.128's,
/// not a rule (the multipliers are in [`Policy`]).
pub const SECTOR_QUALITY_PRECISION: u32 = 20;

/// The economic quantities every formula reads, taken from the state at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Economics {
    /// Smoothed reward per epoch (all winners together), atto.
    pub epoch_reward_estimate: u128,
    /// Smoothed network quality-adjusted power, bytes.
    pub network_qa_estimate: StoragePower,
    /// This epoch's baseline power, bytes.
    pub baseline_power: StoragePower,
    /// Network raw power (consensus total), bytes.
    pub network_raw_power: StoragePower,
    /// Circulating supply, atto.
    pub circulating_supply: u128,
}

/// `BR(P, d) = P × d × smoothed_epoch_reward / smoothed_network_qa_power`: the reward QA power `P`
/// is expected to earn over `d` epochs.
///
/// The share `P / network` is capped at 1 (the divisor is `max(network, P)`): no power can expect more
/// than the whole reward. Without the cap a network whose smoothed power decays towards zero (every
/// sector faulty, a young devnet) would make deposits and fees exceed the token supply.
pub fn projected_reward(econ: &Economics, power: StoragePower, epochs: u64) -> TokenAmount {
    TokenAmount(
        big_ratio(
            &[power, u128::from(epochs), econ.epoch_reward_estimate],
            &[econ.network_qa_estimate.max(power).max(1)],
        )
        .unwrap_or(u128::MAX),
    )
}

/// QA power of a sector: `st = size × duration`;
/// `quality = ((st − vdw)·base + vdw·verified) · 2^20 / st / base`; `qa = size × quality >> 20`,
/// with the multipliers `base` (10) and `verified` (100) of the policy.
/// `vdw` (verified deal weight) is verified bytes × duration, at most `st`.
pub fn qa_power_for_weight(
    policy: &Policy,
    size: u64,
    duration: u64,
    verified_deal_weight: u128,
) -> StoragePower {
    let base = policy.quality_base_multiplier;
    let verified = policy.verified_deal_weight_multiplier;
    let st = wide_mul(size, duration);
    let size = u128::from(size);
    if st == 0 {
        return size;
    }
    let vdw = verified_deal_weight.min(st);
    // `vdw ≤ st`, so this is exact.
    let unverified = st.saturating_sub(vdw);
    let quality = big_sum_ratio(
        &[
            &[unverified, base, 1u128 << SECTOR_QUALITY_PRECISION],
            &[vdw, verified, 1u128 << SECTOR_QUALITY_PRECISION],
        ],
        &[st, base],
    )
    .unwrap_or(0);
    mul_div(size, quality, 1u128 << SECTOR_QUALITY_PRECISION).unwrap_or(u128::MAX)
}

/// The largest QA power a sector of `size` can have (fully verified): 10 × size.
pub fn qa_power_max(policy: &Policy, size: u64) -> StoragePower {
    mul_div(
        u128::from(size),
        policy.verified_deal_weight_multiplier,
        policy.quality_base_multiplier,
    )
    .unwrap_or(u128::MAX)
}

/// Pre-commit deposit: `max(1 atto, BR(10 × size, 20 days))`.
pub fn pre_commit_deposit(policy: &Policy, econ: &Economics, size: u64) -> TokenAmount {
    let br = projected_reward(
        econ,
        qa_power_max(policy, size),
        policy.pre_commit_deposit_projection,
    );
    TokenAmount(br.0.max(1))
}

/// Initial pledge: `BR(qa, 20 days) + lock_target × CS × qa / max(network_qa, baseline, qa)`,
/// capped at `qa × max_per_byte`, and at least 1 atto.
pub fn initial_pledge(policy: &Policy, econ: &Economics, qa: StoragePower) -> TokenAmount {
    let storage = projected_reward(econ, qa, policy.initial_pledge_projection).0;
    let (n, d) = policy.lock_target;
    let denom = econ
        .network_qa_estimate
        .max(econ.baseline_power)
        .max(qa)
        .max(1);
    let consensus = big_ratio(&[n, econ.circulating_supply, qa], &[d, denom]).unwrap_or(u128::MAX);
    let (cn, cd) = policy.initial_pledge_max_per_byte;
    let cap = mul_div(qa, cn, cd).unwrap_or(u128::MAX);
    TokenAmount(storage.saturating_add(consensus).min(cap).max(1))
}

/// Continued-fault fee per proving period: `BR(qa, 3.51 days)`.
pub fn fault_fee(policy: &Policy, econ: &Economics, qa: StoragePower) -> TokenAmount {
    projected_reward(econ, qa, policy.continued_fault_projection)
}

/// Termination fee: `max(min(8.5% × IP, 8.5% × IP × age / 140 days), 2% × IP, 1.05 × fault_fee)`.
pub fn termination_fee(
    policy: &Policy,
    econ: &Economics,
    initial_pledge: TokenAmount,
    qa: StoragePower,
    age: u64,
) -> TokenAmount {
    let ip = initial_pledge.0;
    let (fnum, fden) = policy.termination_fee_factor;
    let simple = mul_div(ip, fnum, fden).unwrap_or(u128::MAX);
    let aged = big_ratio(
        &[simple, u128::from(age)],
        &[u128::from(policy.termination_lifetime_cap.max(1))],
    )
    .unwrap_or(u128::MAX);
    let base = simple.min(aged);
    let (mn, md) = policy.termination_fee_min_factor;
    let (ffn, ffd) = policy.termination_fault_fee_factor;
    let floor_ip = mul_div(ip, mn, md).unwrap_or(u128::MAX);
    let floor_ff = mul_div(fault_fee(policy, econ, qa).0, ffn, ffd).unwrap_or(u128::MAX);
    TokenAmount(base.max(floor_ip).max(floor_ff))
}

/// The smallest provider collateral of a deal: `1% × CS × size / max(raw power, baseline, size)`.
pub fn provider_collateral_min(policy: &Policy, econ: &Economics, piece_size: u64) -> TokenAmount {
    let (n, d) = policy.provider_collateral_supply_fraction;
    let size = u128::from(piece_size);
    let denom = econ
        .network_raw_power
        .max(econ.baseline_power)
        .max(size)
        .max(1);
    TokenAmount(big_ratio(&[n, econ.circulating_supply, size], &[d, denom]).unwrap_or(u128::MAX))
}

/// Consensus fault penalty: one whole epoch reward (five block rewards).
pub fn consensus_fault_penalty(econ: &Economics) -> TokenAmount {
    TokenAmount(econ.epoch_reward_estimate)
}

/// The reporter's reward for a consensus fault: a quarter of a block reward.
pub fn consensus_fault_reporter_reward(policy: &Policy, econ: &Economics) -> TokenAmount {
    let (n, d) = policy.consensus_fault_reporter_share;
    TokenAmount(mul_div(econ.epoch_reward_estimate, n, d).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn econ() -> Economics {
        Economics {
            epoch_reward_estimate: 36 * crate::types::ATTO_PER_TOKEN,
            network_qa_estimate: 1 << 60,
            baseline_power: 1 << 61,
            network_raw_power: 1 << 59,
            circulating_supply: 500_000_000 * crate::types::ATTO_PER_TOKEN,
        }
    }

    #[test]
    fn verified_space_counts_ten_times() {
        let size = 32u64 << 30;
        let d = 500 * 2880;
        let p = Policy::mainnet();
        assert_eq!(qa_power_for_weight(&p, size, d, 0), u128::from(size));
        assert_eq!(
            qa_power_for_weight(&p, size, d, u128::from(size) * u128::from(d)),
            10 * u128::from(size)
        );
        // Half verified: 1 + 9/2 = 5.5×.
        assert_eq!(
            qa_power_for_weight(&p, size, d, u128::from(size / 2) * u128::from(d)),
            11 * u128::from(size) / 2
        );
    }

    #[test]
    fn termination_fee_floors() {
        let p = Policy::mainnet();
        let e = econ();
        let ip = TokenAmount::tokens(100);
        // Young sector: the 2% floor (the fault-fee floor is far smaller at this power).
        assert_eq!(
            termination_fee(&p, &e, ip, 1 << 35, 0),
            TokenAmount::tokens(2)
        );
        // Old sector: 8.5%.
        let old = termination_fee(&p, &e, ip, 1 << 35, 1000 * 2880);
        assert_eq!(old, TokenAmount(8_500_000_000_000_000_000));
        // Midway (70 of 140 days): 4.25%.
        let mid = termination_fee(&p, &e, ip, 1 << 35, 70 * 2880);
        assert_eq!(mid, TokenAmount(4_250_000_000_000_000_000));
    }

    #[test]
    fn pledge_is_capped_and_positive() {
        let p = Policy::mainnet();
        let e = econ();
        let ip = initial_pledge(&p, &e, 32 << 30);
        assert!(ip.0 > 0);
        assert!(ip <= TokenAmount::tokens(1));
        assert_eq!(initial_pledge(&p, &e, 0), TokenAmount(1));
    }
}
