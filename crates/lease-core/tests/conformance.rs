//! The full lease store conformance suite, run against the in-memory store.

use std::sync::Arc;

use shardwise_lease_core::{LeaseStore, MemoryLeaseStore};

async fn fresh_store(_test: &'static str) -> Arc<dyn LeaseStore> {
    Arc::new(MemoryLeaseStore::new())
}

shardwise_lease_core::lease_store_conformance_tests!(fresh_store);
