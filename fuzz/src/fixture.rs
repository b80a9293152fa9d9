//! What the targets check their inputs against, built once per process: a sealed 2 KiB sector with
//! its vanilla proofs, a Groth16 key, a node core holding a short chain and another one behind it,
//! a running node service for the RPC target, and the devnet chain the chain target applies
//! messages to.
//!
//! Everything here is honest input made by lode itself; the seeds (`crate::seeds`) are its encodings.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use bellman::gadgets::num::AllocatedNum;
use bellman::{Circuit, ConstraintSystem, SynthesisError};
use bls12_381::{Bls12, Scalar};
use groth16::{Parameters, PreparedVerifyingKey, Proof};
use lode_chain::Policy;
use lode_chain::genesis::{Genesis, GenesisMiner, GenesisSector};
use lode_chain::message::{Message, Method, SignedMessage};
use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_node::core::{CoreConfig, NodeCore};
use lode_node::genesis::GenesisFile;
use lode_node::wire::{FullBlock, FullTipset, SyncRequest, SyncResponse};
use lode_proofs::node::{Node, trunc254};
use lode_proofs::piece::{PaddedPieceSize, comm_d};
use lode_proofs::porep::{PorepProof, PorepPublic};
use lode_proofs::post::{PublicSector, SectorProof};
use lode_proofs::sector::SectorSize;
use lode_sealing::post::{SealedSector, prove_window};
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;
use lode_testkit::harness::{FakeVerifier, Harness, devnet_genesis, key};
use lode_testkit::mining::{make_block, push_window_posts};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tempfile::TempDir;

/// A sealed 2 KiB sector and its honest vanilla proofs.
pub struct Sector {
    /// The PoRep's public inputs.
    pub public: PorepPublic,
    /// Its honest vanilla PoRep proof.
    pub porep: PorepProof,
    /// The sector as a PoSt sees it.
    pub post_public: PublicSector,
    /// The Window PoSt randomness its PoSt proof answers.
    pub post_randomness: Node,
    /// Its honest Window PoSt vanilla proof.
    pub post: SectorProof,
    /// The tree D file.
    pub tree_d: PathBuf,
    /// The unsealed data, tree D's leaves.
    pub unsealed: PathBuf,
    /// The tree R file (over the replica).
    pub tree_r: PathBuf,
    /// The replica, tree R's leaves.
    pub sealed: PathBuf,
    _dir: TempDir,
}

/// The sector, sealed on first use (about a second): the 2 KiB sector of the independent
/// implementation's vector (`fixtures/vectors/seal_2kib.json`: miner 1000, sector 7, raw byte
/// `i` = `(13 i + 5) mod 256`, ticket `trunc254(1..=32)`, seed `trunc254(0x21..=0x40)`), so its
/// proofs are the vector's.
pub fn sector() -> &'static Sector {
    static SECTOR: OnceLock<Sector> = OnceLock::new();
    SECTOR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let size = SectorSize::S2KiB;
        let id = SectorId {
            size,
            miner_id: 1000,
            sector_number: 7,
        };
        let dir = SectorDir::create(&tmp.path().join("s")).unwrap();
        let data: Vec<u8> = (0..2032u32).map(|i| (i * 13 + 5) as u8).collect();
        seal::add_piece(&dir, &id, &data[..], data.len() as u64).unwrap();
        seal::pre_commit1(
            &dir,
            &id,
            trunc254(std::array::from_fn(|i| i as u8 + 1)),
            &tmp.path().join("cache"),
            None,
            &mut no_progress,
        )
        .unwrap();
        seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
        let (public, porep) =
            seal::commit1(&dir, &id, trunc254(std::array::from_fn(|i| i as u8 + 0x21))).unwrap();
        // A copy of tree D before finalizing (which keeps the unsealed copy); the PoSt proves over
        // the finalized sector.
        let tree_d = tmp.path().join("tree-d");
        std::fs::copy(dir.tree_d(), &tree_d).unwrap();
        seal::finalize(&dir, &id, true).unwrap();
        let sealed_sector = SealedSector {
            id,
            dir: dir.clone(),
        };
        let post_public = sealed_sector.public().unwrap();
        let post_randomness = trunc254([0x41; 32]);
        let mut out = prove_window(std::slice::from_ref(&sealed_sector), &post_randomness);
        let post = out.proofs.pop().unwrap();
        Sector {
            public,
            porep,
            post_public,
            post_randomness,
            post,
            tree_d,
            unsealed: dir.unsealed(),
            tree_r: dir.tree_r(),
            sealed: dir.sealed(),
            _dir: tmp,
        }
    })
}

