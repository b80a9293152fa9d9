//! Sync speed: how many epochs per second a fresh node imports when it syncs a 1,000-epoch chain
//! from a peer.
//!
//! The chain is made once, before the timings, by a `NodeCore` with two genesis miners (2 KiB
//! sectors): every epoch each miner submits its Window PoSt when a window is open, the mempool
//! gets [`TRANSFERS`] signed transfers, and every miner that wins makes a block from its mining
//! base (the messages unsigned, their aggregate in the header) that the node accepts — with
//! `lode_testkit::mining`, as the consensus tests in `node/tests/integration/consensus.rs` do. A timed run opens a fresh node in a new
//! directory and syncs the way the service does: it asks the peer for the ancestors of its head
//! (`MAX_SYNC_TIPSETS` per request, `NodeCore::serve`), stores them (`NodeCore::import`), and
//! switches to the head (`NodeCore::consider`), which validates and applies every tipset and
//! commits it (sled, flushed per epoch). The network between the two is not involved.
//!
//! Two rows: the node's directory on the development disk (every epoch's commits flushed with
//! fsync, as always), and in `/dev/shm` (tmpfs, where a flush costs nothing) — the same work
//! without the disk's latency, i.e. what the CPU allows. The first sync of each prints its wall
//! and CPU time.
//!
//! Proofs are fakes checked by the test verifier (`lode_testkit::harness::FakeVerifier`: a hash of
//! the statement), the seam the node's tests use; everything else — BLS signatures of headers,
//! tickets and election proofs, each block's aggregate, state, stores — is the real path.
//! Throughput is reported in epochs per second.
//!
//! `cargo bench -p lode-benches --bench sync`

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use lode_chain::crypto::SecretKey;
use lode_chain::genesis::{GenesisMiner, GenesisSector};
use lode_chain::message::{Message, Method};
use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_chain::{Genesis, Policy};
use lode_node::core::{BlockVerdict, CoreConfig, NodeCore};
use lode_node::genesis::GenesisFile;
use lode_node::wire::{FullBlock, MAX_SYNC_TIPSETS, SyncRequest, SyncResponse};
use lode_proofs::sector::SectorSize;
use lode_testkit::harness::{FakeVerifier, node};
use lode_testkit::mining::{make_block, push_window_posts};

/// Epochs in the synced chain.
const EPOCHS: u64 = 1_000;
/// Transfers sent each epoch (each block carries those pending when it is made).
const TRANSFERS: usize = 10;
/// Accounts that send them, in turn.
const SENDERS: usize = 40;
const T0: u64 = 1_700_000_000;

fn key(seed: u64) -> SecretKey {
    SecretKey::from_seed(blake3::hash(&seed.to_le_bytes()).as_bytes())
}

fn or_die<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

struct Miner {
    id: ActorId,
    worker: SecretKey,
}

/// Two miners (owners `key(10 + i)`, workers `key(20 + i)`) and [`SENDERS`] funded accounts.
fn genesis_file() -> (GenesisFile, Vec<Miner>) {
    let policy = Policy::devnet();
    let exp = *GenesisSector::expiration_range(&policy).start();
    let empty = or_die(
        lode_proofs::piece::comm_d(
            or_die(lode_proofs::piece::PaddedPieceSize::new(2048), "size"),
            &[],
        ),
        "comm_d",
    )
    .0;
    let mut accounts: Vec<_> = (0..2u64)
        .flat_map(|i| {
            [
                (key(10 + i).public_key(), TokenAmount::tokens(1000)),
                (key(20 + i).public_key(), TokenAmount::tokens(100)),
            ]
        })
        .collect();
    accounts.extend(
        (0..SENDERS as u64).map(|i| (key(100 + i).public_key(), TokenAmount::tokens(1000))),
    );
    let mut g = Genesis {
        accounts,
        verifreg_root: key(1).public_key(),
        verifiers: Vec::new(),
        verified_clients: Vec::new(),
        beacon: [7; 32],
        miners: Vec::new(),
    };
    for i in 0..2u64 {
        g.miners.push(GenesisMiner {
            owner: key(10 + i).public_key(),
            worker: key(20 + i).public_key(),
            sector_size: SectorSize::S2KiB,
            balance: TokenAmount::tokens(10),
            peer_id: Vec::new(),
            multiaddrs: Vec::new(),
            sectors: (0..2u64)
                .map(|n| GenesisSector {
                    sector_number: n,
                    comm_r: node(&format!("m{i}s{n}")),
                    comm_d: empty,
                    expiration: exp,
                })
                .collect(),
        });
    }
    let miners = g
        .miner_ids()
        .into_iter()
        .zip(0..)
        .map(|(id, i)| Miner {
            id,
            worker: key(20 + i),
        })
        .collect();
    (
        GenesisFile {
            policy,
            timestamp: T0,
            genesis: g,
        },
        miners,
    )
}

fn open(dir: &std::path::Path, g: &GenesisFile) -> NodeCore {
    or_die(
        NodeCore::open(
            dir,
            g.clone(),
            Box::new(FakeVerifier),
            CoreConfig::default(),
        ),
        "open a node",
    )
}

/// The block `m` makes at `epoch` on `core`'s head, if it wins.
fn try_block(core: &mut NodeCore, m: &Miner, epoch: u64) -> Option<FullBlock> {
    let mb = or_die(core.miner_base(m.id, epoch), "a mining base");
    or_die(
        make_block(&core.genesis().policy, m.id, &m.worker, &mb),
        "an aggregate",
    )
}

