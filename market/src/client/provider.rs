//! Where a provider answers, as its miner announces it on chain (`ChangePeerInfo`, read back
//! through `state_minerInfo`): the market host's libp2p peer id and listen addresses
//! (`/ip4/A/tcp/P`), its HTTP retrieval server (`/ip4/A/tcp/Q/http`, `/dns/host/tcp/Q/http`,
//! `…/tls/http` or `…/https`), and the worker key that signs its asks and deal responses.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use lode_chain::crypto::PublicKey;
use lode_chain::types::ActorId;
use lode_node::rpc::types::MinerInfoView;

use crate::error::{MarketError, MarketResult};

/// A provider's market endpoints and keys, from its miner's chain record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderAddrs {
    /// The miner actor.
    pub miner: ActorId,
    /// Its market host's peer id.
    pub peer_id: PeerId,
    /// The market host's libp2p addresses (every announced address that is not an HTTP one).
    pub libp2p: Vec<Multiaddr>,
    /// The retrieval server's base URL (`http://A:Q`), from the first announced `/http` or
    /// `/https` address.
    pub retrieval_url: Option<String>,
    /// The worker key: asks and deal responses are signed with it.
    pub worker_key: PublicKey,
    /// The miner's sector size in bytes (no piece is larger).
    pub sector_size: u64,
}

impl ProviderAddrs {
    /// Reads a miner's chain record. Addresses that do not parse, and libp2p addresses naming
    /// another peer (`/p2p/<other>`), are skipped.
    ///
    /// # Errors
    /// [`MarketError::Provider`] when the miner announced no peer id or an invalid one, or its
    /// worker key does not decode.
    pub fn from_miner_info(info: &MinerInfoView) -> MarketResult<ProviderAddrs> {
        let miner = info.miner;
        let bad = |why: String| MarketError::Provider { miner, why };
        let worker_key = PublicKey::from_bytes(&info.worker_key)
            .map_err(|e| bad(format!("its worker key on chain does not decode: {e}")))?;
        let Some(peer) = info.peer_id.as_deref() else {
            return Err(bad(
                "it has announced no market peer id on chain: it takes no deals yet (its operator announces it when `lode provider run` starts the market)"
                    .into(),
            ));
        };
        let peer_id: PeerId = peer
            .parse()
            .map_err(|e| bad(format!("its announced peer id {peer:?} is not valid: {e}")))?;
        let mut libp2p = Vec::new();
        let mut retrieval_url = None;
        for text in &info.multiaddrs {
            let Ok(addr) = text.parse::<Multiaddr>() else {
                tracing::debug!(%miner, addr = %text, "announced address skipped: not a multiaddr");
                continue;
            };
            if let Some(url) = http_url(&addr) {
                retrieval_url.get_or_insert(url);
            } else if is_http(&addr) {
                tracing::debug!(%miner, %addr, "announced HTTP address skipped: no host and port");
            } else if names_other_peer(&addr, &peer_id) {
                tracing::debug!(%miner, %addr, "announced address skipped: another peer's");
            } else {
                libp2p.push(addr);
            }
        }
        Ok(ProviderAddrs {
            miner,
            peer_id,
            libp2p,
            retrieval_url,
            worker_key,
            sector_size: info.sector_size_bytes,
        })
    }

    /// The libp2p addresses, at least one.
    ///
    /// # Errors
    /// [`MarketError::Provider`] when the miner announced none.
    pub fn dial_addrs(&self) -> MarketResult<Vec<Multiaddr>> {
        if self.libp2p.is_empty() {
            return Err(MarketError::Provider {
                miner: self.miner,
                why: "it has announced no libp2p address for its market host on chain: it cannot be reached for asks and deals".into(),
            });
        }
        Ok(self.libp2p.clone())
    }

    /// The retrieval server's base URL.
    ///
    /// # Errors
    /// [`MarketError::Provider`] when the miner announced none (pass the URL yourself).
    pub fn retrieval(&self) -> MarketResult<&str> {
        self.retrieval_url.as_deref().ok_or_else(|| MarketError::Provider {
            miner: self.miner,
            why: "it has announced no HTTP retrieval address (`/ip4/…/tcp/…/http`) on chain: pass its retrieval URL with --url".into(),
        })
    }
}

/// Whether `addr` ends in an HTTP protocol (`/http`, `/https`).
fn is_http(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::Http | Protocol::Https))
}

fn names_other_peer(addr: &Multiaddr, peer: &PeerId) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::P2p(other) if other != *peer))
}

