//! The consensus core without a network: block production by genesis miners (fake proofs, checked
//! by the test verifier), tipsets, null rounds, sync between two cores, forks and their
//! resolution, restarts, blocks that must be refused, and the chain going on after a stall longer
//! than finality (a block after it, and two miners forking across it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
use lode_chain::block::messages_root;
use lode_chain::consensus::TipsetKey;
use lode_chain::consensus::{Beacon, TicketBeacon};
use lode_chain::crypto::{SecretKey, Signature};
use lode_chain::error::BlockFault;
use lode_chain::genesis::{GenesisMiner, GenesisSector};
use lode_chain::message::{Message, Method, SignedMessage};
use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_chain::{Genesis, Policy};
use lode_node::core::{BlockVerdict, CoreConfig, NodeCore};
use lode_node::error::NodeError;
use lode_node::genesis::GenesisFile;
use lode_node::wire::{FullBlock, FullTipset, MAX_SYNC_TIPSETS, SyncRequest, SyncResponse};
use lode_proofs::sector::SectorSize;
use lode_testkit::harness::FakeVerifier;
use lode_testkit::mining::{make_block, push_window_posts};

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
        verifiers: Vec::new(),
        verified_clients: Vec::new(),
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
    make_block(&core.genesis().policy, m.id, &m.worker, &mb).unwrap()
}

