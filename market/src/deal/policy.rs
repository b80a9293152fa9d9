//! The provider's deal policy: whether to take a proposed deal, as a pure function
//! ([`evaluate`]) of the request, the provider's ask and configuration, and the facts read from
//! the chain and the sealing pipeline ([`DealFacts`], gathered through [`ChainView`] by
//! [`gather_facts`]).
//!
//! A deal is accepted only when every check passes; the first that fails is the [`Rejection`],
//! whose `Display` is what the client prints. The checks, in order: the deal is for this
//! provider; the client is allowed (allow list, deny list) and known on chain; the label fits;
//! the client's signature verifies; the piece commitment is a valid node; the piece size is a
//! power of two ≥ 128 within the ask's bounds and the sector size; the payload fits the piece's
//! unpadded size; the transfer is one this provider takes; the start epoch is at least
//! `start_epoch_margin` epochs ahead of the head; the duration is within the chain's bounds and
//! the ask's maximum; verified-only providers take only verified deals; the price is at least
//! the ask's (the verified price for verified deals); the client's free escrow covers
//! [`DealProposal::client_lock`] on top of what its deals already accepted here will lock; a
//! verified deal's client has the DataCap for the piece; the sealing pipeline has room for it.

use std::collections::BTreeSet;
use std::future::Future;

use lode_chain::actors::market::{Deal, DealProposal, Escrow};
use lode_chain::crypto::PublicKey;
use lode_chain::policy::Policy;
use lode_chain::types::{ActorId, DealId, Epoch, TokenAmount};
use lode_proofs::node::Node;
use lode_proofs::piece::PaddedPieceSize;
use serde::{Deserialize, Serialize};

use super::{DealRequest, StorageAsk, TransferSpec};
use crate::error::MarketResult;

