//! The fast prover against `groth16`: the same proof for the same `r` and `s`, the same errors,
//! proofs that verify.

use super::*;
use bellman::{ConstraintSystem, Index, LinearCombination, Variable};
use groth16::{create_proof as reference, prepare_verifying_key, verify_proof};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// A linear combination as (variable, coefficient), variables numbered in allocation order
/// ("one" first).
type Terms = Vec<(usize, Scalar)>;

/// A satisfied random circuit: free private values, then products of random combinations (each a
/// new private variable, or a public input), with coefficients that are often 0 or 1.
#[derive(Clone)]
struct Products {
    /// Free private values.
    free: Vec<Scalar>,
    /// Per constraint: A and B, and whether the product is a public input.
    constraints: Vec<(Terms, Terms, bool)>,
    /// Whether witness values are known.
    witness: bool,
    /// A product whose value is off by one (an unsatisfied witness).
    wrong: Option<usize>,
}

impl Products {
    fn random(seed: u64, free: usize, constraints: usize) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut next = |n: u64| -> u64 {
            let mut b = [0u8; 8];
            rand_core::Rng::fill_bytes(&mut rng, &mut b);
            u64::from_le_bytes(b) % n
        };
        let coeff = |r: u64| match r % 4 {
            0 => Scalar::ONE,
            1 => Scalar::ZERO,
            2 => -Scalar::ONE,
            _ => Scalar::from(r.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        };
        let free_values: Vec<Scalar> = (0..free)
            .map(|i| match i % 3 {
                0 => Scalar::from(i as u64 % 2),
                _ => Scalar::from(next(u64::MAX)).square(),
            })
            .collect();
        let mut cons = Vec::new();
        // "one", the free variables, then one more per constraint.
        for vars in (1 + free..).take(constraints) {
            let mut lc = |max: u64, vars: usize| -> Vec<(usize, Scalar)> {
                (0..1 + next(max))
                    .map(|_| (next(vars as u64) as usize, coeff(next(1 << 40))))
                    .collect()
            };
            let a = lc(4, vars);
            let b = lc(3, vars);
            cons.push((a, b, next(8) == 0));
        }
        Products {
            free: free_values,
            constraints: cons,
            witness: true,
            wrong: None,
        }
    }

    fn blank(&self) -> Self {
        Products {
            witness: false,
            ..self.clone()
        }
    }
}

impl Circuit<Scalar> for Products {
    fn synthesize<CS: ConstraintSystem<Scalar>>(self, cs: &mut CS) -> Result<(), SynthesisError> {
        // Variables in allocation order, with their values: "one", the free ones, the products.
        let mut vars: Vec<(Variable, Scalar)> = vec![(CS::one(), Scalar::ONE)];
        let witness = self.witness;
        let value = move |v: Scalar| {
            if witness {
                Ok(v)
            } else {
                Err(SynthesisError::AssignmentMissing)
            }
        };
        for (i, v) in self.free.iter().enumerate() {
            let var = cs.alloc(|| format!("free {i}"), || value(*v))?;
            // Every variable in some constraint (parameter generation refuses others).
            cs.enforce(
                || format!("use {i}"),
                |lc| lc + var,
                |lc| lc + CS::one(),
                |lc| lc + var,
            );
            vars.push((var, *v));
        }
        for (k, (a, b, public)) in self.constraints.iter().enumerate() {
            let eval =
                |lc: &[(usize, Scalar)]| -> Scalar { lc.iter().map(|(v, c)| vars[*v].1 * c).sum() };
            let mut product = eval(a) * eval(b);
            if self.wrong == Some(k) {
                product += Scalar::ONE;
            }
            let var = if *public {
                cs.alloc_input(|| format!("out {k}"), || value(product))?
            } else {
                cs.alloc(|| format!("product {k}"), || value(product))?
            };
            let to_lc = |lc: &[(usize, Scalar)]| {
                let mut out = LinearCombination::zero();
                for (v, c) in lc {
                    out = out + (*c, vars[*v].0);
                }
                out
            };
            let (la, lb) = (to_lc(a), to_lc(b));
            cs.enforce(|| format!("c {k}"), |_| la, |_| lb, |lc| lc + var);
            vars.push((var, product));
        }
        Ok(())
    }
}

