//! The vanilla PoRep proof (SPEC §5.1–§5.2): what Commit1 produces and what anyone can check natively.
//!
//! For every challenged node `c` the proof opens tree D at `c`, the columns of `c` and of its 14
//! parents in tree C, and tree R at `c`. The verifier recomputes every label of `c` from the parents'
//! columns, checks the encoding, and checks `comm_r = Poseidon_2(comm_c, comm_r_last)`. It trusts only
//! the public inputs: the sector's size, the prover, sector number, ticket, seed, `comm_d` and `comm_r`.
//! The challenges and the parents are re-derived, never taken from the proof.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use crate::codec::{CodecError, Reader};
use crate::graph::{BASE_DEGREE, EXP_DEGREE, Graph};
use crate::merkle::{Blake3TreeD, MerkleProof, PoseidonTree, TreeError};
use crate::node::Node;
use crate::sdr::{self, SdrError};
use crate::sector::{SectorSize, prover_id};

/// Format byte that opens an encoded proof.
const FORMAT: u8 = 1;

/// Why a vanilla PoRep proof is rejected.
#[derive(Debug, thiserror::Error)]
pub enum PorepError {
    /// `comm_r` is not `Poseidon_2(comm_c, comm_r_last)`.
    #[error("comm_r does not commit to the proof's comm_c and comm_r_last")]
    CommR,
    /// The proof has the wrong number of partitions or challenges.
    #[error("the proof has {found} {what}, expected {expected}")]
    Count {
        /// What was counted.
        what: &'static str,
        /// Expected count.
        expected: usize,
        /// Found.
        found: usize,
    },
    /// The proof was made for other public inputs: the one named does not match it.
    #[error("the proof was made for another {input}: {reason}")]
    PublicInput {
        /// The public input (or inputs) that differ.
        input: &'static str,
        /// How that shows.
        reason: &'static str,
    },
    /// A challenge differs from the one derived from the seed.
    #[error("challenge {index} is {found}, but the seed gives {expected}")]
    Challenge {
        /// Challenge number within the sector.
        index: usize,
        /// What the seed gives.
        expected: u64,
        /// What the proof says.
        found: u64,
    },
    /// An opening is at the wrong node (another challenge or parent).
    #[error("challenge {challenge}: the {what} opening is for node {found}, expected {expected}")]
    WrongNode {
        /// The challenged node.
        challenge: u64,
        /// Which opening.
        what: &'static str,
        /// The node it should open.
        expected: u64,
        /// The node it opens.
        found: u64,
    },
    /// A Merkle opening fails.
    #[error("challenge {challenge}: the {what} opening does not verify: {source}")]
    Opening {
        /// The challenged node.
        challenge: u64,
        /// Which opening.
        what: &'static str,
        /// Why.
        #[source]
        source: TreeError,
    },
    /// A column whose labels do not hash to the opened leaf.
    #[error("challenge {challenge}: a column's labels do not hash to its tree C leaf")]
    Column {
        /// The challenged node.
        challenge: u64,
    },
    /// A recomputed label differs from the one in the column.
    #[error("challenge {challenge}: label of layer {layer} does not follow from its parents")]
    Label {
        /// The challenged node.
        challenge: u64,
        /// The layer.
        layer: usize,
    },
    /// `replica[c] ≠ data[c] + label(L, c)`.
    #[error("challenge {challenge}: the replica node is not the encoding of the data node")]
    Encoding {
        /// The challenged node.
        challenge: u64,
    },
    /// A node that must be a field element is not.
    #[error(transparent)]
    Field(#[from] SdrError),
    /// Bytes that do not decode as a proof.
    #[error("malformed proof bytes: {0}")]
    Malformed(&'static str),
}

/// What the verifier knows: everything public about the sector and its commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PorepPublic {
    /// The sector size (and so every protocol parameter).
    pub size: SectorSize,
    /// The miner (prover) id.
    pub miner_id: u64,
    /// The sector number.
    pub sector_number: u64,
    /// The ticket (chain randomness at pre-commit, trunc254).
    pub ticket: Node,
    /// The seed (chain randomness after the delay, trunc254).
    pub seed: Node,
    /// The data commitment.
    pub comm_d: Node,
    /// The replica commitment.
    pub comm_r: Node,
}

impl PorepPublic {
    /// The replica id these inputs define.
    pub fn replica_id(&self) -> Node {
        sdr::replica_id(
            &prover_id(self.miner_id),
            self.sector_number,
            &self.ticket,
            &self.comm_d,
            &self.size.porep_id(),
        )
    }
}

/// A column (the labels of one node in every layer) with its tree C opening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnOpening {
    /// `label(1, v) … label(L, v)`.
    pub labels: Vec<Node>,
    /// Tree C opening of `column_hash(labels)` at `v`.
    pub proof: MerkleProof,
}

