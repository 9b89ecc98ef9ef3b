//! A memory budget shared by the readers of one worker: however many shards it reads, the record
//! data fetched ahead of the processors (and being fetched) stays near one bound, and readers
//! whose processors are stuck cannot keep the others from reading.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
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
/// The budget is shared fairly: a polling reader asks for no more than its share (the budget
/// divided by the readers sharing it) per call, and a reader that already holds data its
/// processor has not taken may fill only the first half of the budget. The second half is for
/// readers whose processors are waiting, so shards whose processors are stuck (and whose
/// fetched data so stays) never stop the others.
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
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes reserved or held by every reader.
    used: usize,
    /// Readers sharing the budget.
    readers: usize,
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryBudget")
            .field("limit", &self.0.limit)
            .field("used", &state.used)
            .field("readers", &state.readers)
            .finish()
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Shared {
            limit,
            state: Mutex::new(State::default()),
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
    /// plus the batch each pipeline is processing.
    pub fn used(&self) -> usize {
        self.lock().used
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Two counters: a poisoned lock still holds consistent values.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers one more reader of the budget, until the account is dropped.
    pub(crate) fn account(&self) -> Account {
        self.lock().readers += 1;
        Account(Arc::new(AccountInner {
            budget: self.clone(),
            held: AtomicUsize::new(0),
        }))
    }

    /// Gives back `bytes` held by `account`.
    fn release(&self, account: &AccountInner, bytes: usize) {
        if bytes == 0 {
            return;
        }
        {
            let mut state = self.lock();
            state.used = state.used.saturating_sub(bytes);
            account.take_back(bytes);
        }
        self.0.freed.notify_waiters();
    }
}

/// One reader's part of a [`MemoryBudget`]: what it holds, and its share.
#[derive(Debug, Clone)]
pub(crate) struct Account(Arc<AccountInner>);

#[derive(Debug)]
struct AccountInner {
    budget: MemoryBudget,
    /// Bytes this reader has reserved or holds; changed under the budget's lock.
    held: AtomicUsize,
}

impl AccountInner {
    fn take_back(&self, bytes: usize) {
        let held = self.held.load(Ordering::Relaxed);
        self.held
            .store(held.saturating_sub(bytes), Ordering::Relaxed);
    }
}

impl Drop for AccountInner {
    fn drop(&mut self) {
        {
            let mut state = self.budget.lock();
            state.readers = state.readers.saturating_sub(1);
        }
        self.budget.0.freed.notify_waiters();
    }
}

impl Account {
    /// This reader's fair share of the budget: the bound divided by the readers sharing it.
    pub(crate) fn share(&self) -> usize {
        let readers = self.0.budget.lock().readers.max(1);
        self.0.budget.limit() / readers
    }

    /// Waits until `bytes` fit in the budget (or nothing else is held), then holds them until
    /// the reservation is settled or dropped. A reader that holds nothing may fill the whole
    /// budget; one that holds data only its first half. `bytes` 0 waits only while that part
    /// is overspent.
    pub(crate) async fn reserve(&self, bytes: usize) -> Reservation {
        let budget = &self.0.budget;
        loop {
            // Registered before looking, so that a release in between is not missed.
            let freed = budget.0.freed.notified();
            {
                let mut state = budget.lock();
                let held = self.0.held.load(Ordering::Relaxed);
                let ceiling = if held == 0 {
                    budget.0.limit
                } else {
                    budget.0.limit / 2
                };
                if state.used == 0 || state.used.saturating_add(bytes) <= ceiling {
                    state.used = state.used.saturating_add(bytes);
                    self.0
                        .held
                        .store(held.saturating_add(bytes), Ordering::Relaxed);
                    return Reservation {
                        account: self.0.clone(),
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
            account: self.0.clone(),
            bytes: 0,
        }
    }
}

/// Bytes held for a call in flight; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    account: Arc<AccountInner>,
    bytes: usize,
}

impl Reservation {
    /// Holds `actual` bytes (the data of the response now queued) instead of the reservation,
    /// for as long as the returned guard lives: it travels with the batch, so that the bytes
    /// come back however the batch goes (taken, dropped in a closed queue, or with an aborted
    /// reader).
    pub(crate) fn settle(mut self, actual: usize) -> Held {
        let reserved = std::mem::take(&mut self.bytes);
        let budget = &self.account.budget;
        {
            let mut state = budget.lock();
            state.used = state.used.saturating_sub(reserved).saturating_add(actual);
            let held = self.account.held.load(Ordering::Relaxed);
            self.account.held.store(
                held.saturating_sub(reserved).saturating_add(actual),
                Ordering::Relaxed,
            );
        }
        if actual < reserved {
            budget.0.freed.notify_waiters();
        }
        Held {
            account: self.account.clone(),
            bytes: actual,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.account.budget.release(&self.account, self.bytes);
    }
}

/// Bytes of queued data; given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    account: Arc<AccountInner>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.account.budget.release(&self.account, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reservation_waits_for_room_and_gives_it_back() {
        let budget = MemoryBudget::new(10);
        let (one, other) = (budget.account(), budget.account());
        let first = one.reserve(6).await;
        assert_eq!(budget.used(), 6);
        let waiting = tokio::spawn(async move { other.reserve(6).await });
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
        let (one, other) = (budget.account(), budget.account());
        let big = one.reserve(25).await;
        assert_eq!(budget.used(), 25);
        let waiting = tokio::spawn(async move { other.reserve(1).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(big);
        let _small = waiting.await.unwrap();
        assert_eq!(budget.used(), 1);
    }

    /// A reader that holds data fills only the first half of the budget; one that holds nothing
    /// (its processor waits) may use the rest, so stuck processors cannot starve the others.
    #[tokio::test(start_paused = true)]
    async fn a_reader_holding_data_leaves_half_the_budget_to_the_others() {
        let budget = MemoryBudget::new(100);
        let (stuck, waiting) = (budget.account(), budget.account());
        assert_eq!(stuck.share(), 50, "two readers");
        let _held = stuck.reserve(40).await.settle(40);
        let more = tokio::spawn({
            let stuck = stuck.clone();
            async move { stuck.reserve(20).await }
        });
        tokio::task::yield_now().await;
        assert!(!more.is_finished(), "40 + 20 is past the first half");
        let theirs = waiting.reserve(60).await;
        assert_eq!(budget.used(), 100, "a reader holding nothing uses the rest");
        drop(theirs);
        tokio::task::yield_now().await;
        assert!(!more.is_finished(), "still past the first half");
        drop(waiting);
        assert_eq!(stuck.share(), 100, "one reader left");
        more.abort();
    }
}
