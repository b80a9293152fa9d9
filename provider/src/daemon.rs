//! The daemon's loops, on the network's clock.
//!
//! Epoch `e` starts at `genesis.timestamp + e × epoch_duration`. The mining loop runs each epoch's
//! election shortly after the epoch starts (`mine_delay`, so the previous epoch's blocks have
//! arrived); the proving loop ticks the [`Poster`] in the middle of each epoch. They are separate
//! tasks, so a long Window PoSt never delays an election. The mining loop publishes what it saw
//! last ([`MiningEvents`]) for the provider's API; the poster publishes its own status.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lode_node::genesis::GenesisFile;
use tokio::sync::watch;

use crate::api::NodeApi;
use crate::metrics::ProviderMetrics;
use crate::miner::{Election, Miner};
use crate::poster::Poster;
use crate::status::{BlockRecord, EpochNote, MiningEvents};

/// Timing of the loops.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long after an epoch starts its election runs.
    pub mine_delay: Duration,
    /// How long after an epoch starts the poster ticks.
    pub post_delay: Duration,
}

impl Timing {
    /// Defaults for an epoch of `epoch_seconds`: elections at 10% of the epoch, PoSt at 50%.
    pub fn for_epoch(epoch_seconds: u64) -> Self {
        let epoch = Duration::from_secs(epoch_seconds.max(1));
        Timing {
            mine_delay: epoch.checked_div(10).unwrap_or_default(),
            post_delay: epoch.checked_div(2).unwrap_or_default(),
        }
    }
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Sleeps until `offset` into the epoch after the current one; returns that epoch.
async fn next_slot(genesis: &GenesisFile, offset: Duration, after: u64) -> u64 {
    let secs = genesis.policy.epoch_duration_seconds.max(1);
    let t = now();
    let mut epoch = genesis.epoch_at(t.as_secs()).saturating_add(1).max(after);
    loop {
        let start = Duration::from_secs(genesis.slot_time(epoch)).saturating_add(offset);
        if start >= t {
            tokio::time::sleep(start.saturating_sub(now())).await;
            return epoch;
        }
        epoch = epoch.saturating_add(1);
        if epoch > genesis.epoch_at(t.as_secs()).saturating_add(secs) {
            return epoch;
        }
    }
}

/// Runs the mining loop until `stop` turns true, recording each election's outcome in `events`.
pub async fn mine_loop<A: NodeApi>(
    api: Arc<A>,
    miner: Miner,
    genesis: GenesisFile,
    timing: Timing,
    events: watch::Sender<MiningEvents>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = 1u64;
    loop {
        let epoch = tokio::select! {
            e = next_slot(&genesis, timing.mine_delay, next) => e,
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
        next = epoch.saturating_add(1);
        let outcome = miner.mine(api.as_ref(), epoch).await;
        match &outcome {
            Ok(Election::Produced { wins, id }) => {
                tracing::info!(epoch, wins, block = %hex::encode(id), "won the election: block accepted");
            }
            Ok(Election::Refused(why)) => {
                tracing::warn!(epoch, why = %why, "won the election but the node refused the block");
            }
            Ok(Election::Lost) => tracing::debug!(epoch, "election lost"),
            Ok(Election::Ineligible(why)) => tracing::debug!(epoch, why = %why, "not eligible"),
            Err(e) => tracing::warn!(epoch, error = %e, "mining failed"),
        }
        events.send_modify(|ev| record(ev, epoch, &outcome));
    }
}

/// Folds one election's outcome into `ev`.
fn record(ev: &mut MiningEvents, epoch: u64, outcome: &crate::error::ProviderResult<Election>) {
    let note = |why: String| Some(EpochNote { epoch, why });
    ev.last_election = Some(epoch);
    ev.ineligible = None;
    match outcome {
        Ok(Election::Produced { wins, id }) => {
            ev.last_block = Some(BlockRecord {
                epoch,
                id: *id,
                wins: *wins,
            });
        }
        Ok(Election::Refused(why)) => ev.last_refused = note(why.clone()),
        Ok(Election::Lost) => {}
        Ok(Election::Ineligible(why)) => ev.ineligible = note(why.clone()),
        Err(e) => ev.last_error = note(e.to_string()),
    }
}

/// Runs the proving loop until `stop` turns true.
pub async fn post_loop<A: NodeApi>(
    api: Arc<A>,
    mut poster: Poster,
    genesis: GenesisFile,
    timing: Timing,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = 1u64;
    loop {
        let epoch = tokio::select! {
            e = next_slot(&genesis, timing.post_delay, next) => e,
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
        next = epoch.saturating_add(1);
        if let Err(e) = poster.tick(api.as_ref()).await {
            tracing::warn!(epoch, error = %e, "proving round failed");
        }
    }
}

/// Reads the miner's power and balances from the node every epoch (at the poster's offset) into
/// the chain gauges of `metrics` ([`ProviderMetrics::set_chain`]), until `stop` turns true. A
/// node that does not answer leaves the gauges at their last values.
pub async fn chain_gauges_loop<A: NodeApi>(
    api: Arc<A>,
    actor: lode_chain::types::ActorId,
    metrics: ProviderMetrics,
    genesis: GenesisFile,
    timing: Timing,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = 1u64;
    loop {
        let epoch = tokio::select! {
            e = next_slot(&genesis, timing.post_delay, next) => e,
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
        next = epoch.saturating_add(1);
        let (power, info) = tokio::join!(api.miner_power(actor), api.miner_info(actor));
        if let Err(e) = &info {
            tracing::debug!(epoch, error = %e, "miner info for the balance gauges");
        }
        metrics.set_chain(power.ok().as_ref(), info.ok().as_ref());
    }
}
