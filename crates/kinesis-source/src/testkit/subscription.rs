//! Enhanced fan-out subscriptions of the in-memory Kinesis.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{State, lock};
use crate::api::{ShardSubscription, StreamId, SubscriptionEvent};
use crate::error::{KinesisError, KinesisErrorKind};

/// How long the service keeps a subscription open.
pub(super) const SUBSCRIPTION_LIFETIME: Duration = Duration::from_secs(300);

/// How often an idle subscription still gets an (empty) event, as kinesis-local does.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Most records in one event.
const MAX_EVENT_RECORDS: usize = 10_000;

/// A subscription refused inside its event stream: one error, then the end.
#[derive(Debug)]
pub(super) struct RefusedSubscription(pub(super) Option<KinesisError>);

#[async_trait]
impl ShardSubscription for RefusedSubscription {
    async fn next_event(&mut self) -> Option<Result<SubscriptionEvent, KinesisError>> {
        self.0.take().map(Err)
    }
}

/// A live in-memory subscription: pushes new records as they arrive (an empty event each second
/// when there are none), the children at the end of a closed shard, and ends after five minutes
/// of the tokio clock.
#[derive(Debug)]
pub(super) struct MemorySubscription {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) id: u64,
    /// (consumer ARN, shard id).
    pub(super) key: (String, String),
    pub(super) stream: String,
    /// The next record to push.
    pub(super) index: usize,
    pub(super) expires: Instant,
    pub(super) next_heartbeat: Instant,
    pub(super) ended: bool,
}

impl MemorySubscription {
    fn release(&mut self, state: &mut State) {
        self.ended = true;
        state.dropped_subscriptions.remove(&self.id);
        if state.subscriptions.get(&self.key) == Some(&self.id) {
            state.subscriptions.remove(&self.key);
        }
    }

    /// The next event if there is one to send now.
    fn poll_event(&mut self) -> Option<Option<Result<SubscriptionEvent, KinesisError>>> {
        let state_arc = self.state.clone();
        let mut state = lock(&state_arc);
        let now = Instant::now();
        if self.ended {
            return Some(None);
        }
        if state.dropped_subscriptions.contains(&self.id) {
            self.release(&mut state);
            return Some(Some(Err(KinesisError::new(
                KinesisErrorKind::Unavailable,
                "injected: subscription dropped",
            ))));
        }
        if now >= self.expires {
            self.release(&mut state);
            return Some(None);
        }
        let wall = state.now();
        let found = state
            .stream(&StreamId::Name(self.stream.clone()))
            .and_then(|(_, s)| Ok((s, s.live_shard(&self.key.1, wall)?)));
        let (s, shard) = match found {
            Ok(found) => found,
            Err(err) => {
                self.release(&mut state);
                return Some(Some(Err(err)));
            }
        };
        let end = (self.index + MAX_EVENT_RECORDS).min(shard.records.len());
        let start = self.index.min(end);
        let at_end = end == shard.records.len() && shard.ending_sequence.is_some();
        if start == end && !at_end && now < self.next_heartbeat {
            return None;
        }
        let records = shard.records(start..end);
        let last_sent = end.checked_sub(1).and_then(|i| shard.records.get(i));
        let millis_behind_latest = shard.millis_behind(end);
        let child_shards = at_end.then(|| s.children_of(shard));
        let continuation = (!at_end).then(|| {
            last_sent.map_or_else(|| shard.starting_sequence.clone(), |r| r.sequence.clone())
        });
        self.index = end;
        self.next_heartbeat = now + HEARTBEAT;
        if at_end {
            self.release(&mut state);
        }
        Some(Some(Ok(SubscriptionEvent {
            records,
            continuation_sequence_number: continuation,
            millis_behind_latest: Some(millis_behind_latest),
            child_shards,
        })))
    }
}

#[async_trait]
impl ShardSubscription for MemorySubscription {
    async fn next_event(&mut self) -> Option<Result<SubscriptionEvent, KinesisError>> {
        loop {
            if let Some(event) = self.poll_event() {
                return event;
            }
            tokio::time::sleep_until(self.next_heartbeat.min(self.expires)).await;
        }
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        if !self.ended {
            let state = self.state.clone();
            let mut state = lock(&state);
            self.release(&mut state);
        }
    }
}
