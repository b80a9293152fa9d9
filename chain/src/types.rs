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

/// A token amount that could not be parsed (see [`TokenAmount`]'s `FromStr`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseAmountError {
    /// Not a decimal number with an optional unit.
    #[error(
        "{0:?} is not an amount: write LODE with up to 18 decimals (\"1.5\", \"1.5 LODE\") or whole atto units (\"1500atto\")"
    )]
    Malformed(String),
    /// More decimals than an atto unit resolves.
    #[error(
        "{0:?} has more than 18 decimals: the smallest amount is 0.000000000000000001 LODE (1 atto)"
    )]
    TooPrecise(String),
    /// Larger than any amount a `u128` of atto units holds.
    #[error("{0:?} is too large to be an amount of tokens")]
    TooLarge(String),
}

/// Parses plain ASCII digits (no sign, not empty) as a `u128`; `Ok(None)` on overflow.
fn parse_digits(digits: &str) -> Option<Option<u128>> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().ok())
}

impl std::str::FromStr for TokenAmount {
    type Err = ParseAmountError;

    /// Parses `"1.5"`, `"1.5 LODE"` or `"1.5lode"` (whole tokens, up to 18 decimals) and
    /// `"1500atto"` or `"1500 atto"` (atto units, an integer), as [`TokenAmount`]'s `Display`
    /// writes them; surrounding spaces are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let malformed = || ParseAmountError::Malformed(s.to_string());
        let too_large = || ParseAmountError::TooLarge(s.to_string());
        let lower = text.to_ascii_lowercase();
        if let Some(atto) = lower.strip_suffix("atto") {
            return match parse_digits(atto.trim_end()) {
                Some(Some(n)) => Ok(TokenAmount(n)),
                Some(None) => Err(too_large()),
                None => Err(malformed()),
            };
        }
        let number = lower.strip_suffix("lode").unwrap_or(&lower).trim_end();
        let (whole, frac) = match number.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (number, None),
        };
        let whole = match parse_digits(whole) {
            Some(Some(n)) => n,
            Some(None) => return Err(too_large()),
            None => return Err(malformed()),
        };
        let frac = match frac {
            None => 0,
            Some(f) if f.len() > 18 => {
                return Err(if parse_digits(f).is_some() {
                    ParseAmountError::TooPrecise(s.to_string())
                } else {
                    malformed()
                });
            }
            // At most 18 digits padded to 18: below 10^18, never overflows.
            Some(f) => match parse_digits(f) {
                Some(_) => parse_digits(&format!("{f:0<18}"))
                    .flatten()
                    .ok_or_else(malformed)?,
                None => return Err(malformed()),
            },
        };
        whole
            .checked_mul(ATTO_PER_TOKEN)
            .and_then(|w| w.checked_add(frac))
            .map(TokenAmount)
            .ok_or_else(too_large)
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
    fn amounts_parse_in_tokens_and_atto() {
        let ok = |s: &str| s.parse::<TokenAmount>().unwrap_or_default();
        assert_eq!(ok("1.5"), TokenAmount(ATTO_PER_TOKEN + ATTO_PER_TOKEN / 2));
        assert_eq!(ok(" 3 LODE "), TokenAmount::tokens(3));
        assert_eq!(ok("3lode"), TokenAmount::tokens(3));
        assert_eq!(ok("0"), TokenAmount::ZERO);
        assert_eq!(ok("0.000000000000000001"), TokenAmount(1));
        assert_eq!(ok("1500atto"), TokenAmount(1500));
        assert_eq!(ok("1500 atto"), TokenAmount(1500));
        assert_eq!(
            format!("{}atto", u128::MAX).parse::<TokenAmount>(),
            Ok(TokenAmount(u128::MAX))
        );
        // What Display writes parses back.
        for a in [0, 1, ATTO_PER_TOKEN, 1_234_567_890_123_456_789, u128::MAX] {
            let t = TokenAmount(a);
            assert_eq!(t.to_string().parse::<TokenAmount>(), Ok(t), "{t}");
        }
        for bad in [
            "", " ", "LODE", "atto", "-1", "+1", "1.", ".5", "1.5atto", "1e3", "1,5", "0x10",
            "1.2.3", "1 5", "½",
        ] {
            assert!(
                matches!(
                    bad.parse::<TokenAmount>(),
                    Err(ParseAmountError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            "0.0000000000000000001".parse::<TokenAmount>(),
            Err(ParseAmountError::TooPrecise(_))
        ));
        for big in [
            format!("{}", u128::MAX / ATTO_PER_TOKEN + 1),
            format!("{}0atto", u128::MAX),
            "1".repeat(60),
        ] {
            assert!(
                matches!(
                    big.parse::<TokenAmount>(),
                    Err(ParseAmountError::TooLarge(_))
                ),
                "{big}"
            );
        }
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
