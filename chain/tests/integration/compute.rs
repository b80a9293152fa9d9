//! The compute actor's rules: replicated jobs settled by majority, verifier jobs attested,
//! undisputed and disputed, slashing to the atto, and every malformed or out-of-order message
//! refused with nothing changed.

#![allow(clippy::unwrap_used)]

use lode_chain::ExitCode;
use lode_chain::actors::compute::{
    self, ComputeMethod, Failure, Job, JobInput, JobLimits, JobTerms, Outcome, Verification,
};
use lode_chain::actors::{BURNT_FUNDS, COMPUTE};
use lode_chain::message::{Method, Receipt};
use lode_chain::types::{ActorId, Address, DealId, TokenAmount};
use lode_testkit::harness::*;
use lode_testkit::scenarios::{deal, fund_market, publish};

const PAYMENT: TokenAmount = TokenAmount::atto(3_000_000_000_000_000_001);
const COLLATERAL: TokenAmount = TokenAmount::atto(5_000_000_000_000_000_001);
const FEE: TokenAmount = TokenAmount::atto(700_000_000_000_000_003);
const BOND: TokenAmount = TokenAmount::atto(2_000_000_000_000_000_001);

/// A chain with `n` miners (owned by "owner", worked by "worker"), each with an active deal for
/// the same 1 KiB piece.
struct Setup {
    h: Harness,
    miners: Vec<ActorId>,
    deals: Vec<DealId>,
    piece: [u8; 32],
    /// Gas fees paid since [`Setup::mark`], by payer.
    fees: std::collections::BTreeMap<ActorId, u128>,
}

fn setup(n: usize) -> Setup {
    let mut h = Harness::new();
    let piece = h.piece("job-input", 1024);
    let exp = h.cc_expiration();
    let start = h.epoch() + 200;
    let mut miners = Vec::new();
    let mut deals = Vec::new();
    for _ in 0..n {
        let m = h.create_miner(TokenAmount::tokens(10));
        fund_market(&mut h, m);
        let d = deal(&h, m, piece, 1024, false, start, exp);
        let ids = publish(&mut h, vec![d]);
        miners.push(m);
        deals.push(ids[0]);
    }
    for (i, &m) in miners.iter().enumerate() {
        let r = h.precommit(m, 1, vec![deals[i]], &[(piece, 1024)], exp);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    }
    for &m in &miners {
        let r = h.prove_commit(m, 1);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    }
    Setup {
        h,
        miners,
        deals,
        piece,
        fees: Default::default(),
    }
}

fn result(label: &str) -> [u8; 32] {
    *blake3::hash(label.as_bytes()).as_bytes()
}

fn salt(m: ActorId) -> [u8; 32] {
    *blake3::hash(&m.0.to_le_bytes()).as_bytes()
}

impl Setup {
    fn terms(&self, verification: Verification, deadline_in: u64) -> JobTerms {
        JobTerms {
            module: result("module"),
            entrypoint: "_start".into(),
            args: vec!["--count".into(), "words".into()],
            env: vec![("LANG".into(), "C".into())],
            inputs: vec![JobInput {
                piece_cid: self.piece,
                piece_size: 1024,
                payload_size: 1000,
                mount: "corpus.txt".into(),
            }],
            limits: JobLimits {
                fuel: 1 << 30,
                memory_pages: 1024,
                timeout_ms: 60_000,
                output_bytes: 1 << 20,
                output_entries: 100,
            },
            payment: PAYMENT,
            provider_collateral: COLLATERAL,
            providers: Vec::new(),
            verification,
            deadline: self.h.epoch() + deadline_in,
        }
    }

    fn send(&mut self, from: &str, method: ComputeMethod, value: TokenAmount) -> Receipt {
        let r = self.h.send(from, COMPUTE, Method::Compute(method), value);
        *self.fees.entry(self.h.id(from)).or_default() += r.fee.0;
        r
    }

    fn ok(&mut self, from: &str, method: ComputeMethod, value: TokenAmount) -> Receipt {
        let r = self.send(from, method, value);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
        r
    }

