//! What exactly-once costs: transactional checkpoints against plain ones. Prints figures, decides
//! nothing.
//!
//! The whole worker on the in-memory Kinesis (records of 100 B on four shards, read up to 10,000
//! a call, so that reading is not what limits) hands batches to a processor that writes one row
//! per record into a sink and checkpoints after every `chunk` records:
//! - **plain**: the rows in one statement (PostgreSQL: `INSERT … SELECT unnest($1)`, committed on
//!   its own) or `BatchWriteItem`s of 25 (DynamoDB), then `checkpoint_at`;
//! - **transactional**: the same rows and the checkpoint in one transaction with
//!   `Checkpointer::commit_at` (PostgreSQL: `BEGIN`, the insert, the fenced update, `COMMIT`;
//!   DynamoDB: one `TransactWriteItems`, so chunks of at most 99).
//!
//! Figures: records/s from the first record to the last, and the processor's round trips to the
//! server per record (sink statements and checkpoint writes; the worker's background lease calls,
//! a few a second, are not counted).
//!
//! Needs `DATABASE_URL` (PostgreSQL) and `DYNAMODB_TX_ENDPOINT` (a DynamoDB emulator with
//! transactions, dynoxide); a store whose variable is missing is skipped. `./scripts/test` starts
//! both; with them running:
//! `cargo bench -p shardwise --features testkit,postgres,dynamodb --bench transactional`

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use shardwise::kinesis::testkit::InMemoryKinesis;
use shardwise::kinesis::{KinesisApi, PollingConfig};
use shardwise::lease::dynamodb::{DynamoDbLeaseStore, TransactWriteItem};
use shardwise::lease::postgres::sqlx::{self, PgPool};
use shardwise::lease::postgres::{PostgresConfig, PostgresLeaseStore};
use shardwise::lease::{LeaseStore, ShardId};
use shardwise::{
    Checkpointer, Consumer, ConsumerConfig, InitialPosition, ProcessorError, ProcessorFactory,
    RecordBatch, Retrieval, ShardProcessor,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Transactional,
}

/// Where the rows go, and how they are committed.
#[derive(Clone)]
enum Sink {
    Postgres {
        store: Arc<PostgresLeaseStore>,
        pool: PgPool,
        table: String,
    },
    DynamoDb {
        store: Arc<DynamoDbLeaseStore>,
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
}

impl Sink {
    fn lease_store(&self) -> Arc<dyn LeaseStore> {
        match self {
            Sink::Postgres { store, .. } => store.clone(),
            Sink::DynamoDb { store, .. } => store.clone(),
        }
    }

