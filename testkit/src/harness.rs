//! A chain harness for scenario tests: a devnet chain in memory (or in sled), named accounts,
//! message sending, epoch advancing with the invariants checked after every epoch, block
//! production, and a test-only proof verifier.

use std::collections::BTreeMap;

use lode_chain::actors::miner::{DeadlineInfo, MinerState, PreCommitInfo, SectorOnChain};
use lode_chain::actors::power::Claim;
use lode_chain::block::{Block, BlockHeader, BlockMessages, Tipset, win_count};
use lode_chain::chain::EpochInput;
use lode_chain::crypto::SecretKey;
use lode_chain::invariants::check_invariants;
use lode_chain::keys;
use lode_chain::message::{Message, Method, Receipt};
use lode_chain::runtime::{Economics, RandomnessTag, draw_randomness};
use lode_chain::store::Head;
use lode_chain::store::StateStore;
use lode_chain::types::{ActorId, Address, Epoch, TokenAmount};
use lode_chain::{Chain, ExitCode, Genesis, Policy};
use lode_proofs::porep::PorepPublic;
use lode_proofs::verifier::{
    ProofVerifier, VerifyError, WindowPostStatement, WinningPostStatement,
};
use serde::de::DeserializeOwned;

/// Accounts every harness has, each funded with [`START_BALANCE`].
pub const ACCOUNTS: [&str; 6] = ["owner", "worker", "client", "verifier", "root", "other"];
/// Genesis balance of each account.
pub const START_BALANCE: TokenAmount = TokenAmount::tokens(1000);

/// The beacon value of an epoch.
pub fn beacon(epoch: Epoch) -> [u8; 32] {
    *blake3::hash(&epoch.to_le_bytes()).as_bytes()
}

fn tag(t: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut h = blake3::Hasher::new_derive_key(t);
    for p in parts {
        h.update(p);
    }
    h.finalize().as_bytes().to_vec()
}

/// A fake seal proof: a hash of the statement. Only the fake verifier accepts it.
pub fn fake_seal_proof(p: &PorepPublic) -> Vec<Vec<u8>> {
    vec![tag(
        "lode/test/fake-seal",
        &[&p.replica_id().0, &p.comm_d.0, &p.comm_r.0, &p.seed.0],
    )]
}