    fn refused(
        &mut self,
        from: &str,
        method: ComputeMethod,
        value: TokenAmount,
        code: ExitCode,
        needle: &str,
    ) {
        let before = self.h.balance(COMPUTE);
        let r = self.send(from, method, value);
        assert_eq!(r.exit_code, code, "{}", r.error);
        assert!(r.error.contains(needle), "{:?} lacks {needle:?}", r.error);
        assert_eq!(
            self.h.balance(COMPUTE),
            before,
            "a refused message moved tokens"
        );
    }

    fn submit(&mut self, terms: JobTerms) -> u64 {
        let value = terms.escrow().unwrap();
        let r = self.ok("client", ComputeMethod::SubmitJob(terms), value);
        decode(&r.return_data)
    }

    fn accept(&mut self, job: u64, i: usize) {
        let m = self.miners[i];
        self.ok(
            "worker",
            ComputeMethod::AcceptJob {
                job,
                provider: Address::Id(m),
                deals: vec![self.deals[i]],
            },
            COLLATERAL,
        );
    }

    fn commit(&mut self, job: u64, i: usize, r: [u8; 32]) {
        let m = self.miners[i];
        self.ok(
            "worker",
            ComputeMethod::CommitResult {
                job,
                provider: Address::Id(m),
                commitment: compute::commitment(&r, m, &salt(m)),
            },
            TokenAmount::ZERO,
        );
    }

    fn reveal(&mut self, job: u64, i: usize, r: [u8; 32]) -> Receipt {
        let m = self.miners[i];
        self.send(
            "worker",
            ComputeMethod::RevealResult {
                job,
                provider: Address::Id(m),
                result: r,
                salt: salt(m),
            },
            TokenAmount::ZERO,
        )
    }

    fn job(&self, id: u64) -> Job {
        self.h
            .chain
            .view(|rt| compute::job(rt, id))
            .unwrap()
            .unwrap()
    }

    fn balances(&self) -> Balances {
        let mut ids = self.miners.clone();
        ids.extend(["client", "worker", "verifier"].map(|n| self.h.id(n)));
        ids.push(BURNT_FUNDS);
        ids.push(COMPUTE);
        Balances(balances(&self.h, &ids))
    }

    /// Each party's change since `before`, gas fees added back (burnt fees taken out of the burn).
    fn delta(&self, before: &Balances, id: ActorId) -> i128 {
        let now = self.balances();
        let mut d = now.0[&id].0 as i128 - before.0[&id].0 as i128;
        d += *self.fees.get(&id).unwrap_or(&0) as i128;
        if id == BURNT_FUNDS {
            d -= self.fees.values().sum::<u128>() as i128;
        }
        d
    }

    fn mark(&mut self) -> Balances {
        self.fees.clear();
        self.balances()
    }
}

struct Balances(std::collections::BTreeMap<ActorId, TokenAmount>);

fn half(a: TokenAmount) -> i128 {
    (a.0 / 2) as i128
}

#[test]
fn replicated_job_with_three_honest_providers_pays_everyone_exactly() {
    let mut s = setup(3);
    let before = s.mark();
    let terms = s.terms(Verification::Replicated { k: 3 }, 30);
    let job = s.submit(terms);
    let right = result("42 words");
    for i in 0..3 {
        s.accept(job, i);
    }
    for i in 0..3 {
        s.commit(job, i, right);
    }
    // Reveals wait for the deadline, so no replica can copy another's.
    let early = s.reveal(job, 0, right);
    assert_eq!(early.exit_code, ExitCode::IllegalState, "{}", early.error);
    let deadline = s.job(job).terms.deadline;
    s.h.advance_to(deadline);
    for i in 0..3 {
        let r = s.reveal(job, i, right);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    }
    // Decided: anyone may settle it before the window ends.
    s.ok("other", ComputeMethod::SettleJob { job }, TokenAmount::ZERO);
    let j = s.job(job);
    assert_eq!(
        j.outcome,
        Some(Outcome::Final {
            result: right,
            disputed: false
        })
    );
    assert_eq!(j.held(), Some(TokenAmount::ZERO));
    let p = PAYMENT.0 as i128;
    for &m in &s.miners {
        assert_eq!(s.delta(&before, m), p);
    }
    assert_eq!(s.delta(&before, s.h.id("client")), -3 * p);
    assert_eq!(s.delta(&before, s.h.id("worker")), 0);
    assert_eq!(s.delta(&before, BURNT_FUNDS), 0);
    assert_eq!(s.h.balance(COMPUTE), TokenAmount::ZERO);
    // Settled once: no refund can be claimed after an honest settlement.
    s.refused(
        "client",
        ComputeMethod::CancelJob { job },
        TokenAmount::ZERO,
        ExitCode::IllegalState,
        "already settled",
    );
    s.refused(
        "client",
        ComputeMethod::SettleJob { job },
        TokenAmount::ZERO,
        ExitCode::IllegalState,
        "already settled",
    );
}

