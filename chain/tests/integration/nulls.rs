//! Null rounds committed with the tipset after them ([`Chain::run_null_rounds`],
//! [`Chain::apply_epoch_after`]): the state, receipts and rewards equal those of the same null
//! rounds committed one by one and then the tipset, for spans that cross deadline crons and
//! outlast chain finality; a block names the root after the null rounds; the whole span reverts
//! as one commit, and a revert into it is refused. A halt (a run of null rounds) excuses the
//! Window PoSt of every deadline whose whole window it covers, and no other.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use lode_testkit::harness::*;

use lode_chain::actors::power;
use lode_chain::chain::{AfterNulls, EpochInput, NullRound};
use lode_chain::error::{BlockRejection, StoreError};
use lode_chain::message::Method;
use lode_chain::store::Overlay;
use lode_chain::types::{Address, Epoch, TokenAmount};
use lode_chain::{Chain, ChainError};

use lode_chain::actors::miner::{Deadline, DeadlineInfo};
use lode_chain::keys;
use lode_chain::types::PowerPair;

use crate::genesis::{TWO_SECTORS, deadline_of, harness, run, two_miners};

/// The null rounds `from..=to`, with the harness's beacons.
fn nulls(from: Epoch, to: Epoch) -> Vec<NullRound> {
    (from..=to)
        .map(|epoch| NullRound {
            epoch,
            beacon: beacon(epoch),
        })
        .collect()
}

/// Every committed record.
fn records(chain: &Chain) -> Vec<(Vec<u8>, Vec<u8>)> {
    Overlay::new(chain.store()).scan_raw(b"")
}

fn network_qa(chain: &Chain, after: &AfterNulls) -> u128 {
    chain
        .view_after(after, |rt| {
            let st = power::load(rt).unwrap();
            power::current_total(rt, &st).qa
        })
        .unwrap()
}

