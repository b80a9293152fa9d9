//! What a run measures, phase by phase.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use bls12_381::Bls12;
use groth16::Parameters;
use lode_proofs::circuit::porep::{self as porep_circuit, PorepCircuit};
use lode_proofs::circuit::post::{PostCircuit, PostKind};
use lode_proofs::merkle::{Blake3TreeD, DiskTree, PoseidonTree, TreeConfig};
use lode_proofs::node::{Node, trunc254};
use lode_proofs::params::ParamStore;
use lode_proofs::prover::G1Msm;
use lode_proofs::sector::SectorSize;
use lode_sealing::accel::{self, Gpu, GpuChoice};
use lode_sealing::labels::{
    BatchLabeller, BatchLayer, CpuBatchLabeller, CpuLabeller, GpuBatchLabeller, Labeller, MAX_BATCH,
};
use lode_sealing::parent_cache::ParentCache;
use lode_sealing::post::{SealedSector, prove_post_on};
use lode_sealing::seal::{self, BatchSector, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;
use rand_chacha::ChaCha20Rng;

use super::machine::Machine;
use super::measure::{Sample, measure};
use super::report::{BenchRun, now_rfc3339};
use super::{BenchError, BenchResult, io_at};

/// What a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Committed-capacity sectors through PreCommit1 (batched when several), PreCommit2 and
    /// Commit1, on disk.
    Seal,
    /// SDR labelling alone, layers 1 and 2, in memory (the batch labeller when several sectors).
    Labels,
    /// Tree D (binary BLAKE3) and tree C/R (arity-8 Poseidon) over a sector's worth of leaves.
    Trees,
    /// CommP of a sector's worth of bytes.
    Commp,
    /// Commit2 (the Groth16 PoRep proofs) of sectors sealed through Commit1 before the measured
    /// phases.
    Commit2,
    /// Winning PoSt and one Window PoSt over all the sectors, sealed before the measured phases.
    Post,
}

impl Kind {
    /// The name `lode bench` takes.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Seal => "seal",
            Kind::Labels => "labels",
            Kind::Trees => "trees",
            Kind::Commp => "commp",
            Kind::Commit2 => "commit2",
            Kind::Post => "post",
        }
    }
}

/// A run's parameters.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// What to measure.
    pub kind: Kind,
    /// Sector size.
    pub size: SectorSize,
    /// Sectors per repetition (1 to 64).
    pub sectors: u64,
    /// Repetitions.
    pub repeat: u32,
    /// A scratch directory for sector files and trees (emptied after each repetition).
    pub work: PathBuf,
    /// The parent cache directory.
    pub cache_dir: PathBuf,
    /// The Groth16 parameter directory (`commit2`, `post`): parameters missing there are generated
    /// (insecure, deterministic) before the measured phases.
    pub params_dir: PathBuf,
    /// The command line, recorded with the run.
    pub command: String,
    /// Where PreCommit1 labels (`seal`, `labels`; a device labels every run as a batch, even of
    /// one sector) and where the proofs' G1 sums run (`commit2`, `post`).
    pub gpu: GpuChoice,
}

fn proofs_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Proofs(e.to_string())
}

/// Deterministic leaves: `n` field nodes.
fn leaves(n: usize, seed: u64) -> Vec<Node> {
    crate::field_leaves(n, seed)
}

