//! fr32 padding (SPEC §3.1): 127 raw bytes become 128 padded bytes, four 254-bit field nodes.
//!
//! The input is a little-endian bit stream; every 254 bits fill one 32-byte node whose two top bits are
//! zero. Everything here streams: [`PadReader`] / [`UnpadReader`] wrap a `Read`, [`PadWriter`] /
//! [`UnpadWriter`] wrap a `Write`, and none of them holds more than a fixed buffer. A stream whose length
//! is not a multiple of 127 is zero-extended to the next whole block when padded (pieces are zero-filled
//! anyway); [`UnpadReader`] and [`UnpadWriter`] can stop at an exact payload length.

use std::io::{self, Read, Write};

/// Raw bytes per fr32 block.
pub const RAW_BLOCK: usize = 127;
/// Padded bytes per fr32 block.
pub const PADDED_BLOCK: usize = 128;

/// Blocks processed per buffered read or write (≈ 1 MiB of padded data).
const BLOCKS_PER_BUF: usize = 8192;

/// Where the bits of each of the four nodes start inside the 1016-bit block: (word, shift).
const NODE_BIT_OFFSETS: [(usize, u32); 4] = [(0, 0), (3, 62), (7, 60), (11, 58)];
const LOW_62: u64 = (1 << 62) - 1;

