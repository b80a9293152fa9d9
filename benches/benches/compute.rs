//! Compute jobs: the executor's overhead for an empty job (module compiled cold vs taken from the
//! cache) and the throughput of a scan (`examples/jobs/wc.wat`, a word/line/byte count) over a
//! large piece, against the same count in native Rust over the same file.
//!
//! The scan's size is `LODE_BENCH_SCAN_MIB` (default 512 MiB).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lode_benches::bench_bytes;
use lode_chain::types::TokenAmount;
use lode_market::compute::spec::JOB_VERSION;
use lode_market::compute::{
    Executor, Job, JobInput, JobLimits, JobPayment, ModuleHash, Outcome, Verification, load_module,
    module_bytes,
};

fn job(wasm: &[u8], payload_size: u64, args: &[&str]) -> Job {
    Job {
        version: JOB_VERSION,
        name: "bench".into(),
        nonce: 0,
        module: ModuleHash::of(wasm),
        entrypoint: "_start".into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        inputs: vec![JobInput {
            // The executor does not check CommP (the provider's store did): any valid node.
            comm_p: [1; 32],
            payload_size,
            path: "data".into(),
        }],
        outputs: vec![],
        limits: JobLimits {
            fuel: 10_000_000_000_000,
            memory_pages: 64,
            timeout_ms: 3_600_000,
            output_bytes: 1 << 20,
            output_entries: 16,
        },
        verification: Verification::Replicated {
            k: 1,
            providers: vec![],
        },
        payment: JobPayment {
            per_provider: TokenAmount(1),
            collateral: TokenAmount(1),
            verifier_fee: TokenAmount::ZERO,
            deadline: 1,
        },
    }
}

fn run(exec: &Executor, job: &Job, wasm: &[u8], payload: &Path, work: &Path) -> Outcome {
    let r = exec.run(job, wasm, &[payload], work).unwrap();
    fs::remove_dir_all(work).unwrap();
    r.outcome
}

fn empty_job(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload");
    fs::write(&payload, b"x").unwrap();
    let exec = Executor::new().unwrap();
    let work = dir.path().join("work");
    let mut group = c.benchmark_group("compute_empty_job");
    group.sample_size(20);
    // Cold: a module never seen (a different data segment each time), compiled by cranelift.
    let mut n = 0u64;
    group.bench_function("cold_compile", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let wat = format!(
                    "(module (memory (export \"memory\") 1) (data (i32.const 0) \"{n}\") \
                     (func (export \"_start\")))"
                );
                let wasm = module_bytes(wat.as_bytes()).unwrap();
                let job = job(&wasm, 1, &[]);
                let start = Instant::now();
                let outcome = run(&exec, &job, &wasm, &payload, &work);
                total += start.elapsed();
                assert_eq!(outcome, Outcome::Exited(0));
            }
            total
        })
    });
    let wasm = load_module(&examples().join("empty.wat")).unwrap();
    let job = job(&wasm, 1, &[]);
    run(&exec, &job, &wasm, &payload, &work);
    group.bench_function("cached", |b| {
        b.iter(|| black_box(run(&exec, &job, &wasm, &payload, &work)))
    });
    group.finish();
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/jobs")
}

/// Text-like bytes: letters, about one space in 8 and one newline in 64.
fn text(len: usize) -> Vec<u8> {
    bench_bytes(len, 9)
        .into_iter()
        .map(|b| match b % 64 {
            0 => b'\n',
            1..=8 => b' ',
            x => b'a' + (x % 26),
        })
        .collect()
}

/// The same count as `wc.wat`, natively, reading the file in 64 KiB chunks.
fn native_wc(path: &Path) -> (u64, u64, u64) {
    let mut f = fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let (mut lines, mut words, mut bytes, mut in_word) = (0u64, 0u64, 0u64, false);
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        bytes += n as u64;
        for &b in &buf[..n] {
            if b == b'\n' {
                lines += 1;
            }
            if b == b' ' || b.wrapping_sub(9) <= 4 {
                in_word = false;
            } else if !in_word {
                words += 1;
                in_word = true;
            }
        }
    }
    (lines, words, bytes)
}

fn scan(c: &mut Criterion) {
    let mib: usize = std::env::var("LODE_BENCH_SCAN_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let size = mib << 20;
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("piece");
    fs::write(&payload, text(size)).unwrap();
    let exec = Executor::new().unwrap();
    let wasm = load_module(&examples().join("wc.wat")).unwrap();
    let job = job(&wasm, size as u64, &["data"]);
    let work = dir.path().join("work");
    // Check once that both count the same.
    let r = exec.run(&job, &wasm, &[&payload], &work).unwrap();
    assert_eq!(r.outcome, Outcome::Exited(0), "{:?}", r.detail);
    let (l, w, b) = native_wc(&payload);
    assert_eq!(
        fs::read_to_string(r.outputs.join("counts.txt")).unwrap(),
        format!("{l} {w} {b}\n")
    );
    eprintln!(
        "wc over {mib} MiB: {} fuel ({:.2} per byte)",
        r.fuel_consumed,
        r.fuel_consumed as f64 / size as f64
    );
    fs::remove_dir_all(&work).unwrap();
    let mut group = c.benchmark_group(format!("compute_scan_{mib}MiB"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("wasm_wc", |b| {
        b.iter(|| black_box(run(&exec, &job, &wasm, &payload, &work)))
    });
    group.bench_function("native_wc", |b| b.iter(|| black_box(native_wc(&payload))));
    group.finish();
}

criterion_group!(benches, empty_job, scan);
criterion_main!(benches);
