//! The fuzz targets: each takes arbitrary bytes, runs them through the decoder (and the verifier or
//! state change behind it) that untrusted input reaches in lode, and panics only on a finding: a
//! panic inside lode, or a property that must hold for any input (a round trip that changes the
//! value, a proof that verifies without being the honest one, an error that changed state).

use std::io::Cursor;
use std::path::Path;

use arbitrary::Unstructured;
use lode_chain::message::{Message, Method, SignedMessage};
use lode_chain::types::{Address, TokenAmount};
use lode_market::deal::policy::{DealFacts, DealPolicyConfig, evaluate};
use lode_market::deal::{
    AskRequest, AskResponse, DealRequest, SignedAsk, SignedDealResponse, StorageAsk, decode,
};
use lode_node::core::BlockVerdict;
use lode_node::wire::{self, FullBlock, MAX_SYNC_TIPSETS, SyncRequest, SyncResponse};
use lode_proofs::cid::PieceCid;
use lode_proofs::merkle::{Blake3TreeD, DiskTree, MerkleProof, PoseidonTree};
use lode_proofs::porep::{self, PorepProof};
use lode_proofs::post::{self, SectorProof, WINDOW_CHALLENGES_PER_SECTOR};
use lode_proofs::sector::SectorSize;
use lode_proofs::snark;
use lode_testkit::harness::{ACCOUNTS, key};

use crate::fixture;

/// A piece CID in binary (`PieceCid::from_bytes`) and as text (`parse_cid`, what `lode client`
/// and the retrieval server take): whatever decodes encodes back to the same value.
pub fn piece_cid(data: &[u8]) {
    if let Ok(p) = PieceCid::from_bytes(data) {
        assert_eq!(PieceCid::from_bytes(&p.to_bytes()).ok(), Some(p));
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cid) = lode_market::cid::parse_cid(text)
    {
        assert_eq!(
            lode_market::cid::parse_cid(&cid.to_string()).ok(),
            Some(cid)
        );
        if let Ok(p) = lode_market::cid::cid_to_piece(&cid) {
            assert_eq!(lode_market::cid::piece_to_cid(&p), cid);
        }
    }
}

/// A Merkle opening checked against the sealed sector's tree D (BLAKE3) and tree R (Poseidon):
/// one that verifies is the honest opening of its leaf.
pub fn merkle_proof(data: &[u8]) {
    let Ok(p) = MerkleProof::from_bytes(data) else {
        return;
    };
    let s = fixture::sector();
    let size = s.public.size;
    if p.verify::<Blake3TreeD>(&size.tree_d_shape(), &s.public.comm_d)
        .is_ok()
    {
        let honest = DiskTree::<Blake3TreeD>::open(&s.tree_d, Some(&s.unsealed))
            .and_then(|t| t.prove(p.index))
            .unwrap();
        assert_eq!(p, honest, "a forged tree D opening verified");
    }
    if p.verify::<PoseidonTree>(&size.tree_shape(), &s.porep.comm_r_last)
        .is_ok()
    {
        let honest = DiskTree::<PoseidonTree>::open(&s.tree_r, Some(&s.sealed))
            .and_then(|t| t.prove(p.index))
            .unwrap();
        assert_eq!(p, honest, "a forged tree R opening verified");
    }
}

/// A vanilla PoRep proof (what `lode seal verify-commit1` and a Commit2 worker read) verified
/// against the sealed sector's public inputs: only the honest proof verifies.
pub fn porep_vanilla(data: &[u8]) {
    let Ok(p) = PorepProof::from_bytes(data) else {
        return;
    };
    assert_eq!(
        PorepProof::from_bytes(&p.to_bytes()).ok().as_ref(),
        Some(&p)
    );
    let s = fixture::sector();
    if porep::verify(&s.public, &p).is_ok() {
        assert_eq!(p, s.porep, "a forged PoRep proof verified");
    }
}