    /// One chunk's rows and its checkpoint; the round trips it took.
    async fn chunk(
        &self,
        mode: Mode,
        rows: Vec<String>,
        last: &shardwise::UserRecord,
        checkpointer: &Checkpointer,
    ) -> Result<u64, ProcessorError> {
        match self {
            Sink::Postgres { store, pool, table } => {
                let insert = format!("INSERT INTO {table} (record) SELECT unnest($1::text[])");
                let query = sqlx::query(sqlx::AssertSqlSafe(insert)).bind(rows);
                match mode {
                    Mode::Plain => {
                        query.execute(pool).await?;
                        checkpointer.checkpoint_at(last).await?;
                        Ok(2)
                    }
                    Mode::Transactional => {
                        let mut tx = pool.begin().await?;
                        query.execute(&mut *tx).await?;
                        checkpointer.commit_at(store.as_ref(), tx, last).await?;
                        Ok(4)
                    }
                }
            }
            Sink::DynamoDb {
                store,
                client,
                table,
            } => {
                let items: Vec<HashMap<String, AttributeValue>> = rows
                    .into_iter()
                    .map(|record| {
                        let id = format!("{record}#{}", NONCE.fetch_add(1, Ordering::Relaxed));
                        HashMap::from([
                            ("id".to_owned(), AttributeValue::S(id)),
                            ("record".to_owned(), AttributeValue::S(record)),
                        ])
                    })
                    .collect();
                match mode {
                    Mode::Plain => {
                        let mut calls = 1;
                        for group in items.chunks(25) {
                            let mut requests = Vec::with_capacity(group.len());
                            for item in group {
                                let put =
                                    PutRequest::builder().set_item(Some(item.clone())).build()?;
                                requests.push(WriteRequest::builder().put_request(put).build());
                            }
                            let mut pending = HashMap::from([(table.clone(), requests)]);
                            while !pending.is_empty() {
                                let out = client
                                    .batch_write_item()
                                    .set_request_items(Some(pending))
                                    .send()
                                    .await?;
                                calls += 1;
                                pending = out.unprocessed_items.unwrap_or_default();
                                pending.retain(|_, v| !v.is_empty());
                            }
                        }
                        checkpointer.checkpoint_at(last).await?;
                        Ok(calls)
                    }
                    Mode::Transactional => {
                        let mut writes = Vec::with_capacity(items.len());
                        for item in items {
                            let put = Put::builder()
                                .table_name(table)
                                .set_item(Some(item))
                                .build()?;
                            writes.push(TransactWriteItem::builder().put(put).build());
                        }
                        checkpointer.commit_at(store.as_ref(), writes, last).await?;
                        Ok(1)
                    }
                }
            }
        }
    }
}

static NONCE: AtomicU64 = AtomicU64::new(0);

struct Tally {
    records: AtomicUsize,
    round_trips: AtomicU64,
    first: std::sync::Mutex<Option<Instant>>,
    done: Notify,
    total: usize,
}

struct Processor {
    sink: Sink,
    mode: Mode,
    chunk: usize,
    tally: Arc<Tally>,
}

#[async_trait]
impl ShardProcessor for Processor {
    async fn process_records(
        &mut self,
        batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        if let Ok(mut first) = self.tally.first.lock() {
            first.get_or_insert_with(Instant::now);
        }
        for chunk in batch.records.chunks(self.chunk) {
            let rows = chunk
                .iter()
                .map(|r| String::from_utf8_lossy(&r.data).into_owned())
                .collect();
            let Some(last) = chunk.last() else { continue };
            let trips = self.sink.chunk(self.mode, rows, last, checkpointer).await?;
            self.tally.round_trips.fetch_add(trips, Ordering::Relaxed);
            let seen = self.tally.records.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
            if seen >= self.tally.total {
                self.tally.done.notify_one();
            }
        }
        Ok(())
    }
}

struct Factory(Sink, Mode, usize, Arc<Tally>);

impl ProcessorFactory for Factory {
    fn create(&self, _shard_id: &ShardId) -> Box<dyn ShardProcessor> {
        Box::new(Processor {
            sink: self.0.clone(),
            mode: self.1,
            chunk: self.2,
            tally: self.3.clone(),
        })
    }
}

/// One run: `records` records through `sink`, checkpointed every `chunk`; records/s and round
/// trips per record.
async fn run(sink: Sink, mode: Mode, chunk: usize, records: usize) -> Option<(f64, f64)> {
    let kinesis = Arc::new(InMemoryKinesis::new());
    let stream = format!("bench-{}", NONCE.fetch_add(1, Ordering::Relaxed));
    kinesis.create_stream(&stream, 4);
    for i in 0..records {
        let data = format!("record-{i:0>93}").into_bytes();
        kinesis.put(&stream, &format!("k{i}"), data).ok()?;
    }
    let tally = Arc::new(Tally {
        records: AtomicUsize::new(0),
        round_trips: AtomicU64::new(0),
        first: std::sync::Mutex::new(None),
        done: Notify::new(),
        total: records,
    });
    let consumer = Consumer::builder()
        .stream(&stream)
        .kinesis(kinesis as Arc<dyn KinesisApi>)
        .lease_store(sink.lease_store())
        .worker_id("bench")
        .config(ConsumerConfig {
            initial_position: InitialPosition::TrimHorizon,
            retrieval: Retrieval::Polling(PollingConfig {
                max_records: 10_000,
                ..PollingConfig::default()
            }),
            ..ConsumerConfig::default()
        })
        .processor(Factory(sink, mode, chunk, tally.clone()))
        .build()
        .ok()?;
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { consumer.run(stop).await }
    });
    let finished = tokio::time::timeout(Duration::from_secs(600), tally.done.notified()).await;
    let elapsed = tally.first.lock().ok()?.map(|t| t.elapsed())?;
    stop.cancel();
    let _ = task.await;
    finished.ok()?;
    let rate = records as f64 / elapsed.as_secs_f64();
    let trips = tally.round_trips.load(Ordering::Relaxed) as f64 / records as f64;
    Some((rate, trips))
}

