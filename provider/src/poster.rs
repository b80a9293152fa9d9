//! Window PoSt, faults and recoveries: keeping power, deadline after deadline.
//!
//! Every tick (once per epoch) the poster reads the miner's deadlines at the head and, for each
//! deadline instance (its index and the epoch its window opens):
//!
//! - **proves** once the challenge epoch is on chain and at least one epoch deep (a shallower one
//!   could still be reorganised away), while the window has not closed: one SNARK per partition
//!   that has sectors to prove and is not yet posted, over the sectors it expects proven (live and
//!   not faulty, or faulty but declared recovered); sectors it cannot read or whose openings fail
//!   are *skipped* (they become faulty, without the cost of a failed proof);
//! - **submits** the proofs as one `SubmitWindowPost` message once the window is open (the
//!   message lands in a block of the window);
//! - **re-submits** if, a few epochs later, the partitions are still not posted while the window
//!   is open (a reorganisation dropped the message, or it was never included);
//! - **drops** any work whose window has closed, and counts a deadline that closed without its
//!   partitions posted as *missed* (a warning in the log, `lode_provider_window_post_missed`).
//!   Each step checks its own window when it starts, so stale work never delays the current
//!   deadline.
//!
//! Before each upcoming deadline's fault cutoff it **declares faulty** the sectors it cannot read
//! (cheaper than being caught by a missed proof) and **declares recovered** faulty sectors that are
//! readable again, so they regain power with the next proof.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use lode_chain::Policy;
use lode_chain::actors::miner::{MinerMethod, PostPartition, SectorLocation, WindowPostParams};
use lode_chain::crypto::SecretKey;
use lode_chain::message::{Message, Method};
use lode_chain::types::{ActorId, Address, Epoch, TokenAmount};
use lode_node::core::{DeadlineView, ProvingView, SectorRef};

use crate::api::NodeApi;
use crate::error::{ProviderError, ProviderResult};
use crate::metrics::ProviderMetrics;
use crate::prover::Prover;

/// Epochs after submission before a proof still not on chain is sent again.
const RESUBMIT_AFTER: Epoch = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Task {
    Proved(WindowPostParams),
    Submitted { at: Epoch, params: WindowPostParams },
    Confirmed,
}

/// What one tick did (for logs and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Deadlines proven this tick.
    pub proved: Vec<u64>,
    /// Deadlines whose proofs were submitted (or re-submitted).
    pub submitted: Vec<u64>,
    /// Deadlines confirmed on chain.
    pub confirmed: Vec<u64>,
    /// Deadlines missed.
    pub missed: Vec<u64>,
    /// Sectors declared faulty.
    pub faults: Vec<u64>,
    /// Sectors declared recovered.
    pub recoveries: Vec<u64>,
}

/// The Window PoSt half of a miner.
pub struct Poster {
    actor: ActorId,
    worker: SecretKey,
    policy: Policy,
    prover: Arc<Prover>,
    metrics: ProviderMetrics,
    tasks: BTreeMap<(u64, Epoch), Task>,
    declared: BTreeSet<(u64, Epoch, u64)>,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster")
            .field("actor", &self.actor)
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

/// Sectors a partition must prove: live and not faulty, or faulty but declared recovered.
fn expected(p: &lode_node::core::PartitionView) -> Vec<SectorRef> {
    p.sectors
        .iter()
        .filter(|s| !p.faults.contains(&s.sector_number) || p.recoveries.contains(&s.sector_number))
        .copied()
        .collect()
}

/// Partitions of `dl` with sectors to prove that are not posted yet.
fn pending_partitions(dl: &DeadlineView) -> Vec<u64> {
    dl.partitions
        .iter()
        .filter(|p| !dl.posted.contains(&p.index) && !expected(p).is_empty())
        .map(|p| p.index)
        .collect()
}

impl Poster {
    /// A poster for `actor`, signing with its worker key.
    pub fn new(
        actor: ActorId,
        worker: SecretKey,
        policy: Policy,
        prover: Arc<Prover>,
        metrics: ProviderMetrics,
    ) -> Self {
        Poster {
            actor,
            worker,
            policy,
            prover,
            metrics,
            tasks: BTreeMap::new(),
            declared: BTreeSet::new(),
        }
    }

