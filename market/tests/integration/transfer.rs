//! HTTP pulls against real axum servers: connections cut at random points, bodies too long,
//! lengths that do not match, redirects, a server that never answers, and private addresses.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lode_market::MarketError;
use lode_market::transfer::commp::verify_piece;
use lode_market::transfer::http::{TransferConfig, pull};
use lode_market::transfer::serve::serve_file;

use crate::common::*;

#[tokio::test]
async fn cut_connections_resume_and_the_commp_matches() {
    let data = payload(1_000_000, 1);
    let server = TestServer::start(ServerState {
        data: data.clone(),
        cuts_left: 40.into(),
        rng: 0x1234_5678_9abc_def1.into(),
        ..ServerState::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("payload");
    let progress = dir.path().join("progress");
    pull(
        &transfer_config(),
        &server.url("/file"),
        data.len() as u64,
        &dest,
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(
        server.state.cuts_left.load(Ordering::SeqCst),
        0,
        "every cut happened"
    );
    let gets = server.state.gets.load(Ordering::SeqCst);
    // Each cut made the pull ask again for the rest of its chunk.
    assert!(gets >= 16 + 30, "{gets} GETs");
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    verify_piece(&dest, data.len() as u64, &comm_p(&data, 1 << 20), 1 << 20).unwrap();
}

#[tokio::test]
async fn a_restart_fetches_only_the_missing_chunks() {
    let data = payload(640 * 1024, 2);
    let server = TestServer::start(ServerState {
        data: data.clone(),
        delay_ms: 30,
        ..ServerState::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("payload");
    let progress = dir.path().join("progress");
    let config = TransferConfig {
        parallel: 1,
        ..transfer_config()
    };
    // Interrupt the first pull (a provider killed) after a few chunks.
    let url = server.url("/file");
    let first = tokio::spawn({
        let (config, url, dest, progress) =
            (config.clone(), url.clone(), dest.clone(), progress.clone());
        async move { pull(&config, &url, data.len() as u64, &dest, &progress).await }
    });
    let started = Instant::now();
    while server.state.gets.load(Ordering::SeqCst) < 4
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    first.abort();
    let _ = first.await;
    let before = server.state.gets.load(Ordering::SeqCst);
    assert!(
        before < 10,
        "the first pull should not have finished ({before} GETs)"
    );
    pull(&config, &url, 640 * 1024, &dest, &progress)
        .await
        .unwrap();
    let after = server.state.gets.load(Ordering::SeqCst);
    // 10 chunks in all: the second pull asked only for those not recorded (at most one chunk
    // in flight at the interruption is fetched again).
    assert!(after - before <= 10 - before + 1, "{before} then {after}");
    assert_eq!(std::fs::read(&dest).unwrap(), payload(640 * 1024, 2));
}

#[tokio::test]
async fn a_body_longer_than_asked_fails_at_once() {
    let data = payload(100_000, 3);
    let server = TestServer::start(ServerState {
        data: data.clone(),
        extra: 10,
        ..ServerState::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let e = pull(
        &transfer_config(),
        &server.url("/file"),
        data.len() as u64,
        &dir.path().join("p"),
        &dir.path().join("q"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, MarketError::Transfer(why) if why.contains("more than")),
        "{e}"
    );
}

#[tokio::test]
async fn a_length_that_does_not_match_fails() {
    let data = payload(100_000, 4);
    for (head_len, words) in [(100_001, "longer than"), (99_999, "the deal's payload is")] {
        let server = TestServer::start(ServerState {
            data: data.clone(),
            head_len: Some(head_len),
            ..ServerState::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let e = pull(
            &transfer_config(),
            &server.url("/file"),
            data.len() as u64,
            &dir.path().join("p"),
            &dir.path().join("q"),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, MarketError::Transfer(why) if why.contains(words)),
            "{e}"
        );
        assert_eq!(server.state.gets.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = TestServer::start(ServerState::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let e = pull(
        &transfer_config(),
        &server.url("/redirect"),
        10,
        &dir.path().join("p"),
        &dir.path().join("q"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, MarketError::Transfer(why) if why.contains("redirect")),
        "{e}"
    );
}

#[tokio::test]
async fn a_url_that_never_answers_fails_in_bounded_time() {
    let server = TestServer::start(ServerState::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = TransferConfig {
        attempt_timeout_ms: 200,
        max_attempts: 3,
        ..transfer_config()
    };
    let started = Instant::now();
    let e = pull(
        &config,
        &server.url("/never"),
        10,
        &dir.path().join("p"),
        &dir.path().join("q"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, MarketError::Transfer(why) if why.contains("no answer")),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The overall timeout bounds it too.
    let config = TransferConfig {
        attempt_timeout_ms: 60_000,
        overall_timeout_secs: 1,
        ..transfer_config()
    };
    let started = Instant::now();
    let e = pull(
        &config,
        &server.url("/never"),
        10,
        &dir.path().join("p"),
        &dir.path().join("q"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, MarketError::Transfer(why) if why.contains("not complete")),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let data = payload(5000, 5);
    let server = TestServer::start(ServerState {
        data,
        ..ServerState::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = TransferConfig {
        allow_private_addresses: false,
        ..transfer_config()
    };
    for url in [
        server.url("/file"),
        server.url("/file").replace("127.0.0.1", "localhost"),
    ] {
        let e = pull(
            &config,
            &url,
            5000,
            &dir.path().join("p"),
            &dir.path().join("q"),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, MarketError::Transfer(why) if why.contains("private or loopback")),
            "{url}: {e}"
        );
    }
    assert_eq!(server.state.gets.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_client_server_serves_ranges_to_the_pull() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.car");
    let data = payload(300_000, 6);
    std::fs::write(&file, &data).unwrap();
    let served = serve_file(&file, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    assert!(served.url().starts_with("http://127.0.0.1:"));
    let dest = dir.path().join("got");
    pull(
        &transfer_config(),
        served.url(),
        data.len() as u64,
        &dest,
        &dir.path().join("q"),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    // Another path on the same server is not the file.
    let other = served.url().rsplit_once('/').unwrap().0.to_string() + "/guess";
    let e = pull(
        &transfer_config(),
        &other,
        data.len() as u64,
        &dest,
        &dir.path().join("q"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, MarketError::Transfer(why) if why.contains("404")),
        "{e}"
    );
    served.stop().await;
}

/// Loopback throughput of the pull from the client's file server, and of the CommP check
/// (BENCHMARKS.md): `cargo test --release -p lode-market --test integration -- --ignored
/// --nocapture loopback_throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn loopback_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    let size: usize = 256 << 20;
    std::fs::write(&file, payload(size, 7)).unwrap();
    let served = serve_file(&file, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let config = TransferConfig {
        allow_private_addresses: true,
        ..TransferConfig::default()
    };
    let dest = dir.path().join("got");
    let started = Instant::now();
    pull(
        &config,
        served.url(),
        size as u64,
        &dest,
        &dir.path().join("q"),
    )
    .await
    .unwrap();
    let pull_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let c = lode_market::transfer::commp::commp_of_file(&dest, size as u64).unwrap();
    let commp_secs = started.elapsed().as_secs_f64();
    println!(
        "pull of {} MiB: {:.2} s, {:.0} MiB/s; CommP of it: {:.2} s, {:.0} MiB/s (piece {})",
        size >> 20,
        pull_secs,
        (size >> 20) as f64 / pull_secs,
        commp_secs,
        (size >> 20) as f64 / commp_secs,
        c.padded_size
    );
    served.stop().await;
}
