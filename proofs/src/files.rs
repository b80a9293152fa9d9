//! The JSON files that carry a proof's public data between machines: the public inputs of a PoRep
//! (`commit1.json`, what `lode verify porep` and `lode seal verify-commit1` read) and a PoSt proof file
//! (what `lode post` writes and `lode verify post` reads).
//!
//! Both are strict: unknown fields are rejected, nodes are exactly 64 hex digits, commitments must be
//! field elements, and the sector size is a typed field (`"2KiB"`, `"32GiB"`, …). A PoSt file is checked
//! in two steps: [`PostFile::statements`] turns it into the statements a [`ProofVerifier`] checks
//! (rejecting files that prove nothing, repeat a sector, or list a sector as both proven and faulty), and
//! [`PostFile::verify`] runs them.

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

use serde::{Deserialize, Serialize};

use crate::circuit::post::PostKind;
use crate::node::Node;
use crate::porep::PorepPublic;
use crate::post::PublicSector;
use crate::sector::SectorSize;
use crate::snark::PROOF_LEN;
use crate::verifier::{ProofVerifier, VerifyError, WindowPostStatement, WinningPostStatement};

/// Why a file's content cannot be a proof statement.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    /// The file proves nothing.
    #[error("the file proves no sectors")]
    NoSectors,
    /// A sector number appears twice, or sectors are not in increasing order.
    #[error("sector {0} is out of order or listed twice (sectors must be in increasing order)")]
    SectorOrder(u64),
    /// A sector listed as faulty is also proven (or listed twice as faulty).
    #[error("sector {0} is listed as faulty and also proven, or twice as faulty")]
    FaultyOverlap(u64),
    /// A Winning PoSt with faulty sectors: it proves one selected sector and skips none.
    #[error("a Winning PoSt does not skip faulty sectors")]
    WinningFaults,
    /// The number of proofs does not match the statement.
    #[error("{expected} proof(s) expected for the sectors, found {found}")]
    ProofCount {
        /// Proofs the statement needs.
        expected: usize,
        /// Proofs in the file.
        found: usize,
    },
    /// A proof is not a 192-byte Groth16 proof in hex.
    #[error("proof {index} is not {PROOF_LEN} bytes of hex")]
    ProofEncoding {
        /// Its position in the file.
        index: usize,
    },
    /// A `comm_r` that is not a field element.
    #[error("sector {0}: comm_r is not a field element")]
    CommR(u64),
}

/// Serde adapter: a [`SectorSize`] as its name (`"2KiB"`); the byte count is accepted too.
pub mod sector_size_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::sector::SectorSize;

    /// Writes the size's name.
    pub fn serialize<S: Serializer>(size: &SectorSize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(size.name())
    }

    /// Reads a size name.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SectorSize, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde adapter: a [`Node`] as exactly 64 lower- or upper-case hex digits.
pub mod node_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::node::Node;

    /// Writes 64 lower-case hex digits.
    pub fn serialize<S: Serializer>(node: &Node, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&node.to_hex())
    }

    /// Reads 64 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let text = String::deserialize(d)?;
        Node::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not 64 hex digits: {text:?}")))
    }
}

/// Serde adapter for a [`PostKind`]: `"winning-post"` or `"window-post"`.
mod post_kind_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::circuit::post::PostKind;

    pub(super) fn serialize<S: Serializer>(kind: &PostKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PostKind, D::Error> {
        let name = String::deserialize(d)?;
        [PostKind::Winning, PostKind::Window]
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown PoSt kind {name:?}: winning-post or window-post"
                ))
            })
    }
}

/// The public inputs of a PoRep as JSON (`commit1.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PorepPublicFile {
    /// The sector size.
    #[serde(with = "sector_size_name")]
    pub sector_size: SectorSize,
    /// The miner (prover) id.
    pub miner_id: u64,
    /// The sector number.
    pub sector_number: u64,
    /// The ticket.
    #[serde(with = "node_hex")]
    pub ticket: Node,
    /// The seed.
    #[serde(with = "node_hex")]
    pub seed: Node,
    /// The data commitment.
    #[serde(with = "node_hex")]
    pub comm_d: Node,
    /// The replica commitment.
    #[serde(with = "node_hex")]
    pub comm_r: Node,
}

impl From<&PorepPublic> for PorepPublicFile {
    fn from(p: &PorepPublic) -> Self {
        PorepPublicFile {
            sector_size: p.size,
            miner_id: p.miner_id,
            sector_number: p.sector_number,
            ticket: p.ticket,
            seed: p.seed,
            comm_d: p.comm_d,
            comm_r: p.comm_r,
        }
    }
}

impl From<PorepPublicFile> for PorepPublic {
    fn from(f: PorepPublicFile) -> Self {
        PorepPublic {
            size: f.sector_size,
            miner_id: f.miner_id,
            sector_number: f.sector_number,
            ticket: f.ticket,
            seed: f.seed,
            comm_d: f.comm_d,
            comm_r: f.comm_r,
        }
    }
}

