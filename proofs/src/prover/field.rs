//! The base field of BLS12-381 and its quadratic extension, for the prover's multi-scalar
//! multiplications.
//!
//! `bls12_381` keeps its `Fp` private, so the curve points of the parameters are read into this
//! module's representation through their canonical big-endian bytes (the uncompressed encoding), and
//! the results leave it the same way. Elements are in Montgomery form with `R = 2^384`, always fully
//! reduced, so equal elements have equal limbs.
//!
//! Multiplication is the "no-carry" CIOS Montgomery product (valid because the top limb of `p` is far
//! below `2^63 - 1`; Botrel and Housni, "Faster Montgomery multiplication and multi-scalar
//! multiplication for SNARKs"), the same method as the scalar field of [`crate::poseidon`].

use std::ops::{Add, Mul, Neg, Sub};

/// The modulus `p`, least significant limb first.
pub(crate) const MODULUS: [u64; 6] = [
    0xb9fe_ffff_ffff_aaab,
    0x1eab_fffe_b153_ffff,
    0x6730_d2a0_f6b0_f624,
    0x6477_4b84_f385_12bf,
    0x4b1b_a7b6_434b_acd7,
    0x1a01_11ea_397f_e69a,
];

/// `-p^-1 mod 2^64`.
pub(crate) const INV: u64 = 0x89f3_fffc_fffc_fffd;

/// `p` and `INV` for [`crate::mulx::mont_mul_384`].
#[cfg(target_arch = "x86_64")]
static MULX_MODULUS: crate::mulx::Modulus<6> = crate::mulx::Modulus::new(MODULUS, INV);

/// `R^2 mod p` (`R = 2^384`): a Montgomery product with it maps `x` to `x R mod p`.
const R2: [u64; 6] = [
    0xf4df_1f34_1c34_1746,
    0x0a76_e6a6_09d1_04f1,
    0x8de5_476c_4c95_b6d5,
    0x67eb_88a9_939d_83c0,
    0x9a79_3e85_b519_952d,
    0x1198_8fe5_92ca_e3aa,
];

/// `R mod p`: one in Montgomery form.
const R: [u64; 6] = [
    0x7609_0000_0002_fffd,
    0xebf4_000b_c40c_0002,
    0x5f48_9857_53c7_58ba,
    0x77ce_5853_7052_5745,
    0x5c07_1a97_a256_ec6d,
    0x15f6_5ec3_fa80_e493,
];

/// The arithmetic the curve formulas need, for `Fp` and `Fp2` alike.
pub(crate) trait Field:
    Copy
    + Send
    + Sync
    + PartialEq
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Neg<Output = Self>
{
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// `self²`.
    fn square(self) -> Self;
    /// `2 self`.
    fn double(self) -> Self;
    /// `1 / self`, `None` for zero.
    fn invert(self) -> Option<Self>;
    /// Whether this is zero.
    fn is_zero(&self) -> bool;
}

/// An element of the base field, in Montgomery form, fully reduced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fp([u64; 6]);

impl Fp {
    /// Parses a canonical 48-byte big-endian integer; `None` when it is not below `p`.
    pub(crate) fn from_be_bytes(bytes: &[u8; 48]) -> Option<Fp> {
        let mut limbs = [0u64; 6];
        for (limb, chunk) in limbs.iter_mut().rev().zip(bytes.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *limb = u64::from_be_bytes(word);
        }
        let (_, borrow) = sub6(&limbs, &MODULUS);
        (borrow != 0).then(|| Fp(mont_mul(&limbs, &R2)))
    }