/// Everything opened for one challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeProof {
    /// Tree D opening of `data[c]`.
    pub data: MerkleProof,
    /// The column of `c`.
    pub column: ColumnOpening,
    /// The columns of the six base parents, in parent order.
    pub base: Vec<ColumnOpening>,
    /// The columns of the eight expander parents, in parent order.
    pub exp: Vec<ColumnOpening>,
    /// Tree R opening of `replica[c]`.
    pub replica: MerkleProof,
}

/// A vanilla PoRep proof: the private commitments and, per partition, one [`ChallengeProof`] per challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PorepProof {
    /// Root of tree C.
    pub comm_c: Node,
    /// Root of tree R.
    pub comm_r_last: Node,
    /// Per partition, per challenge.
    pub partitions: Vec<Vec<ChallengeProof>>,
}

fn check_column(
    c: u64,
    what: &'static str,
    node: u64,
    col: &ColumnOpening,
    size: SectorSize,
    comm_c: &Node,
) -> Result<(), PorepError> {
    if col.labels.len() != size.layers() {
        return Err(PorepError::Count {
            what: "labels in a column",
            expected: size.layers(),
            found: col.labels.len(),
        });
    }
    if col.proof.index != node {
        return Err(PorepError::WrongNode {
            challenge: c,
            what,
            expected: node,
            found: col.proof.index,
        });
    }
    if sdr::column_hash(&col.labels)? != col.proof.leaf {
        return Err(PorepError::Column { challenge: c });
    }
    col.proof
        .verify::<PoseidonTree>(&size.tree_shape(), comm_c)
        .map_err(|source| PorepError::Opening {
            challenge: c,
            what,
            source,
        })
}

/// Names the public input a proof with other challenges was made for. The challenges follow from the
/// replica id (the miner id, sector number, ticket and `comm_d`) and the seed; the proof's own first
/// challenge tells which: its tree D opening checks `comm_d`, and its layer-1 label (which depends on
/// the replica id but not on the seed) checks the replica id. What remains is the seed (`fallback`).
fn blame(
    public: &PorepPublic,
    proof: &PorepProof,
    replica_id: &Node,
    fallback: PorepError,
) -> PorepError {
    let size = public.size;
    let Some(p) = proof.partitions.first().and_then(|part| part.first()) else {
        return fallback;
    };
    if p.data
        .verify::<Blake3TreeD>(&size.tree_d_shape(), &public.comm_d)
        .is_err()
    {
        return PorepError::PublicInput {
            input: "comm_d",
            reason: "its tree D openings do not lead to the public comm_d",
        };
    }
    let first_label = p.column.labels.first();
    let base: Option<[Node; BASE_DEGREE]> = labels_at(&p.base, 0);
    if let (Some(claimed), Some(base)) = (first_label, base)
        && sdr::label(
            replica_id,
            1,
            p.data.index,
            &base,
            &[Node::ZERO; EXP_DEGREE],
        ) != *claimed
    {
        return PorepError::PublicInput {
            input: "replica id (miner id, sector number or ticket)",
            reason: "its layer-1 labels do not follow from the public replica id",
        };
    }
    fallback
}

