//! The scalar field of BLS12-381 eight elements at a time in AVX-512 IFMA lanes, for the FFTs of
//! [`super::fft`].
//!
//! An element is five 52-bit limbs in Montgomery form with `R = 2^260` ([`F8`] holds limb `j` of
//! eight elements in register `j`). From the [`Fe`] form (`R = 2^256`) an element moves by four
//! doublings and a change of limb size. Values are kept below `2r` (see each operation); a
//! Montgomery product of inputs below `4r` is below `r + 2^254 < 2r`.
//!
//! The FFT data is laid out so that lane `l` holds the `l`-th eighth of the array: block `q` holds
//! elements `q, q + m/8, …, q + 7m/8`. Every FFT level whose butterflies stay within an eighth
//! (half-size at most `m/16`) then pairs whole blocks with one twiddle for all lanes; the three
//! levels that cross eighths are left to the scalar code.
//!
//! # Safety
//!
//! The vector functions are `#[target_feature]` functions. They are reached only through an
//! [`Ifma`] token, which exists only where the processor has the features; each `unsafe` block
//! says so.

pub(crate) mod poseidon8;

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::lanes::{self, MASK, join, split};
use crate::poseidon::field::{Fe, INV, MODULUS};

/// `-r^-1 mod 2^52`.
const RINV: u64 = INV & MASK;

/// `k r` as 52-bit limbs (`k ≤ 4`).
const fn kr(k: u64) -> [u64; 5] {
    lanes::times::<4, 5, 5>(MODULUS, k)
}

const R: [u64; 5] = kr(1);
const R2: [u64; 5] = kr(2);

/// Proof that the processor has AVX-512 F and IFMA (the only way to reach the vector code).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ifma(());

impl Ifma {
    /// The token, if the processor has the features (and [`super::limit_arithmetic`] allows
    /// them).
    pub(crate) fn new() -> Option<Self> {
        (super::vector_allowed()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512ifma")
            && is_x86_feature_detected!("avx2"))
        .then_some(Ifma(()))
    }
}

/// Eight elements, limb `j` of each in register `j`.
#[derive(Clone, Copy)]
pub(crate) struct F8([__m512i; 5]);

/// An element as five 52-bit limbs (for broadcasting into all lanes).
pub(crate) type Limbs5 = [u64; 5];

/// `x` in this module's Montgomery form (`x 2^260 mod r`, canonical) as limbs.
pub(crate) fn limbs_of(x: Fe) -> Limbs5 {
    let m = x.double().double().double().double().montgomery();
    split([m[0], m[1], m[2], m[3]])
}

/// The element whose Montgomery form is `l` (below `2^256`), given `2^-4` as `inv16`.
fn fe_of(l: Limbs5, inv16: Fe) -> Fe {
    let w: [u64; 5] = join(l);
    let mut v = [w[0], w[1], w[2], w[3]];
    let mut top = w[4];
    loop {
        if top == 0
            && let Some(x) = Fe::from_montgomery(v)
        {
            return x * inv16;
        }
        let mut borrow = false;
        for (limb, m) in v.iter_mut().zip(MODULUS) {
            let (d, b) = limb.borrowing_sub(m, borrow);
            *limb = d;
            borrow = b;
        }
        top = top.wrapping_sub(u64::from(borrow));
    }
}

// `splat`, `normalize`, `mul` (below `2r` for inputs below `4r`), `add`, `sub` (`a + 2r − b` for
// `b < 2r` with `R2`), `reduce` (`a − 2r` where `a ≥ 2r`, else `a`, with `R2`) and `blend`.
lanes::lane_arithmetic!(F8, 5, R, RINV, [0, 1, 2, 3, 4], [2, 3, 4, 5]);

#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn pack(x: [Limbs5; 8]) -> F8 {
    F8(std::array::from_fn(|j| {
        _mm512_set_epi64(
            x[7][j] as i64,
            x[6][j] as i64,
            x[5][j] as i64,
            x[4][j] as i64,
            x[3][j] as i64,
            x[2][j] as i64,
            x[1][j] as i64,
            x[0][j] as i64,
        )
    }))
}

