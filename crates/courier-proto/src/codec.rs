//! The codec every generated service and client uses: prost's, except that a request message that does not
//! decode is the caller's fault (INVALID_ARGUMENT with a BadRequest), not INTERNAL. The decoder's own text
//! ("invalid varint", "invalid wire type ... for field X") describes the schema and what the parser tripped on, so
//! it goes only to the server log at debug.

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};
use tonic_types::{ErrorDetails, StatusExt};

/// [`ProstCodec`] with [`RequestDecoder`]; named by `codec_path` in build.rs.
#[derive(Debug, Clone)]
pub struct CourierCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for CourierCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> Codec for CourierCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder(self.0.decoder())
    }
}

/// prost's decoder; its error on a request message becomes [`undecodable`]'s INVALID_ARGUMENT.
#[derive(Debug)]
pub struct RequestDecoder<U>(ProstDecoder<U>);

impl<U> Decoder for RequestDecoder<U>
where
    U: Message + Default + Send + 'static,
{
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // prost's decoder fails only when the bytes are not the message.
        self.0.decode(buf).map_err(|error| match request_type::<U>() {
            Some(message_type) => undecodable(message_type, &error),
            // A response that does not decode (clients use this codec too) is the server's fault: prost's INTERNAL.
            None => error,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// The message's name when it is a request: every RPC's input is named `<Rpc>Request` and its output
/// `<Rpc>Response` (buf lint's RPC_REQUEST_STANDARD_NAME), so a decoded `...Request` is one the server received.
fn request_type<U>() -> Option<&'static str> {
    let name = std::any::type_name::<U>().rsplit("::").next()?;
    name.ends_with("Request").then_some(name)
}

/// INVALID_ARGUMENT naming only the message type; the decoder's text is logged, never sent.
fn undecodable(message_type: &str, error: &Status) -> Status {
    tracing::debug!(message_type, error = error.message(), "request does not decode");
    let message = format!("request does not decode as {message_type}");
    let details = ErrorDetails::with_bad_request_violation("", format!("not an encoded {message_type}"));
    Status::with_error_details(Code::InvalidArgument, message, details)
}

#[cfg(test)]
mod tests {
    use super::request_type;

    #[test]
    fn only_request_messages_are_requests() {
        assert_eq!(request_type::<crate::payments::v1::AuthorizeRequest>(), Some("AuthorizeRequest"));
        assert_eq!(request_type::<crate::payments::v1::AuthorizeResponse>(), None);
    }
}
