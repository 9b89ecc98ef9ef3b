//! Shared by the integration tests: where the server is, unique prefixes, cleanup.

// Each test file uses a different part of this module.
#![allow(dead_code, unreachable_pub)]

pub mod server;
#[cfg(feature = "tls-rustls")]
pub mod tls;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use shardwise_lease_core::{
    CheckpointUpdate, Lease, LeaseKey, LeaseListing, LeaseStore, Race, ShardId, StoreError,
    WorkerId,
};
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
    CleanupStore {
        store: Arc::new(store),
        config,
    }
}

/// A key prefix no other test or run shares.
pub fn test_prefix(test: &str) -> String {
    format!("shardwise-test:{test}:{}", run_suffix())
}

/// A store that deletes its prefix's leases when dropped (also when the test panics).
#[derive(Debug)]
pub struct CleanupStore {
    pub store: Arc<RedisLeaseStore>,
    pub config: RedisConfig,
}

impl Drop for CleanupStore {
    fn drop(&mut self) {
        // Drop cannot wait on the test's runtime; a thread with its own runtime can.
        let config = self.config.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(store) = RedisLeaseStore::connect(&config).await else {
                    return;
                };
                if let Err(e) = store.delete_all_leases().await {
                    eprintln!("cleanup of {}: {e}", config.prefix());
                }
            });
        });
        let _ = cleanup.join();
    }
}

#[async_trait]
impl LeaseStore for CleanupStore {
    async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        self.store.create_table_if_missing().await
    }
    async fn list(&self) -> Result<LeaseListing, StoreError> {
        self.store.list().await
    }
    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError> {
        self.store.get(key).await
    }
    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, StoreError> {
        self.store.create_if_absent(lease).await
    }
    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        self.store.take(key, expected_counter, new_owner).await
    }
    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError> {
        self.store.renew(key, owner, expected_counter).await
    }
    async fn renew_many(
        &self,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        self.store.renew_many(owner, leases).await
    }
    async fn evict(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<Lease>, StoreError> {
        self.store.evict(key, owner, expected_counter).await
    }
    async fn update_checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Race<Lease>, StoreError> {
        self.store
            .update_checkpoint(key, owner, expected_counter, update)
            .await
    }
    async fn mark_ended(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        children: &[ShardId],
    ) -> Result<Race<Lease>, StoreError> {
        self.store
            .mark_ended(key, owner, expected_counter, children)
            .await
    }
    async fn delete(&self, key: &LeaseKey, expected_counter: u64) -> Result<Race<()>, StoreError> {
        self.store.delete(key, expected_counter).await
    }
}
