//! An in-memory Kinesis (feature `testkit`): streams, puts routed by hash key, split and merge,
//! retention, sequence numbers shaped like Kinesis's, iterator expiry on the tokio clock (so a
//! paused test clock drives it), enhanced fan-out consumers and subscriptions, and fault
//! injection.

// Test infrastructure: the state lives behind one lock, and a poisoned lock is still consistent
// because every change below is applied whole.
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use md5::{Digest, Md5};
use tokio::time::Instant;

use crate::api::{
    ChildShard, ConsumerPage, ConsumerStatus, GetRecordsOutput, HashRange, KinesisApi,
    ListShardsRequest, Record, Shard, ShardFilter, ShardPage, ShardSubscription, StartPosition,
    StreamConsumer, StreamId, StreamNamePage, StreamStatus, StreamSummary, TagPage,
};
use crate::error::{KinesisError, KinesisErrorKind};

mod subscription;

use subscription::{MemorySubscription, RefusedSubscription, SUBSCRIPTION_LIFETIME};

/// A fault to inject into the next calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next `times` `GetRecords` calls on `shard_id` (any shard when `None`) are throttled.
    ThrottleGetRecords {
        /// The shard, or any.
        shard_id: Option<String>,
        /// How many calls.
        times: u32,
    },
    /// The next `times` `GetRecords` calls fail with a retryable service error (a 5xx).
    ServiceErrors {
        /// How many calls.
        times: u32,
    },
    /// Every iterator handed out so far is expired from now on.
    ExpireIterators,
    /// The next `times` `ListShards` calls with a page token fail with `ExpiredNextToken`.
    ExpireNextTokens {
        /// How many calls.
        times: u32,
    },
    /// Every subscription active now on `shard_id` (any shard when `None`) breaks, as when the
    /// connection drops: its next event is a retryable error, then the stream ends.
    DropSubscriptions {
        /// The shard, or any.
        shard_id: Option<String>,
    },
    /// The next `times` `SubscribeToShard` calls fail with an error of `kind`: from the call
    /// itself, or (`in_stream`) as the first message of the event stream, the way kinesis-local
    /// reports a second concurrent subscription.
    FailSubscribe {
        /// The error's class.
        kind: KinesisErrorKind,
        /// How many calls.
        times: u32,
        /// Whether the error arrives inside the event stream rather than from the call.
        in_stream: bool,
    },
}

#[derive(Debug, Clone)]
struct StoredRecord {
    sequence: String,
    partition_key: String,
    data: Bytes,
    arrival: SystemTime,
}

#[derive(Debug, Clone)]
struct ShardState {
    shard_id: String,
    parent: Option<String>,
    adjacent_parent: Option<String>,
    range: HashRange,
    records: Vec<StoredRecord>,
    starting_sequence: String,
    ending_sequence: Option<String>,
    /// When a split or merge closed it: a closed shard ages out of the stream (it is no longer
    /// listed and cannot be read) once the retention period has passed since then.
    closed_at: Option<SystemTime>,
    children: Vec<String>,
}

impl ShardState {
    fn aged_out(&self, retention: Duration, now: SystemTime) -> bool {
        self.closed_at
            .and_then(|closed| closed.checked_add(retention))
            .is_some_and(|gone| now >= gone)
    }

    /// Records `range` of the shard as the API returns them.
    fn records(&self, range: std::ops::Range<usize>) -> Vec<Record> {
        self.records[range]
            .iter()
            .map(|r| Record {
                sequence_number: r.sequence.clone(),
                partition_key: r.partition_key.clone(),
                data: r.data.clone(),
                approximate_arrival: Some(r.arrival),
            })
            .collect()
    }

    /// How far the record before index `end` is behind the shard's newest, in milliseconds.
    fn millis_behind(&self, end: usize) -> i64 {
        let last = end.checked_sub(1).and_then(|i| self.records.get(i));
        match (self.records.last(), last) {
            (Some(latest), Some(last)) => latest
                .arrival
                .duration_since(last.arrival)
                .map_or(0, |d| d.as_millis() as i64),
            _ => 0,
        }
    }
}

impl StreamState {
    /// Shard `shard_id`, unless it does not exist or has aged out (`ResourceNotFound`).
    fn live_shard(&self, shard_id: &str, now: SystemTime) -> Result<&ShardState, KinesisError> {
        self.shards
            .iter()
            .find(|sh| sh.shard_id == shard_id && !sh.aged_out(self.retention, now))
            .ok_or_else(|| not_found(format!("shard {shard_id} not found")))
    }

    /// The shards `shard` was split or merged into.
    fn children_of(&self, shard: &ShardState) -> Vec<ChildShard> {
        self.shards
            .iter()
            .filter(|c| shard.children.contains(&c.shard_id))
            .map(|c| ChildShard {
                shard_id: c.shard_id.clone(),
                parent_shards: describe(c).parents(),
                hash_range: c.range,
            })
            .collect()
    }
}

#[derive(Debug)]
struct StreamState {
    arn: String,
    created: SystemTime,
    shards: Vec<ShardState>,
    retention: Duration,
    tags: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Clone)]
struct IteratorState {
    stream: String,
    shard_id: String,
    index: usize,
    issued: Instant,
}

