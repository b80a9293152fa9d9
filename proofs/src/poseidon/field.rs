//! Montgomery arithmetic on four 64-bit limbs for the BLS12-381 scalar field,
//! private to the Poseidon fast path.
//!
//! `bls12_381::Scalar` reduces after every product. Poseidon spends most of
//! its time in linear layers, that is in dot products with constant
//! coefficients, where one reduction per output cell suffices: [`dot`] sums
//! the full-width limb products and reduces once. Single products use the
//! "no-carry" CIOS multiplication, valid because the top limb of `r` is
//! below `2^63 - 1` (Botrel and Housni, "Faster Montgomery multiplication
//! and multi-scalar-multiplication for SNARKs", as in gnark-crypto).
//!
//! Values move in and out only through canonical little-endian bytes
//! (`to_repr` / `from_repr`), so nothing here depends on how
//! `bls12_381::Scalar` lays out its internals.

use std::ops::{Add, Mul, Sub};

use bls12_381::Scalar;
use ff::{Field, PrimeField};

/// The modulus `r`, least significant limb first.
pub(crate) const MODULUS: [u64; 4] = [
    0xffff_ffff_0000_0001,
    0x53bd_a402_fffe_5bfe,
    0x3339_d808_09a1_d805,
    0x73ed_a753_299d_7d48,
];

/// `-r^-1 mod 2^64`, the per-word Montgomery factor.
pub(crate) const INV: u64 = 0xffff_fffe_ffff_ffff;

/// `r` and `INV` for [`crate::mulx::mont_mul_256`].
#[cfg(target_arch = "x86_64")]
static MULX_MODULUS: crate::mulx::Modulus<4> = crate::mulx::Modulus::new(MODULUS, INV);

/// `R^2 mod r` for `R = 2^256`: a Montgomery product with it maps a
/// canonical integer `x` to its Montgomery form `x R mod r`.
const R2: [u64; 4] = [
    0xc999_e990_f3f2_9c6d,
    0x2b6c_edcb_8792_5c23,
    0x05d3_1496_7254_398f,
    0x0748_d9d9_9f59_ff11,
];

/// An element of the scalar field in Montgomery form (`x R mod r`), always
/// fully reduced (limbs below `r`), so equal elements have equal limbs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fe([u64; 4]);

impl Fe {
    /// Parses canonical little-endian bytes; `None` when the integer is not
    /// below `r` (the same values `Scalar::from_repr` rejects).
    pub(crate) fn from_repr(bytes: [u8; 32]) -> Option<Fe> {
        let limbs = limbs_from_le(bytes);
        // x - r borrows exactly when x < r.
        let (_, borrow) = sub4(&limbs, &MODULUS);
        (borrow != 0).then(|| Fe(mont_mul(&limbs, &R2)))
    }

    /// The canonical little-endian bytes of the element.
    pub(crate) fn to_repr(self) -> [u8; 32] {
        // A Montgomery product with the integer 1 divides by R, leaving the
        // plain residue; the result is canonical like every `mont_mul`.
        let plain = mont_mul(&self.0, &[1, 0, 0, 0]);
        let mut out = [0u8; 32];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(plain) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    /// The Montgomery representation `x R mod r` (below `r`).
    pub(crate) fn montgomery(self) -> [u64; 4] {
        self.0
    }

    /// The element with Montgomery representation `limbs`; `None` unless `limbs < r`.
    pub(crate) fn from_montgomery(limbs: [u64; 4]) -> Option<Fe> {
        let (_, borrow) = sub4(&limbs, &MODULUS);
        (borrow != 0).then_some(Fe(limbs))
    }

    /// Converts from `Scalar`.
    pub(crate) fn from_scalar(s: &Scalar) -> Fe {
        // `to_repr` is canonical by contract, so the fallback is unreachable;
        // the tests compare both directions on edge values.
        Fe::from_repr(s.to_repr()).unwrap_or_default()
    }

    /// Converts to `Scalar`.
    pub(crate) fn to_scalar(self) -> Scalar {
        // `to_repr` above always yields a canonical encoding, which
        // `from_repr` accepts; see `from_scalar` for the fallback.
        Option::<Scalar>::from(Scalar::from_repr(self.to_repr())).unwrap_or(Scalar::ZERO)
    }

    /// `2 * self`.
    // Part of the field's basic operations and tested as such; the
    // permutation itself has no doubling.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn double(self) -> Fe {
        self + self
    }

