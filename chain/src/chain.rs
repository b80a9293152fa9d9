//! The executor: genesis, and applying one epoch (a tipset) to the state.
//!
//! Order of one epoch `e` (all of it in one overlay, committed atomically at the end):
//!
//! 1. record the beacon as the randomness of `e`;
//! 2. validate every block against the state before `e`: parent root, one block per miner, the
//!    miner is eligible (power, no fee debt, no consensus-fault ban), ticket, election proof, win count,
//!    Winning PoSt, header signature, messages root, then its messages against its one BLS
//!    aggregate signature (distinct messages, every sender's key known, one multi-pairing:
//!    [`crate::block`]) — any failure rejects the whole tipset;
//! 3. apply the blocks' messages in order (a message in two blocks runs once);
//! 4. pay each block's reward (`R(e) × win_count / 5`, 75% vesting);
//! 5. cron: miner deadline ends scheduled at `e` (by miner id), market deal timeouts, the power
//!    actor's smoothed QA estimate, the reward actor's smoothed reward and minting step;
//! 6. forget randomness older than any proof can ask for;
//! 7. commit: writes and the new head go to the backend in one atomic, flushed batch.
//!
//! **Null rounds.** An epoch nobody won still happens: it has a beacon (recorded as its
//! randomness) and runs cron — steps 1, 5 and 6 with no blocks and no messages. The null rounds
//! between the head `h` and a tipset at `e > h + 1` are never committed on their own: they run
//! in the tipset's overlay before it ([`Chain::run_null_rounds`] computes them as an
//! [`AfterNulls`], which [`Chain::apply_tipset_after`] starts from), and the whole span `h+1..=e`
//! is one commit at `e` whose undo record goes back to `h`. The state after it is exactly what
//! applying the null rounds one by one and then the tipset would give (tested), so there is no
//! limit on how many null rounds a tipset may follow. The parent state root a block names is the
//! root after the null rounds before it ([`AfterNulls::root`]), computed without committing
//! anything. The beacons of null rounds are inputs, like every beacon: the chain never draws one.
//!
//! Two entry points: [`Chain::apply_tipset`] applies blocks, whose messages are covered by their
//! aggregates (what the network exchanges); [`Chain::apply_epoch`] applies winners' headers and a
//! list of individually signed messages, each signature checked on its own (in parallel) and a
//! message with a bad one rejected with [`ExitCode::SysInvalidSignature`] — the executor without
//! blocks, which the test harness and the executor's benchmarks drive.

use std::collections::BTreeSet;

use lode_proofs::verifier::{ProofVerifier, WinningPostStatement};
use serde::{Deserialize, Serialize};

use crate::actors::{ActorKind, compute, market, miner, power, reward, verifreg};
use crate::block::{
    Block, BlockHeader, Tipset, check_messages, messages_root, sender_key, win_count,
};
use crate::crypto::Signature;
use crate::error::{
    ActorError, ActorResult, BlockFault, BlockRejection, ChainError, ChainResult, ExitCode,
    ImplicitOp, OutOfRange, StoreError,
};
use crate::genesis::Genesis;
use crate::keys;
use crate::message::{Message, Method, Receipt, SignedMessage};
use crate::policy::Policy;
use crate::runtime::{RandomnessTag, Runtime, draw_randomness};
use crate::store::{Head, Overlay, StateStore, Writes};
use crate::types::{ActorId, Address, Epoch, TokenAmount};

/// What [`Chain::apply_epoch`] applies at one epoch: the beacon, the winners' headers and signed
/// messages, each with its own signature (a null round has no headers and no messages).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochInput {
    /// Epoch.
    pub epoch: Epoch,
    /// The beacon value.
    pub beacon: [u8; 32],
    /// Winners' headers.
    pub blocks: Vec<BlockHeader>,
    /// Messages in order, each checked against its own signature.
    pub messages: Vec<SignedMessage>,
}

/// A null round: an epoch in which no block was made. It still has a beacon, and still runs cron.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NullRound {
    /// Epoch.
    pub epoch: Epoch,
    /// The epoch's beacon value (recorded as its randomness).
    pub beacon: [u8; 32],
}

/// The state after null rounds that follow the committed head: computed in a scratch overlay by
/// [`Chain::run_null_rounds`], never committed. A tipset after them is built on it and applied
/// with [`Chain::apply_tipset_after`]; [`Chain::view_after`] reads it. It belongs to the head it
/// was computed on: once the head moves, the chain refuses it ([`ChainError::StaleNullRounds`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfterNulls {
    /// The committed head the null rounds follow.
    base: Head,
    /// The last null round (`base.epoch` when there are none).
    epoch: Epoch,
    /// What the null rounds wrote, over the committed state.
    writes: Writes,
    /// The state root after them.
    root: [u8; 32],
}

