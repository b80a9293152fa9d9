//! The trustless gateway end to end over real TCP: a directory tree imported with the client's
//! import code, its CAR indexed into a block index and served from a `DirPieces` source; raw
//! blocks, CARs of each `dag-scope` (parsed with every block checked, unpacked byte-identical),
//! `HEAD`, conditional requests, the identity probe; malformed and unknown CIDs, unsupported
//! formats, content paths, a server without an index, and a store with a corrupted block (an
//! error, never the bad bytes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cid::Cid;
use lode_market::car::{index_car, scan_car, unpack_car};
use lode_market::cid::{RAW_CODEC, block_cid, verify_block};
use lode_market::import::{ImportOptions, ImportRecord, ImportStore};
use lode_market::retrieval::{
    BlockIndex, DirPieces, RetrievalConfig, RetrievalServer, serve, serve_with_index,
};
use lode_market::unixfs::{DagParams, MemoryBlocks, UnpackLimits, pack_path};
use lode_proofs::cid::PieceCid;

const CAR: &str = "application/vnd.ipld.car";
const RAW: &str = "application/vnd.ipld.raw";

fn params() -> DagParams {
    DagParams {
        chunk_size: 4096,
        max_links: 4,
    }
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
}

/// A directory tree: a multi-level file (70 chunks: 3 levels of 4-link nodes), a small file, an
/// empty file, an empty directory, and the same bytes in two files (the same blocks twice in the
/// DAG).
fn tree(root: &Path) -> PathBuf {
    let src = root.join("src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::create_dir_all(src.join("empty-dir")).unwrap();
    fs::write(src.join("big.bin"), pattern(70 * 4096 + 123, 1)).unwrap();
    fs::write(src.join("sub/hello.txt"), b"hello gateway\n").unwrap();
    fs::write(src.join("sub/deeper/empty"), b"").unwrap();
    fs::write(src.join("twin-a.bin"), pattern(9000, 7)).unwrap();
    fs::write(src.join("sub/twin-b.bin"), pattern(9000, 7)).unwrap();
    src
}

struct Fixture {
    _dir: tempfile::TempDir,
    src: PathBuf,
    record: ImportRecord,
    /// The payload as served: `<pieces>/<piece CID>`.
    payload: PathBuf,
    index: BlockIndex,
    pieces: DirPieces,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = tree(dir.path());
    let store = ImportStore::open(dir.path().join("client")).unwrap();
    let options = ImportOptions {
        params: params(),
        as_file: false,
    };
    let record = store.import(&src, &options, &mut |_| {}).unwrap();
    let pieces_dir = dir.path().join("pieces");
    fs::create_dir_all(&pieces_dir).unwrap();
    let pieces = DirPieces::new(&pieces_dir);
    let payload = pieces.path(&record.piece_cid);
    fs::copy(store.car_path(&record), &payload).unwrap();
    let index = BlockIndex::open(dir.path().join("deals")).unwrap();
    let done = index
        .index_payload(&record.piece_cid, &payload)
        .unwrap()
        .expect("an imported directory is a CAR");
    assert_eq!(done.roots, vec![record.payload_root.to_string()]);
    Fixture {
        _dir: dir,
        src,
        record,
        payload,
        index,
        pieces,
    }
}

async fn start(f: &Fixture) -> RetrievalServer {
    serve_with_index(
        &RetrievalConfig::default(),
        Arc::new(f.pieces.clone()),
        f.index.clone(),
    )
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Result<Vec<u8>, String>,
}

impl Answer {
    fn body(&self) -> &[u8] {
        self.body.as_ref().expect("a complete body")
    }
}

async fn get(base: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client().request(method, format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let body = resp
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| format!("{e:?}"));
    Answer {
        status,
        headers,
        body,
    }
}

/// The status of a GET sent without an `Accept` header (which reqwest always adds).
async fn status_without_accept(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let head = String::from_utf8_lossy(&raw);
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

/// The blocks of a depth-first walk of the DAG at `root` in `blocks` (links in order), with
/// duplicates or without.
fn dfs(blocks: &MemoryBlocks, root: &Cid, dups: bool) -> Vec<Cid> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        if !dups && !seen.insert(cid) {
            continue;
        }
        out.push(cid);
        if cid.codec() == 0x70 {
            let node = ipld_dagpb::PbNode::from_bytes(blocks.blocks[&cid].clone().into()).unwrap();
            stack.extend(node.links.iter().rev().map(|l| l.cid));
        }
    }
    out
}

