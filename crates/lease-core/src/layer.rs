//! Wrapping a store: one [`Layer`] runs around every call of the store it wraps, so that a
//! timeout, a fault injector or a call counter is written once, not once per operation.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use crate::checkpoint::{Checkpoint, CheckpointUpdate};
use crate::error::StoreError;
use crate::ids::{LeaseKey, ShardId, WorkerId};
use crate::lease::Lease;
use crate::membership::Membership;
use crate::store::{LeaseListing, LeaseStore, Race};

/// One operation of the [`LeaseStore`] contract (`renew_many` has a method of its own in
/// [`Layer`]).
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
    /// `renew`, and each lease of `renew_many` where a layer looks at leases one by one.
    Renew,
    /// `evict`.
    Evict,
    /// `update_checkpoint`.
    UpdateCheckpoint,
    /// `mark_ended`.
    MarkEnded,
    /// `request_handoff`.
    RequestHandoff,
    /// `reset_checkpoint`.
    ResetCheckpoint,
    /// `delete`.
    Delete,
    /// `heartbeat`.
    Heartbeat,
    /// `membership`.
    Membership,
    /// `bump_version`.
    BumpVersion,
    /// `leave`.
    Leave,
}

/// A call of the wrapped store, not yet run.
pub type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What a [`Layered`] store does around each call of the store it wraps.
#[async_trait]
pub trait Layer: fmt::Debug + Send + Sync + 'static {
    /// Answers for `call`: `operation` on `key` (`None` for the operations on no lease: creating
    /// the table, listing, and the membership record's).
    /// Running `call` passes it on; not running it means the store never saw it.
    async fn around<'a, T: Send + 'a>(
        &'a self,
        operation: Operation,
        key: Option<&'a LeaseKey>,
        call: Call<'a, T>,
    ) -> Result<T, StoreError>;

    /// Answers for `renew_many` on `inner`; by default passes it on.
    async fn renew_many(
        &self,
        inner: &dyn LeaseStore,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        inner.renew_many(owner, leases).await
    }
}

/// A store with a [`Layer`] around every call of another.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use shardwise_lease_core::{Call, Layer, Layered, LeaseKey, LeaseStore, MemoryLeaseStore, Operation, StoreError};
///
/// /// Counts the calls that reach the store.
/// #[derive(Debug, Default)]
/// struct Counting(AtomicUsize);
///
/// #[async_trait::async_trait]
/// impl Layer for Counting {
///     async fn around<'a, T: Send + 'a>(
///         &'a self,
///         _operation: Operation,
///         _key: Option<&'a LeaseKey>,
///         call: Call<'a, T>,
///     ) -> Result<T, StoreError> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         call.await
///     }
/// }
///
/// let store = Layered::wrap(Arc::new(MemoryLeaseStore::new()), Counting::default());
/// store.list().await?;
/// assert_eq!(store.layer().0.load(Ordering::Relaxed), 1);
/// # Ok::<(), StoreError>(())
/// # });
/// ```
#[derive(Debug)]
pub struct Layered<L> {
    inner: Arc<dyn LeaseStore>,
    layer: L,
}

impl<L: Layer> Layered<L> {
    /// `inner`, with `layer` around each of its calls.
    pub fn wrap(inner: Arc<dyn LeaseStore>, layer: L) -> Self {
        Self { inner, layer }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn LeaseStore> {
        &self.inner
    }

    /// The layer.
    pub fn layer(&self) -> &L {
        &self.layer
    }
}

#[async_trait]
impl<L: Layer> LeaseStore for Layered<L> {
    async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let call = self.inner.create_table_if_missing();
        self.layer.around(Operation::CreateTable, None, call).await
    }

    async fn list(&self) -> Result<LeaseListing, StoreError> {
        self.layer
            .around(Operation::List, None, self.inner.list())
            .await
    }

    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError> {
        self.layer
            .around(Operation::Get, Some(key), self.inner.get(key))
            .await
    }

    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, StoreError> {
        let call = self.inner.create_if_absent(lease);
        self.layer
            .around(Operation::CreateIfAbsent, Some(&lease.key), call)
            .await
    }

    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self.inner.take(key, expected_counter, new_owner);
        self.layer.around(Operation::Take, Some(key), call).await
    }

    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError> {
        let call = self.inner.renew(key, owner, expected_counter);
        self.layer.around(Operation::Renew, Some(key), call).await
    }

    async fn renew_many(
        &self,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        self.layer
            .renew_many(self.inner.as_ref(), owner, leases)
            .await
    }

    async fn evict(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self.inner.evict(key, owner, expected_counter);
        self.layer.around(Operation::Evict, Some(key), call).await
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
        self.layer
            .around(Operation::UpdateCheckpoint, Some(key), call)
            .await
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
        self.layer
            .around(Operation::MarkEnded, Some(key), call)
            .await
    }

    async fn request_handoff(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        holder: &WorkerId,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self
            .inner
            .request_handoff(key, expected_counter, holder, new_owner);
        self.layer
            .around(Operation::RequestHandoff, Some(key), call)
            .await
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
        self.layer
            .around(Operation::ResetCheckpoint, Some(key), call)
            .await
    }

    async fn delete(&self, key: &LeaseKey, expected_counter: u64) -> Result<Race<()>, StoreError> {
        let call = self.inner.delete(key, expected_counter);
        self.layer.around(Operation::Delete, Some(key), call).await
    }

    async fn heartbeat(
        &self,
        worker: &WorkerId,
        expected: Option<u64>,
    ) -> Result<Race<u64>, StoreError> {
        let call = self.inner.heartbeat(worker, expected);
        self.layer.around(Operation::Heartbeat, None, call).await
    }

    async fn membership(&self) -> Result<Membership, StoreError> {
        let call = self.inner.membership();
        self.layer.around(Operation::Membership, None, call).await
    }

    async fn bump_version(&self) -> Result<u64, StoreError> {
        let call = self.inner.bump_version();
        self.layer.around(Operation::BumpVersion, None, call).await
    }

    async fn leave(
        &self,
        worker: &WorkerId,
        expected_heartbeat: u64,
    ) -> Result<Race<()>, StoreError> {
        let call = self.inner.leave(worker, expected_heartbeat);
        self.layer.around(Operation::Leave, None, call).await
    }
}