#[test]
fn a_tipset_after_null_rounds_commits_what_the_rounds_one_by_one_give() {
    let g = two_miners();
    // `one` applies every null round as its own epoch; `span` commits them with the tipset.
    let (mut one, ids) = harness(&g);
    let (mut span, _) = harness(&g);
    one.check_every_epoch = false;
    span.check_every_epoch = false;
    let finality = one.policy.chain_finality;
    let period = one.policy.wpost_proving_period();
    for _ in 1..=5 {
        let blocks: Vec<_> = ids.iter().filter_map(|&m| one.block(m)).collect();
        one.step(blocks.clone(), Vec::new());
        span.step(blocks, Vec::new());
    }
    assert_eq!(one.chain.head(), span.chain.head());

    // Roots of `one` after every epoch, to compare reverts with.
    let mut roots: BTreeMap<Epoch, [u8; 32]> = BTreeMap::new();
    let mut blocks_after_nulls = 0;
    let mut bases = Vec::new();
    let mut qa = Vec::new();
    // No null round, a few, more than finality, more than a proving period (the miners' deadline
    // crons run inside the span: a window only partly inside it faults the miner for its missed
    // Window PoSt, a window wholly inside it is excused).
    for gap in [0, 3, finality + 5, period + 20] {
        let h = one.chain.head().epoch;
        bases.push(h);
        for _ in 0..gap {
            let e = one.chain.head().epoch + 1;
            let round = one
                .chain
                .run_null_rounds(one.chain.at_head(), nulls(e, e))
                .unwrap();
            one.chain.commit_null_rounds(round).unwrap();
            roots.insert(one.chain.head().epoch, one.chain.head().root);
        }
        let e = h + gap + 1;
        let blocks: Vec<_> = ids.iter().filter_map(|&m| one.block(m)).collect();
        if gap > 0 && !blocks.is_empty() {
            blocks_after_nulls += 1;
        }
        let other = Address::Id(one.id("other"));
        let input = EpochInput {
            epoch: e,
            beacon: beacon(e),
            blocks,
            messages: vec![one.message("client", other, Method::Send, TokenAmount::atto(7))],
        };
        let qa_one = one.chain.view(|rt| {
            let st = power::load(rt).unwrap();
            power::current_total(rt, &st).qa
        });
        qa.push(qa_one);
        let root_one = one.chain.head().root;
        let expected = one.chain.apply_epoch(&input).unwrap();

        // The span's null rounds, in two parts: extending an earlier result runs only the rest.
        let rounds = nulls(h + 1, h + gap);
        let (first, rest) = rounds.split_at(rounds.len() / 2);
        let part = span
            .chain
            .run_null_rounds(span.chain.at_head(), first.iter().copied())
            .unwrap();
        let after = span
            .chain
            .run_null_rounds(part, rest.iter().copied())
            .unwrap();
        assert_eq!((after.epoch(), after.rounds()), (h + gap, gap));
        assert_eq!(after.base(), span.chain.head());
        // Nothing was committed, and the scratch state is the one-by-one state.
        assert_eq!(span.chain.head().epoch, h);
        assert_eq!(after.root(), root_one, "gap {gap}: the parent state root");
        assert_eq!(network_qa(&span.chain, &after), qa_one, "gap {gap}");
        let whole = span
            .chain
            .run_null_rounds(span.chain.at_head(), rounds.iter().copied())
            .unwrap();
        assert_eq!(whole, after);

        let got = span.chain.apply_epoch_after(&after, &input).unwrap();
        assert_eq!(got, expected, "gap {gap}: root, receipts and rewards");
        assert_eq!(span.chain.head(), one.chain.head());
        assert_eq!(records(&span.chain), records(&one.chain), "gap {gap}");
        roots.insert(e, expected.root);
        span.assert_invariants();
    }
    assert!(
        blocks_after_nulls > 0,
        "no block was made after null rounds"
    );

    // The last span (longer than finality and a proving period) reverts as one commit.
    let base = *bases.last().unwrap();
    let head = span.chain.head();
    // Inside the span: refused, nothing changes.
    let inside = base + 10;
    match span.chain.revert_to(inside) {
        Err(ChainError::Store(StoreError::InsideSpan {
            epoch,
            span_start,
            span_end,
        })) => assert_eq!((epoch, span_start, span_end), (inside, base, head.epoch)),
        other => panic!("{other:?}"),
    }
    assert_eq!(span.chain.head(), head);
    let back = span.chain.revert_to(base).unwrap();
    assert_eq!(back.root, roots[&base]);
    // And forward again over the same span.
    let again = span
        .chain
        .run_null_rounds(span.chain.at_head(), nulls(base + 1, head.epoch - 1));
    let again = again.unwrap();
    assert_eq!(again.root(), roots[&(head.epoch - 1)]);
}

