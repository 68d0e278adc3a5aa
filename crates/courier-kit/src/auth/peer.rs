//! The identity in an mTLS client certificate: its URI subject alternative names (SPIFFE IDs such as
//! `spiffe://courier/payments`). The certificate chain itself was already verified by the TLS handshake.

use tonic::transport::CertificateDer;
use x509_parser::extensions::GeneralName;

/// The URI SANs of a DER certificate; empty when it has none or does not parse.
pub(super) fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}