#[test]
fn a_tampered_replica_is_outvoted_and_slashed_and_a_silent_one_too() {
    let mut s = setup(3);
    let before = s.mark();
    let terms = s.terms(Verification::Replicated { k: 3 }, 30);
    let job = s.submit(terms);
    let (right, wrong) = (result("42 words"), result("41 words"));
    for i in 0..3 {
        s.accept(job, i);
    }
    s.commit(job, 0, right);
    s.commit(job, 1, right);
    s.commit(job, 2, wrong);
    let j = s.job(job);
    s.h.advance_to(j.terms.deadline);
    // The tampered replica cannot switch to the majority's answer after seeing it.
    assert_eq!(s.reveal(job, 0, right).exit_code, ExitCode::Ok);
    let switch = s.reveal(job, 2, right);
    assert_eq!(
        switch.exit_code,
        ExitCode::IllegalArgument,
        "{}",
        switch.error
    );
    assert_eq!(s.reveal(job, 2, wrong).exit_code, ExitCode::Ok);
    assert_eq!(s.reveal(job, 1, right).exit_code, ExitCode::Ok);
    // Cron settles it at the end of the reveal window.
    let due = j.settle_epoch(&s.h.policy.compute);
    s.h.advance_to(due - 1);
    assert!(s.job(job).outcome.is_none());
    s.h.advance_to(due);
    let j = s.job(job);
    assert_eq!(
        j.outcome,
        Some(Outcome::Final {
            result: right,
            disputed: false
        })
    );
    let p = PAYMENT.0 as i128;
    let c = COLLATERAL.0 as i128;
    assert_eq!(s.delta(&before, s.miners[0]), p);
    assert_eq!(s.delta(&before, s.miners[1]), p);
    assert_eq!(s.delta(&before, s.miners[2]), 0);
    // The worker locked three collaterals and got two back.
    assert_eq!(s.delta(&before, s.h.id("worker")), -c);
    // The client paid two replicas and gets half the slashed collateral.
    assert_eq!(
        s.delta(&before, s.h.id("client")),
        -2 * p + half(COLLATERAL)
    );
    assert_eq!(s.delta(&before, BURNT_FUNDS), c - half(COLLATERAL));
    let st = j.settlement.unwrap();
    assert_eq!(st.slashed, vec![(s.miners[2], COLLATERAL)]);

    // A replica that commits and never reveals loses its collateral the same way.
    let before = s.mark();
    let terms = s.terms(Verification::Replicated { k: 3 }, 30);
    let job = s.submit(terms);
    for i in 0..3 {
        s.accept(job, i);
        s.commit(job, i, right);
    }
    let j = s.job(job);
    s.h.advance_to(j.terms.deadline);
    s.reveal(job, 0, right);
    s.reveal(job, 1, right);
    s.refused(
        "other",
        ComputeMethod::SettleJob { job },
        TokenAmount::ZERO,
        ExitCode::IllegalState,
        "not decided",
    );
    s.h.advance_to(j.settle_epoch(&s.h.policy.compute));
    assert_eq!(s.delta(&before, s.miners[2]), 0);
    assert_eq!(s.delta(&before, s.h.id("worker")), -c);
    assert_eq!(
        s.delta(&before, s.h.id("client")),
        -2 * p + half(COLLATERAL)
    );
    assert_eq!(s.delta(&before, BURNT_FUNDS), c - half(COLLATERAL));
    // Too late to reveal now.
    let late = s.reveal(job, 2, right);
    assert_eq!(late.exit_code, ExitCode::IllegalState);
}

