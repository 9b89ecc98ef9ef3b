//! The streams a worker consumes: one (a single-stream application, whose lease keys are shard
//! ids), or several found by a [`StreamTracker`] (a multi-stream application, whose lease keys
//! are the KCL's `account-id:stream-name:creation-epoch:shard-id`).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use shardwise_kinesis_source::{KinesisApi, KinesisErrorKind, StreamId};
use shardwise_lease_core::{LeaseKey, ShardId, StreamIdentifier};
use tracing::{info, warn};

use crate::config::{ConsumerConfig, InitialPosition, Retrieval};

/// A stream a multi-stream application consumes, as its [`StreamTracker`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// The stream's name or ARN.
    pub stream: String,
    /// Where its shards without a checkpoint start.
    pub initial_position: InitialPosition,
}

impl StreamConfig {
    /// `stream` (a name or an ARN), starting at `initial_position`.
    pub fn new(stream: impl Into<String>, initial_position: InitialPosition) -> Self {
        Self {
            stream: stream.into(),
            initial_position,
        }
    }
}

/// Why a tracker could not say which streams to consume; the worker keeps the streams it has
/// and asks again at the next interval.
pub type TrackerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Says which streams a multi-stream application consumes. The worker asks at start and then
/// every [`ConsumerConfig::stream_tracker_interval`] (60 s by default, as the KCL does): a
/// stream that appears gets leases within one interval; leases of a stream that is no longer
/// named are kept, and not processed, until it is named again.
///
/// A fixed list is a tracker (`Vec<StreamConfig>`); an application that finds its streams
/// another way implements this trait.
///
/// ```
/// use shardwise::{InitialPosition, StreamConfig, StreamTracker, TrackerError};
/// use shardwise::kinesis::KinesisApi;
///
/// /// The streams named in a file, one per line, read again at every interval.
/// struct FromFile(std::path::PathBuf);
///
/// #[async_trait::async_trait]
/// impl StreamTracker for FromFile {
///     async fn streams(&self, _kinesis: &dyn KinesisApi) -> Result<Vec<StreamConfig>, TrackerError> {
///         let text = std::fs::read_to_string(&self.0)?;
///         Ok(text
///             .lines()
///             .filter(|l| !l.trim().is_empty())
///             .map(|l| StreamConfig::new(l.trim(), InitialPosition::TrimHorizon))
///             .collect())
///     }
/// }
/// ```
#[async_trait]
pub trait StreamTracker: Send + Sync + 'static {
    /// The streams to consume now.
    async fn streams(&self, kinesis: &dyn KinesisApi) -> Result<Vec<StreamConfig>, TrackerError>;
}

#[async_trait]
impl StreamTracker for Vec<StreamConfig> {
    async fn streams(&self, _kinesis: &dyn KinesisApi) -> Result<Vec<StreamConfig>, TrackerError> {
        Ok(self.clone())
    }
}

/// Every stream whose name starts with `prefix` and that carries every tag in `tags`, found by
/// `ListStreams` (and `ListTagsForStream` for each stream the prefix matches, when tags are
/// asked for) each time the worker asks: a stream created or tagged to match joins the
/// application within one tracker interval, and one deleted or untagged leaves it.
///
/// ```
/// use shardwise::{InitialPosition, StreamsByPrefix};
///
/// // Every stream named `orders-…` and tagged `team=payments`.
/// let tracker = StreamsByPrefix::new("orders-", InitialPosition::TrimHorizon)
///     .with_tag("team", Some("payments"));
/// assert_eq!(tracker.tags.len(), 1);
/// ```
///
/// `ListTagsForStream` allows 5 calls a second per account on the service; a tracker that
/// matches many streams by prefix and tag is slower to answer, and one that is throttled
/// leaves the streams as they are until the next interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsByPrefix {
    /// The start of the names to consume (an empty prefix takes every stream).
    pub prefix: String,
    /// Tags a stream must carry: key, and the value when it matters (`None`: any value).
    pub tags: BTreeMap<String, Option<String>>,
    /// Where each stream's shards without a checkpoint start.
    pub initial_position: InitialPosition,
}

impl StreamsByPrefix {
    /// Every stream whose name starts with `prefix`, starting at `initial_position`.
    pub fn new(prefix: impl Into<String>, initial_position: InitialPosition) -> Self {
        Self {
            prefix: prefix.into(),
            tags: BTreeMap::new(),
            initial_position,
        }
    }

    /// Only the streams tagged `key` (with the value `value`, when given).
    #[must_use]
    pub fn with_tag(mut self, key: impl Into<String>, value: Option<&str>) -> Self {
        self.tags.insert(key.into(), value.map(str::to_owned));
        self
    }

