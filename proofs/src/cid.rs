//! Piece CIDs (SPEC §3.2): CIDv1, multibase base32 lower-case, codec `0x300c01` ("lode-piece"),
//! multihash `0x300c02` ("lode-tree-d-v1") with the 32-byte CommP as digest.
//!
//! Encoding and parsing are written out here (unsigned varints and RFC 4648 base32) because the format is
//! fixed and small; parsing is strict, since CIDs arrive from users and peers: every malformed string
//! gets a specific error and nothing panics.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use std::fmt;
use std::str::FromStr;

use crate::node::{NODE_SIZE, Node};

/// The CID version lode uses.
pub const CID_VERSION: u64 = 1;
/// Multicodec of a lode piece (private-use range).
pub const PIECE_CODEC: u64 = 0x300c01;
/// Multihash code of a tree D root (private-use range).
pub const TREE_D_MULTIHASH: u64 = 0x300c02;

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a string is not a lode piece CID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidError {
    /// The string is empty.
    #[error("empty piece CID")]
    Empty,
    /// The multibase prefix is not `b` (base32 lower-case).
    #[error("piece CIDs are base32 lower-case and start with 'b'; this one starts with {0:?}")]
    UnsupportedMultibase(char),
    /// A character outside the base32 alphabet.
    #[error("invalid base32 character {character:?} at position {position}")]
    InvalidCharacter {
        /// The character.
        character: char,
        /// Its position in the string (0 is the multibase prefix).
        position: usize,
    },
    /// The base32 text has trailing bits that do not decode to whole bytes.
    #[error("base32 text has a non-canonical ending")]
    NonCanonicalBase32,
    /// A varint is cut off or longer than 9 bytes.
    #[error("malformed varint in the CID bytes")]
    BadVarint,
    /// Not a CIDv1.
    #[error("unsupported CID version {0}; lode piece CIDs are version 1")]
    UnsupportedVersion(u64),
    /// The content codec is not lode's piece codec.
    #[error("not a lode piece CID: codec 0x{0:x}, expected 0x300c01")]
    WrongCodec(u64),
    /// The multihash is not a tree D root.
    #[error("not a lode piece CID: multihash 0x{0:x}, expected 0x300c02 (lode-tree-d-v1)")]
    WrongMultihash(u64),
    /// The digest length is not 32.
    #[error("digest length {0}, expected 32")]
    WrongDigestLength(u64),
    /// Bytes are missing or left over after the digest.
    #[error("the CID has {0} bytes where the digest should end")]
    WrongLength(usize),
    /// The digest is not a tree D node (its two top bits are set).
    #[error("the digest is not a valid tree D root: its two top bits are set")]
    NotANode,
}

/// A lode piece CID: a CommP with its codec. The padded size travels beside it, not inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PieceCid {
    comm_p: Node,
}

impl PieceCid {
    /// The CID of a piece commitment. `None` if the node is not a `trunc254` output (never a CommP).
    pub fn new(comm_p: Node) -> Option<Self> {
        comm_p.is_trunc254().then_some(PieceCid { comm_p })
    }

    /// The piece commitment.
    pub fn comm_p(&self) -> Node {
        self.comm_p
    }

    /// The binary CID: `varint(1) || varint(codec) || varint(mh code) || varint(32) || digest`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 + NODE_SIZE);
        for v in [CID_VERSION, PIECE_CODEC, TREE_D_MULTIHASH, NODE_SIZE as u64] {
            put_varint(&mut out, v);
        }
        out.extend_from_slice(&self.comm_p.0);
        out
    }

    /// Parses the binary CID.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CidError> {
        let mut rest = bytes;
        let version = take_varint(&mut rest)?;
        if version != CID_VERSION {
            return Err(CidError::UnsupportedVersion(version));
        }
        let codec = take_varint(&mut rest)?;
        if codec != PIECE_CODEC {
            return Err(CidError::WrongCodec(codec));
        }
        let mh = take_varint(&mut rest)?;
        if mh != TREE_D_MULTIHASH {
            return Err(CidError::WrongMultihash(mh));
        }
        let len = take_varint(&mut rest)?;
        if len != NODE_SIZE as u64 {
            return Err(CidError::WrongDigestLength(len));
        }
        let digest: [u8; NODE_SIZE] = rest
            .try_into()
            .map_err(|_| CidError::WrongLength(rest.len()))?;
        PieceCid::new(Node(digest)).ok_or(CidError::NotANode)
    }
}

