//! The check of what arrived: CommP of the payload, zero-filled to the proposal's piece size
//! (SPEC §3.2), must equal the proposal's piece commitment.
//!
//! The payload is streamed through [`CommPHasher`] (constant memory), which gives the commitment
//! of the smallest piece that holds it; a larger proposed piece is that piece followed by zeros,
//! so its commitment is folded up with the zero-commitment table instead of hashing the zeros.

use std::io::Read;
use std::path::Path;

use lode_proofs::node::Node;
use lode_proofs::piece::{
    CommPHasher, PaddedPieceSize, PieceCommitment, tree_d_parent, zero_commitment,
};

use crate::error::{MarketError, MarketResult};

/// The commitment of `c`'s payload zero-filled to a piece of `to` bytes; `None` when the payload's
/// own piece is larger than `to`.
pub fn commp_in_piece(c: &PieceCommitment, to: PaddedPieceSize) -> Option<Node> {
    if c.padded_size > to {
        return None;
    }
    let mut root = c.comm_p;
    let mut height = c.padded_size.height();
    while height < to.height() {
        root = tree_d_parent(&root, &zero_commitment(height));
        height = height.checked_add(1)?;
    }
    Some(root)
}

/// CommP of the first `payload_size` bytes of `path` (which must hold exactly that many).
///
/// # Errors
/// [`MarketError::Io`] when the file cannot be read or is shorter; [`MarketError::Commp`] when
/// the payload is larger than any piece.
pub fn commp_of_file(path: &Path, payload_size: u64) -> MarketResult<PieceCommitment> {
    let file = std::fs::File::open(path).map_err(MarketError::io(path))?;
    let mut hasher = CommPHasher::new();
    let copied =
        std::io::copy(&mut file.take(payload_size), &mut hasher).map_err(MarketError::io(path))?;
    if copied != payload_size {
        return Err(MarketError::Commp(format!(
            "{} holds {copied} bytes; the payload is {payload_size}",
            path.display()
        )));
    }
    hasher
        .finish()
        .map_err(|e| MarketError::Commp(e.to_string()))
}

/// Checks that the payload in `path` (`payload_size` bytes), zero-filled to a piece of
/// `piece_size` bytes, has commitment `piece_cid`.
///
/// # Errors
/// [`MarketError::Commp`] saying what was expected and what arrived; [`MarketError::Io`].
pub fn verify_piece(
    path: &Path,
    payload_size: u64,
    piece_cid: &[u8; 32],
    piece_size: u64,
) -> MarketResult<()> {
    let piece = PaddedPieceSize::new(piece_size).map_err(|e| MarketError::Commp(e.to_string()))?;
    let c = commp_of_file(path, payload_size)?;
    let Some(got) = commp_in_piece(&c, piece) else {
        return Err(MarketError::Commp(format!(
            "the data needs a piece of {} bytes; the deal's piece is {piece_size}",
            c.padded_size
        )));
    };
    if got.0 != *piece_cid {
        return Err(MarketError::Commp(format!(
            "the data's piece commitment {} does not match the deal's {} (piece of {piece_size} bytes)",
            hex::encode(got.0),
            hex::encode(piece_cid)
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lode_proofs::piece::commp_of_bytes;

    use super::*;

    #[test]
    fn folding_zeros_equals_hashing_them() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let small = commp_of_bytes(&payload).unwrap();
        assert_eq!(small.padded_size.bytes(), 1024);
        for big in [1024u64, 2048, 8192] {
            let piece = PaddedPieceSize::new(big).unwrap();
            let mut filled = payload.clone();
            filled.resize(piece.unpadded() as usize, 0);
            let direct = commp_of_bytes(&filled).unwrap();
            assert_eq!(direct.padded_size, piece);
            assert_eq!(commp_in_piece(&small, piece), Some(direct.comm_p));
        }
        assert_eq!(
            commp_in_piece(&small, PaddedPieceSize::new(512).unwrap()),
            None
        );
    }

    #[test]
    fn verify_accepts_the_right_piece_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let payload = vec![9u8; 3000];
        std::fs::write(&path, &payload).unwrap();
        let mut filled = payload.clone();
        filled.resize(PaddedPieceSize::new(8192).unwrap().unpadded() as usize, 0);
        let want = commp_of_bytes(&filled).unwrap().comm_p.0;
        verify_piece(&path, 3000, &want, 8192).unwrap();
        assert!(matches!(
            verify_piece(&path, 3000, &want, 4096),
            Err(MarketError::Commp(_))
        ));
        assert!(matches!(
            verify_piece(&path, 2999, &want, 8192),
            Err(MarketError::Commp(_))
        ));
        assert!(verify_piece(&path, 3001, &want, 8192).is_err());
        assert!(matches!(
            verify_piece(&path, 3000, &want, 2048),
            Err(MarketError::Commp(_))
        ));
    }
}
