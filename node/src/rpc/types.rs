//! What the RPC methods take and return: one serde type per result, shared by the server (which
//! builds them) and the [client](super::client) (which parses them), so the two cannot drift.
//!
//! JSON conventions: hashes, block ids, keys and commitments are lowercase hex strings; actors are
//! addresses (`l0<id>`, `l3<bls key hex>`); token amounts are decimal strings of atto units (as
//! [`TokenAmount`] serialises); power and weights (`u128`) are decimal strings too, because JSON
//! numbers lose precision past 2^53; epochs, counts and nonces are numbers.

use lode_chain::Policy;
use lode_chain::crypto::PublicKey;
use lode_chain::message::{Message, SignedMessage};
use lode_chain::types::{ActorId, Address, DealId, Epoch, SectorNumber, TokenAmount};
use lode_proofs::sector::SectorSize;
use serde::{Deserialize, Serialize};

/// An address that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Neither `l0` nor `l3`.
    #[error("{0:?} is not an address: use l0<id> or l3<bls public key hex>")]
    Prefix(String),
    /// `l0` not followed by a decimal `u64`.
    #[error("{0:?} is not an id address: l0 must be followed by a decimal number")]
    Id(String),
    /// `l3` not followed by a valid BLS public key.
    #[error("{addr:?} is not a key address: {why}")]
    Key {
        /// The text given.
        addr: String,
        /// What is wrong with the key.
        why: String,
    },
}

/// Parses `l0<id>` or `l3<hex of a 48-byte BLS public key>` (the forms [`Address`] displays).
///
/// # Errors
/// [`AddressError`] naming what is wrong.
pub fn parse_address(s: &str) -> Result<Address, AddressError> {
    if let Some(digits) = s.strip_prefix("l0") {
        parse_id_digits(digits)
            .map(|id| Address::Id(ActorId(id)))
            .ok_or_else(|| AddressError::Id(s.to_string()))
    } else if let Some(key) = s.strip_prefix("l3") {
        let bytes = hex::decode(key).map_err(|e| AddressError::Key {
            addr: s.to_string(),
            why: e.to_string(),
        })?;
        PublicKey::from_bytes(&bytes)
            .map(Address::Bls)
            .map_err(|e| AddressError::Key {
                addr: s.to_string(),
                why: e.to_string(),
            })
    } else {
        Err(AddressError::Prefix(s.to_string()))
    }
}

/// Parses an actor id address (`l0<id>`).
///
/// # Errors
/// [`AddressError`] for anything else, key addresses included.
pub fn parse_actor_id(s: &str) -> Result<ActorId, AddressError> {
    match parse_address(s)? {
        Address::Id(id) => Ok(id),
        Address::Bls(_) => Err(AddressError::Id(s.to_string())),
    }
}

fn parse_id_digits(digits: &str) -> Option<u64> {
    // `u64::from_str` accepts a leading `+`: only plain digits name an actor.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Decodes 64 hex characters into 32 bytes.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|e| format!("{s:?} is not a 32-byte hex hash: {e}"))?;
    Ok(out)
}

/// Serde helpers for the JSON forms above.
pub mod serde_hex {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// `[u8; 32]` as 64 hex characters.
    pub mod hash {
        use super::*;

        /// Serialises.
        pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&hex::encode(v))
        }

        /// Deserialises.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
            let s = String::deserialize(d)?;
            crate::rpc::types::parse_hash(&s).map_err(D::Error::custom)
        }
    }

    /// `Vec<[u8; 32]>` as a list of hex strings.
    pub mod hashes {
        use super::*;

        /// Serialises.
        pub fn serialize<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(hex::encode))
        }

        /// Deserialises.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
            let v = Vec::<String>::deserialize(d)?;
            v.iter()
                .map(|s| crate::rpc::types::parse_hash(s).map_err(D::Error::custom))
                .collect()
        }
    }

    /// `Option<[u8; 32]>` as a hex string or null.
    pub mod opt_hash {
        use super::*;

        /// Serialises.
        pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(h) => s.serialize_some(&hex::encode(h)),
                None => s.serialize_none(),
            }
        }

        /// Deserialises.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| crate::rpc::types::parse_hash(&s).map_err(D::Error::custom))
                .transpose()
        }
    }

    /// Bytes as a hex string.
    pub mod bytes {
        use super::*;

        /// Serialises.
        pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&hex::encode(v))
        }

        /// Deserialises.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            let s = String::deserialize(d)?;
            hex::decode(&s).map_err(D::Error::custom)
        }
    }

    /// A value as its `Display` string, parsed back with `FromStr` (`u128` as decimal).
    pub mod string {
        use super::*;

        /// Serialises.
        pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(v)
        }

        /// Deserialises.
        pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
        where
            T: FromStr,
            T::Err: Display,
            D: Deserializer<'de>,
        {
            let s = String::deserialize(d)?;
            s.parse().map_err(D::Error::custom)
        }
    }

    /// An [`ActorId`](lode_chain::types::ActorId) as its address, `l0<id>`.
    pub mod actor {
        use lode_chain::types::ActorId;

        use super::*;

        /// Serialises.
        pub fn serialize<S: Serializer>(v: &ActorId, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(v)
        }

        /// Deserialises.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ActorId, D::Error> {
            let s = String::deserialize(d)?;
            crate::rpc::types::parse_actor_id(&s).map_err(D::Error::custom)
        }
    }

    /// An [`Address`](lode_chain::types::Address) as `l0<id>` or `l3<key hex>`.
    pub mod address {
        use lode_chain::types::Address;

        use super::*;

        /// Serialises.
        pub fn serialize<S: Serializer>(v: &Address, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(v)
        }

        /// Deserialises.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
            let s = String::deserialize(d)?;
            crate::rpc::types::parse_address(&s).map_err(D::Error::custom)
        }
    }
}

