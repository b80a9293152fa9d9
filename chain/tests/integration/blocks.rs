//! Blocks with one aggregate signature (`Chain::apply_tipset`): an honest block applies exactly as
//! its messages do one by one with their own signatures (`Chain::apply_epoch`), a message in two
//! blocks of a tipset runs once, and a block whose aggregate does not cover its messages — one
//! altered, removed or added, a repeated message, a wrong, missing or stray aggregate, a sender
//! without a key, messages whose gas limits sum above the block gas limit — is refused with the
//! rule it breaks, changing nothing.

#![allow(clippy::unwrap_used)]

use lode_testkit::harness::*;

use lode_chain::block::{Block, BlockMessages, messages_root};
use lode_chain::crypto::Signature;
use lode_chain::error::{BlockFault, BlockRejection};
use lode_chain::genesis::{GenesisMiner, GenesisSector};
use lode_chain::message::{Message, Method, SignedMessage};
use lode_chain::store::StateStore;
use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_chain::{ChainError, ExitCode, Genesis, Policy};
use lode_proofs::sector::SectorSize;

/// A 2 KiB genesis miner run by the harness's "worker", with two fake pre-sealed sectors.
fn genesis_miner(owner: &str, tag: &str) -> GenesisMiner {
    let policy = Policy::devnet();
    GenesisMiner {
        owner: key(owner).public_key(),
        worker: key("worker").public_key(),
        sector_size: SectorSize::S2KiB,
        balance: TokenAmount::tokens(50),
        peer_id: Vec::new(),
        multiaddrs: Vec::new(),
        sectors: (1..=2)
            .map(|n| GenesisSector {
                sector_number: n,
                comm_r: node(&format!("{tag} {n}")),
                comm_d: comm_d(2048, &[]),
                expiration: policy.min_sector_expiration + 10 * policy.epochs_in_day(),
            })
            .collect(),
    }
}

/// The harness genesis with `miners` genesis miners.
fn harness(miners: usize) -> (Harness, Vec<ActorId>) {
    let mut g: Genesis = devnet_genesis();
    g.miners = (0..miners)
        .map(|i| genesis_miner("owner", &format!("m{i}")))
        .collect();
    let h = Harness::from_genesis(StateStore::memory(), &g, Box::new(FakeVerifier), None);
    (h, g.miner_ids())
}

/// Transfers between the harness's accounts for the next epoch: by id and by key, two from one
/// sender (consecutive nonces).
fn transfers(h: &Harness) -> Vec<SignedMessage> {
    let net = &h.policy.network;
    let mut out = vec![
        h.message(
            "owner",
            h.id("client").into(),
            Method::Send,
            TokenAmount::tokens(3),
        ),
        h.message(
            "client",
            h.id("other").into(),
            Method::Send,
            TokenAmount::tokens(1),
        ),
    ];
    // The second message of "client", one nonce later.
    let mut next = out[1].message.clone();
    next.nonce += 1;
    next.value = TokenAmount::tokens(2);
    out.push(next.sign(net, &key("client")));
    // A sender named by its key.
    let mut by_key = h
        .message(
            "verifier",
            h.id("owner").into(),
            Method::Send,
            TokenAmount::atto(7),
        )
        .message;
    by_key.from = key("verifier").public_key().into();
    out.push(by_key.sign(net, &key("verifier")));
    out
}

/// Steps null rounds until `miners` all win the next epoch; their blocks carrying `messages`.
fn winning_blocks(h: &mut Harness, miners: &[ActorId], messages: &[SignedMessage]) -> Vec<Block> {
    loop {
        let blocks: Vec<Block> = miners
            .iter()
            .filter_map(|m| h.try_full_block(*m, fake_winning_proof, messages))
            .collect();
        if blocks.len() == miners.len() {
            return blocks;
        }
        h.step(Vec::new(), Vec::new());
    }
}

