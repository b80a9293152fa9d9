//! Genesis: the initial state at epoch 0.
//!
//! [`Chain::genesis`](crate::Chain::genesis) writes, in this order: the chain counters, the
//! built-in actors (the reward actor holding every token not given to a genesis account or miner),
//! the genesis accounts in the order listed, the verified registry's root, the actors' initial
//! states and the beacon of epoch 0 — then, for each genesis miner in order, its owner and worker
//! accounts (created when their keys are not accounts yet), the miner actor and its pre-sealed
//! sectors — and last the genesis verifiers and verified clients (after the miners, so that they
//! never change the miners' ids), with their allowances and DataCap counted as granted.
//!
//! **Genesis miners.** A [`GenesisMiner`] is created exactly as a `CreateMiner` message from its
//! owner would create it at epoch 0 (the next actor id, the same info and proving-period offset,
//! an empty power claim registered). Its [`GenesisSector`]s were sealed before the chain existed:
//! no PoRep is checked (the genesis is trusted as a whole), and each is activated as if it had been
//! prove-committed at epoch 0 and already proven once — its on-chain record, the deadline and
//! partition prove-commit would assign (sectors in the order listed), raw and quality-adjusted
//! power claimed at once and added to the network totals, and the miner's deadline cron scheduled.
//! From epoch 1 on it is an ordinary miner: it must submit a Window PoSt in every deadline that
//! holds its sectors, and a missed one makes them faulty.
//!
//! - *Eligibility.* Nothing is special about a genesis miner's right to win blocks: the usual rule
//!   of [`crate::actors::power::meets_consensus_minimum`] applies from epoch 1 — its raw power
//!   meets `minimum_consensus_power`, or fewer than `consensus_miner_min_miners` miners do and it
//!   has some power. On the devnet policy one 2 KiB sector meets the minimum; a genesis of a few
//!   small miners still mines because the minimum-miners rule counts every miner with power.
//!   Genesis miners start with no fee debt and no consensus-fault ban.
//! - *Pledge.* Genesis sectors carry **zero initial pledge** (nothing existed to lock it from, and
//!   the economics the pledge formula reads do not exist before epoch 0), so a genesis miner has
//!   nothing locked; fault and termination fees are still charged as for any sector (they become
//!   fee debt, paid from the miner's balance: [`GenesisMiner::balance`] funds it).
//! - *Data.* Genesis sectors hold no deals: their `comm_d` must be that of an empty sector, as a
//!   pre-commit without deals must have. The chain keeps `comm_r` only.
//! - *Ids.* The actor ids genesis gives the miners are known beforehand ([`Genesis::miner_ids`]),
//!   so their sectors can be sealed (the replica id names the miner) before the genesis is written.
//!
//! A genesis without miners writes nothing more than it did before miners existed: its state root
//! is unchanged.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use lode_proofs::node::Node;
use lode_proofs::piece::{PaddedPieceSize, comm_d};
use lode_proofs::sector::SectorSize;
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, FIRST_USER_ID, SINGLETONS};
use crate::actors::{self, market, miner, power, reward, verifreg};
use crate::crypto::PublicKey;
use crate::error::{
    ActorResult, ChainError, ChainResult, CommitmentKind, GenesisError, ImplicitOp, OutOfRange,
};
use crate::keys;
use crate::policy::Policy;
use crate::runtime::{Globals, Runtime};
use crate::types::{ActorId, Address, Epoch, SectorNumber, TokenAmount};

/// The initial state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Accounts and their balances; the reward actor holds the rest of the supply.
    pub accounts: Vec<(PublicKey, TokenAmount)>,
    /// The verified registry's root key.
    pub verifreg_root: PublicKey,
    /// The beacon value of epoch 0.
    pub beacon: [u8; 32],
    /// Storage miners with power from epoch 0, created after the accounts in this order.
    #[serde(default)]
    pub miners: Vec<GenesisMiner>,
    /// Verifiers appointed from epoch 0 (as the root would appoint them), created after the
    /// miners so that adding one never changes the miners' ids.
    #[serde(default)]
    pub verifiers: Vec<GenesisVerifier>,
    /// Clients holding DataCap from epoch 0 (as if a verifier had granted it), created after the
    /// verifiers.
    #[serde(default)]
    pub verified_clients: Vec<GenesisClient>,
}

