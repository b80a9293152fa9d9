//! State invariants, checked over the whole state: what must hold after every epoch.
//!
//! [`check_invariants`] returns every violation it finds (an empty list means the state is sound):
//!
//! - **supply**: all balances sum to the total supply;
//! - **miners**: balance ≥ deposits + pledge + locked rewards; deposits equal the pre-commits'
//!   deposits; pledge equals the sectors' pledges; locked rewards equal the vesting table; a
//!   miner with anything locked or any sector has its deadline cron scheduled;
//! - **power**: each claim equals the recomputed power of the miner's active sectors; the totals
//!   equal the sums of claims; the locked total equals the miners' locked sums;
//! - **partitions**: `unproven`, `faults` ⊆ `sectors`, `recoveries` ⊆ `faults`, unproven and
//!   faulty disjoint, fault expirations exactly for faults; each live sector is in exactly the
//!   partition its record names, and every partition sector has a record;
//! - **market**: the market balance equals the escrow sum; locked ≤ balance per party; locked
//!   totals equal what the deals lock; every active deal's sector exists and lists it, and every
//!   deal a sector lists is active in it or finished;
//! - **DataCap**: granted = verifier allowances + client DataCap + allocations + claimed + forfeited;
//! - **compute**: the compute actor's balance equals what its jobs hold (client escrow, provider
//!   collateral, verifier bonds); a settled job holds nothing.

use std::collections::{BTreeMap, BTreeSet};

use crate::actors::compute::Job;
use crate::actors::market::{Deal, Escrow, MarketState};
use crate::actors::miner::{Deadline, MinerInfo, MinerState, PreCommit, SectorOnChain};
use crate::actors::power::{Claim, PowerState};
use crate::actors::verifreg::{Allocation, VerifRegState};
use crate::actors::{Actor, ActorKind, COMPUTE, MARKET};
use crate::error::{ChainError, ChainResult};
use crate::keys;
use crate::policy::Policy;
use crate::store::{Overlay, StateStore};
use crate::types::{ActorId, PowerPair, TokenAmount};

fn id_of(key: &[u8]) -> ActorId {
    ActorId(keys::last_u64(key).unwrap_or(u64::MAX))
}

