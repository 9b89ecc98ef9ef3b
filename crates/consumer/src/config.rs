//! The worker's settings, with the KCL's defaults where it has one.

use std::time::{Duration, SystemTime};

use shardwise_kinesis_source::{FanOutConfig, PollingConfig};
use shardwise_metrics::MetricsLevel;

/// Where a shard with no checkpoint yet starts. Children of a shard that split or merged start
/// after their parents are fully processed: at their trim horizon, or with `AtTimestamp` at the
/// timestamp (the KCL's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// Only records that arrive after the worker first reads the shard (the KCL's default).
    #[default]
    Latest,
    /// Records that arrived at or after the timestamp. Shards that closed before the worker
    /// started get leases too, as in the KCL: one that closed after the timestamp has records to
    /// read, and one that closed before it is read once and finished.
    AtTimestamp(SystemTime),
}

/// How records are read from Kinesis. The KCL silently defaults to fan-out (which registers a
/// consumer and is billed per consumer-shard hour); here the choice is explicit, and polling is
/// the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retrieval {
    /// `GetRecords` polling, sharing each shard's 5 calls/s and 2 MiB/s with other consumers.
    Polling(PollingConfig),
    /// Enhanced fan-out: a registered stream consumer (found or registered at start, and waited
    /// for until ACTIVE) and `SubscribeToShard` over HTTP/2, 2 MiB/s per shard for this
    /// application alone.
    FanOut {
        /// The stream consumer's name (default: the application name).
        consumer_name: Option<String>,
        /// Reader settings.
        config: FanOutConfig,
    },
}

impl Default for Retrieval {
    fn default() -> Self {
        Self::Polling(PollingConfig::default())
    }
}

impl Retrieval {
    /// Enhanced fan-out with the default settings and the application name as consumer name.
    pub fn fan_out() -> Self {
        Self::FanOut {
            consumer_name: None,
            config: FanOutConfig::default(),
        }
    }
}

/// What a multi-stream application does with the leases of a stream its tracker no longer
/// names (the KCL's `FormerStreamsLeasesDeletionStrategy`). Either way the stream's shards stop
/// being processed (their leases are released) as soon as the tracker drops it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FormerStreams {
    /// Keep them: the stream resumes from its checkpoints if the tracker names it again (the
    /// KCL's default).
    #[default]
    Keep,
    /// Delete them once the stream has been gone this long (as a worker sees it).
    DeleteAfter(Duration),
    /// Delete those of these streams (`account-id:stream-name:creation-epoch`) once gone this
    /// long; keep the others.
    DeleteListedAfter(Vec<shardwise_lease_core::StreamIdentifier>, Duration),
}

/// How a worker shows the fleet that it is alive, and so keeps its leases.
///
/// Whatever a worker's own mode, it judges a lease by its holder's heartbeat when the holder is
/// a member of the heartbeat membership, and by the lease's own counter otherwise, so workers
/// of both modes can share a table (a fleet can switch modes one worker at a time). Java KCL
/// workers know nothing of heartbeats: in a table they share, every shardwise worker must renew
/// per lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Liveness {
    /// Each held lease is renewed with its own conditional write every third of the lease
    /// duration, and the worker lists every lease every take interval: the KCL's protocol, and
    /// the default, because it is the one Java KCL workers in the same table understand.
    #[default]
    PerLease,
    /// The worker increments one heartbeat of its own every third of the lease duration
    /// instead of renewing each lease, and lists the leases only when the table version, the
    /// set of live members or its own unfinished business says something changed (and at least
    /// every [`full_listing_interval`](ConsumerConfig::full_listing_interval)). Each take
    /// interval costs one read of the membership record. At 10,000 shards and 100 workers this
    /// cuts the store's reads a hundredfold and its writes from 3,000 to 30 a second (README,
    /// "Scale"). Lease counters then move only when a lease changes hands or is checkpointed.
    Heartbeat,
}

