//! Message rejection and failure semantics, checked against a twin chain.
//!
//! A *system* failure (bad signature, nonce, gas terms, unknown or non-account sender, fees not
//! covered) rejects the message: its receipt has a system code, no gas and no fee, and the state
//! root is exactly the root of a twin chain that applied an empty epoch instead. A *method* failure
//! is included: every record matches the twin's except the sender's actor record (nonce + 1,
//! balance − fee) and the burnt-funds actor (+ fee); running out of gas is included the same way
//! although its code (`SysOutOfGas`) is below 16. After an included failure the twin is replaced by
//! a copy of the chain that included it. A property test then drives random sequences of
//! operations, valid and invalid (messages, blocks, consensus faults), through the lives of several
//! miners (each operation done by the first miner or, [`Op::As`], another), with the invariants
//! checked after every epoch and the same twin comparison for every failed message.

#![allow(clippy::unwrap_used)]

use lode_testkit::harness::*;

use std::collections::{BTreeMap, BTreeSet};

use lode_chain::actors::compute::{
    self, ComputeMethod, JobId, JobInput, JobLimits, JobTerms, Verification,
};
use lode_chain::actors::market::{ClientDealProposal, DealProposal, MarketMethod};
use lode_chain::actors::miner::{
    MinerMethod, PostPartition, PreCommit, PreCommitInfo, ProveCommitInfo, SectorLocation,
    SectorOnChain, WindowPostParams,
};
use lode_chain::actors::power::PowerMethod;
use lode_chain::actors::verifreg::VerifRegMethod;
use lode_chain::actors::{Actor, BURNT_FUNDS, COMPUTE, MARKET, POWER, VERIFREG};
use lode_chain::error::StoreError;
use lode_chain::keys;
use lode_chain::message::{Message, Method, Receipt, SignedMessage};
use lode_chain::store::{Backend, CommitBatch, Head, Loaded, Overlay, StateStore, Undo};
use lode_chain::types::{ActorId, Address, DealId, Epoch, TokenAmount};
use lode_chain::{Chain, ExitCode};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Twin-chain helpers.

/// Two chains from the same genesis, both run through `setup` (which must return the same value
/// on both), with identical roots afterwards.
fn twins<T: PartialEq + std::fmt::Debug>(
    setup: impl Fn(&mut Harness) -> T,
) -> (Harness, Harness, T) {
    let mut a = Harness::new();
    let mut b = Harness::new();
    let ta = setup(&mut a);
    let tb = setup(&mut b);
    assert_eq!(ta, tb, "the twins' setup diverged");
    assert_eq!(a.chain.head(), b.chain.head(), "the twins' setup diverged");
    (a, b, ta)
}

/// Every record of the committed state.
fn records(h: &Harness) -> BTreeMap<Vec<u8>, Vec<u8>> {
    Overlay::new(h.chain.store())
        .scan_raw(b"")
        .into_iter()
        .collect()
}

fn actor(h: &Harness, id: ActorId) -> Option<Actor> {
    h.chain.view(|rt| rt.actor(id)).unwrap()
}

/// The id a message's sender names (it must exist).
fn sender_of(h: &Harness, msg: &SignedMessage) -> ActorId {
    h.chain
        .view(|rt| rt.resolve(&msg.message.from))
        .unwrap()
        .unwrap()
}

/// An unsigned message from a named account with its next nonce and generous gas.
fn unsigned(
    h: &Harness,
    from: &str,
    to: impl Into<Address>,
    method: Method,
    value: TokenAmount,
) -> Message {
    h.message(from, to.into(), method, value).message
}

fn sign(h: &Harness, m: Message, signer: &str) -> SignedMessage {
    m.sign(&h.policy.network, &key(signer))
}

/// Applies `msg` on `a` and an empty epoch on `b`; asserts a system rejection with `code` and
/// identical state roots.
fn assert_rejected(a: &mut Harness, b: &mut Harness, msg: SignedMessage, code: ExitCode) {
    assert_eq!(
        a.chain.head(),
        b.chain.head(),
        "the twins differ before the test"
    );
    assert!(
        code != ExitCode::Ok && code.value() < 16,
        "{code:?} is not a system code"
    );
    let receipts = a.step(Vec::new(), vec![msg]);
    b.step(Vec::new(), Vec::new());
    assert_eq!(receipts.len(), 1);
    let r = &receipts[0];
    assert_eq!(r.exit_code, code, "{}", r.error);
    assert_eq!(r.gas_used, 0, "a rejected message uses no gas");
    assert_eq!(r.fee, TokenAmount::ZERO, "a rejected message pays nothing");
    assert!(r.return_data.is_empty());
    assert!(!r.error.is_empty(), "a rejection says why");
    assert_eq!(
        a.chain.head().root,
        b.chain.head().root,
        "a rejected message ({code:?}: {}) changed the state",
        r.error
    );
}

/// Compares the state of `a` (which applied a failed message from `sender` with fee `fee`) with
/// `b` (which did not): only the sender's nonce and balance and the burnt funds differ.
fn assert_only_fee_charged(a: &Harness, b: &Harness, sender: ActorId, fee: TokenAmount) {
    let (sa, sb) = (actor(a, sender).unwrap(), actor(b, sender).unwrap());
    assert_eq!(sa.kind, sb.kind);
    assert_eq!(sa.nonce, sb.nonce + 1, "the nonce advances");
    assert_eq!(
        sa.balance.0 + fee.0,
        sb.balance.0,
        "the sender pays exactly the fee"
    );
    assert_eq!(
        a.balance(BURNT_FUNDS).0,
        b.balance(BURNT_FUNDS).0 + fee.0,
        "exactly the fee is burnt"
    );
    let skip = [keys::actor(sender), keys::actor(BURNT_FUNDS)];
    let strip = |h: &Harness| {
        let mut r = records(h);
        for k in &skip {
            r.remove(k);
        }
        r
    };
    let (ra, rb) = (strip(a), strip(b));
    if ra != rb {
        let keys: BTreeSet<&Vec<u8>> = ra.keys().chain(rb.keys()).collect();
        let diff: Vec<String> = keys
            .into_iter()
            .filter(|k| ra.get(*k) != rb.get(*k))
            .map(|k| keys::describe(k))
            .collect();
        panic!("a failed message changed records beyond the sender and the fee: {diff:?}");
    }
}

/// Applies `msg` on `a` and an empty epoch on `b`; asserts an included failure with `code`.
fn assert_included_failure(
    a: &mut Harness,
    b: &mut Harness,
    msg: SignedMessage,
    code: ExitCode,
) -> Receipt {
    included_failure(a, b, msg, Some(code))
}

/// Applies `msg` on `a` and an empty epoch on `b`; asserts an included failure (with `code`, if
/// given), then makes `b` a copy of `a` again.
fn included_failure(
    a: &mut Harness,
    b: &mut Harness,
    msg: SignedMessage,
    code: Option<ExitCode>,
) -> Receipt {
    assert_eq!(
        a.chain.head(),
        b.chain.head(),
        "the twins differ before the test"
    );
    let sender = sender_of(a, &msg);
    let price = msg.message.gas_price;
    let before = actor(a, sender).unwrap();
    let mut receipts = a.step(Vec::new(), vec![msg]);
    b.step(Vec::new(), Vec::new());
    assert_eq!(receipts.len(), 1);
    let r = receipts.pop().unwrap();
    if let Some(code) = code {
        assert_eq!(r.exit_code, code, "{}", r.error);
    }
    assert!(
        r.exit_code.value() >= 16 || r.exit_code == ExitCode::SysOutOfGas,
        "{:?} is not a method failure: {}",
        r.exit_code,
        r.error
    );
    assert!(r.return_data.is_empty());
    assert!(!r.error.is_empty());
    assert!(r.gas_used > 0);
    assert_eq!(r.fee.0, price.0 * u128::from(r.gas_used));
    assert_eq!(
        actor(b, sender).unwrap(),
        before,
        "the twin's sender is untouched"
    );
    assert_only_fee_charged(a, b, sender, r.fee);
    // Resynchronise the twin with the chain that included the failure.
    *b = fork(a, true);
    r
}

/// Applies `msg` on both twins; asserts success.
fn both_ok(a: &mut Harness, b: &mut Harness, msg: SignedMessage) -> Receipt {
    let ra = a.step(Vec::new(), vec![msg.clone()]).pop().unwrap();
    let rb = b.step(Vec::new(), vec![msg]).pop().unwrap();
    assert_eq!(ra.exit_code, ExitCode::Ok, "{}", ra.error);
    assert_eq!(ra, rb);
    assert_eq!(a.chain.head(), b.chain.head());
    ra
}

fn advance_both(a: &mut Harness, b: &mut Harness, to: Epoch) {
    a.advance_to(to);
    b.advance_to(to);
    assert_eq!(a.chain.head(), b.chain.head());
}

fn miner_msg(h: &Harness, from: &str, m: ActorId, method: MinerMethod) -> SignedMessage {
    h.message(from, m.into(), Method::Miner(method), TokenAmount::ZERO)
}

fn precommit_msg(h: &Harness, from: &str, m: ActorId, info: PreCommitInfo) -> SignedMessage {
    miner_msg(h, from, m, MinerMethod::PreCommitSectors(vec![info]))
}

fn flip(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes[0] ^= 1;
    bytes
}

/// A deal proposal between "client" and miner `m`, signed by the client.
#[allow(clippy::too_many_arguments)]
fn deal(
    h: &Harness,
    m: ActorId,
    label: &str,
    piece_size: u64,
    start: Epoch,
    end: Epoch,
    price: TokenAmount,
    provider_collateral: TokenAmount,
    client_collateral: TokenAmount,
) -> ClientDealProposal {
    let proposal = DealProposal {
        piece_cid: node(label),
        piece_size,
        verified: false,
        client: h.id("client"),
        provider: m,
        label: label.to_string(),
        start_epoch: start,
        end_epoch: end,
        price_per_epoch: price,
        provider_collateral,
        client_collateral,
    };
    let client_signature = key("client").sign(&proposal.signing_bytes(&h.policy.network));
    ClientDealProposal {
        proposal,
        client_signature,
    }
}

fn publish_msg(h: &Harness, deals: Vec<ClientDealProposal>) -> SignedMessage {
    h.message(
        "worker",
        MARKET.into(),
        Method::Market(MarketMethod::PublishDeals(deals)),
        TokenAmount::ZERO,
    )
}

// ---------------------------------------------------------------------------------------------
// 1. System rejections.

