//! Fakes of what the provider's deal service talks to (the chain, the message sender, the sealing
//! pipeline) and an HTTP server whose connections can be cut, for the market's integration tests.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use libp2p::PeerId;
use lode_chain::actors::MARKET;
use lode_chain::actors::market::{
    ClientDealProposal, Deal, DealProposal, DealState, Escrow, MarketMethod,
};
use lode_chain::crypto::{PublicKey, SecretKey};
use lode_chain::message::{Message, Method, SignedMessage};
use lode_chain::policy::Policy;
use lode_chain::types::{ActorId, Address, DealId, Epoch, SectorNumber, TokenAmount};
use lode_market::MarketResult;
use lode_market::client::ClientChain;
use lode_market::deal::policy::{ChainView, DealPolicyConfig};
use lode_market::deal::{DealRequest, DealUuid, StorageAsk, TransferSpec};
use lode_market::provider::service::ProviderConfig;
use lode_market::provider::{DealPublisher, PieceProgress, RecordMessage, SealingApi};
use lode_market::transfer::http::TransferConfig;
use lode_node::rpc::types::{DealView, EscrowView, MessageLookupInfo, MinerInfoView, ReceiptInfo};
use lode_proofs::cid::PieceCid;
use lode_proofs::node::Node;
use lode_proofs::piece::{PaddedPieceSize, commp_of_bytes};
use lode_proofs::sector::SectorSize;

pub const MINER: ActorId = ActorId(1000);
pub const CLIENT: ActorId = ActorId(100);
pub const NETWORK: &str = "devnet";
pub const SECTOR_SIZE: u64 = 8 << 20;

pub fn worker_key() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

pub fn client_key() -> SecretKey {
    SecretKey::from_seed(&[2; 32])
}

/// A deterministic payload of `len` bytes.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            ((i as u64)
                .wrapping_mul(2654435761)
                .wrapping_add(u64::from(seed))
                >> 7) as u8
        })
        .collect()
}

/// The piece commitment of `data` zero-filled to `piece_size`.
pub fn comm_p(data: &[u8], piece_size: u64) -> [u8; 32] {
    let piece = PaddedPieceSize::new(piece_size).unwrap();
    let mut filled = data.to_vec();
    filled.resize(piece.unpadded() as usize, 0);
    commp_of_bytes(&filled).unwrap().comm_p.0
}

/// A signed proposal for `data` in a piece of `piece_size`, starting at `start`.
pub fn proposal(data: &[u8], piece_size: u64, start: Epoch) -> ClientDealProposal {
    let proposal = DealProposal {
        piece_cid: comm_p(data, piece_size),
        piece_size,
        verified: false,
        client: CLIENT,
        provider: MINER,
        label: "test deal".into(),
        start_epoch: start,
        end_epoch: start + 2000,
        price_per_epoch: TokenAmount(piece_size as u128),
        provider_collateral: TokenAmount(0),
        client_collateral: TokenAmount(0),
    };
    sign(proposal)
}

pub fn sign(proposal: DealProposal) -> ClientDealProposal {
    let client_signature = client_key().sign(&proposal.signing_bytes(NETWORK));
    ClientDealProposal {
        proposal,
        client_signature,
    }
}

pub fn request(proposal: ClientDealProposal, url: &str, payload_size: u64) -> DealRequest {
    DealRequest {
        uuid: DealUuid::new_random(),
        proposal,
        transfer: TransferSpec::Http {
            url: url.into(),
            payload_size,
        },
    }
}

pub fn ask() -> StorageAsk {
    StorageAsk {
        miner: MINER,
        price_per_gib_epoch: TokenAmount(1 << 30),
        verified_price_per_gib_epoch: TokenAmount(0),
        min_piece_size: 128,
        max_piece_size: SECTOR_SIZE,
        max_duration: 100_000,
        timestamp: 0,
        seq_no: 1,
    }
}

pub fn transfer_config() -> TransferConfig {
    TransferConfig {
        allow_private_addresses: true,
        chunk_size: 64 * 1024,
        parallel: 3,
        max_attempts: 8,
        backoff_initial_ms: 5,
        backoff_max_ms: 50,
        attempt_timeout_ms: 2000,
        stall_timeout_ms: 2000,
        overall_timeout_secs: 30,
    }
}

