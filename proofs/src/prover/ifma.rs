//! Batched affine additions in G1 and G2, eight at a time, with AVX-512 IFMA: the
//! [`Backend`] the prover uses on processors that have it (`avx512f` and `avx512ifma`).
//!
//! # Representation
//!
//! A field element is eight 52-bit limbs (416 bits) in Montgomery form with `R' = 2^416`. Stored, it is
//! one 512-bit register, limb `j` in lane `j` ("horizontal"); to compute, eight elements are transposed
//! so that register `j` holds limb `j` of all eight ("vertical", [`V`]), and every lane runs one of
//! eight independent additions. `vpmadd52luq` / `vpmadd52huq` multiply 52-bit limbs and accumulate the
//! low and high halves of the 104-bit products, which is what a Montgomery multiplication with 52-bit
//! words needs ([`mul`]: operand scanning, one reduction step per word).
//!
//! # Bounds
//!
//! Values are not kept below `p`. Every limb is normalised (below `2^52`) before it reaches a
//! multiplication, and values are bounded by small multiples of `p`:
//!
//! - a Montgomery product of inputs below `2^397` is below `p + 2^378 < 2p` (the quotient by `R'`
//!   of a product below `2^794` is below `2^378`); every multiplication input here is below
//!   `32p < 2^386`;
//! - `a + kp − b` ([`sub`]) with `b < kp` is positive, and below `a + kp`;
//! - a stored point (an addition's result) has coordinates below `8p` (each result passes through
//!   [`reduce`], which subtracts `kp` when the value is at least `kp`); bases are below `p`.
//!
//! The bounds of each step are written next to it. Nothing here is compared with zero or equality
//! lane by lane: a batch whose product of denominators is `0 mod p` (some `x1 = x2`) is redone by
//! the portable code, exactly.
//!
//! # Safety
//!
//! The vector functions are `#[target_feature]` functions, callable only where the features are
//! present. The only way to get a backend ([`IfmaG1::new`], [`IfmaG2::new`]) checks the processor
//! first, so every call from a backend's method is sound; each `unsafe` block says so.

use std::arch::x86_64::*;

use super::curve::{Affine, Xyzz};
use super::field::{Field, Fp, Fp2, INV, MODULUS};
use super::lanes::{self, MASK, join, split};
use super::msm::{BATCH, Backend, BucketSums, Pair, Source, add_batch};

/// `-p^-1 mod 2^52`.
const PINV: u64 = INV & MASK;

/// The limbs of `k p` (`k ≤ 32`, below `2^386`).
const fn kp(k: u64) -> [u64; 8] {
    lanes::times::<6, 7, 8>(MODULUS, k)
}

const P: [u64; 8] = kp(1);
const KP2: [u64; 8] = kp(2);
const KP4: [u64; 8] = kp(4);
const KP8: [u64; 8] = kp(8);
const KP16: [u64; 8] = kp(16);
const KP32: [u64; 8] = kp(32);
const KP64: [u64; 8] = kp(64);
const KP128: [u64; 8] = kp(128);

/// One element, horizontal: limb `j` in lane `j`.
type H = __m512i;

/// Eight elements, vertical: register `j` holds limb `j` of each.
#[derive(Clone, Copy)]
pub(crate) struct V([__m512i; 8]);

/// A pair of vertical elements: eight elements of `Fp2`.
#[derive(Clone, Copy)]
pub(crate) struct V2(V, V);

#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn from_limbs(l: [u64; 8]) -> H {
    let l = l.map(|x| x as i64);
    _mm512_set_epi64(l[7], l[6], l[5], l[4], l[3], l[2], l[1], l[0])
}

/// `_mm512_permutex2var_epi64` indices, lane 0 first.
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn idx(i: [i64; 8]) -> __m512i {
    _mm512_set_epi64(i[7], i[6], i[5], i[4], i[3], i[2], i[1], i[0])
}

/// The 8 × 8 transpose of 64-bit lanes: rows to columns (its own inverse).
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn transpose(r: [__m512i; 8]) -> [__m512i; 8] {
    let t0 = _mm512_unpacklo_epi64(r[0], r[1]);
    let t1 = _mm512_unpackhi_epi64(r[0], r[1]);
    let t2 = _mm512_unpacklo_epi64(r[2], r[3]);
    let t3 = _mm512_unpackhi_epi64(r[2], r[3]);
    let t4 = _mm512_unpacklo_epi64(r[4], r[5]);
    let t5 = _mm512_unpackhi_epi64(r[4], r[5]);
    let t6 = _mm512_unpacklo_epi64(r[6], r[7]);
    let t7 = _mm512_unpackhi_epi64(r[6], r[7]);
    let even = idx([0, 1, 8, 9, 4, 5, 12, 13]);
    let odd = idx([2, 3, 10, 11, 6, 7, 14, 15]);
    let u0 = _mm512_permutex2var_epi64(t0, even, t2);
    let u1 = _mm512_permutex2var_epi64(t0, odd, t2);
    let u2 = _mm512_permutex2var_epi64(t1, even, t3);
    let u3 = _mm512_permutex2var_epi64(t1, odd, t3);
    let w0 = _mm512_permutex2var_epi64(t4, even, t6);
    let w1 = _mm512_permutex2var_epi64(t4, odd, t6);
    let w2 = _mm512_permutex2var_epi64(t5, even, t7);
    let w3 = _mm512_permutex2var_epi64(t5, odd, t7);
    let lo = idx([0, 1, 2, 3, 8, 9, 10, 11]);
    let hi = idx([4, 5, 6, 7, 12, 13, 14, 15]);
    [
        _mm512_permutex2var_epi64(u0, lo, w0),
        _mm512_permutex2var_epi64(u2, lo, w2),
        _mm512_permutex2var_epi64(u1, lo, w1),
        _mm512_permutex2var_epi64(u3, lo, w3),
        _mm512_permutex2var_epi64(u0, hi, w0),
        _mm512_permutex2var_epi64(u2, hi, w2),
        _mm512_permutex2var_epi64(u1, hi, w1),
        _mm512_permutex2var_epi64(u3, hi, w3),
    ]
}

