//! BLAKE3 gadgets: the compression function, `H(tag, m)` for one-chunk messages, the tree D parent hash,
//! tree D inclusion paths and SDR labels, each the in-circuit twin of a native function of this crate.
//!
//! # Bit order
//!
//! Every byte string (a message, a chaining value, a node, a hash output) is a vector of [`Boolean`]s with
//! **the bits of each byte least significant first, and the bytes in message order**: bit `8·i + j` is bit
//! `j` of byte `i`. BLAKE3 reads its words little-endian, so word `w` of a block is simply bits
//! `32·w .. 32·w + 32`, least significant first, with no shuffling at all. And since a node is the
//! little-endian encoding of an `Fr` element, bit `k` of a node's vector has weight `2^k` in the field
//! element: packing a node into a number is the linear combination `Σ 2^k · bit_k`, free of constraints
//! until it is bound to a variable. Any other order would make packing or the word split a permutation to
//! keep straight; this one makes both the identity.
//!
//! # Nodes are 254-bit numbers
//!
//! Every node these gadgets hash is below `2^254`: labels and tree D parents are `trunc254` outputs, and
//! data nodes are fr32-padded (their two top bits are zero). So a node is allocated as 254 Boolean
//! variables plus the two top bits as constant `false` ([`alloc_node_bits`], [`num_to_node_bits`]), and
//! hash outputs come back with those two bits constant `false` too. Because `2^254 < r`, the packing
//! `Σ 2^k · bit_k` of 254 bits never wraps around the modulus: it is an injective map from bit vectors to
//! field elements, so constraining it equal to an [`AllocatedNum`] pins down the bits uniquely. That is
//! sound without bellman's strict 255-bit decomposition (`to_bits_le_strict`, which needs extra
//! constraints to rule out the aliases `x + r < 2^255`) and cheaper; the only numbers it cannot represent
//! are those `≥ 2^254`, which are never valid nodes, so a witness holding one leaves the system unsatisfied.
//!
//! # Costs
//!
//! A compression is 7 rounds of 8 mixing functions; a mixing function is four 32-bit XORs (one
//! constraint per bit, free when one side is a constant) and four modular additions. An addition
//! allocates the bits of the full sum (33 or 34 of them, one Boolean constraint each) and its equality
//! with the operands' linear combination is batched with others into a single constraint through
//! bellman's [`MultiEq`], the technique of bellman's BLAKE2s gadget. Constant words cost nothing: the
//! IV, counter, block length and flags words are constants of every compression, so part of the first
//! round's XORs are free, and with a constant key (the tag's key is the chaining value of the first
//! block) so are the first round's XORs against the key. Measured (the `constraint_counts` test):
//!
//! | gadget | constraints |
//! |---|---|
//! | [`compress`], chaining value and block allocated | 14,832 |
//! | [`tree_d_parent`] (one compression, constant key) | 14,701 |
//! | [`label`] (8 compressions; inputs already bits) | 118,488 |
//! | [`tree_d_root`], height 6 (2 KiB sector) | 90,034 |
//! | [`tree_d_root`], height 18 (8 MiB sector) | 269,590 |
//!
//! A tree D level is 14,963: the sibling's 254 bits ([`alloc_node_bits`]), 8 for ordering the pair and
//! the parent hash; the path counts add the leaf's unpacking (255) and the root's packing (1), not the
//! index bits (the caller's). A label whose replica id and 14 parents arrive as numbers adds 15
//! unpackings of 255. For comparison, SHA-256 costs about 27k constraints per compression.

use bellman::gadgets::boolean::{AllocatedBit, Boolean};
use bellman::gadgets::multieq::MultiEq;
use bellman::gadgets::num::AllocatedNum;
use bellman::{ConstraintSystem, LinearCombination, SynthesisError, Variable};
use bls12_381::Scalar;
use ff::{Field, PrimeField};

use crate::graph::DEGREE;
use crate::hash::{Tag, key};
use crate::node::{NODE_SIZE, Node};

/// Booleans in a node, a chaining value or a hash output: 32 bytes.
pub const NODE_BITS: usize = 8 * NODE_SIZE;
/// Booleans of a node that may be nonzero; the two above them are always zero.
pub const NODE_VALUE_BITS: usize = 254;
/// Booleans in a BLAKE3 block (64 bytes).
pub const BLOCK_BITS: usize = 512;
/// Blocks in one BLAKE3 chunk: the longest message [`hash_blocks`] takes.
pub const MAX_BLOCKS: usize = 16;

/// BLAKE3 flag: the first block of a chunk.
pub const CHUNK_START: u8 = 1;
/// BLAKE3 flag: the last block of a chunk.
pub const CHUNK_END: u8 = 1 << 1;
/// BLAKE3 flag: the compression that produces the root output.
pub const ROOT: u8 = 1 << 3;
/// BLAKE3 flag: keyed hashing mode (every compression of `H(tag, m)`).
pub const KEYED_HASH: u8 = 1 << 4;

/// BLAKE3's IV (the same words as SHA-256's and BLAKE2s's).
const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];

/// Round `r + 1` reads message word `PERMUTATION[i]` of round `r` where round `r` read word `i`.
const PERMUTATION: [usize; 16] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];

const ROUNDS: usize = 7;

/// The state words `(a, b, c, d)` of the eight mixing functions of a round: four columns, four diagonals.
const LANES: [(usize, usize, usize, usize); 8] = [
    (0, 4, 8, 12),
    (1, 5, 9, 13),
    (2, 6, 10, 14),
    (3, 7, 11, 15),
    (0, 5, 10, 15),
    (1, 6, 11, 12),
    (2, 7, 8, 13),
    (3, 4, 9, 14),
];

/// A 32-bit word as Booleans, least significant first, with its value when every bit's value is known.
#[derive(Clone)]
struct Word {
    bits: Vec<Boolean>,
    value: Option<u32>,
}

impl Word {
    fn constant(value: u32) -> Self {
        Word {
            bits: (0..32)
                .map(|i| Boolean::constant((value >> i) & 1 == 1))
                .collect(),
            value: Some(value),
        }
    }

    /// `bits` must hold 32 Booleans.
    fn from_bits(bits: &[Boolean]) -> Self {
        debug_assert_eq!(bits.len(), 32);
        let value = bits.iter().enumerate().try_fold(0u32, |acc, (i, b)| {
            b.get_value().map(|v| acc | (u32::from(v) << i))
        });
        Word {
            bits: bits.to_vec(),
            value,
        }
    }

    /// The word as an addition operand: its bits' weighted sum.
    fn operand(&self, one: Variable) -> Operand {
        if let (true, Some(v)) = (self.bits.iter().all(Boolean::is_constant), self.value) {
            return Operand::constant(v, one);
        }
        let mut lc = LinearCombination::zero();
        let mut max = 0u32;
        let mut coeff = Scalar::ONE;
        for (i, bit) in self.bits.iter().enumerate() {
            lc = lc + &bit.lc(one, coeff);
            if !matches!(bit, Boolean::Constant(false)) {
                max |= 1 << i;
            }
            coeff = coeff.double();
        }
        Operand {
            lc,
            value: self.value,
            max,
            constant: false,
        }
    }

    /// Bitwise XOR: one constraint per bit, none where either side is a constant.
    fn xor<CS: ConstraintSystem<Scalar>>(
        &self,
        mut cs: CS,
        other: &Word,
    ) -> Result<Word, SynthesisError> {
        let bits = self
            .bits
            .iter()
            .zip(&other.bits)
            .enumerate()
            .map(|(i, (a, b))| Boolean::xor(cs.namespace(|| format!("bit {i}")), a, b))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Word {
            bits,
            value: self.value.zip(other.value).map(|(a, b)| a ^ b),
        })
    }

    /// Rotation to the right: a relabelling of the bits, free.
    fn rotr(mut self, by: u32) -> Word {
        self.bits.rotate_left(by as usize);
        self.value = self.value.map(|v| v.rotate_right(by));
        self
    }
}

