//! Multi-scalar multiplication `Σ s_i P_i` over affine bases: Pippenger's bucket method with signed
//! windows, each bucket summed by rounds of batched affine additions.
//!
//! Per window of `c` bits every scalar has a digit `d` in `(-2^(c-1), 2^(c-1)]`, and `±P_i` belongs to
//! bucket `|d|`. The window's points are sorted by bucket (a counting sort), then summed pairwise in
//! rounds: every round adds neighbours of the same bucket, all of a round's additions being
//! independent. An affine addition `(x1, y1) + (x2, y2)` needs `1 / (x2 - x1)`; a batch of
//! independent additions inverts all its denominators at once (Montgomery's trick: three
//! multiplications each, one inversion per batch), so an addition costs about six multiplications
//! instead of the ten of a mixed addition into projective coordinates. The window's sum `Σ j B_j` is
//! then formed with running sums in XYZZ coordinates, and the windows, which run in parallel
//! (rayon), are combined by doubling.
//!
//! How a batch of additions is computed is the [`Backend`]'s: portable 64-bit arithmetic
//! ([`Portable`]), or eight additions at a time in AVX-512 IFMA lanes where the processor has them
//! ([`super::ifma`]). Equal x-coordinates (`P + P`, `P - P`) take an exact slow path in both, so the
//! result is the exact sum for any input, not merely with high probability.

use rayon::prelude::*;

use super::curve::{Affine, Xyzz};
use super::field::Field;

/// A scalar as its canonical little-endian limbs (below the group order `r < 2^255`).
pub(crate) type Limbs = [u64; 4];

/// Below this many points the buckets are plain XYZZ points.
const SMALL: usize = 1 << 8;

/// Largest window: digits fit an `i16`.
const MAX_WINDOW: usize = 15;

/// Scalars per parallel task when recoding.
const RECODE_CHUNK: usize = 1 << 12;

/// Additions sharing one inversion.
pub(crate) const BATCH: usize = 1 << 13;

/// One addition of a round: the operands' indices in the round's source (for bases, the index
/// shifted left by one with the sign in bit 0) and where the sum goes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pair {
    pub(crate) a: u32,
    pub(crate) b: u32,
    pub(crate) dst: u32,
}

/// Reads operands: bases (by index and sign) or points of an earlier round.
pub(crate) trait Source<P>: Sync {
    /// Operand `i`, or its negation when [`Source::negated`] says so.
    fn get(&self, i: u32) -> P;

    /// Whether the operand is the negation of what [`Source::get`] returns.
    #[inline(always)]
    fn negated(&self, _i: u32) -> bool {
        false
    }

    /// Operand `i` itself (negated where needed).
    fn point(&self, i: u32) -> P;

    /// What operand `i` is read from, for prefetching.
    type Stored;

    /// The storage of operand `i`, if it is in memory.
    fn stored(&self, i: u32) -> Option<&Self::Stored>;
}

/// How a batch of independent affine additions is computed.
pub(crate) trait Backend: Sync {
    /// The coordinate field.
    type F: Field;
    /// A base as stored (with what the backend needs to negate it cheaply).
    type Base: Copy + Send + Sync;
    /// A finite point in the backend's representation.
    type Point: Copy + Send + Sync;
    /// Buffers reused from one batch to the next.
    type Scratch: Default + Send;
    /// Reads bases for the first round.
    type Bases<'a>: Source<Self::Point>
    where
        Self: 'a;

    /// A base in affine coordinates over [`Backend::F`].
    fn base_affine(&self, base: &Self::Base) -> Affine<Self::F>;

    /// The bases as a [`Source`] (index `i << 1 | neg` stands for base `i` or its negation).
    fn bases<'a>(&'a self, bases: &'a [Self::Base]) -> Self::Bases<'a>;

