//! What the provider needs from a node: the seam between the daemon and the chain.
//!
//! [`NodeApi`] is implemented for an in-process [`NodeService`] here, and over JSON-RPC by the
//! node's client (the daemon does not care which).

use std::future::Future;

use lode_chain::actors::market::Deal;
use lode_chain::message::SignedMessage;
use lode_chain::types::{ActorId, Address, DealId, Epoch};
use lode_node::core::{BlockVerdict, MinerBase, ProvingView};
use lode_node::rpc::types::{
    DealView, HeadInfo, JobFilter, JobView, MessageLookupInfo, MinerInfoView, MinerPowerInfo,
    PreCommitView, SectorInfo,
};
use lode_node::service::NodeService;
use lode_node::wire::FullBlock;

use crate::error::ProviderResult;

/// The node calls the provider makes.
pub trait NodeApi: Send + Sync + 'static {
    /// The miner's view of the mining base at `epoch`.
    fn miner_base(
        &self,
        miner: ActorId,
        epoch: Epoch,
    ) -> impl Future<Output = ProviderResult<MinerBase>> + Send;
    /// Submits a block the miner made.
    fn submit_block(
        &self,
        block: FullBlock,
    ) -> impl Future<Output = ProviderResult<BlockVerdict>> + Send;
    /// The miner's deadlines at the head.
    fn proving_view(
        &self,
        miner: ActorId,
    ) -> impl Future<Output = ProviderResult<ProvingView>> + Send;
    /// Pushes a signed message to the mempool.
    fn push_message(
        &self,
        msg: SignedMessage,
    ) -> impl Future<Output = ProviderResult<[u8; 32]>> + Send;
    /// The sender's next nonce, counting pending messages.
    fn next_nonce(&self, addr: Address) -> impl Future<Output = ProviderResult<u64>> + Send;
    /// The sender's nonce in the state at the head (`state_actor`): the messages of it the chain
    /// has executed, pending ones not counted (0 for an address with no actor). The default
    /// answers like [`NodeApi::miner_power`]'s.
    fn chain_nonce(&self, addr: Address) -> impl Future<Output = ProviderResult<u64>> + Send {
        async move {
            Err(crate::error::ProviderError::Node(format!(
                "this node API does not answer state_actor ({addr})"
            )))
        }
    }
    /// The node's head (`chain_head`).
    fn chain_head(&self) -> impl Future<Output = ProviderResult<HeadInfo>> + Send;
    /// The miner's live sectors at the head with their status (`state_minerSectors`).
    fn miner_sectors(
        &self,
        miner: ActorId,
    ) -> impl Future<Output = ProviderResult<Vec<SectorInfo>>> + Send;
    /// The miner's pre-committed sectors with their ticket and seed (`state_minerPreCommits`).
    fn miner_precommits(
        &self,
        miner: ActorId,
    ) -> impl Future<Output = ProviderResult<Vec<PreCommitView>>> + Send;
    /// The seal ticket the miner draws from `epoch` (`state_sealTicket`).
    fn seal_ticket(
        &self,
        miner: ActorId,
        epoch: Epoch,
    ) -> impl Future<Output = ProviderResult<[u8; 32]>> + Send;
    /// Where a message was executed on the canonical chain, with its receipt (`state_searchMsg`).
    fn search_message(
        &self,
        id: [u8; 32],
    ) -> impl Future<Output = ProviderResult<Option<MessageLookupInfo>>> + Send;
    /// The miner's power claim and the network's totals (`state_minerPower`), for the
    /// dashboard and the power gauges. The default answers that this node API does not say (a
    /// test's scripted node); the node's client and [`NodeService`] ask the chain.
    fn miner_power(
        &self,
        miner: ActorId,
    ) -> impl Future<Output = ProviderResult<MinerPowerInfo>> + Send {
        async move { Err(not_reported("state_minerPower", miner)) }
    }
    /// The miner's info record and balances (`state_minerInfo`), for the dashboard and the
    /// balance gauge; the default answers like [`NodeApi::miner_power`]'s.
    fn miner_info(
        &self,
        miner: ActorId,
    ) -> impl Future<Output = ProviderResult<MinerInfoView>> + Send {
        async move { Err(not_reported("state_minerInfo", miner)) }
    }
    /// Published deal `id` as the chain holds it at the head: what the sealing pipeline checks a
    /// deal's piece against (published, this provider's, not yet active, the same proposal). The
    /// default answers [`DealLookup::NotReported`] (a node API that cannot say): the pipeline then
    /// relies on the proposal it was given, and the chain's own checks at pre-commit.
    fn market_deal(&self, id: DealId) -> impl Future<Output = ProviderResult<DealLookup>> + Send {
        let _ = id;
        async move { Ok(DealLookup::NotReported) }
    }
    /// An actor's market escrow (`state_marketBalance`): the market tops the miner's up before
    /// publishing deals whose provider collateral it does not cover. The default answers like
    /// [`NodeApi::miner_power`]'s.
    fn market_escrow(
        &self,
        owner: ActorId,
    ) -> impl Future<Output = ProviderResult<lode_node::rpc::types::EscrowView>> + Send {
        async move { Err(not_reported("state_marketBalance", owner)) }
    }
    /// Compute jobs matching `filter` from job id `from` (`state_computeJobs`): what the
    /// provider's job service takes and follows. The default answers like
    /// [`NodeApi::miner_power`]'s.
    fn compute_jobs(
        &self,
        filter: JobFilter,
        from: u64,
    ) -> impl Future<Output = ProviderResult<Vec<JobView>>> + Send {
        let _ = (filter, from);
        async move { Err(not_reported("state_computeJobs", ActorId(0))) }
    }
    /// One compute job (`state_computeJob`); the default answers like [`NodeApi::miner_power`]'s.
    fn compute_job(&self, id: u64) -> impl Future<Output = ProviderResult<Option<JobView>>> + Send {
        let _ = id;
        async move { Err(not_reported("state_computeJob", ActorId(0))) }
    }
    /// The deals of `provider` (`state_marketDeals`): which pieces back a compute job. The
    /// default answers like [`NodeApi::miner_power`]'s.
    fn provider_deals(
        &self,
        provider: ActorId,
    ) -> impl Future<Output = ProviderResult<Vec<DealView>>> + Send {
        async move { Err(not_reported("state_marketDeals", provider)) }
    }
}