#[derive(Debug)]
struct ConsumerState {
    name: String,
    stream: String,
    stream_arn: String,
    registered: Instant,
    deregistered: Option<Instant>,
}

#[derive(Debug)]
struct State {
    streams: BTreeMap<String, StreamState>,
    next_sequence: u128,
    next_shard_index: u64,
    iterators: HashMap<u64, IteratorState>,
    next_iterator: u64,
    expired_before: u64,
    faults: VecDeque<Fault>,
    get_records_calls: HashMap<String, Vec<Instant>>,
    started: (SystemTime, Instant),
    /// By consumer ARN.
    consumers: BTreeMap<String, ConsumerState>,
    next_consumer: u64,
    consumer_transition: Duration,
    /// The active subscription of each (consumer ARN, shard id).
    subscriptions: HashMap<(String, String), u64>,
    next_subscription: u64,
    dropped_subscriptions: HashSet<u64>,
    subscribe_calls: HashMap<String, Vec<SubscribeCall>>,
    service_model: Option<ServiceModel>,
    /// By shard id, under the service model.
    read_budgets: HashMap<String, ReadBudget>,
}

/// A `SubscribeToShard` call as the in-memory Kinesis saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeCall {
    /// When (tokio clock).
    pub at: Instant,
    /// The starting position asked for.
    pub position: StartPosition,
}

/// The read limits and costs of the real service, for [`InMemoryKinesis::set_service_model`]:
/// per shard, `GetRecords` calls per second, bytes per second, bytes per call, and how long a
/// call takes. Off by default (every call answers at once, with no limit but the 10,000
/// records a call asks for at most).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceModel {
    /// How long every `GetRecords` call takes, whatever it returns.
    pub call_latency: Duration,
    /// How much longer per record returned.
    pub record_latency: Duration,
    /// Calls allowed per shard in any one second; more are throttled (the service: 5).
    pub calls_per_second: u32,
    /// Bytes of records (data and partition keys) a shard's reads may return per second,
    /// sustained (the service: 2 MiB). A shard may run one second of it ahead; a call that returns more than that puts
    /// the shard in debt, and every call is throttled until the debt is paid back (the
    /// service: a 10 MiB response makes the next 5 seconds of calls fail).
    pub bytes_per_second: u64,
    /// Most bytes of records one call returns (the service: 10 MiB; at least one record).
    pub max_bytes_per_call: u64,
}

impl ServiceModel {
    /// The service's documented limits, with no latency.
    pub fn service() -> Self {
        Self {
            call_latency: Duration::ZERO,
            record_latency: Duration::ZERO,
            calls_per_second: 5,
            bytes_per_second: 2 * 1024 * 1024,
            max_bytes_per_call: 10 * 1024 * 1024,
        }
    }
}

/// What a shard's reads took from the service, under a [`ServiceModel`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardReads {
    /// `GetRecords` calls answered with records or none.
    pub calls: u64,
    /// Calls throttled by the model.
    pub throttled: u64,
    /// Records returned.
    pub records: u64,
    /// Bytes of records (data and partition keys) returned.
    pub bytes: u64,
}

/// A shard's read budget under a [`ServiceModel`].
#[derive(Debug, Default)]
struct ReadBudget {
    /// Answered calls of the last second.
    recent: VecDeque<Instant>,
    /// Bytes that may still be returned (negative: a debt); `None` before the first call.
    available: Option<(f64, Instant)>,
    reads: ShardReads,
}

impl ReadBudget {
    /// Whether a call now is throttled; otherwise it is counted.
    fn admit(&mut self, model: &ServiceModel, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        let rate = model.bytes_per_second as f64;
        let (available, at) = self.available.unwrap_or((rate, now));
        let available = (available + rate * now.duration_since(at).as_secs_f64()).min(rate);
        self.available = Some((available, now));
        if self.recent.len() >= model.calls_per_second as usize || available < 0.0 {
            self.reads.throttled += 1;
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// A call returned `records` records of `bytes` bytes.
    fn spend(&mut self, records: usize, bytes: u64, now: Instant) {
        let (available, _) = self.available.unwrap_or((0.0, now));
        self.available = Some((available - bytes as f64, now));
        self.reads.calls += 1;
        self.reads.records += records as u64;
        self.reads.bytes += bytes;
    }
}

/// An in-memory Kinesis with the behaviour the readers depend on.
///
/// Time is the tokio clock: under `#[tokio::test(start_paused = true)]` iterators expire and
/// `MillisBehindLatest` moves with virtual time.
#[derive(Debug)]
pub struct InMemoryKinesis {
    // Shared with the live subscriptions.
    state: Arc<Mutex<State>>,
    iterator_ttl: Duration,
    page_size: usize,
}

impl Default for InMemoryKinesis {
    fn default() -> Self {
        Self::new()
    }
}

const UNKNOWN_ITERATOR: &str = "shard iterator not recognised";

impl InMemoryKinesis {
    /// An empty Kinesis; iterators live 300 s and `ListShards` pages hold 1,000 shards, as in the
    /// service.
    pub fn new() -> Self {
        Self::with_limits(Duration::from_secs(300), 1_000)
    }

    /// An empty Kinesis with another iterator lifetime and `ListShards` page size.
    pub fn with_limits(iterator_ttl: Duration, page_size: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                streams: BTreeMap::new(),
                next_sequence: 1,
                next_shard_index: 0,
                iterators: HashMap::new(),
                next_iterator: 0,
                expired_before: 0,
                faults: VecDeque::new(),
                get_records_calls: HashMap::new(),
                started: (SystemTime::now(), Instant::now()),
                consumers: BTreeMap::new(),
                next_consumer: 1,
                consumer_transition: Duration::from_secs(1),
                subscriptions: HashMap::new(),
                next_subscription: 0,
                dropped_subscriptions: HashSet::new(),
                subscribe_calls: HashMap::new(),
                service_model: None,
                read_budgets: HashMap::new(),
            })),
            iterator_ttl,
            page_size: page_size.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Sets the wall clock to read `now` at this moment (it then moves on with the tokio clock).
    /// A run that must repeat exactly (a seeded simulation) sets it, since stream creation
    /// times and arrival times come from this clock.
    pub fn set_clock(&self, now: SystemTime) {
        self.lock().started = (now, Instant::now());
    }

