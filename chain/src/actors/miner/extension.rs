//! Extension: a sector commits to a later expiration, its deal weights carried over to the new
//! duration.

use crate::actors::{power, verifreg};
use crate::error::{ActorResult, OutOfRange, abort};
use crate::keys;
use crate::runtime::Runtime;
use crate::types::{ActorId, Epoch, PowerPair};

use super::faults::located;
use super::{SectorLocation, info, load_deadline, load_sector_raw, require_control};

pub(super) fn extend_sector_expiration(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    locs: &[SectorLocation],
    new_expiration: Epoch,
) -> ActorResult<()> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let p = rt.policy;
    let now = rt.epoch;
    let size = info.sector_size;
    let mut add = PowerPair::ZERO;
    let mut sub = PowerPair::ZERO;
    if new_expiration > now.saturating_add(p.max_sector_expiration_extension) {
        abort!(
            IllegalArgument,
            "expiration {new_expiration} is more than {} epochs away",
            p.max_sector_expiration_extension
        );
    }
    for loc in locs {
        let mut dl = load_deadline(rt, miner, loc.deadline)?;
        let part = located(&mut dl, loc)?;
        for &s in &loc.sectors {
            rt.charge_gas(p.gas_per_sector)?;
            if !part.active().any(|&a| a == s) {
                abort!(
                    IllegalArgument,
                    "sector {s} is not active (faulty, unproven or gone): only active sectors can be extended"
                );
            }
            let mut sector = load_sector_raw(rt, miner, s)?;
            if new_expiration <= sector.expiration {
                abort!(
                    IllegalArgument,
                    "sector {s}: new expiration {new_expiration} is not after {}",
                    sector.expiration
                );
            }
            // `new_expiration > expiration > activation`: exact.
            if new_expiration.saturating_sub(sector.activation) > p.max_sector_lifetime {
                abort!(
                    IllegalArgument,
                    "sector {s}: lifetime would exceed {} epochs",
                    p.max_sector_lifetime
                );
            }
            verifreg::check_claims_allow_expiration(rt, miner, s, new_expiration)?;
            let old_duration =
                u128::from(sector.expiration.saturating_sub(sector.power_base_epoch)).max(1);
            let new_duration = u128::from(new_expiration.saturating_sub(now));
            let before = sector.power(p, size);
            // `old_duration ≥ 1`, so the divisions cannot fail.
            let verified_space = sector
                .verified_deal_weight
                .checked_div(old_duration)
                .unwrap_or(0);
            let deal_space = sector.deal_weight.checked_div(old_duration).unwrap_or(0);
            sector.verified_deal_weight = verified_space
                .checked_mul(new_duration)
                .ok_or(OutOfRange("verified deal weight"))?;
            sector.deal_weight = deal_space
                .checked_mul(new_duration)
                .ok_or(OutOfRange("deal weight"))?;
            sector.power_base_epoch = now;
            sector.expiration = new_expiration;
            let after = sector.power(p, size);
            sub = sub.plus(before);
            add = add.plus(after);
            rt.state.put(keys::sector(miner, s), &sector)?;
        }
    }
    power::update_claim(rt, miner, add, sub)?;
    Ok(())
}
