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
//!
//! The hashing routine works on [`Fe`], the limb-level Montgomery type whose
//! dot products reduce once per output cell; the constants are derived with
//! `Scalar`, then converted, and the state is converted in and out once per
//! hash.
//!
//! Partial rounds are further batched in blocks of `B` rounds to save
//! reductions. Within a block, cells 1.. only ever receive `col_j[i] x_j`
//! (`x_j` being the S-box output of round `j`), so they are left stale and
//! brought up to date once at the end of the block, with one `B`-term dot
//! product per cell instead of `B` separately reduced products. Cell 0 of
//! round `j` needs the up-to-date cells, which the stale ones `s_i` plus the
//! pending terms give:
//! `row_j[0] x_j + sum_(i>=1) row_j[i] (s_i + sum_(l<j) col_l[i] x_l)`
//! `= row_j[0] x_j + sum_(i>=1) row_j[i] s_i + sum_(l<j) e_jl x_l`
//! with `e_jl = sum_(i>=1) row_j[i] col_l[i]` precomputed: one dot product
//! of `t + j` terms.

use bls12_381::Scalar;
use ff::Field;

use super::field::{Coeff, Fe, Wide, dot};
use super::matrix::{self, Matrix};

/// The sparse form of a permutation (what the fast path computes with), as
/// field elements: for other implementations of the same permutation, such
/// as a device's kernel. With `t` the width, `F` the full and `R` the partial
/// rounds, the permutation of a state `s` (cell 0 the domain tag) is:
///
/// 1. `F / 2` full rounds: `s_i ← (s_i + full[r t + i])^5`, then `s ← M s`
///    (`out_i = Σ_j m[i t + j] s_j`), with `pre_sparse` in place of `mds` in
///    the last of them;
/// 2. `R` partial rounds: `x = (s_0 + partial[k])^5`; `s_0 ← Σ_j rows[k t +
///    j] s'_j` where `s' = (x, s_1, …)`; `s_i ← s_i + cols[k (t−1) + i − 1] x`
///    for `i ≥ 1`;
/// 3. `F / 2` full rounds as in 1, with `mds`, the last without its linear
///    layer;
///
/// and the digest is `Σ_j mds[t + j] s_j` (cell 1 of the last linear layer).
#[derive(Clone, Debug)]
pub struct SparseForm {
    /// The state's width (`arity + 1`).
    pub width: usize,
    /// Full rounds (both halves).
    pub full_rounds: usize,
    /// Partial rounds.
    pub partial_rounds: usize,
    /// Cell 0's starting value.
    pub tag: Scalar,
    /// `width` per full round, in order.
    pub full: Vec<Scalar>,
    /// One per partial round.
    pub partial: Vec<Scalar>,
    /// The MDS matrix, row-major.
    pub mds: Vec<Scalar>,
    /// The last first-half linear layer, row-major.
    pub pre_sparse: Vec<Scalar>,
    /// `width` per partial round.
    pub rows: Vec<Scalar>,
    /// `width − 1` per partial round.
    pub cols: Vec<Scalar>,
}

/// Precomputed data for the fast permutation, flattened so that the hashing
/// routine can view it as arrays of the (const generic) width.
#[derive(Clone, Debug)]
pub(super) struct FastConstants {
    /// The domain tag, the initial value of cell 0.
    tag: Fe,
    /// Constants of the full rounds, `width` per round, in order; the first
    /// full round after the partial rounds includes the carried constants.
    full_constants: Vec<Fe>,
    /// One cell-0 constant per partial round.
    partial_constants: Vec<Fe>,
    /// The MDS matrix, row-major.
    mds: Vec<Coeff>,
    /// Linear layer of the last full round before the partial rounds.
    pre_sparse: Vec<Coeff>,
    /// Partial rounds per block.
    block: usize,
    /// Per partial round, the first row of its sparse matrix followed by
    /// `e_jl` for the earlier rounds `l` of its block (see the module docs).
    block_rows: Vec<Coeff>,
    /// Per block, for each cell `i` in `1..width`, `col_l[i]` for the rounds
    /// `l` of the block.
    block_cols: Vec<Coeff>,
    /// The same permutation's constants for eight hashes at once in AVX-512
    /// IFMA lanes.
    #[cfg(target_arch = "x86_64")]
    lanes: crate::prover::fr8::poseidon8::LaneConstants,
    /// The same constants as field elements.
    form: SparseForm,
}

