//! Pre-commit and prove-commit: deposits, seal randomness, PoRep, deal activation, pledge, and
//! the deadline and partition a new sector joins; and the activation of a genesis miner's
//! pre-sealed sectors.

use std::collections::BTreeSet;

use lode_proofs::node::Node;
use lode_proofs::porep::PorepPublic;
use lode_proofs::sector::randomness_node;

use crate::actors::{economics, market, power};
use crate::error::{ActorResult, OutOfRange, abort};
use crate::keys;
use crate::math::wide_mul;
use crate::monies;
use crate::runtime::{RandomnessTag, Runtime};
use crate::types::{ActorId, Epoch, PowerPair, SectorNumber, TokenAmount};

use super::cron::ensure_cron;
use super::funds::repay_debts_or_abort;
use super::{
    DeadlineInfo, MinerInfo, MinerState, Partition, PreCommit, PreCommitInfo, SectorOnChain,
    balance, info, load_deadline, load_state, require_control, save_deadline, save_state,
};

pub(super) fn check_node(bytes: &[u8; 32], what: &str) -> ActorResult<()> {
    if Node(*bytes).to_fr().is_none() {
        abort!(
            IllegalArgument,
            "{what} is not a valid commitment (not a canonical BLS12-381 scalar)"
        );
    }
    Ok(())
}

pub(super) fn pre_commit_sectors(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    infos: Vec<PreCommitInfo>,
) -> ActorResult<()> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    if infos.is_empty() || infos.len() as u64 > rt.policy.pre_commit_sector_batch_max {
        abort!(
            IllegalArgument,
            "a pre-commit carries 1 to {} sectors, not {}",
            rt.policy.pre_commit_sector_batch_max,
            infos.len()
        );
    }
    let mut st = load_state(rt, miner)?;
    let now = rt.epoch;
    if st.consensus_fault_elapsed.is_some_and(|e| now <= e) {
        abort!(
            Forbidden,
            "pre-commit forbidden until epoch {} after a consensus fault",
            st.consensus_fault_elapsed.unwrap_or(0)
        );
    }
    repay_debts_or_abort(rt, miner, &mut st)?;
    let p = rt.policy;
    let size = info.sector_size;
    let econ = economics::current(rt)?;
    let deposit = monies::pre_commit_deposit(p, &econ, size.bytes());
    let mut total = TokenAmount::ZERO;
    let mut seen = BTreeSet::new();
    for pc in &infos {
        rt.charge_gas(p.gas_per_sector)?;
        let n = pc.sector_number;
        if st.allocated_sectors.contains(&n) || !seen.insert(n) {
            abort!(IllegalArgument, "sector number {n} is already used");
        }
        if pc.seal_rand_epoch >= now
            || now.saturating_sub(pc.seal_rand_epoch) > p.max_pre_commit_randomness_lookback
        {
            abort!(
                IllegalArgument,
                "sector {n}: seal randomness epoch {} must be before {now} and at most {} epochs old",
                pc.seal_rand_epoch,
                p.max_pre_commit_randomness_lookback
            );
        }
        let max_activation = now.saturating_add(p.max_prove_commit_duration);
        let min_expiration = max_activation.saturating_add(p.min_sector_expiration);
        if pc.expiration < min_expiration {
            abort!(
                IllegalArgument,
                "sector {n}: expiration {} is too soon: it must be at least {min_expiration}",
                pc.expiration,
            );
        }
        // `pc.expiration ≥ max_activation` from here on.
        if pc.expiration > now.saturating_add(p.max_sector_expiration_extension)
            || pc.expiration.saturating_sub(max_activation) > p.max_sector_lifetime
        {
            abort!(
                IllegalArgument,
                "sector {n}: expiration {} is too far",
                pc.expiration
            );
        }
        if pc.deal_ids.len() as u64 > p.max_deals_per_sector {
            abort!(IllegalArgument, "sector {n}: too many deals");
        }
        check_node(&pc.comm_r, "comm_r")?;
        check_node(&pc.comm_d, "comm_d")?;
        let comm_d = market::comm_d_for_deals(rt, miner, size, pc.expiration, &pc.deal_ids)?;
        if comm_d != pc.comm_d {
            abort!(
                IllegalArgument,
                "sector {n}: comm_d does not match its deals' pieces (expected {})",
                hex::encode(comm_d)
            );
        }
        total = match total.checked_add(deposit) {
            Some(t) => t,
            None => abort!(Overflow, "deposit overflow"),
        };
    }
    let bal = balance(rt, miner)?;
    if st.available(bal) < total {
        abort!(
            InsufficientFunds,
            "pre-commit deposits need {total}, but only {} is available: send funds to {miner}",
            st.available(bal)
        );
    }
    for pc in infos {
        st.allocated_sectors.insert(pc.sector_number);
        rt.state.put(
            keys::precommit(miner, pc.sector_number),
            &PreCommit {
                info: pc,
                deposit,
                epoch: now,
            },
        )?;
    }
    st.pre_commit_deposits = st
        .pre_commit_deposits
        .checked_add(total)
        .ok_or(OutOfRange("pre-commit deposits"))?;
    ensure_cron(rt, miner, &mut st)?;
    save_state(rt, miner, &st)?;
    Ok(())
}

