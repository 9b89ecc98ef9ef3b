//! What the worker, its renewer and every pipeline share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use shardwise_kinesis_source::{KinesisApi, MemoryBudget};
use shardwise_lease_core::{LeaseStore, WorkerId};
use tokio::time::Instant;

use crate::config::ConsumerConfig;
use crate::processor::ProcessorFactory;

/// One worker's settings and connections, shared read-only by its tasks.
pub(crate) struct Context {
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) kinesis: Arc<dyn KinesisApi>,
    /// The stream, or the streams of a multi-stream application.
    pub(crate) streams: crate::streams::Streams,
    pub(crate) worker_id: WorkerId,
    pub(crate) config: ConsumerConfig,
    pub(crate) factory: Arc<dyn ProcessorFactory>,
    pub(crate) metric_names: shardwise_metrics::MetricNames,
    /// The worker's metrics, shared by its tasks.
    pub(crate) worker_metrics: shardwise_metrics::WorkerMetrics,
    /// The prefetch memory all readers share.
    pub(crate) prefetch: MemoryBudget,
    pub(crate) application: String,
    /// This worker's heartbeat and version duties.
    pub(crate) beat: Beat,
}

/// This worker's heartbeat (written by the renewer) and whether its writes move the table
/// version.
#[derive(Debug, Default)]
pub(crate) struct Beat {
    /// The counter of the last heartbeat that succeeded, and when it was sent; `None` before
    /// the first, and after a heartbeat lost its race (the next one starts afresh).
    last: Mutex<Option<(u64, Instant)>>,
    /// How many heartbeats failed in a way that may have applied them since the last one that
    /// succeeded: a lost race after them may be that many steps of our own.
    in_doubt: AtomicU64,
    /// Whether the table has a membership (this worker heartbeats, or it saw members): the
    /// worker's writes that others must act on then move the table version.
    bumps: AtomicBool,
    /// A version increment failed: tried again at the next take round.
    owed: AtomicBool,
    /// After a heartbeat lost its race: the heartbeat of this worker id as last read (`None`
    /// before the first read), and since when. The other process keeps the id while it moves.
    yielded: Mutex<Option<(Option<u64>, Instant)>>,
    /// With heartbeats, only the live member with the lowest worker id syncs shards
    /// periodically (`false` in the others): each sync lists every lease.
    not_syncing: AtomicBool,
}

impl Beat {
    /// The last heartbeat that succeeded: its counter, and when it was sent.
    pub(crate) fn last(&self) -> Option<(u64, Instant)> {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn succeeded(&self, heartbeat: u64, sent: Instant) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((heartbeat, sent));
        self.in_doubt.store(0, Ordering::SeqCst);
    }

    /// The heartbeat lost its race: this process yields the worker id to the other one.
    pub(crate) fn lost(&self, now: Instant) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.in_doubt.store(0, Ordering::SeqCst);
        *self.yielded.lock().unwrap_or_else(PoisonError::into_inner) = Some((None, now));
    }

    /// While yielded: notes the id's heartbeat as read at `now` (`None`: not a member), and
    /// says whether this process may take the id back: the other process has left, or its
    /// heartbeat stood still for `lease_duration`. Always `true` when not yielded.
    pub(crate) fn may_rejoin(
        &self,
        read: Option<u64>,
        now: Instant,
        lease_duration: std::time::Duration,
    ) -> bool {
        let mut yielded = self.yielded.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((seen, since)) = *yielded else {
            return true;
        };
        if read.is_none()
            || (seen == read && now.saturating_duration_since(since) >= lease_duration)
        {
            *yielded = None;
            return true;
        }
        if seen != read {
            *yielded = Some((read, now));
        }
        false
    }

    pub(crate) fn has_yielded(&self) -> bool {
        self.yielded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    pub(crate) fn set_in_doubt(&self) {
        self.in_doubt.fetch_add(1, Ordering::SeqCst);
    }

    /// How many heartbeats may have been applied without an answer.
    pub(crate) fn in_doubt(&self) -> u64 {
        self.in_doubt.load(Ordering::SeqCst)
    }

    pub(crate) fn bumps(&self) -> bool {
        self.bumps.load(Ordering::SeqCst)
    }

    pub(crate) fn set_bumps(&self, bumps: bool) {
        self.bumps.store(bumps, Ordering::SeqCst);
    }

    pub(crate) fn owed(&self) -> bool {
        self.owed.load(Ordering::SeqCst)
    }

    pub(crate) fn syncs_shards(&self) -> bool {
        !self.not_syncing.load(Ordering::SeqCst)
    }

    pub(crate) fn set_syncs_shards(&self, syncs: bool) {
        self.not_syncing.store(!syncs, Ordering::SeqCst);
    }
}

impl Context {
    /// Moves the table version after writes other workers must act on, when the table has a
    /// membership. A failure is tried again at the next take round.
    pub(crate) async fn bump_version(&self) {
        if !self.beat.bumps() {
            return;
        }
        match self.store.bump_version().await {
            Ok(_) => self.beat.owed.store(false, Ordering::SeqCst),
            Err(e) => {
                self.beat.owed.store(true, Ordering::SeqCst);
                tracing::warn!(error = %e, "moving the table version failed; trying again at the next take round");
            }
        }
    }
}

/// Milliseconds since `since`, for the timing metrics.
pub(crate) fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1_000.0
}
