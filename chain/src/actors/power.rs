//! The power actor: each miner's raw and quality-adjusted power claim, the network totals, the
//! smoothed QA estimate, total locked collateral, and miner creation.
//!
//! Consensus totals count only miners whose raw power reaches `minimum_consensus_power`; while
//! fewer than `consensus_miner_min_miners` miners do, every miner with power counts (so a young
//! network can run). Claims change only through [`update_claim`], called by the miner actor when
//! sectors gain or lose power; [`crate::invariants`] recomputes every claim from the sectors.

use lode_proofs::sector::SectorSize;
use num_bigint::BigInt;
use num_traits::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::codec::encode;
use crate::error::{ActorResult, ChainError, ChainResult, OutOfRange, abort};
use crate::keys;
use crate::runtime::Runtime;
use crate::smooth::{AlphaBeta, FilterEstimate};
use crate::types::{ActorId, PowerPair, StoragePower, TokenAmount};

/// Power actor state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerState {
    /// Sum of all claims.
    pub total_committed: PowerPair,
    /// Sum of the claims of miners that meet the minimum.
    pub total_above_min: PowerPair,
    /// Number of miners meeting the minimum.
    pub miners_above_min: u64,
    /// Number of miners.
    pub miner_count: u64,
    /// Smoothed network QA power.
    pub qa_filter: FilterEstimate,
    /// Tokens locked by all miners (pre-commit deposits, initial pledge, vesting rewards).
    pub total_locked: TokenAmount,
}

impl PowerState {
    /// Smoothed network QA power, bytes (at least 1).
    pub fn qa_estimate(&self) -> StoragePower {
        self.qa_filter
            .estimate()
            .to_u128()
            .unwrap_or(u128::MAX)
            .max(1)
    }
}

/// The consensus totals under the policy's minimum-miners rule.
pub fn current_total(rt: &Runtime<'_, '_>, st: &PowerState) -> PowerPair {
    if st.miners_above_min < rt.policy.consensus_miner_min_miners {
        st.total_committed
    } else {
        st.total_above_min
    }
}

/// A miner's claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Sector size of the miner.
    pub sector_size: SectorSize,
    /// Its active power.
    pub power: PowerPair,
}

/// The genesis state.
pub fn genesis(policy: &crate::policy::Policy) -> PowerState {
    PowerState {
        total_committed: PowerPair::ZERO,
        total_above_min: PowerPair::ZERO,
        miners_above_min: 0,
        miner_count: 0,
        qa_filter: FilterEstimate::new(
            BigInt::from(policy.initial_qa_power_estimate),
            BigInt::from(0),
        ),
        total_locked: TokenAmount::ZERO,
    }
}

/// Loads the state.
pub fn load(rt: &Runtime<'_, '_>) -> ChainResult<PowerState> {
    rt.state
        .get(keys::POWER)?
        .ok_or_else(|| ChainError::Corrupt("power state missing".into()))
}

/// Stores the state.
pub fn save(rt: &mut Runtime<'_, '_>, st: &PowerState) -> ChainResult<()> {
    rt.state.put(keys::POWER.to_vec(), st)
}

/// A miner's claim.
pub fn claim(rt: &Runtime<'_, '_>, miner: ActorId) -> ChainResult<Option<Claim>> {
    rt.state.get(&keys::claim(miner))
}

/// Registers a new miner's (empty) claim.
pub fn register_miner(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    sector_size: SectorSize,
) -> ChainResult<()> {
    let mut st = load(rt)?;
    st.miner_count = st
        .miner_count
        .checked_add(1)
        .ok_or(OutOfRange("the miner count"))?;
    save(rt, &st)?;
    rt.state.put(
        keys::claim(miner),
        &Claim {
            sector_size,
            power: PowerPair::ZERO,
        },
    )
}

/// Adds `add` and removes `sub` from a miner's claim, keeping the totals.
pub fn update_claim(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    add: PowerPair,
    sub: PowerPair,
) -> ActorResult<()> {
    if add.is_zero() && sub.is_zero() {
        return Ok(());
    }
    let Some(mut c) = claim(rt, miner)? else {
        abort!(NotFound, "no power claim for {miner}")
    };
    let mut st = load(rt)?;
    let min = rt.policy.minimum_consensus_power;
    let before = c.power;
    let after = before.plus(add).minus(sub);
    if before.plus(add).raw < sub.raw || before.plus(add).qa < sub.qa {
        return Err(ChainError::NegativePower { miner }.into());
    }
    st.total_committed = st.total_committed.plus(add).minus(sub);
    let (was, is) = (before.raw >= min, after.raw >= min);
    if was {
        st.total_above_min = st.total_above_min.minus(before);
        st.miners_above_min = st
            .miners_above_min
            .checked_sub(1)
            .ok_or(OutOfRange("the count of miners above the minimum"))?;
    }
    if is {
        st.total_above_min = st.total_above_min.plus(after);
        st.miners_above_min = st
            .miners_above_min
            .checked_add(1)
            .ok_or(OutOfRange("the count of miners above the minimum"))?;
    }
    c.power = after;
    rt.state.put(keys::claim(miner), &c)?;
    save(rt, &st)?;
    Ok(())
}

/// Records a change in the tokens a miner has locked.
pub fn update_locked(
    rt: &mut Runtime<'_, '_>,
    before: TokenAmount,
    after: TokenAmount,
) -> ChainResult<()> {
    if before == after {
        return Ok(());
    }
    let mut st = load(rt)?;
    st.total_locked = st
        .total_locked
        .saturating_sub(before)
        .checked_add(after)
        .ok_or(OutOfRange("total locked funds"))?;
    save(rt, &st)
}

/// Whether a miner's power counts for consensus: it meets the minimum, or too few miners do and it
/// has some power.
pub fn meets_consensus_minimum(rt: &Runtime<'_, '_>, miner: ActorId) -> ChainResult<bool> {
    let st = load(rt)?;
    let Some(c) = claim(rt, miner)? else {
        return Ok(false);
    };
    if c.power.raw >= rt.policy.minimum_consensus_power {
        return Ok(true);
    }
    Ok(st.miners_above_min < rt.policy.consensus_miner_min_miners && c.power.qa > 0)
}

/// End of epoch: feeds the current QA total into the smoothed estimate.
pub fn end_epoch(rt: &mut Runtime<'_, '_>) -> ChainResult<()> {
    let mut st = load(rt)?;
    let total = current_total(rt, &st);
    st.qa_filter =
        AlphaBeta::from_policy(rt.policy).next(&st.qa_filter, &BigInt::from(total.qa), 1);
    save(rt, &st)
}

/// Power actor methods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerMethod {
    /// Creates a miner owned by the sender; the message's value becomes the miner's balance.
    /// Returns the new miner's id.
    CreateMiner {
        /// The account that signs the miner's blocks and proofs.
        worker: crate::types::Address,
        /// The sector size it will seal.
        sector_size: SectorSize,
    },
}

/// Runs a power method.
pub fn invoke(
    rt: &mut Runtime<'_, '_>,
    caller: ActorId,
    value: TokenAmount,
    method: PowerMethod,
) -> ActorResult<Vec<u8>> {
    match method {
        PowerMethod::CreateMiner {
            worker,
            sector_size,
        } => {
            let id = crate::actors::miner::create(
                rt,
                caller,
                &worker,
                sector_size,
                Vec::new(),
                Vec::new(),
            )?;
            rt.transfer(crate::actors::POWER, id, value)?;
            Ok(encode(&id))
        }
    }
}
