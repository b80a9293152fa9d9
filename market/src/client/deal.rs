//! Making a storage deal, as `lode client deal` does: the provider found on chain, its signed
//! ask checked, the proposal built and signed (SPEC §8), the escrow checked, the payload served
//! over HTTP (or a URL given, or pushed over libp2p), the signed answer checked, every step
//! recorded in the client's deal records, and the publication found on chain.
//!
//! **Defaults.** A deal starts one proving period after the head ([`default_start_epoch`]:
//! 240 epochs, four minutes, on the devnet; a day on mainnet's clock): room for the transfer,
//! the publication and the sealing of the sector, which must be proven by the start epoch (a
//! provider starts sealing a deal sector `deal_start_margin_epochs` before its first deal
//! starts, 62 epochs on the devnet, and refuses deals starting sooner than its
//! `start_epoch_margin`). The price is the ask's (the verified price for `--verified`), the
//! provider collateral the chain's floor for the piece plus a fifth ([`COLLATERAL_MARGIN`]:
//! the floor grows with the circulating supply between proposal and publication), the client
//! collateral zero (the chain asks for none), the label the payload root CID.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cid::Cid;
use lode_chain::actors::market::DealProposal;
use lode_chain::crypto::SecretKey;
use lode_chain::policy::Policy;
use lode_chain::types::{ActorId, Address, DealId, Epoch, TokenAmount};
use lode_node::rpc::types::{DealView, EscrowView};
use lode_proofs::cid::PieceCid;
use lode_proofs::piece::PaddedPieceSize;

use super::chain::{ClientChain, all_deals};
use super::provider::ProviderAddrs;
use super::records::{ClientDeal, ClientDealState, ClientDealStore, ClientTransfer};
use crate::deal::{
    AskRequest, AskResponse, DealDecision, DealRequest, DealUuid, SignedAsk, StorageAsk,
    TransferSpec, price_for_piece, sign_proposal,
};
use crate::error::{MarketError, MarketResult};
use crate::import::{ImportRecord, ImportStore};
use crate::net::{MarketHost, PushOptions};
use crate::transfer::serve::{ServedFile, serve_file};

/// The provider collateral proposed: the chain's floor for the piece times this fraction
/// (rounded up), since the floor grows with the circulating supply before publication.
pub const COLLATERAL_MARGIN: (u128, u128) = (6, 5);

/// The start epoch a deal gets by default: one proving period after `head`.
pub fn default_start_epoch(head: Epoch, policy: &Policy) -> Epoch {
    head.saturating_add(policy.wpost_proving_period())
}

/// The payload a deal is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceSpec {
    /// The piece CID.
    pub piece_cid: PieceCid,
    /// The padded piece size.
    pub piece_size: u64,
    /// The payload's length (what the provider fetches).
    pub payload_size: u64,
    /// The payload root, when known.
    pub payload_root: Option<Cid>,
    /// The import it comes from, if any.
    pub import_id: Option<u64>,
    /// The payload file (needed to serve or push it).
    pub car: Option<PathBuf>,
}

impl PieceSpec {
    /// The payload of an import.
    pub fn from_import(store: &ImportStore, record: &ImportRecord) -> PieceSpec {
        PieceSpec {
            piece_cid: record.piece_cid,
            piece_size: record.padded_piece_size,
            payload_size: record.payload_size,
            payload_root: Some(record.payload_root),
            import_id: Some(record.id),
            car: Some(store.car_path(record)),
        }
    }

    fn car(&self, why: &str) -> MarketResult<&Path> {
        self.car.as_deref().ok_or_else(|| {
            MarketError::BadDeal(format!(
                "{why} needs the payload file: propose an import (`lode client import`), or give --url"
            ))
        })
    }
}

