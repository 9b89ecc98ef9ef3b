//! Shared by the integration tests: where the server is, unique prefixes, cleanup.

// Each test file uses a different part of this module.
#![allow(dead_code, unreachable_pub)]

pub mod server;
#[cfg(feature = "tls-rustls")]
pub mod tls;

use std::time::{SystemTime, UNIX_EPOCH};

use shardwise_lease_core::LeaseStore;
use shardwise_lease_redis::{RedisConfig, RedisConfigBuilder, RedisLeaseStore};

/// The server the tests use: `REDIS_URL`, or the local one.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A suffix no other run shares: the process id and the time in nanoseconds.
pub fn run_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}", std::process::id())
}

/// A store under a prefix of its own, named after the test.
pub async fn prefixed_store(test: &str) -> CleanupStore {
    prefixed_store_at(&redis_url(), test, |builder| builder).await
}

/// A store for the server at `url` under a prefix of its own, named after the test, with the
/// settings `configure` adds.
pub async fn prefixed_store_at(
    url: &str,
    test: &str,
    configure: impl FnOnce(RedisConfigBuilder) -> RedisConfigBuilder,
) -> CleanupStore {
    let builder = RedisConfig::builder(url, test_prefix(test));
    let config = configure(builder)
        .build()
        .unwrap_or_else(|e| panic!("test config: {e}"));
    let store = RedisLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    store
        .create_table_if_missing()
        .await
        .unwrap_or_else(|e| panic!("reach Redis at {url}: {e}"));
    cleanup_store(store, config)
}

/// A key prefix no other test or run shares.
pub fn test_prefix(test: &str) -> String {
    format!("shardwise-test:{test}:{}", run_suffix())
}

/// A store that deletes its prefix's leases when dropped (also when the test panics).
pub type CleanupStore = shardwise_lease_core::testkit::CleanupStore<RedisLeaseStore>;

fn cleanup_store(store: RedisLeaseStore, config: RedisConfig) -> CleanupStore {
    CleanupStore::new(store, move || {
        Box::pin(async move {
            let Ok(store) = RedisLeaseStore::connect(&config).await else {
                return;
            };
            if let Err(e) = store.delete_all_leases().await {
                eprintln!("cleanup of {}: {e}", config.prefix());
            }
        })
    })
}
