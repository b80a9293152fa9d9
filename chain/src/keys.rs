//! The state layout: which key holds which record.
//!
//! Keys are ASCII prefixes followed by big-endian integers, so a prefix scan returns records in
//! numeric order. Every record is postcard-encoded (serde), which is deterministic for the chain's
//! types (no maps with unordered keys; `BTreeMap`/`BTreeSet` only).
//!
//! | key | record |
//! |---|---|
//! | `g` | [`crate::runtime::Globals`]: next actor id |
//! | `r/<epoch>` | the epoch's randomness (32 bytes), kept for the lookback window |
//! | `a/<id>` | [`crate::actor::Actor`]: kind, balance, nonce |
//! | `k/<bls key>` | the id of the account with that key |
//! | `m/<id>/i` | miner info (owner, worker, sector size) |
//! | `m/<id>/s` | miner balances, vesting, fee debt, proving period |
//! | `m/<id>/p/<n>` | a pre-committed sector |
//! | `m/<id>/c/<n>` | a committed sector |
//! | `m/<id>/d/<i>` | deadline `i` with its partitions |
//! | `c/<epoch>/<id>` | a miner's deadline cron event |
//! | `P` | power totals and the smoothed QA estimate |
//! | `p/<id>` | a miner's power claim |
//! | `R` | reward: minting state and smoothed reward estimate |
//! | `M` | market totals |
//! | `e/<id>` | market escrow of an actor (total and locked) |
//! | `D/<id>` | a deal (proposal and state) |
//! | `V` | verified registry: root key, next ids |
//! | `v/<id>` | a verifier's remaining allowance |
//! | `t/<id>` | a client's DataCap |
//! | `l/<id>` | an allocation |
//! | `q/<id>` | a claim |
//! | `T/<epoch>/<deal>` | a deal that must be activated by `epoch` |
//! | `h/<hash>` | a published deal proposal (replay protection) |
//! | `C` | compute totals (next job id) |
//! | `j/<id>` | a compute job (terms, slots, outcome) |
//! | `J/<epoch>/<job>` | a compute job that settles at `epoch` |
//! | `n` | the first epoch of the run of null rounds the chain is in (absent after a tipset) |

use crate::types::{ActorId, DealId, Epoch, SectorNumber};

fn with(prefix: &[u8], parts: &[u64]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for p in parts {
        k.push(b'/');
        k.extend_from_slice(&p.to_be_bytes());
    }
    k
}

/// Globals.
pub const GLOBALS: &[u8] = b"g";
/// Power actor state.
pub const POWER: &[u8] = b"P";
/// Reward actor state.
pub const REWARD: &[u8] = b"R";
/// Market actor state.
pub const MARKET: &[u8] = b"M";
/// Verified registry state.
pub const VERIFREG: &[u8] = b"V";
/// The first epoch of the run of null rounds the chain is in: written by the first null round of
/// a run, deleted by the next tipset (so a chain without null rounds never holds it).
pub const NULL_RUN: &[u8] = b"n";

/// Randomness of an epoch.
pub fn randomness(epoch: Epoch) -> Vec<u8> {
    with(b"r", &[epoch])
}
/// Prefix of all randomness records.
pub const RANDOMNESS_PREFIX: &[u8] = b"r/";
/// An actor.
pub fn actor(id: ActorId) -> Vec<u8> {
    with(b"a", &[id.0])
}
/// Prefix of all actors.
pub const ACTOR_PREFIX: &[u8] = b"a/";
/// The account id of a BLS key.
pub fn key_index(pk: &[u8; 48]) -> Vec<u8> {
    let mut k = b"k/".to_vec();
    k.extend_from_slice(pk);
    k
}
/// Miner info.
pub fn miner_info(id: ActorId) -> Vec<u8> {
    let mut k = with(b"m", &[id.0]);
    k.extend_from_slice(b"/i");
    k
}
/// Miner balances and proving state.
pub fn miner_state(id: ActorId) -> Vec<u8> {
    let mut k = with(b"m", &[id.0]);
    k.extend_from_slice(b"/s");
    k
}
/// Prefix of a miner's pre-commits.
pub fn precommit_prefix(id: ActorId) -> Vec<u8> {
    let mut k = with(b"m", &[id.0]);
    k.extend_from_slice(b"/p");
    k
}
/// A pre-committed sector.
pub fn precommit(id: ActorId, n: SectorNumber) -> Vec<u8> {
    with(&precommit_prefix(id), &[n])
}
/// Prefix of a miner's sectors.
pub fn sector_prefix(id: ActorId) -> Vec<u8> {
    let mut k = with(b"m", &[id.0]);
    k.extend_from_slice(b"/c");
    k
}
/// A committed sector.
pub fn sector(id: ActorId, n: SectorNumber) -> Vec<u8> {
    with(&sector_prefix(id), &[n])
}
/// Prefix of a miner's deadlines.
pub fn deadline_prefix(id: ActorId) -> Vec<u8> {
    let mut k = with(b"m", &[id.0]);
    k.extend_from_slice(b"/d");
    k
}
/// A deadline.
pub fn deadline(id: ActorId, index: u64) -> Vec<u8> {
    with(&deadline_prefix(id), &[index])
}
/// Prefix of all miners' records.
pub const MINER_PREFIX: &[u8] = b"m/";
/// Prefix of the cron events of one epoch.
pub fn cron_prefix(epoch: Epoch) -> Vec<u8> {
    let mut k = with(b"c", &[epoch]);
    k.push(b'/');
    k
}
/// A miner's cron event at `epoch`.
pub fn cron(epoch: Epoch, id: ActorId) -> Vec<u8> {
    let mut k = cron_prefix(epoch);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}
