//! The worker scenarios, written once: each runs on whatever stream driver and lease store the
//! fleet was given, and asserts on every record (ids in the data).

use std::collections::{BTreeMap, HashSet};

use shardwise::lease::{Checkpoint, LeaseKey};
use shardwise_kpl_deagg::{Aggregator, AggregatorConfig};

use tokio_util::sync::CancellationToken;

use crate::recorder::{checkpoint_of, holdings, leases};
use crate::{Behaviour, Fleet, HandoffClock, trickle};

/// 1. One worker, 4 shards: every record processed exactly once, per-shard order kept, final
///    checkpoints equal to the last sequence numbers, every lease released at shutdown.
pub async fn one_worker_every_record_once(fleet: &mut Fleet, records: usize) {
    fleet.driver.create(4).await;
    fleet.driver.put(0..records, 40).await;
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.wait_records(records).await;
    fleet.stop_all().await;

    assert_eq!(
        fleet.recorder.coverage(records),
        (records, 0),
        "every record exactly once"
    );
    let mut per_shard: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for s in fleet.recorder.seen.lock().unwrap().iter() {
        per_shard
            .entry(s.shard.clone())
            .or_default()
            .push(s.sequence.clone());
    }
    let all = leases(fleet.store.as_ref()).await;
    for (shard, seqs) in &per_shard {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, &sorted, "{shard} in order");
        let expected = Checkpoint::at(seqs.last().unwrap().clone(), 0);
        assert_eq!(checkpoint_of(&all, shard), expected, "{shard} checkpoint");
    }
    assert!(
        holdings(fleet.store.as_ref()).await.is_empty(),
        "leases released at shutdown"
    );
}

/// 2 and 3. Three workers share 8 shards (2 or 3 each); a fourth joins and leases move to a
///    fair share (2 each); nothing is lost.
pub async fn fleet_balances_and_rebalances(fleet: &mut Fleet, records: usize) {
    fleet.driver.create(8).await;
    for w in ["w1", "w2", "w3"] {
        fleet.start(w, Behaviour::Checkpointing);
    }
    fleet
        .wait_holdings("8 leases over 3 workers, 2 or 3 each", |h| {
            h.len() == 3
                && h.values().sum::<usize>() == 8
                && h.values().all(|&n| (2..=3).contains(&n))
        })
        .await;
    fleet.driver.put(0..records, 24).await;
    fleet.wait_records(records).await;
    fleet.start("w4", Behaviour::Checkpointing);
    fleet
        .wait_holdings("8 leases over 4 workers, 2 each", |h| {
            h.len() == 4 && h.values().all(|&n| n == 2)
        })
        .await;
    fleet.driver.put(records..2 * records, 24).await;
    fleet.wait_records(2 * records).await;
    fleet.stop_all().await;
    assert_eq!(
        fleet.recorder.coverage(2 * records).0,
        2 * records,
        "nothing lost while leases moved"
    );
}

/// 4. A worker killed without shutdown: its shards are taken after the lease duration (not
///    before), nothing is lost, and replays are limited to what it had not checkpointed.
pub async fn killed_worker_shards_move_on(fleet: &mut Fleet, records: usize) {
    fleet.driver.create(6).await;
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.start("w2", Behaviour::Checkpointing);
    fleet
        .wait_holdings("both workers hold 3 leases", |h| {
            h.len() == 2 && h.values().all(|&n| n == 3)
        })
        .await;
    fleet.driver.put(0..records, 12).await;
    fleet.wait_records(records).await;
    let (_, duplicates_before) = fleet.recorder.coverage(records);
    fleet.kill("w1");
    let killed_at = tokio::time::Instant::now();
    fleet.driver.put(records..2 * records, 12).await;
    fleet
        .wait_holdings("w2 holds all 6 leases", |h| h.get("w2") == Some(&6))
        .await;
    let failover = killed_at.elapsed();
    // The victim's last proof of life (a renewal, a heartbeat) may precede the kill by a
    // renew interval (a third of the lease duration); a live worker would have stopped two
    // thirds of a lease duration after it. Never sooner than that.
    assert!(
        failover >= fleet.lease_duration() * 2 / 3,
        "taken before expiry: {failover:?}"
    );
    assert!(
        failover <= fleet.lease_duration() * 3,
        "failover took {failover:?}"
    );
    fleet.wait_records(2 * records).await;
    fleet.stop_all().await;
    let (covered, duplicates) = fleet.recorder.coverage(2 * records);
    assert_eq!(covered, 2 * records);
    // w1 checkpointed after every batch it finished; at most the batch it was in can repeat.
    assert!(
        duplicates - duplicates_before <= records,
        "{} records repeated",
        duplicates - duplicates_before
    );
}

