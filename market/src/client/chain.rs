//! What the client reads from the chain ([`ClientChain`]), and [`RpcClientChain`], the same
//! over the node's RPC: the head, the chain's rules, miners' records, account ids, market
//! escrow, the provider collateral floor, and published deals.

use std::future::Future;

use lode_chain::policy::Policy;
use lode_chain::types::{ActorId, Address, DealId, Epoch, TokenAmount};
use lode_node::rpc::client::NodeClient;
use lode_node::rpc::types::{DealView, EscrowView, MinerInfoView};
use tokio::sync::OnceCell;

use crate::error::{MarketError, MarketResult};

/// The client's view of the chain.
pub trait ClientChain: Send + Sync {
    /// The head epoch.
    fn head_epoch(&self) -> impl Future<Output = MarketResult<Epoch>> + Send;
    /// The chain's rules (the network's name among them).
    fn policy(&self) -> impl Future<Output = MarketResult<Policy>> + Send;
    /// A miner's record (`state_minerInfo`).
    fn miner_info(
        &self,
        miner: ActorId,
    ) -> impl Future<Output = MarketResult<MinerInfoView>> + Send;
    /// The id of the actor at `addr` (`None`: no such actor yet).
    fn lookup_id(
        &self,
        addr: &Address,
    ) -> impl Future<Output = MarketResult<Option<ActorId>>> + Send;
    /// An actor's market escrow (zero when it has none).
    fn market_balance(
        &self,
        owner: ActorId,
    ) -> impl Future<Output = MarketResult<EscrowView>> + Send;
    /// The least provider collateral a deal of `piece_size` padded bytes may carry now.
    fn provider_collateral_min(
        &self,
        piece_size: u64,
    ) -> impl Future<Output = MarketResult<TokenAmount>> + Send;
    /// Published deals of `provider` and/or `client`, from deal id `from`, oldest first (a page:
    /// the node may return fewer than all).
    fn market_deals(
        &self,
        provider: Option<ActorId>,
        client: Option<ActorId>,
        from: DealId,
    ) -> impl Future<Output = MarketResult<Vec<DealView>>> + Send;
    /// A published deal (`None`: unknown, or no longer on chain).
    fn market_deal(
        &self,
        id: DealId,
    ) -> impl Future<Output = MarketResult<Option<DealView>>> + Send;
}

/// Every published deal of `provider` and/or `client`, page after page.
///
/// # Errors
/// What the view returns.
pub async fn all_deals<C: ClientChain>(
    chain: &C,
    provider: Option<ActorId>,
    client: Option<ActorId>,
) -> MarketResult<Vec<DealView>> {
    let mut all: Vec<DealView> = Vec::new();
    let mut from: DealId = 0;
    loop {
        let page = chain.market_deals(provider, client, from).await?;
        let Some(last) = page.last().map(|d| d.deal_id) else {
            break;
        };
        all.extend(page.into_iter().filter(|d| d.deal_id >= from));
        // A node that does not move forward ends the listing rather than looping.
        match last.checked_add(1) {
            Some(next) if next > from => from = next,
            _ => break,
        }
    }
    Ok(all)
}

/// A [`ClientChain`] asking a node over RPC; the chain's rules are read once.
#[derive(Debug)]
pub struct RpcClientChain {
    client: NodeClient,
    policy: OnceCell<Policy>,
}

impl RpcClientChain {
    /// A view through `client`.
    pub fn new(client: NodeClient) -> RpcClientChain {
        RpcClientChain {
            client,
            policy: OnceCell::new(),
        }
    }

    /// The node client it asks.
    pub fn client(&self) -> &NodeClient {
        &self.client
    }
}

impl ClientChain for RpcClientChain {
    async fn head_epoch(&self) -> MarketResult<Epoch> {
        Ok(self.client.chain_head().await?.epoch)
    }

    async fn policy(&self) -> MarketResult<Policy> {
        let policy = self
            .policy
            .get_or_try_init(|| async {
                Ok::<_, MarketError>(self.client.chain_genesis().await?.policy)
            })
            .await?;
        Ok(policy.clone())
    }

    async fn miner_info(&self, miner: ActorId) -> MarketResult<MinerInfoView> {
        Ok(self.client.state_miner_info(miner).await?)
    }

    async fn lookup_id(&self, addr: &Address) -> MarketResult<Option<ActorId>> {
        Ok(self.client.state_lookup_id(addr).await?)
    }

    async fn market_balance(&self, owner: ActorId) -> MarketResult<EscrowView> {
        Ok(self
            .client
            .state_market_balance(&Address::Id(owner))
            .await?)
    }

    async fn provider_collateral_min(&self, piece_size: u64) -> MarketResult<TokenAmount> {
        Ok(self
            .client
            .state_deal_collateral_bounds(piece_size)
            .await?
            .provider_min)
    }

    async fn market_deals(
        &self,
        provider: Option<ActorId>,
        client: Option<ActorId>,
        from: DealId,
    ) -> MarketResult<Vec<DealView>> {
        Ok(self
            .client
            .state_market_deals(provider, client, from)
            .await?)
    }

    async fn market_deal(&self, id: DealId) -> MarketResult<Option<DealView>> {
        Ok(self.client.state_market_deal(id).await?)
    }
}
