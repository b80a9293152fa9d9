//! Funds: withdrawal, fee debt repayment (vesting first, then the free balance, burnt), and block
//! rewards (locked in the vesting table).

use crate::error::{ActorResult, abort};
use crate::runtime::Runtime;
use crate::types::{ActorId, TokenAmount};

use super::cron::ensure_cron;
use super::{MinerState, balance, info, load_state, save_state};

pub(super) fn withdraw_balance(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    amount: TokenAmount,
) -> ActorResult<TokenAmount> {
    let info = info(rt, miner)?;
    if caller != info.owner {
        abort!(Forbidden, "only the owner {} may withdraw", info.owner);
    }
    let mut st = load_state(rt, miner)?;
    st.unlock_vested(rt.epoch)?;
    repay_debts_or_abort(rt, miner, &mut st)?;
    let bal = balance(rt, miner)?;
    let amount = amount.min(st.available(bal));
    rt.transfer(miner, info.owner, amount)?;
    save_state(rt, miner, &st)?;
    Ok(amount)
}

/// Pays all fee debt from the unlocked balance, or aborts.
pub(super) fn repay_debts_or_abort(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    st: &mut MinerState,
) -> ActorResult<()> {
    if st.fee_debt.is_zero() {
        return Ok(());
    }
    st.unlock_vested(rt.epoch)?;
    let bal = balance(rt, miner)?;
    let unlocked = st.unlocked(bal).unwrap_or(TokenAmount::ZERO);
    if unlocked < st.fee_debt {
        abort!(
            InsufficientFunds,
            "fee debt of {} exceeds the unlocked balance {unlocked}: send funds to {miner} first",
            st.fee_debt
        );
    }
    rt.burn(miner, st.fee_debt)?;
    st.fee_debt = TokenAmount::ZERO;
    Ok(())
}

/// Pays as much fee debt as possible: vested rewards, then unvested rewards (soonest first), then
/// the unlocked balance. Returns the amount burnt.
pub(super) fn repay_partial_debt(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    st: &mut MinerState,
) -> ActorResult<TokenAmount> {
    st.unlock_vested(rt.epoch)?;
    if st.fee_debt.is_zero() {
        return Ok(TokenAmount::ZERO);
    }
    st.unlock_unvested(st.fee_debt);
    let bal = balance(rt, miner)?;
    let unlocked = st.unlocked(bal).unwrap_or(TokenAmount::ZERO);
    let pay = unlocked.min(st.fee_debt);
    rt.burn(miner, pay)?;
    st.fee_debt = st.fee_debt.saturating_sub(pay);
    Ok(pay)
}

/// Locks 75% of a block reward in the vesting table and pays debt from it.
pub fn apply_rewards(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    reward: TokenAmount,
) -> ActorResult<()> {
    let mut st = load_state(rt, miner)?;
    let p = rt.policy;
    let (n, d) = p.locked_reward_factor;
    let locked = reward.mul_div(n, d).unwrap_or(reward);
    st.add_locked_funds(
        rt.epoch,
        locked,
        p.reward_vesting_period,
        p.reward_vesting_step,
    )?;
    repay_partial_debt(rt, miner, &mut st)?;
    ensure_cron(rt, miner, &mut st)?;
    save_state(rt, miner, &st)?;
    Ok(())
}