/// An addend of a modular addition: a linear combination whose value is known to be an integer in
/// `0..=max`. Words made of Booleans are operands, and so are the words the Merkle gadget selects
/// arithmetically from two such words (see [`ordered_pair`]), which never get bits of their own.
#[derive(Clone)]
struct Operand {
    lc: LinearCombination<Scalar>,
    value: Option<u32>,
    max: u32,
    constant: bool,
}

impl Operand {
    fn constant(value: u32, one: Variable) -> Self {
        let lc = if value == 0 {
            LinearCombination::zero()
        } else {
            LinearCombination::zero() + (Scalar::from(u64::from(value)), one)
        };
        Operand {
            lc,
            value: Some(value),
            max: value,
            constant: true,
        }
    }
}

/// `Σ operands mod 2^32`. The sum's bits are allocated (as many as the largest possible sum needs, one
/// Boolean constraint each) and the equality `Σ operands = Σ 2^i · bit_i` goes to the [`MultiEq`] batch.
/// Both sides are integers below `2^n` for the `n` bits allocated, so packing several such equalities
/// into one field element, as `MultiEq` does, cannot let one carry into another. A sum of constants is
/// a constant and costs nothing.
fn add<CS, M>(mut cs: M, operands: &[&Operand]) -> Result<Word, SynthesisError>
where
    CS: ConstraintSystem<Scalar>,
    M: ConstraintSystem<Scalar, Root = MultiEq<Scalar, CS>>,
{
    let mut max = 0u64;
    let mut value = Some(0u64);
    let mut lc = LinearCombination::zero();
    let mut constant = true;
    for op in operands {
        max += u64::from(op.max);
        value = value.zip(op.value).map(|(s, v)| s + u64::from(v));
        lc = lc + &op.lc;
        constant &= op.constant;
    }
    if let (true, Some(v)) = (constant, value) {
        return Ok(Word::constant(v as u32));
    }
    let width = (u64::BITS - max.leading_zeros()) as usize;
    let mut bits = Vec::with_capacity(width.max(32));
    let mut sum = LinearCombination::zero();
    let mut coeff = Scalar::ONE;
    for i in 0..width {
        let bit = AllocatedBit::alloc(
            cs.namespace(|| format!("sum bit {i}")),
            value.map(|v| (v >> i) & 1 == 1),
        )?;
        sum = sum + (coeff, bit.get_variable());
        coeff = coeff.double();
        bits.push(Boolean::from(bit));
    }
    cs.get_root().enforce_equal(width, &lc, &sum);
    // The carries above bit 31 are dropped: that is the reduction mod 2^32.
    bits.truncate(32);
    bits.resize(32, Boolean::constant(false));
    Ok(Word {
        bits,
        value: value.map(|v| v as u32),
    })
}

/// BLAKE3's mixing function `G` on state words `a, b, c, d` with message words `x, y`.
fn mix<CS, M>(
    mut cs: M,
    v: &mut [Word],
    (a, b, c, d): (usize, usize, usize, usize),
    x: &Operand,
    y: &Operand,
) -> Result<(), SynthesisError>
where
    CS: ConstraintSystem<Scalar>,
    M: ConstraintSystem<Scalar, Root = MultiEq<Scalar, CS>>,
{
    let one = M::one();
    v[a] = add(
        cs.namespace(|| "a + b + x"),
        &[&v[a].operand(one), &v[b].operand(one), x],
    )?;
    v[d] = v[d].xor(cs.namespace(|| "d ^ a (1)"), &v[a])?.rotr(16);
    v[c] = add(
        cs.namespace(|| "c + d (1)"),
        &[&v[c].operand(one), &v[d].operand(one)],
    )?;
    v[b] = v[b].xor(cs.namespace(|| "b ^ c (1)"), &v[c])?.rotr(12);
    v[a] = add(
        cs.namespace(|| "a + b + y"),
        &[&v[a].operand(one), &v[b].operand(one), y],
    )?;
    v[d] = v[d].xor(cs.namespace(|| "d ^ a (2)"), &v[a])?.rotr(8);
    v[c] = add(
        cs.namespace(|| "c + d (2)"),
        &[&v[c].operand(one), &v[d].operand(one)],
    )?;
    v[b] = v[b].xor(cs.namespace(|| "b ^ c (2)"), &v[c])?.rotr(7);
    Ok(())
}

/// The compression function on words: returns the 256 bits of the output chaining value
/// `v[i] ^ v[i + 8]`, with the two top bits constant `false` (and not computed) when `truncate`.
fn compress_words<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    cv: &[Word],
    msg: &[Operand],
    block_len: u8,
    counter: u64,
    flags: u8,
    truncate: bool,
) -> Result<Vec<Boolean>, SynthesisError> {
    debug_assert_eq!(cv.len(), 8);
    debug_assert_eq!(msg.len(), 16);
    let mut v: Vec<Word> = cv.to_vec();
    v.extend(IV[..4].iter().map(|&w| Word::constant(w)));
    v.push(Word::constant(counter as u32));
    v.push(Word::constant((counter >> 32) as u32));
    v.push(Word::constant(u32::from(block_len)));
    v.push(Word::constant(u32::from(flags)));
    {
        // Dropping the MultiEq at the end of this scope flushes its last batched equality.
        let mut cs = MultiEq::new(cs.namespace(|| "rounds"));
        let mut schedule: [usize; 16] = core::array::from_fn(|i| i);
        for round in 0..ROUNDS {
            let mut cs = cs.namespace(|| format!("round {round}"));
            for (k, &lane) in LANES.iter().enumerate() {
                mix(
                    cs.namespace(|| format!("g {k}")),
                    &mut v,
                    lane,
                    &msg[schedule[2 * k]],
                    &msg[schedule[2 * k + 1]],
                )?;
            }
            schedule = core::array::from_fn(|i| schedule[PERMUTATION[i]]);
        }
    }
    let mut out = Vec::with_capacity(NODE_BITS);
    for i in 0..8 {
        let mut cs = cs.namespace(|| format!("output word {i}"));
        for (j, (a, b)) in v[i].bits.iter().zip(&v[i + 8].bits).enumerate() {
            if truncate && 32 * i + j >= NODE_VALUE_BITS {
                out.push(Boolean::constant(false));
            } else {
                out.push(Boolean::xor(cs.namespace(|| format!("bit {j}")), a, b)?);
            }
        }
    }
    Ok(out)
}