/// `1 / 16` in the scalar field, for leaving the lanes' Montgomery form.
#[cfg(target_arch = "x86_64")]
const INV16: Scalar = Scalar::from_raw([
    0x0fff_ffff_1000_0001,
    0xfe81_c9c2_cffe_763f,
    0xb006_3a87_8907_ba84,
    0x6cae_ccdd_f703_a573,
]);

/// The largest value [`block_size`] returns.
const MAX_BLOCK: usize = 4;

/// Partial rounds per block, by width. Longer blocks save more reductions
/// at the end of a block but lengthen the cell-0 dot products; on the
/// development machine (x86-64) 3 was best for width 3 and 4 for the rest,
/// with 3 to 8 all within a few percent for the wider states.
fn block_size(width: usize) -> usize {
    if width <= 3 { 3 } else { MAX_BLOCK }
}

impl FastConstants {
    /// Derives the fast-path data from the plain round constants and MDS.
    pub(super) fn new(
        width: usize,
        full_rounds: usize,
        partial_rounds: usize,
        round_constants: &[Scalar],
        mds: &Matrix,
        tag: Scalar,
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
        let sparse: Vec<(Vec<Scalar>, Vec<Scalar>)> = sparse_rev.into_iter().rev().collect();

        // Blocks of partial rounds (see the module docs).
        let block = block_size(t);
        let mut block_rows = Vec::new();
        let mut block_cols = Vec::new();
        for rounds in sparse.chunks(block) {
            for (j, (row, _)) in rounds.iter().enumerate() {
                block_rows.extend_from_slice(row);
                for (_, col) in &rounds[..j] {
                    block_rows.push(row[1..].iter().zip(&col[1..]).map(|(a, b)| a * b).sum());
                }
            }
            for i in 1..t {
                block_cols.extend(rounds.iter().map(|(_, col)| col[i]));
            }
        }

        // diag(1, M̂^R) M: row 0 stays, the other rows are mixed by M̂^R.
        let mut pre_sparse = Vec::with_capacity(t * t);
        pre_sparse.extend_from_slice(&mds[0]);
        for prow in &power {
            for j in 0..t {
                pre_sparse.push(prow.iter().zip(&mds[1..]).map(|(p, m)| *p * m[j]).sum());
            }
        }

        let fe = |v: &[Scalar]| v.iter().map(Fe::from_scalar).collect::<Vec<Fe>>();
        let coeff = |v: &[Scalar]| {
            v.iter()
                .map(|x| Coeff::new(Fe::from_scalar(x)))
                .collect::<Vec<Coeff>>()
        };
        let mds: Vec<Scalar> = mds.iter().flatten().copied().collect();
        let rows: Vec<Scalar> = sparse.iter().flat_map(|(r, _)| r.clone()).collect();
        let cols: Vec<Scalar> = sparse.iter().flat_map(|(_, c)| c[1..].to_vec()).collect();
        #[cfg(target_arch = "x86_64")]
        let lanes = {
            crate::prover::fr8::poseidon8::LaneConstants::new(
                t,
                Fe::from_scalar(&tag),
                &fe(&full_constants),
                &fe(&partial_constants),
                &fe(&mds),
                &fe(&pre_sparse),
                &fe(&rows),
                &fe(&cols),
            )
        };
        let form = SparseForm {
            width: t,
            full_rounds,
            partial_rounds,
            tag,
            full: full_constants.clone(),
            partial: partial_constants.clone(),
            mds: mds.clone(),
            pre_sparse: pre_sparse.clone(),
            rows,
            cols,
        };
        FastConstants {
            #[cfg(target_arch = "x86_64")]
            lanes,
            form,
            tag: Fe::from_scalar(&tag),
            full_constants: fe(&full_constants),
            partial_constants: fe(&partial_constants),
            mds: coeff(&mds),
            pre_sparse: coeff(&pre_sparse),
            block,
            block_rows: coeff(&block_rows),
            block_cols: coeff(&block_cols),
        }
    }

    /// The constants as field elements.
    pub(super) fn form(&self) -> &SparseForm {
        &self.form
    }

    /// `out[i]` = the digest of `inputs[i (T−1) .. (i+1) (T−1)]` (already
    /// checked to fit `out`): eight at a time in AVX-512 IFMA lanes where the
    /// processor has them, the rest one by one.
    pub(super) fn hash_many<const T: usize>(&self, inputs: &[Scalar], out: &mut [Scalar]) {
        let arity = T - 1;
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if let Some(tok) = crate::prover::fr8::Ifma::new()
            && self.lanes.width() == T
        {
            let inv16 = Fe::from_scalar(&INV16);
            let mut fes = [Fe::default(); 8 * 16];
            for (o, chunk) in out.chunks_exact_mut(8).zip(inputs.chunks_exact(8 * arity)) {
                for (f, x) in fes.iter_mut().zip(chunk) {
                    *f = Fe::from_scalar(x);
                }
                let digests = tok.poseidon8::<T>(&self.lanes, &fes[..8 * arity], inv16);
                for (o, d) in o.iter_mut().zip(digests) {
                    *o = d.to_scalar();
                }
                done += 8;
            }
        }
        for (o, x) in out.iter_mut().zip(inputs.chunks_exact(arity)).skip(done) {
            *o = self.hash::<T>(x);
        }
    }

