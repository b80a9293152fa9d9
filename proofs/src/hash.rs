//! Domain-separated BLAKE3 (SPEC §2.1), one-off and batched across SIMD lanes.
//!
//! `K(tag) = blake3::derive_key("lode v1 " + tag, b"")` and `H(tag, m) = trunc254(keyed_hash(K(tag), m))`.
//! The keys are derived once per process. Tree levels and labels hash many independent messages of the
//! same length; [`hash_many`] feeds them to BLAKE3's multi-lane compression (up to 16 messages per
//! instruction stream with AVX-512), which is several times faster than hashing them one by one.

use std::sync::OnceLock;

use crate::node::{NODE_SIZE, Node, trunc254};

/// The domain tags of the protocol (SPEC §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tag {
    /// Nodes of the data tree (tree D).
    TreeD,
    /// SDR labels.
    Label,
    /// The replica id.
    ReplicaId,
    /// Base-graph parent sampling.
    Drg,
    /// Expander-graph Feistel keys.
    Feistel,
    /// PoRep challenges.
    PorepChallenge,
    /// PoSt leaf challenges.
    PostChallenge,
    /// Winning PoSt sector selection.
    PostSector,
}

impl Tag {
    /// Every tag, in SPEC order.
    pub const ALL: [Tag; 8] = [
        Tag::TreeD,
        Tag::Label,
        Tag::ReplicaId,
        Tag::Drg,
        Tag::Feistel,
        Tag::PorepChallenge,
        Tag::PostChallenge,
        Tag::PostSector,
    ];

    /// The tag string as written in the SPEC.
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::TreeD => "tree-d",
            Tag::Label => "label",
            Tag::ReplicaId => "replica-id",
            Tag::Drg => "drg",
            Tag::Feistel => "feistel",
            Tag::PorepChallenge => "porep-challenge",
            Tag::PostChallenge => "post-challenge",
            Tag::PostSector => "post-sector",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

struct Keys {
    bytes: [[u8; 32]; 8],
    words: [[u32; 8]; 8],
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut bytes = [[0u8; 32]; 8];
        let mut words = [[0u32; 8]; 8];
        for tag in Tag::ALL {
            let key = blake3::derive_key(&format!("lode v1 {}", tag.as_str()), b"");
            words[tag.index()] = blake3::platform::words_from_le_bytes_32(&key);
            bytes[tag.index()] = key;
        }
        Keys { bytes, words }
    })
}

fn platform() -> blake3::platform::Platform {
    static PLATFORM: OnceLock<blake3::platform::Platform> = OnceLock::new();
    *PLATFORM.get_or_init(blake3::platform::Platform::detect)
}

/// `K(tag)`: the 32-byte BLAKE3 key of a domain.
pub fn key(tag: Tag) -> &'static [u8; 32] {
    &keys().bytes[tag.index()]
}

/// `H(tag, m) = trunc254(blake3::keyed_hash(K(tag), m))`.
pub fn hash(tag: Tag, message: &[u8]) -> Node {
    trunc254(*blake3::keyed_hash(key(tag), message).as_bytes())
}

/// A keyed BLAKE3 hasher for `tag`, for messages assembled piece by piece; finish with [`finish`].
pub fn hasher(tag: Tag) -> blake3::Hasher {
    blake3::Hasher::new_keyed(key(tag))
}

/// Completes a [`hasher`]: `trunc254` of its 32-byte output.
pub fn finish(hasher: &blake3::Hasher) -> Node {
    trunc254(*hasher.finalize().as_bytes())
}

// BLAKE3 flag bits (the BLAKE3 specification, §2.1); `hash_many` takes them raw.
const CHUNK_START: u8 = 1;
const CHUNK_END: u8 = 1 << 1;
const ROOT: u8 = 1 << 3;
const KEYED_HASH: u8 = 1 << 4;
const CHUNK_LEN: usize = 1024;
const BLOCK_LEN: usize = 64;

/// How many message references are handed to BLAKE3 per call; a multiple of every SIMD degree.
const BATCH: usize = 64;