impl AfterNulls {
    /// The committed head the null rounds follow.
    pub fn base(&self) -> Head {
        self.base
    }

    /// The epoch of the state: the last null round's (the base's when there are none).
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// How many null rounds were run.
    pub fn rounds(&self) -> u64 {
        self.epoch.saturating_sub(self.base.epoch)
    }

    /// The state root after the null rounds: the parent state root of a block at `epoch() + 1`.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }
}

/// The messages of an epoch, and what vouches for their signatures.
#[derive(Clone, Copy)]
enum EpochMessages<'a> {
    /// Each with its own signature ([`EpochInput::messages`]).
    Signed(&'a [SignedMessage]),
    /// The blocks' messages, covered by each block's aggregate.
    Aggregated(&'a [Block]),
}

/// What applying a tipset produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TipsetOutcome {
    /// One receipt per distinct message, in order.
    pub receipts: Vec<Receipt>,
    /// The state root after the epoch.
    pub root: [u8; 32],
    /// Reward paid to each block's miner.
    pub rewards: Vec<(ActorId, TokenAmount)>,
}

/// The chain state machine over a store.
pub struct Chain {
    store: StateStore,
    policy: Policy,
    verifier: Box<dyn ProofVerifier>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("network", &self.policy.network)
            .field("head", &self.store.head())
            .finish()
    }
}

impl Chain {
    /// Creates the genesis state (epoch 0) in an empty store.
    pub fn genesis(
        mut store: StateStore,
        policy: Policy,
        genesis: &Genesis,
        verifier: Box<dyn ProofVerifier>,
    ) -> ChainResult<Self> {
        if store.head().is_some() {
            return Err(ChainError::AlreadyInitialised);
        }
        let writes = {
            let mut rt = Runtime::new(Overlay::new(&store), &policy, 0, verifier.as_ref());
            crate::genesis::build(&mut rt, genesis)?;
            rt.state.into_writes()
        };
        store.set_undo_retention(policy.chain_finality);
        store.commit(writes, 0)?;
        Ok(Chain {
            store,
            policy,
            verifier,
        })
    }

    /// Opens an existing chain.
    pub fn open(
        store: StateStore,
        policy: Policy,
        verifier: Box<dyn ProofVerifier>,
    ) -> ChainResult<Self> {
        if store.head().is_none() {
            return Err(ChainError::NoChain);
        }
        let mut store = store;
        store.set_undo_retention(policy.chain_finality);
        Ok(Chain {
            store,
            policy,
            verifier,
        })
    }

    /// The rules.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The committed head.
    pub fn head(&self) -> Head {
        self.store.head().unwrap_or(Head {
            epoch: 0,
            root: [0; 32],
        })
    }

    /// The store (for proofs of state and invariant checks).
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// Runs `f` against the committed state (read-only: its writes are dropped).
    pub fn view<R>(&self, f: impl FnOnce(&mut Runtime<'_, '_>) -> R) -> R {
        let mut rt = Runtime::new(
            Overlay::new(&self.store),
            &self.policy,
            self.head().epoch,
            self.verifier.as_ref(),
        );
        f(&mut rt)
    }

    /// The committed head as a starting point for [`Chain::run_null_rounds`] (no null rounds).
    pub fn at_head(&self) -> AfterNulls {
        let base = self.head();
        AfterNulls {
            base,
            epoch: base.epoch,
            writes: Writes::new(),
            root: base.root,
        }
    }

    /// The state after `epoch`, a committed epoch at or before the head within the undo window,
    /// as a starting point for [`Chain::run_null_rounds`], [`Chain::view_after`] and
    /// [`Chain::check_header_after`]: read from the undo records over the committed state,
    /// changing nothing. It can be read and extended but never applied or committed (a tipset
    /// after it would not follow the head: [`ChainError::StaleNullRounds`]). Fails like
    /// [`Chain::revert_to`] would (an epoch inside a span of null rounds, or past the window).
    pub fn at_past(&mut self, epoch: Epoch) -> ChainResult<AfterNulls> {
        let head = self.head();
        if epoch >= head.epoch {
            return Ok(self.at_head());
        }
        let (writes, at) = self.store.writes_back_to(epoch)?;
        let root = self.store.root_with(&writes);
        if root != at.root {
            return Err(StoreError::RootMismatch {
                epoch: at.epoch,
                expected: hex::encode(at.root),
                found: hex::encode(root),
            }
            .into());
        }
        Ok(AfterNulls {
            base: head,
            epoch: at.epoch,
            writes,
            root,
        })
    }

