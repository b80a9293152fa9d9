//! The typed client of a provider's API: one async method per method of [`super`], returning
//! the server's own result types, over the node client's HTTP transport (same URLs, token and
//! errors: [`ClientError`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), lode_node::rpc::client::ClientError> {
//! use lode_node::rpc::client::{ApiInfo, ApiOptions, ApiTarget};
//! use lode_provider::rpc::client::ProviderClient;
//! let opts = ApiOptions {
//!     devnet: Some("devnet".into()),
//!     target: ApiTarget::Miner,
//!     ..ApiOptions::default()
//! };
//! let client = ProviderClient::new(ApiInfo::from_env(&opts)?)?;
//! for d in client.proving().await?.deadlines {
//!     println!("deadline {}: {}", d.index, d.state.as_str());
//! }
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use lode_node::rpc::client::{ApiInfo, ClientError, ClientResult, DEFAULT_TIMEOUT, NodeClient};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::types::{
    MiningInfo, PipelineSector, PipelineSectors, Pledged, ProviderInfo, ProviderSectors,
    ProviderTasks, ProvingCheck, SectorStatus,
};
use crate::pipeline::{DealPiece, DealPieceInfo, PieceLocation};
use crate::poster::{Declared, Extended};
use crate::status::ProvingStatus;

/// A client of one provider's API (cheap to clone).
#[derive(Clone, Debug)]
pub struct ProviderClient {
    http: NodeClient,
}

impl ProviderClient {
    /// A client of `api` with the default timeout.
    ///
    /// # Errors
    /// [`ClientError::Url`] for an unusable address.
    pub fn new(api: ApiInfo) -> ClientResult<Self> {
        ProviderClient::with_timeout(api, DEFAULT_TIMEOUT)
    }

    /// A client of `api` whose calls wait at most `timeout`.
    ///
    /// # Errors
    /// [`ClientError::Url`] for an unusable address.
    pub fn with_timeout(api: ApiInfo, timeout: Duration) -> ClientResult<Self> {
        Ok(ProviderClient {
            http: NodeClient::with_timeout(api, timeout)?,
        })
    }

    /// Where it connects.
    pub fn api(&self) -> &ApiInfo {
        self.http.api()
    }

    async fn call<R: DeserializeOwned>(&self, method: &str, params: Vec<Value>) -> ClientResult<R> {
        let v = self.http.call_raw(method, params).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `provider_info`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn info(&self) -> ClientResult<ProviderInfo> {
        self.call("provider_info", vec![]).await
    }

    /// `provider_sectors`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn sectors(&self) -> ClientResult<ProviderSectors> {
        self.call("provider_sectors", vec![]).await
    }

