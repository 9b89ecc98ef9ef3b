//! Publishes shardwise's metrics to CloudWatch (or to a server that speaks its API, such as
//! moto, when `CLOUDWATCH_ENDPOINT` is set), then shuts the exporter down and prints its counters.
//!
//! `CLOUDWATCH_ENDPOINT=http://127.0.0.1:15000 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
//!  cargo run -p shardwise-metrics --example cloudwatch --features cloudwatch`

use std::time::Duration;

use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use shardwise_metrics::cloudwatch::{self, CloudWatchConfig};
use shardwise_metrics::{MetricNames, MetricsLevel, ShardMetrics, describe};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A real application builds the client from `aws_config::load_defaults(..)`.
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let mut sdk = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(
            std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
        ))
        .credentials_provider(Credentials::new(
            env("AWS_ACCESS_KEY_ID"),
            env("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "environment",
        ));
    if let Ok(endpoint) = std::env::var("CLOUDWATCH_ENDPOINT") {
        sdk = sdk.endpoint_url(endpoint);
    }
    let client = aws_sdk_cloudwatch::Client::from_conf(sdk.build());

    let config = CloudWatchConfig::builder("shardwise-example").build()?;
    let exporter = cloudwatch::install(client, config)?;
    let names = MetricNames::default();
    describe(&names);

    let shard = ShardMetrics::register(
        &names,
        MetricsLevel::Detailed,
        "orders",
        "shardId-000000000000",
        "worker-1",
    );
    shard.records_processed.increment(500);
    shard.millis_behind_latest.set(1_200.0);
    shard.get_records_time.record(35.0);

    let stats = tokio::time::timeout(Duration::from_secs(10), exporter.shutdown()).await??;
    println!("{stats:?}");
    Ok(())
}