/// One proven sector in a PoSt file: `[sector_number, comm_r]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostFileSector(pub u64, #[serde(with = "node_hex")] pub Node);

/// A PoSt proof with its public data: what `lode post` writes and `lode verify post` checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostFile {
    /// Winning or Window PoSt.
    #[serde(with = "post_kind_name")]
    pub kind: PostKind,
    /// The sectors' size.
    #[serde(with = "sector_size_name")]
    pub sector_size: SectorSize,
    /// The miner. A Winning PoSt binds it (it selects the sector); a Window PoSt does not — the chain
    /// binds a Window PoSt to its miner through the randomness it draws for that miner.
    pub miner_id: u64,
    /// The challenge randomness (trunc254 applied).
    #[serde(with = "node_hex")]
    pub randomness: Node,
    /// Winning PoSt: every sector the randomness selects from. Window PoSt: the proven sectors. In
    /// increasing sector-number order.
    pub sectors: Vec<PostFileSector>,
    /// Window PoSt: the sectors skipped as faulty, with the reason.
    pub faulty: Vec<(u64, String)>,
    /// One hex proof per partition (one for a Winning PoSt).
    pub proofs: Vec<String>,
}

/// The statements of a PoSt file, ready for a [`ProofVerifier`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostStatements {
    /// One Winning PoSt.
    Winning(WinningPostStatement, Vec<u8>),
    /// One statement and proof per Window PoSt partition.
    Window(Vec<(WindowPostStatement, Vec<u8>)>),
}

impl PostFile {
    /// The file's sectors as the chain knows them.
    pub fn public_sectors(&self) -> Vec<PublicSector> {
        self.sectors
            .iter()
            .map(|s| PublicSector {
                sector_number: s.0,
                comm_r: s.1,
            })
            .collect()
    }