/// What the client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DealTerms {
    /// Epochs the deal lasts.
    pub duration: u64,
    /// The start epoch ([`default_start_epoch`] when `None`).
    pub start_epoch: Option<Epoch>,
    /// Price per GiB per epoch (the ask's when `None`).
    pub price_per_gib_epoch: Option<TokenAmount>,
    /// A verified deal (paid with DataCap).
    pub verified: bool,
    /// The label (the payload root, else the piece CID, when `None`).
    pub label: Option<String>,
    /// The provider collateral (the chain's floor plus [`COLLATERAL_MARGIN`] when `None`).
    pub provider_collateral: Option<TokenAmount>,
    /// The client collateral.
    pub client_collateral: TokenAmount,
}

impl DealTerms {
    /// Terms of `duration` epochs, everything else by default.
    pub fn new(duration: u64) -> DealTerms {
        DealTerms {
            duration,
            start_epoch: None,
            price_per_gib_epoch: None,
            verified: false,
            label: None,
            provider_collateral: None,
            client_collateral: TokenAmount::ZERO,
        }
    }
}

/// How the provider gets the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferChoice {
    /// The client serves the payload file on `listen` (port 0: an ephemeral one) while it waits;
    /// `public_host` is the host the provider should use in the URL (the listen address's when
    /// `None`).
    Serve {
        /// Where to listen.
        listen: SocketAddr,
        /// The host name or address put in the URL.
        public_host: Option<String>,
    },
    /// The provider pulls from this URL, served by someone else.
    Url(String),
    /// The client pushes the payload over libp2p after acceptance.
    Push,
}

/// The facts a proposal is built from.
#[derive(Clone, Copy, Debug)]
pub struct ProposalFacts<'a> {
    /// The client's account id.
    pub client: ActorId,
    /// The provider.
    pub provider: &'a ProviderAddrs,
    /// Its ask (checked).
    pub ask: &'a StorageAsk,
    /// The head epoch.
    pub head: Epoch,
    /// The chain's rules.
    pub policy: &'a Policy,
    /// The chain's provider collateral floor for the piece, now.
    pub collateral_min: TokenAmount,
}