    /// Whether a stream's tags include every tag asked for.
    fn tags_match(&self, tags: &BTreeMap<String, Option<String>>) -> bool {
        self.tags
            .iter()
            .all(|(key, want)| match (tags.get(key), want) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(have), Some(want)) => have.as_deref() == Some(want.as_str()),
            })
    }
}

#[async_trait]
impl StreamTracker for StreamsByPrefix {
    async fn streams(&self, kinesis: &dyn KinesisApi) -> Result<Vec<StreamConfig>, TrackerError> {
        let names = shardwise_kinesis_source::list_all_streams(kinesis).await?;
        let mut found = Vec::new();
        for name in names.into_iter().filter(|n| n.starts_with(&self.prefix)) {
            if !self.tags.is_empty() {
                let stream = StreamId::Name(name.clone());
                match shardwise_kinesis_source::list_all_tags(kinesis, &stream).await {
                    Ok(tags) if self.tags_match(&tags) => {}
                    Ok(_) => continue,
                    // Deleted between the two calls: it is not a stream to consume.
                    Err(e) if e.kind() == KinesisErrorKind::ResourceNotFound => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            found.push(StreamConfig::new(name, self.initial_position));
        }
        Ok(found)
    }
}

/// One stream as the worker reads it, and how its leases are keyed.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// What Kinesis calls name: the stream's name or ARN (single stream), its ARN (several).
    pub(crate) stream: StreamId,
    /// The stream's identity in lease keys; `None` for a single-stream application.
    pub(crate) identifier: Option<StreamIdentifier>,
    /// Where shards without a checkpoint start.
    pub(crate) initial_position: InitialPosition,
    /// The stream consumer's ARN, when reading by enhanced fan-out.
    pub(crate) consumer_arn: Option<String>,
}

impl Scope {
    /// The key of `shard`'s lease.
    pub(crate) fn key(&self, shard: &ShardId) -> LeaseKey {
        match &self.identifier {
            Some(stream) => LeaseKey::for_stream_shard(stream, shard),
            None => LeaseKey::from(shard),
        }
    }

    /// The shard whose lease `key` is, when the key belongs to this stream.
    pub(crate) fn shard_of(&self, key: &LeaseKey) -> Option<ShardId> {
        match (&self.identifier, key.stream_shard()) {
            (Some(mine), Some((stream, shard))) if *mine == stream => Some(shard),
            (None, None) => key.shard_id(),
            _ => None,
        }
    }

    /// The stream's name, for logs and metric labels.
    pub(crate) fn name(&self) -> &str {
        self.stream.name()
    }
}

/// How long a check that a tracked stream is still the one its identifier names is trusted.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// The streams of a worker, shared by its tasks.
pub(crate) struct Streams {
    tracker: Option<Arc<dyn StreamTracker>>,
    /// By identifier (`None`: the one stream of a single-stream application).
    current: RwLock<BTreeMap<Option<StreamIdentifier>, Scope>>,
    /// When each stream was last found to be the one its identifier names, and whether it was.
    checked: std::sync::Mutex<BTreeMap<StreamIdentifier, (tokio::time::Instant, bool)>>,
}

impl Streams {
    /// One stream, leases keyed by shard id.
    pub(crate) fn single(stream: StreamId, initial_position: InitialPosition) -> Self {
        let scope = Scope {
            stream,
            identifier: None,
            initial_position,
            consumer_arn: None,
        };
        Self {
            tracker: None,
            current: RwLock::new(BTreeMap::from([(None, scope)])),
            checked: Default::default(),
        }
    }

    /// The streams `tracker` names, found at the first [`Streams::refresh`].
    pub(crate) fn tracked(tracker: Arc<dyn StreamTracker>) -> Self {
        Self {
            tracker: Some(tracker),
            current: RwLock::new(BTreeMap::new()),
            checked: Default::default(),
        }
    }

    /// Whether the streams come from a tracker.
    pub(crate) fn is_multi(&self) -> bool {
        self.tracker.is_some()
    }

    /// Every stream consumed now.
    pub(crate) fn scopes(&self) -> Vec<Scope> {
        self.read().values().cloned().collect()
    }

    /// The stream whose lease `key` is, when it is consumed now.
    pub(crate) fn scope_of(&self, key: &LeaseKey) -> Option<Scope> {
        let identifier = if self.is_multi() {
            Some(key.stream_shard()?.0)
        } else {
            None
        };
        let scope = self.read().get(&identifier)?.clone();
        scope.shard_of(key).map(|_| scope)
    }

    /// For logs: the stream's name, or how many streams.
    pub(crate) fn describe(&self) -> String {
        match (self.is_multi(), self.read().values().next()) {
            (false, Some(scope)) => scope.stream.to_string(),
            _ => format!("{} streams", self.read().len()),
        }
    }

