//! A store that fails or hangs on the calls a test chooses, and passes the rest on.

use std::sync::{Arc, Mutex, PoisonError};

use crate::{
    Checkpoint, CheckpointUpdate, Lease, LeaseKey, LeaseListing, LeaseStore, Race, ShardId,
    StoreError, WorkerId,
};

/// One operation of the [`LeaseStore`] contract (`renew_many` asks once per lease, as
/// [`Operation::Renew`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `create_table_if_missing`.
    CreateTable,
    /// `list`.
    List,
    /// `get`.
    Get,
    /// `create_if_absent`.
    CreateIfAbsent,
    /// `take`.
    Take,
    /// `renew`, and each lease of `renew_many`.
    Renew,
    /// `evict`.
    Evict,
    /// `update_checkpoint`.
    UpdateCheckpoint,
    /// `mark_ended`.
    MarkEnded,
    /// `reset_checkpoint`.
    ResetCheckpoint,
    /// `delete`.
    Delete,
}

/// What a [`FaultyStore`] does instead of passing a call on.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this error; nothing is written.
    Fail(StoreError),
    /// Never answer (a half-open connection, an exhausted pool); nothing is written.
    Hang,
}

type Rule = dyn Fn(Operation, Option<&LeaseKey>) -> Option<Fault> + Send + Sync;

/// A [`LeaseStore`] that passes every call to another, except those its rule answers with a
/// [`Fault`]: for tests of what callers do when one operation fails or never returns.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use shardwise_lease_core::testkit::{Fault, FaultyStore, Operation};
/// use shardwise_lease_core::{LeaseStore, MemoryLeaseStore, StoreError};
///
/// let store = FaultyStore::new(Arc::new(MemoryLeaseStore::new()));
/// store.set_rule(|operation, _key| {
///     (operation == Operation::List).then(|| Fault::Fail(StoreError::unavailable("injected")))
/// });
/// assert!(store.list().await.is_err());
/// store.clear();
/// assert!(store.list().await.is_ok());
/// # });
/// ```
pub struct FaultyStore {
    inner: Arc<dyn LeaseStore>,
    rule: Mutex<Option<Arc<Rule>>>,
}

impl std::fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl FaultyStore {
    /// Passes everything to `inner` until a rule is set.
    pub fn new(inner: Arc<dyn LeaseStore>) -> Self {
        Self {
            inner,
            rule: Mutex::new(None),
        }
    }

    /// The store calls are passed to.
    pub fn inner(&self) -> &Arc<dyn LeaseStore> {
        &self.inner
    }

    /// From now on, `rule` decides each call: a [`Fault`], or `None` to pass it on.
    pub fn set_rule(
        &self,
        rule: impl Fn(Operation, Option<&LeaseKey>) -> Option<Fault> + Send + Sync + 'static,
    ) {
        *self.rule.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(rule));
    }

    /// Passes every call on again.
    pub fn clear(&self) {
        *self.rule.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn fault(&self, operation: Operation, key: Option<&LeaseKey>) -> Option<Fault> {
        let rule = self
            .rule
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        rule.and_then(|rule| rule(operation, key))
    }

    async fn enter(&self, operation: Operation, key: Option<&LeaseKey>) -> Result<(), StoreError> {
        match self.fault(operation, key) {
            None => Ok(()),
            Some(Fault::Fail(error)) => Err(error),
            Some(Fault::Hang) => std::future::pending().await,
        }
    }
}

#[async_trait::async_trait]
impl LeaseStore for FaultyStore {
    async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        self.enter(Operation::CreateTable, None).await?;
        self.inner.create_table_if_missing().await
    }

    async fn list(&self) -> Result<LeaseListing, StoreError> {
        self.enter(Operation::List, None).await?;
        self.inner.list().await
    }

    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError> {
        self.enter(Operation::Get, Some(key)).await?;
        self.inner.get(key).await
    }

    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, StoreError> {
        self.enter(Operation::CreateIfAbsent, Some(&lease.key))
            .await?;
        self.inner.create_if_absent(lease).await
    }

    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        self.enter(Operation::Take, Some(key)).await?;
        self.inner.take(key, expected_counter, new_owner).await
    }

    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError> {
        self.enter(Operation::Renew, Some(key)).await?;
        self.inner.renew(key, owner, expected_counter).await
    }

    async fn renew_many(
        &self,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        let faults: Vec<Option<Fault>> = leases
            .iter()
            .map(|(key, _)| self.fault(Operation::Renew, Some(key)))
            .collect();
        if faults.iter().any(|f| matches!(f, Some(Fault::Hang))) {
            return std::future::pending().await;
        }
        let passed: Vec<(LeaseKey, u64)> = leases
            .iter()
            .zip(&faults)
            .filter(|(_, fault)| fault.is_none())
            .map(|(lease, _)| lease.clone())
            .collect();
        let mut renewed = self.inner.renew_many(owner, &passed).await.into_iter();
        faults
            .into_iter()
            .map(|fault| match fault {
                Some(Fault::Fail(error)) => Err(error),
                _ => renewed
                    .next()
                    .unwrap_or_else(|| Err(StoreError::unavailable("renew_many answered short"))),
            })
            .collect()
    }

    async fn evict(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<Lease>, StoreError> {
        self.enter(Operation::Evict, Some(key)).await?;
        self.inner.evict(key, owner, expected_counter).await
    }

    async fn update_checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Race<Lease>, StoreError> {
        self.enter(Operation::UpdateCheckpoint, Some(key)).await?;
        self.inner
            .update_checkpoint(key, owner, expected_counter, update)
            .await
    }

    async fn mark_ended(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        children: &[ShardId],
    ) -> Result<Race<Lease>, StoreError> {
        self.enter(Operation::MarkEnded, Some(key)).await?;
        self.inner
            .mark_ended(key, owner, expected_counter, children)
            .await
    }

    async fn reset_checkpoint(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        checkpoint: &Checkpoint,
    ) -> Result<Race<Lease>, StoreError> {
        self.enter(Operation::ResetCheckpoint, Some(key)).await?;
        self.inner
            .reset_checkpoint(key, expected_counter, checkpoint)
            .await
    }

    async fn delete(&self, key: &LeaseKey, expected_counter: u64) -> Result<Race<()>, StoreError> {
        self.enter(Operation::Delete, Some(key)).await?;
        self.inner.delete(key, expected_counter).await
    }
}