    /// `out[dst] = src(a) + src(b)` for every pair; `ok[dst]` is cleared when the sum is the
    /// identity (and `out[dst]` is then meaningless).
    fn add_pairs<S: Source<Self::Point> + ?Sized>(
        &self,
        src: &S,
        pairs: &[Pair],
        out: &mut [Self::Point],
        ok: &mut [bool],
        scratch: &mut Self::Scratch,
    );

    /// The point in affine coordinates over [`Backend::F`].
    fn affine(&self, p: &Self::Point) -> Affine<Self::F>;

    /// `Σ_j j B_j` for each window's bucket sums (`B_j` for the keys `j` present, `1 ≤ j ≤ count`,
    /// keys ascending). This default forms running sums one window at a time.
    fn reduce(&self, windows: &[BucketSums<Self::Point>], count: usize) -> Vec<Xyzz<Self::F>> {
        windows
            .iter()
            .map(|(keys, points)| {
                let mut running = Xyzz::IDENTITY;
                let mut total = Xyzz::IDENTITY;
                let mut top = keys.iter().zip(points).rev().peekable();
                for b in (1..=count as u32).rev() {
                    if let Some((_, p)) = top.next_if(|(j, _)| **j == b) {
                        running.add_affine(&self.affine(p));
                    }
                    total.add(&running);
                }
                total
            })
            .collect()
    }
}

/// A window's bucket sums: bucket numbers, ascending, and their points.
pub(crate) type BucketSums<P> = (Vec<u32>, Vec<P>);

/// Parallel tasks the windows of one multiplication are split into.
const WINDOW_TASKS: usize = 4;

/// Windows reduced together (the lanes of the vector backend).
const REDUCE_GROUP: usize = 8;

impl<P: Copy + Sync> Source<P> for [P] {
    type Stored = P;

    #[inline(always)]
    fn get(&self, i: u32) -> P {
        self[i as usize]
    }

    #[inline(always)]
    fn point(&self, i: u32) -> P {
        self[i as usize]
    }

    #[inline(always)]
    fn stored(&self, i: u32) -> Option<&P> {
        self.get(i as usize)
    }
}

/// `Σ s_i P_i` over the common length of `bases` and `scalars`.
pub(crate) fn msm<B: Backend>(be: &B, bases: &[B::Base], scalars: &[Limbs]) -> Xyzz<B::F> {
    let n = bases.len().min(scalars.len());
    let (bases, scalars) = (&bases[..n], &scalars[..n]);
    if n == 0 {
        return Xyzz::IDENTITY;
    }
    let c = window_for(n);
    let windows = windows(c);
    let digits = recode(scalars, c, windows);
    let sums: Vec<Xyzz<B::F>> = if n < SMALL {
        digits
            .par_chunks(n)
            .map(|d| window_small(be, bases, d, c))
            .collect()
    } else {
        let count = 1 << (c - 1);
        // Windows in tasks of a few, each task reusing its buffers.
        let per_task = windows.div_ceil(WINDOW_TASKS);
        let buckets: Vec<BucketSums<B::Point>> = digits
            .par_chunks(n * per_task)
            .flat_map_iter(|ds| {
                let mut rounds = Rounds::<B>::new();
                ds.chunks(n)
                    .map(|d| rounds.window(be, bases, d, count))
                    .collect::<Vec<_>>()
            })
            .collect();
        buckets
            .par_chunks(REDUCE_GROUP)
            .map(|group| be.reduce(group, count))
            .collect::<Vec<_>>()
            .concat()
    };
    let mut acc = Xyzz::IDENTITY;
    for sum in sums.iter().rev() {
        for _ in 0..c {
            acc = acc.double();
        }
        acc.add(sum);
    }
    acc
}

/// The largest scalar, `r − 1`.
const R_MINUS_ONE: Limbs = [
    0xffff_ffff_0000_0000,
    0x53bd_a402_fffe_5bfe,
    0x3339_d808_09a1_d805,
    0x73ed_a753_299d_7d48,
];