/// Errors of fr32 unpadding.
#[derive(Debug, thiserror::Error)]
pub enum Fr32Error {
    /// A padded node has one of its two top bits set, so the data was never fr32-padded.
    #[error("not fr32-padded data: the node at byte offset {offset} has its two top bits set")]
    InvalidNode {
        /// Byte offset of the node in the padded stream.
        offset: u64,
    },
    /// The padded stream ended inside a 128-byte block.
    #[error(
        "padded data must be a whole number of 128-byte blocks; it ends {0} bytes into a block"
    )]
    PartialBlock(usize),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<Fr32Error> for io::Error {
    fn from(e: Fr32Error) -> io::Error {
        match e {
            Fr32Error::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// Pads one 127-byte block into 128 bytes.
pub fn pad_block(raw: &[u8; RAW_BLOCK], out: &mut [u8; PADDED_BLOCK]) {
    let mut w = [0u64; 16];
    for (i, word) in w.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        let start = i * 8;
        let end = (start + 8).min(RAW_BLOCK);
        b[..end - start].copy_from_slice(&raw[start..end]);
        *word = u64::from_le_bytes(b);
    }
    for (k, &(o, sh)) in NODE_BIT_OFFSETS.iter().enumerate() {
        for j in 0..4 {
            let mut v = w[o + j] >> sh;
            if sh > 0 {
                v |= w[o + j + 1] << (64 - sh);
            }
            if j == 3 {
                v &= LOW_62;
            }
            out[k * 32 + j * 8..k * 32 + j * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// Unpads one 128-byte block into 127 bytes. The two top bits of each node are ignored; check them with
/// [`is_valid_block`] when the input is untrusted.
pub fn unpad_block(padded: &[u8; PADDED_BLOCK], out: &mut [u8; RAW_BLOCK]) {
    let mut w = [0u64; 16];
    for (k, &(o, sh)) in NODE_BIT_OFFSETS.iter().enumerate() {
        for j in 0..4 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&padded[k * 32 + j * 8..k * 32 + j * 8 + 8]);
            let mut n = u64::from_le_bytes(b);
            if j == 3 {
                n &= LOW_62;
            }
            w[o + j] |= n << sh;
            if sh > 0 && o + j + 1 < 16 {
                w[o + j + 1] |= n >> (64 - sh);
            }
        }
    }
    for (i, word) in w.iter().enumerate() {
        let start = i * 8;
        let end = (start + 8).min(RAW_BLOCK);
        out[start..end].copy_from_slice(&word.to_le_bytes()[..end - start]);
    }
}

/// Index of the first node of a padded block whose two top bits are set, if any.
pub fn invalid_node_in_block(padded: &[u8; PADDED_BLOCK]) -> Option<usize> {
    (0..4).find(|k| padded[k * 32 + 31] & 0xC0 != 0)
}

/// Whether every node of a padded block has its two top bits clear.
pub fn is_valid_block(padded: &[u8; PADDED_BLOCK]) -> bool {
    invalid_node_in_block(padded).is_none()
}

/// Pads a whole buffer; `raw` is zero-extended to a multiple of 127 bytes.
pub fn pad(raw: &[u8]) -> Vec<u8> {
    let blocks = raw.len().div_ceil(RAW_BLOCK);
    let mut out = vec![0u8; blocks * PADDED_BLOCK];
    pad_into(raw, &mut out);
    out
}

/// Pads `raw` (zero-extended to whole blocks) into `out`, which must hold exactly the padded blocks.
fn pad_into(raw: &[u8], out: &mut [u8]) {
    for (i, dst) in out.chunks_exact_mut(PADDED_BLOCK).enumerate() {
        let start = i * RAW_BLOCK;
        let mut block = [0u8; RAW_BLOCK];
        if start < raw.len() {
            let end = (start + RAW_BLOCK).min(raw.len());
            block[..end - start].copy_from_slice(&raw[start..end]);
        }
        if let Ok(dst) = <&mut [u8; PADDED_BLOCK]>::try_from(dst) {
            pad_block(&block, dst);
        }
    }
}

/// Unpads a whole buffer of 128-byte blocks, rejecting nodes whose top bits are set.
pub fn unpad(padded: &[u8]) -> Result<Vec<u8>, Fr32Error> {
    let rem = padded.len() % PADDED_BLOCK;
    if rem != 0 {
        return Err(Fr32Error::PartialBlock(rem));
    }
    let mut out = vec![0u8; padded.len() / PADDED_BLOCK * RAW_BLOCK];
    unpad_into(padded, &mut out, 0)?;
    Ok(out)
}

/// Unpads whole blocks of `padded` into `out`; `offset` is the stream position of `padded`, for errors.
fn unpad_into(padded: &[u8], out: &mut [u8], offset: u64) -> Result<(), Fr32Error> {
    for (i, (src, dst)) in padded
        .chunks_exact(PADDED_BLOCK)
        .zip(out.chunks_exact_mut(RAW_BLOCK))
        .enumerate()
    {
        let (Ok(src), Ok(dst)) = (
            <&[u8; PADDED_BLOCK]>::try_from(src),
            <&mut [u8; RAW_BLOCK]>::try_from(dst),
        ) else {
            unreachable!("chunks_exact yields whole blocks")
        };
        if let Some(k) = invalid_node_in_block(src) {
            return Err(Fr32Error::InvalidNode {
                offset: offset + (i * PADDED_BLOCK + k * 32) as u64,
            });
        }
        unpad_block(src, dst);
    }
    Ok(())
}

/// Reads as much as possible into `buf`, stopping only at end of stream; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Converted bytes waiting to be read out of an adapter.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    pos: usize,
}

impl Pending {
    fn is_drained(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// Copies as much as fits into `buf`.
    fn drain_into(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.bytes.len() - self.pos);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        n
    }

    /// Resizes the buffer for `len` new bytes and returns it for filling.
    fn refill(&mut self, len: usize) -> &mut Vec<u8> {
        self.bytes.resize(len, 0);
        self.pos = 0;
        &mut self.bytes
    }
}

/// A `Read` adapter that yields the fr32 padding of the wrapped raw stream.
///
/// The raw stream is zero-extended to a whole 127-byte block at its end; an empty stream yields nothing.
pub struct PadReader<R> {
    inner: R,
    raw: Vec<u8>,
    out: Pending,
    done: bool,
}

impl<R: Read> PadReader<R> {
    /// Wraps a raw stream.
    pub fn new(inner: R) -> Self {
        PadReader {
            inner,
            raw: vec![0; BLOCKS_PER_BUF * RAW_BLOCK],
            out: Pending::default(),
            done: false,
        }
    }

    /// Gives back the wrapped stream.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn refill(&mut self) -> io::Result<()> {
        let n = read_full(&mut self.inner, &mut self.raw)?;
        if n < self.raw.len() {
            self.done = true;
        }
        let out = self.out.refill(n.div_ceil(RAW_BLOCK) * PADDED_BLOCK);
        pad_into(&self.raw[..n], out);
        Ok(())
    }
}

impl<R: Read> Read for PadReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out.is_drained() {
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
        Ok(self.out.drain_into(buf))
    }
}

/// A `Read` adapter that yields the raw bytes of a wrapped fr32-padded stream.
///
/// The padded stream must be whole 128-byte blocks with every node's top bits clear; otherwise reading
/// fails with `InvalidData` (wrapping an [`Fr32Error`]). With [`UnpadReader::with_limit`] it stops after
/// exactly that many raw bytes (dropping the zero fill of the last block).
pub struct UnpadReader<R> {
    inner: R,
    padded: Vec<u8>,
    out: Pending,
    offset: u64,
    remaining: Option<u64>,
    done: bool,
}

impl<R: Read> UnpadReader<R> {
    /// Wraps a padded stream; yields every raw byte of every block.
    pub fn new(inner: R) -> Self {
        UnpadReader {
            inner,
            padded: vec![0; BLOCKS_PER_BUF * PADDED_BLOCK],
            out: Pending::default(),
            offset: 0,
            remaining: None,
            done: false,
        }
    }

    /// Wraps a padded stream and yields at most `limit` raw bytes.
    pub fn with_limit(inner: R, limit: u64) -> Self {
        UnpadReader {
            remaining: Some(limit),
            ..UnpadReader::new(inner)
        }
    }

    fn refill(&mut self) -> Result<(), Fr32Error> {
        let n = read_full(&mut self.inner, &mut self.padded)?;
        if n < self.padded.len() {
            self.done = true;
        }
        let rem = n % PADDED_BLOCK;
        let whole = n - rem;
        // With a limit, a trailing partial block past the limit is irrelevant; without one it is an error.
        let needed = self.remaining.map_or(u64::MAX, |r| r);
        if rem != 0 && ((whole / PADDED_BLOCK * RAW_BLOCK) as u64) < needed {
            return Err(Fr32Error::PartialBlock(rem));
        }
        let out = self.out.refill(whole / PADDED_BLOCK * RAW_BLOCK);
        unpad_into(&self.padded[..whole], out, self.offset)?;
        self.offset += whole as u64;
        if let Some(r) = self.remaining {
            let keep = (out.len() as u64).min(r);
            out.truncate(keep as usize);
            self.remaining = Some(r - keep);
            if r == keep {
                self.done = true;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for UnpadReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out.is_drained() {
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
        Ok(self.out.drain_into(buf))
    }
}

/// A `Write` adapter: raw bytes written to it reach the wrapped writer fr32-padded.
///
/// Call [`PadWriter::finish`] at the end: it pads and writes the last partial block (zero-extended) and
/// returns the wrapped writer. Dropping without `finish` loses that block.
pub struct PadWriter<W: Write> {
    inner: W,
    raw: Vec<u8>,
    out: Vec<u8>,
    written_raw: u64,
}

impl<W: Write> PadWriter<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> Self {
        PadWriter {
            inner,
            raw: Vec::with_capacity(BLOCKS_PER_BUF * RAW_BLOCK),
            out: vec![0; BLOCKS_PER_BUF * PADDED_BLOCK],
            written_raw: 0,
        }
    }

    /// Raw bytes accepted so far.
    pub fn raw_len(&self) -> u64 {
        self.written_raw
    }

    fn flush_blocks(&mut self, all: bool) -> io::Result<()> {
        let blocks = if all {
            self.raw.len().div_ceil(RAW_BLOCK)
        } else {
            self.raw.len() / RAW_BLOCK
        };
        if blocks == 0 {
            return Ok(());
        }
        let take = (blocks * RAW_BLOCK).min(self.raw.len());
        pad_into(&self.raw[..take], &mut self.out[..blocks * PADDED_BLOCK]);
        self.inner.write_all(&self.out[..blocks * PADDED_BLOCK])?;
        self.raw.drain(..take);
        Ok(())
    }

    /// Writes the last block (zero-extended), flushes, and returns the wrapped writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_blocks(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for PadWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCKS_PER_BUF * RAW_BLOCK - self.raw.len();
        let n = buf.len().min(room);
        self.raw.extend_from_slice(&buf[..n]);
        self.written_raw += n as u64;
        if self.raw.len() == BLOCKS_PER_BUF * RAW_BLOCK {
            self.flush_blocks(false)?;
        }
        Ok(n)
    }

    /// Writes the whole blocks buffered so far; a partial block waits for more data or `finish`.
    fn flush(&mut self) -> io::Result<()> {
        self.flush_blocks(false)?;
        self.inner.flush()
    }
}

/// A `Write` adapter: fr32-padded bytes written to it reach the wrapped writer unpadded.
///
/// Invalid nodes make `write` fail with `InvalidData`. Call [`UnpadWriter::finish`] at the end: it fails
/// if the padded stream stopped inside a block. With [`UnpadWriter::with_limit`] at most that many raw
/// bytes are written out.
pub struct UnpadWriter<W: Write> {
    inner: W,
    padded: Vec<u8>,
    out: Vec<u8>,
    offset: u64,
    remaining: Option<u64>,
}

impl<W: Write> UnpadWriter<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> Self {
        UnpadWriter {
            inner,
            padded: Vec::with_capacity(BLOCKS_PER_BUF * PADDED_BLOCK),
            out: vec![0; BLOCKS_PER_BUF * RAW_BLOCK],
            offset: 0,
            remaining: None,
        }
    }

    /// Wraps a writer and writes at most `limit` raw bytes to it.
    pub fn with_limit(inner: W, limit: u64) -> Self {
        UnpadWriter {
            remaining: Some(limit),
            ..UnpadWriter::new(inner)
        }
    }

    fn flush_blocks(&mut self) -> Result<(), Fr32Error> {
        let blocks = self.padded.len() / PADDED_BLOCK;
        if blocks == 0 {
            return Ok(());
        }
        let out = &mut self.out[..blocks * RAW_BLOCK];
        unpad_into(&self.padded[..blocks * PADDED_BLOCK], out, self.offset)?;
        let mut keep = out.len();
        if let Some(r) = self.remaining.as_mut() {
            keep = keep.min(usize::try_from(*r).unwrap_or(usize::MAX));
            *r -= keep as u64;
        }
        self.inner.write_all(&out[..keep])?;
        self.padded.drain(..blocks * PADDED_BLOCK);
        self.offset += (blocks * PADDED_BLOCK) as u64;
        Ok(())
    }

    /// Checks that the stream ended on a block boundary, flushes, and returns the wrapped writer.
    pub fn finish(mut self) -> Result<W, Fr32Error> {
        self.flush_blocks()?;
        if !self.padded.is_empty() && self.remaining != Some(0) {
            return Err(Fr32Error::PartialBlock(self.padded.len()));
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for UnpadWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCKS_PER_BUF * PADDED_BLOCK - self.padded.len();
        let n = buf.len().min(room);
        self.padded.extend_from_slice(&buf[..n]);
        if self.padded.len() == BLOCKS_PER_BUF * PADDED_BLOCK {
            self.flush_blocks()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_blocks()?;
        self.inner.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, bit by bit: raw bit `i` lands at padded bit `i + 2 * (i / 254)`.
    fn pad_bitwise(raw: &[u8]) -> Vec<u8> {
        let blocks = raw.len().div_ceil(RAW_BLOCK);
        let mut out = vec![0u8; blocks * PADDED_BLOCK];
        for i in 0..raw.len() * 8 {
            if raw[i / 8] >> (i % 8) & 1 == 1 {
                let j = i / 254 * 256 + i % 254;
                out[j / 8] |= 1 << (j % 8);
            }
        }
        out
    }

    #[derive(serde::Deserialize)]
    struct Case {
        raw: String,
        padded: String,
        payload_len: usize,
    }

    #[derive(serde::Deserialize)]
    struct Vectors {
        cases: Vec<Case>,
    }

    #[test]
    fn known_answers() {
        let v: Vectors = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/vectors/fr32.json"
        )))
        .unwrap();
        assert!(v.cases.len() >= 5);
        for c in v.cases {
            let raw = hex::decode(&c.raw).unwrap();
            let padded = hex::decode(&c.padded).unwrap();
            assert_eq!(pad(&raw), padded, "pad of {} bytes", raw.len());
            assert_eq!(unpad(&padded).unwrap(), raw);
            // Padding only the payload zero-extends to the same block.
            assert_eq!(pad(&raw[..c.payload_len]), padded);
            let mut streamed = Vec::new();
            PadReader::new(&raw[..c.payload_len])
                .read_to_end(&mut streamed)
                .unwrap();
            assert_eq!(streamed, padded);
        }
    }

    #[test]
    fn invalid_nodes_and_partial_blocks_are_rejected() {
        let mut padded = pad(&[0xAB; 300]);
        padded[128 + 64 + 31] |= 0x40;
        match unpad(&padded) {
            Err(Fr32Error::InvalidNode { offset }) => assert_eq!(offset, 128 + 64),
            other => panic!("expected InvalidNode, got {other:?}"),
        }
        assert!(matches!(
            unpad(&padded[..100]),
            Err(Fr32Error::PartialBlock(100))
        ));
        let mut out = Vec::new();
        let err = UnpadReader::new(&padded[..])
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn block_functions_match_the_bitwise_definition(raw in proptest::collection::vec(any::<u8>(), 0..1000)) {
            prop_assert_eq!(pad(&raw), pad_bitwise(&raw));
        }

        #[test]
        fn round_trips_at_any_length(raw in proptest::collection::vec(any::<u8>(), 0..5000), chunk in 1usize..700) {
            let padded = pad(&raw);
            prop_assert_eq!(padded.len(), raw.len().div_ceil(RAW_BLOCK) * PADDED_BLOCK);
            let mut back = unpad(&padded).unwrap();
            prop_assert!(back[raw.len()..].iter().all(|&b| b == 0));
            back.truncate(raw.len());
            prop_assert_eq!(&back, &raw);

            // Readers, with small reads.
            let mut r = PadReader::new(&raw[..]);
            let mut streamed = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 { break; }
                streamed.extend_from_slice(&buf[..n]);
            }
            prop_assert_eq!(&streamed, &padded);
            let mut exact = Vec::new();
            UnpadReader::with_limit(&padded[..], raw.len() as u64).read_to_end(&mut exact).unwrap();
            prop_assert_eq!(&exact, &raw);

            // Writers, fed in uneven pieces.
            let mut w = PadWriter::new(Vec::new());
            for piece in raw.chunks(chunk) { w.write_all(piece).unwrap(); }
            prop_assert_eq!(w.raw_len(), raw.len() as u64);
            prop_assert_eq!(&w.finish().unwrap(), &padded);
            let mut u = UnpadWriter::with_limit(Vec::new(), raw.len() as u64);
            for piece in padded.chunks(chunk) { u.write_all(piece).unwrap(); }
            prop_assert_eq!(&u.finish().unwrap(), &raw);
        }
    }

    #[test]
    fn streams_larger_than_the_buffer() {
        let raw: Vec<u8> = (0..(BLOCKS_PER_BUF * RAW_BLOCK * 2 + 999))
            .map(|i| (i * 13 + 7) as u8)
            .collect();
        let mut padded = Vec::new();
        PadReader::new(&raw[..]).read_to_end(&mut padded).unwrap();
        assert_eq!(padded, pad(&raw));
        let mut back = Vec::new();
        UnpadReader::with_limit(&padded[..], raw.len() as u64)
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, raw);
    }
}