#[test]
fn system_failures_are_rejected_without_any_state_change() {
    let (mut a, mut b, miner) = twins(|h| {
        let m = h.create_miner(TokenAmount::tokens(10));
        let other = h.id("other");
        h.send_ok("owner", other, Method::Send, TokenAmount::tokens(1));
        m
    });
    let p = a.policy.clone();
    let owner = a.id("owner");
    let other = a.id("other");
    let base = unsigned(&a, "owner", other, Method::Send, TokenAmount::tokens(1));
    assert_eq!(base.nonce, 2, "create_miner and one send");
    let with = |f: &dyn Fn(&mut Message)| {
        let mut m = base.clone();
        f(&mut m);
        m
    };
    let owner_balance = a.balance(owner);
    let max_fee = base.max_fee().unwrap();

    // The exact gas limit a message of its own size needs (a fixed point: the limit's encoding
    // is part of the size).
    let mut tight = base.clone();
    for _ in 0..10 {
        let len = sign(&a, tight.clone(), "owner").encoded_len() as u64;
        tight.gas_limit = p.gas_base + p.gas_per_byte * len;
    }
    let len = sign(&a, tight.clone(), "owner").encoded_len() as u64;
    assert_eq!(tight.gas_limit, p.gas_base + p.gas_per_byte * len);

    let huge_label = "x".repeat(p.max_message_size as usize + 1);
    let huge = unsigned(
        &a,
        "worker",
        MARKET,
        Method::Market(MarketMethod::PublishDeals(vec![deal(
            &a,
            miner,
            &huge_label,
            2048,
            100,
            100_000,
            TokenAmount::ZERO,
            TokenAmount::ZERO,
            TokenAmount::ZERO,
        )])),
        TokenAmount::ZERO,
    );

    let cases: Vec<(&str, SignedMessage, ExitCode)> = vec![
        (
            "signed by another account's key",
            sign(&a, base.clone(), "other"),
            ExitCode::SysInvalidSignature,
        ),
        (
            "signed for another network",
            base.clone().sign("mainnet", &key("owner")),
            ExitCode::SysInvalidSignature,
        ),
        (
            "signature of a different message",
            SignedMessage {
                message: base.clone(),
                signature: sign(&a, with(&|m| m.value = TokenAmount::tokens(2)), "owner").signature,
            },
            ExitCode::SysInvalidSignature,
        ),
        (
            "nonce too high",
            sign(&a, with(&|m| m.nonce += 1), "owner"),
            ExitCode::SysSenderStateInvalid,
        ),
        (
            "nonce far too high",
            sign(&a, with(&|m| m.nonce = u64::MAX), "owner"),
            ExitCode::SysSenderStateInvalid,
        ),
        (
            "nonce already used",
            sign(&a, with(&|m| m.nonce = 0), "owner"),
            ExitCode::SysSenderStateInvalid,
        ),
        (
            "nonce just used",
            sign(&a, with(&|m| m.nonce = 1), "owner"),
            ExitCode::SysSenderStateInvalid,
        ),
        (
            "gas price one below the minimum",
            sign(
                &a,
                with(&|m| m.gas_price = TokenAmount(p.min_gas_price.0 - 1)),
                "owner",
            ),
            ExitCode::SysInvalidMessage,
        ),
        (
            "zero gas price",
            sign(&a, with(&|m| m.gas_price = TokenAmount::ZERO), "owner"),
            ExitCode::SysInvalidMessage,
        ),
        (
            "gas limit one below what the size needs",
            sign(
                &a,
                {
                    let mut t = tight.clone();
                    t.gas_limit -= 1;
                    t
                },
                "owner",
            ),
            ExitCode::SysInvalidMessage,
        ),
        (
            "zero gas limit",
            sign(&a, with(&|m| m.gas_limit = 0), "owner"),
            ExitCode::SysInvalidMessage,
        ),
        (
            "message larger than the maximum size",
            sign(&a, huge, "worker"),
            ExitCode::SysInvalidMessage,
        ),
        (
            "sender id does not exist",
            sign(
                &a,
                with(&|m| m.from = Address::Id(ActorId(999_999))),
                "owner",
            ),
            ExitCode::SysSenderInvalid,
        ),
        (
            "sender key has no account",
            sign(
                &a,
                with(&|m| m.from = Address::Bls(key("nobody").public_key())),
                "nobody",
            ),
            ExitCode::SysSenderInvalid,
        ),
        (
            "sender is a miner",
            sign(&a, with(&|m| m.from = Address::Id(miner)), "worker"),
            ExitCode::SysSenderInvalid,
        ),
        (
            "sender is the burnt-funds actor",
            sign(&a, with(&|m| m.from = Address::Id(BURNT_FUNDS)), "owner"),
            ExitCode::SysSenderInvalid,
        ),
        (
            "sender is the market actor",
            sign(&a, with(&|m| m.from = Address::Id(MARKET)), "owner"),
            ExitCode::SysSenderInvalid,
        ),
        (
            "value + max fee one atto above the balance",
            sign(
                &a,
                with(&|m| m.value = TokenAmount(owner_balance.0 - max_fee.0 + 1)),
                "owner",
            ),
            ExitCode::SysInsufficientFunds,
        ),
        (
            "value above the balance",
            sign(
                &a,
                with(&|m| m.value = TokenAmount(owner_balance.0 + 1)),
                "owner",
            ),
            ExitCode::SysInsufficientFunds,
        ),
        (
            "max fee above the balance",
            sign(
                &a,
                with(&|m| {
                    m.value = TokenAmount::ZERO;
                    m.gas_price = TokenAmount(owner_balance.0 / u128::from(m.gas_limit) + 1);
                }),
                "owner",
            ),
            ExitCode::SysInsufficientFunds,
        ),
        (
            "gas limit × gas price overflows",
            sign(
                &a,
                with(&|m| m.gas_price = TokenAmount(u128::MAX / 2)),
                "owner",
            ),
            ExitCode::SysInsufficientFunds,
        ),
        (
            "max fee + value overflows",
            sign(&a, with(&|m| m.value = TokenAmount(u128::MAX)), "owner"),
            ExitCode::SysInsufficientFunds,
        ),
        (
            "market AddBalance of u128::MAX",
            sign(
                &a,
                with(&|m| {
                    m.to = Address::Id(MARKET);
                    m.method = Method::Market(MarketMethod::AddBalance {
                        owner: Address::Id(owner),
                    });
                    m.value = TokenAmount(u128::MAX);
                }),
                "owner",
            ),
            ExitCode::SysInsufficientFunds,
        ),
        (
            "a failing method with a value above the balance",
            sign(
                &a,
                with(&|m| {
                    m.to = Address::Id(MARKET);
                    m.method = Method::Miner(MinerMethod::RepayDebt);
                    m.value = TokenAmount(owner_balance.0);
                }),
                "owner",
            ),
            ExitCode::SysInsufficientFunds,
        ),
    ];
    for (what, msg, code) in cases {
        eprintln!("rejection: {what}");
        assert_rejected(&mut a, &mut b, msg, code);
    }

    // Rejected messages between valid ones: the block is as if they were absent.
    let first = sign(&a, base.clone(), "owner");
    let second = sign(&a, with(&|m| m.nonce += 1), "owner");
    let mixed = vec![
        first.clone(),
        sign(&a, with(&|m| m.nonce += 5), "owner"),
        sign(&a, with(&|m| m.nonce += 1), "other"),
        second.clone(),
        sign(&a, with(&|m| m.gas_price = TokenAmount::ZERO), "owner"),
    ];
    let ra = a.step(Vec::new(), mixed);
    let rb = b.step(Vec::new(), vec![first, second]);
    assert_eq!(ra.len(), 5);
    assert_eq!(
        ra.iter().map(|r| r.exit_code).collect::<Vec<_>>(),
        vec![
            ExitCode::Ok,
            ExitCode::SysSenderStateInvalid,
            ExitCode::SysInvalidSignature,
            ExitCode::Ok,
            ExitCode::SysInvalidMessage,
        ]
    );
    assert_eq!(ra[0], rb[0]);
    assert_eq!(ra[3], rb[1]);
    assert_eq!(a.chain.head(), b.chain.head());

    // Positive controls at the boundaries: exactly the gas the size needs, and value + max fee
    // exactly the balance, are included and succeed.
    let exact = unsigned(&a, "owner", other, Method::Send, TokenAmount::tokens(1));
    let mut exact_gas = exact.clone();
    exact_gas.gas_limit = tight.gas_limit;
    let msg = sign(&a, exact_gas, "owner");
    let r = both_ok(&mut a, &mut b, msg);
    assert_eq!(r.gas_used, tight.gas_limit);
    assert_eq!(r.fee.0, u128::from(tight.gas_limit) * p.min_gas_price.0);

    let other_balance = a.balance(other);
    let mut all_in = unsigned(&a, "other", owner, Method::Send, TokenAmount::ZERO);
    all_in.value = TokenAmount(other_balance.0 - all_in.max_fee().unwrap().0);
    let msg = sign(&a, all_in.clone(), "other");
    let r = both_ok(&mut a, &mut b, msg);
    assert_eq!(
        a.balance(other).0,
        other_balance.0 - all_in.value.0 - r.fee.0
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Method failures.

#[test]
fn bad_proofs_are_included_and_charged() {
    let (mut a, mut b, m) = twins(|h| {
        let m = h.create_miner(TokenAmount::tokens(100));
        let exp = h.cc_expiration();
        let r = h.precommit(m, 1, Vec::new(), &[], exp);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
        let ready = h.seed_ready(m, 1);
        h.advance_to(ready - 1);
        m
    });

    // A PoRep proof with one byte flipped.
    let good = fake_seal_proof(&a.seal_public(m, 1));
    let bad: Vec<Vec<u8>> = good.iter().cloned().map(flip).collect();
    for proofs in [bad, Vec::new(), vec![Vec::new()]] {
        let msg = miner_msg(
            &a,
            "worker",
            m,
            MinerMethod::ProveCommitSector {
                sector_number: 1,
                proofs,
            },
        );
        assert_included_failure(&mut a, &mut b, msg, ExitCode::InvalidProof);
    }
    // The pre-commit survived the failures: the right proof still works.
    let msg = miner_msg(
        &a,
        "worker",
        m,
        MinerMethod::ProveCommitSector {
            sector_number: 1,
            proofs: good,
        },
    );
    both_ok(&mut a, &mut b, msg);
    let s = a.sector(m, 1).unwrap();

    // A Window PoSt proof with one byte flipped, in the open window.
    let info = a.deadline(m, s.deadline);
    advance_both(&mut a, &mut b, info.open - 1);
    let statement = a.window_statement(m, s.deadline, s.partition, &BTreeSet::new());
    let good = fake_window_proof(&statement);
    let post = |proof: Vec<u8>, deadline: u64| {
        MinerMethod::SubmitWindowPost(WindowPostParams {
            deadline,
            partitions: vec![PostPartition {
                index: s.partition,
                skipped: BTreeSet::new(),
            }],
            proofs: vec![proof],
        })
    };
    let msg = miner_msg(&a, "worker", m, post(flip(good.clone()), s.deadline));
    assert_included_failure(&mut a, &mut b, msg, ExitCode::InvalidProof);
    // Skipping the only sector: nothing left to prove.
    let msg = miner_msg(
        &a,
        "worker",
        m,
        MinerMethod::SubmitWindowPost(WindowPostParams {
            deadline: s.deadline,
            partitions: vec![PostPartition {
                index: s.partition,
                skipped: [1].into(),
            }],
            proofs: vec![good.clone()],
        }),
    );
    assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
    // The right proof for the wrong deadline.
    let wrong = (s.deadline + 1) % a.policy.wpost_period_deadlines;
    let msg = miner_msg(&a, "worker", m, post(good.clone(), wrong));
    assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
    // Still in the window: the right proof is accepted and gives power.
    let msg = miner_msg(&a, "worker", m, post(good, s.deadline));
    both_ok(&mut a, &mut b, msg);
    assert_eq!(a.claim(m).power.raw, 2048);
}

#[test]
fn unauthorised_callers_are_forbidden() {
    let (mut a, mut b, m) = twins(|h| {
        let m = h.create_miner(TokenAmount::tokens(100));
        h.send_ok(
            "owner",
            MARKET,
            Method::Market(MarketMethod::AddBalance { owner: m.into() }),
            TokenAmount::tokens(3),
        );
        let client = h.id("client");
        h.send_ok(
            "client",
            MARKET,
            Method::Market(MarketMethod::AddBalance {
                owner: client.into(),
            }),
            TokenAmount::tokens(3),
        );
        let exp = h.cc_expiration();
        let r = h.precommit(m, 1, Vec::new(), &[], exp);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
        m
    });
    let info = precommit_info(&a, 2, Vec::new(), &[], a.cc_expiration());
    let msg = precommit_msg(&a, "other", m, info);
    assert_included_failure(&mut a, &mut b, msg, ExitCode::Forbidden);

    let withdraw = MinerMethod::WithdrawBalance {
        amount: TokenAmount::tokens(1),
    };
    for who in ["other", "worker", "client"] {
        let msg = miner_msg(&a, who, m, withdraw.clone());
        assert_included_failure(&mut a, &mut b, msg, ExitCode::Forbidden);
    }

    let ready = a.seed_ready(m, 1);
    advance_both(&mut a, &mut b, ready - 1);
    let proofs = fake_seal_proof(&a.seal_public(m, 1));
    let msg = miner_msg(
        &a,
        "other",
        m,
        MinerMethod::ProveCommitSector {
            sector_number: 1,
            proofs,
        },
    );
    assert_included_failure(&mut a, &mut b, msg, ExitCode::Forbidden);
    let msg = miner_msg(&a, "client", m, MinerMethod::RepayDebt);
    assert_included_failure(&mut a, &mut b, msg, ExitCode::Forbidden);

    // Market escrow: only the owner (or a miner's owner or worker) may withdraw it.
    let client = a.id("client");
    for (who, owner) in [
        ("other", m),
        ("client", m),
        ("other", client),
        ("owner", client),
    ] {
        let msg = a.message(
            who,
            MARKET.into(),
            Method::Market(MarketMethod::WithdrawBalance {
                owner: owner.into(),
                amount: TokenAmount::tokens(1),
            }),
            TokenAmount::ZERO,
        );
        assert_included_failure(&mut a, &mut b, msg, ExitCode::Forbidden);
    }

    // Publishing deals for a miner: only its owner or worker.
    let now = a.epoch();
    let d = deal(
        &a,
        m,
        "piece",
        2048,
        now + 1000,
        now + 1000 + a.policy.deal_min_duration,
        TokenAmount::ZERO,
        TokenAmount::tokens(1),
        TokenAmount::ZERO,
    );
    let msg = a.message(
        "other",
        MARKET.into(),
        Method::Market(MarketMethod::PublishDeals(vec![d])),
        TokenAmount::ZERO,
    );
    assert_included_failure(&mut a, &mut b, msg, ExitCode::Forbidden);

    // The verified registry: only the root adds verifiers, only verifiers add clients.
    let client_addr: Address = client.into();
    let msg = a.message(
        "other",
        VERIFREG.into(),
        Method::VerifReg(VerifRegMethod::AddVerifier {
            verifier: client_addr,
            allowance: 1 << 30,
        }),
        TokenAmount::ZERO,
    );
    assert_included_failure(&mut a, &mut b, msg, ExitCode::Forbidden);
    let msg = a.message(
        "other",
        VERIFREG.into(),
        Method::VerifReg(VerifRegMethod::AddVerifiedClient {
            client: client_addr,
            allowance: 1 << 30,
        }),
        TokenAmount::ZERO,
    );
    let r = a.step(Vec::new(), vec![msg]).pop().unwrap();
    b.step(Vec::new(), Vec::new());
    assert!(r.exit_code.value() >= 16, "{:?}: {}", r.exit_code, r.error);
    assert_only_fee_charged(&a, &b, a.id("other"), r.fee);
}

#[test]
fn peer_info_is_changed_by_the_owner_or_worker_within_bounds() {
    use lode_chain::actors::miner::{
        MAX_MULTIADDR_BYTES, MAX_MULTIADDRS, MAX_PEER_ID_BYTES, MinerInfo,
    };
    let (mut a, mut b, m) = twins(|h| h.create_miner(TokenAmount::tokens(100)));
    let change = |peer_id: Vec<u8>, multiaddrs: Vec<Vec<u8>>| MinerMethod::ChangePeerInfo {
        peer_id,
        multiaddrs,
    };
    let info = |h: &Harness| h.get::<MinerInfo>(&keys::miner_info(m)).unwrap();
    assert!(info(&a).peer_id.is_empty());

    let msg = miner_msg(&a, "other", m, change(vec![1; 38], vec![vec![4; 8]]));
    assert_included_failure(&mut a, &mut b, msg, ExitCode::Forbidden);
    for bad in [
        change(vec![1; MAX_PEER_ID_BYTES + 1], Vec::new()),
        change(vec![1; 38], vec![vec![4; 8]; MAX_MULTIADDRS + 1]),
        change(vec![1; 38], vec![vec![4; MAX_MULTIADDR_BYTES + 1]]),
        change(vec![1; 38], vec![Vec::new()]),
    ] {
        let msg = miner_msg(&a, "worker", m, bad);
        assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
    }
    assert!(info(&a).peer_id.is_empty());

    for (who, peer) in [("worker", 7u8), ("owner", 9u8)] {
        let msg = miner_msg(&a, who, m, change(vec![peer; 38], vec![vec![peer; 12]; 2]));
        both_ok(&mut a, &mut b, msg);
        let i = info(&a);
        assert_eq!(i.peer_id, vec![peer; 38]);
        assert_eq!(i.multiaddrs, vec![vec![peer; 12]; 2]);
    }
}

#[test]
fn deal_amounts_beyond_the_limits_are_illegal() {
    let (mut a, mut b, m) = twins(|h| {
        let m = h.create_miner(TokenAmount::tokens(100));
        h.send_ok(
            "owner",
            MARKET,
            Method::Market(MarketMethod::AddBalance { owner: m.into() }),
            TokenAmount::tokens(5),
        );
        let client = h.id("client");
        h.send_ok(
            "client",
            MARKET,
            Method::Market(MarketMethod::AddBalance {
                owner: client.into(),
            }),
            TokenAmount::tokens(5),
        );
        m
    });
    let p = a.policy.clone();
    let now = a.epoch();
    let (start, end) = (now + 1000, now + 1000 + p.deal_min_duration);
    let huge = TokenAmount(u128::MAX / 2);
    let max = p.deal_max_amount;
    let one = TokenAmount::tokens(1);
    let z = TokenAmount::ZERO;
    let cases = [
        ("huge price", huge, one, z, ExitCode::IllegalArgument),
        (
            "max price",
            TokenAmount(u128::MAX),
            one,
            z,
            ExitCode::IllegalArgument,
        ),
        (
            "huge provider collateral",
            z,
            huge,
            z,
            ExitCode::IllegalArgument,
        ),
        (
            "huge client collateral",
            z,
            one,
            huge,
            ExitCode::IllegalArgument,
        ),
        (
            "price above the cap",
            TokenAmount(max.0 + 1),
            one,
            z,
            ExitCode::IllegalArgument,
        ),
        // At the caps the total fee fits in u128 but not in the client's escrow.
        (
            "price at the cap",
            max,
            one,
            max,
            ExitCode::InsufficientFunds,
        ),
        (
            "provider collateral at the cap",
            z,
            max,
            z,
            ExitCode::InsufficientFunds,
        ),
        ("no provider collateral", z, z, z, ExitCode::IllegalArgument),
    ];
    for (what, price, pc, cc, code) in cases {
        eprintln!("deal: {what}");
        let msg = publish_msg(&a, vec![deal(&a, m, what, 2048, start, end, price, pc, cc)]);
        assert_included_failure(&mut a, &mut b, msg, code);
    }
    // The longest deal at the price cap: its fee still fits in u128 (so `Overflow` is unreachable
    // through PublishDeals under these caps) and is refused for want of escrow.
    let longest = deal(
        &a,
        m,
        "long",
        2048,
        start,
        start + p.deal_max_duration,
        max,
        one,
        max,
    );
    assert!(longest.proposal.client_lock().is_some());
    let msg = publish_msg(&a, vec![longest]);
    assert_included_failure(&mut a, &mut b, msg, ExitCode::InsufficientFunds);

    // Other invalid proposals: bad signature, bad piece size, starts in the past, too short,
    // a second proposal in the batch invalid (all or none).
    let mut forged = deal(&a, m, "forged", 2048, start, end, z, one, z);
    forged.proposal.price_per_epoch = TokenAmount(1);
    let ok = deal(&a, m, "fine", 2048, start, end, TokenAmount(1), one, z);
    let bad_batches = vec![
        vec![forged],
        vec![deal(&a, m, "size", 4096, start, end, z, one, z)],
        vec![deal(&a, m, "size", 100, start, end, z, one, z)],
        vec![deal(&a, m, "past", 2048, now, end, z, one, z)],
        vec![deal(
            &a,
            m,
            "short",
            2048,
            start,
            start + p.deal_min_duration - 1,
            z,
            one,
            z,
        )],
        vec![ok.clone(), deal(&a, m, "size", 4096, start, end, z, one, z)],
        vec![ok.clone(), ok.clone()],
        Vec::new(),
    ];
    for batch in bad_batches {
        let msg = publish_msg(&a, batch);
        assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
    }
    let msg = publish_msg(&a, vec![ok.clone()]);
    let r = both_ok(&mut a, &mut b, msg);
    assert_eq!(decode::<Vec<DealId>>(&r.return_data), vec![0]);
    // Replaying the published proposal.
    let msg = publish_msg(&a, vec![ok]);
    assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
}

#[test]
fn withdrawing_more_than_available_withdraws_what_is_available() {
    let (mut a, mut b, m) = twins(|h| {
        let m = h.create_miner(TokenAmount::tokens(100));
        h.onboard_cc(m, 1);
        let client = h.id("client");
        h.send_ok(
            "client",
            MARKET,
            Method::Market(MarketMethod::AddBalance {
                owner: client.into(),
            }),
            TokenAmount::tokens(7),
        );
        m
    });
    let owner = a.id("owner");
    let st = a.miner_state(m);
    assert!(
        !st.total_locked().is_zero(),
        "the sector's pledge is locked"
    );
    let available = st.available(a.balance(m));
    assert!(available.0 > 0 && available < a.balance(m));
    let (owner_before, miner_before) = (a.balance(owner), a.balance(m));
    let msg = miner_msg(
        &a,
        "owner",
        m,
        MinerMethod::WithdrawBalance {
            amount: TokenAmount(u128::MAX),
        },
    );
    let r = both_ok(&mut a, &mut b, msg);
    // The available balance is taken as of the message's epoch; nothing vests in between.
    assert_eq!(decode::<TokenAmount>(&r.return_data), available);
    assert_eq!(a.balance(m).0, miner_before.0 - available.0);
    assert_eq!(a.balance(owner).0, owner_before.0 + available.0 - r.fee.0);
    assert_eq!(a.miner_state(m).available(a.balance(m)), TokenAmount::ZERO);
    // Nothing left: a second withdrawal returns zero.
    let msg = miner_msg(
        &a,
        "owner",
        m,
        MinerMethod::WithdrawBalance {
            amount: TokenAmount(u128::MAX),
        },
    );
    let r = both_ok(&mut a, &mut b, msg);
    assert_eq!(decode::<TokenAmount>(&r.return_data), TokenAmount::ZERO);

    // Market escrow likewise.
    let client = a.id("client");
    let before = a.balance(client);
    let msg = a.message(
        "client",
        MARKET.into(),
        Method::Market(MarketMethod::WithdrawBalance {
            owner: client.into(),
            amount: TokenAmount(u128::MAX),
        }),
        TokenAmount::ZERO,
    );
    let r = both_ok(&mut a, &mut b, msg);
    assert_eq!(
        decode::<TokenAmount>(&r.return_data),
        TokenAmount::tokens(7)
    );
    assert_eq!(
        a.balance(client).0,
        before.0 + TokenAmount::tokens(7).0 - r.fee.0
    );
    assert_eq!(a.balance(MARKET), TokenAmount::ZERO);
}

#[test]
fn methods_sent_to_the_wrong_actor_are_unhandled() {
    let (mut a, mut b, m) = twins(|h| h.create_miner(TokenAmount::tokens(10)));
    let client = a.id("client");
    let nobody: Address = key("nobody").public_key().into();
    let cases: Vec<(Address, Method)> = vec![
        (MARKET.into(), Method::Miner(MinerMethod::RepayDebt)),
        (
            m.into(),
            Method::Market(MarketMethod::AddBalance { owner: m.into() }),
        ),
        (
            client.into(),
            Method::Power(PowerMethod::CreateMiner {
                worker: client.into(),
                sector_size: lode_proofs::sector::SectorSize::S2KiB,
            }),
        ),
        (
            POWER.into(),
            Method::VerifReg(VerifRegMethod::RemoveExpiredAllocations { ids: Vec::new() }),
        ),
        (BURNT_FUNDS.into(), Method::Miner(MinerMethod::RepayDebt)),
        (
            COMPUTE.into(),
            Method::Market(MarketMethod::SettleDeals(Vec::new())),
        ),
        // A new BLS address: the account it would create is rolled back with the method.
        (nobody, Method::Miner(MinerMethod::RepayDebt)),
    ];
    for (to, method) in cases {
        let msg = a.message("owner", to, method.clone(), TokenAmount::ZERO);
        assert_included_failure(&mut a, &mut b, msg, ExitCode::UnhandledMethod);
        // With a value: refused (whether for the value or the method), the transfer rolled back.
        let msg = a.message("owner", to, method, TokenAmount::tokens(2));
        included_failure(&mut a, &mut b, msg, None);
    }
    assert!(a.chain.view(|rt| rt.resolve(&nobody)).unwrap().is_none());
    // A method to an id that does not exist.
    let msg = a.message(
        "owner",
        ActorId(999_999).into(),
        Method::Miner(MinerMethod::RepayDebt),
        TokenAmount::ZERO,
    );
    assert_included_failure(&mut a, &mut b, msg, ExitCode::NotFound);
}

#[test]
fn a_prove_commit_batch_skips_the_sectors_that_fail_and_activates_the_others() {
    let (mut a, mut b, m) = twins(|h| {
        let m = h.create_miner(TokenAmount::tokens(100));
        let exp = h.cc_expiration();
        for n in 1..=4 {
            let r = h.precommit(m, n, Vec::new(), &[], exp);
            assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
        }
        let ready = h.seed_ready(m, 4);
        h.advance_to(ready - 1);
        m
    });
    let good = |h: &Harness, n: u64| ProveCommitInfo {
        sector_number: n,
        proofs: fake_seal_proof(&h.seal_public(m, n)),
    };
    let bad = |h: &Harness, n: u64| ProveCommitInfo {
        sector_number: n,
        proofs: fake_seal_proof(&h.seal_public(m, n))
            .into_iter()
            .map(flip)
            .collect(),
    };
    let batch = |h: &Harness, infos: Vec<ProveCommitInfo>| {
        miner_msg(h, "worker", m, MinerMethod::ProveCommitSectors(infos))
    };
    // Malformed batches are refused whole: empty, a sector twice (even with good proofs).
    let msg = batch(&a, Vec::new());
    assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
    let msg = batch(&a, vec![good(&a, 1), good(&a, 1)]);
    let r = assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
    assert!(r.error.contains("twice"), "{}", r.error);
    // Every sector failing: the first one's code (an invalid proof; an unknown sector).
    let msg = batch(&a, vec![bad(&a, 2)]);
    assert_included_failure(&mut a, &mut b, msg, ExitCode::InvalidProof);
    let msg = batch(
        &a,
        vec![
            ProveCommitInfo {
                sector_number: 99,
                proofs: Vec::new(),
            },
            bad(&a, 2),
        ],
    );
    let r = assert_included_failure(&mut a, &mut b, msg, ExitCode::NotFound);
    assert!(r.error.contains("no sector of the batch"), "{}", r.error);
    assert!(a.sector(m, 2).is_none());
    // A good sector, a bad one, an unknown one and another good one: the good ones are
    // activated, in the batch's order; the bad one stays pre-committed.
    let single_gas = {
        let mut c = fork(&a, false);
        let msg = miner_msg(
            &c,
            "worker",
            m,
            MinerMethod::ProveCommitSector {
                sector_number: 1,
                proofs: good(&c, 1).proofs,
            },
        );
        c.step(Vec::new(), vec![msg]).pop().unwrap().gas_used
    };
    let first = good(&a, 1);
    let unknown = ProveCommitInfo {
        sector_number: 99,
        proofs: first.proofs.clone(),
    };
    let msg = batch(&a, vec![good(&a, 3), bad(&a, 2), unknown, good(&a, 1)]);
    let r = both_ok(&mut a, &mut b, msg);
    let proven: Vec<u64> = postcard::from_bytes(&r.return_data).unwrap();
    assert_eq!(proven, vec![3, 1]);
    assert!(a.sector(m, 1).is_some() && a.sector(m, 3).is_some());
    assert!(a.sector(m, 2).is_none());
    let pc: Option<PreCommit> = a.get(&keys::precommit(m, 2));
    assert!(pc.is_some(), "the skipped sector keeps its pre-commit");
    // Gas per sector and per proof: more than one single prove-commit's.
    assert!(
        r.gas_used > single_gas + 3 * a.policy.gas_per_sector,
        "{} vs {single_gas}",
        r.gas_used
    );
    // The skipped sector is proven later; a sector already proven is now unknown.
    let msg = batch(&a, vec![good(&a, 2)]);
    let r = both_ok(&mut a, &mut b, msg);
    assert_eq!(
        postcard::from_bytes::<Vec<u64>>(&r.return_data).unwrap(),
        vec![2]
    );
    let msg = batch(&a, vec![first.clone()]);
    assert_included_failure(&mut a, &mut b, msg, ExitCode::NotFound);
    // A batch larger than the policy's bound.
    let max = a.policy.pre_commit_sector_batch_max;
    let many = (0..=max)
        .map(|n| ProveCommitInfo {
            sector_number: 1000 + n,
            proofs: Vec::new(),
        })
        .collect();
    let msg = batch(&a, many);
    assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
}

#[test]
fn sector_numbers_are_never_reused_and_proofs_wait_for_the_seed() {
    let (mut a, mut b, m) = twins(|h| {
        let m = h.create_miner(TokenAmount::tokens(100));
        let exp = h.cc_expiration();
        let r = h.precommit(m, 1, Vec::new(), &[], exp);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
        m
    });
    let p = a.policy.clone();
    // Too early: at every epoch up to the seed epoch.
    let ready = a.seed_ready(m, 1);
    let proofs = fake_seal_proof(&a.seal_public(m, 1));
    let prove = MinerMethod::ProveCommitSector {
        sector_number: 1,
        proofs: proofs.clone(),
    };
    for _ in 0..2 {
        let msg = miner_msg(&a, "worker", m, prove.clone());
        assert_included_failure(&mut a, &mut b, msg, ExitCode::Forbidden);
    }
    advance_both(&mut a, &mut b, ready - 2);
    let msg = miner_msg(&a, "worker", m, prove.clone());
    assert_included_failure(&mut a, &mut b, msg, ExitCode::Forbidden);
    assert_eq!(a.epoch(), ready - 1);

    // The pending pre-commit's number.
    let exp = a.cc_expiration();
    let info = precommit_info(&a, 1, Vec::new(), &[], exp);
    let msg = precommit_msg(&a, "worker", m, info);
    assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
    // The same number twice in one batch.
    let info = precommit_info(&a, 2, Vec::new(), &[], exp);
    let msg = miner_msg(
        &a,
        "worker",
        m,
        MinerMethod::PreCommitSectors(vec![info.clone(), info]),
    );
    assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);

    // Now it may be proven; then its number stays used.
    let msg = miner_msg(&a, "worker", m, prove.clone());
    both_ok(&mut a, &mut b, msg);
    let info = precommit_info(&a, 1, Vec::new(), &[], a.cc_expiration());
    let msg = precommit_msg(&a, "worker", m, info);
    assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
    // Proving it again: no pre-commit any more.
    let msg = miner_msg(&a, "worker", m, prove);
    assert_included_failure(&mut a, &mut b, msg, ExitCode::NotFound);

    // Other invalid pre-commits (each judged at the epoch its message is applied in).
    let min_exp =
        |h: &Harness| h.epoch() + 1 + p.max_prove_commit_duration + p.min_sector_expiration;
    for k in 0..7 {
        let now = a.epoch() + 1;
        let mut i = precommit_info(&a, 3, Vec::new(), &[], a.cc_expiration());
        let mut code = ExitCode::IllegalArgument;
        match k {
            0 => i.expiration = min_exp(&a) - 1,
            1 => i.expiration = now + p.max_sector_expiration_extension + 1,
            2 => i.seal_rand_epoch = now,
            3 => i.seal_rand_epoch = now + 1,
            4 => i.comm_r = [0xff; 32],
            5 => i.comm_d = node("not the empty sector"),
            _ => {
                i.deal_ids = vec![42];
                code = ExitCode::NotFound;
            }
        }
        let msg = precommit_msg(&a, "worker", m, i);
        assert_included_failure(&mut a, &mut b, msg, code);
    }
    let msg = miner_msg(&a, "worker", m, MinerMethod::PreCommitSectors(Vec::new()));
    assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
    // A seal randomness epoch one past the lookback.
    advance_both(&mut a, &mut b, p.max_pre_commit_randomness_lookback + 10);
    let mut i = precommit_info(&a, 3, Vec::new(), &[], a.cc_expiration());
    i.seal_rand_epoch = a.epoch() - p.max_pre_commit_randomness_lookback;
    let msg = precommit_msg(&a, "worker", m, i.clone());
    assert_included_failure(&mut a, &mut b, msg, ExitCode::IllegalArgument);
    // The good one at the oldest randomness and the minimum expiration is accepted.
    i.seal_rand_epoch = a.epoch() + 1 - p.max_pre_commit_randomness_lookback;
    i.expiration = min_exp(&a);
    let msg = precommit_msg(&a, "worker", m, i);
    both_ok(&mut a, &mut b, msg);
}

#[test]
fn running_out_of_gas_is_included_and_charges_the_whole_limit() {
    let (mut a, mut b, m) = twins(|h| {
        let m = h.create_miner(TokenAmount::tokens(100));
        let exp = h.cc_expiration();
        let r = h.precommit(m, 1, Vec::new(), &[], exp);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
        let ready = h.seed_ready(m, 1);
        h.advance_to(ready - 1);
        m
    });
    let proofs = fake_seal_proof(&a.seal_public(m, 1));
    let mut msg = unsigned(
        &a,
        "worker",
        m,
        Method::Miner(MinerMethod::ProveCommitSector {
            sector_number: 1,
            proofs,
        }),
        TokenAmount::ZERO,
    );
    // Enough to be included, not enough for the proof.
    msg.gas_limit = 500_000;
    let limit = msg.gas_limit;
    let msg = sign(&a, msg, "worker");
    let r = assert_included_failure(&mut a, &mut b, msg, ExitCode::SysOutOfGas);
    assert_eq!(r.gas_used, limit);
    assert!(a.sector(m, 1).is_none());
}

// ---------------------------------------------------------------------------------------------
// 3. Duplicates and replays.

#[test]
fn a_message_applies_once_per_epoch_and_cannot_be_replayed() {
    let (mut a, mut b, ()) = twins(|_| ());
    let other = a.id("other");
    let owner = a.id("owner");
    let msg = a.message("owner", other.into(), Method::Send, TokenAmount::tokens(3));
    let before = a.balance(other);
    let ra = a.step(Vec::new(), vec![msg.clone(), msg.clone(), msg.clone()]);
    let rb = b.step(Vec::new(), vec![msg.clone()]);
    assert_eq!(ra.len(), 1, "one receipt per distinct message");
    assert_eq!(ra, rb);
    assert_eq!(a.chain.head(), b.chain.head());
    assert_eq!(a.balance(other).0, before.0 + TokenAmount::tokens(3).0);
    assert_eq!(actor(&a, owner).unwrap().nonce, 1);

    // A duplicate around another message of the same sender: still once, in first position.
    let next = a.message("owner", other.into(), Method::Send, TokenAmount::tokens(1));
    let ra = a.step(Vec::new(), vec![next.clone(), msg.clone(), next.clone()]);
    let rb = b.step(Vec::new(), vec![next.clone(), msg.clone()]);
    assert_eq!(ra.len(), 2);
    assert_eq!(ra[0].exit_code, ExitCode::Ok);
    assert_eq!(ra[1].exit_code, ExitCode::SysSenderStateInvalid);
    assert_eq!(ra, rb);
    assert_eq!(a.chain.head(), b.chain.head());

    // Replays in later epochs are rejected by their nonce.
    assert_rejected(&mut a, &mut b, msg, ExitCode::SysSenderStateInvalid);
    assert_rejected(&mut a, &mut b, next, ExitCode::SysSenderStateInvalid);
    assert_eq!(actor(&a, owner).unwrap().nonce, 2);
}

#[test]
fn one_nonce_admits_one_message_whatever_address_names_the_sender() {
    let (mut a, mut b, ()) = twins(|_| ());
    let other = a.id("other");
    let by_id = unsigned(&a, "owner", other, Method::Send, TokenAmount::tokens(1));
    let mut by_key = by_id.clone();
    by_key.from = key("owner").public_key().into();
    let (by_id, by_key) = (sign(&a, by_id, "owner"), sign(&a, by_key, "owner"));
    assert_ne!(by_id.id(), by_key.id(), "two distinct messages");
    let ra = a.step(Vec::new(), vec![by_key.clone(), by_id.clone()]);
    let rb = b.step(Vec::new(), vec![by_key.clone()]);
    assert_eq!(ra.len(), 2);
    assert_eq!(ra[0], rb[0]);
    assert_eq!(ra[0].exit_code, ExitCode::Ok, "{}", ra[0].error);
    assert_eq!(ra[1].exit_code, ExitCode::SysSenderStateInvalid);
    assert_eq!(a.chain.head(), b.chain.head());
    assert_rejected(&mut a, &mut b, by_id, ExitCode::SysSenderStateInvalid);
    assert_rejected(&mut a, &mut b, by_key, ExitCode::SysSenderStateInvalid);
}

#[test]
fn an_account_created_in_an_epoch_can_send_after_its_creation_only() {
    let (mut a, mut b, ()) = twins(|_| ());
    let nobody = key("nobody").public_key();
    let owner = a.id("owner");
    let fund = a.message("owner", nobody.into(), Method::Send, TokenAmount::tokens(5));
    let next_id = ActorId(a.chain.view(|rt| rt.globals()).unwrap().next_actor_id);
    let spend = |from: Address| {
        Message {
            from,
            to: owner.into(),
            nonce: 0,
            value: TokenAmount::tokens(1),
            method: Method::Send,
            gas_limit: 1_000_000,
            gas_price: a.policy.min_gas_price,
        }
        .sign(&a.policy.network, &key("nobody"))
    };
    let (by_key, by_id) = (spend(nobody.into()), spend(next_id.into()));
    // Before its creation, in the same epoch: rejected, as if absent.
    let ra = a.step(
        Vec::new(),
        vec![by_key.clone(), by_id.clone(), fund.clone()],
    );
    let rb = b.step(Vec::new(), vec![fund]);
    assert_eq!(
        ra.iter().map(|r| r.exit_code).collect::<Vec<_>>(),
        vec![
            ExitCode::SysSenderInvalid,
            ExitCode::SysSenderInvalid,
            ExitCode::Ok
        ]
    );
    assert_eq!(ra[2], rb[0]);
    assert_eq!(a.chain.head(), b.chain.head());
    assert_eq!(a.id("nobody"), next_id);

    // After its creation, in the same epoch: applied (once: both name the same nonce).
    let (mut a, mut b, ()) = twins(|_| ());
    let fund = a.message("owner", nobody.into(), Method::Send, TokenAmount::tokens(5));
    let ra = a.step(
        Vec::new(),
        vec![fund.clone(), by_id.clone(), by_key.clone()],
    );
    let rb = b.step(Vec::new(), vec![fund, by_id]);
    assert_eq!(
        ra.iter().map(|r| r.exit_code).collect::<Vec<_>>(),
        vec![ExitCode::Ok, ExitCode::Ok, ExitCode::SysSenderStateInvalid]
    );
    assert_eq!(&ra[..2], &rb[..]);
    assert_eq!(a.chain.head(), b.chain.head());
    let nobody_id = a.id("nobody");
    assert_eq!(actor(&a, nobody_id).unwrap().nonce, 1);
    assert_eq!(
        a.balance(nobody_id).0,
        TokenAmount::tokens(4).0 - ra[1].fee.0
    );
}

// ---------------------------------------------------------------------------------------------
// Value sent with a plain `Send`: it must land where it is accounted for (an account, a miner, the
// burnt funds) or be refused; at commit 327ca26 a Send to the market or compute actor was accepted
// and broke `market balance = escrow sum` / `compute balance = escrow sum`.

#[test]
fn value_sent_to_any_actor_is_accounted_for_or_refused() {
    let (mut a, mut b, m) = twins(|h| h.create_miner(TokenAmount::tokens(10)));
    let other = a.id("other");
    let client = a.id("client");
    for to in [
        lode_chain::actors::SYSTEM,
        lode_chain::actors::REWARD,
        POWER,
        MARKET,
        VERIFREG,
        BURNT_FUNDS,
        COMPUTE,
        m,
        other,
    ] {
        let value = TokenAmount::tokens(1);
        let msg = a.message("client", to.into(), Method::Send, value);
        let before = a.balance(to);
        // The harness checks the invariants after the epoch.
        let r = a.step(Vec::new(), vec![msg.clone()]).pop().unwrap();
        if r.exit_code == ExitCode::Ok {
            let rb = b.step(Vec::new(), vec![msg]).pop().unwrap();
            assert_eq!(r, rb);
            assert_eq!(a.chain.head(), b.chain.head());
            let fee = if to == BURNT_FUNDS { r.fee.0 } else { 0 };
            assert_eq!(a.balance(to).0, before.0 + value.0 + fee, "to {to}");
        } else {
            assert!(r.exit_code.value() >= 16, "{:?}: {}", r.exit_code, r.error);
            b.step(Vec::new(), Vec::new());
            assert_only_fee_charged(&a, &b, client, r.fee);
            b = fork(&a, true);
        }
        // Accounts, miners and the burnt funds take value.
        if [BURNT_FUNDS, m, other].contains(&to) {
            assert_eq!(r.exit_code, ExitCode::Ok, "to {to}: {}", r.error);
        }
    }
    // Zero value anywhere is harmless.
    for to in [MARKET, COMPUTE, POWER] {
        let msg = a.message("client", to.into(), Method::Send, TokenAmount::ZERO);
        let r = a.step(Vec::new(), vec![msg]).pop().unwrap();
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Random operation sequences.

/// A backend that loads a snapshot and keeps nothing (forks a chain in memory).
struct Snapshot(Vec<(Vec<u8>, Vec<u8>)>, Head);

impl Backend for Snapshot {
    fn load(&self) -> Result<Loaded, StoreError> {
        Ok((self.0.clone(), Some(self.1)))
    }

    fn commit(&mut self, _: &CommitBatch<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    fn undo(&self, _: Epoch) -> Result<Option<Undo>, StoreError> {
        Ok(None)
    }

    fn meta(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
}

/// A copy of `h`'s chain in memory (checking the invariants after every epoch or not).
fn fork(h: &Harness, check_every_epoch: bool) -> Harness {
    let snap = Snapshot(Overlay::new(h.chain.store()).scan_raw(b""), h.chain.head());
    let store = StateStore::open(Box::new(snap)).unwrap();
    let chain = Chain::open(store, h.policy.clone(), Box::new(FakeVerifier)).unwrap();
    Harness {
        chain,
        policy: h.policy.clone(),
        check_every_epoch,
        real: None,
        journal: None,
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Null rounds.
    Advance(u64),
    /// Market AddBalance for the client (`false`) or the miner (`true`).
    AddBalance { miner: bool, atto: u128 },
    /// Publishes a (maybe invalid) deal.
    PublishDeal {
        piece: u8,
        size_log2: u32,
        start_in: u64,
        extra: u64,
        price: u128,
        collateral: u128,
        client_collateral: u128,
        verified: bool,
        bad_signature: bool,
    },
    /// Pre-commits sector `n` (expiration choice `exp`, maybe with a published deal).
    PreCommit { n: u64, exp: u8, deal: Option<u8> },
    /// Proves an existing pre-commit (waiting for its seed or not; right or wrong proof).
    ProveCommit { pick: u8, wait: bool, good: bool },
    /// A Window PoSt for the deadline of a live sector.
    Post {
        pick: u8,
        skip: u16,
        good: bool,
        wrong_deadline: bool,
        wait: bool,
    },
    /// Declares faults (or recoveries) for some live sectors.
    Declare {
        mask: u16,
        recover: bool,
        bogus: bool,
    },
    /// Terminates some live sectors.
    Terminate { mask: u16 },
    /// Extends some live sectors' expiration.
    Extend { mask: u16, epochs: u64 },
    /// Withdraws from the miner (0), the miner's escrow (1) or the client's escrow (2).
    Withdraw { from: u8, amount: u128 },
    /// Sends tokens between accounts (or to the miner).
    Transfer { from: u8, to: u8, atto: u128 },
    /// Settles some published deals (`settle`) or repays the miner's fee debt.
    Misc { settle: bool, pick: u8 },
    /// The valid path: escrow, a deal, a sector holding it, its proof.
    DealSector { n: u64, start_in: u64, extra: u64 },
    /// Epochs with the miner's blocks when it wins (each first offered as an invalid block of
    /// kind `bad`, which must be refused as a whole, when `bad` is not 0).
    Mine { epochs: u64, bad: u8 },
    /// Two different blocks signed by the worker at one epoch, reported by "other" (`twice`:
    /// the same block twice, which is no fault).
    ConsensusFault { twice: bool },
    /// DataCap: the root makes "verifier" a verifier with `allowance` (step 0), "verifier" grants
    /// it to the client (1), "other" tries either without the right (2), or expired allocations
    /// are removed (3).
    DataCap { step: u8, allowance: u128 },
    /// One message of a compute job's life, on the job `pick` selects (or on one that does not
    /// exist): submitted over a published deal's piece with its deadline `deadline_in` epochs on
    /// (step 0), accepted by the miner with that deal (1), its result committed (2) or revealed
    /// (3) — the right one when `honest` — settled (4), or cancelled by the client (5).
    Job {
        step: u8,
        pick: u8,
        deadline_in: u64,
        honest: bool,
    },
    /// A compute job's whole valid path over the deal `pick` selects: submitted, accepted,
    /// committed, revealed once its deadline passed, and settled.
    JobFlow { pick: u8, deadline_in: u64 },
    /// `op` done by the miner `who` picks among the world's miners (its sectors, its deals, its
    /// blocks) rather than the first one.
    As { who: u8, op: Box<Op> },
}

fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![
        3 => 0..=10u128.pow(19),
        2 => 0..=10u128.pow(21),
        1 => Just(u128::MAX),
        1 => any::<u128>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..=300u64).prop_map(Op::Advance),
        3 => (any::<bool>(), amount()).prop_map(|(miner, atto)| Op::AddBalance { miner, atto }),
        4 => (
            (any::<u8>(), prop_oneof![6 => 7..=11u32, 1 => Just(6u32), 1 => Just(12u32)]),
            (0..=3000u64, 0..=2000u64),
            prop_oneof![4 => 0..=10u128.pow(12), 1 => any::<u128>()],
            prop_oneof![
                4 => 10u128.pow(6)..=10u128.pow(17),
                1 => Just(0u128),
                1 => any::<u128>()
            ],
            prop_oneof![Just(0u128), 0..=10u128.pow(17)],
            (prop::bool::weighted(0.1), prop::bool::weighted(0.1)),
        )
            .prop_map(
                |((piece, size_log2), (start_in, extra), price, collateral, client_collateral,
                  (verified, bad_signature))| Op::PublishDeal {
                    piece,
                    size_log2,
                    start_in,
                    extra,
                    price,
                    collateral,
                    client_collateral,
                    verified,
                    bad_signature,
                }
            ),
        1 => (any::<bool>(), any::<u8>()).prop_map(|(settle, pick)| Op::Misc { settle, pick }),
        2 => (0..12u64, 20..=200u64, 0..=1000u64)
            .prop_map(|(n, start_in, extra)| Op::DealSector { n, start_in, extra }),
        2 => (1..=30u64, prop_oneof![3 => Just(0u8), 1 => 1..=4u8])
            .prop_map(|(epochs, bad)| Op::Mine { epochs, bad }),
        1 => prop::bool::weighted(0.2).prop_map(|twice| Op::ConsensusFault { twice }),
        4 => (0..12u64, 0..8u8, prop::option::weighted(0.5, any::<u8>()))
            .prop_map(|(n, exp, deal)| Op::PreCommit { n, exp, deal }),
        4 => (any::<u8>(), prop::bool::weighted(0.8), prop::bool::weighted(0.85))
            .prop_map(|(pick, wait, good)| Op::ProveCommit { pick, wait, good }),
        4 => (
            any::<u8>(),
            prop_oneof![3 => Just(0u16), 1 => any::<u16>()],
            prop::bool::weighted(0.85),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.9),
        )
            .prop_map(|(pick, skip, good, wrong_deadline, wait)| Op::Post {
                pick,
                skip,
                good,
                wrong_deadline,
                wait,
            }),
        2 => (any::<u16>(), any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(mask, recover, bogus)| Op::Declare { mask, recover, bogus }),
        1 => any::<u16>().prop_map(|mask| Op::Terminate { mask }),
        1 => (any::<u16>(), prop_oneof![0..=100u64, 0..=2000u64, 0..=400_000u64])
            .prop_map(|(mask, epochs)| Op::Extend { mask, epochs }),
        2 => (0..3u8, amount()).prop_map(|(from, amount)| Op::Withdraw { from, amount }),
        2 => (0..6u8, 0..7u8, amount()).prop_map(|(from, to, atto)| Op::Transfer { from, to, atto }),
        1 => (0..4u8, prop_oneof![4 => 256..=1u128 << 24, 1 => 0..256u128, 1 => any::<u128>()])
            .prop_map(|(step, allowance)| Op::DataCap { step, allowance }),
        2 => (0..6u8, any::<u8>(), prop_oneof![3 => 5..=200u64, 1 => 0..=5000u64], prop::bool::weighted(0.8))
            .prop_map(|(step, pick, deadline_in, honest)| Op::Job { step, pick, deadline_in, honest }),
    ]
}

/// [`op`]'s mix, a quarter of it done by a miner other than the first (when the world has
/// several).
fn acting_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => op(),
        1 => (any::<u8>(), op()).prop_map(|(who, op)| Op::As { who, op: Box::new(op) }),
    ]
}

/// A compute job's result: the right one, or another.
fn job_result(job: JobId, right: bool) -> [u8; 32] {
    *blake3::hash(format!("job {job} {right}").as_bytes()).as_bytes()
}

/// Miner `m`'s commitment of `result` to `job` (salted with [`job_salt`]).
fn job_commit(job: JobId, m: ActorId, result: [u8; 32]) -> ComputeMethod {
    ComputeMethod::CommitResult {
        job,
        provider: m.into(),
        commitment: compute::commitment(&result, m, &job_salt(m)),
    }
}

/// Miner `m`'s reveal of `result` for `job`.
fn job_reveal(job: JobId, m: ActorId, result: [u8; 32]) -> ComputeMethod {
    ComputeMethod::RevealResult {
        job,
        provider: m.into(),
        result,
        salt: job_salt(m),
    }
}

/// The salt of the miner's commitments.
fn job_salt(m: ActorId) -> [u8; 32] {
    *blake3::hash(&m.0.to_le_bytes()).as_bytes()
}

/// Devnet with sectors, deals and faults that live days rather than months (so that expirations,
/// deal completions and terminations of long faults happen within a test run).
fn short_lived_devnet() -> lode_chain::Policy {
    let mut p = lode_chain::Policy::devnet();
    let day = p.epochs_in_day();
    p.max_prove_commit_duration = day + p.pre_commit_challenge_delay;
    p.min_sector_expiration = 2 * day;
    p.fault_max_age = 2 * day;
    p.deal_min_duration = 2 * day;
    p
}

/// A harness like [`Harness::new`] under another policy, each account starting with `balance`.
fn harness_with(policy: lode_chain::Policy, balance: TokenAmount) -> Harness {
    let genesis = lode_chain::Genesis {
        accounts: ACCOUNTS
            .iter()
            .map(|n| (key(n).public_key(), balance))
            .collect(),
        verifreg_root: key("root").public_key(),
        verifiers: Vec::new(),
        verified_clients: Vec::new(),
        beacon: beacon(0),
        miners: Vec::new(),
    };
    let chain = Chain::genesis(
        StateStore::memory(),
        policy.clone(),
        &genesis,
        Box::new(FakeVerifier),
    )
    .unwrap();
    let h = Harness {
        chain,
        policy,
        check_every_epoch: true,
        real: None,
        journal: None,
    };
    h.assert_invariants();
    h
}

/// The scenario the property drives: miners (owned by "owner", worked by "worker"), their
/// client, and what was published.
struct World {
    h: Harness,
    /// The miner acting now: the first one, or the one an [`Op::As`] picked.
    m: ActorId,
    /// Every miner, the first one first.
    miners: Vec<ActorId>,
    /// Published deals: id, piece, size, end epoch.
    deals: Vec<(DealId, [u8; 32], u64, Epoch)>,
    /// Submitted compute jobs: id, the deal its input was taken from, its terms.
    jobs: Vec<(JobId, DealId, JobTerms)>,
    /// Failed messages checked against a twin.
    checked: usize,
    /// Outcomes by operation.
    stats: BTreeMap<String, usize>,
    current: &'static str,
}

impl World {
    /// `miners` miners created by "owner" with `funds` each, on a chain whose accounts start
    /// with `balance` each (see [`World::genesis`]).
    fn new(short_lived: bool, balance: TokenAmount, funds: TokenAmount, miners: usize) -> Self {
        let mut h = Self::genesis(short_lived, balance);
        // Every input is kept, so that a run can be replayed from genesis.
        h.journal = Some(Vec::new());
        let miners: Vec<ActorId> = (0..miners.max(1)).map(|_| h.create_miner(funds)).collect();
        World {
            h,
            m: miners[0],
            miners,
            deals: Vec::new(),
            jobs: Vec::new(),
            checked: 0,
            stats: BTreeMap::new(),
            current: "",
        }
    }

    /// The chain a world starts from (before its miner is created): the devnet genesis, or the
    /// short-lived policy, with accounts of `balance`.
    fn genesis(short_lived: bool, balance: TokenAmount) -> Harness {
        match (short_lived, balance == START_BALANCE) {
            (false, true) => Harness::new(),
            (false, false) => harness_with(lode_chain::Policy::devnet(), balance),
            (true, _) => harness_with(short_lived_devnet(), balance),
        }
    }

    /// Replays the world's inputs from genesis on a fresh chain: the head (epoch and state root)
    /// must be the world's after every input.
    fn assert_replays(&self, short_lived: bool, balance: TokenAmount) {
        let journal = self.h.journal.as_deref().unwrap_or_default();
        let mut again = Self::genesis(short_lived, balance);
        again.check_every_epoch = false;
        again.replay(journal);
        assert_eq!(again.chain.head(), self.h.chain.head());
    }

    fn sectors(&self) -> Vec<SectorOnChain> {
        self.sectors_of(self.m)
    }

    /// Miner `m`'s sectors.
    fn sectors_of(&self, m: ActorId) -> Vec<SectorOnChain> {
        self.h
            .chain
            .view(|rt| rt.state.scan::<SectorOnChain>(&keys::sector_prefix(m)))
            .unwrap()
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }

    fn precommits(&self) -> Vec<PreCommit> {
        self.h
            .chain
            .view(|rt| rt.state.scan::<PreCommit>(&keys::precommit_prefix(self.m)))
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// Live sectors picked by `mask` (bit i picks the i-th, cyclically), grouped by location.
    fn locations(&self, mask: u16) -> Vec<SectorLocation> {
        let mut by: BTreeMap<(u64, u64), BTreeSet<u64>> = BTreeMap::new();
        for (i, s) in self.sectors().iter().enumerate() {
            if mask & (1 << (i % 16)) != 0 {
                by.entry((s.deadline, s.partition))
                    .or_default()
                    .insert(s.sector_number);
            }
        }
        by.into_iter()
            .map(|((deadline, partition), sectors)| SectorLocation {
                deadline,
                partition,
                sectors,
            })
            .collect()
    }

    /// Applies one message in the next epoch, and checks it against a twin that applies an empty
    /// epoch: a rejection leaves the same root; a failure differs only by the sender's fee and
    /// nonce (unless the miner's cron runs in that epoch: its fees read the circulating supply,
    /// which the burnt gas fee changes).
    fn apply(&mut self, msg: SignedMessage) -> Receipt {
        let epoch = self.h.epoch() + 1;
        let sender = sender_of(&self.h, &msg);
        let cron = self
            .h
            .chain
            .store()
            .get_raw(&keys::cron(epoch, self.m))
            .is_some();
        let mut twin = fork(&self.h, false);
        let mut receipts = self.h.step(Vec::new(), vec![msg]);
        assert_eq!(receipts.len(), 1);
        let r = receipts.pop().unwrap();
        *self
            .stats
            .entry(format!("{} {:?}", self.current, r.exit_code))
            .or_default() += 1;
        if r.exit_code == ExitCode::Ok {
            return r;
        }
        twin.step(Vec::new(), Vec::new());
        if r.exit_code.value() < 16 && r.exit_code != ExitCode::SysOutOfGas {
            assert_eq!(r.fee, TokenAmount::ZERO);
            assert_eq!(
                self.h.chain.head().root,
                twin.chain.head().root,
                "rejected message changed the state: {r:?}"
            );
        } else if !cron {
            assert_only_fee_charged(&self.h, &twin, sender, r.fee);
        }
        self.checked += 1;
        r
    }

    fn send(
        &mut self,
        from: &str,
        to: impl Into<Address>,
        method: Method,
        value: TokenAmount,
    ) -> Receipt {
        let msg = self.h.message(from, to.into(), method, value);
        self.apply(msg)
    }

    /// One epoch: the miner's block if it wins (after an invalid variant of kind `bad`, refused
    /// as a whole with nothing committed), else a null round.
    fn mine(&mut self, bad: u8) {
        let Some(block) = self.h.try_block(self.m, fake_winning_proof) else {
            self.h.step(Vec::new(), Vec::new());
            return;
        };
        let head = self.h.chain.head();
        if bad != 0 {
            let mut b = block.clone();
            match bad {
                1 => b.winning_post = flip(b.winning_post),
                2 => b.parent_state_root = [1; 32],
                3 => b.win_count += 1,
                _ => {}
            }
            b.signature = key("worker").sign(&b.signing_bytes(&self.h.policy.network));
            let blocks = if bad == 4 {
                vec![b.clone(), b]
            } else {
                vec![b]
            };
            let refused = self.h.try_step(blocks, Vec::new());
            assert!(
                refused.is_err(),
                "an invalid block (kind {bad}) was accepted"
            );
            assert_eq!(
                self.h.chain.head(),
                head,
                "a refused epoch changed the state"
            );
        }
        let unminted = self.h.balance(lode_chain::actors::REWARD);
        match self.h.try_step(vec![block], Vec::new()) {
            Ok(_) => {
                *self.stats.entry("mine won".into()).or_default() += 1;
                // (The miner's own balance may still fall: its cron may burn in the same epoch.)
                assert!(
                    self.h.balance(lode_chain::actors::REWARD) < unminted,
                    "a won block is paid from the reward actor"
                );
            }
            Err(e) => {
                // Only an ineligible miner's block is refused.
                let e = e.to_string();
                assert!(e.contains("not eligible"), "{e}");
                assert_eq!(self.h.chain.head(), head);
                *self.stats.entry("mine ineligible".into()).or_default() += 1;
                self.h.step(Vec::new(), Vec::new());
            }
        }
    }

    /// Whether deal `id` is on chain and active (in a proven sector).
    fn deal_active(&self, id: DealId) -> bool {
        self.h
            .chain
            .store()
            .get_raw(&keys::deal(id))
            .and_then(lode_chain::codec::decode::<lode_chain::actors::market::Deal>)
            .is_some_and(|d| d.state.activation_epoch.is_some())
    }

    /// The client submits a one-replica job over `deal`'s piece, due `deadline_in` epochs on;
    /// the job and its terms when the chain took it.
    fn submit_job(
        &mut self,
        deal: &(DealId, [u8; 32], u64, Epoch),
        pick: u8,
        deadline_in: u64,
    ) -> Option<(JobId, JobTerms)> {
        let (id, piece_cid, size, _) = *deal;
        let terms = JobTerms {
            module: *blake3::hash(b"module").as_bytes(),
            entrypoint: "_start".into(),
            args: vec![format!("--pick={pick}")],
            env: Vec::new(),
            inputs: vec![JobInput {
                piece_cid,
                piece_size: size,
                payload_size: (size / 2).max(1),
                mount: "input".into(),
            }],
            limits: JobLimits {
                fuel: 1 << 30,
                memory_pages: 1024,
                timeout_ms: 60_000,
                output_bytes: 1 << 20,
                output_entries: 100,
            },
            payment: TokenAmount(10u128.pow(15) + u128::from(pick)),
            provider_collateral: TokenAmount(2 * 10u128.pow(15)),
            providers: Vec::new(),
            verification: Verification::Replicated { k: 1 },
            deadline: self.h.epoch() + 1 + deadline_in,
        };
        let value = terms.escrow().unwrap_or(TokenAmount::ZERO);
        let r = self.send(
            "client",
            COMPUTE,
            Method::Compute(ComputeMethod::SubmitJob(terms.clone())),
            value,
        );
        if r.exit_code != ExitCode::Ok {
            return None;
        }
        let job: JobId = decode(&r.return_data);
        self.jobs.push((job, id, terms.clone()));
        Some((job, terms))
    }

    fn miner(&mut self, from: &str, method: MinerMethod) -> Receipt {
        let m = self.m;
        self.send(from, m, Method::Miner(method), TokenAmount::ZERO)
    }

    fn run(&mut self, op: &Op) {
        if let Op::As { who, op } = op {
            let first = self.m;
            self.m = self.miners[usize::from(*who) % self.miners.len()];
            self.run(op);
            self.m = first;
            return;
        }
        let m = self.m;
        let p = self.h.policy.clone();
        self.current = match op {
            Op::Advance(_) => "advance",
            Op::AddBalance { .. } => "add-balance",
            Op::PublishDeal { .. } => "publish",
            Op::PreCommit { .. } => "pre-commit",
            Op::ProveCommit { .. } => "prove-commit",
            Op::Post { .. } => "post",
            Op::Declare { .. } => "declare",
            Op::Terminate { .. } => "terminate",
            Op::Extend { .. } => "extend",
            Op::Withdraw { .. } => "withdraw",
            Op::Transfer { .. } => "transfer",
            Op::Misc { settle: true, .. } => "settle",
            Op::Misc { settle: false, .. } => "repay",
            Op::DealSector { .. } => "deal-sector",
            Op::Mine { .. } => "mine",
            Op::ConsensusFault { .. } => "consensus-fault",
            Op::DataCap { .. } => "datacap",
            Op::Job { .. } => "job",
            Op::JobFlow { .. } => "job-flow",
            // Done above, by the miner it picks.
            Op::As { .. } => return,
        };
        match *op {
            Op::Advance(n) => {
                let to = self.h.epoch() + n;
                self.h.advance_to(to);
            }
            Op::AddBalance { miner, atto } => {
                let (from, owner) = if miner {
                    ("owner", m)
                } else {
                    ("client", self.h.id("client"))
                };
                let bal = self.h.balance(self.h.id(from)).0;
                // Keep it mostly affordable; sometimes more than the balance (a rejection).
                let value = if atto == u128::MAX {
                    atto
                } else {
                    atto % (bal / 2 + 1)
                };
                self.send(
                    from,
                    MARKET,
                    Method::Market(MarketMethod::AddBalance {
                        owner: owner.into(),
                    }),
                    TokenAmount(value),
                );
            }
            Op::PublishDeal {
                piece,
                size_log2,
                start_in,
                extra,
                price,
                collateral,
                client_collateral,
                verified,
                bad_signature,
            } => {
                let now = self.h.epoch() + 1;
                let size = 1u64 << size_log2;
                let start = now + start_in;
                let end = start + p.deal_min_duration + extra;
                let label = format!("piece {piece}");
                let mut d = deal(
                    &self.h,
                    m,
                    &label,
                    size,
                    start,
                    end,
                    TokenAmount(price),
                    TokenAmount(collateral),
                    TokenAmount(client_collateral),
                );
                if verified {
                    d.proposal.verified = true;
                    d.client_signature = key("client").sign(&d.proposal.signing_bytes(&p.network));
                }
                if bad_signature {
                    d.proposal.label.push('!');
                }
                let piece_cid = d.proposal.piece_cid;
                let msg = publish_msg(&self.h, vec![d]);
                let r = self.apply(msg);
                if r.exit_code == ExitCode::Ok {
                    for id in decode::<Vec<DealId>>(&r.return_data) {
                        self.deals.push((id, piece_cid, size, end));
                    }
                }
            }
            Op::PreCommit { n, exp, deal } => {
                let now = self.h.epoch() + 1;
                let cc = self.h.cc_expiration();
                let min = now + p.max_prove_commit_duration + p.min_sector_expiration;
                let day = p.epochs_in_day();
                let mut expiration = match exp {
                    0 => cc,
                    1 => min,
                    2 => min + day,
                    3 => min + 100 * day,
                    4 => cc + 1000 * day,
                    5 => min - 1,
                    _ => now + p.max_sector_expiration_extension + 1,
                };
                let (deals, pieces) = match deal.filter(|_| !self.deals.is_empty()) {
                    Some(i) => {
                        let (id, piece, size, end) = self.deals[i as usize % self.deals.len()];
                        expiration = expiration.max(end);
                        (vec![id], vec![(piece, size)])
                    }
                    None => (Vec::new(), Vec::new()),
                };
                let info = precommit_info(&self.h, n, deals, &pieces, expiration);
                let msg = precommit_msg(&self.h, "worker", m, info);
                self.apply(msg);
            }
            Op::ProveCommit { pick, wait, good } => {
                let pcs = self.precommits();
                let n = if pcs.is_empty() {
                    u64::from(pick)
                } else {
                    pcs[pick as usize % pcs.len()].info.sector_number
                };
                let proofs = if pcs.is_empty() {
                    vec![vec![0; 32]]
                } else {
                    if wait {
                        let ready = self.h.seed_ready(m, n);
                        self.h.advance_to(ready - 1);
                    }
                    let proofs = fake_seal_proof(&self.h.seal_public(m, n));
                    if good {
                        proofs
                    } else {
                        proofs.into_iter().map(flip).collect()
                    }
                };
                self.miner(
                    "worker",
                    MinerMethod::ProveCommitSector {
                        sector_number: n,
                        proofs,
                    },
                );
            }
            Op::Post {
                pick,
                skip,
                good,
                wrong_deadline,
                wait,
            } => {
                let sectors = self.sectors();
                if sectors.is_empty() {
                    return;
                }
                let s = &sectors[pick as usize % sectors.len()];
                let (dl, part) = (s.deadline, s.partition);
                if wait {
                    let info = self.h.deadline(m, dl);
                    self.h.advance_to(info.open - 1);
                }
                let deadline: lode_chain::actors::miner::Deadline =
                    self.h.get(&keys::deadline(m, dl)).unwrap();
                let skipped: BTreeSet<u64> = deadline.partitions[part as usize]
                    .sectors
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| skip & (1 << (i % 16)) != 0)
                    .map(|(_, &n)| n)
                    .collect();
                let statement = self.h.window_statement(m, dl, part, &skipped);
                let proof = fake_window_proof(&statement);
                let proof = if good { proof } else { flip(proof) };
                let deadline = if wrong_deadline {
                    (dl + 1) % p.wpost_period_deadlines
                } else {
                    dl
                };
                self.miner(
                    "worker",
                    MinerMethod::SubmitWindowPost(WindowPostParams {
                        deadline,
                        partitions: vec![PostPartition {
                            index: part,
                            skipped,
                        }],
                        proofs: vec![proof],
                    }),
                );
            }
            Op::Declare {
                mask,
                recover,
                bogus,
            } => {
                let mut locs = self.locations(mask);
                if bogus || locs.is_empty() {
                    locs.push(SectorLocation {
                        deadline: u64::from(mask % 50),
                        partition: u64::from(mask % 2),
                        sectors: [u64::from(mask % 13)].into(),
                    });
                }
                let method = if recover {
                    MinerMethod::DeclareRecoveries(locs)
                } else {
                    MinerMethod::DeclareFaults(locs)
                };
                self.miner("worker", method);
            }
            Op::Terminate { mask } => {
                let locs = self.locations(mask);
                self.miner("owner", MinerMethod::TerminateSectors(locs));
            }
            Op::Extend { mask, epochs } => {
                let locs = self.locations(mask);
                let latest = self
                    .sectors()
                    .iter()
                    .map(|s| s.expiration)
                    .max()
                    .unwrap_or(self.h.epoch());
                self.miner(
                    "worker",
                    MinerMethod::ExtendSectorExpiration {
                        sectors: locs,
                        new_expiration: latest + epochs,
                    },
                );
            }
            Op::Withdraw { from, amount } => {
                let amount = TokenAmount(amount);
                match from {
                    0 => {
                        self.miner("owner", MinerMethod::WithdrawBalance { amount });
                    }
                    1 => {
                        self.send(
                            "worker",
                            MARKET,
                            Method::Market(MarketMethod::WithdrawBalance {
                                owner: m.into(),
                                amount,
                            }),
                            TokenAmount::ZERO,
                        );
                    }
                    _ => {
                        let client = self.h.id("client");
                        self.send(
                            "client",
                            MARKET,
                            Method::Market(MarketMethod::WithdrawBalance {
                                owner: client.into(),
                                amount,
                            }),
                            TokenAmount::ZERO,
                        );
                    }
                }
            }
            Op::Transfer { from, to, atto } => {
                let names = ["owner", "worker", "client", "verifier", "other", "other"];
                let from = names[from as usize];
                // Index 6 funds the miner.
                let to = names.get(to as usize).map_or(m, |n| self.h.id(n));
                self.send(from, to, Method::Send, TokenAmount(atto));
            }
            Op::Mine { epochs, bad } => {
                for _ in 0..epochs {
                    self.mine(bad);
                }
            }
            Op::DataCap { step, allowance } => {
                let (from, method) = match step {
                    0 => (
                        "root",
                        VerifRegMethod::AddVerifier {
                            verifier: self.h.id("verifier").into(),
                            allowance,
                        },
                    ),
                    1 => (
                        "verifier",
                        VerifRegMethod::AddVerifiedClient {
                            client: self.h.id("client").into(),
                            allowance,
                        },
                    ),
                    2 if allowance % 2 == 0 => (
                        "other",
                        VerifRegMethod::AddVerifier {
                            verifier: self.h.id("other").into(),
                            allowance,
                        },
                    ),
                    2 => (
                        "other",
                        VerifRegMethod::AddVerifiedClient {
                            client: self.h.id("other").into(),
                            allowance,
                        },
                    ),
                    _ => (
                        "other",
                        VerifRegMethod::RemoveExpiredAllocations { ids: Vec::new() },
                    ),
                };
                self.send(from, VERIFREG, Method::VerifReg(method), TokenAmount::ZERO);
            }
            Op::Job {
                step,
                pick,
                deadline_in,
                honest,
            } => {
                let known = self
                    .jobs
                    .get(pick as usize % self.jobs.len().max(1))
                    .cloned();
                let (job, deal) = known
                    .as_ref()
                    .map_or((u64::from(pick) + 1000, u64::from(pick)), |(j, d, _)| {
                        (*j, *d)
                    });
                let provider: Address = m.into();
                let right = job_result(job, true);
                let result = job_result(job, honest);
                match step {
                    0 => {
                        if self.deals.is_empty() {
                            return self.h.advance_to(self.h.epoch() + 1);
                        }
                        let deal = self.deals[pick as usize % self.deals.len()];
                        self.submit_job(&deal, pick, deadline_in);
                    }
                    1 => {
                        let collateral = known
                            .as_ref()
                            .map_or(TokenAmount::ZERO, |(_, _, t)| t.provider_collateral);
                        let method = ComputeMethod::AcceptJob {
                            job,
                            provider,
                            deals: vec![deal],
                        };
                        self.send("worker", COMPUTE, Method::Compute(method), collateral);
                    }
                    2 => {
                        let method = job_commit(job, m, result);
                        self.send(
                            "worker",
                            COMPUTE,
                            Method::Compute(method),
                            TokenAmount::ZERO,
                        );
                    }
                    3 => {
                        let method = job_reveal(job, m, if honest { right } else { result });
                        self.send(
                            "worker",
                            COMPUTE,
                            Method::Compute(method),
                            TokenAmount::ZERO,
                        );
                    }
                    4 => {
                        let method = ComputeMethod::SettleJob { job };
                        self.send("other", COMPUTE, Method::Compute(method), TokenAmount::ZERO);
                    }
                    _ => {
                        let method = ComputeMethod::CancelJob { job };
                        self.send(
                            "client",
                            COMPUTE,
                            Method::Compute(method),
                            TokenAmount::ZERO,
                        );
                    }
                }
            }
            Op::As { .. } => {}
            Op::JobFlow { pick, deadline_in } => {
                // An active deal when there is one (the valid path), else any (a refusal).
                let active: Vec<_> = self
                    .deals
                    .iter()
                    .filter(|d| self.deal_active(d.0))
                    .copied()
                    .collect();
                let from = if active.is_empty() {
                    &self.deals
                } else {
                    &active
                };
                let Some(&deal) = from.get(pick as usize % from.len().max(1)) else {
                    return self.h.advance_to(self.h.epoch() + 1);
                };
                let Some((job, terms)) = self.submit_job(&deal, pick, deadline_in) else {
                    return;
                };
                let provider: Address = m.into();
                let accept = ComputeMethod::AcceptJob {
                    job,
                    provider,
                    deals: vec![deal.0],
                };
                let r = self.send(
                    "worker",
                    COMPUTE,
                    Method::Compute(accept),
                    terms.provider_collateral,
                );
                if r.exit_code == ExitCode::Ok {
                    let right = job_result(job, true);
                    let commit = job_commit(job, m, right);
                    self.send(
                        "worker",
                        COMPUTE,
                        Method::Compute(commit),
                        TokenAmount::ZERO,
                    );
                    let deadline = terms.deadline.max(self.h.epoch());
                    self.h.advance_to(deadline);
                    let reveal = job_reveal(job, m, right);
                    self.send(
                        "worker",
                        COMPUTE,
                        Method::Compute(reveal),
                        TokenAmount::ZERO,
                    );
                }
                let settle = ComputeMethod::SettleJob { job };
                let r = self.send("other", COMPUTE, Method::Compute(settle), TokenAmount::ZERO);
                if r.exit_code == ExitCode::Ok {
                    *self.stats.entry("job-flow settled".into()).or_default() += 1;
                }
            }
            Op::ConsensusFault { twice } => {
                let Some(first) = self.h.try_block(m, fake_winning_proof) else {
                    self.h.step(Vec::new(), Vec::new());
                    return;
                };
                let mut second = first.clone();
                if !twice {
                    second.messages_root = [7; 32];
                    second.signature = key("worker").sign(&second.signing_bytes(&p.network));
                }
                // The first block may be refused (the miner may be ineligible): report anyway.
                if self.h.try_step(vec![first.clone()], Vec::new()).is_err() {
                    self.h.step(Vec::new(), Vec::new());
                }
                self.miner(
                    "other",
                    MinerMethod::ReportConsensusFault {
                        first: Box::new(first),
                        second: Box::new(second),
                    },
                );
            }
            Op::DealSector { n, start_in, extra } => {
                let client = self.h.id("client");
                for (from, owner) in [("client", client), ("owner", m)] {
                    self.send(
                        from,
                        MARKET,
                        Method::Market(MarketMethod::AddBalance {
                            owner: owner.into(),
                        }),
                        TokenAmount::tokens(1),
                    );
                }
                let now = self.h.epoch() + 1;
                let start = now + start_in;
                let end = start + p.deal_min_duration + extra;
                let label = format!("deal sector {n} at {now}");
                let d = deal(
                    &self.h,
                    m,
                    &label,
                    1024,
                    start,
                    end,
                    TokenAmount(1_000_000_000),
                    TokenAmount(10u128.pow(16)),
                    TokenAmount(10u128.pow(15)),
                );
                let piece = d.proposal.piece_cid;
                let r = self.apply(publish_msg(&self.h, vec![d]));
                if r.exit_code != ExitCode::Ok {
                    return;
                }
                let id = decode::<Vec<DealId>>(&r.return_data)[0];
                self.deals.push((id, piece, 1024, end));
                let expiration = self.h.cc_expiration().max(end);
                let info = precommit_info(&self.h, n, vec![id], &[(piece, 1024)], expiration);
                let r = self.apply(precommit_msg(&self.h, "worker", m, info));
                if r.exit_code != ExitCode::Ok {
                    return;
                }
                let ready = self.h.seed_ready(m, n);
                self.h.advance_to(ready - 1);
                let proofs = fake_seal_proof(&self.h.seal_public(m, n));
                self.miner(
                    "worker",
                    MinerMethod::ProveCommitSector {
                        sector_number: n,
                        proofs,
                    },
                );
            }
            Op::Misc { settle, pick } => {
                if settle {
                    let ids: Vec<DealId> = if self.deals.is_empty() {
                        vec![u64::from(pick)]
                    } else {
                        let n = self.deals.len();
                        (0..=pick as usize % n)
                            .map(|i| self.deals[(i * 7 + pick as usize) % n].0)
                            .collect()
                    };
                    let who = ["client", "worker", "other"][pick as usize % 3];
                    self.send(
                        who,
                        MARKET,
                        Method::Market(MarketMethod::SettleDeals(ids)),
                        TokenAmount::ZERO,
                    );
                } else {
                    self.miner("owner", MinerMethod::RepayDebt);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // No regression files next to the sources: a failure prints its minimal input.
        failure_persistence: None,
        ..ProptestConfig::with_cases(12)
    })]

    #[test]
    fn random_operation_sequences_keep_the_invariants(
        short_lived in any::<bool>(),
        ops in prop::collection::vec(acting_op(), 40..80),
    ) {
        let mut w = World::new(short_lived, START_BALANCE, TokenAmount::tokens(200), 2);
        for op in &ops {
            w.run(op);
        }
        // The harness checked the invariants after every epoch; check once more at the end.
        w.h.assert_invariants();
        // Coverage, for `--nocapture`.
        eprintln!(
            "epoch {}, {} sectors, {} deals, {} failures checked against a twin: {:?}",
            w.h.epoch(),
            w.sectors().len(),
            w.deals.len(),
            w.checked,
            w.stats
        );
    }
}

/// The long run's operations: [`acting_op`]'s mix, with more of the valid paths — deal sectors
/// and Window PoSts on time — and blocks, so that sectors live through the run, and sector numbers
/// from a wider range; the valid paths are walked by every miner.
fn long_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => acting_op(),
        10 => long_valid_op(),
        // The other miners' lives: their own sectors, proofs, deals, jobs and blocks.
        6 => (any::<u8>(), long_valid_op()).prop_map(|(who, op)| Op::As { who, op: Box::new(op) }),
    ]
}

