//! TLS for every server and every client, from PEM files named in the `[tls]` table.
//!
//! One table serves both directions, because a service is usually both: `cert`/`key` (and `client_ca`, which
//! turns on mutual TLS) are what this process presents and requires as a server; `ca`, `client_cert`/`client_key`
//! and `domain` are how it calls others. Files are read and checked once, before anything binds, so a missing
//! or malformed file stops the process naming the key and the path instead of failing the first handshake.
//!
//! Plaintext stays the right default on loopback (`courier up` needs no ceremony); [`check_plaintext`] is the
//! rule that refuses it anywhere else unless the operator says so.

pub mod dev;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The `[tls]` table. Every field is optional; an empty table means plaintext.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM). With `key`, every listener speaks TLS only.
    pub cert: Option<PathBuf>,
    /// The server's private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to. Set, it turns on mutual TLS: a client without a
    /// certificate signed by it is refused during the handshake.
    pub client_ca: Option<PathBuf>,
    /// CA (PEM) trusted for outbound calls (payments -> users, risk). Set, outbound URLs must be `https://`.
    pub ca: Option<PathBuf>,
    /// Certificate (PEM) this process presents on outbound calls, for servers that require one.
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub client_key: Option<PathBuf>,
    /// The name expected in the upstream's certificate, when it differs from the URL's host (e.g. calling
    /// `https://10.0.0.7:50051` whose certificate names `users.internal`).
    pub domain: Option<String>,
}

impl TlsConfig {
    /// The server side, read and checked; `None` when neither `cert` nor `key` is set.
    pub fn server(&self) -> Result<Option<ServerTls>, TlsError> {
        let (cert, key) = match (&self.cert, &self.key) {
            (None, None) if self.client_ca.is_some() => {
                return Err(TlsError::Incomplete("tls.client_ca needs tls.cert and tls.key (mTLS is part of TLS)"))
            }
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => return Err(TlsError::Incomplete("tls.cert and tls.key go together")),
        };
        let client_ca = self.client_ca.as_deref().map(|path| read("tls.client_ca", path)).transpose()?;
        ServerTls::from_pem(read("tls.cert", cert)?, read("tls.key", key)?, client_ca).map(Some)
    }

    /// The client side, read; `None` when `ca` is not set (outbound calls are plaintext).
    pub fn client(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        let Some(ca) = &self.ca else {
            return match (&self.client_cert, &self.client_key) {
                (None, None) => Ok(None),
                _ => Err(TlsError::Incomplete("tls.client_cert and tls.client_key need tls.ca")),
            };
        };
        let identity = match (&self.client_cert, &self.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((read("tls.client_cert", cert)?, read("tls.client_key", key)?)),
            _ => return Err(TlsError::Incomplete("tls.client_cert and tls.client_key go together")),
        };
        Ok(Some(client_config(read("tls.ca", ca)?, identity, self.domain.as_deref())))
    }
}

/// A client TLS configuration from PEM bytes: the CA to trust, an optional identity (certificate, key) for mutual
/// TLS, and an optional name to verify instead of the URL's host.
pub fn client_config(ca_pem: Vec<u8>, identity: Option<(Vec<u8>, Vec<u8>)>, domain: Option<&str>) -> ClientTlsConfig {
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Some((cert, key)) = identity {
        config = config.identity(Identity::from_pem(cert, key));
    }
    if let Some(domain) = domain {
        config = config.domain_name(domain);
    }
    config
}

/// A server's TLS material, loaded and checked. Cloning copies the PEM bytes; `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerTls {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("mutual", &self.is_mutual()).finish_non_exhaustive()
    }
}

impl ServerTls {
    /// From PEM bytes: certificate chain, private key and, for mutual TLS, the CA client certificates must chain
    /// to. Checked now by building the rustls configuration once, so a bad key fails here, not at the first
    /// handshake.
    pub fn from_pem(cert: Vec<u8>, key: Vec<u8>, client_ca: Option<Vec<u8>>) -> Result<Self, TlsError> {
        let tls = Self { cert, key, client_ca };
        tonic::transport::Server::builder()
            .tls_config(tls.config())
            .map_err(|error| TlsError::Invalid(error_chain(&error)))?;
        Ok(tls)
    }

