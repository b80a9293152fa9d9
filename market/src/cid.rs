//! CIDs in the market: piece CIDs as [`cid::Cid`], and the CIDs of payload blocks.
//!
//! A piece CID is defined, parsed and printed by [`lode_proofs::cid::PieceCid`] (SPEC §3.2: CIDv1,
//! base32 lower case, codec `0x300c01`, multihash `0x300c02` over the 32-byte CommP). This module only
//! converts it to and from the `cid` crate's [`Cid`], which the rest of the market (CAR files, HTTP
//! paths, deal records) uses, so that both spellings are the same string and the same bytes.
//!
//! Payload blocks are addressed the usual IPFS way: CIDv1, sha2-256, codec raw (`0x55`) for file
//! data and dag-pb (`0x70`) for UnixFS nodes.

use cid::Cid;
use lode_proofs::cid::{PIECE_CODEC, PieceCid};
use multihash_codetable::{Code, MultihashDigest};

use crate::error::{MarketError, MarketResult};

/// Multicodec of a raw block (file data).
pub const RAW_CODEC: u64 = 0x55;
/// Multicodec of a dag-pb block (a UnixFS node).
pub const DAG_PB_CODEC: u64 = 0x70;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of blake2b-256.
pub const BLAKE2B_256: u64 = 0xb220;
/// Multihash code of the identity "hash" (the data inline).
pub const IDENTITY: u64 = 0x00;

/// The `cid` crate's form of a piece CID (same bytes, same text).
pub fn piece_to_cid(piece: &PieceCid) -> Cid {
    // `PieceCid::to_bytes` is a CIDv1 with a 32-byte digest: always a valid `Cid` (64-byte capacity).
    Cid::try_from(piece.to_bytes().as_slice()).unwrap_or_default()
}

/// The piece CID in a [`Cid`]; an error naming the defect when it is not a lode piece CID.
pub fn cid_to_piece(cid: &Cid) -> MarketResult<PieceCid> {
    if cid.codec() != PIECE_CODEC {
        return Err(MarketError::WrongCid(format!(
            "{cid} is not a piece CID (codec 0x{:x}, a piece CID has 0x{PIECE_CODEC:x}); \
             give the piece CID that `lode client import` printed",
            cid.codec()
        )));
    }
    PieceCid::from_bytes(&cid.to_bytes()).map_err(|e| MarketError::BadCid {
        text: cid.to_string(),
        why: e.to_string(),
    })
}

/// Parses any CID (v0 or v1, any multibase) from text.
pub fn parse_cid(text: &str) -> MarketResult<Cid> {
    Cid::try_from(text.trim()).map_err(|e| MarketError::BadCid {
        text: text.to_string(),
        why: e.to_string(),
    })
}

/// The CIDv1 of a block with `codec`, hashed with sha2-256.
pub fn block_cid(codec: u64, data: &[u8]) -> Cid {
    Cid::new_v1(codec, Code::Sha2_256.digest(data))
}

/// Whether `data` hashes to `cid`'s multihash (sha2-256, blake2b-256 or identity); an error for a
/// hash function lode cannot check.
pub fn verify_block(cid: &Cid, data: &[u8]) -> MarketResult<bool> {
    let mh = cid.hash();
    let computed = match mh.code() {
        IDENTITY => return Ok(mh.digest() == data),
        SHA2_256 => Code::Sha2_256.digest(data),
        BLAKE2B_256 => Code::Blake2b256.digest(data),
        code => {
            return Err(MarketError::BadDag {
                cid: cid.to_string(),
                why: format!(
                    "its multihash 0x{code:x} cannot be checked (sha2-256, blake2b-256 and identity can)"
                ),
            });
        }
    };
    Ok(computed.digest() == mh.digest())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use lode_proofs::node::Node;
    use proptest::prelude::*;

    #[test]
    fn piece_cid_and_cid_are_the_same_text_and_bytes() {
        let piece = PieceCid::new(Node([9; 32])).unwrap();
        let cid = piece_to_cid(&piece);
        assert_eq!(cid.to_string(), piece.to_string());
        assert!(cid.to_string().starts_with('b'));
        assert_eq!(cid.to_bytes(), piece.to_bytes());
        assert_eq!(cid.codec(), 0x300c01);
        assert_eq!(cid.hash().code(), 0x300c02);
        assert_eq!(cid.hash().digest(), &[9; 32]);
        assert_eq!(cid_to_piece(&cid).unwrap(), piece);
        assert_eq!(parse_cid(&piece.to_string()).unwrap(), cid);
    }

    #[test]
    fn payload_cids_are_not_piece_cids() {
        let payload = block_cid(RAW_CODEC, b"hello");
        let err = cid_to_piece(&payload).unwrap_err().to_string();
        assert!(err.contains("not a piece CID"), "{err}");
        // The piece codec with a digest that is not a CommP (top bits set).
        let mh = cid::multihash::Multihash::<64>::wrap(0x300c02, &[0xFF; 32]).unwrap();
        let bad = Cid::new_v1(PIECE_CODEC, mh);
        assert!(matches!(
            cid_to_piece(&bad),
            Err(MarketError::BadCid { .. })
        ));
        // The piece codec with another multihash.
        let bad = Cid::new_v1(PIECE_CODEC, Code::Sha2_256.digest(b"x"));
        assert!(matches!(
            cid_to_piece(&bad),
            Err(MarketError::BadCid { .. })
        ));
        assert!(parse_cid("not a cid").is_err());
        assert!(parse_cid("").is_err());
    }

    #[test]
    fn known_block_cids() {
        // What every IPFS implementation gives for these raw blocks.
        assert_eq!(
            block_cid(RAW_CODEC, b"").to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(
            block_cid(RAW_CODEC, b"a").to_string(),
            "bafkreigks6arfsq3xxfpvqrrwonchxcnu6do76auprhhfomao6c273sixm"
        );
    }

    #[test]
    fn verify_block_checks_the_hash() {
        let cid = block_cid(DAG_PB_CODEC, b"node");
        assert!(verify_block(&cid, b"node").unwrap());
        assert!(!verify_block(&cid, b"nodf").unwrap());
        let b2 = Cid::new_v1(RAW_CODEC, Code::Blake2b256.digest(b"x"));
        assert!(verify_block(&b2, b"x").unwrap());
        assert!(!verify_block(&b2, b"y").unwrap());
        let id = Cid::new_v1(
            RAW_CODEC,
            cid::multihash::Multihash::<64>::wrap(IDENTITY, b"inline").unwrap(),
        );
        assert!(verify_block(&id, b"inline").unwrap());
        let other = Cid::new_v1(
            RAW_CODEC,
            cid::multihash::Multihash::<64>::wrap(0x1e, &[1; 32]).unwrap(),
        );
        assert!(verify_block(&other, b"x").is_err());
    }

    proptest! {
        #[test]
        fn piece_cids_round_trip(mut digest in any::<[u8; 32]>()) {
            digest[31] &= 0x3F;
            let piece = PieceCid::new(Node(digest)).unwrap();
            let cid = piece_to_cid(&piece);
            prop_assert_eq!(cid.to_string(), piece.to_string());
            prop_assert_eq!(cid_to_piece(&parse_cid(&piece.to_string()).unwrap()).unwrap(), piece);
        }

        #[test]
        fn parsing_garbage_never_panics(s in "\\PC{0,90}") {
            let _ = parse_cid(&s).map(|c| cid_to_piece(&c));
        }
    }
}
