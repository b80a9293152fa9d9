//! `RpcChainView` against a real JSON-RPC server (the node's `serve_module`) answering the
//! methods the market reads in the node API's types (`EscrowView`'s shape, `DealView`); the
//! node's own answers are checked in `node/tests/integration/rpc.rs`.

use jsonrpsee::RpcModule;
use jsonrpsee::types::ErrorObjectOwned;
use lode_chain::actors::market::{Deal, DealState, Escrow};
use lode_chain::policy::Policy;
use lode_chain::types::{ActorId, TokenAmount};
use lode_market::deal::chain::RpcChainView;
use lode_market::deal::policy::ChainView;
use lode_node::rpc::client::{ApiInfo, NodeClient};
use lode_node::rpc::types::{ActorInfo, DealView, GenesisInfo, HeadInfo};
use lode_node::rpc::{RpcConfig, serve_module};
use lode_proofs::cid::PieceCid;
use lode_proofs::node::Node;
use serde_json::{Value, json};

use crate::common::*;

fn module(deal: Deal) -> RpcModule<()> {
    let mut m = RpcModule::new(());
    let ok = |v: Value| Ok::<Value, ErrorObjectOwned>(v);
    m.register_method("chain_head", move |_, _, _| {
        ok(serde_json::to_value(HeadInfo {
            epoch: 42,
            key: vec![],
            weight: 0,
            parent_state_root: None,
            state_root: None,
        })
        .unwrap())
    })
    .unwrap();
    m.register_method("chain_genesis", move |_, _, _| {
        ok(serde_json::to_value(GenesisInfo {
            id: [0; 32],
            network: NETWORK.into(),
            timestamp: 0,
            policy: Policy::devnet(),
        })
        .unwrap())
    })
    .unwrap();
    m.register_method("state_actor", move |params, _, _| {
        let addr: String = params.one()?;
        ok(if addr == "l0100" {
            serde_json::to_value(ActorInfo {
                id: CLIENT,
                kind: "account".into(),
                key: Some(hex::encode(client_key().public_key().to_bytes())),
                balance: TokenAmount(5),
                nonce: 0,
            })
            .unwrap()
        } else {
            Value::Null
        })
    })
    .unwrap();
    m.register_method("state_marketBalance", move |params, _, _| {
        let addr: String = params.one()?;
        ok(if addr == "l0100" {
            json!({"balance": "10000000000000000000", "locked": "3", "available": "9999999999999999997"})
        } else {
            json!({"balance": "0", "locked": "0", "available": "0"})
        })
    })
    .unwrap();
    m.register_method("state_verifiedClientDataCap", move |params, _, _| {
        let addr: String = params.one()?;
        ok(if addr == "l0100" {
            json!("2048")
        } else {
            Value::Null
        })
    })
    .unwrap();
    m.register_method("state_marketDeal", move |params, _, _| {
        let id: u64 = params.one()?;
        ok(if id == 5 {
            let p = &deal.proposal;
            serde_json::to_value(DealView {
                deal_id: 5,
                piece_cid: PieceCid::new(Node(p.piece_cid)).unwrap().to_string(),
                piece_size: p.piece_size,
                verified: p.verified,
                client: p.client,
                provider: p.provider,
                label: p.label.clone(),
                start_epoch: p.start_epoch,
                end_epoch: p.end_epoch,
                price_per_epoch: p.price_per_epoch,
                provider_collateral: p.provider_collateral,
                client_collateral: p.client_collateral,
                state: "active".into(),
                sector: deal.state.sector,
                activation_epoch: deal.state.activation_epoch,
                paid_until: deal.paid_until(),
                allocation: deal.state.allocation,
            })
            .unwrap()
        } else {
            Value::Null
        })
    })
    .unwrap();
    m
}

#[tokio::test]
async fn the_chain_view_reads_the_node_api() {
    let proposal = proposal(&payload(100, 1), 128, 500).proposal;
    let deal = Deal {
        state: DealState {
            sector: Some(3),
            activation_epoch: Some(40),
            last_updated: Some(proposal.start_epoch + 7),
            allocation: None,
        },
        proposal,
    };
    let names = [
        "chain_head",
        "chain_genesis",
        "state_actor",
        "state_marketBalance",
        "state_verifiedClientDataCap",
        "state_marketDeal",
    ];
    let (addr, server) = serve_module(
        "127.0.0.1:0".parse().unwrap(),
        module(deal.clone()),
        &names,
        "token".into(),
        RpcConfig::default(),
    )
    .await
    .unwrap();
    let view = RpcChainView::new(
        NodeClient::new(ApiInfo {
            url: format!("http://{addr}"),
            token: None,
        })
        .unwrap(),
    );
    assert_eq!(view.head_epoch().await.unwrap(), 42);
    assert_eq!(view.policy().await.unwrap().network, NETWORK);
    assert_eq!(
        view.account_key(CLIENT).await.unwrap(),
        Some(client_key().public_key())
    );
    assert_eq!(view.account_key(ActorId(7)).await.unwrap(), None);
    assert_eq!(
        view.market_escrow(CLIENT).await.unwrap(),
        Escrow {
            balance: TokenAmount::tokens(10),
            locked: TokenAmount(3),
        }
    );
    assert_eq!(
        view.market_escrow(ActorId(7)).await.unwrap(),
        Escrow::default()
    );
    assert_eq!(view.verified_datacap(CLIENT).await.unwrap(), Some(2048));
    assert_eq!(view.verified_datacap(ActorId(7)).await.unwrap(), None);
    assert_eq!(view.market_deal(5).await.unwrap(), Some(deal));
    assert_eq!(view.market_deal(6).await.unwrap(), None);
    server.stop();
}
