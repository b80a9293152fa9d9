//! The retrieval server end to end over real TCP: whole pieces, single and multiple ranges,
//! `HEAD`, `ETag`/`If-None-Match`, unknown and malformed CIDs, unsatisfiable ranges, a client that
//! never finishes its headers and one that stops reading.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lode_market::retrieval::{DirPieces, RetrievalConfig, RetrievalServer, serve};
use lode_proofs::cid::PieceCid;
use lode_proofs::node::trunc254;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn parse(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete header");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    parse(&raw)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn piece_cid(tag: u8) -> PieceCid {
    PieceCid::new(trunc254([tag; 32])).unwrap()
}

async fn start(
    files: &[(PieceCid, Vec<u8>)],
    cfg: RetrievalConfig,
) -> (RetrievalServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pieces = DirPieces::new(dir.path());
    for (cid, data) in files {
        std::fs::write(pieces.path(cid), data).unwrap();
    }
    let server = serve(&cfg, Arc::new(pieces)).await.unwrap();
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_are_served_whole_in_ranges_and_conditionally() {
    let data = payload(700_000);
    let cid = piece_cid(1);
    let (server, _dir) = start(&[(cid, data.clone())], RetrievalConfig::default()).await;
    let addr = server.addr();
    let path = format!("/piece/{cid}");
    let etag = format!("\"{cid}\"");

    let full = request(addr, "GET", &path, &[]).await;
    assert_eq!(full.status, 200);
    assert_eq!(full.body, data);
    assert_eq!(full.headers["content-length"], data.len().to_string());
    assert_eq!(full.headers["etag"], etag);
    assert_eq!(full.headers["accept-ranges"], "bytes");
    assert!(full.headers["cache-control"].contains("immutable"));

    let head = request(addr, "HEAD", &path, &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.headers["content-length"], data.len().to_string());

    // One range, open-ended and suffix ranges.
    for (range, want) in [
        ("bytes=0-9", 0..10),
        ("bytes=262140-262150", 262_140..262_151),
        ("bytes=699990-", 699_990..700_000),
        ("bytes=-5", 699_995..700_000),
    ] {
        let r = request(addr, "GET", &path, &[("Range", range)]).await;
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.body, data[want.clone()], "{range}");
        assert_eq!(
            r.headers["content-range"],
            format!("bytes {}-{}/{}", want.start, want.end - 1, data.len())
        );
    }

    // Several ranges: multipart/byteranges, each part with its Content-Range.
    let r = request(addr, "GET", &path, &[("Range", "bytes=0-3,500000-500099")]).await;
    assert_eq!(r.status, 206);
    let ctype = &r.headers["content-type"];
    let boundary = ctype.split("boundary=").nth(1).expect("a boundary");
    assert_eq!(r.headers["content-length"], r.body.len().to_string());
    let text = r.body.clone();
    let mut parts = Vec::new();
    let sep = format!("--{boundary}");
    let mut rest = &text[..];
    while let Some(at) = rest.windows(sep.len()).position(|w| w == sep.as_bytes()) {
        rest = &rest[at + sep.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&rest[..end]).unwrap().to_string();
        let body_start = end + 4;
        let next = rest[body_start..]
            .windows(sep.len() + 2)
            .position(|w| w == format!("\r\n{sep}").as_bytes())
            .unwrap();
        parts.push((head, rest[body_start..body_start + next].to_vec()));
    }
    assert_eq!(parts.len(), 2);
    assert!(parts[0].0.contains(&format!("bytes 0-3/{}", data.len())));
    assert_eq!(parts[0].1, data[0..4]);
    assert!(
        parts[1]
            .0
            .contains(&format!("bytes 500000-500099/{}", data.len()))
    );
    assert_eq!(parts[1].1, data[500_000..500_100]);

    // Conditional requests.
    let r = request(addr, "GET", &path, &[("If-None-Match", &etag)]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = request(
        addr,
        "GET",
        &path,
        &[("Range", "bytes=0-1"), ("If-Range", "\"stale\"")],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, data.len()));

    // Bad ranges, unknown and malformed CIDs.
    for range in ["bytes=700000-", "bytes=800000-800001"] {
        let r = request(addr, "GET", &path, &[("Range", range)]).await;
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(
            r.headers["content-range"],
            format!("bytes */{}", data.len())
        );
    }
    let r = request(addr, "GET", &format!("/piece/{}", piece_cid(2)), &[]).await;
    assert_eq!(r.status, 404);
    for bad in [
        "nonsense",
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "b",
    ] {
        let r = request(addr, "GET", &format!("/piece/{bad}"), &[]).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let r = request(addr, "GET", "/nothing-here", &[]).await;
    assert_eq!(r.status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_stalled_clients_are_dropped() {
    let data = payload(32 << 20);
    let cid = piece_cid(3);
    let cfg = RetrievalConfig {
        header_timeout_secs: 1,
        stall_timeout_secs: 1,
        max_connections: 4,
        ..RetrievalConfig::default()
    };
    let (server, _dir) = start(&[(cid, data.clone())], cfg).await;
    let addr = server.addr();

    // A client that never finishes its headers is disconnected after the header timeout.
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /piece/").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the server closes a slow-loris connection");
    assert!(started.elapsed() < Duration::from_secs(8));

    // A client that asks for 32 MiB and stops reading: the response is dropped, so what it can
    // still read afterwards is short of the whole.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /piece/{cid} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("the dropped response ends")
        .ok();
    assert!(raw.len() < data.len(), "got {} bytes", raw.len());

    // Meanwhile the server answers others as usual.
    let r = request(
        addr,
        "GET",
        &format!("/piece/{cid}"),
        &[("Range", "bytes=0-99")],
    )
    .await;
    assert_eq!((r.status, &r.body[..]), (206, &data[..100]));
    server.stop().await;
}
