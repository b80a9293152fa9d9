//! Sector sizes and the protocol parameters that follow from them (SPEC §4 table).
//!
//! Sizes are values chosen at run time, not types: every function that depends on the size takes a
//! [`SectorSize`], and an unsupported size is an error when it is parsed, never a panic later.

use std::fmt;
use std::str::FromStr;

use crate::merkle::TreeShape;
use crate::node::{NODE_SIZE, Node};

/// A supported sector size.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum SectorSize {
    /// 2 KiB (test size).
    S2KiB,
    /// 8 MiB (test size).
    S8MiB,
    /// 512 MiB (test size).
    S512MiB,
    /// 32 GiB (production).
    S32GiB,
    /// 64 GiB (production).
    S64GiB,
}

/// An unsupported sector size.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unsupported sector size {0:?}: use one of 2KiB, 8MiB, 512MiB, 32GiB, 64GiB (or the byte count)"
)]
pub struct UnsupportedSectorSize(pub String);

impl SectorSize {
    /// Every size, smallest first.
    pub const ALL: [SectorSize; 5] = [
        SectorSize::S2KiB,
        SectorSize::S8MiB,
        SectorSize::S512MiB,
        SectorSize::S32GiB,
        SectorSize::S64GiB,
    ];

    /// The size in (padded) bytes.
    pub fn bytes(self) -> u64 {
        match self {
            SectorSize::S2KiB => 2 << 10,
            SectorSize::S8MiB => 8 << 20,
            SectorSize::S512MiB => 512 << 20,
            SectorSize::S32GiB => 32 << 30,
            SectorSize::S64GiB => 64 << 30,
        }
    }

    /// The size for a byte count.
    pub fn from_bytes(bytes: u64) -> Result<Self, UnsupportedSectorSize> {
        SectorSize::ALL
            .into_iter()
            .find(|s| s.bytes() == bytes)
            .ok_or_else(|| UnsupportedSectorSize(bytes.to_string()))
    }

    /// Nodes per sector (`n`).
    pub fn nodes(self) -> u64 {
        self.bytes() / NODE_SIZE as u64
    }

    /// The proof id of the SPEC table.
    pub fn proof_id(self) -> u64 {
        match self {
            SectorSize::S2KiB => 0,
            SectorSize::S8MiB => 1,
            SectorSize::S512MiB => 2,
            SectorSize::S32GiB => 3,
            SectorSize::S64GiB => 4,
        }
    }

    /// `porep_id = u64le(proof_id) || u64le(0) || 0^16`.
    pub fn porep_id(self) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&self.proof_id().to_le_bytes());
        id
    }

    /// SDR layers `L`.
    pub fn layers(self) -> usize {
        match self {
            SectorSize::S2KiB | SectorSize::S8MiB | SectorSize::S512MiB => 2,
            SectorSize::S32GiB | SectorSize::S64GiB => 11,
        }
    }

    /// PoRep partitions.
    pub fn porep_partitions(self) -> usize {
        match self {
            SectorSize::S2KiB | SectorSize::S8MiB | SectorSize::S512MiB => 1,
            SectorSize::S32GiB | SectorSize::S64GiB => 10,
        }
    }

    /// PoRep challenges per partition.
    pub fn porep_challenges_per_partition(self) -> usize {
        match self {
            SectorSize::S2KiB | SectorSize::S8MiB | SectorSize::S512MiB => 2,
            SectorSize::S32GiB | SectorSize::S64GiB => 18,
        }
    }

    /// Window PoSt sectors per partition.
    pub fn window_post_sectors_per_partition(self) -> usize {
        match self {
            SectorSize::S2KiB | SectorSize::S8MiB | SectorSize::S512MiB => 2,
            SectorSize::S32GiB => 2349,
            SectorSize::S64GiB => 2300,
        }
    }

    /// The shape of trees C and R: arity 8, with a binary top level for 64 GiB.
    pub fn tree_shape(self) -> TreeShape {
        match TreeShape::octal(self.nodes()) {
            Ok(shape) => shape,
            Err(_) => unreachable!("every sector size has 8^k or 8^k·2 nodes"),
        }
    }

    /// The shape of tree D: binary.
    pub fn tree_d_shape(self) -> TreeShape {
        match TreeShape::binary(self.nodes()) {
            Ok(shape) => shape,
            Err(_) => unreachable!("every sector size is a power of two"),
        }
    }

    /// The short name, as in the SPEC table.
    pub fn name(self) -> &'static str {
        match self {
            SectorSize::S2KiB => "2KiB",
            SectorSize::S8MiB => "8MiB",
            SectorSize::S512MiB => "512MiB",
            SectorSize::S32GiB => "32GiB",
            SectorSize::S64GiB => "64GiB",
        }
    }
}

impl fmt::Display for SectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SectorSize {
    type Err = UnsupportedSectorSize;

    /// Accepts the SPEC names (`2KiB`, `8MiB`, …, case-insensitive) or a byte count.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Some(size) = SectorSize::ALL
            .into_iter()
            .find(|z| z.name().eq_ignore_ascii_case(t))
        {
            return Ok(size);
        }
        t.parse::<u64>()
            .ok()
            .and_then(|b| SectorSize::from_bytes(b).ok())
            .ok_or_else(|| UnsupportedSectorSize(s.into()))
    }
}

/// `prover_id = u64le(miner_id) || 0^24`.
pub fn prover_id(miner_id: u64) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&miner_id.to_le_bytes());
    id
}

/// A 32-byte value from the chain made into a node: `trunc254` (tickets, seeds, randomness).
pub fn randomness_node(bytes: [u8; 32]) -> Node {
    crate::node::trunc254(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_table() {
        let rows = [
            (SectorSize::S2KiB, 0, 2, 1, 2, 2),
            (SectorSize::S8MiB, 1, 2, 1, 2, 2),
            (SectorSize::S512MiB, 2, 2, 1, 2, 2),
            (SectorSize::S32GiB, 3, 11, 10, 18, 2349),
            (SectorSize::S64GiB, 4, 11, 10, 18, 2300),
        ];
        for (s, id, l, p, c, w) in rows {
            assert_eq!(s.proof_id(), id);
            assert_eq!(s.layers(), l);
            assert_eq!(s.porep_partitions(), p);
            assert_eq!(s.porep_challenges_per_partition(), c);
            assert_eq!(s.window_post_sectors_per_partition(), w);
            assert_eq!(s.tree_shape().leaves(), s.nodes());
            assert_eq!(s.name().parse::<SectorSize>().unwrap(), s);
            assert_eq!(s.bytes().to_string().parse::<SectorSize>().unwrap(), s);
        }
        assert_eq!(SectorSize::S64GiB.tree_shape().arities().last(), Some(&2));
        assert_eq!(SectorSize::S2KiB.porep_id()[0], 0);
        assert_eq!(SectorSize::S64GiB.porep_id()[..8], 4u64.to_le_bytes());
        assert!("4KiB".parse::<SectorSize>().is_err());
        assert!("".parse::<SectorSize>().is_err());
        assert!(SectorSize::from_bytes(4096).is_err());
        assert_eq!(prover_id(1000)[..2], [0xe8, 0x03]);
    }
}