/// A vanilla Window PoSt proof of one sector (what a worker returns to the provider) verified
/// against the sector and the randomness: only the honest proof verifies.
pub fn post_vanilla(data: &[u8]) {
    let Ok(p) = SectorProof::from_bytes(data) else {
        return;
    };
    assert_eq!(
        SectorProof::from_bytes(&p.to_bytes()).ok().as_ref(),
        Some(&p)
    );
    let s = fixture::sector();
    let ok = post::verify_sector(
        SectorSize::S2KiB,
        &s.post_randomness,
        &s.post_public,
        WINDOW_CHALLENGES_PER_SECTOR,
        &p,
    );
    if ok.is_ok() {
        assert_eq!(p, s.post, "a forged PoSt proof verified");
    }
}

/// Groth16 proof bytes (a block's Winning PoSt, a Window PoSt message, a Commit2 worker's answer)
/// decoded with every point checked, then verified: only the honest proof verifies, or its
/// negation `(-A, -B, C)`, which Groth16 accepts for the same statement because
/// `e(-A, -B) = e(A, B)` (FUZZING.md, finding 2). Anyone can also re-randomise a proof; that
/// takes curve arithmetic a fuzzer does not stumble on.
pub fn snark(data: &[u8]) {
    let Ok(p) = snark::proof_from_bytes(data) else {
        return;
    };
    assert_eq!(
        snark::proof_to_bytes(&p),
        data,
        "a proof decoded from other bytes"
    );
    let s = fixture::snark();
    if groth16::verify_proof(&s.pvk, &p, &[s.input]).is_ok() {
        let negated = groth16::Proof::<bls12_381::Bls12> {
            a: -s.proof.a,
            b: -s.proof.b,
            c: s.proof.c,
        };
        assert!(
            p == s.proof || p == negated,
            "a forged Groth16 proof verified"
        );
    }
}

/// Bytes with their first `at` bytes' BLAKE3 written at `at..at + 32`, when `repair` says so: lets
/// the fuzzer past a header checksum to what the header says.
fn with_checksum(data: &[u8], at: usize) -> Vec<u8> {
    let mut bytes = data.to_vec();
    if bytes.len() >= at + 32 {
        let sum = *blake3::hash(&bytes[..at]).as_bytes();
        bytes[at..at + 32].copy_from_slice(&sum);
    }
    bytes
}