    /// The canonical 48-byte big-endian encoding.
    pub(crate) fn to_be_bytes(self) -> [u8; 48] {
        let plain = mont_mul(&self.0, &[1, 0, 0, 0, 0, 0]);
        let mut out = [0u8; 48];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(plain.iter().rev()) {
            chunk.copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    /// The element whose Montgomery representation is the integer `limbs` (the field element
    /// `limbs / R`), `None` unless `limbs < p`.
    pub(crate) fn from_montgomery(limbs: [u64; 6]) -> Option<Fp> {
        let (_, borrow) = sub6(&limbs, &MODULUS);
        (borrow != 0).then_some(Fp(limbs))
    }

    /// The Montgomery representation (`self · R mod p` as an integer).
    pub(crate) fn montgomery(&self) -> [u64; 6] {
        self.0
    }

    /// The element `2^k`.
    pub(crate) fn power_of_two(k: u32) -> Fp {
        let mut x = Fp::ONE;
        for _ in 0..k {
            x = x.double();
        }
        x
    }

    /// `self^e` for the little-endian exponent `e`.
    fn pow(self, e: &[u64; 6]) -> Fp {
        let mut acc = Fp::ONE;
        for limb in e.iter().rev() {
            for bit in (0..64).rev() {
                acc = acc.square();
                if (limb >> bit) & 1 == 1 {
                    acc = acc * self;
                }
            }
        }
        acc
    }
}

impl Field for Fp {
    const ZERO: Fp = Fp([0; 6]);
    const ONE: Fp = Fp(R);

    #[inline(always)]
    fn square(self) -> Fp {
        self * self
    }

    #[inline(always)]
    fn double(self) -> Fp {
        self + self
    }

    fn invert(self) -> Option<Fp> {
        if self.is_zero() {
            return None;
        }
        // Fermat: x^(p-2). The low limb of p is odd and above 2, so only it changes.
        let mut e = MODULUS;
        e[0] -= 2;
        Some(self.pow(&e))
    }

    #[inline(always)]
    fn is_zero(&self) -> bool {
        self.0.iter().fold(0, |acc, l| acc | l) == 0
    }
}

impl Add for Fp {
    type Output = Fp;

    #[inline(always)]
    fn add(self, rhs: Fp) -> Fp {
        // Both below p < 2^381: the sum fits six limbs.
        let (sum, _) = add6(&self.0, &rhs.0);
        Fp(sub_modulus_if_ge(sum))
    }
}

impl Sub for Fp {
    type Output = Fp;

    #[inline(always)]
    fn sub(self, rhs: Fp) -> Fp {
        let (diff, borrow) = sub6(&self.0, &rhs.0);
        // On borrow, adding p (and dropping the carry) gives a - b + p in [0, p).
        let mask = 0u64.wrapping_sub(borrow);
        let (out, _) = add6(&diff, &MODULUS.map(|m| m & mask));
        Fp(out)
    }
}

impl Neg for Fp {
    type Output = Fp;

    #[inline(always)]
    fn neg(self) -> Fp {
        Fp::ZERO - self
    }
}

impl Mul for Fp {
    type Output = Fp;

    #[inline(always)]
    fn mul(self, rhs: Fp) -> Fp {
        #[cfg(target_arch = "x86_64")]
        if crate::mulx::available() {
            // SAFETY: `available` found BMI2 and ADX.
            return Fp(unsafe { crate::mulx::mont_mul_384(&self.0, &rhs.0, &MULX_MODULUS) });
        }
        Fp(mont_mul(&self.0, &rhs.0))
    }
}

/// An element `c0 + c1 u` of `Fp2 = Fp[u] / (u² + 1)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fp2 {
    /// The constant coefficient.
    pub(crate) c0: Fp,
    /// The coefficient of `u`.
    pub(crate) c1: Fp,
}

impl Field for Fp2 {
    const ZERO: Fp2 = Fp2 {
        c0: Fp::ZERO,
        c1: Fp::ZERO,
    };
    const ONE: Fp2 = Fp2 {
        c0: Fp::ONE,
        c1: Fp::ZERO,
    };

    #[inline(always)]
    fn square(self) -> Fp2 {
        // (a + bu)² = (a + b)(a - b) + 2ab u.
        let ab = self.c0 * self.c1;
        Fp2 {
            c0: (self.c0 + self.c1) * (self.c0 - self.c1),
            c1: ab.double(),
        }
    }

    #[inline(always)]
    fn double(self) -> Fp2 {
        self + self
    }

    fn invert(self) -> Option<Fp2> {
        // 1 / (a + bu) = (a - bu) / (a² + b²).
        let norm = (self.c0.square() + self.c1.square()).invert()?;
        Some(Fp2 {
            c0: self.c0 * norm,
            c1: -(self.c1 * norm),
        })
    }

    #[inline(always)]
    fn is_zero(&self) -> bool {
        self.c0.is_zero() && self.c1.is_zero()
    }
}

impl Add for Fp2 {
    type Output = Fp2;

