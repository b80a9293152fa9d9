//! The economic snapshot every formula of [`crate::monies`] reads, built from the reward, power and
//! market states and the reward and burnt-funds balances at the moment of the call.
//!
//! It is computed afresh on every call, so a method sees the effect of every earlier message of its
//! epoch (funds locked or burnt, power gained).

use crate::actor::{BURNT_FUNDS, REWARD};
use crate::actors::{market, power, reward};
use crate::error::ChainResult;
use crate::monies::Economics;
use crate::runtime::Runtime;

/// The economic quantities now: smoothed reward and QA power, baseline, network raw power, and the
/// circulating supply (supply − unminted − burnt − locked).
pub fn current(rt: &Runtime<'_, '_>) -> ChainResult<Economics> {
    let reward = reward::load(rt)?;
    let power = power::load(rt)?;
    let market = market::load(rt)?;
    let bal = |id| -> ChainResult<u128> { Ok(rt.actor(id)?.map(|a| a.balance.0).unwrap_or(0)) };
    // Saturating: every part is below the supply, and the circulating supply is "what is left",
    // clamped at zero.
    let locked = power
        .total_locked
        .0
        .saturating_add(market.total_client_locked.0)
        .saturating_add(market.total_provider_locked.0);
    let circulating_supply = rt
        .policy
        .total_supply
        .0
        .saturating_sub(bal(REWARD)?)
        .saturating_sub(bal(BURNT_FUNDS)?)
        .saturating_sub(locked);
    Ok(Economics {
        epoch_reward_estimate: reward.reward_estimate(),
        network_qa_estimate: power.qa_estimate(),
        baseline_power: reward.minting.baseline_power,
        network_raw_power: power::current_total(rt, &power).raw,
        circulating_supply,
    })
}

impl Runtime<'_, '_> {
    /// The economic quantities now: [`current`] (defined with the actors, whose states it reads).
    pub fn economics(&self) -> ChainResult<Economics> {
        current(self)
    }
}
