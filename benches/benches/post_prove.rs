//! Groth16 proving and verification of Winning and Window PoSt at 2 KiB with the parameters in
//! memory: lode's prover (`lode_proofs::circuit::post::prove`, which `sealing` and the provider
//! call) against the groth16 crate's `create_random_proof` on the same circuit, parameters and
//! vanilla proofs.
//!
//! The insecure test parameters are read from (or generated once into) `target/lode-test-params`,
//! as the tests do. Each sector is a tree R over pseudo-random leaves; the vanilla proofs open it at
//! the challenged leaves. lode's prover converts the parameters' points on its first proof and
//! keeps them while the parameters live (the `prepare` rows time that conversion on its own).
//!
//! `cargo bench -p lode-benches --bench post_prove` (add `-- lode` to skip the slow reference rows).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lode_benches::field_leaves;
use lode_proofs::circuit::post::{self as post_circuit, PostCircuit, PostKind};
use lode_proofs::merkle::{DiskTree, PoseidonTree, TreeConfig};
use lode_proofs::node::{Node, trunc254};
use lode_proofs::params::ParamStore;
use lode_proofs::post::{self, PublicSector, SectorProof};
use lode_proofs::prover::ProvingKey;
use lode_proofs::sector::SectorSize;

fn or_die<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The sectors of one proof (trees in `dir`) and their vanilla proofs for `randomness`.
fn sectors(
    dir: &std::path::Path,
    kind: PostKind,
    size: SectorSize,
    randomness: &Node,
) -> (Vec<PublicSector>, Vec<SectorProof>) {
    let mut public = Vec::new();
    let mut vanilla = Vec::new();
    for k in 0..kind.sectors(size) as u64 {
        let number = 11 + 7 * k;
        let leaves = field_leaves(size.nodes() as usize, number);
        let tree = or_die(
            DiskTree::<PoseidonTree>::build(
                &size.tree_shape(),
                &leaves,
                &dir.join(format!("tree-r-{number}")),
                TreeConfig { discard_rows: 1 },
            ),
            "tree R",
        );
        let comm_c = trunc254([number as u8; 32]);
        let comm_r = or_die(lode_proofs::sdr::comm_r(&comm_c, &tree.root()), "comm_r");
        let openings = post::leaf_challenges(size, randomness, number, kind.challenges())
            .into_iter()
            .map(|leaf| or_die(tree.prove(leaf), "opening"))
            .collect();
        public.push(PublicSector {
            sector_number: number,
            comm_r,
        });
        vanilla.push(SectorProof {
            sector_number: number,
            comm_c,
            comm_r_last: tree.root(),
            openings,
        });
    }
    (public, vanilla)
}

fn post_prove(c: &mut Criterion) {
    let size = SectorSize::S2KiB;
    let store = ParamStore::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/lode-test-params"
    ));
    let dir = or_die(tempfile::tempdir(), "temporary directory");
    let randomness = trunc254([0x5a; 32]);
    for kind in [PostKind::Winning, PostKind::Window] {
        let id = kind.params_id(size);
        let (params, _, _) = or_die(
            store.get_or_generate_insecure(&id, || PostCircuit {
                kind,
                size,
                witness: None,
            }),
            "parameters",
        );
        let pvk = groth16::prepare_verifying_key(&params.vk);
        let (public, vanilla) = sectors(dir.path(), kind, size, &randomness);
        let mut rng = id.insecure_rng();
        let name = format!("{}-2KiB", kind.name());

        let mut group = c.benchmark_group("post_prove");
        group.sample_size(10);
        group.bench_function(BenchmarkId::new("lode", &name), |b| {
            b.iter(|| post_circuit::prove(&params, kind, size, &vanilla, &mut rng))
        });
        group.bench_function(BenchmarkId::new("groth16-crate", &name), |b| {
            b.iter(|| {
                let circuit = PostCircuit {
                    kind,
                    size,
                    witness: Some(&vanilla),
                };
                groth16::create_random_proof(circuit, &params, &mut rng).map(|_| ())
            })
        });
        group.bench_function(BenchmarkId::new("prepare", &name), |b| {
            b.iter(|| ProvingKey::new(&params).map(|k| k.is_vectorized()))
        });
        group.finish();

        let proof = or_die(
            post_circuit::prove(&params, kind, size, &vanilla, &mut rng),
            "proof",
        );
        let mut group = c.benchmark_group("post_verify");
        group.bench_function(BenchmarkId::new("lode", &name), |b| {
            b.iter(|| post_circuit::verify(&pvk, kind, size, &randomness, &public, &proof))
        });
        group.finish();
        or_die(
            post_circuit::verify(&pvk, kind, size, &randomness, &public, &proof),
            "the proof verifies",
        );
    }
}

criterion_group!(benches, post_prove);
criterion_main!(benches);
