//! One application over several streams: the README's multi-stream example.

use std::sync::Arc;

use shardwise::lease::dynamodb::DynamoDbLeaseStore;
use shardwise::{Consumer, InitialPosition, RecordBatch, StreamConfig, processor_fn};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let leases = DynamoDbLeaseStore::from_sdk_config(&aws, "order-audit")?;

    let consumer = Consumer::builder()
        // A fixed list; implement `StreamTracker` to find streams another way.
        .streams(vec![
            StreamConfig::new("orders", InitialPosition::TrimHorizon),
            StreamConfig::new("refunds", InitialPosition::Latest),
        ])
        .kinesis(Arc::new(aws_sdk_kinesis::Client::new(&aws)))
        .lease_store(Arc::new(leases))
        .processor(processor_fn(|batch: RecordBatch| async move {
            let stream = batch.stream.as_ref().map_or("?", |s| s.name());
            println!(
                "{} records of {stream} {}",
                batch.records.len(),
                batch.shard_id
            );
            Ok(())
        }))
        .build()?;

    consumer.run(CancellationToken::new()).await?;
    Ok(())
}
