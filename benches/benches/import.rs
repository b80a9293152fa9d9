//! Client data preparation: `lode client import` of a 64 MiB file (UnixFS packing into a CAR, then
//! CommP of the CAR), and packing alone.

#![allow(clippy::unwrap_used)]

use std::fs::{self, File};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lode_benches::bench_bytes;
use lode_market::car::CarFileWriter;
use lode_market::import::{ImportOptions, ImportStore};
use lode_market::unixfs::{DagParams, pack_path};

const SIZE: usize = 64 << 20;

fn import(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("payload.bin");
    fs::write(&src, bench_bytes(SIZE, 3)).unwrap();
    let store = ImportStore::open(dir.path().join("client")).unwrap();
    let mut group = c.benchmark_group("import");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.bench_function("64MiB", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let rec = store
                    .import(&src, &ImportOptions::default(), &mut |_| {})
                    .unwrap();
                total += start.elapsed();
                fs::remove_file(store.car_path(&rec)).unwrap();
                black_box(rec);
            }
            total
        })
    });
    group.bench_function("pack_car_64MiB", |b| {
        let car = dir.path().join("bench.car");
        b.iter(|| {
            let file = File::create(&car).unwrap();
            let mut w = CarFileWriter::new(file, &car).unwrap();
            let packed = pack_path(&src, &mut w, &DagParams::default(), &mut |_| {}).unwrap();
            black_box(w.finish(&packed.root.cid).unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, import);
criterion_main!(benches);
