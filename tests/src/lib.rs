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
        let consumer = Consumer::builder()
            .stream(self.driver.stream())
            .kinesis(self.driver.api())
            .lease_store(self.store.clone())
            .worker_id(name)
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
