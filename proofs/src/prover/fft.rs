//! The quotient polynomial `h = (A·B − C) / Z` of the QAP, from the evaluations of `A`, `B`, `C` on
//! the radix-2 domain: the same coefficients as bellman's `EvaluationDomain` pipeline (inverse FFT,
//! coset FFT, pointwise products, division by `Z` on the coset, inverse coset FFT), computed with
//! fewer passes.
//!
//! The transforms run on the scalar field arithmetic of [`crate::poseidon`]. Forward transforms are
//! decimation in frequency (natural order in, bit-reversed out) and the others decimation in time
//! (bit-reversed in, natural out), so no permutation pass is needed: the scaling between them uses
//! tables in bit-reversed order, the coset evaluations come out in natural order, and `h` is read
//! back through the bit reversal. Large levels run in parallel over butterflies, small ones over
//! independent blocks that stay in cache.

use bellman::SynthesisError;
use bls12_381::Scalar;
use ff::{Field, PrimeField};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::fr8;
use crate::poseidon::field::Fe;

/// Elements per block of the in-cache levels (128 KiB).
const BLOCK: usize = 1 << 12;

/// Butterflies per parallel task in the large levels.
const TASK: usize = 1 << 11;

/// The domain of `m = 2^k` points and its tables.
pub(crate) struct Domain {
    /// `log2 m`.
    log: u32,
    /// `ω^j` for `j < m/2`.
    omega: Vec<Fe>,
    /// `ω^-j` for `j < m/2`.
    omega_inv: Vec<Fe>,
    /// At bit-reversed position `p`: `g^i / m` with `i = rev(p)` (`g` the coset generator).
    to_coset: Vec<Fe>,
    /// At bit-reversed position `p`: `g^-i / (m Z(g))` with `i = rev(p)`, `Z(g) = g^m − 1`.
    from_coset: Vec<Fe>,
    /// The same tables for the levels computed in AVX-512 IFMA lanes, where the processor has them.
    #[cfg(target_arch = "x86_64")]
    lanes: Option<Lanes>,
}

/// The tables of [`super::fr8`]'s FFT levels: twiddles as limbs, coset factors in blocks.
#[cfg(target_arch = "x86_64")]
struct Lanes {
    ifma: fr8::Ifma,
    omega: Vec<fr8::Limbs5>,
    omega_inv: Vec<fr8::Limbs5>,
    to_coset: Vec<fr8::F8>,
    from_coset: Vec<fr8::F8>,
}

/// Smallest domain whose FFTs use the vector levels.
#[cfg(target_arch = "x86_64")]
const LANES_FROM: usize = 1 << 10;

impl Domain {
    /// The smallest domain with at least `n` points, as bellman's `EvaluationDomain::from_coeffs`
    /// chooses it (and with its error when there is none).
    pub(crate) fn new(n: usize) -> Result<Self, SynthesisError> {
        let m = Self::size_for(n)?;
        let log = m.trailing_zeros();
        let mut omega = Scalar::ROOT_OF_UNITY;
        for _ in log..Scalar::S {
            omega = omega.square();
        }
        let g = Scalar::MULTIPLICATIVE_GENERATOR;
        let inverse = |x: Scalar| Option::<Scalar>::from(x.invert()).unwrap_or(Scalar::ZERO);
        let m_inv = inverse(Scalar::from(m as u64));
        let z_inv = inverse(Field::pow_vartime(&g, [m as u64]) - Scalar::ONE);
        let half = m / 2;
        let omega_pows = powers(omega, half.max(1));
        let omega_inv_pows = powers(inverse(omega), half.max(1));
        let to = powers_scaled(g, m_inv, m);
        let from = powers_scaled(inverse(g), m_inv * z_inv, m);
        let reorder = |v: Vec<Fe>| -> Vec<Fe> { (0..m).map(|p| v[rev(p, log)]).collect() };
        let (to_coset, from_coset) = (reorder(to), reorder(from));
        #[cfg(target_arch = "x86_64")]
        let lanes = fr8::Ifma::new()
            .filter(|_| m >= LANES_FROM)
            .map(|ifma| Lanes {
                ifma,
                omega: omega_pows.par_iter().map(|w| fr8::limbs_of(*w)).collect(),
                omega_inv: omega_inv_pows
                    .par_iter()
                    .map(|w| fr8::limbs_of(*w))
                    .collect(),
                to_coset: ifma.pack_blocks(&to_coset),
                from_coset: ifma.pack_blocks(&from_coset),
            });
        Ok(Domain {
            log,
            omega: omega_pows,
            omega_inv: omega_inv_pows,
            to_coset,
            from_coset,
            #[cfg(target_arch = "x86_64")]
            lanes,
        })
    }

    /// The number of points of the domain for `n` values.
    pub(crate) fn size_for(n: usize) -> Result<usize, SynthesisError> {
        let mut log = 0u32;
        while (1usize << log) < n {
            log += 1;
            if log >= Scalar::S {
                return Err(SynthesisError::PolynomialDegreeTooLarge);
            }
        }
        Ok(1 << log)
    }

