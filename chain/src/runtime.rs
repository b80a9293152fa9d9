//! What a method sees while it runs: the state (through an [`Overlay`]), the policy, the epoch,
//! randomness, the proof verifier and gas.
//!
//! The runtime sits below the actors and knows none of them: actor records and built-in ids come
//! from [`crate::actor`]. The economic snapshot the formulas read ([`Economics`], from
//! [`crate::monies`]) is built from the actors' states by [`crate::actors::economics`], which also
//! provides [`Runtime::economics`].

use lode_proofs::verifier::ProofVerifier;
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, ActorKind, BURNT_FUNDS};
use crate::crypto::PublicKey;
use crate::error::{ActorResult, ChainResult, OutOfRange, abort};
use crate::keys;
use crate::policy::Policy;
use crate::store::Overlay;

pub use crate::monies::Economics;
use crate::types::{ActorId, Address, Epoch, TokenAmount};

/// Chain-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Globals {
    /// The next id an actor will get.
    pub next_actor_id: u64,
}

/// Domain tags of chain randomness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RandomnessTag {
    /// The ticket a pre-commit names (replica id).
    SealTicket,
    /// The interactive seed that picks PoRep challenges.
    InteractiveSeed,
    /// A deadline's Window PoSt challenge.
    WindowPost,
    /// Winning PoSt challenge.
    WinningPost,
    /// Election (the VRF input a block producer signs).
    Election,
    /// A block's ticket (the VRF whose digest seeds later beacons).
    Ticket,
}

impl RandomnessTag {
    fn context(self) -> &'static str {
        match self {
            RandomnessTag::SealTicket => "lode/chain/rand/seal-ticket",
            RandomnessTag::InteractiveSeed => "lode/chain/rand/interactive-seed",
            RandomnessTag::WindowPost => "lode/chain/rand/window-post",
            RandomnessTag::WinningPost => "lode/chain/rand/winning-post",
            RandomnessTag::Election => "lode/chain/rand/election",
            RandomnessTag::Ticket => "lode/chain/rand/ticket",
        }
    }
}

/// `H(tag, beacon(epoch) || u64le(epoch) || entropy)`: the randomness every proof and election
/// draws, from the beacon value the block of `epoch` carried.
pub fn draw_randomness(
    tag: RandomnessTag,
    beacon: &[u8; 32],
    epoch: Epoch,
    entropy: &[u8],
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(tag.context());
    h.update(beacon);
    h.update(&epoch.to_le_bytes());
    h.update(entropy);
    *h.finalize().as_bytes()
}

/// The view of the chain a method runs against.
pub struct Runtime<'s, 'p> {
    /// The state, with this message's writes on top.
    pub state: Overlay<'s>,
    /// The rules.
    pub policy: &'p Policy,
    /// The epoch being applied.
    pub epoch: Epoch,
    /// Proof verification.
    pub verifier: &'p dyn ProofVerifier,
    gas_used: u64,
    gas_limit: u64,
}

impl std::fmt::Debug for Runtime<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("epoch", &self.epoch)
            .field("gas_used", &self.gas_used)
            .finish()
    }
}

impl<'s, 'p> Runtime<'s, 'p> {
    /// A runtime over `state` at `epoch`.
    pub fn new(
        state: Overlay<'s>,
        policy: &'p Policy,
        epoch: Epoch,
        verifier: &'p dyn ProofVerifier,
    ) -> Self {
        Runtime {
            state,
            policy,
            epoch,
            verifier,
            gas_used: 0,
            gas_limit: u64::MAX,
        }
    }

    /// Starts metering a message: `used` already spent, at most `limit` in all.
    pub fn start_gas(&mut self, used: u64, limit: u64) {
        self.gas_used = used;
        self.gas_limit = limit;
    }

    /// Stops metering (implicit operations are free).
    pub fn stop_gas(&mut self) -> u64 {
        let used = self.gas_used;
        self.gas_used = 0;
        self.gas_limit = u64::MAX;
        used
    }

    /// Gas used so far.
    pub fn gas_used(&self) -> u64 {
        self.gas_used
    }

    /// Charges `amount` gas; fails with `SysOutOfGas` past the limit.
    pub fn charge_gas(&mut self, amount: u64) -> ActorResult<()> {
        self.gas_used = self.gas_used.saturating_add(amount);
        if self.gas_used > self.gas_limit {
            self.gas_used = self.gas_limit;
            abort!(SysOutOfGas, "out of gas (limit {})", self.gas_limit);
        }
        Ok(())
    }