impl fmt::Display for PieceCid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("b")?;
        f.write_str(&base32_encode(&self.to_bytes()))
    }
}

impl FromStr for PieceCid {
    type Err = CidError;

    fn from_str(s: &str) -> Result<Self, CidError> {
        let mut chars = s.chars();
        match chars.next() {
            None => Err(CidError::Empty),
            Some('b') => PieceCid::from_bytes(&base32_decode(chars.as_str())?),
            Some(c) => Err(CidError::UnsupportedMultibase(c)),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one unsigned varint (at most 9 bytes, minimal encoding, as multiformats requires).
fn take_varint(rest: &mut &[u8]) -> Result<u64, CidError> {
    let mut v = 0u64;
    let mut tail = *rest;
    // Seven bits per byte, nine bytes at most.
    for shift in (0u32..63).step_by(7) {
        let (&b, next) = tail.split_first().ok_or(CidError::BadVarint)?;
        tail = next;
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            if b == 0 && shift > 0 {
                return Err(CidError::BadVarint);
            }
            *rest = tail;
            return Ok(v);
        }
    }
    Err(CidError::BadVarint)
}

/// Base32 characters that carry `bytes` bytes (1 to 5) of a 5-byte group, unpadded.
fn base32_chars(bytes: usize) -> usize {
    match bytes {
        1 => 2,
        2 => 4,
        3 => 5,
        4 => 7,
        _ => 8,
    }
}

/// The bytes carried by the `chars` characters of a group; `None` for a length no group ends with.
fn base32_bytes(chars: usize) -> Option<usize> {
    match chars {
        2 => Some(1),
        4 => Some(2),
        5 => Some(3),
        7 => Some(4),
        8 => Some(5),
        _ => None,
    }
}

/// Bit offsets of the eight 5-bit characters of a 40-bit group, the first character highest.
fn group_shifts() -> impl Iterator<Item = u32> {
    (0u32..40).step_by(5).rev()
}

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5).saturating_mul(8));
    for chunk in bytes.chunks(5) {
        // The group's bytes at the top of 40 bits; a short last group is zero-filled.
        let group = chunk
            .iter()
            .chain(std::iter::repeat(&0))
            .take(5)
            .fold(0u64, |g, &b| (g << 8) | u64::from(b));
        for shift in group_shifts().take(base32_chars(chunk.len())) {
            let digit = usize::from((group >> shift) as u8 & 31);
            out.push(BASE32.get(digit).map_or('a', |&c| char::from(c)));
        }
    }
    out
}

