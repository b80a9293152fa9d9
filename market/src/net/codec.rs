//! The market protocols' wire format: one length-prefixed frame each way, with the node's sync
//! protocol's frame reader and writer ([`read_frame`], [`write_frame`]).
//!
//! A frame is a big-endian `u32` length followed by that many bytes. The reader checks the length
//! against its limit before reading anything else, so a frame that announces more than the limit
//! is refused after four bytes, and the buffer grows only as bytes arrive (never beyond the
//! announced length): a peer that announces a large frame and sends nothing costs no memory.
//! The frame's bytes are a postcard message, decoded strictly by [`crate::deal::decode`].

use std::io;

use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;
use libp2p::request_response;

pub use lode_node::net::{FrameTooLarge, read_frame, write_frame};

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