#[test]
fn without_a_majority_the_client_is_refunded_and_only_the_silent_are_slashed() {
    let mut s = setup(3);
    let before = s.mark();
    let job = s.submit(s.terms(Verification::Replicated { k: 3 }, 30));
    for i in 0..3 {
        s.accept(job, i);
    }
    s.commit(job, 0, result("a"));
    s.commit(job, 1, result("b"));
    // Replica 2 accepted and did nothing at all.
    let j = s.job(job);
    s.h.advance_to(j.terms.deadline);
    s.reveal(job, 0, result("a"));
    s.reveal(job, 1, result("b"));
    s.h.advance_to(j.settle_epoch(&s.h.policy.compute));
    let j = s.job(job);
    assert_eq!(j.outcome, Some(Outcome::Failed(Failure::NoMajority)));
    let c = COLLATERAL.0 as i128;
    for &m in &s.miners {
        assert_eq!(s.delta(&before, m), 0);
    }
    assert_eq!(s.delta(&before, s.h.id("worker")), -c);
    assert_eq!(s.delta(&before, s.h.id("client")), half(COLLATERAL));
    assert_eq!(s.delta(&before, BURNT_FUNDS), c - half(COLLATERAL));
}

#[test]
fn a_job_nobody_accepts_is_refunded_at_its_deadline_or_cancelled_before() {
    let mut s = setup(1);
    let before = s.mark();
    let job = s.submit(s.terms(Verification::Replicated { k: 1 }, 10));
    let j = s.job(job);
    s.h.advance_to(j.settle_epoch(&s.h.policy.compute));
    assert_eq!(
        s.job(job).outcome,
        Some(Outcome::Failed(Failure::NoProvider))
    );
    assert_eq!(s.delta(&before, s.h.id("client")), 0);

    let job = s.submit(s.terms(Verification::Replicated { k: 1 }, 10));
    s.refused(
        "other",
        ComputeMethod::CancelJob { job },
        TokenAmount::ZERO,
        ExitCode::Forbidden,
        "only the client",
    );
    s.ok(
        "client",
        ComputeMethod::CancelJob { job },
        TokenAmount::ZERO,
    );
    assert_eq!(
        s.job(job).outcome,
        Some(Outcome::Failed(Failure::Cancelled))
    );
    assert_eq!(s.delta(&before, s.h.id("client")), 0);
    // Its cron entry is gone: nothing happens at the old settlement epoch.
    let j = s.job(job);
    s.h.advance_to(j.settle_epoch(&s.h.policy.compute) + 1);
    assert_eq!(s.job(job).settlement, j.settlement);

    // Once a provider accepted, the client can no longer cancel.
    let job = s.submit(s.terms(Verification::Replicated { k: 1 }, 10));
    s.accept(job, 0);
    s.refused(
        "client",
        ComputeMethod::CancelJob { job },
        TokenAmount::ZERO,
        ExitCode::IllegalState,
        "accepted",
    );
}

fn verifier_terms(s: &Setup) -> JobTerms {
    s.terms(
        Verification::Verifier {
            verifier: s.h.id("verifier"),
            fee: FEE,
            bond: BOND,
        },
        30,
    )
}

