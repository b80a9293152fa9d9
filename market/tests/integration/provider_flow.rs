//! The provider's deal service from acceptance to activation, with real HTTP transfers and a
//! fake chain, message sender and sealing pipeline; the records reopened mid-way (a crash) at
//! each stage must resume without publishing anything twice.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use lode_market::deal::{DealDecision, DealRequest, DealUuid};
use lode_market::provider::records::{DealRecords, DealStatus, ProviderDeal};
use lode_market::provider::service::{DealProvider, ProviderConfig};
use lode_market::transfer::Scratch;

use crate::common::*;

type Provider = DealProvider<FakeChain, FakePublisher, FakeSealing>;

struct World {
    chain: FakeChain,
    publisher: FakePublisher,
    sealing: FakeSealing,
}

impl World {
    fn new() -> World {
        let chain = FakeChain::new();
        World {
            publisher: FakePublisher::new(&chain),
            sealing: FakeSealing::new(),
            chain,
        }
    }

    /// A provider over the records and scratch in `dir` (opened anew each time: a restart).
    fn provider(&self, dir: &Path) -> Arc<Provider> {
        self.provider_with(dir, provider_config())
    }

    fn provider_with(&self, dir: &Path, config: ProviderConfig) -> Arc<Provider> {
        let service = Arc::new(DealProvider::new(
            config,
            worker_key(),
            self.chain.clone(),
            self.publisher.clone(),
            self.sealing.clone(),
            DealRecords::open(dir.join("deals")).unwrap(),
            Scratch::open(dir.join("scratch")).unwrap(),
        ));
        service.set_ask(ask());
        service
    }
}

async fn propose(service: &Provider, req: &DealRequest) {
    let response = service.handle_deal(PeerId::random(), req.clone()).await;
    assert_eq!(
        response.response.decision,
        DealDecision::Accepted,
        "{response:?}"
    );
}

fn record(service: &Provider, uuid: &DealUuid) -> ProviderDeal {
    service.records().get(uuid).unwrap().unwrap()
}