#[target_feature(enable = "avx512f,avx512ifma,avx2")]
#[inline]
fn unpack(v: &F8) -> [Limbs5; 8] {
    let l = v.0.map(|h| lanes::lanes(h));
    std::array::from_fn(|lane| std::array::from_fn(|j| l[j][lane]))
}

/// Blocks per parallel task in the vector levels (80 KiB).
const CHUNK: usize = 1 << 8;

impl Ifma {
    /// `v` (of `8e` elements) laid out in blocks: block `q` holds elements `q + l e`, `l < 8`.
    pub(crate) fn pack_blocks(self, v: &[Fe]) -> Vec<F8> {
        let e = v.len() / 8;
        (0..e)
            .into_par_iter()
            .with_min_len(CHUNK)
            .map(|q| {
                let x: [Limbs5; 8] = std::array::from_fn(|l| limbs_of(v[q + l * e]));
                // SAFETY: the token exists only where the features are present.
                unsafe { pack(x) }
            })
            .collect()
    }

    /// The inverse of [`Ifma::pack_blocks`], into `out` (of `8e` elements).
    pub(crate) fn unpack_blocks(self, blocks: &[F8], out: &mut [Fe]) {
        let inv16 = Option::<bls12_381::Scalar>::from(bls12_381::Scalar::from(16u64).invert())
            .map(|s| Fe::from_scalar(&s))
            .unwrap_or_default();
        let e = blocks.len();
        let unpacked: Vec<[Limbs5; 8]> = blocks
            .par_iter()
            .with_min_len(CHUNK)
            // SAFETY: the token exists only where the features are present.
            .map(|b| unsafe { unpack(b) })
            .collect();
        out.par_chunks_mut(e).enumerate().for_each(|(l, seg)| {
            for (o, u) in seg.iter_mut().zip(&unpacked) {
                *o = fe_of(u[l], inv16);
            }
        });
    }

    /// Multiplies every element by the element at the same place of `table`.
    pub(crate) fn scale(self, data: &mut [F8], table: &[F8]) {
        data.par_chunks_mut(CHUNK)
            .zip(table.par_chunks(CHUNK))
            .for_each(|(d, t)| {
                // SAFETY: the token exists only where the features are present.
                unsafe { scale_chunk(d, t) }
            });
    }

    /// The decimation-in-frequency levels of half-size `m/16` down to 1 (in blocks: the same
    /// numbers) of an FFT of `m = 8 · blocks` points with twiddles `tw[k] = ω^k`.
    pub(crate) fn dif_lower(self, data: &mut [F8], tw: &[Limbs5]) {
        let e = data.len();
        let m = 8 * e;
        let mut h = e / 2;
        while h >= 1 && 2 * h > CHUNK {
            level_parallel(self, data, h, tw, m / (2 * h), true);
            h /= 2;
        }
        if h >= 1 {
            data.par_chunks_mut(CHUNK.min(e)).for_each(|chunk| {
                let mut k = h;
                while k >= 1 {
                    // SAFETY: the token exists only where the features are present.
                    unsafe { level(chunk, k, tw, m / (2 * k), true) };
                    k /= 2;
                }
            });
        }
    }

    /// The decimation-in-time levels of half-size 1 up to `m/16`.
    pub(crate) fn dit_lower(self, data: &mut [F8], tw: &[Limbs5]) {
        let e = data.len();
        let m = 8 * e;
        let small = CHUNK.min(e);
        data.par_chunks_mut(small).for_each(|chunk| {
            let mut k = 1;
            while 2 * k <= chunk.len() {
                // SAFETY: the token exists only where the features are present.
                unsafe { level(chunk, k, tw, m / (2 * k), false) };
                k *= 2;
            }
        });
        let mut h = small;
        while h < e {
            level_parallel(self, data, h, tw, m / (2 * h), false);
            h *= 2;
        }
    }
}

