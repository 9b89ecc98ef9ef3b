//! The same reader scenarios run against the in-memory Kinesis and a real emulator process, through
//! a small harness that creates streams, puts records, splits and merges.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod counting;
pub mod fanout;
pub mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::StreamStatus;
use shardwise_kinesis_source::testkit::InMemoryKinesis;
use shardwise_kinesis_source::{KinesisApi, StreamId};

/// What a scenario needs from a Kinesis.
#[async_trait]
pub trait Harness: Send + Sync {
    fn api(&self) -> Arc<dyn KinesisApi>;
    /// Creates a stream and waits until it is ACTIVE.
    async fn create_stream(&self, name: &str, shards: u32);
    /// Puts a record; returns (shard id, sequence number).
    async fn put(&self, stream: &str, partition_key: &str, data: &[u8]) -> (String, String);
    /// Splits a shard at a hash key and waits until the stream is ACTIVE again.
    async fn split(&self, stream: &str, shard_id: &str, at: u128);
    /// Merges two adjacent shards and waits until the stream is ACTIVE again.
    async fn merge(&self, stream: &str, shard_id: &str, adjacent: &str);
    /// A stream name no other test uses.
    fn unique(&self, test: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{test}-{}-{}", std::process::id(), nanos % 1_000_000_000)
    }
}

pub struct Memory(pub Arc<InMemoryKinesis>);

#[async_trait]
impl Harness for Memory {
    fn api(&self) -> Arc<dyn KinesisApi> {
        self.0.clone()
    }
    async fn create_stream(&self, name: &str, shards: u32) {
        self.0.create_stream(name, shards);
    }
    async fn put(&self, stream: &str, partition_key: &str, data: &[u8]) -> (String, String) {
        self.0.put(stream, partition_key, data.to_vec()).unwrap()
    }
    async fn split(&self, stream: &str, shard_id: &str, at: u128) {
        self.0.split_shard(stream, shard_id, at).unwrap();
    }
    async fn merge(&self, stream: &str, shard_id: &str, adjacent: &str) {
        self.0.merge_shards(stream, shard_id, adjacent).unwrap();
    }
}

/// A Kinesis emulator (or the real service) at `KINESIS_ENDPOINT`.
pub struct Emulator(pub Client);

pub fn emulator() -> Emulator {
    let endpoint = std::env::var("KINESIS_ENDPOINT").unwrap_or_else(|_| {
        panic!("KINESIS_ENDPOINT is not set: run ./scripts/test, which starts a Kinesis emulator")
    });
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(endpoint)
        .build();
    Emulator(Client::from_conf(config))
}

/// The emulator over HTTP/2 with TLS (ALPN h2), the way enhanced fan-out runs in production:
/// `KINESIS_TLS_ENDPOINT` (e.g. `https://localhost:14567`) trusted through the test CA in
/// `KINESIS_CA_PEM`.
pub fn emulator_tls() -> Emulator {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    let (Ok(endpoint), Ok(ca)) = (
        std::env::var("KINESIS_TLS_ENDPOINT"),
        std::env::var("KINESIS_CA_PEM"),
    ) else {
        panic!(
            "KINESIS_TLS_ENDPOINT and KINESIS_CA_PEM are not set: run ./scripts/test, which \
             starts kinesis-local with a TLS port and a test CA"
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
    Emulator(Client::from_conf(config))
}

impl Emulator {
    async fn wait_active(&self, stream: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = self
                .0
                .describe_stream_summary()
                .stream_name(stream)
                .send()
                .await
                .unwrap();
            let summary = out.stream_description_summary().unwrap();
            if *summary.stream_status() == StreamStatus::Active {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stream {stream} not ACTIVE after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[async_trait]
impl Harness for Emulator {
    fn api(&self) -> Arc<dyn KinesisApi> {
        Arc::new(self.0.clone())
    }
    async fn create_stream(&self, name: &str, shards: u32) {
        self.0
            .create_stream()
            .stream_name(name)
            .shard_count(shards as i32)
            .send()
            .await
            .unwrap();
        self.wait_active(name).await;
    }
    async fn put(&self, stream: &str, partition_key: &str, data: &[u8]) -> (String, String) {
        let out = self
            .0
            .put_record()
            .stream_name(stream)
            .partition_key(partition_key)
            .data(Blob::new(data.to_vec()))
            .send()
            .await
            .unwrap();
        (out.shard_id().to_owned(), out.sequence_number().to_owned())
    }
    async fn split(&self, stream: &str, shard_id: &str, at: u128) {
        self.0
            .split_shard()
            .stream_name(stream)
            .shard_to_split(shard_id)
            .new_starting_hash_key(at.to_string())
            .send()
            .await
            .unwrap();
        self.wait_active(stream).await;
    }
    async fn merge(&self, stream: &str, shard_id: &str, adjacent: &str) {
        self.0
            .merge_shards()
            .stream_name(stream)
            .shard_to_merge(shard_id)
            .adjacent_shard_to_merge(adjacent)
            .send()
            .await
            .unwrap();
        self.wait_active(stream).await;
    }
}

pub fn stream_id(name: &str) -> StreamId {
    StreamId::Name(name.to_owned())
}