/// A 32-byte hash as hex (`mpool_push`'s message id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hash(#[serde(with = "serde_hex::hash")] pub [u8; 32]);

/// An actor id as its address `l0<id>` (`state_lookupId`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdAddress(#[serde(with = "serde_hex::actor")] pub ActorId);

/// Raw and quality-adjusted power, bytes (decimal strings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Power {
    /// Raw bytes.
    #[serde(with = "serde_hex::string")]
    pub raw: u128,
    /// Quality-adjusted bytes.
    #[serde(with = "serde_hex::string")]
    pub qa: u128,
}

impl From<lode_chain::types::PowerPair> for Power {
    fn from(p: lode_chain::types::PowerPair) -> Self {
        Power {
            raw: p.raw,
            qa: p.qa,
        }
    }
}

/// `chain_head`: the head tipset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadInfo {
    /// Its epoch.
    pub epoch: Epoch,
    /// Its key: the sorted ids of its blocks (empty for genesis).
    #[serde(with = "serde_hex::hashes")]
    pub key: Vec<[u8; 32]>,
    /// Its weight.
    #[serde(with = "serde_hex::string")]
    pub weight: u128,
    /// The state root its blocks were made on (the state after the parent tipset and any null
    /// rounds since); `null` for genesis.
    #[serde(with = "serde_hex::opt_hash")]
    pub parent_state_root: Option<[u8; 32]>,
    /// The state root after it.
    #[serde(with = "serde_hex::opt_hash")]
    pub state_root: Option<[u8; 32]>,
}

/// A block header's fields, for reading.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderInfo {
    /// The block id.
    #[serde(with = "serde_hex::hash")]
    pub id: [u8; 32],
    /// Epoch.
    pub epoch: Epoch,
    /// The winning miner.
    #[serde(with = "serde_hex::actor")]
    pub miner: ActorId,
    /// The ticket's digest (what orders tipsets and seeds beacons).
    #[serde(with = "serde_hex::hash")]
    pub ticket_digest: [u8; 32],
    /// Win count.
    pub win_count: u64,
    /// Parent block ids.
    #[serde(with = "serde_hex::hashes")]
    pub parents: Vec<[u8; 32]>,
    /// The parent tipset's weight.
    #[serde(with = "serde_hex::string")]
    pub parent_weight: u128,
    /// The state root before this epoch.
    #[serde(with = "serde_hex::hash")]
    pub parent_state_root: [u8; 32],
    /// The epoch's beacon.
    #[serde(with = "serde_hex::hash")]
    pub beacon: [u8; 32],
    /// The messages root.
    #[serde(with = "serde_hex::hash")]
    pub messages_root: [u8; 32],
    /// How many messages the block carries.
    pub messages: u64,
    /// Unix seconds (the epoch's slot).
    pub timestamp: u64,
}

impl HeaderInfo {
    /// The fields of `block`'s header.
    pub fn of(block: &crate::wire::FullBlock) -> Self {
        let h = &block.header;
        HeaderInfo {
            id: h.id(),
            epoch: h.epoch,
            miner: h.miner,
            ticket_digest: h.ticket_digest(),
            win_count: h.win_count,
            parents: h.parents.clone(),
            parent_weight: h.parent_weight,
            parent_state_root: h.parent_state_root,
            beacon: h.beacon,
            messages_root: h.messages_root,
            messages: block.messages.len() as u64,
            timestamp: h.timestamp,
        }
    }
}

/// `chain_tipsetByHeight`: a canonical tipset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TipsetInfo {
    /// Its epoch.
    pub epoch: Epoch,
    /// Its key (sorted block ids; empty for genesis).
    #[serde(with = "serde_hex::hashes")]
    pub key: Vec<[u8; 32]>,
    /// The parent tipset's key.
    #[serde(with = "serde_hex::hashes")]
    pub parents: Vec<[u8; 32]>,
    /// Its weight (once applied).
    #[serde(with = "serde_hex::string")]
    pub weight: u128,
    /// Its blocks, in key order.
    pub blocks: Vec<HeaderInfo>,
    /// The state root its blocks were made on; `null` for genesis.
    #[serde(with = "serde_hex::opt_hash")]
    pub parent_state_root: Option<[u8; 32]>,
    /// The state root after it.
    #[serde(with = "serde_hex::opt_hash")]
    pub state_root: Option<[u8; 32]>,
}

/// `chain_getBlock`: a header and its messages' ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// The header.
    pub header: HeaderInfo,
    /// Its messages' ids, in order.
    #[serde(with = "serde_hex::hashes")]
    pub messages: Vec<[u8; 32]>,
}

/// A block's message and its id (`chain_getMessages`): unsigned, as blocks carry messages (the
/// block's aggregate signature covers them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMessageInfo {
    /// The message id (the same as the signed message's, which `mpool_push` returned).
    #[serde(with = "serde_hex::hash")]
    pub id: [u8; 32],
    /// The message as the chain's JSON encoding has it.
    pub message: Message,
}

impl BlockMessageInfo {
    /// `m` with its id.
    pub fn of(m: Message) -> Self {
        BlockMessageInfo {
            id: m.id(),
            message: m,
        }
    }
}