/// The ticket and seed of a pre-commit (what the sealer needs, and what the verifier checks).
pub fn seal_randomness(
    rt: &Runtime<'_, '_>,
    miner: ActorId,
    pc: &PreCommit,
) -> ActorResult<([u8; 32], [u8; 32])> {
    let entropy = miner.0.to_le_bytes();
    let ticket = rt.randomness(RandomnessTag::SealTicket, pc.info.seal_rand_epoch, &entropy)?;
    let seed = rt.randomness(
        RandomnessTag::InteractiveSeed,
        pc.epoch
            .saturating_add(rt.policy.pre_commit_challenge_delay),
        &entropy,
    )?;
    Ok((ticket, seed))
}

pub(super) fn prove_commit_sector(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    n: SectorNumber,
    proofs: &[Vec<u8>],
) -> ActorResult<()> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let pc = check_prove_commit(rt, miner, &info, n, proofs)?;
    activate_sector(rt, miner, &info, n, &pc)
}

/// One sector's proof in a [`super::MinerMethod::ProveCommitSectors`] batch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProveCommitInfo {
    /// The sector.
    pub sector_number: SectorNumber,
    /// Its proofs (one Groth16 proof per PoRep partition).
    pub proofs: Vec<Vec<u8>>,
}

/// Proves a batch of pre-committed sectors; returns the sectors activated, in the batch's order.
///
/// The batch as a whole is checked first and refused whole (`IllegalArgument`): empty, more
/// than `pre_commit_sector_batch_max` sectors, or a sector twice. Then each sector is checked as
/// [`prove_commit_sector`] checks it — pre-committed, its seed drawn, not expired, its PoRep
/// valid — with the same gas per proof, plus `gas_per_sector`; a sector that fails this is
/// **skipped** (it stays pre-committed, its deposit locked, and may be proven again), so one bad
/// proof cannot block the others. When every sector fails, the message fails with the first
/// one's exit code (a batch of one fails as the single method does). The sectors that passed are
/// activated together: a failure there (the pledge not covered, a deal that cannot be activated)
/// fails the whole message and nothing is activated.
pub(super) fn prove_commit_sectors(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    batch: &[ProveCommitInfo],
) -> ActorResult<Vec<SectorNumber>> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let max = rt.policy.pre_commit_sector_batch_max;
    if batch.is_empty() || batch.len() as u64 > max {
        abort!(
            IllegalArgument,
            "a prove-commit batch carries 1 to {max} sectors, not {}",
            batch.len()
        );
    }
    let mut seen = BTreeSet::new();
    for b in batch {
        if !seen.insert(b.sector_number) {
            abort!(
                IllegalArgument,
                "sector {} is twice in the batch",
                b.sector_number
            );
        }
    }
    let mut proven = Vec::new();
    let mut first_failure = None;
    for b in batch {
        rt.charge_gas(rt.policy.gas_per_sector)?;
        match check_prove_commit(rt, miner, &info, b.sector_number, &b.proofs) {
            Ok(pc) => proven.push((b.sector_number, pc)),
            // Out of gas ends the message, whatever the sector.
            Err(e) if e.code == crate::error::ExitCode::SysOutOfGas => return Err(e),
            Err(e) => {
                if first_failure.is_none() {
                    first_failure = Some(e);
                }
            }
        }
    }
    if proven.is_empty()
        && let Some(e) = first_failure
    {
        return Err(crate::error::ActorError::new(
            e.code,
            format!("no sector of the batch was proven: {}", e.message),
        ));
    }
    let mut out = Vec::with_capacity(proven.len());
    for (n, pc) in proven {
        activate_sector(rt, miner, &info, n, &pc)?;
        out.push(n);
    }
    Ok(out)
}

