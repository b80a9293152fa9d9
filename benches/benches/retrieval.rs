//! Retrieval over HTTP (`GET /piece/<piece CID>` of the real server over loopback): whole-piece
//! throughput and the time to the first byte of a 1 MiB range, from a 256 MiB payload kept as a
//! plain file (a payload before sealing) and from a sector's unsealed copy (fr32-padded, unpadded
//! on read by `lode_sealing::seal::read_unsealed_range`, as the provider serves a sealed deal);
//! and unseal on demand: an 8 MiB sector without an unsealed copy unsealed
//! (`lode_sealing::seal::unseal_sector`) and its first 1 MiB range read.
//!
//! The page cache is warm (the payloads were just written or read): these are the server's and
//! the unpadding's costs, not the disk's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lode_benches::bench_bytes;
use lode_market::MarketResult;
use lode_market::retrieval::{
    DirPieces, PieceReader, PieceSource, RetrievalConfig, RetrievalServer, serve,
};
use lode_proofs::cid::PieceCid;
use lode_proofs::node::trunc254;
use lode_proofs::sector::SectorSize;
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;

const PIECE: usize = 256 << 20;
const RANGE: u64 = 1 << 20;

/// A piece's payload read from a sector's unsealed copy.
#[derive(Clone)]
struct UnsealedPiece {
    piece: PieceCid,
    dir: SectorDir,
    id: SectorId,
    len: u64,
}

struct UnsealedReader(UnsealedPiece);

impl PieceReader for UnsealedReader {
    fn len(&self) -> u64 {
        self.0.len
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.0.len.saturating_sub(offset));
        let mut out = &mut buf[..n as usize];
        seal::read_unsealed_range(&self.0.dir, &self.0.id, offset, n, &mut out)
            .map_err(io::Error::other)?;
        Ok(n as usize)
    }
}

impl PieceSource for UnsealedPiece {
    fn open(&self, piece: &PieceCid) -> MarketResult<Option<Box<dyn PieceReader>>> {
        Ok((piece == &self.piece).then(|| Box::new(UnsealedReader(self.clone())) as _))
    }
}

fn piece_cid(tag: u8) -> PieceCid {
    PieceCid::new(trunc254([tag; 32])).unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Whole-piece GETs and 1 MiB range TTFBs against `server`.
fn bench_server(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    server: &RetrievalServer,
    piece: &PieceCid,
) {
    let url = format!("{}/piece/{piece}", server.url());
    let client = client();
    let mut group = c.benchmark_group(format!("retrieval_{name}"));
    group.sample_size(10);
    // The time to the first body byte (no throughput: a latency).
    let mut at = 0u64;
    group.bench_function("range_1MiB_ttfb", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // A different, unaligned range each time.
                    at = (at + 37 * RANGE + 4093) % (PIECE as u64 - RANGE);
                    let range = format!("bytes={at}-{}", at + RANGE - 1);
                    let start = Instant::now();
                    let mut resp = client
                        .get(&url)
                        .header("Range", range)
                        .send()
                        .await
                        .unwrap();
                    let first = resp.chunk().await.unwrap().expect("a body");
                    total += start.elapsed();
                    let mut got = first.len();
                    while let Some(chunk) = resp.chunk().await.unwrap() {
                        got += chunk.len();
                    }
                    assert_eq!((resp.status().as_u16(), got as u64), (206, RANGE));
                }
                total
            })
        })
    });
    group.throughput(Throughput::Bytes(PIECE as u64));
    group.bench_function("get_256MiB", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut resp = client.get(&url).send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    let mut got = 0usize;
                    while let Some(chunk) = resp.chunk().await.unwrap() {
                        got += chunk.len();
                    }
                    assert_eq!(got, PIECE);
                }
                start.elapsed()
            })
        })
    });
    group.throughput(Throughput::Bytes(RANGE));
    group.bench_function("range_1MiB_whole", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    at = (at + 37 * RANGE + 4093) % (PIECE as u64 - RANGE);
                    let range = format!("bytes={at}-{}", at + RANGE - 1);
                    let body = client
                        .get(&url)
                        .header("Range", range)
                        .send()
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap();
                    assert_eq!(body.len() as u64, RANGE);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn retrieval(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = bench_bytes(PIECE, 11);

    // A plain file: the payload before sealing.
    let plain = piece_cid(1);
    let pieces = DirPieces::new(dir.path());
    fs::write(pieces.path(&plain), &data).unwrap();
    let server = rt
        .block_on(serve(&RetrievalConfig::default(), Arc::new(pieces)))
        .unwrap();
    bench_server(c, &rt, "plain_file", &server, &plain);
    rt.block_on(server.stop());
    fs::remove_file(dir.path().join(plain.to_string())).unwrap();

    // A 512 MiB sector's unsealed copy holding the 256 MiB payload (a 512 MiB piece).
    let id = SectorId {
        size: SectorSize::S512MiB,
        miner_id: 1000,
        sector_number: 1,
    };
    let sector = SectorDir::create(&dir.path().join("sector")).unwrap();
    seal::add_piece(&sector, &id, &data[..], data.len() as u64).unwrap();
    drop(data);
    let unsealed = piece_cid(2);
    let source = UnsealedPiece {
        piece: unsealed,
        dir: sector,
        id,
        len: PIECE as u64,
    };
    let server = rt
        .block_on(serve(&RetrievalConfig::default(), Arc::new(source)))
        .unwrap();
    bench_server(c, &rt, "unsealed_copy", &server, &unsealed);
    rt.block_on(server.stop());
    fs::remove_dir_all(dir.path().join("sector")).unwrap();

    unseal_on_demand(c, dir.path());
}

/// An 8 MiB sector sealed once; each iteration drops its unsealed copy, unseals the sector and
/// reads a 1 MiB range: the first byte of a retrieval with no unsealed copy kept.
fn unseal_on_demand(c: &mut Criterion, root: &Path) {
    let id = SectorId {
        size: SectorSize::S8MiB,
        miner_id: 1000,
        sector_number: 2,
    };
    let dir = SectorDir::create(&root.join("sector8")).unwrap();
    let cache = root.join("cache");
    let len = (8u64 << 20) / 128 * 127;
    let data = bench_bytes(len as usize, 5);
    seal::add_piece(&dir, &id, &data[..], len).unwrap();
    seal::pre_commit1(&dir, &id, trunc254([3; 32]), &cache, None, &mut no_progress).unwrap();
    seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
    let mut group = c.benchmark_group("unseal_on_demand");
    group.sample_size(10);
    group.bench_function("8MiB_sector_then_1MiB_range", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = fs::remove_file(dir.unsealed());
                let start = Instant::now();
                seal::unseal_sector(&dir, &id, &cache, &mut no_progress).unwrap();
                let mut out = Vec::with_capacity(RANGE as usize);
                seal::read_unsealed_range(&dir, &id, 4093, RANGE, &mut out).unwrap();
                total += start.elapsed();
                assert_eq!(&out[..], &data[4093..4093 + RANGE as usize]);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, retrieval);
criterion_main!(benches);