/// `x · x = y`, with `y` public: the smallest circuit with a public input, so that the SNARK
/// target's proofs go through the whole Groth16 verifier.
#[derive(Clone, Copy)]
pub struct Square(pub Option<Scalar>);

impl Circuit<Scalar> for Square {
    fn synthesize<CS: ConstraintSystem<Scalar>>(self, cs: &mut CS) -> Result<(), SynthesisError> {
        let x = AllocatedNum::alloc(cs.namespace(|| "x"), || {
            self.0.ok_or(SynthesisError::AssignmentMissing)
        })?;
        let y = x.square(cs.namespace(|| "x²"))?;
        y.inputize(cs.namespace(|| "y"))
    }
}

/// The square circuit's key and an honest proof that 3² = 9.
pub struct Snark {
    /// The verifying key.
    pub vk: groth16::VerifyingKey<Bls12>,
    /// The prepared verifying key.
    pub pvk: PreparedVerifyingKey<Bls12>,
    /// The public input of [`Snark::proof`].
    pub input: Scalar,
    /// An honest proof.
    pub proof: Proof<Bls12>,
}

/// The key and proof, made on first use (milliseconds).
pub fn snark() -> &'static Snark {
    static SNARK: OnceLock<Snark> = OnceLock::new();
    SNARK.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        let params: Parameters<Bls12> =
            groth16::generate_random_parameters(Square(None), &mut rng).unwrap();
        let x = Scalar::from(3u64);
        let proof = groth16::create_random_proof(Square(Some(x)), &params, &mut rng).unwrap();
        Snark {
            pvk: groth16::prepare_verifying_key(&params.vk),
            vk: params.vk.clone(),
            input: x.square(),
            proof,
        }
    })
}

/// Genesis of the fuzzed nodes: two 2 KiB miners with two sectors each and a funded account,
/// [`SENDER`].
pub fn genesis_file() -> GenesisFile {
    let policy = Policy::devnet();
    let exp = *GenesisSector::expiration_range(&policy).start();
    let empty = PaddedPieceSize::new(SectorSize::S2KiB.bytes())
        .and_then(|p| comm_d(p, &[]))
        .map(|c| c.0)
        .unwrap_or_default();
    let miners = (0..2u8)
        .map(|i| GenesisMiner {
            owner: key(&format!("owner{i}")).public_key(),
            worker: key(&format!("worker{i}")).public_key(),
            sector_size: SectorSize::S2KiB,
            balance: TokenAmount::tokens(10),
            peer_id: Vec::new(),
            multiaddrs: Vec::new(),
            sectors: (0..2u64)
                .map(|n| GenesisSector {
                    sector_number: n,
                    comm_r: lode_testkit::harness::node(&format!("m{i}s{n}")),
                    comm_d: empty,
                    expiration: exp,
                })
                .collect(),
        })
        .collect();
    GenesisFile {
        policy,
        timestamp: 1_700_000_000,
        genesis: Genesis {
            accounts: vec![(key(SENDER).public_key(), TokenAmount::tokens(1000))],
            verifreg_root: key("root").public_key(),
            verifiers: Vec::new(),
            verified_clients: Vec::new(),
            beacon: [7; 32],
            miners,
        },
    }
}

/// The funded account of [`genesis_file`].
pub const SENDER: &str = "sender";

/// Epochs of the chain the source core holds.
pub const CHAIN_EPOCHS: u64 = 12;

/// Epochs of it the fuzzed core holds: the rest arrives as blocks and sync responses.
pub const BEHIND_AT: u64 = 6;

/// Two cores on [`genesis_file`]: `source` with [`CHAIN_EPOCHS`] epochs of blocks, `target` synced
/// to [`BEHIND_AT`], and what was made on the way.
pub struct Nodes {
    /// The chain's genesis.
    pub genesis: GenesisFile,
    /// The core with the whole chain (answers sync requests in the seeds).
    pub source: Mutex<NodeCore>,
    /// The core the targets feed, behind `source`.
    pub target: Mutex<NodeCore>,
    /// Every block made, by epoch.
    pub blocks: Vec<(u64, FullBlock)>,
    /// Honest sync responses of `source`.
    pub responses: Vec<SyncResponse>,
    /// Honest signed messages (transfers from [`SENDER`], pending nowhere).
    pub messages: Vec<SignedMessage>,
    _dirs: (TempDir, TempDir),
}

