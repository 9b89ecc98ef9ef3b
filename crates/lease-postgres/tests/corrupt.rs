//! Corrupt rows: `list` reports them beside the good leases, `get` names them in an error.

mod support;

use shardwise_lease_core::{Checkpoint, Lease, LeaseKey, LeaseStore, StoreErrorKind};
use sqlx::Connection;

#[tokio::test]
async fn corrupt_rows_do_not_hide_the_good_ones() {
    let store = support::namespaced_store("corrupt_rows").await;
    for i in [1, 3] {
        let key = LeaseKey::new(format!("shardId-{i}")).unwrap_or_else(|e| panic!("{e}"));
        let created = store
            .create_if_absent(&Lease::new(key, Checkpoint::TrimHorizon))
            .await;
        assert!(created.is_ok_and(|r| r.is_won()));
    }
    let mut conn = sqlx::PgConnection::connect(&support::database_url())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let insert = format!(
        "INSERT INTO {}.{} (namespace, lease_key, counter, checkpoint, owner_switches_since_checkpoint) \
         VALUES ($1, 'shardId-0', 1, 'not-a-sequence', 0), ($1, 'shardId-2', -5, 'LATEST', 0), \
         ($1, 'shardId-4', 1, 'LATEST', 0)",
        support::TEST_SCHEMA,
        support::TEST_TABLE
    );
    sqlx::query(sqlx::AssertSqlSafe(insert))
        .bind(store.store.namespace())
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("insert corrupt rows: {e}"));
    let update = format!(
        "UPDATE {}.{} SET parent_shard_ids = ARRAY['bad shard id'] WHERE namespace = $1 AND lease_key = 'shardId-4'",
        support::TEST_SCHEMA,
        support::TEST_TABLE
    );
    sqlx::query(sqlx::AssertSqlSafe(update))
        .bind(store.store.namespace())
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("corrupt a row: {e}"));

    let listing = store.list().await.unwrap_or_else(|e| panic!("list: {e}"));
    let good: Vec<&str> = listing.leases.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(good, ["shardId-1", "shardId-3"]);
    let bad: Vec<&str> = listing.corrupt.iter().map(|c| c.raw_key.as_str()).collect();
    assert_eq!(
        bad,
        ["shardId-0", "shardId-2", "shardId-4"],
        "{:?}",
        listing.corrupt
    );
    assert!(
        listing.corrupt[0].reason.contains("checkpoint"),
        "{}",
        listing.corrupt[0]
    );
    assert!(
        listing.corrupt[1].reason.contains("counter"),
        "{}",
        listing.corrupt[1]
    );

    let key = LeaseKey::new("shardId-0").unwrap_or_else(|e| panic!("{e}"));
    match store.get(&key).await {
        Err(e) => {
            assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{e}");
            assert_eq!(e.lease_key(), Some("shardId-0"));
        }
        Ok(lease) => panic!("corrupt row read as {lease:?}"),
    }
}
