//! `lode genesis new`: a genesis with miners whose sectors are sealed for real at creation.
//!
//! Layout written under the output directory:
//!
//! | path | what |
//! |---|---|
//! | `genesis.json` | the genesis file every node and provider loads |
//! | `keys/faucet.key` | a funded account's BLS key (hex, `0600`): import it to send funds |
//! | `keys/client.key` | a funded storage client holding DataCap from genesis (for verified deals) |
//! | `keys/verifier.key` | a verifier from genesis, with DataCap to grant (`lode verifreg grant-datacap`) |
//! | `keys/verifreg-root.key` | the verified registry's root (appoints verifiers; unfunded) |
//! | `keys/owner-<i>.key` | miner `i`'s owner key |
//! | `miner-<i>/worker.key` | miner `i`'s worker key (signs blocks and proofs) |
//! | `miner-<i>/sectors/` | miner `i`'s pre-sealed sectors |

use std::path::{Path, PathBuf};

use lode_chain::crypto::SecretKey;
use lode_chain::genesis::{GenesisClient, GenesisVerifier};
use lode_chain::genesis::{GenesisMiner, GenesisSector};
use lode_chain::types::{ActorId, TokenAmount};
use lode_chain::{Genesis, Policy};
use lode_node::genesis::GenesisFile;
use lode_proofs::sector::SectorSize;
use lode_provider::run::{read_key_file, write_key_file};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::error::{DevnetError, DevnetResult};

/// What `lode genesis new` builds.
#[derive(Clone, Debug)]
pub struct GenesisOptions {
    /// The rules; `policy.network` names the network.
    pub policy: Policy,
    /// Unix time of epoch 0.
    pub timestamp: u64,
    /// Genesis miners.
    pub miners: usize,
    /// Pre-sealed sectors per miner.
    pub sectors_per_miner: u64,
    /// Their sector size (one the policy accepts).
    pub sector_size: SectorSize,
    /// The faucet account's balance.
    pub faucet: TokenAmount,
    /// Each owner's balance.
    pub owner_balance: TokenAmount,
    /// Each worker's balance (it pays for Window PoSt messages).
    pub worker_balance: TokenAmount,
    /// Each miner actor's free balance: the pre-commit deposits and initial pledges of the
    /// sectors its operator pledges come out of it.
    pub miner_balance: TokenAmount,
}

/// The devnet client's balance (`keys/client.key`).
pub const CLIENT_BALANCE: TokenAmount = TokenAmount::tokens(10_000);
/// The devnet client's DataCap from genesis: 1 GiB.
pub const CLIENT_DATACAP: u128 = 1 << 30;
/// The devnet verifier's balance (`keys/verifier.key`), for the gas of its grants.
pub const VERIFIER_BALANCE: TokenAmount = TokenAmount::tokens(100);
/// The DataCap the devnet verifier may grant: 1 TiB.
pub const VERIFIER_ALLOWANCE: u128 = 1 << 40;

/// The devnet client's key file under `out`.
pub fn client_key_path(out: &Path) -> PathBuf {
    out.join("keys").join("client.key")
}

/// The devnet verifier's key file under `out`.
pub fn verifier_key_path(out: &Path) -> PathBuf {
    out.join("keys").join("verifier.key")
}

/// Gives a genesis without verifiers or verified clients the devnet's: a verifier
/// (`keys/verifier.key`) and a funded client with DataCap (`keys/client.key`), their keys read
/// when present under `out` and generated otherwise. They come after the miners, so the miners'
/// ids — and their sealed sectors — stay valid. A genesis that has some keeps them.
///
/// # Errors
/// [`DevnetError`] when a key file cannot be read or written, or no randomness is available.
pub fn ensure_market_participants(out: &Path, genesis: &mut Genesis) -> DevnetResult<()> {
    if !genesis.verifiers.is_empty() || !genesis.verified_clients.is_empty() {
        return Ok(());
    }
    let mut rng = os_rng()?;
    let mut load_or_create = |path: PathBuf| -> DevnetResult<SecretKey> {
        if path.exists() {
            return Ok(read_key_file(&path)?);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(DevnetError::io(parent))?;
        }
        let key = SecretKey::generate(&mut rng);
        write_key_file(&path, &key)?;
        Ok(key)
    };
    let verifier = load_or_create(verifier_key_path(out))?;
    let client = load_or_create(client_key_path(out))?;
    genesis.verifiers.push(GenesisVerifier {
        key: verifier.public_key(),
        balance: VERIFIER_BALANCE,
        allowance: VERIFIER_ALLOWANCE,
    });
    genesis.verified_clients.push(GenesisClient {
        key: client.public_key(),
        balance: CLIENT_BALANCE,
        datacap: CLIENT_DATACAP,
    });
    Ok(())
}

