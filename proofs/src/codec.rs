//! A bounded byte reader for lode's binary decoders (PoRep proofs, PoSt sector proofs, Merkle proofs).
//!
//! The encodings are simple: fixed-size little-endian integers, 32-byte nodes, and counts or byte
//! lengths as `u32le` prefixes. [`Reader`] reads them from a byte slice it never indexes out of range:
//! every read either returns what was asked for or [`CodecError::Truncated`]. A length prefix is checked
//! against the caller's upper bound *and* against the bytes that remain ([`Reader::count_of`]) before
//! anything is allocated for it, so a few hostile bytes cannot make a decoder reserve gigabytes, and
//! [`Reader::finish`] rejects trailing bytes, so each value has exactly one encoding.
//!
//! Each decoder maps [`CodecError`] into its own error enum ([`CodecError::reason`] gives the short
//! reason those enums carry).
//!
//! ```
//! use lode_proofs::codec::{CodecError, Reader};
//! let bytes = [7, 2, 0, 0, 0, 0xaa, 0xbb];
//! let mut r = Reader::new(&bytes);
//! assert_eq!(r.u8(), Ok(7));
//! let n = r.count(16)?;
//! assert_eq!(r.bytes(n), Ok(&[0xaa, 0xbb][..]));
//! r.finish()?;
//! assert_eq!(Reader::new(&[1, 0]).u32_le(), Err(CodecError::Truncated));
//! # Ok::<(), CodecError>(())
//! ```

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

use crate::node::{NODE_SIZE, Node};

/// Why bytes do not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ends before the value does.
    #[error("truncated")]
    Truncated,
    /// A count or length prefix above the decoder's bound.
    #[error("count too large")]
    CountTooLarge,
    /// Bytes left over after the value.
    #[error("trailing bytes")]
    TrailingBytes,
}

impl CodecError {
    /// The short reason, as the decoders' `Malformed` variants carry it.
    pub fn reason(self) -> &'static str {
        match self {
            CodecError::Truncated => "truncated",
            CodecError::CountTooLarge => "count too large",
            CodecError::TrailingBytes => "trailing bytes",
        }
    }
}

