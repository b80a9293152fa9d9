//! The chain's value types: actor ids and addresses, token amounts in atto units, epochs, power.
//!
//! Token amounts are integers of atto units (10^-18 of a token) held in a `u128`: the whole supply
//! (2 × 10^9 tokens = 2 × 10^27 atto) fits with eleven orders of magnitude to spare. Arithmetic is
//! checked; no floating point is used anywhere in the chain.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;

/// A chain epoch (block height). Epoch 0 is genesis.
///
/// Sums of epochs and durations *saturate*: `u64::MAX` stands for "never" (2^64 epochs are far
/// beyond any chain's life), so a deadline or expiration that would pass it means "never", which is
/// exactly what a saturated value does in every comparison. Token amounts, by contrast, never
/// saturate: they use checked arithmetic and fail on overflow.
pub type Epoch = u64;

/// A sector number, unique per miner and never reused.
pub type SectorNumber = u64;

/// A storage deal id, assigned by the market in publication order.
pub type DealId = u64;

/// Storage power in bytes (raw or quality-adjusted).
pub type StoragePower = u128;

/// Atto units per whole token.
pub const ATTO_PER_TOKEN: u128 = 1_000_000_000_000_000_000;

/// The short id every actor gets when it is created.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ActorId(pub u64);

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "l0{}", self.0)
    }
}

/// An address a message can name: an actor's short id, or the BLS public key of an account (which
/// creates the account when it first receives funds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Address {
    /// An existing actor by id (`l0<id>`).
    Id(ActorId),
    /// An account by its BLS public key (`l3<hex>`).
    Bls(PublicKey),
}

impl From<ActorId> for Address {
    fn from(id: ActorId) -> Self {
        Address::Id(id)
    }
}

impl From<PublicKey> for Address {
    fn from(pk: PublicKey) -> Self {
        Address::Bls(pk)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Id(id) => id.fmt(f),
            Address::Bls(pk) => write!(f, "l3{}", hex::encode(pk.to_bytes())),
        }
    }
}

/// An amount of tokens in atto units.
///
/// Serialised as a `u128` in binary formats and as a decimal string of atto units in human-readable
/// ones (JSON numbers cannot hold the whole range).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenAmount(pub u128);

impl Serialize for TokenAmount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.0.to_string())
        } else {
            s.serialize_u128(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for TokenAmount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse()
                .map(TokenAmount)
                .map_err(|_| serde::de::Error::custom(format!("not an atto amount: {s:?}")))
        } else {
            u128::deserialize(d).map(TokenAmount)
        }
    }
}

impl TokenAmount {
    /// Zero.
    pub const ZERO: TokenAmount = TokenAmount(0);

    /// `n` whole tokens.
    pub const fn tokens(n: u64) -> Self {
        // Never saturates: u64::MAX × 10^18 < 2^124.
        TokenAmount((n as u128).saturating_mul(ATTO_PER_TOKEN))
    }

    /// `n` atto units.
    pub const fn atto(n: u128) -> Self {
        TokenAmount(n)
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Checked addition.
    pub fn checked_add(self, other: TokenAmount) -> Option<TokenAmount> {
        self.0.checked_add(other.0).map(TokenAmount)
    }

    /// Checked subtraction (`None` below zero).
    pub fn checked_sub(self, other: TokenAmount) -> Option<TokenAmount> {
        self.0.checked_sub(other.0).map(TokenAmount)
    }

    /// Subtraction clamped at zero.
    pub fn saturating_sub(self, other: TokenAmount) -> TokenAmount {
        TokenAmount(self.0.saturating_sub(other.0))
    }

    /// The smaller of two amounts.
    pub fn min(self, other: TokenAmount) -> TokenAmount {
        TokenAmount(self.0.min(other.0))
    }

    /// `self × num / den`, floored, computed without intermediate overflow; `None` if `den` is 0 or
    /// the result does not fit.
    pub fn mul_div(self, num: u128, den: u128) -> Option<TokenAmount> {
        crate::math::mul_div(self.0, num, den).map(TokenAmount)
    }
}

impl fmt::Display for TokenAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / ATTO_PER_TOKEN;
        let frac = self.0 % ATTO_PER_TOKEN;
        if frac == 0 {
            write!(f, "{whole} LODE")
        } else {
            let digits = format!("{frac:018}");
            write!(f, "{whole}.{} LODE", digits.trim_end_matches('0'))
        }
    }
}

/// Raw and quality-adjusted power together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PowerPair {
    /// Raw bytes.
    pub raw: StoragePower,
    /// Quality-adjusted bytes.
    pub qa: StoragePower,
}

impl PowerPair {
    /// Zero power.
    pub const ZERO: PowerPair = PowerPair { raw: 0, qa: 0 };

    /// Component-wise sum (saturating: power is bounded far below `u128`).
    pub fn plus(self, o: PowerPair) -> PowerPair {
        PowerPair {
            raw: self.raw.saturating_add(o.raw),
            qa: self.qa.saturating_add(o.qa),
        }
    }

    /// Component-wise difference clamped at zero.
    pub fn minus(self, o: PowerPair) -> PowerPair {
        PowerPair {
            raw: self.raw.saturating_sub(o.raw),
            qa: self.qa.saturating_sub(o.qa),
        }
    }

    /// Whether both components are zero.
    pub fn is_zero(self) -> bool {
        self.raw == 0 && self.qa == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_display() {
        assert_eq!(TokenAmount::tokens(3).to_string(), "3 LODE");
        assert_eq!(
            TokenAmount::atto(1).to_string(),
            "0.000000000000000001 LODE"
        );
        assert_eq!(
            TokenAmount(ATTO_PER_TOKEN + ATTO_PER_TOKEN / 4).to_string(),
            "1.25 LODE"
        );
    }

    #[test]
    fn amounts_round_trip_in_binary_and_as_json_strings() {
        let a = TokenAmount(u128::MAX - 7);
        let bin = postcard::to_allocvec(&a).unwrap_or_default();
        assert_eq!(postcard::from_bytes::<TokenAmount>(&bin).ok(), Some(a));
    }

    #[test]
    fn checked_arithmetic() {
        assert_eq!(TokenAmount(u128::MAX).checked_add(TokenAmount(1)), None);
        assert_eq!(TokenAmount(0).checked_sub(TokenAmount(1)), None);
        assert_eq!(TokenAmount(10).mul_div(3, 4), Some(TokenAmount(7)));
        assert_eq!(
            TokenAmount(u128::MAX).mul_div(2, 2),
            Some(TokenAmount(u128::MAX))
        );
        assert_eq!(TokenAmount(1).mul_div(1, 0), None);
    }
}
