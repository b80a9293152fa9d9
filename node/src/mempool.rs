//! The mempool: signed messages waiting for a block.
//!
//! A message is accepted (and only then gossiped on) when its size, gas price and gas limit meet
//! the policy (a gas limit at least what inclusion costs and at most the block gas limit, so that
//! some block can hold it), its sender is an account whose key verifies the signature, its nonce is not below
//! the sender's next nonce nor more than [`MempoolConfig::max_per_sender`] ahead of it, and the
//! sender's balance covers the worst-case cost (`gas_limit × gas_price + value`) of this message
//! and every pending one before it. A message with the nonce of a pending one replaces it only if
//! it raises the gas price by at least [`MempoolConfig::replace_by_fee_percent`] (replace-by-fee).
//! The pool holds at most [`MempoolConfig::max_messages`] messages and
//! [`MempoolConfig::max_bytes`] bytes: when full, a newcomer evicts the cheapest messages that end
//! senders' queues if it pays more than each, and is refused otherwise — with nothing evicted when
//! those it outbids do not make room. After every head change the pool
//! drops what the new state makes stale (included nonces, senders that vanished, messages the
//! balance no longer covers). Block producers take messages by gas price, each sender's in nonce
//! order without gaps, until the block's gas limits reach the policy's block gas limit (the rest
//! wait for a later block), and aggregate their signatures into the block's header.
//!
//! **Signatures remembered.** Blocks carry their messages without signatures (one aggregate
//! covers them), so a message taken off the chain by a reorganisation can return to the pool only
//! with a signature from somewhere else: the pool remembers the signatures of the last
//! [`MempoolConfig::remembered_signatures`] messages it accepted, by message id, after they leave
//! it. A reverted message whose signature is forgotten (or was never seen here) is dropped; its
//! sender can send it again.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};

use lode_chain::Policy;
use lode_chain::crypto::{PublicKey, Signature};
use lode_chain::message::{Message, SignedMessage};
use lode_chain::types::{ActorId, Address, TokenAmount};

/// Limits of the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Most messages held.
    pub max_messages: usize,
    /// Most bytes (encoded messages) held.
    pub max_bytes: usize,
    /// Most pending messages per sender (nonces beyond `next + this` are refused).
    pub max_per_sender: u64,
    /// The least gas-price increase, in percent, for a replacement.
    pub replace_by_fee_percent: u128,
    /// How many accepted messages' signatures are remembered (see the module docs).
    pub remembered_signatures: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_messages: 20_000,
            max_bytes: 32 << 20,
            max_per_sender: 1_000,
            replace_by_fee_percent: 25,
            remembered_signatures: 40_000,
        }
    }
}

/// An account as the current state has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountState {
    /// Its id.
    pub id: ActorId,
    /// Its key.
    pub key: PublicKey,
    /// Its next nonce.
    pub nonce: u64,
    /// Its balance.
    pub balance: TokenAmount,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// Too large.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Gas price below the minimum.
    #[error("gas price {price} is below the minimum {min}")]
    GasPriceTooLow {
        /// Offered.
        price: TokenAmount,
        /// Minimum.
        min: TokenAmount,
    },
    /// Gas limit below what inclusion costs.
    #[error("gas limit {limit} is below the {needed} this message needs to be included")]
    GasLimitTooLow {
        /// Offered.
        limit: u64,
        /// Needed.
        needed: u64,
    },
    /// A gas limit no block can hold.
    #[error(
        "gas limit {limit} is above the block gas limit {block}: no block can include this message; split its work over several messages"
    )]
    GasLimitAboveBlock {
        /// Offered.
        limit: u64,
        /// The policy's block gas limit.
        block: u64,
    },
    /// Unknown sender or not an account.
    #[error("sender {0} is not an account on chain")]
    UnknownSender(String),
    /// Bad signature.
    #[error("the signature does not verify under the sender's key")]
    BadSignature,
    /// Nonce already used.
    #[error("nonce {nonce} is below the sender's next nonce {next}")]
    NonceTooLow {
        /// Offered.
        nonce: u64,
        /// Next.
        next: u64,
    },
    /// Nonce too far ahead.
    #[error("nonce {nonce} is more than {max} ahead of the sender's next nonce {next}")]
    NonceTooHigh {
        /// Offered.
        nonce: u64,
        /// Next.
        next: u64,
        /// Allowed gap.
        max: u64,
    },
    /// The balance does not cover it.
    #[error(
        "the sender's balance {balance} does not cover {needed} for its pending messages and this one"
    )]
    InsufficientFunds {
        /// Balance.
        balance: TokenAmount,
        /// Needed.
        needed: TokenAmount,
    },
    /// A replacement that does not pay enough more.
    #[error(
        "a message with nonce {nonce} is pending; a replacement must pay at least {min} per gas"
    )]
    ReplaceUnderpriced {
        /// Nonce.
        nonce: u64,
        /// Minimum gas price.
        min: TokenAmount,
    },
    /// Already pending.
    #[error("already pending")]
    Duplicate,
    /// Full.
    #[error("the mempool is full and the message does not pay more than what it holds")]
    Full,
}