/// A fake Window PoSt proof.
pub fn fake_window_proof(s: &WindowPostStatement) -> Vec<u8> {
    let mut parts: Vec<Vec<u8>> = vec![s.randomness.to_vec()];
    for x in &s.sectors {
        parts.push(x.sector_number.to_le_bytes().to_vec());
        parts.push(x.comm_r.0.to_vec());
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    tag("lode/test/fake-window", &refs)
}

/// A fake Winning PoSt proof.
pub fn fake_winning_proof(s: &WinningPostStatement) -> Vec<u8> {
    let mut parts: Vec<Vec<u8>> = vec![s.randomness.to_vec(), s.miner_id.to_le_bytes().to_vec()];
    for x in &s.sectors {
        parts.push(x.sector_number.to_le_bytes().to_vec());
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    tag("lode/test/fake-winning", &refs)
}

/// Test-only verifier: accepts exactly the fake proofs of the statement.
pub struct FakeVerifier;

impl ProofVerifier for FakeVerifier {
    fn verify_seal(&self, public: &PorepPublic, proofs: &[Vec<u8>]) -> Result<(), VerifyError> {
        if proofs == fake_seal_proof(public).as_slice() {
            Ok(())
        } else {
            Err(VerifyError::Statement("fake seal proof mismatch"))
        }
    }
    fn verify_window_post(&self, s: &WindowPostStatement, proof: &[u8]) -> Result<(), VerifyError> {
        if proof == fake_window_proof(s) {
            Ok(())
        } else {
            Err(VerifyError::Statement("fake window proof mismatch"))
        }
    }
    fn verify_winning_post(
        &self,
        s: &WinningPostStatement,
        proof: &[u8],
    ) -> Result<(), VerifyError> {
        if proof == fake_winning_proof(s) {
            Ok(())
        } else {
            Err(VerifyError::Statement("fake winning proof mismatch"))
        }
    }
}

/// The genesis of every harness: the [`ACCOUNTS`] with [`START_BALANCE`] each, "root" as the
/// verified registry's root, no miners.
pub fn devnet_genesis() -> Genesis {
    Genesis {
        accounts: ACCOUNTS
            .iter()
            .map(|n| (key(n).public_key(), START_BALANCE))
            .collect(),
        verifreg_root: key("root").public_key(),
        verifiers: Vec::new(),
        verified_clients: Vec::new(),
        beacon: beacon(0),
        miners: Vec::new(),
    }
}

/// A genesis with one funded account, the worker `worker` (1,000 LODE), and one 2 KiB miner it
/// works for (owner key seed `[10; 32]`, 10 LODE) with `sectors` empty sectors numbered from 0,
/// each expiring at the earliest epoch `policy` accepts; what the provider's tests run a real
/// node over. The miner's id is the genesis's first (`Genesis::miner_ids`).
pub fn one_miner_genesis(policy: &Policy, worker: &SecretKey, sectors: u64) -> Genesis {
    use lode_chain::genesis::{GenesisMiner, GenesisSector};
    use lode_proofs::piece::{PaddedPieceSize, comm_d};
    use lode_proofs::sector::SectorSize;
    let exp = *GenesisSector::expiration_range(policy).start();
    let size = SectorSize::S2KiB;
    let empty_comm_d = PaddedPieceSize::new(size.bytes())
        .and_then(|p| comm_d(p, &[]))
        .map(|c| c.0)
        .unwrap_or_default();
    Genesis {
        accounts: vec![(worker.public_key(), TokenAmount::tokens(1000))],
        verifreg_root: SecretKey::from_seed(&[1; 32]).public_key(),
        verifiers: Vec::new(),
        verified_clients: Vec::new(),
        beacon: [7; 32],
        miners: vec![GenesisMiner {
            owner: SecretKey::from_seed(&[10; 32]).public_key(),
            worker: worker.public_key(),
            sector_size: size,
            balance: TokenAmount::tokens(10),
            peer_id: Vec::new(),
            multiaddrs: Vec::new(),
            sectors: (0..sectors)
                .map(|n| GenesisSector {
                    sector_number: n,
                    comm_r: node(&format!("s{n}")),
                    comm_d: empty_comm_d,
                    expiration: exp,
                })
                .collect(),
        }],
    }
}

/// The key of a named account.
pub fn key(name: &str) -> SecretKey {
    SecretKey::from_seed(blake3::hash(name.as_bytes()).as_bytes())
}

/// A devnet chain with named accounts.
pub struct Harness {
    /// The chain under test.
    pub chain: Chain,
    /// The chain's rules (devnet).
    pub policy: Policy,
    /// Whether [`Harness::step`] checks the invariants after every epoch (the default).
    pub check_every_epoch: bool,
    /// Real sealing and Groth16 proving (with the real verifier), or `None` for fake proofs.
    pub real: Option<Box<RealProofs>>,
    /// Every input applied so far, in order, with the head after it, when `Some` (see
    /// [`Harness::replay`]).
    pub journal: Option<Vec<(Applied, Head)>>,
}

/// One epoch's input as the harness applied it, for replaying a run on another chain.
#[derive(Clone, Debug)]
pub enum Applied {
    /// Through [`Chain::apply_epoch`].
    Epoch(EpochInput),
    /// Through [`Chain::apply_tipset`].
    Tipset(Tipset),
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A fresh devnet chain in memory with the fake verifier.
    pub fn new() -> Self {
        Self::with(StateStore::memory(), Box::new(FakeVerifier))
    }

    /// A fresh devnet chain on `store` with `verifier`.
    pub fn with(store: StateStore, verifier: Box<dyn ProofVerifier>) -> Self {
        Self::from_genesis(store, &devnet_genesis(), verifier, None)
    }

    /// A devnet chain on `store` from `genesis` (e.g. [`devnet_genesis`] with miners added), with
    /// `verifier` and, for real proofs, the [`RealProofs`] that sealed its sectors.
    pub fn from_genesis(
        store: StateStore,
        genesis: &Genesis,
        verifier: Box<dyn ProofVerifier>,
        real: Option<Box<RealProofs>>,
    ) -> Self {
        let policy = Policy::devnet();
        let chain = Chain::genesis(store, policy.clone(), genesis, verifier).unwrap();
        let h = Harness {
            chain,
            policy,
            check_every_epoch: true,
            real,
            journal: None,
        };
        h.assert_invariants();
        h
    }

    /// A fresh devnet chain in memory that verifies real Groth16 proofs; the harness seals real
    /// 2 KiB sectors and proves with the cached insecure test parameters.
    pub fn real() -> Self {
        let mut h = Self::with(
            StateStore::memory(),
            Box::new(lode_proofs::verifier::SnarkVerifier::new(test_params())),
        );
        h.real = Some(Box::new(RealProofs::new()));
        h
    }

    /// The current (committed) epoch.
    pub fn epoch(&self) -> Epoch {
        self.chain.head().epoch
    }

    /// The id of a named account.
    pub fn id(&self, name: &str) -> ActorId {
        let pk = key(name).public_key();
        self.chain
            .view(|rt| rt.resolve(&Address::Bls(pk)))
            .unwrap()
            .unwrap_or_else(|| panic!("no account {name}"))
    }

    /// An actor's balance.
    pub fn balance(&self, id: ActorId) -> TokenAmount {
        self.chain
            .view(|rt| rt.actor(id))
            .unwrap()
            .map(|a| a.balance)
            .unwrap_or_default()
    }

    /// A decoded state record.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Option<T> {
        self.chain.view(|rt| rt.state.get(key)).unwrap()
    }

    /// A miner's state.
    pub fn miner_state(&self, m: ActorId) -> MinerState {
        self.get(&keys::miner_state(m)).unwrap()
    }

    /// A sector.
    pub fn sector(&self, m: ActorId, n: u64) -> Option<SectorOnChain> {
        self.get(&keys::sector(m, n))
    }

    /// A miner's power claim.
    pub fn claim(&self, m: ActorId) -> Claim {
        self.get(&keys::claim(m)).unwrap()
    }

    /// The economics as the next epoch's first operations see them.
    pub fn economics(&self) -> Economics {
        self.chain.view(|rt| rt.economics()).unwrap()
    }

    /// Fails if any invariant is broken.
    pub fn assert_invariants(&self) {
        let bad = check_invariants(self.chain.store(), &self.policy).unwrap();
        assert!(
            bad.is_empty(),
            "invariants broken at epoch {}: {bad:#?}",
            self.epoch()
        );
    }

    /// Applies the next epoch with these winners and messages.
    pub fn step(
        &mut self,
        blocks: Vec<BlockHeader>,
        messages: Vec<lode_chain::message::SignedMessage>,
    ) -> Vec<Receipt> {
        self.try_step(blocks, messages).unwrap()
    }

    /// Applies the next epoch, returning the executor's error instead of panicking.
    pub fn try_step(
        &mut self,
        blocks: Vec<BlockHeader>,
        messages: Vec<lode_chain::message::SignedMessage>,
    ) -> Result<Vec<Receipt>, lode_chain::ChainError> {
        let epoch = self.epoch() + 1;
        let input = EpochInput {
            epoch,
            beacon: beacon(epoch),
            blocks,
            messages,
        };
        let out = self.chain.apply_epoch(&input)?;
        if let Some(journal) = &mut self.journal {
            journal.push((Applied::Epoch(input), self.chain.head()));
        }
        if self.check_every_epoch {
            self.assert_invariants();
        }
        Ok(out.receipts)
    }

    /// Applies the next epoch from `blocks` through [`Chain::apply_tipset`] (each block's messages
    /// checked against its aggregate), with the harness's beacon.
    pub fn try_step_blocks(
        &mut self,
        blocks: Vec<Block>,
    ) -> Result<Vec<Receipt>, lode_chain::ChainError> {
        let epoch = self.epoch() + 1;
        let tipset = Tipset {
            epoch,
            beacon: beacon(epoch),
            blocks,
        };
        let out = self.chain.apply_tipset(&tipset)?;
        if let Some(journal) = &mut self.journal {
            journal.push((Applied::Tipset(tipset), self.chain.head()));
        }
        if self.check_every_epoch {
            self.assert_invariants();
        }
        Ok(out.receipts)
    }

    /// Applies `journal` (another harness's, from the same genesis) to this chain, checking after
    /// each input that the head — epoch and state root — is the one the journal recorded: a replay
    /// must reach the same state at every epoch. Panics at the first divergence, naming it.
    pub fn replay(&mut self, journal: &[(Applied, Head)]) {
        for (i, (input, want)) in journal.iter().enumerate() {
            match input {
                Applied::Epoch(input) => {
                    self.chain.apply_epoch(input).unwrap();
                }
                Applied::Tipset(tipset) => {
                    self.chain.apply_tipset(tipset).unwrap();
                }
            }
            assert_eq!(
                self.chain.head(),
                *want,
                "the replay diverged at its input {i} (epoch {})",
                want.epoch
            );
        }
    }

    /// Signs `header` again with the harness's "worker" key (after a field changed).
    pub fn resign(&self, header: &mut BlockHeader) {
        header.signature = key("worker").sign(&header.signing_bytes(&self.policy.network));
    }

    /// A block by the miner for the next epoch carrying `messages` — unsigned, their signatures
    /// aggregated into the header — if the miner wins it.
    pub fn try_full_block(
        &self,
        m: ActorId,
        winning_proof: impl Fn(&WinningPostStatement) -> Vec<u8>,
        messages: &[lode_chain::message::SignedMessage],
    ) -> Option<Block> {
        let mut header = self.try_block(m, winning_proof)?;
        let body = BlockMessages::from_signed(messages).unwrap();
        header.messages_root = body.root();
        header.bls_aggregate = body.bls_aggregate;
        self.resign(&mut header);
        Some(Block {
            header,
            messages: body.messages,
        })
    }

    /// Null rounds up to and including `epoch`.
    pub fn advance_to(&mut self, epoch: Epoch) {
        while self.epoch() < epoch {
            self.step(Vec::new(), Vec::new());
        }
    }

    /// Builds and signs a message from a named account (its next nonce, generous gas).
    pub fn message(
        &self,
        from: &str,
        to: Address,
        method: Method,
        value: TokenAmount,
    ) -> lode_chain::message::SignedMessage {
        let k = key(from);
        let from_id = self.id(from);
        let nonce = self
            .chain
            .view(|rt| rt.actor(from_id))
            .unwrap()
            .unwrap()
            .nonce;
        Message {
            from: Address::Id(from_id),
            to,
            nonce,
            value,
            method,
            gas_limit: 100_000_000,
            gas_price: self.policy.min_gas_price,
        }
        .sign(&self.policy.network, &k)
    }

    /// Sends one message in the next epoch; returns its receipt.
    pub fn send(
        &mut self,
        from: &str,
        to: impl Into<Address>,
        method: Method,
        value: TokenAmount,
    ) -> Receipt {
        let m = self.message(from, to.into(), method, value);
        self.step(Vec::new(), vec![m]).pop().unwrap()
    }

    /// Like [`Harness::send`], asserting success.
    pub fn send_ok(
        &mut self,
        from: &str,
        to: impl Into<Address>,
        method: Method,
        value: TokenAmount,
    ) -> Receipt {
        let r = self.send(from, to, method, value);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
        r
    }

    /// Creates a 2 KiB miner owned by "owner" with worker "worker", funded with `funds`.
    pub fn create_miner(&mut self, funds: TokenAmount) -> ActorId {
        let worker = Address::Id(self.id("worker"));
        let r = self.send_ok(
            "owner",
            lode_chain::actors::POWER,
            Method::Power(lode_chain::actors::power::PowerMethod::CreateMiner {
                worker,
                sector_size: lode_proofs::sector::SectorSize::S2KiB,
            }),
            funds,
        );
        postcard_id(&r.return_data)
    }

    /// Randomness as the chain draws it.
    pub fn randomness(&self, t: RandomnessTag, epoch: Epoch, entropy: &[u8]) -> [u8; 32] {
        draw_randomness(t, &beacon(epoch), epoch, entropy)
    }

    /// The next instance of deadline `index` of a miner that has not closed.
    pub fn deadline(&self, m: ActorId, index: u64) -> DeadlineInfo {
        let st = self.miner_state(m);
        DeadlineInfo::new(&self.policy, st.proving_period_start, index)
            .next_not_elapsed(&self.policy, self.epoch() + 1)
    }

    /// A block header by the miner's worker for the next epoch, if the miner wins it.
    pub fn try_block(
        &self,
        m: ActorId,
        winning_proof: impl Fn(&WinningPostStatement) -> Vec<u8>,
    ) -> Option<BlockHeader> {
        let epoch = self.epoch() + 1;
        let worker = key("worker");
        let entropy = m.0.to_le_bytes();
        let election = draw_randomness(RandomnessTag::Election, &beacon(epoch), epoch, &entropy);
        let election_proof = worker.sign(&election);
        let (qa, total) = self.chain.view(|rt| {
            let c = lode_chain::actors::power::claim(rt, m).unwrap().unwrap();
            let st = lode_chain::actors::power::load(rt).unwrap();
            (
                c.power.qa,
                lode_chain::actors::power::current_total(rt, &st).qa,
            )
        });
        let wins = win_count(
            &election_proof,
            qa,
            total,
            self.policy.expected_leaders_per_epoch,
            self.policy.max_win_count,
        );
        if wins == 0 {
            return None;
        }
        let sectors = self
            .chain
            .view(|rt| lode_chain::actors::miner::active_sectors(rt, m))
            .unwrap();
        let statement = WinningPostStatement {
            size: lode_proofs::sector::SectorSize::S2KiB,
            miner_id: m.0,
            randomness: draw_randomness(
                RandomnessTag::WinningPost,
                &beacon(epoch),
                epoch,
                &entropy,
            ),
            sectors,
        };
        let ticket = worker.sign(&draw_randomness(
            RandomnessTag::Ticket,
            &beacon(epoch),
            epoch,
            &entropy,
        ));
        let mut header = BlockHeader {
            epoch,
            miner: m,
            parents: Vec::new(),
            parent_weight: 0,
            ticket,
            timestamp: 0,
            parent_state_root: self.chain.head().root,
            beacon: beacon(epoch),
            messages_root: lode_chain::block::messages_root(&[]),
            bls_aggregate: None,
            election_proof,
            win_count: wins,
            winning_post: winning_proof(&statement),
            signature: worker.sign(b"placeholder"),
        };
        header.signature = worker.sign(&header.signing_bytes(&self.policy.network));
        Some(header)
    }
}

/// Decodes an actor id return value.
pub fn postcard_id(bytes: &[u8]) -> ActorId {
    postcard::from_bytes(bytes).unwrap()
}

/// Decodes a return value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> T {
    postcard::from_bytes(bytes).unwrap()
}

