//! BLS signatures over BLS12-381 in the "minimal-pubkey-size" variant.
//!
//! * Public keys are points of G1, encoded as 48-byte compressed points.
//! * Signatures are points of G2, encoded as 96-byte compressed points.
//! * Messages are hashed to G2 with the `BLS12381G2_XMD:SHA-256_SSWU_RO_`
//!   suite and the domain separation tag [`DST`]
//!   (`BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_`), i.e. the basic scheme of
//!   the IETF BLS signature draft, as used by Filecoin and compatible with
//!   `blst::min_pk` under the same tag.
//!
//! Every decoder in this module accepts untrusted input: malformed bytes yield
//! a [`CryptoError`], never a panic. Decoded public keys and signatures are
//! always valid, non-identity points of the prime-order subgroup.
//!
//! **Two implementations of one scheme.** Decoding (point validation), scalars
//! and the sum of signatures use the `bls12_381` crate; signing, public keys
//! and every pairing check use `blst`, which computes the same functions about
//! three times faster (measured in BENCHMARKS.md, *Message throughput*). The
//! tests check that both give the same bytes and the same verdicts.
//!
//! **Aggregation.** [`Signature::aggregate`] adds signatures in G2;
//! [`aggregate_verify`] checks one aggregate against many `(key, message)`
//! pairs with one multi-pairing, `e(g1, σ) = Π e(pk_i, H(m_i))`: the hashes
//! to G2 and the Miller loops run in parallel (rayon) and one final
//! exponentiation decides. Aggregation of the basic scheme is only sound for
//! distinct messages: a caller must not pass the same message twice (the chain
//! refuses a block that repeats one before it verifies anything).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use bls12_381::{G1Affine, G2Affine, G2Projective, Scalar};
use blst::{BLST_ERROR, Pairing, blst_fp12, blst_p1_affine, blst_p2_affine};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Domain separation tag used to hash messages to G2 (IETF basic scheme).
pub const DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";

/// Length in bytes of an encoded [`SecretKey`].
pub const SECRET_KEY_LEN: usize = 32;

/// Length in bytes of an encoded [`PublicKey`] (compressed G1 point).
pub const PUBLIC_KEY_LEN: usize = 48;

/// Length in bytes of an encoded [`Signature`] (compressed G2 point).
pub const SIGNATURE_LEN: usize = 96;

/// blake3 `derive_key` context used by [`SecretKey::from_seed`].
const KEYGEN_CONTEXT: &str = "lode/bls/keygen";

/// The result of a key or signature operation.
pub type CryptoResult<T> = Result<T, CryptoError>;

/// Errors produced when decoding keys/signatures or verifying signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The input has the wrong number of bytes.
    #[error("invalid {what} length: expected {expected} bytes, got {actual}")]
    InvalidLength {
        /// Kind of object being decoded.
        what: &'static str,
        /// Required length in bytes.
        expected: usize,
        /// Length actually supplied.
        actual: usize,
    },
    /// The bytes are not a valid compressed point of the prime-order subgroup.
    #[error("invalid {what}: not a valid compressed point in the prime-order subgroup")]
    InvalidPoint {
        /// Kind of object being decoded.
        what: &'static str,
    },
    /// The bytes encode the identity (point at infinity), which is not allowed.
    #[error("invalid {what}: the identity point is not allowed")]
    Identity {
        /// Kind of object being decoded.
        what: &'static str,
    },
    /// The bytes are not a canonical, non-zero scalar.
    #[error("invalid secret key: not a canonical non-zero scalar")]
    InvalidSecretKey,
    /// The signature does not match the public key and message.
    #[error("signature verification failed: signature does not match key and message")]
    SignatureMismatch,
}

/// `pk` as a `blst` point (the same point: the uncompressed encodings of the
/// two libraries are the same format; `deserialize` checks it is on the curve,
/// and the subgroup was checked when `pk` was decoded).
fn blst_public_key(pk: &PublicKey) -> CryptoResult<blst::min_pk::PublicKey> {
    blst::min_pk::PublicKey::deserialize(&pk.point.to_uncompressed())
        .map_err(|_| CryptoError::InvalidPoint { what: "public key" })
}

/// `sig` as a `blst` point (see [`blst_public_key`]).
fn blst_signature(sig: &Signature) -> CryptoResult<blst::min_pk::Signature> {
    blst::min_pk::Signature::deserialize(&sig.point.to_uncompressed())
        .map_err(|_| CryptoError::InvalidPoint { what: "signature" })
}

/// Checks `len` against `expected`, producing an [`CryptoError::InvalidLength`].
fn check_len(what: &'static str, expected: usize, actual: usize) -> CryptoResult<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(CryptoError::InvalidLength {
            what,
            expected,
            actual,
        })
    }
}

// ---------------------------------------------------------------------------
// Secret key
// ---------------------------------------------------------------------------

/// A BLS secret key: a non-zero scalar of the BLS12-381 scalar field.
///
/// `Debug` never prints the key material.
#[derive(Clone)]
pub struct SecretKey(Scalar);

