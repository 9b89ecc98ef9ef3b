//! The lease store conformance suite (feature `testkit`).
//!
//! Every [`LeaseStore`] must pass every function here against a real server or emulator. Each
//! function takes a fresh, empty store (its own table, namespace or key prefix), exercises one
//! part of the contract, and panics with a message naming what broke.
//!
//! A store crate stamps the whole suite out as `#[tokio::test]`s with one macro call, given an
//! async factory that makes a fresh store for a test name:
//!
//! ```
//! use std::sync::Arc;
//! use shardwise_lease_core::{LeaseStore, MemoryLeaseStore};
//!
//! // A real backend connects here and creates its own table, namespace or key prefix for
//! // `test`, so that tests running in parallel never share data.
//! async fn fresh_store(_test: &'static str) -> Arc<dyn LeaseStore> {
//!     Arc::new(MemoryLeaseStore::new())
//! }
//!
//! shardwise_lease_core::lease_store_conformance_tests!(fresh_store);
//! # fn main() {}
//! ```
//!
//! The store crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.

// Test code: a failed expectation is a panic with a message, by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::{
    Checkpoint, CheckpointUpdate, HashKeyRange, Lease, LeaseKey, LeaseStore, Operation,
    PendingCheckpoint, Race, SequenceNumber, ShardId, StoreError, StoreErrorKind, WorkerId,
};

mod faulty;

pub use faulty::{Fault, Faults, FaultyStore};

