//! Stacked-DRG replication, the definitions (SPEC §4.3–§4.4, §5.1): replica id, labels, columns,
//! encoding, `comm_r` and PoRep challenges.
//!
//! These are the functions both sides use: the sealing engine calls them (through its fast paths) to
//! produce a replica, and the verifier calls them to check a proof. They work on single nodes; the
//! engine that runs them over whole sectors lives in `lode-sealing`.

use bls12_381::Scalar;

use crate::graph::{BASE_DEGREE, DEGREE, EXP_DEGREE};
use crate::hash::{Tag, hash, hash_blocks, hasher};
use crate::node::{NODE_SIZE, Node};
use crate::sector::SectorSize;

/// Bytes of a label's input: a 64-byte header and 14 parent slots of 32 bytes (one BLAKE3 chunk, 8 blocks).
pub const LABEL_INPUT_LEN: usize = 64 + DEGREE * NODE_SIZE;

/// Errors of the field arithmetic on nodes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdrError {
    /// A node that must be a field element is not canonical (its value is ≥ r).
    #[error("node {0} is not a canonical field element")]
    NonCanonical(Node),
    /// A column with an unsupported number of layers.
    #[error("columns have 2 or 11 labels, not {0}")]
    ColumnArity(usize),
}

/// `replica_id = H("replica-id", prover_id || u64le(sector_number) || ticket || comm_d || porep_id)`.
pub fn replica_id(
    prover_id: &[u8; 32],
    sector_number: u64,
    ticket: &Node,
    comm_d: &Node,
    porep_id: &[u8; 32],
) -> Node {
    let mut h = hasher(Tag::ReplicaId);
    h.update(prover_id);
    h.update(&sector_number.to_le_bytes());
    h.update(&ticket.0);
    h.update(&comm_d.0);
    h.update(porep_id);
    crate::hash::finish(&h)
}

/// The 64-byte label header: `replica_id || u32le(layer) || u64le(v) || 0^20`.
pub fn label_header(replica_id: &Node, layer: u32, v: u64) -> [u8; 64] {
    let mut header = [0u8; 64];
    header[..32].copy_from_slice(&replica_id.0);
    header[32..36].copy_from_slice(&layer.to_le_bytes());
    header[36..44].copy_from_slice(&v.to_le_bytes());
    header
}

/// A label input buffer: the header followed by 14 parent slots, filled by the caller.
#[derive(Clone)]
pub struct LabelInput(pub [u8; LABEL_INPUT_LEN]);

impl LabelInput {
    /// A buffer with the header of node `v` in `layer` and all parent slots zero.
    pub fn new(replica_id: &Node, layer: u32, v: u64) -> Self {
        let mut buf = [0u8; LABEL_INPUT_LEN];
        buf[..64].copy_from_slice(&label_header(replica_id, layer, v));
        LabelInput(buf)
    }

    /// Sets the header's node index (the replica id and layer stay).
    pub fn set_node(&mut self, v: u64) {
        self.0[36..44].copy_from_slice(&v.to_le_bytes());
    }

    /// Writes parent slot `slot` (0..6 same-layer base parents, 6..14 previous-layer expander parents).
    pub fn set_parent(&mut self, slot: usize, label: &Node) {
        let at = 64 + slot * NODE_SIZE;
        self.0[at..at + NODE_SIZE].copy_from_slice(&label.0);
    }

    /// Zeroes every parent slot (node 0, and the expander slots of layer 1).
    pub fn clear_parents(&mut self) {
        self.0[64..].fill(0);
    }

    /// `H("label", input)`.
    pub fn hash(&self) -> Node {
        hash_blocks(Tag::Label, &self.0)
    }
}

/// `label(layer, v)` from the labels of its parents, exactly as SPEC §4.3 defines it: `base` are the six
/// same-layer parents' labels, `exp` the eight previous-layer parents' labels (ignored in layer 1), and
/// node 0 has all slots zero in every layer.
pub fn label(
    replica_id: &Node,
    layer: u32,
    v: u64,
    base: &[Node; BASE_DEGREE],
    exp: &[Node; EXP_DEGREE],
) -> Node {
    let mut input = LabelInput::new(replica_id, layer, v);
    if v != 0 {
        for (k, b) in base.iter().enumerate() {
            input.set_parent(k, b);
        }
        if layer > 1 {
            for (k, e) in exp.iter().enumerate() {
                input.set_parent(BASE_DEGREE + k, e);
            }
        }
    }
    input.hash()
}

