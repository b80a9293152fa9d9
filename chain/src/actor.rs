//! The record every actor has (`a/<id>`: kind, balance, nonce) and the ids of the built-in actors.
//!
//! These are shared by the [`runtime`](crate::runtime), which creates actors and moves balances,
//! and by the [`actors`](crate::actors), which implement them; they live below both so that the
//! runtime does not depend on the actors. [`crate::actors`] re-exports everything here.

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::types::{ActorId, TokenAmount};

/// The system actor (sender of implicit operations; never signs).
pub const SYSTEM: ActorId = ActorId(0);
/// The reward actor: holds unminted tokens and pays block rewards.
pub const REWARD: ActorId = ActorId(1);
/// The power actor: power claims and totals; creates miners.
pub const POWER: ActorId = ActorId(2);
/// The storage market actor: escrow and deals.
pub const MARKET: ActorId = ActorId(3);
/// The verified registry: verifiers, DataCap, allocations and claims.
pub const VERIFREG: ActorId = ActorId(4);
/// Where burnt tokens go.
pub const BURNT_FUNDS: ActorId = ActorId(5);
/// The compute-over-data actor (job escrow; its rules arrive with the compute issue).
pub const COMPUTE: ActorId = ActorId(6);
/// The first id given to accounts and miners.
pub const FIRST_USER_ID: u64 = 100;

/// What an actor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorKind {
    /// The system actor.
    System,
    /// The reward actor.
    Reward,
    /// The power actor.
    Power,
    /// The market actor.
    Market,
    /// The verified registry.
    VerifiedRegistry,
    /// The burnt-funds sink.
    BurntFunds,
    /// The compute-over-data actor.
    Compute,
    /// An account controlled by a BLS key.
    Account {
        /// Its public key.
        key: PublicKey,
    },
    /// A storage miner.
    Miner,
}

/// The record every actor has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// What it is.
    pub kind: ActorKind,
    /// Its balance.
    pub balance: TokenAmount,
    /// Messages sent so far (accounts only).
    pub nonce: u64,
}

/// The built-in actors created at genesis.
pub const SINGLETONS: [(ActorId, ActorKind); 7] = [
    (SYSTEM, ActorKind::System),
    (REWARD, ActorKind::Reward),
    (POWER, ActorKind::Power),
    (MARKET, ActorKind::Market),
    (VERIFREG, ActorKind::VerifiedRegistry),
    (BURNT_FUNDS, ActorKind::BurntFunds),
    (COMPUTE, ActorKind::Compute),
];