/// `H(tag, m)` for a message of whole blocks given as operands (16 per block, 1 to 16 blocks).
fn hash_words<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    tag: Tag,
    msg: &[Operand],
) -> Result<Vec<Boolean>, SynthesisError> {
    debug_assert!(msg.len().is_multiple_of(16) && (16..=16 * MAX_BLOCKS).contains(&msg.len()));
    let blocks = msg.len() / 16;
    let mut cv: Vec<Word> = key(tag)
        .chunks_exact(4)
        .map(|w| Word::constant(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
        .collect();
    let mut out = Vec::new();
    for (i, block) in msg.chunks_exact(16).enumerate() {
        let last = i + 1 == blocks;
        let mut flags = KEYED_HASH;
        if i == 0 {
            flags |= CHUNK_START;
        }
        if last {
            flags |= CHUNK_END | ROOT;
        }
        out = compress_words(
            cs.namespace(|| format!("block {i}")),
            &cv,
            block,
            64,
            0,
            flags,
            last,
        )?;
        cv = out.chunks_exact(32).map(Word::from_bits).collect();
    }
    Ok(out)
}

/// Operands of the words of a bit vector (whole words).
fn operands(bits: &[Boolean], one: Variable) -> impl Iterator<Item = Operand> + '_ {
    bits.chunks_exact(32)
        .map(move |w| Word::from_bits(w).operand(one))
}

/// Constant Booleans for some bytes, in this module's bit order.
pub fn constant_bits(bytes: &[u8]) -> Vec<Boolean> {
    bytes
        .iter()
        .flat_map(|&byte| (0..8).map(move |j| Boolean::constant((byte >> j) & 1 == 1)))
        .collect()
}

/// The constant chaining value that starts `H(tag, ·)`: the bits of `K(tag)`.
pub fn key_bits(tag: Tag) -> Vec<Boolean> {
    constant_bits(key(tag))
}

/// The BLAKE3 compression function, returning the 256 bits of the output chaining value
/// (`v[i] ^ v[i + 8]` for `i < 8`), in this module's bit order.
///
/// `cv` is the input chaining value as 256 Booleans (word `i` is `cv[32i..32i + 32]`, least significant
/// bit first, which is also what `UInt32::into_bits` gives for each word); constant Booleans (e.g.
/// [`key_bits`]) cost nothing. `block` is the 64-byte block as 512 Booleans. `block_len`, `counter` and
/// `flags` are constants, as in the native `compress_in_place`.
///
/// # Panics
/// If `cv` does not hold 256 Booleans or `block` 512 (a caller bug).
pub fn compress<CS: ConstraintSystem<Scalar>>(
    cs: CS,
    cv: &[Boolean],
    block: &[Boolean],
    block_len: u8,
    counter: u64,
    flags: u8,
) -> Result<Vec<Boolean>, SynthesisError> {
    assert_eq!(
        cv.len(),
        NODE_BITS,
        "compress: a chaining value is 256 bits"
    );
    assert_eq!(block.len(), BLOCK_BITS, "compress: a block is 512 bits");
    let one = CS::one();
    let cv: Vec<Word> = cv.chunks_exact(32).map(Word::from_bits).collect();
    let msg: Vec<Operand> = operands(block, one).collect();
    compress_words(cs, &cv, &msg, block_len, counter, flags, false)
}

/// `H(tag, m) = trunc254(keyed_hash(K(tag), m))` for a message of 1 to 16 whole blocks (one chunk), as
/// the native `hash::hash_blocks` computes it; the key is a constant. Returns the 256 output bits with the
/// two top bits constant `false`.
///
/// # Panics
/// If `message.len()` is not a multiple of 512 between 512 and 8192 (a caller bug).
pub fn hash_blocks<CS: ConstraintSystem<Scalar>>(
    cs: CS,
    tag: Tag,
    message: &[Boolean],
) -> Result<Vec<Boolean>, SynthesisError> {
    assert!(
        message.len().is_multiple_of(BLOCK_BITS)
            && (1..=MAX_BLOCKS).contains(&(message.len() / BLOCK_BITS)),
        "hash_blocks: {} bits is not 1 to 16 whole blocks",
        message.len()
    );
    let msg: Vec<Operand> = operands(message, CS::one()).collect();
    hash_words(cs, tag, &msg)
}

/// `H("tree-d", left || right)`, one compression: the tree D parent of two nodes given as bits.
///
/// # Panics
/// If either node does not hold 256 Booleans (a caller bug).
pub fn tree_d_parent<CS: ConstraintSystem<Scalar>>(
    cs: CS,
    left: &[Boolean],
    right: &[Boolean],
) -> Result<Vec<Boolean>, SynthesisError> {
    assert_eq!(left.len(), NODE_BITS, "tree_d_parent: a node is 256 bits");
    assert_eq!(right.len(), NODE_BITS, "tree_d_parent: a node is 256 bits");
    let one = CS::one();
    let msg: Vec<Operand> = operands(left, one).chain(operands(right, one)).collect();
    hash_words(cs, Tag::TreeD, &msg)
}

/// Allocates a node known only to the prover (a Merkle sibling, say) as 254 Boolean variables (254
/// constraints) followed by two constant `false` bits.
///
/// Returns [`SynthesisError::Unsatisfiable`] if the node's two top bits are not zero: no node of tree D
/// and no label has them set, and dropping them would silently prove something about another node.
pub fn alloc_node_bits<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    value: Option<Node>,
) -> Result<Vec<Boolean>, SynthesisError> {
    if let Some(node) = value
        && !node.is_trunc254()
    {
        return Err(SynthesisError::Unsatisfiable);
    }
    let mut bits = Vec::with_capacity(NODE_BITS);
    for i in 0..NODE_VALUE_BITS {
        let bit = AllocatedBit::alloc(
            cs.namespace(|| format!("bit {i}")),
            value.map(|n| (n.0[i / 8] >> (i % 8)) & 1 == 1),
        )?;
        bits.push(Boolean::from(bit));
    }
    bits.resize(NODE_BITS, Boolean::constant(false));
    Ok(bits)
}

/// The bits of a node held as a number: 254 Boolean variables constrained to pack to `num` (255
/// constraints), then two constant `false` bits. Since `2^254 < r` the bits are unique; a `num` of
/// `2^254` or more has no such bits and leaves the system unsatisfied (no node is that large).
pub fn num_to_node_bits<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    num: &AllocatedNum<Scalar>,
) -> Result<Vec<Boolean>, SynthesisError> {
    let repr = num.get_value().map(|v| v.to_repr());
    let mut bits = Vec::with_capacity(NODE_BITS);
    let mut packed = LinearCombination::zero();
    let mut coeff = Scalar::ONE;
    for i in 0..NODE_VALUE_BITS {
        let bit = AllocatedBit::alloc(
            cs.namespace(|| format!("bit {i}")),
            repr.map(|r| (r[i / 8] >> (i % 8)) & 1 == 1),
        )?;
        packed = packed + (coeff, bit.get_variable());
        coeff = coeff.double();
        bits.push(Boolean::from(bit));
    }
    cs.enforce(
        || "bits pack to the number",
        |lc| lc + &packed,
        |lc| lc + CS::one(),
        |lc| lc + num.get_variable(),
    );
    bits.resize(NODE_BITS, Boolean::constant(false));
    Ok(bits)
}

/// Packs a node's bits into a number: `Σ 2^k · bit_k`, one constraint. Up to 254 bits may vary; any bits
/// past them (a node's two top bits) must be constant `false`, as they are in every hash output of this
/// module and every node from [`alloc_node_bits`] or [`num_to_node_bits`], so the packing is injective.
///
/// # Panics
/// If `bits` holds more than 256 Booleans, or bit 254 or 255 is not constant `false` (a caller bug).
pub fn node_bits_to_num<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    bits: &[Boolean],
) -> Result<AllocatedNum<Scalar>, SynthesisError> {
    assert!(bits.len() <= NODE_BITS, "node_bits_to_num: too many bits");
    assert!(
        bits.iter()
            .skip(NODE_VALUE_BITS)
            .all(|b| matches!(b, Boolean::Constant(false))),
        "node_bits_to_num: bits 254 and 255 must be constant false"
    );
    let mut packed = LinearCombination::zero();
    let mut coeff = Scalar::ONE;
    let mut bytes = Some([0u8; 32]);
    for (k, bit) in bits.iter().enumerate().take(NODE_VALUE_BITS) {
        packed = packed + &bit.lc(CS::one(), coeff);
        coeff = coeff.double();
        bytes = bytes.zip(bit.get_value()).map(|(mut b, v)| {
            b[k / 8] |= u8::from(v) << (k % 8);
            b
        });
    }
    let value: Option<Scalar> = bytes.and_then(|b| Scalar::from_repr(b).into());
    let num = AllocatedNum::alloc(cs.namespace(|| "num"), || {
        value.ok_or(SynthesisError::AssignmentMissing)
    })?;
    cs.enforce(
        || "number equals its bits",
        |lc| lc + &packed,
        |lc| lc + CS::one(),
        |lc| lc + num.get_variable(),
    );
    Ok(num)
}

