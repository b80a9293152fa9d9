//! Tests of UnixFS packing and unpacking: round trips, known answers, hostile DAGs.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn params(chunk_size: usize, max_links: usize) -> DagParams {
    DagParams {
        chunk_size,
        max_links,
    }
}

/// Packs `path` into memory.
fn pack(path: &Path, p: &DagParams) -> (MemoryBlocks, Packed) {
    let mut blocks = MemoryBlocks::default();
    let packed = pack_path(path, &mut blocks, p, &mut |_| {}).unwrap();
    (blocks, packed)
}

fn unpack_to(blocks: &mut MemoryBlocks, root: &Cid, out: &Path) -> MarketResult<Unpacked> {
    unpack(blocks, root, out, &UnpackLimits::default(), &mut |_| {})
}

/// Every regular file and directory under `dir`, relative path → contents (`None` for a directory).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                todo.push(p);
            } else {
                out.insert(rel, Some(fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn file_round_trip(data: &[u8], p: &DagParams) -> (Packed, MemoryBlocks) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    fs::write(&src, data).unwrap();
    let (mut blocks, packed) = pack(&src, p);
    assert_eq!(packed.bytes, data.len() as u64);
    assert_eq!(packed.root.content_size, data.len() as u64);
    let out = dir.path().join("out.bin");
    let done = unpack_to(&mut blocks, &packed.root.cid, &out).unwrap();
    assert!(!done.is_directory);
    assert_eq!(done.files, 1);
    assert_eq!(done.bytes, data.len() as u64);
    assert_eq!(fs::read(&out).unwrap(), data);
    (packed, blocks)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 7 + 3) as u8 ^ (i >> 8) as u8)
        .collect()
}

/// Decodes a dag-pb file node: (links, UnixFS data).
fn file_node_of(blocks: &MemoryBlocks, cid: &Cid) -> (Vec<PbLink>, UnixFsData) {
    let bytes = blocks.blocks.get(cid).unwrap().clone();
    let node = PbNode::from_bytes(Bytes::from(bytes)).unwrap();
    let data = UnixFsData::decode(node.data.unwrap().as_ref()).unwrap();
    (node.links, data)
}

#[test]
fn empty_file_is_the_empty_raw_block() {
    let (packed, blocks) = file_round_trip(b"", &DagParams::default());
    assert_eq!(
        packed.root.cid.to_string(),
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    );
    assert_eq!(blocks.blocks.len(), 1);
}

#[test]
fn one_byte_is_one_raw_block() {
    let (packed, blocks) = file_round_trip(b"a", &DagParams::default());
    assert_eq!(
        packed.root.cid.to_string(),
        "bafkreigks6arfsq3xxfpvqrrwonchxcnu6do76auprhhfomao6c273sixm"
    );
    assert_eq!(packed.root.cid.codec(), RAW_CODEC);
    assert_eq!(blocks.blocks.len(), 1);
}

#[test]
fn exact_chunk_multiples() {
    let p = params(1024, 4);
    // One chunk exactly: a raw root.
    let (packed, _) = file_round_trip(&pattern(1024), &p);
    assert_eq!(packed.root.cid.codec(), RAW_CODEC);
    // Two and four chunks exactly: one file node with 2 and 4 leaves.
    for n in [2usize, 4] {
        let (packed, blocks) = file_round_trip(&pattern(1024 * n), &p);
        let (links, data) = file_node_of(&blocks, &packed.root.cid);
        assert_eq!(links.len(), n);
        assert_eq!(data.blocksizes, vec![1024; n]);
        assert_eq!(data.filesize, Some(1024 * n as u64));
        assert!(links.iter().all(|l| l.cid.codec() == RAW_CODEC));
        assert!(links.iter().all(|l| l.name.as_deref() == Some("")));
    }
    // Chunk multiple plus one byte.
    file_round_trip(&pattern(1024 * 3 + 1), &p);
}

