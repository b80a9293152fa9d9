//! Consensus faults: two headers signed by one miner at one epoch; the penalty and the reporter's
//! reward, and the ineligibility that follows.

use crate::actors::{economics, power};
use crate::error::{ActorResult, OutOfRange, abort};
use crate::header::BlockHeader;
use crate::monies;
use crate::runtime::Runtime;
use crate::types::{ActorId, TokenAmount};

use super::{balance, info, load_state, save_state};

pub(super) fn report_consensus_fault(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    reporter: ActorId,
    a: &BlockHeader,
    b: &BlockHeader,
) -> ActorResult<TokenAmount> {
    let info = info(rt, miner)?;
    let p = rt.policy;
    if a.miner != miner || b.miner != miner {
        abort!(IllegalArgument, "both blocks must be produced by {miner}");
    }
    if a.epoch != b.epoch {
        abort!(
            IllegalArgument,
            "the blocks are at different epochs ({} and {})",
            a.epoch,
            b.epoch
        );
    }
    if a.signing_bytes(&p.network) == b.signing_bytes(&p.network) {
        abort!(IllegalArgument, "the two blocks are the same block");
    }
    // Gas saturates: a charge past u64::MAX exceeds every limit anyway.
    rt.charge_gas(p.gas_per_signature.saturating_mul(2))?;
    for h in [a, b] {
        if info
            .worker_key
            .verify(&h.signing_bytes(&p.network), &h.signature)
            .is_err()
        {
            abort!(IllegalArgument, "a block's signature is not the worker's");
        }
    }
    if a.epoch > rt.epoch || rt.epoch.saturating_sub(a.epoch) > p.chain_finality {
        abort!(
            IllegalArgument,
            "the fault at epoch {} is too old or in the future",
            a.epoch
        );
    }
    let mut st = load_state(rt, miner)?;
    if st.consensus_fault_elapsed.is_some_and(|e| a.epoch <= e) {
        abort!(
            IllegalArgument,
            "a fault before epoch {} was already punished",
            st.consensus_fault_elapsed.unwrap_or(0)
        );
    }
    let econ = economics::current(rt)?;
    let penalty = monies::consensus_fault_penalty(&econ);
    let reward = monies::consensus_fault_reporter_reward(p, &econ);
    st.fee_debt = st
        .fee_debt
        .checked_add(penalty)
        .ok_or(OutOfRange("fee debt"))?;
    // Collect what can be collected now, pay the reporter out of it, burn the rest.
    st.unlock_vested(rt.epoch)?;
    st.unlock_unvested(st.fee_debt);
    let bal = balance(rt, miner)?;
    let collected = st
        .unlocked(bal)
        .unwrap_or(TokenAmount::ZERO)
        .min(st.fee_debt);
    let to_reporter = reward.min(collected);
    rt.transfer(miner, reporter, to_reporter)?;
    rt.burn(miner, collected.saturating_sub(to_reporter))?;
    st.fee_debt = st.fee_debt.saturating_sub(collected);
    st.consensus_fault_elapsed = Some(rt.epoch.saturating_add(p.consensus_fault_ineligibility));
    save_state(rt, miner, &st)?;
    Ok(to_reporter)
}

/// Why a miner may not win a block now, if it may not.
pub fn ineligibility(rt: &Runtime<'_, '_>, miner: ActorId) -> ActorResult<Option<String>> {
    let st = load_state(rt, miner)?;
    if !st.fee_debt.is_zero() {
        return Ok(Some(format!("{miner} has fee debt of {}", st.fee_debt)));
    }
    if st.consensus_fault_elapsed.is_some_and(|e| rt.epoch <= e) {
        return Ok(Some(format!(
            "{miner} is ineligible after a consensus fault"
        )));
    }
    if !power::meets_consensus_minimum(rt, miner)? {
        return Ok(Some(format!(
            "{miner} does not meet the minimum consensus power"
        )));
    }
    Ok(None)
}
