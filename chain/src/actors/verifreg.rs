//! The verified registry: a root key appoints verifiers, verifiers grant DataCap (bytes) to
//! clients, a verified deal turns DataCap into an allocation for one provider and piece, and the
//! provider's prove-commit turns the allocation into a claim — the verified space that gives the
//! sector 10× quality-adjusted power.
//!
//! DataCap is conserved: everything the root granted is always exactly the sum of verifiers'
//! remaining allowances, clients' DataCap, open allocations, claimed (burnt) DataCap and allowance
//! forfeited by removed verifiers ([`crate::invariants`] checks it).

use serde::{Deserialize, Serialize};

use crate::actors::ActorKind;
use crate::error::{ActorResult, ChainError, ChainResult, OutOfRange, abort};
use crate::keys;
use crate::runtime::Runtime;
use crate::types::{ActorId, Address, Epoch, SectorNumber};

/// Registry state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifRegState {
    /// The root account, which appoints verifiers.
    pub root: ActorId,
    /// Next allocation id.
    pub next_allocation_id: u64,
    /// Next claim id.
    pub next_claim_id: u64,
    /// DataCap granted to verifiers, ever.
    pub total_granted: u128,
    /// DataCap turned into claims.
    pub total_claimed: u128,
    /// Allowance forfeited by removed verifiers.
    pub total_forfeited: u128,
}

/// DataCap a client set aside for one provider and piece.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The client.
    pub client: ActorId,
    /// The provider that may claim it.
    pub provider: ActorId,
    /// Piece commitment.
    pub piece_cid: [u8; 32],
    /// Piece size (DataCap bytes).
    pub size: u64,
    /// Shortest sector lifetime from the claim.
    pub term_min: u64,
    /// Longest sector lifetime from the claim.
    pub term_max: u64,
    /// Last epoch it can be claimed.
    pub expiration: Epoch,
}

/// A provider's commitment to store verified data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The provider.
    pub provider: ActorId,
    /// The client.
    pub client: ActorId,
    /// Piece commitment.
    pub piece_cid: [u8; 32],
    /// Bytes.
    pub size: u64,
    /// Shortest term.
    pub term_min: u64,
    /// Longest term from `term_start`.
    pub term_max: u64,
    /// When it was claimed.
    pub term_start: Epoch,
    /// The sector holding it.
    pub sector: SectorNumber,
}

/// Verified registry methods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerifRegMethod {
    /// Root only: makes `verifier` a verifier with `allowance` bytes to grant.
    AddVerifier {
        /// The verifier account.
        verifier: Address,
        /// Bytes it may grant.
        allowance: u128,
    },
    /// Root only: removes a verifier (its remaining allowance is forfeited).
    RemoveVerifier {
        /// The verifier.
        verifier: Address,
    },
    /// Verifier only: grants DataCap to a client.
    AddVerifiedClient {
        /// The client account.
        client: Address,
        /// Bytes.
        allowance: u128,
    },
    /// Anyone: returns expired, unclaimed allocations' DataCap to their client.
    RemoveExpiredAllocations {
        /// The allocations.
        ids: Vec<u64>,
    },
}

/// Genesis state.
pub fn genesis(root: ActorId) -> VerifRegState {
    VerifRegState {
        root,
        ..VerifRegState::default()
    }
}

/// Loads the state.
pub fn load(rt: &Runtime<'_, '_>) -> ChainResult<VerifRegState> {
    rt.state
        .get(keys::VERIFREG)?
        .ok_or_else(|| ChainError::Corrupt("verified registry state missing".into()))
}

fn save(rt: &mut Runtime<'_, '_>, st: &VerifRegState) -> ChainResult<()> {
    rt.state.put(keys::VERIFREG.to_vec(), st)
}

/// A client's DataCap.
pub fn datacap(rt: &Runtime<'_, '_>, client: ActorId) -> ChainResult<u128> {
    Ok(rt.state.get(&keys::datacap(client))?.unwrap_or(0))
}

fn set_datacap(rt: &mut Runtime<'_, '_>, client: ActorId, v: u128) -> ChainResult<()> {
    if v == 0 {
        rt.state.delete(&keys::datacap(client));
        Ok(())
    } else {
        rt.state.put(keys::datacap(client), &v)
    }
}

fn account(rt: &mut Runtime<'_, '_>, addr: &Address) -> ActorResult<ActorId> {
    let id = rt.resolve_or_create(addr)?;
    match rt.expect_actor(id)?.kind {
        ActorKind::Account { .. } => Ok(id),
        _ => abort!(IllegalArgument, "{id} is not an account"),
    }
}