#[test]
fn a_file_needing_more_levels_is_balanced() {
    // 10 leaves, 3 links a node: the shape of the reference layout —
    // root → [n(3 × n(3 leaves)), n(n(leaf 10))].
    let p = params(16, 3);
    let data = pattern(16 * 9 + 5);
    let (packed, blocks) = file_round_trip(&data, &p);
    let (root_links, root_data) = file_node_of(&blocks, &packed.root.cid);
    assert_eq!(root_links.len(), 2);
    assert_eq!(root_data.blocksizes, vec![16 * 9, 5]);
    let (left, left_data) = file_node_of(&blocks, &root_links[0].cid);
    assert_eq!(left.len(), 3);
    assert_eq!(left_data.blocksizes, vec![48, 48, 48]);
    let (right, right_data) = file_node_of(&blocks, &root_links[1].cid);
    assert_eq!(right.len(), 1);
    assert_eq!(right_data.blocksizes, vec![5]);
    let (right2, _) = file_node_of(&blocks, &right[0].cid);
    assert_eq!(right2.len(), 1);
    assert_eq!(right2[0].cid.codec(), RAW_CODEC);
    // Tsize: the root's Tsize is its own bytes plus its links' Tsizes.
    let root_bytes = blocks.blocks[&packed.root.cid].len() as u64;
    let sum: u64 = root_links.iter().map(|l| l.size.unwrap()).sum();
    assert_eq!(packed.root.dag_size, root_bytes + sum);
    // Exactly 3^2 leaves: a full two-level tree.
    let (packed, blocks) = file_round_trip(&pattern(16 * 9), &p);
    let (root_links, _) = file_node_of(&blocks, &packed.root.cid);
    assert_eq!(root_links.len(), 3);
    // Deeper: 3^4 + 1 leaves with 2 links a node.
    file_round_trip(&pattern(8 * 82), &params(8, 2));
}

#[test]
fn known_answers_of_ipfs_car() {
    // Root CIDs `ipfs-car pack --no-wrap` (3.1.0: 1 MiB chunks, 1024 links, raw leaves) gives.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.bin");
    let data: Vec<u8> = (0..2_621_457usize)
        .map(|i| ((i * 7 + 3) % 251) as u8)
        .collect();
    fs::write(&file, &data).unwrap();
    let (_, packed) = pack(&file, &DagParams::default());
    assert_eq!(
        packed.root.cid.to_string(),
        "bafybeigrswfpr64bc3ys455eeegahzovzmh6yb2u5syjzzuclsjueauhqa"
    );
    // `ipfs-car pack tree`: a directory with files, a nested directory and an empty file.
    let t = dir.path().join("tree");
    fs::create_dir_all(t.join("sub/deeper")).unwrap();
    fs::write(t.join("a.txt"), b"alpha\n").unwrap();
    fs::write(t.join("B.txt"), b"").unwrap();
    let c: Vec<u8> = (0..1_048_576usize).map(|i| (i % 256) as u8).collect();
    fs::write(t.join("sub/c.bin"), c).unwrap();
    fs::write(t.join("sub/deeper/d.txt"), b"delta".repeat(1000)).unwrap();
    let (_, packed) = pack(&t, &DagParams::default());
    assert_eq!(
        packed.root.cid.to_string(),
        "bafybeiehummy3xbtnykp4wjzfjwmhgcjqcshovbmjgsrulbdwwjpeyr3wa"
    );
    assert_eq!(packed.files, 4);
    assert_eq!(packed.directories, 3);
}

#[test]
fn nested_and_empty_directories_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::create_dir_all(src.join("a/also-empty")).unwrap();
    fs::write(src.join("top.txt"), b"top").unwrap();
    fs::write(src.join("a/one"), pattern(100)).unwrap();
    fs::write(src.join("a/b/two"), pattern(1000)).unwrap();
    fs::write(src.join("a/b/c/three"), b"").unwrap();
    fs::write(src.join("Zed"), b"capital names sort first").unwrap();
    let p = params(64, 3);
    let (mut blocks, packed) = pack(&src, &p);
    assert_eq!(packed.files, 5);
    assert_eq!(packed.directories, 6);
    let out = dir.path().join("out");
    let done = unpack_to(&mut blocks, &packed.root.cid, &out).unwrap();
    assert!(done.is_directory);
    assert_eq!((done.files, done.directories), (5, 6));
    assert_eq!(tree(&out), tree(&src));
    // Links are sorted by name bytes.
    let bytes = blocks.blocks[&packed.root.cid].clone();
    let node = PbNode::from_bytes(Bytes::from(bytes)).unwrap();
    let names: Vec<_> = node.links.iter().map(|l| l.name.clone().unwrap()).collect();
    assert_eq!(names, ["Zed", "a", "empty", "top.txt"]);

    // An empty directory alone.
    let empty = dir.path().join("nothing");
    fs::create_dir(&empty).unwrap();
    let (mut blocks, packed) = pack(&empty, &p);
    let out = dir.path().join("nothing-out");
    unpack_to(&mut blocks, &packed.root.cid, &out).unwrap();
    assert!(out.is_dir());
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn symlinks_and_special_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("real"), b"x").unwrap();
    std::os::unix::fs::symlink("real", src.join("link")).unwrap();
    let err = pack_path(
        &src,
        &mut MemoryBlocks::default(),
        &DagParams::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, MarketError::Unpackable { path, why } if path.ends_with("link") && why.contains("symbolic")),
        "{err}"
    );
    // A symlink named as the input itself is followed.
    let (_, packed) = pack(&src.join("link"), &DagParams::default());
    assert_eq!(packed.root.cid, block_cid(RAW_CODEC, b"x"));
    fs::remove_file(src.join("link")).unwrap();
    let fifo = src.join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let err = pack_path(
            &src,
            &mut MemoryBlocks::default(),
            &DagParams::default(),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
    }
}