/// 5. Graceful shutdown of one of three workers: its leases are released as it stops (so they
///    are taken without waiting for expiry), and the handover repeats nothing. Returns the
///    measured handover time.
pub async fn graceful_shutdown_hands_over(
    fleet: &mut Fleet,
    records: usize,
) -> std::time::Duration {
    fleet.driver.create(6).await;
    for w in ["w1", "w2", "w3"] {
        fleet.start(w, Behaviour::Checkpointing);
    }
    fleet
        .wait_holdings("three workers with 2 leases each", |h| {
            h.len() == 3 && h.values().all(|&n| n == 2)
        })
        .await;
    fleet.driver.put(0..records, 6).await;
    fleet.wait_records(records).await;
    let (_, duplicates_before) = fleet.recorder.coverage(records);
    let stopping = tokio::time::Instant::now();
    fleet.stop("w1").await;
    // Released at shutdown (or handed over): nothing waits for w1's leases to expire. (On a
    // busy machine the emulators' pace decides how long the others take; in memory, under
    // the paused clock, the caller checks the time too.)
    assert!(
        !holdings(fleet.store.as_ref()).await.contains_key("w1"),
        "w1 released its leases as it stopped"
    );
    fleet
        .wait_holdings("w2 and w3 hold all 6", |h| {
            !h.contains_key("w1") && h.values().sum::<usize>() == 6
        })
        .await;
    let handover = stopping.elapsed();
    fleet.driver.put(records..2 * records, 6).await;
    fleet.wait_records(2 * records).await;
    fleet.stop_all().await;
    let (covered, duplicates) = fleet.recorder.coverage(2 * records);
    assert_eq!(
        (covered, duplicates),
        (2 * records, duplicates_before),
        "the handover repeats nothing"
    );
    handover
}

/// 6. Split and merge while data waits in every generation: each child starts only after each
///    parent's `SHARD_END`, and per partition key records are processed in order.
pub async fn split_and_merge_parents_first(fleet: &mut Fleet, records: usize) {
    fleet.driver.create(2).await;
    fleet.driver.put(0..records, 10).await;
    let shards = fleet.driver.shards().await;
    let parent = shards[0].clone();
    let middle = parent.hash_range.start + (parent.hash_range.end - parent.hash_range.start) / 2;
    let mut children = fleet.driver.split(&parent.shard_id, middle).await;
    children.sort();
    fleet.driver.put(records..2 * records, 10).await;
    fleet.driver.merge(&children[0], &children[1]).await;
    fleet.driver.put(2 * records..3 * records, 10).await;
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.start("w2", Behaviour::Checkpointing);
    fleet.wait_records(3 * records).await;
    fleet.stop_all().await;

    assert_eq!(fleet.recorder.coverage(3 * records).0, 3 * records);
    for (key, seen) in fleet.recorder.by_key() {
        // A rebalance may replay a batch; no record is processed for the first time before an
        // earlier record of its key.
        let mut first = HashSet::new();
        let ids: Vec<usize> = seen
            .iter()
            .filter(|s| first.insert(s.data.clone()))
            .map(|s| s.data.trim_start_matches("record-").parse().unwrap())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted, "{key}: in order across parent and children");
    }
    let all = leases(fleet.store.as_ref()).await;
    let events = fleet.recorder.events.lock().unwrap().clone();
    let at = |e: String| {
        events
            .iter()
            .position(|x| *x == e)
            .unwrap_or_else(|| panic!("no event {e} in {events:?}"))
    };
    for lease in &all {
        for p in &lease.parent_shard_ids {
            assert!(
                at(format!("init:{}", lease.key)) > at(format!("end:{p}")),
                "{} started before {p} ended",
                lease.key
            );
        }
    }
    assert!(checkpoint_of(&all, &parent.shard_id).is_shard_end());
    for child in &children {
        assert!(
            checkpoint_of(&all, child).is_shard_end(),
            "{child} ended by the merge"
        );
    }
}