fn verifier_job(s: &mut Setup, posted: Option<[u8; 32]>) -> u64 {
    let job = s.submit(verifier_terms(s));
    // A provider cannot take the job before its verifier.
    s.refused(
        "worker",
        ComputeMethod::AcceptJob {
            job,
            provider: Address::Id(s.miners[0]),
            deals: vec![s.deals[0]],
        },
        COLLATERAL,
        ExitCode::IllegalState,
        "has not accepted",
    );
    s.refused(
        "other",
        ComputeMethod::AcceptVerifier { job },
        BOND,
        ExitCode::Forbidden,
        "names",
    );
    s.ok("verifier", ComputeMethod::AcceptVerifier { job }, BOND);
    s.accept(job, 0);
    if let Some(r) = posted {
        let m = s.miners[0];
        // Verifier mode posts in clear; commitments are for replicated jobs.
        s.refused(
            "worker",
            ComputeMethod::CommitResult {
                job,
                provider: Address::Id(m),
                commitment: r,
            },
            TokenAmount::ZERO,
            ExitCode::IllegalArgument,
            "PostResult",
        );
        s.ok(
            "worker",
            ComputeMethod::PostResult {
                job,
                provider: Address::Id(m),
                result: r,
            },
            TokenAmount::ZERO,
        );
    }
    job
}

#[test]
fn verifier_jobs_attested_undisputed_and_disputed() {
    let mut s = setup(1);
    let (p, c, f, b) = (
        PAYMENT.0 as i128,
        COLLATERAL.0 as i128,
        FEE.0 as i128,
        BOND.0 as i128,
    );
    let m = s.miners[0];
    let right = result("right");

    // Attested: the provider is paid, the verifier earns its fee.
    let before = s.mark();
    let job = verifier_job(&mut s, Some(right));
    s.ok("verifier", ComputeMethod::Attest { job }, TokenAmount::ZERO);
    s.ok(
        "client",
        ComputeMethod::SettleJob { job },
        TokenAmount::ZERO,
    );
    assert_eq!(
        s.job(job).outcome,
        Some(Outcome::Final {
            result: right,
            disputed: false
        })
    );
    assert_eq!(s.delta(&before, m), p);
    assert_eq!(s.delta(&before, s.h.id("verifier")), f);
    assert_eq!(s.delta(&before, s.h.id("client")), -p - f);
    assert_eq!(s.delta(&before, s.h.id("worker")), 0);
    assert_eq!(s.delta(&before, BURNT_FUNDS), 0);

    // Undisputed: the provider is paid; the idle verifier loses its bond and earns nothing.
    let before = s.mark();
    let job = verifier_job(&mut s, Some(right));
    let j = s.job(job);
    s.h.advance_to(j.settle_epoch(&s.h.policy.compute));
    assert_eq!(
        s.job(job).outcome,
        Some(Outcome::Final {
            result: right,
            disputed: false
        })
    );
    assert_eq!(s.delta(&before, m), p);
    assert_eq!(s.delta(&before, s.h.id("verifier")), -b);
    assert_eq!(s.delta(&before, s.h.id("client")), -p + half(BOND));
    assert_eq!(s.delta(&before, BURNT_FUNDS), b - half(BOND));

    // Disputed: the verifier's result is final, the provider slashed, the client refunded.
    let before = s.mark();
    let job = verifier_job(&mut s, Some(result("wrong")));
    s.refused(
        "verifier",
        ComputeMethod::Dispute {
            job,
            result: result("wrong"),
        },
        TokenAmount::ZERO,
        ExitCode::IllegalArgument,
        "attest instead",
    );
    s.ok(
        "verifier",
        ComputeMethod::Dispute { job, result: right },
        TokenAmount::ZERO,
    );
    s.refused(
        "verifier",
        ComputeMethod::Attest { job },
        TokenAmount::ZERO,
        ExitCode::IllegalState,
        "already judged",
    );
    s.ok("other", ComputeMethod::SettleJob { job }, TokenAmount::ZERO);
    assert_eq!(
        s.job(job).outcome,
        Some(Outcome::Final {
            result: right,
            disputed: true
        })
    );
    assert_eq!(s.delta(&before, m), 0);
    assert_eq!(s.delta(&before, s.h.id("worker")), -c);
    assert_eq!(s.delta(&before, s.h.id("verifier")), f);
    assert_eq!(s.delta(&before, s.h.id("client")), -f + half(COLLATERAL));
    assert_eq!(s.delta(&before, BURNT_FUNDS), c - half(COLLATERAL));

    // No result posted: the provider is slashed, the verifier keeps its bond, the client is refunded.
    let before = s.mark();
    let job = verifier_job(&mut s, None);
    let j = s.job(job);
    s.h.advance_to(j.terms.deadline);
    s.refused(
        "worker",
        ComputeMethod::PostResult {
            job,
            provider: Address::Id(m),
            result: right,
        },
        TokenAmount::ZERO,
        ExitCode::IllegalState,
        "took results until",
    );
    s.h.advance_to(j.settle_epoch(&s.h.policy.compute));
    assert_eq!(s.job(job).outcome, Some(Outcome::Failed(Failure::NoResult)));
    assert_eq!(s.delta(&before, s.h.id("worker")), -c);
    assert_eq!(s.delta(&before, s.h.id("verifier")), 0);
    assert_eq!(s.delta(&before, s.h.id("client")), half(COLLATERAL));
    assert_eq!(s.delta(&before, BURNT_FUNDS), c - half(COLLATERAL));
    assert_eq!(s.h.balance(COMPUTE), TokenAmount::ZERO);
}