/// Ticks until `uuid` reaches `status` (or fails the test after 20 s).
async fn tick_until(service: &Arc<Provider>, uuid: &DealUuid, status: DealStatus) -> ProviderDeal {
    let started = Instant::now();
    loop {
        service.tick().await.unwrap();
        let r = record(service, uuid);
        if r.status == status {
            return r;
        }
        assert!(
            r.status != DealStatus::Failed || status == DealStatus::Failed,
            "deal failed: {:?}",
            r.error
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "deal stuck in {} waiting for {status}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Closes a provider as a crash would leave it: transfers stopped, nothing else done.
async fn crash(service: Arc<Provider>) {
    service.stop().await;
    assert_eq!(Arc::strong_count(&service), 1);
    drop(service);
}

#[tokio::test]
async fn deals_go_from_acceptance_to_active_in_one_publication() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let service = world.provider(dir.path());
    let a = payload(200_000, 1);
    let b = payload(50_000, 2);
    let server_a = TestServer::start(ServerState {
        data: a.clone(),
        cuts_left: 5.into(),
        rng: 99.into(),
        ..ServerState::default()
    })
    .await;
    let server_b = TestServer::start(ServerState {
        data: b.clone(),
        ..ServerState::default()
    })
    .await;
    let head = world.chain.head();
    let req_a = request(
        proposal(&a, 256 * 1024, head + 100),
        &server_a.url("/file"),
        200_000,
    );
    let req_b = request(
        proposal(&b, 128 * 1024, head + 100),
        &server_b.url("/file"),
        50_000,
    );
    propose(&service, &req_a).await;
    propose(&service, &req_b).await;
    // Both transferred, then published together (the batch holds two).
    let ra = tick_until(&service, &req_a.uuid, DealStatus::HandedOff).await;
    let rb = tick_until(&service, &req_b.uuid, DealStatus::HandedOff).await;
    // The pipeline copied the payloads: the market's scratch is empty.
    assert_eq!(
        std::fs::read_dir(service.scratch().dir()).unwrap().count(),
        0
    );
    let signed = world.publisher.0.signed.lock().unwrap().clone();
    assert_eq!(signed.len(), 1, "one message for both deals");
    assert_eq!(
        ra.publish.as_ref().unwrap().id,
        rb.publish.as_ref().unwrap().id
    );
    let (id_a, id_b) = (ra.deal_id.unwrap(), rb.deal_id.unwrap());
    assert_ne!(id_a, id_b);
    // The sealing pipeline got the payloads as they were served.
    {
        let pieces = world.sealing.0.pieces.lock().unwrap();
        assert_eq!(pieces[&id_a].1, a);
        assert_eq!(pieces[&id_b].1, b);
        assert_eq!(Some(pieces[&id_a].0), ra.sector);
    }
    // Sealing starts, then the chain activates the deals.
    *world.sealing.0.state.lock().unwrap() = "sealing".into();
    tick_until(&service, &req_a.uuid, DealStatus::Sealing).await;
    for (id, r) in [(id_a, &ra), (id_b, &rb)] {
        world
            .chain
            .0
            .deals
            .lock()
            .unwrap()
            .get_mut(&id)
            .unwrap()
            .state
            .sector = r.sector;
    }
    tick_until(&service, &req_a.uuid, DealStatus::Active).await;
    tick_until(&service, &req_b.uuid, DealStatus::Active).await;
    // The chain forgets a deal that ended: expired; one that left early: slashed.
    world.chain.0.deals.lock().unwrap().remove(&id_b);
    tick_until(&service, &req_b.uuid, DealStatus::Slashed).await;
    world.chain.advance(3000);
    world.chain.0.deals.lock().unwrap().remove(&id_a);
    tick_until(&service, &req_a.uuid, DealStatus::Expired).await;
    assert_eq!(world.publisher.0.signed.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_commp_mismatch_fails_the_deal_and_removes_its_data() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let service = world.provider(dir.path());
    let served = payload(100_000, 3);
    let claimed = payload(100_000, 4);
    let server = TestServer::start(ServerState {
        data: served,
        ..ServerState::default()
    })
    .await;
    let req = request(
        proposal(&claimed, 128 * 1024, world.chain.head() + 100),
        &server.url("/file"),
        100_000,
    );
    propose(&service, &req).await;
    let r = tick_until(&service, &req.uuid, DealStatus::Failed).await;
    assert!(
        r.error.as_ref().unwrap().contains("does not match"),
        "{:?}",
        r.error
    );
    assert!(!service.scratch().payload(&req.uuid).exists());
    assert!(!service.scratch().progress(&req.uuid).exists());
    world.chain.advance(10);
    service.tick().await.unwrap();
    assert!(world.publisher.0.signed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn transfer_failures_fail_the_deal_with_the_reason() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = provider_config();
    config.transfer.attempt_timeout_ms = 200;
    config.transfer.max_attempts = 3;
    let service = world.provider_with(dir.path(), config);
    let data = payload(100_000, 5);
    let long = TestServer::start(ServerState {
        data: data.clone(),
        extra: 1,
        ..ServerState::default()
    })
    .await;
    let silent = TestServer::start(ServerState::default()).await;
    let head = world.chain.head();
    let too_long = request(
        proposal(&data, 128 * 1024, head + 100),
        &long.url("/file"),
        100_000,
    );
    // A server that never answers: the provider's attempts time out (200 ms, 3 attempts).
    let never = request(
        proposal(&data, 128 * 1024, head + 100),
        &silent.url("/never"),
        100_000,
    );
    propose(&service, &too_long).await;
    propose(&service, &never).await;
    let r = tick_until(&service, &too_long.uuid, DealStatus::Failed).await;
    assert!(
        r.error.as_ref().unwrap().contains("more than"),
        "{:?}",
        r.error
    );
    assert!(!service.scratch().payload(&too_long.uuid).exists());
    let r = tick_until(&service, &never.uuid, DealStatus::Failed).await;
    assert!(
        r.error.as_ref().unwrap().contains("no answer"),
        "{:?}",
        r.error
    );
    assert!(!service.scratch().payload(&never.uuid).exists());
    assert!(world.publisher.0.signed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_restart_mid_transfer_resumes_from_the_progress_file() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let data = payload(1_000_000, 6);
    let server = TestServer::start(ServerState {
        data: data.clone(),
        delay_ms: 30,
        ..ServerState::default()
    })
    .await;
    let req = request(
        proposal(&data, 1 << 20, world.chain.head() + 100),
        &server.url("/file"),
        1_000_000,
    );
    let service = world.provider(dir.path());
    propose(&service, &req).await;
    service.tick().await.unwrap();
    let started = Instant::now();
    while server.state.gets.load(Ordering::SeqCst) < 4
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    crash(service).await;
    let before = server.state.gets.load(Ordering::SeqCst);
    let service = world.provider(dir.path());
    let r = record(&service, &req.uuid);
    assert_eq!(r.status, DealStatus::Transferring);
    assert!(service.scratch().progress(&req.uuid).exists());
    tick_until(&service, &req.uuid, DealStatus::Transferred).await;
    world.chain.advance(3);
    tick_until(&service, &req.uuid, DealStatus::HandedOff).await;
    let total = server.state.gets.load(Ordering::SeqCst);
    // 16 chunks: the restart asked again for at most the chunks that were in flight.
    assert!(
        total <= 16 + 3,
        "{before} GETs before the restart, {total} in all"
    );
    assert_eq!(
        world
            .sealing
            .0
            .pieces
            .lock()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .1,
        data
    );
}

#[tokio::test]
async fn a_crash_between_recording_and_pushing_the_publication_never_publishes_twice() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let data = payload(10_000, 7);
    let server = TestServer::start(ServerState {
        data: data.clone(),
        ..ServerState::default()
    })
    .await;
    let req = request(
        proposal(&data, 16 * 1024, world.chain.head() + 100),
        &server.url("/file"),
        10_000,
    );
    world
        .publisher
        .0
        .crash_before_push
        .store(true, Ordering::SeqCst);
    let service = world.provider(dir.path());
    propose(&service, &req).await;
    tick_until(&service, &req.uuid, DealStatus::Transferred).await;
    world.chain.advance(3);
    let r = tick_until(&service, &req.uuid, DealStatus::Publishing).await;
    assert_eq!(world.publisher.0.pushes.load(Ordering::SeqCst), 0);
    let recorded = r.publish.unwrap();
    crash(service).await;

    // Restarted: the recorded message is looked up, and pushed again only after
    // `republish_after_epochs`; never signed again.
    world
        .publisher
        .0
        .crash_before_push
        .store(false, Ordering::SeqCst);
    let service = world.provider(dir.path());
    service.tick().await.unwrap();
    assert_eq!(record(&service, &req.uuid).status, DealStatus::Publishing);
    assert_eq!(world.publisher.0.pushes.load(Ordering::SeqCst), 0);
    world.chain.advance(2);
    service.tick().await.unwrap();
    assert_eq!(world.publisher.0.pushes.load(Ordering::SeqCst), 1);
    let r = tick_until(&service, &req.uuid, DealStatus::HandedOff).await;
    assert_eq!(r.publish.unwrap().id, recorded.id);
    let signed = world.publisher.0.signed.lock().unwrap().clone();
    assert_eq!(signed.len(), 1, "the publication was signed once");
    assert_eq!(signed[0].id(), recorded.id);
}

#[tokio::test]
async fn a_recorded_publication_whose_nonce_another_message_took_is_published_anew_once() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let data = payload(10_000, 17);
    let server = TestServer::start(ServerState {
        data: data.clone(),
        ..ServerState::default()
    })
    .await;
    let req = request(
        proposal(&data, 16 * 1024, world.chain.head() + 100),
        &server.url("/file"),
        10_000,
    );
    world
        .publisher
        .0
        .crash_before_push
        .store(true, Ordering::SeqCst);
    let service = world.provider(dir.path());
    propose(&service, &req).await;
    tick_until(&service, &req.uuid, DealStatus::Transferred).await;
    world.chain.advance(3);
    let recorded = tick_until(&service, &req.uuid, DealStatus::Publishing)
        .await
        .publish
        .unwrap();
    crash(service).await;

    // Restarted; meanwhile the worker's next message (a Window PoSt, say) took the recorded
    // publication's nonce, so it can never be executed.
    world
        .publisher
        .0
        .crash_before_push
        .store(false, Ordering::SeqCst);
    world
        .publisher
        .0
        .chain_nonce
        .store(recorded.message.message.nonce + 1, Ordering::SeqCst);
    let service = world.provider(dir.path());
    service.tick().await.unwrap();
    assert_eq!(record(&service, &req.uuid).status, DealStatus::Publishing);
    // Due for a push again: found superseded instead, and back to `transferred`, with the note.
    world.chain.advance(2);
    service.tick().await.unwrap();
    let r = record(&service, &req.uuid);
    assert!(
        matches!(r.status, DealStatus::Transferred | DealStatus::Publishing)
            && r.publish.as_ref().is_none_or(|p| p.id != recorded.id),
        "{r:?}"
    );
    // Published in a new message, which lands; the old one never does.
    let r = tick_until(&service, &req.uuid, DealStatus::HandedOff).await;
    let signed = world.publisher.0.signed.lock().unwrap().clone();
    assert_eq!(signed.len(), 2, "signed anew once");
    assert_eq!(signed[0].id(), recorded.id);
    assert_eq!(r.publish.as_ref().unwrap().id, signed[1].id());
    assert!(signed[1].message.nonce > recorded.message.message.nonce);
    let landed = world.publisher.0.landed.lock().unwrap().clone();
    assert_eq!(landed.len(), 1, "one publication executed");
    assert!(!landed.contains_key(&recorded.id));
    assert_eq!(landed[&signed[1].id()], vec![r.deal_id.unwrap()]);
    assert_eq!(world.sealing.0.pieces.lock().unwrap().len(), 1);
    // Nothing more happens to it.
    for _ in 0..3 {
        world.chain.advance(10);
        service.tick().await.unwrap();
    }
    assert_eq!(world.publisher.0.signed.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_crash_after_publication_before_sealing_hands_the_piece_over_once() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let data = payload(10_000, 8);
    let server = TestServer::start(ServerState {
        data: data.clone(),
        ..ServerState::default()
    })
    .await;
    let req = request(
        proposal(&data, 16 * 1024, world.chain.head() + 100),
        &server.url("/file"),
        10_000,
    );
    world.sealing.0.fail.store(true, Ordering::SeqCst);
    let service = world.provider(dir.path());
    propose(&service, &req).await;
    tick_until(&service, &req.uuid, DealStatus::Transferred).await;
    world.chain.advance(3);
    let r = tick_until(&service, &req.uuid, DealStatus::Published).await;
    assert!(r.error.is_some(), "the failed hand-off is noted");
    crash(service).await;

    world.sealing.0.fail.store(false, Ordering::SeqCst);
    let service = world.provider(dir.path());
    let r = tick_until(&service, &req.uuid, DealStatus::HandedOff).await;
    assert!(r.error.is_none());
    service.tick().await.unwrap();
    assert_eq!(world.publisher.0.signed.lock().unwrap().len(), 1);
    assert_eq!(world.sealing.0.pieces.lock().unwrap().len(), 1);
    assert_eq!(
        world.sealing.0.pieces.lock().unwrap()[&r.deal_id.unwrap()].1,
        data
    );
    // The sealing pipeline has its copy: the market's is gone.
    assert!(!service.scratch().payload(&req.uuid).exists());
}

#[tokio::test]
async fn a_deal_whose_start_passes_before_publication_fails() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let data = payload(10_000, 9);
    let server = TestServer::start(ServerState {
        data: data.clone(),
        ..ServerState::default()
    })
    .await;
    let req = request(
        proposal(&data, 16 * 1024, world.chain.head() + 20),
        &server.url("/file"),
        10_000,
    );
    let service = world.provider(dir.path());
    propose(&service, &req).await;
    tick_until(&service, &req.uuid, DealStatus::Transferred).await;
    world.chain.advance(25);
    let r = tick_until(&service, &req.uuid, DealStatus::Failed).await;
    assert!(r.error.unwrap().contains("start epoch"));
    assert!(world.publisher.0.signed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_publication_that_never_lands_fails_after_the_start_epoch() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let data = payload(10_000, 10);
    let server = TestServer::start(ServerState {
        data: data.clone(),
        ..ServerState::default()
    })
    .await;
    let req = request(
        proposal(&data, 16 * 1024, world.chain.head() + 20),
        &server.url("/file"),
        10_000,
    );
    world
        .publisher
        .0
        .land_on_push
        .store(false, Ordering::SeqCst);
    let service = world.provider(dir.path());
    propose(&service, &req).await;
    tick_until(&service, &req.uuid, DealStatus::Transferred).await;
    world.chain.advance(3);
    tick_until(&service, &req.uuid, DealStatus::Publishing).await;
    // Pushed again while the start epoch is ahead ...
    world.chain.advance(5);
    service.tick().await.unwrap();
    assert_eq!(world.publisher.0.pushes.load(Ordering::SeqCst), 2);
    assert_eq!(record(&service, &req.uuid).status, DealStatus::Publishing);
    // ... and given up once it has passed: never signed again.
    world.chain.advance(20);
    let r = tick_until(&service, &req.uuid, DealStatus::Failed).await;
    assert!(r.error.unwrap().contains("never landed"));
    assert!(!service.scratch().payload(&req.uuid).exists());
    assert_eq!(world.publisher.0.signed.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_car_payload_is_block_indexed_when_handed_off_and_again_after_a_crash() {
    use lode_market::car::{CarFileWriter, index_car};
    use lode_market::unixfs::{DagParams, pack_path};
    use lode_proofs::cid::PieceCid;
    use lode_proofs::node::Node;

    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    // A directory packed into a CAR: the payload of the deal.
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a.bin"), payload(60_000, 11)).unwrap();
    std::fs::write(src.join("d/b.txt"), b"indexed").unwrap();
    let car_path = dir.path().join("payload.car");
    let mut w = CarFileWriter::new(std::fs::File::create(&car_path).unwrap(), &car_path).unwrap();
    let params = DagParams {
        chunk_size: 8192,
        max_links: 4,
    };
    let root = pack_path(&src, &mut w, &params, &mut |_| {})
        .unwrap()
        .root
        .cid;
    w.finish(&root).unwrap();
    let car = std::fs::read(&car_path).unwrap();
    let server = TestServer::start(ServerState {
        data: car.clone(),
        ..ServerState::default()
    })
    .await;
    let req = request(
        proposal(&car, 128 * 1024, world.chain.head() + 100),
        &server.url("/file"),
        car.len() as u64,
    );
    let piece = PieceCid::new(Node(req.proposal.proposal.piece_cid)).unwrap();
    // A non-CAR deal beside it: no index.
    let plain = payload(10_000, 12);
    let plain_server = TestServer::start(ServerState {
        data: plain.clone(),
        ..ServerState::default()
    })
    .await;
    let plain_req = request(
        proposal(&plain, 16 * 1024, world.chain.head() + 100),
        &plain_server.url("/file"),
        10_000,
    );
    let plain_piece = PieceCid::new(Node(plain_req.proposal.proposal.piece_cid)).unwrap();

    // The first hand-off fails after the pipeline was asked (the answer is lost): the deal stays
    // published, and nothing is indexed yet.
    world.sealing.0.fail.store(true, Ordering::SeqCst);
    let service = world.provider(dir.path());
    propose(&service, &req).await;
    propose(&service, &plain_req).await;
    let started = Instant::now();
    while record(&service, &req.uuid).status != DealStatus::Published
        || record(&service, &plain_req.uuid).status != DealStatus::Published
    {
        assert!(started.elapsed() < Duration::from_secs(20), "not published");
        service.tick().await.unwrap();
        world.chain.advance(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let index = service.block_index().clone();
    assert_eq!(index.indexed(&piece).unwrap(), None);
    crash(service).await;
    drop(index);

    // After the restart the hand-off succeeds and the payload's blocks are indexed.
    world.sealing.0.fail.store(false, Ordering::SeqCst);
    let service = world.provider(dir.path());
    tick_until(&service, &req.uuid, DealStatus::HandedOff).await;
    tick_until(&service, &plain_req.uuid, DealStatus::HandedOff).await;
    assert!(!service.scratch().payload(&req.uuid).exists());
    let index = service.block_index();
    let done = index
        .indexed(&piece)
        .unwrap()
        .expect("the CAR payload is indexed");
    assert_eq!(done.roots, vec![root.to_string()]);
    assert_eq!(done.payload_size, car.len() as u64);
    assert_eq!(index.pieces_with_root(&root).unwrap(), vec![piece]);
    // Every block where the CAR holds it (its last occurrence, for a block written twice).
    let mut last = std::collections::HashMap::new();
    for b in index_car(&car_path).unwrap().blocks {
        last.insert(b.cid, (piece, b.offset, b.length));
    }
    for (cid, want) in last {
        let at = index.locate(&cid).unwrap();
        assert_eq!(at.len(), 1);
        assert_eq!((at[0].piece, at[0].offset, at[0].length), want);
    }
    assert_eq!(index.indexed(&plain_piece).unwrap(), None);
    // The index lives in the deal database: a restart keeps it.
    crash(service).await;
    let service = world.provider(dir.path());
    assert!(service.block_index().indexed(&piece).unwrap().is_some());
}
