//! A lease this worker holds: the counter it last wrote, the checkpoint stored, and whether it is
//! still ours. The renewer, the checkpointer and the coordinator's release share it.
//!
//! Every conditional write of a grant (renewal, checkpoint, release) must start from the counter
//! the one before it left, so they take turns through [`Grant::writing`], held across one store
//! call, which the store timeout bounds. The renewer never waits for a turn: it skips a grant
//! whose checkpoint is in flight (that write, when it succeeds, renews the lease too), so one
//! slow call can cost its own lease a renewal, never another lease's.
//!
//! A write that failed in a way that may still have been applied (a timeout, a dropped
//! connection) leaves the counter in doubt: before its next write, the grant reads the lease and
//! adopts what its own write left, instead of losing the lease to its own renewal.
//!
//! A write that lost its race is not the end of the grant either: the lease may have been asked
//! for by another worker (a hand-off request moves the counter). The grant reads it back; if it
//! still holds the lease, as the checkpoint owner, it adopts the counter and asks its pipeline to
//! end gracefully ([`Grant::stop`]), so that the processor checkpoints and the lease is handed
//! over when it is released.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use shardwise_lease_core::{
    Checkpoint, HashKeyRange, Lease, LeaseKey, LeaseStore, PendingCheckpoint, ShardId, StoreError,
    WorkerId,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What changes while the lease is held.
