//! Multi-stream helpers: a tracker the test changes while workers run, and workers whose
//! processors record (stream, shard, data) of every record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardwise::kinesis::KinesisApi;
use shardwise::lease::LeaseStore;
use shardwise::{
    Consumer, ConsumerConfig, RecordBatch, StreamConfig, StreamTracker, TrackerError, processor_fn,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// (stream name, shard, data) of every record processed, in order.
pub type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A tracker whose list the test changes while the workers run.
#[derive(Clone, Default)]
pub struct Changing(pub Arc<Mutex<Vec<StreamConfig>>>);

impl Changing {
    pub fn of(streams: &[&str], position: shardwise::InitialPosition) -> Self {
        let tracker = Self::default();
        for stream in streams {
            tracker.add(stream, position);
        }
        tracker
    }

    pub fn add(&self, stream: &str, position: shardwise::InitialPosition) {
        self.0
            .lock()
            .unwrap()
            .push(StreamConfig::new(stream, position));
    }
}

#[async_trait::async_trait]
impl StreamTracker for Changing {
    async fn streams(&self, _kinesis: &dyn KinesisApi) -> Result<Vec<StreamConfig>, TrackerError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// Starts a multi-stream worker; stop it with the token and await the task.
pub fn start(
    name: &str,
    kinesis: Arc<dyn KinesisApi>,
    store: Arc<dyn LeaseStore>,
    tracker: Changing,
    seen: &Seen,
    lease: Duration,
    tracker_interval: Duration,
) -> (CancellationToken, JoinHandle<()>) {
    let config = ConsumerConfig {
        lease_duration: lease,
        take_interval: lease / 2,
        shard_sync_interval: lease / 2,
        stream_tracker_interval: tracker_interval,
        ..ConsumerConfig::default()
    };
    start_with(name, kinesis, store, tracker, seen, config)
}

/// [`start`] with a whole configuration.
pub fn start_with(
    name: &str,
    kinesis: Arc<dyn KinesisApi>,
    store: Arc<dyn LeaseStore>,
    tracker: impl StreamTracker,
    seen: &Seen,
    config: ConsumerConfig,
) -> (CancellationToken, JoinHandle<()>) {
    let seen = seen.clone();
    let consumer = Consumer::builder()
        .streams(tracker)
        .kinesis(kinesis)
        .lease_store(store)
        .worker_id(name)
        .config(config)
        .processor(processor_fn(move |batch: RecordBatch| {
            let seen = seen.clone();
            async move {
                let stream = batch.stream.as_ref().map(|s| s.name().to_owned());
                let mut seen = seen.lock().unwrap();
                for record in batch.records.iter() {
                    seen.push((
                        stream.clone().unwrap_or_default(),
                        batch.shard_id.to_string(),
                        String::from_utf8_lossy(&record.data).into_owned(),
                    ));
                }
                Ok(())
            }
        }))
        .build()
        .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { consumer.run(stop).await.unwrap() }
    });
    (stop, task)
}

/// How many times each (stream, data) was processed.
pub fn counts(seen: &Seen) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for (stream, _, data) in seen.lock().unwrap().iter() {
        *counts.entry((stream.clone(), data.clone())).or_default() += 1;
    }
    counts
}
