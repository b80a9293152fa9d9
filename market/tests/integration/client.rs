//! The client's side against a real provider: a `DealProvider` served on a real libp2p host and
//! ticking on its own, found through its miner's chain record (the fake chain's), and a real
//! retrieval server over a `DirPieces`. The client imports a directory, asks, proposes, serves
//! or pushes the CAR, waits for the publication and follows the deal on chain; then retrieves
//! the piece and unpacks it byte-identical, and refuses corrupted bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use libp2p::identity::Keypair;
use lode_chain::types::{ActorId, TokenAmount};
use lode_market::MarketError;
use lode_market::client::deal::{DealTerms, PieceSpec, TransferChoice};
use lode_market::client::retrieve::RetrievedOutput;
use lode_market::client::{
    ClientDealState, ClientDealStore, DealClient, ProviderAddrs, RetrievalTarget, RetrieveRequest,
    client_host, refresh_deals, retrieve,
};
use lode_market::deal::Rejection;
use lode_market::deal::policy::DealPolicyConfig;
use lode_market::import::{ImportOptions, ImportRecord, ImportStore};
use lode_market::net::{HostConfig, MarketHost, PushOptions};
use lode_market::provider::records::{DealRecords, DealStatus};
use lode_market::provider::service::{DealProvider, ProviderConfig};
use lode_market::retrieval::{DirPieces, RetrievalConfig, serve};
use lode_market::transfer::Scratch;

use crate::common::*;

type Provider = DealProvider<FakeChain, FakePublisher, FakeSealing>;

/// A provider on a real libp2p host, ticking every 20 ms, announced on the fake chain.
struct World {
    chain: FakeChain,
    sealing: FakeSealing,
    service: Arc<Provider>,
    _host: MarketHost,
    stop: tokio::sync::watch::Sender<bool>,
    dir: tempfile::TempDir,
}

impl World {
    async fn new(mut config: ProviderConfig) -> World {
        // The fake chain's clock stands still: a lone deal is published without waiting for
        // others to share its message.
        config.publish_wait_epochs = 0;
        let dir = tempfile::tempdir().unwrap();
        let chain = FakeChain::new();
        let sealing = FakeSealing::new();
        let service = Arc::new(DealProvider::new(
            config,
            worker_key(),
            chain.clone(),
            FakePublisher::new(&chain),
            sealing.clone(),
            DealRecords::open(dir.path().join("deals")).unwrap(),
            Scratch::open(dir.path().join("scratch")).unwrap(),
        ));
        service.set_ask(ask());
        let host = MarketHost::serve(
            HostConfig::new(
                Keypair::generate_ed25519(),
                vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ),
            service.clone(),
        )
        .await
        .unwrap();
        let mut addrs: Vec<String> = host
            .listen_addrs()
            .await
            .unwrap()
            .iter()
            .map(|a| a.to_string())
            .collect();
        addrs.push("/ip4/127.0.0.1/tcp/9/http".into());
        chain.announce(MINER, &worker_key(), &host.peer_id(), &addrs);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(service.clone().run(Duration::from_millis(20), stop_rx));
        World {
            chain,
            sealing,
            service,
            _host: host,
            stop,
            dir,
        }
    }

    async fn client(&self) -> DealClient<FakeChain> {
        DealClient::new(
            self.chain.clone(),
            client_host().await.unwrap(),
            client_key(),
            ClientDealStore::open(self.dir.path().join("client")).unwrap(),
        )
    }

    fn imports(&self) -> ImportStore {
        ImportStore::open(self.dir.path().join("client")).unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A small directory tree, imported.
fn import_tree(store: &ImportStore, root: &Path, seed: u8) -> (PathBuf, ImportRecord) {
    let src = root.join(format!("tree-{seed}"));
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("README"), format!("tree {seed}\n")).unwrap();
    std::fs::write(src.join("a/b/data.bin"), payload(300_000, seed)).unwrap();
    std::fs::write(src.join("a/empty.txt"), b"").unwrap();
    let record = store
        .import(&src, &ImportOptions::default(), &mut |_| {})
        .unwrap();
    (src, record)
}

/// Relative path → contents (`None` for a directory).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                todo.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn serve_locally() -> TransferChoice {
    TransferChoice::Serve {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_host: None,
    }
}

