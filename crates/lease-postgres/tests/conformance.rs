//! The full lease-core conformance suite against the PostgreSQL at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test has its own namespace, deleted when
//! the test ends.

mod support;

use std::sync::Arc;

use shardwise_lease_core::LeaseStore;

async fn fresh_store(test: &'static str) -> Arc<dyn LeaseStore> {
    Arc::new(support::namespaced_store(test).await)
}

shardwise_lease_core::lease_store_conformance_tests!(fresh_store);
