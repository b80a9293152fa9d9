//! The client's deal records: one JSON file per deal, `deals/<uuid>.json` in the client
//! directory (next to the import store's `imports/` and `cars/`), each written atomically
//! ([`lode_proofs::durable::write_atomic`]: a temporary file, fsync, rename, directory fsync),
//! so a record is always whole: the one before a change or the one after.
//!
//! A record is written before the proposal leaves (state `proposed`), so a client killed while
//! waiting for the provider's answer still knows what it proposed, and updated at each step:
//! the provider's answer, the transfer, the deal id once published, and what the chain says
//! afterwards.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use cid::Cid;
use lode_chain::actors::market::ClientDealProposal;
use lode_chain::types::{ActorId, DealId, Epoch, SectorNumber};
use lode_proofs::cid::PieceCid;
use serde::{Deserialize, Serialize};

use crate::deal::DealUuid;
use crate::error::{MarketError, MarketResult, io_at};

/// Where a client deal stands: its local steps, then what the chain says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientDealState {
    /// Recorded and sent; no answer yet.
    Proposed,
    /// Accepted: the provider fetches the data (or it is pushed), checks it and publishes.
    Transferring,
    /// Found on chain, with its deal id (what `lode client deal` reports when it sees it).
    Published,
    /// Published and not yet active: the provider seals the sector that will hold it.
    Sealing,
    /// Active in a proven sector.
    Active,
    /// Ended at its end epoch.
    Expired,
    /// Left the chain before its end while active: its sector was terminated.
    Slashed,
    /// Rejected, not transferred, not published or not activated in time (the reason says).
    Failed,
}

impl ClientDealState {
    /// Whether the deal can still change (not expired, slashed or failed).
    pub fn is_live(self) -> bool {
        !matches!(
            self,
            ClientDealState::Expired | ClientDealState::Slashed | ClientDealState::Failed
        )
    }

    /// Whether the deal was accepted and not yet seen on chain.
    pub fn is_unpublished(self) -> bool {
        matches!(
            self,
            ClientDealState::Proposed | ClientDealState::Transferring
        )
    }

    /// The name `lode client deals` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientDealState::Proposed => "proposed",
            ClientDealState::Transferring => "transferring",
            ClientDealState::Published => "published",
            ClientDealState::Sealing => "sealing",
            ClientDealState::Active => "active",
            ClientDealState::Expired => "expired",
            ClientDealState::Slashed => "slashed",
            ClientDealState::Failed => "failed",
        }
    }
}

impl fmt::Display for ClientDealState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the deal's data travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ClientTransfer {
    /// `lode client deal` served the CAR itself at this URL while it waited.
    Served {
        /// The URL given to the provider.
        url: String,
    },
    /// The provider pulls from a URL the client gave (`--url`).
    Url {
        /// The URL.
        url: String,
    },
    /// The client pushes the payload over libp2p (`/lode/transfer/1`).
    Push,
}

/// One deal the client proposed. **API Boundary:** this JSON is the record's file format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientDeal {
    /// The deal's UUID (the client chose it; the provider's records use it too).
    pub uuid: DealUuid,
    /// The provider.
    #[serde(with = "lode_node::rpc::types::serde_hex::actor")]
    pub provider: ActorId,
    /// The piece CID.
    #[serde(with = "as_string")]
    pub piece_cid: PieceCid,
    /// The padded piece size.
    pub piece_size: u64,
    /// The payload's bytes (the CAR's length).
    pub payload_size: u64,
    /// The payload's root CID, when known (an import's).
    #[serde(with = "opt_cid")]
    pub payload_root: Option<Cid>,
    /// The import it was made from, if any.
    pub import_id: Option<u64>,
    /// How the data travels.
    pub transfer: ClientTransfer,
    /// Where it stands.
    pub state: ClientDealState,
    /// Why it failed, or a note on its state.
    pub reason: Option<String>,
    /// Its id on chain, once published.
    pub deal_id: Option<DealId>,
    /// The sector holding it, once active.
    pub sector: Option<SectorNumber>,
    /// When it was activated.
    pub activation_epoch: Option<Epoch>,
    /// When it was proposed (RFC 3339, UTC).
    pub created_at: String,
    /// When the record last changed.
    pub updated_at: String,
    /// The signed proposal (hex of its postcard encoding, exact: publication is matched on it).
    #[serde(with = "proposal_hex")]
    pub proposal: ClientDealProposal,
}