// `splat`, `normalize`, `mul` (`a b / 2^416 mod p`, below `2p` for inputs below `2^397`), `add`,
// `sub` (`a + kp − b` for `b < kp`), `reduce` (`a − kp` where `a ≥ kp`, else `a`) and `blend`.
lanes::lane_arithmetic!(
    V,
    8,
    P,
    PINV,
    [0, 1, 2, 3, 4, 5, 6, 7],
    [2, 3, 4, 5, 6, 7, 8]
);

/// `p − a` (for `a` below `p`) in the lanes of `mask`, `a` elsewhere.
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn negate(mask: __mmask8, a: &V) -> V {
    if mask == 0 {
        return *a;
    }
    let zero = V([_mm512_setzero_si512(); 8]);
    blend(mask, a, &sub(&zero, a, &P))
}

#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn blend2(mask: __mmask8, a: &V2, b: &V2) -> V2 {
    V2(blend(mask, &a.0, &b.0), blend(mask, &a.1, &b.1))
}

#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn square(a: &V) -> V {
    mul(a, a)
}

/// `Fp2` product (components below `6p` for inputs below `16p`).
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn mul2(a: &V2, b: &V2) -> V2 {
    let aa = mul(&a.0, &b.0);
    let bb = mul(&a.1, &b.1);
    let cross = mul(&add(&a.0, &a.1), &add(&b.0, &b.1));
    // aa, bb, cross < 2p.
    V2(sub(&aa, &bb, &KP2), sub(&cross, &add(&aa, &bb), &KP4))
}

/// `Fp2` square (components below `2p` and `4p` for inputs below `128p`).
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn square2(a: &V2) -> V2 {
    let t = mul(&a.0, &a.1);
    V2(mul(&add(&a.0, &a.1), &sub(&a.0, &a.1, &KP128)), add(&t, &t))
}

#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn add2(a: &V2, b: &V2) -> V2 {
    V2(add(&a.0, &b.0), add(&a.1, &b.1))
}

#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn sub2(a: &V2, b: &V2, kp: &[u64; 8]) -> V2 {
    V2(sub(&a.0, &b.0, kp), sub(&a.1, &b.1, kp))
}

#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn reduce2(a: &V2, kp: &[u64; 8]) -> V2 {
    V2(reduce(&a.0, kp), reduce(&a.1, kp))
}

/// Conversions between [`Fp`] and the horizontal form: `x` has Montgomery representation `x 2^384`
/// in [`Fp`] and `x 2^416` here, so a conversion is one multiplication by `2^±32` and a change of limb
/// size.
#[derive(Clone, Copy)]
struct Convert {
    /// `2^32`.
    up: Fp,
    /// `2^-32`.
    down: Fp,
}

impl Convert {
    fn new() -> Self {
        let up = Fp::power_of_two(32);
        Convert {
            up,
            down: up.invert().unwrap_or(Fp::ZERO),
        }
    }

    /// The element `x`, horizontal.
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn encode(&self, x: Fp) -> H {
        let m = (x * self.up).montgomery();
        from_limbs(split([m[0], m[1], m[2], m[3], m[4], m[5], 0]))
    }

    /// The [`Fp`] whose Montgomery representation is the value of `h` reduced mod `p`: the element
    /// `x 2^32` for the element `x` that `h` stands for. Made for values below `8p` (one
    /// subtraction of `p` per multiple).
    #[target_feature(enable = "avx512f,avx512ifma,avx2")]
    fn raw(&self, h: H) -> Fp {
        let mut v: [u64; 7] = join(lanes::lanes(h));
        let m = [
            MODULUS[0], MODULUS[1], MODULUS[2], MODULUS[3], MODULUS[4], MODULUS[5], 0,
        ];
        loop {
            if v[6] == 0
                && let Some(x) = Fp::from_montgomery([v[0], v[1], v[2], v[3], v[4], v[5]])
            {
                return x;
            }
            let mut borrow = false;
            for (limb, m) in v.iter_mut().zip(m) {
                let (d, b) = limb.borrowing_sub(m, borrow);
                *limb = d;
                borrow = b;
            }
        }
    }

    /// The element `h` stands for.
    #[target_feature(enable = "avx512f,avx512ifma,avx2")]
    fn decode(&self, h: H) -> Fp {
        self.raw(h) * self.down
    }
}

/// The inverses of eight lanes' values, horizontal (one row per component); `None` if a value is
/// `0 mod p`. The values are as [`Convert::raw`] reads them: `x 2^32` for a lane holding `x`. Their
/// inverses are `x^-1 2^-32`, and `write` gets them to make the horizontal form of `x^-1` (from
/// `x^-1 2^-32 · 2^32`).
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn lane_inverses<F: Field>(values: [F; 8], write: impl Fn(F) -> [H; 2]) -> Option<[[H; 8]; 2]> {
    let mut prefix = [F::ONE; 8];
    let mut acc = F::ONE;
    for (p, v) in prefix.iter_mut().zip(values) {
        *p = acc;
        acc = acc * v;
    }
    let mut inv = acc.invert()?;
    let mut out = [[_mm512_setzero_si512(); 8]; 2];
    for l in (0..8).rev() {
        let [c0, c1] = write(inv * prefix[l]);
        out[0][l] = c0;
        out[1][l] = c1;
        inv = inv * values[l];
    }
    Some(out)
}

/// `p − y` for `y` below `p`, horizontal: limb by limb, then the borrows carried lane to lane.
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn neg_h(y: H) -> H {
    let mask = _mm512_set1_epi64(MASK as i64);
    let zero = _mm512_setzero_si512();
    let mut t = _mm512_sub_epi64(from_limbs(P), y);
    for _ in 0..7 {
        // Each limb's borrow (0 or −1) moves one lane up.
        let borrow = _mm512_srai_epi64::<52>(t);
        t = _mm512_add_epi64(
            _mm512_and_si512(t, mask),
            _mm512_alignr_epi64::<7>(borrow, zero),
        );
    }
    t
}

