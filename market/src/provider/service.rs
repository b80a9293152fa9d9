//! [`DealProvider`]: the provider's deal service.
//!
//! It answers `/lode/ask/1` and `/lode/deal/1` (it is the host's [`MarketServer`]): a deal
//! request is checked by the policy ([`crate::deal::policy::evaluate`]) against the chain and the
//! sealing pipeline; a rejected one is answered with its reason and leaves no trace; an accepted
//! one is written to the records (flushed) before the signed acceptance is sent.
//!
//! [`DealProvider::tick`] (called every epoch or so by [`DealProvider::run`]) drives every
//! record one step:
//! 1. accepted deals start their transfer (a task each: HTTP pull, then the CommP check; a
//!    failure fails the deal and removes its scratch data);
//! 2. publications in flight are looked up (`state_searchMsg`): executed → each deal gets its id
//!    from the receipt; refused → the deals fail with the receipt's error; not found for
//!    `republish_after_epochs` → the **same** recorded message is pushed again; still not found
//!    `republish_after_epochs` after the deals' start epoch → they fail (the chain would refuse
//!    them now); not found while the chain's nonce of its sender has passed the message's (another
//!    message took its nonce: a crash between recording and pushing, or a push the node refused)
//!    → it can never be executed, and its deals go back to `transferred`, to be published anew;
//! 3. transferred deals are published in one message when `max_publish_batch` are waiting or the
//!    oldest has waited `publish_wait_epochs`; the message is written into every deal's record
//!    before it is pushed, so a crash at any point leaves either no message (the deals are
//!    published by a later tick) or a recorded one (looked up, pushed again; signed anew only
//!    once it can never be executed, see 2.);
//!    a deal whose start epoch has come before it could be published fails;
//! 4. published deals are handed to sealing ([`SealingApi::add_piece`], idempotent per deal id),
//!    which copies the payload; a CAR payload's blocks are then indexed in the block index
//!    ([`crate::retrieval::BlockIndex`], beside the records: idempotent, so a crash before the
//!    hand-off is recorded indexes it again), and the deal's scratch file is removed;
//! 5. deals in sealing are followed on chain and in the pipeline until active, and active ones
//!    until they expire or are slashed.
//!
//! On restart, [`DealProvider::tick`] picks up every record where it was: a transfer resumes from
//! its progress file, a publication is looked up before anything is signed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use libp2p::PeerId;
use lode_chain::crypto::SecretKey;
use lode_chain::message::SignedMessage;
use lode_chain::types::{ActorId, DealId, TokenAmount};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::records::{DealRecords, DealStatus, ProviderDeal, PublishRecord, now};
use super::{DealPublisher, PieceProgress, SealingApi};
use crate::deal::policy::{ChainView, DealPolicyConfig, evaluate, gather_facts};
use crate::deal::{
    AskRequest, AskResponse, DealDecision, DealRequest, DealResponse, DealUuid, Rejection,
    SignedDealResponse, StorageAsk, TransferSpec,
};
use crate::error::{MarketError, MarketResult};
use crate::net::MarketServer;
use crate::retrieval::BlockIndex;
use crate::transfer::Scratch;
use crate::transfer::commp::verify_piece;
use crate::transfer::http::{TransferConfig, pull};
use crate::transfer::push::{PushRequest, PushResponse, SYNC_EVERY, synced, write_chunk};

/// The deal service's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConfig {
    /// The miner actor.
    pub miner: ActorId,
    /// The network's name (what responses and asks are signed for).
    pub network: String,
    /// The miner's sector size in bytes.
    pub sector_size: u64,
    /// Which deals to take.
    pub policy: DealPolicyConfig,
    /// How to fetch data.
    pub transfer: TransferConfig,
    /// The longest a transferred deal waits for others to share its publication message.
    pub publish_wait_epochs: u64,
    /// The most deals in one publication message.
    pub max_publish_batch: usize,
    /// Epochs after which a publication message not found on chain is pushed again.
    pub republish_after_epochs: u64,
}

impl ProviderConfig {
    /// A configuration with the default policy and transfer settings: publications wait at
    /// most 10 epochs for up to 8 deals, and one not on chain after 20 epochs is pushed again.
    pub fn new(miner: ActorId, network: impl Into<String>, sector_size: u64) -> ProviderConfig {
        ProviderConfig {
            miner,
            network: network.into(),
            sector_size,
            policy: DealPolicyConfig::default(),
            transfer: TransferConfig::default(),
            publish_wait_epochs: 10,
            max_publish_batch: 8,
            republish_after_epochs: 20,
        }
    }
}

