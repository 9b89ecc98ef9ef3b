//! Exactly-once effects: an application's writes and its checkpoint committed in one
//! transaction of the lease store, fenced by the lease.
//!
//! [`Checkpointer::commit`](crate::Checkpointer::commit) hands the application's writes (a
//! PostgreSQL transaction, DynamoDB transaction items, a closure for the in-memory store) to a
//! [`TransactionalStore`], which commits them together with the checkpoint update only if the
//! lease is still this grant's. The condition is the one every checkpoint has (`holder = this
//! worker AND counter = the counter this grant last wrote`), evaluated inside the transaction
//! at commit time, so renewals during a long transaction do not fight it: the grant follows
//! its own renewals, and a counter it does not know means another worker wrote.
//!
//! Together with two rules of the checkpointer, every record's effects are then applied once:
//! - a transactional checkpoint must move past the stored one
//!   ([`CheckpointError::NotAhead`](crate::CheckpointError::NotAhead)), so a transaction can
//!   never commit effects of records already covered;
//! - a batch retried after a failed `process_records` is handed over without the records the
//!   processor's own checkpoints already cover, once any commit whose answer was lost is
//!   settled by reading the lease.
//!
//! See `docs/exactly-once-design.md` for the design and its proof obligations.

use std::future::Future;

use shardwise_lease_core::{
    CheckpointUpdate, Lease, LeaseKey, MemoryLeaseStore, Race, StoreError, WorkerId,
};

use crate::grant::Grant;

/// What a transactional checkpoint must match and what it writes: the lease, its holder, the
/// counter the grant knows, and the checkpoint update. Given by the checkpointer to
/// [`TransactionalStore::commit_fenced`].
#[derive(Debug)]
pub struct Fence<'a> {
    grant: &'a Grant,
    worker: &'a WorkerId,
    counter: u64,
    update: CheckpointUpdate,
}

impl<'a> Fence<'a> {
    pub(crate) fn new(
        grant: &'a Grant,
        worker: &'a WorkerId,
        counter: u64,
        update: CheckpointUpdate,
    ) -> Self {
        Self {
            grant,
            worker,
            counter,
            update,
        }
    }

    /// The lease.
    pub fn key(&self) -> &LeaseKey {
        &self.grant.key
    }

    /// The worker that must hold the lease.
    pub fn worker(&self) -> &WorkerId {
        self.worker
    }

    /// The counter the lease must be at.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// The checkpoint to write.
    pub fn update(&self) -> &CheckpointUpdate {
        &self.update
    }

    /// After the fenced update matched nothing: judges the lease as the store holds it now
    /// (`None` when its row is gone), read inside the transaction where the store can lock it.
    /// `true` when the lease is still this grant's at another counter (another worker asked for
    /// it, which moves the counter without taking it): [`Fence::counter`] is then the new
    /// counter, and the store tries the update once more. `false` when the lease is lost: the
    /// store must roll everything back.
    pub fn still_held(&mut self, stored: Option<Lease>) -> bool {
        if !self.grant.judge(stored, self.worker) {
            return false;
        }
        self.counter = self.grant.state().counter;
        true
    }
}

/// Why a transactional commit did not happen, as a [`TransactionalStore`] reports it.
#[derive(Debug)]
#[non_exhaustive]
pub enum CommitError {
    /// The lease is no longer this grant's: nothing was applied.
    LeaseLost,
    /// The store failed before the commit: nothing was applied.
    NotApplied(StoreError),
    /// The commit itself failed: it may or may not have been applied.
    Unknown(StoreError),
    /// The store refused the transaction because of one of the application's own writes (a
    /// failed condition of its own, say): nothing was applied.
    Refused(String),
}

/// A lease store that can commit an application's writes and a checkpoint in one transaction,
/// fenced by the lease: both are applied, or neither.
///
/// Implemented for [`MemoryLeaseStore`] (writes are a closure run under the store's lock),
/// and behind the features `postgres` and `dynamodb` for the PostgreSQL store (writes are the
/// application's `sqlx` transaction on the same database) and the DynamoDB store (writes are
/// `TransactWriteItem`s, 99 at most). The Redis store has none: a Redis transaction is not
/// durable across a failover (see `docs/exactly-once-design.md`).
///
/// An implementation must apply `writes` and [`Fence::update`] atomically, and only if the
/// lease is held by [`Fence::worker`] at [`Fence::counter`] when the transaction commits. When
/// that condition fails it reads the lease (locked, where it can) and asks
/// [`Fence::still_held`]; it tries once more at the new counter when that says so, and
/// otherwise returns [`CommitError::LeaseLost`] with nothing applied.
pub trait TransactionalStore: Send + Sync {
    /// The application's writes to commit with the checkpoint.
    type Writes: Send;

