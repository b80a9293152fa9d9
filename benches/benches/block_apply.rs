//! Message throughput: one epoch of `N` signed transfers between distinct accounts (a ring: account
//! `i` pays account `i + 1`, senders named by id) applied to a genesis state, in one block by the
//! genesis miner, committed. Two ways:
//!
//! - `per_message`: `Chain::apply_epoch` with the block's header and the messages each with its own
//!   signature, checked one by one (in parallel) — how every message was checked before blocks
//!   carried one aggregate;
//! - `aggregate`: `Chain::apply_tipset` with the block as the network carries it, messages unsigned
//!   under the header's aggregate: one multi-pairing per block.
//!
//! Throughput is reported in transfers per second. The `bls` group times the signature checks
//! alone for 2,000 messages: one by one, the aggregate (`lode_chain::crypto`, blst), and the same
//! aggregate check written with the `bls12_381` crate (hash to G2 and Miller loops in parallel,
//! one final exponentiation) — why the chain verifies with blst.
//!
//! The block's header is validated as always; its Winning PoSt is checked by the test verifier
//! (`lode_testkit::harness::FakeVerifier`, which accepts a hash of the statement), the seam the
//! chain's tests use. Transfers call no proof. Signing is done once, outside the timings, and each
//! timed epoch starts from a fresh genesis state (built outside the timing).
//!
//! `cargo bench -p lode-benches --bench block_apply`

use std::time::Duration;

use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use lode_chain::block::{Block, Tipset};
use lode_chain::chain::EpochInput;
use lode_chain::crypto::{PublicKey, SecretKey, Signature, aggregate_verify};
use lode_chain::genesis::{Genesis, GenesisMiner, GenesisSector};
use lode_chain::message::{Message, Method, SignedMessage};
use lode_chain::store::StateStore;
use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_chain::{ExitCode, Policy};
use lode_proofs::sector::SectorSize;
use lode_testkit::harness::{
    FakeVerifier, Harness, beacon, comm_d, devnet_genesis, fake_winning_proof, key, node,
};

/// Block sizes measured.
const SIZES: [usize; 2] = [2_000, 5_000];

/// Everything one size needs: the genesis, the signed transfers and the block carrying them.
struct Setup {
    genesis: Genesis,
    miner: ActorId,
    /// Null rounds before the epoch the miner wins (usually none).
    nulls: u64,
    signed: Vec<SignedMessage>,
    block: Block,
}

fn account_key(i: usize) -> SecretKey {
    SecretKey::from_seed(blake3::hash(&(i as u64).to_le_bytes()).as_bytes())
}

fn setup(n: usize) -> Setup {
    let policy = Policy::devnet();
    let mut genesis = devnet_genesis();
    let keys: Vec<SecretKey> = (0..n).map(account_key).collect();
    genesis.accounts.extend(
        keys.iter()
            .map(|k| (k.public_key(), TokenAmount::tokens(1_000))),
    );
    genesis.miners = vec![GenesisMiner {
        owner: key("owner").public_key(),
        worker: key("worker").public_key(),
        sector_size: SectorSize::S2KiB,
        balance: TokenAmount::tokens(50),
        peer_id: Vec::new(),
        multiaddrs: Vec::new(),
        sectors: (1..=2)
            .map(|s| GenesisSector {
                sector_number: s,
                comm_r: node(&format!("bench sector {s}")),
                comm_d: comm_d(2048, &[]),
                expiration: policy.min_sector_expiration + 10 * policy.epochs_in_day(),
            })
            .collect(),
    }];
    let miner = genesis.miner_ids()[0];
    let mut h = harness(&genesis);
    let ids: Vec<ActorId> = keys
        .iter()
        .map(|k| {
            h.chain
                .view(|rt| rt.resolve(&Address::Bls(k.public_key())))
                .expect("the state reads")
                .expect("a genesis account")
        })
        .collect();
    let signed: Vec<SignedMessage> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            Message {
                from: Address::Id(ids[i]),
                to: Address::Id(ids[(i + 1) % n]),
                nonce: 0,
                value: TokenAmount::atto(1 + i as u128),
                method: Method::Send,
                gas_limit: 1_000_000,
                gas_price: policy.min_gas_price,
            }
            .sign(&policy.network, k)
        })
        .collect();
    let mut nulls = 0;
    let block = loop {
        if let Some(b) = h.try_full_block(miner, fake_winning_proof, &signed) {
            break b;
        }
        h.step(Vec::new(), Vec::new());
        nulls += 1;
    };
    Setup {
        genesis,
        miner,
        nulls,
        signed,
        block,
    }
}

/// A fresh chain at the genesis of `s`, through its null rounds.
fn fresh(s: &Setup) -> Harness {
    let mut h = harness(&s.genesis);
    for _ in 0..s.nulls {
        h.step(Vec::new(), Vec::new());
    }
    h
}

fn harness(genesis: &Genesis) -> Harness {
    let mut h = Harness::from_genesis(StateStore::memory(), genesis, Box::new(FakeVerifier), None);
    h.check_every_epoch = false;
    h
}

fn tipset(s: &Setup) -> Tipset {
    let epoch = s.block.header.epoch;
    Tipset {
        epoch,
        beacon: beacon(epoch),
        blocks: vec![s.block.clone()],
    }
}