#[derive(Clone, Debug)]
struct Entry {
    msg: SignedMessage,
    id: [u8; 32],
    size: usize,
}

/// The pool.
#[derive(Debug, Default)]
pub struct Mempool {
    config: MempoolConfig,
    by_sender: BTreeMap<ActorId, BTreeMap<u64, Entry>>,
    ids: HashSet<[u8; 32]>,
    bytes: usize,
    signatures: HashMap<[u8; 32], Signature>,
    signature_order: VecDeque<[u8; 32]>,
}

fn worst_cost(m: &SignedMessage) -> Option<TokenAmount> {
    m.message.max_fee()?.checked_add(m.message.value)
}

impl Mempool {
    /// An empty pool.
    pub fn new(config: MempoolConfig) -> Self {
        Mempool {
            config,
            ..Mempool::default()
        }
    }

    /// Number of pending messages.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a message is pending.
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        self.ids.contains(id)
    }

    /// `message` with the signature the pool remembers for it, if it does (see the module docs).
    pub fn signed(&self, message: &Message) -> Option<SignedMessage> {
        self.signatures
            .get(&message.id())
            .map(|signature| SignedMessage {
                message: message.clone(),
                signature: *signature,
            })
    }

    fn remember(&mut self, id: [u8; 32], signature: Signature) {
        if self.signatures.insert(id, signature).is_none() {
            self.signature_order.push_back(id);
        }
        while self.signature_order.len() > self.config.remembered_signatures {
            if let Some(old) = self.signature_order.pop_front() {
                self.signatures.remove(&old);
            }
        }
    }

    /// Every pending message, by sender and nonce.
    pub fn pending(&self) -> Vec<SignedMessage> {
        self.by_sender
            .values()
            .flat_map(|q| q.values().map(|e| e.msg.clone()))
            .collect()
    }

    /// The sender's next nonce counting pending messages (what a wallet signs next).
    pub fn next_nonce(&self, sender: ActorId, state_nonce: u64) -> u64 {
        let mut n = state_nonce;
        if let Some(q) = self.by_sender.get(&sender) {
            while q.contains_key(&n) {
                n = n.saturating_add(1);
            }
        }
        n
    }

    /// Checks and adds a message; `lookup` reads accounts from the current state.
    pub fn add(
        &mut self,
        msg: SignedMessage,
        policy: &Policy,
        lookup: &dyn Fn(&Address) -> Option<AccountState>,
    ) -> Result<[u8; 32], MempoolError> {
        let id = msg.id();
        if self.ids.contains(&id) {
            return Err(MempoolError::Duplicate);
        }
        let size = msg.encoded_len();
        let len = size as u64;
        if len > policy.max_message_size {
            return Err(MempoolError::TooLarge {
                size: len,
                limit: policy.max_message_size,
            });
        }
        let m = &msg.message;
        if m.gas_price < policy.min_gas_price {
            return Err(MempoolError::GasPriceTooLow {
                price: m.gas_price,
                min: policy.min_gas_price,
            });
        }
        let needed = policy
            .gas_base
            .saturating_add(policy.gas_per_byte.saturating_mul(len));
        if m.gas_limit < needed {
            return Err(MempoolError::GasLimitTooLow {
                limit: m.gas_limit,
                needed,
            });
        }
        if m.gas_limit > policy.block_gas_limit {
            return Err(MempoolError::GasLimitAboveBlock {
                limit: m.gas_limit,
                block: policy.block_gas_limit,
            });
        }
        let account =
            lookup(&m.from).ok_or_else(|| MempoolError::UnknownSender(m.from.to_string()))?;
        if let Address::Bls(k) = &m.from
            && *k != account.key
        {
            return Err(MempoolError::UnknownSender(m.from.to_string()));
        }
        if !msg.verify(&policy.network, &account.key) {
            return Err(MempoolError::BadSignature);
        }
        if m.nonce < account.nonce {
            return Err(MempoolError::NonceTooLow {
                nonce: m.nonce,
                next: account.nonce,
            });
        }
        if m.nonce.saturating_sub(account.nonce) >= self.config.max_per_sender {
            return Err(MempoolError::NonceTooHigh {
                nonce: m.nonce,
                next: account.nonce,
                max: self.config.max_per_sender,
            });
        }
        let queue = self.by_sender.get(&account.id);
        let replaced = queue.and_then(|q| q.get(&m.nonce));
        if let Some(old) = replaced {
            let min = old
                .msg
                .message
                .gas_price
                .0
                .saturating_mul(100u128.saturating_add(self.config.replace_by_fee_percent))
                .div_ceil(100);
            if m.gas_price.0 < min {
                return Err(MempoolError::ReplaceUnderpriced {
                    nonce: m.nonce,
                    min: TokenAmount(min),
                });
            }
        }
        // The balance must cover every pending message up to this one (the replaced one excluded).
        let mut total = worst_cost(&msg).unwrap_or(TokenAmount(u128::MAX));
        if let Some(q) = queue {
            for e in q.range(..m.nonce).map(|(_, e)| e) {
                total = total
                    .checked_add(worst_cost(&e.msg).unwrap_or(TokenAmount(u128::MAX)))
                    .unwrap_or(TokenAmount(u128::MAX));
            }
        }
        if total > account.balance {
            return Err(MempoolError::InsufficientFunds {
                balance: account.balance,
                needed: total,
            });
        }
        let freed = replaced.map_or(0, |e| e.size);
        let adds = usize::from(replaced.is_none());
        // Every eviction the newcomer needs is decided before any is made: one that does not fit
        // even then is refused with the pool untouched.
        let evictions = self.evictions_for(
            m.gas_price,
            account.id,
            self.ids.len().saturating_add(adds),
            self.bytes.saturating_sub(freed).saturating_add(size),
        )?;
        for (sender, nonce) in evictions {
            self.remove(sender, nonce);
        }
        let signature = msg.signature;
        let entry = Entry { msg, id, size };
        let q = self.by_sender.entry(account.id).or_default();
        if let Some(old) = q.insert(entry.msg.message.nonce, entry) {
            self.ids.remove(&old.id);
            self.bytes = self.bytes.saturating_sub(old.size);
        }
        self.ids.insert(id);
        self.bytes = self.bytes.saturating_add(size);
        self.remember(id, signature);
        Ok(id)
    }

    /// The messages to evict so that a pool of `count` messages and `bytes` bytes (the newcomer
    /// counted) fits its limits: each time the cheapest message that ends a sender's queue (not
    /// `keep`'s), as long as it pays less than `price`. [`MempoolError::Full`] when that does not
    /// make room.
    fn evictions_for(
        &self,
        price: TokenAmount,
        keep: ActorId,
        mut count: usize,
        mut bytes: usize,
    ) -> Result<Vec<(ActorId, u64)>, MempoolError> {
        let mut taken: HashMap<ActorId, usize> = HashMap::new();
        let mut out = Vec::new();
        while count > self.config.max_messages || bytes > self.config.max_bytes {
            let victim = self
                .by_sender
                .iter()
                .filter(|(s, _)| **s != keep)
                .filter_map(|(s, q)| {
                    let skip = taken.get(s).copied().unwrap_or(0);
                    q.iter()
                        .rev()
                        .nth(skip)
                        .map(|(n, e)| (e.msg.message.gas_price, *s, *n, e.size))
                })
                .min();
            match victim {
                Some((p, sender, nonce, size)) if p < price => {
                    let t = taken.entry(sender).or_default();
                    *t = t.saturating_add(1);
                    out.push((sender, nonce));
                    count = count.saturating_sub(1);
                    bytes = bytes.saturating_sub(size);
                }
                _ => return Err(MempoolError::Full),
            }
        }
        Ok(out)
    }

    fn remove(&mut self, sender: ActorId, nonce: u64) {
        if let Some(q) = self.by_sender.get_mut(&sender) {
            if let Some(e) = q.remove(&nonce) {
                self.ids.remove(&e.id);
                self.bytes = self.bytes.saturating_sub(e.size);
            }
            if q.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
    }

    /// Re-validates every pending message against a new head's state.
    pub fn revalidate(&mut self, lookup: &dyn Fn(&Address) -> Option<AccountState>) {
        let senders: Vec<ActorId> = self.by_sender.keys().copied().collect();
        for sender in senders {
            let state = lookup(&Address::Id(sender));
            let Some(q) = self.by_sender.get(&sender) else {
                continue;
            };
            let mut drop = Vec::new();
            match state {
                None => drop.extend(q.keys().copied()),
                Some(a) => {
                    let mut total = TokenAmount::ZERO;
                    for (n, e) in q {
                        if *n < a.nonce {
                            drop.push(*n);
                            continue;
                        }
                        total = total
                            .checked_add(worst_cost(&e.msg).unwrap_or(TokenAmount(u128::MAX)))
                            .unwrap_or(TokenAmount(u128::MAX));
                        if total > a.balance {
                            drop.push(*n);
                        }
                    }
                }
            }
            for n in drop {
                self.remove(sender, n);
            }
        }
    }

    /// Up to `max` messages for a block whose gas limits sum to at most `gas`: by gas price,
    /// each sender's consecutively from its state nonce. A message that does not fit in the gas
    /// left ends its sender's run for this block (its later nonces cannot go before it); other
    /// senders' smaller messages may still fit. What is left stays in the pool.
    pub fn select(
        &self,
        max: usize,
        gas: u64,
        lookup: &dyn Fn(&Address) -> Option<AccountState>,
    ) -> Vec<SignedMessage> {
        // Per sender, the run of consecutive nonces from the state's next nonce.
        let mut runs: Vec<Vec<&Entry>> = Vec::new();
        for (sender, q) in &self.by_sender {
            let Some(a) = lookup(&Address::Id(*sender)) else {
                continue;
            };
            let mut run = Vec::new();
            let mut n = a.nonce;
            while let Some(e) = q.get(&n) {
                run.push(e);
                n = n.saturating_add(1);
            }
            if !run.is_empty() {
                runs.push(run);
            }
        }
        let mut heap = BinaryHeap::new();
        for (i, run) in runs.iter().enumerate() {
            if let Some(e) = run.first() {
                heap.push((e.msg.message.gas_price, std::cmp::Reverse(i), 0usize));
            }
        }
        let mut out = Vec::new();
        let mut left = gas;
        while out.len() < max {
            let Some((_, std::cmp::Reverse(i), j)) = heap.pop() else {
                break;
            };
            let Some(run) = runs.get(i) else { break };
            if let Some(e) = run.get(j) {
                let Some(rest) = left.checked_sub(e.msg.message.gas_limit) else {
                    continue;
                };
                left = rest;
                out.push(e.msg.clone());
            }
            let next = j.saturating_add(1);
            if let Some(e) = run.get(next) {
                heap.push((e.msg.message.gas_price, std::cmp::Reverse(i), next));
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use lode_chain::crypto::SecretKey;
    use lode_chain::message::{Message, Method};
    use std::collections::HashMap;

    struct World {
        policy: Policy,
        keys: Vec<SecretKey>,
        accounts: HashMap<ActorId, AccountState>,
    }

    impl World {
        fn new(n: u64, balance: TokenAmount) -> Self {
            let keys: Vec<SecretKey> = (0..n)
                .map(|i| SecretKey::from_seed(&[i as u8 + 1; 32]))
                .collect();
            let accounts = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let id = ActorId(100 + i as u64);
                    (
                        id,
                        AccountState {
                            id,
                            key: k.public_key(),
                            nonce: 0,
                            balance,
                        },
                    )
                })
                .collect();
            World {
                policy: Policy::devnet(),
                keys,
                accounts,
            }
        }

        fn lookup(&self) -> impl Fn(&Address) -> Option<AccountState> + '_ {
            move |a| match a {
                Address::Id(id) => self.accounts.get(id).copied(),
                Address::Bls(k) => self.accounts.values().find(|s| s.key == *k).copied(),
            }
        }

        fn msg(&self, who: usize, nonce: u64, price: u128) -> SignedMessage {
            Message {
                from: Address::Id(ActorId(100 + who as u64)),
                to: Address::Id(ActorId(100)),
                nonce,
                value: TokenAmount(1),
                method: Method::Send,
                gas_limit: 1_000_000,
                gas_price: TokenAmount(price),
            }
            .sign(&self.policy.network, &self.keys[who])
        }
    }

    #[test]
    fn a_block_takes_messages_up_to_its_gas_limit_and_the_rest_wait_for_the_next() {
        let mut w = World::new(3, TokenAmount::tokens(1));
        // Room for three of the test's 1,000,000-gas messages, not four.
        w.policy.block_gas_limit = 3_500_000;
        let min = w.policy.min_gas_price.0;
        let mut p = Mempool::new(MempoolConfig::default());
        {
            let look = w.lookup();
            // A message no block can hold is refused, saying why.
            let mut big = w.msg(2, 0, min).message;
            big.gas_limit = 3_500_001;
            let big = big.sign(&w.policy.network, &w.keys[2]);
            let refused = p.add(big, &w.policy, &look).unwrap_err();
            assert_eq!(
                refused,
                MempoolError::GasLimitAboveBlock {
                    limit: 3_500_001,
                    block: 3_500_000
                }
            );
            assert!(refused.to_string().contains("split its work"), "{refused}");
            for n in 0..5 {
                p.add(w.msg(0, n, min), &w.policy, &look).unwrap();
            }
            p.add(w.msg(1, 0, min * 2), &w.policy, &look).unwrap();
        }
        let mut blocks = Vec::new();
        for _ in 0..3 {
            let picked = p.select(usize::MAX, w.policy.block_gas_limit, &w.lookup());
            assert!(
                picked.iter().map(|m| m.message.gas_limit).sum::<u64>() <= w.policy.block_gas_limit
            );
            // The block is applied: its senders' nonces advance, the pool drops what it took.
            for m in &picked {
                let Address::Id(id) = m.message.from else {
                    unreachable!()
                };
                w.accounts.get_mut(&id).unwrap().nonce = m.message.nonce + 1;
            }
            blocks.push(
                picked
                    .iter()
                    .map(|m| (m.message.from, m.message.nonce))
                    .collect::<Vec<_>>(),
            );
            let look = w.lookup();
            p.revalidate(&look);
        }
        let (a, b) = (Address::Id(ActorId(100)), Address::Id(ActorId(101)));
        // The dearer sender first, then the other's nonces in order; what does not fit waits.
        assert_eq!(
            blocks,
            vec![
                vec![(b, 0), (a, 0), (a, 1)],
                vec![(a, 2), (a, 3), (a, 4)],
                vec![]
            ]
        );
        assert!(p.is_empty());
    }

    #[test]
    fn a_message_too_large_for_the_gas_left_ends_its_senders_run_only() {
        let w = World::new(2, TokenAmount::tokens(1));
        let look = w.lookup();
        let min = w.policy.min_gas_price.0;
        let mut p = Mempool::new(MempoolConfig::default());
        // Sender 0: a dear 3,000,000-gas message then a small one; sender 1: cheap small ones.
        let mut large = w.msg(0, 0, min * 10).message;
        large.gas_limit = 3_000_000;
        p.add(large.sign(&w.policy.network, &w.keys[0]), &w.policy, &look)
            .unwrap();
        p.add(w.msg(0, 1, min * 10), &w.policy, &look).unwrap();
        p.add(w.msg(1, 0, min), &w.policy, &look).unwrap();
        p.add(w.msg(1, 1, min), &w.policy, &look).unwrap();
        let picked: Vec<(Address, u64)> = p
            .select(usize::MAX, 2_500_000, &look)
            .iter()
            .map(|m| (m.message.from, m.message.nonce))
            .collect();
        let (a, b) = (Address::Id(ActorId(100)), Address::Id(ActorId(101)));
        // Sender 0's nonce 1 cannot go before its nonce 0; sender 1's messages fit.
        assert_eq!(picked, vec![(b, 0), (b, 1)]);
        assert!(!picked.contains(&(a, 1)));
    }

    #[test]
    fn checks_replaces_by_fee_and_selects_by_price_in_nonce_order() {
        let w = World::new(3, TokenAmount::tokens(1));
        let mut p = Mempool::new(MempoolConfig::default());
        let look = w.lookup();
        let min = w.policy.min_gas_price.0;
        p.add(w.msg(0, 0, min), &w.policy, &look).unwrap();
        p.add(w.msg(0, 1, min * 10), &w.policy, &look).unwrap();
        p.add(w.msg(1, 0, min * 5), &w.policy, &look).unwrap();
        assert_eq!(
            p.add(w.msg(1, 0, min * 5), &w.policy, &look),
            Err(MempoolError::Duplicate)
        );
        // Replace-by-fee: 10% more is not enough, 25% is.
        assert!(matches!(
            p.add(w.msg(1, 0, min * 5 * 11 / 10), &w.policy, &look),
            Err(MempoolError::ReplaceUnderpriced { .. })
        ));
        p.add(w.msg(1, 0, min * 5 * 5 / 4), &w.policy, &look)
            .unwrap();
        assert_eq!(p.len(), 3);
        // A gap: sender 2's nonce 1 waits for nonce 0.
        p.add(w.msg(2, 1, min * 100), &w.policy, &look).unwrap();
        let picked = p.select(10, u64::MAX, &look);
        let order: Vec<(u64, u64)> = picked
            .iter()
            .map(|m| match m.message.from {
                Address::Id(i) => (i.0, m.message.nonce),
                Address::Bls(_) => (0, m.message.nonce),
            })
            .collect();
        // Sender 1 (6.25×) first; sender 0's cheap nonce 0 must precede its dear nonce 1.
        assert_eq!(order, vec![(101, 0), (100, 0), (100, 1)]);
        assert_eq!(p.next_nonce(ActorId(100), 0), 2);
        // Refusals.
        assert!(matches!(
            p.add(w.msg(0, 5, min - 1), &w.policy, &look),
            Err(MempoolError::GasPriceTooLow { .. })
        ));
        let mut bad = w.msg(0, 2, min);
        bad.message.value = TokenAmount(2);
        assert_eq!(
            p.add(bad, &w.policy, &look),
            Err(MempoolError::BadSignature)
        );
        assert!(matches!(
            p.add(w.msg(0, 5000, min), &w.policy, &look),
            Err(MempoolError::NonceTooHigh { .. })
        ));
    }

    #[test]
    fn the_balance_covers_the_queue_and_head_changes_prune() {
        let mut w = World::new(1, TokenAmount(0));
        let min = w.policy.min_gas_price.0;
        let cost = worst_cost(&w.msg(0, 0, min)).unwrap().0;
        w.accounts.get_mut(&ActorId(100)).unwrap().balance = TokenAmount(cost * 2);
        let mut p = Mempool::new(MempoolConfig::default());
        {
            let look = w.lookup();
            p.add(w.msg(0, 0, min), &w.policy, &look).unwrap();
            p.add(w.msg(0, 1, min), &w.policy, &look).unwrap();
            assert!(matches!(
                p.add(w.msg(0, 2, min), &w.policy, &look),
                Err(MempoolError::InsufficientFunds { .. })
            ));
        }
        // The head includes nonce 0: it is dropped, nonce 1 stays.
        w.accounts.get_mut(&ActorId(100)).unwrap().nonce = 1;
        p.revalidate(&w.lookup());
        assert_eq!(p.len(), 1);
        assert!(matches!(
            p.add(w.msg(0, 0, min), &w.policy, &w.lookup()),
            Err(MempoolError::NonceTooLow { .. })
        ));
    }

    #[test]
    fn signatures_are_remembered_after_messages_leave_the_pool_within_a_bound() {
        let mut w = World::new(1, TokenAmount::tokens(1));
        let min = w.policy.min_gas_price.0;
        let mut p = Mempool::new(MempoolConfig {
            remembered_signatures: 2,
            ..MempoolConfig::default()
        });
        let sent: Vec<SignedMessage> = (0..3).map(|n| w.msg(0, n, min)).collect();
        for m in &sent {
            p.add(m.clone(), &w.policy, &w.lookup()).unwrap();
        }
        // The three are included in a block: the pool drops them.
        w.accounts.get_mut(&ActorId(100)).unwrap().nonce = 3;
        p.revalidate(&w.lookup());
        assert!(p.is_empty());
        // The last two signatures are remembered (the bound), the first is forgotten.
        assert_eq!(p.signed(&sent[0].message), None);
        assert_eq!(p.signed(&sent[1].message).as_ref(), Some(&sent[1]));
        assert_eq!(p.signed(&sent[2].message).as_ref(), Some(&sent[2]));
        // A message never seen here has no signature to put back.
        assert_eq!(p.signed(&w.msg(0, 9, min).message), None);
    }

    #[test]
    fn a_flood_stays_within_the_bound_and_evicts_the_cheapest() {
        let w = World::new(20, TokenAmount::tokens(1));
        let look = w.lookup();
        let min = w.policy.min_gas_price.0;
        let mut p = Mempool::new(MempoolConfig {
            max_messages: 50,
            ..MempoolConfig::default()
        });
        for who in 0..10 {
            for n in 0..10 {
                let _ = p.add(w.msg(who, n, min), &w.policy, &look);
            }
        }
        assert_eq!(p.len(), 50);
        // A dearer message gets in by evicting a cheap queue tail; an equally cheap one does not.
        p.add(w.msg(15, 0, min * 2), &w.policy, &look).unwrap();
        assert_eq!(p.len(), 50);
        assert_eq!(
            p.add(w.msg(16, 0, min), &w.policy, &look),
            Err(MempoolError::Full)
        );
        assert!(p.bytes() <= MempoolConfig::default().max_bytes);
    }

    /// The pool's books agree with what it holds: its count, its bytes, its ids; a block's
    /// selection is pending messages only, and their aggregate verifies under the senders' keys.
    fn check_books(p: &Mempool, w: &World) {
        let pending = p.pending();
        assert_eq!(p.len(), pending.len());
        assert_eq!(
            p.bytes(),
            pending
                .iter()
                .map(SignedMessage::encoded_len)
                .sum::<usize>()
        );
        assert!(pending.iter().all(|m| p.contains(&m.id())));
        let selected = p.select(usize::MAX, u64::MAX, &w.lookup());
        assert!(selected.iter().all(|m| p.contains(&m.id())));
        if !selected.is_empty() {
            let body = lode_chain::block::BlockMessages::from_signed(&selected).unwrap();
            let keys: Vec<PublicKey> = selected
                .iter()
                .map(|m| w.lookup()(&m.message.from).unwrap().key)
                .collect();
            let bytes: Vec<[u8; 32]> = selected
                .iter()
                .map(|m| m.message.signing_bytes(&w.policy.network))
                .collect();
            let pairs: Vec<(&PublicKey, &[u8])> = keys
                .iter()
                .zip(&bytes)
                .map(|(k, b)| (k, b.as_slice()))
                .collect();
            assert_eq!(
                lode_chain::crypto::aggregate_verify(&pairs, &body.bls_aggregate.unwrap()),
                Ok(())
            );
        }
    }

    #[test]
    fn a_bad_signature_is_refused_and_leaves_nothing_behind() {
        let w = World::new(2, TokenAmount::tokens(1));
        let look = w.lookup();
        let min = w.policy.min_gas_price.0;
        let mut p = Mempool::new(MempoolConfig::default());
        let first = w.msg(0, 0, min);
        p.add(first.clone(), &w.policy, &look).unwrap();
        let (len, bytes) = (p.len(), p.bytes());
        let good = w.msg(0, 1, min);
        let forgeries = [
            // Another key's signature of the message.
            SignedMessage {
                signature: good
                    .message
                    .clone()
                    .sign(&w.policy.network, &w.keys[1])
                    .signature,
                ..good.clone()
            },
            // The sender's signature of another message.
            SignedMessage {
                signature: w.msg(0, 2, min).signature,
                ..good.clone()
            },
            // The sender's signature on another network.
            good.message.clone().sign("elsewhere", &w.keys[0]),
            // A replacement of the pending nonce 0 that pays more, badly signed.
            SignedMessage {
                signature: first.signature,
                ..w.msg(0, 0, min * 2)
            },
        ];
        for bad in forgeries {
            assert_eq!(
                p.add(bad.clone(), &w.policy, &look),
                Err(MempoolError::BadSignature)
            );
            assert!(!p.contains(&bad.id()) || bad.id() == first.id());
            assert_eq!((p.len(), p.bytes()), (len, bytes));
            // Its signature is not remembered either: no reorganisation can bring it back.
            assert_ne!(p.signed(&bad.message), Some(bad.clone()));
            assert_eq!(p.next_nonce(ActorId(100), 0), 1);
            check_books(&p, &w);
        }
        assert_eq!(p.pending(), vec![first.clone()]);
        assert_eq!(p.signed(&first.message), Some(first.clone()));
        // Nothing of the forgeries stands in the way of the genuine message.
        p.add(good.clone(), &w.policy, &look).unwrap();
        assert_eq!(p.signed(&good.message), Some(good.clone()));
        // A forged copy of a pending message is a duplicate, and the signature kept is the good
        // one.
        let forged = SignedMessage {
            signature: first.signature,
            ..good.clone()
        };
        assert_eq!(
            p.add(forged, &w.policy, &look),
            Err(MempoolError::Duplicate)
        );
        assert_eq!(p.signed(&good.message), Some(good.clone()));
        check_books(&p, &w);
    }

    #[test]
    fn messages_leave_the_pool_when_included_replaced_or_evicted() {
        let mut w = World::new(6, TokenAmount::tokens(1));
        let min = w.policy.min_gas_price.0;
        let remembered = 5;
        let mut p = Mempool::new(MempoolConfig {
            max_messages: 6,
            remembered_signatures: remembered,
            ..MempoolConfig::default()
        });
        let mut accepted: Vec<SignedMessage> = Vec::new();
        let mut add = |p: &mut Mempool, w: &World, m: SignedMessage| {
            p.add(m.clone(), &w.policy, &w.lookup()).unwrap();
            accepted.push(m);
        };
        for who in 0..3 {
            add(&mut p, &w, w.msg(who, 0, min * 2));
            add(&mut p, &w, w.msg(who, 1, min * 2));
        }
        check_books(&p, &w);
        // Replaced by fee: the old message is gone from the pool and from blocks.
        let old = w.msg(1, 1, min * 2);
        let new = w.msg(1, 1, min * 3);
        add(&mut p, &w, new.clone());
        assert!(!p.contains(&old.id()) && p.contains(&new.id()));
        assert_eq!(p.len(), 6);
        assert!(!p.select(usize::MAX, u64::MAX, &w.lookup()).contains(&old));
        check_books(&p, &w);
        // Evicted: the pool is full, a dearer newcomer pushes out the cheapest queue tail (sender
        // 0's nonce 1, the lowest sender among the cheapest).
        let evicted = w.msg(0, 1, min * 2);
        add(&mut p, &w, w.msg(4, 0, min * 5));
        assert!(!p.contains(&evicted.id()));
        assert_eq!(p.len(), 6);
        assert!(
            !p.select(usize::MAX, u64::MAX, &w.lookup())
                .contains(&evicted)
        );
        check_books(&p, &w);
        // Included: the head takes senders 2's two messages.
        w.accounts.get_mut(&ActorId(102)).unwrap().nonce = 2;
        p.revalidate(&w.lookup());
        assert!(!p.contains(&w.msg(2, 0, min * 2).id()));
        assert!(!p.contains(&w.msg(2, 1, min * 2).id()));
        assert_eq!(p.len(), 4);
        check_books(&p, &w);
        // Every message has left: the pool is empty and holds no bytes.
        for a in w.accounts.values_mut() {
            a.nonce = 10;
        }
        p.revalidate(&w.lookup());
        assert!(p.is_empty());
        assert_eq!(p.bytes(), 0);
        assert!(p.select(usize::MAX, u64::MAX, &w.lookup()).is_empty());
        // What the pool remembers of signatures after the messages left (for reorganisations)
        // is the last `remembered` accepted ones, and they are the accepted signatures.
        let known: Vec<&SignedMessage> = accepted
            .iter()
            .filter(|m| p.signed(&m.message).is_some())
            .collect();
        assert_eq!(known.len(), remembered);
        let newest: Vec<&SignedMessage> = accepted.iter().rev().take(remembered).collect();
        for m in &newest {
            assert_eq!(p.signed(&m.message).as_ref(), Some(*m));
        }
    }

    #[test]
    fn a_newcomer_that_does_not_fit_evicts_nothing() {
        let w = World::new(4, TokenAmount::tokens(1));
        let look = w.lookup();
        let min = w.policy.min_gas_price.0;
        let small = |who: usize, price: u128| w.msg(who, 0, price);
        // A larger message: its receiver named by a key.
        let large = |who: usize, price: u128| {
            Message {
                from: Address::Id(ActorId(100 + who as u64)),
                to: Address::Bls(w.keys[0].public_key()),
                nonce: 0,
                value: TokenAmount(1),
                method: Method::Send,
                gas_limit: 1_000_000,
                gas_price: TokenAmount(price),
            }
            .sign(&w.policy.network, &w.keys[who])
        };
        let s = small(0, min).encoded_len();
        let l = large(3, min).encoded_len();
        assert!(l > s + s / 4, "{l} vs {s}");
        // Room for three small messages: the large one needs two of them out.
        let mut p = Mempool::new(MempoolConfig {
            max_bytes: 3 * s + (l - s) / 2,
            ..MempoolConfig::default()
        });
        let cheap = small(0, min);
        let dear = [small(1, min * 3), small(2, min * 3)];
        p.add(cheap.clone(), &w.policy, &look).unwrap();
        for m in &dear {
            p.add(m.clone(), &w.policy, &look).unwrap();
        }
        let before = p.pending();
        // It outbids the cheap message but not the others: refused, and nothing evicted.
        assert_eq!(
            p.add(large(3, min * 2), &w.policy, &look),
            Err(MempoolError::Full)
        );
        assert_eq!(p.pending(), before);
        check_books(&p, &w);
        // Outbidding all of them, it gets in by evicting the two cheapest.
        p.add(large(3, min * 4), &w.policy, &look).unwrap();
        assert!(!p.contains(&cheap.id()));
        assert_eq!(p.len(), 2);
        assert!(p.bytes() <= 3 * s + (l - s) / 2);
        check_books(&p, &w);
    }
}
