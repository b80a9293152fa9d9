//! Errors: exit codes for messages, and errors of the store and the state machine.

use serde::{Deserialize, Serialize};

use crate::types::{ActorId, Epoch, SectorNumber, TokenAmount};

/// The result of a method: a value, or the [`ActorError`] that fails the message.
pub type ActorResult<T> = Result<T, ActorError>;
/// The result of a state-store operation.
pub type StoreResult<T> = Result<T, StoreError>;
/// The result of a state-machine operation.
pub type ChainResult<T> = Result<T, ChainError>;

/// The outcome code of a message, recorded in its receipt.
///
/// Codes below 16 are *system* codes: the message could not be applied at all (bad signature, bad
/// nonce, unknown sender, fees not covered); such a message is rejected and changes no state, so a
/// block containing one is invalid. Codes from 16 up are *actor* codes: the method ran and failed;
/// its effects are rolled back, but the sender still pays the gas it used and its nonce advances —
/// this is what makes spamming the chain with failing messages cost something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u32)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// The sender is unknown or cannot send (not an account).
    SysSenderInvalid = 1,
    /// The nonce is not the sender's next nonce.
    SysSenderStateInvalid = 2,
    /// The signature does not verify under the sender's key.
    SysInvalidSignature = 3,
    /// The sender cannot cover `value + gas_limit × gas_price`.
    SysInsufficientFunds = 4,
    /// The message is malformed (too large, gas price too low, gas limit too low for its size).
    SysInvalidMessage = 5,
    /// The method ran out of gas.
    SysOutOfGas = 7,
    /// A parameter is invalid.
    IllegalArgument = 16,
    /// A referenced object does not exist.
    NotFound = 17,
    /// The caller may not do this.
    Forbidden = 18,
    /// Not enough funds for the operation.
    InsufficientFunds = 19,
    /// The operation is not valid in the current state.
    IllegalState = 20,
    /// A proof did not verify.
    InvalidProof = 21,
    /// An amount overflowed.
    Overflow = 22,
    /// The receiving actor has no such method.
    UnhandledMethod = 23,
}

impl ExitCode {
    /// Whether the code means success.
    pub fn is_success(self) -> bool {
        self == ExitCode::Ok
    }

    /// The numeric code.
    pub fn value(self) -> u32 {
        self as u32
    }
}

/// A method's failure: its exit code and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?} ({}): {message}", *code as u32)]
pub struct ActorError {
    /// The exit code.
    pub code: ExitCode,
    /// A human-readable reason.
    pub message: String,
}

impl ActorError {
    /// A failure with `code`.
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        ActorError {
            code,
            message: message.into(),
        }
    }
}

/// Shorthand: `Err(ActorError::new(code, msg))` as a return value.
macro_rules! abort {
    ($code:ident, $($arg:tt)*) => {
        return Err($crate::error::ActorError::new($crate::error::ExitCode::$code, format!($($arg)*)).into())
    };
}
pub(crate) use abort;

/// An amount or counter that left its range (overflowed, or went below zero where it may not).
///
/// Token amounts and counters use checked arithmetic everywhere; `?` turns this into an
/// [`ActorError`] with [`ExitCode::Overflow`] inside a method, or a [`ChainError::OutOfRange`]
/// outside one: `total.checked_add(x).ok_or(OutOfRange("market escrow"))?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} is out of range")]
pub struct OutOfRange(pub &'static str);

impl From<OutOfRange> for ActorError {
    fn from(e: OutOfRange) -> Self {
        ActorError::new(ExitCode::Overflow, e.to_string())
    }
}

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("state database: {0}")]
    Database(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("state database is corrupt: {0}")]
    Corrupt(&'static str),
    /// The rebuilt state root differs from the committed one.
    #[error(
        "state root mismatch at epoch {epoch}: head says {expected}, records give {found}; the database is damaged"
    )]
    RootMismatch {
        /// The head's epoch.
        epoch: Epoch,
        /// The committed root.
        expected: String,
        /// The rebuilt root.
        found: String,
    },
    /// A revert was asked of a store with nothing committed.
    #[error("nothing is committed: there is no state to revert")]
    NothingToRevert,
    /// A revert needs an undo record that is not kept.
    #[error(
        "cannot revert epoch {epoch}: its undo record is not kept (older than the retention window, chain finality); resync the node from genesis"
    )]
    UndoMissing {
        /// The epoch without an undo record.
        epoch: Epoch,
    },
    /// A revert target lies inside a span of null rounds that was committed as one step with the
    /// tipset after it: no state was ever committed at that epoch.
    #[error(
        "cannot revert to epoch {epoch}: no state was committed there (it lies inside the null rounds committed with epoch {span_end} on top of epoch {span_start}); revert to {span_start} instead"
    )]
    InsideSpan {
        /// The epoch asked for.
        epoch: Epoch,
        /// The committed epoch the span starts from.
        span_start: Epoch,
        /// The epoch of the commit that spans it.
        span_end: Epoch,
    },
    /// A commit was asked for an epoch that is not after the head.
    #[error("cannot commit epoch {epoch} on a head at epoch {head}: commits only move forward")]
    NotAfterHead {
        /// The epoch of the commit.
        epoch: Epoch,
        /// The head's epoch.
        head: Epoch,
    },
}

