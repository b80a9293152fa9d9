//! The consensus core without a network: block production by genesis miners (fake proofs, checked
//! by the test verifier), tipsets, null rounds, sync between two cores, forks and their
//! resolution, restarts, and blocks that must be refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
use lode_chain::block::{BlockHeader, messages_root, win_count};
use lode_chain::consensus::TipsetKey;
use lode_chain::crypto::SecretKey;
use lode_chain::genesis::{GenesisMiner, GenesisSector};
use lode_chain::runtime::{RandomnessTag, draw_randomness};
use lode_chain::types::{ActorId, TokenAmount};
use lode_chain::{Genesis, Policy};
use lode_node::core::{BlockVerdict, CoreConfig, NodeCore};
use lode_node::genesis::GenesisFile;
use lode_node::wire::{FullBlock, MAX_SYNC_TIPSETS, SyncRequest, SyncResponse};
use lode_proofs::sector::SectorSize;
use lode_proofs::verifier::WinningPostStatement;
use lode_testkit::harness::{FakeVerifier, fake_winning_proof};

const T0: u64 = 1_700_000_000;

struct Miner {
    id: ActorId,
    worker: SecretKey,
}

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn empty_comm_d() -> [u8; 32] {
    use lode_proofs::piece::{PaddedPieceSize, comm_d};
    comm_d(PaddedPieceSize::new(2048).unwrap(), &[]).unwrap().0
}

fn genesis_file(miners: usize) -> (GenesisFile, Vec<Miner>) {
    let policy = Policy::devnet();
    let exp = *GenesisSector::expiration_range(&policy).start();
    let mut g = Genesis {
        // Owners hold the funds; workers pay for their Window PoSt messages.
        accounts: (0..miners)
            .flat_map(|i| {
                [
                    (key(10 + i as u8).public_key(), TokenAmount::tokens(1000)),
                    (key(20 + i as u8).public_key(), TokenAmount::tokens(100)),
                ]
            })
            .collect(),
        verifreg_root: key(1).public_key(),
        beacon: [7; 32],
        miners: Vec::new(),
    };
    for i in 0..miners {
        g.miners.push(GenesisMiner {
            owner: key(10 + i as u8).public_key(),
            worker: key(20 + i as u8).public_key(),
            sector_size: SectorSize::S2KiB,
            balance: TokenAmount::tokens(10),
            peer_id: Vec::new(),
            multiaddrs: Vec::new(),
            sectors: (0..2u64)
                .map(|n| GenesisSector {
                    sector_number: n,
                    comm_r: lode_testkit::harness::node(&format!("m{i}s{n}")),
                    comm_d: empty_comm_d(),
                    expiration: exp,
                })
                .collect(),
        });
    }
    let ids = g.miner_ids();
    let ms = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| Miner {
            id,
            worker: key(20 + i as u8),
        })
        .collect();
    (
        GenesisFile {
            policy,
            timestamp: T0,
            genesis: g,
        },
        ms,
    )
}

fn open(dir: &std::path::Path, g: &GenesisFile) -> NodeCore {
    NodeCore::open(
        dir,
        g.clone(),
        Box::new(FakeVerifier),
        CoreConfig::default(),
    )
    .unwrap()
}

/// The block `m` makes at `epoch` on `core`'s head, if it wins.
fn try_block(core: &mut NodeCore, m: &Miner, epoch: u64) -> Option<FullBlock> {
    let mb = core.miner_base(m.id, epoch).unwrap();
    assert!(
        mb.ineligible.is_none(),
        "epoch {epoch}: {:?}",
        mb.ineligible
    );
    let policy = core.genesis().policy.clone();
    let b = &mb.base;
    let entropy = m.id.0.to_le_bytes();
    let election_proof = m.worker.sign(&draw_randomness(
        RandomnessTag::Election,
        &b.beacon,
        epoch,
        &entropy,
    ));
    let wins = win_count(
        &election_proof,
        mb.miner_qa,
        b.network_qa,
        policy.expected_leaders_per_epoch,
        policy.max_win_count,
    );
    if wins == 0 {
        return None;
    }
    let statement = WinningPostStatement {
        size: SectorSize::S2KiB,
        miner_id: m.id.0,
        randomness: draw_randomness(RandomnessTag::WinningPost, &b.beacon, epoch, &entropy),
        sectors: mb.sectors.iter().map(|s| s.public()).collect(),
    };
    let mut header = BlockHeader {
        epoch,
        miner: m.id,
        parents: b.parents.0.clone(),
        parent_weight: b.parent_weight,
        ticket: m.worker.sign(&draw_randomness(
            RandomnessTag::Ticket,
            &b.beacon,
            epoch,
            &entropy,
        )),
        timestamp: b.timestamp,
        parent_state_root: b.parent_state_root,
        beacon: b.beacon,
        messages_root: messages_root(&mb.messages),
        election_proof,
        win_count: wins,
        winning_post: fake_winning_proof(&statement),
        signature: m.worker.sign(b""),
    };
    header.signature = m.worker.sign(&header.signing_bytes(&policy.network));
    Some(FullBlock {
        header,
        messages: mb.messages,
    })
}