/// Settings of a [`Consumer`](crate::Consumer). Build it through
/// [`ConsumerBuilder`](crate::ConsumerBuilder), which validates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Where shards without a checkpoint start.
    pub initial_position: InitialPosition,
    /// How long a lease survives without renewal before other workers may take it (KCL
    /// `failoverTimeMillis`, 10 s). Held leases are renewed every third of it.
    pub lease_duration: Duration,
    /// How often the worker lists leases to take free or expired ones and balance (default
    /// half the lease duration: a dead worker's shards move on within about 1.5 lease durations).
    pub take_interval: Duration,
    /// How often the worker lists shards to create missing leases and clean up finished ones.
    pub shard_sync_interval: Duration,
    /// How often a multi-stream application's [`StreamTracker`](crate::StreamTracker) is asked
    /// which streams to consume (60 s, as the KCL does).
    pub stream_tracker_interval: Duration,
    /// What happens to the leases of a stream the tracker no longer names (kept by default).
    pub former_streams: FormerStreams,
    /// How often a child shard checks whether its parents are fully processed, and a lease
    /// asked for whether its holder has handed it over (500 ms).
    pub parent_poll_interval: Duration,
    /// Most leases one worker holds.
    pub max_leases_per_worker: usize,
    /// Most leases asked for per balancing round (the KCL's "stolen" leases: they are asked
    /// for with a hand-off, not taken). Default: as many as reach the fair share, one from each
    /// worker above it, so that a worker joining a balanced fleet gets its share in a round or
    /// two; the KCL's default is 1.
    pub max_leases_to_steal_at_one_time: usize,
    /// How long a worker asked to hand a lease over lets its processor's `shutdown_requested`
    /// run before it hands the lease over anyway (KCL 3.x `gracefulLeaseHandoffTimeoutMillis`,
    /// 30 s). The worker that asked takes the lease itself if the hand-off has not completed a
    /// lease duration after that, or as soon as the holder stops renewing for a lease duration.
    pub handoff_timeout: Duration,
    /// How the worker shows it is alive: per-lease renewals (default) or one heartbeat.
    pub liveness: Liveness,
    /// With [`Liveness::Heartbeat`]: the longest a worker goes without listing every lease,
    /// however quiet the table (10 minutes). It repairs what a lost version increment (a
    /// worker that died between its write and the increment) would otherwise hide.
    pub full_listing_interval: Duration,
    /// How records are read (polling by default).
    pub retrieval: Retrieval,
    /// How many times a batch is handed to `process_records` before the lease is released.
    pub max_process_attempts: u32,
    /// Pause before the first retry of a failed batch; doubled for each further retry.
    pub process_retry_backoff: Duration,
    /// How long graceful shutdown waits for processors to checkpoint.
    pub shutdown_timeout: Duration,
    /// Bytes of record data all of the worker's readers together may fetch ahead of the
    /// processors (and have in flight); default 256 MiB, sized for a small container. Each
    /// reader is also bounded on its own (`PollingConfig`/`FanOutConfig` prefetch limits); this
    /// bounds the sum, however many shards the worker holds. Metric `PrefetchedBytes`.
    ///
    /// It is shared fairly: each reader holds at most its share (this divided by the shards
    /// held, idle or not), a polling call asks for no more than the share has left, and a reader
    /// whose processor has taken everything always gets its share, so shards whose processors
    /// are stuck never stop the others (the total may then pass this by up to a share per
    /// shard, while others still hold more than their share). A backlogged shard reads at its
    /// 2 MiB/s with a share of one call, about 420 KB (the batch its processor works on no
    /// longer counts): the default suits up to about 600 shards per worker; past that, calls
    /// shrink with the share. Raise it for more shards, if the memory is there.
    pub prefetch_memory: usize,
    /// Prefix of the metric names in Prometheus (`shardwise_records_processed_total`, …).
    pub metrics_prefix: String,
    /// Which labels metrics carry: per shard (`Detailed`), per worker (`Summary`), none.
    pub metrics_level: MetricsLevel,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        let lease_duration = Duration::from_secs(10);
        Self {
            initial_position: InitialPosition::default(),
            lease_duration,
            take_interval: lease_duration / 2,
            shard_sync_interval: Duration::from_secs(60),
            stream_tracker_interval: Duration::from_secs(60),
            former_streams: FormerStreams::default(),
            parent_poll_interval: Duration::from_millis(500),
            max_leases_per_worker: usize::MAX,
            max_leases_to_steal_at_one_time: usize::MAX,
            handoff_timeout: Duration::from_secs(30),
            liveness: Liveness::default(),
            full_listing_interval: Duration::from_secs(600),
            retrieval: Retrieval::default(),
            max_process_attempts: 3,
            process_retry_backoff: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            prefetch_memory: 256 * 1024 * 1024,
            metrics_prefix: shardwise_metrics::DEFAULT_PREFIX.to_owned(),
            metrics_level: MetricsLevel::default(),
        }
    }
}

