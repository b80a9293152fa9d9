//! Tests of the block index: every block of a packed CAR located, roots, idempotence, removal,
//! and payloads that are not CARs or are damaged ones (no index, no panic).

use std::fs::{self, File};
use std::path::PathBuf;

use lode_proofs::node::trunc254;
use proptest::prelude::*;

use super::*;
use crate::car::{CarFileWriter, index_car};
use crate::cid::verify_block;
use crate::unixfs::{DagParams, pack_path};

fn piece(tag: u8) -> PieceCid {
    PieceCid::new(trunc254([tag; 32])).unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A small directory packed into a CAR at `dir/p.car` (1000-byte chunks, 3 links per node);
/// its root.
fn packed_car(dir: &Path) -> (PathBuf, Cid) {
    let src = dir.join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("a.bin"), pattern(7000)).unwrap();
    fs::write(src.join("d/b.txt"), b"hello").unwrap();
    // The same bytes twice: the same blocks twice in the DAG, once in the CAR.
    fs::write(src.join("d/c.bin"), pattern(7000)).unwrap();
    let car = dir.join("p.car");
    let file = File::create(&car).unwrap();
    let mut w = CarFileWriter::new(file, &car).unwrap();
    let params = DagParams {
        chunk_size: 1000,
        max_links: 3,
    };
    let packed = pack_path(&src, &mut w, &params, &mut |_| {}).unwrap();
    w.finish(&packed.root.cid).unwrap();
    (car, packed.root.cid)
}

#[test]
fn every_block_of_a_car_payload_is_located_in_its_piece() {
    let dir = tempfile::tempdir().unwrap();
    let (car, root) = packed_car(dir.path());
    let index = BlockIndex::open(dir.path().join("db")).unwrap();
    let p = piece(1);
    assert_eq!(index.indexed(&p).unwrap(), None);
    let done = index.index_payload(&p, &car).unwrap().unwrap();
    assert_eq!(done.roots, vec![root.to_string()]);
    assert_eq!(done.car_version, 1);
    assert_eq!(done.payload_size, fs::metadata(&car).unwrap().len());
    let bytes = fs::read(&car).unwrap();
    let blocks = index_car(&car).unwrap().blocks;
    assert_eq!(done.blocks, blocks.len() as u64);
    // A CID written twice (the twin files) is located at its last occurrence.
    let mut last = std::collections::HashMap::new();
    for b in &blocks {
        last.insert(b.cid, *b);
    }
    assert!(last.len() < blocks.len(), "the CAR holds some block twice");
    for b in last.values() {
        let found = index.locate(&b.cid).unwrap();
        assert_eq!(
            found,
            vec![BlockLocation {
                piece: p,
                offset: b.offset,
                length: b.length
            }]
        );
        let data = &bytes[b.offset as usize..(b.offset + b.length) as usize];
        assert!(verify_block(&b.cid, data).unwrap());
    }
    assert_eq!(index.pieces_with_root(&root).unwrap(), vec![p]);
    assert!(
        index
            .locate(&crate::cid::block_cid(crate::cid::RAW_CODEC, b"not there"))
            .unwrap()
            .is_empty()
    );

    // Indexing again changes nothing (and does not read the payload: it may be gone).
    fs::remove_file(&car).unwrap();
    assert_eq!(index.index_payload(&p, &car).unwrap(), Some(done.clone()));

    // Reopened: the index is on disk.
    drop(index);
    let index = BlockIndex::open(dir.path().join("db")).unwrap();
    assert_eq!(index.indexed(&p).unwrap(), Some(done));
    assert_eq!(index.locate(&root).unwrap().len(), 1);

    // Removed: no location, no root.
    assert_eq!(index.remove_piece(&p).unwrap(), last.len() as u64);
    assert!(index.locate(&root).unwrap().is_empty());
    assert!(index.pieces_with_root(&root).unwrap().is_empty());
    assert_eq!(index.indexed(&p).unwrap(), None);
}