/// A signed message and its id (`mpool_pending`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageInfo {
    /// The message id.
    #[serde(with = "serde_hex::hash")]
    pub id: [u8; 32],
    /// The message as the chain's JSON encoding has it (what `mpool_push` accepts).
    pub message: SignedMessage,
}

impl MessageInfo {
    /// `m` with its id.
    pub fn of(m: SignedMessage) -> Self {
        MessageInfo {
            id: m.id(),
            message: m,
        }
    }
}

/// `chain_genesis`: the network's genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisInfo {
    /// The genesis id.
    #[serde(with = "serde_hex::hash")]
    pub id: [u8; 32],
    /// The network's name.
    pub network: String,
    /// Unix time of epoch 0.
    pub timestamp: u64,
    /// The rules.
    pub policy: Policy,
}

/// `state_actor`: an actor's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorInfo {
    /// Its id address.
    #[serde(with = "serde_hex::actor")]
    pub id: ActorId,
    /// What it is: `account`, `miner`, `system`, `reward`, `power`, `market`,
    /// `verified_registry`, `burnt_funds`, `compute`.
    pub kind: String,
    /// An account's BLS key (hex); `null` for other actors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its balance.
    pub balance: TokenAmount,
    /// Messages it has sent (accounts).
    pub nonce: u64,
}

/// `state_minerPower`: a miner's power and the network's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerPowerInfo {
    /// The miner.
    #[serde(with = "serde_hex::actor")]
    pub miner: ActorId,
    /// Its claim (zero without one).
    pub power: Power,
    /// The network's consensus totals (what elections divide by).
    pub network: Power,
    /// Whether its power counts for consensus (the minimum-power rule).
    pub meets_consensus_minimum: bool,
}

/// `state_networkPower`: the power actor's totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPowerInfo {
    /// Consensus totals: the sum over miners above the minimum, or over all while too few are.
    pub total: Power,
    /// Sum of all claims.
    pub committed: Power,
    /// Sum of the claims of miners above the minimum.
    pub above_minimum: Power,
    /// Miners.
    pub miner_count: u64,
    /// Miners above the minimum.
    pub miners_above_minimum: u64,
    /// The smoothed QA power estimate, bytes.
    #[serde(with = "serde_hex::string")]
    pub qa_estimate: u128,
    /// Tokens locked by all miners.
    pub total_locked: TokenAmount,
}

/// `state_minerInfo`: who controls a miner, what it seals, its money and proving position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerInfoView {
    /// The miner.
    #[serde(with = "serde_hex::actor")]
    pub miner: ActorId,
    /// The owner account.
    #[serde(with = "serde_hex::actor")]
    pub owner: ActorId,
    /// The worker account (signs blocks and proofs).
    #[serde(with = "serde_hex::actor")]
    pub worker: ActorId,
    /// The worker's BLS key.
    #[serde(with = "serde_hex::bytes")]
    pub worker_key: Vec<u8>,
    /// Sector size.
    pub sector_size: SectorSize,
    /// Sector size in bytes.
    pub sector_size_bytes: u64,
    /// Sectors per Window PoSt partition.
    pub partition_sectors: u64,
    /// The libp2p peer id where its services (the deal market) answer, when announced and valid.
    pub peer_id: Option<String>,
    /// The multiaddresses announced with it (those that decode).
    pub multiaddrs: Vec<String>,
    /// Balance.
    pub balance: TokenAmount,
    /// Balance not locked (what it could withdraw, before fee debt).
    pub available: TokenAmount,
    /// Pre-commit deposits.
    pub pre_commit_deposits: TokenAmount,
    /// Initial pledge of its live sectors.
    pub initial_pledge: TokenAmount,
    /// Rewards still vesting.
    pub locked_funds: TokenAmount,
    /// Penalties not yet paid.
    pub fee_debt: TokenAmount,
    /// Start of the current proving period.
    pub proving_period_start: Epoch,
    /// The deadline whose end the chain processes next.
    pub current_deadline: u64,
    /// Until this epoch it may not win blocks after a consensus fault.
    pub consensus_fault_elapsed: Option<Epoch>,
}

/// `state_marketBalance`: an actor's escrow in the storage market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowView {
    /// Everything deposited and not withdrawn or paid out.
    pub balance: TokenAmount,
    /// The part committed to deals (collateral and fees not yet paid).
    pub locked: TokenAmount,
    /// `balance − locked`: what new deals may lock, or what may be withdrawn.
    pub available: TokenAmount,
}

/// `state_dealCollateralBounds`: the amounts a deal of a piece size may carry, at the head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollateralBoundsView {
    /// The padded piece size asked about.
    pub piece_size: u64,
    /// The least provider collateral the market takes now: a fraction of the circulating supply,
    /// pro rata of the piece over the network's power (it grows with the supply: a client
    /// proposes a margin above it).
    pub provider_min: TokenAmount,
    /// The most a deal's price per epoch and each of its collaterals may be.
    pub max: TokenAmount,
}