impl ClientDeal {
    /// A new record in state `proposed`.
    ///
    /// # Errors
    /// [`MarketError::BadDeal`] when the proposal's piece commitment is not a piece CID.
    pub fn new(
        uuid: DealUuid,
        proposal: ClientDealProposal,
        payload_size: u64,
        payload_root: Option<Cid>,
        import_id: Option<u64>,
        transfer: ClientTransfer,
    ) -> MarketResult<ClientDeal> {
        let p = &proposal.proposal;
        let piece_cid = PieceCid::new(lode_proofs::node::Node(p.piece_cid)).ok_or_else(|| {
            MarketError::BadDeal("the proposal's piece commitment is not a valid piece CID".into())
        })?;
        let now = crate::import::now_rfc3339();
        Ok(ClientDeal {
            uuid,
            provider: p.provider,
            piece_cid,
            piece_size: p.piece_size,
            payload_size,
            payload_root,
            import_id,
            transfer,
            state: ClientDealState::Proposed,
            reason: None,
            deal_id: None,
            sector: None,
            activation_epoch: None,
            created_at: now.clone(),
            updated_at: now,
            proposal,
        })
    }

    /// Moves to `state` (clearing the reason unless it fails).
    pub fn set_state(&mut self, state: ClientDealState) {
        self.state = state;
        if state != ClientDealState::Failed {
            self.reason = None;
        }
    }

    /// Fails with `why`.
    pub fn fail(&mut self, why: impl Into<String>) {
        self.state = ClientDealState::Failed;
        self.reason = Some(why.into());
    }
}

/// The client's deal records in `<client dir>/deals/`.
#[derive(Clone, Debug)]
pub struct ClientDealStore {
    dir: PathBuf,
}

impl ClientDealStore {
    /// Opens (creating it if needed) the records under the client directory `client_dir`.
    ///
    /// # Errors
    /// [`MarketError::Io`] when the directory cannot be created.
    pub fn open(client_dir: impl AsRef<Path>) -> MarketResult<ClientDealStore> {
        let dir = client_dir.as_ref().join("deals");
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        Ok(ClientDealStore { dir })
    }

    /// The records' directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, uuid: &DealUuid) -> PathBuf {
        self.dir.join(format!("{uuid}.json"))
    }

    /// Writes a record (its `updated_at` set to now), durably.
    ///
    /// # Errors
    /// [`MarketError::Io`].
    pub fn put(&self, deal: &mut ClientDeal) -> MarketResult<()> {
        deal.updated_at = crate::import::now_rfc3339();
        let json = serde_json::to_vec_pretty(deal).map_err(|e| MarketError::Malformed {
            what: "client deal record",
            why: e.to_string(),
        })?;
        lode_proofs::durable::write_atomic(&self.path(&deal.uuid), &json)?;
        Ok(())
    }

    /// The record of `uuid`.
    ///
    /// # Errors
    /// [`MarketError::UnknownClientDeal`]; [`MarketError::BadRecord`] for a damaged file.
    pub fn get(&self, uuid: &DealUuid) -> MarketResult<ClientDeal> {
        let path = self.path(uuid);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MarketError::UnknownClientDeal(uuid.to_string()));
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        let deal: ClientDeal =
            serde_json::from_slice(&bytes).map_err(|e| MarketError::BadRecord {
                path: path.clone(),
                why: e.to_string(),
            })?;
        if deal.uuid != *uuid {
            return Err(MarketError::BadRecord {
                path,
                why: format!("it holds deal {}", deal.uuid),
            });
        }
        Ok(deal)
    }

    /// Every record, oldest first (temporary files of interrupted writes are skipped).
    ///
    /// # Errors
    /// [`MarketError::Io`]; [`MarketError::BadRecord`] for a damaged file.
    pub fn list(&self) -> MarketResult<Vec<ClientDeal>> {
        let mut deals = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_at(&self.dir))? {
            let entry = entry.map_err(io_at(&self.dir))?;
            let name = entry.file_name();
            let Some(uuid) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|s| s.parse::<DealUuid>().ok())
            else {
                continue;
            };
            deals.push(self.get(&uuid)?);
        }
        deals.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.uuid.cmp(&b.uuid))
        });
        Ok(deals)
    }

    /// The deals of a piece CID or of a payload root CID, newest first.
    ///
    /// # Errors
    /// As [`ClientDealStore::list`].
    pub fn find(&self, cid: &Cid) -> MarketResult<Vec<ClientDeal>> {
        let mut found: Vec<ClientDeal> = self
            .list()?
            .into_iter()
            .filter(|d| {
                d.payload_root.as_ref() == Some(cid)
                    || crate::cid::piece_to_cid(&d.piece_cid) == *cid
            })
            .collect();
        found.reverse();
        Ok(found)
    }
}

