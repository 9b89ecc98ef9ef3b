//! The lease store as a worker uses it: every call bounded in time, so that a call that never
//! answers (a half-open connection, an exhausted pool) becomes a retryable error instead of a
//! stall.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shardwise_lease_core::{
    Checkpoint, CheckpointUpdate, Lease, LeaseKey, LeaseListing, LeaseStore, Race, ShardId,
    StoreError, WorkerId,
};

/// Passes every call to the store, failing it with a retryable
/// [`Unavailable`](shardwise_lease_core::StoreErrorKind::Unavailable) error when no answer came
/// within the timeout. Listing every lease takes several pages on a big table and holds no
/// lease's turn to write, so it has a bound of its own; creating the table is not bounded: it
/// waits for the table to exist, once, before the worker starts.
#[derive(Debug)]
pub(crate) struct TimedStore {
    inner: Arc<dyn LeaseStore>,
    timeout: Duration,
    list_timeout: Duration,
}

impl TimedStore {
    pub(crate) fn new(
        inner: Arc<dyn LeaseStore>,
        timeout: Duration,
        list_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            timeout,
            list_timeout,
        }
    }

    async fn timed<T>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        bounded(self.timeout, operation, call).await
    }

    fn timed_out(&self, operation: &str) -> StoreError {
        timed_out(self.timeout, operation)
    }
}

async fn bounded<T>(
    timeout: Duration,
    operation: &str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(outcome) => outcome,
        Err(_) => Err(timed_out(timeout, operation)),
    }
}

fn timed_out(timeout: Duration, operation: &str) -> StoreError {
    StoreError::unavailable(format!("{operation} did not answer within {timeout:?}"))
}

#[async_trait]
impl LeaseStore for TimedStore {
    async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        self.inner.create_table_if_missing().await
    }

    async fn list(&self) -> Result<LeaseListing, StoreError> {
        bounded(self.list_timeout, "listing leases", self.inner.list()).await
    }

    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError> {
        self.timed("reading a lease", self.inner.get(key)).await
    }

    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, StoreError> {
        self.timed("creating a lease", self.inner.create_if_absent(lease))
            .await
    }

    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self.inner.take(key, expected_counter, new_owner);
        self.timed("taking a lease", call).await
    }

    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError> {
        let call = self.inner.renew(key, owner, expected_counter);
        self.timed("renewing a lease", call).await
    }

    async fn renew_many(
        &self,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        match tokio::time::timeout(self.timeout, self.inner.renew_many(owner, leases)).await {
            Ok(outcomes) => outcomes,
            Err(_) => {
                let error = self.timed_out("renewing leases");
                leases.iter().map(|_| Err(error.clone())).collect()
            }
        }
    }

    async fn evict(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self.inner.evict(key, owner, expected_counter);
        self.timed("releasing a lease", call).await
    }

    async fn update_checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self
            .inner
            .update_checkpoint(key, owner, expected_counter, update);
        self.timed("writing a checkpoint", call).await
    }

    async fn mark_ended(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        children: &[ShardId],
    ) -> Result<Race<Lease>, StoreError> {
        let call = self
            .inner
            .mark_ended(key, owner, expected_counter, children);
        self.timed("writing SHARD_END", call).await
    }

    async fn reset_checkpoint(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        checkpoint: &Checkpoint,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self
            .inner
            .reset_checkpoint(key, expected_counter, checkpoint);
        self.timed("resetting a checkpoint", call).await
    }

    async fn delete(&self, key: &LeaseKey, expected_counter: u64) -> Result<Race<()>, StoreError> {
        self.timed("deleting a lease", self.inner.delete(key, expected_counter))
            .await
    }
}
