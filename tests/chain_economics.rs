//! Chain scenarios over devnet epochs with the test verifier: power, faults, fees, terminations,
//! deals, DataCap, rewards, fee debt and consensus faults, with balances checked to the atto and the
//! invariants checked after every epoch.

#![allow(clippy::unwrap_used)]

mod harness;

use harness::*;
use lode_chain::actors::BURNT_FUNDS;
use lode_chain::monies;
use lode_chain::types::{PowerPair, TokenAmount};

#[test]
fn power_appears_with_the_first_post_and_a_missed_deadline_is_a_free_fault() {
    let mut h = Harness::new();
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