/// `state_marketDeal`, `state_marketDeals`: a published deal and its progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealView {
    /// The deal id.
    pub deal_id: DealId,
    /// The piece CID (`b…`).
    pub piece_cid: String,
    /// Padded piece size in bytes.
    pub piece_size: u64,
    /// Whether the client pays with DataCap.
    pub verified: bool,
    /// The client.
    #[serde(with = "serde_hex::actor")]
    pub client: ActorId,
    /// The provider (miner).
    #[serde(with = "serde_hex::actor")]
    pub provider: ActorId,
    /// The label.
    pub label: String,
    /// The deal must be active by this epoch.
    pub start_epoch: Epoch,
    /// The deal ends here.
    pub end_epoch: Epoch,
    /// Price per epoch.
    pub price_per_epoch: TokenAmount,
    /// Provider collateral.
    pub provider_collateral: TokenAmount,
    /// Client collateral.
    pub client_collateral: TokenAmount,
    /// `published` (waiting for its sector's prove-commit) or `active`.
    pub state: String,
    /// The sector holding it, once active.
    pub sector: Option<SectorNumber>,
    /// When it became active.
    pub activation_epoch: Option<Epoch>,
    /// The provider has been paid up to this epoch.
    pub paid_until: Epoch,
    /// Its verified allocation, for a verified deal.
    pub allocation: Option<u64>,
}

impl DealView {
    /// The chain's record of the deal this view shows (`last_updated` is the paid-until epoch once
    /// the deal is active).
    ///
    /// # Errors
    /// The view's piece CID is not a piece CID (a node of another version?).
    pub fn to_deal(&self) -> Result<lode_chain::actors::market::Deal, lode_proofs::cid::CidError> {
        use lode_chain::actors::market::{Deal, DealProposal, DealState};
        let piece: lode_proofs::cid::PieceCid = self.piece_cid.parse()?;
        Ok(Deal {
            proposal: DealProposal {
                piece_cid: piece.comm_p().0,
                piece_size: self.piece_size,
                verified: self.verified,
                client: self.client,
                provider: self.provider,
                label: self.label.clone(),
                start_epoch: self.start_epoch,
                end_epoch: self.end_epoch,
                price_per_epoch: self.price_per_epoch,
                provider_collateral: self.provider_collateral,
                client_collateral: self.client_collateral,
            },
            state: DealState {
                sector: self.sector,
                activation_epoch: self.activation_epoch,
                last_updated: self.activation_epoch.map(|_| self.paid_until),
                allocation: self.allocation,
            },
        })
    }
}

/// One live sector of a miner (`state_minerSectors`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorInfo {
    /// Sector number.
    pub sector_number: SectorNumber,
    /// Its `comm_r`.
    #[serde(with = "serde_hex::hash")]
    pub comm_r: [u8; 32],
    /// `active` (proven, has power), `unproven` (waiting for its first Window PoSt), `faulty`
    /// or `recovering` (faulty, declared recovered).
    pub status: String,
    /// Activation epoch.
    pub activation: Epoch,
    /// Expiration epoch.
    pub expiration: Epoch,
    /// Deals it stores.
    pub deal_ids: Vec<DealId>,
    /// Unverified deal bytes × duration.
    #[serde(with = "serde_hex::string")]
    pub deal_weight: u128,
    /// Verified deal bytes × duration.
    #[serde(with = "serde_hex::string")]
    pub verified_deal_weight: u128,
    /// Its initial pledge.
    pub initial_pledge: TokenAmount,
    /// The deadline it is proven in.
    pub deadline: u64,
    /// Its partition in that deadline.
    pub partition: u64,
}

/// Where a message was executed on the canonical chain (`state_searchMsg`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageLookupInfo {
    /// The epoch of the tipset that executed it.
    pub epoch: Epoch,
    /// That tipset's block ids.
    #[serde(with = "serde_hex::hashes")]
    pub tipset: Vec<[u8; 32]>,
    /// What executing it gave.
    pub receipt: ReceiptInfo,
}

/// A message's receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptInfo {
    /// The exit code's number (0 is success).
    pub exit_code: u32,
    /// The exit code's name (`Ok`, `InsufficientFunds`, …).
    pub exit: String,
    /// Gas charged.
    pub gas_used: u64,
    /// The fee paid (burnt).
    pub fee: TokenAmount,
    /// The method's return value (postcard), hex; empty on failure.
    #[serde(with = "serde_hex::bytes")]
    pub return_data: Vec<u8>,
    /// Why it failed; empty on success.
    pub error: String,
}

impl ReceiptInfo {
    /// Whether the message succeeded.
    pub fn ok(&self) -> bool {
        self.exit_code == 0
    }
}

impl From<lode_chain::message::Receipt> for ReceiptInfo {
    fn from(r: lode_chain::message::Receipt) -> Self {
        ReceiptInfo {
            exit_code: r.exit_code as u32,
            exit: format!("{:?}", r.exit_code),
            gas_used: r.gas_used,
            fee: r.fee,
            return_data: r.return_data,
            error: r.error,
        }
    }
}

/// A pre-committed sector waiting for its proof (`state_minerPreCommits`), with the randomness a
/// sealer needs: the ticket, and the seed once its epoch is on chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCommitView {
    /// Sector number.
    pub sector_number: SectorNumber,
    /// Its `comm_r`.
    #[serde(with = "serde_hex::hash")]
    pub comm_r: [u8; 32],
    /// Its `comm_d`.
    #[serde(with = "serde_hex::hash")]
    pub comm_d: [u8; 32],
    /// Deals it stores.
    pub deal_ids: Vec<DealId>,
    /// Requested expiration.
    pub expiration: Epoch,
    /// The epoch whose randomness is the ticket.
    pub seal_rand_epoch: Epoch,
    /// The ticket (from `seal_rand_epoch`).
    #[serde(with = "serde_hex::hash")]
    pub ticket: [u8; 32],
    /// The epoch the pre-commit landed.
    pub epoch: Epoch,
    /// Its deposit.
    pub deposit: TokenAmount,
    /// The epoch whose randomness is the interactive seed; the prove-commit is accepted after it.
    pub seed_epoch: Epoch,
    /// The seed, once `seed_epoch` is on chain.
    #[serde(with = "serde_hex::opt_hash")]
    pub seed: Option<[u8; 32]>,
    /// The last epoch a prove-commit is accepted.
    pub prove_by: Epoch,
}