#[test]
fn an_honest_block_applies_as_its_messages_do_one_by_one() {
    let (mut a, miners) = harness(1);
    let (mut b, _) = harness(1);
    let msgs = transfers(&a);
    let block = winning_blocks(&mut a, &miners, &msgs).pop().unwrap();
    b.advance_to(a.epoch());
    assert_eq!(a.chain.head(), b.chain.head());
    assert_eq!(block.messages.len(), 4);
    assert_eq!(
        block.header.bls_aggregate,
        Some(Signature::aggregate(msgs.iter().map(|m| &m.signature)).unwrap())
    );
    // Ids do not depend on signatures: the block's messages have their signed forms' ids.
    let ids: Vec<[u8; 32]> = block.messages.iter().map(Message::id).collect();
    assert_eq!(ids, msgs.iter().map(SignedMessage::id).collect::<Vec<_>>());

    let ra = a.try_step_blocks(vec![block.clone()]).unwrap();
    let rb = b.step(vec![block.header.clone()], msgs.clone());
    assert_eq!(ra, rb);
    assert!(ra.iter().all(|r| r.exit_code == ExitCode::Ok), "{ra:?}");
    assert_eq!(a.chain.head(), b.chain.head());
    // Gas is charged on the signed size in both.
    assert_eq!(ra[0].gas_used, rb[0].gas_used);
    assert_eq!(
        a.balance(a.id("other")),
        START_BALANCE.checked_add(TokenAmount::tokens(3)).unwrap()
    );
}

#[test]
fn an_empty_block_has_no_aggregate_and_a_message_in_two_blocks_runs_once() {
    let (mut h, miners) = harness(2);
    let empty = winning_blocks(&mut h, &miners[..1], &[]).pop().unwrap();
    assert!(empty.header.bls_aggregate.is_none() && empty.messages.is_empty());
    assert!(h.try_step_blocks(vec![empty]).unwrap().is_empty());

    let msgs = transfers(&h);
    // Both blocks carry the first two messages; the second block also the others.
    let blocks = loop {
        let first = h.try_full_block(miners[0], fake_winning_proof, &msgs[..2]);
        let second = h.try_full_block(miners[1], fake_winning_proof, &msgs);
        if let (Some(first), Some(second)) = (first, second) {
            break vec![first, second];
        }
        h.step(Vec::new(), Vec::new());
    };
    let receipts = h.try_step_blocks(blocks).unwrap();
    assert_eq!(receipts.len(), 4, "{receipts:?}");
    assert!(receipts.iter().all(|r| r.exit_code == ExitCode::Ok));
    assert_eq!(
        h.balance(h.id("other")),
        START_BALANCE.checked_add(TokenAmount::tokens(3)).unwrap()
    );
}

/// The fault of a refused one-block tipset.
fn fault(e: ChainError) -> BlockFault {
    match e {
        ChainError::InvalidBlock {
            reason: BlockRejection::Block {
                index: 0, fault, ..
            },
            ..
        } => fault,
        other => panic!("not a block fault: {other:?}"),
    }
}