/// The message `left || right` of a tree D parent, as operands: `cur || sibling` when `is_right` is
/// false, `sibling || cur` when it is true.
///
/// The swap is done on 32-bit words as numbers, not on bits: `left_w = cur_w + is_right · (sib_w − cur_w)`
/// is one constraint and one variable per word, and `right_w = cur_w + sib_w − left_w` is a linear
/// combination, free. With a Boolean `is_right` the two are `{cur_w, sib_w}` in some order, so each is
/// still an integer below `2^32` (below the larger of the two words' bounds), which is all the
/// additions of the compression need of a message word: the words never need bits of their own. That is
/// 8 constraints per level where swapping bits would take 2 per bit (about 508), and unpacking swapped
/// numbers 2 + 2 × 255.
fn ordered_pair<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    is_right: &Boolean,
    cur: &[Boolean],
    sibling: &[Boolean],
) -> Result<Vec<Operand>, SynthesisError> {
    let one = CS::one();
    let mut left = Vec::with_capacity(16);
    let mut right = Vec::with_capacity(8);
    for (w, (c, s)) in operands(cur, one).zip(operands(sibling, one)).enumerate() {
        match is_right {
            Boolean::Constant(false) => {
                left.push(c);
                right.push(s);
            }
            Boolean::Constant(true) => {
                left.push(s);
                right.push(c);
            }
            _ => {
                let swap = is_right.get_value();
                let pick =
                    |when: bool| swap.and_then(|sw| if sw == when { s.value } else { c.value });
                let (left_value, right_value) = (pick(true), pick(false));
                let l = cs.alloc(
                    || format!("left word {w}"),
                    || {
                        left_value
                            .map(|v| Scalar::from(u64::from(v)))
                            .ok_or(SynthesisError::AssignmentMissing)
                    },
                )?;
                cs.enforce(
                    || format!("select word {w}"),
                    |_| is_right.lc(one, Scalar::ONE),
                    |_| s.lc.clone() - &c.lc,
                    |lc| lc + l - &c.lc,
                );
                let max = c.max.max(s.max);
                left.push(Operand {
                    lc: LinearCombination::zero() + l,
                    value: left_value,
                    max,
                    constant: false,
                });
                right.push(Operand {
                    lc: c.lc.clone() + &s.lc - l,
                    value: right_value,
                    max,
                    constant: false,
                });
            }
        }
    }
    left.extend(right);
    Ok(left)
}

/// The root of a tree D path, on bits: folds `leaf` with `siblings[level]` for each level from the
/// bottom, the node being the right child where `index[level]` is true (the index's bits, least
/// significant first: bit `level` of the leaf index). Returns the root's 256 bits (top two constant
/// `false`). Each level costs 8 constraints for the ordering plus one [`tree_d_parent`] compression; the
/// siblings' own cost is the caller's ([`alloc_node_bits`]: 254 each).
///
/// `index` may hold allocated Booleans (public or private, as the caller decides) or constants.
///
/// # Panics
/// If `index` and `siblings` differ in length or a node does not hold 256 Booleans (a caller bug).
pub fn tree_d_root_bits<CS, S>(
    mut cs: CS,
    leaf: &[Boolean],
    index: &[Boolean],
    siblings: &[S],
) -> Result<Vec<Boolean>, SynthesisError>
where
    CS: ConstraintSystem<Scalar>,
    S: AsRef<[Boolean]>,
{
    assert_eq!(
        index.len(),
        siblings.len(),
        "tree_d_root: one index bit per level"
    );
    assert_eq!(leaf.len(), NODE_BITS, "tree_d_root: a node is 256 bits");
    let mut cur = leaf.to_vec();
    for (level, (is_right, sibling)) in index.iter().zip(siblings).enumerate() {
        let sibling = sibling.as_ref();
        assert_eq!(sibling.len(), NODE_BITS, "tree_d_root: a node is 256 bits");
        let mut cs = cs.namespace(|| format!("level {level}"));
        let msg = ordered_pair(cs.namespace(|| "order"), is_right, &cur, sibling)?;
        cur = hash_words(cs.namespace(|| "parent"), Tag::TreeD, &msg)?;
    }
    Ok(cur)
}

/// The root of a tree D path from a leaf held as a number, returned as a number for the caller to bind
/// to a public input (e.g. with `inputize` or an equality constraint). Unpacks the leaf (255
/// constraints, which also checks it is below `2^254`, as every fr32 data node is), runs
/// [`tree_d_root_bits`] and packs the root (1 constraint).
///
/// # Panics
/// As [`tree_d_root_bits`].
pub fn tree_d_root<CS, S>(
    mut cs: CS,
    leaf: &AllocatedNum<Scalar>,
    index: &[Boolean],
    siblings: &[S],
) -> Result<AllocatedNum<Scalar>, SynthesisError>
where
    CS: ConstraintSystem<Scalar>,
    S: AsRef<[Boolean]>,
{
    let leaf = num_to_node_bits(cs.namespace(|| "leaf"), leaf)?;
    let root = tree_d_root_bits(cs.namespace(|| "path"), &leaf, index, siblings)?;
    node_bits_to_num(cs.namespace(|| "root"), &root)
}

