//! The sync protocol's wire format: one length-prefixed frame each way.
//!
//! A frame is a big-endian `u32` length followed by that many bytes. The reader checks the length
//! against its limit before reading anything else, so a frame that announces more than the limit
//! is refused after four bytes, and the buffer grows only as bytes arrive (never beyond the
//! announced length, which is at most the limit): a peer that announces a large frame and sends
//! nothing costs no memory.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use prometheus_client::metrics::counter::Counter;

/// The capacity a frame buffer starts with; it grows as bytes arrive.
const INITIAL_CAPACITY: usize = 64 * 1024;

/// A frame announced (or offered for writing) with more bytes than the limit allows. Carried inside
/// the [`io::Error`] (kind `InvalidData`) that the reader or writer returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
pub struct FrameTooLarge {
    /// The announced or offered length.
    pub len: u64,
    /// The limit.
    pub limit: usize,
}

impl FrameTooLarge {
    /// Finds a `FrameTooLarge` inside an I/O error returned by [`read_frame`] or [`write_frame`].
    pub(crate) fn find(error: &io::Error) -> Option<FrameTooLarge> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<FrameTooLarge>())
            .copied()
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// Reads one frame of at most `limit` bytes.
///
/// # Errors
/// `InvalidData` carrying [`FrameTooLarge`] when the prefix announces more than `limit` bytes;
/// `UnexpectedEof` when the stream ends inside the prefix or the body; any I/O error of `io`.
pub async fn read_frame<R>(io: &mut R, limit: usize) -> io::Result<Vec<u8>>
where
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let announced = u32::from_be_bytes(prefix);
    let len = match usize::try_from(announced) {
        Ok(len) if len <= limit => len,
        _ => {
            return Err(FrameTooLarge {
                len: u64::from(announced),
                limit,
            }
            .into_io());
        }
    };
    let mut body = Vec::with_capacity(len.min(INITIAL_CAPACITY));
    let read = (&mut *io)
        .take(u64::from(announced))
        .read_to_end(&mut body)
        .await?;
    if read != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame truncated: {read} of {len} bytes"),
        ));
    }
    Ok(body)
}

/// Writes one frame; refuses one longer than `limit` (or than `u32::MAX`) without writing anything.
///
/// # Errors
/// `InvalidData` carrying [`FrameTooLarge`] for an oversized frame; any I/O error of `io`.
pub async fn write_frame<W>(io: &mut W, data: &[u8], limit: usize) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let too_large = || FrameTooLarge {
        len: u64::try_from(data.len()).unwrap_or(u64::MAX),
        limit,
    };
    if data.len() > limit {
        return Err(too_large().into_io());
    }
    let len = u32::try_from(data.len()).map_err(|_| too_large().into_io())?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(data).await?;
    io.flush().await
}

/// The request–response codec of the sync protocol: requests of at most `max_request` bytes,
/// responses of at most `max_response` bytes, each one [frame](self).
#[derive(Debug, Clone)]
pub(crate) struct SyncCodec {
    max_request: usize,
    max_response: usize,
    /// Counts inbound requests refused for their size (they never reach the node).
    oversized_requests: Counter,
    /// Counts responses refused for their size.
    oversized_responses: Counter,
}

impl SyncCodec {
    /// A codec with these limits, counting refusals in the given counters.
    pub(crate) fn new(
        max_request: usize,
        max_response: usize,
        oversized_requests: Counter,
        oversized_responses: Counter,
    ) -> SyncCodec {
        SyncCodec {
            max_request,
            max_response,
            oversized_requests,
            oversized_responses,
        }
    }
}

/// Passes `result` through, counting an oversized frame in `counter`.
fn count_oversized<T>(result: io::Result<T>, counter: &Counter) -> io::Result<T> {
    if let Err(e) = &result
        && FrameTooLarge::find(e).is_some()
    {
        counter.inc();
    }
    result
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        count_oversized(
            read_frame(io, self.max_request).await,
            &self.oversized_requests,
        )
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        count_oversized(
            read_frame(io, self.max_response).await,
            &self.oversized_responses,
        )
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request, self.max_request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        count_oversized(
            write_frame(io, &response, self.max_response).await,
            &self.oversized_responses,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use futures::executor::block_on;
    use proptest::prelude::*;

    use super::*;

    fn frame(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        block_on(write_frame(&mut out, data, usize::MAX)).unwrap();
        out
    }

    #[test]
    fn roundtrip_and_exact_limit() {
        let data = vec![7u8; 1000];
        let bytes = frame(&data);
        assert_eq!(&bytes[..4], &1000u32.to_be_bytes());
        assert_eq!(block_on(read_frame(&mut &bytes[..], 1000)).unwrap(), data);
        let e = block_on(read_frame(&mut &bytes[..], 999)).unwrap_err();
        assert_eq!(
            FrameTooLarge::find(&e),
            Some(FrameTooLarge {
                len: 1000,
                limit: 999
            })
        );
        assert_eq!(block_on(read_frame(&mut &frame(&[])[..], 0)).unwrap(), b"");
    }

    #[test]
    fn writer_refuses_oversized_frames_and_writes_nothing() {
        let mut out = Vec::new();
        let e = block_on(write_frame(&mut out, &[1, 2, 3], 2)).unwrap_err();
        assert_eq!(FrameTooLarge::find(&e).map(|f| f.len), Some(3));
        assert!(out.is_empty());
    }

    #[test]
    fn a_huge_announcement_is_refused_before_any_allocation() {
        // u32::MAX announced, nothing behind it: refused at the prefix.
        let bytes = u32::MAX.to_be_bytes();
        let e = block_on(read_frame(&mut &bytes[..], 16 << 20)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // A legal announcement with a short body is a truncation, not a hang or a panic.
        let mut short = 100u32.to_be_bytes().to_vec();
        short.extend_from_slice(&[0; 10]);
        let e = block_on(read_frame(&mut &short[..], 1000)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn oversized_frames_are_counted() {
        let requests = Counter::default();
        let responses = Counter::default();
        let mut codec = SyncCodec::new(4, 8, requests.clone(), responses.clone());
        let protocol = StreamProtocol::new("/lode/test/sync/1");
        let bytes = frame(&[0; 5]);
        use request_response::Codec;
        assert!(block_on(codec.read_request(&protocol, &mut &bytes[..])).is_err());
        assert!(block_on(codec.read_response(&protocol, &mut &bytes[..])).is_ok());
        assert!(block_on(codec.write_response(&protocol, &mut Vec::new(), vec![0; 9])).is_err());
        assert_eq!((requests.get(), responses.get()), (1, 1));
    }

    proptest! {
        /// Arbitrary bytes never panic the reader, and it accepts exactly the well-formed frames.
        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), limit in 0usize..400) {
            let result = block_on(read_frame(&mut &bytes[..], limit));
            let well_formed = bytes.len() >= 4 && {
                let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                len <= limit && bytes.len() >= 4 + len
            };
            prop_assert_eq!(result.is_ok(), well_formed);
            if let Ok(body) = result {
                prop_assert_eq!(&body[..], &bytes[4..4 + body.len()]);
            }
        }

        /// Every frame reads back; every truncation of it is refused.
        #[test]
        fn roundtrip_and_truncation(data in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..204) {
            let bytes = frame(&data);
            prop_assert_eq!(block_on(read_frame(&mut &bytes[..], data.len())).unwrap(), data);
            let cut = cut.min(bytes.len());
            if cut < bytes.len() {
                prop_assert!(block_on(read_frame(&mut &bytes[..cut], usize::MAX)).is_err());
            }
        }
    }
}
