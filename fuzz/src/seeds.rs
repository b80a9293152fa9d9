//! Seed inputs for every target, made from lode's own honest outputs: what a fuzzer starts from
//! and what the corpus test runs first.

use lode_chain::actors::market::{ClientDealProposal, DealProposal};
use lode_chain::types::{ActorId, TokenAmount};
use lode_market::deal::{
    AskRequest, AskResponse, DealDecision, DealRequest, DealResponse, DealUuid, TransferSpec,
    encode,
};
use lode_node::wire::{self, SyncRequest};
use lode_proofs::cid::PieceCid;
use lode_proofs::snark;
use lode_testkit::harness::key;

use crate::{fixture, targets};

/// The seeds of the target named `name` (none for an unknown name).
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "piece_cid" => piece_cid(),
        "merkle_proof" => {
            let s = fixture::sector();
            let p = &s.porep.partitions[0][0];
            vec![p.data.to_bytes(), p.replica.to_bytes()]
        }
        "porep_vanilla" => vec![fixture::sector().porep.to_bytes()],
        "post_vanilla" => vec![fixture::sector().post.to_bytes()],
        "snark" => vec![snark::proof_to_bytes(&fixture::snark().proof)],
        "tree_file" => {
            let s = fixture::sector();
            let file = |p: &std::path::Path| std::fs::read(p).unwrap();
            vec![
                [&[4u8][..], &file(&s.tree_d)].concat(),
                [&[2u8][..], &file(&s.tree_r)].concat(),
            ]
        }
        "param_file" => param_file(),
        "signed_message" => fixture::nodes().messages.iter().map(wire::encode).collect(),
        "block" => fixture::nodes()
            .blocks
            .iter()
            .filter(|(e, _)| *e > fixture::BEHIND_AT)
            .map(|(_, b)| wire::encode(b))
            .collect(),
        "sync_request" => {
            let n = fixture::nodes();
            let head = fixture::lock(&n.source).head().key.clone();
            vec![
                wire::encode(&SyncRequest::Status),
                wire::encode(&SyncRequest::Ancestors { head, count: 64 }),
                wire::encode(&SyncRequest::Range { from: 0, count: 64 }),
            ]
        }
        "sync_response" => fixture::nodes()
            .responses
            .iter()
            .map(wire::encode)
            .collect(),
        "rpc_request" => rpc_request(),
        "chain_apply" => chain_apply(),
        "car" => car(),
        "deal_messages" => deal_messages(),
        "job_spec" => job_spec(),
        "wasm_module" => examples()
            .into_iter()
            .filter(|(n, _)| n.ends_with(".wat"))
            .filter_map(|(_, text)| wat::parse_str(text).ok())
            .collect(),
        _ => Vec::new(),
    }
}

fn piece_cid() -> Vec<Vec<u8>> {
    let p = PieceCid::new(fixture::sector().public.comm_d).unwrap();
    let cid = lode_market::cid::piece_to_cid(&p);
    vec![
        p.to_bytes(),
        cid.to_string().into_bytes(),
        b"bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".to_vec(),
    ]
}

fn param_file() -> Vec<Vec<u8>> {
    let store = lode_proofs::params::ParamStore::new(tempfile::tempdir().unwrap().keep());
    let id = lode_proofs::params::ParamsId::new("fuzz", &[]);
    let s = fixture::snark();
    let params = groth16::Parameters::<bls12_381::Bls12> {
        vk: s.vk.clone(),
        h: std::sync::Arc::new(Vec::new()),
        l: std::sync::Arc::new(Vec::new()),
        a: std::sync::Arc::new(Vec::new()),
        b_g1: std::sync::Arc::new(Vec::new()),
        b_g2: std::sync::Arc::new(Vec::new()),
    };
    let out = store.dir().join("fuzz.vk");
    store
        .export_vk(
            &id,
            &params,
            lode_proofs::params::Origin::InsecureTest,
            &out,
        )
        .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_dir_all(store.dir());
    vec![[&[1u8][..], &bytes].concat(), [&[0u8][..], &bytes].concat()]
}

