//! Genesis: the initial state at epoch 0.

use serde::{Deserialize, Serialize};

use crate::actor::{Actor, FIRST_USER_ID, SINGLETONS};
use crate::actors::{self, market, power, reward, verifreg};
use crate::crypto::PublicKey;
use crate::error::{ChainError, ChainResult, ImplicitOp, OutOfRange};
use crate::keys;
use crate::runtime::{Globals, Runtime};
use crate::types::{Address, TokenAmount};

/// The initial state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Accounts and their balances; the reward actor holds the rest of the supply.
    pub accounts: Vec<(PublicKey, TokenAmount)>,
    /// The verified registry's root key.
    pub verifreg_root: PublicKey,
    /// The beacon value of epoch 0.
    pub beacon: [u8; 32],
}

/// Writes the genesis state into `rt` (at epoch 0).
pub(crate) fn build(rt: &mut Runtime<'_, '_>, genesis: &Genesis) -> ChainResult<()> {
    let policy = rt.policy;
    rt.state.put(
        keys::GLOBALS.to_vec(),
        &Globals {
            next_actor_id: FIRST_USER_ID,
        },
    )?;
    let allocated = genesis
        .accounts
        .iter()
        .try_fold(0u128, |acc, (_, b)| acc.checked_add(b.0));
    let Some(reward_pool) = allocated.and_then(|a| policy.total_supply.0.checked_sub(a)) else {
        return Err(ChainError::GenesisOverSupply);
    };
    for (id, kind) in SINGLETONS {
        let balance = if id == actors::REWARD {
            TokenAmount(reward_pool)
        } else {
            TokenAmount::ZERO
        };
        rt.put_actor(
            id,
            &Actor {
                kind,
                balance,
                nonce: 0,
            },
        )?;
    }
    for (key, balance) in &genesis.accounts {
        let id = rt
            .resolve_or_create(&Address::Bls(*key))
            .map_err(ChainError::implicit(ImplicitOp::Genesis))?;
        let mut a = rt
            .expect_actor(id)
            .map_err(ChainError::implicit(ImplicitOp::Genesis))?;
        a.balance = a
            .balance
            .checked_add(*balance)
            .ok_or(OutOfRange("a genesis balance"))?;
        rt.put_actor(id, &a)?;
    }
    let root = rt
        .resolve_or_create(&Address::Bls(genesis.verifreg_root))
        .map_err(ChainError::implicit(ImplicitOp::Genesis))?;
    rt.state
        .put(keys::REWARD.to_vec(), &reward::genesis(policy))?;
    rt.state
        .put(keys::POWER.to_vec(), &power::genesis(policy))?;
    rt.state.put(keys::MARKET.to_vec(), &market::genesis())?;
    rt.state
        .put(keys::VERIFREG.to_vec(), &verifreg::genesis(root))?;
    rt.state.put(keys::randomness(0), &genesis.beacon)?;
    Ok(())
}
