//! Window PoSt: proving a deadline's partitions, power on first proof and on recovery, skipped
//! sectors as faults; and the active sectors a Winning PoSt draws from.

use std::collections::BTreeSet;

use lode_proofs::node::Node;
use lode_proofs::post::PublicSector;
use lode_proofs::verifier::WindowPostStatement;

use crate::actors::power;
use crate::error::{ActorResult, ChainError, abort};
use crate::keys;
use crate::runtime::{RandomnessTag, Runtime};
use crate::types::{ActorId, PowerPair, SectorNumber};

use super::faults::mark_faulty;
use super::{
    Deadline, DeadlineInfo, SectorOnChain, WindowPostParams, info, load_deadline, load_sector_raw,
    load_state, require_control, save_deadline,
};

pub(super) fn submit_window_post(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    params: &WindowPostParams,
) -> ActorResult<()> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let st = load_state(rt, miner)?;
    let p = rt.policy;
    let now = rt.epoch;
    let dl_info = DeadlineInfo::new(p, st.proving_period_start, st.current_deadline);
    if params.deadline != st.current_deadline || !dl_info.is_open(now) {
        abort!(
            IllegalArgument,
            "deadline {} is not open at epoch {now} (the open deadline is {} from {} to {})",
            params.deadline,
            st.current_deadline,
            dl_info.open,
            dl_info.last()
        );
    }
    if params.partitions.is_empty() || params.partitions.len() as u64 > p.posted_partitions_max {
        abort!(
            IllegalArgument,
            "a PoSt proves 1 to {} partitions",
            p.posted_partitions_max
        );
    }
    if params.proofs.len() != params.partitions.len() {
        abort!(
            IllegalArgument,
            "one proof per partition: {} proofs for {} partitions",
            params.proofs.len(),
            params.partitions.len()
        );
    }
    let mut dl = load_deadline(rt, miner, params.deadline)?;
    let randomness = rt.randomness(
        RandomnessTag::WindowPost,
        dl_info.challenge,
        &miner.0.to_le_bytes(),
    )?;
    let size = info.sector_size;
    let mut add = PowerPair::ZERO;
    let mut sub = PowerPair::ZERO;
    let mut seen = BTreeSet::new();
    for (part_post, proof) in params.partitions.iter().zip(&params.proofs) {
        rt.charge_gas(p.gas_per_proof)?;
        let idx = part_post.index;
        if !seen.insert(idx) {
            abort!(IllegalArgument, "partition {idx} listed twice");
        }
        if dl.posted.contains(&idx) {
            abort!(
                IllegalArgument,
                "partition {idx} was already proven in this window"
            );
        }
        let Some(part) = dl.partitions.get_mut(idx as usize) else {
            abort!(
                NotFound,
                "deadline {} has no partition {idx}",
                params.deadline
            );
        };
        if let Some(s) = part_post.skipped.iter().find(|s| !part.sectors.contains(s)) {
            abort!(
                IllegalArgument,
                "skipped sector {s} is not in partition {idx}"
            );
        }
        let recovering: BTreeSet<_> = part
            .recoveries
            .difference(&part_post.skipped)
            .copied()
            .collect();
        let proven: Vec<SectorNumber> = part
            .sectors
            .iter()
            .filter(|s| {
                !part_post.skipped.contains(s)
                    && (!part.faults.contains(s) || recovering.contains(s))
            })
            .copied()
            .collect();
        if proven.is_empty() {
            abort!(
                IllegalArgument,
                "partition {idx}: nothing left to prove (declare the faults instead)"
            );
        }
        let mut public = Vec::with_capacity(proven.len());
        for &n in &proven {
            let s: SectorOnChain = match rt.state.get(&keys::sector(miner, n))? {
                Some(s) => s,
                None => {
                    return Err(ChainError::MissingSector { miner, sector: n }.into());
                }
            };
            public.push(PublicSector {
                sector_number: n,
                comm_r: Node(s.comm_r),
            });
        }
        let statement = WindowPostStatement {
            size,
            randomness,
            sectors: public,
        };
        if let Err(e) = rt.verifier.verify_window_post(&statement, proof) {
            abort!(InvalidProof, "partition {idx}: Window PoSt rejected: {e}");
        }
        // Skipped sectors become faults; skipped recoveries are retracted.
        for &s in &part_post.skipped {
            if mark_faulty(part, s, dl_info.last().saturating_add(p.fault_max_age)) {
                sub = sub.plus(load_sector_raw(rt, miner, s)?.power(p, size));
            }
        }
        // Proven sectors: recoveries and first proofs gain power.
        for &s in &proven {
            let gained = part.faults.remove(&s) | part.unproven.remove(&s);
            part.recoveries.remove(&s);
            part.fault_expirations.remove(&s);
            if gained {
                let sector: SectorOnChain = load_sector_raw(rt, miner, s)?;
                add = add.plus(sector.power(p, size));
            }
        }
        dl.posted.insert(idx);
    }
    save_deadline(rt, miner, params.deadline, &dl)?;
    power::update_claim(rt, miner, add, sub)?;
    Ok(())
}

/// The miner's active sectors (for Winning PoSt), sorted by number.
pub fn active_sectors(rt: &Runtime<'_, '_>, miner: ActorId) -> ActorResult<Vec<PublicSector>> {
    let mut out = Vec::new();
    for (_, dl) in rt.state.scan::<Deadline>(&keys::deadline_prefix(miner))? {
        for part in &dl.partitions {
            for &n in part.active() {
                let s = load_sector_raw(rt, miner, n)?;
                out.push(PublicSector {
                    sector_number: n,
                    comm_r: Node(s.comm_r),
                });
            }
        }
    }
    out.sort();
    Ok(out)
}