impl SecretKey {
    /// Deterministically derives a secret key from a 32-byte seed.
    ///
    /// The scalar is `Scalar::from_bytes_wide` of 64 bytes of blake3 XOF output
    /// in `derive_key` mode with context `"lode/bls/keygen"` over `seed`. In the
    /// (negligibly likely) case the result is zero, the derivation is repeated
    /// over `seed || counter` (counter as `u32` little-endian, starting at 1).
    #[must_use]
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        let mut counter: u32 = 0;
        loop {
            let mut hasher = blake3::Hasher::new_derive_key(KEYGEN_CONTEXT);
            hasher.update(seed);
            if counter != 0 {
                hasher.update(&counter.to_le_bytes());
            }
            let mut wide = [0u8; 64];
            hasher.finalize_xof().fill(&mut wide);
            let scalar = Scalar::from_bytes_wide(&wide);
            if scalar != Scalar::zero() {
                return SecretKey(scalar);
            }
            counter = counter.wrapping_add(1);
        }
    }

    /// Generates a fresh secret key from 32 bytes of a cryptographic RNG
    /// (via [`SecretKey::from_seed`]).
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> SecretKey {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        SecretKey::from_seed(&seed)
    }

    /// The same scalar as a `blst` key (big-endian). `None` cannot happen for
    /// a canonical non-zero scalar, which every `SecretKey` holds.
    fn to_blst(&self) -> Option<blst::min_pk::SecretKey> {
        let mut be = self.0.to_bytes();
        be.reverse();
        blst::min_pk::SecretKey::from_bytes(&be).ok()
    }

    /// Returns the public key `sk * g1`.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        let from_blst = self.to_blst().and_then(|sk| {
            // blst's point is valid by construction: no decompression needed.
            let point: Option<G1Affine> =
                G1Affine::from_uncompressed_unchecked(&sk.sk_to_pk().serialize()).into();
            point
        });
        let point = from_blst.unwrap_or_else(|| G1Affine::from(G1Affine::generator() * self.0));
        PublicKey {
            bytes: point.to_compressed(),
            point,
        }
    }

    /// Signs `msg`: returns `sk * H(msg)` with `H` the hash to G2 under [`DST`].
    #[must_use]
    pub fn sign(&self, msg: &[u8]) -> Signature {
        let from_blst = self.to_blst().and_then(|sk| {
            let sig = sk.sign(msg, DST, &[]);
            let point: Option<G2Affine> =
                G2Affine::from_uncompressed_unchecked(&sig.serialize()).into();
            point.map(|point| Signature {
                bytes: sig.compress(),
                point,
            })
        });
        from_blst.unwrap_or_else(|| reference::sign(&self.0, msg))
    }

    /// Encodes the scalar as 32 bytes, **little-endian** (the `bls12_381`
    /// convention; `blst` and the IETF draft use big-endian).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; SECRET_KEY_LEN] {
        self.0.to_bytes()
    }

    /// Decodes a 32-byte little-endian scalar, rejecting non-canonical
    /// encodings (value `>= r`) and zero.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidSecretKey`] if the bytes are not a canonical
    /// non-zero scalar.
    pub fn from_bytes(bytes: &[u8; SECRET_KEY_LEN]) -> CryptoResult<Self> {
        let scalar: Option<Scalar> = Scalar::from_bytes(bytes).into();
        match scalar {
            Some(s) if s != Scalar::zero() => Ok(SecretKey(s)),
            _ => Err(CryptoError::InvalidSecretKey),
        }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

// ---------------------------------------------------------------------------
// Public key
// ---------------------------------------------------------------------------

/// A BLS public key: a non-identity point of the G1 prime-order subgroup.
///
/// Equality, ordering and hashing use the canonical 48-byte compressed
/// encoding. Serialized as a hex string in human-readable formats and as raw
/// bytes otherwise.
#[derive(Clone, Copy)]
pub struct PublicKey {
    bytes: [u8; PUBLIC_KEY_LEN],
    point: G1Affine,
}

impl PublicKey {
    /// Decodes a 48-byte compressed G1 point, rejecting wrong lengths,
    /// invalid or non-canonical encodings, points outside the prime-order
    /// subgroup, and the identity.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidLength`], [`CryptoError::InvalidPoint`] or
    /// [`CryptoError::Identity`] accordingly.
    pub fn from_bytes(bytes: &[u8]) -> CryptoResult<Self> {
        const WHAT: &str = "public key";
        check_len(WHAT, PUBLIC_KEY_LEN, bytes.len())?;
        let mut arr = [0u8; PUBLIC_KEY_LEN];
        arr.copy_from_slice(bytes);
        if let Some(point) = key_cache::get(&arr) {
            return Ok(PublicKey { bytes: arr, point });
        }
        let point: Option<G1Affine> = G1Affine::from_compressed(&arr).into();
        let point = point.ok_or(CryptoError::InvalidPoint { what: WHAT })?;
        if bool::from(point.is_identity()) {
            return Err(CryptoError::Identity { what: WHAT });
        }
        key_cache::put(arr, point);
        Ok(PublicKey { bytes: arr, point })
    }

    /// Returns the 48-byte compressed encoding.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.bytes
    }

    /// Borrows the 48-byte compressed encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// Verifies `sig` on `msg` by checking `e(g1, sig) == e(pk, H(msg))`.
    ///
    /// # Errors
    ///
    /// [`CryptoError::SignatureMismatch`] if the signature is not valid for
    /// this key and message.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> CryptoResult<()> {
        let pk = blst_public_key(self)?;
        let s = blst_signature(sig)?;
        // Both points were validated (subgroup, identity) when decoded.
        match s.verify(false, msg, DST, &[], &pk, false) {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            _ => Err(CryptoError::SignatureMismatch),
        }
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PublicKey {}

impl Hash for PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.bytes))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(&self.bytes, serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = deserialize_bytes::<D, PUBLIC_KEY_LEN>(deserializer, "public key")?;
        PublicKey::from_bytes(&bytes).map_err(de::Error::custom)
    }
}

/// Public keys decoded before, by encoding. Decoding a key (a square root and a subgroup check)
/// costs tens of microseconds, and account records decode their key on every read of the state —
/// several times per message. Only keys that passed every check are kept, so a hit returns exactly
/// what decoding would; the cache is bounded (oldest entries forgotten first) and, if its lock is
/// ever poisoned, simply not used.
mod key_cache {
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    use bls12_381::G1Affine;

    use super::PUBLIC_KEY_LEN;

    /// Most keys kept (about 200 bytes each).
    const ENTRIES: usize = 1 << 15;

    type Key = [u8; PUBLIC_KEY_LEN];

    #[derive(Default)]
    struct Cache {
        points: HashMap<Key, G1Affine>,
        order: VecDeque<Key>,
    }