/// Why a provider refused a deal. `Display` is the sentence the client prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// The request could not be decoded.
    #[error("the provider could not decode the deal request: {0}")]
    Malformed(String),
    /// The proposal names another provider.
    #[error("the proposal is for provider {proposed}, but this is provider {ours}")]
    WrongProvider {
        /// The proposal's provider.
        proposed: ActorId,
        /// This provider.
        ours: ActorId,
    },
    /// The client is not on the provider's allow list.
    #[error("this provider takes deals only from its allowed clients, and {0} is not one")]
    ClientNotAllowed(ActorId),
    /// The client is on the provider's deny list.
    #[error("this provider does not take deals from {0}")]
    ClientDenied(ActorId),
    /// The client has no account key on chain.
    #[error("client {0} is not an account on chain: fund it first")]
    UnknownClient(ActorId),
    /// The label is too long.
    #[error("the label is {len} bytes; at most {max} are allowed")]
    LabelTooLong {
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The client's signature does not verify.
    #[error("the client's signature does not verify for this proposal on network {network:?}")]
    BadSignature {
        /// The network the signature was checked for.
        network: String,
    },
    /// The piece commitment is not a valid node.
    #[error("the piece CID's commitment is not a valid tree node")]
    InvalidPieceCid,
    /// The piece size is not a power of two of at least 128 bytes.
    #[error("piece size {0} is not a power of two of at least 128 bytes")]
    InvalidPieceSize(u64),
    /// The piece size is outside what the ask and the sector size allow.
    #[error("piece size {size} is outside the {min}..={max} bytes this provider takes")]
    PieceSizeOutOfRange {
        /// The proposal's piece size.
        size: u64,
        /// The least taken.
        min: u64,
        /// The most taken (the ask's maximum, at most the sector size).
        max: u64,
    },
    /// The payload does not fit the piece.
    #[error(
        "a payload of {payload} bytes does not fit a piece of {piece} bytes (at most {capacity} unpadded)"
    )]
    PayloadTooLarge {
        /// The payload's size.
        payload: u64,
        /// The piece size.
        piece: u64,
        /// The piece's unpadded capacity.
        capacity: u64,
    },
    /// The transfer is not one this provider takes.
    #[error("transfer refused: {0}")]
    TransferRefused(String),
    /// The deal starts too soon.
    #[error(
        "the deal starts at epoch {start}, too soon: the chain is at {head} and this provider needs it to start at {earliest} or later"
    )]
    StartTooSoon {
        /// The proposal's start epoch.
        start: Epoch,
        /// The head.
        head: Epoch,
        /// The earliest start this provider takes.
        earliest: Epoch,
    },
    /// The deal's duration is outside the allowed range.
    #[error("the deal lasts {duration} epochs; it must last {min} to {max} epochs")]
    Duration {
        /// The proposal's duration.
        duration: u64,
        /// The chain's minimum.
        min: u64,
        /// The smaller of the chain's and the ask's maximum.
        max: u64,
    },
    /// The provider takes verified deals only.
    #[error("this provider takes verified deals only: propose with DataCap (--verified)")]
    VerifiedOnly,
    /// The price is below the ask.
    #[error(
        "the price of {price} per epoch is below this provider's ask of {min} per epoch for this piece"
    )]
    PriceBelowAsk {
        /// The proposal's price per epoch.
        price: TokenAmount,
        /// The least this ask takes.
        min: TokenAmount,
    },
    /// The proposal's provider collateral is below what the chain asks of a deal of its size.
    #[error(
        "the provider collateral of {given} is below the chain's minimum of {min} for this piece size (it grows with the circulating supply: propose with a margin above `state_dealCollateralBounds`)"
    )]
    CollateralTooLow {
        /// The proposal's provider collateral.
        given: TokenAmount,
        /// The chain's minimum now.
        min: TokenAmount,
    },
    /// The client's escrow does not cover the deal.
    #[error(
        "the client's free market escrow is {free}, but this deal locks {needed}: add to the escrow first"
    )]
    InsufficientEscrow {
        /// What the deal (and the client's other deals accepted here) lock.
        needed: TokenAmount,
        /// The client's escrow not yet locked.
        free: TokenAmount,
    },
    /// A verified deal's client lacks the DataCap.
    #[error("the client has {has} bytes of DataCap; this verified deal needs {needed}")]
    InsufficientDataCap {
        /// The piece size.
        needed: u64,
        /// The client's DataCap.
        has: u128,
    },
    /// The sealing pipeline has no room.
    #[error(
        "this provider has no sealing capacity for {needed} more bytes now ({free} free): try later"
    )]
    NoCapacity {
        /// The piece size.
        needed: u64,
        /// Free bytes.
        free: u64,
    },
    /// A deal with this UUID (another proposal) already exists.
    #[error("deal {0} already exists with another proposal: choose a new UUID")]
    DuplicateUuid(String),
    /// The provider could not check the proposal now (its node is unreachable, …).
    #[error("the provider cannot check the deal now ({0}): try again later")]
    Unavailable(String),
}

/// What the provider's operator configures about the deals it takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DealPolicyConfig {
    /// How many epochs after the head a deal must start at the earliest: room to fetch the
    /// data, publish the deal and seal the sector.
    pub start_epoch_margin: u64,
    /// When set, only these clients' deals are taken.
    pub allowed_clients: Option<BTreeSet<ActorId>>,
    /// These clients' deals are never taken.
    pub denied_clients: BTreeSet<ActorId>,
    /// Take verified deals only.
    pub verified_only: bool,
    /// Take deals whose data the provider pulls over HTTP.
    pub accept_http: bool,
    /// Take deals whose data the client pushes over libp2p.
    pub accept_push: bool,
}

impl Default for DealPolicyConfig {
    fn default() -> Self {
        DealPolicyConfig {
            start_epoch_margin: 100,
            allowed_clients: None,
            denied_clients: BTreeSet::new(),
            verified_only: false,
            accept_http: true,
            accept_push: true,
        }
    }
}

