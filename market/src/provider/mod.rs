//! The provider's side of the market: the deal service that answers the protocols, keeps the
//! deal records, fetches and checks the data, publishes the deals and hands their pieces to
//! sealing.
//!
//! - [`records`]: the persisted deal records and their states;
//! - [`service`]: [`DealProvider`](service::DealProvider), the [`crate::net::MarketServer`] and
//!   the driver ([`DealProvider::tick`](service::DealProvider::tick));
//! - [`DealPublisher`]: how deals reach the chain (the provider's message sender: the worker's
//!   one nonce sequence);
//! - [`SealingApi`]: how a piece reaches the sealing pipeline.

pub mod records;
pub mod service;

use std::future::Future;
use std::path::Path;

use lode_chain::actors::market::{ClientDealProposal, DealProposal};
use lode_chain::message::SignedMessage;
use lode_chain::types::{DealId, SectorNumber};
use lode_node::rpc::types::MessageLookupInfo;
use serde::{Deserialize, Serialize};

use crate::error::MarketResult;

/// Called with a signed publication message before it is pushed; the message is pushed only if
/// it returns `Ok`.
pub type RecordMessage = Box<dyn FnOnce(&SignedMessage) -> MarketResult<()> + Send>;

/// Sends the provider's `PublishDeals` messages.
///
/// The provider's implementation goes through its one message sender (the worker key's nonce
/// sequence, shared with Window PoSt and sealing messages): it signs
/// `MarketMethod::PublishDeals(deals)` from the worker to the market actor, hands the signed
/// message to `record`, and pushes it only once `record` has returned `Ok`.
pub trait DealPublisher: Send + Sync + 'static {
    /// Signs, records (through `record`) and pushes a publication of `deals`; returns the
    /// message's id.
    fn publish(
        &self,
        deals: Vec<ClientDealProposal>,
        record: RecordMessage,
    ) -> impl Future<Output = MarketResult<[u8; 32]>> + Send;
    /// Pushes a recorded message again (after a restart, or when it has not landed); a node that
    /// has it already may refuse it, which is not an error the caller acts on.
    fn push_again(&self, message: SignedMessage) -> impl Future<Output = MarketResult<()>> + Send;
    /// Where a message was executed, with its receipt (`state_searchMsg`).
    fn search(
        &self,
        id: [u8; 32],
    ) -> impl Future<Output = MarketResult<Option<MessageLookupInfo>>> + Send;
    /// Whether the chain has passed `message`'s nonce: its sender's nonce in the state at the
    /// head is greater, so a message with that nonce was executed. Unless that message was this
    /// one, this one can never be executed (a message recorded and then never pushed — a crash
    /// in between, a node that refused it — whose nonce the sender's next message took).
    fn nonce_passed(
        &self,
        message: &SignedMessage,
    ) -> impl Future<Output = MarketResult<bool>> + Send;
}

/// Where a deal's piece is in the sealing pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceProgress {
    /// Its sector, once placed.
    pub sector: Option<SectorNumber>,
    /// The pipeline's name for where it is (`waiting` for more deals, `packed`, `sealing`,
    /// `proving`, `failed`).
    pub state: String,
    /// Why it failed for good (its deal will not activate), if it did.
    pub failed: Option<String>,
}

impl PieceProgress {
    /// The state name of a piece whose sector waits for more deals.
    pub const WAITING: &'static str = "waiting";
}

/// The sealing pipeline, as the market uses it (the provider's `provider_addPiece` and
/// `provider_dealPieces`).
pub trait SealingApi: Send + Sync + 'static {
    /// Hands the deal's piece to the pipeline, which places it in a sector (one waiting for
    /// deals, or a new one) and seals it. The payload (`payload_size` bytes at `payload`) is
    /// zero-filled to the proposal's piece size. The pipeline **copies** the payload: the market
    /// deletes its file once this returned. Must be idempotent per deal id: a provider that
    /// crashed before recording the answer asks again.
    fn add_piece(
        &self,
        deal_id: DealId,
        proposal: &DealProposal,
        payload: &Path,
        payload_size: u64,
    ) -> impl Future<Output = MarketResult<PieceProgress>> + Send;
    /// Where a deal's piece is (`None`: the pipeline does not hold it).
    fn piece_progress(
        &self,
        deal_id: DealId,
    ) -> impl Future<Output = MarketResult<Option<PieceProgress>>> + Send;
    /// Padded bytes of deal pieces the pipeline can still take.
    fn free_capacity(&self) -> impl Future<Output = MarketResult<u64>> + Send;
}
