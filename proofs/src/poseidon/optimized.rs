//! The fast permutation: precomputed constants for the sparse partial-round
//! form, and the allocation-free hashing routine that uses them.
//!
//! Everything here is an exact algebraic rewrite of the plain permutation
//! (column convention: a linear layer maps `s` to `M s`; the MDS matrix is
//! symmetric, so this is also neptune's `s M`).
//!
//! Two rewrites make partial rounds cost O(t) instead of O(t^2):
//!
//! * Constant compression. In a partial round only cell 0 goes through the
//!   S-box, so the constants added to cells 1.. can be carried through the
//!   linear layer and added in the following round instead:
//!   `M(S(s + c)) = M(S(s + c_0 e_0)) + M(0, c_1, ..)`. Carrying forward
//!   round by round leaves each partial round with a single constant for
//!   cell 0, and folds the final carry into the constants of the first full
//!   round after the partial rounds.
//!
//! * Sparse factorisation. Write a linear layer as
//!   `A = [[a00, a^T], [b, Â]] = S P` with `P = diag(1, Â)` and the sparse
//!   `S = [[a00, a^T Â^-1], [b, I]]`. `P` leaves cell 0 alone and never reads
//!   it, so it commutes with the cell-0 constant and S-box of the round
//!   before it and can be merged into the previous linear layer. Working
//!   backwards from the last partial round, with `M = [[m00, v^T], [w, M̂]]`,
//!   the partial round `k` of `R` (1-based) ends with
//!   `S_k = [[m00, v^T M̂^-(R-k+1)], [M̂^(R-k) w, I]]`, and the last full
//!   round before the partial rounds uses `diag(1, M̂^R) M` in place of `M`.

use bls12_381::Scalar;
use ff::Field;

use super::matrix::{self, Matrix};

/// Precomputed data for the fast permutation, flattened so that the hashing
/// routine can view it as arrays of the (const generic) width.
#[derive(Clone, Debug)]
pub(super) struct FastConstants {
    /// Constants of the full rounds, `width` per round, in order; the first
    /// full round after the partial rounds includes the carried constants.
    full_constants: Vec<Scalar>,
    /// One cell-0 constant per partial round.
    partial_constants: Vec<Scalar>,
    /// The MDS matrix, row-major.
    mds: Vec<Scalar>,
    /// Linear layer of the last full round before the partial rounds.
    pre_sparse: Vec<Scalar>,
    /// Per partial round, `2 * width` scalars: the first row of the sparse
    /// matrix, then its first column (entry 0 unused and zero).
    sparse: Vec<Scalar>,
}

impl FastConstants {
    /// Derives the fast-path data from the plain round constants and MDS.
    pub(super) fn new(
        width: usize,
        full_rounds: usize,
        partial_rounds: usize,
        round_constants: &[Scalar],
        mds: &Matrix,
    ) -> Self {
        let t = width;
        let half = full_rounds / 2;
        let round = |r: usize| &round_constants[r * t..(r + 1) * t];

        // Constant compression, carried forward through the partial rounds.
        let mut full_constants = Vec::with_capacity(full_rounds * t);
        for r in 0..half {
            full_constants.extend_from_slice(round(r));
        }
        let mut partial_constants = Vec::with_capacity(partial_rounds);
        let mut carry = vec![Scalar::ZERO; t];
        for k in 0..partial_rounds {
            let mut rest: Vec<Scalar> = round(half + k)
                .iter()
                .zip(&carry)
                .map(|(c, d)| c + d)
                .collect();
            partial_constants.push(rest[0]);
            rest[0] = Scalar::ZERO;
            carry = matrix::apply(mds, &rest);
        }
        for r in half + partial_rounds..full_rounds + partial_rounds {
            if r == half + partial_rounds {
                full_constants.extend(round(r).iter().zip(&carry).map(|(c, d)| c + d));
            } else {
                full_constants.extend_from_slice(round(r));
            }
        }

        // Sparse factorisation, from the last partial round backwards.
        let m00 = mds[0][0];
        let v: Vec<Scalar> = mds[0][1..].to_vec();
        let w: Vec<Scalar> = mds[1..].iter().map(|row| row[0]).collect();
        let minor: Matrix = mds[1..].iter().map(|row| row[1..].to_vec()).collect();
        let minor_inv = matrix::invert(&minor);

        // `power` is M̂^(R-k), `inv_power` is M̂^-(R-k+1).
        let mut power = matrix::identity(t - 1);
        let mut inv_power = minor_inv.clone();
        let mut sparse_rev = Vec::with_capacity(partial_rounds);
        for _ in 0..partial_rounds {
            let mut row = Vec::with_capacity(t);
            row.push(m00);
            row.extend(matrix::apply_left(&v, &inv_power));
            let mut col = Vec::with_capacity(t);
            col.push(Scalar::ZERO);
            col.extend(matrix::apply(&power, &w));
            sparse_rev.push((row, col));
            power = matrix::mul(&power, &minor);
            inv_power = matrix::mul(&inv_power, &minor_inv);
        }
        let mut sparse = Vec::with_capacity(partial_rounds * 2 * t);
        for (row, col) in sparse_rev.into_iter().rev() {
            sparse.extend(row);
            sparse.extend(col);
        }

        // diag(1, M̂^R) M: row 0 stays, the other rows are mixed by M̂^R.
        let mut pre_sparse = Vec::with_capacity(t * t);
        pre_sparse.extend_from_slice(&mds[0]);
        for prow in &power {
            for j in 0..t {
                pre_sparse.push(prow.iter().zip(&mds[1..]).map(|(p, m)| *p * m[j]).sum());
            }
        }

        FastConstants {
            full_constants,
            partial_constants,
            mds: mds.iter().flatten().copied().collect(),
            pre_sparse,
            sparse,
        }
    }

