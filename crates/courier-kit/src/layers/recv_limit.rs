//! The receive-size limit: a request message longer than the limit is refused with RESOURCE_EXHAUSTED, as the
//! gRPC spec and the other gRPC stacks (Go, Java, Python) answer, as soon as its 5-byte length prefix arrives,
//! before its payload is buffered.
//!
//! tonic has a per-service limit of its own but answers OUT_OF_RANGE, and each generated service must be told
//! separately; one layer in front of every service gives one limit and the standard code.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

/// Layer for [`RecvLimit`].
#[derive(Clone, Copy, Debug)]
pub struct RecvLimitLayer {
    max_message_bytes: u32,
}

impl RecvLimitLayer {
    /// Refuse request messages longer than `max_message_bytes` (saturating at 4 GiB, the frame format's limit).
    pub fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes: u32::try_from(max_message_bytes).unwrap_or(u32::MAX) }
    }
}

impl<S> Layer<S> for RecvLimitLayer {
    type Service = RecvLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecvLimit { inner, max_message_bytes: self.max_message_bytes }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct RecvLimit<S> {
    inner: S,
    max_message_bytes: u32,
}

impl<S> Service<Request<tonic::body::Body>> for RecvLimit<S>
where
    S: Service<Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        let limit = self.max_message_bytes;
        self.inner.call(request.map(|body| tonic::body::Body::new(LimitedBody::new(body, limit))))
    }
}

pin_project_lite::pin_project! {
    /// A request body that checks each gRPC message's length prefix against the limit as the bytes go by.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        frames: FrameScanner,
    }
}

impl<B> LimitedBody<B> {
    fn new(inner: B, max_message_bytes: u32) -> Self {
        Self { inner, frames: FrameScanner::new(max_message_bytes) }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = self.project();
        match std::task::ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.frames.scan(data)?;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => Poll::Ready(Some(Err(tonic::Status::from_error(error.into())))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Follows the gRPC framing (1 flag byte, 4-byte big-endian length, payload) across arbitrary chunk boundaries.
#[derive(Debug)]
struct FrameScanner {
    max_message_bytes: u32,
    /// Payload bytes of the current message still to come; 0 means a prefix is next.
    payload_left: u64,
    prefix: [u8; 5],
    prefix_len: usize,
}

impl FrameScanner {
    fn new(max_message_bytes: u32) -> Self {
        Self { max_message_bytes, payload_left: 0, prefix: [0; 5], prefix_len: 0 }
    }

    fn scan(&mut self, mut data: &[u8]) -> Result<(), tonic::Status> {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left).unwrap_or(usize::MAX).min(data.len());
                self.payload_left -= skip as u64;
                data = &data[skip..];
                continue;
            }
            let take = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
            self.prefix_len += take;
            data = &data[take..];
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let len = u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]);
                if len > self.max_message_bytes {
                    return Err(tonic::Status::resource_exhausted(format!(
                        "request message of {len} bytes exceeds the server's limit of {} bytes",
                        self.max_message_bytes
                    )));
                }
                self.payload_left = u64::from(len);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&len.to_be_bytes());
        f.resize(5 + len as usize, 7);
        f
    }

    #[test]
    fn accepts_messages_at_the_limit_split_anywhere() {
        let stream: Vec<u8> = [frame(10), frame(0), frame(3)].concat();
        for split in 0..stream.len() {
            let mut scanner = FrameScanner::new(10);
            scanner.scan(&stream[..split]).unwrap();
            scanner.scan(&stream[split..]).unwrap();
            assert_eq!((scanner.payload_left, scanner.prefix_len), (0, 0));
        }
    }

    #[test]
    fn refuses_a_message_over_the_limit_from_its_prefix() {
        let mut scanner = FrameScanner::new(10);
        scanner.scan(&frame(10)).unwrap();
        let err = scanner.scan(&frame(11)[..5]).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    }
}
