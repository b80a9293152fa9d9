//! Capacity accounting: the disk and memory a sealing phase needs, worked out before it runs and
//! checked against what the machine has, so that a phase that cannot finish is refused before it writes
//! anything (a full disk under a memory-mapped write is a `SIGBUS`, hours into a PreCommit1).
//!
//! Every caller that schedules phases — `lode seal`, the provider's pre-sealing, and its sealing daemon
//! when it comes — asks here first:
//! [`check`] takes the sector directory, the parent-cache directory, the sector size and the phases,
//! subtracts what is already written ([`Plan::new`]), asks the filesystems and the kernel what is free
//! ([`SpaceProbe`]), and returns [`SealError::InsufficientDisk`] or [`SealError::InsufficientMemory`]
//! with the figures and what to do.
//!
//! # The figures
//!
//! They follow from what [`crate::seal`] writes (`n` = nodes = sector bytes / 32, `L` = layers, `P` =
//! PoRep partitions, `C` = challenges per partition). File lengths are exact unless marked otherwise:
//!
//! | phase | writes (in order) | bytes |
//! |---|---|---|
//! | AddPiece | `unsealed`: each piece, fr32-padded | at most its padded size (upper bound: the zero fill past the payload is a hole) |
//! | PreCommit1 | the parent cache (cache dir), unless a valid one is there | `128 + 56·n` |
//! | | `layer-1` … `layer-L` | `32·n` each |
//! | | `tree-d` (binary, every level above the leaves) | `256 + 32·(n − 1)` |
//! | | `unsealed` zero-filled to the sector size | 0: `set_len` leaves a hole |
//! | PreCommit2 | `columns`, `tree-c` (octal, every level), `sealed`, `tree-r` (octal, the two rows above the leaves not stored) | `32·n`, `256 + 32·Σ levels ≥ 1`, `32·n`, `256 + 32·Σ levels ≥ 3` |
//! | Commit1 | `commit1.bin`: the vanilla proof | `69 + P·(4 + C·challenge)`, see [`commit1_bytes`] |
//! | Commit2 | `commit2.bin` | `192·P` |
//! | Finalize | nothing (it deletes; what it keeps, [`finalized_bytes`], is what a move to long-term storage needs there) | 0 |
//! | Unseal | the parent cache, unless a valid one is there | `128 + 56·n` |
//!
//! Each phase also writes its JSON records; [`RECORDS_BYTES`] per phase covers them and the rounding
//! of every file up to the filesystem's block (an allowance, not an exact figure).
//!
//! Memory counts the anonymous buffers a phase holds in proportion to the sector (file maps are page
//! cache the kernel can write back and evict, and are not counted): PreCommit1 and Unseal label with
//! two layers in memory (`2 · 32·n`, exact); Commit1 holds its proof and the proof's encoding (an
//! estimate, twice `commit1.bin`); PreCommit2 and AddPiece stream through maps and small buffers (0);
//! Commit2's Groth16 prover holds the parameters and a partition's assignment, which depend on the
//! circuit, not on these files, and are not estimated (`None`).
//!
//! # Work already done
//!
//! [`Plan::new`] looks at the sector directory as the phases will find it:
//! - a phase whose records say it is done is skipped and needs nothing (PreCommit1 once `pc1.json` and
//!   `pc2.json` exist, PreCommit2 once `pc2.json` exists);
//! - a layer file under its final name is complete (every file is written under a temporary name and
//!   renamed) and PreCommit1 resumes after it, so it needs no new space (a layer whose checksum no longer
//!   matches is rewritten: that rare case is not counted);
//! - a file a phase always rewrites (tree D, PreCommit2's files, the Commit1 and Commit2 outputs) is
//!   written under a temporary name beside the old one and frees the old one's bytes only when renamed
//!   over it: the peak counts the new file in full, and the old one's bytes from then on;
//! - a parent cache whose header and length are right needs nothing ([`ParentCache::is_present`]);
//! - pieces the sector already records need nothing ([`pending_piece_bytes`]).
//!
//! Several phases at once (`lode seal run`) add up: nothing is deleted between them, so the peak is
//! the running total of every write, less the old files each rename frees. When the sector directory
//! and the cache directory share a filesystem, their writes add up too.

use std::io;
use std::path::{Path, PathBuf};

use lode_proofs::graph::{BASE_DEGREE, EXP_DEGREE};
use lode_proofs::merkle::{TreeConfig, TreeShape};
use lode_proofs::node::NODE_SIZE;
use lode_proofs::piece::PaddedPieceSize;
use lode_proofs::sector::SectorSize;
use lode_proofs::snark::PROOF_LEN;

use crate::error::{SealError, SealResult};
use crate::parent_cache::ParentCache;
use crate::seal::{Placement, SectorMeta, TREE_R_DISCARD_ROWS};
use crate::sector_dir::{SectorDir, read_json};

/// Bytes allowed per phase for its JSON records (`sector.json`, `pc1-progress.json`, `pc1.json`,
/// `pc2.json`, `commit1.json`: under 4 KiB each) and for the filesystem rounding each file up to its
/// block.
pub const RECORDS_BYTES: u64 = 64 << 10;

/// A phase of a sector's life, as far as capacity goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Placing pieces in `unsealed`.
    AddPiece,
    /// Tree D and the layers.
    PreCommit1,
    /// Columns, tree C, the replica and tree R.
    PreCommit2,
    /// The vanilla PoRep proof.
    Commit1,
    /// The Groth16 PoRep proof.
    Commit2,
    /// Deleting what proving no longer needs.
    Finalize,
    /// Recovering data from the replica (labels regenerated over the parent cache).
    Unseal,
}

impl Phase {
    /// The sealing phases, in the order they run.
    pub const SEALING: [Phase; 6] = [
        Phase::AddPiece,
        Phase::PreCommit1,
        Phase::PreCommit2,
        Phase::Commit1,
        Phase::Commit2,
        Phase::Finalize,
    ];