    /// Checks one block header as applying it after `after` would (the header at
    /// `after.epoch() + 1`, with the epoch's beacon): epoch and beacon, parent state root, the
    /// miner and its eligibility, the header signature by the worker key, ticket, election proof
    /// and win count, Winning PoSt. Its messages are not checked and nothing is applied. `Ok`
    /// when the header passes; [`ChainError::InvalidBlock`] when it does not.
    pub fn check_header_after(
        &self,
        after: &AfterNulls,
        beacon: [u8; 32],
        header: &BlockHeader,
    ) -> ChainResult<()> {
        self.check_current(after)?;
        let epoch = header.epoch;
        let invalid = |reason: BlockRejection| ChainError::InvalidBlock { epoch, reason };
        expect_next(after, epoch)?;
        let mut rt = Runtime::new(
            Overlay::with_writes(&self.store, after.writes.clone()),
            &self.policy,
            epoch,
            self.verifier.as_ref(),
        );
        // The state the blocks of the epoch are validated in when applied.
        rt.state.put(keys::randomness(epoch), &beacon)?;
        rt.state.delete(keys::NULL_RUN);
        let input = EpochInput {
            epoch,
            beacon,
            blocks: vec![header.clone()],
            messages: Vec::new(),
        };
        validate_blocks(&rt, &input, after.root).map_err(invalid)
    }

    /// Runs the null rounds `nulls` after `from` (which must belong to the committed head) in a
    /// scratch overlay, committing nothing: `nulls` must be the epochs right after
    /// `from.epoch()`, in order (an iterator, so that a long run of them need not be held in
    /// memory at once). Extending an earlier result this way runs only the new rounds.
    /// Computing the new root updates and restores the state tree in place, hence `&mut self`;
    /// the committed state does not change. On an error `from` is consumed: start again from
    /// [`Chain::at_head`].
    pub fn run_null_rounds(
        &mut self,
        from: AfterNulls,
        nulls: impl IntoIterator<Item = NullRound>,
    ) -> ChainResult<AfterNulls> {
        self.check_current(&from)?;
        let mut nulls = nulls.into_iter().peekable();
        if nulls.peek().is_none() {
            return Ok(from);
        }
        let AfterNulls {
            base,
            mut epoch,
            writes,
            ..
        } = from;
        let writes = {
            let mut rt = Runtime::new(
                Overlay::with_writes(&self.store, writes),
                &self.policy,
                epoch,
                self.verifier.as_ref(),
            );
            for round in nulls {
                let expected = epoch.checked_add(1).ok_or(OutOfRange("the epoch"))?;
                if round.epoch != expected {
                    return Err(ChainError::NullRoundOutOfOrder {
                        expected,
                        got: round.epoch,
                    });
                }
                run_null_round(&mut rt, &round)?;
                epoch = expected;
            }
            let mut writes = rt.state.into_writes();
            // A record written and deleted again within the rounds (randomness past its
            // retention) leaves a deletion of a key that is not committed: a no-op, dropped so
            // that what is kept grows with the state the rounds change, not with their number.
            writes.retain(|k, v| v.is_some() || self.store.get_raw(k).is_some());
            writes
        };
        let root = self.store.root_with(&writes);
        Ok(AfterNulls {
            base,
            epoch,
            writes,
            root,
        })
    }

    /// Commits the null rounds of `after` by themselves, as one commit at their last epoch, and
    /// returns the new root. A node never does this (it commits null rounds with the tipset after
    /// them, so that a reorganisation undoes both at once); tools and tests that replay a chain
    /// epoch by epoch do. Nothing changes when there are no rounds or on an error.
    pub fn commit_null_rounds(&mut self, after: AfterNulls) -> ChainResult<[u8; 32]> {
        self.check_follows_head(&after)?;
        if after.epoch == after.base.epoch {
            return Ok(after.base.root);
        }
        Ok(self.store.commit(after.writes, after.epoch)?)
    }

    /// Runs `f` against the state after the null rounds of `after` (read-only: its writes are
    /// dropped), at `after.epoch()`.
    pub fn view_after<R>(
        &self,
        after: &AfterNulls,
        f: impl FnOnce(&mut Runtime<'_, '_>) -> R,
    ) -> ChainResult<R> {
        self.check_current(after)?;
        let mut rt = Runtime::new(
            Overlay::with_writes(&self.store, after.writes.clone()),
            &self.policy,
            after.epoch,
            self.verifier.as_ref(),
        );
        Ok(f(&mut rt))
    }