    /// Hashes `inputs` (already checked to hold `T - 1` elements) with the
    /// domain tag in cell 0, returning cell 1 of the permuted state.
    #[inline]
    pub(super) fn hash<const T: usize>(&self, inputs: &[Scalar]) -> Scalar {
        #[cfg(target_arch = "x86_64")]
        if crate::mulx::available() {
            // SAFETY: the processor has BMI2 and ADX, all `hash_mulx` is compiled for.
            return unsafe { self.hash_mulx::<T>(inputs) };
        }
        self.hash_body::<T>(inputs)
    }

    /// [`Self::hash_body`] compiled for processors with BMI2 and ADX: the same code, in which
    /// the compiler makes the linear layers' 128-bit products with MULX.
    ///
    /// # Safety
    /// The processor must have BMI2 and ADX ([`crate::mulx::available`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "bmi2,adx")]
    unsafe fn hash_mulx<const T: usize>(&self, inputs: &[Scalar]) -> Scalar {
        self.hash_body::<T>(inputs)
    }

    #[inline(always)]
    fn hash_body<const T: usize>(&self, inputs: &[Scalar]) -> Scalar {
        let mut s = [self.tag; T];
        for (x, input) in s[1..].iter_mut().zip(inputs) {
            *x = Fe::from_scalar(input);
        }

        let (full, _) = self.full_constants.as_chunks::<T>();
        let (mds, _) = self.mds.as_chunks::<T>();
        let (pre_sparse, _) = self.pre_sparse.as_chunks::<T>();
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
        // `new` lays out `block_rows` and `block_cols` in exactly the order
        // this loop consumes them.
        let mut rows = self.block_rows.as_slice();
        let mut cols = self.block_cols.as_slice();
        let mut xs = [Fe::default(); MAX_BLOCK];
        for constants in self.partial_constants.chunks(self.block) {
            let n = constants.len();
            for (j, c) in constants.iter().enumerate() {
                let x = quintic_fe(s[0] + *c);
                xs[j] = x;
                s[0] = x;
                let (row, rest) = rows.split_at(T + j);
                rows = rest;
                let (row, pending) = row.split_at(T);
                let mut acc = Wide::default();
                acc.add_dot(row, &s);
                acc.add_dot(pending, &xs[..j]);
                s[0] = acc.reduce();
            }
            for x in &mut s[1..] {
                let (col, rest) = cols.split_at(n);
                cols = rest;
                *x = *x + dot(col, &xs[..n]);
            }
        }
        for (r, c) in second_half.iter().enumerate() {
            add_all(&mut s, c);
            sbox_all(&mut s);
            // The digest is cell 1 of the last linear layer: skip the rest.
            if r + 1 < second_half.len() {
                s = dense(mds, &s);
            }
        }
        dot(&mds[1], &s).to_scalar()
    }
}

/// The S-box `x^5` on `Scalar`, in three multiplications (used by the
/// reference permutation).
#[inline(always)]
pub(super) fn quintic(x: Scalar) -> Scalar {
    let x2 = x.square();
    x2.square() * x
}

/// The S-box `x^5`, in three multiplications.
#[inline(always)]
fn quintic_fe(x: Fe) -> Fe {
    let x2 = x.square();
    x2.square() * x
}

#[inline(always)]
fn add_all<const T: usize>(s: &mut [Fe; T], c: &[Fe; T]) {
    for (x, c) in s.iter_mut().zip(c) {
        *x = *x + *c;
    }
}

#[inline(always)]
fn sbox_all<const T: usize>(s: &mut [Fe; T]) {
    for x in s.iter_mut() {
        *x = quintic_fe(*x);
    }
}

/// `out[i] = sum_j m[i][j] * s[j]`, one reduction per cell.
#[inline(always)]
fn dense<const T: usize>(m: &[[Coeff; T]], s: &[Fe; T]) -> [Fe; T] {
    let mut out = [Fe::default(); T];
    for (o, row) in out.iter_mut().zip(m) {
        *o = dot(row, s);
    }
    out
}
