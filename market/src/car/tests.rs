//! Tests of CAR writing, reading, indexing and unpacking, with damaged and hostile CARs.

#![allow(clippy::unwrap_used)]

use std::fs;

use proptest::prelude::*;

use super::*;
use crate::cid::RAW_CODEC;
use crate::unixfs::{DagParams, MemoryBlocks, pack_path};

fn params(chunk_size: usize, max_links: usize) -> DagParams {
    DagParams {
        chunk_size,
        max_links,
    }
}

/// Packs `src` into a CAR file at `car`; the root.
fn pack_car(src: &Path, car: &Path, p: &DagParams) -> Cid {
    let file = File::create(car).unwrap();
    let mut w = CarFileWriter::new(file, car).unwrap();
    let packed = pack_path(src, &mut w, p, &mut |_| {}).unwrap();
    let (file, len) = w.finish(&packed.root.cid).unwrap();
    file.sync_all().unwrap();
    assert_eq!(fs::metadata(car).unwrap().len(), len);
    packed.root.cid
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8).collect()
}

fn sample_dir(root: &Path) -> PathBuf {
    let src = root.join("src");
    fs::create_dir_all(src.join("d/e")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("x.bin"), pattern(5000)).unwrap();
    fs::write(src.join("d/y.txt"), b"why").unwrap();
    fs::write(src.join("d/e/z"), b"").unwrap();
    src
}

fn unpack_default(car: &Path, out: &Path) -> MarketResult<Unpacked> {
    unpack_car(car, None, out, &UnpackLimits::default(), &mut |_| {})
}

#[test]
fn a_packed_car_has_its_root_and_every_block_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_dir(dir.path());
    let car = dir.path().join("p.car");
    let root = pack_car(&src, &car, &params(1000, 3));
    let index = index_car(&car).unwrap();
    assert_eq!(index.summary.version, 1);
    assert_eq!(index.summary.roots, vec![root]);
    assert_eq!(index.summary.data_end, fs::metadata(&car).unwrap().len());
    assert_eq!(index.summary.blocks, index.blocks.len() as u64);
    // The root comes last; every block's bytes are where the index says and hash to its CID.
    assert_eq!(index.blocks.last().unwrap().cid, root);
    let bytes = fs::read(&car).unwrap();
    let mut prev_end = None;
    for b in &index.blocks {
        let data = &bytes[b.offset as usize..(b.offset + b.length) as usize];
        assert!(verify_block(&b.cid, data).unwrap());
        let cid_len = b.cid.to_bytes().len() as u64;
        assert!(b.offset > b.section_offset + cid_len);
        if let Some(end) = prev_end {
            assert_eq!(b.section_offset, end);
        }
        prev_end = Some(b.offset + b.length);
    }
    // The same blocks as packing into memory.
    let mut mem = MemoryBlocks::default();
    pack_path(&src, &mut mem, &params(1000, 3), &mut |_| {}).unwrap();
    let cids: Vec<Cid> = index.blocks.iter().map(|b| b.cid).collect();
    assert_eq!(cids, mem.order);
}

#[test]
fn file_and_directory_cars_unpack_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_dir(dir.path());
    let car = dir.path().join("d.car");
    pack_car(&src, &car, &params(512, 2));
    let out = dir.path().join("out");
    let done = unpack_default(&car, &out).unwrap();
    assert_eq!((done.files, done.directories), (3, 4));
    for rel in ["x.bin", "d/y.txt", "d/e/z"] {
        assert_eq!(
            fs::read(out.join(rel)).unwrap(),
            fs::read(src.join(rel)).unwrap()
        );
    }
    assert!(out.join("empty").is_dir());

    let one = dir.path().join("one.bin");
    fs::write(&one, pattern(3 << 20)).unwrap();
    let car = dir.path().join("one.car");
    let root = pack_car(&one, &car, &DagParams::default());
    let out = dir.path().join("one.out");
    unpack_car(
        &car,
        Some(&root),
        &out,
        &UnpackLimits::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(fs::read(&out).unwrap(), fs::read(&one).unwrap());
}

/// A packed CAR of a 3-leaf file, as bytes, with its index.
fn small_car(dir: &Path) -> (Vec<u8>, CarIndex) {
    let src = dir.join("f");
    fs::write(&src, pattern(2500)).unwrap();
    let car = dir.join("f.car");
    pack_car(&src, &car, &params(1000, 4));
    (fs::read(&car).unwrap(), index_car(&car).unwrap())
}

