//! Repository hygiene checked as a test: vectors are used, files are documented, the code map is complete.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn all_sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    files
        .into_iter()
        .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

#[test]
fn every_vector_file_is_loaded_by_some_test() {
    let sources = all_sources();
    let vectors = root().join("fixtures/vectors");
    let mut count = 0;
    for entry in std::fs::read_dir(&vectors).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        count += 1;
        assert!(
            sources
                .iter()
                .any(|(p, s)| !p.ends_with("tidy.rs") && s.contains(&format!("vectors/{name}"))),
            "fixtures/vectors/{name} is never loaded: test it or remove it"
        );
    }
    assert!(count > 0);
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    for (path, source) in all_sources() {
        assert!(
            source.trim_start().starts_with("//!"),
            "{} has no `//!` module doc",
            path.display()
        );
    }
}

#[test]
fn architecture_names_every_crate() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members = manifest.lines().find(|l| l.starts_with("members")).unwrap();
    for member in members.split('"').skip(1).step_by(2) {
        assert!(
            arch.contains(&format!("`{member}/`")),
            "ARCHITECTURE.md has no code-map entry for `{member}/`"
        );
    }
}
