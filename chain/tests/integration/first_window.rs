//! A new sector's first proving period: the chain puts a sector prove-committed at epoch `e` only
//! in a deadline that is neither open nor the next to open, whose challenge is drawn after `e`.
//! So a sector committed at the last epoch its deadline still takes sectors (just before that
//! deadline's challenge) is in the challenge and proven in that very window, and one committed
//! after a deadline's challenge but before its window goes to a later deadline, never into a
//! partition whose challenge has been drawn: neither is ever counted missing or faulty for a
//! window it could not be proven in, and each has its power after its first proof.

#![allow(clippy::unwrap_used)]

use lode_testkit::harness::*;

use lode_chain::ExitCode;
use lode_chain::actors::miner::{Deadline, MinerMethod, SectorOnChain};
use lode_chain::keys;
use lode_chain::message::Method;
use lode_chain::types::{ActorId, Epoch, PowerPair, TokenAmount};

/// Proves the pre-committed sector `n` with its message applied at epoch `at`.
fn prove_commit_at(h: &mut Harness, m: ActorId, n: u64, at: Epoch) -> SectorOnChain {
    assert!(at >= h.seed_ready(m, n) && at > h.epoch());
    h.advance_to(at - 1);
    let proofs = h.seal_proof(m, n);
    let r = h.send(
        "worker",
        m,
        Method::Miner(MinerMethod::ProveCommitSector {
            sector_number: n,
            proofs,
        }),
        TokenAmount::ZERO,
    );
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    assert_eq!(h.epoch(), at);
    h.sector(m, n).unwrap()
}

fn deadline_record(h: &Harness, m: ActorId, index: u64) -> Deadline {
    h.get(&keys::deadline(m, index)).unwrap_or_default()
}

/// No sector of the miner is faulty, and it owes nothing.
fn assert_no_faults(h: &Harness, m: ActorId, when: &str) {
    for i in 0..h.policy.wpost_period_deadlines {
        for (p, part) in deadline_record(h, m, i).partitions.iter().enumerate() {
            assert!(
                part.faults.is_empty(),
                "{when}: deadline {i} partition {p} has faults {:?}",
                part.faults
            );
        }
    }
    assert!(h.miner_state(m).fee_debt.is_zero(), "{when}: fee debt");
}

fn power(sectors: u64) -> PowerPair {
    PowerPair {
        raw: 2048 * sectors as u128,
        qa: 2048 * sectors as u128,
    }
}

#[test]
fn sectors_committed_around_a_challenge_are_proven_in_their_first_window_without_a_fault() {
    let mut h = Harness::new();
    let p = h.policy.clone();
    let m = h.create_miner(TokenAmount::tokens(20));
    for n in [1, 2] {
        let exp = h.cc_expiration();
        let r = h.precommit(m, n, Vec::new(), &[], exp);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    }
    // The last epoch of a period's last window: deadline 0 of the next period opens at the next
    // epoch (so it takes no sector), deadline 1 still does, its challenge `window - lookback - 1`
    // epochs later.
    let period = p.wpost_proving_period();
    let start = h.miner_state(m).proving_period_start;
    let ready = h.seed_ready(m, 2);
    let mut e = start + period - 1;
    while e < ready {
        e += period;
    }
    let s1 = prove_commit_at(&mut h, m, 1, e);
    assert_eq!(
        s1.deadline, 1,
        "the first deadline that still takes sectors"
    );
    let d1 = h.deadline(m, 1);
    assert!(d1.challenge > e, "committed before the challenge");
    assert_eq!(
        d1.challenge - e,
        p.wpost_challenge_window - p.wpost_challenge_lookback + 1,
        "as late as deadline 1 takes sectors"
    );

    // Right after deadline 1's challenge, before its window: deadline 1 has room (one sector in
    // a two-sector partition) and would be preferred, but its challenge is drawn.
    let e2 = d1.challenge + 1;
    assert!(e2 < d1.open);
    let s2 = prove_commit_at(&mut h, m, 2, e2);
    assert_ne!(
        s2.deadline, 1,
        "not into a partition whose challenge is drawn"
    );
    let d2 = h.deadline(m, s2.deadline);
    assert!(d2.challenge > e2 && d2.open >= d1.close);
    assert_eq!(
        deadline_record(&h, m, 1).partitions[0].sectors,
        [1].into(),
        "deadline 1's partition is what its challenge saw"
    );
    assert_eq!(h.claim(m).power, PowerPair::ZERO, "no power before a proof");

    // Deadline 1's window: sector 1, unproven, is proven with the partition.
    let r = h.submit_post(m, 1, s1.partition, &[]);
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    assert_eq!(h.claim(m).power, power(1));
    h.advance_to(d1.last());
    assert_no_faults(&h, m, "after deadline 1's first window");
    assert_eq!(h.claim(m).power, power(1));

    // Sector 2's first window.
    let r = h.submit_post(m, s2.deadline, s2.partition, &[]);
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    assert_eq!(h.claim(m).power, power(2));
    h.advance_to(d2.last());
    assert_no_faults(&h, m, "after sector 2's first window");

    // A whole further period proven: still no fault, no fee, full power.
    for (dl, part) in [(1, s1.partition), (s2.deadline, s2.partition)] {
        let r = h.submit_post(m, dl, part, &[]);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
        let info = h.deadline(m, dl);
        h.advance_to(info.last());
    }
    assert_no_faults(&h, m, "a period later");
    assert_eq!(h.claim(m).power, power(2));
}

#[test]
fn a_missed_first_window_makes_the_unproven_sector_faulty_without_taking_power() {
    // The counterpart: a sector that was in its first challenge but not proven is missed like
    // any other (it had the whole window), and loses no power it never had.
    let mut h = Harness::new();
    let m = h.create_miner(TokenAmount::tokens(20));
    let exp = h.cc_expiration();
    let r = h.precommit(m, 1, Vec::new(), &[], exp);
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    let ready = h.seed_ready(m, 1);
    let s = prove_commit_at(&mut h, m, 1, ready);
    let d = h.deadline(m, s.deadline);
    assert!(d.challenge > ready);
    h.advance_to(d.last());
    assert_eq!(h.claim(m).power, PowerPair::ZERO);
    let part = &deadline_record(&h, m, s.deadline).partitions[s.partition as usize];
    assert!(part.faults.contains(&1) && !part.unproven.contains(&1));
}
