//! Configuration: hostile schema and table names are refused before anything is sent, valid
//! ones work quoted (even SQL keywords), and the password never shows in `Debug` or errors.

mod support;

use std::time::Duration;

use shardwise_lease_core::{Checkpoint, Lease, LeaseKey, LeaseStore, StoreErrorKind, WorkerId};
use shardwise_lease_postgres::{PostgresConfig, PostgresLeaseStore};
use sqlx::Connection;

const HOSTILE: &[&str] = &[
    "leases\"; DROP TABLE users; --",
    "lea ses",
    "leases;",
    "lease's",
    "\"leases\"",
    "leases--",
    "public.leases",
    "Leases",
    "1leases",
    "",
    "leases\n",
    "ключи",
    "x)",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

#[test]
fn hostile_table_and_schema_names_are_refused_by_build() {
    // Port 1 has no server: had anything been sent, the error would be Unavailable.
    let url = "postgres://postgres@127.0.0.1:1/test";
    for name in HOSTILE {
        for (setting, builder) in [
            ("table", PostgresConfig::builder(url, "app").table(*name)),
            ("schema", PostgresConfig::builder(url, "app").schema(*name)),
        ] {
            match builder.build() {
                Err(e) => {
                    assert_eq!(e.kind(), StoreErrorKind::Config, "{setting} {name:?}: {e}");
                    assert!(
                        e.to_string().contains(&format!("invalid {setting} name")),
                        "{setting} {name:?}: the error says what is wrong: {e}"
                    );
                }
                Ok(config) => panic!("{setting} {name:?} accepted: {config:?}"),
            }
        }
    }
    for (app, stream) in [
        ("", None),
        ("a/b", None),
        ("app", Some("s/t")),
        ("a\0", None),
    ] {
        let mut builder = PostgresConfig::builder(url, app);
        if let Some(stream) = stream {
            builder = builder.stream(stream);
        }
        assert!(builder.build().is_err(), "{app:?} {stream:?}");
    }
}

#[test]
fn debug_never_shows_the_password() {
    let config = PostgresConfig::builder(
        "postgres://app:hunter2-in-url@db.example:5432/kinesis?password=hunter3-in-query",
        "orders",
    )
    .password("hunter4-separate")
    .build()
    .unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{config:?} {config:#?}");
    for secret in ["hunter2", "hunter3", "hunter4"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("db.example"),
        "the host is still shown: {shown}"
    );

    let builder = PostgresConfig::builder("postgres://u:hunter5@h/db", "a").password("hunter6");
    let shown = format!("{builder:?}");
    assert!(
        !shown.contains("hunter5") && !shown.contains("hunter6"),
        "{shown}"
    );
}

#[tokio::test]
async fn errors_and_the_store_never_show_the_password() {
    let config = PostgresConfig::builder("postgres://app:hunter7@127.0.0.1:1/kinesis", "orders")
        .acquire_timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = PostgresLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!format!("{store:?}").contains("hunter7"));
    let err = match store.list().await {
        Err(e) => e,
        Ok(listing) => panic!("no server on port 1, yet {listing:?}"),
    };
    assert!(err.is_retryable(), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter7"), "{shown}");
}

#[tokio::test]
async fn names_are_quoted_so_keywords_work() {
    let schema = format!("sw_names_{}", std::process::id());
    let config = PostgresConfig::builder(support::database_url(), "app")
        .schema(schema.as_str())
        .table("select")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = PostgresLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .create_table_if_missing()
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    store
        .create_table_if_missing()
        .await
        .unwrap_or_else(|e| panic!("create again (idempotent): {e}"));
    let key = LeaseKey::new("shardId-1").unwrap_or_else(|e| panic!("{e}"));
    let created = store
        .create_if_absent(&Lease::new(key.clone(), Checkpoint::Latest))
        .await;
    let listed = store.list().await;
    store.close().await;
    let mut conn = sqlx::PgConnection::connect(&support::database_url())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("drop test schema: {e}"));
    assert!(created.is_ok_and(|r| r.is_won()));
    assert_eq!(listed.map(|l| l.leases.len()).ok(), Some(1));
}

#[tokio::test]
async fn a_missing_table_is_a_config_error() {
    let config = PostgresConfig::builder(support::database_url(), "app")
        .schema("sw_never_created")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = PostgresLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = store.list().await.err().map(|e| e.kind());
    assert_eq!(err, Some(StoreErrorKind::Config));
}

/// A lease table made before hand-offs existed gets the `checkpoint_owner` column from
/// `create_table_if_missing`, once: later starts only look (adding it takes an exclusive lock
/// on the table and its owner's rights).
#[tokio::test]
async fn a_table_from_before_hand_offs_gets_its_column_once() {
    let schema = format!("sw_migrate_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&support::database_url())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let old_table = format!(
        "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".\"leases\" (\
         namespace TEXT NOT NULL, lease_key TEXT COLLATE \"C\" NOT NULL, owner TEXT, \
         counter BIGINT NOT NULL, checkpoint TEXT NOT NULL, \
         checkpoint_sub_sequence BIGINT NOT NULL DEFAULT 0, \
         checkpoint_sequence NUMERIC(130,0) GENERATED ALWAYS AS (\
           CASE WHEN checkpoint ~ '^[0-9]{{1,129}}$' THEN checkpoint::NUMERIC(130,0) END) STORED, \
         pending_checkpoint TEXT, pending_checkpoint_sub_sequence BIGINT, \
         pending_checkpoint_state BYTEA, \
         owner_switches_since_checkpoint BIGINT NOT NULL DEFAULT 0, \
         parent_shard_ids TEXT[] NOT NULL DEFAULT '{{}}', \
         child_shard_ids TEXT[] NOT NULL DEFAULT '{{}}', \
         starting_hash_key NUMERIC(39,0), ending_hash_key NUMERIC(39,0), \
         PRIMARY KEY (namespace, lease_key))"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(old_table))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("the old table: {e}"));
    let config = PostgresConfig::builder(support::database_url(), "app")
        .schema(schema.as_str())
        .table("leases")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = PostgresLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = store.statements_sent();
    let first = store.create_table_if_missing().await;
    let first_statements = store.statements_sent() - before;
    let before = store.statements_sent();
    let second = store.create_table_if_missing().await;
    let second_statements = store.statements_sent() - before;
    let key = LeaseKey::new("shardId-1").unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (
        WorkerId::new("a").unwrap_or_else(|e| panic!("{e}")),
        WorkerId::new("b").unwrap_or_else(|e| panic!("{e}")),
    );
    let created = store
        .create_if_absent(&Lease::new(key.clone(), Checkpoint::Latest))
        .await;
    let taken = store.take(&key, 0, &a).await;
    let asked = store.request_handoff(&key, 1, &a, &b).await;
    store.close().await;
    let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("drop test schema: {e}"));
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    assert_eq!(
        (first_statements, second_statements),
        (6, 5),
        "the column added once, then only looked for"
    );
    assert!(created.is_ok_and(|r| r.is_won()) && taken.is_ok_and(|r| r.is_won()));
    let asked = asked.unwrap_or_else(|e| panic!("{e}")).won();
    assert_eq!(asked.and_then(|l| l.checkpoint_owner), Some(a));
}