    /// [`Chain::check_current`], and `after` is not a past state ([`Chain::at_past`]): what
    /// may be committed.
    fn check_follows_head(&self, after: &AfterNulls) -> ChainResult<()> {
        self.check_current(after)?;
        if after.epoch < after.base.epoch {
            return Err(ChainError::StaleNullRounds {
                base: after.epoch,
                head: after.base.epoch,
            });
        }
        Ok(())
    }

    fn check_current(&self, after: &AfterNulls) -> ChainResult<()> {
        let head = self.head();
        if after.base != head {
            return Err(ChainError::StaleNullRounds {
                base: after.base.epoch,
                head: head.epoch,
            });
        }
        Ok(())
    }

    /// Rolls the state back to what it was after `epoch` (a reorganisation), undoing whole
    /// commits (a tipset with the null rounds before it is one): `epoch` must be a committed
    /// epoch whose later commits are all within the undo records' window (`chain_finality`
    /// epochs). On any error nothing changes.
    pub fn revert_to(&mut self, epoch: Epoch) -> ChainResult<Head> {
        Ok(self.store.revert_to(epoch)?)
    }

    /// Stages metadata for the next apply or revert, written atomically with it (the node records
    /// which tipset the state belongs to).
    pub fn stage_meta(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.store.stage_meta(key, value);
    }

    /// Drops staged metadata (after an apply that failed).
    pub fn clear_staged_meta(&mut self) {
        self.store.clear_staged_meta();
    }

    /// Metadata written with an earlier apply or revert.
    pub fn meta(&self, key: &[u8]) -> ChainResult<Option<Vec<u8>>> {
        Ok(self.store.meta(key)?)
    }

    /// Applies the next epoch from its blocks: each block's messages are checked against its
    /// aggregate signature ([`crate::block`]). On any error nothing is committed.
    pub fn apply_tipset(&mut self, tipset: &Tipset) -> ChainResult<TipsetOutcome> {
        let at = self.at_head();
        self.apply_tipset_after(&at, tipset)
    }

    /// Applies a tipset after the null rounds of `after` (computed on the committed head), all
    /// in one commit at the tipset's epoch: the tipset must be at `after.epoch() + 1`, and its
    /// blocks name `after.root()` as their parent state root. On any error nothing is committed
    /// (and `after` can be used again).
    pub fn apply_tipset_after(
        &mut self,
        after: &AfterNulls,
        tipset: &Tipset,
    ) -> ChainResult<TipsetOutcome> {
        let mut input = EpochInput {
            epoch: tipset.epoch,
            beacon: tipset.beacon,
            blocks: Vec::with_capacity(tipset.blocks.len()),
            messages: Vec::new(),
        };
        for (i, block) in tipset.blocks.iter().enumerate() {
            if block.header.messages_root != messages_root(&block.messages) {
                return Err(ChainError::InvalidBlock {
                    epoch: tipset.epoch,
                    reason: BlockRejection::MessagesRoot { index: i },
                });
            }
            input.blocks.push(block.header.clone());
        }
        self.apply_epoch_with(after, &input, EpochMessages::Aggregated(&tipset.blocks))
    }

    /// Applies the next epoch: its winners' headers (validated here except for their messages
    /// roots, which [`Chain::apply_tipset`] checks) and individually signed messages. On any error
    /// nothing is committed.
    pub fn apply_epoch(&mut self, input: &EpochInput) -> ChainResult<TipsetOutcome> {
        let at = self.at_head();
        self.apply_epoch_after(&at, input)
    }

    /// [`Chain::apply_epoch`] after the null rounds of `after`, in one commit at `input.epoch`
    /// (see [`Chain::apply_tipset_after`]).
    pub fn apply_epoch_after(
        &mut self,
        after: &AfterNulls,
        input: &EpochInput,
    ) -> ChainResult<TipsetOutcome> {
        self.apply_epoch_with(after, input, EpochMessages::Signed(&input.messages))
    }