    /// `self * self`. A separate squaring (ten limb products instead of
    /// sixteen, then a reduction) measured no faster than the CIOS product
    /// here, so squaring shares it.
    #[inline(always)]
    pub(crate) fn square(self) -> Fe {
        self * self
    }
}

impl Add for Fe {
    type Output = Fe;

    #[inline(always)]
    fn add(self, rhs: Fe) -> Fe {
        // Both below r, so the sum is below 2r < 2^256: no carry out.
        let (sum, _) = add4(&self.0, &rhs.0);
        Fe(sub_modulus_if_ge(sum))
    }
}

impl Sub for Fe {
    type Output = Fe;

    #[inline(always)]
    fn sub(self, rhs: Fe) -> Fe {
        let (diff, borrow) = sub4(&self.0, &rhs.0);
        // On borrow the wrapped difference is a - b + 2^256; adding r and
        // dropping the carry gives a - b + r, which lies in [0, r).
        let mask = 0u64.wrapping_sub(borrow);
        let masked = MODULUS.map(|m| m & mask);
        let (out, _) = add4(&diff, &masked);
        Fe(out)
    }
}

impl Mul for Fe {
    type Output = Fe;

    #[inline(always)]
    fn mul(self, rhs: Fe) -> Fe {
        #[cfg(target_arch = "x86_64")]
        if crate::mulx::available() {
            // SAFETY: `available` found BMI2 and ADX.
            return Fe(unsafe { crate::mulx::mont_mul_256(&self.0, &rhs.0, &MULX_MODULUS) });
        }
        Fe(mont_mul(&self.0, &rhs.0))
    }
}

/// A constant factor prepared for [`dot`]: the field element `c 2^64`, in
/// Montgomery form like [`Fe`] (so its limbs are `c 2^64 R mod r < r`).
///
/// Why the extra `2^64`: dividing a sum of many products by `R = 2^256`
/// (four reduction steps) can leave several multiples of `r` over (about
/// `8.7 r` for 17 terms), which would need a quotient estimate to remove.
/// Dividing by `2^320` (five steps, see [`Wide::reduce`]) leaves less than
/// `2r` for any sum a caller can form, so one conditional subtraction
/// finishes, and the factor `2^-64` of the extra step is cancelled by the
/// `2^64` stored here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Coeff([u64; 4]);

impl Coeff {
    /// Prepares `c` as a coefficient.
    pub(crate) fn new(c: Fe) -> Coeff {
        // 2^64 in Montgomery form, from the plain integer 2^64 < r.
        let two_64 = mont_mul(&[0, 1, 0, 0], &R2);
        Coeff(mont_mul(&c.0, &two_64))
    }
}

/// An unreduced sum of products `c x` (a [`Coeff`] times an [`Fe`]), on
/// nine limbs, reduced once by [`Wide::reduce`].
///
/// Bounds: limbs are canonical (`< r < 0.453 * 2^256`), so each product is
/// below `r^2 < 2^510` and fits eight limbs. A sum `T` of fewer than `2^64`
/// of them, far more than any caller can add, stays below `2^320 r < 2^575`:
/// the nine limbs never overflow, and [`Wide::reduce`] can rely on
/// `T < 2^320 r`. Poseidon adds at most a few dozen.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Wide([u64; 9]);

impl Wide {
    /// Adds `c * x`.
    #[inline(always)]
    pub(crate) fn add_product(&mut self, c: &Coeff, x: &Fe) {
        #[cfg(target_arch = "x86_64")]
        if crate::mulx::available() {
            // SAFETY: the processor has BMI2 and ADX; the sum stays below 2^576 (see above).
            unsafe { crate::mulx::wide_mac_256(&mut self.0, &c.0, &x.0) };
            return;
        }
        self.add_product_portable(c, x);
    }

    /// [`Self::add_product`] in portable code.
    #[inline(always)]
    fn add_product_portable(&mut self, c: &Coeff, x: &Fe) {
        // The product is formed on its own (schoolbook rows) and then added.
        // Summing column by column across all terms instead measured about a
        // third slower: the compiler turns the long chains of 128-bit
        // additions into compare-and-borrow sequences.
        let p = wide_mul(&c.0, &x.0);
        let mut carry = false;
        for (acc, limb) in self.0.iter_mut().zip(p) {
            let (s, cy) = acc.carrying_add(limb, carry);
            *acc = s;
            carry = cy;
        }
        self.0[8] += u64::from(carry);
    }