    /// Hashes `inputs` (already checked to hold `T - 1` elements) with the
    /// domain tag in cell 0, returning cell 1 of the permuted state.
    #[inline]
    pub(super) fn hash<const T: usize>(&self, tag: Scalar, inputs: &[Scalar]) -> Scalar {
        let mut s = [Scalar::ZERO; T];
        s[0] = tag;
        s[1..].copy_from_slice(inputs);

        let (full, _) = self.full_constants.as_chunks::<T>();
        let (mds, _) = self.mds.as_chunks::<T>();
        let (pre_sparse, _) = self.pre_sparse.as_chunks::<T>();
        let (sparse, _) = self.sparse.as_chunks::<T>();
        let (first_half, second_half) = full.split_at(full.len() / 2);

        for (r, c) in first_half.iter().enumerate() {
            add_all(&mut s, c);
            sbox_all(&mut s);
            let m = if r + 1 == first_half.len() {
                pre_sparse
            } else {
                mds
            };
            s = dense(m, &s);
        }
        for (c, sp) in self.partial_constants.iter().zip(sparse.chunks_exact(2)) {
            s[0] = quintic(s[0] + c);
            sparse_mul(&mut s, &sp[0], &sp[1]);
        }
        for c in second_half {
            add_all(&mut s, c);
            sbox_all(&mut s);
            s = dense(mds, &s);
        }
        s[1]
    }
}

/// The S-box `x^5`, in three multiplications.
#[inline(always)]
pub(super) fn quintic(x: Scalar) -> Scalar {
    let x2 = x.square();
    x2.square() * x
}

#[inline(always)]
fn add_all<const T: usize>(s: &mut [Scalar; T], c: &[Scalar; T]) {
    for (x, c) in s.iter_mut().zip(c) {
        *x += c;
    }
}

#[inline(always)]
fn sbox_all<const T: usize>(s: &mut [Scalar; T]) {
    for x in s.iter_mut() {
        *x = quintic(*x);
    }
}

/// `out[i] = sum_j m[i][j] * s[j]`.
#[inline(always)]
fn dense<const T: usize>(m: &[[Scalar; T]], s: &[Scalar; T]) -> [Scalar; T] {
    let mut out = [Scalar::ZERO; T];
    for (o, row) in out.iter_mut().zip(m) {
        let mut acc = row[0] * s[0];
        for (a, b) in row[1..].iter().zip(&s[1..]) {
            acc += a * b;
        }
        *o = acc;
    }
    out
}

/// Multiplies by `[[row[0], row[1..]], [col[1..], I]]` in `2T - 1`
/// multiplications.
#[inline(always)]
fn sparse_mul<const T: usize>(s: &mut [Scalar; T], row: &[Scalar; T], col: &[Scalar; T]) {
    let s0 = s[0];
    let mut first = row[0] * s0;
    for (a, b) in row[1..].iter().zip(&s[1..]) {
        first += a * b;
    }
    for (x, c) in s[1..].iter_mut().zip(&col[1..]) {
        *x += c * s0;
    }
    s[0] = first;
}
