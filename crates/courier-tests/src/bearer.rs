//! The token a test client sends to a real `courier` process: `courier up` turns on development auth and writes
//! its token to `<data-dir>/token`, so clients of such a process carry it, as the CLI does.

use std::path::{Path, PathBuf};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A channel that adds the process's bearer token (if it has one) to every call.
pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer ...` to every call; nothing when there is no token.
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// `Bearer token`.
    pub fn new(token: &str) -> Self {
        Self(Some(format!("Bearer {}", token.trim()).parse().expect("a token is a valid header value")))
    }

    /// The development token in `data_dir`, when there is one.
    pub fn from_data_dir(data_dir: &Path) -> Self {
        std::fs::read_to_string(data_dir.join("token")).map_or_else(|_| Self::default(), |token| Self::new(&token))
    }

    /// Wraps `channel`.
    pub fn channel(self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The data dir of a `courier` command line: its `--data-dir`, else the default (relative to the working
/// directory the child inherits).
pub fn data_dir_arg(args: &[&str]) -> PathBuf {
    let given = args.windows(2).find(|pair| pair[0] == "--data-dir").map(|pair| pair[1]);
    PathBuf::from(given.unwrap_or("courier-data"))
}
