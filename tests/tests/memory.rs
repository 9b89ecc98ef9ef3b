//! Every scenario on the in-memory Kinesis and lease store, under a paused clock; then the
//! fleet at scale (100 shards, 10 workers).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use shardwise::lease::MemoryLeaseStore;
use shardwise_tests::{Behaviour, Fleet, Memory, scenarios, wait_for};

fn fleet(name: &str) -> Fleet {
    Fleet::new(
        Arc::new(Memory::new(name)),
        Arc::new(MemoryLeaseStore::new()),
        Duration::from_secs(10),
        Duration::from_secs(900),
    )
}

#[tokio::test(start_paused = true)]
async fn one_worker_every_record_once() {
    scenarios::one_worker_every_record_once(&mut fleet("s"), 400).await;
}

#[tokio::test(start_paused = true)]
async fn one_worker_every_record_once_by_fan_out() {
    let memory = Arc::new(Memory::new("s"));
    let mut fleet = Fleet::new(
        memory.clone(),
        Arc::new(MemoryLeaseStore::new()),
        Duration::from_secs(10),
        Duration::from_secs(900),
    );
    fleet.config.retrieval = shardwise::Retrieval::fan_out();
    scenarios::one_worker_every_record_once(&mut fleet, 400).await;
    let shards: Vec<String> = fleet
        .driver
        .shards()
        .await
        .into_iter()
        .map(|s| s.shard_id)
        .collect();
    for shard in shards {
        assert!(
            !memory.kinesis.subscribe_calls(&shard).is_empty(),
            "{shard} was read by SubscribeToShard"
        );
        assert!(
            memory.kinesis.get_records_calls(&shard).is_empty(),
            "{shard} was not polled"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn split_and_merge_parents_first_by_fan_out() {
    let mut fleet = fleet("s");
    fleet.config.retrieval = shardwise::Retrieval::fan_out();
    scenarios::split_and_merge_parents_first(&mut fleet, 100).await;
}

#[tokio::test(start_paused = true)]
async fn fleet_balances_and_rebalances() {
    scenarios::fleet_balances_and_rebalances(&mut fleet("s"), 240).await;
}

#[tokio::test(start_paused = true)]
async fn killed_worker_shards_move_on() {
    scenarios::killed_worker_shards_move_on(&mut fleet("s"), 120).await;
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_hands_over() {
    let handover = scenarios::graceful_shutdown_hands_over(&mut fleet("s"), 60).await;
    assert!(handover < Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn split_and_merge_parents_first() {
    scenarios::split_and_merge_parents_first(&mut fleet("s"), 100).await;
}

#[tokio::test(start_paused = true)]
async fn faulty_processors_lose_nothing() {
    for behaviour in [
        Behaviour::FailsFirst(2),
        Behaviour::FailsFirst(5),
        Behaviour::PanicsOnce,
        Behaviour::NeverCheckpoints,
    ] {
        scenarios::faulty_processors_lose_nothing(&mut fleet("s"), behaviour, 50).await;
    }
}

/// A processor that gives its shard up (`GiveUpShard`) is not called again: its lease is
/// released at once and another worker processes the shard from its checkpoint.
#[tokio::test(start_paused = true)]
async fn a_processor_that_gives_up_is_not_retried() {
    let mut fleet = fleet("s");
    fleet.driver.create(1).await;
    fleet.start("w1", Behaviour::GivesUpOnce);
    fleet
        .wait_holdings("w1 holds the shard", |h| h.get("w1") == Some(&1))
        .await;
    fleet.start("w2", Behaviour::Checkpointing);
    fleet.driver.put(0..20, 2).await;
    fleet.wait_records(20).await;
    fleet.stop_all().await;
    let gave_up = fleet
        .recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.starts_with("gave-up:"))
        .count();
    assert_eq!(gave_up, 1, "one processor gave up, once");
    let seen = fleet.recorder.seen.lock().unwrap();
    assert_eq!(seen.len(), 20, "every record once");
    assert!(
        seen.iter().all(|s| s.worker == "w2"),
        "the batch that was given up was not retried by w1"
    );
}

#[tokio::test(start_paused = true)]
async fn restart_resumes_inside_an_aggregate() {
    scenarios::restart_resumes_inside_an_aggregate(&mut fleet("s")).await;
}

/// 100 shards, 10 workers: a fair split (10 each), every record once, then a worker killed and
/// its shards spread over the others.
#[tokio::test(start_paused = true)]
async fn a_hundred_shards_and_ten_workers() {
    let mut fleet = fleet("big");
    fleet.driver.create(100).await;
    let workers: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
    for w in &workers {
        fleet.start(w, Behaviour::Checkpointing);
    }
    fleet
        .wait_holdings("10 leases each", |h| {
            h.len() == 10 && h.values().all(|&n| n == 10)
        })
        .await;
    fleet.driver.put(0..5_000, 500).await;
    fleet.wait_records(5_000).await;
    assert_eq!(
        fleet.recorder.coverage(5_000),
        (5_000, 0),
        "balanced before the data: nothing replayed"
    );
    fleet.kill("w0");
    fleet
        .wait_holdings("w0's leases spread", |h| {
            !h.contains_key("w0")
                && h.values().sum::<usize>() == 100
                && h.values().all(|&n| (11..=12).contains(&n))
        })
        .await;
    fleet.driver.put(5_000..10_000, 500).await;
    fleet.wait_records(10_000).await;
    fleet.stop_all().await;
    assert_eq!(fleet.recorder.coverage(10_000).0, 10_000);
}

/// A finished parent's lease is deleted once its shard has aged out of the stream (the retention
/// period after the split) and its children have started, never before; the rest stay.
#[tokio::test(start_paused = true)]
async fn a_finished_lease_is_deleted_once_its_shard_ages_out() {
    let memory = Arc::new(Memory::new("s"));
    let fleet_store = Arc::new(MemoryLeaseStore::new());
    let mut fleet = Fleet::new(
        memory.clone(),
        fleet_store.clone(),
        Duration::from_secs(10),
        Duration::from_secs(900),
    );
    let retention = Duration::from_secs(120);
    fleet.driver.create(2).await;
    memory.kinesis.set_retention("s", retention);
    fleet.driver.put(0..200, 50).await;
    let shards = fleet.driver.shards().await;
    let parent = shards[0].shard_id.clone();
    let other = shards[1].shard_id.clone();
    let range = shards[0].hash_range;
    let split_at = tokio::time::Instant::now();
    let children = fleet
        .driver
        .split(&parent, range.start + (range.end - range.start) / 2)
        .await;
    fleet.driver.put(200..400, 50).await;
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.wait_records(400).await;
    let all = shardwise_tests::recorder::leases(fleet_store.as_ref()).await;
    assert!(shardwise_tests::recorder::checkpoint_of(&all, &parent).is_shard_end());

    let store = fleet_store.clone();
    let gone = parent.clone();
    wait_for("the parent's lease deleted", fleet.patience, || {
        let store = store.clone();
        let gone = gone.clone();
        async move {
            !shardwise_tests::recorder::leases(store.as_ref())
                .await
                .iter()
                .any(|l| l.key.as_str() == gone)
        }
    })
    .await;
    assert!(
        tokio::time::Instant::now() >= split_at + retention,
        "deleted only after the shard aged out"
    );
    let mut left: Vec<String> = shardwise_tests::recorder::leases(fleet_store.as_ref())
        .await
        .into_iter()
        .map(|l| l.key.as_str().to_owned())
        .collect();
    left.sort();
    let mut expected = vec![other];
    expected.extend(children);
    expected.sort();
    assert_eq!(left, expected, "the open shards' leases stay");
    fleet.stop_all().await;
}

/// A lease whose shard aged out of the stream before it was finished (the fleet was down for
/// longer than the retention period) is finished, so that its children start and their
/// records are processed; otherwise the children would wait for it forever.
#[tokio::test(start_paused = true)]
async fn a_shard_that_aged_out_unfinished_lets_its_children_start() {
    use shardwise::lease::{Checkpoint, Lease, LeaseKey, LeaseStore, ShardId};
    let memory = Arc::new(Memory::new("s"));
    let store = Arc::new(MemoryLeaseStore::new());
    let mut fleet = Fleet::new(
        memory.clone(),
        store.clone(),
        Duration::from_secs(10),
        Duration::from_secs(900),
    );
    fleet.driver.create(1).await;
    memory.kinesis.set_retention("s", Duration::from_secs(120));
    let parent = fleet.driver.shards().await[0].clone();
    let range = parent.hash_range;
    let children = fleet
        .driver
        .split(
            &parent.shard_id,
            range.start + (range.end - range.start) / 2,
        )
        .await;
    // The leases as a fleet that went down right after the split left them: the parent not
    // finished, its children waiting for it.
    let lease = |id: &str| Lease::new(LeaseKey::new(id).unwrap(), Checkpoint::TrimHorizon);
    assert!(
        store
            .create_if_absent(&lease(&parent.shard_id))
            .await
            .unwrap()
            .is_won()
    );
    for child in &children {
        let waiting = lease(child).with_parents([ShardId::new(&parent.shard_id).unwrap()]);
        assert!(store.create_if_absent(&waiting).await.unwrap().is_won());
    }
    tokio::time::advance(Duration::from_secs(180)).await;
    assert!(
        !fleet
            .driver
            .shards()
            .await
            .iter()
            .any(|s| s.shard_id == parent.shard_id),
        "the parent aged out"
    );
    fleet.driver.put(0..100, 20).await;
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.wait_records(100).await;
    fleet.stop_all().await;
    assert_eq!(fleet.recorder.coverage(100).0, 100);
    let parent_lease = store
        .get(&LeaseKey::new(parent.shard_id.as_str()).unwrap())
        .await
        .unwrap();
    assert!(
        parent_lease.is_none_or(|l| l.checkpoint.is_shard_end()),
        "the parent is finished (or already cleaned up)"
    );
}

/// A fourth worker joins a balanced fleet of three while records keep coming: zero records
/// processed twice.
#[tokio::test(start_paused = true)]
async fn a_joining_worker_gets_its_share_by_hand_off() {
    scenarios::a_joining_worker_gets_its_share_by_hand_off(&mut fleet("s"), 9, 3, 9).await;
}

/// A rolling restart of three workers while records keep coming: zero records processed twice.
#[tokio::test(start_paused = true)]
async fn a_rolling_restart_processes_nothing_twice() {
    scenarios::a_rolling_restart_processes_nothing_twice(&mut fleet("s"), 6).await;
}

/// 100 shards over 9 workers, then a tenth joins while records keep coming: it gets its 10 by
/// hand-off and no record is processed twice.
#[tokio::test(start_paused = true)]
async fn a_tenth_worker_joins_a_hundred_shards_by_hand_off() {
    let latencies =
        scenarios::a_joining_worker_gets_its_share_by_hand_off(&mut fleet("big"), 100, 9, 100)
            .await;
    assert!(latencies.len() >= 10, "{} hand-offs", latencies.len());
}

/// A holder whose processor never returns from `shutdown_requested` hands the lease over when
/// the hand-off timeout runs out (its own rule), not later when the worker that asked gives up
/// waiting (timeout plus a lease duration); nothing is lost.
#[tokio::test(start_paused = true)]
async fn a_holder_stuck_in_shutdown_requested_hands_over_at_the_timeout() {
    let mut fleet = fleet("s");
    fleet.config.handoff_timeout = Duration::from_secs(20);
    fleet.config.shutdown_timeout = Duration::from_secs(1);
    let clock = shardwise_tests::HandoffClock::install(&mut fleet);
    fleet.driver.create(2).await;
    fleet.start("w1", Behaviour::HangsOnShutdown);
    fleet
        .wait_holdings("w1 holds both", |h| h.get("w1") == Some(&2))
        .await;
    fleet.driver.put(0..100, 10).await;
    fleet.wait_records(100).await;
    fleet.start("w2", Behaviour::Checkpointing);
    let store = fleet.store.clone();
    wait_for("a hand-off asked for", fleet.patience, || {
        let asked = !clock.requests.lock().unwrap().is_empty();
        async move { asked }
    })
    .await;
    let asked = tokio::time::Instant::now();
    wait_for("w2 holds one lease", fleet.patience, || {
        let store = store.clone();
        async move {
            let leases = store.list().await.unwrap().leases;
            leases.iter().any(|l| {
                l.checkpoint_owner.is_none() && l.owner.as_ref().map(|o| o.as_str()) == Some("w2")
            })
        }
    })
    .await;
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_secs(20) - fleet.config.renew_interval(),
        "the holder's processor was given the hand-off timeout ({waited:?})"
    );
    assert!(
        waited < Duration::from_secs(20) + fleet.lease_duration(),
        "handed over by the holder at its timeout, not taken at the asker's ({waited:?})"
    );
    fleet.driver.put(100..200, 10).await;
    fleet.wait_records(200).await;
    fleet.stop_all().await;
    assert_eq!(fleet.recorder.coverage(200).0, 200);
}

/// A hand-off asked of a worker id whose process died, and which a new process of that id now
/// runs, is handed on by the new process at its first listing, not left to expire.
#[tokio::test(start_paused = true)]
async fn a_restarted_worker_hands_on_what_was_asked_of_its_predecessor() {
    use shardwise::lease::{LeaseKey, WorkerId};
    let mut fleet = fleet("s");
    fleet.driver.create(1).await;
    fleet.start("w1", Behaviour::Checkpointing);
    fleet
        .wait_holdings("w1 holds the lease", |h| h.get("w1") == Some(&1))
        .await;
    fleet.kill("w1");
    let key = LeaseKey::new("shardId-000000000000").unwrap();
    let lease = fleet.store.get(&key).await.unwrap().unwrap();
    let (w1, w2) = (WorkerId::new("w1").unwrap(), WorkerId::new("w2").unwrap());
    let asked = fleet
        .store
        .request_handoff(&key, lease.counter, &w1, &w2)
        .await;
    assert!(asked.unwrap().is_won());
    let restarted = tokio::time::Instant::now();
    fleet.start("w1", Behaviour::Checkpointing);
    let store = fleet.store.clone();
    wait_for("the hand-off completed", fleet.patience, || {
        let (store, key) = (store.clone(), key.clone());
        async move {
            let lease = store.get(&key).await.unwrap().unwrap();
            !lease.is_handing_off()
        }
    })
    .await;
    let lease = fleet.store.get(&key).await.unwrap().unwrap();
    assert_eq!(lease.owner, Some(w2), "handed on to the worker that asked");
    assert!(
        restarted.elapsed() < fleet.lease_duration(),
        "at the first listing, not after expiry ({:?})",
        restarted.elapsed()
    );
    fleet.stop_all().await;
}