#[derive(Debug, Clone)]
pub(crate) struct GrantState {
    /// The counter of our last successful write.
    pub(crate) counter: u64,
    /// The checkpoint stored in the lease.
    pub(crate) checkpoint: Checkpoint,
    /// When the request of the last successful write (taking, renewal or checkpoint) left: the
    /// lease was ours from then for at least a lease duration.
    pub(crate) renewed_at: Instant,
    /// Whether a prepared (uncommitted) checkpoint is stored beside the checkpoint.
    pub(crate) has_pending: bool,
    /// A write failed in a way that may have applied it (the counter may be one behind): the
    /// checkpoint it would have left. Its step is adopted only if the lease shows that
    /// checkpoint, so that a step of another process with this worker id, which moved the
    /// checkpoint elsewhere, is never taken for this grant's own.
    pub(crate) in_doubt: Option<Checkpoint>,
    /// When this worker learned that another worker asked for the lease.
    pub(crate) handoff_since: Option<Instant>,
    /// The worker the lease is being handed to, once the request is accounted for: its counter
    /// step adopted (or, for a request that made none, seen). A further step is then someone
    /// else's, unless it is this grant's own write in doubt.
    pub(crate) handing_to: Option<WorkerId>,
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
    /// The turn to write: held across one conditional write of this lease.
    pub(crate) writing: tokio::sync::Mutex<()>,
    /// Never held across an await.
    state: Mutex<GrantState>,
    /// Cancelled when the lease is lost (or released): the pipeline stops at once.
    pub(crate) lost: CancellationToken,
    /// Cancelled to end the pipeline gracefully (the processor gets `shutdown_requested`): on
    /// shutdown, or when a hand-off is asked for.
    pub(crate) stop: CancellationToken,
    /// Whether a successful write of the lease proves it held (per-lease renewals). Not with
    /// heartbeats: other workers judge the lease by the worker's heartbeat alone, so only a
    /// heartbeat renews it.
    pub(crate) writes_renew: bool,
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
            writing: tokio::sync::Mutex::new(()),
            state: Mutex::new(GrantState {
                counter: lease.counter,
                checkpoint: lease.checkpoint.clone(),
                renewed_at: Instant::now(),
                has_pending: lease.pending_checkpoint.is_some(),
                in_doubt: None,
                handoff_since: None,
                handing_to: None,
            }),
            lost: CancellationToken::new(),
            stop: CancellationToken::new(),
            writes_renew: true,
        }
    }

    /// The grant of a worker that heartbeats: only its heartbeats renew it.
    pub(crate) fn renewed_by_heartbeat(mut self) -> Self {
        self.writes_renew = false;
        self
    }

    /// The grant of a lease just taken; `None` when its key names no shard.
    pub(crate) fn for_lease(lease: &Lease) -> Option<Self> {
        Some(Self::new(lease, lease.key.shard_id()?))
    }

    /// The state, to read or change; only ever held briefly.
    pub(crate) fn state(&self) -> MutexGuard<'_, GrantState> {
        // Every change replaces whole fields: the state behind a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Notes a failed write of this grant that would have left the checkpoint at `leaves`
    /// (`None`: where it is, as a renewal does). One that may have been applied (a retryable
    /// error: unavailable, throttled, timed out) leaves the counter in doubt.
    pub(crate) fn failed_write(&self, error: &StoreError, leaves: Option<&Checkpoint>) {
        if error.is_retryable() {
            self.in_doubt(leaves);
        }
    }

    /// The counter is in doubt after a write that would have left the checkpoint at `leaves`
    /// (`None`: where it is).
    pub(crate) fn in_doubt(&self, leaves: Option<&Checkpoint>) {
        let mut state = self.state();
        let leaves = leaves.cloned().unwrap_or_else(|| state.checkpoint.clone());
        state.in_doubt = Some(leaves);
    }

    /// A listing shows the lease asked for by another worker while this grant holds it at the
    /// counter listed: a request that made no counter step (as the Java KCL 3.x writes it).
    /// Hands the lease off. A listing at another counter is left to the next write, whose read
    /// back decides ([`Grant::reread`]).
    pub(crate) fn asked_in_listing(&self, lease: &Lease) {
        {
            let mut state = self.state();
            if lease.counter != state.counter || lease.owner.is_none() {
                return;
            }
            if state.handing_to.is_none() {
                state.handing_to = lease.owner.clone();
            }
        }
        self.hand_off();
    }

    /// Another worker asked for the lease: ends the pipeline gracefully, after which the
    /// lease's release hands it over.
    pub(crate) fn hand_off(&self) {
        let first = {
            let mut state = self.state();
            let first = state.handoff_since.is_none();
            if first {
                state.handoff_since = Some(Instant::now());
            }
            first
        };
        if first {
            tracing::info!(lease = %self.key, "another worker asked for the lease; handing it over once the processor has checkpointed");
        }
        self.stop.cancel();
    }

    /// Whether another worker asked for the lease.
    pub(crate) fn is_handing_off(&self) -> bool {
        self.state().handoff_since.is_some()
    }

    /// In the grant's turn to write, before writing: when the counter is in doubt, reads the
    /// lease back ([`Grant::reread`]). `Err` when the lease cannot be read: the doubt stays and
    /// nothing should be written.
    pub(crate) async fn settle_doubt(
        &self,
        store: &dyn LeaseStore,
        me: &WorkerId,
    ) -> Result<(), StoreError> {
        if self.state().in_doubt.is_some() {
            self.reread(store, me).await?;
        }
        Ok(())
    }

    /// Reads the lease after a write of this grant lost its race or may have been applied, and
    /// decides whether the grant still holds it. It does when `me` holds the lease (see
    /// [`shardwise_lease_core::Lease::holder`]) at the counter the grant knows, or one higher
    /// because of this grant's own write in doubt or of a hand-off request (`me` is then the
    /// checkpoint owner, and no request was accounted for yet). The grant then adopts the stored counter and checkpoint, and a
    /// pending hand-off ends its pipeline gracefully ([`Grant::hand_off`]). Any other change
    /// means another holder came between: the lease is lost. Returns whether it is still held;
    /// `Err` when the lease cannot be read (nothing is decided).
    pub(crate) async fn reread(
        &self,
        store: &dyn LeaseStore,
        me: &WorkerId,
    ) -> Result<bool, StoreError> {
        let stored = store.get(&self.key).await?;
        Ok(self.judge(stored, me))
    }

    /// [`Grant::reread`] on a lease already read (`None`: the row is gone): decides, adopts,
    /// and returns whether the grant still holds the lease.
    pub(crate) fn judge(&self, stored: Option<Lease>, me: &WorkerId) -> bool {
        let mut state = self.state();
        let counter = state.counter;
        let held = stored.filter(|lease| {
            if !lease.is_held_by(me) {
                return false;
            }
            if lease.counter == counter {
                return true;
            }
            if lease.counter != counter.saturating_add(1) {
                return false;
            }
            // This grant's own write, applied but not answered: the lease shows what it wrote.
            let own_write = state
                .in_doubt
                .as_ref()
                .is_some_and(|leaves| lease.checkpoint == *leaves);
            match (&lease.checkpoint_owner, &state.handing_to) {
                // The request's step, which leaves the checkpoint. (A request is one step, and
                // comes once.)
                (Some(_), None) => lease.checkpoint == state.checkpoint,
                // Handing off already: only this grant's own write; any other step is someone
                // else's (a Java KCL 2.x worker's take, which knows nothing of
                // `checkpointOwner` and leaves it, say).
                (Some(_), Some(to)) => own_write && lease.owner.as_ref() == Some(to),
                (None, handing_to) => own_write && handing_to.is_none(),
            }
        });
        state.in_doubt = None;
        let Some(lease) = held else {
            drop(state);
            self.lost.cancel();
            return false;
        };
        state.counter = lease.counter;
        state.checkpoint = lease.checkpoint.clone();
        state.has_pending = lease.pending_checkpoint.is_some();
        if lease.is_handing_off() && state.handing_to.is_none() {
            state.handing_to = lease.owner.clone();
        }
        drop(state);
        if lease.is_handing_off() {
            self.hand_off();
        }
        !self.is_lost()
    }
}

