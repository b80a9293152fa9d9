//! Tests of the import store: files, directories, CARs, bad input, interrupted imports.

#![allow(clippy::unwrap_used)]

use lode_proofs::piece::commp_of_bytes;

use super::*;
use crate::car::{index_car, unpack_car};
use crate::unixfs::UnpackLimits;

fn no_progress() -> impl FnMut(ImportProgress) + Send {
    |_| {}
}

fn import(store: &ImportStore, path: &Path) -> MarketResult<ImportRecord> {
    store.import(path, &ImportOptions::default(), &mut no_progress())
}

#[test]
fn importing_a_file_keeps_its_car_and_records_the_piece() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImportStore::open(dir.path().join("client")).unwrap();
    let src = dir.path().join("data.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&src, &data).unwrap();
    let mut phases = Vec::new();
    let rec = store
        .import(&src, &ImportOptions::default(), &mut |p: ImportProgress| {
            phases.push(p.phase)
        })
        .unwrap();
    assert_eq!(rec.id, 1);
    assert_eq!(rec.kind, ImportKind::File);
    assert_eq!(rec.source, fs::canonicalize(&src).unwrap());
    assert!(phases.contains(&ImportPhase::Packing) && phases.contains(&ImportPhase::Hashing));
    let car = store.car_path(&rec);
    let bytes = fs::read(&car).unwrap();
    assert_eq!(rec.payload_size, bytes.len() as u64);
    let c = commp_of_bytes(&bytes).unwrap();
    assert_eq!(rec.piece_cid, PieceCid::new(c.comm_p).unwrap());
    assert_eq!(rec.padded_piece_size, c.padded_size.bytes());
    assert_eq!(
        index_car(&car).unwrap().summary.roots,
        vec![rec.payload_root]
    );
    let out = dir.path().join("out");
    unpack_car(&car, None, &out, &UnpackLimits::default(), &mut |_| {}).unwrap();
    assert_eq!(fs::read(&out).unwrap(), data);
    // The record on disk is the one returned, and can be found three ways.
    assert_eq!(store.list().unwrap(), vec![rec.clone()]);
    assert_eq!(store.get(1).unwrap(), rec);
    assert_eq!(store.resolve("1").unwrap(), rec);
    assert_eq!(store.resolve(&rec.payload_root.to_string()).unwrap(), rec);
    assert_eq!(store.resolve(&rec.piece_cid.to_string()).unwrap(), rec);
    assert!(matches!(store.get(2), Err(MarketError::UnknownImport(_))));
    assert!(matches!(
        store.resolve(&crate::cid::block_cid(0x55, b"other").to_string()),
        Err(MarketError::UnknownImport(_))
    ));
    // Nothing is left pending or temporary.
    let names: Vec<_> = fs::read_dir(store.dir().join("imports"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["1.json"]);
    assert_eq!(fs::read_dir(store.dir().join("cars")).unwrap().count(), 1);
}

#[test]
fn importing_a_directory_and_a_car() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImportStore::open(dir.path().join("client")).unwrap();
    let src = dir.path().join("photos");
    fs::create_dir_all(src.join("2025")).unwrap();
    fs::write(src.join("2025/a.jpg"), b"jpeg bytes").unwrap();
    fs::write(src.join("index.html"), b"<html>").unwrap();
    let d = import(&store, &src).unwrap();
    assert_eq!(d.kind, ImportKind::Directory);
    // Its CAR imported again is taken as it is: same bytes, same root, same piece.
    let car = store.car_path(&d);
    let again = import(&store, &car).unwrap();
    assert_eq!(again.id, 2);
    assert_eq!(again.kind, ImportKind::Car);
    assert_eq!(
        fs::read(store.car_path(&again)).unwrap(),
        fs::read(&car).unwrap()
    );
    assert_eq!(
        (
            again.payload_root,
            again.piece_cid,
            again.padded_piece_size,
            again.payload_size
        ),
        (
            d.payload_root,
            d.piece_cid,
            d.padded_piece_size,
            d.payload_size
        )
    );
    // Unless asked to pack it as a file.
    let as_file = store
        .import(
            &car,
            &ImportOptions {
                as_file: true,
                ..Default::default()
            },
            &mut no_progress(),
        )
        .unwrap();
    assert_eq!(as_file.kind, ImportKind::File);
    assert_ne!(as_file.payload_root, d.payload_root);
    assert_eq!(store.list().unwrap().len(), 3);
    // The most recent import wins when a CID names several.
    assert_eq!(store.resolve(&d.payload_root.to_string()).unwrap().id, 2);
}