    impl Cache {
        /// Keeps `point` for `key`, then forgets the oldest entries beyond `bound`.
        fn put(&mut self, key: Key, point: G1Affine, bound: usize) {
            if self.points.insert(key, point).is_none() {
                self.order.push_back(key);
            }
            while self.order.len() > bound {
                if let Some(old) = self.order.pop_front() {
                    self.points.remove(&old);
                }
            }
        }
    }

    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

    pub(super) fn get(key: &Key) -> Option<G1Affine> {
        let guard = CACHE.lock().ok()?;
        guard.as_ref()?.points.get(key).copied()
    }

    pub(super) fn put(key: Key, point: G1Affine) {
        let Ok(mut guard) = CACHE.lock() else {
            return;
        };
        guard
            .get_or_insert_with(Cache::default)
            .put(key, point, ENTRIES);
    }

    /// The bound on the global cache.
    #[cfg(test)]
    pub(super) const BOUND: usize = ENTRIES;

    /// Whether the global cache holds `key`.
    #[cfg(test)]
    pub(super) fn contains(key: &Key) -> bool {
        get(key).is_some()
    }

    /// How many keys the global cache holds; checks its map and its order agree.
    #[cfg(test)]
    pub(super) fn len() -> usize {
        let guard = CACHE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().map_or(0, |c| {
            assert_eq!(c.points.len(), c.order.len(), "map and order disagree");
            c.points.len()
        })
    }

    /// A private cache with `bound` entries after putting `keys` in order (with the points
    /// given): what it keeps, oldest first.
    #[cfg(test)]
    pub(super) fn simulate(keys: &[(Key, G1Affine)], bound: usize) -> Vec<(Key, G1Affine)> {
        let mut c = Cache::default();
        for (k, p) in keys {
            c.put(*k, *p, bound);
            assert!(c.order.len() <= bound && c.points.len() == c.order.len());
        }
        c.order
            .iter()
            .filter_map(|k| c.points.get(k).map(|p| (*k, *p)))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Signature
// ---------------------------------------------------------------------------

/// A BLS signature: a non-identity point of the G2 prime-order subgroup.
///
/// Equality, ordering and hashing use the canonical 96-byte compressed
/// encoding. Serialized as a hex string in human-readable formats and as raw
/// bytes otherwise.
#[derive(Clone, Copy)]
pub struct Signature {
    bytes: [u8; SIGNATURE_LEN],
    point: G2Affine,
}

impl Signature {
    /// Decodes a 96-byte compressed G2 point, rejecting wrong lengths,
    /// invalid or non-canonical encodings, points outside the prime-order
    /// subgroup, and the identity.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidLength`], [`CryptoError::InvalidPoint`] or
    /// [`CryptoError::Identity`] accordingly.
    pub fn from_bytes(bytes: &[u8]) -> CryptoResult<Self> {
        const WHAT: &str = "signature";
        check_len(WHAT, SIGNATURE_LEN, bytes.len())?;
        let mut arr = [0u8; SIGNATURE_LEN];
        arr.copy_from_slice(bytes);
        let point: Option<G2Affine> = G2Affine::from_compressed(&arr).into();
        let point = point.ok_or(CryptoError::InvalidPoint { what: WHAT })?;
        if bool::from(point.is_identity()) {
            return Err(CryptoError::Identity { what: WHAT });
        }
        Ok(Signature { bytes: arr, point })
    }

    /// Returns the 96-byte compressed encoding.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.bytes
    }

    /// Borrows the 96-byte compressed encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.bytes
    }

    /// The aggregate of `signatures`: their sum in G2 (in any order: addition
    /// commutes).
    ///
    /// # Errors
    ///
    /// [`CryptoError::Identity`] when there is nothing to aggregate or the sum
    /// is the identity (which no signature may be; for honest signatures of
    /// distinct messages this has negligible probability).
    pub fn aggregate<'a>(
        signatures: impl IntoIterator<Item = &'a Signature>,
    ) -> CryptoResult<Self> {
        let sum = signatures
            .into_iter()
            .fold(G2Projective::identity(), |acc, s| acc + s.point);
        let point = G2Affine::from(sum);
        if bool::from(point.is_identity()) {
            return Err(CryptoError::Identity {
                what: "aggregate signature",
            });
        }
        Ok(Signature {
            bytes: point.to_compressed(),
            point,
        })
    }
}

/// Verifies `aggregate` against `pairs` of keys and messages: checks
/// `e(g1, aggregate) == Π e(pk_i, H(m_i))` with one multi-pairing.
///
/// The pairs are split into chunks hashed to G2 and Miller-looped in parallel
/// (rayon); the partial products are multiplied and one final exponentiation
/// compares them with the aggregate's pairing.
///
/// The messages must be distinct; this function does not check it (see the
/// module docs).
///
/// # Errors
///
/// [`CryptoError::SignatureMismatch`] if the aggregate is not the sum of
/// signatures of these messages by these keys, or `pairs` is empty (nothing
/// is signed by a non-identity point).
pub fn aggregate_verify(pairs: &[(&PublicKey, &[u8])], aggregate: &Signature) -> CryptoResult<()> {
    use rayon::prelude::*;
    if pairs.is_empty() {
        return Err(CryptoError::SignatureMismatch);
    }
    // A few chunks per thread, so a core slowed by other work does not hold up the rest.
    let threads = rayon::current_num_threads().saturating_mul(4).max(1);
    let chunk = pairs.len().div_ceil(threads).max(1);
    let merged = pairs
        .par_chunks(chunk)
        .map(|chunk| -> CryptoResult<Pairing<'static>> {
            let mut pairing = Pairing::new(true, DST);
            for (pk, msg) in chunk {
                let pk: blst_p1_affine = blst_public_key(pk)?.into();
                // No signature in this term (`()` is not a point); the key was validated when
                // decoded.
                if pairing.aggregate(&pk, false, &(), false, msg, &[]) != BLST_ERROR::BLST_SUCCESS {
                    return Err(CryptoError::SignatureMismatch);
                }
            }
            pairing.commit();
            Ok(pairing)
        })
        .try_reduce_with(|mut a, b| match a.merge(&b) {
            BLST_ERROR::BLST_SUCCESS => Ok(a),
            _ => Err(CryptoError::SignatureMismatch),
        });
    let merged = match merged {
        Some(m) => m?,
        None => return Err(CryptoError::SignatureMismatch),
    };
    let sig: blst_p2_affine = blst_signature(aggregate)?.into();
    let mut gt_sig = blst_fp12::default();
    Pairing::aggregated(&mut gt_sig, &sig);
    if merged.finalverify(Some(&gt_sig)) {
        Ok(())
    } else {
        Err(CryptoError::SignatureMismatch)
    }
}

