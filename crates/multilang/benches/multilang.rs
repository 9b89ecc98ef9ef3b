//! MultiLang daemon benchmark: prints figures, decides nothing.
//!
//! amazon-kclpy's unmodified sample processor (`KCLPY_DIR`: its unpacked source, as
//! `./scripts/test` fetches it) as the child of every shard, fed by the whole worker over the
//! in-memory Kinesis and lease store: 20,000 records of 100 B from 4 shards, once with the
//! default batch size and once with `maxRecords = 100`. Records/s from start to the last record
//! the children acknowledged, the daemon's CPU per 1,000 records (this process: user + system,
//! from /proc/self/stat), and the children's CPU per 1,000 records (reaped children, after the
//! stop).
//!
//! Run: `KCLPY_DIR=… cargo bench -p shardwise-multilang --bench multilang`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use shardwise::kinesis::PollingConfig;
use shardwise::kinesis::testkit::InMemoryKinesis;
use shardwise::lease::{MemoryLeaseStore, ShardId};
use shardwise::{
    Checkpointer, Consumer, ConsumerConfig, InitialPosition, InitializeInput, ProcessorError,
    ProcessorFactory, RecordBatch, Retrieval, ShardProcessor,
};
use shardwise_multilang::{ChildCommand, MultiLangFactory};
use tokio_util::sync::CancellationToken;

/// (own, reaped children's) CPU seconds: fields 14–17 of /proc/self/stat, in clock ticks (100
/// per second on Linux).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<f64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let tick = |i: usize| fields.get(i).copied().unwrap_or(0.0) / 100.0;
    // After the ')' the state is field 3, so field n is at index n - 3.
    (tick(11) + tick(12), tick(13) + tick(14))
}

/// Counts the records whose `process_records` the child acknowledged.
struct Counting {
    inner: MultiLangFactory,
    done: Arc<AtomicUsize>,
}

struct CountingProcessor {
    inner: Box<dyn ShardProcessor>,
    done: Arc<AtomicUsize>,
}

impl ProcessorFactory for Counting {
    fn create(&self, shard_id: &ShardId) -> Box<dyn ShardProcessor> {
        Box::new(CountingProcessor {
            inner: self.inner.create(shard_id),
            done: self.done.clone(),
        })
    }
}

#[async_trait]
impl ShardProcessor for CountingProcessor {
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        self.inner.initialize(input).await
    }
    async fn process_records(
        &mut self,
        batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        let count = batch.records.len();
        self.inner.process_records(batch, checkpointer).await?;
        self.done.fetch_add(count, Ordering::SeqCst);
        Ok(())
    }
    async fn lease_lost(&mut self) -> Result<(), ProcessorError> {
        self.inner.lease_lost().await
    }
    async fn shard_ended(&mut self, checkpointer: &Checkpointer) -> Result<(), ProcessorError> {
        self.inner.shard_ended(checkpointer).await
    }
    async fn shutdown_requested(
        &mut self,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        self.inner.shutdown_requested(checkpointer).await
    }
}

async fn run(kclpy: &str, records: usize, shards: u32, max_records: Option<u32>) {
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("bench", shards);
    let payload = "x".repeat(100);
    for i in 0..records {
        let _ = kinesis.put("bench", &format!("k{i}"), payload.clone());
    }
    // `env` puts the unpacked source on the child's PYTHONPATH, as a user of the sdist would.
    let mut command = ChildCommand::from_executable_name(&format!(
        "env PYTHONPATH={kclpy} python3 {kclpy}/samples/sample_kclpy_app.py"
    ));
    command.working_dir = Some(std::env::temp_dir());
    let done = Arc::new(AtomicUsize::new(0));
    let mut polling = PollingConfig::default();
    if let Some(max) = max_records {
        polling.max_records = max;
    }
    let consumer = Consumer::builder()
        .stream("bench")
        .kinesis(kinesis)
        .lease_store(Arc::new(MemoryLeaseStore::new()))
        .config(ConsumerConfig {
            initial_position: InitialPosition::TrimHorizon,
            retrieval: Retrieval::Polling(polling),
            ..ConsumerConfig::default()
        })
        .processor(Counting {
            inner: MultiLangFactory::new(command),
            done: done.clone(),
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let stop = CancellationToken::new();
    let (cpu_before, children_before) = cpu_seconds();
    let started = Instant::now();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { consumer.run(stop).await }
    });
    while done.load(Ordering::SeqCst) < records {
        if started.elapsed() > Duration::from_secs(600) {
            println!("gave up after 600 s");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let (cpu_after, _) = cpu_seconds();
    stop.cancel();
    let _ = task.await;
    let (_, children_after) = cpu_seconds();
    let thousands = records as f64 / 1000.0;
    println!(
        "{records} records x 100 B, {shards} shards, maxRecords {}: {:.0} records/s, daemon CPU {:.1} ms per 1,000 records, children (Python) CPU {:.1} ms per 1,000 records",
        max_records.map_or("default".to_owned(), |m| m.to_string()),
        records as f64 / elapsed.as_secs_f64(),
        (cpu_after - cpu_before) * 1000.0 / thousands,
        (children_after - children_before) * 1000.0 / thousands,
    );
}

#[tokio::main]
async fn main() {
    let Ok(kclpy) = std::env::var("KCLPY_DIR") else {
        println!("KCLPY_DIR is not set (an unpacked amazon-kclpy source); skipped");
        return;
    };
    run(&kclpy, 20_000, 4, None).await;
    run(&kclpy, 20_000, 4, Some(100)).await;
}
