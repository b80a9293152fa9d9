//! Genesis miners with pre-sealed sectors: their state right after genesis (power, totals,
//! deadlines, cron, invariants), several proving periods of Window PoSts with block wins, a miner
//! that stops proving (faulty, no power, no blocks) and recovers, the genesis refusals, the state
//! root of a genesis without miners, and a real pre-sealed sector proven with real Groth16 proofs.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use lode_testkit::harness::*;

use lode_chain::actors::miner::{
    self, Deadline, DeadlineInfo, MinerInfo, MinerMethod, PostPartition, SectorLocation,
    WindowPostParams,
    state::{current_proving_period_start, proving_period_offset},
};
use lode_chain::actors::power::{self, PowerState};
use lode_chain::actors::{ActorKind, REWARD};
use lode_chain::error::{CommitmentKind, GenesisError};
use lode_chain::genesis::{GenesisMiner, GenesisSector};
use lode_chain::keys;
use lode_chain::message::Method;
use lode_chain::store::StateStore;
use lode_chain::types::{ActorId, Epoch, PowerPair, TokenAmount};
use lode_chain::{Chain, ChainError, ExitCode, Genesis, Policy};
use lode_proofs::sector::SectorSize;

/// Each genesis miner's balance in these tests.
const MINER_BALANCE: TokenAmount = TokenAmount::tokens(50);
/// Power of two 2 KiB committed-capacity sectors.
pub(crate) const TWO_SECTORS: PowerPair = PowerPair {
    raw: 4096,
    qa: 4096,
};

/// A comfortable genesis-sector expiration on the devnet.
fn expiration(policy: &Policy) -> Epoch {
    policy.min_sector_expiration + 10 * policy.epochs_in_day()
}

/// A fake pre-sealed 2 KiB sector: a canonical `comm_r` from `label`, an empty sector's `comm_d`.
fn sector(n: u64, label: &str) -> GenesisSector {
    GenesisSector {
        sector_number: n,
        comm_r: node(label),
        comm_d: comm_d(2048, &[]),
        expiration: expiration(&Policy::devnet()),
    }
}

/// A 2 KiB genesis miner with sectors 1 and 2 (`comm_r` from `tag`), run by the harness's "worker"
/// (whose key signs the harness's blocks and PoSts).
fn genesis_miner(owner: &str, tag: &str) -> GenesisMiner {
    GenesisMiner {
        owner: key(owner).public_key(),
        worker: key("worker").public_key(),
        sector_size: SectorSize::S2KiB,
        balance: MINER_BALANCE,
        peer_id: format!("peer {tag}").into_bytes(),
        multiaddrs: vec![b"/ip4/127.0.0.1/tcp/4001".to_vec()],
        sectors: vec![
            sector(1, &format!("{tag} 1")),
            sector(2, &format!("{tag} 2")),
        ],
    }
}

/// The harness genesis with two miners: "a" owned by "owner", "b" owned by a key that is not a
/// genesis account yet.
pub(crate) fn two_miners() -> Genesis {
    let mut g = devnet_genesis();
    g.miners = vec![genesis_miner("owner", "a"), genesis_miner("b-owner", "b")];
    g
}

pub(crate) fn harness(genesis: &Genesis) -> (Harness, Vec<ActorId>) {
    let h = Harness::from_genesis(StateStore::memory(), genesis, Box::new(FakeVerifier), None);
    (h, genesis.miner_ids())
}

/// The deadline a miner's sectors were assigned (all of them share one in these tests).
pub(crate) fn deadline_of(h: &Harness, m: ActorId) -> u64 {
    let d = h.sector(m, 1).unwrap().deadline;
    assert_eq!(h.sector(m, 2).unwrap().deadline, d);
    d
}

/// What [`run`] saw: Window PoSts submitted and blocks won, per miner.
#[derive(Debug, Default)]
pub(crate) struct Run {
    posts: BTreeMap<ActorId, u32>,
    wins: BTreeMap<ActorId, u32>,
}

