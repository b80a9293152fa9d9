//! Chain scenarios over devnet epochs: power, faults, fees, terminations, deals, DataCap, rewards,
//! fee debt and consensus faults, with balances checked to the atto and the invariants checked after
//! every epoch. Each scenario takes a harness, so the same scenario runs with the test verifier and
//! with real sealing and Groth16 proofs: [`scenario_tests!`](crate::scenario_tests) lists every
//! scenario once and makes a `#[test]` of each for a given harness (`chain/tests/economics.rs`).

/// Makes one `#[test]` per economic scenario of [`scenarios`](crate::scenarios), each run on the
/// harness the expression builds, with the attributes after the `;` (e.g. `#[ignore = "…"]`) on
/// every test.
///
/// This is the one list of the scenarios: a new scenario is added here and runs with every harness.
///
/// ```text
/// mod fast {
///     lode_testkit::scenario_tests!(lode_testkit::harness::Harness::new());
/// }
/// mod real {
///     lode_testkit::scenario_tests!(lode_testkit::harness::Harness::real(); #[ignore = "slow"]);
/// }
/// ```
#[macro_export]
macro_rules! scenario_tests {
    ($harness:expr $(; $(#[$attr:meta])*)?) => {
        $crate::scenario_tests!(@each [$($(#[$attr])*)?] $harness;
            power_appears_with_the_first_post_and_a_missed_deadline_is_a_free_fault,
            declared_recovery_restores_power_at_the_next_post,
            a_sector_faulty_for_42_days_is_terminated_with_the_fee,
            voluntary_termination_charges_the_fee_and_settles_the_deal,
            a_pre_commit_not_proven_in_time_loses_its_deposit,
            verified_data_counts_ten_times_and_mixed_sectors_pro_rata,
            a_deal_never_activated_burns_the_provider_collateral,
            block_rewards_vest_linearly_over_180_days,
            fee_debt_blocks_block_production_until_repaid,
            a_consensus_fault_is_slashed_and_bans_the_miner,
            extension_keeps_power_and_respects_verified_claim_terms,
        );
    };
    (@each [$($attr:tt)*] $harness:expr; $name:ident, $($rest:ident,)*) => {
        #[test]
        $($attr)*
        fn $name() {
            $crate::scenarios::$name($harness);
        }
        $crate::scenario_tests!(@each [$($attr)*] $harness; $($rest,)*);
    };
    (@each [$($attr:tt)*] $harness:expr;) => {};
}

use crate::harness::*;
use lode_chain::actors::BURNT_FUNDS;
use lode_chain::monies;
use lode_chain::types::{PowerPair, TokenAmount};

/// A CC sector has no power until its first Window PoSt; a missed deadline makes it faulty with no
/// fee, and a fault that continues into the next period pays the continued-fault fee.
pub fn power_appears_with_the_first_post_and_a_missed_deadline_is_a_free_fault(mut h: Harness) {
    let m = h.create_miner(TokenAmount::tokens(10));
    let s = h.onboard_cc(m, 1);
    assert_eq!(
        h.claim(m).power,
        PowerPair::ZERO,
        "no power before the first PoSt"
    );
    let r = h.submit_post(m, s.deadline, s.partition, &[]);
    assert_eq!(r.exit_code, lode_chain::ExitCode::Ok, "{}", r.error);
    assert_eq!(
        h.claim(m).power,
        PowerPair {
            raw: 2048,
            qa: 2048
        }
    );

    // Next period: no PoSt. At the deadline's end the sector is faulty, its power gone, no fee.
    let proven = h.deadline(m, s.deadline);
    h.advance_to(proven.last());
    assert_eq!(h.claim(m).power.raw, 2048, "proven this window");
    let dl = h.deadline(m, s.deadline);
    assert_eq!(dl.open, proven.open + h.policy.wpost_proving_period());
    h.advance_to(dl.last() - 1);
    let burnt = h.balance(BURNT_FUNDS);
    h.advance_to(dl.last());
    assert_eq!(h.claim(m).power, PowerPair::ZERO);
    assert_eq!(
        h.balance(BURNT_FUNDS),
        burnt,
        "no fee for a newly detected fault"
    );

    // Still faulty at the next deadline end: the continued-fault fee, to the atto.
    let dl = h.deadline(m, s.deadline);
    h.advance_to(dl.last() - 1);
    let econ = h.economics();
    let expected = monies::fault_fee(&h.policy, &econ, 2048);
    assert!(expected.0 > 0);
    let burnt = h.balance(BURNT_FUNDS);
    h.advance_to(dl.last());
    assert_eq!(h.balance(BURNT_FUNDS).0 - burnt.0, expected.0);
}

use lode_chain::ExitCode;
use lode_chain::actors::market::{ClientDealProposal, DealProposal, MarketMethod};
use lode_chain::actors::miner::{MinerMethod, SectorLocation};
use lode_chain::actors::verifreg::VerifRegMethod;
use lode_chain::actors::{MARKET, VERIFREG};
use lode_chain::message::Method;
use lode_chain::types::{ActorId, Address, Epoch};

/// A deal of "client" with miner `m` for `piece`, signed by the client.
pub fn deal(
    h: &Harness,
    m: ActorId,
    piece: [u8; 32],
    size: u64,
    verified: bool,
    start: Epoch,
    end: Epoch,
) -> ClientDealProposal {
    let proposal = DealProposal {
        piece_cid: piece,
        piece_size: size,
        verified,
        client: h.id("client"),
        provider: m,
        label: format!("piece {}", hex::encode(&piece[..4])),
        start_epoch: start,
        end_epoch: end,
        price_per_epoch: TokenAmount::atto(1_000_000_000),
        provider_collateral: TokenAmount::tokens(1),
        client_collateral: TokenAmount::atto(500_000_000_000_000_000),
    };
    let client_signature = key("client").sign(&proposal.signing_bytes(&h.policy.network));
    ClientDealProposal {
        proposal,
        client_signature,
    }
}

/// Market escrow: 100 LODE for "client", 10 LODE for miner `m` (from "owner").
pub fn fund_market(h: &mut Harness, m: ActorId) {
    let client = h.id("client");
    h.send_ok(
        "client",
        MARKET,
        Method::Market(MarketMethod::AddBalance {
            owner: Address::Id(client),
        }),
        TokenAmount::tokens(100),
    );
    h.send_ok(
        "owner",
        MARKET,
        Method::Market(MarketMethod::AddBalance {
            owner: Address::Id(m),
        }),
        TokenAmount::tokens(10),
    );
}

/// Publishes `deals` from "worker"; returns their ids.
pub fn publish(h: &mut Harness, deals: Vec<ClientDealProposal>) -> Vec<u64> {
    let r = h.send_ok(
        "worker",
        MARKET,
        Method::Market(MarketMethod::PublishDeals(deals)),
        TokenAmount::ZERO,
    );
    decode(&r.return_data)
}

/// The root appoints "verifier", which grants "client" `allowance` bytes of DataCap; returns the
/// client's id.
fn grant_datacap(h: &mut Harness, allowance: u128) -> ActorId {
    let (verifier, client) = (h.id("verifier"), h.id("client"));
    h.send_ok(
        "root",
        VERIFREG,
        Method::VerifReg(VerifRegMethod::AddVerifier {
            verifier: Address::Id(verifier),
            allowance: 1 << 20,
        }),
        TokenAmount::ZERO,
    );
    h.send_ok(
        "verifier",
        VERIFREG,
        Method::VerifReg(VerifRegMethod::AddVerifiedClient {
            client: Address::Id(client),
            allowance,
        }),
        TokenAmount::ZERO,
    );
    client
}

/// An actor's market escrow.
pub fn escrow(h: &Harness, id: ActorId) -> lode_chain::actors::market::Escrow {
    h.chain
        .view(|rt| lode_chain::actors::market::escrow(rt, id))
        .unwrap()
}

/// A faulty sector declared recovered before the cutoff and then proven gets its power back, with no
/// fault fee at that deadline's end.
pub fn declared_recovery_restores_power_at_the_next_post(mut h: Harness) {
    let m = h.create_miner(TokenAmount::tokens(10));
    let s = h.onboard_cc(m, 1);
    h.submit_post(m, s.deadline, s.partition, &[]);
    // Miss the next window: faulty.
    let dl = h.deadline(m, s.deadline);
    h.advance_to(dl.last() + h.policy.wpost_proving_period());
    assert_eq!(h.claim(m).power, PowerPair::ZERO);
    // Declare the recovery before the next instance's cutoff, then prove it.
    let loc = SectorLocation {
        deadline: s.deadline,
        partition: s.partition,
        sectors: [1].into(),
    };
    h.send_ok(
        "worker",
        m,
        Method::Miner(MinerMethod::DeclareRecoveries(vec![loc])),
        TokenAmount::ZERO,
    );
    assert_eq!(
        h.claim(m).power,
        PowerPair::ZERO,
        "power returns with the PoSt, not the declaration"
    );
    let r = h.submit_post(m, s.deadline, s.partition, &[]);
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    assert_eq!(
        h.claim(m).power,
        PowerPair {
            raw: 2048,
            qa: 2048
        }
    );
    // Proven before the deadline's end: no fault fee at that end.
    let dl = h.deadline(m, s.deadline);
    h.advance_to(dl.last() - 1);
    let burnt = h.balance(BURNT_FUNDS);
    h.advance_to(dl.last());
    assert_eq!(h.balance(BURNT_FUNDS), burnt);
}

/// A sector faulty for 42 days pays the fault fee every period and is then terminated with the
/// termination fee.
pub fn a_sector_faulty_for_42_days_is_terminated_with_the_fee(mut h: Harness) {
    let m = h.create_miner(TokenAmount::tokens(10));
    let s = h.onboard_cc(m, 1);
    h.submit_post(m, s.deadline, s.partition, &[]);
    let proven = h.deadline(m, s.deadline);
    h.advance_to(proven.last());
    // The fault is detected at the next instance's end; the fee runs every period after that.
    let detected = h.deadline(m, s.deadline).last();
    h.advance_to(detected);
    assert_eq!(h.claim(m).power, PowerPair::ZERO);
    let pp = h.policy.wpost_proving_period();
    let periods = h.policy.fault_max_age / pp;
    assert_eq!(periods, 42);
    let mut total_burnt = 0u128;
    for j in 1..=periods {
        let end = detected + j * pp;
        h.advance_to(end - 1);
        let econ = h.economics();
        let burnt = h.balance(BURNT_FUNDS);
        let st = h.miner_state(m);
        let mut unlocked = h.balance(m).0 - st.total_locked().0;
        let mut owed = st.fee_debt.0 + monies::fault_fee(&h.policy, &econ, 2048).0;
        if j == periods {
            // Terminated: the pledge is released, then the termination fee is owed too.
            let age = end - s.activation;
            owed += monies::termination_fee(&h.policy, &econ, s.initial_pledge, 2048, age).0;
            unlocked += s.initial_pledge.0;
        }
        h.advance_to(end);
        let delta = h.balance(BURNT_FUNDS).0 - burnt.0;
        assert_eq!(delta, owed.min(unlocked), "period {j}");
        assert_eq!(
            h.miner_state(m).fee_debt.0,
            owed - delta,
            "debt after period {j}"
        );
        total_burnt += delta;
        if j < periods {
            assert!(h.sector(m, 1).is_some());
            assert_eq!(h.miner_state(m).initial_pledge, st.initial_pledge);
        }
    }
    assert!(h.sector(m, 1).is_none(), "terminated after 42 days");
    assert_eq!(h.miner_state(m).initial_pledge, TokenAmount::ZERO);
    assert!(total_burnt > 0);
}

/// A voluntary termination burns the termination fee and the provider's deal collateral, and the
/// client pays only for the epochs served.
pub fn voluntary_termination_charges_the_fee_and_settles_the_deal(mut h: Harness) {
    let m = h.create_miner(TokenAmount::tokens(10));
    fund_market(&mut h, m);
    let client = h.id("client");
    let start = h.epoch() + 100;
    let exp = h.cc_expiration();
    let pa = h.piece("piece-a", 1024);
    let d = deal(&h, m, pa, 1024, false, start, exp);
    let ids = publish(&mut h, vec![d.clone()]);
    let r = h.precommit(m, 1, ids.clone(), &[(pa, 1024)], exp);
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    assert_eq!(h.prove_commit(m, 1).exit_code, ExitCode::Ok);
    let s = h.sector(m, 1).unwrap();
    h.submit_post(m, s.deadline, s.partition, &[]);
    // Let the deal run a while, then terminate when the deadline is mutable.
    h.advance_to(start + 1000);
    let dl = h.deadline(m, s.deadline);
    if h.epoch() + 1 + h.policy.wpost_challenge_window >= dl.open {
        h.advance_to(dl.last());
    }
    // Keep it proven so the fee is the termination fee alone.
    let econ = h.economics();
    let burnt = h.balance(BURNT_FUNDS);
    let now = h.epoch() + 1;
    let sector = h.sector(m, 1).unwrap();
    let active = h.claim(m).power.qa > 0;
    let qa = sector
        .power(&h.policy, lode_proofs::sector::SectorSize::S2KiB)
        .qa;
    let fee = monies::termination_fee(
        &h.policy,
        &econ,
        sector.initial_pledge,
        qa,
        now - sector.activation,
    );
    let client_before = escrow(&h, client);
    let loc = SectorLocation {
        deadline: s.deadline,
        partition: s.partition,
        sectors: [1].into(),
    };
    let r = h.send_ok(
        "worker",
        m,
        Method::Miner(MinerMethod::TerminateSectors(vec![loc])),
        TokenAmount::ZERO,
    );
    let fees: TokenAmount = decode(&r.return_data);
    assert_eq!(fees, fee);
    // Burnt: the termination fee, the provider's deal collateral and the message's gas.
    let delta = h.balance(BURNT_FUNDS).0 - burnt.0;
    assert_eq!(delta, fee.0 + d.proposal.provider_collateral.0 + r.fee.0);
    assert!(h.sector(m, 1).is_none());
    if active {
        assert_eq!(h.claim(m).power, PowerPair::ZERO);
    }
    // The client paid for the epochs served and has everything else unlocked.
    let client_after = escrow(&h, client);
    assert_eq!(client_after.locked, TokenAmount::ZERO);
    let paid = d.proposal.price_per_epoch.0 * u128::from(now - start);
    assert_eq!(client_before.balance.0 - client_after.balance.0, paid);
    assert!(
        h.chain
            .view(|rt| lode_chain::actors::market::deal(rt, ids[0]))
            .unwrap()
            .is_none()
    );
}

/// A pre-commit not proven in time can no longer be proven, and its deposit is burnt at the first
/// deadline cron after the clean-up epoch.
pub fn a_pre_commit_not_proven_in_time_loses_its_deposit(mut h: Harness) {
    let m = h.create_miner(TokenAmount::tokens(10));
    let exp = h.cc_expiration();
    assert_eq!(h.precommit(m, 1, vec![], &[], exp).exit_code, ExitCode::Ok);
    let pc: lode_chain::actors::miner::PreCommit =
        h.get(&lode_chain::keys::precommit(m, 1)).unwrap();
    assert!(pc.deposit.0 > 0);
    let clean_up =
        pc.epoch + h.policy.max_prove_commit_duration + h.policy.expired_pre_commit_clean_up_delay;
    // Proving after the deadline fails.
    h.advance_to(pc.epoch + h.policy.max_prove_commit_duration);
    let proofs = h.seal_proof(m, 1);
    let r = h.send(
        "worker",
        m,
        Method::Miner(MinerMethod::ProveCommitSector {
            sector_number: 1,
            proofs,
        }),
        TokenAmount::ZERO,
    );
    assert_eq!(r.exit_code, ExitCode::IllegalState, "{}", r.error);
    h.check_every_epoch = false;
    h.advance_to(clean_up - 1);
    h.check_every_epoch = true;
    h.assert_invariants();
    let burnt = h.balance(BURNT_FUNDS);
    let balance = h.balance(m);
    // The deposit is burnt at the first deadline cron at or after the clean-up epoch.
    let cron = h.miner_state(m).cron_epoch.unwrap();
    h.advance_to(cron.max(clean_up));
    let st = h.miner_state(m);
    if st.pre_commit_deposits.is_zero() {
        assert_eq!(h.balance(BURNT_FUNDS).0 - burnt.0, pc.deposit.0);
        assert_eq!(balance.0 - h.balance(m).0, pc.deposit.0);
    } else {
        let next = st.cron_epoch.unwrap();
        h.advance_to(next);
        assert_eq!(h.balance(BURNT_FUNDS).0 - burnt.0, pc.deposit.0);
    }
    assert_eq!(h.miner_state(m).pre_commit_deposits, TokenAmount::ZERO);
    assert!(
        h.get::<lode_chain::actors::miner::PreCommit>(&lode_chain::keys::precommit(m, 1))
            .is_none()
    );
}

/// Verified deals count ten times in QA power, a half-verified sector pro rata; the allocations
/// become claims and the DataCap is spent.
pub fn verified_data_counts_ten_times_and_mixed_sectors_pro_rata(mut h: Harness) {
    let m = h.create_miner(TokenAmount::tokens(10));
    fund_market(&mut h, m);
    let client = grant_datacap(&mut h, 4096);
    let datacap = |h: &Harness| {
        h.chain
            .view(|rt| lode_chain::actors::verifreg::datacap(rt, client))
            .unwrap()
    };
    assert_eq!(datacap(&h), 4096);
    let start = h.epoch() + 100;
    let exp = h.cc_expiration();
    // Sector 1: fully verified (one 2 KiB piece). Sector 2: half verified, half not.
    let (vf, vh, pl) = (
        h.piece("v-full", 2048),
        h.piece("v-half", 1024),
        h.piece("plain", 1024),
    );
    let d1 = deal(&h, m, vf, 2048, true, start, exp);
    let d2 = deal(&h, m, vh, 1024, true, start, exp);
    let d3 = deal(&h, m, pl, 1024, false, start, exp);
    let ids = publish(&mut h, vec![d1, d2, d3]);
    assert_eq!(datacap(&h), 4096 - 2048 - 1024);
    assert_eq!(
        h.precommit(m, 1, vec![ids[0]], &[(vf, 2048)], exp)
            .exit_code,
        ExitCode::Ok
    );
    let r = h.precommit(m, 2, vec![ids[1], ids[2]], &[(vh, 1024), (pl, 1024)], exp);
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    assert_eq!(h.prove_commit(m, 1).exit_code, ExitCode::Ok);
    assert_eq!(h.prove_commit(m, 2).exit_code, ExitCode::Ok);
    let (s1, s2) = (h.sector(m, 1).unwrap(), h.sector(m, 2).unwrap());
    let size = lode_proofs::sector::SectorSize::S2KiB;
    assert_eq!(
        s1.power(&h.policy, size),
        PowerPair {
            raw: 2048,
            qa: 20480
        },
        "10× for verified bytes"
    );
    assert_eq!(
        s2.power(&h.policy, size),
        PowerPair {
            raw: 2048,
            qa: 11264
        },
        "1024 + 10 × 1024"
    );
    assert_eq!(
        (s1.deadline, s1.partition),
        (s2.deadline, s2.partition),
        "one partition"
    );
    let r = h.submit_post(m, s1.deadline, s1.partition, &[]);
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    assert_eq!(
        h.claim(m).power,
        PowerPair {
            raw: 4096,
            qa: 31744
        }
    );
    // The allocations became claims; the DataCap is spent.
    let claims = h
        .chain
        .view(|rt| {
            rt.state.scan::<lode_chain::actors::verifreg::Claim>(
                lode_chain::keys::VERIFIED_CLAIM_PREFIX,
            )
        })
        .unwrap();
    assert_eq!(claims.iter().map(|(_, c)| c.size).sum::<u64>(), 3072);
}

/// A published deal never activated by its start epoch times out: the provider's collateral is
/// burnt and the client's funds are unlocked.
pub fn a_deal_never_activated_burns_the_provider_collateral(mut h: Harness) {
    let m = h.create_miner(TokenAmount::tokens(10));
    fund_market(&mut h, m);
    let client = grant_datacap(&mut h, 2048);
    let start = h.epoch() + 50;
    let exp = h.cc_expiration();
    let pn = h.piece("never", 2048);
    let d = deal(&h, m, pn, 2048, true, start, exp);
    let client_before = escrow(&h, client);
    let provider_before = escrow(&h, m);
    publish(&mut h, vec![d.clone()]);
    assert_eq!(escrow(&h, m).locked, d.proposal.provider_collateral);
    h.advance_to(start - 1);
    let burnt = h.balance(BURNT_FUNDS);
    h.advance_to(start);
    assert_eq!(
        h.balance(BURNT_FUNDS).0 - burnt.0,
        d.proposal.provider_collateral.0
    );
    assert_eq!(
        escrow(&h, client),
        client_before,
        "client fully unlocked, nothing paid"
    );
    let p = escrow(&h, m);
    assert_eq!(p.locked, TokenAmount::ZERO);
    assert_eq!(
        provider_before.balance.0 - p.balance.0,
        d.proposal.provider_collateral.0
    );
    assert_eq!(
        h.chain
            .view(|rt| lode_chain::actors::verifreg::datacap(rt, client))
            .unwrap(),
        2048,
        "DataCap returned"
    );
}

/// A miner with one proven sector (power), ready to win blocks.
fn powered_miner(h: &mut Harness) -> (ActorId, lode_chain::actors::miner::SectorOnChain) {
    let m = h.create_miner(TokenAmount::tokens(10));
    let s = h.onboard_cc(m, 1);
    assert_eq!(
        h.submit_post(m, s.deadline, s.partition, &[]).exit_code,
        ExitCode::Ok
    );
    (m, s)
}

fn win_block(h: &mut Harness, m: ActorId) -> TokenAmount {
    for _ in 0..50 {
        if let Some(header) = h.block(m) {
            let reward = h
                .chain
                .view(|rt| lode_chain::actors::reward::block_reward(rt, header.win_count))
                .unwrap();
            let before = h.balance(m);
            let epoch = h.epoch() + 1;
            let out = h
                .chain
                .apply_epoch(&lode_chain::EpochInput {
                    epoch,
                    beacon: beacon(epoch),
                    blocks: vec![header],
                    messages: vec![],
                })
                .unwrap();
            h.assert_invariants();
            assert_eq!(out.rewards, vec![(m, reward)]);
            assert_eq!(h.balance(m).0 - before.0, reward.0);
            return reward;
        }
        h.step(vec![], vec![]);
    }
    panic!("the only miner never won in 50 epochs");
}

/// Block rewards are locked and vest one 180th per day.
pub fn block_rewards_vest_linearly_over_180_days(mut h: Harness) {
    let (m, s) = powered_miner(&mut h);
    let won_at = h.epoch() + 1;
    let reward = win_block(&mut h, m);
    let locked = reward.mul_div(3, 4).unwrap();
    let st = h.miner_state(m);
    assert_eq!(st.locked_funds, locked, "75% locked");
    assert!(locked.0 > 0);
    let day = h.policy.epochs_in_day();
    // Each day one 180th vests (entries fall on half-day boundaries). The sector is proven in every
    // window so that no fault fee touches the vesting table.
    let mut proven_open = h.deadline(m, s.deadline).open;
    for k in 1..=3u64 {
        let checkpoint = won_at + k * day + day / 2 + h.policy.wpost_challenge_window;
        loop {
            let dl = h.deadline(m, s.deadline);
            if dl.open > checkpoint {
                break;
            }
            if dl.open != proven_open {
                let r = h.submit_post(m, s.deadline, s.partition, &[]);
                assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
                proven_open = dl.open;
            }
            h.advance_to(dl.last());
        }
        h.advance_to(checkpoint);
        let st = h.miner_state(m);
        let vested = locked.0 * u128::from(k) / 180;
        assert_eq!(st.locked_funds.0, locked.0 - vested, "day {k}");
        assert_eq!(h.claim(m).power.raw, 2048, "proven throughout");
    }
}

/// A fault fee the miner cannot pay becomes fee debt, which bars it from producing blocks until
/// repaid.
pub fn fee_debt_blocks_block_production_until_repaid(mut h: Harness) {
    let m = h.create_miner(TokenAmount::tokens(10));
    let exp = h.cc_expiration();
    for n in [1, 2] {
        assert_eq!(h.precommit(m, n, vec![], &[], exp).exit_code, ExitCode::Ok);
    }
    for n in [1, 2] {
        assert_eq!(h.prove_commit(m, n).exit_code, ExitCode::Ok);
    }
    let s = h.sector(m, 1).unwrap();
    h.submit_post(m, s.deadline, s.partition, &[]);
    // Take out everything free, then skip sector 2: its fault fee becomes debt.
    let r = h.send_ok(
        "owner",
        m,
        Method::Miner(MinerMethod::WithdrawBalance {
            amount: TokenAmount(u128::MAX),
        }),
        TokenAmount::ZERO,
    );
    let withdrawn: TokenAmount = decode(&r.return_data);
    assert!(withdrawn.0 > 0);
    let dl = h.deadline(m, s.deadline);
    h.advance_to(dl.last());
    let r = h.submit_post(m, s.deadline, s.partition, &[2]);
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    let dl = h.deadline(m, s.deadline);
    h.advance_to(dl.last());
    let st = h.miner_state(m);
    assert!(st.fee_debt.0 > 0, "fault fee with nothing to pay it from");
    assert_eq!(h.claim(m).power.raw, 2048, "sector 1 still has power");
    // A block by this miner is rejected.
    let header = loop {
        if let Some(b) = h.block(m) {
            break b;
        }
        h.step(vec![], vec![]);
    };
    let err = h.try_step(vec![header], vec![]).unwrap_err();
    assert!(err.to_string().contains("fee debt"), "{err}");
    // Pay the debt; blocks are accepted again.
    h.send_ok("owner", m, Method::Send, TokenAmount::tokens(1));
    h.send_ok(
        "owner",
        m,
        Method::Miner(MinerMethod::RepayDebt),
        TokenAmount::ZERO,
    );
    assert_eq!(h.miner_state(m).fee_debt, TokenAmount::ZERO);
    win_block(&mut h, m);
}

/// Two blocks signed by one worker at one epoch are a consensus fault: the reporter is rewarded, the
/// miner penalised and banned from winning blocks, and the same fault cannot be reported twice.
pub fn a_consensus_fault_is_slashed_and_bans_the_miner(mut h: Harness) {
    let (m, _) = powered_miner(&mut h);
    win_block(&mut h, m);
    // Two different blocks signed by the worker at one epoch.
    let first = loop {
        if let Some(b) = h.block(m) {
            break b;
        }
        h.step(vec![], vec![]);
    };
    let mut second = first.clone();
    second.messages_root = [7; 32];
    second.signature = key("worker").sign(&second.signing_bytes(&h.policy.network));
    h.step(vec![first.clone()], vec![]);
    let econ = h.economics();
    let penalty = monies::consensus_fault_penalty(&econ);
    let reporter_reward = monies::consensus_fault_reporter_reward(&h.policy, &econ);
    let other = h.id("other");
    let (burnt, other_before) = (h.balance(BURNT_FUNDS), h.balance(other));
    let r = h.send_ok(
        "other",
        m,
        Method::Miner(MinerMethod::ReportConsensusFault {
            first: Box::new(first.clone()),
            second: Box::new(second.clone()),
        }),
        TokenAmount::ZERO,
    );
    assert_eq!(
        h.balance(other).0 + r.fee.0 - other_before.0,
        reporter_reward.0
    );
    assert_eq!(
        h.balance(BURNT_FUNDS).0 - burnt.0,
        penalty.0 - reporter_reward.0 + r.fee.0
    );
    // Reporting the same fault again fails; the miner cannot win blocks during the ban.
    let again = h.send(
        "other",
        m,
        Method::Miner(MinerMethod::ReportConsensusFault {
            first: Box::new(first),
            second: Box::new(second),
        }),
        TokenAmount::ZERO,
    );
    assert_eq!(again.exit_code, ExitCode::IllegalArgument);
    let header = loop {
        if let Some(b) = h.block(m) {
            break b;
        }
        h.step(vec![], vec![]);
    };
    let err = h.try_step(vec![header], vec![]).unwrap_err();
    assert!(err.to_string().contains("consensus fault"), "{err}");
}

/// Extending a verified sector keeps its 10× power within the claim's maximum term, and is refused
/// beyond it or for an expiration not after the current one.
pub fn extension_keeps_power_and_respects_verified_claim_terms(mut h: Harness) {
    let m = h.create_miner(TokenAmount::tokens(10));
    fund_market(&mut h, m);
    grant_datacap(&mut h, 2048);
    let start = h.epoch() + 100;
    let exp = h.cc_expiration();
    let pv = h.piece("v", 2048);
    let d = deal(&h, m, pv, 2048, true, start, exp);
    let ids = publish(&mut h, vec![d]);
    assert_eq!(
        h.precommit(m, 1, ids, &[(pv, 2048)], exp).exit_code,
        ExitCode::Ok
    );
    assert_eq!(h.prove_commit(m, 1).exit_code, ExitCode::Ok);
    let s = h.sector(m, 1).unwrap();
    h.submit_post(m, s.deadline, s.partition, &[]);
    let before = h.claim(m).power;
    assert_eq!(before.qa, 20480);
    let loc = |n| SectorLocation {
        deadline: s.deadline,
        partition: s.partition,
        sectors: [n].into(),
    };
    // Beyond the claim's term_max (deal duration + 90 days from the claim): refused.
    let claim_end = s.activation + (exp - start) + h.policy.market_default_allocation_term_buffer;
    let r = h.send(
        "worker",
        m,
        Method::Miner(MinerMethod::ExtendSectorExpiration {
            sectors: vec![loc(1)],
            new_expiration: claim_end + 1,
        }),
        TokenAmount::ZERO,
    );
    assert_eq!(r.exit_code, ExitCode::IllegalArgument, "{}", r.error);
    // Within it: the sector lives longer, with the same 10× power.
    let r = h.send(
        "worker",
        m,
        Method::Miner(MinerMethod::ExtendSectorExpiration {
            sectors: vec![loc(1)],
            new_expiration: claim_end,
        }),
        TokenAmount::ZERO,
    );
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    let after = h.sector(m, 1).unwrap();
    assert_eq!(after.expiration, claim_end);
    assert_eq!(h.claim(m).power, before);
    // Not after the current expiration: refused.
    let r = h.send(
        "worker",
        m,
        Method::Miner(MinerMethod::ExtendSectorExpiration {
            sectors: vec![loc(1)],
            new_expiration: claim_end,
        }),
        TokenAmount::ZERO,
    );
    assert_eq!(r.exit_code, ExitCode::IllegalArgument);
}