#[cfg(test)]
mod tests {
    use shardwise_lease_core::{CheckpointUpdate, MemoryLeaseStore, Race};

    use super::*;

    /// A lease held by `me` at its counter, and the grant for it.
    async fn held(store: &MemoryLeaseStore, me: &WorkerId) -> (LeaseKey, Grant) {
        let key = LeaseKey::new("shardId-0").unwrap();
        let lease = Lease::new(key.clone(), Checkpoint::TrimHorizon);
        assert!(store.create_if_absent(&lease).await.unwrap().is_won());
        let taken = store.take(&key, 0, me).await.unwrap().won().unwrap();
        (key, Grant::for_lease(&taken).unwrap())
    }

    fn worker(name: &str) -> WorkerId {
        WorkerId::new(name).unwrap()
    }

    #[tokio::test]
    async fn a_handoff_request_is_adopted_not_lost() {
        let store = MemoryLeaseStore::new();
        let me = worker("me");
        let (key, grant) = held(&store, &me).await;
        let asked = store.request_handoff(&key, 1, &me, &worker("thief")).await;
        assert!(matches!(asked, Ok(Race::Won(_))));
        assert!(store.renew(&key, &me, 1).await.unwrap().is_lost());
        assert!(grant.reread(&store, &me).await.unwrap(), "still held");
        assert_eq!(grant.state().counter, 2, "the request's counter adopted");
        assert!(grant.is_handing_off() && grant.stop.is_cancelled() && !grant.is_lost());
        assert!(store.renew(&key, &me, 2).await.unwrap().is_won());
    }

    #[tokio::test]
    async fn another_holder_in_between_means_lost() {
        let store = MemoryLeaseStore::new();
        let me = worker("me");
        let (key, grant) = held(&store, &me).await;
        // A process with the same worker id takes the lease (a restart while this one froze).
        assert!(store.take(&key, 1, &me).await.unwrap().is_won());
        assert!(!grant.reread(&store, &me).await.unwrap());
        assert!(grant.is_lost() && !grant.is_handing_off());
    }

    #[tokio::test]
    async fn a_write_in_doubt_is_adopted_once() {
        let store = MemoryLeaseStore::new();
        let me = worker("me");
        let (key, grant) = held(&store, &me).await;
        // The renewal was applied but its answer lost.
        assert!(store.renew(&key, &me, 1).await.unwrap().is_won());
        grant.failed_write(&StoreError::unavailable("answer lost"), None);
        grant.settle_doubt(&store, &me).await.unwrap();
        assert_eq!(grant.state().counter, 2);
        assert!(!grant.is_lost() && !grant.is_handing_off());
    }

    #[tokio::test]
    async fn a_request_after_an_unknown_write_is_lost() {
        let store = MemoryLeaseStore::new();
        let me = worker("me");
        let (key, grant) = held(&store, &me).await;
        // Two steps the grant cannot account for: someone wrote as `me`, then a request.
        assert!(store.renew(&key, &me, 1).await.unwrap().is_won());
        let asked = store.request_handoff(&key, 2, &me, &worker("thief")).await;
        assert!(matches!(asked, Ok(Race::Won(_))));
        assert!(!grant.reread(&store, &me).await.unwrap());
        assert!(grant.is_lost());
    }