impl Run {
    pub(crate) fn posts(&self, m: ActorId) -> u32 {
        self.posts.get(&m).copied().unwrap_or(0)
    }
    fn wins(&self, m: ActorId) -> u32 {
        self.wins.get(&m).copied().unwrap_or(0)
    }
}

/// Runs the chain to `until`: each of `provers` submits its Window PoSt (signed by "worker") at the
/// first epoch of each of its deadline's windows (one message per epoch, so a clash waits an epoch
/// inside the window), each of `miners` adds a block whenever it is elected, and `first`, if any,
/// is sent by "worker" in the first epoch.
pub(crate) fn run(
    h: &mut Harness,
    provers: &[ActorId],
    miners: &[ActorId],
    until: Epoch,
    mut first: Option<(ActorId, MinerMethod)>,
) -> Run {
    let mut seen = Run::default();
    let mut posted: BTreeMap<ActorId, Epoch> = BTreeMap::new();
    while h.epoch() < until {
        let next = h.epoch() + 1;
        let mut messages = Vec::new();
        if let Some((to, method)) = first.take() {
            messages.push(h.message(
                "worker",
                to.into(),
                Method::Miner(method),
                TokenAmount::ZERO,
            ));
        }
        for &m in provers {
            let d = deadline_of(h, m);
            let info = h.deadline(m, d);
            if !messages.is_empty() || !info.is_open(next) || posted.get(&m) == Some(&info.open) {
                continue;
            }
            let none = Default::default();
            let proof = h.window_proof(m, &h.window_statement(m, d, 0, &none));
            let post = MinerMethod::SubmitWindowPost(WindowPostParams {
                deadline: d,
                partitions: vec![PostPartition {
                    index: 0,
                    skipped: none,
                }],
                proofs: vec![proof],
            });
            messages.push(h.message("worker", m.into(), Method::Miner(post), TokenAmount::ZERO));
            posted.insert(m, info.open);
            *seen.posts.entry(m).or_default() += 1;
        }
        let blocks: Vec<_> = miners.iter().filter_map(|&m| h.block(m)).collect();
        for b in &blocks {
            *seen.wins.entry(b.miner).or_default() += 1;
        }
        for r in h.step(blocks, messages) {
            assert_eq!(r.exit_code, ExitCode::Ok, "epoch {next}: {}", r.error);
        }
    }
    seen
}

fn ineligibility(h: &Harness, m: ActorId) -> Option<String> {
    h.chain.view(|rt| miner::ineligibility(rt, m)).unwrap()
}