    /// Adds `sum_i c[i] * x[i]` over the common length of the slices.
    #[inline(always)]
    pub(crate) fn add_dot(&mut self, c: &[Coeff], x: &[Fe]) {
        debug_assert_eq!(c.len(), x.len());
        for (c, x) in c.iter().zip(x) {
            self.add_product(c, x);
        }
    }

    /// The sum as a field element.
    ///
    /// Five word-by-word Montgomery steps add `M r` (`M < 2^320`) so that
    /// the low five words vanish, leaving `y = (T + M r) / 2^320`, with
    /// `y < T / 2^320 + r < 2r`. `y` is congruent to
    /// `sum c_i x_i 2^64 R R / 2^320 = sum c_i x_i R`: the Montgomery form of
    /// the sum, since each [`Coeff`] carries a factor `2^64`.
    #[inline(always)]
    pub(crate) fn reduce(self) -> Fe {
        let mut t = self.0;
        // `carry_out` is the carry into the word after the step's last.
        let mut carry_out = 0u64;
        for i in 0..5 {
            let m = t[i].wrapping_mul(INV);
            let (_, mut carry) = mac(t[i], m, MODULUS[0], 0);
            for j in 1..4 {
                let (v, cy) = mac(t[i + j], m, MODULUS[j], carry);
                t[i + j] = v;
                carry = cy;
            }
            let s = u128::from(t[i + 4]) + u128::from(carry) + u128::from(carry_out);
            t[i + 4] = s as u64;
            carry_out = (s >> 64) as u64;
        }
        // y < 2r < 2^256 fits in t[5..9]: nothing carries out of the top.
        debug_assert_eq!(carry_out, 0);
        Fe(sub_modulus_if_ge([t[5], t[6], t[7], t[8]]))
    }
}

/// `sum_i c[i] * x[i]` over the common length of the slices, with a single
/// reduction (see [`Wide`]).
#[inline(always)]
pub(crate) fn dot(c: &[Coeff], x: &[Fe]) -> Fe {
    let mut acc = Wide::default();
    acc.add_dot(c, x);
    acc.reduce()
}

/// Montgomery product `a b / R mod r` of canonical `a` and `b`, canonical.
///
/// CIOS with the "no-carry" shortcut: after each outer step (word `b_i`)
/// the running value t satisfies t < a + r < 2r < 2^256 (by induction,
/// `(t + a b_i + m r) / 2^64 < ((a + r) + (2^64 - 1)(a + r)) / 2^64`), so it
/// never needs a fifth word, and the two carries of the step (from
/// `t + a b_i` and from adding `m r`) sum to its top word without overflow.
#[inline(always)]
fn mont_mul(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    let mut t = [0u64; 4];
    for &bi in b {
        let (t0, mut carry_a) = mac(t[0], a[0], bi, 0);
        let m = t0.wrapping_mul(INV);
        let (_, mut carry_m) = mac(t0, m, MODULUS[0], 0);
        for j in 1..4 {
            let (tj, c) = mac(t[j], a[j], bi, carry_a);
            carry_a = c;
            let (v, c) = mac(tj, m, MODULUS[j], carry_m);
            carry_m = c;
            t[j - 1] = v;
        }
        t[3] = carry_a + carry_m;
    }
    // t < a b / R + r < 1.46 r for canonical inputs (r / R < 0.453).
    sub_modulus_if_ge(t)
}

/// The full 512-bit product `a b`.
#[inline(always)]
fn wide_mul(a: &[u64; 4], b: &[u64; 4]) -> [u64; 8] {
    let mut p = [0u64; 8];
    for (i, &ai) in a.iter().enumerate() {
        let mut carry = 0;
        for (j, &bj) in b.iter().enumerate() {
            let (v, c) = mac(p[i + j], ai, bj, carry);
            p[i + j] = v;
            carry = c;
        }
        p[i + 4] = carry;
    }
    p
}