/// `column(v) = Poseidon_L(label(1, v), …, label(L, v))`.
pub fn column_hash(labels: &[Node]) -> Result<Node, SdrError> {
    let mut frs = [Scalar::zero(); 11];
    if labels.len() > frs.len() {
        return Err(SdrError::ColumnArity(labels.len()));
    }
    for (f, l) in frs.iter_mut().zip(labels) {
        *f = l.to_fr().ok_or(SdrError::NonCanonical(*l))?;
    }
    let out = crate::poseidon::hash(&frs[..labels.len()])
        .map_err(|_| SdrError::ColumnArity(labels.len()))?;
    Ok(Node::from_fr(&out))
}

/// Column hashes of many nodes: `out[i]` = [`column_hash`] of
/// `labels[i·layers .. (i+1)·layers]`, eight at a time in AVX-512 IFMA lanes where the processor
/// has them.
pub fn column_hashes(labels: &[Node], layers: usize, out: &mut [Node]) -> Result<(), SdrError> {
    let constants =
        crate::poseidon::constants(layers).map_err(|_| SdrError::ColumnArity(layers))?;
    if labels.len() != out.len().saturating_mul(layers) {
        return Err(SdrError::ColumnArity(layers));
    }
    let frs = labels.iter().map(fr).collect::<Result<Vec<_>, _>>()?;
    let mut digests = vec![Scalar::zero(); out.len()];
    constants
        .hash_many(&frs, &mut digests)
        .map_err(|_| SdrError::ColumnArity(layers))?;
    for (o, d) in out.iter_mut().zip(&digests) {
        *o = Node::from_fr(d);
    }
    Ok(())
}

fn fr(n: &Node) -> Result<Scalar, SdrError> {
    n.to_fr().ok_or(SdrError::NonCanonical(*n))
}

/// `replica = data + key` in `Fr`.
pub fn encode(data: &Node, key: &Node) -> Result<Node, SdrError> {
    Ok(Node::from_fr(&(fr(data)? + fr(key)?)))
}

/// `data = replica − key` in `Fr`.
pub fn decode(replica: &Node, key: &Node) -> Result<Node, SdrError> {
    Ok(Node::from_fr(&(fr(replica)? - fr(key)?)))
}

/// `comm_r = Poseidon_2(comm_c, comm_r_last)`.
pub fn comm_r(comm_c: &Node, comm_r_last: &Node) -> Result<Node, SdrError> {
    let out = crate::poseidon::hash(&[fr(comm_c)?, fr(comm_r_last)?])
        .map_err(|_| SdrError::ColumnArity(2))?;
    Ok(Node::from_fr(&out))
}

/// PoRep challenge number `j` (SPEC §5.1): `first_u64(H("porep-challenge", replica_id || seed || u32le(j))) % (n − 1) + 1`.
pub fn porep_challenge(nodes: u64, replica_id: &Node, seed: &Node, j: u32) -> u64 {
    let mut m = [0u8; 68];
    m[..32].copy_from_slice(&replica_id.0);
    m[32..64].copy_from_slice(&seed.0);
    m[64..].copy_from_slice(&j.to_le_bytes());
    let h = hash(Tag::PorepChallenge, &m);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.0[..8]);
    u64::from_le_bytes(first) % (nodes - 1) + 1
}

