//! The worker end to end on the in-memory Kinesis and lease store, under a paused clock: every
//! scenario asserts on every record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shardwise::kinesis::testkit::InMemoryKinesis;
use shardwise::lease::{Checkpoint, LeaseStore, MemoryLeaseStore};
use shardwise::{Consumer, ConsumerConfig, InitialPosition};
use support::{Behaviour, Recorder, factory, holdings, leases, wait_for};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(10);

struct Fleet {
    kinesis: Arc<InMemoryKinesis>,
    store: Arc<MemoryLeaseStore>,
    recorder: Arc<Recorder>,
    workers: BTreeMap<String, (CancellationToken, JoinHandle<()>)>,
}

impl Fleet {
    fn new(shards: u32) -> Self {
        let kinesis = Arc::new(InMemoryKinesis::new());
        kinesis.create_stream("orders", shards);
        Self {
            kinesis,
            store: Arc::new(MemoryLeaseStore::new()),
            recorder: Arc::new(Recorder::default()),
            workers: BTreeMap::new(),
        }
    }

    fn put(&self, range: std::ops::Range<usize>, keys: usize) {
        for i in range {
            self.kinesis
                .put(
                    "orders",
                    &format!("key-{}", i % keys),
                    format!("record-{i}").into_bytes(),
                )
                .unwrap();
        }
    }

    fn start(&mut self, name: &str, behaviour: Behaviour) {
        let config = ConsumerConfig {
            initial_position: InitialPosition::TrimHorizon,
            lease_duration: LEASE,
            take_interval: LEASE / 2,
            shard_sync_interval: Duration::from_secs(5),
            ..ConsumerConfig::default()
        };
        let consumer = Consumer::builder()
            .stream("orders")
            .kinesis(self.kinesis.clone())
            .lease_store(self.store.clone())
            .worker_id(name)
            .config(config)
            .processor(factory(name, &self.recorder, behaviour))
            .build()
            .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { consumer.run(stop).await.unwrap() }
        });
        self.workers.insert(name.to_owned(), (stop, task));
    }

    async fn stop(&mut self, name: &str) {
        let (stop, task) = self.workers.remove(name).unwrap();
        stop.cancel();
        task.await.unwrap();
    }

    fn kill(&mut self, name: &str) {
        let (_, task) = self.workers.remove(name).unwrap();
        task.abort();
    }

    async fn stop_all(&mut self) {
        let names: Vec<String> = self.workers.keys().cloned().collect();
        for name in names {
            self.stop(&name).await;
        }
    }

    async fn wait_records(&self, n: usize) {
        let recorder = self.recorder.clone();
        wait_for(&format!("{n} records"), Duration::from_secs(600), || {
            let r = recorder.clone();
            async move { r.coverage(n).0 == n }
        })
        .await;
    }
}