#[test]
fn genesis_miners_start_with_power_deadlines_and_cron() {
    let g = two_miners();
    let (h, ids) = harness(&g);
    let p = h.policy.clone();
    // Ids as announced: the new owner key got an account just before its miner.
    // The six accounts are 100 to 105; miner "a" (owner and worker known) is 106; "b-owner" is a
    // new account, 107, and its miner 108.
    let b_owner = h.id("b-owner");
    assert_eq!(b_owner, ActorId(107));
    assert_eq!(ids, vec![ActorId(106), ActorId(108)]);
    for (i, &m) in ids.iter().enumerate() {
        let actor = h.chain.view(|rt| rt.actor(m)).unwrap().unwrap();
        assert_eq!(
            (actor.kind, actor.balance),
            (ActorKind::Miner, MINER_BALANCE)
        );
        let info: MinerInfo = h.get(&keys::miner_info(m)).unwrap();
        let owner = if i == 0 { h.id("owner") } else { b_owner };
        assert_eq!((info.owner, info.worker), (owner, h.id("worker")));
        assert_eq!(info.worker_key, key("worker").public_key());
        assert_eq!(info.sector_size, SectorSize::S2KiB);
        assert_eq!(info.peer_id, g.miners[i].peer_id);
        assert_eq!(info.multiaddrs, g.miners[i].multiaddrs);

        // Power at once, for both sectors.
        assert_eq!(h.claim(m).power, TWO_SECTORS);
        assert_eq!(ineligibility(&h, m), None, "{m} may win from epoch 1");

        // The proving period of a miner created at epoch 0.
        let st = h.miner_state(m);
        let offset = proving_period_offset(&p, m, 0);
        assert_eq!(
            st.proving_period_start,
            current_proving_period_start(&p, 0, offset)
        );
        assert_eq!(st.initial_pledge, TokenAmount::ZERO);
        assert_eq!(st.fee_debt, TokenAmount::ZERO);
        assert_eq!(st.allocated_sectors, [1, 2].into());

        // Both sectors in the first partition of the first mutable deadline, as prove-commit
        // would assign them, active (not unproven).
        let first_mutable = (0..p.wpost_period_deadlines)
            .find(|&i| {
                DeadlineInfo::new(&p, st.proving_period_start, i)
                    .next_not_elapsed(&p, 0)
                    .open
                    > p.wpost_challenge_window
            })
            .unwrap();
        for n in [1, 2] {
            let s = h.sector(m, n).unwrap();
            assert_eq!((s.activation, s.power_base_epoch), (0, 0));
            assert_eq!(s.expiration, expiration(&p));
            assert_eq!(s.comm_r, g.miners[i].sectors[n as usize - 1].comm_r);
            assert_eq!(s.initial_pledge, TokenAmount::ZERO);
            assert!(s.deal_ids.is_empty());
            assert_eq!((s.deadline, s.partition), (first_mutable, 0));
        }
        let dl: Deadline = h.get(&keys::deadline(m, first_mutable)).unwrap();
        assert_eq!(dl.partitions.len(), 1);
        let part = &dl.partitions[0];
        assert_eq!(part.sectors, [1, 2].into());
        assert!(part.unproven.is_empty() && part.faults.is_empty());
        let active = h.chain.view(|rt| miner::active_sectors(rt, m)).unwrap();
        assert_eq!(active.len(), 2);

        // The first deadline cron is scheduled.
        let current = DeadlineInfo::new(&p, st.proving_period_start, st.current_deadline);
        assert_eq!(st.cron_epoch, Some(current.last()));
        assert!(
            h.chain
                .view(|rt| rt.state.get_raw(&keys::cron(current.last(), m)))
                .is_some()
        );
    }
    // Network totals: both miners meet the devnet minimum (one 2 KiB sector would).
    let pst: PowerState = h.get(keys::POWER).unwrap();
    assert_eq!(pst.miner_count, 2);
    assert_eq!(pst.miners_above_min, 2);
    assert_eq!(pst.total_committed, TWO_SECTORS.plus(TWO_SECTORS));
    assert_eq!(pst.total_above_min, pst.total_committed);
    assert_eq!(
        h.chain.view(|rt| power::current_total(rt, &pst)),
        pst.total_committed
    );
    assert_eq!(pst.total_locked, TokenAmount::ZERO);
    // The miners' balances came out of the reward pool (the supply invariant holds: checked by
    // the harness right after genesis).
    let accounts = START_BALANCE.0 * ACCOUNTS.len() as u128;
    assert_eq!(
        h.balance(REWARD).0,
        h.policy.total_supply.0 - accounts - 2 * MINER_BALANCE.0
    );
}

#[test]
fn genesis_without_miners_keeps_its_state_root() {
    // The root of the harness genesis before genesis miners existed: a genesis without miners
    // writes exactly what it wrote then. Change this only with a deliberate change of the state.
    let h = Harness::new();
    assert_eq!(
        hex::encode(h.chain.head().root),
        "1a8d47bf8b32c2792638a37a886f267fc48e6c3ec4e85a0d6c576ac28d8901d7"
    );
    let pst: PowerState = h.get(keys::POWER).unwrap();
    assert_eq!(pst.miner_count, 0);
}

