//! Two real libp2p hosts in one process, a client and a provider, negotiating asks and deals.

use std::sync::Arc;

use libp2p::identity::Keypair;
use lode_chain::types::{ActorId, TokenAmount};
use lode_market::deal::{AskRequest, AskResponse, DealDecision, Rejection, encode};
use lode_market::net::{HostConfig, MarketHost};
use lode_market::provider::records::{DealRecords, DealStatus};
use lode_market::provider::service::DealProvider;
use lode_market::transfer::Scratch;

use crate::common::*;

type Provider = DealProvider<FakeChain, FakePublisher, FakeSealing>;

async fn provider(dir: &std::path::Path) -> (Arc<Provider>, MarketHost, FakeChain) {
    let chain = FakeChain::new();
    let service = Arc::new(DealProvider::new(
        provider_config(),
        worker_key(),
        chain.clone(),
        FakePublisher::new(&chain),
        FakeSealing::new(),
        DealRecords::open(dir.join("deals")).unwrap(),
        Scratch::open(dir.join("scratch")).unwrap(),
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
    (service, host, chain)
}

async fn client() -> MarketHost {
    MarketHost::client(HostConfig::new(Keypair::generate_ed25519(), vec![]))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_gets_a_signed_ask_and_a_deal_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (service, host, chain) = provider(dir.path()).await;
    let addrs = host.listen_addrs().await.unwrap();
    assert!(!addrs.is_empty());
    let client = client().await;

    let answer = client
        .query_ask(host.peer_id(), addrs.clone(), &AskRequest { miner: MINER })
        .await
        .unwrap();
    let AskResponse::Ask(signed) = answer else {
        panic!("no ask: {answer:?}")
    };
    signed.verify(NETWORK, &worker_key().public_key()).unwrap();
    assert_eq!(signed.ask, ask());
    assert!(signed.verify(NETWORK, &client_key().public_key()).is_err());
    let other = client
        .query_ask(
            host.peer_id(),
            addrs.clone(),
            &AskRequest { miner: ActorId(7) },
        )
        .await
        .unwrap();
    assert_eq!(other, AskResponse::NoAsk { miner: ActorId(7) });

    let data = payload(3000, 1);
    let req = request(
        proposal(&data, 4096, chain.head() + 50),
        "http://127.0.0.1:9/x",
        3000,
    );
    let response = client
        .propose_deal(host.peer_id(), addrs.clone(), &req)
        .await
        .unwrap();
    response
        .verify(NETWORK, &worker_key().public_key())
        .unwrap();
    assert_eq!(response.response.uuid, req.uuid);
    assert_eq!(response.response.decision, DealDecision::Accepted);
    let record = service.records().get(&req.uuid).unwrap().unwrap();
    assert_eq!(record.status, DealStatus::Accepted);
    assert_eq!(record.client_peer, client.peer_id().to_string());
    // Proposing the same deal again (a lost answer) gets the same answer; another proposal
    // under the same UUID does not.
    let again = client
        .propose_deal(host.peer_id(), addrs.clone(), &req)
        .await
        .unwrap();
    assert_eq!(again.response.decision, DealDecision::Accepted);
    let mut changed = req.clone();
    changed.proposal = proposal(&data, 4096, chain.head() + 60);
    let dup = client
        .propose_deal(host.peer_id(), addrs.clone(), &changed)
        .await
        .unwrap();
    assert!(matches!(
        dup.response.decision,
        DealDecision::Rejected(Rejection::DuplicateUuid(_))
    ));
    assert_eq!(service.records().list().unwrap().len(), 1);
    client.shutdown().await.unwrap();
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_rejection_reaches_the_client_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (service, host, chain) = provider(dir.path()).await;
    let addrs = host.listen_addrs().await.unwrap();
    let client = client().await;
    let data = payload(3000, 2);
    let head = chain.head();
    let good = proposal(&data, 4096, head + 50).proposal;

    let mut cases = Vec::new();
    // A bad signature: the proposal changed after signing.
    let mut bad_sig = proposal(&data, 4096, head + 50);
    bad_sig.proposal.price_per_epoch = TokenAmount(1 << 40);
    cases.push((
        "bad signature",
        request(bad_sig, "http://127.0.0.1:9/x", 3000),
    ));
    let mut p = good.clone();
    p.piece_size = 3000;
    cases.push((
        "wrong piece size",
        request(sign(p), "http://127.0.0.1:9/x", 3000),
    ));
    let mut p = good.clone();
    p.piece_size = 16 << 20;
    cases.push((
        "piece larger than a sector",
        request(sign(p), "http://127.0.0.1:9/x", 3000),
    ));
    let mut p = good.clone();
    p.start_epoch = head - 1;
    p.end_epoch = head + 2000;
    cases.push((
        "start epoch in the past",
        request(sign(p), "http://127.0.0.1:9/x", 3000),
    ));
    let mut p = good.clone();
    p.price_per_epoch = TokenAmount(4095);
    cases.push((
        "price below the ask",
        request(sign(p), "http://127.0.0.1:9/x", 3000),
    ));
    let mut p = good.clone();
    p.client_collateral = TokenAmount::tokens(2000);
    cases.push((
        "insufficient escrow",
        request(sign(p), "http://127.0.0.1:9/x", 3000),
    ));
    let mut p = good.clone();
    p.label = "x".repeat(257);
    cases.push((
        "oversized label",
        request(sign(p), "http://127.0.0.1:9/x", 3000),
    ));
    cases.push((
        "payload larger than the piece",
        request(sign(good.clone()), "http://127.0.0.1:9/x", 4065),
    ));

    for (what, req) in cases {
        let response = client
            .propose_deal(host.peer_id(), addrs.clone(), &req)
            .await
            .unwrap();
        response
            .verify(NETWORK, &worker_key().public_key())
            .unwrap();
        let DealDecision::Rejected(reason) = &response.response.decision else {
            panic!("{what}: accepted");
        };
        let expected = match what {
            "bad signature" => matches!(reason, Rejection::BadSignature { .. }),
            "wrong piece size" => matches!(reason, Rejection::InvalidPieceSize(3000)),
            "piece larger than a sector" => matches!(reason, Rejection::PieceSizeOutOfRange { .. }),
            "start epoch in the past" => matches!(reason, Rejection::StartTooSoon { .. }),
            "price below the ask" => matches!(reason, Rejection::PriceBelowAsk { .. }),
            "insufficient escrow" => matches!(reason, Rejection::InsufficientEscrow { .. }),
            "oversized label" => matches!(reason, Rejection::LabelTooLong { len: 257, .. }),
            "payload larger than the piece" => matches!(reason, Rejection::PayloadTooLarge { .. }),
            _ => false,
        };
        assert!(expected, "{what}: {reason}");
        assert!(!reason.to_string().is_empty());
    }
    // Nothing stored, nothing published, no scratch data.
    assert!(service.records().list().unwrap().is_empty());
    service.tick().await.unwrap();
    assert!(service.records().list().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(service.scratch().dir()).unwrap().count(),
        0
    );

    // A request that does not decode is answered, signed, with the reason.
    let bytes = encode(&"not a deal request");
    let raw = client
        .send_raw_deal_request(host.peer_id(), addrs.clone(), bytes)
        .await;
    let response: lode_market::deal::SignedDealResponse =
        lode_market::deal::decode("deal response", &raw.unwrap()).unwrap();
    assert!(matches!(
        response.response.decision,
        DealDecision::Rejected(Rejection::Malformed(_))
    ));
    // An oversized request is refused by the codec before the server sees it.
    let huge = vec![0u8; lode_market::net::MAX_DEAL_REQUEST + 1];
    assert!(
        client
            .send_raw_deal_request(host.peer_id(), addrs.clone(), huge)
            .await
            .is_err()
    );
    assert!(service.records().list().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_pushes_its_payload_over_libp2p_and_resumes() {
    use lode_market::deal::TransferSpec;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let chain = FakeChain::new();
    let mut config = provider_config();
    config.policy.accept_push = true;
    let service = Arc::new(DealProvider::new(
        config,
        worker_key(),
        chain.clone(),
        FakePublisher::new(&chain),
        FakeSealing::new(),
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
    let addrs = host.listen_addrs().await.unwrap();
    let client = client().await;
    let stranger = client_host_for_push().await;
    let opts = lode_market::net::PushOptions {
        max_attempts: 3,
        backoff: Duration::from_millis(10),
    };

    let data = payload(2_500_000, 9);
    let mut req = request(proposal(&data, 4 << 20, chain.head() + 50), "", 0);
    req.transfer = TransferSpec::Push {
        payload_size: data.len() as u64,
    };
    let response = client
        .propose_deal(host.peer_id(), addrs.clone(), &req)
        .await
        .unwrap();
    assert_eq!(response.response.decision, DealDecision::Accepted);
    service.tick().await.unwrap();

    // Another peer may not push this deal's data.
    let file = dir.path().join("payload");
    std::fs::write(&file, &data).unwrap();
    let e = stranger
        .push_payload(
            host.peer_id(),
            addrs.clone(),
            req.uuid,
            &file,
            data.len() as u64,
            opts,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("only the peer that proposed"), "{e}");

    // The client's first push breaks off (its file is short: a client killed mid-push) ...
    let half = dir.path().join("half");
    std::fs::write(&half, &data[..1_200_000]).unwrap();
    assert!(
        client
            .push_payload(
                host.peer_id(),
                addrs.clone(),
                req.uuid,
                &half,
                data.len() as u64,
                opts
            )
            .await
            .is_err()
    );
    let received = std::fs::metadata(service.scratch().payload(&req.uuid))
        .unwrap()
        .len();
    assert_eq!(received, 1 << 20, "the whole chunks that fitted arrived");
    // ... and the next one resumes from what the provider holds.
    client
        .push_payload(
            host.peer_id(),
            addrs.clone(),
            req.uuid,
            &file,
            data.len() as u64,
            opts,
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        service.tick().await.unwrap();
        let r = service.records().get(&req.uuid).unwrap().unwrap();
        if r.status == DealStatus::Transferred {
            break;
        }
        assert_ne!(r.status, DealStatus::Failed, "{:?}", r.error);
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        std::fs::read(service.scratch().payload(&req.uuid)).unwrap(),
        data
    );
    // An HTTP deal's data cannot be pushed.
    let http = request(
        proposal(&data, 4 << 20, chain.head() + 60),
        "http://127.0.0.1:9/x",
        data.len() as u64,
    );
    let response = client
        .propose_deal(host.peer_id(), addrs.clone(), &http)
        .await
        .unwrap();
    assert_eq!(response.response.decision, DealDecision::Accepted);
    let e = client
        .push_payload(
            host.peer_id(),
            addrs.clone(),
            http.uuid,
            &file,
            data.len() as u64,
            opts,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("over HTTP"), "{e}");
}

async fn client_host_for_push() -> MarketHost {
    client().await
}
