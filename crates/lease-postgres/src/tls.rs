//! TLS with rustls (feature `tls-rustls`): a process-wide crypto provider for rustls.

use rustls::crypto::CryptoProvider;
use sqlx::postgres::PgSslMode;

/// Makes sure rustls has a process-wide crypto provider before sqlx connects with `mode`, when
/// that mode may use TLS. sqlx hands its own ring provider to most of its TLS setup, but not to
/// the certificate verifier of `VerifyCa`, which asks rustls for the process-wide one. rustls
/// picks one by itself only when exactly one provider is compiled in; with two (the AWS SDK
/// brings aws-lc-rs, sqlx ring) it has none and panics when connecting. A provider the
/// application installed is kept.
pub(crate) fn ensure_crypto_provider(mode: PgSslMode) {
    let may_use_tls = !matches!(mode, PgSslMode::Disable | PgSslMode::Allow);
    if may_use_tls && CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine: any provider will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