/// `out[i] = H(tag, inputs[i])` for many messages of one length `N` (a multiple of 64, at most 1024: one
/// BLAKE3 chunk), hashed across SIMD lanes.
///
/// # Panics
/// If `out.len() != inputs.len()` or `N` is not a multiple of 64 in `64..=1024` (caller bugs, not input).
pub fn hash_many<const N: usize>(tag: Tag, inputs: &[&[u8; N]], out: &mut [Node]) {
    assert!(
        N.is_multiple_of(BLOCK_LEN) && N > 0 && N <= CHUNK_LEN,
        "hash_many: unsupported length {N}"
    );
    assert_eq!(inputs.len(), out.len(), "hash_many: output length");
    let key = &keys().words[tag.index()];
    let platform = platform();
    for (ins, outs) in inputs.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
        let mut buf = [0u8; BATCH * NODE_SIZE];
        let buf = &mut buf[..ins.len() * NODE_SIZE];
        platform.hash_many(
            ins,
            key,
            0,
            blake3::IncrementCounter::No,
            KEYED_HASH,
            CHUNK_START,
            CHUNK_END | ROOT,
            buf,
        );
        for (o, b) in outs.iter_mut().zip(buf.chunks_exact(NODE_SIZE)) {
            let mut bytes = [0u8; NODE_SIZE];
            bytes.copy_from_slice(b);
            *o = trunc254(bytes);
        }
    }
}

/// `H(tag, m)` for a message of exactly one BLAKE3 chunk's worth of whole blocks (`N` a multiple of 64,
/// at most 1024), compressing block by block with the platform's fastest single-lane code. This is
/// the labeller's inner loop: it skips the general hasher's buffering.
///
/// # Panics
/// If `N` is not a multiple of 64 in `64..=1024` (a caller bug).
pub fn hash_blocks<const N: usize>(tag: Tag, message: &[u8; N]) -> Node {
    assert!(
        N.is_multiple_of(BLOCK_LEN) && N > 0 && N <= CHUNK_LEN,
        "hash_blocks: unsupported length {N}"
    );
    let mut cv = keys().words[tag.index()];
    compress_to_end(&mut cv, message, true);
    trunc254(blake3::platform::le_bytes_from_words_32(&cv))
}

/// Compresses the whole blocks of `bytes` into `cv` with the platform's single-lane code, the
/// first flagged as the chunk's start when `start`, the last as the chunk's end and the root.
fn compress_to_end(cv: &mut [u32; 8], bytes: &[u8], start: bool) {
    let platform = platform();
    let blocks = bytes.len() / BLOCK_LEN;
    for (i, block) in bytes.chunks_exact(BLOCK_LEN).enumerate() {
        let mut flags = KEYED_HASH;
        if i == 0 && start {
            flags |= CHUNK_START;
        }
        if i + 1 == blocks {
            flags |= CHUNK_END | ROOT;
        }
        let Ok(block) = <&[u8; BLOCK_LEN]>::try_from(block) else {
            unreachable!("chunks_exact yields whole blocks")
        };
        platform.compress_in_place(cv, block, BLOCK_LEN as u8, 0, flags);
    }
}

/// The chaining value after the first 64-byte block of a one-chunk keyed hash under `tag`: with
/// [`finish_blocks`], `hash_blocks(tag, first || rest)` in two steps, so the first block (a
/// label's header, which depends on no parent) can be compressed ahead, elsewhere.
pub fn first_block_cv(tag: Tag, first: &[u8; BLOCK_LEN]) -> [u32; 8] {
    let mut cv = keys().words[tag.index()];
    platform().compress_in_place(&mut cv, first, BLOCK_LEN as u8, 0, KEYED_HASH | CHUNK_START);
    cv
}

/// Finishes a one-chunk keyed hash from the chaining value after its first block
/// ([`first_block_cv`]) with the `N` bytes after it (`N` a multiple of 64, at most 960): the same
/// node as [`hash_blocks`] of the whole message.
///
/// # Panics
/// If `N` is not a multiple of 64 in `64..=960` (a caller bug).
pub fn finish_blocks<const N: usize>(mut cv: [u32; 8], rest: &[u8; N]) -> Node {
    assert!(
        N.is_multiple_of(BLOCK_LEN) && N > 0 && N < CHUNK_LEN,
        "finish_blocks: unsupported length {N}"
    );
    compress_to_end(&mut cv, rest, false);
    trunc254(blake3::platform::le_bytes_from_words_32(&cv))
}

/// Hashes consecutive pairs of nodes: `parents[i] = H(tag, children[2i] || children[2i+1])`.
///
/// # Panics
/// If `children.len() != 2 * parents.len()` (a caller bug).
pub fn hash_pairs(tag: Tag, children: &[Node], parents: &mut [Node]) {
    assert_eq!(children.len(), 2 * parents.len(), "hash_pairs: level sizes");
    for (kids, outs) in children.chunks(2 * BATCH).zip(parents.chunks_mut(BATCH)) {
        let mut refs: [&[u8; 2 * NODE_SIZE]; BATCH] = [&[0; 2 * NODE_SIZE]; BATCH];
        for (r, pair) in refs.iter_mut().zip(kids.chunks_exact(2)) {
            *r = pair_bytes(pair);
        }
        hash_many(tag, &refs[..outs.len()], outs);
    }
}