/// Builds the proposal for `piece` on `terms`, checking what the client can check itself: the
/// piece size against the sector size and the ask, the payload against the piece, the duration
/// against the chain's bounds and the ask, the start epoch, the label's length, the price
/// against the ask and the amounts against the chain's cap.
///
/// # Errors
/// [`MarketError::BadDeal`] saying which rule and what to do.
pub fn build_proposal(
    piece: &PieceSpec,
    terms: &DealTerms,
    facts: &ProposalFacts<'_>,
) -> MarketResult<DealProposal> {
    let bad = |why: String| Err(MarketError::BadDeal(why));
    let ask = facts.ask;
    let policy = facts.policy;
    let size = piece.piece_size;
    let padded = PaddedPieceSize::new(size).map_err(|e| MarketError::BadDeal(e.to_string()))?;
    if size > facts.provider.sector_size {
        return bad(format!(
            "the piece is {size} bytes, larger than provider {}'s {}-byte sectors",
            facts.provider.miner, facts.provider.sector_size
        ));
    }
    if size < ask.min_piece_size || size > ask.max_piece_size {
        return bad(format!(
            "the piece is {size} bytes; provider {}'s ask takes pieces of {} to {} bytes",
            facts.provider.miner, ask.min_piece_size, ask.max_piece_size
        ));
    }
    if piece.payload_size > padded.unpadded() {
        return bad(format!(
            "a payload of {} bytes does not fit a piece of {size} bytes",
            piece.payload_size
        ));
    }
    let max_duration = policy.deal_max_duration.min(ask.max_duration);
    if terms.duration < policy.deal_min_duration || terms.duration > max_duration {
        return bad(format!(
            "a deal must last {} to {max_duration} epochs (the chain's bounds and the ask's maximum); {} were asked",
            policy.deal_min_duration, terms.duration
        ));
    }
    let start = match terms.start_epoch {
        Some(s) if s <= facts.head => {
            return bad(format!(
                "the start epoch {s} is not in the future: the chain is at epoch {}",
                facts.head
            ));
        }
        Some(s) => s,
        None => default_start_epoch(facts.head, policy),
    };
    let Some(end) = start.checked_add(terms.duration) else {
        return bad("the deal's end epoch overflows".into());
    };
    let label = match &terms.label {
        Some(l) => l.clone(),
        None => piece
            .payload_root
            .map_or_else(|| piece.piece_cid.to_string(), |r| r.to_string()),
    };
    let label_len = u64::try_from(label.len()).unwrap_or(u64::MAX);
    if label_len > policy.deal_max_label_size {
        return bad(format!(
            "the label is {label_len} bytes; at most {} are allowed",
            policy.deal_max_label_size
        ));
    }
    let Some(ask_price) = ask.min_price_per_epoch(size, terms.verified) else {
        return bad("the ask's price for this piece overflows".into());
    };
    let price = match terms.price_per_gib_epoch {
        None => ask_price,
        Some(p) => {
            let Some(price) = price_for_piece(p, size) else {
                return bad(format!("a price of {p} per GiB per epoch overflows"));
            };
            if price < ask_price {
                return bad(format!(
                    "a price of {p} per GiB per epoch is {price} per epoch for this piece, below provider {}'s ask of {ask_price}: it would reject the deal",
                    facts.provider.miner
                ));
            }
            price
        }
    };
    let provider_collateral = match terms.provider_collateral {
        Some(c) if c < facts.collateral_min => {
            return bad(format!(
                "a provider collateral of {c} is below the chain's floor of {} for this piece",
                facts.collateral_min
            ));
        }
        Some(c) => c,
        None => with_margin(facts.collateral_min),
    };
    for (what, v) in [
        ("the price per epoch", price),
        ("the provider collateral", provider_collateral),
        ("the client collateral", terms.client_collateral),
    ] {
        if v > policy.deal_max_amount {
            return bad(format!(
                "{what} {v} exceeds the chain's cap of {}",
                policy.deal_max_amount
            ));
        }
    }
    let proposal = DealProposal {
        piece_cid: piece.piece_cid.comm_p().0,
        piece_size: size,
        verified: terms.verified,
        client: facts.client,
        provider: facts.provider.miner,
        label,
        start_epoch: start,
        end_epoch: end,
        price_per_epoch: price,
        provider_collateral,
        client_collateral: terms.client_collateral,
    };
    if proposal.client_lock().is_none() {
        return bad("the deal's total price overflows".into());
    }
    Ok(proposal)
}

/// `min × COLLATERAL_MARGIN`, rounded up (saturating).
fn with_margin(min: TokenAmount) -> TokenAmount {
    let (n, d) = COLLATERAL_MARGIN;
    min.0
        .checked_mul(n)
        .map(|x| TokenAmount(x.div_ceil(d)))
        .unwrap_or(min)
}

/// An amount as `lode client balance add` takes it: whole tokens with up to 18 decimals
/// (`1.5`), without the unit.
pub fn amount_arg(amount: TokenAmount) -> String {
    let text = amount.to_string();
    text.strip_suffix(" LODE").unwrap_or(&text).to_string()
}

/// Checks that `escrow`'s available part covers `needed`.
///
/// # Errors
/// [`MarketError::InsufficientEscrow`], naming the `lode client balance add` to run.
pub fn check_escrow(escrow: &EscrowView, needed: TokenAmount) -> MarketResult<()> {
    if escrow.available >= needed {
        return Ok(());
    }
    Err(MarketError::InsufficientEscrow {
        available: escrow.available,
        needed,
        shortfall: amount_arg(needed.saturating_sub(escrow.available)),
    })
}

/// What the client's deals accepted and not yet published will lock: the provider checks the
/// client's free escrow against them too.
pub fn pending_lock(deals: &[ClientDeal], head: Epoch) -> TokenAmount {
    deals
        .iter()
        .filter(|d| {
            d.state == ClientDealState::Transferring && d.proposal.proposal.start_epoch > head
        })
        .filter_map(|d| d.proposal.proposal.client_lock())
        .fold(TokenAmount::ZERO, |a, b| {
            TokenAmount(a.0.saturating_add(b.0))
        })
}