#[test]
fn bad_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    fs::write(&f, b"x").unwrap();
    for p in [
        params(0, 3),
        params(MAX_CHUNK_SIZE + 1, 3),
        params(16, 1),
        params(16, 0),
    ] {
        let err = pack_path(&f, &mut MemoryBlocks::default(), &p, &mut |_| {}).unwrap_err();
        assert!(matches!(err, MarketError::BadParams(_)), "{err}");
    }
}

/// A directory node with these (name, cid) links, put into `blocks`.
fn dir_node(blocks: &mut MemoryBlocks, entries: &[(&str, Cid)]) -> Cid {
    let links = entries
        .iter()
        .map(|(n, c)| PbLink {
            cid: *c,
            name: Some((*n).to_string()),
            size: Some(1),
        })
        .collect();
    let data = UnixFsData {
        data_type: DataType::Directory as i32,
        ..Default::default()
    };
    raw_node(blocks, links, &data)
}

fn raw_node(blocks: &mut MemoryBlocks, links: Vec<PbLink>, data: &UnixFsData) -> Cid {
    let bytes = PbNode {
        links,
        data: Some(Bytes::from(data.encode_to_vec())),
    }
    .into_bytes();
    let cid = block_cid(DAG_PB_CODEC, &bytes);
    blocks.put(&cid, &bytes).unwrap();
    cid
}

fn leaf(blocks: &mut MemoryBlocks, data: &[u8]) -> Cid {
    let cid = block_cid(RAW_CODEC, data);
    blocks.put(&cid, data).unwrap();
    cid
}

fn file_of(blocks: &mut MemoryBlocks, children: &[(Cid, u64)], filesize: Option<u64>) -> Cid {
    let links = children
        .iter()
        .map(|(c, s)| PbLink {
            cid: *c,
            name: Some(String::new()),
            size: Some(*s),
        })
        .collect();
    let data = UnixFsData {
        data_type: DataType::File as i32,
        filesize,
        blocksizes: children.iter().map(|(_, s)| *s).collect(),
        ..Default::default()
    };
    raw_node(blocks, links, &data)
}