/// Checks a prove-commit of sector `n` (pre-committed, seed drawn, not expired, PoRep valid),
/// charging its proofs' gas; returns its pre-commit. Writes nothing.
fn check_prove_commit(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    info: &MinerInfo,
    n: SectorNumber,
    proofs: &[Vec<u8>],
) -> ActorResult<PreCommit> {
    let Some(pc) = rt.state.get::<PreCommit>(&keys::precommit(miner, n))? else {
        abort!(NotFound, "sector {n} is not pre-committed");
    };
    let p = rt.policy;
    let now = rt.epoch;
    let seed_epoch = pc.epoch.saturating_add(p.pre_commit_challenge_delay);
    if now <= seed_epoch {
        abort!(
            Forbidden,
            "sector {n} cannot be proven before epoch {}",
            seed_epoch.saturating_add(1)
        );
    }
    let expired = pc.epoch.saturating_add(p.max_prove_commit_duration);
    if now > expired {
        abort!(
            IllegalState,
            "sector {n}'s pre-commit expired at epoch {expired}"
        );
    }
    let size = info.sector_size;
    rt.charge_gas(
        p.gas_per_proof
            .saturating_mul(size.porep_partitions() as u64),
    )?;
    let (ticket, seed) = seal_randomness(rt, miner, &pc)?;
    let public = PorepPublic {
        size,
        miner_id: miner.0,
        sector_number: n,
        ticket: randomness_node(ticket),
        seed: randomness_node(seed),
        comm_d: Node(pc.info.comm_d),
        comm_r: Node(pc.info.comm_r),
    };
    if let Err(e) = rt.verifier.verify_seal(&public, proofs) {
        abort!(InvalidProof, "sector {n}: PoRep rejected: {e}");
    }
    Ok(pc)
}

/// Activates sector `n`, whose prove-commit [`check_prove_commit`] passed: its deals, its
/// record, its pledge (the deposit released), its deadline and partition.
fn activate_sector(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    info: &MinerInfo,
    n: SectorNumber,
    pc: &PreCommit,
) -> ActorResult<()> {
    let p = rt.policy;
    let now = rt.epoch;
    let size = info.sector_size;
    let spaces = market::activate_deals(rt, miner, n, pc.info.expiration, &pc.info.deal_ids)?;
    // Pre-commit checked `expiration ≥ max activation ≥ now`, so this is exact.
    let duration = pc.info.expiration.saturating_sub(now);
    let mut sector = SectorOnChain {
        sector_number: n,
        comm_r: pc.info.comm_r,
        activation: now,
        expiration: pc.info.expiration,
        power_base_epoch: now,
        deal_ids: pc.info.deal_ids.clone(),
        deal_weight: wide_mul(spaces.unverified, duration),
        verified_deal_weight: wide_mul(spaces.verified, duration),
        initial_pledge: TokenAmount::ZERO,
        deadline: 0,
        partition: 0,
    };
    let econ = economics::current(rt)?;
    let qa = sector.power(p, size).qa;
    sector.initial_pledge = monies::initial_pledge(p, &econ, qa);
    let mut st = load_state(rt, miner)?;
    st.pre_commit_deposits = st.pre_commit_deposits.saturating_sub(pc.deposit);
    let bal = balance(rt, miner)?;
    if st.available(bal) < sector.initial_pledge {
        abort!(
            InsufficientFunds,
            "sector {n} needs an initial pledge of {}, but only {} is available: send funds to {miner}",
            sector.initial_pledge,
            st.available(bal)
        );
    }
    st.initial_pledge = st
        .initial_pledge
        .checked_add(sector.initial_pledge)
        .ok_or(OutOfRange("initial pledge"))?;
    let (dl_index, part_index) = assign_deadline(rt, miner, info, &st)?;
    sector.deadline = dl_index;
    sector.partition = part_index;
    let mut dl = load_deadline(rt, miner, dl_index)?;
    if part_index as usize == dl.partitions.len() {
        dl.partitions.push(Partition::default());
    }
    let Some(part) = dl.partitions.get_mut(part_index as usize) else {
        abort!(
            IllegalState,
            "deadline {dl_index} has no partition {part_index}"
        );
    };
    part.sectors.insert(n);
    part.unproven.insert(n);
    save_deadline(rt, miner, dl_index, &dl)?;
    rt.state.put(keys::sector(miner, n), &sector)?;
    rt.state.delete(&keys::precommit(miner, n));
    ensure_cron(rt, miner, &mut st)?;
    save_state(rt, miner, &st)?;
    Ok(())
}

