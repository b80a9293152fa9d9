//! Unit tests of job specifications: parsing, validation and the mapping to an executor job.

#![allow(clippy::unwrap_used)]

use super::*;

fn piece(n: u8) -> String {
    let p = lode_proofs::cid::PieceCid::new(lode_proofs::node::Node([n; 32])).unwrap();
    piece_to_cid(&p).to_string()
}

fn yaml() -> String {
    format!(
        r#"
name: word-count
engine:
  type: wasm
  module: wc.wat
  args: ["data"]
  env: {{ LANG: C, A_B: "1" }}
inputs:
  - piece: {p1}
    path: /inputs/data
    payload_size: 1000
  - piece: {p2}
    payload_size: 20
outputs:
  - name: counts
    path: /outputs/counts.txt
resources:
  fuel: 1000000
  memory: 64MiB
  timeout: 30s
  output: 1MiB
verification:
  replicated: {{ k: 3, providers: [l01000, l01001] }}
payment:
  per_provider: "1.5 LODE"
  collateral: "2 LODE"
  deadline: 5000
"#,
        p1 = piece(1),
        p2 = piece(2)
    )
}

fn job() -> Job {
    JobSpec::parse(&yaml())
        .unwrap()
        .to_job(ModuleHash([7; 32]), &mut |_| None)
        .unwrap()
}

fn err_of(text: &str) -> String {
    let spec = match JobSpec::parse(text) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    spec.to_job(ModuleHash([7; 32]), &mut |_| None)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_full_spec_becomes_a_canonical_job() {
    let job = job();
    assert_eq!(job.version, JOB_VERSION);
    assert_eq!(job.entrypoint, "_start");
    assert_eq!(
        job.env,
        vec![("A_B".into(), "1".into()), ("LANG".into(), "C".into())]
    );
    // Sorted by mount path: "baga…" < "data".
    let paths: Vec<_> = job.inputs.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, vec![piece(2).as_str(), "data"]);
    assert_eq!(job.inputs[1].payload_size, 1000);
    assert_eq!(job.inputs[1].piece_cid().unwrap().to_string(), piece(1));
    assert_eq!(job.outputs, vec!["counts.txt".to_string()]);
    assert_eq!(
        job.limits,
        JobLimits {
            fuel: 1_000_000,
            memory_pages: 1024,
            timeout_ms: 30_000,
            output_bytes: 1 << 20,
            output_entries: DEFAULT_OUTPUT_ENTRIES,
        }
    );
    assert_eq!(
        job.verification,
        Verification::Replicated {
            k: 3,
            providers: vec![ActorId(1000), ActorId(1001)]
        }
    );
    assert_eq!(
        job.escrow(),
        Some(TokenAmount(3 * 1_500_000_000_000_000_000))
    );
}

#[test]
fn canonical_bytes_round_trip_and_the_id_binds_every_field() {
    let job = job();
    let bytes = job.encode();
    assert_eq!(Job::decode(&bytes).unwrap(), job);
    let id = job.id();
    assert_eq!(job.clone().id(), id);
    let mut other = job.clone();
    other.nonce = 1;
    assert_ne!(other.id(), id);
    let mut other = job.clone();
    other.limits.fuel += 1;
    assert_ne!(other.id(), id);
    assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
    let hash = ModuleHash([0xab; 32]);
    assert_eq!(hash.to_string().parse::<ModuleHash>().unwrap(), hash);
}

#[test]
fn decoding_refuses_trailing_garbage_and_non_canonical_jobs() {
    let job = job();
    let mut bytes = job.encode();
    bytes.push(0);
    assert!(
        Job::decode(&bytes)
            .unwrap_err()
            .to_string()
            .contains("trailing")
    );
    assert!(Job::decode(&[1, 2, 3]).is_err());
    assert!(Job::decode(&[]).is_err());
    // Inputs out of order: valid postcard, not a valid job.
    let mut unsorted = job.clone();
    unsorted.inputs.reverse();
    let err = Job::decode(&unsorted.encode()).unwrap_err().to_string();
    assert!(err.contains("sorted"), "{err}");
    // A wrong version.
    let mut v2 = job;
    v2.version = 2;
    assert!(
        Job::decode(&v2.encode())
            .unwrap_err()
            .to_string()
            .contains("version")
    );
}

