//! Window PoSt, faults and recoveries: keeping power, deadline after deadline.
//!
//! Every tick (once per epoch) the poster reads the miner's deadlines at the head and, for each
//! deadline instance (its index and the epoch its window opens):
//!
//! - **proves** once the challenge epoch is on chain and at least one epoch deep (a shallower one
//!   could still be reorganised away: on the devnet and mainnet rules that is as the window
//!   opens), until the window's *margin* ([`ProvingSettings::margin_epochs`] epochs before its
//!   close): one SNARK per partition that has sectors to prove and is not yet posted, over the
//!   sectors it expects proven (live and not faulty, or faulty but declared recovered); sectors it
//!   cannot read or whose openings fail are *skipped* (they become faulty, without the cost of a
//!   failed proof). A proof that fails (or proves nothing) is tried again at the next tick while
//!   the margin allows; past it the window is given up (reported once in
//!   [`TickReport::late`]), and a failure of one deadline never stops the others' work or the
//!   declarations;
//! - **submits** the proofs once the window is open and before the margin, in as many
//!   `SubmitWindowPost` messages as needed: each carries at most the policy's
//!   `posted_partitions_max` partitions and fits one block — its gas limit, sized for its own
//!   partitions' sectors, within the block gas limit, its size within the message size limit
//!   ([`split`], [`message_fits`]) — so a deadline with many partitions lands over several
//!   blocks of its window, every partition in exactly one message;
//! - **re-submits** the partitions that are still not posted a few epochs after their message
//!   went out, while the window is open (a reorganisation dropped the message, it was never
//!   included, or a send failed part-way): only those, since the chain refuses a partition proven
//!   twice in a window. The margin's epochs are there for this;
//! - **drops** any work whose window has closed, and counts a deadline that closed without its
//!   partitions posted as *missed* (a warning in the log, `lode_provider_window_post_missed`).
//!   Each step checks its own window when it starts, so stale work never delays the current
//!   deadline.
//!
//! Before each upcoming deadline's fault cutoff (every tick from
//! [`ProvingSettings::check_ahead_epochs`] before it) it runs the **proving check**
//! ([`crate::prover::SectorStore::check`]: files readable, a few challenged leaves opening against
//! the sector's `comm_r`) on every sector the deadline must prove, **declares faulty** the sectors
//! that fail it (cheaper than being caught by a missed proof) and **declares recovered** faulty
//! sectors that pass it again (each declaration split, like the proofs, into messages that fit a
//! block), so they regain power with the next proof — except the sectors an
//! operator declared faulty through the API ([`PosterHandle::declare`]), which stay faulty until
//! the operator declares them recovered (or the provider restarts). Each sector is declared faulty
//! at most once per deadline instance, and recovered at most once (a sector declared faulty may
//! be declared recovered in the same instance once the chain shows it faulty, so a repair before
//! the cutoff is proven in that very window); the last check's failures are published with their
//! reasons.
//!
//! After every round (and as a proof starts) the poster publishes a [`ProvingStatus`] that a
//! [`PosterHandle`] reads; the handle also sends the operator's declarations, through the same
//! [`Messenger`] as the poster's own messages so that their nonces never collide.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use lode_chain::Policy;
use lode_chain::actors::miner::{MinerMethod, PostPartition, SectorLocation, WindowPostParams};
use lode_chain::crypto::SecretKey;
use lode_chain::message::{Message, Method, SignedMessage};
use lode_chain::types::{ActorId, Address, Epoch, TokenAmount};
use lode_node::core::{DeadlineView, ProvingView, SectorRef};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::api::NodeApi;
use crate::error::{ProviderError, ProviderResult};
use crate::metrics::ProviderMetrics;
use crate::prover::Prover;
use crate::status::{
    CheckFailureStatus, DeadlineStatus, PostState, ProvingPeriod, ProvingStatus, WindowResult,
};

/// Epochs after submission before a proof still not on chain is sent again.
const RESUBMIT_AFTER: Epoch = 3;

/// The default [`ProvingSettings::margin_epochs`].
pub const DEFAULT_MARGIN_EPOCHS: u64 = 2;

/// Challenge windows before a deadline's fault cutoff from which its sectors are checked, when
/// [`ProvingSettings::check_ahead_epochs`] is not set.
pub const DEFAULT_CHECK_AHEAD_WINDOWS: u64 = 4;

fn default_margin() -> u64 {
    DEFAULT_MARGIN_EPOCHS
}

/// How the poster proves and checks: the `[proving]` table of a provider's `config.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvingSettings {
    /// The safety margin: epochs before a window's close by which its Window PoSt must be
    /// submitted. Proving, retrying a failed proof and the first submission stop then; the last
    /// epochs are left for the message to land (and be sent again). Less than a challenge window.
    #[serde(default = "default_margin")]
    pub margin_epochs: u64,
    /// Epochs before a deadline's fault cutoff from which the poster checks its sectors, every
    /// tick until the cutoff (unset: four challenge windows). A larger value finds damage sooner
    /// and reads more per tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_ahead_epochs: Option<u64>,
}

impl Default for ProvingSettings {
    fn default() -> Self {
        ProvingSettings {
            margin_epochs: DEFAULT_MARGIN_EPOCHS,
            check_ahead_epochs: None,
        }
    }
}

impl ProvingSettings {
    /// Checks the settings against the network's rules.
    ///
    /// # Errors
    /// What is wrong, for the configuration error: a margin of a whole challenge window or more
    /// leaves no epoch to submit in.
    pub fn validate(&self, policy: &Policy) -> Result<(), String> {
        if self.margin_epochs >= policy.wpost_challenge_window {
            return Err(format!(
                "proving.margin_epochs = {} leaves no epoch to submit a Window PoSt in: a challenge window lasts {} epochs on network {}",
                self.margin_epochs, policy.wpost_challenge_window, policy.network
            ));
        }
        Ok(())
    }

    /// Epochs before a fault cutoff from which a deadline's sectors are checked.
    pub fn check_ahead(&self, policy: &Policy) -> u64 {
        self.check_ahead_epochs.unwrap_or_else(|| {
            policy
                .wpost_challenge_window
                .saturating_mul(DEFAULT_CHECK_AHEAD_WINDOWS)
        })
    }
}

/// The proving period holding `next`, from one deadline instance (`index` opening at `open`).
fn proving_period(policy: &Policy, index: u64, open: Epoch, next: Epoch) -> Option<ProvingPeriod> {
    let window = policy.wpost_challenge_window;
    let deadlines = policy.wpost_period_deadlines;
    let period = window.checked_mul(deadlines).filter(|p| *p > 0)?;
    let base = open.checked_sub(index.checked_mul(window)?)?;
    let start = if base <= next {
        base.checked_add(
            next.checked_sub(base)?
                .checked_div(period)?
                .checked_mul(period)?,
        )?
    } else {
        // The period of `base` starts later: the one before it, unless that is before epoch 0
        // (a miner's first period may start after genesis).
        let back = base
            .checked_sub(next)?
            .div_ceil(period)
            .checked_mul(period)?;
        base.checked_sub(back).unwrap_or(base)
    };
    let current = next
        .checked_sub(start)
        .and_then(|d| d.checked_div(window))
        .filter(|i| *i < deadlines);
    let timing = current.and_then(|i| {
        let open = start.checked_add(i.checked_mul(window)?)?;
        Some((open, open.checked_add(window)?))
    });
    Some(ProvingPeriod {
        start,
        deadlines,
        challenge_window: window,
        current_deadline: current,
        current_open: timing.map(|t| t.0),
        current_close: timing.map(|t| t.1),
    })
}

/// One partition's proof in a window: what it posts, the sectors it proves (what the chain
/// faults if it never lands), the partition's live sectors (what its message's gas is sized for)
/// and when it was last sent.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PartitionProof {
    post: PostPartition,
    proof: Vec<u8>,
    proven: BTreeSet<u64>,
    sectors: usize,
    sent: Option<Epoch>,
}

