//! The PoRep circuit (SPEC §5.2), one Groth16 proof per partition.
//!
//! Per challenge `c` it enforces: tree D inclusion of `data[c]` under `comm_d`; the columns of `c` and of
//! its 14 parents, each hashed and opened in tree C under `comm_c`; every label of `c` recomputed from
//! the parents' labels (8 BLAKE3 compressions each); `replica[c] = data[c] + label(L, c)` opened in
//! tree R under `comm_r_last`; and once per partition `comm_r = Poseidon_2(comm_c, comm_r_last)`.
//!
//! Public inputs, in order: `replica_id`, `comm_d`, `comm_r`, then per challenge the index `c`, followed
//! by the 14 parent indices packed seven to a field element (32 bits each, base parents first). The
//! parents are derived from `c` by the verifier, natively; exposing them is what ties the opened
//! columns to the graph without computing the graph inside the circuit. (SPEC §5.2 lists only `c`; on
//! its own that would let a prover open arbitrary nodes as parents.)

use bellman::gadgets::boolean::Boolean;
use bellman::gadgets::num::AllocatedNum;
use bellman::{Circuit, ConstraintSystem, SynthesisError};
use bls12_381::{Bls12, Scalar};
use groth16::{Parameters, PreparedVerifyingKey};
use rand_core::{CryptoRng, Rng};

use super::blake3::{self as b3, alloc_node_bits, constant_bits, num_to_node_bits};
use super::poseidon::{
    LinearNum, alloc_index_bits, alloc_node, column_hash, enforce_encoding, invalid, merkle_root,
    pack_bits,
};
use crate::graph::{BASE_DEGREE, DEGREE, EXP_DEGREE, Graph};
use crate::node::Node;
use crate::params::ParamsId;
use crate::porep::{ChallengeProof, PorepProof, PorepPublic};
use crate::prover::G1Msm;
use crate::sdr;
use crate::sector::SectorSize;
use crate::snark::{SnarkError, proof_from_bytes, proof_to_bytes};
use std::sync::Arc;

/// Parent indices packed per public input.
const PARENTS_PER_INPUT: usize = 7;

/// Weight of slot `j` in a packed parents input: `2^(32 j)`.
fn slot_weight(j: usize) -> Scalar {
    Scalar::from(2u64).pow_vartime(&[32 * j as u64, 0, 0, 0])
}

/// The identifier of the PoRep parameters of `size` (one circuit per partition; all partitions share it).
pub fn params_id(size: SectorSize) -> ParamsId {
    ParamsId::new(
        "porep",
        &[
            ("sector_size", size.bytes().to_string()),
            (
                "porep_id",
                size.porep_id().iter().map(|b| format!("{b:02x}")).collect(),
            ),
            ("layers", size.layers().to_string()),
            (
                "challenges_per_partition",
                size.porep_challenges_per_partition().to_string(),
            ),
            ("degree", format!("{BASE_DEGREE}+{EXP_DEGREE}")),
            ("tree_cr_arities", size.tree_shape().arities_csv()),
            ("hashes", "blake3-keyed,poseidon-bls12-381".into()),
        ],
    )
}

/// What one partition's circuit proves about: the commitments and that partition's challenge proofs.
#[derive(Clone, Copy)]
pub struct PorepWitness<'a> {
    /// The replica id.
    pub replica_id: Node,
    /// The data commitment.
    pub comm_d: Node,
    /// Root of tree C.
    pub comm_c: Node,
    /// Root of tree R.
    pub comm_r_last: Node,
    /// The partition's challenge proofs.
    pub challenges: &'a [ChallengeProof],
}

/// The PoRep circuit of one partition: blank (`witness: None`) for parameters, or with a witness.
pub struct PorepCircuit<'a> {
    /// Sector size.
    pub size: SectorSize,
    /// The witness.
    pub witness: Option<PorepWitness<'a>>,
}