/// The number of `c`-bit signed windows every scalar below `r` needs: enough to cover its 255
/// bits, and one more if the top window could carry out (its digit, plus the carry from below,
/// must not exceed `2^(c-1)`).
fn windows(c: usize) -> usize {
    let w = 255usize.div_ceil(c);
    let at = (w - 1) * c;
    let top = bits(&R_MINUS_ONE, at, 255 - at);
    if top < 1 << (c - 1) { w } else { w + 1 }
}

/// The window width that minimises the estimated cost, in base-field multiplications: per window,
/// about 6.5 per point (batched affine addition) and 24 per bucket (the running sums).
fn window_for(n: usize) -> usize {
    let n = n as f64;
    (4..=MAX_WINDOW)
        .min_by(|&a, &b| {
            let cost = |c: usize| {
                let w = windows(c) as f64;
                w * (6.5 * n + 24.0 * (1u64 << (c - 1)) as f64)
            };
            cost(a).total_cmp(&cost(b))
        })
        .unwrap_or(MAX_WINDOW)
}

/// `width` bits of `s` from bit `at` (zero past the end).
#[inline(always)]
fn bits(s: &Limbs, at: usize, width: usize) -> u64 {
    let (i, shift) = (at / 64, at % 64);
    let lo = s.get(i).map_or(0, |l| l >> shift);
    let hi = match s.get(i + 1) {
        Some(l) if shift + width > 64 => l << (64 - shift),
        _ => 0,
    };
    (lo | hi) & ((1u64 << width) - 1)
}

/// The signed digits of every scalar, window by window: `digits[k * n + i]` is digit `k` of scalar
/// `i`. With [`windows`] windows and scalars below `r` the last window never carries out.
fn recode(scalars: &[Limbs], c: usize, windows: usize) -> Vec<i16> {
    let n = scalars.len();
    let mut digits = vec![0i16; n * windows];
    // Hand every task its segment of each window's row.
    let tasks = n.div_ceil(RECODE_CHUNK);
    let mut segments: Vec<Vec<&mut [i16]>> = (0..tasks).map(|_| Vec::new()).collect();
    for row in digits.chunks_mut(n) {
        for (task, seg) in segments.iter_mut().zip(row.chunks_mut(RECODE_CHUNK)) {
            task.push(seg);
        }
    }
    let half = 1u64 << (c - 1);
    let full = 1i64 << c;
    segments
        .into_par_iter()
        .zip(scalars.par_chunks(RECODE_CHUNK))
        .for_each(|(mut rows, scalars)| {
            for (i, s) in scalars.iter().enumerate() {
                let mut carry = 0u64;
                for (k, row) in rows.iter_mut().enumerate() {
                    let raw = bits(s, k * c, c) + carry;
                    let digit = if raw > half {
                        carry = 1;
                        raw as i64 - full
                    } else {
                        carry = 0;
                        raw as i64
                    };
                    // |digit| ≤ 2^(c-1) ≤ 2^14.
                    row[i] = digit as i16;
                }
            }
        });
    digits
}

/// One window with XYZZ buckets (few points).
fn window_small<B: Backend>(be: &B, bases: &[B::Base], digits: &[i16], c: usize) -> Xyzz<B::F> {
    let mut buckets = vec![Xyzz::<B::F>::IDENTITY; 1 << (c - 1)];
    for (p, &d) in bases.iter().zip(digits) {
        if d != 0 {
            let b = &mut buckets[usize::from(d.unsigned_abs()) - 1];
            let a = be.base_affine(p);
            b.add_affine(&if d < 0 { a.neg() } else { a });
        }
    }
    let mut running = Xyzz::IDENTITY;
    let mut total = Xyzz::IDENTITY;
    for b in buckets.iter().rev() {
        running.add(b);
        total.add(&running);
    }
    total
}

