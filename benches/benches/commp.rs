//! CommP throughput on one thread: fr32 padding plus tree D hashing of a 64 MiB payload.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lode_benches::bench_bytes;
use lode_proofs::piece::CommPHasher;

fn commp(c: &mut Criterion) {
    let payload = bench_bytes(64 << 20, 1);
    let mut group = c.benchmark_group("commp");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function("64MiB", |b| {
        b.iter(|| {
            let mut h = CommPHasher::new();
            for chunk in payload.chunks(1 << 20) {
                let _ = h.write_all(chunk);
            }
            black_box(h.finish())
        })
    });
    group.finish();
}

fn fr32(c: &mut Criterion) {
    let payload = bench_bytes(127 << 16, 2);
    let mut group = c.benchmark_group("fr32");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function("pad_8MiB", |b| {
        b.iter(|| black_box(lode_proofs::fr32::pad(black_box(&payload))))
    });
    group.finish();
}

criterion_group!(benches, commp, fr32);
criterion_main!(benches);