pub fn provider_config() -> ProviderConfig {
    ProviderConfig {
        miner: MINER,
        network: NETWORK.into(),
        sector_size: SECTOR_SIZE,
        policy: DealPolicyConfig {
            start_epoch_margin: 10,
            ..DealPolicyConfig::default()
        },
        transfer: transfer_config(),
        publish_wait_epochs: 3,
        max_publish_batch: 2,
        republish_after_epochs: 2,
    }
}

/// The chain as the provider reads it.
#[derive(Debug)]
pub struct ChainState {
    pub head: AtomicU64,
    pub policy: Policy,
    pub keys: Mutex<HashMap<ActorId, PublicKey>>,
    pub escrow: Mutex<HashMap<ActorId, Escrow>>,
    pub datacap: Mutex<HashMap<ActorId, u128>>,
    pub deals: Mutex<HashMap<DealId, Deal>>,
    /// Miners' chain records (what `state_minerInfo` answers).
    pub miners: Mutex<HashMap<ActorId, MinerInfoView>>,
    /// The provider collateral floor.
    pub collateral_min: Mutex<TokenAmount>,
}

#[derive(Clone, Debug)]
pub struct FakeChain(pub Arc<ChainState>);

impl FakeChain {
    pub fn new() -> FakeChain {
        let mut policy = Policy::devnet();
        policy.deal_min_duration = 100;
        let state = ChainState {
            head: AtomicU64::new(100),
            policy,
            keys: Mutex::new([(CLIENT, client_key().public_key())].into()),
            escrow: Mutex::new(
                [(
                    CLIENT,
                    Escrow {
                        balance: TokenAmount::tokens(1000),
                        locked: TokenAmount::ZERO,
                    },
                )]
                .into(),
            ),
            datacap: Mutex::new(HashMap::new()),
            deals: Mutex::new(HashMap::new()),
            miners: Mutex::new(HashMap::new()),
            collateral_min: Mutex::new(TokenAmount(1000)),
        };
        FakeChain(Arc::new(state))
    }

    pub fn head(&self) -> Epoch {
        self.0.head.load(Ordering::SeqCst)
    }

    pub fn advance(&self, epochs: u64) {
        self.0.head.fetch_add(epochs, Ordering::SeqCst);
    }

    /// Records `miner`'s announcement: its worker key, peer id and addresses.
    pub fn announce(&self, miner: ActorId, worker: &SecretKey, peer: &PeerId, addrs: &[String]) {
        let info = MinerInfoView {
            miner,
            owner: ActorId(miner.0 + 1),
            worker: ActorId(miner.0 + 1),
            worker_key: worker.public_key().to_bytes().to_vec(),
            sector_size: SectorSize::S8MiB,
            sector_size_bytes: SECTOR_SIZE,
            partition_sectors: 2,
            peer_id: Some(peer.to_string()),
            multiaddrs: addrs.to_vec(),
            balance: TokenAmount::ZERO,
            available: TokenAmount::ZERO,
            pre_commit_deposits: TokenAmount::ZERO,
            initial_pledge: TokenAmount::ZERO,
            locked_funds: TokenAmount::ZERO,
            fee_debt: TokenAmount::ZERO,
            proving_period_start: 0,
            current_deadline: 0,
            consensus_fault_elapsed: None,
        };
        self.0.miners.lock().unwrap().insert(miner, info);
    }
}

/// The node's view of a deal on chain.
pub fn deal_view(id: DealId, d: &Deal) -> DealView {
    let p = &d.proposal;
    DealView {
        deal_id: id,
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
        state: if d.state.sector.is_some() {
            "active".into()
        } else {
            "published".into()
        },
        sector: d.state.sector,
        activation_epoch: d.state.activation_epoch,
        paid_until: d.paid_until(),
        allocation: d.state.allocation,
    }
}