/// The scheme computed with the `bls12_381` crate alone: the definition the
/// `blst` paths are tested against, and the fallback of [`SecretKey::sign`].
pub(crate) mod reference {
    use bls12_381::hash_to_curve::{ExpandMsgXmd, HashToCurve};
    #[cfg(test)]
    use bls12_381::{G1Affine, G2Prepared, Gt, multi_miller_loop};
    use bls12_381::{G2Affine, G2Projective, Scalar};

    #[cfg(test)]
    use super::PublicKey;
    use super::{DST, Signature};

    /// Hashes `msg` to a point of G2 using [`DST`].
    pub(crate) fn hash_to_g2(msg: &[u8]) -> G2Projective {
        <G2Projective as HashToCurve<ExpandMsgXmd<sha2::Sha256>>>::hash_to_curve([msg], DST)
    }

    /// `sk * H(msg)`.
    pub(crate) fn sign(sk: &Scalar, msg: &[u8]) -> Signature {
        let point = G2Affine::from(hash_to_g2(msg) * sk);
        Signature {
            bytes: point.to_compressed(),
            point,
        }
    }

    /// `Π e(pk_i, H(m_i)) · e(−g1, σ) == 1`: one signature (one pair) or an aggregate.
    #[cfg(test)]
    pub(crate) fn verify(pairs: &[(&PublicKey, &[u8])], sig: &Signature) -> bool {
        let hashed: Vec<G2Prepared> = pairs
            .iter()
            .map(|(_, m)| G2Prepared::from(G2Affine::from(hash_to_g2(m))))
            .collect();
        let s = G2Prepared::from(sig.point);
        let neg_g1 = -G1Affine::generator();
        let mut terms: Vec<(&G1Affine, &G2Prepared)> = vec![(&neg_g1, &s)];
        terms.extend(pairs.iter().map(|(pk, _)| &pk.point).zip(hashed.iter()));
        multi_miller_loop(&terms).final_exponentiation() == Gt::identity()
    }
}

impl PartialEq for Signature {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Signature {}

impl Hash for Signature {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl PartialOrd for Signature {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Signature {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.bytes))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(&self.bytes, serializer)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = deserialize_bytes::<D, SIGNATURE_LEN>(deserializer, "signature")?;
        Signature::from_bytes(&bytes).map_err(de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// serde helpers
// ---------------------------------------------------------------------------

/// Serializes as lowercase hex (human-readable formats) or raw bytes.
fn serialize_bytes<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&hex::encode(bytes))
    } else {
        serializer.serialize_bytes(bytes)
    }
}

/// Deserializes exactly `N` bytes from a hex string (human-readable formats),
/// a byte string, or a sequence of `u8`.
fn deserialize_bytes<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
    what: &'static str,
) -> Result<[u8; N], D::Error> {
    let visitor = FixedBytesVisitor::<N> { what };
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(visitor)
    } else {
        deserializer.deserialize_bytes(visitor)
    }
}

/// Visitor accepting `N` bytes as hex, bytes, or a `u8` sequence.
struct FixedBytesVisitor<const N: usize> {
    what: &'static str,
}

impl<const N: usize> FixedBytesVisitor<N> {
    fn copy_exact<E: de::Error>(&self, v: &[u8]) -> Result<[u8; N], E> {
        <[u8; N]>::try_from(v).map_err(|_| {
            E::custom(CryptoError::InvalidLength {
                what: self.what,
                expected: N,
                actual: v.len(),
            })
        })
    }
}