/// Asks `provider` for its storage ask through `host`; checks its signature against the
/// miner's worker key on this network, and that it is this miner's.
///
/// # Errors
/// [`MarketError::Net`] when the provider cannot be reached; [`MarketError::Provider`] when it
/// has no ask (or no libp2p address); [`MarketError::BadSignature`], [`MarketError::Malformed`].
pub async fn query_ask<C: ClientChain>(
    chain: &C,
    host: &MarketHost,
    provider: &ProviderAddrs,
) -> MarketResult<SignedAsk> {
    let network = chain.policy().await?.network;
    let answer = host
        .query_ask(
            provider.peer_id,
            provider.dial_addrs()?,
            &AskRequest {
                miner: provider.miner,
            },
        )
        .await?;
    let signed = match answer {
        AskResponse::Ask(signed) => *signed,
        AskResponse::NoAsk { .. } => {
            return Err(MarketError::Provider {
                miner: provider.miner,
                why: "its market host has no storage ask for it: it takes no deals now".into(),
            });
        }
    };
    signed.verify(&network, &provider.worker_key)?;
    if signed.ask.miner != provider.miner {
        return Err(MarketError::Malformed {
            what: "storage ask",
            why: format!(
                "it is miner {}'s, not {}'s",
                signed.ask.miner, provider.miner
            ),
        });
    }
    Ok(signed)
}

/// A deal accepted by its provider.
#[derive(Debug)]
pub struct ProposedDeal {
    /// Its record (state `transferring`).
    pub deal: ClientDeal,
    /// The provider.
    pub provider: ProviderAddrs,
    /// The file server the provider pulls from, when the client serves the payload: keep it
    /// until the deal is published.
    pub served: Option<ServedFile>,
}

/// The client's side of the deal protocol: its key, its market host, the chain and its records.
#[derive(Debug)]
pub struct DealClient<C> {
    chain: C,
    host: MarketHost,
    key: SecretKey,
    deals: ClientDealStore,
}

impl<C: ClientChain> DealClient<C> {
    /// A client signing with `key`, asking through `host`, recording in `deals`.
    pub fn new(chain: C, host: MarketHost, key: SecretKey, deals: ClientDealStore) -> Self {
        DealClient {
            chain,
            host,
            key,
            deals,
        }
    }

    /// The chain it reads.
    pub fn chain(&self) -> &C {
        &self.chain
    }

    /// Its deal records.
    pub fn deals(&self) -> &ClientDealStore {
        &self.deals
    }

    /// The market host.
    pub fn host(&self) -> &MarketHost {
        &self.host
    }

    /// The client's account id on chain.
    ///
    /// # Errors
    /// [`MarketError::BadDeal`] when the key has no account yet.
    pub async fn client_id(&self) -> MarketResult<ActorId> {
        let addr = Address::Bls(self.key.public_key());
        self.chain.lookup_id(&addr).await?.ok_or_else(|| {
            MarketError::BadDeal(format!(
                "the client key's account {addr} is not on chain yet: send it funds first (`lode wallet send {addr} <amount>`)"
            ))
        })
    }

    /// A provider's endpoints and keys, from its miner's chain record.
    ///
    /// # Errors
    /// [`MarketError::Node`] when the miner cannot be read (not a miner); [`MarketError::Provider`].
    pub async fn provider(&self, miner: ActorId) -> MarketResult<ProviderAddrs> {
        let info = self.chain.miner_info(miner).await?;
        ProviderAddrs::from_miner_info(&info)
    }

    /// The provider's storage ask, checked ([`query_ask`]).
    ///
    /// # Errors
    /// As [`query_ask`].
    pub async fn query_ask(&self, provider: &ProviderAddrs) -> MarketResult<SignedAsk> {
        query_ask(&self.chain, &self.host, provider).await
    }

