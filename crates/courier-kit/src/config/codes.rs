//! gRPC status codes in configuration files, by their spec names (`"UNAVAILABLE"`), for `#[serde(with = ...)]`.

use serde::{Deserialize, Deserializer, Serializer};
use tonic::Code;

use crate::status::{code_from_name, code_name};

fn parse<E: serde::de::Error>(name: &str) -> Result<Code, E> {
    code_from_name(name).ok_or_else(|| E::custom(format!("unknown gRPC status code {name:?} (e.g. UNAVAILABLE)")))
}

/// One code.
pub mod one {
    use super::*;

    /// Writes the spec name.
    pub fn serialize<S: Serializer>(code: &Code, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(code_name(*code))
    }

    /// Reads a spec name.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Code, D::Error> {
        parse(&String::deserialize(deserializer)?)
    }
}

/// An optional code.
pub mod option {
    use super::*;

    /// Writes the spec name, or nothing.
    pub fn serialize<S: Serializer>(code: &Option<Code>, serializer: S) -> Result<S::Ok, S::Error> {
        match code {
            Some(code) => serializer.serialize_some(code_name(*code)),
            None => serializer.serialize_none(),
        }
    }

    /// Reads a spec name when present.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Code>, D::Error> {
        Option::<String>::deserialize(deserializer)?.map(|name| parse(&name)).transpose()
    }
}

/// A list of codes.
pub mod list {
    use super::*;

    /// Writes the spec names.
    pub fn serialize<S: Serializer>(codes: &[Code], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(codes.iter().map(|code| code_name(*code)))
    }

    /// Reads spec names.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Code>, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        names.iter().map(|name| parse(name)).collect()
    }
}