/// What a node says of a published deal ([`NodeApi::market_deal`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DealLookup {
    /// Published and not ended: its proposal and state.
    Found(Box<Deal>),
    /// Not on chain: never published, or ended (a deal not activated by its start epoch is
    /// removed by the chain's cron).
    Absent,
    /// This node API does not answer deal queries.
    NotReported,
}

fn not_reported(method: &str, miner: ActorId) -> crate::error::ProviderError {
    crate::error::ProviderError::Node(format!(
        "this node API does not answer {method} (miner {miner})"
    ))
}

impl NodeApi for NodeService {
    async fn miner_base(&self, miner: ActorId, epoch: Epoch) -> ProviderResult<MinerBase> {
        Ok(self
            .with_core(move |c| c.miner_base(miner, epoch))
            .await??)
    }

    async fn submit_block(&self, block: FullBlock) -> ProviderResult<BlockVerdict> {
        Ok(NodeService::submit_block(self, block).await?)
    }

    async fn proving_view(&self, miner: ActorId) -> ProviderResult<ProvingView> {
        Ok(self.with_core(move |c| c.proving_view(miner)).await??)
    }

    async fn push_message(&self, msg: SignedMessage) -> ProviderResult<[u8; 32]> {
        Ok(NodeService::push_message(self, msg).await?)
    }

    async fn next_nonce(&self, addr: Address) -> ProviderResult<u64> {
        Ok(self
            .with_core(move |c| c.next_nonce(&addr))
            .await?
            .unwrap_or(0))
    }

    async fn chain_head(&self) -> ProviderResult<HeadInfo> {
        Ok(self.with_core(|c| lode_node::rpc::query::head(c)).await??)
    }

    async fn chain_nonce(&self, addr: Address) -> ProviderResult<u64> {
        Ok(self
            .with_core(move |c| lode_node::rpc::query::actor(c, &addr))
            .await??
            .map_or(0, |a| a.nonce))
    }

    async fn miner_sectors(&self, miner: ActorId) -> ProviderResult<Vec<SectorInfo>> {
        Ok(self
            .with_core(move |c| lode_node::rpc::query::miner_sectors(c, miner))
            .await??)
    }

    async fn miner_precommits(&self, miner: ActorId) -> ProviderResult<Vec<PreCommitView>> {
        Ok(self
            .with_core(move |c| lode_node::rpc::query::miner_precommits(c, miner))
            .await??)
    }

    async fn seal_ticket(&self, miner: ActorId, epoch: Epoch) -> ProviderResult<[u8; 32]> {
        Ok(self
            .with_core(move |c| lode_node::rpc::query::seal_ticket(c, miner, epoch))
            .await??)
    }

    async fn search_message(&self, id: [u8; 32]) -> ProviderResult<Option<MessageLookupInfo>> {
        Ok(self
            .with_core(move |c| lode_node::rpc::query::search_message(c, &id))
            .await??)
    }

    async fn miner_power(&self, miner: ActorId) -> ProviderResult<MinerPowerInfo> {
        Ok(self
            .with_core(move |c| lode_node::rpc::query::miner_power(c, miner))
            .await??)
    }

    async fn miner_info(&self, miner: ActorId) -> ProviderResult<MinerInfoView> {
        Ok(self
            .with_core(move |c| lode_node::rpc::query::miner_info(c, miner))
            .await??)
    }

    async fn market_deal(&self, id: DealId) -> ProviderResult<DealLookup> {
        let found = self
            .with_core(move |c| {
                c.chain()
                    .view(|rt| lode_chain::actors::market::deal(rt, id))
            })
            .await?
            .map_err(|e| crate::error::ProviderError::Node(e.to_string()))?;
        Ok(found.map_or(DealLookup::Absent, |d| DealLookup::Found(Box::new(d))))
    }

