//! Field nodes: the 32-byte unit that sectors, pieces, layers and trees are made of (SPEC §1).
//!
//! A [`Node`] is the little-endian encoding of an element of the BLS12-381 scalar field `Fr`. Bytes that
//! come from hashing are made valid field elements by [`trunc254`], which clears the two top bits.

use bls12_381::Scalar;
use ff::PrimeField;

/// Size of a node in bytes.
pub const NODE_SIZE: usize = 32;

/// One 32-byte node: the little-endian representation of an `Fr` element.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Node(pub [u8; NODE_SIZE]);

impl Node {
    /// The all-zero node.
    pub const ZERO: Node = Node([0; NODE_SIZE]);

    /// The node's bytes.
    pub fn as_bytes(&self) -> &[u8; NODE_SIZE] {
        &self.0
    }

    /// The node as a field element, or `None` if its bytes are not a canonical encoding (value ≥ r).
    pub fn to_fr(&self) -> Option<Scalar> {
        Scalar::from_repr(self.0).into()
    }

    /// The canonical encoding of a field element.
    pub fn from_fr(fr: &Scalar) -> Node {
        Node(fr.to_repr())
    }

    /// Whether the two top bits are clear (every `trunc254` output, fr32 node and `Fr` < 2^254 is).
    pub fn is_trunc254(&self) -> bool {
        self.0[31] & 0xC0 == 0
    }

    /// Parses 64 hex characters; `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Node> {
        let bytes = s.as_bytes();
        if bytes.len() != 2 * NODE_SIZE {
            return None;
        }
        let mut out = [0u8; NODE_SIZE];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        Some(Node(out))
    }

    /// Lower-case hex of the node's bytes.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(2 * NODE_SIZE);
        for b in self.0 {
            s.push(DIGITS[usize::from(b >> 4)] as char);
            s.push(DIGITS[usize::from(b & 15)] as char);
        }
        s
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.to_hex())
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<[u8; NODE_SIZE]> for Node {
    fn from(bytes: [u8; NODE_SIZE]) -> Self {
        Node(bytes)
    }
}

/// `trunc254(x)`: clears the two top bits of byte 31, so the result is always a valid `Fr`.
pub fn trunc254(mut bytes: [u8; NODE_SIZE]) -> Node {
    bytes[31] &= 0x3F;
    Node(bytes)
}

/// Views a byte slice whose length is a multiple of 32 as nodes (no copy). `None` otherwise.
pub fn nodes_from_bytes(bytes: &[u8]) -> Option<&[Node]> {
    if !bytes.len().is_multiple_of(NODE_SIZE) {
        return None;
    }
    // SAFETY: `Node` is `repr(transparent)` over `[u8; 32]`: alignment 1, size 32, every bit pattern valid.
    // The length is a whole number of nodes, checked above.
    Some(unsafe {
        std::slice::from_raw_parts(bytes.as_ptr().cast::<Node>(), bytes.len() / NODE_SIZE)
    })
}

/// Mutable version of [`nodes_from_bytes`].
pub fn nodes_from_bytes_mut(bytes: &mut [u8]) -> Option<&mut [Node]> {
    if !bytes.len().is_multiple_of(NODE_SIZE) {
        return None;
    }
    // SAFETY: as in `nodes_from_bytes`; the exclusive borrow is carried over to the result.
    Some(unsafe {
        std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<Node>(), bytes.len() / NODE_SIZE)
    })
}

/// Views nodes as their bytes (no copy).
pub fn nodes_as_bytes(nodes: &[Node]) -> &[u8] {
    // SAFETY: `Node` is `repr(transparent)` over `[u8; 32]`, so `n` nodes are exactly `32 n` initialised bytes.
    unsafe { std::slice::from_raw_parts(nodes.as_ptr().cast::<u8>(), std::mem::size_of_val(nodes)) }
}

/// Views nodes as their bytes, mutably (no copy).
pub fn nodes_as_bytes_mut(nodes: &mut [Node]) -> &mut [u8] {
    // SAFETY: as in `nodes_as_bytes`; any byte pattern is a valid node, so writes cannot break an invariant.
    unsafe {
        std::slice::from_raw_parts_mut(
            nodes.as_mut_ptr().cast::<u8>(),
            std::mem::size_of_val(nodes),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunc254_clears_only_the_top_two_bits() {
        let n = trunc254([0xFF; 32]);
        assert_eq!(n.0[31], 0x3F);
        assert!(n.0[..31].iter().all(|&b| b == 0xFF));
        assert!(n.is_trunc254());
        assert!(n.to_fr().is_some(), "every trunc254 output is a valid Fr");
    }

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let n = trunc254([0xA5; 32]);
        assert_eq!(Node::from_hex(&n.to_hex()), Some(n));
        assert_eq!(Node::from_hex("00"), None);
        assert_eq!(Node::from_hex(&"zz".repeat(32)), None);
    }

    #[test]
    fn non_canonical_bytes_are_not_field_elements() {
        // r − 1 is canonical, all-ones (≥ r) is not.
        assert!(Node([0xFF; 32]).to_fr().is_none());
        let minus_one = Node::from_fr(&(-Scalar::one()));
        assert_eq!(minus_one.to_fr(), Some(-Scalar::one()));
    }

    #[test]
    fn byte_views_are_exact() {
        let bytes: Vec<u8> = (0..96u8).collect();
        let nodes = nodes_from_bytes(&bytes).unwrap_or_default();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[1].0[0], 32);
        assert_eq!(nodes_as_bytes(nodes), &bytes[..]);
        assert!(nodes_from_bytes(&bytes[..95]).is_none());
    }
}
