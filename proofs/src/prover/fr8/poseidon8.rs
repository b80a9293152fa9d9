//! Poseidon eight hashes at a time, one per AVX-512 IFMA lane: the sparse permutation of
//! [`crate::poseidon`]'s fast path (constant compression, the pre-sparse linear layer, one sparse
//! matrix per partial round), on [`F8`] values kept below `2r`.
//!
//! The scalar path batches partial rounds in blocks to save reductions; here every product is a
//! full Montgomery product in the lanes, so each partial round is applied as it is defined:
//! `x = (s_0 + c)^5`, `s_0 ← row · (x, s_1, …)`, `s_i ← s_i + col_i x`. The constants are the same
//! field elements (see `FastConstants::new`), so the digest is the same.

use super::{F8, Ifma, Limbs5, R2, add, fe_of, limbs_of, mul, pack, reduce, splat, unpack};
use crate::poseidon::field::Fe;

/// A permutation's constants as lane limbs (`x 2^260 mod r`, canonical), for one width.
#[derive(Clone, Debug)]
pub(crate) struct LaneConstants {
    width: usize,
    tag: Limbs5,
    /// `width` per full round, the carried constants folded in as on the scalar path.
    full: Vec<Limbs5>,
    /// One per partial round.
    partial: Vec<Limbs5>,
    /// Row-major.
    mds: Vec<Limbs5>,
    /// The linear layer of the last full round before the partial rounds, row-major.
    pre_sparse: Vec<Limbs5>,
    /// Per partial round, the first row of its sparse matrix (`width`).
    rows: Vec<Limbs5>,
    /// Per partial round, cells `1..width` of the first column of its sparse matrix.
    cols: Vec<Limbs5>,
}

impl LaneConstants {
    /// The lane form of the fast path's constants (`rows` and `cols` one entry per partial
    /// round, `width` and `width − 1` elements).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        width: usize,
        tag: Fe,
        full: &[Fe],
        partial: &[Fe],
        mds: &[Fe],
        pre_sparse: &[Fe],
        rows: &[Fe],
        cols: &[Fe],
    ) -> Self {
        let l = |v: &[Fe]| v.iter().map(|x| limbs_of(*x)).collect::<Vec<_>>();
        LaneConstants {
            width,
            tag: limbs_of(tag),
            full: l(full),
            partial: l(partial),
            mds: l(mds),
            pre_sparse: l(pre_sparse),
            rows: l(rows),
            cols: l(cols),
        }
    }

    /// The width these constants are for.
    pub(crate) fn width(&self) -> usize {
        self.width
    }
}

/// `x^5`.
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn quintic(x: &F8) -> F8 {
    let x2 = mul(x, x);
    let x4 = mul(&x2, &x2);
    mul(&x4, x)
}

/// `a + b`, below `2r` again.
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn add_r(a: &F8, b: &F8) -> F8 {
    reduce(&add(a, b), &R2)
}

/// `Σ_j c[j] s[j]` with the constants `c` broadcast.
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn dot(c: &[Limbs5], s: &[F8]) -> F8 {
    let mut acc = mul(&splat(&c[0]), &s[0]);
    for (c, x) in c.iter().zip(s).skip(1) {
        acc = add_r(&acc, &mul(&splat(c), x));
    }
    acc
}

/// The linear layer `m` (row-major) applied to `s`.
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn dense<const T: usize>(m: &[Limbs5], s: &[F8; T]) -> [F8; T] {
    let mut out = *s;
    for (o, row) in out.iter_mut().zip(m.chunks_exact(T)) {
        *o = dot(row, s);
    }
    out
}

/// The permutation of eight states, returning cell 1 of the last linear layer.
#[target_feature(enable = "avx512f,avx512ifma")]
fn permute<const T: usize>(c: &LaneConstants, mut s: [F8; T]) -> F8 {
    let full_rounds = c.full.len() / T;
    let half = full_rounds / 2;
    for r in 0..half {
        for (x, k) in s.iter_mut().zip(&c.full[r * T..(r + 1) * T]) {
            *x = quintic(&add_r(x, &splat(k)));
        }
        let m = if r + 1 == half { &c.pre_sparse } else { &c.mds };
        s = dense::<T>(m, &s);
    }
    for (p, (row, col)) in c
        .partial
        .iter()
        .zip(c.rows.chunks_exact(T).zip(c.cols.chunks_exact(T - 1)))
    {
        let x = quintic(&add_r(&s[0], &splat(p)));
        s[0] = x;
        let s0 = dot(row, &s);
        for (si, ci) in s.iter_mut().skip(1).zip(col) {
            *si = add_r(si, &mul(&splat(ci), &x));
        }
        s[0] = s0;
    }
    for r in half..full_rounds {
        for (x, k) in s.iter_mut().zip(&c.full[r * T..(r + 1) * T]) {
            *x = quintic(&add_r(x, &splat(k)));
        }
        if r + 1 < full_rounds {
            s = dense::<T>(&c.mds, &s);
        }
    }
    dot(&c.mds[T..2 * T], &s)
}

impl Ifma {
    /// Eight Poseidon digests of width `T`: hash `h` of `inputs[h (T−1) .. (h+1) (T−1)]`, the domain
    /// tag in cell 0; `c` must be the constants of width `T`.
    pub(crate) fn poseidon8<const T: usize>(
        self,
        c: &LaneConstants,
        inputs: &[Fe],
        inv16: Fe,
    ) -> [Fe; 8] {
        debug_assert_eq!(c.width, T);
        debug_assert_eq!(inputs.len(), 8 * (T - 1));
        let arity = T - 1;
        // SAFETY (all three): the token exists only where the features are present.
        let digest = unsafe {
            let s: [F8; T] = std::array::from_fn(|i| {
                if i == 0 {
                    splat(&c.tag)
                } else {
                    pack(std::array::from_fn(|l| {
                        limbs_of(inputs.get(l * arity + i - 1).copied().unwrap_or_default())
                    }))
                }
            });
            permute::<T>(c, s)
        };
        let out = unsafe { unpack(&digest) };
        out.map(|l| fe_of(l, inv16))
    }
}