/// The provider's deal service.
pub struct DealProvider<V, P, S> {
    config: ProviderConfig,
    worker: SecretKey,
    view: V,
    publisher: P,
    sealing: S,
    records: DealRecords,
    /// The block index of handed-off CAR payloads (in the deal records' records).
    blocks: BlockIndex,
    scratch: Scratch,
    ask: StdMutex<Option<StorageAsk>>,
    /// Held while records are read and changed, so that two steps never change one record.
    lock: Mutex<()>,
    transfers: StdMutex<HashMap<DealUuid, tokio::task::JoinHandle<()>>>,
    /// Bytes received of each pushed payload (written, not necessarily synced).
    pushes: Mutex<HashMap<DealUuid, u64>>,
    /// Woken when a pushed payload is complete.
    push_done: tokio::sync::Notify,
}

impl<V, P, S> std::fmt::Debug for DealProvider<V, P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DealProvider")
            .field("miner", &self.config.miner)
            .finish_non_exhaustive()
    }
}

impl<V: ChainView, P: DealPublisher, S: SealingApi> DealProvider<V, P, S> {
    /// A service over `records` and `scratch`, signing with the miner's `worker` key.
    pub fn new(
        config: ProviderConfig,
        worker: SecretKey,
        view: V,
        publisher: P,
        sealing: S,
        records: DealRecords,
        scratch: Scratch,
    ) -> DealProvider<V, P, S> {
        let blocks = records.block_index();
        DealProvider {
            config,
            worker,
            view,
            publisher,
            sealing,
            records,
            blocks,
            scratch,
            ask: StdMutex::new(None),
            lock: Mutex::new(()),
            transfers: StdMutex::new(HashMap::new()),
            pushes: Mutex::new(HashMap::new()),
            push_done: tokio::sync::Notify::new(),
        }
    }

    /// The records.
    pub fn records(&self) -> &DealRecords {
        &self.records
    }

    /// The block index of the CAR payloads handed to sealing (what
    /// [`crate::retrieval::serve_with_index`] serves `/ipfs/<cid>` from).
    pub fn block_index(&self) -> &BlockIndex {
        &self.blocks
    }

    /// The scratch directory.
    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    /// Sets the storage ask (its `miner` is this provider's).
    pub fn set_ask(&self, mut ask: StorageAsk) {
        ask.miner = self.config.miner;
        *self.ask.lock().unwrap_or_else(PoisonError::into_inner) = Some(ask);
    }

