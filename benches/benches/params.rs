//! Groth16 parameter generation: lode's parallel generator against the reference
//! (`groth16::generate_random_parameters`, the same bytes), and the fixed-base
//! multiplication it is built on.
//!
//! Whole parameter sets (the figures in BENCHMARKS.md) are timed with the binary:
//! `LODE_PARAMS_DIR=$(mktemp -d) /usr/bin/time -v target/release/lode params generate
//! --sector-size 2KiB --json`.

use std::hint::black_box;

use bellman::{Circuit, ConstraintSystem, SynthesisError};
use bls12_381::{Bls12, G1Projective, G2Projective, Scalar};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lode_proofs::circuit::post::{PostCircuit, PostKind};
use lode_proofs::params::setup::FixedBase;
use lode_proofs::params::{ParamsId, generate_insecure};
use lode_proofs::sector::SectorSize;

/// `x_(i+1) = x_i²` for `n` steps with `x_0` private and `x_n` public: `n` constraints, `n`
/// private variables, every one in A, B and C.
#[derive(Clone, Copy)]
struct Squarings(usize);

impl Circuit<Scalar> for Squarings {
    fn synthesize<CS: ConstraintSystem<Scalar>>(self, cs: &mut CS) -> Result<(), SynthesisError> {
        let mut x = cs.alloc(|| "x0", || Err(SynthesisError::AssignmentMissing))?;
        for i in 1..self.0 {
            let y = cs.alloc(
                || format!("x{i}"),
                || Err(SynthesisError::AssignmentMissing),
            )?;
            cs.enforce(|| format!("c{i}"), |lc| lc + x, |lc| lc + x, |lc| lc + y);
            x = y;
        }
        let out = cs.alloc_input(|| "out", || Err(SynthesisError::AssignmentMissing))?;
        cs.enforce(|| "out", |lc| lc + x, |lc| lc + x, |lc| lc + out);
        Ok(())
    }
}

fn params_generate(c: &mut Criterion) {
    let mut group = c.benchmark_group("params_generate");
    group.sample_size(10);
    let id = ParamsId::new("bench", &[]);
    let n = 1 << 12;
    group.bench_with_input(BenchmarkId::new("lode", "squarings-4096"), &n, |b, &n| {
        b.iter(|| generate_insecure(&id, Squarings(n)).map(|p| p.h.len()))
    });
    group.bench_with_input(
        BenchmarkId::new("reference", "squarings-4096"),
        &n,
        |b, &n| {
            b.iter(|| {
                groth16::generate_random_parameters::<Bls12, _, _>(
                    Squarings(n),
                    &mut id.insecure_rng(),
                )
                .map(|p| p.h.len())
            })
        },
    );
    let size = SectorSize::S2KiB;
    let window = PostKind::Window.params_id(size);
    group.bench_function(BenchmarkId::new("lode", "window-post-2KiB"), |b| {
        b.iter(|| {
            generate_insecure(
                &window,
                PostCircuit {
                    kind: PostKind::Window,
                    size,
                    witness: None,
                },
            )
            .map(|p| p.h.len())
        })
    });
    group.finish();
}

fn scalars(n: usize) -> Vec<Scalar> {
    lode_benches::bench_bytes(n * 64, 7)
        .chunks_exact(64)
        .map(|c| {
            let mut b = [0u8; 64];
            b.copy_from_slice(c);
            Scalar::from_bytes_wide(&b)
        })
        .collect()
}

fn fixed_base(c: &mut Criterion) {
    let mut group = c.benchmark_group("fixed_base_mul");
    let n = 1 << 14;
    let s = scalars(n);
    group.throughput(Throughput::Elements(n as u64));
    for window in [12, 16] {
        let g1 = FixedBase::new(G1Projective::generator(), window);
        group.bench_with_input(BenchmarkId::new("g1", window), &s, |b, s| {
            b.iter(|| g1.mul_batch(black_box(s)))
        });
    }
    let g2 = FixedBase::new(G2Projective::generator(), 16);
    group.bench_with_input(BenchmarkId::new("g2", 16), &s, |b, s| {
        b.iter(|| g2.mul_batch(black_box(s)))
    });
    group.finish();
}

criterion_group!(benches, params_generate, fixed_base);
criterion_main!(benches);