    /// The phase's name, as the errors and logs say it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::AddPiece => "AddPiece",
            Phase::PreCommit1 => "PreCommit1",
            Phase::PreCommit2 => "PreCommit2",
            Phase::Commit1 => "Commit1",
            Phase::Commit2 => "Commit2",
            Phase::Finalize => "Finalize",
            Phase::Unseal => "Unseal",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a write is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The parent cache file (in the cache directory).
    ParentCache,
    /// Piece data in `unsealed`.
    Unsealed,
    /// One `layer-<l>` file (1-based).
    Layer(usize),
    /// `tree-d`.
    TreeD,
    /// `columns`.
    Columns,
    /// `tree-c`.
    TreeC,
    /// `sealed`, the replica.
    Replica,
    /// `tree-r`.
    TreeR,
    /// `commit1.bin`.
    Commit1,
    /// `commit2.bin`.
    Commit2,
    /// The phase's JSON records and block rounding ([`RECORDS_BYTES`]).
    Records,
}

impl Part {
    /// How the errors name it.
    fn label(self) -> &'static str {
        match self {
            Part::ParentCache => "the parent cache",
            Part::Unsealed => "the pieces",
            Part::Layer(_) => "layers",
            Part::TreeD => "tree D",
            Part::Columns => "the columns",
            Part::TreeC => "tree C",
            Part::Replica => "the replica",
            Part::TreeR => "tree R",
            Part::Commit1 => "the Commit1 proof",
            Part::Commit2 => "the Commit2 proof",
            Part::Records => "its records",
        }
    }

    /// Where the file lives.
    pub fn location(self) -> Location {
        match self {
            Part::ParentCache => Location::CacheDir,
            _ => Location::SectorDir,
        }
    }
}

/// Which directory a write lands in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// The sector directory.
    SectorDir,
    /// The parent-cache directory.
    CacheDir,
}

/// One file a phase writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// The phase that writes it.
    pub phase: Phase,
    /// What it is.
    pub part: Part,
    /// Its bytes once written.
    pub bytes: u64,
    /// Bytes of the file already under its name, freed when the new one is renamed over it.
    pub replaces: u64,
    /// Whether `bytes` is exact; otherwise an upper bound (pieces) or an allowance (records).
    pub exact: bool,
}

/// Memory a phase needs: the anonymous buffers that grow with the sector (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Bytes.
    pub bytes: u64,
    /// What they hold, for the error message.
    pub what: &'static str,
}

/// What one phase needs from scratch: nothing written yet, no parent cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figures {
    /// The phase.
    pub phase: Phase,
    /// The sector size.
    pub size: SectorSize,
    /// Its writes, in the order it makes them.
    pub writes: Vec<Write>,
    /// Its memory; `None` where it is not estimated (Commit2).
    pub memory: Option<Memory>,
}

impl Figures {
    /// Bytes it writes in the sector directory (records included).
    pub fn sector_bytes(&self) -> u64 {
        sum(self
            .writes
            .iter()
            .filter(|w| w.part.location() == Location::SectorDir))
    }

    /// Bytes it writes in the parent-cache directory.
    pub fn cache_bytes(&self) -> u64 {
        sum(self
            .writes
            .iter()
            .filter(|w| w.part.location() == Location::CacheDir))
    }

    /// Bytes of one part (all layers for [`Part::Layer`], whatever its number).
    pub fn part_bytes(&self, part: Part) -> u64 {
        sum(self.writes.iter().filter(|w| same_kind(w.part, part)))
    }
}

fn sum<'a>(writes: impl Iterator<Item = &'a Write>) -> u64 {
    writes.fold(0u64, |s, w| s.saturating_add(w.bytes))
}

fn same_kind(a: Part, b: Part) -> bool {
    matches!((a, b), (Part::Layer(_), Part::Layer(_))) || a == b
}

/// Bytes of one layer file: 32 bytes per node, the sector size.
pub fn layer_bytes(size: SectorSize) -> u64 {
    size.bytes()
}

/// Bytes of `tree-d`: the binary tree over `unsealed`, every level above the leaves stored
/// (`256 + 32·(n − 1)`).
pub fn tree_d_bytes(size: SectorSize) -> u64 {
    TreeConfig::default().file_len(&size.tree_d_shape(), false)
}

/// Bytes of `tree-c`: the octal tree over `columns`, every level above the leaves stored.
pub fn tree_c_bytes(size: SectorSize) -> u64 {
    TreeConfig::default().file_len(&size.tree_shape(), false)
}

/// Bytes of `tree-r`: the octal tree over `sealed` without its [`TREE_R_DISCARD_ROWS`] lowest rows.
pub fn tree_r_bytes(size: SectorSize) -> u64 {
    TreeConfig {
        discard_rows: TREE_R_DISCARD_ROWS,
    }
    .file_len(&size.tree_shape(), false)
}

/// Bytes of one encoded Merkle proof ([`lode_proofs::merkle::MerkleProof::to_bytes`]): format byte,
/// index (8), leaf (32), level count, then per level a count and `arity − 1` siblings.
fn merkle_proof_bytes(shape: &TreeShape) -> u64 {
    let node = NODE_SIZE as u64;
    shape.arities().iter().fold(1 + 8 + node + 1, |n, &a| {
        n.saturating_add(1)
            .saturating_add((a as u64).saturating_sub(1).saturating_mul(node))
    })
}

/// Bytes of `commit1.bin` ([`lode_proofs::porep::PorepProof::to_bytes`]), exact: a format byte,
/// `comm_c` and `comm_r_last` (64), the partition count (4), then per partition a count (4) and per
/// challenge: the tree D proof, the challenged column, the 6 base and 8 expander parents' columns, and
/// the tree R proof, each Merkle proof behind a 4-byte length and each column `4 + 32·L` bytes of labels
/// and its tree C proof.
pub fn commit1_bytes(size: SectorSize) -> u64 {
    let node = NODE_SIZE as u64;
    let prefixed = |shape: &TreeShape| merkle_proof_bytes(shape).saturating_add(4);
    let tree_shape = size.tree_shape();
    let column = (size.layers() as u64)
        .saturating_mul(node)
        .saturating_add(4)
        .saturating_add(prefixed(&tree_shape));
    let columns = (1 + BASE_DEGREE + EXP_DEGREE) as u64;
    let challenge = prefixed(&size.tree_d_shape())
        .saturating_add(columns.saturating_mul(column))
        .saturating_add(4 + 4)
        .saturating_add(prefixed(&tree_shape));
    let partition = (size.porep_challenges_per_partition() as u64)
        .saturating_mul(challenge)
        .saturating_add(4);
    (size.porep_partitions() as u64)
        .saturating_mul(partition)
        .saturating_add(1 + 2 * node + 4)
}

