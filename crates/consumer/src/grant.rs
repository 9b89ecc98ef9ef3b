//! A lease this worker holds: the counter it last wrote, the checkpoint stored, and whether it is
//! still ours. The renewer and the checkpointer share it and take turns under its lock, so a
//! renewal never races a checkpoint on the same counter (a known KCL trap).

use std::sync::atomic::{AtomicU64, Ordering};

use shardwise_lease_core::{Checkpoint, HashKeyRange, Lease, LeaseKey, PendingCheckpoint, ShardId};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What changes while the lease is held.
#[derive(Debug)]
pub(crate) struct GrantState {
    /// The counter of our last successful write.
    pub(crate) counter: u64,
    /// The checkpoint stored in the lease.
    pub(crate) checkpoint: Checkpoint,
    /// When the lease was last renewed (or taken) successfully: the time the request left.
    pub(crate) renewed_at: Instant,
    /// Whether a prepared (uncommitted) checkpoint is stored beside the checkpoint.
    pub(crate) has_pending: bool,
}

/// One grant of a lease to this worker. A lease lost and taken again is a new grant: the old
/// pipeline's checkpointer holds the old grant and can never write with the new one.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) key: LeaseKey,
    pub(crate) shard_id: ShardId,
    pub(crate) parents: Vec<ShardId>,
    pub(crate) hash_key_range: Option<HashKeyRange>,
    /// The prepared checkpoint found in the lease when it was taken.
    pub(crate) pending: Option<PendingCheckpoint>,
    /// A number unique to this grant within the worker (the KCL's concurrency token).
    pub(crate) token: u64,
    pub(crate) state: Mutex<GrantState>,
    /// Cancelled when the lease is lost (or released): the pipeline stops at once.
    pub(crate) lost: CancellationToken,
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

impl Grant {
    pub(crate) fn new(lease: &Lease, shard_id: ShardId) -> Self {
        Self {
            key: lease.key.clone(),
            shard_id,
            parents: lease.parent_shard_ids.clone(),
            hash_key_range: lease.hash_key_range,
            pending: lease.pending_checkpoint.clone(),
            token: NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(GrantState {
                counter: lease.counter,
                checkpoint: lease.checkpoint.clone(),
                renewed_at: Instant::now(),
                has_pending: lease.pending_checkpoint.is_some(),
            }),
            lost: CancellationToken::new(),
        }
    }

    /// The grant of a lease just taken; `None` when its key names no shard.
    pub(crate) fn for_lease(lease: &Lease) -> Option<Self> {
        let shard = ShardId::new(lease.key.as_str().rsplit(':').next().unwrap_or_default()).ok()?;
        Some(Self::new(lease, shard))
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
}