/// A verifier that exists from genesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisVerifier {
    /// Its account's key (created when it is not an account yet).
    pub key: PublicKey,
    /// Tokens added to its account (for the gas of its grants), from the supply.
    pub balance: TokenAmount,
    /// The DataCap it may grant, in bytes.
    pub allowance: u128,
}

/// A verified client that exists from genesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisClient {
    /// Its account's key (created when it is not an account yet).
    pub key: PublicKey,
    /// Tokens added to its account, from the supply.
    pub balance: TokenAmount,
    /// Its DataCap, in bytes.
    pub datacap: u128,
}

/// A storage miner that exists from genesis, with sectors sealed before the chain existed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisMiner {
    /// The owner's key: a genesis account, or an account created for it (with no balance).
    pub owner: PublicKey,
    /// The worker's key (signs blocks and proofs): an account, created when it is none yet.
    pub worker: PublicKey,
    /// The sector size it seals (one the policy accepts).
    pub sector_size: SectorSize,
    /// The miner actor's balance, taken from the supply like an account's (free, not locked).
    #[serde(default)]
    pub balance: TokenAmount,
    /// The libp2p peer id of its node (may be empty; a non-empty one is unique in the genesis).
    #[serde(default)]
    pub peer_id: Vec<u8>,
    /// The multiaddresses of its node, each in its binary form.
    #[serde(default)]
    pub multiaddrs: Vec<Vec<u8>>,
    /// Its pre-sealed sectors, activated in this order.
    #[serde(default)]
    pub sectors: Vec<GenesisSector>,
}

/// A sector sealed before genesis: committed capacity (no deals), active from epoch 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisSector {
    /// Sector number (unique within its miner).
    pub sector_number: SectorNumber,
    /// `comm_r` of the sealed replica (trunc254 node bytes).
    pub comm_r: [u8; 32],
    /// `comm_d` (trunc254 node bytes): the commitment of an empty sector of the miner's size.
    pub comm_d: [u8; 32],
    /// Expiration epoch, within [`GenesisSector::expiration_range`].
    pub expiration: Epoch,
}

impl GenesisSector {
    /// The expirations a genesis sector may have: those of a sector activated at epoch 0 — at least
    /// `min_sector_expiration` after activation, at most `max_sector_expiration_extension` from
    /// now and `max_sector_lifetime` after activation (empty only for an absurd policy).
    pub fn expiration_range(policy: &Policy) -> RangeInclusive<Epoch> {
        let max = policy
            .max_sector_expiration_extension
            .min(policy.max_sector_lifetime);
        policy.min_sector_expiration..=max
    }
}

/// `comm_d` of an empty sector of `size` (`None` only if the size had no padded piece size).
fn empty_comm_d(size: SectorSize) -> Option<[u8; 32]> {
    let padded = PaddedPieceSize::new(size.bytes()).ok()?;
    comm_d(padded, &[]).ok().map(|n| n.0)
}

