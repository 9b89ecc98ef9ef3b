//! The store over TLS, against the TLS-only PostgreSQL at `POSTGRES_TLS_URL` (default
//! `postgres://postgres@localhost:15433/test`; `./scripts/test` starts it) whose certificate is
//! issued by the test CA in the file `POSTGRES_TLS_CA_PEM`.
//!
//! That server's `pg_hba.conf` accepts `hostssl` connections only and rejects plain `host` ones,
//! so every test that reaches it here went through TLS (`plain_connections_are_refused` checks
//! that a plain connection is turned away).

mod support;

use std::time::Duration;

use shardwise_lease_core::testkit;
use shardwise_lease_core::{Checkpoint, Lease, LeaseKey, LeaseStore, StoreError, StoreErrorKind};
use shardwise_lease_postgres::{
    PostgresConfig, PostgresConfigBuilder, PostgresLeaseStore, PostgresTls,
};
use support::tls::{namespaced_tls_store, postgres_tls_ca_pem, postgres_tls_url};
use support::{namespaced_store_at, test_config};

/// The whole lease-store conformance suite, over TLS with the certificate and host name checked
/// against the test CA.
mod conformance {
    use std::sync::Arc;

    use shardwise_lease_core::LeaseStore;

    async fn fresh_store(test: &'static str) -> Arc<dyn LeaseStore> {
        Arc::new(super::namespaced_tls_store(&format!("tls-{test}")).await)
    }

    shardwise_lease_core::lease_store_conformance_tests!(fresh_store);
}

fn key(text: &str) -> LeaseKey {
    LeaseKey::new(text).unwrap_or_else(|e| panic!("{e}"))
}

/// A store made with `configure` answers: it creates a lease and reads it back.
async fn round_trip(
    test: &str,
    configure: impl FnOnce(PostgresConfigBuilder) -> PostgresConfigBuilder,
) {
    let store = namespaced_store_at(&postgres_tls_url(), test, configure).await;
    let lease = Lease::new(key("shardId-000000000001"), Checkpoint::TrimHorizon);
    let created = store.create_if_absent(&lease).await;
    assert!(created.is_ok_and(|r| r.is_won()), "{test}: create");
    let read = store
        .get(&lease.key)
        .await
        .unwrap_or_else(|e| panic!("{test}: get: {e}"));
    assert_eq!(read.map(|l| l.key), Some(lease.key), "{test}");
}

#[tokio::test]
async fn require_connects_without_checking_the_certificate() {
    // No root certificate: the test CA is trusted by nothing, so this worked only because
    // `Require` does not check the certificate.
    round_trip("tls-require", |builder| builder.tls(PostgresTls::Require)).await;
}

/// A CA certificate that issued nothing the test server uses (made once with openssl; its key
/// was thrown away).
const UNRELATED_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBnzCCAUWgAwIBAgIUOO15mxV+c/YRl6VGyjsV9uqphAkwCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRdW5yZWxhdGVkIHRlc3QgQ0EwIBcNMjYxMTI5MjI0MDIyWhgP
MjEyNjExMDUyMjQwMjJaMBwxGjAYBgNVBAMMEXVucmVsYXRlZCB0ZXN0IENBMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhfLD9vSrrzAdh+/O93kPyZRuTbF1v13c
KIVsU01m5M3cppIbOxA7PIL2q+umztjmyBHdO4mA3IO8O/ELNizSTqNjMGEwHQYD
VR0OBBYEFPnxPhK37ho7K6H4oolYlH6lsjePMB8GA1UdIwQYMBaAFPnxPhK37ho7
K6H4oolYlH6lsjePMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgIEMAoG
CCqGSM49BAMCA0gAMEUCIQDV3mL9itJuLjAog04NFIm47Y+Tz/1FK4BdXIcSAesT
OwIgLVaLf7IkThSpG5PMB4UyOVGITHLD4ggk4hEEa9Dcux0=
-----END CERTIFICATE-----
";

