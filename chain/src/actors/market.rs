//! The storage market actor: escrow, deal publication, activation at prove-commit, payments, and
//! the collateral rules.
//!
//! Every party has an escrow entry (`e/<id>`: balance and locked part); the tokens are the market
//! actor's balance. Publishing a deal locks the client's collateral and total storage fee and the
//! provider's collateral. A deal must be activated (its sector proven) by its start epoch: if it is
//! not, the client's funds are unlocked and the provider's collateral is **burnt**. An active deal
//! pays the provider `price × epochs` as it is settled; when it ends both collaterals unlock. If its
//! sector is terminated early, the provider's collateral is burnt and the client's remaining fee
//! unlocked. A verified deal turns the client's DataCap into an allocation at publication; the
//! provider's sector claims it at activation (that claim is what gives the sector its 10× power).

use lode_proofs::node::Node;
use lode_proofs::piece::{PaddedPieceSize, PieceInfo, comm_d};
use lode_proofs::sector::SectorSize;
use serde::{Deserialize, Serialize};

use crate::actors::{ActorKind, MARKET, economics, miner, verifreg};
use crate::codec::encode;
use crate::crypto::Signature;
use crate::error::{ActorResult, ChainError, ChainResult, OutOfRange, abort};
use crate::keys;
use crate::monies;
use crate::runtime::Runtime;
use crate::types::{ActorId, Address, DealId, Epoch, SectorNumber, TokenAmount};

/// Market totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketState {
    /// The next deal id.
    pub next_deal_id: DealId,
    /// Client funds locked (collateral and unpaid fees).
    pub total_client_locked: TokenAmount,
    /// Provider collateral locked.
    pub total_provider_locked: TokenAmount,
}

/// An escrow entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escrow {
    /// Everything deposited and not withdrawn or paid out.
    pub balance: TokenAmount,
    /// The part committed to deals.
    pub locked: TokenAmount,
}

/// What a client and a provider agree on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealProposal {
    /// CommP of the piece (trunc254 node bytes).
    pub piece_cid: [u8; 32],
    /// Padded piece size (a power of two).
    pub piece_size: u64,
    /// Whether the client pays with DataCap (10× power for the provider).
    pub verified: bool,
    /// The client account.
    pub client: ActorId,
    /// The provider (miner).
    pub provider: ActorId,
    /// A free-form label.
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
}

impl DealProposal {
    /// The bytes the client signs on `network`.
    pub fn signing_bytes(&self, network: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("lode/chain/deal-proposal");
        h.update(&(network.len() as u64).to_le_bytes());
        h.update(network.as_bytes());
        h.update(&encode(self));
        *h.finalize().as_bytes()
    }

    /// Duration in epochs.
    pub fn duration(&self) -> u64 {
        self.end_epoch.saturating_sub(self.start_epoch)
    }

    /// `price × duration`, if it fits.
    pub fn total_storage_fee(&self) -> Option<TokenAmount> {
        self.price_per_epoch
            .0
            .checked_mul(u128::from(self.duration()))
            .map(TokenAmount)
    }

    /// What the client locks: collateral plus the total fee.
    pub fn client_lock(&self) -> Option<TokenAmount> {
        self.total_storage_fee()?
            .checked_add(self.client_collateral)
    }
}

/// A proposal with the client's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientDealProposal {
    /// The proposal.
    pub proposal: DealProposal,
    /// The client's BLS signature of [`DealProposal::signing_bytes`].
    pub client_signature: Signature,
}

/// A deal's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealState {
    /// The sector holding it, once activated.
    pub sector: Option<SectorNumber>,
    /// When it was activated.
    pub activation_epoch: Option<Epoch>,
    /// Paid up to here.
    pub last_updated: Option<Epoch>,
    /// Its verified allocation, if verified.
    pub allocation: Option<u64>,
}

/// A published deal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    /// The proposal.
    pub proposal: DealProposal,
    /// Its state.
    pub state: DealState,
}