/// A G1 base, horizontal (coordinates below `p`).
pub(crate) type BaseG1 = PointG1;

/// A finite G1 point, horizontal.
#[derive(Clone, Copy)]
pub(crate) struct PointG1 {
    x: H,
    y: H,
}

/// A G2 base (coordinates below `p`).
pub(crate) type BaseG2 = PointG2;

/// A finite G2 point.
#[derive(Clone, Copy)]
pub(crate) struct PointG2 {
    x: [H; 2],
    y: [H; 2],
}

/// Whether the processor has AVX-512 F and IFMA (and [`super::limit_arithmetic`] allows them).
fn available() -> bool {
    super::vector_allowed()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512ifma")
        && is_x86_feature_detected!("avx2")
}

/// The G1 backend.
#[derive(Clone, Copy)]
pub(crate) struct IfmaG1(Convert);

/// The G2 backend.
#[derive(Clone, Copy)]
pub(crate) struct IfmaG2(Convert);

impl IfmaG1 {
    /// The backend, if the processor has what it needs.
    pub(crate) fn new() -> Option<Self> {
        available().then(|| IfmaG1(Convert::new()))
    }

    /// A base in this backend's form.
    pub(crate) fn base(&self, p: &Affine<Fp>) -> BaseG1 {
        // SAFETY: `self` exists, so the features are present (see `new`).
        unsafe {
            BaseG1 {
                x: self.0.encode(p.x),
                y: self.0.encode(p.y),
            }
        }
    }
}

impl IfmaG2 {
    /// The backend, if the processor has what it needs.
    pub(crate) fn new() -> Option<Self> {
        available().then(|| IfmaG2(Convert::new()))
    }

    /// A base in this backend's form.
    pub(crate) fn base(&self, p: &Affine<Fp2>) -> BaseG2 {
        let c = &self.0;
        // SAFETY: `self` exists, so the features are present (see `new`).
        unsafe {
            BaseG2 {
                x: [c.encode(p.x.c0), c.encode(p.x.c1)],
                y: [c.encode(p.y.c0), c.encode(p.y.c1)],
            }
        }
    }
}

/// Reads G1 bases by index and sign.
pub(crate) struct BasesG1<'a>(&'a [BaseG1]);

impl Source<PointG1> for BasesG1<'_> {
    type Stored = BaseG1;

    #[inline(always)]
    fn get(&self, i: u32) -> PointG1 {
        self.0[(i >> 1) as usize]
    }

    #[inline(always)]
    fn negated(&self, i: u32) -> bool {
        i & 1 == 1
    }

    fn point(&self, i: u32) -> PointG1 {
        let b = self.get(i);
        if self.negated(i) {
            // SAFETY: a `BasesG1` comes from an `IfmaG1`, which exists only with the features.
            PointG1 {
                x: b.x,
                y: unsafe { neg_h(b.y) },
            }
        } else {
            b
        }
    }

    #[inline(always)]
    fn stored(&self, i: u32) -> Option<&BaseG1> {
        self.0.get((i >> 1) as usize)
    }
}

/// Reads G2 bases by index and sign.
pub(crate) struct BasesG2<'a>(&'a [BaseG2]);

impl Source<PointG2> for BasesG2<'_> {
    type Stored = BaseG2;

    #[inline(always)]
    fn get(&self, i: u32) -> PointG2 {
        self.0[(i >> 1) as usize]
    }

    #[inline(always)]
    fn negated(&self, i: u32) -> bool {
        i & 1 == 1
    }

    fn point(&self, i: u32) -> PointG2 {
        let b = self.get(i);
        if self.negated(i) {
            // SAFETY: a `BasesG2` comes from an `IfmaG2`, which exists only with the features.
            PointG2 {
                x: b.x,
                y: unsafe { [neg_h(b.y[0]), neg_h(b.y[1])] },
            }
        } else {
            b
        }
    }

    #[inline(always)]
    fn stored(&self, i: u32) -> Option<&BaseG2> {
        self.0.get((i >> 1) as usize)
    }
}

/// Buffers of a batch: its groups of eight additions.
pub(crate) struct Scratch<T>(Vec<Group<T>>);

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Scratch(Vec::new())
    }
}

impl Backend for IfmaG1 {
    type F = Fp;
    type Base = BaseG1;
    type Point = PointG1;
    type Scratch = Scratch<V>;
    type Bases<'a> = BasesG1<'a>;

    fn base_affine(&self, b: &BaseG1) -> Affine<Fp> {
        self.affine(b)
    }

    fn bases<'a>(&'a self, bases: &'a [BaseG1]) -> BasesG1<'a> {
        BasesG1(bases)
    }

    fn add_pairs<S: Source<PointG1> + ?Sized>(
        &self,
        src: &S,
        pairs: &[Pair],
        out: &mut [PointG1],
        ok: &mut [bool],
        scratch: &mut Scratch<V>,
    ) {
        for chunk in pairs.chunks(BATCH) {
            // SAFETY: `self` exists, so the features are present (see `new`).
            unsafe { batch_g1(&self.0, src, chunk, out, ok, &mut scratch.0) }
        }
    }

    fn affine(&self, p: &PointG1) -> Affine<Fp> {
        // SAFETY: `self` exists, so the features are present (see `new`).
        unsafe {
            Affine {
                x: self.0.decode(p.x),
                y: self.0.decode(p.y),
            }
        }
    }

    fn reduce(&self, windows: &[BucketSums<PointG1>], count: usize) -> Vec<Xyzz<Fp>> {
        windows
            .chunks(8)
            .flat_map(|group| {
                // SAFETY: `self` exists, so the features are present (see `new`).
                let lanes = unsafe { reduce_g1(&self.0, group, count) };
                group.iter().zip(lanes).map(|(w, lane)| {
                    lane.unwrap_or_else(|| {
                        // A lane met P = ±Q: the exact portable running sums.
                        portable_reduce(self, w, count)
                    })
                })
            })
            .collect()
    }
}

impl Backend for IfmaG2 {
    type F = Fp2;
    type Base = BaseG2;
    type Point = PointG2;
    type Scratch = ScratchG2;
    type Bases<'a> = BasesG2<'a>;