/// Bytes of `commit2.bin`: one Groth16 proof per partition.
pub fn commit2_bytes(size: SectorSize) -> u64 {
    (size.porep_partitions() as u64).saturating_mul(PROOF_LEN as u64)
}

/// Bytes a sector keeps once finalized (what proving needs, and what a later move to long-term
/// storage copies): the replica, tree R and `commit2.bin`, the unsealed file when `keep_unsealed`,
/// and [`RECORDS_BYTES`] for the JSON records and the filesystem's rounding.
pub fn finalized_bytes(size: SectorSize, keep_unsealed: bool) -> u64 {
    let unsealed = if keep_unsealed { size.bytes() } else { 0 };
    size.bytes()
        .saturating_add(tree_r_bytes(size))
        .saturating_add(commit2_bytes(size))
        .saturating_add(unsealed)
        .saturating_add(RECORDS_BYTES)
}

/// Memory of the labeller: two layers of labels (the one being labelled and the one below it).
pub fn labelling_memory(size: SectorSize) -> Memory {
    Memory {
        bytes: layer_bytes(size).saturating_mul(2),
        what: "two layers of labels",
    }
}

fn write(phase: Phase, part: Part, bytes: u64) -> Write {
    Write {
        phase,
        part,
        bytes,
        replaces: 0,
        exact: !matches!(part, Part::Unsealed | Part::Records),
    }
}

/// What `phase` needs for a sector of `size` from scratch; `piece_bytes` is the padded size of the
/// pieces AddPiece places (ignored by the other phases).
pub fn figures(size: SectorSize, phase: Phase, piece_bytes: u64) -> Figures {
    let w = |part, bytes| write(phase, part, bytes);
    let records = w(Part::Records, RECORDS_BYTES);
    let (writes, memory) = match phase {
        Phase::AddPiece => (
            vec![w(Part::Unsealed, piece_bytes.min(size.bytes())), records],
            Some(Memory {
                bytes: 0,
                what: "buffers",
            }),
        ),
        Phase::PreCommit1 => {
            let mut writes = vec![w(Part::ParentCache, ParentCache::file_len(size))];
            writes.extend((1..=size.layers()).map(|l| w(Part::Layer(l), layer_bytes(size))));
            writes.extend([w(Part::TreeD, tree_d_bytes(size)), records]);
            (writes, Some(labelling_memory(size)))
        }
        Phase::PreCommit2 => (
            vec![
                w(Part::Columns, size.bytes()),
                w(Part::TreeC, tree_c_bytes(size)),
                w(Part::Replica, size.bytes()),
                w(Part::TreeR, tree_r_bytes(size)),
                records,
            ],
            Some(Memory {
                bytes: 0,
                what: "buffers",
            }),
        ),
        Phase::Commit1 => (
            vec![w(Part::Commit1, commit1_bytes(size)), records],
            Some(Memory {
                bytes: commit1_bytes(size).saturating_mul(2),
                what: "the vanilla proof and its encoding",
            }),
        ),
        Phase::Commit2 => (vec![w(Part::Commit2, commit2_bytes(size))], None),
        Phase::Finalize => (
            Vec::new(),
            Some(Memory {
                bytes: 0,
                what: "buffers",
            }),
        ),
        Phase::Unseal => (
            vec![w(Part::ParentCache, ParentCache::file_len(size))],
            Some(labelling_memory(size)),
        ),
    };
    Figures {
        phase,
        size,
        writes,
        memory,
    }
}

/// What a caller is about to run on one sector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// The phases, in the order they will run.
    pub phases: Vec<Phase>,
    /// Padded bytes of the pieces AddPiece will place ([`pending_piece_bytes`]).
    pub piece_bytes: u64,
}

impl Work {
    /// One phase.
    pub fn phase(phase: Phase) -> Self {
        Work {
            phases: vec![phase],
            piece_bytes: 0,
        }
    }
}

/// Padded bytes of the piece files that AddPiece would still place in the sector at `sector_dir`
/// (which need not exist yet): with [`Placement::AllInOrder`] the files past those the sector records,
/// with [`Placement::Append`] the files whose length matches no recorded piece (a file of the same
/// length may be that piece, recognised later by its CommP). At most what is left of the sector.
pub fn pending_piece_bytes(
    sector_dir: &Path,
    size: SectorSize,
    files: &[PathBuf],
    placement: Placement,
) -> SealResult<u64> {
    let meta_path = SectorDir::at(sector_dir).sector_meta();
    let recorded = if meta_path.exists() {
        read_json::<SectorMeta>(&meta_path, "AddPiece", "AddPiece")?.pieces
    } else {
        Vec::new()
    };
    let end = recorded
        .last()
        .map_or(0, |p| p.offset.saturating_add(p.padded_size));
    let skip = match placement {
        Placement::AllInOrder => recorded.len(),
        Placement::Append => 0,
    };
    let mut bytes = 0u64;
    for file in files.iter().skip(skip) {
        let len = std::fs::metadata(file)
            .map_err(|source| SealError::Io {
                path: file.clone(),
                source,
            })?
            .len();
        if placement == Placement::Append && recorded.iter().any(|r| r.payload_size == len) {
            continue;
        }
        bytes = bytes.saturating_add(PaddedPieceSize::for_payload(len)?.bytes());
    }
    Ok(bytes.min(size.bytes().saturating_sub(end)))
}

/// The writes and memory of some work on one sector, less what is already done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The sector size.
    pub size: SectorSize,
    /// The phases that will run (those found done are left out).
    pub phases: Vec<Phase>,
    /// The phases found done: they need nothing.
    pub skipped: Vec<Phase>,
    /// Every write still to make, in order, with the bytes of the file each replaces.
    pub writes: Vec<Write>,
    /// The largest memory need among the phases that run, with its phase.
    pub memory: Option<(Phase, Memory)>,
}