    /// `provider_proving`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn proving(&self) -> ClientResult<ProvingStatus> {
        self.call("provider_proving", vec![]).await
    }

    /// `provider_mining`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn mining(&self) -> ClientResult<MiningInfo> {
        self.call("provider_mining", vec![]).await
    }

    /// `provider_check`: the proving check of every deadline's sectors, or of `deadline`'s.
    ///
    /// # Errors
    /// [`ClientError`] (`-32602` for a deadline index past the proving period's).
    pub async fn check(&self, deadline: Option<u64>) -> ClientResult<ProvingCheck> {
        let params = deadline.map(Value::from).into_iter().collect();
        self.call("provider_check", params).await
    }

    /// `provider_declareFaults` (protected).
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token).
    pub async fn declare_faults(&self, sectors: &[u64]) -> ClientResult<Declared> {
        self.call(
            "provider_declareFaults",
            vec![Value::from(sectors.to_vec())],
        )
        .await
    }

    /// `provider_declareRecoveries` (protected).
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token).
    pub async fn declare_recoveries(&self, sectors: &[u64]) -> ClientResult<Declared> {
        self.call(
            "provider_declareRecoveries",
            vec![Value::from(sectors.to_vec())],
        )
        .await
    }

    /// `provider_pipeline`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn pipeline(&self) -> ClientResult<PipelineSectors> {
        self.call("provider_pipeline", vec![]).await
    }

    /// `provider_sectorStatus`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn sector_status(&self, sector: u64) -> ClientResult<SectorStatus> {
        self.call("provider_sectorStatus", vec![Value::from(sector)])
            .await
    }

    /// `provider_pledge` (protected): `count` committed-capacity sectors.
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token).
    pub async fn pledge(&self, count: u64) -> ClientResult<Pledged> {
        self.call("provider_pledge", vec![Value::from(count)]).await
    }

    /// `provider_removeSector` (protected).
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token).
    pub async fn remove_sector(&self, sector: u64) -> ClientResult<PipelineSector> {
        self.call("provider_removeSector", vec![Value::from(sector)])
            .await
    }

    /// `provider_terminateSector` (protected): the sector moves to `Terminating`.
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token; `-32003` for a sector
    /// not live on chain or not in the pipeline).
    pub async fn terminate_sector(&self, sector: u64) -> ClientResult<PipelineSector> {
        self.call("provider_terminateSector", vec![Value::from(sector)])
            .await
    }

    /// `provider_extendSectors` (protected): extends `sectors` to `expiration` and waits for
    /// the chain to execute the message.
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token; `-32003` when a sector
    /// cannot be extended or the chain refused the message).
    pub async fn extend_sectors(&self, sectors: &[u64], expiration: u64) -> ClientResult<Extended> {
        self.call(
            "provider_extendSectors",
            vec![Value::from(sectors.to_vec()), Value::from(expiration)],
        )
        .await
    }

    /// `provider_addPiece` (protected): hands deal `piece.deal_id`'s piece to the sealing
    /// pipeline (the payload file is on the provider's machine; the pipeline copies it, so it
    /// may be deleted once this returns). Idempotent by deal id.
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token; `-32003` for a deal the
    /// pipeline does not take, with the reason).
    pub async fn add_piece(&self, piece: &DealPiece) -> ClientResult<DealPieceInfo> {
        let proposal = serde_json::to_value(&piece.proposal)
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        self.call(
            "provider_addPiece",
            vec![
                Value::from(piece.deal_id),
                proposal,
                Value::from(piece.payload.to_string_lossy().into_owned()),
                Value::from(piece.payload_size),
            ],
        )
        .await
    }

    /// `provider_dealPieces`: every deal piece, or those of `deal_ids`.
    ///
    /// # Errors
    /// [`ClientError`] (`-32003` when the pipeline does not run).
    pub async fn deal_pieces(&self, deal_ids: Option<&[u64]>) -> ClientResult<Vec<DealPieceInfo>> {
        let params = deal_ids
            .map(|ids| Value::from(ids.to_vec()))
            .into_iter()
            .collect();
        self.call("provider_dealPieces", params).await
    }

    /// `provider_market`: the hosted market's peer id, announced addresses and retrieval URL.
    ///
    /// # Errors
    /// [`ClientError`] (`-32003` when the market does not run).
    pub async fn market(&self) -> ClientResult<super::MarketInfo> {
        self.call("provider_market", Vec::new()).await
    }

    /// `provider_deals`: the market's deal records, newest first.
    ///
    /// # Errors
    /// [`ClientError`] (`-32003` when the market does not run).
    pub async fn deals(&self) -> ClientResult<Vec<lode_market::provider::records::ProviderDeal>> {
        self.call("provider_deals", Vec::new()).await
    }

    /// `provider_pieceLocation`: where a piece's bytes are (`None`: no proven sector holds it).
    ///
    /// # Errors
    /// [`ClientError`] (`-32602` for a malformed piece CID).
    pub async fn piece_location(&self, piece_cid: &str) -> ClientResult<Option<PieceLocation>> {
        self.call("provider_pieceLocation", vec![Value::from(piece_cid)])
            .await
    }

    /// `provider_tasks`: running and queued tasks; with `history`, finished ones too.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn tasks(&self, history: bool) -> ClientResult<ProviderTasks> {
        self.call("provider_tasks", vec![Value::from(history)])
            .await
    }
}