/// Runs `options`, reporting each phase's name to `started` as it starts.
///
/// # Errors
/// [`BenchError::Invalid`] for a sector count outside 1..=64 or no repetition; what the phases
/// return.
pub fn run(options: &RunOptions, started: &mut dyn FnMut(&str, u32)) -> BenchResult<BenchRun> {
    let o = options;
    if o.sectors == 0 || o.sectors > MAX_BATCH as u64 {
        return Err(BenchError::Invalid(format!(
            "--sectors {} is outside 1..={MAX_BATCH}",
            o.sectors
        )));
    }
    if o.repeat == 0 {
        return Err(BenchError::Invalid("--repeat must be at least 1".into()));
    }
    std::fs::create_dir_all(&o.work).map_err(io_at(&o.work))?;
    let mut samples: Vec<Sample> = Vec::new();
    let begun = now_rfc3339();
    let n = usize::try_from(o.size.nodes())
        .map_err(|_| BenchError::Invalid(format!("{} is too large here", o.size)))?;
    let gpu = match o.kind {
        Kind::Seal | Kind::Labels | Kind::Commit2 | Kind::Post => accel::open(o.gpu)?.map(Arc::new),
        Kind::Trees | Kind::Commp => None,
    };
    // The proofs' G1 sums on the device (made once: the prover keeps its key per device).
    let prover = gpu.clone().map(accel::prover_device);
    // Sealed sectors and parameters for the proving kinds, made once, outside the measured phases.
    let proving = match o.kind {
        Kind::Commit2 | Kind::Post => Some(Proving::prepare(o)?),
        _ => None,
    };
    for r in 0..o.repeat {
        let scratch = o.work.join(format!("repeat-{r}"));
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch).map_err(io_at(&scratch))?;
        }
        std::fs::create_dir_all(&scratch).map_err(io_at(&scratch))?;
        let mut phase = |name: &str, f: &mut dyn FnMut() -> BenchResult<()>| -> BenchResult<()> {
            started(name, r);
            let ((), s) = measure(name, r, o.sectors, f)?;
            samples.push(s);
            Ok(())
        };
        match o.kind {
            Kind::Seal => seal_phases(o, &scratch, gpu.as_deref(), &mut phase)?,
            Kind::Labels => {
                let cache = ParentCache::open_or_build(&o.cache_dir, o.size).map_err(proofs_err)?;
                let ids: Vec<Node> = (0..o.sectors)
                    .map(|i| trunc254([i as u8 + 1; 32]))
                    .collect();
                let none = &mut |_| ControlFlow::Continue(());
                if let Some(g) = gpu.as_deref() {
                    let device = GpuBatchLabeller::new(&cache, g);
                    let lanes = ids.len();
                    let mut l1 = BatchLayer::new(n, lanes)?;
                    let mut l2 = BatchLayer::new(n, lanes)?;
                    phase("label_layer1", &mut || {
                        Ok(device.label_layers(&ids, 1, None, &mut l1, none)?)
                    })?;
                    phase("label_layer2", &mut || {
                        Ok(device.label_layers(&ids, 2, Some(&l1), &mut l2, none)?)
                    })?;
                } else if o.sectors == 1 {
                    let single = CpuLabeller::new(&cache);
                    let (mut l1, mut l2) = (vec![Node::default(); n], vec![Node::default(); n]);
                    phase("label_layer1", &mut || {
                        Ok(single.label_layer(&ids[0], 1, None, &mut l1, none)?)
                    })?;
                    phase("label_layer2", &mut || {
                        Ok(single.label_layer(&ids[0], 2, Some(&l1), &mut l2, none)?)
                    })?;
                } else {
                    let batch = CpuBatchLabeller::new(&cache);
                    let lanes = ids.len();
                    let mut l1 = BatchLayer::new(n, lanes)?;
                    let mut l2 = BatchLayer::new(n, lanes)?;
                    phase("label_layer1", &mut || {
                        Ok(batch.label_layers(&ids, 1, None, &mut l1, none)?)
                    })?;
                    phase("label_layer2", &mut || {
                        Ok(batch.label_layers(&ids, 2, Some(&l1), &mut l2, none)?)
                    })?;
                }
            }
            Kind::Trees => {
                let data = leaves(n, 7);
                let path = scratch.join("tree");
                phase("tree_d", &mut || {
                    for _ in 0..o.sectors {
                        DiskTree::<Blake3TreeD>::build(
                            &o.size.tree_d_shape(),
                            &data,
                            &path,
                            TreeConfig::default(),
                        )
                        .map_err(proofs_err)?;
                    }
                    Ok(())
                })?;
                phase("tree_c_r", &mut || {
                    for _ in 0..o.sectors {
                        DiskTree::<PoseidonTree>::build(
                            &o.size.tree_shape(),
                            &data,
                            &path,
                            TreeConfig::default(),
                        )
                        .map_err(proofs_err)?;
                    }
                    Ok(())
                })?;
            }
            Kind::Commit2 | Kind::Post => {
                if let Some(p) = &proving {
                    p.phases(o.kind, prover.as_ref(), &mut phase)?;
                }
            }
            Kind::Commp => {
                // The unpadded payload a piece of this size holds.
                let bytes = crate::bench_bytes((o.size.bytes() / 128 * 127) as usize, 9);
                phase("commp", &mut || {
                    for _ in 0..o.sectors {
                        lode_proofs::piece::commp_of_bytes(&bytes).map_err(proofs_err)?;
                    }
                    Ok(())
                })?;
            }
        }
        std::fs::remove_dir_all(&scratch).map_err(io_at(&scratch))?;
    }
    if let Some(p) = proving {
        p.remove()?;
    }
    Ok(BenchRun {
        kind: o.kind.name().into(),
        size: o.size.name().into(),
        sectors: o.sectors,
        repeat: o.repeat,
        started: begun,
        command: o.command.clone(),
        machine: Machine {
            gpu: gpu.map_or_else(|| "none".into(), |g| g.to_string()),
            ..Machine::this()
        },
        samples,
    })
}