    fn apply_epoch_with(
        &mut self,
        after: &AfterNulls,
        input: &EpochInput,
        messages: EpochMessages<'_>,
    ) -> ChainResult<TipsetOutcome> {
        self.check_follows_head(after)?;
        let epoch = input.epoch;
        let invalid = |reason: BlockRejection| ChainError::InvalidBlock { epoch, reason };
        expect_next(after, epoch)?;
        let (writes, outcome) = {
            let mut rt = Runtime::new(
                Overlay::with_writes(&self.store, after.writes.clone()),
                &self.policy,
                epoch,
                self.verifier.as_ref(),
            );
            rt.state.put(keys::randomness(epoch), &input.beacon)?;
            // A tipset ends any run of null rounds (a no-op when there was none).
            rt.state.delete(keys::NULL_RUN);
            validate_blocks(&rt, input, after.root).map_err(invalid)?;
            let receipts = apply_messages(&mut rt, messages).map_err(|e| match e {
                Rejected::Block(r) => invalid(r),
                Rejected::Chain(e) => e,
            })?;
            let mut rewards = Vec::new();
            for header in &input.blocks {
                let r = reward::award_block_reward(&mut rt, header.miner, header.win_count)
                    .map_err(ChainError::implicit(ImplicitOp::BlockReward {
                        miner: header.miner,
                    }))?;
                rewards.push((header.miner, r));
            }
            run_cron(&mut rt)?;
            (rt.state.into_writes(), (receipts, rewards))
        };
        let root = self.store.commit(writes, epoch)?;
        Ok(TipsetOutcome {
            receipts: outcome.0,
            root,
            rewards: outcome.1,
        })
    }
}

/// Refuses a block or tipset at `epoch` unless it comes right after the state of `after`.
fn expect_next(after: &AfterNulls, epoch: Epoch) -> ChainResult<()> {
    let next = after.epoch.checked_add(1).ok_or(OutOfRange("the epoch"))?;
    if epoch != next {
        return Err(ChainError::InvalidBlock {
            epoch,
            reason: BlockRejection::NotNextEpoch {
                expected: next,
                got: epoch,
            },
        });
    }
    Ok(())
}

/// How many epochs of randomness the state keeps (the oldest a prove-commit can ask for).
pub fn randomness_retention(policy: &Policy) -> u64 {
    // Saturating: a retention past u64::MAX epochs means "keep everything".
    policy
        .max_pre_commit_randomness_lookback
        .saturating_add(policy.max_prove_commit_duration)
        .saturating_add(1)
}

fn validate_blocks(
    rt: &Runtime<'_, '_>,
    tipset: &EpochInput,
    parent_root: [u8; 32],
) -> Result<(), BlockRejection> {
    let p = rt.policy;
    let mut miners = BTreeSet::new();
    for (index, h) in tipset.blocks.iter().enumerate() {
        let m = h.miner;
        let ctx = |fault: BlockFault| BlockRejection::Block {
            index,
            miner: m,
            fault,
        };
        let state = |e: ChainError| ctx(BlockFault::State(Box::new(e)));
        if h.epoch != tipset.epoch || h.beacon != tipset.beacon {
            return Err(ctx(BlockFault::EpochOrBeacon));
        }
        if h.parent_state_root != parent_root {
            return Err(ctx(BlockFault::ParentRoot));
        }
        if !miners.insert(m) {
            return Err(ctx(BlockFault::TwoBlocks));
        }
        let info = miner::info(rt, m).map_err(|e| ctx(BlockFault::Miner(e)))?;
        if info
            .worker_key
            .verify(&h.signing_bytes(&p.network), &h.signature)
            .is_err()
        {
            return Err(ctx(BlockFault::HeaderSignature));
        }
        if let Some(why) = miner::ineligibility(rt, m).map_err(|e| ctx(BlockFault::Miner(e)))? {
            return Err(ctx(BlockFault::Ineligible(why)));
        }
        let entropy = m.0.to_le_bytes();
        let ticket = draw_randomness(
            RandomnessTag::Ticket,
            &tipset.beacon,
            tipset.epoch,
            &entropy,
        );
        if info.worker_key.verify(&ticket, &h.ticket).is_err() {
            return Err(ctx(BlockFault::Ticket));
        }
        let election = draw_randomness(
            RandomnessTag::Election,
            &tipset.beacon,
            tipset.epoch,
            &entropy,
        );
        if info
            .worker_key
            .verify(&election, &h.election_proof)
            .is_err()
        {
            return Err(ctx(BlockFault::ElectionProof));
        }
        let claim = power::claim(rt, m)
            .map_err(state)?
            .map(|c| c.power.qa)
            .unwrap_or(0);
        let pst = power::load(rt).map_err(state)?;
        let total = power::current_total(rt, &pst).qa;
        let wins = win_count(
            &h.election_proof,
            claim,
            total,
            p.expected_leaders_per_epoch,
            p.max_win_count,
        );
        if wins == 0 || wins != h.win_count {
            return Err(ctx(BlockFault::WinCount {
                computed: wins,
                claimed: h.win_count,
            }));
        }
        let sectors = miner::active_sectors(rt, m).map_err(|e| ctx(BlockFault::Miner(e)))?;
        let statement = WinningPostStatement {
            size: info.sector_size,
            miner_id: m.0,
            randomness: draw_randomness(
                RandomnessTag::WinningPost,
                &tipset.beacon,
                tipset.epoch,
                &entropy,
            ),
            sectors,
        };
        if let Err(e) = rt.verifier.verify_winning_post(&statement, &h.winning_post) {
            return Err(ctx(BlockFault::WinningPost(e)));
        }
    }
    Ok(())
}