/// The challenges of one partition: `j = cpp·k + i` for `i` in `0..cpp`.
pub fn porep_partition_challenges(
    size: SectorSize,
    replica_id: &Node,
    seed: &Node,
    partition: usize,
) -> Vec<u64> {
    let cpp = size.porep_challenges_per_partition();
    (0..cpp)
        .map(|i| porep_challenge(size.nodes(), replica_id, seed, (cpp * partition + i) as u32))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct SealVector {
        inputs: Inputs,
        comm_d: String,
        replica_id: String,
        labels: Vec<Layer>,
        columns: Vec<String>,
        comm_c: String,
        comm_r_last: String,
        comm_r: String,
        replica: String,
        porep: Porep,
    }
    #[derive(serde::Deserialize)]
    struct Inputs {
        miner_id: u64,
        sector_number: u64,
        ticket: String,
        padded_data: String,
    }
    #[derive(serde::Deserialize)]
    struct Layer {
        labels: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Porep {
        seed: String,
        challenges_j_0_to_15: Vec<u64>,
    }

    fn node(h: &str) -> Node {
        Node::from_hex(h).unwrap()
    }

    /// Every label, column, replica node and commitment of the 2 KiB vector, from the definitions alone.
    #[test]
    fn seal_2kib_known_answers_from_the_definitions() {
        let v: SealVector = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/vectors/seal_2kib.json"
        )))
        .unwrap();
        let size = SectorSize::S2KiB;
        let comm_d = node(&v.comm_d);
        let rid = replica_id(
            &crate::sector::prover_id(v.inputs.miner_id),
            v.inputs.sector_number,
            &node(&v.inputs.ticket),
            &comm_d,
            &size.porep_id(),
        );
        assert_eq!(rid, node(&v.replica_id));
        let graph = crate::graph::Graph::new(size);
        let labels: Vec<Vec<Node>> = v
            .labels
            .iter()
            .map(|l| l.labels.iter().map(|h| node(h)).collect())
            .collect();
        for (li, layer) in labels.iter().enumerate() {
            for (n, expected) in layer.iter().enumerate() {
                let n64 = n as u64;
                let base = graph.base_parents(n64).map(|p| layer[p as usize]);
                let exp = graph.exp_parents(n64).map(|p| {
                    if li == 0 {
                        Node::ZERO
                    } else {
                        labels[li - 1][p as usize]
                    }
                });
                assert_eq!(
                    label(&rid, li as u32 + 1, n64, &base, &exp),
                    *expected,
                    "layer {} node {n}",
                    li + 1
                );
            }
        }
        let data = hex::decode(&v.inputs.padded_data).unwrap();
        let replica = hex::decode(&v.replica).unwrap();
        for n in 0..64 {
            let column: Vec<Node> = labels.iter().map(|l| l[n]).collect();
            assert_eq!(column_hash(&column).unwrap(), node(&v.columns[n]));
            let d = Node(data[n * 32..n * 32 + 32].try_into().unwrap());
            let r = Node(replica[n * 32..n * 32 + 32].try_into().unwrap());
            assert_eq!(encode(&d, &labels[1][n]).unwrap(), r);
            assert_eq!(decode(&r, &labels[1][n]).unwrap(), d);
        }
        assert_eq!(
            comm_r(&node(&v.comm_c), &node(&v.comm_r_last)).unwrap(),
            node(&v.comm_r)
        );
        let seed = node(&v.porep.seed);
        for (j, &c) in v.porep.challenges_j_0_to_15.iter().enumerate() {
            assert_eq!(porep_challenge(size.nodes(), &rid, &seed, j as u32), c);
        }
    }

    #[test]
    fn encoding_round_trips_and_wraps_in_the_field() {
        let minus_one = Node::from_fr(&(-Scalar::one()));
        let two = Node::from_fr(&Scalar::from(2u64));
        let enc = encode(&two, &minus_one).unwrap();
        assert_eq!(enc, Node::from_fr(&Scalar::one()));
        assert_eq!(decode(&enc, &minus_one).unwrap(), two);
        assert_eq!(
            encode(&Node([0xFF; 32]), &two),
            Err(SdrError::NonCanonical(Node([0xFF; 32])))
        );
    }

    #[test]
    fn node_zero_ignores_its_parents_and_layer_one_its_expanders() {
        let id = Node([3; 32]);
        let base = [Node([1; 32]); 6];
        let exp = [Node([2; 32]); 8];
        let zero = [Node::ZERO; 8];
        assert_eq!(
            label(&id, 2, 0, &base, &exp),
            label(&id, 2, 0, &[Node::ZERO; 6], &zero)
        );
        assert_eq!(
            label(&id, 1, 5, &base, &exp),
            label(&id, 1, 5, &base, &zero)
        );
        assert_ne!(
            label(&id, 2, 5, &base, &exp),
            label(&id, 2, 5, &base, &zero)
        );
    }
}