    /// Proposes a deal to `miner`: its ask read and checked, the proposal built and signed, the
    /// escrow checked, the payload served (for [`TransferChoice::Serve`]), the request recorded
    /// (`proposed`) and sent, the signed answer checked. Accepted: the record moves to
    /// `transferring` and the deal is returned (keep [`ProposedDeal::served`] until it is
    /// published). Rejected: the record fails with the provider's reason, and so does this.
    ///
    /// # Errors
    /// [`MarketError::Rejected`] with the provider's reason; [`MarketError::InsufficientEscrow`];
    /// [`MarketError::BadDeal`]; what [`DealClient::query_ask`] returns; [`MarketError::Net`]
    /// when the request gets no answer (the record then fails with that reason).
    pub async fn propose(
        &self,
        miner: ActorId,
        piece: &PieceSpec,
        terms: &DealTerms,
        transfer: TransferChoice,
    ) -> MarketResult<ProposedDeal> {
        let client = self.client_id().await?;
        let provider = self.provider(miner).await?;
        let addrs = provider.dial_addrs()?;
        let signed_ask = self.query_ask(&provider).await?;
        let policy = self.chain.policy().await?;
        let head = self.chain.head_epoch().await?;
        let collateral_min = self.chain.provider_collateral_min(piece.piece_size).await?;
        let proposal = build_proposal(
            piece,
            terms,
            &ProposalFacts {
                client,
                provider: &provider,
                ask: &signed_ask.ask,
                head,
                policy: &policy,
                collateral_min,
            },
        )?;
        let lock = proposal
            .client_lock()
            .ok_or_else(|| MarketError::BadDeal("the deal's total price overflows".into()))?;
        let escrow = self.chain.market_balance(client).await?;
        let pending = pending_lock(&self.deals.list()?, head);
        check_escrow(&escrow, TokenAmount(lock.0.saturating_add(pending.0)))?;

        let (spec, record_transfer, served) = match transfer {
            TransferChoice::Serve {
                listen,
                public_host,
            } => {
                let car = piece.car("serving the payload")?;
                let served = serve_file(car, listen, public_host.as_deref()).await?;
                let url = served.url().to_string();
                (
                    TransferSpec::Http {
                        url: url.clone(),
                        payload_size: piece.payload_size,
                    },
                    ClientTransfer::Served { url },
                    Some(served),
                )
            }
            TransferChoice::Url(url) => (
                TransferSpec::Http {
                    url: url.clone(),
                    payload_size: piece.payload_size,
                },
                ClientTransfer::Url { url },
                None,
            ),
            TransferChoice::Push => {
                piece.car("pushing the payload")?;
                (
                    TransferSpec::Push {
                        payload_size: piece.payload_size,
                    },
                    ClientTransfer::Push,
                    None,
                )
            }
        };
        let request = DealRequest {
            uuid: DealUuid::new_random(),
            proposal: sign_proposal(proposal, &policy.network, &self.key),
            transfer: spec,
        };
        let mut deal = ClientDeal::new(
            request.uuid,
            request.proposal.clone(),
            piece.payload_size,
            piece.payload_root,
            piece.import_id,
            record_transfer,
        )?;
        self.deals.put(&mut deal)?;
        tracing::info!(uuid = %deal.uuid, provider = %miner, piece = %deal.piece_cid, "proposing a deal");

        let answer = match self
            .host
            .propose_deal(provider.peer_id, addrs, &request)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                deal.fail(format!("the provider did not answer the proposal: {e}"));
                self.deals.put(&mut deal)?;
                return Err(e);
            }
        };
        let decision = match answer.check_for(&request, &policy.network, &provider.worker_key) {
            Ok(d) => d.clone(),
            Err(e) => {
                deal.fail(format!("the provider's answer is not valid: {e}"));
                self.deals.put(&mut deal)?;
                return Err(e);
            }
        };
        match decision {
            DealDecision::Accepted => {
                deal.set_state(ClientDealState::Transferring);
                self.deals.put(&mut deal)?;
                Ok(ProposedDeal {
                    deal,
                    provider,
                    served,
                })
            }
            DealDecision::Rejected(rejection) => {
                deal.fail(format!("rejected by the provider: {rejection}"));
                self.deals.put(&mut deal)?;
                Err(MarketError::Rejected(rejection))
            }
        }
    }

    /// Pushes an accepted push deal's payload (`car`) over `/lode/transfer/1`, resuming after
    /// broken connections; on failure the record fails with the reason.
    ///
    /// # Errors
    /// What [`MarketHost::push_payload`] returns.
    pub async fn push(
        &self,
        proposed: &mut ProposedDeal,
        car: &Path,
        options: PushOptions,
    ) -> MarketResult<()> {
        let deal = &mut proposed.deal;
        let result = self
            .host
            .push_payload(
                proposed.provider.peer_id,
                proposed.provider.dial_addrs()?,
                deal.uuid,
                car,
                deal.payload_size,
                options,
            )
            .await;
        if let Err(e) = &result {
            deal.fail(format!("pushing the payload failed: {e}"));
            self.deals.put(deal)?;
        }
        result
    }

    /// Waits until deal `uuid` is found on chain (or fails, or `timeout` passes), checking every
    /// `poll`; `on_poll` gets the record and the head after each check. Returns the record as it
    /// stands: `published` (or further) with its deal id, `failed` with the reason, or still
    /// `transferring` after the timeout. A check that fails (the node unreachable for a moment)
    /// is logged and tried again.
    ///
    /// # Errors
    /// The last check's error when checks still fail at the timeout.
    pub async fn wait_published(
        &self,
        uuid: &DealUuid,
        timeout: Duration,
        poll: Duration,
        on_poll: &mut (dyn FnMut(&ClientDeal, Epoch) + Send),
    ) -> MarketResult<ClientDeal> {
        let started = Instant::now();
        loop {
            let checked = async {
                let head = self.chain.head_epoch().await?;
                let deal = self.deals.get(uuid)?;
                let deal = refresh_deal(
                    &self.chain,
                    &self.deals,
                    deal,
                    head,
                    &mut Lookups::default(),
                )
                .await?;
                Ok::<_, MarketError>((deal, head))
            }
            .await;
            match checked {
                Ok((deal, head)) => {
                    on_poll(&deal, head);
                    if !deal.state.is_unpublished() || started.elapsed() >= timeout {
                        return Ok(deal);
                    }
                }
                // A node that does not answer for a moment does not end the wait; at the
                // timeout the last error is the answer.
                Err(e) if started.elapsed() >= timeout => return Err(e),
                Err(e) => tracing::warn!(%uuid, error = %e, "cannot check the deal on chain now"),
            }
            tokio::time::sleep(poll.min(timeout.saturating_sub(started.elapsed()))).await;
        }
    }
}