#[test]
fn malicious_link_names_are_refused_and_nothing_is_left() {
    for name in ["..", ".", "", "a/b", "/etc", "x\0y"] {
        let dir = tempfile::tempdir().unwrap();
        let mut blocks = MemoryBlocks::default();
        let f = leaf(&mut blocks, b"pwned");
        let root = dir_node(&mut blocks, &[("ok", f), (name, f)]);
        let out = dir.path().join("out");
        let err = unpack_to(&mut blocks, &root, &out).unwrap_err();
        assert!(matches!(err, MarketError::BadDag { .. }), "{name:?}: {err}");
        assert!(!out.exists(), "{name:?}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "{name:?}");
    }
    // A bad name one level down: the partial output is removed too.
    let dir = tempfile::tempdir().unwrap();
    let mut blocks = MemoryBlocks::default();
    let f = leaf(&mut blocks, b"data");
    let inner = dir_node(&mut blocks, &[("..", f)]);
    let root = dir_node(&mut blocks, &[("a", f), ("sub", inner)]);
    let err = unpack_to(&mut blocks, &root, &dir.path().join("out")).unwrap_err();
    assert!(err.to_string().contains("leaves the directory"), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    // Duplicate names.
    let root = dir_node(&mut blocks, &[("same", f), ("same", f)]);
    let err = unpack_to(&mut blocks, &root, &dir.path().join("out")).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
}

#[test]
fn inconsistent_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut blocks = MemoryBlocks::default();
    let a = leaf(&mut blocks, b"aaaa");
    let b = leaf(&mut blocks, b"bb");
    let cases = [
        // Block sizes that do not match the leaves.
        (
            file_of(&mut blocks, &[(a, 4), (b, 3)], Some(7)),
            "parent says",
        ),
        // filesize that does not match the block sizes.
        (
            file_of(&mut blocks, &[(a, 4), (b, 2)], Some(9)),
            "add up to",
        ),
        // A zero-size link (the building block of a DAG bomb with empty leaves).
        (file_of(&mut blocks, &[(a, 4), (b, 0)], None), "zero bytes"),
    ];
    for (i, (root, why)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let err = unpack_to(&mut blocks, &root, &out).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
        assert!(!out.exists());
    }
    // Links without block sizes.
    let data = UnixFsData {
        data_type: DataType::File as i32,
        ..Default::default()
    };
    let links = vec![PbLink {
        cid: a,
        name: None,
        size: None,
    }];
    let root = raw_node(&mut blocks, links, &data);
    let err = unpack_to(&mut blocks, &root, &dir.path().join("o")).unwrap_err();
    assert!(err.to_string().contains("block sizes"), "{err}");
    // A directory inside a file, a codec that is not UnixFS.
    let d = dir_node(&mut blocks, &[]);
    let root = file_of(&mut blocks, &[(d, 4)], None);
    let err = unpack_to(&mut blocks, &root, &dir.path().join("o")).unwrap_err();
    assert!(err.to_string().contains("directory inside a file"), "{err}");
    let cbor = Cid::new_v1(0x71, block_cid(RAW_CODEC, b"x").hash().to_owned());
    blocks.blocks.insert(cbor, b"x".to_vec());
    let err = unpack_to(&mut blocks, &cbor, &dir.path().join("o")).unwrap_err();
    assert!(err.to_string().contains("not UnixFS"), "{err}");
}

#[test]
fn unsupported_node_kinds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut blocks = MemoryBlocks::default();
    for (kind, why) in [
        (DataType::Symlink, "symbolic links"),
        (DataType::HamtShard, "HAMT"),
        (DataType::Metadata, "metadata"),
    ] {
        let data = UnixFsData {
            data_type: kind as i32,
            data: Some(b"target".to_vec()),
            ..Default::default()
        };
        let root = raw_node(&mut blocks, vec![], &data);
        let err = unpack_to(&mut blocks, &root, &dir.path().join("o")).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
    let data = UnixFsData {
        data_type: 42,
        ..Default::default()
    };
    let root = raw_node(&mut blocks, vec![], &data);
    let err = unpack_to(&mut blocks, &root, &dir.path().join("o")).unwrap_err();
    assert!(err.to_string().contains("unknown UnixFS type"), "{err}");
    // A dag-pb node that is not protobuf at all.
    let junk = block_cid(DAG_PB_CODEC, &[0xFF, 0xFF, 0xFF]);
    blocks.blocks.insert(junk, vec![0xFF, 0xFF, 0xFF]);
    assert!(unpack_to(&mut blocks, &junk, &dir.path().join("o")).is_err());
}

#[test]
fn dag_bombs_hit_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut blocks = MemoryBlocks::default();
    // 8 levels of 64 links to the same child: 64^8 × 1 KiB described by nine small blocks.
    let mut node = leaf(&mut blocks, &[7u8; 1024]);
    let mut size = 1024u64;
    for _ in 0..8 {
        node = file_of(&mut blocks, &vec![(node, size); 64], None);
        size *= 64;
    }
    let limits = UnpackLimits {
        max_bytes: 1 << 20,
        ..UnpackLimits::default()
    };
    let out = dir.path().join("bomb");
    let err = unpack(&mut blocks, &node, &out, &limits, &mut |_| {}).unwrap_err();
    assert!(matches!(err, MarketError::LimitExceeded(_)), "{err}");
    assert!(!out.exists());
    // A chain deeper than the file depth limit.
    let mut node = leaf(&mut blocks, b"z");
    for _ in 0..70 {
        node = file_of(&mut blocks, &[(node, 1)], None);
    }
    let err = unpack_to(&mut blocks, &node, &dir.path().join("deep")).unwrap_err();
    assert!(err.to_string().contains("deeper than"), "{err}");
    // A directory that contains itself many times over: the entry limit stops it.
    let f = leaf(&mut blocks, b"f");
    let mut d = dir_node(&mut blocks, &[("f", f)]);
    for _ in 0..10 {
        let names: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
        let entries: Vec<(&str, Cid)> = names.iter().map(|n| (n.as_str(), d)).collect();
        d = dir_node(&mut blocks, &entries);
    }
    let limits = UnpackLimits {
        max_entries: 1000,
        ..UnpackLimits::default()
    };
    let out = dir.path().join("dirs");
    let err = unpack(&mut blocks, &d, &out, &limits, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("files and directories"), "{err}");
    assert!(!out.exists());
}