    /// The in-memory Kinesis's wall clock: its start time moved on by the tokio clock. Arrival
    /// times and `AT_TIMESTAMP` positions are on this clock.
    pub fn now(&self) -> SystemTime {
        self.lock().now()
    }

    /// Sets how long a consumer stays CREATING after registration and DELETING after
    /// deregistration (1 s by default; the service takes several seconds).
    pub fn set_consumer_transition(&self, transition: Duration) {
        self.lock().consumer_transition = transition;
    }

    /// Makes `GetRecords` keep the service's per-shard limits and take its time, as `model`
    /// says (`None`: no limits, no latency).
    pub fn set_service_model(&self, model: Option<ServiceModel>) {
        self.lock().service_model = model;
    }

    /// What the reads of `shard_id` took under the service model.
    pub fn shard_reads(&self, shard_id: &str) -> ShardReads {
        self.lock()
            .read_budgets
            .get(shard_id)
            .map(|b| b.reads.clone())
            .unwrap_or_default()
    }

    /// A `GetRecords` answer, and how long the service model makes it take.
    fn answer_get_records(
        &self,
        iterator: &str,
        limit: u32,
    ) -> Result<(GetRecordsOutput, Duration), KinesisError> {
        let mut state = self.lock();
        let id: u64 = iterator
            .strip_prefix("it-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                KinesisError::new(KinesisErrorKind::InvalidArgument, UNKNOWN_ITERATOR)
            })?;
        let it = state.iterators.get(&id).cloned().ok_or_else(|| {
            KinesisError::new(KinesisErrorKind::InvalidArgument, UNKNOWN_ITERATOR)
        })?;
        state
            .get_records_calls
            .entry(it.shard_id.clone())
            .or_default()
            .push(Instant::now());

        if let Some(position) = state.faults.iter().position(|f| match f {
            Fault::ThrottleGetRecords { shard_id, .. } => {
                shard_id.as_ref().is_none_or(|s| *s == it.shard_id)
            }
            Fault::ServiceErrors { .. } => true,
            Fault::ExpireIterators
            | Fault::ExpireNextTokens { .. }
            | Fault::DropSubscriptions { .. }
            | Fault::FailSubscribe { .. } => false,
        }) {
            let (kind, exhausted) = match &mut state.faults[position] {
                Fault::ThrottleGetRecords { times, .. } => {
                    *times = times.saturating_sub(1);
                    (KinesisErrorKind::Throttled, *times == 0)
                }
                Fault::ServiceErrors { times } => {
                    *times = times.saturating_sub(1);
                    (KinesisErrorKind::Unavailable, *times == 0)
                }
                Fault::ExpireIterators
                | Fault::ExpireNextTokens { .. }
                | Fault::DropSubscriptions { .. }
                | Fault::FailSubscribe { .. } => (KinesisErrorKind::Other, true),
            };
            if exhausted {
                state.faults.remove(position);
            }
            return Err(KinesisError::new(kind, "injected fault"));
        }
        if id < state.expired_before || Instant::now() - it.issued > self.iterator_ttl {
            return Err(KinesisError::new(
                KinesisErrorKind::ExpiredIterator,
                "iterator expired",
            ));
        }