/// What the policy needs to know beyond the request: read from the chain and the pipeline.
#[derive(Clone, Debug)]
pub struct DealFacts {
    /// The chain's head epoch.
    pub head: Epoch,
    /// The chain's rules (network name, deal duration bounds, label size).
    pub policy: Policy,
    /// The client's account key, if it is an account.
    pub client_key: Option<PublicKey>,
    /// The client's market escrow.
    pub client_escrow: Escrow,
    /// What the client's deals accepted by this provider and not yet published will lock.
    pub client_pending_lock: TokenAmount,
    /// The client's DataCap (`None`: not a verified client).
    pub client_datacap: Option<u128>,
    /// The provider's sector size in bytes.
    pub sector_size: u64,
    /// Bytes the sealing pipeline can still take, minus pieces accepted and not handed to it.
    pub free_capacity: u64,
    /// The least provider collateral the chain takes for this piece now (`None`: the view
    /// cannot say; the chain checks it at publication).
    pub provider_collateral_min: Option<TokenAmount>,
}

/// Decides on a deal request: `Ok(())` to accept it, else the first [`Rejection`].
///
/// Pure: everything it reads is in its arguments.
///
/// # Errors
/// The [`Rejection`].
pub fn evaluate(
    config: &DealPolicyConfig,
    ask: &StorageAsk,
    ours: ActorId,
    facts: &DealFacts,
    request: &DealRequest,
) -> Result<(), Rejection> {
    let d: &DealProposal = &request.proposal.proposal;
    if d.provider != ours {
        return Err(Rejection::WrongProvider {
            proposed: d.provider,
            ours,
        });
    }
    if let Some(allowed) = &config.allowed_clients
        && !allowed.contains(&d.client)
    {
        return Err(Rejection::ClientNotAllowed(d.client));
    }
    if config.denied_clients.contains(&d.client) {
        return Err(Rejection::ClientDenied(d.client));
    }
    let label_len = u64::try_from(d.label.len()).unwrap_or(u64::MAX);
    if label_len > facts.policy.deal_max_label_size {
        return Err(Rejection::LabelTooLong {
            len: label_len,
            max: facts.policy.deal_max_label_size,
        });
    }
    let Some(key) = &facts.client_key else {
        return Err(Rejection::UnknownClient(d.client));
    };
    let network = &facts.policy.network;
    if key
        .verify(
            &d.signing_bytes(network),
            &request.proposal.client_signature,
        )
        .is_err()
    {
        return Err(Rejection::BadSignature {
            network: network.clone(),
        });
    }
    if !Node(d.piece_cid).is_trunc254() {
        return Err(Rejection::InvalidPieceCid);
    }
    let Ok(piece) = PaddedPieceSize::new(d.piece_size) else {
        return Err(Rejection::InvalidPieceSize(d.piece_size));
    };
    let max = ask.max_piece_size.min(facts.sector_size);
    if d.piece_size < ask.min_piece_size || d.piece_size > max {
        return Err(Rejection::PieceSizeOutOfRange {
            size: d.piece_size,
            min: ask.min_piece_size,
            max,
        });
    }
    let payload = request.transfer.payload_size();
    if payload > piece.unpadded() {
        return Err(Rejection::PayloadTooLarge {
            payload,
            piece: d.piece_size,
            capacity: piece.unpadded(),
        });
    }
    check_transfer(config, &request.transfer)?;
    let earliest = facts.head.saturating_add(config.start_epoch_margin);
    if d.start_epoch < earliest {
        return Err(Rejection::StartTooSoon {
            start: d.start_epoch,
            head: facts.head,
            earliest,
        });
    }
    let min_duration = facts.policy.deal_min_duration;
    let max_duration = facts.policy.deal_max_duration.min(ask.max_duration);
    if d.end_epoch <= d.start_epoch || d.duration() < min_duration || d.duration() > max_duration {
        return Err(Rejection::Duration {
            duration: d.duration(),
            min: min_duration,
            max: max_duration,
        });
    }
    if config.verified_only && !d.verified {
        return Err(Rejection::VerifiedOnly);
    }
    let min_price = ask.min_price_per_epoch(d.piece_size, d.verified);
    match min_price {
        Some(min) if d.price_per_epoch >= min => {}
        _ => {
            return Err(Rejection::PriceBelowAsk {
                price: d.price_per_epoch,
                min: min_price.unwrap_or(TokenAmount(u128::MAX)),
            });
        }
    }
    if let Some(min) = facts.provider_collateral_min
        && d.provider_collateral < min
    {
        return Err(Rejection::CollateralTooLow {
            given: d.provider_collateral,
            min,
        });
    }
    let free = facts
        .client_escrow
        .balance
        .saturating_sub(facts.client_escrow.locked);
    let needed = d
        .client_lock()
        .and_then(|lock| lock.checked_add(facts.client_pending_lock));
    match needed {
        Some(needed) if needed <= free => {}
        _ => {
            return Err(Rejection::InsufficientEscrow {
                needed: needed.unwrap_or(TokenAmount(u128::MAX)),
                free,
            });
        }
    }
    if d.verified {
        let has = facts.client_datacap.unwrap_or(0);
        if has < u128::from(d.piece_size) {
            return Err(Rejection::InsufficientDataCap {
                needed: d.piece_size,
                has,
            });
        }
    }
    if d.piece_size > facts.free_capacity {
        return Err(Rejection::NoCapacity {
            needed: d.piece_size,
            free: facts.free_capacity,
        });
    }
    Ok(())
}