/// The buffers of the windows one task sums, reused from window to window.
struct Rounds<B: Backend> {
    start: Vec<u32>,
    fill: Vec<u32>,
    entries: Vec<u32>,
    pairs: Vec<Pair>,
    keys: Vec<u32>,
    points: Vec<B::Point>,
    next_keys: Vec<u32>,
    next: Vec<B::Point>,
    ok: Vec<bool>,
    scratch: B::Scratch,
}

impl<B: Backend> Rounds<B> {
    fn new() -> Self {
        Rounds {
            start: Vec::new(),
            fill: Vec::new(),
            entries: Vec::new(),
            pairs: Vec::new(),
            keys: Vec::new(),
            points: Vec::new(),
            next_keys: Vec::new(),
            next: Vec::new(),
            ok: Vec::new(),
            scratch: B::Scratch::default(),
        }
    }

    /// One window's bucket sums: `B_j = Σ_{i: |d_i| = j} sign(d_i) P_i` for the window's digits
    /// `d_i` (of magnitude at most `count`).
    fn window(
        &mut self,
        be: &B,
        bases: &[B::Base],
        digits: &[i16],
        count: usize,
    ) -> BucketSums<B::Point> {
        // Counting sort by bucket (1..=count) of `i << 1 | neg`.
        let start = &mut self.start;
        start.clear();
        start.resize(count + 2, 0);
        for &d in digits {
            if d != 0 {
                start[usize::from(d.unsigned_abs()) + 1] += 1;
            }
        }
        for b in 1..start.len() {
            start[b] += start[b - 1];
        }
        self.fill.clear();
        self.fill.extend_from_slice(start);
        let entries = &mut self.entries;
        entries.clear();
        entries.resize(start[count + 1] as usize, 0);
        for (i, &d) in digits.iter().enumerate() {
            if d != 0 {
                let b = usize::from(d.unsigned_abs());
                entries[self.fill[b] as usize] = (i as u32) << 1 | u32::from(d < 0);
                self.fill[b] += 1;
            }
        }
        let source = be.bases(bases);
        let Some(&first) = entries.first() else {
            return (Vec::new(), Vec::new());
        };

        // Round one, from the bases: pairs within each bucket, an odd one out carried over; the
        // pairs' places are filled by their sums.
        let (pairs, keys) = (&mut self.pairs, &mut self.keys);
        pairs.clear();
        keys.clear();
        for b in 1..=count {
            let list = &entries[start[b] as usize..start[b + 1] as usize];
            let mut it = list.chunks_exact(2);
            for p in it.by_ref() {
                pairs.push(Pair {
                    a: p[0],
                    b: p[1],
                    dst: keys.len() as u32,
                });
                keys.push(b as u32);
            }
            if !it.remainder().is_empty() {
                keys.push(b as u32);
            }
        }
        let filler = source.get(first);
        resize(&mut self.points, keys.len(), filler);
        let mut k = 0;
        for b in 1..=count {
            let list = &entries[start[b] as usize..start[b + 1] as usize];
            k += list.len() / 2;
            if list.len() % 2 == 1 {
                self.points[k] = source.point(list[list.len() - 1]);
                k += 1;
            }
        }
        self.ok.clear();
        self.ok.resize(keys.len(), true);
        be.add_pairs(
            &source,
            pairs,
            &mut self.points,
            &mut self.ok,
            &mut self.scratch,
        );
        compact(keys, &mut self.points, &mut self.ok);

        // Further rounds, until every bucket holds at most one point.
        loop {
            let (keys, next_keys, pairs) = (&self.keys, &mut self.next_keys, &mut self.pairs);
            pairs.clear();
            next_keys.clear();
            let mut i = 0;
            while i < keys.len() {
                let b = keys[i];
                if i + 1 < keys.len() && keys[i + 1] == b {
                    pairs.push(Pair {
                        a: i as u32,
                        b: i as u32 + 1,
                        dst: next_keys.len() as u32,
                    });
                    i += 2;
                } else {
                    i += 1;
                }
                next_keys.push(b);
            }
            if pairs.is_empty() {
                break;
            }
            // Items carried over are copied; the sums fill the other places.
            resize(&mut self.next, next_keys.len(), filler);
            let mut i = 0;
            let mut slot = 0;
            for p in pairs.iter() {
                let a = p.a as usize;
                while i < a {
                    self.next[slot] = self.points[i];
                    slot += 1;
                    i += 1;
                }
                slot += 1;
                i += 2;
            }
            while i < keys.len() {
                self.next[slot] = self.points[i];
                slot += 1;
                i += 1;
            }
            self.ok.clear();
            self.ok.resize(next_keys.len(), true);
            be.add_pairs(
                &self.points[..],
                pairs,
                &mut self.next,
                &mut self.ok,
                &mut self.scratch,
            );
            compact(&mut self.next_keys, &mut self.next, &mut self.ok);
            std::mem::swap(&mut self.keys, &mut self.next_keys);
            std::mem::swap(&mut self.points, &mut self.next);
        }
        (self.keys.clone(), self.points.clone())
    }
}

