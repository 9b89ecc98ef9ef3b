//! Shared set-up: a client for the DynamoDB endpoint in `DYNAMODB_ENDPOINT` (a local emulator
//! such as dynalite, which `./scripts/test` starts, or real DynamoDB), and fresh tables.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Intercept, Region};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use shardwise_lease_core::LeaseStore;
use shardwise_lease_dynamodb::DynamoDbLeaseStore;

/// Counts the HTTP requests sent, by operation name.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<(String, String)>>>);

impl CallLog {
    /// The operation names sent since the last call.
    pub fn take(&self) -> Vec<String> {
        self.take_with_bodies()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// The operation names and request bodies sent since the last call.
    pub fn take_with_bodies(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg.load::<Metadata>().map_or("?", |m| m.name()).to_owned();
        let body = context
            .request()
            .body()
            .bytes()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        self.0.lock().unwrap().push((name, body.into_owned()));
        Ok(())
    }
}

pub fn endpoint() -> String {
    std::env::var("DYNAMODB_ENDPOINT").unwrap_or_else(|_| {
        panic!("DYNAMODB_ENDPOINT is not set: run ./scripts/test, which starts a DynamoDB emulator")
    })
}

pub fn client_with(log: Option<CallLog>) -> Client {
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(endpoint());
    if let Some(log) = log {
        config = config.interceptor(log);
    }
    Client::from_conf(config.build())
}

/// A table name no other test (or earlier run) uses.
pub fn unique_table(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "sw-{test}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn fresh_store(test: &str) -> DynamoDbLeaseStore {
    let store = DynamoDbLeaseStore::new(client_with(None), unique_table(test)).unwrap();
    store.create_table_if_missing().await.unwrap();
    store
}
