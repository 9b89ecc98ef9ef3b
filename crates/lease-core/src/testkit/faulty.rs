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
    /// Pass the call on, then answer with this error instead of its outcome: the write happened
    /// but the caller cannot know (a timeout after the server applied it).
    Ambiguous(StoreError),
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

    /// Runs `call` unless a fault says otherwise.
    async fn run<T>(
        &self,
        operation: Operation,
        key: Option<&LeaseKey>,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match self.fault(operation, key) {
            None => call.await,
            Some(Fault::Fail(error)) => Err(error),
            Some(Fault::Hang) => std::future::pending().await,
            Some(Fault::Ambiguous(error)) => {
                let _ = call.await;
                Err(error)
            }
        }
    }
}

#[async_trait::async_trait]
impl LeaseStore for FaultyStore {
    async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        self.run(
            Operation::CreateTable,
            None,
            self.inner.create_table_if_missing(),
        )
        .await
    }

    async fn list(&self) -> Result<LeaseListing, StoreError> {
        self.run(Operation::List, None, self.inner.list()).await
    }

    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError> {
        self.run(Operation::Get, Some(key), self.inner.get(key))
            .await
    }

    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, StoreError> {
        let call = self.inner.create_if_absent(lease);
        self.run(Operation::CreateIfAbsent, Some(&lease.key), call)
            .await
    }

    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self.inner.take(key, expected_counter, new_owner);
        self.run(Operation::Take, Some(key), call).await
    }

    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError> {
        let call = self.inner.renew(key, owner, expected_counter);
        self.run(Operation::Renew, Some(key), call).await
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
        // Ambiguous renewals are passed on too; only their answers are replaced.
        let passed: Vec<(LeaseKey, u64)> = leases
            .iter()
            .zip(&faults)
            .filter(|(_, fault)| !matches!(fault, Some(Fault::Fail(_))))
            .map(|(lease, _)| lease.clone())
            .collect();
        let mut renewed = self.inner.renew_many(owner, &passed).await.into_iter();
        faults
            .into_iter()
            .map(|fault| match fault {
                Some(Fault::Fail(error)) => Err(error),
                Some(Fault::Ambiguous(error)) => {
                    let _ = renewed.next();
                    Err(error)
                }
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
        let call = self.inner.evict(key, owner, expected_counter);
        self.run(Operation::Evict, Some(key), call).await
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
        self.run(Operation::UpdateCheckpoint, Some(key), call).await
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
        self.run(Operation::MarkEnded, Some(key), call).await
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
        self.run(Operation::ResetCheckpoint, Some(key), call).await
    }

    async fn delete(&self, key: &LeaseKey, expected_counter: u64) -> Result<Race<()>, StoreError> {
        let call = self.inner.delete(key, expected_counter);
        self.run(Operation::Delete, Some(key), call).await
    }
}
