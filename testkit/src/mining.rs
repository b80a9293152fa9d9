//! Block production on a [`NodeCore`] with fake proofs (checked by [`FakeVerifier`]): what a miner
//! of 2 KiB sectors does each epoch, for the node's tests and benchmarks (enabled by the `node`
//! feature).
//!
//! [`FakeVerifier`]: crate::harness::FakeVerifier

use lode_chain::Policy;
use lode_chain::actors::miner::{MinerMethod, PostPartition, WindowPostParams};
use lode_chain::block::{BlockHeader, BlockMessages, win_count};
use lode_chain::crypto::{CryptoResult, SecretKey};
use lode_chain::message::{Message, Method};
use lode_chain::runtime::{RandomnessTag, draw_randomness};
use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_node::NodeResult;
use lode_node::core::{MinerBase, NodeCore};
use lode_node::wire::FullBlock;
use lode_proofs::sector::SectorSize;
use lode_proofs::verifier::{WindowPostStatement, WinningPostStatement};

use crate::harness::{fake_window_proof, fake_winning_proof};

/// The block that `worker` makes for `miner` on the mining base `mb` (from
/// [`NodeCore::miner_base`]), if the miner wins the election there: the election proof and ticket
/// signed by the worker, a fake Winning PoSt of the base's sectors, the base's messages (unsigned,
/// their signatures' aggregate in the header), and the header's signature. `None` when the miner
/// does not win or cannot (`mb.ineligible`).
///
/// # Errors
///
/// When the messages' signatures cannot be aggregated ([`BlockMessages::from_signed`]).
pub fn make_block(
    policy: &Policy,
    miner: ActorId,
    worker: &SecretKey,
    mb: &MinerBase,
) -> CryptoResult<Option<FullBlock>> {
    let b = &mb.base;
    let epoch = b.epoch;
    let entropy = miner.0.to_le_bytes();
    let draw = |tag| draw_randomness(tag, &b.beacon, epoch, &entropy);
    let election_proof = worker.sign(&draw(RandomnessTag::Election));
    let wins = win_count(
        &election_proof,
        mb.miner_qa,
        b.network_qa,
        policy.expected_leaders_per_epoch,
        policy.max_win_count,
    );
    if wins == 0 || mb.ineligible.is_some() {
        return Ok(None);
    }
    let statement = WinningPostStatement {
        size: SectorSize::S2KiB,
        miner_id: miner.0,
        randomness: draw(RandomnessTag::WinningPost),
        sectors: mb.sectors.iter().map(|s| s.public()).collect(),
    };
    let body = BlockMessages::from_signed(&mb.messages)?;
    let mut header = BlockHeader {
        epoch,
        miner,
        parents: b.parents.0.clone(),
        parent_weight: b.parent_weight,
        ticket: worker.sign(&draw(RandomnessTag::Ticket)),
        timestamp: b.timestamp,
        parent_state_root: b.parent_state_root,
        beacon: b.beacon,
        messages_root: body.root(),
        bls_aggregate: body.bls_aggregate,
        election_proof,
        win_count: wins,
        winning_post: fake_winning_proof(&statement),
        signature: worker.sign(b""),
    };
    header.signature = worker.sign(&header.signing_bytes(&policy.network));
    Ok(Some(FullBlock {
        header,
        messages: body.messages,
    }))
}

/// Pushes `miner`'s Window PoSt (fake proofs, signed by `worker`) into `core`'s mempool for every
/// deadline whose challenge window is open at the next epoch and not yet posted, as its prover
/// would. A message already pending (a window spans several epochs) is refused by the pool and
/// left there.
///
/// # Errors
///
/// When the core cannot give the miner's proving view ([`NodeCore::proving_view`]).
pub fn push_window_posts(
    core: &mut NodeCore,
    miner: ActorId,
    worker: &SecretKey,
) -> NodeResult<()> {
    let view = core.proving_view(miner)?;
    let next = view.head_epoch.saturating_add(1);
    for dl in &view.deadlines {
        let Some(randomness) = dl.randomness else {
            continue;
        };
        if !(dl.open <= next && next < dl.close) {
            continue;
        }
        let mut params = WindowPostParams {
            deadline: dl.index,
            partitions: Vec::new(),
            proofs: Vec::new(),
        };
        for p in dl
            .partitions
            .iter()
            .filter(|p| !dl.posted.contains(&p.index))
        {
            let sectors: Vec<_> = p
                .sectors
                .iter()
                .filter(|s| {
                    !p.faults.contains(&s.sector_number) || p.recoveries.contains(&s.sector_number)
                })
                .map(|s| s.public())
                .collect();
            if sectors.is_empty() {
                continue;
            }
            params.partitions.push(PostPartition {
                index: p.index,
                skipped: Default::default(),
            });
            params.proofs.push(fake_window_proof(&WindowPostStatement {
                size: view.sector_size,
                randomness,
                sectors,
            }));
        }
        if params.partitions.is_empty() {
            continue;
        }
        let from = Address::Id(view.worker);
        // The worker is an account from genesis on: it always has a nonce.
        let Some(nonce) = core.next_nonce(&from) else {
            continue;
        };
        let policy = &core.genesis().policy;
        let msg = Message {
            from,
            to: miner.into(),
            nonce,
            value: TokenAmount::ZERO,
            method: Method::Miner(MinerMethod::SubmitWindowPost(params)),
            gas_limit: 10_000_000,
            gas_price: policy.min_gas_price,
        }
        .sign(&policy.network, worker);
        // Already pending: the pool says so.
        let _ = core.push_message(msg);
    }
    Ok(())
}