#[test]
fn blocks_their_aggregate_does_not_cover_are_refused_and_change_nothing() {
    let (mut h, miners) = harness(1);
    let msgs = transfers(&h);
    let good = winning_blocks(&mut h, &miners, &msgs).pop().unwrap();
    let net = h.policy.network.clone();
    let agg = |signed: &[&SignedMessage]| {
        Some(Signature::aggregate(signed.iter().map(|m| &m.signature)).unwrap())
    };
    // A block with these messages and aggregate, its root and header signature made to match.
    let remade = |messages: Vec<Message>, bls_aggregate: Option<Signature>| {
        let mut b = good.clone();
        b.header.messages_root = messages_root(&messages);
        b.header.bls_aggregate = bls_aggregate;
        b.messages = messages;
        h.resign(&mut b.header);
        b
    };
    let plain: Vec<Message> = msgs.iter().map(|m| m.message.clone()).collect();
    let stranger = Message {
        from: Address::Id(ActorId(9_999)),
        ..plain[0].clone()
    }
    .sign(&net, &key("owner"));
    let miner_sends = Message {
        from: Address::Id(miners[0]),
        ..plain[0].clone()
    }
    .sign(&net, &key("worker"));
    let extra = h.message(
        "other",
        h.id("owner").into(),
        Method::Send,
        TokenAmount::atto(1),
    );

    // Two messages, each within the block gas limit, together above it (signed properly, so
    // that the gas limit is the only rule broken).
    let limit = h.policy.block_gas_limit;
    let greedy: Vec<SignedMessage> = [(0, "owner"), (1, "client")]
        .into_iter()
        .map(|(i, who)| {
            Message {
                gas_limit: limit / 2 + 1,
                ..plain[i].clone()
            }
            .sign(&net, &key(who))
        })
        .collect();

    let cases: Vec<(&str, Block, BlockFault)> = vec![
        (
            "messages whose gas limits sum above the block gas limit",
            remade(
                greedy.iter().map(|m| m.message.clone()).collect(),
                agg(&greedy.iter().collect::<Vec<_>>()),
            ),
            BlockFault::GasLimit {
                total: 2 * (limit / 2 + 1),
                limit,
            },
        ),
        (
            "one message altered",
            {
                let mut m = plain.clone();
                m[1].value = TokenAmount::tokens(100);
                remade(m, good.header.bls_aggregate)
            },
            BlockFault::BlsAggregate,
        ),
        (
            "one message removed",
            remade(plain[1..].to_vec(), good.header.bls_aggregate),
            BlockFault::BlsAggregate,
        ),
        (
            "one message added",
            {
                let mut m = plain.clone();
                m.push(extra.message.clone());
                remade(m, good.header.bls_aggregate)
            },
            BlockFault::BlsAggregate,
        ),
        (
            "a message added with its signature in the aggregate, but not a key's",
            {
                let mut m = plain.clone();
                m.push(extra.message.clone());
                let mut forged = extra.clone();
                forged.signature = key("owner").sign(&extra.message.signing_bytes(&net));
                let mut all: Vec<&SignedMessage> = msgs.iter().collect();
                all.push(&forged);
                remade(m, agg(&all))
            },
            BlockFault::BlsAggregate,
        ),
        (
            "a message repeated",
            {
                let mut m = plain.clone();
                m.push(plain[0].clone());
                let mut all: Vec<&SignedMessage> = msgs.iter().collect();
                all.push(&msgs[0]);
                remade(m, agg(&all))
            },
            BlockFault::DuplicateMessage {
                message: 4,
                first: 0,
            },
        ),
        (
            "the aggregate of other signatures",
            remade(plain.clone(), agg(&[&msgs[0], &msgs[1]])),
            BlockFault::BlsAggregate,
        ),
        (
            "one signature for the aggregate",
            remade(plain.clone(), Some(msgs[0].signature)),
            BlockFault::BlsAggregate,
        ),
        (
            "no aggregate",
            remade(plain.clone(), None),
            BlockFault::MissingAggregate,
        ),
        (
            "an aggregate without messages",
            remade(Vec::new(), good.header.bls_aggregate),
            BlockFault::UnexpectedAggregate,
        ),
        (
            "a sender that does not exist",
            {
                let mut m = plain.clone();
                m.push(stranger.message.clone());
                let mut all: Vec<&SignedMessage> = msgs.iter().collect();
                all.push(&stranger);
                remade(m, agg(&all))
            },
            BlockFault::UnknownSender {
                message: 4,
                sender: ActorId(9_999),
            },
        ),
        (
            "a sender that is not an account",
            {
                let mut m = vec![miner_sends.message.clone()];
                m.extend(plain.clone());
                let mut all: Vec<&SignedMessage> = vec![&miner_sends];
                all.extend(msgs.iter());
                remade(m, agg(&all))
            },
            BlockFault::UnknownSender {
                message: 0,
                sender: miners[0],
            },
        ),
        (
            "the aggregate changed after the header was signed",
            {
                let mut b = good.clone();
                b.header.bls_aggregate = agg(&[&msgs[0]]);
                b
            },
            BlockFault::HeaderSignature,
        ),
    ];
    let head = h.chain.head();
    for (what, bad, want) in cases {
        let e = h.try_step_blocks(vec![bad]).unwrap_err();
        let got = fault(e);
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{what}");
        assert_eq!(h.chain.head(), head, "{what}: the state changed");
    }
    // Messages that are not the messages root's.
    let mut unrooted = good.clone();
    unrooted.messages.pop();
    let e = h.try_step_blocks(vec![unrooted]).unwrap_err();
    assert!(
        matches!(
            e,
            ChainError::InvalidBlock {
                reason: BlockRejection::MessagesRoot { index: 0 },
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(h.chain.head(), head);
    // The honest block is still accepted after all that.
    let receipts = h.try_step_blocks(vec![good]).unwrap();
    assert_eq!(receipts.len(), 4);
}

#[test]
fn an_empty_selection_makes_a_block_without_aggregate() {
    assert_eq!(
        BlockMessages::from_signed(&[]).unwrap(),
        BlockMessages {
            messages: Vec::new(),
            bls_aggregate: None
        }
    );
}