/// A canonical node from a label (fake commitments).
pub fn node(label: &str) -> [u8; 32] {
    lode_proofs::node::trunc254(*blake3::hash(label.as_bytes()).as_bytes()).0
}

/// CommD of a sector of `size` holding these `(CommP, size)` pieces.
pub fn comm_d(size: u64, pieces: &[([u8; 32], u64)]) -> [u8; 32] {
    use lode_proofs::piece::{PaddedPieceSize, PieceInfo};
    let pieces: Vec<PieceInfo> = pieces
        .iter()
        .map(|(c, s)| PieceInfo {
            comm_p: lode_proofs::node::Node(*c),
            size: PaddedPieceSize::new(*s).unwrap(),
        })
        .collect();
    lode_proofs::piece::comm_d(PaddedPieceSize::new(size).unwrap(), &pieces)
        .unwrap()
        .0
}

/// Pre-commit info for a fake-proof sector.
pub fn precommit_info(
    h: &Harness,
    n: u64,
    deals: Vec<u64>,
    pieces: &[([u8; 32], u64)],
    expiration: Epoch,
) -> PreCommitInfo {
    PreCommitInfo {
        sector_number: n,
        comm_r: node(&format!("comm_r {n}")),
        comm_d: comm_d(2048, pieces),
        seal_rand_epoch: h.epoch(),
        deal_ids: deals,
        expiration,
    }
}