#[test]
fn bad_cars_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImportStore::open(dir.path().join("client")).unwrap();
    let src = dir.path().join("f");
    fs::write(&src, vec![5u8; 5000]).unwrap();
    let good = import(&store, &src).unwrap();
    let bytes = fs::read(store.car_path(&good)).unwrap();
    let index = index_car(&store.car_path(&good)).unwrap();
    // A corrupted block.
    let mut corrupt = bytes.clone();
    let last = *index.blocks.last().unwrap();
    corrupt[last.offset as usize] ^= 1;
    // A CAR without its root (cut before the last block).
    let rootless = bytes[..last.section_offset as usize].to_vec();
    for (name, b, why) in [
        ("corrupt.car", corrupt, "does not hash"),
        ("rootless.car", rootless, "not among its"),
    ] {
        let p = dir.path().join(name);
        fs::write(&p, &b).unwrap();
        let err = import(&store, &p).unwrap_err().to_string();
        assert!(err.contains(why), "{name}: {err}");
    }
    assert_eq!(store.list().unwrap(), vec![good]);
    let imports: Vec<_> = fs::read_dir(store.dir().join("imports")).unwrap().collect();
    assert_eq!(imports.len(), 1);
    assert_eq!(fs::read_dir(store.dir().join("cars")).unwrap().count(), 1);
    // A directory holding the client directory itself.
    let err = import(&store, dir.path()).unwrap_err().to_string();
    assert!(err.contains("contains the client directory"), "{err}");
    // A missing source.
    assert!(matches!(
        import(&store, &dir.path().join("absent")),
        Err(MarketError::Io { .. })
    ));
}

#[test]
fn interrupted_imports_are_cleared_on_open_and_ids_are_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("client");
    let store = ImportStore::open(&root).unwrap();
    let src = dir.path().join("f");
    fs::write(&src, b"payload").unwrap();
    assert_eq!(import(&store, &src).unwrap().id, 1);
    // What kill -9 leaves: import 2 killed while writing its CAR, import 3 after the CAR's rename.
    fs::write(root.join("imports/2.pending"), b"").unwrap();
    fs::write(root.join("cars/2.car.4242-0.tmp"), b"partial").unwrap();
    fs::write(root.join("imports/3.pending"), b"").unwrap();
    fs::write(root.join("cars/3.car"), b"complete but unrecorded").unwrap();
    // Import 4 is running in another process: its pending file is locked.
    let running = root.join("imports/4.pending");
    fs::write(&running, b"").unwrap();
    let held = File::open(&running).unwrap();
    held.lock().unwrap();
    let store = ImportStore::open(&root).unwrap();
    let mut left: Vec<_> = fs::read_dir(root.join("imports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["1.json", "4.pending"]);
    let cars: Vec<_> = fs::read_dir(root.join("cars"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(cars, ["1.car"]);
    // The next import does not take the running import's id.
    assert_eq!(import(&store, &src).unwrap().id, 5);
    drop(held);
}

#[test]
fn concurrent_imports_get_distinct_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImportStore::open(dir.path().join("client")).unwrap();
    let mut handles = Vec::new();
    for t in 0..4u8 {
        let store = store.clone();
        let src = dir.path().join(format!("f{t}"));
        fs::write(&src, vec![t; 10_000]).unwrap();
        handles.push(std::thread::spawn(move || import(&store, &src).unwrap().id));
    }
    let mut ids: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert_eq!(store.list().unwrap().len(), 4);
}

#[test]
fn damaged_records_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImportStore::open(dir.path().join("client")).unwrap();
    fs::write(store.dir().join("imports/7.json"), b"{not json").unwrap();
    let err = store.get(7).unwrap_err();
    assert!(matches!(err, MarketError::BadRecord { .. }), "{err}");
    assert!(store.list().is_err());
}

#[test]
fn commp_alongside_the_writes_equals_commp_of_the_whole() {
    use std::io::Cursor;
    for len in [
        0,
        1,
        126,
        127,
        COMMP_CHUNK - 1,
        COMMP_CHUNK,
        COMMP_CHUNK + 1,
        2 * COMMP_CHUNK,
        3 * COMMP_CHUNK + 777,
    ] {
        let data: Vec<u8> = (0..len)
            .map(|i| (i * 13 % 256) as u8 ^ (i >> 9) as u8)
            .collect();
        let mut out = Cursor::new(Vec::new());
        let mut tap = CommPTap::new(&mut out, Path::new("t")).unwrap();
        // A placeholder header first, the rest in uneven writes, then the header rewritten in place,
        // as CarFileWriter does.
        let head = len.min(60);
        tap.write_all(&vec![0xAA; head]).unwrap();
        let mut at = head;
        let mut step = 1;
        while at < len {
            let n = step.min(len - at);
            tap.write_all(&data[at..at + n]).unwrap();
            at += n;
            step = step * 7 % 100_003 + 1;
        }
        tap.seek(SeekFrom::Start(0)).unwrap();
        tap.write_all(&data[..head]).unwrap();
        tap.seek(SeekFrom::End(0)).unwrap();
        let rest = tap.close().unwrap();
        assert_eq!(out.get_ref(), &data);
        let first = &data[..len.min(COMMP_CHUNK)];
        assert_eq!(
            rest.finish(first, len as u64).unwrap(),
            commp_of_bytes(&data).unwrap(),
            "{len} bytes"
        );
    }
}