/// `Require` with a root certificate checks the certificate against it (libpq's rule): the
/// test CA is accepted, an unrelated CA is not.
#[tokio::test]
async fn require_with_a_root_certificate_checks_it() {
    round_trip("tls-require-ca", |builder| {
        builder
            .tls(PostgresTls::Require)
            .root_certificate(postgres_tls_ca_pem())
    })
    .await;

    let unrelated = std::env::temp_dir().join(format!(
        "shardwise-unrelated-ca-{}.pem",
        support::run_suffix()
    ));
    std::fs::write(&unrelated, UNRELATED_CA).unwrap_or_else(|e| panic!("{e}"));
    let config = impatient(
        support::test_config(&postgres_tls_url(), "tls-require-unrelated"),
        PostgresTls::Require,
    )
    .root_certificate(&unrelated)
    .build()
    .unwrap_or_else(|e| panic!("config: {e}"));
    let store = PostgresLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect is lazy, yet: {e}"));
    let error = expect_failure("list", store.list().await);
    let _ = std::fs::remove_file(&unrelated);
    assert_untrusted("list", &error);
    store.close().await;
}

/// `VerifyCa` is the mode in which sqlx asks rustls for the process-wide crypto provider: in a
/// build with both ring and aws-lc-rs (the workspace's) this panicked until the store installed
/// one (`src/tls.rs`).
#[tokio::test]
async fn verify_ca_connects_trusting_the_test_ca() {
    round_trip("tls-verify-ca", |builder| {
        builder
            .tls(PostgresTls::VerifyCa)
            .root_certificate(postgres_tls_ca_pem())
    })
    .await;
}

/// `builder` with `tls`, no root certificate, and an operation that fails fast.
fn impatient(builder: PostgresConfigBuilder, tls: PostgresTls) -> PostgresConfigBuilder {
    builder
        .tls(tls)
        .acquire_timeout(Duration::from_secs(2))
        .max_connections(1)
}

/// The error says the server's certificate is not trusted.
fn assert_untrusted(what: &str, error: &StoreError) {
    let message = error.to_string();
    assert!(
        message.contains("invalid peer certificate") && message.contains("UnknownIssuer"),
        "{what}: the message should say the certificate is not trusted: {message}"
    );
}

fn expect_failure<T: std::fmt::Debug>(what: &str, outcome: Result<T, StoreError>) -> StoreError {
    match outcome {
        Err(e) => e,
        Ok(value) => panic!("{what} succeeded with {value:?}"),
    }
}

#[tokio::test]
async fn platform_roots_do_not_trust_the_test_ca_and_nothing_is_lost() {
    let trusted = namespaced_tls_store("tls-platform-roots").await;
    // Same server, namespace and table, but only the built-in (webpki) root certificates: the
    // handshake fails, whatever the operation.
    let same_leases = PostgresConfig::builder(postgres_tls_url(), trusted.store.namespace())
        .schema(support::TEST_SCHEMA)
        .table(support::TEST_TABLE);
    let config = impatient(same_leases, PostgresTls::VerifyFull)
        .build()
        .unwrap_or_else(|e| panic!("config: {e}"));
    let untrusting = PostgresLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect is lazy, yet: {e}"));
    testkit::a_store_cut_off_changes_nothing(&trusted, &untrusting, assert_untrusted).await;
    untrusting.close().await;
}

#[tokio::test]
async fn plain_connections_are_refused() {
    // The server's pg_hba.conf has no plain `host` line that accepts: this is what shows the
    // other tests' connections really were TLS.
    let config = impatient(
        test_config(&postgres_tls_url(), "tls-plain"),
        PostgresTls::Disable,
    )
    .build()
    .unwrap_or_else(|e| panic!("config: {e}"));
    let store = PostgresLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect is lazy, yet: {e}"));
    let error = expect_failure("list without TLS", store.list().await);
    let message = error.to_string();
    assert!(
        message.contains("pg_hba.conf") && message.contains("no encryption"),
        "the server should turn the plain connection away: {message}"
    );
    assert_eq!(error.kind(), StoreErrorKind::Config, "{message}");
}