    /// Whether `scope`'s stream is still the one its identifier names. Kinesis calls name a
    /// stream by ARN, which a stream deleted and created again under the same name keeps: until
    /// the tracker's next answer, the old identity must not read (nor create leases for) the
    /// new stream. Checked with `DescribeStreamSummary` at most every 10 s per stream; a check
    /// that fails for another reason than the stream being gone counts as current.
    pub(crate) async fn is_current(&self, kinesis: &dyn KinesisApi, scope: &Scope) -> bool {
        let Some(identifier) = &scope.identifier else {
            return true;
        };
        let now = tokio::time::Instant::now();
        if let Some((at, current)) = self.lock_checked().get(identifier).copied()
            && now.saturating_duration_since(at) < RECHECK
        {
            return current;
        }
        let current = match kinesis.describe_stream_summary(&scope.stream).await {
            Ok(summary) => summary
                .created
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .is_none_or(|created| created.as_secs() == identifier.creation_epoch()),
            Err(e) => e.kind() != shardwise_kinesis_source::KinesisErrorKind::ResourceNotFound,
        };
        if !current {
            info!(stream = %identifier, "the stream was deleted (or created again): its leases wait for the tracker");
        }
        self.lock_checked()
            .insert(identifier.clone(), (now, current));
        current
    }

    fn lock_checked(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<StreamIdentifier, (tokio::time::Instant, bool)>> {
        self.checked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the fan-out consumer of the single stream.
    pub(crate) fn set_consumer_arn(&self, arn: String) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(scope) = current.get_mut(&None) {
            scope.consumer_arn = Some(arn);
        }
    }

    /// Asks the tracker which streams to consume and resolves the new ones (their identity
    /// from `DescribeStreamSummary`; with fan-out, their registered consumer). A stream that
    /// cannot be resolved now is tried again at the next refresh; a tracker that fails leaves
    /// the streams as they are. Nothing to do for a single-stream application.
    pub(crate) async fn refresh(
        &self,
        kinesis: &dyn KinesisApi,
        config: &ConsumerConfig,
        application: &str,
    ) {
        let Some(tracker) = &self.tracker else {
            return;
        };
        let wanted = match tracker.streams(kinesis).await {
            Ok(wanted) => wanted,
            Err(e) => {
                warn!(error = %e, "the stream tracker failed; the streams stay as they are");
                return;
            }
        };
        let mut next = BTreeMap::new();
        for config_of in wanted {
            match resolve(kinesis, config, application, &config_of).await {
                Ok(scope) => {
                    let known = self.read().get(&scope.identifier).cloned();
                    // A stream already consumed keeps its consumer; its position may change.
                    let scope = match known {
                        Some(known) => Scope {
                            initial_position: scope.initial_position,
                            ..known
                        },
                        None => scope,
                    };
                    next.insert(scope.identifier.clone(), scope);
                }
                Err(e) => {
                    warn!(stream = %config_of.stream, error = %e, "a tracked stream could not be resolved; trying again at the next refresh")
                }
            }
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        for added in next.keys().filter(|k| !current.contains_key(*k)) {
            info!(stream = ?added, "a stream joined the application");
        }
        for gone in current.keys().filter(|k| !next.contains_key(*k)) {
            info!(stream = ?gone, "a stream left the application; its leases are kept");
        }
        *current = next;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Option<StreamIdentifier>, Scope>> {
        // Every write replaces whole values: the map behind a poisoned lock is consistent.
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A tracked stream's identity and, with fan-out, its registered consumer.
async fn resolve(
    kinesis: &dyn KinesisApi,
    config: &ConsumerConfig,
    application: &str,
    wanted: &StreamConfig,
) -> Result<Scope, TrackerError> {
    let summary = kinesis
        .describe_stream_summary(&StreamId::parse(&wanted.stream))
        .await?;
    // arn:aws:kinesis:REGION:ACCOUNT:stream/NAME
    let account = summary
        .stream_arn
        .split(':')
        .nth(4)
        .ok_or_else(|| format!("stream ARN {:?} names no account", summary.stream_arn))?;
    let created = summary
        .created
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .ok_or("Kinesis did not say when the stream was created")?
        .as_secs();
    let identifier = StreamIdentifier::new(account, summary.stream_name.as_str(), created)?;
    let stream = StreamId::Arn(summary.stream_arn.clone());
    let consumer_arn = match &config.retrieval {
        Retrieval::FanOut { consumer_name, .. } => {
            let name = consumer_name
                .clone()
                .unwrap_or_else(|| application.to_owned());
            let consumer = shardwise_kinesis_source::find_or_register_consumer(
                kinesis,
                &stream,
                &name,
                &shardwise_kinesis_source::RegistrationConfig::default(),
            )
            .await?;
            Some(consumer.consumer_arn)
        }
        Retrieval::Polling(_) => None,
    };
    Ok(Scope {
        stream,
        identifier: Some(identifier),
        initial_position: wanted.initial_position,
        consumer_arn,
    })
}