/// A sector as a PoSt names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorRefInfo {
    /// Sector number.
    pub sector_number: SectorNumber,
    /// Its `comm_r`.
    #[serde(with = "serde_hex::hash")]
    pub comm_r: [u8; 32],
}

/// One partition of a deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Index within the deadline.
    pub index: u64,
    /// Live sectors.
    pub sectors: Vec<SectorRefInfo>,
    /// Faulty sector numbers.
    pub faults: Vec<SectorNumber>,
    /// Faulty sectors declared recovered.
    pub recoveries: Vec<SectorNumber>,
}

/// One deadline of a miner with partitions, at its next (or current) challenge window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineInfoView {
    /// Deadline index.
    pub index: u64,
    /// First epoch of the window.
    pub open: Epoch,
    /// First epoch after the window.
    pub close: Epoch,
    /// The epoch whose randomness challenges it.
    pub challenge: Epoch,
    /// Faults and recoveries for it must land before this epoch.
    pub fault_cutoff: Epoch,
    /// The Window PoSt randomness, once the challenge epoch is on chain.
    #[serde(with = "serde_hex::opt_hash")]
    pub randomness: Option<[u8; 32]>,
    /// Partitions already proven in the current window.
    pub posted: Vec<u64>,
    /// Its partitions.
    pub partitions: Vec<PartitionInfo>,
}

/// The timing of one deadline instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineTiming {
    /// Deadline index.
    pub index: u64,
    /// First epoch of the window.
    pub open: Epoch,
    /// First epoch after the window.
    pub close: Epoch,
    /// The epoch whose randomness challenges it.
    pub challenge: Epoch,
    /// Faults and recoveries must be declared before this epoch.
    pub fault_cutoff: Epoch,
}

/// `state_minerDeadlines`: what a miner's prover needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerDeadlinesInfo {
    /// The miner.
    #[serde(with = "serde_hex::actor")]
    pub miner: ActorId,
    /// The head's epoch.
    pub head_epoch: Epoch,
    /// Sector size.
    pub sector_size: SectorSize,
    /// The worker account (signs PoSt messages).
    #[serde(with = "serde_hex::actor")]
    pub worker: ActorId,
    /// Start of the proving period the chain is in for this miner.
    pub proving_period_start: Epoch,
    /// Deadlines per proving period.
    pub period_deadlines: u64,
    /// The deadline whose end the chain processes next, with its window.
    pub current: DeadlineTiming,
    /// Every deadline with partitions, at its next window not closed at `head_epoch + 1`.
    pub deadlines: Vec<DeadlineInfoView>,
}

/// `mpool_push`'s argument: the hex of a signed message's postcard encoding, or its JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageParam {
    /// Hex of the postcard encoding.
    Hex(String),
    /// The chain's JSON encoding of a [`SignedMessage`].
    Json(Box<SignedMessage>),
}

/// A connected peer (`net_peers`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    /// Its peer id.
    pub peer_id: String,
    /// The remote addresses of its open connections.
    pub addresses: Vec<String>,
    /// The addresses it listens on (identify).
    pub listen_addrs: Vec<String>,
    /// Its gossipsub score.
    pub score: Option<f64>,
    /// Its agent version.
    pub agent_version: Option<String>,
    /// Its protocols.
    pub protocols: Vec<String>,
    /// The last ping round trip, milliseconds.
    pub rtt_ms: Option<f64>,
    /// The gossip topics it subscribes to.
    pub topics: Vec<String>,
    /// The topics for which it is in this node's mesh.
    pub mesh_topics: Vec<String>,
}

impl From<crate::net::PeerInfo> for PeerView {
    fn from(p: crate::net::PeerInfo) -> Self {
        PeerView {
            peer_id: p.peer_id.to_string(),
            addresses: p.addresses.iter().map(ToString::to_string).collect(),
            listen_addrs: p.listen_addrs.iter().map(ToString::to_string).collect(),
            score: p.score,
            agent_version: p.agent_version,
            protocols: p.protocols,
            rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
            topics: p.topics,
            mesh_topics: p.mesh_topics,
        }
    }
}

/// `net_info`: this node's identity on the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInfo {
    /// Its peer id.
    pub peer_id: String,
    /// Its listen addresses, each ending in `/p2p/<peer id>` (dialable as they are).
    pub listen_addrs: Vec<String>,
}

/// `sync_status`: how far this node's chain is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatusInfo {
    /// The genesis id.
    #[serde(with = "serde_hex::hash")]
    pub genesis: [u8; 32],
    /// The head's key.
    #[serde(with = "serde_hex::hashes")]
    pub head: Vec<[u8; 32]>,
    /// The head's epoch.
    pub epoch: Epoch,
    /// The head's weight.
    #[serde(with = "serde_hex::string")]
    pub weight: u128,
    /// The epoch the clock says the network is at.
    pub clock_epoch: Epoch,
    /// `clock_epoch − epoch` (null rounds count too: a small lag is normal).
    pub lag: u64,
    /// Connected peers.
    pub peers: u64,
}

