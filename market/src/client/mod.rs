//! The client's side of the deal market: finding a provider on chain, its signed ask, making a
//! deal (the proposal signed, escrow checked, the payload served over HTTP or pushed over
//! libp2p, the signed answer checked, the publication found on chain), the client's deal
//! records and their state from the chain, and retrieval of a piece with its CommP checked.
//!
//! - [`provider`]: [`ProviderAddrs`], a provider's peer id, libp2p addresses, retrieval URL and
//!   worker key from its miner's chain record;
//! - [`chain`]: [`ClientChain`], what the client reads from the chain, and [`RpcClientChain`]
//!   over the node's RPC;
//! - [`records`]: [`ClientDealStore`], the client's deal records (`<client dir>/deals/`);
//! - [`deal`]: [`DealClient`] (ask, propose, push, wait for publication), the proposal's
//!   construction and checks, the escrow check, [`refresh_deals`];
//! - [`retrieve`]: `GET /piece/<piece CID>`, CommP checked, the CAR unpacked;
//! - [`jobs`]: compute jobs: a spec made into the chain's terms, the module uploaded to the
//!   providers storing the inputs, the outputs downloaded and checked against the final result,
//!   a verifier's re-execution.

pub mod chain;
pub mod deal;
pub mod jobs;
pub mod provider;
pub mod records;
pub mod retrieve;

pub use chain::{ClientChain, RpcClientChain};
pub use deal::{DealClient, DealTerms, PieceSpec, ProposedDeal, TransferChoice, refresh_deals};
pub use provider::ProviderAddrs;
pub use records::{ClientDeal, ClientDealState, ClientDealStore, ClientTransfer};
pub use retrieve::{RetrievalTarget, RetrieveRequest, Retrieved, retrieve};

/// A client-only market host (it dials, serves nothing) with a fresh ed25519 identity: what a
/// `lode client` command runs for its asks, proposals and pushes.
///
/// # Errors
/// [`crate::MarketError::Net`] when the transport cannot be built.
pub async fn client_host() -> crate::MarketResult<crate::net::MarketHost> {
    crate::net::MarketHost::client(crate::net::HostConfig::new(
        libp2p::identity::Keypair::generate_ed25519(),
        Vec::new(),
    ))
    .await
}