/// Errors of the state machine that are not a message's fault.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A state record failed to decode: the state is damaged (a bug or a corrupted database).
    #[error("corrupt state record {0}")]
    Corrupt(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A block is invalid as a whole (not the next epoch, a wrong messages root, an ineligible
    /// winner, a bad proof, messages its aggregate signature does not cover); nothing was applied.
    #[error("invalid block at epoch {epoch}: {reason}")]
    InvalidBlock {
        /// The block's epoch.
        epoch: Epoch,
        /// Why.
        reason: BlockRejection,
    },
    /// An amount or counter left its range.
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    /// Null rounds were computed on another state than the committed head (the head moved since
    /// [`Chain::run_null_rounds`](crate::Chain::run_null_rounds)); nothing was applied.
    #[error(
        "the null rounds were computed after epoch {base}, but the head is now at epoch {head} (or has another root): compute them again"
    )]
    StaleNullRounds {
        /// The epoch of the state they were computed on.
        base: Epoch,
        /// The committed head's epoch.
        head: Epoch,
    },
    /// Null rounds must follow each other, from the epoch after the state they start from.
    #[error("a null round at epoch {got} where epoch {expected} was due")]
    NullRoundOutOfOrder {
        /// The epoch due.
        expected: Epoch,
        /// The epoch given.
        got: Epoch,
    },
    /// [`Chain::genesis`](crate::Chain::genesis) was given a store that already holds a chain.
    #[error("the store already holds a chain")]
    AlreadyInitialised,
    /// [`Chain::open`](crate::Chain::open) was given a store that holds no chain.
    #[error("the store holds no chain: create one from a genesis")]
    NoChain,
    /// The genesis accounts and miners hold more than the total supply.
    #[error("genesis accounts exceed the total supply")]
    GenesisOverSupply,
    /// The genesis breaks a rule (its miners or their pre-sealed sectors); nothing was written.
    #[error("invalid genesis: {0}")]
    InvalidGenesis(#[from] GenesisError),
    /// An operation the executor runs on its own behalf failed (a bug or a broken state): nothing
    /// was committed.
    #[error("{operation}: {source}")]
    Implicit {
        /// What was running.
        operation: ImplicitOp,
        /// Why it failed.
        #[source]
        source: ActorError,
    },
    /// A partition names a sector that has no record (a broken state).
    #[error("partition lists missing sector {sector} of {miner}")]
    MissingSector {
        /// The miner.
        miner: ActorId,
        /// The sector number.
        sector: SectorNumber,
    },
    /// A power claim would go below zero (a broken state).
    #[error("power claim of {miner} would go negative")]
    NegativePower {
        /// The miner.
        miner: ActorId,
    },
    /// A market payment exceeds the payer's locked escrow (a broken state).
    #[error("escrow of {owner} does not cover a payment of {amount}")]
    EscrowShort {
        /// The payer.
        owner: ActorId,
        /// The payment.
        amount: TokenAmount,
    },
}