fn reject(code: ExitCode, error: impl Into<String>) -> Receipt {
    Receipt {
        exit_code: code,
        gas_used: 0,
        fee: TokenAmount::ZERO,
        return_data: Vec::new(),
        error: error.into(),
    }
}

/// Why an epoch's messages could not be applied.
enum Rejected {
    /// A block's messages are invalid (its aggregate, a repeat, a sender without a key).
    Block(BlockRejection),
    /// The executor failed.
    Chain(ChainError),
}

impl From<ChainError> for Rejected {
    fn from(e: ChainError) -> Self {
        Rejected::Chain(e)
    }
}

/// Checks the epoch's signatures, then applies its messages in order, each once: a message in two
/// blocks by its id, an individually signed one by its id and signature. One receipt per message
/// applied.
fn apply_messages(
    rt: &mut Runtime<'_, '_>,
    messages: EpochMessages<'_>,
) -> Result<Vec<Receipt>, Rejected> {
    use rayon::prelude::*;
    let mut receipts = Vec::new();
    match messages {
        EpochMessages::Signed(messages) => {
            // A copy is the message with its signature: a copy with a bad signature does not
            // stand in for the message (only the valid signature, which is unique, can run it).
            let mut copies = BTreeSet::new();
            let checked = presign_check(rt, messages)?;
            for (msg, ok) in messages.iter().zip(checked) {
                if copies.insert((msg.id(), msg.signature.to_bytes())) {
                    let check = match ok {
                        Some(valid) => SignatureCheck::Done(valid),
                        None => SignatureCheck::Pending(&msg.signature),
                    };
                    receipts.push(apply_message_checked(rt, &msg.message, check)?);
                }
            }
        }
        EpochMessages::Aggregated(blocks) => {
            // Every block's messages are checked against the parent state before any runs.
            let mut ids = Vec::with_capacity(blocks.len());
            for (index, block) in blocks.iter().enumerate() {
                let block_ids: Vec<[u8; 32]> = block.messages.par_iter().map(Message::id).collect();
                check_messages(rt, block, &block_ids).map_err(|fault| {
                    Rejected::Block(BlockRejection::Block {
                        index,
                        miner: block.header.miner,
                        fault,
                    })
                })?;
                ids.push(block_ids);
            }
            let mut seen = BTreeSet::new();
            for (block, block_ids) in blocks.iter().zip(&ids) {
                for (msg, id) in block.messages.iter().zip(block_ids) {
                    if seen.insert(*id) {
                        receipts.push(apply_message_checked(rt, msg, SignatureCheck::Done(true))?);
                    }
                }
            }
        }
    }
    Ok(receipts)
}

/// Verifies the messages' signatures in parallel where the sender's key is known before the epoch
/// (its BLS address, or an account that already exists). `Some(valid)` per message; `None` when the
/// key can only be known during execution (checked then).
fn presign_check(
    rt: &Runtime<'_, '_>,
    messages: &[SignedMessage],
) -> ChainResult<Vec<Option<bool>>> {
    use rayon::prelude::*;
    let mut keys = Vec::with_capacity(messages.len());
    for m in messages {
        keys.push(sender_key(rt, &m.message.from)?);
    }
    let network = &rt.policy.network;
    Ok(messages
        .par_iter()
        .zip(keys.par_iter())
        .map(|(m, k)| k.map(|k| m.verify(network, &k)))
        .collect())
}

/// How a message's signature is established when it runs.
#[derive(Clone, Copy)]
enum SignatureCheck<'a> {
    /// Already checked against the sender's key (one by one, or by its block's aggregate).
    Done(bool),
    /// This signature, to check against the sender's key when the message runs (the key was not
    /// known before the epoch).
    Pending(&'a Signature),
}