#[test]
fn genesis_miners_keep_power_with_window_posts_and_win_blocks() {
    let (mut h, ids) = harness(&two_miners());
    let pp = h.policy.wpost_proving_period();
    // From epoch 1 the genesis power elects both miners.
    let seen = run(&mut h, &ids, &ids, 12, None);
    for &m in &ids {
        assert!(seen.wins(m) > 0, "{m} won no block: {seen:?}");
        assert!(
            h.miner_state(m).locked_funds > TokenAmount::ZERO,
            "rewards vest"
        );
    }
    // Three proving periods of Window PoSts, one per miner and period: the power stays.
    let seen = run(&mut h, &ids, &[], 12 + 3 * pp, None);
    for &m in &ids {
        assert!(seen.posts(m) >= 3, "{m}: {seen:?}");
        assert_eq!(h.claim(m).power, TWO_SECTORS);
        let dl: Deadline = h.get(&keys::deadline(m, deadline_of(&h, m))).unwrap();
        assert!(dl.partitions[0].faults.is_empty());
        assert_eq!(h.miner_state(m).fee_debt, TokenAmount::ZERO);
    }
    // And they still win.
    let seen = run(&mut h, &ids, &ids, 24 + 3 * pp, None);
    for &m in &ids {
        assert!(seen.wins(m) > 0, "{m} won no block: {seen:?}");
    }
}

#[test]
fn a_genesis_miner_that_stops_proving_turns_faulty_and_recovers() {
    let (mut h, ids) = harness(&two_miners());
    let (a, b) = (ids[0], ids[1]);
    let pp = h.policy.wpost_proving_period();
    // One period in which both prove.
    run(&mut h, &ids, &[], pp, None);
    assert_eq!(h.claim(b).power, TWO_SECTORS);

    // B stops proving: at the end of its next window its sectors turn faulty and lose their power;
    // A keeps proving. (A window that opened already was proven by `run`.)
    let d = deadline_of(&h, b);
    let mut missed = h.deadline(b, d);
    if missed.open <= h.epoch() {
        missed = DeadlineInfo::new(&h.policy, missed.period_start + pp, d);
    }
    run(&mut h, &[a], &[], missed.last(), None);
    let dl: Deadline = h.get(&keys::deadline(b, d)).unwrap();
    assert_eq!(dl.partitions[0].faults, [1, 2].into());
    assert_eq!(h.claim(b).power, PowerPair::ZERO);
    assert_eq!(h.claim(a).power, TWO_SECTORS);
    let pst: PowerState = h.get(keys::POWER).unwrap();
    assert_eq!(pst.total_committed, TWO_SECTORS);
    // Without power B is not eligible and never elected; A alone is. B declares the recovery
    // before its next window's cutoff; the power returns with the PoSt, not the declaration.
    assert!(ineligibility(&h, b).is_some());
    let recovery = MinerMethod::DeclareRecoveries(vec![SectorLocation {
        deadline: d,
        partition: 0,
        sectors: [1, 2].into(),
    }]);
    let seen = run(&mut h, &[a], &ids, missed.last() + 8, Some((b, recovery)));
    assert_eq!(seen.wins(b), 0);
    assert!(seen.wins(a) > 0);
    let dl: Deadline = h.get(&keys::deadline(b, d)).unwrap();
    assert_eq!(dl.partitions[0].recoveries, [1, 2].into());
    assert_eq!(h.claim(b).power, PowerPair::ZERO);

    // B proves its next window: power is back, with no fault fee (the fault was detected, then
    // cured before the next deadline end).
    let next = h.deadline(b, d);
    assert_eq!(next.open, missed.open + pp);
    run(&mut h, &ids, &[], next.last(), None);
    assert_eq!(h.claim(b).power, TWO_SECTORS);
    let dl: Deadline = h.get(&keys::deadline(b, d)).unwrap();
    assert!(dl.partitions[0].faults.is_empty() && dl.partitions[0].recoveries.is_empty());
    assert_eq!(h.miner_state(b).fee_debt, TokenAmount::ZERO);
    assert_eq!(ineligibility(&h, b), None);
    let seen = run(&mut h, &ids, &ids, next.last() + 12, None);
    assert!(seen.wins(b) > 0, "{seen:?}");
}

/// The error `Chain::genesis` and `Genesis::validate` give.
fn refusal(g: &Genesis) -> ChainError {
    let policy = Policy::devnet();
    let validated = g.validate(&policy).unwrap_err();
    let built =
        Chain::genesis(StateStore::memory(), policy, g, Box::new(FakeVerifier)).unwrap_err();
    assert_eq!(validated.to_string(), built.to_string());
    built
}