/// Runs a verified registry method.
pub fn invoke(
    rt: &mut Runtime<'_, '_>,
    caller: ActorId,
    method: VerifRegMethod,
) -> ActorResult<Vec<u8>> {
    let mut st = load(rt)?;
    let min = u128::from(rt.policy.minimum_verified_allocation_size);
    match method {
        VerifRegMethod::AddVerifier {
            verifier,
            allowance,
        } => {
            if caller != st.root {
                abort!(Forbidden, "only the root key may add verifiers");
            }
            if allowance < min {
                abort!(
                    IllegalArgument,
                    "allowance {allowance} is below the minimum {min}"
                );
            }
            let v = account(rt, &verifier)?;
            if v == st.root || datacap(rt, v)? > 0 {
                abort!(
                    IllegalArgument,
                    "{v} cannot be a verifier (root or DataCap holder)"
                );
            }
            let current: u128 = rt.state.get(&keys::verifier(v))?.unwrap_or(0);
            let Some(total) = st.total_granted.checked_add(allowance) else {
                abort!(Overflow, "DataCap overflow")
            };
            st.total_granted = total;
            let allowance = current
                .checked_add(allowance)
                .ok_or(OutOfRange("a verifier's allowance"))?;
            rt.state.put(keys::verifier(v), &allowance)?;
        }
        VerifRegMethod::RemoveVerifier { verifier } => {
            if caller != st.root {
                abort!(Forbidden, "only the root key may remove verifiers");
            }
            let Some(v) = rt.resolve(&verifier)? else {
                abort!(NotFound, "no verifier {verifier}")
            };
            let Some(left) = rt.state.get::<u128>(&keys::verifier(v))? else {
                abort!(NotFound, "{v} is not a verifier")
            };
            st.total_forfeited = st
                .total_forfeited
                .checked_add(left)
                .ok_or(OutOfRange("forfeited DataCap"))?;
            rt.state.delete(&keys::verifier(v));
        }
        VerifRegMethod::AddVerifiedClient { client, allowance } => {
            let Some(left) = rt.state.get::<u128>(&keys::verifier(caller))? else {
                abort!(Forbidden, "{caller} is not a verifier")
            };
            if allowance < min {
                abort!(
                    IllegalArgument,
                    "allowance {allowance} is below the minimum {min}"
                );
            }
            if allowance > left {
                abort!(
                    InsufficientFunds,
                    "verifier {caller} has {left} bytes left, not {allowance}"
                );
            }
            let c = account(rt, &client)?;
            if rt.state.get_raw(&keys::verifier(c)).is_some() || c == st.root {
                abort!(
                    IllegalArgument,
                    "{c} is a verifier or the root and cannot hold DataCap"
                );
            }
            let left = left
                .checked_sub(allowance)
                .ok_or(OutOfRange("a verifier's allowance"))?;
            rt.state.put(keys::verifier(caller), &left)?;
            let cap = datacap(rt, c)?
                .checked_add(allowance)
                .ok_or(OutOfRange("a client's DataCap"))?;
            set_datacap(rt, c, cap)?;
        }
        VerifRegMethod::RemoveExpiredAllocations { ids } => {
            for id in ids {
                rt.charge_gas(rt.policy.gas_per_sector)?;
                let Some(a) = rt.state.get::<Allocation>(&keys::allocation(id))? else {
                    abort!(NotFound, "no allocation {id}")
                };
                if rt.epoch <= a.expiration {
                    abort!(
                        IllegalArgument,
                        "allocation {id} can still be claimed until epoch {}",
                        a.expiration
                    );
                }
                release_allocation(rt, id)?;
            }
        }
    }
    save(rt, &st)?;
    Ok(Vec::new())
}

