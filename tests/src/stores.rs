//! Real lease stores for the end-to-end tests, each in a namespace of its own: DynamoDB (the
//! emulator at `DYNAMODB_ENDPOINT`), PostgreSQL (`DATABASE_URL`), Redis (`REDIS_URL`).

use std::sync::Arc;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use shardwise::lease::LeaseStore;
use shardwise::lease::dynamodb::DynamoDbLeaseStore;
use shardwise::lease::postgres::{PostgresConfig, PostgresLeaseStore};
use shardwise::lease::redis::{RedisConfig, RedisLeaseStore};

use crate::drivers::unique;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run ./scripts/test, which starts the servers")
    })
}

/// A DynamoDB lease table of its own.
pub async fn dynamodb(test: &str) -> Arc<dyn LeaseStore> {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(env("DYNAMODB_ENDPOINT"))
        .build();
    let table = unique(test).replace('_', "-");
    let store =
        DynamoDbLeaseStore::new(aws_sdk_dynamodb::Client::from_conf(config), table).unwrap();
    store.create_table_if_missing().await.unwrap();
    Arc::new(store)
}

/// A PostgreSQL namespace of its own.
pub async fn postgres(test: &str) -> Arc<dyn LeaseStore> {
    let config = PostgresConfig::builder(env("DATABASE_URL"), unique(test))
        .build()
        .unwrap();
    let store = PostgresLeaseStore::connect(&config).await.unwrap();
    store.create_table_if_missing().await.unwrap();
    Arc::new(store)
}

/// A Redis key prefix of its own.
pub async fn redis(test: &str) -> Arc<dyn LeaseStore> {
    let config = RedisConfig::builder(env("REDIS_URL"), unique(test))
        .build()
        .unwrap();
    let store = RedisLeaseStore::connect(&config).await.unwrap();
    store.create_table_if_missing().await.unwrap();
    Arc::new(store)
}