/// Pushes `m`'s Window PoSt (fake proofs) for every deadline whose window is open at the next
/// epoch and not yet posted, as its prover would.
fn post(core: &mut NodeCore, m: &Miner) {
    push_window_posts(core, m.id, &m.worker).unwrap();
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
fn a_restarted_node_reopens_at_its_head_and_reverts_old_null_rounds_past_it() {
    let (g, miners) = genesis_file(2);
    let d = tempfile::tempdir().unwrap();
    let (hash, root, epoch, min_ticket) = {
        let mut a = open(d.path(), &g);
        let ms: Vec<&Miner> = miners.iter().collect();
        run(&mut a, &ms, 1, 20);
        let h = (
            a.head_hash(),
            a.chain().head().root,
            a.head_epoch(),
            a.head().min_ticket,
        );
        // A mining base 5 epochs ahead runs 4 null rounds but commits nothing: the state stays
        // the head's.
        let mb = a.mining_base(h.2 + 5).unwrap();
        assert_ne!(mb.parent_state_root, h.1);
        assert_eq!((a.chain().head().epoch, a.chain().head().root), (h.2, h.1));
        h
    };
    let a = open(d.path(), &g);
    assert_eq!((a.head_hash(), a.head_epoch()), (hash, epoch));
    assert_eq!(a.chain().head().root, root);
    drop(a);
    // A directory written when null rounds were committed on their own: the state is 4 null
    // rounds past the head tipset. Opening reverts them.
    {
        let store = lode_chain::store::StateStore::open_sled(&d.path().join("state")).unwrap();
        let mut chain =
            lode_chain::Chain::open(store, g.policy.clone(), Box::new(FakeVerifier)).unwrap();
        for e in epoch + 1..=epoch + 4 {
            chain
                .apply_epoch(&lode_chain::EpochInput {
                    epoch: e,
                    beacon: TicketBeacon.beacon(&min_ticket, e),
                    ..Default::default()
                })
                .unwrap();
        }
        assert_eq!(chain.head().epoch, epoch + 4);
    }
    let mut a = open(d.path(), &g);
    assert_eq!((a.head_hash(), a.head_epoch()), (hash, epoch));
    assert_eq!(a.chain().head(), lode_chain::store::Head { epoch, root });
    // It carries on from there.
    let ms: Vec<&Miner> = miners.iter().collect();
    run(&mut a, &ms, epoch + 1, epoch + 5);
    assert!(a.head_epoch() > epoch);
    // Another genesis is refused in this directory.
    let (mut other, _) = genesis_file(2);
    other.timestamp += 1;
    let err = NodeCore::open(
        d.path(),
        other.clone(),
        Box::new(FakeVerifier),
        CoreConfig::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("holds the chain of genesis"),
        "{err}"
    );
    // Once its chain is removed, the directory takes the other genesis from its start.
    NodeCore::remove_chain(d.path()).unwrap();
    let fresh = NodeCore::open(
        d.path(),
        other,
        Box::new(FakeVerifier),
        CoreConfig::default(),
    )
    .unwrap();
    assert_eq!(fresh.head_epoch(), 0);
}

#[test]
fn invalid_blocks_are_refused_and_change_nothing() {
    let (g, miners) = genesis_file(2);
    let d = tempfile::tempdir().unwrap();
    let mut a = open(d.path(), &g);
    let ms: Vec<&Miner> = miners.iter().collect();
    run(&mut a, &ms, 1, 5);
    let (head, root) = (a.head_hash(), a.chain().head().root);
    // A transfer, so the block has messages and an aggregate.
    let owner = lode_chain::types::Address::Bls(key(10).public_key());
    let transfer = lode_chain::message::Message {
        from: owner,
        to: lode_chain::types::Address::Bls(key(11).public_key()),
        nonce: a.next_nonce(&owner).unwrap(),
        value: TokenAmount::tokens(1),
        method: lode_chain::message::Method::Send,
        gas_limit: 1_000_000,
        gas_price: g.policy.min_gas_price,
    }
    .sign(&g.policy.network, &key(10));
    a.push_message(transfer.clone()).unwrap();
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
        ("bls aggregate", {
            let mut b = good.clone();
            b.header.bls_aggregate = Some(m.worker.sign(b"not the messages' aggregate"));
            resign(b)
        }),
        ("a message altered", {
            let mut b = good.clone();
            b.messages[0].value = TokenAmount::tokens(2);
            b.header.messages_root = messages_root(&b.messages);
            resign(b)
        }),
        ("a message removed", {
            let mut b = good.clone();
            b.messages.retain(|m| *m != transfer.message);
            b.header.messages_root = messages_root(&b.messages);
            resign(b)
        }),
    ];
    assert!(
        good.messages.contains(&transfer.message) && good.header.bls_aggregate.is_some(),
        "the block carries the transfer under its aggregate"
    );
    for (what, bad) in cases {
        let v = a.receive_block(bad, now).unwrap();
        assert!(matches!(v, BlockVerdict::Rejected(_)), "{what}: {v:?}");
        assert_eq!(a.head_hash(), head, "{what}");
        // The chain names the aggregate when the messages are not what it covers.
        if what.starts_with("a message") || what == "bls aggregate" {
            assert!(
                matches!(v, BlockVerdict::Rejected(ref why) if why.contains("BLS aggregate")),
                "{what}: {v:?}"
            );
        }
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
    // A second block by the same miner at the same epoch with a Winning PoSt that fails: refused,
    // and no consensus fault (only two headers that pass the checks make one).
    let mut forged = good.clone();
    forged.messages.clear();
    forged.header.messages_root = messages_root(&[]);
    forged.header.bls_aggregate = None;
    forged.header.winning_post.push(0);
    let forged = resign(forged);
    let v = a.receive_block(forged, now).unwrap();
    assert!(matches!(v, BlockVerdict::Rejected(_)), "{v:?}");
    assert!(a.consensus_faults().is_empty());
    // A second, different and valid block by the same miner at the same epoch: a consensus fault.
    let mut twin = good.clone();
    twin.messages.clear();
    twin.header.messages_root = messages_root(&[]);
    twin.header.bls_aggregate = None;
    let twin = resign(twin);
    assert_ne!(twin.id(), good.id());
    let v = a.receive_block(twin, now).unwrap();
    assert!(matches!(v, BlockVerdict::Rejected(_)), "{v:?}");
    assert_eq!(a.consensus_faults().len(), 1);
    assert_eq!(a.head_hash(), TipsetKey::new(vec![good.id()]).hash());
}

/// Runs `core` with `miners` (each proving) until none of their deadline windows opens within
/// `quiet` epochs after the head, so that that many epochs without blocks (and so without Window
/// PoSts) fault nobody.
fn run_until_quiet(core: &mut NodeCore, miners: &[&Miner], quiet: u64) {
    let period = core.genesis().policy.wpost_proving_period();
    for _ in 0..2 * period {
        let head = core.head_epoch();
        let calm = miners.iter().all(|m| {
            let view = core.proving_view(m.id).unwrap();
            view.deadlines.iter().all(|d| d.open > head + quiet)
        });
        if calm {
            return;
        }
        run(core, miners, head + 1, head + 1);
    }
    panic!("no quiet stretch of {quiet} epochs in two proving periods");
}

/// `m`'s first block on `core`'s head at `from` or later.
fn first_win(core: &mut NodeCore, m: &Miner, from: u64) -> FullBlock {
    (from..from + 40)
        .find_map(|e| try_block(core, m, e))
        .expect("no win in 40 epochs")
}

#[test]
fn the_chain_lives_on_after_a_stall_longer_than_finality() {
    let (g, miners) = genesis_file(2);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = open(da.path(), &g);
    let mut b = open(db.path(), &g);
    let ms: Vec<&Miner> = miners.iter().collect();
    let finality = g.policy.chain_finality;
    let stall = finality + 10;
    run(&mut a, &ms, 1, 5);
    run_until_quiet(&mut a, &ms, stall + 40);
    sync(&mut b, &a);
    let (head, root) = (a.head().clone(), a.chain().head().root);

    // Nobody makes a block for more than finality epochs. A mining base after them runs the null
    // rounds without committing them, however many.
    let late = head.epoch + stall + 1;
    let mb = a.mining_base(late).unwrap();
    assert_ne!(mb.parent_state_root, root);
    assert_eq!(
        a.chain().head(),
        lode_chain::store::Head {
            epoch: head.epoch,
            root
        }
    );
    // Asked twice, or for an earlier epoch after a later one: the same base.
    assert_eq!(a.mining_base(late + 3).unwrap().epoch, late + 3);
    assert_eq!(a.mining_base(late).unwrap(), mb);
    // Absurdly far: refused with a reason, nothing computed.
    let far = head.epoch + lode_node::core::MAX_NULL_ROUNDS + 2;
    let err = a.mining_base(far).unwrap_err();
    assert!(err.to_string().contains("null rounds"), "{err}");

    // The first block after the stall: accepted by its node, and by every other.
    let block = first_win(&mut a, &miners[0], late);
    let e = block.header.epoch;
    assert!(e - head.epoch > finality);
    assert_eq!(
        a.receive_block(block.clone(), g.slot_time(e)).unwrap(),
        BlockVerdict::Accepted
    );
    assert_eq!(
        b.receive_block(block.clone(), g.slot_time(e)).unwrap(),
        BlockVerdict::Accepted
    );
    assert_eq!(
        (a.head_hash(), b.head_hash()),
        (block_tipset(&block), block_tipset(&block))
    );
    assert_eq!(a.chain().head(), b.chain().head());
    assert_eq!(a.chain().head().epoch, e);
    // The chain goes on, and a third node syncs all of it.
    run(&mut a, &ms, e + 1, e + 10);
    sync(&mut b, &a);
    assert_eq!(a.head_hash(), b.head_hash());
    let dc = tempfile::tempdir().unwrap();
    let mut c = open(dc.path(), &g);
    sync(&mut c, &a);
    assert_eq!(c.head_hash(), a.head_hash());
    assert_eq!(c.chain().head(), a.chain().head());
    assert!(c.tipset_at(head.epoch + 1).is_none(), "a null round");
}

/// The hash of the tipset made of `block` alone.
fn block_tipset(block: &FullBlock) -> [u8; 32] {
    TipsetKey::new(vec![block.id()]).hash()
}

#[test]
fn two_miners_ending_a_long_stall_apart_converge() {
    let (g, miners) = genesis_file(2);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = open(da.path(), &g);
    let mut b = open(db.path(), &g);
    let ms: Vec<&Miner> = miners.iter().collect();
    let finality = g.policy.chain_finality;
    let stall = finality + 10;
    run(&mut a, &ms, 1, 5);
    run_until_quiet(&mut a, &ms, stall + 80);
    sync(&mut b, &a);
    let base = a.head().clone();

    // After the stall, miner 0 on A and miner 1 on B each make a block on the old head without
    // seeing the other's: a fork whose common ancestor is more than finality behind both.
    let on_a = first_win(&mut a, &miners[0], base.epoch + stall + 1);
    let on_b = first_win(&mut b, &miners[1], on_a.header.epoch + 1);
    let (ea, eb) = (on_a.header.epoch, on_b.header.epoch);
    assert!(ea - base.epoch > finality && eb > ea);
    assert_eq!(
        a.receive_block(on_a.clone(), g.slot_time(ea)).unwrap(),
        BlockVerdict::Accepted
    );
    assert_eq!(
        b.receive_block(on_b.clone(), g.slot_time(eb)).unwrap(),
        BlockVerdict::Accepted
    );
    // Each learns the other's block: both settle on the heavier tipset, one of them reverting
    // its own (a tipset committed with the null rounds before it) back to the old head.
    a.receive_block(on_b.clone(), g.slot_time(eb)).unwrap();
    b.receive_block(on_a.clone(), g.slot_time(eb)).unwrap();
    assert_eq!(a.head_hash(), b.head_hash());
    assert_eq!(a.chain().head(), b.chain().head());
    // Either way, the losing block's node reverted it across the stall (the ancestor is more
    // than finality behind, the reverted tipset is not) and applied the winner after its own
    // null rounds: its state is the winner's, and the losing epoch is off the chain.
    let (winner, loser) = if a.head_hash() == block_tipset(&on_a) {
        (&on_a, &on_b)
    } else {
        (&on_b, &on_a)
    };
    assert_eq!(a.head_hash(), block_tipset(winner));
    assert_eq!(a.head().parents, base.key);
    for n in [&a, &b] {
        assert!(n.tipset_at(loser.header.epoch).is_none());
        assert_eq!(
            n.tipset_at(winner.header.epoch).unwrap().key.0,
            vec![winner.id()]
        );
        assert!((base.epoch + 1..winner.header.epoch).all(|e| n.tipset_at(e).is_none()));
    }
    // And they go on together.
    run(&mut a, &ms, eb + 1, eb + 10);
    sync(&mut b, &a);
    assert_eq!(a.head_hash(), b.head_hash());
    assert_eq!(a.chain().head(), b.chain().head());
}

/// A node at epoch 5 or later with a transfer pending, and the first winning block on its head
/// (carrying the transfer under its aggregate), the miner that made it and the time to receive it.
fn node_with_a_block_to_receive(
    g: &GenesisFile,
    miners: &[Miner],
    dir: &std::path::Path,
) -> (NodeCore, FullBlock, SignedMessage, u64) {
    let mut a = open(dir, g);
    let ms: Vec<&Miner> = miners.iter().collect();
    run(&mut a, &ms, 1, 5);
    let owner = Address::Bls(key(10).public_key());
    let transfer = Message {
        from: owner,
        to: Address::Bls(key(11).public_key()),
        nonce: a.next_nonce(&owner).unwrap(),
        value: TokenAmount::tokens(1),
        method: Method::Send,
        gas_limit: 1_000_000,
        gas_price: g.policy.min_gas_price,
    }
    .sign(&g.policy.network, &key(10));
    a.push_message(transfer.clone()).unwrap();
    let mut e = a.head_epoch() + 1;
    let good = loop {
        if let Some(b) = ms.iter().find_map(|m| try_block(&mut a, m, e)) {
            break b;
        }
        e += 1;
    };
    assert!(good.messages.contains(&transfer.message));
    assert!(good.header.bls_aggregate.is_some());
    (a, good, transfer, g.slot_time(e))
}

/// `block` with these messages and aggregate, its messages root and header signature made to
/// match (as a dishonest miner would make it).
fn remade(
    block: &FullBlock,
    worker: &SecretKey,
    network: &str,
    messages: Vec<Message>,
    bls_aggregate: Option<Signature>,
) -> FullBlock {
    let mut b = block.clone();
    b.header.messages_root = messages_root(&messages);
    b.header.bls_aggregate = bls_aggregate;
    b.messages = messages;
    b.header.signature = worker.sign(&b.header.signing_bytes(network));
    b
}

/// What the node can observe of its committed state: head tipset, state head, the owner's balance
/// and nonce, and whether the transfer is still pending.
type Observed = (
    [u8; 32],
    lode_chain::store::Head,
    TokenAmount,
    Option<u64>,
    bool,
    usize,
);

fn observed(a: &NodeCore, transfer: &SignedMessage) -> Observed {
    let owner = transfer.message.from;
    (
        a.head_hash(),
        a.chain().head(),
        a.balance(&owner),
        a.account(&owner).map(|s| s.nonce),
        a.mempool().contains(&transfer.id()),
        a.mempool().len(),
    )
}

#[test]
fn blocks_with_a_bad_aggregate_are_refused_with_their_fault_and_change_nothing() {
    let (g, miners) = genesis_file(2);
    let d = tempfile::tempdir().unwrap();
    let (mut a, good, transfer, now) = node_with_a_block_to_receive(&g, &miners, d.path());
    let m = miners.iter().find(|m| m.id == good.header.miner).unwrap();
    let net = g.policy.network.clone();
    // The signatures the producer aggregated, as the pool remembers them.
    let signed: Vec<SignedMessage> = good
        .messages
        .iter()
        .map(|msg| a.mempool().signed(msg).unwrap())
        .collect();
    let agg =
        |s: &[&SignedMessage]| Some(Signature::aggregate(s.iter().map(|m| &m.signature)).unwrap());
    let all: Vec<&SignedMessage> = signed.iter().collect();
    assert_eq!(
        agg(&all),
        good.header.bls_aggregate,
        "the fixture's aggregate"
    );
    let n = good.messages.len();
    let at = good
        .messages
        .iter()
        .position(|msg| *msg == transfer.message)
        .unwrap();
    // The transfer with the next nonce: a valid signature of a message not in the block.
    let next = Message {
        nonce: transfer.message.nonce + 1,
        ..transfer.message.clone()
    }
    .sign(&net, &key(10));
    let stranger = Message {
        from: Address::Id(ActorId(9_999)),
        ..transfer.message.clone()
    }
    .sign(&net, &key(10));

    let cases: Vec<(&str, FullBlock, BlockFault)> = vec![
        (
            "an aggregate over different messages",
            {
                let mut other = all.clone();
                other[at] = &next;
                remade(&good, &m.worker, &net, good.messages.clone(), agg(&other))
            },
            BlockFault::BlsAggregate,
        ),
        (
            "the aggregate of the messages but one",
            {
                let mut fewer = all.clone();
                fewer.remove(at);
                let a = if fewer.is_empty() {
                    Some(next.signature)
                } else {
                    agg(&fewer)
                };
                remade(&good, &m.worker, &net, good.messages.clone(), a)
            },
            BlockFault::BlsAggregate,
        ),
        (
            "messages without an aggregate",
            remade(&good, &m.worker, &net, good.messages.clone(), None),
            BlockFault::MissingAggregate,
        ),
        (
            "an aggregate without messages",
            remade(
                &good,
                &m.worker,
                &net,
                Vec::new(),
                good.header.bls_aggregate,
            ),
            BlockFault::UnexpectedAggregate,
        ),
        (
            "a message twice, with its signature twice in the aggregate",
            {
                let mut msgs = good.messages.clone();
                msgs.push(transfer.message.clone());
                let mut twice = all.clone();
                twice.push(&transfer);
                remade(&good, &m.worker, &net, msgs, agg(&twice))
            },
            BlockFault::DuplicateMessage {
                message: n,
                first: at,
            },
        ),
        (
            "a sender that is no actor",
            {
                let mut msgs = good.messages.clone();
                msgs.push(stranger.message.clone());
                let mut with = all.clone();
                with.push(&stranger);
                remade(&good, &m.worker, &net, msgs, agg(&with))
            },
            BlockFault::UnknownSender {
                message: n,
                sender: ActorId(9_999),
            },
        ),
    ];
    let before = observed(&a, &transfer);
    for (what, bad, fault) in cases {
        assert_ne!(bad.id(), good.id(), "{what}");
        let want = fault.to_string();
        let v = a.receive_block(bad.clone(), now).unwrap();
        assert!(
            matches!(&v, BlockVerdict::Rejected(why) if why.contains(&want)),
            "{what}: {v:?}, want {want:?}"
        );
        assert_eq!(observed(&a, &transfer), before, "{what}: the state changed");
        // Remembered as bad: refused again without work, with the same reason.
        assert_eq!(a.receive_block(bad, now).unwrap(), v, "{what}");
        assert_eq!(observed(&a, &transfer), before, "{what}");
    }
    // None of them counts as a second block by the miner, and the honest block is accepted.
    assert!(a.consensus_faults().is_empty());
    assert_eq!(
        a.receive_block(good.clone(), now).unwrap(),
        BlockVerdict::Accepted
    );
    assert_eq!(a.head_hash(), TipsetKey::new(vec![good.id()]).hash());
    assert!(
        !a.mempool().contains(&transfer.id()),
        "the transfer is included"
    );
    assert_eq!(
        a.account(&transfer.message.from).unwrap().nonce,
        transfer.message.nonce + 1
    );
}

#[test]
fn an_honest_header_with_other_messages_does_not_get_the_honest_block_refused() {
    // Anyone can pair a gossiped header with messages it does not commit to. The copy is
    // refused, but the header's id must not be held against the real block.
    let (g, miners) = genesis_file(2);
    let d = tempfile::tempdir().unwrap();
    let (mut a, good, transfer, now) = node_with_a_block_to_receive(&g, &miners, d.path());
    let mut altered = good.clone();
    altered.messages[0].value = TokenAmount::tokens(7);
    let mut dropped = good.clone();
    dropped.messages.pop();
    let mut added = good.clone();
    added.messages.push(transfer.message.clone());
    let mut too_many = good.clone();
    too_many.messages =
        vec![transfer.message.clone(); CoreConfig::default().max_block_messages + 1];
    let before = observed(&a, &transfer);
    for (what, copy) in [
        ("a message altered", altered),
        ("a message dropped", dropped),
        ("a message added", added),
        ("more messages than a block may have", too_many),
    ] {
        assert_eq!(copy.id(), good.id());
        let v = a.receive_block(copy, now).unwrap();
        assert!(matches!(v, BlockVerdict::Rejected(_)), "{what}: {v:?}");
        assert_eq!(observed(&a, &transfer), before, "{what}");
    }
    // Synced copies are refused too, and poison nothing either.
    let copy = FullTipset {
        blocks: vec![FullBlock {
            messages: Vec::new(),
            ..good.clone()
        }],
    };
    assert!(a.import(vec![copy], now).is_err());
    assert_eq!(
        a.receive_block(good.clone(), now).unwrap(),
        BlockVerdict::Accepted
    );
    assert_eq!(a.head_hash(), TipsetKey::new(vec![good.id()]).hash());
}

#[test]
fn receipts_are_found_by_message_id_and_rebuilt_when_the_head_lost_them() {
    use lode_chain::actors::miner::MinerMethod as M;
    use lode_chain::error::ExitCode;
    let (g, miners) = genesis_file(2);
    let d = tempfile::tempdir().unwrap();
    let network = g.policy.network.clone();
    let send = |from: u8, to: Address, method: Method, value: TokenAmount| {
        Message {
            from: Address::Bls(key(from).public_key()),
            to,
            nonce: 0,
            value,
            method,
            gas_limit: 10_000_000,
            gas_price: g.policy.min_gas_price,
        }
        .sign(&network, &key(from))
    };
    // A transfer that succeeds, and a withdrawal by an account that does not control the miner.
    let ok = send(
        10,
        Address::Bls(key(12).public_key()),
        Method::Send,
        TokenAmount::tokens(1),
    );
    let refused = send(
        11,
        miners[0].id.into(),
        Method::Miner(M::WithdrawBalance {
            amount: TokenAmount::tokens(1),
        }),
        TokenAmount::ZERO,
    );
    let (head, epoch) = {
        let mut a = open(d.path(), &g);
        let ok_id = a.push_message(ok.clone()).unwrap();
        let refused_id = a.push_message(refused.clone()).unwrap();
        assert!(a.search_message(&ok_id).unwrap().is_none(), "still pending");
        let ms: Vec<&Miner> = miners.iter().collect();
        // Epoch by epoch until both are executed: they are then in the head tipset.
        for e in 1..=20 {
            run(&mut a, &ms, e, e);
            if a.search_message(&ok_id).unwrap().is_some()
                && a.search_message(&refused_id).unwrap().is_some()
            {
                break;
            }
        }
        let found = a
            .search_message(&ok_id)
            .unwrap()
            .expect("the transfer was executed");
        assert_eq!(found.epoch, a.head_epoch());
        assert_eq!(found.receipt.exit_code, ExitCode::Ok);
        assert!(found.receipt.error.is_empty());
        assert_eq!(a.tipset_at(found.epoch).unwrap().key, found.tipset);
        let no = a
            .search_message(&refused_id)
            .unwrap()
            .expect("executed too");
        assert_ne!(no.receipt.exit_code, ExitCode::Ok);
        assert!(!no.receipt.error.is_empty());
        assert!(a.search_message(&[9; 32]).unwrap().is_none());
        (a.head_hash(), a.head_epoch())
    };
    // The process died after the head's state commit and before its receipts: opening applies
    // the head again, receipts and all, and the chain is where it was.
    {
        let db = sled::open(d.path().join("blocks")).unwrap();
        let receipts = db.open_tree("receipts").unwrap();
        assert!(receipts.remove(head).unwrap().is_some());
        db.flush().unwrap();
    }
    let a = open(d.path(), &g);
    assert_eq!((a.head_hash(), a.head_epoch()), (head, epoch));
    let found = a.search_message(&ok.id()).unwrap().unwrap();
    assert_eq!(
        (found.epoch, found.receipt.exit_code),
        (epoch, ExitCode::Ok)
    );
    let no = a.search_message(&refused.id()).unwrap().unwrap();
    assert_ne!(no.receipt.exit_code, ExitCode::Ok);
}

/// Second blocks by `good`'s miner at its epoch on its parents that fail the header checks, each
/// with other messages than `good` (so another id), named by what is wrong.
fn forged_twins(
    good: &FullBlock,
    worker: &SecretKey,
    g: &GenesisFile,
) -> Vec<(&'static str, FullBlock)> {
    let net = g.policy.network.clone();
    let base = remade(good, worker, &net, Vec::new(), None);
    let resign = |mut b: FullBlock| {
        b.header.signature = worker.sign(&b.header.signing_bytes(&net));
        b
    };
    vec![
        ("a header signature over other bytes", {
            let mut b = base.clone();
            b.header.signature = worker.sign(b"not the header");
            b
        }),
        ("a header signed by another key", {
            let mut b = base.clone();
            b.header.signature = key(99).sign(&b.header.signing_bytes(&net));
            b
        }),
        ("a bad election proof", {
            let mut b = base.clone();
            b.header.election_proof = worker.sign(b"not the election");
            resign(b)
        }),
        ("a bad ticket", {
            let mut b = base.clone();
            b.header.ticket = worker.sign(b"not the ticket");
            resign(b)
        }),
        ("a bad win count", {
            let mut b = base.clone();
            b.header.win_count += 1;
            resign(b)
        }),
        ("a bad Winning PoSt", {
            let mut b = base.clone();
            b.header.winning_post[0] ^= 1;
            resign(b)
        }),
    ]
}

#[test]
fn a_forged_second_header_received_after_the_honest_block_makes_no_consensus_fault() {
    let (g, miners) = genesis_file(2);
    let d = tempfile::tempdir().unwrap();
    let (mut a, good, _, now) = node_with_a_block_to_receive(&g, &miners, d.path());
    let m = miners.iter().find(|m| m.id == good.header.miner).unwrap();
    assert_eq!(
        a.receive_block(good.clone(), now).unwrap(),
        BlockVerdict::Accepted
    );
    let head = a.head_hash();
    assert_eq!(head, TipsetKey::new(vec![good.id()]).hash());
    for (what, forged) in forged_twins(&good, &m.worker, &g) {
        assert_ne!(forged.id(), good.id(), "{what}");
        let v = a.receive_block(forged.clone(), now).unwrap();
        assert!(matches!(v, BlockVerdict::Rejected(_)), "{what}: {v:?}");
        assert!(
            a.consensus_faults().is_empty(),
            "{what}: a forged header was recorded as a consensus fault"
        );
        assert_eq!(a.head_hash(), head, "{what}");
        // Remembered as bad: refused again, still no fault.
        assert!(matches!(
            a.receive_block(forged, now).unwrap(),
            BlockVerdict::Rejected(_)
        ));
        assert!(a.consensus_faults().is_empty(), "{what}");
    }
    // The chain goes on from the honest block.
    let ms: Vec<&Miner> = miners.iter().collect();
    let e = a.head_epoch();
    run(&mut a, &ms, e + 1, e + 3);
    assert!(a.consensus_faults().is_empty());
}

/// Headers anyone can make (no key: the fields changed after signing) gossiped on the head are
/// refused before anything is stored, so they neither fill the block store nor make the node
/// revert its state to try a branch claiming more wins. On a fork whose state is not at hand a
/// slot takes at most 64 unchecked blocks: forged headers cannot pile up there either.
#[test]
fn forged_headers_are_refused_unstored_and_cannot_pile_up_in_a_slot() {
    let (g, miners) = genesis_file(2);
    let d = tempfile::tempdir().unwrap();
    let (mut a, good, _, now) = node_with_a_block_to_receive(&g, &miners, d.path());
    let head = a.head_hash();
    let root = a.chain().head().root;
    for i in 0..200u64 {
        let mut b = good.clone();
        // A branch that claims far more wins than the head: worth a reorganisation, if believed.
        b.header.win_count = 1_000 + i;
        let id = b.id();
        let v = a.receive_block(b, now).unwrap();
        assert!(matches!(v, BlockVerdict::Rejected(_)), "{v:?}");
        assert!(
            a.block(&id).unwrap().is_none(),
            "forged header {i} was stored"
        );
        assert_eq!(a.head_hash(), head);
        assert_eq!(a.chain().head().root, root);
    }
    assert_eq!(
        a.receive_block(good.clone(), now).unwrap(),
        BlockVerdict::Accepted
    );
    // A fork at the honest block's epoch, stored by sync without being applied (its header is
    // forged): blocks on it cannot be checked until it is, and only 64 are taken per slot.
    let mut fork = good.clone();
    fork.header.ticket = key(98).sign(b"another ticket");
    a.import(
        vec![FullTipset {
            blocks: vec![fork.clone()],
        }],
        now,
    )
    .unwrap();
    let fork_meta = a
        .tipset(&TipsetKey::new(vec![fork.id()]).hash())
        .unwrap()
        .clone();
    assert!(fork_meta.weight.is_none(), "the fork was applied");
    let epoch = good.header.epoch + 1;
    let later = g.slot_time(epoch);
    let child = |n: u64| {
        let mut b = good.clone();
        b.header.epoch = epoch;
        b.header.parents = fork_meta.key.0.clone();
        b.header.timestamp = later;
        b.header.beacon = TicketBeacon.beacon(&fork_meta.min_ticket, epoch);
        b.header.win_count = 0;
        b.header.parent_weight = u128::from(n);
        b
    };
    for n in 0..64 {
        let v = a.receive_block(child(n), later).unwrap();
        assert_eq!(v, BlockVerdict::Stored, "block {n} on the fork");
    }
    // Refused with an error, not a rejection (which would cost the sender its score): nothing
    // shows the block bad, and an honest peer may be relaying a fork block.
    match a.receive_block(child(64), later) {
        Err(e @ NodeError::SlotFull { held: 64, .. }) => {
            assert!(e.to_string().contains("already holds 64 blocks"), "{e}")
        }
        other => panic!("the 65th unchecked block in a slot: {other:?}"),
    }
    assert!(a.block(&child(64).id()).unwrap().is_none());
    // The honest chain goes on.
    let ms: Vec<&Miner> = miners.iter().collect();
    let e = a.head_epoch();
    run(&mut a, &ms, e + 1, e + 3);
    assert!(a.consensus_faults().is_empty());
}

#[test]
fn a_forged_second_header_stored_before_the_honest_block_neither_refuses_it_nor_makes_a_fault() {
    let (g, miners) = genesis_file(2);
    for case in 0.. {
        // Every node is built the same way: the same head, the same honest block to receive.
        let d = tempfile::tempdir().unwrap();
        let (mut a, good, _, now) = node_with_a_block_to_receive(&g, &miners, d.path());
        let m = miners.iter().find(|m| m.id == good.header.miner).unwrap();
        let mut cases = forged_twins(&good, &m.worker, &g);
        if case >= cases.len() {
            break;
        }
        let (what, forged) = cases.swap_remove(case);
        let head = a.head_hash();
        // The forged header is stored without being applied or checked, as sync stores a tipset
        // before (or without) switching to it.
        a.import(
            vec![FullTipset {
                blocks: vec![forged.clone()],
            }],
            now,
        )
        .unwrap();
        assert_eq!(a.head_hash(), head, "{what}");
        // The honest block: accepted, its tipset the head, and nobody accused.
        let v = a.receive_block(good.clone(), now).unwrap();
        assert_eq!(v, BlockVerdict::Accepted, "{what}");
        assert_eq!(
            a.head_hash(),
            TipsetKey::new(vec![good.id()]).hash(),
            "{what}"
        );
        assert!(
            a.consensus_faults().is_empty(),
            "{what}: a forged header was recorded as a consensus fault"
        );
        // The forged block was checked on the way, and is refused.
        let v = a.receive_block(forged, now).unwrap();
        assert!(matches!(v, BlockVerdict::Rejected(_)), "{what}: {v:?}");
        assert!(a.consensus_faults().is_empty(), "{what}");
    }
}

#[test]
fn a_genuine_equivocation_is_recorded_whichever_block_comes_first() {
    let (g, miners) = genesis_file(2);
    for twin_first in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let (mut a, good, _, now) = node_with_a_block_to_receive(&g, &miners, d.path());
        let m = miners.iter().find(|m| m.id == good.header.miner).unwrap();
        // A second block the miner really made: other messages, signed by its worker, and the
        // same (valid) ticket, election proof and Winning PoSt.
        let twin = remade(&good, &m.worker, &g.policy.network, Vec::new(), None);
        assert_ne!(twin.id(), good.id());
        if twin_first {
            // Stored unchecked first (as sync would), then the other block is received.
            a.import(
                vec![FullTipset {
                    blocks: vec![twin.clone()],
                }],
                now,
            )
            .unwrap();
            let v = a.receive_block(good.clone(), now).unwrap();
            assert!(
                matches!(v, BlockVerdict::Rejected(ref w) if w.contains("consensus fault")),
                "{v:?}"
            );
        } else {
            assert_eq!(
                a.receive_block(good.clone(), now).unwrap(),
                BlockVerdict::Accepted
            );
            let v = a.receive_block(twin.clone(), now).unwrap();
            assert!(
                matches!(v, BlockVerdict::Rejected(ref w) if w.contains("consensus fault")),
                "{v:?}"
            );
            assert_eq!(a.head_hash(), TipsetKey::new(vec![good.id()]).hash());
        }
        let faults = a.consensus_faults();
        assert_eq!(faults.len(), 1, "twin first: {twin_first}");
        let mut pair = [faults[0].first.id(), faults[0].second.id()];
        pair.sort();
        let mut want = [good.id(), twin.id()];
        want.sort();
        assert_eq!(pair, want);
        // Received again: refused, and recorded once.
        let again = if twin_first {
            good.clone()
        } else {
            twin.clone()
        };
        assert!(matches!(
            a.receive_block(again, now).unwrap(),
            BlockVerdict::Rejected(_)
        ));
        assert_eq!(a.consensus_faults().len(), 1);
    }
}