fn input(s: &Setup) -> EpochInput {
    let epoch = s.block.header.epoch;
    EpochInput {
        epoch,
        beacon: beacon(epoch),
        blocks: vec![s.block.header.clone()],
        messages: s.signed.clone(),
    }
}

fn block_apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("block_apply");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for n in SIZES {
        let s = setup(n);
        // Both ways give the same receipts and the same state, every transfer applied.
        let mut a = fresh(&s);
        let ra = a
            .chain
            .apply_tipset(&tipset(&s))
            .expect("the block applies");
        let mut b = fresh(&s);
        let rb = b.chain.apply_epoch(&input(&s)).expect("the epoch applies");
        assert_eq!(ra, rb);
        assert_eq!(ra.receipts.len(), n);
        assert!(ra.receipts.iter().all(|r| r.exit_code == ExitCode::Ok));
        assert_eq!(ra.rewards.first().map(|r| r.0), Some(s.miner));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("per_message", n), &s, |bench, s| {
            bench.iter_batched(
                || (fresh(s), input(s)),
                |(mut h, input)| {
                    let out = h.chain.apply_epoch(&input).expect("the epoch applies");
                    // Dropped after the timing.
                    (h, out)
                },
                BatchSize::PerIteration,
            );
        });
        g.bench_with_input(BenchmarkId::new("aggregate", n), &s, |bench, s| {
            bench.iter_batched(
                || (fresh(s), tipset(s)),
                |(mut h, tipset)| {
                    let out = h.chain.apply_tipset(&tipset).expect("the block applies");
                    (h, out)
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

/// The aggregate check with the `bls12_381` crate: hashes to G2 and Miller loops in parallel,
/// one final exponentiation.
mod reference {
    use bls12_381::hash_to_curve::{ExpandMsgXmd, HashToCurve};
    use bls12_381::{
        G1Affine, G2Affine, G2Prepared, G2Projective, Gt, MillerLoopResult, multi_miller_loop,
    };
    use rayon::prelude::*;

    pub(crate) fn aggregate_verify(pairs: &[(G1Affine, [u8; 32])], aggregate: &G2Affine) -> bool {
        let dst = lode_chain::crypto::DST;
        let chunk = pairs
            .len()
            .div_ceil(rayon::current_num_threads() * 4)
            .max(1);
        let product = pairs
            .par_chunks(chunk)
            .map(|chunk| {
                let hashed: Vec<G2Prepared> = chunk
                    .iter()
                    .map(|(_, m)| {
                        let h = <G2Projective as HashToCurve<ExpandMsgXmd<sha2::Sha256>>>::hash_to_curve(
                            [m.as_slice()],
                            dst,
                        );
                        G2Prepared::from(G2Affine::from(h))
                    })
                    .collect();
                let terms: Vec<(&G1Affine, &G2Prepared)> =
                    chunk.iter().map(|(pk, _)| pk).zip(hashed.iter()).collect();
                multi_miller_loop(&terms)
            })
            .reduce(MillerLoopResult::default, |a, b| a + b);
        let neg_g1 = -G1Affine::generator();
        let sig = G2Prepared::from(*aggregate);
        (product + multi_miller_loop(&[(&neg_g1, &sig)])).final_exponentiation() == Gt::identity()
    }
}

fn bls(c: &mut Criterion) {
    let n = 2_000;
    let keys: Vec<SecretKey> = (0..n).map(account_key).collect();
    let pks: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
    let msgs: Vec<[u8; 32]> = (0..n as u64)
        .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
        .collect();
    let sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
    let agg = Signature::aggregate(&sigs).expect("an aggregate");
    let pairs: Vec<(&PublicKey, &[u8])> = pks.iter().zip(&msgs).map(|(k, m)| (k, &m[..])).collect();
    let ref_pairs: Vec<(bls12_381::G1Affine, [u8; 32])> = pks
        .iter()
        .zip(&msgs)
        .map(|(k, m)| {
            let pk = bls12_381::G1Affine::from_compressed(&k.to_bytes());
            (Option::from(pk).expect("a valid key"), *m)
        })
        .collect();
    let ref_agg: bls12_381::G2Affine =
        Option::from(bls12_381::G2Affine::from_compressed(&agg.to_bytes())).expect("a valid point");
    assert!(aggregate_verify(&pairs, &agg).is_ok());
    assert!(reference::aggregate_verify(&ref_pairs, &ref_agg));

    let mut g = c.benchmark_group("bls");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(n as u64));
    g.bench_function("verify_each_2000", |b| {
        use rayon::prelude::*;
        b.iter(|| {
            assert!(
                pks.par_iter()
                    .zip(&msgs)
                    .zip(&sigs)
                    .all(|((k, m), s)| k.verify(m, s).is_ok())
            );
        });
    });
    g.bench_function("aggregate_verify_2000", |b| {
        b.iter(|| assert!(aggregate_verify(&pairs, &agg).is_ok()));
    });
    g.bench_function("aggregate_verify_2000_bls12_381", |b| {
        b.iter(|| assert!(reference::aggregate_verify(&ref_pairs, &ref_agg)));
    });
    g.finish();
}

criterion_group!(benches, bls, block_apply);
criterion_main!(benches);