/// Reads values from the front of a byte slice, never past its end.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(CodecError::Truncated)?;
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(CodecError::Truncated)?;
        self.rest = tail;
        Ok(*head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        self.array::<1>().map(|[b]| b)
    }

    /// A `u32le`.
    pub fn u32_le(&mut self) -> Result<u32, CodecError> {
        self.array().map(u32::from_le_bytes)
    }

    /// A `u64le`.
    pub fn u64_le(&mut self) -> Result<u64, CodecError> {
        self.array().map(u64::from_le_bytes)
    }

    /// A 32-byte node (any bytes: whether it must be a field element is the caller's check).
    pub fn node(&mut self) -> Result<Node, CodecError> {
        self.array::<NODE_SIZE>().map(Node)
    }

    /// A `u32le` count or length prefix, at most `max` ([`CodecError::CountTooLarge`] otherwise).
    pub fn count(&mut self, max: usize) -> Result<usize, CodecError> {
        let n = usize::try_from(self.u32_le()?).map_err(|_| CodecError::CountTooLarge)?;
        if n > max {
            return Err(CodecError::CountTooLarge);
        }
        Ok(n)
    }

    /// A `u32le` count of items that take at least `min_item_len` bytes each: at most `max`
    /// ([`CodecError::CountTooLarge`]), and no more than the remaining bytes can hold
    /// ([`CodecError::Truncated`]), so the count is safe to allocate for.
    pub fn count_of(&mut self, max: usize, min_item_len: usize) -> Result<usize, CodecError> {
        let n = self.count(max)?;
        match n.checked_mul(min_item_len) {
            Some(needed) if needed <= self.rest.len() => Ok(n),
            _ => Err(CodecError::Truncated),
        }
    }

    /// A `u32le` length, at most `max`, and that many bytes.
    pub fn prefixed(&mut self, max: usize) -> Result<&'a [u8], CodecError> {
        let len = self.count(max)?;
        self.bytes(len)
    }

    /// Ends the reading: [`CodecError::TrailingBytes`] if any byte is left.
    pub fn finish(self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::merkle::{MerkleProof, TreeError};
    use crate::porep::{ChallengeProof, ColumnOpening, PorepError, PorepProof};
    use crate::post::{PostError, SectorProof};
    use proptest::prelude::*;

    #[test]
    fn reads_each_kind_and_rejects_what_is_missing() {
        let mut bytes = vec![9u8];
        bytes.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        bytes.extend_from_slice(&[5; 32]);
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(b"abc");
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(9));
        assert_eq!(r.u32_le(), Ok(0xdead_beef));
        assert_eq!(r.u64_le(), Ok(u64::MAX));
        assert_eq!(r.node(), Ok(Node([5; 32])));
        assert_eq!(r.clone().prefixed(2), Err(CodecError::CountTooLarge));
        assert_eq!(r.prefixed(3), Ok(&b"abc"[..]));
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.clone().u8(), Err(CodecError::Truncated));
        assert_eq!(r.clone().bytes(1), Err(CodecError::Truncated));
        assert_eq!(r.clone().bytes(0), Ok(&[][..]));
        r.finish().unwrap();
        assert_eq!(Reader::new(&[0]).finish(), Err(CodecError::TrailingBytes));
    }

    #[test]
    fn counts_are_bounded_before_anything_is_allocated() {
        let huge = u32::MAX.to_le_bytes();
        assert_eq!(
            Reader::new(&huge).count(1 << 20),
            Err(CodecError::CountTooLarge)
        );
        assert_eq!(
            Reader::new(&huge).count_of(usize::MAX, 32),
            Err(CodecError::Truncated)
        );
        let mut two = 2u32.to_le_bytes().to_vec();
        two.extend_from_slice(&[0; 64]);
        assert_eq!(Reader::new(&two).count_of(2, 32), Ok(2));
        assert_eq!(
            Reader::new(&two).count_of(2, 33),
            Err(CodecError::Truncated)
        );
        assert_eq!(
            Reader::new(&two).count_of(1, 1),
            Err(CodecError::CountTooLarge)
        );
        assert_eq!(
            Reader::new(&two).count_of(2, usize::MAX),
            Err(CodecError::Truncated)
        );
        assert_eq!(CodecError::Truncated.reason(), "truncated");
        assert_eq!(CodecError::CountTooLarge.to_string(), "count too large");
        assert_eq!(CodecError::TrailingBytes.reason(), "trailing bytes");
    }

    fn node() -> impl Strategy<Value = Node> {
        any::<[u8; 32]>().prop_map(Node)
    }

    fn merkle() -> impl Strategy<Value = MerkleProof> {
        let levels = proptest::collection::vec(proptest::collection::vec(node(), 0..4), 0..4);
        (any::<u64>(), node(), levels).prop_map(|(index, leaf, siblings)| MerkleProof {
            index,
            leaf,
            siblings,
        })
    }

    fn column() -> impl Strategy<Value = ColumnOpening> {
        (proptest::collection::vec(node(), 0..3), merkle())
            .prop_map(|(labels, proof)| ColumnOpening { labels, proof })
    }

    fn challenge() -> impl Strategy<Value = ChallengeProof> {
        let columns = || proptest::collection::vec(column(), 0..3);
        (merkle(), column(), columns(), columns(), merkle()).prop_map(
            |(data, column, base, exp, replica)| ChallengeProof {
                data,
                column,
                base,
                exp,
                replica,
            },
        )
    }

    fn porep_proof() -> impl Strategy<Value = PorepProof> {
        let partitions =
            proptest::collection::vec(proptest::collection::vec(challenge(), 0..3), 0..3);
        (node(), node(), partitions).prop_map(|(comm_c, comm_r_last, partitions)| PorepProof {
            comm_c,
            comm_r_last,
            partitions,
        })
    }

    fn sector_proof() -> impl Strategy<Value = SectorProof> {
        let openings = proptest::collection::vec(merkle(), 0..4);
        (any::<u64>(), node(), node(), openings).prop_map(
            |(sector_number, comm_c, comm_r_last, openings)| SectorProof {
                sector_number,
                comm_c,
                comm_r_last,
                openings,
            },
        )
    }

    /// Every strict prefix of `bytes` and `bytes` with one more byte fail to decode with the
    /// decoder's error; only `bytes` itself decodes.
    fn check_truncations_and_extensions<T, E: std::fmt::Debug>(
        bytes: &[u8],
        extra: u8,
        decode: impl Fn(&[u8]) -> Result<T, E>,
        trailing: impl Fn(&E) -> bool,
    ) -> Result<(), TestCaseError> {
        for len in 0..bytes.len() {
            prop_assert!(
                decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes decodes"
            );
        }
        let longer = [bytes, &[extra]].concat();
        match decode(&longer) {
            Ok(_) => prop_assert!(false, "an extended encoding decodes"),
            Err(e) => prop_assert!(trailing(&e), "extended encoding: {e:?}"),
        }
        Ok(())
    }

    #[test]
    fn encodings_are_pinned() {
        let p = MerkleProof {
            index: 0x0102,
            leaf: Node([0xaa; 32]),
            siblings: vec![vec![Node([1; 32])], vec![]],
        };
        let mut expected = vec![1u8, 2, 1, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&[0xaa; 32]);
        expected.extend_from_slice(&[2, 1]);
        expected.extend_from_slice(&[1; 32]);
        expected.push(0);
        assert_eq!(p.to_bytes(), expected);

        let s = SectorProof {
            sector_number: 7,
            comm_c: Node([3; 32]),
            comm_r_last: Node([4; 32]),
            openings: vec![p.clone()],
        };
        let mut expected_s = vec![1u8, 7, 0, 0, 0, 0, 0, 0, 0];
        expected_s.extend_from_slice(&[3; 32]);
        expected_s.extend_from_slice(&[4; 32]);
        expected_s.extend_from_slice(&1u32.to_le_bytes());
        expected_s.extend_from_slice(&(expected.len() as u32).to_le_bytes());
        expected_s.extend_from_slice(&expected);
        assert_eq!(s.to_bytes(), expected_s);

        let column = ColumnOpening {
            labels: vec![Node([5; 32])],
            proof: p.clone(),
        };
        let r = PorepProof {
            comm_c: Node([6; 32]),
            comm_r_last: Node([7; 32]),
            partitions: vec![vec![ChallengeProof {
                data: p.clone(),
                column: column.clone(),
                base: vec![],
                exp: vec![column.clone()],
                replica: p.clone(),
            }]],
        };
        let merkle_bytes = [&(expected.len() as u32).to_le_bytes()[..], &expected].concat();
        let column_bytes = [&1u32.to_le_bytes()[..], &[5; 32], &merkle_bytes].concat();
        let mut expected_r = vec![1u8];
        expected_r.extend_from_slice(&[6; 32]);
        expected_r.extend_from_slice(&[7; 32]);
        expected_r.extend_from_slice(&1u32.to_le_bytes());
        expected_r.extend_from_slice(&1u32.to_le_bytes());
        expected_r.extend_from_slice(&merkle_bytes);
        expected_r.extend_from_slice(&column_bytes);
        expected_r.extend_from_slice(&0u32.to_le_bytes());
        expected_r.extend_from_slice(&1u32.to_le_bytes());
        expected_r.extend_from_slice(&column_bytes);
        expected_r.extend_from_slice(&merkle_bytes);
        assert_eq!(r.to_bytes(), expected_r);
        assert_eq!(PorepProof::from_bytes(&expected_r).unwrap(), r);
        assert_eq!(SectorProof::from_bytes(&expected_s).unwrap(), s);
        assert_eq!(MerkleProof::from_bytes(&expected).unwrap(), p);
    }

    #[test]
    fn decoders_keep_their_error_reasons() {
        let reason_porep = |b: &[u8]| match PorepProof::from_bytes(b) {
            Err(PorepError::Malformed(r)) => r,
            other => panic!("{other:?}"),
        };
        let reason_post = |b: &[u8]| match SectorProof::from_bytes(b) {
            Err(PostError::Malformed(r)) => r,
            other => panic!("{other:?}"),
        };
        let reason_merkle = |b: &[u8]| match MerkleProof::from_bytes(b) {
            Err(TreeError::MalformedProof(r)) => r,
            other => panic!("{other:?}"),
        };
        for reason in [reason_porep, reason_post, reason_merkle] {
            assert_eq!(reason(&[]), "truncated");
            assert_eq!(reason(&[2]), "unknown format byte");
        }
        let mut porep = vec![1u8];
        porep.extend_from_slice(&[0; 64]);
        porep.extend_from_slice(&1025u32.to_le_bytes());
        assert_eq!(reason_porep(&porep), "count too large");
        let mut post = vec![1u8];
        post.extend_from_slice(&[0; 72]);
        post.extend_from_slice(&(u32::MAX).to_le_bytes());
        assert_eq!(reason_post(&post), "too many openings");
        // An opening that is not a Merkle proof.
        let mut post = vec![1u8];
        post.extend_from_slice(&[0; 72]);
        post.extend_from_slice(&1u32.to_le_bytes());
        post.extend_from_slice(&1u32.to_le_bytes());
        post.push(9);
        assert_eq!(reason_post(&post), "bad opening");
        // A Merkle proof whose level count promises more than there is.
        let mut merkle = vec![1u8];
        merkle.extend_from_slice(&[0; 40]);
        merkle.push(255);
        assert_eq!(reason_merkle(&merkle), "truncated");
    }

    proptest! {
        #[test]
        fn merkle_proofs_round_trip(p in merkle(), extra in any::<u8>()) {
            let bytes = p.to_bytes();
            prop_assert_eq!(MerkleProof::from_bytes(&bytes).unwrap(), p);
            check_truncations_and_extensions(&bytes, extra, MerkleProof::from_bytes, |e| {
                matches!(e, TreeError::MalformedProof("trailing bytes"))
            })?;
        }

        #[test]
        fn sector_proofs_round_trip(p in sector_proof(), extra in any::<u8>()) {
            let bytes = p.to_bytes();
            prop_assert_eq!(SectorProof::from_bytes(&bytes).unwrap(), p);
            check_truncations_and_extensions(&bytes, extra, SectorProof::from_bytes, |e| {
                matches!(e, PostError::Malformed("trailing bytes"))
            })?;
        }

        #[test]
        fn porep_proofs_round_trip(p in porep_proof(), extra in any::<u8>()) {
            let bytes = p.to_bytes();
            prop_assert_eq!(PorepProof::from_bytes(&bytes).unwrap(), p);
            check_truncations_and_extensions(&bytes, extra, PorepProof::from_bytes, |e| {
                matches!(e, PorepError::Malformed("trailing bytes"))
            })?;
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = MerkleProof::from_bytes(&bytes);
            let _ = SectorProof::from_bytes(&bytes);
            let _ = PorepProof::from_bytes(&bytes);
            // With the format byte right, the decoders get further.
            let formatted = [&[1u8][..], &bytes].concat();
            let _ = MerkleProof::from_bytes(&formatted);
            let _ = SectorProof::from_bytes(&formatted);
            let _ = PorepProof::from_bytes(&formatted);
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80),
                                        ops in proptest::collection::vec(0u8..7, 0..20)) {
            let mut r = Reader::new(&bytes);
            for op in ops {
                let before = r.remaining();
                let ok = match op {
                    0 => r.u8().is_ok(),
                    1 => r.u32_le().is_ok(),
                    2 => r.u64_le().is_ok(),
                    3 => r.node().is_ok(),
                    4 => r.count(100).is_ok(),
                    5 => r.count_of(1000, 3).is_ok(),
                    _ => r.prefixed(usize::MAX).is_ok(),
                };
                prop_assert!(r.remaining() <= before);
                if !ok && op < 4 {
                    prop_assert_eq!(r.remaining(), before, "a failed fixed-size read consumes nothing");
                }
            }
            let _ = r.finish();
        }
    }
}
