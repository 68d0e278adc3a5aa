//! How a server process talks on the network: TLS from the `[tls]` table, and the loopback rule for plaintext.
//! Everything here runs before anything binds, so a bad certificate or an unsafe address stops the process with
//! the reason and the fix.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use courier_kit::tls::ServerTls;
use tonic::transport::ClientTlsConfig;

use crate::config::ServeConfig;

/// The TLS a process serves and calls with.
pub struct Transport {
    /// Served on the listener; `None` is plaintext.
    pub server: Option<ServerTls>,
    /// Used for outbound calls (payments -> users, risk); `None` is plaintext.
    pub client: Option<ClientTlsConfig>,
}

impl Transport {
    /// Reads the certificates and applies the loopback rule to `config.listen`.
    pub fn load(config: &ServeConfig) -> anyhow::Result<Self> {
        let server = config.tls.server()?;
        let client = config.tls.client()?;
        courier_kit::tls::check_plaintext(config.listen, server.is_some(), config.allow_insecure)?;
        Ok(Self { server, client })
    }

    /// The URL this process calls itself at (`courier up`: payments -> users and risk), on loopback when it
    /// listens on every address. Over TLS it needs `tls.ca` to trust its own certificate.
    pub fn own_url(&self, addr: SocketAddr) -> anyhow::Result<String> {
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let addr = SocketAddr::new(ip, addr.port());
        match (&self.server, &self.client) {
            (None, _) => Ok(format!("http://{addr}")),
            (Some(_), Some(_)) => Ok(format!("https://{addr}")),
            (Some(tls), None) => anyhow::bail!(
                "payments calls this process's own users/risk over TLS: set `tls.ca` to the CA that signed \
                 `tls.cert`{}, or point --users-url/--risk-url elsewhere",
                if tls.is_mutual() {
                    " and `tls.client_cert`/`tls.client_key` (tls.client_ca requires them)"
                } else {
                    ""
                }
            ),
        }
    }

    /// The startup line that says how the listener is protected.
    pub fn describe(&self, addr: SocketAddr) -> String {
        match &self.server {
            Some(tls) if tls.is_mutual() => "courier: TLS on, client certificates required (mTLS)".to_owned(),
            Some(_) => "courier: TLS on".to_owned(),
            None if addr.ip().is_loopback() => "courier: plaintext (loopback only; set [tls] to serve TLS)".to_owned(),
            None => format!("courier: WARNING: plaintext on {addr}, reachable from other hosts (--allow-insecure)"),
        }
    }

    /// The CLI flags that reach this server, for the "try" line.
    pub fn cli_hint(&self, addr: SocketAddr) -> String {
        match &self.server {
            None => format!("--server http://{addr}"),
            Some(tls) if tls.is_mutual() => {
                format!("--server https://{addr} --ca CA.pem --cert CLIENT.pem --key CLIENT.key")
            }
            Some(_) => format!("--server https://{addr} --ca CA.pem"),
        }
    }
}