/// 7. Processors that fail, panic or never checkpoint: the documented policy holds (retry, then
///    release and retry elsewhere; SHARD_END written for the processor) and nothing is lost.
pub async fn faulty_processors_lose_nothing(
    fleet: &mut Fleet,
    behaviour: Behaviour,
    records: usize,
) {
    fleet.driver.create(2).await;
    fleet.driver.put(0..records, 5).await;
    fleet.start("w1", behaviour);
    fleet.wait_records(records).await;
    let shards = fleet.driver.shards().await;
    let parent = shards[0].clone();
    let middle = parent.hash_range.start + (parent.hash_range.end - parent.hash_range.start) / 2;
    let children = fleet.driver.split(&parent.shard_id, middle).await;
    fleet.driver.put(records..2 * records, 5).await;
    fleet.wait_records(2 * records).await;
    let store = fleet.store.clone();
    let key = LeaseKey::new(parent.shard_id.as_str()).unwrap();
    crate::wait_for("the parent's SHARD_END", fleet.patience, || {
        let store = store.clone();
        let key = key.clone();
        async move { store.get(&key).await.unwrap().is_some_and(|l| l.is_ended()) }
    })
    .await;
    fleet.stop_all().await;
    assert_eq!(
        fleet.recorder.coverage(2 * records).0,
        2 * records,
        "{behaviour:?}: every record processed"
    );
    let all = leases(fleet.store.as_ref()).await;
    for child in &children {
        assert!(
            all.iter().any(|l| l.key.as_str() == child),
            "{behaviour:?}: child lease {child}"
        );
    }
}

/// 8. Restart from checkpoints, including one in the middle of a KPL aggregate: a worker is
///    killed after checkpointing at sub-record 5 of 10; its successor delivers sub-records 6 to 9
///    and everything after, nothing before.
pub async fn restart_resumes_inside_an_aggregate(fleet: &mut Fleet) {
    fleet.driver.create(1).await;
    let mut aggregator = Aggregator::new(AggregatorConfig::new());
    for i in 0..10 {
        let _ = aggregator
            .add("one-customer", None, format!("record-{i}"))
            .unwrap();
    }
    let aggregate = aggregator.flush().unwrap();
    fleet
        .driver
        .put_raw(&aggregate.partition_key, aggregate.data.to_vec())
        .await;
    fleet.start("first", Behaviour::CheckpointsMiddle);
    fleet.wait_records(10).await;
    let all = leases(fleet.store.as_ref()).await;
    let stored = all[0].checkpoint.clone();
    assert_eq!(
        stored.stored_sub_sequence(),
        5,
        "checkpointed at the middle sub-record: {stored}"
    );
    fleet.kill("first");
    let before = fleet.recorder.count();

    fleet.driver.put(10..20, 1).await;
    fleet.start("second", Behaviour::Checkpointing);
    fleet.wait_records(20).await;
    fleet.stop_all().await;
    let seen = fleet.recorder.seen.lock().unwrap().clone();
    let second: Vec<String> = seen[before..].iter().map(|s| s.data.clone()).collect();
    let expected: Vec<String> = (6..20).map(|i| format!("record-{i}")).collect();
    assert_eq!(second, expected, "resumed right after sub-record 5");
}