impl ConsumerConfig {
    /// How often held leases are renewed: a third of the lease duration (the KCL's rule).
    pub fn renew_interval(&self) -> Duration {
        self.lease_duration / 3
    }

    /// How long a lease stays in use without a renewal (or, with heartbeats, a heartbeat):
    /// the lease duration less one renew interval, so that it is given up before any other
    /// worker may judge it expired.
    pub(crate) fn give_up_after(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_interval())
    }

    /// How long one lease-store call of the worker may take before it counts as a retryable
    /// failure: half the renew interval (1.67 s with the default lease duration). A call that
    /// never answers (a half-open connection, an exhausted pool) so costs its lease one missed
    /// renewal at most, and the renewal of every other lease nothing. A write cut off this way
    /// may still have been applied: the lease is read before its next write. Listing every lease
    /// (several pages on a big table, and no lease's turn to write) is bounded by the take
    /// interval instead.
    pub fn store_timeout(&self) -> Duration {
        self.renew_interval() / 2
    }

    /// Checks the settings; the message names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration < Duration::from_millis(300) {
            return Err(format!(
                "lease_duration {:?} is below 300 ms",
                self.lease_duration
            ));
        }
        if self.take_interval.is_zero()
            || self.shard_sync_interval.is_zero()
            || self.parent_poll_interval.is_zero()
            || self.handoff_timeout.is_zero()
            || self.stream_tracker_interval.is_zero()
            || self.full_listing_interval.is_zero()
        {
            return Err(
                "take_interval, shard_sync_interval, stream_tracker_interval, parent_poll_interval, handoff_timeout and full_listing_interval must be above zero"
                    .into(),
            );
        }
        if self.max_leases_per_worker == 0 {
            return Err("max_leases_per_worker must be at least 1".into());
        }
        if self.max_leases_to_steal_at_one_time == 0 {
            return Err("max_leases_to_steal_at_one_time must be at least 1".into());
        }
        if self.prefetch_memory == 0 {
            return Err("prefetch_memory must be above zero".into());
        }
        if self.max_process_attempts == 0 {
            return Err("max_process_attempts must be at least 1".into());
        }
        shardwise_metrics::MetricNames::new(&self.metrics_prefix)
            .map_err(|e| format!("metrics_prefix: {e}"))?;
        match &self.retrieval {
            Retrieval::Polling(polling) => polling.validate().map_err(|e| format!("polling: {e}")),
            Retrieval::FanOut {
                consumer_name,
                config,
            } => {
                if consumer_name
                    .as_deref()
                    .is_some_and(|n| n.is_empty() || n.len() > 128)
                {
                    return Err("fan-out consumer_name must be 1 to 128 characters".into());
                }
                config.validate().map_err(|e| format!("fan-out: {e}"))
            }
        }
    }
}