    #[inline(always)]
    fn add(self, rhs: Fp2) -> Fp2 {
        Fp2 {
            c0: self.c0 + rhs.c0,
            c1: self.c1 + rhs.c1,
        }
    }
}

impl Sub for Fp2 {
    type Output = Fp2;

    #[inline(always)]
    fn sub(self, rhs: Fp2) -> Fp2 {
        Fp2 {
            c0: self.c0 - rhs.c0,
            c1: self.c1 - rhs.c1,
        }
    }
}

impl Neg for Fp2 {
    type Output = Fp2;

    #[inline(always)]
    fn neg(self) -> Fp2 {
        Fp2 {
            c0: -self.c0,
            c1: -self.c1,
        }
    }
}

impl Mul for Fp2 {
    type Output = Fp2;

    #[inline(always)]
    fn mul(self, rhs: Fp2) -> Fp2 {
        // Karatsuba: three base-field products.
        let aa = self.c0 * rhs.c0;
        let bb = self.c1 * rhs.c1;
        let cross = (self.c0 + self.c1) * (rhs.c0 + rhs.c1);
        Fp2 {
            c0: aa - bb,
            c1: cross - aa - bb,
        }
    }
}

/// Montgomery product `a b / R mod p` of canonical `a` and `b`, canonical.
///
/// After each outer step the running value `t` stays below `a + p < 2p < 2^382`, so it never needs a
/// seventh word and the two carries of a step add up to its top word without overflow.
#[inline(always)]
fn mont_mul(a: &[u64; 6], b: &[u64; 6]) -> [u64; 6] {
    let mut t = [0u64; 6];
    for &bi in b {
        let (t0, mut carry_a) = mac(t[0], a[0], bi, 0);
        let m = t0.wrapping_mul(INV);
        let (_, mut carry_m) = mac(t0, m, MODULUS[0], 0);
        for j in 1..6 {
            let (tj, c) = mac(t[j], a[j], bi, carry_a);
            carry_a = c;
            let (v, c) = mac(tj, m, MODULUS[j], carry_m);
            carry_m = c;
            t[j - 1] = v;
        }
        t[5] = carry_a + carry_m;
    }
    sub_modulus_if_ge(t)
}

/// `acc + a b + carry` as (low word, high word); cannot overflow 128 bits.
#[inline(always)]
fn mac(acc: u64, a: u64, b: u64, carry: u64) -> (u64, u64) {
    let t = u128::from(acc) + u128::from(a) * u128::from(b) + u128::from(carry);
    (t as u64, (t >> 64) as u64)
}

#[inline(always)]
fn add6(a: &[u64; 6], b: &[u64; 6]) -> ([u64; 6], u64) {
    let mut out = [0u64; 6];
    let mut carry = false;
    for i in 0..6 {
        let (s, c) = a[i].carrying_add(b[i], carry);
        out[i] = s;
        carry = c;
    }
    (out, u64::from(carry))
}

#[inline(always)]
fn sub6(a: &[u64; 6], b: &[u64; 6]) -> ([u64; 6], u64) {
    let mut out = [0u64; 6];
    let mut borrow = false;
    for i in 0..6 {
        let (d, c) = a[i].borrowing_sub(b[i], borrow);
        out[i] = d;
        borrow = c;
    }
    (out, u64::from(borrow))
}

/// Maps `x < 2p` to `x mod p` without branching on the value.
#[inline(always)]
fn sub_modulus_if_ge(x: [u64; 6]) -> [u64; 6] {
    let (d, borrow) = sub6(&x, &MODULUS);
    let keep = 0u64.wrapping_sub(borrow);
    let mut out = [0u64; 6];
    for i in 0..6 {
        out[i] = (x[i] & keep) | (d[i] & !keep);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// splitmix64.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub(crate) fn fp(&mut self) -> Fp {
            loop {
                let mut b = [0u8; 48];
                for c in b.chunks_exact_mut(8) {
                    c.copy_from_slice(&self.next_u64().to_le_bytes());
                }
                b[0] &= 0x1f;
                if let Some(x) = Fp::from_be_bytes(&b) {
                    return x;
                }
            }
        }
    }