        let model = state.service_model.clone();
        if let Some(model) = &model
            && !state
                .read_budgets
                .entry(it.shard_id.clone())
                .or_default()
                .admit(model, Instant::now())
        {
            return Err(KinesisError::new(
                KinesisErrorKind::Throttled,
                "rate exceeded for the shard (service model)",
            ));
        }
        let now = state.now();
        let (_, s) = state.stream(&StreamId::Name(it.stream.clone()))?;
        let shard = s.live_shard(&it.shard_id, now)?;
        let limit = usize::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
        let mut end = (it.index + limit).min(shard.records.len());
        let mut bytes = 0u64;
        if let Some(model) = &model {
            let start = it.index.min(end);
            let mut taken = start;
            for record in &shard.records[start..end] {
                // A record's size, as the service counts it: its data and partition key.
                let size = (record.data.len() + record.partition_key.len()) as u64;
                if taken > start && bytes + size > model.max_bytes_per_call {
                    break;
                }
                bytes += size;
                taken += 1;
            }
            end = taken;
        }
        let records = shard.records(it.index.min(end)..end);
        let millis_behind_latest = shard.millis_behind(end);
        let at_end = end == shard.records.len() && shard.ending_sequence.is_some();
        let child_shards = at_end.then(|| s.children_of(shard));
        let next_iterator = if at_end {
            None
        } else {
            let next_id = state.next_iterator;
            state.next_iterator += 1;
            let next = IteratorState {
                index: end,
                issued: Instant::now(),
                ..it.clone()
            };
            state.iterators.insert(next_id, next);
            Some(format!("it-{next_id}"))
        };
        let mut latency = Duration::ZERO;
        if let Some(model) = &model {
            state
                .read_budgets
                .entry(it.shard_id.clone())
                .or_default()
                .spend(records.len(), bytes, Instant::now());
            let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
            latency = model.call_latency + model.record_latency * count;
        }
        Ok((
            GetRecordsOutput {
                records,
                next_iterator,
                millis_behind_latest: Some(millis_behind_latest),
                child_shards,
            },
            latency,
        ))
    }

    /// Every `SubscribeToShard` call on `shard_id`, refused ones included.
    pub fn subscribe_calls(&self, shard_id: &str) -> Vec<SubscribeCall> {
        self.lock()
            .subscribe_calls
            .get(shard_id)
            .cloned()
            .unwrap_or_default()
    }

    /// How many subscriptions are active now.
    pub fn active_subscriptions(&self) -> usize {
        self.lock().subscriptions.len()
    }

    /// Creates a stream with `shards` shards splitting the hash space evenly.
    pub fn create_stream(&self, name: &str, shards: u32) {
        let mut state = self.lock();
        let count = u128::from(shards.max(1));
        let width = u128::MAX / count;
        let mut list = Vec::new();
        for i in 0..count {
            let start = i * width;
            let end = if i + 1 == count {
                u128::MAX
            } else {
                (i + 1) * width - 1
            };
            let shard = state.new_shard(None, None, HashRange { start, end });
            list.push(shard);
        }
        let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{name}");
        let created = state.now();
        state.streams.insert(
            name.to_owned(),
            StreamState {
                arn,
                created,
                shards: list,
                retention: Duration::from_secs(24 * 3600),
                tags: BTreeMap::new(),
            },
        );
    }

    /// Sets how long records are kept (24 h by default): `TRIM_HORIZON` starts at the oldest
    /// record younger than that, and a shard closed by a split or merge longer ago than that is
    /// no longer listed nor readable.
    pub fn set_retention(&self, stream: &str, retention: Duration) {
        if let Some(s) = self.lock().streams.get_mut(stream) {
            s.retention = retention;
        }
    }

    /// Tags a stream (`AddTagsToStream`): `key`, with `value` when given, replacing a tag of
    /// the same key.
    pub fn tag_stream(&self, stream: &str, key: &str, value: Option<&str>) {
        if let Some(s) = self.lock().streams.get_mut(stream) {
            s.tags.insert(key.to_owned(), value.map(str::to_owned));
        }
    }

    /// Deletes a stream: later calls on it fail with `ResourceNotFound`.
    pub fn delete_stream(&self, stream: &str) {
        self.lock().streams.remove(stream);
    }

    /// Puts a record routed by the MD5 of its partition key; returns (shard id, sequence number).
    pub fn put(
        &self,
        stream: &str,
        partition_key: &str,
        data: impl Into<Bytes>,
    ) -> Result<(String, String), KinesisError> {
        let hash = u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into());
        self.put_with_hash_key(stream, partition_key, hash, data)
    }

    /// Puts a record routed by an explicit hash key.
    pub fn put_with_hash_key(
        &self,
        stream: &str,
        partition_key: &str,
        hash_key: u128,
        data: impl Into<Bytes>,
    ) -> Result<(String, String), KinesisError> {
        let mut state = self.lock();
        let sequence = state.take_sequence();
        let arrival = state.now();
        let stream_state = state.stream_mut(stream)?;
        let shard = stream_state
            .shards
            .iter_mut()
            .find(|s| {
                s.ending_sequence.is_none() && s.range.start <= hash_key && hash_key <= s.range.end
            })
            .ok_or_else(|| {
                KinesisError::new(KinesisErrorKind::Other, "no open shard covers the hash key")
            })?;
        shard.records.push(StoredRecord {
            sequence: sequence.clone(),
            partition_key: partition_key.to_owned(),
            data: data.into(),
            arrival,
        });
        Ok((shard.shard_id.clone(), sequence))
    }

    /// Splits an open shard at `new_starting_hash_key`; returns the two children's ids.
    pub fn split_shard(
        &self,
        stream: &str,
        shard_id: &str,
        new_starting_hash_key: u128,
    ) -> Result<[String; 2], KinesisError> {
        let mut state = self.lock();
        let parent = state.open_shard(stream, shard_id)?.range;
        if new_starting_hash_key <= parent.start || new_starting_hash_key > parent.end {
            return Err(KinesisError::new(
                KinesisErrorKind::InvalidArgument,
                "hash key outside the shard",
            ));
        }
        let ending = state.take_sequence();
        let low = state.new_shard(
            Some(shard_id),
            None,
            HashRange {
                start: parent.start,
                end: new_starting_hash_key - 1,
            },
        );
        let high = state.new_shard(
            Some(shard_id),
            None,
            HashRange {
                start: new_starting_hash_key,
                end: parent.end,
            },
        );
        let ids = [low.shard_id.clone(), high.shard_id.clone()];
        let now = state.now();
        let stream_state = state.stream_mut(stream)?;
        for s in stream_state
            .shards
            .iter_mut()
            .filter(|s| s.shard_id == shard_id)
        {
            s.ending_sequence = Some(ending.clone());
            s.closed_at = Some(now);
            s.children = ids.to_vec();
        }
        stream_state.shards.extend([low, high]);
        Ok(ids)
    }

    /// Merges two open, adjacent shards; returns the child's id.
    pub fn merge_shards(
        &self,
        stream: &str,
        shard_id: &str,
        adjacent_shard_id: &str,
    ) -> Result<String, KinesisError> {
        let mut state = self.lock();
        let a = state.open_shard(stream, shard_id)?.range;
        let b = state.open_shard(stream, adjacent_shard_id)?.range;
        let range = if a.end.checked_add(1) == Some(b.start) {
            HashRange {
                start: a.start,
                end: b.end,
            }
        } else if b.end.checked_add(1) == Some(a.start) {
            HashRange {
                start: b.start,
                end: a.end,
            }
        } else {
            return Err(KinesisError::new(
                KinesisErrorKind::InvalidArgument,
                "shards are not adjacent",
            ));
        };
        let ending = state.take_sequence();
        let child = state.new_shard(Some(shard_id), Some(adjacent_shard_id), range);
        let id = child.shard_id.clone();
        let now = state.now();
        let stream_state = state.stream_mut(stream)?;
        for s in stream_state
            .shards
            .iter_mut()
            .filter(|s| s.shard_id == shard_id || s.shard_id == adjacent_shard_id)
        {
            s.ending_sequence = Some(ending.clone());
            s.closed_at = Some(now);
            s.children = vec![id.clone()];
        }
        stream_state.shards.push(child);
        Ok(id)
    }

    /// Queues a fault for the next calls.
    pub fn inject(&self, fault: Fault) {
        let mut state = self.lock();
        match fault {
            Fault::ExpireIterators => state.expired_before = state.next_iterator,
            Fault::DropSubscriptions { shard_id } => {
                let dropped: Vec<u64> = state
                    .subscriptions
                    .iter()
                    .filter(|((_, shard), _)| shard_id.as_ref().is_none_or(|s| s == shard))
                    .map(|(_, id)| *id)
                    .collect();
                state.dropped_subscriptions.extend(dropped);
            }
            fault => state.faults.push_back(fault),
        }
    }

    /// Forgets every injected fault not yet used up (throttling, errors still to come).
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// When each `GetRecords` call on `shard_id` was made (tokio clock).
    pub fn get_records_calls(&self, shard_id: &str) -> Vec<Instant> {
        self.lock()
            .get_records_calls
            .get(shard_id)
            .cloned()
            .unwrap_or_default()
    }
}