/// Stamps out the whole conformance suite as `#[tokio::test]` functions in the calling module.
///
/// `$factory` is called as `$factory(test_name: &'static str)` and must return a future of
/// `Arc<dyn LeaseStore>`: a ready, empty store that no other test uses.
#[macro_export]
macro_rules! lease_store_conformance_tests {
    ($factory:expr) => {
        $crate::__lease_store_conformance_tests!($factory;
            create_if_absent_twice,
            round_trips_every_field,
            get_missing_is_none,
            list_empty,
            list_many,
            take_free_lease,
            take_owned_lease_with_current_counter,
            take_with_stale_counter_loses,
            take_missing_lease_loses,
            renew_by_owner,
            renew_by_non_owner_or_stale_counter_loses,
            renew_many_reports_each_lease,
            evict_frees_the_lease,
            checkpoint_by_owner,
            checkpoint_by_former_owner_loses,
            checkpoint_with_stale_counter_loses,
            checkpoint_never_moves_backwards,
            checkpoint_before_a_record,
            checkpoints_compare_numerically,
            prepare_and_commit_with_state,
            mark_ended_records_children,
            delete_is_conditional,
            reset_checkpoint_fences_old_holders,
            reset_checkpoint_is_one_write,
            odd_keys,
            racing_creates,
            racing_takes,
            racing_checkpoint_against_take,
            racing_reset_against_take,
            handoff_from_request_to_completion,
            handoff_request_conditions,
            take_and_reset_end_a_handoff,
            shard_end_during_a_handoff,
            racing_handoff_requests,
            racing_handoff_request_against_renewal,
            racing_handoff_request_against_release,
            membership_heartbeats_and_version,
            membership_is_not_a_lease,
            racing_heartbeats,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __lease_store_conformance_tests {
    ($factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::LeaseStore> =
                    ($factory)(stringify!($name)).await;
                $crate::testkit::$name(store).await;
            }
        )*
    };
}

fn key(name: &str) -> LeaseKey {
    LeaseKey::new(name).unwrap()
}

fn worker(name: &str) -> WorkerId {
    WorkerId::new(name).unwrap()
}

fn shard(name: &str) -> ShardId {
    ShardId::new(name).unwrap()
}

fn at(seq: &str, sub: u64) -> Checkpoint {
    Checkpoint::at(SequenceNumber::new(seq).unwrap(), sub)
}

/// A 56-digit sequence number like the ones Kinesis hands out, offset by `n`.
fn real_seq(n: u64) -> String {
    format!("4959033827149025660855969253836157109592157598913{:07}", n)
}

async fn get(store: &dyn LeaseStore, k: &LeaseKey) -> Lease {
    store
        .get(k)
        .await
        .unwrap_or_else(|e| panic!("get {k}: {e}"))
        .unwrap_or_else(|| panic!("lease {k} is missing"))
}

async fn create(store: &dyn LeaseStore, k: &LeaseKey) -> Lease {
    let lease = Lease::new(k.clone(), Checkpoint::TrimHorizon);
    match store.create_if_absent(&lease).await {
        Ok(Race::Won(created)) => {
            assert_eq!(created, lease, "create_if_absent returns the stored lease");
            created
        }
        Ok(Race::Lost) => panic!("create {k}: lost on an empty store"),
        Err(e) => panic!("create {k}: {e}"),
    }
}

async fn create_owned(store: &dyn LeaseStore, k: &LeaseKey, owner: &WorkerId) -> Lease {
    let created = create(store, k).await;
    won(
        store.take(k, created.counter, owner).await,
        "take a fresh lease",
    )
}

fn won<T>(outcome: Result<Race<T>, crate::StoreError>, what: &str) -> T {
    match outcome {
        Ok(Race::Won(value)) => value,
        Ok(Race::Lost) => panic!("{what}: lost, expected to win"),
        Err(e) => panic!("{what}: {e}"),
    }
}

fn lost<T: std::fmt::Debug>(outcome: Result<Race<T>, crate::StoreError>, what: &str) {
    match outcome {
        Ok(Race::Lost) => {}
        Ok(Race::Won(value)) => panic!("{what}: won ({value:?}), expected to lose"),
        Err(e) => panic!("{what}: {e}, expected a lost race"),
    }
}

/// Creating the same key twice: the second loses and changes nothing.
pub async fn create_if_absent_twice(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-000000000000");
    let first = create(&*store, &k).await;
    let mut other = Lease::new(k.clone(), Checkpoint::Latest);
    other.counter = 99;
    lost(store.create_if_absent(&other).await, "second create");
    assert_eq!(get(&*store, &k).await, first, "the first row stands");
}

/// Every field survives a write and a read, including 56-digit sequence numbers, state bytes,
/// two parents (a merge) and the full hash-key range.
pub async fn round_trips_every_field(store: Arc<dyn LeaseStore>) {
    let full = Lease {
        key: key("shardId-000000000007"),
        owner: Some(worker("worker-1")),
        counter: 41,
        checkpoint_owner: Some(worker("worker-0")),
        checkpoint: at(&real_seq(5), 7),
        pending_checkpoint: Some(PendingCheckpoint::new(
            at(&real_seq(9), 2),
            Some(vec![0, 1, 2, 255]),
        )),
        owner_switches_since_checkpoint: 3,
        parent_shard_ids: vec![shard("shardId-000000000003"), shard("shardId-000000000002")],
        child_shard_ids: vec![shard("shardId-000000000010"), shard("shardId-000000000009")],
        hash_key_range: Some(HashKeyRange::FULL),
    };
    let mut expected = full.clone();
    expected.parent_shard_ids.sort();
    expected.child_shard_ids.sort();
    won(store.create_if_absent(&full).await, "create a full lease");
    assert_eq!(
        get(&*store, &full.key).await,
        expected,
        "full lease round trip"
    );

    let pending_without_state = Lease {
        key: key("shardId-000000000008"),
        pending_checkpoint: Some(PendingCheckpoint::new(Checkpoint::ShardEnd, None)),
        hash_key_range: Some(HashKeyRange::new(0, 0).unwrap()),
        ..Lease::new(key("unused"), Checkpoint::AtTimestamp)
    };
    won(
        store.create_if_absent(&pending_without_state).await,
        "create",
    );
    assert_eq!(
        get(&*store, &pending_without_state.key).await,
        pending_without_state
    );

    for sentinel in [
        Checkpoint::TrimHorizon,
        Checkpoint::Latest,
        Checkpoint::ShardEnd,
    ] {
        let lease = Lease::new(
            key(&format!("sentinel-{}", sentinel.stored_text())),
            sentinel,
        );
        won(store.create_if_absent(&lease).await, "create");
        assert_eq!(get(&*store, &lease.key).await, lease);
    }
}

/// Reading a missing key is `None`, not an error.
pub async fn get_missing_is_none(store: Arc<dyn LeaseStore>) {
    assert_eq!(store.get(&key("nope")).await.unwrap(), None);
}

/// An empty store lists nothing.
pub async fn list_empty(store: Arc<dyn LeaseStore>) {
    let listing = store.list().await.unwrap();
    assert!(
        listing.leases.is_empty() && listing.corrupt.is_empty(),
        "{listing:?}"
    );
}

/// 2,500 leases list completely, sorted by key (forces pagination in stores that page).
pub async fn list_many(store: Arc<dyn LeaseStore>) {
    const N: usize = 2_500;
    const CONCURRENCY: usize = 32;
    let keys: Vec<LeaseKey> = (0..N).map(|i| key(&format!("shardId-{i:012}"))).collect();
    let mut tasks = JoinSet::new();
    for part in keys.chunks(N.div_ceil(CONCURRENCY)) {
        let store = store.clone();
        let part = part.to_vec();
        tasks.spawn(async move {
            for k in part {
                let mut lease = Lease::new(k, Checkpoint::TrimHorizon);
                lease.hash_key_range = Some(HashKeyRange::FULL);
                won(store.create_if_absent(&lease).await, "create");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("creating task panicked");
    }
    let listing = store.list().await.unwrap();
    assert!(listing.corrupt.is_empty(), "{:?}", listing.corrupt);
    let listed: Vec<LeaseKey> = listing.leases.iter().map(|l| l.key.clone()).collect();
    assert_eq!(listed.len(), N, "every lease listed exactly once");
    assert_eq!(listed, keys, "listed in key order");
}

/// A free lease is taken at its counter: owner set, counter +1, one owner switch.
pub async fn take_free_lease(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-1");
    let created = create(&*store, &k).await;
    let me = worker("w1");
    let taken = won(store.take(&k, created.counter, &me).await, "take free");
    assert_eq!(taken.owner, Some(me));
    assert_eq!(taken.counter, created.counter + 1);
    assert_eq!(taken.owner_switches_since_checkpoint, 1);
    assert_eq!(
        taken.checkpoint,
        Checkpoint::TrimHorizon,
        "take keeps the checkpoint"
    );
    assert_eq!(
        get(&*store, &k).await,
        taken,
        "take returns the stored lease"
    );
}

/// A lease owned by someone else is taken when the counter matches (stealing, or taking an
/// expired lease).
pub async fn take_owned_lease_with_current_counter(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-2");
    let held = create_owned(&*store, &k, &worker("old")).await;
    let taken = won(
        store.take(&k, held.counter, &worker("new")).await,
        "take owned",
    );
    assert_eq!(taken.owner, Some(worker("new")));
    assert_eq!(taken.counter, held.counter + 1);
    assert_eq!(
        taken.owner_switches_since_checkpoint,
        held.owner_switches_since_checkpoint + 1
    );
    // Taking back one's own lease does not count as a switch.
    let again = won(
        store.take(&k, taken.counter, &worker("new")).await,
        "re-take own",
    );
    assert_eq!(
        again.owner_switches_since_checkpoint,
        taken.owner_switches_since_checkpoint
    );
}

/// A take with a counter that moved loses and changes nothing.
pub async fn take_with_stale_counter_loses(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-3");
    let held = create_owned(&*store, &k, &worker("a")).await;
    lost(
        store.take(&k, held.counter - 1, &worker("b")).await,
        "stale take",
    );
    lost(
        store.take(&k, held.counter + 1, &worker("b")).await,
        "future take",
    );
    assert_eq!(get(&*store, &k).await, held, "unchanged");
}

/// Taking a lease that does not exist loses, and does not create it.
pub async fn take_missing_lease_loses(store: Arc<dyn LeaseStore>) {
    let k = key("missing");
    lost(store.take(&k, 0, &worker("a")).await, "take missing");
    assert_eq!(store.get(&k).await.unwrap(), None, "take must not create");
    lost(store.renew(&k, &worker("a"), 0).await, "renew missing");
    lost(store.evict(&k, &worker("a"), 0).await, "evict missing");
    let update = CheckpointUpdate::commit(at("1", 0));
    lost(
        store.update_checkpoint(&k, &worker("a"), 0, &update).await,
        "checkpoint missing",
    );
    lost(
        store.mark_ended(&k, &worker("a"), 0, &[]).await,
        "mark ended missing",
    );
    lost(store.delete(&k, 0).await, "delete missing");
    assert_eq!(
        store.get(&k).await.unwrap(),
        None,
        "no write created the row"
    );
}

/// The owner renews at its counter; the counter moves by one and nothing else changes.
pub async fn renew_by_owner(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-4");
    let me = worker("a");
    let held = create_owned(&*store, &k, &me).await;
    let counter = won(store.renew(&k, &me, held.counter).await, "renew");
    assert_eq!(counter, held.counter + 1);
    let counter = won(store.renew(&k, &me, counter).await, "renew again");
    assert_eq!(counter, held.counter + 2);
    let after = get(&*store, &k).await;
    assert_eq!(
        after,
        Lease { counter, ..held },
        "renew changes only the counter"
    );
}

/// A non-owner, or the owner with a stale counter, cannot renew.
pub async fn renew_by_non_owner_or_stale_counter_loses(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-5");
    let held = create_owned(&*store, &k, &worker("a")).await;
    lost(
        store.renew(&k, &worker("b"), held.counter).await,
        "renew by non-owner",
    );
    lost(
        store.renew(&k, &worker("a"), held.counter - 1).await,
        "renew with stale counter",
    );
    let free = create(&*store, &key("shardId-5-free")).await;
    lost(
        store.renew(&free.key, &worker("a"), free.counter).await,
        "renew of a free lease",
    );
    assert_eq!(get(&*store, &k).await, held, "unchanged");
}

/// Renewing many leases reports one outcome per lease, in order: taken-meanwhile and missing
/// leases lose, the rest are renewed.
pub async fn renew_many_reports_each_lease(store: Arc<dyn LeaseStore>) {
    let me = worker("a");
    let mut held = Vec::new();
    for i in 0..6 {
        held.push(create_owned(&*store, &key(&format!("shardId-{i}")), &me).await);
    }
    // Shard 1 is stolen, shard 3 is renewed behind our back (a stale counter for us), shard 5 is
    // deleted.
    won(
        store
            .take(&held[1].key, held[1].counter, &worker("thief"))
            .await,
        "steal",
    );
    won(
        store.renew(&held[3].key, &me, held[3].counter).await,
        "side renew",
    );
    won(store.delete(&held[5].key, held[5].counter).await, "delete");
    let mut request: Vec<(LeaseKey, u64)> =
        held.iter().map(|l| (l.key.clone(), l.counter)).collect();
    request.push((key("never-existed"), 0));

    let outcomes = store.renew_many(&me, &request).await;
    assert_eq!(outcomes.len(), request.len(), "one outcome per lease");
    let summary: Vec<Option<u64>> = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|e| panic!("renew_many: {e}")).won())
        .collect();
    let expected = vec![
        Some(held[0].counter + 1),
        None,
        Some(held[2].counter + 1),
        None,
        Some(held[4].counter + 1),
        None,
        None,
    ];
    assert_eq!(summary, expected);
    assert_eq!(
        get(&*store, &held[1].key).await.owner,
        Some(worker("thief")),
        "stolen lease untouched"
    );
    assert!(
        store.renew_many(&me, &[]).await.is_empty(),
        "an empty batch"
    );
}

/// The owner releases a lease: owner removed, counter +1; nobody else can.
pub async fn evict_frees_the_lease(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-6");
    let held = create_owned(&*store, &k, &worker("a")).await;
    lost(
        store.evict(&k, &worker("b"), held.counter).await,
        "evict by non-owner",
    );
    lost(
        store.evict(&k, &worker("a"), held.counter + 5).await,
        "evict with wrong counter",
    );
    let freed = won(store.evict(&k, &worker("a"), held.counter).await, "evict");
    assert_eq!(freed.owner, None);
    assert_eq!(freed.counter, held.counter + 1);
    assert_eq!(get(&*store, &k).await, freed);
    let retaken = won(
        store.take(&k, freed.counter, &worker("b")).await,
        "take after evict",
    );
    assert_eq!(retaken.owner, Some(worker("b")));
}

/// The owner checkpoints at its counter: checkpoint stored, counter +1, owner switches reset.
pub async fn checkpoint_by_owner(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-7");
    let me = worker("a");
    let held = create_owned(&*store, &k, &me).await;
    assert_eq!(held.owner_switches_since_checkpoint, 1);
    let update = CheckpointUpdate::commit(at(&real_seq(1), 0));
    let after = won(
        store
            .update_checkpoint(&k, &me, held.counter, &update)
            .await,
        "checkpoint",
    );
    assert_eq!(after.checkpoint, update.checkpoint);
    assert_eq!(after.counter, held.counter + 1);
    assert_eq!(after.owner_switches_since_checkpoint, 0);
    assert_eq!(after.owner, Some(me.clone()));
    assert_eq!(get(&*store, &k).await, after);
    // The same checkpoint again is allowed (a no-op position, a new counter).
    let again = won(
        store
            .update_checkpoint(&k, &me, after.counter, &update)
            .await,
        "same again",
    );
    assert_eq!(again.checkpoint, update.checkpoint);
}

/// A worker that lost the lease cannot checkpoint, even with the counter it last saw.
pub async fn checkpoint_by_former_owner_loses(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-8");
    let held = create_owned(&*store, &k, &worker("old")).await;
    let taken = won(store.take(&k, held.counter, &worker("new")).await, "take");
    let update = CheckpointUpdate::commit(at("500", 0));
    lost(
        store
            .update_checkpoint(&k, &worker("old"), held.counter, &update)
            .await,
        "old counter",
    );
    lost(
        store
            .update_checkpoint(&k, &worker("old"), taken.counter, &update)
            .await,
        "new counter, old owner",
    );
    assert_eq!(get(&*store, &k).await, taken, "unchanged");
}

/// A checkpoint with a counter that moved loses.
pub async fn checkpoint_with_stale_counter_loses(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-9");
    let me = worker("a");
    let held = create_owned(&*store, &k, &me).await;
    let renewed = won(store.renew(&k, &me, held.counter).await, "renew");
    let update = CheckpointUpdate::commit(at("500", 0));
    lost(
        store
            .update_checkpoint(&k, &me, held.counter, &update)
            .await,
        "stale checkpoint",
    );
    assert_eq!(get(&*store, &k).await.counter, renewed);
}

/// A checkpoint before a record (how the worker pins `LATEST` to the first record it reads)
/// round-trips, and orders between the position before it and the record's first sub-record:
/// it replaces `LATEST`, a position in the record replaces it, and it never comes back.
pub async fn checkpoint_before_a_record(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-11");
    let me = worker("a");
    let lease = Lease::new(k.clone(), Checkpoint::Latest);
    won(store.create_if_absent(&lease).await, "create at LATEST");
    let held = won(store.take(&k, lease.counter, &me).await, "take");
    let first = SequenceNumber::new(&real_seq(100)).unwrap();
    let before = Checkpoint::Before(first.clone());
    let pinned = won(
        store
            .update_checkpoint(
                &k,
                &me,
                held.counter,
                &CheckpointUpdate::commit(before.clone()),
            )
            .await,
        "pin LATEST before the first record",
    );
    assert_eq!(pinned.checkpoint, before, "the write returns it");
    assert_eq!(get(&*store, &k).await, pinned, "stored as written");
    for behind in [
        at(&real_seq(99), 7),
        Checkpoint::Before(SequenceNumber::new(&real_seq(99)).unwrap()),
    ] {
        let err = store
            .update_checkpoint(
                &k,
                &me,
                pinned.counter,
                &CheckpointUpdate::commit(behind.clone()),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            StoreErrorKind::CheckpointRegression,
            "{behind}: {err}"
        );
    }
    let through = won(
        store
            .update_checkpoint(
                &k,
                &me,
                pinned.counter,
                &CheckpointUpdate::commit(at(&real_seq(100), 0)),
            )
            .await,
        "the record's first sub-record is after it",
    );
    let err = store
        .update_checkpoint(
            &k,
            &me,
            through.counter,
            &CheckpointUpdate::commit(before.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        StoreErrorKind::CheckpointRegression,
        "back before the record: {err}"
    );
    assert_eq!(get(&*store, &k).await, through, "unchanged");
}

/// A checkpoint behind the stored one is refused with `CheckpointRegression` and nothing
/// changes; the same holds inside an aggregate and after `SHARD_END`.
pub async fn checkpoint_never_moves_backwards(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-10");
    let me = worker("a");
    let held = create_owned(&*store, &k, &me).await;
    let at_100_5 = won(
        store
            .update_checkpoint(
                &k,
                &me,
                held.counter,
                &CheckpointUpdate::commit(at(&real_seq(100), 5)),
            )
            .await,
        "forward",
    );
    for backwards in [at(&real_seq(99), 9), at(&real_seq(100), 4), at("7", 0)] {
        let update = CheckpointUpdate::commit(backwards.clone());
        match store
            .update_checkpoint(&k, &me, at_100_5.counter, &update)
            .await
        {
            Err(e) => assert_eq!(
                e.kind(),
                StoreErrorKind::CheckpointRegression,
                "{backwards}: {e}"
            ),
            Ok(outcome) => {
                panic!("{backwards}: accepted ({outcome:?}), expected a regression error")
            }
        }
        assert_eq!(get(&*store, &k).await, at_100_5, "{backwards}: unchanged");
    }
    let ended = won(
        store.mark_ended(&k, &me, at_100_5.counter, &[]).await,
        "end",
    );
    let update = CheckpointUpdate::commit(at(&real_seq(200), 0));
    let err = store
        .update_checkpoint(&k, &me, ended.counter, &update)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        StoreErrorKind::CheckpointRegression,
        "after SHARD_END: {err}"
    );
    assert_eq!(get(&*store, &k).await, ended, "unchanged after SHARD_END");
}

/// Sequence numbers compare as numbers, not text: 9 < 10 and 99 < 100.
pub async fn checkpoints_compare_numerically(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-11");
    let me = worker("a");
    let mut counter = create_owned(&*store, &k, &me).await.counter;
    for forward in [
        "9",
        "10",
        "99",
        "100",
        "1000",
        &real_seq(0),
        &format!("1{}", "0".repeat(80)),
    ] {
        let update = CheckpointUpdate::commit(at(forward, 0));
        counter = won(
            store.update_checkpoint(&k, &me, counter, &update).await,
            forward,
        )
        .counter;
    }
    let err = store
        .update_checkpoint(&k, &me, counter, &CheckpointUpdate::commit(at("99", 0)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::CheckpointRegression, "{err}");
}

/// Two-phase checkpoint: prepare stores a pending position with state bytes beside the
/// unchanged checkpoint; commit moves the checkpoint there and clears the pending one.
pub async fn prepare_and_commit_with_state(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-12");
    let me = worker("a");
    let held = create_owned(&*store, &k, &me).await;
    let first = won(
        store
            .update_checkpoint(
                &k,
                &me,
                held.counter,
                &CheckpointUpdate::commit(at("10", 0)),
            )
            .await,
        "checkpoint",
    );
    let pending = PendingCheckpoint::new(at("20", 3), Some(b"app state \x00\xff".to_vec()));
    let prepare = CheckpointUpdate::prepare(at("10", 0), pending.clone());
    let prepared = won(
        store
            .update_checkpoint(&k, &me, first.counter, &prepare)
            .await,
        "prepare",
    );
    assert_eq!(
        prepared.checkpoint,
        at("10", 0),
        "prepare keeps the checkpoint"
    );
    assert_eq!(prepared.pending_checkpoint, Some(pending.clone()));
    assert_eq!(get(&*store, &k).await, prepared, "prepared state stored");

    // A pending checkpoint behind the checkpoint is an invalid request.
    let bad = CheckpointUpdate::prepare(at("10", 0), PendingCheckpoint::new(at("5", 0), None));
    let err = store
        .update_checkpoint(&k, &me, prepared.counter, &bad)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidArgument, "{err}");

    let committed = won(
        store
            .update_checkpoint(
                &k,
                &me,
                prepared.counter,
                &CheckpointUpdate::commit(pending.position.clone()),
            )
            .await,
        "commit",
    );
    assert_eq!(committed.checkpoint, at("20", 3));
    assert_eq!(committed.pending_checkpoint, None);
    assert_eq!(get(&*store, &k).await, committed);
}

/// Marking a shard ended writes `SHARD_END` and the children, and clears a pending checkpoint.
pub async fn mark_ended_records_children(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-13");
    let me = worker("a");
    let held = create_owned(&*store, &k, &me).await;
    let prepared = won(
        store
            .update_checkpoint(
                &k,
                &me,
                held.counter,
                &CheckpointUpdate::prepare(
                    Checkpoint::TrimHorizon,
                    PendingCheckpoint::new(at("3", 0), None),
                ),
            )
            .await,
        "prepare",
    );
    let children = [shard("shardId-000000000015"), shard("shardId-000000000014")];
    lost(
        store
            .mark_ended(&k, &worker("b"), prepared.counter, &children)
            .await,
        "by non-owner",
    );
    let ended = won(
        store.mark_ended(&k, &me, prepared.counter, &children).await,
        "mark ended",
    );
    assert_eq!(ended.checkpoint, Checkpoint::ShardEnd);
    assert_eq!(
        ended.child_shard_ids,
        vec![children[1].clone(), children[0].clone()],
        "sorted children"
    );
    assert_eq!(ended.pending_checkpoint, None);
    assert_eq!(ended.counter, prepared.counter + 1);
    assert!(ended.is_ended());
    assert_eq!(get(&*store, &k).await, ended);
}

/// Deleting needs the current counter.
pub async fn delete_is_conditional(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-14");
    let held = create_owned(&*store, &k, &worker("a")).await;
    lost(store.delete(&k, held.counter - 1).await, "stale delete");
    assert!(store.get(&k).await.unwrap().is_some(), "still there");
    won(store.delete(&k, held.counter).await, "delete");
    assert_eq!(store.get(&k).await.unwrap(), None, "gone");
    assert!(
        store.list().await.unwrap().leases.is_empty(),
        "gone from the listing"
    );
    // The key can be created again.
    create(&*store, &k).await;
}

/// An operator's reset moves a checkpoint backwards and fences out the old holder: the lease is
/// free, at the new checkpoint, with no pending checkpoint and no owner switches, its counter
/// one higher; its shard's lineage and hash range stay.
pub async fn reset_checkpoint_fences_old_holders(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-15");
    let me = worker("a");
    let mut lease =
        Lease::new(k.clone(), Checkpoint::TrimHorizon).with_parents([shard("shardId-3")]);
    lease.hash_key_range = Some(HashKeyRange::new(5, 500).unwrap());
    won(store.create_if_absent(&lease).await, "create");
    let held = won(store.take(&k, lease.counter, &me).await, "take");
    let progressed = won(
        store
            .update_checkpoint(
                &k,
                &me,
                held.counter,
                &CheckpointUpdate::prepare(
                    at("900", 0),
                    PendingCheckpoint::new(at("950", 2), Some(b"state".to_vec())),
                ),
            )
            .await,
        "checkpoint",
    );
    lost(
        store
            .reset_checkpoint(&k, progressed.counter - 1, &Checkpoint::TrimHorizon)
            .await,
        "stale reset",
    );
    let reset = won(
        store
            .reset_checkpoint(&k, progressed.counter, &Checkpoint::TrimHorizon)
            .await,
        "reset",
    );
    let expected = Lease {
        owner: None,
        counter: progressed.counter + 1,
        checkpoint: Checkpoint::TrimHorizon,
        pending_checkpoint: None,
        owner_switches_since_checkpoint: 0,
        ..progressed.clone()
    };
    assert_eq!(reset, expected, "the reset lease");
    lost(
        store.renew(&k, &me, progressed.counter).await,
        "old holder renews",
    );
    assert_eq!(get(&*store, &k).await, reset);
    lost(
        store
            .reset_checkpoint(&key("shardId-missing"), 0, &Checkpoint::TrimHorizon)
            .await,
        "reset of a missing lease",
    );
}

/// A reset is one conditional write: when creating rows fails (throttling, a dropped
/// connection), the reset still happens whole, or fails with the row as it was; the row is
/// never missing.
pub async fn reset_checkpoint_is_one_write(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-16");
    let me = worker("a");
    let held = create_owned(&*store, &k, &me).await;
    let progressed = won(
        store
            .update_checkpoint(
                &k,
                &me,
                held.counter,
                &CheckpointUpdate::commit(at("900", 0)),
            )
            .await,
        "checkpoint",
    );
    let faulty = FaultyStore::new(store.clone());
    faulty.set_rule(|operation, _| {
        (operation == Operation::CreateIfAbsent)
            .then(|| Fault::Fail(StoreError::unavailable("injected: creating rows fails")))
    });
    let outcome = faulty
        .reset_checkpoint(&k, progressed.counter, &Checkpoint::TrimHorizon)
        .await;
    let after = store
        .get(&k)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the reset left no row ({outcome:?})"));
    match outcome {
        Ok(Race::Won(reset)) => {
            assert_eq!(after, reset, "stored as returned");
            assert_eq!(after.checkpoint, Checkpoint::TrimHorizon);
        }
        Ok(Race::Lost) => panic!("the reset lost a race nobody ran"),
        Err(_) => assert_eq!(after, progressed, "a failed reset leaves the row as it was"),
    }
}

/// Operators reset while workers take the same lease at the same counter: exactly one wins each
/// round, and a reader never finds the row missing.
pub async fn racing_reset_against_take(store: Arc<dyn LeaseStore>) {
    let k = key("race-reset");
    create(&*store, &k).await;
    for round in 0..ROUNDS / 5 {
        let before = get(&*store, &k).await;
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for t in 0..RACERS {
            let (store, k, barrier) = (store.clone(), k.clone(), barrier.clone());
            let counter = before.counter;
            tasks.spawn(async move {
                barrier.wait().await;
                match t % 3 {
                    0 => store
                        .reset_checkpoint(&k, counter, &at(&real_seq(round as u64), 0))
                        .await
                        .map(|r| r.is_won()),
                    1 => store
                        .take(&k, counter, &worker(&format!("taker-{t}")))
                        .await
                        .map(|r| r.is_won()),
                    _ => {
                        for _ in 0..4 {
                            if store.get(&k).await?.is_none() {
                                panic!("round {round}: the row was missing during a reset");
                            }
                        }
                        Ok(false)
                    }
                }
            });
        }
        let mut winners = 0;
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                Ok(won) => winners += usize::from(won),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(winners, 1, "round {round}: {winners} writers won");
        assert_eq!(
            get(&*store, &k).await.counter,
            before.counter + 1,
            "round {round}: counter advanced once"
        );
    }
}

/// Keys with separators, unicode, quotes and 256 bytes work in every operation.
pub async fn odd_keys(store: Arc<dyn LeaseStore>) {
    let long = "k".repeat(256);
    let names = [
        "123456789012:my-stream:1700000000:shardId-000000000001",
        "stream/with/slashes/shard",
        "ключ-🦀-€-漢字",
        "quote' double\" semi; -- %s $1 {x} [y] * ?",
        long.as_str(),
    ];
    let me = worker("worker with spaces and ünïcode");
    for name in names {
        let k = key(name);
        let held = create_owned(&*store, &k, &me).await;
        let counter = won(store.renew(&k, &me, held.counter).await, name);
        let update = CheckpointUpdate::commit(at("42", 1));
        let after = won(
            store.update_checkpoint(&k, &me, counter, &update).await,
            name,
        );
        assert_eq!(get(&*store, &k).await, after, "{name}");
    }
    let listed: Vec<String> = store
        .list()
        .await
        .unwrap()
        .leases
        .iter()
        .map(|l| l.key.as_str().to_owned())
        .collect();
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for name in names {
        let k = key(name);
        let current = get(&*store, &k).await;
        won(store.delete(&k, current.counter).await, name);
    }
}

/// A hand-off from request to completion: the request makes the thief the owner and the
/// victim the checkpoint owner, fences the victim's old counter, and from then on only the
/// victim writes (renew, checkpoint) until its evict hands the lease over.
pub async fn handoff_from_request_to_completion(store: Arc<dyn LeaseStore>) {
    let k = key("handoff");
    let (victim, thief, other) = (worker("victim"), worker("thief"), worker("other"));
    let held = create_owned(&*store, &k, &victim).await;
    let asked = won(
        store
            .request_handoff(&k, held.counter, &victim, &thief)
            .await,
        "request",
    );
    assert_eq!(asked.owner.as_ref(), Some(&thief), "the thief is the owner");
    assert_eq!(
        asked.checkpoint_owner.as_ref(),
        Some(&victim),
        "the victim holds it"
    );
    assert_eq!(
        asked.counter,
        held.counter + 1,
        "the request increments the counter"
    );
    assert_eq!(
        asked.owner_switches_since_checkpoint,
        held.owner_switches_since_checkpoint + 1,
        "the request counts an owner switch"
    );
    assert_eq!(
        get(&*store, &k).await,
        asked,
        "the request returns the stored lease"
    );
    assert!(asked.is_held_by(&victim) && asked.is_handing_off());

    lost(
        store.renew(&k, &victim, held.counter).await,
        "the victim's renewal at the counter before the request",
    );
    lost(
        store
            .request_handoff(&k, asked.counter, &thief, &other)
            .await,
        "a second request while one is pending",
    );
    lost(
        store.renew(&k, &thief, asked.counter).await,
        "a renewal by the thief before the hand-off completes",
    );
    let update = CheckpointUpdate::commit(at("100", 0));
    lost(
        store
            .update_checkpoint(&k, &thief, asked.counter, &update)
            .await,
        "a checkpoint by the thief before the hand-off completes",
    );
    lost(
        store.evict(&k, &thief, asked.counter).await,
        "a release by the thief before the hand-off completes",
    );
    let renewed = won(
        store.renew(&k, &victim, asked.counter).await,
        "the victim renews as the holder",
    );
    let renewed = won(
        store
            .renew_many(&victim, &[(k.clone(), renewed)])
            .await
            .remove(0),
        "the victim renews many as the holder",
    );
    let checkpointed = won(
        store.update_checkpoint(&k, &victim, renewed, &update).await,
        "the victim checkpoints as the holder",
    );
    assert_eq!(
        checkpointed.owner.as_ref(),
        Some(&thief),
        "a checkpoint keeps the hand-off"
    );
    assert_eq!(checkpointed.checkpoint_owner.as_ref(), Some(&victim));
    assert_eq!(checkpointed.owner_switches_since_checkpoint, 0);
    let done = won(
        store.evict(&k, &victim, checkpointed.counter).await,
        "the victim gives the lease up: the hand-off completes",
    );
    assert_eq!(done.owner.as_ref(), Some(&thief), "the thief owns it");
    assert_eq!(done.checkpoint_owner, None, "no hand-off pending");
    assert_eq!(done.counter, checkpointed.counter + 1);
    assert_eq!(
        done.checkpoint,
        at("100", 0),
        "the victim's checkpoint stands"
    );
    assert_eq!(get(&*store, &k).await, done);
    lost(
        store.renew(&k, &victim, done.counter).await,
        "the victim's renewal after the hand-off",
    );
    won(
        store.renew(&k, &thief, done.counter).await,
        "the thief renews after the hand-off",
    );
}

/// A request needs the named holder as owner, the counter it names and no pending hand-off;
/// a hand-off to oneself is refused as invalid.
pub async fn handoff_request_conditions(store: Arc<dyn LeaseStore>) {
    let k = key("handoff-conditions");
    let (victim, thief) = (worker("victim"), worker("thief"));
    let free = create(&*store, &k).await;
    lost(
        store
            .request_handoff(&k, free.counter, &victim, &thief)
            .await,
        "a request on a free lease",
    );
    let held = won(store.take(&k, free.counter, &victim).await, "take");
    lost(
        store
            .request_handoff(&k, held.counter + 1, &victim, &thief)
            .await,
        "a request at another counter",
    );
    lost(
        store
            .request_handoff(&k, held.counter, &worker("someone"), &thief)
            .await,
        "a request naming another holder",
    );
    lost(
        store
            .request_handoff(&key("missing"), 0, &victim, &thief)
            .await,
        "a request for a missing lease",
    );
    match store
        .request_handoff(&k, held.counter, &victim, &victim)
        .await
    {
        Err(e) if e.kind() == StoreErrorKind::InvalidArgument => {}
        other => panic!("a hand-off to oneself: {other:?}, expected InvalidArgument"),
    }
    assert_eq!(get(&*store, &k).await, held, "nothing changed");
}

/// A take (after the holder died) and an operator's reset both end a pending hand-off, and
/// fence the holder out.
pub async fn take_and_reset_end_a_handoff(store: Arc<dyn LeaseStore>) {
    let k = key("handoff-ended");
    let (victim, thief, other) = (worker("victim"), worker("thief"), worker("other"));
    let held = create_owned(&*store, &k, &victim).await;
    let asked = won(
        store
            .request_handoff(&k, held.counter, &victim, &thief)
            .await,
        "request",
    );
    let taken = won(store.take(&k, asked.counter, &other).await, "take");
    assert_eq!(taken.owner.as_ref(), Some(&other));
    assert_eq!(taken.checkpoint_owner, None, "a take ends the hand-off");
    lost(
        store.renew(&k, &victim, taken.counter).await,
        "the former holder renews after the take",
    );
    let asked = won(
        store
            .request_handoff(&k, taken.counter, &other, &thief)
            .await,
        "a second request",
    );
    let reset = won(
        store
            .reset_checkpoint(&k, asked.counter, &Checkpoint::TrimHorizon)
            .await,
        "reset",
    );
    assert_eq!(
        (reset.owner, reset.checkpoint_owner),
        (None, None),
        "a reset frees it"
    );
}

/// A shard that ends during a hand-off: the holder marks it ended and then hands it over.
pub async fn shard_end_during_a_handoff(store: Arc<dyn LeaseStore>) {
    let k = key("handoff-end");
    let (victim, thief) = (worker("victim"), worker("thief"));
    let held = create_owned(&*store, &k, &victim).await;
    let asked = won(
        store
            .request_handoff(&k, held.counter, &victim, &thief)
            .await,
        "request",
    );
    lost(
        store.mark_ended(&k, &thief, asked.counter, &[]).await,
        "the thief marks it ended",
    );
    let ended = won(
        store
            .mark_ended(&k, &victim, asked.counter, &[shard("shardId-000000000009")])
            .await,
        "the holder marks it ended",
    );
    assert!(ended.is_ended() && ended.is_handing_off());
    let done = won(store.evict(&k, &victim, ended.counter).await, "hand over");
    assert!(done.is_ended());
    assert_eq!((done.owner, done.checkpoint_owner), (Some(thief), None));
}

/// Many thieves ask for the same lease at once, 100 rounds: exactly one request wins, and the
/// stored lease is its result.
pub async fn racing_handoff_requests(store: Arc<dyn LeaseStore>) {
    let k = key("race-handoff");
    let victim = worker("victim");
    create_owned(&*store, &k, &victim).await;
    for round in 0..ROUNDS {
        let before = get(&*store, &k).await;
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for t in 0..RACERS {
            let (store, k, barrier, victim) =
                (store.clone(), k.clone(), barrier.clone(), victim.clone());
            let counter = before.counter;
            tasks.spawn(async move {
                let me = worker(&format!("thief-{t}"));
                barrier.wait().await;
                (
                    me.clone(),
                    store.request_handoff(&k, counter, &victim, &me).await,
                )
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (who, outcome) = joined.unwrap();
            match outcome {
                Ok(Race::Won(lease)) => winners.push((who, lease)),
                Ok(Race::Lost) => {}
                Err(e) => panic!("round {round}: request by {who}: {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} requests won",
            winners.len()
        );
        let (winner, lease) = &winners[0];
        let after = get(&*store, &k).await;
        assert_eq!(
            &after, lease,
            "round {round}: the winner saw the stored lease"
        );
        assert_eq!(after.owner.as_ref(), Some(winner), "round {round}");
        assert_eq!(
            after.checkpoint_owner.as_ref(),
            Some(&victim),
            "round {round}"
        );
        assert_eq!(after.counter, before.counter + 1, "round {round}");
        // The victim takes it back for the next round.
        won(store.take(&k, after.counter, &victim).await, "take back");
    }
}

/// Runs `request_handoff` (from `victim` to `thief` at `counter`) and `other` at once, both
/// released by one barrier; their outcomes.
async fn race_a_request<T, F, Fut>(
    store: &Arc<dyn LeaseStore>,
    k: &LeaseKey,
    victim: &WorkerId,
    thief: &WorkerId,
    counter: u64,
    other: F,
) -> (Race<Lease>, Race<T>)
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Race<T>, StoreError>> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let racer = tokio::spawn({
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            other().await
        }
    });
    barrier.wait().await;
    let request = store
        .request_handoff(k, counter, victim, thief)
        .await
        .unwrap();
    (request, racer.await.unwrap().unwrap())
}

/// The victim renews while a thief asks, at the same counter, 100 rounds: exactly one wins;
/// after a won request the victim's renewal at the new counter still succeeds.
pub async fn racing_handoff_request_against_renewal(store: Arc<dyn LeaseStore>) {
    let k = key("race-handoff-renew");
    let (victim, thief) = (worker("victim"), worker("thief"));
    create_owned(&*store, &k, &victim).await;
    let (mut requests, mut renewals) = (0, 0);
    for round in 0..ROUNDS {
        let before = get(&*store, &k).await;
        let (request, renewal) = race_a_request(&store, &k, &victim, &thief, before.counter, {
            let (store, k, victim) = (store.clone(), k.clone(), victim.clone());
            move || async move { store.renew(&k, &victim, before.counter).await }
        })
        .await;
        assert!(
            request.is_won() != renewal.is_won(),
            "round {round}: exactly one write wins (request won: {}, renewal won: {})",
            request.is_won(),
            renewal.is_won()
        );
        let after = get(&*store, &k).await;
        assert_eq!(after.counter, before.counter + 1, "round {round}");
        assert!(
            after.is_held_by(&victim),
            "round {round}: the victim still holds it"
        );
        if request.is_won() {
            requests += 1;
            won(
                store.renew(&k, &victim, after.counter).await,
                "the victim renews after the request",
            );
            let holding = get(&*store, &k).await;
            won(store.take(&k, holding.counter, &victim).await, "take back");
        } else {
            renewals += 1;
            assert_eq!(
                after.checkpoint_owner, None,
                "round {round}: no hand-off pending"
            );
        }
    }
    assert_eq!(requests + renewals, ROUNDS);
}

/// The victim releases (on shutdown) while a thief asks, at the same counter, 100 rounds:
/// exactly one wins; either the lease is free, or it is handed off and the victim's release
/// at the new counter completes the hand-off. The lease never ends up held by nobody with a
/// hand-off pending, nor lost.
pub async fn racing_handoff_request_against_release(store: Arc<dyn LeaseStore>) {
    let k = key("race-handoff-release");
    let (victim, thief) = (worker("victim"), worker("thief"));
    create_owned(&*store, &k, &victim).await;
    for round in 0..ROUNDS {
        let before = get(&*store, &k).await;
        let (request, release) = race_a_request(&store, &k, &victim, &thief, before.counter, {
            let (store, k, victim) = (store.clone(), k.clone(), victim.clone());
            move || async move { store.evict(&k, &victim, before.counter).await }
        })
        .await;
        assert!(
            request.is_won() != release.is_won(),
            "round {round}: exactly one write wins"
        );
        let after = get(&*store, &k).await;
        if request.is_won() {
            assert!(after.is_handing_off(), "round {round}");
            let done = won(
                store.evict(&k, &victim, after.counter).await,
                "the victim's release completes the hand-off",
            );
            assert_eq!(
                (done.owner.as_ref(), done.checkpoint_owner.as_ref()),
                (Some(&thief), None)
            );
        } else {
            assert_eq!(
                (after.owner.as_ref(), after.checkpoint_owner.as_ref()),
                (None, None),
                "round {round}: released"
            );
        }
        let now = get(&*store, &k).await;
        won(store.take(&k, now.counter, &victim).await, "take back");
    }
}

const RACERS: usize = 16;
const ROUNDS: usize = 100;

/// 16 tasks create the same key at once: exactly one wins, every round.
pub async fn racing_creates(store: Arc<dyn LeaseStore>) {
    for round in 0..ROUNDS / 5 {
        let k = key(&format!("race-create-{round}"));
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for t in 0..RACERS {
            let (store, k, barrier) = (store.clone(), k.clone(), barrier.clone());
            tasks.spawn(async move {
                let mut lease = Lease::new(k, Checkpoint::TrimHorizon);
                lease.counter = t as u64;
                barrier.wait().await;
                store.create_if_absent(&lease).await
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Race::Won(lease) = joined.unwrap().unwrap_or_else(|e| panic!("create: {e}")) {
                winners.push(lease);
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} creators won",
            winners.len()
        );
        assert_eq!(
            get(&*store, &k).await,
            winners[0],
            "round {round}: the winner's row stands"
        );
    }
}

/// 16 tasks take the same lease at the same counter, 100 rounds: exactly one winner every
/// round, and the counter advances exactly once per win.
pub async fn racing_takes(store: Arc<dyn LeaseStore>) {
    let k = key("race-take");
    create(&*store, &k).await;
    for round in 0..ROUNDS {
        let before = get(&*store, &k).await;
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for t in 0..RACERS {
            let (store, k, barrier) = (store.clone(), k.clone(), barrier.clone());
            let counter = before.counter;
            tasks.spawn(async move {
                let me = worker(&format!("taker-{t}"));
                barrier.wait().await;
                (me.clone(), store.take(&k, counter, &me).await)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (who, outcome) = joined.unwrap();
            match outcome {
                Ok(Race::Won(lease)) => winners.push((who, lease)),
                Ok(Race::Lost) => {}
                Err(e) => panic!("round {round}: take by {who}: {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} takers won",
            winners.len()
        );
        let (winner, lease) = &winners[0];
        let after = get(&*store, &k).await;
        assert_eq!(
            after.counter,
            before.counter + 1,
            "round {round}: counter advanced once"
        );
        assert_eq!(
            after.owner.as_ref(),
            Some(winner),
            "round {round}: the winner owns it"
        );
        assert_eq!(
            &after, lease,
            "round {round}: the winner saw the stored lease"
        );
    }
}

/// The owner checkpoints from 8 tasks while 8 others take the lease, all at the same counter,
/// 100 rounds: exactly one write wins, and the stored lease is exactly that write's result.
pub async fn racing_checkpoint_against_take(store: Arc<dyn LeaseStore>) {
    let k = key("race-checkpoint");
    let holder = worker("holder");
    create_owned(&*store, &k, &holder).await;
    for round in 0..ROUNDS {
        let mut before = get(&*store, &k).await;
        if !before.is_owned_by(&holder) {
            before = won(
                store.take(&k, before.counter, &holder).await,
                "give back to the holder",
            );
        }
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for t in 0..RACERS {
            let (store, k, barrier, holder) =
                (store.clone(), k.clone(), barrier.clone(), holder.clone());
            let counter = before.counter;
            tasks.spawn(async move {
                barrier.wait().await;
                if t % 2 == 0 {
                    let position = at(&real_seq((round * RACERS + t + 1) as u64), 0);
                    let update = CheckpointUpdate::commit(position);
                    (
                        t,
                        store.update_checkpoint(&k, &holder, counter, &update).await,
                    )
                } else {
                    (
                        t,
                        store
                            .take(&k, counter, &worker(&format!("taker-{t}")))
                            .await,
                    )
                }
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (t, outcome) = joined.unwrap();
            match outcome {
                Ok(Race::Won(lease)) => winners.push((t, lease)),
                Ok(Race::Lost) => {}
                Err(e) => panic!("round {round}: task {t}: {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} writers won",
            winners.len()
        );
        let (t, lease) = &winners[0];
        let after = get(&*store, &k).await;
        assert_eq!(&after, lease, "round {round}");
        assert_eq!(
            after.counter,
            before.counter + 1,
            "round {round}: one increment"
        );
        if t % 2 == 0 {
            assert_eq!(
                after.owner,
                Some(holder.clone()),
                "round {round}: checkpoint keeps the owner"
            );
            assert_eq!(
                after.checkpoint,
                at(&real_seq((round * RACERS + t + 1) as u64), 0)
            );
        } else {
            assert_eq!(
                after.owner,
                Some(worker(&format!("taker-{t}"))),
                "round {round}"
            );
            assert_eq!(
                after.checkpoint, before.checkpoint,
                "round {round}: a take keeps the checkpoint"
            );
        }
    }
}

/// A server restart in the middle of a run, for stores on a server the test controls:
/// `set_running(false)` stops it, `set_running(true)` starts it again and returns once it is
/// started. `store` is fresh and empty and points at that server. Ten leases are created and
/// taken (half checkpointed); while the server is down every operation fails with a retryable
/// error; once it is back the leases are exactly as before, a renewal round and a checkpoint
/// succeed exactly once each, and no lease was lost or duplicated. Not part of
/// [`lease_store_conformance_tests!`]: it needs a server of its own.
pub async fn survives_a_server_restart(store: &dyn LeaseStore, mut set_running: impl FnMut(bool)) {
    fn restart_checkpoint(n: u64) -> Checkpoint {
        at(
            &format!("49590338271490256608559692538361571095921575989136{n:06}"),
            0,
        )
    }
    fn assert_retryable<T: std::fmt::Debug>(what: &str, outcome: Result<T, crate::StoreError>) {
        match outcome {
            Err(e) => assert!(
                e.is_retryable(),
                "{what} while down: not retryable: {e} ({:?})",
                e.kind()
            ),
            Ok(value) => panic!("{what} while down: succeeded with {value:?}"),
        }
    }
    /// Retries `op` on retryable errors for up to 30 s (a pooled connection broken by the
    /// restart fails once, then is replaced).
    async fn eventually<T, F, Fut>(what: &str, mut op: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::StoreError>>,
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match op().await {
                Ok(value) => return value,
                Err(e) if e.is_retryable() && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!("{what} after restart: {e}"),
            }
        }
    }

    let me = worker("worker-a");
    let keys: Vec<LeaseKey> = (0..10).map(|i| key(&format!("shardId-{i:012}"))).collect();
    for (i, k) in keys.iter().enumerate() {
        create(store, k).await;
        let taken = won(store.take(k, 0, &me).await, "take");
        if i % 2 == 0 {
            let update = CheckpointUpdate::commit(restart_checkpoint(i as u64));
            won(
                store
                    .update_checkpoint(k, &me, taken.counter, &update)
                    .await,
                "checkpoint",
            );
        }
    }
    let before = store.list().await.unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(before.leases.len(), keys.len());

    set_running(false);
    let held: Vec<(LeaseKey, u64)> = before
        .leases
        .iter()
        .map(|l| (l.key.clone(), l.counter))
        .collect();
    let first = &before.leases[0];
    assert_retryable("list", store.list().await);
    assert_retryable("get", store.get(&first.key).await);
    assert_retryable("renew", store.renew(&first.key, &me, first.counter).await);
    assert_retryable("take", store.take(&first.key, first.counter, &me).await);
    let update = CheckpointUpdate::commit(restart_checkpoint(500));
    assert_retryable(
        "checkpoint",
        store
            .update_checkpoint(&first.key, &me, first.counter, &update)
            .await,
    );
    let extra = Lease::new(key("shardId-new"), Checkpoint::TrimHorizon);
    assert_retryable("create", store.create_if_absent(&extra).await);
    for outcome in store.renew_many(&me, &held).await {
        assert_retryable("renew_many", outcome);
    }

    set_running(true);
    let after = eventually("list", || store.list()).await;
    assert_eq!(
        after, before,
        "every lease and checkpoint survived the restart unchanged"
    );

    // The worker carries on: one renewal round and a checkpoint succeed, exactly once each.
    let outcomes = eventually("renew_many", || async {
        let outcomes = store.renew_many(&me, &held).await;
        outcomes.into_iter().collect::<Result<Vec<_>, _>>()
    })
    .await;
    let expected: Vec<Race<u64>> = held.iter().map(|(_, c)| Race::Won(c + 1)).collect();
    assert_eq!(outcomes, expected);
    let k = &keys[0];
    let update = CheckpointUpdate::commit(restart_checkpoint(600));
    let written = eventually("checkpoint", || {
        store.update_checkpoint(k, &me, held[0].1 + 1, &update)
    })
    .await;
    assert!(written.is_won());
    let last = eventually("list", || store.list()).await;
    assert_eq!(last.leases.len(), keys.len(), "no lease duplicated or lost");
    assert_eq!(last.leases[0].checkpoint, restart_checkpoint(600));
    assert_eq!(last.leases[0].counter, held[0].1 + 2);
}

/// The future a [`CleanupStore`] runs when it is dropped.
pub type Cleanup = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A test's store that cleans up after itself when dropped, also when the test panics: the
/// `cleanup` given to [`CleanupStore::new`] (delete the test's leases, say) runs to completion
/// on a thread with its own runtime, because `Drop` cannot wait on the test's runtime. Every
/// [`LeaseStore`] call goes to `store`.
pub struct CleanupStore<S> {
    /// The store the calls go to.
    pub store: Arc<S>,
    cleanup: Option<Box<dyn FnOnce() -> Cleanup + Send + Sync>>,
}

impl<S> CleanupStore<S> {
    /// Wraps `store`; `cleanup` makes the future to run when the wrapper is dropped.
    pub fn new(store: S, cleanup: impl FnOnce() -> Cleanup + Send + Sync + 'static) -> Self {
        Self {
            store: Arc::new(store),
            cleanup: Some(Box::new(cleanup)),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for CleanupStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanupStore")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<S> Drop for CleanupStore<S> {
    fn drop(&mut self) {
        let Some(cleanup) = self.cleanup.take() else {
            return;
        };
        let thread =
            std::thread::spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(cleanup()),
                    Err(e) => eprintln!("cleanup skipped: no runtime: {e}"),
                }
            });
        let _ = thread.join();
    }
}

#[async_trait::async_trait]
impl<S: LeaseStore> LeaseStore for CleanupStore<S> {
    async fn create_table_if_missing(&self) -> Result<(), crate::StoreError> {
        self.store.create_table_if_missing().await
    }
    async fn list(&self) -> Result<crate::LeaseListing, crate::StoreError> {
        self.store.list().await
    }
    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, crate::StoreError> {
        self.store.get(key).await
    }
    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, crate::StoreError> {
        self.store.create_if_absent(lease).await
    }
    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, crate::StoreError> {
        self.store.take(key, expected_counter, new_owner).await
    }
    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, crate::StoreError> {
        self.store.renew(key, owner, expected_counter).await
    }
    async fn renew_many(
        &self,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, crate::StoreError>> {
        self.store.renew_many(owner, leases).await
    }
    async fn evict(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<Lease>, crate::StoreError> {
        self.store.evict(key, owner, expected_counter).await
    }
    async fn update_checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Race<Lease>, crate::StoreError> {
        self.store
            .update_checkpoint(key, owner, expected_counter, update)
            .await
    }
    async fn mark_ended(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        children: &[ShardId],
    ) -> Result<Race<Lease>, crate::StoreError> {
        self.store
            .mark_ended(key, owner, expected_counter, children)
            .await
    }
    async fn request_handoff(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        holder: &WorkerId,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, crate::StoreError> {
        self.store
            .request_handoff(key, expected_counter, holder, new_owner)
            .await
    }
    async fn reset_checkpoint(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        checkpoint: &Checkpoint,
    ) -> Result<Race<Lease>, crate::StoreError> {
        self.store
            .reset_checkpoint(key, expected_counter, checkpoint)
            .await
    }
    async fn delete(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
    ) -> Result<Race<()>, crate::StoreError> {
        self.store.delete(key, expected_counter).await
    }
    async fn heartbeat(
        &self,
        worker: &WorkerId,
        expected: Option<u64>,
    ) -> Result<Race<u64>, crate::StoreError> {
        self.store.heartbeat(worker, expected).await
    }
    async fn membership(&self) -> Result<crate::Membership, crate::StoreError> {
        self.store.membership().await
    }
    async fn bump_version(&self) -> Result<u64, crate::StoreError> {
        self.store.bump_version().await
    }
    async fn leave(
        &self,
        worker: &WorkerId,
        expected_heartbeat: u64,
    ) -> Result<Race<()>, crate::StoreError> {
        self.store.leave(worker, expected_heartbeat).await
    }
}

/// Heartbeats add a member at 1 and count up; the version starts at 0 and counts up; a member
/// leaves only at the heartbeat it was last seen with.
pub async fn membership_heartbeats_and_version(store: Arc<dyn LeaseStore>) {
    let empty = store.membership().await.unwrap();
    assert_eq!(
        empty,
        crate::Membership::default(),
        "a fresh table has no members"
    );
    let (a, b) = (worker("worker-a"), worker("worker/b: odd name"));
    assert_eq!(store.heartbeat(&a, None).await.unwrap(), Race::Won(1));
    assert_eq!(store.heartbeat(&a, Some(1)).await.unwrap(), Race::Won(2));
    assert_eq!(
        store.heartbeat(&a, Some(1)).await.unwrap(),
        Race::Lost,
        "a heartbeat another process moved"
    );
    assert_eq!(
        store.heartbeat(&b, Some(0)).await.unwrap(),
        Race::Lost,
        "a conditional heartbeat of a worker that is not a member"
    );
    assert_eq!(store.heartbeat(&b, None).await.unwrap(), Race::Won(1));
    assert_eq!(store.bump_version().await.unwrap(), 1);
    assert_eq!(store.bump_version().await.unwrap(), 2);
    let read = store.membership().await.unwrap();
    assert_eq!(read.version, 2);
    assert_eq!(read.heartbeats, [(a.clone(), 2), (b.clone(), 1)].into());
    assert!(
        store.leave(&a, 1).await.unwrap().is_lost(),
        "a stale heartbeat"
    );
    assert!(
        store.leave(&worker("stranger"), 0).await.unwrap().is_lost(),
        "not a member"
    );
    assert!(store.leave(&a, 2).await.unwrap().is_won());
    let read = store.membership().await.unwrap();
    assert_eq!(read.heartbeats, [(b.clone(), 1)].into());
    assert_eq!(read.version, 2, "leaving does not move the version");
    assert_eq!(
        store.heartbeat(&a, None).await.unwrap(),
        Race::Won(1),
        "a member that left starts again at 1"
    );
}

/// The membership record never shows up as a lease, and leases do not disturb it.
pub async fn membership_is_not_a_lease(store: Arc<dyn LeaseStore>) {
    let k = key("shardId-000000000001");
    create(store.as_ref(), &k).await;
    assert!(store.heartbeat(&worker("a"), None).await.unwrap().is_won());
    store.bump_version().await.unwrap();
    let listing = store.list().await.unwrap();
    assert_eq!(listing.leases.len(), 1, "only the lease is listed");
    assert!(
        listing.corrupt.is_empty(),
        "the membership record is not a corrupt lease"
    );
    assert_eq!(listing.leases[0].key, k);
    assert!(store.take(&k, 0, &worker("a")).await.unwrap().is_won());
    let read = store.membership().await.unwrap();
    assert_eq!((read.version, read.heartbeats.len()), (1, 1));
}

/// Heartbeats and version bumps from many tasks at once are each counted exactly once.
pub async fn racing_heartbeats(store: Arc<dyn LeaseStore>) {
    let workers = 4;
    let beats = 10;
    let barrier = Arc::new(Barrier::new(workers));
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let me = worker(&format!("worker-{w}"));
            let mut last = None;
            for _ in 0..beats {
                last = store.heartbeat(&me, last).await.unwrap().won();
                assert!(last.is_some(), "a worker's own heartbeat never loses");
                store.bump_version().await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let read = store.membership().await.unwrap();
    assert_eq!(
        read.version,
        (workers * beats) as u64,
        "every bump counted once"
    );
    assert_eq!(read.heartbeats.len(), workers);
    assert!(
        read.heartbeats.values().all(|b| *b == beats as u64),
        "every heartbeat counted once: {read:?}"
    );
}

/// A store that cannot reach its server (refused, untrusted, …) fails every operation and
/// changes nothing. `trusted` is a fresh, empty store; `cut_off` addresses the same leases
/// (same table and namespace) but cannot get through. A lease is created and taken through
/// `trusted`; then every operation through `cut_off` must fail, each error passing `check`
/// (given the operation's name), and `trusted` must list exactly what it listed before.
pub async fn a_store_cut_off_changes_nothing(
    trusted: &dyn LeaseStore,
    cut_off: &dyn LeaseStore,
    check: impl Fn(&str, &crate::StoreError),
) {
    fn failure<T: std::fmt::Debug>(
        what: &str,
        outcome: Result<T, crate::StoreError>,
    ) -> crate::StoreError {
        match outcome {
            Err(e) => e,
            Ok(value) => panic!("{what} succeeded with {value:?}"),
        }
    }
    let k = key("shardId-000000000001");
    let me = worker("worker-a");
    create(trusted, &k).await;
    let taken = won(trusted.take(&k, 0, &me).await, "take");
    let before = trusted.list().await.unwrap_or_else(|e| panic!("list: {e}"));
    let beat = trusted.heartbeat(&me, None).await;
    assert!(beat.unwrap_or_else(|e| panic!("heartbeat: {e}")).is_won());
    let members_before = trusted
        .membership()
        .await
        .unwrap_or_else(|e| panic!("membership: {e}"));

    let extra = Lease::new(key("shardId-000000000002"), Checkpoint::TrimHorizon);
    let errors = [
        (
            "create table",
            failure("create table", cut_off.create_table_if_missing().await),
        ),
        ("list", failure("list", cut_off.list().await)),
        (
            "take",
            failure("take", cut_off.take(&k, taken.counter, &me).await),
        ),
        (
            "renew",
            failure("renew", cut_off.renew(&k, &me, taken.counter).await),
        ),
        (
            "create",
            failure("create", cut_off.create_if_absent(&extra).await),
        ),
        (
            "delete",
            failure("delete", cut_off.delete(&k, taken.counter).await),
        ),
        (
            "heartbeat",
            failure("heartbeat", cut_off.heartbeat(&me, Some(1)).await),
        ),
        (
            "membership",
            failure("membership", cut_off.membership().await),
        ),
        (
            "bump version",
            failure("bump version", cut_off.bump_version().await),
        ),
        ("leave", failure("leave", cut_off.leave(&me, 1).await)),
    ];
    for (what, error) in &errors {
        check(what, error);
    }

    let after = trusted.list().await.unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(after, before, "the failed store changed nothing");
    let members_after = trusted
        .membership()
        .await
        .unwrap_or_else(|e| panic!("membership: {e}"));
    assert_eq!(
        members_after, members_before,
        "the failed store changed no membership"
    );
}
