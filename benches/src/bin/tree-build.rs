//! One timed build of a sector-sized tree, for sizes too large for criterion's repetitions.
//!
//! `tree-build <SIZE> <blake3|poseidon> [DIR]` writes a leaves file of SIZE bytes (random field
//! nodes) into DIR (default: a temporary directory), builds the tree over it on disk and prints one
//! JSON line with the timing. SIZE is a byte count or one of 2KiB, 8MiB, 512MiB, 1GiB.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use lode_benches::field_leaves;
use lode_proofs::merkle::{Blake3TreeD, DiskTree, PoseidonTree, TreeConfig, TreeHasher, TreeShape};
use lode_proofs::node::nodes_as_bytes;

fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = if let Some(n) = s.strip_suffix("GiB") {
        (n, 1u64 << 30)
    } else if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("KiB") {
        (n, 1 << 10)
    } else {
        (s, 1)
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn build<H: TreeHasher>(
    shape: &TreeShape,
    leaves: &Path,
    dir: &Path,
) -> Result<(f64, u64), String> {
    let path = dir.join(format!("tree-{}", H::NAME));
    let start = Instant::now();
    let tree = DiskTree::<H>::build_over_file(shape, leaves, &path, TreeConfig::default())
        .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(tree.path())
        .map_err(|e| e.to_string())?
        .len();
    Ok((secs, bytes))
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: tree-build <SIZE> <blake3|poseidon> [DIR]";
    let size = args.first().and_then(|s| parse_size(s)).ok_or(usage)?;
    let hasher = args.get(1).ok_or(usage)?.as_str();
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = args.get(2).map(Path::new).unwrap_or(tmp.path());
    let n = size / 32;
    let leaves_path = dir.join("leaves");
    {
        let mut f = std::fs::File::create(&leaves_path).map_err(|e| e.to_string())?;
        let chunk = 1u64 << 20;
        for (i, start) in (0..n).step_by(chunk as usize).enumerate() {
            let nodes = field_leaves(chunk.min(n - start) as usize, i as u64);
            f.write_all(nodes_as_bytes(&nodes))
                .map_err(|e| e.to_string())?;
        }
        f.sync_all().map_err(|e| e.to_string())?;
    }
    let (shape, (secs, bytes), arity) = match hasher {
        "blake3" => {
            let s = TreeShape::binary(n).map_err(|e| e.to_string())?;
            let r = build::<Blake3TreeD>(&s, &leaves_path, dir)?;
            (s, r, 2)
        }
        "poseidon" => {
            let s = TreeShape::octal(n).map_err(|e| e.to_string())?;
            let r = build::<PoseidonTree>(&s, &leaves_path, dir)?;
            (s, r, 8)
        }
        _ => return Err(usage.into()),
    };
    let hashes = shape.nodes_from(1);
    println!(
        "{{\"size\":{size},\"leaves\":{n},\"hasher\":\"{hasher}\",\"arity\":{arity},\"threads\":{},\"seconds\":{secs:.3},\"hashes\":{hashes},\"hashes_per_second\":{:.0},\"tree_file_bytes\":{bytes}}}",
        rayon::current_num_threads(),
        hashes as f64 / secs
    );
    Ok(())
}
