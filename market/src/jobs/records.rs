//! The provider's records of the compute jobs it took, in the market's records (tree `jobs` of
//! [`MarketTree`]).

use lode_chain::message::SignedMessage;
use lode_chain::types::Epoch;
use serde::{Deserialize, Serialize};

use crate::error::{MarketError, MarketResult};
use crate::provider::records::{MarketRecords, MarketTree};

/// Where a job is, from the provider's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobPhase {
    /// `AcceptJob` sent, not landed yet.
    Accepting,
    /// Accepted on chain; to run.
    Accepted,
    /// Run; the result is known, nothing sent about it yet.
    Ran,
    /// `CommitResult` sent (replicated jobs).
    Committing,
    /// The commitment landed; the reveal waits for the deadline.
    Committed,
    /// `RevealResult` sent.
    Revealing,
    /// `PostResult` sent (verifier jobs).
    Posting,
    /// The result is on chain; waiting for settlement.
    Submitted,
    /// The job settled (the record says how it went for this provider).
    Settled,
    /// This provider's part ended without its result on chain (the reason says why).
    Failed,
}

impl JobPhase {
    /// Whether nothing more happens to the job on this provider.
    pub fn is_final(self) -> bool {
        matches!(self, JobPhase::Settled | JobPhase::Failed)
    }

    /// The phase's name, as records and reports show it.
    pub fn name(self) -> &'static str {
        match self {
            JobPhase::Accepting => "accepting",
            JobPhase::Accepted => "accepted",
            JobPhase::Ran => "ran",
            JobPhase::Committing => "committing",
            JobPhase::Committed => "committed",
            JobPhase::Revealing => "revealing",
            JobPhase::Posting => "posting",
            JobPhase::Submitted => "submitted",
            JobPhase::Settled => "settled",
            JobPhase::Failed => "failed",
        }
    }
}

/// One job this provider took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id on chain.
    pub job_id: u64,
    /// Where it is.
    pub phase: JobPhase,
    /// Whether the job is replicated (commit and reveal) or has a verifier (post).
    pub replicated: bool,
    /// Its deadline.
    pub deadline: Epoch,
    /// The salt of this provider's commitment (kept until the reveal).
    #[serde(with = "lode_node::rpc::types::serde_hex::hash")]
    pub salt: [u8; 32],
    /// The result, once run.
    #[serde(default, with = "lode_node::rpc::types::serde_hex::opt_hash")]
    pub result: Option<[u8; 32]>,
    /// The run's exit code or trap, for people.
    pub summary: Option<String>,
    /// The message of the step under way, as signed (pushed again if it does not land).
    pub message: Option<SignedMessage>,
    /// The epoch that message was last pushed at.
    pub sent_at: Option<Epoch>,
    /// Why it failed, or how it settled for this provider.
    pub note: Option<String>,
}

/// The job records. Cheap to clone: clones share the records.
#[derive(Clone, Debug)]
pub struct JobRecords {
    records: MarketRecords,
}

impl JobRecords {
    /// The job records in the market's `records` (tree `jobs`).
    pub fn new(records: MarketRecords) -> JobRecords {
        JobRecords { records }
    }

    fn error(&self, why: impl std::fmt::Display) -> MarketError {
        MarketError::Records {
            at: self.records.location(),
            why: why.to_string(),
        }
    }

    /// Writes (replaces) a record, durably.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn put(&self, r: &JobRecord) -> MarketResult<()> {
        let bytes = serde_json::to_vec(r).map_err(|e| self.error(e))?;
        self.records
            .put(MarketTree::Jobs, &r.job_id.to_be_bytes(), &bytes)
            .map_err(|e| self.error(e))
    }

    /// A record.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn get(&self, job: u64) -> MarketResult<Option<JobRecord>> {
        match self
            .records
            .get(MarketTree::Jobs, &job.to_be_bytes())
            .map_err(|e| self.error(e))?
        {
            Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| {
                self.error(format!("job {job}'s record does not decode: {e}"))
            })?)),
            None => Ok(None),
        }
    }

    /// Every record, by job id.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn list(&self) -> MarketResult<Vec<JobRecord>> {
        self.records
            .scan(MarketTree::Jobs, &[])
            .map_err(|e| self.error(e))?
            .iter()
            .map(|(_, b)| {
                serde_json::from_slice(b)
                    .map_err(|e| self.error(format!("a job record does not decode: {e}")))
            })
            .collect()
    }
}