/// `miner_submitBlock`: what became of the block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum SubmitVerdict {
    /// Valid, on the new head, and gossiped.
    Accepted,
    /// Stored on a fork no heavier than the head.
    Stored,
    /// Already known.
    Duplicate,
    /// Its parents are unknown to the node.
    NeedParents {
        /// The missing parent tipset's key.
        #[serde(with = "serde_hex::hashes")]
        parents: Vec<[u8; 32]>,
    },
    /// Invalid.
    Rejected {
        /// Why.
        reason: String,
    },
}

impl From<crate::core::BlockVerdict> for SubmitVerdict {
    fn from(v: crate::core::BlockVerdict) -> Self {
        use crate::core::BlockVerdict as V;
        match v {
            V::Accepted => SubmitVerdict::Accepted,
            V::Stored => SubmitVerdict::Stored,
            V::Duplicate => SubmitVerdict::Duplicate,
            V::NeedParents(key) => SubmitVerdict::NeedParents { parents: key.0 },
            V::Rejected(reason) => SubmitVerdict::Rejected { reason },
        }
    }
}

/// A head change, as `chain_subscribeHeads` notifies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadEventInfo {
    /// The new head's epoch.
    pub epoch: Epoch,
    /// Its key.
    #[serde(with = "serde_hex::hashes")]
    pub key: Vec<[u8; 32]>,
    /// Its weight.
    #[serde(with = "serde_hex::string")]
    pub weight: u128,
    /// Tipsets reverted to get there.
    pub reverted: u64,
    /// Tipsets applied.
    pub applied: u64,
}

impl From<crate::service::HeadEvent> for HeadEventInfo {
    fn from(e: crate::service::HeadEvent) -> Self {
        HeadEventInfo {
            epoch: e.epoch,
            // The service writes block ids as hex; anything else is left out.
            key: e.key.iter().filter_map(|k| parse_hash(k).ok()).collect(),
            weight: e.weight,
            reverted: e.reverted as u64,
            applied: e.applied as u64,
        }
    }
}

/// `node_version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The node's version (`lode-node` crate version).
    pub version: String,
    /// The RPC API's version ([`super::API_VERSION`]).
    pub api_version: u32,
    /// The network's name.
    pub network: String,
    /// The genesis id.
    #[serde(with = "serde_hex::hash")]
    pub genesis: [u8; 32],
}

/// The actor kind's name in [`ActorInfo::kind`].
pub fn kind_name(kind: &lode_chain::actor::ActorKind) -> &'static str {
    use lode_chain::actor::ActorKind as K;
    match kind {
        K::System => "system",
        K::Reward => "reward",
        K::Power => "power",
        K::Market => "market",
        K::VerifiedRegistry => "verified_registry",
        K::BurntFunds => "burnt_funds",
        K::Compute => "compute",
        K::Account { .. } => "account",
        K::Miner => "miner",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn job_terms_survive_their_json_view() {
        use lode_chain::actors::compute::{JobInput, JobLimits, JobTerms, Verification};
        let comm_p = lode_proofs::piece::zero_commitment(5);
        for verification in [
            Verification::Replicated { k: 3 },
            Verification::Verifier {
                verifier: ActorId(107),
                fee: TokenAmount::atto(5),
                bond: TokenAmount::atto(7),
            },
        ] {
            let t = JobTerms {
                module: [9; 32],
                entrypoint: "_start".into(),
                args: vec!["-w".into()],
                env: vec![("A".into(), "b".into())],
                inputs: vec![JobInput {
                    piece_cid: comm_p.0,
                    piece_size: 1024,
                    payload_size: 1000,
                    mount: "data/in.car".into(),
                }],
                limits: JobLimits {
                    fuel: 1,
                    memory_pages: 2,
                    timeout_ms: 4,
                    output_bytes: 3,
                    output_entries: 5,
                },
                payment: TokenAmount::atto(11),
                provider_collateral: TokenAmount::atto(13),
                providers: vec![ActorId(1000), ActorId(1001)],
                verification,
                deadline: 77,
            };
            let json = serde_json::to_string(&JobTermsView::of(&t)).unwrap();
            let back: JobTermsView = serde_json::from_str(&json).unwrap();
            assert_eq!(back.to_terms().unwrap(), t, "{json}");
        }
        let mut bad = JobTermsView::of(&JobTerms {
            module: [0; 32],
            entrypoint: "_start".into(),
            args: Vec::new(),
            env: Vec::new(),
            inputs: Vec::new(),
            limits: JobLimits {
                fuel: 1,
                memory_pages: 1,
                timeout_ms: 1,
                output_bytes: 1,
                output_entries: 1,
            },
            payment: TokenAmount::ZERO,
            provider_collateral: TokenAmount::ZERO,
            providers: Vec::new(),
            verification: Verification::Replicated { k: 1 },
            deadline: 1,
        });
        bad.providers = vec!["l3zz".into()];
        assert!(bad.to_terms().unwrap_err().contains("l3zz"));
    }

    #[test]
    fn addresses_parse_as_they_display() {
        assert_eq!(parse_address("l0100").unwrap(), Address::Id(ActorId(100)));
        let pk = lode_chain::crypto::SecretKey::from_seed(&[3; 32]).public_key();
        let a = Address::Bls(pk);
        assert_eq!(parse_address(&a.to_string()).unwrap(), a);
        for bad in [
            "",
            "l0",
            "l0+1",
            "l0-1",
            "l01x",
            "l1100",
            "100",
            "l3zz",
            "l300",
            "l0184467440737095516160",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
        assert!(parse_actor_id(&a.to_string()).is_err());
    }

    #[test]
    fn json_shapes() {
        let h = HeadInfo {
            epoch: 3,
            key: vec![[1; 32]],
            weight: u128::MAX,
            parent_state_root: None,
            state_root: Some([2; 32]),
        };
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["weight"], u128::MAX.to_string());
        assert_eq!(v["key"][0], hex::encode([1u8; 32]));
        assert!(v["parent_state_root"].is_null());
        assert_eq!(serde_json::from_value::<HeadInfo>(v).unwrap(), h);
        let verdict = SubmitVerdict::Rejected {
            reason: "no".into(),
        };
        let v = serde_json::to_value(&verdict).unwrap();
        assert_eq!(v["verdict"], "rejected");
        assert_eq!(serde_json::from_value::<SubmitVerdict>(v).unwrap(), verdict);
        assert!(serde_json::from_str::<HeadInfo>(r#"{"epoch":1,"key":["00"],"weight":"1","parent_state_root":null,"state_root":null}"#).is_err());
    }
}

/// An input piece of a compute job, as `state_computeJob` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInputView {
    /// The piece CID (`b…`).
    pub piece_cid: String,
    /// Padded piece size in bytes.
    pub piece_size: u64,
    /// The payload's length (the bytes mounted).
    pub payload_size: u64,
    /// Its path under `/inputs`.
    pub mount: String,
}

/// How a job's result is checked, in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationView {
    /// `k` replicas; a strict majority decides.
    Replicated {
        /// Replicas.
        k: u64,
    },
    /// One provider and a named verifier.
    Verifier {
        /// The verifier account.
        #[serde(with = "serde_hex::actor")]
        verifier: ActorId,
        /// The verifier's fee.
        fee: TokenAmount,
        /// The verifier's bond.
        bond: TokenAmount,
    },
}

