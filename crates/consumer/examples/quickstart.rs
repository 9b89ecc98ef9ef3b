//! A worker of the application `order-audit` reading the stream `orders`, with its leases in
//! DynamoDB (the table is created if missing). Start as many as you like: they share the shards.
//! Ctrl-C stops the worker gracefully (processors checkpoint, leases are released at once).
//!
//! Run against AWS (credentials and region from the usual AWS environment), or against local
//! emulators with `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL_DYNAMODB`:
//! `cargo run -p shardwise --example quickstart`

use std::sync::Arc;

use shardwise::lease::dynamodb::DynamoDbLeaseStore;
use shardwise::{Consumer, InitialPosition, RecordBatch, processor_fn};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let leases = DynamoDbLeaseStore::from_sdk_config(&aws, "order-audit")?;

    let consumer = Consumer::builder()
        .stream("orders")
        .kinesis(Arc::new(aws_sdk_kinesis::Client::new(&aws)))
        .lease_store(Arc::new(leases))
        .initial_position(InitialPosition::TrimHorizon)
        .processor(processor_fn(|batch: RecordBatch| async move {
            for record in &batch.records {
                println!(
                    "{} {} {}",
                    batch.shard_id,
                    record.partition_key,
                    String::from_utf8_lossy(&record.data)
                );
            }
            Ok(()) // everything delivered is checkpointed after each batch
        }))
        .build()?;

    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        }
    });
    consumer.run(stop).await?;
    Ok(())
}
