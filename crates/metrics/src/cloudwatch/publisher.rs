//! The publishing side: a collector task that swaps aggregates out every interval and queues
//! requests without waiting, and a sender task that sends them one at a time. The queue between
//! them is the bounded buffer: when CloudWatch is slow or failing it fills and new requests are
//! dropped (and counted), while recording goes on untouched.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::primitives::DateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::batch::{self, Datum};
use super::registry::Registry;
use super::stats::{CloudWatchStats, Counters};
use crate::Error;

pub(crate) enum Command {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

enum Job {
    Put(DateTime, Vec<Datum>),
    /// Answered once every job queued before it was attempted.
    Barrier(oneshot::Sender<()>),
}

pub(crate) struct Settings {
    pub(crate) namespace: String,
    pub(crate) flush_interval: Duration,
    pub(crate) storage_resolution: i32,
    pub(crate) request_timeout: Duration,
    pub(crate) max_buffered_requests: usize,
}

/// Controls a running CloudWatch exporter: flush now, read its counters, shut it down.
///
/// Dropping the handle stops the exporter after a last, best-effort publication. Prefer
/// [`shutdown`](Self::shutdown), bounded by a timeout of your choice.
#[derive(Debug)]
pub struct CloudWatchHandle {
    commands: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    collector: JoinHandle<()>,
    sender: JoinHandle<()>,
}

impl CloudWatchHandle {
    /// The exporter's counters: sent, failed and dropped data.
    pub fn stats(&self) -> CloudWatchStats {
        self.counters.snapshot()
    }

    /// Publishes what was recorded until now and waits until every request queued so far has
    /// been sent or has failed. Waits as long as CloudWatch takes (each request is bounded by
    /// the request timeout); wrap it in [`tokio::time::timeout`] to bound the whole.
    pub async fn flush(&self) -> Result<(), Error> {
        let (reply, done) = oneshot::channel();
        self.commands
            .send(Command::Flush(reply))
            .await
            .map_err(|_| Error::ExporterStopped)?;
        done.await.map_err(|_| Error::ExporterStopped)
    }

    /// Publishes what is left, waits for it like [`flush`](Self::flush), stops the exporter and
    /// returns its final counters. The recorder stays installed and keeps aggregating, but
    /// nothing is published any more.
    pub async fn shutdown(self) -> Result<CloudWatchStats, Error> {
        let (reply, done) = oneshot::channel();
        self.commands
            .send(Command::Shutdown(reply))
            .await
            .map_err(|_| Error::ExporterStopped)?;
        done.await.map_err(|_| Error::ExporterStopped)?;
        // Both tasks end by themselves now; a panic in either has already lost its data.
        let _ = self.collector.await;
        let _ = self.sender.await;
        Ok(self.counters.snapshot())
    }
}

pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    client: Client,
    registry: Arc<Registry>,
    counters: Arc<Counters>,
    settings: Settings,
) -> CloudWatchHandle {
    let (commands, command_rx) = mpsc::channel(4);
    let (jobs, job_rx) = mpsc::channel(settings.max_buffered_requests);
    let settings = Arc::new(settings);
    let collector = runtime.spawn(collect_loop(
        registry,
        Arc::clone(&counters),
        Arc::clone(&settings),
        command_rx,
        jobs,
    ));
    let sender = runtime.spawn(send_loop(client, Arc::clone(&counters), settings, job_rx));
    CloudWatchHandle {
        commands,
        counters,
        collector,
        sender,
    }
}

fn requests(registry: &Registry, counters: &Counters) -> Vec<Job> {
    let timestamp = DateTime::from(SystemTime::now());
    let data = registry.collect();
    counters
        .collected_data
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    batch::requests(data)
        .into_iter()
        .map(|data| Job::Put(timestamp, data))
        .collect()
}

/// Queues without waiting: a full queue drops the request.
fn enqueue_or_drop(jobs: &mpsc::Sender<Job>, counters: &Counters, registry: &Registry) {
    for job in requests(registry, counters) {
        if let Err(e) = jobs.try_send(job) {
            let job = match e {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            if let Job::Put(_, data) = job {
                counters
                    .dropped_data
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Queues and waits for room, then for everything queued to be attempted.
async fn enqueue_and_wait(
    jobs: &mpsc::Sender<Job>,
    counters: &Counters,
    registry: &Registry,
    reply: oneshot::Sender<()>,
) {
    for job in requests(registry, counters) {
        if jobs.send(job).await.is_err() {
            return;
        }
    }
    let _ = jobs.send(Job::Barrier(reply)).await;
}

async fn collect_loop(
    registry: Arc<Registry>,
    counters: Arc<Counters>,
    settings: Arc<Settings>,
    mut commands: mpsc::Receiver<Command>,
    jobs: mpsc::Sender<Job>,
) {
    let mut ticker = tokio::time::interval_at(
        Instant::now() + settings.flush_interval,
        settings.flush_interval,
    );
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => enqueue_or_drop(&jobs, &counters, &registry),
            command = commands.recv() => match command {
                Some(Command::Flush(reply)) => enqueue_and_wait(&jobs, &counters, &registry, reply).await,
                Some(Command::Shutdown(reply)) => {
                    enqueue_and_wait(&jobs, &counters, &registry, reply).await;
                    return;
                }
                // The handle was dropped: one last publication, without waiting for it.
                None => {
                    enqueue_or_drop(&jobs, &counters, &registry);
                    return;
                }
            },
        }
    }
}

async fn send_loop(
    client: Client,
    counters: Arc<Counters>,
    settings: Arc<Settings>,
    mut jobs: mpsc::Receiver<Job>,
) {
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Barrier(reply) => {
                let _ = reply.send(());
            }
            Job::Put(timestamp, data) => {
                let items = data
                    .iter()
                    .map(|d| batch::to_sdk(d, timestamp, settings.storage_resolution))
                    .collect();
                let send = client
                    .put_metric_data()
                    .namespace(&settings.namespace)
                    .set_metric_data(Some(items))
                    .send();
                let n = data.len() as u64;
                match tokio::time::timeout(settings.request_timeout, send).await {
                    Ok(Ok(_)) => {
                        counters.sent_requests.fetch_add(1, Ordering::Relaxed);
                        counters.sent_data.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        counters.failed_requests.fetch_add(1, Ordering::Relaxed);
                        counters.failed_data.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!(
                            namespace = %settings.namespace,
                            data = n,
                            error = %DisplayErrorContext(&e),
                            "PutMetricData failed; these data are lost"
                        );
                    }
                    Err(_) => {
                        counters.failed_requests.fetch_add(1, Ordering::Relaxed);
                        counters.failed_data.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!(
                            namespace = %settings.namespace,
                            data = n,
                            timeout = ?settings.request_timeout,
                            "PutMetricData timed out; these data are lost"
                        );
                    }
                }
            }
        }
    }
}
