//! Points of G1 and G2 (`y² = x³ + b`, `a = 0`) over this module's fields: affine bases, and
//! extended Jacobian "XYZZ" accumulators, with conversions from and to `bls12_381` points through
//! their uncompressed encodings.

use bls12_381::{G1Affine, G1Projective, G2Affine, G2Projective};

use super::field::{Field, Fp, Fp2};

/// A finite point in affine coordinates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Affine<F> {
    pub(crate) x: F,
    pub(crate) y: F,
}

impl<F: Field> Affine<F> {
    /// `-self`.
    #[inline(always)]
    pub(crate) fn neg(self) -> Self {
        Affine {
            x: self.x,
            y: -self.y,
        }
    }
}

/// A point as `(X, Y, ZZ, ZZZ)` with `x = X / ZZ`, `y = Y / ZZZ` and `ZZ³ = ZZZ²`; `ZZ = 0` is the
/// identity. Mixed additions cost 8 multiplications and 2 squarings (Bernstein and Lange's
/// explicit-formula database, `madd-2008-s`, `add-2008-s`, `dbl-2008-s-1`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Xyzz<F> {
    x: F,
    y: F,
    zz: F,
    zzz: F,
}

impl<F: Field> Xyzz<F> {
    /// The identity.
    pub(crate) const IDENTITY: Self = Xyzz {
        x: F::ONE,
        y: F::ONE,
        zz: F::ZERO,
        zzz: F::ZERO,
    };

    /// The point with these XYZZ coordinates (`zz = 0` for the identity; otherwise
    /// `zz³ = zzz²` must hold).
    pub(crate) fn from_coordinates(x: F, y: F, zz: F, zzz: F) -> Self {
        Xyzz { x, y, zz, zzz }
    }

    /// The point with these coordinates from an untrusted source (a device): the identity when
    /// `zz = 0`, otherwise `None` unless `zz³ = zzz²` with `zzz ≠ 0` (whether the point is on the
    /// curve is for the caller's export to check).
    pub(crate) fn from_untrusted(x: F, y: F, zz: F, zzz: F) -> Option<Self> {
        if zz.is_zero() {
            return Some(Self::IDENTITY);
        }
        (!zzz.is_zero() && zz.square() * zz == zzz.square()).then_some(Xyzz { x, y, zz, zzz })
    }

    /// Whether this is the identity.
    #[inline(always)]
    pub(crate) fn is_identity(&self) -> bool {
        self.zz.is_zero()
    }

    /// The point `p`.
    pub(crate) fn from_affine(p: &Affine<F>) -> Self {
        Xyzz {
            x: p.x,
            y: p.y,
            zz: F::ONE,
            zzz: F::ONE,
        }
    }

    /// `self + p`.
    #[inline(always)]
    pub(crate) fn add_affine(&mut self, p: &Affine<F>) {
        if self.is_identity() {
            *self = Self::from_affine(p);
            return;
        }
        let pp_ = p.x * self.zz - self.x;
        let r = p.y * self.zzz - self.y;
        if pp_.is_zero() {
            if r.is_zero() {
                *self = Self::from_affine(p).double();
            } else {
                *self = Self::IDENTITY;
            }
            return;
        }
        let pp = pp_.square();
        let ppp = pp_ * pp;
        let q = self.x * pp;
        let x3 = r.square() - ppp - q.double();
        let y3 = r * (q - x3) - self.y * ppp;
        self.x = x3;
        self.y = y3;
        self.zz = self.zz * pp;
        self.zzz = self.zzz * ppp;
    }

    /// `self + other`.
    pub(crate) fn add(&mut self, other: &Self) {
        if other.is_identity() {
            return;
        }
        if self.is_identity() {
            *self = *other;
            return;
        }
        let u1 = self.x * other.zz;
        let u2 = other.x * self.zz;
        let s1 = self.y * other.zzz;
        let s2 = other.y * self.zzz;
        let p = u2 - u1;
        let r = s2 - s1;
        if p.is_zero() {
            if r.is_zero() {
                *self = self.double();
            } else {
                *self = Self::IDENTITY;
            }
            return;
        }
        let pp = p.square();
        let ppp = p * pp;
        let q = u1 * pp;
        let x3 = r.square() - ppp - q.double();
        let y3 = r * (q - x3) - s1 * ppp;
        self.x = x3;
        self.y = y3;
        self.zz = self.zz * other.zz * pp;
        self.zzz = self.zzz * other.zzz * ppp;
    }

