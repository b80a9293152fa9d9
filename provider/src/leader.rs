//! The leader lease of a miner actor in a cluster: exactly one `lode provider run` per miner
//! sends chain messages (pre-commits, prove-commits, Window PoSts, blocks).
//!
//! [`Leader::acquire`] waits until this process holds the lease `provider/<actor>` of the
//! cluster's engine (a second provider of the same miner is a standby meanwhile). The holder
//! renews it every third of its length (sooner again after a failed renewal); when a renewal has
//! not succeeded for two thirds of it
//! (the database unreachable, the process paused) or the lease has changed hands, the leader
//! declares itself deposed ([`Leader::deposed`]) before the lease can expire, and the provider
//! stops — a standby then takes over. The pipeline records each message before it pushes it, so
//! the new leader pushes the same signed message again rather than a second one.

use std::time::{Duration, Instant};

use lode_chain::types::ActorId;
use tokio::sync::watch;

use crate::engine::{AnyEngine, TaskEngine};
use crate::error::{ProviderError, ProviderResult};

/// This process as the holder of its miner's lease.
#[derive(Debug)]
pub struct Leader {
    engine: AnyEngine,
    name: String,
    holder: String,
    epoch: u64,
    deposed: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
}

/// The lease's name for miner `actor`.
pub fn lease_name(actor: ActorId) -> String {
    format!("provider/{actor}")
}

impl Leader {
    /// Waits until this process (named `holder`) holds `actor`'s lease for `ttl`, logging while
    /// another holds it, then keeps renewing it.
    ///
    /// # Errors
    /// [`ProviderError::Engine`] when the database cannot be read at all at first.
    pub async fn acquire(
        engine: AnyEngine,
        actor: ActorId,
        holder: String,
        ttl: Duration,
    ) -> ProviderResult<Leader> {
        let name = lease_name(actor);
        let period = ttl
            .checked_div(3)
            .unwrap_or_default()
            .max(Duration::from_millis(100));
        let mut said = false;
        let epoch = loop {
            match engine.acquire_lease(&name, &holder, ttl).await {
                Ok(Some(epoch)) => break epoch,
                Ok(None) => {
                    if !said {
                        tracing::info!(lease = %name, "another provider of this miner leads: standing by until its lease lapses");
                        said = true;
                    }
                }
                Err(e) if !said => return Err(ProviderError::Engine(e)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the cluster database; still standing by")
                }
            }
            tokio::time::sleep(period).await;
        };
        tracing::info!(lease = %name, epoch, %holder, "this provider leads its miner");
        let (tx, deposed) = watch::channel(false);
        let keeper = {
            let (engine, name, holder) = (engine.clone(), name.clone(), holder.clone());
            tokio::spawn(async move {
                let mut renewed = Instant::now();
                let mut next = period;
                loop {
                    tokio::time::sleep(next).await;
                    next = period;
                    match engine.acquire_lease(&name, &holder, ttl).await {
                        Ok(Some(e)) if e == epoch => renewed = Instant::now(),
                        Ok(other) => {
                            tracing::error!(lease = %name, now = ?other, "the leader lease changed hands: this provider stops");
                            break;
                        }
                        Err(e) if renewed.elapsed() < ttl.saturating_sub(period) => {
                            // Soon again: the database may be back (a restart), the next call
                            // reconnecting.
                            tracing::warn!(error = %e, "cannot renew the leader lease; trying again");
                            next = period
                                .checked_div(4)
                                .unwrap_or_default()
                                .max(Duration::from_millis(100));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the leader lease could not be renewed before it lapses: this provider stops");
                            break;
                        }
                    }
                }
                let _ = tx.send(true);
            })
        };
        Ok(Leader {
            engine,
            name,
            holder,
            epoch,
            deposed,
            keeper,
        })
    }

    /// The lease's epoch while this process holds it (it grows with every new holder).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Resolves once this process no longer holds the lease.
    pub async fn deposed(&mut self) {
        let _ = self.deposed.wait_for(|d| *d).await;
    }

    /// Gives the lease up (a clean stop: a standby takes over at once).
    pub async fn release(self) {
        // First, so that no renewal races the release.
        self.keeper.abort();
        if !*self.deposed.borrow()
            && let Err(e) = self.engine.release_lease(&self.name, &self.holder).await
        {
            tracing::warn!(error = %e, "cannot give the leader lease up; it lapses by itself");
        }
    }
}

impl Drop for Leader {
    /// A leader dropped without [`Leader::release`] (a provider whose start failed after the
    /// lease was taken) stops renewing it: it lapses after its length.
    fn drop(&mut self) {
        self.keeper.abort();
    }
}