/// Moves `size` of the client's DataCap into a new allocation (market publication of a verified
/// deal); returns its id.
#[allow(clippy::too_many_arguments)]
pub fn create_allocation(
    rt: &mut Runtime<'_, '_>,
    client: ActorId,
    provider: ActorId,
    piece_cid: [u8; 32],
    size: u64,
    term_min: u64,
    term_max: u64,
    expiration: Epoch,
) -> ActorResult<u64> {
    let p = rt.policy;
    if size < p.minimum_verified_allocation_size {
        abort!(
            IllegalArgument,
            "verified piece of {size} bytes is below the minimum {}",
            p.minimum_verified_allocation_size
        );
    }
    if term_min < p.minimum_verified_allocation_term
        || term_max > p.maximum_verified_allocation_term
        || term_min > term_max
    {
        abort!(
            IllegalArgument,
            "allocation terms [{term_min}, {term_max}] are out of bounds"
        );
    }
    if expiration < rt.epoch
        || expiration
            > rt.epoch
                .saturating_add(p.maximum_verified_allocation_expiration)
    {
        abort!(
            IllegalArgument,
            "allocation expiration {expiration} is out of bounds"
        );
    }
    let cap = datacap(rt, client)?;
    if cap < u128::from(size) {
        abort!(
            InsufficientFunds,
            "client {client} has {cap} bytes of DataCap, the deal needs {size}"
        );
    }
    let cap = cap
        .checked_sub(u128::from(size))
        .ok_or(OutOfRange("a client's DataCap"))?;
    set_datacap(rt, client, cap)?;
    let mut st = load(rt)?;
    let id = st.next_allocation_id;
    st.next_allocation_id = id
        .checked_add(1)
        .ok_or(OutOfRange("the next allocation id"))?;
    save(rt, &st)?;
    rt.state.put(
        keys::allocation(id),
        &Allocation {
            client,
            provider,
            piece_cid,
            size,
            term_min,
            term_max,
            expiration,
        },
    )?;
    Ok(id)
}

/// Claims allocation `id` for `provider`'s sector expiring at `sector_expiration`; returns the
/// claimed bytes (the DataCap is spent).
pub fn claim_allocation(
    rt: &mut Runtime<'_, '_>,
    provider: ActorId,
    id: u64,
    sector: SectorNumber,
    sector_expiration: Epoch,
) -> ActorResult<u64> {
    let Some(a) = rt.state.get::<Allocation>(&keys::allocation(id))? else {
        abort!(NotFound, "no allocation {id}")
    };
    if a.provider != provider {
        abort!(Forbidden, "allocation {id} is for provider {}", a.provider);
    }
    if rt.epoch > a.expiration {
        abort!(
            IllegalArgument,
            "allocation {id} expired at epoch {}",
            a.expiration
        );
    }
    let lifetime = sector_expiration.saturating_sub(rt.epoch);
    if lifetime < a.term_min || lifetime > a.term_max {
        abort!(
            IllegalArgument,
            "sector lifetime {lifetime} is outside allocation {id}'s terms [{}, {}]",
            a.term_min,
            a.term_max
        );
    }
    let mut st = load(rt)?;
    let claim_id = st.next_claim_id;
    st.next_claim_id = claim_id
        .checked_add(1)
        .ok_or(OutOfRange("the next claim id"))?;
    st.total_claimed = st
        .total_claimed
        .checked_add(u128::from(a.size))
        .ok_or(OutOfRange("claimed DataCap"))?;
    save(rt, &st)?;
    rt.state.delete(&keys::allocation(id));
    rt.state.put(
        keys::verified_claim(claim_id),
        &Claim {
            provider,
            client: a.client,
            piece_cid: a.piece_cid,
            size: a.size,
            term_min: a.term_min,
            term_max: a.term_max,
            term_start: rt.epoch,
            sector,
        },
    )?;
    Ok(a.size)
}

/// Deletes an allocation and gives its DataCap back to the client.
pub fn release_allocation(rt: &mut Runtime<'_, '_>, id: u64) -> ActorResult<()> {
    let Some(a) = rt.state.get::<Allocation>(&keys::allocation(id))? else {
        return Ok(());
    };
    rt.state.delete(&keys::allocation(id));
    let cap = datacap(rt, a.client)?
        .checked_add(u128::from(a.size))
        .ok_or(OutOfRange("a client's DataCap"))?;
    set_datacap(rt, a.client, cap)?;
    Ok(())
}

/// Fails unless every claim on the sector allows it to live until `expiration`.
pub fn check_claims_allow_expiration(
    rt: &Runtime<'_, '_>,
    provider: ActorId,
    sector: SectorNumber,
    expiration: Epoch,
) -> ActorResult<()> {
    for (_, c) in rt.state.scan::<Claim>(keys::VERIFIED_CLAIM_PREFIX)? {
        let term_end = c.term_start.saturating_add(c.term_max);
        if c.provider == provider && c.sector == sector && expiration > term_end {
            abort!(
                IllegalArgument,
                "sector {sector}: a verified claim allows it to live until epoch {term_end} only"
            );
        }
    }
    Ok(())
}