impl Deal {
    /// The epoch up to which the provider has been paid (the start until the first settlement).
    pub fn paid_until(&self) -> Epoch {
        let p = &self.proposal;
        self.state
            .last_updated
            .unwrap_or(p.start_epoch)
            .max(p.start_epoch)
    }

    /// What the client still has locked for this deal: the fee of the epochs not yet paid, and its
    /// collateral.
    ///
    /// Saturating: it is at most [`DealProposal::client_lock`], which publication checked, so it
    /// never saturates for a published deal.
    pub fn client_locked(&self) -> TokenAmount {
        let p = &self.proposal;
        let unpaid = p
            .price_per_epoch
            .0
            .saturating_mul(u128::from(p.end_epoch.saturating_sub(self.paid_until())));
        TokenAmount(unpaid.saturating_add(p.client_collateral.0))
    }
}

/// Space a sector's deals take, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DealSpaces {
    /// Unverified bytes.
    pub unverified: u64,
    /// Verified bytes (claimed allocations).
    pub verified: u64,
}

/// Market methods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MarketMethod {
    /// Adds the message's value to `owner`'s escrow.
    AddBalance {
        /// Whose escrow (an account or a miner).
        owner: Address,
    },
    /// Withdraws unlocked escrow (a miner's goes to its owner).
    WithdrawBalance {
        /// Whose escrow.
        owner: Address,
        /// Most to withdraw.
        amount: TokenAmount,
    },
    /// Publishes deals (all or none); returns their ids.
    PublishDeals(Vec<ClientDealProposal>),
    /// Pays providers what active deals owe up to now.
    SettleDeals(Vec<DealId>),
}

/// Genesis state.
pub fn genesis() -> MarketState {
    MarketState::default()
}

/// Loads the totals.
pub fn load(rt: &Runtime<'_, '_>) -> ChainResult<MarketState> {
    rt.state
        .get(keys::MARKET)?
        .ok_or_else(|| ChainError::Corrupt("market state missing".into()))
}

fn save(rt: &mut Runtime<'_, '_>, st: &MarketState) -> ChainResult<()> {
    rt.state.put(keys::MARKET.to_vec(), st)
}

/// An escrow entry.
pub fn escrow(rt: &Runtime<'_, '_>, id: ActorId) -> ChainResult<Escrow> {
    Ok(rt.state.get(&keys::escrow(id))?.unwrap_or_default())
}

fn save_escrow(rt: &mut Runtime<'_, '_>, id: ActorId, e: &Escrow) -> ChainResult<()> {
    if e.balance.is_zero() && e.locked.is_zero() {
        rt.state.delete(&keys::escrow(id));
        Ok(())
    } else {
        rt.state.put(keys::escrow(id), e)
    }
}

/// A deal.
pub fn deal(rt: &Runtime<'_, '_>, id: DealId) -> ChainResult<Option<Deal>> {
    rt.state.get(&keys::deal(id))
}