    /// One round: see the module docs.
    pub async fn tick<A: NodeApi>(&mut self, api: &A) -> ProviderResult<TickReport> {
        let view = api.proving_view(self.actor).await?;
        let mut report = TickReport::default();
        let now = view.head_epoch;
        let next = now.saturating_add(1);
        self.retire(&view, &mut report);
        for dl in &view.deadlines {
            let key = (dl.index, dl.open);
            let pending = pending_partitions(dl);
            if pending.is_empty() {
                if matches!(self.tasks.get(&key), Some(Task::Submitted { .. })) {
                    self.tasks.insert(key, Task::Confirmed);
                    self.metrics.window_post_proven.inc();
                    report.confirmed.push(dl.index);
                    tracing::info!(deadline = dl.index, open = dl.open, "Window PoSt on chain");
                }
                continue;
            }
            if next >= dl.close {
                continue;
            }
            match self.tasks.get(&key).cloned() {
                None | Some(Task::Confirmed) => {
                    let Some(randomness) = dl.randomness else {
                        continue;
                    };
                    if now < dl.challenge.saturating_add(1) {
                        continue;
                    }
                    let params = self.prove(dl, &pending, randomness).await?;
                    // The window may have closed while proving: drop stale work.
                    report.proved.push(dl.index);
                    if params.partitions.is_empty() {
                        continue;
                    }
                    self.tasks.insert(key, Task::Proved(params));
                    if next >= dl.open {
                        self.submit(api, key, now, &view, &mut report).await?;
                    }
                }
                Some(Task::Proved(_)) => {
                    if next >= dl.open {
                        self.submit(api, key, now, &view, &mut report).await?;
                    }
                }
                Some(Task::Submitted { at, .. }) => {
                    if now >= at.saturating_add(RESUBMIT_AFTER) {
                        tracing::warn!(
                            deadline = dl.index,
                            "Window PoSt not on chain {RESUBMIT_AFTER} epochs after submission: sending it again"
                        );
                        self.submit(api, key, now, &view, &mut report).await?;
                    }
                }
            }
        }
        self.declare(api, &view, &mut report).await?;
        Ok(report)
    }

    /// Drops the tasks of windows that have closed, counting the unconfirmed ones as missed.
    fn retire(&mut self, view: &ProvingView, report: &mut TickReport) {
        let next = view.head_epoch.saturating_add(1);
        let current: BTreeMap<u64, &DeadlineView> =
            view.deadlines.iter().map(|d| (d.index, d)).collect();
        let keys: Vec<(u64, Epoch)> = self.tasks.keys().copied().collect();
        for key in keys {
            let (index, open) = key;
            let closed = match current.get(&index) {
                Some(d) => d.open != open || next >= d.close,
                None => true,
            };
            if closed {
                if !matches!(self.tasks.get(&key), Some(Task::Confirmed)) {
                    self.metrics.window_post_missed.inc();
                    report.missed.push(index);
                    tracing::warn!(
                        deadline = index,
                        open,
                        "Window PoSt missed: the deadline closed without this miner's proof on chain"
                    );
                }
                self.tasks.remove(&key);
            }
        }
        self.declared
            .retain(|(_, open, _)| current.values().any(|d| d.open == *open) || *open > next);
    }

    async fn prove(
        &self,
        dl: &DeadlineView,
        pending: &[u64],
        randomness: [u8; 32],
    ) -> ProviderResult<WindowPostParams> {
        let work: Vec<(u64, Vec<SectorRef>)> = dl
            .partitions
            .iter()
            .filter(|p| pending.contains(&p.index))
            .map(|p| (p.index, expected(p)))
            .collect();
        let prover = self.prover.clone();
        let metrics = self.metrics.clone();
        let deadline = dl.index;
        tokio::task::spawn_blocking(move || {
            let mut params = WindowPostParams {
                deadline,
                partitions: Vec::new(),
                proofs: Vec::new(),
            };
            for (index, sectors) in work {
                let started = Instant::now();
                let p = prover.window_post(randomness, &sectors)?;
                metrics
                    .window_post_seconds
                    .observe(started.elapsed().as_secs_f64());
                if p.proof.is_empty() {
                    tracing::warn!(
                        deadline,
                        partition = index,
                        "no sector of the partition could be proven"
                    );
                    continue;
                }
                params.partitions.push(PostPartition {
                    index,
                    skipped: p.skipped.into_iter().collect(),
                });
                params.proofs.push(p.proof);
            }
            Ok::<_, ProviderError>(params)
        })
        .await
        .map_err(|_| ProviderError::Stopped)?
    }

