//! Shared by the integration tests: where the server is, unique namespaces, cleanup.

// Each test file uses a different part of this module.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use shardwise_lease_core::{
    CheckpointUpdate, Lease, LeaseKey, LeaseListing, LeaseStore, Race, ShardId, StoreError,
    WorkerId,
};
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
    CleanupStore {
        store: Arc::new(store),
        config,
    }
}

/// The test table on the server at `url`, in a namespace no other test or run shares.
pub fn test_config(url: &str, test: &str) -> PostgresConfigBuilder {
    PostgresConfig::builder(url, format!("{test}-{}", run_suffix()))
        .schema(TEST_SCHEMA)
        .table(TEST_TABLE)
        .max_connections(8)
}

/// A store that deletes its namespace's leases when dropped (also when the test panics).
#[derive(Debug)]
pub struct CleanupStore {
    pub store: Arc<PostgresLeaseStore>,
    pub config: PostgresConfig,
}

impl Drop for CleanupStore {
    fn drop(&mut self) {
        // Drop cannot wait on the test's runtime; a thread with its own runtime and pool can.
        let config = self.config.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(store) = PostgresLeaseStore::connect(&config).await {
                    if let Err(e) = store.delete_all_leases().await {
                        eprintln!("cleanup of {}: {e}", config.namespace());
                    }
                    store.close().await;
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