/// Prefix of all cron events.
pub const CRON_PREFIX: &[u8] = b"c/";
/// A power claim.
pub fn claim(id: ActorId) -> Vec<u8> {
    with(b"p", &[id.0])
}
/// Prefix of all power claims.
pub const CLAIM_PREFIX: &[u8] = b"p/";
/// Market escrow.
pub fn escrow(id: ActorId) -> Vec<u8> {
    with(b"e", &[id.0])
}
/// Prefix of all escrow records.
pub const ESCROW_PREFIX: &[u8] = b"e/";
/// A deal.
pub fn deal(id: DealId) -> Vec<u8> {
    with(b"D", &[id])
}
/// Prefix of all deals.
pub const DEAL_PREFIX: &[u8] = b"D/";
/// A verifier.
pub fn verifier(id: ActorId) -> Vec<u8> {
    with(b"v", &[id.0])
}
/// Prefix of all verifiers.
pub const VERIFIER_PREFIX: &[u8] = b"v/";
/// A DataCap balance.
pub fn datacap(id: ActorId) -> Vec<u8> {
    with(b"t", &[id.0])
}
/// Prefix of all DataCap balances.
pub const DATACAP_PREFIX: &[u8] = b"t/";
/// An allocation.
pub fn allocation(id: u64) -> Vec<u8> {
    with(b"l", &[id])
}
/// Prefix of all allocations.
pub const ALLOCATION_PREFIX: &[u8] = b"l/";
/// A claim.
pub fn verified_claim(id: u64) -> Vec<u8> {
    with(b"q", &[id])
}
/// Prefix of all verified claims.
pub const VERIFIED_CLAIM_PREFIX: &[u8] = b"q/";

/// Reads the trailing big-endian u64 of a key.
pub fn last_u64(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(*key.last_chunk::<8>()?))
}

/// A readable rendering of a key for error messages.
pub fn describe(key: &[u8]) -> String {
    key.iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// A deal's activation deadline (its start epoch) in the market's cron index.
pub fn deal_start(epoch: Epoch, deal: DealId) -> Vec<u8> {
    with(b"T", &[epoch, deal])
}
/// Prefix of the deals starting at `epoch`.
pub fn deal_start_prefix(epoch: Epoch) -> Vec<u8> {
    let mut k = with(b"T", &[epoch]);
    k.push(b'/');
    k
}
/// A published proposal's hash (replay protection).
pub fn proposal_hash(hash: &[u8; 32]) -> Vec<u8> {
    let mut k = b"h/".to_vec();
    k.extend_from_slice(hash);
    k
}
/// Compute actor totals.
pub const COMPUTE: &[u8] = b"C";
/// A compute job.
pub fn job(id: u64) -> Vec<u8> {
    with(b"j", &[id])
}
/// Prefix of all compute jobs.
pub const JOB_PREFIX: &[u8] = b"j/";
/// A compute job's settlement in the compute actor's cron index.
pub fn job_settle(epoch: Epoch, job: u64) -> Vec<u8> {
    with(b"J", &[epoch, job])
}
/// Prefix of the jobs settling at `epoch`.
pub fn job_settle_prefix(epoch: Epoch) -> Vec<u8> {
    let mut k = with(b"J", &[epoch]);
    k.push(b'/');
    k
}
