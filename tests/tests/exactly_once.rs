//! Exactly-once effects against real servers: a processor inserts one row per record into a sink
//! table and checkpoints, on a stream of the Kinesis emulator, while the test kills a worker
//! between its writes and its checkpoint, freezes one past its lease, and steals a lease from
//! one. With transactional checkpoints (`Checkpointer::commit`) the sink ends with exactly one
//! row per record; the same run with plain checkpoints shows the duplicates it prevents.
//!
//! PostgreSQL: the sink is a table in the lease database, written in the application's sqlx
//! transaction. DynamoDB: dynoxide (`DYNAMODB_TX_ENDPOINT`; dynalite has no transactions), the
//! sink a table beside the lease table, written with `TransactWriteItems`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType,
};
use shardwise::lease::dynamodb::{DynamoDbLeaseStore, TransactWriteItem};
use shardwise::lease::postgres::sqlx::{self, PgPool, Row};
use shardwise::lease::postgres::{PostgresConfig, PostgresLeaseStore};
use shardwise::lease::{
    Call, Layer, Layered, LeaseKey, LeaseStore, Operation, Race, ShardId, StoreError, WorkerId,
};
use shardwise::{
    Checkpointer, Consumer, ConsumerConfig, InitialPosition, ProcessorError, ProcessorFactory,
    RecordBatch, ShardProcessor,
};
use shardwise_tests::drivers::unique;
use shardwise_tests::{Emulator, StreamDriver, wait_for};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(3);
const PATIENCE: Duration = Duration::from_secs(120);
/// Records put before each fault and after the last.
const PHASE: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Transactional,
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trap {
    /// The worker is killed between its writes and its checkpoint.
    Kill,
    /// The worker freezes there (its lease store calls blocked) until its lease moves on.
    Freeze,
    /// The lease is taken from the worker there, before it notices.
    Steal,
}

/// A processor stopped between its writes and its checkpoint.
struct Hit {
    worker: String,
    shard: ShardId,
    release: oneshot::Sender<()>,
}

/// The one trap armed at a time, and where its hit is reported.
struct Traps {
    armed: Mutex<Option<Trap>>,
    hits: mpsc::UnboundedSender<Hit>,
}

impl Traps {
    /// Between the writes and the checkpoint: stops here when a trap is armed.
    async fn window(&self, worker: &str, shard: &ShardId) {
        if self.armed.lock().unwrap().take().is_none() {
            return;
        }
        let (release, released) = oneshot::channel();
        let hit = Hit {
            worker: worker.to_owned(),
            shard: shard.clone(),
            release,
        };
        if self.hits.send(hit).is_ok() {
            let _ = released.await;
        }
    }
}

/// Where the processors write, and how.
#[async_trait]
trait Sink: Send + Sync + 'static {
    /// One row per record, then the checkpoint, with the window between.
    async fn batch(
        &self,
        mode: Mode,
        batch: &RecordBatch,
        checkpointer: &Checkpointer,
        window: &(dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync),
    ) -> Result<(), ProcessorError>;
    /// Rows per record.
    async fn counts(&self) -> BTreeMap<String, usize>;
}

fn record_of(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

struct PostgresSink {
    store: Arc<PostgresLeaseStore>,
    pool: PgPool,
    table: String,
}

#[async_trait]
impl Sink for PostgresSink {
    async fn batch(
        &self,
        mode: Mode,
        batch: &RecordBatch,
        checkpointer: &Checkpointer,
        window: &(dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync),
    ) -> Result<(), ProcessorError> {
        let insert = format!("INSERT INTO {} (record) VALUES ($1)", self.table);
        match mode {
            Mode::Transactional => {
                let mut tx = self.pool.begin().await?;
                for record in &batch.records {
                    sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                        .bind(record_of(&record.data))
                        .execute(&mut *tx)
                        .await?;
                }
                window().await;
                checkpointer.commit(self.store.as_ref(), tx).await?;
            }
            Mode::Plain => {
                for record in &batch.records {
                    sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                        .bind(record_of(&record.data))
                        .execute(&self.pool)
                        .await?;
                }
                window().await;
                checkpointer.checkpoint().await?;
            }
        }
        Ok(())
    }

    async fn counts(&self) -> BTreeMap<String, usize> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT record, count(*) FROM {} GROUP BY record",
            self.table
        )))
        .fetch_all(&self.pool)
        .await
        .unwrap();
        rows.iter()
            .map(|row| {
                let n: i64 = row.get(1);
                (row.get::<String, _>(0), n as usize)
            })
            .collect()
    }
}

