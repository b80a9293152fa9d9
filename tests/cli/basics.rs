//! End-to-end tests of the `lode` binary: what a client sees on the command line.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn lode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The payload pattern of `fixtures/vectors/tree_d.json`: byte i = (i*7+3) mod 256.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + 3) % 256) as u8).collect()
}

#[derive(serde::Deserialize)]
struct Vectors {
    commp_payloads: Vec<Payload>,
}

#[derive(serde::Deserialize)]
struct Payload {
    comm_p: String,
    padded_size: u64,
    payload_len: usize,
    piece_cid: String,
}

#[test]
fn commp_json_matches_the_vectors() {
    let v: Vectors =
        serde_json::from_str(include_str!("../../fixtures/vectors/tree_d.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for p in v.commp_payloads {
        let file = dir.path().join(format!("payload-{}", p.payload_len));
        std::fs::write(&file, pattern(p.payload_len)).unwrap();
        let out = lode(&["piece", "commp", file.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["piece_cid"], p.piece_cid);
        assert_eq!(json["comm_p"], p.comm_p);
        assert_eq!(json["padded_size"], p.padded_size);
        assert_eq!(json["payload_size"], p.payload_len as u64);
        assert_eq!(json.as_object().unwrap().len(), 4);

        let text = lode(&["piece", "commp", file.to_str().unwrap()]);
        assert!(stdout(&text).contains(&p.piece_cid));
    }
}

#[test]
fn commp_reads_standard_input() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(["piece", "commp", "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&pattern(127))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        json["comm_p"],
        "abf27b402d51d09e51c65a3ad7c2f60adf7f9ff31fc8697c920bcec52ad41a2f"
    );
}

#[test]
fn missing_files_and_directories_are_clear_errors() {
    let out = lode(&["piece", "commp", "/definitely/not/here.bin"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot open /definitely/not/here.bin"),
        "{err}"
    );
    assert!(!err.contains("panicked"));

    let dir = tempfile::tempdir().unwrap();
    let out = lode(&["piece", "commp", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
}

#[test]
fn pad_then_unpad_round_trips_and_matches_commp() {
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("raw");
    let padded_path = dir.path().join("padded");
    let back_path = dir.path().join("back");
    let raw = pattern(5000);
    std::fs::write(&raw_path, &raw).unwrap();
    let p = |x: &Path| x.to_str().unwrap().to_owned();

    let out = lode(&[
        "piece",
        "pad",
        &p(&raw_path),
        &p(&padded_path),
        "--piece",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["input_bytes"], 5000);
    assert_eq!(report["output_bytes"], 8192);
    let padded = std::fs::read(&padded_path).unwrap();
    assert_eq!(padded.len(), 8192);
    assert_eq!(&padded[..5120], &lode_proofs::fr32::pad(&raw)[..]);

    // CommP of the payload is the tree D root of the padded piece.
    let commp = lode(&["piece", "commp", &p(&raw_path), "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&commp)).unwrap();
    let nodes = lode_proofs::node::nodes_from_bytes(&padded).unwrap();
    assert_eq!(
        json["comm_p"],
        lode_proofs::piece::tree_d_root(nodes).to_hex()
    );

    let out = lode(&[
        "piece",
        "unpad",
        &p(&padded_path),
        &p(&back_path),
        "--payload-size",
        "5000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&back_path).unwrap(), raw);

    // Without a length, the zero fill comes back too.
    let out = lode(&["piece", "unpad", &p(&padded_path), &p(&back_path)]);
    assert!(out.status.success());
    let all = std::fs::read(&back_path).unwrap();
    assert_eq!(all.len(), 8192 / 128 * 127);
    assert_eq!(&all[..5000], &raw[..]);
    assert!(all[5000..].iter().all(|&b| b == 0));
}

#[test]
fn unpad_refuses_data_that_was_never_padded() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, [0xFFu8; 256]).unwrap();
    let out = lode(&[
        "piece",
        "unpad",
        bad.to_str().unwrap(),
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not fr32-padded"), "{}", stderr(&out));

    let odd = dir.path().join("odd");
    std::fs::write(&odd, [0u8; 100]).unwrap();
    let out = lode(&[
        "piece",
        "unpad",
        odd.to_str().unwrap(),
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("128-byte blocks"), "{}", stderr(&out));

    let out = lode(&["piece", "pad", odd.to_str().unwrap(), odd.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is the input file"));
}

#[test]
fn help_teaches() {
    let out = lode(&["piece", "commp", "--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    assert!(help.contains("Examples:\n  lode piece commp"));
    assert!(help.contains("--json"));
}

/// The leaf commands, found by walking `--help` from the top.
fn leaf_commands() -> Vec<Vec<String>> {
    fn walk(path: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut args = path.clone();
        args.push("--help".into());
        let help = stdout(&lode(&args.iter().map(String::as_str).collect::<Vec<_>>()));
        let subs: Vec<String> = help
            .split("Commands:\n")
            .nth(1)
            .map(|rest| {
                rest.lines()
                    .take_while(|l| l.starts_with("  "))
                    .filter_map(|l| l.split_whitespace().next())
                    .filter(|c| *c != "help")
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        if subs.is_empty() {
            out.push(path.clone());
        }
        for c in subs {
            let mut next = path.clone();
            next.push(c);
            walk(next, out);
        }
    }
    let mut out = Vec::new();
    walk(Vec::new(), &mut out);
    out
}

#[test]
fn every_command_has_examples_and_every_report_has_json() {
    let leaves = leaf_commands();
    assert!(leaves.len() >= 21, "{leaves:?}");
    for leaf in leaves {
        let mut args: Vec<&str> = leaf.iter().map(String::as_str).collect();
        args.push("--help");
        let help = stdout(&lode(&args));
        let name = format!("lode {}", leaf.join(" "));
        assert!(
            help.contains("Example:\n  lode ") || help.contains("Examples:\n  lode "),
            "{name} --help has no example"
        );
        assert!(
            help.contains(&name),
            "{name}: the example runs another command"
        );
        // Daemons run until stopped and report through logs, RPC and metrics instead.
        let daemon =
            ["lode node run", "lode provider run", "lode worker run"].contains(&name.as_str());
        assert!(daemon || help.contains("--json"), "{name} has no --json");
    }
}

#[test]
fn logs_are_plain_text_when_stderr_is_not_a_terminal() {
    let out = Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(["-vv", "piece", "commp", "fixtures/sample/payload.txt"])
        .env_remove("LODE_LOG")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stderr(&out).contains("DEBUG"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains('\u{1b}'),
        "ANSI escapes in {}",
        stderr(&out)
    );
}

#[test]
fn chain_policy_prints_every_rule_as_json() {
    let out = lode(&["chain", "policy", "--network", "devnet", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["network"], "devnet");
    assert_eq!(v["wpost_challenge_window"], 5);
    assert_eq!(v["total_supply"], "2000000000000000000000000000");
    let text = lode(&["chain", "policy"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("epochs_in_day = 2880"));
}

/// `lode bench` records a run as JSON and CSV with the machine, and `lode bench plot` charts it
/// beside the reference figures; bad arguments are refused.
#[test]
fn bench_runs_are_recorded_and_charted() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("labels");
    let o = lode(&[
        "bench",
        "labels",
        "--size",
        "2KiB",
        "--sectors",
        "3",
        "--repeat",
        "2",
        "--cache-dir",
        tmp.path().join("cache").to_str().unwrap(),
        "--work",
        tmp.path().join("work").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(run["kind"], "labels");
    assert_eq!(run["samples"].as_array().unwrap().len(), 4, "{run}");
    assert!(run["machine"]["cores"].as_u64().unwrap() >= 1);
    // Which of the prover's arithmetics this CPU runs, for comparing figures across machines.
    let arithmetic = run["machine"]["arithmetic"].as_str().unwrap();
    assert!(
        ["avx512-ifma", "mulx-adx", "portable"].contains(&arithmetic),
        "{arithmetic}"
    );
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("labels,2KiB,3,0,label_layer1,")
    );
    let svg = tmp.path().join("chart.svg");
    let o = lode(&[
        "bench",
        "plot",
        out.with_extension("json").to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("label_layer2") && text.contains("lode labels 2KiB"));
    let o = lode(&["bench", "seal", "--size", "2KiB", "--sectors", "65"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("outside 1..=64"), "{}", stderr(&o));
    // --arithmetic caps the CPU's field arithmetic for the run, and the record says which ran;
    // a faster one than the processor has is refused.
    let trees = |arithmetic: &str| {
        lode(&[
            "bench",
            "trees",
            "--size",
            "2KiB",
            "--arithmetic",
            arithmetic,
            "--work",
            tmp.path().join("work").to_str().unwrap(),
            "--out",
            tmp.path().join("trees").to_str().unwrap(),
            "--json",
        ])
    };
    for capped in ["portable", "mulx-adx"] {
        let o = trees(capped);
        if capped == "mulx-adx" && arithmetic == "portable" {
            assert!(
                stderr(&o).contains("cannot run the mulx-adx"),
                "{}",
                stderr(&o)
            );
            continue;
        }
        assert!(o.status.success(), "{}", stderr(&o));
        let run: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(run["machine"]["arithmetic"], capped);
    }
    let o = trees("avx512-ifma");
    assert_eq!(
        o.status.success(),
        arithmetic == "avx512-ifma",
        "{}",
        stderr(&o)
    );
    if arithmetic != "avx512-ifma" {
        assert!(
            stderr(&o).contains("the fastest it has is"),
            "{}",
            stderr(&o)
        );
    }
    // A CSV is not a result file for plotting.
    let csv_path = out.with_extension("csv");
    let o = lode(&[
        "bench",
        "plot",
        csv_path.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not a benchmark result"),
        "{}",
        stderr(&o)
    );
}

/// Runs `lode args` with stdout going to a pipe whose reader is already gone (`lode … | head -0`).
fn to_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_reader_that_stops_reading_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload");
    std::fs::write(&file, pattern(1000)).unwrap();
    let file = file.to_str().unwrap();
    for args in [
        &["circuit-info", "--json"][..],
        &["circuit-info"],
        &["piece", "commp", file, "--json"],
        &["piece", "commp", file],
    ] {
        let o = to_closed_pipe(args);
        assert!(o.status.success(), "lode {args:?}: {o:?}");
        assert!(
            stderr(&o).is_empty(),
            "lode {args:?} complained: {}",
            stderr(&o)
        );
    }
    // Any other failure to write is said once and fails the command.
    if Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_lode"))
            .args(["circuit-info", "--json"])
            .stdout(full)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{o:?}");
        assert_eq!(
            stderr(&o).matches("cannot write to stdout").count(),
            1,
            "{}",
            stderr(&o)
        );
    }
}
