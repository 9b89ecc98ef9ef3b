//! Scale figures: what a fleet costs its lease store in steady state, and how fast it recovers
//! a killed worker's shards and balances after a join, for a number of shards and workers,
//! under the paused clock on the in-memory Kinesis and lease store. Store use is counted as a
//! DynamoDB table would bill it: every lease row a listing returns is a row read, every lease
//! write (a renewal of many leases is one write each) is a write; a read of the membership
//! record is one row read, a heartbeat or version increment one write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use shardwise::kinesis::testkit::InMemoryKinesis;
use shardwise::lease::{
    Call, Layer, Layered, LeaseKey, LeaseStore, MemoryLeaseStore, Operation, Race, StoreError,
    WorkerId,
};
use shardwise::{Consumer, ConsumerConfig, InitialPosition, Liveness, RecordBatch, processor_fn};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Calls, rows read and writes, since the last reset.
#[derive(Debug, Default)]
struct Counts {
    calls: AtomicU64,
    rows_read: AtomicU64,
    writes: AtomicU64,
}

impl Counts {
    fn read(&self, calls: u64, rows: u64) {
        self.calls.fetch_add(calls, Ordering::Relaxed);
        self.rows_read.fetch_add(rows, Ordering::Relaxed);
    }

    fn write(&self, count: u64) {
        self.calls.fetch_add(count, Ordering::Relaxed);
        self.writes.fetch_add(count, Ordering::Relaxed);
    }

    fn take(&self) -> (u64, u64, u64) {
        (
            self.calls.swap(0, Ordering::Relaxed),
            self.rows_read.swap(0, Ordering::Relaxed),
            self.writes.swap(0, Ordering::Relaxed),
        )
    }
}

/// Rows a DynamoDB `Scan` page holds (1 MB of lease rows of about 1 KB).
const ROWS_PER_PAGE: u64 = 1_000;

/// Counts the calls on the in-memory store, as a [`Layer`] (a listing's rows are the table's
/// size when it runs: the memory store answers without yielding).
#[derive(Debug)]
struct Counter {
    store: Arc<MemoryLeaseStore>,
    counts: Arc<Counts>,
}

#[async_trait]
impl Layer for Counter {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        operation: Operation,
        _key: Option<&'a LeaseKey>,
        call: Call<'a, T>,
    ) -> Result<T, StoreError> {
        match operation {
            Operation::List => {
                let rows = self.store.lease_count() as u64;
                self.counts.read(rows.div_ceil(ROWS_PER_PAGE).max(1), rows);
            }
            Operation::Get | Operation::Membership => self.counts.read(1, 1),
            Operation::CreateTable => self.counts.read(1, 0),
            _ => self.counts.write(1),
        }
        call.await
    }

    async fn renew_many(
        &self,
        inner: &dyn LeaseStore,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        self.counts.write(leases.len() as u64);
        inner.renew_many(owner, leases).await
    }
}

/// One row of the scale table.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleFigures {
    /// Shards (one stream).
    pub shards: u32,
    /// Workers.
    pub workers: usize,
    /// Lease rows read per second, fleet-wide, in steady state.
    pub rows_read_per_second: f64,
    /// Lease writes per second, fleet-wide, in steady state.
    pub writes_per_second: f64,
    /// Store calls per second per worker, in steady state (a listing of `n` rows counts
    /// `n / 1,000` calls, as DynamoDB's 1 MB scan pages would).
    pub calls_per_worker_second: f64,
    /// From a worker's kill until every one of its leases is held by another worker.
    pub recovery: Duration,
    /// From a new worker's start until the fleet is balanced again; `None` when it took more
    /// than an hour (the measurement stops there).
    pub balance_after_join: Option<Duration>,
}

/// The KCL 2.x model beside a row: each worker scans the whole table every 20 s and renews
/// each of its leases every 3.3 s (a third of 10 s); a dead worker's leases expire after 10 s
/// and are found at the next scan; a joining worker steals one lease per scan.
pub fn kcl2_model(shards: u32, workers: usize) -> ScaleFigures {
    let (s, w) = (f64::from(shards), workers as f64);
    let scan = 20.0;
    let renew = 10.0 / 3.0;
    let pages = (u64::from(shards).div_ceil(ROWS_PER_PAGE)) as f64;
    let share = (s / (w + 1.0)).floor();
    ScaleFigures {
        shards,
        workers,
        rows_read_per_second: w * s / scan,
        writes_per_second: s / renew,
        calls_per_worker_second: pages / scan + (s / w) / renew,
        recovery: Duration::from_secs_f64(10.0 + scan),
        balance_after_join: Some(Duration::from_secs_f64(share * scan)),
    }
}

/// Measures a fleet of `workers` workers over one stream of `shards` idle shards, leases of
/// 10 s, `liveness`, the consumer's defaults otherwise. Steady state is measured over a minute
/// with per-lease renewals, and over 660 s with heartbeats, so that every worker's full listing
/// (every 540 to 600 s) is in the window.
pub fn measure(shards: u32, workers: usize, liveness: Liveness) -> Result<ScaleFigures, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(fleet(shards, workers, liveness))
}

struct Fleet {
    kinesis: Arc<InMemoryKinesis>,
    store: Arc<MemoryLeaseStore>,
    counts: Arc<Counts>,
    config: ConsumerConfig,
}