/// The valid paths the long run walks often.
fn long_valid_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..400u64, 20..=200u64, 0..=1000u64)
            .prop_map(|(n, start_in, extra)| Op::DealSector { n, start_in, extra }),
        1 => (0..400u64, 0..8u8).prop_map(|(n, exp)| Op::PreCommit { n, exp, deal: None }),
        1 => any::<u8>().prop_map(|pick| Op::ProveCommit { pick, wait: true, good: true }),
        3 => any::<u8>().prop_map(|pick| Op::Post {
            pick,
            skip: 0,
            good: true,
            wrong_deadline: false,
            wait: true,
        }),
        1 => (1..=30u64).prop_map(|epochs| Op::Mine { epochs, bad: 0 }),
        1 => (0..2u8, 1u128 << 16..=1u128 << 30)
            .prop_map(|(step, allowance)| Op::DataCap { step, allowance }),
        1 => (any::<u8>(), 5..=100u64).prop_map(|(pick, deadline_in)| Op::JobFlow { pick, deadline_in }),
    ]
}

/// Epochs the long run covers at least: about 42 proving periods of the devnet policy, and the
/// short-lived policy's sectors live, expire and are cleaned up many times over.
const LONG_RUN_EPOCHS: u64 = 10_000;

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(1)
    })]

    /// The long run: one random sequence of operations — sectors pre-committed and proven (or
    /// not), Window PoSts good, bad, late or skipped, faults and recoveries declared, deals
    /// published (verified or not, valid or not) and settled, DataCap granted and refused,
    /// compute jobs submitted, accepted, committed, revealed, settled or cancelled (their whole
    /// valid path, and each step on its own), sectors extended and terminated,
    /// blocks mined and invalid ones refused, consensus faults reported, funds moved — through
    /// more than 10,000 epochs, topped up with mining and null rounds where the sequence ends
    /// early. The invariants are checked after every epoch (by the harness), every failed message
    /// against a twin chain, and at the end the whole run is replayed from genesis on a fresh
    /// chain, which must reach the same head, epoch and state root, after every input. One case
    /// (`PROPTEST_CASES` asks for more); a failure shrinks to a minimal sequence.
    #[test]
    fn a_long_random_run_keeps_the_invariants_and_replays_to_the_same_state(
        short_lived in any::<bool>(),
        ops in prop::collection::vec(long_op(), 300..400),
    ) {
        let started = std::time::Instant::now();
        // Accounts and a miner rich enough that fees, deposits, pledges and penalties do not
        // starve them within the run: with a network of a few 2 KiB sectors, one sector's
        // expected reward, and so its deposit and its fault fee, is a large share of the whole
        // network's reward (millions of tokens over a run).
        let balance = TokenAmount::tokens(150_000_000);
        // Three miners of 45 M tokens each, all created by "owner".
        let mut w = World::new(short_lived, balance, TokenAmount::tokens(45_000_000), 3);
        let mut most = 0;
        // The most sectors each miner had live at once.
        let mut most_each = vec![0; w.miners.len()];
        for op in &ops {
            w.run(op);
            most = most.max(w.sectors().len());
            for (most, m) in most_each.iter_mut().zip(w.miners.clone()) {
                *most = (*most).max(w.sectors_of(m).len());
            }
        }
        let ran = w.h.epoch();
        while w.h.epoch() < LONG_RUN_EPOCHS {
            w.run(&Op::Mine { epochs: 20, bad: 0 });
            w.run(&Op::Advance(80));
        }
        w.h.assert_invariants();
        let debt = w.h.miner_state(w.m).fee_debt;
        let inputs = w.h.journal.as_ref().map_or(0, Vec::len);
        let took = started.elapsed();
        w.assert_replays(short_lived, balance);
        eprintln!(
            "long run: {} operations to epoch {ran}, {} epochs in all, {inputs} inputs, at most \
             {most} sectors live ({most_each:?} for each miner), {} at the end, fee debt {debt:?}, {} deals, {} failures checked against a twin, {:.1} s; replayed in {:.1} s: \
             {:?}",
            ops.len(),
            w.h.epoch(),
            w.sectors().len(),
            w.deals.len(),
            w.checked,
            took.as_secs_f64(),
            (started.elapsed() - took).as_secs_f64(),
            w.stats
        );
        prop_assert!(w.h.epoch() >= LONG_RUN_EPOCHS);
        // Every miner lived its own life: each had sectors live at some point.
        prop_assert!(most_each.iter().all(|n| *n > 0), "{most_each:?}");
        // The valid paths the run is made to take were taken: DataCap granted, and compute jobs
        // run to their settlement.
        prop_assert!(w.stats.get("datacap Ok").is_some_and(|n| *n > 0), "{:?}", w.stats);
        prop_assert!(w.stats.get("job-flow settled").is_some_and(|n| *n > 0), "{:?}", w.stats);
    }
}