    /// The current ask.
    pub fn current_ask(&self) -> Option<StorageAsk> {
        self.ask
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn respond(&self, uuid: DealUuid, decision: DealDecision) -> SignedDealResponse {
        DealResponse {
            uuid,
            miner: self.config.miner,
            decision,
        }
        .sign(&self.config.network, &self.worker)
    }

    /// Decides on a deal request; an accepted deal is recorded (flushed) before the answer.
    pub async fn handle_deal(&self, peer: PeerId, request: DealRequest) -> SignedDealResponse {
        let uuid = request.uuid;
        match self.decide(peer, request).await {
            Ok(()) => self.respond(uuid, DealDecision::Accepted),
            Err(rejection) => {
                tracing::info!(%uuid, %rejection, "deal rejected");
                self.respond(uuid, DealDecision::Rejected(rejection))
            }
        }
    }

    async fn decide(&self, peer: PeerId, request: DealRequest) -> Result<(), Rejection> {
        let unavailable = |e: MarketError| Rejection::Unavailable(e.to_string());
        let _guard = self.lock.lock().await;
        if let Some(existing) = self.records.get(&request.uuid).map_err(unavailable)? {
            // A client that retries after a lost answer gets the same answer.
            return if existing.proposal == request.proposal && existing.transfer == request.transfer
            {
                Ok(())
            } else {
                Err(Rejection::DuplicateUuid(request.uuid.to_string()))
            };
        }
        let Some(ask) = self.current_ask() else {
            return Err(Rejection::Unavailable(
                "the provider has not set a storage ask".into(),
            ));
        };
        let all = self.records.list().map_err(unavailable)?;
        let client = request.proposal.proposal.client;
        let mut pending_lock = TokenAmount::ZERO;
        let mut reserved = 0u64;
        for d in &all {
            let p = &d.proposal.proposal;
            if d.status.before_publication() && p.client == client {
                pending_lock = pending_lock
                    .checked_add(p.client_lock().unwrap_or(TokenAmount(u128::MAX)))
                    .unwrap_or(TokenAmount(u128::MAX));
            }
            if d.status.before_sealing() {
                reserved = reserved.saturating_add(p.piece_size);
            }
        }
        let free = self
            .sealing
            .free_capacity()
            .await
            .map_err(unavailable)?
            .saturating_sub(reserved);
        let facts = gather_facts(
            &self.view,
            &request,
            pending_lock,
            self.config.sector_size,
            free,
        )
        .await
        .map_err(unavailable)?;
        evaluate(
            &self.config.policy,
            &ask,
            self.config.miner,
            &facts,
            &request,
        )?;
        let deal = ProviderDeal {
            uuid: request.uuid,
            client_peer: peer.to_string(),
            proposal: request.proposal,
            transfer: request.transfer,
            status: DealStatus::Accepted,
            accepted_epoch: facts.head,
            transferred_epoch: None,
            publish: None,
            deal_id: None,
            sector: None,
            error: None,
            updated_at: now(),
        };
        if !self.records.insert_new(&deal).map_err(unavailable)? {
            return Err(Rejection::DuplicateUuid(request.uuid.to_string()));
        }
        tracing::info!(uuid = %deal.uuid, client = %client, "deal accepted");
        Ok(())
    }

    /// Runs [`DealProvider::tick`] every `interval` until `stop` fires.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(e) = self.tick().await {
                        tracing::warn!(error = %e, "deal service tick failed");
                    }
                }
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
        self.stop().await;
    }

    /// Aborts the running transfers and waits until they have stopped (a provider shutting down;
    /// their progress stays on disk).
    pub async fn stop(&self) {
        let tasks: Vec<_> = self
            .transfers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, t)| t)
            .collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// Whether a transfer task runs for `uuid`.
    pub fn transfer_running(&self, uuid: &DealUuid) -> bool {
        self.transfers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uuid)
            .is_some_and(|t| !t.is_finished())
    }

    /// Drives every record one step (see the module docs).
    ///
    /// # Errors
    /// [`MarketError`] when the records cannot be read or the head cannot be had; a step that
    /// fails for one deal is recorded in that deal and retried at the next tick.
    pub async fn tick(self: &Arc<Self>) -> MarketResult<()> {
        let _guard = self.lock.lock().await;
        self.start_transfers()?;
        let head = self.view.head_epoch().await?;
        self.follow_publications(head).await?;
        self.publish_batch(head).await?;
        self.hand_off().await?;
        self.follow_sealing(head).await?;
        Ok(())
    }

    fn start_transfers(self: &Arc<Self>) -> MarketResult<()> {
        let mut transfers = self
            .transfers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        transfers.retain(|_, t| !t.is_finished());
        for mut deal in self.records.list()? {
            if !matches!(deal.status, DealStatus::Accepted | DealStatus::Transferring)
                || transfers.contains_key(&deal.uuid)
            {
                continue;
            }
            if deal.status == DealStatus::Accepted {
                deal.set_status(DealStatus::Transferring);
                self.records.put(&deal)?;
            }
            let this = self.clone();
            let uuid = deal.uuid;
            transfers.insert(uuid, tokio::spawn(async move { this.transfer(deal).await }));
        }
        Ok(())
    }

    async fn transfer(&self, deal: ProviderDeal) {
        let uuid = deal.uuid;
        let result = self.fetch_and_check(&deal).await;
        let _guard = self.lock.lock().await;
        let mut current = match self.records.get(&uuid) {
            Ok(Some(d)) if d.status == DealStatus::Transferring => d,
            _ => return,
        };
        self.pushes.lock().await.remove(&uuid);
        match result {
            Ok(()) => {
                let head = self
                    .view
                    .head_epoch()
                    .await
                    .unwrap_or(current.accepted_epoch);
                current.transferred_epoch = Some(head);
                current.set_status(DealStatus::Transferred);
                if let Err(e) = self.scratch.remove_progress(&uuid) {
                    tracing::warn!(%uuid, error = %e, "cannot remove a transfer progress file");
                }
                tracing::info!(%uuid, "deal data received and checked");
            }
            Err(e) => {
                tracing::warn!(%uuid, error = %e, "deal transfer failed");
                current.fail(e.to_string());
                if let Err(e) = self.scratch.remove(&uuid) {
                    tracing::warn!(%uuid, error = %e, "cannot remove a failed deal's scratch data");
                }
            }
        }
        if let Err(e) = self.records.put(&current) {
            tracing::error!(%uuid, error = %e, "cannot record a transfer's end");
        }
    }

    async fn fetch_and_check(&self, deal: &ProviderDeal) -> MarketResult<()> {
        let payload = self.scratch.payload(&deal.uuid);
        let progress = self.scratch.progress(&deal.uuid);
        let payload_size = deal.transfer.payload_size();
        match &deal.transfer {
            TransferSpec::Http { url, .. } => {
                pull(
                    &self.config.transfer,
                    url,
                    payload_size,
                    &payload,
                    &progress,
                )
                .await?;
            }
            TransferSpec::Push { .. } => self.wait_for_push(deal, &payload, &progress).await?,
        }
        let p = deal.proposal.proposal.clone();
        tokio::task::spawn_blocking(move || {
            verify_piece(&payload, payload_size, &p.piece_cid, p.piece_size)
        })
        .await
        .map_err(|e| MarketError::Commp(format!("the CommP check stopped: {e}")))?
    }

    /// Waits until the client has pushed the whole payload (or the transfer's overall timeout).
    async fn wait_for_push(
        &self,
        deal: &ProviderDeal,
        payload: &std::path::Path,
        progress: &std::path::Path,
    ) -> MarketResult<()> {
        let payload_size = deal.transfer.payload_size();
        let limit = Duration::from_secs(self.config.transfer.overall_timeout_secs);
        let started = tokio::time::Instant::now();
        loop {
            let notified = self.push_done.notified();
            if synced(progress) >= payload_size && (payload_size > 0 || payload.exists()) {
                return Ok(());
            }
            if payload_size == 0 {
                std::fs::write(payload, b"").map_err(MarketError::io(payload))?;
                return Ok(());
            }
            let elapsed = started.elapsed();
            if elapsed >= limit {
                return Err(MarketError::Transfer(format!(
                    "the client did not push the payload within {}s ({} of {payload_size} bytes arrived)",
                    limit.as_secs(),
                    synced(progress)
                )));
            }
            let wait = limit.saturating_sub(elapsed).min(Duration::from_secs(1));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Takes a chunk of a pushed payload (see [`crate::transfer::push`]).
    pub async fn handle_push(&self, peer: PeerId, request: PushRequest) -> PushResponse {
        let refuse = |why: String| PushResponse::Refused(why);
        let uuid = request.uuid;
        let deal = match self.records.get(&uuid) {
            Ok(Some(deal)) => deal,
            Ok(None) => return refuse(format!("no deal {uuid}")),
            Err(e) => return refuse(e.to_string()),
        };
        let TransferSpec::Push { payload_size } = deal.transfer else {
            return refuse(format!("deal {uuid} takes its data over HTTP"));
        };
        if deal.client_peer != peer.to_string() {
            return refuse(format!(
                "only the peer that proposed deal {uuid} may push its data"
            ));
        }
        match deal.status {
            DealStatus::Accepted | DealStatus::Transferring => {}
            DealStatus::Failed => {
                return refuse(format!(
                    "deal {uuid} failed: {}",
                    deal.error.unwrap_or_default()
                ));
            }
            _ => return PushResponse::Have(payload_size),
        }
        let payload = self.scratch.payload(&uuid);
        let progress = self.scratch.progress(&uuid);
        let mut pushes = self.pushes.lock().await;
        let have = *pushes.entry(uuid).or_insert_with(|| synced(&progress));
        if request.data.is_empty() || request.offset != have {
            return PushResponse::Have(have);
        }
        let len = request.data.len() as u64;
        let Some(end) = have.checked_add(len).filter(|end| *end <= payload_size) else {
            return refuse(format!(
                "{len} bytes at offset {have} go past the payload's {payload_size} bytes"
            ));
        };
        let sync = end == payload_size || end / SYNC_EVERY != have / SYNC_EVERY;
        let (p, q) = (payload.clone(), progress.clone());
        let written =
            tokio::task::spawn_blocking(move || write_chunk(&p, &q, have, &request.data, sync))
                .await;
        match written {
            Ok(Ok(now_have)) => {
                pushes.insert(uuid, now_have);
                if now_have == payload_size {
                    self.push_done.notify_waiters();
                }
                PushResponse::Have(now_have)
            }
            Ok(Err(e)) => refuse(format!("the provider cannot store the data: {e}")),
            Err(e) => refuse(format!("the provider cannot store the data: {e}")),
        }
    }

    async fn follow_publications(&self, head: u64) -> MarketResult<()> {
        let mut groups: BTreeMap<[u8; 32], Vec<ProviderDeal>> = BTreeMap::new();
        for deal in self.records.list()? {
            if deal.status == DealStatus::Publishing
                && let Some(p) = &deal.publish
            {
                groups.entry(p.id).or_default().push(deal);
            }
        }
        for (id, mut deals) in groups {
            let found = match self.publisher.search(id).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(message = %hex::encode(id), error = %e, "cannot look up a publication");
                    continue;
                }
            };
            match found {
                Some(lookup) if lookup.receipt.ok() => {
                    let ids: Option<Vec<DealId>> =
                        crate::deal::decode("PublishDeals return", &lookup.receipt.return_data)
                            .ok();
                    for deal in &mut deals {
                        let index = deal.publish.as_ref().map(|p| p.index);
                        match ids.as_ref().zip(index).and_then(|(ids, i)| ids.get(i)) {
                            Some(&deal_id) => {
                                deal.deal_id = Some(deal_id);
                                deal.set_status(DealStatus::Published);
                                tracing::info!(uuid = %deal.uuid, deal_id, "deal published");
                            }
                            None => {
                                deal.fail("the publication's receipt does not list this deal's id")
                            }
                        }
                    }
                }
                Some(lookup) => {
                    for deal in &mut deals {
                        deal.fail(format!(
                            "the chain refused the publication at epoch {}: {} ({})",
                            lookup.epoch, lookup.receipt.error, lookup.receipt.exit
                        ));
                        let _ = self.scratch.remove(&deal.uuid);
                    }
                }
                None => {
                    // The chain refuses a deal published at or after its start epoch: once that
                    // has passed (with time for the lookup to see an earlier inclusion), the
                    // recorded message can no longer publish anything.
                    let start = deals
                        .iter()
                        .map(|d| d.proposal.proposal.start_epoch)
                        .min()
                        .unwrap_or(0);
                    if head >= start.saturating_add(self.config.republish_after_epochs) {
                        for deal in &mut deals {
                            deal.fail(format!(
                                "the publication message never landed before the start epoch {}",
                                deal.proposal.proposal.start_epoch
                            ));
                            let _ = self.scratch.remove(&deal.uuid);
                        }
                        self.records.put_all(&deals)?;
                        continue;
                    }
                    let due = deals
                        .first()
                        .and_then(|d| d.publish.as_ref())
                        .is_some_and(|p| {
                            head >= p
                                .pushed_epoch
                                .saturating_add(self.config.republish_after_epochs)
                        });
                    if !due {
                        continue;
                    }
                    let Some(message) = deals
                        .first()
                        .and_then(|d| d.publish.as_ref())
                        .map(|p| p.message.clone())
                    else {
                        continue;
                    };
                    if self.superseded(id, &message).await {
                        // It can never be executed: its deals go back to `transferred`, to be
                        // published in a new message by a later tick.
                        let nonce = message.message.nonce;
                        for deal in &mut deals {
                            deal.publish = None;
                            deal.set_status(DealStatus::Transferred);
                            deal.error = Some(format!(
                                "publication message {} was never executed and another message took its nonce {nonce}: published again in a new one",
                                hex::encode(id)
                            ));
                        }
                        tracing::warn!(message = %hex::encode(id), nonce, deals = deals.len(), "a recorded publication was superseded by another message with its nonce; its deals will be published again");
                        self.records.put_all(&deals)?;
                        continue;
                    }
                    if let Err(e) = self.publisher.push_again(message).await {
                        tracing::info!(message = %hex::encode(id), error = %e, "publication pushed again and refused");
                    }
                    for deal in &mut deals {
                        if let Some(p) = &mut deal.publish {
                            p.pushed_epoch = head;
                        }
                    }
                }
            }
            self.records.put_all(&deals)?;
        }
        Ok(())
    }

    /// Whether publication `id` (`message`), not found on chain, never will be: the chain's
    /// nonce of its sender has passed its own, and — looked up again after that was read, so
    /// that an execution in between is not missed — it is still not found. Any doubt (a lookup
    /// that fails) answers `false`: the message is then pushed again, never replaced.
    async fn superseded(&self, id: [u8; 32], message: &SignedMessage) -> bool {
        match self.publisher.nonce_passed(message).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::debug!(message = %hex::encode(id), error = %e, "cannot read the publication sender's nonce");
                return false;
            }
        }
        matches!(self.publisher.search(id).await, Ok(None))
    }

    async fn publish_batch(&self, head: u64) -> MarketResult<()> {
        let mut ready = Vec::new();
        for mut deal in self.records.list()? {
            if deal.status != DealStatus::Transferred {
                continue;
            }
            if deal.proposal.proposal.start_epoch <= head {
                deal.fail(format!(
                    "the deal's start epoch {} came before it could be published (head {head})",
                    deal.proposal.proposal.start_epoch
                ));
                self.records.put(&deal)?;
                let _ = self.scratch.remove(&deal.uuid);
                continue;
            }
            ready.push(deal);
        }
        if ready.is_empty() {
            return Ok(());
        }
        ready.sort_by_key(|d| (d.transferred_epoch, d.updated_at));
        let oldest_due = ready.iter().any(|d| {
            d.transferred_epoch
                .unwrap_or(0)
                .saturating_add(self.config.publish_wait_epochs)
                <= head
        });
        let max = self.config.max_publish_batch.max(1);
        if ready.len() < max && !oldest_due {
            return Ok(());
        }
        ready.truncate(max);
        let proposals = ready.iter().map(|d| d.proposal.clone()).collect();
        let records = self.records.clone();
        let batch = ready.clone();
        let record: super::RecordMessage = Box::new(move |message: &SignedMessage| {
            let id = message.id();
            let mut batch = batch;
            for (index, deal) in batch.iter_mut().enumerate() {
                deal.publish = Some(PublishRecord {
                    message: message.clone(),
                    id,
                    index,
                    pushed_epoch: head,
                });
                deal.set_status(DealStatus::Publishing);
            }
            records.put_all(&batch)
        });
        match self.publisher.publish(proposals, record).await {
            Ok(id) => {
                tracing::info!(message = %hex::encode(id), deals = ready.len(), "deals published");
            }
            Err(e) => {
                // Either nothing was recorded (the deals stay transferred and are published by a
                // later tick), or the message was recorded and its push failed (it is looked up,
                // then pushed again).
                tracing::warn!(error = %e, deals = ready.len(), "publishing deals failed");
            }
        }
        Ok(())
    }

    async fn hand_off(&self) -> MarketResult<()> {
        for mut deal in self.records.list()? {
            if deal.status != DealStatus::Published {
                continue;
            }
            let Some(deal_id) = deal.deal_id else {
                continue;
            };
            let payload = self.scratch.payload(&deal.uuid);
            let size = deal.transfer.payload_size();
            match self
                .sealing
                .add_piece(deal_id, &deal.proposal.proposal, &payload, size)
                .await
            {
                Ok(progress) => {
                    // Before the hand-off is recorded: a crash in between indexes it again.
                    self.index_blocks(&deal, &payload).await;
                    deal.sector = progress.sector;
                    deal.set_status(DealStatus::HandedOff);
                    tracing::info!(uuid = %deal.uuid, deal_id, sector = ?progress.sector, "deal handed to sealing");
                }
                Err(e) => {
                    tracing::warn!(uuid = %deal.uuid, error = %e, "handing a deal to sealing failed; will retry");
                    deal.error = Some(e.to_string());
                }
            }
            self.records.put(&deal)?;
            if deal.status == DealStatus::HandedOff {
                // The pipeline has its own copy now.
                if let Err(e) = self.scratch.remove(&deal.uuid) {
                    tracing::warn!(uuid = %deal.uuid, error = %e, "cannot remove a handed-off deal's payload");
                }
            }
        }
        Ok(())
    }

    /// Indexes the blocks of a deal's payload if it is a CAR. A payload that is not one has no
    /// index; a failure is logged and does not hold the deal back (its piece is still
    /// retrievable whole through `/piece/`).
    async fn index_blocks(&self, deal: &ProviderDeal, payload: &std::path::Path) {
        let index = self.blocks.clone();
        let Some(piece) = lode_proofs::cid::PieceCid::new(lode_proofs::node::Node(
            deal.proposal.proposal.piece_cid,
        )) else {
            return;
        };
        let path = payload.to_path_buf();
        let uuid = deal.uuid;
        match tokio::task::spawn_blocking(move || index.index_payload(&piece, &path)).await {
            Ok(Ok(Some(done))) => {
                tracing::debug!(%uuid, %piece, blocks = done.blocks, "deal payload blocks indexed");
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(%uuid, %piece, error = %e, "the deal's payload blocks cannot be indexed: /ipfs/ will not serve them (/piece/ does)");
            }
            Err(e) => {
                tracing::warn!(%uuid, %piece, error = %e, "indexing the deal's payload blocks stopped");
            }
        }
    }

    async fn follow_sealing(&self, head: u64) -> MarketResult<()> {
        for deal in self.records.list()? {
            let (Some(deal_id), true) = (
                deal.deal_id,
                matches!(
                    deal.status,
                    DealStatus::HandedOff | DealStatus::Sealing | DealStatus::Active
                ),
            ) else {
                continue;
            };
            if deal.status != DealStatus::Active && self.scratch.payload(&deal.uuid).exists() {
                // Left by a crash between the hand-off's record and the file's removal.
                let _ = self.scratch.remove(&deal.uuid);
            }
            let on_chain = match self.view.market_deal(deal_id).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(deal_id, error = %e, "cannot read a deal on chain");
                    continue;
                }
            };
            let mut next = deal.clone();
            let p = &deal.proposal.proposal;
            match (deal.status, on_chain) {
                (DealStatus::Active, None) => {
                    if head >= p.end_epoch {
                        next.set_status(DealStatus::Expired);
                    } else {
                        next.set_status(DealStatus::Slashed);
                        next.error = Some(format!(
                            "the deal left the chain at epoch {head}, before its end at {}: its sector was terminated",
                            p.end_epoch
                        ));
                    }
                }
                (DealStatus::Active, Some(_)) => {}
                (_, Some(d)) if d.state.sector.is_some() => {
                    next.sector = d.state.sector;
                    next.set_status(DealStatus::Active);
                }
                (_, None) => {
                    next.fail(format!(
                        "the deal is no longer on chain (head {head}): it was not activated by its start epoch {}",
                        p.start_epoch
                    ));
                }
                (_, Some(_)) => match self.sealing.piece_progress(deal_id).await {
                    Ok(Some(progress)) => {
                        if progress.sector.is_some() {
                            next.sector = progress.sector;
                        }
                        if let Some(why) = progress.failed {
                            next.fail(format!("the sealing pipeline failed the piece: {why}"));
                        } else if progress.state != PieceProgress::WAITING
                            && deal.status == DealStatus::HandedOff
                        {
                            next.set_status(DealStatus::Sealing);
                        }
                    }
                    Ok(None) => {
                        next.fail("the sealing pipeline no longer holds the piece");
                    }
                    Err(e) => {
                        tracing::debug!(deal_id, error = %e, "cannot read a piece's progress");
                    }
                },
            }
            if next != deal {
                self.records.put(&next)?;
            }
        }
        Ok(())
    }
}

impl<V: ChainView, P: DealPublisher, S: SealingApi> MarketServer for DealProvider<V, P, S> {
    async fn ask(&self, request: AskRequest) -> AskResponse {
        match self.current_ask() {
            Some(ask) if ask.miner == request.miner => {
                AskResponse::Ask(Box::new(ask.sign(&self.config.network, &self.worker)))
            }
            _ => AskResponse::NoAsk {
                miner: request.miner,
            },
        }
    }

    async fn push(&self, peer: PeerId, request: PushRequest) -> PushResponse {
        self.handle_push(peer, request).await
    }

    async fn deal(&self, peer: PeerId, request: Result<DealRequest, String>) -> SignedDealResponse {
        match request {
            Ok(request) => self.handle_deal(peer, request).await,
            Err(why) => self.respond(
                DealUuid(uuid::Uuid::nil()),
                DealDecision::Rejected(Rejection::Malformed(why)),
            ),
        }
    }
}