impl<'de, const N: usize> Visitor<'de> for FixedBytesVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} as {N} bytes or {} hex characters",
            self.what,
            N.saturating_mul(2)
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let mut out = [0u8; N];
        if N.checked_mul(2) != Some(v.len()) {
            return Err(E::custom(CryptoError::InvalidLength {
                what: self.what,
                expected: N,
                actual: v.len() / 2,
            }));
        }
        hex::decode_to_slice(v, &mut out).map_err(E::custom)?;
        Ok(out)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        self.copy_exact(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = [0u8; N];
        let mut len = 0usize;
        while let Some(b) = seq.next_element::<u8>()? {
            if let Some(slot) = out.get_mut(len) {
                *slot = b;
            }
            len = len.saturating_add(1);
        }
        if len != N {
            return Err(de::Error::custom(CryptoError::InvalidLength {
                what: self.what,
                expected: N,
                actual: len,
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use bls12_381::G1Projective;
    use proptest::prelude::*;
    use serde::de::IntoDeserializer;
    use serde::de::value::{BytesDeserializer, Error as DeError, StrDeserializer};

    fn key(i: u8) -> SecretKey {
        SecretKey::from_seed(&[i; 32])
    }

    fn identity_g1() -> [u8; 48] {
        let mut b = [0u8; 48];
        b[0] = 0xc0;
        b
    }

    fn identity_g2() -> [u8; 96] {
        let mut b = [0u8; 96];
        b[0] = 0xc0;
        b
    }

    /// Deterministic test RNG backed by blake3's XOF.
    struct TestRng(blake3::OutputReader);

    impl rand_core::TryRng for TestRng {
        type Error = rand_core::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            let mut b = [0u8; 4];
            self.0.fill(&mut b);
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            let mut b = [0u8; 8];
            self.0.fill(&mut b);
            Ok(u64::from_le_bytes(b))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            self.0.fill(dst);
            Ok(())
        }
    }

    impl rand_core::TryCryptoRng for TestRng {}

    #[test]
    fn dst_is_exact() {
        assert_eq!(DST, b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_");
    }

    #[test]
    fn sign_verify_round_trip() {
        let sk = key(1);
        let pk = sk.public_key();
        for msg in [&b""[..], b"hello", &[0xabu8; 1000][..]] {
            let sig = sk.sign(msg);
            pk.verify(msg, &sig).unwrap();
            // Signing is deterministic.
            assert_eq!(sig, sk.sign(msg));
        }
    }

    #[test]
    fn wrong_message_key_and_swapped_signatures_fail() {
        let sk1 = key(1);
        let sk2 = key(2);
        let pk1 = sk1.public_key();
        let pk2 = sk2.public_key();
        let sig_a = sk1.sign(b"message a");
        let sig_b = sk1.sign(b"message b");

        assert_eq!(
            pk1.verify(b"message b", &sig_a),
            Err(CryptoError::SignatureMismatch)
        );
        assert_eq!(
            pk2.verify(b"message a", &sig_a),
            Err(CryptoError::SignatureMismatch)
        );
        assert!(pk1.verify(b"message a", &sig_b).is_err());
        assert!(pk1.verify(b"message b", &sig_a).is_err());
        assert!(pk1.verify(b"message a", &sk2.sign(b"message a")).is_err());
    }

    #[test]
    fn every_flipped_signature_bit_fails() {
        let sk = key(3);
        let pk = sk.public_key();
        let msg = b"flip me";
        let sig = sk.sign(msg).to_bytes();
        for bit in 0..SIGNATURE_LEN * 8 {
            let mut bad = sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            let rejected = match Signature::from_bytes(&bad) {
                Err(_) => true,
                Ok(s) => pk.verify(msg, &s).is_err(),
            };
            assert!(rejected, "bit {bit} flip accepted");
        }
    }

    #[test]
    fn flipped_public_key_bit_fails() {
        let sk = key(4);
        let msg = b"pk flip";
        let sig = sk.sign(msg);
        let pk = sk.public_key().to_bytes();
        for bit in (0..PUBLIC_KEY_LEN * 8).step_by(3) {
            let mut bad = pk;
            bad[bit / 8] ^= 1 << (bit % 8);
            let rejected = match PublicKey::from_bytes(&bad) {
                Err(_) => true,
                Ok(p) => p.verify(msg, &sig).is_err(),
            };
            assert!(rejected, "bit {bit} flip accepted");
        }
    }

    #[test]
    fn identity_and_bad_lengths_rejected() {
        assert_eq!(
            PublicKey::from_bytes(&identity_g1()),
            Err(CryptoError::Identity { what: "public key" })
        );
        assert_eq!(
            Signature::from_bytes(&identity_g2()),
            Err(CryptoError::Identity { what: "signature" })
        );
        // Identity without the compression flag / with stray bits is invalid.
        let mut b = identity_g1();
        b[0] = 0x40;
        assert!(matches!(
            PublicKey::from_bytes(&b),
            Err(CryptoError::InvalidPoint { .. })
        ));
        let mut b = identity_g1();
        b[47] = 1;
        assert!(PublicKey::from_bytes(&b).is_err());
        assert!(PublicKey::from_bytes(&[0u8; 48]).is_err());
        assert!(Signature::from_bytes(&[0u8; 96]).is_err());

        let pk = key(5).public_key().to_bytes();
        assert_eq!(
            PublicKey::from_bytes(&pk[..47]),
            Err(CryptoError::InvalidLength {
                what: "public key",
                expected: 48,
                actual: 47
            })
        );
        assert!(PublicKey::from_bytes(&[]).is_err());
        let sig = key(5).sign(b"x").to_bytes();
        assert!(Signature::from_bytes(&sig[..95]).is_err());
        let mut long = sig.to_vec();
        long.push(0);
        assert!(Signature::from_bytes(&long).is_err());
    }

    #[test]
    fn secret_key_bytes() {
        assert_eq!(
            SecretKey::from_bytes(&[0u8; 32]).unwrap_err(),
            CryptoError::InvalidSecretKey
        );
        assert!(SecretKey::from_bytes(&[0xff; 32]).is_err());
        let sk = key(6);
        let sk2 = SecretKey::from_bytes(&sk.to_bytes()).unwrap();
        assert_eq!(sk.to_bytes(), sk2.to_bytes());
        assert_eq!(sk.public_key(), sk2.public_key());
        assert_eq!(format!("{sk:?}"), "SecretKey(..)");
    }

    #[test]
    fn from_seed_is_deterministic() {
        let seed = [42u8; 32];
        let a = SecretKey::from_seed(&seed);
        let b = SecretKey::from_seed(&seed);
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(a.public_key(), b.public_key());
        let mut other = seed;
        other[31] ^= 1;
        let c = SecretKey::from_seed(&other);
        assert_ne!(a.to_bytes(), c.to_bytes());
        assert_ne!(a.public_key(), c.public_key());
    }

    #[test]
    fn generate_uses_rng() {
        let mut rng = TestRng(blake3::Hasher::new().update(b"rng").finalize_xof());
        let a = SecretKey::generate(&mut rng);
        let b = SecretKey::generate(&mut rng);
        assert_ne!(a.to_bytes(), b.to_bytes());
        let sig = a.sign(b"m");
        a.public_key().verify(b"m", &sig).unwrap();
    }

    #[test]
    fn debug_is_hex() {
        let pk = key(7).public_key();
        assert_eq!(
            format!("{pk:?}"),
            format!("PublicKey({})", hex::encode(pk.to_bytes()))
        );
        let sig = key(7).sign(b"d");
        assert_eq!(
            format!("{sig:?}"),
            format!("Signature({})", hex::encode(sig.to_bytes()))
        );
    }

    #[test]
    fn serde_deserialize_hex_and_bytes() {
        let pk = key(8).public_key();
        let sig = key(8).sign(b"serde");

        let hex_pk = hex::encode(pk.to_bytes());
        let d: StrDeserializer<'_, DeError> = hex_pk.as_str().into_deserializer();
        assert_eq!(PublicKey::deserialize(d).unwrap(), pk);

        let raw = sig.to_bytes();
        let d: BytesDeserializer<'_, DeError> = BytesDeserializer::new(&raw);
        assert_eq!(Signature::deserialize(d).unwrap(), sig);

        let hex_sig = hex::encode(sig.to_bytes());
        let d: StrDeserializer<'_, DeError> = hex_sig.as_str().into_deserializer();
        assert_eq!(Signature::deserialize(d).unwrap(), sig);

        // Wrong length, bad hex and identity are rejected without panicking.
        let short = &hex_pk[..94];
        let d: StrDeserializer<'_, DeError> = short.into_deserializer();
        assert!(PublicKey::deserialize(d).is_err());
        let bad = "zz".repeat(48);
        let d: StrDeserializer<'_, DeError> = bad.as_str().into_deserializer();
        assert!(PublicKey::deserialize(d).is_err());
        let ident = identity_g1();
        let d: BytesDeserializer<'_, DeError> = BytesDeserializer::new(&ident);
        assert!(PublicKey::deserialize(d).is_err());
        let multibyte = "é".repeat(48);
        let d: StrDeserializer<'_, DeError> = multibyte.as_str().into_deserializer();
        assert!(PublicKey::deserialize(d).is_err());
    }

    #[test]
    fn ordering_and_hash_follow_bytes() {
        use std::collections::HashSet;
        let mut pks: Vec<PublicKey> = (0..8).map(|i| key(i).public_key()).collect();
        pks.sort();
        assert!(pks.windows(2).all(|w| w[0].to_bytes() < w[1].to_bytes()));
        let set: HashSet<PublicKey> = pks.iter().copied().collect();
        assert_eq!(set.len(), 8);
    }

    /// Converts our little-endian secret key bytes to blst's big-endian form.
    fn to_blst_sk(sk: &SecretKey) -> blst::min_pk::SecretKey {
        let mut be = sk.to_bytes();
        be.reverse();
        blst::min_pk::SecretKey::from_bytes(&be).unwrap()
    }

    #[test]
    fn interop_with_blst_min_pk() {
        use blst::BLST_ERROR;
        for i in 0..4u8 {
            let sk = key(i);
            let pk = sk.public_key();
            let bsk = to_blst_sk(&sk);
            let bpk = bsk.sk_to_pk();
            assert_eq!(bpk.compress(), pk.to_bytes());

            for msg in [&b""[..], b"abc", &[i; 300][..]] {
                // Ours -> blst.
                let sig = sk.sign(msg);
                let bsig = blst::min_pk::Signature::from_bytes(&sig.to_bytes()).unwrap();
                assert_eq!(
                    bsig.verify(true, msg, DST, &[], &bpk, true),
                    BLST_ERROR::BLST_SUCCESS
                );
                assert_ne!(
                    bsig.verify(true, b"other", DST, &[], &bpk, true),
                    BLST_ERROR::BLST_SUCCESS
                );

                // blst -> ours (and signatures are byte-identical).
                let bsig2 = bsk.sign(msg, DST, &[]);
                assert_eq!(bsig2.compress(), sig.to_bytes());
                let sig2 = Signature::from_bytes(&bsig2.compress()).unwrap();
                let pk2 = PublicKey::from_bytes(&bpk.compress()).unwrap();
                pk2.verify(msg, &sig2).unwrap();
            }
        }
    }

    #[test]
    fn blst_paths_match_the_reference() {
        for i in 0..6u8 {
            let sk = key(i);
            let pk = sk.public_key();
            let reference_pk = G1Affine::from(G1Affine::generator() * sk.0);
            assert_eq!(pk.to_bytes(), reference_pk.to_compressed());
            assert_eq!(pk.point, reference_pk);
            for msg in [&b""[..], b"abc", &[i; 77][..]] {
                let sig = sk.sign(msg);
                let reference_sig = reference::sign(&sk.0, msg);
                assert_eq!(sig, reference_sig);
                assert_eq!(sig.point, reference_sig.point);
                assert!(pk.verify(msg, &sig).is_ok());
                assert!(reference::verify(&[(&pk, msg)], &sig));
                // Both refuse the same wrong combinations.
                let other = key(i.wrapping_add(100)).public_key();
                assert!(other.verify(msg, &sig).is_err());
                assert!(!reference::verify(&[(&other, msg)], &sig));
                assert!(pk.verify(b"other message", &sig).is_err());
                assert!(!reference::verify(&[(&pk, b"other message")], &sig));
            }
        }
    }

    /// `n` distinct keys and messages, and each message's signature.
    fn signed(n: usize) -> (Vec<PublicKey>, Vec<Vec<u8>>, Vec<Signature>) {
        let keys: Vec<SecretKey> = (0..n)
            .map(|i| SecretKey::from_seed(blake3::hash(&(i as u64).to_le_bytes()).as_bytes()))
            .collect();
        let msgs: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("message {i}").into_bytes())
            .collect();
        let sigs = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        (keys.iter().map(SecretKey::public_key).collect(), msgs, sigs)
    }

    fn pairs<'a>(pks: &'a [PublicKey], msgs: &'a [Vec<u8>]) -> Vec<(&'a PublicKey, &'a [u8])> {
        pks.iter()
            .zip(msgs)
            .map(|(k, m)| (k, m.as_slice()))
            .collect()
    }

    #[test]
    fn aggregates_verify_as_the_reference_says() {
        for n in [1usize, 2, 3, 17, 64] {
            let (pks, msgs, sigs) = signed(n);
            let agg = Signature::aggregate(&sigs).unwrap();
            let p = pairs(&pks, &msgs);
            assert_eq!(aggregate_verify(&p, &agg), Ok(()), "n = {n}");
            assert!(reference::verify(&p, &agg), "n = {n}");
            // Order does not matter, for the aggregate or the pairs.
            let mut rev = sigs.clone();
            rev.reverse();
            assert_eq!(Signature::aggregate(&rev).unwrap(), agg);
            let mut shuffled = p.clone();
            shuffled.rotate_left(n / 2);
            assert_eq!(aggregate_verify(&shuffled, &agg), Ok(()));
            // An encoded aggregate decodes to itself and still verifies.
            let decoded = Signature::from_bytes(&agg.to_bytes()).unwrap();
            assert_eq!(aggregate_verify(&p, &decoded), Ok(()));
        }
    }

    #[test]
    fn aggregates_of_other_things_fail_in_both() {
        let (pks, msgs, sigs) = signed(8);
        let agg = Signature::aggregate(&sigs).unwrap();
        let p = pairs(&pks, &msgs);
        let fails = |p: &[(&PublicKey, &[u8])], agg: &Signature| {
            assert_eq!(
                aggregate_verify(p, agg),
                Err(CryptoError::SignatureMismatch)
            );
            assert!(!reference::verify(p, agg));
        };
        // One message altered.
        let mut altered = p.clone();
        altered[3].1 = b"altered";
        fails(&altered, &agg);
        // A pair missing, a pair added.
        fails(&p[1..], &agg);
        let (extra_pks, extra_msgs, _) = signed(9);
        fails(&pairs(&extra_pks, &extra_msgs), &agg);
        // A key swapped.
        let mut swapped = p.clone();
        swapped[2].0 = &pks[5];
        fails(&swapped, &agg);
        // The aggregate of the other signatures, or one signature alone.
        fails(&p, &Signature::aggregate(&sigs[1..]).unwrap());
        fails(&p, &sigs[0]);
        // Nothing to verify.
        fails(&[], &agg);
        assert_eq!(
            Signature::aggregate(&[]),
            Err(CryptoError::Identity {
                what: "aggregate signature"
            })
        );
        // A signature and its negation sum to the identity.
        let neg = G2Affine::from(-G2Projective::from(sigs[0].point));
        let neg = Signature::from_bytes(&neg.to_compressed()).unwrap();
        assert!(Signature::aggregate([&sigs[0], &neg]).is_err());
    }

    /// Serialises the tests that read the global key cache's contents (the bound test floods
    /// it, which would evict what another test just decoded).
    static KEY_CACHE_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn key_cache_lock() -> std::sync::MutexGuard<'static, ()> {
        KEY_CACHE_TESTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A compressed G1 encoding that is on the curve but outside the prime-order subgroup.
    fn off_subgroup_g1() -> [u8; 48] {
        for i in 0u32.. {
            let mut b = [0u8; 48];
            b[..32].copy_from_slice(blake3::hash(&i.to_le_bytes()).as_bytes());
            b[0] = (b[0] & 0x1f) | 0x80;
            let on_curve: Option<G1Affine> = G1Affine::from_compressed_unchecked(&b).into();
            let valid: Option<G1Affine> = G1Affine::from_compressed(&b).into();
            if on_curve.is_some_and(|p| !bool::from(p.is_identity())) && valid.is_none() {
                return b;
            }
        }
        unreachable!()
    }

    #[test]
    fn key_cache_hits_decode_and_verify_like_a_fresh_decode() {
        let _serial = key_cache_lock();
        for i in 40..48u8 {
            let sk = key(i);
            let bytes = sk.public_key().to_bytes();
            let msg = [i; 40];
            let sig = sk.sign(&msg);
            let other_sig = key(i.wrapping_add(1)).sign(&msg);
            // The first decode may or may not hit; afterwards the key is cached.
            let first = PublicKey::from_bytes(&bytes).unwrap();
            assert!(key_cache::contains(&bytes), "key {i} not cached");
            let hit = PublicKey::from_bytes(&bytes).unwrap();
            // A fresh decode, without the cache.
            let fresh: G1Affine = Option::from(G1Affine::from_compressed(&bytes)).unwrap();
            for pk in [first, hit] {
                assert_eq!(
                    pk.point, fresh,
                    "key {i}: the cached point is not the key's"
                );
                assert_eq!(pk.to_bytes(), bytes);
                assert_eq!(pk.verify(&msg, &sig), Ok(()));
                assert_eq!(
                    pk.verify(&msg, &other_sig),
                    Err(CryptoError::SignatureMismatch)
                );
                assert_eq!(
                    pk.verify(b"another message", &sig),
                    Err(CryptoError::SignatureMismatch)
                );
                assert_eq!(aggregate_verify(&[(&pk, &msg[..])], &sig), Ok(()));
                assert!(reference::verify(&[(&pk, &msg[..])], &sig));
            }
            // Decoded through serde (how state records and blocks decode keys): the same key.
            let via_serde: PublicKey = postcard::from_bytes(&crate::codec::encode(&first)).unwrap();
            assert_eq!(via_serde.point, fresh);
        }
    }

    #[test]
    fn invalid_keys_are_errors_every_time_and_never_cached() {
        let _serial = key_cache_lock();
        let valid = key(50).public_key().to_bytes();
        let mut not_canonical = valid;
        not_canonical[0] |= 0x40; // the infinity flag on a finite point
        let mut no_compression_flag = valid;
        no_compression_flag[0] &= 0x7f;
        let mut x_too_large = [0xffu8; 48];
        x_too_large[0] = 0x9f;
        let mut invalid: Vec<([u8; 48], &str)> = vec![
            (identity_g1(), "identity"),
            (off_subgroup_g1(), "outside the subgroup"),
            (not_canonical, "bad flags"),
            (no_compression_flag, "uncompressed flag"),
            (x_too_large, "x not in the field"),
            ([0u8; 48], "zeros"),
        ];
        // Single bit flips of a valid key that leave no valid key.
        for bit in (0..PUBLIC_KEY_LEN * 8).step_by(7) {
            let mut b = valid;
            b[bit / 8] ^= 1 << (bit % 8);
            if PublicKey::from_bytes(&b).is_err() {
                invalid.push((b, "flipped bit"));
            }
        }
        assert!(invalid.len() > 20);
        // The valid key is decoded (and cached) first, so a cache keyed loosely would show.
        PublicKey::from_bytes(&valid).unwrap();
        let decoded: PublicKey = postcard::from_bytes(&serde_bytes_of(&valid)).unwrap();
        assert_eq!(decoded.to_bytes(), valid);
        for (bytes, what) in &invalid {
            let first = PublicKey::from_bytes(bytes).unwrap_err();
            for _ in 0..3 {
                assert_eq!(PublicKey::from_bytes(bytes), Err(first), "{what}");
                let via_serde: Result<PublicKey, _> = postcard::from_bytes(&serde_bytes_of(bytes));
                assert!(via_serde.is_err(), "{what}");
                assert!(
                    !key_cache::contains(bytes),
                    "{what}: an invalid key was cached"
                );
            }
        }
        assert_eq!(
            PublicKey::from_bytes(&identity_g1()),
            Err(CryptoError::Identity { what: "public key" })
        );
        assert_eq!(
            PublicKey::from_bytes(&off_subgroup_g1()),
            Err(CryptoError::InvalidPoint { what: "public key" })
        );
        assert!(key_cache::contains(&valid));
    }

    /// `bytes` as postcard writes a key: a byte string.
    fn serde_bytes_of(bytes: &[u8; 48]) -> Vec<u8> {
        let mut out = vec![48u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn key_cache_forgets_the_oldest_keys_beyond_its_bound() {
        // The eviction rule on a private cache with a small bound.
        let points: Vec<([u8; 48], G1Affine)> = (0..10u8)
            .map(|i| {
                let pk = key(60 + i).public_key();
                (pk.to_bytes(), pk.point)
            })
            .collect();
        let kept = key_cache::simulate(&points, 4);
        assert_eq!(kept, points[6..].to_vec());
        // A key put again is not counted twice, nor does it push out another.
        let mut again = points[..4].to_vec();
        again.extend_from_slice(&points[..4]);
        assert_eq!(key_cache::simulate(&again, 4), points[..4].to_vec());
        assert!(key_cache::simulate(&points, 0).is_empty());

        // The global cache: decode more distinct keys than it holds.
        let _serial = key_cache_lock();
        let n = key_cache::BOUND + 100;
        let mut acc = G1Projective::from(G1Affine::generator());
        let g = G1Affine::generator();
        let mut projective = Vec::with_capacity(n);
        for _ in 0..n {
            acc += g;
            projective.push(acc);
        }
        let mut affine = vec![G1Affine::identity(); n];
        G1Projective::batch_normalize(&projective, &mut affine);
        let encoded: Vec<[u8; 48]> = affine.iter().map(G1Affine::to_compressed).collect();
        for (i, b) in encoded.iter().enumerate() {
            let pk = PublicKey::from_bytes(b).unwrap();
            assert_eq!(pk.point, affine[i]);
        }
        assert_eq!(key_cache::len(), key_cache::BOUND);
        assert!(!key_cache::contains(&encoded[0]), "the oldest key was kept");
        assert!(
            key_cache::contains(&encoded[n - 1]),
            "the newest key was dropped"
        );
        // Forgotten keys still decode (they are decoded afresh and cached again).
        assert_eq!(PublicKey::from_bytes(&encoded[0]).unwrap().point, affine[0]);
        assert!(key_cache::contains(&encoded[0]));
        assert_eq!(key_cache::len(), key_cache::BOUND);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(pk) = PublicKey::from_bytes(&bytes) {
                prop_assert_eq!(&pk.to_bytes()[..], &bytes[..]);
            }
            if let Ok(sig) = Signature::from_bytes(&bytes) {
                prop_assert_eq!(&sig.to_bytes()[..], &bytes[..]);
            }
        }

        #[test]
        fn random_fixed_len_never_panic(
            pk in proptest::array::uniform32(any::<u8>()),
            tail in proptest::array::uniform16(any::<u8>()),
            sig in proptest::collection::vec(any::<u8>(), 96),
            flags in 0u8..8,
        ) {
            let mut pkb = [0u8; 48];
            pkb[..32].copy_from_slice(&pk);
            pkb[32..].copy_from_slice(&tail);
            pkb[0] = (pkb[0] & 0x1f) | (flags << 5);
            let mut sigb = sig.clone();
            sigb[0] = (sigb[0] & 0x1f) | (flags << 5);
            if let Ok(p) = PublicKey::from_bytes(&pkb) {
                prop_assert_eq!(p.to_bytes(), pkb);
            }
            if let Ok(s) = Signature::from_bytes(&sigb) {
                prop_assert_eq!(&s.to_bytes()[..], &sigb[..]);
            }
            if let Ok(sk) = SecretKey::from_bytes(&pk) {
                prop_assert_eq!(sk.to_bytes(), pk);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn valid_keys_and_signatures_round_trip(
            seed in proptest::array::uniform32(any::<u8>()),
            msg in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let sk = SecretKey::from_seed(&seed);
            let pk = sk.public_key();
            let pk2 = PublicKey::from_bytes(&pk.to_bytes()).unwrap();
            prop_assert_eq!(pk, pk2);
            let sig = sk.sign(&msg);
            let sig2 = Signature::from_bytes(&sig.to_bytes()).unwrap();
            prop_assert_eq!(sig, sig2);
            prop_assert!(pk2.verify(&msg, &sig2).is_ok());
            let sk2 = SecretKey::from_bytes(&sk.to_bytes()).unwrap();
            prop_assert_eq!(sk2.public_key(), pk);
        }
    }
}
