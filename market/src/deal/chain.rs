//! [`ChainView`] over the node's RPC ([`NodeClient`]): `chain_head`, `chain_genesis`,
//! `state_actor`, `state_marketBalance`, `state_verifiedClientDataCap` and `state_marketDeal`
//! (its [`DealView`] turned back into the chain's [`Deal`]).

use lode_chain::actors::market::{Deal, Escrow};
use lode_chain::crypto::PublicKey;
use lode_chain::policy::Policy;
use lode_chain::types::{ActorId, Address, DealId, Epoch};
use lode_node::rpc::client::NodeClient;
use lode_node::rpc::types::DealView;
use tokio::sync::OnceCell;

use super::policy::ChainView;
use crate::error::{MarketError, MarketResult};

/// A [`ChainView`] asking a node over RPC; the chain's rules are read once.
#[derive(Debug)]
pub struct RpcChainView {
    client: NodeClient,
    policy: OnceCell<Policy>,
}

impl RpcChainView {
    /// A view through `client`.
    pub fn new(client: NodeClient) -> RpcChainView {
        RpcChainView {
            client,
            policy: OnceCell::new(),
        }
    }

    /// The client it asks.
    pub fn client(&self) -> &NodeClient {
        &self.client
    }
}

impl ChainView for RpcChainView {
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

    async fn account_key(&self, account: ActorId) -> MarketResult<Option<PublicKey>> {
        let Some(actor) = self.client.state_actor(&Address::Id(account)).await? else {
            return Ok(None);
        };
        Ok(actor
            .key
            .and_then(|k| hex::decode(k).ok())
            .and_then(|b| PublicKey::from_bytes(&b).ok()))
    }

    async fn market_escrow(&self, owner: ActorId) -> MarketResult<Escrow> {
        let e = self
            .client
            .state_market_balance(&Address::Id(owner))
            .await?;
        Ok(Escrow {
            balance: e.balance,
            locked: e.locked,
        })
    }

    async fn verified_datacap(&self, client: ActorId) -> MarketResult<Option<u128>> {
        Ok(self
            .client
            .state_verified_client_datacap(&Address::Id(client))
            .await?)
    }

    async fn market_deal(&self, id: DealId) -> MarketResult<Option<Deal>> {
        self.client
            .state_market_deal(id)
            .await?
            .map(deal_of_view)
            .transpose()
    }

    async fn provider_collateral_min(
        &self,
        piece_size: u64,
    ) -> MarketResult<Option<lode_chain::types::TokenAmount>> {
        Ok(Some(
            self.client
                .state_deal_collateral_bounds(piece_size)
                .await?
                .provider_min,
        ))
    }
}

/// The chain's deal record from the node's view of it.
fn deal_of_view(v: DealView) -> MarketResult<Deal> {
    v.to_deal().map_err(|e| MarketError::Malformed {
        what: "state_marketDeal answer",
        why: format!("piece CID {:?}: {e}", v.piece_cid),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lode_chain::types::TokenAmount;
    use lode_proofs::cid::PieceCid;
    use lode_proofs::node::trunc254;

    use super::*;

    #[test]
    fn the_nodes_deal_view_turns_back_into_the_chains_record() {
        let comm_p = trunc254([9; 32]);
        let view = DealView {
            deal_id: 4,
            piece_cid: PieceCid::new(comm_p).unwrap().to_string(),
            piece_size: 2048,
            verified: true,
            client: ActorId(101),
            provider: ActorId(105),
            label: "l".into(),
            start_epoch: 10,
            end_epoch: 500,
            price_per_epoch: TokenAmount(3),
            provider_collateral: TokenAmount(7),
            client_collateral: TokenAmount(1),
            state: "active".into(),
            sector: Some(2),
            activation_epoch: Some(8),
            paid_until: 40,
            allocation: Some(6),
        };
        let d = deal_of_view(view.clone()).unwrap();
        assert_eq!(d.proposal.piece_cid, comm_p.0);
        assert_eq!(
            (d.proposal.client, d.proposal.provider),
            (ActorId(101), ActorId(105))
        );
        assert_eq!(d.state.sector, Some(2));
        assert_eq!(d.paid_until(), 40);
        assert_eq!(d.client_locked(), TokenAmount(3 * 460 + 1));
        let mut bad = view;
        bad.piece_cid = "nonsense".into();
        assert!(deal_of_view(bad).is_err());
    }
}
