//! The TLS-only PostgreSQL `./scripts/test` starts (`ensure_postgres_tls` in
//! `scripts/services.sh`): its URL and the test CA its certificate is issued by.

use std::path::PathBuf;

use shardwise_lease_postgres::PostgresTls;

use super::CleanupStore;

/// The TLS server: `POSTGRES_TLS_URL`, or the one `scripts/services.sh` starts by default.
pub fn postgres_tls_url() -> String {
    std::env::var("POSTGRES_TLS_URL")
        .unwrap_or_else(|_| "postgres://postgres@localhost:15433/test".to_owned())
}

/// The test CA's PEM file: the one `POSTGRES_TLS_CA_PEM` names, or the one `scripts/services.sh`
/// writes by default. Panics, saying how to get one, when it is missing.
pub fn postgres_tls_ca_pem() -> PathBuf {
    let path = std::env::var_os("POSTGRES_TLS_CA_PEM").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.emulators/tls/ca.pem"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "the test CA {} is missing; run ./scripts/test, which starts a TLS PostgreSQL and sets \
         POSTGRES_TLS_URL and POSTGRES_TLS_CA_PEM",
        path.display()
    );
    path
}

/// A store on the TLS server, checking its certificate and name against the test CA
/// ([`PostgresTls::VerifyFull`]), in a namespace of its own.
pub async fn namespaced_tls_store(test: &str) -> CleanupStore {
    super::namespaced_store_at(&postgres_tls_url(), test, |builder| {
        builder
            .tls(PostgresTls::VerifyFull)
            .root_certificate(postgres_tls_ca_pem())
    })
    .await
}
