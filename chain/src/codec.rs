//! The chain's one binary encoding: postcard, into a fresh `Vec`.
//!
//! State records, messages, receipts' return data and every hashed structure are encoded with
//! [`encode`]. Encoding cannot fail for the types of this crate, which is why [`encode`] returns
//! the bytes rather than a `Result`: postcard's allocating serializer fails only when a type's
//! `Serialize` implementation returns an error, or serializes a sequence or map of unknown length.
//! Every encoded type here is a serde derive (which always knows its lengths) over integers, byte
//! arrays, strings, options, vectors, maps and the crate's own types, whose hand-written
//! `Serialize` implementations (token amounts, keys, signatures) never return an error. Should a
//! future type break that rule it would encode to no bytes at all, which its round-trip test
//! catches.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The postcard encoding of `value` (see the module docs for why it cannot fail).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decodes exactly one `T` that [`encode`] wrote; `None` for bytes that are not one (malformed,
/// cut short, or followed by more bytes).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match postcard::take_from_bytes(bytes) {
        Ok((v, [])) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_exactly_one_value() {
        let v = (7u32, String::from("lode"));
        let bytes = encode(&v);
        assert_eq!(decode::<(u32, String)>(&bytes), Some(v));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode::<(u32, String)>(&longer), None);
        assert_eq!(decode::<(u32, String)>(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn encodes_like_postcard() {
        let v = (7u32, vec![1u8, 2, 3], String::from("lode"));
        assert_eq!(Some(encode(&v)), postcard::to_allocvec(&v).ok());
    }
}