/// The longest transfer URL taken.
pub const MAX_URL_LEN: usize = 2048;

fn check_transfer(config: &DealPolicyConfig, transfer: &TransferSpec) -> Result<(), Rejection> {
    match transfer {
        TransferSpec::Http { url, .. } => {
            if !config.accept_http {
                return Err(Rejection::TransferRefused(
                    "this provider does not pull data over HTTP: push it over libp2p".into(),
                ));
            }
            if url.len() > MAX_URL_LEN {
                return Err(Rejection::TransferRefused(format!(
                    "the URL is {} bytes long; at most {MAX_URL_LEN} are taken",
                    url.len()
                )));
            }
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
                Ok(u) => Err(Rejection::TransferRefused(format!(
                    "{url:?}: only http:// and https:// URLs with a host are taken, not {}:",
                    u.scheme()
                ))),
                Err(e) => Err(Rejection::TransferRefused(format!(
                    "{url:?} is not a URL: {e}"
                ))),
            }
        }
        TransferSpec::Push { .. } => {
            if config.accept_push {
                Ok(())
            } else {
                Err(Rejection::TransferRefused(
                    "this provider does not take libp2p pushes: serve the data over HTTP".into(),
                ))
            }
        }
    }
}

/// What the provider reads from the chain: implemented over the node's RPC
/// ([`lode_node::rpc::client::NodeClient`], in [`crate::deal::chain`]) and by fakes in tests.
pub trait ChainView: Send + Sync + 'static {
    /// The head epoch.
    fn head_epoch(&self) -> impl Future<Output = MarketResult<Epoch>> + Send;
    /// The chain's rules (the network's name among them).
    fn policy(&self) -> impl Future<Output = MarketResult<Policy>> + Send;
    /// An account's BLS key (`None`: no such account).
    fn account_key(
        &self,
        account: ActorId,
    ) -> impl Future<Output = MarketResult<Option<PublicKey>>> + Send;
    /// A party's market escrow (zero when it has none).
    fn market_escrow(&self, owner: ActorId) -> impl Future<Output = MarketResult<Escrow>> + Send;
    /// A client's DataCap in bytes (`None`: not a verified client).
    fn verified_datacap(
        &self,
        client: ActorId,
    ) -> impl Future<Output = MarketResult<Option<u128>>> + Send;
    /// A published deal and its state (`None`: no such deal, or no longer on chain).
    fn market_deal(&self, id: DealId) -> impl Future<Output = MarketResult<Option<Deal>>> + Send;
    /// The least provider collateral a deal of `piece_size` needs if published now (`None`: this
    /// view cannot say, the default).
    fn provider_collateral_min(
        &self,
        piece_size: u64,
    ) -> impl Future<Output = MarketResult<Option<TokenAmount>>> + Send {
        let _ = piece_size;
        async { Ok(None) }
    }
}