impl ClientChain for FakeChain {
    async fn head_epoch(&self) -> MarketResult<Epoch> {
        Ok(self.head())
    }
    async fn policy(&self) -> MarketResult<Policy> {
        Ok(self.0.policy.clone())
    }
    async fn miner_info(&self, miner: ActorId) -> MarketResult<MinerInfoView> {
        self.0
            .miners
            .lock()
            .unwrap()
            .get(&miner)
            .cloned()
            .ok_or_else(|| lode_market::MarketError::Net(format!("{miner} is not a miner")))
    }
    async fn lookup_id(&self, addr: &Address) -> MarketResult<Option<ActorId>> {
        Ok(match addr {
            Address::Id(id) => Some(*id),
            Address::Bls(key) => self
                .0
                .keys
                .lock()
                .unwrap()
                .iter()
                .find(|(_, k)| *k == key)
                .map(|(id, _)| *id),
        })
    }
    async fn market_balance(&self, owner: ActorId) -> MarketResult<EscrowView> {
        let e = self
            .0
            .escrow
            .lock()
            .unwrap()
            .get(&owner)
            .copied()
            .unwrap_or_default();
        Ok(EscrowView {
            balance: e.balance,
            locked: e.locked,
            available: e.balance.saturating_sub(e.locked),
        })
    }
    async fn provider_collateral_min(&self, _piece_size: u64) -> MarketResult<TokenAmount> {
        Ok(*self.0.collateral_min.lock().unwrap())
    }
    async fn market_deals(
        &self,
        provider: Option<ActorId>,
        client: Option<ActorId>,
        from: DealId,
    ) -> MarketResult<Vec<DealView>> {
        let deals = self.0.deals.lock().unwrap();
        let mut ids: Vec<DealId> = deals.keys().copied().filter(|id| *id >= from).collect();
        ids.sort_unstable();
        // Pages of two, as a node pages its listing.
        Ok(ids
            .into_iter()
            .filter(|id| {
                let p = &deals[id].proposal;
                provider.is_none_or(|x| x == p.provider) && client.is_none_or(|x| x == p.client)
            })
            .take(2)
            .map(|id| deal_view(id, &deals[&id]))
            .collect())
    }
    async fn market_deal(&self, id: DealId) -> MarketResult<Option<DealView>> {
        Ok(self
            .0
            .deals
            .lock()
            .unwrap()
            .get(&id)
            .map(|d| deal_view(id, d)))
    }
}

impl ChainView for FakeChain {
    async fn head_epoch(&self) -> MarketResult<Epoch> {
        Ok(self.head())
    }
    async fn policy(&self) -> MarketResult<Policy> {
        Ok(self.0.policy.clone())
    }
    async fn account_key(&self, account: ActorId) -> MarketResult<Option<PublicKey>> {
        Ok(self.0.keys.lock().unwrap().get(&account).copied())
    }
    async fn market_escrow(&self, owner: ActorId) -> MarketResult<Escrow> {
        Ok(self
            .0
            .escrow
            .lock()
            .unwrap()
            .get(&owner)
            .copied()
            .unwrap_or_default())
    }
    async fn verified_datacap(&self, client: ActorId) -> MarketResult<Option<u128>> {
        Ok(self.0.datacap.lock().unwrap().get(&client).copied())
    }
    async fn market_deal(&self, id: DealId) -> MarketResult<Option<Deal>> {
        Ok(self.0.deals.lock().unwrap().get(&id).cloned())
    }
}

/// What the fake message sender saw.
#[derive(Debug, Default)]
pub struct PublisherState {
    /// Messages signed (each a batch), in order.
    pub signed: Mutex<Vec<SignedMessage>>,
    /// Pushes (first pushes and pushes again).
    pub pushes: AtomicUsize,
    /// When set, `publish` records the message and then fails before pushing (a crash).
    pub crash_before_push: AtomicBool,
    /// Messages on chain: id → (epoch, deal ids).
    pub landed: Mutex<HashMap<[u8; 32], Vec<DealId>>>,
    /// When set, pushed messages land at once.
    pub land_on_push: AtomicBool,
    pub next_deal_id: AtomicU64,
    /// The worker's nonce on chain: messages it has had executed (a landed publication moves it
    /// past its own; a test moves it to say another message took a nonce).
    pub chain_nonce: AtomicU64,
    /// The chain whose deals the landed publications create.
    pub chain: Mutex<Option<FakeChain>>,
}

#[derive(Clone, Debug)]
pub struct FakePublisher(pub Arc<PublisherState>);

impl FakePublisher {
    pub fn new(chain: &FakeChain) -> FakePublisher {
        let state = PublisherState::default();
        state.land_on_push.store(true, Ordering::SeqCst);
        state.next_deal_id.store(1, Ordering::SeqCst);
        *state.chain.lock().unwrap() = Some(chain.clone());
        FakePublisher(Arc::new(state))
    }

