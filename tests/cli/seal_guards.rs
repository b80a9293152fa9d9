//! A sector directory guards itself, and every `lode seal` command can be run again: each case here
//! was once accepted with exit 0 and a damaged or contradictory sector as the result. Every test drives
//! the `lode` binary as a user would.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(args)
        .env_remove("LODE_PARAMS_DIR")
        .env_remove("LODE_CACHE_DIR")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
}

/// Asserts a refusal: exit 1, nothing on stdout, and `needle` in the message.
fn refused(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

const TICKET: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
const OTHER: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const SEED: &str = "2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f00";

struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    fn piece(&self, name: &str, len: usize, salt: usize) -> String {
        let data: Vec<u8> = (0..len).map(|i| ((i * 13 + salt) % 251) as u8).collect();
        std::fs::write(self.path(name), data).unwrap();
        self.s(name)
    }

    /// A fully sealed 2 KiB sector 1 of miner 1000 (through Commit1) with one piece.
    fn sealed_2kib(&self, name: &str) -> String {
        let piece = self.piece(&format!("{name}.piece"), 1000, 5);
        let dir = self.s(name);
        let cache = self.s("cache");
        ok(&lode(&[
            "seal",
            "run",
            "--sector-size",
            "2KiB",
            "--sector-dir",
            &dir,
            "--sector-number",
            "1",
            "--cache-dir",
            &cache,
            "--ticket",
            TICKET,
            "--seed",
            SEED,
            "--json",
            &piece,
        ]));
        dir
    }
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn seal_run_killed_during_precommit1_is_resumed_by_the_same_command() {
    let f = Fixture::new();
    let piece = f.piece("movie", 3_000_000, 1);
    let cache = f.s("cache");
    let args = |dir: &str| -> Vec<String> {
        [
            "seal",
            "run",
            "--sector-size",
            "8MiB",
            "--sector-dir",
            dir,
            "--cache-dir",
            &cache,
            "--ticket",
            TICKET,
            "--seed",
            SEED,
            "--json",
            &piece,
        ]
        .map(String::from)
        .to_vec()
    };
    let reference_dir = f.s("reference");
    let reference = ok(&Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(args(&reference_dir))
        .output()
        .unwrap());

    let dir = f.s("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(args(&dir))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let layer1 = Path::new(&dir).join("layer-1");
    let start = std::time::Instant::now();
    while !layer1.exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // The same command again: the piece is recognised, the layers resume, and the result is the same.
    let resumed = ok(&Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(args(&dir))
        .output()
        .unwrap());
    for key in ["comm_d", "replica_id", "comm_c", "comm_r_last", "comm_r"] {
        assert_eq!(resumed[key], reference[key], "{key}");
    }
    assert_eq!(resumed["pieces"][0]["added"], false);
    assert_eq!(resumed["pieces"][0]["offset"], 0);

    // Once more, after everything is done: every phase is skipped and nothing changes.
    let sealed = read(Path::new(&dir).join("sealed"));
    let again = ok(&Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(args(&dir))
        .output()
        .unwrap());
    assert_eq!(again["comm_r"], reference["comm_r"]);
    let skipped: Vec<&str> = again["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["addpiece", "precommit1", "precommit2", "commit1"]);
    assert_eq!(read(Path::new(&dir).join("sealed")), sealed);

    // Another piece list for the same sector is refused.
    let other = f.piece("other", 3_000_000, 2);
    let mut wrong = args(&dir);
    *wrong.last_mut().unwrap() = other;
    let o = Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(&wrong)
        .output()
        .unwrap();
    refused(&o, "this sector was started with other pieces");
}

#[test]
fn commands_on_a_sector_take_its_identity_from_the_directory_and_check_what_is_given() {
    let f = Fixture::new();
    let dir = f.sealed_2kib("s1");
    let cache = f.s("cache");
    let layer1 = Path::new(&dir).join("layer-1");

    // Finalize of "sector 9, 8 MiB" on 2 KiB sector 1: refused, nothing deleted.
    let o = lode(&[
        "seal",
        "finalize",
        "--sector-size",
        "8MiB",
        "--sector-number",
        "9",
        "--sector-dir",
        &dir,
    ]);
    refused(
        &o,
        "the sector directory holds sector 1 of miner 1000 (2KiB)",
    );
    assert!(layer1.exists());
    // PreCommit2 for miner 5 on miner 1000's sector: refused.
    let o = lode(&["seal", "pc2", "--miner-id", "5", "--sector-dir", &dir]);
    refused(&o, "not miner 5");
    // Unseal with nothing but the directory: the record says which sector it is.
    let out = f.s("out");
    ok(&lode(&[
        "seal",
        "unseal",
        "--sector-dir",
        &dir,
        "--cache-dir",
        &cache,
        "--piece",
        "0",
        "-o",
        &out,
    ]));
    assert_eq!(read(&out), read(f.path("s1.piece")));
    // A command on a directory that holds no sector says so, and creates nothing.
    let missing = f.s("missing");
    let o = lode(&["seal", "pc2", "--sector-dir", &missing]);
    refused(&o, "not a sector directory");
    assert!(!Path::new(&missing).exists());
    // A new sector needs its size.
    let o = lode(&["seal", "pc1", "--sector-dir", &f.s("new")]);
    refused(&o, "a new sector needs its size");
}

#[test]
fn a_second_process_on_a_sector_is_refused_while_the_first_holds_it() {
    let f = Fixture::new();
    let dir = f.path("busy");
    std::fs::create_dir_all(&dir).unwrap();
    // Another process's lock, taken the way lode takes it.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .unwrap();
    lock.lock().unwrap();
    let piece = f.piece("p", 500, 3);
    let o = lode(&[
        "seal",
        "run",
        "--sector-size",
        "2KiB",
        "--sector-dir",
        dir.to_str().unwrap(),
        "--cache-dir",
        &f.s("cache"),
        &piece,
    ]);
    refused(&o, "is in use by another lode process");
    assert!(!dir.join("sector.json").exists());
    assert!(!dir.join("unsealed").exists());
    drop(lock);
    ok(&lode(&[
        "seal",
        "add-piece",
        "--sector-size",
        "2KiB",
        "--sector-dir",
        dir.to_str().unwrap(),
        "--json",
        &piece,
    ]));
}

#[test]
fn phases_refuse_to_run_on_a_sector_whose_records_contradict_them() {
    let f = Fixture::new();
    let dir = f.sealed_2kib("s1");
    let d = Path::new(&dir);
    let cache = f.s("cache");
    let records: Vec<Vec<u8>> = ["pc1.json", "pc2.json", "commit1.json", "sealed"]
        .iter()
        .map(|n| read(d.join(n)))
        .collect();

    // AddPiece on a sealed sector.
    let extra = f.piece("extra", 100, 9);
    let o = lode(&["seal", "add-piece", "--sector-dir", &dir, &extra]);
    refused(&o, "PreCommit1 has started on this sector");
    // PreCommit1 without --ticket: the recorded ticket, found done, nothing re-sealed.
    let report = ok(&lode(&[
        "seal",
        "pc1",
        "--sector-dir",
        &dir,
        "--cache-dir",
        &cache,
        "--json",
    ]));
    assert_eq!(report["skipped"][0], "precommit1");
    // PreCommit1 with another ticket.
    let o = lode(&[
        "seal",
        "pc1",
        "--sector-dir",
        &dir,
        "--cache-dir",
        &cache,
        "--ticket",
        OTHER,
    ]);
    refused(&o, "PreCommit1 already ran with ticket");
    // PreCommit2 again: found done, the replica untouched.
    let report = ok(&lode(&["seal", "pc2", "--sector-dir", &dir, "--json"]));
    assert_eq!(report["skipped"][0], "precommit2");
    let after: Vec<Vec<u8>> = ["pc1.json", "pc2.json", "commit1.json", "sealed"]
        .iter()
        .map(|n| read(d.join(n)))
        .collect();
    assert_eq!(after, records);

    // A byte flipped in `unsealed` between PreCommit1 and PreCommit2.
    let piece = f.piece("q", 1000, 7);
    let fresh = f.s("fresh");
    let mut args = vec![
        "seal",
        "pc1",
        "--sector-size",
        "2KiB",
        "--sector-dir",
        &fresh,
        "--cache-dir",
        &cache,
    ];
    ok(&lode(&[
        "seal",
        "add-piece",
        "--sector-size",
        "2KiB",
        "--sector-dir",
        &fresh,
        &piece,
    ]));
    args.push("--json");
    ok(&lode(&args));
    let unsealed = Path::new(&fresh).join("unsealed");
    let mut bytes = read(&unsealed);
    bytes[10] ^= 1;
    std::fs::write(&unsealed, bytes).unwrap();
    let o = lode(&["seal", "pc2", "--sector-dir", &fresh]);
    refused(&o, "changed since PreCommit1 recorded it");
    assert!(!Path::new(&fresh).join("sealed").exists());
    assert!(!Path::new(&fresh).join("pc2.json").exists());
}

#[test]
fn commit2_checks_its_inputs_before_proving() {
    let f = Fixture::new();
    let dir = f.sealed_2kib("s1");
    let d = Path::new(&dir);
    // No parameters are needed to find these: the inputs are refused before any proving starts.
    let params = f.s("no-params");
    let proof = d.join("commit1.bin");
    let good = read(&proof);
    let mut bad = good.clone();
    bad[200] ^= 1;
    std::fs::write(&proof, &bad).unwrap();
    let started = std::time::Instant::now();
    let o = lode(&[
        "seal",
        "commit2",
        "--sector-dir",
        &dir,
        "--params-dir",
        &params,
    ]);
    refused(&o, "does not prove the sector's public inputs");
    assert!(started.elapsed().as_secs() < 20);
    assert!(!d.join("commit2.bin").exists());
    assert!(!Path::new(&params).exists(), "no parameters generated");
    std::fs::write(&proof, &good).unwrap();

    // Another seed written into commit1.json: it no longer matches commit1.bin.
    let public = d.join("commit1.json");
    let mut p: serde_json::Value = serde_json::from_slice(&read(&public)).unwrap();
    p["seed"] = OTHER.into();
    std::fs::write(&public, serde_json::to_vec(&p).unwrap()).unwrap();
    let o = lode(&[
        "seal",
        "commit2",
        "--sector-dir",
        &dir,
        "--params-dir",
        &params,
    ]);
    refused(&o, "does not prove the sector's public inputs");
    // Another sector number: it no longer matches the sector's own records.
    p["seed"] = SEED.into();
    p["sector_number"] = 2.into();
    std::fs::write(&public, serde_json::to_vec(&p).unwrap()).unwrap();
    let o = lode(&[
        "seal",
        "commit2",
        "--sector-dir",
        &dir,
        "--params-dir",
        &params,
    ]);
    refused(&o, "commit1.json changed since");
}

#[test]
fn a_failed_unseal_leaves_an_existing_output_file_alone() {
    let f = Fixture::new();
    let dir = f.sealed_2kib("s1");
    let keep = f.path("keep.txt");
    std::fs::write(&keep, b"precious").unwrap();
    let o = lode(&[
        "seal",
        "unseal",
        "--sector-dir",
        &dir,
        "--cache-dir",
        &f.s("cache"),
        "--piece",
        "3",
        "-o",
        keep.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(read(&keep), b"precious");
    let leftovers: Vec<_> = std::fs::read_dir(f.tmp.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("keep.txt."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn post_refuses_duplicate_and_missing_sectors_and_creates_nothing() {
    let f = Fixture::new();
    let a = f.sealed_2kib("a");
    let b = f.sealed_2kib("b"); // also sector 1 of miner 1000
    let params = f.s("no-params");
    let out = f.s("post.json");
    let post = |dirs: &[&str]| {
        let mut args = vec![
            "post",
            "window",
            "--randomness",
            SEED,
            "--params-dir",
            &params,
            "-o",
            &out,
        ];
        args.extend(dirs);
        lode(&args)
    };
    refused(&post(&[&a, &b]), "sector 1 is given twice");
    let a_again = format!("{a}/.");
    refused(&post(&[&a, &a_again]), "are the same sector directory");
    let missing = f.s("missing");
    refused(&post(&[&a, &missing]), "not a sector directory");
    assert!(!Path::new(&missing).exists());
    refused(
        &lode(&[
            "post",
            "winning",
            "--randomness",
            SEED,
            "--miner-id",
            "5",
            "--params-dir",
            &params,
            "-o",
            &out,
            &a,
        ]),
        "prove each miner and size separately",
    );
    assert!(!Path::new(&out).exists());
    assert!(!Path::new(&params).exists());
}

#[test]
fn verifiers_refuse_empty_or_contradictory_files_and_never_invent_keys() {
    let f = Fixture::new();
    let params = f.s("no-params");
    // A PoSt file that proves nothing.
    let empty = f.path("empty.json");
    std::fs::write(
        &empty,
        format!(
            r#"{{"kind":"window-post","sector_size":"2KiB","miner_id":1000,"randomness":"{SEED}","sectors":[],"faulty":[],"proofs":[]}}"#
        ),
    )
    .unwrap();
    let o = lode(&[
        "verify",
        "post",
        empty.to_str().unwrap(),
        "--params-dir",
        &params,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "invalid: the file proves no sectors"
    );
    // A sector both proven and faulty.
    let both = f.path("both.json");
    let comm_r = "01".repeat(32);
    let proof = "00".repeat(192);
    std::fs::write(
        &both,
        format!(
            r#"{{"kind":"window-post","sector_size":"2KiB","miner_id":1000,"randomness":"{SEED}","sectors":[[4,"{comm_r}"]],"faulty":[[4,"gone"]],"proofs":["{proof}"]}}"#
        ),
    )
    .unwrap();
    let o = lode(&[
        "verify",
        "post",
        both.to_str().unwrap(),
        "--params-dir",
        &params,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("faulty and also proven"));

    // A well-formed statement whose key does not exist: exit 2 with what to run, nothing generated.
    let ok_file = f.path("one.json");
    std::fs::write(
        &ok_file,
        format!(
            r#"{{"kind":"window-post","sector_size":"2KiB","miner_id":1000,"randomness":"{SEED}","sectors":[[4,"{comm_r}"]],"faulty":[],"proofs":["{proof}"]}}"#
        ),
    )
    .unwrap();
    let o = lode(&[
        "verify",
        "post",
        ok_file.to_str().unwrap(),
        "--params-dir",
        &params,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lode params generate"));

    // `verify porep` for an 8 MiB sector without its key: at once, exit 2.
    let public = f.path("public.json");
    std::fs::write(
        &public,
        format!(
            r#"{{"sector_size":"8MiB","miner_id":1000,"sector_number":1,"ticket":"{TICKET}","seed":"{SEED}","comm_d":"{comm_r}","comm_r":"{comm_r}"}}"#
        ),
    )
    .unwrap();
    let proof_file = f.path("commit2.bin");
    std::fs::write(&proof_file, vec![0u8; 192]).unwrap();
    let started = std::time::Instant::now();
    let o = lode(&[
        "verify",
        "porep",
        "--public",
        public.to_str().unwrap(),
        "--proof",
        proof_file.to_str().unwrap(),
        "--params-dir",
        &params,
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("no verifying key"));
    assert!(started.elapsed().as_secs() < 10);
    assert!(!Path::new(&params).exists());
}

#[test]
fn verify_commit1_names_the_public_input_that_fails() {
    let f = Fixture::new();
    let dir = f.sealed_2kib("s1");
    let d = Path::new(&dir);
    let public = d.join("commit1.json");
    let original: serde_json::Value = serde_json::from_slice(&read(&public)).unwrap();
    let check = |field: &str, value: serde_json::Value, needle: &str| {
        let mut p = original.clone();
        p[field] = value;
        let path = f.path(&format!("{field}.json"));
        std::fs::write(&path, serde_json::to_vec(&p).unwrap()).unwrap();
        let o = lode(&[
            "seal",
            "verify-commit1",
            "--public",
            path.to_str().unwrap(),
            "--proof",
            d.join("commit1.bin").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(needle),
            "{field}: expected {needle:?} in {out}"
        );
    };
    check("miner_id", 5.into(), "miner id, sector number or ticket");
    check("ticket", OTHER.into(), "miner id, sector number or ticket");
    check(
        "sector_number",
        2.into(),
        "miner id, sector number or ticket",
    );
    check("seed", OTHER.into(), "seed");
    check("comm_d", OTHER.into(), "comm_d");
    check("comm_r", OTHER.into(), "comm_r");
}

/// `lode` with the capacity check's stand-in figures (bytes) in place of the system's.
fn lode_with_space(args: &[String], disk: Option<&str>, memory: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lode"));
    cmd.args(args)
        .env_remove("LODE_PARAMS_DIR")
        .env_remove("LODE_CACHE_DIR")
        .env_remove("LODE_TEST_AVAILABLE_DISK")
        .env_remove("LODE_TEST_AVAILABLE_MEMORY");
    if let Some(d) = disk {
        cmd.env("LODE_TEST_AVAILABLE_DISK", d);
    }
    if let Some(m) = memory {
        cmd.env("LODE_TEST_AVAILABLE_MEMORY", m);
    }
    cmd.output().unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn seal_commands_without_the_space_they_need_are_refused_before_writing_anything() {
    let f = Fixture::new();
    let piece = f.piece("p", 1000, 5);
    let cache = f.s("cache");
    let command = |cmd: &str, dir: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["seal", cmd, "--sector-size", "2KiB", "--sector-dir", dir]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(["--cache-dir".into(), cache.clone(), "--json".into()]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let dir = f.s("s");
    let run = command("run", &dir, &["--ticket", TICKET, "--seed", SEED, &piece]);

    // A whole run on 4 KiB of disk: refused with the figures, and nothing is created.
    let o = lode_with_space(&run, Some("4096"), None);
    refused(
        &o,
        "AddPiece, PreCommit1, PreCommit2 and Commit1 of a 2KiB sector needs",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    for needle in [
        "(4.0 KiB free)",
        "the parent cache (3.6 KiB)",
        "2 layers (4.0 KiB)",
        "the pieces (1.0 KiB)",
        "--sector-dir",
    ] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
    assert!(o.stdout.is_empty());
    assert!(!f.path("s").exists() && !f.path("cache").exists());

    // The piece fits; PreCommit1 then does not (its layers, tree D and the parent cache), and
    // nothing of it is written.
    ok(&lode_with_space(
        &command("add-piece", &dir, &[&piece]),
        None,
        None,
    ));
    let before = files_in(&f.path("s"));
    let pc1 = command("pc1", &dir, &["--ticket", TICKET]);
    refused(
        &lode_with_space(&pc1, Some("50000"), None),
        "PreCommit1 of a 2KiB sector needs",
    );
    // Memory too: two 2 KiB layers of labels.
    refused(
        &lode_with_space(&pc1, None, Some("1000")),
        "needs 4.0 KiB of memory for two layers of labels, but 1000 bytes is available",
    );
    // A stand-in figure that is not a number is an error, not a silent default.
    refused(
        &lode_with_space(&pc1, Some("lots"), None),
        "LODE_TEST_AVAILABLE_DISK=\"lots\" is not a byte count",
    );
    assert_eq!(files_in(&f.path("s")), before);
    assert!(files_in(&f.path("cache")).is_empty());
    assert!(!f.path("s").join("layer-1").exists());

    // With the space, the same run seals. Run again on the sealed sector, only the Commit1 output and
    // the records need room (PreCommit1 and PreCommit2 are done), so a limit that refuses a new
    // sector lets it through.
    let sealed = ok(&lode_with_space(&run, None, None));
    assert!(sealed["comm_r"].is_string());
    let again = ok(&lode_with_space(&run, Some("200000"), None));
    assert_eq!(again["comm_r"], sealed["comm_r"]);
    let fresh = command(
        "run",
        &f.s("t"),
        &["--ticket", TICKET, "--seed", SEED, &piece],
    );
    refused(
        &lode_with_space(&fresh, Some("200000"), None),
        "of a 2KiB sector needs",
    );
    assert!(!f.path("t").exists());
}