/// Named sums for quick balance checks.
pub fn balances(h: &Harness, ids: &[ActorId]) -> BTreeMap<ActorId, TokenAmount> {
    ids.iter().map(|&i| (i, h.balance(i))).collect()
}

/// Sector lifecycle helpers (fake proofs).
impl Harness {
    /// The PoRep public inputs of a pre-committed sector.
    pub fn seal_public(&self, m: ActorId, n: u64) -> PorepPublic {
        use lode_chain::actors::miner::PreCommit;
        use lode_proofs::node::Node;
        use lode_proofs::sector::randomness_node;
        let pc: PreCommit = self.get(&keys::precommit(m, n)).expect("pre-committed");
        let entropy = m.0.to_le_bytes();
        let ticket = self.randomness(RandomnessTag::SealTicket, pc.info.seal_rand_epoch, &entropy);
        let seed = self.randomness(
            RandomnessTag::InteractiveSeed,
            pc.epoch + self.policy.pre_commit_challenge_delay,
            &entropy,
        );
        PorepPublic {
            size: lode_proofs::sector::SectorSize::S2KiB,
            miner_id: m.0,
            sector_number: n,
            ticket: randomness_node(ticket),
            seed: randomness_node(seed),
            comm_d: Node(pc.info.comm_d),
            comm_r: Node(pc.info.comm_r),
        }
    }

