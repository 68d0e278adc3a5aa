//! courier's contracts as Rust: one module per protobuf package, plus [`FILE_DESCRIPTOR_SET`] for reflection.
//!
//! `proto/` is the single source of truth; this crate is generated from it at build time.

#![allow(missing_docs)]

pub mod codec;

/// `courier.users.v1`: the user service.
pub mod users {
    /// Version 1 of the user contract.
    pub mod v1 {
        tonic::include_proto!("courier.users.v1");
    }
}

/// `courier.payments.v1`: accounts and the two-phase ledger.
pub mod payments {
    /// Version 1 of the payment contract.
    // Generated: `AuthorizeStreamResponse.result` holds an Authorization or a small Status; boxing it would change
    // the generated API for one lint.
    #[allow(clippy::large_enum_variant)]
    pub mod v1 {
        tonic::include_proto!("courier.payments.v1");
    }
}

/// `courier.risk.v1`: scoring authorizations, rule sets and their rollout.
pub mod risk {
    /// Version 1 of the risk contract.
    pub mod v1 {
        tonic::include_proto!("courier.risk.v1");
    }
}

/// `coprocess`: Tyk's gRPC plugin contract (vendored under third_party/tyk, MPL-2.0), served by
/// `courier serve tyk-plugin`.
pub mod tyk {
    /// The `coprocess` package as Tyk publishes it.
    pub mod coprocess {
        tonic::include_proto!("coprocess");
    }
}

/// The encoded `FileDescriptorSet` of every courier proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/courier_descriptor.bin"));
