//! Workers that heartbeat ([`Liveness::Heartbeat`]) instead of renewing each lease: the
//! scenarios on the in-memory Kinesis and lease store under a paused clock, what the store is
//! asked in steady state, a fleet mixing both modes, and two processes sharing a worker id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardwise::Liveness;
use shardwise::lease::testkit::{Fault, FaultyStore};
use shardwise::lease::{
    Call, Layer, Layered, LeaseKey, LeaseStore, MemoryLeaseStore, Operation, Race, StoreError,
    WorkerId,
};
use shardwise_tests::{Behaviour, Fleet, Memory, scenarios, wait_for};

const LEASE: Duration = Duration::from_secs(10);

fn fleet_on(store: Arc<dyn LeaseStore>) -> Fleet {
    let mut fleet = Fleet::new(
        Arc::new(Memory::new("s")),
        store,
        LEASE,
        Duration::from_secs(900),
    );
    fleet.config.liveness = Liveness::Heartbeat;
    fleet
}

fn fleet() -> Fleet {
    fleet_on(Arc::new(MemoryLeaseStore::new()))
}

#[tokio::test(start_paused = true)]
async fn fleet_balances_and_rebalances() {
    scenarios::fleet_balances_and_rebalances(&mut fleet(), 240).await;
}

#[tokio::test(start_paused = true)]
async fn killed_worker_shards_move_on() {
    scenarios::killed_worker_shards_move_on(&mut fleet(), 120).await;
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_hands_over() {
    let handover = scenarios::graceful_shutdown_hands_over(&mut fleet(), 60).await;
    assert!(handover < Duration::from_secs(10), "{handover:?}");
}

#[tokio::test(start_paused = true)]
async fn split_and_merge_parents_first() {
    scenarios::split_and_merge_parents_first(&mut fleet(), 100).await;
}

#[tokio::test(start_paused = true)]
async fn faulty_processors_lose_nothing() {
    for behaviour in [
        Behaviour::FailsFirst(2),
        Behaviour::PanicsOnce,
        Behaviour::NeverCheckpoints,
    ] {
        scenarios::faulty_processors_lose_nothing(&mut fleet(), behaviour, 50).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_joining_worker_gets_its_share_by_hand_off() {
    scenarios::a_joining_worker_gets_its_share_by_hand_off(&mut fleet(), 9, 3, 9).await;
}

#[tokio::test(start_paused = true)]
async fn a_rolling_restart_processes_nothing_twice() {
    scenarios::a_rolling_restart_processes_nothing_twice(&mut fleet(), 6).await;
}

/// Counts the calls that reach the store, by operation.
#[derive(Debug, Default)]
struct Calls(Mutex<BTreeMap<String, u64>>, AtomicU64);

impl Calls {
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl Layer for Calls {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        operation: Operation,
        _key: Option<&'a LeaseKey>,
        call: Call<'a, T>,
    ) -> Result<T, StoreError> {
        *self
            .0
            .lock()
            .unwrap()
            .entry(format!("{operation:?}"))
            .or_default() += 1;
        call.await
    }

    async fn renew_many(
        &self,
        inner: &dyn LeaseStore,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        self.1.fetch_add(leases.len() as u64, Ordering::SeqCst);
        inner.renew_many(owner, leases).await
    }
}

/// In a balanced, quiet fleet a worker that heartbeats reads the membership record each take
/// round and writes its heartbeat, and nothing else: no lease is renewed, and only the one
/// worker that syncs shards lists the leases (every shard-sync interval). Renewing per lease,
/// the same minute costs every worker a listing per take round and a renewal per lease.
#[tokio::test(start_paused = true)]
async fn a_quiet_fleet_reads_the_membership_not_the_leases() {
    let store = Arc::new(Layered::wrap(
        Arc::new(MemoryLeaseStore::new()),
        Calls::default(),
    ));
    let mut fleet = fleet_on(store.clone());
    fleet.driver.create(6).await;
    for w in ["w1", "w2", "w3"] {
        fleet.start(w, Behaviour::Checkpointing);
    }
    fleet
        .wait_holdings("2 leases each", |h| {
            h.len() == 3 && h.values().all(|&n| n == 2)
        })
        .await;
    // Settled: the last hand-offs' version changes seen.
    tokio::time::sleep(LEASE).await;
    let _ = store.layer().take();
    store.layer().1.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let calls = store.layer().take();
    let count = |op: &str| calls.get(op).copied().unwrap_or(0);
    // 3 workers × 60 s / 5 s take rounds.
    assert!((33..=39).contains(&count("Membership")), "{calls:?}");
    // 3 workers × 60 s / 3.33 s.
    assert!((51..=57).contains(&count("Heartbeat")), "{calls:?}");
    // One shard sync every 5 s (the fleet's shard-sync interval), by one worker.
    assert!(count("List") <= 13, "{calls:?}");
    assert_eq!(count("Renew"), 0, "{calls:?}");
    assert_eq!(
        store.layer().1.load(Ordering::SeqCst),
        0,
        "no lease renewed"
    );
    assert_eq!(count("BumpVersion"), 0, "{calls:?}");
    // Still a working fleet.
    fleet.driver.put(0..60, 6).await;
    fleet.wait_records(60).await;
    fleet.stop_all().await;
    assert_eq!(fleet.recorder.coverage(60), (60, 0));
}

/// A fleet switching modes one worker at a time: workers that renew per lease and workers that
/// heartbeat share the table; each judges the other's leases by the right rule, so nothing is
/// taken from a live worker, and a killed worker of either kind has its shards moved on.
#[tokio::test(start_paused = true)]
async fn a_mixed_fleet_shares_the_table() {
    let mut fleet = fleet();
    fleet.driver.create(6).await;
    fleet.config.liveness = Liveness::PerLease;
    fleet.start("renews", Behaviour::Checkpointing);
    fleet.start("renews-too", Behaviour::Checkpointing);
    fleet.config.liveness = Liveness::Heartbeat;
    fleet.start("beats", Behaviour::Checkpointing);
    fleet.start("beats-too", Behaviour::Checkpointing);
    fleet
        .wait_holdings("balanced", |h| {
            h.len() == 4 && h.values().all(|&n| (1..=2).contains(&n))
        })
        .await;
    fleet.driver.put(0..100, 10).await;
    fleet.wait_records(100).await;
    // Nothing processed twice: no lease was taken from a live worker.
    assert_eq!(fleet.recorder.coverage(100), (100, 0));
    fleet.kill("beats");
    fleet.kill("renews");
    fleet
        .wait_holdings("the killed workers' shards moved on", |h| {
            h.len() == 2 && h.values().sum::<usize>() == 6
        })
        .await;
    fleet.driver.put(100..200, 10).await;
    fleet.wait_records(200).await;
    fleet.stop_all().await;
}

fn processed_by(fleet: &Fleet, records: std::ops::Range<usize>) -> Vec<String> {
    let wanted: Vec<String> = records.map(|i| format!("record-{i}")).collect();
    let mut by: Vec<String> = fleet
        .recorder
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| wanted.contains(&s.data))
        .map(|s| s.worker.clone())
        .collect();
    by.sort();
    by.dedup();
    by
}

/// Two processes with one worker id (a frozen process replaced by its orchestrator, which then
/// wakes): their heartbeats race, the process that loses stops every shard and yields the id
/// while the other's heartbeat moves, and takes the id back only once that process is gone.
#[tokio::test(start_paused = true)]
async fn a_second_process_with_the_same_id_makes_the_first_yield() {
    let mut fleet = fleet();
    fleet.driver.create(2).await;
    fleet.start_as("first", "w", Behaviour::Checkpointing);
    let recorder = fleet.recorder.clone();
    let inits = move |name: &str| {
        let recorder = recorder.clone();
        let name = name.to_owned();
        move || {
            let initialized = recorder.initialized.lock().unwrap();
            let count = initialized.iter().filter(|(w, _)| *w == name).count();
            let lost = recorder.lost.load(Ordering::SeqCst);
            std::future::ready((count, lost))
        }
    };
    let first = inits("first");
    wait_for("the first process runs both shards", LEASE * 6, || async {
        first().await.0 == 2
    })
    .await;
    fleet.start_as("second", "w", Behaviour::Checkpointing);
    let second = inits("second");
    wait_for(
        "the first process stopped, the second runs",
        LEASE * 6,
        || async {
            let (started, lost) = second().await;
            started == 2 && lost >= 2
        },
    )
    .await;
    fleet.driver.put(0..20, 2).await;
    fleet.wait_records(20).await;
    // Two lease durations: the first process stays out while the second heartbeats.
    tokio::time::sleep(LEASE * 2).await;
    fleet.driver.put(20..30, 2).await;
    fleet.wait_records(30).await;
    assert_eq!(processed_by(&fleet, 0..30), ["second"]);
    fleet.kill("second");
    wait_for("the first process took the id back", LEASE * 6, || async {
        first().await.0 == 4
    })
    .await;
    fleet.driver.put(30..50, 2).await;
    fleet.wait_records(50).await;
    assert_eq!(processed_by(&fleet, 30..50), ["first"]);
    fleet.stop_all().await;
}

/// Heartbeats fail long enough for the worker to stop its shards (two thirds of the lease
/// duration) but not long enough for anyone to judge it dead: once they work again, the shards
/// are processed within a few take rounds, not at the next full listing ten minutes later (the
/// leases, still recorded as the worker's, were kept alive by its heartbeat with nobody
/// processing them; this failed before they were handed back).
#[tokio::test(start_paused = true)]
async fn leases_given_up_after_failed_heartbeats_come_back() {
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryLeaseStore::new())));
    let mut fleet = fleet_on(store.clone());
    fleet.patience = LEASE * 6;
    fleet.driver.create(2).await;
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.driver.put(0..20, 2).await;
    fleet.wait_records(20).await;
    store.set_rule(|operation, _| {
        (operation == Operation::Heartbeat)
            .then(|| Fault::Fail(StoreError::unavailable("heartbeats fail (test)")))
    });
    let recorder = fleet.recorder.clone();
    wait_for("both shards stopped", LEASE, || {
        let lost = recorder.lost.load(Ordering::SeqCst);
        async move { lost >= 2 }
    })
    .await;
    store.clear();
    fleet.driver.put(20..40, 2).await;
    fleet.wait_records(40).await;
    fleet.stop_all().await;
}

