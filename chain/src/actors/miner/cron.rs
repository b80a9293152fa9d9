//! The deadline cron: scheduling it, and what happens when a deadline ends (expired pre-commits,
//! missed PoSt, expirations, long faults, the continued-fault fee, the next deadline).

use crate::actors::{economics, market, power};
use crate::error::{ActorResult, ChainResult, OutOfRange};
use crate::keys;
use crate::monies;
use crate::policy::Policy;
use crate::runtime::Runtime;
use crate::types::{ActorId, Epoch, PowerPair};

use super::faults::{mark_faulty, remove_from_partition};
use super::funds::repay_partial_debt;
use super::termination::terminate_sector;
use super::{
    DeadlineInfo, MinerState, PreCommit, info, load_deadline, load_sector_raw, load_state,
    save_deadline, save_state,
};

/// The index of the deadline open at `now` in the period starting at `period_start` (0 before the
/// period starts).
pub(super) fn current_deadline_index(policy: &Policy, period_start: Epoch, now: Epoch) -> u64 {
    now.saturating_sub(period_start)
        .checked_div(policy.wpost_challenge_window)
        .unwrap_or(0)
}

/// Schedules the deadline cron if none is pending, starting at the deadline that contains now.
pub(super) fn ensure_cron(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    st: &mut MinerState,
) -> ChainResult<()> {
    if st.cron_epoch.is_some() {
        return Ok(());
    }
    let p = rt.policy;
    let now = rt.epoch;
    // Catch the proving period up to now (it stood still while no cron ran).
    let pp = p.wpost_proving_period();
    while pp > 0 && st.proving_period_start.saturating_add(pp) <= now {
        st.proving_period_start = st.proving_period_start.saturating_add(pp);
    }
    st.current_deadline = current_deadline_index(p, st.proving_period_start, now);
    let dl = DeadlineInfo::new(p, st.proving_period_start, st.current_deadline);
    schedule_cron(rt, miner, st, dl.last())
}

pub(super) fn schedule_cron(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    st: &mut MinerState,
    at: Epoch,
) -> ChainResult<()> {
    st.cron_epoch = Some(at);
    rt.state.put(keys::cron(at, miner), &())
}

/// Whether every epoch of the window `dl` (the cron runs at its last) was a null round: the run of
/// null rounds the chain is in started at or before the window opened.
fn window_was_null(rt: &Runtime<'_, '_>, dl: &DeadlineInfo) -> ChainResult<bool> {
    Ok(rt
        .state
        .get::<Epoch>(keys::NULL_RUN)?
        .is_some_and(|start| start <= dl.open))
}

/// Deadline cron: runs at the last epoch of the miner's current deadline.
pub fn on_deadline_cron(rt: &mut Runtime<'_, '_>, miner: ActorId) -> ActorResult<()> {
    let info = info(rt, miner)?;
    let mut st = load_state(rt, miner)?;
    let p = rt.policy;
    let now = rt.epoch;
    let size = info.sector_size;
    rt.state.delete(&keys::cron(now, miner));
    if st.cron_epoch != Some(now) {
        return Ok(());
    }
    st.cron_epoch = None;
    let dl_info = DeadlineInfo::new(p, st.proving_period_start, st.current_deadline);

    // 1. Pre-commits never proven: their deposits are burnt.
    for (_, pc) in rt.state.scan::<PreCommit>(&keys::precommit_prefix(miner))? {
        let clean_up = pc
            .epoch
            .saturating_add(p.max_prove_commit_duration)
            .saturating_add(p.expired_pre_commit_clean_up_delay);
        if now >= clean_up {
            rt.state
                .delete(&keys::precommit(miner, pc.info.sector_number));
            st.pre_commit_deposits = st.pre_commit_deposits.saturating_sub(pc.deposit);
            st.fee_debt = st
                .fee_debt
                .checked_add(pc.deposit)
                .ok_or(OutOfRange("fee debt"))?;
        }
    }

    // 2. Missed PoSt: every partition not proven this window becomes faulty. The fault fee is charged
    //    on the power that was faulty *before* this detection (no fee for newly detected faults).
    //    A window in which the chain made no block at all (every epoch a null round: a halted
    //    network) is excused: nobody could have posted, so nothing is detected and declared
    //    recoveries stay for the next window.
    let mut dl = load_deadline(rt, miner, st.current_deadline)?;
    let excused = window_was_null(rt, &dl_info)?;
    let mut previously_faulty = PowerPair::ZERO;
    let mut sub = PowerPair::ZERO;
    for part in &dl.partitions {
        for &s in &part.faults {
            previously_faulty =
                previously_faulty.plus(load_sector_raw(rt, miner, s)?.power(p, size));
        }
    }
    for (i, part) in dl.partitions.iter_mut().enumerate() {
        if excused || dl.posted.contains(&(i as u64)) {
            continue;
        }
        let newly: Vec<_> = part.sectors.difference(&part.faults).copied().collect();
        for s in newly {
            if mark_faulty(part, s, dl_info.last().saturating_add(p.fault_max_age)) {
                sub = sub.plus(load_sector_raw(rt, miner, s)?.power(p, size));
            }
        }
        part.recoveries.clear();
    }
    dl.posted.clear();

    // 3. Expirations: on time (pledge released, no fee) or after the longest fault (terminated).
    for part in &mut dl.partitions {
        let sectors: Vec<_> = part.sectors.iter().copied().collect();
        for s in sectors {
            let sector = load_sector_raw(rt, miner, s)?;
            let active = !part.faults.contains(&s) && !part.unproven.contains(&s);
            if sector.expiration <= dl_info.last() {
                if active {
                    sub = sub.plus(sector.power(p, size));
                }
                st.initial_pledge = st.initial_pledge.saturating_sub(sector.initial_pledge);
                market::on_sector_expired(rt, miner, &sector.deal_ids)?;
                rt.state.delete(&keys::sector(miner, s));
                remove_from_partition(part, s);
            } else if part
                .fault_expirations
                .get(&s)
                .is_some_and(|&e| e <= dl_info.last())
            {
                terminate_sector(rt, miner, &mut st, &sector, size)?;
                remove_from_partition(part, s);
            }
        }
    }
    dl.partitions.retain(|_| true);
    save_deadline(rt, miner, st.current_deadline, &dl)?;
    power::update_claim(rt, miner, PowerPair::ZERO, sub)?;

    // 4. Continued-fault fee, then pay debts.
    if previously_faulty.qa > 0 {
        let econ = economics::current(rt)?;
        let fee = monies::fault_fee(p, &econ, previously_faulty.qa);
        st.fee_debt = st.fee_debt.checked_add(fee).ok_or(OutOfRange("fee debt"))?;
    }
    repay_partial_debt(rt, miner, &mut st)?;

    // 5. Next deadline.
    st.current_deadline = st
        .current_deadline
        .checked_add(1)
        .ok_or(OutOfRange("the deadline index"))?;
    if st.current_deadline == p.wpost_period_deadlines {
        st.current_deadline = 0;
        st.proving_period_start = st
            .proving_period_start
            .saturating_add(p.wpost_proving_period());
    }
    let has_records = !rt.state.scan_raw(&keys::precommit_prefix(miner)).is_empty()
        || !rt.state.scan_raw(&keys::deadline_prefix(miner)).is_empty();
    if !st.total_locked().is_zero() || has_records {
        let next = DeadlineInfo::new(p, st.proving_period_start, st.current_deadline);
        schedule_cron(rt, miner, &mut st, next.last())?;
    }
    save_state(rt, miner, &st)?;
    Ok(())
}
