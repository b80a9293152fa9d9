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
//!
//! **Winning PoSt as a task.** With a scheduler ([`Miner::with_tasks`]: the sealing pipeline's),
//! each Winning PoSt is registered as a time-sensitive [`TaskKind::WinningPost`] task, as the
//! poster registers each Window PoSt: while it waits or runs, sealing admits nothing beyond the
//! sealing share (the PoSt reserve stays free for it) and no sealing task is admitted ahead of
//! it. The election's proof cannot wait long, so admission is awaited for at most a quarter of
//! an epoch ([`ADMISSION_WAIT_DIVISOR`]); past that the proof runs anyway (the task, still
//! queued, keeps sealing admission paused until it is admitted and closed as abandoned), and a
//! scheduler that cannot record the task never holds the proof back.

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
use crate::tasks::{Scheduler, TaskKind};

/// A Winning PoSt waits for its task's admission at most an epoch divided by this.
pub const ADMISSION_WAIT_DIVISOR: u32 = 4;

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
    /// The task scheduler each Winning PoSt registers with (time-sensitive), when there is one.
    scheduler: Option<Scheduler>,
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
            scheduler: None,
        }
    }

    /// The same miner, its Winning PoSts run as time-sensitive tasks of `tasks` (see the module
    /// docs).
    pub fn with_tasks(mut self, tasks: Scheduler) -> Self {
        self.scheduler = Some(tasks);
        self
    }

    /// Registers a Winning PoSt with the scheduler, waiting for its admission at most
    /// [`ADMISSION_WAIT_DIVISOR`]th of an epoch; `None` without a scheduler, past the wait, or
    /// when the scheduler fails (the proof is never held back).
    async fn winning_post_slot(&self, epoch: Epoch) -> Option<crate::tasks::PostSlot> {
        let tasks = self.scheduler.as_ref()?;
        let wait = std::time::Duration::from_secs(self.policy.epoch_duration_seconds)
            .checked_div(ADMISSION_WAIT_DIVISOR)
            .unwrap_or_default();
        match tokio::time::timeout(wait, tasks.time_sensitive(TaskKind::WinningPost)).await {
            Ok(Ok(slot)) => Some(slot),
            Ok(Err(e)) => {
                tracing::warn!(epoch, error = %e, "cannot register the Winning PoSt task");
                None
            }
            Err(_) => {
                tracing::warn!(
                    epoch,
                    "the Winning PoSt task was not admitted within a quarter epoch: proving anyway"
                );
                None
            }
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
        let slot = self.winning_post_slot(epoch).await;
        let started = Instant::now();
        let prover = self.prover.clone();
        let sectors = mb.sectors.clone();
        let miner_id = self.actor.0;
        let proved = tokio::task::spawn_blocking(move || {
            prover.winning_post(miner_id, randomness, &sectors)
        })
        .await
        .map_err(|_| ProviderError::Stopped)?;
        if let Some(slot) = slot
            && let Err(e) = slot.finish(proved.as_ref().err().map(ToString::to_string))
        {
            tracing::warn!(epoch, error = %e, "cannot record the Winning PoSt task");
        }
        let winning_post = proved?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::pipeline::PipelineStore;
    use crate::pipeline::state::RetryPolicy;
    use crate::prover::SectorStore;
    use crate::tasks::config::Reserve;
    use crate::tasks::{SchedulerConfig, TaskState};
    use lode_proofs::sector::SectorSize;

    fn miner(dir: &std::path::Path, tasks: Scheduler) -> Miner {
        let params = lode_testkit::harness::unused_params();
        let prover = Prover::with_params(
            SectorStore::new(dir, 1000, SectorSize::S2KiB),
            SectorSize::S2KiB,
            params.clone(),
            params,
        );
        let mut registry = prometheus_client::registry::Registry::default();
        Miner::new(
            ActorId(1000),
            SecretKey::from_seed(&[3; 32]),
            Policy::devnet(),
            Arc::new(prover),
            ProviderMetrics::register(&mut registry),
        )
        .with_tasks(tasks)
    }

    #[tokio::test]
    async fn a_winning_post_is_a_time_sensitive_task_whose_admission_is_awaited_briefly() {
        let d = tempfile::tempdir().unwrap();
        let p = PipelineStore::open(d.path()).unwrap();
        let config = SchedulerConfig {
            cores: Some(2),
            memory: Some(1 << 40),
            post_reserve: Some(Reserve {
                cores: 1,
                ..Reserve::default()
            }),
            ..SchedulerConfig::default()
        };
        let s = Scheduler::new(&p, &config, SectorSize::S2KiB, RetryPolicy::default());
        let m = miner(d.path(), s.clone());
        // The reserve is free: admitted at once, recorded as a WinningPost task.
        let slot = m.winning_post_slot(7).await.expect("admitted");
        let running = s.list().unwrap();
        assert_eq!(
            (running[0].kind, running[0].state),
            (TaskKind::WinningPost, TaskState::Running)
        );
        // The machine taken by a Window PoSt and this one: the next Winning PoSt does not wait
        // past a quarter epoch (the devnet's is one second), it proves without a slot.
        let window = s.time_sensitive(TaskKind::WindowPost).await.unwrap();
        let started = std::time::Instant::now();
        assert!(m.winning_post_slot(8).await.is_none());
        let waited = started.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(250)
                && waited < std::time::Duration::from_secs(2),
            "{waited:?}"
        );
        slot.finish(None).unwrap();
        window.finish(None).unwrap();
        let kinds: Vec<_> = s
            .list()
            .unwrap()
            .iter()
            .map(|v| (v.kind, v.state))
            .collect();
        assert_eq!(
            kinds[..2],
            [
                (TaskKind::WinningPost, TaskState::Done),
                (TaskKind::WindowPost, TaskState::Done)
            ]
        );
    }
}