    /// Checks the file's structure and splits it into the statements its proofs must satisfy.
    pub fn statements(&self) -> Result<PostStatements, FileError> {
        let sectors = self.public_sectors();
        if sectors.is_empty() {
            return Err(FileError::NoSectors);
        }
        for pair in sectors.windows(2) {
            if let [a, b] = pair
                && a.sector_number >= b.sector_number
            {
                return Err(FileError::SectorOrder(b.sector_number));
            }
        }
        for s in &sectors {
            if s.comm_r.to_fr().is_none() {
                return Err(FileError::CommR(s.sector_number));
            }
        }
        let mut faulty: Vec<u64> = self.faulty.iter().map(|f| f.0).collect();
        faulty.sort_unstable();
        for pair in faulty.windows(2) {
            if let [a, b] = pair
                && a == b
            {
                return Err(FileError::FaultyOverlap(*a));
            }
        }
        if let Some(f) = faulty.iter().find(|f| {
            sectors
                .binary_search_by_key(*f, |s| s.sector_number)
                .is_ok()
        }) {
            return Err(FileError::FaultyOverlap(*f));
        }
        let proofs = self
            .proofs
            .iter()
            .enumerate()
            .map(|(index, p)| match hex::decode(p) {
                Ok(b) if b.len() == PROOF_LEN => Ok(b),
                _ => Err(FileError::ProofEncoding { index }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let randomness = self.randomness.0;
        match self.kind {
            PostKind::Winning => {
                if !faulty.is_empty() {
                    return Err(FileError::WinningFaults);
                }
                let [proof] =
                    <[Vec<u8>; 1]>::try_from(proofs).map_err(|p| FileError::ProofCount {
                        expected: 1,
                        found: p.len(),
                    })?;
                Ok(PostStatements::Winning(
                    WinningPostStatement {
                        size: self.sector_size,
                        miner_id: self.miner_id,
                        randomness,
                        sectors,
                    },
                    proof,
                ))
            }
            PostKind::Window => {
                let per = self.sector_size.window_post_sectors_per_partition();
                let parts: Vec<&[PublicSector]> = sectors.chunks(per.max(1)).collect();
                if parts.len() != proofs.len() {
                    return Err(FileError::ProofCount {
                        expected: parts.len(),
                        found: proofs.len(),
                    });
                }
                Ok(PostStatements::Window(
                    parts
                        .into_iter()
                        .zip(proofs)
                        .map(|(part, proof)| {
                            (
                                WindowPostStatement {
                                    size: self.sector_size,
                                    randomness,
                                    sectors: part.to_vec(),
                                },
                                proof,
                            )
                        })
                        .collect(),
                ))
            }
        }
    }

    /// Checks every proof of the file with `verifier`. The error says which partition failed.
    pub fn verify(&self, verifier: &dyn ProofVerifier) -> Result<(), PostFileError> {
        match self.statements()? {
            PostStatements::Winning(statement, proof) => verifier
                .verify_winning_post(&statement, &proof)
                .map_err(|source| PostFileError::Proof {
                    partition: 0,
                    source,
                }),
            PostStatements::Window(parts) => {
                for (partition, (statement, proof)) in parts.iter().enumerate() {
                    verifier
                        .verify_window_post(statement, proof)
                        .map_err(|source| PostFileError::Proof { partition, source })?;
                }
                Ok(())
            }
        }
    }
}

/// Why a PoSt file does not verify.
#[derive(Debug, thiserror::Error)]
pub enum PostFileError {
    /// The file's content is not a well-formed statement.
    #[error(transparent)]
    File(#[from] FileError),
    /// A partition's proof does not verify (or its key is missing).
    #[error("partition {partition}: {source}")]
    Proof {
        /// The partition.
        partition: usize,
        /// Why.
        #[source]
        source: VerifyError,
    },
}

impl PostFileError {
    /// Whether the file could not be checked at all (a missing or unreadable verifying key), as
    /// opposed to a proof or statement that is wrong.
    pub fn is_missing_key(&self) -> bool {
        matches!(
            self,
            PostFileError::Proof {
                source: VerifyError::Key(_),
                ..
            }
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(kind: PostKind, sectors: &[u64], faulty: &[u64], proofs: usize) -> PostFile {
        PostFile {
            kind,
            sector_size: SectorSize::S2KiB,
            miner_id: 1000,
            randomness: Node([7; 32]),
            sectors: sectors
                .iter()
                .map(|&n| PostFileSector(n, Node([n as u8; 32])))
                .collect(),
            faulty: faulty.iter().map(|&n| (n, "gone".into())).collect(),
            proofs: vec!["00".repeat(PROOF_LEN); proofs],
        }
    }

    #[test]
    fn json_round_trip_is_strict() {
        let f = file(PostKind::Window, &[1, 2], &[3], 1);
        let text = serde_json::to_string(&f).unwrap();
        assert!(text.contains("\"window-post\"") && text.contains("\"2KiB\""));
        assert_eq!(serde_json::from_str::<PostFile>(&text).unwrap(), f);
        let extra = text.replacen('{', "{\"extra\":1,", 1);
        assert!(serde_json::from_str::<PostFile>(&extra).is_err());
        let short = text.replace(&"07".repeat(32), "07");
        assert!(serde_json::from_str::<PostFile>(&short).is_err());
        let size = text.replace("2KiB", "3KiB");
        assert!(serde_json::from_str::<PostFile>(&size).is_err());
    }

    #[test]
    fn malformed_statements_are_refused() {
        assert_eq!(
            file(PostKind::Window, &[], &[], 0).statements(),
            Err(FileError::NoSectors)
        );
        assert_eq!(
            file(PostKind::Window, &[1, 1], &[], 1).statements(),
            Err(FileError::SectorOrder(1))
        );
        assert_eq!(
            file(PostKind::Window, &[2, 1], &[], 1).statements(),
            Err(FileError::SectorOrder(1))
        );
        assert_eq!(
            file(PostKind::Window, &[1, 2], &[2], 1).statements(),
            Err(FileError::FaultyOverlap(2))
        );
        assert_eq!(
            file(PostKind::Window, &[1], &[4, 4], 1).statements(),
            Err(FileError::FaultyOverlap(4))
        );
        assert_eq!(
            file(PostKind::Window, &[1, 2], &[], 2).statements(),
            Err(FileError::ProofCount {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(
            file(PostKind::Winning, &[1, 2], &[3], 1).statements(),
            Err(FileError::WinningFaults)
        );
        assert_eq!(
            file(PostKind::Winning, &[1], &[], 0).statements(),
            Err(FileError::ProofCount {
                expected: 1,
                found: 0
            })
        );
        let mut bad = file(PostKind::Winning, &[1], &[], 1);
        bad.proofs[0].push_str("00");
        assert_eq!(bad.statements(), Err(FileError::ProofEncoding { index: 0 }));
        let mut big = file(PostKind::Window, &[1], &[], 1);
        big.sectors[0].1 = Node([0xff; 32]);
        assert_eq!(big.statements(), Err(FileError::CommR(1)));
    }

    #[test]
    fn window_files_split_into_partitions() {
        let per = SectorSize::S2KiB.window_post_sectors_per_partition();
        let n: Vec<u64> = (1..=per as u64 + 1).collect();
        match file(PostKind::Window, &n, &[], 2).statements().unwrap() {
            PostStatements::Window(parts) => {
                assert_eq!(parts.len(), 2);
                assert_eq!(parts[0].0.sectors.len(), per);
                assert_eq!(parts[1].0.sectors.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn porep_public_file_keeps_the_commit1_json_format() {
        let text = r#"{"sector_size":"2KiB","miner_id":1000,"sector_number":7,
            "ticket":"0101010101010101010101010101010101010101010101010101010101010101",
            "seed":"0202020202020202020202020202020202020202020202020202020202020202",
            "comm_d":"0303030303030303030303030303030303030303030303030303030303030303",
            "comm_r":"0404040404040404040404040404040404040404040404040404040404040404"}"#;
        let f: PorepPublicFile = serde_json::from_str(text).unwrap();
        let p = PorepPublic::from(f);
        assert_eq!(p.size, SectorSize::S2KiB);
        assert_eq!(p.comm_r, Node([4; 32]));
        assert_eq!(PorepPublicFile::from(&p), f);
    }
}
