//! The TLS-only Redis `./scripts/test` starts (`ensure_redis_tls` in `scripts/services.sh`): its
//! URL and the test CA its certificate is issued by.

use std::path::PathBuf;

use super::CleanupStore;

/// The TLS server: `REDIS_TLS_URL`, or the one `scripts/services.sh` starts by default.
pub fn redis_tls_url() -> String {
    std::env::var("REDIS_TLS_URL").unwrap_or_else(|_| "rediss://localhost:16380".to_owned())
}

/// The test CA in PEM: the file `REDIS_TLS_CA_PEM` names, or the one `scripts/services.sh`
/// writes by default.
pub fn redis_tls_ca_pem() -> Vec<u8> {
    let path = std::env::var_os("REDIS_TLS_CA_PEM").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.emulators/tls/ca.pem"),
        PathBuf::from,
    );
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading the test CA {}: {e}; run ./scripts/test, which starts a TLS Redis and \
             sets REDIS_TLS_URL and REDIS_TLS_CA_PEM",
            path.display()
        )
    })
}

/// A store on the TLS server trusting the test CA, under a prefix of its own.
pub async fn prefixed_tls_store(test: &str) -> CleanupStore {
    super::prefixed_store_at(&redis_tls_url(), test, |builder| {
        builder.root_certificate_pem(redis_tls_ca_pem())
    })
    .await
}