struct DynamoDbSink {
    store: Arc<DynamoDbLeaseStore>,
    client: aws_sdk_dynamodb::Client,
    table: String,
}

static NONCE: AtomicU64 = AtomicU64::new(0);

impl DynamoDbSink {
    /// A row of its own for each write of a record: duplicates show as several items.
    fn item(&self, data: &[u8]) -> HashMap<String, AttributeValue> {
        let record = record_of(data);
        let id = format!("{record}#{}", NONCE.fetch_add(1, Ordering::Relaxed));
        HashMap::from([
            ("id".to_owned(), AttributeValue::S(id)),
            ("record".to_owned(), AttributeValue::S(record)),
        ])
    }
}

#[async_trait]
impl Sink for DynamoDbSink {
    async fn batch(
        &self,
        mode: Mode,
        batch: &RecordBatch,
        checkpointer: &Checkpointer,
        window: &(dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync),
    ) -> Result<(), ProcessorError> {
        match mode {
            Mode::Transactional => {
                // 99 items a transaction: each covers its own records, up to the last of them.
                for (i, chunk) in batch.records.chunks(99).enumerate() {
                    let items: Vec<TransactWriteItem> = chunk
                        .iter()
                        .map(|r| {
                            let put = Put::builder()
                                .table_name(&self.table)
                                .set_item(Some(self.item(&r.data)))
                                .build()
                                .unwrap();
                            TransactWriteItem::builder().put(put).build()
                        })
                        .collect();
                    if i == 0 {
                        window().await;
                    }
                    let last = chunk.last().unwrap();
                    checkpointer
                        .commit_at(self.store.as_ref(), items, last)
                        .await?;
                }
            }
            Mode::Plain => {
                for record in &batch.records {
                    self.client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(self.item(&record.data)))
                        .send()
                        .await?;
                }
                window().await;
                checkpointer.checkpoint().await?;
            }
        }
        Ok(())
    }

    async fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            for item in page.items() {
                if let Some(AttributeValue::S(record)) = item.get("record") {
                    *counts.entry(record.clone()).or_default() += 1;
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return counts;
            }
        }
    }
}

struct Processor {
    worker: String,
    mode: Mode,
    sink: Arc<dyn Sink>,
    traps: Arc<Traps>,
}

#[async_trait]
impl ShardProcessor for Processor {
    async fn process_records(
        &mut self,
        batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        let (traps, worker, shard) = (
            self.traps.clone(),
            self.worker.clone(),
            batch.shard_id.clone(),
        );
        let window = move || -> futures_util::future::BoxFuture<'static, ()> {
            let (traps, worker, shard) = (traps.clone(), worker.clone(), shard.clone());
            Box::pin(async move { traps.window(&worker, &shard).await })
        };
        self.sink
            .batch(self.mode, &batch, checkpointer, &window)
            .await
    }
}

struct Factory {
    worker: String,
    mode: Mode,
    sink: Arc<dyn Sink>,
    traps: Arc<Traps>,
}

impl ProcessorFactory for Factory {
    fn create(&self, _shard_id: &ShardId) -> Box<dyn ShardProcessor> {
        Box::new(Processor {
            worker: self.worker.clone(),
            mode: self.mode,
            sink: self.sink.clone(),
            traps: self.traps.clone(),
        })
    }
}

/// Blocks every call of one worker to the lease store while frozen.
#[derive(Debug)]
struct Frozen(watch::Receiver<bool>);

impl Frozen {
    async fn thawed(&self) {
        let mut frozen = self.0.clone();
        let _ = frozen.wait_for(|frozen| !*frozen).await;
    }
}

