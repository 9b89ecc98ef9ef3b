//! Configuration: hostile key prefixes are refused before anything is sent, and the password
//! never shows in `Debug` or errors.

mod support;

use std::time::Duration;

use shardwise_lease_core::{LeaseStore, StoreErrorKind};
use shardwise_lease_redis::{RedisConfig, RedisLeaseStore};

#[test]
fn hostile_prefixes_are_refused_by_build() {
    let hostile = [
        "",
        "app}",
        "{app}",
        "app{x",
        "app name",
        "app;FLUSHALL",
        "app'",
        "app\"",
        "app]]",
        "app--[[",
        "app\n",
        "app*",
        "app?",
        "app\\x",
        "app#",
        "app..)",
        "приложение",
    ];
    // Port 1 has no server: had anything been sent, the error would be Unavailable.
    for prefix in hostile {
        match RedisConfig::builder("redis://127.0.0.1:1", prefix).build() {
            Err(e) => {
                assert_eq!(e.kind(), StoreErrorKind::Config, "{prefix:?}: {e}");
                assert!(
                    e.to_string().contains("invalid key prefix"),
                    "{prefix:?}: {e}"
                );
            }
            Ok(config) => panic!("{prefix:?} accepted: {config:?}"),
        }
    }
}

#[test]
fn debug_never_shows_the_password() {
    let config = RedisConfig::builder("redis://user:hunter2-in-url@cache.example:6379/0", "app")
        .password("hunter3-separate")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{config:?} {config:#?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("hunter3"),
        "{shown}"
    );
    assert!(shown.contains("cache.example"), "{shown}");
    let builder = RedisConfig::builder("redis://:hunter4@h", "app").password("hunter5");
    let shown = format!("{builder:?}");
    assert!(
        !shown.contains("hunter4") && !shown.contains("hunter5"),
        "{shown}"
    );
}

#[tokio::test]
async fn errors_and_the_store_never_show_the_password() {
    let config = RedisConfig::builder("redis://:hunter6@127.0.0.1:1", "app")
        .connection_timeout(Duration::from_millis(300))
        .reconnect_attempts(0)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = RedisLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!format!("{store:?}").contains("hunter6"));
    let err = match store.list().await {
        Err(e) => e,
        Ok(listing) => panic!("no server on port 1, yet {listing:?}"),
    };
    assert!(err.is_retryable(), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter6"), "{shown}");
}