    /// The PoRep proofs of a pre-committed sector: fake, or Commit1 + Commit2 of the sealed sector.
    pub fn seal_proof(&self, m: ActorId, n: u64) -> Vec<Vec<u8>> {
        let public = self.seal_public(m, n);
        match &self.real {
            Some(real) => real.seal_proof(m, n, &public),
            None => fake_seal_proof(&public),
        }
    }

    /// A Window PoSt proof for the statement: fake, or proven from the sealed sectors.
    pub fn window_proof(&self, m: ActorId, statement: &WindowPostStatement) -> Vec<u8> {
        match &self.real {
            Some(real) => real.window_proof(m, statement),
            None => fake_window_proof(statement),
        }
    }

    /// A Winning PoSt proof for the statement: fake, or proven from the sealed sectors.
    pub fn winning_proof(&self, m: ActorId, statement: &WinningPostStatement) -> Vec<u8> {
        match &self.real {
            Some(real) => real.winning_proof(m, statement),
            None => fake_winning_proof(statement),
        }
    }

    /// A block by the miner for the next epoch if it wins, with the harness's kind of proofs.
    pub fn block(&self, m: ActorId) -> Option<BlockHeader> {
        self.try_block(m, |s| self.winning_proof(m, s))
    }

    /// The CommP of a test piece: fake (a hash of the label), or of real data derived from it.
    pub fn piece(&mut self, label: &str, size: u64) -> [u8; 32] {
        match self.real.as_mut() {
            Some(real) => real.piece(label, size),
            None => node(label),
        }
    }

    /// The earliest epoch a pre-committed sector can be proven.
    pub fn seed_ready(&self, m: ActorId, n: u64) -> Epoch {
        let pc: lode_chain::actors::miner::PreCommit = self.get(&keys::precommit(m, n)).unwrap();
        pc.epoch + self.policy.pre_commit_challenge_delay + 1
    }

    /// A sector expiration comfortably inside the rules.
    pub fn cc_expiration(&self) -> Epoch {
        self.epoch()
            + self.policy.max_prove_commit_duration
            + self.policy.min_sector_expiration
            + 10 * self.policy.epochs_in_day()
    }

    /// Pre-commits sector `n` with `deals` (their pieces give comm_d).
    pub fn precommit(
        &mut self,
        m: ActorId,
        n: u64,
        deals: Vec<u64>,
        pieces: &[([u8; 32], u64)],
        expiration: Epoch,
    ) -> Receipt {
        let mut info = precommit_info(self, n, deals, pieces, expiration);
        let ticket = self.randomness(
            RandomnessTag::SealTicket,
            info.seal_rand_epoch,
            &m.0.to_le_bytes(),
        );
        if let Some(real) = self.real.as_mut() {
            info.comm_r = real.seal(m, n, pieces, ticket);
        }
        self.send(
            "worker",
            m,
            Method::Miner(lode_chain::actors::miner::MinerMethod::PreCommitSectors(
                vec![info],
            )),
            TokenAmount::ZERO,
        )
    }

