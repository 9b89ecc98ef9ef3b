//! The run's log: every record put, every delivery, every successful lease write, every fault,
//! in the order they happened, with the virtual time. The invariants are checked on it, and its
//! tail is the trace a failing seed prints.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shardwise::lease::{Checkpoint, Lease};
use tokio::time::Instant;

/// A lease as it was before or after a write: what the invariants look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// The owner, if any (during a hand-off: the worker it goes to).
    pub owner: Option<String>,
    /// The worker that holds it while a hand-off is pending.
    pub checkpoint_owner: Option<String>,
    /// The counter.
    pub counter: u64,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
}

impl LeaseState {
    /// The worker that holds the lease: the checkpoint owner during a hand-off, else the owner.
    pub fn holder(&self) -> Option<&str> {
        self.checkpoint_owner.as_deref().or(self.owner.as_deref())
    }
}

impl From<&Lease> for LeaseState {
    fn from(lease: &Lease) -> Self {
        Self {
            owner: lease.owner.as_ref().map(ToString::to_string),
            checkpoint_owner: lease.checkpoint_owner.as_ref().map(ToString::to_string),
            counter: lease.counter,
            checkpoint: lease.checkpoint.clone(),
        }
    }
}

/// A lease write that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// A lease created.
    Create,
    /// A lease taken (free, expired or stolen).
    Take,
    /// A lease renewed.
    Renew,
    /// A lease released (or, during a hand-off, handed to the worker that asked for it).
    Evict,
    /// A hand-off asked for.
    RequestHandoff,
    /// A checkpoint written.
    Checkpoint,
    /// `SHARD_END` written.
    MarkEnded,
    /// A lease deleted (cleanup).
    Delete,
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// A record put: its id, partition key, shard and sequence number.
    Put {
        /// The record's id (its data is `r{id}`).
        id: usize,
        /// Its partition key.
        key: String,
        /// The shard it went to.
        shard: String,
        /// Its sequence number.
        sequence: String,
    },
    /// Records handed to a processor, in order. (Workers are named by process: `w1#2` is the
    /// second process of worker `w1`.)
    Delivered {
        /// The worker whose processor got them.
        worker: String,
        /// Their shard.
        shard: String,
        /// The records' ids, in the order handed over.
        ids: Vec<usize>,
    },
    /// A batch whose `process_records` returned `Ok`: its records are done.
    Processed {
        /// The worker whose processor did them.
        worker: String,
        /// Their shard.
        shard: String,
        /// The records' ids, in order.
        ids: Vec<usize>,
    },
    /// A heartbeat that succeeded.
    Beat {
        /// The worker process.
        worker: String,
    },
    /// A lease write that succeeded, by a worker, at the counter it expected.
    Wrote {
        /// The worker that wrote.
        worker: String,
        /// What it wrote.
        write: Write,
        /// The lease.
        key: String,
        /// The counter the write was conditional on (none for a create).
        expected: Option<u64>,
        /// The lease just before (none for a create).
        before: Option<LeaseState>,
        /// The lease just after (none for a delete).
        after: Option<LeaseState>,
    },
    /// A shard split or merge: the new shards and their parents.
    Resharded {
        /// The new shards.
        children: Vec<String>,
        /// The shards they replace.
        parents: Vec<String>,
    },
    /// A step of the plan, applied.
    Step(String),
    /// Something the run noticed (a worker ended, the quiet phase began).
    Note(String),
}

/// An event and when it happened.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Virtual time since the run started.
    pub at: Duration,
    /// What happened.
    pub event: Event,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>9.3}s ", self.at.as_secs_f64())?;
        match &self.event {
            Event::Put { id, key, shard, .. } => write!(f, "put r{id} key {key} -> {shard}"),
            Event::Delivered { worker, shard, ids } => {
                let first = ids.first().copied().unwrap_or_default();
                let last = ids.last().copied().unwrap_or_default();
                write!(
                    f,
                    "{worker} got {} records of {shard} (r{first}..r{last})",
                    ids.len()
                )
            }
            Event::Processed { worker, shard, ids } => {
                write!(f, "{worker} processed {} records of {shard}", ids.len())
            }
            Event::Beat { worker } => write!(f, "{worker} heartbeat"),
            Event::Wrote {
                worker,
                write,
                key,
                before,
                after,
                ..
            } => {
                let show = |s: &Option<LeaseState>| match s {
                    Some(s) => format!(
                        "{}{}@{} {}",
                        s.owner.as_deref().unwrap_or("-"),
                        s.checkpoint_owner
                            .as_deref()
                            .map(|c| format!(" (held by {c})"))
                            .unwrap_or_default(),
                        s.counter,
                        s.checkpoint
                    ),
                    None => "none".into(),
                };
                write!(
                    f,
                    "{worker} {write:?} {key}: {} -> {}",
                    show(before),
                    show(after)
                )
            }
            Event::Resharded { children, parents } => {
                write!(f, "reshard {parents:?} -> {children:?}")
            }
            Event::Step(step) => write!(f, "STEP {step}"),
            Event::Note(note) => write!(f, "note: {note}"),
        }
    }
}

/// The shared log.
#[derive(Debug, Clone)]
pub struct Log {
    inner: Arc<Mutex<Vec<Entry>>>,
    start: Instant,
}

impl Log {
    /// An empty log, with time counted from now.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            start: Instant::now(),
        }
    }

    /// Appends an event at the current virtual time.
    pub fn push(&self, event: Event) {
        let at = self.start.elapsed();
        self.lock().push(Entry { at, event });
    }

    /// Virtual time since the run started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Everything so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // Entries are pushed whole: a poisoned lock still holds a consistent log.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Log {
    fn default() -> Self {
        Self::new()
    }
}
