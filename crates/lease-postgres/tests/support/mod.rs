//! Shared by the integration tests: where the server is, unique namespaces, cleanup.

// Each test file uses a different part of this module.
#![allow(dead_code, unreachable_pub)]

use std::time::{SystemTime, UNIX_EPOCH};

use shardwise_lease_core::LeaseStore;
use shardwise_lease_postgres::{PostgresConfig, PostgresConfigBuilder, PostgresLeaseStore};

pub mod server;
#[cfg(feature = "tls-rustls")]
pub mod tls;

/// The server the tests use: `DATABASE_URL`, or the local test database.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A suffix no other run shares: the process id and the time in nanoseconds.
pub fn run_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}", std::process::id())
}

/// The schema and table the conformance tests share; each test has its own namespace.
pub const TEST_SCHEMA: &str = "shardwise_test";
pub const TEST_TABLE: &str = "leases";

/// A store on the test table in a namespace of its own, named after the test.
pub async fn namespaced_store(test: &str) -> CleanupStore {
    namespaced_store_at(&database_url(), test, |builder| builder).await
}

/// A store for the server at `url` on the test table in a namespace of its own, named after the
/// test, with the settings `configure` adds; the table is created when missing.
pub async fn namespaced_store_at(
    url: &str,
    test: &str,
    configure: impl FnOnce(PostgresConfigBuilder) -> PostgresConfigBuilder,
) -> CleanupStore {
    let config = configure(test_config(url, test))
        .build()
        .unwrap_or_else(|e| panic!("test config: {e}"));
    let store = PostgresLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    store
        .create_table_if_missing()
        .await
        .unwrap_or_else(|e| panic!("create table at {url}: {e}"));
    cleanup_store(store, config)
}

/// The test table on the server at `url`, in a namespace no other test or run shares.
pub fn test_config(url: &str, test: &str) -> PostgresConfigBuilder {
    PostgresConfig::builder(url, format!("{test}-{}", run_suffix()))
        .schema(TEST_SCHEMA)
        .table(TEST_TABLE)
        .max_connections(8)
}

/// A store that deletes its namespace's leases when dropped (also when the test panics).
pub type CleanupStore = shardwise_lease_core::testkit::CleanupStore<PostgresLeaseStore>;

fn cleanup_store(store: PostgresLeaseStore, config: PostgresConfig) -> CleanupStore {
    CleanupStore::new(store, move || {
        Box::pin(async move {
            if let Ok(store) = PostgresLeaseStore::connect(&config).await {
                if let Err(e) = store.delete_all_leases().await {
                    eprintln!("cleanup of {}: {e}", config.namespace());
                }
                store.close().await;
            }
        })
    })
}
