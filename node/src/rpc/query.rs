//! Read-only queries over a [`NodeCore`] that build the RPC's result types: the chain's records
//! and the actors' state at the head, through [`lode_chain::Chain::view`] and the actors'
//! helpers. Each runs synchronously (the server calls them through
//! [`NodeService::with_core`](crate::service::NodeService::with_core), on the blocking pool).

use lode_chain::ActorError;
use lode_chain::actor::ActorKind;
use lode_chain::actors::miner::{self, Deadline, DeadlineInfo, Partition, SectorOnChain};
use lode_chain::actors::{compute, market, power, verifreg};
use lode_chain::error::ExitCode;
use lode_chain::runtime::RandomnessTag;
use lode_chain::types::{ActorId, Address, Epoch};

use super::types::{
    ActorInfo, BlockInfo, BlockMessageInfo, CollateralBoundsView, DeadlineInfoView, DeadlineTiming,
    DealView, EscrowView, GenesisInfo, HeadInfo, HeaderInfo, JobFilter, JobView, MessageInfo,
    MessageLookupInfo, MinerDeadlinesInfo, MinerInfoView, MinerPowerInfo, NetworkPowerInfo,
    PartitionInfo, PreCommitView, SectorInfo, SectorRefInfo, TipsetInfo,
};
use crate::blockstore::TipsetMeta;
use crate::core::NodeCore;
use crate::error::{NodeError, NodeResult};
use crate::wire::FullBlock;

/// The head tipset.
///
/// # Errors
/// A block of the head missing from the store, or a store failure.
pub fn head(c: &NodeCore) -> NodeResult<HeadInfo> {
    let meta = c.head().clone();
    let blocks = blocks_of(c, &meta)?;
    Ok(HeadInfo {
        epoch: meta.epoch,
        key: meta.key.0.clone(),
        weight: meta.weight.unwrap_or(0),
        parent_state_root: blocks.first().map(|b| b.header.parent_state_root),
        state_root: meta.post_root,
    })
}

/// The canonical tipset at `epoch`; `None` for a null round or an epoch past the head.
///
/// # Errors
/// A block of the tipset missing from the store, or a store failure.
pub fn tipset_by_height(c: &NodeCore, epoch: Epoch) -> NodeResult<Option<TipsetInfo>> {
    let Some(meta) = c.tipset_at(epoch).cloned() else {
        return Ok(None);
    };
    let blocks = blocks_of(c, &meta)?;
    Ok(Some(TipsetInfo {
        epoch: meta.epoch,
        key: meta.key.0.clone(),
        parents: meta.parents.0.clone(),
        weight: meta.weight.unwrap_or(0),
        parent_state_root: blocks.first().map(|b| b.header.parent_state_root),
        state_root: meta.post_root,
        blocks: blocks.iter().map(HeaderInfo::of).collect(),
    }))
}

fn blocks_of(c: &NodeCore, meta: &TipsetMeta) -> NodeResult<Vec<FullBlock>> {
    meta.key
        .0
        .iter()
        .map(|id| {
            c.block(id)?
                .ok_or_else(|| NodeError::UnknownTipset(hex::encode(id)))
        })
        .collect()
}

/// A stored block's header and message ids; `None` if the node does not have it.
///
/// # Errors
/// A store failure.
pub fn block(c: &NodeCore, id: &[u8; 32]) -> NodeResult<Option<BlockInfo>> {
    Ok(c.block(id)?.map(|b| BlockInfo {
        header: HeaderInfo::of(&b),
        messages: b.messages.iter().map(|m| m.id()).collect(),
    }))
}

/// A stored block's messages (unsigned: the block's aggregate covers them); `None` if the node
/// does not have it.
///
/// # Errors
/// A store failure.
pub fn block_messages(c: &NodeCore, id: &[u8; 32]) -> NodeResult<Option<Vec<BlockMessageInfo>>> {
    Ok(c.block(id)?
        .map(|b| b.messages.into_iter().map(BlockMessageInfo::of).collect()))
}

/// The genesis.
pub fn genesis(c: &NodeCore) -> GenesisInfo {
    let g = c.genesis();
    GenesisInfo {
        id: c.genesis_id(),
        network: g.network().to_string(),
        timestamp: g.timestamp,
        policy: g.policy.clone(),
    }
}