/// Serde through `Display`/`FromStr`.
mod as_string {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(super) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An optional CID as its text.
mod opt_cid {
    use cid::Cid;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Cid>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(c) => s.collect_str(c),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cid>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The signed proposal as hex of its postcard encoding (strictly decoded).
mod proposal_hex {
    use lode_chain::actors::market::ClientDealProposal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        v: &ClientDealProposal,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(crate::deal::encode(v)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<ClientDealProposal, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        crate::deal::decode("signed proposal", &bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::deal::sign_proposal;
    use crate::deal::tests::{key, proposal};

    fn deal(seed: u8) -> ClientDeal {
        let mut p = proposal();
        p.piece_cid = lode_proofs::node::trunc254([seed; 32]).0;
        ClientDeal::new(
            DealUuid::new_random(),
            sign_proposal(p, "devnet", &key(3)),
            1000,
            Some(crate::cid::block_cid(crate::cid::RAW_CODEC, &[seed])),
            Some(u64::from(seed)),
            ClientTransfer::Push,
        )
        .unwrap()
    }

    #[test]
    fn records_round_trip_and_are_found_by_piece_or_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = ClientDealStore::open(dir.path()).unwrap();
        let mut a = deal(1);
        let mut b = deal(2);
        store.put(&mut a).unwrap();
        store.put(&mut b).unwrap();
        assert_eq!(store.get(&a.uuid).unwrap(), a);
        assert_eq!(store.list().unwrap().len(), 2);
        a.deal_id = Some(7);
        a.set_state(ClientDealState::Published);
        store.put(&mut a).unwrap();
        let again = ClientDealStore::open(dir.path()).unwrap();
        assert_eq!(again.get(&a.uuid).unwrap(), a);
        let by_piece = again.find(&crate::cid::piece_to_cid(&b.piece_cid)).unwrap();
        assert_eq!(by_piece, vec![b.clone()]);
        let by_root = again.find(&b.payload_root.unwrap()).unwrap();
        assert_eq!(by_root, vec![b]);
        assert!(matches!(
            again.get(&DealUuid::new_random()),
            Err(MarketError::UnknownClientDeal(_))
        ));
        // The JSON names states and the provider as a user reads them.
        let text = fs::read_to_string(again.dir().join(format!("{}.json", a.uuid))).unwrap();
        assert!(text.contains("\"published\""), "{text}");
        assert!(text.contains("\"l01000\""), "{text}");
    }

    #[test]
    fn a_damaged_record_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = ClientDealStore::open(dir.path()).unwrap();
        let mut a = deal(1);
        store.put(&mut a).unwrap();
        // A stray temporary file is not a record.
        fs::write(store.dir().join("x.json.tmp"), b"{").unwrap();
        assert_eq!(store.list().unwrap(), vec![a.clone()]);
        let path = store.dir().join(format!("{}.json", a.uuid));
        let mut text = fs::read_to_string(&path).unwrap();
        let at = text.find("\"proposal\": \"").unwrap() + 14;
        text.replace_range(at..at + 2, "zz");
        fs::write(&path, text).unwrap();
        assert!(matches!(
            store.get(&a.uuid),
            Err(MarketError::BadRecord { .. })
        ));
        assert!(store.list().is_err());
    }
}
