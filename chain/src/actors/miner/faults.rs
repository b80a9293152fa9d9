//! Fault and recovery declarations, and the partition bookkeeping they share with PoSt, the cron
//! and termination: locating live sectors, marking faults, removing sectors.

use crate::actors::power;
use crate::error::{ActorResult, abort};
use crate::runtime::Runtime;
use crate::types::{ActorId, Epoch, PowerPair, SectorNumber};

use super::funds::repay_debts_or_abort;
use super::{
    Deadline, DeadlineInfo, MinerState, Partition, SectorLocation, info, load_deadline,
    load_sector_raw, load_state, require_control, save_deadline, save_state,
};

/// The instance of deadline `index` that faults/recoveries declared now apply to, checked against
/// its cutoff.
pub(super) fn declaration_target(
    rt: &Runtime<'_, '_>,
    st: &MinerState,
    index: u64,
) -> ActorResult<DeadlineInfo> {
    let p = rt.policy;
    if index >= p.wpost_period_deadlines {
        abort!(IllegalArgument, "no deadline {index}");
    }
    let dl = DeadlineInfo::new(p, st.proving_period_start, index).next_not_elapsed(p, rt.epoch);
    if rt.epoch >= dl.fault_cutoff {
        abort!(
            IllegalState,
            "too late to declare for deadline {index}: its cutoff was epoch {} (it opens at {})",
            dl.fault_cutoff,
            dl.open
        );
    }
    Ok(dl)
}

pub(super) fn declare_faults(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    locs: &[SectorLocation],
) -> ActorResult<()> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let st = load_state(rt, miner)?;
    let mut sub = PowerPair::ZERO;
    for loc in locs {
        let target = declaration_target(rt, &st, loc.deadline)?;
        let mut dl = load_deadline(rt, miner, loc.deadline)?;
        let part = located(&mut dl, loc)?;
        for &s in &loc.sectors {
            rt.charge_gas(rt.policy.gas_per_sector)?;
            require_live(part, loc, s)?;
            if mark_faulty(
                part,
                s,
                target.last().saturating_add(rt.policy.fault_max_age),
            ) {
                sub = sub.plus(load_sector_raw(rt, miner, s)?.power(rt.policy, info.sector_size));
            }
        }
        save_deadline(rt, miner, loc.deadline, &dl)?;
    }
    power::update_claim(rt, miner, PowerPair::ZERO, sub)?;
    Ok(())
}

pub(super) fn declare_recoveries(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    locs: &[SectorLocation],
) -> ActorResult<()> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let mut st = load_state(rt, miner)?;
    if st.consensus_fault_elapsed.is_some_and(|e| rt.epoch <= e) {
        abort!(
            Forbidden,
            "recoveries are forbidden during a consensus fault"
        );
    }
    repay_debts_or_abort(rt, miner, &mut st)?;
    for loc in locs {
        declaration_target(rt, &st, loc.deadline)?;
        let mut dl = load_deadline(rt, miner, loc.deadline)?;
        let part = located(&mut dl, loc)?;
        for &s in &loc.sectors {
            rt.charge_gas(rt.policy.gas_per_sector)?;
            if !part.faults.contains(&s) {
                abort!(IllegalArgument, "sector {s} is not faulty");
            }
            part.recoveries.insert(s);
        }
        save_deadline(rt, miner, loc.deadline, &dl)?;
    }
    save_state(rt, miner, &st)?;
    Ok(())
}

/// The partition a [`SectorLocation`] names.
pub(super) fn located<'d>(
    dl: &'d mut Deadline,
    loc: &SectorLocation,
) -> ActorResult<&'d mut Partition> {
    match dl.partitions.get_mut(loc.partition as usize) {
        Some(p) => Ok(p),
        None => abort!(
            NotFound,
            "deadline {} has no partition {}",
            loc.deadline,
            loc.partition
        ),
    }
}

/// Fails unless sector `s` is live in the located partition.
pub(super) fn require_live(
    part: &Partition,
    loc: &SectorLocation,
    s: SectorNumber,
) -> ActorResult<()> {
    if !part.sectors.contains(&s) {
        abort!(
            NotFound,
            "sector {s} is not live in deadline {} partition {}",
            loc.deadline,
            loc.partition
        );
    }
    Ok(())
}

/// Marks sector `s` faulty (terminated at `expiration` if still faulty then) and retracts its
/// recovery. Returns whether it was active, so that the caller removes its power; an unproven sector
/// never had power, and an already faulty one is left as it is.
pub(super) fn mark_faulty(part: &mut Partition, s: SectorNumber, expiration: Epoch) -> bool {
    part.recoveries.remove(&s);
    if !part.faults.insert(s) {
        return false;
    }
    part.fault_expirations.insert(s, expiration);
    !part.unproven.remove(&s)
}

pub(super) fn remove_from_partition(part: &mut Partition, s: SectorNumber) {
    part.sectors.remove(&s);
    part.unproven.remove(&s);
    part.faults.remove(&s);
    part.recoveries.remove(&s);
    part.fault_expirations.remove(&s);
}
