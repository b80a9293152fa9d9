//! The geometry of a tree: leaf count and the arity of each level.

use super::TreeError;

/// Leaf count and per-level arities (bottom level first). The product of the arities is the leaf count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TreeShape {
    leaves: u64,
    arities: Vec<usize>,
}

impl TreeShape {
    /// A shape with explicit arities; each must be at least 2 and their product must equal `leaves`.
    pub fn new(leaves: u64, arities: Vec<usize>) -> Result<Self, TreeError> {
        let invalid = || TreeError::InvalidShape {
            leaves,
            arities: arities.clone(),
        };
        let mut product = 1u64;
        for &a in &arities {
            if a < 2 {
                return Err(invalid());
            }
            product = product.checked_mul(a as u64).ok_or_else(invalid)?;
        }
        if product != leaves {
            return Err(invalid());
        }
        Ok(TreeShape { leaves, arities })
    }

    /// A binary tree over a power-of-two number of leaves.
    pub fn binary(leaves: u64) -> Result<Self, TreeError> {
        if !leaves.is_power_of_two() {
            return Err(TreeError::InvalidShape {
                leaves,
                arities: vec![2],
            });
        }
        TreeShape::new(leaves, vec![2; leaves.trailing_zeros() as usize])
    }

    /// The shape of trees C and R (SPEC §4.4): arity 8 at every level, with a top level of arity 2 or 4
    /// when the leaf count is `8^k · 2` or `8^k · 4` (a 64 GiB sector has `8^10 · 2` leaves).
    pub fn octal(leaves: u64) -> Result<Self, TreeError> {
        if !leaves.is_power_of_two() || leaves < 8 {
            return Err(TreeError::InvalidShape {
                leaves,
                arities: vec![8],
            });
        }
        let bits = leaves.trailing_zeros() as usize;
        let mut arities = vec![8; bits / 3];
        if !bits.is_multiple_of(3) {
            arities.push(1 << (bits % 3));
        }
        TreeShape::new(leaves, arities)
    }

    /// Number of leaves.
    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// Arities, bottom level first.
    pub fn arities(&self) -> &[usize] {
        &self.arities
    }

    /// The arities as a comma-separated list, bottom first (`8,8`): how parameter identifiers name a shape.
    pub fn arities_csv(&self) -> String {
        self.arities
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Number of levels above the leaves (the root is at level `height()`).
    pub fn height(&self) -> usize {
        self.arities.len()
    }

    /// Number of nodes at `level` (0 = leaves); 0 past the root.
    pub fn level_len(&self, level: usize) -> u64 {
        if level > self.height() {
            return 0;
        }
        self.arities[..level]
            .iter()
            .fold(self.leaves, |n, &a| n / a as u64)
    }

    /// Leaves under one node of `level`.
    pub fn span(&self, level: usize) -> u64 {
        self.arities[..level.min(self.height())]
            .iter()
            .map(|&a| a as u64)
            .product()
    }

    /// Total nodes of all levels from `from` up to the root.
    pub fn nodes_from(&self, from: usize) -> u64 {
        (from..=self.height()).map(|l| self.level_len(l)).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sector_shapes() {
        // 2KiB, 8MiB, 512MiB, 32GiB, 64GiB sectors.
        for (leaves, arities) in [
            (64u64, vec![8, 8]),
            (1 << 18, vec![8; 6]),
            (1 << 24, vec![8; 8]),
            (1 << 30, vec![8; 10]),
            (1 << 31, [vec![8; 10], vec![2]].concat()),
        ] {
            let s = TreeShape::octal(leaves).unwrap();
            assert_eq!(s.arities(), &arities[..]);
            assert_eq!(s.level_len(s.height()), 1);
            assert_eq!(s.span(s.height()), leaves);
        }
        assert!(TreeShape::octal(4).is_err());
        assert!(TreeShape::octal(100).is_err());
    }

    #[test]
    fn invalid_shapes_are_rejected() {
        assert!(TreeShape::new(8, vec![2, 2]).is_err());
        assert!(TreeShape::new(8, vec![8, 1]).is_err());
        assert!(TreeShape::new(u64::MAX, vec![usize::MAX, usize::MAX, 3]).is_err());
        assert!(TreeShape::binary(6).is_err());
        let one = TreeShape::binary(1).unwrap();
        assert_eq!(one.height(), 0);
        assert_eq!(one.nodes_from(0), 1);
        assert_eq!(TreeShape::binary(8).unwrap().nodes_from(0), 15);
    }
}