/// Reads the [`DealFacts`] for `request` from `view`; `pending_lock`, `sector_size` and
/// `free_capacity` come from the provider itself.
///
/// # Errors
/// What the view returns (the caller turns it into [`Rejection::Unavailable`]).
pub async fn gather_facts<V: ChainView>(
    view: &V,
    request: &DealRequest,
    pending_lock: TokenAmount,
    sector_size: u64,
    free_capacity: u64,
) -> MarketResult<DealFacts> {
    let client = request.proposal.proposal.client;
    let head = view.head_epoch().await?;
    let policy = view.policy().await?;
    let client_key = view.account_key(client).await?;
    let client_escrow = view.market_escrow(client).await?;
    let client_datacap = if request.proposal.proposal.verified {
        view.verified_datacap(client).await?
    } else {
        None
    };
    let provider_collateral_min = view
        .provider_collateral_min(request.proposal.proposal.piece_size)
        .await?;
    Ok(DealFacts {
        head,
        policy,
        client_key,
        client_escrow,
        client_pending_lock: pending_lock,
        client_datacap,
        sector_size,
        free_capacity,
        provider_collateral_min,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use lode_chain::actors::market::ClientDealProposal;
    use lode_chain::crypto::SecretKey;

    use super::*;
    use crate::deal::tests::{ask, key};
    use crate::deal::{DealUuid, TransferSpec};

    const OURS: ActorId = ActorId(1000);
    const CLIENT: ActorId = ActorId(100);

    fn client_key() -> SecretKey {
        key(7)
    }

    fn facts() -> DealFacts {
        let mut policy = Policy::devnet();
        policy.deal_min_duration = 10;
        policy.deal_max_duration = 100_000;
        DealFacts {
            head: 100,
            policy,
            client_key: Some(client_key().public_key()),
            client_escrow: Escrow {
                balance: TokenAmount(10_000_000),
                locked: TokenAmount(0),
            },
            client_pending_lock: TokenAmount(0),
            client_datacap: None,
            sector_size: 2048,
            free_capacity: 1 << 20,
            provider_collateral_min: None,
        }
    }

    #[test]
    fn a_provider_collateral_below_the_chains_minimum_is_refused() {
        let mut f = facts();
        let mut d = proposal();
        d.provider_collateral = TokenAmount(99);
        f.provider_collateral_min = Some(TokenAmount(100));
        let r = evaluate(
            &DealPolicyConfig::default(),
            &ask(),
            OURS,
            &f,
            &signed(d.clone()),
        );
        assert_eq!(
            r,
            Err(Rejection::CollateralTooLow {
                given: TokenAmount(99),
                min: TokenAmount(100)
            })
        );
        d.provider_collateral = TokenAmount(100);
        assert_eq!(
            evaluate(&DealPolicyConfig::default(), &ask(), OURS, &f, &signed(d)),
            Ok(())
        );
    }

    fn proposal() -> DealProposal {
        DealProposal {
            piece_cid: [1; 32],
            piece_size: 2048,
            verified: false,
            client: CLIENT,
            provider: OURS,
            label: "a label".into(),
            start_epoch: 300,
            end_epoch: 1300,
            price_per_epoch: TokenAmount(2048),
            provider_collateral: TokenAmount(0),
            client_collateral: TokenAmount(5),
        }
    }

    fn signed(p: DealProposal) -> DealRequest {
        let client_signature = client_key().sign(&p.signing_bytes("devnet"));
        DealRequest {
            uuid: DealUuid::new_random(),
            proposal: ClientDealProposal {
                proposal: p,
                client_signature,
            },
            transfer: TransferSpec::Http {
                url: "http://example.invalid/piece".into(),
                payload_size: 2000,
            },
        }
    }

    fn check(p: DealProposal) -> Result<(), Rejection> {
        evaluate(
            &DealPolicyConfig::default(),
            &ask(),
            OURS,
            &facts(),
            &signed(p),
        )
    }

    fn with(f: impl FnOnce(&mut DealProposal)) -> Result<(), Rejection> {
        let mut p = proposal();
        f(&mut p);
        check(p)
    }

    #[test]
    fn a_good_proposal_is_accepted() {
        check(proposal()).unwrap();
        // A verified deal at the verified price (zero) with DataCap.
        let mut p = proposal();
        p.verified = true;
        p.price_per_epoch = TokenAmount(0);
        let mut f = facts();
        f.client_datacap = Some(2048);
        evaluate(&DealPolicyConfig::default(), &ask(), OURS, &f, &signed(p)).unwrap();
    }

    #[test]
    fn bad_signature() {
        let mut req = signed(proposal());
        req.proposal.proposal.price_per_epoch = TokenAmount(1_000_000);
        let e = evaluate(&DealPolicyConfig::default(), &ask(), OURS, &facts(), &req);
        assert!(matches!(e, Err(Rejection::BadSignature { .. })), "{e:?}");
        // Signed by another key.
        let mut req = signed(proposal());
        req.proposal.client_signature = key(8).sign(&proposal().signing_bytes("devnet"));
        let e = evaluate(&DealPolicyConfig::default(), &ask(), OURS, &facts(), &req);
        assert!(matches!(e, Err(Rejection::BadSignature { .. })), "{e:?}");
        // Signed for another network.
        let mut req = signed(proposal());
        req.proposal.client_signature = client_key().sign(&proposal().signing_bytes("mainnet"));
        let e = evaluate(&DealPolicyConfig::default(), &ask(), OURS, &facts(), &req);
        assert!(matches!(e, Err(Rejection::BadSignature { .. })), "{e:?}");
    }

    #[test]
    fn unknown_client() {
        let mut f = facts();
        f.client_key = None;
        let e = evaluate(
            &DealPolicyConfig::default(),
            &ask(),
            OURS,
            &f,
            &signed(proposal()),
        );
        assert_eq!(e, Err(Rejection::UnknownClient(CLIENT)));
    }

    #[test]
    fn wrong_provider() {
        let e = with(|p| p.provider = ActorId(1001));
        assert!(matches!(e, Err(Rejection::WrongProvider { .. })), "{e:?}");
    }

    #[test]
    fn wrong_piece_sizes() {
        assert_eq!(
            with(|p| p.piece_size = 3000),
            Err(Rejection::InvalidPieceSize(3000))
        );
        assert_eq!(
            with(|p| p.piece_size = 64),
            Err(Rejection::InvalidPieceSize(64))
        );
        assert_eq!(
            with(|p| p.piece_size = 0),
            Err(Rejection::InvalidPieceSize(0))
        );
        // Larger than the sector.
        let e = with(|p| p.piece_size = 4096);
        assert!(
            matches!(
                e,
                Err(Rejection::PieceSizeOutOfRange {
                    size: 4096,
                    max: 2048,
                    ..
                })
            ),
            "{e:?}"
        );
        // Smaller than the ask's minimum.
        let mut a = ask();
        a.min_piece_size = 1024;
        let mut p = proposal();
        p.piece_size = 512;
        let mut req = signed(p);
        req.transfer = TransferSpec::Http {
            url: "http://x.invalid/".into(),
            payload_size: 100,
        };
        let e = evaluate(&DealPolicyConfig::default(), &a, OURS, &facts(), &req);
        assert!(
            matches!(e, Err(Rejection::PieceSizeOutOfRange { size: 512, .. })),
            "{e:?}"
        );
    }

    #[test]
    fn invalid_piece_cid() {
        assert_eq!(
            with(|p| p.piece_cid = [0xff; 32]),
            Err(Rejection::InvalidPieceCid)
        );
    }

    #[test]
    fn payload_larger_than_the_piece() {
        let mut req = signed(proposal());
        req.transfer = TransferSpec::Http {
            url: "http://x.invalid/".into(),
            payload_size: 2033,
        };
        let e = evaluate(&DealPolicyConfig::default(), &ask(), OURS, &facts(), &req);
        assert!(
            matches!(
                e,
                Err(Rejection::PayloadTooLarge {
                    payload: 2033,
                    capacity: 2032,
                    ..
                })
            ),
            "{e:?}"
        );
        // Exactly the unpadded size is fine.
        req.transfer = TransferSpec::Http {
            url: "http://x.invalid/".into(),
            payload_size: 2032,
        };
        evaluate(&DealPolicyConfig::default(), &ask(), OURS, &facts(), &req).unwrap();
    }

    #[test]
    fn transfers_refused() {
        for url in ["ftp://x.invalid/a", "not a url", "file:///etc/passwd"] {
            let mut req = signed(proposal());
            req.transfer = TransferSpec::Http {
                url: url.into(),
                payload_size: 10,
            };
            let e = evaluate(&DealPolicyConfig::default(), &ask(), OURS, &facts(), &req);
            assert!(
                matches!(e, Err(Rejection::TransferRefused(_))),
                "{url}: {e:?}"
            );
        }
        let mut req = signed(proposal());
        req.transfer = TransferSpec::Http {
            url: format!("http://x.invalid/{}", "a".repeat(MAX_URL_LEN)),
            payload_size: 10,
        };
        let e = evaluate(&DealPolicyConfig::default(), &ask(), OURS, &facts(), &req);
        assert!(matches!(e, Err(Rejection::TransferRefused(_))), "{e:?}");
        let mut req = signed(proposal());
        req.transfer = TransferSpec::Push { payload_size: 10 };
        evaluate(&DealPolicyConfig::default(), &ask(), OURS, &facts(), &req).unwrap();
        let no_push = DealPolicyConfig {
            accept_push: false,
            ..DealPolicyConfig::default()
        };
        let e = evaluate(&no_push, &ask(), OURS, &facts(), &req);
        assert!(matches!(e, Err(Rejection::TransferRefused(_))), "{e:?}");
        let config = DealPolicyConfig {
            accept_push: true,
            accept_http: false,
            ..DealPolicyConfig::default()
        };
        evaluate(&config, &ask(), OURS, &facts(), &req).unwrap();
        let e = evaluate(&config, &ask(), OURS, &facts(), &signed(proposal()));
        assert!(matches!(e, Err(Rejection::TransferRefused(_))), "{e:?}");
    }

    #[test]
    fn start_epoch_in_the_past_or_too_soon() {
        let e = with(|p| p.start_epoch = 50);
        assert!(
            matches!(
                e,
                Err(Rejection::StartTooSoon {
                    start: 50,
                    head: 100,
                    earliest: 200
                })
            ),
            "{e:?}"
        );
        let e = with(|p| p.start_epoch = 199);
        assert!(matches!(e, Err(Rejection::StartTooSoon { .. })), "{e:?}");
        with(|p| p.start_epoch = 200).unwrap();
    }

    #[test]
    fn durations() {
        let e = with(|p| p.end_epoch = p.start_epoch);
        assert!(matches!(e, Err(Rejection::Duration { .. })), "{e:?}");
        let e = with(|p| p.end_epoch = p.start_epoch + 5);
        assert!(
            matches!(e, Err(Rejection::Duration { min: 10, .. })),
            "{e:?}"
        );
        // The ask's maximum is 10,000.
        let e = with(|p| p.end_epoch = p.start_epoch + 10_001);
        assert!(
            matches!(
                e,
                Err(Rejection::Duration {
                    duration: 10_001,
                    max: 10_000,
                    ..
                })
            ),
            "{e:?}"
        );
    }

    #[test]
    fn price_below_the_ask() {
        let e = with(|p| p.price_per_epoch = TokenAmount(2047));
        assert_eq!(
            e,
            Err(Rejection::PriceBelowAsk {
                price: TokenAmount(2047),
                min: TokenAmount(2048)
            })
        );
        // A verified deal is held to the verified price.
        let mut a = ask();
        a.verified_price_per_gib_epoch = TokenAmount(1 << 31);
        let mut p = proposal();
        p.verified = true;
        let mut f = facts();
        f.client_datacap = Some(1 << 20);
        let e = evaluate(&DealPolicyConfig::default(), &a, OURS, &f, &signed(p));
        assert!(matches!(e, Err(Rejection::PriceBelowAsk { .. })), "{e:?}");
    }

    #[test]
    fn insufficient_escrow() {
        // Locks 2048 × 1000 + 5.
        let mut f = facts();
        f.client_escrow = Escrow {
            balance: TokenAmount(3_000_000),
            locked: TokenAmount(1_000_000),
        };
        let e = evaluate(
            &DealPolicyConfig::default(),
            &ask(),
            OURS,
            &f,
            &signed(proposal()),
        );
        assert_eq!(
            e,
            Err(Rejection::InsufficientEscrow {
                needed: TokenAmount(2_048_005),
                free: TokenAmount(2_000_000)
            })
        );
        f.client_escrow.locked = TokenAmount(951_995);
        evaluate(
            &DealPolicyConfig::default(),
            &ask(),
            OURS,
            &f,
            &signed(proposal()),
        )
        .unwrap();
        // Deals accepted here and not yet published count too.
        f.client_pending_lock = TokenAmount(1);
        let e = evaluate(
            &DealPolicyConfig::default(),
            &ask(),
            OURS,
            &f,
            &signed(proposal()),
        );
        assert!(
            matches!(e, Err(Rejection::InsufficientEscrow { .. })),
            "{e:?}"
        );
        // An overflowing fee is refused, not wrapped.
        let e = with(|p| p.price_per_epoch = TokenAmount(u128::MAX / 2));
        assert!(
            matches!(e, Err(Rejection::InsufficientEscrow { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn oversized_label() {
        let e = with(|p| p.label = "x".repeat(257));
        assert_eq!(e, Err(Rejection::LabelTooLong { len: 257, max: 256 }));
        with(|p| p.label = "x".repeat(256)).unwrap();
    }

    #[test]
    fn allow_and_deny_lists() {
        let mut config = DealPolicyConfig {
            allowed_clients: Some([ActorId(5)].into()),
            ..DealPolicyConfig::default()
        };
        let e = evaluate(&config, &ask(), OURS, &facts(), &signed(proposal()));
        assert_eq!(e, Err(Rejection::ClientNotAllowed(CLIENT)));
        config.allowed_clients = Some([CLIENT].into());
        evaluate(&config, &ask(), OURS, &facts(), &signed(proposal())).unwrap();
        config.denied_clients.insert(CLIENT);
        let e = evaluate(&config, &ask(), OURS, &facts(), &signed(proposal()));
        assert_eq!(e, Err(Rejection::ClientDenied(CLIENT)));
    }

    #[test]
    fn verified_only_and_datacap() {
        let config = DealPolicyConfig {
            verified_only: true,
            ..DealPolicyConfig::default()
        };
        let e = evaluate(&config, &ask(), OURS, &facts(), &signed(proposal()));
        assert_eq!(e, Err(Rejection::VerifiedOnly));
        let mut p = proposal();
        p.verified = true;
        let mut f = facts();
        f.client_datacap = Some(2047);
        let e = evaluate(&config, &ask(), OURS, &f, &signed(p.clone()));
        assert_eq!(
            e,
            Err(Rejection::InsufficientDataCap {
                needed: 2048,
                has: 2047
            })
        );
        f.client_datacap = None;
        let e = evaluate(&config, &ask(), OURS, &f, &signed(p.clone()));
        assert!(
            matches!(e, Err(Rejection::InsufficientDataCap { has: 0, .. })),
            "{e:?}"
        );
        f.client_datacap = Some(2048);
        evaluate(&config, &ask(), OURS, &f, &signed(p)).unwrap();
    }

    #[test]
    fn no_capacity() {
        let mut f = facts();
        f.free_capacity = 1024;
        let e = evaluate(
            &DealPolicyConfig::default(),
            &ask(),
            OURS,
            &f,
            &signed(proposal()),
        );
        assert_eq!(
            e,
            Err(Rejection::NoCapacity {
                needed: 2048,
                free: 1024
            })
        );
    }

    #[test]
    fn rejections_read_as_sentences() {
        let r = Rejection::PriceBelowAsk {
            price: TokenAmount(1),
            min: TokenAmount(2),
        };
        assert!(r.to_string().contains("below this provider's ask"));
        let r = Rejection::InsufficientEscrow {
            needed: TokenAmount(2),
            free: TokenAmount(1),
        };
        assert!(r.to_string().contains("add to the escrow"));
    }

    #[test]
    fn policy_config_is_strict() {
        let c: DealPolicyConfig =
            serde_json::from_str(r#"{"verified_only":true,"denied_clients":[7]}"#).unwrap();
        assert!(c.verified_only && c.denied_clients.contains(&ActorId(7)));
        assert!(serde_json::from_str::<DealPolicyConfig>(r#"{"verified_onyl":true}"#).is_err());
    }
}