/// Runs a market method.
pub fn invoke(
    rt: &mut Runtime<'_, '_>,
    caller: ActorId,
    value: TokenAmount,
    method: MarketMethod,
) -> ActorResult<Vec<u8>> {
    match method {
        MarketMethod::AddBalance { owner } => {
            let Some(owner) = rt.resolve(&owner)? else {
                abort!(NotFound, "no actor {owner}")
            };
            match rt.expect_actor(owner)?.kind {
                ActorKind::Account { .. } | ActorKind::Miner => {}
                _ => abort!(IllegalArgument, "{owner} cannot hold market escrow"),
            }
            let mut e = escrow(rt, owner)?;
            e.balance = match e.balance.checked_add(value) {
                Some(b) => b,
                None => abort!(Overflow, "escrow overflow"),
            };
            save_escrow(rt, owner, &e)?;
            Ok(Vec::new())
        }
        MarketMethod::WithdrawBalance { owner, amount } => {
            let Some(owner) = rt.resolve(&owner)? else {
                abort!(NotFound, "no actor {owner}")
            };
            let recipient = match rt.expect_actor(owner)?.kind {
                ActorKind::Miner => {
                    let info = miner::info(rt, owner)?;
                    if caller != info.owner && caller != info.worker {
                        abort!(
                            Forbidden,
                            "only the miner's owner or worker may withdraw its escrow"
                        );
                    }
                    info.owner
                }
                _ => {
                    if caller != owner {
                        abort!(Forbidden, "only {owner} may withdraw its escrow");
                    }
                    owner
                }
            };
            let mut e = escrow(rt, owner)?;
            let free = e.balance.saturating_sub(e.locked);
            let amount = amount.min(free);
            e.balance = e.balance.saturating_sub(amount);
            save_escrow(rt, owner, &e)?;
            rt.transfer(MARKET, recipient, amount)?;
            Ok(encode(&amount))
        }
        MarketMethod::PublishDeals(deals) => {
            let ids = publish_deals(rt, caller, &deals)?;
            Ok(encode(&ids))
        }
        MarketMethod::SettleDeals(ids) => {
            for id in ids {
                rt.charge_gas(rt.policy.gas_per_sector)?;
                if deal(rt, id)?.is_none() {
                    abort!(NotFound, "no deal {id}");
                }
                settle(rt, id)?;
            }
            Ok(Vec::new())
        }
    }
}

fn lock(rt: &mut Runtime<'_, '_>, id: ActorId, amount: TokenAmount, what: &str) -> ActorResult<()> {
    let mut e = escrow(rt, id)?;
    let free = e.balance.saturating_sub(e.locked);
    if free < amount {
        abort!(
            InsufficientFunds,
            "{what} {id} has {free} free in escrow but the deals need {amount}: add balance first"
        );
    }
    e.locked = e
        .locked
        .checked_add(amount)
        .ok_or(OutOfRange("locked escrow"))?;
    save_escrow(rt, id, &e)?;
    Ok(())
}