#[test]
fn twins_on_a_fork_off_the_canonical_chain_are_judged_when_their_slot_is_applied() {
    let (g, miners) = genesis_file(2);
    let net = g.policy.network.clone();
    for genuine in [false, true] {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut a, _, _, _) = node_with_a_block_to_receive(&g, &miners, da.path());
        let (mut b, s, _, now_s) = node_with_a_block_to_receive(&g, &miners, db.path());
        let head = a.head_hash();
        assert_eq!(b.head_hash(), head);
        // On B, a block S, then a block G on it: a fork A has not adopted.
        assert_eq!(
            b.receive_block(s.clone(), now_s).unwrap(),
            BlockVerdict::Accepted
        );
        let m = &miners[0];
        let honest = first_win(&mut b, m, s.header.epoch + 1);
        let now = g.slot_time(honest.header.epoch);
        // Its twin: the miner's own second block (other messages), or a forged one.
        let extra = Message {
            from: Address::Bls(key(11).public_key()),
            to: Address::Bls(key(10).public_key()),
            nonce: 0,
            value: TokenAmount::tokens(1),
            method: Method::Send,
            gas_limit: 1_000_000,
            gas_price: g.policy.min_gas_price,
        }
        .sign(&net, &key(11));
        let mut twin = remade(
            &honest,
            &m.worker,
            &net,
            vec![extra.message.clone()],
            Some(extra.signature),
        );
        if !genuine {
            twin.header.winning_post[0] ^= 1;
            twin.header.signature = m.worker.sign(&twin.header.signing_bytes(&net));
        }
        assert_ne!(twin.id(), honest.id());
        // A stores the twin and S (synced, not applied): the twin's parent is off A's chain.
        a.import(
            vec![
                FullTipset {
                    blocks: vec![twin.clone()],
                },
                FullTipset {
                    blocks: vec![s.clone()],
                },
            ],
            now,
        )
        .unwrap();
        assert_eq!(a.head_hash(), head);
        // The honest block is accepted (S applied under it) and its tipset is the head.
        assert_eq!(
            a.receive_block(honest.clone(), now).unwrap(),
            BlockVerdict::Accepted,
            "genuine: {genuine}"
        );
        assert_eq!(a.head_hash(), TipsetKey::new(vec![honest.id()]).hash());
        // Its slot was applied: the twin was checked against the same parent state.
        if genuine {
            let f = a.consensus_faults();
            assert_eq!(f.len(), 1);
            assert_eq!(
                (f[0].first.id(), f[0].second.id()),
                (honest.id(), twin.id())
            );
        } else {
            assert!(
                a.consensus_faults().is_empty(),
                "a forged header was recorded"
            );
            assert!(matches!(
                a.receive_block(twin, now).unwrap(),
                BlockVerdict::Rejected(_)
            ));
            assert!(a.consensus_faults().is_empty());
        }
    }
}