    /// Commits `writes` and the fence's checkpoint in one transaction; the lease's new counter
    /// when committed.
    fn commit_fenced(
        &self,
        writes: Self::Writes,
        fence: &mut Fence<'_>,
    ) -> impl Future<Output = Result<u64, CommitError>> + Send;
}

impl TransactionalStore for MemoryLeaseStore {
    type Writes = Box<dyn FnOnce() + Send>;

    async fn commit_fenced(
        &self,
        writes: Self::Writes,
        fence: &mut Fence<'_>,
    ) -> Result<u64, CommitError> {
        let mut writes = Some(writes);
        for _ in 0..2 {
            let outcome = self.update_checkpoint_with(
                fence.key(),
                fence.worker(),
                fence.counter(),
                fence.update(),
                || {
                    if let Some(writes) = writes.take() {
                        writes();
                    }
                },
            );
            match outcome.map_err(CommitError::NotApplied)? {
                Race::Won(lease) => return Ok(lease.counter),
                Race::Lost => {
                    let stored = shardwise_lease_core::LeaseStore::get(self, fence.key())
                        .await
                        .map_err(CommitError::NotApplied)?;
                    if !fence.still_held(stored) {
                        return Err(CommitError::LeaseLost);
                    }
                }
            }
        }
        Err(CommitError::LeaseLost)
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use shardwise_lease_postgres::PostgresLeaseStore;
    use shardwise_lease_postgres::sqlx::{Postgres, Transaction};

    use super::{CommitError, Fence, Race, TransactionalStore};

    /// The application's `sqlx` transaction, begun on a pool of the database that holds the
    /// lease table (the application's own pool, or any other), in PostgreSQL's
    /// default isolation level, `READ COMMITTED`. (Under `REPEATABLE READ` or `SERIALIZABLE`
    /// a renewal of the lease after the transaction's first statement fails the commit with a
    /// serialization error: nothing is applied, and the processor may try again.)
    impl TransactionalStore for PostgresLeaseStore {
        type Writes = Transaction<'static, Postgres>;

        async fn commit_fenced(
            &self,
            mut writes: Self::Writes,
            fence: &mut Fence<'_>,
        ) -> Result<u64, CommitError> {
            for _ in 0..2 {
                let outcome = self
                    .update_checkpoint_in(
                        &mut writes,
                        fence.key(),
                        fence.worker(),
                        fence.counter(),
                        fence.update(),
                    )
                    .await
                    .map_err(CommitError::NotApplied)?;
                match outcome {
                    Race::Won(counter) => {
                        writes.commit().await.map_err(|e| {
                            CommitError::Unknown(shardwise_lease_postgres::commit_error(e))
                        })?;
                        return Ok(counter);
                    }
                    Race::Lost => {
                        // Locked until the transaction ends: what it says holds at commit.
                        let stored = self
                            .lock_lease_in(&mut writes, fence.key())
                            .await
                            .map_err(CommitError::NotApplied)?;
                        if !fence.still_held(stored) {
                            // Dropping the transaction rolls it back.
                            return Err(CommitError::LeaseLost);
                        }
                    }
                }
            }
            Err(CommitError::LeaseLost)
        }
    }
}

#[cfg(feature = "dynamodb")]
mod dynamodb {
    use shardwise_lease_core::LeaseStore;
    use shardwise_lease_dynamodb::{DynamoDbLeaseStore, TransactWriteItem, Transacted};

    use super::{CommitError, Fence, TransactionalStore};

    /// The application's items, committed in one `TransactWriteItems` with the lease's fenced
    /// update: 99 at most (the service allows 100 per transaction, one is the lease's), 4 MB
    /// in all. A cancellation for any of them is [`CommitError::Refused`], with the reasons.
    impl TransactionalStore for DynamoDbLeaseStore {
        type Writes = Vec<TransactWriteItem>;

        async fn commit_fenced(
            &self,
            writes: Self::Writes,
            fence: &mut Fence<'_>,
        ) -> Result<u64, CommitError> {
            for _ in 0..2 {
                let outcome = self
                    .transact_checkpoint(
                        fence.key(),
                        fence.worker(),
                        fence.counter(),
                        fence.update(),
                        writes.clone(),
                    )
                    .await
                    .map_err(|e| {
                        // An answer that never came may hide a transaction applied.
                        if e.is_retryable() {
                            CommitError::Unknown(e)
                        } else {
                            CommitError::NotApplied(e)
                        }
                    })?;
                match outcome {
                    Transacted::Committed(counter) => return Ok(counter),
                    Transacted::Refused(reasons) => return Err(CommitError::Refused(reasons)),
                    Transacted::LeaseMoved => {
                        let stored = self
                            .get(fence.key())
                            .await
                            .map_err(CommitError::NotApplied)?;
                        if !fence.still_held(stored) {
                            return Err(CommitError::LeaseLost);
                        }
                    }
                }
            }
            Err(CommitError::LeaseLost)
        }
    }
}