/// Sets the length of `v` to `len`, writing `filler` only into new places.
fn resize<P: Copy>(v: &mut Vec<P>, len: usize, filler: P) {
    if v.len() < len {
        v.resize(len, filler);
    } else {
        v.truncate(len);
    }
}

/// Drops the items whose sum was the identity.
fn compact<P: Copy>(keys: &mut Vec<u32>, points: &mut Vec<P>, ok: &mut [bool]) {
    if ok.iter().all(|o| *o) {
        return;
    }
    let mut w = 0;
    for r in 0..keys.len() {
        if ok[r] {
            keys[w] = keys[r];
            points[w] = points[r];
            w += 1;
        }
    }
    keys.truncate(w);
    points.truncate(w);
}

/// The portable backend: affine points over `F`, one addition at a time within a batch.
pub(crate) struct Portable<F>(std::marker::PhantomData<F>);

impl<F> Portable<F> {
    /// The backend.
    pub(crate) const fn new() -> Self {
        Portable(std::marker::PhantomData)
    }
}

/// Reads bases by index and sign.
pub(crate) struct SignedBases<'a, F>(&'a [Affine<F>]);

impl<F: Field> Source<Affine<F>> for SignedBases<'_, F> {
    type Stored = Affine<F>;

    #[inline(always)]
    fn get(&self, i: u32) -> Affine<F> {
        let p = self.0[(i >> 1) as usize];
        if i & 1 == 1 { p.neg() } else { p }
    }

    #[inline(always)]
    fn point(&self, i: u32) -> Affine<F> {
        self.get(i)
    }

    #[inline(always)]
    fn stored(&self, i: u32) -> Option<&Affine<F>> {
        self.0.get((i >> 1) as usize)
    }
}

impl<F: Field> Backend for Portable<F> {
    type F = F;
    type Base = Affine<F>;
    type Point = Affine<F>;
    type Scratch = Vec<F>;
    type Bases<'a>
        = SignedBases<'a, F>
    where
        F: 'a;

    #[inline(always)]
    fn base_affine(&self, base: &Affine<F>) -> Affine<F> {
        *base
    }

    fn bases<'a>(&'a self, bases: &'a [Affine<F>]) -> SignedBases<'a, F> {
        SignedBases(bases)
    }

    fn add_pairs<S: Source<Affine<F>> + ?Sized>(
        &self,
        src: &S,
        pairs: &[Pair],
        out: &mut [Affine<F>],
        ok: &mut [bool],
        scratch: &mut Vec<F>,
    ) {
        for chunk in pairs.chunks(BATCH) {
            add_batch(src, chunk, out, ok, scratch);
        }
    }

    #[inline(always)]
    fn affine(&self, p: &Affine<F>) -> Affine<F> {
        *p
    }
}