/// Activates sector `n` of a genesis miner, sealed before the chain existed, as if it had been
/// prove-committed now (epoch 0) and already proven by a Window PoSt: its record (no deals, zero
/// initial pledge, activation and power base now), the deadline and partition prove-commit would
/// give it ([`assign_deadline`]), live and not unproven so that its power is claimed at once, and
/// the deadline cron, so that a missed Window PoSt makes it faulty as any sector.
///
/// The caller (genesis) has checked the sector's commitments and expiration; this refuses only a
/// sector number the miner already used.
pub(crate) fn activate_genesis_sector(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    n: SectorNumber,
    comm_r: [u8; 32],
    expiration: Epoch,
) -> ActorResult<()> {
    let info = info(rt, miner)?;
    let mut st = load_state(rt, miner)?;
    if !st.allocated_sectors.insert(n) {
        abort!(IllegalArgument, "sector number {n} is already used");
    }
    let now = rt.epoch;
    let mut sector = SectorOnChain {
        sector_number: n,
        comm_r,
        activation: now,
        expiration,
        power_base_epoch: now,
        deal_ids: Vec::new(),
        deal_weight: 0,
        verified_deal_weight: 0,
        initial_pledge: TokenAmount::ZERO,
        deadline: 0,
        partition: 0,
    };
    let (dl_index, part_index) = assign_deadline(rt, miner, &info, &st)?;
    sector.deadline = dl_index;
    sector.partition = part_index;
    let mut dl = load_deadline(rt, miner, dl_index)?;
    if part_index as usize == dl.partitions.len() {
        dl.partitions.push(Partition::default());
    }
    let Some(part) = dl.partitions.get_mut(part_index as usize) else {
        abort!(
            IllegalState,
            "deadline {dl_index} has no partition {part_index}"
        );
    };
    part.sectors.insert(n);
    save_deadline(rt, miner, dl_index, &dl)?;
    let power = sector.power(rt.policy, info.sector_size);
    rt.state.put(keys::sector(miner, n), &sector)?;
    ensure_cron(rt, miner, &mut st)?;
    save_state(rt, miner, &st)?;
    power::update_claim(rt, miner, power, PowerPair::ZERO)
}

/// Whether deadline `index` may change now: it is neither open nor the next to open, and its
/// next challenge is still to be drawn. A sector added now is therefore always in the challenge
/// of its first window, which opens more than a challenge window after it was added: it is proven
/// (or skipped, or missed) in that window like every other sector of its partition, and no PoSt
/// ever covers a partition whose sectors changed after its challenge. (With the policies'
/// lookback shorter than the window, the second condition follows from the first; it is written
/// out so that the rule does not rest on that.)
pub(super) fn deadline_is_mutable(rt: &Runtime<'_, '_>, st: &MinerState, index: u64) -> bool {
    let dl = DeadlineInfo::new(rt.policy, st.proving_period_start, index)
        .next_not_elapsed(rt.policy, rt.epoch);
    rt.epoch.saturating_add(rt.policy.wpost_challenge_window) < dl.open && rt.epoch < dl.challenge
}

/// Picks the deadline and partition of a new sector: among mutable deadlines, prefer one whose last
/// partition has room, then fewer partitions, then fewer sectors, then the lowest index.
pub(super) fn assign_deadline(
    rt: &Runtime<'_, '_>,
    miner: ActorId,
    info: &MinerInfo,
    st: &MinerState,
) -> ActorResult<(u64, u64)> {
    let mut best: Option<((bool, usize, usize, u64), u64)> = None;
    for i in 0..rt.policy.wpost_period_deadlines {
        if !deadline_is_mutable(rt, st, i) {
            continue;
        }
        let dl = load_deadline(rt, miner, i)?;
        let open_partition = dl
            .partitions
            .last()
            .filter(|p| (p.sectors.len() as u64) < info.partition_sectors);
        let part = match open_partition {
            // There is a last partition, so this is exact.
            Some(_) => (dl.partitions.len() as u64).saturating_sub(1),
            None => dl.partitions.len() as u64,
        };
        let key = (
            open_partition.is_none(),
            dl.partitions.len(),
            dl.live_sectors(),
            i,
        );
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, part));
        }
    }
    match best {
        Some((key, part)) => Ok((key.3, part)),
        None => abort!(IllegalState, "no mutable deadline"),
    }
}
