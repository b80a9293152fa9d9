//! Writes every fuzz target's seeds into `<corpus dir>/<target>/seed-<n>` (default
//! `fuzz/fuzz/corpus`), for cargo-fuzz to start from.

#![allow(clippy::unwrap_used)]

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus").to_string());
    for t in lode_fuzz::TARGETS {
        let out = std::path::Path::new(&dir).join(t.name);
        std::fs::create_dir_all(&out).unwrap();
        let seeds = lode_fuzz::seeds::seeds(t.name);
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(out.join(format!("seed-{i}")), s).unwrap();
        }
        println!("{}: {} seeds", t.name, seeds.len());
    }
}
