//! SDR labelling of an 8 MiB sector's layer 2 (the expander parents read from layer 1): the
//! single-sector labeller against the multi-sector labeller with 4, 8 and 16 sectors per walk of
//! the graph (BLAKE3 across SIMD lanes). Throughput is sector bytes labelled per second.

use std::ops::ControlFlow;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lode_proofs::node::{Node, trunc254};
use lode_proofs::sector::SectorSize;
use lode_sealing::labels::{BatchLabeller, BatchLayer, CpuBatchLabeller, CpuLabeller, Labeller};
use lode_sealing::parent_cache::ParentCache;

fn labels(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let size = SectorSize::S8MiB;
    let cache = ParentCache::open_or_build(dir.path(), size)
        .unwrap_or_else(|e| panic!("parent cache: {e}"));
    let n = size.nodes() as usize;
    let none = &mut |_| ControlFlow::Continue(());
    let mut group = c.benchmark_group("labels_8MiB_layer2");
    group.sample_size(10);

    let single = CpuLabeller::new(&cache);
    let replica = trunc254([7; 32]);
    let mut layer1 = vec![Node::default(); n];
    let mut layer2 = vec![Node::default(); n];
    single
        .label_layer(&replica, 1, None, &mut layer1, none)
        .unwrap_or_else(|e| panic!("{e}"));
    group.throughput(Throughput::Bytes(size.bytes()));
    group.bench_function("single", |b| {
        b.iter(|| single.label_layer(&replica, 2, Some(&layer1), &mut layer2, none))
    });

    let batch = CpuBatchLabeller::new(&cache);
    for lanes in [4usize, 8, 16] {
        let ids: Vec<Node> = (0..lanes as u8).map(|i| trunc254([i; 32])).collect();
        let mut prev = BatchLayer::new(n, lanes).unwrap_or_else(|e| panic!("{e}"));
        let mut cur = BatchLayer::new(n, lanes).unwrap_or_else(|e| panic!("{e}"));
        batch
            .label_layers(&ids, 1, None, &mut prev, none)
            .unwrap_or_else(|e| panic!("{e}"));
        group.throughput(Throughput::Bytes(size.bytes() * lanes as u64));
        group.bench_function(format!("batch_{lanes}"), |b| {
            b.iter(|| batch.label_layers(&ids, 2, Some(&prev), &mut cur, none))
        });
    }
    group.finish();
}

criterion_group!(benches, labels);
criterion_main!(benches);