    /// `2 self`.
    pub(crate) fn double(&self) -> Self {
        if self.is_identity() || self.y.is_zero() {
            return Self::IDENTITY;
        }
        let u = self.y.double();
        let v = u.square();
        let w = u * v;
        let s = self.x * v;
        let xx = self.x.square();
        let m = xx.double() + xx;
        let x3 = m.square() - s.double();
        let y3 = m * (s - x3) - w * self.y;
        Xyzz {
            x: x3,
            y: y3,
            zz: v * self.zz,
            zzz: w * self.zzz,
        }
    }

    /// The affine coordinates, `None` for the identity.
    pub(crate) fn to_affine(self) -> Option<Affine<F>> {
        // 1 / (ZZ ZZZ) gives both 1 / ZZ = ZZZ / (ZZ ZZZ) and 1 / ZZZ = ZZ / (ZZ ZZZ).
        let inv = (self.zz * self.zzz).invert()?;
        Some(Affine {
            x: self.x * self.zzz * inv,
            y: self.y * self.zz * inv,
        })
    }
}

/// Conversion between `bls12_381` points and this module's, for G1 and G2.
pub(crate) trait Group: Sized {
    /// The coordinate field.
    type F: Field;
    /// `bls12_381`'s affine point.
    type Affine;
    /// `bls12_381`'s projective point.
    type Projective;

    /// The point, `None` for the identity (or a coordinate that does not parse, which a
    /// `bls12_381` point cannot have).
    fn import(p: &Self::Affine) -> Option<Affine<Self::F>>;

    /// The point as `bls12_381`'s, `None` when it is not on the curve or not in the prime-order
    /// subgroup (which a correct computation never gives).
    fn export(p: &Xyzz<Self::F>) -> Option<Self::Projective>;
}

/// G1.
pub(crate) struct G1;
/// G2.
pub(crate) struct G2;

/// The 48-byte big-endian field element at `at` of an encoding, its flag bits cleared.
fn fp_at(bytes: &[u8], at: usize) -> Option<Fp> {
    let mut word = [0u8; 48];
    word.copy_from_slice(bytes.get(at..at + 48)?);
    if at == 0 {
        word[0] &= 0x1f;
    }
    Fp::from_be_bytes(&word)
}

impl Group for G1 {
    type F = Fp;
    type Affine = G1Affine;
    type Projective = G1Projective;

    fn import(p: &G1Affine) -> Option<Affine<Fp>> {
        if bool::from(p.is_identity()) {
            return None;
        }
        let b = p.to_uncompressed();
        Some(Affine {
            x: fp_at(&b, 0)?,
            y: fp_at(&b, 48)?,
        })
    }

    fn export(p: &Xyzz<Fp>) -> Option<G1Projective> {
        let Some(a) = p.to_affine() else {
            return Some(G1Projective::identity());
        };
        let mut b = [0u8; 96];
        b[..48].copy_from_slice(&a.x.to_be_bytes());
        b[48..].copy_from_slice(&a.y.to_be_bytes());
        Option::<G1Affine>::from(G1Affine::from_uncompressed(&b)).map(G1Projective::from)
    }
}

impl Group for G2 {
    type F = Fp2;
    type Affine = G2Affine;
    type Projective = G2Projective;

    fn import(p: &G2Affine) -> Option<Affine<Fp2>> {
        if bool::from(p.is_identity()) {
            return None;
        }
        // x.c1, x.c0, y.c1, y.c0.
        let b = p.to_uncompressed();
        Some(Affine {
            x: Fp2 {
                c0: fp_at(&b, 48)?,
                c1: fp_at(&b, 0)?,
            },
            y: Fp2 {
                c0: fp_at(&b, 144)?,
                c1: fp_at(&b, 96)?,
            },
        })
    }

    fn export(p: &Xyzz<Fp2>) -> Option<G2Projective> {
        let Some(a) = p.to_affine() else {
            return Some(G2Projective::identity());
        };
        let mut b = [0u8; 192];
        b[..48].copy_from_slice(&a.x.c1.to_be_bytes());
        b[48..96].copy_from_slice(&a.x.c0.to_be_bytes());
        b[96..144].copy_from_slice(&a.y.c1.to_be_bytes());
        b[144..].copy_from_slice(&a.y.c0.to_be_bytes());
        Option::<G2Affine>::from(G2Affine::from_uncompressed(&b)).map(G2Projective::from)
    }
}