    /// Waits for the seed and proves sector `n` with a fake proof.
    pub fn prove_commit(&mut self, m: ActorId, n: u64) -> Receipt {
        let ready = self.seed_ready(m, n);
        self.advance_to(ready - 1);
        let proofs = self.seal_proof(m, n);
        self.send(
            "worker",
            m,
            Method::Miner(lode_chain::actors::miner::MinerMethod::ProveCommitSector {
                sector_number: n,
                proofs,
            }),
            TokenAmount::ZERO,
        )
    }

    /// Pre-commits and proves a committed-capacity sector; returns it.
    pub fn onboard_cc(&mut self, m: ActorId, n: u64) -> SectorOnChain {
        let exp = self.cc_expiration();
        let r = self.precommit(m, n, Vec::new(), &[], exp);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
        let r = self.prove_commit(m, n);
        assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
        self.sector(m, n).unwrap()
    }

    /// The Window PoSt statement for a partition, given skipped sectors, as the chain will build it.
    pub fn window_statement(
        &self,
        m: ActorId,
        deadline: u64,
        partition: u64,
        skipped: &std::collections::BTreeSet<u64>,
    ) -> WindowPostStatement {
        use lode_chain::actors::miner::Deadline;
        use lode_proofs::node::Node;
        use lode_proofs::post::PublicSector;
        let dl: Deadline = self.get(&keys::deadline(m, deadline)).unwrap();
        let part = &dl.partitions[partition as usize];
        let sectors = part
            .sectors
            .iter()
            .filter(|s| {
                !skipped.contains(s) && (!part.faults.contains(s) || part.recoveries.contains(s))
            })
            .map(|&s| PublicSector {
                sector_number: s,
                comm_r: Node(self.sector(m, s).unwrap().comm_r),
            })
            .collect();
        let info = self.deadline(m, deadline);
        WindowPostStatement {
            size: lode_proofs::sector::SectorSize::S2KiB,
            randomness: self.randomness(
                RandomnessTag::WindowPost,
                info.challenge,
                &m.0.to_le_bytes(),
            ),
            sectors,
        }
    }

    /// Advances into the deadline's window and submits a (fake) PoSt for one partition.
    pub fn submit_post(
        &mut self,
        m: ActorId,
        deadline: u64,
        partition: u64,
        skipped: &[u64],
    ) -> Receipt {
        use lode_chain::actors::miner::{MinerMethod, PostPartition, WindowPostParams};
        let info = self.deadline(m, deadline);
        self.advance_to(info.open - 1);
        let skipped: std::collections::BTreeSet<u64> = skipped.iter().copied().collect();
        let proof = self.window_proof(m, &self.window_statement(m, deadline, partition, &skipped));
        self.send(
            "worker",
            m,
            Method::Miner(MinerMethod::SubmitWindowPost(WindowPostParams {
                deadline,
                partitions: vec![PostPartition {
                    index: partition,
                    skipped,
                }],
                proofs: vec![proof],
            })),
            TokenAmount::ZERO,
        )
    }
}

/// Groth16 parameters no proof is ever made with (every point the generator, no queries): for
/// tests whose provers never reach a proof, so that they need not load real parameters.
pub fn unused_params() -> std::sync::Arc<groth16::Parameters<bls12_381::Bls12>> {
    use bls12_381::{G1Affine, G2Affine};
    use std::sync::Arc;
    let (g1, g2) = (G1Affine::generator(), G2Affine::generator());
    Arc::new(groth16::Parameters {
        vk: groth16::VerifyingKey {
            alpha_g1: g1,
            beta_g1: g1,
            beta_g2: g2,
            gamma_g2: g2,
            delta_g1: g1,
            delta_g2: g2,
            ic: Vec::new(),
        },
        h: Arc::new(Vec::new()),
        l: Arc::new(Vec::new()),
        a: Arc::new(Vec::new()),
        b_g1: Arc::new(Vec::new()),
        b_g2: Arc::new(Vec::new()),
    })
}

/// The insecure test parameters, generated once under `target/`.
pub fn test_params() -> lode_proofs::params::ParamStore {
    lode_proofs::params::ParamStore::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/lode-test-params"
    ))
}

/// Real 2 KiB sealing and proving for the harness. Proofs are cached by statement (in memory and
/// under `target/lode-test-proofs`), so scenarios that replay the same statement prove it once; the
/// chain still verifies every one.
pub struct RealProofs {
    dir: tempfile::TempDir,
    params: std::sync::Arc<Params>,
    pieces: BTreeMap<[u8; 32], Vec<u8>>,
    sectors: BTreeMap<(ActorId, u64), lode_sealing::post::SealedSector>,
}