#[tokio::test]
async fn the_client_finds_the_provider_on_chain_and_checks_its_ask() {
    let world = World::new(provider_config()).await;
    let client = world.client().await;
    let provider = client.provider(MINER).await.unwrap();
    assert_eq!(
        provider.retrieval_url.as_deref(),
        Some("http://127.0.0.1:9")
    );
    assert!(!provider.libp2p.is_empty());
    let signed = client.query_ask(&provider).await.unwrap();
    assert_eq!(signed.ask, ask());
    // A chain record naming another worker key: the ask's signature does not verify.
    let mut forged = provider.clone();
    forged.worker_key = client_key().public_key();
    assert!(matches!(
        client.query_ask(&forged).await,
        Err(MarketError::BadSignature { .. })
    ));
    // A miner that announced nothing cannot be asked.
    let mut info = world.chain.0.miners.lock().unwrap()[&MINER].clone();
    info.peer_id = None;
    let e = ProviderAddrs::from_miner_info(&info).unwrap_err();
    assert!(e.to_string().contains("no market peer id"), "{e}");
}

#[tokio::test]
async fn a_deal_served_by_the_client_is_pulled_published_and_followed_to_its_end() {
    let world = World::new(provider_config()).await;
    let client = world.client().await;
    let imports = world.imports();
    let (_, record) = import_tree(&imports, world.dir.path(), 1);
    let piece = PieceSpec::from_import(&imports, &record);
    let car = std::fs::read(piece.car.as_ref().unwrap()).unwrap();

    // Not enough escrow: refused before anything is sent or recorded, naming what to run.
    world
        .chain
        .0
        .escrow
        .lock()
        .unwrap()
        .get_mut(&CLIENT)
        .unwrap()
        .balance = TokenAmount(10);
    let e = client
        .propose(MINER, &piece, &DealTerms::new(1000), serve_locally())
        .await
        .unwrap_err();
    assert!(matches!(e, MarketError::InsufficientEscrow { .. }), "{e}");
    assert!(e.to_string().contains("`lode client balance add "), "{e}");
    assert!(client.deals().list().unwrap().is_empty());
    world
        .chain
        .0
        .escrow
        .lock()
        .unwrap()
        .get_mut(&CLIENT)
        .unwrap()
        .balance = TokenAmount::tokens(1000);

    let mut proposed = client
        .propose(MINER, &piece, &DealTerms::new(1000), serve_locally())
        .await
        .unwrap();
    let uuid = proposed.deal.uuid;
    assert_eq!(proposed.deal.state, ClientDealState::Transferring);
    assert!(proposed.served.is_some());
    let p = proposed.deal.proposal.proposal.clone();
    assert_eq!(
        p.start_epoch,
        world.chain.head() + 240,
        "one devnet proving period"
    );
    assert_eq!(
        p.provider_collateral,
        TokenAmount(1200),
        "the floor plus a fifth"
    );
    assert_eq!(p.label, record.payload_root.to_string());
    // The provider took it under the same UUID.
    assert!(world.service.records().get(&uuid).unwrap().is_some());

    let deal = client
        .wait_published(
            &uuid,
            Duration::from_secs(30),
            Duration::from_millis(50),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    proposed.served.take().unwrap().stop().await;
    assert_eq!(deal.state, ClientDealState::Published, "{:?}", deal.reason);
    let deal_id = deal.deal_id.unwrap();
    // What the provider pulled from the client's server is the CAR, to the byte.
    let provider_deal = loop {
        let r = world.service.records().get(&uuid).unwrap().unwrap();
        if r.status == DealStatus::HandedOff || r.status == DealStatus::Sealing {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(provider_deal.deal_id, Some(deal_id));
    assert_eq!(world.sealing.0.pieces.lock().unwrap()[&deal_id].1, car);

    // The chain then says: sealing, active, and at its end expired.
    let deals = refresh_deals(world.chain(), client.deals()).await.unwrap();
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0].state, ClientDealState::Sealing);
    {
        let mut on_chain = world.chain.0.deals.lock().unwrap();
        let d = on_chain.get_mut(&deal_id).unwrap();
        d.state.sector = Some(10);
        d.state.activation_epoch = Some(world.chain.head());
    }
    let deals = refresh_deals(world.chain(), client.deals()).await.unwrap();
    assert_eq!(deals[0].state, ClientDealState::Active);
    assert_eq!(deals[0].sector, Some(10));
    assert_eq!(deals[0].activation_epoch, Some(world.chain.head()));
    world.chain.advance(p.end_epoch - world.chain.head());
    world.chain.0.deals.lock().unwrap().remove(&deal_id);
    let deals = refresh_deals(world.chain(), client.deals()).await.unwrap();
    assert_eq!(deals[0].state, ClientDealState::Expired);
    // The records survive a reopen.
    let reopened = ClientDealStore::open(world.dir.path().join("client")).unwrap();
    assert_eq!(reopened.list().unwrap(), deals);
}

#[tokio::test]
async fn a_pushed_deal_is_published() {
    let world = World::new(provider_config()).await;
    let client = world.client().await;
    let imports = world.imports();
    let (_, record) = import_tree(&imports, world.dir.path(), 2);
    let piece = PieceSpec::from_import(&imports, &record);
    let car_path = piece.car.clone().unwrap();
    let mut proposed = client
        .propose(MINER, &piece, &DealTerms::new(1000), TransferChoice::Push)
        .await
        .unwrap();
    assert!(proposed.served.is_none());
    client
        .push(&mut proposed, &car_path, PushOptions::default())
        .await
        .unwrap();
    let deal = client
        .wait_published(
            &proposed.deal.uuid,
            Duration::from_secs(30),
            Duration::from_millis(50),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(deal.state, ClientDealState::Published, "{:?}", deal.reason);
    let id = deal.deal_id.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !world.sealing.0.pieces.lock().unwrap().contains_key(&id) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(
        world.sealing.0.pieces.lock().unwrap()[&id].1,
        std::fs::read(&car_path).unwrap()
    );
}

#[tokio::test]
async fn a_rejection_reaches_the_client_with_its_reason_and_is_recorded() {
    let mut config = provider_config();
    config.policy = DealPolicyConfig {
        denied_clients: [CLIENT].into(),
        ..config.policy
    };
    let world = World::new(config).await;
    let client = world.client().await;
    let imports = world.imports();
    let (_, record) = import_tree(&imports, world.dir.path(), 3);
    let piece = PieceSpec::from_import(&imports, &record);
    let e = client
        .propose(MINER, &piece, &DealTerms::new(1000), serve_locally())
        .await
        .unwrap_err();
    assert!(
        matches!(e, MarketError::Rejected(Rejection::ClientDenied(c)) if c == CLIENT),
        "{e}"
    );
    assert!(e.to_string().contains("does not take deals from"), "{e}");
    let deals = client.deals().list().unwrap();
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0].state, ClientDealState::Failed);
    assert!(
        deals[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("rejected by the provider"),
        "{:?}",
        deals[0].reason
    );
    assert!(world.service.records().list().unwrap().is_empty());
    // A miner with no chain record cannot be proposed to.
    assert!(
        client
            .propose(ActorId(7), &piece, &DealTerms::new(1000), serve_locally())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_accepted_deal_never_published_fails_after_its_start() {
    let mut config = provider_config();
    // The provider's pull can never succeed: the client's server is gone right after acceptance.
    config.transfer.max_attempts = 1;
    config.transfer.overall_timeout_secs = 2;
    let world = World::new(config).await;
    let client = world.client().await;
    let imports = world.imports();
    let (_, record) = import_tree(&imports, world.dir.path(), 4);
    let piece = PieceSpec::from_import(&imports, &record);
    let mut proposed = client
        .propose(MINER, &piece, &DealTerms::new(1000), serve_locally())
        .await
        .unwrap();
    proposed.served.take().unwrap().stop().await;
    let deal = client
        .wait_published(
            &proposed.deal.uuid,
            Duration::from_millis(300),
            Duration::from_millis(50),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(deal.state, ClientDealState::Transferring);
    world
        .chain
        .advance(proposed.deal.proposal.proposal.start_epoch - world.chain.head());
    let deals = refresh_deals(world.chain(), client.deals()).await.unwrap();
    assert_eq!(deals[0].state, ClientDealState::Failed);
    assert!(
        deals[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("not published by its start epoch"),
        "{:?}",
        deals[0].reason
    );
}

impl World {
    fn chain(&self) -> &FakeChain {
        &self.chain
    }
}

#[tokio::test]
async fn a_directory_comes_back_byte_identical_from_the_retrieval_server() {
    let dir = tempfile::tempdir().unwrap();
    let imports = ImportStore::open(dir.path().join("client")).unwrap();
    let deals = ClientDealStore::open(dir.path().join("client")).unwrap();
    let (src, record) = import_tree(&imports, dir.path(), 5);
    // The provider holds the CAR as the piece's payload.
    let pieces = DirPieces::new(dir.path().join("pieces"));
    std::fs::create_dir_all(dir.path().join("pieces")).unwrap();
    let car = imports.car_path(&record);
    std::fs::copy(&car, pieces.path(&record.piece_cid)).unwrap();
    let server = serve(&RetrievalConfig::default(), Arc::new(pieces))
        .await
        .unwrap();

    // By payload root: resolved through the import store; unpacked, every block checked.
    let root = record.payload_root;
    let target = RetrievalTarget::resolve(&deals, Some(&imports), &root).unwrap();
    assert_eq!(target.piece_cid, record.piece_cid);
    let out = dir.path().join("out");
    let got = retrieve(&target.request(server.url(), &out), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(got.piece_size, record.padded_piece_size);
    assert!(matches!(
        got.output,
        RetrievedOutput::Unpacked {
            is_directory: true,
            ..
        }
    ));
    assert_eq!(tree(&out), tree(&src));

    // By piece CID alone, nothing known locally: the size is found from the data; the CAR
    // itself is written.
    let cid = lode_market::cid::piece_to_cid(&record.piece_cid);
    let empty = ClientDealStore::open(dir.path().join("other")).unwrap();
    let target = RetrievalTarget::resolve(&empty, None, &cid).unwrap();
    assert_eq!(target.piece_size, None);
    let out_car = dir.path().join("out.car");
    let mut request = target.request(server.url(), &out_car);
    request.as_car = true;
    let got = retrieve(&request, &mut |_, _| {}).await.unwrap();
    assert_eq!(got.piece_size, record.padded_piece_size);
    assert_eq!(got.output, RetrievedOutput::Car);
    assert_eq!(
        std::fs::read(&out_car).unwrap(),
        std::fs::read(&car).unwrap()
    );

    // An output that exists is refused before anything is fetched; an unknown piece is a 404;
    // a payload root nobody knows cannot be resolved.
    assert!(matches!(
        retrieve(&request, &mut |_, _| {}).await,
        Err(MarketError::OutputExists(_))
    ));
    let unknown = lode_proofs::cid::PieceCid::new(lode_proofs::node::trunc254([3; 32])).unwrap();
    let e = retrieve(
        &RetrieveRequest::new(server.url(), unknown, dir.path().join("none")),
        &mut |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    assert!(RetrievalTarget::resolve(&empty, None, &root).is_err());
}

/// A server answering `/piece/{cid}` with `body`, whatever the CID.
async fn fixed_server(body: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new().route(
        "/piece/{cid}",
        get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn corrupted_or_oversized_data_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let imports = ImportStore::open(dir.path().join("client")).unwrap();
    let deals = ClientDealStore::open(dir.path().join("client")).unwrap();
    let (_, record) = import_tree(&imports, dir.path(), 6);
    let car = std::fs::read(imports.car_path(&record)).unwrap();
    let target = RetrievalTarget::resolve(&deals, Some(&imports), &record.payload_root).unwrap();
    let outdir = dir.path().join("outs");
    std::fs::create_dir_all(&outdir).unwrap();

    // One flipped byte: the commitment does not match.
    let mut bad = car.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    let (url, task) = fixed_server(bad).await;
    let out = outdir.join("out");
    let e = retrieve(&target.request(&url, &out), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(e, MarketError::Retrieval(_)), "{e}");
    assert!(e.to_string().contains("does not match piece"), "{e}");
    task.abort();
    // Without the piece size too.
    let (url, task) = fixed_server({
        let mut b = car.clone();
        b[at] ^= 1;
        b
    })
    .await;
    let e = retrieve(
        &RetrieveRequest::new(&url, record.piece_cid, &out),
        &mut |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("does not match piece"), "{e}");
    task.abort();

    // More bytes than the piece holds: refused as they arrive.
    let mut long = car.clone();
    long.resize(record.padded_piece_size as usize, 7);
    let (url, task) = fixed_server(long).await;
    let e = retrieve(&target.request(&url, &out), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("more than the piece can hold"),
        "{e}"
    );
    task.abort();

    // A short body: refused.
    let (url, task) = fixed_server(car[..car.len() - 1].to_vec()).await;
    let e = retrieve(&target.request(&url, &out), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(e, MarketError::Retrieval(_)), "{e}");
    task.abort();

    // Nothing at the output, no temporary file left.
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(&outdir).unwrap().count(), 0);

    // The same server with the right bytes and the piece's zero padding after them: accepted,
    // the padding cut off, the files unpacked.
    let mut padded = car.clone();
    padded.resize(car.len() + 1000, 0);
    let (url, task) = fixed_server(padded).await;
    let got = retrieve(&target.request(&url, &out), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(got.payload_size, car.len() as u64);
    assert!(out.join("a/b/data.bin").exists());
    task.abort();
}
