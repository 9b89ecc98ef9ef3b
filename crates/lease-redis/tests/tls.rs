//! The store over TLS, against the TLS-only Redis at `REDIS_TLS_URL` (default
//! `rediss://localhost:16380`; `./scripts/test` starts it) whose certificate is issued by the
//! test CA in the file `REDIS_TLS_CA_PEM`.
//!
//! That server is started with `--port 0`: it has no plain-text port at all, so every test that
//! reaches it here went through TLS (`plain_connections_are_refused` checks that a plain client
//! gets nowhere).

mod support;

use std::time::Duration;

use shardwise_lease_core::testkit;
use shardwise_lease_core::{LeaseStore, StoreError, StoreErrorKind};
use shardwise_lease_redis::{RedisConfig, RedisLeaseStore};
use support::tls::{prefixed_tls_store, redis_tls_ca_pem, redis_tls_url};

/// The whole lease-store conformance suite, over TLS.
mod conformance {
    use std::sync::Arc;

    use shardwise_lease_core::LeaseStore;

    async fn fresh_store(test: &'static str) -> Arc<dyn LeaseStore> {
        Arc::new(super::prefixed_tls_store(&format!("tls:{test}")).await)
    }

    shardwise_lease_core::lease_store_conformance_tests!(fresh_store);
}

/// A configuration for `url` under `prefix` that fails fast: no reconnect attempts.
fn impatient_config(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig::builder(url, prefix)
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .reconnect_attempts(0)
        .build()
        .unwrap_or_else(|e| panic!("config: {e}"))
}

fn expect_failure<T: std::fmt::Debug>(what: &str, outcome: Result<T, StoreError>) -> StoreError {
    match outcome {
        Err(e) => e,
        Ok(value) => panic!("{what} succeeded with {value:?}"),
    }
}

#[tokio::test]
async fn platform_roots_do_not_trust_the_test_ca_and_nothing_is_lost() {
    let trusted = prefixed_tls_store("tls-platform-roots").await;
    // Same server, same prefix, but only the platform's root certificates: the handshake fails.
    let config = impatient_config(&redis_tls_url(), trusted.store.prefix().as_str());
    let untrusting = RedisLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect is lazy, yet: {e}"));
    testkit::a_store_cut_off_changes_nothing(&trusted, &untrusting, assert_untrusted).await;
}

/// The error says the server's certificate is not trusted.
fn assert_untrusted(what: &str, error: &StoreError) {
    let message = error.to_string();
    assert!(
        message.contains("invalid peer certificate") && message.contains("UnknownIssuer"),
        "{what}: the message should say the certificate is not trusted: {message}"
    );
}

#[tokio::test]
async fn plain_connections_are_refused() {
    let tls_url = redis_tls_url();
    let plain_url = tls_url.replacen("rediss://", "redis://", 1);
    assert_ne!(plain_url, tls_url, "REDIS_TLS_URL must be a rediss:// URL");
    let store = RedisLeaseStore::connect(&impatient_config(&plain_url, "tls-plain"))
        .await
        .unwrap_or_else(|e| panic!("connect is lazy, yet: {e}"));
    let error = expect_failure("list without TLS", store.list().await);
    assert!(error.is_retryable(), "{error}");
}

#[test]
fn invalid_root_certificates_are_config_errors() {
    let url = "rediss://localhost:16380";
    let cases: [(&str, &[u8]); 4] = [
        ("not PEM", b"certainly not a certificate"),
        ("empty", b""),
        (
            "no certificate block",
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        ),
        // Valid PEM and base64 around bytes that are no certificate: redis' parser refuses it.
        (
            "not a certificate inside",
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        ),
    ];
    for (what, pem) in cases {
        // Nothing listens on that port in the build, which never connects: errors come early.
        match RedisConfig::builder(url, "app")
            .root_certificate_pem(pem)
            .build()
        {
            Err(e) => {
                assert_eq!(e.kind(), StoreErrorKind::Config, "{what}: {e}");
                assert!(
                    e.to_string().contains("invalid root certificate PEM"),
                    "{what}: {e}"
                );
            }
            Ok(config) => panic!("{what}: accepted as {config:?}"),
        }
    }
}

#[test]
fn a_root_certificate_needs_a_tls_url() {
    match RedisConfig::builder("redis://127.0.0.1:6379", "app")
        .root_certificate_pem(redis_tls_ca_pem())
        .build()
    {
        Err(e) => {
            assert_eq!(e.kind(), StoreErrorKind::Config, "{e}");
            assert!(e.to_string().contains("rediss://"), "{e}");
        }
        Ok(config) => panic!("accepted: {config:?}"),
    }
    let config = RedisConfig::builder(redis_tls_url(), "app")
        .root_certificate_pem(redis_tls_ca_pem())
        .build()
        .unwrap_or_else(|e| panic!("the test CA with a rediss:// URL: {e}"));
    assert!(!format!("{config:?}").contains("BEGIN CERTIFICATE"));
}
