//! Property tests shared by both hashers: every index proves, every change to a proof fails.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;

use super::*;
use crate::node::{Node, trunc254};

fn leaves(n: u64, seed: u64) -> Vec<Node> {
    (0..n)
        .map(|i| {
            trunc254(*blake3::hash(&[i.to_le_bytes(), seed.to_le_bytes()].concat()).as_bytes())
        })
        .collect()
}

/// Builds a tree, then for every leaf checks that its proof verifies, survives the codec, and that any
/// flipped bit of the proof bytes, another index, another leaf or another root is rejected.
fn check_all<H: TreeHasher>(shape: &TreeShape, discard_rows: usize, seed: u64, flip: usize) {
    let dir = tempfile::tempdir().unwrap();
    let l = leaves(shape.leaves(), seed);
    let t = DiskTree::<H>::build(
        shape,
        &l,
        &dir.path().join("tree"),
        TreeConfig { discard_rows },
    )
    .unwrap();
    let root = t.root();
    let other_root = Node([root.0[0] ^ 1; 32]);
    for i in 0..shape.leaves() {
        let p = t.prove(i).unwrap();
        p.verify_leaf::<H>(shape, &root, i, &l[i as usize]).unwrap();
        let bytes = p.to_bytes();
        assert_eq!(MerkleProof::from_bytes(&bytes).unwrap(), p);

        // One flipped bit anywhere in the encoding.
        let bit = (flip.wrapping_mul(7919).wrapping_add(i as usize * 31)) % (bytes.len() * 8);
        let mut bad = bytes.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        if let Ok(q) = MerkleProof::from_bytes(&bad) {
            assert!(
                q.verify::<H>(shape, &root).is_err(),
                "flipped bit {bit} of proof {i} still verifies"
            );
        }
        // Truncated or extended encodings are refused.
        assert!(MerkleProof::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(MerkleProof::from_bytes(&[&bytes[..], &[0]].concat()).is_err());

        assert!(p.verify::<H>(shape, &other_root).is_err());
        let mut moved = p.clone();
        moved.index = (i + 1) % shape.leaves();
        if shape.leaves() > 1 {
            assert!(moved.verify::<H>(shape, &root).is_err());
        }
        let mut other_leaf = p.clone();
        other_leaf.leaf = l[((i + 1) % shape.leaves()) as usize];
        if shape.leaves() > 1 {
            assert!(other_leaf.verify::<H>(shape, &root).is_err());
        }
        assert!(p.verify_leaf::<H>(shape, &root, i, &other_root).is_err());
    }
    // A proof from a tree over other leaves of the same shape fails here.
    let l2 = leaves(shape.leaves(), seed + 1);
    let t2 =
        DiskTree::<H>::build(shape, &l2, &dir.path().join("other"), TreeConfig::default()).unwrap();
    assert!(t2.prove(0).unwrap().verify::<H>(shape, &root).is_err());
    assert!(t.prove(shape.leaves()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn binary_blake3_trees(k in 0u32..8, discard in 0usize..4, seed in any::<u64>(), flip in any::<usize>()) {
        check_all::<Blake3TreeD>(&TreeShape::binary(1 << k).unwrap(), discard, seed, flip);
    }

    #[test]
    fn octal_poseidon_trees(k in 1u32..8, discard in 0usize..3, seed in any::<u64>(), flip in any::<usize>()) {
        // 8, 16, 32, 64, 128, 256, 512 leaves: pure arity 8 and arity 8 with a top of 2 or 4.
        check_all::<PoseidonTree>(&TreeShape::octal(1 << (k + 2)).unwrap(), discard, seed, flip);
    }
}

#[test]
fn poseidon_tree_levels_are_poseidon_of_children() {
    let l = leaves(64, 9);
    let shape = TreeShape::octal(64).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t =
        DiskTree::<PoseidonTree>::build(&shape, &l, &dir.path().join("r"), TreeConfig::default())
            .unwrap();
    let frs: Vec<_> = l.iter().map(|n| n.to_fr().unwrap()).collect();
    let level1: Vec<_> = frs
        .chunks(8)
        .map(|c| crate::poseidon::hash(c).unwrap())
        .collect();
    let root = crate::poseidon::hash(&level1).unwrap();
    assert_eq!(t.root(), Node::from_fr(&root));
    t.check().unwrap();
}

#[test]
fn non_canonical_leaves_are_an_error_not_a_panic() {
    let mut l = leaves(8, 1);
    l[3] = Node([0xFF; 32]);
    let dir = tempfile::tempdir().unwrap();
    let r = DiskTree::<PoseidonTree>::build(
        &TreeShape::octal(8).unwrap(),
        &l,
        &dir.path().join("r"),
        TreeConfig::default(),
    );
    assert!(matches!(r, Err(TreeError::NonCanonicalNode)));
    // Poseidon also hashes binary trees.
    DiskTree::<PoseidonTree>::build(
        &TreeShape::binary(8).unwrap(),
        &leaves(8, 1),
        &dir.path().join("b"),
        TreeConfig::default(),
    )
    .unwrap();
    // BLAKE3 trees are binary only.
    assert!(matches!(
        DiskTree::<Blake3TreeD>::build(
            &TreeShape::octal(8).unwrap(),
            &leaves(8, 1),
            &dir.path().join("o"),
            TreeConfig::default()
        ),
        Err(TreeError::UnsupportedArity { .. })
    ));
}

#[test]
fn a_tree_is_not_opened_with_another_hasher() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d");
    DiskTree::<Blake3TreeD>::build(
        &TreeShape::binary(8).unwrap(),
        &leaves(8, 1),
        &path,
        TreeConfig::default(),
    )
    .unwrap();
    assert!(matches!(
        DiskTree::<PoseidonTree>::open(&path, None),
        Err(TreeError::WrongHasher { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A tree file is input from disk: any header, even one with a valid checksum, gives an error or a
    /// usable tree, never a panic.
    #[test]
    fn crafted_headers_never_panic(edits in proptest::collection::vec((0usize..224, any::<u8>()), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        DiskTree::<Blake3TreeD>::build(&TreeShape::binary(16).unwrap(), &leaves(16, 4), &path, TreeConfig { discard_rows: 1 }).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, v) in edits {
            bytes[at] = v;
        }
        let sum = blake3::hash(&bytes[..224]);
        bytes[224..256].copy_from_slice(sum.as_bytes());
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(t) = DiskTree::<Blake3TreeD>::open(&path, None) {
            for i in 0..t.shape().leaves().min(20) {
                let _ = t.prove(i);
            }
            let _ = t.check();
        }
    }
}

/// A tree over a file built through a level hasher is the same file when the hasher hashes as
/// the tree does (for every discarded-row count), and another file when it does not.
#[test]
fn trees_built_through_a_level_hasher_are_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let shape = TreeShape::new(512, vec![8, 8, 8]).unwrap();
    let l = leaves(shape.leaves(), 5);
    let leaf_file = dir.path().join("leaves");
    std::fs::write(&leaf_file, crate::node::nodes_as_bytes(&l)).unwrap();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let counted: &LevelHasher<'_> = &|a, c, p| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        PoseidonTree::hash_level(a, c, p)
    };
    for discard_rows in 0..=2 {
        let config = TreeConfig { discard_rows };
        let plain = dir.path().join(format!("plain-{discard_rows}"));
        let with = dir.path().join(format!("with-{discard_rows}"));
        DiskTree::<PoseidonTree>::build_over_file(&shape, &leaf_file, &plain, config).unwrap();
        calls.store(0, std::sync::atomic::Ordering::Relaxed);
        DiskTree::<PoseidonTree>::build_over_file_with(
            &shape,
            &leaf_file,
            &with,
            config,
            Some(counted),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(&plain).unwrap(),
            std::fs::read(&with).unwrap()
        );
        // Every level went through it.
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 3);
    }
    let wrong: &LevelHasher<'_> = &|a, c, p| {
        PoseidonTree::hash_level(a, c, p)?;
        p[0] = Node::ZERO;
        Ok(())
    };
    let bad = DiskTree::<PoseidonTree>::build_over_file_with(
        &shape,
        &leaf_file,
        &dir.path().join("bad"),
        TreeConfig::default(),
        Some(wrong),
    )
    .unwrap();
    let good =
        DiskTree::<PoseidonTree>::open(&dir.path().join("plain-0"), Some(&leaf_file)).unwrap();
    assert_ne!(bad.root(), good.root());
}