/// A window's proofs, one per partition; they are sent in as many `SubmitWindowPost` messages as
/// the block gas limit and the message size require ([`split`]), each partition tracked on its
/// own.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Proof {
    deadline: u64,
    partitions: Vec<PartitionProof>,
}

/// What a message may be: its gas limit ([`lode_node::wallet::method_gas_limit`], as the
/// [`Messenger`] sizes it) within [`Policy::block_gas_limit`], its signed size within
/// [`Policy::max_message_size`]. Measured on the worst case of the fields the messenger fills in
/// later (the longest nonce and gas limit), so the message it sends is never larger.
pub fn message_fits(
    policy: &Policy,
    worker: ActorId,
    actor: ActorId,
    method: Method,
    proofs: usize,
    sectors: usize,
) -> bool {
    let msg = Message {
        from: Address::Id(worker),
        to: Address::Id(actor),
        nonce: u64::MAX,
        value: TokenAmount::ZERO,
        method,
        gas_limit: u64::MAX,
        gas_price: policy.min_gas_price,
    };
    let gas = lode_node::wallet::method_gas_limit(policy, &msg, proofs as u64, sectors as u64);
    gas <= policy.block_gas_limit && msg.signed_len() as u64 <= policy.max_message_size
}

/// Splits `items` into consecutive groups of at most `max` items, each as large as `fits` allows
/// (`fits` must be monotone: a group that fits still fits without its last item). `Err(i)` when
/// item `i` fits in no group, even alone.
pub fn split<T>(items: &[T], max: usize, fits: impl Fn(&[T]) -> bool) -> Result<Vec<&[T]>, usize> {
    let mut out = Vec::new();
    let mut rest = items;
    let mut done = 0usize;
    while !rest.is_empty() {
        // The largest prefix that fits, by binary search: O(log n) trials per group.
        let (mut lo, mut hi) = (0usize, rest.len().min(max));
        while lo < hi {
            // lo < mid <= hi: no overflow, and `mid - 1` cannot underflow.
            let mid = lo.saturating_add(hi.saturating_sub(lo).div_ceil(2));
            if rest.get(..mid).is_some_and(&fits) {
                lo = mid;
            } else {
                hi = mid.saturating_sub(1);
            }
        }
        if lo == 0 {
            return Err(done);
        }
        let (group, tail) = rest.split_at(lo);
        out.push(group);
        rest = tail;
        done = done.saturating_add(lo);
    }
    Ok(out)
}

/// Groups a deadline's partition proofs into `SubmitWindowPost` messages (see [`split`]): at most
/// [`Policy::posted_partitions_max`] partitions each, each message fitting a block
/// ([`message_fits`], its gas sized for its partitions' sectors). Returns each message's
/// parameters, the positions in `parts` it carries and its sector count.
fn window_post_messages(
    policy: &Policy,
    worker: ActorId,
    actor: ActorId,
    deadline: u64,
    parts: &[&PartitionProof],
) -> ProviderResult<Vec<(WindowPostParams, Vec<u64>, usize)>> {
    let params = |group: &[&PartitionProof]| WindowPostParams {
        deadline,
        partitions: group.iter().map(|p| p.post.clone()).collect(),
        proofs: group.iter().map(|p| p.proof.clone()).collect(),
    };
    let sectors = |group: &[&PartitionProof]| group.iter().map(|p| p.sectors).sum::<usize>();
    let max = usize::try_from(policy.posted_partitions_max).unwrap_or(usize::MAX);
    let groups = split(parts, max, |group| {
        let method = Method::Miner(MinerMethod::SubmitWindowPost(params(group)));
        message_fits(policy, worker, actor, method, group.len(), sectors(group))
    })
    .map_err(|i| {
        let index = parts.get(i).map_or(0, |p| p.post.index);
        ProviderError::Node(format!(
            "deadline {deadline} partition {index}: its Window PoSt alone exceeds the block gas limit {} or the message size limit {}: the network's policy cannot take this partition",
            policy.block_gas_limit, policy.max_message_size
        ))
    })?;
    Ok(groups
        .into_iter()
        .map(|g| {
            (
                params(g),
                g.iter().map(|p| p.post.index).collect(),
                sectors(g),
            )
        })
        .collect())
}

/// Splits declared sectors into messages of `declaration` that each fit a block (see
/// [`split`] and [`message_fits`]): every sector in exactly one message, in order.
pub fn declaration_messages(
    policy: &Policy,
    worker: ActorId,
    actor: ActorId,
    declaration: Declaration,
    locations: &[SectorLocation],
) -> ProviderResult<Vec<Vec<SectorLocation>>> {
    let flat: Vec<(u64, u64, u64)> = locations
        .iter()
        .flat_map(|l| l.sectors.iter().map(|&s| (l.deadline, l.partition, s)))
        .collect();
    let group = |items: &[(u64, u64, u64)]| {
        let mut out: Vec<SectorLocation> = Vec::new();
        for &(deadline, partition, s) in items {
            match out.last_mut() {
                Some(l) if l.deadline == deadline && l.partition == partition => {
                    l.sectors.insert(s);
                }
                _ => out.push(SectorLocation {
                    deadline,
                    partition,
                    sectors: [s].into(),
                }),
            }
        }
        out
    };
    let method = |locs: Vec<SectorLocation>| {
        Method::Miner(match declaration {
            Declaration::Faults => MinerMethod::DeclareFaults(locs),
            Declaration::Recoveries => MinerMethod::DeclareRecoveries(locs),
        })
    };
    let groups = split(&flat, usize::MAX, |items| {
        message_fits(policy, worker, actor, method(group(items)), 0, items.len())
    })
    .map_err(|_| {
        ProviderError::Declaration(
            "a declaration of one sector exceeds the block gas limit or the message size limit: the network's policy cannot take it".into(),
        )
    })?;
    Ok(groups.into_iter().map(group).collect())
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Task {
    Proved(Proof),
    Submitted { proof: Proof },
    Confirmed,
}

/// How a window that closed while its proof was not seen on chain really ended, judged from the
/// deadline after its close (the chain's cron has run): a sector the proof covered that is now
/// faulty means the chain did not take the proof; none means it did (the proof landed in the
/// window's last epochs, or a reorganisation hid it from this poster's last look), or that the
/// chain excused the window (it made no block in it).
fn verdict(proof: &Proof, after: Option<&DeadlineView>) -> WindowResult {
    let faulted = after.is_some_and(|dl| {
        proof.partitions.iter().any(|part| {
            dl.partitions
                .iter()
                .filter(|p| p.index == part.post.index)
                .any(|p| p.faults.iter().any(|n| part.proven.contains(n)))
        })
    });
    if faulted {
        WindowResult::Missed
    } else {
        WindowResult::Confirmed
    }
}

/// What one tick did (for logs and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Deadlines proven this tick.
    pub proved: Vec<u64>,
    /// Deadlines whose proofs were submitted (or re-submitted).
    pub submitted: Vec<u64>,
    /// Deadlines confirmed on chain.
    pub confirmed: Vec<u64>,
    /// Deadlines missed.
    pub missed: Vec<u64>,
    /// Sectors declared faulty.
    pub faults: Vec<u64>,
    /// Sectors declared recovered.
    pub recoveries: Vec<u64>,
    /// Deadlines whose window reached its margin without a proof submitted (given up; reported
    /// once per window).
    pub late: Vec<u64>,
    /// Sectors that failed this tick's proving check.
    pub failed_checks: Vec<u64>,
}

/// Signs messages from the worker to the miner actor and pushes them, one at a time (each takes
/// the next nonce the node reports, counting pending messages).
pub struct Messenger {
    actor: ActorId,
    worker: SecretKey,
    policy: Policy,
    sending: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Messenger")
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

impl Messenger {
    /// A messenger for `actor`, signing with its worker key.
    pub fn new(actor: ActorId, worker: SecretKey, policy: Policy) -> Self {
        Messenger {
            actor,
            worker,
            policy,
            sending: tokio::sync::Mutex::new(()),
        }
    }