fn rpc_request() -> Vec<Vec<u8>> {
    let n = fixture::nodes();
    let msg = hex::encode(wire::encode(&n.messages[0]));
    let miner = n.genesis.genesis.miner_ids()[0].0;
    let calls = [
        r#"{"jsonrpc":"2.0","id":1,"method":"chain_head","params":[]}"#.to_string(),
        r#"{"jsonrpc":"2.0","id":2,"method":"chain_tipsetByHeight","params":[0]}"#.into(),
        format!(r#"{{"jsonrpc":"2.0","id":3,"method":"state_minerInfo","params":["l0{miner}"]}}"#),
        format!(
            r#"{{"jsonrpc":"2.0","id":4,"method":"state_minerDeadlines","params":["l0{miner}"]}}"#
        ),
        r#"{"jsonrpc":"2.0","id":5,"method":"state_balance","params":["l0100"]}"#.into(),
        r#"{"jsonrpc":"2.0","id":6,"method":"state_marketDeals","params":[null,null]}"#.into(),
        r#"{"jsonrpc":"2.0","id":7,"method":"state_computeJobs","params":[null,null,null,true,0]}"#
            .into(),
        r#"{"jsonrpc":"2.0","id":8,"method":"mpool_nonce","params":["l0100"]}"#.into(),
        format!(r#"{{"jsonrpc":"2.0","id":9,"method":"mpool_push","params":["{msg}"]}}"#),
        r#"{"jsonrpc":"2.0","id":10,"method":"state_networkPower","params":[]}"#.into(),
    ];
    calls.into_iter().map(String::into_bytes).collect()
}

fn chain_apply() -> Vec<Vec<u8>> {
    // A few byte strings that choose different paths through the operation mix.
    (0u8..8)
        .map(|i| {
            (0..160u32)
                .map(|j| (j * 31 + u32::from(i) * 17) as u8)
                .collect()
        })
        .collect()
}

fn car() -> Vec<Vec<u8>> {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a.txt"), b"lode fuzz seed").unwrap();
    std::fs::write(src.join("d/b.bin"), vec![7u8; 3000]).unwrap();
    let store = lode_market::import::ImportStore::open(tmp.path().join("client")).unwrap();
    let mut out = Vec::new();
    for input in [src.join("a.txt"), src.clone()] {
        let options = lode_market::import::ImportOptions::default();
        let record = store.import(&input, &options, &mut |_| {}).unwrap();
        out.push(std::fs::read(store.car_path(&record)).unwrap());
    }
    out
}

fn deal_messages() -> Vec<Vec<u8>> {
    let client = key("client");
    let worker = key("worker0");
    let proposal = DealProposal {
        piece_cid: [1; 32],
        piece_size: 2048,
        verified: false,
        client: ActorId(100),
        provider: ActorId(1000),
        label: "hello".into(),
        start_epoch: 500,
        end_epoch: 1500,
        price_per_epoch: TokenAmount(10),
        provider_collateral: TokenAmount(0),
        client_collateral: TokenAmount(0),
    };
    let client_signature = client.sign(&proposal.signing_bytes("devnet"));
    let req = DealRequest {
        uuid: DealUuid(uuid_from(1)),
        proposal: ClientDealProposal {
            proposal,
            client_signature,
        },
        transfer: TransferSpec::Http {
            url: "http://127.0.0.1:1/x".into(),
            payload_size: 2000,
        },
    };
    let resp = DealResponse {
        uuid: req.uuid,
        miner: ActorId(1000),
        decision: DealDecision::Accepted,
    }
    .sign("devnet", &worker);
    let ask = targets::seed_ask().sign("devnet", &worker);
    vec![
        [&[0u8][..], &encode(&req)].concat(),
        [&[1u8][..], &encode(&resp)].concat(),
        [&[2u8][..], &encode(&AskResponse::Ask(Box::new(ask)))].concat(),
        [
            &[3u8][..],
            &encode(&AskRequest {
                miner: ActorId(1000),
            }),
        ]
        .concat(),
    ]
}

fn uuid_from(n: u8) -> uuid::Uuid {
    uuid::Uuid::from_bytes([n; 16])
}

fn job_spec() -> Vec<Vec<u8>> {
    examples()
        .into_iter()
        .filter(|(n, _)| n.ends_with(".yaml"))
        .map(|(_, t)| t.as_bytes().to_vec())
        .collect()
}

/// The example job specs and modules (`examples/jobs`), compiled in.
fn examples() -> Vec<(&'static str, &'static str)> {
    vec![
        ("fnv.yaml", include_str!("../../examples/jobs/fnv.yaml")),
        (
            "escape.yaml",
            include_str!("../../examples/jobs/escape.yaml"),
        ),
        ("fnv.wat", include_str!("../../examples/jobs/fnv.wat")),
        ("escape.wat", include_str!("../../examples/jobs/escape.wat")),
        ("empty.wat", include_str!("../../examples/jobs/empty.wat")),
    ]
}
