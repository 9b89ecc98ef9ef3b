//! The lease: one row per shard, the unit of ownership and of progress.

use crate::checkpoint::{Checkpoint, PendingCheckpoint};
use crate::hash_range::HashKeyRange;
use crate::ids::{LeaseKey, ShardId, WorkerId};

/// One shard's lease, as a store holds it.
///
/// `counter` is the fencing token: every write that changes a lease compares it with the value
/// the writer last saw and increments it, so a stale writer always loses.
///
/// While a hand-off is pending ([`LeaseStore::request_handoff`](crate::LeaseStore::request_handoff)),
/// `owner` names the worker the lease goes to and `checkpoint_owner` the worker that still
/// holds it and processes the shard until it gives it up. [`Lease::holder`] is whoever holds
/// the lease now, in either state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Lease {
    /// The row's key (the shard id, or a stream-qualified shard id).
    pub key: LeaseKey,
    /// The worker holding the lease; `None` when free.
    pub owner: Option<WorkerId>,
    /// The fencing counter, incremented by every write.
    pub counter: u64,
    /// While a hand-off is pending: the worker that still holds the lease (the KCL 3.x
    /// `checkpointOwner`); `owner` is then the worker it is being handed to. `None` otherwise.
    pub checkpoint_owner: Option<WorkerId>,
    /// How far processing of the shard has come.
    pub checkpoint: Checkpoint,
    /// The first phase of a two-phase checkpoint, when one is prepared.
    pub pending_checkpoint: Option<PendingCheckpoint>,
    /// How many times the lease changed owner since the last checkpoint write.
    pub owner_switches_since_checkpoint: u64,
    /// The shards this one was split or merged from (sorted, without duplicates).
    pub parent_shard_ids: Vec<ShardId>,
    /// The shards this one was split or merged into, once it has ended (sorted, no duplicates).
    pub child_shard_ids: Vec<ShardId>,
    /// The hash keys the shard covers, when known.
    pub hash_key_range: Option<HashKeyRange>,
}

impl Lease {
    /// A free lease at counter 0 with the given starting checkpoint.
    pub fn new(key: LeaseKey, checkpoint: Checkpoint) -> Self {
        Self {
            key,
            owner: None,
            counter: 0,
            checkpoint_owner: None,
            checkpoint,
            pending_checkpoint: None,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: Vec::new(),
            child_shard_ids: Vec::new(),
            hash_key_range: None,
        }
    }

    /// Sets the parent shards (sorted and de-duplicated).
    pub fn with_parents(mut self, parents: impl IntoIterator<Item = ShardId>) -> Self {
        self.parent_shard_ids = sorted_set(parents);
        self
    }

    /// Sets the hash-key range.
    pub fn with_hash_key_range(mut self, range: HashKeyRange) -> Self {
        self.hash_key_range = Some(range);
        self
    }

    /// Whether the shard is closed and fully processed (checkpoint `SHARD_END`).
    pub fn is_ended(&self) -> bool {
        self.checkpoint.is_shard_end()
    }

    /// Whether nobody holds the lease.
    pub fn is_free(&self) -> bool {
        self.owner.is_none()
    }

    /// Whether `worker` is the recorded owner (during a hand-off: the worker it goes to).
    pub fn is_owned_by(&self, worker: &WorkerId) -> bool {
        self.owner.as_ref() == Some(worker)
    }

    /// The worker that holds the lease now: the checkpoint owner while a hand-off is pending,
    /// otherwise the owner. Renewals, checkpoints and releases are the holder's.
    pub fn holder(&self) -> Option<&WorkerId> {
        self.checkpoint_owner.as_ref().or(self.owner.as_ref())
    }

    /// Whether `worker` holds the lease now (see [`Lease::holder`]).
    pub fn is_held_by(&self, worker: &WorkerId) -> bool {
        self.holder() == Some(worker)
    }

    /// Whether a hand-off is pending: the holder has been asked to give the lease to `owner`.
    pub fn is_handing_off(&self) -> bool {
        self.checkpoint_owner.is_some()
    }
}

/// Sorts and de-duplicates shard ids; stores keep parent and child ids in this form.
pub fn sorted_set(ids: impl IntoIterator<Item = ShardId>) -> Vec<ShardId> {
    let mut ids: Vec<ShardId> = ids.into_iter().collect();
    ids.sort();
    ids.dedup();
    ids
}