/// The id `addr` names; `None` if no such actor exists.
///
/// # Errors
/// A state store failure.
pub fn lookup_id(c: &NodeCore, addr: &Address) -> NodeResult<Option<ActorId>> {
    Ok(c.chain().view(|rt| rt.resolve(addr))?)
}

/// An actor's record; `None` if no such actor exists.
///
/// # Errors
/// A state store failure.
pub fn actor(c: &NodeCore, addr: &Address) -> NodeResult<Option<ActorInfo>> {
    let found = c.chain().view(|rt| {
        let Some(id) = rt.resolve(addr)? else {
            return Ok::<_, NodeError>(None);
        };
        Ok(rt.actor(id)?.map(|a| (id, a)))
    })?;
    Ok(found.map(|(id, a)| ActorInfo {
        id,
        kind: super::types::kind_name(&a.kind).to_string(),
        key: match a.kind {
            ActorKind::Account { key } => Some(hex::encode(key.to_bytes())),
            _ => None,
        },
        balance: a.balance,
        nonce: a.nonce,
    }))
}

fn not_a_miner(id: ActorId) -> NodeError {
    NodeError::Actor(ActorError::new(
        ExitCode::NotFound,
        format!("{id} is not a miner"),
    ))
}

/// A miner's power claim with the network's consensus totals.
///
/// # Errors
/// [`NodeError::Actor`] (`NotFound`) when `id` is not a miner; a state store failure.
pub fn miner_power(c: &NodeCore, id: ActorId) -> NodeResult<MinerPowerInfo> {
    c.chain().view(|rt| {
        let Some(claim) = power::claim(rt, id)? else {
            return Err(not_a_miner(id));
        };
        let st = power::load(rt)?;
        Ok(MinerPowerInfo {
            miner: id,
            power: claim.power.into(),
            network: power::current_total(rt, &st).into(),
            meets_consensus_minimum: power::meets_consensus_minimum(rt, id)?,
        })
    })
}

/// The power actor's totals.
///
/// # Errors
/// A state store failure.
pub fn network_power(c: &NodeCore) -> NodeResult<NetworkPowerInfo> {
    c.chain().view(|rt| {
        let st = power::load(rt)?;
        Ok(NetworkPowerInfo {
            total: power::current_total(rt, &st).into(),
            committed: st.total_committed.into(),
            above_minimum: st.total_above_min.into(),
            miner_count: st.miner_count,
            miners_above_minimum: st.miners_above_min,
            qa_estimate: st.qa_estimate(),
            total_locked: st.total_locked,
        })
    })
}

/// A miner's info record, money and proving position.
///
/// # Errors
/// [`NodeError::Actor`] (`NotFound`) when `id` is not a miner; a state store failure.
pub fn miner_info(c: &NodeCore, id: ActorId) -> NodeResult<MinerInfoView> {
    c.chain().view(|rt| {
        let info = miner::info(rt, id).map_err(NodeError::Actor)?;
        let st = miner::load_state(rt, id).map_err(NodeError::Actor)?;
        let balance = rt.expect_actor(id).map_err(NodeError::Actor)?.balance;
        Ok(MinerInfoView {
            miner: id,
            owner: info.owner,
            worker: info.worker,
            worker_key: info.worker_key.to_bytes().to_vec(),
            sector_size: info.sector_size,
            sector_size_bytes: info.sector_size.bytes(),
            partition_sectors: info.partition_sectors,
            peer_id: libp2p::PeerId::from_bytes(&info.peer_id)
                .ok()
                .map(|p| p.to_string()),
            multiaddrs: info
                .multiaddrs
                .iter()
                .filter_map(|b| libp2p::Multiaddr::try_from(b.clone()).ok())
                .map(|a| a.to_string())
                .collect(),
            balance,
            available: st.available(balance),
            pre_commit_deposits: st.pre_commit_deposits,
            initial_pledge: st.initial_pledge,
            locked_funds: st.locked_funds,
            fee_debt: st.fee_debt,
            proving_period_start: st.proving_period_start,
            current_deadline: st.current_deadline,
            consensus_fault_elapsed: st.consensus_fault_elapsed,
        })
    })
}

fn sector_status(p: &Partition, n: u64) -> &'static str {
    if p.faults.contains(&n) {
        if p.recoveries.contains(&n) {
            "recovering"
        } else {
            "faulty"
        }
    } else if p.unproven.contains(&n) {
        "unproven"
    } else {
        "active"
    }
}

