//! A memory budget shared by the readers of one worker: however many shards it reads, the record
//! data fetched ahead of the processors (and being fetched) stays near one bound, and each reader
//! has its share of it, so readers whose processors are stuck cannot keep the others from
//! reading.

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
/// The budget is shared fairly: each reader may hold at most its share, the budget divided by
/// the readers sharing it (or one reservation, when it holds nothing at all), and a polling
/// reader sizes its calls to what its share has left. A reader that holds nothing, because its
/// processor has taken everything, is always granted up to its share, whatever the others hold:
/// shards whose processors are stuck never stop the others. That can take the total past the
/// budget, by at most one share per reader, when others hold more than their share (shares
/// shrink as readers are added; a response may be larger than reserved). Waiting readers are not
/// served in order.
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
    /// What this reader's share has left: its share (the bound divided by the readers sharing
    /// it) less what it reserves or holds.
    pub(crate) fn available(&self) -> usize {
        let state = self.0.budget.lock();
        let share = self.0.budget.limit() / state.readers.max(1);
        share.saturating_sub(self.0.held.load(Ordering::Relaxed))
    }

    /// Waits until `bytes` fit in the budget and in this reader's share (or in the budget alone
    /// when the reader holds nothing, or when nothing at all is held), then holds them until the
    /// reservation is settled or dropped. A reader that holds nothing never waits for up to its
    /// share. `bytes` 0 waits only while this reader holds data and the budget or its share is
    /// overspent.
    pub(crate) async fn reserve(&self, bytes: usize) -> Reservation {
        let budget = &self.0.budget;
        loop {
            // Registered before looking, so that a release in between is not missed.
            let freed = budget.0.freed.notified();
            {
                let mut state = budget.lock();
                let held = self.0.held.load(Ordering::Relaxed);
                let share = budget.0.limit / state.readers.max(1);
                let fits = state.used.saturating_add(bytes) <= budget.0.limit;
                let within_share = held == 0 || held.saturating_add(bytes) <= share;
                // A reader that holds nothing (its processor has taken everything) always gets
                // its share, even when others hold more than theirs: after readers were added,
                // or with responses larger than reserved.
                let owed = held == 0 && bytes <= share;
                if state.used == 0 || owed || (fits && within_share) {
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

    /// A reservation larger than the budget is granted when nothing else is held; meanwhile
    /// another reader gets its share but no more.
    #[tokio::test(start_paused = true)]
    async fn a_reservation_larger_than_the_budget_is_granted_alone() {
        let budget = MemoryBudget::new(10);
        let (one, other) = (budget.account(), budget.account());
        let big = one.reserve(25).await;
        assert_eq!(budget.used(), 25);
        let waiting = tokio::spawn({
            let other = other.clone();
            async move { other.reserve(6).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "6 is past its share of 5");
        drop(big);
        let larger = waiting.await.unwrap();
        assert_eq!(budget.used(), 6);
        drop(larger);
        let big = one.reserve(25).await;
        let _share = other.reserve(5).await;
        assert_eq!(budget.used(), 30, "its share, past a spent budget");
        drop(big);
    }

    /// Each reader holds at most its share (or one reservation when it holds nothing): readers
    /// whose processors are stuck, whether with batches queued or with a batch taken, leave every
    /// other reader its share.
    #[tokio::test(start_paused = true)]
    async fn every_reader_keeps_its_share() {
        let budget = MemoryBudget::new(100);
        let readers: Vec<Account> = (0..4).map(|_| budget.account()).collect();
        let [deep, took_b, took_c, waiting] = &readers[..] else {
            unreachable!()
        };
        assert_eq!(deep.available(), 25, "a quarter each, for four readers");
        let _deep = deep.reserve(25).await.settle(25);
        assert_eq!(deep.available(), 0);
        let more = tokio::spawn({
            let deep = deep.clone();
            async move { deep.reserve(25).await }
        });
        tokio::task::yield_now().await;
        assert!(!more.is_finished(), "a second batch is past its share");
        // Two readers whose processors took a batch and are stuck on it hold nothing, and read
        // one more batch each.
        let _b = took_b.reserve(25).await.settle(25);
        let _c = took_c.reserve(25).await.settle(25);
        let _last = waiting.reserve(25).await;
        assert_eq!(budget.used(), 100, "the last reader still gets its share");
        more.abort();
    }

    /// A reader that holds nothing gets one reservation larger than its share, if the budget has
    /// room: a record larger than the share is still read.
    #[tokio::test(start_paused = true)]
    async fn a_reader_holding_nothing_may_pass_its_share_once() {
        let budget = MemoryBudget::new(100);
        let (big, other) = (budget.account(), budget.account());
        let _other = other.reserve(10).await.settle(10);
        let held = big.reserve(80).await.settle(80);
        assert_eq!(budget.used(), 90);
        let again = tokio::spawn({
            let big = big.clone();
            async move { big.reserve(1).await }
        });
        tokio::task::yield_now().await;
        assert!(!again.is_finished(), "it holds more than its share of 50");
        drop(held);
        let next = again.await.unwrap();
        drop((next, big));
        assert_eq!(other.available(), 90, "one reader left, holding 10");
    }

    /// Readers added while others hold their whole (larger) share: a new reader, holding
    /// nothing, still gets its share at once, past the budget; one holding data waits.
    #[tokio::test(start_paused = true)]
    async fn a_reader_added_to_a_spent_budget_gets_its_share() {
        let budget = MemoryBudget::new(100);
        let (a, b) = (budget.account(), budget.account());
        let _a = a.reserve(50).await.settle(50);
        let _b = b.reserve(50).await.settle(50);
        let late = budget.account();
        assert_eq!(late.available(), 33);
        let _late = late.reserve(33).await;
        assert_eq!(budget.used(), 133, "one share past the budget, no more");
        let more = tokio::spawn({
            let late = late.clone();
            async move { late.reserve(1).await }
        });
        tokio::task::yield_now().await;
        assert!(!more.is_finished(), "holding data, it waits for room");
        more.abort();
    }
}
