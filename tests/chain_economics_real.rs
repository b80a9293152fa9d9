//! The chain scenarios of `tests/scenarios/` with real 2 KiB sectors sealed by the harness and real
//! Groth16 PoRep, Window PoSt and Winning PoSt proofs checked by the chain's `SnarkVerifier`.

#![allow(clippy::unwrap_used)]

mod harness;
mod scenarios;

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                scenarios::$name(harness::Harness::real());
            }
        )*
    };
}

suite!(
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