#[test]
fn a_block_in_two_pieces_has_two_locations_and_a_half_index_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let (car, root) = packed_car(dir.path());
    let index = BlockIndex::open(dir.path().join("db")).unwrap();
    index.index_payload(&piece(1), &car).unwrap().unwrap();
    index.index_payload(&piece(2), &car).unwrap().unwrap();
    let mut pieces: Vec<PieceCid> = index
        .locate(&root)
        .unwrap()
        .iter()
        .map(|l| l.piece)
        .collect();
    pieces.sort_by_key(|p| p.to_bytes());
    let mut want = vec![piece(1), piece(2)];
    want.sort_by_key(|p| p.to_bytes());
    assert_eq!(pieces, want);

    // A crash after the locations and before the summary: the piece is not answered.
    index
        .records
        .transaction(|tx| -> Result<(), Abort<KvError>> {
            tx.remove(MarketTree::BlockPieces, &piece(2).to_bytes())?;
            Ok(())
        })
        .unwrap();
    assert_eq!(index.locate(&root).unwrap().len(), 1);
    assert_eq!(index.pieces_with_root(&root).unwrap(), vec![piece(1)]);
    // ...until it is indexed again.
    index.index_payload(&piece(2), &car).unwrap().unwrap();
    assert_eq!(index.locate(&root).unwrap().len(), 2);
}

#[test]
fn payloads_that_are_not_valid_cars_get_no_index() {
    let dir = tempfile::tempdir().unwrap();
    let (car, root) = packed_car(dir.path());
    let good = fs::read(&car).unwrap();
    let index = BlockIndex::open(dir.path().join("db")).unwrap();

    // Not a CAR at all.
    let plain = dir.path().join("plain");
    fs::write(&plain, pattern(10_000)).unwrap();
    assert_eq!(index.index_payload(&piece(1), &plain).unwrap(), None);
    // Truncated inside a block.
    let cut = dir.path().join("cut");
    fs::write(&cut, &good[..good.len() - 10]).unwrap();
    assert_eq!(index.index_payload(&piece(2), &cut).unwrap(), None);
    // A block that does not hash to its CID.
    let bad = dir.path().join("bad");
    let mut flipped = good.clone();
    let first = &index_car(&car).unwrap().blocks[0];
    flipped[first.offset as usize] ^= 1;
    fs::write(&bad, &flipped).unwrap();
    assert_eq!(index.index_payload(&piece(3), &bad).unwrap(), None);
    for tag in 1..=3 {
        assert_eq!(index.indexed(&piece(tag)).unwrap(), None);
    }
    assert!(index.locate(&root).unwrap().is_empty());
    // A missing payload is an error (the caller retries), not "no index".
    assert!(matches!(
        index.index_payload(&piece(4), &dir.path().join("missing")),
        Err(MarketError::Io { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Damaged CARs (bytes changed, cut, or garbage after a valid header) never panic; when one
    /// is indexed anyway (the damage left it valid), every location it answers holds its block.
    #[test]
    fn damaged_cars_never_panic_and_never_index_wrong_bytes(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (car, _) = packed_car(dir.path());
        let mut bytes = fs::read(&car).unwrap();
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let damaged = dir.path().join("damaged");
        fs::write(&damaged, &bytes).unwrap();
        let index = BlockIndex::open(dir.path().join("db")).unwrap();
        let p = piece(9);
        if index.index_payload(&p, &damaged).unwrap().is_some() {
            for b in index_car(&damaged).unwrap().blocks {
                for l in index.locate(&b.cid).unwrap() {
                    let data = &bytes[l.offset as usize..(l.offset + l.length) as usize];
                    prop_assert!(verify_block(&b.cid, data).unwrap());
                }
            }
        } else {
            prop_assert_eq!(index.indexed(&p).unwrap(), None);
        }
    }
}