/// Deal listings already read during one refresh, by (provider, client).
#[derive(Default)]
pub struct Lookups {
    listed: HashMap<(ActorId, ActorId), Vec<DealView>>,
    claimed: HashSet<DealId>,
}

/// Brings every live record up to date with the chain and returns them all, oldest first.
///
/// # Errors
/// What the chain or the records return.
pub async fn refresh_deals<C: ClientChain>(
    chain: &C,
    store: &ClientDealStore,
) -> MarketResult<Vec<ClientDeal>> {
    let head = chain.head_epoch().await?;
    let deals = store.list()?;
    let mut lookups = Lookups {
        claimed: deals.iter().filter_map(|d| d.deal_id).collect(),
        ..Lookups::default()
    };
    let mut out = Vec::with_capacity(deals.len());
    for deal in deals {
        out.push(refresh_deal(chain, store, deal, head, &mut lookups).await?);
    }
    Ok(out)
}

/// Brings one record up to date with the chain at `head` (written when it changed):
///
/// - not yet published (`proposed`, `transferring`): looked for among the provider's published
///   deals with this client by its exact proposal (the chain publishes a proposal once) —
///   found: `published` (or `active`) with its deal id; not found once the start epoch has
///   passed: `failed`;
/// - published: `active` (sector, activation epoch) once its sector is proven, else `sealing`;
///   gone from the chain: `expired` at or after its end epoch, `slashed` before it when it was
///   active, `failed` (not activated by its start epoch) when it never was.
///
/// # Errors
/// What the chain or the records return.
pub async fn refresh_deal<C: ClientChain>(
    chain: &C,
    store: &ClientDealStore,
    deal: ClientDeal,
    head: Epoch,
    lookups: &mut Lookups,
) -> MarketResult<ClientDeal> {
    let mut next = deal.clone();
    let p = &deal.proposal.proposal;
    match deal.deal_id {
        None if deal.state.is_unpublished() => {
            let key = (p.provider, p.client);
            if let std::collections::hash_map::Entry::Vacant(slot) = lookups.listed.entry(key) {
                slot.insert(all_deals(chain, Some(p.provider), Some(p.client)).await?);
            }
            let found = lookups.listed.get(&key).and_then(|views| {
                views.iter().find(|v| {
                    !lookups.claimed.contains(&v.deal_id)
                        && v.to_deal().is_ok_and(|d| d.proposal == *p)
                })
            });
            match found {
                Some(view) => {
                    lookups.claimed.insert(view.deal_id);
                    next.deal_id = Some(view.deal_id);
                    next.set_state(ClientDealState::Published);
                    apply_active(&mut next, view);
                }
                None if head >= p.start_epoch => next.fail(format!(
                    "not published by its start epoch {} (the chain is at {head}): the provider did not publish it (a failed transfer, or data that did not match the piece CID; `lode provider deals` on its side says why)",
                    p.start_epoch
                )),
                None => {}
            }
        }
        Some(id) if deal.state.is_live() => match chain.market_deal(id).await? {
            Some(view) => {
                if !apply_active(&mut next, &view) {
                    next.set_state(ClientDealState::Sealing);
                }
            }
            None if deal.state == ClientDealState::Active => {
                if head >= p.end_epoch {
                    next.set_state(ClientDealState::Expired);
                } else {
                    next.set_state(ClientDealState::Slashed);
                    next.reason = Some(format!(
                        "the deal left the chain at epoch {head}, before its end at {}: its sector was terminated (your remaining payment was returned to your escrow)",
                        p.end_epoch
                    ));
                }
            }
            None => next.fail(format!(
                "the deal is no longer on chain (epoch {head}) and was never seen active: it was not activated by its start epoch {} (the provider's collateral was burnt, your funds unlocked)",
                p.start_epoch
            )),
        },
        _ => {}
    }
    if next != deal {
        store.put(&mut next)?;
    }
    Ok(next)
}

