//! Exactly once into PostgreSQL: every record of the stream `orders` becomes one row of the table
//! `order_events`, written in the same transaction as the shard's checkpoint, with the leases in
//! the same database. A worker killed, frozen past its lease or overtaken by another never
//! leaves a row twice, nor a record without its row: the rows and the checkpoint commit
//! together, and only while this worker holds the lease.
//!
//! Run against AWS (credentials and region from the usual AWS environment) or an emulator
//! (`AWS_ENDPOINT_URL_KINESIS`), with `DATABASE_URL` naming the database:
//! `cargo run -p shardwise --features postgres --example exactly_once_postgres`

use std::sync::Arc;

use async_trait::async_trait;
use shardwise::lease::LeaseStore;
use shardwise::lease::postgres::sqlx::{self, PgPool};
use shardwise::lease::postgres::{PostgresConfig, PostgresLeaseStore};
use shardwise::{
    Checkpointer, Consumer, InitialPosition, ProcessorError, ProcessorFactory, RecordBatch,
    ShardProcessor,
};
use tokio_util::sync::CancellationToken;

/// Writes each batch's rows and checkpoint in one transaction.
struct Writer {
    pool: PgPool,
    leases: Arc<PostgresLeaseStore>,
}

#[async_trait]
impl ShardProcessor for Writer {
    async fn process_records(
        &mut self,
        batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        let mut tx = self.pool.begin().await?;
        for record in &batch.records {
            sqlx::query(
                "INSERT INTO order_events (shard_id, sequence_number, sub_sequence_number, data) \
                 VALUES ($1, $2::NUMERIC, $3, $4)",
            )
            .bind(batch.shard_id.as_str())
            .bind(record.sequence_number.as_str())
            .bind(i64::try_from(record.sub_sequence_number)?)
            .bind(&record.data[..])
            .execute(&mut *tx)
            .await?;
        }
        // The rows and the checkpoint, or neither: a lease lost in the meantime rolls it all
        // back (`CheckpointError::LeaseLost`), and the next holder writes these rows once.
        checkpointer.commit(self.leases.as_ref(), tx).await?;
        Ok(())
    }
}

struct Writers {
    pool: PgPool,
    leases: Arc<PostgresLeaseStore>,
}

impl ProcessorFactory for Writers {
    fn create(&self, _shard_id: &shardwise::lease::ShardId) -> Box<dyn ShardProcessor> {
        Box::new(Writer {
            pool: self.pool.clone(),
            leases: self.leases.clone(),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")?;
    let leases = Arc::new(
        PostgresLeaseStore::connect(&PostgresConfig::builder(&url, "order-events").build()?)
            .await?,
    );
    leases.create_table_if_missing().await?;
    let pool = PgPool::connect(&url).await?;
    // The primary key would refuse a second row for a record: none ever comes.
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS order_events (shard_id TEXT NOT NULL, \
         sequence_number NUMERIC NOT NULL, sub_sequence_number BIGINT NOT NULL, data BYTEA, \
         PRIMARY KEY (shard_id, sequence_number, sub_sequence_number))",
    )
    .execute(&pool)
    .await?;

    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let consumer = Consumer::builder()
        .stream("orders")
        .kinesis(Arc::new(aws_sdk_kinesis::Client::new(&aws)))
        .lease_store(leases.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .processor(Writers { pool, leases })
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