/// The three 2 KiB parameter sets (insecure test parameters from [`test_params`]).
pub struct Params {
    /// PoRep (Commit2).
    pub porep: groth16::Parameters<bls12_381::Bls12>,
    /// Window PoSt.
    pub window: groth16::Parameters<bls12_381::Bls12>,
    /// Winning PoSt.
    pub winning: groth16::Parameters<bls12_381::Bls12>,
}

/// Loads (or generates, once) the parameters, shared by every test of the process: tests run in
/// parallel, and two of them must not generate the same set at once (on a fresh clone generating
/// the PoRep set takes minutes). Every test that needs real parameters takes them from here.
pub fn shared_params() -> std::sync::Arc<Params> {
    use lode_proofs::circuit::porep::{self as porep_circuit, PorepCircuit};
    use lode_proofs::circuit::post::{PostCircuit, PostKind};
    static PARAMS: std::sync::OnceLock<std::sync::Arc<Params>> = std::sync::OnceLock::new();
    PARAMS
        .get_or_init(|| {
            let size = lode_proofs::sector::SectorSize::S2KiB;
            let store = test_params();
            let get = |id, kind: Option<PostKind>| {
                match kind {
                    None => store.get_or_generate_insecure(&id, || PorepCircuit {
                        size,
                        witness: None,
                    }),
                    Some(kind) => store.get_or_generate_insecure(&id, || PostCircuit {
                        kind,
                        size,
                        witness: None,
                    }),
                }
                .unwrap()
                .0
            };
            std::sync::Arc::new(Params {
                porep: get(porep_circuit::params_id(size), None),
                window: get(PostKind::Window.params_id(size), Some(PostKind::Window)),
                winning: get(PostKind::Winning.params_id(size), Some(PostKind::Winning)),
            })
        })
        .clone()
}

impl Default for RealProofs {
    fn default() -> Self {
        Self::new()
    }
}

impl RealProofs {
    /// Real sealing and proving with the [`shared_params`], for [`Harness::from_genesis`].
    pub fn new() -> Self {
        RealProofs {
            dir: tempfile::tempdir().unwrap(),
            params: shared_params(),
            pieces: BTreeMap::new(),
            sectors: BTreeMap::new(),
        }
    }

    /// Seals an empty 2 KiB sector `n` of miner `m` with `ticket`, as a genesis miner's sector is
    /// sealed before the chain exists; returns `(comm_r, comm_d)` from the sealer's records.
    pub fn preseal(&mut self, m: ActorId, n: u64, ticket: [u8; 32]) -> ([u8; 32], [u8; 32]) {
        self.seal_sector(m, n, &[], ticket)
    }

    /// Deterministic payload for a piece label and its CommP.
    fn piece(&mut self, label: &str, size: u64) -> [u8; 32] {
        let len = (size / 128 * 127) as usize;
        let mut data = vec![0u8; len];
        blake3::Hasher::new_derive_key("lode/test/piece-data")
            .update(label.as_bytes())
            .finalize_xof()
            .fill(&mut data);
        let comm_p = lode_proofs::piece::commp_of_bytes(&data)
            .unwrap()
            .info()
            .comm_p
            .0;
        self.pieces.insert(comm_p, data);
        comm_p
    }

    /// Seals sector `n` of miner `m` from the pieces (in order) with `ticket`; returns `comm_r`.
    fn seal(
        &mut self,
        m: ActorId,
        n: u64,
        pieces: &[([u8; 32], u64)],
        ticket: [u8; 32],
    ) -> [u8; 32] {
        self.seal_sector(m, n, pieces, ticket).0
    }

    /// Seals sector `n` of miner `m` from the pieces (in order) with `ticket`; returns `comm_r`
    /// and `comm_d`.
    fn seal_sector(
        &mut self,
        m: ActorId,
        n: u64,
        pieces: &[([u8; 32], u64)],
        ticket: [u8; 32],
    ) -> ([u8; 32], [u8; 32]) {
        use lode_sealing::seal::{self, SectorId, no_progress};
        let id = SectorId {
            size: lode_proofs::sector::SectorSize::S2KiB,
            miner_id: m.0,
            sector_number: n,
        };
        let dir = lode_sealing::sector_dir::SectorDir::create(
            &self.dir.path().join(format!("{}-{n}", m.0)),
        )
        .unwrap();
        for (comm_p, _) in pieces {
            let data = self
                .pieces
                .get(comm_p)
                .expect("pieces come from Harness::piece")
                .clone();
            let rec = seal::add_piece(&dir, &id, &data[..], data.len() as u64).unwrap();
            assert_eq!(rec.comm_p.0.0, *comm_p);
        }
        let randomness = lode_proofs::sector::randomness_node(ticket);
        let pc1 = seal::pre_commit1(
            &dir,
            &id,
            randomness,
            &self.dir.path().join("cache"),
            None,
            &mut no_progress,
        )
        .unwrap();
        let pc2 = seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
        self.sectors
            .insert((m, n), lode_sealing::post::SealedSector { id, dir });
        (pc2.comm_r.0.0, pc1.comm_d.0.0)
    }

