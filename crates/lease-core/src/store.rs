//! The `LeaseStore` contract: the few operations every lease backend provides.

use std::fmt;

use async_trait::async_trait;

use crate::checkpoint::{Checkpoint, CheckpointUpdate};
use crate::error::StoreError;
use crate::ids::{LeaseKey, ShardId, WorkerId};
use crate::lease::Lease;
use crate::membership::Membership;

/// The result of a conditional write: it happened, or someone else changed the lease first
/// (or it does not exist). Losing is a normal outcome, not an error.
#[must_use = "a lost race means the write did not happen"]
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Race<T> {
    /// The write happened; the value is what it produced.
    Won(T),
    /// The condition did not hold: the counter or owner moved, or the row is missing (for
    /// `create_if_absent`: the row already exists). Nothing was written.
    Lost,
}

impl<T> Race<T> {
    /// Whether the write happened.
    pub fn is_won(&self) -> bool {
        matches!(self, Self::Won(_))
    }

    /// Whether the write lost.
    pub fn is_lost(&self) -> bool {
        matches!(self, Self::Lost)
    }

    /// The value, when the write happened.
    pub fn won(self) -> Option<T> {
        match self {
            Self::Won(value) => Some(value),
            Self::Lost => None,
        }
    }

    /// Maps the value of a won race.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Race<U> {
        match self {
            Self::Won(value) => Race::Won(f(value)),
            Self::Lost => Race::Lost,
        }
    }
}

/// A row that could not be read as a lease, reported beside the good ones by
/// [`LeaseStore::list`] so that one bad row does not hide the rest.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CorruptLease {
    /// The stored key as text (empty when the key itself is missing).
    pub raw_key: String,
    /// What is wrong with the row.
    pub reason: String,
}

impl fmt::Display for CorruptLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease row {:?}: {}", self.raw_key, self.reason)
    }
}

/// Every lease of a table or namespace, read with strong consistency.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct LeaseListing {
    /// The rows that are valid leases, sorted by key.
    pub leases: Vec<Lease>,
    /// The rows that are not, with the reason. Callers must not take or delete them.
    pub corrupt: Vec<CorruptLease>,
}