/// `label = H("label", replica_id || u32le(layer) || u64le(node) || 0^20 || parents[0] || … || parents[13])`,
/// eight compressions, as the native `sdr::label` computes it.
///
/// - `replica_id`: 256 bits (from [`num_to_node_bits`] when it is a public or private number);
/// - `layer`: a constant of the circuit;
/// - `node`: the node index's bits, least significant first, at most 64 (missing high bits are zero);
///   allocated (e.g. the bits of a challenge's public input) or constant;
/// - `parents`: the 14 parent slots, 256 bits each: six base parents, then eight expander parents.
///   The native definition zeroes slots that do not apply (every slot of node 0, the expander slots in
///   layer 1): pass constant-zero bits there ([`constant_bits`]), which also makes them cheaper.
///
/// Returns the label's 256 bits (top two constant `false`); [`node_bits_to_num`] makes it a number.
///
/// # Panics
/// If `replica_id` or a parent does not hold 256 Booleans, `node` holds more than 64 or `parents` is not
/// 14 long (a caller bug).
pub fn label<CS, P>(
    cs: CS,
    replica_id: &[Boolean],
    layer: u32,
    node: &[Boolean],
    parents: &[P],
) -> Result<Vec<Boolean>, SynthesisError>
where
    CS: ConstraintSystem<Scalar>,
    P: AsRef<[Boolean]>,
{
    assert_eq!(
        replica_id.len(),
        NODE_BITS,
        "label: the replica id is 256 bits"
    );
    assert!(node.len() <= 64, "label: a node index is at most 64 bits");
    assert_eq!(parents.len(), DEGREE, "label: 14 parents");
    let one = CS::one();
    let mut index = node.to_vec();
    index.resize(64, Boolean::constant(false));
    let mut msg: Vec<Operand> = Vec::with_capacity(16 * 8);
    msg.extend(operands(replica_id, one));
    msg.push(Operand::constant(layer, one));
    msg.extend(operands(&index, one));
    // 20 zero bytes close the 64-byte header.
    msg.extend((0..5).map(|_| Operand::constant(0, one)));
    for parent in parents {
        let parent = parent.as_ref();
        assert_eq!(parent.len(), NODE_BITS, "label: a parent is 256 bits");
        msg.extend(operands(parent, one));
    }
    hash_words(cs, Tag::Label, &msg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bellman::Index;
    use bellman::gadgets::boolean::u64_into_boolean_vec_le;
    use bellman::gadgets::test::TestConstraintSystem;

    use super::*;
    use crate::graph::{BASE_DEGREE, EXP_DEGREE};
    use crate::merkle::{Blake3TreeD, DiskTree, TreeConfig, TreeShape};
    use crate::node::trunc254;

    type Lc = LinearCombination<Scalar>;

    /// A light constraint system: with `witness` it evaluates every constraint as it arrives (no names,
    /// so it is fast enough for thousands of compressions); without, it never calls the value closures,
    /// as parameter generation does, and only counts. `keep` stores the constraints for re-checking.
    #[derive(Default)]
    struct CheckCs {
        witness: bool,
        keep: bool,
        inputs: Vec<Scalar>,
        aux: Vec<Scalar>,
        kept: Vec<(Lc, Lc, Lc)>,
        constraints: usize,
        failed: Option<usize>,
    }

    impl CheckCs {
        fn new(witness: bool) -> Self {
            CheckCs {
                witness,
                inputs: vec![Scalar::ONE],
                ..Default::default()
            }
        }

        fn eval(&self, lc: &Lc) -> Scalar {
            crate::prover::synth::lc_value(lc, &self.inputs, &self.aux)
        }

        fn holds(&self, (a, b, c): &(Lc, Lc, Lc)) -> bool {
            self.eval(a) * self.eval(b) == self.eval(c)
        }

        fn satisfied(&self) -> bool {
            self.witness && self.failed.is_none()
        }

        /// Re-checks the kept constraints against the current assignment.
        fn all_kept_hold(&self) -> bool {
            self.kept.iter().all(|c| self.holds(c))
        }
    }

    impl ConstraintSystem<Scalar> for CheckCs {
        fn alloc<F, A, AR>(&mut self, _: A, f: F) -> Result<Variable, SynthesisError>
        where
            F: FnOnce() -> Result<Scalar, SynthesisError>,
            A: FnOnce() -> AR,
            AR: Into<String>,
        {
            let v = if self.witness { f()? } else { Scalar::ZERO };
            self.aux.push(v);
            Ok(Variable::new_unchecked(Index::Aux(self.aux.len() - 1)))
        }

        fn alloc_input<F, A, AR>(&mut self, _: A, f: F) -> Result<Variable, SynthesisError>
        where
            F: FnOnce() -> Result<Scalar, SynthesisError>,
            A: FnOnce() -> AR,
            AR: Into<String>,
        {
            let v = if self.witness { f()? } else { Scalar::ZERO };
            self.inputs.push(v);
            Ok(Variable::new_unchecked(Index::Input(self.inputs.len() - 1)))
        }

        fn enforce<A, AR, LA, LB, LC>(&mut self, _: A, a: LA, b: LB, c: LC)
        where
            A: FnOnce() -> AR,
            AR: Into<String>,
            LA: FnOnce(Lc) -> Lc,
            LB: FnOnce(Lc) -> Lc,
            LC: FnOnce(Lc) -> Lc,
        {
            let abc = (a(Lc::zero()), b(Lc::zero()), c(Lc::zero()));
            if self.witness && self.failed.is_none() && !self.holds(&abc) {
                self.failed = Some(self.constraints);
            }
            if self.keep {
                self.kept.push(abc);
            }
            self.constraints += 1;
        }

        crate::circuit::root_without_namespaces!();
    }

    /// Deterministic pseudo-random bytes: BLAKE3's XOF under a test key.
    fn random_bytes(seed: &str, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        blake3::Hasher::new_derive_key("lode circuit blake3 tests")
            .update(seed.as_bytes())
            .finalize_xof()
            .fill(&mut out);
        out
    }

    fn random_node(seed: &str) -> Node {
        trunc254(random_bytes(seed, 32).try_into().unwrap())
    }

    fn random_u64(seed: &str) -> u64 {
        u64::from_le_bytes(random_bytes(seed, 8).try_into().unwrap())
    }

    /// Allocates `len` bytes as Boolean variables (values from `bytes` when given).
    fn alloc_bytes<CS: ConstraintSystem<Scalar>>(
        cs: &mut CS,
        bytes: Option<&[u8]>,
        len: usize,
    ) -> Vec<Boolean> {
        (0..8 * len)
            .map(|k| {
                let value = bytes.map(|b| (b[k / 8] >> (k % 8)) & 1 == 1);
                Boolean::from(
                    AllocatedBit::alloc(cs.namespace(|| format!("in {k}")), value).unwrap(),
                )
            })
            .collect()
    }

    /// The bytes that witnessed bits stand for.
    fn bytes_of(bits: &[Boolean]) -> Vec<u8> {
        bits.chunks(8)
            .map(|byte| {
                byte.iter()
                    .enumerate()
                    .map(|(j, b)| u8::from(b.get_value().unwrap()) << j)
                    .sum()
            })
            .collect()
    }

    fn node_of(bits: &[Boolean]) -> Node {
        Node(bytes_of(bits).try_into().unwrap())
    }

    fn native_compress(cv: &[u8], block: &[u8], block_len: u8, counter: u64, flags: u8) -> Vec<u8> {
        let mut words = blake3::platform::words_from_le_bytes_32(cv.try_into().unwrap());
        blake3::platform::Platform::portable().compress_in_place(
            &mut words,
            block.try_into().unwrap(),
            block_len,
            counter,
            flags,
        );
        blake3::platform::le_bytes_from_words_32(&words).to_vec()
    }

    #[test]
    fn compression_equals_native() {
        let cases: [(u8, u64, u8); 4] = [
            (64, 0, KEYED_HASH | CHUNK_START),
            (37, random_u64("counter"), 0xFF),
            (0, u64::MAX, 0),
            (1, 1 << 32, CHUNK_END | ROOT),
        ];
        for (i, &(block_len, counter, flags)) in cases.iter().enumerate() {
            let cv = random_bytes(&format!("cv {i}"), 32);
            let block = random_bytes(&format!("block {i}"), 64);
            let expected = native_compress(&cv, &block, block_len, counter, flags);
            // An allocated chaining value, and the same one as a constant.
            for constant_cv in [false, true] {
                let mut cs = TestConstraintSystem::<Scalar>::new();
                let cv_bits = if constant_cv {
                    constant_bits(&cv)
                } else {
                    alloc_bytes(&mut cs.namespace(|| "cv"), Some(&cv), 32)
                };
                let block_bits = alloc_bytes(&mut cs.namespace(|| "block"), Some(&block), 64);
                let out = compress(
                    cs.namespace(|| "compress"),
                    &cv_bits,
                    &block_bits,
                    block_len,
                    counter,
                    flags,
                )
                .unwrap();
                assert_eq!(
                    bytes_of(&out),
                    expected,
                    "case {i}, constant cv {constant_cv}"
                );
                assert!(cs.is_satisfied(), "{:?}", cs.which_is_unsatisfied());
            }
        }
    }

    #[test]
    fn chained_compressions_equal_keyed_hash() {
        // Two blocks compressed by hand, exactly as BLAKE3 chains a chunk: the untruncated keyed hash.
        let tag = Tag::Drg;
        let message = random_bytes("two blocks", 128);
        let mut cs = TestConstraintSystem::<Scalar>::new();
        let bits = alloc_bytes(&mut cs.namespace(|| "message"), Some(&message), 128);
        let cv = compress(
            cs.namespace(|| "first"),
            &key_bits(tag),
            &bits[..BLOCK_BITS],
            64,
            0,
            KEYED_HASH | CHUNK_START,
        )
        .unwrap();
        let out = compress(
            cs.namespace(|| "second"),
            &cv,
            &bits[BLOCK_BITS..],
            64,
            0,
            KEYED_HASH | CHUNK_END | ROOT,
        )
        .unwrap();
        let expected = blake3::keyed_hash(key(tag), &message);
        assert_eq!(bytes_of(&out), expected.as_bytes());
        assert!(cs.is_satisfied());
    }

    #[test]
    fn hash_blocks_equals_native() {
        for (blocks, tag) in [(1, Tag::TreeD), (2, Tag::Label), (8, Tag::PostSector)] {
            let message = random_bytes(&format!("message {blocks}"), 64 * blocks);
            let mut cs = TestConstraintSystem::<Scalar>::new();
            let bits = alloc_bytes(&mut cs.namespace(|| "message"), Some(&message), 64 * blocks);
            let out = hash_blocks(cs.namespace(|| "hash"), tag, &bits).unwrap();
            assert_eq!(
                node_of(&out),
                crate::hash::hash(tag, &message),
                "{blocks} blocks"
            );
            assert!(matches!(out[254], Boolean::Constant(false)));
            assert!(matches!(out[255], Boolean::Constant(false)));
            assert!(cs.is_satisfied(), "{:?}", cs.which_is_unsatisfied());

            // A flipped message bit changes the hash.
            let mut flipped = message.clone();
            flipped[blocks * 7 % (64 * blocks)] ^= 0x10;
            let mut cs = CheckCs::new(true);
            let bits = alloc_bytes(&mut cs, Some(&flipped), 64 * blocks);
            let out = hash_blocks(&mut cs, tag, &bits).unwrap();
            assert_ne!(node_of(&out), crate::hash::hash(tag, &message));
            assert_eq!(node_of(&out), crate::hash::hash(tag, &flipped));
        }
        // A whole chunk, through the fast checker.
        let message = random_bytes("sixteen blocks", 1024);
        let mut cs = CheckCs::new(true);
        let bits = alloc_bytes(&mut cs, Some(&message), 1024);
        let out = hash_blocks(&mut cs, Tag::Feistel, &bits).unwrap();
        assert_eq!(node_of(&out), crate::hash::hash(Tag::Feistel, &message));
        assert!(cs.satisfied());
    }

    #[test]
    fn tree_d_parent_equals_native_and_packs_to_the_node() {
        for i in 0..3 {
            let (l, r) = (
                random_node(&format!("l {i}")),
                random_node(&format!("r {i}")),
            );
            let mut cs = TestConstraintSystem::<Scalar>::new();
            let lb = alloc_node_bits(cs.namespace(|| "left"), Some(l)).unwrap();
            let rb = alloc_node_bits(cs.namespace(|| "right"), Some(r)).unwrap();
            let out = tree_d_parent(cs.namespace(|| "parent"), &lb, &rb).unwrap();
            let expected = crate::piece::tree_d_parent(&l, &r);
            assert_eq!(node_of(&out), expected);
            let num = node_bits_to_num(cs.namespace(|| "pack"), &out).unwrap();
            assert_eq!(num.get_value(), expected.to_fr());
            // And back: the number's bits are the node's.
            let again = num_to_node_bits(cs.namespace(|| "unpack"), &num).unwrap();
            assert_eq!(node_of(&again), expected);
            assert!(cs.is_satisfied());
        }
        // The zero-commitment table's first step: constant inputs make a constant-free circuit.
        let zero = constant_bits(&[0; 32]);
        let mut cs = CheckCs::new(true);
        let out = tree_d_parent(&mut cs, &zero, &zero).unwrap();
        assert_eq!(node_of(&out), crate::piece::zero_commitment(1));
    }

    /// The PoRep circuit's view of a tree D opening: leaf as a number, index bits and siblings allocated
    /// here; `None` synthesises without a witness.
    fn merkle_circuit<CS: ConstraintSystem<Scalar>>(
        cs: &mut CS,
        height: usize,
        witness: Option<(Node, u64, &[Node])>,
    ) -> Result<AllocatedNum<Scalar>, SynthesisError> {
        let leaf = AllocatedNum::alloc(cs.namespace(|| "leaf"), || {
            witness
                .and_then(|(l, _, _)| l.to_fr())
                .ok_or(SynthesisError::AssignmentMissing)
        })?;
        let index = (0..height)
            .map(|k| {
                AllocatedBit::alloc(
                    cs.namespace(|| format!("index bit {k}")),
                    witness.map(|(_, i, _)| (i >> k) & 1 == 1),
                )
                .map(Boolean::from)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let siblings = (0..height)
            .map(|k| {
                alloc_node_bits(
                    cs.namespace(|| format!("sibling {k}")),
                    witness.map(|(_, _, s)| s[k]),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        tree_d_root(cs.namespace(|| "tree d"), &leaf, &index, &siblings)
    }

    fn random_leaves(n: usize, seed: &str) -> Vec<Node> {
        (0..n)
            .map(|i| random_node(&format!("{seed} leaf {i}")))
            .collect()
    }

    #[test]
    fn inclusion_paths_open_every_leaf_of_small_trees() {
        let dir = tempfile::tempdir().unwrap();
        for height in 1..=6usize {
            let n = 1u64 << height;
            let leaves = random_leaves(n as usize, &format!("tree {height}"));
            let shape = TreeShape::binary(n).unwrap();
            let tree = DiskTree::<Blake3TreeD>::build(
                &shape,
                &leaves,
                &dir.path().join(format!("tree-{height}")),
                TreeConfig::default(),
            )
            .unwrap();
            assert_eq!(tree.root(), crate::piece::tree_d_root(&leaves));
            let root = tree.root().to_fr();
            for index in 0..n {
                let proof = tree.prove(index).unwrap();
                let siblings: Vec<Node> = proof.siblings.iter().map(|s| s[0]).collect();
                let mut cs = CheckCs::new(true);
                let got =
                    merkle_circuit(&mut cs, height, Some((proof.leaf, index, &siblings))).unwrap();
                assert_eq!(got.get_value(), root, "height {height}, leaf {index}");
                assert!(cs.satisfied(), "height {height}, leaf {index}");
            }
        }
    }

    /// Binds the computed root to a public input holding `expected`.
    fn enforce_root<CS: ConstraintSystem<Scalar>>(
        cs: &mut CS,
        root: &AllocatedNum<Scalar>,
        expected: Scalar,
    ) {
        let input = cs.alloc_input(|| "expected root", || Ok(expected)).unwrap();
        cs.enforce(
            || "root is the expected root",
            |lc| lc + root.get_variable(),
            |lc| lc + CS::one(),
            |lc| lc + input,
        );
    }

    #[test]
    fn wrong_paths_give_other_roots_and_fail_the_root_check() {
        let dir = tempfile::tempdir().unwrap();
        let height = 3;
        let leaves = random_leaves(8, "negative");
        let tree = DiskTree::<Blake3TreeD>::build(
            &TreeShape::binary(8).unwrap(),
            &leaves,
            &dir.path().join("tree"),
            TreeConfig::default(),
        )
        .unwrap();
        let root = tree.root().to_fr().unwrap();
        let index = 5u64;
        let proof = tree.prove(index).unwrap();
        let siblings: Vec<Node> = proof.siblings.iter().map(|s| s[0]).collect();

        // The honest path, checked by bellman's own test system.
        let mut cs = TestConstraintSystem::<Scalar>::new();
        let got = merkle_circuit(&mut cs, height, Some((proof.leaf, index, &siblings))).unwrap();
        enforce_root(&mut cs, &got, root);
        assert!(cs.is_satisfied());
        assert!(cs.verify(&[root]));
        // Tampering with the ordered word of level 1 (a non-Boolean variable) is caught.
        let path = "tree d/path/level 1/order/left word 3";
        let w = cs.get(path);
        cs.set(path, w + Scalar::ONE);
        assert!(!cs.is_satisfied());

        let mut wrong_sibling = siblings.clone();
        wrong_sibling[1] = leaves[0];
        let mut other_leaf = proof.leaf;
        other_leaf.0[0] ^= 1;
        let variants: [(&str, Node, u64, &[Node]); 4] = [
            ("wrong sibling", proof.leaf, index, &wrong_sibling),
            ("wrong index bit 0", proof.leaf, index ^ 1, &siblings),
            ("wrong index bit 2", proof.leaf, index ^ 4, &siblings),
            ("flipped leaf bit", other_leaf, index, &siblings),
        ];
        for (what, leaf, index, siblings) in variants {
            let mut cs = TestConstraintSystem::<Scalar>::new();
            let got = merkle_circuit(&mut cs, height, Some((leaf, index, siblings))).unwrap();
            assert_ne!(got.get_value(), Some(root), "{what}");
            enforce_root(&mut cs, &got, root);
            assert!(!cs.is_satisfied(), "{what}");
            assert_eq!(cs.which_is_unsatisfied(), Some("root is the expected root"));
        }
    }

    #[test]
    fn a_deep_path_equals_the_native_fold() {
        // Height 18 (an 8 MiB sector): random siblings, the root folded natively.
        let height = 18;
        let leaf = random_node("deep leaf");
        let index = random_u64("deep index") % (1 << height);
        let siblings: Vec<Node> = (0..height)
            .map(|k| random_node(&format!("deep sibling {k}")))
            .collect();
        let mut root = leaf;
        for (k, s) in siblings.iter().enumerate() {
            root = if (index >> k) & 1 == 1 {
                crate::piece::tree_d_parent(s, &root)
            } else {
                crate::piece::tree_d_parent(&root, s)
            };
        }
        let mut cs = CheckCs::new(true);
        let got = merkle_circuit(&mut cs, height, Some((leaf, index, &siblings))).unwrap();
        assert_eq!(got.get_value(), root.to_fr());
        assert!(cs.satisfied());
    }

    /// A label as the PoRep circuit computes it: the replica id and the parents' labels are numbers
    /// (from column openings), the node index allocated bits; layer 1 has constant-zero expander slots.
    fn label_circuit<CS: ConstraintSystem<Scalar>>(
        cs: &mut CS,
        layer: u32,
        witness: Option<(Node, u64, &[Node])>,
    ) -> Result<Vec<Boolean>, SynthesisError> {
        let num = |cs: &mut CS, name: String, value: Option<Node>| {
            let n = AllocatedNum::alloc(cs.namespace(|| name.clone()), || {
                value
                    .and_then(|v| v.to_fr())
                    .ok_or(SynthesisError::AssignmentMissing)
            })?;
            num_to_node_bits(cs.namespace(|| format!("{name} bits")), &n)
        };
        let replica_id = num(cs, "replica id".into(), witness.map(|(r, _, _)| r))?;
        let node =
            u64_into_boolean_vec_le(cs.namespace(|| "node index"), witness.map(|(_, v, _)| v))?;
        let mut parents = Vec::with_capacity(DEGREE);
        for k in 0..DEGREE {
            if layer == 1 && k >= BASE_DEGREE {
                parents.push(constant_bits(&[0; 32]));
            } else {
                parents.push(num(
                    cs,
                    format!("parent {k}"),
                    witness.map(|(_, _, p)| p[k]),
                )?);
            }
        }
        label(
            cs.namespace(|| "label"),
            &replica_id,
            layer,
            &node,
            &parents,
        )
    }

    #[test]
    fn label_equals_native() {
        let replica_id = random_node("replica id");
        for (layer, v) in [(2u32, random_u64("v") >> 20), (1, 77), (11, u64::MAX >> 1)] {
            let parents: Vec<Node> = (0..DEGREE)
                .map(|k| random_node(&format!("parent {layer} {k}")))
                .collect();
            let base: [Node; BASE_DEGREE] = parents[..BASE_DEGREE].try_into().unwrap();
            let exp: [Node; EXP_DEGREE] = parents[BASE_DEGREE..].try_into().unwrap();
            let expected = crate::sdr::label(&replica_id, layer, v, &base, &exp);
            let mut cs = TestConstraintSystem::<Scalar>::new();
            let out = label_circuit(&mut cs, layer, Some((replica_id, v, &parents))).unwrap();
            assert_eq!(node_of(&out), expected, "layer {layer}");
            assert!(cs.is_satisfied(), "{:?}", cs.which_is_unsatisfied());

            // Another node index gives another label.
            let mut cs = CheckCs::new(true);
            let out = label_circuit(&mut cs, layer, Some((replica_id, v ^ 2, &parents))).unwrap();
            assert_ne!(node_of(&out), expected);
            assert_eq!(
                node_of(&out),
                crate::sdr::label(&replica_id, layer, v ^ 2, &base, &exp)
            );
        }
    }

    #[test]
    fn nodes_of_254_bits_or_more_are_refused() {
        // 2^254 is a field element but not a node: its unpacking cannot be satisfied.
        let mut too_big = [0u8; 32];
        too_big[31] = 0x40;
        let mut cs = TestConstraintSystem::<Scalar>::new();
        let n = AllocatedNum::alloc(cs.namespace(|| "n"), || {
            Ok(Scalar::from_repr(too_big).unwrap())
        })
        .unwrap();
        num_to_node_bits(cs.namespace(|| "bits"), &n).unwrap();
        assert_eq!(
            cs.which_is_unsatisfied(),
            Some("bits/bits pack to the number")
        );
        // A node with a top bit set is refused outright as a witness.
        let mut cs = TestConstraintSystem::<Scalar>::new();
        assert!(matches!(
            alloc_node_bits(cs.namespace(|| "node"), Some(Node(too_big))),
            Err(SynthesisError::Unsatisfiable)
        ));
        // 2^254 - 1 is the largest node and unpacks fine.
        let mut max = [0xFF; 32];
        max[31] = 0x3F;
        let mut cs = TestConstraintSystem::<Scalar>::new();
        let n = AllocatedNum::alloc(cs.namespace(|| "n"), || Ok(Scalar::from_repr(max).unwrap()))
            .unwrap();
        let bits = num_to_node_bits(cs.namespace(|| "bits"), &n).unwrap();
        assert_eq!(node_of(&bits), Node(max));
        assert!(cs.is_satisfied());
    }

    #[test]
    fn every_variable_is_pinned_down() {
        // Change any one variable of an honest height-2 opening and some constraint breaks: no
        // witness value is left free. Bits are flipped (staying Boolean), other variables moved by one.
        let leaves = random_leaves(4, "pinned");
        let mut level = vec![
            crate::piece::tree_d_parent(&leaves[0], &leaves[1]),
            crate::piece::tree_d_parent(&leaves[2], &leaves[3]),
        ];
        let siblings = [leaves[3], level[0]];
        let root = crate::piece::tree_d_parent(&level.remove(0), &level[0]);
        let mut cs = CheckCs::new(true);
        cs.keep = true;
        let got = merkle_circuit(&mut cs, 2, Some((leaves[2], 2, &siblings))).unwrap();
        assert_eq!(got.get_value(), root.to_fr());
        assert!(cs.satisfied() && cs.all_kept_hold());
        let vars = cs.aux.len();
        let mut checked = 0;
        for i in (0..vars).step_by(53).chain(vars - 300..vars) {
            let old = cs.aux[i];
            cs.aux[i] = if old == Scalar::ZERO || old == Scalar::ONE {
                Scalar::ONE - old
            } else {
                old + Scalar::ONE
            };
            assert!(!cs.all_kept_hold(), "variable {i} of {vars} is free");
            cs.aux[i] = old;
            checked += 1;
        }
        assert!(checked > 800);
    }

    /// A tree D opening with its root as the public input, for a real Groth16 round trip.
    struct OpeningCircuit {
        height: usize,
        witness: Option<(Node, u64, Vec<Node>)>,
        root: Option<Scalar>,
    }

    impl bellman::Circuit<Scalar> for OpeningCircuit {
        fn synthesize<CS: ConstraintSystem<Scalar>>(
            self,
            cs: &mut CS,
        ) -> Result<(), SynthesisError> {
            let witness = self.witness.as_ref().map(|(l, i, s)| (*l, *i, &s[..]));
            let got = merkle_circuit(cs, self.height, witness)?;
            let input = cs.alloc_input(
                || "root",
                || self.root.ok_or(SynthesisError::AssignmentMissing),
            )?;
            cs.enforce(
                || "root is the public root",
                |lc| lc + got.get_variable(),
                |lc| lc + CS::one(),
                |lc| lc + input,
            );
            Ok(())
        }
    }

    #[test]
    fn groth16_proves_and_verifies_an_opening() {
        use bls12_381::{Bls12, G1Projective, G2Projective};

        let scalar =
            |seed: &str| Scalar::from_bytes_wide(&random_bytes(seed, 64).try_into().unwrap());
        let (leaf, sibling) = (random_node("groth16 leaf"), random_node("groth16 sibling"));
        let root = crate::piece::tree_d_parent(&sibling, &leaf)
            .to_fr()
            .unwrap();
        // Parameter generation synthesises without a witness and rejects unconstrained variables.
        let params = groth16::generate_parameters::<Bls12, _>(
            OpeningCircuit {
                height: 1,
                witness: None,
                root: None,
            },
            G1Projective::generator(),
            G2Projective::generator(),
            scalar("alpha"),
            scalar("beta"),
            scalar("gamma"),
            scalar("delta"),
            scalar("tau"),
        )
        .unwrap();
        let proof = groth16::create_proof::<Bls12, _, _>(
            OpeningCircuit {
                height: 1,
                witness: Some((leaf, 1, vec![sibling])),
                root: Some(root),
            },
            &params,
            scalar("r"),
            scalar("s"),
        )
        .unwrap();
        let pvk = groth16::prepare_verifying_key(&params.vk);
        assert!(groth16::verify_proof(&pvk, &proof, &[root]).is_ok());
        assert!(groth16::verify_proof(&pvk, &proof, &[root + Scalar::ONE]).is_err());
    }

    /// Constraints of `build` with a witness (checked) and without one (never reading a value).
    fn shapes<F>(build: F) -> (usize, usize)
    where
        F: Fn(&mut CheckCs, bool) -> Result<(), SynthesisError>,
    {
        let mut with = CheckCs::new(true);
        build(&mut with, true).unwrap();
        assert!(with.satisfied());
        let mut without = CheckCs::new(false);
        build(&mut without, false).unwrap();
        (with.constraints, without.constraints)
    }

    #[test]
    fn synthesis_without_a_witness_has_the_same_shape() {
        let cv = random_bytes("shape cv", 32);
        let block = random_bytes("shape block", 64);
        let (a, b) = shapes(|cs, w| {
            let cv = alloc_bytes(cs, w.then_some(&cv[..]), 32);
            let block = alloc_bytes(cs, w.then_some(&block[..]), 64);
            compress(cs, &cv, &block, 64, 3, 11).map(drop)
        });
        assert_eq!(a, b, "compress");

        let message = random_bytes("shape message", 512);
        let (a, b) = shapes(|cs, w| {
            let m = alloc_bytes(cs, w.then_some(&message[..]), 512);
            hash_blocks(cs, Tag::Label, &m).map(drop)
        });
        assert_eq!(a, b, "hash_blocks");

        let leaves = random_leaves(2, "shape");
        let (a, b) = shapes(|cs, w| {
            let sibling = [leaves[1]];
            merkle_circuit(cs, 1, w.then_some((leaves[0], 0, &sibling[..]))).map(drop)
        });
        assert_eq!(a, b, "tree_d_root");

        let replica_id = random_node("shape replica id");
        let parents = random_leaves(DEGREE, "shape parents");
        let p = &parents[..];
        let (a, b) =
            shapes(|cs, w| label_circuit(cs, 3, w.then_some((replica_id, 9, p))).map(drop));
        assert_eq!(a, b, "label");
    }

    /// Constraints that `build` adds to a witness-less system after `setup` allocated its inputs.
    fn cost<T, S, B>(setup: S, build: B) -> usize
    where
        S: Fn(&mut CheckCs) -> T,
        B: Fn(&mut CheckCs, T) -> Result<(), SynthesisError>,
    {
        let mut cs = CheckCs::new(false);
        let inputs = setup(&mut cs);
        let before = cs.constraints;
        build(&mut cs, inputs).unwrap();
        cs.constraints - before
    }

    #[test]
    fn constraint_counts() {
        let compression = cost(
            |cs| (alloc_bytes(cs, None, 32), alloc_bytes(cs, None, 64)),
            |cs, (cv, block)| compress(cs, &cv, &block, 64, 0, KEYED_HASH).map(drop),
        );
        let parent = cost(
            |cs| {
                let l = alloc_node_bits(&mut *cs, None).unwrap();
                (l, alloc_node_bits(cs, None).unwrap())
            },
            |cs, (l, r)| tree_d_parent(cs, &l, &r).map(drop),
        );
        let label_hash = cost(
            |cs| {
                let replica = alloc_node_bits(&mut *cs, None).unwrap();
                let node = u64_into_boolean_vec_le(&mut *cs, None).unwrap();
                let parents: Vec<_> = (0..DEGREE)
                    .map(|_| alloc_node_bits(&mut *cs, None).unwrap())
                    .collect();
                (replica, node, parents)
            },
            |cs, (replica, node, parents)| label(cs, &replica, 2, &node, &parents).map(drop),
        );
        let path = |height: usize| {
            cost(|_| (), |cs, ()| merkle_circuit(cs, height, None).map(drop)) - height // the index bits' own Boolean constraints belong to the caller
        };
        let (path6, path18) = (path(6), path(18));
        println!(
            "compress {compression}, tree_d_parent {parent}, label {label_hash}, \
             tree D path height 6: {path6}, height 18: {path18}"
        );
        assert_eq!(compression, 14_832);
        assert_eq!(parent, 14_701);
        assert_eq!(label_hash, 118_488);
        assert_eq!(path6, 90_034);
        assert_eq!(path18, 269_590);
    }
}