/// `acc + a * b + carry` as (low word, high word); cannot overflow 128 bits.
#[inline(always)]
fn mac(acc: u64, a: u64, b: u64, carry: u64) -> (u64, u64) {
    let t = u128::from(acc) + u128::from(a) * u128::from(b) + u128::from(carry);
    (t as u64, (t >> 64) as u64)
}

/// Four-limb addition, returning the sum and the carry out (0 or 1).
#[inline(always)]
fn add4(a: &[u64; 4], b: &[u64; 4]) -> ([u64; 4], u64) {
    let mut out = [0u64; 4];
    let mut carry = false;
    for i in 0..4 {
        let (s, c1) = a[i].overflowing_add(b[i]);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        out[i] = s;
        carry = c1 | c2;
    }
    (out, u64::from(carry))
}

/// Four-limb subtraction, returning the wrapped difference and the borrow
/// (0 or 1).
#[inline(always)]
fn sub4(a: &[u64; 4], b: &[u64; 4]) -> ([u64; 4], u64) {
    let mut out = [0u64; 4];
    let mut borrow = false;
    for i in 0..4 {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        out[i] = d;
        borrow = b1 | b2;
    }
    (out, u64::from(borrow))
}

/// Maps `x < 2r` to `x mod r`, without branching on the value.
#[inline(always)]
fn sub_modulus_if_ge(x: [u64; 4]) -> [u64; 4] {
    let (d, borrow) = sub4(&x, &MODULUS);
    // borrow = 1 means x < r: keep x.
    let keep = 0u64.wrapping_sub(borrow);
    let mut out = [0u64; 4];
    for i in 0..4 {
        out[i] = (x[i] & keep) | (d[i] & !keep);
    }
    out
}