    fn base_affine(&self, b: &BaseG2) -> Affine<Fp2> {
        self.affine(b)
    }

    fn bases<'a>(&'a self, bases: &'a [BaseG2]) -> BasesG2<'a> {
        BasesG2(bases)
    }

    fn add_pairs<S: Source<PointG2> + ?Sized>(
        &self,
        src: &S,
        pairs: &[Pair],
        out: &mut [PointG2],
        ok: &mut [bool],
        scratch: &mut ScratchG2,
    ) {
        for chunk in pairs.chunks(BATCH) {
            // SAFETY: `self` exists, so the features are present (see `new`).
            unsafe { batch_g2(&self.0, src, chunk, out, ok, &mut scratch.0) }
        }
    }

    fn affine(&self, p: &PointG2) -> Affine<Fp2> {
        // SAFETY: `self` exists, so the features are present (see `new`).
        unsafe {
            let c = &self.0;
            Affine {
                x: Fp2 {
                    c0: c.decode(p.x[0]),
                    c1: c.decode(p.x[1]),
                },
                y: Fp2 {
                    c0: c.decode(p.y[0]),
                    c1: c.decode(p.y[1]),
                },
            }
        }
    }

    fn reduce(&self, windows: &[BucketSums<PointG2>], count: usize) -> Vec<Xyzz<Fp2>> {
        windows
            .chunks(8)
            .flat_map(|group| {
                // SAFETY: `self` exists, so the features are present (see `new`).
                let lanes = unsafe { reduce_g2(&self.0, group, count) };
                group
                    .iter()
                    .zip(lanes)
                    .map(|(w, lane)| lane.unwrap_or_else(|| portable_reduce(self, w, count)))
            })
            .collect()
    }
}

/// `Σ_j j B_j` for one window by running sums in the portable arithmetic.
fn portable_reduce<B: Backend>(be: &B, w: &BucketSums<B::Point>, count: usize) -> Xyzz<B::F> {
    let mut running = Xyzz::IDENTITY;
    let mut total = Xyzz::IDENTITY;
    let (keys, points) = w;
    let mut top = keys.iter().zip(points).rev().peekable();
    for b in (1..=count as u32).rev() {
        if let Some((_, p)) = top.next_if(|(j, _)| **j == b) {
            running.add_affine(&be.affine(p));
        }
        total.add(&running);
    }
    total
}

/// A point in XYZZ coordinates, eight lanes.
#[derive(Clone, Copy)]
struct Lanes<T> {
    x: T,
    y: T,
    zz: T,
    zzz: T,
}