#[test]
fn a_corrupted_block_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, index) = small_car(dir.path());
    let b = index.blocks[1];
    bytes[(b.offset + 7) as usize] ^= 0x40;
    let bad = dir.path().join("bad.car");
    fs::write(&bad, &bytes).unwrap();
    let err = index_car(&bad).unwrap_err().to_string();
    assert!(
        err.contains("block 1") && err.contains("does not hash"),
        "{err}"
    );
    let err = unpack_default(&bad, &dir.path().join("o"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not hash"), "{err}");
    assert!(!dir.path().join("o").exists());
}

#[test]
fn truncated_cars_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, index) = small_car(dir.path());
    let last = *index.blocks.last().unwrap();
    let cuts = [
        (5, "header"),                                              // inside the header
        (last.offset as usize + 3, "truncated"),                    // inside the root's data
        (last.section_offset as usize + 1, "truncated"),            // inside the root's CID
        (index.blocks[1].section_offset as usize + 1, "truncated"), // inside a 2-byte length varint
    ];
    for (cut, why) in cuts {
        let t = dir.path().join(format!("t{cut}.car"));
        fs::write(&t, &bytes[..cut]).unwrap();
        let err = index_car(&t).unwrap_err().to_string();
        assert!(err.contains(why), "cut at {cut}: {err}");
    }
    // Cut exactly between blocks: the CAR parses, but its root is gone.
    let t = dir.path().join("boundary.car");
    fs::write(&t, &bytes[..last.section_offset as usize]).unwrap();
    assert_eq!(index_car(&t).unwrap().blocks.len(), index.blocks.len() - 1);
    let err = unpack_default(&t, &dir.path().join("o")).unwrap_err();
    assert!(matches!(err, MarketError::MissingBlock(_)), "{err}");
}

#[test]
fn a_root_that_is_not_in_the_car_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, index) = small_car(dir.path());
    // Rewrite the header with another root of the same length.
    let other = block_cid(DAG_PB_CODEC, b"not in this car");
    let header = header_bytes(&other).unwrap();
    let mut wrong = header.clone();
    wrong.extend_from_slice(&bytes[header.len()..]);
    let t = dir.path().join("wrong-root.car");
    fs::write(&t, &wrong).unwrap();
    assert_eq!(index_car(&t).unwrap().summary.roots, vec![other]);
    let err = unpack_default(&t, &dir.path().join("o")).unwrap_err();
    assert!(
        matches!(&err, MarketError::MissingBlock(c) if *c == other.to_string()),
        "{err}"
    );
    // Two roots: unpacking needs to be told which.
    let mut w = CarWriter::new(
        CarHeader::new_v1(vec![index.summary.roots[0], other]),
        SyncWrite {
            inner: Vec::new(),
            written: 0,
        },
    );
    futures::executor::block_on(w.write_header()).unwrap();
    let mut two = futures::executor::block_on(w.finish()).unwrap().inner;
    two.extend_from_slice(&bytes[header.len()..]);
    let t = dir.path().join("two-roots.car");
    fs::write(&t, &two).unwrap();
    let err = unpack_default(&t, &dir.path().join("o")).unwrap_err();
    assert!(err.to_string().contains("2 roots"), "{err}");
    let root = index.summary.roots[0];
    unpack_car(
        &t,
        Some(&root),
        &dir.path().join("o"),
        &UnpackLimits::default(),
        &mut |_| {},
    )
    .unwrap();
}

/// A CARv1 header then one raw section (length varint, then `section`).
fn v1_with_section(section: &[u8]) -> Vec<u8> {
    let mut out = header_bytes(&block_cid(RAW_CODEC, b"r")).unwrap();
    let mut len = section.len();
    loop {
        let b = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(section);
    out
}

#[test]
fn framing_that_makes_the_reader_panic_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // CID version 2.
        (
            "version",
            v1_with_section(&[0x02, 0x55, 0x12, 0x20, 1, 2, 3]),
        ),
        // A multihash digest of 200 bytes.
        (
            "digest",
            v1_with_section(&[0x01, 0x55, 0x12, 0xC8, 0x01, 0, 0, 0]),
        ),
        // A digest of 65..=255 bytes (the reader's buffer holds 64).
        (
            "digest 100",
            v1_with_section(&[&[0x01, 0x55, 0x12, 100][..], &[0u8; 100]].concat()),
        ),
        // A section shorter than its CID.
        ("short", {
            let cid = block_cid(RAW_CODEC, b"x").to_bytes();
            let mut v = v1_with_section(&cid);
            // Rewrite the section length to 2 (the CID is 36 bytes).
            let at = v.len() - cid.len() - 1;
            v[at] = 2;
            v
        }),
        // A CARv2 whose data offset lies before its own header.
        ("v2 offset", {
            let mut v = vec![0x0a, 0xa1, 0x67];
            v.extend_from_slice(b"version");
            v.push(0x02);
            v.extend_from_slice(&[0u8; 16]);
            v.extend_from_slice(&3u64.to_le_bytes());
            v.extend_from_slice(&100u64.to_le_bytes());
            v.extend_from_slice(&0u64.to_le_bytes());
            v
        }),
    ];
    for (what, bytes) in cases {
        let t = dir.path().join("hostile.car");
        fs::write(&t, &bytes).unwrap();
        let err = index_car(&t).unwrap_err();
        assert!(matches!(err, MarketError::BadCar { .. }), "{what}: {err}");
    }
}

