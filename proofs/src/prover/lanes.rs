//! Montgomery arithmetic on `N` 52-bit limbs in AVX-512 IFMA lanes, for both vector backends: the
//! scalar field of the FFTs ([`super::fr8`], five limbs, `R = 2^260`) and the base field of the
//! MSM ([`super::ifma`], eight limbs, `R' = 2^416`).
//!
//! Register `j` of an element holds limb `j` of eight elements, one per lane. Each backend keeps its
//! own element type, constants and bounds. The limb conversions are generic functions; the vector
//! arithmetic is written once in [`lane_arithmetic`], a macro that each backend expands for its
//! type and limb count, so that both get the code they had (see there why not a generic function).
//!
//! # Safety
//!
//! The vector functions are `#[target_feature]` functions, called only from the backends' vector
//! functions, which are reached only where the processor has the features.

use std::arch::x86_64::*;

/// Low 52 bits.
pub(super) const MASK: u64 = (1 << 52) - 1;

/// `k m` for the modulus `m` on `M` 64-bit words, as `L` 52-bit limbs (`W = M + 1` words hold the
/// product).
pub(super) const fn times<const M: usize, const W: usize, const L: usize>(
    m: [u64; M],
    k: u64,
) -> [u64; L] {
    let mut w = [0u64; W];
    let mut carry: u128 = 0;
    let mut i = 0;
    while i < M {
        let t = (m[i] as u128) * (k as u128) + carry;
        w[i] = t as u64;
        carry = t >> 64;
        i += 1;
    }
    w[M] = carry as u64;
    split(w)
}

/// A number on `W` 64-bit words (below `2^(52 L)`), as `L` 52-bit limbs.
pub(super) const fn split<const W: usize, const L: usize>(w: [u64; W]) -> [u64; L] {
    let mut out = [0u64; L];
    let mut i = 0;
    while i < L {
        let bit = i * 52;
        let (k, s) = (bit / 64, bit % 64);
        let lo = if k < W { w[k] >> s } else { 0 };
        let hi = if s > 12 && k + 1 < W {
            w[k + 1] << (64 - s)
        } else {
            0
        };
        out[i] = (lo | hi) & MASK;
        i += 1;
    }
    out
}

/// `L` 52-bit limbs as `W` 64-bit words (the value must fit them).
#[inline]
pub(super) fn join<const L: usize, const W: usize>(l: [u64; L]) -> [u64; W] {
    let mut w = [0u64; W];
    for (i, limb) in l.iter().enumerate() {
        let bit = i * 52;
        let (k, s) = (bit / 64, bit % 64);
        if let Some(w) = w.get_mut(k) {
            *w |= limb << s;
        }
        if s > 12
            && let Some(w) = w.get_mut(k + 1)
        {
            *w |= limb >> (64 - s);
        }
    }
    w
}

