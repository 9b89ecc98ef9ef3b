//! The full lease store conformance suite against a real DynamoDB emulator process.

mod common;

use std::sync::Arc;

use shardwise_lease_core::LeaseStore;

async fn fresh_store(test: &'static str) -> Arc<dyn LeaseStore> {
    Arc::new(common::fresh_store(test).await)
}

shardwise_lease_core::lease_store_conformance_tests!(fresh_store);
