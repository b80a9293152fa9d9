//! The actors: every account and built-in program of the chain, and the records they share.
//!
//! An actor is a [`Actor`] record (`a/<id>`: kind, balance, nonce) plus the records of its module.
//! Built-in actors live at fixed ids ([`SYSTEM`], [`REWARD`], …); accounts and miners get ids from
//! [`FIRST_USER_ID`] up. Actors call each other as plain functions on the same [`Runtime`]
//! (there is one program, so there are no internal messages): a miner's prove-commit calls the
//! market to activate deals, the verified registry to claim allocations and the power actor to
//! record pledge. A method either finishes or returns an [`ActorError`], and the executor then
//! drops every write the message made.
//!
//! Token custody: a miner's funds (pledge, deposits, vesting rewards, free balance) are its own
//! balance; market escrow is the market actor's balance; unminted rewards are the reward actor's
//! balance; burnt tokens go to [`BURNT_FUNDS`]. The sum of all balances never changes.
//!
//! [`Runtime`]: crate::runtime::Runtime
//! [`ActorError`]: crate::error::ActorError

pub mod compute;
pub mod economics;
pub mod market;
pub mod miner;
pub mod power;
pub mod reward;
pub mod verifreg;

pub use crate::actor::{
    Actor, ActorKind, BURNT_FUNDS, COMPUTE, FIRST_USER_ID, MARKET, POWER, REWARD, SINGLETONS,
    SYSTEM, VERIFREG,
};