    /// Number of points.
    pub(crate) fn size(&self) -> usize {
        1 << self.log
    }

    /// The coefficients of `h` (`m − 1` of them) from the evaluations of `A`, `B`, `C` on the
    /// domain (shorter vectors are padded with zeros).
    pub(crate) fn quotient(&self, a: Vec<Fe>, b: Vec<Fe>, c: Vec<Fe>) -> Vec<Fe> {
        #[cfg(target_arch = "x86_64")]
        if let Some(lanes) = &self.lanes {
            return self.quotient_lanes(lanes, a, b, c);
        }
        let to_coset = |mut v: Vec<Fe>| {
            v.resize(self.size(), Fe::default());
            dif(&mut v, &self.omega_inv);
            v.par_iter_mut()
                .zip(&self.to_coset)
                .with_min_len(BLOCK)
                .for_each(|(x, s)| *x = *x * *s);
            dit(&mut v, &self.omega);
            v
        };
        let (mut a, (b, c)) = rayon::join(
            || to_coset(a),
            || rayon::join(|| to_coset(b), || to_coset(c)),
        );
        a.par_iter_mut()
            .zip(&b)
            .zip(&c)
            .with_min_len(BLOCK)
            .for_each(|((a, b), c)| *a = *a * *b - *c);
        drop((b, c));
        dif(&mut a, &self.omega_inv);
        a.par_iter_mut()
            .zip(&self.from_coset)
            .with_min_len(BLOCK)
            .for_each(|(x, s)| *x = *x * *s);
        let m = self.size();
        (0..m.saturating_sub(1))
            .into_par_iter()
            .with_min_len(BLOCK)
            .map(|i| a[rev(i, self.log)])
            .collect()
    }
}

#[cfg(target_arch = "x86_64")]
impl Domain {
    /// [`Domain::quotient`] with the levels of half-size up to `m/16` in IFMA lanes: the three
    /// top levels (which cross eighths of the data) stay in the scalar code.
    fn quotient_lanes(&self, lanes: &Lanes, a: Vec<Fe>, b: Vec<Fe>, c: Vec<Fe>) -> Vec<Fe> {
        let m = self.size();
        let eighth = m / 8;
        let ifma = lanes.ifma;
        let to_coset = |mut v: Vec<Fe>| {
            v.resize(m, Fe::default());
            dif_down_to(&mut v, &self.omega_inv, eighth);
            let mut x = ifma.pack_blocks(&v);
            ifma.dif_lower(&mut x, &lanes.omega_inv);
            ifma.scale(&mut x, &lanes.to_coset);
            ifma.dit_lower(&mut x, &lanes.omega);
            ifma.unpack_blocks(&x, &mut v);
            dit_up_from(&mut v, &self.omega, eighth);
            v
        };
        let (mut a, (b, c)) = rayon::join(
            || to_coset(a),
            || rayon::join(|| to_coset(b), || to_coset(c)),
        );
        a.par_iter_mut()
            .zip(&b)
            .zip(&c)
            .with_min_len(BLOCK)
            .for_each(|((a, b), c)| *a = *a * *b - *c);
        drop((b, c));
        dif_down_to(&mut a, &self.omega_inv, eighth);
        let mut x = ifma.pack_blocks(&a);
        ifma.dif_lower(&mut x, &lanes.omega_inv);
        ifma.scale(&mut x, &lanes.from_coset);
        ifma.unpack_blocks(&x, &mut a);
        (0..m.saturating_sub(1))
            .into_par_iter()
            .with_min_len(BLOCK)
            .map(|i| a[rev(i, self.log)])
            .collect()
    }
}

/// `x^0, x^1, …, x^(n−1)`.
fn powers(x: Scalar, n: usize) -> Vec<Fe> {
    powers_scaled(x, Scalar::ONE, n)
}

/// `s x^0, s x^1, …, s x^(n−1)`, in parallel blocks.
fn powers_scaled(x: Scalar, s: Scalar, n: usize) -> Vec<Fe> {
    let xf = Fe::from_scalar(&x);
    let mut out = vec![Fe::default(); n];
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(k, chunk)| {
            let mut acc = Fe::from_scalar(&(s * Field::pow_vartime(&x, [(k * BLOCK) as u64])));
            for o in chunk {
                *o = acc;
                acc = acc * xf;
            }
        });
    out
}

/// `p` with its low `log` bits reversed.
#[inline(always)]
fn rev(p: usize, log: u32) -> usize {
    if log == 0 {
        0
    } else {
        p.reverse_bits() >> (usize::BITS - log)
    }
}

/// One level of butterflies with half-size `half` over `v` (a multiple of `2 half` long).
#[inline(always)]
fn level(v: &mut [Fe], half: usize, tw: &[Fe], stride: usize, dif: bool) {
    for group in v.chunks_exact_mut(2 * half) {
        let (lo, hi) = group.split_at_mut(half);
        butterflies(lo, hi, tw, stride, 0, dif);
    }
}

