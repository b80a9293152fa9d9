//! The market protocols' wire format: one length-prefixed frame each way, as the node's sync
//! protocol frames them.
//!
//! A frame is a big-endian `u32` length followed by that many bytes. The reader checks the length
//! against its limit before reading anything else, so a frame that announces more than the limit
//! is refused after four bytes, and the buffer grows only as bytes arrive (never beyond the
//! announced length): a peer that announces a large frame and sends nothing costs no memory.
//! The frame's bytes are a postcard message, decoded strictly by [`crate::deal::decode`].

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

/// The capacity a frame buffer starts with; it grows as bytes arrive.
const INITIAL_CAPACITY: usize = 16 * 1024;

/// A frame announced (or offered for writing) with more bytes than the limit allows; carried
/// inside the [`io::Error`] (kind `InvalidData`) that the reader or writer returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
pub struct FrameTooLarge {
    /// The announced or offered length.
    pub len: u64,
    /// The limit.
    pub limit: usize,
}

impl FrameTooLarge {
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

/// A request–response codec of frames: requests of at most `max_request` bytes, responses of at
/// most `max_response` bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_request: usize,
    max_response: usize,
}

impl FrameCodec {
    /// A codec with these limits.
    pub fn new(max_request: usize, max_response: usize) -> FrameCodec {
        FrameCodec {
            max_request,
            max_response,
        }
    }
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response).await
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
        write_frame(io, &response, self.max_response).await
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
    fn oversized_frames_are_refused_both_ways() {
        let bytes = frame(&[7; 100]);
        assert!(block_on(read_frame(&mut &bytes[..], 99)).is_err());
        assert_eq!(
            block_on(read_frame(&mut &bytes[..], 100)).unwrap(),
            vec![7; 100]
        );
        let mut out = Vec::new();
        assert!(block_on(write_frame(&mut out, &[0; 10], 9)).is_err());
        assert!(out.is_empty());
        // A huge announcement with nothing behind it is refused at the prefix.
        let e = block_on(read_frame(&mut &u32::MAX.to_be_bytes()[..], 1 << 20)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    proptest! {
        /// Arbitrary bytes never panic the reader, which accepts exactly the well-formed frames.
        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), limit in 0usize..400) {
            let result = block_on(read_frame(&mut &bytes[..], limit));
            let well_formed = bytes.len() >= 4 && {
                let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                len <= limit && bytes.len() >= 4 + len
            };
            prop_assert_eq!(result.is_ok(), well_formed);
        }

        /// Every frame reads back; every truncation is refused.
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