/// A compute job's terms in JSON ([`lode_chain::actors::compute::JobTerms`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTermsView {
    /// BLAKE3 hash of the module, hex.
    #[serde(with = "serde_hex::hash")]
    pub module: [u8; 32],
    /// The entrypoint.
    pub entrypoint: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Input pieces.
    pub inputs: Vec<JobInputView>,
    /// Execution limits.
    pub limits: lode_chain::actors::compute::JobLimits,
    /// Paid to each provider whose result is final.
    pub payment: TokenAmount,
    /// What each provider locks.
    pub provider_collateral: TokenAmount,
    /// Named providers (`l0…`), empty for the first that accept.
    pub providers: Vec<String>,
    /// How the result is checked.
    pub verification: VerificationView,
    /// Last epoch to accept and to commit or post a result.
    pub deadline: Epoch,
}

impl JobTermsView {
    /// The view of `t`.
    pub fn of(t: &lode_chain::actors::compute::JobTerms) -> Self {
        use lode_chain::actors::compute::Verification;
        JobTermsView {
            module: t.module,
            entrypoint: t.entrypoint.clone(),
            args: t.args.clone(),
            env: t.env.clone(),
            inputs: t
                .inputs
                .iter()
                .map(|i| JobInputView {
                    piece_cid: piece_cid_string(&i.piece_cid),
                    piece_size: i.piece_size,
                    payload_size: i.payload_size,
                    mount: i.mount.clone(),
                })
                .collect(),
            limits: t.limits,
            payment: t.payment,
            provider_collateral: t.provider_collateral,
            providers: t.providers.iter().map(ToString::to_string).collect(),
            verification: match &t.verification {
                Verification::Replicated { k } => VerificationView::Replicated { k: *k },
                Verification::Verifier {
                    verifier,
                    fee,
                    bond,
                } => VerificationView::Verifier {
                    verifier: *verifier,
                    fee: *fee,
                    bond: *bond,
                },
            },
            deadline: t.deadline,
        }
    }