/// Every invariant violation of the committed state of `store`.
pub fn check_invariants(store: &StateStore, policy: &Policy) -> ChainResult<Vec<String>> {
    let o = Overlay::new(store);
    let mut bad = Vec::new();
    let actors: Vec<(ActorId, Actor)> = o
        .scan::<Actor>(keys::ACTOR_PREFIX)?
        .into_iter()
        .map(|(k, a)| (id_of(&k), a))
        .collect();
    let balances = total(actors.iter().map(|(_, a)| a.balance.0));
    if balances != policy.total_supply.0 {
        bad.push(format!(
            "balances sum to {balances}, not the supply {}",
            policy.total_supply.0
        ));
    }
    let balance_of = |id: ActorId| {
        actors
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| a.balance)
            .unwrap_or_default()
    };

    // Miners, partitions and power.
    let power: PowerState = o
        .get(keys::POWER)?
        .ok_or_else(|| ChainError::Corrupt("power".into()))?;
    let mut committed = PowerPair::ZERO;
    let mut locked_total = 0u128;
    let mut claims = 0u64;
    for (key, claim) in o.scan::<Claim>(keys::CLAIM_PREFIX)? {
        claims = claims.saturating_add(1);
        committed = committed.plus(claim.power);
        let m = id_of(&key);
        let Some(info) = o.get::<MinerInfo>(&keys::miner_info(m))? else {
            bad.push(format!("claim for {m}, which is not a miner"));
            continue;
        };
        let Some(st) = o.get::<MinerState>(&keys::miner_state(m))? else {
            bad.push(format!("miner {m} has no state"));
            continue;
        };
        locked_total = locked_total.saturating_add(st.total_locked().0);
        let bal = balance_of(m);
        if bal < st.total_locked() {
            bad.push(format!("{m}: balance {bal} < locked {}", st.total_locked()));
        }
        let vesting = total(st.vesting.iter().map(|e| e.amount.0));
        if vesting != st.locked_funds.0 {
            bad.push(format!(
                "{m}: vesting table {vesting} ≠ locked funds {}",
                st.locked_funds
            ));
        }
        let pcs = o.scan::<PreCommit>(&keys::precommit_prefix(m))?;
        let deposits = total(pcs.iter().map(|(_, p)| p.deposit.0));
        if deposits != st.pre_commit_deposits.0 {
            bad.push(format!(
                "{m}: pre-commit deposits {} ≠ sum {deposits}",
                st.pre_commit_deposits
            ));
        }
        let sectors: BTreeMap<u64, SectorOnChain> = o
            .scan::<SectorOnChain>(&keys::sector_prefix(m))?
            .into_iter()
            .map(|(_, s)| (s.sector_number, s))
            .collect();
        let pledge = total(sectors.values().map(|s| s.initial_pledge.0));
        if pledge != st.initial_pledge.0 {
            bad.push(format!(
                "{m}: initial pledge {} ≠ sectors' sum {pledge}",
                st.initial_pledge
            ));
        }
        let needs_cron = !st.total_locked().is_zero() || !sectors.is_empty() || !pcs.is_empty();
        let cron_ok = st
            .cron_epoch
            .is_some_and(|e| o.get_raw(&keys::cron(e, m)).is_some());
        if needs_cron && !cron_ok {
            bad.push(format!("{m}: deadline cron not scheduled"));
        }
        let mut seen = BTreeSet::new();
        let mut active = PowerPair::ZERO;
        for (dkey, dl) in o.scan::<Deadline>(&keys::deadline_prefix(m))? {
            let di = keys::last_u64(&dkey).unwrap_or(u64::MAX);
            for (pi, part) in dl.partitions.iter().enumerate() {
                let ctx = format!("{m} deadline {di} partition {pi}");
                if part.sectors.len() as u64 > info.partition_sectors {
                    bad.push(format!("{ctx}: too many sectors"));
                }
                if !part.unproven.is_subset(&part.sectors) || !part.faults.is_subset(&part.sectors)
                {
                    bad.push(format!("{ctx}: unproven or faults not within sectors"));
                }
                if !part.recoveries.is_subset(&part.faults) {
                    bad.push(format!("{ctx}: recoveries not within faults"));
                }
                if !part.unproven.is_disjoint(&part.faults) {
                    bad.push(format!("{ctx}: a sector is both unproven and faulty"));
                }
                let fe: BTreeSet<u64> = part.fault_expirations.keys().copied().collect();
                if fe != part.faults {
                    bad.push(format!("{ctx}: fault expirations do not match faults"));
                }
                for &s in &part.sectors {
                    if !seen.insert(s) {
                        bad.push(format!("{ctx}: sector {s} in two partitions"));
                    }
                    match sectors.get(&s) {
                        Some(rec) if rec.deadline == di && rec.partition == pi as u64 => {}
                        Some(_) => {
                            bad.push(format!("{ctx}: sector {s}'s record names another place"))
                        }
                        None => bad.push(format!("{ctx}: sector {s} has no record")),
                    }
                }
                for &s in part.active() {
                    if let Some(rec) = sectors.get(&s) {
                        active = active.plus(rec.power(policy, info.sector_size));
                    }
                }
            }
        }
        for (n, sector) in &sectors {
            if !seen.contains(n) {
                bad.push(format!("{m}: sector {n} is in no partition"));
            }
            // A sector's deals are active in it, or finished (deleted).
            for &id in &sector.deal_ids {
                if let Some(d) = o.get::<Deal>(&keys::deal(id))?
                    && (d.proposal.provider != m || d.state.sector != Some(*n))
                {
                    bad.push(format!(
                        "{m}: sector {n} lists deal {id}, which is not active in it"
                    ));
                }
            }
        }
        if active != claim.power {
            bad.push(format!(
                "{m}: claim {:?} ≠ active sectors' power {:?}",
                claim.power, active
            ));
        }
    }
    if committed != power.total_committed {
        bad.push(format!(
            "power total {:?} ≠ sum of claims {committed:?}",
            power.total_committed
        ));
    }
    if claims != power.miner_count {
        bad.push(format!("{claims} claims for {} miners", power.miner_count));
    }
    if locked_total != power.total_locked.0 {
        bad.push(format!(
            "locked total {} ≠ miners' sum {locked_total}",
            power.total_locked
        ));
    }
    let miners = actors
        .iter()
        .filter(|(_, a)| a.kind == ActorKind::Miner)
        .count() as u64;
    if miners != power.miner_count {
        bad.push(format!(
            "{miners} miner actors, power counts {}",
            power.miner_count
        ));
    }

    // Market.
    let market: MarketState = o
        .get(keys::MARKET)?
        .ok_or_else(|| ChainError::Corrupt("market".into()))?;
    let escrows = o.scan::<Escrow>(keys::ESCROW_PREFIX)?;
    let escrow_sum = total(escrows.iter().map(|(_, e)| e.balance.0));
    if escrow_sum != balance_of(MARKET).0 {
        bad.push(format!(
            "market balance {} ≠ escrow sum {escrow_sum}",
            balance_of(MARKET)
        ));
    }
    let mut locked_by: BTreeMap<ActorId, u128> = BTreeMap::new();
    let (mut client_locked, mut provider_locked) = (0u128, 0u128);
    for (dk, d) in o.scan::<Deal>(keys::DEAL_PREFIX)? {
        let deal_id = keys::last_u64(&dk).unwrap_or(u64::MAX);
        let p = &d.proposal;
        let c = d.client_locked().0;
        client_locked = client_locked.saturating_add(c);
        provider_locked = provider_locked.saturating_add(p.provider_collateral.0);
        let client = locked_by.entry(p.client).or_default();
        *client = client.saturating_add(c);
        let provider = locked_by.entry(p.provider).or_default();
        *provider = provider.saturating_add(p.provider_collateral.0);
        if let Some(n) = d.state.sector {
            let holds = o
                .get::<SectorOnChain>(&keys::sector(p.provider, n))?
                .is_some_and(|s| s.deal_ids.contains(&deal_id));
            if !holds {
                bad.push(format!(
                    "active deal {deal_id} names sector {n} of {}, which does not hold it",
                    p.provider
                ));
            }
        }
    }
    if client_locked != market.total_client_locked.0
        || provider_locked != market.total_provider_locked.0
    {
        bad.push(format!(
            "market locked totals ({}, {}) ≠ deals' ({client_locked}, {provider_locked})",
            market.total_client_locked, market.total_provider_locked
        ));
    }
    for (k, e) in &escrows {
        let id = id_of(k);
        if e.locked > e.balance {
            bad.push(format!(
                "escrow of {id}: locked {} > balance {}",
                e.locked, e.balance
            ));
        }
        if e.locked.0 != locked_by.get(&id).copied().unwrap_or(0) {
            bad.push(format!(
                "escrow of {id}: locked {} ≠ its deals' {}",
                e.locked,
                locked_by.get(&id).copied().unwrap_or(0)
            ));
        }
    }

    // DataCap.
    let vr: VerifRegState = o
        .get(keys::VERIFREG)?
        .ok_or_else(|| ChainError::Corrupt("verifreg".into()))?;
    let verifiers = total(
        o.scan::<u128>(keys::VERIFIER_PREFIX)?
            .iter()
            .map(|(_, v)| *v),
    );
    let caps = total(
        o.scan::<u128>(keys::DATACAP_PREFIX)?
            .iter()
            .map(|(_, v)| *v),
    );
    let allocs = total(
        o.scan::<Allocation>(keys::ALLOCATION_PREFIX)?
            .iter()
            .map(|(_, a)| u128::from(a.size)),
    );
    let accounted = total([
        verifiers,
        caps,
        allocs,
        vr.total_claimed,
        vr.total_forfeited,
    ]);
    if accounted != vr.total_granted {
        bad.push(format!(
            "DataCap granted {} ≠ accounted {accounted}",
            vr.total_granted
        ));
    }

    // Compute jobs: the actor holds exactly what its jobs hold; a settled job holds nothing.
    let jobs = o.scan::<Job>(keys::JOB_PREFIX)?;
    let mut held = 0u128;
    for (key, j) in &jobs {
        let Some(h) = j.held() else {
            bad.push(format!(
                "compute job {} holds more than fits",
                keys::describe(key)
            ));
            continue;
        };
        if j.outcome.is_some() && !h.is_zero() {
            bad.push(format!(
                "settled compute job {} still holds {h}",
                keys::describe(key)
            ));
        }
        held = held.saturating_add(h.0);
    }
    if TokenAmount(held) != balance_of(COMPUTE) {
        bad.push(format!(
            "compute balance {} ≠ the {held} its jobs hold",
            balance_of(COMPUTE)
        ));
    }
    Ok(bad)
}

/// The sum of `amounts`, saturating: every real total is bounded by the supply, so a sum that
/// saturates can only come from a broken state, and it then shows up as a mismatch.
fn total(amounts: impl IntoIterator<Item = u128>) -> u128 {
    amounts.into_iter().fold(0, u128::saturating_add)
}