#[tokio::test(start_paused = true)]
async fn one_worker_processes_every_record_once_in_order() {
    let mut fleet = Fleet::new(4);
    fleet.put(0..400, 40);
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.wait_records(400).await;
    fleet.stop_all().await;

    let (covered, duplicates) = fleet.recorder.coverage(400);
    assert_eq!((covered, duplicates), (400, 0));
    // Per shard, in sequence order.
    let mut per_shard: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for s in fleet.recorder.seen.lock().unwrap().iter() {
        per_shard
            .entry(s.shard.clone())
            .or_default()
            .push(s.sequence.clone());
    }
    for (shard, seqs) in &per_shard {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, &sorted, "{shard} in order");
        // The checkpoint equals the last sequence number read.
        let all = leases(fleet.store.as_ref()).await;
        let expected = Checkpoint::at(seqs.last().unwrap().clone(), 0);
        assert_eq!(
            support::checkpoint_of(&all, shard),
            expected,
            "{shard} checkpoint"
        );
    }
    // Graceful shutdown released every lease.
    assert!(holdings(fleet.store.as_ref()).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn three_workers_share_eight_shards_then_a_fourth_joins() {
    let mut fleet = Fleet::new(8);
    fleet.put(0..240, 24);
    for w in ["w1", "w2", "w3"] {
        fleet.start(w, Behaviour::Checkpointing);
    }
    let store = fleet.store.clone();
    wait_for(
        "a fair split of 8 leases over 3 workers",
        Duration::from_secs(300),
        || {
            let store = store.clone();
            async move {
                let h = holdings(store.as_ref()).await;
                h.len() == 3
                    && h.values().sum::<usize>() == 8
                    && h.values().all(|&n| (2..=3).contains(&n))
            }
        },
    )
    .await;
    fleet.wait_records(240).await;

    fleet.start("w4", Behaviour::Checkpointing);
    fleet.put(240..480, 24);
    wait_for(
        "a fair split of 8 leases over 4 workers",
        Duration::from_secs(600),
        || {
            let store = store.clone();
            async move {
                let h = holdings(store.as_ref()).await;
                h.len() == 4 && h.values().all(|&n| n == 2)
            }
        },
    )
    .await;
    fleet.wait_records(480).await;
    fleet.stop_all().await;
    let (covered, _) = fleet.recorder.coverage(480);
    assert_eq!(covered, 480, "nothing lost while leases moved");
}

#[tokio::test(start_paused = true)]
async fn a_killed_worker_shards_move_on_after_the_lease_duration() {
    let mut fleet = Fleet::new(6);
    fleet.put(0..120, 12);
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.start("w2", Behaviour::Checkpointing);
    let store = fleet.store.clone();
    wait_for("both workers hold leases", Duration::from_secs(300), || {
        let store = store.clone();
        async move { holdings(store.as_ref()).await.len() == 2 }
    })
    .await;
    fleet.wait_records(120).await;
    fleet.kill("w1");
    let killed_at = tokio::time::Instant::now();
    fleet.put(120..240, 12);
    wait_for("w2 holds every lease", Duration::from_secs(300), || {
        let store = store.clone();
        async move { holdings(store.as_ref()).await.get("w2") == Some(&6) }
    })
    .await;
    let failover = killed_at.elapsed();
    assert!(failover >= LEASE, "taken before expiry: {failover:?}");
    assert!(failover <= LEASE * 2, "failover took {failover:?}");
    fleet.wait_records(240).await;
    fleet.stop_all().await;
    let (covered, _) = fleet.recorder.coverage(240);
    assert_eq!(covered, 240);
    // Duplicates only from after w1's last checkpoint: each shard replays at most one batch.
    let by_data: BTreeMap<String, usize> =
        fleet
            .recorder
            .data()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, d| {
                *m.entry(d).or_default() += 1;
                m
            });
    assert!(
        by_data.values().all(|&n| n <= 2),
        "a record processed more than twice"
    );
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_hands_shards_over_before_expiry() {
    let mut fleet = Fleet::new(6);
    fleet.put(0..60, 6);
    for w in ["w1", "w2", "w3"] {
        fleet.start(w, Behaviour::Checkpointing);
    }
    let store = fleet.store.clone();
    wait_for(
        "three workers hold leases",
        Duration::from_secs(300),
        || {
            let store = store.clone();
            async move { holdings(store.as_ref()).await.len() == 3 }
        },
    )
    .await;
    fleet.wait_records(60).await;
    // Stealing while the fleet formed may have replayed a batch (at-least-once); the handover
    // itself must replay nothing.
    let (_, duplicates_before) = fleet.recorder.coverage(60);
    let stopping = tokio::time::Instant::now();
    fleet.stop("w1").await;
    wait_for(
        "w2 and w3 hold all 6 leases",
        Duration::from_secs(300),
        || {
            let store = store.clone();
            async move {
                let h = holdings(store.as_ref()).await;
                !h.contains_key("w1") && h.values().sum::<usize>() == 6
            }
        },
    )
    .await;
    let handover = stopping.elapsed();
    assert!(
        handover < LEASE,
        "handover took {handover:?}, no faster than expiry"
    );
    fleet.put(60..120, 6);
    fleet.wait_records(120).await;
    fleet.stop_all().await;
    let (covered, duplicates) = fleet.recorder.coverage(120);
    assert_eq!(
        (covered, duplicates),
        (120, duplicates_before),
        "a graceful handover repeats nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn split_and_merge_keep_per_key_order_and_parents_first() {
    // Three generations exist before any worker starts, each holding data: the children must
    // wait for their parents' SHARD_END, the merged child for both of its parents.
    let mut fleet = Fleet::new(2);
    fleet.put(0..100, 10);
    let shards: Vec<String> = {
        use shardwise::kinesis::{KinesisApi, ListShardsRequest, StreamId};
        let page = fleet
            .kinesis
            .list_shards(&ListShardsRequest::First {
                stream: StreamId::Name("orders".into()),
                filter: None,
                max_results: None,
            })
            .await
            .unwrap();
        page.shards.into_iter().map(|s| s.shard_id).collect()
    };
    let children = fleet
        .kinesis
        .split_shard("orders", &shards[0], 1u128 << 126)
        .unwrap();
    fleet.put(100..200, 10);
    let merged = fleet
        .kinesis
        .merge_shards("orders", &children[0], &children[1])
        .unwrap();
    fleet.put(200..300, 10);
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.start("w2", Behaviour::Checkpointing);
    fleet.wait_records(300).await;
    fleet.stop_all().await;

    let (covered, _) = fleet.recorder.coverage(300);
    assert_eq!(covered, 300);
    for (key, seen) in fleet.recorder.by_key() {
        // Rebalancing may replay a batch (at-least-once); what must hold is that no record is
        // processed for the first time before an earlier record of its key.
        let mut first_seen = std::collections::HashSet::new();
        let ids: Vec<usize> = seen
            .iter()
            .filter(|s| first_seen.insert(s.data.clone()))
            .map(|s| s.data.trim_start_matches("record-").parse().unwrap())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(
            ids, sorted,
            "{key}: processed in order across parent and children"
        );
    }
    let all = leases(fleet.store.as_ref()).await;
    assert!(support::checkpoint_of(&all, &shards[0]).is_shard_end());
    for child in &children {
        assert!(
            support::checkpoint_of(&all, child).is_shard_end(),
            "{child} ended by the merge"
        );
    }
    assert!(
        !support::checkpoint_of(&all, &merged).is_start(),
        "the merged child processed records"
    );
    // Every child initialized only after each of its parents ended.
    let events = fleet.recorder.events.lock().unwrap().clone();
    let position = |e: String| {
        events
            .iter()
            .position(|x| *x == e)
            .unwrap_or_else(|| panic!("no event {e}"))
    };
    for lease in &all {
        for parent in &lease.parent_shard_ids {
            assert!(
                position(format!("init:{}", lease.key)) > position(format!("end:{parent}")),
                "{} started before its parent {parent} ended: {events:?}",
                lease.key
            );
        }
    }
    let ends = fleet.recorder.shard_ends.lock().unwrap().clone();
    assert!(
        ends.contains(&shards[0]) && ends.contains(&children[0]) && ends.contains(&children[1])
    );
}

#[tokio::test(start_paused = true)]
async fn failing_panicking_and_non_checkpointing_processors_lose_nothing() {
    for behaviour in [
        Behaviour::FailsFirst(2),
        Behaviour::FailsFirst(5),
        Behaviour::PanicsOnce,
        Behaviour::NeverCheckpoints,
    ] {
        let mut fleet = Fleet::new(2);
        fleet.put(0..50, 5);
        fleet.start("w1", behaviour);
        fleet.wait_records(50).await;
        let shards: Vec<String> = leases(fleet.store.as_ref())
            .await
            .iter()
            .map(|l| l.key.to_string())
            .collect();
        // A split: the parent must reach SHARD_END even when the processor never checkpoints.
        let children = fleet
            .kinesis
            .split_shard("orders", &shards[0], 1u128 << 126)
            .unwrap();
        fleet.put(50..100, 5);
        fleet.wait_records(100).await;
        let store = fleet.store.clone();
        let parent = shards[0].clone();
        wait_for("the parent's SHARD_END", Duration::from_secs(300), || {
            let store = store.clone();
            let parent = parent.clone();
            async move { support::checkpoint_of(&leases(store.as_ref()).await, &parent).is_shard_end() }
        })
        .await;
        fleet.stop_all().await;
        let (covered, _) = fleet.recorder.coverage(100);
        assert_eq!(covered, 100, "{behaviour:?}: every record processed");
        let all = leases(fleet.store.as_ref()).await;
        for child in &children {
            assert!(
                all.iter().any(|l| l.key.as_str() == child),
                "{behaviour:?}: child lease {child}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn restart_resumes_after_the_checkpoint() {
    let mut fleet = Fleet::new(3);
    fleet.put(0..90, 9);
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.wait_records(90).await;
    fleet.stop_all().await;
    let first_run = fleet.recorder.count();
    fleet.put(90..150, 9);
    fleet.start("w1-restarted", Behaviour::Checkpointing);
    fleet.wait_records(150).await;
    fleet.stop_all().await;
    let (covered, duplicates) = fleet.recorder.coverage(150);
    assert_eq!(
        (covered, duplicates),
        (150, 0),
        "resumed exactly after the checkpoints"
    );
    assert_eq!(fleet.recorder.count(), first_run + 60);
}

#[tokio::test(start_paused = true)]
async fn invalid_configuration_is_refused_at_build() {
    let kinesis = Arc::new(InMemoryKinesis::new());
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let recorder = Arc::new(Recorder::default());
    let base = || {
        Consumer::builder()
            .kinesis(kinesis.clone())
            .lease_store(store.clone())
            .processor(factory("w", &recorder, Behaviour::Checkpointing))
    };
    assert!(base().build().is_err(), "no stream");
    assert!(
        base().stream("s").worker_id("bad\nid").build().is_err(),
        "bad worker id"
    );
    assert!(
        base()
            .stream("s")
            .lease_duration(Duration::from_millis(10))
            .build()
            .is_err(),
        "lease too short"
    );
    let zero_steal = ConsumerConfig {
        max_leases_to_steal_at_one_time: 0,
        ..ConsumerConfig::default()
    };
    assert!(
        base().stream("s").config(zero_steal).build().is_err(),
        "zero steal"
    );
    assert!(base().stream("s").build().is_ok());
}