/// Pushes `m`'s Window PoSt (fake proofs) for every deadline open at the next epoch.
fn post(core: &mut NodeCore, m: &Miner) {
    or_die(push_window_posts(core, m.id, &m.worker), "a proving view");
}

/// [`TRANSFERS`] transfers for epoch `e`, from the senders in turn.
fn transfers(core: &mut NodeCore, e: u64) {
    let policy = core.genesis().policy.clone();
    for t in 0..TRANSFERS as u64 {
        let i = (e * TRANSFERS as u64 + t) % SENDERS as u64;
        let k = key(100 + i);
        let from = Address::Bls(k.public_key());
        let to = Address::Bls(key(100 + (i + 1) % SENDERS as u64).public_key());
        let Some(nonce) = core.next_nonce(&from) else {
            continue;
        };
        let msg = Message {
            from,
            to,
            nonce,
            value: TokenAmount::atto(1 + u128::from(e)),
            method: Method::Send,
            gas_limit: 1_000_000,
            gas_price: policy.min_gas_price,
        };
        let _ = core.push_message(msg.sign(&policy.network, &k));
    }
}

/// The chain: [`EPOCHS`] epochs made by the two miners on a node in `dir`.
fn make_chain(dir: &std::path::Path, g: &GenesisFile, miners: &[Miner]) -> (NodeCore, u64) {
    let mut core = open(dir, g);
    let mut messages = 0u64;
    for e in 1..=EPOCHS {
        for m in miners {
            post(&mut core, m);
        }
        transfers(&mut core, e);
        let blocks: Vec<FullBlock> = miners
            .iter()
            .filter_map(|m| try_block(&mut core, m, e))
            .collect();
        for b in blocks {
            messages += b.messages.len() as u64;
            let v = or_die(core.receive_block(b, g.slot_time(e)), "a block");
            assert_eq!(v, BlockVerdict::Accepted, "epoch {e}");
        }
    }
    (core, messages)
}

/// Syncs `to` from `from` as the service does: ancestors of the head until known, then the switch.
fn sync(to: &mut NodeCore, from: &NodeCore) {
    let target = from.head().key.clone();
    let target_hash = target.hash();
    let now = from.genesis().slot_time(from.head_epoch());
    let mut want = Some(target);
    while let Some(k) = want {
        let SyncResponse::Tipsets(ts) = from.serve(&SyncRequest::Ancestors {
            head: k,
            count: MAX_SYNC_TIPSETS,
        }) else {
            panic!("the peer sent no tipsets")
        };
        or_die(to.import(ts, now), "import");
        want = to.missing_ancestor(&target_hash);
    }
    or_die(to.consider(target_hash), "switch to the synced head");
}

fn sync_bench(c: &mut Criterion) {
    let (g, miners) = genesis_file();
    let source_dir = or_die(tempfile::tempdir(), "a directory");
    let t = Instant::now();
    let (source, messages) = make_chain(source_dir.path(), &g, &miners);
    let head = source.head_epoch();
    let tipsets = (1..=head)
        .filter(|e| source.tipset_at(*e).is_some())
        .count();
    eprintln!(
        "sync: made a chain of {head} epochs ({tipsets} tipsets, {messages} block messages) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let shm = std::path::Path::new("/dev/shm");
    let places: Vec<(&str, Option<&std::path::Path>)> = if shm.is_dir() {
        vec![("disk", None), ("tmpfs", Some(shm))]
    } else {
        vec![("disk", None)]
    };
    let fresh_dir = |place: Option<&std::path::Path>| {
        or_die(
            match place {
                Some(p) => tempfile::tempdir_in(p),
                None => tempfile::tempdir(),
            },
            "a directory",
        )
    };
    // A first sync checks the result (the same head and state) and says what it cost.
    for (name, place) in &places {
        let d = fresh_dir(*place);
        let mut fresh = open(d.path(), &g);
        let (t, cpu) = (Instant::now(), cpu_seconds());
        sync(&mut fresh, &source);
        eprintln!(
            "sync ({name}): {:.2} s wall, {:.2} s CPU (user + system, all threads)",
            t.elapsed().as_secs_f64(),
            cpu_seconds() - cpu
        );
        assert_eq!(fresh.head_hash(), source.head_hash());
        assert_eq!(fresh.chain().head().root, source.chain().head().root);
    }
    let mut group = c.benchmark_group("sync");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(60))
        .throughput(Throughput::Elements(head));
    for (name, place) in &places {
        let id = format!("{EPOCHS}_epochs_{TRANSFERS}_transfers_per_epoch_{name}");
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let d = fresh_dir(*place);
                    let mut fresh = open(d.path(), &g);
                    let t = Instant::now();
                    sync(&mut fresh, &source);
                    total += t.elapsed();
                    assert_eq!(fresh.head_hash(), source.head_hash());
                }
                total
            });
        });
    }
    group.finish();
}

/// This process's CPU time so far (user + system, every thread), from `/proc/self/stat`; zero
/// where that cannot be read.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name (which ends at the last ')'): utime is the 12th, stime
    // the 13th, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

criterion_group!(benches, sync_bench);
criterion_main!(benches);