fn pair_bytes(pair: &[Node]) -> &[u8; 2 * NODE_SIZE] {
    let bytes = crate::node::nodes_as_bytes(pair);
    match bytes.try_into() {
        Ok(array) => array,
        Err(_) => unreachable!("chunks_exact(2) yields two nodes"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batched_hashing_equals_one_by_one() {
        let children: Vec<Node> = (0..(2 * 200 + 6))
            .map(|i| trunc254(*blake3::hash(&[i as u8, (i >> 8) as u8]).as_bytes()))
            .collect();
        for pairs in [0usize, 1, 15, 16, 17, 64, 65, 203] {
            let mut out = vec![Node::ZERO; pairs];
            hash_pairs(Tag::TreeD, &children[..2 * pairs], &mut out);
            for (i, o) in out.iter().enumerate() {
                let mut m = Vec::new();
                m.extend_from_slice(&children[2 * i].0);
                m.extend_from_slice(&children[2 * i + 1].0);
                assert_eq!(*o, hash(Tag::TreeD, &m), "pair {i} of {pairs}");
            }
        }
    }

    #[test]
    fn batched_long_messages_equal_one_by_one() {
        let msgs: Vec<[u8; 512]> = (0..37u32)
            .map(|i| {
                let mut m = [0u8; 512];
                for (j, b) in m.iter_mut().enumerate() {
                    *b = (i as usize * 31 + j * 7) as u8;
                }
                m
            })
            .collect();
        let refs: Vec<&[u8; 512]> = msgs.iter().collect();
        let mut out = vec![Node::ZERO; refs.len()];
        hash_many(Tag::Label, &refs, &mut out);
        for (m, o) in msgs.iter().zip(&out) {
            assert_eq!(*o, hash(Tag::Label, m));
        }
    }

    #[derive(serde::Deserialize)]
    struct Vectors {
        tags: Vec<TagVector>,
    }
    #[derive(serde::Deserialize)]
    struct TagVector {
        tag: String,
        context: String,
        key: String,
        hashes: Vec<HashVector>,
    }
    #[derive(serde::Deserialize)]
    struct HashVector {
        message_hex: String,
        h: String,
    }

    #[test]
    fn known_answers_for_every_tag() {
        let v: Vectors = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/vectors/blake3_domains.json"
        )))
        .unwrap();
        assert_eq!(v.tags.len(), Tag::ALL.len());
        for (tag, tv) in Tag::ALL.iter().zip(&v.tags) {
            assert_eq!(tag.as_str(), tv.tag);
            assert_eq!(tv.context, format!("lode v1 {}", tag.as_str()));
            assert_eq!(hex::encode(key(*tag)), tv.key);
            assert!(!tv.hashes.is_empty());
            for h in &tv.hashes {
                let m = hex::decode(&h.message_hex).unwrap();
                assert_eq!(hash(*tag, &m).to_hex(), h.h, "tag {}", tv.tag);
            }
        }
    }

    #[test]
    fn block_hashing_equals_keyed_hash() {
        let mut m = [0u8; 512];
        for (i, b) in m.iter_mut().enumerate() {
            *b = (i * 11 + 1) as u8;
        }
        assert_eq!(hash_blocks(Tag::Label, &m), hash(Tag::Label, &m));
        let small: [u8; 64] = core::array::from_fn(|i| i as u8);
        assert_eq!(hash_blocks(Tag::TreeD, &small), hash(Tag::TreeD, &small));
        let full = [7u8; 1024];
        assert_eq!(hash_blocks(Tag::Drg, &full), hash(Tag::Drg, &full));
        // In two steps: the first block's chaining value, then the rest.
        let (first, rest) = m.split_at(64);
        let cv = first_block_cv(Tag::Label, first.try_into().unwrap());
        let rest: &[u8; 448] = rest.try_into().unwrap();
        assert_eq!(finish_blocks(cv, rest), hash(Tag::Label, &m));
        let two: [u8; 128] = core::array::from_fn(|i| (i * 3) as u8);
        let cv = first_block_cv(Tag::TreeD, two[..64].try_into().unwrap());
        let tail: &[u8; 64] = two[64..].try_into().unwrap();
        assert_eq!(finish_blocks(cv, tail), hash(Tag::TreeD, &two));
    }

    #[test]
    fn incremental_hasher_matches_one_shot() {
        let mut h = hasher(Tag::Drg);
        h.update(b"abc");
        h.update(b"def");
        assert_eq!(finish(&h), hash(Tag::Drg, b"abcdef"));
    }
}