/// A level whose groups are larger than a task: each group's butterflies split into tasks.
fn level_parallel(_: Ifma, data: &mut [F8], h: usize, tw: &[Limbs5], stride: usize, dif: bool) {
    data.par_chunks_mut(2 * h).for_each(|group| {
        let (lo, hi) = group.split_at_mut(h);
        lo.par_chunks_mut(CHUNK)
            .zip(hi.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(t, (lo, hi))| {
                // SAFETY: an `Ifma` token was passed in, so the features are present.
                unsafe { butterflies(lo, hi, tw, stride, t * CHUNK, dif) }
            });
    });
}

#[target_feature(enable = "avx512f,avx512ifma")]
fn level(data: &mut [F8], h: usize, tw: &[Limbs5], stride: usize, dif: bool) {
    for group in data.chunks_exact_mut(2 * h) {
        let (lo, hi) = group.split_at_mut(h);
        butterflies(lo, hi, tw, stride, 0, dif);
    }
}

/// Butterflies `(lo[j], hi[j])` with twiddle `tw[(first + j) stride]` (the same in every lane).
/// Values stay below `2r`: DIF `(u + v, (u − v) w)`, DIT `(u + v w, u − v w)`.
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn butterflies(
    lo: &mut [F8],
    hi: &mut [F8],
    tw: &[Limbs5],
    stride: usize,
    first: usize,
    dif: bool,
) {
    for (j, (u, v)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
        let w = splat(&tw[(first + j) * stride]);
        if dif {
            let (x, y) = (*u, *v);
            *u = reduce(&add(&x, &y), &R2);
            *v = mul(&sub(&x, &y, &R2), &w);
        } else {
            let t = mul(v, &w);
            let x = *u;
            *u = reduce(&add(&x, &t), &R2);
            *v = reduce(&sub(&x, &t, &R2), &R2);
        }
    }
}

#[target_feature(enable = "avx512f,avx512ifma")]
fn scale_chunk(data: &mut [F8], table: &[F8]) {
    for (d, t) in data.iter_mut().zip(table) {
        *d = mul(d, t);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bls12_381::Scalar;
    use ff::Field;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn lanes_compute_what_the_scalar_field_does() {
        let Some(tok) = Ifma::new() else {
            eprintln!("no AVX-512 IFMA here: skipped");
            return;
        };
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let mut xs: Vec<Fe> = (0..64)
            .map(|_| Fe::from_scalar(&Scalar::random(&mut rng)))
            .collect();
        xs[0] = Fe::default();
        xs[1] = Fe::from_scalar(&-Scalar::ONE);
        let ys: Vec<Fe> = (0..64)
            .map(|_| Fe::from_scalar(&Scalar::random(&mut rng)))
            .collect();
        let (bx, by) = (tok.pack_blocks(&xs), tok.pack_blocks(&ys));
        let mut out = vec![Fe::default(); 64];
        tok.unpack_blocks(&bx, &mut out);
        assert_eq!(out, xs);
        for (op, want) in [
            (
                0,
                xs.iter().zip(&ys).map(|(x, y)| *x * *y).collect::<Vec<_>>(),
            ),
            (1, xs.iter().zip(&ys).map(|(x, y)| *x + *y).collect()),
            (2, xs.iter().zip(&ys).map(|(x, y)| *x - *y).collect()),
        ] {
            let got: Vec<F8> = bx
                .iter()
                .zip(&by)
                // SAFETY: the token exists.
                .map(|(a, b)| unsafe {
                    match op {
                        0 => mul(a, b),
                        1 => reduce(&add(a, b), &R2),
                        _ => reduce(&sub(a, b, &R2), &R2),
                    }
                })
                .collect();
            tok.unpack_blocks(&got, &mut out);
            assert_eq!(out, want, "op {op}");
        }
        for k in [1, 2, 4] {
            let w: [u64; 5] = join(kr(k));
            assert_eq!(split(w), kr(k));
        }
        assert_eq!(RINV.wrapping_mul(R[0]) & MASK, MASK);
    }
}
