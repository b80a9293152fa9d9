//! `lode client import` and `lode client list-imports`, run as a user runs them: the built binary,
//! a client directory of the test's own, a directory tree imported and its CAR unpacked again.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{json_of, ok};
use lode_market::car::unpack_car;
use lode_market::unixfs::UnpackLimits;

fn lode_in(client_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(args)
        .env("LODE_CLIENT_DIR", client_dir)
        .output()
        .unwrap()
}

/// Relative path → contents (`None` for a directory).
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

#[test]
fn a_directory_is_imported_listed_and_unpacks_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let client = tmp.path().join("client");
    let src = tmp.path().join("photos");
    fs::create_dir_all(src.join("2025/summer")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("README"), b"holiday photos\n").unwrap();
    let big: Vec<u8> = (0..2_500_000u32).map(|i| (i * 31 % 256) as u8).collect();
    fs::write(src.join("2025/summer/beach.raw"), &big).unwrap();
    fs::write(src.join("2025/notes.txt"), b"").unwrap();

    let rec = ok(&lode_in(
        &client,
        &["client", "import", src.to_str().unwrap(), "--json"],
    ));
    assert_eq!(rec["id"], 1);
    assert_eq!(rec["kind"], "directory");
    let root = rec["payload_root"].as_str().unwrap();
    let piece = rec["piece_cid"].as_str().unwrap();
    assert!(root.starts_with("bafybei"), "{rec}");
    assert!(piece.starts_with('b'), "{rec}");
    let car = client.join(rec["car_path"].as_str().unwrap());
    assert_eq!(
        rec["payload_size"].as_u64().unwrap(),
        fs::metadata(&car).unwrap().len()
    );
    let padded = rec["padded_piece_size"].as_u64().unwrap();
    assert!(padded.is_power_of_two() && padded * 127 / 128 >= fs::metadata(&car).unwrap().len());
    // `lode piece commp` of the kept CAR gives the same piece.
    let commp = ok(&lode_in(
        &client,
        &["piece", "commp", car.to_str().unwrap(), "--json"],
    ));
    assert_eq!(commp["piece_cid"], rec["piece_cid"]);
    assert_eq!(commp["padded_size"], rec["padded_piece_size"]);

    // The CAR unpacks to the same files.
    let out = tmp.path().join("back");
    unpack_car(&car, None, &out, &UnpackLimits::default(), &mut |_| {}).unwrap();
    assert_eq!(tree(&out), tree(&src));

    // Listed, as JSON and as text.
    let list = ok(&lode_in(&client, &["client", "list-imports", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0], rec);
    let text = lode_in(&client, &["client", "list-imports"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains(root) && text.contains(piece), "{text}");

    // Text output of an import; --client-dir wins over the environment.
    let other = tmp.path().join("other-client");
    let out = lode_in(
        &client,
        &[
            "client",
            "import",
            src.join("README").to_str().unwrap(),
            "--client-dir",
            other.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for field in ["payload root", "piece CID", "padded size", "payload size"] {
        assert!(text.contains(field), "{text}");
    }
    assert!(other.join("imports/1.json").exists());
    assert_eq!(
        ok(&lode_in(&client, &["client", "list-imports", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn bad_input_fails_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let client = tmp.path().join("client");
    let out = lode_in(&client, &["client", "import", "/nonexistent/file"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("/nonexistent/file"), "{err}");

    // A CAR whose block is corrupted.
    let f = tmp.path().join("f.txt");
    fs::write(&f, b"some text to pack").unwrap();
    let rec = ok(&lode_in(
        &client,
        &["client", "import", f.to_str().unwrap(), "--json"],
    ));
    let mut car = fs::read(client.join(rec["car_path"].as_str().unwrap())).unwrap();
    let last = car.len() - 1;
    car[last] ^= 1;
    let bad = tmp.path().join("bad.car");
    fs::write(&bad, &car).unwrap();
    let out = lode_in(&client, &["client", "import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("does not hash to its CID"), "{err}");
    // Nothing was recorded for it.
    let list = json_of(&lode_in(&client, &["client", "list-imports", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn retrieve_unpacks_an_import_from_a_retrieval_server() {
    use std::sync::Arc;

    use lode_market::retrieval::{DirPieces, RetrievalConfig, serve};

    let tmp = tempfile::tempdir().unwrap();
    let client = tmp.path().join("client");
    let src = tmp.path().join("docs");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), b"first file\n").unwrap();
    let big: Vec<u8> = (0..1_300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(src.join("sub/b.bin"), &big).unwrap();
    let rec = ok(&lode_in(
        &client,
        &["client", "import", src.to_str().unwrap(), "--json"],
    ));
    let root = rec["payload_root"].as_str().unwrap();
    let piece = rec["piece_cid"].as_str().unwrap();
    let car = client.join(rec["car_path"].as_str().unwrap());

    // The provider's retrieval server holds the CAR as the piece's payload.
    let pieces = tmp.path().join("pieces");
    fs::create_dir_all(&pieces).unwrap();
    fs::copy(&car, pieces.join(piece)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(serve(
            &RetrievalConfig::default(),
            Arc::new(DirPieces::new(&pieces)),
        ))
        .unwrap();
    let url = server.url();

    // By payload root (resolved through the import): the same files come back.
    let out = tmp.path().join("back");
    let got = ok(&lode_in(
        &client,
        &[
            "client",
            "retrieve",
            root,
            "-o",
            out.to_str().unwrap(),
            "--url",
            &url,
            "--json",
        ],
    ));
    assert_eq!(got["output"]["kind"], "unpacked", "{got}");
    assert_eq!(got["piece_size"], rec["padded_piece_size"]);
    assert_eq!(tree(&out), tree(&src));

    // An existing output is refused; `--car` writes the CAR itself.
    let again = lode_in(
        &client,
        &[
            "client",
            "retrieve",
            root,
            "-o",
            out.to_str().unwrap(),
            "--url",
            &url,
        ],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let out_car = tmp.path().join("back.car");
    let text = lode_in(
        &client,
        &[
            "client",
            "retrieve",
            piece,
            "-o",
            out_car.to_str().unwrap(),
            "--url",
            &url,
            "--car",
        ],
    );
    assert!(text.status.success(), "{text:?}");
    assert!(String::from_utf8_lossy(&text.stdout).contains("commitment checked"));
    assert_eq!(fs::read(&out_car).unwrap(), fs::read(&car).unwrap());
    drop(server);
}

#[test]
fn deal_and_retrieve_arguments_are_checked_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let client = tmp.path().join("client");
    let fails_with = |args: &[&str], needle: &str| {
        let out = lode_in(&client, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    let deal = [
        "client",
        "deal",
        "--provider",
        "l01000",
        "--piece",
        "1",
        "--duration",
        "500",
    ];
    // --no-wait only with --url; --url and --push exclude each other.
    fails_with(&[&deal[..], &["--no-wait"]].concat(), "--url");
    fails_with(
        &[&deal[..], &["--url", "http://x/y", "--push"]].concat(),
        "cannot be used with",
    );
    // A piece that is not an import, without the sizes --url needs.
    fails_with(
        &[&deal[..], &["--api", "127.0.0.1:1"]].concat(),
        "lode client import",
    );
    fails_with(
        &[
            "client",
            "deal",
            "--provider",
            "nonsense",
            "--piece",
            "1",
            "--duration",
            "5",
        ],
        "miner actor",
    );
    // A payload root nobody knows, and no provider for a piece.
    fails_with(
        &[
            "client",
            "retrieve",
            "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
            "-o",
            "x",
        ],
        "give the piece CID",
    );
    fails_with(
        &[
            "client",
            "retrieve",
            "bagazrqabqkmmaajadjczr2x3bsjvm5oamiuofhkid546cpknst4kdarks6edkprp5akq",
            "-o",
            "x",
        ],
        "--provider",
    );
    // `deals` with no node: the local records (none), with a warning.
    let out = lode_in(
        &client,
        &["client", "deals", "--api", "127.0.0.1:1", "--json"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_of(&out), serde_json::json!([]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    // `balance` names its actions.
    let help = lode_in(&client, &["client", "balance", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    assert!(help.contains("add") && help.contains("withdraw"), "{help}");
}
