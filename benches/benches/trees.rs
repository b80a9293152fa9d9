//! Tree building on disk for an 8 MiB sector: binary BLAKE3 (tree D) and arity-8 Poseidon (trees C/R).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lode_benches::field_leaves;
use lode_proofs::merkle::{Blake3TreeD, DiskTree, PoseidonTree, TreeConfig, TreeShape};

fn trees(c: &mut Criterion) {
    let leaves = field_leaves(1 << 18, 3);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let path = dir.path().join("tree");
    let mut group = c.benchmark_group("tree_build_8MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((leaves.len() * 32) as u64));
    let binary = TreeShape::binary(leaves.len() as u64).unwrap_or_else(|e| panic!("{e}"));
    group.bench_function("blake3_tree_d", |b| {
        b.iter(|| {
            DiskTree::<Blake3TreeD>::build(&binary, &leaves, &path, TreeConfig::default())
                .map(|t| t.root())
        })
    });
    let octal = TreeShape::octal(leaves.len() as u64).unwrap_or_else(|e| panic!("{e}"));
    group.bench_function("poseidon_tree_c_r", |b| {
        b.iter(|| {
            DiskTree::<PoseidonTree>::build(&octal, &leaves, &path, TreeConfig::default())
                .map(|t| t.root())
        })
    });
    group.finish();
}

criterion_group!(benches, trees);
criterion_main!(benches);