/// Marks `deal` active when `view` is; returns whether it is.
fn apply_active(deal: &mut ClientDeal, view: &DealView) -> bool {
    if view.sector.is_some() || view.state == "active" {
        deal.set_state(ClientDealState::Active);
        deal.sector = view.sector;
        deal.activation_epoch = view.activation_epoch;
        true
    } else {
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use libp2p::PeerId;

    use super::*;
    use crate::deal::tests::ask;

    fn provider() -> ProviderAddrs {
        ProviderAddrs {
            miner: ActorId(1000),
            peer_id: PeerId::random(),
            libp2p: vec![],
            retrieval_url: None,
            worker_key: SecretKey::from_seed(&[1; 32]).public_key(),
            sector_size: 2048,
        }
    }

    fn piece() -> PieceSpec {
        PieceSpec {
            piece_cid: PieceCid::new(lode_proofs::node::trunc254([5; 32])).unwrap(),
            piece_size: 2048,
            payload_size: 2000,
            payload_root: None,
            import_id: None,
            car: None,
        }
    }

    fn policy() -> Policy {
        let mut p = Policy::devnet();
        p.deal_min_duration = 100;
        p
    }

    fn build(terms: &DealTerms) -> MarketResult<DealProposal> {
        let provider = provider();
        let ask = ask();
        let policy = policy();
        build_proposal(
            &piece(),
            terms,
            &ProposalFacts {
                client: ActorId(100),
                provider: &provider,
                ask: &ask,
                head: 50,
                policy: &policy,
                collateral_min: TokenAmount(1000),
            },
        )
    }

    #[test]
    fn a_proposal_takes_the_asks_price_and_the_defaults() {
        let p = build(&DealTerms::new(1000)).unwrap();
        assert_eq!(p.piece_cid, piece().piece_cid.comm_p().0);
        assert_eq!((p.client, p.provider), (ActorId(100), ActorId(1000)));
        assert_eq!(p.start_epoch, 50 + policy().wpost_proving_period());
        assert_eq!(p.end_epoch, p.start_epoch + 1000);
        // The ask: 2^30 per GiB per epoch, a 2 KiB piece.
        assert_eq!(p.price_per_epoch, TokenAmount(2048));
        assert_eq!(p.provider_collateral, TokenAmount(1200));
        assert_eq!(p.client_collateral, TokenAmount::ZERO);
        assert_eq!(p.label, piece().piece_cid.to_string());
        let mut terms = DealTerms::new(1000);
        terms.verified = true;
        terms.start_epoch = Some(400);
        terms.price_per_gib_epoch = Some(TokenAmount(1 << 31));
        let p = build(&terms).unwrap();
        assert!(p.verified);
        assert_eq!(p.start_epoch, 400);
        assert_eq!(p.price_per_epoch, TokenAmount(4096));
    }

    #[test]
    fn what_the_client_can_check_it_refuses_with_the_reason() {
        let refused = |f: &dyn Fn(&mut DealTerms), needle: &str| {
            let mut t = DealTerms::new(1000);
            f(&mut t);
            let e = build(&t).unwrap_err();
            assert!(matches!(e, MarketError::BadDeal(_)), "{e}");
            assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
        };
        refused(&|t| t.duration = 10, "must last");
        refused(&|t| t.duration = 20_000, "must last");
        refused(&|t| t.start_epoch = Some(50), "not in the future");
        refused(&|t| t.label = Some("x".repeat(300)), "label");
        refused(&|t| t.price_per_gib_epoch = Some(TokenAmount(1)), "below");
        refused(&|t| t.provider_collateral = Some(TokenAmount(999)), "floor");
        refused(&|t| t.client_collateral = TokenAmount(u128::MAX), "cap");
        let provider = provider();
        let policy = policy();
        let mut big_ask = ask();
        big_ask.max_piece_size = 1 << 20;
        let mut big = piece();
        big.piece_size = 4096;
        let facts = ProposalFacts {
            client: ActorId(100),
            provider: &provider,
            ask: &big_ask,
            head: 50,
            policy: &policy,
            collateral_min: TokenAmount::ZERO,
        };
        let e = build_proposal(&big, &DealTerms::new(1000), &facts).unwrap_err();
        assert!(e.to_string().contains("sectors"), "{e}");
        let mut too_full = piece();
        too_full.payload_size = 2033;
        let e = build_proposal(&too_full, &DealTerms::new(1000), &facts).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
    }

    #[test]
    fn the_escrow_check_names_the_command_to_run() {
        let escrow = EscrowView {
            balance: TokenAmount::tokens(3),
            locked: TokenAmount::tokens(2),
            available: TokenAmount::tokens(1),
        };
        check_escrow(&escrow, TokenAmount::tokens(1)).unwrap();
        let needed = TokenAmount(TokenAmount::tokens(2).0 + 500_000_000_000_000_000);
        let e = check_escrow(&escrow, needed).unwrap_err();
        assert!(
            e.to_string().contains("`lode client balance add 1.5`"),
            "{e}"
        );
        assert_eq!(amount_arg(TokenAmount(1)), "0.000000000000000001");
        assert_eq!(
            amount_arg(TokenAmount(1)).parse::<TokenAmount>().unwrap(),
            TokenAmount(1)
        );
    }

    #[test]
    fn the_collateral_margin_rounds_up() {
        assert_eq!(with_margin(TokenAmount(5)), TokenAmount(6));
        assert_eq!(with_margin(TokenAmount(1)), TokenAmount(2));
        assert_eq!(with_margin(TokenAmount::ZERO), TokenAmount::ZERO);
        assert_eq!(with_margin(TokenAmount(u128::MAX)), TokenAmount(u128::MAX));
    }
}