#[test]
fn null_rounds_are_checked_against_the_head_and_the_tipset() {
    let (mut h, _) = harness(&two_miners());
    h.check_every_epoch = false;
    h.advance_to(3);
    // Out of order, or not starting right after the head.
    for bad in [nulls(5, 6), vec![nulls(4, 4)[0], nulls(6, 6)[0]]] {
        let err = h.chain.run_null_rounds(h.chain.at_head(), bad).unwrap_err();
        assert!(
            matches!(err, ChainError::NullRoundOutOfOrder { .. }),
            "{err}"
        );
    }
    let after = h
        .chain
        .run_null_rounds(h.chain.at_head(), nulls(4, 6))
        .unwrap();
    // A tipset must come right after the last null round.
    for epoch in [6, 8] {
        let input = EpochInput {
            epoch,
            beacon: beacon(epoch),
            ..EpochInput::default()
        };
        let err = h.chain.apply_epoch_after(&after, &input).unwrap_err();
        assert!(
            matches!(
                err,
                ChainError::InvalidBlock {
                    reason: BlockRejection::NotNextEpoch { expected: 7, .. },
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(h.chain.head().epoch, 3);
    // Once the head moves, the null rounds computed on the old one are refused.
    h.step(Vec::new(), Vec::new());
    let input = EpochInput {
        epoch: 7,
        beacon: beacon(7),
        ..EpochInput::default()
    };
    for err in [
        h.chain.apply_epoch_after(&after, &input).unwrap_err(),
        h.chain.view_after(&after, |_| ()).unwrap_err(),
        h.chain
            .run_null_rounds(after.clone(), nulls(7, 7))
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, ChainError::StaleNullRounds { base: 3, head: 4 }),
            "{err}"
        );
    }
    assert_eq!(h.chain.head().epoch, 4);
}

/// Commits the null rounds `from..=to` (by themselves) and then an empty epoch after them.
fn halt(h: &mut Harness, to: Epoch) {
    let from = h.epoch() + 1;
    let after = h
        .chain
        .run_null_rounds(h.chain.at_head(), nulls(from, to))
        .unwrap();
    let next = to + 1;
    let input = EpochInput {
        epoch: next,
        beacon: beacon(next),
        ..EpochInput::default()
    };
    h.chain.apply_epoch_after(&after, &input).unwrap();
    h.assert_invariants();
}

fn faults(h: &Harness, m: lode_chain::types::ActorId) -> Vec<u64> {
    let d = deadline_of(h, m);
    let dl: Deadline = h.get(&keys::deadline(m, d)).unwrap();
    dl.partitions[0].faults.iter().copied().collect()
}

#[test]
fn a_halt_excuses_the_window_posts_of_the_deadlines_it_covers_whole() {
    let g = two_miners();
    let (mut h, ids) = harness(&g);
    let (a, b) = (ids[0], ids[1]);
    h.check_every_epoch = false;
    let pp = h.policy.wpost_proving_period();
    // A proving period in which both prove, each at the first epoch of its window: every window
    // open at the halt's start is proven already, every later one lies wholly inside the halt.
    run(&mut h, &ids, &[], pp, None);
    let debt = |h: &Harness, m| h.miner_state(m).fee_debt;
    // Two proving periods and a bit of null rounds: nobody could post, nobody is faulted.
    let end = pp + 2 * pp + 7;
    halt(&mut h, end);
    for m in [a, b] {
        assert_eq!(h.claim(m).power, TWO_SECTORS, "{m}");
        assert_eq!(faults(&h, m), Vec::<u64>::new(), "{m}");
        assert_eq!(debt(&h, m), TokenAmount::ZERO, "{m}");
    }
    // And they go on proving after it.
    let seen = run(&mut h, &ids, &[], end + 1 + pp, None);
    assert!(seen.posts(a) > 0 && seen.posts(b) > 0, "{seen:?}");
    assert_eq!(h.claim(a).power, TWO_SECTORS);
    assert_eq!(h.claim(b).power, TWO_SECTORS);

    // The same stretch as epochs without blocks that are not null rounds (what a harness or a
    // chain replayed without its null-round marks gives): the missed windows fault both.
    let (mut blockless, _) = harness(&g);
    blockless.check_every_epoch = false;
    run(&mut blockless, &ids, &[], pp, None);
    blockless.advance_to(end + 1);
    for m in [a, b] {
        assert_eq!(blockless.claim(m).power, PowerPair::ZERO, "{m}");
        assert_eq!(faults(&blockless, m), vec![1, 2], "{m}");
    }
}

#[test]
fn a_halt_that_starts_inside_an_unproven_window_faults_that_deadline() {
    let (mut h, ids) = harness(&two_miners());
    let (a, b) = (ids[0], ids[1]);
    h.check_every_epoch = false;
    let pp = h.policy.wpost_proving_period();
    run(&mut h, &ids, &[], pp, None);
    // B's next window opens with a block in which B does not post; the halt starts right after.
    let d = deadline_of(&h, b);
    let mut window = h.deadline(b, d);
    if window.open <= h.epoch() {
        window = DeadlineInfo::new(&h.policy, window.period_start + pp, d);
    }
    run(&mut h, &[a], &[], window.open, None);
    assert_eq!(faults(&h, b), Vec::<u64>::new());
    halt(&mut h, window.open + 2 * pp);
    // B had a block in its window and did not post: faulted once, then excused (its later windows
    // were wholly inside the halt); A, which posted before the halt, keeps its power.
    assert_eq!(faults(&h, b), vec![1, 2]);
    assert_eq!(h.claim(b).power, PowerPair::ZERO);
    assert_eq!(h.claim(a).power, TWO_SECTORS);
    assert_eq!(faults(&h, a), Vec::<u64>::new());
}