/// Checks that a witness has the circuit's shape, so that gadgets never see wrong lengths.
fn check_shape(size: SectorSize, w: &PorepWitness<'_>) -> Result<(), SynthesisError> {
    let layers = size.layers();
    let (d_shape, cr_shape) = (size.tree_d_shape(), size.tree_shape());
    let levels_ok = |p: &crate::merkle::MerkleProof, shape: &crate::merkle::TreeShape| {
        p.index < shape.leaves()
            && p.siblings.len() == shape.height()
            && p.siblings
                .iter()
                .zip(shape.arities())
                .all(|(s, &a)| s.len() + 1 == a)
    };
    let column_ok = |c: &crate::porep::ColumnOpening| {
        c.labels.len() == layers && levels_ok(&c.proof, &cr_shape)
    };
    let ok = w.challenges.len() == size.porep_challenges_per_partition()
        && w.challenges.iter().all(|p| {
            levels_ok(&p.data, &d_shape)
                && levels_ok(&p.replica, &cr_shape)
                && column_ok(&p.column)
                && p.base.len() == BASE_DEGREE
                && p.exp.len() == EXP_DEGREE
                && p.base.iter().chain(&p.exp).all(column_ok)
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "the vanilla proof does not have the circuit's shape",
        ))
    }
}