fn publish_deals(
    rt: &mut Runtime<'_, '_>,
    caller: ActorId,
    deals: &[ClientDealProposal],
) -> ActorResult<Vec<DealId>> {
    if deals.is_empty() {
        abort!(IllegalArgument, "no deals to publish");
    }
    let p = rt.policy;
    let now = rt.epoch;
    let econ = economics::current(rt)?;
    let mut st = load(rt)?;
    let mut ids = Vec::with_capacity(deals.len());
    for (i, cd) in deals.iter().enumerate() {
        rt.charge_gas(p.gas_per_signature)?;
        let d = &cd.proposal;
        let info = miner::info(rt, d.provider)?;
        if caller != info.owner && caller != info.worker {
            abort!(
                Forbidden,
                "deal {i}: only the provider's owner or worker may publish"
            );
        }
        let key = rt.account_key(d.client)?;
        let hash = d.signing_bytes(&p.network);
        if key.verify(&hash, &cd.client_signature).is_err() {
            abort!(
                IllegalArgument,
                "deal {i}: the client's signature does not verify"
            );
        }
        if rt.state.get_raw(&keys::proposal_hash(&hash)).is_some() {
            abort!(
                IllegalArgument,
                "deal {i}: this proposal was already published"
            );
        }
        if PaddedPieceSize::new(d.piece_size).is_err() || d.piece_size > info.sector_size.bytes() {
            abort!(
                IllegalArgument,
                "deal {i}: piece size {} must be a power of two ≥ 128 that fits a sector",
                d.piece_size
            );
        }
        if !Node(d.piece_cid).is_trunc254() {
            abort!(
                IllegalArgument,
                "deal {i}: piece commitment is not a valid node"
            );
        }
        if d.label.len() as u64 > p.deal_max_label_size {
            abort!(
                IllegalArgument,
                "deal {i}: label longer than {} bytes",
                p.deal_max_label_size
            );
        }
        if d.start_epoch <= now || d.end_epoch <= d.start_epoch {
            abort!(
                IllegalArgument,
                "deal {i}: it must start after epoch {now} and end after it starts"
            );
        }
        if d.duration() < p.deal_min_duration || d.duration() > p.deal_max_duration {
            abort!(
                IllegalArgument,
                "deal {i}: duration {} is outside [{}, {}]",
                d.duration(),
                p.deal_min_duration,
                p.deal_max_duration
            );
        }
        for (what, v) in [
            ("price per epoch", d.price_per_epoch),
            ("provider collateral", d.provider_collateral),
            ("client collateral", d.client_collateral),
        ] {
            if v > p.deal_max_amount {
                abort!(
                    IllegalArgument,
                    "deal {i}: {what} {v} exceeds {}",
                    p.deal_max_amount
                );
            }
        }
        let min_collateral = monies::provider_collateral_min(p, &econ, d.piece_size);
        if d.provider_collateral < min_collateral {
            abort!(
                IllegalArgument,
                "deal {i}: provider collateral must be at least {min_collateral}"
            );
        }
        let Some(client_lock) = d.client_lock() else {
            abort!(Overflow, "deal {i}: total storage fee overflows")
        };
        lock(rt, d.client, client_lock, "client")?;
        lock(rt, d.provider, d.provider_collateral, "provider")?;
        st.total_client_locked = st
            .total_client_locked
            .checked_add(client_lock)
            .ok_or(OutOfRange("total client-locked escrow"))?;
        st.total_provider_locked = st
            .total_provider_locked
            .checked_add(d.provider_collateral)
            .ok_or(OutOfRange("total provider-locked escrow"))?;
        let allocation = if d.verified {
            let term_min = d.duration();
            let term_max = term_min
                .saturating_add(p.market_default_allocation_term_buffer)
                .min(p.maximum_verified_allocation_term);
            let expiration = d
                .start_epoch
                .min(now.saturating_add(p.maximum_verified_allocation_expiration));
            Some(verifreg::create_allocation(
                rt,
                d.client,
                d.provider,
                d.piece_cid,
                d.piece_size,
                term_min,
                term_max,
                expiration,
            )?)
        } else {
            None
        };
        let id = st.next_deal_id;
        st.next_deal_id = id.checked_add(1).ok_or(OutOfRange("the next deal id"))?;
        rt.state.put(
            keys::deal(id),
            &Deal {
                proposal: d.clone(),
                state: DealState {
                    allocation,
                    ..DealState::default()
                },
            },
        )?;
        rt.state.put(keys::deal_start(d.start_epoch, id), &())?;
        rt.state.put(keys::proposal_hash(&hash), &id)?;
        ids.push(id);
    }
    save(rt, &st)?;
    Ok(ids)
}

/// Checks that `deal_ids` may go into a sector of `miner` expiring at `expiration`, and returns
/// the CommD their pieces give (in order; an empty list gives the all-zero sector's CommD).
pub fn comm_d_for_deals(
    rt: &Runtime<'_, '_>,
    miner: ActorId,
    size: SectorSize,
    expiration: Epoch,
    deal_ids: &[DealId],
) -> ActorResult<[u8; 32]> {
    let mut pieces = Vec::with_capacity(deal_ids.len());
    for &id in deal_ids {
        let d = check_activatable(rt, miner, id, expiration)?;
        let Ok(piece_size) = PaddedPieceSize::new(d.proposal.piece_size) else {
            abort!(IllegalArgument, "deal {id} has an invalid piece size");
        };
        pieces.push(PieceInfo {
            comm_p: Node(d.proposal.piece_cid),
            size: piece_size,
        });
    }
    let Ok(sector) = PaddedPieceSize::new(size.bytes()) else {
        abort!(IllegalArgument, "invalid sector size");
    };
    match comm_d(sector, &pieces) {
        Ok(n) => Ok(n.0),
        Err(e) => abort!(IllegalArgument, "the deals do not fit the sector: {e}"),
    }
}