fn invalid(g: &Genesis) -> GenesisError {
    match refusal(g) {
        ChainError::InvalidGenesis(e) => e,
        e => panic!("not an invalid genesis: {e}"),
    }
}

#[test]
fn genesis_verifiers_and_verified_clients_hold_their_datacap_after_the_miners() {
    use lode_chain::actors::VERIFREG;
    use lode_chain::actors::verifreg::{VerifRegMethod, VerifRegState};
    use lode_chain::genesis::{GenesisClient, GenesisVerifier};
    let plain = two_miners();
    let mut g = plain.clone();
    g.verifiers = vec![GenesisVerifier {
        key: key("g-verifier").public_key(),
        balance: TokenAmount::tokens(7),
        allowance: 1 << 30,
    }];
    g.verified_clients = vec![GenesisClient {
        key: key("g-client").public_key(),
        balance: TokenAmount::tokens(9),
        datacap: 1 << 20,
    }];
    // The miners keep their ids: the new accounts come after them.
    assert_eq!(g.miner_ids(), plain.miner_ids());
    let (mut h, ids) = harness(&g);
    assert_eq!(ids, plain.miner_ids());
    h.assert_invariants();
    let v = h.id("g-verifier");
    let c = h.id("g-client");
    assert!(ids.iter().all(|m| v > *m && c > v));
    assert_eq!(h.balance(v), TokenAmount::tokens(7));
    assert_eq!(h.balance(c), TokenAmount::tokens(9));
    assert_eq!(h.get::<u128>(&keys::verifier(v)), Some(1 << 30));
    assert_eq!(h.get::<u128>(&keys::datacap(c)), Some(1 << 20));
    let st: VerifRegState = h.get(keys::VERIFREG).unwrap();
    assert_eq!(st.total_granted, (1 << 30) + (1 << 20));
    // The genesis verifier grants DataCap like any other, paying gas from its genesis balance.
    h.send_ok(
        "g-verifier",
        VERIFREG,
        Method::VerifReg(VerifRegMethod::AddVerifiedClient {
            client: c.into(),
            allowance: 1 << 20,
        }),
        TokenAmount::ZERO,
    );
    assert_eq!(h.get::<u128>(&keys::datacap(c)), Some(2 << 20));
    assert_eq!(
        h.get::<u128>(&keys::verifier(v)),
        Some((1 << 30) - (1 << 20))
    );
    h.assert_invariants();

    // A key twice, or the root's, is refused.
    let mut twice = g.clone();
    twice.verified_clients[0].key = key("g-verifier").public_key();
    assert_eq!(invalid(&twice), GenesisError::DataCapHolder { index: 1 });
    let mut root = g.clone();
    root.verifiers[0].key = g.verifreg_root;
    assert_eq!(invalid(&root), GenesisError::DataCapHolder { index: 0 });
}

