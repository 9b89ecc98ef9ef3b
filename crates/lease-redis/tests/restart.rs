//! A server restart in the middle of a run, on a Redis instance (append-only file on) this test starts and stops
//! itself (its own directory and port): while it is down every operation fails with a
//! retryable error; after it is back everything succeeds and no lease or checkpoint was lost
//! or duplicated.

mod support;

use std::time::Duration;

use shardwise_lease_core::LeaseStore;

use shardwise_lease_redis::{RedisConfig, RedisLeaseStore};
use support::server::{RedisInstance, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loses_nothing() {
    let mut server = RedisInstance::new(free_port());
    server.start();
    let config = RedisConfig::builder(server.url(), "restart-test")
        .response_timeout(Duration::from_secs(1))
        .connection_timeout(Duration::from_secs(1))
        .reconnect_attempts(1)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = RedisLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .create_table_if_missing()
        .await
        .unwrap_or_else(|e| panic!("reach the server: {e}"));

    shardwise_lease_core::testkit::survives_a_server_restart(&store, |running| {
        if running {
            server.start();
        } else {
            server.stop();
        }
    })
    .await;
}
