//! Streams to test against: the in-memory Kinesis, or a real emulator at `KINESIS_ENDPOINT`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use shardwise::kinesis::testkit::InMemoryKinesis;
use shardwise::kinesis::{KinesisApi, Shard, StreamId, list_all_shards};

/// A stream the fleet reads, and the producer's side of it.
#[async_trait]
pub trait StreamDriver: Send + Sync {
    fn api(&self) -> Arc<dyn KinesisApi>;
    fn stream(&self) -> &str;
    /// Creates the stream and waits until it is ACTIVE.
    async fn create(&self, shards: u32);
    /// Puts records with data `record-{i}` and partition key `key-{i % keys}`.
    async fn put(&self, range: std::ops::Range<usize>, keys: usize);
    /// Puts one record with raw data (a KPL aggregate, say) under a partition key.
    async fn put_raw(&self, partition_key: &str, data: Vec<u8>);
    async fn split(&self, shard: &str, at: u128) -> Vec<String>;
    async fn merge(&self, shard: &str, adjacent: &str);
    /// The stream's clock, for `AT_TIMESTAMP` positions.
    fn now(&self) -> std::time::SystemTime;
    async fn shards(&self) -> Vec<Shard> {
        list_all_shards(
            self.api().as_ref(),
            &StreamId::Name(self.stream().to_owned()),
            None,
            None,
        )
        .await
        .unwrap()
    }
}

pub struct Memory {
    pub kinesis: Arc<InMemoryKinesis>,
    pub name: String,
}

impl Memory {
    pub fn new(name: &str) -> Self {
        Self {
            kinesis: Arc::new(InMemoryKinesis::new()),
            name: name.to_owned(),
        }
    }
}

#[async_trait]
impl StreamDriver for Memory {
    fn api(&self) -> Arc<dyn KinesisApi> {
        self.kinesis.clone()
    }
    fn stream(&self) -> &str {
        &self.name
    }
    async fn create(&self, shards: u32) {
        self.kinesis.create_stream(&self.name, shards);
    }
    async fn put(&self, range: std::ops::Range<usize>, keys: usize) {
        for i in range {
            self.kinesis
                .put(
                    &self.name,
                    &format!("key-{}", i % keys),
                    format!("record-{i}").into_bytes(),
                )
                .unwrap();
        }
    }
    async fn put_raw(&self, partition_key: &str, data: Vec<u8>) {
        self.kinesis.put(&self.name, partition_key, data).unwrap();
    }
    fn now(&self) -> std::time::SystemTime {
        self.kinesis.now()
    }
    async fn split(&self, shard: &str, at: u128) -> Vec<String> {
        self.kinesis
            .split_shard(&self.name, shard, at)
            .unwrap()
            .to_vec()
    }
    async fn merge(&self, shard: &str, adjacent: &str) {
        self.kinesis
            .merge_shards(&self.name, shard, adjacent)
            .unwrap();
    }
}

pub struct Emulator {
    pub client: Client,
    pub name: String,
}

impl Emulator {
    /// A driver for a new stream on the emulator at `KINESIS_ENDPOINT`.
    pub fn new(test: &str) -> Self {
        let endpoint = std::env::var("KINESIS_ENDPOINT").unwrap_or_else(|_| {
            panic!(
                "KINESIS_ENDPOINT is not set: run ./scripts/test, which starts a Kinesis emulator"
            )
        });
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .endpoint_url(endpoint)
            .build();
        Self {
            client: Client::from_conf(config),
            name: unique(test),
        }
    }

    /// A driver speaking HTTP/2 over TLS to the emulator's TLS port (`KINESIS_TLS_ENDPOINT`),
    /// trusting the test CA in `KINESIS_CA_PEM`: the transport enhanced fan-out needs.
    pub fn new_tls(test: &str) -> Self {
        use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
        let (Ok(endpoint), Ok(ca)) = (
            std::env::var("KINESIS_TLS_ENDPOINT"),
            std::env::var("KINESIS_CA_PEM"),
        ) else {
            panic!(
                "KINESIS_TLS_ENDPOINT and KINESIS_CA_PEM are not set: run ./scripts/test, which starts kinesis-local with TLS"
            )
        };
        let pem = std::fs::read(&ca).unwrap_or_else(|e| panic!("reading {ca}: {e}"));
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .tls_context(
                TlsContext::builder()
                    .with_trust_store(TrustStore::empty().with_pem_certificate(pem))
                    .build()
                    .unwrap(),
            )
            .build_https();
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .endpoint_url(endpoint)
            .http_client(http)
            .build();
        Self {
            client: Client::from_conf(config),
            name: unique(test),
        }
    }