/// Why a genesis is refused: what [`ChainError::InvalidGenesis`] carries. `miner` is the position
/// of the miner in [`Genesis::miners`](crate::Genesis::miners).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// A miner's sector size is not one the policy accepts.
    #[error("miner {miner}: sector size {size:?} is not accepted on this network")]
    SectorSize {
        /// The miner's position.
        miner: usize,
        /// Its sector size.
        size: lode_proofs::sector::SectorSize,
    },
    /// Two miners announce the same (non-empty) peer id: the network could not tell them apart.
    #[error("miners {first} and {miner} announce the same peer id")]
    DuplicatePeerId {
        /// The later miner.
        miner: usize,
        /// The miner that announced it first.
        first: usize,
    },
    /// A miner lists one sector number twice (sector numbers are never reused).
    #[error("miner {miner}: sector number {sector} is listed twice")]
    DuplicateSector {
        /// The miner's position.
        miner: usize,
        /// The sector number.
        sector: SectorNumber,
    },
    /// One replica is listed twice (its `comm_r` again), in one miner or in two: its power would
    /// count twice.
    #[error(
        "miner {miner} sector {sector}: its comm_r is already sector {first_sector} of miner {first_miner}"
    )]
    DuplicateReplica {
        /// The later miner's position.
        miner: usize,
        /// The later sector.
        sector: SectorNumber,
        /// The miner that listed the replica first.
        first_miner: usize,
        /// Its sector number there.
        first_sector: SectorNumber,
    },
    /// A sector's expiration is outside what a sector activated at epoch 0 may have.
    #[error(
        "miner {miner} sector {sector}: expiration {expiration} is outside the allowed {min}..={max}"
    )]
    Expiration {
        /// The miner's position.
        miner: usize,
        /// The sector number.
        sector: SectorNumber,
        /// The expiration given.
        expiration: Epoch,
        /// The earliest allowed.
        min: Epoch,
        /// The latest allowed.
        max: Epoch,
    },
    /// A commitment is not a canonical BLS12-381 scalar.
    #[error("miner {miner} sector {sector}: {which} is not a valid commitment")]
    Commitment {
        /// The miner's position.
        miner: usize,
        /// The sector number.
        sector: SectorNumber,
        /// Which commitment.
        which: CommitmentKind,
    },
    /// A verifier or verified client repeats a key, or is the registry's root: entry `index` of
    /// the verifiers followed by the verified clients.
    #[error(
        "verifier/verified client {index} (verifiers first): its key is the root's or is listed before"
    )]
    DataCapHolder {
        /// The position in the verifiers then the verified clients.
        index: usize,
    },
    /// A sector's `comm_d` is not the commitment of an empty sector: genesis sectors hold no deals,
    /// so they are committed capacity, as a pre-commit without deals must be.
    #[error(
        "miner {miner} sector {sector}: comm_d is not an empty sector's (genesis sectors hold no deals)"
    )]
    NotCommittedCapacity {
        /// The miner's position.
        miner: usize,
        /// The sector number.
        sector: SectorNumber,
    },
}

/// A sector commitment named by [`GenesisError::Commitment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitmentKind {
    /// The replica commitment.
    CommR,
    /// The data commitment.
    CommD,
}

impl std::fmt::Display for CommitmentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CommitmentKind::CommR => "comm_r",
            CommitmentKind::CommD => "comm_d",
        })
    }
}

/// Why the blocks of an epoch are rejected: what [`ChainError::InvalidBlock`] carries.
#[derive(Debug, thiserror::Error)]
pub enum BlockRejection {
    /// The epoch is not the one after the head.
    #[error("the next epoch is {expected}, not {got}")]
    NotNextEpoch {
        /// The epoch after the head.
        expected: Epoch,
        /// The epoch given.
        got: Epoch,
    },
    /// A block's header names a messages root its messages do not have.
    #[error("block {index}: messages root does not match its messages")]
    MessagesRoot {
        /// The block's position in the tipset.
        index: usize,
    },
    /// A block fails validation against the previous state.
    #[error("block {index} by {miner}: {fault}")]
    Block {
        /// The block's position in the tipset.
        index: usize,
        /// Its miner.
        miner: ActorId,
        /// What is wrong with it.
        fault: BlockFault,
    },
}