/// A miner's live sectors (every sector of its partitions), by deadline, partition and number.
///
/// # Errors
/// [`NodeError::Actor`] (`NotFound`) when `id` is not a miner; [`NodeError::Corrupt`] when a
/// partition names a sector with no record; a state store failure.
pub fn miner_sectors(c: &NodeCore, id: ActorId) -> NodeResult<Vec<SectorInfo>> {
    c.chain().view(|rt| {
        miner::info(rt, id).map_err(NodeError::Actor)?;
        let mut out = Vec::new();
        for (_, dl) in rt
            .state
            .scan::<Deadline>(&lode_chain::keys::deadline_prefix(id))?
        {
            for p in &dl.partitions {
                for &n in &p.sectors {
                    let Some(s) = rt
                        .state
                        .get::<SectorOnChain>(&lode_chain::keys::sector(id, n))?
                    else {
                        return Err(NodeError::Corrupt("a partition names a missing sector"));
                    };
                    out.push(SectorInfo {
                        sector_number: n,
                        comm_r: s.comm_r,
                        status: sector_status(p, n).to_string(),
                        activation: s.activation,
                        expiration: s.expiration,
                        deal_ids: s.deal_ids,
                        deal_weight: s.deal_weight,
                        verified_deal_weight: s.verified_deal_weight,
                        initial_pledge: s.initial_pledge,
                        deadline: s.deadline,
                        partition: s.partition,
                    });
                }
            }
        }
        Ok(out)
    })
}

