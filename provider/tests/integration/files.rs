//! Sector files between workers over real HTTP: a whole fetch, a resumed one, a damaged partial
//! file caught by the checksum, a wrong cluster secret, and names that are not sector files.

use std::path::Path;

use lode_provider::files::{fetch, router, servable};

fn bytes(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ salt).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sector_files_are_fetched_with_resume_checksums_and_the_secret() {
    let served = tempfile::tempdir().unwrap();
    let sector = served.path().join("s-1000-5");
    std::fs::create_dir_all(&sector).unwrap();
    let sealed = bytes(3 << 20, 1);
    let tree_r = bytes(1 << 20, 2);
    let commit1 = bytes(70_000, 3);
    std::fs::write(sector.join("sealed"), &sealed).unwrap();
    std::fs::write(sector.join("tree-r"), &tree_r).unwrap();
    std::fs::write(sector.join("commit1.bin"), &commit1).unwrap();
    std::fs::write(sector.join("secret.txt"), b"not served").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(served.path().to_path_buf(), "s3cret".into());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let read = |p: &Path| std::fs::read(p).unwrap();

    // A whole file.
    let got = fetch(&client, &base, "s3cret", 1000, 5, "sealed", d)
        .await
        .unwrap();
    assert_eq!(got, sealed.len() as u64);
    assert!(read(&d.join("sealed")) == sealed);
    // Already there: nothing transferred.
    assert_eq!(
        fetch(&client, &base, "s3cret", 1000, 5, "sealed", d)
            .await
            .unwrap(),
        0
    );

    // Resumed from a partial file: only the rest crosses the wire.
    std::fs::write(d.join("tree-r.part"), &tree_r[..300_000]).unwrap();
    let got = fetch(&client, &base, "s3cret", 1000, 5, "tree-r", d)
        .await
        .unwrap();
    assert_eq!(got, (tree_r.len() - 300_000) as u64);
    assert!(read(&d.join("tree-r")) == tree_r);
    assert!(!d.join("tree-r.part").exists());

    // A damaged partial file: the checksum refuses it, nothing is renamed into place, and the
    // next try fetches it whole.
    let mut bad = commit1[..10_000].to_vec();
    bad[17] ^= 0xff;
    std::fs::write(d.join("commit1.bin.part"), &bad).unwrap();
    let refused = fetch(&client, &base, "s3cret", 1000, 5, "commit1.bin", d)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("checksum"), "{refused}");
    assert!(!d.join("commit1.bin").exists() && !d.join("commit1.bin.part").exists());
    fetch(&client, &base, "s3cret", 1000, 5, "commit1.bin", d)
        .await
        .unwrap();
    assert!(read(&d.join("commit1.bin")) == commit1);

    // The wrong secret, a missing file, a file that is not a sector file.
    let other = tempfile::tempdir().unwrap();
    let refused = fetch(&client, &base, "guess", 1000, 5, "sealed", other.path())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("secret"), "{refused}");
    let missing = fetch(&client, &base, "s3cret", 1000, 6, "sealed", other.path())
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("404"), "{missing}");
    for name in ["secret.txt", "..%2Fs-1000-5%2Fsealed", "layer-", "layer-1x"] {
        let r = client
            .get(format!("{base}/sectors/1000/5/{name}"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{name}");
    }
    assert!(std::fs::read_dir(other.path()).unwrap().next().is_none());
    assert!(servable("layer-11") && servable("sealed") && !servable("lock"));
}
