//! Round-constant generation with the Grain LFSR of the Poseidon reference
//! parameters script, configured exactly as neptune configures it.

use bls12_381::Scalar;

/// Field type tag in the Grain seed: 1 means a prime field.
const FIELD_TYPE: u128 = 1;
/// S-box tag in the Grain seed. neptune writes 1 for x^5 (the reference
/// script would write 0 for x^alpha); the test vectors follow neptune.
const SBOX_TYPE: u128 = 1;
/// Bit length of the BLS12-381 scalar modulus.
const FIELD_BITS: usize = 255;

/// The 80-bit LFSR. Bit `i` of `state` is `b[i]`, `b[0]` being the oldest bit.
struct Grain {
    state: u128,
}

impl Grain {
    /// Seeds the register from the permutation parameters and runs it past
    /// the 160 warm-up outputs that the reference discards.
    fn new(width: usize, full_rounds: usize, partial_rounds: usize) -> Self {
        let fields: [(u128, usize); 7] = [
            (FIELD_TYPE, 2),
            (SBOX_TYPE, 4),
            (FIELD_BITS as u128, 12),
            (width as u128, 12),
            (full_rounds as u128, 10),
            (partial_rounds as u128, 10),
            ((1 << 30) - 1, 30),
        ];
        let mut state = 0u128;
        let mut filled = 0;
        for (value, len) in fields {
            // Each field goes in most-significant bit first.
            for i in (0..len).rev() {
                state |= ((value >> i) & 1) << filled;
                filled += 1;
            }
        }
        debug_assert_eq!(filled, 80);
        let mut grain = Grain { state };
        for _ in 0..160 {
            grain.step();
        }
        grain
    }

    /// Clocks the register once and returns the bit it shifted in.
    fn step(&mut self) -> bool {
        let s = self.state;
        let bit = ((s >> 62) ^ (s >> 51) ^ (s >> 38) ^ (s >> 23) ^ (s >> 13) ^ s) & 1;
        self.state = (s >> 1) | (bit << 79);
        bit == 1
    }

    /// Self-shrinking output: of each pair of raw bits, keep the second one
    /// only when the first is set.
    fn next_bit(&mut self) -> bool {
        loop {
            let keep = self.step();
            let bit = self.step();
            if keep {
                return bit;
            }
        }
    }

    /// Draws a 255-bit integer (most-significant bit first) as the
    /// little-endian bytes that `Scalar::from_bytes` reads.
    fn next_candidate(&mut self) -> [u8; 32] {
        let mut le = [0u8; 32];
        for idx in (0..FIELD_BITS).rev() {
            if self.next_bit() {
                le[idx / 8] |= 1 << (idx % 8);
            }
        }
        le
    }
}

/// Returns the `width * (full_rounds + partial_rounds)` round constants in
/// the order the rounds consume them. Candidates that are not below the
/// modulus are dropped and redrawn, as in the reference.
pub(super) fn round_constants(
    width: usize,
    full_rounds: usize,
    partial_rounds: usize,
) -> Vec<Scalar> {
    let count = width * (full_rounds + partial_rounds);
    let mut grain = Grain::new(width, full_rounds, partial_rounds);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let candidate = grain.next_candidate();
        if let Some(c) = Option::<Scalar>::from(Scalar::from_bytes(&candidate)) {
            out.push(c);
        }
    }
    out
}