    /// Whether clients must present a certificate signed by `client_ca`.
    pub fn is_mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// tonic's configuration: HTTP/2 over TLS 1.2 or 1.3 (rustls), client certificates required when mutual.
    pub fn config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new().identity(Identity::from_pem(&self.cert, &self.key));
        match &self.client_ca {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)).client_auth_optional(false),
            None => config,
        }
    }
}

/// Why TLS could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("invalid configuration key `{key}`: cannot read {path}: {error}")]
    Read {
        /// The configuration key that names the file.
        key: &'static str,
        /// The path given.
        path: String,
        /// Why (in the message, not a `source`, so it is printed once).
        error: std::io::Error,
    },
    /// Keys that only work together were given alone.
    #[error("incomplete TLS configuration: {0}")]
    Incomplete(&'static str),
    /// The certificates or key do not parse or do not match.
    #[error("invalid TLS certificate or key: {0}")]
    Invalid(String),
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read { key, path: path.display().to_string(), error })
}

/// An error with its sources, `: `-separated: tonic's transport errors keep the useful part (rustls' reason,
/// such as an unknown issuer) in their source chain, not in their message.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Plaintext on a non-loopback address without the operator's explicit consent.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to serve plaintext on {addr}: it is reachable from other hosts, so calls (and their payment data) \
     would cross the network unencrypted. Set `[tls] cert` and `key` (try `courier dev certs --out certs`), \
     listen on a loopback address (127.0.0.1), or pass --allow-insecure (config `allow_insecure = true`) if \
     something else encrypts the traffic"
)]
pub struct PlaintextRefused {
    /// The address that was to be bound.
    pub addr: SocketAddr,
}

/// The loopback rule: plaintext is fine where only this host can connect; anywhere else it needs TLS or the
/// operator's explicit `allow_insecure` (a mesh sidecar that terminates TLS, say).
pub fn check_plaintext(addr: SocketAddr, tls: bool, allow_insecure: bool) -> Result<(), PlaintextRefused> {
    if tls || allow_insecure || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(PlaintextRefused { addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_is_allowed_on_loopback_only_unless_allowed_or_tls() {
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        assert!(check_plaintext("127.0.0.1:50051".parse().unwrap(), false, false).is_ok());
        assert!(check_plaintext("[::1]:50051".parse().unwrap(), false, false).is_ok());
        let refused = check_plaintext(any, false, false).unwrap_err().to_string();
        assert!(refused.contains("--allow-insecure") && refused.contains("0.0.0.0:50051"), "{refused}");
        assert!(check_plaintext("[::]:50051".parse().unwrap(), false, false).is_err());
        assert!(check_plaintext(any, true, false).is_ok());
        assert!(check_plaintext(any, false, true).is_ok());
    }

    #[test]
    fn half_configured_tls_is_refused_naming_the_keys() {
        let only_cert = TlsConfig { cert: Some("c.pem".into()), ..TlsConfig::default() };
        assert!(only_cert.server().unwrap_err().to_string().contains("tls.cert and tls.key"));
        let ca_alone = TlsConfig { client_ca: Some("ca.pem".into()), ..TlsConfig::default() };
        assert!(ca_alone.server().unwrap_err().to_string().contains("tls.client_ca"));
        let identity_alone = TlsConfig { client_cert: Some("c.pem".into()), ..TlsConfig::default() };
        assert!(identity_alone.client().unwrap_err().to_string().contains("tls.ca"));
        assert!(TlsConfig::default().server().unwrap().is_none());
        assert!(TlsConfig::default().client().unwrap().is_none());
    }

    #[test]
    fn a_missing_file_names_its_key_and_path() {
        let config = TlsConfig {
            cert: Some("/nonexistent/server.pem".into()),
            key: Some("/nonexistent/server.key".into()),
            ..TlsConfig::default()
        };
        let error = config.server().unwrap_err().to_string();
        assert!(error.contains("`tls.cert`") && error.contains("/nonexistent/server.pem"), "{error}");
    }
}
