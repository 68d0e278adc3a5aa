//! The server-side subcommands.

pub mod serve;