fn check_activatable(
    rt: &Runtime<'_, '_>,
    miner: ActorId,
    id: DealId,
    expiration: Epoch,
) -> ActorResult<Deal> {
    let Some(d) = deal(rt, id)? else {
        abort!(NotFound, "no deal {id}")
    };
    if d.proposal.provider != miner {
        abort!(
            Forbidden,
            "deal {id} belongs to provider {}",
            d.proposal.provider
        );
    }
    if d.state.sector.is_some() {
        abort!(IllegalArgument, "deal {id} is already active");
    }
    if rt.epoch > d.proposal.start_epoch {
        abort!(
            IllegalArgument,
            "deal {id} should have started at epoch {}",
            d.proposal.start_epoch
        );
    }
    if d.proposal.end_epoch > expiration {
        abort!(
            IllegalArgument,
            "deal {id} ends at {}, after the sector expires at {expiration}",
            d.proposal.end_epoch
        );
    }
    Ok(d)
}

/// Activates a sector's deals (called at prove-commit); claims verified allocations. Returns the
/// unverified and verified space.
pub fn activate_deals(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    sector: SectorNumber,
    expiration: Epoch,
    deal_ids: &[DealId],
) -> ActorResult<DealSpaces> {
    let mut spaces = DealSpaces::default();
    for &id in deal_ids {
        let mut d = check_activatable(rt, miner, id, expiration)?;
        d.state.sector = Some(sector);
        d.state.activation_epoch = Some(rt.epoch);
        if let Some(alloc) = d.state.allocation {
            let size = verifreg::claim_allocation(rt, miner, alloc, sector, expiration)?;
            spaces.verified = spaces
                .verified
                .checked_add(size)
                .ok_or(OutOfRange("verified deal space"))?;
        } else {
            spaces.unverified = spaces
                .unverified
                .checked_add(d.proposal.piece_size)
                .ok_or(OutOfRange("unverified deal space"))?;
        }
        rt.state.put(keys::deal(id), &d)?;
    }
    Ok(spaces)
}

/// Pays what an active deal owes up to now; completes it (unlocking collateral) once it has ended.
pub fn settle(rt: &mut Runtime<'_, '_>, id: DealId) -> ActorResult<()> {
    let Some(mut d) = deal(rt, id)? else {
        return Ok(());
    };
    if d.state.activation_epoch.is_none() {
        return Ok(());
    }
    let now = rt.epoch;
    let from = d.paid_until();
    let p = &d.proposal;
    let to = now.min(p.end_epoch);
    let mut st = load(rt)?;
    if to > from {
        // `to > from`, so the subtraction is exact.
        let pay = p
            .price_per_epoch
            .0
            .checked_mul(u128::from(to.saturating_sub(from)))
            .map(TokenAmount)
            .ok_or(OutOfRange("a deal payment"))?;
        move_escrow(rt, p.client, p.provider, pay)?;
        st.total_client_locked = st.total_client_locked.saturating_sub(pay);
        d.state.last_updated = Some(to);
    }
    if now >= p.end_epoch {
        unlock(rt, p.client, p.client_collateral)?;
        unlock(rt, p.provider, p.provider_collateral)?;
        st.total_client_locked = st.total_client_locked.saturating_sub(p.client_collateral);
        st.total_provider_locked = st
            .total_provider_locked
            .saturating_sub(p.provider_collateral);
        rt.state.delete(&keys::deal(id));
    } else {
        rt.state.put(keys::deal(id), &d)?;
    }
    save(rt, &st)?;
    Ok(())
}