impl Genesis {
    /// Checks the genesis against `policy` without building it: the balances fit the supply
    /// ([`ChainError::GenesisOverSupply`]), and every miner and sector follows the rules
    /// ([`ChainError::InvalidGenesis`]): an accepted sector size, no peer id announced twice, no
    /// sector number twice in a miner, no replica (`comm_r`) twice anywhere, canonical
    /// commitments, an empty sector's `comm_d`, an expiration in
    /// [`GenesisSector::expiration_range`]. [`crate::Chain::genesis`] runs it first.
    pub fn validate(&self, policy: &Policy) -> ChainResult<()> {
        self.reward_pool(policy)?;
        self.validate_datacap()?;
        let expirations = GenesisSector::expiration_range(policy);
        let mut peers: BTreeMap<&[u8], usize> = BTreeMap::new();
        let mut replicas: BTreeMap<[u8; 32], (usize, SectorNumber)> = BTreeMap::new();
        for (index, m) in self.miners.iter().enumerate() {
            if !policy.accepts(m.sector_size) {
                return Err(GenesisError::SectorSize {
                    miner: index,
                    size: m.sector_size,
                }
                .into());
            }
            if !m.peer_id.is_empty() {
                if let Some(&first) = peers.get(m.peer_id.as_slice()) {
                    return Err(GenesisError::DuplicatePeerId {
                        miner: index,
                        first,
                    }
                    .into());
                }
                peers.insert(&m.peer_id, index);
            }
            let empty = empty_comm_d(m.sector_size);
            let mut numbers = BTreeSet::new();
            for s in &m.sectors {
                let sector = s.sector_number;
                if !numbers.insert(sector) {
                    return Err(GenesisError::DuplicateSector {
                        miner: index,
                        sector,
                    }
                    .into());
                }
                if !expirations.contains(&s.expiration) {
                    return Err(GenesisError::Expiration {
                        miner: index,
                        sector,
                        expiration: s.expiration,
                        min: *expirations.start(),
                        max: *expirations.end(),
                    }
                    .into());
                }
                for (bytes, which) in [
                    (&s.comm_r, CommitmentKind::CommR),
                    (&s.comm_d, CommitmentKind::CommD),
                ] {
                    if Node(*bytes).to_fr().is_none() {
                        return Err(GenesisError::Commitment {
                            miner: index,
                            sector,
                            which,
                        }
                        .into());
                    }
                }
                if empty != Some(s.comm_d) {
                    return Err(GenesisError::NotCommittedCapacity {
                        miner: index,
                        sector,
                    }
                    .into());
                }
                match replicas.entry(s.comm_r) {
                    Entry::Occupied(e) => {
                        let (first_miner, first_sector) = *e.get();
                        return Err(GenesisError::DuplicateReplica {
                            miner: index,
                            sector,
                            first_miner,
                            first_sector,
                        }
                        .into());
                    }
                    Entry::Vacant(e) => {
                        e.insert((index, sector));
                    }
                }
            }
        }
        Ok(())
    }

    /// Verifiers and verified clients: each key once, never the root's, a verifier never a
    /// client (the rules of `AddVerifier` and `AddVerifiedClient`).
    fn validate_datacap(&self) -> ChainResult<()> {
        let mut seen = BTreeSet::from([self.verifreg_root]);
        let keys = self
            .verifiers
            .iter()
            .map(|v| v.key)
            .chain(self.verified_clients.iter().map(|c| c.key));
        for (index, key) in keys.enumerate() {
            if !seen.insert(key) {
                return Err(GenesisError::DataCapHolder { index }.into());
            }
        }
        Ok(())
    }

    /// The actor ids [`crate::Chain::genesis`] gives the miners, in order: ids are handed out from
    /// the first user id to each new key of the accounts, then the verified registry's root, then
    /// per miner its owner's and worker's keys when new, and the miner itself. A sealer needs the
    /// id (it is part of the replica id) before the genesis is written.
    pub fn miner_ids(&self) -> Vec<ActorId> {
        let mut known = BTreeSet::new();
        let mut next = FIRST_USER_ID;
        // An id per distinct key; the counts are bounded by the genesis's length, far below u64::MAX.
        let mut account = |key: &PublicKey, next: &mut u64| {
            if known.insert(*key) {
                *next = next.saturating_add(1);
            }
        };
        for (key, _) in &self.accounts {
            account(key, &mut next);
        }
        account(&self.verifreg_root, &mut next);
        let mut ids = Vec::with_capacity(self.miners.len());
        for m in &self.miners {
            account(&m.owner, &mut next);
            account(&m.worker, &mut next);
            ids.push(ActorId(next));
            next = next.saturating_add(1);
        }
        ids
    }