/// `out[dst] = src(a) + src(b)` for each pair, with one inversion for the batch.
pub(crate) fn add_batch<F: Field, S: Source<Affine<F>> + ?Sized>(
    src: &S,
    pairs: &[Pair],
    out: &mut [Affine<F>],
    ok: &mut [bool],
    prefix: &mut Vec<F>,
) {
    prefix.clear();
    let mut acc = F::ONE;
    for pair in pairs {
        let (a, b) = (src.get(pair.a), src.get(pair.b));
        let d = b.x - a.x;
        let dst = pair.dst as usize;
        if d.is_zero() {
            // Exceptional: P + P or P - P, now; the second pass skips it (d = 0 again).
            match (a.y == b.y)
                .then(|| Xyzz::from_affine(&a).double().to_affine())
                .flatten()
            {
                Some(p) => out[dst] = p,
                None => ok[dst] = false,
            }
            prefix.push(F::ZERO);
            continue;
        }
        prefix.push(acc);
        acc = acc * d;
    }
    // The product of nonzero denominators is nonzero.
    let mut inv = acc.invert().unwrap_or(F::ZERO);
    for (pair, before) in pairs.iter().zip(prefix.iter()).rev() {
        let (a, b) = (src.get(pair.a), src.get(pair.b));
        let d = b.x - a.x;
        if d.is_zero() {
            continue;
        }
        let d_inv = inv * *before;
        inv = inv * d;
        let lambda = (b.y - a.y) * d_inv;
        let x3 = lambda.square() - a.x - b.x;
        let y3 = lambda * (a.x - x3) - a.y;
        out[pair.dst as usize] = Affine { x: x3, y: y3 };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::prover::curve::{G1, G2, Group};
    use bls12_381::{G1Affine, G1Projective, G2Affine, G2Projective, Scalar};
    use ff::{Field as _, PrimeField};
    use group::{Curve, Group as _};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    pub(crate) fn limbs(s: &Scalar) -> Limbs {
        let b = s.to_repr();
        let mut out = [0u64; 4];
        for (l, c) in out.iter_mut().zip(b.chunks_exact(8)) {
            *l = u64::from_le_bytes(c.try_into().unwrap());
        }
        out
    }

    pub(crate) fn random_g1(seed: u8, n: usize) -> (Vec<G1Affine>, Vec<Scalar>) {
        let mut rng = ChaCha20Rng::from_seed([seed; 32]);
        let g = G1Projective::random(&mut rng);
        // Multiples of one point are much faster to make than random points.
        let mut points = Vec::with_capacity(n);
        let mut p = g;
        for _ in 0..n {
            points.push(p);
            p += g;
        }
        let mut affine = vec![G1Affine::identity(); n];
        G1Projective::batch_normalize(&points, &mut affine);
        let mut scalars: Vec<Scalar> = (0..n).map(|_| Scalar::random(&mut rng)).collect();
        // Edge scalars: 0, 1, -1, 2^k.
        for (i, s) in [
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            Scalar::from(1u64 << 40),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(x) = scalars.get_mut(i) {
                *x = s;
            }
        }
        (affine, scalars)
    }

    /// The MSM of `backend` over bases prepared by `prepare` equals the plain sum.
    pub(crate) fn check_g1<B: Backend<F = crate::prover::field::Fp>>(
        be: &B,
        prepare: impl Fn(&G1Affine) -> B::Base,
        points: &[G1Affine],
        scalars: &[Scalar],
    ) {
        let bases: Vec<B::Base> = points.iter().map(prepare).collect();
        let l: Vec<Limbs> = scalars.iter().map(limbs).collect();
        let got = msm(be, &bases, &l);
        let want: G1Projective = points.iter().zip(scalars).map(|(p, s)| p * s).sum();
        assert_eq!(G1::export(&got).unwrap(), want, "n = {}", points.len());
    }

    fn portable_g1(points: &[G1Affine], scalars: &[Scalar]) {
        check_g1(
            &Portable::new(),
            |p| G1::import(p).unwrap(),
            points,
            scalars,
        );
    }

    #[test]
    fn g1_matches_the_naive_sum() {
        for n in [0, 1, 2, 7, 100, 300, 1500, 5000] {
            let (points, scalars) = random_g1(5, n);
            portable_g1(&points, &scalars);
        }
    }

    /// The same few points many times, and their negatives: buckets meet equal and opposite points
    /// (doubling, cancelling to the identity), and a few buckets hold most points.
    pub(crate) fn degenerate_cases() -> Vec<(Vec<G1Affine>, Vec<Scalar>)> {
        let (few, _) = random_g1(6, 3);
        let n = 3000;
        let points: Vec<G1Affine> = (0..n)
            .map(|i| if i % 2 == 0 { few[i % 3] } else { -few[i % 3] })
            .collect();
        let scalars: Vec<Scalar> = (0..n)
            .map(|i| Scalar::from((i % 5) as u64 + 1) * Scalar::from(1u64 << 20))
            .collect();
        let even: Vec<G1Affine> = (0..n)
            .map(|i| if i % 2 == 0 { few[0] } else { -few[0] })
            .collect();
        let (many, _) = random_g1(7, n);
        vec![
            (points, scalars),
            // Everything cancels.
            (even.clone(), vec![Scalar::from(7u64); n]),
            // Everything doubles.
            (vec![few[1]; n], vec![Scalar::from(3u64); n]),
            // Ones and zeros (bits): one bucket holds every point.
            (
                many.clone(),
                (0..n).map(|i| Scalar::from((i % 2) as u64)).collect(),
            ),
        ]
    }

    #[test]
    fn repeated_and_opposite_points_take_the_exact_path() {
        for (points, scalars) in degenerate_cases() {
            portable_g1(&points, &scalars);
        }
    }

    #[test]
    fn g2_matches_the_naive_sum() {
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        for n in [1, 50, 1200] {
            let points: Vec<G2Affine> = (0..n)
                .map(|_| G2Projective::random(&mut rng).to_affine())
                .collect();
            let scalars: Vec<Scalar> = (0..n).map(|_| Scalar::random(&mut rng)).collect();
            let bases: Vec<_> = points.iter().map(|p| G2::import(p).unwrap()).collect();
            let l: Vec<Limbs> = scalars.iter().map(limbs).collect();
            let got = msm(&Portable::new(), &bases, &l);
            let want: G2Projective = points.iter().zip(&scalars).map(|(p, s)| p * s).sum();
            assert_eq!(G2::export(&got).unwrap(), want);
        }
    }

    #[test]
    fn recoding_reconstructs_the_scalar() {
        let mut rng = ChaCha20Rng::from_seed([8; 32]);
        let mut scalars: Vec<Scalar> = (0..50).map(|_| Scalar::random(&mut rng)).collect();
        scalars.extend([Scalar::ZERO, Scalar::ONE, -Scalar::ONE, -Scalar::from(2u64)]);
        let l: Vec<Limbs> = scalars.iter().map(limbs).collect();
        for c in 4..=MAX_WINDOW {
            let windows = windows(c);
            assert!(windows * c >= 255 && windows <= 256usize.div_ceil(c));
            let d = recode(&l, c, windows);
            for (i, s) in scalars.iter().enumerate() {
                let mut acc = Scalar::ZERO;
                for k in (0..windows).rev() {
                    for _ in 0..c {
                        acc = acc.double();
                    }
                    let digit = d[k * l.len() + i];
                    assert!(digit.unsigned_abs() <= 1 << (c - 1));
                    let m = Scalar::from(u64::from(digit.unsigned_abs()));
                    acc += if digit < 0 { -m } else { m };
                }
                assert_eq!(acc, *s, "c = {c}");
            }
        }
    }
}