#[test]
fn json_specs_are_read_too() {
    let text = format!(
        r#"{{"engine": {{"type": "wasm", "module": "blake3:{}"}},
            "inputs": [{{"piece": "{}", "payload_size": 5}}],
            "verification": {{"verifier": {{"address": "l0123", "provider": "l01000"}}}},
            "payment": {{"per_provider": "100atto", "collateral": "0", "verifier_fee": "7atto", "deadline": 9}}}}"#,
        "11".repeat(32),
        piece(3)
    );
    let spec = JobSpec::parse(&text).unwrap();
    assert_eq!(
        spec.module_source(Path::new("/x")).unwrap(),
        ModuleSource::Hash(ModuleHash([0x11; 32]))
    );
    let job = spec.to_job(ModuleHash([0x11; 32]), &mut |_| None).unwrap();
    assert_eq!(job.limits, JobLimits::default());
    assert_eq!(job.inputs[0].path, piece(3));
    assert_eq!(job.escrow(), Some(TokenAmount(107)));
    assert!(matches!(
        job.verification,
        Verification::Verifier {
            provider: Some(ActorId(1000)),
            ..
        }
    ));
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let top = yaml().replace("name: word-count", "name: word-count\ncolour: blue");
    assert!(err_of(&top).contains("colour"), "{}", err_of(&top));
    let nested = yaml().replace("  fuel: 1000000", "  fuel: 1000000\n  gpu: 1");
    assert!(err_of(&nested).contains("gpu"), "{}", err_of(&nested));
    let engine = yaml().replace("  type: wasm", "  type: wasm\n  image: ubuntu");
    assert!(err_of(&engine).contains("image"));
    let docker = yaml().replace("type: wasm", "type: docker");
    assert!(err_of(&docker).contains("only \"wasm\""));
}

#[test]
fn limits_are_bounded() {
    for (from, to, needle) in [
        ("fuel: 1000000", "fuel: 0", "fuel"),
        ("fuel: 1000000", "fuel: 100000000000000", "fuel"),
        ("memory: 64MiB", "memory: 8GiB", "memory"),
        ("memory: 64MiB", "memory: lots", "not a size"),
        ("timeout: 30s", "timeout: 0s", "timeout"),
        ("timeout: 30s", "timeout: 25h", "timeout"),
        ("timeout: 30s", "timeout: soon", "not a duration"),
        ("output: 1MiB", "output: 17GiB", "output"),
    ] {
        let text = yaml().replace(from, to);
        let err = err_of(&text);
        assert!(err.contains(needle), "{to}: {err}");
    }
    assert!(
        err_of(&yaml().replace("output: 1MiB", "output: 1MiB\n  output_entries: 0"))
            .contains("output_entries")
    );
}

#[test]
fn paths_are_confined_and_mounts_do_not_overlap() {
    for bad in [
        "/inputs/../etc",
        "/etc/passwd",
        "/inputs/",
        "/inputs//x",
        "/inputs/a/./b",
    ] {
        let text = yaml().replace("path: /inputs/data", &format!("path: {bad}"));
        assert!(err_of(&text).contains("path"), "{bad}: {}", err_of(&text));
    }
    let deep = format!("/inputs/{}", ["d"; 9].join("/"));
    assert!(
        err_of(&yaml().replace("path: /inputs/data", &format!("path: {deep}"))).contains("deeper")
    );
    let second = format!("  - piece: {}\n    payload_size: 20\n", piece(2));
    for other in ["/inputs/data/x", "/inputs/data", "/inputs/data.unpacked/x"] {
        let text = yaml().replace(
            &second,
            &format!(
                "  - piece: {}\n    path: {other}\n    payload_size: 20\n",
                piece(2)
            ),
        );
        let err = err_of(&text);
        assert!(
            err.contains("overlap") || err.contains("two inputs"),
            "{other}: {err}"
        );
    }
    let out = yaml().replace("path: /outputs/counts.txt", "path: /tmp/x");
    assert!(err_of(&out).contains("/outputs"));
    let out = yaml().replace("path: /outputs/counts.txt", "path: /outputs/../x");
    assert!(err_of(&out).contains("path"));
}