#[async_trait]
impl Layer for Frozen {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        _operation: Operation,
        _key: Option<&'a LeaseKey>,
        call: Call<'a, T>,
    ) -> Result<T, StoreError> {
        self.thawed().await;
        call.await
    }

    async fn renew_many(
        &self,
        inner: &dyn LeaseStore,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        self.thawed().await;
        inner.renew_many(owner, leases).await
    }
}

struct Worker {
    stop: CancellationToken,
    task: JoinHandle<()>,
    freeze: watch::Sender<bool>,
}

struct Run {
    driver: Emulator,
    store: Arc<dyn LeaseStore>,
    sink: Arc<dyn Sink>,
    mode: Mode,
    traps: Arc<Traps>,
    workers: BTreeMap<String, Worker>,
}

impl Run {
    fn start(&mut self, name: &str) {
        let (freeze, frozen) = watch::channel(false);
        let store: Arc<dyn LeaseStore> =
            Arc::new(Layered::wrap(self.store.clone(), Frozen(frozen)));
        let config = ConsumerConfig {
            initial_position: InitialPosition::TrimHorizon,
            lease_duration: LEASE,
            take_interval: LEASE / 2,
            shard_sync_interval: LEASE / 2,
            parent_poll_interval: Duration::from_millis(200),
            ..ConsumerConfig::default()
        };
        let consumer = Consumer::builder()
            .stream(self.driver.stream())
            .kinesis(self.driver.api())
            .lease_store(store)
            .worker_id(name)
            .config(config)
            .processor(Factory {
                worker: name.to_owned(),
                mode: self.mode,
                sink: self.sink.clone(),
                traps: self.traps.clone(),
            })
            .build()
            .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { consumer.run(stop).await.unwrap() }
        });
        self.workers
            .insert(name.to_owned(), Worker { stop, task, freeze });
    }

    /// Waits until the lease of `shard` is held by a worker other than `worker`.
    async fn moved_on(&self, shard: &ShardId, worker: &str) {
        let key = LeaseKey::new(shard.as_str()).unwrap();
        let store = self.store.clone();
        wait_for("the lease to move on", PATIENCE, || {
            let (store, key) = (store.clone(), key.clone());
            async move {
                let lease = store.get(&key).await.unwrap();
                lease
                    .and_then(|l| l.holder().map(|h| h.as_str().to_owned()))
                    .is_some_and(|holder| holder != worker && holder != "thief")
            }
        })
        .await;
    }
}

/// The faults, one after the other, on a fleet of three writing through `sink`; the rows per
/// record once every record has one.
async fn run(
    test: &str,
    store: Arc<dyn LeaseStore>,
    sink: Arc<dyn Sink>,
    mode: Mode,
) -> BTreeMap<String, usize> {
    let (hits_tx, mut hits) = mpsc::unbounded_channel();
    let traps = Arc::new(Traps {
        armed: Mutex::new(None),
        hits: hits_tx,
    });
    let mut run = Run {
        driver: Emulator::new(test),
        store,
        sink,
        mode,
        traps,
        workers: BTreeMap::new(),
    };
    run.driver.create(4).await;
    for name in ["a", "b", "c"] {
        run.start(name);
    }
    let mut put = 0;
    for trap in [Trap::Kill, Trap::Freeze, Trap::Steal] {
        run.driver.put(put..put + PHASE, 16).await;
        put += PHASE;
        *run.traps.armed.lock().unwrap() = Some(trap);
        let hit = tokio::time::timeout(PATIENCE, hits.recv())
            .await
            .expect("a processor reaches the trap")
            .unwrap();
        println!("{trap:?}: worker {} on {}", hit.worker, hit.shard);
        match trap {
            Trap::Kill => {
                let worker = run.workers.remove(&hit.worker).unwrap();
                worker.task.abort();
                let _ = worker.task.await;
                drop(hit.release);
                run.start(&format!("{}-restarted", hit.worker));
            }
            Trap::Freeze => {
                let worker = &run.workers[&hit.worker];
                worker.freeze.send_replace(true);
                run.moved_on(&hit.shard, &hit.worker).await;
                run.workers[&hit.worker].freeze.send_replace(false);
                let _ = hit.release.send(());
            }
            Trap::Steal => {
                // The victim's renewals held back, so that only the store's fence can tell it.
                run.workers[&hit.worker].freeze.send_replace(true);
                let key = LeaseKey::new(hit.shard.as_str()).unwrap();
                let lease = run.store.get(&key).await.unwrap().unwrap();
                let thief = WorkerId::new("thief").unwrap();
                let stolen = run.store.take(&key, lease.counter, &thief).await.unwrap();
                assert!(stolen.is_won(), "the lease is stolen");
                let _ = hit.release.send(());
                run.moved_on(&hit.shard, &hit.worker).await;
                run.workers[&hit.worker].freeze.send_replace(false);
            }
        }
    }
    run.driver.put(put..put + PHASE, 16).await;
    put += PHASE;
    let sink = run.sink.clone();
    wait_for("every record in the sink", PATIENCE, || {
        let sink = sink.clone();
        async move { sink.counts().await.len() == put }
    })
    .await;
    for (_, worker) in std::mem::take(&mut run.workers) {
        worker.stop.cancel();
        worker.task.await.unwrap();
    }
    let counts = run.sink.counts().await;
    assert_eq!(counts.len(), put, "every record has a row");
    for i in 0..put {
        assert!(
            counts.contains_key(&format!("record-{i}")),
            "record-{i} has no row"
        );
    }
    counts
}