/// Applies one message. System failures (bad signature, nonce, funds for gas…) reject it with no
/// state change; a method failure rolls back the method and still charges gas and the nonce.
pub fn apply_message(rt: &mut Runtime<'_, '_>, smsg: &SignedMessage) -> ChainResult<Receipt> {
    apply_message_checked(rt, &smsg.message, SignatureCheck::Pending(&smsg.signature))
}

/// [`apply_message`] with the signature established as `signature` says.
fn apply_message_checked(
    rt: &mut Runtime<'_, '_>,
    msg: &Message,
    signature: SignatureCheck<'_>,
) -> ChainResult<Receipt> {
    let p = rt.policy;
    let len = msg.signed_len() as u64;
    if len > p.max_message_size {
        return Ok(reject(
            ExitCode::SysInvalidMessage,
            format!("message of {len} bytes exceeds {}", p.max_message_size),
        ));
    }
    if msg.gas_price < p.min_gas_price {
        return Ok(reject(
            ExitCode::SysInvalidMessage,
            format!(
                "gas price {} is below the minimum {}",
                msg.gas_price, p.min_gas_price
            ),
        ));
    }
    let base_gas = p
        .gas_base
        .saturating_add(p.gas_per_byte.saturating_mul(len));
    if msg.gas_limit < base_gas {
        return Ok(reject(
            ExitCode::SysInvalidMessage,
            format!(
                "gas limit {} is below the {base_gas} this message needs to be included",
                msg.gas_limit
            ),
        ));
    }
    let Some(from) = rt.resolve(&msg.from)? else {
        return Ok(reject(
            ExitCode::SysSenderInvalid,
            format!("sender {} does not exist", msg.from),
        ));
    };
    let mut sender = match rt.actor(from)? {
        Some(a) => a,
        None => return Ok(reject(ExitCode::SysSenderInvalid, "sender vanished")),
    };
    let ActorKind::Account { key } = sender.kind else {
        return Ok(reject(
            ExitCode::SysSenderInvalid,
            format!("sender {from} is not an account"),
        ));
    };
    if let Address::Bls(k) = &msg.from
        && *k != key
    {
        return Ok(reject(ExitCode::SysSenderInvalid, "sender key mismatch"));
    }
    if msg.nonce != sender.nonce {
        return Ok(reject(
            ExitCode::SysSenderStateInvalid,
            format!(
                "nonce {} is not the sender's next nonce {}",
                msg.nonce, sender.nonce
            ),
        ));
    }
    // A key that changed since the parallel check cannot happen (account keys are fixed), but only
    // a check against this very key counts.
    let valid = match signature {
        SignatureCheck::Done(v) => v,
        SignatureCheck::Pending(s) => key.verify(&msg.signing_bytes(&p.network), s).is_ok(),
    };
    if !valid {
        return Ok(reject(
            ExitCode::SysInvalidSignature,
            "the signature does not verify under the sender's key",
        ));
    }
    let Some(max_fee) = msg.max_fee() else {
        return Ok(reject(
            ExitCode::SysInsufficientFunds,
            "gas limit × gas price overflows",
        ));
    };
    let needed = max_fee.checked_add(msg.value);
    if needed.is_none_or(|n| sender.balance < n) {
        return Ok(reject(
            ExitCode::SysInsufficientFunds,
            format!(
                "sender has {} but the message may cost {} plus its value {}",
                sender.balance, max_fee, msg.value
            ),
        ));
    }
    let Some(next_nonce) = sender.nonce.checked_add(1) else {
        return Ok(reject(
            ExitCode::SysSenderStateInvalid,
            "the sender's nonces are exhausted",
        ));
    };
    // From here the message is included: the nonce advances and gas is paid whatever happens.
    sender.nonce = next_nonce;
    rt.put_actor(from, &sender)?;
    rt.start_gas(base_gas, msg.gas_limit);
    rt.state.begin();
    let result = run_method(rt, from, msg);
    let gas_used = rt.stop_gas();
    let (exit_code, return_data, error) = match result {
        Ok(ret) => {
            rt.state.commit_layer();
            (ExitCode::Ok, ret, String::new())
        }
        Err(e) => {
            rt.state.rollback();
            (e.code, Vec::new(), e.message)
        }
    };
    // `gas_used ≤ gas_limit`, and `gas_limit × gas_price` was checked above.
    let fee = msg
        .gas_price
        .0
        .checked_mul(u128::from(gas_used))
        .map(TokenAmount)
        .ok_or(OutOfRange("a gas fee"))?;
    rt.burn(from, fee)
        .map_err(ChainError::implicit(ImplicitOp::GasFee { sender: from }))?;
    Ok(Receipt {
        exit_code,
        gas_used,
        fee,
        return_data,
        error,
    })
}