/// Parses a CAR with rs-car (every block checked against its CID): its roots and blocks in order.
fn parse_car(bytes: &[u8]) -> (Vec<Cid>, Vec<(Cid, Vec<u8>)>) {
    let mut blocks = Vec::new();
    let summary = scan_car(Cursor::new(bytes), Path::new("response"), |_, at, data| {
        blocks.push((at.cid, data.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(summary.version, 1);
    assert_eq!(summary.data_end, bytes.len() as u64);
    (summary.roots, blocks)
}

/// Every (unique) block of the imported CAR.
fn all_blocks(f: &Fixture) -> HashSet<Cid> {
    index_car(&f.payload)
        .unwrap()
        .blocks
        .iter()
        .map(|b| b.cid)
        .collect()
}

fn assert_trees_equal(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                if p.is_dir() {
                    out.insert(rel, None);
                    stack.push(p);
                } else {
                    out.insert(rel, Some(fs::read(&p).unwrap()));
                }
            }
        }
        out
    };
    assert_eq!(list(a), list(b));
}

fn gateway_headers(a: &Answer, etag: &str, filename: &str) {
    assert_eq!(a.headers["etag"], etag);
    assert_eq!(
        a.headers["cache-control"],
        "public, max-age=29030400, immutable"
    );
    assert_eq!(a.headers["x-content-type-options"], "nosniff");
    assert_eq!(a.headers["vary"], "Accept");
    assert_eq!(
        a.headers["content-disposition"],
        format!("attachment; filename=\"{filename}\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_and_cars_of_an_imported_directory() {
    let f = fixture();
    let server = start(&f).await;
    let base = server.url();
    let root = f.record.payload_root;
    let root_path = format!("/ipfs/{root}");

    // A raw block: the root (a directory node), by Accept and by ?format=raw.
    let a = get(&base, "GET", &root_path, &[("Accept", RAW)]).await;
    assert_eq!(a.status, 200);
    assert!(verify_block(&root, a.body()).unwrap());
    assert_eq!(a.headers["content-type"], RAW);
    assert_eq!(a.headers["content-length"], a.body().len().to_string());
    assert_eq!(
        a.headers["content-location"],
        format!("/ipfs/{root}?format=raw")
    );
    gateway_headers(&a, &format!("\"{root}.raw\""), &format!("{root}.bin"));
    let b = get(&base, "GET", &format!("{root_path}?format=raw"), &[]).await;
    assert_eq!((b.status, b.body()), (200, a.body()));
    assert!(!b.headers.contains_key("content-location"));

    // A raw leaf: the small file's block.
    let hello = block_cid(RAW_CODEC, b"hello gateway\n");
    let a = get(&base, "GET", &format!("/ipfs/{hello}?format=raw"), &[]).await;
    assert_eq!((a.status, a.body()), (200, &b"hello gateway\n"[..]));

    // HEAD: the same headers, no body.
    let h = get(&base, "HEAD", &format!("/ipfs/{hello}"), &[("Accept", RAW)]).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.headers["content-length"], "14");
    assert!(h.body().is_empty());
    let h = get(&base, "HEAD", &root_path, &[("Accept", CAR)]).await;
    assert_eq!(h.status, 200);
    assert!(h.headers["content-type"].starts_with(CAR));
    assert!(h.body().is_empty());

    // If-None-Match with the ETag: 304.
    let a = get(
        &base,
        "GET",
        &root_path,
        &[
            ("Accept", RAW),
            ("If-None-Match", &format!("\"{root}.raw\"")),
        ],
    )
    .await;
    assert_eq!(a.status, 304);

    // The whole DAG (dag-scope=all, the default): every block once, root first, depth first;
    // it unpacks to the same files.
    let a = get(&base, "GET", &root_path, &[("Accept", CAR)]).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.headers["content-type"],
        "application/vnd.ipld.car; version=1; order=dfs; dups=n"
    );
    assert!(!a.headers.contains_key("content-length"));
    gateway_headers(
        &a,
        &format!("\"{root}.car.all.dfs.n\""),
        &format!("{root}.car"),
    );
    let (roots, blocks) = parse_car(a.body());
    assert_eq!(roots, vec![root]);
    assert_eq!(blocks[0].0, root);
    let cids: Vec<Cid> = blocks.iter().map(|b| b.0).collect();
    let unique: HashSet<Cid> = cids.iter().copied().collect();
    assert_eq!(unique.len(), cids.len(), "dups=n: each block once");
    assert_eq!(unique, all_blocks(&f));
    // Depth first, links in order.
    let mut mem = MemoryBlocks::default();
    pack_path(&f.src, &mut mem, &params(), &mut |_| {}).unwrap();
    assert_eq!(cids, dfs(&mem, &root, false));
    let car_file = f._dir.path().join("all.car");
    fs::write(&car_file, a.body()).unwrap();
    let out = f._dir.path().join("out-all");
    unpack_car(&car_file, None, &out, &UnpackLimits::default(), &mut |_| {}).unwrap();
    assert_trees_equal(&f.src, &out);
    // ?format=car gives the same bytes.
    let b = get(&base, "GET", &format!("{root_path}?format=car"), &[]).await;
    assert_eq!(b.body(), a.body());

    // dups=y: the twin files' blocks come twice.
    let d = get(
        &base,
        "GET",
        &root_path,
        &[(
            "Accept",
            "application/vnd.ipld.car; version=1; order=dfs; dups=y",
        )],
    )
    .await;
    assert_eq!(d.status, 200);
    assert!(d.headers["content-type"].ends_with("dups=y"));
    let (_, with_dups) = parse_car(d.body());
    assert!(with_dups.len() > blocks.len());
    let cids: Vec<Cid> = with_dups.iter().map(|b| b.0).collect();
    assert_eq!(cids, dfs(&mem, &root, true));

    // dag-scope=block: the root alone.
    let a = get(
        &base,
        "GET",
        &format!("{root_path}?dag-scope=block"),
        &[("Accept", CAR)],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["etag"], format!("\"{root}.car.block.dfs.n\""));
    let (roots, blocks) = parse_car(a.body());
    assert_eq!((roots, blocks.len()), (vec![root], 1));
    assert_eq!(blocks[0].0, root);

    // dag-scope=entity of a directory: its node alone.
    let a = get(
        &base,
        "GET",
        &format!("{root_path}?format=car&dag-scope=entity"),
        &[],
    )
    .await;
    let (_, blocks) = parse_car(a.body());
    assert_eq!(blocks.len(), 1);

    // dag-scope=entity of a multi-level file: the whole file, which unpacks to its bytes.
    let mut file_blocks = MemoryBlocks::default();
    let file = pack_path(
        &f.src.join("big.bin"),
        &mut file_blocks,
        &params(),
        &mut |_| {},
    )
    .unwrap()
    .root
    .cid;
    let a = get(
        &base,
        "GET",
        &format!("/ipfs/{file}?format=car&dag-scope=entity"),
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
    let (roots, blocks) = parse_car(a.body());
    assert_eq!(roots, vec![file]);
    let got: HashSet<Cid> = blocks.iter().map(|b| b.0).collect();
    let want: HashSet<Cid> = file_blocks.blocks.keys().copied().collect();
    assert_eq!(got, want);
    let car_file = f._dir.path().join("file.car");
    fs::write(&car_file, a.body()).unwrap();
    let out = f._dir.path().join("out-file");
    unpack_car(&car_file, None, &out, &UnpackLimits::default(), &mut |_| {}).unwrap();
    assert_eq!(
        fs::read(&out).unwrap(),
        fs::read(f.src.join("big.bin")).unwrap()
    );

    // The identity probe.
    let a = get(&base, "GET", "/ipfs/bafkqaaa?format=raw", &[]).await;
    assert_eq!((a.status, a.body().len()), (200, 0));
    let a = get(&base, "GET", "/ipfs/bafkqaaa?format=car", &[]).await;
    assert_eq!(a.status, 200);
    let (roots, blocks) = parse_car(a.body());
    assert_eq!(roots, vec![Cid::try_from("bafkqaaa").unwrap()]);
    assert!(blocks.is_empty());

    // /piece/ still serves the whole payload.
    let a = get(&base, "GET", &format!("/piece/{}", f.record.piece_cid), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body(), &fs::read(&f.payload).unwrap()[..]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_unknown_blocks_and_servers_without_an_index() {
    let f = fixture();
    let server = start(&f).await;
    let base = server.url();
    let root = f.record.payload_root;

    // Malformed CIDs: 400.
    for bad in ["nonsense", "b", "bafy!!"] {
        let a = get(&base, "GET", &format!("/ipfs/{bad}?format=raw"), &[]).await;
        assert_eq!(a.status, 400, "{bad}");
    }
    // Unknown CIDs: 404 (412 when only a cached answer is wanted), as raw and as CAR.
    let unknown = block_cid(RAW_CODEC, b"never stored");
    for format in ["raw", "car"] {
        let a = get(
            &base,
            "GET",
            &format!("/ipfs/{unknown}?format={format}"),
            &[],
        )
        .await;
        assert_eq!(a.status, 404, "{format}");
    }
    let a = get(
        &base,
        "GET",
        &format!("/ipfs/{unknown}?format=raw"),
        &[("Cache-Control", "only-if-cached")],
    )
    .await;
    assert_eq!(a.status, 412);
    // A piece CID is not a block of the index.
    let a = get(
        &base,
        "GET",
        &format!("/ipfs/{}?format=raw", f.record.piece_cid),
        &[],
    )
    .await;
    assert_eq!(a.status, 404);
    // No format asked: 400; none served: 406.
    let path = format!("/ipfs/{root}");
    assert_eq!(status_without_accept(server.addr(), &path).await, 400);
    for accept in ["text/html", "*/*", "application/vnd.ipld.car; version=2"] {
        let a = get(&base, "GET", &path, &[("Accept", accept)]).await;
        assert_eq!(a.status, 406, "{accept}");
    }
    for query in [
        "format=tar",
        "format=car&dag-scope=most",
        "format=car&entity-bytes=0:9",
    ] {
        let a = get(&base, "GET", &format!("{path}?{query}"), &[]).await;
        assert_eq!(a.status, 400, "{query}");
    }
    // Content paths are not served.
    let a = get(
        &base,
        "GET",
        &format!("{path}/sub/hello.txt?format=car"),
        &[],
    )
    .await;
    assert_eq!(a.status, 400);
    server.stop().await;

    // Without an index, /ipfs/ is not served and /piece/ still is.
    let plain = serve(&RetrievalConfig::default(), Arc::new(f.pieces.clone()))
        .await
        .unwrap();
    let a = get(&plain.url(), "GET", &format!("{path}?format=raw"), &[]).await;
    assert_eq!(a.status, 501);
    let a = get(
        &plain.url(),
        "GET",
        &format!("/piece/{}", f.record.piece_cid),
        &[("Range", "bytes=0-9")],
    )
    .await;
    assert_eq!((a.status, a.body().len()), (206, 10));
    plain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_block_is_an_error_never_the_bad_bytes() {
    let f = fixture();
    let root = f.record.payload_root;
    let unique_blocks = all_blocks(&f).len();
    // Corrupt one leaf of the big file in the served copy, after indexing.
    let big = {
        let mut m = MemoryBlocks::default();
        pack_path(&f.src.join("big.bin"), &mut m, &params(), &mut |_| {}).unwrap();
        m
    };
    let leaf = *big.order.iter().find(|c| c.codec() == RAW_CODEC).unwrap();
    let at = f.index.locate(&leaf).unwrap()[0];
    let mut bytes = fs::read(&f.payload).unwrap();
    let good = bytes[at.offset as usize..(at.offset + at.length) as usize].to_vec();
    bytes[at.offset as usize + 100] ^= 0x55;
    let bad = bytes[at.offset as usize..(at.offset + at.length) as usize].to_vec();
    fs::write(&f.payload, &bytes).unwrap();
    let server = start(&f).await;
    let base = server.url();

    // The block itself: 500, and the body is an explanation, not the block.
    let a = get(&base, "GET", &format!("/ipfs/{leaf}?format=raw"), &[]).await;
    assert_eq!(a.status, 500);
    let body = a.body();
    assert!(
        String::from_utf8_lossy(body).contains("corrupted"),
        "{body:?}"
    );
    assert_ne!(body, &bad[..]);
    assert_ne!(body, &good[..]);
    let a = get(&base, "GET", &format!("/ipfs/{leaf}?format=car"), &[]).await;
    assert_eq!(a.status, 500);

    // A CAR of the DAG above it: the stream stops with an error before the bad block, and what
    // arrived holds no byte of it.
    let a = get(&base, "GET", &format!("/ipfs/{root}?format=car"), &[]).await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_err(), "the CAR stream must end in an error");
    // Other blocks are still served.
    let hello = block_cid(RAW_CODEC, b"hello gateway\n");
    let a = get(&base, "GET", &format!("/ipfs/{hello}?format=raw"), &[]).await;
    assert_eq!(a.status, 200);

    // A second, intact copy of the payload in another piece: the block is served from it.
    let other = PieceCid::new(lode_proofs::node::trunc254([42; 32])).unwrap();
    let good_copy = f.pieces.path(&other);
    let mut restored = bytes.clone();
    restored[at.offset as usize..(at.offset + at.length) as usize].copy_from_slice(&good);
    fs::write(&good_copy, &restored).unwrap();
    f.index.index_payload(&other, &good_copy).unwrap().unwrap();
    let a = get(&base, "GET", &format!("/ipfs/{leaf}?format=raw"), &[]).await;
    assert_eq!((a.status, a.body()), (200, &good[..]));
    let a = get(&base, "GET", &format!("/ipfs/{root}?format=car"), &[]).await;
    let (_, blocks) = parse_car(a.body());
    assert_eq!(blocks.len(), unique_blocks);
    server.stop().await;
}
