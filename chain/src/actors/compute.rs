//! The compute-over-data actor's slot: an escrow table the job rules will build on.
//!
//! SPEC §8 describes compute jobs (a client escrows payment for a job over a stored piece, the
//! provider commits the result hash, the job settles after a dispute window); their verification
//! and slashing rules come with the issue that builds them. This module provides what those rules
//! need from the chain today: the actor at [`crate::actors::COMPUTE`], holding escrowed tokens per
//! party (`x/<id>`), with lock, release and burn primitives that keep the actor's balance equal to
//! the sum of its escrow entries (checked by [`crate::invariants`]). No message reaches it yet.

use serde::{Deserialize, Serialize};

use crate::actors::COMPUTE;
use crate::error::{ActorResult, ChainResult, abort};
use crate::keys;
use crate::runtime::Runtime;
use crate::types::{ActorId, TokenAmount};

/// Tokens one party has in compute escrow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEscrow {
    /// Amount held.
    pub amount: TokenAmount,
}

/// A party's escrow.
pub fn escrow(rt: &Runtime<'_, '_>, party: ActorId) -> ChainResult<JobEscrow> {
    Ok(rt
        .state
        .get(&keys::compute_escrow(party))?
        .unwrap_or_default())
}

fn save(rt: &mut Runtime<'_, '_>, party: ActorId, e: JobEscrow) -> ChainResult<()> {
    if e.amount.is_zero() {
        rt.state.delete(&keys::compute_escrow(party));
        Ok(())
    } else {
        rt.state.put(keys::compute_escrow(party), &e)
    }
}

/// Moves `amount` from `party`'s balance into its compute escrow.
pub fn lock(rt: &mut Runtime<'_, '_>, party: ActorId, amount: TokenAmount) -> ActorResult<()> {
    rt.transfer(party, COMPUTE, amount)?;
    let mut e = escrow(rt, party)?;
    e.amount = match e.amount.checked_add(amount) {
        Some(a) => a,
        None => abort!(Overflow, "compute escrow overflow"),
    };
    save(rt, party, e)?;
    Ok(())
}

/// Pays `amount` of `party`'s escrow to `to`.
pub fn release(
    rt: &mut Runtime<'_, '_>,
    party: ActorId,
    to: ActorId,
    amount: TokenAmount,
) -> ActorResult<()> {
    let mut e = escrow(rt, party)?;
    e.amount = match e.amount.checked_sub(amount) {
        Some(a) => a,
        None => abort!(
            InsufficientFunds,
            "{party} has {} in compute escrow, not {amount}",
            e.amount
        ),
    };
    save(rt, party, e)?;
    rt.transfer(COMPUTE, to, amount)
}

/// Burns `amount` of `party`'s escrow (a slashed job).
pub fn slash(rt: &mut Runtime<'_, '_>, party: ActorId, amount: TokenAmount) -> ActorResult<()> {
    release(rt, party, crate::actors::BURNT_FUNDS, amount)
}