#[test]
fn verification_and_payment_are_checked() {
    let both = yaml().replace(
        "  replicated: { k: 3, providers: [l01000, l01001] }",
        "  replicated: { k: 3 }\n  verifier: { address: l0123 }",
    );
    assert!(err_of(&both).contains("exactly one"));
    for (to, needle) in [
        ("  replicated: { k: 0 }", "k 0"),
        ("  replicated: { k: 16 }", "k 16"),
        (
            "  replicated: { k: 1, providers: [l01, l02] }",
            "names 2 providers",
        ),
        ("  replicated: { k: 3, providers: [l01, l01] }", "twice"),
        ("  replicated: { k: 3, providers: [f01] }", "providers"),
        ("  verifier: { address: nobody }", "address"),
    ] {
        let text = yaml().replace("  replicated: { k: 3, providers: [l01000, l01001] }", to);
        let err = err_of(&text);
        assert!(err.contains(needle), "{to}: {err}");
    }
    let fee = yaml().replace(
        "  deadline: 5000",
        "  deadline: 5000\n  verifier_fee: \"1 LODE\"",
    );
    assert!(err_of(&fee).contains("verifier_fee"));
    let bad = yaml().replace("\"1.5 LODE\"", "\"a lot\"");
    assert!(err_of(&bad).contains("per_provider"));
    let zero = yaml().replace("deadline: 5000", "deadline: 0");
    assert!(err_of(&zero).contains("deadline"));
    let huge = yaml().replace("\"1.5 LODE\"", &format!("\"{}atto\"", u128::MAX / 2));
    assert!(err_of(&huge).contains("overflows"));
}

#[test]
fn arguments_and_environment_are_checked() {
    let bad_env = yaml().replace("LANG: C", "\"1BAD\": C");
    assert!(err_of(&bad_env).contains("variable name"));
    let eq_env = yaml().replace("LANG: C", "\"A=B\": C");
    assert!(err_of(&eq_env).contains("variable name"));
    let nul = yaml().replace("args: [\"data\"]", "args: [\"a\\0b\"]");
    assert!(err_of(&nul).contains("NUL"));
    let long = yaml().replace(
        "args: [\"data\"]",
        &format!("args: [\"{}\"]", "x".repeat(5000)),
    );
    assert!(err_of(&long).contains("4096"));
    let entry = yaml().replace("  type: wasm", "  type: wasm\n  entrypoint: \"\"");
    assert!(err_of(&entry).contains("entrypoint"));
}

#[test]
fn a_missing_payload_size_is_asked_for() {
    let text = yaml().replace("    payload_size: 20\n", "");
    let spec = JobSpec::parse(&text).unwrap();
    let err = spec
        .to_job(ModuleHash([7; 32]), &mut |_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("payload_size"), "{err}");
    let mut asked = Vec::new();
    let job = spec
        .to_job(ModuleHash([7; 32]), &mut |cid| {
            asked.push(cid.to_string());
            Some(42)
        })
        .unwrap();
    assert_eq!(asked, vec![piece(2)]);
    assert_eq!(job.inputs[0].payload_size, 42);
    let not_a_piece = yaml().replace(&piece(1), "bafkqaaa");
    assert!(err_of(&not_a_piece).contains("not a piece CID"));
}

#[test]
fn sizes_and_durations_parse() {
    assert_eq!(parse_size("65536").unwrap(), 65536);
    assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
    assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
    assert_eq!(parse_size("2Gb").unwrap(), 2_000_000_000);
    assert_eq!(parse_size("500KB").unwrap(), 500_000);
    assert!(parse_size("-1").is_err());
    assert!(parse_size("1.5GiB").is_err());
    assert!(parse_size("99999999999999999999").is_err());
    assert!(parse_size("20000000000TiB").is_err());
    assert_eq!(parse_duration_ms("500ms").unwrap(), 500);
    assert_eq!(parse_duration_ms("30").unwrap(), 30_000);
    assert_eq!(parse_duration_ms("5m").unwrap(), 300_000);
    assert_eq!(parse_duration_ms("1h").unwrap(), 3_600_000);
    assert!(parse_duration_ms("1d").is_err());
}

#[test]
fn wat_is_compiled_and_hashed_as_binary() {
    let wasm = module_bytes(b"(module)").unwrap();
    assert!(wasm.starts_with(b"\0asm"));
    assert_eq!(module_bytes(&wasm).unwrap(), wasm);
    assert!(module_bytes(b"(module").is_err());
    assert_eq!(
        ModuleHash::of(&wasm),
        ModuleHash(*blake3::hash(&wasm).as_bytes())
    );
}