    /// Deletes the stream (best effort: a test's leftovers must not fail it).
    pub async fn delete(&self) {
        let _ = self
            .client
            .delete_stream()
            .stream_name(&self.name)
            .send()
            .await;
    }

    /// Tags the stream `key` (with `value`, when given).
    pub async fn tag(&self, key: &str, value: Option<&str>) {
        self.client
            .add_tags_to_stream()
            .stream_name(&self.name)
            .tags(key, value.unwrap_or_default())
            .send()
            .await
            .unwrap();
    }

    /// Deletes the stream and creates it again under the same name, with `shards` shards. The
    /// service takes seconds to delete a stream, the emulator a fraction of one: the new
    /// stream is created once the wall clock is past the old one's creation second, as on the
    /// service, since creation epochs (seconds, the KCL's unit) tell the two apart.
    pub async fn recreate(&self, shards: u32) {
        let created = self.created().await;
        self.delete().await;
        crate::wait_for("the stream deleted", Duration::from_secs(30), || async {
            self.client
                .describe_stream_summary()
                .stream_name(&self.name)
                .send()
                .await
                .is_err_and(|e| {
                    e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception())
                })
        })
        .await;
        crate::wait_for("a new second", Duration::from_secs(5), || async {
            epoch_seconds(std::time::SystemTime::now()) > epoch_seconds(created)
        })
        .await;
        self.create(shards).await;
    }

    /// When the stream was created.
    pub async fn created(&self) -> std::time::SystemTime {
        let out = self
            .client
            .describe_stream_summary()
            .stream_name(&self.name)
            .send()
            .await
            .unwrap();
        let created = out
            .stream_description_summary()
            .unwrap()
            .stream_creation_timestamp();
        std::time::UNIX_EPOCH + Duration::from_secs_f64(created.as_secs_f64())
    }

    async fn wait_active(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = self
                .client
                .describe_stream_summary()
                .stream_name(&self.name)
                .send()
                .await
                .unwrap();
            if *out.stream_description_summary().unwrap().stream_status() == StreamStatus::Active {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stream {} not ACTIVE",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn epoch_seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A name no other test (or earlier run) uses.
pub fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{test}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

#[async_trait]
impl StreamDriver for Emulator {
    fn api(&self) -> Arc<dyn KinesisApi> {
        Arc::new(self.client.clone())
    }
    fn stream(&self) -> &str {
        &self.name
    }
    async fn create(&self, shards: u32) {
        self.client
            .create_stream()
            .stream_name(&self.name)
            .shard_count(shards as i32)
            .send()
            .await
            .unwrap();
        self.wait_active().await;
    }
    async fn put(&self, range: std::ops::Range<usize>, keys: usize) {
        let ids: Vec<usize> = range.collect();
        for chunk in ids.chunks(500) {
            let entries: Vec<PutRecordsRequestEntry> = chunk
                .iter()
                .map(|i| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(format!("key-{}", i % keys))
                        .data(Blob::new(format!("record-{i}").into_bytes()))
                        .build()
                        .unwrap()
                })
                .collect();
            let out = self
                .client
                .put_records()
                .stream_name(&self.name)
                .set_records(Some(entries))
                .send()
                .await
                .unwrap();
            assert_eq!(out.failed_record_count(), Some(0), "every record accepted");
        }
    }
    async fn put_raw(&self, partition_key: &str, data: Vec<u8>) {
        self.client
            .put_record()
            .stream_name(&self.name)
            .partition_key(partition_key)
            .data(Blob::new(data))
            .send()
            .await
            .unwrap();
    }
    fn now(&self) -> std::time::SystemTime {
        // The emulator runs on this machine's clock.
        std::time::SystemTime::now()
    }
    async fn split(&self, shard: &str, at: u128) -> Vec<String> {
        let before: Vec<String> = self
            .shards()
            .await
            .into_iter()
            .map(|s| s.shard_id)
            .collect();
        self.client
            .split_shard()
            .stream_name(&self.name)
            .shard_to_split(shard)
            .new_starting_hash_key(at.to_string())
            .send()
            .await
            .unwrap();
        self.wait_active().await;
        self.shards()
            .await
            .into_iter()
            .map(|s| s.shard_id)
            .filter(|s| !before.contains(s))
            .collect()
    }
    async fn merge(&self, shard: &str, adjacent: &str) {
        self.client
            .merge_shards()
            .stream_name(&self.name)
            .shard_to_merge(shard)
            .adjacent_shard_to_merge(adjacent)
            .send()
            .await
            .unwrap();
        self.wait_active().await;
    }
}