/// A file in this process's scratch directory, written with `bytes`.
fn scratch(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A tree file (`DiskTree::open`, what the prover maps after a crash or a copy from another
/// machine): the first input byte chooses whether the header's checksum is made right, so that
/// the rest of the header is reached, and which of the sector's files are the leaves (none, the
/// replica, the unsealed data); a tree that opens proves a leaf that verifies on its root.
pub fn tree_file(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 1 {
        with_checksum(rest, 224)
    } else {
        rest.to_vec()
    };
    let path = scratch("tree", &bytes);
    let s = fixture::sector();
    let leaves = match mode & 6 {
        2 => Some(s.sealed.as_path()),
        4 => Some(s.unsealed.as_path()),
        _ => None,
    };
    if let Ok(t) = DiskTree::<Blake3TreeD>::open(&path, leaves) {
        open_tree(&t);
    }
    if let Ok(t) = DiskTree::<PoseidonTree>::open(&path, leaves) {
        open_tree(&t);
    }
}

fn open_tree<H: lode_proofs::merkle::TreeHasher>(t: &DiskTree<H>) {
    let shape = t.shape().clone();
    // What the file holds need not be a tree of its root: `check` says so, and no proof panics.
    let consistent = t.check().is_ok();
    for index in [0, shape.leaves().saturating_sub(1), shape.leaves()] {
        if let Ok(p) = t.prove(index)
            && consistent
        {
            p.verify::<H>(&shape, &t.root()).unwrap();
        }
    }
}

/// A verifying-key file (`ParamStore::load_vk`, what `lode` reads from a parameter directory):
/// the first byte chooses whether identifier and body hash are made right for the key id the
/// target asks for, so that the key's points are decoded.
pub fn param_file(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let id = lode_proofs::params::ParamsId::new("fuzz", &[]);
    let mut bytes = rest.to_vec();
    // The header: magic and version and origin (16 bytes), identifier digest (32), body hash (32),
    // identifier length (4), identifier; then the body (`proofs/src/params.rs`).
    if mode & 1 == 1 && bytes.len() >= 84 {
        let canonical = id.canonical().as_bytes();
        let body = bytes.split_off(84);
        bytes.truncate(16);
        bytes.extend_from_slice(&id.digest());
        bytes.extend_from_slice(blake3::hash(&body).as_bytes());
        bytes.extend_from_slice(&(canonical.len() as u32).to_le_bytes());
        bytes.extend_from_slice(canonical);
        bytes.extend_from_slice(&body);
    }
    let path = scratch("vk", &bytes);
    let _ = lode_proofs::params::ParamStore::load_vk(&path, &id);
    let store = lode_proofs::params::ParamStore::new(path.with_file_name("params"));
    std::fs::create_dir_all(store.dir()).unwrap();
    std::fs::write(store.params_path(&id), &bytes).unwrap();
    let _ = store.load(&id);
}

/// A gossiped or RPC-pushed signed message: decoded strictly, its signature checked, then given to
/// the node's mempool (which takes only what is signed and affordable).
pub fn signed_message(data: &[u8]) {
    let Ok(m) = wire::decode::<SignedMessage>(data, "message") else {
        return;
    };
    assert_eq!(wire::encode(&m), data, "a message decoded from other bytes");
    let n = fixture::nodes();
    let mut core = fixture::lock(&n.target);
    let _ = core.push_message(m);
}

/// A gossiped block: decoded strictly and received by a node core behind the chain it extends
/// (signatures, election, Winning PoSt, parents, messages, state). A rejected block changes
/// neither the head nor the state.
pub fn block(data: &[u8]) {
    let Ok(b) = wire::decode::<FullBlock>(data, "block") else {
        return;
    };
    let n = fixture::nodes();
    let mut core = fixture::lock(&n.target);
    let head = core.head().clone();
    let root = core.chain().head().root;
    let now = n.genesis.slot_time(b.header.epoch.min(1 << 40));
    match core.receive_block(b, now) {
        Ok(BlockVerdict::Rejected(_) | BlockVerdict::NeedParents(_)) | Err(_) => {
            assert_eq!(core.head().key, head.key, "a refused block moved the head");
            assert_eq!(
                core.chain().head().root,
                root,
                "a refused block changed the state"
            );
        }
        Ok(_) => {}
    }
}

/// A sync request from a peer, served by the core holding the whole chain: the answer is bounded.
pub fn sync_request(data: &[u8]) {
    let Ok(req) = wire::decode::<SyncRequest>(data, "sync request") else {
        return;
    };
    let n = fixture::nodes();
    let core = fixture::lock(&n.source);
    if let SyncResponse::Tipsets(ts) = core.serve(&req) {
        assert!(
            ts.len() as u64 <= MAX_SYNC_TIPSETS,
            "{} tipsets served",
            ts.len()
        );
    }
}

/// A peer's sync response: decoded strictly and imported by the core behind the chain. An import
/// that fails leaves the head where it was.
pub fn sync_response(data: &[u8]) {
    let Ok(resp) = wire::decode::<SyncResponse>(data, "sync response") else {
        return;
    };
    let SyncResponse::Tipsets(ts) = resp else {
        return;
    };
    let n = fixture::nodes();
    let mut core = fixture::lock(&n.target);
    let head = core.head().key.clone();
    let now = n.genesis.slot_time(fixture::CHAIN_EPOCHS);
    if core.import(ts, now).is_err() {
        assert_eq!(core.head().key, head, "a failed import moved the head");
    }
}

/// A JSON-RPC request body (HTTP or WebSocket) given to the node's method table in process: every
/// open method with whatever parameters. Protected methods are left out: their guard is the HTTP
/// layer's token check, which this target does not reach.
pub fn rpc_request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if lode_node::rpc::PROTECTED_METHODS
        .iter()
        .any(|m| text.contains(m))
    {
        return;
    }
    let r = fixture::rpc();
    let _ = r.runtime.block_on(r.module.raw_json_request(text, 1 << 20));
}

/// Random messages from random senders to random actors, epoch after epoch, on a devnet chain with
/// a miner, sectors and funded accounts (structure-aware: the input chooses senders, receivers,
/// values, nonces and methods; methods and their parameters are the chain's own types, decoded
/// from the input's bytes). After every epoch the chain's invariants hold (the harness checks
/// them); an epoch the chain refuses changes nothing; and a replay of the applied epochs reaches
/// the same state root.
pub fn chain_apply(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (mut h, miner) = fixture::chain();
    h.journal = Some(Vec::new());
    let mut receivers: Vec<Address> = vec![
        lode_chain::actors::POWER.into(),
        lode_chain::actors::MARKET.into(),
        lode_chain::actors::VERIFREG.into(),
        lode_chain::actors::COMPUTE.into(),
        miner.into(),
    ];
    receivers.extend(ACCOUNTS.iter().map(|n| Address::Id(h.id(n))));
    let epochs = u.int_in_range(1..=6u8).unwrap_or(1);
    for _ in 0..epochs {
        let nulls = u.int_in_range(0..=3u8).unwrap_or(0);
        for _ in 0..nulls {
            h.step(Vec::new(), Vec::new());
        }
        let count = u.int_in_range(0..=3u8).unwrap_or(0);
        let mut messages = Vec::new();
        let mut sent = std::collections::BTreeMap::<&str, u64>::new();
        for _ in 0..count {
            let Ok(from) = u.choose(&ACCOUNTS) else { break };
            let to = match u.ratio(1u8, 8) {
                Ok(true) => Address::Id(lode_chain::types::ActorId(u.arbitrary().unwrap_or(0))),
                _ => u.choose(&receivers).cloned().unwrap_or(Address::Id(miner)),
            };
            let value = TokenAmount(match u.int_in_range(0..=3u8).unwrap_or(0) {
                0 => 0,
                1 => u.int_in_range(0..=1_000_000u128).unwrap_or(0),
                2 => u.int_in_range(0..=TokenAmount::tokens(2000).0).unwrap_or(0),
                _ => u.arbitrary().unwrap_or(0),
            });
            let len = u.int_in_range(0..=96usize).unwrap_or(0);
            let raw = u.bytes(len).unwrap_or_default();
            let method = postcard::from_bytes::<Method>(raw).unwrap_or(Method::Send);
            let mut m = h.message(from, to, method, value);
            let offset = sent.entry(from).or_default();
            let nonce = m.message.nonce + *offset;
            *offset += 1;
            if u.ratio(1u8, 16).unwrap_or(false) {
                m = resign(m.message, u.arbitrary().unwrap_or(0), from, &h);
            } else if nonce != m.message.nonce {
                m = resign(m.message, nonce, from, &h);
            }
            messages.push(m);
        }
        let before = h.chain.head();
        if let Err(e) = h.try_step(Vec::new(), messages) {
            assert_eq!(
                h.chain.head(),
                before,
                "a refused epoch ({e}) changed the chain"
            );
        }
    }
    let journal = h.journal.take().unwrap_or_default();
    let (mut again, _) = fixture::chain();
    again.check_every_epoch = false;
    again.replay(&journal);
}

fn resign(
    mut m: Message,
    nonce: u64,
    from: &str,
    h: &lode_testkit::harness::Harness,
) -> SignedMessage {
    m.nonce = nonce;
    m.sign(&h.policy.network, &key(from))
}

/// A CAR file, v1 or v2 (`lode client import`, a provider's deal data): read front to back, every
/// block checked against its CID. The CAR parsers lode uses may panic on malformed framing; lode
/// turns that into an error, so a panic here is one that escaped.
pub fn car(data: &[u8]) {
    let _ = lode_market::car::scan_car(Cursor::new(data), Path::new("fuzz.car"), |_, _, _| Ok(()));
}

/// Deal-protocol messages as a provider or client receives them: the first byte picks the kind.
/// Requests go through the provider's policy (`evaluate`, which checks the client's signature
/// among the rest); answers have their signatures checked.
pub fn deal_messages(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let worker = key("worker0").public_key();
    match kind % 4 {
        0 => {
            if let Ok(req) = decode::<DealRequest>("deal request", bytes) {
                let _ = evaluate(
                    &DealPolicyConfig::default(),
                    &seed_ask(),
                    lode_chain::types::ActorId(1000),
                    &deal_facts(),
                    &req,
                );
            }
        }
        1 => {
            if let Ok(r) = decode::<SignedDealResponse>("deal response", bytes) {
                let _ = r.verify("devnet", &worker);
            }
        }
        2 => {
            if let Ok(AskResponse::Ask(a)) = decode::<AskResponse>("ask response", bytes) {
                let _ = a.verify("devnet", &worker);
            }
        }
        _ => {
            let _ = decode::<AskRequest>("ask request", bytes);
            let _ = decode::<SignedAsk>("signed ask", bytes);
        }
    }
}

/// The ask the deal target's provider has.
pub fn seed_ask() -> StorageAsk {
    StorageAsk {
        miner: lode_chain::types::ActorId(1000),
        price_per_gib_epoch: TokenAmount(1 << 30),
        verified_price_per_gib_epoch: TokenAmount(0),
        min_piece_size: 128,
        max_piece_size: 2048,
        max_duration: 10_000,
        timestamp: 3,
        seq_no: 1,
    }
}

/// What the deal target's provider knows of the chain and its pipeline.
pub fn deal_facts() -> DealFacts {
    DealFacts {
        head: 100,
        policy: lode_chain::Policy::devnet(),
        client_key: Some(key("client").public_key()),
        client_escrow: lode_chain::actors::market::Escrow {
            balance: TokenAmount::tokens(100),
            locked: TokenAmount(0),
        },
        client_pending_lock: TokenAmount(0),
        client_datacap: Some(1 << 20),
        sector_size: 2048,
        free_capacity: 1 << 20,
        provider_collateral_min: Some(TokenAmount(0)),
    }
}

/// A compute job spec (YAML or JSON, `lode job submit`) and an encoded job (what providers read
/// from the chain): parsed, turned into a job, validated; a valid job encodes and decodes to
/// itself.
pub fn job_spec(data: &[u8]) {
    use lode_market::compute::spec::{Job, JobSpec, ModuleHash};
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(spec) = JobSpec::parse(text)
        && let Ok(job) = spec.to_job(ModuleHash([7; 32]), &mut |_| Some(219))
        && job.validate().is_ok()
    {
        assert_eq!(Job::decode(&job.encode()).ok().as_ref(), Some(&job));
    }
    if let Ok(job) = Job::decode(data) {
        let _ = job.validate();
        assert_eq!(job.encode(), data, "a job decoded from other bytes");
    }
}

/// A compute job's WASM module, validated by the engine lode runs jobs with (validation only: the
/// provider compiles only modules of jobs it took).
pub fn wasm_module(data: &[u8]) {
    static ENGINE: std::sync::OnceLock<wasmtime::Engine> = std::sync::OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        wasmtime::Engine::new(&lode_market::compute::exec::engine_config()).unwrap()
    });
    let _ = wasmtime::Module::validate(engine, data);
}