    /// Signs and pushes `method` from the worker account `worker` to the miner actor, with a gas
    /// limit for `proofs` SNARKs over `sectors` sectors; returns the message id.
    ///
    /// # Errors
    /// [`ProviderError::Node`] when the node refuses the message or cannot be reached.
    pub async fn send<A: NodeApi>(
        &self,
        api: &A,
        worker: ActorId,
        method: Method,
        proofs: usize,
        sectors: usize,
    ) -> ProviderResult<[u8; 32]> {
        self.send_recorded(api, worker, method, proofs, sectors, |_| Ok(()))
            .await
    }

    /// Like [`Messenger::send`], but hands the signed message to `record` before pushing it, and
    /// pushes only if `record` succeeds: a caller that persists the message there can, after a
    /// crash, push the same message again instead of signing a second one. No other message of
    /// this messenger is signed in between (their nonces never collide).
    ///
    /// # Errors
    /// What `record` returns (nothing is pushed), or [`ProviderError::Node`] when the node refuses
    /// the message or cannot be reached.
    pub async fn send_recorded<A: NodeApi>(
        &self,
        api: &A,
        worker: ActorId,
        method: Method,
        proofs: usize,
        sectors: usize,
        record: impl FnOnce(&SignedMessage) -> ProviderResult<()>,
    ) -> ProviderResult<[u8; 32]> {
        let _one_at_a_time = self.sending.lock().await;
        let from = Address::Id(worker);
        let nonce = api.next_nonce(from).await?;
        let p = &self.policy;
        let mut msg = Message {
            from,
            to: Address::Id(self.actor),
            nonce,
            value: TokenAmount::ZERO,
            method,
            gas_limit: 0,
            gas_price: p.min_gas_price,
        };
        msg.gas_limit = lode_node::wallet::method_gas_limit(p, &msg, proofs as u64, sectors as u64);
        let signed = msg.sign(&p.network, &self.worker);
        record(&signed)?;
        api.push_message(signed).await
    }

    /// Like [`Messenger::send_recorded`], but to another actor than the miner (`PublishDeals` to
    /// the market actor), with `value` sent along, and a gas limit that covers `signatures` more signature checks (a
    /// publication checks one client signature per deal).
    ///
    /// # Errors
    /// As [`Messenger::send_recorded`].
    #[allow(clippy::too_many_arguments)]
    pub async fn send_to_recorded<A: NodeApi>(
        &self,
        api: &A,
        worker: ActorId,
        to: ActorId,
        value: TokenAmount,
        method: Method,
        signatures: usize,
        record: impl FnOnce(&SignedMessage) -> ProviderResult<()>,
    ) -> ProviderResult<[u8; 32]> {
        let _one_at_a_time = self.sending.lock().await;
        let from = Address::Id(worker);
        let nonce = api.next_nonce(from).await?;
        let p = &self.policy;
        let mut msg = Message {
            from,
            to: Address::Id(to),
            nonce,
            value,
            method,
            gas_limit: 0,
            gas_price: p.min_gas_price,
        };
        let n = u64::try_from(signatures).unwrap_or(u64::MAX);
        msg.gas_limit = lode_node::wallet::method_gas_limit(p, &msg, 0, n)
            .saturating_add(p.gas_per_signature.saturating_mul(n).saturating_mul(2));
        let signed = msg.sign(&p.network, &self.worker);
        record(&signed)?;
        api.push_message(signed).await
    }

    /// Pushes a message signed earlier (one [`Messenger::send_recorded`] recorded) again, under
    /// the same lock as new messages.
    ///
    /// # Errors
    /// [`ProviderError::Node`] when the node refuses it (already pending or executed, or its
    /// nonce is taken) or cannot be reached.
    pub async fn push_again<A: NodeApi>(
        &self,
        api: &A,
        signed: SignedMessage,
    ) -> ProviderResult<[u8; 32]> {
        let _one_at_a_time = self.sending.lock().await;
        api.push_message(signed).await
    }
}

/// Sectors the operator declared faulty through the API (see the module docs).
type Holds = Arc<Mutex<BTreeSet<u64>>>;

fn held(holds: &Holds) -> BTreeSet<u64> {
    holds.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// What an operator declares through the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Declaration {
    /// Sectors are faulty (they lose power until declared recovered and proven).
    Faults,
    /// Faulty sectors are back (they regain power with the next proof of their deadline).
    Recoveries,
}

/// Sectors of one partition, in a declaration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredLocation {
    /// The deadline.
    pub deadline: u64,
    /// The partition in it.
    pub partition: u64,
    /// The sectors.
    pub sectors: Vec<u64>,
}

/// A declaration sent: `provider_declareFaults`' and `provider_declareRecoveries`' result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declared {
    /// What was declared.
    pub declaration: Declaration,
    /// The message's id (it lands in a block like any other).
    #[serde(with = "lode_node::rpc::types::serde_hex::hash")]
    pub message: [u8; 32],
    /// Where the sectors are.
    pub locations: Vec<DeclaredLocation>,
}

/// Where `sectors` are in `view`, checked the way the chain checks a declaration sent at the
/// next epoch: each must be live in a deadline whose fault cutoff is still ahead, and a recovered
/// sector must be faulty.
///
/// # Errors
/// [`ProviderError::Declaration`] naming the first sector that cannot be declared, and why.
pub fn plan_declaration(
    view: &ProvingView,
    declaration: Declaration,
    sectors: &[u64],
) -> ProviderResult<Vec<SectorLocation>> {
    let refuse = |why: String| Err(ProviderError::Declaration(why));
    if sectors.is_empty() {
        return refuse("no sectors given".into());
    }
    let next = view.head_epoch.saturating_add(1);
    let mut plan: BTreeMap<(u64, u64), BTreeSet<u64>> = BTreeMap::new();
    for &n in sectors {
        let found = view.deadlines.iter().find_map(|dl| {
            dl.partitions
                .iter()
                .find(|p| p.sectors.iter().any(|s| s.sector_number == n))
                .map(|p| (dl, p))
        });
        let Some((dl, p)) = found else {
            return refuse(format!(
                "sector {n} is not live in any of this miner's deadlines"
            ));
        };
        if next >= dl.fault_cutoff {
            return refuse(format!(
                "too late to declare sector {n}: deadline {}'s fault cutoff is epoch {} (its window opens at {}); declare it after epoch {}, for the next window",
                dl.index, dl.fault_cutoff, dl.open, dl.close
            ));
        }
        if declaration == Declaration::Recoveries && !p.faults.contains(&n) {
            return refuse(format!("sector {n} is not faulty"));
        }
        plan.entry((dl.index, p.index)).or_default().insert(n);
    }
    Ok(plan
        .into_iter()
        .map(|((deadline, partition), sectors)| SectorLocation {
            deadline,
            partition,
            sectors,
        })
        .collect())
}

/// The API's handle on a [`Poster`]: its latest [`ProvingStatus`], and declarations sent on the
/// operator's behalf. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PosterHandle {
    actor: ActorId,
    status: watch::Receiver<ProvingStatus>,
    messenger: Arc<Messenger>,
    holds: Holds,
    metrics: ProviderMetrics,
}

impl PosterHandle {
    /// Deadlines per proving period on the poster's network.
    pub fn period_deadlines(&self) -> u64 {
        self.messenger.policy.wpost_period_deadlines
    }

    /// The poster's latest snapshot.
    pub fn status(&self) -> ProvingStatus {
        let mut s = self.status.borrow().clone();
        s.held_faults = held(&self.holds).into_iter().collect();
        s
    }