impl Fleet {
    fn start(&self, id: &str) -> Result<(CancellationToken, JoinHandle<()>), String> {
        let consumer = Consumer::builder()
            .stream("scale")
            .kinesis(self.kinesis.clone())
            .lease_store(Arc::new(Layered::wrap(
                self.store.clone(),
                Counter {
                    store: self.store.clone(),
                    counts: self.counts.clone(),
                },
            )))
            .worker_id(id)
            .config(self.config.clone())
            .processor(processor_fn(|_batch: RecordBatch| async { Ok(()) }))
            .build()
            .map_err(|e| e.to_string())?;
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let _ = consumer.run(stop).await;
            }
        });
        Ok((stop, task))
    }

    /// Leases held per owner (uncounted).
    async fn holdings(&self) -> BTreeMap<String, usize> {
        let mut held = BTreeMap::new();
        if let Ok(listing) = self.store.list().await {
            for lease in listing.leases {
                if let Some(owner) = lease.owner {
                    *held.entry(owner.to_string()).or_insert(0) += 1;
                }
            }
        }
        held
    }

    /// Waits until `check` holds on the holdings, checking every second of virtual time, at
    /// most `limit`; how long it took.
    async fn until(
        &self,
        limit: Duration,
        check: impl Fn(&BTreeMap<String, usize>) -> bool,
    ) -> Result<Duration, String> {
        let started = tokio::time::Instant::now();
        loop {
            if check(&self.holdings().await) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                return Err(format!("not reached within {limit:?}"));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Every lease held, by exactly `workers` workers, each holding its fair share.
fn balanced(held: &BTreeMap<String, usize>, shards: usize, workers: usize) -> bool {
    let fair = shards.div_ceil(workers);
    held.len() == workers
        && held.values().sum::<usize>() == shards
        && held.values().all(|&n| n + 1 >= fair && n <= fair)
}

async fn fleet(shards: u32, workers: usize, liveness: Liveness) -> Result<ScaleFigures, String> {
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("scale", shards);
    let fleet = Fleet {
        kinesis,
        store: Arc::new(MemoryLeaseStore::new()),
        counts: Arc::new(Counts::default()),
        config: ConsumerConfig {
            initial_position: InitialPosition::TrimHorizon,
            liveness,
            ..ConsumerConfig::default()
        },
    };
    let total = shards as usize;
    let mut running = Vec::new();
    for i in 0..workers {
        running.push(fleet.start(&format!("w{i:03}"))?);
    }
    let limit = Duration::from_secs(3_600);
    fleet
        .until(limit, |h| balanced(h, total, workers))
        .await
        .map_err(|e| format!("first balance: {e}"))?;

    // Steady state.
    let window = match liveness {
        Liveness::PerLease => Duration::from_secs(60),
        Liveness::Heartbeat => fleet.config.full_listing_interval * 3,
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    let _ = fleet.counts.take();
    tokio::time::sleep(window).await;
    let (calls, rows, writes) = fleet.counts.take();
    let seconds = window.as_secs_f64();

    // A worker killed: its leases expire and move.
    let (_, victim) = running.remove(0);
    victim.abort();
    let recovery = fleet
        .until(limit, |h| {
            !h.contains_key("w000") && h.values().sum::<usize>() == total
        })
        .await
        .map_err(|e| format!("recovery: {e}"))?;
    fleet
        .until(limit, |h| balanced(h, total, workers - 1))
        .await
        .map_err(|e| format!("balance after the kill: {e}"))?;

    // A worker joins.
    running.push(fleet.start("joiner")?);
    let balance_after_join = fleet
        .until(limit, |h| balanced(h, total, workers))
        .await
        .ok();
    for (stop, task) in running {
        stop.cancel();
        let _ = task.await;
    }
    Ok(ScaleFigures {
        shards,
        workers,
        rows_read_per_second: rows as f64 / seconds,
        writes_per_second: writes as f64 / seconds,
        calls_per_worker_second: calls as f64 / seconds / workers as f64,
        recovery,
        balance_after_join,
    })
}

/// Resident memory of this process (`VmRSS`, `VmHWM` from /proc/self/status, in bytes) after
/// one worker has held `shards` idle shards for a minute of virtual time: the worker's memory,
/// plus the in-memory Kinesis and store, which hold next to nothing for idle shards.
pub fn idle_worker_memory(shards: u32) -> Result<(u64, u64), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let kinesis = Arc::new(InMemoryKinesis::new());
        kinesis.create_stream("scale", shards);
        let fleet = Fleet {
            kinesis,
            store: Arc::new(MemoryLeaseStore::new()),
            counts: Arc::new(Counts::default()),
            config: ConsumerConfig {
                initial_position: InitialPosition::TrimHorizon,
                ..ConsumerConfig::default()
            },
        };
        let (stop, task) = fleet.start("w000")?;
        fleet
            .until(Duration::from_secs(600), |h| {
                h.values().sum::<usize>() == shards as usize
            })
            .await?;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let memory = (status_bytes("VmRSS:"), status_bytes("VmHWM:"));
        stop.cancel();
        let _ = task.await;
        Ok(memory)
    })
}

/// A `kB` line of /proc/self/status, in bytes (0 when absent).
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