/// The labels at `index` of `N` columns (`None` if there are not `N` columns or one is too short).
fn labels_at<const N: usize>(columns: &[ColumnOpening], index: usize) -> Option<[Node; N]> {
    if columns.len() != N {
        return None;
    }
    let mut out = [Node::ZERO; N];
    for (o, column) in out.iter_mut().zip(columns) {
        *o = *column.labels.get(index)?;
    }
    Some(out)
}

/// Checks a vanilla proof against the public inputs.
pub fn verify(public: &PorepPublic, proof: &PorepProof) -> Result<(), PorepError> {
    let size = public.size;
    if sdr::comm_r(&proof.comm_c, &proof.comm_r_last)? != public.comm_r {
        return Err(PorepError::CommR);
    }
    if proof.partitions.len() != size.porep_partitions() {
        return Err(PorepError::Count {
            what: "partitions",
            expected: size.porep_partitions(),
            found: proof.partitions.len(),
        });
    }
    let replica_id = public.replica_id();
    let graph = Graph::new(size);
    let layers = size.layers();
    for (k, partition) in proof.partitions.iter().enumerate() {
        let challenges = sdr::porep_partition_challenges(size, &replica_id, &public.seed, k);
        if partition.len() != challenges.len() {
            return Err(PorepError::Count {
                what: "challenges",
                expected: challenges.len(),
                found: partition.len(),
            });
        }
        for (i, (p, &c)) in partition.iter().zip(&challenges).enumerate() {
            if p.data.index != c {
                return Err(blame(
                    public,
                    proof,
                    &replica_id,
                    PorepError::Challenge {
                        index: k.saturating_mul(challenges.len()).saturating_add(i),
                        expected: c,
                        found: p.data.index,
                    },
                ));
            }
            p.data
                .verify::<Blake3TreeD>(&size.tree_d_shape(), &public.comm_d)
                .map_err(|source| PorepError::Opening {
                    challenge: c,
                    what: "tree D",
                    source,
                })?;
            check_column(c, "challenge column", c, &p.column, size, &proof.comm_c)?;
            if p.base.len() != BASE_DEGREE || p.exp.len() != EXP_DEGREE {
                return Err(PorepError::Count {
                    what: "parent columns",
                    expected: BASE_DEGREE + EXP_DEGREE,
                    found: p.base.len().saturating_add(p.exp.len()),
                });
            }
            for (col, &parent) in p.base.iter().zip(&graph.base_parents(c)) {
                check_column(
                    c,
                    "base parent column",
                    u64::from(parent),
                    col,
                    size,
                    &proof.comm_c,
                )?;
            }
            for (col, &parent) in p.exp.iter().zip(&graph.exp_parents(c)) {
                check_column(
                    c,
                    "expander parent column",
                    u64::from(parent),
                    col,
                    size,
                    &proof.comm_c,
                )?;
            }
            // Every column was checked to hold `layers` labels, and there are six base and eight
            // expander columns: a missing label cannot happen, but is reported as a short column.
            let short_column = || PorepError::Count {
                what: "labels in a column",
                expected: layers,
                found: 0,
            };
            // Expander parents' labels come from the layer below (none for layer 1).
            let mut exp = [Node::ZERO; EXP_DEGREE];
            for (i, (layer, claimed)) in (1..=layers).zip(&p.column.labels).enumerate() {
                let base: [Node; BASE_DEGREE] = labels_at(&p.base, i).ok_or_else(short_column)?;
                if sdr::label(&replica_id, layer as u32, c, &base, &exp) != *claimed {
                    return Err(PorepError::Label {
                        challenge: c,
                        layer,
                    });
                }
                exp = labels_at(&p.exp, i).ok_or_else(short_column)?;
            }
            if p.replica.index != c {
                return Err(PorepError::WrongNode {
                    challenge: c,
                    what: "tree R",
                    expected: c,
                    found: p.replica.index,
                });
            }
            let last = p.column.labels.last().ok_or_else(short_column)?;
            if sdr::encode(&p.data.leaf, last)? != p.replica.leaf {
                return Err(PorepError::Encoding { challenge: c });
            }
            p.replica
                .verify::<PoseidonTree>(&size.tree_shape(), &proof.comm_r_last)
                .map_err(|source| PorepError::Opening {
                    challenge: c,
                    what: "tree R",
                    source,
                })?;
        }
    }
    Ok(())
}