fn run_method(rt: &mut Runtime<'_, '_>, from: ActorId, msg: &Message) -> ActorResult<Vec<u8>> {
    let to = rt.resolve_or_create(&msg.to)?;
    let kind = rt.expect_actor(to)?.kind;
    // Value goes only where it is accounted for: to accounts and miners (their free balance), to
    // the burnt-funds actor, with a new miner's funds, or into market escrow. Anything else would
    // strand tokens in a built-in actor outside its books.
    let takes_value = matches!(
        (&msg.method, kind),
        (
            Method::Send,
            ActorKind::Account { .. } | ActorKind::Miner | ActorKind::BurntFunds
        ) | (Method::Miner(_), ActorKind::Miner)
            | (Method::Power(_), ActorKind::Power)
            | (
                Method::Market(market::MarketMethod::AddBalance { .. }),
                ActorKind::Market
            )
    ) || matches!((&msg.method, kind), (Method::Compute(m), ActorKind::Compute) if m.takes_value());
    if !msg.value.is_zero() && !takes_value {
        return Err(ActorError::new(
            ExitCode::IllegalArgument,
            format!("{to} ({kind:?}) does not accept value with this method"),
        ));
    }
    rt.transfer(from, to, msg.value)?;
    match (&msg.method, kind) {
        (Method::Send, _) => Ok(Vec::new()),
        (Method::Power(m), ActorKind::Power) => power::invoke(rt, from, msg.value, m.clone()),
        (Method::Miner(m), ActorKind::Miner) => miner::invoke(rt, to, from, m.clone()),
        (Method::Market(m), ActorKind::Market) => market::invoke(rt, from, msg.value, m.clone()),
        (Method::VerifReg(m), ActorKind::VerifiedRegistry) => verifreg::invoke(rt, from, m.clone()),
        (Method::Compute(m), ActorKind::Compute) => compute::invoke(rt, from, msg.value, m.clone()),
        _ => Err(ActorError::new(
            ExitCode::UnhandledMethod,
            format!("{to} ({kind:?}) has no such method"),
        )),
    }
}

/// One null round on the runtime's overlay: what [`Chain::apply_epoch`] does at an epoch with no
/// blocks and no messages (the beacon recorded as randomness, then cron), except that the first
/// null round of a run records its epoch ([`keys::NULL_RUN`]): a deadline whose whole window
/// falls in the run is excused ([`crate::actors::miner::on_deadline_cron`]).
fn run_null_round(rt: &mut Runtime<'_, '_>, round: &NullRound) -> ChainResult<()> {
    rt.epoch = round.epoch;
    rt.state.put(keys::randomness(round.epoch), &round.beacon)?;
    if rt.state.get_raw(keys::NULL_RUN).is_none() {
        rt.state.put(keys::NULL_RUN.to_vec(), &round.epoch)?;
    }
    run_cron(rt)
}

fn run_cron(rt: &mut Runtime<'_, '_>) -> ChainResult<()> {
    let epoch = rt.epoch;
    for (key, ()) in rt.state.scan::<()>(&keys::cron_prefix(epoch))? {
        let Some(id) = keys::last_u64(&key) else {
            continue;
        };
        miner::on_deadline_cron(rt, ActorId(id)).map_err(ChainError::implicit(
            ImplicitOp::DeadlineCron { miner: ActorId(id) },
        ))?;
    }
    market::end_epoch(rt).map_err(ChainError::implicit(ImplicitOp::MarketCron))?;
    compute::end_epoch(rt).map_err(ChainError::implicit(ImplicitOp::ComputeCron))?;
    power::end_epoch(rt)?;
    let pst = power::load(rt)?;
    let realized = power::current_total(rt, &pst).raw;
    reward::end_epoch(rt, realized)?;
    let keep = randomness_retention(rt.policy);
    if let Some(expired) = epoch.checked_sub(keep) {
        rt.state.delete(&keys::randomness(expired));
    }
    Ok(())
}

/// The committed epoch's randomness for `tag` (what provers need to build proofs).
pub fn randomness_at(
    chain: &Chain,
    tag: RandomnessTag,
    epoch: Epoch,
    entropy: &[u8],
) -> ActorResult<[u8; 32]> {
    chain.view(|rt| rt.randomness(tag, epoch, entropy))
}