/// The running sums of up to eight windows, one per lane: `Σ_j j B_j` with `running += B_j`,
/// `total += running` from the top bucket down, in XYZZ coordinates (the formulas of
/// [`Xyzz::add_affine`] and [`Xyzz::add`]).
///
/// Lanes track which of their sums are still the identity (bit masks), so no value is compared.
/// Every real addition multiplies its `P` (the x-coordinate difference, zero exactly when the
/// operands are equal or opposite) into a per-lane check; a lane whose check ends `0 mod p` is
/// `None`, for the caller to redo exactly. Bounds (per component): `x`, `y` below `64p`, `zz`,
/// `zzz` below `8p` (products); see each step.
macro_rules! reduce_lanes {
    ($name:ident, $point:ty, $t:ty, $f:ty, $mul:ident, $sq:ident, $add:ident, $sub:ident,
     $blend:ident, $load:ident, $store:ident, $zero_check:ident, $one:ident) => {
        #[target_feature(enable = "avx512f,avx512ifma,avx2")]
        fn $name(
            c: &Convert,
            windows: &[BucketSums<$point>],
            count: usize,
        ) -> [Option<Xyzz<$f>>; 8] {
            let one_h = c.encode(Fp::ONE);
            let one: $t = $one(c);
            let mut run = Lanes {
                x: one,
                y: one,
                zz: one,
                zzz: one,
            };
            let mut tot = run;
            let mut chk = one;
            // Identity lanes of the running sum and of the total.
            let (mut run_id, mut tot_id): (__mmask8, __mmask8) = (0xff, 0xff);
            // Lanes whose total equals their running sum (just copied from it).
            let mut same: __mmask8 = 0;
            // Next bucket of each window, from the top.
            let mut next: [usize; 8] = [0; 8];
            for (n, w) in next.iter_mut().zip(windows) {
                *n = w.0.len();
            }
            for j in (1..=count as u32).rev() {
                let mut present: __mmask8 = 0;
                let mut items: [Option<&$point>; 8] = [None; 8];
                for (l, w) in windows.iter().enumerate() {
                    if next[l] > 0 && w.0[next[l] - 1] == j {
                        next[l] -= 1;
                        present |= 1 << l;
                        items[l] = Some(&w.1[next[l]]);
                    }
                }
                if present != 0 {
                    let (bx, by) = $load(c, items, one_h);
                    // running += B (madd): p, r below 70p, the rest products or below 64p.
                    let p = $sub(&$mul(&bx, &run.zz), &run.x, &KP64);
                    let r = $sub(&$mul(&by, &run.zzz), &run.y, &KP64);
                    let pp = $sq(&p);
                    let ppp = $mul(&p, &pp);
                    let q = $mul(&run.x, &pp);
                    let x3 = $sub(&$sq(&r), &$add(&ppp, &$add(&q, &q)), &KP32);
                    let y3 = $sub(&$mul(&r, &$sub(&q, &x3, &KP64)), &$mul(&run.y, &ppp), &KP8);
                    let added = Lanes {
                        x: x3,
                        y: y3,
                        zz: $mul(&run.zz, &pp),
                        zzz: $mul(&run.zzz, &ppp),
                    };
                    let real = present & !run_id;
                    let first = present & run_id;
                    chk = $mul(&chk, &$blend(real, &one, &p));
                    run = Lanes {
                        x: $blend(first, &$blend(real, &run.x, &added.x), &bx),
                        y: $blend(first, &$blend(real, &run.y, &added.y), &by),
                        zz: $blend(first, &$blend(real, &run.zz, &added.zz), &one),
                        zzz: $blend(first, &$blend(real, &run.zzz, &added.zzz), &one),
                    };
                    run_id &= !present;
                    same &= !present;
                }
                if run_id == 0xff {
                    continue;
                }
                // Where the total equals the running sum, total += running is a doubling.
                let twice = same & !run_id & !tot_id;
                if twice != 0 {
                    // dbl-2008-s-1 (a = 0): u below 128p, m below 18p, the rest below 22p.
                    let u = $add(&tot.y, &tot.y);
                    let v = $sq(&u);
                    let w = $mul(&u, &v);
                    let s = $mul(&tot.x, &v);
                    let xx = $sq(&tot.x);
                    let m = $add(&xx, &$add(&xx, &xx));
                    let x3 = $sub(&$sq(&m), &$add(&s, &s), &KP16);
                    let y3 = $sub(&$mul(&m, &$sub(&s, &x3, &KP32)), &$mul(&w, &tot.y), &KP8);
                    chk = $mul(&chk, &$blend(twice, &one, &u));
                    tot = Lanes {
                        x: $blend(twice, &tot.x, &x3),
                        y: $blend(twice, &tot.y, &y3),
                        zz: $blend(twice, &tot.zz, &$mul(&v, &tot.zz)),
                        zzz: $blend(twice, &tot.zzz, &$mul(&w, &tot.zzz)),
                    };
                    same &= !twice;
                }
                // total += running (add): p, r below 14p.
                let u1 = $mul(&tot.x, &run.zz);
                let u2 = $mul(&run.x, &tot.zz);
                let s1 = $mul(&tot.y, &run.zzz);
                let s2 = $mul(&run.y, &tot.zzz);
                let p = $sub(&u2, &u1, &KP8);
                let r = $sub(&s2, &s1, &KP8);
                let pp = $sq(&p);
                let ppp = $mul(&p, &pp);
                let q = $mul(&u1, &pp);
                let x3 = $sub(&$sq(&r), &$add(&ppp, &$add(&q, &q)), &KP32);
                let y3 = $sub(&$mul(&r, &$sub(&q, &x3, &KP64)), &$mul(&s1, &ppp), &KP8);
                let zz3 = $mul(&$mul(&tot.zz, &run.zz), &pp);
                let zzz3 = $mul(&$mul(&tot.zzz, &run.zzz), &ppp);
                let real = !run_id & !tot_id & !twice;
                let first = !run_id & tot_id;
                chk = $mul(&chk, &$blend(real, &one, &p));
                tot = Lanes {
                    x: $blend(first, &$blend(real, &tot.x, &x3), &run.x),
                    y: $blend(first, &$blend(real, &tot.y, &y3), &run.y),
                    zz: $blend(first, &$blend(real, &tot.zz, &zz3), &run.zz),
                    zzz: $blend(first, &$blend(real, &tot.zzz, &zzz3), &run.zzz),
                };
                tot_id &= run_id;
                same |= first;
            }
            let checks = $zero_check(c, &chk);
            let (x, y, zz, zzz) = (
                $store(c, &tot.x),
                $store(c, &tot.y),
                $store(c, &tot.zz),
                $store(c, &tot.zzz),
            );
            let mut out = [None; 8];
            for (l, o) in out.iter_mut().enumerate().take(windows.len()) {
                if checks[l] {
                    *o = Some(if tot_id & (1 << l) != 0 {
                        Xyzz::IDENTITY
                    } else {
                        Xyzz::from_coordinates(x[l], y[l], zz[l], zzz[l])
                    });
                }
            }
            out
        }
    };
}

/// The lanes' points (`fill` where absent) as vertical `x` and `y`.
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn load_g1(_: &Convert, items: [Option<&PointG1>; 8], fill: H) -> (V, V) {
    let mut xs = [fill; 8];
    let mut ys = [fill; 8];
    for (l, p) in items.iter().enumerate() {
        if let Some(p) = p {
            xs[l] = p.x;
            ys[l] = p.y;
        }
    }
    (V(transpose(xs)), V(transpose(ys)))
}

#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn load_g2(_: &Convert, items: [Option<&PointG2>; 8], fill: H) -> (V2, V2) {
    let mut rows = [[fill; 8]; 4];
    for (l, p) in items.iter().enumerate() {
        if let Some(p) = p {
            rows[0][l] = p.x[0];
            rows[1][l] = p.x[1];
            rows[2][l] = p.y[0];
            rows[3][l] = p.y[1];
        }
    }
    let [a, b, cc, d] = rows.map(|r| V(transpose(r)));
    (V2(a, b), V2(cc, d))
}

/// `v mod p` for `v` below `128p`.
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn canonical(v: &V) -> V {
    let mut v = *v;
    for k in [&KP64, &KP32, &KP16, &KP8, &KP4, &KP2, &P] {
        v = reduce(&v, k);
    }
    v
}

/// The lanes' elements (below `128p`).
#[target_feature(enable = "avx512f,avx512ifma,avx2")]
#[inline]
fn store_g1(c: &Convert, v: &V) -> [Fp; 8] {
    transpose(canonical(v).0).map(|h| c.decode(h))
}

#[target_feature(enable = "avx512f,avx512ifma,avx2")]
#[inline]
fn store_g2(c: &Convert, v: &V2) -> [Fp2; 8] {
    let (a, b) = (store_g1(c, &v.0), store_g1(c, &v.1));
    std::array::from_fn(|l| Fp2 { c0: a[l], c1: b[l] })
}

/// Which lanes hold a value that is not `0 mod p` (values below `128p`).
#[target_feature(enable = "avx512f,avx512ifma,avx2")]
#[inline]
fn nonzero_g1(c: &Convert, v: &V) -> [bool; 8] {
    transpose(canonical(v).0).map(|h| !c.raw(h).is_zero())
}

#[target_feature(enable = "avx512f,avx512ifma,avx2")]
#[inline]
fn nonzero_g2(c: &Convert, v: &V2) -> [bool; 8] {
    let (a, b) = (nonzero_g1(c, &v.0), nonzero_g1(c, &v.1));
    std::array::from_fn(|l| a[l] || b[l])
}