    /// Declares `sectors` faulty or recovered: locates them in the miner's deadlines at the
    /// node's head, checks them as the chain will ([`plan_declaration`]), and sends the message.
    /// Sectors declared faulty are held faulty (the poster does not declare them recovered);
    /// declaring them recovered releases them.
    ///
    /// # Errors
    /// [`ProviderError::Declaration`] when a sector cannot be declared (nothing is sent);
    /// [`ProviderError::Node`] when the node fails.
    pub async fn declare<A: NodeApi>(
        &self,
        api: &A,
        declaration: Declaration,
        sectors: &[u64],
    ) -> ProviderResult<Declared> {
        let view = api.proving_view(self.actor).await?;
        let locations = plan_declaration(&view, declaration, sectors)?;
        let count: usize = locations.iter().map(|l| l.sectors.len()).sum();
        let method = match declaration {
            Declaration::Faults => MinerMethod::DeclareFaults(locations.clone()),
            Declaration::Recoveries => MinerMethod::DeclareRecoveries(locations.clone()),
        };
        let method = Method::Miner(method);
        if !message_fits(
            &self.messenger.policy,
            view.worker,
            self.actor,
            method.clone(),
            0,
            count,
        ) {
            return Err(ProviderError::Declaration(format!(
                "{count} sectors are too many for one message (the block gas limit or the message size limit): declare them in smaller groups"
            )));
        }
        let message = self
            .messenger
            .send(api, view.worker, method, 0, count)
            .await?;
        let numbers = locations.iter().flat_map(|l| l.sectors.iter().copied());
        {
            let mut holds = self.holds.lock().unwrap_or_else(PoisonError::into_inner);
            match declaration {
                Declaration::Faults => holds.extend(numbers),
                Declaration::Recoveries => numbers.for_each(|n| {
                    holds.remove(&n);
                }),
            }
        }
        match declaration {
            Declaration::Faults => self.metrics.faults_declared.inc_by(count as u64),
            Declaration::Recoveries => self.metrics.recoveries_declared.inc_by(count as u64),
        };
        tracing::info!(?declaration, sectors = ?sectors, message = %hex::encode(message), "declaration sent for the operator");
        Ok(Declared {
            declaration,
            message,
            locations: locations
                .into_iter()
                .map(|l| DeclaredLocation {
                    deadline: l.deadline,
                    partition: l.partition,
                    sectors: l.sectors.into_iter().collect(),
                })
                .collect(),
        })
    }
}

/// The most sectors one `provider_extendSectors` names.
pub const MAX_EXTEND: usize = 256;

/// One sector of an extension: `provider_extendSectors`' result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendedSector {
    /// Sector number.
    pub sector_number: u64,
    /// Its expiration before.
    pub old_expiration: Epoch,
}

/// An extension executed on chain: `provider_extendSectors`' result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extended {
    /// The message's id.
    #[serde(with = "lode_node::rpc::types::serde_hex::hash")]
    pub message: [u8; 32],
    /// The epoch of the tipset that executed it.
    pub executed_at: Epoch,
    /// The sectors' new expiration.
    pub new_expiration: Epoch,
    /// The sectors, with their old expirations.
    pub sectors: Vec<ExtendedSector>,
}

/// Where `sectors` are and what they expire at, checked the way the chain checks an extension
/// to `new_expiration` landing at `landing`: each live and active (the chain extends no faulty
/// or unproven sector), expiring before `new_expiration`, which is at most
/// `max_sector_expiration_extension` epochs away and keeps each sector's lifetime within
/// `max_sector_lifetime`.
///
/// # Errors
/// [`ProviderError::Refused`] naming the first sector (or the bound) that fails, and why.
pub fn plan_extension(
    policy: &Policy,
    live: &[lode_node::rpc::types::SectorInfo],
    sectors: &[u64],
    new_expiration: Epoch,
    landing: Epoch,
) -> ProviderResult<(Vec<SectorLocation>, Vec<ExtendedSector>)> {
    let refuse = |why: String| Err(ProviderError::Refused(why));
    let furthest = landing.saturating_add(policy.max_sector_expiration_extension);
    if new_expiration > furthest {
        return refuse(format!(
            "expiration {new_expiration} is more than {} epochs after epoch {landing}: give at most {furthest}",
            policy.max_sector_expiration_extension
        ));
    }
    let mut plan: BTreeMap<(u64, u64), BTreeSet<u64>> = BTreeMap::new();
    let mut out = Vec::new();
    for &n in sectors {
        let Some(s) = live.iter().find(|s| s.sector_number == n) else {
            return refuse(format!("sector {n} is not live on chain"));
        };
        if s.status != "active" {
            return refuse(format!(
                "sector {n} is {}: only active sectors can be extended (recover it first)",
                s.status
            ));
        }
        if new_expiration <= s.expiration {
            return refuse(format!(
                "sector {n} already expires at epoch {}: give an expiration after it",
                s.expiration
            ));
        }
        if new_expiration.saturating_sub(s.activation) > policy.max_sector_lifetime {
            return refuse(format!(
                "sector {n} was activated at epoch {}: expiration {new_expiration} would make it live more than {} epochs (give at most {})",
                s.activation,
                policy.max_sector_lifetime,
                s.activation.saturating_add(policy.max_sector_lifetime)
            ));
        }
        plan.entry((s.deadline, s.partition)).or_default().insert(n);
        out.push(ExtendedSector {
            sector_number: n,
            old_expiration: s.expiration,
        });
    }
    let locations = plan
        .into_iter()
        .map(|((deadline, partition), sectors)| SectorLocation {
            deadline,
            partition,
            sectors,
        })
        .collect();
    Ok((locations, out))
}

/// How many epochs [`PosterHandle::extend`] waits for its message to be executed.
pub const EXTEND_WAIT_EPOCHS: u64 = 20;