    fn be(limbs: [u64; 6]) -> [u8; 48] {
        let mut out = [0u8; 48];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(limbs.iter().rev()) {
            chunk.copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    fn small(n: u64) -> Fp {
        Fp::from_be_bytes(&be([n, 0, 0, 0, 0, 0])).unwrap()
    }

    #[test]
    fn constants_are_consistent() {
        assert_eq!(MODULUS[0].wrapping_mul(INV), u64::MAX);
        // R2 = R·R in Montgomery form is R·R·R / R: multiplying the integer 1 by R2 gives R.
        assert_eq!(mont_mul(&[1, 0, 0, 0, 0, 0], &R2), R);
        assert_eq!(Fp::ONE.to_be_bytes(), be([1, 0, 0, 0, 0, 0]));
        assert_eq!(small(1), Fp::ONE);
    }

    #[test]
    fn parsing_rejects_non_canonical_integers() {
        assert!(Fp::from_be_bytes(&be(MODULUS)).is_none());
        let mut below = MODULUS;
        below[0] -= 1;
        let x = Fp::from_be_bytes(&be(below)).unwrap();
        assert_eq!(x, -Fp::ONE);
        assert_eq!(x.to_be_bytes(), be(below));
        assert!(Fp::from_be_bytes(&[0xff; 48]).is_none());
    }

    #[test]
    fn arithmetic_matches_integers_on_small_values() {
        assert_eq!(small(6) * small(7), small(42));
        assert_eq!(small(6) + small(7), small(13));
        assert_eq!(small(6) - small(7), -Fp::ONE);
        assert_eq!(small(u64::MAX) * small(u64::MAX), {
            // (2^64 - 1)² = 2^128 - 2^65 + 1.
            Fp::from_be_bytes(&be([1, u64::MAX - 1, 0, 0, 0, 0])).unwrap()
        });
    }

    /// The MULX/ADX product gives the portable product's limbs: every pair of extreme values and
    /// 200,000 random pairs.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn mulx_product_equals_the_portable_one() {
        if !crate::mulx::available() {
            eprintln!("no BMI2/ADX on this processor: only the portable product runs here");
            return;
        }
        let both = |a: &[u64; 6], b: &[u64; 6]| {
            // SAFETY: `available` found BMI2 and ADX.
            let fast = unsafe { crate::mulx::mont_mul_384(a, b, &MULX_MODULUS) };
            assert_eq!(fast, mont_mul(a, b), "{a:x?} * {b:x?}");
        };
        let mut below = MODULUS;
        below[0] -= 1;
        let mut top = MODULUS;
        top[0] = u64::MAX;
        top[5] -= 1;
        let edges = [
            [0; 6],
            [1, 0, 0, 0, 0, 0],
            [u64::MAX, 0, 0, 0, 0, 0],
            R,
            R2,
            below,
            top,
            (-Fp(R)).0,
            small(2).0,
            (-small(2)).0,
        ];
        for a in &edges {
            for b in &edges {
                both(a, b);
            }
        }
        let mut rng = Rng(0x6d75_6c78);
        for _ in 0..200_000 {
            both(&rng.fp().0, &rng.fp().0);
        }
    }

    #[test]
    fn field_laws_hold() {
        let mut rng = Rng(1);
        for _ in 0..200 {
            let (a, b, c) = (rng.fp(), rng.fp(), rng.fp());
            assert_eq!(a * (b + c), a * b + a * c);
            assert_eq!((a * b) * c, a * (b * c));
            assert_eq!(a - b + b, a);
            assert_eq!(a + (-a), Fp::ZERO);
            assert_eq!(a.invert().unwrap() * a, Fp::ONE);
            assert_eq!(Fp::from_be_bytes(&a.to_be_bytes()), Some(a));
            let x = Fp2 { c0: a, c1: b };
            let y = Fp2 { c0: c, c1: a };
            assert_eq!(x.square(), x * x);
            assert_eq!(x.invert().unwrap() * x, Fp2::ONE);
            assert_eq!((x * y) * x.invert().unwrap(), y);
        }
        // u² = -1.
        let u = Fp2 {
            c0: Fp::ZERO,
            c1: Fp::ONE,
        };
        assert_eq!(u * u, -Fp2::ONE);
        assert!(Fp::ZERO.invert().is_none());
        assert!(Fp2::ZERO.invert().is_none());
    }
}
