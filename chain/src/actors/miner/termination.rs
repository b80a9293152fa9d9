//! Termination: a sector ends early, its pledge is released, the termination fee becomes fee
//! debt and its deals are settled.

use lode_proofs::sector::SectorSize;

use crate::actors::{economics, market, power};
use crate::error::{ActorResult, OutOfRange, abort};
use crate::keys;
use crate::monies;
use crate::runtime::Runtime;
use crate::types::{ActorId, PowerPair, TokenAmount};

use super::commit::deadline_is_mutable;
use super::faults::{located, remove_from_partition, require_live};
use super::funds::repay_partial_debt;
use super::{
    MinerState, SectorLocation, SectorOnChain, info, load_deadline, load_sector_raw, load_state,
    require_control, save_deadline, save_state,
};

/// Terminates one sector now: releases its pledge, charges the termination fee as debt, and
/// terminates its deals. The caller removes it from its partition and fixes power.
pub(super) fn terminate_sector(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    st: &mut MinerState,
    sector: &SectorOnChain,
    size: SectorSize,
) -> ActorResult<TokenAmount> {
    let econ = economics::current(rt)?;
    let age = rt.epoch.saturating_sub(sector.activation);
    let fee = monies::termination_fee(
        rt.policy,
        &econ,
        sector.initial_pledge,
        sector.power(rt.policy, size).qa,
        age,
    );
    st.initial_pledge = st.initial_pledge.saturating_sub(sector.initial_pledge);
    st.fee_debt = st.fee_debt.checked_add(fee).ok_or(OutOfRange("fee debt"))?;
    market::on_sector_terminated(rt, miner, &sector.deal_ids)?;
    rt.state.delete(&keys::sector(miner, sector.sector_number));
    Ok(fee)
}

pub(super) fn terminate_sectors(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    locs: &[SectorLocation],
) -> ActorResult<TokenAmount> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let mut st = load_state(rt, miner)?;
    let mut sub = PowerPair::ZERO;
    let mut fees = TokenAmount::ZERO;
    for loc in locs {
        if loc.deadline >= rt.policy.wpost_period_deadlines
            || !deadline_is_mutable(rt, &st, loc.deadline)
        {
            abort!(
                Forbidden,
                "deadline {} is open or about to open: terminate its sectors later",
                loc.deadline
            );
        }
        let mut dl = load_deadline(rt, miner, loc.deadline)?;
        let part = located(&mut dl, loc)?;
        for &s in &loc.sectors {
            rt.charge_gas(rt.policy.gas_per_sector)?;
            require_live(part, loc, s)?;
            let sector = load_sector_raw(rt, miner, s)?;
            if part.active().any(|&a| a == s) {
                sub = sub.plus(sector.power(rt.policy, info.sector_size));
            }
            remove_from_partition(part, s);
            let fee = terminate_sector(rt, miner, &mut st, &sector, info.sector_size)?;
            fees = fees
                .checked_add(fee)
                .ok_or(OutOfRange("termination fees"))?;
        }
        save_deadline(rt, miner, loc.deadline, &dl)?;
    }
    power::update_claim(rt, miner, PowerPair::ZERO, sub)?;
    repay_partial_debt(rt, miner, &mut st)?;
    save_state(rt, miner, &st)?;
    Ok(fees)
}