/// Bytes a file takes on disk now (its allocated blocks where the platform says), `None` if absent.
fn on_disk(path: &Path) -> SealResult<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(m) => {
            #[cfg(unix)]
            let bytes = {
                use std::os::unix::fs::MetadataExt;
                m.blocks().saturating_mul(512).min(m.len())
            };
            #[cfg(not(unix))]
            let bytes = m.len();
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SealError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl Plan {
    /// The plan for `work` on the sector at `sector_dir` (which need not exist yet) with its parent
    /// cache in `cache_dir`: each phase's [`figures`], less what the directories already hold (see the
    /// module docs). Reads the directories; writes nothing.
    pub fn new(
        sector_dir: &Path,
        cache_dir: &Path,
        size: SectorSize,
        work: &Work,
    ) -> SealResult<Plan> {
        let dir = SectorDir::at(sector_dir);
        let mut plan = Plan {
            size,
            phases: Vec::new(),
            skipped: Vec::new(),
            writes: Vec::new(),
            memory: None,
        };
        let cache_present = ParentCache::is_present(cache_dir, size);
        let mut cache_planned = false;
        for &phase in &work.phases {
            let done = match phase {
                Phase::PreCommit1 => dir.pc1().exists() && dir.pc2().exists(),
                Phase::PreCommit2 => dir.pc2().exists(),
                _ => false,
            };
            if done {
                plan.skipped.push(phase);
                continue;
            }
            let figures = figures(size, phase, work.piece_bytes);
            for w in figures.writes {
                let path = match w.part {
                    Part::ParentCache if cache_present || cache_planned => continue,
                    Part::ParentCache => {
                        cache_planned = true;
                        Some(cache_dir.join(ParentCache::file_name(size)))
                    }
                    // A complete layer is kept: PreCommit1 resumes after it.
                    Part::Layer(l) if dir.layer(l).exists() => continue,
                    Part::Layer(_) | Part::Unsealed | Part::Records => None,
                    Part::TreeD => Some(dir.tree_d()),
                    Part::Columns => Some(dir.columns()),
                    Part::TreeC => Some(dir.tree_c()),
                    Part::Replica => Some(dir.sealed()),
                    Part::TreeR => Some(dir.tree_r()),
                    Part::Commit1 => Some(dir.commit1()),
                    Part::Commit2 => Some(dir.commit2()),
                };
                let replaces = match path {
                    Some(p) => on_disk(&p)?.unwrap_or(0),
                    None => 0,
                };
                plan.writes.push(Write { replaces, ..w });
            }
            if let Some(m) = figures.memory
                && plan.memory.is_none_or(|(_, max)| m.bytes > max.bytes)
            {
                plan.memory = Some((phase, m));
            }
            plan.phases.push(phase);
        }
        Ok(plan)
    }

    /// The most bytes the work adds at any moment to a filesystem holding the locations `on` accepts:
    /// the running total of its writes there, each counted in full when it starts and less the file it
    /// replaces once renamed.
    pub fn peak(&self, on: impl Fn(Location) -> bool) -> u64 {
        let mut running = 0u64;
        let mut peak = 0u64;
        for w in self.writes.iter().filter(|w| on(w.part.location())) {
            running = running.saturating_add(w.bytes);
            peak = peak.max(running);
            running = running.saturating_sub(w.replaces);
        }
        peak
    }

    /// What the writes there are for, largest first: `11 layers (704.0 GiB), tree D (64.0 GiB)`.
    fn parts(&self, on: impl Fn(Location) -> bool) -> String {
        let mut parts: Vec<(Part, usize, u64)> = Vec::new();
        for w in self.writes.iter().filter(|w| on(w.part.location())) {
            match parts.iter_mut().find(|(p, _, _)| same_kind(*p, w.part)) {
                Some((_, count, bytes)) => {
                    *count = count.saturating_add(1);
                    *bytes = bytes.saturating_add(w.bytes);
                }
                None => parts.push((w.part, 1, w.bytes)),
            }
        }
        parts.sort_by_key(|p| std::cmp::Reverse(p.2));
        let names: Vec<String> = parts
            .iter()
            .map(|&(part, count, bytes)| match part {
                Part::Layer(_) if count == 1 => format!("1 layer ({})", human_bytes(bytes)),
                Part::Layer(_) => format!("{count} layers ({})", human_bytes(bytes)),
                _ => format!("{} ({})", part.label(), human_bytes(bytes)),
            })
            .collect();
        join_and(&names)
    }

    fn work(&self) -> String {
        let names: Vec<String> = self.phases.iter().map(|p| p.name().to_string()).collect();
        join_and(&names)
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Bytes for people: `50.2 GiB`, `64.0 KiB`, `900 bytes`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    UNITS.iter().find(|&&(_, unit)| bytes >= unit).map_or_else(
        || format!("{bytes} bytes"),
        |&(name, unit)| format!("{:.1} {name}", bytes as f64 / unit as f64),
    )
}

/// A filesystem as the free-space check sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsSpace {
    /// Equal for two paths on the same filesystem (the device id).
    pub id: u64,
    /// Bytes available to this process (`f_bavail · f_frsize`); `None` when the filesystem reports
    /// no figure (some network and FUSE filesystems report zero blocks).
    pub available: Option<u64>,
}

/// Where the check asks for free disk and memory: the system ([`SystemProbe`]), or a stand-in for
/// tests ([`FixedSpace`]).
pub trait SpaceProbe {
    /// The filesystem holding `path`, an existing file or directory.
    fn filesystem(&self, path: &Path) -> io::Result<FsSpace>;
    /// Memory available to new allocations; `None` when the system does not say.
    fn available_memory(&self) -> io::Result<Option<u64>>;
}

/// The system's figures: `statvfs(2)` for disk, `/proc/meminfo`'s `MemAvailable` (and the cgroup's
/// `memory.max` less `memory.current`, when lower) for memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemProbe;

impl SpaceProbe for SystemProbe {
    fn filesystem(&self, path: &Path) -> io::Result<FsSpace> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let id = std::fs::metadata(path)?.dev();
            let st = rustix::fs::statvfs(path)?;
            let available =
                (st.f_blocks > 0).then(|| st.f_bavail.saturating_mul(st.f_frsize.max(1)));
            Ok(FsSpace { id, available })
        }
        #[cfg(not(unix))]
        {
            std::fs::metadata(path)?;
            Ok(FsSpace {
                id: 0,
                available: None,
            })
        }
    }

    fn available_memory(&self) -> io::Result<Option<u64>> {
        let meminfo = match std::fs::read_to_string("/proc/meminfo") {
            Ok(text) => parse_meminfo(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let cgroup = cgroup_available();
        Ok(match (meminfo, cgroup) {
            (Some(m), Some(c)) => Some(m.min(c)),
            (m, c) => m.or(c),
        })
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// Memory left under this process's cgroup (v2) limit: `memory.max − memory.current`; `None` without a
/// limit or a cgroup v2 hierarchy.
fn cgroup_available() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let max = std::fs::read_to_string(dir.join("memory.max")).ok()?;
    let current = std::fs::read_to_string(dir.join("memory.current")).ok()?;
    cgroup_left(&max, &current)
}

/// `memory.max − memory.current` from the two files' text; `None` for `max` (no limit).
pub fn cgroup_left(max: &str, current: &str) -> Option<u64> {
    let max: u64 = max.trim().parse().ok()?;
    let current: u64 = current.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// Fixed figures in place of the system's, for tests: `disk` stands for the bytes available on every
/// filesystem, `memory` for the memory available; `None` asks the system. Filesystems are still told
/// apart by the system's device ids.
#[derive(Clone, Copy, Debug, Default)]
pub struct FixedSpace {
    /// Bytes available on every filesystem.
    pub disk: Option<u64>,
    /// Bytes of memory available.
    pub memory: Option<u64>,
}

impl SpaceProbe for FixedSpace {
    fn filesystem(&self, path: &Path) -> io::Result<FsSpace> {
        let fs = SystemProbe.filesystem(path)?;
        Ok(FsSpace {
            available: self.disk.or(fs.available),
            ..fs
        })
    }

    fn available_memory(&self) -> io::Result<Option<u64>> {
        match self.memory {
            Some(m) => Ok(Some(m)),
            None => SystemProbe.available_memory(),
        }
    }
}

/// The nearest existing directory at or above `path` (a sector directory may not exist yet).
fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Checks `plan` against the space `probe` reports: disk on the filesystems of `sector_dir` and
/// `cache_dir` (added up when they share one), then memory. A filesystem or a system that reports no
/// figure is not checked (logged at `warn`).
pub fn check_plan(
    plan: &Plan,
    sector_dir: &Path,
    cache_dir: &Path,
    probe: &dyn SpaceProbe,
) -> SealResult<()> {
    let fs_at = |dir: &Path| {
        let at = existing_ancestor(dir);
        probe
            .filesystem(&at)
            .map_err(|source| SealError::Io { path: at, source })
    };
    let sector_fs = fs_at(sector_dir)?;
    let cache_fs = if plan.peak(|l| l == Location::CacheDir) > 0 {
        Some(fs_at(cache_dir)?)
    } else {
        None
    };
    let sector_place = sector_dir.display().to_string();
    let cache_place = cache_dir.display().to_string();
    let mut checks: Vec<(FsSpace, String, Vec<Location>, &'static str)> = Vec::new();
    match cache_fs {
        Some(c) if c.id == sector_fs.id => checks.push((
            sector_fs,
            format!("{sector_place} and {cache_place}"),
            vec![Location::SectorDir, Location::CacheDir],
            "use --sector-dir and --cache-dir on a larger disk",
        )),
        Some(c) => {
            checks.push((
                sector_fs,
                sector_place,
                vec![Location::SectorDir],
                "use a --sector-dir on a larger disk",
            ));
            checks.push((
                c,
                cache_place,
                vec![Location::CacheDir],
                "use a --cache-dir on a larger disk",
            ));
        }
        None => checks.push((
            sector_fs,
            sector_place,
            vec![Location::SectorDir],
            "use a --sector-dir on a larger disk",
        )),
    }
    for (fs, place, locations, remedy) in checks {
        let on = |l: Location| locations.contains(&l);
        let needed = plan.peak(on);
        match fs.available {
            Some(available) if needed > available => {
                return Err(SealError::InsufficientDisk {
                    work: plan.work(),
                    size: plan.size,
                    place,
                    needed,
                    available,
                    parts: plan.parts(on),
                    remedy,
                });
            }
            Some(_) => {}
            None => {
                tracing::warn!(%place, needed, "the filesystem reports no free space: not checked");
            }
        }
    }
    if let Some((phase, memory)) = plan.memory
        && memory.bytes > 0
    {
        let available = probe.available_memory().map_err(|source| SealError::Io {
            path: "/proc/meminfo".into(),
            source,
        })?;
        match available {
            Some(available) if memory.bytes > available => {
                return Err(SealError::InsufficientMemory {
                    work: phase.name().to_string(),
                    size: plan.size,
                    what: memory.what,
                    needed: memory.bytes,
                    available,
                });
            }
            Some(_) => {}
            None => tracing::warn!(
                needed = memory.bytes,
                "the system reports no available memory: not checked"
            ),
        }
    }
    Ok(())
}

/// Plans `work` on the sector at `sector_dir` ([`Plan::new`]) and checks it ([`check_plan`]): what a
/// caller runs before the phases, holding the sector's lock if the directory exists. Returns the plan
/// when everything fits.
pub fn check(
    sector_dir: &Path,
    cache_dir: &Path,
    size: SectorSize,
    work: &Work,
    probe: &dyn SpaceProbe,
) -> SealResult<Plan> {
    let plan = Plan::new(sector_dir, cache_dir, size, work)?;
    check_plan(&plan, sector_dir, cache_dir, probe)?;
    tracing::debug!(
        %size,
        phases = ?plan.phases,
        sector_bytes = plan.peak(|l| l == Location::SectorDir),
        cache_bytes = plan.peak(|l| l == Location::CacheDir),
        "capacity checked"
    );
    Ok(plan)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const GIB: u64 = 1 << 30;

    /// Per size: parent cache, one layer, tree D, tree C, tree R, commit1.bin, commit2.bin — worked
    /// out by hand from the formulas in the module docs, not by the code under test.
    const FILES: [(SectorSize, [u64; 7]); 5] = [
        (SectorSize::S2KiB, [3712, 2048, 2272, 544, 288, 18_489, 192]),
        (
            SectorSize::S8MiB,
            [
                14_680_192,
                8 << 20,
                8_388_832,
                1_198_624,
                18_976,
                48_081,
                192,
            ],
        ),
        (
            SectorSize::S512MiB,
            [
                939_524_224,
                512 << 20,
                536_871_136,
                76_696_096,
                1_198_624,
                62_877,
                192,
            ],
        ),
        (
            SectorSize::S32GiB,
            [
                60_129_542_272,
                32 << 30,
                34_359_738_592,
                4_908_534_304,
                76_696_096,
                7_761_709,
                1920,
            ],
        ),
        (
            SectorSize::S64GiB,
            [
                120_259_084_416,
                64 << 30,
                68_719_476_960,
                9_817_068_384,
                153_391_968,
                7_862_689,
                1920,
            ],
        ),
    ];

    #[test]
    fn the_figures_of_every_size_and_phase() {
        for (size, [cache, layer, tree_d, tree_c, tree_r, c1, c2]) in FILES {
            let n = size.nodes();
            // The closed forms of the module docs.
            assert_eq!(cache, 128 + 56 * n, "{size}");
            assert_eq!(layer, 32 * n, "{size}");
            assert_eq!(tree_d, 256 + 32 * (n - 1), "{size}");
            assert_eq!(ParentCache::file_len(size), cache, "{size}");
            assert_eq!(layer_bytes(size), layer, "{size}");
            assert_eq!(tree_d_bytes(size), tree_d, "{size}");
            assert_eq!(tree_c_bytes(size), tree_c, "{size}");
            assert_eq!(tree_r_bytes(size), tree_r, "{size}");
            assert_eq!(commit1_bytes(size), c1, "{size}");
            assert_eq!(commit2_bytes(size), c2, "{size}");

            let layers = size.layers() as u64;
            let pc1 = figures(size, Phase::PreCommit1, 0);
            assert_eq!(pc1.cache_bytes(), cache);
            assert_eq!(pc1.part_bytes(Part::Layer(1)), layers * layer);
            assert_eq!(
                pc1.sector_bytes(),
                layers * layer + tree_d + RECORDS_BYTES,
                "{size}"
            );
            assert_eq!(pc1.memory.unwrap().bytes, 2 * layer, "{size}");

            let pc2 = figures(size, Phase::PreCommit2, 0);
            assert_eq!(pc2.cache_bytes(), 0);
            assert_eq!(
                pc2.sector_bytes(),
                2 * layer + tree_c + tree_r + RECORDS_BYTES,
                "{size}"
            );
            assert_eq!(pc2.memory.unwrap().bytes, 0);

            let add = figures(size, Phase::AddPiece, size.bytes() / 2);
            assert_eq!(add.sector_bytes(), size.bytes() / 2 + RECORDS_BYTES);
            // Never more than the sector holds.
            let add = figures(size, Phase::AddPiece, u64::MAX);
            assert_eq!(add.part_bytes(Part::Unsealed), size.bytes());

            let commit1 = figures(size, Phase::Commit1, 0);
            assert_eq!(commit1.sector_bytes(), c1 + RECORDS_BYTES);
            assert_eq!(commit1.memory.unwrap().bytes, 2 * c1);
            let commit2 = figures(size, Phase::Commit2, 0);
            assert_eq!((commit2.sector_bytes(), commit2.memory), (c2, None));
            let finalize = figures(size, Phase::Finalize, 0);
            assert_eq!((finalize.sector_bytes(), finalize.cache_bytes()), (0, 0));
            let unseal = figures(size, Phase::Unseal, 0);
            assert_eq!((unseal.sector_bytes(), unseal.cache_bytes()), (0, cache));
            assert_eq!(unseal.memory.unwrap().bytes, 2 * layer);
        }
        // The headline figures: 64 GiB PreCommit1 writes 112 GiB of parent cache (120.3 GB), 704 GiB
        // of layers and 64 GiB of tree D, and holds 128 GiB of labels.
        let pc1 = figures(SectorSize::S64GiB, Phase::PreCommit1, 0);
        assert_eq!(human_bytes(pc1.cache_bytes()), "112.0 GiB");
        assert_eq!(pc1.part_bytes(Part::Layer(0)), 704 * GIB);
        assert_eq!(human_bytes(pc1.part_bytes(Part::TreeD)), "64.0 GiB");
        assert_eq!(pc1.memory.unwrap().bytes, 128 * GIB);
        assert!(
            pc1.writes
                .iter()
                .all(|w| w.exact || w.part == Part::Records)
        );
    }

    /// A probe with fixed figures per directory (the first whose path is a prefix of the one asked).
    struct Fake {
        filesystems: Vec<(PathBuf, FsSpace)>,
        memory: Option<u64>,
    }

    impl SpaceProbe for Fake {
        fn filesystem(&self, path: &Path) -> io::Result<FsSpace> {
            self.filesystems
                .iter()
                .find(|(p, _)| path.starts_with(p))
                .map(|&(_, fs)| fs)
                .ok_or_else(|| io::Error::other(format!("no filesystem for {}", path.display())))
        }
        fn available_memory(&self) -> io::Result<Option<u64>> {
            Ok(self.memory)
        }
    }

    fn one_fs(root: &Path, available: u64) -> Fake {
        Fake {
            filesystems: vec![(
                root.to_path_buf(),
                FsSpace {
                    id: 1,
                    available: Some(available),
                },
            )],
            memory: Some(u64::MAX),
        }
    }

    fn pc1_work() -> Work {
        Work::phase(Phase::PreCommit1)
    }

    #[test]
    fn the_refusal_states_the_figures_and_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let (sector, cache) = (tmp.path().join("s-7"), tmp.path().join("cache"));
        let probe = one_fs(tmp.path(), 50 * GIB + GIB / 5);
        let size = SectorSize::S64GiB;
        let err = check(&sector, &cache, size, &pc1_work(), &probe).unwrap_err();
        let needed = ParentCache::file_len(size) + 704 * GIB + tree_d_bytes(size) + RECORDS_BYTES;
        match &err {
            SealError::InsufficientDisk {
                needed: n,
                available,
                ..
            } => assert_eq!((*n, *available), (needed, 50 * GIB + GIB / 5)),
            other => panic!("{other}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "PreCommit1 of a 64GiB sector needs 880.0 GiB more on {} and {} (50.2 GiB free) to write \
                 11 layers (704.0 GiB), the parent cache (112.0 GiB), tree D (64.0 GiB) and its records \
                 (64.0 KiB): free 829.8 GiB there, or use --sector-dir and --cache-dir on a larger disk",
                sector.display(),
                cache.display()
            )
        );
        // Nothing was created.
        assert!(!sector.exists() && !cache.exists());

        // Enough space: the plan comes back.
        let plan = check(
            &sector,
            &cache,
            size,
            &pc1_work(),
            &one_fs(tmp.path(), needed),
        )
        .unwrap();
        assert_eq!(plan.peak(|_| true), needed);
        assert_eq!(plan.phases, [Phase::PreCommit1]);
    }

    #[test]
    fn separate_filesystems_are_checked_separately() {
        let tmp = tempfile::tempdir().unwrap();
        let (sector, cache) = (tmp.path().join("disk-a/s"), tmp.path().join("disk-b/cache"));
        let fs = |id, available| FsSpace {
            id,
            available: Some(available),
        };
        let size = SectorSize::S32GiB;
        let sector_need = figures(size, Phase::PreCommit1, 0).sector_bytes();
        let cache_need = ParentCache::file_len(size);
        let probe = |a, b| Fake {
            filesystems: vec![
                (tmp.path().join("disk-a"), fs(1, a)),
                (tmp.path().join("disk-b"), fs(2, b)),
                (tmp.path().to_path_buf(), fs(3, 0)),
            ],
            memory: None,
        };
        std::fs::create_dir_all(tmp.path().join("disk-a")).unwrap();
        std::fs::create_dir_all(tmp.path().join("disk-b")).unwrap();
        // Each disk holds its own share exactly.
        check(
            &sector,
            &cache,
            size,
            &pc1_work(),
            &probe(sector_need, cache_need),
        )
        .unwrap();
        let err = check(
            &sector,
            &cache,
            size,
            &pc1_work(),
            &probe(sector_need, cache_need - 1),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs 56.0 GiB more on"), "{err}");
        assert!(
            err.contains("to write the parent cache (56.0 GiB)"),
            "{err}"
        );
        assert!(err.ends_with("use a --cache-dir on a larger disk"), "{err}");
        let err = check(
            &sector,
            &cache,
            size,
            &pc1_work(),
            &probe(sector_need - 1, cache_need),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("11 layers (352.0 GiB), tree D (32.0 GiB)"),
            "{err}"
        );
        assert!(
            err.ends_with("use a --sector-dir on a larger disk"),
            "{err}"
        );
    }

    #[test]
    fn memory_is_checked_after_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let mut probe = one_fs(tmp.path(), u64::MAX);
        probe.memory = Some(100 * GIB);
        let size = SectorSize::S64GiB;
        let err = check(&tmp.path().join("s"), tmp.path(), size, &pc1_work(), &probe).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PreCommit1 of a 64GiB sector needs 128.0 GiB of memory for two layers of labels, but \
             100.0 GiB is available: stop other jobs, or run it on a machine with more memory"
        );
        // Unknown memory (and an unknown filesystem figure) is not refused.
        probe.memory = None;
        probe.filesystems[0].1.available = None;
        check(&tmp.path().join("s"), tmp.path(), size, &pc1_work(), &probe).unwrap();
        // PreCommit2 holds no sector-sized buffer.
        probe.memory = Some(0);
        let pc2 = Work::phase(Phase::PreCommit2);
        check(&tmp.path().join("s"), tmp.path(), size, &pc2, &probe).unwrap();
    }

    fn file(path: &Path, len: u64) {
        let f = std::fs::File::create(path).unwrap();
        f.set_len(len).unwrap();
        // Allocated, as real phase outputs are.
        std::fs::write(path, vec![1u8; len as usize]).unwrap();
    }

    #[test]
    fn work_already_done_needs_no_new_space() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, cache) = (tmp.path().join("s"), tmp.path().join("cache"));
        std::fs::create_dir_all(&root).unwrap();
        let dir = SectorDir::at(&root);
        let size = SectorSize::S8MiB;
        let (layer, tree_d) = (layer_bytes(size), tree_d_bytes(size));
        let plan = |phases: &[Phase]| {
            let work = Work {
                phases: phases.to_vec(),
                piece_bytes: 0,
            };
            Plan::new(&root, &cache, size, &work).unwrap()
        };
        let sector = |l| l == Location::SectorDir;
        let cached = |l| l == Location::CacheDir;

        // From scratch: two layers, tree D, records; the parent cache.
        let fresh = plan(&[Phase::PreCommit1]);
        assert_eq!(fresh.peak(sector), 2 * layer + tree_d + RECORDS_BYTES);
        assert_eq!(fresh.peak(cached), ParentCache::file_len(size));

        // Layer 1 written before a crash: only layer 2 is still to come. Tree D is always rebuilt,
        // beside the old one until its rename (which frees the old one's bytes before the records).
        file(&dir.layer(1), layer);
        file(&dir.tree_d(), tree_d);
        let resumed = plan(&[Phase::PreCommit1]);
        assert_eq!(resumed.peak(sector), layer + tree_d);
        assert!(resumed.writes.iter().all(|w| w.part != Part::Layer(1)));
        let td = resumed
            .writes
            .iter()
            .find(|w| w.part == Part::TreeD)
            .unwrap();
        assert_eq!(td.replaces, tree_d);

        // A valid parent cache needs nothing; a damaged one is rebuilt (and its bytes freed after).
        ParentCache::build(&cache, size).unwrap();
        assert_eq!(plan(&[Phase::PreCommit1]).peak(cached), 0);
        let cache_file = cache.join(ParentCache::file_name(size));
        std::fs::write(&cache_file, b"damaged").unwrap();
        let rebuilt = plan(&[Phase::PreCommit1]);
        assert_eq!(rebuilt.peak(cached), ParentCache::file_len(size));
        ParentCache::build(&cache, size).unwrap();

        // PreCommit2 interrupted after the columns and tree C: they are rewritten, each new file beside
        // its old one until renamed, so the peak is the replica and tree R on top of one rewrite.
        file(&dir.layer(2), layer);
        let (tree_c, tree_r) = (tree_c_bytes(size), tree_r_bytes(size));
        file(&dir.columns(), layer);
        file(&dir.tree_c(), tree_c);
        let pc2 = plan(&[Phase::PreCommit2]);
        // columns: +layer, -layer; tree C: +tree_c, -tree_c; replica: +layer; tree R; records.
        assert_eq!(pc2.peak(sector), layer + tree_r + RECORDS_BYTES);
        assert_eq!(
            plan(&[Phase::PreCommit2]).peak(sector),
            figures(size, Phase::PreCommit2, 0).sector_bytes() - layer - tree_c
        );

        // Once pc1.json and pc2.json exist, PreCommit1 and PreCommit2 are skipped: a whole `seal run`
        // on a sealed sector needs only the Commit1 output and the records.
        std::fs::write(dir.pc1(), b"{}").unwrap();
        std::fs::write(dir.pc2(), b"{}").unwrap();
        let run = plan(&[
            Phase::AddPiece,
            Phase::PreCommit1,
            Phase::PreCommit2,
            Phase::Commit1,
        ]);
        assert_eq!(run.skipped, [Phase::PreCommit1, Phase::PreCommit2]);
        assert_eq!(run.phases, [Phase::AddPiece, Phase::Commit1]);
        assert_eq!(run.peak(|_| true), commit1_bytes(size) + 2 * RECORDS_BYTES);
        assert_eq!(run.memory.unwrap().0, Phase::Commit1);
    }

    #[test]
    fn a_whole_run_adds_up_and_its_memory_is_the_largest_phase() {
        let tmp = tempfile::tempdir().unwrap();
        let size = SectorSize::S32GiB;
        let work = Work {
            phases: vec![
                Phase::AddPiece,
                Phase::PreCommit1,
                Phase::PreCommit2,
                Phase::Commit1,
                Phase::Commit2,
                Phase::Finalize,
            ],
            piece_bytes: 16 << 30,
        };
        let plan = Plan::new(&tmp.path().join("s"), tmp.path(), size, &work).unwrap();
        let total: u64 = work
            .phases
            .iter()
            .map(|&p| {
                let f = figures(size, p, work.piece_bytes);
                f.sector_bytes() + f.cache_bytes()
            })
            .sum();
        assert_eq!(plan.peak(|_| true), total);
        assert_eq!(human_bytes(total), "524.7 GiB");
        assert_eq!(
            plan.memory.unwrap(),
            (Phase::PreCommit1, labelling_memory(size))
        );
    }

    #[test]
    fn pieces_already_in_the_sector_need_no_space() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("s");
        let files: Vec<PathBuf> = [(500u64, "a"), (1000, "b"), (100, "c"), (2000, "d")]
            .iter()
            .map(|&(len, name)| {
                let p = tmp.path().join(name);
                std::fs::write(&p, vec![7u8; len as usize]).unwrap();
                p
            })
            .collect();
        let size = SectorSize::S8MiB;
        let pending = |placement| pending_piece_bytes(&root, size, &files, placement).unwrap();
        // 500 → 512 padded, 1000 → 1024, 100 → 128, 2000 → 2048.
        assert_eq!(pending(Placement::AllInOrder), 512 + 1024 + 128 + 2048);
        let dir = SectorDir::create(&root).unwrap();
        let id = crate::seal::SectorId {
            size,
            miner_id: 1000,
            sector_number: 1,
        };
        crate::seal::place_pieces(&dir, &id, &files[..1], Placement::AllInOrder).unwrap();
        assert_eq!(pending(Placement::AllInOrder), 1024 + 128 + 2048);
        assert_eq!(pending(Placement::Append), 1024 + 128 + 2048);
        // Never more than the sector has left.
        let small = SectorSize::S2KiB;
        let root2 = tmp.path().join("s2");
        assert_eq!(
            pending_piece_bytes(&root2, small, &files, Placement::AllInOrder).unwrap(),
            2048
        );
    }

    #[test]
    fn the_real_filesystem_and_memory_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = SystemProbe.filesystem(tmp.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(fs.id, std::fs::metadata(tmp.path()).unwrap().dev());
            let available = fs.available.unwrap();
            assert!(available > 0);
            // Writing a MiB shows up in the figure (other writers may move it too: a loose bound).
            let before = SystemProbe
                .filesystem(tmp.path())
                .unwrap()
                .available
                .unwrap();
            let mut f = std::fs::File::create(tmp.path().join("x")).unwrap();
            std::io::Write::write_all(&mut f, &vec![1u8; 8 << 20]).unwrap();
            f.sync_all().unwrap();
            let after = SystemProbe
                .filesystem(tmp.path())
                .unwrap()
                .available
                .unwrap();
            assert!(
                after < before || before.abs_diff(after) > (4 << 20),
                "{before} {after}"
            );
        }
        #[cfg(target_os = "linux")]
        assert!(SystemProbe.available_memory().unwrap().unwrap() > 0);
        // A 2 KiB sector fits on any test machine; a directory that does not exist yet is checked on
        // its nearest existing parent.
        let plan = check(
            &tmp.path().join("a/b/s"),
            &tmp.path().join("cache"),
            SectorSize::S2KiB,
            &pc1_work(),
            &SystemProbe,
        )
        .unwrap();
        assert_eq!(
            plan.peak(|_| true),
            figures(SectorSize::S2KiB, Phase::PreCommit1, 0).sector_bytes() + 3712
        );
        // A fixed figure replaces the filesystem's.
        let err = check(
            &tmp.path().join("s"),
            tmp.path(),
            SectorSize::S2KiB,
            &pc1_work(),
            &FixedSpace {
                disk: Some(1000),
                memory: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("(1000 bytes free)"), "{err}");
    }

    #[test]
    fn meminfo_cgroup_and_byte_formats() {
        let text =
            "MemTotal:       131072000 kB\nMemFree:         1000 kB\nMemAvailable:   52428800 kB\n";
        assert_eq!(parse_meminfo(text), Some(50 * GIB));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
        assert_eq!(parse_meminfo("MemAvailable: x kB\n"), None);
        assert_eq!(cgroup_left("max\n", "100\n"), None);
        assert_eq!(cgroup_left("1000\n", "100\n"), Some(900));
        assert_eq!(cgroup_left("100\n", "1000\n"), Some(0));
        let cases: HashMap<u64, &str> = [
            (0, "0 bytes"),
            (1023, "1023 bytes"),
            (1024, "1.0 KiB"),
            (50 * GIB + GIB / 5, "50.2 GiB"),
            (1 << 40, "1.0 TiB"),
        ]
        .into_iter()
        .collect();
        for (bytes, text) in cases {
            assert_eq!(human_bytes(bytes), text);
        }
        assert_eq!(join_and(&[]), "");
        assert_eq!(join_and(&["a".into()]), "a");
        assert_eq!(
            join_and(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
    }
}
