//! Where the pipeline's records live: its trees (sectors, their counters, the task records, the
//! deal pieces and their indexes) in [`lode_records`] — the provider's embedded sled database by
//! default, the cluster's PostgreSQL database (`[cluster] db`, rows `pipeline/<tree>` of
//! `lode_records`, fenced by the leader lease) in a cluster. See that crate for the transactions'
//! guarantees and the fencing.

pub use lode_records::{Abort, Entries, Fence, KvError, KvResult, Tx, abort};

/// The pipeline's records.
pub type Records = lode_records::Records<Tree>;

/// The trees a provider in a cluster keeps in memory ([`Records::postgres_cached`]): those every
/// tick reads whole (the sectors, the task records, the deal pieces).
pub const CACHED: &[Tree] = &[Tree::Sectors, Tree::Tasks, Tree::Deals];

/// The trees of the pipeline's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Sector records by number.
    Sectors,
    /// The sector counter.
    Meta,
    /// Task records by id.
    Tasks,
    /// The task id and token counters.
    TaskMeta,
    /// Deal pieces by deal id.
    Deals,
    /// `sector ‖ deal id` → nothing: the live pieces of each sector.
    DealSectors,
    /// `CommP ‖ deal id` → nothing: the pieces by piece CID.
    PieceCids,
}

impl lode_records::Trees for Tree {
    const ALL: &'static [Tree] = &[
        Tree::Sectors,
        Tree::Meta,
        Tree::Tasks,
        Tree::TaskMeta,
        Tree::Deals,
        Tree::DealSectors,
        Tree::PieceCids,
    ];

    /// The sled tree's name (what the embedded database has always called it).
    fn name(self) -> &'static str {
        match self {
            Tree::Sectors => "sectors",
            Tree::Meta => "meta",
            Tree::Tasks => "tasks",
            Tree::TaskMeta => "task_meta",
            Tree::Deals => "deals",
            Tree::DealSectors => "deal_sectors",
            Tree::PieceCids => "piece_cids",
        }
    }

    /// `pipeline/` and the sled name (migration 7 gave the rows of migration 6 these names).
    fn column(self) -> &'static str {
        match self {
            Tree::Sectors => "pipeline/sectors",
            Tree::Meta => "pipeline/meta",
            Tree::Tasks => "pipeline/tasks",
            Tree::TaskMeta => "pipeline/task_meta",
            Tree::Deals => "pipeline/deals",
            Tree::DealSectors => "pipeline/deal_sectors",
            Tree::PieceCids => "pipeline/piece_cids",
        }
    }
}

#[cfg(test)]
mod tests {
    use lode_records::Trees;

    use super::Tree;

    #[test]
    fn every_tree_has_a_distinct_name_and_column_under_pipeline() {
        let mut names: Vec<_> = Tree::ALL.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Tree::ALL.len());
        for t in Tree::ALL {
            assert_eq!(t.column(), format!("pipeline/{}", t.name()));
        }
    }
}
