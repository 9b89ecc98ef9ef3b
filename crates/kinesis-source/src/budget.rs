//! A memory budget shared by the readers of one worker: however many shards it reads, the record
//! data fetched ahead of the processors (and being fetched) stays near one bound.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// Bytes of record data that the readers sharing it may hold fetched ahead of their processors.
///
/// Before each `GetRecords` call (or each fan-out event) a reader reserves what the response may
/// take, waiting while the budget is spent; the response's data then stays counted until the
/// processor takes its batch. So a worker with a thousand shards holds about the budget, not a
/// thousand prefetch queues. One reservation at a time is granted even when it is larger than
/// the whole budget, so that no reader waits forever; a response larger than its reservation
/// goes over the budget by the difference until it is taken. Cloning shares the budget.
///
/// ```
/// use shardwise_kinesis_source::MemoryBudget;
/// let budget = MemoryBudget::new(256 * 1024 * 1024);
/// assert_eq!(budget.used(), 0);
/// ```
#[derive(Clone)]
pub struct MemoryBudget(Arc<Shared>);

struct Shared {
    limit: usize,
    used: Mutex<usize>,
    freed: Notify,
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.0.limit)
            .field("used", &self.used())
            .finish()
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Shared {
            limit,
            used: Mutex::new(0),
            freed: Notify::new(),
        }))
    }

    /// A budget that never makes a reader wait (each reader is still bounded by its own
    /// prefetch limits).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// The bound, in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Bytes reserved or held now. Batches a processor has taken no longer count (the prefetch
    /// is what the budget bounds), so a worker's record data in memory is at most the budget
    /// plus the batch each pipeline is processing. Waiting readers are not served in order: under
    /// sustained contention one may wait longer than others.
    pub fn used(&self) -> usize {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        // One counter: a poisoned lock still holds a consistent value.
        self.0.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `bytes` fit in the budget (or nothing else is held), then holds them until
    /// the reservation is settled or dropped. `bytes` 0 waits only while the budget is
    /// overspent.
    pub(crate) async fn reserve(&self, bytes: usize) -> Reservation {
        loop {
            // Registered before looking, so that a release in between is not missed.
            let freed = self.0.freed.notified();
            {
                let mut used = self.lock();
                if *used == 0 || used.saturating_add(bytes) <= self.0.limit {
                    *used = used.saturating_add(bytes);
                    return Reservation {
                        budget: self.clone(),
                        bytes,
                    };
                }
            }
            freed.await;
        }
    }

    /// A hold on nothing, for a batch without data.
    pub(crate) fn hold_nothing(&self) -> Held {
        Held {
            budget: self.clone(),
            bytes: 0,
        }
    }

    /// Gives back `bytes`.
    fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        {
            let mut used = self.lock();
            *used = used.saturating_sub(bytes);
        }
        self.0.freed.notify_waiters();
    }
}

/// Bytes held for a call in flight; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: MemoryBudget,
    bytes: usize,
}

impl Reservation {
    /// Holds `actual` bytes (the data of the response now queued) instead of the reservation,
    /// for as long as the returned guard lives: it travels with the batch, so that the bytes
    /// come back however the batch goes (taken, dropped in a closed queue, or with an aborted
    /// reader).
    pub(crate) fn settle(mut self, actual: usize) -> Held {
        let reserved = std::mem::take(&mut self.bytes);
        {
            let mut used = self.budget.lock();
            *used = used.saturating_sub(reserved).saturating_add(actual);
        }
        if actual < reserved {
            self.budget.0.freed.notify_waiters();
        }
        Held {
            budget: self.budget.clone(),
            bytes: actual,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Bytes of queued data; given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    budget: MemoryBudget,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reservation_waits_for_room_and_gives_it_back() {
        let budget = MemoryBudget::new(10);
        let first = budget.reserve(6).await;
        assert_eq!(budget.used(), 6);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(6).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "6 more do not fit in 10");
        let held = first.settle(3);
        assert_eq!(budget.used(), 3, "the response took less than reserved");
        let second = waiting.await.unwrap();
        assert_eq!(budget.used(), 9);
        drop(second);
        assert_eq!(
            budget.used(),
            3,
            "a dropped reservation gives its bytes back"
        );
        drop(held);
        assert_eq!(budget.used(), 0, "and the queued data when it goes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_larger_than_the_budget_is_granted_alone() {
        let budget = MemoryBudget::new(10);
        let big = budget.reserve(25).await;
        assert_eq!(budget.used(), 25);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(1).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(big);
        let _small = waiting.await.unwrap();
        assert_eq!(budget.used(), 1);
    }
}