impl State {
    /// A consumer's state now; `None` once it is gone (deregistered and past DELETING).
    fn consumer_status(&self, consumer: &ConsumerState) -> Option<ConsumerStatus> {
        let now = Instant::now();
        match consumer.deregistered {
            Some(at) if now - at >= self.consumer_transition => None,
            Some(_) => Some(ConsumerStatus::Deleting),
            None if now - consumer.registered >= self.consumer_transition => {
                Some(ConsumerStatus::Active)
            }
            None => Some(ConsumerStatus::Creating),
        }
    }

    /// The consumer with this ARN, if it exists (in any state).
    fn consumer(&self, arn: &str) -> Option<(&ConsumerState, ConsumerStatus)> {
        let consumer = self.consumers.get(arn)?;
        Some((consumer, self.consumer_status(consumer)?))
    }

    fn describe_consumer(&self, arn: &str) -> Option<StreamConsumer> {
        let (consumer, status) = self.consumer(arn)?;
        Some(StreamConsumer {
            consumer_name: consumer.name.clone(),
            consumer_arn: arn.to_owned(),
            status,
        })
    }

    /// The ARNs of the stream's consumers that still exist, in registration order.
    fn consumers_of(&self, stream_arn: &str) -> Vec<String> {
        let mut found: Vec<(Instant, String)> = self
            .consumers
            .iter()
            .filter(|(arn, c)| c.stream_arn == stream_arn && self.consumer(arn).is_some())
            .map(|(arn, c)| (c.registered, arn.clone()))
            .collect();
        found.sort();
        found.into_iter().map(|(_, arn)| arn).collect()
    }