/// 9. `AT_TIMESTAMP` before a split: the parent, closed after the timestamp, gets a lease and is
///    read from the timestamp to its end before its children start; a record put before the
///    timestamp is not delivered, every record put after it is.
pub async fn at_timestamp_reads_a_parent_closed_after_it(fleet: &mut Fleet, records: usize) {
    fleet.driver.create(1).await;
    fleet.driver.put_raw("early", b"early".to_vec()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    // Whole milliseconds: the emulator stores arrival times in milliseconds.
    let now = fleet
        .driver
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(now.as_millis() as u64);
    fleet.driver.put(0..records, 5).await;
    let parent = fleet.driver.shards().await[0].clone();
    let middle = parent.hash_range.start + (parent.hash_range.end - parent.hash_range.start) / 2;
    fleet.driver.split(&parent.shard_id, middle).await;
    fleet.driver.put(records..2 * records, 5).await;
    fleet.config.initial_position = shardwise::InitialPosition::AtTimestamp(at);
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.wait_records(2 * records).await;
    fleet.stop_all().await;
    assert_eq!(fleet.recorder.coverage(2 * records).0, 2 * records);
    assert!(
        !fleet.recorder.data().iter().any(|d| d == "early"),
        "a record put before the timestamp is not delivered"
    );
    let all = leases(fleet.store.as_ref()).await;
    assert!(checkpoint_of(&all, &parent.shard_id).is_shard_end());
}

/// Prints the hand-off figures of a scenario and checks that there were some: the time from
/// each request to the new owner's first record.
fn report_handoffs(what: &str, clock: &HandoffClock, fleet: &Fleet) -> Vec<std::time::Duration> {
    let latencies = clock.latencies(&fleet.recorder);
    assert!(!latencies.is_empty(), "{what}: no hand-off was measured");
    let median = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    println!(
        "{what}: {} hand-offs, request to the new owner's first record: min {:?}, median {median:?}, max {max:?}",
        latencies.len(),
        latencies[0]
    );
    latencies
}

/// 8. A worker joins a balanced fleet while records keep coming: leases move to it by hand-off,
///    and no record is processed twice (nobody dies). Returns the hand-off latencies.
pub async fn a_joining_worker_gets_its_share_by_hand_off(
    fleet: &mut Fleet,
    shards: usize,
    workers: usize,
    batch: usize,
) -> Vec<std::time::Duration> {
    let clock = HandoffClock::install(fleet);
    fleet.driver.create(u32::try_from(shards).unwrap()).await;
    let names: Vec<String> = (1..=workers + 1).map(|i| format!("w{i}")).collect();
    for name in &names[..workers] {
        fleet.start(name, Behaviour::Checkpointing);
    }
    let (low, high) = (shards / workers, shards.div_ceil(workers));
    fleet
        .wait_holdings("a balanced fleet", |h| {
            h.len() == workers && h.values().all(|n| (low..=high).contains(n))
        })
        .await;
    // Hand-offs while the fleet formed are not measured: no record was flowing.
    clock.requests.lock().unwrap().clear();
    let stop = CancellationToken::new();
    let every = fleet.lease_duration() / 20;
    let putting = trickle(fleet, 0, batch, every, shards * 3, stop.clone());
    tokio::time::sleep(fleet.lease_duration()).await;
    fleet.start(&names[workers], Behaviour::Checkpointing);
    let (low, high) = (shards / (workers + 1), shards.div_ceil(workers + 1));
    fleet
        .wait_holdings("the newcomer has its share", |h| {
            h.len() == workers + 1 && h.values().all(|n| (low..=high).contains(n))
        })
        .await;
    tokio::time::sleep(fleet.lease_duration()).await;
    stop.cancel();
    let records = putting.await.unwrap();
    fleet.wait_records(records).await;
    fleet.stop_all().await;
    assert_eq!(
        fleet.recorder.coverage(records),
        (records, 0),
        "every record, none twice, while leases moved"
    );
    report_handoffs("a worker joins", &clock, fleet)
}

/// 9. A rolling restart of three workers, one at a time, while records keep coming: the
///    stopped worker releases its leases, the restarted one gets its share back by hand-off,
///    and no record is processed twice. Returns the hand-off latencies.
pub async fn a_rolling_restart_processes_nothing_twice(
    fleet: &mut Fleet,
    batch: usize,
) -> Vec<std::time::Duration> {
    let clock = HandoffClock::install(fleet);
    fleet.driver.create(6).await;
    let names = ["w1", "w2", "w3"];
    for name in names {
        fleet.start(name, Behaviour::Checkpointing);
    }
    let balanced = |h: &BTreeMap<String, usize>| h.len() == 3 && h.values().all(|&n| n == 2);
    fleet.wait_holdings("2 leases each", balanced).await;
    clock.requests.lock().unwrap().clear();
    let stop = CancellationToken::new();
    let every = fleet.lease_duration() / 20;
    let putting = trickle(fleet, 0, batch, every, 18, stop.clone());
    for name in names {
        fleet.stop(name).await;
        fleet
            .wait_holdings("the others hold every lease", |h| {
                !h.contains_key(name) && h.values().sum::<usize>() == 6
            })
            .await;
        fleet.start(name, Behaviour::Checkpointing);
        fleet
            .wait_holdings("2 leases each after the restart", balanced)
            .await;
    }
    tokio::time::sleep(fleet.lease_duration()).await;
    stop.cancel();
    let records = putting.await.unwrap();
    fleet.wait_records(records).await;
    fleet.stop_all().await;
    assert_eq!(
        fleet.recorder.coverage(records),
        (records, 0),
        "every record, none twice, through a rolling restart"
    );
    report_handoffs("a rolling restart", &clock, fleet)
}