fn print(store: &str, mode: Mode, chunk: usize, figures: Option<(f64, f64)>) {
    match figures {
        Some((rate, trips)) => {
            println!("| {store} | {chunk} | {mode:?} | {rate:.0} | {trips:.3} |")
        }
        None => println!("| {store} | {chunk} | {mode:?} | failed | |"),
    }
}

async fn postgres(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let namespace = format!("bench-tx-{}", std::process::id());
    let config = PostgresConfig::builder(url, namespace).build()?;
    let store = Arc::new(PostgresLeaseStore::connect(&config).await?);
    store.create_table_if_missing().await?;
    let pool = PgPool::connect(url).await?;
    for (chunk, records) in [(1, 2_000), (100, 20_000), (1_000, 50_000)] {
        for mode in [Mode::Plain, Mode::Transactional] {
            let table = format!(
                "bench_sink_{}_{}",
                std::process::id(),
                NONCE.fetch_add(1, Ordering::Relaxed)
            );
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, record TEXT NOT NULL)"
            )))
            .execute(&pool)
            .await?;
            store.delete_all_leases().await?;
            let sink = Sink::Postgres {
                store: store.clone(),
                pool: pool.clone(),
                table: table.clone(),
            };
            print(
                "PostgreSQL",
                mode,
                chunk,
                run(sink, mode, chunk, records).await,
            );
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
                .execute(&pool)
                .await?;
        }
    }
    store.delete_all_leases().await?;
    Ok(())
}

async fn dynamodb(endpoint: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .endpoint_url(endpoint)
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    for (chunk, records) in [(1, 2_000), (10, 10_000), (99, 20_000)] {
        for mode in [Mode::Plain, Mode::Transactional] {
            let name = format!(
                "bench-tx-{}-{}",
                std::process::id(),
                NONCE.fetch_add(1, Ordering::Relaxed)
            );
            let store = Arc::new(DynamoDbLeaseStore::new(
                client.clone(),
                format!("{name}-leases"),
            )?);
            store.create_table_if_missing().await?;
            let table = format!("{name}-sink");
            client
                .create_table()
                .table_name(&table)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name("id")
                        .attribute_type(ScalarAttributeType::S)
                        .build()?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name("id")
                        .key_type(KeyType::Hash)
                        .build()?,
                )
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await?;
            let sink = Sink::DynamoDb {
                store,
                client: client.clone(),
                table: table.clone(),
            };
            print(
                "DynamoDB (dynoxide)",
                mode,
                chunk,
                run(sink, mode, chunk, records).await,
            );
            client.delete_table().table_name(&table).send().await?;
            client
                .delete_table()
                .table_name(format!("{name}-leases"))
                .send()
                .await?;
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "| store | records per checkpoint | checkpoints | records/s | round trips per record |"
    );
    println!("| --- | --- | --- | --- | --- |");
    match std::env::var("DATABASE_URL") {
        Ok(url) => {
            if let Err(e) = postgres(&url).await {
                println!("PostgreSQL: {e}");
            }
        }
        Err(_) => println!("PostgreSQL skipped: DATABASE_URL is not set"),
    }
    match std::env::var("DYNAMODB_TX_ENDPOINT") {
        Ok(endpoint) => {
            if let Err(e) = dynamodb(&endpoint).await {
                println!("DynamoDB: {e}");
            }
        }
        Err(_) => println!("DynamoDB skipped: DYNAMODB_TX_ENDPOINT is not set"),
    }
}
