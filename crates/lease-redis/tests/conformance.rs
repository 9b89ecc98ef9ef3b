//! The full lease-core conformance suite against the Redis at `REDIS_URL` (default
//! `redis://127.0.0.1:6379`). Each test has its own key prefix, deleted when the test ends.

mod support;

use std::sync::Arc;

use shardwise_lease_core::LeaseStore;

async fn fresh_store(test: &'static str) -> Arc<dyn LeaseStore> {
    Arc::new(support::prefixed_store(test).await)
}

shardwise_lease_core::lease_store_conformance_tests!(fresh_store);
