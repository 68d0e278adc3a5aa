//! gRPC server reflection, v1 and v1alpha, answered from one pool of the registered descriptor sets.
//!
//! Hand-written rather than tonic-reflection's `Builder`: its service (0.14 up to 0.14.9, and its main branch at
//! 0.14.6) ends the whole `ServerReflectionInfo` stream with an error status when a symbol, file or extension is
//! unknown. The protocol (grpc/reflection/v1/reflection.proto) answers an `error_response` on the stream instead and
//! keeps it open for the next request, as grpc-go and grpc-java do; grpcurl and buf curl probe names one stream at a
//! time. Only tonic-reflection's generated types are used here.
//!
//! A file is answered together with those of its transitive dependencies the stream has not been sent yet.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use prost_reflect::{DescriptorError, DescriptorPool, FileDescriptor};
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};

/// What a reflection request asks, whichever version it came in.
enum Query<'a> {
    File(&'a str),
    Symbol(&'a str),
    Extension(&'a str, i32),
    ExtensionNumbers(&'a str),
    Services,
}

/// What it is answered, whichever version it goes out in.
enum Answer {
    Files(Vec<Vec<u8>>),
    ExtensionNumbers(String, Vec<i32>),
    Services(Vec<String>),
    Error(Code, String),
}

/// The descriptors reflection describes: every file of the registered sets, and which file defines each symbol.
#[derive(Debug)]
pub(crate) struct Descriptors {
    pool: DescriptorPool,
    symbols: HashMap<String, FileDescriptor>,
    services: Vec<String>,
}

impl Descriptors {
    /// The pool of `sets` (encoded `FileDescriptorSet`s), health's and reflection's own; a file in several sets is
    /// kept once.
    pub(crate) fn new(sets: &[&[u8]]) -> Result<Arc<Self>, DescriptorError> {
        let mut pool = DescriptorPool::new();
        let own = [
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        for set in own.iter().chain(sets) {
            pool.decode_file_descriptor_set(*set)?;
        }

        let mut symbols = HashMap::new();
        let mut symbol = |name: &str, file: FileDescriptor| {
            symbols.entry(name.to_owned()).or_insert(file);
        };
        for message in pool.all_messages() {
            symbol(message.full_name(), message.parent_file());
            for field in message.fields() {
                symbol(field.full_name(), message.parent_file());
            }
            for oneof in message.oneofs() {
                symbol(oneof.full_name(), message.parent_file());
            }
        }
        for enumeration in pool.all_enums() {
            symbol(enumeration.full_name(), enumeration.parent_file());
            for value in enumeration.values() {
                symbol(value.full_name(), enumeration.parent_file());
            }
        }
        for extension in pool.all_extensions() {
            symbol(extension.full_name(), extension.parent_file());
        }
        let mut services = Vec::new();
        for service in pool.services() {
            symbol(service.full_name(), service.parent_file());
            for method in service.methods() {
                symbol(method.full_name(), service.parent_file());
            }
            services.push(service.full_name().to_owned());
        }
        Ok(Arc::new(Self { pool, symbols, services }))
    }

    fn answer(&self, query: Query<'_>, sent: &mut HashSet<String>) -> Answer {
        let not_found = |what: String| Answer::Error(Code::NotFound, format!("{what} not found"));
        match query {
            Query::Services => Answer::Services(self.services.clone()),
            Query::File(name) => match self.pool.get_file_by_name(name) {
                Some(file) => Answer::Files(with_dependencies(file, sent)),
                None => not_found(format!("file {name:?}")),
            },
            Query::Symbol(name) => match self.symbols.get(name) {
                Some(file) => Answer::Files(with_dependencies(file.clone(), sent)),
                None => not_found(format!("symbol {name:?}")),
            },
            Query::Extension(message, number) => {
                let extension = self
                    .pool
                    .get_message_by_name(message)
                    .zip(u32::try_from(number).ok())
                    .and_then(|(message, number)| message.get_extension(number));
                match extension {
                    Some(extension) => Answer::Files(with_dependencies(extension.parent_file(), sent)),
                    None => not_found(format!("extension {number} of {message:?}")),
                }
            }
            Query::ExtensionNumbers(message) => match self.pool.get_message_by_name(message) {
                Some(descriptor) => {
                    let numbers = descriptor.extensions().map(|e| e.number() as i32).collect();
                    Answer::ExtensionNumbers(message.to_owned(), numbers)
                }
                None => not_found(format!("message type {message:?}")),
            },
        }
    }
}

/// `file`, then those of its transitive dependencies not in `sent` (which then holds them all).
fn with_dependencies(file: FileDescriptor, sent: &mut HashSet<String>) -> Vec<Vec<u8>> {
    sent.insert(file.name().to_owned());
    let mut encoded = vec![file.encode_to_vec()];
    let mut pending: Vec<FileDescriptor> = file.dependencies().collect();
    while let Some(dependency) = pending.pop() {
        if sent.insert(dependency.name().to_owned()) {
            encoded.push(dependency.encode_to_vec());
            pending.extend(dependency.dependencies());
        }
    }
    encoded
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The same service for each version's generated types, which have the same shape.
macro_rules! reflection_service {
    ($version:ident, $name:ident) => {
        pub(crate) mod $version {
            use std::collections::HashSet;
            use std::sync::Arc;

            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$version::server_reflection_server::ServerReflection;
            pub(crate) use tonic_reflection::pb::$version::server_reflection_server::ServerReflectionServer;
            use tonic_reflection::pb::$version::{
                ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse, ListServiceResponse,
                ServerReflectionRequest, ServerReflectionResponse, ServiceResponse,
            };

            use super::*;

            #[doc = concat!("`grpc.reflection.", stringify!($version), ".ServerReflection` over [`Descriptors`].")]
            pub(crate) struct $name(pub(crate) Arc<Descriptors>);

            fn respond(
                descriptors: &Descriptors,
                request: &ServerReflectionRequest,
                sent: &mut HashSet<String>,
            ) -> MessageResponse {
                let query = match &request.message_request {
                    Some(MessageRequest::FileByFilename(name)) => Query::File(name),
                    Some(MessageRequest::FileContainingSymbol(name)) => Query::Symbol(name),
                    Some(MessageRequest::FileContainingExtension(e)) => {
                        Query::Extension(&e.containing_type, e.extension_number)
                    }
                    Some(MessageRequest::AllExtensionNumbersOfType(name)) => Query::ExtensionNumbers(name),
                    Some(MessageRequest::ListServices(_)) => Query::Services,
                    None => {
                        return MessageResponse::ErrorResponse(ErrorResponse {
                            error_code: Code::InvalidArgument as i32,
                            error_message: "no message_request".into(),
                        })
                    }
                };
                match descriptors.answer(query, sent) {
                    Answer::Files(file_descriptor_proto) => {
                        MessageResponse::FileDescriptorResponse(FileDescriptorResponse { file_descriptor_proto })
                    }
                    Answer::ExtensionNumbers(base_type_name, extension_number) => {
                        MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                            base_type_name,
                            extension_number,
                        })
                    }
                    Answer::Services(names) => MessageResponse::ListServicesResponse(ListServiceResponse {
                        service: names.into_iter().map(|name| ServiceResponse { name }).collect(),
                    }),
                    Answer::Error(code, error_message) => {
                        MessageResponse::ErrorResponse(ErrorResponse { error_code: code as i32, error_message })
                    }
                }
            }

            #[tonic::async_trait]
            impl ServerReflection for $name {
                type ServerReflectionInfoStream = ResponseStream<ServerReflectionResponse>;

                async fn server_reflection_info(
                    &self,
                    request: Request<Streaming<ServerReflectionRequest>>,
                ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
                    let descriptors = self.0.clone();
                    let mut sent = HashSet::new();
                    // A request that does not decode ends the stream with its status; every other one is answered.
                    let responses = request.into_inner().map(move |request| {
                        let request = request?;
                        let message_response = respond(&descriptors, &request, &mut sent);
                        Ok(ServerReflectionResponse {
                            valid_host: request.host.clone(),
                            original_request: Some(request),
                            message_response: Some(message_response),
                        })
                    });
                    Ok(Response::new(Box::pin(responses)))
                }
            }
        }
    };
}

reflection_service!(v1, ReflectionV1);
reflection_service!(v1alpha, ReflectionV1Alpha);