    fn land(&self, message: &SignedMessage) {
        let Method::Market(MarketMethod::PublishDeals(deals)) = &message.message.method else {
            panic!("not a publication");
        };
        let mut landed = self.0.landed.lock().unwrap();
        if landed.contains_key(&message.id()) {
            return;
        }
        let chain = self.0.chain.lock().unwrap().clone().unwrap();
        let ids: Vec<DealId> = deals
            .iter()
            .map(|d| {
                let id = self.0.next_deal_id.fetch_add(1, Ordering::SeqCst);
                chain.0.deals.lock().unwrap().insert(
                    id,
                    Deal {
                        proposal: d.proposal.clone(),
                        state: DealState::default(),
                    },
                );
                id
            })
            .collect();
        landed.insert(message.id(), ids);
        self.0
            .chain_nonce
            .fetch_max(message.message.nonce + 1, Ordering::SeqCst);
    }
}

impl DealPublisher for FakePublisher {
    async fn publish(
        &self,
        deals: Vec<ClientDealProposal>,
        record: RecordMessage,
    ) -> MarketResult<[u8; 32]> {
        let nonce = self.0.signed.lock().unwrap().len() as u64;
        let message = Message {
            from: Address::Id(ActorId(1001)),
            to: Address::Id(MARKET),
            nonce,
            value: TokenAmount::ZERO,
            method: Method::Market(MarketMethod::PublishDeals(deals)),
            gas_limit: 1_000_000,
            gas_price: TokenAmount(1),
        }
        .sign(NETWORK, &worker_key());
        self.0.signed.lock().unwrap().push(message.clone());
        record(&message)?;
        if self.0.crash_before_push.load(Ordering::SeqCst) {
            return Err(lode_market::MarketError::Publish(
                "crashed before the push".into(),
            ));
        }
        self.0.pushes.fetch_add(1, Ordering::SeqCst);
        if self.0.land_on_push.load(Ordering::SeqCst) {
            self.land(&message);
        }
        Ok(message.id())
    }

    async fn push_again(&self, message: SignedMessage) -> MarketResult<()> {
        self.0.pushes.fetch_add(1, Ordering::SeqCst);
        if message.message.nonce < self.0.chain_nonce.load(Ordering::SeqCst)
            && !self.0.landed.lock().unwrap().contains_key(&message.id())
        {
            return Err(lode_market::MarketError::Publish(format!(
                "nonce {} is taken",
                message.message.nonce
            )));
        }
        if self.0.land_on_push.load(Ordering::SeqCst) {
            self.land(&message);
        }
        Ok(())
    }

    async fn nonce_passed(&self, message: &SignedMessage) -> MarketResult<bool> {
        Ok(self.0.chain_nonce.load(Ordering::SeqCst) > message.message.nonce)
    }

    async fn search(&self, id: [u8; 32]) -> MarketResult<Option<MessageLookupInfo>> {
        let landed = self.0.landed.lock().unwrap();
        Ok(landed.get(&id).map(|ids| MessageLookupInfo {
            epoch: 1,
            tipset: vec![],
            receipt: ReceiptInfo {
                exit_code: 0,
                exit: "Ok".into(),
                gas_used: 1,
                fee: TokenAmount(1),
                return_data: lode_chain::codec::encode(ids),
                error: String::new(),
            },
        }))
    }
}

/// The sealing pipeline as the market sees it.
#[derive(Debug, Default)]
pub struct SealingState {
    pub pieces: Mutex<HashMap<DealId, (SectorNumber, Vec<u8>)>>,
    pub calls: AtomicUsize,
    pub free: AtomicU64,
    pub state: Mutex<String>,
    /// When set, `add_piece` fails.
    pub fail: AtomicBool,
}

#[derive(Clone, Debug)]
pub struct FakeSealing(pub Arc<SealingState>);

impl FakeSealing {
    pub fn new() -> FakeSealing {
        let s = SealingState::default();
        s.free.store(1 << 30, Ordering::SeqCst);
        *s.state.lock().unwrap() = PieceProgress::WAITING.into();
        FakeSealing(Arc::new(s))
    }
}

