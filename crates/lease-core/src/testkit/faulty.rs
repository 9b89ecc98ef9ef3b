//! A store that fails or hangs on the calls a test chooses, and passes the rest on.

use std::sync::{Arc, Mutex, PoisonError};

use crate::{Call, Layer, Layered, LeaseKey, LeaseStore, Operation, Race, StoreError, WorkerId};

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

/// The layer of a [`FaultyStore`]: its rule.
#[derive(Default)]
pub struct Faults {
    rule: Mutex<Option<Arc<Rule>>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

impl Faults {
    fn fault(&self, operation: Operation, key: Option<&LeaseKey>) -> Option<Fault> {
        let rule = self
            .rule
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        rule.and_then(|rule| rule(operation, key))
    }
}

/// A [`LeaseStore`] that passes every call to another, except those its rule answers with a
/// [`Fault`]: for tests of what callers do when one operation fails or never returns.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use shardwise_lease_core::testkit::{Fault, FaultyStore};
/// use shardwise_lease_core::{LeaseStore, MemoryLeaseStore, Operation, StoreError};
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
pub type FaultyStore = Layered<Faults>;

impl Layered<Faults> {
    /// Passes everything to `inner` until a rule is set.
    pub fn new(inner: Arc<dyn LeaseStore>) -> Self {
        Layered::wrap(inner, Faults::default())
    }

    /// From now on, `rule` decides each call: a [`Fault`], or `None` to pass it on.
    pub fn set_rule(
        &self,
        rule: impl Fn(Operation, Option<&LeaseKey>) -> Option<Fault> + Send + Sync + 'static,
    ) {
        *self
            .layer()
            .rule
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(rule));
    }

    /// Passes every call on again.
    pub fn clear(&self) {
        *self
            .layer()
            .rule
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

#[async_trait::async_trait]
impl Layer for Faults {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        operation: Operation,
        key: Option<&'a LeaseKey>,
        call: Call<'a, T>,
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

    /// Each lease asks the rule as [`Operation::Renew`].
    async fn renew_many(
        &self,
        inner: &dyn LeaseStore,
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
        let mut renewed = inner.renew_many(owner, &passed).await.into_iter();
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
}