/// Moves locked client funds to the provider's free escrow.
fn move_escrow(
    rt: &mut Runtime<'_, '_>,
    from: ActorId,
    to: ActorId,
    amount: TokenAmount,
) -> ActorResult<()> {
    let mut a = escrow(rt, from)?;
    let (Some(bal), Some(locked)) = (a.balance.checked_sub(amount), a.locked.checked_sub(amount))
    else {
        return Err(ChainError::EscrowShort {
            owner: from,
            amount,
        }
        .into());
    };
    a.balance = bal;
    a.locked = locked;
    save_escrow(rt, from, &a)?;
    let mut b = escrow(rt, to)?;
    b.balance = b
        .balance
        .checked_add(amount)
        .ok_or(OutOfRange("escrow balance"))?;
    save_escrow(rt, to, &b)?;
    Ok(())
}

fn unlock(rt: &mut Runtime<'_, '_>, id: ActorId, amount: TokenAmount) -> ActorResult<()> {
    let mut e = escrow(rt, id)?;
    e.locked = e.locked.saturating_sub(amount);
    save_escrow(rt, id, &e)?;
    Ok(())
}

/// Burns locked provider collateral.
fn burn_collateral(
    rt: &mut Runtime<'_, '_>,
    provider: ActorId,
    amount: TokenAmount,
) -> ActorResult<()> {
    let mut e = escrow(rt, provider)?;
    e.locked = e.locked.saturating_sub(amount);
    e.balance = e.balance.saturating_sub(amount);
    save_escrow(rt, provider, &e)?;
    rt.burn(MARKET, amount)
}

/// A sector holding `deal_ids` was terminated early: pay up to now, burn the provider's
/// collateral, unlock the client's remaining fee and collateral, and drop the deals.
pub fn on_sector_terminated(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    deal_ids: &[DealId],
) -> ActorResult<()> {
    for &id in deal_ids {
        settle(rt, id)?;
        let Some(d) = deal(rt, id)? else { continue };
        if d.proposal.provider == miner {
            cancel_deal(rt, id, &d)?;
        }
    }
    Ok(())
}

/// Ends a deal before its term: the client's remaining lock (unpaid fee and collateral) is released,
/// the provider's collateral burnt, an unclaimed verified allocation returns its DataCap, and the deal
/// is deleted.
fn cancel_deal(rt: &mut Runtime<'_, '_>, id: DealId, d: &Deal) -> ActorResult<()> {
    let p = &d.proposal;
    let client_unlock = d.client_locked();
    unlock(rt, p.client, client_unlock)?;
    burn_collateral(rt, p.provider, p.provider_collateral)?;
    if let Some(alloc) = d.state.allocation {
        verifreg::release_allocation(rt, alloc)?;
    }
    let mut st = load(rt)?;
    st.total_client_locked = st.total_client_locked.saturating_sub(client_unlock);
    st.total_provider_locked = st
        .total_provider_locked
        .saturating_sub(p.provider_collateral);
    save(rt, &st)?;
    rt.state.delete(&keys::deal(id));
    Ok(())
}

/// A sector expired on time: its deals (which end no later) are settled and completed.
pub fn on_sector_expired(
    rt: &mut Runtime<'_, '_>,
    _miner: ActorId,
    deal_ids: &[DealId],
) -> ActorResult<()> {
    for &id in deal_ids {
        settle(rt, id)?;
    }
    Ok(())
}

/// End of epoch: deals that had to start by now and were never activated time out — the client's
/// funds unlock, the provider's collateral is burnt, a verified allocation returns its DataCap.
pub fn end_epoch(rt: &mut Runtime<'_, '_>) -> ActorResult<()> {
    let now = rt.epoch;
    for (key, ()) in rt.state.scan::<()>(&keys::deal_start_prefix(now))? {
        rt.state.delete(&key);
        let Some(id) = keys::last_u64(&key) else {
            continue;
        };
        let Some(d) = deal(rt, id)? else { continue };
        if d.state.activation_epoch.is_some() {
            continue;
        }
        cancel_deal(rt, id, &d)?;
    }
    Ok(())
}