    /// The chain's terms this view shows.
    ///
    /// # Errors
    /// A piece CID or provider address that does not parse, named in the message.
    pub fn to_terms(&self) -> Result<lode_chain::actors::compute::JobTerms, String> {
        use lode_chain::actors::compute::{JobInput, JobTerms, Verification};
        let inputs = self
            .inputs
            .iter()
            .map(|i| {
                let cid: lode_proofs::cid::PieceCid = i
                    .piece_cid
                    .parse()
                    .map_err(|e| format!("input {:?}: {e}", i.mount))?;
                Ok(JobInput {
                    piece_cid: cid.comm_p().0,
                    piece_size: i.piece_size,
                    payload_size: i.payload_size,
                    mount: i.mount.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let providers = self
            .providers
            .iter()
            .map(|p| parse_actor_id(p).map_err(|e| format!("provider {p:?}: {e}")))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(JobTerms {
            module: self.module,
            entrypoint: self.entrypoint.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            inputs,
            limits: self.limits,
            payment: self.payment,
            provider_collateral: self.provider_collateral,
            providers,
            verification: match &self.verification {
                VerificationView::Replicated { k } => Verification::Replicated { k: *k },
                VerificationView::Verifier {
                    verifier,
                    fee,
                    bond,
                } => Verification::Verifier {
                    verifier: *verifier,
                    fee: *fee,
                    bond: *bond,
                },
            },
            deadline: self.deadline,
        })
    }
}

/// A piece commitment as its CID (`b…`), or hex if it is not a valid commitment.
pub fn piece_cid_string(comm_p: &[u8; 32]) -> String {
    lode_proofs::cid::PieceCid::new(lode_proofs::node::Node(*comm_p))
        .map(|c| c.to_string())
        .unwrap_or_else(|| hex::encode(comm_p))
}

/// A provider's place in a job, in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSlotView {
    /// The provider (miner).
    #[serde(with = "serde_hex::actor")]
    pub provider: ActorId,
    /// The account that locked the collateral.
    #[serde(with = "serde_hex::actor")]
    pub payer: ActorId,
    /// Collateral still held.
    pub collateral: TokenAmount,
    /// The deals backing the inputs.
    pub deals: Vec<DealId>,
    /// Whether it committed a result (replicated jobs).
    pub committed: bool,
    /// Its revealed or posted result, hex.
    #[serde(with = "serde_hex::opt_hash")]
    pub result: Option<[u8; 32]>,
}

/// The verifier of a job, in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobVerifierView {
    /// The verifier.
    #[serde(with = "serde_hex::actor")]
    pub verifier: ActorId,
    /// Bond still held.
    pub bond: TokenAmount,
    /// `attested`, `disputed` or `null` (no verdict yet).
    pub verdict: Option<String>,
    /// The verifier's result when it disputed.
    #[serde(with = "serde_hex::opt_hash")]
    pub disputed_result: Option<[u8; 32]>,
}

/// Who got what when a job settled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSettlementView {
    /// The epoch it settled.
    pub epoch: Epoch,
    /// Payments (`[address, amount]`).
    pub paid: Vec<(String, TokenAmount)>,
    /// Collateral and bonds returned.
    pub returned: Vec<(String, TokenAmount)>,
    /// Collateral and bonds slashed, by the party that lost them.
    pub slashed: Vec<(String, TokenAmount)>,
    /// The client's escrow refunded.
    pub refunded: TokenAmount,
    /// The client's half of what was slashed.
    pub to_client: TokenAmount,
    /// Burnt.
    pub burnt: TokenAmount,
}

/// `state_computeJob`, `state_computeJobs`: a compute job and its progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    /// The job id.
    pub job_id: u64,
    /// The client.
    #[serde(with = "serde_hex::actor")]
    pub client: ActorId,
    /// What it asks for.
    pub terms: JobTermsView,
    /// When it was submitted.
    pub submitted: Epoch,
    /// The epoch whose cron settles it (earlier once decided).
    pub settle_epoch: Epoch,
    /// `open`, `settled` or `failed`.
    pub state: String,
    /// Why it failed (`no-provider`, `no-majority`, `no-result`, `cancelled`).
    pub failure: Option<String>,
    /// The final result, hex.
    #[serde(with = "serde_hex::opt_hash")]
    pub result: Option<[u8; 32]>,
    /// Whether the final result came from the verifier's dispute.
    pub disputed: bool,
    /// The client's escrow still held.
    pub escrow: TokenAmount,
    /// Providers that accepted.
    pub slots: Vec<JobSlotView>,
    /// The verifier, once it accepted.
    pub verifier: Option<JobVerifierView>,
    /// Who got what, once settled.
    pub settlement: Option<JobSettlementView>,
}

impl JobView {
    /// The view of job `id`, under `policy`'s windows.
    pub fn of(id: u64, j: &lode_chain::actors::compute::Job, policy: &Policy) -> Self {
        use lode_chain::actors::compute::{Failure, Outcome, Verdict};
        let (state, failure, result, disputed) = match &j.outcome {
            None => ("open", None, None, false),
            Some(Outcome::Final { result, disputed }) => {
                ("settled", None, Some(*result), *disputed)
            }
            Some(Outcome::Failed(f)) => (
                "failed",
                Some(match f {
                    Failure::NoProvider => "no-provider",
                    Failure::NoMajority => "no-majority",
                    Failure::NoResult => "no-result",
                    Failure::Cancelled => "cancelled",
                }),
                None,
                false,
            ),
        };
        let pairs = |v: &[(ActorId, TokenAmount)]| {
            v.iter()
                .map(|(a, t)| (a.to_string(), *t))
                .collect::<Vec<_>>()
        };
        JobView {
            job_id: id,
            client: j.client,
            terms: JobTermsView::of(&j.terms),
            submitted: j.submitted,
            settle_epoch: j.settle_epoch(&policy.compute),
            state: state.into(),
            failure: failure.map(Into::into),
            result,
            disputed,
            escrow: j.escrow,
            slots: j
                .slots
                .iter()
                .map(|s| JobSlotView {
                    provider: s.provider,
                    payer: s.payer,
                    collateral: s.collateral,
                    deals: s.deals.clone(),
                    committed: s.commitment.is_some(),
                    result: s.result,
                })
                .collect(),
            verifier: j.verifier.as_ref().map(|v| JobVerifierView {
                verifier: v.verifier,
                bond: v.bond,
                verdict: v.verdict.map(|d| {
                    match d {
                        Verdict::Attested => "attested",
                        Verdict::Disputed(_) => "disputed",
                    }
                    .into()
                }),
                disputed_result: match v.verdict {
                    Some(Verdict::Disputed(r)) => Some(r),
                    _ => None,
                },
            }),
            settlement: j.settlement.as_ref().map(|s| JobSettlementView {
                epoch: s.epoch,
                paid: pairs(&s.paid),
                returned: pairs(&s.returned),
                slashed: pairs(&s.slashed),
                refunded: s.refunded,
                to_client: s.to_client,
                burnt: s.burnt,
            }),
        }
    }
}

/// Which jobs `state_computeJobs` lists (each `None`: any).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Jobs of this client.
    pub client: Option<ActorId>,
    /// Jobs this provider accepted or is named in.
    pub provider: Option<ActorId>,
    /// Jobs this account verifies.
    pub verifier: Option<ActorId>,
    /// Only jobs not settled yet.
    pub open_only: bool,
}