    async fn compute_jobs(&self, filter: JobFilter, from: u64) -> ProviderResult<Vec<JobView>> {
        Ok(self
            .with_core(move |c| lode_node::rpc::query::compute_jobs(c, filter, from))
            .await??)
    }

    async fn compute_job(&self, id: u64) -> ProviderResult<Option<JobView>> {
        Ok(self
            .with_core(move |c| lode_node::rpc::query::compute_job(c, id))
            .await??)
    }

    async fn provider_deals(&self, provider: ActorId) -> ProviderResult<Vec<DealView>> {
        Ok(self
            .with_core(move |c| lode_node::rpc::query::market_deals(c, Some(provider), None, 0))
            .await??)
    }
}

impl NodeApi for lode_node::rpc::client::NodeClient {
    async fn miner_base(&self, miner: ActorId, epoch: Epoch) -> ProviderResult<MinerBase> {
        lode_node::rpc::client::NodeClient::miner_base(self, miner, epoch)
            .await
            .map_err(client_error)
    }

    async fn submit_block(&self, block: FullBlock) -> ProviderResult<BlockVerdict> {
        use lode_node::rpc::types::SubmitVerdict as V;
        let verdict = self
            .miner_submit_block(&block)
            .await
            .map_err(client_error)?;
        Ok(match verdict {
            V::Accepted => BlockVerdict::Accepted,
            V::Stored => BlockVerdict::Stored,
            V::Duplicate => BlockVerdict::Duplicate,
            V::NeedParents { parents } => {
                BlockVerdict::NeedParents(lode_chain::consensus::TipsetKey::new(parents))
            }
            V::Rejected { reason } => BlockVerdict::Rejected(reason),
        })
    }

    async fn proving_view(&self, miner: ActorId) -> ProviderResult<ProvingView> {
        self.miner_proving_view(miner).await.map_err(client_error)
    }

    async fn push_message(&self, msg: SignedMessage) -> ProviderResult<[u8; 32]> {
        self.mpool_push(&msg).await.map_err(client_error)
    }

    async fn next_nonce(&self, addr: Address) -> ProviderResult<u64> {
        Ok(self
            .mpool_nonce(&addr)
            .await
            .map_err(client_error)?
            .unwrap_or(0))
    }

    async fn chain_head(&self) -> ProviderResult<HeadInfo> {
        lode_node::rpc::client::NodeClient::chain_head(self)
            .await
            .map_err(client_error)
    }

    async fn chain_nonce(&self, addr: Address) -> ProviderResult<u64> {
        Ok(self
            .state_actor(&addr)
            .await
            .map_err(client_error)?
            .map_or(0, |a| a.nonce))
    }

    async fn miner_sectors(&self, miner: ActorId) -> ProviderResult<Vec<SectorInfo>> {
        self.state_miner_sectors(miner).await.map_err(client_error)
    }

    async fn market_escrow(
        &self,
        owner: ActorId,
    ) -> ProviderResult<lode_node::rpc::types::EscrowView> {
        self.state_market_balance(&Address::Id(owner))
            .await
            .map_err(client_error)
    }

    async fn market_deal(&self, id: DealId) -> ProviderResult<DealLookup> {
        let Some(view) = self.state_market_deal(id).await.map_err(client_error)? else {
            return Ok(DealLookup::Absent);
        };
        let deal = view.to_deal().map_err(|e| {
            crate::error::ProviderError::Node(format!("the node's deal {id} does not decode: {e}"))
        })?;
        Ok(DealLookup::Found(Box::new(deal)))
    }

    async fn miner_precommits(&self, miner: ActorId) -> ProviderResult<Vec<PreCommitView>> {
        self.state_miner_precommits(miner)
            .await
            .map_err(client_error)
    }

    async fn seal_ticket(&self, miner: ActorId, epoch: Epoch) -> ProviderResult<[u8; 32]> {
        self.state_seal_ticket(miner, epoch)
            .await
            .map_err(client_error)
    }

    async fn search_message(&self, id: [u8; 32]) -> ProviderResult<Option<MessageLookupInfo>> {
        self.state_search_msg(id).await.map_err(client_error)
    }

    async fn miner_power(&self, miner: ActorId) -> ProviderResult<MinerPowerInfo> {
        self.state_miner_power(miner).await.map_err(client_error)
    }

    async fn miner_info(&self, miner: ActorId) -> ProviderResult<MinerInfoView> {
        self.state_miner_info(miner).await.map_err(client_error)
    }

    async fn compute_jobs(&self, filter: JobFilter, from: u64) -> ProviderResult<Vec<JobView>> {
        self.state_compute_jobs(filter, from)
            .await
            .map_err(client_error)
    }

    async fn compute_job(&self, id: u64) -> ProviderResult<Option<JobView>> {
        self.state_compute_job(id).await.map_err(client_error)
    }

    async fn provider_deals(&self, provider: ActorId) -> ProviderResult<Vec<DealView>> {
        self.state_market_deals(Some(provider), None, 0)
            .await
            .map_err(client_error)
    }
}

fn client_error(e: lode_node::rpc::client::ClientError) -> crate::error::ProviderError {
    crate::error::ProviderError::Node(e.to_string())
}