    /// Takes the next `FailSubscribe` fault, if one is queued.
    fn take_subscribe_fault(&mut self) -> Option<(KinesisErrorKind, bool)> {
        let position = self
            .faults
            .iter()
            .position(|f| matches!(f, Fault::FailSubscribe { .. }))?;
        let Fault::FailSubscribe {
            kind,
            times,
            in_stream,
        } = &mut self.faults[position]
        else {
            return None;
        };
        *times = times.saturating_sub(1);
        let taken = (*kind, *in_stream);
        if *times == 0 {
            self.faults.remove(position);
        }
        Some(taken)
    }

    fn now(&self) -> SystemTime {
        self.started.0 + (Instant::now() - self.started.1)
    }

    fn take_sequence(&mut self) -> String {
        let n = self.next_sequence;
        self.next_sequence += 1;
        // 56 digits, like the service's.
        format!("49{n:054}")
    }

    fn new_shard(
        &mut self,
        parent: Option<&str>,
        adjacent: Option<&str>,
        range: HashRange,
    ) -> ShardState {
        let index = self.next_shard_index;
        self.next_shard_index += 1;
        ShardState {
            shard_id: format!("shardId-{index:012}"),
            parent: parent.map(str::to_owned),
            adjacent_parent: adjacent.map(str::to_owned),
            range,
            records: Vec::new(),
            starting_sequence: self.take_sequence(),
            ending_sequence: None,
            closed_at: None,
            children: Vec::new(),
        }
    }

    fn stream_mut(&mut self, stream: &str) -> Result<&mut StreamState, KinesisError> {
        self.streams
            .get_mut(stream)
            .ok_or_else(|| not_found(format!("stream {stream} not found")))
    }

    fn stream(&self, stream: &StreamId) -> Result<(&String, &StreamState), KinesisError> {
        self.streams
            .get_key_value(stream.name())
            .filter(|(_, s)| match stream {
                StreamId::Arn(arn) => s.arn == *arn,
                StreamId::Name(_) => true,
            })
            .ok_or_else(|| not_found(format!("stream {stream} not found")))
    }