impl Products {
    /// The public inputs (without "one").
    fn inputs(&self) -> Vec<Scalar> {
        let mut cs = Inputs(Vec::new());
        self.clone()
            .synthesize(&mut cs)
            .map(|_| cs.0)
            .unwrap_or_default()
    }
}

/// Collects input values.
struct Inputs(Vec<Scalar>);

impl ConstraintSystem<Scalar> for Inputs {
    fn alloc<F, A, AR>(&mut self, _: A, _: F) -> Result<Variable, SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        Ok(Variable::new_unchecked(Index::Aux(0)))
    }
    fn alloc_input<F, A, AR>(&mut self, _: A, f: F) -> Result<Variable, SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        self.0.push(f()?);
        Ok(Variable::new_unchecked(Index::Input(self.0.len())))
    }
    fn enforce<A, AR, LA, LB, LC>(&mut self, _: A, _: LA, _: LB, _: LC)
    where
        A: FnOnce() -> AR,
        AR: Into<String>,
        LA: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
        LB: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
        LC: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
    {
    }
    crate::circuit::root_without_namespaces!();
}

fn params_for(c: &Products, seed: u8) -> Parameters<Bls12> {
    crate::params::setup::generate_random_parameters(
        c.blank(),
        &mut ChaCha20Rng::from_seed([seed; 32]),
    )
    .unwrap()
}

fn keys(params: &Parameters<Bls12>) -> Vec<ProvingKey> {
    let mut keys = vec![ProvingKey::portable(params).unwrap()];
    let best = ProvingKey::new(params).unwrap();
    if best.is_vectorized() {
        keys.push(best);
    }
    keys
}

#[test]
fn same_proofs_as_the_reference() {
    for (seed, free, constraints) in [
        (1, 1, 1),
        (2, 3, 10),
        (3, 10, 300),
        (4, 40, 1500),
        (5, 5, 5000),
    ] {
        let circuit = Products::random(seed, free, constraints);
        let params = params_for(&circuit, seed as u8);
        let pvk = prepare_verifying_key(&params.vk);
        for key in keys(&params) {
            for (r, s) in [
                (Scalar::from(3u64), Scalar::from(5u64)),
                (Scalar::ZERO, Scalar::ZERO),
                (-Scalar::ONE, Scalar::from(1u64 << 63).square()),
            ] {
                let ours = key.create_proof(&params.vk, circuit.clone(), r, s).unwrap();
                let theirs = reference(circuit.clone(), &params, r, s).unwrap();
                assert!(
                    ours == theirs,
                    "seed {seed}, vectorized {}",
                    key.is_vectorized()
                );
                assert!(verify_proof(&pvk, &ours, &circuit.inputs()).is_ok());
            }
        }
    }
}

#[test]
fn an_unsatisfied_witness_gives_the_reference_proof_which_does_not_verify() {
    let mut broken = Products::random(7, 6, 200);
    let params = params_for(&broken, 7);
    broken.wrong = Some(150);
    let pvk = prepare_verifying_key(&params.vk);
    let (r, s) = (Scalar::from(11u64), Scalar::from(13u64));
    for key in keys(&params) {
        let ours = key.create_proof(&params.vk, broken.clone(), r, s).unwrap();
        assert!(ours == reference(broken.clone(), &params, r, s).unwrap());
        assert!(verify_proof(&pvk, &ours, &broken.inputs()).is_err());
    }
}

#[test]
fn recorded_constraints_give_the_same_proofs() {
    let circuit = Products::random(12, 8, 700);
    let params = params_for(&circuit, 12);
    for key in keys(&params) {
        for round in 0..3u64 {
            // Other witness values each time, the same constraints.
            let mut c = circuit.clone();
            c.free.iter_mut().for_each(|v| *v += Scalar::from(round));
            let (r, s) = (Scalar::from(round + 2), Scalar::from(round + 3));
            let (ours, _) = key
                .create_proof_with(&params.vk, || c.clone(), r, s)
                .unwrap();
            assert!(
                ours == reference(c.clone(), &params, r, s).unwrap(),
                "round {round}"
            );
        }
        // Another circuit with this key: synthesised in full, still the reference's proof (which
        // does not verify, the parameters being another circuit's).
        let other = Products::random(13, 8, 650);
        let (r, s) = (Scalar::from(7u64), Scalar::from(8u64));
        let (ours, _) = key
            .create_proof_with(&params.vk, || other.clone(), r, s)
            .unwrap();
        assert!(ours == reference(other.clone(), &params, r, s).unwrap());
    }
}