#[test]
fn corrupted_and_missing_blocks_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f");
    fs::write(&src, pattern(5000)).unwrap();
    let (blocks, packed) = pack(&src, &params(1000, 2));
    // Flip a byte of one leaf.
    let mut bad = blocks.clone();
    let victim = *bad.order.first().unwrap();
    bad.blocks.get_mut(&victim).unwrap()[10] ^= 1;
    let err = unpack_to(&mut bad, &packed.root.cid, &dir.path().join("o1")).unwrap_err();
    assert!(err.to_string().contains("do not hash"), "{err}");
    assert!(!dir.path().join("o1").exists());
    // Remove one.
    let mut missing = blocks.clone();
    missing.blocks.remove(&victim);
    let err = unpack_to(&mut missing, &packed.root.cid, &dir.path().join("o2")).unwrap_err();
    assert!(matches!(err, MarketError::MissingBlock(_)), "{err}");
    assert!(!dir.path().join("o2").exists());
}

#[test]
fn an_existing_output_is_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f");
    fs::write(&src, b"new").unwrap();
    let (mut blocks, packed) = pack(&src, &DagParams::default());
    let out = dir.path().join("existing");
    fs::write(&out, b"old").unwrap();
    let err = unpack_to(&mut blocks, &packed.root.cid, &out).unwrap_err();
    assert!(matches!(err, MarketError::OutputExists(_)), "{err}");
    assert_eq!(fs::read(&out).unwrap(), b"old");
}

#[test]
fn progress_counts_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f");
    fs::write(&src, pattern(10_000)).unwrap();
    let mut seen = Vec::new();
    let mut blocks = MemoryBlocks::default();
    pack_path(&src, &mut blocks, &params(4096, 4), &mut |d| seen.push(d)).unwrap();
    assert_eq!(seen, [4096, 8192, 10_000]);
}

/// A directory tree to generate: name → file contents or a subdirectory.
#[derive(Debug, Clone)]
enum Entry {
    File(Vec<u8>),
    Dir(BTreeMap<String, Entry>),
}

fn entry_strategy() -> impl Strategy<Value = Entry> {
    let file = proptest::collection::vec(any::<u8>(), 0..300).prop_map(Entry::File);
    file.prop_recursive(3, 24, 5, |inner| {
        proptest::collection::btree_map("[a-zA-Z0-9._ -]{1,8}", inner, 0..5).prop_map(Entry::Dir)
    })
}

fn write_entry(path: &Path, entry: &Entry) {
    match entry {
        Entry::File(data) => fs::write(path, data).unwrap(),
        Entry::Dir(children) => {
            fs::create_dir(path).unwrap();
            for (name, child) in children {
                if name == "." || name == ".." {
                    continue;
                }
                write_entry(&path.join(name), child);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn files_round_trip(
        data in proptest::collection::vec(any::<u8>(), 0..4000),
        chunk in 1usize..200,
        links in 2usize..6,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, &data).unwrap();
        let (mut blocks, packed) = pack(&src, &params(chunk, links));
        let out = dir.path().join("out");
        unpack_to(&mut blocks, &packed.root.cid, &out).unwrap();
        prop_assert_eq!(fs::read(&out).unwrap(), data);
        // Packing is deterministic.
        let (_, again) = pack(&src, &params(chunk, links));
        prop_assert_eq!(again.root, packed.root);
    }

    #[test]
    fn trees_round_trip(root in entry_strategy(), chunk in 1usize..64, links in 2usize..5) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        write_entry(&src, &root);
        let (mut blocks, packed) = pack(&src, &params(chunk, links));
        let out = dir.path().join("out");
        unpack_to(&mut blocks, &packed.root.cid, &out).unwrap();
        if src.is_dir() {
            prop_assert_eq!(tree(&out), tree(&src));
        } else {
            prop_assert_eq!(fs::read(&out).unwrap(), fs::read(&src).unwrap());
        }
    }

    #[test]
    fn hostile_blocks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let dir = tempfile::tempdir().unwrap();
        let mut blocks = MemoryBlocks::default();
        let cid = block_cid(DAG_PB_CODEC, &bytes);
        blocks.blocks.insert(cid, bytes);
        let _ = unpack_to(&mut blocks, &cid, &dir.path().join("o"));
    }
}
