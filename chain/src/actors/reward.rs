//! The reward actor: minting (simple exponential plus baseline) and block rewards.
//!
//! Each epoch's reward `R(t)` is what the simple schedule and baseline minting release in that epoch
//! ([`crate::minting`]); it is shared by the epoch's winners, a win count `w` earning `R(t) × w / E`
//! (`E` expected leaders, 5). A smoothed estimate of `R` (alpha-beta filter, [`crate::smooth`]) feeds
//! every projected-reward formula. Rewards are paid from this actor's balance, which at genesis holds
//! every token not allocated to accounts; 75% of a reward is locked in the winner's vesting table.

use num_bigint::BigInt;
use num_traits::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::actors::REWARD;
use crate::error::{ActorResult, ChainError, ChainResult, OutOfRange};
use crate::keys;
use crate::minting::{MintingParams, MintingState};
use crate::policy::Policy;
use crate::runtime::Runtime;
use crate::smooth::{AlphaBeta, FilterEstimate};
use crate::types::{ActorId, StoragePower, TokenAmount};

/// Reward actor state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardState {
    /// Minting progress and this epoch's reward.
    pub minting: MintingState,
    /// Smoothed epoch reward.
    pub reward_filter: FilterEstimate,
    /// Tokens paid out so far.
    pub total_paid: TokenAmount,
}

impl RewardState {
    /// The smoothed epoch reward, atto.
    pub fn reward_estimate(&self) -> u128 {
        self.reward_filter.estimate().to_u128().unwrap_or(u128::MAX)
    }
}

/// The minting parameters of a policy.
pub fn minting_params(policy: &Policy) -> MintingParams {
    MintingParams::from_policy(policy)
}

/// The genesis state.
pub fn genesis(policy: &Policy) -> RewardState {
    let params = minting_params(policy);
    let minting = MintingState::genesis(&params);
    let reward_filter =
        FilterEstimate::new(BigInt::from(minting.this_epoch_reward), BigInt::from(0));
    RewardState {
        minting,
        reward_filter,
        total_paid: TokenAmount::ZERO,
    }
}

/// Loads the state.
pub fn load(rt: &Runtime<'_, '_>) -> ChainResult<RewardState> {
    rt.state
        .get(keys::REWARD)?
        .ok_or_else(|| ChainError::Corrupt("reward state missing".into()))
}

/// Stores the state.
pub fn save(rt: &mut Runtime<'_, '_>, st: &RewardState) -> ChainResult<()> {
    rt.state.put(keys::REWARD.to_vec(), st)
}

/// The block reward for a win count: `R(t) × win_count / expected_leaders`, capped by what the
/// actor still holds.
pub fn block_reward(rt: &Runtime<'_, '_>, win_count: u64) -> ActorResult<TokenAmount> {
    let st = load(rt)?;
    let reward = crate::math::mul_div(
        st.minting.this_epoch_reward,
        u128::from(win_count),
        u128::from(rt.policy.expected_leaders_per_epoch),
    )
    .unwrap_or(0);
    let balance = rt.expect_actor(REWARD)?.balance;
    Ok(TokenAmount(reward).min(balance))
}

/// Pays `miner` its block reward for `win_count` (75% locked in its vesting table).
pub fn award_block_reward(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    win_count: u64,
) -> ActorResult<TokenAmount> {
    let reward = block_reward(rt, win_count)?;
    rt.transfer(REWARD, miner, reward)?;
    let mut st = load(rt)?;
    st.total_paid = st
        .total_paid
        .checked_add(reward)
        .ok_or(OutOfRange("total paid rewards"))?;
    save(rt, &st)?;
    crate::actors::miner::apply_rewards(rt, miner, reward)?;
    Ok(reward)
}

/// End of epoch: updates the smoothed estimate with this epoch's reward, then advances minting to
/// the next epoch with the network's realized raw power.
pub fn end_epoch(rt: &mut Runtime<'_, '_>, realized_raw: StoragePower) -> ChainResult<()> {
    let mut st = load(rt)?;
    let filter = AlphaBeta::from_policy(rt.policy);
    st.reward_filter = filter.next(
        &st.reward_filter,
        &BigInt::from(st.minting.this_epoch_reward),
        1,
    );
    st.minting.advance(&minting_params(rt.policy), realized_raw);
    save(rt, &st)
}