/// What is wrong with one block ([`BlockRejection::Block`]).
#[derive(Debug, thiserror::Error)]
pub enum BlockFault {
    /// Its epoch or beacon is not the tipset's.
    #[error("epoch or beacon differs from the tipset")]
    EpochOrBeacon,
    /// It names another parent state root.
    #[error("wrong parent state root")]
    ParentRoot,
    /// Its miner already has a block at this epoch.
    #[error("two blocks by one miner at one epoch")]
    TwoBlocks,
    /// The header is not signed by the miner's worker.
    #[error("header signature is not the worker's")]
    HeaderSignature,
    /// The miner may not win now (no consensus power, fee debt, a consensus-fault ban).
    #[error("not eligible to win: {0}")]
    Ineligible(String),
    /// The ticket is not the worker's signature of the ticket randomness.
    #[error("ticket is not the worker's signature of the ticket randomness")]
    Ticket,
    /// The election proof is not the worker's signature of the election randomness.
    #[error("election proof is not the worker's signature of the election randomness")]
    ElectionProof,
    /// The header claims another win count than its election proof gives.
    #[error("the election proof gives win count {computed}, the header says {claimed}")]
    WinCount {
        /// What the election proof gives.
        computed: u64,
        /// What the header says.
        claimed: u64,
    },
    /// The Winning PoSt does not verify.
    #[error("Winning PoSt rejected: {0}")]
    WinningPost(#[source] lode_proofs::verifier::VerifyError),
    /// A message appears twice in the block (by id).
    #[error("message {message} repeats message {first}")]
    DuplicateMessage {
        /// The repeat's position in the block.
        message: usize,
        /// The first copy's position.
        first: usize,
    },
    /// The block has messages but its header no aggregate signature.
    #[error("the block has messages but no BLS aggregate")]
    MissingAggregate,
    /// The block has no messages but its header an aggregate signature.
    #[error("the block has a BLS aggregate but no messages")]
    UnexpectedAggregate,
    /// A message's sender has no key in the parent state (an id that is not an account; a BLS
    /// address always names its key): its signature cannot be checked, and a producer must not
    /// include it.
    #[error("message {message}: sender {sender} has no key in the parent state")]
    UnknownSender {
        /// The message's position in the block.
        message: usize,
        /// Its sender.
        sender: ActorId,
    },
    /// The block's messages ask for more gas together than a block may hold.
    #[error(
        "the messages' gas limits sum to {total}, above the block gas limit {limit}: a producer must leave the rest for a later block"
    )]
    GasLimit {
        /// The sum of the messages' gas limits (saturating).
        total: u64,
        /// [`crate::Policy::block_gas_limit`].
        limit: u64,
    },
    /// The header's aggregate is not the aggregate of the messages' signatures by their senders'
    /// keys.
    #[error("the BLS aggregate does not verify for the block's messages")]
    BlsAggregate,
    /// The miner's records could not be read (it is not a miner, or has no such record).
    #[error("{}", .0.message)]
    Miner(ActorError),
    /// The state could not be read.
    #[error(transparent)]
    State(Box<ChainError>),
}

/// An operation the executor runs without a message: what [`ChainError::Implicit`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImplicitOp {
    /// Creating the genesis accounts.
    Genesis,
    /// Paying a block reward.
    BlockReward {
        /// The winner.
        miner: ActorId,
    },
    /// Burning a message's gas fee.
    GasFee {
        /// The sender.
        sender: ActorId,
    },
    /// A miner's deadline cron.
    DeadlineCron {
        /// The miner.
        miner: ActorId,
    },
    /// The market's end of epoch.
    MarketCron,
    /// The compute actor's end of epoch (job settlement).
    ComputeCron,
}

impl std::fmt::Display for ImplicitOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImplicitOp::Genesis => write!(f, "genesis"),
            ImplicitOp::BlockReward { miner } => write!(f, "block reward of {miner}"),
            ImplicitOp::GasFee { sender } => write!(f, "gas fee of {sender}"),
            ImplicitOp::DeadlineCron { miner } => write!(f, "deadline cron of {miner}"),
            ImplicitOp::MarketCron => write!(f, "market cron"),
            ImplicitOp::ComputeCron => write!(f, "compute cron"),
        }
    }
}

impl ChainError {
    /// Wraps a failure of an implicit operation.
    pub fn implicit(operation: ImplicitOp) -> impl FnOnce(ActorError) -> ChainError {
        move |source| ChainError::Implicit { operation, source }
    }
}

impl From<ChainError> for ActorError {
    fn from(e: ChainError) -> Self {
        ActorError::new(ExitCode::IllegalState, e.to_string())
    }
}