async fn postgres(test: &str, mode: Mode) -> BTreeMap<String, usize> {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL: run ./scripts/test");
    let config = PostgresConfig::builder(&url, unique(test)).build().unwrap();
    let store = Arc::new(PostgresLeaseStore::connect(&config).await.unwrap());
    store.create_table_if_missing().await.unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    let table = format!("sink_{}", unique(test).replace('-', "_"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, record TEXT NOT NULL)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let sink = Arc::new(PostgresSink {
        store: store.clone(),
        pool: pool.clone(),
        table: table.clone(),
    });
    let counts = run(test, store, sink, mode).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&pool)
        .await
        .unwrap();
    counts
}

async fn dynamodb(test: &str, mode: Mode) -> BTreeMap<String, usize> {
    let endpoint =
        std::env::var("DYNAMODB_TX_ENDPOINT").expect("DYNAMODB_TX_ENDPOINT: run ./scripts/test");
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(endpoint)
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let name = unique(test);
    let store =
        Arc::new(DynamoDbLeaseStore::new(client.clone(), format!("{name}-leases")).unwrap());
    store.create_table_if_missing().await.unwrap();
    let table = format!("{name}-sink");
    client
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let sink = Arc::new(DynamoDbSink {
        store: store.clone(),
        client,
        table,
    });
    run(test, store, sink, mode).await
}

fn assert_exactly_once(counts: &BTreeMap<String, usize>) {
    for (record, n) in counts {
        assert_eq!(*n, 1, "{record} has {n} rows");
    }
}

/// The duplicates plain checkpoints leave: the same faults, no transaction.
fn assert_duplicates(store: &str, counts: &BTreeMap<String, usize>) {
    let dups: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "plain checkpoints, {store}: {dups} duplicate rows of {} records",
        counts.len()
    );
    assert!(
        dups > 0,
        "the faults must produce duplicates without transactions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_into_postgres_under_kills_freezes_and_steals() {
    let counts = postgres("eo-pg", Mode::Transactional).await;
    assert_exactly_once(&counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_checkpoints_into_postgres_duplicate_under_the_same_faults() {
    let counts = postgres("plain-pg", Mode::Plain).await;
    assert_duplicates("PostgreSQL", &counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_into_dynamodb_under_kills_freezes_and_steals() {
    let counts = dynamodb("eo-ddb", Mode::Transactional).await;
    assert_exactly_once(&counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_checkpoints_into_dynamodb_duplicate_under_the_same_faults() {
    let counts = dynamodb("plain-ddb", Mode::Plain).await;
    assert_duplicates("DynamoDB", &counts);
}