/// The base URL of an HTTP multiaddr: `/ip4/A/tcp/P/http` → `http://A:P`, `/ip6/A/tcp/P/http` →
/// `http://[A]:P`, `/dns/host/tcp/P/http` (and `dns4`, `dns6`) → `http://host:P`, with `/https`
/// or `/tls/http` → `https://…`. `None` for any other form.
pub fn http_url(addr: &Multiaddr) -> Option<String> {
    let mut parts = addr.iter();
    let host = match parts.next()? {
        Protocol::Ip4(ip) => ip.to_string(),
        Protocol::Ip6(ip) => format!("[{ip}]"),
        Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) => h.to_string(),
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else {
        return None;
    };
    let scheme = match parts.next()? {
        Protocol::Http => "http",
        Protocol::Https => "https",
        Protocol::Tls => match parts.next()? {
            Protocol::Http => "https",
            _ => return None,
        },
        _ => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(format!("{scheme}://{host}:{port}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lode_chain::crypto::SecretKey;
    use lode_chain::types::TokenAmount;
    use lode_proofs::sector::SectorSize;

    use super::*;

    fn info(peer: Option<String>, addrs: &[&str]) -> MinerInfoView {
        MinerInfoView {
            miner: ActorId(1000),
            owner: ActorId(101),
            worker: ActorId(102),
            worker_key: SecretKey::from_seed(&[7; 32])
                .public_key()
                .to_bytes()
                .to_vec(),
            sector_size: SectorSize::S2KiB,
            sector_size_bytes: 2048,
            partition_sectors: 2,
            peer_id: peer,
            multiaddrs: addrs.iter().map(|a| a.to_string()).collect(),
            balance: TokenAmount::ZERO,
            available: TokenAmount::ZERO,
            pre_commit_deposits: TokenAmount::ZERO,
            initial_pledge: TokenAmount::ZERO,
            locked_funds: TokenAmount::ZERO,
            fee_debt: TokenAmount::ZERO,
            proving_period_start: 0,
            current_deadline: 0,
            consensus_fault_elapsed: None,
        }
    }

    #[test]
    fn announced_addresses_split_into_libp2p_and_retrieval() {
        let peer = PeerId::random();
        let other = PeerId::random();
        let p = ProviderAddrs::from_miner_info(&info(
            Some(peer.to_string()),
            &[
                "/ip4/10.0.0.5/tcp/4001",
                "/ip4/10.0.0.5/tcp/8080/http",
                "/dns/sp.example.org/tcp/443/https",
                &format!("/ip4/10.0.0.6/tcp/4001/p2p/{peer}"),
                &format!("/ip4/10.0.0.7/tcp/4001/p2p/{other}"),
                "not a multiaddr",
            ],
        ))
        .unwrap();
        assert_eq!(p.miner, ActorId(1000));
        assert_eq!(p.peer_id, peer);
        assert_eq!(
            p.libp2p,
            vec![
                "/ip4/10.0.0.5/tcp/4001".parse::<Multiaddr>().unwrap(),
                format!("/ip4/10.0.0.6/tcp/4001/p2p/{peer}")
                    .parse()
                    .unwrap(),
            ]
        );
        // The first HTTP address wins.
        assert_eq!(p.retrieval_url.as_deref(), Some("http://10.0.0.5:8080"));
        assert_eq!(p.retrieval().unwrap(), "http://10.0.0.5:8080");
        assert_eq!(p.worker_key, SecretKey::from_seed(&[7; 32]).public_key());
        assert_eq!(p.sector_size, 2048);
    }

    #[test]
    fn http_multiaddrs_become_urls() {
        let url = |s: &str| http_url(&s.parse().unwrap());
        assert_eq!(
            url("/ip4/1.2.3.4/tcp/80/http").as_deref(),
            Some("http://1.2.3.4:80")
        );
        assert_eq!(
            url("/ip6/::1/tcp/8080/http").as_deref(),
            Some("http://[::1]:8080")
        );
        assert_eq!(
            url("/dns/sp.example.org/tcp/8443/https").as_deref(),
            Some("https://sp.example.org:8443")
        );
        assert_eq!(
            url("/dns4/sp.example.org/tcp/443/tls/http").as_deref(),
            Some("https://sp.example.org:443")
        );
        assert_eq!(url("/ip4/1.2.3.4/tcp/80"), None);
        assert_eq!(url("/ip4/1.2.3.4/udp/80/http"), None);
        assert_eq!(url("/tcp/80/http"), None);
        assert_eq!(url("/ip4/1.2.3.4/tcp/80/http/p2p-circuit"), None);
    }

    #[test]
    fn a_provider_without_peer_id_or_addresses_says_what_is_missing() {
        let e = ProviderAddrs::from_miner_info(&info(None, &[])).unwrap_err();
        assert!(e.to_string().contains("no market peer id"), "{e}");
        let e = ProviderAddrs::from_miner_info(&info(Some("nonsense".into()), &[])).unwrap_err();
        assert!(e.to_string().contains("not valid"), "{e}");
        let p =
            ProviderAddrs::from_miner_info(&info(Some(PeerId::random().to_string()), &[])).unwrap();
        assert!(
            p.dial_addrs()
                .unwrap_err()
                .to_string()
                .contains("no libp2p address")
        );
        assert!(p.retrieval().unwrap_err().to_string().contains("--url"));
        let p = ProviderAddrs::from_miner_info(&info(
            Some(PeerId::random().to_string()),
            &["/ip4/1.2.3.4/tcp/1/http"],
        ))
        .unwrap();
        assert!(p.libp2p.is_empty());
        let mut bad_key = info(Some(PeerId::random().to_string()), &[]);
        bad_key.worker_key = vec![1, 2, 3];
        assert!(ProviderAddrs::from_miner_info(&bad_key).is_err());
    }
}
