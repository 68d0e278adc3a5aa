//! Development certificates: a local CA, a server certificate for this host and a client certificate with a
//! SPIFFE-style identity, as `courier dev certs` writes them and the TLS tests use them.
//!
//! The CA's private key is never written: nothing else can be signed by it later, so a leaked directory of dev
//! certificates cannot mint new identities. Run it again for a fresh set.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The client certificate's identity (a URI SAN), as a service mesh would name payments.
pub const CLIENT_IDENTITY: &str = "spiffe://courier/payments";

/// The PEM text of one set of development certificates.
pub struct DevCerts {
    /// The CA certificate: trust it (`tls.ca`, `tls.client_ca`, `--ca`).
    pub ca_pem: String,
    /// The server certificate, for localhost, 127.0.0.1 and ::1.
    pub server_pem: String,
    /// Its key.
    pub server_key: String,
    /// The client certificate ([`CLIENT_IDENTITY`]).
    pub client_pem: String,
    /// Its key.
    pub client_key: String,
}

/// Where [`DevCerts::write`] put each file.
#[derive(Debug, Clone)]
pub struct DevCertFiles {
    /// `ca.pem`
    pub ca: PathBuf,
    /// `server.pem`
    pub server_cert: PathBuf,
    /// `server.key` (mode 0600)
    pub server_key: PathBuf,
    /// `client.pem`
    pub client_cert: PathBuf,
    /// `client.key` (mode 0600)
    pub client_key: PathBuf,
}

impl DevCerts {
    /// Generates a fresh set (ECDSA P-256 keys), valid from yesterday (clock skew) for a year.
    pub fn generate() -> Result<Self, rcgen::Error> {
        let now = time::OffsetDateTime::now_utc();
        let validity = |params: &mut CertificateParams| {
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(365);
        };

        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name = name("courier development CA");
        // Path length 0: this CA signs leaf certificates only, never another CA.
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut ca);
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])?;
        server.distinguished_name = name("courier server (development)");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut server);
        let server_pem = server.signed_by(&server_key, &issuer)?.pem();

        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::default();
        client.distinguished_name = name("payments (development)");
        client.subject_alt_names = vec![SanType::URI(CLIENT_IDENTITY.try_into()?)];
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut client);
        let client_pem = client.signed_by(&client_key, &issuer)?.pem();

        Ok(Self {
            ca_pem,
            server_pem,
            server_key: server_key.serialize_pem(),
            client_pem,
            client_key: client_key.serialize_pem(),
        })
    }

    /// Writes `ca.pem`, `server.pem`, `server.key`, `client.pem` and `client.key` into `dir` (created if
    /// missing). Keys are created with mode 0600 on Unix. Existing files are left alone (an error) unless
    /// `overwrite`, so a rerun cannot silently replace certificates something already trusts.
    pub fn write(&self, dir: &Path, overwrite: bool) -> std::io::Result<DevCertFiles> {
        std::fs::create_dir_all(dir)?;
        let files = DevCertFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        let all = [
            (&files.ca, &self.ca_pem, false),
            (&files.server_cert, &self.server_pem, false),
            (&files.server_key, &self.server_key, true),
            (&files.client_cert, &self.client_pem, false),
            (&files.client_key, &self.client_key, true),
        ];
        if !overwrite {
            if let Some((existing, _, _)) = all.iter().find(|(path, _, _)| path.exists()) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} already exists (pass --force to replace the whole set)", existing.display()),
                ));
            }
        }
        for (path, pem, secret) in all {
            write_file(path, pem.as_bytes(), secret)?;
        }
        Ok(files)
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "courier");
    name.push(DnType::CommonName, common_name);
    name
}

/// Creates the file afresh (removing an old one first, whose mode would otherwise survive), 0600 when secret.
fn write_file(path: &Path, contents: &[u8], secret: bool) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_keys_are_private_and_existing_sets_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let certs = DevCerts::generate().unwrap();
        let files = certs.write(dir.path(), false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&files.server_key), 0o600);
            assert_eq!(mode(&files.client_key), 0o600);
            assert_eq!(mode(&files.ca), 0o644);
        }
        let again = certs.write(dir.path(), false).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        certs.write(dir.path(), true).unwrap();
        assert!(std::fs::read_to_string(&files.client_cert).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