impl PosterHandle {
    /// Extends `sectors` to `new_expiration`: checks them against the chain ([`plan_extension`]),
    /// sends `ExtendSectorExpiration` and waits (at most [`EXTEND_WAIT_EPOCHS`] epochs) for the
    /// chain to execute it.
    ///
    /// # Errors
    /// [`ProviderError::Refused`] when a sector cannot be extended (nothing is sent), when the
    /// chain refused the message (its error), or when it was not executed in time (its id, to
    /// look up later); [`ProviderError::Node`] when the node fails.
    pub async fn extend<A: NodeApi>(
        &self,
        api: &A,
        sectors: &[u64],
        new_expiration: Epoch,
    ) -> ProviderResult<Extended> {
        let head = api.chain_head().await?.epoch;
        let live = api.miner_sectors(self.actor).await?;
        let policy = &self.messenger.policy;
        let (locations, extended) = plan_extension(
            policy,
            &live,
            sectors,
            new_expiration,
            head.saturating_add(1),
        )?;
        let view = api.proving_view(self.actor).await?;
        let method = MinerMethod::ExtendSectorExpiration {
            sectors: locations,
            new_expiration,
        };
        let message = self
            .messenger
            .send(api, view.worker, Method::Miner(method), 0, sectors.len())
            .await?;
        tracing::info!(sectors = ?sectors, new_expiration, message = %hex::encode(message), "extension sent for the operator");
        let pause = std::time::Duration::from_millis(
            policy.epoch_duration_seconds.max(1).saturating_mul(250),
        );
        let deadline = head.saturating_add(EXTEND_WAIT_EPOCHS);
        // A stalled chain does not hold the call forever: as long in seconds as the epochs.
        let started = Instant::now();
        let give_up = std::time::Duration::from_secs(
            policy
                .epoch_duration_seconds
                .max(1)
                .saturating_mul(EXTEND_WAIT_EPOCHS.saturating_add(1)),
        );
        loop {
            if let Some(found) = api.search_message(message).await? {
                if !found.receipt.ok() {
                    return Err(ProviderError::Refused(format!(
                        "the chain refused extension message {} at epoch {}: {} ({})",
                        hex::encode(message),
                        found.epoch,
                        found.receipt.exit,
                        found.receipt.error
                    )));
                }
                return Ok(Extended {
                    message,
                    executed_at: found.epoch,
                    new_expiration,
                    sectors: extended,
                });
            }
            if api.chain_head().await?.epoch > deadline || started.elapsed() >= give_up {
                return Err(ProviderError::Refused(format!(
                    "extension message {} was not executed within {EXTEND_WAIT_EPOCHS} epochs: look it up later (lode sectors status)",
                    hex::encode(message)
                )));
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// The Window PoSt half of a miner.
pub struct Poster {
    actor: ActorId,
    messenger: Arc<Messenger>,
    prover: Arc<Prover>,
    metrics: ProviderMetrics,
    tasks: BTreeMap<(u64, Epoch), Task>,
    /// Declarations sent, per deadline instance: (index, open, sector, whether a recovery).
    declared: BTreeSet<(u64, Epoch, u64, bool)>,
    holds: Holds,
    settings: ProvingSettings,
    status: watch::Sender<ProvingStatus>,
    /// Windows given up at their margin (reported once).
    late: BTreeSet<(u64, Epoch)>,
    /// Per sector, its last proving check's failure (removed when it passes or leaves the
    /// deadlines).
    check_failures: BTreeMap<u64, CheckFailureStatus>,
    /// The deadline being proven now.
    proving: Option<(u64, Epoch)>,
    /// The last view of the deadlines.
    view: Option<ProvingView>,
    /// Unix time of that view.
    viewed_at: Option<u64>,
    /// Per deadline: the last submission's epoch, how its previous window ended, windows missed.
    last_submitted: BTreeMap<u64, Epoch>,
    last_result: BTreeMap<u64, WindowResult>,
    missed: BTreeMap<u64, u64>,
    /// The task scheduler each Window PoSt registers with (time-sensitive), when there is one.
    scheduler: Option<crate::tasks::Scheduler>,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster")
            .field("actor", &self.actor)
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

/// Sectors a partition must prove: live and not faulty, or faulty but declared recovered.
fn expected(p: &lode_node::core::PartitionView) -> Vec<SectorRef> {
    p.sectors
        .iter()
        .filter(|s| !p.faults.contains(&s.sector_number) || p.recoveries.contains(&s.sector_number))
        .copied()
        .collect()
}

/// The partitions of `proof` to send at `now`: not posted on chain (`pending`), and never sent or
/// last sent at least [`RESUBMIT_AFTER`] epochs ago.
fn due(proof: &Proof, pending: &[u64], now: Epoch) -> Vec<u64> {
    proof
        .partitions
        .iter()
        .filter(|p| pending.contains(&p.post.index))
        .filter(|p| {
            p.sent
                .is_none_or(|at| now >= at.saturating_add(RESUBMIT_AFTER))
        })
        .map(|p| p.post.index)
        .collect()
}

/// Partitions of `dl` with sectors to prove that are not posted yet.
fn pending_partitions(dl: &DeadlineView) -> Vec<u64> {
    dl.partitions
        .iter()
        .filter(|p| !dl.posted.contains(&p.index) && !expected(p).is_empty())
        .map(|p| p.index)
        .collect()
}

impl Poster {
    /// A poster for `actor`, signing with its worker key.
    pub fn new(
        actor: ActorId,
        worker: SecretKey,
        policy: Policy,
        prover: Arc<Prover>,
        metrics: ProviderMetrics,
    ) -> Self {
        let (status, _) = watch::channel(ProvingStatus {
            actor,
            ..ProvingStatus::default()
        });
        Poster {
            actor,
            messenger: Arc::new(Messenger::new(actor, worker, policy)),
            prover,
            metrics,
            tasks: BTreeMap::new(),
            declared: BTreeSet::new(),
            holds: Holds::default(),
            settings: ProvingSettings::default(),
            status,
            late: BTreeSet::new(),
            check_failures: BTreeMap::new(),
            proving: None,
            view: None,
            viewed_at: None,
            last_submitted: BTreeMap::new(),
            last_result: BTreeMap::new(),
            missed: BTreeMap::new(),
            scheduler: None,
        }
    }

    /// The poster with `settings` instead of the defaults.
    pub fn with_settings(mut self, settings: ProvingSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The same poster, its Window PoSts run as time-sensitive tasks of `tasks` (so a running
    /// PoSt holds its resources and sealing admission yields to a waiting one).
    pub fn with_tasks(mut self, tasks: crate::tasks::Scheduler) -> Self {
        self.scheduler = Some(tasks);
        self
    }

    /// The handle the provider's API reads this poster's status through and sends the
    /// operator's declarations with.
    pub fn handle(&self) -> PosterHandle {
        PosterHandle {
            actor: self.actor,
            status: self.status.subscribe(),
            messenger: self.messenger.clone(),
            holds: self.holds.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// The messenger the poster signs with: every other sender of the worker's messages (the
    /// sealing pipeline) must share it, so that their nonces never collide.
    pub fn messenger(&self) -> Arc<Messenger> {
        self.messenger.clone()
    }

    /// One round (see the module docs), then the status is published, whether the round
    /// succeeded or not.
    pub async fn tick<A: NodeApi>(&mut self, api: &A) -> ProviderResult<TickReport> {
        let result = self.round(api).await;
        self.proving = None;
        self.publish(result.as_ref().err().map(ToString::to_string));
        result
    }

    /// Publishes the status of every deadline of the last view.
    fn publish(&self, error: Option<String>) {
        let view = self.view.as_ref();
        let next = view.map_or(0, |v| v.head_epoch.saturating_add(1));
        let deadlines = view
            .map(|v| v.deadlines.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|dl| self.deadline_status(dl, next))
            .collect();
        let period = view.and_then(|v| {
            v.deadlines
                .first()
                .and_then(|dl| proving_period(&self.messenger.policy, dl.index, dl.open, next))
        });
        let status = ProvingStatus {
            actor: self.actor,
            head_epoch: view.map(|v| v.head_epoch),
            updated_at: self.viewed_at,
            deadlines,
            missed: self.missed.values().fold(0u64, |a, b| a.saturating_add(*b)),
            held_faults: held(&self.holds).into_iter().collect(),
            last_error: error,
            margin_epochs: self.settings.margin_epochs,
            period,
            check_failures: self.check_failures.values().cloned().collect(),
        };
        self.status.send_replace(status);
    }

    fn deadline_status(&self, dl: &DeadlineView, next: Epoch) -> DeadlineStatus {
        let key = (dl.index, dl.open);
        let current = dl.open <= next && next < dl.close;
        let state = if self.proving == Some(key) {
            PostState::Proving
        } else {
            match self.tasks.get(&key) {
                Some(Task::Proved(_)) => PostState::Proved,
                Some(Task::Submitted { .. }) => PostState::Submitted,
                Some(Task::Confirmed) => PostState::Confirmed,
                // Posted before this poster looked (a restart), or by an earlier submission.
                None if current && !dl.posted.is_empty() && pending_partitions(dl).is_empty() => {
                    PostState::Confirmed
                }
                None => PostState::Waiting,
            }
        };
        let count = |f: fn(&lode_node::core::PartitionView) -> usize| -> u64 {
            dl.partitions.iter().map(|p| f(p) as u64).sum()
        };
        DeadlineStatus {
            index: dl.index,
            open: dl.open,
            close: dl.close,
            challenge: dl.challenge,
            fault_cutoff: dl.fault_cutoff,
            submit_by: dl.close.saturating_sub(self.settings.margin_epochs),
            current,
            partitions: dl.partitions.len() as u64,
            sectors: count(|p| p.sectors.len()),
            faults: count(|p| p.faults.len()),
            recoveries: count(|p| p.recoveries.len()),
            posted: dl.posted.len() as u64,
            state,
            last_submitted: self.last_submitted.get(&dl.index).copied(),
            last_result: self.last_result.get(&dl.index).copied(),
            missed: self.missed.get(&dl.index).copied().unwrap_or(0),
        }
    }

    async fn round<A: NodeApi>(&mut self, api: &A) -> ProviderResult<TickReport> {
        let view = api.proving_view(self.actor).await?;
        self.view = Some(view.clone());
        self.viewed_at = Some(lode_node::genesis::unix_now());
        let mut report = TickReport::default();
        let now = view.head_epoch;
        let next = now.saturating_add(1);
        self.retire(&view, &mut report);
        // A deadline's failure is kept for the end: the other deadlines and the declarations
        // still run.
        let mut failed: Option<ProviderError> = None;
        for dl in &view.deadlines {
            let key = (dl.index, dl.open);
            let pending = pending_partitions(dl);
            if pending.is_empty() {
                if matches!(self.tasks.get(&key), Some(Task::Submitted { .. })) {
                    self.tasks.insert(key, Task::Confirmed);
                    self.metrics.window_post_proven.inc();
                    let landed = now.saturating_sub(dl.open);
                    self.metrics
                        .window_post_landed_epochs
                        .observe(landed as f64);
                    report.confirmed.push(dl.index);
                    tracing::info!(
                        deadline = dl.index,
                        open = dl.open,
                        landed_after_epochs = landed,
                        "Window PoSt on chain"
                    );
                }
                continue;
            }
            if next >= dl.close {
                continue;
            }
            // New work (a proof, a retry, a first submission) only before the margin.
            let in_margin = next.saturating_add(self.settings.margin_epochs) < dl.close;
            match self.tasks.get(&key).cloned() {
                None | Some(Task::Confirmed) => {
                    let Some(randomness) = dl.randomness else {
                        continue;
                    };
                    if now < dl.challenge.saturating_add(1) {
                        continue;
                    }
                    if !in_margin {
                        self.give_up(dl, "no Window PoSt could be made", &mut report);
                        continue;
                    }
                    self.proving = Some(key);
                    self.publish(None);
                    let proved = self.prove(dl, &pending, randomness).await;
                    self.proving = None;
                    let proof = match proved {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(deadline = dl.index, error = %e, "Window PoSt failed: trying again next epoch while the margin allows");
                            failed.get_or_insert(e);
                            continue;
                        }
                    };
                    report.proved.push(dl.index);
                    if proof.partitions.is_empty() {
                        // Nothing provable now: tried again next tick, while the margin allows.
                        continue;
                    }
                    self.tasks.insert(key, Task::Proved(proof));
                    if next >= dl.open
                        && let Err(e) = self
                            .submit(api, key, now, &view, &pending, &mut report)
                            .await
                    {
                        failed.get_or_insert(e);
                    }
                }
                Some(Task::Proved(_)) => {
                    if !in_margin {
                        self.give_up(dl, "the Window PoSt was not submitted", &mut report);
                    } else if next >= dl.open
                        && let Err(e) = self
                            .submit(api, key, now, &view, &pending, &mut report)
                            .await
                    {
                        failed.get_or_insert(e);
                    }
                }
                Some(Task::Submitted { proof, .. }) => {
                    // Only the partitions not on chain whose last send is old (or that were never
                    // sent: a send that failed part-way) go again.
                    if !due(&proof, &pending, now).is_empty() {
                        tracing::warn!(
                            deadline = dl.index,
                            "Window PoSt partitions not on chain {RESUBMIT_AFTER} epochs after submission: sending them again"
                        );
                        if let Err(e) = self
                            .submit(api, key, now, &view, &pending, &mut report)
                            .await
                        {
                            failed.get_or_insert(e);
                        }
                    }
                }
            }
        }
        if let Err(e) = self.declare(api, &view, &mut report).await {
            failed.get_or_insert(e);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// A window reached its margin without a submitted proof: warned and reported once.
    fn give_up(&mut self, dl: &DeadlineView, why: &str, report: &mut TickReport) {
        if self.late.insert((dl.index, dl.open)) {
            tracing::warn!(
                deadline = dl.index,
                open = dl.open,
                close = dl.close,
                margin = self.settings.margin_epochs,
                "{why} before the window's margin: it will be missed"
            );
            report.late.push(dl.index);
        }
    }

    /// Drops the tasks of windows that have closed. One confirmed on chain ended well; one
    /// submitted but not seen on chain is judged by what the chain did at the close
    /// ([`verdict`]): missed only if the chain faulted the sectors it proves. One never submitted
    /// is missed likewise, or was excused.
    fn retire(&mut self, view: &ProvingView, report: &mut TickReport) {
        let next = view.head_epoch.saturating_add(1);
        let current: BTreeMap<u64, &DeadlineView> =
            view.deadlines.iter().map(|d| (d.index, d)).collect();
        let keys: Vec<(u64, Epoch)> = self.tasks.keys().copied().collect();
        for key in keys {
            let (index, open) = key;
            let closed = match current.get(&index) {
                Some(d) => d.open != open || next >= d.close,
                None => true,
            };
            if closed {
                let result = match self.tasks.get(&key) {
                    Some(Task::Confirmed) => Some(WindowResult::Confirmed),
                    Some(Task::Submitted { proof, .. }) => {
                        let result = verdict(proof, current.get(&index).copied());
                        if result == WindowResult::Confirmed {
                            self.metrics.window_post_proven.inc();
                            report.confirmed.push(index);
                            tracing::info!(
                                deadline = index,
                                open,
                                "Window PoSt taken by the chain (seen after its window closed)"
                            );
                        }
                        Some(result)
                    }
                    // Never sent: missed if the chain faulted the sectors, else excused.
                    Some(Task::Proved(proof)) => Some(verdict(proof, current.get(&index).copied()))
                        .filter(|r| *r == WindowResult::Missed),
                    None => None,
                };
                if let Some(result) = result {
                    self.last_result.insert(index, result);
                }
                if result == Some(WindowResult::Missed) {
                    let missed = self.missed.entry(index).or_default();
                    *missed = missed.saturating_add(1);
                    self.metrics.window_post_missed.inc();
                    report.missed.push(index);
                    tracing::warn!(
                        deadline = index,
                        open,
                        "Window PoSt missed: the deadline closed without this miner's proof on chain"
                    );
                }
                self.tasks.remove(&key);
            }
        }
        self.declared
            .retain(|(_, open, _, _)| current.values().any(|d| d.open == *open) || *open > next);
        self.late
            .retain(|(index, open)| current.get(index).is_some_and(|d| d.open == *open));
    }

    async fn prove(
        &self,
        dl: &DeadlineView,
        pending: &[u64],
        randomness: [u8; 32],
    ) -> ProviderResult<Proof> {
        let work: Vec<(u64, usize, Vec<SectorRef>)> = dl
            .partitions
            .iter()
            .filter(|p| pending.contains(&p.index))
            .map(|p| (p.index, p.sectors.len(), expected(p)))
            .collect();
        let prover = self.prover.clone();
        let metrics = self.metrics.clone();
        let deadline = dl.index;
        // Registered as a time-sensitive task: sealing admission yields to it. A scheduler
        // that cannot record it does not hold the proof back.
        let slot = match &self.scheduler {
            Some(t) => match t.time_sensitive(crate::tasks::TaskKind::WindowPost).await {
                Ok(slot) => Some(slot),
                Err(e) => {
                    tracing::warn!(deadline, error = %e, "cannot register the Window PoSt task");
                    None
                }
            },
            None => None,
        };
        let proved = tokio::task::spawn_blocking(move || {
            let mut proof = Proof {
                deadline,
                partitions: Vec::new(),
            };
            for (index, live, sectors) in work {
                let started = Instant::now();
                let p = prover.window_post(randomness, &sectors)?;
                metrics
                    .window_post_seconds
                    .observe(started.elapsed().as_secs_f64());
                if p.proof.is_empty() {
                    tracing::warn!(
                        deadline,
                        partition = index,
                        "no sector of the partition could be proven"
                    );
                    continue;
                }
                let skipped: BTreeSet<u64> = p.skipped.into_iter().collect();
                let proven = sectors
                    .iter()
                    .map(|s| s.sector_number)
                    .filter(|n| !skipped.contains(n))
                    .collect();
                proof.partitions.push(PartitionProof {
                    post: PostPartition { index, skipped },
                    proof: p.proof,
                    proven,
                    sectors: live,
                    sent: None,
                });
            }
            Ok::<_, ProviderError>(proof)
        })
        .await
        .map_err(|_| ProviderError::Stopped)?;
        if let Some(slot) = slot
            && let Err(e) = slot.finish(proved.as_ref().err().map(ToString::to_string))
        {
            tracing::warn!(deadline, error = %e, "cannot record the Window PoSt task");
        }
        proved
    }

    /// Sends the partitions of the window's proof that are due ([`due`]: not on chain, and not
    /// sent in the last [`RESUBMIT_AFTER`] epochs) in as many messages as fit a block each
    /// ([`window_post_messages`]), marking each partition sent as its message goes; a send
    /// that fails leaves the rest for the next tick.
    async fn submit<A: NodeApi>(
        &mut self,
        api: &A,
        key: (u64, Epoch),
        now: Epoch,
        view: &ProvingView,
        pending: &[u64],
        report: &mut TickReport,
    ) -> ProviderResult<()> {
        let mut proof = match self.tasks.get(&key) {
            Some(Task::Proved(p)) | Some(Task::Submitted { proof: p, .. }) => p.clone(),
            _ => return Ok(()),
        };
        let todo = due(&proof, pending, now);
        let messages = {
            let parts: Vec<&PartitionProof> = proof
                .partitions
                .iter()
                .filter(|p| todo.contains(&p.post.index))
                .collect();
            window_post_messages(
                &self.messenger.policy,
                view.worker,
                self.actor,
                proof.deadline,
                &parts,
            )?
        };
        let mut result = Ok(());
        let mut sent_any = false;
        for (params, indices, sectors) in messages {
            let proofs = params.proofs.len();
            let sent = self
                .messenger
                .send(
                    api,
                    view.worker,
                    Method::Miner(MinerMethod::SubmitWindowPost(params)),
                    proofs,
                    sectors,
                )
                .await;
            if let Err(e) = sent {
                result = Err(e);
                break;
            }
            sent_any = true;
            for p in proof
                .partitions
                .iter_mut()
                .filter(|p| indices.contains(&p.post.index))
            {
                p.sent = Some(now);
            }
            self.metrics.window_post_submitted.inc();
            tracing::info!(
                deadline = key.0,
                partitions = ?indices,
                "Window PoSt submitted"
            );
        }
        if sent_any {
            self.last_submitted.insert(key.0, now);
            report.submitted.push(key.0);
            self.tasks.insert(key, Task::Submitted { proof });
        }
        result
    }

    /// Checks the sectors of the deadlines whose fault cutoff is near and still ahead, declares
    /// those that fail faulty and faulty ones that pass recovered (see the module docs).
    async fn declare<A: NodeApi>(
        &mut self,
        api: &A,
        view: &ProvingView,
        report: &mut TickReport,
    ) -> ProviderResult<()> {
        let next = view.head_epoch.saturating_add(1);
        let ahead = self.settings.check_ahead(&self.messenger.policy);
        let holds = held(&self.holds);
        // The sectors to check: per deadline near its cutoff, those live and not faulty, or
        // faulty, not recovering and not held by the operator — in either case unless this
        // instance has had the declaration a failure or a pass would send.
        let mut todo: Vec<(u64, Epoch, u64, SectorRef, bool)> = Vec::new();
        for dl in &view.deadlines {
            if next >= dl.fault_cutoff || dl.fault_cutoff.saturating_sub(next) > ahead {
                continue;
            }
            for p in &dl.partitions {
                for s in &p.sectors {
                    let n = s.sector_number;
                    let faulty = p.faults.contains(&n);
                    if self.declared.contains(&(dl.index, dl.open, n, faulty))
                        || (faulty && (p.recoveries.contains(&n) || holds.contains(&n)))
                    {
                        continue;
                    }
                    todo.push((dl.index, dl.open, p.index, *s, faulty));
                }
            }
        }
        let store = self.prover.store().clone();
        let refs: Vec<SectorRef> = todo.iter().map(|t| t.3).collect();
        let epoch = view.head_epoch;
        let (in_store, results) =
            tokio::task::spawn_blocking(move || (store.scan().len(), store.check(&refs, epoch)))
                .await
                .map_err(|_| ProviderError::Stopped)?;
        self.metrics
            .sectors
            .set(i64::try_from(in_store).unwrap_or(i64::MAX));
        let mut plan: BTreeMap<(u64, u64), (BTreeSet<u64>, BTreeSet<u64>)> = BTreeMap::new();
        self.check_failures.retain(|n, _| {
            view.deadlines.iter().any(|dl| {
                dl.partitions
                    .iter()
                    .any(|p| p.sectors.iter().any(|s| s.sector_number == *n))
            })
        });
        for ((deadline, open, partition, s, faulty), (_, result)) in todo.iter().zip(results) {
            let n = s.sector_number;
            let entry = plan.entry((*deadline, *partition)).or_default();
            match result {
                Err(why) => {
                    report.failed_checks.push(n);
                    self.check_failures.insert(
                        n,
                        CheckFailureStatus {
                            sector_number: n,
                            deadline: *deadline,
                            partition: *partition,
                            epoch,
                            reason: why.to_string(),
                        },
                    );
                    if !faulty {
                        tracing::warn!(sector = n, deadline, reason = %why, "sector failed its proving check");
                        self.declared.insert((*deadline, *open, n, false));
                        entry.0.insert(n);
                    }
                }
                Ok(()) if *faulty => {
                    self.check_failures.remove(&n);
                    self.declared.insert((*deadline, *open, n, true));
                    entry.1.insert(n);
                }
                Ok(()) => {
                    self.check_failures.remove(&n);
                }
            }
        }
        let mut faults = Vec::new();
        let mut recoveries = Vec::new();
        for ((deadline, partition), (bad, back)) in plan {
            if !bad.is_empty() {
                report.faults.extend(bad.iter().copied());
                faults.push(SectorLocation {
                    deadline,
                    partition,
                    sectors: bad,
                });
            }
            if !back.is_empty() {
                report.recoveries.extend(back.iter().copied());
                recoveries.push(SectorLocation {
                    deadline,
                    partition,
                    sectors: back,
                });
            }
        }
        if !faults.is_empty() {
            tracing::warn!(sectors = ?report.faults, "declaring sectors that failed their proving check faulty");
        }
        if !recoveries.is_empty() {
            tracing::info!(sectors = ?report.recoveries, "declaring sectors recovered");
        }
        // Each declaration in as many messages as fit a block.
        for (declaration, locations) in [
            (Declaration::Faults, faults),
            (Declaration::Recoveries, recoveries),
        ] {
            let messages = declaration_messages(
                &self.messenger.policy,
                view.worker,
                self.actor,
                declaration,
                &locations,
            )?;
            for locs in messages {
                let n: usize = locs.iter().map(|l| l.sectors.len()).sum();
                let method = match declaration {
                    Declaration::Faults => MinerMethod::DeclareFaults(locs),
                    Declaration::Recoveries => MinerMethod::DeclareRecoveries(locs),
                };
                self.messenger
                    .send(api, view.worker, Method::Miner(method), 0, n)
                    .await?;
                match declaration {
                    Declaration::Faults => self.metrics.faults_declared.inc_by(n as u64),
                    Declaration::Recoveries => self.metrics.recoveries_declared.inc_by(n as u64),
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn the_period_and_current_deadline_follow_from_any_deadline() {
        let p = Policy::devnet(); // 48 deadlines of 5 epochs: a 240-epoch period
        // Deadline 3's window opens at 115: the period started at 100.
        let at = |next| proving_period(&p, 3, 115, next).unwrap();
        let now = at(112);
        assert_eq!(
            (now.start, now.deadlines, now.challenge_window),
            (100, 48, 5)
        );
        assert_eq!(
            (now.current_deadline, now.current_open, now.current_close),
            (Some(2), Some(110), Some(115))
        );
        // Deadline 3's next instance (355) seen from the same period, and from the next one.
        assert_eq!(proving_period(&p, 3, 355, 112).unwrap().start, 100);
        let later = proving_period(&p, 3, 355, 345).unwrap();
        assert_eq!((later.start, later.current_deadline), (340, Some(1)));
        // Before a miner's first period (it starts after genesis): no current deadline.
        let first = proving_period(&p, 0, 30, 10).unwrap();
        assert_eq!((first.start, first.current_deadline), (30, None));
        // An instance that cannot be (opening before its own period): nothing, no panic.
        assert_eq!(proving_period(&p, 47, 10, 5), None);
    }

    /// `n` partition proofs (192-byte proofs, `sectors` live sectors each, one skipped).
    fn partitions(n: u64, sectors: usize) -> Vec<PartitionProof> {
        (0..n)
            .map(|index| PartitionProof {
                post: PostPartition {
                    index,
                    skipped: [index * 1000].into(),
                },
                proof: vec![index as u8; 192],
                proven: BTreeSet::new(),
                sectors,
                sent: None,
            })
            .collect()
    }

    /// The message the [`Messenger`] would send for `method` at `nonce`: its gas limit and size.
    fn as_sent(p: &Policy, method: Method, proofs: usize, sectors: usize) -> (u64, u64) {
        let mut msg = Message {
            from: Address::Id(ActorId(101)),
            to: Address::Id(ActorId(1000)),
            nonce: 123_456,
            value: TokenAmount::ZERO,
            method,
            gas_limit: 0,
            gas_price: p.min_gas_price,
        };
        msg.gas_limit = lode_node::wallet::method_gas_limit(p, &msg, proofs as u64, sectors as u64);
        (msg.gas_limit, msg.signed_len() as u64)
    }

    #[test]
    fn a_deadline_with_many_partitions_is_split_into_messages_that_each_fit_a_block() {
        for (mut p, sectors) in [(Policy::devnet(), 2), (Policy::mainnet(), 2349)] {
            let parts = partitions(10, sectors);
            let refs: Vec<&PartitionProof> = parts.iter().collect();
            // The real policies: the chain's cap of partitions per message binds.
            let msgs = window_post_messages(&p, ActorId(101), ActorId(1000), 7, &refs).unwrap();
            let sizes: Vec<usize> = msgs.iter().map(|m| m.0.partitions.len()).collect();
            assert_eq!(sizes, [3, 3, 3, 1], "{}", p.network);
            // A block gas limit that takes about two partitions' messages: the gas binds.
            let one = as_sent(&p, post_method(&msgs[0].0, 1), 1, sectors).0;
            p.block_gas_limit = one * 2 + one / 2;
            let msgs = window_post_messages(&p, ActorId(101), ActorId(1000), 7, &refs).unwrap();
            assert!(msgs.len() >= 5, "{}: {} messages", p.network, msgs.len());
            let mut covered = Vec::new();
            for (params, indices, n) in &msgs {
                assert_eq!(params.deadline, 7);
                assert_eq!(params.partitions.len(), params.proofs.len());
                assert!(params.partitions.len() as u64 <= p.posted_partitions_max);
                assert_eq!(*n, sectors * indices.len());
                let (gas, size) = as_sent(
                    &p,
                    Method::Miner(MinerMethod::SubmitWindowPost(params.clone())),
                    params.proofs.len(),
                    *n,
                );
                assert!(gas <= p.block_gas_limit, "{gas} > {}", p.block_gas_limit);
                assert!(size <= p.max_message_size);
                for (part, proof) in params.partitions.iter().zip(&params.proofs) {
                    assert_eq!(proof, &parts[part.index as usize].proof);
                    assert_eq!(part, &parts[part.index as usize].post);
                }
                covered.extend(indices.iter().copied());
            }
            assert_eq!(covered, (0..10).collect::<Vec<_>>(), "each exactly once");
            // A partition that fits no message is an error that says so, nothing planned.
            p.block_gas_limit = one - 1;
            let e = window_post_messages(&p, ActorId(101), ActorId(1000), 7, &refs).unwrap_err();
            assert!(e.to_string().contains("partition 0"), "{e}");
        }
    }

    fn post_method(params: &WindowPostParams, n: usize) -> Method {
        Method::Miner(MinerMethod::SubmitWindowPost(WindowPostParams {
            deadline: params.deadline,
            partitions: params.partitions[..n].to_vec(),
            proofs: params.proofs[..n].to_vec(),
        }))
    }

    #[test]
    fn a_large_declaration_is_split_into_messages_that_each_fit() {
        let mut p = Policy::devnet();
        p.max_message_size = 1024;
        // Three partitions of two deadlines, 1,500 sectors in all.
        let locations: Vec<SectorLocation> = [(4, 0), (4, 1), (9, 0)]
            .iter()
            .enumerate()
            .map(|(i, &(deadline, partition))| SectorLocation {
                deadline,
                partition,
                sectors: (0..500).map(|s| (i as u64) * 100_000 + s * 3).collect(),
            })
            .collect();
        for declaration in [Declaration::Faults, Declaration::Recoveries] {
            let msgs =
                declaration_messages(&p, ActorId(101), ActorId(1000), declaration, &locations)
                    .unwrap();
            assert!(msgs.len() > 3);
            let mut covered = Vec::new();
            for locs in &msgs {
                let n: usize = locs.iter().map(|l| l.sectors.len()).sum();
                let method = Method::Miner(match declaration {
                    Declaration::Faults => MinerMethod::DeclareFaults(locs.clone()),
                    Declaration::Recoveries => MinerMethod::DeclareRecoveries(locs.clone()),
                });
                let (gas, size) = as_sent(&p, method, 0, n);
                assert!(gas <= p.block_gas_limit && size <= p.max_message_size);
                for l in locs {
                    covered.extend(l.sectors.iter().map(|s| (l.deadline, l.partition, *s)));
                }
            }
            let all: Vec<(u64, u64, u64)> = locations
                .iter()
                .flat_map(|l| l.sectors.iter().map(|s| (l.deadline, l.partition, *s)))
                .collect();
            assert_eq!(
                covered, all,
                "every sector in exactly one message, in order"
            );
        }
        // Nothing to declare: no message.
        assert!(
            declaration_messages(&p, ActorId(101), ActorId(1000), Declaration::Faults, &[])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn only_partitions_not_on_chain_and_not_sent_lately_are_sent_again() {
        let mut proof = Proof {
            deadline: 2,
            partitions: partitions(4, 2),
        };
        assert_eq!(due(&proof, &[0, 1, 2, 3], 10), [0, 1, 2, 3]);
        // Partitions 0 and 1 went out at 10 (2 then failed to send); 0 landed since.
        proof.partitions[0].sent = Some(10);
        proof.partitions[1].sent = Some(10);
        let pending = [1, 2, 3];
        assert_eq!(due(&proof, &pending, 11), [2, 3]);
        assert_eq!(due(&proof, &pending, 10 + RESUBMIT_AFTER), [1, 2, 3]);
        assert!(due(&proof, &[], 100).is_empty());
    }

    #[test]
    fn split_takes_the_largest_groups_that_fit() {
        let items: Vec<u64> = (1..=10).collect();
        // Groups summing to at most 12, at most 4 items.
        let sum = |g: &[u64]| g.iter().sum::<u64>() <= 12;
        let groups = split(&items, 4, sum).unwrap();
        assert_eq!(
            groups,
            vec![&[1, 2, 3, 4][..], &[5, 6], &[7], &[8], &[9], &[10]]
        );
        assert_eq!(split(&items, 4, |g| g.iter().all(|&x| x < 6)), Err(5));
        assert!(split(&[] as &[u64], 4, sum).unwrap().is_empty());
    }

    #[test]
    fn the_margin_must_leave_epochs_to_submit_in() {
        let p = Policy::devnet();
        let with = |margin_epochs| ProvingSettings {
            margin_epochs,
            check_ahead_epochs: None,
        };
        assert!(with(p.wpost_challenge_window - 1).validate(&p).is_ok());
        let e = with(p.wpost_challenge_window).validate(&p).unwrap_err();
        assert!(e.contains("margin_epochs"), "{e}");
        assert_eq!(
            ProvingSettings::default().check_ahead(&p),
            DEFAULT_CHECK_AHEAD_WINDOWS * p.wpost_challenge_window
        );
        let set = ProvingSettings {
            check_ahead_epochs: Some(7),
            ..ProvingSettings::default()
        };
        assert_eq!(set.check_ahead(&p), 7);
    }
}