/// A lease backend: DynamoDB, PostgreSQL, Redis, memory.
///
/// Every write is a compare-and-set on the lease counter the caller last saw, increments the
/// counter, and returns [`Race::Lost`] when the condition does not hold. The writes of a
/// lease's holder (renew, checkpoint, mark ended, evict) also require the writer to be its
/// [holder](Lease::holder): the owner, or during a hand-off the checkpoint owner.
///
/// # Hand-off
///
/// A worker that wants a live worker's lease asks for it instead of taking it, so that no
/// record is processed twice: [`request_handoff`](LeaseStore::request_handoff) makes it the
/// owner and the holder the checkpoint owner. The holder's next write loses its race (the
/// counter moved); it reads the lease, sees itself as checkpoint owner, lets its processor
/// checkpoint, and gives the lease up with [`evict`](LeaseStore::evict), which during a
/// hand-off completes it (the checkpoint owner is removed, the new owner stays). The new owner
/// starts only once the checkpoint owner is gone. A holder that dies mid-hand-off stops
/// renewing, so the lease expires by the usual rule and anyone may [`take`](LeaseStore::take)
/// it, which ends the hand-off. Errors are faults
/// (the store cannot be reached, a row is corrupt, the request is invalid);
/// [`StoreError::is_retryable`] says whether retrying helps.
///
/// Counters and sub-sequence numbers are `u64` in the model, but stores may hold them as signed
/// 64-bit integers (PostgreSQL `BIGINT`, Redis integers): values above `i64::MAX` may be refused
/// with [`InvalidArgument`](crate::StoreErrorKind::InvalidArgument). No lease gets near that.
///
/// The trait is object safe: workers hold an `Arc<dyn LeaseStore>`. Conveniences built on these
/// operations live in [`LeaseStoreExt`]. Every implementation must pass the conformance suite
/// in the `testkit` module (feature `testkit`).
#[async_trait]
pub trait LeaseStore: fmt::Debug + Send + Sync + 'static {
    /// Creates the table, schema or index the store needs, when missing. Idempotent.
    async fn create_table_if_missing(&self) -> Result<(), StoreError>;

    /// Every lease, sorted by key. Each row is read with strong consistency (it reflects every
    /// write acknowledged before the read of its page); a listing that spans several pages is not
    /// one snapshot across them. Pagination happens inside the store.
    async fn list(&self) -> Result<LeaseListing, StoreError>;

    /// One lease, strongly consistent; `None` when absent. A corrupt row is an error of kind
    /// [`Corrupt`](crate::StoreErrorKind::Corrupt).
    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError>;

    /// Stores `lease` as given, unless a row with its key exists ([`Race::Lost`]).
    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, StoreError>;

    /// Makes `new_owner` the owner, if the counter is still `expected_counter`, whoever owns it
    /// now. Counts an owner switch when the owner changes. Ends a pending hand-off (the
    /// checkpoint owner is removed).
    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError>;

    /// Increments the counter, if `owner` holds the lease at `expected_counter`. Returns the new
    /// counter.
    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError>;

    /// Renews several leases of `owner`, returning one outcome per input, in input order. A
    /// store that can do it in one round trip must; this default renews one by one. Callers pass
    /// each key at most once; what a store does with a repeated key is unspecified.
    async fn renew_many(
        &self,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        let mut outcomes = Vec::with_capacity(leases.len());
        for (key, counter) in leases {
            outcomes.push(self.renew(key, owner, *counter).await);
        }
        outcomes
    }

    /// Gives the lease up, if `owner` holds it at `expected_counter`: with a hand-off pending,
    /// to the worker it is being handed to (the checkpoint owner is removed, the owner stays:
    /// the hand-off completes); otherwise to nobody (the owner is removed).
    async fn evict(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<Lease>, StoreError>;

    /// Writes a checkpoint (and pending checkpoint), if `owner` holds the lease at
    /// `expected_counter`. Resets the owner-switch count. A checkpoint behind the stored one is
    /// refused with an error of kind
    /// [`CheckpointRegression`](crate::StoreErrorKind::CheckpointRegression) and nothing changes.
    /// When the owner or counter does not match, the answer is [`Race::Lost`] whatever the
    /// position (a lost race is reported before a regression).
    async fn update_checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Race<Lease>, StoreError>;

    /// Records that the shard ended and was fully processed: checkpoint `SHARD_END`, the child
    /// shard ids, no pending checkpoint, owner switches reset to 0; if `owner` holds the lease at
    /// `expected_counter`.
    async fn mark_ended(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        children: &[ShardId],
    ) -> Result<Race<Lease>, StoreError>;

    /// Asks `holder` to hand the lease to `new_owner`: if `holder` owns the lease at
    /// `expected_counter` and no hand-off is pending, `new_owner` becomes the owner and `holder`
    /// the checkpoint owner, who keeps holding the lease until it gives it up with
    /// [`evict`](LeaseStore::evict). Increments the counter (so that the holder's next write
    /// loses and it learns of the request) and counts an owner switch. Asking a worker to hand
    /// a lease to itself is refused with an error of kind
    /// [`InvalidArgument`](crate::StoreErrorKind::InvalidArgument).
    async fn request_handoff(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        holder: &WorkerId,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError>;

    /// Moves a lease's checkpoint anywhere, even backwards (an operator's reset), if its
    /// counter is still `expected_counter`, whoever owns it: the lease becomes free, with
    /// `checkpoint`, no pending checkpoint, no owner switches, and the counter one higher, so
    /// that every earlier holder stays fenced out; a pending hand-off ends. One conditional write: the row is never
    /// missing, even for a moment, whatever fails.
    async fn reset_checkpoint(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        checkpoint: &Checkpoint,
    ) -> Result<Race<Lease>, StoreError>;

    /// Deletes the lease, if its counter is still `expected_counter`.
    async fn delete(&self, key: &LeaseKey, expected_counter: u64) -> Result<Race<()>, StoreError>;

    /// Increments `worker`'s heartbeat in the membership record and returns the new value:
    /// with `expected` `None` whatever it was (adding the worker at 1 when it is not a
    /// member, as a worker does when it starts); with `Some(n)` only if it is still `n`
    /// ([`Race::Lost`] otherwise, a missing entry included), so that a process whose heartbeat
    /// another process with the same worker id moved learns it. Each worker writes only its
    /// own entry: heartbeats of different workers never contend.
    async fn heartbeat(
        &self,
        worker: &WorkerId,
        expected: Option<u64>,
    ) -> Result<Race<u64>, StoreError>;

    /// The membership record: every member's heartbeat and the table version (0 and no
    /// members before anything was written), read with strong consistency in one call.
    async fn membership(&self) -> Result<Membership, StoreError>;

    /// Increments the table version; returns the new version.
    async fn bump_version(&self) -> Result<u64, StoreError>;

    /// Removes `worker` from the membership record, if its heartbeat is still
    /// `expected_heartbeat` (a worker leaving, or a dead member forgotten).
    async fn leave(
        &self,
        worker: &WorkerId,
        expected_heartbeat: u64,
    ) -> Result<Race<()>, StoreError>;
}

/// The argument check every store makes before [`LeaseStore::request_handoff`]: a worker
/// cannot be asked to hand a lease to itself.
pub fn validate_handoff(holder: &WorkerId, new_owner: &WorkerId) -> Result<(), StoreError> {
    if holder == new_owner {
        return Err(StoreError::new(
            crate::StoreErrorKind::InvalidArgument,
            format!("a hand-off from {holder} to itself"),
        ));
    }
    Ok(())
}

/// Conveniences built from [`LeaseStore`] operations; implemented for every store.
#[async_trait]
pub trait LeaseStoreExt: LeaseStore {
    /// The leases whose recorded owner is `worker`.
    async fn leases_owned_by(&self, worker: &WorkerId) -> Result<Vec<Lease>, StoreError> {
        let listing = self.list().await?;
        Ok(listing
            .leases
            .into_iter()
            .filter(|l| l.is_owned_by(worker))
            .collect())
    }
}

impl<S: LeaseStore + ?Sized> LeaseStoreExt for S {}
