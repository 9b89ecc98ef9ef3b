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
//! Together with three rules of the checkpointer, every record's effects are then applied once:
//! - a transactional checkpoint must move past the stored one
//!   ([`CheckpointError::NotAhead`](crate::CheckpointError::NotAhead));
//! - a batch retried after a failed `process_records` is handed over without the records the
//!   processor's own checkpoints already cover, once any commit whose answer was lost is
//!   settled by reading the lease;
//! - a write whose answer was lost is taken for this grant's own only if the lease shows the
//!   checkpoint it would have written, so a commit by another process with the same worker id
//!   is never adopted.
//!
//! See `docs/exactly-once-design.md` for the design and its proof obligations.

use std::future::Future;

use shardwise_lease_core::{
    CheckpointUpdate, Lease, LeaseKey, MemoryLeaseStore, Race, StoreError, StoreErrorKind, WorkerId,
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
    /// `Ok` when the lease is still this grant's at another counter (another worker asked for
    /// it, which moves the counter without taking it): [`Fence::counter`] is then the new
    /// counter, and the store tries the update once more. Otherwise nothing may be applied:
    /// [`CommitError::LeaseLost`] when the lease is lost, [`CommitError::NotApplied`] when it
    /// is still held at the same counter (only the checkpoint's never-backwards condition can
    /// have failed).
    pub fn after_miss(&mut self, stored: Option<Lease>) -> Result<(), CommitError> {
        let before = self.counter;
        if !self.grant.judge(stored, self.worker) {
            return Err(CommitError::LeaseLost);
        }
        self.counter = self.grant.state().counter;
        if self.counter == before {
            return Err(CommitError::NotApplied(
                StoreError::new(
                    StoreErrorKind::CheckpointRegression,
                    format!(
                        "checkpoint {} is behind the stored checkpoint",
                        self.update.checkpoint
                    ),
                )
                .with_lease_key(self.grant.key.as_str()),
            ));
        }
        Ok(())
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
/// that condition fails it reads the lease (locked, where it can) and hands it to
/// [`Fence::after_miss`]; it tries once more at the new counter when that says so, and
/// otherwise returns its error with nothing applied.
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
                    fence.after_miss(stored)?;
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
    /// serialization error: nothing is applied, and the processor may try again.) The fenced
    /// update and the `COMMIT` run on that pool's connection, with its statement timeout, if
    /// any, not the lease store's: the grant's other writes wait for them, so a pool without a
    /// timeout can cost the lease its renewals (the worker then gives it up, safely).
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
                        // On an error, dropping the transaction rolls it back.
                        fence.after_miss(stored)?;
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

    use super::{CommitError, Fence, StoreErrorKind, TransactionalStore};

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
                        // Refused before it was sent; any other failure may hide a transaction
                        // applied (a timeout, a broken connection, a 5xx after the fact).
                        if e.kind() == StoreErrorKind::InvalidArgument {
                            CommitError::NotApplied(e)
                        } else {
                            CommitError::Unknown(e)
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
                        fence.after_miss(stored)?;
                    }
                }
            }
            Err(CommitError::LeaseLost)
        }
    }
}