/// Butterflies `(lo[j], hi[j])` with twiddle `ω^((first + j) stride)`.
#[inline(always)]
fn butterflies(lo: &mut [Fe], hi: &mut [Fe], tw: &[Fe], stride: usize, first: usize, dif: bool) {
    for (j, (u, v)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
        let w = tw[(first + j) * stride];
        if dif {
            let (x, y) = (*u, *v);
            *u = x + y;
            *v = (x - y) * w;
        } else {
            let (x, y) = (*u, *v * w);
            *u = x + y;
            *v = x - y;
        }
    }
}

/// A level too large for the blocks: its butterflies in parallel tasks.
fn level_parallel(v: &mut [Fe], half: usize, tw: &[Fe], stride: usize, dif: bool) {
    v.par_chunks_mut(2 * half).for_each(|group| {
        let (lo, hi) = group.split_at_mut(half);
        lo.par_chunks_mut(TASK)
            .zip(hi.par_chunks_mut(TASK))
            .enumerate()
            .for_each(|(t, (lo, hi))| butterflies(lo, hi, tw, stride, t * TASK, dif));
    });
}

/// Decimation in frequency with twiddles `tw = ω^j`: natural order in, bit-reversed out.
fn dif(v: &mut [Fe], tw: &[Fe]) {
    dif_down_to(v, tw, 1);
}

/// The decimation-in-frequency levels of half-size `m/2` down to `lowest`.
fn dif_down_to(v: &mut [Fe], tw: &[Fe], lowest: usize) {
    let m = v.len();
    let mut half = m / 2;
    while half >= lowest.max(1) && 2 * half > BLOCK {
        level_parallel(v, half, tw, m / (2 * half), true);
        half /= 2;
    }
    if half >= lowest.max(1) {
        v.par_chunks_mut(BLOCK.min(m)).for_each(|block| {
            let mut h = half;
            while h >= lowest.max(1) {
                level(block, h, tw, m / (2 * h), true);
                h /= 2;
            }
        });
    }
}

/// Decimation in time with twiddles `tw = ω^j`: bit-reversed order in, natural out.
fn dit(v: &mut [Fe], tw: &[Fe]) {
    dit_up_from(v, tw, 1);
}

/// The decimation-in-time levels of half-size `lowest` up to `m/2`.
fn dit_up_from(v: &mut [Fe], tw: &[Fe], lowest: usize) {
    let m = v.len();
    let small = BLOCK.min(m);
    if lowest < small {
        v.par_chunks_mut(small).for_each(|block| {
            let mut h = lowest.max(1);
            while 2 * h <= block.len() {
                level(block, h, tw, m / (2 * h), false);
                h *= 2;
            }
        });
    }
    let mut half = small.max(lowest);
    while half < m {
        level_parallel(v, half, tw, m / (2 * half), false);
        half *= 2;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bellman::domain::{EvaluationDomain, Scalar as S};
    use bellman::multicore::Worker;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// bellman's pipeline, as `groth16::create_proof` runs it.
    fn reference(a: &[Scalar], b: &[Scalar], c: &[Scalar]) -> Vec<Scalar> {
        let worker = Worker::new();
        let dom = |v: &[Scalar]| {
            EvaluationDomain::from_coeffs(v.iter().map(|x| S(*x)).collect()).unwrap()
        };
        let (mut a, mut b, mut c) = (dom(a), dom(b), dom(c));
        for d in [&mut a, &mut b, &mut c] {
            d.ifft(&worker);
            d.coset_fft(&worker);
        }
        a.mul_assign(&worker, &b);
        a.sub_assign(&worker, &c);
        a.divide_by_z_on_coset(&worker);
        a.icoset_fft(&worker);
        let mut h: Vec<Scalar> = a.into_coeffs().into_iter().map(|s| s.0).collect();
        h.pop();
        h
    }

    #[test]
    fn quotient_equals_bellmans() {
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        for n in [1, 2, 3, 5, 64, 100, 4096, 5000, 20_000] {
            let v = |rng: &mut ChaCha20Rng| -> Vec<Scalar> {
                (0..n).map(|_| Scalar::random(&mut *rng)).collect()
            };
            let (a, b, c) = (v(&mut rng), v(&mut rng), v(&mut rng));
            let want = reference(&a, &b, &c);
            let fe = |v: &[Scalar]| v.iter().map(Fe::from_scalar).collect::<Vec<_>>();
            let domain = Domain::new(n).unwrap();
            assert_eq!(domain.size(), want.len() + 1);
            let got: Vec<Scalar> = domain
                .quotient(fe(&a), fe(&b), fe(&c))
                .into_iter()
                .map(Fe::to_scalar)
                .collect();
            assert!(got == want, "n = {n}");
        }
    }
}