/// Defines the lane arithmetic of a backend whose elements are `$v`, a tuple struct of `$n`
/// registers (register `j` holds limb `j` of eight elements), modulo `$m` (limbs, a `const`) with
/// `$minv = -$m^-1 mod 2^52`: `splat`, `normalize`, `mul`, `add`, `sub`, `reduce` and `blend`,
/// each `#[target_feature]` and `#[inline]`.
///
/// `$limb` lists the limb indices `0..$n` and `$above` the accumulator's indices `2..=$n`: the
/// product's accumulator is an array of `$n + 1` registers shifted down by one limb per step, and
/// writing that shift and the final truncation out as array literals (not loops over a const
/// generic) is what lets LLVM unroll the whole product and keep it in registers — a generic
/// function over the limb count compiled to a rolled loop for eight limbs.
macro_rules! lane_arithmetic {
    ($v:ident, $n:literal, $m:ident, $minv:ident, [$($limb:literal),+], [$($above:literal),+]) => {
        #[target_feature(enable = "avx512f,avx512ifma")]
        #[inline]
        fn splat(l: &[u64; $n]) -> $v {
            $v(l.map(|x| _mm512_set1_epi64(x as i64)))
        }

        /// Carries limbs into normalised ones, for a nonnegative value that fits the limbs: limbs
        /// below `2^63` (products, sums), or signed ones in `(-2^62, 2^62)` (differences). The
        /// arithmetic shift carries both: on a nonnegative limb it is the logical one.
        #[target_feature(enable = "avx512f,avx512ifma")]
        #[inline]
        fn normalize(t: [__m512i; $n]) -> $v {
            let mask = _mm512_set1_epi64($crate::prover::lanes::MASK as i64);
            let mut carry = _mm512_setzero_si512();
            let mut out = t;
            for o in out.iter_mut() {
                let s = _mm512_add_epi64(*o, carry);
                *o = _mm512_and_si512(s, mask);
                carry = _mm512_srai_epi64::<52>(s);
            }
            $v(out)
        }

        /// Montgomery product `a b / 2^(52 n) mod m`: operand scanning, one reduction step per
        /// limb of `b`. Normalised inputs; the result is below `m + a b / 2^(52 n)`. Each
        /// accumulator takes at most `4 n` terms below `2^52` over the whole product: no overflow.
        #[target_feature(enable = "avx512f,avx512ifma")]
        #[inline]
        fn mul(a: &$v, b: &$v) -> $v {
            let zero = _mm512_setzero_si512();
            let minv = _mm512_set1_epi64($minv as i64);
            let m = splat(&$m);
            let mut t = [zero; $n + 1];
            for bi in b.0 {
                for j in 0..$n {
                    t[j] = _mm512_madd52lo_epu64(t[j], a.0[j], bi);
                    t[j + 1] = _mm512_madd52hi_epu64(t[j + 1], a.0[j], bi);
                }
                // q = t0 · (−m^-1) mod 2^52 makes t + q m divisible by 2^52.
                let q = _mm512_madd52lo_epu64(zero, t[0], minv);
                for j in 0..$n {
                    t[j] = _mm512_madd52lo_epu64(t[j], m.0[j], q);
                    t[j + 1] = _mm512_madd52hi_epu64(t[j + 1], m.0[j], q);
                }
                let carry = _mm512_srli_epi64::<52>(t[0]);
                t = [_mm512_add_epi64(t[1], carry), $(t[$above],)+ zero];
            }
            normalize([$(t[$limb]),+])
        }

        /// `a + b`.
        #[target_feature(enable = "avx512f,avx512ifma")]
        #[inline]
        fn add(a: &$v, b: &$v) -> $v {
            let mut t = a.0;
            for (t, b) in t.iter_mut().zip(b.0) {
                *t = _mm512_add_epi64(*t, b);
            }
            normalize(t)
        }

        /// `a + k − b` for `b < k` (`k` a multiple of the modulus, as limbs).
        #[target_feature(enable = "avx512f,avx512ifma")]
        #[inline]
        fn sub(a: &$v, b: &$v, k: &[u64; $n]) -> $v {
            let k = splat(k);
            let mut t = a.0;
            for ((t, k), b) in t.iter_mut().zip(k.0).zip(b.0) {
                *t = _mm512_sub_epi64(_mm512_add_epi64(*t, k), b);
            }
            normalize(t)
        }

        /// `a − k` where `a ≥ k`, else `a` (`k` as limbs).
        #[target_feature(enable = "avx512f,avx512ifma")]
        #[inline]
        fn reduce(a: &$v, k: &[u64; $n]) -> $v {
            let k = splat(k);
            let mask = _mm512_set1_epi64($crate::prover::lanes::MASK as i64);
            let mut borrow = _mm512_setzero_si512();
            let mut d = a.0;
            for (d, k) in d.iter_mut().zip(k.0) {
                let s = _mm512_add_epi64(_mm512_sub_epi64(*d, k), borrow);
                *d = _mm512_and_si512(s, mask);
                borrow = _mm512_srai_epi64::<52>(s);
            }
            // No borrow out of the top limb: a ≥ k, take the difference.
            let keep = _mm512_cmpeq_epi64_mask(borrow, _mm512_setzero_si512());
            blend(keep, a, &$v(d))
        }

        /// `b` in the lanes of `mask`, `a` elsewhere.
        #[target_feature(enable = "avx512f,avx512ifma")]
        #[inline]
        fn blend(mask: __mmask8, a: &$v, b: &$v) -> $v {
            let mut out = a.0;
            for (o, b) in out.iter_mut().zip(b.0) {
                *o = _mm512_mask_blend_epi64(mask, *o, b);
            }
            $v(out)
        }
    };
}
pub(super) use lane_arithmetic;

/// The eight 64-bit lanes of `h`, lane 0 first.
#[target_feature(enable = "avx512f,avx512ifma,avx2")]
#[inline]
pub(super) fn lanes(h: __m512i) -> [u64; 8] {
    let lo = _mm512_extracti64x4_epi64::<0>(h);
    let hi = _mm512_extracti64x4_epi64::<1>(h);
    [
        _mm256_extract_epi64::<0>(lo) as u64,
        _mm256_extract_epi64::<1>(lo) as u64,
        _mm256_extract_epi64::<2>(lo) as u64,
        _mm256_extract_epi64::<3>(lo) as u64,
        _mm256_extract_epi64::<0>(hi) as u64,
        _mm256_extract_epi64::<1>(hi) as u64,
        _mm256_extract_epi64::<2>(hi) as u64,
        _mm256_extract_epi64::<3>(hi) as u64,
    ]
}
