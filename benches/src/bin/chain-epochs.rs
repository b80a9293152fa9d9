//! Times the chain executor: epochs of signed transfers applied and committed, in memory and on
//! sled (each epoch one atomic batch plus an fsync).
//!
//! `cargo run --release -p lode-benches --bin chain-epochs -- [EPOCHS] [MESSAGES_PER_EPOCH]`

use std::time::Instant;

use lode_chain::chain::EpochInput;
use lode_chain::crypto::SecretKey;
use lode_chain::message::{Message, Method};
use lode_chain::store::StateStore;
use lode_chain::types::{Address, TokenAmount};
use lode_chain::{Chain, Genesis, Policy};
use lode_proofs::params::ParamStore;
use lode_proofs::verifier::SnarkVerifier;

fn beacon(epoch: u64) -> [u8; 32] {
    *blake3::hash(&epoch.to_le_bytes()).as_bytes()
}

fn run(store: StateStore, label: &str, epochs: u64, per_epoch: usize) -> Result<(), String> {
    let policy = Policy::devnet();
    let keys: Vec<SecretKey> = (0..per_epoch.max(1) as u64)
        .map(|i| SecretKey::from_seed(blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let genesis = Genesis {
        accounts: keys
            .iter()
            .map(|k| (k.public_key(), TokenAmount::tokens(1000)))
            .collect(),
        verifreg_root: keys[0].public_key(),
        verifiers: Vec::new(),
        verified_clients: Vec::new(),
        beacon: beacon(0),
        miners: Vec::new(),
    };
    // No proof is verified by transfers; the verifier is never called.
    let verifier = Box::new(SnarkVerifier::new(ParamStore::new(std::env::temp_dir())));
    let mut chain =
        Chain::genesis(store, policy.clone(), &genesis, verifier).map_err(|e| e.to_string())?;
    let mut sign_time = 0.0;
    let start = Instant::now();
    for epoch in 1..=epochs {
        let t = Instant::now();
        let messages = keys
            .iter()
            .enumerate()
            .take(per_epoch)
            .map(|(i, k)| {
                Message {
                    from: Address::Bls(k.public_key()),
                    to: Address::Bls(keys[(i + 1) % keys.len()].public_key()),
                    nonce: epoch - 1,
                    value: TokenAmount::atto(1),
                    method: Method::Send,
                    gas_limit: 1_000_000,
                    gas_price: policy.min_gas_price,
                }
                .sign(&policy.network, k)
            })
            .collect();
        sign_time += t.elapsed().as_secs_f64();
        let out = chain
            .apply_epoch(&EpochInput {
                epoch,
                beacon: beacon(epoch),
                blocks: Vec::new(),
                messages,
            })
            .map_err(|e| e.to_string())?;
        if out.receipts.iter().any(|r| !r.exit_code.is_success()) {
            return Err(format!("a transfer failed at epoch {epoch}"));
        }
    }
    let total = start.elapsed().as_secs_f64() - sign_time;
    println!(
        "{label}: {epochs} epochs × {per_epoch} transfers: {:.2} ms per epoch, {:.0} messages/s (signing excluded), {} records",
        total * 1000.0 / epochs as f64,
        (epochs as f64 * per_epoch as f64) / total,
        chain.store().len()
    );
    Ok(())
}

/// One BLS signature and one verification, timed alone.
fn bls() {
    let key = SecretKey::from_seed(&[7; 32]);
    let pk = key.public_key();
    let n = 50;
    let t = Instant::now();
    let sigs: Vec<_> = (0..n).map(|i: u32| key.sign(&i.to_le_bytes())).collect();
    let sign = t.elapsed().as_secs_f64() / f64::from(n);
    let t = Instant::now();
    let ok = sigs
        .iter()
        .enumerate()
        .all(|(i, s)| pk.verify(&(i as u32).to_le_bytes(), s).is_ok());
    let verify = t.elapsed().as_secs_f64() / f64::from(n);
    println!(
        "BLS (lode_chain::crypto, blst, one core): sign {:.2} ms, verify {:.2} ms{}",
        sign * 1e3,
        verify * 1e3,
        if ok { "" } else { " (FAILED)" }
    );
}

fn main() -> Result<(), String> {
    bls();
    let mut args = std::env::args().skip(1);
    let epochs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let per_epoch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    run(StateStore::memory(), "memory", epochs, per_epoch)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = StateStore::open_sled(dir.path()).map_err(|e| e.to_string())?;
    run(store, "sled  ", epochs, per_epoch)?;
    Ok(())
}