fn base32_decode(s: &str) -> Result<Vec<u8>, CidError> {
    let digits = s
        .chars()
        .zip(1usize..)
        .map(|(character, position)| {
            BASE32
                .iter()
                .position(|&a| char::from(a) == character)
                .map(|d| d as u64)
                .ok_or(CidError::InvalidCharacter {
                    character,
                    position,
                })
        })
        .collect::<Result<Vec<u64>, _>>()?;
    let mut out = Vec::with_capacity(digits.len().div_ceil(8).saturating_mul(5));
    for chunk in digits.chunks(8) {
        let bytes = base32_bytes(chunk.len()).ok_or(CidError::NonCanonicalBase32)?;
        let group = chunk
            .iter()
            .chain(std::iter::repeat(&0))
            .take(8)
            .fold(0u64, |g, &d| (g << 5) | d);
        let be = group.to_be_bytes();
        // The 40-bit group is bytes 3..8; canonical text leaves the bits after its bytes zero.
        let (data, spare) = be[3..]
            .split_at_checked(bytes)
            .ok_or(CidError::NonCanonicalBase32)?;
        if spare.iter().any(|&b| b != 0) {
            return Err(CidError::NonCanonicalBase32);
        }
        out.extend_from_slice(data);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(serde::Deserialize)]
    struct Vectors {
        pieces: Vec<PieceVector>,
        commp_payloads: Vec<PayloadVector>,
    }
    #[derive(serde::Deserialize)]
    struct PieceVector {
        comm_p: String,
        piece_cid: String,
        piece_cid_bytes: String,
    }
    #[derive(serde::Deserialize)]
    struct PayloadVector {
        comm_p: String,
        piece_cid: String,
    }

    #[test]
    fn known_answers() {
        let v: Vectors = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/vectors/tree_d.json"
        )))
        .unwrap();
        let pairs = v
            .pieces
            .iter()
            .map(|p| (&p.comm_p, &p.piece_cid))
            .chain(v.commp_payloads.iter().map(|p| (&p.comm_p, &p.piece_cid)));
        for (comm_p, text) in pairs {
            let cid = PieceCid::new(Node::from_hex(comm_p).unwrap()).unwrap();
            assert_eq!(&cid.to_string(), text);
            assert_eq!(text.parse::<PieceCid>().unwrap(), cid);
        }
        for p in &v.pieces {
            let cid: PieceCid = p.piece_cid.parse().unwrap();
            assert_eq!(hex::encode(cid.to_bytes()), p.piece_cid_bytes);
        }
    }

    #[test]
    fn malformed_strings_get_specific_errors() {
        let good = PieceCid::new(Node([7; 32])).unwrap().to_string();
        assert_eq!("".parse::<PieceCid>(), Err(CidError::Empty));
        assert_eq!(
            format!("z{}", &good[1..]).parse::<PieceCid>(),
            Err(CidError::UnsupportedMultibase('z'))
        );
        assert_eq!(
            format!("{}1{}", &good[..5], &good[6..]).parse::<PieceCid>(),
            Err(CidError::InvalidCharacter {
                character: '1',
                position: 5
            })
        );
        assert!(good[..good.len() - 3].parse::<PieceCid>().is_err());
        assert!(format!("{good}aa").parse::<PieceCid>().is_err());
        // Upper case is a different multibase.
        assert!(good.to_uppercase().parse::<PieceCid>().is_err());
        // Another codec.
        let mut bytes = PieceCid::new(Node([7; 32])).unwrap().to_bytes();
        bytes[1] ^= 0x01;
        assert!(matches!(
            PieceCid::from_bytes(&bytes),
            Err(CidError::WrongCodec(_))
        ));
        // A CIDv0-style first byte.
        assert_eq!(
            PieceCid::from_bytes(&[0x12, 0x20]),
            Err(CidError::UnsupportedVersion(0x12))
        );
        // A digest with the top bits set is not a CommP.
        let mut top = PieceCid::new(Node([7; 32])).unwrap().to_bytes();
        let last = top.len() - 1;
        top[last] = 0xFF;
        assert_eq!(PieceCid::from_bytes(&top), Err(CidError::NotANode));
        assert_eq!(PieceCid::from_bytes(&[]), Err(CidError::BadVarint));
        assert_eq!(PieceCid::new(Node([0xFF; 32])), None);
    }

    proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(base32_decode(&base32_encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn varints_round_trip(v in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut rest = &out[..];
            if out.len() <= 9 {
                prop_assert_eq!(take_varint(&mut rest).unwrap(), v);
                prop_assert!(rest.is_empty());
            } else {
                prop_assert!(take_varint(&mut rest).is_err());
            }
        }

        #[test]
        fn cids_round_trip(mut digest in any::<[u8; 32]>()) {
            digest[31] &= 0x3F;
            let cid = PieceCid::new(Node(digest)).unwrap();
            prop_assert_eq!(cid.to_string().parse::<PieceCid>().unwrap(), cid);
        }

        #[test]
        fn parsing_garbage_never_panics(s in "\\PC{0,90}") {
            let _ = s.parse::<PieceCid>();
        }
    }
}