    /// What the reward actor holds: the supply less the accounts' and miners' balances.
    fn reward_pool(&self, policy: &Policy) -> ChainResult<TokenAmount> {
        let allocated = self
            .accounts
            .iter()
            .map(|(_, b)| *b)
            .chain(self.miners.iter().map(|m| m.balance))
            .chain(self.verifiers.iter().map(|v| v.balance))
            .chain(self.verified_clients.iter().map(|c| c.balance))
            .try_fold(TokenAmount::ZERO, TokenAmount::checked_add);
        allocated
            .and_then(|a| policy.total_supply.checked_sub(a))
            .ok_or(ChainError::GenesisOverSupply)
    }
}

/// Writes the genesis state into `rt` (at epoch 0), after [`Genesis::validate`].
pub(crate) fn build(rt: &mut Runtime<'_, '_>, genesis: &Genesis) -> ChainResult<()> {
    let policy = rt.policy;
    genesis.validate(policy)?;
    rt.state.put(
        keys::GLOBALS.to_vec(),
        &Globals {
            next_actor_id: FIRST_USER_ID,
        },
    )?;
    let reward_pool = genesis.reward_pool(policy)?;
    for (id, kind) in SINGLETONS {
        let balance = if id == actors::REWARD {
            reward_pool
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
    for m in &genesis.miners {
        build_miner(rt, m).map_err(ChainError::implicit(ImplicitOp::Genesis))?;
    }
    build_datacap(rt, genesis)
}

/// Creates the genesis verifiers and verified clients (after the miners), funds them and records
/// their allowances and DataCap as granted.
fn build_datacap(rt: &mut Runtime<'_, '_>, genesis: &Genesis) -> ChainResult<()> {
    if genesis.verifiers.is_empty() && genesis.verified_clients.is_empty() {
        return Ok(());
    }
    let fund = |rt: &mut Runtime<'_, '_>, key: &PublicKey, balance: TokenAmount| {
        let id = rt
            .resolve_or_create(&Address::Bls(*key))
            .map_err(ChainError::implicit(ImplicitOp::Genesis))?;
        let mut a = rt
            .expect_actor(id)
            .map_err(ChainError::implicit(ImplicitOp::Genesis))?;
        a.balance = a
            .balance
            .checked_add(balance)
            .ok_or(OutOfRange("a genesis balance"))?;
        rt.put_actor(id, &a)?;
        Ok::<_, ChainError>(id)
    };
    let mut st: verifreg::VerifRegState = rt
        .state
        .get(keys::VERIFREG)?
        .ok_or_else(|| ChainError::Corrupt("verified registry state missing".into()))?;
    for v in &genesis.verifiers {
        let id = fund(rt, &v.key, v.balance)?;
        rt.state.put(keys::verifier(id), &v.allowance)?;
        st.total_granted = st
            .total_granted
            .checked_add(v.allowance)
            .ok_or(OutOfRange("genesis DataCap"))?;
    }
    for c in &genesis.verified_clients {
        let id = fund(rt, &c.key, c.balance)?;
        if c.datacap > 0 {
            rt.state.put(keys::datacap(id), &c.datacap)?;
        }
        st.total_granted = st
            .total_granted
            .checked_add(c.datacap)
            .ok_or(OutOfRange("genesis DataCap"))?;
    }
    rt.state.put(keys::VERIFREG.to_vec(), &st)
}

/// Creates one genesis miner as `CreateMiner` would, funds it and activates its sectors.
fn build_miner(rt: &mut Runtime<'_, '_>, m: &GenesisMiner) -> ActorResult<ActorId> {
    let owner = rt.resolve_or_create(&Address::Bls(m.owner))?;
    let worker = rt.resolve_or_create(&Address::Bls(m.worker))?;
    let id = miner::create(
        rt,
        owner,
        &Address::Id(worker),
        m.sector_size,
        m.peer_id.clone(),
        m.multiaddrs.clone(),
    )?;
    if !m.balance.is_zero() {
        let mut a = rt.expect_actor(id)?;
        a.balance = m.balance;
        rt.put_actor(id, &a)?;
    }
    for s in &m.sectors {
        miner::activate_genesis_sector(rt, id, s.sector_number, s.comm_r, s.expiration)?;
    }
    Ok(id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lode_proofs::porep::PorepPublic;
    use lode_proofs::verifier::{
        ProofVerifier, VerifyError, WindowPostStatement, WinningPostStatement,
    };

    use super::*;
    use crate::Chain;
    use crate::crypto::SecretKey;
    use crate::store::StateStore;

    /// Genesis checks no proof: a verifier that refuses everything.
    struct Refuse;

    impl ProofVerifier for Refuse {
        fn verify_seal(&self, _: &PorepPublic, _: &[Vec<u8>]) -> Result<(), VerifyError> {
            Err(VerifyError::Statement("refused"))
        }
        fn verify_window_post(&self, _: &WindowPostStatement, _: &[u8]) -> Result<(), VerifyError> {
            Err(VerifyError::Statement("refused"))
        }
        fn verify_winning_post(
            &self,
            _: &WinningPostStatement,
            _: &[u8],
        ) -> Result<(), VerifyError> {
            Err(VerifyError::Statement("refused"))
        }
    }

    fn key(i: u8) -> PublicKey {
        SecretKey::from_seed(&[i; 32]).public_key()
    }

    fn miner(owner: u8, worker: u8, sectors: &[(u64, u8)]) -> GenesisMiner {
        let policy = Policy::devnet();
        GenesisMiner {
            owner: key(owner),
            worker: key(worker),
            sector_size: SectorSize::S2KiB,
            balance: TokenAmount::ZERO,
            peer_id: Vec::new(),
            multiaddrs: Vec::new(),
            sectors: sectors
                .iter()
                .map(|&(n, r)| GenesisSector {
                    sector_number: n,
                    comm_r: [r; 32],
                    comm_d: empty_comm_d(SectorSize::S2KiB).unwrap(),
                    expiration: *GenesisSector::expiration_range(&policy).start(),
                })
                .collect(),
        }
    }

    #[test]
    fn miner_ids_are_the_ids_genesis_gives() {
        // Keys shared every way: an account twice, the root as an owner, a worker that is an
        // account, an owner and a worker that are new, one worker for two miners.
        let genesis = Genesis {
            accounts: vec![
                (key(1), TokenAmount(5)),
                (key(2), TokenAmount(5)),
                (key(1), TokenAmount(5)),
            ],
            verifreg_root: key(3),
            verifiers: Vec::new(),
            verified_clients: Vec::new(),
            beacon: [7; 32],
            miners: vec![
                miner(3, 1, &[(1, 1)]),
                miner(4, 5, &[(1, 2), (9, 3)]),
                miner(2, 5, &[]),
                miner(6, 6, &[(3, 4)]),
            ],
        };
        let ids = genesis.miner_ids();
        assert_eq!(ids, [103, 106, 107, 109].map(ActorId));
        let chain = Chain::genesis(
            StateStore::memory(),
            Policy::devnet(),
            &genesis,
            Box::new(Refuse),
        )
        .unwrap();
        chain.view(|rt| {
            for (id, m) in ids.iter().zip(&genesis.miners) {
                let info = miner::info(rt, *id).unwrap();
                assert_eq!(info.worker_key, m.worker);
                assert_eq!(rt.account_key(info.owner).unwrap(), m.owner);
                let claim = power::claim(rt, *id).unwrap().unwrap();
                assert_eq!(claim.power.raw, 2048 * m.sectors.len() as u128);
            }
            assert_eq!(rt.globals().unwrap().next_actor_id, 110);
        });
        assert_eq!(
            crate::invariants::check_invariants(chain.store(), &Policy::devnet()).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn expiration_range_is_that_of_a_sector_activated_at_epoch_zero() {
        let mut p = Policy::devnet();
        let r = GenesisSector::expiration_range(&p);
        assert_eq!(*r.start(), p.min_sector_expiration);
        assert_eq!(*r.end(), p.max_sector_expiration_extension);
        p.max_sector_lifetime = p.max_sector_expiration_extension - 1;
        assert_eq!(
            *GenesisSector::expiration_range(&p).end(),
            p.max_sector_lifetime
        );
    }
}
