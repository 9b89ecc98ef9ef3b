//! A server restart in the middle of a run, on a PostgreSQL instance this test starts and stops
//! itself (its own data directory and port): while it is down every operation fails with a
//! retryable error; after it is back everything succeeds and no lease or checkpoint was lost
//! or duplicated.

mod support;

use std::time::Duration;

use shardwise_lease_core::LeaseStore;

use shardwise_lease_postgres::{PostgresConfig, PostgresLeaseStore};
use support::server::{PgInstance, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loses_nothing() {
    let mut server = PgInstance::init(free_port());
    server.start();
    let config = PostgresConfig::builder(server.url(), "restart-test")
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .statement_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = PostgresLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .create_table_if_missing()
        .await
        .unwrap_or_else(|e| panic!("create table: {e}"));

    shardwise_lease_core::testkit::survives_a_server_restart(&store, |running| {
        if running {
            server.start();
        } else {
            server.stop();
        }
    })
    .await;
    store.close().await;
}