    async fn submit<A: NodeApi>(
        &mut self,
        api: &A,
        key: (u64, Epoch),
        now: Epoch,
        view: &ProvingView,
        report: &mut TickReport,
    ) -> ProviderResult<()> {
        let params = match self.tasks.get(&key) {
            Some(Task::Proved(p)) | Some(Task::Submitted { params: p, .. }) => p.clone(),
            _ => return Ok(()),
        };
        let sectors: usize = view
            .deadlines
            .iter()
            .filter(|d| d.index == key.0)
            .flat_map(|d| d.partitions.iter().map(|p| p.sectors.len()))
            .sum();
        let proofs = params.proofs.len();
        self.send(
            api,
            view,
            Method::Miner(MinerMethod::SubmitWindowPost(params.clone())),
            proofs,
            sectors,
        )
        .await?;
        self.metrics.window_post_submitted.inc();
        report.submitted.push(key.0);
        tracing::info!(
            deadline = key.0,
            partitions = proofs,
            "Window PoSt submitted"
        );
        self.tasks.insert(key, Task::Submitted { at: now, params });
        Ok(())
    }

    /// Declares unreadable sectors faulty and readable faulty ones recovered, for deadlines
    /// whose fault cutoff is still ahead.
    async fn declare<A: NodeApi>(
        &mut self,
        api: &A,
        view: &ProvingView,
        report: &mut TickReport,
    ) -> ProviderResult<()> {
        let next = view.head_epoch.saturating_add(1);
        let index = self.prover.store().scan();
        self.metrics
            .sectors
            .set(i64::try_from(index.len()).unwrap_or(i64::MAX));
        let mut faults = Vec::new();
        let mut recoveries = Vec::new();
        for dl in &view.deadlines {
            if next >= dl.fault_cutoff {
                continue;
            }
            for p in &dl.partitions {
                let mut bad = BTreeSet::new();
                let mut back = BTreeSet::new();
                for s in &p.sectors {
                    let n = s.sector_number;
                    if self.declared.contains(&(dl.index, dl.open, n)) {
                        continue;
                    }
                    let readable = self.prover.store().open(n, &index).is_some();
                    let faulty = p.faults.contains(&n);
                    if !readable && !faulty {
                        bad.insert(n);
                    } else if readable && faulty && !p.recoveries.contains(&n) {
                        back.insert(n);
                    }
                }
                for n in bad.iter().chain(back.iter()) {
                    self.declared.insert((dl.index, dl.open, *n));
                }
                if !bad.is_empty() {
                    report.faults.extend(bad.iter().copied());
                    faults.push(SectorLocation {
                        deadline: dl.index,
                        partition: p.index,
                        sectors: bad,
                    });
                }
                if !back.is_empty() {
                    report.recoveries.extend(back.iter().copied());
                    recoveries.push(SectorLocation {
                        deadline: dl.index,
                        partition: p.index,
                        sectors: back,
                    });
                }
            }
        }
        if !faults.is_empty() {
            let n: usize = faults.iter().map(|l| l.sectors.len()).sum();
            tracing::warn!(sectors = ?report.faults, "declaring unreadable sectors faulty");
            self.send(
                api,
                view,
                Method::Miner(MinerMethod::DeclareFaults(faults)),
                0,
                n,
            )
            .await?;
            self.metrics.faults_declared.inc_by(n as u64);
        }
        if !recoveries.is_empty() {
            let n: usize = recoveries.iter().map(|l| l.sectors.len()).sum();
            tracing::info!(sectors = ?report.recoveries, "declaring sectors recovered");
            self.send(
                api,
                view,
                Method::Miner(MinerMethod::DeclareRecoveries(recoveries)),
                0,
                n,
            )
            .await?;
            self.metrics.recoveries_declared.inc_by(n as u64);
        }
        Ok(())
    }

    /// Signs and pushes a message from the worker to the miner actor.
    async fn send<A: NodeApi>(
        &self,
        api: &A,
        view: &ProvingView,
        method: Method,
        proofs: usize,
        sectors: usize,
    ) -> ProviderResult<[u8; 32]> {
        let from = Address::Id(view.worker);
        let nonce = api.next_nonce(from).await?;
        let p = &self.policy;
        let mut msg = Message {
            from,
            to: Address::Id(self.actor),
            nonce,
            value: TokenAmount::ZERO,
            method,
            gas_limit: 0,
            gas_price: p.min_gas_price,
        };
        let len = lode_chain::codec::encode(&msg).len() as u64;
        let estimate = p
            .gas_base
            .saturating_add(p.gas_per_byte.saturating_mul(len.saturating_add(256)))
            .saturating_add(p.gas_per_proof.saturating_mul(proofs as u64))
            .saturating_add(p.gas_per_sector.saturating_mul(sectors as u64))
            .saturating_add(p.gas_per_signature.saturating_mul(2));
        msg.gas_limit = estimate.saturating_mul(2);
        let signed = msg.sign(&p.network, &self.worker);
        api.push_message(signed).await
    }
}
