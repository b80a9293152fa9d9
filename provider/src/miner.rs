//! Block production: the election each epoch, and the block when it is won.
//!
//! At epoch `e` the miner asks the node for its view of the mining base (the head, the beacon,
//! its power and the network's, its active sectors, the messages a block would carry). It signs
//! the ticket (`draw(Ticket, beacon, e, miner)`) and the election randomness
//! (`draw(Election, beacon, e, miner)`) with its worker key; the election proof's win count is
//! drawn as the chain draws it. When it wins, it proves a Winning PoSt over its sectors, puts the
//! messages in the block unsigned with the aggregate of their signatures in the header, builds
//! and signs the header and submits the block; the node validates it like any other before
//! applying and gossiping it.

use std::sync::Arc;
use std::time::Instant;

use lode_chain::Policy;
use lode_chain::block::{BlockHeader, BlockMessages, win_count};
use lode_chain::crypto::SecretKey;
use lode_chain::runtime::{RandomnessTag, draw_randomness};
use lode_chain::types::{ActorId, Epoch};
use lode_node::core::BlockVerdict;
use lode_node::wire::FullBlock;

use crate::api::NodeApi;
use crate::error::{ProviderError, ProviderResult};
use crate::metrics::ProviderMetrics;
use crate::prover::Prover;

/// What came of an epoch's election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Election {
    /// The miner cannot win now (why).
    Ineligible(String),
    /// It did not win.
    Lost,
    /// It won and the node accepted its block.
    Produced {
        /// Win count.
        wins: u64,
        /// The block's id.
        id: [u8; 32],
    },
    /// It won but the node refused the block (why).
    Refused(String),
}

/// The block-producing half of a miner.
pub struct Miner {
    actor: ActorId,
    worker: SecretKey,
    policy: Policy,
    prover: Arc<Prover>,
    metrics: ProviderMetrics,
}

impl std::fmt::Debug for Miner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Miner").field("actor", &self.actor).finish()
    }
}

impl Miner {
    /// A miner for `actor`, signing with its worker key.
    pub fn new(
        actor: ActorId,
        worker: SecretKey,
        policy: Policy,
        prover: Arc<Prover>,
        metrics: ProviderMetrics,
    ) -> Self {
        Miner {
            actor,
            worker,
            policy,
            prover,
            metrics,
        }
    }

    /// Runs the election of `epoch` and, if won, makes and submits the block.
    pub async fn mine<A: NodeApi>(&self, api: &A, epoch: Epoch) -> ProviderResult<Election> {
        let mb = api.miner_base(self.actor, epoch).await?;
        if let Some(why) = mb.ineligible {
            return Ok(Election::Ineligible(why));
        }
        if mb.miner_qa == 0 {
            return Ok(Election::Ineligible("no power".into()));
        }
        let base = &mb.base;
        let entropy = self.actor.0.to_le_bytes();
        let ticket = self.worker.sign(&draw_randomness(
            RandomnessTag::Ticket,
            &base.beacon,
            epoch,
            &entropy,
        ));
        let election_proof = self.worker.sign(&draw_randomness(
            RandomnessTag::Election,
            &base.beacon,
            epoch,
            &entropy,
        ));
        let wins = win_count(
            &election_proof,
            mb.miner_qa,
            base.network_qa,
            self.policy.expected_leaders_per_epoch,
            self.policy.max_win_count,
        );
        if wins == 0 {
            return Ok(Election::Lost);
        }
        self.metrics.elections_won.inc();
        let body = BlockMessages::from_signed(&mb.messages).map_err(ProviderError::Aggregate)?;
        let randomness = draw_randomness(RandomnessTag::WinningPost, &base.beacon, epoch, &entropy);
        let started = Instant::now();
        let prover = self.prover.clone();
        let sectors = mb.sectors.clone();
        let miner_id = self.actor.0;
        let winning_post = tokio::task::spawn_blocking(move || {
            prover.winning_post(miner_id, randomness, &sectors)
        })
        .await
        .map_err(|_| ProviderError::Stopped)??;
        self.metrics
            .winning_post_seconds
            .observe(started.elapsed().as_secs_f64());
        let mut header = BlockHeader {
            epoch,
            miner: self.actor,
            parents: base.parents.0.clone(),
            parent_weight: base.parent_weight,
            ticket,
            timestamp: base.timestamp,
            parent_state_root: base.parent_state_root,
            beacon: base.beacon,
            messages_root: body.root(),
            bls_aggregate: body.bls_aggregate,
            election_proof,
            win_count: wins,
            winning_post,
            signature: self.worker.sign(b""),
        };
        header.signature = self
            .worker
            .sign(&header.signing_bytes(&self.policy.network));
        let block = FullBlock {
            header,
            messages: body.messages,
        };
        let id = block.id();
        match api.submit_block(block).await? {
            BlockVerdict::Accepted => {
                self.metrics.blocks_produced.inc();
                Ok(Election::Produced { wins, id })
            }
            other => {
                self.metrics.blocks_refused.inc();
                Ok(Election::Refused(format!("{other:?}")))
            }
        }
    }
}