/// One in every lane.
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn one_g1(c: &Convert) -> V {
    V(transpose([c.encode(Fp::ONE); 8]))
}

#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn one_g2(c: &Convert) -> V2 {
    V2(one_g1(c), V(transpose([c.encode(Fp::ZERO); 8])))
}

reduce_lanes!(
    reduce_g1, PointG1, V, Fp, mul, square, add, sub, blend, load_g1, store_g1, nonzero_g1, one_g1
);
reduce_lanes!(
    reduce_g2, PointG2, V2, Fp2, mul2, square2, add2, sub2, blend2, load_g2, store_g2, nonzero_g2,
    one_g2
);

/// The operands of one group of eight additions, vertical, their denominators, and the product of
/// the denominators before them.
#[derive(Clone, Copy)]
pub(crate) struct Group<T> {
    x1: T,
    y1: T,
    x2: T,
    y2: T,
    d: T,
    prefix: T,
}

/// Groups ahead whose operands are prefetched.
const AHEAD: usize = 4;

/// The pair of lane `l` of group `g` (lanes past the end repeat the group's first pair; their sums
/// are not written).
#[inline(always)]
fn lane_pair(pairs: &[Pair], g: usize, l: usize) -> Pair {
    pairs.get(8 * g + l).copied().unwrap_or(pairs[8 * g])
}

/// `out[dst] = src(a) + src(b)` for every pair in G1, eight lanes at a time, one inversion for all.
#[target_feature(enable = "avx512f,avx512ifma,avx2")]
fn batch_g1<S: Source<PointG1> + ?Sized>(
    c: &Convert,
    src: &S,
    pairs: &[Pair],
    out: &mut [PointG1],
    ok: &mut [bool],
    groups: &mut Vec<Group<V>>,
) {
    let n = pairs.len();
    if n == 0 {
        return;
    }
    let zero = V([_mm512_setzero_si512(); 8]);
    let blank = Group {
        x1: zero,
        y1: zero,
        x2: zero,
        y2: zero,
        d: zero,
        prefix: zero,
    };
    let count = n.div_ceil(8);
    if groups.len() < count {
        groups.resize(count, blank);
    }
    let one = c.encode(Fp::ONE);
    let mut acc = V(transpose([one; 8]));
    for (g, grp) in groups.iter_mut().enumerate().take(count) {
        for p in pairs.iter().skip(8 * (g + AHEAD)).take(8) {
            prefetch(src.stored(p.a));
            prefetch(src.stored(p.b));
        }
        let mut rows = [[_mm512_setzero_si512(); 8]; 4];
        let (mut neg_a, mut neg_b): (__mmask8, __mmask8) = (0, 0);
        #[allow(clippy::needless_range_loop)] // `l` is the lane: of the rows and of the masks
        for l in 0..8 {
            let p = lane_pair(pairs, g, l);
            let (a, b) = (src.get(p.a), src.get(p.b));
            rows[0][l] = a.x;
            rows[1][l] = a.y;
            rows[2][l] = b.x;
            rows[3][l] = b.y;
            neg_a |= u8::from(src.negated(p.a)) << l;
            neg_b |= u8::from(src.negated(p.b)) << l;
        }
        grp.x1 = V(transpose(rows[0]));
        grp.y1 = negate(neg_a, &V(transpose(rows[1])));
        grp.x2 = V(transpose(rows[2]));
        grp.y2 = negate(neg_b, &V(transpose(rows[3])));
        // x1, x2 < 8p: d in (0, 16p).
        grp.d = sub(&grp.x2, &grp.x1, &KP8);
        grp.prefix = acc;
        acc = mul(&acc, &grp.d);
    }
    let lanes = transpose(acc.0).map(|h| c.raw(h));
    let inverses = lane_inverses(lanes, |x| [c.encode(x * c.up), one]);
    let Some([inv_rows, _]) = inverses else {
        // Some x1 = x2: the exact portable code does this batch.
        let to = |p: PointG1| Affine {
            x: c.decode(p.x),
            y: c.decode(p.y),
        };
        let operands = Exact(|i| to(src.point(i)));
        let mut sums = vec![
            Affine {
                x: Fp::ZERO,
                y: Fp::ZERO
            };
            out.len()
        ];
        add_batch(&operands, pairs, &mut sums, ok, &mut Vec::new());
        for p in pairs {
            let d = p.dst as usize;
            out[d] = PointG1 {
                x: c.encode(sums[d].x),
                y: c.encode(sums[d].y),
            };
        }
        return;
    };
    let mut inv = V(transpose(inv_rows));
    for (g, grp) in groups.iter().enumerate().take(count).rev() {
        let d_inv = mul(&inv, &grp.prefix);
        inv = mul(&inv, &grp.d);
        // y1, y2 < 8p: dy in (0, 16p); λ, λ² < 2p.
        let lambda = mul(&sub(&grp.y2, &grp.y1, &KP8), &d_inv);
        let l2 = mul(&lambda, &lambda);
        // x3 = λ² − x1 − x2 in (0, 18p), reduced below 8p.
        let x3 = sub(&l2, &add(&grp.x1, &grp.x2), &KP16);
        let x3 = reduce(&reduce(&x3, &KP16), &KP8);
        // y3 = λ (x1 − x3) − y1: the product < 2p, y3 in (0, 10p), reduced below 8p.
        let y3 = mul(&lambda, &sub(&grp.x1, &x3, &KP8));
        let y3 = reduce(&sub(&y3, &grp.y1, &KP8), &KP8);
        let xs = transpose(x3.0);
        let ys = transpose(y3.0);
        for l in 0..8 {
            if let Some(p) = pairs.get(8 * g + l) {
                out[p.dst as usize] = PointG1 { x: xs[l], y: ys[l] };
            }
        }
    }
}