    /// Once handing off, a further step is someone else's: a Java KCL 2.x worker that takes the
    /// lease leaves `checkpointOwner` as it was, so the row still names this worker.
    #[tokio::test]
    async fn a_step_after_the_request_is_lost() {
        let store = MemoryLeaseStore::new();
        let me = worker("me");
        let (key, grant) = held(&store, &me).await;
        let asked = store.request_handoff(&key, 1, &me, &worker("thief")).await;
        assert!(matches!(asked, Ok(Race::Won(_))));
        assert!(grant.reread(&store, &me).await.unwrap());
        // The row after a KCL 2.x take at counter 2.
        let taken_by_java = MemoryLeaseStore::new();
        let mut row = Lease::new(key.clone(), Checkpoint::TrimHorizon);
        row.owner = Some(worker("java-worker"));
        row.checkpoint_owner = Some(me.clone());
        row.counter = 3;
        assert!(taken_by_java.create_if_absent(&row).await.unwrap().is_won());
        assert!(!grant.reread(&taken_by_java, &me).await.unwrap());
        assert!(grant.is_lost());
    }

    /// The holder's listing can show the request before its next write loses: that must not
    /// use the request up, or the write's read back would take the request's step for someone
    /// else's.
    #[tokio::test]
    async fn a_request_seen_in_a_listing_first_is_still_adopted() {
        let store = MemoryLeaseStore::new();
        let me = worker("me");
        let (key, grant) = held(&store, &me).await;
        let asked = store.request_handoff(&key, 1, &me, &worker("thief")).await;
        let listed = asked.unwrap().won().unwrap();
        grant.asked_in_listing(&listed);
        assert!(store.renew(&key, &me, 1).await.unwrap().is_lost());
        assert!(grant.reread(&store, &me).await.unwrap(), "still held");
        assert!(grant.is_handing_off() && !grant.is_lost());
        assert_eq!(grant.state().counter, 2);
    }

    /// A request that made no counter step (the Java KCL 3.x writes it so) is seen in a
    /// listing only.
    #[tokio::test]
    async fn a_request_without_a_step_is_seen_in_a_listing() {
        let store = MemoryLeaseStore::new();
        let me = worker("me");
        let (key, grant) = held(&store, &me).await;
        let mut listed = store.get(&key).await.unwrap().unwrap();
        listed.owner = Some(worker("kcl3-worker"));
        listed.checkpoint_owner = Some(me.clone());
        grant.asked_in_listing(&listed);
        assert!(grant.is_handing_off() && grant.stop.is_cancelled());
        assert_eq!(grant.state().handing_to, Some(worker("kcl3-worker")));
    }

    /// A write in doubt is adopted only if the lease shows what it would have written: a step
    /// that moved the checkpoint elsewhere is another process's with this worker id (a commit
    /// of records this grant is about to commit too), and the lease is lost.
    #[tokio::test]
    async fn a_step_that_moved_the_checkpoint_elsewhere_is_not_adopted() {
        let store = MemoryLeaseStore::new();
        let me = worker("me");
        let (key, grant) = held(&store, &me).await;
        // This grant's renewal failed, answer unknown; it was not applied. Meanwhile another
        // process with the same id checkpointed at 7.
        let moved = CheckpointUpdate {
            checkpoint: Checkpoint::at(shardwise_lease_core::SequenceNumber::new("7").unwrap(), 0),
            pending: None,
        };
        assert!(
            store
                .update_checkpoint(&key, &me, 1, &moved)
                .await
                .unwrap()
                .is_won()
        );
        grant.failed_write(&StoreError::unavailable("answer lost"), None);
        grant.settle_doubt(&store, &me).await.unwrap();
        assert!(
            grant.is_lost(),
            "a checkpoint this grant never wrote is not adopted"
        );
    }

    /// While handing off, the grant's own write applied but not answered is still its own.
    #[tokio::test]
    async fn a_write_in_doubt_while_handing_off_is_adopted() {
        let store = MemoryLeaseStore::new();
        let me = worker("me");
        let (key, grant) = held(&store, &me).await;
        let asked = store.request_handoff(&key, 1, &me, &worker("thief")).await;
        assert!(matches!(asked, Ok(Race::Won(_))));
        assert!(grant.reread(&store, &me).await.unwrap());
        assert!(store.renew(&key, &me, 2).await.unwrap().is_won());
        grant.failed_write(&StoreError::unavailable("answer lost"), None);
        grant.settle_doubt(&store, &me).await.unwrap();
        assert_eq!(grant.state().counter, 3);
        assert!(!grant.is_lost() && grant.is_handing_off());
    }
}