type Phase<'a> = dyn FnMut(&str, &mut dyn FnMut() -> BenchResult<()>) -> BenchResult<()> + 'a;

fn seal_phases(
    o: &RunOptions,
    scratch: &std::path::Path,
    gpu: Option<&Gpu>,
    phase: &mut Phase<'_>,
) -> BenchResult<()> {
    // The parent cache is built once per size, outside the measured phases.
    ParentCache::open_or_build(&o.cache_dir, o.size).map_err(proofs_err)?;
    let mut dirs = Vec::new();
    let mut ids = Vec::new();
    for k in 0..o.sectors {
        dirs.push(SectorDir::create(&scratch.join(format!("s-{k}")))?);
        ids.push(SectorId {
            size: o.size,
            miner_id: MINER,
            sector_number: k,
        });
    }
    let ticket = trunc254([1; 32]);
    phase("precommit1", &mut || {
        if dirs.len() == 1 && gpu.is_none() {
            seal::pre_commit1(
                &dirs[0],
                &ids[0],
                ticket,
                &o.cache_dir,
                None,
                &mut no_progress,
            )?;
        } else {
            let sectors: Vec<BatchSector<'_>> = dirs
                .iter()
                .zip(&ids)
                .map(|(dir, id)| BatchSector {
                    dir,
                    id: *id,
                    ticket,
                })
                .collect();
            seal::pre_commit1_batch(&sectors, &o.cache_dir, gpu, &mut no_progress)?;
        }
        Ok(())
    })?;
    phase("precommit2", &mut || {
        for (dir, id) in dirs.iter().zip(&ids) {
            seal::pre_commit2_on(dir, id, gpu, &mut no_progress)?;
        }
        Ok(())
    })?;
    phase("commit1", &mut || {
        for (dir, id) in dirs.iter().zip(&ids) {
            seal::commit1(dir, id, trunc254([2; 32]))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Sectors sealed through Commit1, and the parameters that prove them.
struct Proving {
    root: PathBuf,
    sectors: Vec<SealedSector>,
    params: Vec<(ProofKind, Parameters<Bls12>)>,
}

/// Which parameters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ProofKind {
    Porep,
    Post(PostKind),
}

impl Proving {
    /// Seals `o.sectors` committed-capacity sectors through Commit1 under `o.work/prepared` and
    /// loads (or generates) the parameters `o.kind` proves with.
    fn prepare(o: &RunOptions) -> BenchResult<Self> {
        let root = o.work.join("prepared");
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(io_at(&root))?;
        }
        let mut sectors = Vec::new();
        for k in 0..o.sectors {
            let dir = SectorDir::create(&root.join(format!("s-{k}")))?;
            let id = SectorId {
                size: o.size,
                miner_id: MINER,
                sector_number: k,
            };
            let ticket = trunc254([1; 32]);
            seal::pre_commit1(&dir, &id, ticket, &o.cache_dir, None, &mut no_progress)?;
            seal::pre_commit2(&dir, &id, &mut no_progress)?;
            seal::commit1(&dir, &id, trunc254([2; 32]))?;
            sectors.push(SealedSector { id, dir });
        }
        let store = ParamStore::new(&o.params_dir);
        let kinds: &[ProofKind] = match o.kind {
            Kind::Commit2 => &[ProofKind::Porep],
            _ => &[
                ProofKind::Post(PostKind::Winning),
                ProofKind::Post(PostKind::Window),
            ],
        };
        let mut params = Vec::new();
        for &kind in kinds {
            let size = o.size;
            let (p, _, _) = match kind {
                ProofKind::Porep => {
                    store.get_or_generate_insecure(&porep_circuit::params_id(size), || {
                        PorepCircuit {
                            size,
                            witness: None,
                        }
                    })
                }
                ProofKind::Post(k) => {
                    store.get_or_generate_insecure(&k.params_id(size), || PostCircuit {
                        kind: k,
                        size,
                        witness: None,
                    })
                }
            }
            .map_err(proofs_err)?;
            params.push((kind, p));
        }
        Ok(Proving {
            root,
            sectors,
            params,
        })
    }

    fn params(&self, kind: ProofKind) -> BenchResult<&Parameters<Bls12>> {
        self.params
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| p)
            .ok_or_else(|| BenchError::Invalid("no parameters loaded for this proof".into()))
    }

    /// The measured phases: `commit2`, or `winning_post` then `window_post`.
    fn phases(
        &self,
        kind: Kind,
        device: Option<&Arc<dyn G1Msm>>,
        phase: &mut Phase<'_>,
    ) -> BenchResult<()> {
        // A fixed seed: runs draw the same blinding, so repetitions do the same work.
        let mut rng = <ChaCha20Rng as rand_core::SeedableRng>::from_seed([7; 32]);
        if kind == Kind::Commit2 {
            let params = self.params(ProofKind::Porep)?;
            // An existing proof would be kept rather than made again.
            for s in &self.sectors {
                let path = s.dir.commit2();
                if path.exists() {
                    std::fs::remove_file(&path).map_err(io_at(&path))?;
                }
            }
            return phase("commit2", &mut || {
                for s in &self.sectors {
                    seal::commit2_on(&s.dir, &s.id, params, &mut rng, device, &mut no_progress)?;
                }
                Ok(())
            });
        }
        let randomness = trunc254([3; 32]);
        for (name, post) in [
            ("winning_post", PostKind::Winning),
            ("window_post", PostKind::Window),
        ] {
            let params = self.params(ProofKind::Post(post))?;
            phase(name, &mut || {
                prove_post_on(
                    post,
                    &self.sectors,
                    Some(MINER),
                    &randomness,
                    params,
                    &mut rng,
                    device,
                    &mut no_progress,
                )?;
                Ok(())
            })?;
        }
        Ok(())
    }

    fn remove(self) -> BenchResult<()> {
        std::fs::remove_dir_all(&self.root).map_err(io_at(&self.root))
    }
}

/// The miner the benchmark's sectors belong to.
const MINER: u64 = 1000;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn options(kind: Kind, sectors: u64, dir: &std::path::Path) -> RunOptions {
        RunOptions {
            kind,
            size: SectorSize::S2KiB,
            sectors,
            repeat: 2,
            work: dir.join("work"),
            cache_dir: dir.join("cache"),
            params_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/lode-test-params"),
            command: "test".into(),
            gpu: GpuChoice::Off,
        }
    }

    #[test]
    fn every_kind_measures_its_phases_each_repetition() {
        let tmp = tempfile::tempdir().unwrap();
        for (kind, phases) in [
            (Kind::Seal, vec!["precommit1", "precommit2", "commit1"]),
            (Kind::Labels, vec!["label_layer1", "label_layer2"]),
            (Kind::Trees, vec!["tree_d", "tree_c_r"]),
            (Kind::Commp, vec!["commp"]),
        ] {
            for sectors in [1, 3] {
                let mut seen = Vec::new();
                let run = run(&options(kind, sectors, tmp.path()), &mut |p, r| {
                    seen.push((p.to_string(), r))
                })
                .unwrap();
                let names: Vec<&str> = run.samples.iter().map(|s| s.phase.as_str()).collect();
                let expected: Vec<&str> = phases.iter().chain(&phases).copied().collect();
                assert_eq!(names, expected, "{kind:?}");
                assert_eq!(seen.len(), expected.len());
                assert!(
                    run.samples
                        .iter()
                        .all(|s| s.sectors == sectors && s.wall_s > 0.0)
                );
                // The scratch is left empty.
                assert_eq!(
                    std::fs::read_dir(tmp.path().join("work")).unwrap().count(),
                    0
                );
            }
        }
        // On an OpenCL device (PoCL in CI), recorded as such.
        match lode_sealing::accel::open(GpuChoice::OpenCl) {
            Ok(Some(_)) => {
                for (kind, samples) in [(Kind::Labels, 4), (Kind::Seal, 6), (Kind::Post, 2)] {
                    let mut o = options(kind, 2, tmp.path());
                    o.gpu = GpuChoice::OpenCl;
                    if kind == Kind::Post {
                        o.repeat = 1;
                    }
                    let run = run(&o, &mut |_, _| {}).unwrap();
                    assert!(
                        run.machine.gpu.starts_with("opencl "),
                        "{}",
                        run.machine.gpu
                    );
                    assert_eq!(run.samples.len(), samples, "{kind:?}");
                }
            }
            _ if std::env::var_os("LODE_REQUIRE_OPENCL").is_some() => {
                panic!("LODE_REQUIRE_OPENCL is set but there is no OpenCL device")
            }
            _ => eprintln!("skipped the device runs: no OpenCL device"),
        }
        let mut bad = options(Kind::Labels, 65, tmp.path());
        assert!(run(&bad, &mut |_, _| {}).is_err());
        bad.sectors = 1;
        bad.repeat = 0;
        assert!(run(&bad, &mut |_, _| {}).is_err());
    }

    /// Commit2 and PoSt on 2 KiB sectors sealed beforehand, with the test parameters; the
    /// prepared sectors are removed afterwards.
    #[test]
    fn proving_kinds_measure_their_phases() {
        let tmp = tempfile::tempdir().unwrap();
        for (kind, sectors, phases) in [
            (Kind::Commit2, 1, vec!["commit2"]),
            (Kind::Post, 3, vec!["winning_post", "window_post"]),
        ] {
            let run = run(&options(kind, sectors, tmp.path()), &mut |_, _| {}).unwrap();
            let names: Vec<&str> = run.samples.iter().map(|s| s.phase.as_str()).collect();
            let expected: Vec<&str> = phases.iter().chain(&phases).copied().collect();
            assert_eq!(names, expected, "{kind:?}");
            assert!(run.samples.iter().all(|s| s.wall_s > 0.0));
            assert_eq!(run.kind, kind.name());
            assert_eq!(
                std::fs::read_dir(tmp.path().join("work")).unwrap().count(),
                0
            );
        }
    }
}