    fn open_shard(&mut self, stream: &str, shard_id: &str) -> Result<&ShardState, KinesisError> {
        let s = self.stream_mut(stream)?;
        s.shards
            .iter()
            .find(|s| s.shard_id == shard_id && s.ending_sequence.is_none())
            .ok_or_else(|| not_found(format!("open shard {shard_id} not found")))
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where reading `shard` from `position` starts: an index into its records.
fn start_index(
    shard: &ShardState,
    retention: Duration,
    now: SystemTime,
    position: &StartPosition,
) -> Result<usize, KinesisError> {
    let horizon = now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
    let records = &shard.records;
    let find = |seq: &str| records.iter().position(|r| r.sequence == seq);
    let not_in_shard = |seq: &str| {
        KinesisError::new(
            KinesisErrorKind::InvalidArgument,
            format!("{seq} is not in {}", shard.shard_id),
        )
    };
    Ok(match position {
        StartPosition::TrimHorizon => records
            .iter()
            .position(|r| r.arrival >= horizon)
            .unwrap_or(records.len()),
        StartPosition::Latest => records.len(),
        StartPosition::AtTimestamp(t) => records
            .iter()
            .position(|r| r.arrival >= *t)
            .unwrap_or(records.len()),
        // The shard's starting sequence number comes back as the continuation of a subscription
        // that has delivered nothing yet: it stands before the first record.
        StartPosition::AtSequenceNumber(seq) | StartPosition::AfterSequenceNumber(seq)
            if *seq == shard.starting_sequence =>
        {
            0
        }
        StartPosition::AtSequenceNumber(seq) => find(seq).ok_or_else(|| not_in_shard(seq))?,
        StartPosition::AfterSequenceNumber(seq) => {
            find(seq).map(|i| i + 1).ok_or_else(|| not_in_shard(seq))?
        }
    })
}

fn not_found(message: String) -> KinesisError {
    KinesisError::new(KinesisErrorKind::ResourceNotFound, message)
}

fn describe(shard: &ShardState) -> Shard {
    Shard {
        shard_id: shard.shard_id.clone(),
        parent_shard_id: shard.parent.clone(),
        adjacent_parent_shard_id: shard.adjacent_parent.clone(),
        hash_range: shard.range,
        starting_sequence_number: shard.starting_sequence.clone(),
        ending_sequence_number: shard.ending_sequence.clone(),
    }
}

impl InMemoryKinesis {
    /// One page of `stream`'s listed shards after shard id `after`; the token names the last
    /// shard of the page (shard ids sort in creation order).
    fn shard_page(
        &self,
        state: &State,
        stream: &str,
        open_only: bool,
        after: Option<String>,
    ) -> Result<ShardPage, KinesisError> {
        let (_, s) = state.stream(&StreamId::Name(stream.to_owned()))?;
        let now = state.now();
        let all: Vec<&ShardState> = s
            .shards
            .iter()
            .filter(|sh| !sh.aged_out(s.retention, now))
            .filter(|sh| !open_only || sh.ending_sequence.is_none())
            .filter(|sh| after.as_ref().is_none_or(|a| sh.shard_id > *a))
            .collect();
        let page: Vec<Shard> = all
            .iter()
            .take(self.page_size.max(1))
            .map(|sh| describe(sh))
            .collect();
        let next_token = (all.len() > page.len()).then(|| {
            let issued = (Instant::now() - state.started.1).as_millis();
            let last = page.last().map_or("", |sh| sh.shard_id.as_str());
            format!("{stream}|{}|{last}|{issued}", u8::from(open_only))
        });
        Ok(ShardPage {
            shards: page,
            next_token,
        })
    }
}

#[async_trait]
impl KinesisApi for InMemoryKinesis {
    fn now(&self) -> SystemTime {
        InMemoryKinesis::now(self)
    }

    async fn list_shards(&self, request: &ListShardsRequest) -> Result<ShardPage, KinesisError> {
        let mut state = self.lock();
        // Pages continue after the last shard id listed, so a shard that ages out between two
        // pages shifts nothing.
        let (stream, filter) = match request {
            ListShardsRequest::First { stream, filter, .. } => {
                (stream.name().to_owned(), filter.clone())
            }
            ListShardsRequest::Next { token, .. } => {
                if let Some(Fault::ExpireNextTokens { times }) = state
                    .faults
                    .iter_mut()
                    .find(|f| matches!(f, Fault::ExpireNextTokens { .. }))
                {
                    *times = times.saturating_sub(1);
                    if *times == 0 {
                        state
                            .faults
                            .retain(|f| !matches!(f, Fault::ExpireNextTokens { times: 0 }));
                    }
                    return Err(KinesisError::new(
                        KinesisErrorKind::ExpiredNextToken,
                        "injected: NextToken expired",
                    ));
                }
                // token: "<stream>|<filter open only>|<last shard id listed>|<issued ms>"
                let parts: Vec<&str> = token.split('|').collect();
                let [name, open, last, issued] = parts.as_slice() else {
                    return Err(KinesisError::new(
                        KinesisErrorKind::InvalidArgument,
                        "bad NextToken",
                    ));
                };
                let issued: u64 = issued.parse().unwrap_or(0);
                let age = (Instant::now() - state.started.1).as_millis() as u64;
                if age.saturating_sub(issued) > 300_000 {
                    return Err(KinesisError::new(
                        KinesisErrorKind::ExpiredNextToken,
                        "NextToken expired",
                    ));
                }
                return self.shard_page(&state, name, *open == "1", Some((*last).to_owned()));
            }
        };
        let open_only = matches!(filter, Some(ShardFilter::AtLatest));
        let after = match filter {
            Some(ShardFilter::AfterShardId(id)) => Some(id),
            _ => None,
        };
        self.shard_page(&state, &stream, open_only, after)
    }

    async fn get_shard_iterator(
        &self,
        stream: &StreamId,
        shard_id: &str,
        position: &StartPosition,
    ) -> Result<String, KinesisError> {
        let mut state = self.lock();
        let now = state.now();
        let (name, s) = state.stream(stream)?;
        let name = name.clone();
        let shard = s.live_shard(shard_id, now)?;
        let index = start_index(shard, s.retention, now, position)?;
        let id = state.next_iterator;
        state.next_iterator += 1;
        state.iterators.insert(
            id,
            IteratorState {
                stream: name,
                shard_id: shard_id.to_owned(),
                index,
                issued: Instant::now(),
            },
        );
        Ok(format!("it-{id}"))
    }

    async fn get_records(
        &self,
        _stream: &StreamId,
        iterator: &str,
        limit: u32,
    ) -> Result<GetRecordsOutput, KinesisError> {
        let (output, latency) = self.answer_get_records(iterator, limit)?;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        Ok(output)
    }
    async fn describe_stream_summary(
        &self,
        stream: &StreamId,
    ) -> Result<StreamSummary, KinesisError> {
        let state = self.lock();
        let (name, s) = state.stream(stream)?;
        Ok(StreamSummary {
            stream_name: name.clone(),
            stream_arn: s.arn.clone(),
            status: StreamStatus::Active,
            open_shard_count: u32::try_from(
                s.shards
                    .iter()
                    .filter(|sh| sh.ending_sequence.is_none())
                    .count(),
            )
            .unwrap_or(u32::MAX),
            created: Some(s.created),
        })
    }

    async fn list_streams(
        &self,
        exclusive_start: Option<&str>,
    ) -> Result<StreamNamePage, KinesisError> {
        const PAGE: usize = 100;
        let state = self.lock();
        let mut names: Vec<String> = state
            .streams
            .keys()
            .filter(|name| exclusive_start.is_none_or(|start| name.as_str() > start))
            .take(PAGE + 1)
            .cloned()
            .collect();
        let has_more = names.len() > PAGE;
        names.truncate(PAGE);
        Ok(StreamNamePage { names, has_more })
    }

    async fn list_tags_for_stream(
        &self,
        stream: &StreamId,
        exclusive_start: Option<&str>,
    ) -> Result<TagPage, KinesisError> {
        // The service's default page is 10 tags.
        const PAGE: usize = 10;
        let state = self.lock();
        let (_, s) = state.stream(stream)?;
        let mut tags: Vec<(String, Option<String>)> = s
            .tags
            .iter()
            .filter(|(key, _)| exclusive_start.is_none_or(|start| key.as_str() > start))
            .take(PAGE + 1)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let has_more = tags.len() > PAGE;
        tags.truncate(PAGE);
        Ok(TagPage { tags, has_more })
    }

    async fn register_stream_consumer(
        &self,
        stream_arn: &str,
        consumer_name: &str,
    ) -> Result<StreamConsumer, KinesisError> {
        let mut state = self.lock();
        let (stream, _) = state.stream(&StreamId::Arn(stream_arn.to_owned()))?;
        let stream = stream.clone();
        let taken = state.consumers_of(stream_arn).into_iter().any(|arn| {
            state
                .consumers
                .get(&arn)
                .is_some_and(|c| c.name == consumer_name)
        });
        if taken {
            return Err(KinesisError::new(
                KinesisErrorKind::ResourceInUse,
                format!("consumer {consumer_name} already exists on {stream_arn}"),
            ));
        }
        let n = state.next_consumer;
        state.next_consumer += 1;
        let arn = format!("{stream_arn}/consumer/{consumer_name}:{n}");
        state.consumers.insert(
            arn.clone(),
            ConsumerState {
                name: consumer_name.to_owned(),
                stream,
                stream_arn: stream_arn.to_owned(),
                registered: Instant::now(),
                deregistered: None,
            },
        );
        Ok(StreamConsumer {
            consumer_name: consumer_name.to_owned(),
            consumer_arn: arn,
            status: ConsumerStatus::Creating,
        })
    }

    async fn describe_stream_consumer(
        &self,
        stream_arn: &str,
        consumer_name: &str,
    ) -> Result<StreamConsumer, KinesisError> {
        let state = self.lock();
        state.stream(&StreamId::Arn(stream_arn.to_owned()))?;
        state
            .consumers_of(stream_arn)
            .iter()
            .filter_map(|arn| state.describe_consumer(arn))
            .find(|c| c.consumer_name == consumer_name)
            .ok_or_else(|| not_found(format!("consumer {consumer_name} not found")))
    }

    async fn list_stream_consumers(
        &self,
        stream_arn: &str,
        next_token: Option<&str>,
    ) -> Result<ConsumerPage, KinesisError> {
        let state = self.lock();
        state.stream(&StreamId::Arn(stream_arn.to_owned()))?;
        let offset = match next_token {
            None => 0,
            Some(token) => token.parse::<usize>().map_err(|_| {
                KinesisError::new(KinesisErrorKind::InvalidArgument, "bad NextToken")
            })?,
        };
        let all = state.consumers_of(stream_arn);
        let consumers: Vec<StreamConsumer> = all
            .iter()
            .skip(offset)
            .take(self.page_size)
            .filter_map(|arn| state.describe_consumer(arn))
            .collect();
        let next = offset + self.page_size;
        Ok(ConsumerPage {
            consumers,
            next_token: (next < all.len()).then(|| next.to_string()),
        })
    }

    async fn deregister_stream_consumer(&self, consumer_arn: &str) -> Result<(), KinesisError> {
        let mut state = self.lock();
        if state.consumer(consumer_arn).is_none() {
            return Err(not_found(format!("consumer {consumer_arn} not found")));
        }
        if let Some(c) = state.consumers.get_mut(consumer_arn) {
            c.deregistered.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    async fn subscribe_to_shard(
        &self,
        consumer_arn: &str,
        shard_id: &str,
        position: &StartPosition,
    ) -> Result<Box<dyn ShardSubscription>, KinesisError> {
        let mut state = self.lock();
        state
            .subscribe_calls
            .entry(shard_id.to_owned())
            .or_default()
            .push(SubscribeCall {
                at: Instant::now(),
                position: position.clone(),
            });
        let stream = match state.consumer(consumer_arn) {
            None => return Err(not_found(format!("consumer {consumer_arn} not found"))),
            Some((_, status)) if status != ConsumerStatus::Active => {
                return Err(KinesisError::new(
                    KinesisErrorKind::ResourceInUse,
                    format!("consumer {consumer_arn} is {status:?}, not ACTIVE"),
                ));
            }
            Some((consumer, _)) => consumer.stream.clone(),
        };
        if let Some((kind, in_stream)) = state.take_subscribe_fault() {
            let err = KinesisError::new(kind, "injected: SubscribeToShard failed");
            return if in_stream {
                Ok(Box::new(RefusedSubscription(Some(err))))
            } else {
                Err(err)
            };
        }
        let now = state.now();
        let (_, s) = state.stream(&StreamId::Name(stream.clone()))?;
        let shard = s.live_shard(shard_id, now)?;
        let index = start_index(shard, s.retention, now, position)?;
        let key = (consumer_arn.to_owned(), shard_id.to_owned());
        if state.subscriptions.contains_key(&key) {
            return Err(KinesisError::new(
                KinesisErrorKind::ResourceInUse,
                format!("{consumer_arn} already has a subscription to {shard_id}"),
            ));
        }
        let id = state.next_subscription;
        state.next_subscription += 1;
        state.subscriptions.insert(key.clone(), id);
        Ok(Box::new(MemorySubscription {
            state: self.state.clone(),
            id,
            key,
            stream,
            index,
            expires: Instant::now() + SUBSCRIPTION_LIFETIME,
            next_heartbeat: Instant::now(),
            ended: false,
        }))
    }
}