/// A group of eight G2 additions: the operands, the denominators and their norms, and the product
/// of the norms before them.
#[derive(Clone, Copy)]
pub(crate) struct GroupG2 {
    x1: V2,
    y1: V2,
    x2: V2,
    y2: V2,
    d: V2,
    norm: V,
    prefix: V,
}

/// Buffers of a G2 batch.
#[derive(Default)]
pub(crate) struct ScratchG2(Vec<GroupG2>);

/// Operands converted for the exact portable code.
struct Exact<G>(G);

impl<P, G: Fn(u32) -> P + Sync> Source<P> for Exact<G> {
    type Stored = ();

    fn get(&self, i: u32) -> P {
        (self.0)(i)
    }

    fn point(&self, i: u32) -> P {
        (self.0)(i)
    }

    fn stored(&self, _: u32) -> Option<&()> {
        None
    }
}

/// Hints that the cache lines of `*p` will be read soon (a prefetch reads nothing and never
/// faults).
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn prefetch<T>(p: Option<&T>) {
    if let Some(p) = p {
        let base = (p as *const T).cast::<i8>();
        for line in (0..std::mem::size_of::<T>()).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(line));
        }
    }
}

/// [`batch_g1`] in G2.
#[target_feature(enable = "avx512f,avx512ifma,avx2")]
fn batch_g2<S: Source<PointG2> + ?Sized>(
    c: &Convert,
    src: &S,
    pairs: &[Pair],
    out: &mut [PointG2],
    ok: &mut [bool],
    groups: &mut Vec<GroupG2>,
) {
    let n = pairs.len();
    if n == 0 {
        return;
    }
    let zero = V([_mm512_setzero_si512(); 8]);
    let z2 = V2(zero, zero);
    let blank = GroupG2 {
        x1: z2,
        y1: z2,
        x2: z2,
        y2: z2,
        d: z2,
        norm: zero,
        prefix: zero,
    };
    let count = n.div_ceil(8);
    if groups.len() < count {
        groups.resize(count, blank);
    }
    let one = c.encode(Fp::ONE);
    let mut acc = V(transpose([one; 8]));
    for (g, grp) in groups.iter_mut().enumerate().take(count) {
        for p in pairs.iter().skip(8 * (g + AHEAD)).take(8) {
            prefetch(src.stored(p.a));
            prefetch(src.stored(p.b));
        }
        let mut rows = [[_mm512_setzero_si512(); 8]; 8];
        let (mut neg_a, mut neg_b): (__mmask8, __mmask8) = (0, 0);
        #[allow(clippy::needless_range_loop)] // `l` is the lane: of the rows and of the masks
        for l in 0..8 {
            let p = lane_pair(pairs, g, l);
            let (a, b) = (src.get(p.a), src.get(p.b));
            neg_a |= u8::from(src.negated(p.a)) << l;
            neg_b |= u8::from(src.negated(p.b)) << l;
            rows[0][l] = a.x[0];
            rows[1][l] = a.x[1];
            rows[2][l] = a.y[0];
            rows[3][l] = a.y[1];
            rows[4][l] = b.x[0];
            rows[5][l] = b.x[1];
            rows[6][l] = b.y[0];
            rows[7][l] = b.y[1];
        }
        grp.x1 = V2(V(transpose(rows[0])), V(transpose(rows[1])));
        grp.y1 = V2(
            negate(neg_a, &V(transpose(rows[2]))),
            negate(neg_a, &V(transpose(rows[3]))),
        );
        grp.x2 = V2(V(transpose(rows[4])), V(transpose(rows[5])));
        grp.y2 = V2(
            negate(neg_b, &V(transpose(rows[6]))),
            negate(neg_b, &V(transpose(rows[7]))),
        );
        // Components: x1, x2 < 8p, d in (0, 16p). 1 / d = conj(d) / N(d) with the norm
        // N(d) = d0² + d1² in Fp (below 4p), zero exactly when d is (−1 is not a square mod p):
        // the norms are what the batch inverts.
        grp.d = sub2(&grp.x2, &grp.x1, &KP8);
        grp.norm = add(&square(&grp.d.0), &square(&grp.d.1));
        grp.prefix = acc;
        acc = mul(&acc, &grp.norm);
    }
    let lanes = transpose(acc.0).map(|h| c.raw(h));
    let inverses = lane_inverses(lanes, |x| [c.encode(x * c.up), one]);
    let Some([inv_rows, _]) = inverses else {
        let to = |p: PointG2| Affine {
            x: Fp2 {
                c0: c.decode(p.x[0]),
                c1: c.decode(p.x[1]),
            },
            y: Fp2 {
                c0: c.decode(p.y[0]),
                c1: c.decode(p.y[1]),
            },
        };
        let operands = Exact(|i| to(src.point(i)));
        let mut sums = vec![
            Affine {
                x: Fp2::ZERO,
                y: Fp2::ZERO
            };
            out.len()
        ];
        add_batch(&operands, pairs, &mut sums, ok, &mut Vec::new());
        for p in pairs {
            let d = p.dst as usize;
            out[d] = PointG2 {
                x: [c.encode(sums[d].x.c0), c.encode(sums[d].x.c1)],
                y: [c.encode(sums[d].y.c0), c.encode(sums[d].y.c1)],
            };
        }
        return;
    };
    let mut inv = V(transpose(inv_rows));
    for (g, grp) in groups.iter().enumerate().take(count).rev() {
        let n_inv = mul(&inv, &grp.prefix);
        inv = mul(&inv, &grp.norm);
        // conj(d) / N(d): components below 2p.
        let d_inv = V2(
            mul(&grp.d.0, &n_inv),
            sub(&zero, &mul(&grp.d.1, &n_inv), &KP2),
        );
        // dy in (0, 16p); λ < 6p; λ² < 4p.
        let lambda = mul2(&sub2(&grp.y2, &grp.y1, &KP8), &d_inv);
        let l2 = square2(&lambda);
        // x3 in (0, 20p), reduced below 8p.
        let x3 = sub2(&l2, &add2(&grp.x1, &grp.x2), &KP16);
        let x3 = reduce2(&reduce2(&x3, &KP16), &KP8);
        // The product < 6p, y3 in (0, 14p), reduced below 8p.
        let y3 = mul2(&lambda, &sub2(&grp.x1, &x3, &KP8));
        let y3 = reduce2(&sub2(&y3, &grp.y1, &KP8), &KP8);
        let (x0s, x1s) = (transpose(x3.0.0), transpose(x3.1.0));
        let (y0s, y1s) = (transpose(y3.0.0), transpose(y3.1.0));
        for l in 0..8 {
            if let Some(p) = pairs.get(8 * g + l) {
                out[p.dst as usize] = PointG2 {
                    x: [x0s[l], x1s[l]],
                    y: [y0s[l], y1s[l]],
                };
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::prover::curve::{G1, G2, Group as _};
    use crate::prover::msm::{Limbs, msm, tests as msm_tests};
    use bls12_381::{G2Affine, G2Projective, Scalar};
    use ff::Field as _;
    use group::Group as _;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn limb_splitting_round_trips() {
        for k in [1, 2, 8, 16, 32] {
            let l = kp(k);
            assert!(l.iter().all(|x| *x <= MASK));
            let w: [u64; 7] = join(l);
            assert_eq!(split(w), l);
        }
        assert_eq!(PINV.wrapping_mul(P[0]) & MASK, MASK);
    }

    #[test]
    fn vector_arithmetic_matches_the_portable_field() {
        let Some(be) = IfmaG1::new() else {
            eprintln!("no AVX-512 IFMA here: skipped");
            return;
        };
        let c = be.0;
        let mut rng = crate::prover::field::tests::Rng(11);
        for _ in 0..50 {
            let xs: [Fp; 8] = std::array::from_fn(|_| rng.fp());
            let ys: [Fp; 8] = std::array::from_fn(|_| rng.fp());
            // SAFETY: the backend exists, so the features are present.
            unsafe {
                let v = |a: &[Fp; 8]| V(transpose(a.map(|x| c.encode(x))));
                let back = |v: V| transpose(v.0).map(|h| c.decode(h));
                let (a, b) = (v(&xs), v(&ys));
                let prod = back(mul(&a, &b));
                let sum = back(add(&a, &b));
                let diff = back(sub(&a, &b, &KP8));
                let red = back(reduce(&add(&a, &splat(&KP4)), &KP4));
                for l in 0..8 {
                    assert_eq!(prod[l], xs[l] * ys[l]);
                    assert_eq!(sum[l], xs[l] + ys[l]);
                    assert_eq!(diff[l], xs[l] - ys[l]);
                    assert_eq!(red[l], xs[l]);
                }
                // Transposing twice is the identity.
                let rows = xs.map(|x| c.encode(x));
                let twice = transpose(transpose(rows));
                for l in 0..8 {
                    assert_eq!(lanes::lanes(twice[l]), lanes::lanes(rows[l]));
                }
            }
        }
    }

    #[test]
    fn g1_msm_matches_the_naive_sum() {
        let Some(be) = IfmaG1::new() else {
            eprintln!("no AVX-512 IFMA here: skipped");
            return;
        };
        let prepare = |p: &bls12_381::G1Affine| be.base(&G1::import(p).unwrap());
        for n in [1, 9, 300, 2500, 9000] {
            let (points, scalars) = msm_tests::random_g1(21, n);
            msm_tests::check_g1(&be, prepare, &points, &scalars);
        }
        for (points, scalars) in msm_tests::degenerate_cases() {
            msm_tests::check_g1(&be, prepare, &points, &scalars);
        }
    }

    #[test]
    fn g2_msm_matches_the_naive_sum() {
        let Some(be) = IfmaG2::new() else {
            eprintln!("no AVX-512 IFMA here: skipped");
            return;
        };
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let g = G2Projective::random(&mut rng);
        for n in [1, 300, 3000] {
            let mut points = vec![G2Affine::identity(); n];
            let proj: Vec<G2Projective> = (1..=n as u64).map(|i| g * Scalar::from(i)).collect();
            G2Projective::batch_normalize(&proj, &mut points);
            // Repeats: equal points in a bucket.
            for i in (0..n).step_by(7) {
                points[i] = points[0];
            }
            let scalars: Vec<Scalar> = (0..n).map(|_| Scalar::random(&mut rng)).collect();
            let bases: Vec<BaseG2> = points
                .iter()
                .map(|p| be.base(&G2::import(p).unwrap()))
                .collect();
            let l: Vec<Limbs> = scalars.iter().map(msm_tests::limbs).collect();
            let got = msm(&be, &bases, &l);
            let want: G2Projective = points.iter().zip(&scalars).map(|(p, s)| p * s).sum();
            assert_eq!(G2::export(&got).unwrap(), want);
        }
    }
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod reduce_tests {
    use super::*;
    use crate::prover::curve::{G1, Group as _};
    use crate::prover::msm::tests as msm_tests;

    #[test]
    fn vector_reduction_matches_the_portable_one() {
        let Some(be) = IfmaG1::new() else { return };
        let (points, _) = msm_tests::random_g1(3, 64);
        let pts: Vec<PointG1> = points
            .iter()
            .map(|p| be.base(&G1::import(p).unwrap()))
            .collect();
        for count in [1usize, 2, 3, 8, 20] {
            let windows: Vec<BucketSums<PointG1>> = (0..8)
                .map(|w| {
                    let keys: Vec<u32> = (1..=count as u32).filter(|j| (j + w) % 3 != 0).collect();
                    let ps = keys
                        .iter()
                        .map(|j| pts[(*j as usize * 7 + w as usize) % 64])
                        .collect();
                    (keys, ps)
                })
                .collect();
            let got = unsafe { reduce_g1(&be.0, &windows, count) };
            for (l, (w, g)) in windows.iter().zip(got).enumerate() {
                let want = portable_reduce(&be, w, count);
                if let Some(g) = g {
                    assert_eq!(
                        G1::export(&g),
                        G1::export(&want),
                        "count {count} lane {l} keys {:?}",
                        w.0
                    );
                } else {
                    eprintln!("count {count}: fallback");
                }
            }
        }
    }
}
