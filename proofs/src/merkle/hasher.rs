//! The hash behind a tree: one trait, a BLAKE3 and a Poseidon implementation.

use rayon::prelude::*;

use super::TreeError;
use crate::hash::{Tag, hash_pairs};
use crate::node::Node;
use crate::piece::tree_d_parent;

/// Parents hashed per parallel task when hashing a level.
const PARENTS_PER_TASK: usize = 4096;

/// How a tree turns `arity` children into their parent.
///
/// Implementations are stateless (constants are process-wide); `hash_level` exists so that a hasher can
/// batch a whole level across SIMD lanes, which is where tree building spends its time.
pub trait TreeHasher: Send + Sync + 'static {
    /// Short name, for errors and tools.
    const NAME: &'static str;
    /// Identifier written into tree files, so a tree is never read back with another hash.
    const ID: u32;

    /// Whether this hasher can hash `arity` children.
    fn supports_arity(arity: usize) -> bool;

    /// The parent of `children` (`children.len()` is the arity).
    fn hash_children(children: &[Node]) -> Result<Node, TreeError>;

    /// `parents[i] = hash(children[i·arity .. (i+1)·arity])`, on the calling thread.
    fn hash_level_serial(
        arity: usize,
        children: &[Node],
        parents: &mut [Node],
    ) -> Result<(), TreeError> {
        for (p, kids) in parents.iter_mut().zip(children.chunks_exact(arity)) {
            *p = Self::hash_children(kids)?;
        }
        Ok(())
    }

    /// `parents[i] = hash(children[i·arity .. (i+1)·arity])`, spread over rayon's pool.
    fn hash_level(arity: usize, children: &[Node], parents: &mut [Node]) -> Result<(), TreeError> {
        if children.len() != parents.len() * arity {
            return Err(TreeError::LeafCount {
                expected: (parents.len() * arity) as u64,
                got: children.len() as u64,
            });
        }
        parents
            .par_chunks_mut(PARENTS_PER_TASK)
            .zip(children.par_chunks(PARENTS_PER_TASK * arity))
            .try_for_each(|(p, c)| Self::hash_level_serial(arity, c, p))
    }
}

/// Tree D's hash: `H("tree-d", left || right)`, binary only, hashed 16 pairs at a time with AVX-512.
#[derive(Clone, Copy, Debug, Default)]
pub struct Blake3TreeD;

impl TreeHasher for Blake3TreeD {
    const NAME: &'static str = "blake3-tree-d";
    const ID: u32 = 1;

    fn supports_arity(arity: usize) -> bool {
        arity == 2
    }

    fn hash_children(children: &[Node]) -> Result<Node, TreeError> {
        match children {
            [l, r] => Ok(tree_d_parent(l, r)),
            _ => Err(TreeError::UnsupportedArity {
                hasher: Self::NAME,
                arity: children.len(),
            }),
        }
    }

    fn hash_level_serial(
        arity: usize,
        children: &[Node],
        parents: &mut [Node],
    ) -> Result<(), TreeError> {
        if arity != 2 {
            return Err(TreeError::UnsupportedArity {
                hasher: Self::NAME,
                arity,
            });
        }
        hash_pairs(Tag::TreeD, children, parents);
        Ok(())
    }
}

/// Trees C and R's hash: Poseidon over `Fr` with the arity's constants (SPEC §2.2).
#[derive(Clone, Copy, Debug, Default)]
pub struct PoseidonTree;

impl TreeHasher for PoseidonTree {
    const NAME: &'static str = "poseidon";
    const ID: u32 = 2;

    fn supports_arity(arity: usize) -> bool {
        crate::poseidon::SUPPORTED_ARITIES.contains(&arity)
    }

    /// Eight parents at a time in AVX-512 IFMA lanes where the processor has them
    /// ([`crate::poseidon::PoseidonConstants::hash_many`]).
    fn hash_level_serial(
        arity: usize,
        children: &[Node],
        parents: &mut [Node],
    ) -> Result<(), TreeError> {
        let unsupported = || TreeError::UnsupportedArity {
            hasher: Self::NAME,
            arity,
        };
        let constants = crate::poseidon::constants(arity).map_err(|_| unsupported())?;
        let frs = children
            .iter()
            .map(|c| c.to_fr().ok_or(TreeError::NonCanonicalNode))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = vec![bls12_381::Scalar::zero(); parents.len()];
        constants
            .hash_many(&frs, &mut out)
            .map_err(|_| TreeError::LeafCount {
                expected: (parents.len().saturating_mul(arity)) as u64,
                got: children.len() as u64,
            })?;
        for (p, o) in parents.iter_mut().zip(&out) {
            *p = Node::from_fr(o);
        }
        Ok(())
    }

    fn hash_children(children: &[Node]) -> Result<Node, TreeError> {
        let arity = children.len();
        let constants =
            crate::poseidon::constants(arity).map_err(|_| TreeError::UnsupportedArity {
                hasher: Self::NAME,
                arity,
            })?;
        let mut frs = [bls12_381::Scalar::zero(); 16];
        for (f, c) in frs.iter_mut().zip(children) {
            *f = c.to_fr().ok_or(TreeError::NonCanonicalNode)?;
        }
        let out = constants
            .hash(&frs[..arity])
            .map_err(|_| TreeError::UnsupportedArity {
                hasher: Self::NAME,
                arity,
            })?;
        Ok(Node::from_fr(&out))
    }
}
