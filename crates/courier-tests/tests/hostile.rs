//! Requests whose bytes do not decode as protobuf, sent over a real HTTP/2 connection with a codec that writes
//! them as given: the answer is INVALID_ARGUMENT with a generic message and a BadRequest detail (never the
//! decoder's text, which names fields), and on AuthorizeStream one same answer every time, then the stream ends.

use courier_tests::{Backend, TestServer};
use prost::bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Not protobuf: 0xff never ends a varint, so the first tag never ends.
const HOSTILE: &[u8] = &[0xff; 12];
const ROUNDS: usize = 50;

/// Writes a request's bytes as they are and reads a response's bytes as they are.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

fn assert_generic_invalid_argument(status: &Status, message_type: &str) -> String {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let message = status.message();
    assert_eq!(message, format!("request does not decode as {message_type}"));
    assert!(!message.contains("varint") && !message.contains("decode Protobuf"), "{message}");
    let details = status.get_error_details();
    let bad_request = details.bad_request().unwrap_or_else(|| panic!("a BadRequest detail: {status:?}"));
    assert!(!bad_request.field_violations.is_empty(), "{bad_request:?}");
    for violation in &bad_request.field_violations {
        assert!(!violation.description.contains("varint"), "{violation:?}");
    }
    message.to_string()
}

async fn grpc(server: &TestServer) -> tonic::client::Grpc<tonic::transport::Channel> {
    let mut grpc = tonic::client::Grpc::new(server.channel.clone());
    grpc.ready().await.expect("server ready");
    grpc
}

#[tokio::test]
async fn undecodable_unary_request_is_invalid_argument() {
    let server = TestServer::start(Backend::Sqlite).await;
    for _ in 0..ROUNDS {
        let mut grpc = grpc(&server).await;
        let path = http::uri::PathAndQuery::from_static("/courier.payments.v1.PaymentService/Authorize");
        let request = tonic::Request::new(Bytes::from_static(HOSTILE));
        let status = grpc.unary(request, path, RawCodec).await.expect_err("undecodable request refused");
        assert_generic_invalid_argument(&status, "AuthorizeRequest");
    }
    server.assert_ledger_consistent().await;
}

#[tokio::test]
async fn undecodable_stream_message_answers_once_and_ends() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut answers = Vec::new();
    for _ in 0..ROUNDS {
        let mut grpc = grpc(&server).await;
        let path = http::uri::PathAndQuery::from_static("/courier.payments.v1.PaymentService/AuthorizeStream");
        // The hostile message, then more bytes the server must never read.
        let messages = [Bytes::from_static(HOSTILE), Bytes::from_static(HOSTILE), Bytes::from_static(&[0x0a])];
        let request = tonic::Request::new(futures::stream::iter(messages));
        let status = match grpc.streaming(request, path, RawCodec).await {
            Err(status) => status,
            Ok(response) => {
                let mut stream = response.into_inner();
                let first = stream.message().await;
                let status = first.expect_err("no answer but the error");
                assert!(matches!(stream.message().await, Ok(None) | Err(_)), "the stream ended");
                status
            }
        };
        answers.push(assert_generic_invalid_argument(&status, "AuthorizeStreamRequest"));
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "one answer every time: {answers:?}");
    server.assert_ledger_consistent().await;
}