impl PorepProof {
    /// Binary encoding: format byte, `comm_c`, `comm_r_last`, then counts and length-prefixed openings.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Vec::new();
        w.push(FORMAT);
        w.extend_from_slice(&self.comm_c.0);
        w.extend_from_slice(&self.comm_r_last.0);
        put_u32(&mut w, self.partitions.len());
        for partition in &self.partitions {
            put_u32(&mut w, partition.len());
            for p in partition {
                put_merkle(&mut w, &p.data);
                put_column(&mut w, &p.column);
                put_u32(&mut w, p.base.len());
                p.base.iter().for_each(|c| put_column(&mut w, c));
                put_u32(&mut w, p.exp.len());
                p.exp.iter().for_each(|c| put_column(&mut w, c));
                put_merkle(&mut w, &p.replica);
            }
        }
        w
    }

    /// Decodes [`PorepProof::to_bytes`]; malformed input is an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PorepError> {
        let mut r = Reader::new(bytes);
        if r.u8().map_err(malformed)? != FORMAT {
            return Err(PorepError::Malformed("unknown format byte"));
        }
        let comm_c = r.node().map_err(malformed)?;
        let comm_r_last = r.node().map_err(malformed)?;
        // Counts are bounded before use; vectors grow as items decode, so a count alone reserves nothing.
        let partitions = (0..r.count(1024).map_err(malformed)?)
            .map(|_| {
                (0..r.count(4096).map_err(malformed)?)
                    .map(|_| {
                        Ok(ChallengeProof {
                            data: get_merkle(&mut r)?,
                            column: get_column(&mut r)?,
                            base: (0..r.count(64).map_err(malformed)?)
                                .map(|_| get_column(&mut r))
                                .collect::<Result<_, _>>()?,
                            exp: (0..r.count(64).map_err(malformed)?)
                                .map(|_| get_column(&mut r))
                                .collect::<Result<_, _>>()?,
                            replica: get_merkle(&mut r)?,
                        })
                    })
                    .collect::<Result<Vec<_>, PorepError>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        r.finish().map_err(malformed)?;
        Ok(PorepProof {
            comm_c,
            comm_r_last,
            partitions,
        })
    }
}

fn malformed(e: CodecError) -> PorepError {
    PorepError::Malformed(e.reason())
}

fn put_u32(w: &mut Vec<u8>, n: usize) {
    w.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_merkle(w: &mut Vec<u8>, p: &MerkleProof) {
    let b = p.to_bytes();
    put_u32(w, b.len());
    w.extend_from_slice(&b);
}

fn put_column(w: &mut Vec<u8>, c: &ColumnOpening) {
    put_u32(w, c.labels.len());
    c.labels.iter().for_each(|l| w.extend_from_slice(&l.0));
    put_merkle(w, &c.proof);
}

fn get_merkle(r: &mut Reader<'_>) -> Result<MerkleProof, PorepError> {
    let bytes = r.prefixed(1 << 20).map_err(malformed)?;
    MerkleProof::from_bytes(bytes).map_err(|_| PorepError::Malformed("bad Merkle proof"))
}

fn get_column(r: &mut Reader<'_>) -> Result<ColumnOpening, PorepError> {
    let labels = (0..r.count(64).map_err(malformed)?)
        .map(|_| r.node().map_err(malformed))
        .collect::<Result<_, _>>()?;
    Ok(ColumnOpening {
        labels,
        proof: get_merkle(r)?,
    })
}