/// Pushes `m`'s Window PoSt (fake proofs) for every deadline whose window is open at the next
/// epoch and not yet posted, as its prover would.
fn post(core: &mut NodeCore, m: &Miner) {
    use lode_chain::actors::miner::{MinerMethod, PostPartition, WindowPostParams};
    use lode_chain::message::{Message, Method};
    use lode_proofs::verifier::WindowPostStatement;
    let view = core.proving_view(m.id).unwrap();
    let next = view.head_epoch + 1;
    for dl in &view.deadlines {
        let Some(randomness) = dl.randomness else {
            continue;
        };
        if !(dl.open <= next && next < dl.close) {
            continue;
        }
        let mut params = WindowPostParams {
            deadline: dl.index,
            partitions: Vec::new(),
            proofs: Vec::new(),
        };
        for p in &dl.partitions {
            if dl.posted.contains(&p.index) {
                continue;
            }
            let sectors: Vec<_> = p
                .sectors
                .iter()
                .filter(|s| {
                    !p.faults.contains(&s.sector_number) || p.recoveries.contains(&s.sector_number)
                })
                .map(|s| s.public())
                .collect();
            if sectors.is_empty() {
                continue;
            }
            let st = WindowPostStatement {
                size: SectorSize::S2KiB,
                randomness,
                sectors,
            };
            params.partitions.push(PostPartition {
                index: p.index,
                skipped: Default::default(),
            });
            params
                .proofs
                .push(lode_testkit::harness::fake_window_proof(&st));
        }
        if params.partitions.is_empty() {
            continue;
        }
        let from = lode_chain::types::Address::Id(view.worker);
        let msg = Message {
            from,
            to: m.id.into(),
            nonce: core.next_nonce(&from).unwrap(),
            value: TokenAmount::ZERO,
            method: Method::Miner(MinerMethod::SubmitWindowPost(params)),
            gas_limit: 10_000_000,
            gas_price: core.genesis().policy.min_gas_price,
        };
        // Already pending (the window spans several epochs): the pool says so.
        let _ = core.push_message(msg.sign(&core.genesis().policy.network, &m.worker));
    }
}

/// Runs epochs `from..=to` on `core` with `miners` (each proving its deadlines); returns the
/// blocks made.
fn run(core: &mut NodeCore, miners: &[&Miner], from: u64, to: u64) -> Vec<FullBlock> {
    let g = core.genesis().clone();
    let mut all = Vec::new();
    for e in from..=to {
        for m in miners {
            post(core, m);
        }
        let blocks: Vec<FullBlock> = miners
            .iter()
            .filter_map(|m| try_block(core, m, e))
            .collect();
        for b in &blocks {
            let v = core.receive_block(b.clone(), g.slot_time(e)).unwrap();
            assert_eq!(v, BlockVerdict::Accepted, "epoch {e}");
        }
        all.extend(blocks);
    }
    all
}

/// Syncs `to` from `from` the way the service does: ancestors of the head until known.
fn sync(to: &mut NodeCore, from: &NodeCore) {
    let target = from.head().key.clone();
    let target_hash = target.hash();
    let now = from.genesis().slot_time(from.head_epoch());
    let mut want = if to.tipset(&target_hash).is_some() {
        to.missing_ancestor(&target_hash)
    } else {
        Some(target)
    };
    while let Some(k) = want {
        let SyncResponse::Tipsets(ts) = from.serve(&SyncRequest::Ancestors {
            head: k,
            count: MAX_SYNC_TIPSETS,
        }) else {
            panic!("no tipsets")
        };
        assert!(!ts.is_empty());
        to.import(ts, now).unwrap();
        want = to.missing_ancestor(&target_hash);
    }
    to.consider(target_hash).unwrap();
}