    /// The proof of the statement `key`: read from `target/lode-test-proofs`, else made and stored
    /// there. Made at most once per process: a test asking for a statement that another test is
    /// proving waits for that proof (scenarios replay the same first epochs, so on a fresh clone
    /// they often ask at the same time).
    fn cached(key: &[u8], make: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
        use std::sync::{Arc, Mutex, OnceLock, PoisonError};
        type Slot = Arc<OnceLock<Vec<u8>>>;
        static SLOTS: Mutex<BTreeMap<[u8; 32], Slot>> = Mutex::new(BTreeMap::new());
        let hash = blake3::hash(key);
        let slot = Arc::clone(
            SLOTS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(*hash.as_bytes())
                .or_default(),
        );
        slot.get_or_init(|| {
            let dir = std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/lode-test-proofs"
            ));
            let path = dir.join(hash.to_hex().as_str());
            if let Ok(bytes) = std::fs::read(&path) {
                return bytes;
            }
            let bytes = make();
            let _ = std::fs::create_dir_all(dir);
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, &bytes).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
            bytes
        })
        .clone()
    }

    fn seal_proof(&self, m: ActorId, n: u64, public: &PorepPublic) -> Vec<Vec<u8>> {
        use lode_proofs::circuit::porep as porep_circuit;
        let sector = &self.sectors[&(m, n)];
        let key = [
            b"porep".as_slice(),
            &public.replica_id().0,
            &public.comm_d.0,
            &public.comm_r.0,
            &public.seed.0,
        ]
        .concat();
        let bytes = Self::cached(&key, || {
            let (sealed, vanilla) =
                lode_sealing::seal::commit1(&sector.dir, &sector.id, public.seed).unwrap();
            assert_eq!(
                &sealed, public,
                "the sealer and the chain agree on the statement"
            );
            let mut rng = porep_circuit::params_id(public.size).insecure_rng();
            porep_circuit::prove(&self.params.porep, public, &vanilla, &mut rng)
                .unwrap()
                .concat()
        });
        bytes.chunks(192).map(<[u8]>::to_vec).collect()
    }

    fn sealed(
        &self,
        m: ActorId,
        numbers: impl Iterator<Item = u64>,
    ) -> Vec<lode_sealing::post::SealedSector> {
        numbers.map(|n| self.sectors[&(m, n)].clone()).collect()
    }

    fn window_proof(&self, m: ActorId, s: &WindowPostStatement) -> Vec<u8> {
        use lode_proofs::circuit::post::{self as post_circuit, PostKind};
        if s.sectors.is_empty() {
            return Vec::new(); // nothing to prove: the chain refuses the PoSt
        }
        let mut key = b"window".to_vec();
        key.extend_from_slice(&s.randomness);
        for x in &s.sectors {
            key.extend_from_slice(&x.sector_number.to_le_bytes());
            key.extend_from_slice(&x.comm_r.0);
        }
        Self::cached(&key, || {
            let sealed = self.sealed(m, s.sectors.iter().map(|x| x.sector_number));
            let outcome = lode_sealing::post::prove_window(
                &sealed,
                &lode_proofs::sector::randomness_node(s.randomness),
            );
            assert!(outcome.faulty.is_empty());
            let vanilla = lode_proofs::post::window_partitions(s.size, &outcome.proofs)
                .pop()
                .unwrap();
            let mut rng = PostKind::Window.params_id(s.size).insecure_rng();
            post_circuit::prove(
                &self.params.window,
                PostKind::Window,
                s.size,
                &vanilla,
                &mut rng,
            )
            .unwrap()
        })
    }

    fn winning_proof(&self, m: ActorId, s: &WinningPostStatement) -> Vec<u8> {
        use lode_proofs::circuit::post::{self as post_circuit, PostKind};
        if s.sectors.is_empty() {
            return Vec::new();
        }
        let mut key = b"winning".to_vec();
        key.extend_from_slice(&s.randomness);
        key.extend_from_slice(&s.miner_id.to_le_bytes());
        for x in &s.sectors {
            key.extend_from_slice(&x.sector_number.to_le_bytes());
            key.extend_from_slice(&x.comm_r.0);
        }
        Self::cached(&key, || {
            let sealed = self.sealed(m, s.sectors.iter().map(|x| x.sector_number));
            let vanilla = lode_sealing::post::prove_winning(
                &sealed,
                s.miner_id,
                &lode_proofs::sector::randomness_node(s.randomness),
            )
            .unwrap();
            let mut rng = PostKind::Winning.params_id(s.size).insecure_rng();
            post_circuit::prove(
                &self.params.winning,
                PostKind::Winning,
                s.size,
                &[vanilla],
                &mut rng,
            )
            .unwrap()
        })
    }
}