/// Wraps a CARv1 into a CARv2 (no index), with `padding` zero bytes before the data.
fn to_v2(v1: &[u8], padding: usize) -> Vec<u8> {
    let mut v = vec![0x0a, 0xa1, 0x67];
    v.extend_from_slice(b"version");
    v.push(0x02);
    v.extend_from_slice(&[0u8; 16]);
    let data_offset = (11 + 40 + padding) as u64;
    v.extend_from_slice(&data_offset.to_le_bytes());
    v.extend_from_slice(&(v1.len() as u64).to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend(std::iter::repeat_n(0u8, padding));
    v.extend_from_slice(v1);
    v
}

#[test]
fn carv2_is_read_with_offsets_from_the_file_start() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, index1) = small_car(dir.path());
    let mut v2 = to_v2(&v1, 13);
    v2.extend_from_slice(b"an index would be here");
    let t = dir.path().join("v2.car");
    fs::write(&t, &v2).unwrap();
    assert!(looks_like_car(&t).unwrap());
    let index = index_car(&t).unwrap();
    assert_eq!(index.summary.version, 2);
    assert_eq!(index.summary.roots, index1.summary.roots);
    assert_eq!(index.blocks.len(), index1.blocks.len());
    for (a, b) in index.blocks.iter().zip(&index1.blocks) {
        assert_eq!(a.cid, b.cid);
        assert_eq!(a.offset, b.offset + 11 + 40 + 13);
        assert_eq!(a.length, b.length);
    }
    let out = dir.path().join("o");
    unpack_default(&t, &out).unwrap();
    assert_eq!(fs::read(&out).unwrap(), pattern(2500));
}

#[test]
fn only_car_headers_look_like_cars() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, _) = small_car(dir.path());
    let f = dir.path().join("a");
    fs::write(&f, &v1).unwrap();
    assert!(looks_like_car(&f).unwrap());
    for junk in [&b""[..], b"hello world", &[0x3a; 100], &v1[..10]] {
        fs::write(&f, junk).unwrap();
        assert!(!looks_like_car(&f).unwrap());
    }
}

#[test]
fn a_changed_file_is_caught_when_its_blocks_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, index) = small_car(dir.path());
    let t = dir.path().join("c.car");
    fs::write(&t, &bytes).unwrap();
    let (mut blocks, _) = CarBlocks::open(&t).unwrap();
    let b = index.blocks[0];
    let mut changed = bytes.clone();
    changed[b.offset as usize] ^= 1;
    fs::write(&t, &changed).unwrap();
    let err = blocks.get(&b.cid).unwrap_err();
    assert!(err.to_string().contains("changed"), "{err}");
    assert!(matches!(
        blocks.get(&block_cid(RAW_CODEC, b"absent")),
        Err(MarketError::MissingBlock(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = scan_car(bytes.as_slice(), Path::new("random"), |_, _, _| Ok(()));
    }

    #[test]
    fn damaged_cars_never_panic_nor_pass_unnoticed(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, _) = small_car(dir.path());
        let mut damaged = bytes.clone();
        for (at, x) in &flips {
            let i = at.index(damaged.len());
            damaged[i] ^= x;
        }
        // Flipped bytes: an error, or (a flip in a place nothing checks, like a CID's codec or
        // the header) a CAR whose unpack is refused or still gives the original bytes.
        let t = dir.path().join("d.car");
        fs::write(&t, &damaged).unwrap();
        let out = dir.path().join("o");
        if unpack_default(&t, &out).is_ok() {
            prop_assert_eq!(fs::read(&out).unwrap(), pattern(2500));
        }
        let cut = cut.index(bytes.len());
        let _ = scan_car(&bytes[..cut], Path::new("cut"), |_, _, _| Ok(()));
    }
}