/// Little-endian bytes to little-endian limbs.
fn limbs_from_le(bytes: [u8; 32]) -> [u64; 4] {
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *limb = u64::from_le_bytes(word);
    }
    limbs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// splitmix64, for reproducible test inputs.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn scalar(&mut self) -> Scalar {
            let mut wide = [0u8; 64];
            for chunk in wide.chunks_exact_mut(8) {
                chunk.copy_from_slice(&self.next_u64().to_le_bytes());
            }
            Scalar::from_bytes_wide(&wide)
        }
    }

    fn le_bytes(limbs: [u64; 4]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(limbs) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    fn pow2(k: u64) -> Scalar {
        Scalar::from(2u64).pow_vartime(&[k, 0, 0, 0])
    }

    /// Values where carries and reductions are most likely to go wrong.
    fn edge_scalars() -> Vec<Scalar> {
        let mut v = vec![
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(2u64),
            -Scalar::ONE,
            -Scalar::from(2u64),
            Scalar::from(u64::MAX),
            -Scalar::from(u64::MAX),
            pow2(255),
            pow2(254),
            pow2(254) - Scalar::ONE,
            pow2(192),
            // (r - 1) / 2 and (r + 1) / 2.
            Scalar::from(2u64).invert().unwrap() - Scalar::ONE,
            Scalar::from(2u64).invert().unwrap(),
        ];
        // Montgomery forms near 0 and near r (x = k / R and x = -k / R).
        let r_inv = pow2(256).invert().unwrap();
        for k in [1u64, 2, 3, u64::MAX] {
            v.push(Scalar::from(k) * r_inv);
            v.push(-(Scalar::from(k) * r_inv));
        }
        v
    }

    fn samples() -> Vec<Scalar> {
        let mut rng = Rng(0x0066_6965_6c64);
        let mut v = edge_scalars();
        v.extend((0..200).map(|_| rng.scalar()));
        v
    }

    /// The MULX/ADX product gives the portable product's limbs: every pair of edge values and
    /// 200,000 random pairs.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn mulx_product_equals_the_portable_one() {
        if !crate::mulx::available() {
            eprintln!("no BMI2/ADX on this processor: only the portable product runs here");
            return;
        }
        let both = |a: Fe, b: Fe| {
            // SAFETY: `available` found BMI2 and ADX.
            let fast = unsafe { crate::mulx::mont_mul_256(&a.0, &b.0, &MULX_MODULUS) };
            assert_eq!(fast, mont_mul(&a.0, &b.0), "{a:?} * {b:?}");
        };
        let mut edges: Vec<Fe> = edge_scalars().iter().map(Fe::from_scalar).collect();
        // Raw limbs at the extremes: zero, one, r - 1 and the largest Montgomery forms.
        edges.push(Fe([0; 4]));
        edges.push(Fe([1, 0, 0, 0]));
        edges.push(Fe([MODULUS[0] - 1, MODULUS[1], MODULUS[2], MODULUS[3]]));
        edges.push(Fe([u64::MAX, MODULUS[1] - 1, MODULUS[2], MODULUS[3]]));
        for &a in &edges {
            for &b in &edges {
                both(a, b);
            }
        }
        let mut rng = Rng(0x6d75_6c78);
        for _ in 0..200_000 {
            both(
                Fe::from_scalar(&rng.scalar()),
                Fe::from_scalar(&rng.scalar()),
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn mulx_wide_product_equals_the_portable_one() {
        if !crate::mulx::available() {
            eprintln!("no BMI2/ADX on this processor: only the portable product runs here");
            return;
        }
        let mut rng = Rng(0x7769_6465);
        let limbs = |rng: &mut Rng| {
            [
                rng.next_u64(),
                rng.next_u64(),
                rng.next_u64(),
                rng.next_u64(),
            ]
        };
        // Accumulators whose words are all ones make every carry run to the top word.
        let starts = [
            [0; 9],
            [
                u64::MAX,
                u64::MAX,
                u64::MAX,
                u64::MAX,
                u64::MAX,
                u64::MAX,
                u64::MAX,
                u64::MAX,
                0,
            ],
        ];
        let extremes = [[0; 4], [1, 0, 0, 0], [u64::MAX; 4], MODULUS];
        for start in starts {
            for a in extremes {
                for b in extremes {
                    let (mut fast, mut slow) = (Wide(start), Wide(start));
                    // SAFETY: `available` found BMI2 and ADX.
                    unsafe { crate::mulx::wide_mac_256(&mut fast.0, &a, &b) };
                    slow.add_product_portable(&Coeff(a), &Fe(b));
                    assert_eq!(fast.0, slow.0, "{start:?} + {a:?} * {b:?}");
                }
            }
        }
        for _ in 0..100_000 {
            let mut start = [0u64; 9];
            for w in &mut start[..8] {
                *w = rng.next_u64();
            }
            start[8] = rng.next_u64() >> 8;
            let (a, b) = (limbs(&mut rng), limbs(&mut rng));
            let (mut fast, mut slow) = (Wide(start), Wide(start));
            // SAFETY: as above.
            unsafe { crate::mulx::wide_mac_256(&mut fast.0, &a, &b) };
            slow.add_product_portable(&Coeff(a), &Fe(b));
            assert_eq!(fast.0, slow.0, "{start:?} + {a:?} * {b:?}");
        }
    }

    #[test]
    fn constants_are_consistent() {
        assert_eq!(MODULUS[0].wrapping_mul(INV), u64::MAX);
        let r2 = pow2(512);
        assert_eq!(le_bytes(R2), r2.to_repr());
        // r - 1 differs from r only in the lowest limb.
        assert_eq!(
            le_bytes([MODULUS[0] - 1, MODULUS[1], MODULUS[2], MODULUS[3]]),
            (-Scalar::ONE).to_repr()
        );
    }

    #[test]
    fn round_trips() {
        for s in samples() {
            let fe = Fe::from_scalar(&s);
            assert_eq!(fe.to_scalar(), s);
            assert_eq!(fe.to_repr(), s.to_repr());
            assert_eq!(Fe::from_repr(s.to_repr()), Some(fe));
        }
        assert_eq!(Fe::from_scalar(&Scalar::ZERO), Fe::default());
    }

    #[test]
    fn from_repr_rejects_like_scalar() {
        let r = MODULUS;
        let mut candidates = vec![
            r,
            [r[0] - 1, r[1], r[2], r[3]],
            [r[0] + 1, r[1], r[2], r[3]],
            [0, 0, 0, 1 << 63],
            [u64::MAX, u64::MAX, u64::MAX, (1 << 63) - 1],
            [u64::MAX; 4],
            [0, 0, 0, r[3] + 1],
            [u64::MAX, u64::MAX, u64::MAX, r[3] - 1],
        ];
        let mut rng = Rng(7);
        for _ in 0..200 {
            candidates.push([
                rng.next_u64(),
                rng.next_u64(),
                rng.next_u64(),
                rng.next_u64() >> 1,
            ]);
        }
        let mut accepted = 0;
        for limbs in candidates {
            let bytes = le_bytes(limbs);
            let want = Option::<Scalar>::from(Scalar::from_repr(bytes));
            let got = Fe::from_repr(bytes);
            assert_eq!(got.map(Fe::to_scalar), want, "{limbs:x?}");
            accepted += usize::from(want.is_some());
        }
        // Both branches were exercised.
        assert!(accepted > 2 && accepted < 200);
    }

    #[test]
    fn ops_match_scalar() {
        let xs = samples();
        let mut rng = Rng(11);
        let ys: Vec<Scalar> = edge_scalars()
            .into_iter()
            .chain((0..200).map(|_| rng.scalar()))
            .collect();
        for x in &xs {
            let fx = Fe::from_scalar(x);
            assert_eq!(fx.double().to_scalar(), x.double());
            assert_eq!(fx.square().to_scalar(), x.square());
            for y in &ys {
                let fy = Fe::from_scalar(y);
                assert_eq!((fx + fy).to_scalar(), x + y);
                assert_eq!((fx - fy).to_scalar(), x - y);
                assert_eq!((fx * fy).to_scalar(), x * y);
            }
        }
    }

    fn check_dot<const N: usize>(rng: &mut Rng, extremes: &[Scalar]) {
        let pick = |rng: &mut Rng| -> [Scalar; N] {
            std::array::from_fn(|_| {
                // Half random, half extreme values such as r - 1, so that
                // large sums and long carries get exercised.
                let k = rng.next_u64() as usize % (extremes.len() * 2);
                extremes.get(k).copied().unwrap_or_else(|| rng.scalar())
            })
        };
        for _ in 0..300 {
            let a = pick(rng);
            let b = pick(rng);
            let want: Scalar = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let coeffs = a.map(|x| Coeff::new(Fe::from_scalar(&x)));
            let got = dot(&coeffs, &b.map(|x| Fe::from_scalar(&x)));
            assert_eq!(got.to_scalar(), want, "N = {N}");
        }
        // The largest sum the accumulator can see: every limb vector r - 1.
        let top = [MODULUS[0] - 1, MODULUS[1], MODULUS[2], MODULUS[3]];
        let got = dot(&[Coeff(top); N], &[Fe(top); N]);
        // Coeff(top) stands for the element Fe(top) / 2^64.
        let two_64 = Scalar::from(1u64 << 32).square();
        let c = Fe(top).to_scalar() * two_64.invert().unwrap();
        let want = c * Fe(top).to_scalar() * Scalar::from(N as u64);
        assert_eq!(got.to_scalar(), want, "max, N = {N}");
    }

    #[test]
    fn dot_matches_naive_sum() {
        let mut rng = Rng(3);
        let extremes = edge_scalars();
        check_dot::<1>(&mut rng, &extremes);
        check_dot::<2>(&mut rng, &extremes);
        check_dot::<3>(&mut rng, &extremes);
        check_dot::<4>(&mut rng, &extremes);
        check_dot::<5>(&mut rng, &extremes);
        check_dot::<9>(&mut rng, &extremes);
        check_dot::<12>(&mut rng, &extremes);
        check_dot::<16>(&mut rng, &extremes);
        check_dot::<17>(&mut rng, &extremes);
        check_dot::<21>(&mut rng, &extremes);
    }

    #[test]
    fn wide_holds_long_sums_of_largest_products() {
        // Far more terms than Poseidon ever sums, all of the largest size.
        let top = [MODULUS[0] - 1, MODULUS[1], MODULUS[2], MODULUS[3]];
        let c = Coeff(top);
        let x = Fe(top);
        let one_term = dot(&[c], &[x]).to_scalar();
        let mut acc = Wide::default();
        for n in 1..=1000u64 {
            acc.add_product(&c, &x);
            if n % 37 == 0 || n <= 40 {
                assert_eq!(
                    acc.reduce().to_scalar(),
                    one_term * Scalar::from(n),
                    "{n} terms"
                );
            }
        }
    }

    #[test]
    fn empty_dot_is_zero() {
        assert_eq!(dot(&[], &[]), Fe::default());
    }
}