/// A lease row deleted by an operator (`shardwise delete-leases`, which moves the table
/// version): the worker that held it, which renews no lease, finds it missing from its next
/// listing and stops the shard, instead of processing it beside whoever gets the recreated
/// lease (failed before: only a checkpoint would have noticed).
#[tokio::test(start_paused = true)]
async fn a_deleted_lease_row_stops_its_shard() {
    let store = Arc::new(MemoryLeaseStore::new());
    let mut fleet = fleet_on(store.clone());
    // No shard sync to recreate the row (a recreated row held by nobody is noticed anyway).
    fleet.config.shard_sync_interval = Duration::from_secs(3_600);
    fleet.driver.create(1).await;
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.driver.put(0..10, 1).await;
    fleet.wait_records(10).await;
    let lease = shardwise_tests::recorder::leases(store.as_ref())
        .await
        .remove(0);
    assert!(
        store
            .delete(&lease.key, lease.counter)
            .await
            .unwrap()
            .is_won()
    );
    store.bump_version().await.unwrap();
    let recorder = fleet.recorder.clone();
    wait_for("the shard stopped", LEASE * 2, || {
        let lost = recorder.lost.load(Ordering::SeqCst);
        async move { lost >= 1 }
    })
    .await;
    fleet.stop_all().await;
}