impl SealingApi for FakeSealing {
    async fn add_piece(
        &self,
        deal_id: DealId,
        _proposal: &DealProposal,
        payload: &Path,
        payload_size: u64,
    ) -> MarketResult<PieceProgress> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        if self.0.fail.load(Ordering::SeqCst) {
            return Err(lode_market::MarketError::Sealing(
                "the pipeline is stopped".into(),
            ));
        }
        let mut pieces = self.0.pieces.lock().unwrap();
        let sector = match pieces.get(&deal_id) {
            Some((sector, _)) => *sector,
            None => {
                // The pipeline copies the payload.
                let data = std::fs::read(payload).unwrap();
                assert_eq!(data.len() as u64, payload_size);
                let sector = 10 + pieces.len() as u64;
                pieces.insert(deal_id, (sector, data));
                sector
            }
        };
        Ok(PieceProgress {
            sector: Some(sector),
            state: self.0.state.lock().unwrap().clone(),
            failed: None,
        })
    }

    async fn piece_progress(&self, deal_id: DealId) -> MarketResult<Option<PieceProgress>> {
        let pieces = self.0.pieces.lock().unwrap();
        Ok(pieces.get(&deal_id).map(|(sector, _)| PieceProgress {
            sector: Some(*sector),
            state: self.0.state.lock().unwrap().clone(),
            failed: None,
        }))
    }

    async fn free_capacity(&self) -> MarketResult<u64> {
        Ok(self.0.free.load(Ordering::SeqCst))
    }
}

/// How the test server misbehaves.
#[derive(Debug, Default)]
pub struct ServerState {
    pub data: Vec<u8>,
    /// Cut this many GET responses at a random point (then serve whole ones).
    pub cuts_left: AtomicUsize,
    /// The seed of the cut points.
    pub rng: Mutex<u64>,
    /// Extra bytes every GET sends beyond what was asked.
    pub extra: usize,
    /// The length HEAD reports, if not the data's.
    pub head_len: Option<u64>,
    pub gets: AtomicUsize,
    /// Milliseconds every GET waits before answering.
    pub delay_ms: u64,
}

fn next_random(state: &Mutex<u64>) -> u64 {
    let mut s = state.lock().unwrap();
    // xorshift64*
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

async fn head_file(State(s): State<Arc<ServerState>>) -> Response {
    let len = s.head_len.unwrap_or(s.data.len() as u64);
    (
        StatusCode::OK,
        [
            (header::CONTENT_LENGTH, len.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
        ],
    )
        .into_response()
}

async fn get_file(State(s): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    s.gets.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(s.delay_ms)).await;
    let total = s.data.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    let Some((start, end)) = range else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if start > end || end >= total {
        return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    }
    let mut body = s.data[start as usize..=end as usize].to_vec();
    body.extend(std::iter::repeat_n(0xAA, s.extra));
    let cut = s
        .cuts_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    use futures::StreamExt;
    let (sent, cut_at) = if cut && body.len() > 1 {
        let at = (next_random(&s.rng) % body.len() as u64) as usize;
        (body[..at].to_vec(), Some(at))
    } else {
        (body, None)
    };
    let chunks: Vec<Result<Bytes, std::io::Error>> = sent
        .chunks(16 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    // The connection breaks a moment after the bytes before the cut are sent.
    let tail = futures::stream::iter(cut_at).then(|_| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Err::<Bytes, _>(std::io::Error::other("cut"))
    });
    Response::builder()
        .status(StatusCode::PARTIAL_CONTENT)
        .header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{total}"),
        )
        .body(Body::from_stream(futures::stream::iter(chunks).chain(tail)))
        .unwrap()
}

async fn never() -> Response {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    StatusCode::OK.into_response()
}

async fn redirect() -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, "http://example.invalid/")],
    )
        .into_response()
}

/// A running test server: `/file` (with the state's faults), `/never`, `/redirect`.
pub struct TestServer {
    pub base: String,
    pub state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start(state: ServerState) -> TestServer {
        let state = Arc::new(state);
        let app = Router::new()
            .route("/file", get(get_file).head(head_file))
            .route("/never", get(never).head(never))
            .route("/redirect", get(redirect).head(redirect))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer {
            base: format!("http://{addr}"),
            state,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}
