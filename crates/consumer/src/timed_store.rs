//! The lease store as a worker uses it: every call bounded in time, so that a call that never
//! answers (a half-open connection, an exhausted pool) becomes a retryable error instead of a
//! stall.

use std::time::Duration;

use async_trait::async_trait;
use shardwise_lease_core::{
    Call, Layer, LeaseKey, LeaseStore, Operation, Race, StoreError, WorkerId,
};

/// Fails every call with a retryable
/// [`Unavailable`](shardwise_lease_core::StoreErrorKind::Unavailable) error when no answer came
/// within the timeout. Listing every lease takes several pages on a big table and holds no
/// lease's turn to write, so it has a bound of its own; creating the table is not bounded: it
/// waits for the table to exist, once, before the worker starts.
#[derive(Debug)]
pub(crate) struct Timeouts {
    pub(crate) call: Duration,
    pub(crate) list: Duration,
}

fn timed_out(timeout: Duration, operation: Operation) -> StoreError {
    StoreError::unavailable(format!("{operation:?} did not answer within {timeout:?}"))
}

#[async_trait]
impl Layer for Timeouts {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        operation: Operation,
        _key: Option<&'a LeaseKey>,
        call: Call<'a, T>,
    ) -> Result<T, StoreError> {
        let timeout = match operation {
            Operation::CreateTable => return call.await,
            Operation::List => self.list,
            _ => self.call,
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(timed_out(timeout, operation)),
        }
    }

    async fn renew_many(
        &self,
        inner: &dyn LeaseStore,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        match tokio::time::timeout(self.call, inner.renew_many(owner, leases)).await {
            Ok(outcomes) => outcomes,
            Err(_) => {
                let error = timed_out(self.call, Operation::Renew);
                leases.iter().map(|_| Err(error.clone())).collect()
            }
        }
    }
}