    /// The chain counters.
    pub fn globals(&self) -> ChainResult<Globals> {
        Ok(self.state.get(keys::GLOBALS)?.unwrap_or_default())
    }

    /// An actor's record.
    pub fn actor(&self, id: ActorId) -> ChainResult<Option<Actor>> {
        self.state.get(&keys::actor(id))
    }

    /// An actor's record, or `NotFound`.
    pub fn expect_actor(&self, id: ActorId) -> ActorResult<Actor> {
        match self.actor(id)? {
            Some(a) => Ok(a),
            None => abort!(NotFound, "no actor {id}"),
        }
    }

    /// Stores an actor's record.
    pub fn put_actor(&mut self, id: ActorId, actor: &Actor) -> ChainResult<()> {
        self.state.put(keys::actor(id), actor)
    }

    /// The id an address names, if the actor exists.
    pub fn resolve(&self, addr: &Address) -> ChainResult<Option<ActorId>> {
        match addr {
            Address::Id(id) => Ok(self.actor(*id)?.map(|_| *id)),
            Address::Bls(pk) => self.state.get(&keys::key_index(&pk.to_bytes())),
        }
    }

    /// Creates a new actor of `kind` with zero balance and returns its id.
    pub fn create_actor(&mut self, kind: ActorKind) -> ChainResult<ActorId> {
        let mut g = self.globals()?;
        let id = ActorId(g.next_actor_id);
        g.next_actor_id = g
            .next_actor_id
            .checked_add(1)
            .ok_or(OutOfRange("the next actor id"))?;
        self.state.put(keys::GLOBALS.to_vec(), &g)?;
        self.put_actor(
            id,
            &Actor {
                kind,
                balance: TokenAmount::ZERO,
                nonce: 0,
            },
        )?;
        if let ActorKind::Account { key } = kind {
            self.state.put(keys::key_index(&key.to_bytes()), &id)?;
        }
        Ok(id)
    }

    /// Resolves `addr`, creating an account for an unknown BLS key (how accounts come to exist).
    pub fn resolve_or_create(&mut self, addr: &Address) -> ActorResult<ActorId> {
        if let Some(id) = self.resolve(addr)? {
            return Ok(id);
        }
        match addr {
            Address::Bls(key) => Ok(self.create_actor(ActorKind::Account { key: *key })?),
            Address::Id(id) => abort!(NotFound, "no actor {id}"),
        }
    }

    /// The BLS key of an account.
    pub fn account_key(&self, id: ActorId) -> ActorResult<PublicKey> {
        match self.expect_actor(id)?.kind {
            ActorKind::Account { key } => Ok(key),
            _ => abort!(IllegalArgument, "{id} is not an account"),
        }
    }

    /// Moves `amount` from one actor's balance to another's.
    pub fn transfer(&mut self, from: ActorId, to: ActorId, amount: TokenAmount) -> ActorResult<()> {
        if amount.is_zero() || from == to {
            return Ok(());
        }
        let mut a = self.expect_actor(from)?;
        let mut b = self.expect_actor(to)?;
        a.balance = match a.balance.checked_sub(amount) {
            Some(v) => v,
            None => abort!(
                InsufficientFunds,
                "{from} has {} and cannot send {amount}",
                a.balance
            ),
        };
        b.balance = match b.balance.checked_add(amount) {
            Some(v) => v,
            None => abort!(Overflow, "balance of {to} overflows"),
        };
        self.put_actor(from, &a)?;
        self.put_actor(to, &b)?;
        Ok(())
    }

    /// Burns `amount` from `from` (moves it to the burnt-funds actor).
    pub fn burn(&mut self, from: ActorId, amount: TokenAmount) -> ActorResult<()> {
        self.transfer(from, BURNT_FUNDS, amount)
    }

    /// The randomness recorded for `epoch`.
    pub fn beacon(&self, epoch: Epoch) -> ActorResult<[u8; 32]> {
        match self.state.get::<[u8; 32]>(&keys::randomness(epoch))? {
            Some(b) => Ok(b),
            None => abort!(
                IllegalArgument,
                "no randomness for epoch {epoch} (in the future, or older than the lookback)"
            ),
        }
    }

    /// Draws randomness for `tag` at `epoch` with `entropy`.
    pub fn randomness(
        &self,
        tag: RandomnessTag,
        epoch: Epoch,
        entropy: &[u8],
    ) -> ActorResult<[u8; 32]> {
        Ok(draw_randomness(tag, &self.beacon(epoch)?, epoch, entropy))
    }
}