#[test]
fn random_proofs_draw_r_and_s_like_the_reference() {
    let circuit = Products::random(8, 4, 100);
    let params = params_for(&circuit, 8);
    let ours = create_random_proof(
        circuit.clone(),
        &params,
        &mut ChaCha20Rng::from_seed([1; 32]),
    )
    .unwrap();
    let theirs =
        groth16::create_random_proof(circuit, &params, &mut ChaCha20Rng::from_seed([1; 32]))
            .unwrap();
    assert!(ours == theirs);
}

#[test]
fn defects_give_the_reference_errors() {
    let circuit = Products::random(9, 4, 100);
    let params = params_for(&circuit, 9);
    let (r, s) = (Scalar::ONE, Scalar::ONE);
    let short = |f: &dyn Fn(&mut Parameters<Bls12>)| {
        let mut p = params.clone();
        f(&mut p);
        p
    };
    // A query with too few points: an I/O error of kind UnexpectedEof, as the reference's
    // multi-exponentiation returns (the reference itself then aborts the process: its other
    // pending sums find their receivers dropped, so it is not run here).
    let truncated: Vec<Parameters<Bls12>> = vec![
        short(&|p| p.h = Arc::new(p.h[..p.h.len() - 1].to_vec())),
        short(&|p| p.l = Arc::new(p.l[..p.l.len() - 1].to_vec())),
        short(&|p| p.a = Arc::new(p.a[..p.a.len() - 1].to_vec())),
        short(&|p| p.b_g1 = Arc::new(p.b_g1[..p.b_g1.len() - 1].to_vec())),
        short(&|p| p.b_g2 = Arc::new(p.b_g2[..p.b_g2.len() - 1].to_vec())),
    ];
    for p in &truncated {
        match create_proof(circuit.clone(), p, r, s) {
            Err(SynthesisError::IoError(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof)
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
    // Spare points are ignored, as by the reference.
    let mut longer = params.clone();
    let extra = longer.h[0];
    longer.h = Arc::new(longer.h.iter().copied().chain([extra]).collect());
    assert!(
        create_proof(circuit.clone(), &longer, r, s).unwrap()
            == reference(circuit.clone(), &longer, r, s).unwrap()
    );
    // An identity δ (the reference's error; it too would abort after returning it).
    let mut bad = params.clone();
    bad.vk.delta_g1 = G1Affine::identity();
    assert!(matches!(
        create_proof(circuit.clone(), &bad, r, s),
        Err(SynthesisError::UnexpectedIdentity)
    ));
    // A missing witness.
    assert!(matches!(
        create_proof(circuit.blank(), &params, r, s),
        Err(SynthesisError::AssignmentMissing)
    ));
    // An identity point in a query: refused when the key is made.
    let mut inf = params.clone();
    inf.l = Arc::new(
        std::iter::once(G1Affine::identity())
            .chain(inf.l[1..].iter().copied())
            .collect(),
    );
    assert!(matches!(
        ProvingKey::new(&inf),
        Err(SynthesisError::UnexpectedIdentity)
    ));
}

#[test]
fn a_foreign_variable_is_an_error_not_a_panic() {
    struct Foreign;
    impl Circuit<Scalar> for Foreign {
        fn synthesize<CS: ConstraintSystem<Scalar>>(
            self,
            cs: &mut CS,
        ) -> Result<(), SynthesisError> {
            let x = cs.alloc(|| "x", || Ok(Scalar::ONE))?;
            cs.enforce(|| "c", |lc| lc + x, |lc| lc + x, |lc| lc + x);
            Ok(())
        }
    }
    struct Bad;
    impl Circuit<Scalar> for Bad {
        fn synthesize<CS: ConstraintSystem<Scalar>>(
            self,
            cs: &mut CS,
        ) -> Result<(), SynthesisError> {
            let y = Variable::new_unchecked(Index::Aux(7));
            cs.enforce(|| "c", |lc| lc + y, |lc| lc + y, |lc| lc + y);
            Ok(())
        }
    }
    let params = crate::params::setup::generate_random_parameters(
        Foreign,
        &mut ChaCha20Rng::from_seed([2; 32]),
    )
    .unwrap();
    assert!(matches!(
        create_proof(Bad, &params, Scalar::ONE, Scalar::ONE),
        Err(SynthesisError::IoError(e)) if e.kind() == std::io::ErrorKind::InvalidInput
    ));
}

#[test]
fn keys_are_kept_while_their_parameters_live() {
    let circuit = Products::random(10, 3, 50);
    let params = params_for(&circuit, 10);
    let k1 = proving_key(&params).unwrap();
    let k2 = proving_key(&params.clone()).unwrap();
    assert!(Arc::ptr_eq(&k1, &k2), "a clone shares the point vectors");
    let other = params_for(&circuit, 11);
    let k3 = proving_key(&other).unwrap();
    assert!(!Arc::ptr_eq(&k1, &k3));
    // Same points, new vectors: a key of its own.
    let copied = Parameters {
        vk: params.vk.clone(),
        h: Arc::new(params.h.to_vec()),
        l: params.l.clone(),
        a: params.a.clone(),
        b_g1: params.b_g1.clone(),
        b_g2: params.b_g2.clone(),
    };
    assert!(!Arc::ptr_eq(&k1, &proving_key(&copied).unwrap()));
    drop(other);
    let live = cache().lock().unwrap().len();
    let _ = proving_key(&params).unwrap();
    // The dropped parameters' key went when the cache was next used.
    assert!(cache().lock().unwrap().len() < live);
}

/// The PoSt circuits at 2 KiB with the stored test parameters: the same proof as the reference.
fn same_post_proof_as_the_reference(kind: crate::circuit::post::PostKind) {
    use crate::circuit::post::{PostCircuit, public_inputs};
    use crate::merkle::{DiskTree, PoseidonTree, TreeConfig};
    use crate::node::{Node, trunc254};
    use crate::post::{self, PublicSector, SectorProof};
    use crate::sector::SectorSize;
    let size = SectorSize::S2KiB;
    let store = crate::params::ParamStore::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/lode-test-params"
    ));
    let (params, _, _) = store
        .get_or_generate_insecure(&kind.params_id(size), || PostCircuit {
            kind,
            size,
            witness: None,
        })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let randomness = trunc254([5; 32]);
    let mut sectors = Vec::new();
    let mut vanilla = Vec::new();
    for k in 0..kind.sectors(size) as u64 {
        let number = 2 + 5 * k;
        let leaves: Vec<Node> = (0..size.nodes())
            .map(|i| {
                trunc254(
                    *blake3::hash(&[number.to_le_bytes(), i.to_le_bytes()].concat()).as_bytes(),
                )
            })
            .collect();
        let tree = DiskTree::<PoseidonTree>::build(
            &size.tree_shape(),
            &leaves,
            &dir.path().join(format!("r{number}")),
            TreeConfig { discard_rows: 1 },
        )
        .unwrap();
        let comm_c = trunc254([number as u8; 32]);
        let comm_r = crate::sdr::comm_r(&comm_c, &tree.root()).unwrap();
        let openings = post::leaf_challenges(size, &randomness, number, kind.challenges())
            .into_iter()
            .map(|l| tree.prove(l).unwrap())
            .collect();
        vanilla.push(SectorProof {
            sector_number: number,
            comm_c,
            comm_r_last: tree.root(),
            openings,
        });
        sectors.push(PublicSector {
            sector_number: number,
            comm_r,
        });
    }
    let circuit = || PostCircuit {
        kind,
        size,
        witness: Some(&vanilla),
    };
    let (r, s) = (Scalar::from(0x1234_5678u64), -Scalar::from(99u64));
    let theirs = reference(circuit(), &params, r, s).unwrap();
    for key in keys(&params) {
        let ours = key.create_proof(&params.vk, circuit(), r, s).unwrap();
        assert!(ours == theirs, "vectorized {}", key.is_vectorized());
    }
    let pvk = prepare_verifying_key(&params.vk);
    let inputs = public_inputs(kind, size, &randomness, &sectors).unwrap();
    assert!(verify_proof(&pvk, &theirs, &inputs).is_ok());
}

#[test]
fn same_window_post_proof_as_the_reference() {
    same_post_proof_as_the_reference(crate::circuit::post::PostKind::Window);
}

#[test]
#[ignore = "real Groth16 proofs: run with --include-ignored"]
fn same_winning_post_proof_as_the_reference() {
    same_post_proof_as_the_reference(crate::circuit::post::PostKind::Winning);
}