#[test]
fn miners_produce_blocks_and_a_new_node_syncs_to_the_same_state() {
    let (g, miners) = genesis_file(2);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = open(da.path(), &g);
    assert_eq!(a.head_epoch(), 0);
    let ms: Vec<&Miner> = miners.iter().collect();
    let blocks = run(&mut a, &ms, 1, 120);
    let head = a.head().clone();
    // Five expected leaders per epoch between two miners: nearly every epoch has a block, some
    // tipsets have both, and the weight grows.
    assert!(head.epoch >= 110, "head at {}", head.epoch);
    assert!(blocks.len() > 120, "{} blocks", blocks.len());
    assert!(
        (1..=head.epoch).any(|e| a.tipset_at(e).is_some_and(|t| t.key.0.len() == 2)),
        "no two-block tipset"
    );
    assert!(head.weight.unwrap() > 0);
    // Rewards were paid to the miners.
    assert!(a.balance(&miners[0].id.into()) > TokenAmount::tokens(10));

    let mut b = open(db.path(), &g);
    sync(&mut b, &a);
    assert_eq!(b.head_hash(), a.head_hash());
    assert_eq!(b.chain().head().root, a.chain().head().root);
    for e in 0..=head.epoch {
        assert_eq!(
            a.tipset_at(e).map(|t| t.post_root),
            b.tipset_at(e).map(|t| t.post_root),
            "epoch {e}"
        );
    }
}

