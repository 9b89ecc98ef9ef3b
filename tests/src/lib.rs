//! The end-to-end harness: a fleet of workers on a stream (in memory or on a real emulator) with
//! a lease store (in memory or a real server), and scenarios written once for both.

// Test code: a failed expectation is a panic with a message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

pub mod drivers;
pub mod multi;
pub mod recorder;
pub mod scenarios;
pub mod stores;

pub use drivers::{Emulator, Memory, StreamDriver};
pub use recorder::{Behaviour, Recorder, factory, wait_for};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shardwise::lease::LeaseStore;
use shardwise::{Consumer, ConsumerConfig, InitialPosition};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Workers of one application on one stream.
pub struct Fleet {
    pub driver: Arc<dyn StreamDriver>,
    pub store: Arc<dyn LeaseStore>,
    pub recorder: Arc<Recorder>,
    pub config: ConsumerConfig,
    /// How long waits may last before a scenario fails.
    pub patience: Duration,
    workers: BTreeMap<String, (CancellationToken, JoinHandle<()>)>,
}

impl Fleet {
    pub fn new(
        driver: Arc<dyn StreamDriver>,
        store: Arc<dyn LeaseStore>,
        lease_duration: Duration,
        patience: Duration,
    ) -> Self {
        let config = ConsumerConfig {
            initial_position: InitialPosition::TrimHorizon,
            lease_duration,
            take_interval: lease_duration / 2,
            shard_sync_interval: lease_duration / 2,
            parent_poll_interval: Duration::from_millis(200),
            ..ConsumerConfig::default()
        };
        Self {
            driver,
            store,
            recorder: Arc::new(Recorder::default()),
            config,
            patience,
            workers: BTreeMap::new(),
        }
    }

    pub fn lease_duration(&self) -> Duration {
        self.config.lease_duration
    }

    pub fn start(&mut self, name: &str, behaviour: Behaviour) {
        self.start_as(name, name, behaviour);
    }

    /// Starts a process known to the fleet (and the recorder) as `name`, with worker id `id`:
    /// two processes may share an id.
    pub fn start_as(&mut self, name: &str, id: &str, behaviour: Behaviour) {
        let consumer = Consumer::builder()
            .stream(self.driver.stream())
            .kinesis(self.driver.api())
            .lease_store(self.store.clone())
            .worker_id(id)
            .config(self.config.clone())
            .processor(factory(name, &self.recorder, behaviour))
            .build()
            .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { consumer.run(stop).await.unwrap() }
        });
        self.workers.insert(name.to_owned(), (stop, task));
    }

    /// Stops a worker gracefully and waits for it.
    pub async fn stop(&mut self, name: &str) {
        let (stop, task) = self.workers.remove(name).unwrap();
        stop.cancel();
        task.await.unwrap();
    }

    /// Aborts a worker: no shutdown, no release (as if its process were killed).
    pub fn kill(&mut self, name: &str) {
        let (_, task) = self.workers.remove(name).unwrap();
        task.abort();
    }

    pub async fn stop_all(&mut self) {
        let names: Vec<String> = self.workers.keys().cloned().collect();
        for name in names {
            self.stop(&name).await;
        }
    }

    /// Waits until every record `record-0` … `record-{n-1}` was processed at least once.
    pub async fn wait_records(&self, n: usize) {
        let recorder = self.recorder.clone();
        wait_for(&format!("{n} records"), self.patience, || {
            let r = recorder.clone();
            async move { r.coverage(n).0 == n }
        })
        .await;
    }

    /// Waits until the leases are held as `check` wants.
    pub async fn wait_holdings(
        &self,
        what: &str,
        check: impl Fn(&BTreeMap<String, usize>) -> bool,
    ) {
        let store = self.store.clone();
        let check = &check;
        wait_for(what, self.patience, || {
            let store = store.clone();
            async move { check(&recorder::holdings(store.as_ref()).await) }
        })
        .await;
    }
}

/// Wraps a fleet's store to note when each lease hand-off was asked for.
#[derive(Debug, Default, Clone)]
pub struct HandoffClock {
    pub requests: Arc<std::sync::Mutex<Vec<(String, tokio::time::Instant)>>>,
}

#[async_trait::async_trait]
impl shardwise::lease::Layer for HandoffClock {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        operation: shardwise::lease::Operation,
        key: Option<&'a shardwise::lease::LeaseKey>,
        call: shardwise::lease::Call<'a, T>,
    ) -> Result<T, shardwise::lease::StoreError> {
        if let (shardwise::lease::Operation::RequestHandoff, Some(key)) = (operation, key) {
            let now = tokio::time::Instant::now();
            self.requests.lock().unwrap().push((key.to_string(), now));
        }
        call.await
    }
}

impl HandoffClock {
    /// Puts the clock around `fleet`'s store (before any worker starts).
    pub fn install(fleet: &mut Fleet) -> Self {
        let clock = Self::default();
        fleet.store = Arc::new(shardwise::lease::Layered::wrap(
            fleet.store.clone(),
            clock.clone(),
        ));
        clock
    }

    /// For every hand-off asked for: the time until the shard's next record was processed by
    /// another worker than the one processing it before the request. Sorted.
    pub fn latencies(&self, recorder: &Recorder) -> Vec<Duration> {
        let seen = recorder.seen.lock().unwrap();
        let mut out = Vec::new();
        for (shard, asked) in self.requests.lock().unwrap().iter() {
            let before = seen
                .iter()
                .rev()
                .find(|s| &s.shard == shard && s.at <= *asked)
                .map(|s| s.worker.clone());
            if let Some(first) = seen
                .iter()
                .find(|s| &s.shard == shard && s.at > *asked && Some(&s.worker) != before.as_ref())
            {
                out.push(first.at - *asked);
            }
        }
        out.sort();
        out
    }
}

/// Puts records `from..` into `fleet`'s stream, `batch` at a time every `every`, until `stop`
/// fires; the task answers the end of the range put.
pub fn trickle(
    fleet: &Fleet,
    from: usize,
    batch: usize,
    every: Duration,
    keys: usize,
    stop: CancellationToken,
) -> JoinHandle<usize> {
    let driver = fleet.driver.clone();
    tokio::spawn(async move {
        let mut next = from;
        while !stop.is_cancelled() {
            driver.put(next..next + batch, keys).await;
            next += batch;
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(every) => {}
            }
        }
        next
    })
}
