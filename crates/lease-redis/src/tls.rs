//! TLS with rustls (feature `tls-rustls`): a crypto provider for rustls, and root certificates
//! checked before they are handed to redis.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use shardwise_lease_core::{StoreError, StoreErrorKind};

/// Makes sure rustls has a process-wide crypto provider before redis builds a TLS client
/// configuration (redis enables none). rustls picks one by itself only when exactly one
/// provider is compiled in; with none, or with two (the AWS SDK brings aws-lc-rs, this crate
/// ring), it has none and panics when connecting. A provider the application installed is kept.
pub(crate) fn ensure_crypto_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine: any provider will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// At least one certificate, and every `CERTIFICATE` block decodes. redis would take a PEM
/// without certificates as an empty trust store, and every connection would then fail.
pub(crate) fn check_root_certificates(pem: &[u8]) -> Result<(), StoreError> {
    let invalid = |why: String| {
        StoreError::new(
            StoreErrorKind::Config,
            format!("invalid root certificate PEM: {why}"),
        )
    };
    let mut certificates = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        certificate.map_err(|e| invalid(e.to_string()))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(invalid(
            "no `-----BEGIN CERTIFICATE-----` block found".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pems_without_a_readable_certificate_are_config_errors() {
        let cases: [(&str, &[u8]); 4] = [
            ("empty", b""),
            ("not PEM", b"hello"),
            (
                "a key, no certificate",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
            ("unterminated", b"-----BEGIN CERTIFICATE-----\nMIIB\n"),
        ];
        for (what, pem) in cases {
            match check_root_certificates(pem) {
                Err(e) => {
                    assert_eq!(e.kind(), StoreErrorKind::Config, "{what}: {e}");
                    assert!(e.to_string().contains("root certificate"), "{what}: {e}");
                }
                Ok(()) => panic!("{what}: accepted"),
            }
        }
    }
}