impl Circuit<Scalar> for PorepCircuit<'_> {
    fn synthesize<CS: ConstraintSystem<Scalar>>(self, cs: &mut CS) -> Result<(), SynthesisError> {
        let size = self.size;
        if let Some(w) = &self.witness {
            check_shape(size, w)?;
        }
        let w = self.witness;
        let layers = size.layers();
        let bits = size.nodes().trailing_zeros() as usize;
        let (d_shape, cr_shape) = (size.tree_d_shape(), size.tree_shape());

        let replica_id = alloc_node(
            cs.namespace(|| "replica_id"),
            w.as_ref().map(|w| &w.replica_id),
        )?;
        LinearNum::from(&replica_id).inputize(cs.namespace(|| "replica_id input"))?;
        let comm_d = alloc_node(cs.namespace(|| "comm_d"), w.as_ref().map(|w| &w.comm_d))?;
        LinearNum::from(&comm_d).inputize(cs.namespace(|| "comm_d input"))?;
        let comm_c = alloc_node(cs.namespace(|| "comm_c"), w.as_ref().map(|w| &w.comm_c))?;
        let comm_r_last = alloc_node(
            cs.namespace(|| "comm_r_last"),
            w.as_ref().map(|w| &w.comm_r_last),
        )?;
        let comm_r = super::poseidon::comm_r(cs.namespace(|| "comm_r"), &comm_c, &comm_r_last)?;
        LinearNum::from(&comm_r).inputize(cs.namespace(|| "comm_r input"))?;
        let replica_id_bits = num_to_node_bits(cs.namespace(|| "replica_id bits"), &replica_id)?;
        let zero_node = constant_bits(&[0u8; 32]);

        for i in 0..size.porep_challenges_per_partition() {
            let p = w.as_ref().map(|w| &w.challenges[i]);
            let mut cs = cs.namespace(|| format!("challenge {i}"));

            // The challenge and its parents, as bits; public as numbers.
            let c_bits = alloc_index_bits(cs.namespace(|| "c"), p.map(|p| p.data.index), bits)?;
            pack_bits(&c_bits).inputize(cs.namespace(|| "c input"))?;
            let mut parent_bits = Vec::with_capacity(DEGREE);
            for k in 0..DEGREE {
                let index = p.map(|p| {
                    if k < BASE_DEGREE {
                        p.base[k].proof.index
                    } else {
                        p.exp[k - BASE_DEGREE].proof.index
                    }
                });
                parent_bits.push(alloc_index_bits(
                    cs.namespace(|| format!("parent {k}")),
                    index,
                    bits,
                )?);
            }
            for (g, group) in parent_bits.chunks(PARENTS_PER_INPUT).enumerate() {
                let mut packed = LinearNum::zero();
                for (j, pb) in group.iter().enumerate() {
                    packed = &packed + &pack_bits(pb).scale(slot_weight(j));
                }
                packed.inputize(cs.namespace(|| format!("parents input {g}")))?;
            }

            // Tree D: data[c] under comm_d.
            let data = alloc_node(cs.namespace(|| "data"), p.map(|p| &p.data.leaf))?;
            let mut d_siblings = Vec::with_capacity(d_shape.height());
            for level in 0..d_shape.height() {
                d_siblings.push(alloc_node_bits(
                    cs.namespace(|| format!("tree D sibling {level}")),
                    p.map(|p| p.data.siblings[level][0]),
                )?);
            }
            let root_d = b3::tree_d_root(cs.namespace(|| "tree D"), &data, &c_bits, &d_siblings)?;
            LinearNum::enforce_equal(
                cs.namespace(|| "tree D root"),
                &LinearNum::from(&root_d),
                &LinearNum::from(&comm_d),
            )?;

            // The 15 columns: hashed, opened in tree C; their labels as numbers.
            let mut columns: Vec<Vec<AllocatedNum<Scalar>>> = Vec::with_capacity(1 + DEGREE);
            for k in 0..=DEGREE {
                let col = p.map(|p| match k {
                    0 => &p.column,
                    k if k <= BASE_DEGREE => &p.base[k - 1],
                    k => &p.exp[k - 1 - BASE_DEGREE],
                });
                let index_bits = if k == 0 { &c_bits } else { &parent_bits[k - 1] };
                let mut cs = cs.namespace(|| format!("column {k}"));
                let labels = (0..layers)
                    .map(|l| {
                        alloc_node(
                            cs.namespace(|| format!("label {l}")),
                            col.map(|c| &c.labels[l]),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let leaf = column_hash(cs.namespace(|| "hash"), &labels)?;
                let siblings = (0..cr_shape.height())
                    .map(|level| {
                        (0..cr_shape.arities()[level] - 1)
                            .map(|j| {
                                alloc_node(
                                    cs.namespace(|| format!("sibling {level}.{j}")),
                                    col.map(|c| &c.proof.siblings[level][j]),
                                )
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let root = merkle_root(
                    cs.namespace(|| "tree C"),
                    &cr_shape,
                    &leaf,
                    &siblings,
                    index_bits,
                )?;
                LinearNum::enforce_equal(
                    cs.namespace(|| "tree C root"),
                    &LinearNum::from(&root),
                    &LinearNum::from(&comm_c),
                )?;
                columns.push(labels);
            }

            // Labels of c, layer by layer, from the parents' labels (bits unpacked once each).
            let mut label_bits: Vec<Vec<Option<Vec<Boolean>>>> =
                vec![vec![None; layers]; 1 + DEGREE];
            for layer in 1..=layers {
                let mut slots = Vec::with_capacity(DEGREE);
                for k in 0..DEGREE {
                    let source_layer = if k < BASE_DEGREE { layer } else { layer - 1 };
                    if source_layer == 0 {
                        slots.push(zero_node.clone());
                        continue;
                    }
                    let cell = &mut label_bits[k + 1][source_layer - 1];
                    if cell.is_none() {
                        let name = format!("parent {k} label {source_layer} bits");
                        *cell = Some(num_to_node_bits(
                            cs.namespace(|| name),
                            &columns[k + 1][source_layer - 1],
                        )?);
                    }
                    slots.push(cell.clone().unwrap_or_default());
                }
                let out = b3::label(
                    cs.namespace(|| format!("label {layer}")),
                    &replica_id_bits,
                    layer as u32,
                    &c_bits,
                    &slots,
                )?;
                let out =
                    b3::node_bits_to_num(cs.namespace(|| format!("label {layer} number")), &out)?;
                LinearNum::enforce_equal(
                    cs.namespace(|| format!("label {layer} matches the column")),
                    &LinearNum::from(&out),
                    &LinearNum::from(&columns[0][layer - 1]),
                )?;
            }

            // Encoding and tree R.
            let replica = alloc_node(cs.namespace(|| "replica"), p.map(|p| &p.replica.leaf))?;
            enforce_encoding(
                cs.namespace(|| "encoding"),
                &data,
                &columns[0][layers - 1],
                &replica,
            )?;
            let siblings = (0..cr_shape.height())
                .map(|level| {
                    (0..cr_shape.arities()[level] - 1)
                        .map(|j| {
                            alloc_node(
                                cs.namespace(|| format!("tree R sibling {level}.{j}")),
                                p.map(|p| &p.replica.siblings[level][j]),
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let root_r = merkle_root(
                cs.namespace(|| "tree R"),
                &cr_shape,
                &replica,
                &siblings,
                &c_bits,
            )?;
            LinearNum::enforce_equal(
                cs.namespace(|| "tree R root"),
                &LinearNum::from(&root_r),
                &LinearNum::from(&comm_r_last),
            )?;
        }
        Ok(())
    }
}

/// The public inputs of partition `k`, derived from the public data alone.
pub fn public_inputs(public: &PorepPublic, partition: usize) -> Result<Vec<Scalar>, SnarkError> {
    let size = public.size;
    let replica_id = public.replica_id();
    let fr = |n: &Node, at: usize| n.to_fr().ok_or(SnarkError::NonCanonicalInput(at));
    let mut inputs = vec![
        fr(&replica_id, 0)?,
        fr(&public.comm_d, 1)?,
        fr(&public.comm_r, 2)?,
    ];
    let graph = Graph::new(size);
    for c in sdr::porep_partition_challenges(size, &replica_id, &public.seed, partition) {
        inputs.push(Scalar::from(c));
        let parents = graph.parents(c);
        for group in parents.chunks(PARENTS_PER_INPUT) {
            let mut packed = Scalar::zero();
            for (j, &p) in group.iter().enumerate() {
                packed += Scalar::from(u64::from(p)) * slot_weight(j);
            }
            inputs.push(packed);
        }
    }
    Ok(inputs)
}

/// Commit2: one Groth16 proof per partition from a Commit1 output.
pub fn prove<R: Rng + CryptoRng>(
    params: &Parameters<Bls12>,
    public: &PorepPublic,
    vanilla: &PorepProof,
    rng: &mut R,
) -> Result<Vec<Vec<u8>>, SnarkError> {
    (0..vanilla.partitions.len())
        .map(|k| prove_partition(params, public, vanilla, k, rng))
        .collect()
}

/// Commit2 for partition `k` alone (callers that report progress prove one partition at a time).
///
/// The proof is made by [`crate::prover`] (the same proof as `groth16::create_random_proof` from
/// the same RNG state). The parameters' points are converted for each proof rather than kept: the
/// PoRep parameters are large and Commit2 is rare, so their converted copy is not held in memory.
pub fn prove_partition<R: Rng + CryptoRng>(
    params: &Parameters<Bls12>,
    public: &PorepPublic,
    vanilla: &PorepProof,
    k: usize,
    rng: &mut R,
) -> Result<Vec<u8>, SnarkError> {
    prove_partition_on(params, public, vanilla, k, rng, None)
}

/// [`prove_partition`] with the proof's G1 sums on `device` when given (the same proof).
pub fn prove_partition_on<R: Rng + CryptoRng>(
    params: &Parameters<Bls12>,
    public: &PorepPublic,
    vanilla: &PorepProof,
    k: usize,
    rng: &mut R,
    device: Option<&Arc<dyn G1Msm>>,
) -> Result<Vec<u8>, SnarkError> {
    let challenges = vanilla.partitions.get(k).ok_or(SnarkError::Malformed(
        "no such partition in the Commit1 output",
    ))?;
    let witness = PorepWitness {
        replica_id: public.replica_id(),
        comm_d: public.comm_d,
        comm_c: vanilla.comm_c,
        comm_r_last: vanilla.comm_r_last,
        challenges,
    };
    let proof = crate::prover::create_random_proof_uncached_on(
        PorepCircuit {
            size: public.size,
            witness: Some(witness),
        },
        params,
        rng,
        device,
    )?;
    Ok(proof_to_bytes(&proof))
}

/// Verifies a PoRep from public data only: one proof per partition.
pub fn verify(
    pvk: &PreparedVerifyingKey<Bls12>,
    public: &PorepPublic,
    proofs: &[Vec<u8>],
) -> Result<(), SnarkError> {
    if proofs.len() != public.size.porep_partitions() {
        return Err(SnarkError::Malformed("one proof per partition"));
    }
    for (k, bytes) in proofs.iter().enumerate() {
        let proof = proof_from_bytes(bytes)?;
        groth16::verify_proof(pvk, &proof, &public_inputs(public, k)?)
            .map_err(|_| SnarkError::Invalid)?;
    }
    Ok(())
}

/// Verifies many PoReps of one sector size at once with a random linear combination (what a chain
/// node does with a block's worth of prove-commits): `Ok` only if every proof is valid.
pub fn verify_batch<R: Rng + CryptoRng>(
    vk: &groth16::VerifyingKey<Bls12>,
    items: &[(PorepPublic, Vec<Vec<u8>>)],
    rng: &mut R,
) -> Result<(), SnarkError> {
    let mut batch = groth16::batch::Verifier::<Bls12>::new();
    for (public, proofs) in items {
        if proofs.len() != public.size.porep_partitions() {
            return Err(SnarkError::Malformed("one proof per partition"));
        }
        for (k, bytes) in proofs.iter().enumerate() {
            batch.queue((proof_from_bytes(bytes)?, public_inputs(public, k)?));
        }
    }
    batch.verify(rng, vk).map_err(|_| SnarkError::Invalid)
}