/// The cores, built on first use (a few seconds).
pub fn nodes() -> &'static Nodes {
    static NODES: OnceLock<Nodes> = OnceLock::new();
    NODES.get_or_init(|| {
        let g = genesis_file();
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let open = |dir: &std::path::Path| {
            NodeCore::open(
                dir,
                g.clone(),
                Box::new(FakeVerifier),
                CoreConfig::default(),
            )
            .unwrap()
        };
        let mut a = open(da.path());
        let mut b = open(db.path());
        let ids = g.genesis.miner_ids();
        let workers = [key("worker0"), key("worker1")];
        let mut blocks = Vec::new();
        for e in 1..=CHAIN_EPOCHS {
            for (id, w) in ids.iter().zip(&workers) {
                push_window_posts(&mut a, *id, w).unwrap();
            }
            let made: Vec<FullBlock> = ids
                .iter()
                .zip(&workers)
                .filter_map(|(id, w)| {
                    let mb = a.miner_base(*id, e).unwrap();
                    make_block(&g.policy, *id, w, &mb).unwrap()
                })
                .collect();
            for blk in &made {
                a.receive_block(blk.clone(), g.slot_time(e)).unwrap();
                if e <= BEHIND_AT {
                    b.receive_block(blk.clone(), g.slot_time(e)).unwrap();
                }
                blocks.push((e, blk.clone()));
            }
        }
        let head = a.head().key.clone();
        let responses = vec![
            a.serve(&SyncRequest::Status),
            a.serve(&SyncRequest::Ancestors { head, count: 64 }),
            a.serve(&SyncRequest::Range {
                from: BEHIND_AT + 1,
                count: 64,
            }),
            SyncResponse::Tipsets(vec![FullTipset {
                blocks: blocks
                    .iter()
                    .filter(|(e, _)| *e == BEHIND_AT + 1)
                    .map(|(_, b)| b.clone())
                    .collect(),
            }]),
        ];
        let sender = key(SENDER);
        let from = b
            .chain()
            .view(|rt| rt.resolve(&Address::Bls(sender.public_key())));
        let from = from
            .ok()
            .flatten()
            .map_or(Address::Bls(sender.public_key()), Address::Id);
        let messages = (0..3u64)
            .map(|nonce| {
                Message {
                    from,
                    to: Address::Id(ids[0]),
                    nonce,
                    value: TokenAmount::tokens(1),
                    method: Method::Send,
                    gas_limit: 1_000_000,
                    gas_price: g.policy.min_gas_price,
                }
                .sign(&g.policy.network, &sender)
            })
            .collect();
        Nodes {
            genesis: g,
            source: Mutex::new(a),
            target: Mutex::new(b),
            blocks,
            responses,
            messages,
            _dirs: (da, db),
        }
    })
}

/// Locks a core, whatever an earlier input did to the lock.
pub fn lock(core: &Mutex<NodeCore>) -> MutexGuard<'_, NodeCore> {
    core.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh devnet chain (fake proofs) with the harness's named accounts and one 2 KiB miner
/// with four sectors, worked by "worker" and owned by "owner", and that miner's id: what the chain
/// target applies random messages to. Each call builds a new one (milliseconds).
pub fn chain() -> (Harness, ActorId) {
    let mut g = devnet_genesis();
    let one = lode_testkit::harness::one_miner_genesis(&Policy::devnet(), &key("worker"), 4);
    for mut m in one.miners {
        m.owner = key("owner").public_key();
        g.miners.push(m);
    }
    let miner = g.miner_ids()[0];
    let h = Harness::from_genesis(
        lode_chain::store::StateStore::memory(),
        &g,
        Box::new(FakeVerifier),
        None,
    );
    (h, miner)
}

/// A node service on loopback (its own chain on [`genesis_file`]) and its JSON-RPC method table,
/// for the RPC target to call in process.
pub struct Rpc {
    /// The runtime the service runs on.
    pub runtime: tokio::runtime::Runtime,
    /// The node's method table, as `lode node run` serves it.
    pub module: jsonrpsee::RpcModule<lode_node::rpc::RpcContext>,
    _dir: TempDir,
}

/// The service, started on first use.
pub fn rpc() -> &'static Rpc {
    static RPC: OnceLock<Rpc> = OnceLock::new();
    RPC.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = lode_node::service::NodeConfig {
            dir: dir.path().join("node"),
            genesis: genesis_file(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: Vec::new(),
            core: CoreConfig::default(),
            status_interval: std::time::Duration::from_secs(3600),
        };
        let module = runtime.block_on(async {
            let svc = lode_node::service::NodeService::start(config, Box::new(FakeVerifier))
                .await
                .unwrap();
            lode_node::rpc::module(svc).unwrap()
        });
        Rpc {
            runtime,
            module,
            _dir: dir,
        }
    })
}