#[test]
fn invalid_genesis_miners_are_refused() {
    let policy = Policy::devnet();
    two_miners().validate(&policy).unwrap();

    let mut g = two_miners();
    g.miners[1].sector_size = SectorSize::S32GiB;
    assert_eq!(
        invalid(&g),
        GenesisError::SectorSize {
            miner: 1,
            size: SectorSize::S32GiB
        }
    );

    let mut g = two_miners();
    g.miners[1].peer_id = g.miners[0].peer_id.clone();
    assert_eq!(
        invalid(&g),
        GenesisError::DuplicatePeerId { miner: 1, first: 0 }
    );
    // Empty peer ids are not announcements: two of them are fine.
    let mut g = two_miners();
    g.miners[0].peer_id.clear();
    g.miners[1].peer_id.clear();
    g.validate(&policy).unwrap();

    let mut g = two_miners();
    g.miners[0].sectors[1].sector_number = 1;
    assert_eq!(
        invalid(&g),
        GenesisError::DuplicateSector {
            miner: 0,
            sector: 1
        }
    );

    let mut g = two_miners();
    g.miners[1].sectors[1].comm_r = g.miners[0].sectors[0].comm_r;
    assert_eq!(
        invalid(&g),
        GenesisError::DuplicateReplica {
            miner: 1,
            sector: 2,
            first_miner: 0,
            first_sector: 1
        }
    );
    let mut g = two_miners();
    g.miners[0].sectors[1].comm_r = g.miners[0].sectors[0].comm_r;
    assert!(matches!(
        invalid(&g),
        GenesisError::DuplicateReplica { miner: 0, .. }
    ));

    let range = GenesisSector::expiration_range(&policy);
    for bad in [0, *range.start() - 1, *range.end() + 1] {
        let mut g = two_miners();
        g.miners[0].sectors[0].expiration = bad;
        assert_eq!(
            invalid(&g),
            GenesisError::Expiration {
                miner: 0,
                sector: 1,
                expiration: bad,
                min: *range.start(),
                max: *range.end()
            }
        );
    }
    for edge in [*range.start(), *range.end()] {
        let mut g = two_miners();
        g.miners[0].sectors[0].expiration = edge;
        g.validate(&policy).unwrap();
    }

    let mut g = two_miners();
    g.miners[0].sectors[0].comm_r = [0xff; 32];
    assert_eq!(
        invalid(&g),
        GenesisError::Commitment {
            miner: 0,
            sector: 1,
            which: CommitmentKind::CommR
        }
    );
    let mut g = two_miners();
    g.miners[1].sectors[0].comm_d = [0xff; 32];
    assert_eq!(
        invalid(&g),
        GenesisError::Commitment {
            miner: 1,
            sector: 1,
            which: CommitmentKind::CommD
        }
    );
    // A sector holding data (no deals at genesis) is refused.
    let mut g = two_miners();
    g.miners[1].sectors[1].comm_d = comm_d(2048, &[(node("piece"), 2048)]);
    assert_eq!(
        invalid(&g),
        GenesisError::NotCommittedCapacity {
            miner: 1,
            sector: 2
        }
    );

    // Miner balances count against the supply.
    let mut g = two_miners();
    let accounts = START_BALANCE.0 * ACCOUNTS.len() as u128;
    g.miners[1].balance = TokenAmount(policy.total_supply.0 - accounts - MINER_BALANCE.0 + 1);
    assert!(matches!(refusal(&g), ChainError::GenesisOverSupply));
    g.miners[1].balance.0 -= 1;
    g.validate(&policy).unwrap();
}

#[test]
#[ignore = "real Groth16 proofs: run with --include-ignored"]
fn a_real_pre_sealed_sector_keeps_power_with_a_real_window_post() {
    use lode_proofs::verifier::SnarkVerifier;
    // The miner's id is known before the genesis exists, so its sector is sealed for it.
    let mut g = devnet_genesis();
    g.miners = vec![GenesisMiner {
        sectors: Vec::new(),
        ..genesis_miner("owner", "real")
    }];
    let m = g.miner_ids()[0];
    let mut real = RealProofs::new();
    let ticket = *blake3::hash(b"genesis ticket").as_bytes();
    let (comm_r, comm_d) = real.preseal(m, 1, ticket);
    g.miners[0].sectors = vec![GenesisSector {
        sector_number: 1,
        comm_r,
        comm_d,
        expiration: expiration(&Policy::devnet()),
    }];
    let mut h = Harness::from_genesis(
        StateStore::memory(),
        &g,
        Box::new(SnarkVerifier::new(test_params())),
        Some(Box::new(real)),
    );
    let one = PowerPair {
        raw: 2048,
        qa: 2048,
    };
    assert_eq!(h.claim(m).power, one);
    // A real Winning PoSt over the genesis sector wins epoch 1.
    let block = h.block(m).expect("the only miner is elected");
    h.step(vec![block], Vec::new());
    // A real Window PoSt in its deadline keeps the power past the deadline's end.
    let s = h.sector(m, 1).unwrap();
    let r = h.submit_post(m, s.deadline, s.partition, &[]);
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    let info = h.deadline(m, s.deadline);
    h.advance_to(info.last() + 1);
    assert_eq!(h.claim(m).power, one);
    let dl: Deadline = h.get(&keys::deadline(m, s.deadline)).unwrap();
    assert!(dl.partitions[0].faults.is_empty());
}