#[test]
fn malformed_and_out_of_order_messages_are_refused_and_change_nothing() {
    let mut s = setup(2);
    let good = s.terms(Verification::Replicated { k: 1 }, 60);
    let escrow = good.escrow().unwrap();
    let submit = |t: JobTerms| ComputeMethod::SubmitJob(t);
    let cases: Vec<(JobTerms, TokenAmount, ExitCode, &str)> = vec![
        (
            good.clone(),
            TokenAmount::atto(escrow.0 - 1),
            ExitCode::IllegalArgument,
            "escrows",
        ),
        (
            JobTerms {
                verification: Verification::Replicated { k: 0 },
                ..good.clone()
            },
            TokenAmount::ZERO,
            ExitCode::IllegalArgument,
            "replicas",
        ),
        (
            JobTerms {
                verification: Verification::Replicated { k: 99 },
                ..good.clone()
            },
            TokenAmount::ZERO,
            ExitCode::IllegalArgument,
            "replicas",
        ),
        (
            JobTerms {
                inputs: Vec::new(),
                ..good.clone()
            },
            escrow,
            ExitCode::IllegalArgument,
            "input pieces",
        ),
        (
            JobTerms {
                inputs: vec![JobInput {
                    mount: "../etc/passwd".into(),
                    ..good.inputs[0].clone()
                }],
                ..good.clone()
            },
            escrow,
            ExitCode::IllegalArgument,
            "relative path",
        ),
        (
            JobTerms {
                inputs: vec![good.inputs[0].clone(), good.inputs[0].clone()],
                ..good.clone()
            },
            escrow,
            ExitCode::IllegalArgument,
            "used twice",
        ),
        (
            JobTerms {
                inputs: vec![JobInput {
                    payload_size: 1017,
                    ..good.inputs[0].clone()
                }],
                ..good.clone()
            },
            escrow,
            ExitCode::IllegalArgument,
            "does not fit",
        ),
        (
            JobTerms {
                deadline: s.h.epoch(),
                ..good.clone()
            },
            escrow,
            ExitCode::IllegalArgument,
            "has passed",
        ),
        (
            JobTerms {
                limits: JobLimits {
                    fuel: 0,
                    ..good.limits
                },
                ..good.clone()
            },
            escrow,
            ExitCode::IllegalArgument,
            "positive",
        ),
        (
            JobTerms {
                providers: vec![s.miners[0], s.miners[1]],
                ..good.clone()
            },
            escrow,
            ExitCode::IllegalArgument,
            "name 1 providers",
        ),
        (
            JobTerms {
                providers: vec![s.h.id("other")],
                ..good.clone()
            },
            escrow,
            ExitCode::IllegalArgument,
            "not a miner",
        ),
        (
            JobTerms {
                verification: Verification::Verifier {
                    verifier: s.h.id("client"),
                    fee: FEE,
                    bond: BOND,
                },
                ..good.clone()
            },
            TokenAmount::atto(PAYMENT.0 + FEE.0),
            ExitCode::IllegalArgument,
            "its own job",
        ),
    ];
    for (terms, value, code, needle) in cases {
        s.refused("client", submit(terms), value, code, needle);
    }

    // Named providers only; the deal must be the provider's own, for the input piece, active.
    let job = s.submit(JobTerms {
        providers: vec![s.miners[0]],
        ..good.clone()
    });
    let accept = |m: ActorId, deals: Vec<DealId>| ComputeMethod::AcceptJob {
        job,
        provider: Address::Id(m),
        deals,
    };
    let (m0, m1, d0, d1) = (s.miners[0], s.miners[1], s.deals[0], s.deals[1]);
    s.refused(
        "worker",
        accept(m1, vec![d1]),
        COLLATERAL,
        ExitCode::Forbidden,
        "does not name",
    );
    s.refused(
        "worker",
        accept(m0, vec![d1]),
        COLLATERAL,
        ExitCode::IllegalArgument,
        "is not",
    );
    s.refused(
        "worker",
        accept(m0, vec![999]),
        COLLATERAL,
        ExitCode::NotFound,
        "no deal 999",
    );
    s.refused(
        "worker",
        accept(m0, vec![]),
        COLLATERAL,
        ExitCode::IllegalArgument,
        "one deal per input",
    );
    s.refused(
        "worker",
        accept(m0, vec![d0]),
        PAYMENT,
        ExitCode::IllegalArgument,
        "collateral",
    );
    s.refused(
        "client",
        accept(m0, vec![d0]),
        COLLATERAL,
        ExitCode::Forbidden,
        "owner or worker",
    );
    s.ok("worker", accept(m0, vec![d0]), COLLATERAL);
    s.refused(
        "worker",
        accept(m0, vec![d0]),
        COLLATERAL,
        ExitCode::IllegalState,
        "all its providers",
    );
    // Value on a method that takes none is refused by the executor.
    s.refused(
        "worker",
        ComputeMethod::CommitResult {
            job,
            provider: Address::Id(m0),
            commitment: [0; 32],
        },
        TokenAmount::atto(1),
        ExitCode::IllegalArgument,
        "does not accept value",
    );
    // A job past its deadline takes no commitment and no provider.
    let late = s.submit(good.clone());
    let j = s.job(late);
    s.h.advance_to(j.terms.deadline + 1);
    s.refused(
        "worker",
        ComputeMethod::AcceptJob {
            job: late,
            provider: Address::Id(m1),
            deals: vec![d1],
        },
        COLLATERAL,
        ExitCode::IllegalState,
        "stopped taking providers",
    );
    s.refused(
        "worker",
        ComputeMethod::CommitResult {
            job,
            provider: Address::Id(m0),
            commitment: [0; 32],
        },
        TokenAmount::ZERO,
        ExitCode::IllegalState,
        "took commitments until",
    );
    s.refused(
        "client",
        ComputeMethod::SettleJob { job: 12345 },
        TokenAmount::ZERO,
        ExitCode::NotFound,
        "no compute job",
    );
}

#[test]
fn a_deal_that_is_not_active_or_ends_too_soon_does_not_back_a_job() {
    let mut h = Harness::new();
    let piece = h.piece("not-sealed", 1024);
    let m = h.create_miner(TokenAmount::tokens(10));
    fund_market(&mut h, m);
    let start = h.epoch() + 200;
    let d = deal(&h, m, piece, 1024, false, start, h.cc_expiration());
    let ids = publish(&mut h, vec![d]);
    let mut s = Setup {
        h,
        miners: vec![m],
        deals: ids,
        piece,
        fees: Default::default(),
    };
    let job = s.submit(s.terms(Verification::Replicated { k: 1 }, 30));
    s.refused(
        "worker",
        ComputeMethod::AcceptJob {
            job,
            provider: Address::Id(m),
            deals: vec![s.deals[0]],
        },
        COLLATERAL,
        ExitCode::IllegalState,
        "not active",
    );
}