/// What a miner's prover needs: its deadlines with partitions (next window, challenge and
/// randomness, sectors, faults, recoveries) and the deadline the chain processes next.
///
/// # Errors
/// [`NodeError::Actor`] (`NotFound`) when `id` is not a miner; a state store failure.
pub fn miner_deadlines(c: &NodeCore, id: ActorId) -> NodeResult<MinerDeadlinesInfo> {
    let policy = c.chain().policy().clone();
    let st = c
        .chain()
        .view(|rt| miner::load_state(rt, id))
        .map_err(NodeError::Actor)?;
    let view = c.proving_view(id)?;
    let cur = DeadlineInfo::new(&policy, st.proving_period_start, st.current_deadline);
    Ok(MinerDeadlinesInfo {
        miner: id,
        head_epoch: view.head_epoch,
        sector_size: view.sector_size,
        worker: view.worker,
        proving_period_start: st.proving_period_start,
        period_deadlines: policy.wpost_period_deadlines,
        current: DeadlineTiming {
            index: cur.index,
            open: cur.open,
            close: cur.close,
            challenge: cur.challenge,
            fault_cutoff: cur.fault_cutoff,
        },
        deadlines: view
            .deadlines
            .into_iter()
            .map(|d| DeadlineInfoView {
                index: d.index,
                open: d.open,
                close: d.close,
                challenge: d.challenge,
                fault_cutoff: d.fault_cutoff,
                randomness: d.randomness,
                posted: d.posted,
                partitions: d
                    .partitions
                    .into_iter()
                    .map(|p| PartitionInfo {
                        index: p.index,
                        sectors: p
                            .sectors
                            .iter()
                            .map(|s| SectorRefInfo {
                                sector_number: s.sector_number,
                                comm_r: s.comm_r,
                            })
                            .collect(),
                        faults: p.faults,
                        recoveries: p.recoveries,
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// The mempool's messages, by sender and nonce.
pub fn pending(c: &NodeCore) -> Vec<MessageInfo> {
    c.mempool()
        .pending()
        .into_iter()
        .map(MessageInfo::of)
        .collect()
}

/// The next nonce of `addr`'s account counting its pending messages; `None` when `addr` names no
/// account.
pub fn next_nonce(c: &NodeCore, addr: &Address) -> Option<u64> {
    c.next_nonce(addr)
}

/// Where message `id` was executed on the canonical chain, or `None` (pending, unknown, or on a
/// fork that was reverted).
///
/// # Errors
/// A block store failure.
pub fn search_message(c: &NodeCore, id: &[u8; 32]) -> NodeResult<Option<MessageLookupInfo>> {
    Ok(c.search_message(id)?.map(|l| MessageLookupInfo {
        epoch: l.epoch,
        tipset: l.tipset.0,
        receipt: l.receipt.into(),
    }))
}

/// A miner's pre-committed sectors with their ticket and (once drawn) seed.
///
/// # Errors
/// [`NodeError::Actor`] (`NotFound`) when `id` is not a miner; a state store failure.
pub fn miner_precommits(c: &NodeCore, id: ActorId) -> NodeResult<Vec<PreCommitView>> {
    let head = c.head_epoch();
    let policy = c.chain().policy().clone();
    c.chain().view(|rt| {
        miner::info(rt, id).map_err(NodeError::Actor)?;
        let mut out = Vec::new();
        for (_, pc) in rt
            .state
            .scan::<miner::PreCommit>(&lode_chain::keys::precommit_prefix(id))?
        {
            let entropy = id.0.to_le_bytes();
            let ticket = rt
                .randomness(RandomnessTag::SealTicket, pc.info.seal_rand_epoch, &entropy)
                .map_err(NodeError::Actor)?;
            let seed_epoch = pc.epoch.saturating_add(policy.pre_commit_challenge_delay);
            let seed = if seed_epoch <= head {
                rt.randomness(RandomnessTag::InteractiveSeed, seed_epoch, &entropy)
                    .ok()
            } else {
                None
            };
            out.push(PreCommitView {
                sector_number: pc.info.sector_number,
                comm_r: pc.info.comm_r,
                comm_d: pc.info.comm_d,
                deal_ids: pc.info.deal_ids.clone(),
                expiration: pc.info.expiration,
                seal_rand_epoch: pc.info.seal_rand_epoch,
                ticket,
                epoch: pc.epoch,
                deposit: pc.deposit,
                seed_epoch,
                seed,
                prove_by: pc.epoch.saturating_add(policy.max_prove_commit_duration),
            });
        }
        Ok(out)
    })
}

/// The seal ticket miner `id` draws from `epoch` (the randomness a pre-commit naming
/// `seal_rand_epoch = epoch` is checked against).
///
/// # Errors
/// [`NodeError::Actor`] when the epoch's randomness is not on chain (in the future, or older than
/// the state keeps); a state store failure.
pub fn seal_ticket(c: &NodeCore, id: ActorId, epoch: Epoch) -> NodeResult<[u8; 32]> {
    c.chain().view(|rt| {
        rt.randomness(RandomnessTag::SealTicket, epoch, &id.0.to_le_bytes())
            .map_err(NodeError::Actor)
    })
}

/// An actor's market escrow (zero for an unknown address or an actor without escrow).
///
/// # Errors
/// A state store failure.
pub fn market_balance(c: &NodeCore, addr: &Address) -> NodeResult<EscrowView> {
    c.chain().view(|rt| {
        let e = match rt.resolve(addr)? {
            Some(id) => market::escrow(rt, id)?,
            None => market::Escrow::default(),
        };
        Ok(EscrowView {
            balance: e.balance,
            locked: e.locked,
            available: e.balance.saturating_sub(e.locked),
        })
    })
}

/// The collateral bounds of a deal of `piece_size` padded bytes at the head (what
/// `PublishDeals` checks: the provider collateral floor of `monies::provider_collateral_min`
/// and the policy's cap on each amount).
///
/// # Errors
/// A state store failure.
pub fn deal_collateral_bounds(c: &NodeCore, piece_size: u64) -> NodeResult<CollateralBoundsView> {
    c.chain().view(|rt| {
        let econ = lode_chain::actors::economics::current(rt)?;
        Ok(CollateralBoundsView {
            piece_size,
            provider_min: lode_chain::monies::provider_collateral_min(rt.policy, &econ, piece_size),
            max: rt.policy.deal_max_amount,
        })
    })
}

/// A client's DataCap, in bytes; `None` when it has none (or no such actor exists).
///
/// # Errors
/// A state store failure.
pub fn verified_client_datacap(c: &NodeCore, addr: &Address) -> NodeResult<Option<u128>> {
    c.chain().view(|rt| {
        let Some(id) = rt.resolve(addr)? else {
            return Ok(None);
        };
        let cap = verifreg::datacap(rt, id)?;
        Ok((cap > 0).then_some(cap))
    })
}

/// A verifier's remaining allowance, in bytes; `None` when `addr` is not a verifier.
///
/// # Errors
/// A state store failure.
pub fn verifier_allowance(c: &NodeCore, addr: &Address) -> NodeResult<Option<u128>> {
    c.chain().view(|rt| {
        let Some(id) = rt.resolve(addr)? else {
            return Ok(None);
        };
        Ok(rt.state.get::<u128>(&lode_chain::keys::verifier(id))?)
    })
}

/// The RPC view of deal `id`.
pub fn deal_view(id: lode_chain::types::DealId, d: &market::Deal) -> DealView {
    let p = &d.proposal;
    DealView {
        deal_id: id,
        piece_cid: lode_proofs::cid::PieceCid::new(lode_proofs::node::Node(p.piece_cid))
            .map(|c| c.to_string())
            .unwrap_or_else(|| hex::encode(p.piece_cid)),
        piece_size: p.piece_size,
        verified: p.verified,
        client: p.client,
        provider: p.provider,
        label: p.label.clone(),
        start_epoch: p.start_epoch,
        end_epoch: p.end_epoch,
        price_per_epoch: p.price_per_epoch,
        provider_collateral: p.provider_collateral,
        client_collateral: p.client_collateral,
        state: if d.state.activation_epoch.is_some() {
            "active"
        } else {
            "published"
        }
        .to_string(),
        sector: d.state.sector,
        activation_epoch: d.state.activation_epoch,
        paid_until: d.paid_until(),
        allocation: d.state.allocation,
    }
}

/// A published deal; `None` when it never existed or has ended (a finished or slashed deal
/// leaves the state).
///
/// # Errors
/// A state store failure.
pub fn market_deal(c: &NodeCore, id: lode_chain::types::DealId) -> NodeResult<Option<DealView>> {
    c.chain()
        .view(|rt| Ok(market::deal(rt, id)?.map(|d| deal_view(id, &d))))
}

/// The most deals [`market_deals`] returns in one call.
pub const MAX_DEALS_LISTED: usize = 10_000;

/// The deals in the state, oldest first, optionally only those of one provider and/or one
/// client, at most [`MAX_DEALS_LISTED`] starting from deal id `from`.
///
/// # Errors
/// A state store failure.
pub fn market_deals(
    c: &NodeCore,
    provider: Option<ActorId>,
    client: Option<ActorId>,
    from: lode_chain::types::DealId,
) -> NodeResult<Vec<DealView>> {
    c.chain().view(|rt| {
        let next = market::load(rt)?.next_deal_id;
        let mut out = Vec::new();
        for id in from..next {
            if out.len() >= MAX_DEALS_LISTED {
                break;
            }
            let Some(d) = market::deal(rt, id)? else {
                continue;
            };
            if provider.is_some_and(|p| p != d.proposal.provider)
                || client.is_some_and(|cl| cl != d.proposal.client)
            {
                continue;
            }
            out.push(deal_view(id, &d));
        }
        Ok(out)
    })
}

/// A compute job; `None` when no job has that id.
///
/// # Errors
/// A state store failure.
pub fn compute_job(c: &NodeCore, id: u64) -> NodeResult<Option<JobView>> {
    let policy = c.chain().policy().clone();
    c.chain()
        .view(|rt| Ok(compute::job(rt, id)?.map(|j| JobView::of(id, &j, &policy))))
}

/// The most jobs [`compute_jobs`] returns in one call.
pub const MAX_JOBS_LISTED: usize = 1_000;

/// Compute jobs from id `from`, oldest first, at most [`MAX_JOBS_LISTED`]: those of `client`,
/// those `provider` accepted or is named in, and those `verifier` verifies (each `None`: any);
/// only open ones when `open_only`.
///
/// # Errors
/// A state store failure.
pub fn compute_jobs(c: &NodeCore, filter: JobFilter, from: u64) -> NodeResult<Vec<JobView>> {
    use lode_chain::actors::compute::Verification;
    let policy = c.chain().policy().clone();
    c.chain().view(|rt| {
        let next = compute::load(rt)?.next_job_id;
        let mut out = Vec::new();
        for id in from..next {
            if out.len() >= MAX_JOBS_LISTED {
                break;
            }
            let Some(j) = compute::job(rt, id)? else {
                continue;
            };
            let verifier = match &j.terms.verification {
                Verification::Verifier { verifier, .. } => Some(*verifier),
                Verification::Replicated { .. } => None,
            };
            let involves = |p: ActorId| {
                j.slots.iter().any(|s| s.provider == p) || j.terms.providers.contains(&p)
            };
            if filter.client.is_some_and(|cl| cl != j.client)
                || filter.provider.is_some_and(|p| !involves(p))
                || filter.verifier.is_some_and(|v| Some(v) != verifier)
                || (filter.open_only && j.outcome.is_some())
            {
                continue;
            }
            out.push(JobView::of(id, &j, &policy));
        }
        Ok(out)
    })
}