#[test]
fn a_split_network_forks_and_converges_on_the_heaviest_chain() {
    let (g, miners) = genesis_file(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = open(da.path(), &g);
    let mut b = open(db.path(), &g);
    let all: Vec<&Miner> = miners.iter().collect();
    run(&mut a, &all, 1, 10);
    sync(&mut b, &a);
    assert_eq!(a.head_hash(), b.head_hash());
    // Split: miners 0 and 1 on A, miner 2 alone on B.
    run(&mut a, &[&miners[0], &miners[1]], 11, 30);
    run(&mut b, &[&miners[2]], 11, 30);
    assert_ne!(a.head_hash(), b.head_hash());
    let (wa, wb) = (a.head_weight(), b.head_weight());
    assert_ne!(wa, wb);
    // Heal: each learns the other's chain; both settle on the heavier one.
    sync(&mut b, &a);
    sync(&mut a, &b);
    assert_eq!(a.head_hash(), b.head_hash());
    assert_eq!(a.chain().head().root, b.chain().head().root);
    assert_eq!(a.head_weight(), wa.max(wb));
    // And keep going together.
    run(&mut a, &all, 31, 35);
    sync(&mut b, &a);
    assert_eq!(a.head_hash(), b.head_hash());
}

#[test]
fn a_restarted_node_reopens_at_its_head_and_reverts_null_rounds_past_it() {
    let (g, miners) = genesis_file(2);
    let d = tempfile::tempdir().unwrap();
    let (hash, root, epoch) = {
        let mut a = open(d.path(), &g);
        let ms: Vec<&Miner> = miners.iter().collect();
        run(&mut a, &ms, 1, 20);
        let h = (a.head_hash(), a.chain().head().root, a.head_epoch());
        // A mining base 5 epochs ahead moves the state through 4 null rounds.
        a.mining_base(h.2 + 5).unwrap();
        assert_eq!(a.chain().head().epoch, h.2 + 4);
        h
    };
    let mut a = open(d.path(), &g);
    assert_eq!((a.head_hash(), a.head_epoch()), (hash, epoch));
    assert_eq!(a.chain().head().root, root);
    // It carries on from there.
    let ms: Vec<&Miner> = miners.iter().collect();
    run(&mut a, &ms, epoch + 1, epoch + 5);
    assert!(a.head_epoch() > epoch);
    // Another genesis is refused in this directory.
    let (mut other, _) = genesis_file(2);
    other.timestamp += 1;
    let err = NodeCore::open(
        d.path(),
        other,
        Box::new(FakeVerifier),
        CoreConfig::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("holds the chain of genesis"),
        "{err}"
    );
}

#[test]
fn invalid_blocks_are_refused_and_change_nothing() {
    let (g, miners) = genesis_file(2);
    let d = tempfile::tempdir().unwrap();
    let mut a = open(d.path(), &g);
    let ms: Vec<&Miner> = miners.iter().collect();
    run(&mut a, &ms, 1, 5);
    let (head, root) = (a.head_hash(), a.chain().head().root);
    let mut e = a.head_epoch() + 1;
    let good = loop {
        if let Some(b) = ms.iter().find_map(|m| try_block(&mut a, m, e)) {
            break b;
        }
        e += 1;
    };
    let m = ms.iter().find(|m| m.id == good.header.miner).unwrap();
    let now = g.slot_time(e);
    let resign = |mut b: FullBlock| {
        b.header.signature = m.worker.sign(&b.header.signing_bytes(&g.policy.network));
        b
    };
    let cases: Vec<(&str, FullBlock)> = vec![
        ("winning post", {
            let mut b = good.clone();
            b.header.winning_post[0] ^= 1;
            resign(b)
        }),
        ("signature", {
            let mut b = good.clone();
            b.header.signature = m.worker.sign(b"something else");
            b
        }),
        ("beacon", {
            let mut b = good.clone();
            b.header.beacon[0] ^= 1;
            resign(b)
        }),
        ("timestamp", {
            let mut b = good.clone();
            b.header.timestamp += 1;
            resign(b)
        }),
        ("parent weight", {
            let mut b = good.clone();
            b.header.parent_weight += 1;
            resign(b)
        }),
        ("win count", {
            let mut b = good.clone();
            b.header.win_count += 1;
            resign(b)
        }),
        ("ticket", {
            let mut b = good.clone();
            b.header.ticket = m.worker.sign(b"not the ticket");
            resign(b)
        }),
        ("messages root", {
            let mut b = good.clone();
            b.header.messages_root[0] ^= 1;
            resign(b)
        }),
        ("parent state root", {
            let mut b = good.clone();
            b.header.parent_state_root[0] ^= 1;
            resign(b)
        }),
    ];
    for (what, bad) in cases {
        let v = a.receive_block(bad, now).unwrap();
        assert!(matches!(v, BlockVerdict::Rejected(_)), "{what}: {v:?}");
        assert_eq!(a.head_hash(), head, "{what}");
    }
    // From the future: refused by the clock.
    let v = a.receive_block(good.clone(), now - 10).unwrap();
    assert!(
        matches!(v, BlockVerdict::Rejected(ref w) if w.contains("future")),
        "{v:?}"
    );
    // Unknown parents: asked for, not applied.
    let mut orphan = good.clone();
    orphan.header.parents = TipsetKey::new(vec![[9; 32]]).0;
    assert!(matches!(
        a.receive_block(resign(orphan), now).unwrap(),
        BlockVerdict::NeedParents(_)
    ));
    assert!(a.chain().head().root == root && a.head_hash() == head);
    // The good block is still accepted after all that.
    assert_eq!(
        a.receive_block(good.clone(), now).unwrap(),
        BlockVerdict::Accepted
    );
    // A second, different block by the same miner at the same epoch: a consensus fault.
    let mut twin = good.clone();
    twin.header.timestamp = good.header.timestamp; // same slot
    twin.messages.clear();
    twin.header.messages_root = messages_root(&[]);
    twin.header.winning_post.push(0);
    let twin = resign(twin);
    if twin.id() != good.id() {
        let v = a.receive_block(twin, now).unwrap();
        assert!(matches!(v, BlockVerdict::Rejected(_)), "{v:?}");
        assert_eq!(a.consensus_faults().len(), 1);
    }
}

#[test]
fn mining_far_ahead_is_refused_and_never_strands_the_head() {
    let (g, miners) = genesis_file(2);
    let d = tempfile::tempdir().unwrap();
    let mut a = open(d.path(), &g);
    let ms: Vec<&Miner> = miners.iter().collect();
    run(&mut a, &ms, 1, 3);
    let head = a.head_epoch();
    let finality = g.policy.chain_finality;
    // Beyond finality: refused, nothing applied.
    let root = a.chain().head().root;
    assert!(a.miner_base(ms[0].id, head + finality + 2).is_err());
    assert_eq!(a.chain().head().root, root);
    // Right at the limit: the null rounds are applied, and a block at the next epoch still lands.
    a.miner_base(ms[0].id, head + finality + 1).unwrap();
    let blocks = run(&mut a, &ms, head + 1, head + 4);
    assert!(!blocks.is_empty());
    assert!(a.head_epoch() > head);
}
