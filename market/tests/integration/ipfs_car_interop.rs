//! Interoperability with `ipfs-car` (the JavaScript CAR packer most IPFS users have): it unpacks the
//! CARs lode packs to the same files, lode unpacks the CARs it packs, and for the same data both
//! write the same CAR, byte for byte (so the same root CID and the same piece CID).
//!
//! The test installs `ipfs-car` with npm into `target/` (once; later runs reuse it). Where npm or
//! its registry is unavailable the tests are skipped with a note, unless `LODE_REQUIRE_IPFS_CAR`
//! is set (CI sets it), and then they fail.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lode_market::car::{CarFileWriter, index_car, unpack_car};
use lode_market::unixfs::{DagParams, UnpackLimits, pack_path};

const IPFS_CAR: &str = "ipfs-car@3.1.0";
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a command to completion within `timeout`; its stdout, or why it failed.
fn run(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let out_path = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let err_path = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out_path.reopen().map_err(|e| e.to_string())?)
        .stderr(err_path.reopen().map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what}: no answer within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = fs::read_to_string(out_path.path()).unwrap_or_default();
    let stderr = fs::read_to_string(err_path.path()).unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!("{what}: {status}\n{stdout}\n{stderr}"))
    }
}

/// The `ipfs-car` executable, installed into `target/` on first use; `None` (with the reason
/// printed) when it cannot be had and it is not required.
fn ipfs_car() -> Option<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BIN.get_or_init(|| {
        let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ipfs-car");
        let bin = prefix.join("node_modules/.bin/ipfs-car");
        if !bin.exists() {
            run(Command::new("node").arg("--version"), RUN_TIMEOUT)
                .map_err(|e| format!("Node.js is not available ({e})"))?;
            fs::create_dir_all(&prefix).map_err(|e| e.to_string())?;
            run(
                Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--prefix"])
                    .arg(&prefix)
                    .arg(IPFS_CAR),
                INSTALL_TIMEOUT,
            )
            .map_err(|e| format!("npm could not install {IPFS_CAR} ({e})"))?;
        }
        run(Command::new(&bin).arg("--version"), RUN_TIMEOUT)
            .map_err(|e| format!("ipfs-car does not run ({e})"))?;
        Ok(bin)
    });
    match found {
        Ok(bin) => Some(bin.as_path()),
        Err(why) => {
            assert!(
                std::env::var_os("LODE_REQUIRE_IPFS_CAR").is_none(),
                "ipfs-car is required (LODE_REQUIRE_IPFS_CAR is set): {why}"
            );
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            let _ = writeln!(std::io::stderr(), "skipped: {why}");
            None
        }
    }
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

/// A directory of files of several sizes (one over 1 MiB, one empty), nested, no empty directory
/// (`ipfs-car pack` walks files only).
fn sample(root: &Path) -> PathBuf {
    let src = root.join("sample");
    fs::create_dir_all(src.join("b/c")).unwrap();
    fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    fs::write(src.join("Empty"), b"").unwrap();
    let big: Vec<u8> = (0..2_300_000u32).map(|i| (i * 13 % 255) as u8).collect();
    fs::write(src.join("b/big.bin"), big).unwrap();
    fs::write(src.join("b/c/leaf.txt"), b"leaf".repeat(300)).unwrap();
    src
}

/// Packs `src` with lode into `car`; the root CID as text.
fn lode_pack(src: &Path, car: &Path) -> String {
    let file = File::create(car).unwrap();
    let mut w = CarFileWriter::new(file, car).unwrap();
    let packed = pack_path(src, &mut w, &DagParams::default(), &mut |_| {}).unwrap();
    w.finish(&packed.root.cid).unwrap();
    packed.root.cid.to_string()
}

#[test]
fn ipfs_car_unpacks_what_lode_packs() {
    let Some(ipfs_car) = ipfs_car() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = sample(tmp.path());
    // An empty directory too: ipfs-car unpacks it (it only skips them when packing).
    fs::create_dir(src.join("b/empty")).unwrap();
    let car = tmp.path().join("lode.car");
    let root = lode_pack(&src, &car);
    let out = tmp.path().join("unpacked");
    run(
        Command::new(ipfs_car)
            .arg("unpack")
            .arg(&car)
            .arg("--output")
            .arg(&out),
        RUN_TIMEOUT,
    )
    .unwrap();
    assert_eq!(tree(&out), tree(&src));
    let roots = run(Command::new(ipfs_car).arg("roots").arg(&car), RUN_TIMEOUT).unwrap();
    assert_eq!(roots.trim(), root);
}

#[test]
fn lode_unpacks_what_ipfs_car_packs_and_the_roots_agree() {
    let Some(ipfs_car) = ipfs_car() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = sample(tmp.path());
    // A directory.
    let car = tmp.path().join("theirs.car");
    let printed = run(
        Command::new(ipfs_car)
            .arg("pack")
            .arg(&src)
            .arg("--output")
            .arg(&car),
        RUN_TIMEOUT,
    )
    .unwrap();
    let out = tmp.path().join("dir-out");
    unpack_car(&car, None, &out, &UnpackLimits::default(), &mut |_| {}).unwrap();
    assert_eq!(tree(&out), tree(&src));
    let ours_car = tmp.path().join("ours.car");
    let ours = lode_pack(&src, &ours_car);
    assert_eq!(printed.trim(), ours);
    // Byte for byte the same CAR (blocks in the same order), hence the same piece CID.
    assert!(fs::read(&ours_car).unwrap() == fs::read(&car).unwrap());
    assert_eq!(index_car(&car).unwrap().summary.roots[0].to_string(), ours);
    // A file of several chunks, and a file of one, unwrapped.
    for name in ["b/big.bin", "a.txt"] {
        let file = src.join(name);
        let car = tmp.path().join("file.car");
        let printed = run(
            Command::new(ipfs_car)
                .arg("pack")
                .arg(&file)
                .arg("--no-wrap")
                .arg("--output")
                .arg(&car),
            RUN_TIMEOUT,
        )
        .unwrap();
        let out = tmp.path().join("file-out");
        unpack_car(&car, None, &out, &UnpackLimits::default(), &mut |_| {}).unwrap();
        assert_eq!(fs::read(&out).unwrap(), fs::read(&file).unwrap());
        let ours_car = tmp.path().join("ours-file.car");
        assert_eq!(printed.trim(), lode_pack(&file, &ours_car));
        assert!(fs::read(&ours_car).unwrap() == fs::read(&car).unwrap());
        fs::remove_file(&out).unwrap();
        fs::remove_file(&car).unwrap();
    }
}