impl GenesisOptions {
    /// A devnet genesis: the devnet policy under `network`, starting at `timestamp`.
    pub fn devnet(network: &str, timestamp: u64) -> Self {
        let mut policy = Policy::devnet();
        policy.network = network.to_string();
        GenesisOptions {
            policy,
            timestamp,
            miners: 2,
            sectors_per_miner: 2,
            sector_size: SectorSize::S2KiB,
            faucet: TokenAmount::tokens(1_000_000),
            owner_balance: TokenAmount::tokens(10_000),
            worker_balance: TokenAmount::tokens(1_000),
            miner_balance: TokenAmount::tokens(1_000),
        }
    }
}

/// One genesis miner as built.
#[derive(Clone, Debug)]
pub struct BuiltMiner {
    /// Its actor id.
    pub actor: ActorId,
    /// Its directory (worker key, sectors).
    pub dir: PathBuf,
}

/// The directory of miner `i`.
pub fn miner_dir(out: &Path, i: usize) -> PathBuf {
    out.join(format!("miner-{i}"))
}

/// The genesis file's path under `out`.
pub fn genesis_path(out: &Path) -> PathBuf {
    out.join("genesis.json")
}

/// The faucet key's path under `out`.
pub fn faucet_key_path(out: &Path) -> PathBuf {
    out.join("keys").join("faucet.key")
}

fn os_rng() -> DevnetResult<ChaCha20Rng> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| DevnetError::Random(e.to_string()))?;
    Ok(ChaCha20Rng::from_seed(seed))
}

/// Builds a genesis under `out` (see the module docs): fresh keys, every miner's sectors sealed
/// (`progress(done, total)` after each), `genesis.json` written last. `cache_dir` holds the SDR
/// parent cache.
///
/// # Errors
/// [`DevnetError`]: an invalid combination (a sector size the policy refuses), sealing or
/// writing failures.
pub fn new_genesis(
    out: &Path,
    cache_dir: &Path,
    opts: &GenesisOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> DevnetResult<(GenesisFile, Vec<BuiltMiner>)> {
    if !opts.policy.sector_sizes.contains(&opts.sector_size) {
        return Err(DevnetError::Genesis(format!(
            "the {} policy does not accept {} sectors (it accepts {})",
            opts.policy.network,
            opts.sector_size,
            opts.policy
                .sector_sizes
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let keys_dir = out.join("keys");
    std::fs::create_dir_all(&keys_dir).map_err(DevnetError::io(&keys_dir))?;
    let mut rng = os_rng()?;
    let faucet = SecretKey::generate(&mut rng);
    write_key_file(&faucet_key_path(out), &faucet)?;
    let root = SecretKey::generate(&mut rng);
    write_key_file(&keys_dir.join("verifreg-root.key"), &root)?;
    let mut beacon = [0u8; 32];
    getrandom::fill(&mut beacon).map_err(|e| DevnetError::Random(e.to_string()))?;
    let mut genesis = Genesis {
        accounts: vec![(faucet.public_key(), opts.faucet)],
        verifreg_root: root.public_key(),
        verifiers: Vec::new(),
        verified_clients: Vec::new(),
        beacon,
        miners: Vec::new(),
    };
    let mut workers = Vec::new();
    for i in 0..opts.miners {
        let owner = SecretKey::generate(&mut rng);
        let worker = SecretKey::generate(&mut rng);
        write_key_file(&keys_dir.join(format!("owner-{i}.key")), &owner)?;
        let dir = miner_dir(out, i);
        std::fs::create_dir_all(&dir).map_err(DevnetError::io(&dir))?;
        write_key_file(&dir.join("worker.key"), &worker)?;
        genesis
            .accounts
            .push((owner.public_key(), opts.owner_balance));
        genesis
            .accounts
            .push((worker.public_key(), opts.worker_balance));
        genesis.miners.push(GenesisMiner {
            owner: owner.public_key(),
            worker: worker.public_key(),
            sector_size: opts.sector_size,
            balance: opts.miner_balance,
            peer_id: Vec::new(),
            multiaddrs: Vec::new(),
            sectors: Vec::new(),
        });
        workers.push(dir);
    }
    let ids = genesis.miner_ids();
    let expiration = *GenesisSector::expiration_range(&opts.policy).end();
    let total = (opts.miners as u64).saturating_mul(opts.sectors_per_miner);
    let mut done = 0u64;
    let mut built = Vec::new();
    for ((m, id), dir) in genesis.miners.iter_mut().zip(&ids).zip(workers) {
        let sectors = dir.join("sectors");
        std::fs::create_dir_all(&sectors).map_err(DevnetError::io(&sectors))?;
        for n in 0..opts.sectors_per_miner {
            m.sectors.push(lode_provider::preseal::preseal(
                &sectors,
                cache_dir,
                *id,
                opts.sector_size,
                n,
                expiration,
            )?);
            done = done.saturating_add(1);
            progress(done, total);
        }
        built.push(BuiltMiner { actor: *id, dir });
    }
    ensure_market_participants(out, &mut genesis)?;
    genesis
        .validate(&opts.policy)
        .map_err(|e| DevnetError::Genesis(e.to_string()))?;
    let file = GenesisFile {
        policy: opts.policy.clone(),
        timestamp: opts.timestamp,
        genesis,
    };
    file.save(&genesis_path(out))?;
    Ok((file, built))
}
